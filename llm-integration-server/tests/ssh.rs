//! The SSH door with the real OpenSSH client (`ssh`, `ssh-keygen`;
//! `.ci/install` installs them): commands as exec requests with their
//! outcomes, a key piped through standard input then used by a VM, keys
//! refused, another user's integration, an interactive session through a
//! pseudo-terminal, and the ChatGPT device-code login streamed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use llm_integration_mock::chatgpt::{ChatGptBehaviour, MockChatGpt};
use llm_integration_mock::MockUpstream;
use llm_integration_server::chatgpt::ChatGptEndpoints;
use llm_integration_server::ssh::SshSettings;
use llm_integration_server::testing::{Dirs, Server};
use serde_json::{json, Value};

/// How long any one `ssh` run may take.
const DEADLINE: Duration = Duration::from_secs(60);

fn need_ssh() {
    let found = Command::new("ssh")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "ssh is not installed; run .ci/install (Debian: apt-get install openssh-client)"
    );
}

/// A new Ed25519 key pair in `dir`; returns the private key's path.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C"])
        .arg(format!("{name}@test"))
        .arg("-f")
        .arg(&path)
        .status()
        .expect(
            "ssh-keygen is not installed; run .ci/install (Debian: apt-get install openssh-client)",
        );
    assert!(status.success());
    path
}

