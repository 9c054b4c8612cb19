//! Property tests over random configurations and requests: the routing
//! isolation invariants hold whatever the configuration.
#![allow(clippy::unwrap_used, missing_docs)]

use http::Method;
use llm_integration_core::path::check_path;
use llm_integration_core::seams::TokenUsage;
use llm_integration_core::usage::UsageMeter;
use llm_integration_core::{
    Attachment, AttachmentSpec, ConfigRecords, CredentialId, Decision, IntegrationConfig,
    IntegrationId, IntegrationKind, KeyHint, LlmSettings, Owner, Provider, ProviderSource,
    ReflectionSettings, RouteRequest, Snapshot, SnapshotOptions, Source, Team, TeamId, User,
    UserId, Vm, VmId,
};
use proptest::prelude::*;

const NAMES: [&str; 4] = ["llm", "work", "shared", "r"];
const TAGS: [&str; 3] = ["llm", "gpu", "ci"];
const MODELS: [&str; 8] = [
    "claude-opus-4-6",
    "gpt-5.5",
    "accounts/fireworks/models/x",
    "anthropic/claude-x",
    "fireworks/kimi",
    "text-embedding-3-small",
    "mystery",
    "o3",
];
const TARGETS: [&str; 14] = [
    "/",
    "/v1/messages",
    "/v1/messages?beta=true",
    "/v1/chat/completions",
    "/v1/responses",
    "/v1/models",
    "/v1/models/claude-x",
    "/v1/files",
    "/anthropic/v1/messages",
    "/openai/v1/models",
    "/fireworks/inference/v1/chat/completions",
    "/openai/v1/../../x",
    "/email",
    "/integrations",
];

fn source() -> impl Strategy<Value = Source> {
    prop_oneof![
        Just(Source::Gateway),
        Just(Source::Disabled),
        (1i64..5).prop_map(|c| Source::Byok {
            credential: CredentialId(c),
            hint: KeyHint::from_last4(None)
        }),
        Just(Source::Chatgpt {
            account: "work".parse().unwrap()
        }),
    ]
}

fn attachment() -> impl Strategy<Value = AttachmentSpec> {
    prop_oneof![
        Just(AttachmentSpec::AutoAll),
        (0usize..4).prop_map(|i| AttachmentSpec::Vm(format!("vm{i}").parse().unwrap())),
        (0usize..3).prop_map(|i| AttachmentSpec::Tag(TAGS[i].parse().unwrap())),
    ]
}

fn records() -> impl Strategy<Value = ConfigRecords> {
    let vms = prop::collection::vec(
        (
            1i64..4,
            prop::option::of(1i64..3),
            prop::collection::btree_set(0usize..3, 0..3),
        ),
        1..5,
    );
    let kind = prop_oneof![
        3 => (source(), source(), source()).prop_map(|(a, o, f)| IntegrationKind::Llm(LlmSettings { anthropic: a, openai: o, fireworks: f, translate: true })),
        1 => Just(IntegrationKind::Reflection(ReflectionSettings::default())),
    ];
    let integrations = prop::collection::vec(
        (
            prop::bool::ANY,
            1i64..4,
            0usize..4,
            kind,
            prop::collection::vec(attachment(), 0..3),
        ),
        0..10,
    );
    let teams = prop::collection::vec(prop::collection::btree_set(1i64..4, 0..3), 2..=2);
    (vms, integrations, teams).prop_map(|(vms, integrations, teams)| ConfigRecords {
        users: (1..4)
            .map(|i| User::new(UserId(i), format!("u{i}@example.com")))
            .collect(),
        teams: teams
            .into_iter()
            .enumerate()
            .map(|(i, members)| Team {
                id: TeamId(i as i64 + 1),
                name: format!("t{i}").parse().unwrap(),
                members: members.into_iter().map(UserId).collect(),
            })
            .collect(),
        vms: vms
            .into_iter()
            .enumerate()
            .map(|(i, (owner, team, tags))| {
                let mut vm = Vm::new(
                    VmId(i as i64),
                    format!("vm{i}").parse().unwrap(),
                    UserId(owner),
                );
                vm.team = team.map(TeamId);
                vm.tags = tags.into_iter().map(|t| TAGS[t].parse().unwrap()).collect();
                vm
            })
            .collect(),
        integrations: integrations
            .into_iter()
            .enumerate()
            .map(
                |(i, (team, owner, name, kind, attachments))| IntegrationConfig {
                    id: IntegrationId(i as i64),
                    owner: if team {
                        Owner::Team(TeamId(owner.min(2)))
                    } else {
                        Owner::User(UserId(owner))
                    },
                    name: NAMES[name].parse().unwrap(),
                    comment: String::new(),
                    kind,
                    attachments,
                },
            )
            .collect(),
    })
}

