//! Reflection and team integrations end to end: every
//! reflection path, `--fields`, and the team scoping matrix through the
//! data plane, reflection and `/v1/models`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;

use llm_integration_mock::MockUpstream;
use llm_integration_server::admin::{
    AdminCommand, TeamsCommand, VmAddArgs, VmEditArgs, VmsCommand,
};
use llm_integration_server::testing::{Dirs, Server};
use reqwest::StatusCode;
use serde_json::Value;

const HOSTS: [&str; 6] = [
    "llm.int.exe.xyz",
    "me.int.exe.xyz",
    "reflection.int.exe.xyz",
    "shared.team.exe.xyz",
    "llm.team.exe.xyz",
    "ops.team.exe.xyz",
];

/// Users: owner (VM `local` 127.0.0.1), alice (VM `alicebox` 127.0.0.4 in
/// team core), bob (VM `bobbox` 127.0.0.5 in team core), carol (VM
/// `carolbox` 127.0.0.6 in team other). The owner is a member of core but
/// `local` is in no team.
async fn setup(upstream: &str) -> (Dirs, Server, String, String) {
    let dirs = Dirs::new();
    let s = Server::start(&dirs, upstream).await;
    let alice = s.user("alice@example.com").await;
    let bob = s.user("bob@example.com").await;
    s.user("carol@example.com").await;
    for (team, members) in [
        (
            "core",
            vec!["owner@localhost", "alice@example.com", "bob@example.com"],
        ),
        ("other", vec!["carol@example.com"]),
    ] {
        s.team(team, &members).await;
    }
    for (name, owner, address, team) in [
        ("alicebox", "alice@example.com", "127.0.0.4", Some("core")),
        ("bobbox", "bob@example.com", "127.0.0.5", Some("core")),
        ("carolbox", "carol@example.com", "127.0.0.6", Some("other")),
    ] {
        s.admin(AdminCommand::Vms(VmsCommand::Add(VmAddArgs {
            name: name.parse().unwrap(),
            owner: owner.into(),
            team: team.map(|t| t.parse().unwrap()),
            addresses: vec![address.parse().unwrap()],
            tags: vec!["dev".parse().unwrap()],
            comment: format!("{name} comment"),
            port: Some(3000),
        })))
        .await;
    }
    (dirs, s, alice, bob)
}

