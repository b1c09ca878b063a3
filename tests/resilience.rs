//! Heartbeats, reconnects and the no-loss queue, with the real binary
//! against servers and a fault-injection proxy that misbehave on purpose.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::fault_proxy::FaultProxy;
use support::{Server, Tether};

const FAST_BACKOFF: [&str; 4] = ["--backoff-initial", "10ms", "--backoff-max", "20ms"];

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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
