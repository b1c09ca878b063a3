//! Heartbeats, reconnects and the no-loss queue, with the real binary
//! against servers and a fault-injection proxy that misbehave on purpose.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::fault_proxy::FaultProxy;
use crate::support::server::never_reads;
use crate::support::{
    FAST_BACKOFF, Server, Tether, first_difference, free_port, numbered, random_bytes,
};

#[test]
fn drops_every_few_thousand_messages_lose_no_line_and_keep_order() {
    // Every connection takes 4,000 messages, then vanishes without a Close.
    let server = Server::start(|mut conn| async move {
        for _ in 0..4_000 {
            if conn.recv().await.is_none() {
                return;
            }
        }
    });
    let input: String = (0..20_000).map(|i| format!("{i}\n")).collect();
    Tether::new()
        .arg(server.url("/"))
        .args(FAST_BACKOFF)
        .args(["-q", "--linger", "200ms"])
        .stdin(&input)
        .run()
        .code(0);

    let conns = server.connections();
    assert!(
        conns.len() >= 6,
        "the server dropped the client {} times",
        conns.len() - 1
    );
    let mut seen = vec![false; 20_000];
    for (i, conn) in conns.iter().enumerate() {
        let numbers: Vec<usize> = conn.texts().iter().map(|t| t.parse().unwrap()).collect();
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "connection {i} saw lines out of order"
        );
        for n in numbers {
            seen[n] = true;
        }
    }
    let missing: Vec<_> = (0..20_000).filter(|&n| !seen[n]).collect();
    assert!(missing.is_empty(), "lines never received: {missing:?}");
}

#[test]
fn on_connect_messages_are_sent_first_on_every_connection() {
    // The first three connections take one message each and drop.
    let server = Server::start(|mut conn| async move {
        if conn.index < 3 {
            conn.recv().await;
            conn.recv().await;
        } else {
            conn.echo().await;
        }
    });
    let mut running = Tether::new()
        .arg(server.url("/"))
        .args(FAST_BACKOFF)
        .args([
            "--on-connect",
            r#"{"op":"subscribe"}"#,
            "--on-connect",
            "auth",
        ])
        .spawn();
    for i in 0..4 {
        running.send(format!("line {i}\n"));
    }
    let conns = server.wait_until(Duration::from_secs(10), |c| {
        c.len() >= 4 && c[3].texts().iter().any(|t| t == "line 3")
    });
    for (i, conn) in conns.iter().enumerate() {
        let texts = conn.texts();
        assert_eq!(
            texts[..2],
            [r#"{"op":"subscribe"}"#, "auth"],
            "connection {i} started with {texts:?}"
        );
    }
    running.close_stdin();
    let (code, _) = running.wait();
    assert_eq!(code, Some(0));
}

/// A server that answers the first `rejections` handshakes with `response`
/// and echoes after that; it records when each connection arrived.
fn rejecting(response: &'static str, rejections: usize) -> (Server, Arc<Mutex<Vec<Instant>>>) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&arrivals);
    let count = Arc::new(AtomicUsize::new(0));
    let server = Server::raw(move |mut stream| {
        let n = count.fetch_add(1, Ordering::SeqCst);
        log.lock().unwrap().push(Instant::now());
        async move {
            use futures_util::{SinkExt, StreamExt};
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if n < rejections {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
                return;
            }
            let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                return;
            };
            while let Some(Ok(message)) = ws.next().await {
                if message.is_text() {
                    let _ = ws.send(message).await;
                }
            }
        }
    });
    (server, arrivals)
}

#[test]
fn a_503_with_retry_after_is_retried_no_sooner_than_asked() {
    let (server, arrivals) = rejecting(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
        1,
    );
    let run = Tether::new()
        .args([&server.url("/"), "--max-reconnects", "3", "--json"])
        .stdin("after the wait\n")
        .run();
    run.code(0);
    let events = run.json_events();
    let wait = events
        .iter()
        .find(|e| e["event"] == "reconnecting")
        .unwrap();
    assert_eq!(wait["delay_ms"], 1000, "{wait}");
    assert!(wait["reason"].as_str().unwrap().contains("503"));
    assert!(events.iter().any(|e| e["data"] == "after the wait"));
    let arrivals = arrivals.lock().unwrap();
    assert_eq!(arrivals.len(), 2);
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(1));
}

