//! Matching messages as text, regex or jq (`--expect-text`, `--expect`,
//! `--expect-json` and their scenario steps), captures and templates, end to
//! end: the real binary against the in-process echo server and Python
//! `websockets` servers that speak a small JSON protocol.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::python::PythonServer;
use crate::support::{Server, Tether};

const HARNESS_DEADLINE: Duration = Duration::from_secs(20);

fn write_script(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("scenario.txt");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn json_and_text_expectations_match_what_a_regex_cannot() {
    let server = Server::echo();
    Tether::new()
        .args([
            &server.url("/"),
            "--send",
            r#"{"sum": 5}"#,
            "--send",
            "1+1=2",
        ])
        .args(["--expect-json", ".sum == 5", "--expect-text", "1+1=2"])
        .args(["--timeout", "10s"])
        .deadline(HARNESS_DEADLINE)
        .run()
        .code(0)
        .stdout_is("{\"sum\": 5}\n1+1=2\n")
        .stderr_has("smoke test passed: 4 steps");
}

#[test]
fn expectations_from_different_flags_keep_the_order_they_were_given() {
    let server = Server::echo();
    let base = [server.url("/"), "--send".into(), "first".into()];
    let base = base
        .iter()
        .map(String::as_str)
        .chain(["--send", r#"{"n":2}"#, "--strict"]);
    let base: Vec<&str> = base.chain(["--timeout", "10s"]).collect();
    Tether::new()
        .args(&base)
        .args(["--expect-text", "first", "--expect-json", ".n == 2"])
        .deadline(HARNESS_DEADLINE)
        .run()
        .code(0);
    // The JSON one first: "first" arrives while it waits, and --strict fails it.
    let run = Tether::new()
        .args(&base)
        .args(["--expect-json", ".n == 2", "--expect-text", "first"])
        .deadline(HARNESS_DEADLINE)
        .run();
    run.code(7);
    assert_eq!(
        run.error_line(),
        "tether: error: expectation not met: --expect-json '.n == 2': message #1 did not match \
         it (--strict): first, after waiting 0 ms"
            .replace("0 ms", &waited(run.error_line())),
        "{}",
        run.describe()
    );
}

/// The "after waiting N ms" of a diagnostic, which varies.
fn waited(line: &str) -> String {
    let at = line.rfind("after waiting ").expect("a wait") + "after waiting ".len();
    line[at..].to_owned()
}

#[test]
fn a_regex_that_does_not_compile_suggests_expect_text() {
    let run = Tether::new()
        .args(["ws://127.0.0.1:1/", "--expect", r#"{"sum": 5}"#])
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        "tether: error: --expect \"{\\\"sum\\\": 5}\" is not a valid regex: repetition operator \
         missing expression (to match it as plain text, use --expect-text)\n"
    );
}

#[test]
fn an_invalid_jq_filter_is_a_usage_error_naming_it() {
    let run = Tether::new()
        .args(["ws://127.0.0.1:1/", "--expect-json", ".sum =="])
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        "tether: error: --expect-json \".sum ==\" is not a valid jq filter: expected term at the end\n"
    );
    let run = Tether::new()
        .args(["ws://127.0.0.1:1/", "--expect-json", "nosuch"])
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        "tether: error: --expect-json \"nosuch\" is not a valid jq filter: filter nosuch is not defined\n"
    );
}

/// Hands out a fresh session id, and answers only requests that carry it
/// and the token; anything else is closed with 4001 or 4003.
const SESSIONS: &str = r#"
import asyncio, json, secrets
import websockets

async def handler(ws):
    session = secrets.token_hex(8)
    await ws.send(json.dumps({"op": "hello"}))
    await ws.send(json.dumps({"op": "welcome", "session": session}))
    async for message in ws:
        request = json.loads(message)
        if request.get("session") != session:
            await ws.close(4001, "unknown session")
            return
        if request.get("token") != "t0ken-from-ci":
            await ws.close(4003, "bad token")
            return
        await ws.send(json.dumps({"op": "ok", "id": request["id"]}))
"#;

const SESSION_SCENARIO: &str = r#"expect-json .op == "welcome" capture session=.session
send {"op":"auth","session":"{{session}}","token":"{{env.WS_TOKEN}}","id":1}
expect-json .op == "ok" and .id == 1
"#;

#[test]
fn a_captured_session_id_and_a_token_from_the_environment_go_into_a_later_send() {
    let server = PythonServer::start(SESSIONS);
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), SESSION_SCENARIO);
    let run = Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "10s", "-v"])
        .env("WS_TOKEN", "t0ken-from-ci")
        .deadline(HARNESS_DEADLINE)
        .run();
    run.code(0)
        .stderr_has("smoke test passed: 3 steps")
        // The step is reported as written: the token is not in the log.
        .stderr_has("\"token\":\"{{env.WS_TOKEN}}\"")
        .stderr_lacks("t0ken-from-ci");
    let lines = run.stdout_lines();
    assert_eq!(lines.len(), 3, "{}", run.describe());
    assert_eq!(lines[0], r#"{"op": "hello"}"#);
    assert!(
        lines[1].starts_with(r#"{"op": "welcome", "session": ""#),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], r#"{"op": "ok", "id": 1}"#);
}

#[test]
fn without_the_capture_the_same_server_refuses_and_the_run_fails() {
    let server = PythonServer::start(SESSIONS);
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        &SESSION_SCENARIO
            .replace(" capture session=.session", "")
            .replace("{{session}}", "s"),
    );
    let run = Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "10s"])
        .env("WS_TOKEN", "t0ken-from-ci")
        .deadline(HARNESS_DEADLINE)
        .run();
    // Exit 9: the server closed without confirming what it was sent.
    run.code(9)
        .stderr_has(&format!(
            "the smoke test stopped at {}:3 (expect-json .op == \"ok\" and .id == 1)",
            script.display()
        ))
        .stderr_has("server closed the connection with code 4001 (\"unknown session\")");
}

