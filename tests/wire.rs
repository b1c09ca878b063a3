//! Watching the wire: `-vv`'s frame trace, `-P`'s Pings and Pongs, and `--json-sent`'s
//! record of what tether wrote, against servers that ping, pong unasked and drop.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::support::server::{Conn, binary};
use crate::support::{FAST_BACKOFF, Server, Tether};

/// The frame lines of a `-vv` trace on stderr, without their time and level (nor any
/// colour): `> text 5 bytes`.
fn frames(stderr: &str) -> Vec<String> {
    let colour = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
    let frame =
        regex::Regex::new(r"^\S+ +TRACE +([<>] (text|binary|ping|pong|close|raw frame)\b.*)$")
            .unwrap();
    stderr
        .lines()
        .filter_map(|line| {
            let line = colour.replace_all(line, "");
            Some(frame.captures(&line)?[1].to_owned())
        })
        .collect()
}

/// Reads until the client's Pong (tungstenite's own answer to our Ping).
async fn pong(conn: &mut Conn) {
    while let Some(Ok(message)) = conn.ws.next().await {
        if let Message::Pong(_) = message {
            return;
        }
    }
}

/// Takes one message, pings (with an escape in the payload) and waits for the answer,
/// pongs unasked, sends a text and a binary message, and closes with 1000 "bye".
fn pinging_server() -> Server {
    Server::start(|mut conn| async move {
        conn.recv().await;
        conn.send(Message::Ping("keep\x1balive".into())).await;
        pong(&mut conn).await;
        conn.send(Message::Pong("".into())).await;
        conn.send_text("hi there").await;
        conn.send(binary(&[0, 1, 2])).await;
        conn.close(1000, "bye").await;
    })
}

/// No Pings of tether's own: what crosses the wire is the server's doing.
const QUIET_LINK: [&str; 5] = [
    "--keep-open",
    "--ping-interval",
    "0",
    "--replay-window",
    "0",
];

#[test]
fn minus_vv_traces_every_frame_both_ways_with_control_payloads_only() {
    let server = pinging_server();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(QUIET_LINK)
        .arg("-vv")
        .stdin("hello\n")
        .run();
    run.code(0).stdout_is("hi there\nAAEC\n");
    assert_eq!(
        frames(&run.stderr),
        [
            "> text 5 bytes",
            r#"< ping 10 bytes "keep\u{1b}alive""#,
            r#"> pong 10 bytes "keep\u{1b}alive" (auto)"#,
            "< pong 0 bytes",
            "< text 8 bytes",
            "< binary 3 bytes",
            r#"< close 1000 "bye""#,
            r#"> close 1000 "bye" (auto)"#,
        ],
        "{}",
        run.describe()
    );
    // The server's escape is shown, never sent to the terminal.
    assert!(!run.stderr.contains("keep\x1b"), "{}", run.describe());

    // RUST_LOG picks the frames alone; without it, -v traces none.
    let run = Tether::new()
        .arg(server.url("/"))
        .args(QUIET_LINK)
        .env("RUST_LOG", "tether::frame=trace")
        .stdin("hello\n")
        .run();
    run.code(0);
    assert_eq!(frames(&run.stderr).len(), 8, "{}", run.describe());
    assert!(!run.stderr.contains("DEBUG"), "{}", run.describe());
    let run = Tether::new()
        .arg(server.url("/"))
        .args(QUIET_LINK)
        .arg("-v")
        .stdin("hello\n")
        .run();
    run.code(0);
    assert_eq!(
        frames(&run.stderr),
        Vec::<String>::new(),
        "{}",
        run.describe()
    );
}

#[test]
fn minus_vvv_shows_the_payloads_of_text_and_binary_messages_too() {
    let server = Server::echo();
    let run = Tether::new()
        .arg(server.url("/"))
        .args([
            "--count",
            "2",
            "--ping-interval",
            "0",
            "--replay-window",
            "0",
        ])
        .args(["-vvv", "--binary"])
        .stdin("hé\"\n\n")
        .run();
    run.code(0);
    assert_eq!(
        frames(&run.stderr),
        [
            "> binary 4 bytes 68c3a922",
            "> binary 0 bytes",
            "< binary 4 bytes 68c3a922",
            "< binary 0 bytes",
            r#"> close 1000 """#,
            r#"< close 1000 """#,
        ],
        "{}",
        run.describe()
    );
    let run = Tether::new()
        .arg(server.url("/"))
        .args([
            "--count",
            "1",
            "--ping-interval",
            "0",
            "--replay-window",
            "0",
        ])
        .arg("-vvv")
        .stdin("a \"quote\"\n")
        .run();
    run.code(0);
    assert_eq!(
        frames(&run.stderr)[..2],
        [
            r#"> text 9 bytes "a \"quote\"""#,
            r#"< text 9 bytes "a \"quote\"""#
        ],
        "{}",
        run.describe()
    );
}

/// stderr's lines, with the server's address as `ADDR`.
fn status_lines(stderr: &str, server: &Server) -> Vec<String> {
    stderr
        .lines()
        .map(|l| l.replace(&server.addr().to_string(), "ADDR"))
        .collect()
}

