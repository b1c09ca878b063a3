//! What a session tells its user, as people read it or as `--json` lines:
//! received messages, status events, the final error, and a smoke test's
//! steps and summary. The driver (`frontend/session.rs`) and the smoke mode
//! say what happened; a [`Reporter`] says it one way or the other.

pub mod json;

use std::fmt::Write as _;

use bytes::Bytes;

use crate::config::{OutputConfig, Verbosity};
use crate::error::Error;
use crate::render::{Pieces, Renderer, eprint_line, excerpt, format_delay, format_rtt, quoted};
use crate::rfc6455;
use crate::session::{Event, Payload, Unsent};

use self::json::{ErrorEvent, JsonEvent, Step, StepStatus, Summary, Verdict};

/// How the session reports: for people (messages on stdout as the output
/// options say, the rest on stderr) or for machines (`--json`: everything a
/// JSON line on stdout).
#[derive(Debug, Clone, Copy)]
pub enum Reporter {
    Human(Renderer),
    Json,
}

impl Reporter {
    pub fn new(config: OutputConfig) -> Reporter {
        if config.json {
            Reporter::Json
        } else {
            Reporter::Human(Renderer::new(config))
        }
    }

    /// Appends a received message as one output record (with separator).
    #[inline]
    pub fn message(&self, out: &mut Vec<u8>, payload: &Payload) {
        match self {
            Reporter::Human(renderer) => renderer.message(out, payload),
            Reporter::Json => json::message(out, payload),
        }
    }

    /// The message's own bytes when its output record is exactly those bytes
    /// plus [`Reporter::separator`], so a large one can go to stdout as it
    /// is, without a copy.
    pub fn verbatim(&self, payload: &Payload) -> Option<Bytes> {
        match self {
            Reporter::Human(renderer) => renderer.verbatim(payload),
            Reporter::Json => None,
        }
    }

    /// What ends each output record: none in a byte stream (`-b`).
    pub fn separator(&self) -> Option<u8> {
        match self {
            Reporter::Human(renderer) => renderer.separator(),
            Reporter::Json => Some(b'\n'),
        }
    }

    /// A large binary message's output record (as [`Reporter::message`]
    /// writes it) in pieces of about `piece` bytes; `None` for what renders
    /// in one go.
    pub fn message_pieces(&self, payload: &Payload, piece: usize) -> Option<Pieces> {
        match self {
            Reporter::Human(renderer) => renderer.message_pieces(payload, piece),
            Reporter::Json => {
                let Payload::Binary(data) = payload else {
                    return None;
                };
                // `message` with an empty `data`, cut open where the data goes.
                let mut head = Vec::new();
                json::message(&mut head, &Payload::Binary(Bytes::new()));
                let tail = b"\"}\n";
                head.truncate(head.len() - tail.len());
                Some(Pieces::new(head, data.clone(), piece, true, tail.to_vec()))
            }
        }
    }

    /// A status event: a JSON line in `out` (stdout, when there is one), or
    /// a line on stderr if it is worth showing at this verbosity.
    pub fn status(&self, out: Option<&mut Vec<u8>>, event: &Event) {
        match self {
            Reporter::Human(renderer) => {
                if let Some(line) = status_line(event, renderer.verbosity(), renderer.ping_pong()) {
                    eprint_line(&line);
                }
            }
            Reporter::Json => match out {
                Some(out) => {
                    if let Some(event) = JsonEvent::of(event) {
                        json::event(out, event);
                    }
                }
                // No stdout of the driver's (the REPL's terminal has its own
                // lines): a last word such as what was left unsent goes to
                // stderr.
                None => {
                    if let Some(line) = status_line(event, Verbosity::Normal, false) {
                        eprint_line(&line);
                    }
                }
            },
        }
    }

    /// How the session failed: with `--json`, the `error` event, the last
    /// line on stdout. People read it on stderr, where `main` puts it.
    pub fn error(&self, out: Option<&mut Vec<u8>>, err: &Error, left: Option<Unsent>) {
        if let (Reporter::Json, Some(out)) = (self, out) {
            json::event(out, JsonEvent::Error(ErrorEvent::of(err, left)));
        }
    }

