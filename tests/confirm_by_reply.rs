//! `--confirm-by-reply` and `--confirm-key` against Python `websockets`, whose library
//! answers a Ping as soon as it parses it: a Pong there says nothing about what the
//! application has handled. The servers abort their TCP connection mid-stream, and log
//! each id the application answered (a reply written before the abort may still die in
//! the socket's buffer: tether sends that request again, and it is answered twice).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::support::Tether;
use crate::support::python::{PythonServer, py_str};

/// Answers `{"id":N}` with `{"id":N,"ok":true}`, in order. Every `abort_every`th message
/// over all connections is read and not answered: the connection is aborted instead, losing
/// whatever the library had read but the application had not handled.
fn in_order_server(log: &Path, abort_every: usize) -> String {
    format!(
        r#"
import json
count = 0
LOG = open({log}, "a")

async def handler(ws):
    global count
    async for message in ws:
        count += 1
        if count % {abort_every} == 0:
            ws.transport.abort()
            return
        n = json.loads(message)["id"]
        LOG.write(f"{{n}}\n")
        LOG.flush()
        await ws.send(json.dumps({{"id": n, "ok": True}}))
"#,
        log = py_str(log.to_str().unwrap()),
    )
}

/// Answers `{"ok":true,"id":N}` after a random delay of its own (up to 5 ms), so replies
/// overtake each other; at every `abort_every`th answer over all connections, it aborts the
/// connection instead (losing what the library read and the application had not answered).
/// Instead, not after: an abort right after the last answer would be a drop with every
/// message confirmed, which ends the run with exit 8 by design (README, "Reconnecting only
/// while something is left"); it failed this test about 1 run in 30.
fn out_of_order_server(log: &Path, abort_every: usize) -> String {
    format!(
        r#"
import asyncio, json, random
answers = 0
LOG = open({log}, "a")

async def answer(ws, n):
    global answers
    await asyncio.sleep(random.random() * 0.005)
    if ws.transport.is_closing():
        return
    answers += 1
    if answers % {abort_every} == 0:
        ws.transport.abort()
        return
    try:
        await ws.send(json.dumps({{"ok": True, "id": n}}))
    except Exception:
        return
    LOG.write(f"{{n}}\n")
    LOG.flush()

async def handler(ws):
    tasks = set()
    try:
        async for message in ws:
            task = asyncio.create_task(answer(ws, json.loads(message)["id"]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        await asyncio.gather(*tasks)
"#,
        log = py_str(log.to_str().unwrap()),
    )
}

fn requests(n: usize) -> String {
    (1..=n)
        .map(|i| format!("{{\"id\":{i},\"op\":\"add\"}}\n"))
        .collect()
}

/// How many times the server's application answered each id.
fn answered(log: &Path) -> BTreeMap<usize, usize> {
    let mut counts = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap().lines() {
        *counts.entry(line.parse().unwrap()).or_default() += 1;
    }
    counts
}

fn session(server: &PythonServer, n: usize) -> Tether {
    Tether::new()
        .arg(server.url("/"))
        .args(["--backoff-initial", "10ms", "--backoff-max", "50ms"])
        .stdin(requests(n))
        .deadline(Duration::from_secs(240))
}

/// Every id answered at least once; returns how many answers were duplicates.
fn assert_all_answered(log: &Path, n: usize) -> usize {
    let counts = answered(log);
    let missing: Vec<_> = (1..=n).filter(|i| !counts.contains_key(i)).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} requests never answered, the first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(counts.len(), n, "only the ids sent are answered");
    counts.values().map(|c| c - 1).sum()
}

const REQUESTS: usize = 20_000;
const ABORT_EVERY: usize = 2_000;

#[test]
fn replies_confirm_so_an_aborting_server_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("answered");
    let server = PythonServer::start(&in_order_server(&log, ABORT_EVERY));
    let run = session(&server, REQUESTS)
        .args(["--confirm-by-reply", r#""ok": true"#])
        .run();
    run.code(0);
    let duplicates = assert_all_answered(&log, REQUESTS);
    let reconnects = run
        .stderr
        .lines()
        .filter(|l| l.contains("reconnecting in"))
        .count();
    // Each of the aborted messages is unanswered, and re-sent.
    assert!(
        reconnects >= REQUESTS / ABORT_EVERY - 1,
        "{}",
        run.describe()
    );
    eprintln!(
        "{REQUESTS} requests, {reconnects} reconnects, {duplicates} answered twice or more, \
         {} replies on stdout",
        run.stdout_lines().len()
    );
}

#[test]
fn a_key_pairs_replies_that_come_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("answered");
    let n = 4_000;
    let server = PythonServer::start(&out_of_order_server(&log, 500));
    let run = session(&server, n)
        .args(["--confirm-by-reply-json", ".ok", "--confirm-key", ".id"])
        .run();
    run.code(0);
    let duplicates = assert_all_answered(&log, n);
    let ids: Vec<usize> = run
        .stdout_lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap() as usize
        })
        .collect();
    assert!(
        ids.windows(2).any(|w| w[0] > w[1]),
        "the replies came out of order"
    );
    eprintln!("{n} requests out of order, {duplicates} answered twice or more");
}

