//! Smoke-test mode end to end: the real binary against the built-in echo
//! server (`tether serve`), in-process servers and a scripted Python
//! `websockets` server. Each failure is checked for its exit code and for a
//! diagnostic that names what was expected and what arrived.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::cmd::BIN;
use crate::support::python::{PythonServer, close_with};
use crate::support::server::binary;
use crate::support::{Server, Tether, free_port, kill_and_reap, wait_for};

/// A run that must end long before this was ended by the server, not by
/// `--timeout`.
const LONG_TIMEOUT: &str = "60s";
const HARNESS_DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn send_and_expect_pass_with_a_clean_close_seen_by_the_server() {
    let server = Server::echo();
    Tether::new()
        .args([&server.url("/"), "--send", "hello", "--expect", "^hello$"])
        .args(["--timeout", "10s"])
        .run()
        .code(0)
        .stdout_is("hello\n")
        .stderr_has("smoke test passed: 2 steps");
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].texts(), ["hello"]);
    assert_eq!(conns[0].close, Some((1000, String::new())), "a clean close");
}

/// `tether serve` on a free port, stopped on drop.
struct BuiltInServer {
    child: Child,
    url: String,
}

impl BuiltInServer {
    fn start() -> BuiltInServer {
        let mut child = Command::new(BIN)
            .args(["serve", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tether serve");
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        BuiltInServer { child, url }
    }
}

impl Drop for BuiltInServer {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

#[test]
fn the_built_in_echo_server_closes_its_clients_with_1001_on_sigterm() {
    // It used to die with the connections, which clients see as 1006.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let mut serve = Tether::new()
        .args(["serve", "127.0.0.1:0"])
        .deadline(HARNESS_DEADLINE)
        .spawn();
    let listening = serve.stderr_line("listening on");
    assert_eq!(
        listening,
        format!(
            "tether: echo server listening on {}",
            listening.rsplit(' ').next().unwrap()
        )
    );
    let url = listening.rsplit(' ').next().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut clients = runtime.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..2 {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            // Echoed: the connection is up and served.
            ws.send(Message::text("hi")).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hi"));
            clients.push(ws);
        }
        clients
    });
    serve.signal("TERM");
    runtime.block_on(async {
        for ws in &mut clients {
            let close = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("no Close from the server")
                .unwrap()
                .unwrap();
            let Message::Close(Some(frame)) = close else {
                panic!("expected a Close frame, got {close:?}");
            };
            assert_eq!(frame.code, CloseCode::Away);
            assert_eq!(frame.reason.as_str(), "going away");
            // tungstenite answers the Close; then the server ends the TCP.
            assert!(ws.next().await.is_none());
        }
    });
    serve.stderr_line("tether: error: interrupted");
    let (code, stdout) = serve.wait();
    assert_eq!(code, Some(130), "the exit code of an interrupted run");
    assert!(stdout.is_empty(), "{stdout:?}");
}

#[test]
fn the_built_in_echo_server_drops_each_connection_after_drop_after_messages() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let mut serve = Tether::new()
        .args(["serve", "127.0.0.1:0", "--drop-after", "3"])
        .deadline(HARNESS_DEADLINE)
        .spawn();
    let listening = serve.stderr_line("listening on");
    let url = listening.rsplit(' ').next().unwrap().to_owned();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // Each connection counts from zero: two in a row see the same.
        for _ in 0..2 {
            let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
            for i in 0..5 {
                ws.feed(Message::text(i.to_string())).await.unwrap();
            }
            ws.feed(Message::binary(vec![7u8])).await.unwrap();
            ws.flush().await.unwrap();
            let mut got = Vec::new();
            let end = loop {
                match tokio::time::timeout(Duration::from_secs(10), ws.next())
                    .await
                    .expect("the server neither echoed nor dropped")
                {
                    Some(Ok(message)) => got.push(message),
                    other => break other,
                }
            };
            assert_eq!(got, ["0", "1", "2"].map(Message::text));
            // No Close frame: the TCP connection just ends.
            assert!(
                matches!(end, None | Some(Err(_))),
                "the connection ended with {end:?}"
            );
        }
    });
    serve.signal("TERM");
    assert_eq!(serve.wait().0, Some(130));
}

