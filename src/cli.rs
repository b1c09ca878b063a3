//! The command line, as clap derive types.
//!
//! Nothing outside `config.rs` (and the completions/man generators) sees
//! these types: `Task::from_cli` validates them, one section at a time, into plain values.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Worked examples: (command, what it does). Shown in `--help` and the man page.
pub const EXAMPLES: &[(&str, &str)] = &[
    (
        "tether wss://api.example.com/ws -H \"Authorization: Bearer $TOKEN\"",
        "an interactive session with a bearer token",
    ),
    (
        "tether wss://api.example.com/ws -H @headers.txt",
        "the same, with the headers in a file ('Name: value' lines), out of sight of ps",
    ),
    (
        "jq -c . events.json | tether ws://localhost:8080/ingest > replies.txt",
        "send each JSON line, save each reply",
    ),
    (
        "tether wss://feed.example.com/stream --keep-open --json > log.jsonl",
        "record a feed, with reconnect and heartbeat events, as JSON lines",
    ),
    (
        "tether wss://staging.example.com/ws --send '{\"op\":\"ping\"}' --expect '\"pong\"' --timeout 10s",
        "a smoke test for CI: exit 0 only if the reply comes in time",
    ),
    (
        "tether wss://staging.example.com/ws --script smoke.txt --timeout 30s",
        "a multi-step scenario from a file",
    ),
    (
        "tether wss://bot.example.com/socket --exec './bot --name helper'",
        "a bot: what it prints is sent, what arrives goes to its input (no shell runs it)",
    ),
    (
        "tether -x http://proxy.corp:3128 wss://feed.example.com/stream",
        "connect through an HTTP proxy (HTTPS_PROXY and NO_PROXY work too)",
    ),
    (
        "tether serve 127.0.0.1:9001",
        "run the built-in echo server",
    ),
];

fn after_long_help() -> String {
    let mut help = String::from("Exit codes:\n");
    for (code, meaning) in crate::error::EXIT_CODE_TABLE {
        help.push_str(&format!("  {code:<4} {meaning}\n"));
    }
    help.push_str("\nExamples:\n");
    for (command, what) in EXAMPLES {
        help.push_str(&format!("  # {what}\n  {command}\n"));
    }
    help
}

/// `--version` also names the TLS stack, which matters for certificate behaviour.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (TLS: native-tls, system OpenSSL)"
);

