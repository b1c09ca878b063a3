//! The supervisor: one task that owns the connection's whole life.
//!
//! It dials, runs heartbeats, reconnects with backoff, and keeps the outgoing
//! queue across connections. Frontends talk to it only through [`Command`]s
//! and [`Event`]s, so it knows nothing about terminals or stdin.

mod backoff;
mod credit;
mod heartbeat;
mod outbox;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

pub use self::backoff::Backoff;
pub use self::credit::Credit;
use self::heartbeat::{Heartbeat, Tick};
use self::outbox::Outbox;
use crate::config::SessionConfig;
use crate::dial::{Dialer, Socket};
use crate::error::{Error, Result, Retry};
use crate::meter::WriteProgress;
use crate::session::{Command, Ending, Event, Payload, RttStats, State, Status, Unsent};

/// How many events may wait for a slow frontend before reading pauses.
const EVENT_BUFFER: usize = 1024;
/// Bytes of received messages that may wait for the frontend before reading
/// pauses: the event buffer counts messages, which may be large.
const EVENT_CREDIT: usize = 1 << 20;
/// Bytes of stdin records that may wait to be written before stdin reading
/// pauses (the queue's message count still applies, and the replay window
/// holds what was written).
pub const SEND_CREDIT: usize = 256 << 10;
/// Messages handed to the socket per flush, so reads get their turn.
const WRITE_BATCH: usize = 256;
/// Frames read per pass of the connection loop, so writes get their turn.
const READ_BURST: usize = 256;
/// How long to wait for the server's Close after ours.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long telling a misbehaving server why we hang up may take.
const FAIL_TIMEOUT: Duration = Duration::from_secs(1);
/// Unconfirmed messages or bytes that call for an acknowledging ping.
const ACK_EVERY_MESSAGES: usize = 256;
const ACK_EVERY_BYTES: usize = 64 * 1024;
/// When the queue runs empty with messages unconfirmed, an acknowledging ping
/// follows within this long (even if more writes come meanwhile): a few typed
/// lines must not wait for the next heartbeat, or a drop in between would send
/// them again.
const ACK_WHEN_IDLE: Duration = Duration::from_millis(100);
/// The longest wait a server's `Retry-After` can ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Connections in a row that may fail to confirm the last messages before
/// the close: a server that takes them and always drops the connection
/// before answering would otherwise get them again forever.
const CLOSE_ATTEMPTS: u32 = 3;

/// A running supervisor, as its frontend holds it.
pub struct Handle {
    pub commands: mpsc::Sender<Command>,
    /// Bytes of `Command::Send` queued and not yet written. A sender that can
    /// outpace the socket (stdin) waits for room and takes a message's size
    /// before sending it; the supervisor gives it back once it is written.
    pub send_credit: Arc<Credit>,
    pub events: Events,
    pub task: JoinHandle<Result<Ending>>,
}

/// The supervisor's events. Receiving a message gives its bytes back to the
/// supervisor, which reads from the socket only while few enough are waiting.
pub struct Events {
    rx: mpsc::Receiver<Event>,
    credit: Arc<Credit>,
}

impl Events {
    pub async fn recv(&mut self) -> Option<Event> {
        let event = self.rx.recv().await;
        self.received(event.as_ref());
        event
    }