fn public(key: &Path) -> String {
    std::fs::read_to_string(key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The server with the SSH door on, named like the seed's host.
async fn start(
    upstream: &str,
    adjust: impl FnOnce(&mut llm_integration_server::config::Config),
) -> (Dirs, Server) {
    need_ssh();
    let dirs = Dirs::new();
    let host_key = dirs.data.path().join("ssh_host_ed25519_key");
    let s = Server::start_with(&dirs, upstream, move |c| {
        c.ssh = Some(SshSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            host_key,
            name: "exe.dev".into(),
            idle_timeout: Duration::from_secs(60),
            max_connections: 64,
            max_connections_per_peer: 16,
            max_unauthenticated: 16,
            max_auth_attempts: 6,
        });
        adjust(c);
    })
    .await;
    (dirs, s)
}

/// `ssh` with the options that make it a test's client: no user or
/// system configuration, no known-hosts file, no prompts, this key only.
fn ssh_command(addr: SocketAddr, key: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.args([
        "-F",
        "/dev/null",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "ConnectTimeout=20",
        "-p",
    ])
    .arg(addr.port().to_string())
    .arg("-i")
    .arg(key)
    .args(extra)
    .arg("127.0.0.1")
    .env_remove("SSH_AUTH_SOCK");
    c
}

struct Ran {
    status: i32,
    stdout: String,
    stderr: String,
}

/// Runs `ssh … COMMAND` with `stdin` (or none: `/dev/null`), quietly
/// (`LogLevel=ERROR`) unless `loud`.
async fn ssh(addr: SocketAddr, key: &Path, command: &str, stdin: Option<&str>, loud: bool) -> Ran {
    let mut c = ssh_command(
        addr,
        key,
        if loud { &[] } else { &["-o", "LogLevel=ERROR"] },
    );
    c.arg(command)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let pid = child.id();
    let waited = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await;
    let output = match waited {
        Ok(done) => done.unwrap().unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("ssh … {command} did not finish within {DEADLINE:?}");
        }
    };
    Ran {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Registers `key` for the user of `token` over `/exec` (one door
/// registers, another signs in).
async fn register(s: &Server, token: &str, key: &Path) {
    let (status, body) = s
        .run_as(token, &format!("ssh-key add '{}'", public(key)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("added SSH key SHA256:"), "{body}");
}

#[tokio::test]
async fn commands_run_over_exec_with_the_clis_outcomes() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |_| {}).await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;

    let list = ssh(addr, &key, "integrations list", None, false).await;
    assert_eq!(list.status, 0, "{}", list.stderr);
    assert!(list.stdout.contains("llm.int.exe.xyz"), "{}", list.stdout);
    assert_eq!(list.stderr, "");
    // The same words as /exec.
    assert_eq!(list.stdout, s.ok("integrations list").await);

    let json = ssh(addr, &key, "integrations show llm --json", None, false).await;
    assert_eq!(json.status, 0, "{}", json.stderr);
    let view: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(view["hostname"], "llm.int.exe.xyz");

    // Every other command, each as over /exec.
    for (line, expect) in [
        (
            "integrations add reflection --name mirror --fields email",
            "mirror",
        ),
        (
            "integrations attach mirror vm:local",
            "attached mirror to vm:local",
        ),
        (
            "integrations detach mirror vm:local",
            "detached mirror from vm:local",
        ),
        (
            "integrations edit mirror --comment 'seen over ssh'",
            "seen over ssh",
        ),
        (
            "integrations rename mirror mirror2",
            "renamed mirror to mirror2",
        ),
        ("integrations remove mirror2", "removed integration mirror2"),
        ("tag local llm", "llm"),
        ("tag -d local llm", ""),
        ("usage --by model", ""),
        ("integrations setup chatgpt --list", ""),
        ("ssh-key list", "alice@test"),
    ] {
        let ran = ssh(addr, &key, line, None, false).await;
        assert_eq!(ran.status, 0, "{line}: {} {}", ran.stdout, ran.stderr);
        assert!(ran.stdout.contains(expect), "{line}: {}", ran.stdout);
    }
    let keys = ssh(addr, &key, "ssh-key list --json", None, false).await;
    let keys: Value = serde_json::from_str(&keys.stdout).unwrap();
    assert_eq!(keys["keys"][0]["comment"], "alice@test");

    // Help is an answer (0); a usage error is 2; a command that fails is 1.
    let help = ssh(addr, &key, "integrations add llm --help", None, false).await;
    assert_eq!(help.status, 0);
    assert!(help.stdout.contains("--openai-key"), "{}", help.stdout);
    let usage = ssh(addr, &key, "integrations frobnicate", None, false).await;
    assert_eq!(usage.status, 2, "{}", usage.stderr);
    assert!(usage.stderr.starts_with("error: "), "{}", usage.stderr);
    assert_eq!(usage.stdout, "");
    let missing_key = ssh(
        addr,
        &key,
        "integrations edit llm --openai=byok --openai-key=-",
        None,
        false,
    )
    .await;
    assert_eq!(missing_key.status, 2, "{}", missing_key.stderr);
    assert!(
        missing_key.stderr.contains("standard input"),
        "{}",
        missing_key.stderr
    );
    let not_found = ssh(addr, &key, "integrations show nope", None, false).await;
    assert_eq!(not_found.status, 1);
    assert_eq!(
        not_found.stderr,
        "error: you have no integration named nope; `integrations list` shows yours\n"
    );
    let json_error = ssh(addr, &key, "integrations remove nope --json", None, false).await;
    assert_eq!(json_error.status, 1);
    let error: Value = serde_json::from_str(&json_error.stderr).unwrap();
    assert_eq!(error["error"]["kind"], "not_found");
    let json_usage = ssh(addr, &key, "integrations show --json", None, false).await;
    assert_eq!(json_usage.status, 2);
    let error: Value = serde_json::from_str(&json_usage.stderr).unwrap();
    assert_eq!(error["error"]["kind"], "usage");
    // A shell without a terminal reads a script: no prompt, no echo, the
    // last line run even without its newline.
    let script = ssh(
        addr,
        &key,
        "",
        Some("integrations list\nbogus\nintegrations show llm"),
        false,
    )
    .await;
    assert_eq!(script.status, 0, "{}", script.stderr);
    assert!(
        script.stdout.contains("reflection.int.exe.xyz"),
        "{}",
        script.stdout
    );
    assert!(
        script.stdout.contains("llm (llm integration)"),
        "{}",
        script.stdout
    );
    assert!(!script.stdout.contains('▶'), "{}", script.stdout);
    assert!(script.stderr.contains("'bogus'"), "{}", script.stderr);
    // A refusal of the executor's is a usage error too.
    let test = ssh(
        addr,
        &key,
        "integrations test llm --provider openai",
        None,
        false,
    )
    .await;
    assert_eq!(test.status, 2, "{} {}", test.stdout, test.stderr);
    assert!(
        test.stderr.contains("there is no stored key"),
        "{}",
        test.stderr
    );
    // A fingerprint that is not one is shown once escaped, not twice.
    let bad = ssh(addr, &key, "ssh-key remove SHA256:x\u{1b}y", None, false).await;
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("\"SHA256:x\\u{1b}y\""),
        "{}",
        bad.stderr
    );
    // Characters that draw nothing (a soft hyphen, a Hangul filler, tag
    // characters) are shown as escapes, as controls are.
    let hidden = "a\u{ad}b\u{3164}c\u{e0041}\u{e007f}d";
    let add = ssh(
        addr,
        &key,
        &format!("integrations add reflection --name soft --comment '{hidden}'"),
        None,
        false,
    )
    .await;
    assert_eq!(add.status, 0, "{}", add.stderr);
    let show = ssh(addr, &key, "integrations show soft", None, false).await;
    assert!(
        show.stdout
            .contains("a\\u{ad}b\\u{3164}c\\u{e0041}\\u{e007f}d"),
        "{}",
        show.stdout
    );
    assert!(!show.stdout.contains(hidden), "{}", show.stdout);
    s.stop().await;
}

#[tokio::test]
async fn a_key_piped_through_stdin_is_stored_and_used_by_a_vm() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |_| {}).await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let secret = "sk-proj-piped-over-ssh-0123456789abcdef";
    // The seed's example, word for word but for the port and host.
    let add = ssh(
        addr,
        &key,
        "integrations add llm --name openai-key --openai=byok --openai-key=- --anthropic=disabled --fireworks=disabled --attach tag:llm",
        Some(secret),
        false,
    )
    .await;
    assert_eq!(add.status, 0, "{}", add.stderr);
    assert!(add.stdout.contains("set (…cdef)"), "{}", add.stdout);
    assert!(!add.stdout.contains(secret) && !add.stderr.contains(secret));
    let tag = ssh(addr, &key, "tag local llm", None, false).await;
    assert_eq!(tag.status, 0, "{}", tag.stderr);

    // The VM (this machine, `local`) calls the integration; the key piped
    // over SSH is what reaches the provider.
    let client = s.vm_client("127.0.0.1".parse().unwrap(), &["openai-key.int.exe.xyz"]);
    let response = client
        .post(format!(
            "{}/v1/chat/completions",
            s.data_url("openai-key.int.exe.xyz")
        ))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = upstream.last().unwrap();
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );

    // Editing a key the same way, as the seed shows.
    let anthropic = "sk-ant-piped-over-ssh-0123456789abcdef";
    let edit = ssh(
        addr,
        &key,
        "integrations edit llm --anthropic=byok --anthropic-key=-",
        Some(&format!("{anthropic}\n")),
        false,
    )
    .await;
    assert_eq!(edit.status, 0, "{}", edit.stderr);
    assert!(edit.stdout.contains("updated llm"), "{}", edit.stdout);
    assert!(!edit.stdout.contains(anthropic));
    s.stop().await;
}

