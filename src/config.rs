//! The validated, plain configuration built from the command line.
//!
//! Every flag is checked here, once, so the rest of the program works with
//! typed values (durations, sizes, header maps) and never with clap types or
//! raw strings. Errors are usage errors (exit 2) that name the flag.
//!
//! [`ClientConfig::from_cli`] only delegates: each section of the command
//! line (`cli.rs` groups them by help heading) becomes its config struct in
//! a constructor of its own (`DialConfig::from_args`, `SessionConfig`,
//! `EndPolicy`, `OutputConfig`, `Frontend`, `SmokeConfig`).

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use crate::cli::{self, BinaryFormatArg, Cli, ColorArg};
use crate::credentials::CredentialCommand;
use crate::error::{Error, Result};
use crate::frontend::smoke::script::{self, Action, ExpectKind, Step};
use crate::headers::sensitive;
use crate::matcher::Matcher;
use crate::net::endpoint::Endpoint;
use crate::net::eyeballs::{Family, Pin, Resolver};
use crate::net::proxy::ProxyRules;
use crate::serve;
use crate::supervisor::app_heartbeat::AppHeartbeatConfig;
use crate::supervisor::replies::{Replies, ReplyKind, ReplySpec};
use crate::template::Template;
use crate::values::{parse_duration, parse_size, parse_size_or_zero, positive_duration};

/// The environment variables configuration reads (the proxy variables,
/// `NO_COLOR`), by name: `std::env::var_os` for the process, a table in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Whether a stream gets colour: the one rule for stdout and stderr alike.
/// `always` colours even a pipe or a file, `never` nothing; `auto` only a
/// terminal, and only while `NO_COLOR` is unset or empty (no-color.org).
pub fn colour(when: ColorArg, terminal: bool, env: Env) -> bool {
    match when {
        ColorArg::Always => true,
        ColorArg::Never => false,
        ColorArg::Auto => terminal && env("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// What the invocation asks for.
#[derive(Debug)]
pub enum Task {
    Connect(Box<ClientConfig>),
    Serve(ServeConfig),
    /// An in-process echo server and a client connected to it.
    Demo(Box<ClientConfig>),
    Completions(clap_complete::Shell),
    Man,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub addr: String,
    pub echo: serve::EchoConfig,
}

/// Everything the client needs, frontends included.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub session: SessionConfig,
    pub input: InputConfig,
    pub end: EndPolicy,
    pub output: OutputConfig,
    pub frontend: Frontend,
    /// Notes to show once at start (URL aliases, insecure TLS).
    pub notes: Vec<String>,
}

/// Which frontend drives the session, with what only it needs.
#[derive(Debug, Clone)]
pub enum Frontend {
    /// The line editor: stdin and stdout are both terminals.
    Repl,
    Pipe,
    /// Send every received message back (`--echo`).
    Echo,
    /// Run a smoke test (`--send`, `--expect`, `--script`, `--timeout`).
    Smoke(SmokeConfig),
    /// Pipe mode with a program's output and input for stdin and stdout
    /// (`--exec CMD`).
    Exec(ExecConfig),
}

/// `--exec CMD`: the program and its arguments, split as a shell would
/// split words (quotes, backslashes), with no shell run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecConfig {
    /// CMD as given, for messages.
    pub command: String,
    /// Never empty.
    pub argv: Vec<String>,
}

impl ExecConfig {
    fn parse(command: &str) -> Result<ExecConfig> {
        let argv = crate::values::command_words("--exec", command)?;
        Ok(ExecConfig {
            command: command.to_owned(),
            argv,
        })
    }
}

/// A smoke test: the steps to run and the rules for judging them.
#[derive(Debug, Clone)]
pub struct SmokeConfig {
    pub steps: Vec<Step>,
    /// The script's name as given, for diagnostics; `None` when the steps
    /// come from `--send`/`--expect`.
    pub script: Option<String>,
    /// A message that does not match the waiting expectation fails the run.
    pub strict: bool,
    /// `--timeout`: the whole run, from process start, connecting included.
    pub timeout: Option<Duration>,
    /// Send stdin records as in pipe mode: only when no step sends anything
    /// of its own and stdin is not a terminal.
    pub read_stdin: bool,
    /// How binary messages are shown to expectations: `Hex` or `Base64`.
    pub binary_match: BinaryFormat,
    /// The scenario file's `reply` declarations, which the session answers
    /// with (after the `--reply*` flags').
    pub replies: Vec<ReplySpec>,
}

impl SmokeConfig {
    /// Whether any step checks the server's behaviour (see [`Action::is_check`]).
    pub fn has_checks(&self) -> bool {
        self.steps.iter().any(|s| s.action.is_check())
    }
}

/// What the supervisor needs: how to dial and how to keep the link alive.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub dial: DialConfig,
    pub heartbeat: Heartbeat,
    pub reconnect: ReconnectPolicy,
    /// `--on-connect`: their `{{env.NAME}}` filled in, a `{{name}}` captured
    /// by a step filled in by the supervisor on each connection.
    pub on_connect: Vec<Template>,
    /// `--header-cmd`: run before every dial, its headers that attempt's.
    pub header_cmd: Option<CredentialCommand>,
    /// `--on-connect-cmd`: run before every dial, its lines sent once connected.
    pub on_connect_cmd: Option<CredentialCommand>,
    /// `--reply*`: checked here, compiled by the supervisor.
    pub replies: Vec<ReplySpec>,
    /// `--app-ping`: the application's heartbeat.
    pub app_heartbeat: Option<AppHeartbeatConfig>,
    pub queue_capacity: usize,
    /// Bytes of recently flushed messages re-sent after a reconnect; 0 = none.
    pub replay_window: usize,
    /// `--confirm-by-reply`/`--confirm-key`: replies, not Pongs, confirm.
    pub confirm: Option<ConfirmByReply>,
    pub reports: Reports,
}

/// `--confirm-by-reply` and `--confirm-key`: which received messages are
/// replies, and what pairs a reply with its request (without a key, order).
#[derive(Debug, Clone)]
pub struct ConfirmByReply {
    pub reply: Matcher,
    pub key: Option<crate::matcher::Jq>,
}

impl ConfirmByReply {
    fn from_args(res: &cli::ResilienceArgs, window: usize, echo: bool) -> Result<Option<Self>> {
        let flag = if res.confirm_by_reply.is_some() {
            "--confirm-by-reply"
        } else if res.confirm_by_reply_text.is_some() {
            "--confirm-by-reply-text"
        } else if res.confirm_by_reply_json.is_some() {
            "--confirm-by-reply-json"
        } else if res.confirm_key.is_some() {
            "--confirm-key"
        } else {
            return Ok(None);
        };
        if echo {
            return Err(Error::Usage(format!(
                "{flag} cannot be used with --echo, which keeps no replay window"
            )));
        }
        if window == 0 {
            return Err(Error::Usage(format!(
                "{flag} needs the replay window; it cannot be used with --replay-window 0"
            )));
        }
        let reply = if let Some(pattern) = &res.confirm_by_reply {
            Matcher::regex(pattern, "--confirm-by-reply-text")
                .map_err(|why| Error::Usage(format!("--confirm-by-reply: {why}")))?
        } else if let Some(text) = &res.confirm_by_reply_text {
            Matcher::text(text)
        } else if let Some(filter) = &res.confirm_by_reply_json {
            Matcher::jq(filter)
                .map_err(|why| Error::Usage(format!("--confirm-by-reply-json: {why}")))?
        } else {
            Matcher::text("")
        };
        let key = match &res.confirm_key {
            Some(filter) => Some(
                crate::matcher::Jq::compile(filter)
                    .map_err(|why| Error::Usage(format!("--confirm-key: {why}")))?,
            ),
            None => None,
        };
        Ok(Some(ConfirmByReply { reply, key }))
    }
}

/// What the supervisor reports besides messages and the connection's state.
#[derive(Debug, Clone, Copy, Default)]
pub struct Reports {
    /// `-P`: the server's Pings and its unsolicited Pongs, as events.
    pub ping_pong: bool,
    /// `--json-sent`: every message written to the socket, as an event.
    pub sent: bool,
    /// With `sent`, in pipe mode: writing waits, as reading does, until the
    /// frontend has room for the events, so a fast stdin and a slow stdout
    /// cannot pile them up. Only there: its stdin thread waits for the
    /// supervisor on its own, while the REPL, `--echo` and a smoke test's
    /// steps send from the driver's loop, which would then wait for a
    /// supervisor waiting for it to take events. They send as fast as a
    /// person types, as events are taken, or as the steps say.
    pub sent_paces_writing: bool,
    /// `-vvv`: the frame trace (`-vv`) shows data frames' payloads.
    pub frame_payloads: bool,
}