#[test]
fn the_built_in_echo_server_passes_flags_and_a_script() {
    let server = BuiltInServer::start();
    Tether::new()
        .args([&server.url, "--send", r#"{"op":"ping"}"#])
        .args(["--expect", r#""op":"ping""#, "--timeout", "10s"])
        .run()
        .code(0)
        .stdout_is("{\"op\":\"ping\"}\n");
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "echo.txt",
        "send one\n\
         send-binary 00ff6869\n\
         expect ^one$\n\
         expect-binary ^00ff\n\
         ping\n\
         close 4001 bye\n\
         expect-close 4001\n",
    );
    Tether::new()
        .arg(&server.url)
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "10s"])
        .run()
        .code(0)
        .stdout_is("one\n00ff6869\n");
}

#[test]
fn a_wrong_expectation_fails_with_7_as_soon_as_the_server_closes() {
    let server = PythonServer::start(&close_with(1000, "bye"));
    let run = Tether::new()
        .args([&server.url("/"), "--send", "hello", "--expect", "nope"])
        .args(["--timeout", LONG_TIMEOUT])
        .deadline(HARNESS_DEADLINE)
        .run();
    run.code(7)
        .stdout_is("hello\n")
        .stderr_has("expectation not met: --expect nope: the server closed the connection (code 1000 \"bye\")")
        .stderr_has("1 message was received:\n    #1: hello");
}

#[test]
fn a_server_that_never_answers_fails_with_6_at_the_deadline() {
    let server = Server::start(|mut conn| async move {
        // Reads everything, answers nothing.
        while conn.recv().await.is_some() {}
    });
    let run = Tether::new()
        .args([&server.url("/"), "--send", "ping", "--expect", "pong"])
        .args(["--timeout", "1s"])
        .run();
    run.code(6)
        .stderr_has("deadline reached: --timeout 1s ran out after waiting")
        .stderr_has("for --expect pong")
        .stderr_has("no messages were received");
    assert!(run.elapsed >= Duration::from_secs(1), "{:?}", run.elapsed);
    assert_eq!(server.connections()[0].texts(), ["ping"]);
}

#[test]
fn the_deadline_is_named_as_it_was_written() {
    // humantime printed 1.5s as "1s 500ms".
    let server = Server::start(|mut conn| async move { while conn.recv().await.is_some() {} });
    let run = Tether::new()
        .args([&server.url("/"), "--expect", "pong"])
        .args(["--timeout", "1.5s"])
        .run();
    run.code(6).stdout_is("");
    assert!(
        run.error_line()
            .starts_with("tether: error: deadline reached: --timeout 1.5s ran out after waiting "),
        "{}",
        run.describe()
    );
}

#[test]
fn the_deadline_covers_connecting() {
    // Accepts TCP but never answers the upgrade: only --timeout can end it.
    let server = Server::raw(|stream| async move {
        let _hold = stream;
        std::future::pending::<()>().await;
    });
    Tether::new()
        .args([&server.url("/"), "--expect", "anything", "--timeout", "1s"])
        .run()
        .code(6)
        .stderr_has("--timeout 1s ran out before the connection to")
        .stderr_lacks("could not connect");
}

#[test]
fn an_unreachable_server_is_a_connect_failure_not_a_timeout() {
    let port = free_port();
    Tether::new()
        .arg(format!("ws://127.0.0.1:{port}/"))
        .args(["--send", "hi", "--expect", "hi", "--timeout", LONG_TIMEOUT])
        .deadline(HARNESS_DEADLINE)
        .run()
        .code(3)
        .stderr_has("could not connect")
        .stderr_lacks("deadline");
}

/// Answers `add` and `echo` requests in JSON, closes after 2 s of silence,
/// and prints the close code it received.
const SCRIPTED: &str = r#"
import asyncio, json
import websockets

async def handler(ws):
    try:
        while True:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=2)
            except asyncio.TimeoutError:
                await ws.close(1000, "idle")
                return
            request = json.loads(message)
            if request["op"] == "add":
                await ws.send(json.dumps({"sum": request["a"] + request["b"]}))
            elif request["op"] == "echo":
                await ws.send(json.dumps({"echo": request["text"]}))
    except websockets.ConnectionClosed as closed:
        print("closed", closed.rcvd.code, closed.rcvd.reason, flush=True)