async fn get(s: &Server, from: &str, host: &str, path: &str) -> (StatusCode, String) {
    let c = s.vm_client(from.parse::<IpAddr>().unwrap(), &HOSTS);
    let r = c
        .get(format!("{}{path}", s.data_url(host)))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn models(s: &Server, from: &str, host: &str) -> (StatusCode, Vec<String>) {
    let (status, body) = get(s, from, host, "/v1/models").await;
    let ids = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            v["data"].as_array().map(|a| {
                a.iter()
                    .map(|m| m["id"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
        })
        .unwrap_or_default();
    (status, ids)
}

#[tokio::test]
async fn reflection_paths_and_fields() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s, alice, _) = setup(&mock.url()).await;
    let (status, body) = s
        .with_stdin(
            "integrations add llm --name keyed --openai=byok --openai-key=- --attach auto:all",
            "sk-reflect-secret-0123456789",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Every path of the default reflection integration, from `local`.
    let (status, index) = get(&s, "127.0.0.1", "reflection.int.exe.xyz", "/").await;
    assert_eq!(status, StatusCode::OK);
    let index: Value = serde_json::from_str(&index).unwrap();
    let paths: Vec<&str> = index["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "/email",
            "/integrations",
            "/tags",
            "/comment",
            "/default_port"
        ]
    );
    assert!(index["paths"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| !p["description"].as_str().unwrap().is_empty()));
    assert_eq!(
        get(&s, "127.0.0.1", "reflection.int.exe.xyz", "/email")
            .await
            .1,
        r#"{"email":"owner@localhost"}"#
    );
    assert_eq!(
        get(&s, "127.0.0.1", "reflection.int.exe.xyz", "/tags")
            .await
            .1,
        r#"{"tags":[]}"#
    );
    assert_eq!(
        get(&s, "127.0.0.1", "reflection.int.exe.xyz", "/comment")
            .await
            .1,
        r#"{"comment":"this machine"}"#
    );
    assert_eq!(
        get(&s, "127.0.0.1", "reflection.int.exe.xyz", "/default_port")
            .await
            .1,
        r#"{"default_port":null}"#
    );
    let (_, integrations) = get(&s, "127.0.0.1", "reflection.int.exe.xyz", "/integrations").await;
    let v: Value = serde_json::from_str(&integrations).unwrap();
    let keyed = v["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "keyed")
        .unwrap();
    assert_eq!(keyed["type"], "llm");
    assert_eq!(keyed["help"], "curl https://keyed.int.exe.xyz/v1/models");
    // Never a key or a source credential.
    assert!(
        !integrations.contains("sk-")
            && !integrations.contains("byok")
            && !integrations.contains("gw-"),
        "{integrations}"
    );

    // --fields limits what is exposed: absent from `/`, 404 on its path.
    s.ok("integrations add reflection --name me --fields email,tags --attach vm:local")
        .await;
    let (_, index) = get(&s, "127.0.0.1", "me.int.exe.xyz", "/").await;
    assert!(
        index.contains("/email")
            && index.contains("/tags")
            && !index.contains("/integrations")
            && !index.contains("/comment"),
        "{index}"
    );
    for hidden in ["/integrations", "/comment", "/default_port"] {
        let (status, body) = get(&s, "127.0.0.1", "me.int.exe.xyz", hidden).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{hidden}: {body}");
    }
    // Changed with edit.
    s.ok("integrations edit me --fields integrations").await;
    assert_eq!(
        get(&s, "127.0.0.1", "me.int.exe.xyz", "/email").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&s, "127.0.0.1", "me.int.exe.xyz", "/integrations")
            .await
            .0,
        StatusCode::OK
    );
    // Other owners' VMs see their own account, not the owner's.
    let (_, email) = get(&s, "127.0.0.4", "reflection.int.exe.xyz", "/email").await;
    assert_eq!(email, r#"{"email":"alice@example.com"}"#);
    assert_eq!(
        get(&s, "127.0.0.4", "me.int.exe.xyz", "/").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = s.run_as(&alice, "integrations remove reflection").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        get(&s, "127.0.0.4", "reflection.int.exe.xyz", "/email")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

#[tokio::test]
async fn team_scoping_matrix() {
    let mock = MockUpstream::start().await.unwrap();
    let (_dirs, s, alice, bob) = setup(&mock.url()).await;
    // A member adds team integrations; names may repeat personal ones.
    let (status, body) = s
        .run_as(
            &alice,
            "integrations add llm --name shared --team core --anthropic=disabled --attach auto:all",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s
        .run_as(
            &alice,
            "integrations add llm --name llm --team core --openai=disabled --attach vm:bobbox",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s
        .run_as(
            &bob,
            "integrations add llm --name ops --team core --openai=chatgpt --openai-account=x",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body.contains("team integrations") && body.contains("cannot use a ChatGPT subscription"),
        "{body}"
    );
    s.run("integrations add llm --name ops --team other").await; // owner is not in `other`
    let carol_team = s.run("integrations show ops --team other").await;
    assert_eq!(carol_team.0, StatusCode::NOT_FOUND);

    let matrix: &[(&str, &str, StatusCode, &str)] = &[
        // (from, host, /v1/models status, why)
        (
            "127.0.0.4",
            "shared.team.exe.xyz",
            StatusCode::OK,
            "member's VM in the team",
        ),
        (
            "127.0.0.5",
            "shared.team.exe.xyz",
            StatusCode::OK,
            "another member's VM in the team",
        ),
        (
            "127.0.0.1",
            "shared.team.exe.xyz",
            StatusCode::NOT_FOUND,
            "a member's VM outside the team",
        ),
        (
            "127.0.0.6",
            "shared.team.exe.xyz",
            StatusCode::NOT_FOUND,
            "a VM in another team",
        ),
        (
            "127.0.0.5",
            "llm.team.exe.xyz",
            StatusCode::OK,
            "team llm attached to bobbox",
        ),
        (
            "127.0.0.4",
            "llm.team.exe.xyz",
            StatusCode::NOT_FOUND,
            "team llm not attached to alicebox",
        ),
        (
            "127.0.0.4",
            "llm.int.exe.xyz",
            StatusCode::OK,
            "alice's personal llm, same name",
        ),
        (
            "127.0.0.6",
            "ops.team.exe.xyz",
            StatusCode::NOT_FOUND,
            "no team ops in other",
        ),
    ];
    for (from, host, want, why) in matrix {
        assert_eq!(models(&s, from, host).await.0, *want, "{why}");
    }
    // Same name, different integrations: team llm has openai disabled, personal has it.
    let (_, team_models) = models(&s, "127.0.0.5", "llm.team.exe.xyz").await;
    let (_, personal_models) = models(&s, "127.0.0.5", "llm.int.exe.xyz").await;
    assert!(
        !team_models.contains(&"gpt-5.5".to_owned())
            && personal_models.contains(&"gpt-5.5".to_owned())
    );
    let (_, shared) = models(&s, "127.0.0.4", "shared.team.exe.xyz").await;
    assert!(
        !shared.iter().any(|m| m.starts_with("claude")),
        "{shared:?}"
    );

    // Reflection lists team integrations with their team hostname, and only the VM's team's.
    let (_, bobs) = get(&s, "127.0.0.5", "reflection.int.exe.xyz", "/integrations").await;
    let v: Value = serde_json::from_str(&bobs).unwrap();
    let seen: Vec<(String, String)> = v["integrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["hostname"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        seen.contains(&("shared".into(), "shared.team.exe.xyz".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("llm".into(), "llm.team.exe.xyz".into())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("llm".into(), "llm.int.exe.xyz".into())),
        "{seen:?}"
    );
    let (_, carols) = get(&s, "127.0.0.6", "reflection.int.exe.xyz", "/integrations").await;
    assert!(
        !carols.contains("shared") && !carols.contains(".team."),
        "{carols}"
    );

    // Detach and re-attach.
    let (status, body) = s
        .run_as(&bob, "integrations detach shared auto:all --team core")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        models(&s, "127.0.0.4", "shared.team.exe.xyz").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = s
        .run_as(&bob, "integrations attach shared vm:alicebox --team core")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        models(&s, "127.0.0.4", "shared.team.exe.xyz").await.0,
        StatusCode::OK
    );
    assert_eq!(
        models(&s, "127.0.0.5", "shared.team.exe.xyz").await.0,
        StatusCode::NOT_FOUND
    );

    // A VM that leaves the team loses the team's integrations.
    s.admin(AdminCommand::Vms(VmsCommand::Edit(VmEditArgs {
        name: "alicebox".parse().unwrap(),
        team: None,
        no_team: true,
        addresses: vec![],
        tags: vec![],
        comment: None,
        port: None,
    })))
    .await;
    assert_eq!(
        models(&s, "127.0.0.4", "shared.team.exe.xyz").await.0,
        StatusCode::NOT_FOUND
    );

    // The team deleted: its integrations are gone everywhere.
    s.admin(AdminCommand::Teams(TeamsCommand::Remove {
        name: "core".parse().unwrap(),
    }))
    .await;
    assert_eq!(
        models(&s, "127.0.0.5", "llm.team.exe.xyz").await.0,
        StatusCode::NOT_FOUND
    );
    let (_, bobs) = get(&s, "127.0.0.5", "reflection.int.exe.xyz", "/integrations").await;
    assert!(!bobs.contains(".team."), "{bobs}");
    let (_, list) = s.run_as(&bob, "integrations list --json").await;
    let list: Value = serde_json::from_str(&list).unwrap();
    assert!(
        list["integrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["owner"]["kind"] == "user"),
        "{list}"
    );
    s.stop().await;
}
