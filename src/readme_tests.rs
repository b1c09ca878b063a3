//! The README's reference tables, held to the code: the exit codes to
//! [`ExitCode`] and `--help`'s table, the options to clap's arguments. A test
//! fails when one changes without the other; fix the README (or the code),
//! not the test.

use std::collections::{BTreeMap, BTreeSet};

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{EXIT_CODE_TABLE, ExitCode};
// The text under a heading, up to the next of the same or a higher level.
use crate::generate::readme_section as section;

fn readme() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The body rows of the first table in `text`, cells trimmed (`\|` is a
/// `|` inside a cell).
fn first_table(text: &str) -> Vec<Vec<String>> {
    let rows: Vec<Vec<String>> = text
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let l = l.replace("\\|", "\u{0}");
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|cell| cell.trim().replace('\u{0}', "|"))
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "no table in {text:.80?}");
    // The header and the `|---|` line.
    rows.into_iter().skip(2).collect()
}

/// A meaning with its parenthesized details, links and code marks taken
/// out: the part both tables must say alike.
fn gist(meaning: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in meaning.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            '`' => {}
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    words.join(" ").replace(" ,", ",")
}

#[test]
fn the_exit_code_table_lists_every_exit_code_once() {
    let readme = readme();
    let rows = first_table(&section(&readme, "## Exit codes"));
    let mut documented = BTreeMap::new();
    for row in &rows {
        let code: u8 = row[0]
            .parse()
            .unwrap_or_else(|_| panic!("README exit code row {row:?}: not a code"));
        assert!(
            documented.insert(code, row[1].clone()).is_none(),
            "README: exit code {code} is listed twice"
        );
    }
    let codes: BTreeSet<u8> = ExitCode::ALL.iter().map(|&c| c as u8).collect();
    let listed: BTreeSet<u8> = documented.keys().copied().collect();
    assert_eq!(
        listed, codes,
        "the README's exit codes (left) are not the ExitCode enum's (right)"
    );

    // `--help` and the man page print EXIT_CODE_TABLE: the same codes, and
    // meanings that differ only in their parenthesized details.
    let help: BTreeMap<u8, &str> = EXIT_CODE_TABLE.iter().copied().collect();
    assert_eq!(
        EXIT_CODE_TABLE.len(),
        help.len(),
        "a code twice in EXIT_CODE_TABLE"
    );
    assert_eq!(help.keys().copied().collect::<BTreeSet<u8>>(), codes);
    for (code, meaning) in &documented {
        assert_eq!(
            gist(meaning),
            gist(help[code]),
            "exit code {code}: the README and --help (EXIT_CODE_TABLE) say different things"
        );
    }
}

/// A flag as the options table spells it: `--long`, with its `-s` if it has one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Flag {
    long: String,
    short: Option<char>,
}

/// The flags named in the first cell of each options row (`-H, --header
/// 'Name: value'`, `--cert FILE --key FILE`), with the row's default cell.
fn documented_flags(readme: &str) -> Vec<(Flag, String)> {
    let mut flags = Vec::new();
    for row in first_table(&section(readme, "## Options")) {
        let cell = &row[0];
        if cell.starts_with("**") {
            continue; // a section heading such as **Connection**
        }
        let words: Vec<&str> = cell
            .split(|c: char| c.is_whitespace() || c == ',' || c == '`')
            .filter(|w| !w.is_empty())
            .collect();
        let mut pending_short = None;
        let mut found = false;
        for word in words {
            if let Some(long) = word.strip_prefix("--") {
                flags.push((
                    Flag {
                        long: long.to_owned(),
                        short: pending_short.take(),
                    },
                    row[1].clone(),
                ));
                found = true;
            } else if let Some(short) = word.strip_prefix('-')
                && short.chars().count() == 1
            {
                pending_short = short.chars().next();
            }
        }
        assert!(found, "options row {row:?} names no --long flag");
        assert!(
            pending_short.is_none(),
            "options row {row:?}: a short flag without its long one"
        );
    }
    flags
}

