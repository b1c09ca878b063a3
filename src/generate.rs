//! Shell completions and the man page, generated from the clap definition so
//! they cannot drift from the real flags. The committed copies in
//! `completions/` and `doc/` are checked against these by a test.
//!
//! The man page's reference for the `--json` events and the scenario files
//! is the README's own sections, turned into roff: `cargo install` installs
//! no README, and one text cannot drift from itself.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::roff::{Roff, bold, italic, roman};

use crate::cli::{Cli, EXAMPLES};
use crate::error::{EXIT_CODE_TABLE, Error, ExitCode, Result};

pub fn completions(shell: Shell, out: &mut dyn Write) -> Result<ExitCode> {
    clap_complete::generate(shell, &mut Cli::command(), "tether", out);
    Ok(ExitCode::Success)
}

pub fn man_page(out: &mut dyn Write) -> Result<ExitCode> {
    render_man(out).map_err(|err| Error::Runtime(format!("cannot write the man page: {err}")))?;
    Ok(ExitCode::Success)
}

fn render_man(out: &mut dyn Write) -> std::io::Result<()> {
    // The examples and exit codes get sections of their own below.
    let command = Cli::command().after_long_help("").after_help("");
    // The footer's centre: the long version (with its TLS backend) does not
    // fit there.
    let man = clap_mangen::Man::new(command.clone())
        .date("2026-11-21")
        .source(format!("tether {}", env!("CARGO_PKG_VERSION")));
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;

    let mut roff = Roff::default();
    commands(&mut roff, &command);
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in EXIT_CODE_TABLE {
        roff.control("TP", [])
            .text([bold(code.to_string())])
            .text([roman(*meaning)]);
    }

    roff.control("SH", ["ENVIRONMENT"]);
    for (name, meaning) in [
        (
            "HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY",
            "Proxies, as curl reads them (upper or lower case); --no-proxy ignores them.",
        ),
        (
            "NO_COLOR",
            "When set and not empty, no colour (unless --color always).",
        ),
        (
            "RUST_LOG",
            "Diagnostics filter, e.g. tether=debug; -v and -q take precedence.",
        ),
        (
            "XDG_STATE_HOME",
            "Where the interactive history is kept (see FILES).",
        ),
    ] {
        roff.control("TP", [])
            .text([bold(name)])
            .text([roman(meaning)]);
    }

    roff.control("SH", ["FILES"]);
    roff.control("TP", [])
        .text([italic("$XDG_STATE_HOME/tether/history")])
        .text([roman(
            "History of the interactive session, mode 0600; ~/.local/state/tether/history when XDG_STATE_HOME is unset.",
        )]);

    roff.control("SH", ["EXAMPLES"]);
    for (command, what) in EXAMPLES {
        roff.control("TP", [])
            .text([roman(*what)])
            .text([bold(*command)]);
    }

    for (heading, title) in README_SECTIONS {
        roff.control("SH", [*title]);
        markdown(&mut roff, &readme_section(README, heading));
    }
    roff.to_writer(out)?;
    man.render_version_section(out)
}

/// The subcommands, each as it is typed (`tether serve [ADDR]`), with what
/// its arguments take. clap_mangen would name pages such as tether-serve(1),
/// which do not exist.
fn commands(roff: &mut Roff, command: &clap::Command) {
    roff.control("SH", ["COMMANDS"]);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut usage = vec![bold(format!("tether {}", sub.get_name()))];
        let positionals: Vec<&clap::Arg> = sub.get_positionals().collect();
        for arg in &positionals {
            let name = arg_name(arg);
            usage.push(roman(" "));
            if arg.is_required_set() {
                usage.push(italic(name));
            } else {
                usage.extend([roman("["), italic(name), roman("]")]);
            }
        }
        roff.control("TP", []).text(usage);
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            roff.text([roman(about.to_string())]);
        }
        for arg in positionals {
            let mut text = vec![italic(arg_name(arg)), roman(": ")];
            if let Some(help) = arg.get_help() {
                text.push(roman(help.to_string()));
            }
            let values: Vec<String> = arg
                .get_possible_values()
                .iter()
                .filter(|v| !v.is_hide_set())
                .map(|v| v.get_name().to_owned())
                .collect();
            if !values.is_empty() {
                text.push(roman(format!("one of {}", values.join(", "))));
            }
            if let [default] = arg.get_default_values() {
                text.push(roman(format!(" (default {})", default.to_string_lossy())));
            }
            roff.control("br", []).text(text);
        }
    }
}

fn arg_name(arg: &clap::Arg) -> String {
    match arg.get_value_names() {
        Some([name, ..]) => name.to_string(),
        _ => arg.get_id().as_str().to_uppercase(),
    }
}