    /// A smoke-test step done or failed: its `--json` event, or with `-v`
    /// a line on stderr.
    pub fn step(&self, out: Option<&mut Vec<u8>>, step: &Step<'_>) {
        match self {
            Reporter::Human(renderer) if renderer.verbosity() >= Verbosity::Debug => {
                eprint_line(&step_line(step));
            }
            Reporter::Human(_) => {}
            Reporter::Json => {
                if let Some(out) = out {
                    json::event(out, JsonEvent::Step(*step));
                }
            }
        }
    }

    /// The end of a smoke test: its `--json` summary, or a one-line note on
    /// stderr when it passed.
    pub fn summary(&self, out: Option<&mut Vec<u8>>, summary: &Summary<'_>) {
        match self {
            Reporter::Human(renderer) => {
                if summary.result == Verdict::Pass
                    && summary.steps > 0
                    && renderer.verbosity() > Verbosity::Quiet
                {
                    let n = summary.steps;
                    eprint_line(&format!(
                        "smoke test passed: {n} step{} in {}",
                        if n == 1 { "" } else { "s" },
                        format_delay(summary.duration_ms.0)
                    ));
                }
            }
            Reporter::Json => {
                if let Some(out) = out {
                    json::event(out, JsonEvent::Summary(*summary));
                }
            }
        }
    }
}

/// A status event as a line for people, or `None` when it is not worth
/// showing at this verbosity; `ping_pong` (`-P`) shows the heartbeat's Pongs
/// at every verbosity.
pub fn status_line(event: &Event, verbosity: Verbosity, ping_pong: bool) -> Option<String> {
    let quiet = verbosity == Verbosity::Quiet;
    let line = match event {
        Event::Message(_) | Event::Delivered { .. } | Event::Drained | Event::Sent { .. } => {
            return None;
        }
        // -v shows handshakes as they happen, on the trace (net/handshake.rs).
        Event::Connecting { .. } | Event::Handshake(_) => return None,
        Event::Connected {
            url, subprotocol, ..
        } => match subprotocol {
            Some(p) => format!("connected to {url} (subprotocol: {p})"),
            None => format!("connected to {url}"),
        },
        Event::Pong { rtt, heartbeat } => {
            if *heartbeat && verbosity < Verbosity::Debug && !ping_pong {
                return None;
            }
            let whose = if *heartbeat { " (heartbeat)" } else { "" };
            format!("pong: rtt {}{whose}", format_rtt(*rtt))
        }
        Event::Ping(payload) => format!("ping from the server{}", payload_note(payload)),
        Event::UnsolicitedPong(payload) => {
            format!("unsolicited pong from the server{}", payload_note(payload))
        }
        Event::Disconnected { reason, .. } => format!("disconnected: {reason}"),
        // The `disconnected` line just said why.
        Event::Reconnecting {
            attempt,
            delay,
            reason,
            after_disconnect,
        } if *after_disconnect || reason.is_empty() => format!(
            "reconnecting in {} (attempt {attempt})",
            format_delay(*delay)
        ),
        Event::Reconnecting {
            attempt,
            delay,
            reason,
            ..
        } => format!(
            "{reason}; reconnecting in {} (attempt {attempt})",
            format_delay(*delay)
        ),
        Event::Closed {
            code,
            reason,
            by_server,
        } => {
            let who = if *by_server {
                "server closed"
            } else {
                "closed"
            };
            match (code, reason.is_empty()) {
                (Some(code), true) => format!("{who} ({code})"),
                (Some(code), false) => format!("{who} ({code}: {reason})"),
                (None, true) => who.to_string(),
                (None, false) => format!("{who}: {reason}"),
            }
        }
        Event::Warning(text) => format!("warning: {text}"),
        Event::Replied { to, reply } => {
            format!(
                "replied to {} with {}",
                excerpt(to, 60, to.len()),
                excerpt(reply, 60, reply.len())
            )
        }
    };
    // Warnings show even with -q; the rest of the chatter does not.
    if quiet && !matches!(event, Event::Warning(_)) {
        return None;
    }
    Some(line)
}