/// A custom endpoint configured over SSH, its header value piped in:
/// stored sealed, and sent by the gateway to the endpoint.
#[tokio::test]
async fn a_custom_endpoint_is_configured_over_ssh() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |c| c.endpoints.allow_private = true).await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let value = "endpoint-value-over-ssh-0123456789";
    let add = ssh(
        addr,
        &key,
        &format!(
            "integrations add llm --name own --openai=custom --openai-url={}/v1 --openai-header='X-Endpoint-Key: -' --attach auto:all",
            upstream.url()
        ),
        Some(value),
        false,
    )
    .await;
    assert_eq!(add.status, 0, "{}", add.stderr);
    assert!(!add.stdout.contains(value) && !add.stderr.contains(value));
    let show = ssh(addr, &key, "integrations show own", None, false).await;
    assert!(
        show.stdout.contains("header x-endpoint-key set (…6789)"),
        "{}",
        show.stdout
    );
    let client = s.vm_client("127.0.0.1".parse().unwrap(), &["own.int.exe.xyz"]);
    let response = client
        .post(format!(
            "{}/v1/chat/completions",
            s.data_url("own.int.exe.xyz")
        ))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        upstream.last().unwrap().header("x-endpoint-key"),
        Some(value)
    );
    s.stop().await;
}

