//! `--reply`, `--reply-text`, `--reply-json`: answers to the server's
//! application pings, against Python `websockets`.

use std::time::Duration;

use crate::support::Tether;
use crate::support::python::PythonServer;

/// Sends `{"type":"ping","id":N}` every 100 ms, five times, and closes with
/// 4008 unless `{"type":"pong","id":N}` comes back within 300 ms; then says
/// "done" and closes normally.
const APP_PINGER: &str = r#"
import asyncio, json

async def handler(ws):
    for n in range(1, 6):
        await asyncio.sleep(0.1)
        await ws.send(json.dumps({"type": "ping", "id": n}))
        try:
            while True:
                reply = json.loads(await asyncio.wait_for(ws.recv(), 0.3))
                if reply == {"type": "pong", "id": n}:
                    break
        except asyncio.TimeoutError:
            await ws.close(4008, f"no pong for ping {n}")
            return
    await ws.send("done")
    await ws.close(1000, "bye")
"#;

const PONG: [&str; 3] = [
    "--reply-json",
    r#".type == "ping""#,
    r#"{"type":"pong","id":{{.id}}}"#,
];

fn pings() -> String {
    (1..=5)
        .map(|n| format!("{{\"type\": \"ping\", \"id\": {n}}}\n"))
        .collect()
}

#[test]
fn a_reply_json_answers_every_application_ping_in_pipe_mode() {
    let server = PythonServer::start(APP_PINGER);
    let url = server.url("/");
    let run = Tether::new()
        .args([url.as_str(), "--keep-open"])
        .args(PONG)
        .run();
    run.code(0).stdout_is(&(pings() + "done\n"));
    let replied: String = (1..=5)
        .map(|n| {
            format!(
                "tether: replied to {{\"type\": \"ping\", \"id\": {n}}} with {{\"type\":\"pong\",\"id\":{n}}}\n"
            )
        })
        .collect();
    assert_eq!(
        run.stderr,
        format!("tether: connected to {url}\n{replied}tether: server closed (1000: bye)\n"),
        "{}",
        run.describe()
    );
}

#[test]
fn without_a_reply_the_server_closes_with_4008() {
    let server = PythonServer::start(APP_PINGER);
    let url = server.url("/");
    let run = Tether::new().args([url.as_str(), "--keep-open"]).run();
    run.code(9).stdout_is("{\"type\": \"ping\", \"id\": 1}\n");
    assert_eq!(
        run.stderr,
        format!(
            "tether: connected to {url}\n\
             tether: disconnected: server closed the connection with code 4008 (\"no pong for ping 1\")\n\
             tether: error: server closed the connection with code 4008 (\"no pong for ping 1\")\n"
        ),
        "{}",
        run.describe()
    );
}

#[test]
fn quiet_replies_say_nothing_and_json_reports_them() {
    let server = PythonServer::start(APP_PINGER);
    let url = server.url("/");
    let run = Tether::new()
        .args([url.as_str(), "--keep-open", "-q"])
        .args(PONG)
        .run();
    run.code(0).stdout_is(&(pings() + "done\n"));
    assert_eq!(run.stderr, "", "{}", run.describe());

    let run = Tether::new()
        .args([url.as_str(), "--keep-open", "--json"])
        .args(PONG)
        .run();
    run.code(0);
    let replied: Vec<_> = run
        .json_events()
        .into_iter()
        .filter(|e| e["event"] == "replied")
        .map(|e| (e["to"].clone(), e["reply"].clone()))
        .collect();
    let expected: Vec<_> = (1..=5)
        .map(|n| {
            (
                serde_json::Value::from(format!("{{\"type\": \"ping\", \"id\": {n}}}")),
                serde_json::Value::from(format!("{{\"type\":\"pong\",\"id\":{n}}}")),
            )
        })
        .collect();
    assert_eq!(replied, expected, "{}", run.describe());
}

