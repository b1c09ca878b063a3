//! The `--json` schema: one type per event, with the fields the README's
//! "`--json` events" section documents, in the order they print. serde
//! writes them; [`Escaping`] is what tether adds to JSON's own escapes.

use std::io;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

use crate::error::Error;
use crate::session::{Event, Exchange, Payload, Peer, RttStats, Unsent};

/// Characters of the matched message in a `step` event; the full message is
/// in its `message` event.
pub const MATCHED_MAX: usize = 1024;

/// One line: `time`, then the event's name in `event`, then its fields.
#[derive(Debug, Serialize)]
pub struct Line<'a> {
    pub time: Time,
    #[serde(flatten)]
    pub event: JsonEvent<'a>,
}

/// Every event `--json` prints. `delivered` and `drained` are bookkeeping
/// between the supervisor and the frontend, never printed.
#[derive(Debug, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JsonEvent<'a> {
    Connecting(Connecting),
    Connected(Connected<'a>),
    Handshake(Handshake<'a>),
    Message(Message<'a>),
    Sent(Sent<'a>),
    Ping(Ping<'a>),
    Pong(Pong),
    Disconnected(Disconnected<'a>),
    Reconnecting(Reconnecting<'a>),
    Closed(Closed<'a>),
    Warning(Warning<'a>),
    Replied(Replied<'a>),
    Error(ErrorEvent),
    Step(Step<'a>),
    Summary(Summary<'a>),
}

#[derive(Debug, Serialize)]
pub struct Connecting {
    pub attempt: u32,
}

#[derive(Debug, Serialize)]
pub struct Connected<'a> {
    pub url: &'a str,
    pub subprotocol: Option<&'a str>,
    pub compression: Option<&'a str>,
    pub compressing: bool,
    pub attempt: u32,
}

/// One HTTP exchange of a dial, secrets redacted: the proxy's `CONNECT`
/// (`peer` `proxy`) or the upgrade (`server`).
#[derive(Debug, Serialize)]
pub struct Handshake<'a> {
    pub peer: HandshakePeer,
    /// The WebSocket URL dialled (as in `connected`).
    pub url: &'a str,
    pub request: HandshakeRequest<'a>,
    /// `None` when no HTTP answer came.
    pub response: Option<HandshakeResponse<'a>>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HandshakePeer {
    Proxy,
    Server,
}

/// Headers as `[name, value]` pairs, in order, duplicates kept.
pub type Headers<'a> = &'a [(String, String)];

#[derive(Debug, Serialize)]
pub struct HandshakeRequest<'a> {
    pub method: &'a str,
    pub target: &'a str,
    pub headers: Headers<'a>,
}

#[derive(Debug, Serialize)]
pub struct HandshakeResponse<'a> {
    pub status: u16,
    pub reason: &'a str,
    pub headers: Headers<'a>,
}

impl<'a> Handshake<'a> {
    pub fn of(exchange: &'a Exchange) -> Handshake<'a> {
        Handshake {
            peer: match exchange.peer {
                Peer::Proxy => HandshakePeer::Proxy,
                Peer::Server => HandshakePeer::Server,
            },
            url: &exchange.url,
            request: HandshakeRequest {
                method: &exchange.request.method,
                target: &exchange.request.target,
                headers: &exchange.request.headers,
            },
            response: exchange.response.as_ref().map(|r| HandshakeResponse {
                status: r.status,
                reason: &r.reason,
                headers: &r.headers,
            }),
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Message<'a> {
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub data: Data<'a>,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Text,
    Binary,
}

/// A message's `data`: the text, or base64 for binary.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

impl Serialize for Data<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Data::Text(text) => s.serialize_str(text),
            Data::Binary(data) => s.collect_str(&base64::display::Base64Display::new(
                data,
                &base64::engine::general_purpose::STANDARD,
            )),
        }
    }
}

impl<'a> Message<'a> {
    pub fn of(payload: &'a Payload) -> Message<'a> {
        match payload {
            Payload::Text(text) => Message {
                kind: MessageType::Text,
                data: Data::Text(text),
            },
            Payload::Binary(data) => Message {
                kind: MessageType::Binary,
                data: Data::Binary(data),
            },
        }
    }
}

/// A message tether wrote to the socket (`--json-sent`).
#[derive(Debug, Serialize)]
pub struct Sent<'a> {
    #[serde(rename = "type")]
    pub kind: MessageType,
    pub data: Data<'a>,
    /// Sent before, on a connection lost before the server confirmed it.
    pub replay: bool,
}

/// A Ping from the server (`-P`): its payload, in base64 as a Ping's payload
/// is bytes.
#[derive(Debug, Serialize)]
pub struct Ping<'a> {
    pub data: Data<'a>,
}

#[derive(Debug, Serialize)]
pub struct Pong {
    /// `None` for a Pong the server sent unasked (`-P`).
    pub rtt_ms: Option<Millis>,
    pub heartbeat: bool,
}

/// A `--reply*` answered a received message.
#[derive(Debug, Serialize)]
pub struct Replied<'a> {
    /// The received message.
    pub to: &'a str,
    /// What was sent in answer.
    pub reply: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Disconnected<'a> {
    pub reason: &'a str,
    pub code: Option<u16>,
    pub will_retry: bool,
}

#[derive(Debug, Serialize)]
pub struct Reconnecting<'a> {
    pub attempt: u32,
    pub delay_ms: u128,
    pub reason: &'a str,
}

#[derive(Debug, Serialize)]
pub struct Closed<'a> {
    pub code: Option<u16>,
    pub reason: &'a str,
    pub by_server: bool,
}

#[derive(Debug, Serialize)]
pub struct Warning<'a> {
    pub message: &'a str,
}

/// The last line when tether fails.
#[derive(Debug, Serialize)]
pub struct ErrorEvent {
    pub kind: &'static str,
    pub message: String,
    pub exit_code: u8,
    /// Messages never confirmed.
    pub unsent: usize,
}

impl ErrorEvent {
    /// `left` is what an interrupted session left behind, when the error
    /// itself does not carry it.
    pub fn of(err: &Error, left: Option<Unsent>) -> ErrorEvent {
        let unsent = match err {
            Error::GaveUp { unsent, .. } | Error::Undelivered(unsent) => unsent.total(),
            _ => left.map_or(0, |unsent| unsent.total()),
        };
        ErrorEvent {
            kind: err.kind(),
            message: err.to_string(),
            exit_code: err.status(),
            unsent,
        }
    }
}

/// One finished (or failed) step of a smoke test, as `--json` and `-v` show it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Step<'a> {
    /// 1-based position in the run.
    pub step: usize,
    /// The number of steps.
    pub of: usize,
    /// The script line, when the step came from a script.
    pub line: Option<usize>,
    /// The scenario-file keyword (`send`, `expect`, ...).
    pub action: &'static str,
    /// The step as the user wrote it.
    pub text: &'a str,
    pub status: StepStatus,
    pub duration_ms: Millis,
    /// `expect`: the message that matched, in the form it was matched; at
    /// most [`MATCHED_MAX`] characters of it in the event.
    #[serde(serialize_with = "matched_prefix")]
    pub matched: Option<&'a str>,
    /// The matched message's size, which its form (hex, base64) is not.
    #[serde(skip)]
    pub matched_bytes: usize,
    /// `ping`: the round trip.
    pub rtt_ms: Option<Millis>,
    /// `close` and `expect-close`: the server's close code.
    pub code: Option<u16>,
    /// Why the step failed.
    pub reason: Option<&'a str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Passed,
    Failed,
}

fn matched_prefix<S: Serializer>(matched: &Option<&str>, s: S) -> Result<S::Ok, S::Error> {
    matched
        .map(|m| crate::render::prefix(m, MATCHED_MAX))
        .serialize(s)
}

/// The last line of a smoke test.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Summary<'a> {
    pub result: Verdict,
    pub exit_code: u8,
    /// The error's kind ([`Error::kind`]), on failure.
    pub error: Option<&'static str>,
    /// The first line of the diagnostic, on failure.
    pub reason: Option<&'a str>,
    pub steps: usize,
    pub steps_passed: usize,
    /// The 1-based step that failed, if a step did.
    pub failed_step: Option<usize>,
    /// From process start to the verdict.
    pub duration_ms: Millis,
    /// From process start to the first connection.
    pub connect_ms: Option<Millis>,
    pub sent: u64,
    pub received: u64,
    pub rtt_ms: Rtt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Fail,
}