fn request() -> impl Strategy<Value = (i64, String, String, Option<&'static str>, bool)> {
    let host = prop_oneof![
        (0usize..4, prop::bool::ANY).prop_map(|(n, team)| format!(
            "{}.{}.exe.xyz",
            NAMES[n],
            if team { "team" } else { "int" }
        )),
        "[a-z.:]{0,20}",
    ];
    (
        0i64..6,
        host,
        prop_oneof![
            (0usize..14).prop_map(|i| TARGETS[i].to_owned()),
            "/[ -~]{0,30}"
        ],
        prop::option::of((0usize..8).prop_map(|i| MODELS[i])),
        prop::bool::ANY,
    )
}

/// The integration a decision reached must be in the VM's scope, attached
/// to it, and named by the host.
fn check_reach(s: &Snapshot, vm_id: i64, host: &str, integration: &IntegrationConfig) {
    let vm = s.vm(VmId(vm_id)).expect("routed for an unknown VM");
    match integration.owner {
        Owner::User(u) => {
            assert_eq!(u, vm.owner, "another owner's integration");
            assert!(host
                .to_ascii_lowercase()
                .starts_with(&format!("{}.int.", integration.name)));
        }
        Owner::Team(t) => {
            assert_eq!(Some(t), vm.team, "another team's integration");
            assert!(host
                .to_ascii_lowercase()
                .starts_with(&format!("{}.team.", integration.name)));
        }
    }
    assert!(
        integration.attachments.iter().any(|a| a.matches(vm)),
        "not attached"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn routing_invariants(records in records(), requests in prop::collection::vec(request(), 1..16)) {
        let s = Snapshot::build(records, SnapshotOptions::default());
        for (vm, host, target, model, anthropic) in requests {
            for method in [Method::GET, Method::POST] {
                let req = RouteRequest::new(Some(VmId(vm)), &host, &method, &target).with_anthropic_client(anthropic);
                match s.route_with_model(&req, model) {
                    Ok(Decision::Forward(f)) => {
                        check_reach(&s, vm, &host, f.integration);
                        prop_assert!(f.source.is_enabled(), "a disabled provider was chosen");
                        let IntegrationKind::Llm(settings) = &f.integration.kind else { panic!("forward on reflection") };
                        prop_assert_eq!(settings.source(f.provider), f.source);
                        let base = format!("{}/v1", f.provider.upstream_prefix());
                        prop_assert!(f.upstream_path.starts_with(&base), "{} escapes {}", f.upstream_path, base);
                        let path = f.upstream_path.split('?').next().unwrap();
                        prop_assert!(check_path(path).is_ok(), "{}", path);
                    }
                    Ok(Decision::ListModels(l)) => {
                        check_reach(&s, vm, &host, l.integration);
                        for p in l.providers.iter() {
                            prop_assert!(l.settings.source(p).is_enabled());
                        }
                    }
                    Ok(Decision::Reflection(r)) => {
                        check_reach(&s, vm, &host, r.integration);
                        prop_assert_eq!(r.vm.id, VmId(vm));
                    }
                    Ok(Decision::Liveness) | Err(_) => {}
                    Ok(other) => panic!("{other:?}"),
                }
            }
        }
    }

    #[test]
    fn arbitrary_targets_never_escape(target in "[ -~]{0,60}", model in prop::option::of("[ -~]{0,20}")) {
        let text = format!("1\nllm.int.exe.xyz\nPOST\n{target}\n{}", model.unwrap_or_default());
        llm_integration_core::fuzzing::route(text.as_bytes());
    }

    #[test]
    fn attachment_specs_round_trip(spec in attachment(), raw in "[a-z:_0-9-]{0,12}") {
        let printed = spec.to_string();
        prop_assert_eq!(printed.parse::<AttachmentSpec>().unwrap(), spec);
        if let Ok(parsed) = raw.parse::<AttachmentSpec>() {
            prop_assert_eq!(parsed.to_string(), raw);
        }
    }

    #[test]
    fn arbitrary_command_lines_never_panic(line in "[ -~]{0,80}") {
        llm_integration_core::fuzzing::command_line(line.as_bytes());
    }
}

#[test]
fn disabled_providers_are_never_listed() {
    let mut i = IntegrationConfig::default_llm(IntegrationId(1), Owner::User(UserId(1)));
    i.kind = IntegrationKind::Llm(LlmSettings {
        anthropic: Source::Disabled,
        openai: Source::Gateway,
        fireworks: Source::Disabled,
        translate: true,
    });
    let s = Snapshot::build(
        ConfigRecords {
            users: vec![User::new(UserId(1), "a@example.com")],
            vms: vec![Vm::new(VmId(1), "vm".parse().unwrap(), UserId(1))],
            integrations: vec![i],
            ..ConfigRecords::default()
        },
        SnapshotOptions::default(),
    );
    let m = Method::GET;
    let Ok(Decision::ListModels(l)) = s.route_with_model(
        &RouteRequest::new(Some(VmId(1)), "llm.int.exe.xyz", &m, "/v1/models"),
        None,
    ) else {
        panic!()
    };
    assert_eq!(
        l.providers.iter().collect::<Vec<_>>(),
        vec![Provider::OpenAi]
    );
}

/// Recorded streams (from the mock upstream) and the usage each carries.
const STREAMS: [(&str, &str, bool, TokenUsage); 4] = [
    (
        "anthropic_messages.sse",
        include_str!("fixtures/anthropic_messages.sse"),
        true,
        TokenUsage {
            input: 12,
            output: 5,
            cache_creation: 2,
            cache_read: 3,
        },
    ),
    (
        "openai_chat.sse",
        include_str!("fixtures/openai_chat.sse"),
        true,
        TokenUsage {
            input: 12,
            output: 5,
            cache_creation: 0,
            cache_read: 0,
        },
    ),
    (
        "openai_responses.sse",
        include_str!("fixtures/openai_responses.sse"),
        true,
        TokenUsage {
            input: 9,
            output: 5,
            cache_creation: 0,
            cache_read: 3,
        },
    ),
    (
        "anthropic_messages.json",
        include_str!("fixtures/anthropic_messages.json"),
        false,
        TokenUsage {
            input: 12,
            output: 3,
            cache_creation: 2,
            cache_read: 3,
        },
    ),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any split of a recorded stream into chunks yields the same usage.
    #[test]
    fn usage_is_the_same_for_any_split(cuts in prop::collection::vec(0usize..4096, 0..40), which in 0usize..4) {
        let (name, body, sse, expected) = STREAMS[which];
        let bytes = body.as_bytes();
        let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
        points.sort_unstable();
        let mut meter = UsageMeter::new(sse);
        let mut last = 0;
        for p in points.into_iter().chain(std::iter::once(bytes.len())) {
            meter.feed(&bytes[last..p]);
            last = p;
        }
        prop_assert_eq!(meter.finish(), Some(expected), "{}", name);
    }
}
