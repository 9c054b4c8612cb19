//! What runs on an SSH session channel: one command (exec) or the
//! interactive shell, both through the [`Executor`](crate::executor::Executor).
//!
//! Outcomes are the CLI's: the answer on standard output and exit status
//! 0; a usage error on standard error and 2; any other error on standard
//! error and 1; a command that ran and reported a failure (a key the
//! provider refuses) on standard output and 1. Text the server did not
//! write itself is escaped as the CLI escapes it
//! ([`printable`](llm_integration_core::redact::printable)), so no
//! answer can drive the terminal.
//!
//! Output waits for the client's window: a piece of it that cannot be
//! delivered within the idle timeout ends the channel and has the
//! connection closed, so a client that stops reading holds nothing for
//! long. Before each command the key the connection signed in with is
//! checked again; a removed key ends the session.

use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use llm_integration_core::command::{
    parse_command_line, ChatgptSetup, Command, CommandLine, Parsed,
};
use llm_integration_core::redact::printable;
use llm_integration_core::{Provider, SecretString, UserId};
use russh::server::Msg;
use russh::{Channel, ChannelMsg, ChannelReadHalf, ChannelWriteHalf};
use zeroize::Zeroizing;

use super::editor::{Edit, LineEditor};
use super::{Running, SshDoor};

/// The largest standard input a command reads (its keys), in bytes.
const MAX_STDIN: usize = 64 * 1024;
/// Output is handed to the client in pieces of this many bytes, each
/// within the idle timeout.
const OUTPUT_PIECE: usize = 32 * 1024;
/// How long an exec request waits for standard input before saying on
/// standard error that it is reading it (input piped in comes at once).
const STDIN_HINT_AFTER: Duration = Duration::from_millis(500);
/// How long the end of a channel (status, EOF, close) may take to send.
const FINISH_WITHIN: Duration = Duration::from_secs(5);
/// Input received while output is being sent and kept for later: past
/// this many bytes no more is taken until it is used (the client waits).
const MAX_INBOX: usize = 64 * 1024;

/// A channel's task.
pub(super) type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a channel's task runs with.
pub(super) struct Context {
    door: Arc<SshDoor>,
    user: UserId,
    /// The fingerprint of the key the connection signed in with.
    key: String,
    peer: IpAddr,
    /// The channel's input.
    reader: ChannelReadHalf,
    /// The channel's input read while sending output (so that the
    /// connection never waits on this task while it waits on the client),
    /// for [`Context::next`].
    inbox: Inbox,
    /// The channel's output.
    writer: ChannelWriteHalf<Msg>,
    /// The client asked for a pseudo-terminal: its terminal is raw, so
    /// the door echoes, and lines end in CRLF.
    pty: bool,
    /// A shell request (else an exec request).
    shell: bool,
    /// Keeps the connection counted as busy while the task runs.
    running: Running,
    /// The client sent EOF (or closed): no more input will come.
    eof: bool,
    /// The client closed the channel, or the connection is gone.
    closed: bool,
    /// Input stopped for the idle timeout.
    idled: bool,
    /// Output could not be delivered: nothing more is sent.
    broken: bool,
}

/// Input kept while output was being sent.
#[derive(Default)]
struct Inbox {
    messages: VecDeque<ChannelMsg>,
    bytes: usize,
    /// The channel's input has ended (its sender is gone).
    done: bool,
}

impl Inbox {
    /// Whether more input may be taken (see [`MAX_INBOX`]).
    fn open(&self) -> bool {
        !self.done && self.bytes < MAX_INBOX
    }

    /// Keeps `message` (`None`: the channel is gone) if it matters later:
    /// data, the end of input or of the channel.
    fn keep(&mut self, message: Option<ChannelMsg>) {
        match message {
            Some(ChannelMsg::Data { data }) => {
                self.bytes += data.len();
                self.messages.push_back(ChannelMsg::Data { data });
            }
            Some(message @ (ChannelMsg::Eof | ChannelMsg::Close)) => {
                self.messages.push_back(message)
            }
            Some(_) => {}
            None => {
                self.done = true;
                self.messages.push_back(ChannelMsg::Close);
            }
        }
    }

