//! Typed failures and the exit code each one maps to.
//!
//! Every failure a user can meet is one variant here. The supervisor asks
//! [`Error::retry`] whether reconnecting can help; `main` asks
//! [`Error::exit_code`] what to tell the shell. Both tables are documented in
//! the README and must stay in step with it.

use crate::rfc6455;
use crate::session::Unsent;
use std::time::Duration;

/// Declares [`ExitCode`] and its list of every variant, [`ExitCode::ALL`],
/// from one list, so the tests that hold the README to the codes cannot
/// miss one.
macro_rules! exit_codes {
    ($($name:ident = $code:literal,)*) => {
        /// Process exit codes. Stable: scripts depend on them.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u8)]
        pub enum ExitCode {
            $($name = $code,)*
        }

        impl ExitCode {
            /// Every exit code, in numeric order.
            pub const ALL: &[ExitCode] = &[$(ExitCode::$name,)*];
        }
    };
}

exit_codes! {
    Success = 0,
    Failure = 1,
    Usage = 2,
    Connect = 3,
    Tls = 4,
    Handshake = 5,
    Timeout = 6,
    Expectation = 7,
    ConnectionLost = 8,
    ServerClosed = 9,
    Protocol = 10,
    Proxy = 11,
    CannotExecute = 126,
    NotFound = 127,
    Interrupted = 130,
}

/// The exit code table, for `--help`, the man page and the README.
pub const EXIT_CODE_TABLE: &[(u8, &str)] = &[
    (
        0,
        "success: clean close, every expectation met, or stdout closed by the reader",
    ),
    (
        1,
        "other runtime error (bad bytes on stdin, messages left unsent, stdout could not be written, I/O error)",
    ),
    (2, "usage error (bad flag, bad URL)"),
    (
        3,
        "could not connect (DNS, TCP, connect timeout, a proxy that is down or cannot reach the server, a failed --header-cmd or --on-connect-cmd), retries exhausted or disabled",
    ),
    (4, "TLS failure"),
    (
        5,
        "handshake rejected (non-101 HTTP status, a redirect without -L) or the server is not a WebSocket server",
    ),
    (6, "--timeout deadline reached"),
    (
        7,
        "an expectation was not met (server closed, or --count reached first), or the session ended before --count messages arrived",
    ),
    (
        8,
        "connection lost (heartbeat timeout or abnormal close), reconnects exhausted or disabled",
    ),
    (9, "the server closed with a non-1000 close code"),
    (
        10,
        "the server broke the WebSocket protocol, or sent a message over --max-message-size",
    ),
    (
        11,
        "the proxy refused the connection (HTTP 407 or 403, SOCKS authentication or rules), or is not a proxy of the kind its URL says",
    ),
    (
        126,
        "the --exec program could not be run (permission denied, not an executable)",
    ),
    (127, "the --exec program was not found"),
    (130, "interrupted (Ctrl-C, SIGTERM, SIGHUP)"),
];

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        std::process::ExitCode::from(code as u8)
    }
}

/// How a proxy failed, which decides whether to retry and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The proxy itself could not be reached (retried; exit 3).
    Unreachable,
    /// The proxy could not reach the server: HTTP 5xx, SOCKS "host
    /// unreachable" and the like (retried; exit 3).
    Upstream,
    /// The proxy wants other credentials: HTTP 407, SOCKS authentication (exit 11).
    Auth,
    /// The proxy's rules forbid the destination: HTTP 403, SOCKS ruleset (exit 11).
    Refused,
    /// Whatever answered is not the kind of proxy the URL says (exit 11).
    Protocol,
}

impl ProxyFailure {
    fn transient(self) -> bool {
        matches!(self, ProxyFailure::Unreachable | ProxyFailure::Upstream)
    }
}