#[test]
fn a_missing_variable_is_a_usage_error_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), "send {\"s\":\"{{session}}\"}\n");
    let run = Tether::new()
        .args(["ws://127.0.0.1:1/", "--script"])
        .arg(&script)
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        format!(
            "tether: error: {}:1: {{{{session}}}} is not captured by an earlier step (capture it \
             with e.g. expect-json FILTER capture session=.session, or use {{{{env.session}}}})\n",
            script.display()
        )
    );
    let script = write_script(dir.path(), SESSION_SCENARIO);
    let run = Tether::new()
        .args(["ws://127.0.0.1:1/", "--script"])
        .arg(&script)
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        format!(
            "tether: error: {}:2: {{{{env.WS_TOKEN}}}}: the environment variable WS_TOKEN is not set\n",
            script.display()
        )
    );
    let run = Tether::new()
        .args(["ws://127.0.0.1:1/", "--send", "{{id}}"])
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        "tether: error: --send '{{id}}': {{id}} cannot be filled in: --send messages go out \
         before any expectation captures a value (use a --script with capture, or {{env.id}})\n"
    );
}

#[test]
fn send_and_on_connect_take_values_from_the_environment() {
    let server = Server::echo();
    Tether::new()
        .args([&server.url("/"), "--on-connect", r#"{"token":"{{env.T}}"}"#])
        .args(["--send", "user {{env.U}}"])
        .args([
            "--expect-json",
            r#".token == "abc""#,
            "--expect-text",
            "user me",
        ])
        .args(["--timeout", "10s"])
        .env("T", "abc")
        .env("U", "me")
        .deadline(HARNESS_DEADLINE)
        .run()
        .code(0)
        .stdout_is("{\"token\":\"abc\"}\nuser me\n");
    let run = Tether::new()
        .args([&server.url("/"), "--on-connect", "{{env.NOT_SET_AT_ALL}}"])
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        "tether: error: --on-connect '{{env.NOT_SET_AT_ALL}}': {{env.NOT_SET_AT_ALL}}: the \
         environment variable NOT_SET_AT_ALL is not set\n"
    );
}

#[test]
fn a_failed_json_expectation_shows_what_its_filter_made_of_each_message() {
    let server = Server::echo();
    let run = Tether::new()
        .args([
            &server.url("/"),
            "--send",
            r#"{"sum":4}"#,
            "--send",
            "hello",
        ])
        .args(["--send", "[1]", "--send", r#"{"sum":null}"#])
        .args(["--expect-json", ".sum == 5", "--timeout", "1s"])
        .deadline(HARNESS_DEADLINE)
        .run();
    run.code(6);
    let error = run
        .stderr
        .split_once("tether: error: ")
        .expect("an error")
        .1;
    assert_eq!(
        error.replacen(
            &waited(error.lines().next().unwrap()),
            "N ms for --expect-json '.sum == 5'",
            1
        ),
        "deadline reached: --timeout 1s ran out after waiting N ms for --expect-json '.sum == 5'
  4 messages were received:
    #1: {\"sum\":4}
      .sum == 5 gave: false
    #2: hello
      .sum == 5 gave: not JSON
    #3: [1]
      .sum == 5 gave: error: cannot index [1] with \"sum\"
    #4: {\"sum\":null}
      .sum == 5 gave: false
",
        "{}",
        run.describe()
    );
}

/// Answers three requests only once all three are in, last first, and
/// never answers an id in `SKIP`; then echoes `echo` requests.
const OUT_OF_ORDER: &str = r#"
import asyncio, json
import websockets

SKIP = {SKIPPED}

async def handler(ws):
    pending = []
    async for message in ws:
        request = json.loads(message)
        if "echo" in request:
            await ws.send(json.dumps({"echo": request["echo"]}))
            continue
        pending.append(request)
        if len(pending) == 3:
            for r in reversed(pending):
                if r["id"] not in SKIP:
                    await ws.send(json.dumps({"id": r["id"], "value": "v%d" % r["id"]}))
"#;

const ANY_ORDER_SCENARIO: &str = r#"send {"id":1}
send {"id":2}
send {"id":3}
expect-any-order
  expect-json .id == 1 capture one=.value
  expect-json .id == 2
  expect-text "id": 3
end
send {"echo":"{{one}}"}
expect-json .echo == "v1"
"#;

#[test]
fn replies_that_come_in_any_order_meet_an_expect_any_order_block() {
    let server = PythonServer::start(&OUT_OF_ORDER.replace("{SKIPPED}", "set()"));
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), ANY_ORDER_SCENARIO);
    Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(&script)
        .args(["--strict", "--timeout", "10s"])
        .deadline(HARNESS_DEADLINE)
        .run()
        .code(0)
        .stdout_is(
            "{\"id\": 3, \"value\": \"v3\"}\n{\"id\": 2, \"value\": \"v2\"}\n\
             {\"id\": 1, \"value\": \"v1\"}\n{\"echo\": \"v1\"}\n",
        )
        .stderr_has("smoke test passed: 6 steps");
}

#[test]
fn an_any_order_block_that_times_out_names_what_is_still_missing() {
    let server = PythonServer::start(&OUT_OF_ORDER.replace("{SKIPPED}", "{2}"));
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), ANY_ORDER_SCENARIO);
    let run = Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "2s"])
        .deadline(HARNESS_DEADLINE)
        .run();
    run.code(6);
    let line = run.error_line();
    assert_eq!(
        line.replacen(&waited(line), "N s for", 1),
        format!("tether: error: deadline reached: --timeout 2s ran out after waiting N s for"),
        "{}",
        run.describe()
    );
    run.stderr_has(&format!(
        " for {}:4 (expect-any-order, 2 of 3 met; still missing: expect-json .id == 2 (line 6))\n  2 messages were received:",
        script.display()
    ));
}