#[test]
fn a_retry_after_of_zero_or_in_the_past_does_not_shorten_the_backoff() {
    // `Retry-After: 0` and a date long gone both ask for "now"; the backoff delay that is
    // due (200 ms here, jitter included) still applies.
    for retry_after in ["0", "Thu, 01 Jan 1970 00:00:00 GMT"] {
        let response: &'static str = Box::leak(
            format!(
                "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after}\r\n\
                 Content-Length: 0\r\n\r\n"
            )
            .into_boxed_str(),
        );
        let (server, arrivals) = rejecting(response, 3);
        let run = Tether::new()
            .args([&server.url("/"), "--max-reconnects", "5", "--json"])
            .args(["--backoff-initial", "200ms", "--backoff-max", "200ms"])
            .stdin("after the waits\n")
            .run();
        run.code(0);
        let delays: Vec<_> = run
            .json_events()
            .into_iter()
            .filter(|e| e["event"] == "reconnecting")
            .map(|e| e["delay_ms"].clone())
            .collect();
        assert_eq!(delays, [200, 200, 200], "Retry-After: {retry_after}");
        let arrivals = arrivals.lock().unwrap();
        assert_eq!(arrivals.len(), 4);
        for pair in arrivals.windows(2) {
            assert!(
                pair[1] - pair[0] >= Duration::from_millis(200),
                "{arrivals:?}"
            );
        }
    }
}

#[test]
fn a_401_is_not_retried_and_exits_with_the_handshake_code() {
    let (server, arrivals) = rejecting(
        "HTTP/1.1 401 Unauthorized\r\nContent-Length: 11\r\n\r\nwho are you",
        usize::MAX,
    );
    Tether::new()
        .args([&server.url("/"), "--max-reconnects", "3"])
        .run()
        .code(5)
        .stderr_has("HTTP 401 Unauthorized")
        .stderr_has("who are you")
        .stderr_lacks("reconnecting");
    assert_eq!(arrivals.lock().unwrap().len(), 1);
}

