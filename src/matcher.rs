//! The one way tether matches a received message: a fixed string, a regex,
//! or a jq filter (through the jaq crates). Parsed once, from a flag or a
//! scenario step, and used by whatever waits for a message (smoke-test
//! expectations today); a match can yield captures for templates.

use std::fmt;
use std::sync::{Arc, OnceLock};

use jaq_core::load::{self, Arena, File, Loader};
use jaq_core::{Ctx, ValT, Vars, data, unwrap_valr};
use jaq_json::Val;
use regex::Regex;

use crate::jq_worker::{self, Stopped};

/// At most this many outputs of a filter are looked at: `repeat(.)` must
/// not hang the run. (A filter that never yields, or never stops building
/// one output, is stopped by `jq_worker`.)
const OUTPUTS_MAX: usize = 64;

/// What a message must be to match.
#[derive(Clone)]
pub enum Matcher {
    /// The message contains this string.
    Text(String),
    /// The regex matches somewhere in the message.
    Regex(Regex),
    /// The message is JSON and the filter yields a truthy value (neither
    /// `false` nor `null`).
    Jq(Jq),
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Text(text) => write!(f, "Text({text:?})"),
            Matcher::Regex(regex) => write!(f, "Regex({:?})", regex.as_str()),
            Matcher::Jq(jq) => write!(f, "Jq({:?})", jq.source),
        }
    }
}

/// A compiled jq filter and the text it was compiled from.
#[derive(Clone)]
pub struct Jq {
    source: String,
    // Arc: a compiled filter is not Clone, and steps are; the supervisor
    // task (Send) holds one for --confirm-key, and each evaluation on the
    // jq worker thread another.
    filter: Arc<jaq_core::Filter<data::JustLut<Val>>>,
    /// Set when an evaluation was stopped: the filter is not run again
    /// (it would stall its caller for the whole limit each time).
    stopped: Arc<OnceLock<Stopped>>,
}

/// A successful match: what captures are taken from.
pub enum Match<'m> {
    Text,
    Regex(regex::Captures<'m>),
    /// The message (JSON), for captures to run their filters on.
    Json(&'m str),
}

/// Where a capture's value comes from in the matched message.
#[derive(Clone, Debug)]
pub enum Source {
    /// A regex group, by number or name.
    Group(GroupRef),
    /// A jq filter run on the matched JSON message; its first output.
    Jq(Jq),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRef {
    Index(usize),
    Name(String),
}

impl fmt::Debug for Jq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Jq({:?})", self.source)
    }
}

impl Matcher {
    /// A fixed string.
    pub fn text(text: &str) -> Matcher {
        Matcher::Text(text.to_owned())
    }

    /// A regex; the error is one line, and suggests `text_flag` when the
    /// pattern was meant literally (it does not compile as a regex but
    /// reads as a literal: `{"sum": 5}`, `1+1=2(`).
    pub fn regex(pattern: &str, text_flag: &str) -> Result<Matcher, String> {
        Regex::new(pattern)
            .map(Matcher::Regex)
            .map_err(|err| match err {
                regex::Error::Syntax(detail) => {
                    // The regex crate's message is several lines; keep the
                    // last ("error: ..."), which says what is wrong.
                    let why = detail
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches("error: ")
                        .to_owned();
                    format!(
                        "{pattern:?} is not a valid regex: {why} \
                         (to match it as plain text, use {text_flag})"
                    )
                }
                other => format!("{pattern:?} is not a usable regex: {other}"),
            })
    }

    /// A jq filter; the error is one line naming the filter.
    pub fn jq(filter: &str) -> Result<Matcher, String> {
        Jq::compile(filter).map(Matcher::Jq)
    }

