//! The routing engine through its public API: hosts, scopes, paths,
//! models, dialects and refusals, against one fixed configuration.
#![allow(clippy::unwrap_used, missing_docs)]

use http::{Method, StatusCode};
use llm_integration_core::path::PathError;
use llm_integration_core::{
    AttachmentSpec, ConfigRecords, CredentialId, Decision, Dialect, IntegrationConfig,
    IntegrationId, IntegrationKind, KeyHint, ModelCatalog, ModelsShape, Owner, Provider,
    ReflectionField, ReflectionFields, ReflectionPath, ReflectionSettings, Refusal, RouteRequest,
    Snapshot, SnapshotOptions, Source, Team, TeamId, User, UserId, Vm, VmId,
};

const ALICE: UserId = UserId(1);
const BOB: UserId = UserId(2);
const CORE: TeamId = TeamId(1);
const OTHER_TEAM: TeamId = TeamId(2);
/// Alice's VM, in team core.
const DEVBOX: VmId = VmId(1);
/// Alice's VM tagged `llm`, in no team.
const GPU: VmId = VmId(2);
/// Bob's VM, in team core.
const BOBS: VmId = VmId(3);
/// Bob's VM in the other team.
const ELSEWHERE: VmId = VmId(4);

fn llm(id: i64, owner: Owner, name: &str, attach: &[&str]) -> IntegrationConfig {
    let mut i = IntegrationConfig::default_llm(IntegrationId(id), owner);
    i.name = name.parse().unwrap();
    i.attachments = attach
        .iter()
        .map(|s| s.parse::<AttachmentSpec>().unwrap())
        .collect();
    i
}

fn snapshot() -> Snapshot {
    let mut devbox = Vm::new(DEVBOX, "devbox".parse().unwrap(), ALICE);
    devbox.team = Some(CORE);
    let mut gpu = Vm::new(GPU, "gpu".parse().unwrap(), ALICE);
    gpu.tags.insert("llm".parse().unwrap());
    let mut bobs = Vm::new(BOBS, "bobs".parse().unwrap(), BOB);
    bobs.team = Some(CORE);
    let mut elsewhere = Vm::new(ELSEWHERE, "elsewhere".parse().unwrap(), BOB);
    elsewhere.team = Some(OTHER_TEAM);

    let mut keyed = llm(3, Owner::User(ALICE), "keyed", &["vm:devbox"]);
    keyed.kind = IntegrationKind::Llm(llm_integration_core::LlmSettings {
        anthropic: Source::Disabled,
        openai: Source::Byok {
            credential: CredentialId(9),
            hint: KeyHint::from_last4(Some("wxyz".into())),
        },
        fireworks: Source::Disabled,
        translate: true,
    });
    let mut refl = IntegrationConfig::default_reflection(IntegrationId(4), Owner::User(ALICE));
    refl.kind = IntegrationKind::Reflection(ReflectionSettings {
        fields: "email,tags".parse().unwrap(),
    });
    let mut full_refl = IntegrationConfig::default_reflection(IntegrationId(5), Owner::User(ALICE));
    full_refl.name = "me".parse().unwrap();
    let mut catalog = ModelCatalog::new();
    catalog.insert(Provider::Fireworks, "kimi-k2-instruct");
    ConfigRecords {
        users: vec![
            User::new(ALICE, "alice@example.com"),
            User::new(BOB, "bob@example.com"),
        ],
        teams: vec![
            Team {
                id: CORE,
                name: "core".parse().unwrap(),
                members: [ALICE, BOB].into(),
            },
            Team {
                id: OTHER_TEAM,
                name: "other".parse().unwrap(),
                members: [BOB].into(),
            },
        ],
        vms: vec![devbox, gpu, bobs, elsewhere],
        integrations: vec![
            llm(1, Owner::User(ALICE), "llm", &["auto:all"]),
            llm(2, Owner::User(ALICE), "tagged", &["tag:llm"]),
            keyed,
            refl,
            full_refl,
            llm(6, Owner::Team(CORE), "shared", &["auto:all"]),
            llm(7, Owner::Team(CORE), "llm", &["vm:bobs"]),
            llm(8, Owner::User(BOB), "llm", &["auto:all"]),
            llm(9, Owner::Team(OTHER_TEAM), "secret", &["auto:all"]),
        ],
    }
    .into_snapshot(catalog)
}