#[test]
fn any_order_block_mistakes_name_their_line() {
    let cases = [
        (
            "expect-any-order\nexpect x\n",
            "1: this expect-any-order block has no end",
        ),
        (
            "expect-any-order\nsend x\nend\n",
            "2: only expect steps can be in the expect-any-order block of line 1 (end it first)",
        ),
        ("end\n", "1: end without an expect-any-order block to end"),
        (
            "expect-any-order\nend\n",
            "2: the expect-any-order block of line 1 has no expect steps",
        ),
        (
            "expect-any-order\nexpect-any-order\n",
            "2: expect-any-order blocks do not nest (one is open since line 1)",
        ),
    ];
    for (text, want) in cases {
        let run = Tether::new()
            .args(["ws://127.0.0.1:1/", "--script", "-"])
            .stdin(text)
            .run();
        run.code(2);
        assert_eq!(
            run.stderr,
            format!("tether: error: <stdin>:{want}\n"),
            "{text:?}"
        );
    }
}

/// A server with resumable sessions: a new connection gets a welcome with a
/// fresh session id and is aborted (no Close) at its first request; a
/// connection whose first message is not a resume of the last session is
/// closed with 4002. A resumed one gets an application ping it wants
/// answered with the session id, then `done`.
const RESUMABLE: &str = r#"
import asyncio, json
import websockets