    /// Whether `message` matches, and the match to take captures from.
    pub fn matches<'m>(&self, message: &'m str) -> Option<Match<'m>> {
        match self {
            Matcher::Text(text) => message.contains(text.as_str()).then_some(Match::Text),
            Matcher::Regex(regex) => regex.captures(message).map(Match::Regex),
            Matcher::Jq(jq) => jq.truthy(message).then_some(Match::Json(message)),
        }
    }

    /// What a jq matcher made of a message that did not match, for a
    /// diagnostic: the filter's outputs, or why there were none. `None` for
    /// text and regex matchers, where the message says it all.
    pub fn explain(&self, message: &str) -> Option<String> {
        let Matcher::Jq(jq) = self else {
            return None;
        };
        let shown = jq.on_worker(message, |jq, value| {
            let mut shown = Vec::new();
            for out in jq.run(value).take(4) {
                match out {
                    Ok(v) => shown.push(v.to_string()),
                    Err(err) => {
                        shown.push(format!("error: {err}"));
                        break;
                    }
                }
            }
            shown
        });
        Some(match shown {
            Err(stopped) => format!("error: {stopped}"),
            Ok(None) => "not JSON".into(),
            Ok(Some(shown)) if shown.is_empty() => "no output".into(),
            Ok(Some(shown)) => shown.join(", "),
        })
    }

    /// Whether a capture's source exists in this matcher (a regex's group
    /// by number, 0 being the whole match, or by name), checked when the
    /// step is parsed rather than when a message arrives.
    pub fn check_source(&self, source: &Source) -> Result<(), String> {
        match (self, source) {
            (Matcher::Regex(regex), Source::Group(GroupRef::Index(i))) => {
                if *i < regex.captures_len() {
                    Ok(())
                } else {
                    Err(format!(
                        "the regex has no group {i} (it has {})",
                        regex.captures_len() - 1
                    ))
                }
            }
            (Matcher::Regex(regex), Source::Group(GroupRef::Name(name))) => {
                if regex.capture_names().flatten().any(|n| n == name) {
                    Ok(())
                } else {
                    Err(format!("the regex has no group named {name:?}"))
                }
            }
            (Matcher::Jq(_), Source::Jq(_)) => Ok(()),
            _ => unreachable!("sources are parsed for their matcher"),
        }
    }
}

impl Source {
    /// A capture's source as written after `name=`, for this matcher: a
    /// group number or name for a regex, a jq filter for a jq matcher.
    pub fn parse(matcher: &Matcher, raw: &str) -> Result<Source, String> {
        let source = match matcher {
            Matcher::Text(_) => {
                return Err(
                    "a fixed string has nothing to capture; capture from expect (a regex group) \
                     or expect-json (a jq filter)"
                        .into(),
                );
            }
            Matcher::Regex(_) => Source::Group(match raw.parse::<usize>() {
                Ok(i) => GroupRef::Index(i),
                Err(_) => GroupRef::Name(raw.to_owned()),
            }),
            Matcher::Jq(_) => Source::Jq(Jq::compile(raw)?),
        };
        matcher.check_source(&source)?;
        Ok(source)
    }
}

impl Match<'_> {
    /// The value `source` takes from the matched message, as templates
    /// insert it: a string's contents, anything else as compact JSON.
    /// `None` when there is none (a group that did not take part, a filter
    /// with no output or an error).
    pub fn capture(&self, source: &Source) -> Option<String> {
        match (self, source) {
            (Match::Regex(caps), Source::Group(GroupRef::Index(i))) => {
                caps.get(*i).map(|m| m.as_str().to_owned())
            }
            (Match::Regex(caps), Source::Group(GroupRef::Name(name))) => {
                caps.name(name).map(|m| m.as_str().to_owned())
            }
            (Match::Json(message), Source::Jq(jq)) => jq
                .on_worker(message, |jq, value| match jq.run(value).next()? {
                    Ok(Val::TStr(s)) => Some(String::from_utf8_lossy(&s).into_owned()),
                    Ok(v) => Some(v.to_string()),
                    Err(_) => None,
                })
                .ok()
                .flatten()
                .flatten(),
            _ => None,
        }
    }
}