    pub fn try_recv(&mut self) -> std::result::Result<Event, mpsc::error::TryRecvError> {
        let event = self.rx.try_recv();
        self.received(event.as_ref().ok());
        event
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    fn received(&self, event: Option<&Event>) {
        if let Some(Event::Message(payload)) = event {
            self.credit.give(payload.len());
        }
    }
}

/// Starts the supervisor on the current runtime. Fails only on settings that
/// can be checked before dialing (e.g. an unreadable `--cacert`).
pub fn spawn(config: SessionConfig) -> Result<Handle> {
    spawn_with_seed(config, None)
}

/// As [`spawn`], with a fixed jitter seed so tests can replay a schedule.
pub fn spawn_with_seed(config: SessionConfig, seed: Option<u64>) -> Result<Handle> {
    let dialer = Arc::new(Dialer::new(config.dial.clone())?);
    let (command_tx, command_rx) = mpsc::channel(config.queue_capacity.min(1024));
    let (event_tx, event_rx) = mpsc::channel(EVENT_BUFFER);
    let send_credit = Arc::new(Credit::new(SEND_CREDIT));
    let event_credit = Arc::new(Credit::new(EVENT_CREDIT));
    let supervisor = Supervisor {
        backoff: Backoff::new(config.reconnect.initial, config.reconnect.max, seed),
        on_connect: config
            .on_connect
            .iter()
            .map(|m| Message::text(m.as_str()))
            .collect(),
        outbox: Outbox::new(config.queue_capacity, config.replay_window),
        url: dialer.target(),
        dialer,
        config,
        commands: command_rx,
        commands_open: true,
        events: event_tx,
        send_credit: Arc::clone(&send_credit),
        event_credit: Arc::clone(&event_credit),
        control: VecDeque::new(),
        user_pings: VecDeque::new(),
        acks: Acks::default(),
        closing: None,
        confirm_close: true,
        failed_closes: 0,
        healthy: false,
        drain_requested: false,
        pong_owed: false,
        backlog: VecDeque::new(),
        state: State::Connecting,
        subprotocol: None,
        connected_since: None,
        reconnects: 0,
        rtt: RttStats::default(),
        sent: 0,
        received: 0,
    };
    Ok(Handle {
        commands: command_tx,
        send_credit,
        events: Events {
            rx: event_rx,
            credit: event_credit,
        },
        task: tokio::spawn(supervisor.run()),
    })
}

struct Supervisor {
    config: SessionConfig,
    dialer: Arc<Dialer>,
    url: String,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    events: mpsc::Sender<Event>,
    send_credit: Arc<Credit>,
    /// Bytes of messages emitted and not yet received by the frontend.
    event_credit: Arc<Credit>,
    backoff: Backoff,
    on_connect: Vec<Message>,
    outbox: Outbox,
    /// Pings for the current connection; they jump the data queue.
    control: VecDeque<Message>,
    /// User pings awaiting their pong: (payload, when queued).
    user_pings: VecDeque<(Bytes, Instant)>,
    /// Pings written on this connection and what each confirms.
    acks: Acks,
    closing: Option<CloseFrame>,
    /// The Close waits for every written message to be confirmed.
    confirm_close: bool,
    /// Connections in a row whose close lost the connection with messages
    /// unconfirmed: past CLOSE_ATTEMPTS, the session gives up on them.
    failed_closes: u32,
    /// The current connection showed the server at work (a message arrived,
    /// a Ping was answered): only then may it reset the reconnect streak.
    healthy: bool,
    drain_requested: bool,
    /// A Ping was read: tungstenite queued its Pong, which a flush sends.
    pong_owed: bool,
    /// Events the frontend has no room for yet, in order.
    backlog: VecDeque<Event>,
    state: State,
    subprotocol: Option<String>,
    connected_since: Option<(SystemTime, Instant)>,
    reconnects: u32,
    rtt: RttStats,
    sent: u64,
    received: u64,
}

/// How one connection ended.
enum ConnectionEnd {
    Closed(Ending),
    Lost(Error),
    /// The user asked for a fresh connection.
    Reconnect,
}

/// What an offline command asks of the reconnect loop.
enum Offline {
    Continue,
    SkipWait,
    End,
}

type Sink = SplitSink<Socket, Message>;
type Stream = SplitStream<Socket>;

/// What was handed to tungstenite and not yet flushed. It outlives a
/// `write_batch` that another branch of the select cancelled, so the next
/// call flushes it even when nothing else is left to write.
#[derive(Default)]
struct Unflushed {
    frames: bool,
    close: bool,
}

/// What one write batch handed to the kernel.
#[derive(Default)]
struct Written {
    delivered: usize,
    first_time_bytes: usize,
    ping: bool,
    close: bool,
}

impl Drop for Supervisor {
    /// Nothing will be written any more: a sender waiting for room must not
    /// wait forever.
    fn drop(&mut self) {
        self.send_credit.close();
    }
}

impl Supervisor {
    async fn run(mut self) -> Result<Ending> {
        // Failed attempts since the last healthy connection.
        let mut streak: u32 = 0;
        let mut ever_connected = false;
        loop {
            self.state = State::Connecting;
            self.emit(Event::Connecting {
                attempt: streak + 1,
            });
            let failure = match self.dial().await {
                Err(ending) => return ending,
                Ok(Err(err)) => err,
                Ok(Ok(conn)) => {
                    for warning in conn.warnings {
                        self.emit(Event::Warning(warning));
                    }
                    self.state = State::Connected;
                    ever_connected = true;
                    self.subprotocol = conn.subprotocol.clone();
                    self.connected_since = Some((SystemTime::now(), Instant::now()));
                    self.emit(Event::Connected {
                        url: conn.url,
                        subprotocol: conn.subprotocol,
                        attempt: streak + 1,
                    });
                    let started = Instant::now();
                    self.healthy = false;
                    let end = self.run_connection(conn.socket, conn.progress).await;
                    self.connected_since = None;
                    if self.healthy && started.elapsed() >= self.config.reconnect.healthy_after() {
                        streak = 0;
                        self.backoff.reset();
                    }
                    match end {
                        ConnectionEnd::Closed(ending) => {
                            let reconnect_anyway = ending.by_server
                                && self.closing.is_none()
                                && self.config.reconnect.on_normal_close
                                && self.config.reconnect.enabled;
                            if !reconnect_anyway {
                                return self.finish(ending).await;
                            }
                            Error::ConnectionLost(format!(
                                "the server closed the connection ({})",
                                ending.code.unwrap_or(1005)
                            ))
                        }
                        ConnectionEnd::Reconnect => {
                            self.emit(Event::Disconnected {
                                reason: "reconnect requested".into(),
                                code: None,
                                will_retry: true,
                            });
                            self.reconnects += 1;
                            continue;
                        }
                        ConnectionEnd::Lost(err) => {
                            let delivered =
                                self.outbox.is_empty() && self.outbox.unconfirmed().0 == 0;
                            if self.closing.is_some() && !delivered && self.confirm_close {
                                self.failed_closes += 1;
                            }
                            if self.closing.is_some() && self.failed_closes >= CLOSE_ATTEMPTS {
                                self.emit(Event::Disconnected {
                                    reason: err.to_string(),
                                    code: None,
                                    will_retry: false,
                                });
                                return Err(self.give_up(err, streak + 1).await);
                            }
                            // Dropped during our close with nothing left to
                            // deliver, or during an interrupt, which leaves
                            // whatever is left (and counts it).
                            if self.closing.is_some() && (delivered || !self.confirm_close) {
                                return self
                                    .finish(Ending {
                                        code: None,
                                        reason: format!("connection dropped while closing: {err}"),
                                        by_server: false,
                                        unsent: Unsent::default(),
                                    })
                                    .await;
                            }
                            err
                        }
                    }
                }
            };

            streak += 1;
            let policy = self.config.reconnect;
            let retry = if policy.enabled && (ever_connected || policy.retry_initial()) {
                failure.retry()
            } else {
                Retry::Never
            };
            let exhausted = self
                .config
                .reconnect
                .max_attempts
                .is_some_and(|max| streak > max);
            let will_retry = retry != Retry::Never && !exhausted;
            if let Error::ConnectionLost(_) | Error::ServerClosed { .. } = failure {
                self.emit(Event::Disconnected {
                    reason: failure.to_string(),
                    code: match failure {
                        Error::ServerClosed { code, .. } => Some(code),
                        _ => None,
                    },
                    will_retry,
                });
            }
            if !will_retry {
                return Err(self.give_up(failure, streak).await);
            }
            // A server's Retry-After may lengthen the wait, never shorten it:
            // `Retry-After: 0` must not turn the backoff off.
            let due = self.backoff.next_delay();
            let delay = match retry {
                Retry::After(delay) => delay.min(MAX_RETRY_AFTER).max(due),
                _ => due,
            };
            self.state = State::Waiting;
            self.emit(Event::Reconnecting {
                attempt: streak + 1,
                delay,
                reason: failure.to_string(),
            });
            if !self.wait(delay).await {
                let ending = Ending {
                    code: None,
                    reason: "closed while disconnected".into(),
                    by_server: false,
                    unsent: Unsent::default(),
                };
                return self.finish(ending).await;
            }
            self.reconnects += 1;
        }
    }

