//! Pipe mode end to end: the real binary against real servers.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};

use crate::support::cmd::BIN;
use crate::support::pty::Pty;
use crate::support::server::binary;
use crate::support::{Server, Tether, first_difference, random_bytes};
use tokio_tungstenite::tungstenite::Message;

#[test]
fn ten_thousand_lines_come_back_complete_and_in_order() {
    let server = Server::echo();
    let input: String = (0..10_000)
        .map(|i| format!("line {i} {}\n", "x".repeat(i % 50)))
        .collect();
    let run = Tether::new().arg(server.url("/")).stdin(&input).run();
    run.code(0).stdout_is(&input);
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].close, Some((1000, String::new())), "a clean close");
}

#[test]
fn replies_that_come_after_the_last_line_are_not_lost() {
    // Each reply comes 300 ms after its request: well after stdin's EOF.
    let server = Server::start(|mut conn| async move {
        while let Some(message) = conn.recv().await {
            tokio::time::sleep(Duration::from_millis(300)).await;
            conn.send(message).await;
            conn.send_text("and one more").await;
        }
    });
    Tether::new()
        .arg(server.url("/"))
        .stdin("last words\n")
        .run()
        .code(0)
        .stdout_is("last words\nand one more\n");
}

#[test]
fn keep_open_waits_for_the_server_to_close() {
    let server = Server::start(|mut conn| async move {
        conn.recv().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        conn.send_text("late but welcome").await;
        conn.close(1000, "done").await;
    });
    Tether::new()
        .args([&server.url("/"), "--keep-open"])
        .stdin("hi\n")
        .run()
        .code(0)
        .stdout_is("late but welcome\n")
        .stderr_has("server closed (1000: done)");
}

#[test]
fn count_ends_the_session_after_that_many_messages() {
    let server = Server::start(|mut conn| async move {
        for i in 0..10 {
            conn.send_text(&format!("tick {i}")).await;
        }
        conn.echo().await;
    });
    let running = Tether::new()
        .args([&server.url("/"), "--count", "3"])
        .spawn();
    // stdin stays open: --count alone ends the run.
    let (code, lines) = running.wait();
    assert_eq!(code, Some(0));
    assert_eq!(lines, ["tick 0", "tick 1", "tick 2"]);
}

fn binary_server() -> Server {
    Server::start(|mut conn| async move {
        conn.send_text("text first").await;
        conn.send(binary(b"\x00\xffhi\n")).await;
        conn.close(1000, "").await;
    })
}

#[test]
fn binary_frames_render_in_each_format() {
    let server = binary_server();
    for (format, expected) in [
        ("hex", "text first\n00ff68690a\n"),
        ("base64", "text first\nAP9oaQo=\n"),
    ] {
        Tether::new()
            .args([&server.url("/"), "--keep-open", "--binary-format", format])
            .run()
            .code(0)
            .stdout_is(expected);
    }
    let raw = Tether::new()
        .args([&server.url("/"), "--keep-open", "--binary-format", "raw"])
        .run();
    raw.code(0);
    assert_eq!(raw.stdout, b"text first\n\x00\xffhi\n\n");
    // The pipe default keeps one message per line.
    Tether::new()
        .args([&server.url("/"), "--keep-open"])
        .run()
        .code(0)
        .stdout_is("text first\nAP9oaQo=\n");
}

#[test]
fn large_and_small_records_keep_their_order_and_bytes_both_ways() {
    // Records of 64 KiB and more are queued and printed without copies;
    // what comes out must still be exactly what went in, in order.
    let server = Server::echo();
    let big = |seed: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| b'a' + (i as u8).wrapping_mul(seed) % 26)
            .collect()
    };
    let mut input = Vec::new();
    for (i, len) in [3, 70_000, 5, 300_000, 0, 1 << 20, 9]
        .into_iter()
        .enumerate()
    {
        input.extend_from_slice(&big(i as u8 + 1, len));
        input.push(b'\n');
    }
    for flags in [
        &["--binary", "--binary-format", "raw"][..],
        &["--verbatim"][..],
    ] {
        let run = Tether::new()
            .arg(server.url("/"))
            .args(flags)
            .stdin(&input)
            .run();
        run.code(0);
        assert!(run.stdout == input, "flags {flags:?}: output differs");
    }
    // To a file, small replies are written at once and large ones by the
    // writer thread: the order holds across the two.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("out");
    std::fs::write(&path, "").expect("creating the stdout file");
    Tether::new()
        .args([&server.url("/"), "--verbatim"])
        .stdout_to(&path)
        .stdin(&input)
        .run()
        .code(0);
    assert!(
        std::fs::read(&path).unwrap() == input,
        "file output differs"
    );
}

