//! `llm-integration`: the command-line client.
//!
//! It checks a command line locally with the core's parser (so usage
//! errors and `--help` need no server), reads a `-` key from standard input
//! without echo, and sends the command to a server's `POST /exec`.
//!
//! Exit codes: 0 ok, 1 error (including a command that reports a failure),
//! 2 usage.
//!
//! Rules that hold for everything the CLI does:
//!
//! - **What came from the network is printed escaped.** The server's
//!   answers (streamed or not, on standard output or error), its errors, a
//!   redirect's `Location` and reasons from the HTTP stack may carry text
//!   from a hostile server or an upstream it relays (model names, a
//!   provider's error body, ChatGPT's code, email or plan). In text they go
//!   through [`printable`] (or [`printable_line`] for one field of a line),
//!   which writes every control, bidirectional and zero-width character
//!   (ESC and CR included) as `\u{…}`, so a server cannot clear the screen,
//!   move the cursor or forge a line. With `--json`, an answer that is JSON
//!   is printed as the same JSON with those characters as JSON `\u` escapes
//!   ([`json_printable`]); one that is not is printed as text, escaped.
//! - **The server is the address given, and nothing else.** Redirects are
//!   never followed (a command can carry a key read from standard input):
//!   a 3xx answer is an error naming where it pointed. A server URL with a
//!   user name or password is refused before anything is sent: the server
//!   takes an access token, never basic credentials.
//! - **A malformed answer is named as one**, not as a network failure: a
//!   response the HTTP stack cannot parse, or an outcome header the CLI
//!   does not know.
//! - **No token or key is ever printed**, not even in a usage error that
//!   quotes the command line.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{Args, FromArgMatches, Parser, Subcommand};
use llm_integration_core::command::{grammar, parse_args, Parsed};
use llm_integration_core::redact::{printable, printable_line};
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
    // Every message is composed by the CLI, with the server's words already
    // escaped; escaping again here is a second guard (and changes nothing).
    match run(cli) {
        Ok(code) => code,
        Err(Failure::Usage(m)) => {
            let m = printable(m.trim_end());
            if m.starts_with("error:") || m.starts_with("usage:") {
                to_stderr(&format!("{m}\n"));
            } else {
                to_stderr(&format!("error: {m}\n"));
            }
            ExitCode::from(2)
        }
        Err(Failure::Error(m)) => {
            to_stderr(&format!("error: {}\n", printable(m.trim_end())));
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
        to_stderr(&with_newline(command_tree().render_help().to_string()));
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
            to_stdout(&with_newline(e.render().to_string()));
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) if local => return Err(usage_error(e.render().to_string(), &words)),
        Ok(matches) if local => {
            return match Local::from_arg_matches(&matches) {
                Ok(Local::Login(args)) => login(&cli, args),
                Ok(Local::Completions(args)) => completions(args.shell),
                Err(e) => Err(usage_error(e.to_string(), &words)),
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
            to_stdout(&with_newline(text));
            return Ok(ExitCode::SUCCESS);
        }
        Ok(Parsed::Command(line)) => line,
        Err(e) => return Err(usage_error(e.message, &words)),
    };
    // Where and as whom, checked before a key is asked for.
    let saved = load_saved();
    let server = cli
        .connection
        .server
        .clone()
        .or(saved.server)
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    check_server_url(&server)?;
    let token = Zeroizing::new(
        cli.connection
            .token
            .clone()
            .or(saved.token)
            .ok_or_else(|| Failure::Error(NO_TOKEN.into()))?,
    );
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
    let body = serde_json::json!({ "args": words, "stdin": stdin.as_deref().map(|s| s.as_str()) });
    let body = Zeroizing::new(body.to_string());
    let mode = if line.json { Mode::Json } else { Mode::Text };
    send(&server, &token, body.as_str(), mode)
}