    fn take(&mut self) -> Option<ChannelMsg> {
        let message = self.messages.pop_front()?;
        if let ChannelMsg::Data { data } = &message {
            self.bytes -= data.len();
        }
        Some(message)
    }
}

/// How a command ended, as an exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok = 0,
    Failed = 1,
    Usage = 2,
}

/// Where output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

/// Why reading input stopped.
enum Stop {
    /// The client closed its side (EOF) or the channel.
    Closed,
    /// No input for the idle timeout.
    Idle,
}

impl Context {
    /// The context of a channel `channel` of `user`'s connection from
    /// `peer`, signed in with the key `key` (a fingerprint).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        door: Arc<SshDoor>,
        user: UserId,
        key: String,
        peer: IpAddr,
        channel: Channel<Msg>,
        pty: bool,
        shell: bool,
        running: Running,
    ) -> Context {
        let (reader, writer) = channel.split();
        Context {
            door,
            user,
            key,
            peer,
            reader,
            inbox: Inbox::default(),
            writer,
            pty,
            shell,
            running,
            eof: false,
            closed: false,
            idled: false,
            broken: false,
        }
    }

    /// Sends `text` on `stream`, with CRLF line ends on a pseudo-terminal.
    async fn write(&mut self, stream: Stream, text: &str) -> bool {
        let bytes = if self.pty {
            text.replace("\r\n", "\n")
                .replace('\n', "\r\n")
                .into_bytes()
        } else {
            text.as_bytes().to_vec()
        };
        self.send(stream, bytes).await
    }

    /// Sends `bytes` on `stream`, piece by piece as the client's window
    /// allows, keeping what the client sends meanwhile. False when they
    /// could not all be delivered: the client is gone, or read nothing for
    /// the idle timeout (then the connection is closed, see
    /// [`SshDoor::connection`]).
    async fn send(&mut self, stream: Stream, bytes: Vec<u8>) -> bool {
        if self.broken {
            return false;
        }
        let idle = self.door.settings.idle_timeout;
        let mut closed = self.running.0.closed.subscribe();
        let bytes = bytes::Bytes::from(bytes);
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + OUTPUT_PIECE).min(bytes.len());
            let piece = bytes.slice(at..end);
            at = end;
            let Context {
                reader,
                inbox,
                writer,
                pty,
                running,
                broken,
                ..
            } = &mut *self;
            let sending = async {
                match stream {
                    // On a pseudo-terminal there is one stream, as in a terminal.
                    Stream::Err if !*pty => writer.extended_data_bytes(1, piece).await,
                    _ => writer.data_bytes(piece).await,
                }
            };
            let sending = tokio::time::timeout(idle, sending);
            tokio::pin!(sending);
            let delivered = loop {
                tokio::select! {
                    sent = &mut sending => break match sent {
                        Ok(sent) => sent.is_ok(),
                        Err(_) => {
                            running.0.stalled.store(true, Ordering::Relaxed);
                            false
                        }
                    },
                    () = until_closed(&mut closed) => break false,
                    // The connection hands input to this channel a few
                    // messages at a time and waits while they are not
                    // taken: taken here (up to a bound), it does not wait
                    // on this task while this task waits on it.
                    message = reader.wait(), if inbox.open() => inbox.keep(message),
                }
            };
            if !delivered {
                *broken = true;
                return false;
            }
        }
        true
    }

    /// The channel's next message: one kept while sending, else the next
    /// one to come (`None`: the channel is gone).
    async fn receive(&mut self) -> Option<ChannelMsg> {
        if let Some(message) = self.inbox.take() {
            return Some(message);
        }
        if self.inbox.done {
            return None;
        }
        self.reader.wait().await
    }

    /// Ends the channel with `status`. The connection counts as idle from
    /// the last input when the channel ended for want of it.
    async fn finish(self, status: u32) {
        if !self.broken {
            let mut closed = self.running.0.closed.subscribe();
            let end = async {
                let _ = self.writer.exit_status(status).await;
                let _ = self.writer.eof().await;
                let _ = self.writer.close().await;
            };
            tokio::select! {
                _ = tokio::time::timeout(FINISH_WITHIN, end) => {}
                () = until_closed(&mut closed) => {}
            }
        }
        let state = self.running.0.clone();
        drop(self.running);
        if self.idled {
            state.idle_out(self.door.settings.idle_timeout);
        }
    }

    /// The next message of the channel, within the idle timeout.
    async fn next(&mut self) -> Result<Option<ChannelMsg>, Stop> {
        if self.eof {
            return Err(Stop::Closed);
        }
        let idle = self.door.settings.idle_timeout;
        match tokio::time::timeout(idle, self.receive()).await {
            Err(_) => {
                self.idled = true;
                Err(Stop::Idle)
            }
            Ok(Some(ChannelMsg::Eof)) => {
                self.eof = true;
                Err(Stop::Closed)
            }
            Ok(None | Some(ChannelMsg::Close)) => {
                self.eof = true;
                self.closed = true;
                Err(Stop::Closed)
            }
            Ok(Some(ChannelMsg::Data { data })) => {
                self.running.0.touch();
                Ok(Some(ChannelMsg::Data { data }))
            }
            Ok(Some(_)) => Ok(None),
        }
    }

    /// Standard input until EOF, bounded, for the keys of `providers`.
    /// When none has come shortly after the command started, standard
    /// error says what is awaited (nothing can be prompted for without a
    /// terminal, and the client's own terminal echoes what is typed).
    async fn read_stdin(&mut self, providers: &[Provider]) -> Result<Zeroizing<Vec<u8>>, String> {
        let mut input = Zeroizing::new(Vec::new());
        let hint_at = tokio::time::Instant::now() + STDIN_HINT_AFTER;
        let mut hinted = false;
        loop {
            let message = if hinted || !input.is_empty() {
                self.next().await
            } else {
                match tokio::time::timeout_at(hint_at, self.next()).await {
                    Ok(message) => message,
                    Err(_) => {
                        hinted = true;
                        let hint = format!(
                            "reading the {} from standard input; pipe it in, or use ssh -t for a hidden prompt (end the input with Ctrl-D)\n",
                            keys_named(providers)
                        );
                        self.write(Stream::Err, &hint).await;
                        continue;
                    }
                }
            };
            match message {
                Ok(Some(ChannelMsg::Data { data })) => {
                    if input.len() + data.len() > MAX_STDIN {
                        return Err(format!(
                            "standard input is over {MAX_STDIN} bytes; a key is much shorter"
                        ));
                    }
                    input.extend_from_slice(&data);
                }
                Ok(_) => {}
                Err(Stop::Closed) => return Ok(input),
                Err(Stop::Idle) => {
                    return Err(format!(
                        "no standard input came within {} s; {}",
                        self.door.settings.idle_timeout.as_secs(),
                        self.pipe_hint(providers)
                    ))
                }
            }
        }
    }

    /// How to give the keys of `providers` over this door.
    fn pipe_hint(&self, providers: &[Provider]) -> String {
        let host = &self.door.settings.name;
        let (format, variables) = if providers.len() == 1 {
            ("'%s'".to_owned(), key_variable(providers[0]))
        } else {
            (
                format!("'{}'", "%s\\n".repeat(providers.len())),
                providers
                    .iter()
                    .map(|p| key_variable(*p))
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        };
        let flags: Vec<String> = providers.iter().map(|p| format!("--{p}-key=-")).collect();
        format!(
            "pipe the {} in, e.g. printf {format} {variables} | ssh {host} integrations edit NAME {}; \
or use ssh -t {host} … for a hidden prompt",
            keys_named(providers),
            flags.join(" ")
        )
    }

    /// Whether the command may run: the key the connection signed in with
    /// is still registered to the user. When it is not, says so and marks
    /// the connection for closing.
    async fn still_signed_in(&mut self, json: bool) -> bool {
        match self.door.still_registered(self.user, &self.key).await {
            Ok(true) => true,
            Ok(false) => {
                tracing::info!(peer = %self.peer, user = self.user.0, key = %self.key, "ssh: key no longer registered; connection closed");
                write_error(
                    self,
                    "unauthorized",
                    "this SSH key is no longer registered to an account; the connection is closed",
                    json,
                )
                .await;
                self.running.0.revoked.store(true, Ordering::Relaxed);
                false
            }
            Err(message) => {
                write_error(self, "unavailable", &message, json).await;
                false
            }
        }
    }

    /// Whether the session must end: its key was removed or its output
    /// cannot be delivered.
    fn ending(&self) -> bool {
        self.broken || self.running.0.revoked.load(Ordering::Relaxed)
    }
}

