//! Turning events into bytes for people and for machines. All formatting of
//! messages, status lines and `--json` events lives here, so every frontend
//! prints the same way.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;

use crate::config::{BinaryFormat, OutputConfig, Verbosity};
use crate::error::Error;
use crate::session::{Event, Payload, RttStats};

/// Bytes of binary shown in a terminal hex dump before the rest is elided.
pub const HEXDUMP_LIMIT: usize = 4096;
/// Characters of the matched message in a `--json` step event; the full
/// message is in its `message` event.
pub const MATCHED_MAX: usize = 1024;

#[derive(Debug, Clone, Copy)]
pub struct Renderer {
    config: OutputConfig,
}

impl Renderer {
    pub fn new(config: OutputConfig) -> Renderer {
        Renderer { config }
    }

    pub fn json(&self) -> bool {
        self.config.json
    }

    /// Appends a received message as one output record (with separator).
    pub fn message(&self, out: &mut Vec<u8>, payload: &Payload) {
        if self.config.json {
            return self.json_event(out, &Event::Message(payload.clone()));
        }
        // Exact for an empty buffer: a large message then gets a chunk of its
        // own size, not twice that.
        out.reserve(payload.len() + 1);
        if self.config.timestamps {
            out.extend_from_slice(timestamp(SystemTime::now()).as_bytes());
            out.push(b' ');
        }
        match payload {
            Payload::Text(text) => self.text(out, text),
            Payload::Binary(data) => self.binary(out, data),
        }
        out.push(self.config.separator);
    }

    /// The message's own bytes when its output record is exactly those bytes
    /// plus the separator (raw binary, or plain text in a pipe), so a large
    /// one can go to stdout as it is, without a copy.
    pub fn verbatim(&self, payload: &Payload) -> Option<Bytes> {
        let c = &self.config;
        if c.json || c.timestamps {
            return None;
        }
        match payload {
            Payload::Binary(data) if c.binary_format == BinaryFormat::Raw => Some(data.clone()),
            Payload::Text(text) if !c.terminal && !c.pretty => Some(Bytes::from(text.clone())),
            _ => None,
        }
    }

    pub fn separator(&self) -> u8 {
        self.config.separator
    }