/// `: "payload"` (escaped), or ` (empty)`: a control frame's payload, at
/// most 125 bytes, shown whole.
fn payload_note(payload: &[u8]) -> String {
    if payload.is_empty() {
        " (empty)".to_owned()
    } else {
        format!(": {}", quoted(payload, false, rfc6455::CONTROL_PAYLOAD_MAX))
    }
}

/// A smoke-test step as a `-v` status line.
pub fn step_line(step: &Step<'_>) -> String {
    let mut line = format!(
        "step {}/{} {} ({}): {}",
        step.step,
        step.of,
        match step.status {
            StepStatus::Passed => "passed",
            StepStatus::Failed => "failed",
        },
        format_delay(step.duration_ms.0),
        step.text
    );
    if let Some(rtt) = step.rtt_ms {
        let _ = write!(line, "; rtt {}", format_rtt(rtt.0));
    }
    if let Some(matched) = step.matched {
        let _ = write!(
            line,
            "; matched {}",
            excerpt(matched, 80, step.matched_bytes)
        );
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BinaryFormat;

    fn output(binary_format: BinaryFormat, json: bool) -> OutputConfig {
        OutputConfig {
            binary_format,
            timestamps: false,
            json,
            pretty: false,
            color: false,
            terminal: false,
            separator: Some(b'\n'),
            verbosity: Verbosity::Normal,
            ping_pong: false,
        }
    }

    #[test]
    fn large_binary_in_pieces_is_the_same_record() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let payload = Payload::Binary(Bytes::from(data));
        for (format, json) in [
            (BinaryFormat::Base64, false),
            (BinaryFormat::Hex, false),
            (BinaryFormat::Hex, true),
        ] {
            let reporter = Reporter::new(output(format, json));
            let mut whole = Vec::new();
            reporter.message(&mut whole, &payload);
            let pieces: Vec<Vec<u8>> = reporter.message_pieces(&payload, 4096).unwrap().collect();
            assert!(pieces.iter().all(|p| p.len() <= 4096), "{format:?}");
            let joined = pieces.concat();
            if json {
                // The times may differ by a millisecond; the rest must not.
                let cut = |v: &[u8]| {
                    String::from_utf8(v[v.iter().position(|&b| b == b'Z').unwrap()..].to_vec())
                        .unwrap()
                };
                assert_eq!(cut(&joined), cut(&whole));
            } else {
                assert_eq!(joined, whole, "{format:?}");
            }
        }
        let raw = Reporter::new(output(BinaryFormat::Raw, false));
        assert!(raw.message_pieces(&payload, 4096).is_none());
        assert!(raw.verbatim(&payload).is_some());
        assert!(Reporter::Json.verbatim(&payload).is_none());
    }

    #[test]
    fn status_lines_say_what_happened() {
        let closed = Event::Closed {
            code: Some(4000),
            reason: "bye".into(),
            by_server: true,
        };
        assert_eq!(
            status_line(&closed, Verbosity::Normal, false).as_deref(),
            Some("server closed (4000: bye)")
        );
        assert_eq!(status_line(&closed, Verbosity::Quiet, false), None);
        let warning = Event::Warning("w".into());
        assert_eq!(
            status_line(&warning, Verbosity::Quiet, false).as_deref(),
            Some("warning: w")
        );
        let heartbeat = Event::Pong {
            rtt: std::time::Duration::from_micros(1500),
            heartbeat: true,
        };
        assert_eq!(status_line(&heartbeat, Verbosity::Normal, false), None);
        assert_eq!(
            status_line(&heartbeat, Verbosity::Debug, false).as_deref(),
            Some("pong: rtt 1.5 ms (heartbeat)")
        );
        // -P: the heartbeat's Pongs, and what the server sends of its own.
        assert_eq!(
            status_line(&heartbeat, Verbosity::Normal, true).as_deref(),
            Some("pong: rtt 1.5 ms (heartbeat)")
        );
        let ping = Event::Ping(Bytes::from_static(b"hi\x1b"));
        assert_eq!(
            status_line(&ping, Verbosity::Normal, true).as_deref(),
            Some(r#"ping from the server: "hi\u{1b}""#)
        );
        let pong = Event::UnsolicitedPong(Bytes::new());
        assert_eq!(
            status_line(&pong, Verbosity::Normal, true).as_deref(),
            Some("unsolicited pong from the server (empty)")
        );
    }
}