/// Resolves once the connection is closing.
async fn until_closed(closed: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closed.wait_for(|c| *c).await;
}

/// "anthropic key", "anthropic and openai keys (one line each)", for a
/// message.
fn keys_named(providers: &[Provider]) -> String {
    let names: Vec<&str> = providers.iter().map(|p| p.as_str()).collect();
    match names.as_slice() {
        [one] => format!("{one} key"),
        [rest @ .., last] => format!("{} and {last} keys (one line each)", rest.join(", ")),
        [] => "key".to_owned(),
    }
}

/// The environment variable an example pipes `provider`'s key from.
fn key_variable(provider: Provider) -> String {
    format!("\"${}_API_KEY\"", provider.as_str().to_uppercase())
}

/// Runs one command (an exec request) and ends the channel with its status.
pub(super) async fn exec(mut ctx: Context, command: Vec<u8>) {
    let status = match String::from_utf8(command) {
        Ok(line) if line.trim().is_empty() => {
            ctx.write(
                Stream::Err,
                "error: no command given; try `integrations list` or `help`\n",
            )
            .await;
            Status::Usage
        }
        Ok(line) => {
            let mut terminal = None;
            run_line(&mut ctx, &mut terminal, &line).await
        }
        Err(_) => {
            ctx.write(Stream::Err, "error: the command line is not valid UTF-8\n")
                .await;
            Status::Usage
        }
    };
    ctx.finish(status as u32).await;
}