#[tokio::test]
async fn unregistered_keys_and_passwords_are_refused_and_other_users_integrations_are_not_found() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |_| {}).await;
    let addr = s.ssh.unwrap();
    let alice = keygen(dirs.data.path(), "alice");
    let stranger = keygen(dirs.data.path(), "stranger");
    register(&s, &s.token.clone(), &alice).await;

    // An unknown key: refused, and the banner says how to register one.
    let refused = ssh(addr, &stranger, "integrations list", None, true).await;
    assert_eq!(refused.status, 255, "{}", refused.stderr);
    assert_eq!(refused.stdout, "");
    assert!(
        refused.stderr.contains("Permission denied (publickey)"),
        "{}",
        refused.stderr
    );
    assert!(refused.stderr.contains("ssh-key add"), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("admin users add-key"),
        "{}",
        refused.stderr
    );

    // Passwords and keyboard-interactive are not even offered.
    let mut password = ssh_command(
        addr,
        &alice,
        &[
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "PubkeyAuthentication=no",
        ],
    );
    password.arg("integrations list").stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || password.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Permission denied (publickey)"), "{stderr}");

    // No subsystem (sftp, say) is offered to a signed-in key either.
    let mut sftp = ssh_command(addr, &alice, &["-s", "-o", "LogLevel=ERROR"]);
    sftp.arg("sftp").stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || sftp.output().unwrap())
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());

    // A second user, with their own key.
    let bob_token = s.user("bob@example.com").await;
    let bob = keygen(dirs.data.path(), "bob");
    register(&s, &bob_token, &bob).await;
    let private = ssh(
        addr,
        &alice,
        "integrations add reflection --name alices",
        None,
        false,
    )
    .await;
    assert_eq!(private.status, 0, "{}", private.stderr);
    let foreign = ssh(addr, &bob, "integrations show alices", None, false).await;
    assert_eq!(foreign.status, 1);
    let (_, over_exec) = s.run_as(&bob_token, "integrations show alices").await;
    assert_eq!(foreign.stderr, over_exec);
    // Nor can bob remove alice's key.
    let alices_key = ssh(addr, &alice, "ssh-key list --json", None, false).await;
    let fingerprint = serde_json::from_str::<Value>(&alices_key.stdout).unwrap()["keys"][0]
        ["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let steal = ssh(
        addr,
        &bob,
        &format!("ssh-key remove {fingerprint}"),
        None,
        false,
    )
    .await;
    assert_eq!(steal.status, 1, "{}", steal.stderr);
    // A key already registered to someone cannot be registered again, and
    // the refusal does not say whose it is; one's own is said to be one's.
    let (status, body) = s
        .run_as(&bob_token, &format!("ssh-key add '{}'", public(&alice)))
        .await;
    assert_eq!(status, 409);
    assert!(body.contains("cannot be registered"), "{body}");
    assert!(!body.contains("already"), "{body}");
    let again = ssh(
        addr,
        &alice,
        &format!("ssh-key add '{}'", public(&alice)),
        None,
        false,
    )
    .await;
    assert_eq!(again.status, 1);
    assert!(
        again.stderr.contains("registered to you already"),
        "{}",
        again.stderr
    );
    // Alice removes her key; it no longer signs in.
    let removed = ssh(
        addr,
        &alice,
        &format!("ssh-key remove {fingerprint}"),
        None,
        false,
    )
    .await;
    assert_eq!(removed.status, 0, "{}", removed.stderr);
    let after = ssh(addr, &alice, "integrations list", None, false).await;
    assert_eq!(after.status, 255);
    s.stop().await;
}

/// What a child printed so far, and whether it has closed its output.
type Printed = Mutex<(Vec<u8>, bool)>;

/// A child's output, collected by a thread, to wait on.
#[derive(Clone, Default)]
struct Screen(Arc<(Printed, Condvar)>);

impl Screen {
    fn follow(mut from: impl Read + Send + 'static) -> Screen {
        let screen = Screen::default();
        let writer = screen.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let n = from.read(&mut buffer).unwrap_or(0);
                let (lock, ready) = &*writer.0;
                let mut state = lock.lock().unwrap();
                if n == 0 {
                    state.1 = true;
                    ready.notify_all();
                    return;
                }
                state.0.extend_from_slice(&buffer[..n]);
                ready.notify_all();
            }
        });
        screen
    }

    /// Everything printed, once the child has closed its output.
    fn text(&self) -> String {
        let (lock, ready) = &*self.0;
        let deadline = Instant::now() + DEADLINE;
        let mut state = lock.lock().unwrap();
        while !state.1 {
            let now = Instant::now();
            assert!(now < deadline, "the output never closed");
            state = ready.wait_timeout(state, deadline - now).unwrap().0;
        }
        String::from_utf8_lossy(&state.0).into_owned()
    }

    /// Waits until the output holds `what` `times` times.
    fn expect(&self, what: &str, times: usize) -> String {
        let (lock, ready) = &*self.0;
        let deadline = Instant::now() + DEADLINE;
        let mut state = lock.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&state.0).into_owned();
            if text.matches(what).count() >= times {
                return text;
            }
            let now = Instant::now();
            assert!(
                now < deadline && !state.1,
                "waited for {what:?} ×{times}; the session showed: {text:?}"
            );
            state = ready.wait_timeout(state, deadline - now).unwrap().0;
        }
    }
}