/// The summary's `rtt_ms`: over every Pong.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rtt {
    pub count: u32,
    pub last: Option<Millis>,
    pub min: Option<Millis>,
    pub avg: Option<Millis>,
    pub max: Option<Millis>,
}

impl From<RttStats> for Rtt {
    fn from(rtt: RttStats) -> Rtt {
        Rtt {
            count: rtt.count,
            last: rtt.last.map(Millis),
            min: rtt.min.map(Millis),
            avg: rtt.avg().map(Millis),
            max: rtt.max.map(Millis),
        }
    }
}

impl<'a> JsonEvent<'a> {
    /// A supervisor event as `--json` shows it; `None` for those it does not.
    pub fn of(event: &'a Event) -> Option<JsonEvent<'a>> {
        Some(match event {
            Event::Message(payload) => JsonEvent::Message(Message::of(payload)),
            Event::Delivered { .. } | Event::Drained => return None,
            Event::Handshake(exchange) => JsonEvent::Handshake(Handshake::of(exchange)),
            Event::Connecting { attempt } => {
                JsonEvent::Connecting(Connecting { attempt: *attempt })
            }
            Event::Connected {
                url,
                subprotocol,
                compression,
                compressing,
                attempt,
            } => JsonEvent::Connected(Connected {
                url,
                subprotocol: subprotocol.as_deref(),
                compression: compression.as_deref(),
                compressing: *compressing,
                attempt: *attempt,
            }),
            Event::Sent { payload, replay } => {
                let Message { kind, data } = Message::of(payload);
                JsonEvent::Sent(Sent {
                    kind,
                    data,
                    replay: *replay,
                })
            }
            Event::Ping(payload) => JsonEvent::Ping(Ping {
                data: Data::Binary(payload),
            }),
            Event::Pong { rtt, heartbeat } => JsonEvent::Pong(Pong {
                rtt_ms: Some(Millis(*rtt)),
                heartbeat: *heartbeat,
            }),
            Event::UnsolicitedPong(_) => JsonEvent::Pong(Pong {
                rtt_ms: None,
                heartbeat: false,
            }),
            Event::Disconnected {
                reason,
                code,
                will_retry,
            } => JsonEvent::Disconnected(Disconnected {
                reason,
                code: *code,
                will_retry: *will_retry,
            }),
            Event::Reconnecting {
                attempt,
                delay,
                reason,
                ..
            } => JsonEvent::Reconnecting(Reconnecting {
                attempt: *attempt,
                delay_ms: delay.as_millis(),
                reason,
            }),
            Event::Closed {
                code,
                reason,
                by_server,
            } => JsonEvent::Closed(Closed {
                code: *code,
                reason,
                by_server: *by_server,
            }),
            Event::Warning(message) => JsonEvent::Warning(Warning { message }),
            Event::Replied { to, reply } => JsonEvent::Replied(Replied { to, reply }),
        })
    }
}

/// `time`: RFC 3339 in UTC with milliseconds, written without a String of
/// its own.
#[derive(Debug, Clone, Copy)]
pub struct Time(pub SystemTime);

impl Time {
    pub fn now() -> Time {
        Time(SystemTime::now())
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_millis(self.0))
    }
}