state = {"n": 0, "session": None}

async def handler(ws):
    first = None
    if state["session"] is not None:
        first = json.loads(await ws.recv())
        if first != {"op": "resume", "session": state["session"]}:
            await ws.close(4002, "expected a resume of " + state["session"])
            return
    if first is None:
        state["n"] += 1
        state["session"] = "s-%d" % state["n"]
        await ws.send(json.dumps({"op": "welcome", "session": state["session"]}))
        await ws.recv()
        ws.transport.abort()
        return
    await ws.send(json.dumps({"op": "resumed", "session": state["session"]}))
    await ws.send(json.dumps({"type": "ping", "n": 1}))
    async for message in ws:
        answer = json.loads(message)
        if answer.get("type") != "pong":
            continue
        if answer != {"type": "pong", "n": 1, "session": state["session"]}:
            await ws.close(4003, "bad pong")
            return
        await ws.send(json.dumps({"op": "done"}))
"#;

const RESUME_SCENARIO: &str = r#"reply-json .type == "ping" => {"type":"pong","n":{{.n}},"session":"{{session}}"}
expect-json .op == "welcome" capture session=.session
send {"op":"subscribe"}
expect-json .op == "resumed"
expect-json .op == "done"
"#;

const RESUME: &str = r#"{"op":"resume","session":"{{session}}"}"#;

/// `--on-connect` with a value captured on an earlier connection.
fn resume_run(script: &Path, on_connect: &[&str], extra: &[&str]) -> crate::support::cmd::Run {
    let server = PythonServer::start(RESUMABLE);
    let mut tether = Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(script)
        .args(["--timeout", "10s", "--max-reconnects", "1"])
        .args(["--backoff-initial", "10ms", "--backoff-max", "10ms"])
        .args(["--replay-window", "0", "--json"])
        .args(extra);
    for message in on_connect {
        tether = tether.args(["--on-connect", message]);
    }
    tether.deadline(HARNESS_DEADLINE).run()
}

/// The `--json` events that say what crossed the wire, without their times.
fn wire_events(run: &crate::support::cmd::Run) -> Vec<serde_json::Value> {
    run.json_events()
        .into_iter()
        .filter(|e| {
            ["message", "sent", "replied", "disconnected"].contains(&e["event"].as_str().unwrap())
        })
        .map(|mut e| {
            let map = e.as_object_mut().unwrap();
            map.remove("time");
            map.remove("reconnect_in_ms");
            e
        })
        .collect()
}

fn text(event: &str, data: &str) -> serde_json::Value {
    match event {
        "sent" => {
            serde_json::json!({"event": "sent", "type": "text", "data": data, "replay": false})
        }
        _ => serde_json::json!({"event": event, "type": "text", "data": data}),
    }
}

const ABORTED: &str =
    "connection lost: the server closed the TCP connection without a Close frame (1006)";