#[derive(Debug, Parser)]
#[command(
    name = "tether",
    version = VERSION,
    about = "A resilient command-line WebSocket client",
    long_about = "A resilient command-line WebSocket client.\n\n\
        With a terminal on both stdin and stdout, tether opens an interactive session \
        (/help there lists its commands; history is kept in $XDG_STATE_HOME/tether/history). \
        Otherwise each stdin line is sent as one message and each received message is \
        printed as received, then a newline (a message with newlines spans several lines; \
        --json or -0 frame messages exactly; -b passes bytes through both ways); diagnostics go to stderr.",
    after_help = "See 'tether --help' for exit codes and examples.",
    after_long_help = after_long_help(),
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The server to dial: ws://, wss:// (http:// and https:// are accepted as aliases), or a
    /// Unix-domain socket as ws+unix:///SOCKET:/PATH (wss+unix:// for TLS)
    #[arg(value_name = "URL", required = true)]
    pub url: Option<String>,

    #[command(flatten)]
    pub connection: ConnectionArgs,

    #[command(flatten)]
    pub tls: TlsArgs,

    #[command(flatten)]
    pub resilience: ResilienceArgs,

    #[command(flatten)]
    pub input: InputArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub smoke: SmokeArgs,

    #[command(flatten)]
    pub verbosity: VerbosityArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a WebSocket echo server (127.0.0.1 unless told otherwise)
    ///
    /// It echoes text and binary messages as they came and answers pings. Ctrl-C, SIGTERM or SIGHUP stops it: it closes
    /// every client with 1001 "going away", waits up to 2 s for their answers and exits 130.
    Serve {
        /// Address to listen on: PORT, HOST:PORT, [IPV6]:PORT, or unix:PATH for a Unix-domain
        /// socket (removed when the server stops). Port 0 picks a free port
        #[arg(value_name = "ADDR", default_value = "127.0.0.1:9001")]
        addr: String,
        /// Drop each connection without a Close frame once N messages are echoed on it, as a
        /// crashing server would: for trying reconnects, replay and --on-connect
        #[arg(long, value_name = "N")]
        drop_after: Option<u64>,
    },
    /// Start an echo server in this process and connect to it: try tether with no network
    Demo,
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// Add a handshake header, 'Name: value' (repeatable); @FILE reads one header a line
    /// from FILE (at most 64 KiB; blank lines and # comments skipped), keeping secrets out
    /// of the process list
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,

    /// Run CMD before every dial (the first and each reconnect); each line it prints,
    /// 'Name: value', is a handshake header for that attempt, replacing -H headers of the
    /// same name. Its output is secret
    ///
    /// CMD is split into words as a shell would, but no shell runs it: write sh -c '...' for
    /// one. It runs with stdin closed and stderr shown, within --connect-timeout. A command
    /// that fails, times out or prints anything but headers fails that attempt, which is
    /// retried like a failed connection (exit 3 when tether gives up). Its values are
    /// redacted at -v and in --json whatever the header's name.
    #[arg(long, value_name = "CMD")]
    pub header_cmd: Option<String>,

    /// Offer a subprotocol (repeatable); the one the server picks is reported
    #[arg(short = 's', long = "subprotocol", value_name = "NAME")]
    pub subprotocols: Vec<String>,

    /// Send this Origin header
    #[arg(long, value_name = "ORIGIN")]
    pub origin: Option<String>,

    /// Basic authentication; userinfo in the URL works too
    #[arg(short = 'u', long, value_name = "USER[:PASS]")]
    pub user: Option<String>,

    /// Limit for DNS, TCP (and any proxy), TLS and the HTTP upgrade together
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub connect_timeout: String,

    /// Connect to these addresses for HOST:PORT instead of asking DNS, as curl does
    /// (repeatable)
    ///
    /// IPv6 addresses in brackets: --resolve 'example.com:443:[::1],127.0.0.1'. The Host header
    /// and the TLS server name stay HOST. Applies to every URL with that host and port (-L
    /// redirects too) and to a proxy's own host name; a name only the proxy resolves (http://,
    /// socks5h://) is not pinned.
    #[arg(long, value_name = "HOST:PORT:ADDR[,ADDR...]")]
    pub resolve: Vec<String>,

    /// Use IPv4 addresses only
    #[arg(short = '4', long, conflicts_with = "ipv6")]
    pub ipv4: bool,

    /// Use IPv6 addresses only
    #[arg(short = '6', long)]
    pub ipv6: bool,

    /// Largest message accepted from the server (e.g. 64MiB, 512KiB, 1000)
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub max_message_size: String,

    /// Offer permessage-deflate, so the server may compress what it sends (tether sends
    /// uncompressed unless --compress)
    ///
    /// Compressed messages are inflated as they arrive, each held to --max-message-size. `off`
    /// offers nothing.
    #[arg(long, value_name = "WHEN", default_value = "on")]
    pub compression: CompressionArg,

    /// Compress what tether sends too, when the server agrees to permessage-deflate
    ///
    /// Each message goes as one compressed frame, the context kept from message to message
    /// unless the server answers client_no_context_takeover, in the window it asks for
    /// (client_max_window_bits=8 sends uncompressed: zlib has no 256-byte window). Queued and
    /// replayed messages are compressed afresh for each connection.
    #[arg(long)]
    pub compress: bool,

    /// Connect through this proxy: http://, socks5:// or socks5h://[USER:PASS@]HOST[:PORT]
    ///
    /// An http:// proxy is asked for a tunnel with CONNECT; socks5:// resolves host names here,
    /// socks5h:// at the proxy. Replaces HTTPS_PROXY, HTTP_PROXY and ALL_PROXY; NO_PROXY still
    /// applies, as in curl.
    #[arg(short = 'x', long, value_name = "URL", conflicts_with = "no_proxy")]
    pub proxy: Option<String>,

    /// Connect directly, ignoring HTTPS_PROXY, HTTP_PROXY and ALL_PROXY
    #[arg(long)]
    pub no_proxy: bool,

    /// Connect to this Unix-domain socket instead of the URL's host and port; the URL still
    /// gives the Host header and the path (as curl's --unix-socket)
    ///
    /// Same as writing the URL as ws+unix:///PATH:/REQUEST-PATH. A proxy does not apply:
    /// --proxy is refused, the proxy variables are ignored.
    #[arg(long, value_name = "PATH", conflicts_with = "proxy")]
    pub unix_socket: Option<PathBuf>,

    /// Follow redirects (301, 302, 303, 307, 308) answered to the handshake
    ///
    /// Authorization and Cookie headers (and --user) are sent only to the scheme, host and port
    /// of the URL given; leaving wss:// for ws:// prints a warning.
    #[arg(short = 'L', long)]
    pub location: bool,

    /// Most redirects to follow with -L [default: 10]
    #[arg(long, value_name = "N", requires = "location")]
    pub max_redirects: Option<u32>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsArgs {
    /// Do not verify the server's certificate (prints a warning)
    #[arg(short = 'k', long)]
    pub insecure: bool,

    /// Trust the CA certificates in this PEM file, besides the system's
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    /// Client certificate (PEM), for servers that ask for one; needs --key
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,

    /// Private key for --cert (PEM, PKCS#8 or RSA)
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Heartbeat and reconnect")]
pub struct ResilienceArgs {
    /// Send a Ping this often; 0 turns heartbeats off
    #[arg(long, value_name = "DURATION", default_value = "20s")]
    pub ping_interval: String,

    /// Declare the connection dead when no Pong comes this long after a Ping was written
    #[arg(long, value_name = "DURATION", default_value = "20s")]
    pub ping_timeout: String,

    /// First reconnect delay; later ones double, with jitter
    #[arg(long, value_name = "DURATION", default_value = "500ms")]
    pub backoff_initial: String,

    /// Longest reconnect delay, jitter included
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub backoff_max: String,

    /// Give up after this many failed attempts in a row. Without it, reconnects
    /// after a drop are unlimited and a failed first connection is not retried
    #[arg(long, value_name = "N")]
    pub max_reconnects: Option<u32>,

    /// Never reconnect: the first failure ends the session
    #[arg(long, conflicts_with_all = ["max_reconnects", "reconnect_always"])]
    pub no_reconnect: bool,

    /// Reconnect even after the server closes normally (code 1000)
    #[arg(long)]
    pub reconnect_always: bool,

    /// Send this message after every (re)connection, before anything queued (repeatable;
    /// {{env.NAME}} is the environment variable NAME, read once at start)
    #[arg(long, value_name = "MSG")]
    pub on_connect: Vec<String>,

    /// Run CMD before every dial, as --header-cmd does; each line it prints is a message
    /// sent once connected, after the --on-connect ones. Its output is secret: not in
    /// --json-sent, not in -vvv's frame payloads
    #[arg(long, value_name = "CMD")]
    pub on_connect_cmd: Option<String>,

    /// Answer every received text message matching the regex MATCHER with RESPONSE, at once
    /// and before anything queued, on every connection (repeatable; the first that matches
    /// answers). In RESPONSE, {{1}} or {{name}} is a group of the match
    #[arg(long, num_args = 2, value_names = ["MATCHER", "RESPONSE"], action = clap::ArgAction::Append)]
    pub reply: Vec<String>,

    /// As --reply, for a message containing MATCHER, taken literally
    #[arg(long, num_args = 2, value_names = ["TEXT", "RESPONSE"], action = clap::ArgAction::Append)]
    pub reply_text: Vec<String>,

    /// As --reply, for a JSON message for which the jq filter MATCHER is true; in RESPONSE,
    /// {{.id}} is a jq filter run on the message, e.g. '{"type":"pong","id":{{.id}}}'
    #[arg(long, num_args = 2, value_names = ["FILTER", "RESPONSE"], action = clap::ArgAction::Append)]
    pub reply_json: Vec<String>,

    /// Send this text message every --app-ping-interval as an application heartbeat; with
    /// no reply matching --app-pong (or --app-pong-json) within --ping-timeout, the connection
    /// is dead and reconnected ("application heartbeat timeout")
    #[arg(long, value_name = "MSG")]
    pub app_ping: Option<String>,

    /// How often --app-ping is sent
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "30s",
        requires = "app_ping"
    )]
    pub app_ping_interval: String,

    /// The reply to --app-ping: a text message this regex matches
    #[arg(
        long,
        value_name = "REGEX",
        requires = "app_ping",
        conflicts_with = "app_pong_json"
    )]
    pub app_pong: Option<String>,

    /// The reply to --app-ping: a JSON message for which this jq filter is true
    #[arg(long, value_name = "FILTER", requires = "app_ping")]
    pub app_pong_json: Option<String>,

    /// Messages held while disconnected before reading input pauses
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub queue_size: usize,

    /// Sent bytes kept until a Pong confirms the server read them, and re-sent
    /// after a drop; also caps what is in flight unconfirmed. 0 turns this off
    #[arg(long, value_name = "SIZE", default_value = "4MiB")]
    pub replay_window: String,

    /// A sent message leaves the replay window only when a received message matching
    /// REGEX answers it, not when a Pong does: the Nth matching reply on a connection
    /// confirms the Nth unanswered message sent on it ('' matches every reply)
    #[arg(long, value_name = "REGEX")]
    pub confirm_by_reply: Option<String>,

    /// As --confirm-by-reply, for replies containing TEXT, taken literally
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["confirm_by_reply", "confirm_by_reply_json"])]
    pub confirm_by_reply_text: Option<String>,

    /// As --confirm-by-reply, for JSON replies for which this jq filter is true,
    /// e.g. 'has("result")'
    #[arg(long, value_name = "FILTER", conflicts_with = "confirm_by_reply")]
    pub confirm_by_reply_json: Option<String>,

    /// With --confirm-by-reply (or alone, for every reply): a jq filter, such as .id,
    /// whose value pairs a reply with the request it answers, in any order
    #[arg(long, value_name = "FILTER")]
    pub confirm_key: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Input")]