/// The words that leave the shell.
const EXIT_WORDS: [&str; 3] = ["exit", "quit", "logout"];

/// What the shell adds to the command language's help.
const SHELL_HELP: &str =
    "\nIn this shell: `help COMMAND` (e.g. `help integrations add llm`) shows a command's help; \
Up/Down recall earlier lines, Left/Right/Ctrl-A/Ctrl-E move, Ctrl-C drops the line, \
Ctrl-D or `exit` leaves. A key given as `-` is asked for without echo.\n";

/// The interactive shell: a prompt, the line editor, commands until
/// `exit`, Ctrl-D, the client closing or the idle timeout.
pub(super) async fn shell(mut ctx: Context) {
    let prompt = format!("{} ▶ ", ctx.door.settings.name);
    let mut terminal = Some(Terminal::new());
    if ctx.pty {
        ctx.write(
            Stream::Out,
            "Type `help` for the commands, `exit` to leave.\n",
        )
        .await;
    }
    while !ctx.ending() {
        let edit = match read_edit(&mut ctx, &mut terminal, &prompt, false).await {
            Ok(edit) => edit,
            Err(Stop::Idle) => {
                ctx.write(
                    Stream::Out,
                    &format!(
                        "\nidle for {} s; goodbye\n",
                        ctx.door.settings.idle_timeout.as_secs()
                    ),
                )
                .await;
                break;
            }
            Err(Stop::Closed) => break,
        };
        let line = match edit {
            Edit::Line(line) => line,
            Edit::Interrupt => continue,
            Edit::Eof => break,
        };
        if holds_a_key(&line) {
            if let Some(term) = terminal.as_mut() {
                term.editor.forget(&line);
            }
        }
        let words = line.trim();
        if words.is_empty() {
            continue;
        }
        if EXIT_WORDS.contains(&words) {
            break;
        }
        let line = match words.strip_prefix("help") {
            Some("") => {
                let help = match parse_command_line("--help") {
                    Ok(Parsed::Help(text)) => door_help(&text, &ctx.door.settings.name),
                    _ => String::new(),
                };
                ctx.write(Stream::Out, &format!("{help}{SHELL_HELP}")).await;
                continue;
            }
            Some(rest) if rest.starts_with(' ') => format!("{} --help", rest.trim()),
            _ => words.to_owned(),
        };
        run_line(&mut ctx, &mut terminal, &line).await;
    }
    let status = if ctx.ending() {
        Status::Failed
    } else {
        Status::Ok
    };
    ctx.finish(status as u32).await;
}

