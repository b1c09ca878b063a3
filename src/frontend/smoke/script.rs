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

use std::collections::HashSet;

use bytes::Bytes;

use crate::matcher::{Matcher, Source};
use crate::rfc6455::{self, CLOSE_REASON_MAX, CONTROL_PAYLOAD_MAX};
use crate::session::Payload;
use crate::supervisor::replies::{Replies, ReplyKind, ReplySpec};
use crate::template::{self, Template};
use crate::values::{self, HexError};

/// How the environment is read (`{{env.NAME}}`): passed in, so tests need
/// no process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The keywords, in the order the format's documentation lists them.
pub const KEYWORDS: &[&str] = &[
    "send",
    "send-binary",
    "expect",
    "expect-text",
    "expect-json",
    "expect-binary",
    "expect-any-order",
    "end",
    "wait",
    "ping",
    "close",
    "expect-close",
    "reply",
    "reply-text",
    "reply-json",
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
    /// A text message made from values captured by earlier steps.
    SendTemplate(Template),
    /// Wait for a received message that matches.
    Expect(Expectation),
    /// Wait for a message for each of these `expect` steps, in any order
    /// (an `expect-any-order` … `end` block); a message meets at most one.
    ExpectAnyOrder(Vec<Step>),
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
    pub matcher: Matcher,
    /// Only binary messages can match (`expect-binary`).
    pub binary_only: bool,
    /// Values the matched message gives later templates.
    pub captures: Vec<Capture>,
}

/// `capture NAME=SOURCE`: a regex group or a jq filter.
#[derive(Debug, Clone)]
pub struct Capture {
    pub name: String,
    pub source: Source,
}

/// Which expect step (or flag) an expectation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectKind {
    Regex,
    Text,
    Json,
    Binary,
}

impl Expectation {
    /// Whether a message of this kind can match at all: `expect-binary`
    /// only binary ones, a jq filter only text (a binary message's hex
    /// form may read as a JSON number).
    pub fn eligible(&self, binary: bool) -> bool {
        match self.matcher {
            _ if self.binary_only => binary,
            Matcher::Jq(_) => !binary,
            _ => true,
        }
    }
}