#[test]
fn the_options_table_documents_every_flag_and_only_real_ones() {
    let readme = readme();
    let documented = documented_flags(&readme);
    let command = Cli::command();
    let mut real = BTreeMap::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if ["help", "version"].contains(&long) {
            continue;
        }
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        real.insert(
            long.to_owned(),
            (
                Flag {
                    long: long.to_owned(),
                    short: arg.get_short(),
                },
                defaults,
            ),
        );
    }

    let names: BTreeSet<&str> = documented.iter().map(|(f, _)| f.long.as_str()).collect();
    let missing: Vec<&String> = real
        .keys()
        .filter(|l| !names.contains(l.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "README ## Options does not document {missing:?}"
    );
    let unknown: Vec<&str> = names
        .iter()
        .copied()
        .filter(|l| !real.contains_key(*l))
        .collect();
    assert!(
        unknown.is_empty(),
        "README ## Options documents flags that do not exist: {unknown:?}"
    );

    for (flag, default) in &documented {
        let (actual, defaults) = &real[&flag.long];
        if flag.short.is_some() {
            assert_eq!(
                flag.short, actual.short,
                "--{}: the README's short flag is not clap's",
                flag.long
            );
        }
        if let [value] = defaults.as_slice() {
            assert_eq!(
                *default,
                format!("`{value}`"),
                "--{}: the README's default is not clap's",
                flag.long
            );
        }
    }
    // Every short flag clap knows is shown with its long one.
    for (flag, _) in real.values() {
        if let Some(short) = flag.short {
            assert!(
                documented.iter().any(|(f, _)| f == flag),
                "README ## Options: --{} is not shown with -{short}",
                flag.long,
            );
        }
    }
}

#[test]
fn the_parsers_read_tables_and_gists() {
    let text = "## A\n\n| x | y |\n|---|---|\n| 1 | a \\| b |\n\n## B\n| z |\n";
    assert_eq!(first_table(&section(text, "## A")), [["1", "a | b"]]);
    assert_eq!(
        gist("the server broke it (see [here](#here)), or `--x` (y)"),
        "the server broke it, or --x"
    );
}

/// The names in code marks outside parentheses: a table cell's field names.
fn marked_names(cell: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let (mut depth, mut name) = (0, None::<String>);
    for c in cell.chars() {
        match (c, &mut name) {
            ('(', None) => depth += 1,
            (')', None) => depth -= 1,
            ('`', None) if depth == 0 => name = Some(String::new()),
            ('`', Some(n)) => {
                names.insert(std::mem::take(n));
                name = None;
            }
            (c, Some(n)) => n.push(c),
            _ => {}
        }
    }
    names
}

/// The keys of a JSON object, nested objects' keys as `outer.inner`.
fn keys(value: &serde_json::Value, prefix: &str, into: &mut BTreeSet<String>) {
    for (key, value) in value.as_object().expect("an object") {
        let key = format!("{prefix}{key}");
        if value.is_object() {
            keys(value, &format!("{key}."), into);
        }
        into.insert(key);
    }
}