/// What a command without a token is told: every way to give one,
/// including the token file the server wrote on its first start.
const NO_TOKEN: &str = "no access token: set LLM_INTEGRATION_TOKEN, pass --token, or run \
`llm-integration --server URL login`; the server's first start wrote the first user's token to \
llm-integration-data/owner.token (`llm-integration login --token-file llm-integration-data/owner.token`)";

/// The connection flags, which belong before the command.
const CONNECTION_FLAGS: [&str; 2] = ["--server", "--token"];

/// A usage error about `words` (the command and its arguments), as told:
///
/// - the values of `--token` and `--server` never appear in it (clap and the
///   core's parser quote an argument they refuse, `--token=VALUE` included);
/// - when `--server` or `--token` comes after the first command word, where
///   they are taken for the command's own flags and refused, a line says
///   they go before the command, with the command to type.
fn usage_error(message: String, words: &[String]) -> Failure {
    let mut message = message.trim_end().to_owned();
    let mut misplaced: Vec<&str> = Vec::new();
    for (i, word) in words.iter().enumerate() {
        for flag in CONNECTION_FLAGS {
            let value = if word == flag {
                words.get(i + 1).map(String::as_str)
            } else if let Some(value) = word.strip_prefix(flag).and_then(|v| v.strip_prefix('=')) {
                message = message.replace(word.as_str(), &format!("{flag}=…"));
                Some(value)
            } else {
                continue;
            };
            // A short value would match ordinary words of the message, and
            // is no secret anyway.
            if let Some(value) = value.filter(|v| v.chars().count() >= 4) {
                message = message.replace(value, "…");
            }
            if i > 0 && !misplaced.contains(&flag) {
                misplaced.push(flag);
            }
        }
    }
    if !misplaced.is_empty() {
        let flags: Vec<String> = misplaced.iter().map(|f| format!("{f} …")).collect();
        message.push_str(&format!(
            "\n--server and --token go before the command: llm-integration {} {}",
            flags.join(" "),
            command_path(words)
        ));
    }
    Failure::Usage(message)
}

/// The command of `words` as far as its first flag (`integrations show
/// llm`), without the connection flags, followed by `…` when more follows
/// (which is not repeated: a flag's value could be a key).
fn command_path(words: &[String]) -> String {
    let mut rest: Vec<&str> = Vec::new();
    let mut skip_value = false;
    for word in words {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        if CONNECTION_FLAGS.contains(&word.as_str()) {
            skip_value = true;
            continue;
        }
        if CONNECTION_FLAGS
            .iter()
            .any(|f| word.strip_prefix(f).is_some_and(|v| v.starts_with('=')))
        {
            continue;
        }
        rest.push(word);
    }
    let command = rest.iter().take_while(|w| !w.starts_with('-')).count();
    let mut path = rest[..command].to_vec();
    if command < rest.len() {
        path.push("…");
    }
    path.join(" ")
}

/// Checks a server URL before anything is sent to it: `http` or `https`
/// with a host, and no user name or password (the server takes an access
/// token; reqwest would send them as basic credentials in its place). The
/// messages never repeat what stood before the `@`.
fn check_server_url(server: &str) -> Result<(), Failure> {
    let shown = without_userinfo(server);
    let not_a_url = || {
        Failure::Usage(format!(
            "the server URL {shown:?} is not a URL; give it as http://HOST:PORT, e.g. {DEFAULT_SERVER} \
(--server / LLM_INTEGRATION_SERVER)"
        ))
    };
    let mut url = reqwest::Url::parse(server).map_err(|_| not_a_url())?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(not_a_url());
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Setting these on an http(s) URL with a host cannot fail.
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let bare = url.as_str().trim_end_matches('/').to_owned();
        return Err(Failure::Usage(format!(
            "the server URL {shown} has a user name or password (the part before @), which the \
server does not take; give the server as {bare} and the access token with --token or \
LLM_INTEGRATION_TOKEN (--server / LLM_INTEGRATION_SERVER)"
        )));
    }
    Ok(())
}