#[test]
fn binary_input_sends_binary_messages_and_null_separates_records() {
    let server = Server::echo();
    let run = Tether::new()
        .args([&server.url("/"), "--binary", "-0", "--binary-format", "raw"])
        .stdin(b"one\ntwo\x00\xff\xfe\x00")
        .run();
    run.code(0);
    assert_eq!(run.stdout, b"one\ntwo\x00\xff\xfe\x00");
    let conns = server.connections();
    assert_eq!(
        conns[0].messages,
        [binary(b"one\ntwo"), binary(b"\xff\xfe")]
    );
}

#[test]
fn crlf_lines_are_sent_without_their_cr_and_empty_lines_are_skipped() {
    // A file written on Windows, with blank lines (one of them "\r\n" alone).
    let input = b"first\r\n\r\nsecond line\r\n\n  \r\nlast\r\n";
    let server = Server::echo();
    Tether::new()
        .arg(server.url("/"))
        .stdin(input)
        .run()
        .code(0)
        .stdout_is("first\nsecond line\n  \nlast\n");
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].texts(), ["first", "second line", "  ", "last"]);
}

#[test]
fn verbatim_and_nul_records_keep_their_cr_and_empty_records() {
    let server = Server::echo();
    let run = Tether::new()
        .args([&server.url("/"), "--verbatim"])
        .stdin(b"first\r\n\r\n\nlast\r\n")
        .run();
    run.code(0);
    assert_eq!(run.stdout, b"first\r\n\r\n\nlast\r\n");
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].texts(), ["first\r", "\r", "", "last\r"]);

    let server = Server::echo();
    let run = Tether::new()
        .args([&server.url("/"), "-0"])
        .stdin(b"one\r\n\x00\r\x00\x00")
        .run();
    run.code(0);
    assert_eq!(run.stdout, b"one\r\n\x00\r\x00\x00");
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].texts(), ["one\r\n", "\r", ""]);
}

/// Echoes every data message, recording nothing: a large upload costs the
/// test process no copy of it.
fn unrecorded_echo() -> Server {
    Server::start(|mut conn| async move {
        while let Some(Ok(message)) = conn.ws.next().await {
            if message.is_text() || message.is_binary() {
                let _ = conn.ws.send(message).await;
            }
        }
    })
}

#[test]
fn a_100_mb_file_comes_back_byte_for_byte_through_an_echo_server_with_memory_flat() {
    // Random bytes, newlines, NULs and \r included, sent as a byte stream to a reader of
    // stdout slower than the network: what comes back is the file, and tether holds a
    // bounded part of it (the send credit, the replay window, the event credit).
    const SIZE: usize = 100_000_000;
    let input = random_bytes(SIZE, 14);
    let server = unrecorded_echo();
    let (run, peak_kib) = Tether::new()
        .args([&server.url("/"), "-b", "-q"])
        .stdin(&input)
        .slow_stdout(128 << 10)
        .deadline(Duration::from_secs(60))
        .run_peak_rss();
    run.code(0);
    assert!(
        run.stdout == input,
        "{} bytes came back of {SIZE}; first difference at {:?}\n{}",
        run.stdout.len(),
        first_difference(&run.stdout, &input),
        run.stderr
    );
    // What the binary takes (15 to 20 MiB, debug build), and a few MiB in flight.
    let bound_kib = 32 * 1024;
    assert!(
        peak_kib < bound_kib,
        "peak RSS {peak_kib} KiB, over {bound_kib} KiB"
    );
}