/// Whether a failure is worth another connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Never,
    Backoff,
    /// The server said when to come back (`Retry-After`).
    After(Duration),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),

    /// A usage error with something specific to try.
    #[error("{message}")]
    UsageHint { message: String, hint: &'static str },

    #[error("could not connect to {target}: {detail}")]
    Connect { target: String, detail: String },

    #[error("could not connect to {target}: no connection within {} (--connect-timeout)", crate::values::format_duration(*timeout))]
    ConnectTimeout { target: String, timeout: Duration },

    /// `--header-cmd` or `--on-connect-cmd` failed on this attempt: a
    /// connect failure (retried, exit 3). The detail never quotes its output.
    #[error("{flag} failed: {detail}")]
    Command { flag: &'static str, detail: String },

    #[error("TLS failure with {target}: {detail}")]
    Tls { target: String, detail: String },

    /// The server's TLS layer refused the client's certificate, or its
    /// absence. With TLS 1.3 the alert comes after the client finished its
    /// handshake, on the first read, during the upgrade.
    #[error("TLS failure with {target}: {detail}")]
    ClientCertificate {
        target: String,
        detail: String,
        /// Whether `--cert/--key` were given (and refused).
        given: bool,
    },

    #[error("proxy {proxy}: {detail}")]
    Proxy {
        /// Shown with credentials redacted.
        proxy: String,
        failure: ProxyFailure,
        detail: String,
    },

    #[error(
        "handshake rejected by {target}: HTTP {status_line}{}{}",
        location_suffix(location.as_deref()),
        body_suffix(body)
    )]
    Handshake {
        target: String,
        status: u16,
        status_line: String,
        body: String,
        retry_after: Option<Duration>,
        /// Where a redirect (3xx) pointed, when it was not followed.
        location: Option<String>,
    },

    #[error("cannot follow the redirect from {target}: {detail}")]
    Redirect { target: String, detail: String },

    #[error("the WebSocket handshake with {target} failed: {detail}")]
    HandshakeInvalid { target: String, detail: String },

    #[error("deadline reached: {0}")]
    Timeout(String),

    #[error("{0}")]
    Expectation(String),

    #[error("connection lost: {0}")]
    ConnectionLost(String),

    #[error(
        "server closed the connection with code {code}{}",
        reason_suffix(reason)
    )]
    ServerClosed { code: u16, reason: String },

    #[error("the server broke the WebSocket protocol: {0}")]
    Protocol(String),

    #[error(
        "the server sent a message of at least {size} bytes, over --max-message-size ({max} bytes); tether refused it"
    )]
    TooBig { size: usize, max: usize },

    #[error("{0}")]
    Input(String),

    #[error("{0}")]
    Runtime(String),

    /// stdout could not be written (a full disk, EIO); a closed pipe is not
    /// an error.
    #[error("{0}")]
    Output(String),

    /// The session ended normally with messages the server never confirmed.
    #[error("{0}")]
    Undelivered(Unsent),

    #[error("interrupted")]
    Interrupted,

    /// `--exec CMD` could not be started.
    #[error("cannot run --exec {command:?}: {detail}")]
    Exec {
        command: String,
        detail: String,
        not_found: bool,
    },

    /// The `--exec` program ended first, and failed: tether exits with its
    /// status ([`Error::status`]).
    #[error("--exec {command:?} {end}")]
    Program { command: String, end: ProgramEnd },

    #[error("{source}; gave up after {attempts} attempt{}{}", plural(*attempts), unsent_suffix(*unsent))]
    GaveUp {
        source: Box<Error>,
        attempts: u32,
        unsent: Unsent,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::UsageHint { .. } => ExitCode::Usage,
            Error::Connect { .. } | Error::ConnectTimeout { .. } | Error::Command { .. } => {
                ExitCode::Connect
            }
            Error::Tls { .. } | Error::ClientCertificate { .. } => ExitCode::Tls,
            Error::Proxy { failure, .. } if failure.transient() => ExitCode::Connect,
            Error::Proxy { .. } => ExitCode::Proxy,
            Error::Handshake { .. } | Error::HandshakeInvalid { .. } | Error::Redirect { .. } => {
                ExitCode::Handshake
            }
            Error::Timeout(_) => ExitCode::Timeout,
            Error::Expectation(_) => ExitCode::Expectation,
            Error::ConnectionLost(_) => ExitCode::ConnectionLost,
            Error::ServerClosed { .. } => ExitCode::ServerClosed,
            Error::Protocol(_) | Error::TooBig { .. } => ExitCode::Protocol,
            Error::Input(_) | Error::Runtime(_) | Error::Output(_) | Error::Undelivered(_) => {
                ExitCode::Failure
            }
            Error::Interrupted => ExitCode::Interrupted,
            Error::GaveUp { source, .. } => source.exit_code(),
            Error::Exec {
                not_found: true, ..
            } => ExitCode::NotFound,
            Error::Exec { .. } => ExitCode::CannotExecute,
            // Its own status is what the process exits with (`status`).
            Error::Program { .. } => ExitCode::Failure,
        }
    }

    /// The process's exit status: the exit code, or a failed `--exec`
    /// program's own status, as a shell gives it (its code, or 128 + the
    /// signal that killed it).
    pub fn status(&self) -> u8 {
        match self {
            Error::Program { end, .. } => end.status(),
            err => err.exit_code() as u8,
        }
    }

    /// The reconnect table from the README: transient failures are retried,
    /// failures that another attempt cannot fix are not.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Connect { .. }
            | Error::ConnectTimeout { .. }
            | Error::Command { .. }
            | Error::ConnectionLost(_) => Retry::Backoff,
            Error::Proxy { failure, .. } if failure.transient() => Retry::Backoff,
            Error::Handshake {
                status,
                retry_after,
                ..
            } if *status >= 500 || *status == 429 => match retry_after {
                Some(delay) => Retry::After(*delay),
                None => Retry::Backoff,
            },
            Error::ServerClosed { code, .. } if rfc6455::is_retried_close_code(*code) => {
                Retry::Backoff
            }
            _ => Retry::Never,
        }
    }

    /// A short machine-readable name, used in `--json` events.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) | Error::UsageHint { .. } => "usage",
            Error::Connect { .. } => "connect",
            Error::ConnectTimeout { .. } => "connect_timeout",
            Error::Command { .. } => "command",
            Error::Tls { .. } | Error::ClientCertificate { .. } => "tls",
            Error::Proxy { .. } => "proxy",
            Error::Redirect { .. } => "redirect",
            Error::Handshake { .. } => "handshake_rejected",
            Error::HandshakeInvalid { .. } => "handshake_invalid",
            Error::Timeout(_) => "timeout",
            Error::Expectation(_) => "expectation",
            Error::ConnectionLost(_) => "connection_lost",
            Error::ServerClosed { .. } => "server_closed",
            // Same kind as before it had its own variant: --json readers rely on it.
            Error::Protocol(_) | Error::TooBig { .. } => "protocol",
            Error::Input(_) => "input",
            Error::Runtime(_) => "runtime",
            Error::Output(_) => "output",
            Error::Undelivered(_) => "undelivered",
            Error::Interrupted => "interrupted",
            Error::GaveUp { source, .. } => source.kind(),
            Error::Exec { .. } => "exec",
            Error::Program { .. } => "program",
        }
    }

    /// What the user can do about it, where there is something to say.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::GaveUp { source, .. } => source.hint(),
            Error::UsageHint { hint, .. } => Some(hint),
            // Endpoints on a Unix socket are shown as ws+unix://SOCKET:PATH.
            Error::Connect { target, .. } | Error::ConnectTimeout { target, .. }
                if target.contains("+unix://") =>
            {
                Some("check the socket's path, and that the server is running")
            }
            Error::Connect { .. } | Error::ConnectTimeout { .. } => {
                Some("check the host and port, and that the server is running")
            }
            Error::Command {
                flag: "--header-cmd",
                ..
            } => Some(
                "run the command by hand: it must exit 0 and print one 'Name: value' header a line",
            ),
            Error::Command { .. } => {
                Some("run the command by hand: it must exit 0 and print one message a line")
            }
            Error::Tls { .. } => Some(
                "if the server uses a private CA, pass it with --cacert FILE; -k/--insecure skips verification",
            ),
            Error::ClientCertificate { given: false, .. } => {
                Some("pass the client certificate and its key with --cert FILE --key FILE")
            }
            Error::ClientCertificate { given: true, .. } => Some(
                "check that --cert holds a certificate the server trusts (issued by its client CA) and --key its key",
            ),
            Error::Handshake { status, .. } if *status == 401 || *status == 403 => {
                Some("check the credentials (-H 'Authorization: ...' or --user)")
            }
            Error::Handshake { status, .. } if *status == 404 => Some("check the URL's path"),
            Error::Handshake { status, .. } if (200..300).contains(status) => Some(
                "the server answered like a web server, not with a WebSocket upgrade; check the URL's path",
            ),
            Error::Handshake {
                location: Some(_), ..
            } => Some("add -L/--location to follow redirects"),
            Error::Proxy { failure, .. } => Some(match failure {
                ProxyFailure::Unreachable => {
                    "check the proxy's host and port; --no-proxy or NO_PROXY bypass it"
                }
                ProxyFailure::Upstream => {
                    "the proxy could not reach the server: check the URL's host and port"
                }
                ProxyFailure::Auth => {
                    "check the proxy credentials: USER:PASS@ in --proxy or in the *_PROXY variable"
                }
                ProxyFailure::Refused => {
                    "the proxy's rules forbid this destination; --no-proxy or NO_PROXY bypass it"
                }
                ProxyFailure::Protocol => {
                    "check that the proxy URL's scheme (http://, socks5://, socks5h://) matches what the proxy speaks"
                }
            }),
            Error::Redirect { .. } => Some("see -L/--location and --max-redirects"),
            // The server speaks WebSocket, but its compression answer is broken.
            Error::HandshakeInvalid { detail, .. }
                if detail.contains("permessage-deflate answer") =>
            {
                Some("--compression off connects without offering compression")
            }
            Error::HandshakeInvalid { .. } => {
                Some("the server did not speak WebSocket at that URL; check the URL")
            }
            Error::ConnectionLost(_) => Some(
                "not reconnecting: reconnects are off or used up (see --max-reconnects), or stdin had ended with nothing left to deliver (--keep-open keeps reconnecting)",
            ),
            Error::TooBig { .. } => Some(
                "if the server's messages are meant to be this large, raise --max-message-size",
            ),
            Error::Exec { .. } => Some(
                "no shell runs CMD: name a program on PATH or by its path, and for pipes, variables or builtins use --exec 'sh -c \"...\"'",
            ),
            _ => None,
        }
    }
}

