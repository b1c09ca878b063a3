//! The session rules every mode keeps (issue 13): never hang, never lose,
//! never report a false success. The real binary against real servers.

use std::time::{Duration, Instant};

use crate::support::cmd::{Run, Running};
use crate::support::server::Conn;
use crate::support::{Server, Tether};

/// Answers the first message, keeps reading a moment (so the Ping that
/// confirms it is answered), then drops the connection without a Close.
async fn answer_once_then_drop(mut conn: Conn) {
    if let Some(message) = conn.recv().await {
        conn.send(message).await;
    }
    let _ = tokio::time::timeout(Duration::from_millis(300), conn.recv()).await;
}

// Reconnect only while something is left to do.

#[test]
fn after_stdin_ends_and_all_is_confirmed_a_dropped_connection_ends_the_run() {
    let server = Server::start(answer_once_then_drop);
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--backoff-initial", "50ms", "--linger", "2s"])
        .stdin("hi\n")
        .deadline(Duration::from_secs(10))
        .run();
    run.code(8).stdout_is("hi\n");
    run.stderr_has("not reconnecting");
    assert_eq!(server.connections().len(), 1, "{}", run.describe());
}

#[test]
fn after_stdin_ends_a_server_that_closes_with_1001_is_not_dialled_again() {
    let server = Server::start(|mut conn| async move {
        if let Some(message) = conn.recv().await {
            conn.send(message).await;
        }
        // Reading, so the Ping that confirms the message is answered.
        let _ = tokio::time::timeout(Duration::from_millis(300), conn.recv()).await;
        conn.close(1001, "going away").await;
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--backoff-initial", "50ms", "--linger", "2s"])
        .stdin("hi\n")
        .deadline(Duration::from_secs(10))
        .run();
    run.code(9).stdout_is("hi\n");
    assert_eq!(server.connections().len(), 1, "{}", run.describe());
}

#[test]
fn with_keep_open_a_dropped_connection_is_dialled_again() {
    let server = Server::start(answer_once_then_drop);
    let mut running = Tether::new()
        .arg(server.url("/"))
        .args(["--backoff-initial", "50ms", "--keep-open"])
        .spawn();
    running.send("hi\n").close_stdin();
    assert_eq!(running.line(), "hi");
    server.wait_until(Duration::from_secs(10), |c| c.len() >= 2);
    running.signal("TERM");
    assert_eq!(running.wait().0, Some(130));
}

// --count N means N.

#[test]
fn a_smoke_test_with_count_waits_for_that_many_replies() {
    let server = Server::echo();
    let run = Tether::new()
        .args([
            &server.url("/"),
            "--send",
            "x",
            "-n",
            "2",
            "--timeout",
            "2s",
        ])
        .run();
    run.code(6);
    assert!(
        run.error_line().starts_with(
            "tether: error: deadline reached: --timeout 2s ran out with every step done, \
             waiting for --count 2 (1 of 2 messages arrived)"
        ),
        "{}",
        run.describe()
    );
}

#[test]
fn count_in_a_pipe_waits_past_linger_for_a_late_reply() {
    let server = Server::start(|mut conn| async move {
        conn.recv().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        conn.send_text("late reply").await;
        conn.echo().await;
    });
    Tether::new()
        .args([&server.url("/"), "-n", "1", "--linger", "200ms"])
        .stdin("req\n")
        .run()
        .code(0)
        .stdout_is("late reply\n");
}

#[test]
fn a_session_that_ends_before_count_fails_and_says_how_many_came() {
    let server = Server::start(|mut conn| async move {
        conn.recv().await;
        conn.send_text("only one").await;
        conn.close(1000, "").await;
    });
    let run = Tether::new()
        .args([&server.url("/"), "-n", "2"])
        .stdin("req\n")
        .run();
    run.code(7).stdout_is("only one\n");
    assert_eq!(
        run.error_line(),
        "tether: error: --count 2 not reached: 1 of 2 messages arrived before \
         the server closed the connection (code 1000)"
    );
}

// No smoke test hangs by default.

#[test]
fn a_smoke_test_without_timeout_ends_at_the_default_deadline() {
    let server = Server::echo();
    let run = Tether::new()
        .args([&server.url("/"), "--send", "hi", "--expect", "never"])
        .deadline(Duration::from_secs(45))
        .run();
    run.code(6);
    assert!(
        run.error_line().starts_with(
            "tether: error: deadline reached: --timeout 30s (the default) ran out after waiting"
        ),
        "{}",
        run.describe()
    );
    run.stderr_has("for --expect never");
}

#[test]
fn an_interrupted_smoke_test_says_where_it_stopped_and_json_names_the_step() {
    let server = Server::echo();
    let mut running = Tether::new()
        .args([
            &server.url("/"),
            "--send",
            "hi",
            "--expect",
            "never",
            "--json",
        ])
        .spawn();
    // The echo of "hi" shows the send step is done and the expect waits.
    loop {
        let line = running.line();
        if line.contains("\"event\":\"message\"") {
            break;
        }
    }
    running.signal("TERM");
    let stderr_line = running.stderr_line("the smoke test was interrupted");
    assert!(
        stderr_line.starts_with("tether: the smoke test was interrupted after waiting ")
            && stderr_line.ends_with(" for --expect never"),
        "{stderr_line}"
    );
    let (code, rest) = running.wait();
    assert_eq!(code, Some(130));
    let summary: serde_json::Value = rest
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["event"] == "summary")
        .expect("a summary");
    assert_eq!(summary["failed_step"], 2, "{summary}");
    assert_eq!(
        summary["reason"].as_str(),
        stderr_line.strip_prefix("tether: "),
        "{summary}"
    );
    assert_eq!(summary["exit_code"], 130, "{summary}");
}

// stdout tells the truth.

/// Exit 1 with the write error: not a success, nor another failure it caused.
#[track_caller]
fn failed_on_a_full_disk(run: &Run) {
    run.code(1);
    assert_eq!(
        run.error_line(),
        "tether: error: cannot write to stdout: No space left on device (os error 28)"
    );
}

#[test]
fn a_full_disk_on_stdout_is_an_error_not_a_success() {
    let server = Server::echo();
    let input: String = (1..=100).map(|i| format!("{i}\n")).collect();
    let run = Tether::new()
        .arg(server.url("/"))
        .stdin(input)
        .stdout_to("/dev/full")
        .run();
    failed_on_a_full_disk(&run);
}

#[test]
fn a_smoke_test_whose_log_cannot_be_written_fails() {
    let server = Server::echo();
    let run = Tether::new()
        .args([&server.url("/"), "--send", "hi", "--expect", "hi"])
        .stdout_to("/dev/full")
        .run();
    failed_on_a_full_disk(&run);
    run.stderr_lacks("smoke test passed");
}

#[test]
fn a_json_smoke_test_on_a_full_disk_fails_with_the_write_error() {
    let server = Server::echo();
    let run = Tether::new()
        .args([&server.url("/"), "--send", "hi", "--expect", "hi", "--json"])
        .stdout_to("/dev/full")
        .run();
    failed_on_a_full_disk(&run);
}

// A signal always ends the session.

/// Sends SIGTERM and checks that tether exits 130 within the close timeout.
#[track_caller]
fn ends_soon_after_sigterm(mut running: Running) {
    let signalled = Instant::now();
    running.signal("TERM");
    let (code, _) = running.wait();
    let took = signalled.elapsed();
    assert_eq!(code, Some(130));
    assert!(
        took < Duration::from_millis(2500),
        "took {took:?} after the signal"
    );
}

#[test]
fn a_signal_ends_the_session_when_the_server_has_stopped_reading() {
    // The server reads nothing, so once the socket buffers are full nothing
    // more can be written: not even the Close.
    let server = Server::start(crate::support::server::never_reads);
    let mut running = Tether::new().arg(server.url("/")).stdin_endless().spawn();
    running.stderr_line("connected");
    std::thread::sleep(Duration::from_millis(500));
    ends_soon_after_sigterm(running);
}

#[test]
fn a_signal_ends_the_session_when_stdout_is_blocked() {
    // A server that floods, and a reader of stdout that never reads.
    let server = Server::start(|mut conn| async move {
        let line = "flood ".repeat(100);
        loop {
            conn.send_text(&line).await;
        }
    });
    let mut running = Tether::new()
        .args([&server.url("/"), "--keep-open"])
        .stdout_unread()
        .spawn();
    running.stderr_line("connected");
    std::thread::sleep(Duration::from_millis(500));
    ends_soon_after_sigterm(running);
}

#[test]
fn a_signal_ends_the_session_when_stdin_never_ends() {
    let server = Server::echo();
    let mut running = Tether::new().arg(server.url("/")).stdin_endless().spawn();
    running.stderr_line("connected");
    std::thread::sleep(Duration::from_millis(500));
    ends_soon_after_sigterm(running);
}

#[test]
fn a_smoke_test_fed_bad_bytes_on_stdin_fails_at_once_with_the_input_error() {
    let server = Server::echo();
    let run = Tether::new()
        .args([&server.url("/"), "--expect", "never", "--timeout", "20s"])
        .stdin(b"ok\n\xff\n")
        .run();
    run.code(1);
    assert!(run.error_line().contains("line 2"), "{}", run.describe());
}

#[test]
fn count_ends_the_session_even_when_stdin_never_ends() {
    let server = Server::echo();
    let mut running = Tether::new()
        .args([&server.url("/"), "-n", "3"])
        .stdin_endless()
        .spawn();
    let note = running.stderr_line("--count 3 reached");
    assert!(
        note.ends_with(" messages from stdin were not sent"),
        "{note}"
    );
    let (code, lines) = running.wait();
    assert_eq!(code, Some(0));
    assert_eq!(lines, ["endless input"; 3]);
}

#[test]
fn after_stdin_ends_a_server_that_always_closes_before_confirming_gets_three_tries() {
    // It reads the line (and echoes it) but closes with 1001 before the
    // Ping that would confirm it can be answered: a retried close, every time.
    let server = Server::start(|mut conn| async move {
        if let Some(message) = conn.recv().await {
            conn.send(message).await;
        }
        conn.close(1001, "going away").await;
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .args(crate::support::FAST_BACKOFF)
        .stdin("hi\n")
        .deadline(Duration::from_secs(20))
        .run();
    run.code(9);
    assert!(
        run.error_line()
            .ends_with("1 message was never confirmed by the server (1 written, unconfirmed)"),
        "{}",
        run.describe()
    );
    assert_eq!(server.connections().len(), 3, "{}", run.describe());
}

#[test]
fn replies_still_printing_to_a_slow_reader_are_not_idleness_for_linger() {
    // Each 4 MiB message takes the reader about a second, far longer than
    // --linger, and all five longer than the 2 s a close may wait: the
    // session must not close (and lose the rest) while stdout is busy.
    const SIZE: usize = 4 << 20;
    let server = Server::start(|mut conn| async move {
        for i in 0..5u8 {
            conn.send(crate::support::server::binary(&vec![b'a' + i; SIZE]))
                .await;
        }
        conn.close(1000, "").await;
    });
    let (run, _) = Tether::new()
        .args([
            &server.url("/"),
            "--binary-format",
            "raw",
            "--linger",
            "100ms",
            "-q",
        ])
        .slow_stdout(4 << 10)
        .run_peak_rss();
    run.code(0);
    let lines: Vec<usize> = run.stdout.split(|b| *b == b'\n').map(<[u8]>::len).collect();
    assert_eq!(lines, [SIZE, SIZE, SIZE, SIZE, SIZE, 0], "{}", run.stderr);
}

#[test]
fn heartbeat_events_printed_with_json_are_not_activity_for_linger() {
    // A Pong every 100 ms is a `pong` event on stdout, far more often than
    // the 600 ms --linger: output a ready reader takes at once must not keep
    // the session from ending (it never ended).
    let server = Server::echo();
    let run = Tether::new()
        .args([
            &server.url("/"),
            "--json",
            "--ping-interval",
            "100ms",
            "--linger",
            "600ms",
        ])
        .stdin("hi\n")
        .deadline(Duration::from_secs(20))
        .run();
    run.code(0);
    let events: Vec<String> = run
        .json_events()
        .iter()
        .map(|e| e["event"].as_str().unwrap_or("?").to_owned())
        .filter(|e| e != "pong")
        .collect();
    assert_eq!(
        events,
        ["connecting", "handshake", "connected", "message", "closed"],
        "{}",
        run.describe()
    );
}