trait IntoSnapshot {
    fn into_snapshot(self, catalog: ModelCatalog) -> Snapshot;
}

impl IntoSnapshot for ConfigRecords {
    fn into_snapshot(self, catalog: ModelCatalog) -> Snapshot {
        let options = SnapshotOptions {
            catalog: catalog.into(),
            ..SnapshotOptions::default()
        };
        Snapshot::build(self, options)
    }
}

fn route<'s>(
    s: &'s Snapshot,
    vm: VmId,
    host: &str,
    method: Method,
    target: &str,
    model: Option<&str>,
) -> Result<Decision<'s>, (Refusal, Dialect)> {
    let request = RouteRequest::new(Some(vm), host, &method, target);
    s.route_with_model(&request, model)
        .map_err(|r| (r.refusal, r.dialect))
}

fn forward(
    s: &Snapshot,
    vm: VmId,
    host: &str,
    target: &str,
    model: Option<&str>,
) -> (Provider, String, i64) {
    match route(s, vm, host, Method::POST, target, model) {
        Ok(Decision::Forward(f)) => (f.provider, f.upstream_path, f.integration.id.0),
        other => panic!("{host}{target} {model:?}: {other:?}"),
    }
}

#[test]
fn generic_routes_follow_the_model() {
    let s = snapshot();
    let h = "llm.int.exe.xyz";
    let cases = [
        (
            "/v1/messages",
            "claude-sonnet-4-6",
            Provider::Anthropic,
            "/v1/messages",
        ),
        (
            "/v1/messages?beta=true",
            "claude-opus-4-6",
            Provider::Anthropic,
            "/v1/messages?beta=true",
        ),
        (
            "/v1/messages/count_tokens",
            "claude-haiku-4-5",
            Provider::Anthropic,
            "/v1/messages/count_tokens",
        ),
        (
            "/v1/messages",
            "accounts/fireworks/models/glm-4p6",
            Provider::Fireworks,
            "/inference/v1/messages",
        ),
        (
            "/v1/chat/completions",
            "gpt-5.5",
            Provider::OpenAi,
            "/v1/chat/completions",
        ),
        (
            "/v1/responses",
            "gpt-5.1-codex",
            Provider::OpenAi,
            "/v1/responses",
        ),
        ("/v1/responses", "o3-pro", Provider::OpenAi, "/v1/responses"),
        (
            "/v1/completions",
            "accounts/fireworks/models/x",
            Provider::Fireworks,
            "/inference/v1/completions",
        ),
        (
            "/v1/embeddings",
            "text-embedding-3-small",
            Provider::OpenAi,
            "/v1/embeddings",
        ),
        (
            "/v1/chat/completions",
            "kimi-k2-instruct",
            Provider::Fireworks,
            "/inference/v1/chat/completions",
        ),
    ];
    for (target, model, provider, upstream) in cases {
        assert_eq!(
            forward(&s, DEVBOX, h, target, Some(model)),
            (provider, upstream.to_owned(), 1),
            "{target} {model}"
        );
    }
}

#[test]
fn explicit_provider_prefix_rewrites_the_model() {
    let s = snapshot();
    let Ok(Decision::Forward(f)) = route(
        &s,
        DEVBOX,
        "llm.int.exe.xyz",
        Method::POST,
        "/v1/chat/completions",
        Some("fireworks/kimi-k2"),
    ) else {
        panic!()
    };
    assert_eq!(f.provider, Provider::Fireworks);
    assert_eq!(
        f.upstream_model.as_deref(),
        Some("accounts/fireworks/models/kimi-k2")
    );
    let Ok(Decision::Forward(f)) = route(
        &s,
        DEVBOX,
        "llm.int.exe.xyz",
        Method::POST,
        "/v1/messages",
        Some("claude-opus-4-6"),
    ) else {
        panic!()
    };
    assert_eq!(f.upstream_model, None, "no rewrite without a prefix");
}

