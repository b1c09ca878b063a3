//! `--exec CMD`: a program on the other end of the pipe, against Python
//! `websockets` servers. The program's output is sent, what arrives is
//! written to its input, its stderr is tether's, and how it ends (or is
//! ended) decides the exit.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::python::{PythonPeer, PythonServer};
use crate::support::{FAST_BACKOFF, Tether};

/// `--exec` for a Python script written to `dir`, run unbuffered by the
/// venv's interpreter.
fn python_program(dir: &Path, name: &str, source: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, source).expect("writing the program");
    format!("{} -u {}", PythonPeer::python().display(), path.display())
}

/// Waits (up to 10 s) for the server to have logged `expected`: it may
/// still be writing when tether has exited.
#[track_caller]
fn server_logged(server: &PythonServer, expected: &str, context: &str) {
    let started = Instant::now();
    while server.stdout() != expected && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.stdout(), expected, "{context}");
}

/// The server asks five application-level pings, one at a time, checks each
/// answer, and closes with 1000 once all came.
const PINGER: &str = r#"
import asyncio, json
async def handler(ws):
    for n in range(1, 6):
        await ws.send(json.dumps({"type": "ping", "id": n}))
        answer = json.loads(await ws.recv())
        print(f"{answer['type']} {answer['id']}", flush=True)
    # At once: the last pong has just been handed over by the reader thread,
    # and must not be counted as unsent (see supervisor::handle's tests).
    await ws.close(1000, "all answered")
"#;

/// Answers each ping it reads with a pong of the same id, and says so on
/// stderr.
const RESPONDER: &str = r#"
import json, sys
for line in sys.stdin:
    ping = json.loads(line)
    print(f"responder: ping {ping['id']}", file=sys.stderr)
    print(json.dumps({"type": "pong", "id": ping["id"]}))
"#;

#[test]
fn an_exec_responder_answers_the_servers_application_pings() {
    let dir = tempfile::tempdir().unwrap();
    let server = PythonServer::start(PINGER);
    let run = Tether::new()
        .args([
            &server.url("/"),
            "--exec",
            &python_program(dir.path(), "responder.py", RESPONDER),
        ])
        .run();
    run.code(0).stdout_is("");
    server_logged(
        &server,
        "pong 1\npong 2\npong 3\npong 4\npong 5\n",
        &run.describe(),
    );
    let responder: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("responder:"))
        .collect();
    assert_eq!(
        responder,
        [
            "responder: ping 1",
            "responder: ping 2",
            "responder: ping 3",
            "responder: ping 4",
            "responder: ping 5"
        ],
        "its stderr passes through"
    );
    run.stderr_has("server closed (1000: all answered)");
}

/// Takes three messages, waits a little, answers them, and reports how the
/// client closed.
const LATE_REPLIER: &str = r#"
import asyncio
from websockets.exceptions import ConnectionClosed
async def handler(ws):
    got = [await ws.recv() for _ in range(3)]
    print("got " + " ".join(got), flush=True)
    await asyncio.sleep(0.3)
    for message in got:
        await ws.send("re:" + message)
    print("replied", flush=True)
    try:
        await ws.recv()
        print("another message?", flush=True)
    except ConnectionClosed:
        print(f"client closed {ws.close_code}", flush=True)
"#;

#[test]
fn a_program_that_exits_early_is_lingered_for_and_its_failure_is_the_exit_status() {
    let server = PythonServer::start(LATE_REPLIER);
    // The program is gone before the replies come: tether still waits for
    // them (--linger), then closes with 1000, and exits 0.
    let run = Tether::new()
        .args([
            &server.url("/"),
            "--linger",
            "2s",
            "--exec",
            r"printf 'a\nb\nc\n'",
        ])
        .run();
    run.code(0).stdout_is("");
    server_logged(
        &server,
        "got a b c\nreplied\nclient closed 1000\n",
        &run.describe(),
    );

    // Its failure is tether's exit status, after the same ending.
    let server = PythonServer::start(LATE_REPLIER);
    let command = "sh -c 'printf \"a\\nb\\nc\\n\"; exit 3'";
    let run = Tether::new()
        .args([&server.url("/"), "--linger", "2s", "--exec", command])
        .run();
    run.code(3);
    assert_eq!(
        run.error_line(),
        format!("tether: error: --exec {command:?} exited with status 3")
    );
    server_logged(
        &server,
        "got a b c\nreplied\nclient closed 1000\n",
        &run.describe(),
    );

    // Killed by a signal: 128 + its number, as a shell says.
    let server = PythonServer::start(LATE_REPLIER);
    let command = "sh -c 'printf \"a\\nb\\nc\\n\"; kill -KILL $$'";
    let run = Tether::new()
        .args([&server.url("/"), "--linger", "2s", "--exec", command])
        .run();
    run.code(137);
    assert_eq!(
        run.error_line(),
        format!("tether: error: --exec {command:?} was killed by signal 9 (SIGKILL)")
    );
}

/// Echoes the first message, then closes normally.
const CLOSE_AFTER_ONE: &str = r#"
async def handler(ws):
    await ws.send(await ws.recv())
    await ws.close(1000, "one is enough")
"#;

