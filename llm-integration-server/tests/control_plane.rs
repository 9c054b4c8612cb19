//! The control plane through its real listener: `POST /exec` on an
//! in-process server bound to 127.0.0.1:0, and a mock provider for
//! `integrations test`. Every test runs on both backends, as
//! `NAME::sqlite` (a file in a temporary directory) and `NAME::postgres`
//! (a schema of its own on the test PostgreSQL server).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::routing::get;

use llm_integration_core::{IntegrationKind, Owner, Provider, Scope, Source, TeamName};
use llm_integration_server::admin::{AdminCommand, TeamsCommand, VmAddArgs, VmsCommand};
use llm_integration_server::store::Database;
use llm_integration_server::testing::{Dirs, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};

const GOOD_KEY: &str = "sk-good-0123456789abcdefghij";

/// A provider that accepts GOOD_KEY (as x-api-key or bearer) on /v1/models.
async fn mock_provider() -> String {
    async fn models(headers: HeaderMap) -> (StatusCode, axum::Json<Value>) {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_start_matches("Bearer ").to_owned());
        let x_api_key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if bearer.as_deref() == Some(GOOD_KEY) || x_api_key.as_deref() == Some(GOOD_KEY) {
            (
                StatusCode::OK,
                axum::Json(json!({"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]})),
            )
        } else {
            (
                StatusCode::UNAUTHORIZED,
                axum::Json(
                    json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}),
                ),
            )
        }
    }
    let app = axum::Router::new()
        .route("/v1/models", get(models))
        .route("/inference/v1/models", get(models));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn every_command_works(dirs: Dirs) {
    let upstream = mock_provider().await;
    let s = Server::start(&dirs, &upstream).await;

    // A new user has the defaults.
    let list = s.json("integrations list").await;
    let names: Vec<&str> = list["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["llm", "reflection"]);
    let llm = s.json("integrations show llm").await;
    assert_eq!(llm["hostname"], "llm.int.exe.xyz");
    assert_eq!(llm["attachments"], json!(["auto:all"]));
    for p in ["anthropic", "openai", "fireworks"] {
        assert_eq!(llm["providers"][p]["source"], "gateway");
    }
    assert!(s.ok("integrations list").await.contains("llm.int.exe.xyz"));

    // The seed's BYOK example, key from standard input.
    let (status, body) = s
        .with_stdin(
            "integrations add llm --name openai-key --openai=byok --openai-key=- --anthropic=disabled --fireworks=disabled --attach tag:llm",
            GOOD_KEY,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("set (…ghij)"), "{body}");
    let shown = s.json("integrations show openai-key").await;
    assert_eq!(
        shown["providers"]["openai"],
        json!({"source": "byok", "key": "set (…ghij)"})
    );
    assert_eq!(shown["providers"]["anthropic"]["source"], "disabled");

    // The snapshot the data plane routes on has it, with its key's id.
    let snapshot = s.live.snapshot();
    let user = snapshot
        .vm(snapshot
            .vm_by_address("127.0.0.1".parse().unwrap())
            .unwrap())
        .unwrap()
        .owner;
    let stored = snapshot
        .integration_named(Owner::User(user), "openai-key")
        .unwrap();
    let IntegrationKind::Llm(settings) = &stored.kind else {
        panic!()
    };
    let Source::Byok { credential, .. } = settings.openai else {
        panic!("{settings:?}")
    };
    assert!(s
        .store
        .sealed_credential(credential)
        .await
        .unwrap()
        .is_some());

    // test: ok with the good key, the provider's words with a bad one.
    let tested = s.json("integrations test openai-key").await;
    assert_eq!(tested["providers"]["openai"]["status"], "ok", "{tested}");
    assert_eq!(tested["providers"]["anthropic"]["status"], "skipped");
    let (status, body) = s
        .with_stdin(
            "integrations edit openai-key --openai=byok --openai-key=-",
            "sk-bad-0000000000000000000000",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body, outcome) = s
        .raw(
            Some(&s.token),
            "text/plain",
            b"integrations test openai-key --provider openai".to_vec(),
        )
        .await;
    assert_eq!(
        (status, outcome.as_str()),
        (StatusCode::OK, "failed"),
        "{body}"
    );
    assert!(
        body.contains("HTTP 401: Incorrect API key provided"),
        "{body}"
    );
    // The old key was replaced, not kept beside the new one.
    let IntegrationKind::Llm(after) = &s
        .live
        .snapshot()
        .integration_named(Owner::User(user), "openai-key")
        .unwrap()
        .kind
        .clone()
    else {
        panic!()
    };
    let Source::Byok {
        credential: new_credential,
        ..
    } = after.openai
    else {
        panic!()
    };
    assert_ne!(new_credential, credential);
    assert!(
        s.store
            .sealed_credential(credential)
            .await
            .unwrap()
            .is_none(),
        "old key deleted"
    );

    // edit: sources, comment; byok without a key keeps the stored one.
    let edited = s
        .json("integrations edit openai-key --fireworks=gateway --comment 'shared by CI'")
        .await;
    assert_eq!(
        edited["integration"]["providers"]["fireworks"]["source"],
        "gateway"
    );
    assert_eq!(edited["integration"]["comment"], "shared by CI");
    let kept = s.json("integrations edit openai-key --openai=byok").await;
    assert_eq!(kept["integration"]["providers"]["openai"]["source"], "byok");

    // reflection with fields, then edit them.
    let r = s
        .json("integrations add reflection --name me --fields email,tags --attach vm:local")
        .await;
    assert_eq!(r["integration"]["fields"], "email,tags");
    let r = s.json("integrations edit me --fields all").await;
    assert_eq!(r["integration"]["fields"], "all");

    // attach, detach, rename, remove.
    let a = s.json("integrations attach openai-key vm:local").await;
    assert_eq!(
        a["integration"]["attachments"],
        json!(["tag:llm", "vm:local"])
    );
    assert!(s
        .live
        .snapshot()
        .attached(
            snapshot
                .vm_by_address("127.0.0.1".parse().unwrap())
                .unwrap(),
            Scope::Personal,
            "openai-key"
        )
        .is_some());
    let d = s.json("integrations detach openai-key tag:llm").await;
    assert_eq!(d["integration"]["attachments"], json!(["vm:local"]));
    let body = s.ok("integrations rename openai-key byok").await;
    assert!(body.contains("byok.int.exe.xyz"), "{body}");
    assert_eq!(
        s.run("integrations show openai-key").await.0,
        StatusCode::NOT_FOUND
    );
    assert!(s
        .ok("integrations remove byok")
        .await
        .contains("removed integration byok"));
    assert_eq!(
        s.run("integrations show byok").await.0,
        StatusCode::NOT_FOUND
    );

    // tag and untag this machine's VM.
    let t = s.json("tag local llm gpu").await;
    assert_eq!(t["tags"], json!(["gpu", "llm"]));
    let t = s.json("tag -d local gpu").await;
    assert_eq!(t["tags"], json!(["llm"]));
    assert!(s
        .live
        .snapshot()
        .vm(snapshot
            .vm_by_address("127.0.0.1".parse().unwrap())
            .unwrap())
        .unwrap()
        .tags
        .contains("llm"));

    // The seed's managed default, reinstalled under another name.
    let g = s
        .json("integrations add llm --name managed --attach auto:all")
        .await;
    assert_eq!(g["integration"]["providers"]["openai"]["source"], "gateway");

    // Several keys from standard input: one line each, anthropic first.
    let (status, body) = s
        .with_stdin(
            "integrations add llm --name two --openai=byok --openai-key=- --anthropic=byok --anthropic-key=-",
            "sk-ant-aaaaaaaaaaaaaaaa1111\nsk-oai-bbbbbbbbbbbbbbbb2222\n",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let two = s.json("integrations show two").await;
    assert_eq!(two["providers"]["anthropic"]["key"], "set (…1111)");
    assert_eq!(two["providers"]["openai"]["key"], "set (…2222)");
    let (status, body) = s
        .with_stdin(
            "integrations edit two --openai=byok --openai-key=- --anthropic=byok --anthropic-key=-",
            "sk-only-one-line-here-0000",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("one line each in the order anthropic, openai"),
        "{body}"
    );

    // ChatGPT accounts: none yet.
    assert!(s
        .ok("integrations setup chatgpt --list")
        .await
        .contains("no ChatGPT accounts"));

    // Help is an answer, not an error.
    let help = s.ok("integrations add llm --help").await;
    assert!(help.contains("--openai-key"), "{help}");
    s.stop().await;
}

async fn teams_and_permissions(dirs: Dirs) {
    let upstream = mock_provider().await;
    let s = Server::start(&dirs, &upstream).await;
    let bob = s.user("bob@example.com").await;
    let carol = s.user("carol@example.com").await;
    for (team, members) in [
        ("core", vec!["owner@localhost", "bob@example.com"]),
        ("other", vec!["carol@example.com"]),
    ] {
        s.team(team, &members).await;
    }
    s.admin(AdminCommand::Vms(VmsCommand::Add(VmAddArgs {
        name: "bobs".parse().unwrap(),
        owner: "bob@example.com".into(),
        team: Some("core".parse::<TeamName>().unwrap()),
        addresses: vec!["127.0.0.3".parse().unwrap()],
        tags: vec![],
        comment: String::new(),
        port: None,
    })))
    .await;

    // A member adds a team integration; another member sees and manages it.
    let t = s
        .json("integrations add llm --name shared --team core --attach vm:bobs")
        .await;
    assert_eq!(t["integration"]["hostname"], "shared.team.exe.xyz");
    assert_eq!(
        t["integration"]["owner"],
        json!({"kind": "team", "team": "core"})
    );
    let (status, body) = s
        .run_as(
            &bob,
            "integrations edit shared --team core --comment 'by bob'",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, list) = s.run_as(&bob, "integrations list").await;
    assert!(list.contains("shared.team.exe.xyz"), "{list}");
    // A non-member cannot see or touch it, nor tell it exists.
    let (status, body) = s
        .run_as(&carol, "integrations show shared --team core")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("not a member of a team named core"), "{body}");
    let (_, list) = s.run_as(&carol, "integrations list").await;
    assert!(!list.contains("shared"), "{list}");
    // Personal integrations are their owner's only.
    s.ok("integrations add llm --name private").await;
    let (status, body) = s.run_as(&bob, "integrations remove private").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(s.ok("integrations show private").await.contains("private"));
    // Bob's own `llm` is not the owner's.
    let (status, _) = s
        .run_as(&bob, "integrations edit llm --openai=disabled")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.json("integrations show llm").await["providers"]["openai"]["source"],
        "gateway"
    );
    // VMs: only the owner tags them.
    let (status, body) = s.run("tag bobs x").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(s.run_as(&bob, "tag bobs x").await.0, StatusCode::OK);
    // vm: attachments must name a VM in scope.
    let (status, body) = s.run("integrations attach private vm:bobs").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        s.run("integrations attach shared vm:bobs --team core")
            .await
            .0,
        StatusCode::CONFLICT
    );
    // Deleting the team removes its integrations.
    s.admin(AdminCommand::Teams(TeamsCommand::Remove {
        name: "core".parse().unwrap(),
    }))
    .await;
    let records = s.store.load().await.unwrap();
    assert!(records
        .integrations
        .iter()
        .all(|i| !matches!(i.owner, Owner::Team(_))));
    assert!(records
        .vms
        .iter()
        .find(|v| v.name.as_str() == "bobs")
        .unwrap()
        .team
        .is_none());
    s.stop().await;
}

