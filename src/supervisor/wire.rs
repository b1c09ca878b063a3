//! The frame trace (`-vv`): a line for every message-level frame tether
//! writes (`>`) or reads (`<`), with its opcode and length, as TRACE events
//! under the target `tether::frame` (`RUST_LOG=tether::frame=trace` shows
//! them alone). Control frames show their payload; data frames only at
//! `-vvv`.
//!
//! Whether to trace is decided once per connection, so with tracing off the
//! hot path tests a field and never formats.

use tokio_tungstenite::tungstenite::Message;

use crate::render::quoted;
use crate::rfc6455::CONTROL_PAYLOAD_MAX;

const TARGET: &str = "tether::frame";
/// Characters of text (or bytes of binary) a data frame's payload shows.
const DATA_SHOWN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    Off,
    Frames,
    /// Data frames' payloads too.
    Payloads,
}

/// Which way a frame went.
#[derive(Debug, Clone, Copy)]
pub enum Dir {
    Out,
    In,
}

impl Trace {
    /// Asks tracing's filter once, for a connection; `payloads` is `-vvv`.
    pub fn new(payloads: bool) -> Trace {
        if !tracing::enabled!(target: TARGET, tracing::Level::TRACE) {
            Trace::Off
        } else if payloads {
            Trace::Payloads
        } else {
            Trace::Frames
        }
    }

    #[inline]
    pub fn on(self) -> bool {
        self != Trace::Off
    }

    /// Traces a frame; `auto` marks one tungstenite wrote of its own (the
    /// Pong to a Ping, the answer to a Close).
    #[inline]
    pub fn frame(self, dir: Dir, message: &Message, auto: bool) {
        if self.on() {
            let line = line(dir, message, self == Trace::Payloads, auto);
            tracing::trace!(target: TARGET, "{line}");
        }
    }

    /// Traces a frame whose payload is a secret (`--on-connect-cmd`'s
    /// messages): its length, never its payload, even at `-vvv`.
    pub fn secret_frame(self, dir: Dir, message: &Message) {
        if self.on() {
            let line = line(dir, message, false, false);
            tracing::trace!(target: TARGET, "{line}");
        }
    }
}

/// `> text 17 bytes`, `< ping 4 bytes "abcd"`, `> close 1000 "bye"`.
fn line(dir: Dir, message: &Message, payloads: bool, auto: bool) -> String {
    let arrow = match dir {
        Dir::Out => '>',
        Dir::In => '<',
    };
    let (opcode, payload, binary, shown) = match message {
        Message::Text(text) => ("text", text.as_bytes(), false, payloads),
        Message::Binary(data) => ("binary", &data[..], true, payloads),
        Message::Ping(data) => ("ping", &data[..], false, true),
        Message::Pong(data) => ("pong", &data[..], false, true),
        Message::Frame(frame) => ("raw frame", frame.payload(), true, payloads),
        Message::Close(frame) => {
            let what = match frame {
                Some(frame) => format!(
                    "close {} {}",
                    u16::from(frame.code),
                    quoted(frame.reason.as_bytes(), false, CONTROL_PAYLOAD_MAX)
                ),
                None => "close (no status code)".to_owned(),
            };
            return with_auto(format!("{arrow} {what}"), auto);
        }
    };
    let n = payload.len();
    let mut line = format!("{arrow} {opcode} {n} byte{}", if n == 1 { "" } else { "s" });
    if shown && n > 0 {
        line.push(' ');
        line.push_str(&quoted(payload, binary, DATA_SHOWN));
    }
    with_auto(line, auto)
}

fn with_auto(line: String, auto: bool) -> String {
    if auto { line + " (auto)" } else { line }
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    #[test]
    fn frames_show_direction_opcode_length_and_control_payloads() {
        let cases = [
            (
                Dir::Out,
                Message::text("17 bytes of text!"),
                false,
                "> text 17 bytes",
            ),
            (
                Dir::In,
                Message::binary(vec![0u8; 65536]),
                false,
                "< binary 65536 bytes",
            ),
            (
                Dir::In,
                Message::Ping("abcd".into()),
                false,
                "< ping 4 bytes \"abcd\"",
            ),
            (
                Dir::Out,
                Message::Pong("abcd".into()),
                true,
                "> pong 4 bytes \"abcd\" (auto)",
            ),
            (
                Dir::In,
                Message::Pong(vec![0, 255].into()),
                false,
                "< pong 2 bytes 00ff",
            ),
            (
                Dir::Out,
                Message::Ping(Vec::new().into()),
                false,
                "> ping 0 bytes",
            ),
            (
                Dir::In,
                Message::Ping("\x1b]0;x\x07".into()),
                false,
                "< ping 6 bytes \"\\u{1b}]0;x\\u{7}\"",
            ),
            (
                Dir::Out,
                Message::Close(None),
                false,
                "> close (no status code)",
            ),
        ];
        for (dir, message, auto, want) in cases {
            assert_eq!(line(dir, &message, false, auto), want);
        }
        let bye = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }));
        assert_eq!(line(Dir::Out, &bye, false, false), "> close 1000 \"bye\"");
    }

    #[test]
    fn data_payloads_only_when_asked() {
        let text = Message::text("hi\n");
        assert_eq!(line(Dir::In, &text, false, false), "< text 3 bytes");
        assert_eq!(
            line(Dir::In, &text, true, false),
            "< text 3 bytes \"hi\\n\""
        );
        let binary = Message::binary(vec![1u8; 300]);
        let shown = line(Dir::Out, &binary, true, false);
        assert_eq!(
            shown,
            format!(
                "> binary 300 bytes {}... (300 bytes in all)",
                "01".repeat(256)
            )
        );
    }
}
