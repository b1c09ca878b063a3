//! `--pretty`: a JSON message re-indented, whitespace the only change.
//!
//! Why not `serde_json::to_string_pretty` of a parsed `Value`: a `Value` is
//! a reading of the text, not the text. It sorts keys (or, with
//! `preserve_order`, keeps them but drops duplicates), normalises numbers
//! (`1.10` becomes `1.1`, big integers floats; `arbitrary_precision` would fix
//! that, but changes every number serde_json handles, `--json`'s writer
//! included) and re-escapes strings (`\u00e9` becomes `é`). Someone debugging
//! a server needs to see exactly what it sent. So serde_json only validates
//! the text (deserialising into `IgnoredAny`, which checks the grammar,
//! escapes and numbers without building anything), and the text is then
//! copied token by token with new whitespace: strings, numbers and literals
//! byte for byte, keys in their order, duplicates kept. The layout is
//! serde_json's pretty one (two spaces, `"key": value`, `[]` and `{}` when
//! empty). For a terminal each token is escaped as messages are
//! ([`escape_controls`]), and with colour on, keys, strings, numbers and the
//! literals get colours of their own (as `jq -C` does); punctuation never.

use std::borrow::Cow;

use crate::render::escape_controls;
use crate::render::sgr::{BLUE_BOLD, CYAN, GREEN, RESET, YELLOW};

/// How the tokens are shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct Style {
    /// Controls and bidi characters in strings as visible escapes.
    pub escape: bool,
    pub colour: bool,
}

/// Deeper than this is printed as received, as serde_json's own parser
/// refuses it: every level indents every line inside it, so a hostile
/// `[[[[...` would otherwise grow quadratically when indented.
const MAX_DEPTH: usize = 128;
/// Indentation allowed beyond twice the text's size: a hostile message of
/// wide arrays just under [`MAX_DEPTH`] (`[[...[1,1,1,...]...]]`) would
/// otherwise get 256 spaces for each 2 bytes, gigabytes for a 64 MiB message.
const INDENT_SLACK: usize = 16 << 20;

/// `text` re-indented when it is one JSON value, else `None`.
pub fn reindent(text: &str, style: Style) -> Option<String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).ok()?;
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + text.len() / 2);
    let token = |out: &mut String, colour: &str, token: &str| {
        let token = if style.escape {
            escape_controls(token)
        } else {
            Cow::Borrowed(token)
        };
        if style.colour {
            out.push_str(colour);
            out.push_str(&token);
            out.push_str(RESET);
        } else {
            out.push_str(&token);
        }
    };
    let mut depth = 0usize;
    let mut indent_room = 2 * text.len() + INDENT_SLACK;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'"' => {
                let end = string_end(bytes, i);
                let key = bytes.get(skip_whitespace(bytes, end)) == Some(&b':');
                token(&mut out, if key { BLUE_BOLD } else { GREEN }, &text[i..end]);
                i = end;
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                let next = skip_whitespace(bytes, i + 1);
                out.push(char::from(open));
                if bytes.get(next) == Some(&close) {
                    out.push(char::from(close));
                    i = next + 1;
                } else {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return None;
                    }
                    newline(&mut out, depth, &mut indent_room)?;
                    i += 1;
                }
            }
            close @ (b'}' | b']') => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth, &mut indent_room)?;
                out.push(char::from(close));
                i += 1;
            }
            b',' => {
                out.push(',');
                newline(&mut out, depth, &mut indent_room)?;
                i += 1;
            }
            b':' => {
                out.push_str(": ");
                i += 1;
            }
            // A number, `true`, `false` or `null`: up to the next delimiter.
            _ => {
                let end = bytes[i..]
                    .iter()
                    .position(|b| b" \t\n\r,:]}".contains(b))
                    .map_or(bytes.len(), |n| i + n);
                let literal = matches!(bytes[i], b't' | b'f' | b'n');
                token(&mut out, if literal { YELLOW } else { CYAN }, &text[i..end]);
                i = end;
            }
        }
    }
    Some(out)
}

