//! `admin migrate`: a SQLite installation made through the real server,
//! moved into PostgreSQL by the real binary, then served from PostgreSQL
//! with the same master key; and the command's refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use llm_integration_core::seams::ChatGptAccountRecord;
use llm_integration_core::UserId;
use llm_integration_mock::MockUpstream;
use llm_integration_server::admin::{
    self, AdminCommand, AllocationsCommand, OwnerArg, TeamsCommand, UsersCommand, VmAddArgs,
    VmsCommand,
};
use llm_integration_server::crypto::{purpose, KeySource, MasterKey};
use llm_integration_server::migrate::TABLES;
use llm_integration_server::testing::{fresh_postgres_schema, Dirs, Server};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Connection;

const BYOK_KEY: &str = "sk-byok-openai-mig-0123456789abcdef";
const HOSTS: [&str; 2] = ["llm.int.exe.xyz", "byok.int.exe.xyz"];
const CHATGPT_TOKENS: &str = r#"{"access_token":"at-mig-0123456789","refresh_token":"rt-mig-0123456789","account_id":"acct-1","expires_at":4102444800,"plan":"plus","email":"owner@chatgpt.example"}"#;
/// The VM `devbox` of the owner.
const DEVBOX: &str = "127.0.0.2";

/// Runs `llm-integration-server admin --master-key-file KEY migrate ARGS…`.
async fn migrate(key_file: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    command
        .arg("admin")
        .arg("--master-key-file")
        .arg(key_file)
        .arg("migrate")
        .args(args)
        .env_remove("LLM_INTEGRATION_MASTER_KEY")
        .env_remove("LLM_INTEGRATION_DATABASE")
        .env_remove("LLM_INTEGRATION_DATA_DIR")
        .env_remove("LLM_INTEGRATION_CONFIG");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// Runs `admin migrate ARGS…` with the master key in
/// `LLM_INTEGRATION_MASTER_KEY` (and no key file where the default is).
async fn migrate_with_env_key(key: &str, home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    command
        .arg("admin")
        .arg("migrate")
        .args(args)
        .env("LLM_INTEGRATION_MASTER_KEY", key)
        .env("XDG_CONFIG_HOME", home)
        .env_remove("LLM_INTEGRATION_MASTER_KEY_FILE")
        .env_remove("LLM_INTEGRATION_DATABASE")
        .env_remove("LLM_INTEGRATION_DATA_DIR")
        .env_remove("LLM_INTEGRATION_CONFIG");
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn database(dirs: &Dirs) -> String {
    dirs.data
        .path()
        .join("llm-integration.db")
        .display()
        .to_string()
}

fn master_key(dirs: &Dirs) -> MasterKey {
    MasterKey::load(&KeySource::File(key_file(dirs)), false)
        .unwrap()
        .0
}

/// The first user's id.
async fn owner_id(s: &Server) -> UserId {
    s.store
        .accounts()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.user.email == "owner@localhost")
        .unwrap()
        .user
        .id
}

fn key_file(dirs: &Dirs) -> std::path::PathBuf {
    dirs.keys.path().join("master.key")
}

/// Rows per table in PostgreSQL (0 for a table that does not exist).
async fn pg_counts(url: &str) -> Vec<(String, i64)> {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let mut counts = Vec::new();
    for table in TABLES {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(*table)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let n: i64 = if exists {
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut conn)
                .await
                .unwrap()
        } else {
            0
        };
        counts.push(((*table).to_owned(), n));
    }
    let _ = conn.close().await;
    counts
}

/// Rows per table in the SQLite file.
async fn sqlite_counts(path: &str) -> Vec<(String, i64)> {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{path}?mode=ro"))
        .await
        .unwrap();
    let mut counts = Vec::new();
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        counts.push(((*table).to_owned(), n));
    }
    let _ = conn.close().await;
    counts
}

/// A small installation: the first user only; the server stopped.
async fn small_installation() -> Dirs {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    s.stop().await;
    dirs
}

