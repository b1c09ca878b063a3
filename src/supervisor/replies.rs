//! `--reply`, `--reply-text`, `--reply-json`: answers the server asks for
//! (an application ping wanting its pong), written by the supervisor as soon
//! as the message is read, on every connection and in every mode, ahead of
//! anything queued, and never replayed (an answer belongs to its connection).
//!
//! RESPONSE is a template over the matched message: `{{.id}}` (a jq filter,
//! for `--reply-json`), `{{1}}` or `{{name}}` (a regex group, for `--reply`),
//! `{{env.NAME}}` (read once, at start), and any other `{{name}}` a value a
//! scenario step captured (read when the answer is made). A message that
//! arrives before that step has matched [`Waiting`]s for it on its connection:
//! the welcome that carries a session id and the ping that needs it can come
//! in one read, before the smoke runner has seen the welcome.

use std::collections::VecDeque;

use crate::matcher::{GroupRef, Match, Matcher, Source};
use crate::template::Captured;

/// A reply as the command line gave it; compiled where it is used, since a
/// compiled jq filter cannot cross threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplySpec {
    pub kind: ReplyKind,
    pub matcher: String,
    pub response: String,
    /// The `{{env.NAME}}` values RESPONSE uses, read once at start.
    pub env: Vec<(String, String)>,
    /// The captured values RESPONSE uses (`{{name}}`), and the named regex
    /// groups: config checks that a step captures each of the first, and
    /// that none is also the second.
    pub captured: Vec<String>,
    pub groups: Vec<String>,
}

