//! Text for people: received messages as the output options say (text,
//! pretty JSON, binary as hex dump, hex, base64 or raw), escaping for the
//! terminal, excerpts, timestamps and durations. Every line on stderr goes
//! through [`eprint_line`]. What a session reports, and `--json`, is
//! `report`'s; the REPL's lines are `frontend/repl/view.rs`'s.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;

use crate::config::{BinaryFormat, OutputConfig, Verbosity};
use crate::session::Payload;

/// SGR colours, written only when `--color` says so for the stream.
pub mod sgr {
    pub const GREEN: &str = "\x1b[32m";
    pub const YELLOW: &str = "\x1b[33m";
    pub const RED: &str = "\x1b[31m";
    pub const CYAN: &str = "\x1b[36m";
    pub const BLUE_BOLD: &str = "\x1b[1;34m";
    pub const DIM: &str = "\x1b[2m";
    pub const BOLD: &str = "\x1b[1m";
    pub const RESET: &str = "\x1b[0m";
}

/// Bytes of binary shown in a terminal hex dump before the rest is elided.
pub const HEXDUMP_LIMIT: usize = 4096;

/// Received messages as people read them (`--json` is [`crate::report`]'s).
#[derive(Debug, Clone, Copy)]
pub struct Renderer {
    config: OutputConfig,
}

impl Renderer {
    pub fn new(config: OutputConfig) -> Renderer {
        Renderer { config }
    }

    pub fn verbosity(&self) -> Verbosity {
        self.config.verbosity
    }

    /// `-P`: Pings and Pongs are shown.
    pub fn ping_pong(&self) -> bool {
        self.config.ping_pong
    }

    /// Appends a received message as one output record (with separator,
    /// if there is one).
    pub fn message(&self, out: &mut Vec<u8>, payload: &Payload) {
        // Exact for an empty buffer: a large message then gets a chunk of its
        // own size, not twice that.
        out.reserve(payload.len() + 1);
        if self.config.timestamps {
            return self.stamped(out, payload, SystemTime::now());
        }
        self.body(out, payload);
        out.extend(self.config.separator);
    }

    fn body(&self, out: &mut Vec<u8>, payload: &Payload) {
        match payload {
            Payload::Text(text) => self.text(out, text),
            Payload::Binary(data) => self.binary(out, data),
        }
    }

    /// `--timestamps`: the time, a space, the message. When records end with
    /// a newline, every line after a text message's first is indented by the
    /// stamp's width, so only a line that starts a message starts with a
    /// time (a digit); with `-0` the NUL frames the record and the message
    /// is left as it is. Binary is never indented: raw bytes stay the bytes
    /// (base64 and hex have no newlines).
    fn stamped(&self, out: &mut Vec<u8>, payload: &Payload, time: SystemTime) {
        let indent = self.push_stamp(out, time);
        if self.config.separator != Some(b'\n') || matches!(payload, Payload::Binary(_)) {
            self.body(out, payload);
            out.extend(self.config.separator);
            return;
        }
        // Rendered in place; only a message with a newline is copied again.
        let start = out.len();
        self.body(out, payload);
        if memchr::memchr(b'\n', &out[start..]).is_some() {
            let body = out.split_off(start);
            for (i, line) in body.split(|&b| b == b'\n').enumerate() {
                if i > 0 {
                    out.push(b'\n');
                    out.resize(out.len() + indent, b' ');
                }
                out.extend_from_slice(line);
            }
        }
        out.push(b'\n');
    }

    /// The message's own bytes when its output record is exactly those bytes
    /// plus the separator (raw binary, or plain text in a pipe), so a large
    /// one can go to stdout as it is, without a copy.
    pub fn verbatim(&self, payload: &Payload) -> Option<Bytes> {
        let c = &self.config;
        if c.timestamps {
            return None;
        }
        match payload {
            Payload::Binary(data) if c.binary_format == BinaryFormat::Raw && !c.terminal => {
                Some(data.clone())
            }
            Payload::Text(text) if !c.terminal && !c.pretty => Some(Bytes::from(text.clone())),
            _ => None,
        }
    }

    pub fn separator(&self) -> Option<u8> {
        self.config.separator
    }