/// `server` with whatever stands before an `@` in its authority written
/// as `…` (`http://…@host:7701`), so that a password is never shown.
fn without_userinfo(server: &str) -> String {
    let start = server.find("://").map_or(0, |i| i + 3);
    let rest = &server[start..];
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{}…{}", &server[..start], &rest[at..]),
        None => server.to_owned(),
    }
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
        // The server is the address given: a redirect would re-send the
        // command, and a key read from standard input, elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Failure::Error(format!("cannot start the HTTP client: {e}")))
}

/// How an answer is printed: as text, or as JSON (`--json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    Json,
}

/// What the admin API's outcome header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Stream,
}

/// Posts `body` to the server's `POST /exec` and returns an answer that
/// came from the admin API, with its outcome. Refused: a redirect (named,
/// never followed), an answer without the outcome header (not the admin
/// API), and one whose outcome is none the CLI knows (malformed).
fn post_exec(
    server: &str,
    token: &str,
    body: &str,
    mode: Mode,
) -> Result<(reqwest::blocking::Response, Outcome), Failure> {
    let mut request = client()?
        .post(exec_url(server))
        .bearer_auth(token)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_owned());
    if mode == Mode::Json {
        // The server's own errors (a refused token too) then come as JSON.
        request = request.header(reqwest::header::ACCEPT, "application/json");
    }
    let response = request.send().map_err(|e| unreachable(server, &e))?;
    let status = response.status();
    if status.is_redirection() {
        let to = match response.headers().get(reqwest::header::LOCATION) {
            Some(location) => format!(
                "redirect to {}",
                printable_line(&String::from_utf8_lossy(location.as_bytes()))
            ),
            None => "a redirect without a Location".to_owned(),
        };
        return Err(Failure::Error(format!(
            "the server at {server} answered {} ({to}); give its final address with --server",
            status.as_u16()
        )));
    }
    let outcome = match response.headers().get(OUTCOME).map(|v| v.as_bytes()) {
        None => return Err(not_the_admin_api(server)),
        Some(b"ok") => Outcome::Ok,
        Some(b"failed") => Outcome::Failed,
        Some(b"stream") => Outcome::Stream,
        Some(other) => {
            return Err(malformed(
                server,
                &format!(
                    "its {OUTCOME} header is \"{}\", not ok, failed or stream",
                    printable_line(&String::from_utf8_lossy(other))
                ),
            ))
        }
    };
    Ok((response, outcome))
}