    /// Dials while still taking commands. `Err` means the user ended the
    /// session meanwhile.
    async fn dial(
        &mut self,
    ) -> std::result::Result<Result<crate::dial::Connection>, Result<Ending>> {
        let dialer = Arc::clone(&self.dialer);
        let dial = dialer.dial();
        tokio::pin!(dial);
        loop {
            let room = self.commands_open && self.outbox.has_room();
            tokio::select! {
                result = &mut dial => return Ok(result),
                () = room_for_event(&self.events), if !self.backlog.is_empty() => self.send_backlog(),
                cmd = self.commands.recv(), if room => {
                    if let Offline::End = self.offline_command(cmd) {
                        let ending = Ending {
                            code: None,
                            reason: "closed before connecting".into(),
                            by_server: false,
                            unsent: Unsent::default(),
                        };
                        return Err(self.finish(ending).await);
                    }
                }
            }
        }
    }

    /// Sleeps out a backoff delay while taking commands; false if the user
    /// ended the session.
    async fn wait(&mut self, delay: Duration) -> bool {
        let wake = sleep(delay);
        tokio::pin!(wake);
        loop {
            let room = self.commands_open && self.outbox.has_room();
            tokio::select! {
                () = &mut wake => return true,
                () = room_for_event(&self.events), if !self.backlog.is_empty() => self.send_backlog(),
                cmd = self.commands.recv(), if room => match self.offline_command(cmd) {
                    Offline::Continue => {}
                    Offline::SkipWait => return true,
                    Offline::End => return false,
                },
            }
        }
    }

    fn offline_command(&mut self, cmd: Option<Command>) -> Offline {
        match cmd {
            Some(Command::Send(payload)) => self.outbox.push(to_message(payload)),
            Some(Command::SendMany(payloads)) => {
                for payload in payloads {
                    self.outbox.push(to_message(payload));
                }
            }
            Some(Command::Ping(_)) => {
                self.emit(Event::Warning("not connected: ping not sent".into()))
            }
            Some(Command::Close {
                code,
                reason,
                confirm,
            }) => {
                self.closing = Some(close_frame(code, reason));
                self.confirm_close = confirm;
                return Offline::End;
            }
            Some(Command::Reconnect) => return Offline::SkipWait,
            Some(Command::Drain) => self.drain(),
            Some(Command::Status(reply)) => {
                let _ = reply.send(self.status());
            }
            None => {
                self.commands_open = false;
                return Offline::End;
            }
        }
        Offline::Continue
    }