pub struct InputArgs {
    /// Send input lines as binary messages instead of text
    #[arg(long)]
    pub binary: bool,

    /// Byte stream, as websocat's -b: stdin's bytes are sent as binary messages as they arrive
    /// (what each read returns, up to 64 KiB a message), and every received message is written
    /// to stdout as its bytes alone, text too, with no separator (escaped on a terminal)
    #[arg(
        short = 'b',
        long,
        conflicts_with_all = [
            "null", "verbatim", "binary_format", "timestamps", "pretty",
            "send", "expect", "expect_text", "expect_json", "script", "timeout",
        ]
    )]
    pub byte_stream: bool,

    /// Input (and output) records end with NUL instead of newline
    #[arg(short = '0', long = "null")]
    pub null: bool,

    /// Send stdin lines exactly as read: keep the \r of a CRLF line ending, and send an empty
    /// line as an empty message (both are dropped by default; --binary and -0 are always exact)
    #[arg(long)]
    pub verbatim: bool,

    /// After stdin ends, wait this long with no incoming message before closing
    #[arg(long, value_name = "DURATION", default_value = "1s")]
    pub linger: String,

    /// Close after receiving this many messages
    #[arg(short = 'n', long, value_name = "N")]
    pub count: Option<u64>,

    /// Stay connected after stdin ends, until the server closes or Ctrl-C
    #[arg(long, conflicts_with = "linger")]
    pub keep_open: bool,

    /// Send every received message back unchanged, instead of reading stdin (each echo
    /// goes out once: no replay after a drop)
    #[arg(long, conflicts_with_all = [
        "binary", "null", "verbatim", "byte_stream", "send", "expect", "expect_text", "expect_json",
        "script", "timeout",
    ])]
    pub echo: bool,

    /// Run CMD in place of stdin and stdout: its output records are sent, each received message
    /// is written to its input (split into words as a shell would, but no shell runs: use
    /// `sh -c '...'` for pipes and variables). Its stderr passes through; a failing CMD's exit
    /// status becomes tether's
    #[arg(
        long,
        value_name = "CMD",
        conflicts_with_all = [
            "echo", "send", "expect", "expect_text", "expect_json", "script", "timeout", "strict",
        ]
    )]
    pub exec: Option<String>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// How to print binary messages [default: hex dump on a terminal, base64 in a pipe, hex in a
    /// pipe for a smoke test]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub binary_format: Option<BinaryFormatArg>,

    /// Prefix each received message with the time it was received; a message's further lines
    /// are indented by the time's width, so only a message's first line starts with a time
    #[arg(long)]
    pub timestamps: bool,

    /// Print one JSON object per event on stdout (the schema: JSON EVENTS in man tether)
    #[arg(long)]
    pub json: bool,

    /// With --json, also record every message tether sends, as a 'sent' event once it is
    /// written to the socket (in order with the messages received; a replay after a
    /// reconnect is marked)
    #[arg(long, requires = "json")]
    pub json_sent: bool,

    /// Show the server's Pings and the Pongs tether gets (its heartbeat's round trips; Pongs
    /// the server sends unasked, marked): '*' lines in the REPL, stderr lines in a pipe, and
    /// 'ping' and 'pong' events with --json
    #[arg(short = 'P', long)]
    pub show_ping_pong: bool,

    /// Indent messages that are JSON, changing only whitespace: keys in their order (duplicates
    /// too), numbers and escapes as sent; other text as received
    #[arg(long)]
    pub pretty: bool,

    /// When to colour stdout and stderr (-v diagnostics included): auto colours a stream that is a
    /// terminal unless NO_COLOR is set and not empty; always colours pipes and files too
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
}