#[test]
fn show_ping_pong_prints_the_servers_pings_and_unasked_pongs_on_stderr() {
    let server = pinging_server();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(QUIET_LINK)
        .arg("-P")
        .stdin("hello\n")
        .run();
    run.code(0).stdout_is("hi there\nAAEC\n");
    assert_eq!(
        status_lines(&run.stderr, &server),
        [
            "tether: connected to ws://ADDR/",
            r#"tether: ping from the server: "keep\u{1b}alive""#,
            "tether: unsolicited pong from the server (empty)",
            r#"tether: server closed (1000: bye)"#,
        ],
        "{}",
        run.describe()
    );

    // Without -P, nothing of it.
    let run = Tether::new()
        .arg(server.url("/"))
        .args(QUIET_LINK)
        .stdin("hello\n")
        .run();
    run.code(0).stderr_lacks("ping").stderr_lacks("pong");
}

#[test]
fn show_ping_pong_prints_the_heartbeats_round_trips() {
    let server = Server::echo();
    let mut running = Tether::new()
        .arg(server.url("/"))
        .args(["-P", "--ping-interval", "100ms"])
        .spawn();
    let line = running.stderr_line("pong");
    let shape = regex::Regex::new(r"^tether: pong: rtt \d+\.\d ms \(heartbeat\)$").unwrap();
    assert!(shape.is_match(&line), "{line:?}");
    running.close_stdin();
    let (code, _) = running.wait();
    assert_eq!(code, Some(0));
}

/// The `event` names of a `--json` run, with `data` for those that carry it.
fn events(run: &crate::support::cmd::Run) -> Vec<String> {
    run.json_events()
        .iter()
        .map(|e| match (&e["event"], &e["data"]) {
            (Value::String(name), Value::String(data)) => format!("{name} {data}"),
            (Value::String(name), _) => name.clone(),
            _ => panic!("no event name in {e}"),
        })
        .collect()
}

#[test]
fn show_ping_pong_adds_ping_and_pong_events_to_json() {
    let server = pinging_server();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(QUIET_LINK)
        .args(["--json", "-P"])
        .stdin("hello\n")
        .run();
    run.code(0);
    assert_eq!(
        events(&run),
        [
            "connecting",
            "handshake",
            "connected",
            // "keep\x1balive" in base64.
            "ping a2VlcBthbGl2ZQ==",
            "pong",
            "message hi there",
            "message AAEC",
            "closed",
        ],
        "{}",
        run.describe()
    );
    let pong = &run.json_events()[4];
    assert_eq!(pong["rtt_ms"], Value::Null, "{pong}");
    assert_eq!(pong["heartbeat"], false, "{pong}");

    let run = Tether::new()
        .arg(server.url("/"))
        .args(QUIET_LINK)
        .arg("--json")
        .stdin("hello\n")
        .run();
    run.code(0);
    assert_eq!(
        events(&run),
        [
            "connecting",
            "handshake",
            "connected",
            "message hi there",
            "message AAEC",
            "closed"
        ]
    );
}