#[test]
fn a_byte_stream_sends_what_it_reads_as_binary_and_writes_messages_back_to_back() {
    let server = Server::start(|mut conn| async move {
        conn.send_text("text\n").await;
        conn.send(binary(b"\x00\xffhi\n")).await;
        conn.send(binary(b"")).await;
        conn.send_text("\x1b[2J\r").await;
        conn.send(binary(b"end")).await;
        // What tether sent, back as one message.
        let mut got = Vec::new();
        while let Some(message) = conn.recv().await {
            got.extend_from_slice(&message.into_data());
            if got.len() >= 8 {
                break;
            }
        }
        conn.send(binary(&got)).await;
        conn.close(1000, "").await;
    });
    let run = Tether::new()
        .args([&server.url("/"), "--byte-stream", "--keep-open"])
        .stdin(b"a\r\n\n\x00b\xff\n")
        .run();
    run.code(0);
    // Every message's bytes, text too, with nothing in between or after: no newline,
    // no escaping.
    assert_eq!(
        run.stdout,
        b"text\n\x00\xffhi\n\x1b[2J\renda\r\n\n\x00b\xff\n"
    );
    let conns = server.connections();
    assert!(
        conns[0].messages.iter().all(Message::is_binary),
        "{:?}",
        conns[0].messages
    );
    let sent: Vec<u8> = conns[0]
        .messages
        .iter()
        .flat_map(|m| m.clone().into_data())
        .collect();
    assert_eq!(sent, b"a\r\n\n\x00b\xff\n");
}

#[test]
fn a_byte_stream_on_a_terminal_reads_it_and_shows_what_arrives_escaped() {
    // -b runs pipe mode even on a terminal: a typed line goes out as its bytes, and what
    // the server sends is shown with the escapes a terminal would obey made visible.
    let server = Server::start(|mut conn| async move {
        let typed = conn.recv().await.expect("the typed line");
        conn.send_text("\x1b[2Jhi\n").await;
        conn.send(binary(b"\x07\xff")).await;
        conn.send(typed).await;
        conn.close(1000, "").await;
    });
    let state = tempfile::tempdir().expect("temp dir");
    let mut pty = Pty::tether(
        [
            server.url("/").as_str(),
            "-b",
            "--keep-open",
            "--color",
            "never",
        ],
        state.path(),
    );
    pty.expect("connected");
    pty.line("typed");
    pty.expect("\\e[2Jhi\r\n");
    pty.expect("\\x07\\xff");
    pty.expect("typed\r\n");
    assert_eq!(pty.exit_code(), 0, "{:?}", pty.all_output());
    let shown = pty.all_output();
    assert!(
        !shown.contains("\x1b[2J") && !shown.contains('\x07'),
        "{shown:?}"
    );
    assert_eq!(server.connections()[0].messages, [binary(b"typed\n")]);
}

#[test]
fn json_events_describe_the_session() {
    let server = binary_server();
    let run = Tether::new()
        .args([&server.url("/feed"), "--json", "--keep-open"])
        .run();
    run.code(0);
    let events = run.json_events();
    let kinds: Vec<_> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "connecting",
            "handshake",
            "connected",
            "message",
            "message",
            "closed"
        ]
    );
    assert_eq!(events[1]["response"]["status"], 101);
    assert_eq!(events[2]["url"], server.url("/feed"));
    assert_eq!(events[3]["type"], "text");
    assert_eq!(events[3]["data"], "text first");
    assert_eq!(events[4]["type"], "binary");
    assert_eq!(events[4]["data"], "AP9oaQo=");
    assert_eq!(events[5]["code"], 1000);
    assert_eq!(events[5]["by_server"], true);
    for event in &events {
        let time = event["time"].as_str().unwrap();
        assert!(
            time.ends_with('Z') && time.contains('T'),
            "RFC 3339: {time}"
        );
    }
    assert!(
        run.stderr.is_empty(),
        "diagnostics belong to stdout with --json: {}",
        run.stderr
    );
}

#[test]
fn timestamps_prefix_each_line() {
    let server = Server::echo();
    let run = Tether::new()
        .args([&server.url("/"), "--timestamps"])
        .stdin("a\n")
        .run();
    run.code(0);
    let line = run.stdout_str();
    let (time, rest) = line.split_once(' ').unwrap();
    assert_eq!(rest, "a\n");
    assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
}