impl ReplySpec {
    pub fn new(kind: ReplyKind, matcher: &str, response: &str) -> ReplySpec {
        ReplySpec {
            kind,
            matcher: matcher.to_owned(),
            response: response.to_owned(),
            env: Vec::new(),
            captured: Vec::new(),
            groups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Regex,
    Text,
    Json,
}

impl ReplyKind {
    pub fn flag(self) -> &'static str {
        match self {
            ReplyKind::Regex => "--reply",
            ReplyKind::Text => "--reply-text",
            ReplyKind::Json => "--reply-json",
        }
    }
}

#[derive(Debug)]
enum Part {
    Text(String),
    /// From the matched message.
    Capture(Source),
    /// A value a scenario step captured.
    Captured(String),
}

#[derive(Debug)]
struct Reply {
    matcher: Matcher,
    response: Vec<Part>,
}

/// The compiled replies, the first that matches answers.
#[derive(Debug, Default)]
pub struct Replies {
    replies: Vec<Reply>,
}

impl Replies {
    /// Compiles the specs; the error names the flag and what is wrong.
    pub fn compile(
        specs: &[ReplySpec],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Replies, String> {
        let replies = specs
            .iter()
            .map(|spec| {
                let flag = spec.kind.flag();
                let matcher = match spec.kind {
                    ReplyKind::Regex => Matcher::regex(&spec.matcher, "--reply-text"),
                    ReplyKind::Text => Ok(Matcher::text(&spec.matcher)),
                    ReplyKind::Json => Matcher::jq(&spec.matcher),
                }
                .map_err(|why| format!("{flag}: {why}"))?;
                let response = parse_response(&matcher, &spec.response, env)
                    .map_err(|why| format!("{flag}: {why}"))?;
                Ok(Reply { matcher, response })
            })
            .collect::<Result<_, String>>()?;
        Ok(Replies { replies })
    }

    /// Checks one spec by compiling it, keeping the environment variables it
    /// uses with it, so the supervisor's compile reads no environment.
    pub fn check(
        mut spec: ReplySpec,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ReplySpec, String> {
        let used = std::cell::RefCell::new(Vec::new());
        let recording = |name: &str| {
            let value = env(name)?;
            used.borrow_mut().push((name.to_owned(), value.clone()));
            Some(value)
        };
        let compiled = Replies::compile(std::slice::from_ref(&spec), &recording)?;
        spec.env = used.into_inner();
        for part in compiled.replies.iter().flat_map(|r| &r.response) {
            match part {
                Part::Captured(name) => spec.captured.push(name.clone()),
                Part::Capture(Source::Group(GroupRef::Name(name))) => {
                    spec.groups.push(name.clone());
                }
                _ => {}
            }
        }
        Ok(spec)
    }

    /// A scenario file's `reply MATCHER => RESPONSE` (or `reply-text`,
    /// `reply-json`): `None` when `keyword` is not one of them.
    pub fn declaration(
        keyword: &str,
        arg: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Result<ReplySpec, String>> {
        let kind = match keyword {
            "reply" => ReplyKind::Regex,
            "reply-text" => ReplyKind::Text,
            "reply-json" => ReplyKind::Json,
            _ => return None,
        };
        let Some((matcher, response)) = arg.split_once(" => ") else {
            return Some(Err(format!(
                "{keyword} needs MATCHER => RESPONSE, e.g. reply-json .type == \"ping\" => \
                 {{\"type\":\"pong\",\"id\":{{{{.id}}}}}}"
            )));
        };
        let spec = ReplySpec::new(kind, matcher.trim(), response.trim());
        // A scenario's errors name the line, not a flag.
        Some(Replies::check(spec, env).map_err(|err| {
            err.strip_prefix(kind.flag())
                .and_then(|rest| rest.strip_prefix(": "))
                .map_or_else(|| err.clone(), |rest| format!("{keyword}: {rest}"))
        }))
    }

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    /// Compiles specs checked already, with the environment they carry.
    pub fn from_specs(specs: &[ReplySpec]) -> Replies {
        let mut replies = Replies::default();
        for spec in specs {
            let env = |name: &str| {
                spec.env
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            match Replies::compile(std::slice::from_ref(spec), &env) {
                Ok(one) => replies.replies.extend(one.replies),
                Err(err) => unreachable!("replies are checked in config: {err}"),
            }
        }
        replies
    }

    /// The answer to a received text message, if one of the replies
    /// matches: `Err(name)` when it uses a value not captured yet.
    pub fn answer(&self, message: &str, captured: &Captured) -> Option<Result<String, String>> {
        self.replies.iter().find_map(|reply| {
            let found = reply.matcher.matches(message)?;
            Some(render(&reply.response, &found, captured))
        })
    }

    /// Whether one of them matches `message`.
    pub fn matches(&self, message: &str) -> bool {
        self.replies
            .iter()
            .any(|reply| reply.matcher.matches(message).is_some())
    }
}

/// How many messages may wait for a capture on one connection, and how many
/// bytes they may hold (a hostile server's huge pings must not pile up); past
/// that the oldest gets no answer.
const WAITING_MAX: usize = 64;
const WAITING_BYTES: usize = 1 << 20;

/// Received messages whose answer needs a value no step has captured yet, on
/// one connection: answered once it is, until the connection or our Close
/// ends the wait.
#[derive(Debug, Default)]
pub struct Waiting {
    messages: VecDeque<String>,
    bytes: usize,
    /// How many captures had been made when they were last tried.
    tried_at: usize,
}

impl Waiting {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// `message` waits; the oldest are given up if too many do.
    pub fn push(&mut self, message: String) {
        if message.len() > WAITING_BYTES {
            tracing::debug!(
                "not replying to {}: a message over {WAITING_BYTES} bytes does not wait for captures",
                crate::render::excerpt(&message, 60, message.len())
            );
            return;
        }
        while self.messages.len() == WAITING_MAX || self.bytes + message.len() > WAITING_BYTES {
            let Some(oldest) = self.messages.pop_front() else {
                break;
            };
            self.bytes -= oldest.len();
            tracing::debug!(
                "not replying to {}: newer messages wait for captures",
                crate::render::excerpt(&oldest, 60, oldest.len())
            );
        }
        self.bytes += message.len();
        self.messages.push_back(message);
    }

    /// The answers `captured` now allows, as (message, answer), oldest first;
    /// `captures` counts the captures made, so nothing is tried twice for the
    /// same values.
    pub fn answers(
        &mut self,
        replies: &Replies,
        captured: &Captured,
        captures: usize,
    ) -> Vec<(String, String)> {
        if self.messages.is_empty() || captures == self.tried_at {
            return Vec::new();
        }
        self.tried_at = captures;
        let mut answers = Vec::new();
        let mut bytes = self.bytes;
        self.messages.retain(|message| {
            let keep = match replies.answer(message, captured) {
                Some(Ok(answer)) => {
                    answers.push((message.clone(), answer));
                    false
                }
                Some(Err(_)) => true,
                None => false,
            };
            if !keep {
                bytes -= message.len();
            }
            keep
        });
        self.bytes = bytes;
        answers
    }

    /// Our Close is on its way: nothing may follow it.
    pub fn clear(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }
}

fn render(parts: &[Part], found: &Match<'_>, captured: &Captured) -> Result<String, String> {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Capture(source) => out.push_str(&found.capture(source).unwrap_or_default()),
            Part::Captured(name) => match captured.get(name) {
                Some(value) => out.push_str(&value),
                None => return Err(name.clone()),
            },
        }
    }
    Ok(out)
}

/// `{{...}}` in RESPONSE: `env.NAME`, else a capture from the matched message
/// (a jq filter starting with `.` for a jq matcher, a group number, or a
/// group's name, for a regex), else a name a step captures; any other `{{` is
/// text, so JSON needs no escaping.
fn parse_response(
    matcher: &Matcher,
    raw: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = raw;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some((inner, tail)) = after.split_once("}}") else {
            break;
        };
        let inner = inner.trim();
        let capture = match matcher {
            _ if inner.starts_with("env.") => None,
            Matcher::Jq(_) if inner.starts_with('.') => Some(inner),
            Matcher::Regex(_) if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit()) => {
                Some(inner)
            }
            Matcher::Regex(regex) if regex.capture_names().flatten().any(|n| n == inner) => {
                Some(inner)
            }
            _ => None,
        };
        if let Some(var) = inner.strip_prefix("env.")
            && crate::template::is_name(var)
        {
            text.push_str(&rest[..open]);
            match env(var) {
                Some(value) => text.push_str(&value),
                None => {
                    return Err(format!(
                        "{{{{env.{var}}}}}: the environment variable {var} is not set"
                    ));
                }
            }
        } else if let Some(capture) = capture {
            text.push_str(&rest[..open]);
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Capture(Source::parse(matcher, capture)?));
        } else if crate::template::is_name(inner) {
            text.push_str(&rest[..open]);
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Captured(inner.to_owned()));
        } else {
            text.push_str(&rest[..open + 2]);
            rest = after;
            continue;
        }
        rest = tail;
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(kind: ReplyKind, matcher: &str, response: &str) -> Replies {
        let spec = ReplySpec::new(kind, matcher, response);
        Replies::compile(&[spec], &|name| (name == "TOKEN").then(|| "t0k".into())).unwrap()
    }

