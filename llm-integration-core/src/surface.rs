//! What the platform's shared key may reach.
//!
//! On a `gateway` source every tenant's requests go out with the same
//! platform key, so whatever the provider keeps on that account (files,
//! batches, vector stores, fine-tunes, stored responses and chat
//! completions, containers, the organization and admin APIs) is shared by
//! every tenant. Only the inference surface is reachable there: each entry
//! below is a method and an API path (after the provider's route prefix
//! and Fireworks' `/inference`, without the query); anything else is
//! refused with 403, naming the fix (the owner's own key). The list fails
//! closed: a path spelt otherwise (another case, a trailing `/`, an
//! escape) is not on it. On `byok`, `chatgpt` and `custom` sources the
//! owner's own account is behind the key, and every path passes.

use http::Method;

use crate::provider::Provider;

/// One entry of the inference surface.
#[derive(Debug, Clone, Copy)]
struct Entry {
    providers: &'static [Provider],
    method: &'static str,
    path: &'static str,
}

const ALL: &[Provider] = &[Provider::Anthropic, Provider::OpenAi, Provider::Fireworks];
const ANTHROPIC_API: &[Provider] = &[Provider::Anthropic, Provider::Fireworks];
const OPENAI_API: &[Provider] = &[Provider::OpenAi, Provider::Fireworks];

/// The inference surface: creating messages, completions, responses and
/// embeddings, counting tokens, moderation. Model lists are the
/// [`MODEL_LISTS`] prefix, read-only.
const INFERENCE: &[Entry] = &[
    Entry {
        providers: ANTHROPIC_API,
        method: "POST",
        path: "/v1/messages",
    },
    Entry {
        providers: &[Provider::Anthropic],
        method: "POST",
        path: "/v1/messages/count_tokens",
    },
    Entry {
        providers: &[Provider::Anthropic],
        method: "POST",
        path: "/v1/complete",
    },
    Entry {
        providers: OPENAI_API,
        method: "POST",
        path: "/v1/chat/completions",
    },
    Entry {
        providers: OPENAI_API,
        method: "POST",
        path: "/v1/completions",
    },
    Entry {
        providers: OPENAI_API,
        method: "POST",
        path: "/v1/responses",
    },
    Entry {
        providers: &[Provider::OpenAi],
        method: "POST",
        path: "/v1/responses/compact",
    },
    Entry {
        providers: &[Provider::OpenAi],
        method: "POST",
        path: "/v1/responses/input_tokens",
    },
    Entry {
        providers: OPENAI_API,
        method: "POST",
        path: "/v1/embeddings",
    },
    Entry {
        providers: &[Provider::OpenAi],
        method: "POST",
        path: "/v1/moderations",
    },
    Entry {
        providers: ALL,
        method: "GET",
        path: "/v1/models",
    },
    Entry {
        providers: ALL,
        method: "HEAD",
        path: "/v1/models",
    },
];

/// Reading one model (`GET /v1/models/{id}`) is part of the surface.
const MODEL_LISTS: &str = "/v1/models/";

/// Whether `method` on `api_path` of `provider` is on the inference
/// surface (and so reachable with the platform's shared key).
///
/// ```
/// use http::Method;
/// use llm_integration_core::surface::is_inference;
/// use llm_integration_core::Provider;
///
/// assert!(is_inference(Provider::OpenAi, &Method::POST, "/v1/chat/completions"));
/// assert!(!is_inference(Provider::OpenAi, &Method::GET, "/v1/chat/completions"));
/// assert!(!is_inference(Provider::OpenAi, &Method::GET, "/v1/files"));
/// assert!(!is_inference(Provider::Anthropic, &Method::GET, "/v1/messages/batches"));
/// ```
pub fn is_inference(provider: Provider, method: &Method, api_path: &str) -> bool {
    let m = method.as_str();
    if (m == "GET" || m == "HEAD")
        && api_path
            .strip_prefix(MODEL_LISTS)
            .is_some_and(|id| !id.is_empty())
    {
        return true;
    }
    INFERENCE
        .iter()
        .any(|e| e.method == m && e.path == api_path && e.providers.contains(&provider))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_surface_is_not_inference() {
        let p = Provider::OpenAi;
        for (method, path) in [
            (Method::GET, "/v1/files"),
            (Method::DELETE, "/v1/files/file-abc"),
            (Method::POST, "/v1/files"),
            (Method::GET, "/v1/batches"),
            (Method::GET, "/v1/vector_stores"),
            (Method::GET, "/v1/responses/resp_1"),
            (Method::DELETE, "/v1/responses/resp_1"),
            (Method::GET, "/v1/chat/completions"),
            (Method::GET, "/v1/chat/completions/chatcmpl-1/messages"),
            (Method::POST, "/v1/fine_tuning/jobs"),
            (Method::GET, "/v1/organization/users"),
            (Method::POST, "/v1/containers"),
            (Method::DELETE, "/v1/models/ft:gpt-4o:acme"),
            (Method::OPTIONS, "/v1/chat/completions"),
            (Method::POST, "/v1/Chat/Completions"),
            (Method::POST, "/v1/chat/completions/"),
            (Method::GET, "/v1/models/"),
        ] {
            assert!(!is_inference(p, &method, path), "{method} {path}");
        }
        assert!(!is_inference(
            Provider::Anthropic,
            &Method::POST,
            "/v1/messages/batches"
        ));
        assert!(!is_inference(
            Provider::Anthropic,
            &Method::GET,
            "/v1/files"
        ));
        assert!(!is_inference(
            Provider::Anthropic,
            &Method::POST,
            "/v1/chat/completions"
        ));
        assert!(is_inference(
            Provider::Fireworks,
            &Method::POST,
            "/v1/messages"
        ));
        assert!(is_inference(p, &Method::GET, "/v1/models/gpt-5.5"));
        assert!(is_inference(
            Provider::Fireworks,
            &Method::GET,
            "/v1/models/accounts/fireworks/models/x"
        ));
    }
}
