//! Entry points for the fuzz targets in `fuzz/` (and for tests that replay
//! their inputs): each takes arbitrary bytes and must never panic.

use std::sync::OnceLock;

use http::Method;

use crate::command::parse_command_line;
use crate::domain::{
    ConfigRecords, IntegrationConfig, IntegrationId, IntegrationKind, Owner, Team, TeamId, User,
    UserId, Vm, VmId,
};
use crate::router::{Decision, RouteRequest};
use crate::snapshot::{Snapshot, SnapshotOptions};
use crate::source::Source;

/// Parses arbitrary bytes as a command line; a printed command must parse
/// back to itself (keys redacted).
pub fn command_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(crate::command::Parsed::Command(parsed)) = parse_command_line(line) {
        let printed = parsed.command.to_string();
        match parse_command_line(&printed) {
            Ok(crate::command::Parsed::Command(again)) => {
                assert_eq!(again.command, parsed.command.redacted(), "{printed}");
            }
            other => panic!("{printed:?} did not parse back: {other:?}"),
        }
    }
}

/// A small fixed configuration: two users, a team, VMs in and out of it.
pub fn sample_snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let (alice, bob, team) = (UserId(1), UserId(2), TeamId(1));
        let vm = |id, name: &str, owner| {
            Vm::new(
                VmId(id),
                name.parse().unwrap_or_else(|_| unreachable!()),
                owner,
            )
        };
        let mut devbox = vm(1, "devbox", alice);
        devbox.team = Some(team);
        let mut shared = IntegrationConfig::default_llm(IntegrationId(3), Owner::Team(team));
        if let IntegrationKind::Llm(s) = &mut shared.kind {
            s.anthropic = Source::Disabled;
        }
        Snapshot::build(
            ConfigRecords {
                users: vec![
                    User::new(alice, "a@example.com"),
                    User::new(bob, "b@example.com"),
                ],
                teams: vec![Team {
                    id: team,
                    name: crate::names::TeamName::from_static("core"),
                    members: [alice].into(),
                }],
                vms: vec![devbox, vm(2, "bobs", bob)],
                integrations: vec![
                    IntegrationConfig::default_llm(IntegrationId(1), Owner::User(alice)),
                    IntegrationConfig::default_reflection(IntegrationId(2), Owner::User(alice)),
                    shared,
                    IntegrationConfig::default_llm(IntegrationId(4), Owner::User(bob)),
                ],
            },
            SnapshotOptions::default(),
        )
    })
}

/// Routes arbitrary bytes, read as `VM\nHOST\nMETHOD\nTARGET\nMODEL`,
/// against [`sample_snapshot`]; a forwarded path must stay under its
/// provider's `/v1`.
pub fn route(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(5, '\n');
    let caller = parts.next().and_then(|s| s.parse::<i64>().ok()).map(VmId);
    let host = parts.next().unwrap_or("");
    let method =
        Method::from_bytes(parts.next().unwrap_or("GET").as_bytes()).unwrap_or(Method::GET);
    let target = parts.next().unwrap_or("/");
    let model = parts.next();
    let request = RouteRequest::new(caller, host, &method, target);
    if let Ok(Decision::Forward(f)) = sample_snapshot().route_with_model(&request, model) {
        let base = format!("{}/v1", f.provider.upstream_prefix());
        assert!(
            f.upstream_path.starts_with(&base),
            "{} escapes {base}",
            f.upstream_path
        );
        let path = f.upstream_path.split('?').next().unwrap_or("");
        assert!(crate::path::check_path(path).is_ok(), "{path}");
    }
}