#[test]
fn pretty_changes_only_whitespace() {
    let server = Server::start(|mut conn| async move {
        conn.send_text(r#"{"z":1.10,"big":123456789012345678901234,"a":"caf\u00e9","z":[]}"#)
            .await;
        conn.send_text("not JSON: {\"a\":1").await;
        conn.send_text(" [ 1 ,2 ] ").await;
        conn.close(1000, "").await;
    });
    Tether::new()
        .args([&server.url("/"), "--pretty", "--keep-open"])
        .run()
        .code(0)
        .stdout_is(concat!(
            "{\n",
            "  \"z\": 1.10,\n",
            "  \"big\": 123456789012345678901234,\n",
            "  \"a\": \"caf\\u00e9\",\n",
            "  \"z\": []\n",
            "}\n",
            "not JSON: {\"a\":1\n",
            "[\n  1,\n  2\n]\n",
        ));
}

#[test]
fn timestamps_indent_the_continuation_lines_of_a_message() {
    let server = Server::start(|mut conn| async move {
        conn.send_text("first line\nsecond line\n\nlast").await;
        conn.send_text("solo").await;
        conn.close(1000, "").await;
    });
    let run = Tether::new()
        .args([&server.url("/"), "--timestamps", "--keep-open"])
        .run();
    run.code(0);
    let stamp = regex::Regex::new(r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ").unwrap();
    let pad = " ".repeat(25);
    assert_eq!(
        stamp.replace_all(&run.stdout_str(), "TIME "),
        format!("TIME first line\n{pad}second line\n{pad}\n{pad}last\nTIME solo\n")
    );
}

#[test]
fn invalid_utf8_on_stdin_names_the_line_and_sends_what_came_before() {
    let server = Server::echo();
    Tether::new()
        .arg(server.url("/"))
        .stdin(b"good\nbad \xc3\x28 line\nnever sent\n")
        .run()
        .code(1)
        .stdout_is("good\n")
        .stderr_has("stdin line 2 is not valid UTF-8");
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].texts(), ["good"]);
}

#[test]
fn a_closed_stdout_ends_quietly_with_success() {
    let server = Server::start(|mut conn| async move {
        loop {
            conn.send_text("flood").await;
        }
    });
    // `| head -1`: the reader goes away after one line.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "{} {} --keep-open </dev/null | head -1; echo \"status ${{PIPESTATUS[0]}}\"",
            BIN,
            server.url("/")
        ))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "flood\nstatus 0\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("error"), "{stderr}");
}

#[test]
fn secrets_never_reach_stderr_or_json() {
    let server = Server::start(|mut conn| async move {
        conn.recv().await;
        conn.close(4001, "go away").await;
    });
    let url = server
        .url("/")
        .replace("ws://", "ws://alice:url-secret-123@");
    let run = Tether::new()
        .args([
            &url,
            "-v",
            "--json",
            "-H",
            "Authorization: Bearer header-secret-456",
        ])
        .args(["-H", "Cookie: session=cookie-secret-789"])
        .stdin("hi\n")
        .run();
    run.code(9);
    let conns = server.connections();
    assert_eq!(
        conns[0].header("authorization"),
        Some("Bearer header-secret-456")
    );
    let all = format!("{}{}", run.stdout_str(), run.stderr);
    for secret in [
        "url-secret-123",
        "header-secret-456",
        "cookie-secret-789",
        "alice:",
    ] {
        assert!(
            !all.contains(secret),
            "{secret} leaked:\n{}",
            run.describe()
        );
    }
    assert!(
        all.contains(&server.url("/")),
        "the URL is shown without userinfo"
    );
}

#[test]
fn url_userinfo_becomes_basic_auth() {
    let server = Server::echo();
    let url = server.url("/").replace("ws://", "ws://alice:s3cret@");
    Tether::new().arg(url).stdin("x\n").run().code(0);
    // base64("alice:s3cret")
    assert_eq!(
        server.connections()[0].header("authorization"),
        Some("Basic YWxpY2U6czNjcmV0")
    );
}