    /// A large binary message's output record (as [`Renderer::message`]
    /// renders it) in pieces of about `piece` bytes, so printing it never
    /// holds its whole base64 or hex form: that would be up to twice the
    /// message again. `None` for what renders in one go.
    pub fn message_pieces(&self, payload: &Payload, piece: usize) -> Option<Pieces> {
        let Payload::Binary(data) = payload else {
            return None;
        };
        let format = self.config.binary_format;
        if !matches!(format, BinaryFormat::Base64 | BinaryFormat::Hex) {
            return None;
        }
        let mut head = Vec::new();
        if self.config.timestamps {
            self.push_stamp(&mut head, SystemTime::now());
        }
        let base64 = format == BinaryFormat::Base64;
        Some(Pieces::new(
            head,
            data.clone(),
            piece,
            base64,
            self.config.separator.into_iter().collect(),
        ))
    }

    fn text(&self, out: &mut Vec<u8>, text: &str) {
        match self.pretty(text, self.config.terminal) {
            Some(pretty) => out.extend_from_slice(pretty.as_bytes()),
            None => self.text_plain(out, text),
        }
    }

    /// The text re-indented when `--pretty` asks and it is JSON, its tokens
    /// escaped when `escape` says (for a terminal) and coloured when colour
    /// is on; `None` for anything else, which is shown as received.
    pub fn pretty(&self, text: &str, escape: bool) -> Option<String> {
        let style = crate::pretty::Style {
            escape,
            colour: self.config.color,
        };
        self.config
            .pretty
            .then(|| crate::pretty::reindent(text, style))
            .flatten()
    }

    /// The time a message was received and a space, dim when colour is on;
    /// returns how wide it shows.
    fn push_stamp(&self, out: &mut Vec<u8>, time: SystemTime) -> usize {
        let stamp = timestamp(time);
        if self.config.color {
            out.extend_from_slice(sgr::DIM.as_bytes());
            out.extend_from_slice(stamp.as_bytes());
            out.extend_from_slice(sgr::RESET.as_bytes());
        } else {
            out.extend_from_slice(stamp.as_bytes());
        }
        out.push(b' ');
        stamp.len() + 1
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
            // Bytes a terminal would obey are shown as escapes, as text's are.
            BinaryFormat::Raw if self.config.terminal => escape_bytes(out, data),
            BinaryFormat::Raw => out.extend_from_slice(data),
        }
    }
}

/// A binary message's output record in pieces: `head`, the data encoded
/// (base64 or hex) about `piece` bytes at a time, `tail`.
pub struct Pieces {
    head: Option<Vec<u8>>,
    /// The message (shared, not copied) and how far it has been rendered.
    data: Bytes,
    offset: usize,
    step: usize,
    base64: bool,
    piece: usize,
    tail: Option<Vec<u8>>,
}

impl Pieces {
    pub fn new(head: Vec<u8>, data: Bytes, piece: usize, base64: bool, tail: Vec<u8>) -> Self {
        // Base64 of whole 3-byte groups joins up with no padding in between.
        let step = if base64 { piece / 4 * 3 } else { piece / 2 }.max(3);
        Pieces {
            head: Some(head),
            data,
            offset: 0,
            step,
            base64,
            piece,
            tail: Some(tail),
        }
    }
}

impl Iterator for Pieces {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if let Some(head) = self.head.take() {
            return Some(head);
        }
        if self.offset < self.data.len() {
            let end = (self.offset + self.step).min(self.data.len());
            let chunk = &self.data[self.offset..end];
            self.offset = end;
            let mut out = Vec::with_capacity(self.piece + 4);
            if self.base64 {
                base64_into(&mut out, chunk);
            } else {
                hex_into(&mut out, chunk);
            }
            return Some(out);
        }
        self.tail.take()
    }
}