"#;

const SCENARIO: &str = r#"# Two requests, each with its answer; then a ping and a close.
send {"op":"add","a":2,"b":3}
expect "sum": 5\b

send {"op":"echo","text":"hi"}
expect "echo": "hi"
ping are you there?
close 4001 done testing
expect-close 4001
"#;

#[test]
fn a_scenario_with_two_exchanges_a_ping_and_close_4001_passes() {
    let server = PythonServer::start(SCRIPTED);
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), "scenario.txt", SCENARIO);
    Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "10s", "-v"])
        .run()
        .code(0)
        .stdout_is("{\"sum\": 5}\n{\"echo\": \"hi\"}\n")
        .stderr_has("step 5/7 passed")
        .stderr_has("ping are you there?; rtt")
        .stderr_has("smoke test passed: 7 steps");
    wait_for("the server to report the close", || {
        server.stdout().contains("closed 4001 done testing")
    });
}

#[test]
fn the_same_scenario_with_one_expectation_changed_fails_on_its_line() {
    let server = PythonServer::start(SCRIPTED);
    let dir = tempfile::tempdir().unwrap();
    let changed = SCENARIO.replace(r#""echo": "hi""#, r#""echo": "bye""#);
    let script = write_script(dir.path(), "scenario.txt", &changed);
    let run = Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(&script)
        .args(["--timeout", LONG_TIMEOUT])
        .deadline(HARNESS_DEADLINE)
        .run();
    run.code(7)
        .stderr_has(&format!(
            "expectation not met: {}:6 (expect \"echo\": \"bye\"): the server closed the connection (code 1000 \"idle\")",
            script.display()
        ))
        .stderr_has("#2: {\"echo\": \"hi\"}");
}

#[test]
fn count_3_exits_after_exactly_three_messages() {
    let server = Server::start(|mut conn| async move {
        for i in 0..10 {
            conn.send_text(&format!("tick {i}")).await;
        }
        conn.echo().await;
    });
    // --timeout alone makes this a smoke run: the count ends it, not stdin.
    let running = Tether::new()
        .args([&server.url("/"), "--count", "3", "--timeout", "10s"])
        .spawn();
    let (code, lines) = running.wait();
    assert_eq!(code, Some(0));
    assert_eq!(lines, ["tick 0", "tick 1", "tick 2"]);
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].close, Some((1000, String::new())));
    Tether::new()
        .args([&server.url("/"), "--count", "3", "--expect", "tick 2"])
        .args(["--timeout", "10s"])
        .run()
        .code(0)
        .stdout_is("tick 0\ntick 1\ntick 2\n");
    Tether::new()
        .args([&server.url("/"), "--count", "3", "--expect", "tick 5"])
        .args(["--timeout", "10s"])
        .run()
        .code(7)
        .stdout_is("tick 0\ntick 1\ntick 2\n")
        .stderr_has("--expect 'tick 5': --count 3 was reached")
        .stderr_has("#3: tick 2");
}