#[test]
fn handshake_options_reach_the_server() {
    let server = Server::echo();
    Tether::new()
        .args([
            &server.url("/"),
            "-H",
            "X-Trace: 42",
            "--origin",
            "https://example.test",
        ])
        .stdin("x\n")
        .run()
        .code(0);
    let conn = &server.connections()[0];
    assert_eq!(conn.header("x-trace"), Some("42"));
    assert_eq!(conn.header("origin"), Some("https://example.test"));
}

#[test]
fn echo_mode_answers_every_message_with_itself() {
    let server = Server::start(|mut conn| async move {
        conn.send_text("ping?").await;
        conn.send(binary(b"\x01\x02")).await;
        let first = conn.recv().await;
        let second = conn.recv().await;
        assert_eq!(first, Some(Message::text("ping?")));
        assert_eq!(second, Some(binary(b"\x01\x02")));
        conn.close(1000, "").await;
    });
    Tether::new()
        .args([&server.url("/"), "--echo"])
        .run()
        .code(0);
    assert_eq!(server.connections()[0].messages.len(), 2);
}

#[test]
fn echo_mode_keeps_up_with_a_server_that_floods_it() {
    // The server writes far more than the socket buffers hold before it reads
    // a single echo, so tether must keep reading while its echoes wait to be
    // written (and must not wait for Pongs stuck behind the flood).
    const FLOOD: usize = 50_000;
    let server = Server::start(|conn| async move {
        let (mut tx, mut rx) = conn.ws.split();
        let writer = tokio::spawn(async move {
            for i in 0..FLOOD {
                tx.feed(Message::text(format!("{i:06} {}", "x".repeat(90))))
                    .await
                    .unwrap();
            }
            tx.flush().await.unwrap();
            tx
        });
        let mut echoed = 0;
        while echoed < FLOOD {
            match rx.next().await {
                Some(Ok(Message::Text(text))) => {
                    assert!(
                        text.starts_with(&format!("{echoed:06} ")),
                        "out of order: {text}"
                    );
                    echoed += 1;
                }
                Some(Ok(_)) => {}
                other => panic!("the connection ended after {echoed} echoes: {other:?}"),
            }
        }
        let mut tx = writer.await.unwrap();
        tx.send(Message::Close(None)).await.unwrap();
        while let Some(Ok(_)) = rx.next().await {}
    });
    let run = Tether::new()
        .args([&server.url("/"), "--echo"])
        .deadline(Duration::from_secs(60))
        .run();
    run.code(0);
    assert_eq!(run.stdout_lines().len(), FLOOD);
}

#[test]
fn sigterm_closes_cleanly_and_exits_130() {
    let server = Server::echo();
    let mut tether = Tether::new()
        .args([&server.url("/"), "--keep-open"])
        .spawn();
    tether.stderr_line("connected to");
    tether.signal("TERM");
    let (code, _) = tether.wait();
    assert_eq!(code, Some(130));
    let conns = server.wait_until(Duration::from_secs(10), |c| {
        c.first().is_some_and(|c| c.close.is_some())
    });
    assert_eq!(conns[0].close, Some((1000, "interrupted".to_string())));
}