#[tokio::test]
async fn an_interactive_session_through_a_pseudo_terminal() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |_| {}).await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let secret = "sk-ant-typed-hidden-0123456789wxyz";
    let transcript = tokio::task::spawn_blocking(move || {
        // -tt: a pseudo-terminal although standard input is a pipe.
        let mut child = ssh_command(addr, &key, &["-tt", "-o", "LogLevel=ERROR"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let screen = Screen::follow(child.stdout.take().unwrap());
        let mut keys = child.stdin.take().unwrap();
        let mut type_keys = |k: &str| {
            keys.write_all(k.as_bytes()).unwrap();
            keys.flush().unwrap();
        };
        let prompt = "exe.dev ▶ ";
        screen.expect(prompt, 1);
        type_keys("integrations list\r");
        screen.expect("reflection.int.exe.xyz", 1);
        screen.expect(prompt, 2);
        // Ctrl-C drops a half-typed line.
        type_keys("integrations remove llm\x03");
        screen.expect("^C", 1);
        screen.expect(prompt, 3);
        // Up recalls the last command (not the dropped one); Enter runs it.
        type_keys("\x1b[A");
        screen.expect(&format!("\r{prompt}integrations list\u{1b}[K"), 1);
        type_keys("\r");
        screen.expect("reflection.int.exe.xyz", 2);
        screen.expect(prompt, 4);
        // Editing: a typo fixed with Left, Backspace and Ctrl-E.
        type_keys("integrations shwo\x1b[D\x7f\x05w llm\r");
        screen.expect("llm (llm integration)", 1);
        screen.expect(prompt, 5);
        // A key given as `-` is asked for without echo.
        type_keys("integrations edit llm --anthropic=byok --anthropic-key=-\r");
        screen.expect("anthropic key: ", 1);
        type_keys(&format!("{secret}\r"));
        screen.expect("updated llm", 1);
        screen.expect(prompt, 6);
        // An empty key changes nothing and names the key asked for.
        type_keys("integrations edit llm --fireworks=byok --fireworks-key=-\r");
        screen.expect("fireworks key: ", 1);
        type_keys("\r");
        screen.expect("no fireworks key given; nothing was changed", 1);
        screen.expect(prompt, 7);
        // A line that gives a key on the command line is not remembered:
        // Up recalls the line before it.
        type_keys("integrations edit llm --fireworks=byok --fireworks-key=fw-inline-0123456789\r");
        screen.expect("updated llm", 2);
        screen.expect(prompt, 8);
        type_keys("\x1b[A");
        screen.expect(
            &format!("\r{prompt}integrations edit llm --fireworks=byok --fireworks-key=-\u{1b}[K"),
            1,
        );
        type_keys("\x03");
        screen.expect("^C", 2);
        screen.expect(prompt, 9);
        // A usage error is shown and the session goes on; help lists the commands.
        type_keys("integrations frobnicate\r");
        screen.expect("error: ", 1);
        type_keys("help\r");
        let help = screen.expect("Ctrl-D or `exit` leaves", 1);
        assert!(help.contains("Usage: [OPTIONS] <COMMAND>"), "{help}");
        assert!(!help.contains("llm-integration "), "{help}");
        type_keys("exit\r");
        let status = child.wait().unwrap();
        (status.code(), screen.text())
    })
    .await
    .unwrap();
    let (status, text) = transcript;
    assert_eq!(status, Some(0), "{text}");
    assert!(!text.contains(secret), "the key was echoed: {text}");
    assert!(text.contains("set (…wxyz)"), "{text}");
    assert!(!text.contains("integrations remove llm\r\n"), "{text}");
    // The dropped line did not run.
    assert!(s
        .ok("integrations show llm")
        .await
        .contains("llm.int.exe.xyz"));
    s.stop().await;
}

#[tokio::test]
async fn the_chatgpt_login_streams_over_ssh() {
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: 2,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let endpoints = ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let (dirs, s) = start(&upstream.url(), move |c| c.chatgpt = endpoints).await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let (early, polls_then, status, text) = tokio::task::spawn_blocking(move || {
        let mut child = ssh_command(addr, &key, &["-o", "LogLevel=ERROR"])
            .arg("integrations setup chatgpt --name work")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let screen = Screen::follow(child.stdout.take().unwrap());
        // The URL and code come first, while the login still waits.
        let early = screen.expect("Waiting for authorization...", 1);
        let still_running = child.try_wait().unwrap().is_none();
        let status = child.wait().unwrap();
        (early, still_running, status.code(), screen.text())
    })
    .await
    .unwrap();
    assert!(polls_then, "the answer came only at the end: {text}");
    assert!(
        early.contains("Open this URL to authorize ChatGPT:"),
        "{early}"
    );
    assert!(early.contains("Enter this code:\n  MOCK-CODE"), "{early}");
    assert!(!early.contains("Connected"), "{early}");
    assert_eq!(status, Some(0), "{text}");
    assert!(
        text.trim_end()
            .ends_with("Connected ChatGPT account work (plan plus, someone@example.com)."),
        "{text}"
    );
    assert!(chatgpt.polls() >= 3);
    let accounts = s.ok("integrations setup chatgpt --list").await;
    assert!(accounts.contains("work"), "{accounts}");
    s.stop().await;
}

/// The real binary: `--ssh-listen` generates the host key once (0600, in
/// the data directory), prints the fingerprint `ssh-keygen` reads from it,
/// keeps it across restarts, and refuses a key it does not know.
#[tokio::test]
async fn the_binary_generates_its_host_key_once_and_prints_its_fingerprint() {
    need_ssh();
    let dir = tempfile::tempdir().unwrap();
    let start = |dir: &Path| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_llm-integration-server"));
        command.args(["--ssh-listen", "127.0.0.1:0"]);
        llm_integration_server::testing::Process::start(command, dir)
    };
    let line = |printed: &str, prefix: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in: {printed}"))
            .to_owned()
    };
    let first = start(dir.path());
    let shown = line(&first.printed, "SSH host key: ");
    let key_file = dir.path().join("llm-integration-data/ssh_host_ed25519_key");
    let fingerprint = shown.split(' ').next().unwrap().to_owned();
    assert_eq!(
        shown,
        format!("{fingerprint} llm-integration-data/ssh_host_ed25519_key")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let read = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-f")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&read.stdout).contains(&fingerprint),
        "{}",
        String::from_utf8_lossy(&read.stdout)
    );
    let address: SocketAddr = line(&first.printed, "SSH (ssh -p ")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let stranger = keygen(dir.path(), "stranger");
    let refused = ssh(address, &stranger, "integrations list", None, true).await;
    assert_eq!(refused.status, 255, "{}", refused.stderr);
    assert!(refused.stderr.contains("ssh-key add"), "{}", refused.stderr);
    drop(first);
    let again = start(dir.path());
    assert_eq!(line(&again.printed, "SSH host key: "), shown);
}

