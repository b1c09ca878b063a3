//! What a typed line asks for. Parsing is pure so that every slash command,
//! and every way of getting one wrong, is unit-tested without a terminal.

use base64::Engine;
use bytes::Bytes;

use crate::rfc6455::{self, CLOSE_REASON_MAX, CONTROL_PAYLOAD_MAX};
use crate::values::HexError;

/// The slash commands, their arguments and what they do: `/help` and tab
/// completion are built from this table.
pub const COMMANDS: &[(&str, &str, &str)] = &[
    ("/help", "", "list the commands and keys"),
    ("/ping", "[PAYLOAD]", "send a Ping and print the round trip"),
    (
        "/close",
        "[CODE [REASON]]",
        "close with CODE (default 1000) and REASON, then exit",
    ),
    ("/reconnect", "", "drop the connection and dial again now"),
    (
        "/status",
        "",
        "state, URL, uptime, reconnects, round trips, queued messages",
    ),
    ("/hex", "HEX", "send a binary message, e.g. /hex 00ff"),
    ("/b64", "BASE64", "send a binary message, e.g. /b64 AP8="),
    ("/quit", "", "close with 1000 and exit (as Ctrl-D)"),
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A message to send: text, or binary from `/hex` and `/b64`.
    Text(String),
    Binary(Bytes),
    Ping(Bytes),
    Close {
        code: u16,
        reason: String,
    },
    Reconnect,
    Status,
    Help,
    Quit,
    /// An empty line: nothing to do.
    Nothing,
    /// A mistake: the one-line hint to show. Nothing is sent.
    Usage(String),
}

impl Input {
    /// Whether the session ends after this, so the editor stops reading.
    pub fn ends_session(&self) -> bool {
        matches!(self, Input::Close { .. } | Input::Quit)
    }
}

/// Parses one typed line. A line that does not start with `/` is a text
/// message as typed; `//` sends a line that starts with a literal `/`.
pub fn parse(line: &str) -> Input {
    if line.is_empty() {
        return Input::Nothing;
    }
    if let Some(rest) = line.strip_prefix("//") {
        return Input::Text(format!("/{rest}"));
    }
    if !line.starts_with('/') {
        return Input::Text(line.to_owned());
    }
    let (name, args) = match line.split_once(char::is_whitespace) {
        Some((name, args)) => (name, args.trim()),
        None => (line, ""),
    };
    match name {
        "/help" | "/?" => no_args(name, args, Input::Help),
        "/ping" => ping(args),
        "/close" => close(args),
        "/reconnect" => no_args(name, args, Input::Reconnect),
        "/status" => no_args(name, args, Input::Status),
        "/hex" => hex(args),
        "/b64" => b64(args),
        "/quit" | "/exit" => no_args(name, args, Input::Quit),
        _ => Input::Usage(format!(
            "unknown command {name}; /help lists the commands, and // sends a line starting with /"
        )),
    }
}

/// A Ping's payload is at most 125 bytes (RFC 6455 5.5).
fn ping(payload: &str) -> Input {
    if payload.len() > CONTROL_PAYLOAD_MAX {
        return Input::Usage(format!(
            "a ping payload is at most {CONTROL_PAYLOAD_MAX} bytes, not {}; {}",
            payload.len(),
            usage("/ping")
        ));
    }
    Input::Ping(Bytes::copy_from_slice(payload.as_bytes()))
}

/// The usage line of a command, e.g. `usage: /close [CODE [REASON]]`.
fn usage(name: &str) -> String {
    let args = COMMANDS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("", |(_, args, _)| args);
    if args.is_empty() {
        format!("usage: {name}")
    } else {
        format!("usage: {name} {args}")
    }
}

fn no_args(name: &str, args: &str, input: Input) -> Input {
    if args.is_empty() {
        input
    } else {
        Input::Usage(format!("{name} takes no arguments; {}", usage(name)))
    }
}