/// Whether a typed line gives a key on the command line (`--P-key=VALUE`
/// or `--P-key VALUE`, VALUE not `-`): such a line is not kept in the
/// shell's history.
fn holds_a_key(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    words.iter().enumerate().any(|(i, word)| {
        let (flag, value) = match word.split_once('=') {
            Some((flag, value)) => (flag, Some(value)),
            None => (*word, words.get(i + 1).copied()),
        };
        flag.starts_with("--") && flag.ends_with("-key") && value.is_some_and(|v| v != "-")
    })
}

/// The shell's input side: the line editor and bytes received but not
/// used yet.
struct Terminal {
    editor: LineEditor,
    pending: Vec<u8>,
}

impl Terminal {
    fn new() -> Self {
        Terminal {
            editor: LineEditor::new(),
            pending: Vec::new(),
        }
    }
}

/// Reads one line with the editor (a new one when `terminal` is `None`,
/// as for an exec request on a pseudo-terminal). Without a pseudo-terminal
/// nothing is echoed and no prompt is drawn (the input is a script).
async fn read_edit(
    ctx: &mut Context,
    terminal: &mut Option<Terminal>,
    prompt: &str,
    hidden: bool,
) -> Result<Edit, Stop> {
    let term = terminal.get_or_insert_with(Terminal::new);
    term.editor.start(prompt, hidden);
    loop {
        if !term.pending.is_empty() {
            let (edit, used) = term.editor.feed_until_edit(&term.pending);
            term.pending.drain(..used);
            let output = term.editor.take_output();
            if ctx.pty && !ctx.send(Stream::Out, output).await {
                return Err(Stop::Closed);
            }
            if let Some(edit) = edit {
                return Ok(edit);
            }
        } else {
            let output = term.editor.take_output();
            if ctx.pty && !ctx.send(Stream::Out, output).await {
                return Err(Stop::Closed);
            }
        }
        match ctx.next().await {
            Ok(Some(ChannelMsg::Data { data })) => {
                if term.pending.len() + data.len() > 2 * super::editor::MAX_LINE_CHARS * 4 {
                    // Far more than a line; what does not fit is dropped.
                    continue;
                }
                term.pending.extend_from_slice(&data);
            }
            Ok(_) => {}
            Err(Stop::Closed) if !ctx.pty && !term.editor.is_empty() => {
                // A script's last line may end without a newline.
                term.pending.push(b'\n');
            }
            Err(stop) => return Err(stop),
        }
    }
}