/// Opens an interactive session and waits for its prompt; the session
/// lasts while the returned child runs.
fn open_session(addr: SocketAddr, key: &Path) -> (std::process::Child, Screen) {
    let mut child = ssh_command(addr, key, &["-tt", "-o", "LogLevel=ERROR"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let screen = Screen::follow(child.stdout.take().unwrap());
    screen.expect("exe.dev ▶ ", 1);
    (child, screen)
}

#[tokio::test]
async fn connections_per_address_and_authentication_attempts_are_bounded() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |c| {
        let ssh = c.ssh.as_mut().unwrap();
        ssh.max_connections_per_peer = 1;
        ssh.max_auth_attempts = 2;
    })
    .await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let (one, two) = (
        keygen(dirs.data.path(), "one"),
        keygen(dirs.data.path(), "two"),
    );

    // Two unknown keys offered first use up the attempts: the registered
    // key after them is never tried.
    let mut many = ssh_command(
        addr,
        &one,
        &[
            "-i",
            two.to_str().unwrap(),
            "-i",
            key.to_str().unwrap(),
            "-o",
            "LogLevel=ERROR",
        ],
    );
    many.arg("integrations list").stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || many.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(255),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // The registered key alone signs in.
    let alone = ssh(addr, &key, "integrations list", None, false).await;
    assert_eq!(alone.status, 0, "{}", alone.stderr);

    // One connection per address: while a session is open, a second
    // connection from the same address is refused.
    let key2 = key.clone();
    let (held, second) = tokio::task::spawn_blocking(move || {
        let (child, _screen) = open_session(addr, &key2);
        let second = ssh_command(addr, &key2, &["-o", "LogLevel=ERROR"])
            .arg("integrations list")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (child, second)
    })
    .await
    .unwrap();
    assert_eq!(second.status.code(), Some(255));
    assert_eq!(String::from_utf8_lossy(&second.stdout), "");
    let mut held = held;
    held.kill().unwrap();
    held.wait().unwrap();
    s.stop().await;
}

#[tokio::test]
async fn an_idle_session_is_closed() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |c| {
        c.ssh.as_mut().unwrap().idle_timeout = Duration::from_secs(1);
    })
    .await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let (status, text) = tokio::task::spawn_blocking(move || {
        let (mut child, screen) = open_session(addr, &key);
        // Nothing typed: the door says goodbye and closes the session.
        screen.expect("idle for 1 s; goodbye", 1);
        let status = child.wait().unwrap();
        (status.code(), screen.text())
    })
    .await
    .unwrap();
    assert_eq!(status, Some(0), "{text}");
    s.stop().await;
}

/// Runs `ssh … COMMAND` until it exits 0, within [`DEADLINE`]; returns
/// how many runs were refused first.
async fn until_it_runs(addr: SocketAddr, key: &Path, command: &str) -> usize {
    let deadline = Instant::now() + DEADLINE;
    let mut refused = 0;
    loop {
        let ran = ssh(addr, key, command, None, false).await;
        if ran.status == 0 {
            return refused;
        }
        refused += 1;
        assert!(
            Instant::now() < deadline,
            "`{command}` never ran: {} {}",
            ran.status,
            ran.stderr
        );
    }
}