/// A duration in milliseconds, printed with three decimals (`6.012`): the
/// schema's only floats, so [`Escaping`] prints every `f64` that way.
#[derive(Debug, Clone, Copy)]
pub struct Millis(pub Duration);

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0.as_secs_f64() * 1e3)
    }
}

/// Appends `value` as one line of JSON.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, Escaping);
    // Writing to a Vec cannot fail, and the schema's maps have string keys.
    let _ = value.serialize(&mut ser);
    out.push(b'\n');
}

/// Appends the line for `event`, timed now.
pub fn event(out: &mut Vec<u8>, event: JsonEvent<'_>) {
    write(
        out,
        &Line {
            time: Time::now(),
            event,
        },
    );
}

/// Appends the `message` line for a received message. This line is the hot
/// one (a busy stream is nearly all messages), so it is written directly,
/// with the escaper [`Escaping`] uses: the same bytes serde writes for
/// [`Line`] with a [`Message`] (a test holds them alike), at less than half
/// the cost.
pub fn message(out: &mut Vec<u8>, payload: &Payload) {
    use std::io::Write as _;
    out.reserve(payload.len() + 80);
    out.extend_from_slice(b"{\"time\":\"");
    let _ = write!(
        out,
        "{}",
        humantime::format_rfc3339_millis(SystemTime::now())
    );
    match payload {
        Payload::Text(text) => {
            out.extend_from_slice(b"\",\"event\":\"message\",\"type\":\"text\",\"data\":\"");
            let _ = escape_into(out, text);
        }
        Payload::Binary(data) => {
            out.extend_from_slice(b"\",\"event\":\"message\",\"type\":\"binary\",\"data\":\"");
            crate::render::base64_into(out, data);
        }
    }
    out.extend_from_slice(b"\"}\n");
}

