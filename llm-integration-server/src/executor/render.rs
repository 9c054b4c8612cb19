//! How command answers look, in text and JSON. Never a key: a `byok`
//! source shows its `KeyHint` at most.

use std::collections::BTreeSet;

use llm_integration_core::{
    AttachmentSpec, EndpointAuth, IntegrationConfig, IntegrationKind, Owner, Provider, Source,
    TagName,
};
use serde_json::{json, Value};

use super::{Answer, Ctx};

/// The JSON view of an integration (also the source of its text view).
pub fn integration_json(i: &IntegrationConfig, domain: &str, team: Option<String>) -> Value {
    let owner = match (&i.owner, team) {
        (Owner::User(_), _) => json!({"kind": "user"}),
        (Owner::Team(_), Some(name)) => json!({"kind": "team", "team": name}),
        (Owner::Team(t), None) => json!({"kind": "team", "team_id": t.0}),
    };
    let mut v = json!({
        "name": i.name,
        "type": i.kind.type_name(),
        "hostname": i.hostname(domain),
        "owner": owner,
        "comment": i.comment,
        "attachments": i.attachments.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    match &i.kind {
        IntegrationKind::Llm(settings) => {
            let mut providers = serde_json::Map::new();
            for p in Provider::ALL {
                providers.insert(p.to_string(), source_json(settings.source(p)));
            }
            v["providers"] = Value::Object(providers);
            v["translate"] = json!(settings.translate);
        }
        IntegrationKind::Reflection(settings) => {
            v["fields"] = json!(settings.fields.to_string());
        }
    }
    v
}

fn source_json(source: &Source) -> Value {
    match source {
        Source::Gateway => json!({"source": "gateway"}),
        Source::Byok { hint, .. } => json!({"source": "byok", "key": hint.to_string()}),
        Source::Chatgpt { account } => json!({"source": "chatgpt", "account": account}),
        Source::Custom { url, auth } => {
            let mut v = json!({"source": "custom", "url": url.as_str()});
            match auth {
                EndpointAuth::None => v["auth"] = json!("none"),
                EndpointAuth::Bearer { hint, .. } => {
                    v["auth"] = json!("bearer");
                    v["key"] = json!(hint.to_string());
                }
                EndpointAuth::Header { name, hint, .. } => {
                    v["auth"] = json!("header");
                    v["header"] = json!(name);
                    v["key"] = json!(hint.to_string());
                }
            }
            v
        }
        Source::Disabled => json!({"source": "disabled"}),
    }
}

fn source_text(v: &Value) -> String {
    let source = v["source"].as_str().unwrap_or("?");
    match source {
        "byok" => format!("API key, {}", v["key"].as_str().unwrap_or("set")),
        "chatgpt" => format!("ChatGPT account {}", v["account"].as_str().unwrap_or("?")),
        "custom" => {
            let url = v["url"].as_str().unwrap_or("?");
            let key = v["key"].as_str().unwrap_or("set");
            match v["auth"].as_str() {
                Some("bearer") => format!("custom endpoint {url}, bearer token {key}"),
                Some("header") => format!(
                    "custom endpoint {url}, header {} {key}",
                    v["header"].as_str().unwrap_or("?")
                ),
                _ => format!("custom endpoint {url}, no authentication"),
            }
        }
        other => other.to_owned(),
    }
}

/// Attachments as one line.
pub fn attachments_text(specs: &[AttachmentSpec]) -> String {
    if specs.is_empty() {
        return "(nothing)".to_owned();
    }
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Tags as one line.
pub fn tags_text(tags: &BTreeSet<TagName>) -> String {
    if tags.is_empty() {
        return "(none)".to_owned();
    }
    tags.iter()
        .map(TagName::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text view of [`integration_json`].
pub fn show_text(v: &Value) -> String {
    let mut out = String::new();
    let field = |out: &mut String, k: &str, val: &str| {
        out.push_str(&format!("  {:<11}{val}\n", format!("{k}:")))
    };
    out.push_str(&format!(
        "{} ({} integration)\n",
        v["name"].as_str().unwrap_or("?"),
        v["type"].as_str().unwrap_or("?")
    ));
    field(&mut out, "hostname", v["hostname"].as_str().unwrap_or("?"));
    let owner = match v["owner"]["team"].as_str() {
        Some(t) => format!("team {t}"),
        None => "you".to_owned(),
    };
    field(&mut out, "owner", &owner);
    if let Some(providers) = v["providers"].as_object() {
        for p in Provider::ALL {
            if let Some(s) = providers.get(p.as_str()) {
                field(&mut out, p.as_str(), &source_text(s));
            }
        }
    }
    if let Some(translate) = v["translate"].as_bool() {
        let text = if translate {
            "on (Anthropic clients may use OpenAI models, OpenAI clients Claude models)"
        } else {
            "off"
        };
        field(&mut out, "translate", text);
    }
    if let Some(fields) = v["fields"].as_str() {
        field(&mut out, "fields", fields);
    }
    let attached: Vec<&str> = v["attachments"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    field(
        &mut out,
        "attached",
        &if attached.is_empty() {
            "(nothing)".to_owned()
        } else {
            attached.join(", ")
        },
    );
    if let Some(c) = v["comment"].as_str().filter(|c| !c.is_empty()) {
        field(&mut out, "comment", c);
    }
    out
}

/// `integrations list`: the user's integrations, then their teams'.
pub(super) fn list(ctx: &Ctx) -> Answer {
    let teams: Vec<_> = ctx
        .records
        .teams
        .iter()
        .filter(|t| t.members.contains(&ctx.user))
        .collect();
    let mut views = Vec::new();
    for i in ctx
        .records
        .integrations
        .iter()
        .filter(|i| i.owner == Owner::User(ctx.user))
    {
        views.push(integration_json(i, &ctx.domain, None));
    }
    for team in &teams {
        for i in ctx
            .records
            .integrations
            .iter()
            .filter(|i| i.owner == Owner::Team(team.id))
        {
            views.push(integration_json(
                i,
                &ctx.domain,
                Some(team.name.to_string()),
            ));
        }
    }
    let mut text = String::new();
    if views.is_empty() {
        text.push_str(
            "no integrations; add one with `integrations add llm --name llm --attach auto:all`\n",
        );
    } else {
        let rows: Vec<[String; 5]> = views
            .iter()
            .map(|v| {
                let settings = match v["providers"].as_object() {
                    Some(p) => Provider::ALL
                        .iter()
                        .map(|name| {
                            format!(
                                "{name}={}",
                                p.get(name.as_str())
                                    .and_then(|s| s["source"].as_str())
                                    .unwrap_or("?")
                            )
                        })
                        .chain((v["translate"] == false).then(|| "translate=off".to_owned()))
                        .collect::<Vec<_>>()
                        .join(" "),
                    None => format!("fields={}", v["fields"].as_str().unwrap_or("all")),
                };
                let attached: Vec<&str> = v["attachments"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                [
                    v["name"].as_str().unwrap_or("?").to_owned(),
                    v["type"].as_str().unwrap_or("?").to_owned(),
                    v["hostname"].as_str().unwrap_or("?").to_owned(),
                    settings,
                    if attached.is_empty() {
                        "-".to_owned()
                    } else {
                        attached.join(",")
                    },
                ]
            })
            .collect();
        let header = ["NAME", "TYPE", "HOSTNAME", "SETTINGS", "ATTACHED"].map(String::from);
        let widths: Vec<usize> = (0..5)
            .map(|c| {
                rows.iter()
                    .chain(std::iter::once(&header))
                    .map(|r| r[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for row in std::iter::once(&header).chain(rows.iter()) {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            text.push_str(line.join("  ").trim_end());
            text.push('\n');
        }
    }
    Answer::ok(text, json!({ "integrations": views }))
}