/// Waits for `child` to exit, within [`DEADLINE`].
fn exits(child: &mut std::process::Child) -> Option<i32> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < deadline, "the process never exited");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |c| {
        let ssh = c.ssh.as_mut().unwrap();
        ssh.idle_timeout = Duration::from_secs(2);
        ssh.max_connections_per_peer = 1;
    })
    .await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;

    // A shell without a terminal fed `help` without end, its output read
    // at first and then no more (`yes help | ssh -T host | sleep`).
    let key2 = key.clone();
    let (mut child, output) = tokio::task::spawn_blocking(move || {
        let mut child = ssh_command(addr, &key2, &["-T", "-o", "LogLevel=ERROR"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        std::thread::spawn(move || while input.write_all(b"help\n").is_ok() {});
        let mut output = child.stdout.take().unwrap();
        let mut seen = 0;
        let mut buffer = [0u8; 4096];
        while seen < 16 * 1024 {
            let n = output.read(&mut buffer).unwrap();
            assert!(n > 0, "the session ended early");
            seen += n;
        }
        (child, output)
    })
    .await
    .unwrap();
    // The connection holds the address's only slot until the door, its
    // output stuck, closes it; then another connection is let in.
    until_it_runs(addr, &key, "integrations list").await;
    child.kill().unwrap();
    child.wait().unwrap();
    drop(output);
    s.stop().await;
}

#[tokio::test]
async fn a_removed_key_runs_nothing_more() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |_| {}).await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let listed = ssh(addr, &key, "ssh-key list --json", None, false).await;
    let fingerprint = serde_json::from_str::<Value>(&listed.stdout).unwrap()["keys"][0]
        ["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();

    // One connection that opens channels as asked (an OpenSSH master),
    // and an interactive session on another.
    let control = dirs.data.path().join("ctl");
    let control_opt = format!("ControlPath={}", control.display());
    let mut master = ssh_command(
        addr,
        &key,
        &["-M", "-N", "-o", &control_opt, "-o", "LogLevel=ERROR"],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let through_master = |command: &str| {
        let mut c = ssh_command(addr, &key, &["-o", &control_opt, "-o", "LogLevel=ERROR"]);
        c.arg(command).stdin(Stdio::null());
        c
    };
    let deadline = Instant::now() + DEADLINE;
    while !control.exists() {
        assert!(
            Instant::now() < deadline,
            "the master connection never opened"
        );
        assert!(master.try_wait().unwrap().is_none(), "the master exited");
        tokio::task::yield_now().await;
        std::thread::park_timeout(Duration::from_millis(20));
    }
    let mut first = through_master("integrations list");
    let out = tokio::task::spawn_blocking(move || first.output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let key2 = key.clone();
    let (mut shell, screen) = tokio::task::spawn_blocking(move || open_session(addr, &key2))
        .await
        .unwrap();

    // The key is removed over another door.
    let (status, body) = s.run(&format!("ssh-key remove {fingerprint}")).await;
    assert_eq!(status, 200, "{body}");

    // The open session runs nothing more and is closed.
    let (code, text) = tokio::task::spawn_blocking(move || {
        let mut keys = shell.stdin.take().unwrap();
        keys.write_all(b"integrations list\r").unwrap();
        keys.flush().unwrap();
        let text = screen.expect("no longer registered", 1);
        (exits(&mut shell), text)
    })
    .await
    .unwrap();
    assert_ne!(code, None);
    assert!(!text.contains("reflection.int.exe.xyz"), "{text}");
    // No new channel opens on the connection opened before, which is
    // closed too.
    let mut again = through_master("integrations list");
    let out = tokio::task::spawn_blocking(move || again.output().unwrap())
        .await
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty());
    let ended = tokio::task::spawn_blocking(move || exits(&mut master))
        .await
        .unwrap();
    assert_ne!(ended, None);
    s.stop().await;
}

#[tokio::test]
async fn strangers_cannot_take_every_connection() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |c| {
        c.ssh.as_mut().unwrap().max_unauthenticated = 2;
    })
    .await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let (mut session, screen, strangers) = tokio::task::spawn_blocking(move || {
        let (session, screen) = open_session(addr, &key);
        // Connections that never sign in: at most two are let in (the
        // second only at random); those let in are greeted with the
        // server's version, without its number.
        let mut strangers = Vec::new();
        let mut greeted = 0;
        for _ in 0..8 {
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            stream.set_read_timeout(Some(DEADLINE)).unwrap();
            let mut first = [0u8; 64];
            let n = stream.read(&mut first).unwrap_or(0);
            if n > 0 {
                assert_eq!(&first[..n], b"SSH-2.0-llm-integration\r\n");
                greeted += 1;
            }
            strangers.push(stream);
        }
        (session, screen, (greeted, strangers))
    })
    .await
    .unwrap();
    let (greeted, strangers) = strangers;
    assert!((1..=2).contains(&greeted), "{greeted} strangers let in");
    // The signed-in session goes on.
    let mut keys = session.stdin.take().unwrap();
    keys.write_all(b"integrations list\r").unwrap();
    keys.flush().unwrap();
    let key = dirs.data.path().join("alice");
    tokio::task::spawn_blocking(move || screen.expect("reflection.int.exe.xyz", 1))
        .await
        .unwrap();
    // Once the strangers leave, new connections are let in again.
    drop(strangers);
    until_it_runs(addr, &key, "integrations list").await;
    drop(keys);
    session.kill().unwrap();
    session.wait().unwrap();
    s.stop().await;
}

