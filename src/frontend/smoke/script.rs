//! The steps of a smoke test, and the scenario-file format that spells them.
//!
//! A smoke run is a list of [`Step`]s, built either from `--send`/`--expect`
//! flags or from a `--script` file. The file has one step per line, a keyword
//! and then its argument taken literally to the end of the line, so JSON needs
//! no quoting and a change to a scenario reads well in a pull-request diff:
//!
//! ```text
//! # Subscribe, then check the heartbeat of the orders feed.
//! send {"op":"subscribe","channel":"orders"}
//! expect "subscribed"
//! ping
//! close 4001 done
//! expect-close 4001
//! ```
//!
//! Errors name the line, so `--script` failures point at the file.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use regex::Regex;

use crate::rfc6455::{self, CLOSE_REASON_MAX, CONTROL_PAYLOAD_MAX};
use crate::session::Payload;
use crate::values::{self, HexError};

/// The keywords, in the order the format's documentation lists them.
pub const KEYWORDS: &[&str] = &[
    "send",
    "send-binary",
    "expect",
    "expect-binary",
    "wait",
    "ping",
    "close",
    "expect-close",
];

#[derive(Debug, Clone)]
pub struct Step {
    pub action: Action,
    /// The 1-based line in the script; `None` for steps from flags.
    pub line: Option<usize>,
    /// The step as the user wrote it, for diagnostics and `--json`.
    pub text: String,
}

#[derive(Debug, Clone)]
pub enum Action {
    /// Queue a message; the step is done once it is written to the socket.
    Send(Payload),
    /// Wait for a received message that matches.
    Expect(Expectation),
    Wait(Duration),
    /// Send a Ping and wait for its Pong.
    Ping(Bytes),
    /// Close with this code; the step is done when the connection is.
    Close {
        code: u16,
        reason: String,
    },
    /// The server's close code: the one it closed with, or the one it
    /// answered our Close with. `None` accepts any code.
    ExpectClose(Option<u16>),
}

#[derive(Debug, Clone)]
pub struct Expectation {
    pub pattern: Regex,
    /// Only binary messages can match (`expect-binary`).
    pub binary_only: bool,
}

impl Action {
    /// The scenario-file keyword for this action (also used in `--json`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Action::Send(Payload::Text(_)) => "send",
            Action::Send(Payload::Binary(_)) => "send-binary",
            Action::Expect(e) if e.binary_only => "expect-binary",
            Action::Expect(_) => "expect",
            Action::Wait(_) => "wait",
            Action::Ping(_) => "ping",
            Action::Close { .. } => "close",
            Action::ExpectClose(_) => "expect-close",
        }
    }

    /// Whether the step checks the server's behaviour. A run with checks ends
    /// as soon as its last step is done; one without (sends only) lingers
    /// for replies as pipe mode does.
    pub fn is_check(&self) -> bool {
        matches!(
            self,
            Action::Expect(_) | Action::Ping(_) | Action::ExpectClose(_)
        )
    }
}

/// A mistake in a scenario file, at a line (`None`: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Compiles an expectation's regex; the error is one line for the user.
pub fn expectation(pattern: &str, binary_only: bool) -> Result<Expectation, String> {
    let pattern = Regex::new(pattern).map_err(|err| match err {
        regex::Error::Syntax(detail) => {
            // The regex crate's message is several lines; keep the last
            // ("error: ..."), which says what is wrong.
            let why = detail
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .trim_start_matches("error: ")
                .to_owned();
            format!("{pattern:?} is not a valid regex: {why}")
        }
        other => format!("{pattern:?} is not a usable regex: {other}"),
    })?;
    Ok(Expectation {
        pattern,
        binary_only,
    })
}