#[test]
fn a_refused_port_is_tried_exactly_max_reconnects_plus_one_times() {
    let port = free_port();
    let run = Tether::new()
        .arg(format!("ws://127.0.0.1:{port}/"))
        .args(["--max-reconnects", "3", "--json"])
        .args(FAST_BACKOFF)
        .run();
    run.code(3);
    let attempts: Vec<_> = run
        .json_events()
        .iter()
        .filter(|e| e["event"] == "connecting")
        .map(|e| e["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    let last = run.json_events().pop().unwrap();
    assert_eq!(last["event"], "error");
    assert_eq!(last["exit_code"], 3);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("gave up after 4 attempts")
    );
}

#[test]
fn a_blackholed_peer_is_dropped_for_a_heartbeat_timeout_and_replaced() {
    let server = Server::echo();
    let proxy = FaultProxy::start(server.addr());
    let mut running = Tether::new()
        .arg(proxy.url("/"))
        .args(["--ping-interval", "200ms", "--ping-timeout", "300ms"])
        .args(FAST_BACKOFF)
        .spawn();
    running.stderr_line("connected to");
    proxy.blackhole(true);
    let lost = running.stderr_line("heartbeat timeout");
    assert!(lost.contains("disconnected"), "{lost}");
    proxy.blackhole(false);
    running.stderr_nth("connected to", 2);
    running.send("alive again\n");
    assert_eq!(running.line(), "alive again");
}

#[test]
fn a_line_typed_during_an_outage_is_delivered_after_it() {
    let server = Server::echo();
    let proxy = FaultProxy::start(server.addr());
    let mut running = Tether::new()
        .arg(proxy.url("/"))
        .args(["--backoff-initial", "50ms", "--backoff-max", "100ms"])
        .spawn();
    running.stderr_line("connected to");
    proxy.refuse(true);
    proxy.reset();
    running.stderr_line("reconnecting in");
    running.send("sent while down\n");
    proxy.refuse(false);
    assert_eq!(running.line(), "sent while down");
}

/// Open descriptors and resident memory of a process, from /proc.
fn footprint(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    (fds, rss_kib)
}

#[test]
fn a_thousand_connect_drop_cycles_leak_neither_descriptors_nor_memory() {
    // Every connection is dropped right after the handshake.
    let server = Server::start(|_conn| async {});
    let running = Tether::new()
        .arg(server.url("/"))
        .args(["-q", "--backoff-initial", "1ms", "--backoff-max", "1ms"])
        .deadline(Duration::from_secs(60))
        .spawn();
    server.wait_until(Duration::from_secs(30), |c| c.len() >= 100);
    let (fds_before, rss_before) = footprint(running.pid());
    server.wait_until(Duration::from_secs(60), |c| c.len() >= 1_100);
    let (fds_after, rss_after) = footprint(running.pid());
    // One socket may be mid-connect at either reading.
    assert!(
        fds_after <= fds_before + 1,
        "descriptors grew from {fds_before} to {fds_after}"
    );
    assert!(
        rss_after <= rss_before + 1024,
        "resident memory grew from {rss_before} KiB to {rss_after} KiB"
    );
}

/// A server answers and resets the connection at once, with tether's next messages
/// unread. The answer is in tether's receive buffer, but tether has more to write, and
/// that write is the first to meet the reset: it must not end the connection before
/// the answer is read (with `--confirm-by-reply` the answers are the confirmations).
#[test]
fn what_a_server_said_before_it_reset_the_connection_is_still_read() {
    let server = Server::start(|mut conn| async move {
        conn.recv().await;
        conn.send_text("last words").await;
        conn.reset();
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .arg("--no-reconnect")
        .stdin(numbered(100_000))
        .run();
    run.code(8).stdout_is("last words\n");
}

// ---------------------------------------------------------------------------------------
// The close: nothing written and unconfirmed is forgotten at the end of input
// ---------------------------------------------------------------------------------------

#[test]
fn a_close_that_cannot_be_confirmed_is_a_lost_connection_with_everything_counted() {
    let server = Server::start(never_reads);
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--no-reconnect", "--ping-timeout", "1s"])
        .stdin(numbered(500))
        .run();
    run.code(8);
    assert_eq!(
        run.error_line(),
        "tether: error: connection lost: the server confirmed none of the last 500 messages \
         within 1s (--ping-timeout) before the close; gave up after 1 attempt; 500 messages \
         were never confirmed by the server (500 written, unconfirmed)",
        "{}",
        run.describe()
    );
}

#[test]
fn messages_a_stalled_server_never_confirmed_are_replayed_before_the_close() {
    // The first connection takes everything into its socket buffers and reads none of it;
    // the second reads. All 500 lines must reach the second, in order, then a clean close.
    let server = Server::start(|mut conn| async move {
        if conn.index == 0 {
            never_reads(conn).await;
        } else {
            while conn.recv().await.is_some() {}
        }
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .args(FAST_BACKOFF)
        .args(["--ping-timeout", "1s"])
        .stdin(numbered(500))
        .run();
    run.code(0).stderr_has("re-sending 500 messages");
    let conns = server.wait_until(Duration::from_secs(5), |c| c.len() == 2 && c[1].ended);
    let expected: Vec<String> = (0..500).map(|i| i.to_string()).collect();
    assert_eq!(conns[1].texts(), expected, "{}", run.describe());
    assert_eq!(conns[1].close, Some((1000, String::new())));
}

#[test]
fn a_byte_stream_a_stalled_server_never_confirmed_is_replayed_whole_and_in_order() {
    // As above, with -b: the bytes the first connection never read reach the second, in
    // their messages, in order, and nothing twice.
    let input = random_bytes(256 << 10, 7);
    let server = Server::start(|mut conn| async move {
        if conn.index == 0 {
            never_reads(conn).await;
        } else {
            while conn.recv().await.is_some() {}
        }
    });
    let run = Tether::new()
        .args([&server.url("/"), "-b"])
        .args(FAST_BACKOFF)
        .args(["--ping-timeout", "1s"])
        .stdin(&input)
        .run();
    run.code(0).stderr_has("re-sending ");
    let conns = server.wait_until(Duration::from_secs(5), |c| c.len() == 2 && c[1].ended);
    let received: Vec<u8> = conns[1]
        .messages
        .iter()
        .flat_map(|m| {
            assert!(m.is_binary(), "{m:?}");
            m.clone().into_data()
        })
        .collect();
    assert!(
        received == input,
        "{} bytes reached the second connection of {}; first difference at {:?}\n{}",
        received.len(),
        input.len(),
        first_difference(&received, &input),
        run.describe()
    );
    assert_eq!(conns[1].close, Some((1000, String::new())));
}

#[test]
fn a_slow_reader_is_alive_and_gets_every_line_once() {
    // The server reads 1 KB lines at about 200 KB/s, so a Ping written behind the lines
    // already in the socket buffers is answered seconds later, far past --ping-timeout.
    // The server visibly reads meanwhile (the acknowledging Pings written every 64 KiB
    // are answered, about every 0.3 s): it is not dead.
    let server = Server::start(|mut conn| async move {
        while conn.recv().await.is_some() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let line = "x".repeat(1000);
    let input: String = (0..600).map(|i| format!("{i:04}{line}\n")).collect();
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--ping-interval", "500ms", "--ping-timeout", "1s"])
        .stdin(&input)
        .deadline(Duration::from_secs(60))
        .run();
    run.code(0)
        .stderr_lacks("heartbeat")
        .stderr_lacks("re-sending");
    let conns = server.wait_until(Duration::from_secs(5), |c| {
        c.first().is_some_and(|c| c.ended)
    });
    assert_eq!(conns.len(), 1, "{}", run.describe());
    let expected: Vec<String> = input.lines().map(str::to_owned).collect();
    assert_eq!(conns[0].texts(), expected);
    assert_eq!(conns[0].close, Some((1000, String::new())));
}

#[test]
fn giving_up_counts_every_line_read_from_stdin_that_the_server_never_confirmed() {
    // The server reads 200 messages, then nothing; tether's first acknowledging Ping
    // follows message 256, so the server confirmed none. Every one of the 3,000 lines
    // (all read from stdin: they fit its pipe) must be counted, wherever it was: still
    // queued, written, or read from stdin and waiting for room.
    let server = Server::start(|mut conn| async move {
        for _ in 0..200 {
            conn.recv().await;
        }
        never_reads(conn).await;
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--no-reconnect", "--json", "--queue-size", "100"])
        .args(["--ping-interval", "500ms", "--ping-timeout", "500ms"])
        .stdin(numbered(3_000))
        .run();
    run.code(8);
    let error = run.json_events().pop().expect("an error event");
    assert_eq!(error["event"], "error", "{}", run.describe());
    assert_eq!(error["unsent"], 3_000, "{}", run.describe());
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("; 3000 messages were never confirmed by the server ("),
        "{message}"
    );
}

#[test]
fn pongs_the_server_sends_unasked_do_not_keep_a_dead_connection_alive() {
    // The server never reads, and sends a Pong every 100 ms of its own accord: they answer
    // no Ping of tether's, so they show nothing, and the heartbeat must still fire.
    let server = Server::start(|mut conn| async move {
        loop {
            conn.send(tokio_tungstenite::tungstenite::Message::Pong(
                "unasked".into(),
            ))
            .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--keep-open", "--no-reconnect"])
        .args(["--ping-interval", "500ms", "--ping-timeout", "500ms"])
        .deadline(Duration::from_secs(10))
        .run();
    run.code(8)
        .stderr_has("tether: error: connection lost: heartbeat timeout: no pong within 500ms");
}

#[test]
fn an_interrupt_while_the_close_waits_for_confirmation_leaves_at_once_and_counts() {
    let server = Server::start(never_reads);
    let mut running = Tether::new()
        .arg(server.url("/"))
        .args(["-v", "--linger", "100ms", "--ping-timeout", "30s"])
        .spawn();
    running.send(numbered(500)).close_stdin();
    running.stderr_line("closing once the server confirms 500 messages");
    let asked = Instant::now();
    running.signal("INT");
    let warning = running.stderr_line("never confirmed");
    assert_eq!(
        warning,
        "tether: warning: 500 messages were never confirmed by the server (500 written, unconfirmed)"
    );
    let (code, _) = running.wait();
    assert_eq!(code, Some(130));
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "{:?}",
        asked.elapsed()
    );
}

#[test]
fn a_smoke_test_whose_sends_are_never_confirmed_does_not_pass() {
    let server = Server::start(never_reads);
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--send", "hi", "--send", "there", "--ping-timeout", "1s"])
        .run();
    run.code(8)
        .stderr_has("2 messages were never confirmed by the server (2 written, unconfirmed)")
        .stderr_lacks("passed");
}

#[test]
fn a_server_that_always_drops_before_confirming_the_close_gets_three_tries() {
    // Each connection reads the line, echoes it, and goes away without a Close (300 ms
    // later) before it answers the Ping that would confirm the line: replaying it forever would flood the
    // server with duplicates, so the close is tried on three connections, then given up.
    let server = Server::start(|mut conn| async move {
        if let Some(message) = conn.recv().await {
            conn.send(message).await;
            // Not reading: tether's Ping stays unanswered until the drop.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let run = Tether::new()
        .arg(server.url("/"))
        .args(FAST_BACKOFF)
        .args(["--linger", "0s"])
        .stdin("hi\n")
        .run();
    run.code(8).stderr_has(
        "gave up after 3 attempts; 1 message was never confirmed by the server (1 written, unconfirmed)",
    );
    assert_eq!(server.connections().len(), 3, "{}", run.describe());
}

#[test]
fn a_smoke_test_whose_timeout_ends_the_wait_for_confirmation_does_not_pass() {
    let server = Server::start(never_reads);
    let run = Tether::new()
        .arg(server.url("/"))
        .args(["--send", "hi", "--linger", "100ms", "--timeout", "2s"])
        .run();
    run.code(6).stderr_lacks("passed").stderr_has(
        "tether: error: deadline reached: --timeout 2s ran out before the server confirmed the messages it was sent and answered the Close",
    );
}