    /// A message rendered as one line, for the REPL and for smoke-test
    /// matching (binary per `--binary-format`, never raw bytes).
    pub fn message_line(&self, payload: &Payload) -> String {
        let mut out = Vec::new();
        match payload {
            Payload::Text(text) => self.text(&mut out, text),
            Payload::Binary(data) => match self.config.binary_format {
                BinaryFormat::Raw => out.extend_from_slice(hex(data).as_bytes()),
                _ => self.binary(&mut out, data),
            },
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn text(&self, out: &mut Vec<u8>, text: &str) {
        if self.config.pretty
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
            && let Ok(pretty) = serde_json::to_string_pretty(&value)
        {
            return self.text_plain(out, &pretty);
        }
        self.text_plain(out, text)
    }

    fn text_plain(&self, out: &mut Vec<u8>, text: &str) {
        if self.config.terminal {
            out.extend_from_slice(escape_controls(text).as_bytes());
        } else {
            out.extend_from_slice(text.as_bytes());
        }
    }

    fn binary(&self, out: &mut Vec<u8>, data: &[u8]) {
        match self.config.binary_format {
            BinaryFormat::HexDump => out.extend_from_slice(hexdump(data, HEXDUMP_LIMIT).as_bytes()),
            BinaryFormat::Hex => out.extend_from_slice(hex(data).as_bytes()),
            BinaryFormat::Base64 => base64_into(out, data),
            BinaryFormat::Raw => out.extend_from_slice(data),
        }
    }

    /// A status line for stderr, or `None` when it is not worth showing at
    /// this verbosity.
    pub fn status(&self, event: &Event) -> Option<String> {
        let quiet = self.config.verbosity == Verbosity::Quiet;
        let line = match event {
            Event::Message(_) | Event::Delivered { .. } | Event::Drained => return None,
            Event::Connecting { attempt } if *attempt > 1 || quiet => return None,
            Event::Connecting { .. } => return None,
            Event::Connected {
                url, subprotocol, ..
            } => match subprotocol {
                Some(p) => format!("connected to {url} (subprotocol: {p})"),
                None => format!("connected to {url}"),
            },
            Event::Pong { rtt, heartbeat } => {
                if *heartbeat && self.config.verbosity < Verbosity::Debug {
                    return None;
                }
                format!("pong: rtt {}", format_rtt(*rtt))
            }
            Event::Disconnected { reason, .. } => format!("disconnected: {reason}"),
            Event::Reconnecting {
                attempt,
                delay,
                reason,
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
        };
        // Warnings show even with -q; the rest of the chatter does not.
        if quiet && !matches!(event, Event::Warning(_)) {
            return None;
        }
        Some(line)
    }

    /// Appends one `--json` line for an event.
    pub fn json_event(&self, out: &mut Vec<u8>, event: &Event) {
        let time = timestamp(SystemTime::now());
        let _ = write!(out, "{{\"time\":\"{time}\",\"event\":");
        match event {
            Event::Message(Payload::Text(text)) => {
                out.extend_from_slice(b"\"message\",\"type\":\"text\",\"data\":");
                let _ = serde_json::to_writer(&mut *out, text.as_str());
            }
            Event::Message(Payload::Binary(data)) => {
                out.extend_from_slice(b"\"message\",\"type\":\"binary\",\"data\":\"");
                base64_into(out, data);
                out.push(b'"');
            }
            Event::Connecting { attempt } => {
                let _ = write!(out, "\"connecting\",\"attempt\":{attempt}");
            }
            Event::Connected {
                url,
                subprotocol,
                attempt,
            } => {
                let _ = write!(
                    out,
                    "\"connected\",\"url\":{},\"subprotocol\":{},\"attempt\":{attempt}",
                    json_string(url),
                    subprotocol.as_deref().map_or("null".into(), json_string)
                );
            }
            Event::Delivered { count } => {
                let _ = write!(out, "\"delivered\",\"count\":{count}");
            }
            Event::Drained => out.extend_from_slice(b"\"drained\""),
            Event::Pong { rtt, heartbeat } => {
                let _ = write!(
                    out,
                    "\"pong\",\"rtt_ms\":{:.3},\"heartbeat\":{heartbeat}",
                    rtt.as_secs_f64() * 1e3
                );
            }
            Event::Disconnected {
                reason,
                code,
                will_retry,
            } => {
                let _ = write!(
                    out,
                    "\"disconnected\",\"reason\":{},\"code\":{},\"will_retry\":{will_retry}",
                    json_string(reason),
                    code.map_or("null".into(), |c| c.to_string())
                );
            }
            Event::Reconnecting {
                attempt,
                delay,
                reason,
            } => {
                let _ = write!(
                    out,
                    "\"reconnecting\",\"attempt\":{attempt},\"delay_ms\":{},\"reason\":{}",
                    delay.as_millis(),
                    json_string(reason)
                );
            }
            Event::Closed {
                code,
                reason,
                by_server,
            } => {
                let _ = write!(
                    out,
                    "\"closed\",\"code\":{},\"reason\":{},\"by_server\":{by_server}",
                    code.map_or("null".into(), |c| c.to_string()),
                    json_string(reason)
                );
            }
            Event::Warning(text) => {
                let _ = write!(out, "\"warning\",\"message\":{}", json_string(text));
            }
        }
        out.extend_from_slice(b"}\n");
    }

    /// The final `error` event for `--json`.
    pub fn json_error(&self, out: &mut Vec<u8>, err: &Error) {
        let unsent = match err {
            Error::GaveUp { unsent, .. } => *unsent,
            _ => 0,
        };
        let _ = writeln!(
            out,
            "{{\"time\":\"{}\",\"event\":\"error\",\"kind\":\"{}\",\"message\":{},\"exit_code\":{},\"unsent\":{unsent}}}",
            timestamp(SystemTime::now()),
            err.kind(),
            json_string(&err.to_string()),
            err.exit_code() as u8,
        );
    }
}

/// One finished (or failed) step of a smoke test, as `--json` and `-v` show it.
#[derive(Debug, Clone, Copy)]
pub struct StepReport<'a> {
    /// 1-based position in the run.
    pub number: usize,
    pub total: usize,
    /// The script line, when the step came from a script.
    pub line: Option<usize>,
    /// The scenario-file keyword (`send`, `expect`, ...).
    pub action: &'static str,
    /// The step as the user wrote it.
    pub step: &'a str,
    pub passed: bool,
    pub duration: Duration,
    /// `expect`: the message that matched, in the form it was matched.
    pub matched: Option<&'a str>,
    /// `ping`: the round trip.
    pub rtt: Option<Duration>,
    /// `close` and `expect-close`: the server's close code.
    pub code: Option<u16>,
    /// Why the step failed.
    pub reason: Option<&'a str>,
}

/// The last `--json` event of a smoke test.
#[derive(Debug, Clone, Copy)]
pub struct SmokeSummary<'a> {
    pub passed: bool,
    pub exit_code: u8,
    /// The error's kind ([`Error::kind`]) and first line, on failure.
    pub error: Option<(&'static str, &'a str)>,
    pub steps: usize,
    pub steps_passed: usize,
    /// The 1-based step that failed, if a step did.
    pub failed_step: Option<usize>,
    /// From process start to the verdict.
    pub duration: Duration,
    /// From process start to the first connection.
    pub connect: Option<Duration>,
    pub sent: u64,
    pub received: u64,
    pub rtt: RttStats,
}

impl Renderer {
    /// Appends the `--json` event for a smoke-test step.
    pub fn json_step(&self, out: &mut Vec<u8>, step: &StepReport<'_>) {
        let _ = writeln!(
            out,
            "{{\"time\":\"{}\",\"event\":\"step\",\"step\":{},\"of\":{},\"line\":{},\"action\":\"{}\",\"text\":{},\"status\":\"{}\",\"duration_ms\":{},\"matched\":{},\"rtt_ms\":{},\"code\":{},\"reason\":{}}}",
            timestamp(SystemTime::now()),
            step.number,
            step.total,
            json_opt(step.line),
            step.action,
            json_string(step.step),
            if step.passed { "passed" } else { "failed" },
            millis(step.duration),
            step.matched
                .map_or("null".into(), |m| json_string(prefix(m, MATCHED_MAX))),
            step.rtt.map_or("null".into(), millis),
            json_opt(step.code),
            step.reason.map_or("null".into(), json_string),
        );
    }

