//! The real `llm-integration-server` binary: the README's first set-up
//! command (no arguments, fresh directory), graceful shutdown on SIGTERM,
//! and a leak scan of every answer, the whole log and the database files.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::Command;

use llm_integration_server::testing::Process;

use serde_json::json;

/// A recognisable key: none of its 8-character pieces may appear anywhere.
const KEY: &str = "sk-LEAKCHECK-7f3a9c2e5b1d8f4a6c0e2b9d7a5f3c1e";

fn start(dir: &Path) -> Process {
    let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
    command
        .env("LLM_INTEGRATION_LOG", "debug")
        .env("LLM_INTEGRATION_OPENAI_BASE_URL", "http://127.0.0.1:9")
        .env("LLM_INTEGRATION_ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .env("LLM_INTEGRATION_FIREWORKS_BASE_URL", "http://127.0.0.1:9");
    let running = Process::start(command, dir);
    assert!(
        running.printed.contains("Created the first user")
            || dir.join("llm-integration-data/owner.token").exists(),
        "{}",
        running.printed
    );
    running
}

fn terminate(mut running: Process) -> String {
    running.sigterm();
    let exit = running.wait();
    let log = running.log_text();
    assert!(exit.success(), "exit {exit:?}; log:\n{log}");
    log
}

fn pieces(secret: &str) -> Vec<&str> {
    (0..=secret.len() - 8).map(|i| &secret[i..i + 8]).collect()
}

fn assert_clean(what: &str, text: &str) {
    for piece in pieces(KEY) {
        assert!(
            !text.contains(piece),
            "{what} contains {piece:?} of the key:\n{text}"
        );
    }
}

#[test]
fn first_start_commands_shutdown_and_no_leaks() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    let token =
        std::fs::read_to_string(dir.path().join("llm-integration-data/owner.token")).unwrap();
    let client = reqwest::blocking::Client::new();
    let exec = |body: serde_json::Value| {
        let r = client
            .post(format!("{}/exec", running.admin))
            .bearer_auth(token.trim())
            .json(&body)
            .send()
            .unwrap();
        (r.status(), r.text().unwrap())
    };
    let mut answers = String::new();
    let stdin_commands = [
        "integrations add llm --name leak --openai=byok --openai-key=- --attach auto:all",
        "integrations edit llm --anthropic=byok --anthropic-key=-",
    ];
    for line in stdin_commands {
        let (status, body) = exec(json!({"command": line, "stdin": KEY}));
        assert!(status.is_success(), "{line}: {body}");
        answers.push_str(&body);
    }
    // A key given inline, and a command that fails with a key in it.
    let inline =
        format!("integrations add llm --name inline --fireworks=byok --fireworks-key={KEY}");
    let failing =
        format!("integrations add llm --name bad --fireworks=gateway --fireworks-key={KEY}");
    let unknown_flag =
        format!("integrations add llm --name bad2 --bogus --openai=byok --openai-key={KEY}");
    for line in [inline.as_str(), failing.as_str(), unknown_flag.as_str()] {
        for json in [false, true] {
            let line = if json {
                format!("{line} --json")
            } else {
                line.to_owned()
            };
            answers.push_str(&exec(json!({"command": line})).1);
        }
    }
    let reads = [
        "integrations list",
        "integrations show leak",
        "integrations show llm",
        "integrations show inline",
        "integrations test leak",
        "integrations test llm",
        "integrations test inline",
        "integrations setup chatgpt --list",
    ];
    let writes = [
        "integrations attach leak tag:x",
        "integrations detach leak tag:x --json",
        "integrations attach leak vm:local --json",
        "integrations detach leak vm:local",
        "integrations rename leak leak2 --json",
        "integrations edit leak2 --comment renamed",
        "integrations edit leak2 --fireworks=disabled --json",
        "tag local a",
        "tag -d local a --json",
        "integrations remove inline",
    ];
    let reads_twice = reads
        .iter()
        .flat_map(|l| [l.to_string(), format!("{l} --json")]);
    for line in reads_twice.chain(writes.iter().map(|l| l.to_string())) {
        let (status, body) = exec(json!({"command": line}));
        assert!(status.is_success(), "{line}: {body}");
        answers.push_str(&body);
    }
    assert!(answers.contains("set (…3c1e)"), "the hint is shown");
    assert_clean("the answers", &answers);

    let log = terminate(running);
    assert!(log.contains("exec"), "the log records commands:\n{log}");
    assert!(log.contains("shutting down"), "{log}");
    assert_clean("the server log", &log);
    for file in ["llm-integration.db", "llm-integration.db-wal"] {
        let path = dir.path().join("llm-integration-data").join(file);
        if let Ok(bytes) = std::fs::read(&path) {
            assert_clean(file, &String::from_utf8_lossy(&bytes));
        }
    }

    // A second start keeps everything and creates no second user.
    let running = start(dir.path());
    let token2 =
        std::fs::read_to_string(dir.path().join("llm-integration-data/owner.token")).unwrap();
    assert_eq!(token, token2);
    let r = client
        .post(format!("{}/exec", running.admin))
        .bearer_auth(token.trim())
        .body("integrations show leak2")
        .send()
        .unwrap();
    assert!(r.status().is_success());
    assert!(r.text().unwrap().contains("renamed"));
    terminate(running);
}