/// `value` as JSON text, escaped as every line is.
#[cfg(test)]
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> String {
    let mut out = Vec::new();
    write(&mut out, value);
    out.pop();
    // serde_json writes UTF-8, and the escapes are ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// serde_json's compact output, with more escaped than JSON requires.
/// serde_json escapes the quote, the backslash and the C0 controls; beyond
/// that, DEL, the C1 controls (U+0080..U+009F, e.g. U+009B, a one-byte
/// CSI), the bidi overrides and isolates (U+202A..U+202E, U+2066..U+2069)
/// and the line and paragraph separators U+2028/U+2029 are written as
/// `\uXXXX`: a `--json` line shown on a terminal cannot drive it or reorder
/// it, and JavaScript line splitters stay safe. Still valid JSON, and the
/// same text once parsed. Every `f64` (a [`Millis`]) has three decimals.
pub struct Escaping;

impl serde_json::ser::Formatter for Escaping {
    #[inline]
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        escape_into(writer, fragment)
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        write!(writer, "{value:.3}")
    }
}

/// Writes `s` escaped, without its quotes: the quote, the backslash and the
/// C0 controls as JSON requires (`\n`, `\u001b`, ... as serde_json writes
/// them), and what [`Escaping`] adds. The common case, plain ASCII, is one
/// table lookup a byte and one copy.
#[inline]
pub fn escape_into<W: ?Sized + io::Write>(out: &mut W, s: &str) -> io::Result<()> {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        // Continuation bytes (0x80..0xBF) pass: after an escaped sequence
        // they are skipped by moving `start`, not by the loop.
        if BYTES[byte as usize] != PASS {
            start = escape_at(out, bytes, start, i)?;
        }
    }
    out.write_all(&bytes[start..])
}

/// How [`escape_into`] treats each byte: copied, or looked at.
const PASS: u8 = 0;
const CONTROL: u8 = 1;
const QUOTE: u8 = 2;
const BACKSLASH: u8 = 3;
/// 0xC2 starts U+0080..U+00BF, among them the C1 controls.
const LEAD_C2: u8 = 4;
/// 0xE2 starts U+2000..U+2FFF, among them U+2028/2029 and the bidi controls.
const LEAD_E2: u8 = 5;

const BYTES: [u8; 256] = {
    let mut table = [PASS; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = CONTROL;
        b += 1;
    }
    table[0x7f] = CONTROL;
    table[b'"' as usize] = QUOTE;
    table[b'\\' as usize] = BACKSLASH;
    table[0xc2] = LEAD_C2;
    table[0xe2] = LEAD_E2;
    table
};