    async fn run_connection(&mut self, socket: Socket, progress: WriteProgress) -> ConnectionEnd {
        let (mut sink, mut stream) = socket.split();
        let mut heartbeat = Heartbeat::new(self.config.heartbeat, Instant::now());
        let replayed = self.outbox.rewind();
        if replayed > 0 {
            self.emit(Event::Warning(format!(
                "re-sending {replayed} message{} whose delivery the lost connection left unconfirmed",
                if replayed == 1 { "" } else { "s" }
            )));
        }
        self.control.clear();
        self.user_pings.clear();
        self.acks = Acks::default();
        self.pong_owed = false;
        for message in &self.on_connect {
            if let Err(err) = sink.feed(message.clone()).await {
                return ConnectionEnd::Lost(lost(err));
            }
        }
        let mut unflushed = Unflushed {
            frames: !self.on_connect.is_empty(),
            close: false,
        };
        let mut close_deadline: Option<Instant> = None;
        // When writing paused with messages unconfirmed: see ACK_WHEN_IDLE.
        let mut idle_ack_at: Option<Instant> = None;
        // Since when our Close waits for the server to confirm what it was sent.
        let mut confirming_since: Option<Instant> = None;

        loop {
            let close_due = self.closing.is_some()
                && close_deadline.is_none()
                && !unflushed.close
                && self.outbox.is_empty();
            let confirming = close_due && self.confirm_close && self.outbox.unconfirmed().0 > 0;
            if confirming {
                // Ask now, not after ACK_WHEN_IDLE; a no-op when the last ping
                // written already follows every message.
                self.acks.request_confirmation(self.outbox.position());
                confirming_since.get_or_insert_with(|| {
                    let (n, _) = self.outbox.unconfirmed();
                    tracing::debug!("closing once the server confirms {n} messages");
                    Instant::now()
                });
            } else {
                confirming_since = None;
            }
            let send_close = close_due && !confirming && self.control.is_empty();
            let want_write = unflushed.frames
                || self.pong_owed
                || send_close
                || self.outbox.ready()
                || !self.control.is_empty()
                || self.acks.idle.is_some();
            // An interrupt takes nothing more: an endless stdin must not
            // keep the queue from ever running empty.
            let room = self.commands_open
                && self.outbox.has_room()
                && close_deadline.is_none()
                && (self.closing.is_none() || self.confirm_close);
            let close = if send_close {
                self.closing.clone()
            } else {
                None
            };

            tokio::select! {
                () = room_for_event(&self.events), if !self.backlog.is_empty() => self.send_backlog(),
                // While a Pong is owed and not yet written, nothing more is
                // read: tungstenite buffers one Pong per Ping read, so a server
                // that floods Pings and never reads would grow it without bound.
                incoming = next_incoming(&mut stream, &self.events, &self.event_credit), if self.backlog.is_empty() && !self.pong_owed => {
                    let closing = close_deadline.is_some();
                    if let Some(end) = self.incoming(incoming, &mut heartbeat, &mut sink, closing).await {
                        return end;
                    }
                    // Take the frames that have already arrived too, so a
                    // burst costs one pass of this loop, not one per message.
                    for _ in 1..READ_BURST {
                        if !self.backlog.is_empty()
                            || self.pong_owed
                            || self.events.capacity() == 0
                            || !self.event_credit.has_room()
                        {
                            break;
                        }
                        let Some(incoming) = stream.next().now_or_never() else {
                            break;
                        };
                        if let Some(end) = self.incoming(incoming, &mut heartbeat, &mut sink, closing).await {
                            return end;
                        }
                    }
                }
                cmd = self.commands.recv(), if room => {
                    if let Some(end) = self.online_command(cmd) {
                        return end;
                    }
                }
                written = write_batch(&mut sink, &mut self.outbox, &mut self.control, &mut self.acks, &mut unflushed, close), if want_write => {
                    let written = match written {
                        Ok(written) => written,
                        Err(err) => return ConnectionEnd::Lost(lost(err)),
                    };
                    self.send_credit.give(written.first_time_bytes);
                    if self.outbox.replay_enabled() && self.acks.owed() && !self.outbox.has_unfed() {
                        idle_ack_at.get_or_insert_with(|| Instant::now() + ACK_WHEN_IDLE);
                    }
                    if written.ping {
                        heartbeat.written(Instant::now());
                    }
                    self.pong_owed = false;
                    if written.close {
                        self.state = State::Closing;
                        close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
                        // Nothing may follow our Close.
                        idle_ack_at = None;
                        self.acks.idle = None;
                        self.control.clear();
                    }
                    if written.delivered > 0 {
                        self.sent += written.delivered as u64;
                        self.emit(Event::Delivered { count: written.delivered });
                        if self.drain_requested && self.outbox.is_empty() {
                            self.drain_requested = false;
                            self.emit(Event::Drained);
                        }
                    }
                }
                () = sleep_until(heartbeat.deadline()), if heartbeat.enabled() && close_deadline.is_none() => {
                    let now = Instant::now();
                    if let Some(drained) = progress.last_drain() {
                        heartbeat.alive(drained);
                    }
                    match heartbeat.tick(now) {
                        Tick::SendPing(payload) => self.control.push_back(Message::Ping(payload)),
                        // A full event buffer means our reader is paused by a
                        // slow consumer: the pong may be sitting unread.
                        Tick::Dead if self.events.capacity() == 0 || !self.event_credit.has_room() => {
                            heartbeat.extend(now)
                        }
                        Tick::Dead => {
                            return ConnectionEnd::Lost(Error::ConnectionLost(format!(
                                "heartbeat timeout: no pong within {:?}",
                                self.config.heartbeat.timeout
                            )));
                        }
                        Tick::Nothing => {}
                    }
                }
                () = sleep_until(idle_ack_at.unwrap_or_else(Instant::now)), if idle_ack_at.is_some() && close_deadline.is_none() => {
                    idle_ack_at = None;
                    self.acks.request_idle();
                }
                () = sleep_until(confirming_since.map_or_else(Instant::now, |t| heartbeat.since(t) + heartbeat.timeout())), if confirming => {
                    if let Some(drained) = progress.last_drain() {
                        heartbeat.alive(drained);
                    }
                    // A full event buffer means our reader is paused by a slow
                    // consumer: the Pong may be sitting unread.
                    if self.events.capacity() == 0 || !self.event_credit.has_room() || !self.backlog.is_empty() {
                        heartbeat.alive(Instant::now());
                    }
                    let since = confirming_since.expect("set while confirming");
                    if Instant::now() >= heartbeat.since(since) + heartbeat.timeout() {
                        let (n, _) = self.outbox.unconfirmed();
                        return ConnectionEnd::Lost(Error::ConnectionLost(format!(
                            "the server confirmed none of the last {n} message{} within {:?} (--ping-timeout) before the close",
                            if n == 1 { "" } else { "s" },
                            heartbeat.timeout()
                        )));
                    }
                }
                () = sleep_until(close_deadline.unwrap_or_else(Instant::now)), if close_deadline.is_some() => {
                    return ConnectionEnd::Closed(self.closed_by_us(
                        None,
                        "the server did not answer our Close in time".into(),
                    ));
                }
            }
        }
    }