impl Action {
    /// The scenario-file keyword for this action (also used in `--json`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Action::Send(Payload::Text(_)) => "send",
            Action::Send(Payload::Binary(_)) => "send-binary",
            Action::SendTemplate(_) => "send",
            Action::Expect(e) if e.binary_only => "expect-binary",
            Action::Expect(Expectation {
                matcher: Matcher::Text(_),
                ..
            }) => "expect-text",
            Action::Expect(Expectation {
                matcher: Matcher::Jq(_),
                ..
            }) => "expect-json",
            Action::Expect(_) => "expect",
            Action::ExpectAnyOrder(_) => "expect-any-order",
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
            Action::Expect(_)
                | Action::ExpectAnyOrder(_)
                | Action::Ping(_)
                | Action::ExpectClose(_)
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

/// A step's expectation with its `capture` clauses: `expect-json .op ==
/// "welcome" capture session=.session capture n=.n`. The matcher is the text
/// up to the first ` capture NAME=`; each capture runs to the next one.
/// `keyword` is the step's (or flag's) name for error messages, and `text`
/// what a regex that reads as plain text should use instead.
pub fn expectation(kind: ExpectKind, arg: &str, text_flag: &str) -> Result<Expectation, String> {
    let (matcher_text, clauses) = split_captures(arg);
    let matcher = match kind {
        ExpectKind::Regex | ExpectKind::Binary => Matcher::regex(matcher_text, text_flag)?,
        ExpectKind::Text => Matcher::text(matcher_text),
        ExpectKind::Json => Matcher::jq(matcher_text)?,
    };
    let mut captures: Vec<Capture> = Vec::new();
    for (name, raw) in clauses {
        if captures.iter().any(|c| c.name == name) {
            return Err(format!("{name} is captured twice"));
        }
        let source =
            Source::parse(&matcher, raw).map_err(|why| format!("capture {name}: {why}"))?;
        captures.push(Capture {
            name: name.to_owned(),
            source,
        });
    }
    Ok(Expectation {
        matcher,
        binary_only: kind == ExpectKind::Binary,
        captures,
    })
}

/// The matcher's text and each `capture NAME=SOURCE` clause after it.
fn split_captures(arg: &str) -> (&str, Vec<(&str, &str)>) {
    // Where each clause starts (its whitespace) and where its source does.
    let mut clauses: Vec<(usize, &str, usize)> = Vec::new();
    let mut from = 0;
    while let Some(found) = arg[from..].find("capture") {
        let at = from + found;
        from = at + "capture".len();
        let before = &arg[..at];
        let after = &arg[from..];
        if !before.ends_with(char::is_whitespace) || !after.starts_with(char::is_whitespace) {
            continue;
        }
        let after = after.trim_start();
        let Some((name, _)) = after.split_once('=') else {
            continue;
        };
        if !template::is_name(name) {
            continue;
        }
        let start = before.trim_end().len();
        let source = arg.len() - after.len() + name.len() + 1;
        clauses.push((start, name, source));
    }
    let Some(first) = clauses.first() else {
        return (arg, Vec::new());
    };
    let matcher = &arg[..first.0];
    let parsed = clauses
        .iter()
        .enumerate()
        .map(|(i, (_, name, source))| {
            let end = clauses.get(i + 1).map_or(arg.len(), |next| next.0);
            (*name, arg[*source..end].trim())
        })
        .collect();
    (matcher, parsed)
}

/// Parses a scenario file into steps; `{{env.NAME}}` in a send step is
/// read from `env` now, and a `{{name}}` must be captured by an earlier step.
#[cfg(test)]
pub fn parse(text: &str, env: Env<'_>) -> Result<Vec<Step>, ScriptError> {
    parse_with_replies(text, env).map(|(steps, _)| steps)
}

/// As [`parse`], with the script's `reply` declarations (they are not steps:
/// they answer every matching message, all the run long, wherever they are).
pub fn parse_with_replies(
    text: &str,
    env: Env<'_>,
) -> Result<(Vec<Step>, Vec<ReplySpec>), ScriptError> {
    let mut replies = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut captured: HashSet<String> = HashSet::new();
    // An open `expect-any-order` block: its line and its steps so far.
    let mut block: Option<(usize, Vec<Step>)> = None;
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
        if let Some(reply) = Replies::declaration(keyword, arg, env) {
            replies.push((line, keyword, reply.map_err(fail)?));
            continue;
        }
        match (keyword, &mut block) {
            ("expect-any-order", Some((opened, _))) => {
                return Err(fail(format!(
                    "expect-any-order blocks do not nest (one is open since line {opened})"
                )));
            }
            ("expect-any-order", None) => {
                if !arg.is_empty() {
                    return Err(fail(
                        "expect-any-order takes no argument: its expect steps follow, one a \
                         line, then end"
                            .into(),
                    ));
                }
                block = Some((line, Vec::new()));
                continue;
            }
            ("end", None) => {
                return Err(fail("end without an expect-any-order block to end".into()));
            }
            ("end", Some((opened, members))) => {
                if members.is_empty() {
                    return Err(fail(format!(
                        "the expect-any-order block of line {opened} has no expect steps"
                    )));
                }
                let opened = *opened;
                let members = std::mem::take(members);
                block = None;
                steps.push(Step {
                    action: Action::ExpectAnyOrder(members),
                    line: Some(opened),
                    text: "expect-any-order".into(),
                });
                continue;
            }
            _ => {}
        }
        let action = parse_action(keyword, arg, env).map_err(fail)?;
        if let Some((opened, members)) = &mut block {
            let Action::Expect(e) = &action else {
                return Err(fail(format!(
                    "only expect steps can be in the expect-any-order block of line {opened} \
                     (end it first)"
                )));
            };
            captured.extend(e.captures.iter().map(|c| c.name.clone()));
            members.push(Step {
                action,
                line: Some(line),
                text: trimmed.to_owned(),
            });
            continue;
        }
        match &action {
            Action::SendTemplate(template) => {
                if let Some(name) = template.vars().find(|n| !captured.contains(*n)) {
                    return Err(fail(uncaptured(name)));
                }
            }
            Action::Expect(e) => captured.extend(e.captures.iter().map(|c| c.name.clone())),
            _ => {}
        }
        steps.push(Step {
            action,
            line: Some(line),
            text: trimmed.to_owned(),
        });
    }
    if let Some((opened, _)) = block {
        return Err(ScriptError {
            line: Some(opened),
            message: "this expect-any-order block has no end".into(),
        });
    }
    if steps.is_empty() {
        return Err(ScriptError {
            line: None,
            message: "the script has no steps".into(),
        });
    }
    // A reply answers all the run long: a step anywhere may capture its
    // values (until it has, the answer waits for them).
    let captured = self::captured(&steps);
    for (line, keyword, spec) in &replies {
        check_reply_captures(spec, Some(&captured)).map_err(|why| ScriptError {
            line: Some(*line),
            message: format!("{keyword}: {why}"),
        })?;
    }
    Ok((
        steps,
        replies.into_iter().map(|(_, _, spec)| spec).collect(),
    ))
}