fn send(server: &str, token: &str, body: &str, mode: Mode) -> Result<ExitCode, Failure> {
    let (response, outcome) = post_exec(server, token, body, mode)?;
    let status = response.status();
    if status.is_success() && outcome == Outcome::Stream {
        return relay_stream(server, response, mode);
    }
    let text = response.text().map_err(|e| {
        Failure::Error(format!(
            "the server's answer broke off ({}); run the command again",
            printable_line(&root_cause(&e))
        ))
    })?;
    if status.is_success() {
        to_stdout(&answer_printable(&text, mode));
        return Ok(if outcome == Outcome::Failed {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    to_stderr(&answer_printable(&text, mode));
    Ok(if status == reqwest::StatusCode::BAD_REQUEST {
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    })
}

/// An answer of the server, safe to print and ending with a newline: with
/// `--json`, JSON as JSON ([`json_printable`]); else (or if it is not
/// JSON) as text through [`printable`].
fn answer_printable(text: &str, mode: Mode) -> String {
    if mode == Mode::Json {
        if let Some(json) = json_printable(text) {
            return with_newline(json);
        }
    }
    with_newline(printable(text).into_owned())
}

/// `text`, if it is one JSON value, as the same JSON value safe to print:
/// every character [`printable_line`] would escape (DEL, C1 controls,
/// bidirectional and zero-width characters; JSON itself forbids the other
/// controls in strings) written as a JSON `\u` escape, and CRs between
/// tokens left out. Key order and layout are kept.
fn json_printable(text: &str) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if !in_string {
            match c {
                '\r' => continue,
                '"' => in_string = true,
                _ => {}
            }
            out.push(c);
        } else if escaped {
            escaped = false;
            out.push(c);
        } else if is_unprintable(c) {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            match c {
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            out.push(c);
        }
    }
    Some(out)
}

/// Whether [`printable_line`] escapes `c`.
fn is_unprintable(c: char) -> bool {
    let mut buffer = [0; 4];
    matches!(
        printable_line(c.encode_utf8(&mut buffer)),
        std::borrow::Cow::Owned(_)
    )
}

/// Writes `text` to standard output; a closed pipe (`| head`) is not an
/// error worth reporting.
fn to_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// [`to_stdout`] for standard error.
fn to_stderr(text: &str) {
    use std::io::Write;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
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

/// The server could not be asked: which server, why, and what to do. An
/// answer the HTTP stack could not parse is no network failure: it is
/// named as a malformed answer.
fn unreachable(server: &str, e: &reqwest::Error) -> Failure {
    if e.is_builder() {
        return Failure::Usage(format!(
            "the server URL {:?} is not a URL; give it as http://HOST:PORT, e.g. {DEFAULT_SERVER} \
(--server / LLM_INTEGRATION_SERVER)",
            without_userinfo(server)
        ));
    }
    if let Some(what) = unparsable_answer(e) {
        return malformed(server, &what);
    }
    let why = if e.is_timeout() {
        "it did not answer in time".to_owned()
    } else {
        printable_line(&root_cause(e)).into_owned()
    };
    Failure::Error(format!(
        "cannot reach the server at {server} ({why}); start it (`llm-integration-server`) \
or point --server / LLM_INTEGRATION_SERVER at its admin listener"
    ))
}

/// What was wrong with an answer the HTTP stack refused to parse (a
/// response header holding ESC, a status line that is not HTTP), if that
/// is why `e` happened. hyper names its parse errors `invalid HTTP …` and
/// `message head is too large`.
fn unparsable_answer(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        if text.starts_with("invalid HTTP header") {
            return Some(
                "a response header is not valid HTTP (it holds a control character such as ESC, \
or a byte HTTP does not allow)"
                    .to_owned(),
            );
        }
        if text.starts_with("invalid HTTP status") {
            return Some("its status line has no valid status code".to_owned());
        }
        if text.starts_with("invalid HTTP version") {
            return Some(
                "it is not HTTP/1.x (its status line does not start with HTTP/1.)".to_owned(),
            );
        }
        if text.starts_with("message head is too large") {
            return Some("its headers are too large".to_owned());
        }
        if text.starts_with("invalid HTTP") {
            return Some(format!("it is not valid HTTP ({})", printable_line(&text)));
        }
        current = err.source();
    }
    None
}

/// The server answered, but not in a form the admin API answers in.
fn malformed(server: &str, what: &str) -> Failure {
    Failure::Error(format!(
        "the server at {server} sent a malformed answer: {what}; is --server / \
LLM_INTEGRATION_SERVER an llm-integration admin listener (127.0.0.1:7701 by default), with \
nothing in between that alters its answers?"
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

/// The longest line of a streamed `--json` answer (one event).
const MAX_EVENT: usize = 1 << 20;

/// Prints a streamed answer as it arrives (e.g. the ChatGPT login: the
/// code first, the outcome when it comes), escaped as every answer is: text
/// as it comes, through [`printable`]; with `--json` one event (line) at a
/// time, through [`json_printable`]. Its last line says whether it failed
/// (`error: …`, or an event `"error"`).
fn relay_stream(
    server: &str,
    mut response: reqwest::blocking::Response,
    mode: Mode,
) -> Result<ExitCode, Failure> {
    let mut buffer = [0u8; 4096];
    let mut decoder = Utf8Decoder::default();
    let mut relay = StreamRelay::new(mode);
    loop {
        let n = response.read(&mut buffer).map_err(|e| {
            Failure::Error(format!(
                "the server's answer broke off ({}); run the command again",
                printable_line(&root_cause(&e))
            ))
        })?;
        if n == 0 {
            break;
        }
        let text = decoder.decode(&buffer[..n]);
        to_stdout(&relay.feed(&text).map_err(|what| malformed(server, &what))?);
    }
    let text = decoder.finish();
    to_stdout(&relay.feed(&text).map_err(|what| malformed(server, &what))?);
    to_stdout(&relay.finish());
    Ok(if relay.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Turns a streamed answer into what to print, and judges its last line.
struct StreamRelay {
    mode: Mode,
    /// The line being received: with `--json` the whole event, in text
    /// its first bytes (enough to tell an `error:` line).
    line: String,
    /// In text, whether what was printed ends a line.
    at_line_start: bool,
    /// Whether the last non-empty line said the command failed.
    failed: bool,
}

impl StreamRelay {
    fn new(mode: Mode) -> Self {
        StreamRelay {
            mode,
            line: String::new(),
            at_line_start: true,
            failed: false,
        }
    }

    /// What to print for `text`, the next part of the answer; an error
    /// says what is malformed about it.
    fn feed(&mut self, text: &str) -> Result<String, String> {
        let mut out = String::new();
        if self.mode == Mode::Text {
            out.push_str(&printable(text));
            if let Some(last) = text.chars().last() {
                self.at_line_start = last == '\n';
            }
        }
        for piece in text.split_inclusive('\n') {
            let (part, ended) = match piece.strip_suffix('\n') {
                Some(part) => (part, true),
                None => (piece, false),
            };
            match self.mode {
                Mode::Text if self.line.len() < 64 => self.line.push_str(part),
                Mode::Text => {}
                Mode::Json if self.line.len() + part.len() > MAX_EVENT => {
                    return Err(format!(
                        "a line of its --json answer is over {MAX_EVENT} bytes, which no event is"
                    ))
                }
                Mode::Json => self.line.push_str(part),
            }
            if ended {
                out.push_str(&self.end_line());
            }
        }
        Ok(out)
    }

    /// Ends the line received: judges it and, with `--json`, prints it.
    fn end_line(&mut self) -> String {
        let line = std::mem::take(&mut self.line);
        if line.trim().is_empty() {
            return String::new();
        }
        self.failed = line.starts_with("error:");
        if self.mode == Mode::Text {
            return String::new();
        }
        match json_printable(&line) {
            Some(json) => {
                self.failed = serde_json::from_str::<serde_json::Value>(&line)
                    .is_ok_and(|event| event["event"] == "error");
                json + "\n"
            }
            None => format!("{}\n", printable_line(&line)),
        }
    }

    /// What is left to print when the answer ends: its last line, if no
    /// newline ended it.
    fn finish(&mut self) -> String {
        let mut out = self.end_line();
        if self.mode == Mode::Text && !self.at_line_start {
            out.push('\n');
        }
        out
    }
}

/// Decodes UTF-8 that arrives in pieces: a character split between two
/// pieces is kept until its end arrives; invalid bytes become U+FFFD.
#[derive(Default)]
struct Utf8Decoder {
    pending: Vec<u8>,
}

impl Utf8Decoder {
    fn decode(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // The start of a character whose end is to come.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// What is left at the end: an unfinished character, as U+FFFD.
    fn finish(&mut self) -> String {
        if std::mem::take(&mut self.pending).is_empty() {
            String::new()
        } else {
            char::REPLACEMENT_CHARACTER.to_string()
        }
    }
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
    let server = cli
        .connection
        .server
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
    check_server_url(&server)?;
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
    let probe = serde_json::json!({ "args": ["integrations", "list"] }).to_string();
    let (response, _) = post_exec(&server, &token, &probe, Mode::Text)?;
    if !response.status().is_success() {
        let text = response.text().unwrap_or_default();
        return Err(Failure::Error(format!(
            "the server refused the token: {}",
            printable(text.trim_start_matches("error: "))
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
    to_stdout(&format!(
        "logged in to {server}; saved to {}\n",
        path.display()
    ));
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