/// One line of text for a diagnostic: controls escaped, newlines and tabs
/// too, cut after `max` characters with a note of the full length: `bytes`,
/// the message's size, which for a binary one shown in hex or base64 is not
/// the text's.
pub fn excerpt(text: &str, max: usize, bytes: usize) -> String {
    let mut out = String::new();
    for (chars, c) in text.chars().enumerate() {
        if chars == max {
            let _ = write!(out, "... ({bytes} bytes in all)");
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

/// A payload as a diagnostic shows it: text quoted and escaped (as Rust's
/// `{:?}` quotes it, and [`escape_controls`] on top), other bytes in hex; at
/// most `max` characters (or bytes), with a note of the full length when
/// cut. `binary` shows even valid UTF-8 in hex (a binary message's payload).
pub fn quoted(data: &[u8], binary: bool, max: usize) -> String {
    let text = (!binary).then(|| std::str::from_utf8(data).ok()).flatten();
    let (mut out, cut) = match text {
        Some(text) => {
            let shown = prefix(text, max);
            let quoted = escape_controls(&format!("{shown:?}")).into_owned();
            (quoted, shown.len() < text.len())
        }
        None => {
            let shown = &data[..data.len().min(max)];
            (hex(shown), shown.len() < data.len())
        }
    };
    if cut {
        let _ = write!(out, "... ({} bytes in all)", data.len());
    }
    out
}

/// The first `max` characters of `text`.
pub fn prefix(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Encodes straight into the output buffer, with no intermediate String.
pub fn base64_into(out: &mut Vec<u8>, data: &[u8]) {
    let start = out.len();
    let len = base64::encoded_len(data.len(), true).unwrap_or(0);
    out.resize(start + len, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(data, &mut out[start..])
        .unwrap_or(0);
    out.truncate(start + written);
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

/// Bytes for a terminal: UTF-8 as [`escape_controls`] shows it, and each byte
/// that is not UTF-8 as `\xNN`.
fn escape_bytes(out: &mut Vec<u8>, data: &[u8]) {
    for chunk in data.utf8_chunks() {
        out.extend_from_slice(escape_controls(chunk.valid()).as_bytes());
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
}

/// Characters that reorder text on screen (Trojan Source style).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

pub fn hex(data: &[u8]) -> String {
    let mut out = Vec::with_capacity(data.len() * 2);
    hex_into(&mut out, data);
    String::from_utf8(out).unwrap_or_default()
}

fn hex_into(out: &mut Vec<u8>, data: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.reserve(data.len() * 2);
    for byte in data {
        out.push(DIGITS[usize::from(byte >> 4)]);
        out.push(DIGITS[usize::from(byte & 0xf)]);
    }
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

/// Writes a person-facing diagnostic line to stderr. Every diagnostic goes
/// through here, and many quote the server (close reasons, handshake bodies,
/// redirect locations, error texts), so the line is escaped as messages on a
/// terminal are: a hostile server cannot set the title or write the
/// clipboard through stderr. Text that is already escaped (excerpts, Debug
/// quoting) has no controls left, so it passes unchanged: nothing is escaped
/// twice.
pub fn eprint_line(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "tether: {}", escape_controls(line));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(separator: u8) -> Renderer {
        Renderer::new(OutputConfig {
            binary_format: BinaryFormat::Raw,
            timestamps: true,
            json: false,
            pretty: false,
            color: false,
            terminal: false,
            separator: Some(separator),
            verbosity: Verbosity::Normal,
            ping_pong: false,
        })
    }

    #[test]
    fn stamped_messages_indent_their_continuation_lines() {
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let stamped = |r: Renderer, payload: Payload| {
            let mut out = Vec::new();
            r.stamped(&mut out, &payload, time);
            String::from_utf8(out).unwrap()
        };
        let pad = " ".repeat(25);
        assert_eq!(
            stamped(pipe(b'\n'), Payload::text("one\ntwo\n\nend\n")),
            format!("2023-11-14T22:13:20.123Z one\n{pad}two\n{pad}\n{pad}end\n{pad}\n")
        );
        assert_eq!(
            stamped(pipe(b'\n'), Payload::text("solo")),
            "2023-11-14T22:13:20.123Z solo\n"
        );
        // Raw binary keeps its bytes: no indent after its newlines.
        let binary = Payload::Binary(Bytes::from_static(b"a\nb"));
        assert_eq!(
            stamped(pipe(b'\n'), binary.clone()),
            "2023-11-14T22:13:20.123Z a\nb\n"
        );
        // Colour dims the time; the indent is still its width on screen.
        let coloured = Renderer::new(OutputConfig {
            color: true,
            ..pipe(b'\n').config
        });
        assert_eq!(
            stamped(coloured, Payload::text("a\nb")),
            format!("\x1b[2m2023-11-14T22:13:20.123Z\x1b[0m a\n{pad}b\n")
        );
        // With -0 the NUL frames the record: the message is as received.
        assert_eq!(stamped(pipe(0), binary), "2023-11-14T22:13:20.123Z a\nb\0");
    }

    #[test]
    fn escape_sequences_are_made_visible() {
        assert_eq!(escape_controls("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(escape_controls("\x1b[2Jgone\r\x07"), "\\e[2Jgone\\r\\x07");
        assert_eq!(escape_controls("a\u{9b}31m"), "a\\x9b31m");
        assert_eq!(escape_controls("x\u{202e}y"), "x\\u{202e}y");
    }

    fn output(terminal: bool, separator: Option<u8>) -> OutputConfig {
        OutputConfig {
            binary_format: BinaryFormat::Raw,
            timestamps: false,
            json: false,
            pretty: false,
            color: false,
            terminal,
            separator,
            verbosity: Verbosity::Normal,
            ping_pong: false,
        }
    }

    #[test]
    fn raw_bytes_are_escaped_on_a_terminal_and_a_byte_stream_has_no_separator() {
        let data = Payload::Binary(Bytes::from_static(b"\x1b[2Jh\xc3\xa9\xff\n"));
        let text = Payload::text("\x07hi\r");
        let render = |config, payload: &Payload| {
            let mut out = Vec::new();
            Renderer::new(config).message(&mut out, payload);
            out
        };
        assert_eq!(
            render(output(false, None), &data),
            b"\x1b[2Jh\xc3\xa9\xff\n"
        );
        assert_eq!(render(output(false, None), &text), b"\x07hi\r");
        assert_eq!(
            render(output(false, Some(b'\n')), &data),
            b"\x1b[2Jh\xc3\xa9\xff\n\n"
        );
        assert_eq!(
            render(output(true, None), &data),
            "\\e[2Jhé\\xff\n".as_bytes()
        );
        assert_eq!(render(output(true, None), &text), b"\\x07hi\\r");
        // Large ones skip the copy only where their bytes are the output.
        let renderer = Renderer::new(output(false, None));
        assert!(renderer.verbatim(&data).is_some() && renderer.separator().is_none());
        assert!(Renderer::new(output(true, None)).verbatim(&data).is_none());
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

    #[test]
    fn excerpts_are_one_escaped_line_cut_short() {
        assert_eq!(excerpt("a\nb\tc\x1b[0m", 100, 9), "a\\nb\\tc\\e[0m");
        let long = "é".repeat(10);
        assert_eq!(excerpt(&long, 3, long.len()), "ééé... (20 bytes in all)");
        assert_eq!(excerpt("abc", 3, 3), "abc");
        assert_eq!(excerpt("00ff00ff", 2, 4), "00... (4 bytes in all)");
        assert_eq!(prefix("héllo", 2), "hé");
        assert_eq!(prefix("hé", 5), "hé");
    }

    #[test]
    fn quoted_payloads_are_escaped_text_or_hex() {
        assert_eq!(quoted(b"abcd", false, 125), "\"abcd\"");
        assert_eq!(
            quoted("q\"\x1b[2J\u{9b}\u{202e}\u{2028}é\n".as_bytes(), false, 125),
            "\"q\\\"\\u{1b}[2J\\u{9b}\\u{202e}\\u{2028}é\\n\""
        );
        assert_eq!(quoted(b"\x00\xff", false, 125), "00ff");
        assert_eq!(quoted(b"abc", true, 125), "616263");
        assert_eq!(quoted(b"abcdef", false, 2), "\"ab\"... (6 bytes in all)");
        assert_eq!(quoted(b"abcdef", true, 2), "6162... (6 bytes in all)");
        assert_eq!(quoted(b"", false, 125), "\"\"");
    }
}