#[test]
fn refuses_to_start_with_a_wrong_master_key() {
    let dir = tempfile::tempdir().unwrap();
    terminate(start(dir.path()));
    let db = dir.path().join("llm-integration-data/llm-integration.db");
    let before = contents(&db);
    assert!(
        before.iter().any(|row| row.starts_with("users: ")),
        "{before:?}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"))
        .current_dir(dir.path())
        .env("LLM_INTEGRATION_ADMIN_LISTEN", "127.0.0.1:0")
        .env("LLM_INTEGRATION_LISTEN", "127.0.0.1:0")
        .env(
            "LLM_INTEGRATION_MASTER_KEY",
            "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
        )
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not the key the database"), "{stderr}");
    assert!(stderr.contains("LLM_INTEGRATION_MASTER_KEY"), "{stderr}");
    // Nothing written: every table holds what it held. (The file's bytes
    // may differ: opening a database in WAL mode can checkpoint it.)
    assert_eq!(contents(&db), before);
}

/// Every row of every table of the SQLite database at `path`, as text.
fn contents(path: &Path) -> Vec<String> {
    use sqlx::{Connection, Row};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
        let mut conn = sqlx::SqliteConnection::connect_with(&options).await.unwrap();
        let tables: Vec<String> = sqlx::query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
        let mut out = Vec::new();
        for table in tables {
            let columns: Vec<String> = sqlx::query(&format!("PRAGMA table_info(\"{table}\")"))
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| format!("quote(\"{}\")", r.get::<String, _>("name")))
                .collect();
            let select = format!(
                "SELECT {} FROM \"{table}\" ORDER BY 1",
                columns.join(" || ',' || ")
            );
            let rows = sqlx::query(&select).fetch_all(&mut conn).await.unwrap();
            out.extend(
                rows.iter()
                    .map(|r| format!("{table}: {}", r.get::<String, _>(0))),
            );
        }
        let _ = conn.close().await;
        out
    })
}

/// A flag wins over its environment variable, which wins over the file.
/// Each layer gives a value that names it and that the server refuses, so
/// the refusal says which layer was used.
#[test]
fn a_flag_wins_over_its_variable_which_wins_over_the_file() {
    let cases = [
        (
            "domain",
            "--domain",
            "LLM_INTEGRATION_DOMAIN",
            "invalid domain",
        ),
        (
            "[upstreams]\nopenai",
            "--openai-base-url",
            "LLM_INTEGRATION_OPENAI_BASE_URL",
            "invalid openai base URL",
        ),
        (
            "log_format",
            "--log-format",
            "LLM_INTEGRATION_LOG_FORMAT",
            "invalid log format",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    for (key, flag, variable, refusal) in cases {
        std::fs::write(&file, format!("{key} = \"file value\"\n")).unwrap();
        for (with_variable, with_flag, winner) in [
            (false, false, "file value"),
            (true, false, "variable value"),
            (false, true, "flag value"),
            (true, true, "flag value"),
        ] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
            for (name, _) in std::env::vars_os() {
                if name.to_string_lossy().starts_with("LLM_INTEGRATION_") {
                    command.env_remove(name);
                }
            }
            command
                .current_dir(dir.path())
                .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
                .arg("--config")
                .arg(&file)
                // Refused later than any setting tested here, so that the
                // server never starts even if the tested value were accepted.
                .env("LLM_INTEGRATION_TLS_CERT", "cert-without-key.pem");
            if with_variable {
                command.env(variable, "variable value");
            }
            if with_flag {
                command.args([flag, "flag value"]);
            }
            let output = command.output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(&format!("{refusal} \"{winner}\"")),
                "{key}, variable {with_variable}, flag {with_flag}: {stderr}"
            );
        }
    }
}

/// The README's first start keeps the master key apart from the data
/// directory (in the user's configuration directory), and the database
/// files private; a key left inside the data directory is warned about.
#[test]
fn the_master_key_is_kept_apart_from_the_database() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path());
    let data = dir.path().join("llm-integration-data");
    assert!(
        !data.join("master.key").exists(),
        "the key is not beside the database"
    );
    let key = dir.path().join("config/llm-integration/master.key");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600, "{}", key.display());
    assert_eq!(mode(&data.join("llm-integration.db")), 0o600);
    assert_eq!(mode(&data), 0o700);
    let log = terminate(running);
    assert!(!log.contains("inside the data directory"), "{log}");
    // An installation that kept its key in the data directory goes on
    // using it, warned.
    std::fs::rename(&key, data.join("master.key")).unwrap();
    std::fs::set_permissions(
        data.join("master.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let running = start(dir.path());
    let log = terminate(running);
    assert!(log.contains("inside the data directory"), "{log}");
    assert!(log.contains("can be read by other users"), "{log}");
}