#[test]
fn prefix_routes_force_the_provider() {
    let s = snapshot();
    let h = "llm.int.exe.xyz";
    let cases = [
        (
            "/anthropic/v1/messages",
            Provider::Anthropic,
            "/v1/messages",
        ),
        (
            "/anthropic/v1/messages?beta=true",
            Provider::Anthropic,
            "/v1/messages?beta=true",
        ),
        (
            "/openai/v1/chat/completions",
            Provider::OpenAi,
            "/v1/chat/completions",
        ),
        ("/openai/v1/embeddings", Provider::OpenAi, "/v1/embeddings"),
        (
            "/fireworks/inference/v1/chat/completions",
            Provider::Fireworks,
            "/inference/v1/chat/completions",
        ),
        (
            "/fireworks/inference/v1/messages",
            Provider::Fireworks,
            "/inference/v1/messages",
        ),
    ];
    for (target, provider, upstream) in cases {
        // No model needed: the prefix decides, whatever the body says.
        assert_eq!(
            forward(&s, DEVBOX, h, target, None),
            (provider, upstream.to_owned(), 1),
            "{target}"
        );
        assert_eq!(
            forward(&s, DEVBOX, h, target, Some("claude-x")).0,
            provider,
            "{target}"
        );
    }
}

#[test]
fn models_lists() {
    let s = snapshot();
    let m = Method::GET;
    let req = RouteRequest::new(Some(DEVBOX), "llm.int.exe.xyz", &m, "/v1/models");
    let Ok(Decision::ListModels(l)) = s.route_with_model(&req, None) else {
        panic!()
    };
    assert_eq!(
        l.providers.iter().collect::<Vec<_>>(),
        Provider::ALL.to_vec()
    );
    assert_eq!(l.shape, ModelsShape::OpenAi);
    let req = req.with_anthropic_client(true);
    let Ok(Decision::ListModels(l)) = s.route_with_model(&req, None) else {
        panic!()
    };
    assert_eq!(
        (l.shape, l.dialect),
        (ModelsShape::Anthropic, Dialect::Anthropic)
    );

    let req = RouteRequest::new(Some(DEVBOX), "keyed.int.exe.xyz", &m, "/v1/models");
    let Ok(Decision::ListModels(l)) = s.route_with_model(&req, None) else {
        panic!()
    };
    assert_eq!(
        l.providers.iter().collect::<Vec<_>>(),
        vec![Provider::OpenAi],
        "disabled providers are not listed"
    );

    let req = RouteRequest::new(
        Some(DEVBOX),
        "llm.int.exe.xyz",
        &m,
        "/fireworks/inference/v1/models",
    );
    let Ok(Decision::ListModels(l)) = s.route_with_model(&req, None) else {
        panic!()
    };
    assert_eq!(
        l.providers.iter().collect::<Vec<_>>(),
        vec![Provider::Fireworks]
    );

    // One model, by its ID in the path.
    let (p, path, _) = match route(
        &s,
        DEVBOX,
        "llm.int.exe.xyz",
        Method::GET,
        "/v1/models/claude-opus-4-6",
        None,
    ) {
        Ok(Decision::Forward(f)) => (f.provider, f.upstream_path, 0),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (p, path.as_str()),
        (Provider::Anthropic, "/v1/models/claude-opus-4-6")
    );
    assert_eq!(
        route(
            &s,
            DEVBOX,
            "llm.int.exe.xyz",
            Method::POST,
            "/v1/models",
            None
        )
        .unwrap_err()
        .0,
        Refusal::MethodNotAllowed { allowed: "GET" }
    );
}