#[test]
fn strict_fails_on_a_message_that_matches_nothing() {
    let server = Server::start(|mut conn| async move {
        conn.send_text("welcome\u{1b}[2J\nto the server").await;
        conn.echo().await;
    });
    Tether::new()
        .args([&server.url("/"), "--send", "hi", "--expect", "^hi$"])
        .args(["--timeout", "10s"])
        .run()
        .code(0);
    Tether::new()
        .args([
            &server.url("/"),
            "--send",
            "hi",
            "--expect",
            "^hi$",
            "--strict",
        ])
        .args(["--timeout", "10s"])
        .run()
        .code(7)
        .stderr_has(r"message #1 did not match it (--strict): welcome\e[2J\nto the server");
}

#[test]
fn a_long_binary_message_in_a_diagnostic_is_counted_in_bytes() {
    // Cut in its hex form, but 100 bytes, not the 200 hex characters.
    let server = Server::start(|mut conn| async move {
        conn.send(binary(&[0xab; 100])).await;
        conn.close(1000, "").await;
    });
    let cut = format!("{}... (100 bytes in all)", "ab".repeat(60));
    let run = Tether::new()
        .args([&server.url("/"), "--expect", "nope", "--timeout", "10s"])
        .run();
    run.code(7)
        .stderr_has(&format!("1 message was received:\n    #1: [binary] {cut}"));
    Tether::new()
        .args([&server.url("/"), "--expect", "nope", "--strict"])
        .args(["--timeout", "10s"])
        .run()
        .code(7)
        .stderr_has(&format!("message #1 did not match it (--strict): {cut}"));
    // And so is the match -v reports.
    Tether::new()
        .args([
            &server.url("/"),
            "--expect",
            "^abab",
            "-v",
            "--timeout",
            "10s",
        ])
        .run()
        .code(0)
        .stderr_has(&format!(
            ": --expect ^abab; matched {}... (100 bytes in all)\n",
            "ab".repeat(40)
        ));
}

#[test]
fn binary_messages_are_matched_and_printed_as_hex() {
    let server = Server::start(|mut conn| async move {
        conn.send(binary(b"\x00\xffhi")).await;
        conn.echo().await;
    });
    Tether::new()
        .args([
            &server.url("/"),
            "--expect",
            "^00ff6869$",
            "--timeout",
            "10s",
        ])
        .run()
        .code(0)
        .stdout_is("00ff6869\n");
    Tether::new()
        .args([
            &server.url("/"),
            "--expect",
            "^AP9oaQ==$",
            "--timeout",
            "10s",
        ])
        .args(["--binary-format", "base64"])
        .run()
        .code(0)
        .stdout_is("AP9oaQ==\n");
}

#[test]
fn sends_follow_the_on_connect_messages_in_order() {
    let server = Server::echo();
    Tether::new()
        .args([&server.url("/"), "--on-connect", "auth", "--send", "one"])
        .args(["--send", "two", "--expect", "one", "--expect", "two"])
        .args(["--timeout", "10s"])
        .run()
        .code(0)
        .stdout_is("auth\none\ntwo\n");
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].texts(), ["auth", "one", "two"]);
}

#[test]
fn stdin_is_sent_when_no_step_sends() {
    let server = Server::echo();
    Tether::new()
        .args([
            &server.url("/"),
            "--expect",
            "^from stdin$",
            "--timeout",
            "10s",
        ])
        .stdin("from stdin\n")
        .run()
        .code(0)
        .stdout_is("from stdin\n");
    // With --send, stdin is left alone.
    let server = Server::echo();
    Tether::new()
        .args([&server.url("/"), "--send", "flag", "--expect", "flag"])
        .args(["--timeout", "10s"])
        .stdin("from stdin\n")
        .run()
        .code(0);
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].texts(), ["flag"]);
}