/// Standard input for `command`'s `-` keys: on a pseudo-terminal each key
/// is asked for without echo, one prompt per key; otherwise the channel's
/// input until EOF (in an interactive session without one, the next
/// lines).
async fn stdin_for(
    ctx: &mut Context,
    terminal: &mut Option<Terminal>,
    command: &Command,
) -> Result<Option<SecretString>, (Status, String)> {
    let providers = command.stdin_providers();
    if providers.is_empty() {
        return Ok(None);
    }
    let interactive = ctx.pty || terminal.is_some();
    if !interactive {
        let input = ctx
            .read_stdin(&providers)
            .await
            .map_err(|e| (Status::Usage, e))?;
        let text = String::from_utf8(input.to_vec()).map_err(|_| {
            (
                Status::Usage,
                "standard input is not UTF-8; give the key as text".to_owned(),
            )
        })?;
        if text.trim().is_empty() {
            return Err((
                Status::Usage,
                format!(
                    "this command reads the {} from standard input (-), but none was given; {}",
                    keys_named(&providers),
                    ctx.pipe_hint(&providers)
                ),
            ));
        }
        return Ok(Some(SecretString::from(text)));
    }
    let mut keys = Zeroizing::new(String::new());
    for provider in &providers {
        let prompt = format!("{provider} key: ");
        match read_edit(ctx, terminal, &prompt, true).await {
            Ok(Edit::Line(key)) => {
                let key = Zeroizing::new(key);
                if key.trim().is_empty() {
                    return Err((
                        Status::Usage,
                        format!("no {provider} key given; nothing was changed"),
                    ));
                }
                keys.push_str(key.trim());
                keys.push('\n');
            }
            Ok(Edit::Interrupt | Edit::Eof) => {
                return Err((
                    Status::Usage,
                    "no key given; nothing was changed".to_owned(),
                ))
            }
            Err(_) => {
                return Err((
                    Status::Usage,
                    "the session ended before the key was given; nothing was changed".to_owned(),
                ))
            }
        }
    }
    let text = if providers.len() == 1 {
        keys.trim_end().to_owned()
    } else {
        keys.to_string()
    };
    Ok(Some(SecretString::from(text)))
}

/// Parses and runs one command line, writing its answer; returns its status.
async fn run_line(ctx: &mut Context, terminal: &mut Option<Terminal>, line: &str) -> Status {
    // As on /exec: an error is JSON when the line asks for JSON, even
    // when the line cannot be parsed.
    let json = line.split_whitespace().any(|w| w == "--json");
    let parsed = match parse_command_line(line) {
        Ok(p) => p,
        Err(e) => {
            let message = e.message.trim_end();
            let message = message.strip_prefix("error: ").unwrap_or(message);
            write_error(ctx, "usage", message, json).await;
            return Status::Usage;
        }
    };
    let line = match parsed {
        Parsed::Help(text) => {
            let text = door_help(&text, &ctx.door.settings.name);
            ctx.write(Stream::Out, &with_newline(printable(&text).into_owned()))
                .await;
            return Status::Ok;
        }
        Parsed::Command(line) => line,
    };
    if !ctx.still_signed_in(line.json).await {
        return Status::Failed;
    }
    let executor = ctx.door.executor.clone();
    let user = ctx.user;
    if let Command::SetupChatgpt(ChatgptSetup::Connect(name)) = &line.command {
        log_command(ctx, &line, None);
        return match executor
            .connect_chatgpt(user, name.clone(), line.json)
            .await
        {
            Ok(lines) => stream_lines(ctx, lines, line.json).await,
            Err(e) => report_error(ctx, &e, line.json).await,
        };
    }
    let stdin = match stdin_for(ctx, terminal, &line.command).await {
        Ok(s) => s,
        Err((status, message)) => {
            write_error(ctx, "usage", &message, line.json).await;
            return status;
        }
    };
    run_command(ctx, &line, stdin).await
}

/// Logs a command as the other doors do (its keys redacted by the
/// command's display); `ok` once it ran, none for a streamed one starting.
fn log_command(ctx: &Context, line: &CommandLine, ok: Option<bool>) {
    let door = if ctx.shell { "ssh shell" } else { "ssh exec" };
    match ok {
        Some(ok) => {
            tracing::info!(peer = %ctx.peer, user = ctx.user.0, command = %line.command, ok, "{door}")
        }
        None => {
            tracing::info!(peer = %ctx.peer, user = ctx.user.0, command = %line.command, "{door} (streaming)")
        }
    }
}