/// Any of `--send`, `--expect*`, `--script` or `--timeout` makes the run a
/// smoke test: stdin is read only when nothing else sends, and the exit code
/// says whether every expectation was met.
#[derive(Debug, Args)]
#[command(next_help_heading = "Smoke testing")]
pub struct SmokeArgs {
    /// Send this message once connected, after any --on-connect and --on-connect-cmd messages
    /// (repeatable, in order; {{env.NAME}} is the environment variable NAME)
    #[arg(long = "send", value_name = "MSG")]
    pub send: Vec<String>,

    /// Wait for a message matching this regex; each --expect, --expect-text and --expect-json
    /// must be matched, in the order given (repeatable)
    #[arg(long = "expect", value_name = "REGEX", value_parser = ordered)]
    pub expect: Vec<Ordered>,

    /// Wait for a message containing this text, taken literally (repeatable)
    #[arg(long = "expect-text", value_name = "TEXT", value_parser = ordered)]
    pub expect_text: Vec<Ordered>,

    /// Wait for a JSON message for which this jq filter is true, e.g. '.type == "pong"'
    /// (repeatable)
    #[arg(long = "expect-json", value_name = "FILTER", value_parser = ordered)]
    pub expect_json: Vec<Ordered>,

    /// Fail when a message does not match the expectation waiting for it, instead of skipping it
    #[arg(long)]
    pub strict: bool,