/// The `sent` and `message` events of a `--json --json-sent` run, in order:
/// `sent a`, `sent a (replay)`, `message a`.
fn conversation(run: &crate::support::cmd::Run) -> Vec<String> {
    run.json_events()
        .iter()
        .filter_map(|e| {
            let data = e["data"].as_str();
            match e["event"].as_str()? {
                "sent" if e["replay"] == true => Some(format!("sent {} (replay)", data?)),
                "sent" => Some(format!("sent {}", data?)),
                "message" => Some(format!("message {}", data?)),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn json_sent_records_on_connect_and_smoke_sends_before_their_replies() {
    let server = Server::echo();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--json", "--json-sent", "--on-connect", "hi"])
        .args(["--send", "hello", "--expect", "^hello$"])
        .run();
    run.code(0);
    let said = conversation(&run);
    let at = |what: &str| {
        said.iter()
            .position(|s| s == what)
            .unwrap_or_else(|| panic!("no {what:?} in {said:?}"))
    };
    assert_eq!(said.len(), 4, "{said:?}");
    assert!(at("sent hi") < at("message hi"), "{said:?}");
    assert!(at("sent hi") < at("sent hello"), "{said:?}");
    assert!(at("sent hello") < at("message hello"), "{said:?}");
    let sent = &run.json_events()[3];
    assert_eq!(sent["type"], "text", "{sent}");
    assert_eq!(sent["replay"], false, "{sent}");

    // Only with --json.
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--json-sent", "--send", "x"])
        .run();
    run.code(2).stderr_has("--json");
}

#[test]
fn json_sent_records_piped_lines_and_marks_the_replay_after_a_reconnect() {
    // The first connection takes the three messages and drops without a word, before
    // any Pong could confirm them; the second echoes.
    let server = Server::start(|mut conn| async move {
        if conn.index == 0 {
            for _ in 0..3 {
                conn.recv().await;
            }
        } else {
            conn.echo().await;
        }
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .args(FAST_BACKOFF)
        .args(["--json", "--json-sent", "--on-connect", "hi", "--binary"])
        .stdin("a\nb\n")
        .deadline(Duration::from_secs(20))
        .run();
    run.code(0);
    assert_eq!(
        conversation(&run),
        [
            "sent hi",
            "sent YQ==",
            "sent Yg==",
            "sent hi",
            "sent YQ== (replay)",
            "sent Yg== (replay)",
            "message hi",
            "message YQ==",
            "message Yg==",
        ],
        "{}",
        run.describe()
    );
    assert_eq!(server.connections().len(), 2);
}

#[test]
fn json_sent_to_a_slow_reader_pauses_writing_instead_of_growing_memory() {
    // 64 MiB of lines to a server that reads as fast as tether writes, and a reader of
    // stdout far slower than that: each `sent` event waits for room, as a received
    // message does, so tether holds a few MiB of them, not the upload. (With no replay
    // window, no confirmation holds writing back: only the events' room does.)
    const LINES: usize = 64 * 1024;
    let line = |i: usize| format!("{i:08} {}", "x".repeat(1014));
    let input: String = (0..LINES).map(|i| line(i) + "\n").collect();
    let server = Server::start(|mut conn| async move {
        // Not recorded: the test's own memory is not the point.
        while let Some(Ok(_)) = conn.ws.next().await {}
    });
    let (run, peak_kib) = Tether::new()
        .args([
            &server.url("/"),
            "--json",
            "--json-sent",
            "--replay-window",
            "0",
        ])
        .stdin(&input)
        .slow_stdout(16 << 10)
        .deadline(Duration::from_secs(60))
        .run_peak_rss();
    run.code(0);
    let sent: Vec<String> = run
        .json_events()
        .into_iter()
        .filter(|e| e["event"] == "sent")
        .map(|e| e["data"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sent.len(), LINES);
    assert!(
        sent.iter().enumerate().all(|(i, s)| *s == line(i)),
        "in order"
    );
    // What the binary takes (15 to 20 MiB, debug build), and a few MiB in flight.
    let bound_kib = 32 * 1024;
    assert!(
        peak_kib < bound_kib,
        "peak RSS {peak_kib} KiB, over {bound_kib} KiB"
    );
}

#[test]
fn a_ping_flood_shown_with_p_to_a_stalled_reader_stops_being_read() {
    // The server pings as fast as it can, reading the Pongs; nobody reads tether's
    // stdout. Each Ping is an event, which waits for room as a message does, so tether
    // stops reading and the flood stalls in the socket buffers.
    let pings = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pings);
    let server = Server::start(move |conn| {
        let counter = Arc::clone(&counter);
        async move {
            let (mut tx, mut rx) = conn.ws.split();
            tokio::spawn(async move { while let Some(Ok(_)) = rx.next().await {} });
            while tx.send(Message::Ping(vec![b'p'; 125].into())).await.is_ok() {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let _running = Tether::new()
        .args([&server.url("/"), "--json", "-P", "--keep-open"])
        .args(["--ping-interval", "0"])
        .stdout_unread()
        .spawn();
    // Stalled: no Ping for half a second.
    let started = Instant::now();
    let mut last = (0, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = pings.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() > Duration::from_millis(500) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the flood never stalled: {now} Pings written"
        );
    }
    // The event channel, stdout's buffers and the socket buffers: far from unbounded.
    assert!(
        last.0 < 200_000,
        "{} Pings written before the flood stalled",
        last.0
    );
}

#[test]
fn json_sent_with_echo_against_a_flood_and_a_slow_reader_finishes() {
    // The server floods, and reads the echoes as they come; stdout is slower than both.
    // The echo frontend sends from the driver's loop, so its writing does not wait for
    // it to take the `sent` events (each side could end up waiting for the other): it
    // sends only as fast as it takes the messages. Every echo is recorded.
    const N: usize = 4000;
    let server = Server::start(|conn| async move {
        let (mut tx, mut rx) = conn.ws.split();
        let reader = tokio::spawn(async move {
            let mut echoes = 0;
            while echoes < N {
                match rx.next().await {
                    Some(Ok(Message::Text(_))) => echoes += 1,
                    Some(Ok(_)) => {}
                    _ => return (echoes, rx),
                }
            }
            (echoes, rx)
        });
        for i in 0..N {
            let _ = tx
                .send(Message::text(format!("{i:04} {}", "f".repeat(1019))))
                .await;
        }
        if let Ok((N, rx)) = reader.await
            && let Ok(mut ws) = tx.reunite(rx)
        {
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        }
    });
    let (run, _) = Tether::new()
        .args([&server.url("/"), "--echo", "--json", "--json-sent"])
        .slow_stdout(8 << 10)
        .deadline(Duration::from_secs(30))
        .run_peak_rss();
    run.code(0);
    let said = conversation(&run);
    let count = |prefix: &str| said.iter().filter(|s| s.starts_with(prefix)).count();
    assert_eq!((count("message "), count("sent ")), (N, N));
}