#[test]
fn liveness_and_unknown_routes() {
    let s = snapshot();
    assert!(matches!(
        route(&s, DEVBOX, "llm.int.exe.xyz", Method::HEAD, "/", None),
        Ok(Decision::Liveness)
    ));
    assert!(matches!(
        route(&s, DEVBOX, "llm.int.exe.xyz", Method::GET, "/", None),
        Ok(Decision::Liveness)
    ));
    assert_eq!(
        route(&s, DEVBOX, "llm.int.exe.xyz", Method::GET, "/admin", None)
            .unwrap_err()
            .0,
        Refusal::NoSuchRoute
    );
    // Generic routes without a model in the body go by path family, then by
    // client; on the platform's shared key only the inference surface is
    // reachable, on the owner's own key everything.
    assert_eq!(
        forward(&s, DEVBOX, "keyed.int.exe.xyz", "/v1/files", None).0,
        Provider::OpenAi
    );
    for (target, provider, dialect) in [
        ("/v1/files", Provider::OpenAi, Dialect::OpenAi),
        (
            "/v1/messages/batches",
            Provider::Anthropic,
            Dialect::Anthropic,
        ),
    ] {
        let (e, d) = route(&s, DEVBOX, "llm.int.exe.xyz", Method::POST, target, None).unwrap_err();
        assert!(
            matches!(&e, Refusal::NeedsOwnKey { provider: p, .. } if *p == provider),
            "{target}: {e:?}"
        );
        assert_eq!(d, dialect);
        assert!(e.message().contains("--openai=byok") || e.message().contains("--anthropic=byok"));
        assert_eq!(e.class().status().as_u16(), 403);
    }
    let m = Method::GET;
    let req = RouteRequest::new(Some(DEVBOX), "llm.int.exe.xyz", &m, "/v1/files")
        .with_anthropic_client(true);
    let refused = s.route_with_model(&req, None).unwrap_err();
    assert!(matches!(
        refused.refusal,
        Refusal::NeedsOwnKey {
            provider: Provider::Anthropic,
            ..
        }
    ));
    assert_eq!(refused.dialect, Dialect::Anthropic);
    // OPTIONS is the gateway's own to answer, on every source.
    assert!(matches!(
        route(
            &s,
            DEVBOX,
            "llm.int.exe.xyz",
            Method::OPTIONS,
            "/v1/messages",
            None
        ),
        Ok(Decision::Options { .. })
    ));
}

#[test]
fn scope_and_attachment_isolation() {
    let s = snapshot();
    let not_found = |vm, host: &str| {
        let e = route(
            &s,
            vm,
            host,
            Method::POST,
            "/v1/messages",
            Some("claude-opus-4-6"),
        )
        .unwrap_err()
        .0;
        assert!(
            matches!(
                e,
                Refusal::UnknownHost
                    | Refusal::UnknownCaller
                    | Refusal::UnknownIntegration
                    | Refusal::NotAttached
            ),
            "{vm:?} {host}: {e:?}"
        );
        e
    };
    // Alice's tag-attached integration: only on her tagged VM.
    assert_eq!(
        forward(
            &s,
            GPU,
            "tagged.int.exe.xyz",
            "/v1/messages",
            Some("claude-x")
        )
        .2,
        2
    );
    assert_eq!(
        not_found(DEVBOX, "tagged.int.exe.xyz"),
        Refusal::NotAttached
    );
    // Bob's VM reaching the name of Alice's integration gets Bob's own `llm`.
    assert_eq!(
        forward(
            &s,
            BOBS,
            "llm.int.exe.xyz",
            "/v1/messages",
            Some("claude-x")
        )
        .2,
        8
    );
    assert_eq!(
        not_found(BOBS, "tagged.int.exe.xyz"),
        Refusal::UnknownIntegration
    );
    assert_eq!(
        not_found(BOBS, "keyed.int.exe.xyz"),
        Refusal::UnknownIntegration
    );
    // Team integrations: the team's VMs only, by the team hostname.
    assert_eq!(
        forward(
            &s,
            DEVBOX,
            "shared.team.exe.xyz",
            "/v1/messages",
            Some("claude-x")
        )
        .2,
        6
    );
    assert_eq!(
        forward(
            &s,
            BOBS,
            "shared.team.exe.xyz",
            "/v1/messages",
            Some("claude-x")
        )
        .2,
        6
    );
    assert_eq!(
        not_found(GPU, "shared.team.exe.xyz"),
        Refusal::UnknownIntegration
    );
    assert_eq!(
        not_found(ELSEWHERE, "shared.team.exe.xyz"),
        Refusal::UnknownIntegration
    );
    assert_eq!(
        not_found(DEVBOX, "secret.team.exe.xyz"),
        Refusal::UnknownIntegration
    );
    assert_eq!(
        not_found(DEVBOX, "shared.int.exe.xyz"),
        Refusal::UnknownIntegration,
        "team name on the personal label"
    );
    // Team and personal integrations with the same name stay apart.
    assert_eq!(
        forward(
            &s,
            BOBS,
            "llm.team.exe.xyz",
            "/v1/messages",
            Some("claude-x")
        )
        .2,
        7
    );
    assert_eq!(not_found(DEVBOX, "llm.team.exe.xyz"), Refusal::NotAttached);
    // Unknown VMs and hosts.
    assert_eq!(
        not_found(VmId(99), "llm.int.exe.xyz"),
        Refusal::UnknownCaller
    );
    for host in [
        "",
        "llm.int.exe.xyz.evil",
        "llm.int.evil.com",
        "x.llm.int.exe.xyz",
    ] {
        assert_eq!(not_found(DEVBOX, host), Refusal::UnknownHost, "{host:?}");
    }
    // Case and port do not matter.
    assert_eq!(
        forward(
            &s,
            DEVBOX,
            "LLM.Int.EXE.xyz:443",
            "/v1/messages",
            Some("claude-x")
        )
        .2,
        1
    );
}

