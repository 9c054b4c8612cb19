//! Model lists: reading each provider's list answer, and the merged answer
//! to `GET /v1/models` in OpenAI's or Anthropic's shape (each entry marked
//! with its provider in `owned_by`; a provider whose list failed named in
//! `failed_providers`).
//!
//! Wire formats: OpenAI's and Fireworks' `GET /v1/models`
//! (`{"object":"list","data":[{"id","created",…}]}`), Anthropic's
//! (`{"data":[{"id","display_name","created_at"}],"has_more","last_id"}`,
//! paged with `limit` and `after_id`), and the ChatGPT backend's
//! `GET /models` (`{"models":[{"slug","visibility"}]}`).

use serde_json::{json, Value};

use crate::provider::Provider;
use crate::router::ModelsShape;

/// One model of a provider's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// The model ID.
    pub id: String,
    /// Unix seconds (OpenAI's `created`).
    pub created: i64,
    /// Anthropic's display name, when known.
    pub display_name: Option<String>,
    /// Anthropic's RFC 3339 creation time, when known.
    pub created_at: Option<String>,
}

/// One page of a provider's list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListPage {
    /// The models on it.
    pub models: Vec<ModelEntry>,
    /// Where the next page starts (Anthropic's `last_id` when `has_more`).
    pub next_after: Option<String>,
}

/// The most pages read of one list (Anthropic pages by 1000).
pub const MAX_PAGES: usize = 10;

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The URL of a page of `provider`'s list under `base`.
pub fn page_url(provider: Provider, base: &str, after: Option<&str>) -> String {
    let mut url = format!("{base}{}/v1/models", provider.upstream_prefix());
    if provider == Provider::Anthropic {
        url.push_str("?limit=1000");
        if let Some(a) = after {
            url.push_str("&after_id=");
            url.push_str(&encode(a));
        }
    }
    url
}

/// The message of an error answer, in either dialect (or the body's own
/// `detail`), for a person to read.
fn error_text(status: u16, value: &Value) -> String {
    let detail = value["error"]["message"]
        .as_str()
        .or_else(|| value["error_description"].as_str())
        .or_else(|| value["error"].as_str())
        .or_else(|| value["detail"].as_str())
        .unwrap_or("no message");
    format!("HTTP {status}: {detail}")
}

/// Reads one page of a provider's list answer.
///
/// # Errors
/// A message naming the status and the provider's own words, when the
/// answer is not a successful list.
pub fn parse_page(provider: Provider, status: u16, body: &[u8]) -> Result<ListPage, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|_| format!("HTTP {status}: the answer is not JSON"))?;
    if !(200..300).contains(&status) {
        return Err(error_text(status, &value));
    }
    let models = value["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| {
            Some(ModelEntry {
                id: m["id"].as_str()?.to_owned(),
                created: m["created"].as_i64().unwrap_or(0),
                display_name: m["display_name"].as_str().map(str::to_owned),
                created_at: m["created_at"].as_str().map(str::to_owned),
            })
        })
        .collect();
    let next_after = match (value["has_more"].as_bool(), value["last_id"].as_str()) {
        (Some(true), Some(last)) if provider == Provider::Anthropic => Some(last.to_owned()),
        _ => None,
    };
    Ok(ListPage { models, next_after })
}

/// Reads the ChatGPT backend's catalog: the slugs it does not hide.
///
/// # Errors
/// A message naming the status and the backend's own words.
pub fn parse_chatgpt_catalog(status: u16, body: &[u8]) -> Result<Vec<ModelEntry>, String> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if !(200..300).contains(&status) {
        return Err(error_text(status, &value));
    }
    Ok(value["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["visibility"].as_str() != Some("hide"))
        .filter_map(|m| m["slug"].as_str())
        .map(|id| ModelEntry {
            id: id.to_owned(),
            created: 0,
            display_name: None,
            created_at: None,
        })
        .collect())
}

/// The merged answer to a model list request, as JSON text.
pub fn render(
    shape: ModelsShape,
    lists: &[(Provider, &[ModelEntry])],
    failed: &[(Provider, String)],
) -> String {
    let mut answer = match shape {
        ModelsShape::OpenAi => {
            let data: Vec<Value> = lists
                .iter()
                .flat_map(|(p, list)| {
                    list.iter().map(move |m| {
                        json!({"id": m.id, "object": "model", "created": m.created, "owned_by": p})
                    })
                })
                .collect();
            json!({"object": "list", "data": data})
        }
        ModelsShape::Anthropic => {
            let data: Vec<Value> = lists
                .iter()
                .flat_map(|(p, list)| {
                    list.iter().map(move |m| {
                        json!({
                            "type": "model",
                            "id": m.id,
                            "display_name": m.display_name.clone().unwrap_or_else(|| m.id.clone()),
                            "created_at": m.created_at.clone().unwrap_or_else(|| rfc3339(m.created)),
                            "owned_by": p,
                        })
                    })
                })
                .collect();
            let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
            let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
            json!({"data": data, "has_more": false, "first_id": first, "last_id": last})
        }
    };
    if !failed.is_empty() {
        answer["failed_providers"] = failed
            .iter()
            .map(|(p, message)| json!({"provider": p, "message": message}))
            .collect();
    }
    answer.to_string()
}

/// Unix seconds as an RFC 3339 UTC time.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn pages_and_urls() {
        let page = parse_page(
            Provider::Anthropic,
            200,
            br#"{"data":[{"id":"claude-x","display_name":"Claude X","created_at":"2025-01-01T00:00:00Z"},{"nope":1}],"has_more":true,"last_id":"claude-x&y=1"}"#,
        )
        .unwrap();
        assert_eq!(page.models.len(), 1);
        assert_eq!(
            page_url(Provider::Anthropic, "https://a", page.next_after.as_deref()),
            "https://a/v1/models?limit=1000&after_id=claude-x%26y%3D1"
        );
        assert_eq!(
            page_url(Provider::Fireworks, "https://f", None),
            "https://f/inference/v1/models"
        );
        assert_eq!(
            parse_page(Provider::OpenAi, 401, br#"{"error":{"message":"bad key"}}"#).unwrap_err(),
            "HTTP 401: bad key"
        );
        assert!(parse_page(Provider::OpenAi, 200, b"<html>").is_err());
        let catalog = parse_chatgpt_catalog(
            200,
            br#"{"models":[{"slug":"gpt-5.5"},{"slug":"hidden","visibility":"hide"}]}"#,
        )
        .unwrap();
        assert_eq!(catalog.len(), 1);
    }

    #[test]
    fn merged_shapes() {
        let a = [ModelEntry {
            id: "claude-x".into(),
            created: 0,
            display_name: None,
            created_at: None,
        }];
        let o = [ModelEntry {
            id: "gpt-5".into(),
            created: 7,
            display_name: None,
            created_at: None,
        }];
        let text = render(
            ModelsShape::OpenAi,
            &[(Provider::Anthropic, &a), (Provider::OpenAi, &o)],
            &[(Provider::Fireworks, "HTTP 500: down".into())],
        );
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["data"][1]["owned_by"], "openai");
        assert_eq!(v["failed_providers"][0]["provider"], "fireworks");
        let v: Value = serde_json::from_str(&render(
            ModelsShape::Anthropic,
            &[(Provider::Anthropic, &a)],
            &[],
        ))
        .unwrap();
        assert_eq!(v["data"][0]["display_name"], "claude-x");
        assert_eq!(v["last_id"], "claude-x");
    }
}