/// The names the steps capture, in any order block too.
pub fn captured(steps: &[Step]) -> HashSet<String> {
    let mut names = HashSet::new();
    for step in steps {
        match &step.action {
            Action::Expect(e) => names.extend(e.captures.iter().map(|c| c.name.clone())),
            Action::ExpectAnyOrder(members) => names.extend(captured(members)),
            _ => {}
        }
    }
    names
}

/// Why a `{{name}}` in an `--on-connect` message or a reply cannot be
/// filled in: no step captures it (`script`: there is a scenario file).
pub fn never_captured(name: &str, script: bool) -> String {
    if script {
        format!(
            "{{{{{name}}}}} is not captured by any step of the script (capture it with e.g. \
             expect-json FILTER capture {name}=.{name}, or use {{{{env.{name}}}}})"
        )
    } else {
        format!(
            "{{{{{name}}}}} is a captured value, and only a --script's steps capture values \
             (e.g. expect-json FILTER capture {name}=.{name}); or use {{{{env.{name}}}}}"
        )
    }
}

/// A reply's captured `{{name}}`s are captured by a step of the script
/// (`captured`, `None` without one), and none is also a group of its regex:
/// `{{id}}` must say which it means.
pub fn check_reply_captures(
    spec: &ReplySpec,
    captured: Option<&HashSet<String>>,
) -> Result<(), String> {
    if let Some(name) = spec
        .groups
        .iter()
        .find(|name| captured.is_some_and(|c| c.contains(*name)))
    {
        return Err(format!(
            "{{{{{name}}}}} is both a group of the regex and a value the script captures; \
             rename one"
        ));
    }
    match spec
        .captured
        .iter()
        .find(|name| !captured.is_some_and(|c| c.contains(*name)))
    {
        Some(name) if spec.kind == ReplyKind::Regex => Err(format!(
            "the regex has no group named {name:?}, and {}",
            never_captured(name, captured.is_some())
        )),
        Some(name) => Err(never_captured(name, captured.is_some())),
        None => Ok(()),
    }
}

/// Why a template cannot be sent: nothing before it captures `name`.
pub fn uncaptured(name: &str) -> String {
    format!(
        "{{{{{name}}}}} is not captured by an earlier step \
         (capture it with e.g. expect-json FILTER capture {name}=.{name}, or use {{{{env.{name}}}}})"
    )
}

/// A text message as a send step says it: fixed, or a template.
pub fn send_action(raw: &str, env: Env<'_>) -> Result<Action, String> {
    let template = Template::parse(raw, env)?;
    Ok(match template.fixed() {
        Some(text) => Action::Send(Payload::text(text)),
        None => Action::SendTemplate(template),
    })
}