    /// Run the steps in this scenario file ('-' reads it from stdin); the steps: SCENARIO
    /// FILES in man tether
    #[arg(long, value_name = "FILE", conflicts_with_all = ["send", "expect", "expect_text", "expect_json"])]
    pub script: Option<PathBuf>,

    /// Fail with exit code 6 if the whole run, connecting included, takes longer than this
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

/// A flag's value and its place among the values of ordered flags: clap
/// keeps each flag's values apart, and expectations from `--expect`,
/// `--expect-text` and `--expect-json` run in the order they were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordered {
    pub seq: u64,
    pub value: String,
}

/// clap parses values in command-line order, so a counter orders them
/// (values parsed for other command lines at the same time only leave gaps).
fn ordered(raw: &str) -> Result<Ordered, std::convert::Infallible> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    Ok(Ordered {
        seq: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        value: raw.to_owned(),
    })
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Diagnostics")]
pub struct VerbosityArgs {
    /// More diagnostics on stderr (-v: debug, with each handshake's request and response
    /// headers, secrets redacted; -vv: trace, with every frame sent and received; -vvv: the
    /// frames' payloads too); RUST_LOG works too
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Only errors and warnings on stderr
    #[arg(short, long, conflicts_with = "verbose", global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BinaryFormatArg {
    Hex,
    Base64,
    Raw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ColorArg {
    Auto,
    Always,
    Never,
}

/// The `--color` of a command line not parsed yet, for clap's own output
/// (usage errors, help); `auto` leaves it to clap, which honours `NO_COLOR`.
pub fn clap_colour(args: &[std::ffi::OsString]) -> clap::ColorChoice {
    let mut when = None;
    let mut args = args.iter().skip(1).map(|a| a.to_str().unwrap_or_default());
    while let Some(arg) = args.next() {
        match arg {
            "--" => break,
            "--color" => when = args.next(),
            _ => when = arg.strip_prefix("--color=").or(when),
        }
    }
    match when {
        Some("always") => clap::ColorChoice::Always,
        Some("never") => clap::ColorChoice::Never,
        _ => clap::ColorChoice::Auto,
    }
}