/// Without --confirm-by-reply the Pongs of the same server confirm messages its
/// application never handled: after the aborts, some requests are never answered (1,465
/// to 2,952 of 20,000 in four runs), and tether cannot know. Whether any is lost depends
/// on timing, so the count is shown, not asserted.
#[test]
fn pongs_alone_confirm_what_the_application_never_handled() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("answered");
    let server = PythonServer::start(&in_order_server(&log, ABORT_EVERY));
    let run = session(&server, REQUESTS).run();
    // tether believes every message delivered: the Pongs said so.
    run.code(0);
    let counts = answered(&log);
    let lost = (1..=REQUESTS).filter(|i| !counts.contains_key(i)).count();
    eprintln!(
        "without --confirm-by-reply: exit {:?}, {lost} of {REQUESTS} requests never answered",
        run.code
    );
}

/// Reads three requests, answers two, and closes normally.
const ANSWERS_TWO_OF_THREE: &str = r#"
async def handler(ws):
    received = [await ws.recv() for _ in range(3)]
    for message in received[:2]:
        await ws.send("ok " + message)
    await ws.close(1000)
"#;

#[test]
fn a_normal_close_does_not_confirm_what_was_never_answered() {
    let server = PythonServer::start(ANSWERS_TWO_OF_THREE);
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--confirm-by-reply-text", "ok "])
        .stdin("a\nb\nc\n")
        .run();
    run.code(1).stdout_is("ok a\nok b\n");
    assert_eq!(
        run.error_line(),
        "tether: error: 1 message was never confirmed by the server (1 written, unconfirmed)",
        "{}",
        run.describe()
    );
}

#[test]
fn the_flags_need_the_replay_window_and_valid_matchers() {
    for (args, error) in [
        (
            &["--echo", "--confirm-by-reply", "ok"][..],
            "tether: error: --confirm-by-reply cannot be used with --echo, which keeps no replay window",
        ),
        (
            &["--replay-window", "0", "--confirm-key", ".id"][..],
            "tether: error: --confirm-key needs the replay window; it cannot be used with --replay-window 0",
        ),
        (
            &["--confirm-by-reply", "(ok"][..],
            "tether: error: --confirm-by-reply: \"(ok\" is not a valid regex: unclosed group \
             (to match it as plain text, use --confirm-by-reply-text)",
        ),
        (
            &["--confirm-by-reply-json", ".ok and"][..],
            "tether: error: --confirm-by-reply-json: \".ok and\" is not a valid jq filter: expected term at the end",
        ),
        (
            &["--confirm-key", ".id ="][..],
            "tether: error: --confirm-key: \".id =\" is not a valid jq filter: expected term at the end",
        ),
    ] {
        let run = Tether::new().arg("ws://127.0.0.1:9/").args(args).run();
        run.code(2);
        assert_eq!(run.error_line(), error, "{args:?}");
    }
}