#[test]
fn refusals_look_identical_whatever_the_reason() {
    let s = snapshot();
    let bodies: Vec<(StatusCode, String)> = [
        (DEVBOX, "nope.int.exe.xyz"),
        (DEVBOX, "tagged.int.exe.xyz"),
        (BOBS, "keyed.int.exe.xyz"),
        (VmId(99), "llm.int.exe.xyz"),
        (DEVBOX, "llm.int.other.domain"),
    ]
    .into_iter()
    .map(|(vm, host)| {
        let m = Method::POST;
        let r = s
            .route(&RouteRequest::new(
                Some(vm),
                host,
                &m,
                "/v1/chat/completions",
            ))
            .unwrap_err();
        (r.status(), r.body())
    })
    .collect();
    assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:#?}");
    assert_eq!(bodies[0].0, StatusCode::NOT_FOUND);
    assert!(!bodies[0].1.contains("alice") && !bodies[0].1.contains("keyed"));
}

#[test]
fn a_request_naming_the_gateway_by_address_is_told_how_to_name_an_integration() {
    let s = snapshot();
    let m = Method::GET;
    for (caller, host, resolve, url) in [
        (
            DEVBOX,
            "127.0.0.1:7700",
            "--resolve llm.int.exe.xyz:7700:127.0.0.1",
            "http://llm.int.exe.xyz:7700/v1/models",
        ),
        (
            DEVBOX,
            "[::1]:7700",
            "--resolve llm.int.exe.xyz:7700:[::1]",
            "http://llm.int.exe.xyz:7700/v1/models",
        ),
        (
            DEVBOX,
            "localhost:8080",
            "--resolve llm.int.exe.xyz:8080:127.0.0.1",
            "http://llm.int.exe.xyz:8080/v1/models",
        ),
        (
            DEVBOX,
            "10.0.0.1",
            "--resolve llm.int.exe.xyz:80:10.0.0.1",
            "http://llm.int.exe.xyz/v1/models",
        ),
        // An address names no integration: an unknown caller learns nothing more.
        (
            VmId(99),
            "127.0.0.1:7700",
            "--resolve llm.int.exe.xyz:7700:127.0.0.1",
            "http://llm.int.exe.xyz:7700/v1/models",
        ),
    ] {
        let refused = s
            .route(&RouteRequest::new(Some(caller), host, &m, "/v1/models"))
            .unwrap_err();
        assert_eq!(
            refused.refusal,
            Refusal::HostIsAddress {
                host: host.into(),
                domain: "exe.xyz".into()
            }
        );
        assert_eq!(refused.status(), StatusCode::NOT_FOUND);
        let body: serde_json::Value = serde_json::from_str(&refused.body()).unwrap();
        assert_eq!(body["error"]["code"], "integration_not_found", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        for part in [
            &format!("named the gateway by its address ({host})"),
            "NAME.int.exe.xyz",
            &format!("`curl {resolve} {url}`"),
            "`--default-host llm.int.exe.xyz`",
        ] {
            assert!(message.contains(part), "{host}: {part:?} not in {message}");
        }
    }
    // The domain is the snapshot's.
    let other = Snapshot::build(
        ConfigRecords::default(),
        SnapshotOptions::default().with_domain("example.com"),
    );
    let refused = other
        .route(&RouteRequest::new(Some(DEVBOX), "127.0.0.1:80", &m, "/"))
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("`--default-host llm.int.example.com`"),
        "{refused}"
    );
    // A hostname that is not an integration's still answers as any unknown name.
    let refused = s
        .route(&RouteRequest::new(Some(DEVBOX), "gateway.example", &m, "/"))
        .unwrap_err();
    assert_eq!(refused.refusal, Refusal::UnknownHost);
}

