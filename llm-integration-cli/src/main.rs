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

use clap::error::ErrorKind;
use clap::{Args, FromArgMatches, Parser, Subcommand};
use llm_integration_core::command::{grammar, parse_args, Parsed};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const DEFAULT_SERVER: &str = "http://127.0.0.1:7701";

/// The header with which the admin listener's `POST /exec` says how a
/// command went; an answer without it came from something else.
const OUTCOME: &str = "llm-integration-outcome";

/// Where the server is and who is asking: flags given before the command.
#[derive(Debug, Args)]
struct Connection {
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
}

/// What the binary parses itself: the flags before the command, and the
/// command's words, which the core's grammar checks. Help comes from
/// [`command_tree`], which knows every command.
#[derive(Debug, Parser)]
#[command(name = "llm-integration", version, disable_help_flag = true)]
struct Cli {
    #[command(flatten)]
    connection: Connection,
    /// Answer in JSON.
    #[arg(long)]
    json: bool,
    /// Print help (of the command that follows, if any).
    #[arg(short = 'h', long)]
    help: bool,
    /// The command and its arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

// The commands the binary runs itself; every other command goes to the
// server. (A `///` comment here would become the tree's about line.)
#[derive(Debug, Subcommand)]
enum Local {
    /// Save the server URL and an access token, after checking the token
    /// against the server.
    #[command(
        long_about = "Save the server URL and an access token, after checking the token against the server.\n\n\
The token is read from --token-file, else --token / LLM_INTEGRATION_TOKEN, else standard input \
(without echo on a terminal). Both are saved in ~/.config/llm-integration/cli.toml (mode 0600; \
LLM_INTEGRATION_CLI_CONFIG names another file), so later commands need neither.",
        after_help = "Example:\n  llm-integration --server http://127.0.0.1:7701 login --token-file llm-integration-data/owner.token"
    )]
    Login(LoginArgs),
    /// Print shell completions.
    #[command(
        after_help = "Examples:\n  llm-integration completions bash > ~/.local/share/bash-completion/completions/llm-integration\n  \
llm-integration completions zsh > ~/.zfunc/_llm-integration"
    )]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