    /// Appends the final `--json` summary of a smoke test.
    pub fn json_summary(&self, out: &mut Vec<u8>, summary: &SmokeSummary<'_>) {
        let rtt = &summary.rtt;
        let (kind, message) = match summary.error {
            Some((kind, message)) => (json_string(kind), json_string(message)),
            None => ("null".into(), "null".into()),
        };
        let _ = writeln!(
            out,
            "{{\"time\":\"{}\",\"event\":\"summary\",\"result\":\"{}\",\"exit_code\":{},\"error\":{kind},\"reason\":{message},\"steps\":{},\"steps_passed\":{},\"failed_step\":{},\"duration_ms\":{},\"connect_ms\":{},\"sent\":{},\"received\":{},\"rtt_ms\":{{\"count\":{},\"last\":{},\"min\":{},\"avg\":{},\"max\":{}}}}}",
            timestamp(SystemTime::now()),
            if summary.passed { "pass" } else { "fail" },
            summary.exit_code,
            summary.steps,
            summary.steps_passed,
            json_opt(summary.failed_step),
            millis(summary.duration),
            summary.connect.map_or("null".into(), millis),
            summary.sent,
            summary.received,
            rtt.count,
            rtt.last.map_or("null".into(), millis),
            rtt.min.map_or("null".into(), millis),
            rtt.avg().map_or("null".into(), millis),
            rtt.max.map_or("null".into(), millis),
        );
    }
}

/// A smoke-test step as a `-v` status line.
pub fn step_line(step: &StepReport<'_>) -> String {
    let mut line = format!(
        "step {}/{} {} ({}): {}",
        step.number,
        step.total,
        if step.passed { "passed" } else { "failed" },
        format_delay(step.duration),
        step.step
    );
    if let Some(rtt) = step.rtt {
        let _ = write!(line, "; rtt {}", format_rtt(rtt));
    }
    if let Some(matched) = step.matched {
        let _ = write!(line, "; matched {}", excerpt(matched, 80));
    }
    line
}

/// The form of a message that smoke-test expectations match: text as it
/// came, binary as hex or base64 (`binary` is `Hex` or `Base64`).
pub fn match_form(payload: &Payload, binary: BinaryFormat) -> std::borrow::Cow<'_, str> {
    match payload {
        Payload::Text(text) => std::borrow::Cow::Borrowed(text.as_str()),
        Payload::Binary(data) if binary == BinaryFormat::Base64 => {
            std::borrow::Cow::Owned(base64::engine::general_purpose::STANDARD.encode(data))
        }
        Payload::Binary(data) => std::borrow::Cow::Owned(hex(data)),
    }
}

/// The tail of a smoke-test diagnostic: how many messages came and the last
/// few, each on one line, escaped and cut short. `recent` holds
/// (number, binary, matched form), oldest first.
pub fn received_tail<'a>(
    total: u64,
    recent: impl ExactSizeIterator<Item = (u64, bool, &'a str)>,
) -> String {
    let shown = recent.len();
    let mut out = match (total, shown as u64) {
        (0, _) => return "\n  no messages were received".into(),
        (1, _) => "\n  1 message was received:".to_string(),
        (n, k) if k < n => format!("\n  {n} messages were received; the last {k}:"),
        (n, _) => format!("\n  {n} messages were received:"),
    };
    for (number, binary, form) in recent {
        let kind = if binary { "[binary] " } else { "" };
        let _ = write!(out, "\n    #{number}: {kind}{}", excerpt(form, 120));
    }
    out
}