async fn vm(s: &Server, name: &str, owner: &str, address: &str, team: Option<&str>, tags: &[&str]) {
    s.admin(AdminCommand::Vms(VmsCommand::Add(VmAddArgs {
        name: name.parse().unwrap(),
        owner: owner.into(),
        team: team.map(|t| t.parse().unwrap()),
        addresses: vec![address.parse().unwrap()],
        tags: tags.iter().map(|t| t.parse().unwrap()).collect(),
        comment: format!("{name}'s comment"),
        port: Some(8080),
    })))
    .await;
}

async fn post(s: &Server, host: &str, path: &str, body: Value) -> (StatusCode, String) {
    let client = s.vm_client(DEVBOX.parse::<IpAddr>().unwrap(), &HOSTS);
    let r = client
        .post(format!("{}{path}", s.data_url(host)))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The owner's usage, once the ledger holds `requests` records.
async fn usage(s: &Server, requests: u64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = s.json("usage --by model").await;
        let total: u64 = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requests"].as_u64().unwrap())
            .sum();
        if total >= requests {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {total} of {requests} records: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator's lists: users, teams, VMs (with tags and addresses).
async fn listed(s: &Server) -> String {
    let mut out = String::new();
    for command in [
        AdminCommand::Users(UsersCommand::List),
        AdminCommand::Teams(TeamsCommand::List),
        AdminCommand::Vms(VmsCommand::List),
    ] {
        out.push_str(
            &admin::run(s.store.as_ref(), command, s.default_allocation)
                .await
                .unwrap(),
        );
    }
    assert!(
        out.contains("devbox") && out.contains("gpu") && out.contains(DEVBOX),
        "{out}"
    );
    out
}

#[tokio::test]
async fn a_populated_installation_moves_to_postgres_and_serves_the_same() {
    let mock = MockUpstream::start().await.unwrap();
    let mut dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    s.user("bob@example.com").await;
    s.team("core", &["owner@localhost", "bob@example.com"])
        .await;
    vm(
        &s,
        "devbox",
        "owner@localhost",
        DEVBOX,
        None,
        &["llm", "gpu"],
    )
    .await;
    vm(
        &s,
        "bobs",
        "bob@example.com",
        "127.0.0.3",
        Some("core"),
        &[],
    )
    .await;
    let (status, body) = s
        .with_stdin(
            "integrations add llm --name byok --openai=byok --openai-key=- --anthropic=disabled --attach tag:llm --attach vm:devbox",
            BYOK_KEY,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.ok("integrations add llm --name shared --team core --attach auto:all")
        .await;
    s.admin(AdminCommand::Allocations(AllocationsCommand::Set {
        owner: OwnerArg::User("bob@example.com".into()),
        usd: 12.5,
    }))
    .await;
    // Usage: one request on the owner's key, one on the gateway's (debited).
    let (status, body) = post(
        &s,
        "byok.int.exe.xyz",
        "/v1/chat/completions",
        json!({"model": "gpt-5.5"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = post(
        &s,
        "llm.int.exe.xyz",
        "/v1/chat/completions",
        json!({"model": "gpt-5.5"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A connected ChatGPT account, its tokens sealed as the login flow seals them.
    let key = master_key(&dirs);
    let owner = owner_id(&s).await;
    let account = ChatGptAccountRecord {
        sealed: key
            .seal(CHATGPT_TOKENS.as_bytes(), purpose::CHATGPT_TOKENS)
            .unwrap(),
        status: "connected".into(),
        email: Some("owner@chatgpt.example".into()),
        plan: Some("plus".into()),
    };
    s.store
        .save_chatgpt_account(owner, &"work".parse().unwrap(), &account)
        .await
        .unwrap();
    let usage_before = usage(&s, 2).await;
    let integrations_before = s.json("integrations list").await;
    let allocation_before = s.json("usage").await["allocation_micros"].clone();
    let listed_before = listed(&s).await;
    assert!(allocation_before.as_i64().unwrap() < s.default_allocation);
    s.stop().await;

    let source = database(&dirs);
    let sqlite_before = sqlite_counts(&source).await;
    let url = fresh_postgres_schema().await;
    let out = migrate(&key_file(&dirs), &["--from", &source, "--to", &url]).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    assert!(stdout.contains("Verified"), "{stdout}");
    assert!(stdout.contains("a sealed API key"), "{stdout}");
    assert!(stdout.contains("a ChatGPT account's tokens"), "{stdout}");
    assert!(stdout.contains("--database"), "{stdout}");
    assert!(!stdout.contains(BYOK_KEY) && !stderr.contains(BYOK_KEY));
    // Every table's rows, and the report says so.
    let copied = pg_counts(&url).await;
    for ((table, there), (_, here)) in copied.iter().zip(&sqlite_before) {
        assert_eq!(there, here, "{table}");
        if table != "config_version" {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>()
                        == [table.as_str(), &here.to_string()]),
                "{table} {here} not reported: {stdout}"
            );
        }
    }
    for table in [
        "chatgpt_accounts",
        "users",
        "team_members",
        "vm_tags",
        "vm_addresses",
        "attachments",
        "credentials",
        "usage_ledger",
        "allocations",
        "meta",
    ] {
        let n = copied.iter().find(|(t, _)| t == table).unwrap().1;
        assert!(
            n > 0,
            "{table} is empty: the installation should have rows there"
        );
    }

    let mut lite = sqlx::SqliteConnection::connect(&format!("sqlite:{source}?mode=ro"))
        .await
        .unwrap();
    let here: Vec<String> = sqlx::query_scalar("SELECT created_at FROM users ORDER BY id")
        .fetch_all(&mut lite)
        .await
        .unwrap();
    let _ = lite.close().await;
    let mut pg = sqlx::PgConnection::connect(&url).await.unwrap();
    let there: Vec<String> = sqlx::query_scalar(
        "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM users ORDER BY id",
    )
    .fetch_all(&mut pg)
    .await
    .unwrap();
    let _ = pg.close().await;
    assert_eq!(there, here, "timestamps keep their UTC instant");

    // The same installation, served from PostgreSQL with the same master key.
    dirs.database = Some(url.clone());
    mock.clear();
    let s = Server::start(&dirs, &mock.url()).await;
    assert_eq!(s.json("integrations list").await, integrations_before);
    assert_eq!(usage(&s, 2).await, usage_before);
    assert_eq!(
        s.json("usage").await["allocation_micros"],
        allocation_before
    );
    assert_eq!(listed(&s).await, listed_before);
    let (status, body) = post(
        &s,
        "byok.int.exe.xyz",
        "/v1/chat/completions",
        json!({"model": "gpt-5.5"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        mock.last().unwrap().header("authorization"),
        Some(format!("Bearer {BYOK_KEY}").as_str()),
        "the byok key opened from PostgreSQL"
    );
    let copied = s
        .store
        .chatgpt_account(owner, &"work".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(copied.status, "connected");
    assert_eq!(
        key.open(&copied.sealed, purpose::CHATGPT_TOKENS)
            .unwrap()
            .as_slice(),
        CHATGPT_TOKENS.as_bytes()
    );
    // New rows get ids past the copied ones (the sequences moved).
    s.user("carol@example.com").await;
    s.ok("integrations add llm --name after --attach vm:devbox")
        .await;
    let (status, body) = s
        .with_stdin(
            "integrations edit after --openai=byok --openai-key=-",
            "sk-after-0123456789abcdef",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn a_non_empty_target_is_refused_and_left_alone() {
    let dirs = small_installation().await;
    // The test server trusts every connection, so a password is accepted
    // (and ignored): it must never be shown.
    let url =
        fresh_postgres_schema()
            .await
            .replacen("://postgres@", "://postgres:Pw-s3cret-9x@", 1);
    assert!(url.contains("Pw-s3cret-9x"), "{url}");
    let source = database(&dirs);
    let first = migrate(&key_file(&dirs), &["--from", &source, "--to", &url]).await;
    let (stdout, stderr) = text(&first);
    assert!(first.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("postgres://postgres:***@127.0.0.1"),
        "{stdout}"
    );
    assert!(!stdout.contains("Pw-s3cret") && !stderr.contains("Pw-s3cret"));
    let before = pg_counts(&url).await;

    let again = migrate(&key_file(&dirs), &["--from", &source, "--to", &url]).await;
    let (stdout, stderr) = text(&again);
    assert!(!again.status.success(), "{stdout}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert!(stderr.contains("users: 1 row"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert!(stderr.contains("new database"), "{stderr}");
    assert!(!stderr.contains("Pw-s3cret"), "{stderr}");
    assert_eq!(pg_counts(&url).await, before);
}

#[tokio::test]
async fn a_missing_or_foreign_source_is_refused() {
    let dirs = small_installation().await;
    let url = fresh_postgres_schema().await;
    let missing = dirs.data.path().join("nowhere.db");
    let out = migrate(
        &key_file(&dirs),
        &["--from", &missing.display().to_string(), "--to", &url],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("no SQLite database at"), "{stderr}");
    assert!(stderr.contains("llm-integration.db"), "{stderr}");
    assert!(!missing.exists(), "nothing is created at the missing path");

    let foreign = dirs.data.path().join("notes.db");
    std::fs::write(&foreign, "not a database at all, just some text").unwrap();
    let out = migrate(
        &key_file(&dirs),
        &["--from", &foreign.display().to_string(), "--to", &url],
    )
    .await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("is not a SQLite database"), "{stderr}");

    // A table this version does not know stops the copy before any write.
    let source = database(&dirs);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{source}"))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE browser_gadgets (id INTEGER PRIMARY KEY, note TEXT)")
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let out = migrate(&key_file(&dirs), &["--from", &source, "--to", &url]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("browser_gadgets"), "{stderr}");
    assert!(stderr.contains("nothing was copied"), "{stderr}");
    assert!(pg_counts(&url)
        .await
        .iter()
        .all(|(t, n)| *n == 0 || t == "config_version"));
}

#[tokio::test]
async fn a_wrong_master_key_is_refused_before_anything_is_written() {
    let dirs = small_installation().await;
    let url = fresh_postgres_schema().await;
    let other = dirs.keys.path().join("other.key");
    std::fs::write(&other, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    let out = migrate(&other, &["--from", &database(&dirs), "--to", &url]).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("is not the key"), "{stderr}");
    assert!(stderr.contains("nothing was copied"), "{stderr}");
    assert!(stderr.contains("--master-key-file"), "{stderr}");
    assert!(pg_counts(&url).await.iter().all(|(_, n)| *n == 0));

    // No key at all.
    let absent = dirs.keys.path().join("absent.key");
    let out = migrate(&absent, &["--from", &database(&dirs), "--to", &url]).await;
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!absent.exists(), "no key is generated by a migration");
}

#[tokio::test]
async fn a_bad_target_url_fails_without_showing_its_password() {
    let dirs = small_installation().await;
    let source = database(&dirs);
    for (to, expect) in [
        // Nothing listens on port 1.
        (
            "postgres://llmi:Pw-s3cret-9x@127.0.0.1:1/test",
            "cannot connect to PostgreSQL at postgres://llmi:***@127.0.0.1:1/test",
        ),
        (
            "postgres://llmi:Pw-s3cret-9x@127.0.0.1:notaport/test",
            "cannot read the PostgreSQL URL",
        ),
        ("/tmp/Pw-s3cret-9x.db", "is not a PostgreSQL URL"),
    ] {
        let out = migrate(&key_file(&dirs), &["--from", &source, "--to", to]).await;
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{to}: {stdout}");
        assert!(stderr.contains(expect), "{to}: {stderr}");
        if to.starts_with("postgres") {
            assert!(
                !stderr.contains("Pw-s3cret") && !stdout.contains("Pw-s3cret"),
                "{stderr}"
            );
        }
    }
}

/// Leases the server held when it stopped uncleanly go back into the
/// balances they were taken from, instead of being copied.
#[tokio::test]
async fn allocation_leases_are_folded_back_into_balances() {
    let dirs = small_installation().await;
    let source = database(&dirs);
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{source}"))
        .await
        .unwrap();
    for statement in [
        "INSERT INTO allocations (owner_kind, owner_id, balance_micros) VALUES ('user', 1, 1000000) \
         ON CONFLICT (owner_kind, owner_id) DO UPDATE SET balance_micros = 1000000",
        "INSERT INTO allocation_leases (owner_kind, owner_id, holder, micros, expires_at_ms) \
         VALUES ('user', 1, 'r1', 200000, 0), ('user', 1, 'r2', 50000, 0)",
    ] {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    let _ = conn.close().await;
    let url = fresh_postgres_schema().await;
    // The master key from the environment, this time.
    let key = std::fs::read_to_string(key_file(&dirs)).unwrap();
    let out = migrate_with_env_key(
        key.trim(),
        dirs.keys.path(),
        &["--from", &source, "--to", &url],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("2 allocation leases folded"), "{stdout}");
    assert!(
        stdout.contains("with LLM_INTEGRATION_MASTER_KEY set"),
        "{stdout}"
    );
    assert!(!stdout.contains(key.trim()) && !stderr.contains(key.trim()));
    let mut pg = sqlx::PgConnection::connect(&url).await.unwrap();
    let balance: i64 = sqlx::query_scalar(
        "SELECT balance_micros FROM allocations WHERE owner_kind = 'user' AND owner_id = 1",
    )
    .fetch_one(&mut pg)
    .await
    .unwrap();
    assert_eq!(balance, 1_250_000);
    let _ = pg.close().await;
}

/// A copy whose sample does not open on the target (a trigger garbles
/// every key written there) fails verification, and the target is emptied
/// again, ready for another attempt.
#[tokio::test]
async fn a_copy_that_does_not_verify_is_removed_again() {
    let mock = MockUpstream::start().await.unwrap();
    let dirs = Dirs::new();
    let s = Server::start(&dirs, &mock.url()).await;
    let (status, body) = s
        .with_stdin(
            "integrations add llm --name byok --openai=byok --openai-key=-",
            BYOK_KEY,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.stop().await;
    let url = fresh_postgres_schema().await;
    let target = llm_integration_server::store::PgStore::connect(&url)
        .await
        .unwrap();
    for statement in [
        "CREATE FUNCTION garble() RETURNS trigger LANGUAGE plpgsql AS \
         $$ BEGIN NEW.ciphertext := NEW.ciphertext || '\\x00'::bytea; RETURN NEW; END $$",
        "CREATE TRIGGER garble BEFORE INSERT ON credentials FOR EACH ROW EXECUTE FUNCTION garble()",
    ] {
        sqlx::query(statement).execute(target.pool()).await.unwrap();
    }
    let source = database(&dirs);
    let out = migrate(&key_file(&dirs), &["--from", &source, "--to", &url]).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}");
    assert!(stderr.contains("verification failed"), "{stderr}");
    assert!(
        stderr.contains("does not open with the master key"),
        "{stderr}"
    );
    assert!(stderr.contains("the target was emptied again"), "{stderr}");
    assert!(!stderr.contains(BYOK_KEY));
    let left = pg_counts(&url).await;
    assert!(
        left.iter().all(|(t, n)| *n == 0 || t == "config_version"),
        "{left:?}"
    );

    sqlx::query("DROP TRIGGER garble ON credentials")
        .execute(target.pool())
        .await
        .unwrap();
    target.close().await;
    let out = migrate(&key_file(&dirs), &["--from", &source, "--to", &url]).await;
    assert!(out.status.success(), "{:?}", text(&out));
}

/// Every table the SQLite migrations create is one `admin migrate` copies,
/// folds or ignores: a new table must be added to `migrate::TABLES` (in
/// dependency order) or installations could not move.
#[tokio::test]
async fn every_sqlite_table_is_known_to_admin_migrate() {
    use llm_integration_server::migrate::{FOLDED, IGNORED};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    let store = llm_integration_server::store::SqliteStore::open(&path)
        .await
        .unwrap();
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite%'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    store.close().await;
    for table in &tables {
        let t = table.as_str();
        assert!(
            TABLES.contains(&t) || FOLDED.contains(&t) || IGNORED.contains(&t),
            "the SQLite table {t} is unknown to admin migrate: add it to migrate::TABLES"
        );
    }
    assert!(tables.len() >= TABLES.len(), "{tables:?}");
}