/// The escape for the byte at `i` (with `bytes[start..i]` before it), if it
/// needs one; returns where the text still to copy starts.
#[inline(never)]
fn escape_at<W: ?Sized + io::Write>(
    out: &mut W,
    bytes: &[u8],
    start: usize,
    i: usize,
) -> io::Result<usize> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let byte = bytes[i];
    let (len, code) = match BYTES[byte as usize] {
        CONTROL => (1, u32::from(byte)),
        QUOTE | BACKSLASH => {
            out.write_all(&bytes[start..i])?;
            out.write_all(&[b'\\', byte])?;
            return Ok(i + 1);
        }
        LEAD_C2 => match bytes.get(i + 1) {
            // U+0080..U+009F: the second byte is the code point.
            Some(&next @ 0x80..=0x9f) => (2, u32::from(next)),
            _ => return Ok(start),
        },
        LEAD_E2 => match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&b1), Some(&b2)) => {
                let code = 0x2000 | (u32::from(b1 & 0x3f) << 6) | u32::from(b2 & 0x3f);
                if !matches!(code, 0x2028..=0x202e | 0x2066..=0x2069) {
                    return Ok(start);
                }
                (3, code)
            }
            _ => return Ok(start),
        },
        _ => return Ok(start),
    };
    out.write_all(&bytes[start..i])?;
    match code {
        0x08 => out.write_all(b"\\b")?,
        0x09 => out.write_all(b"\\t")?,
        0x0a => out.write_all(b"\\n")?,
        0x0c => out.write_all(b"\\f")?,
        0x0d => out.write_all(b"\\r")?,
        _ => out.write_all(&[
            b'\\',
            b'u',
            HEX[(code >> 12) as usize & 0xf],
            HEX[(code >> 8) as usize & 0xf],
            HEX[(code >> 4) as usize & 0xf],
            HEX[code as usize & 0xf],
        ])?,
    }
    Ok(i + len)
}
/// One line of every event, for tests that hold the schema to the README.
/// The match makes a new event fail to compile here until it has a sample.
#[cfg(test)]
pub(crate) fn samples() -> Vec<JsonEvent<'static>> {
    let ms = Millis(Duration::from_micros(2771));
    let all = vec![
        JsonEvent::Connecting(Connecting { attempt: 1 }),
        JsonEvent::Connected(Connected {
            url: "ws://127.0.0.1:9101/x",
            subprotocol: None,
            compression: Some(
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            ),
            compressing: false,
            attempt: 1,
        }),
        JsonEvent::Handshake(Handshake {
            peer: HandshakePeer::Server,
            url: "ws://127.0.0.1:9101/x",
            request: HandshakeRequest {
                method: "GET",
                target: "/x",
                headers: &[],
            },
            response: Some(HandshakeResponse {
                status: 101,
                reason: "Switching Protocols",
                headers: &[],
            }),
        }),
        JsonEvent::Message(Message {
            kind: MessageType::Text,
            data: Data::Text("a"),
        }),
        JsonEvent::Sent(Sent {
            kind: MessageType::Text,
            data: Data::Text("a"),
            replay: false,
        }),
        JsonEvent::Ping(Ping {
            data: Data::Binary(b"a"),
        }),
        JsonEvent::Pong(Pong {
            rtt_ms: Some(ms),
            heartbeat: false,
        }),
        JsonEvent::Disconnected(Disconnected {
            reason: "connection reset",
            code: None,
            will_retry: true,
        }),
        JsonEvent::Reconnecting(Reconnecting {
            attempt: 2,
            delay_ms: 250,
            reason: "connection reset",
        }),
        JsonEvent::Closed(Closed {
            code: Some(1000),
            reason: "",
            by_server: false,
        }),
        JsonEvent::Warning(Warning { message: "w" }),
        JsonEvent::Error(ErrorEvent {
            kind: "connect",
            message: "m".into(),
            exit_code: 3,
            unsent: 0,
        }),
        JsonEvent::Step(Step {
            step: 1,
            of: 1,
            line: None,
            action: "send",
            text: "--send x",
            status: StepStatus::Passed,
            duration_ms: ms,
            matched: None,
            matched_bytes: 0,
            rtt_ms: None,
            code: None,
            reason: None,
        }),
        JsonEvent::Replied(Replied {
            to: "{\"type\":\"ping\",\"id\":7}",
            reply: "{\"type\":\"pong\",\"id\":7}",
        }),
        JsonEvent::Summary(Summary {
            result: Verdict::Pass,
            exit_code: 0,
            error: None,
            reason: None,
            steps: 1,
            steps_passed: 1,
            failed_step: None,
            duration_ms: ms,
            connect_ms: Some(ms),
            sent: 1,
            received: 0,
            rtt_ms: RttStats::default().into(),
        }),
    ];
    for event in &all {
        match event {
            JsonEvent::Connecting(_)
            | JsonEvent::Connected(_)
            | JsonEvent::Handshake(_)
            | JsonEvent::Message(_)
            | JsonEvent::Sent(_)
            | JsonEvent::Ping(_)
            | JsonEvent::Pong(_)
            | JsonEvent::Disconnected(_)
            | JsonEvent::Reconnecting(_)
            | JsonEvent::Closed(_)
            | JsonEvent::Warning(_)
            | JsonEvent::Replied(_)
            | JsonEvent::Error(_)
            | JsonEvent::Step(_)
            | JsonEvent::Summary(_) => {}
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json_string(s: &str) -> String {
        to_string(s)
    }

    fn at(time: &str, event: JsonEvent<'_>) -> String {
        let time = Time(humantime::parse_rfc3339(time).unwrap());
        to_string(&Line { time, event })
    }

    #[test]
    fn json_strings_escape_c1_bidi_and_line_separators() {
        assert_eq!(
            json_string(
                "a\u{9b}31m\u{202e}b\u{2028}c\u{2029}\u{2066}\u{2069}\u{85}\x7f\x1b\"\\\n\t\x08\x0c\r"
            ),
            r#""a\u009b31m\u202eb\u2028c\u2029\u2066\u2069\u0085\u007f\u001b\"\\\n\t\b\f\r""#
        );
        // Their neighbours are left alone.
        for kept in [
            "\u{a0}é",
            "\u{2027}\u{202f}\u{2065}\u{206a}",
            "€ 日本 😀",
            "plain",
        ] {
            assert_eq!(
                json_string(kept),
                serde_json::to_string(kept).unwrap(),
                "{kept}"
            );
        }
        // Cut multi-byte sequences cannot occur in a str, but ends of text can.
        assert_eq!(json_string("\u{c2}"), "\"\u{c2}\"");
        assert_eq!(json_string("x\u{2000}"), "\"x\u{2000}\"");
        assert_eq!(json_string("\u{2028}\u{2028}x"), r#""\u2028\u2028x""#);
    }

    #[test]
    fn json_strings_round_trip_through_a_json_parser() {
        let mut all = String::new();
        for c in (0u32..0x3000).filter_map(char::from_u32) {
            all.push(c);
        }
        all.push_str("end 😀");
        let encoded = json_string(&all);
        let decoded: String = serde_json::from_str(&encoded).unwrap();
        assert_eq!(decoded, all);
        assert!(!encoded.chars().any(|c| c.is_control()
            || crate::render::is_bidi_control(c)
            || c == '\u{2028}'
            || c == '\u{2029}'));
        assert_eq!(
            json_string("ascii only, \"quoted\""),
            serde_json::to_string("ascii only, \"quoted\"").unwrap()
        );
    }

    #[test]
    fn json_message_events_carry_no_raw_controls() {
        let mut out = Vec::new();
        message(&mut out, &Payload::text("\u{9b}2J\u{202e}\u{2028}"));
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.ends_with(
                "\"event\":\"message\",\"type\":\"text\",\"data\":\"\\u009b2J\\u202e\\u2028\"}\n"
            ),
            "{line}"
        );
    }

    /// The line without its time, which may differ by a millisecond.
    fn untimed(line: &[u8]) -> String {
        let line = String::from_utf8(line.to_vec()).unwrap();
        line[line.find("Z\"").unwrap()..].to_owned()
    }

    #[test]
    fn the_message_fast_path_writes_what_the_schema_does() {
        for payload in [
            Payload::text("a \"b\"\n\u{9b}"),
            Payload::text(""),
            Payload::Binary(bytes::Bytes::from_static(b"\x00\xffhi")),
            Payload::Binary(bytes::Bytes::new()),
        ] {
            let mut fast = Vec::new();
            message(&mut fast, &payload);
            let mut schema = Vec::new();
            event(&mut schema, JsonEvent::Message(Message::of(&payload)));
            assert_eq!(untimed(&fast), untimed(&schema));
        }
        let mut out = Vec::new();
        message(
            &mut out,
            &Payload::Binary(bytes::Bytes::from_static(b"\x00\xffhi")),
        );
        assert!(untimed(&out).ends_with("\"type\":\"binary\",\"data\":\"AP9oaQ==\"}\n"));
    }

    #[test]
    fn lines_print_as_they_always_have() {
        let t = "2026-11-21T14:28:32.590Z";
        let cases = [
            (
                JsonEvent::Connecting(Connecting { attempt: 2 }),
                r#""connecting","attempt":2}"#,
            ),
            (
                JsonEvent::Connected(Connected {
                    url: "wss://h/p",
                    subprotocol: Some("chat"),
                    compression: None,
                    compressing: false,
                    attempt: 1,
                }),
                r#""connected","url":"wss://h/p","subprotocol":"chat","compression":null,"compressing":false,"attempt":1}"#,
            ),
            (
                JsonEvent::Pong(Pong {
                    rtt_ms: Some(Millis(Duration::from_nanos(1_234_567))),
                    heartbeat: true,
                }),
                r#""pong","rtt_ms":1.235,"heartbeat":true}"#,
            ),
            (
                JsonEvent::Pong(Pong {
                    rtt_ms: Some(Millis(Duration::from_secs(2))),
                    heartbeat: false,
                }),
                r#""pong","rtt_ms":2000.000,"heartbeat":false}"#,
            ),
            (
                JsonEvent::Pong(Pong {
                    rtt_ms: None,
                    heartbeat: false,
                }),
                r#""pong","rtt_ms":null,"heartbeat":false}"#,
            ),
            (
                JsonEvent::Ping(Ping {
                    data: Data::Binary(b"abcd"),
                }),
                r#""ping","data":"YWJjZA=="}"#,
            ),
            (
                JsonEvent::Sent(Sent {
                    kind: MessageType::Binary,
                    data: Data::Binary(b"\x00\xff"),
                    replay: true,
                }),
                r#""sent","type":"binary","data":"AP8=","replay":true}"#,
            ),
            (
                JsonEvent::Disconnected(Disconnected {
                    reason: "lost",
                    code: Some(1011),
                    will_retry: false,
                }),
                r#""disconnected","reason":"lost","code":1011,"will_retry":false}"#,
            ),
            (
                JsonEvent::Reconnecting(Reconnecting {
                    attempt: 3,
                    delay_ms: Duration::from_micros(1_500_900).as_millis(),
                    reason: "",
                }),
                r#""reconnecting","attempt":3,"delay_ms":1500,"reason":""}"#,
            ),
            (
                JsonEvent::Closed(Closed {
                    code: None,
                    reason: "bye",
                    by_server: true,
                }),
                r#""closed","code":null,"reason":"bye","by_server":true}"#,
            ),
            (
                JsonEvent::Warning(Warning { message: "x\u{7f}" }),
                r#""warning","message":"x\u007f"}"#,
            ),
            (
                JsonEvent::Error(ErrorEvent::of(&Error::Interrupted, None)),
                r#""error","kind":"interrupted","message":"interrupted","exit_code":130,"unsent":0}"#,
            ),
        ];
        for (event, want) in cases {
            assert_eq!(at(t, event), format!(r#"{{"time":"{t}","event":{want}"#));
        }
    }

    #[test]
    fn step_lines_cut_what_matched() {
        let long = "é".repeat(MATCHED_MAX + 10);
        let step = Step {
            step: 1,
            of: 1,
            line: Some(4),
            action: "expect",
            text: "expect é",
            status: StepStatus::Failed,
            duration_ms: Millis(Duration::ZERO),
            matched: Some(&long),
            matched_bytes: long.len(),
            rtt_ms: None,
            code: Some(1000),
            reason: Some("r"),
        };
        let line = at("2026-11-21T14:28:32.590Z", JsonEvent::Step(step));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value["matched"].as_str().unwrap().chars().count(),
            MATCHED_MAX
        );
        assert!(
            line.contains(r#""status":"failed","duration_ms":0.000,"#),
            "{line}"
        );
    }
}
