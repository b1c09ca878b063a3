//! The committed completion scripts and man page must match what the binary
//! generates, and must work in the real shells and in man.
//!
//! After changing flags, regenerate them with:
//!     TETHER_REGENERATE=1 cargo test --test integration generated::

use std::path::Path;
use std::process::Command;

use crate::support::cmd::BIN;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const GENERATED: &[(&[&str], &str)] = &[
    (&["completions", "bash"], "completions/tether.bash"),
    (&["completions", "zsh"], "completions/_tether"),
    (&["completions", "fish"], "completions/tether.fish"),
    (&["completions", "powershell"], "completions/_tether.ps1"),
    (&["completions", "elvish"], "completions/tether.elv"),
    (&["man"], "doc/tether.1"),
];

fn run(program: &str, args: &[&str]) -> (String, String, bool) {
    let out = Command::new(program)
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e}; is it installed? (.ci/run installs it)")
        });
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn committed_completions_and_man_page_are_fresh() {
    let regenerate = std::env::var_os("TETHER_REGENERATE").is_some();
    let mut stale = Vec::new();
    for (args, file) in GENERATED {
        let (generated, stderr, ok) = run(BIN, args);
        assert!(ok, "tether {args:?} failed: {stderr}");
        let path = Path::new(ROOT).join(file);
        if regenerate {
            std::fs::write(&path, &generated).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(generated.as_str()) {
            stale.push(*file);
        }
    }
    assert!(
        stale.is_empty(),
        "stale: {stale:?}; run TETHER_REGENERATE=1 cargo test --test integration generated::"
    );
}

#[test]
fn bash_completes_ping_flags() {
    let script = r#"
        source completions/tether.bash
        COMP_WORDS=(tether --ping-)
        COMP_CWORD=1
        COMP_LINE="tether --ping-"
        COMP_POINT=${#COMP_LINE}
        _tether tether --ping- tether
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let (out, err, ok) = run("bash", &["-c", script]);
    assert!(ok, "{err}");
    let mut offered: Vec<_> = out.lines().collect();
    offered.sort();
    assert_eq!(
        offered,
        ["--ping-interval", "--ping-timeout"],
        "stderr: {err}"
    );
}

#[test]
fn fish_completes_ping_flags() {
    let (out, err, ok) = run(
        "fish",
        &[
            "--no-config",
            "-c",
            "source completions/tether.fish; complete -C 'tether --ping-'",
        ],
    );
    assert!(ok, "{err}");
    let offered: Vec<_> = out.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert!(
        offered.contains(&"--ping-interval")
            && offered.contains(&"--ping-timeout")
            && offered.len() == 2,
        "fish offered {offered:?}"
    );
}

#[test]
fn zsh_loads_the_completion_function() {
    // Driving zsh's completion system needs a terminal; check that the
    // script loads under compinit and defines its function with the flags.
    let script = r#"
        autoload -Uz compinit && compinit -u -D
        source completions/_tether
        (( $+functions[_tether] )) || exit 3
        print -r -- ${functions[_tether]}
    "#;
    let (out, err, ok) = run("zsh", &["-f", "-c", script]);
    assert!(ok, "zsh failed: {err}");
    assert!(out.contains("--ping-interval") && out.contains("--ping-timeout"));
}

/// `man -l doc/tether.1` as text, and what man said on stderr.
fn man_page() -> (String, String) {
    let out = Command::new("man")
        .args(["--warnings", "-l", "doc/tether.1"])
        .current_dir(ROOT)
        .env("MANWIDTH", "80")
        .output()
        .expect("cannot run man; is man-db installed? (.ci/run installs it)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Without a terminal, man marks bold as `X\bX`: keep the visible text.
    let mut page = String::new();
    for c in String::from_utf8_lossy(&out.stdout).chars() {
        if c == '\u{8}' {
            page.pop();
        } else {
            page.push(c);
        }
    }
    assert!(out.status.success(), "{stderr}");
    (page, stderr.into_owned())
}

#[test]
fn man_renders_without_warnings() {
    let (page, stderr) = man_page();
    assert!(stderr.trim().is_empty(), "man warned: {stderr}");
    for section in [
        "SYNOPSIS",
        "CONNECTION",
        "EXIT STATUS",
        "ENVIRONMENT",
        "FILES",
        "EXAMPLES",
    ] {
        assert!(page.contains(section), "no {section} section");
    }
}

#[test]
fn the_man_page_names_only_real_pages_and_has_a_short_footer() {
    let (page, _) = man_page();
    // clap_mangen named tether-serve(1), tether-demo(1), ...: pages that
    // do not exist. The subcommands are shown as they are typed.
    let references: Vec<&str> = page
        .split_whitespace()
        .filter(|w| w.contains("(1)") && *w != "tether(1)")
        .collect();
    assert!(references.is_empty(), "{references:?}");
    for command in [
        "tether serve [ADDR]",
        "tether demo",
        "tether completions SHELL",
        "tether man",
    ] {
        assert!(
            page.lines().any(|l| l.trim() == command),
            "no {command:?} line"
        );
    }
    // The footer held the long version, cut into by the date:
    // "tether 0.1.0 (TLS: native-tls, sys2026-11-21L)".
    let footer: Vec<&str> = page.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(
        footer,
        [
            "tether",
            env!("CARGO_PKG_VERSION"),
            "2026-11-21",
            "tether(1)"
        ]
    );
}

#[test]
fn the_man_page_carries_the_json_schema_and_the_scenario_syntax() {
    // `cargo install` installs no README, so the man page has to say what
    // the README's reference sections say: every event and step is there.
    let (page, _) = man_page();
    let lines: Vec<&str> = page.lines().collect();
    // A section runs to the next heading: an upper-case line at the margin (an
    // indented `EOF` in an example is not one).
    let heading = |l: &str| {
        !l.is_empty()
            && !l.starts_with(' ')
            && l.chars().all(|c| c.is_ascii_uppercase() || c == ' ')
    };
    let section = |title: &str| {
        let start = lines
            .iter()
            .position(|l| *l == title)
            .unwrap_or_else(|| panic!("no {title} section"));
        lines[start + 1..]
            .iter()
            .take_while(|l| !heading(l))
            .map(|l| l.trim())
            .collect::<Vec<&str>>()
            .join("\n")
    };
    let json = section("JSON EVENTS");
    for event in [
        "connecting",
        "connected",
        "message",
        "sent",
        "ping",
        "pong",
        "disconnected",
        "reconnecting",
        "closed",
        "warning",
        "error",
    ] {
        assert!(
            json.lines()
                .any(|l| l == event || l.starts_with(&format!("{event} "))),
            "JSON EVENTS has no {event} entry:\n{json}"
        );
    }
    for field in ["duration_ms", "steps_passed", "failed_step", "connect_ms"] {
        assert!(json.contains(field), "JSON EVENTS lacks {field}");
    }
    let scenario = section("SCENARIO FILES");
    for step in [
        "send TEXT",
        "send-binary HEX",
        "expect REGEX",
        "expect-text TEXT",
        "expect-json FILTER",
        "expect-binary REGEX",
        "wait DURATION",
        "ping [PAYLOAD]",
        "close [CODE [REASON]]",
        "expect-close [CODE]",
    ] {
        assert!(
            scenario.lines().any(|l| l == step),
            "SCENARIO FILES has no {step:?} entry:\n{scenario}"
        );
    }
    assert!(scenario.contains("expect-json .op == \"welcome\" capture session=.session"));
    // The example script, verbatim.
    assert!(scenario.contains("send {\"op\":\"add\",\"a\":2,\"b\":3}\nexpect \"sum\": 5\\b"));
}