/// Parses a scenario file into steps.
pub fn parse(text: &str) -> Result<Vec<Step>, ScriptError> {
    let mut steps: Vec<Step> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fail = |message: String| ScriptError {
            line: Some(line),
            message,
        };
        if let Some(last) = steps.last() {
            match last.action {
                Action::ExpectClose(_) => {
                    return Err(fail(format!(
                        "nothing can follow expect-close (line {}): the connection is over",
                        last.line.unwrap_or(0)
                    )));
                }
                Action::Close { .. } if !trimmed.starts_with("expect-close") => {
                    return Err(fail(format!(
                        "only expect-close can follow close (line {})",
                        last.line.unwrap_or(0)
                    )));
                }
                _ => {}
            }
        }
        let (keyword, arg) = match trimmed.split_once(char::is_whitespace) {
            Some((keyword, arg)) => (keyword, arg.trim_start()),
            None => (trimmed, ""),
        };
        let action = parse_action(keyword, arg).map_err(fail)?;
        steps.push(Step {
            action,
            line: Some(line),
            text: trimmed.to_owned(),
        });
    }
    if steps.is_empty() {
        return Err(ScriptError {
            line: None,
            message: "the script has no steps".into(),
        });
    }
    Ok(steps)
}

fn parse_action(keyword: &str, arg: &str) -> Result<Action, String> {
    let required = |what: &str| {
        if arg.is_empty() {
            Err(format!("{keyword} needs {what}"))
        } else {
            Ok(arg)
        }
    };
    Ok(match keyword {
        "send" => Action::Send(Payload::text(required("a message")?)),
        "send-binary" => Action::Send(Payload::Binary(parse_hex(required(
            "the message in hex, e.g. send-binary 00ff 1a2b",
        )?)?)),
        "expect" => Action::Expect(expectation(required("a regex")?, false)?),
        "expect-binary" => Action::Expect(expectation(required("a regex")?, true)?),
        "wait" => Action::Wait(
            values::duration_value(required("a duration, e.g. wait 500ms")?)
                .ok_or_else(|| format!("{arg:?} is not a duration; use e.g. 500ms, 2s"))?,
        ),
        "ping" => {
            if arg.len() > CONTROL_PAYLOAD_MAX {
                return Err(format!(
                    "a ping payload holds at most {CONTROL_PAYLOAD_MAX} bytes, this one has {}",
                    arg.len()
                ));
            }
            Action::Ping(Bytes::copy_from_slice(arg.as_bytes()))
        }
        "close" => {
            let (code, reason) = match arg.split_once(char::is_whitespace) {
                Some((code, reason)) => (code, reason.trim_start()),
                None => (arg, ""),
            };
            let code = if code.is_empty() {
                rfc6455::NORMAL_CLOSURE
            } else {
                parse_code(code)?
            };
            if !rfc6455::is_valid_close_code(code) {
                return Err(format!(
                    "{code} cannot be sent as a close code; use {} (3000-4999 for your own)",
                    rfc6455::VALID_CLOSE_CODES
                ));
            }
            if reason.len() > CLOSE_REASON_MAX {
                return Err(format!(
                    "a close reason holds at most {CLOSE_REASON_MAX} bytes, this one has {}",
                    reason.len()
                ));
            }
            Action::Close {
                code,
                reason: reason.to_owned(),
            }
        }
        "expect-close" => Action::ExpectClose(if arg.is_empty() {
            None
        } else {
            Some(parse_code(arg)?)
        }),
        other => {
            return Err(format!(
                "unknown step {other:?}; the steps are {}",
                KEYWORDS.join(", ")
            ));
        }
    })
}

fn parse_code(raw: &str) -> Result<u16, String> {
    rfc6455::close_code_value(raw)
        .ok_or_else(|| format!("{raw:?} is not a close code (a number from 1000 to 4999)"))
}