async fn bad_inputs_get_clear_answers(dirs: Dirs) {
    let upstream = mock_provider().await;
    let s = Server::start(&dirs, &upstream).await;
    let bob = s.user("bob@example.com").await;
    s.team("core", &["owner@localhost"]).await;
    s.ok("integrations add llm --name taken").await;
    s.ok("integrations add reflection --name refl").await;
    s.run_as(&bob, "integrations add llm --name bobs").await;

    let cases: &[(&str, StatusCode, &str)] = &[
        (
            "integrations list --frobnicate",
            StatusCode::BAD_REQUEST,
            "--frobnicate",
        ),
        ("integrations explode", StatusCode::BAD_REQUEST, "explode"),
        (
            "integrations add llm --name Bad_Name",
            StatusCode::BAD_REQUEST,
            "invalid integration name",
        ),
        (
            "integrations add llm --name x --attach everywhere",
            StatusCode::BAD_REQUEST,
            "vm:NAME, tag:NAME or auto:all",
        ),
        (
            "integrations add llm --name x --anthropic=magic",
            StatusCode::BAD_REQUEST,
            "gateway, byok, chatgpt, custom or disabled",
        ),
        (
            "integrations add llm --name x --team core --openai=chatgpt --openai-account=w",
            StatusCode::BAD_REQUEST,
            "team integrations",
        ),
        (
            "integrations add llm --name x --anthropic=chatgpt",
            StatusCode::BAD_REQUEST,
            "only be the openai source",
        ),
        (
            "integrations add llm --name x --openai-key=sk-zzz",
            StatusCode::BAD_REQUEST,
            "--openai=byok",
        ),
        (
            "integrations add llm --name x --openai=byok",
            StatusCode::BAD_REQUEST,
            "needs the key",
        ),
        (
            "integrations add llm --name x --openai=chatgpt",
            StatusCode::BAD_REQUEST,
            "--openai-account",
        ),
        (
            "integrations add llm --name x --openai=chatgpt --openai-account=work",
            StatusCode::NOT_FOUND,
            "setup chatgpt --name work",
        ),
        (
            "integrations add llm --name taken",
            StatusCode::CONFLICT,
            "already exists",
        ),
        (
            "integrations rename taken llm",
            StatusCode::CONFLICT,
            "already exists",
        ),
        (
            "integrations attach llm auto:all",
            StatusCode::CONFLICT,
            "already attached",
        ),
        (
            "integrations detach llm tag:nope",
            StatusCode::NOT_FOUND,
            "not attached to tag:nope",
        ),
        (
            "integrations show bobs",
            StatusCode::NOT_FOUND,
            "no integration named bobs",
        ),
        (
            "integrations edit llm --team other --comment x",
            StatusCode::NOT_FOUND,
            "not a member of a team named other",
        ),
        (
            "integrations attach taken vm:ghost",
            StatusCode::NOT_FOUND,
            "no VM named ghost",
        ),
        (
            "integrations edit taken --openai=byok --openai-key=-",
            StatusCode::BAD_REQUEST,
            "standard input",
        ),
        (
            "integrations edit taken",
            StatusCode::BAD_REQUEST,
            "nothing to change",
        ),
        (
            "integrations edit taken --fields all",
            StatusCode::BAD_REQUEST,
            "reflection integrations",
        ),
        (
            "integrations edit refl --openai=disabled",
            StatusCode::BAD_REQUEST,
            "llm integrations",
        ),
        (
            "integrations edit taken --openai=byok",
            StatusCode::BAD_REQUEST,
            "no stored openai key",
        ),
        (
            "integrations test refl",
            StatusCode::BAD_REQUEST,
            "reflection integration",
        ),
        (
            "integrations test taken --provider openai",
            StatusCode::BAD_REQUEST,
            "not byok",
        ),
        (
            "integrations add llm --name x --comment 'line\nbreak'",
            StatusCode::BAD_REQUEST,
            "control character",
        ),
        (
            "integrations add llm --name 'unclosed",
            StatusCode::BAD_REQUEST,
            "quote",
        ),
        ("tag ghost x", StatusCode::NOT_FOUND, "no VM named ghost"),
        (
            "tag -d local nothere",
            StatusCode::NOT_FOUND,
            "no tag nothere",
        ),
        (
            "integrations setup chatgpt --name work --delete",
            StatusCode::NOT_FOUND,
            "no ChatGPT account named work",
        ),
        ("", StatusCode::BAD_REQUEST, "empty command line"),
    ];
    for (line, status, needle) in cases {
        let (got, body) = s.run(line).await;
        assert_eq!(got, *status, "{line:?}: {body}");
        assert!(body.contains(needle), "{line:?}: {body:?} lacks {needle:?}");
        assert!(body.starts_with("error: "), "{line:?}: {body}");
    }
    // JSON errors with --json.
    let (status, body) = s.run("integrations show ghost --json").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["kind"], "not_found");

    // Transport-level refusals.
    let (status, body, _) = s
        .raw(None, "text/plain", b"integrations list".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("Authorization: Bearer"), "{body}");
    let (status, body, _) = s
        .raw(
            Some("lli_not-a-token"),
            "text/plain",
            b"integrations list".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("invalid access token"), "{body}");
    let (status, body, _) = s
        .raw(Some(&s.token), "text/plain", vec![b'x'; 100_000])
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body.contains("over 65536 bytes"), "{body}");
    let (status, body, _) = s
        .raw(
            Some(&s.token),
            "text/plain",
            b"integrations list \xff\xfe".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("UTF-8"), "{body}");
    let (status, body, _) = s
        .raw(
            Some(&s.token),
            "application/json",
            b"{\"command\": 1}".to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("invalid JSON body"), "{body}");
    let (status, body, _) = s
        .raw(
            Some(&s.token),
            "application/json",
            br#"{"command": "integrations list", "args": ["x"]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("exactly one"), "{body}");
    let (status, _, _) = s
        .raw(
            Some(&s.token),
            "application/json",
            br#"{"args": ["integrations", "list"]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Health and readiness.
    let health = s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = s
        .http
        .get(format!("{}/readyz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    s.stop().await;
}

async fn concurrent_commands_keep_names_unique(dirs: Dirs) {
    let upstream = mock_provider().await;
    let s = Arc::new(Server::start(&dirs, &upstream).await);
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.run(&format!(
                "integrations add llm --name n{i} --attach auto:all"
            ))
            .await
            .0
        }));
    }
    for _ in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.run("integrations add llm --name same").await.0
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert!(
        statuses[..16].iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(
        statuses[16..]
            .iter()
            .filter(|s| **s == StatusCode::OK)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(statuses[16..]
        .iter()
        .all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT));
    let names: Vec<String> = s
        .store
        .load()
        .await
        .unwrap()
        .integrations
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names.len(), 2 + 16 + 1, "{names:?}");
    let snapshot = s.live.snapshot();
    assert_eq!(snapshot.integrations().len(), 19);
    let _ = Provider::ALL;
}