    fn answer(r: &Replies, message: &str) -> Option<String> {
        r.answer(message, &Captured::default())
            .map(|a| a.expect("nothing captured is used"))
    }

    #[test]
    fn jq_paths_fill_the_response() {
        let r = replies(
            ReplyKind::Json,
            r#".type == "ping""#,
            r#"{"type":"pong","id":{{.id}},"who":"{{env.TOKEN}}"}"#,
        );
        assert_eq!(
            answer(&r, r#"{"type":"ping","id":7}"#).as_deref(),
            Some(r#"{"type":"pong","id":7,"who":"t0k"}"#)
        );
        assert_eq!(answer(&r, r#"{"type":"data","id":7}"#), None);
        assert_eq!(answer(&r, "not json"), None);
        // A string is inserted as its contents; tojson keeps the quotes.
        let r = replies(
            ReplyKind::Json,
            ".id",
            r#"{"id":{{.id | tojson}},"raw":"{{.id}}"}"#,
        );
        assert_eq!(
            answer(&r, r#"{"id":"a"}"#).as_deref(),
            Some(r#"{"id":"a","raw":"a"}"#)
        );
    }

    #[test]
    fn regex_groups_fill_the_response() {
        let r = replies(ReplyKind::Regex, r"^PING (?<n>\d+)$", "PONG {{1}} {{n}}");
        assert_eq!(answer(&r, "PING 12").as_deref(), Some("PONG 12 12"));
        assert_eq!(answer(&r, "PING x"), None);
        let r = replies(ReplyKind::Text, "hello", "{{1}} {{.id}} {{x {{}}");
        assert_eq!(
            answer(&r, "oh hello").as_deref(),
            Some("{{1}} {{.id}} {{x {{}}")
        );
    }

    #[test]
    fn other_names_are_captured_values_read_when_answering() {
        let spec = ReplySpec::new(
            ReplyKind::Regex,
            r"^PING (?<n>\d+)$",
            "PONG {{n}} {{session}}",
        );
        let spec = Replies::check(spec, &|_| None).unwrap();
        assert_eq!(spec.captured, ["session"]);
        assert_eq!(spec.groups, ["n"]);
        let r = Replies::from_specs(&[spec]);
        let captured = Captured::default();
        assert_eq!(r.answer("PING 1", &captured), Some(Err("session".into())));
        captured.set("session".into(), "s-1".into());
        assert_eq!(r.answer("PING 1", &captured), Some(Ok("PONG 1 s-1".into())));
        let r = replies(ReplyKind::Json, ".id", r#"{"id":{{.id}},"s":"{{ s }}"}"#);
        captured.set("s".into(), "x".into());
        assert_eq!(
            r.answer(r#"{"id":2}"#, &captured),
            Some(Ok(r#"{"id":2,"s":"x"}"#.into()))
        );
    }

    #[test]
    fn waiting_messages_are_answered_once_their_value_is_captured() {
        let spec = ReplySpec::new(ReplyKind::Regex, r"^PING (\d+)$", "PONG {{1}} {{s}}");
        let r = Replies::from_specs(&[Replies::check(spec, &|_| None).unwrap()]);
        let captured = Captured::default();
        let mut waiting = Waiting::default();
        for n in 0..WAITING_MAX + 2 {
            waiting.push(format!("PING {n}"));
        }
        assert!(
            waiting.answers(&r, &captured, 1).is_empty(),
            "nothing captured"
        );
        captured.set("s".into(), "x".into());
        assert!(
            waiting.answers(&r, &captured, 1).is_empty(),
            "tried already at that count"
        );
        let answers = waiting.answers(&r, &captured, 2);
        assert_eq!(answers.len(), WAITING_MAX, "the two oldest were given up");
        assert_eq!(answers[0], ("PING 2".into(), "PONG 2 x".into()));
        assert!(waiting.is_empty());
        assert_eq!(waiting.bytes, 0);

        // Bytes are bounded too: a big one pushes the older out, and one over
        // the bound never waits.
        waiting.push("PING 1".into());
        waiting.push(format!("PING {}", "9".repeat(WAITING_BYTES - 10)));
        assert_eq!(waiting.messages.len(), 1, "the small one made room");
        waiting.push(format!("PING {}", "9".repeat(WAITING_BYTES)));
        assert_eq!(waiting.messages.len(), 1, "too big to wait");
        waiting.clear();
        assert!(waiting.is_empty());
        assert_eq!(waiting.bytes, 0);
    }

    #[test]
    fn bad_replies_name_their_flag() {
        let compile = |kind, matcher: &str, response: &str| {
            Replies::compile(&[ReplySpec::new(kind, matcher, response)], &|_| None).unwrap_err()
        };
        assert_eq!(
            compile(ReplyKind::Regex, "a(", "x"),
            r#"--reply: "a(" is not a valid regex: unclosed group (to match it as plain text, use --reply-text)"#
        );
        assert_eq!(
            compile(ReplyKind::Regex, "a", "{{2}}"),
            "--reply: the regex has no group 2 (it has 0)"
        );
        assert_eq!(
            compile(ReplyKind::Text, "a", "{{env.NOPE}}"),
            "--reply-text: {{env.NOPE}}: the environment variable NOPE is not set"
        );
        assert!(
            compile(ReplyKind::Json, ".[", "x")
                .starts_with("--reply-json: \".[\" is not a valid jq filter")
        );
    }
}