#[test]
fn a_regex_reply_fills_in_its_groups_in_a_smoke_test() {
    let server = PythonServer::start(APP_PINGER);
    let url = server.url("/");
    // The regex's group is the id; the smoke test passes only if all five
    // pings were answered, since "done" follows the fifth pong.
    let run = Tether::new()
        .args([
            url.as_str(),
            "-q",
            "--reply",
            r#""id": (\d+)"#,
            r#"{"type":"pong","id":{{1}}}"#,
            "--expect-text",
            "done",
        ])
        .run();
    run.code(0);
    let run = Tether::new()
        .args([url.as_str(), "-q", "--expect-text", "done"])
        .run();
    assert_ne!(run.code, Some(0), "{}", run.describe());
}

#[test]
fn a_bad_reply_is_a_usage_error() {
    let run = Tether::new()
        .args(["ws://127.0.0.1:9", "--reply", "a(", "x"])
        .run();
    run.code(2);
    assert_eq!(
        run.error_line(),
        r#"tether: error: --reply: "a(" is not a valid regex: unclosed group (to match it as plain text, use --reply-text)"#
    );
}

#[test]
fn a_scenario_file_declares_its_replies() {
    let server = PythonServer::start(APP_PINGER);
    let url = server.url("/");
    let script = "# answer the pings all along\n\
                  expect-text done\n\
                  reply-json .type == \"ping\" => {\"type\":\"pong\",\"id\":{{.id}}}\n";
    let run = Tether::new()
        .args([url.as_str(), "-q", "--script", "-"])
        .stdin(script)
        .run();
    run.code(0);
    // Without the declaration the server gives up on the first ping.
    let run = Tether::new()
        .args([url.as_str(), "-q", "--script", "-"])
        .stdin("expect-text done\n")
        .run();
    assert_ne!(run.code, Some(0), "{}", run.describe());
}

#[test]
fn a_reply_declaration_without_its_arrow_names_the_line() {
    let run = Tether::new()
        .args(["ws://127.0.0.1:9", "--script", "-"])
        .stdin("expect-text done\nreply-json .type == \"ping\" {\"type\":\"pong\"}\n")
        .run();
    run.code(2);
    assert_eq!(
        run.error_line(),
        r#"tether: error: <stdin>:2: reply-json needs MATCHER => RESPONSE, e.g. reply-json .type == "ping" => {"type":"pong","id":{{.id}}}"#
    );
}

/// Reads what it is sent and never answers.
const SILENT: &str = r#"
async def handler(ws):
    async for _ in ws:
        pass
"#;

/// Answers each `{"type":"ping"}` with `{"type":"pong"}`; closes after the third.
const APP_PONGER: &str = r#"
import json

async def handler(ws):
    pings = 0
    async for message in ws:
        if json.loads(message) == {"type": "ping"}:
            pings += 1
            await ws.send(json.dumps({"type": "pong"}))
            if pings == 3:
                await ws.close(1000, "bye")
"#;

const APP_PING: [&str; 9] = [
    "--app-ping",
    r#"{"type":"ping"}"#,
    "--app-pong-json",
    r#".type == "pong""#,
    "--app-ping-interval",
    "100ms",
    "--ping-timeout",
    "300ms",
    "--keep-open",
];

#[test]
fn an_unanswered_app_ping_is_a_dead_connection_and_reconnected() {
    let server = PythonServer::start(SILENT);
    let url = server.url("/");
    let run = Tether::new()
        .args([url.as_str(), "--max-reconnects", "1"])
        .args(["--backoff-initial", "100ms", "--backoff-max", "100ms"])
        .args(APP_PING)
        .run();
    run.code(8).stdout_is("");
    let lost =
        "connection lost: application heartbeat timeout: no reply to --app-ping within 300ms";
    assert_eq!(
        run.stderr,
        format!(
            "tether: connected to {url}\n\
             tether: disconnected: {lost}\n\
             tether: reconnecting in 100 ms (attempt 2)\n\
             tether: connected to {url}\n\
             tether: disconnected: {lost}\n\
             tether: error: {lost}; gave up after 2 attempts\n\
             tether: hint: not reconnecting: reconnects are off or used up (see --max-reconnects), or stdin had ended with nothing left to deliver (--keep-open keeps reconnecting)\n"
        ),
        "{}",
        run.describe()
    );
}