#[test]
fn provider_and_model_refusals() {
    let s = snapshot();
    let h = "keyed.int.exe.xyz"; // openai on byok, others disabled
    assert_eq!(
        forward(&s, DEVBOX, h, "/v1/responses", Some("gpt-5.5")).0,
        Provider::OpenAi
    );
    let (e, d) = route(
        &s,
        DEVBOX,
        h,
        Method::POST,
        "/v1/messages",
        Some("claude-opus-4-6"),
    )
    .unwrap_err();
    assert_eq!(
        e,
        Refusal::ProviderDisabled {
            provider: Provider::Anthropic,
            integration: "keyed".parse().unwrap()
        }
    );
    assert_eq!(d, Dialect::Anthropic);
    let (e, d) = route(&s, DEVBOX, h, Method::POST, "/anthropic/v1/messages", None).unwrap_err();
    assert!(matches!(
        e,
        Refusal::ProviderDisabled {
            provider: Provider::Anthropic,
            ..
        }
    ));
    assert_eq!(d, Dialect::Anthropic);
    let (e, d) = route(
        &s,
        DEVBOX,
        h,
        Method::POST,
        "/fireworks/inference/v1/chat/completions",
        None,
    )
    .unwrap_err();
    assert!(matches!(
        e,
        Refusal::ProviderDisabled {
            provider: Provider::Fireworks,
            ..
        }
    ));
    assert_eq!(d, Dialect::OpenAi);
    assert!(matches!(
        route(
            &s,
            DEVBOX,
            h,
            Method::POST,
            "/v1/chat/completions",
            Some("kimi-k2-instruct")
        )
        .unwrap_err()
        .0,
        Refusal::ProviderDisabled {
            provider: Provider::Fireworks,
            ..
        }
    ));

    let h = "llm.int.exe.xyz";
    let (e, d) = route(
        &s,
        DEVBOX,
        h,
        Method::POST,
        "/v1/chat/completions",
        Some("llama-3"),
    )
    .unwrap_err();
    assert!(matches!(e, Refusal::UnknownModel { .. }));
    assert_eq!(d, Dialect::OpenAi);
    assert!(e.message().contains("GET /v1/models"), "{}", e.message());
    assert_eq!(
        route(&s, DEVBOX, h, Method::POST, "/v1/messages", None).unwrap_err(),
        (Refusal::MissingModel, Dialect::Anthropic)
    );
    assert_eq!(
        route(&s, DEVBOX, h, Method::POST, "/v1/messages", Some(""))
            .unwrap_err()
            .0,
        Refusal::MalformedModel
    );
    // Translated on /v1/messages (tests/translate_route.rs); an endpoint
    // with no counterpart in the model's API is refused.
    let (e, d) = route(&s, DEVBOX, h, Method::POST, "/v1/complete", Some("gpt-5.5")).unwrap_err();
    assert!(
        matches!(
            e,
            Refusal::WrongEndpoint {
                provider: Provider::OpenAi,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(d, Dialect::Anthropic);
    let (e, _) = route(
        &s,
        DEVBOX,
        h,
        Method::POST,
        "/v1/embeddings",
        Some("claude-opus-4-6"),
    )
    .unwrap_err();
    assert!(e.message().contains("/v1/messages"), "{}", e.message());
}

#[test]
fn path_tricks_are_refused() {
    let s = snapshot();
    let h = "llm.int.exe.xyz";
    for (target, want) in [
        ("/v1/../admin", PathError::DotSegment),
        ("/openai/v1/%2e%2e/%2e%2e/admin", PathError::DotSegment),
        ("/openai%2fv1/models", PathError::EncodedSeparator),
        ("/anthropic/v1/messages%2F..", PathError::EncodedSeparator),
        ("/openai/openai/v1/models", PathError::DoublePrefix),
        (
            "/anthropic/openai/v1/chat/completions",
            PathError::DoublePrefix,
        ),
        (
            "/fireworks/inference/openai/v1/models",
            PathError::DoublePrefix,
        ),
        ("//v1/messages", PathError::EmptySegment),
        ("http://evil/v1/messages", PathError::NotAbsolute),
    ] {
        let (e, _) = route(&s, DEVBOX, h, Method::POST, target, Some("claude-x")).unwrap_err();
        assert_eq!(e, Refusal::BadPath(want), "{target}");
    }
}

#[test]
fn dialects_follow_the_route() {
    let s = snapshot();
    let dialect = |target: &str| {
        route(&s, DEVBOX, "nope.int.exe.xyz", Method::POST, target, None)
            .unwrap_err()
            .1
    };
    assert_eq!(dialect("/v1/messages"), Dialect::Anthropic);
    assert_eq!(
        dialect("/v1/messages/count_tokens?beta=true"),
        Dialect::Anthropic
    );
    assert_eq!(dialect("/anthropic/v1/models"), Dialect::Anthropic);
    assert_eq!(
        dialect("/fireworks/inference/v1/messages"),
        Dialect::Anthropic
    );
    assert_eq!(dialect("/v1/chat/completions"), Dialect::OpenAi);
    assert_eq!(dialect("/v1/responses"), Dialect::OpenAi);
    assert_eq!(dialect("/openai/v1/models"), Dialect::OpenAi);
    assert_eq!(
        dialect("/fireworks/inference/v1/chat/completions"),
        Dialect::OpenAi
    );
}

#[test]
fn reflection_paths_and_fields() {
    let s = snapshot();
    let h = "reflection.int.exe.xyz"; // fields: email, tags
    let refl = |target: &str, method: Method| match route(&s, GPU, h, method, target, None) {
        Ok(Decision::Reflection(r)) => Ok(r.path),
        Ok(other) => panic!("{other:?}"),
        Err((e, _)) => Err(e),
    };
    assert_eq!(refl("/", Method::GET), Ok(ReflectionPath::Index));
    assert_eq!(
        refl("/email", Method::GET),
        Ok(ReflectionPath::Field(ReflectionField::Email))
    );
    assert_eq!(
        refl("/tags", Method::HEAD),
        Ok(ReflectionPath::Field(ReflectionField::Tags))
    );
    assert_eq!(
        refl("/integrations", Method::GET),
        Err(Refusal::FieldHidden)
    );
    assert_eq!(refl("/comment", Method::GET), Err(Refusal::FieldHidden));
    assert_eq!(refl("/v1/models", Method::GET), Err(Refusal::NoSuchRoute));
    assert_eq!(
        refl("/email", Method::POST),
        Err(Refusal::MethodNotAllowed { allowed: "GET" })
    );
    assert_eq!(
        refl("/../email", Method::GET),
        Err(Refusal::BadPath(PathError::DotSegment))
    );
    let Ok(Decision::Reflection(r)) = route(
        &s,
        GPU,
        "me.int.exe.xyz",
        Method::GET,
        "/default_port",
        None,
    ) else {
        panic!()
    };
    assert_eq!(r.settings.fields, ReflectionFields::ALL);
    assert_eq!(r.vm.id, GPU);
    // Reflection tells a VM what is attached to it, and nothing else.
    let names: Vec<String> = s
        .attached_to(GPU)
        .iter()
        .map(|(_, i)| i.name.to_string())
        .collect();
    assert_eq!(names, ["llm", "me", "reflection", "tagged"]);
    let names: Vec<String> = s
        .attached_to(BOBS)
        .iter()
        .map(|(scope, i)| format!("{}.{}", i.name, scope.label()))
        .collect();
    assert_eq!(names, ["llm.int", "llm.team", "shared.team"]);
}

#[test]
fn refusal_bodies_use_the_dialect() {
    let s = snapshot();
    let m = Method::POST;
    let r = s
        .route(&RouteRequest::new(
            Some(DEVBOX),
            "keyed.int.exe.xyz",
            &m,
            "/anthropic/v1/messages",
        ))
        .unwrap_err();
    let body: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "not_found_error");
    assert_eq!(
        body["error"]["message"],
        "provider anthropic is disabled on integration keyed; enable it with `integrations edit keyed --anthropic=gateway` (or =byok)"
    );
    let r = s
        .route_with_model(
            &RouteRequest::new(Some(DEVBOX), "llm.int.exe.xyz", &m, "/v1/chat/completions"),
            None,
        )
        .unwrap_err();
    let body: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "invalid_model");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
