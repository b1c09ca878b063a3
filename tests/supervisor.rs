//! The supervisor on tokio's paused clock: backoff, heartbeat and reconnect
//! timing asserted exactly, in virtual time, with real sockets.
//!
//! Server and supervisor share one current-thread runtime. Loopback writes
//! land in the peer's buffer at once, so the runtime is idle only when every
//! side is waiting on a timer, and the paused clock jumps straight to it.

use std::time::Duration;

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tether::cli::Cli;
use tether::config::{SessionConfig, Task, Terminals};
use tether::session::{Event, Payload};
use tether::supervisor::{self, Events};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

fn session(url: &str, flags: &[&str]) -> SessionConfig {
    let args = ["tether", url].into_iter().chain(flags.iter().copied());
    let cli = Cli::try_parse_from(args).expect("valid flags");
    let terminals = Terminals {
        stdin: false,
        stdout: false,
    };
    match Task::from_cli(cli, terminals).expect("valid config") {
        Task::Connect(config) => config.session,
        other => panic!("expected a client task, got {other:?}"),
    }
}

/// Events with the (virtual) time they arrived.
async fn next(events: &mut Events) -> (Event, Instant) {
    let event = events.next().await.expect("the supervisor ended early");
    (event, Instant::now())
}

async fn next_matching(events: &mut Events, pred: impl Fn(&Event) -> bool) -> (Event, Instant) {
    loop {
        let (event, at) = next(events).await;
        if pred(&event) {
            return (event, at);
        }
    }
}

/// What the test server does with a connection.
#[derive(Clone, Copy)]
enum Behave {
    /// Drop the TCP connection before the WebSocket handshake.
    Refuse,
    /// Accept, then never read again: a blackhole.
    Hold,
    /// Accept, stay up this long, then close normally... with 1001 (going away).
    StayUp(Duration),
    Echo,
}

/// A server whose n-th connection (from 0) does `behave(n)`. Returns the URL
/// and a log of the texts it received.
async fn server(
    behave: impl Fn(usize) -> Behave + Send + 'static,
) -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (log_tx, log_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        for n in 0.. {
            let (stream, _) = listener.accept().await.unwrap();
            let behaviour = behave(n);
            if let Behave::Refuse = behaviour {
                drop(stream);
                continue;
            }
            let log = log_tx.clone();
            tokio::spawn(async move {
                let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
                match behaviour {
                    Behave::Refuse => {}
                    Behave::Hold => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                    Behave::StayUp(time) => {
                        // Keep reading so pings are answered meanwhile.
                        let _ = tokio::time::timeout(time, async {
                            while let Some(Ok(message)) = ws.next().await {
                                if let Message::Text(text) = &message {
                                    let _ = log.send(text.to_string());
                                }
                            }
                        })
                        .await;
                        let _ = ws.close(Some(going_away())).await;
                    }
                    Behave::Echo => {
                        while let Some(Ok(message)) = ws.next().await {
                            if let Message::Text(text) = &message {
                                let _ = log.send(text.to_string());
                                let _ = ws.send(message).await;
                            }
                        }
                    }
                }
            });
        }
    });
    (url, log_rx)
}