#[test]
fn answered_app_pings_keep_the_connection_and_count_as_heartbeat_pongs() {
    let server = PythonServer::start(APP_PONGER);
    let url = server.url("/");
    let run = Tether::new()
        .args([url.as_str(), "--json", "--ping-interval", "0"])
        .args(APP_PING)
        .run();
    run.code(0);
    let events = run.json_events();
    let pongs = events
        .iter()
        .filter(|e| e["event"] == "pong" && e["heartbeat"] == true && e["rtt_ms"].is_number())
        .count();
    let messages: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| e["data"].clone())
        .collect();
    assert_eq!(pongs, 3, "{}", run.describe());
    assert_eq!(
        messages,
        vec![serde_json::Value::from(r#"{"type": "pong"}"#); 3]
    );
    assert!(
        events.iter().all(|e| e["event"] != "disconnected"),
        "{}",
        run.describe()
    );
}

#[test]
fn an_app_ping_needs_its_pong() {
    let run = Tether::new()
        .args(["ws://127.0.0.1:9", "--app-ping", "ping"])
        .run();
    run.code(2);
    assert_eq!(
        run.error_line(),
        "tether: error: --app-ping needs --app-pong REGEX or --app-pong-json FILTER: the reply that shows the server is alive"
    );
    let run = Tether::new()
        .args(["ws://127.0.0.1:9", "--app-ping", "ping", "--app-pong", "a("])
        .run();
    run.code(2);
    assert_eq!(
        run.error_line(),
        r#"tether: error: --app-pong: "a(" is not a valid regex: unclosed group"#
    );
}

/// `replied` means written: a reply still waiting when the connection ends
/// is not reported. The server's ping and its Close arrive together, so
/// tether reads both before it writes anything, and no reply may follow the
/// Close it answers with.
#[test]
fn a_reply_that_never_went_out_is_not_reported() {
    use crate::support::hostile::{Hostile, Step, client_frames, close_payload, frame};
    let mut then = frame(0x81, b"ping");
    then.extend(frame(0x88, &close_payload(1000, b"bye")));
    let server = Hostile::start(vec![Step::AcceptThen(String::new(), then), Step::Drain]);
    let run = Tether::new()
        .args([&server.url("/"), "--reply", "^ping$", "pong", "--keep-open"])
        .args(["--json"])
        .deadline(Duration::from_secs(20))
        .run();
    run.code(0);
    let events: Vec<String> = run
        .json_events()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        events,
        ["connecting", "handshake", "connected", "message", "closed"],
        "{}",
        run.describe()
    );
    let seen = server.wait_until(Duration::from_secs(10), |seen| seen.iter().all(|s| s.done));
    let frames: Vec<u8> = client_frames(&seen[0].after)
        .iter()
        .map(|(op, _)| *op)
        .collect();
    assert_eq!(frames, [0x8], "only the Close went out");
}

/// The same ping, answered, is reported once written: it is on the wire.
#[test]
fn a_written_reply_is_reported_and_on_the_wire() {
    use crate::support::hostile::{Hostile, Step, client_frames, frame};
    let server = Hostile::start(vec![
        Step::AcceptThen(String::new(), frame(0x81, b"ping")),
        Step::Drain,
    ]);
    let mut tether = Tether::new()
        .args([&server.url("/"), "--reply", "^ping$", "pong", "--keep-open"])
        .deadline(Duration::from_secs(20))
        .spawn();
    assert_eq!(tether.line(), "ping");
    assert_eq!(
        tether.stderr_line("replied"),
        "tether: replied to ping with pong"
    );
    let seen = server.wait_until(Duration::from_secs(10), |seen| {
        seen.iter().any(|s| !client_frames(&s.after).is_empty())
    });
    let frames = client_frames(&seen[0].after);
    assert_eq!(frames[0], (0x1, b"pong".to_vec()));
    tether.signal("INT");
    assert_eq!(tether.wait().0, Some(130));
}

/// Sends `{"type":"ping","id":N}` on connection N and takes the messages
/// that come before its pong. The first connection is then aborted (no
/// Close, nothing confirmed); the second reports what came before its pong
/// and closes normally.
const PING_THEN_ABORT: &str = r#"
import asyncio, json

