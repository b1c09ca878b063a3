//! Turning events into bytes for people and for machines. All formatting of
//! messages, status lines and `--json` events lives here, so every frontend
//! prints the same way.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::config::{BinaryFormat, OutputConfig, Verbosity};
use crate::error::Error;
use crate::session::{Event, Payload};

/// Bytes of binary shown in a terminal hex dump before the rest is elided.
pub const HEXDUMP_LIMIT: usize = 4096;

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
    fn hexdump_elides_past_the_limit() {
        let dump = hexdump(&[0u8; 100], 32);
        assert_eq!(dump.lines().count(), 3);
        assert!(
            dump.ends_with("... 68 more bytes not shown (100 in all)"),
            "{dump}"
        );
    }
}