impl Jq {
    pub fn compile(filter: &str) -> Result<Jq, String> {
        let fail = |why: String| format!("{filter:?} is not a valid jq filter: {why}");
        let defs = jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs());
        let funs = jaq_core::funs()
            .chain(jaq_std::funs())
            .chain(jaq_json::funs());
        let loader = Loader::new(defs);
        let arena = Arena::default();
        let file = File {
            code: filter,
            path: (),
        };
        let modules = loader
            .load(&arena, file)
            .map_err(|errs| fail(load_error(filter, errs)))?;
        let compiled = jaq_core::Compiler::default()
            .with_funs(funs)
            .compile(modules)
            .map_err(|errs| {
                let why = errs
                    .into_iter()
                    .flat_map(|(_, errs)| errs)
                    .map(|(name, undefined)| {
                        format!("{} {name} is not defined", undefined.as_str())
                    })
                    .next()
                    .unwrap_or_else(|| "it does not compile".into());
                fail(why)
            })?;
        Ok(Jq {
            source: filter.to_owned(),
            filter: Arc::new(compiled),
            stopped: Arc::default(),
        })
    }

    /// The filter's first output on a JSON message, as compact JSON: what
    /// `--confirm-key` compares between a request and its reply. `None`
    /// when the message is not JSON or the filter yields nothing, `null`
    /// or an error.
    pub fn key(&self, message: &str) -> Option<String> {
        self.on_worker(message, |jq, value| match jq.run(value).next()? {
            Ok(Val::Null) | Err(_) => None,
            Ok(v) => Some(v.to_string()),
        })
        .ok()
        .flatten()
        .flatten()
    }

    /// The filter as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// `eval` on the message parsed (`None`: it is not JSON), run on the
    /// jq worker (see `jq_worker`: a filter that never ends or overflows
    /// its stack is stopped there, and never run again).
    fn on_worker<R: Send + 'static>(
        &self,
        message: &str,
        eval: impl FnOnce(&Jq, Val) -> R + Send + 'static,
    ) -> Result<Option<R>, Stopped> {
        if let Some(stopped) = self.stopped.get() {
            return Err(*stopped);
        }
        let jq = self.clone();
        let message = message.to_owned();
        let made = jq_worker::run(move || parse_json(&message).map(|value| eval(&jq, value)));
        if let Err(stopped) = made
            && self.stopped.set(stopped).is_ok()
        {
            crate::render::eprint_line(&format!(
                "warning: the jq filter {:?} was {stopped}; it is not run again",
                self.source
            ));
        }
        made
    }

    fn run(&self, input: Val) -> impl Iterator<Item = Result<Val, String>> + '_ {
        let ctx = Ctx::<data::JustLut<Val>>::new(&self.filter.lut, Vars::new([]));
        self.filter
            .id
            .run((ctx, input))
            .map(unwrap_valr)
            .map(|out| out.map_err(|err| err.to_string()))
            .take(OUTPUTS_MAX)
    }

    /// Whether `message` is JSON and some output is truthy, before any
    /// error.
    fn truthy(&self, message: &str) -> bool {
        let truthy = self.on_worker(message, |jq, value| {
            for out in jq.run(value) {
                match out {
                    Ok(v) if v.as_bool() => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
            false
        });
        matches!(truthy, Ok(Some(true)))
    }
}

fn parse_json(message: &str) -> Option<Val> {
    jaq_json::read::parse_single(message.as_bytes()).ok()
}

/// The first lex or parse error, with where it is in the filter.
fn load_error(filter: &str, errs: load::Errors<&str, ()>) -> String {
    let at = |rest: &str| {
        let offset = filter.len().saturating_sub(rest.len());
        if rest.is_empty() {
            "at the end".to_owned()
        } else {
            format!("at character {}", filter[..offset].chars().count() + 1)
        }
    };
    for (_, err) in errs {
        match err {
            load::Error::Lex(errs) => {
                if let Some((expect, rest)) = errs.first() {
                    return format!("expected {} {}", expect.as_str(), at(rest));
                }
            }
            load::Error::Parse(errs) => {
                if let Some((expect, rest)) = errs.first() {
                    return format!("expected {} {}", expect.as_str(), at(rest));
                }
            }
            load::Error::Io(errs) => {
                if let Some((path, why)) = errs.first() {
                    return format!("cannot load {path}: {why}");
                }
            }
        }
    }
    "it does not parse".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jq(filter: &str) -> Matcher {
        Matcher::jq(filter).unwrap()
    }

    #[test]
    fn text_is_matched_literally() {
        let m = Matcher::text("1+1=2");
        assert!(m.matches("so 1+1=2 it is").is_some());
        assert!(m.matches("11=2").is_none());
    }

    #[test]
    fn a_regex_that_reads_as_text_suggests_the_text_flag() {
        let err = Matcher::regex(r#"{"sum": 5}"#, "--expect-text").unwrap_err();
        assert_eq!(
            err,
            r#""{\"sum\": 5}" is not a valid regex: repetition operator missing expression (to match it as plain text, use --expect-text)"#
        );
        assert!(Matcher::regex("^a.b$", "--expect-text").is_ok());
    }

    #[test]
    fn jq_matches_json_whose_filter_is_truthy() {
        let m = jq(".sum == 5");
        assert!(m.matches(r#"{"sum": 5}"#).is_some());
        assert!(m.matches(r#"{"sum": 4}"#).is_none());
        assert!(m.matches("sum 5").is_none(), "not JSON");
        assert!(m.matches("[1]").is_none(), "an error is no match");
        // Any truthy output: a value, not only `true`.
        assert!(jq(".type").matches(r#"{"type":"ping"}"#).is_some());
        assert!(jq(".type").matches(r#"{"type":null}"#).is_none());
        assert!(jq(".[] | . > 2").matches("[1,2,3]").is_some());
        assert!(jq("repeat(.) | false").matches("1").is_none(), "bounded");
        assert!(
            jq(r#".name | test("^a")"#)
                .matches(r#"{"name":"ab"}"#)
                .is_some()
        );
    }

    #[test]
    fn invalid_filters_say_what_and_where() {
        assert_eq!(
            Matcher::jq(".sum ==").unwrap_err(),
            r#"".sum ==" is not a valid jq filter: expected term at the end"#
        );
        assert_eq!(
            Matcher::jq("nosuch(1)").unwrap_err(),
            r#""nosuch(1)" is not a valid jq filter: filter nosuch is not defined"#
        );
        assert_eq!(
            Matcher::jq(".a | (.b").unwrap_err(),
            r#"".a | (.b" is not a valid jq filter: expected closing parenthesis at the end"#
        );
    }

    #[test]
    fn captures_come_from_groups_and_filters() {
        let m = jq(r#".op == "welcome""#);
        let got = m
            .matches(r#"{"op":"welcome","session":"s-1","n":[1,2]}"#)
            .unwrap();
        let src = |raw| Source::parse(&m, raw).unwrap();
        assert_eq!(got.capture(&src(".session")).as_deref(), Some("s-1"));
        assert_eq!(got.capture(&src(".n")).as_deref(), Some("[1,2]"));
        assert_eq!(got.capture(&src(".missing")).as_deref(), Some("null"));
        assert_eq!(got.capture(&src("empty")), None);
        assert_eq!(
            got.capture(&src(".session | tojson")).as_deref(),
            Some("\"s-1\"")
        );

        let r = Matcher::regex(r"id=(?<id>\d+) (\w+)", "-").unwrap();
        let got = r.matches("id=42 ok").unwrap();
        let src = |raw| Source::parse(&r, raw).unwrap();
        assert_eq!(got.capture(&src("id")).as_deref(), Some("42"));
        assert_eq!(got.capture(&src("2")).as_deref(), Some("ok"));
        assert_eq!(
            Source::parse(&r, "3").unwrap_err(),
            "the regex has no group 3 (it has 2)"
        );
        assert_eq!(
            Source::parse(&r, "nope").unwrap_err(),
            "the regex has no group named \"nope\""
        );
        assert!(Source::parse(&Matcher::text("x"), "1").is_err());
    }

    #[test]
    fn explain_shows_what_the_filter_made_of_a_message() {
        let m = jq(".sum == 5");
        assert_eq!(m.explain(r#"{"sum":4}"#).as_deref(), Some("false"));
        assert_eq!(m.explain("hello").as_deref(), Some("not JSON"));
        assert_eq!(jq(".[]").explain("[]").as_deref(), Some("no output"));
        assert!(m.explain("[1]").unwrap().starts_with("error: "));
        assert_eq!(Matcher::text("x").explain("y"), None);
    }
}