#[derive(Debug, Clone)]
pub struct DialConfig {
    pub endpoint: Endpoint,
    /// Extra handshake headers, Authorization from --user included.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub subprotocols: Vec<String>,
    pub tls: TlsConfig,
    pub connect_timeout: Duration,
    pub max_message_size: usize,
    /// Offer permessage-deflate (`--compression on`).
    pub compression: bool,
    /// Compress what tether sends when the server agrees (`--compress`);
    /// implies `compression`.
    pub compress: bool,
    /// Which proxy each URL goes through (from --proxy, --no-proxy and the environment).
    pub proxy: ProxyRules,
    /// Redirects to follow (-L, --max-redirects); `None` reports them as rejections.
    pub follow_redirects: Option<u32>,
    /// Host names to addresses (--resolve, DNS) and which families (-4, -6).
    pub resolver: Resolver,
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub insecure: bool,
    /// PEM certificates to trust besides the system store.
    pub ca_pems: Vec<Vec<u8>>,
    /// Client identity: (certificate PEM, key PEM).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, Clone, Copy)]
pub struct Heartbeat {
    /// `None` turns heartbeats off.
    pub interval: Option<Duration>,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct ReconnectPolicy {
    pub enabled: bool,
    pub initial: Duration,
    pub max: Duration,
    /// Attempts after a failure, in a row; `None` is unlimited.
    pub max_attempts: Option<u32>,
    /// Reconnect after a normal close (1000) too.
    pub on_normal_close: bool,
}

impl ReconnectPolicy {
    /// Retry when the very first connection fails. Off unless
    /// `--max-reconnects` is given, so a wrong URL fails fast.
    pub fn retry_initial(&self) -> bool {
        self.max_attempts.is_some()
    }