    async fn incoming(
        &mut self,
        incoming: Option<tungstenite::Result<Message>>,
        heartbeat: &mut Heartbeat,
        sink: &mut Sink,
        closing: bool,
    ) -> Option<ConnectionEnd> {
        let message = match incoming {
            Some(Ok(message)) => message,
            Some(Err(err)) if closing => {
                return Some(ConnectionEnd::Closed(
                    self.closed_by_us(None, err.to_string()),
                ));
            }
            Some(Err(err)) => {
                if let Some(code) = failure_close_code(&err) {
                    // RFC 6455 7.1.7: say why before hanging up, without waiting
                    // for an answer from a server that is already misbehaving.
                    let frame = Message::Close(Some(close_frame(code, String::new())));
                    let _ = tokio::time::timeout(FAIL_TIMEOUT, sink.send(frame)).await;
                }
                return Some(ConnectionEnd::Lost(classify_read_error(err)));
            }
            None if closing => {
                return Some(ConnectionEnd::Closed(
                    self.closed_by_us(None, String::new()),
                ));
            }
            None => {
                return Some(ConnectionEnd::Lost(Error::ConnectionLost(
                    "the server closed the TCP connection without a Close frame (1006)".into(),
                )));
            }
        };
        match message {
            Message::Text(text) => {
                self.healthy = true;
                self.received += 1;
                self.event_credit.take(text.len());
                self.emit(Event::Message(Payload::Text(text)));
            }
            Message::Binary(data) => {
                self.healthy = true;
                self.received += 1;
                self.event_credit.take(data.len());
                self.emit(Event::Message(Payload::Binary(data)));
            }
            // tungstenite queued the Pong; the write branch flushes it
            // promptly (not here: a server that stops reading would stall
            // this branch, and with it the heartbeat and the commands).
            Message::Ping(_) => self.pong_owed = true,
            Message::Pong(payload) => {
                let now = Instant::now();
                // Only an answer to a Ping we wrote shows the server reads:
                // Pongs it sends unasked prove nothing.
                if let Some((position, ours)) = self.acks.answered(&payload) {
                    heartbeat.alive(now);
                    self.healthy = true;
                    self.outbox.confirm(position);
                    tracing::trace!(position, unconfirmed = ?self.outbox.unconfirmed(), "pong confirms");
                    if ours {
                        return None;
                    }
                }
                if let Some(rtt) = heartbeat.pong(&payload, now) {
                    self.rtt.record(rtt);
                    self.emit(Event::Pong {
                        rtt,
                        heartbeat: true,
                    });
                } else if let Some(i) = self.user_pings.iter().position(|(p, _)| *p == payload) {
                    let (_, sent) = self.user_pings.remove(i).expect("index from position");
                    let rtt = now.saturating_duration_since(sent);
                    self.rtt.record(rtt);
                    self.emit(Event::Pong {
                        rtt,
                        heartbeat: false,
                    });
                }
            }
            Message::Close(frame) => {
                // A server that says goodbye was at work.
                self.healthy = true;
                let (code, reason) = match &frame {
                    Some(f) => (u16::from(f.code), f.reason.to_string()),
                    None => (1005, String::new()),
                };
                if closing {
                    // The server read every frame before our Close to get to it.
                    self.outbox.confirm(self.outbox.position());
                    return Some(ConnectionEnd::Closed(self.closed_by_us(Some(code), reason)));
                }
                // tungstenite queued our reply; send it before hanging up.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.close()).await;
                if is_substituted_close(code, &reason) {
                    return Some(ConnectionEnd::Lost(Error::Protocol(
                        "its Close frame carries a reserved or invalid close code \
                         (such as 1005, 1006 or 1015, which must never be sent); \
                         tether answered with 1002"
                            .into(),
                    )));
                }
                if code == 1000 || code == 1005 {
                    return Some(ConnectionEnd::Closed(Ending {
                        code: Some(code),
                        reason,
                        by_server: true,
                        unsent: Unsent::default(),
                    }));
                }
                return Some(ConnectionEnd::Lost(Error::ServerClosed { code, reason }));
            }
            Message::Frame(_) => {}
        }
        None
    }

