//! Prints routing decisions, and refusals with their error bodies, for
//! sample requests against an in-memory configuration.
//!
//! `target/release/examples/route` (no arguments; `--help` says what it
//! shows). Everything is printed in words: the Display forms of the core's
//! types where they have one (`openai`, `byok, key set (…wxyz)`, a
//! refusal's message), a description where they have none, never Rust's
//! Debug form.

use std::process::ExitCode;

use clap::Parser;
use http::Method;
use llm_integration::translate::Translation;
use llm_integration::{
    AttachmentSpec, ConfigRecords, CredentialId, Decision, Dialect, IntegrationConfig,
    IntegrationId, IntegrationKind, KeyHint, LlmSettings, ModelsShape, Owner, Provider,
    ReflectionPath, RouteRequest, Snapshot, SnapshotOptions, Source, Team, TeamId, User, UserId,
    Vm, VmId,
};

/// Shows how the routing engine decides, without a network: for sample
/// requests from one VM (devbox: owner alice, team core, tag llm) to its
/// integrations (llm, openai-key, reflection and the team's shared), it
/// prints where each goes (provider, upstream path, source) or the refusal
/// a client would receive, with its error body in the endpoint's dialect
/// (Anthropic's or OpenAI's).
#[derive(Debug, Parser)]
#[command(name = "route", bin_name = "route")]
struct Args {}