    /// A connection that lasts this long resets the backoff: 10 s, or the
    /// longest delay if that is longer.
    pub fn healthy_after(&self) -> Duration {
        Duration::from_secs(10).max(self.max)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct InputConfig {
    pub binary: bool,
    pub separator: u8,
    /// Text lines as people write them: a line's trailing `\r` (a CRLF
    /// ending) is dropped, and a line empty after that is not sent. Off with
    /// `--verbatim`, `--binary` and `-0`, which send records exactly.
    pub clean_lines: bool,
    /// `-b`: no records, stdin's bytes as they come, in binary messages of
    /// what each read returns.
    pub byte_stream: bool,
    /// Where records come from, for messages: `stdin`, or with `--exec`
    /// the program's output.
    pub source: &'static str,
}

/// When a pipe session ends.
#[derive(Debug, Clone, Copy)]
pub struct EndPolicy {
    /// Idle time after stdin EOF before closing; `None` keeps the connection open.
    pub linger: Option<Duration>,
    pub count: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryFormat {
    /// Offset, hex and ASCII columns; for terminals.
    HexDump,
    Hex,
    Base64,
    Raw,
}

#[derive(Debug, Clone, Copy)]
pub struct OutputConfig {
    pub binary_format: BinaryFormat,
    pub timestamps: bool,
    pub json: bool,
    pub pretty: bool,
    pub color: bool,
    /// Output is a terminal: escape control characters (raw binary and `-b`
    /// output too), truncate hex dumps.
    pub terminal: bool,
    /// What ends each message's output record; `None` with `-b`, where the
    /// messages' bytes follow each other with nothing in between.
    pub separator: Option<u8>,
    pub verbosity: Verbosity,
    /// `-P`: heartbeat Pongs are shown at every verbosity, with the server's
    /// Pings and unsolicited Pongs.
    pub ping_pong: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Debug,
    Trace,
}

impl Verbosity {
    pub fn from_cli(args: &cli::VerbosityArgs) -> Verbosity {
        match (args.quiet, args.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Debug,
            (false, _) => Verbosity::Trace,
        }
    }
}

/// The terminals the process was started with, so tests and callers can
/// decide the mode without touching file descriptors.
#[derive(Debug, Clone, Copy)]
pub struct Terminals {
    pub stdin: bool,
    pub stdout: bool,
}

impl Terminals {
    pub fn detect() -> Terminals {
        Terminals {
            stdin: std::io::stdin().is_terminal(),
            stdout: std::io::stdout().is_terminal(),
        }
    }
}

impl Task {
    pub fn from_cli(cli: Cli, terminals: Terminals) -> Result<Task> {
        Task::from_cli_with_env(cli, terminals, &|name| std::env::var_os(name))
    }

    /// [`Task::from_cli`] with the environment given, so tests need not
    /// change the process's.
    pub fn from_cli_with_env(cli: Cli, terminals: Terminals, env: Env) -> Result<Task> {
        match cli.command {
            Some(cli::Command::Serve {
                ref addr,
                drop_after,
            }) => {
                if drop_after == Some(0) {
                    return Err(Error::Usage("--drop-after must be at least 1".into()));
                }
                Ok(Task::Serve(ServeConfig {
                    addr: normalize_listen_addr(addr),
                    echo: serve::EchoConfig { drop_after },
                }))
            }
            Some(cli::Command::Completions { shell }) => Ok(Task::Completions(shell)),
            Some(cli::Command::Man) => Ok(Task::Man),
            Some(cli::Command::Demo) => {
                // The URL is filled in once the in-process server has a port.
                let client = ClientConfig::from_cli(&cli, "ws://127.0.0.1:1/", terminals, env)?;
                Ok(Task::Demo(Box::new(client)))
            }
            None => {
                let url = cli
                    .url
                    .clone()
                    .ok_or_else(|| Error::Usage("a URL is required".into()))?;
                let client = ClientConfig::from_cli(&cli, &url, terminals, env)?;
                Ok(Task::Connect(Box::new(client)))
            }
        }
    }
}

impl ClientConfig {
    fn from_cli(cli: &Cli, url: &str, terminals: Terminals, env: Env) -> Result<ClientConfig> {
        let smoke_test = is_smoke_test(&cli.smoke);
        let mut notes = Vec::new();
        let dial = DialConfig::from_args(url, &cli.connection, &cli.tls, env, &mut notes)?;
        let mut session = SessionConfig::from_args(
            dial,
            &cli.connection.header_cmd,
            &cli.resilience,
            smoke_test,
            cli.input.echo,
            env,
        )?;
        let input = InputConfig::from_args(&cli.input);
        let end = EndPolicy::from_args(&cli.input)?;
        // With --exec, what would go to stdout goes to the program's input:
        // a pipe, whatever tether's own stdout is.
        let terminals = if cli.input.exec.is_some() {
            Terminals {
                stdin: false,
                stdout: false,
            }
        } else {
            terminals
        };
        let output = OutputConfig::from_args(
            &cli.output,
            &cli.verbosity,
            input,
            terminals,
            smoke_test,
            env,
        );
        let frontend = Frontend::from_cli(cli, smoke_test, terminals, env)?;
        let script = match &frontend {
            Frontend::Smoke(smoke) => smoke
                .script
                .is_some()
                .then(|| script::captured(&smoke.steps)),
            _ => None,
        };
        session.check_captured(&cli.resilience.on_connect, script.as_ref())?;
        if let Frontend::Smoke(smoke) = &frontend {
            session.replies.extend(smoke.replies.iter().cloned());
        }
        session.reports = Reports::from_args(&cli.output, &cli.verbosity, &frontend);
        Ok(ClientConfig {
            session,
            input,
            end,
            output,
            frontend,
            notes,
        })
    }
}

/// Any of `--send`, `--expect*`, `--script` or `--timeout` makes the run a
/// smoke test.
fn is_smoke_test(args: &cli::SmokeArgs) -> bool {
    !args.send.is_empty()
        || !args.expect.is_empty()
        || !args.expect_text.is_empty()
        || !args.expect_json.is_empty()
        || args.script.is_some()
        || args.timeout.is_some()
}

impl DialConfig {
    /// The URL and the Connection and TLS sections; notes for the user
    /// (URL aliases, insecure TLS) are added to `notes`.
    fn from_args(
        url: &str,
        conn: &cli::ConnectionArgs,
        tls: &cli::TlsArgs,
        env: Env,
        notes: &mut Vec<String>,
    ) -> Result<DialConfig> {
        if conn.compress && conn.compression == crate::cli::CompressionArg::Off {
            return Err(Error::Usage(
                "--compress needs permessage-deflate offered; --compression off offers nothing"
                    .into(),
            ));
        }
        let parsed = Endpoint::parse(url)?;
        notes.extend(parsed.note);
        let mut endpoint = parsed.endpoint;
        if let Some(socket) = &conn.unix_socket {
            if endpoint.unix.is_some() {
                return Err(Error::Usage(
                    "--unix-socket: the URL already names a socket (ws+unix://); give it once"
                        .into(),
                ));
            }
            if socket.as_os_str().is_empty() {
                return Err(Error::Usage("--unix-socket: the path is empty".into()));
            }
            // Absolute, so that it is shown as a ws+unix:// URL would name it.
            endpoint.unix = Some(std::path::absolute(socket).unwrap_or_else(|_| socket.clone()));
        }
        let headers = handshake_headers(conn, &endpoint)?;
        for proto in &conn.subprotocols {
            if proto.is_empty() || !proto.bytes().all(is_token_byte) {
                return Err(Error::Usage(format!(
                    "--subprotocol {proto:?} is not a valid token (no spaces, commas or separators)"
                )));
            }
        }
        let tls = TlsConfig::from_args(tls)?;
        if tls.insecure {
            notes.push(
                "warning: -k/--insecure: the server's certificate is not verified; anyone on the path can read and change this session".into(),
            );
        }
        if !endpoint.tls && (tls.insecure || !tls.ca_pems.is_empty() || tls.identity.is_some()) {
            notes.push("note: TLS options have no effect on a ws:// URL".into());
        }
        let proxy = proxy_rules(conn, &endpoint, env)?;
        let resolver = resolver(conn, &endpoint)?;
        Ok(DialConfig {
            endpoint,
            proxy,
            headers,
            subprotocols: conn.subprotocols.clone(),
            tls,
            connect_timeout: positive_duration("--connect-timeout", &conn.connect_timeout)?,
            max_message_size: parse_size("--max-message-size", &conn.max_message_size)?,
            compression: conn.compression == crate::cli::CompressionArg::On,
            compress: conn.compress,
            follow_redirects: conn
                .location
                .then_some(conn.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS)),
            resolver,
        })
    }
}

/// `--resolve`, `-4` and `-6` pick TCP addresses: a Unix socket has none, so
/// they are refused there rather than silently ignored.
fn resolver(conn: &cli::ConnectionArgs, endpoint: &Endpoint) -> Result<Resolver> {
    if endpoint.unix.is_some() && (!conn.resolve.is_empty() || conn.ipv4 || conn.ipv6) {
        return Err(Error::Usage(
            "--resolve, -4 and -6 choose TCP addresses; a Unix socket (ws+unix://, --unix-socket) has none"
                .into(),
        ));
    }
    Ok(Resolver {
        pins: conn
            .resolve
            .iter()
            .map(|arg| Pin::parse(arg).map_err(|err| Error::Usage(format!("--resolve {err}"))))
            .collect::<Result<_>>()?,
        family: match (conn.ipv4, conn.ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        },
    })
}

/// A Unix socket is local: no proxy reaches it, so `--proxy` is refused
/// and the proxy variables (meant for TCP routes) are ignored.
fn proxy_rules(conn: &cli::ConnectionArgs, endpoint: &Endpoint, env: Env) -> Result<ProxyRules> {
    if endpoint.unix.is_some() {
        if conn.proxy.is_some() {
            return Err(Error::Usage(
                "--proxy cannot be used with a Unix socket (ws+unix://, --unix-socket)".into(),
            ));
        }
        return Ok(ProxyRules::direct());
    }
    ProxyRules::new(conn.proxy.as_deref(), conn.no_proxy, |name| {
        env(name).and_then(|value| value.into_string().ok())
    })
}

/// `-H` headers in order, then Authorization (from `--user` or the URL's
/// userinfo) and Origin.
fn handshake_headers(
    conn: &cli::ConnectionArgs,
    endpoint: &Endpoint,
) -> Result<Vec<(HeaderName, HeaderValue)>> {
    let mut headers = crate::headers::from_args(&conn.headers)?;
    let credentials = match &conn.user {
        Some(user) => Some(match user.split_once(':') {
            Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
            None => (user.clone(), None),
        }),
        None => endpoint.userinfo.clone(),
    };
    if let Some((user, pass)) = credentials {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{user}:{}", pass.unwrap_or_default()));
        let value = HeaderValue::from_str(&format!("Basic {token}"))
            .map_err(|_| Error::Usage("--user contains characters a header cannot carry".into()))?;
        headers.push((HeaderName::from_static("authorization"), sensitive(value)));
    }
    if let Some(origin) = &conn.origin {
        let value = HeaderValue::from_str(origin).map_err(|_| {
            Error::Usage(format!("--origin {origin:?} is not a valid header value"))
        })?;
        headers.push((HeaderName::from_static("origin"), value));
    }
    Ok(headers)
}

impl TlsConfig {
    /// The TLS section: the files are read (and bounded) here.
    fn from_args(args: &cli::TlsArgs) -> Result<TlsConfig> {
        Ok(TlsConfig {
            insecure: args.insecure,
            ca_pems: match &args.cacert {
                Some(path) => {
                    split_pem_certificates(&read_file("--cacert", path, CACERT_LIMIT)?, path)?
                }
                None => Vec::new(),
            },
            identity: match (&args.cert, &args.key) {
                (Some(cert), Some(key)) => Some((
                    read_file("--cert", cert, IDENTITY_LIMIT)?,
                    read_file("--key", key, IDENTITY_LIMIT)?,
                )),
                _ => None,
            },
        })
    }
}

impl SessionConfig {
    /// The Heartbeat and reconnect section, around the dial.
    fn from_args(
        dial: DialConfig,
        header_cmd: &Option<String>,
        res: &cli::ResilienceArgs,
        smoke_test: bool,
        echo: bool,
        env: Env,
    ) -> Result<SessionConfig> {
        let reconnect = ReconnectPolicy::from_args(res, smoke_test)?;
        if res.queue_size == 0 {
            return Err(Error::Usage("--queue-size must be at least 1".into()));
        }
        let heartbeat = Heartbeat::from_args(res)?;
        let window = parse_size_or_zero("--replay-window", &res.replay_window)?;
        let command = |flag, line: &Option<String>| {
            line.as_deref()
                .map(|line| CredentialCommand::parse(flag, line, dial.connect_timeout))
                .transpose()
        };
        let header_cmd = command("--header-cmd", header_cmd)?;
        let on_connect_cmd = command("--on-connect-cmd", &res.on_connect_cmd)?;
        let replies = reply_specs(res, env)?;
        let app_heartbeat = app_heartbeat(res)?;
        Ok(SessionConfig {
            replies,
            app_heartbeat,
            header_cmd,
            on_connect_cmd,
            dial,
            heartbeat,
            reconnect,
            on_connect: res
                .on_connect
                .iter()
                .map(|message| on_connect_message(message, env))
                .collect::<Result<_>>()?,
            queue_capacity: res.queue_size,
            // An echo answers each message once. Re-sending answers after a drop
            // would tell the server something it did not send twice, and waiting
            // for Pongs that sit behind a flood of messages would stall the echo.
            replay_window: if echo { 0 } else { window },
            confirm: ConfirmByReply::from_args(res, window, echo)?,
            reports: Reports::default(),
        })
    }
}

impl SessionConfig {
    /// Every captured `{{name}}` in `--on-connect` (`raw`, as given) and in
    /// the `--reply*` answers is one a step of the script (`captured`: the
    /// names its steps capture) captures, and none in a `--reply` answer is
    /// also a group of its regex.
    fn check_captured(&self, raw: &[String], captured: Option<&HashSet<String>>) -> Result<()> {
        let known = |name: &str| captured.is_some_and(|c| c.contains(name));
        for (template, raw) in self.on_connect.iter().zip(raw) {
            if let Some(name) = template.vars().find(|name| !known(name)) {
                return Err(Error::Usage(format!(
                    "--on-connect {}: {}",
                    quote(raw),
                    script::never_captured(name, captured.is_some())
                )));
            }
        }
        for spec in &self.replies {
            script::check_reply_captures(spec, captured)
                .map_err(|why| Error::Usage(format!("{}: {why}", spec.kind.flag())))?;
        }
        Ok(())
    }
}

impl Reports {
    fn from_args(
        out: &cli::OutputArgs,
        verbosity: &cli::VerbosityArgs,
        frontend: &Frontend,
    ) -> Reports {
        Reports {
            ping_pong: out.show_ping_pong,
            sent: out.json_sent,
            sent_paces_writing: out.json_sent
                && matches!(frontend, Frontend::Pipe | Frontend::Exec(_)),
            frame_payloads: !verbosity.quiet && verbosity.verbose >= 3,
        }
    }
}

impl Heartbeat {
    fn from_args(res: &cli::ResilienceArgs) -> Result<Heartbeat> {
        let interval = parse_duration("--ping-interval", &res.ping_interval)?;
        Ok(Heartbeat {
            interval: (!interval.is_zero()).then_some(interval),
            timeout: positive_duration("--ping-timeout", &res.ping_timeout)?,
        })
    }
}

impl ReconnectPolicy {
    fn from_args(res: &cli::ResilienceArgs, smoke_test: bool) -> Result<ReconnectPolicy> {
        let initial = positive_duration("--backoff-initial", &res.backoff_initial)?;
        let max = positive_duration("--backoff-max", &res.backoff_max)?;
        if max < initial {
            return Err(Error::Usage(format!(
                "--backoff-max ({}) is shorter than --backoff-initial ({})",
                res.backoff_max, res.backoff_initial
            )));
        }
        Ok(ReconnectPolicy {
            // A smoke test checks one connection: reconnecting would hide
            // the failure it exists to catch, unless the user asks for it.
            enabled: !res.no_reconnect
                && (!smoke_test || res.max_reconnects.is_some() || res.reconnect_always),
            initial,
            max,
            max_attempts: res.max_reconnects,
            on_normal_close: res.reconnect_always,
        })
    }
}

impl InputConfig {
    fn from_args(args: &cli::InputArgs) -> InputConfig {
        let records = !args.byte_stream;
        InputConfig {
            binary: args.binary || args.byte_stream,
            separator: if args.null { b'\0' } else { b'\n' },
            clean_lines: records && !args.verbatim && !args.binary && !args.null,
            byte_stream: args.byte_stream,
            source: if args.exec.is_some() {
                "the --exec program's output"
            } else {
                "stdin"
            },
        }
    }
}

impl EndPolicy {
    fn from_args(args: &cli::InputArgs) -> Result<EndPolicy> {
        if args.count == Some(0) {
            return Err(Error::Usage("--count must be at least 1".into()));
        }
        Ok(EndPolicy {
            linger: if args.keep_open {
                None
            } else {
                Some(parse_duration("--linger", &args.linger)?)
            },
            count: args.count,
        })
    }
}

impl OutputConfig {
    /// The Output and Diagnostics sections; records end with the input's
    /// separator, and a byte stream's output is one too.
    fn from_args(
        out: &cli::OutputArgs,
        verbosity: &cli::VerbosityArgs,
        input: InputConfig,
        terminals: Terminals,
        smoke_test: bool,
        env: Env,
    ) -> OutputConfig {
        let color = colour(out.color, terminals.stdout, env);
        let binary_format = match (out.binary_format, terminals.stdout) {
            _ if input.byte_stream => BinaryFormat::Raw,
            (Some(BinaryFormatArg::Hex), true) => BinaryFormat::HexDump,
            (Some(BinaryFormatArg::Hex), false) => BinaryFormat::Hex,
            (Some(BinaryFormatArg::Base64), _) => BinaryFormat::Base64,
            (Some(BinaryFormatArg::Raw), _) => BinaryFormat::Raw,
            (None, true) => BinaryFormat::HexDump,
            // What a smoke test prints is what its expectations match.
            (None, false) if smoke_test => BinaryFormat::Hex,
            (None, false) => BinaryFormat::Base64,
        };
        OutputConfig {
            binary_format,
            timestamps: out.timestamps,
            json: out.json,
            pretty: out.pretty,
            color,
            terminal: terminals.stdout,
            separator: (!input.byte_stream).then_some(input.separator),
            verbosity: Verbosity::from_cli(verbosity),
            ping_pong: out.show_ping_pong,
        }
    }
}

impl Frontend {
    fn from_cli(cli: &Cli, smoke_test: bool, terminals: Terminals, env: Env) -> Result<Frontend> {
        if smoke_test {
            return Ok(Frontend::Smoke(SmokeConfig::from_args(
                &cli.smoke,
                cli.output.binary_format,
                terminals,
                env,
            )?));
        }
        if cli.smoke.strict {
            return Err(strict_without_expectations());
        }
        Ok(if let Some(command) = &cli.input.exec {
            Frontend::Exec(ExecConfig::parse(command)?)
        } else if cli.input.echo {
            Frontend::Echo
        } else if terminals.stdin && terminals.stdout && !cli.input.byte_stream {
            Frontend::Repl
        } else {
            Frontend::Pipe
        })
    }
}

fn strict_without_expectations() -> Error {
    Error::Usage(
        "--strict needs something to be strict about: --expect, --expect-text, --expect-json \
         or --script"
            .into(),
    )
}

impl SmokeConfig {
    fn from_args(
        args: &cli::SmokeArgs,
        binary_format: Option<BinaryFormatArg>,
        terminals: Terminals,
        env: Env,
    ) -> Result<SmokeConfig> {
        let env = text_env(env);
        let env: script::Env<'_> = &env;
        let timeout = match &args.timeout {
            Some(raw) => Some(positive_duration("--timeout", raw)?),
            None => None,
        };
        let (steps, script, replies) = match &args.script {
            Some(path) => {
                let (text, name) = read_script(path)?;
                let (steps, replies) =
                    script::parse_with_replies(&text, env).map_err(|err| match err.line {
                        Some(line) => Error::Usage(format!("{name}:{line}: {}", err.message)),
                        None => Error::Usage(format!("--script {name}: {}", err.message)),
                    })?;
                (steps, Some(name), replies)
            }
            None => (flag_steps(args, env)?, None, Vec::new()),
        };
        if args.strict
            && !steps
                .iter()
                .any(|s| matches!(s.action, Action::Expect(_) | Action::ExpectAnyOrder(_)))
        {
            return Err(strict_without_expectations());
        }
        let sends = steps
            .iter()
            .any(|s| matches!(s.action, Action::Send(_) | Action::SendTemplate(_)));
        let stdin_is_script = args.script.as_deref() == Some(Path::new("-"));
        Ok(SmokeConfig {
            replies,
            steps,
            script,
            strict: args.strict,
            timeout,
            read_stdin: !sends && !stdin_is_script && !terminals.stdin,
            binary_match: match binary_format {
                Some(BinaryFormatArg::Base64) => BinaryFormat::Base64,
                _ => BinaryFormat::Hex,
            },
        })
    }
}

/// The environment as templates read it (`{{env.NAME}}`).
fn text_env(env: Env<'_>) -> impl Fn(&str) -> Option<String> + '_ {
    move |name| env(name).map(|value| value.to_string_lossy().into_owned())
}

/// `--app-ping` with its pong matcher and interval.
fn app_heartbeat(res: &cli::ResilienceArgs) -> Result<Option<AppHeartbeatConfig>> {
    let Some(message) = &res.app_ping else {
        return Ok(None);
    };
    let (kind, matcher) = match (&res.app_pong, &res.app_pong_json) {
        (Some(regex), _) => (ReplyKind::Regex, regex),
        (None, Some(filter)) => (ReplyKind::Json, filter),
        (None, None) => {
            return Err(Error::Usage(
                "--app-ping needs --app-pong REGEX or --app-pong-json FILTER: the reply that \
                 shows the server is alive"
                    .into(),
            ));
        }
    };
    let flag = if kind == ReplyKind::Regex {
        "--app-pong"
    } else {
        "--app-pong-json"
    };
    let pong = ReplySpec::new(kind, matcher, "");
    let pong = Replies::check(pong, &|_| None).map_err(|err| {
        // There is no literal --app-pong: the regex error's hint does not apply.
        let err = err.replace(" (to match it as plain text, use --reply-text)", "");
        Error::Usage(match err.split_once(": ") {
            Some((_, why)) => format!("{flag}: {why}"),
            None => err,
        })
    })?;
    Ok(Some(AppHeartbeatConfig {
        message: message.clone(),
        interval: positive_duration("--app-ping-interval", &res.app_ping_interval)?,
        pong,
    }))
}

/// `--reply`, `--reply-text`, `--reply-json`, each a MATCHER and RESPONSE pair.
/// Checked by compiling them once; the environment variables they use are
/// kept with them, so the supervisor's compile reads no environment.
fn reply_specs(res: &cli::ResilienceArgs, env: Env<'_>) -> Result<Vec<ReplySpec>> {
    let specs: Vec<ReplySpec> = [
        (ReplyKind::Regex, &res.reply),
        (ReplyKind::Text, &res.reply_text),
        (ReplyKind::Json, &res.reply_json),
    ]
    .into_iter()
    .flat_map(|(kind, values)| {
        values
            .chunks_exact(2)
            .map(move |pair| ReplySpec::new(kind, &pair[0], &pair[1]))
    })
    .collect();
    let text_env = text_env(env);
    specs
        .into_iter()
        .map(|spec| Replies::check(spec, &text_env).map_err(Error::Usage))
        .collect()
}

/// An `--on-connect` message, its `{{env.NAME}}` filled in; what is left
/// (`{{name}}`, captured by a step) the supervisor fills in on each
/// connection, once the step has matched.
fn on_connect_message(message: &str, env: Env<'_>) -> Result<Template> {
    let env = text_env(env);
    Template::parse(message, &env)
        .map_err(|err| Error::Usage(format!("--on-connect {}: {err}", quote(message))))
}

/// `--send` messages in order, then the expectations (`--expect`,
/// `--expect-text`, `--expect-json`) in the order given.
fn flag_steps(args: &cli::SmokeArgs, env: script::Env<'_>) -> Result<Vec<Step>> {
    let mut steps = Vec::with_capacity(args.send.len() + args.expect.len());
    for message in &args.send {
        let text = format!("--send {}", quote(message));
        let action = match script::send_action(message, env) {
            Ok(Action::SendTemplate(template)) => {
                let name = template.vars().next().unwrap_or_default();
                return Err(Error::Usage(format!(
                    "{text}: {{{{{name}}}}} cannot be filled in: --send messages go out before \
                     any expectation captures a value (use a --script with capture, or \
                     {{{{env.{name}}}}})"
                )));
            }
            Ok(action) => action,
            Err(err) => return Err(Error::Usage(format!("{text}: {err}"))),
        };
        steps.push(Step {
            action,
            line: None,
            text,
        });
    }
    let mut expectations: Vec<(&cli::Ordered, ExpectKind, &str)> = Vec::new();
    expectations.extend(
        args.expect
            .iter()
            .map(|o| (o, ExpectKind::Regex, "--expect")),
    );
    expectations.extend(
        args.expect_text
            .iter()
            .map(|o| (o, ExpectKind::Text, "--expect-text")),
    );
    expectations.extend(
        args.expect_json
            .iter()
            .map(|o| (o, ExpectKind::Json, "--expect-json")),
    );
    expectations.sort_by_key(|(o, _, _)| o.seq);
    for (arg, kind, flag) in expectations {
        let expectation = script::expectation(kind, &arg.value, "--expect-text")
            .map_err(|err| Error::Usage(format!("{flag} {err}")))?;
        if !expectation.captures.is_empty() {
            return Err(Error::Usage(format!(
                "{flag} {}: capture is for scenario files (--script): nothing after the flags \
                 could use the value",
                quote(&arg.value)
            )));
        }
        steps.push(Step {
            action: Action::Expect(expectation),
            line: None,
            text: format!("{flag} {}", quote(&arg.value)),
        });
    }
    Ok(steps)
}

/// A flag's argument as a shell user would write it.
fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/=@+%^".contains(&b))
    {
        arg.to_owned()
    } else if !arg.contains('\'') {
        format!("'{arg}'")
    } else {
        format!("{arg:?}")
    }
}

/// The script's text and the name diagnostics use for it (`-` is stdin).
fn read_script(path: &Path) -> Result<(String, String)> {
    if path == Path::new("-") {
        let bytes =
            read_bounded(std::io::stdin().lock(), SCRIPT_LIMIT).map_err(|err| match err {
                Bounded::TooLong => too_long("--script", "-", SCRIPT_LIMIT),
                Bounded::Io(err) => Error::Usage(format!("--script -: cannot read stdin: {err}")),
            })?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Usage("--script -: the input is not UTF-8 text".into()))?;
        return Ok((text, "<stdin>".into()));
    }
    let name = path.display().to_string();
    let bytes = read_file("--script", path, SCRIPT_LIMIT)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Usage(format!("--script {name}: the file is not UTF-8 text")))?;
    Ok((text, name))
}

/// Redirects followed with -L unless --max-redirects says otherwise: enough
/// for any sane chain, few enough to stop a loop quickly.
const DEFAULT_MAX_REDIRECTS: u32 = 10;

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)
}