#[test]
fn on_connect_resumes_with_a_captured_session_and_a_reply_carries_it() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), RESUME_SCENARIO);
    let run = resume_run(&script, &[RESUME], &["--json-sent", "-v"]);
    run.code(0);
    assert_eq!(
        wire_events(&run),
        [
            text("message", r#"{"op": "welcome", "session": "s-1"}"#),
            text("sent", r#"{"op":"subscribe"}"#),
            serde_json::json!({"event": "disconnected", "code": null, "reason": ABORTED, "will_retry": true}),
            // The first connection had nothing to resume: no resume was sent.
            text("sent", r#"{"op":"resume","session":"s-1"}"#),
            text("message", r#"{"op": "resumed", "session": "s-1"}"#),
            text("message", r#"{"type": "ping", "n": 1}"#),
            serde_json::json!({"event": "replied", "to": r#"{"type": "ping", "n": 1}"#,
                "reply": r#"{"type":"pong","n":1,"session":"s-1"}"#}),
            text("message", r#"{"op": "done"}"#),
        ],
        "{}",
        run.describe()
    );
    let notes: Vec<&str> = run
        .stderr
        .lines()
        .filter_map(|l| l.split_once(" DEBUG ").map(|(_, note)| note))
        .filter(|note| note.starts_with("not sending"))
        .collect();
    assert_eq!(
        notes,
        ["not sending an --on-connect message on this connection: {{session}} is not captured yet"]
    );
}

/// The welcome that carries the session id and a ping whose pong needs it come in one
/// write, so tether reads both before its script has captured the id: the pong waits
/// for the capture instead of never being sent.
#[test]
fn a_reply_waits_for_a_value_captured_from_a_message_in_the_same_read() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let server = Server::start(|mut conn| async move {
        let _ = conn
            .ws
            .feed(Message::text(r#"{"op":"welcome","session":"s-1"}"#))
            .await;
        let _ = conn
            .ws
            .feed(Message::text(r#"{"type":"ping","id":1}"#))
            .await;
        let _ = conn.ws.flush().await;
        if let Some(Message::Text(pong)) = conn.recv().await {
            let verdict = if pong == r#"{"type":"pong","id":1,"session":"s-1"}"# {
                "done"
            } else {
                "wrong pong"
            };
            conn.send_text(&format!(r#"{{"op":"{verdict}"}}"#)).await;
        }
        while conn.recv().await.is_some() {}
    });
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(
        dir.path(),
        r#"reply-json .type == "ping" => {"type":"pong","id":{{.id}},"session":"{{session}}"}
expect-json .op == "welcome" capture session=.session
expect-json .op == "done"
"#,
    );
    let run = Tether::new()
        .arg(server.url("/"))
        .arg("--script")
        .arg(&script)
        .args(["--timeout", "10s", "-v"])
        .deadline(HARNESS_DEADLINE)
        .run();
    run.code(0);
    assert_eq!(
        server.connections()[0].texts(),
        [r#"{"type":"pong","id":1,"session":"s-1"}"#],
        "{}",
        run.describe()
    );
}

#[test]
fn a_resume_with_another_session_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), RESUME_SCENARIO);
    let run = resume_run(&script, &[r#"{"op":"resume","session":"s-0"}"#], &[]);
    run.code(9);
    assert_eq!(
        run.error_line(),
        "tether: error: server closed the connection with code 4002 (\"expected a resume of s-1\"); \
         gave up after 2 attempts",
        "{}",
        run.describe()
    );
}

#[test]
fn a_capture_no_step_makes_is_a_usage_error_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let script = write_script(dir.path(), "expect-json .op capture other=.op\n");
    let tether = |args: &[&str]| {
        let run = Tether::new().args(["ws://127.0.0.1:1/"]).args(args).run();
        run.code(2);
        run.stderr.clone()
    };
    let with_script = |args: &[&str]| {
        let mut all = vec!["--script", script.to_str().unwrap()];
        all.extend_from_slice(args);
        tether(&all)
    };
    assert_eq!(
        with_script(&["--on-connect", RESUME]),
        format!(
            "tether: error: --on-connect '{RESUME}': {{{{session}}}} is not captured by any step \
             of the script (capture it with e.g. expect-json FILTER capture session=.session, or \
             use {{{{env.session}}}})\n"
        )
    );
    assert_eq!(
        tether(&["--on-connect", RESUME]),
        format!(
            "tether: error: --on-connect '{RESUME}': {{{{session}}}} is a captured value, and \
             only a --script's steps capture values (e.g. expect-json FILTER capture \
             session=.session); or use {{{{env.session}}}}\n"
        )
    );
    assert_eq!(
        with_script(&["--reply-json", ".ping", r#"{"s":"{{session}}"}"#]),
        "tether: error: --reply-json: {{session}} is not captured by any step of the script \
         (capture it with e.g. expect-json FILTER capture session=.session, or use \
         {{env.session}})\n"
    );
    assert_eq!(
        with_script(&["--reply", "^ping (?<other>.*)", "pong {{other}}"]),
        "tether: error: --reply: {{other}} is both a group of the regex and a value the script \
         captures; rename one\n"
    );
    assert_eq!(
        tether(&["--reply", "^ping", "pong {{nope}}"]),
        "tether: error: --reply: the regex has no group named \"nope\", and {{nope}} is a \
         captured value, and only a --script's steps capture values (e.g. expect-json FILTER \
         capture nope=.nope); or use {{env.nope}}\n"
    );
    let declared = write_script(
        dir.path(),
        "expect-json .a\nreply-json .ping => {\"s\":\"{{session}}\"}\n",
    );
    let run = Tether::new()
        .arg("ws://127.0.0.1:1/")
        .arg("--script")
        .arg(&declared)
        .run();
    run.code(2);
    assert_eq!(
        run.stderr,
        format!(
            "tether: error: {}:2: reply-json: {{{{session}}}} is not captured by any step of the \
             script (capture it with e.g. expect-json FILTER capture session=.session, or use \
             {{{{env.session}}}})\n",
            declared.display()
        )
    );
}

/// Filters that never end or recurse until the stack overflows: jaq cannot
/// bound them, so tether stops them and the run's own limits still hold.
#[test]
fn a_jq_filter_that_never_ends_is_stopped_and_the_timeout_still_ends_the_run() {
    let server = Server::echo();
    for (filter, why) in [
        ("def f: f; f", "it did not finish within 1s"),
        ("[range(1e12)] | length > 0", "it did not finish within 1s"),
        ("def f: 1 + f; f", "it recursed until its stack overflowed"),
    ] {
        let run = Tether::new()
            .args([&server.url("/"), "--send", "{}", "--expect-json", filter])
            .args(["--timeout", "3s"])
            .deadline(HARNESS_DEADLINE)
            .run();
        run.code(6);
        run.stdout_is("{}\n");
        let waited = waited(run.error_line());
        let took = waited.split(" for ").next().unwrap();
        assert_eq!(
            run.stderr
                .replacen(&format!("waiting {took} for"), "waiting N s for", 1),
            format!(
                "tether: connected to {url}\n\
                 tether: warning: the jq filter {filter:?} was stopped: {why}; it is not run again\n\
                 tether: closed (1000)\n\
                 tether: error: deadline reached: --timeout 3s ran out after waiting N s for \
                 --expect-json '{filter}'\n  1 message was received:\n    #1: {{}}\n      \
                 {filter} gave: error: stopped: {why}\n",
                url = server.url("/")
            ),
            "{}",
            run.describe()
        );
    }
}

#[test]
fn a_reply_filter_that_never_ends_leaves_tether_answering_ctrl_c() {
    let server = Server::echo();
    let mut tether = Tether::new()
        .args([&server.url("/"), "--reply-json", "last(range(1e12))", "x"])
        .deadline(HARNESS_DEADLINE)
        .spawn();
    tether.send("{}\n");
    assert_eq!(
        tether.stderr_line("jq filter"),
        "tether: warning: the jq filter \"last(range(1e12))\" was stopped: it did not finish \
         within 1s; it is not run again"
    );
    // The supervisor goes on: the next message is echoed, unanswered.
    tether.send("[1]\n");
    let mut lines = vec![tether.line(), tether.line()];
    lines.sort();
    assert_eq!(lines, ["[1]", "{}"]);
    tether.signal("INT");
    let (code, rest) = tether.wait();
    assert_eq!(code, Some(130));
    assert!(rest.is_empty(), "{rest:?}");
}