state = {"n": 0}

async def handler(ws):
    state["n"] += 1
    n = state["n"]
    await ws.send(json.dumps({"type": "ping", "id": n}))
    pong = json.dumps({"type": "pong", "id": n}, separators=(",", ":"))
    seen = []
    async for message in ws:
        if message == pong:
            break
        seen.append(message)
    if n == 1:
        ws.transport.abort()
        return
    await ws.send(json.dumps({"seen": seen}))
    await ws.close(1000)
"#;

#[test]
fn a_reply_is_not_sent_again_after_a_reconnect() {
    let server = PythonServer::start(PING_THEN_ABORT);
    let run = Tether::new()
        .args([&server.url("/"), "--keep-open", "--max-reconnects", "1"])
        .args(["--backoff-initial", "10ms", "--backoff-max", "10ms"])
        .args(PONG)
        .deadline(Duration::from_secs(20))
        .run();
    run.code(0);
    // The first pong was written and its connection lost before anything
    // confirmed it; a user message would be re-sent, the pong is not.
    run.stdout_is(
        "{\"type\": \"ping\", \"id\": 1}\n{\"type\": \"ping\", \"id\": 2}\n{\"seen\": []}\n",
    );
}

/// Stops reading (a small receive buffer, no recv) until the bytes waiting
/// in its socket stop growing: the client can write no more, and what it
/// still has to send waits in its queue. Then it sends a ping, reads
/// everything, and prints how many messages came before the pong.
const STALL_THEN_PING: &str = r#"
import asyncio, fcntl, json, socket, struct, termios

async def handler(ws):
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    waiting = -1
    while True:
        await asyncio.sleep(0.05)
        now = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]
        if now > 0 and now == waiting:
            break
        waiting = now
    await ws.send(json.dumps({"type": "ping", "id": 1}))
    before = 0
    async for message in ws:
        if message == '{"type":"pong","id":1}':
            print("pong after", before, flush=True)
        else:
            before += 1
"#;

#[test]
fn a_reply_goes_out_ahead_of_the_queued_messages() {
    // 6 MB of 1 KiB lines: more than the sockets hold, so tether stalls
    // with its queue full (256 KiB of messages wait unwritten: the send
    // credit, of which at most 128 KiB, tungstenite's write buffer, can
    // already be handed to the socket).
    const LINES: usize = 6000;
    let server = PythonServer::start(STALL_THEN_PING);
    let input: String = (0..LINES)
        .map(|i| format!("{i:04} {}\n", "x".repeat(1018)))
        .collect();
    let run = Tether::new()
        .args([&server.url("/"), "--json", "--json-sent"])
        .args(PONG)
        .stdin(input)
        .deadline(Duration::from_secs(60))
        .run();
    run.code(0);
    let events = run.json_events();
    let at = |kind: &str| events.iter().position(|e| e["event"] == kind).unwrap();
    let (ping, replied) = (at("message"), at("replied"));
    let sent = |range: std::ops::Range<usize>| {
        events[range]
            .iter()
            .filter(|e| e["event"] == "sent" && e["data"] != r#"{"type":"pong","id":1}"#)
            .count()
    };
    let (before, between, after) = (
        sent(0..ping),
        sent(ping..replied),
        sent(replied..events.len()),
    );
    let pong_after: usize = server
        .stdout()
        .trim()
        .strip_prefix("pong after ")
        .expect("the server saw the pong")
        .parse()
        .unwrap();
    let numbers = format!(
        "written before the ping {before}, between it and the reply {between}, after {after}; \
         the server read {pong_after} before the pong"
    );
    assert_eq!(before + between + after, LINES, "{numbers}");
    // Nothing was written between the ping and its answer, and much after.
    assert_eq!(between, 0, "{numbers}");
    assert!(after > 1000, "{numbers}");
    // On the wire the pong follows what was written before the ping, and
    // what had been handed to the socket (at most 128 KiB: 128 messages),
    // not the queue: queued behind it, it would follow some 256 more.
    assert!((before..before + 192).contains(&pong_after), "{numbers}");
}
