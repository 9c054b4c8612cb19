//! `llm-integration`: the command-line client.
//!
//! It checks a command line locally with the core's parser (so usage
//! errors and `--help` need no server), reads a `-` key from standard input
//! without echo, and sends the command to a server's `POST /exec`.
//!
//! Exit codes: 0 ok, 1 error (including a command that reports a failure),
//! 2 usage.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use llm_integration_core::command::{grammar, parse_args, Parsed};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const DEFAULT_SERVER: &str = "http://127.0.0.1:7701";

/// Configure LLM integrations on an llm-integration server.
#[derive(Debug, Parser)]
#[command(
    name = "llm-integration",
    version,
    about,
    after_help = "Commands:\n  integrations ...      list, add, edit, show, remove, rename, attach, detach, test, setup\n  \
tag [-d] VM TAG...    tag a VM\n  login                 save the server URL and an access token\n  \
completions SHELL     print shell completions (bash, zsh, fish, elvish, powershell)\n\n\
Run `llm-integration integrations --help` for the command language.\n\
A key flag given as - (e.g. --openai-key=-) is read from standard input, without echo on a terminal."
)]
struct Cli {
    /// The server's admin URL [default: from `login`, else http://127.0.0.1:7701].
    #[arg(long, env = "LLM_INTEGRATION_SERVER", value_name = "URL")]
    server: Option<String>,
    /// Access token [default: from `login`].
    #[arg(
        long,
        env = "LLM_INTEGRATION_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: Option<String>,
    /// Answer in JSON.
    #[arg(long)]
    json: bool,
    /// The command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

/// What `login` saves.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    server: Option<String>,
    token: Option<String>,
}

fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LLM_INTEGRATION_CLI_CONFIG") {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("llm-integration").join("cli.toml"))
}

fn load_saved() -> Saved {
    config_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default()
}

enum Failure {
    Usage(String),
    Error(String),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Failure::Usage(m)) => {
            let m = m.trim_end();
            if m.starts_with("error:") || m.starts_with("usage:") {
                eprintln!("{m}");
            } else {
                eprintln!("error: {m}");
            }
            ExitCode::from(2)
        }
        Err(Failure::Error(m)) => {
            eprintln!("error: {}", m.trim_end());
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let mut words = cli.command.clone();
    match words.first().map(String::as_str) {
        None => {
            let mut cmd = Cli::command();
            eprintln!("{}", cmd.render_help());
            return Ok(ExitCode::from(2));
        }
        Some("login") => return login(&cli, &words[1..]),
        Some("completions") => return completions(&words[1..]),
        Some(_) => {}
    }
    if cli.json {
        words.push("--json".into());
    }
    let line = match parse_args(words.clone()) {
        Ok(Parsed::Help(text)) => {
            print!("{text}");
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Parsed::Command(line)) => line,
        Err(e) => return Err(Failure::Usage(e.message)),
    };
    let stdin = match line.command.stdin_providers().as_slice() {
        [] => None,
        [_] => Some(read_key("Key")?),
        several if std::io::stdin().is_terminal() => {
            // One prompt per key; sent as one line each, in the same order.
            let mut keys = Zeroizing::new(String::new());
            for provider in several {
                keys.push_str(&read_key(&format!("{provider} key"))?);
                keys.push('\n');
            }
            Some(keys)
        }
        _ => Some(read_key("Keys")?),
    };
    let saved = load_saved();
    let server = cli
        .server
        .clone()
        .or(saved.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let token = Zeroizing::new(cli.token.clone().or(saved.token).ok_or_else(|| {
        Failure::Error("no access token: set LLM_INTEGRATION_TOKEN, pass --token, or run `llm-integration login --server URL`".into())
    })?);
    let body = serde_json::json!({ "args": words, "stdin": stdin.as_deref().map(|s| s.as_str()) });
    let body = Zeroizing::new(body.to_string());
    send(&server, &token, body.as_str())
}

fn read_key(prompt: &str) -> Result<Zeroizing<String>, Failure> {
    let key = if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password(format!("{prompt} (not echoed): "))
                .map_err(|e| Failure::Error(format!("cannot read the key: {e}")))?,
        )
    } else {
        let mut text = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::Error(format!("cannot read the key from standard input: {e}")))?;
        text
    };
    let trimmed = Zeroizing::new(key.trim_end_matches(['\r', '\n']).to_owned());
    if trimmed.is_empty() {
        return Err(Failure::Usage(
            "error: standard input is empty, but a key flag is - (read from standard input); pipe the key in, e.g. printf '%s' \"$OPENAI_API_KEY\" | llm-integration ..."
                .into(),
        ));
    }
    Ok(trimmed)
}

fn client() -> Result<reqwest::blocking::Client, Failure> {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(900))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Failure::Error(format!("cannot start the HTTP client: {e}")))
}

