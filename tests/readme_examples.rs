//! The README's examples that need no outside server, run as written: only
//! the port is changed, so parallel tests do not collide.

use std::process::Command;
use std::time::Duration;

use crate::support::cmd::{BIN, CLEARED_ENV};
use crate::support::{Server, Tether};

const README: &str = include_str!("../README.md");

/// The ```sh block of the README that starts with `first_line`.
fn sh_block(first_line: &str) -> String {
    let mut blocks = README.split("```sh\n").skip(1);
    blocks
        .find(|block| block.starts_with(first_line))
        .and_then(|block| block.split("```").next())
        .unwrap_or_else(|| panic!("no sh block starting with {first_line:?} in README.md"))
        .to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Runs `script` with `sh`, `tether` on PATH being the binary under test,
/// and the proxy variables cleared.
fn run_sh(script: &str) -> std::process::Output {
    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BIN, bin_dir.path().join("tether")).unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("sh");
    command.args(["-c", script]).env("PATH", path);
    for var in CLEARED_ENV {
        command.env_remove(var).env_remove(var.to_lowercase());
    }
    command.output().expect("running sh")
}

/// What a README example printed: the ```sh block that starts with `first_line`, run with
/// a free port in place of 9001.
struct Example {
    stdout: String,
    stderr: String,
    success: bool,
}

fn run_example(first_line: &str) -> Example {
    let script = sh_block(first_line).replace("9001", &free_port().to_string());
    let out = run_sh(&script);
    Example {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        success: out.status.success(),
    }
}

#[test]
fn the_ci_shell_example_passes_against_tether_serve() {
    let script = sh_block("#!/bin/sh").replace("9001", &free_port().to_string());
    let out = run_sh(&script);
    assert!(
        out.status.success(),
        "the README's CI example failed ({:?}):\n{script}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "{\"op\":\"ping\"}\n");
}

#[test]
fn the_feed_example_keeps_listening_when_stdin_is_empty() {
    // As under cron or systemd: stdin is at its end from the start. The
    // feed's message comes well after --linger would have closed.
    let example = sh_block("jq -c . events.json")
        .lines()
        .nth(1)
        .expect("the feed line")
        .to_owned();
    assert_eq!(
        example,
        "tether wss://feed.example.com/stream --keep-open > log.jsonl"
    );
    let server = Server::start(|mut conn| async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        conn.send_text("{\"price\":1}").await;
        conn.close(1000, "").await;
    });
    Tether::new()
        .args([&server.url("/stream"), "--keep-open"])
        .run()
        .code(0)
        .stdout_is("{\"price\":1}\n");
}

#[test]
fn the_on_connect_cmd_example_prints_the_fresh_login_then_the_echo() {
    let script = sh_block("tether serve 127.0.0.1:9001 & server=$!")
        .replace("9001", &free_port().to_string());
    let out = run_sh(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let (login, rest) = stdout.split_once('\n').unwrap_or_default();
    let pid = login.strip_prefix("login-").unwrap_or_default();
    assert!(
        out.status.success()
            && !pid.is_empty()
            && pid.bytes().all(|b| b.is_ascii_digit())
            && rest == "hi\n",
        "the README's --on-connect-cmd example printed {stdout:?} ({:?}):\n{script}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_reply_example_answers_the_echoed_ping() {
    let out = run_example("# The echo server returns the ping; --reply-json answers it.");
    let stderr = &out.stderr;
    assert_eq!(
        out.stdout, "{\"type\":\"ping\",\"id\":7}\n{\"type\":\"pong\",\"id\":7}\n",
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "tether: replied to {\"type\":\"ping\",\"id\":7} with {\"type\":\"pong\",\"id\":7}\n"
        ),
        "{stderr}"
    );
}

#[test]
fn the_captured_reply_example_passes_against_tether_serve() {
    let out = run_example("# A captured value in a reply: the echo server returns");
    let stderr = &out.stderr;
    assert_eq!(
        out.stdout,
        "{\"op\":\"welcome\",\"session\":\"s-1\"}\n{\"type\":\"ping\"}\n\
         {\"type\":\"pong\",\"session\":\"s-1\"}\n",
        "{stderr}"
    );
    assert!(out.success, "{stderr}");
    assert!(
        stderr.contains(
            "tether: replied to {\"type\":\"ping\"} with {\"type\":\"pong\",\"session\":\"s-1\"}\n"
        ),
        "{stderr}"
    );
}

#[test]
fn the_any_order_example_is_met_in_the_order_the_echo_answers() {
    let out = run_example("# Any order, against the echo server: request 1 comes back");
    let stderr = &out.stderr;
    assert_eq!(
        out.stdout,
        "{\"id\":1,\"op\":\"get\",\"value\":\"a\"}\n{\"id\":2,\"op\":\"get\"}\n\
         {\"op\":\"echo\",\"value\":\"a\"}\n",
        "{stderr}"
    );
    assert!(out.success, "{stderr}");
}

#[test]
fn the_app_ping_example_counts_three_heartbeat_round_trips() {
    let out = run_example("# The echo server sends the ping back, which is the reply");
    let stderr = &out.stderr;
    assert!(out.success, "{stderr}");
    assert_eq!(out.stdout, "{\"type\":\"ping\"}\n".repeat(3), "{stderr}");
    let pongs = stderr
        .lines()
        .filter(|l| l.starts_with("tether: pong: rtt ") && l.ends_with(" ms (heartbeat)"))
        .count();
    assert_eq!(pongs, 3, "{stderr}");
}

#[test]
fn the_confirm_by_reply_example_is_answered_by_the_echo() {
    let out = run_example("# Each echo confirms its request: by order, or by the .id");
    let stderr = &out.stderr;
    assert!(out.success, "{stderr}");
    assert_eq!(out.stdout, "{\"id\":1}\n{\"id\":2}\n", "{stderr}");
}

#[test]
fn the_resume_example_resumes_with_the_captured_id_after_the_drop() {
    let out = run_example("# Resume after a drop: the echo server drops each connection");
    let stderr = &out.stderr;
    assert_eq!(
        out.stdout,
        "{\"op\":\"welcome\",\"session\":\"s-1\"}\n{\"op\":\"subscribe\"}\n\
         {\"op\":\"resume\",\"session\":\"s-1\"}\n",
        "{stderr}"
    );
    assert!(out.success, "{stderr}");
    assert!(
        stderr.contains(
            "tether: disconnected: connection lost: the server closed the TCP connection \
             without a Close frame (1006)\n"
        ),
        "{stderr}"
    );
}