async fn run_command(ctx: &mut Context, line: &CommandLine, stdin: Option<SecretString>) -> Status {
    let result = ctx.door.executor.execute(ctx.user, line, stdin).await;
    log_command(ctx, line, Some(result.as_ref().is_ok_and(|a| !a.failed)));
    match result {
        Ok(answer) => {
            let text = if line.json {
                json_printable(
                    &(serde_json::to_string_pretty(&answer.json).unwrap_or_default() + "\n"),
                )
            } else {
                with_newline(printable(&answer.text).into_owned())
            };
            ctx.write(Stream::Out, &text).await;
            if answer.failed {
                Status::Failed
            } else {
                Status::Ok
            }
        }
        Err(e) => report_error(ctx, &e, line.json).await,
    }
}

/// Writes an error on standard error: `error: MESSAGE`, or with `--json`
/// the `/exec` shape `{"error": {"kind": …, "message": …}}`.
async fn write_error(ctx: &mut Context, kind: &str, message: &str, json: bool) {
    let text = if json {
        json_printable(
            &(serde_json::json!({"error": {"kind": kind, "message": message}}).to_string() + "\n"),
        )
    } else {
        format!("error: {}\n", printable(message))
    };
    ctx.write(Stream::Err, &text).await;
}

async fn report_error(ctx: &mut Context, e: &crate::executor::ExecError, json: bool) -> Status {
    write_error(ctx, e.kind(), &e.to_string(), json).await;
    match e {
        crate::executor::ExecError::Usage(_) => Status::Usage,
        _ => Status::Failed,
    }
}

/// Relays a streamed answer (the ChatGPT login) line by line as it comes;
/// failed if its last line says so. Dropping the receiver ends the login:
/// on a pseudo-terminal Ctrl-C does, and so does the client closing the
/// channel or going away, or its output not being read.
async fn stream_lines(
    ctx: &mut Context,
    mut lines: tokio::sync::mpsc::Receiver<String>,
    json: bool,
) -> Status {
    let mut failed = false;
    let mut connection_closed = ctx.running.0.closed.subscribe();
    loop {
        let line = tokio::select! {
            line = lines.recv() => line,
            message = ctx.receive(), if !ctx.closed => {
                match message {
                    Some(ChannelMsg::Data { data }) if ctx.pty && data.contains(&0x03) => {
                        tracing::info!(peer = %ctx.peer, user = ctx.user.0, "ssh: ChatGPT login stopped with Ctrl-C");
                        ctx.write(Stream::Out, "^C\nstopped waiting; nothing was connected\n").await;
                        return Status::Failed;
                    }
                    Some(ChannelMsg::Eof) => ctx.eof = true,
                    None | Some(ChannelMsg::Close) => {
                        ctx.eof = true;
                        ctx.closed = true;
                        tracing::info!(peer = %ctx.peer, user = ctx.user.0, "ssh: ChatGPT login stopped; the client went away");
                        return Status::Failed;
                    }
                    Some(_) => {}
                }
                continue;
            }
            () = until_closed(&mut connection_closed) => {
                tracing::info!(peer = %ctx.peer, user = ctx.user.0, "ssh: ChatGPT login stopped; the connection closed");
                return Status::Failed;
            }
        };
        let Some(line) = line else { break };
        failed = if json {
            serde_json::from_str::<serde_json::Value>(line.trim())
                .is_ok_and(|v| v["event"] == "error")
        } else {
            line.starts_with("error: ")
        };
        let text = if json {
            json_printable(&line)
        } else {
            printable(&line).into_owned()
        };
        if !ctx.write(Stream::Out, &text).await {
            // The client went away: dropping the receiver ends the login.
            tracing::info!(peer = %ctx.peer, user = ctx.user.0, "ssh: ChatGPT login stopped; its output could not be delivered");
            return Status::Failed;
        }
    }
    tracing::info!(peer = %ctx.peer, user = ctx.user.0, ok = !failed, "ssh: ChatGPT login ended");
    if failed {
        Status::Failed
    } else {
        Status::Ok
    }
}