#[test]
fn the_json_event_tables_are_the_schema() {
    use crate::report::json::{self, Line, Time};

    let readme = readme();
    let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for row in first_table(&section(&readme, "## `--json` events")) {
        let event = row[0].trim_matches('`').to_owned();
        let mut fields = marked_names(&row[1]);
        fields.extend(["time".to_owned(), "event".to_owned()]);
        assert!(documented.insert(event, fields).is_none(), "{row:?}");
    }
    let smoke = section(&readme, "### `--json` in a smoke test");
    for (event, start) in [("step", "`step`:"), ("summary", "`summary` (")] {
        let at = smoke.find(start).unwrap_or_else(|| panic!("no {start:?}"));
        let mut fields = BTreeSet::new();
        for row in first_table(&smoke[at..]) {
            let names = marked_names(&row[0]);
            if row[1] == "object" {
                for name in &names {
                    for inner in marked_names(&row[2]) {
                        fields.insert(format!("{name}.{inner}"));
                    }
                }
            }
            fields.extend(names);
        }
        documented.insert(event.to_owned(), fields);
    }

    let mut schema: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for event in json::samples() {
        let line = json::to_string(&Line {
            time: Time::now(),
            event,
        });
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        let name = value["event"].as_str().expect("named").to_owned();
        let mut fields = BTreeSet::new();
        keys(&value, "", &mut fields);
        assert!(schema.insert(name, fields).is_none(), "{line}");
    }
    assert_eq!(
        documented.keys().collect::<Vec<_>>(),
        schema.keys().collect::<Vec<_>>(),
        "the README's events are not the schema's (src/report/json.rs)"
    );
    for (event, fields) in &schema {
        assert_eq!(
            &documented[event], fields,
            "README: the `{event}` event's fields are not the schema's (src/report/json.rs)"
        );
    }
}

#[test]
fn the_json_examples_print_as_documented() {
    use std::time::Duration;

    use crate::report::json::*;

    let readme = readme();
    let examples: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("{\"time\":"))
        .collect();
    let ms = |micros| Millis(Duration::from_micros(micros));
    let events = [
        // Watching the wire: --json-sent.
        JsonEvent::Sent(Sent {
            kind: MessageType::Text,
            data: Data::Text("hello"),
            replay: false,
        }),
        JsonEvent::Message(Message {
            kind: MessageType::Text,
            data: Data::Text("hello"),
        }),
        JsonEvent::Connected(Connected {
            url: "ws://127.0.0.1:9101/x",
            subprotocol: None,
            compression: Some(
                "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12",
            ),
            compressing: false,
            attempt: 1,
        }),
        JsonEvent::Message(Message {
            kind: MessageType::Text,
            data: Data::Text("a"),
        }),
        JsonEvent::Closed(Closed {
            code: Some(1000),
            reason: "",
            by_server: false,
        }),
        JsonEvent::Step(Step {
            step: 2,
            of: 2,
            line: None,
            action: "expect",
            text: "--expect '\"op\": \"pong\"'",
            status: StepStatus::Passed,
            duration_ms: ms(3197),
            matched: Some("{\"op\": \"pong\", \"id\": 7}"),
            matched_bytes: 23,
            rtt_ms: None,
            code: None,
            reason: None,
        }),
        JsonEvent::Summary(Summary {
            result: Verdict::Pass,
            exit_code: 0,
            error: None,
            reason: None,
            steps: 2,
            steps_passed: 2,
            failed_step: None,
            duration_ms: ms(6012),
            connect_ms: Some(ms(2771)),
            sent: 1,
            received: 2,
            rtt_ms: crate::session::RttStats::default().into(),
        }),
    ];
    assert_eq!(examples.len(), events.len(), "{examples:?}");
    for (example, event) in examples.into_iter().zip(events) {
        let value: serde_json::Value = serde_json::from_str(example).unwrap();
        let time = Time(humantime::parse_rfc3339(value["time"].as_str().unwrap()).unwrap());
        assert_eq!(to_string(&Line { time, event }), example);
    }
}

#[test]
fn quiet_says_what_it_leaves_on_stderr_as_the_readme_does() {
    // -q keeps warnings (a reconnect, an insecure option): they are what a
    // quiet run must still show. Its help once said "only errors".
    let readme = readme();
    let row = first_table(&section(&readme, "## Options"))
        .into_iter()
        .find(|row| row[0].contains("--quiet"))
        .expect("README ## Options has a --quiet row");
    let command = Cli::command();
    let quiet = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some("quiet"))
        .expect("clap knows --quiet");
    let help = quiet.get_help().expect("--quiet has help").to_string();
    assert_eq!(help.to_lowercase(), gist(&row[2]).to_lowercase());
}