async fn persists_across_restarts_and_refuses_a_wrong_key(dirs: Dirs) {
    let upstream = mock_provider().await;
    let s = Server::start(&dirs, &upstream).await;
    let (status, body) = s
        .with_stdin(
            "integrations add llm --name keyed --openai=byok --openai-key=-",
            GOOD_KEY,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = s.token.clone();
    s.stop().await;

    // Same key: everything is there, and the key still opens.
    let s = Server::start(&dirs, &upstream).await;
    assert_eq!(s.token, token, "no second bootstrap");
    let tested = s.json("integrations test keyed --provider openai").await;
    assert_eq!(tested["providers"]["openai"]["status"], "ok", "{tested}");
    s.stop().await;

    // Another key: refused with a clear message; the database is untouched.
    let database = match &dirs.database {
        Some(url) => Database::Postgres(url.clone()),
        None => Database::Sqlite(dirs.data.path().join("llm-integration.db")),
    };
    let before = fingerprint(&database).await;
    let key_path = dirs.keys.path().join("master.key");
    let original_key = std::fs::read(&key_path).unwrap();
    std::fs::remove_file(&key_path).unwrap();
    let err = llm_integration_server::server::open_store(
        &database,
        &llm_integration_server::crypto::KeySource::File(key_path.clone()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("does not exist") && err.contains("restore the original key"),
        "{err}"
    );
    assert!(
        !key_path.exists(),
        "no new key is generated for an existing database"
    );
    std::fs::write(&key_path, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n").unwrap();
    let err = llm_integration_server::server::open_store(
        &database,
        &llm_integration_server::crypto::KeySource::File(key_path.clone()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not the key the database"), "{err}");
    assert_eq!(
        fingerprint(&database).await,
        before,
        "the database was not modified"
    );
    std::fs::write(&key_path, original_key).unwrap();
    let s = Server::start(&dirs, &upstream).await;
    assert!(s.ok("integrations list").await.contains("keyed"));
    s.stop().await;
}

/// What the database holds, to tell whether it changed: the SQLite file's
/// bytes, or every PostgreSQL table's rows as text.
async fn fingerprint(database: &Database) -> Vec<u8> {
    match database {
        Database::Sqlite(path) => std::fs::read(path).unwrap(),
        Database::Postgres(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let mut all = Vec::new();
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT CAST(t AS TEXT) FROM \"{table}\" t ORDER BY 1"
                ))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                all.extend(format!("{table}: {rows:?}\n").into_bytes());
            }
            all
        }
    }
}

/// Runs each named test on both backends: `NAME::sqlite` and
/// `NAME::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Dirs::new()).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Dirs::postgres().await).await
            }
        }
    )*};
}

on_both_backends!(
    every_command_works,
    teams_and_permissions,
    bad_inputs_get_clear_answers,
    concurrent_commands_keep_names_unique,
    persists_across_restarts_and_refuses_a_wrong_key,
);