#[test]
fn a_program_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let server = PythonServer::start(CLOSE_AFTER_ONE);
    // It ignores SIGTERM and never reads or exits by itself.
    let command = format!(
        "sh -c 'trap \"\" TERM; echo $$ > {}; echo hello; exec sleep 60'",
        pid_file.display()
    );
    let started = Instant::now();
    let run = Tether::new()
        .args([&server.url("/"), "--exec", &command])
        .deadline(Duration::from_secs(20))
        .run();
    let took = started.elapsed();
    run.code(0)
        .stdout_is("")
        .stderr_has("server closed (1000: one is enough)")
        .stderr_has(&format!(
            "tether: warning: --exec {command:?} did not exit within 2s of SIGTERM; killed it"
        ));
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "took {took:?}"
    );
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let alive = std::process::Command::new("kill")
        .args(["-0", pid.trim()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(!alive, "the program {} still runs", pid.trim());
}

/// The first connection takes three messages and drops without a Close (and
/// without answering); later ones echo all but the greeting, and log what
/// they got.
const DROPS_THE_FIRST: &str = r#"
connections = 0
async def handler(ws):
    global connections
    connections += 1
    if connections == 1:
        got = [await ws.recv() for _ in range(3)]
        print("first " + " ".join(got), flush=True)
        ws.transport.abort()
        return
    async for message in ws:
        print(f"again {message}", flush=True)
        if message != "hello":
            await ws.send(message)
"#;

/// Sends 1 to 5, then writes what it reads to a file until it has read 5.
const COUNTER: &str = r#"
import sys
for n in range(1, 6):
    print(n)
seen = []
for line in sys.stdin:
    seen.append(line.rstrip("\n"))
    if seen[-1] == "5":
        break
open(sys.argv[1], "w").write("\n".join(seen) + "\n")
"#;

#[test]
fn after_a_reconnect_the_unconfirmed_messages_are_replayed_and_the_program_never_knows() {
    let dir = tempfile::tempdir().unwrap();
    let seen_file = dir.path().join("seen");
    let server = PythonServer::start(DROPS_THE_FIRST);
    let program = format!(
        "{} {}",
        python_program(dir.path(), "counter.py", COUNTER),
        seen_file.display()
    );
    let run = Tether::new()
        .arg(server.url("/"))
        .args(FAST_BACKOFF)
        .args(["--ping-interval", "0", "--on-connect", "hello"])
        .args(["--exec", &program])
        .run();
    run.code(0).stdout_is("").stderr_has("reconnect");
    // Heartbeats off: nothing was confirmed on the first connection, so the
    // second gets everything again, in order, after its --on-connect.
    server_logged(
        &server,
        "first hello 1 2\nagain hello\nagain 1\nagain 2\nagain 3\nagain 4\nagain 5\n",
        &run.describe(),
    );
    // The program read the replies and nothing else: no word of the drop.
    assert_eq!(
        std::fs::read_to_string(&seen_file).unwrap(),
        "1\n2\n3\n4\n5\n"
    );
}

#[test]
fn a_program_that_cannot_run_fails_before_anything_is_dialled() {
    let server = PythonServer::start(PINGER);
    let run = Tether::new()
        .args([&server.url("/"), "--exec", "no-such-program-here --flag"])
        .run();
    run.code(127).stdout_is("");
    assert_eq!(
        run.stderr,
        "tether: error: cannot run --exec \"no-such-program-here --flag\": no-such-program-here: not found on PATH\n\
         tether: hint: no shell runs CMD: name a program on PATH or by its path, and for pipes, variables or builtins use --exec 'sh -c \"...\"'\n",
        "no connection was made"
    );

    let dir = tempfile::tempdir().unwrap();
    let not_executable: PathBuf = dir.path().join("script");
    std::fs::write(&not_executable, "echo hi\n").unwrap();
    let command = not_executable.display().to_string();
    let run = Tether::new()
        .args([&server.url("/"), "--exec", &command])
        .run();
    run.code(126);
    assert_eq!(
        run.error_line(),
        format!("tether: error: cannot run --exec {command:?}: {command}: permission denied")
    );
}

#[test]
fn ctrl_c_ends_the_program_with_sigterm_and_tether_with_130_within_the_signal_bound() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let server = PythonServer::start(crate::support::python::ECHO);
    // It says when it got its SIGTERM, and keeps reading until then.
    let command = format!(
        "sh -c 'trap \"echo terminated > {log}; exit 5\" TERM; echo hello; while read line; do echo \"read $line\" >&2; done'",
        log = log.display()
    );
    let mut running = Tether::new()
        .args([&server.url("/"), "--exec", &command])
        .spawn();
    running.stderr_line("read hello");
    let signalled = Instant::now();
    running.signal("INT");
    let (code, rest) = running.wait();
    let took = signalled.elapsed();
    assert_eq!(code, Some(130));
    assert!(rest.is_empty(), "{rest:?}");
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    // Its own exit status (5) is not tether's: tether stopped it.
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "terminated\n");
}

#[test]
fn output_that_is_not_utf_8_is_named_as_the_programs() {
    let server = PythonServer::start(crate::support::python::ECHO);
    let run = Tether::new()
        .args([&server.url("/"), "--exec", r"printf 'ok\n\377\n'"])
        .run();
    run.code(1);
    assert_eq!(
        run.error_line(),
        "tether: error: the --exec program's output line 2 is not valid UTF-8 (byte 0xff at offset 0); \
         it was not sent, nor was anything after it. Use --binary to send bytes as they are"
    );
}
