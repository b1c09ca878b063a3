//! `--reply`, `--reply-text`, `--reply-json`: answers the server asks for
//! (an application ping wanting its pong), written by the supervisor as soon
//! as the message is read, on every connection and in every mode, ahead of
//! anything queued, and never replayed (an answer belongs to its connection).
//!
//! RESPONSE is a template over the matched message: `{{.id}}` (a jq filter,
//! for `--reply-json`), `{{1}}` or `{{name}}` (a regex group, for `--reply`),
//! `{{env.NAME}}` (read once, at start).

use crate::matcher::{Match, Matcher, Source};

/// A reply as the command line gave it; compiled where it is used, since a
/// compiled jq filter cannot cross threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplySpec {
    pub kind: ReplyKind,
    pub matcher: String,
    pub response: String,
    /// The `{{env.NAME}}` values RESPONSE uses, read once at start.
    pub env: Vec<(String, String)>,
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
    Capture(Source),
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
        Replies::compile(std::slice::from_ref(&spec), &recording)?;
        spec.env = used.into_inner();
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
        let spec = ReplySpec {
            kind,
            matcher: matcher.trim().to_owned(),
            response: response.trim().to_owned(),
            env: Vec::new(),
        };
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

    /// The answer to a received text message, if one of the replies matches.
    pub fn answer(&self, message: &str) -> Option<String> {
        self.replies.iter().find_map(|reply| {
            let found = reply.matcher.matches(message)?;
            Some(render(&reply.response, &found))
        })
    }
}

fn render(parts: &[Part], found: &Match<'_>) -> String {
    let mut out = String::new();
    for part in parts {
        match part {
            Part::Text(text) => out.push_str(text),
            Part::Capture(source) => out.push_str(&found.capture(source).unwrap_or_default()),
        }
    }
    out
}

/// `{{...}}` in RESPONSE: `env.NAME`, else a capture from the matched message
/// (a jq filter starting with `.` for a jq matcher, a group number or name for
/// a regex); any other `{{` is text, so JSON needs no escaping.
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
            Matcher::Regex(_)
                if inner.chars().all(|c| c.is_ascii_digit()) || crate::template::is_name(inner) =>
            {
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
        let spec = ReplySpec {
            kind,
            matcher: matcher.into(),
            response: response.into(),
            env: Vec::new(),
        };
        Replies::compile(&[spec], &|name| (name == "TOKEN").then(|| "t0k".into())).unwrap()
    }

    #[test]
    fn jq_paths_fill_the_response() {
        let r = replies(
            ReplyKind::Json,
            r#".type == "ping""#,
            r#"{"type":"pong","id":{{.id}},"who":"{{env.TOKEN}}"}"#,
        );
        assert_eq!(
            r.answer(r#"{"type":"ping","id":7}"#).as_deref(),
            Some(r#"{"type":"pong","id":7,"who":"t0k"}"#)
        );
        assert_eq!(r.answer(r#"{"type":"data","id":7}"#), None);
        assert_eq!(r.answer("not json"), None);
        // A string is inserted as its contents; tojson keeps the quotes.
        let r = replies(
            ReplyKind::Json,
            ".id",
            r#"{"id":{{.id | tojson}},"raw":"{{.id}}"}"#,
        );
        assert_eq!(
            r.answer(r#"{"id":"a"}"#).as_deref(),
            Some(r#"{"id":"a","raw":"a"}"#)
        );
    }

    #[test]
    fn regex_groups_fill_the_response() {
        let r = replies(ReplyKind::Regex, r"^PING (?<n>\d+)$", "PONG {{1}} {{n}}");
        assert_eq!(r.answer("PING 12").as_deref(), Some("PONG 12 12"));
        assert_eq!(r.answer("PING x"), None);
        let r = replies(ReplyKind::Text, "hello", "{{1}} {{.id}} {{x");
        assert_eq!(r.answer("oh hello").as_deref(), Some("{{1}} {{.id}} {{x"));
    }

    #[test]
    fn bad_replies_name_their_flag() {
        let compile = |kind, matcher: &str, response: &str| {
            Replies::compile(
                &[ReplySpec {
                    kind,
                    matcher: matcher.into(),
                    response: response.into(),
                    env: Vec::new(),
                }],
                &|_| None,
            )
            .unwrap_err()
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