fn close(args: &str) -> Input {
    if args.is_empty() {
        return Input::Close {
            code: 1000,
            reason: String::new(),
        };
    }
    let (code, reason) = match args.split_once(char::is_whitespace) {
        Some((code, reason)) => (code, reason.trim()),
        None => (args, ""),
    };
    let Some(code) = code
        .parse::<u16>()
        .ok()
        .filter(|&c| rfc6455::is_valid_close_code(c))
    else {
        return Input::Usage(format!(
            "{code:?} is not a close code a client may send ({}); {}",
            rfc6455::VALID_CLOSE_CODES,
            usage("/close")
        ));
    };
    if reason.len() > CLOSE_REASON_MAX {
        return Input::Usage(format!(
            "the reason is {} bytes; a Close frame holds at most {CLOSE_REASON_MAX}",
            reason.len()
        ));
    }
    Input::Close {
        code,
        reason: reason.to_owned(),
    }
}

fn hex(args: &str) -> Input {
    let digits: String = args.chars().filter(|c| !c.is_whitespace()).collect();
    let digits = digits.strip_prefix("0x").unwrap_or(&digits);
    if digits.is_empty() {
        return Input::Usage(usage("/hex"));
    }
    match crate::values::hex_value(digits) {
        Ok(bytes) => Input::Binary(Bytes::from(bytes)),
        Err(HexError::NotADigit(bad)) => {
            Input::Usage(format!("{bad:?} is not a hex digit; {}", usage("/hex")))
        }
        Err(HexError::OddDigits(n)) => Input::Usage(format!(
            "{n} hex digits do not make whole bytes; {}",
            usage("/hex")
        )),
    }
}

fn b64(args: &str) -> Input {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    // Padding is optional: people paste base64 from many places.
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text: String = args.chars().filter(|c| !c.is_whitespace()).collect();
    if text.is_empty() {
        return Input::Usage(usage("/b64"));
    }
    match LENIENT.decode(&text) {
        Ok(bytes) => Input::Binary(Bytes::from(bytes)),
        Err(err) => Input::Usage(format!("not base64: {err}; {}", usage("/b64"))),
    }
}