#[tokio::test]
async fn a_chatgpt_login_whose_client_is_killed_connects_nothing() {
    // The login would be approved at its first poll, two seconds in.
    let chatgpt = MockChatGpt::start(ChatGptBehaviour {
        pending_polls: 0,
        interval: 2,
        ..ChatGptBehaviour::default()
    })
    .await
    .unwrap();
    let upstream = MockUpstream::start().await.unwrap();
    let endpoints = ChatGptEndpoints {
        auth: chatgpt.auth_url(),
        backend: chatgpt.backend_url(),
    };
    let (dirs, s) = start(&upstream.url(), move |c| c.chatgpt = endpoints).await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;
    let key2 = key.clone();
    tokio::task::spawn_blocking(move || {
        let mut child = ssh_command(addr, &key2, &["-o", "LogLevel=ERROR"])
            .arg("integrations setup chatgpt --name lost")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let screen = Screen::follow(child.stdout.take().unwrap());
        screen.expect("Waiting for authorization...", 1);
        child.kill().unwrap();
        child.wait().unwrap();
    })
    .await
    .unwrap();
    // A second login, started after the first was dropped, polls after
    // it would have: when it is connected, the first would have been.
    let second = ssh(
        addr,
        &key,
        "integrations setup chatgpt --name kept",
        None,
        false,
    )
    .await;
    assert_eq!(second.status, 0, "{} {}", second.stdout, second.stderr);
    let accounts = s.ok("integrations setup chatgpt --list").await;
    assert!(accounts.contains("kept"), "{accounts}");
    assert!(!accounts.contains("lost"), "{accounts}");
    assert_eq!(chatgpt.polls(), 1);
    s.stop().await;
}

#[tokio::test]
async fn a_key_awaited_on_standard_input_is_announced_and_named() {
    let upstream = MockUpstream::start().await.unwrap();
    let (dirs, s) = start(&upstream.url(), |_| {}).await;
    let addr = s.ssh.unwrap();
    let key = keygen(dirs.data.path(), "alice");
    register(&s, &s.token.clone(), &key).await;

    // Nothing piped in: the hint names this door and the provider asked.
    let empty = ssh(
        addr,
        &key,
        "integrations edit llm --anthropic=byok --anthropic-key=-",
        Some(""),
        false,
    )
    .await;
    assert_eq!(empty.status, 2, "{}", empty.stderr);
    assert!(empty.stderr.contains("anthropic key"), "{}", empty.stderr);
    assert!(
        empty
            .stderr
            .contains("printf '%s' \"$ANTHROPIC_API_KEY\" | ssh exe.dev "),
        "{}",
        empty.stderr
    );
    assert!(empty.stderr.contains("ssh -t"), "{}", empty.stderr);
    assert!(
        !empty.stderr.contains("llm-integration "),
        "{}",
        empty.stderr
    );
    assert!(!empty.stderr.contains("openai"), "{}", empty.stderr);

    // Standard input open and nothing typed yet (no terminal, so no
    // prompt): standard error says what is awaited; the key then typed
    // and ended is used.
    let secret = "sk-ant-typed-late-0123456789abcd";
    let (status, stdout, stderr) = tokio::task::spawn_blocking(move || {
        let mut child = ssh_command(addr, &key, &["-o", "LogLevel=ERROR"])
            .arg("integrations edit llm --anthropic=byok --anthropic-key=-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let errors = Screen::follow(child.stderr.take().unwrap());
        let output = Screen::follow(child.stdout.take().unwrap());
        let hint = errors.expect("from standard input", 1);
        let mut input = child.stdin.take().unwrap();
        input.write_all(secret.as_bytes()).unwrap();
        drop(input);
        let status = exits(&mut child);
        (status, output.text(), hint)
    })
    .await
    .unwrap();
    assert_eq!(status, Some(0), "{stdout} {stderr}");
    assert!(
        stderr.starts_with(
            "reading the anthropic key from standard input; pipe it in, or use ssh -t for a hidden prompt"
        ),
        "{stderr}"
    );
    assert!(stdout.contains("set (…abcd)"), "{stdout}");
    s.stop().await;
}