    /// The end of a close we started. The code is the one in the server's
    /// answer, never our own: `None` says the server did not answer (smoke
    /// tests check the server's close code).
    fn closed_by_us(&self, server_code: Option<u16>, reason: String) -> Ending {
        Ending {
            code: server_code,
            reason,
            by_server: false,
            unsent: Unsent::default(),
        }
    }

    fn online_command(&mut self, cmd: Option<Command>) -> Option<ConnectionEnd> {
        let mut next = cmd;
        // Take whatever else is already waiting, so a burst becomes one batch.
        loop {
            match next {
                Some(Command::Send(payload)) => self.outbox.push(to_message(payload)),
                Some(Command::SendMany(payloads)) => {
                    for payload in payloads {
                        self.outbox.push(to_message(payload));
                    }
                }
                Some(Command::Ping(payload)) => {
                    self.user_pings.push_back((payload.clone(), Instant::now()));
                    // Unanswered pings must not pile up forever.
                    if self.user_pings.len() > 64 {
                        self.user_pings.pop_front();
                    }
                    self.control.push_back(Message::Ping(payload));
                }
                Some(Command::Close {
                    code,
                    reason,
                    confirm,
                }) => {
                    self.closing = Some(close_frame(code, reason));
                    self.confirm_close = confirm;
                    return None;
                }
                Some(Command::Reconnect) => return Some(ConnectionEnd::Reconnect),
                Some(Command::Drain) => self.drain(),
                Some(Command::Status(reply)) => {
                    let _ = reply.send(self.status());
                }
                None => {
                    self.commands_open = false;
                    if self.closing.is_none() {
                        self.closing = Some(close_frame(1000, String::new()));
                        self.confirm_close = true;
                    }
                    return None;
                }
            }
            if !self.outbox.has_room() {
                return None;
            }
            next = match self.commands.try_recv() {
                Ok(cmd) => Some(cmd),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
        }
    }

    fn drain(&mut self) {
        if self.outbox.is_empty() {
            self.emit(Event::Drained);
        } else {
            self.drain_requested = true;
        }
    }

    async fn finish(&mut self, mut ending: Ending) -> Result<Ending> {
        self.state = State::Closed;
        // A server that closed normally has read what it was sent before.
        ending.unsent = self.unsent(!ending.by_server);
        self.emit(Event::Closed {
            code: ending.code,
            reason: ending.reason.clone(),
            by_server: ending.by_server,
        });
        self.flush_events().await;
        Ok(ending)
    }

    async fn give_up(&mut self, failure: Error, attempts: u32) -> Error {
        self.state = State::Closed;
        self.flush_events().await;
        let unsent = self.unsent(true);
        if attempts <= 1 && unsent.total() == 0 {
            failure
        } else {
            Error::GaveUp {
                source: Box::new(failure),
                attempts,
                unsent,
            }
        }
    }

    /// What the server never got. Takes the commands still waiting in the
    /// channel too: nothing will read them any more.
    fn unsent(&mut self, count_unconfirmed: bool) -> Unsent {
        self.commands.close();
        let mut in_channel = 0;
        while let Ok(cmd) = self.commands.try_recv() {
            in_channel += match cmd {
                Command::Send(_) => 1,
                Command::SendMany(payloads) => payloads.len(),
                _ => 0,
            };
        }
        Unsent {
            queued: self.outbox.len() + in_channel,
            unconfirmed: if count_unconfirmed {
                self.outbox.unconfirmed().0
            } else {
                0
            },
            stdin: 0,
        }
    }

    fn status(&self) -> Status {
        Status {
            state: self.state,
            url: self.url.clone(),
            subprotocol: self.subprotocol.clone(),
            connected_since: self.connected_since.map(|(wall, _)| wall),
            uptime: self.connected_since.map(|(_, mono)| mono.elapsed()),
            reconnects: self.reconnects,
            rtt: self.rtt,
            queued: self.outbox.len(),
            sent: self.sent,
            received: self.received,
        }
    }

    /// Never blocks: a frontend that is busy (e.g. waiting to send us a
    /// command) must not deadlock against us. Events wait in order in the
    /// backlog; only reading from the socket waits for the frontend.
    fn emit(&mut self, event: Event) {
        if let (Event::Delivered { count }, Some(Event::Delivered { count: queued })) =
            (&event, self.backlog.back_mut())
        {
            *queued += count;
            return;
        }
        if self.backlog.is_empty() {
            match self.events.try_send(event) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(event)) => self.backlog.push_back(event),
            }
        } else {
            self.backlog.push_back(event);
        }
    }