fn going_away() -> tokio_tungstenite::tungstenite::protocol::CloseFrame {
    tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: 1001.into(),
        reason: "restarting".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn backoff_grows_by_the_factor_holds_the_cap_and_resets_after_a_healthy_connection() {
    // Five failed handshakes, then one connection that stays up 30 s, then
    // one more failure.
    let (url, _) = server(|n| match n {
        5 => Behave::StayUp(Duration::from_secs(30)),
        6 => Behave::Echo,
        _ => Behave::Refuse,
    })
    .await;
    let flags = [
        "--max-reconnects",
        "10",
        "--backoff-initial",
        "1s",
        "--backoff-max",
        "6s",
        "--ping-interval",
        "0",
    ];
    let (_handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();

    let mut delays = Vec::new();
    let mut last_attempt = None;
    loop {
        let (event, at) = next(&mut events).await;
        match event {
            Event::Connecting { attempt } => {
                if let (Some(prev), Some(&delay)) = (last_attempt, delays.last()) {
                    // The wait is the announced delay (tokio's timer rounds
                    // up to the millisecond).
                    let waited = at - prev;
                    assert!(
                        waited >= delay && waited <= delay + Duration::from_millis(1),
                        "attempt {attempt}: waited {waited:?} for a delay of {delay:?}"
                    );
                }
            }
            Event::Reconnecting { delay, .. } => {
                delays.push(delay);
                last_attempt = Some(at);
            }
            // The one that connects says what the server answered.
            Event::Handshake(_) => {}
            Event::Connected { .. } => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(delays.len(), 5);
    let ms = Duration::from_millis;
    for (i, delay) in delays.iter().enumerate() {
        // Base 1, 2, 4, 6, 6 s (capped); jitter adds up to one base, and the
        // cap holds after jitter.
        let base = ms(1000 << i).min(ms(6000));
        assert!(
            *delay >= base && *delay <= (base * 2).min(ms(6000)),
            "delay {i}: {delay:?}"
        );
    }

    // The connection outlived the healthy period: the schedule starts over.
    let (_, _) = next_matching(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let (event, _) = next_matching(&mut events, |e| matches!(e, Event::Reconnecting { .. })).await;
    let Event::Reconnecting { delay, attempt, .. } = event else {
        unreachable!()
    };
    assert_eq!(attempt, 2, "the streak was reset");
    assert!(
        delay >= ms(1000) && delay <= ms(2000),
        "reset delay {delay:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_blackholed_peer_is_detected_within_interval_plus_timeout_and_replaced() {
    // The first connection accepts and then never reads again: TCP stays up,
    // nothing answers. The second one echoes.
    let (url, mut log) = server(|n| if n == 0 { Behave::Hold } else { Behave::Echo }).await;
    let flags = [
        "--ping-interval",
        "5s",
        "--ping-timeout",
        "3s",
        "--backoff-initial",
        "100ms",
    ];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();

    let (_, connected_at) =
        next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    let (event, lost_at) =
        next_matching(&mut events, |e| matches!(e, Event::Disconnected { .. })).await;
    let Event::Disconnected {
        reason, will_retry, ..
    } = event
    else {
        unreachable!()
    };
    assert!(reason.contains("heartbeat timeout"), "{reason}");
    assert!(will_retry);
    assert_eq!(
        lost_at - connected_at,
        Duration::from_secs(8),
        "interval + timeout"
    );

    let (_, reconnected_at) =
        next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    assert!(reconnected_at - lost_at <= Duration::from_millis(200));

    // The new connection is alive: messages flow and the heartbeat is answered.
    handle.send(Payload::text("still here")).await.unwrap();
    assert_eq!(log.recv().await.as_deref(), Some("still here"));
    let (event, _) = next_matching(&mut events, |e| matches!(e, Event::Pong { .. })).await;
    assert!(matches!(
        event,
        Event::Pong {
            heartbeat: true,
            ..
        }
    ));
}

#[tokio::test(start_paused = true)]
async fn messages_sent_while_disconnected_wait_and_go_out_in_order() {
    // Two refused handshakes, then an echo server.
    let (url, mut log) = server(|n| if n < 2 { Behave::Refuse } else { Behave::Echo }).await;
    let flags = [
        "--max-reconnects",
        "5",
        "--on-connect",
        "subscribe",
        "--ping-interval",
        "0",
    ];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();
    for i in 0..3 {
        handle.send(Payload::text(format!("m{i}"))).await.unwrap();
    }
    next_matching(&mut events, |e| {
        matches!(e, Event::Connected { attempt: 3, .. })
    })
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(log.recv().await.unwrap());
    }
    assert_eq!(
        seen,
        ["subscribe", "m0", "m1", "m2"],
        "on-connect first, then the queue"
    );
}

#[tokio::test(start_paused = true)]
async fn giving_up_reports_the_cause_and_the_unsent_count() {
    let (url, _) = server(|_| Behave::Refuse).await;
    let flags = ["--max-reconnects", "2", "--backoff-initial", "10ms"];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();
    handle.send(Payload::text("lost?")).await.unwrap();
    let mut attempts = 0;
    while let Some(event) = events.next().await {
        if let Event::Connecting { .. } = event {
            attempts += 1;
        }
    }
    let err = handle.finish().await.unwrap_err();
    assert_eq!(attempts, 3);
    assert_eq!(err.exit_code() as u8, 3, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(
            "gave up after 3 attempts; 1 message was never confirmed by the server (1 queued, never written)"
        ),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_flush_interrupted_by_an_incoming_message_still_completes() {
    // The server reads nothing at first, so the client's flush of one large
    // message stalls on full socket buffers. A message from the server then
    // wakes the client's reader mid-flush. With nothing else queued, the rest
    // of the message must still go out.
    const SIZE: usize = 15 << 20;
    // A small receive buffer, so the message cannot fit in the socket buffers.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        ws.send(Message::text("interrupt")).await.unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        loop {
            match ws.next().await {
                Some(Ok(Message::Binary(data))) => return data.len(),
                Some(Ok(_)) => {}
                other => panic!("the connection ended first: {other:?}"),
            }
        }
    });
    let (handle, mut events) = supervisor::spawn(session(&url, &["--ping-interval", "0"])).unwrap();
    handle
        .send(Payload::Binary(vec![7u8; SIZE].into()))
        .await
        .unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Message(_))).await;
    let received = tokio::time::timeout(Duration::from_secs(60), server)
        .await
        .expect("the rest of the message never left the client")
        .unwrap();
    assert_eq!(received, SIZE);
}

#[tokio::test(start_paused = true)]
async fn reading_pauses_while_received_bytes_wait_for_the_frontend() {
    // The server sends 32 MiB in 1 MiB messages as fast as the client reads.
    // A frontend that does not keep up must hold a few of them, not all: the
    // event buffer counts messages, so only a byte budget bounds memory.
    const MESSAGES: usize = 32;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        for _ in 0..MESSAGES {
            ws.send(Message::binary(vec![1u8; 1 << 20])).await.unwrap();
        }
        while let Some(Ok(_)) = ws.next().await {}
    });
    let (_handle, mut events) =
        supervisor::spawn(session(&url, &["--ping-interval", "0"])).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    // The clock moves only once every task waits: the server on a full
    // socket, the supervisor on its byte budget.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut waiting = 0;
    while let Some(event) = events.try_next() {
        if let Event::Message(_) = event {
            waiting += 1;
        }
    }
    assert!(
        (1..=2).contains(&waiting),
        "{waiting} messages of 1 MiB waited for the frontend; the budget is 1 MiB"
    );
    // Reading resumes as the frontend catches up: every message arrives.
    let mut received = waiting;
    while received < MESSAGES {
        if let (Event::Message(payload), _) = next(&mut events).await {
            assert_eq!(payload.len(), 1 << 20);
            received += 1;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn written_messages_give_their_bytes_back_to_the_sender() {
    // A server that reads nothing for a while: a sender that waits for send
    // credit, as stdin does, stalls after a few MiB instead of queueing all,
    // and gets every byte back once the server reads.
    const MESSAGES: usize = 32;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let _server = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut received = 0;
        while received < MESSAGES {
            if let Some(Ok(Message::Binary(_))) = ws.next().await {
                received += 1;
            }
        }
        // Keep answering pings until the client is done.
        while let Some(Ok(_)) = ws.next().await {}
    });
    let (handle, mut events) = supervisor::spawn(session(&url, &["--ping-interval", "0"])).unwrap();
    let handle = std::sync::Arc::new(handle);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sender = tokio::spawn({
        let sent = std::sync::Arc::clone(&sent);
        let handle = std::sync::Arc::clone(&handle);
        async move {
            for _ in 0..MESSAGES {
                let data = vec![2u8; 1 << 20];
                handle.send(Payload::Binary(data.into())).await.unwrap();
                sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    let stalled_at = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        stalled_at < MESSAGES / 2,
        "{stalled_at} MiB went to a server that reads nothing"
    );
    assert!(handle.send_credit_used() <= supervisor::SEND_CREDIT + (1 << 20));
    sender.await.unwrap();
    // Every byte comes back once written: a Delivered event follows the last flush.
    let mut delivered = 0;
    while delivered < MESSAGES {
        if let (Event::Delivered { count }, _) = next(&mut events).await {
            delivered += count;
        }
    }
    assert_eq!(handle.send_credit_used(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_line_confirmed_while_idle_is_not_sent_again_after_a_reconnect() {
    // The first connection reads for 5 s, well before the first heartbeat
    // (20 s), then goes away; the second echoes.
    let (url, mut log) = server(|n| {
        if n == 0 {
            Behave::StayUp(Duration::from_secs(5))
        } else {
            Behave::Echo
        }
    })
    .await;
    let (handle, mut events) = supervisor::spawn(session(&url, &[])).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    handle.send(Payload::text("typed by hand")).await.unwrap();
    assert_eq!(log.recv().await.unwrap(), "typed by hand");

    // Across the drop and the reconnect, nothing is re-sent.
    loop {
        match next(&mut events).await.0 {
            Event::Connected { .. } => break,
            Event::Warning(warning) => panic!("unexpected warning: {warning}"),
            _ => {}
        }
    }
    handle
        .send(Payload::text("after the reconnect"))
        .await
        .unwrap();
    assert_eq!(log.recv().await.unwrap(), "after the reconnect");
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_never_showed_the_server_at_work_does_not_reset_the_streak() {
    // Every connection is a blackhole that lasts past the healthy period (10 s) before the
    // heartbeat (10 s + 10 s) finds it dead. Time alone must not reset the streak, or
    // `--max-reconnects 1` would never run out.
    let (url, _) = server(|_| Behave::Hold).await;
    let flags = [
        "--max-reconnects",
        "1",
        "--ping-interval",
        "10s",
        "--ping-timeout",
        "10s",
        "--backoff-initial",
        "10ms",
    ];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();
    let mut connected = 0;
    while let Some(event) = events.next().await {
        if let Event::Connected { .. } = event {
            connected += 1;
        }
    }
    let err = handle.finish().await.unwrap_err();
    assert_eq!(connected, 2, "{err}");
    assert_eq!(err.exit_code() as u8, 8, "{err}");
}

/// Collects events until the supervisor ends, as a frontend would.
fn collect(mut events: Events) -> tokio::task::JoinHandle<Vec<(Event, Instant)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(event) = events.next().await {
            seen.push((event, Instant::now()));
        }
        seen
    })
}

fn warned(events: &[(Event, Instant)], text: &str) -> bool {
    events
        .iter()
        .any(|(e, _)| matches!(e, Event::Warning(w) if w.contains(text)))
}

#[tokio::test(start_paused = true)]
async fn after_the_end_of_input_a_confirmed_session_is_not_dialled_again() {
    // The server reads (and answers the acknowledging Ping) for 5 s, then goes away
    // with 1001, which would be retried.
    let (url, mut log) = server(|_| Behave::StayUp(Duration::from_secs(5))).await;
    let (handle, mut events) = supervisor::spawn(session(&url, &[])).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    handle.send(Payload::text("the only line")).await.unwrap();
    handle.end_of_input().unwrap();
    assert_eq!(log.recv().await.unwrap(), "the only line");
    let events = collect(events).await.unwrap();
    let err = handle.finish().await.unwrap_err();
    assert_eq!(err.exit_code() as u8, 9, "as without reconnects: {err}");
    assert_eq!(
        err.to_string(),
        "server closed the connection with code 1001 (\"restarting\")"
    );
    assert!(
        warned(&events, "not reconnecting: input has ended"),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|(e, _)| matches!(e, Event::Connecting { .. })),
        "dialled again: {events:?}"
    );
    assert!(events.iter().any(|(e, _)| matches!(
        e,
        Event::Disconnected {
            will_retry: false,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn the_end_of_input_while_waiting_to_reconnect_ends_the_wait_when_nothing_is_left() {
    // The first connection reads for 1 s and goes away; the next attempts are refused.
    let (url, mut log) = server(|n| {
        if n == 0 {
            Behave::StayUp(Duration::from_secs(1))
        } else {
            Behave::Refuse
        }
    })
    .await;
    let flags = ["--backoff-initial", "10s", "--backoff-max", "10s"];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    handle.send(Payload::text("confirmed")).await.unwrap();
    assert_eq!(log.recv().await.unwrap(), "confirmed");
    // Lost (1001), refused once, and now waiting 10 s or more.
    next_matching(&mut events, |e| {
        matches!(e, Event::Reconnecting { attempt: 3, .. })
    })
    .await;
    let asked = Instant::now();
    handle.end_of_input().unwrap();
    let events = collect(events).await.unwrap();
    let err = handle.finish().await.unwrap_err();
    assert_eq!(Instant::now(), asked, "ended at once");
    assert!(warned(&events, "not reconnecting"), "{events:?}");
    assert_eq!(
        err.exit_code() as u8,
        3,
        "the last failure, a refused handshake: {err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_close_asked_while_disconnected_waits_for_the_reconnect_and_delivers() {
    // The first two handshakes are refused, then the server reads (and answers Pings).
    let (url, mut log) = server(|n| {
        if n < 2 {
            Behave::Refuse
        } else {
            Behave::StayUp(Duration::from_secs(60))
        }
    })
    .await;
    let flags = [
        "--max-reconnects",
        "5",
        "--backoff-initial",
        "1s",
        "--ping-interval",
        "0",
    ];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Reconnecting { .. })).await;
    handle
        .send(Payload::text("queued while away"))
        .await
        .unwrap();
    handle.close(1000, "bye".into()).await.unwrap();
    let events = collect(events).await.unwrap();
    let ending = match handle.finish().await {
        Ok(ending) => ending,
        Err(err) => panic!("{err}: {events:?}"),
    };
    assert_eq!(log.recv().await.unwrap(), "queued while away");
    assert_eq!(ending.unsent.total(), 0, "{ending:?}");
    assert_eq!(ending.code, Some(1000), "the server answered: {ending:?}");
    assert!(
        events
            .iter()
            .any(|(e, _)| matches!(e, Event::Connected { attempt: 3, .. })),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_ends_the_session_within_the_close_timeout_even_when_nothing_is_read() {
    // The server never reads: the socket buffers fill, so our Close can never be
    // written. Meanwhile a thread keeps sending, as an endless stdin would.
    let (url, _) = server(|_| Behave::Hold).await;
    let flags = ["--ping-interval", "0"];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    let events = collect(events);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stdin = std::thread::spawn({
        let sender = handle.blocking_sender();
        let sent = std::sync::Arc::clone(&sent);
        let not_queued = supervisor::NotQueued::default();
        move || {
            let record = Payload::Binary(vec![3u8; 16 << 10].into());
            while sender
                .send_batch(vec![record.clone(); 4], &not_queued)
                .is_ok()
            {
                sent.fetch_add(4, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    // Until everything stalls: the buffers full (or the replay window closed), the
    // send credit spent, the thread waiting. It runs in real time, so give it some
    // between short virtual sleeps, which let the supervisor do all it can.
    let mut last = usize::MAX;
    for _ in 0..1000 {
        std::thread::sleep(Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = sent.load(std::sync::atomic::Ordering::SeqCst);
        if now == last && handle.send_credit_used() >= supervisor::SEND_CREDIT {
            break;
        }
        last = now;
    }
    let interrupted_at = Instant::now();
    handle.interrupt();
    handle.interrupt();
    let ending = handle
        .finish()
        .await
        .expect("an interrupted close is an ending");
    let took = Instant::now() - interrupted_at;
    assert!(took <= Duration::from_secs(2), "took {took:?}");
    stdin.join().unwrap();
    let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(ending.code, None, "the server never answered: {ending:?}");
    assert_eq!(ending.unsent.total(), sent, "{ending:?}");
    assert!(
        ending.unsent.unconfirmed > 0 && ending.unsent.queued > 0,
        "{ending:?}"
    );
    let events = events.await.unwrap();
    assert!(
        matches!(events.last(), Some((Event::Closed { .. }, _))),
        "{events:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_interrupt_while_waiting_to_reconnect_ends_at_once() {
    let (url, _) = server(|_| Behave::Refuse).await;
    let flags = ["--max-reconnects", "5", "--backoff-initial", "10s"];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Reconnecting { .. })).await;
    handle.send(Payload::text("never sent")).await.unwrap();
    let asked = Instant::now();
    handle.interrupt();
    drop(events);
    let ending = handle.finish().await.expect("an ending");
    assert_eq!(Instant::now(), asked);
    assert_eq!(ending.unsent.queued, 1, "{ending:?}");
}

#[tokio::test(start_paused = true)]
async fn after_the_end_of_input_what_is_unconfirmed_is_still_replayed_first() {
    // The first connection never reads, so the heartbeat finds it dead with the line
    // unconfirmed; the second reads for 5 s and goes away with 1001.
    let (url, mut log) = server(|n| {
        if n == 0 {
            Behave::Hold
        } else {
            Behave::StayUp(Duration::from_secs(5))
        }
    })
    .await;
    let flags = [
        "--ping-interval",
        "1s",
        "--ping-timeout",
        "1s",
        "--backoff-initial",
        "100ms",
    ];
    let (handle, mut events) = supervisor::spawn(session(&url, &flags)).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    handle.send(Payload::text("unconfirmed")).await.unwrap();
    handle.end_of_input().unwrap();
    let events = collect(events).await.unwrap();
    let err = handle.finish().await.unwrap_err();
    assert_eq!(
        log.recv().await.unwrap(),
        "unconfirmed",
        "replayed to the second"
    );
    let connected = events
        .iter()
        .filter(|(e, _)| matches!(e, Event::Connected { .. }))
        .count();
    assert_eq!(connected, 1, "one reconnect, then none: {events:?}");
    assert!(warned(&events, "re-sending 1 message"), "{events:?}");
    assert!(warned(&events, "not reconnecting"), "{events:?}");
    assert_eq!(err.exit_code() as u8, 9, "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_frontend_that_dropped_its_events_holds_nothing_up() {
    // The server sends far more than the event budget, then reads until the close.
    // Nobody receives events: reading must go on regardless, or the server's answer
    // to our Close is never read.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(stream).await.unwrap();
        for _ in 0..8 {
            ws.send(Message::binary(vec![1u8; 1 << 20])).await.unwrap();
        }
        while let Some(Ok(_)) = ws.next().await {}
    });
    let (handle, mut events) = supervisor::spawn(session(&url, &["--ping-interval", "0"])).unwrap();
    next_matching(&mut events, |e| matches!(e, Event::Connected { .. })).await;
    drop(events);
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.close(1000, String::new()).await.unwrap();
    let ending = handle.finish().await.unwrap();
    assert_eq!(
        ending.code,
        Some(1000),
        "the server's answer was read: {ending:?}"
    );
}