fn parse_hex(raw: &str) -> Result<Bytes, String> {
    match values::hex_value(raw) {
        Ok(bytes) => Ok(Bytes::from(bytes)),
        Err(HexError::OddDigits(_)) => Err(format!("{raw:?} has an odd number of hex digits")),
        Err(HexError::NotADigit(_)) => Err(format!(
            "{raw:?} is not hex (digits 0-9, a-f, spaces allowed)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> ScriptError {
        parse(text).expect_err("the script should be rejected")
    }

    #[test]
    fn every_step_parses_with_its_line() {
        let steps = parse(
            "# a comment\n\
             send {\"op\": \"ping\"}\n\
             \n\
             send-binary 00ff 68 69\n\
             expect ^\\{\"op\":\"pong\"\n\
             expect-binary ^00ff\n\
             wait 250ms\n\
             ping\n\
             ping hello there\n\
             close 4001 all done\n\
             expect-close 4001\n",
        )
        .unwrap();
        let keywords: Vec<_> = steps.iter().map(|s| s.action.keyword()).collect();
        assert_eq!(
            keywords,
            [
                "send",
                "send-binary",
                "expect",
                "expect-binary",
                "wait",
                "ping",
                "ping",
                "close",
                "expect-close"
            ]
        );
        let lines: Vec<_> = steps.iter().map(|s| s.line.unwrap()).collect();
        assert_eq!(lines, [2, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(
            matches!(&steps[0].action, Action::Send(p) if *p == Payload::text("{\"op\": \"ping\"}"))
        );
        assert!(
            matches!(&steps[1].action, Action::Send(Payload::Binary(b)) if b.as_ref() == b"\x00\xffhi")
        );
        match &steps[2].action {
            Action::Expect(e) => {
                assert!(!e.binary_only);
                assert!(e.pattern.is_match("{\"op\":\"pong\",\"t\":1}"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(steps[4].action, Action::Wait(d) if d == Duration::from_millis(250)));
        assert!(matches!(&steps[5].action, Action::Ping(p) if p.is_empty()));
        assert!(matches!(&steps[6].action, Action::Ping(p) if p.as_ref() == b"hello there"));
        assert!(
            matches!(&steps[7].action, Action::Close { code: 4001, reason } if reason == "all done")
        );
        assert!(matches!(steps[8].action, Action::ExpectClose(Some(4001))));
        assert_eq!(steps[2].text, "expect ^\\{\"op\":\"pong\"");
    }

    #[test]
    fn arguments_are_literal_but_surrounding_space_and_crlf_go() {
        let steps = parse("  send   a  #not a comment \r\nclose\r\n").unwrap();
        assert!(
            matches!(&steps[0].action, Action::Send(p) if *p == Payload::text("a  #not a comment"))
        );
        assert!(
            matches!(&steps[1].action, Action::Close { code: 1000, reason } if reason.is_empty())
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        let cases = [
            ("send a\nsnd b\n", 2, "unknown step \"snd\""),
            ("send a\n\nexpect (unclosed\n", 3, "not a valid regex"),
            ("wait soon\n", 1, "not a duration"),
            ("wait\n", 1, "wait needs a duration"),
            ("send\n", 1, "send needs a message"),
            ("send-binary 0g\n", 1, "not hex"),
            ("send-binary abc\n", 1, "odd number"),
            ("close 1006\n", 1, "cannot be sent"),
            ("close 1014\n", 1, "use 1000-1003, 1007-1013 or 3000-4999"),
            ("close 2000 why\n", 1, "cannot be sent"),
            ("close nine\n", 1, "not a close code"),
            ("expect-close 99999\n", 1, "not a close code"),
            (
                "close\nsend late\n",
                2,
                "only expect-close can follow close (line 1)",
            ),
            (
                "expect-close\nexpect x\n",
                2,
                "nothing can follow expect-close",
            ),
        ];
        for (text, line, needle) in cases {
            let err = error(text);
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert!(err.message.contains(needle), "{text:?}: {err}");
        }
        let long = format!("ping {}\n", "x".repeat(126));
        assert!(error(&long).message.contains("at most 125 bytes"));
    }

    #[test]
    fn close_sends_every_valid_code_and_no_other() {
        for code in 0..=u16::MAX {
            let result = parse(&format!("close {code}\n"));
            match result {
                Ok(steps) => {
                    assert!(crate::rfc6455::is_valid_close_code(code), "{code}");
                    assert!(matches!(steps[0].action, Action::Close { code: c, .. } if c == code));
                }
                Err(_) => assert!(!crate::rfc6455::is_valid_close_code(code), "{code}"),
            }
        }
        let longest = format!("close 4000 {}\n", "r".repeat(123));
        assert!(parse(&longest).is_ok());
        let long = format!("close 4000 {}\n", "r".repeat(124));
        assert!(error(&long).message.contains("at most 123 bytes"));
    }

    #[test]
    fn an_empty_script_is_an_error() {
        let err = error("# nothing here\n\n");
        assert_eq!(err.line, None);
        assert_eq!(err.to_string(), "the script has no steps");
    }

    #[test]
    fn regex_errors_are_one_line() {
        let err = expectation("a(b", false).unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("unclosed group"), "{err}");
    }
}