fn main() -> ExitCode {
    let Args {} = Args::parse();
    match show_routes() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn show_routes() -> Result<(), Box<dyn std::error::Error>> {
    let alice = UserId(1);
    let team = TeamId(1);
    let mut devbox = Vm::new(VmId(1), "devbox".parse()?, alice);
    devbox.team = Some(team);
    devbox.tags.insert("llm".parse()?);

    let mut openai_key = IntegrationConfig::default_llm(IntegrationId(2), Owner::User(alice));
    openai_key.name = "openai-key".parse()?;
    openai_key.attachments = vec!["tag:llm".parse::<AttachmentSpec>()?];
    openai_key.kind = IntegrationKind::Llm(LlmSettings {
        anthropic: Source::Disabled,
        openai: Source::Byok {
            credential: CredentialId(1),
            hint: KeyHint::from_last4(Some("wxyz".into())),
        },
        fireworks: Source::Disabled,
        translate: true,
    });
    let mut shared = IntegrationConfig::default_llm(IntegrationId(3), Owner::Team(team));
    shared.name = "shared".parse()?;

    let records = ConfigRecords {
        users: vec![User::new(alice, "alice@example.com")],
        teams: vec![Team {
            id: team,
            name: "core".parse()?,
            members: [alice].into(),
        }],
        vms: vec![devbox],
        integrations: vec![
            IntegrationConfig::default_llm(IntegrationId(1), Owner::User(alice)),
            openai_key,
            shared,
            IntegrationConfig::default_reflection(IntegrationId(4), Owner::User(alice)),
        ],
    };
    let snapshot = Snapshot::build(records, SnapshotOptions::default());
    println!("configuration: VM devbox (alice, team core, tag llm) with llm, openai-key, reflection and team shared\n");

    let samples: &[(&str, Method, &str, Option<&str>)] = &[
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/v1/messages?beta=true",
            Some("claude-sonnet-4-6"),
        ),
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/v1/responses",
            Some("gpt-5.5"),
        ),
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/v1/chat/completions",
            Some("accounts/fireworks/models/kimi-k2"),
        ),
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/v1/chat/completions",
            Some("fireworks/kimi-k2"),
        ),
        ("llm.int.exe.xyz", Method::GET, "/v1/models", None),
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/fireworks/inference/v1/messages",
            None,
        ),
        (
            "shared.team.exe.xyz",
            Method::POST,
            "/openai/v1/embeddings",
            None,
        ),
        (
            "openai-key.int.exe.xyz",
            Method::POST,
            "/v1/chat/completions",
            Some("gpt-5.5"),
        ),
        ("reflection.int.exe.xyz", Method::GET, "/integrations", None),
        ("llm.int.exe.xyz", Method::HEAD, "/", None),
        // Refusals.
        (
            "openai-key.int.exe.xyz",
            Method::POST,
            "/v1/messages",
            Some("claude-sonnet-4-6"),
        ),
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/v1/chat/completions",
            Some("llama-3-70b"),
        ),
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/v1/messages",
            Some("gpt-5.5"),
        ),
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/v1/messages/count_tokens?beta=true",
            Some("gpt-5.5"),
        ),
        ("llm.int.exe.xyz", Method::POST, "/v1/messages", None),
        (
            "llm.int.exe.xyz",
            Method::POST,
            "/openai/v1/%2e%2e/admin",
            None,
        ),
        (
            "someone-else.int.exe.xyz",
            Method::POST,
            "/v1/messages",
            Some("claude-sonnet-4-6"),
        ),
        ("127.0.0.1:7700", Method::GET, "/v1/models", None),
    ];
    for (host, method, target, model) in samples {
        let request = RouteRequest::new(Some(VmId(1)), host, method, target);
        let model_note = model.map(|m| format!(" model={m}")).unwrap_or_default();
        println!("{method} https://{host}{target}{model_note}");
        match snapshot.route_with_model(&request, *model) {
            Ok(Decision::Forward(f)) => {
                let base = match f.provider {
                    Provider::Anthropic => "https://api.anthropic.com",
                    Provider::OpenAi => "https://api.openai.com",
                    Provider::Fireworks => "https://api.fireworks.ai",
                };
                let rewrite = f
                    .upstream_model
                    .map(|m| format!("; the body's model becomes {m}"))
                    .unwrap_or_default();
                let translated = match f.translation {
                    Translation::None => "",
                    Translation::MessagesToChat(_) => {
                        "; translated from Anthropic Messages to Chat Completions and back"
                    }
                    Translation::MessagesToResponses(_) => {
                        "; translated from Anthropic Messages to the Responses API and back"
                    }
                    Translation::ChatToMessages => {
                        "; translated from Chat Completions to Anthropic Messages and back"
                    }
                    Translation::ResponsesToMessages => {
                        "; translated from the Responses API to Anthropic Messages and back"
                    }
                };
                println!(
                    "  -> forward to {} at {base}{} (integration {}, source {}){rewrite}{translated}",
                    f.provider, f.upstream_path, f.integration.name, f.source
                );
            }
            Ok(Decision::CountTokens(c)) => println!(
                "  -> 200 at once: an estimate of the input tokens of {} ({} has no count_tokens)",
                c.model, c.provider
            ),
            Ok(Decision::ListModels(l)) => {
                let providers: Vec<_> = l.providers.iter().map(|p| p.as_str()).collect();
                println!(
                    "  -> list the models of {} in {}",
                    providers.join(", "),
                    list_shape(l.shape)
                );
            }
            Ok(Decision::Reflection(r)) => {
                println!(
                    "  -> reflection answers {} for VM {}",
                    reflection_path(r.path),
                    r.vm.name
                )
            }
            Ok(Decision::Liveness) => println!("  -> 200 at once (a liveness probe)"),
            Ok(Decision::Options { allow }) => {
                println!("  -> 204 at once, allowing {allow} (never forwarded)")
            }
            Ok(_) => println!("  -> a decision this example does not describe yet"),
            Err(refused) => {
                // Refused's Display is the refusal's message: the problem
                // and the fix, as the client reads them.
                println!("  -> refused, {}: {refused}", refused.status());
                println!(
                    "     body, in {}: {}",
                    error_shape(refused.dialect),
                    refused.body()
                );
            }
        }
    }
    Ok(())
}

/// A model list's shape, in words.
fn list_shape(shape: ModelsShape) -> &'static str {
    match shape {
        ModelsShape::OpenAi => "OpenAI's list shape",
        ModelsShape::Anthropic => "Anthropic's list shape",
    }
}

/// An error body's shape, in words.
fn error_shape(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Anthropic => "Anthropic's error shape",
        Dialect::OpenAi => "OpenAI's error shape",
    }
}

/// What a reflection path asks for, in words.
fn reflection_path(path: ReflectionPath) -> String {
    match path {
        ReflectionPath::Index => "the list of its paths".to_owned(),
        ReflectionPath::Field(field) => format!("/{}", field.as_str()),
    }
}