    fn send_backlog(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.events.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// Hands the backlog over before the supervisor returns.
    async fn flush_events(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            if self.events.send(event).await.is_err() {
                break;
            }
        }
    }
}

async fn room_for_event(events: &mpsc::Sender<Event>) {
    if events.reserve().await.is_err() {
        // Nobody is listening: there is nothing to wait for.
        std::future::pending::<()>().await;
    }
}

/// Waits for room for one event, in count and in bytes, before reading, so a
/// slow consumer pauses reading (TCP backpressure) instead of growing memory.
async fn next_incoming(
    stream: &mut Stream,
    events: &mpsc::Sender<Event>,
    credit: &Credit,
) -> Option<tungstenite::Result<Message>> {
    room_for_event(events).await;
    credit.wait().await;
    stream.next().await
}

/// Pings in flight on one connection. Each confirms, when answered, every
/// message written before it; ours are interleaved with the data so that a
/// server dying mid-stream has confirmed all it read.
#[derive(Default)]
struct Acks {
    /// (payload, outbox position, sent by us as an ack)
    written: VecDeque<(Bytes, u64, bool)>,
    messages_since: usize,
    bytes_since: usize,
    counter: u64,
    /// A ping went into the current, not yet flushed, batch.
    ping_unflushed: bool,
    /// An ack asked for because writing paused, to go out with the next batch.
    idle: Option<Bytes>,
}

impl Acks {
    fn record(&mut self, payload: Bytes, position: u64, ours: bool) {
        self.written.push_back((payload, position, ours));
        // A server may answer only the latest ping; the old ones must not pile up.
        if self.written.len() > 1024 {
            self.written.pop_front();
        }
        self.ping_unflushed = true;
    }

    /// A message of `len` bytes was fed; returns an ack ping when one is due.
    fn fed(&mut self, len: usize) -> Option<Bytes> {
        self.messages_since += 1;
        self.bytes_since += len;
        if self.messages_since < ACK_EVERY_MESSAGES && self.bytes_since < ACK_EVERY_BYTES {
            return None;
        }
        Some(self.next_payload())
    }

    /// Whether messages were written since the last ack.
    fn owed(&self) -> bool {
        self.messages_since > 0
    }

    /// Asks for an ack with the next batch, for what was written since the last.
    fn request_idle(&mut self) {
        if self.owed() && self.idle.is_none() {
            self.idle = Some(self.next_payload());
        }
    }

    /// Makes sure a ping follows everything before `position`: one already
    /// written that is still unanswered, or one asked for now.
    fn request_confirmation(&mut self, position: u64) {
        let covered = self.idle.is_some()
            || self
                .written
                .back()
                .is_some_and(|(_, written_at, _)| *written_at >= position);
        if !covered {
            self.idle = Some(self.next_payload());
        }
    }

    fn next_payload(&mut self) -> Bytes {
        self.messages_since = 0;
        self.bytes_since = 0;
        self.counter += 1;
        Bytes::from(format!("tether-ack-{}", self.counter))
    }

    /// The position a pong confirms, and whether the ping was an ack of ours.
    /// Pongs come in order, so earlier pings are settled too.
    fn answered(&mut self, payload: &[u8]) -> Option<(u64, bool)> {
        let i = self.written.iter().position(|(p, _, _)| p == payload)?;
        let (_, position, ours) = self.written.drain(..=i).last()?;
        Some((position, ours))
    }
}

