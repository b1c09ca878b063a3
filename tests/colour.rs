//! `--color`: one rule for stdout and stderr. `always` colours even a pipe,
//! `never` nothing, `auto` only a terminal and only without `NO_COLOR`.

use crate::support::cmd::{BIN, clear_env};
use crate::support::pty::Pty;
use crate::support::{Server, Tether};

const TIME: &str = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z";

/// A server that sends one JSON message and closes.
fn json_server() -> Server {
    Server::start(|mut conn| async move {
        conn.send_text(r#"{"a":[1,"x",true]}"#).await;
        conn.close(1000, "").await;
    })
}

fn run(server: &Server, args: &[&str], no_color: Option<&str>) -> crate::support::cmd::Run {
    let mut tether = Tether::new()
        .args([server.url("/").as_str(), "--keep-open", "-v"])
        .args(args);
    if let Some(value) = no_color {
        tether = tether.env("NO_COLOR", value);
    }
    let run = tether.run();
    run.code(0);
    run
}

/// The `-v` lines on stderr (everything but tether's own `tether:` lines),
/// which must be there.
fn debug_lines(stderr: &str) -> Vec<&str> {
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("tether: "))
        .collect();
    assert!(!lines.is_empty(), "no -v lines: {stderr:?}");
    lines
}

#[test]
fn always_colours_stdout_and_stderr_in_a_pipe_even_with_no_color() {
    let server = json_server();
    for no_color in [None, Some("1")] {
        let run = run(
            &server,
            &["--color", "always", "--pretty", "--timestamps"],
            no_color,
        );
        let stamp = regex::Regex::new(&format!("^\x1b\\[2m{TIME}\x1b\\[0m ")).unwrap();
        let stdout = run.stdout_str();
        let pad = " ".repeat(25);
        assert_eq!(
            stamp.replace(&stdout, "TIME "),
            format!(
                "TIME {{\n{pad}  \x1b[1;34m\"a\"\x1b[0m: [\n{pad}    \x1b[36m1\x1b[0m,\n\
                 {pad}    \x1b[32m\"x\"\x1b[0m,\n{pad}    \x1b[33mtrue\x1b[0m\n{pad}  ]\n{pad}}}\n"
            ),
            "NO_COLOR {no_color:?}"
        );
        let debug = regex::Regex::new(&format!(
            "^\x1b\\[2m{TIME}\x1b\\[0m \x1b\\[34mDEBUG\x1b\\[0m "
        ))
        .unwrap();
        for line in debug_lines(&run.stderr) {
            assert!(debug.is_match(line), "{line:?}");
        }
    }
}

#[test]
fn never_and_auto_in_a_pipe_colour_nothing() {
    let server = json_server();
    let debug = regex::Regex::new(&format!("^{TIME} DEBUG [^\x1b]*$")).unwrap();
    for (args, no_color) in [
        (&["--color", "never"][..], None),
        (&["--color", "never"][..], Some("1")),
        (&["--color", "auto"][..], None),
        (&[][..], None),
        (&[][..], Some("1")),
    ] {
        let run = run(
            &server,
            &[args, &["--pretty", "--timestamps"]].concat(),
            no_color,
        );
        let stdout = run.stdout_str();
        assert!(
            !stdout.contains('\x1b'),
            "{args:?} {no_color:?}: {stdout:?}"
        );
        assert!(
            stdout.contains("{\n") && stdout.contains("\"a\": ["),
            "{stdout:?}"
        );
        assert!(
            !run.stderr.contains('\x1b'),
            "{args:?} {no_color:?}: {:?}",
            run.stderr
        );
        for line in debug_lines(&run.stderr) {
            assert!(debug.is_match(line), "{line:?}");
        }
    }
}

#[test]
fn auto_on_a_terminal_colours_unless_no_color_is_set() {
    let server = Server::echo();
    let url = server.url("/");
    for no_color in [None, Some("1")] {
        let state = tempfile::tempdir().unwrap();
        let mut command = std::process::Command::new("setsid");
        command
            .args(["--ctty", BIN, url.as_str(), "-v"])
            .env("TERM", "xterm")
            .env("XDG_STATE_HOME", state.path());
        clear_env(&mut command);
        if let Some(value) = no_color {
            command.env("NO_COLOR", value);
        }
        let mut pty = Pty::spawn(command);
        let connected = pty.expect(&format!("connected to {url}"));
        pty.expect_regex(r">(\x1b\[0m)? ");
        pty.send("\x04");
        assert_eq!(pty.exit_code(), 0, "{}", pty.all_output());
        if no_color.is_none() {
            // stderr's -v line and stdout's marker, both on the terminal.
            assert!(connected.contains("\x1b[34mDEBUG\x1b[0m"), "{connected:?}");
            assert!(
                connected.contains("\x1b[36m*\x1b[0m connected to"),
                "{connected:?}"
            );
        } else {
            assert!(connected.contains(" DEBUG connecting"), "{connected:?}");
            assert!(connected.contains("* connected to"), "{connected:?}");
            assert!(!connected.contains("\x1b[3"), "{connected:?}");
        }
    }
}

#[test]
fn usage_errors_follow_color_too() {
    // In a pipe: always colours clap's error, as it does the rest of stderr.
    let run = Tether::new()
        .args(["--color", "always", "--bogus", "ws://127.0.0.1:9"])
        .run();
    run.code(2);
    assert!(
        run.stderr
            .starts_with("\x1b[1m\x1b[31merror:\x1b[0m unexpected argument"),
        "{:?}",
        run.stderr
    );
    // On a terminal: never keeps it plain.
    let mut command = std::process::Command::new("setsid");
    command
        .args([
            "--ctty",
            BIN,
            "--color=never",
            "--bogus",
            "ws://127.0.0.1:9",
        ])
        .env("TERM", "xterm");
    clear_env(&mut command);
    let mut pty = Pty::spawn(command);
    assert_eq!(pty.exit_code(), 2);
    let output = pty.all_output();
    assert!(
        output.starts_with("error: unexpected argument '--bogus'"),
        "{output:?}"
    );
}