/// The most tether reads of a `--cacert` bundle. The whole Mozilla root
/// store in PEM is about 220 KiB; 4 MiB leaves room for large corporate
/// bundles and stops a wrong path (`/dev/zero`, a disk image) at once.
const CACERT_LIMIT: u64 = 4 << 20;
/// The most tether reads of a `--cert` or `--key` file: a certificate chain
/// or a private key in PEM is a few KiB.
const IDENTITY_LIMIT: u64 = 1 << 20;
/// The most tether reads of a `--script` scenario (file or stdin): thousands
/// of steps, or a few large messages to send.
const SCRIPT_LIMIT: u64 = 4 << 20;

/// Reads at most `limit` bytes of `path`; a longer file (or an endless one,
/// like `/dev/zero`) is a usage error that names the flag and the limit,
/// found after reading one byte past the limit, never more.
fn read_file(flag: &str, path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path)
        .map_err(|err| Error::Usage(format!("{flag} {}: cannot read it: {err}", path.display())))?;
    read_bounded(file, limit).map_err(|err| match err {
        Bounded::TooLong => too_long(flag, &path.display().to_string(), limit),
        Bounded::Io(err) => {
            Error::Usage(format!("{flag} {}: cannot read it: {err}", path.display()))
        }
    })
}

enum Bounded {
    TooLong,
    Io(std::io::Error),
}

