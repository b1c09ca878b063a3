//! Fresh credentials on every connect: `--header-cmd` and `--on-connect-cmd` run before every
//! dial, against a Python `websockets` server that accepts only the token issued for each
//! connection, and their output never shows.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::python::PythonServer;
use crate::support::{Server, Tether};

/// Accepts connection N only with `X-Api-Key: s3cret-N` (so the first token is stale on the
/// second connection: 401, which is not retried), checks that the first message is
/// `login s3cret-N`, and says so. Closes the first connection with 1012 (retried); echoes on
/// the others.
const TOKEN_PER_CONNECTION: &str = r#"
import http
tokens = []

def process_request(connection, request):
    tokens.append(request.headers.get("X-Api-Key"))
    if tokens[-1] != f"s3cret-{len(tokens)}":
        return connection.respond(http.HTTPStatus.UNAUTHORIZED, "stale token\n")

async def handler(ws):
    n = len(tokens)
    login = await ws.recv()
    ok = "login ok" if login == f"login s3cret-{n}" else "bad login"
    await ws.send(f"connection {n}: {ok}")
    if n == 1:
        await ws.close(1012, "restart")
        return
    async for message in ws:
        await ws.send(message)

SERVE_KWARGS = {"process_request": process_request}
"#;

/// A command that counts its runs in `counter` and prints `format` with the count for `$n`.
fn counting(counter: &Path, format: &str) -> String {
    std::fs::write(counter, "0\n").unwrap();
    format!(
        "sh -c 'n=$(($(cat \"$0\") + 1)); echo $n > \"$0\"; echo \"{format}\"' {}",
        counter.display()
    )
}

/// stderr's lines, a reconnect's delay (jittered) shown as N.
fn delays_hidden(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .map(|l| match l.split_once("reconnecting in ") {
            Some((before, after)) => format!(
                "{before}reconnecting in N{}",
                after.trim_start_matches(char::is_numeric)
            ),
            None => l.to_owned(),
        })
        .collect()
}

/// tether with both commands, a stale `-H` of the same name, against the server.
fn fresh_session(server: &PythonServer, dir: &Path) -> Tether {
    Tether::new()
        .arg(server.url("/"))
        .args(["-H", "X-Api-Key: s3cret-stale"])
        .arg("--header-cmd")
        .arg(counting(&dir.join("tokens"), "X-Api-Key: s3cret-$n"))
        .arg("--on-connect-cmd")
        .arg(counting(&dir.join("logins"), "login s3cret-$n"))
        .args(["--keep-open", "-n", "2", "--backoff-initial", "10ms"])
}

#[test]
fn every_connect_gets_the_headers_and_messages_the_commands_print_then() {
    let server = PythonServer::start(TOKEN_PER_CONNECTION);
    let dir = tempfile::tempdir().unwrap();
    let run = fresh_session(&server, dir.path()).run();
    run.code(0)
        .stdout_is("connection 1: login ok\nconnection 2: login ok\n");
    let url = server.url("/");
    assert_eq!(
        delays_hidden(&run.stderr),
        [
            format!("tether: connected to {url}"),
            "tether: disconnected: server closed the connection with code 1012 (\"restart\")"
                .into(),
            "tether: reconnecting in N ms (attempt 2)".into(),
            format!("tether: connected to {url}"),
            "tether: closed (1000)".into(),
        ],
        "{}",
        run.describe()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tokens")).unwrap(),
        "2\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("logins")).unwrap(),
        "2\n"
    );
}

#[test]
fn the_commands_output_is_redacted_at_vvv_and_in_json() {
    let server = PythonServer::start(TOKEN_PER_CONNECTION);
    let dir = tempfile::tempdir().unwrap();
    let run = fresh_session(&server, dir.path())
        .args(["-vvv", "--json", "--json-sent"])
        .run();
    run.code(0).stderr_lacks("s3cret");
    assert!(!run.stdout_str().contains("s3cret"), "{}", run.describe());
    // The header is there, redacted, once: the stale -H of that name was replaced.
    run.stderr_has("> x-api-key: <redacted>\n")
        .stderr_has("> text 14 bytes\n");
    assert_eq!(
        run.stderr.matches("> x-api-key:").count(),
        2,
        "{}",
        run.describe()
    );
    let events = run.json_events();
    let handshakes: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "handshake")
        .collect();
    assert_eq!(handshakes.len(), 2);
    for handshake in handshakes {
        let headers = handshake["request"]["headers"].as_array().unwrap();
        let keys: Vec<_> = headers.iter().filter(|h| h[0] == "x-api-key").collect();
        assert_eq!(keys, [&serde_json::json!(["x-api-key", "<redacted>"])]);
    }
    let messages: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(
        messages,
        ["connection 1: login ok", "connection 2: login ok"]
    );
    // The login messages were sent, and are not reported.
    assert!(
        events.iter().all(|e| e["event"] != "sent"),
        "{}",
        run.describe()
    );
}