fn parse_action(keyword: &str, arg: &str, env: Env<'_>) -> Result<Action, String> {
    let required = |what: &str| {
        if arg.is_empty() {
            Err(format!("{keyword} needs {what}"))
        } else {
            Ok(arg)
        }
    };
    Ok(match keyword {
        "send" => send_action(required("a message")?, env)?,
        "send-binary" => Action::Send(Payload::Binary(parse_hex(required(
            "the message in hex, e.g. send-binary 00ff 1a2b",
        )?)?)),
        "expect" => Action::Expect(expectation(
            ExpectKind::Regex,
            required("a regex")?,
            "expect-text",
        )?),
        "expect-text" => Action::Expect(expectation(
            ExpectKind::Text,
            required("the text to look for")?,
            "expect-text",
        )?),
        "expect-json" => Action::Expect(expectation(
            ExpectKind::Json,
            required("a jq filter, e.g. expect-json .type == \"pong\"")?,
            "expect-text",
        )?),
        "expect-binary" => Action::Expect(expectation(
            ExpectKind::Binary,
            required("a regex")?,
            "expect-text",
        )?),
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

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_plain(text: &str) -> Result<Vec<Step>, ScriptError> {
        parse(text, &no_env)
    }

    fn error(text: &str) -> ScriptError {
        parse_plain(text).expect_err("the script should be rejected")
    }

    #[test]
    fn every_step_parses_with_its_line() {
        let steps = parse_plain(
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
                assert!(e.matcher.matches("{\"op\":\"pong\",\"t\":1}").is_some());
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
        let steps = parse_plain("  send   a  #not a comment \r\nclose\r\n").unwrap();
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
            let result = parse_plain(&format!("close {code}\n"));
            match result {
                Ok(steps) => {
                    assert!(crate::rfc6455::is_valid_close_code(code), "{code}");
                    assert!(matches!(steps[0].action, Action::Close { code: c, .. } if c == code));
                }
                Err(_) => assert!(!crate::rfc6455::is_valid_close_code(code), "{code}"),
            }
        }
        let longest = format!("close 4000 {}\n", "r".repeat(123));
        assert!(parse_plain(&longest).is_ok());
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
        let err = expectation(ExpectKind::Regex, "a(b", "expect-text").unwrap_err();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains("unclosed group"), "{err}");
    }

    #[test]
    fn expect_text_and_json_and_their_captures() {
        let env = |name: &str| (name == "TOKEN").then(|| "t0k".to_owned());
        let steps = parse(
            "send {\"auth\":\"{{env.TOKEN}}\"}\n\
             expect-json .op == \"welcome\" capture session=.session capture n=.n\n\
             expect-text 1+1=2\n\
             expect id=(\\d+) capture id=1\n\
             send {\"session\":\"{{session}}\",\"id\":{{id}}}\n",
            &env,
        )
        .unwrap();
        let keywords: Vec<_> = steps.iter().map(|s| s.action.keyword()).collect();
        assert_eq!(
            keywords,
            ["send", "expect-json", "expect-text", "expect", "send"]
        );
        assert!(
            matches!(&steps[0].action, Action::Send(p) if *p == Payload::text("{\"auth\":\"t0k\"}"))
        );
        // The step's text is the script's: the secret is not in it.
        assert_eq!(steps[0].text, "send {\"auth\":\"{{env.TOKEN}}\"}");
        let Action::Expect(e) = &steps[1].action else {
            panic!()
        };
        let names: Vec<_> = e.captures.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["session", "n"]);
        let m = e
            .matcher
            .matches(r#"{"op":"welcome","session":"abc","n":3}"#)
            .unwrap();
        assert_eq!(m.capture(&e.captures[0].source).as_deref(), Some("abc"));
        assert_eq!(m.capture(&e.captures[1].source).as_deref(), Some("3"));
        let Action::Expect(e) = &steps[2].action else {
            panic!()
        };
        assert!(e.matcher.matches("1+1=2").is_some());
        let Action::SendTemplate(t) = &steps[4].action else {
            panic!("{:?}", steps[4].action)
        };
        assert_eq!(t.vars().collect::<Vec<_>>(), ["session", "id"]);
    }

    #[test]
    fn template_and_matcher_mistakes_name_their_line() {
        let cases = [
            (
                "send {{session}}\n",
                1,
                "{{session}} is not captured by an earlier step",
            ),
            (
                "expect-json .ok\nsend {{env.NOT_SET_HERE}}\n",
                2,
                "{{env.NOT_SET_HERE}}: the environment variable NOT_SET_HERE is not set",
            ),
            (
                "expect {\"sum\": 5}\n",
                1,
                "repetition operator missing expression (to match it as plain text, use expect-text)",
            ),
            (
                "expect-json .sum ==\n",
                1,
                "\".sum ==\" is not a valid jq filter: expected term at the end",
            ),
            ("expect-json\n", 1, "expect-json needs a jq filter"),
            (
                "expect-text x capture a=1\n",
                1,
                "capture a: a fixed string has nothing to capture",
            ),
            (
                "expect (x) capture a=2\n",
                1,
                "capture a: the regex has no group 2 (it has 1)",
            ),
            (
                "expect-json .a capture a=.a capture a=.b\n",
                1,
                "a is captured twice",
            ),
            (
                "expect-json .a capture a=.[\n",
                1,
                "capture a: \".[\" is not a valid jq filter",
            ),
        ];
        for (text, line, needle) in cases {
            let err = error(text);
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert!(err.message.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_word_capture_alone_is_part_of_the_matcher() {
        let steps = parse_plain(
            "expect-text capture this\nexpect-json .a | capture(\"(?<x>b)\") | .x == \"b\"\n",
        )
        .unwrap();
        let Action::Expect(e) = &steps[0].action else {
            panic!()
        };
        assert!(e.captures.is_empty());
        assert!(e.matcher.matches("please capture this").is_some());
        let Action::Expect(e) = &steps[1].action else {
            panic!()
        };
        assert!(e.matcher.matches(r#"{"a":"abc"}"#).is_some());
    }

    #[test]
    fn an_any_order_block_is_one_step_holding_its_expectations() {
        let steps = parse_plain(
            "send a\nexpect-any-order\n  expect x\n\n  expect-json .id capture id=.id\nend\nsend {{id}}\n",
        )
        .unwrap();
        let keywords: Vec<_> = steps.iter().map(|s| s.action.keyword()).collect();
        assert_eq!(keywords, ["send", "expect-any-order", "send"]);
        assert_eq!(steps[1].line, Some(2));
        let Action::ExpectAnyOrder(members) = &steps[1].action else {
            panic!()
        };
        let lines: Vec<_> = members
            .iter()
            .map(|m| (m.line.unwrap(), m.text.as_str()))
            .collect();
        assert_eq!(
            lines,
            [(3, "expect x"), (5, "expect-json .id capture id=.id")]
        );
        assert!(steps[1].action.is_check());
    }
}