/// How a failed `--exec` program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramEnd {
    /// A non-zero exit code.
    Code(u8),
    /// Killed by this signal.
    Signal(i32),
}

impl ProgramEnd {
    /// As a shell reports it: the code, or 128 + the signal.
    pub fn status(self) -> u8 {
        match self {
            ProgramEnd::Code(code) => code,
            ProgramEnd::Signal(signal) => u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(255),
        }
    }
}

impl std::fmt::Display for ProgramEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            ProgramEnd::Code(code) => write!(f, "exited with status {code}"),
            ProgramEnd::Signal(signal) => {
                write!(f, "was killed by signal {signal}")?;
                match nix::sys::signal::Signal::try_from(signal) {
                    Ok(name) => write!(f, " ({})", name.as_str()),
                    Err(_) => Ok(()),
                }
            }
        }
    }
}

fn location_suffix(location: Option<&str>) -> String {
    match location {
        Some(location) => format!(", redirecting to {location}"),
        None => String::new(),
    }
}

fn body_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(" (body: {body:?})")
    }
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" ({reason:?})")
    }
}

fn unsent_suffix(unsent: Unsent) -> String {
    match unsent.total() {
        0 => String::new(),
        _ => format!("; {unsent}"),
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_exec_program_passes_its_status_on_as_a_shell_does() {
        let program = |end| Error::Program {
            command: "./bot".into(),
            end,
        };
        let failed = program(ProgramEnd::Code(3));
        assert_eq!(failed.status(), 3);
        assert_eq!(failed.to_string(), "--exec \"./bot\" exited with status 3");
        let killed = program(ProgramEnd::Signal(9));
        assert_eq!(killed.status(), 137);
        assert_eq!(
            killed.to_string(),
            "--exec \"./bot\" was killed by signal 9 (SIGKILL)"
        );
        let exec = |not_found| Error::Exec {
            command: "nope".into(),
            detail: String::new(),
            not_found,
        };
        assert_eq!(exec(true).status(), 127);
        assert_eq!(exec(false).status(), 126);
        assert_eq!(Error::Interrupted.status(), 130);
    }

    #[test]
    fn server_errors_are_retried_and_client_errors_are_not() {
        let rejected = |status| Error::Handshake {
            target: "t".into(),
            status,
            status_line: String::new(),
            body: String::new(),
            retry_after: None,
            location: None,
        };
        assert_eq!(rejected(503).retry(), Retry::Backoff);
        assert_eq!(rejected(429).retry(), Retry::Backoff);
        assert_eq!(rejected(401).retry(), Retry::Never);
        assert_eq!(rejected(404).retry(), Retry::Never);
        assert_eq!(rejected(404).exit_code(), ExitCode::Handshake);
    }

    #[test]
    fn proxies_that_cannot_reach_the_server_are_retried_and_refusals_are_not() {
        let proxy = |failure| Error::Proxy {
            proxy: "http://p:1".into(),
            failure,
            detail: "x".into(),
        };
        for failure in [ProxyFailure::Unreachable, ProxyFailure::Upstream] {
            assert_eq!(proxy(failure).retry(), Retry::Backoff, "{failure:?}");
            assert_eq!(proxy(failure).exit_code(), ExitCode::Connect, "{failure:?}");
        }
        for failure in [
            ProxyFailure::Auth,
            ProxyFailure::Refused,
            ProxyFailure::Protocol,
        ] {
            assert_eq!(proxy(failure).retry(), Retry::Never, "{failure:?}");
            assert_eq!(proxy(failure).exit_code(), ExitCode::Proxy, "{failure:?}");
        }
        assert_eq!(proxy(ProxyFailure::Auth).to_string(), "proxy http://p:1: x");
    }

    #[test]
    fn close_codes_follow_the_table() {
        let closed = |code| Error::ServerClosed {
            code,
            reason: String::new(),
        };
        for code in [1001, 1011, 1012, 1013] {
            assert_eq!(closed(code).retry(), Retry::Backoff, "{code}");
        }
        // 1014 never gets here: tungstenite fails a Close carrying it as a
        // protocol violation (see rfc6455.rs).
        for code in [1002, 1003, 1007, 1008, 1009, 1010, 3000, 4000] {
            assert_eq!(closed(code).retry(), Retry::Never, "{code}");
        }
    }

    #[test]
    fn a_refused_client_certificate_is_a_tls_failure_that_is_not_retried() {
        let err = Error::ClientCertificate {
            target: "wss://h/".into(),
            detail: "d".into(),
            given: false,
        };
        assert_eq!(err.exit_code(), ExitCode::Tls);
        assert_eq!(err.retry(), Retry::Never);
        assert_eq!(err.kind(), "tls");
        assert_eq!(err.to_string(), "TLS failure with wss://h/: d");
    }

    #[test]
    fn a_message_over_the_limit_is_a_protocol_failure_that_is_not_retried() {
        let err = Error::TooBig {
            size: 2048,
            max: 1024,
        };
        assert_eq!(err.exit_code(), ExitCode::Protocol);
        assert_eq!(err.retry(), Retry::Never);
        assert_eq!(err.kind(), "protocol");
    }

    #[test]
    fn giving_up_keeps_the_cause_code_and_counts_unsent() {
        let err = Error::GaveUp {
            source: Box::new(Error::ConnectionLost("heartbeat timeout".into())),
            attempts: 4,
            unsent: Unsent {
                queued: 2,
                ..Unsent::default()
            },
        };
        assert_eq!(err.exit_code(), ExitCode::ConnectionLost);
        assert_eq!(
            err.to_string(),
            "connection lost: heartbeat timeout; gave up after 4 attempts; \
             2 messages were never confirmed by the server (2 queued, never written)"
        );
    }
}