pub(crate) const README: &str = include_str!("../README.md");

/// The README sections the man page carries whole: (heading, man section).
pub(crate) const README_SECTIONS: &[(&str, &str)] = &[
    ("## `--json` events", "JSON EVENTS"),
    ("### Scenario files (`--script FILE`)", "SCENARIO FILES"),
];

/// The text under `heading` (a whole line), up to the next heading of the
/// same or a higher level; its subsections are kept.
pub(crate) fn readme_section(readme: &str, heading: &str) -> String {
    let level = heading.len() - heading.trim_start_matches('#').len();
    let is_end = |line: &str| {
        let hashes = line.len() - line.trim_start_matches('#').len();
        (1..=level).contains(&hashes) && line[hashes..].starts_with(' ')
    };
    let mut lines = readme.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "the README has no {heading:?}");
    let mut in_code = false;
    lines
        .take_while(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            in_code || !is_end(l)
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The README's markdown as roff, for what those sections use: paragraphs,
/// subsection headings, fenced code, and tables (a tagged paragraph a row,
/// its first cell the tag).
fn markdown(roff: &mut Roff, text: &str) {
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(heading) = line
            .strip_prefix("### ")
            .or_else(|| line.strip_prefix("#### "))
        {
            roff.control("SS", [heading.replace('`', "").as_str()]);
        } else if line.starts_with("```") {
            roff.control("PP", [])
                .control("RS", ["4"])
                .control("nf", []);
            for code in lines.by_ref().take_while(|l| !l.starts_with("```")) {
                if code.is_empty() {
                    roff.control("sp", []);
                } else {
                    roff.text([roman(code)]);
                }
            }
            roff.control("fi", []).control("RE", []);
        } else if line.starts_with('|') {
            let mut rows = vec![line];
            while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
                rows.push(row);
            }
            table(roff, &rows);
        } else {
            // A list item is a paragraph of its own, with its bullet.
            let item = line.strip_prefix("- ");
            let mut paragraph = item.unwrap_or(line).to_owned();
            while let Some(more) = lines.next_if(|l| {
                !l.trim().is_empty()
                    && !l.starts_with(['|', '#'])
                    && !l.starts_with("```")
                    && !l.starts_with("- ")
            }) {
                paragraph.push(' ');
                paragraph.push_str(more.trim_start());
            }
            match item {
                Some(_) => roff.control("IP", ["\\(bu", "2"]),
                None => roff.control("PP", []),
            }
            .text(inline(&paragraph));
        }
    }
}

/// A markdown table: the header names the columns after the second, whose
/// cells follow the second's as `name: text` (but for a `meaning`).
fn table(roff: &mut Roff, rows: &[&str]) {
    let cells = |row: &str| -> Vec<String> {
        row.trim()
            .trim_matches('|')
            .split('|')
            .map(|cell| cell.trim().to_owned())
            .collect()
    };
    let header = cells(rows[0]);
    // rows[1] is the |---| line.
    for row in rows.iter().skip(2).map(|row| cells(row)) {
        let mut body = Vec::new();
        for (i, cell) in row.iter().enumerate().skip(1) {
            if cell.is_empty() {
                continue;
            }
            if !body.is_empty() {
                body.push(roman("; "));
            }
            if i >= 2 && header[i] != "meaning" {
                body.push(roman(format!("{}: ", header[i])));
            }
            body.extend(inline(cell));
        }
        let tag = row[0].replace('`', "");
        roff.control("TP", []).text([bold(tag)]);
        if !body.is_empty() {
            roff.text(body);
        }
    }
}

/// Inline markdown: `code` and **strong** in bold, a link as its text.
fn inline(text: &str) -> Vec<clap_mangen::roff::Inline> {
    let mut out = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let (marker, end) = match c {
            '`' => ("`", "`"),
            '*' if rest.starts_with("**") => ("**", "**"),
            '[' => ("[", "]("),
            _ => ("", ""),
        };
        let span = (!marker.is_empty())
            .then(|| rest[marker.len()..].split_once(end))
            .flatten();
        match span {
            Some((inner, after)) => {
                if !plain.is_empty() {
                    out.push(roman(std::mem::take(&mut plain)));
                }
                if marker == "[" {
                    // The link's target (up to its `)`) is for the README.
                    out.push(roman(inner.replace('`', "")));
                    rest = after.split_once(')').map_or("", |(_, after)| after);
                } else {
                    out.push(bold(inner));
                    rest = after;
                }
            }
            None => {
                plain.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if !plain.is_empty() {
        out.push(roman(plain));
    }
    out
}