/// Command names that complete `prefix` (a line that is a `/word` so far).
pub fn complete(prefix: &str) -> Vec<&'static str> {
    if !prefix.starts_with('/') || prefix.contains(char::is_whitespace) {
        return Vec::new();
    }
    COMMANDS
        .iter()
        .map(|(name, _, _)| *name)
        .filter(|name| name.starts_with(prefix))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_of(line: &str) -> String {
        match parse(line) {
            Input::Usage(hint) => hint,
            other => panic!("{line:?} parsed as {other:?}"),
        }
    }

    #[test]
    fn plain_lines_are_text_as_typed() {
        assert_eq!(parse("hello"), Input::Text("hello".into()));
        assert_eq!(parse("  spaced  "), Input::Text("  spaced  ".into()));
        assert_eq!(parse("a/b"), Input::Text("a/b".into()));
        assert_eq!(parse(""), Input::Nothing);
    }

    #[test]
    fn a_double_slash_sends_a_literal_leading_slash() {
        assert_eq!(parse("//ping"), Input::Text("/ping".into()));
        assert_eq!(parse("//"), Input::Text("/".into()));
        assert_eq!(parse("///x"), Input::Text("//x".into()));
    }

    #[test]
    fn commands_without_arguments() {
        assert_eq!(parse("/help"), Input::Help);
        assert_eq!(parse("/reconnect"), Input::Reconnect);
        assert_eq!(parse("/status"), Input::Status);
        assert_eq!(parse("/quit"), Input::Quit);
        assert_eq!(parse("/quit  "), Input::Quit);
        assert_eq!(
            usage_of("/status now"),
            "/status takes no arguments; usage: /status"
        );
    }

    #[test]
    fn ping_takes_an_optional_payload() {
        assert_eq!(parse("/ping"), Input::Ping(Bytes::new()));
        let longest = format!("/ping {}", "p".repeat(125));
        assert_eq!(parse(&longest), Input::Ping(Bytes::from("p".repeat(125))));
        assert!(
            matches!(parse(&format!("{longest}p")), Input::Usage(u) if u.contains("at most 125 bytes"))
        );
        assert_eq!(
            parse("/ping abc 1"),
            Input::Ping(Bytes::from_static(b"abc 1"))
        );
    }

    #[test]
    fn close_takes_a_code_and_a_reason() {
        assert_eq!(
            parse("/close"),
            Input::Close {
                code: 1000,
                reason: String::new()
            }
        );
        assert_eq!(
            parse("/close 4000 bye"),
            Input::Close {
                code: 4000,
                reason: "bye".into()
            }
        );
        assert_eq!(
            parse("/close 1001 going away now"),
            Input::Close {
                code: 1001,
                reason: "going away now".into()
            }
        );
        assert!(parse("/close").ends_session());
    }

    #[test]
    fn close_refuses_codes_a_client_may_not_send_and_long_reasons() {
        for bad in [
            "/close 1004",
            "/close 1005",
            "/close 1006",
            "/close 1014",
            "/close 1015",
            "/close 2000",
            "/close 5000",
            "/close x",
        ] {
            let hint = usage_of(bad);
            assert!(hint.ends_with("usage: /close [CODE [REASON]]"), "{hint}");
        }
        for code in 0..=u16::MAX {
            let sent = matches!(parse(&format!("/close {code}")), Input::Close { code: c, .. } if c == code);
            assert_eq!(sent, rfc6455::is_valid_close_code(code), "{code}");
        }
        assert_eq!(
            usage_of("/close 1014"),
            "\"1014\" is not a close code a client may send \
             (1000-1003, 1007-1013 or 3000-4999); usage: /close [CODE [REASON]]"
        );
        let long = format!("/close 4000 {}", "r".repeat(124));
        assert_eq!(
            usage_of(&long),
            "the reason is 124 bytes; a Close frame holds at most 123"
        );
    }

    #[test]
    fn hex_sends_bytes() {
        assert_eq!(
            parse("/hex 00ff"),
            Input::Binary(Bytes::from_static(&[0, 255]))
        );
        assert_eq!(
            parse("/hex 0x00 FF 10"),
            Input::Binary(Bytes::from_static(&[0, 255, 16]))
        );
        assert_eq!(usage_of("/hex"), "usage: /hex HEX");
        assert_eq!(
            usage_of("/hex 0g"),
            "'g' is not a hex digit; usage: /hex HEX"
        );
        assert_eq!(
            usage_of("/hex abc"),
            "3 hex digits do not make whole bytes; usage: /hex HEX"
        );
    }

    #[test]
    fn b64_sends_bytes_with_or_without_padding() {
        assert_eq!(
            parse("/b64 AP8="),
            Input::Binary(Bytes::from_static(&[0, 255]))
        );
        assert_eq!(
            parse("/b64 AP8"),
            Input::Binary(Bytes::from_static(&[0, 255]))
        );
        assert_eq!(usage_of("/b64"), "usage: /b64 BASE64");
        assert!(usage_of("/b64 !!").starts_with("not base64: "));
    }

    #[test]
    fn unknown_commands_say_how_to_send_a_slash() {
        let hint = usage_of("/frobnicate now");
        assert!(hint.starts_with("unknown command /frobnicate;"), "{hint}");
        assert!(hint.contains("//"), "{hint}");
    }

    #[test]
    fn completion_offers_matching_commands() {
        assert_eq!(complete("/re"), ["/reconnect"]);
        assert_eq!(
            complete("/"),
            COMMANDS.iter().map(|c| c.0).collect::<Vec<_>>()
        );
        assert!(complete("/close ").is_empty());
        assert!(complete("text").is_empty());
    }
}