/// Past the closing quote of the (validated) string opening at `start`.
fn string_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn skip_whitespace(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|b| !b" \t\n\r".contains(b))
        .map_or(bytes.len(), |n| from + n)
}

/// `None` once the indentation outgrows `room` (the text is then printed as
/// received).
fn newline(out: &mut String, depth: usize, room: &mut usize) -> Option<()> {
    *room = room.checked_sub(2 * depth)?;
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whitespace_changes() {
        let text = r#"{"z":1.10,"a":[123456789012345678901234,-0.0e+00,true,null],"z":"caf\u00e9 \"q\" \\ \/","k":{}}"#;
        assert_eq!(
            reindent(text, Style::default()).unwrap(),
            "{\n  \"z\": 1.10,\n  \"a\": [\n    123456789012345678901234,\n    -0.0e+00,\n    \
             true,\n    null\n  ],\n  \"z\": \"caf\\u00e9 \\\"q\\\" \\\\ \\/\",\n  \"k\": {}\n}"
        );
    }

    #[test]
    fn the_layout_is_serde_jsons() {
        // Where a Value keeps everything (sorted keys, plain numbers and
        // strings), the result is exactly serde_json's pretty form.
        for text in [
            r#"{"a":[1,2,{"b":[]}],"c":{"d":"é"},"e":[[],{}]}"#,
            " [ 1 ,\n\t2 , [ ] , { } ] ",
            "\"alone\"",
            "42",
            "[]",
            r#"{"key with spaces , : [ ]":"value { } , :"}"#,
        ] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(
                reindent(text, Style::default()).unwrap(),
                serde_json::to_string_pretty(&value).unwrap(),
                "{text}"
            );
        }
    }

    #[test]
    fn a_terminal_gets_escapes_and_colours_per_token() {
        let text = "{\"k\u{202e}\":[\"v\u{7f}\",1.5,null]}";
        let escaped = Style {
            escape: true,
            colour: false,
        };
        assert_eq!(
            reindent(text, escaped).unwrap(),
            "{\n  \"k\\u{202e}\": [\n    \"v\\x7f\",\n    1.5,\n    null\n  ]\n}"
        );
        let coloured = Style {
            escape: true,
            colour: true,
        };
        assert_eq!(
            reindent(text, coloured).unwrap(),
            "{\n  \x1b[1;34m\"k\\u{202e}\"\x1b[0m: [\n    \x1b[32m\"v\\x7f\"\x1b[0m,\n    \
             \x1b[36m1.5\x1b[0m,\n    \x1b[33mnull\x1b[0m\n  ]\n}"
        );
        // Without escaping (a pipe), the characters pass as sent.
        assert_eq!(
            reindent("\"v\u{7f}\"", Style::default()).unwrap(),
            "\"v\u{7f}\""
        );
    }

    #[test]
    fn what_is_not_one_json_value_is_left_alone() {
        for text in [
            "",
            "hello",
            "{\"a\":1",
            "{\"a\":1} {}",
            "[01]",
            "[1.]",
            "\"\\x\"",
            "\"tab\tinside\"",
            "{'a':1}",
            "[1,]",
        ] {
            assert_eq!(reindent(text, Style::default()), None, "{text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_left_alone() {
        let nested = |depth| format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
        assert!(reindent(&nested(MAX_DEPTH), Style::default()).is_some());
        assert_eq!(reindent(&nested(MAX_DEPTH + 1), Style::default()), None);
        // Wide arrays deep down would need far more indentation than text.
        let wide = |n| {
            format!(
                "{}{}{}",
                "[".repeat(100),
                "1,".repeat(n) + "1",
                "]".repeat(100)
            )
        };
        assert!(reindent(&wide(1000), Style::default()).is_some());
        assert_eq!(reindent(&wide(100_000), Style::default()), None);
        // serde_json checks no depth when it only validates.
        assert!(serde_json::from_str::<serde::de::IgnoredAny>(&nested(10_000)).is_ok());
    }
}
