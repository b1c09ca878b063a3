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

#[test]
fn man_renders_without_warnings() {
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