struct LoginArgs {
    /// A file holding the token (e.g. the server's DATA_DIR/owner.token).
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    token_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

/// Every command, with its arguments: the core's grammar, the connection
/// flags, `login` and `completions`. Help pages and shell completions come
/// from it, so they cannot leave a command out.
fn command_tree() -> clap::Command {
    let tree = grammar()
        .name("llm-integration")
        .bin_name("llm-integration")
        .no_binary_name(false)
        .version(env!("CARGO_PKG_VERSION"))
        .disable_version_flag(false)
        .after_help(
            "Run `llm-integration COMMAND --help` for a command's arguments, \
e.g. `llm-integration integrations add llm --help`.\n\
A key flag given as - (e.g. --openai-key=-) is read from standard input, without echo on a terminal.\n\
Exit codes: 0 ok, 1 error, 2 usage.",
        );
    Local::augment_subcommands(Connection::augment_args(tree)).about(
        "Configure LLM integrations on an llm-integration server: \
which providers a VM may call, with which credentials.",
    )
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
    if cli.help {
        words.insert(0, "help".to_owned());
    }
    if words.is_empty() {
        eprint!("{}", with_newline(command_tree().render_help().to_string()));
        return Ok(ExitCode::from(2));
    }
    ask_help_of_help(&mut words);
    let argv = std::iter::once("llm-integration".to_owned()).chain(words.iter().cloned());
    let local = matches!(words[0].as_str(), "login" | "completions");
    match command_tree().try_get_matches_from(argv) {
        Err(e) if e.kind() == ErrorKind::DisplayHelp || e.kind() == ErrorKind::DisplayVersion => {
            let _ = e.print();
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // `llm-integration integrations`: the choices, as asked.
            print!("{}", with_newline(e.render().to_string()));
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) if local => {
            let _ = e.print();
            return Ok(ExitCode::from(2));
        }
        Ok(matches) if local => {
            return match Local::from_arg_matches(&matches) {
                Ok(Local::Login(args)) => login(&cli, args),
                Ok(Local::Completions(args)) => completions(args.shell),
                Err(e) => Err(Failure::Usage(e.to_string())),
            };
        }
        // The command language: the core's parser decides, as on every door.
        _ => {}
    }
    if cli.json {
        words.push("--json".into());
    }
    let line = match parse_args(words.clone()) {
        Ok(Parsed::Help(text)) => {
            print!("{}", with_newline(text));
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
        .connection
        .server
        .clone()
        .or(saved.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let token = Zeroizing::new(cli.connection.token.clone().or(saved.token).ok_or_else(|| {
        Failure::Error("no access token: set LLM_INTEGRATION_TOKEN, pass --token, or run `llm-integration --server URL login`".into())
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
    let response = client()?
        .post(exec_url(server))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .map_err(|e| unreachable(server, &e))?;
    let status = response.status();
    let outcome = response
        .headers()
        .get(OUTCOME)
        .map(|v| v.as_bytes().to_vec())
        .ok_or_else(|| not_the_admin_api(server))?;
    let failed = outcome == b"failed";
    if status.is_success() && outcome == b"stream" {
        return relay_stream(response);
    }
    let text = response
        .text()
        .map_err(|e| Failure::Error(format!("the server's answer could not be read: {e}")))?;
    if status.is_success() {
        print!("{}", with_newline(text));
        return Ok(if failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    eprint!("{}", with_newline(text));
    Ok(if status == reqwest::StatusCode::BAD_REQUEST {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    })
}

fn exec_url(server: &str) -> String {
    format!("{}/exec", server.trim_end_matches('/'))
}

/// `text`, ending with a newline (unless empty).
fn with_newline(mut text: String) -> String {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// The server could not be asked: which server, why, and what to do.
fn unreachable(server: &str, e: &reqwest::Error) -> Failure {
    if e.is_builder() {
        return Failure::Usage(format!(
            "the server URL {server:?} is not a URL; give it as http://HOST:PORT, e.g. {DEFAULT_SERVER} \
(--server / LLM_INTEGRATION_SERVER)"
        ));
    }
    let why = if e.is_timeout() {
        "it did not answer in time".to_owned()
    } else {
        root_cause(e)
    };
    Failure::Error(format!(
        "cannot reach the server at {server} ({why}); start it (`llm-integration-server`) \
or point --server / LLM_INTEGRATION_SERVER at its admin listener"
    ))
}

/// The innermost reason for `e`: an IO error's kind (`connection
/// refused`), else the last error of the chain.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io.kind().to_string();
        }
        last = err;
        current = err.source();
    }
    last.to_string()
}

/// Something answered `POST /exec` without the admin API's outcome header:
/// most likely the data plane, given the admin listener's address.
fn not_the_admin_api(server: &str) -> Failure {
    Failure::Error(format!(
        "the server at {server} did not answer as the admin API (POST /exec); is that the \
data-plane port? The admin listener is 127.0.0.1:7701 by default (--server / LLM_INTEGRATION_SERVER)"
    ))
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

/// `… help --help`: clap's `help` subcommands take no flags, so asking
/// for the help of `help` becomes `… help help`, which shows it.
fn ask_help_of_help(words: &mut Vec<String>) {
    let tree = command_tree();
    let mut command = &tree;
    let mut at = None;
    for (i, word) in words.iter().enumerate() {
        if word == "help" && command.has_subcommands() {
            at = Some(i);
            break;
        }
        match command.find_subcommand(word) {
            Some(sub) => command = sub,
            None => return,
        }
    }
    let Some(at) = at else { return };
    let flag = |w: &String| w == "--help" || w == "-h";
    if words[at + 1..].iter().any(flag) {
        let mut i = 0;
        words.retain(|w| {
            i += 1;
            i <= at + 1 || !flag(w)
        });
        if words.len() == at + 1 {
            words.push("help".to_owned());
        }
    }
}

/// `[--server URL] login [--token-file FILE]`: checks the token against
/// the server and saves both (file mode 0600).
fn login(cli: &Cli, args: LoginArgs) -> Result<ExitCode, Failure> {
    let token = match (&args.token_file, cli.connection.token.clone()) {
        (Some(path), _) => Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| Failure::Error(format!("cannot read {}: {e}", path.display())))?
                .trim()
                .to_owned(),
        ),
        (None, Some(t)) => Zeroizing::new(t),
        (None, None) => read_key("Access token")?,
    };
    let server = cli
        .connection
        .server
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    let probe = serde_json::json!({ "args": ["integrations", "list"] }).to_string();
    let response = client()?
        .post(exec_url(&server))
        .bearer_auth(token.as_str())
        .header("content-type", "application/json")
        .body(probe)
        .send()
        .map_err(|e| unreachable(&server, &e))?;
    if response.headers().get(OUTCOME).is_none() {
        return Err(not_the_admin_api(&server));
    }
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

fn completions(shell: clap_complete::Shell) -> Result<ExitCode, Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command_tree(), "llm-integration", &mut script);
    use std::io::Write;
    // A closed pipe (`| head`) is not an error worth reporting.
    let _ = std::io::stdout().write_all(&script);
    Ok(ExitCode::SUCCESS)
}