/// Help as this door shows it: usage without the CLI's name (`Usage:
/// integrations …`, as typed after `ssh HOST` or at the prompt), and
/// examples as `ssh HOST …` with `host` the door's name.
fn door_help(text: &str, host: &str) -> String {
    text.replace("Usage: llm-integration ", "Usage: ")
        .replace("| llm-integration ", &format!("| ssh {host} "))
        .replace("\n  llm-integration ", &format!("\n  ssh {host} "))
}

fn with_newline(mut text: String) -> String {
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

/// JSON text made safe to print: every character [`printable`] would
/// escape, except the newlines between tokens, written as a JSON `\u`
/// escape (valid inside strings, which is the only place they can be).
fn json_printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c != '\n' && super::editor::is_unprintable(c) {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_a_key_are_told_apart() {
        assert!(holds_a_key(
            "integrations edit llm --openai=byok --openai-key=sk-1"
        ));
        assert!(holds_a_key(
            "integrations edit llm --openai=byok --openai-key sk-1"
        ));
        assert!(!holds_a_key(
            "integrations edit llm --openai=byok --openai-key=-"
        ));
        assert!(!holds_a_key(
            "integrations edit llm --openai=byok --openai-key -"
        ));
        assert!(!holds_a_key("integrations list"));
    }

    #[test]
    fn input_kept_while_sending_is_bounded_and_kept_in_order() {
        let mut inbox = Inbox::default();
        let piece = bytes::Bytes::from(vec![b'x'; MAX_INBOX / 2]);
        inbox.keep(Some(ChannelMsg::Data {
            data: piece.clone(),
        }));
        inbox.keep(Some(ChannelMsg::WindowAdjusted { new_size: 1 }));
        assert!(inbox.open());
        inbox.keep(Some(ChannelMsg::Data { data: piece }));
        assert!(!inbox.open(), "no more is taken past the bound");
        inbox.keep(Some(ChannelMsg::Eof));
        assert!(matches!(inbox.take(), Some(ChannelMsg::Data { .. })));
        assert!(inbox.open());
        assert!(matches!(inbox.take(), Some(ChannelMsg::Data { .. })));
        assert!(matches!(inbox.take(), Some(ChannelMsg::Eof)));
        assert!(inbox.take().is_none());
        inbox.keep(None);
        assert!(!inbox.open());
        assert!(matches!(inbox.take(), Some(ChannelMsg::Close)));
    }

    #[test]
    fn keys_are_named_as_asked() {
        assert_eq!(keys_named(&[Provider::Anthropic]), "anthropic key");
        assert_eq!(
            keys_named(&[Provider::Anthropic, Provider::OpenAi, Provider::Fireworks]),
            "anthropic, openai and fireworks keys (one line each)"
        );
        assert_eq!(key_variable(Provider::Fireworks), "\"$FIREWORKS_API_KEY\"");
    }

    #[test]
    fn help_names_this_door() {
        let help = door_help(
            "Usage: llm-integration integrations edit [OPTIONS] <NAME>\n\nExamples:\n  \
printf '%s' \"$K\" | llm-integration integrations edit llm\n  llm-integration ssh-key add K\n  \
llm-integration-server admin users add-key E K\n",
            "exe.dev",
        );
        assert_eq!(
            help,
            "Usage: integrations edit [OPTIONS] <NAME>\n\nExamples:\n  \
printf '%s' \"$K\" | ssh exe.dev integrations edit llm\n  ssh exe.dev ssh-key add K\n  \
llm-integration-server admin users add-key E K\n"
        );
    }

    #[test]
    fn json_stays_json_and_cannot_drive_a_terminal() {
        let value = serde_json::json!({"model": "a\u{1b}[2Jb\u{202e}c\u{7f}"});
        let text = serde_json::to_string_pretty(&value).unwrap() + "\n";
        let safe = json_printable(&text);
        assert!(!safe
            .chars()
            .any(|c| c != '\n' && super::super::editor::is_unprintable(c)));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }
}