/// Hands pings, queued messages and (once the queue is empty) our Close to
/// the socket, then flushes once. Cancel-safe: progress is recorded as it is
/// made (`unflushed` says a flush is owed), and an interrupted flush is
/// resumed by the next call.
async fn write_batch(
    sink: &mut Sink,
    outbox: &mut Outbox,
    control: &mut VecDeque<Message>,
    acks: &mut Acks,
    unflushed: &mut Unflushed,
    close: Option<CloseFrame>,
) -> tungstenite::Result<Written> {
    if unflushed.close {
        // Our Close is fed: nothing may follow it, only the flush is owed.
        return flush(sink, outbox, acks, unflushed).await;
    }
    while let Some(frame) = control.front() {
        sink.feed(frame.clone()).await?;
        unflushed.frames = true;
        if let Some(Message::Ping(payload)) = control.pop_front() {
            acks.record(payload, outbox.position(), false);
        }
    }
    if let Some(payload) = acks.idle.clone() {
        sink.feed(Message::Ping(payload.clone())).await?;
        unflushed.frames = true;
        acks.idle = None;
        acks.record(payload, outbox.position(), true);
    }
    for _ in 0..WRITE_BATCH {
        if !outbox.window_open() {
            break;
        }
        let Some(message) = outbox.next_unfed() else {
            break;
        };
        let len = message.len();
        sink.feed(message).await?;
        unflushed.frames = true;
        outbox.mark_fed();
        if outbox.replay_enabled()
            && let Some(payload) = acks.fed(len)
        {
            // Fed after the message: if this feed is cancelled, the next
            // batch simply asks a little later.
            sink.feed(Message::Ping(payload.clone())).await?;
            acks.record(payload, outbox.position(), true);
        }
    }
    if let Some(frame) = close {
        sink.feed(Message::Close(Some(frame))).await?;
        unflushed.frames = true;
        unflushed.close = true;
        acks.idle = None;
    }
    flush(sink, outbox, acks, unflushed).await
}

async fn flush(
    sink: &mut Sink,
    outbox: &mut Outbox,
    acks: &mut Acks,
    unflushed: &mut Unflushed,
) -> tungstenite::Result<Written> {
    sink.flush().await?;
    let mut written = Written::default();
    unflushed.frames = false;
    written.close = std::mem::take(&mut unflushed.close);
    let flushed = outbox.flushed();
    written.delivered = flushed.messages;
    written.first_time_bytes = flushed.first_time_bytes;
    written.ping = std::mem::take(&mut acks.ping_unflushed);
    Ok(written)
}

fn to_message(payload: Payload) -> Message {
    match payload {
        Payload::Text(text) => Message::Text(text),
        Payload::Binary(data) => Message::Binary(data),
    }
}

fn close_frame(code: u16, reason: String) -> CloseFrame {
    CloseFrame {
        code: CloseCode::from(code),
        reason: reason.into(),
    }
}

/// tungstenite hands over a Close whose code may not appear on the wire as
/// this exact frame, the one it answers with, and keeps the real code to
/// itself. A server could send these words itself, claiming that tether broke
/// the protocol; it is then reported as a violation (exit 10) rather than as
/// a 1002 close (exit 9). Neither is retried.
fn is_substituted_close(code: u16, reason: &str) -> bool {
    code == u16::from(CloseCode::Protocol) && reason == "Protocol violation"
}

/// The close code that tells the server what it did wrong, when a read
/// failed because of something it sent: 1007 for bad UTF-8, 1009 for a
/// message over the limit, 1002 for any other protocol violation.
fn failure_close_code(err: &tungstenite::Error) -> Option<u16> {
    match err {
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        tungstenite::Error::Protocol(_) => Some(u16::from(CloseCode::Protocol)),
        tungstenite::Error::Utf8(_) => Some(u16::from(CloseCode::Invalid)),
        tungstenite::Error::Capacity(_) => Some(u16::from(CloseCode::Size)),
        _ => None,
    }
}

fn lost(err: tungstenite::Error) -> Error {
    Error::ConnectionLost(err.to_string())
}

fn classify_read_error(err: tungstenite::Error) -> Error {
    use tungstenite::error::CapacityError;
    match err {
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            Error::TooBig {
                size,
                max: max_size,
            }
        }
        tungstenite::Error::Capacity(other) => Error::Protocol(other.to_string()),
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            Error::ConnectionLost(
                "the server closed the TCP connection without a Close frame (1006)".into(),
            )
        }
        tungstenite::Error::Protocol(err) => Error::Protocol(err.to_string()),
        tungstenite::Error::Utf8(detail) => Error::Protocol(format!(
            "a text message or Close reason is not valid UTF-8 ({detail})"
        )),
        other => lost(other),
    }
}