/// A closed terminal or a dropped ssh session sends SIGHUP, which used to
/// kill tether without a Close frame.
#[test]
fn sighup_closes_cleanly_and_exits_130() {
    let server = Server::echo();
    let mut tether = Tether::new()
        .args([&server.url("/"), "--keep-open"])
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

/// A shell that hangs up resends SIGHUP to its jobs (and the kernel may send
/// another when the shell exits): a repeated SIGHUP is not a second Ctrl-C,
/// so it does not cut the close short.
#[test]
fn a_repeated_sighup_does_not_force_the_exit() {
    let (got_close_tx, got_close_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let hooks = Arc::new(Mutex::new((got_close_tx, release_rx)));
    let server = Server::start(move |mut conn| {
        let hooks = Arc::clone(&hooks);
        async move {
            while let Some(Ok(message)) = conn.ws.next().await {
                if let Message::Close(_) = message {
                    // Hold the answer to our Close until the test says.
                    let hooks = Arc::clone(&hooks);
                    tokio::task::spawn_blocking(move || {
                        let hooks = hooks.lock().unwrap();
                        let _ = hooks.0.send(());
                        let _ = hooks.1.recv();
                    })
                    .await
                    .unwrap();
                    let _ = conn.ws.flush().await;
                }
            }
        }
    });
    let mut tether = Tether::new()
        .args([&server.url("/"), "--keep-open", "--json"])
        .spawn();
    assert!(tether.line().contains("\"event\":\"connecting\""));
    assert!(tether.line().contains("\"event\":\"handshake\""));
    assert!(tether.line().contains("\"event\":\"connected\""));
    tether.signal("HUP");
    got_close_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server got tether's Close");
    // While tether waits for the answer, the shell and the kernel hang up
    // again. A second Ctrl-C would exit at once (or the watcher within
    // 500 ms); these must not: give them longer than that to do harm.
    tether.signal("HUP");
    std::thread::sleep(Duration::from_millis(800));
    tether.signal("HUP");
    release_tx.send(()).unwrap();
    let (code, rest) = tether.wait();
    assert_eq!(code, Some(130));
    let closed = rest
        .iter()
        .find(|l| l.contains("\"event\":\"closed\""))
        .unwrap_or_else(|| panic!("no closed event: {rest:?}"));
    assert!(closed.contains("\"code\":1000"), "{closed}");
}

#[test]
fn a_second_signal_ends_tether_even_while_its_stdout_is_stalled() {
    // The server floods tether, whose reader never reads: everything fills up
    // and tether is stuck writing stdout, where no signal is looked at.
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&sent);
    let server = Server::start(move |conn| {
        let sent = Arc::clone(&counter);
        async move {
            let (mut tx, _rx) = conn.ws.split();
            let line = "x".repeat(1024);
            while tx.send(Message::text(line.as_str())).await.is_ok() {
                sent.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    let mut tether = Tether::new()
        .args([&server.url("/"), "--keep-open"])
        .stdout_unread()
        .spawn();
    tether.stderr_line("connected to");
    // Stuck: the server has sent messages and can send no more.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let before = sent.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
        if before > 0 && sent.load(Ordering::SeqCst) == before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server never got stuck sending"
        );
    }
    // Two different signals, so that they cannot merge into one.
    tether.signal("INT").signal("TERM");
    let (code, _) = tether.wait();
    assert_eq!(code, Some(130));
}

#[test]
fn a_server_slow_to_answer_our_close_still_gets_a_clean_close() {
    // The server takes 300 ms to answer our Close: tether must wait for it
    // (up to 2 s) without writing anything after its own Close.
    let server = Server::start(|mut conn| async move {
        while let Some(Ok(message)) = conn.ws.next().await {
            match message {
                Message::Text(_) => conn.ws.send(message).await.unwrap(),
                Message::Close(_) => {
                    // tungstenite queued the reply; it leaves with this flush.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let _ = conn.ws.flush().await;
                }
                _ => {}
            }
        }
    });
    let run = Tether::new()
        .args([&server.url("/"), "--linger", "0", "--json"])
        .stdin("hi\n")
        .run();
    run.code(0);
    let events = run.json_events();
    let closed = events
        .iter()
        .find(|e| e["event"] == "closed")
        .expect("a closed event");
    assert_eq!(closed["code"], 1000, "{closed}");
}

#[test]
fn large_messages_to_a_slow_reader_take_two_messages_of_memory() {
    // Four 16 MiB binary messages, sent as fast as tether reads, to a reader of stdout that
    // is slower than the network. tether holds the message being printed and the one
    // being received, no more: no rendered copy of the whole base64 (4/3 of the message),
    // and no queue of messages waiting for stdout.
    const SIZE: usize = 16 << 20;
    let message = |i: u8| -> Vec<u8> {
        let block: Vec<u8> = (0..=255u8).map(|j| j.wrapping_mul(31) ^ i).collect();
        block.repeat(SIZE / 256)
    };
    let server = Server::start(move |mut conn| async move {
        for i in 0..4 {
            conn.send(binary(&message(i))).await;
        }
        conn.close(1000, "").await;
    });
    for format in ["base64", "raw"] {
        let (run, peak_kib) = Tether::new()
            .args([&server.url("/"), "--binary-format", format, "-q"])
            .slow_stdout(128 << 10)
            .deadline(Duration::from_secs(60))
            .run_peak_rss();
        run.code(0);
        let expected: Vec<u8> = (0..4)
            .flat_map(|i| {
                let data = message(i);
                let mut record = match format {
                    "raw" => data,
                    _ => base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
                        .into_bytes(),
                };
                record.push(b'\n');
                record
            })
            .collect();
        assert!(
            run.stdout == expected,
            "{format}: the output differs from the messages: {} bytes, expected {}",
            run.stdout.len(),
            expected.len()
        );
        // Two messages, and what the binary takes besides (15 to 20 MiB, debug build).
        let bound_kib = 2 * (SIZE as u64 >> 10) + 24 * 1024;
        assert!(
            peak_kib < bound_kib,
            "{format}: peak RSS {peak_kib} KiB, over {bound_kib} KiB"
        );
    }
}

#[test]
fn one_request_at_a_time_gets_each_reply_in_turn() {
    // Quick exchanges make tether poll instead of sleeping between them:
    // nothing may be lost or reordered for it.
    let server = Server::echo();
    let mut tether = Tether::new().arg(server.url("/")).spawn();
    for i in 0..500 {
        tether.send(format!("request {i}\n"));
        assert_eq!(tether.line(), format!("request {i}"));
    }
    tether.close_stdin();
    let (code, _) = tether.wait();
    assert_eq!(code, Some(0));
}

#[test]
fn a_feed_that_only_receives_leaves_the_cpu_idle_between_messages() {
    // Polling instead of sleeping pays only where replies follow requests
    // within microseconds, and only for a moment: a feed with a message every
    // 20 ms must leave the process asleep in between (polling all along
    // would use a second of CPU here).
    let server = Server::start(|mut conn| async move {
        for i in 0..50 {
            conn.send_text(&format!("tick {i}")).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        conn.send_text("end").await;
        conn.recv().await;
    });
    let mut tether = Tether::new().arg(server.url("/")).spawn();
    assert_eq!(tether.line(), "tick 0");
    let start = tether.cpu_time();
    for i in 1..50 {
        assert_eq!(tether.line(), format!("tick {i}"));
    }
    assert_eq!(tether.line(), "end");
    let used = tether.cpu_time() - start;
    assert!(
        used <= Duration::from_millis(100),
        "{used:?} of CPU for 50 messages in a second"
    );
    tether.close_stdin();
    assert_eq!(tether.wait().0, Some(0));
}

#[test]
fn a_reconnect_says_why_once() {
    // The reason was on the `disconnected` line and again on the
    // `reconnecting` one.
    let server = Server::start(|mut conn| async move {
        if conn.index == 0 {
            conn.send_text("one").await;
            // Dropped without a Close frame.
            return;
        }
        conn.send_text("two").await;
        conn.close(1000, "").await;
    });
    let run = Tether::new()
        .args([&server.url("/"), "--keep-open"])
        .args(["--backoff-initial", "50ms", "--backoff-max", "50ms"])
        .run();
    run.code(0).stdout_is("one\ntwo\n");
    let url = server.url("/");
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 5, "{}", run.describe());
    assert_eq!(
        [lines[0], lines[1], lines[3], lines[4]],
        [
            format!("tether: connected to {url}").as_str(),
            "tether: disconnected: connection lost: the server closed the TCP connection without a Close frame (1006)",
            format!("tether: connected to {url}").as_str(),
            "tether: server closed (1000)",
        ],
        "{}",
        run.describe()
    );
    let delay = lines[2]
        .strip_prefix("tether: reconnecting in ")
        .and_then(|rest| rest.strip_suffix(" ms (attempt 2)"))
        .unwrap_or_else(|| panic!("{:?} is not a bare reconnecting line", lines[2]));
    assert!(delay.parse::<u64>().is_ok_and(|ms| ms <= 50), "{delay}");
}
