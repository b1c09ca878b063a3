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

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use crate::cli::{self, BinaryFormatArg, Cli, ColorArg};
use crate::endpoint::Endpoint;
use crate::error::{Error, Result};
use crate::headers::sensitive;
use crate::proxy::ProxyRules;
use crate::script::{self, Action, Step};
use crate::session::Payload;
use crate::values::{parse_duration, parse_size, parse_size_or_zero, positive_duration};

/// The environment variables configuration reads (the proxy variables,
/// `NO_COLOR`), by name: `std::env::var_os` for the process, a table in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

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
    pub on_connect: Vec<String>,
    pub queue_capacity: usize,
    /// Bytes of recently flushed messages re-sent after a reconnect; 0 = none.
    pub replay_window: usize,
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
    /// Which proxy each URL goes through (from --proxy, --no-proxy and the environment).
    pub proxy: ProxyRules,
    /// Redirects to follow (-L, --max-redirects); `None` reports them as rejections.
    pub follow_redirects: Option<u32>,
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
    /// Output is a terminal: escape control characters, truncate hex dumps.
    pub terminal: bool,
    pub separator: u8,
    pub verbosity: Verbosity,
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
            Some(cli::Command::Serve { ref addr }) => Ok(Task::Serve(ServeConfig {
                addr: normalize_listen_addr(addr),
            })),
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
        let session = SessionConfig::from_args(dial, &cli.resilience, smoke_test, cli.input.echo)?;
        let input = InputConfig::from_args(&cli.input);
        let end = EndPolicy::from_args(&cli.input)?;
        let output = OutputConfig::from_args(
            &cli.output,
            &cli.verbosity,
            input.separator,
            terminals,
            smoke_test,
            env,
        );
        let frontend = Frontend::from_cli(cli, smoke_test, terminals)?;
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

/// Any of `--send`, `--expect`, `--script` or `--timeout` makes the run a
/// smoke test.
fn is_smoke_test(args: &cli::SmokeArgs) -> bool {
    !args.send.is_empty()
        || !args.expect.is_empty()
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
        let parsed = Endpoint::parse(url)?;
        notes.extend(parsed.note);
        let endpoint = parsed.endpoint;
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
        Ok(DialConfig {
            endpoint,
            headers,
            subprotocols: conn.subprotocols.clone(),
            tls,
            connect_timeout: positive_duration("--connect-timeout", &conn.connect_timeout)?,
            max_message_size: parse_size("--max-message-size", &conn.max_message_size)?,
            proxy: ProxyRules::new(conn.proxy.as_deref(), conn.no_proxy, |name| {
                env(name).and_then(|value| value.into_string().ok())
            })?,
            follow_redirects: conn
                .location
                .then_some(conn.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS)),
        })
    }
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
        res: &cli::ResilienceArgs,
        smoke_test: bool,
        echo: bool,
    ) -> Result<SessionConfig> {
        let reconnect = ReconnectPolicy::from_args(res, smoke_test)?;
        if res.queue_size == 0 {
            return Err(Error::Usage("--queue-size must be at least 1".into()));
        }
        let heartbeat = Heartbeat::from_args(res)?;
        let window = parse_size_or_zero("--replay-window", &res.replay_window)?;
        Ok(SessionConfig {
            dial,
            heartbeat,
            reconnect,
            on_connect: res.on_connect.clone(),
            queue_capacity: res.queue_size,
            // An echo answers each message once. Re-sending answers after a drop
            // would tell the server something it did not send twice, and waiting
            // for Pongs that sit behind a flood of messages would stall the echo.
            replay_window: if echo { 0 } else { window },
        })
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
        InputConfig {
            binary: args.binary,
            separator: if args.null { b'\0' } else { b'\n' },
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
    /// The Output and Diagnostics sections; records end with `separator`,
    /// as input records do.
    fn from_args(
        out: &cli::OutputArgs,
        verbosity: &cli::VerbosityArgs,
        separator: u8,
        terminals: Terminals,
        smoke_test: bool,
        env: Env,
    ) -> OutputConfig {
        let color = match out.color {
            ColorArg::Always => true,
            ColorArg::Never => false,
            ColorArg::Auto => terminals.stdout && env("NO_COLOR").is_none_or(|v| v.is_empty()),
        };
        let binary_format = match (out.binary_format, terminals.stdout) {
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
            separator,
            verbosity: Verbosity::from_cli(verbosity),
        }
    }
}

impl Frontend {
    fn from_cli(cli: &Cli, smoke_test: bool, terminals: Terminals) -> Result<Frontend> {
        if smoke_test {
            return Ok(Frontend::Smoke(SmokeConfig::from_args(
                &cli.smoke,
                cli.output.binary_format,
                terminals,
            )?));
        }
        if cli.smoke.strict {
            return Err(strict_without_expectations());
        }
        Ok(if cli.input.echo {
            Frontend::Echo
        } else if terminals.stdin && terminals.stdout {
            Frontend::Repl
        } else {
            Frontend::Pipe
        })
    }
}

fn strict_without_expectations() -> Error {
    Error::Usage("--strict needs something to be strict about: --expect or --script".into())
}

impl SmokeConfig {
    fn from_args(
        args: &cli::SmokeArgs,
        binary_format: Option<BinaryFormatArg>,
        terminals: Terminals,
    ) -> Result<SmokeConfig> {
        let timeout = match &args.timeout {
            Some(raw) => Some(positive_duration("--timeout", raw)?),
            None => None,
        };
        let (steps, script) = match &args.script {
            Some(path) => {
                let (text, name) = read_script(path)?;
                let steps = script::parse(&text).map_err(|err| match err.line {
                    Some(line) => Error::Usage(format!("{name}:{line}: {}", err.message)),
                    None => Error::Usage(format!("--script {name}: {}", err.message)),
                })?;
                (steps, Some(name))
            }
            None => (flag_steps(args)?, None),
        };
        if args.strict && !steps.iter().any(|s| matches!(s.action, Action::Expect(_))) {
            return Err(strict_without_expectations());
        }
        let sends = steps.iter().any(|s| matches!(s.action, Action::Send(_)));
        let stdin_is_script = args.script.as_deref() == Some(Path::new("-"));
        Ok(SmokeConfig {
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

/// `--send` messages in order, then `--expect` patterns in order.
fn flag_steps(args: &cli::SmokeArgs) -> Result<Vec<Step>> {
    let mut steps = Vec::with_capacity(args.send.len() + args.expect.len());
    for message in &args.send {
        steps.push(Step {
            action: Action::Send(Payload::text(message.as_str())),
            line: None,
            text: format!("--send {}", quote(message)),
        });
    }
    for pattern in &args.expect {
        let expectation = script::expectation(pattern, false)
            .map_err(|err| Error::Usage(format!("--expect {err}")))?;
        steps.push(Step {
            action: Action::Expect(expectation),
            line: None,
            text: format!("--expect {}", quote(pattern)),
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