#[test]
fn the_servers_close_code_can_be_expected() {
    let server = Server::start(|mut conn| async move {
        conn.send_text("going").await;
        conn.close(4002, "maintenance").await;
    });
    let dir = tempfile::tempdir().unwrap();
    let expect = |code: u16| {
        let script = write_script(
            dir.path(),
            &format!("close-{code}.txt"),
            &format!("expect going\nexpect-close {code}\n"),
        );
        Tether::new()
            .arg(server.url("/"))
            .arg("--script")
            .arg(script)
            .args(["--timeout", "10s"])
            .run()
    };
    expect(4002).code(0);
    expect(4003)
        .code(7)
        .stderr_has(":2 (expect-close 4003): the server closed with code 4002, not 4003");
    // Without expect-close, an unexpected close code is the usual exit 9.
    Tether::new()
        .args([&server.url("/"), "--send", "x", "--timeout", "10s"])
        .run()
        .code(9);
}

#[test]
fn json_reports_each_step_and_a_summary() {
    let server = Server::echo();
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        "json.txt",
        "send ping\nexpect ^ping$\nping\nwait 200ms\nexpect never\n",
    );
    let run = Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "1s", "--json"])
        .run();
    run.code(6);
    let events = run.json_events();
    let steps: Vec<_> = events.iter().filter(|e| e["event"] == "step").collect();
    let statuses: Vec<_> = steps
        .iter()
        .map(|e| (e["step"].as_u64().unwrap(), e["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "passed"),
            (2, "passed"),
            (3, "passed"),
            (4, "passed"),
            (5, "failed")
        ]
    );
    assert_eq!(steps[1]["action"], "expect");
    assert_eq!(steps[1]["matched"], "ping");
    assert_eq!(steps[1]["line"], 2);
    assert!(steps[2]["rtt_ms"].as_f64().unwrap() >= 0.0);
    assert!(steps[3]["duration_ms"].as_f64().unwrap() >= 200.0);
    assert_eq!(steps[4]["text"], "expect never");
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary", "{}", run.describe());
    assert_eq!(summary["result"], "fail");
    assert_eq!(summary["exit_code"], 6);
    assert_eq!(summary["error"], "timeout");
    assert_eq!(summary["failed_step"], 5);
    assert_eq!(summary["steps"], 5);
    assert_eq!(summary["steps_passed"], 4);
    assert_eq!(summary["sent"], 1);
    assert_eq!(summary["received"], 1);
    assert_eq!(summary["rtt_ms"]["count"], 1);
    assert!(summary["duration_ms"].as_f64().unwrap() >= 1000.0);
    assert!(summary["connect_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn script_mistakes_are_usage_errors_that_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), "bad.txt", "send a\n\nexpect (oops\n");
    Tether::new()
        .args(["ws://127.0.0.1:1/", "--script"])
        .arg(&script)
        .run()
        .code(2)
        .stderr_has(&format!(
            "{}:3: \"(oops\" is not a valid regex",
            script.display()
        ));
    Tether::new()
        .args(["ws://127.0.0.1:1/", "--script", "-"])
        .stdin("send a\nsned b\n")
        .run()
        .code(2)
        .stderr_has("<stdin>:2: unknown step \"sned\"");
    Tether::new()
        .args(["ws://127.0.0.1:1/", "--script", "x", "--send", "y"])
        .run()
        .code(2)
        .stderr_has("cannot be used with");
}

fn write_script(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A CI runner that loses its terminal sends SIGHUP: the smoke test ends as
/// interrupted (130), with a clean Close, not killed without one.
#[test]
fn sighup_interrupts_a_smoke_test_with_a_clean_close() {
    let server = Server::echo();
    let mut tether = Tether::new()
        .args([
            &server.url("/"),
            "--expect",
            "never comes",
            "--timeout",
            "30s",
        ])
        .spawn();
    tether.stderr_line("connected to");
    tether.signal("HUP");
    let (code, _) = tether.wait();
    assert_eq!(code, Some(130));
    let conns = server.wait_until(Duration::from_secs(10), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].close, Some((1000, "interrupted".to_string())));
}