/// One line of text for a diagnostic: controls escaped, newlines and tabs
/// too, cut after `max` characters with a note of the full length.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (chars, c) in text.chars().enumerate() {
        if chars == max {
            let _ = write!(out, "... ({} bytes in all)", text.len());
            return out;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => {
                let mut tmp = [0u8; 4];
                out.push_str(&escape_controls(c.encode_utf8(&mut tmp)));
            }
        }
    }
    out
}

/// The first `max` characters of `text`.
fn prefix(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

fn millis(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn json_opt<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or("null".into(), |v| v.to_string())
}

/// Encodes straight into the output buffer, with no intermediate String.
fn base64_into(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
}

pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// RFC 3339 in UTC with milliseconds.
pub fn timestamp(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

pub fn format_rtt(rtt: Duration) -> String {
    format!("{:.1} ms", rtt.as_secs_f64() * 1e3)
}

pub fn format_delay(delay: Duration) -> String {
    if delay < Duration::from_secs(1) {
        format!("{} ms", delay.as_millis())
    } else {
        format!("{:.1} s", delay.as_secs_f64())
    }
}

/// Shows control characters and escape sequences as visible escapes, so a
/// hostile server cannot drive the terminal. Newlines and tabs pass.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c);
    if !text.chars().any(needs) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            c if needs(c) && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Characters that reorder text on screen (Trojan Source style).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

pub fn hex(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 2);
    for byte in data {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `offset  hex bytes  |ascii|`, 16 bytes a row, elided after `limit` bytes.
pub fn hexdump(data: &[u8], limit: usize) -> String {
    let shown = &data[..data.len().min(limit)];
    let mut out = String::new();
    for (row, chunk) in shown.chunks(16).enumerate() {
        if row > 0 {
            out.push('\n');
        }
        let _ = write!(out, "{:08x} ", row * 16);
        for i in 0..16 {
            if i == 8 {
                out.push(' ');
            }
            match chunk.get(i) {
                Some(b) => {
                    let _ = write!(out, " {b:02x}");
                }
                None => out.push_str("   "),
            }
        }
        out.push_str("  |");
        out.extend(chunk.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        out.push('|');
    }
    if data.is_empty() {
        out.push_str("(empty binary message)");
    }
    if data.len() > limit {
        let _ = write!(
            out,
            "\n... {} more bytes not shown ({} in all)",
            data.len() - limit,
            data.len()
        );
    }
    out
}

/// Writes a person-facing diagnostic line to stderr.
pub fn eprint_line(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "tether: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_are_made_visible() {
        assert_eq!(escape_controls("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escape_controls("\x1b[2Jgone\r\x07"), "\\e[2Jgone\\r\\x07");
        assert_eq!(escape_controls("a\u{9b}31m"), "a\\x9b31m");
        assert_eq!(escape_controls("x\u{202e}y"), "x\\u{202e}y");
    }

    #[test]
    fn hexdump_shows_offset_hex_and_ascii() {
        let dump = hexdump(b"Hello, world!\x00\x01\xff and more", 4096);
        assert_eq!(
            dump,
            "00000000  48 65 6c 6c 6f 2c 20 77  6f 72 6c 64 21 00 01 ff  |Hello, world!...|\n\
             00000010  20 61 6e 64 20 6d 6f 72  65                       | and more|"
        );
    }

    #[test]
    fn excerpts_are_one_escaped_line_cut_short() {
        assert_eq!(excerpt("a\nb\tc\x1b[0m", 100), "a\\nb\\tc\\e[0m");
        let long = "é".repeat(10);
        assert_eq!(excerpt(&long, 3), "ééé... (20 bytes in all)");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(prefix("héllo", 2), "hé");
        assert_eq!(prefix("hé", 5), "hé");
    }

    #[test]
    fn binary_is_matched_as_hex_or_base64() {
        let data = Payload::Binary(bytes::Bytes::from_static(b"\x00\xffhi"));
        assert_eq!(match_form(&data, BinaryFormat::Hex), "00ff6869");
        assert_eq!(match_form(&data, BinaryFormat::Base64), "AP9oaQ==");
        assert_eq!(match_form(&Payload::text("t"), BinaryFormat::Hex), "t");
    }

    #[test]
    fn the_received_tail_counts_and_lists() {
        assert_eq!(
            received_tail(0, std::iter::empty()),
            "\n  no messages were received"
        );
        let recent = [(6, false, "six"), (7, true, "00ff")];
        assert_eq!(
            received_tail(7, recent.into_iter()),
            "\n  7 messages were received; the last 2:\n    #6: six\n    #7: [binary] 00ff"
        );
    }

    #[test]
    fn hexdump_elides_past_the_limit() {
        let dump = hexdump(&[0u8; 100], 32);
        assert_eq!(dump.lines().count(), 3);
        assert!(
            dump.ends_with("... 68 more bytes not shown (100 in all)"),
            "{dump}"
        );
    }
}