#[test]
fn a_failing_command_is_retried_as_a_connect_failure_then_exits_3() {
    let server = Server::echo();
    let run = Tether::new()
        .arg(server.url("/"))
        .args([
            "--header-cmd",
            "sh -c 'echo token service down >&2; exit 1'",
        ])
        .args([
            "--max-reconnects",
            "2",
            "--backoff-initial",
            "10ms",
            "--backoff-max",
            "10ms",
        ])
        .run();
    run.code(3);
    let lines = delays_hidden(&run.stderr);
    let failed = "--header-cmd failed: `sh` exited with status 1";
    assert_eq!(
        lines,
        [
            "token service down".to_owned(),
            format!("tether: {failed}; reconnecting in N ms (attempt 2)"),
            "token service down".to_owned(),
            format!("tether: {failed}; reconnecting in N ms (attempt 3)"),
            "token service down".to_owned(),
            format!("tether: error: {failed}; gave up after 3 attempts"),
            "tether: hint: run the command by hand: it must exit 0 and print one 'Name: value' header a line".to_owned(),
        ],
        "{}",
        run.describe()
    );
    assert!(
        server.connections().is_empty(),
        "no dial without the headers"
    );

    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--on-connect-cmd", "false", "--json"])
        .run();
    run.code(3);
    let events = run.json_events();
    let error = events.last().unwrap();
    assert_eq!(error["event"], "error");
    assert_eq!(error["kind"], "command");
    assert_eq!(error["exit_code"], 3);
    assert_eq!(
        error["message"],
        "--on-connect-cmd failed: `false` exited with status 1"
    );
}

#[test]
fn bad_output_and_overruns_fail_the_attempt_without_showing_the_output() {
    let server = Server::echo();
    let cases = [
        (
            "--header-cmd",
            "sh -c 'echo X-Ok: 1; echo Bearer s3cret'",
            "--header-cmd failed: `sh` printed line 2 without a colon: a header is 'Name: value'",
        ),
        (
            "--header-cmd",
            "printf 'X-Key: s3cret\\001\\n'",
            "--header-cmd failed: `printf` printed line 1 whose value contains characters a header cannot carry",
        ),
        (
            "--on-connect-cmd",
            "printf 's3cret\\377\\n'",
            "--on-connect-cmd failed: `printf` printed something that is not UTF-8",
        ),
        (
            "--on-connect-cmd",
            "/nonexistent/token-cmd",
            "--on-connect-cmd failed: `/nonexistent/token-cmd` could not be run: No such file or directory (os error 2)",
        ),
        (
            "--header-cmd",
            "sleep 30",
            "--header-cmd failed: `sleep` did not finish within 500ms (--connect-timeout); it was killed",
        ),
    ];
    for (flag, command, error) in cases {
        let run = Tether::new()
            .arg(server.url("/"))
            .args([flag, command, "--connect-timeout", "500ms"])
            .deadline(Duration::from_secs(10))
            .run();
        run.code(3).stderr_lacks("s3cret");
        let hint = if flag == "--header-cmd" {
            "run the command by hand: it must exit 0 and print one 'Name: value' header a line"
        } else {
            "run the command by hand: it must exit 0 and print one message a line"
        };
        assert_eq!(
            run.stderr,
            format!("tether: error: {error}\ntether: hint: {hint}\n"),
            "{command}"
        );
    }
    for (command, error) in [
        ("", "--header-cmd: the command is empty"),
        (
            "echo 'open",
            "--header-cmd: cannot split the command into words (an unclosed quote or a trailing backslash)",
        ),
    ] {
        let run = Tether::new()
            .arg(server.url("/"))
            .args(["--header-cmd", command])
            .run();
        run.code(2);
        assert_eq!(run.error_line(), format!("tether: error: {error}"));
    }
}

#[test]
fn an_interrupt_kills_a_running_command() {
    let server = Server::echo();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let mut tether = Tether::new()
        .arg(server.url("/"))
        .arg("-v")
        .arg("--header-cmd")
        .arg(format!(
            "sh -c 'echo $$ > \"$0.tmp\"; mv \"$0.tmp\" \"$0\"; exec sleep 60' {}",
            pid_file.display()
        ))
        .args(["--connect-timeout", "60s"])
        .deadline(Duration::from_secs(10))
        .spawn();
    tether.stderr_line("running --header-cmd (sh)");
    let started = Instant::now();
    let pid = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            break pid.trim().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the command never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    tether.signal("INT");
    let (code, _) = tether.wait();
    assert_eq!(code, Some(130));
    // Killed, and reaped (by tether or, once it exited, by init).
    let proc = format!("/proc/{pid}");
    let gone = |proc: &str| match std::fs::read_to_string(format!("{proc}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.contains(") Z "),
    };
    let started = Instant::now();
    while !gone(&proc) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the command outlived tether"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