fn send(server: &str, token: &str, body: &str) -> Result<ExitCode, Failure> {
    let url = format!("{}/exec", server.trim_end_matches('/'));
    let response = client()?
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .map_err(|e| {
            Failure::Error(format!(
                "cannot reach the server at {server}: {}; start it (`llm-integration-server`) or point --server / LLM_INTEGRATION_SERVER at it",
                e.without_url()
            ))
        })?;
    let status = response.status();
    let outcome = response
        .headers()
        .get("llm-integration-outcome")
        .map(|v| v.as_bytes().to_vec())
        .unwrap_or_default();
    let failed = outcome == b"failed";
    if status.is_success() && outcome == b"stream" {
        return relay_stream(response);
    }
    let text = response
        .text()
        .map_err(|e| Failure::Error(format!("the server's answer could not be read: {e}")))?;
    if status.is_success() {
        print!("{text}");
        return Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    eprint!("{text}");
    Ok(if status == reqwest::StatusCode::BAD_REQUEST {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    })
}

/// Prints a streamed answer as it arrives (e.g. the ChatGPT login: the
/// code first, the outcome when it comes); its last line says whether it
/// failed.
fn relay_stream(mut response: reqwest::blocking::Response) -> Result<ExitCode, Failure> {
    use std::io::Write;
    let mut buffer = [0u8; 4096];
    let mut last_line = Vec::new();
    let mut stdout = std::io::stdout();
    loop {
        let n = response
            .read(&mut buffer)
            .map_err(|e| Failure::Error(format!("the server's answer broke off: {e}")))?;
        if n == 0 {
            break;
        }
        let _ = stdout.write_all(&buffer[..n]);
        let _ = stdout.flush();
        for b in &buffer[..n] {
            if *b == b'\n' {
                if !last_line.is_empty() {
                    last_line.push(b'\n');
                }
            } else {
                if last_line.ends_with(b"\n") {
                    last_line.clear();
                }
                last_line.push(*b);
            }
        }
    }
    let last = String::from_utf8_lossy(&last_line);
    let failed = last.starts_with("error:") || last.contains("\"event\":\"error\"");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `login [--server URL] [--token-file FILE]`: checks the token against the
/// server and saves both (file mode 0600).
fn login(cli: &Cli, args: &[String]) -> Result<ExitCode, Failure> {
    #[derive(Debug, Parser)]
    #[command(
        name = "llm-integration login",
        about = "Save the server URL and an access token (read from --token-file, LLM_INTEGRATION_TOKEN or standard input)"
    )]
    struct Login {
        /// A file holding the token (e.g. the server's DATA_DIR/owner.token).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    }
    let parsed =
        Login::try_parse_from(std::iter::once("login".to_owned()).chain(args.iter().cloned()))
            .map_err(|e| Failure::Usage(e.render().to_string()))?;
    let token = match (&parsed.token_file, &cli.token) {
        (Some(path), _) => Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Failure::Error(format!("cannot read {}: {e}", path.display())))?
                .trim()
                .to_owned(),
        ),
        (None, Some(t)) => Zeroizing::new(t.clone()),
        (None, None) => read_key("Access token")?,
    };
    let server = cli
        .server
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let probe = serde_json::json!({ "args": ["integrations", "list"] }).to_string();
    let response = client()?
        .post(format!("{}/exec", server.trim_end_matches('/')))
        .bearer_auth(token.as_str())
        .header("content-type", "application/json")
        .body(probe)
        .send()
        .map_err(|e| {
            Failure::Error(format!(
                "cannot reach the server at {server}: {}",
                e.without_url()
            ))
        })?;
    if !response.status().is_success() {
        let text = response.text().unwrap_or_default();
        return Err(Failure::Error(format!(
            "the server refused the token: {}",
            text.trim_start_matches("error: ")
        )));
    }
    let path = config_path().ok_or_else(|| {
        Failure::Error(
            "cannot find a configuration directory; set HOME or LLM_INTEGRATION_CLI_CONFIG".into(),
        )
    })?;
    let saved = Saved {
        server: Some(server.clone()),
        token: Some(token.to_string()),
    };
    let text = Zeroizing::new(toml::to_string(&saved).map_err(|e| Failure::Error(e.to_string()))?);
    write_private(&path, text.as_bytes())
        .map_err(|e| Failure::Error(format!("cannot write {}: {e}", path.display())))?;
    println!("logged in to {server}; saved to {}", path.display());
    Ok(ExitCode::SUCCESS)
}

fn write_private(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

fn completions(args: &[String]) -> Result<ExitCode, Failure> {
    let Some(shell) = args.first() else {
        return Err(Failure::Usage(
            "usage: llm-integration completions SHELL (bash, zsh, fish, elvish, powershell)".into(),
        ));
    };
    let shell: clap_complete::Shell = shell.parse().map_err(|_| {
        Failure::Usage(format!(
            "unknown shell {shell:?}; use bash, zsh, fish, elvish or powershell"
        ))
    })?;
    let mut cmd = grammar()
        .name("llm-integration")
        .no_binary_name(false)
        .arg(
            clap::Arg::new("server")
                .long("server")
                .global(true)
                .value_name("URL"),
        )
        .arg(
            clap::Arg::new("token")
                .long("token")
                .global(true)
                .value_name("TOKEN"),
        )
        .subcommand(
            clap::Command::new("login")
                .about("Save the server URL and an access token")
                .arg(
                    clap::Arg::new("token-file")
                        .long("token-file")
                        .value_name("FILE")
                        .value_hint(clap::ValueHint::FilePath),
                ),
        )
        .subcommand(
            clap::Command::new("completions")
                .about("Print shell completions")
                .arg(clap::Arg::new("shell").value_parser([
                    "bash",
                    "zsh",
                    "fish",
                    "elvish",
                    "powershell",
                ])),
        );
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "llm-integration", &mut script);
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = std::io::stdout().write_all(&script);
    Ok(ExitCode::SUCCESS)
}