fn read_bounded(reader: impl std::io::Read, limit: u64) -> std::result::Result<Vec<u8>, Bounded> {
    use std::io::Read;
    let mut bytes = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(Bounded::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Bounded::TooLong);
    }
    Ok(bytes)
}

fn too_long(flag: &str, name: &str, limit: u64) -> Error {
    Error::Usage(format!(
        "{flag} {name}: over the {} MiB limit for {flag}; is it the right file?",
        limit >> 20
    ))
}

fn split_pem_certificates(pem: &[u8], path: &Path) -> Result<Vec<Vec<u8>>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let text = String::from_utf8_lossy(pem);
    let mut certs = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let end = start + len + END.len();
        certs.push(rest.as_bytes()[start..end].to_vec());
        rest = &rest[end..];
    }
    if certs.is_empty() {
        return Err(Error::Usage(format!(
            "--cacert {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        )));
    }
    Ok(certs)
}

/// `9001` means 127.0.0.1:9001: the echo server is local unless asked otherwise.
fn normalize_listen_addr(addr: &str) -> String {
    if addr.bytes().all(|b| b.is_ascii_digit()) {
        format!("127.0.0.1:{addr}")
    } else {
        addr.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::proxy::Route;
    use clap::Parser;

    const PIPE: Terminals = Terminals {
        stdin: false,
        stdout: false,
    };
    const TERMINAL: Terminals = Terminals {
        stdin: true,
        stdout: true,
    };

    /// `tether ARGS` as `Task::from_cli` sees it, with `env` as the environment.
    fn task(args: &[&str], terminals: Terminals, env: &[(&str, &str)]) -> Result<Task> {
        let cli = Cli::try_parse_from(std::iter::once("tether").chain(args.iter().copied()))
            .map_err(|err| Error::Usage(err.to_string()))?;
        let env = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        };
        Task::from_cli_with_env(cli, terminals, &env)
    }

    fn client_in(args: &[&str], terminals: Terminals, env: &[(&str, &str)]) -> ClientConfig {
        match task(args, terminals, env) {
            Ok(Task::Connect(config)) => *config,
            Ok(other) => panic!("{args:?}: {other:?}"),
            Err(err) => panic!("{args:?}: {err}"),
        }
    }

    fn client(args: &[&str]) -> ClientConfig {
        client_in(args, PIPE, &[])
    }

    fn smoke(config: &ClientConfig) -> &SmokeConfig {
        match &config.frontend {
            Frontend::Smoke(smoke) => smoke,
            other => panic!("not a smoke test: {other:?}"),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_defaults() {
        let c = client(&["ws://h/"]);
        assert!(matches!(c.frontend, Frontend::Pipe));
        let s = &c.session;
        assert_eq!(s.dial.endpoint.url.as_str(), "ws://h/");
        assert!(s.dial.headers.is_empty() && s.dial.subprotocols.is_empty());
        assert_eq!(s.dial.connect_timeout, secs(10));
        assert_eq!(s.dial.max_message_size, 64 << 20);
        assert!(s.dial.compression, "permessage-deflate is offered");
        assert_eq!(s.dial.follow_redirects, None);
        assert_eq!(
            s.dial.proxy.route(&s.dial.endpoint),
            Route::Direct("no proxy set")
        );
        assert_eq!(s.heartbeat.interval, Some(secs(20)));
        assert_eq!(s.heartbeat.timeout, secs(20));
        let r = s.reconnect;
        assert!(r.enabled && !r.on_normal_close && !r.retry_initial());
        assert_eq!((r.initial, r.max), (Duration::from_millis(500), secs(30)));
        assert_eq!(r.max_attempts, None);
        assert_eq!(r.healthy_after(), secs(30));
        assert_eq!(s.queue_capacity, 4096);
        assert_eq!(s.replay_window, 4 << 20);
        assert!(s.on_connect.is_empty());
        assert!(!c.input.binary && c.input.clean_lines);
        assert_eq!(c.input.separator, b'\n');
        assert_eq!(c.end.linger, Some(secs(1)));
        assert_eq!(c.end.count, None);
        let o = c.output;
        assert_eq!(o.binary_format, BinaryFormat::Base64);
        assert!(!o.json && !o.pretty && !o.timestamps && !o.color && !o.terminal);
        assert_eq!(o.separator, Some(b'\n'));
        assert_eq!(o.verbosity, Verbosity::Normal);
        assert!(c.notes.is_empty());
    }

    /// How each flag (or combination) becomes config, one row a case.
    #[test]
    fn flags_become_config() {
        type Check = fn(&ClientConfig);
        let cases: &[(&[&str], Check)] = &[
            (&["--no-reconnect"], |c| {
                assert!(!c.session.reconnect.enabled)
            }),
            (&["--max-reconnects", "3"], |c| {
                let r = c.session.reconnect;
                assert!(r.enabled && r.retry_initial());
                assert_eq!(r.max_attempts, Some(3));
            }),
            (&["--reconnect-always"], |c| {
                assert!(c.session.reconnect.on_normal_close)
            }),
            (&["--backoff-max", "1m"], |c| {
                assert_eq!(c.session.reconnect.healthy_after(), secs(60))
            }),
            (&["--ping-interval", "0"], |c| {
                assert_eq!(c.session.heartbeat.interval, None)
            }),
            (&["--replay-window", "0"], |c| {
                assert_eq!(c.session.replay_window, 0)
            }),
            (&["--on-connect", "a", "--on-connect", "b"], |c| {
                assert_eq!(
                    c.session
                        .on_connect
                        .iter()
                        .map(|t| t.fixed().unwrap())
                        .collect::<Vec<_>>(),
                    ["a", "b"]
                )
            }),
            (&["--keep-open"], |c| assert_eq!(c.end.linger, None)),
            (&["--linger", "250ms"], |c| {
                assert_eq!(c.end.linger, Some(Duration::from_millis(250)))
            }),
            (&["-n", "3"], |c| assert_eq!(c.end.count, Some(3))),
            (&["-0", "--binary"], |c| {
                assert!(c.input.binary && !c.input.clean_lines);
                assert_eq!((c.input.separator, c.output.separator), (0, Some(0)));
            }),
            (&["--verbatim"], |c| assert!(!c.input.clean_lines)),
            (&["-b"], |c| {
                let i = c.input;
                assert!(i.byte_stream && i.binary && !i.clean_lines);
                assert_eq!(c.output.separator, None);
                assert_eq!(c.output.binary_format, BinaryFormat::Raw);
                assert!(matches!(c.frontend, Frontend::Pipe));
            }),
            (&["--byte-stream", "--binary", "--json"], |c| {
                assert!(c.input.byte_stream && c.output.json);
            }),
            (&["--binary"], |c| assert!(!c.input.clean_lines)),
            (&["-0"], |c| assert!(!c.input.clean_lines)),
            (&["--echo"], |c| {
                assert!(matches!(c.frontend, Frontend::Echo));
                assert_eq!(c.session.replay_window, 0);
                assert!(c.session.reconnect.enabled);
            }),
            // Smoke tests: any of --send, --expect, --script, --timeout.
            (&["--send", "hi"], |c| {
                let smoke = smoke(c);
                assert_eq!(smoke.steps.len(), 1);
                assert_eq!(smoke.steps[0].text, "--send hi");
                assert!(!smoke.read_stdin && !smoke.has_checks());
                assert!(!c.session.reconnect.enabled);
                assert_eq!(c.output.binary_format, BinaryFormat::Hex);
                assert_eq!(smoke.binary_match, BinaryFormat::Hex);
            }),
            (&["--expect", "po+ng", "--strict"], |c| {
                let smoke = smoke(c);
                assert!(smoke.read_stdin && smoke.strict && smoke.has_checks());
                assert_eq!(smoke.steps[0].text, "--expect po+ng");
            }),
            (&["--send", "a b", "--expect", "x"], |c| {
                let texts: Vec<_> = smoke(c).steps.iter().map(|s| s.text.as_str()).collect();
                assert_eq!(texts, ["--send 'a b'", "--expect x"]);
            }),
            (&["--timeout", "5s"], |c| {
                let smoke = smoke(c);
                assert_eq!(smoke.timeout, Some(secs(5)));
                assert!(smoke.steps.is_empty() && smoke.script.is_none());
            }),
            (&["--send", "x", "--max-reconnects", "2"], |c| {
                assert!(c.session.reconnect.enabled && c.session.reconnect.retry_initial())
            }),
            (&["--send", "x", "--reconnect-always"], |c| {
                assert!(c.session.reconnect.enabled)
            }),
            (&["--expect", "x", "--binary-format", "base64"], |c| {
                assert_eq!(smoke(c).binary_match, BinaryFormat::Base64);
                assert_eq!(c.output.binary_format, BinaryFormat::Base64);
            }),
            // Connection.
            (&["-u", "alice:s3cret", "--origin", "https://o"], |c| {
                let headers = &c.session.dial.headers;
                assert_eq!(headers[0].0, "authorization");
                assert_eq!(headers[0].1, "Basic YWxpY2U6czNjcmV0");
                assert!(headers[0].1.is_sensitive());
                assert_eq!(
                    headers[1],
                    (
                        HeaderName::from_static("origin"),
                        HeaderValue::from_static("https://o")
                    )
                );
            }),
            (&["-H", "X-A: 1", "-s", "chat", "-s", "v2.json"], |c| {
                assert_eq!(c.session.dial.headers[0].0, "x-a");
                assert_eq!(c.session.dial.subprotocols, ["chat", "v2.json"]);
            }),
            (&["-L"], |c| {
                assert_eq!(c.session.dial.follow_redirects, Some(10))
            }),
            (&["--compression", "off"], |c| {
                assert!(!c.session.dial.compression && !c.session.dial.compress)
            }),
            (&["--compress"], |c| {
                assert!(c.session.dial.compression && c.session.dial.compress)
            }),
            (&["-L", "--max-redirects", "3"], |c| {
                assert_eq!(c.session.dial.follow_redirects, Some(3))
            }),
            (
                &["--connect-timeout", "2.5", "--max-message-size", "1KiB"],
                |c| {
                    assert_eq!(c.session.dial.connect_timeout, Duration::from_millis(2500));
                    assert_eq!(c.session.dial.max_message_size, 1024);
                },
            ),
            (&["-k"], |c| {
                assert!(c.session.dial.tls.insecure);
                assert!(
                    c.notes[0].starts_with("warning: -k/--insecure"),
                    "{:?}",
                    c.notes
                );
                assert!(
                    c.notes[1].contains("no effect on a ws:// URL"),
                    "{:?}",
                    c.notes
                );
            }),
            // Output and diagnostics.
            (
                &["--json", "--pretty", "--timestamps", "--color", "always"],
                |c| {
                    let o = c.output;
                    assert!(o.json && o.pretty && o.timestamps && o.color);
                },
            ),
            (&["--binary-format", "raw"], |c| {
                assert_eq!(c.output.binary_format, BinaryFormat::Raw)
            }),
            (&["--binary-format", "hex"], |c| {
                assert_eq!(c.output.binary_format, BinaryFormat::Hex)
            }),
            (&["-q"], |c| {
                assert_eq!(c.output.verbosity, Verbosity::Quiet)
            }),
            (&["-vv"], |c| {
                assert_eq!(c.output.verbosity, Verbosity::Trace);
                assert!(!c.session.reports.frame_payloads);
            }),
            (&["-vvv"], |c| {
                assert_eq!(c.output.verbosity, Verbosity::Trace);
                assert!(c.session.reports.frame_payloads);
            }),
            (&["-P", "--json", "--json-sent"], |c| {
                let r = c.session.reports;
                assert!(r.ping_pong && r.sent && r.sent_paces_writing && c.output.ping_pong);
            }),
            (&["--json", "--json-sent", "--echo"], |c| {
                let r = c.session.reports;
                assert!(r.sent && !r.sent_paces_writing);
            }),
            (&[], |c| {
                let r = c.session.reports;
                assert!(!r.ping_pong && !r.sent && !r.frame_payloads && !c.output.ping_pong);
            }),
        ];
        for (flags, check) in cases {
            let args: Vec<&str> = std::iter::once("ws://h/")
                .chain(flags.iter().copied())
                .collect();
            let config = client(&args);
            let run = std::panic::catch_unwind(|| check(&config));
            assert!(run.is_ok(), "case {flags:?}");
        }
    }

    /// Mistakes are usage errors that say what is wrong.
    #[test]
    fn bad_flags_are_usage_errors() {
        let cases: &[(&[&str], &str)] = &[
            (&["ws://h/", "--count", "0"], "--count must be at least 1"),
            (
                &["ws://h/", "--queue-size", "0"],
                "--queue-size must be at least 1",
            ),
            (
                &["ws://h/", "--ping-timeout", "0"],
                "--ping-timeout must be greater than zero",
            ),
            (
                &["ws://h/", "--linger", "soon"],
                "--linger \"soon\" is not a duration",
            ),
            (
                &["ws://h/", "--max-message-size", "0"],
                "--max-message-size \"0\" is not a size",
            ),
            (
                &["ws://h/", "--backoff-initial", "2s", "--backoff-max", "1s"],
                "--backoff-max (1s) is shorter than --backoff-initial (2s)",
            ),
            (
                &["ws://h/", "--strict"],
                "--strict needs something to be strict about",
            ),
            (
                &["ws://h/", "--compress", "--compression", "off"],
                "--compress needs permessage-deflate offered; --compression off offers nothing",
            ),
            (
                &["ws://h/", "--json-sent"],
                "the following required arguments were not provided:\n  --json",
            ),
            (
                &["ws://h/", "--strict", "--send", "x"],
                "--strict needs something to be strict about",
            ),
            (
                &["ws://h/", "--expect", "(x"],
                "--expect \"(x\" is not a valid regex",
            ),
            (
                &["ws://h/", "--timeout", "0"],
                "--timeout must be greater than zero",
            ),
            (
                &["ws://h/", "-s", "a b"],
                "--subprotocol \"a b\" is not a valid token",
            ),
            (&["ws://h/", "-H", "nocolon"], "has no colon"),
            (
                &["ws://h/", "-b", "--binary-format", "hex"],
                "'--byte-stream' cannot be used with '--binary-format <FORMAT>'",
            ),
            (
                &["ws://h/", "-b", "-0"],
                "'--byte-stream' cannot be used with '--null'",
            ),
            (&["ws://h/", "-b", "--echo"], "cannot be used with"),
            (&["ws://h/", "--origin", "a\nb"], "--origin"),
            (&["ws://h/", "-x", "ftp://p"], ""),
            (
                &["ws://h/", "--cacert", "/nonexistent/ca.pem"],
                "--cacert /nonexistent/ca.pem: cannot read it",
            ),
            // clap's own checks.
            (
                &["ws://h/", "--keep-open", "--linger", "2s"],
                "cannot be used with",
            ),
            (&["ws://h/", "--max-redirects", "3"], "--location"),
            (
                &["ws://h/", "--no-reconnect", "--max-reconnects", "1"],
                "cannot be used with",
            ),
            (&["ws://h/", "--echo", "--send", "x"], "cannot be used with"),
            (
                &["ws://h/", "--exec", "cat", "--echo"],
                "cannot be used with",
            ),
            (
                &["ws://h/", "--exec", "cat", "--send", "x"],
                "cannot be used with",
            ),
            (
                &["ws://h/", "--exec", "cat", "--expect", "x"],
                "cannot be used with",
            ),
            (
                &["ws://h/", "--exec", "cat", "--script", "f"],
                "cannot be used with",
            ),
            (
                &["ws://h/", "--exec", "cat", "--timeout", "1s"],
                "cannot be used with",
            ),
            (&["ws://h/", "--exec", "  "], "--exec: the command is empty"),
            (
                &["ws://h/", "--exec", "echo 'hi"],
                "--exec: cannot split the command into words (an unclosed quote or a trailing backslash)",
            ),
            (
                &["ws://h/", "--proxy", "http://p", "--no-proxy"],
                "cannot be used with",
            ),
            (&["ws://h/", "--cert", "c.pem"], "--key"),
            (&[], "URL"),
            (&["--send", "x"], "URL"),
        ];
        for (args, needle) in cases {
            match task(args, PIPE, &[]) {
                Err(err @ Error::Usage(_)) => {
                    let message = err.to_string();
                    assert!(message.contains(needle), "{args:?}: {message}");
                }
                Err(err) => panic!("{args:?}: not a usage error: {err:?}"),
                Ok(task) => panic!("{args:?} should fail, not give {task:?}"),
            }
        }
    }

    #[test]
    fn exec_splits_its_command_as_a_shell_would_and_never_opens_the_repl() {
        let c = client_in(
            &[
                "ws://h/",
                "--exec",
                r#"sh -c 'echo "$1" | tr a b' x  a\ b "" "#,
            ],
            TERMINAL,
            &[],
        );
        let Frontend::Exec(exec) = &c.frontend else {
            panic!("not --exec: {:?}", c.frontend)
        };
        assert_eq!(
            exec.argv,
            ["sh", "-c", r#"echo "$1" | tr a b"#, "x", "a b", ""]
        );
        // The program's input is a pipe, whatever tether's stdout is.
        assert!(!c.output.terminal && !c.output.color);
        assert_eq!(c.output.binary_format, BinaryFormat::Base64);
        let c = client_in(&["ws://h/", "--exec", "cat", "-0", "--binary"], PIPE, &[]);
        assert!(matches!(c.frontend, Frontend::Exec(_)));
        assert!(c.input.binary && c.input.separator == 0 && !c.input.clean_lines);
    }

    #[test]
    fn terminals_choose_the_frontend_and_the_binary_format() {
        let stdin_only = Terminals {
            stdin: true,
            stdout: false,
        };
        let repl = client_in(&["ws://h/"], TERMINAL, &[]);
        assert!(matches!(repl.frontend, Frontend::Repl));
        assert_eq!(repl.output.binary_format, BinaryFormat::HexDump);
        assert!(repl.output.terminal && repl.output.color);
        assert!(matches!(
            client_in(&["ws://h/"], stdin_only, &[]).frontend,
            Frontend::Pipe
        ));
        // A byte stream is a pipe's; on a terminal its bytes are shown escaped.
        let stream = client_in(&["ws://h/", "-b"], TERMINAL, &[]);
        assert!(matches!(stream.frontend, Frontend::Pipe));
        assert!(stream.output.terminal);
        assert_eq!(stream.output.binary_format, BinaryFormat::Raw);
        // A smoke test never opens the REPL, and reads no stdin that is a terminal.
        let smoke_test = client_in(&["ws://h/", "--expect", "x"], TERMINAL, &[]);
        assert!(!smoke(&smoke_test).read_stdin);
        assert_eq!(smoke_test.output.binary_format, BinaryFormat::HexDump);
        assert!(matches!(
            client_in(&["ws://h/", "--echo"], TERMINAL, &[]).frontend,
            Frontend::Echo
        ));
        // NO_COLOR turns automatic colour off; an empty one does not.
        assert!(
            !client_in(&["ws://h/"], TERMINAL, &[("NO_COLOR", "1")])
                .output
                .color
        );
        assert!(
            client_in(&["ws://h/"], TERMINAL, &[("NO_COLOR", "")])
                .output
                .color
        );
        assert!(
            client_in(
                &["ws://h/", "--color", "always"],
                PIPE,
                &[("NO_COLOR", "1")]
            )
            .output
            .color
        );
        assert!(
            !client_in(&["ws://h/", "--color", "never"], TERMINAL, &[])
                .output
                .color
        );
    }

    #[test]
    fn colour_is_one_rule_for_every_stream() {
        let cases = [
            // (--color, a terminal, NO_COLOR, colour)
            (ColorArg::Auto, true, None, true),
            (ColorArg::Auto, true, Some(""), true),
            (ColorArg::Auto, true, Some("1"), false),
            (ColorArg::Auto, false, None, false),
            (ColorArg::Always, false, Some("1"), true),
            (ColorArg::Always, true, None, true),
            (ColorArg::Never, true, None, false),
            (ColorArg::Never, false, None, false),
        ];
        for (when, terminal, no_color, expected) in cases {
            let env = |name: &str| {
                assert_eq!(name, "NO_COLOR");
                no_color.map(OsString::from)
            };
            assert_eq!(
                colour(when, terminal, &env),
                expected,
                "{when:?} terminal {terminal} NO_COLOR {no_color:?}"
            );
        }
    }

    #[test]
    fn a_unix_socket_comes_from_the_url_or_the_flag_and_takes_no_proxy() {
        let env = [("HTTPS_PROXY", "http://envproxy:3128")];
        for (args, url, socket) in [
            (
                &["wss+unix:///run/a.sock:/v1?x=1"][..],
                "wss://localhost/v1?x=1",
                "/run/a.sock",
            ),
            (
                &["wss://api.local/v2", "--unix-socket", "/run/b.sock"][..],
                "wss://api.local/v2",
                "/run/b.sock",
            ),
        ] {
            let dial = client_in(args, PIPE, &env).session.dial;
            assert_eq!(dial.endpoint.url.as_str(), url);
            assert_eq!(dial.endpoint.unix, Some(std::path::PathBuf::from(socket)));
            // The environment's proxy is for TCP routes.
            assert!(matches!(dial.proxy.route(&dial.endpoint), Route::Direct(_)));
        }
        let relative = client(&["ws://h/", "--unix-socket", "app.sock"])
            .session
            .dial;
        assert_eq!(
            relative.endpoint.unix,
            Some(std::env::current_dir().unwrap().join("app.sock")),
            "shown as ws+unix:// would name it"
        );
        let usage = |args: &[&str]| match task(args, PIPE, &[]) {
            Err(Error::Usage(message)) => message,
            other => panic!("{args:?}: {other:?}"),
        };
        assert_eq!(
            usage(&["ws+unix:///run/a.sock", "-x", "http://p:3128"]),
            "--proxy cannot be used with a Unix socket (ws+unix://, --unix-socket)"
        );
        assert!(
            usage(&["ws://h/", "--unix-socket", "/s", "-x", "http://p"]).contains("--proxy"),
            "clap refuses the pair"
        );
        assert_eq!(
            usage(&["ws+unix:///a.sock", "--unix-socket", "/b.sock"]),
            "--unix-socket: the URL already names a socket (ws+unix://); give it once"
        );
        for flags in [&["--resolve", "h:80:127.0.0.1"][..], &["-4"], &["-6"]] {
            assert_eq!(
                usage(&[&["ws+unix:///a.sock"][..], flags].concat()),
                "--resolve, -4 and -6 choose TCP addresses; a Unix socket (ws+unix://, --unix-socket) has none"
            );
        }
        assert_eq!(
            usage(&["ws://h/", "--unix-socket", "/s", "-4"]),
            "--resolve, -4 and -6 choose TCP addresses; a Unix socket (ws+unix://, --unix-socket) has none"
        );
    }

    #[test]
    fn proxies_come_from_the_flag_or_the_environment_unless_turned_off() {
        let env = [
            ("HTTPS_PROXY", "http://envproxy:3128"),
            ("NO_PROXY", "inside.corp"),
        ];
        let route = |args: &[&str]| {
            let c = client_in(args, PIPE, &env);
            match c.session.dial.proxy.route(&c.session.dial.endpoint) {
                Route::Direct(why) => format!("direct: {why}"),
                Route::Proxy(proxy) => format!("{} from {}", proxy.host, proxy.source),
            }
        };
        assert_eq!(route(&["wss://h/"]), "envproxy from HTTPS_PROXY");
        assert_eq!(route(&["ws://h/"]), "direct: no proxy set");
        assert_eq!(
            route(&["wss://inside.corp/"]),
            "direct: NO_PROXY matches the host"
        );
        assert_eq!(route(&["wss://h/", "--no-proxy"]), "direct: --no-proxy");
        assert_eq!(
            route(&["ws://h/", "-x", "flagproxy:8080"]),
            "flagproxy from --proxy"
        );
        let bad = task(&["ws://h/"], PIPE, &[("http_proxy", "ftp://x")]).unwrap_err();
        assert!(bad.to_string().contains("http_proxy"), "{bad}");
    }

    #[test]
    fn headers_from_a_file_go_in_place_and_stay_secret() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"Authorization: Bearer t0k\n# note\nX-B: 2\n")
            .unwrap();
        let at = format!("@{}", file.path().display());
        let c = client(&["ws://h/", "-H", "X-A: 1", "-H", &at, "--user", "u"]);
        let names: Vec<&str> = c
            .session
            .dial
            .headers
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, ["x-a", "authorization", "x-b", "authorization"]);
        assert!(c.session.dial.headers[1].1.is_sensitive());
        assert!(!format!("{c:?}").contains("t0k"));
    }

    #[test]
    fn a_script_becomes_the_steps_of_a_smoke_test() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, b"send hi\nexpect hi\nclose 4001\n").unwrap();
        let path = file.path().display().to_string();
        let c = client(&["ws://h/", "--script", &path]);
        let smoke = smoke(&c);
        assert_eq!(smoke.script.as_deref(), Some(path.as_str()));
        assert_eq!(smoke.steps.len(), 3);
        assert!(!smoke.read_stdin);
        std::fs::write(file.path(), b"send hi\n\nclose 1014\n").unwrap();
        let err = task(&["ws://h/", "--script", &path], PIPE, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{path}:3: 1014 cannot be sent")),
            "{err}"
        );
    }

    #[test]
    fn subcommands_and_url_aliases() {
        match task(&["serve", "9001"], PIPE, &[]).unwrap() {
            Task::Serve(serve) => {
                assert_eq!(serve.addr, "127.0.0.1:9001");
                assert_eq!(serve.echo.drop_after, None);
            }
            other => panic!("{other:?}"),
        }
        match task(&["serve", "--drop-after", "2"], PIPE, &[]).unwrap() {
            Task::Serve(serve) => assert_eq!(serve.echo.drop_after, Some(2)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            task(&["serve", "--drop-after", "0"], PIPE, &[])
                .unwrap_err()
                .to_string(),
            "--drop-after must be at least 1"
        );
        match task(&["serve", "[::1]:0"], PIPE, &[]).unwrap() {
            Task::Serve(serve) => assert_eq!(serve.addr, "[::1]:0"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(task(&["man"], PIPE, &[]).unwrap(), Task::Man));
        assert!(matches!(task(&["demo"], PIPE, &[]).unwrap(), Task::Demo(_)));
        let alias = client(&["https://h/x"]);
        assert_eq!(alias.session.dial.endpoint.url.as_str(), "wss://h/x");
        assert_eq!(alias.notes.len(), 1, "{:?}", alias.notes);
    }

    #[test]
    fn pem_bundles_split_into_certificates() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nBB\n-----END CERTIFICATE-----\n";
        assert_eq!(
            split_pem_certificates(pem, Path::new("x")).unwrap().len(),
            2
        );
        assert!(split_pem_certificates(b"nothing", Path::new("x")).is_err());
    }

    #[test]
    fn a_bounded_read_takes_the_limit_and_refuses_one_byte_more() {
        assert_eq!(read_bounded(&[7u8; 10][..], 10).ok(), Some(vec![7u8; 10]));
        assert!(matches!(
            read_bounded(&[7u8; 11][..], 10),
            Err(Bounded::TooLong)
        ));
        // An endless reader stops one byte past the limit.
        assert!(matches!(
            read_bounded(std::io::repeat(0), 1 << 20),
            Err(Bounded::TooLong)
        ));
    }
}
