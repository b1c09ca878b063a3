//! Templates in messages tether sends: `{{name}}` is a value captured from
//! an earlier message, `{{env.NAME}}` an environment variable (so a CI
//! secret goes into a message without being written in the script).
//!
//! The environment is read when the template is parsed, once; what is left
//! is captured names, filled in when the message is sent. A `{{` that does
//! not open `{{name}}` or `{{env.NAME}}` is text, so JSON needs no escaping.
//!
//! [`Captured`] holds the values: the smoke runner writes them as its steps
//! match, and the supervisor reads them for `--on-connect` and `--reply`
//! answers, which it sends on its own, on every connection.

use std::collections::HashMap;
use std::sync::RwLock;

/// A message with the captured values it still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(String),
}

impl Template {
    /// Parses `raw`, filling in `{{env.NAME}}` from `env`; an unset variable
    /// is an error naming it.
    pub fn parse(raw: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Template, String> {
        let mut parts: Vec<Part> = Vec::new();
        let mut text = String::new();
        let mut rest = raw;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let Some((name, tail)) = after.split_once("}}").and_then(|(inner, tail)| {
                let inner = inner.trim();
                is_name(inner.strip_prefix("env.").unwrap_or(inner)).then_some((inner, tail))
            }) else {
                text.push_str(&rest[..open + 2]);
                rest = after;
                continue;
            };
            text.push_str(&rest[..open]);
            match name.strip_prefix("env.") {
                Some(var) => match env(var) {
                    Some(value) => text.push_str(&value),
                    None => {
                        return Err(format!(
                            "{{{{env.{var}}}}}: the environment variable {var} is not set"
                        ));
                    }
                },
                None => {
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Var(name.to_owned()));
                }
            }
            rest = tail;
        }
        text.push_str(rest);
        if !text.is_empty() || parts.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// The captured names it uses, in order.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    /// The text when it needs no captured value.
    pub fn fixed(&self) -> Option<&str> {
        match self.parts.as_slice() {
            [Part::Text(text)] => Some(text),
            _ => None,
        }
    }

    /// The message, with each name's value from `lookup` (a name it does not
    /// know is left empty: parsing checked that an earlier step captures it).
    pub fn render<'v>(&self, lookup: impl Fn(&str) -> Option<&'v str>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(name) => out.push_str(lookup(name).unwrap_or_default()),
            }
        }
        out
    }
}

/// The values captured so far, by name, shared between the one writer (the
/// smoke runner) and the supervisor, which reads them when it sends.
#[derive(Debug, Default)]
pub struct Captured {
    values: RwLock<HashMap<String, String>>,
}

impl Captured {
    pub fn set(&self, name: String, value: String) {
        self.values
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name, value);
    }

    /// The value captured as `name`, if it has been.
    pub fn get(&self, name: &str) -> Option<String> {
        self.read().get(name).cloned()
    }

    /// `template` filled in, or the first name not captured yet.
    pub fn render<'t>(&self, template: &'t Template) -> Result<String, &'t str> {
        let values = self.read();
        if let Some(missing) = template.vars().find(|name| !values.contains_key(*name)) {
            return Err(missing);
        }
        Ok(template.render(|name| values.get(name).map(String::as_str)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, String>> {
        // A panicked writer left a whole map: each insert is one call.
        self.values
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A capture's name: a letter or `_`, then letters, digits, `_` or `-`.
pub fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cret".to_owned())
    }

    #[test]
    fn env_is_filled_in_at_once_and_names_are_left() {
        let t = Template::parse(r#"{"auth":"{{env.TOKEN}}","s":"{{ session }}"}"#, &env).unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["session"]);
        assert_eq!(t.fixed(), None);
        let out = t.render(|n| (n == "session").then_some("abc"));
        assert_eq!(out, r#"{"auth":"s3cret","s":"abc"}"#);
        let fixed = Template::parse("token {{env.TOKEN}}", &env).unwrap();
        assert_eq!(fixed.fixed(), Some("token s3cret"));
    }

    #[test]
    fn braces_that_are_not_a_template_are_text() {
        for raw in [
            "{{",
            "a {{ b",
            "{{1x}}",
            r#"{"a":{"b":{}}}"#,
            "{{}}",
            "x }} y",
            "",
        ] {
            let t = Template::parse(raw, &env).unwrap();
            assert_eq!(t.fixed(), Some(raw), "{raw:?}");
        }
        let t = Template::parse("{{ {{a}}", &env).unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), ["a"]);
        assert_eq!(t.render(|_| Some("1")), "{{ 1");
    }

    #[test]
    fn captured_values_fill_a_template_once_all_are_there() {
        let captured = Captured::default();
        let t = Template::parse(r#"{"s":"{{s}}","n":{{n}}}"#, &env).unwrap();
        assert_eq!(captured.render(&t), Err("s"));
        captured.set("s".into(), "abc".into());
        assert_eq!(captured.render(&t), Err("n"));
        captured.set("n".into(), "3".into());
        assert_eq!(captured.render(&t).as_deref(), Ok(r#"{"s":"abc","n":3}"#));
        assert_eq!(captured.get("n").as_deref(), Some("3"));
    }

    #[test]
    fn an_unset_variable_is_named() {
        assert_eq!(
            Template::parse("{{env.NOPE}}", &env).unwrap_err(),
            "{{env.NOPE}}: the environment variable NOPE is not set"
        );
    }
}
