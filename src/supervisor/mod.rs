//! The supervisor: one task that owns the connection's whole life.
//!
//! It dials, runs heartbeats, reconnects with backoff, and keeps the outgoing
//! queue across connections. Frontends talk to it only through a [`Handle`]
//! (commands) and [`Events`], so it knows nothing about terminals or stdin.
//!
//! State lives by its lifetime: the `Supervisor` holds what outlives a
//! connection (the queue, the event emitter, the reconnect streak), a
//! `Connection` what dies with one (the socket, its heartbeat, its acks, the
//! close in progress).

mod acks;
pub mod app_heartbeat;
mod backoff;
mod credit;
mod emitter;
mod handle;
mod heartbeat;
mod outbox;
pub mod replies;
mod spin;
mod wire;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout_at};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use self::acks::Acks;
use self::app_heartbeat::{AppHeartbeat, AppTick};
pub use self::backoff::Backoff;
pub use self::credit::Credit;
use self::emitter::Emitter;
use self::handle::Shared;
pub use self::handle::{BlockingSender, Events, Gone, Handle, NotQueued, Permit};
use self::heartbeat::{Heartbeat, Tick};
use self::outbox::Outbox;
use self::replies::Waiting;
use self::spin::Spin;
use self::wire::{Dir, Trace};
use crate::config::SessionConfig;
use crate::error::{Error, Result, Retry};
use crate::net::deflate::Deflater;
use crate::net::dial::{Dialer, Socket};
use crate::net::meter::WriteProgress;
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
/// How long to wait for the server's Close after ours, and how long an
/// interrupt may take in all.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an interrupted session's close may take in all (writing the
/// Close, the server's answer): less than the 2 s in which tether promises to
/// exit after a signal, so the count of what was left still gets reported.
const INTERRUPT_TIMEOUT: Duration = Duration::from_millis(1700);
/// How long telling a misbehaving server why we hang up may take.
const FAIL_TIMEOUT: Duration = Duration::from_secs(1);
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
/// Frames (`--reply` answers, Pings) waiting to be written past which
/// nothing more is read: a server that floods messages to answer and never
/// reads must not grow the queue without bound.
const CONTROL_MAX: usize = 256;
/// Said once when a session whose input has ended is not dialled again.
const NOT_RECONNECTING: &str =
    "not reconnecting: input has ended and the server confirmed every message";

/// Starts the supervisor on the current runtime. Fails only on settings that
/// can be checked before dialing (e.g. an unreadable `--cacert`).
pub fn spawn(config: SessionConfig) -> Result<(Handle, Events)> {
    spawn_with_seed(config, None)
}

/// As [`spawn`], with a fixed jitter seed so tests can replay a schedule.
pub fn spawn_with_seed(config: SessionConfig, seed: Option<u64>) -> Result<(Handle, Events)> {
    let dialer = Arc::new(Dialer::new(config.dial.clone())?);
    let (command_tx, command_rx) = mpsc::channel(config.queue_capacity.min(1024));
    let (event_tx, event_rx) = mpsc::channel(EVENT_BUFFER);
    let send_credit = Arc::new(Credit::new(SEND_CREDIT));
    let event_credit = Arc::new(Credit::new(EVENT_CREDIT));
    let shared = Arc::new(Shared::default());
    let supervisor = Supervisor {
        backoff: Backoff::new(config.reconnect.initial, config.reconnect.max, seed),
        fresh_on_connect: Vec::new(),
        replies: replies::Replies::from_specs(&config.replies),
        outbox: {
            let mut outbox = Outbox::new(config.queue_capacity, config.replay_window);
            if let Some(confirm) = config.confirm.clone() {
                outbox.confirm_by_reply(confirm);
            }
            outbox
        },
        url: dialer.target(),
        dialer,
        config,
        commands: command_rx,
        commands_open: true,
        shared: Arc::clone(&shared),
        emitter: Emitter::new(event_tx, Arc::clone(&event_credit)),
        send_credit: Arc::clone(&send_credit),
        closing: None,
        failed_closes: 0,
        last_failure: None,
        ever_connected: false,
        drain_requested: false,
        state: State::Connecting,
        subprotocol: None,
        compression: None,
        compressing: false,
        connected_since: None,
        reconnects: 0,
        rtt: RttStats::default(),
        sent: 0,
        received: 0,
        spin: Spin::default(),
    };
    let task = tokio::spawn(supervisor.run());
    Ok((
        Handle::new(command_tx, send_credit, shared, task),
        Events::new(event_rx, event_credit),
    ))
}

/// What outlives a connection.
struct Supervisor {
    config: SessionConfig,
    dialer: Arc<Dialer>,
    url: String,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    /// The interrupt and the end of input, raised out of band.
    shared: Arc<Shared>,
    emitter: Emitter,
    /// Bytes of messages queued and not yet written: senders take them, a
    /// completed flush gives them back.
    send_credit: Arc<Credit>,
    backoff: Backoff,
    /// This connection's `--on-connect-cmd` messages, sent after
    /// `on_connect`: secrets, never traced or reported.
    fresh_on_connect: Vec<Message>,
    /// `--reply*`: answers written ahead of the queue, never replayed.
    replies: replies::Replies,
    outbox: Outbox,
    /// The Close asked for (or the interrupt's); it waits until every written
    /// message is confirmed, unless interrupted.
    closing: Option<CloseFrame>,
    /// Connections in a row whose close lost the connection with messages
    /// unconfirmed: past CLOSE_ATTEMPTS, the session gives up on them.
    failed_closes: u32,
    /// Why the last connection or attempt failed, while waiting to retry.
    last_failure: Option<Error>,
    ever_connected: bool,
    drain_requested: bool,
    state: State,
    subprotocol: Option<String>,
    compression: Option<String>,
    /// Whether this connection compresses what it sends (`--compress`).
    compressing: bool,
    connected_since: Option<(SystemTime, Instant)>,
    reconnects: u32,
    rtt: RttStats,
    sent: u64,
    received: u64,
    spin: Spin,
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

/// A frame that jumps the data queue.
struct Control {
    frame: Message,
    /// For a `--reply` answer: the message it answers.
    answers: Option<String>,
}

impl Control {
    fn frame(frame: Message) -> Control {
        Control {
            frame,
            answers: None,
        }
    }
}

/// What one write batch handed to the kernel.
#[derive(Default)]
struct Written {
    /// The `--reply` answers written: (what each answers, the answer).
    replied: Vec<(String, String)>,
    delivered: usize,
    first_time_bytes: usize,
    ping: bool,
    close: bool,
    /// With `--json-sent`: the messages written, in order, and whether each
    /// is a replay.
    sent: Vec<(Message, bool)>,
}

impl Drop for Supervisor {
    /// Nothing will be written any more: a sender waiting for room must not
    /// wait forever.
    fn drop(&mut self) {
        self.send_credit.close();
    }
}

impl Supervisor {
    /// This connection's `--on-connect` messages, their captured values
    /// filled in. One that needs a value no step has captured yet (a resume
    /// that needs the session id the first connection's welcome gave) is not
    /// sent on this connection.
    fn on_connect(&self) -> Vec<Message> {
        self.config
            .on_connect
            .iter()
            .filter_map(|template| match self.shared.captured.render(template) {
                Ok(text) => Some(Message::text(text)),
                Err(name) => {
                    tracing::debug!(
                        "not sending an --on-connect message on this connection: \
                         {{{{{name}}}}} is not captured yet"
                    );
                    None
                }
            })
            .collect()
    }
}

impl Supervisor {
    async fn run(mut self) -> Result<Ending> {
        // Failed attempts since the last healthy connection.
        let mut streak: u32 = 0;
        loop {
            self.state = State::Connecting;
            self.emitter.emit(Event::Connecting {
                attempt: streak + 1,
            });
            let failure = match self.dial().await {
                Err(ending) => return ending,
                Ok(Err(err)) => err,
                Ok(Ok((conn, fresh_on_connect))) => {
                    self.fresh_on_connect = fresh_on_connect;
                    self.last_failure = None;
                    for warning in conn.warnings {
                        self.emitter.emit(Event::Warning(warning));
                    }
                    self.state = State::Connected;
                    self.ever_connected = true;
                    self.subprotocol = conn.subprotocol.clone();
                    let compression = conn.compression.as_ref().map(ToString::to_string);
                    self.compression = compression.clone();
                    // A fresh compressor per connection: what is replayed is
                    // compressed again, in this connection's context.
                    let deflater = conn
                        .compression
                        .as_ref()
                        .filter(|_| self.config.dial.compress)
                        .and_then(Deflater::new);
                    self.compressing = deflater.is_some();
                    self.connected_since = Some((SystemTime::now(), Instant::now()));
                    self.emitter.emit(Event::Connected {
                        url: conn.url,
                        subprotocol: conn.subprotocol,
                        compression,
                        compressing: self.compressing,
                        attempt: streak + 1,
                    });
                    let started = Instant::now();
                    let confirmed_before = self.outbox.confirmed_total();
                    let mut connection =
                        Connection::new(conn.socket, conn.progress, deflater, &self);
                    let end = connection.run(&mut self).await;
                    self.connected_since = None;
                    if connection.healthy
                        && started.elapsed() >= self.config.reconnect.healthy_after()
                    {
                        streak = 0;
                        self.backoff.reset();
                    }
                    drop(connection);
                    let interrupted = self.shared.interrupted();
                    match end {
                        ConnectionEnd::Closed(ending) => {
                            let reconnect_anyway = ending.by_server
                                && self.closing.is_none()
                                && !interrupted
                                && self.config.reconnect.on_normal_close
                                && self.config.reconnect.enabled;
                            if reconnect_anyway && self.nothing_left_after_input() {
                                self.emitter.emit(Event::Warning(NOT_RECONNECTING.into()));
                                return self.finish(ending).await;
                            }
                            if !reconnect_anyway {
                                return self.finish(ending).await;
                            }
                            Error::ConnectionLost(format!(
                                "the server closed the connection ({})",
                                ending.code.unwrap_or(1005)
                            ))
                        }
                        ConnectionEnd::Reconnect => {
                            self.emitter.emit(Event::Disconnected {
                                reason: "reconnect requested".into(),
                                code: None,
                                will_retry: true,
                            });
                            self.reconnects += 1;
                            continue;
                        }
                        ConnectionEnd::Lost(err) => {
                            let delivered = self.delivered();
                            // Once nothing more will come (a close asked for,
                            // or the end of input), a connection that ends
                            // with the last messages unconfirmed and none
                            // confirmed on it is a failed try: a server that
                            // always drops (or says 1001) before confirming
                            // must not get them again for ever.
                            let last_messages = self.closing.is_some() || self.shared.input_ended();
                            if last_messages && !delivered && !interrupted {
                                if self.outbox.confirmed_total() > confirmed_before {
                                    self.failed_closes = 0;
                                } else {
                                    self.failed_closes += 1;
                                }
                            }
                            if last_messages
                                && !delivered
                                && !interrupted
                                && self.failed_closes >= CLOSE_ATTEMPTS
                            {
                                self.emitter.emit(Event::Disconnected {
                                    reason: err.to_string(),
                                    code: None,
                                    will_retry: false,
                                });
                                return Err(self.give_up(err, streak + 1).await);
                            }
                            // Dropped during our close with nothing left to
                            // deliver, or during an interrupt, which leaves
                            // whatever is left (and counts it).
                            if (self.closing.is_some() && delivered) || interrupted {
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
            let retry = if policy.enabled && (self.ever_connected || policy.retry_initial()) {
                failure.retry()
            } else {
                Retry::Never
            };
            let exhausted = self
                .config
                .reconnect
                .max_attempts
                .is_some_and(|max| streak > max);
            let mut will_retry = retry != Retry::Never && !exhausted;
            // Input has ended and the server has it all: a new connection
            // would have nothing to do.
            let pointless = will_retry && self.nothing_left_after_input();
            if pointless {
                self.emitter.emit(Event::Warning(NOT_RECONNECTING.into()));
                will_retry = false;
            }
            let disconnected = matches!(
                failure,
                Error::ConnectionLost(_) | Error::ServerClosed { .. }
            );
            if disconnected {
                self.emitter.emit(Event::Disconnected {
                    reason: failure.to_string(),
                    code: match failure {
                        Error::ServerClosed { code, .. } => Some(code),
                        _ => None,
                    },
                    will_retry,
                });
            }
            if pointless {
                // As if reconnecting were off: the failure itself.
                return Err(self.give_up(failure, 1).await);
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
            self.emitter.emit(Event::Reconnecting {
                attempt: streak + 1,
                delay,
                reason: failure.to_string(),
                after_disconnect: disconnected,
            });
            self.last_failure = Some(failure);
            if let Some(end) = self.wait(delay).await {
                return end;
            }
            self.reconnects += 1;
        }
    }

    /// Nothing queued, in the command channel, or unconfirmed.
    fn nothing_left(&self) -> bool {
        self.delivered() && self.shared.in_channel() == 0
    }

    fn delivered(&self) -> bool {
        self.outbox.is_empty() && self.outbox.unconfirmed().0 == 0
    }

    /// The frontend will send nothing more, and the server has all it sent.
    /// Never before a first connection: a session that never connected has
    /// not done what it was started for, even with nothing to send.
    fn nothing_left_after_input(&self) -> bool {
        self.ever_connected && self.shared.input_ended() && self.nothing_left()
    }

    /// While disconnected: the end the user's interrupt or the end of input
    /// asks for, if any.
    async fn offline_end(&mut self, reason: &str) -> Option<Result<Ending>> {
        if self.shared.interrupted() {
            return Some(self.closed_offline(reason).await);
        }
        if self.last_failure.is_some() && self.nothing_left_after_input() {
            self.emitter.emit(Event::Warning(NOT_RECONNECTING.into()));
            let failure = self.last_failure.take().expect("checked");
            return Some(Err(self.give_up(failure, 1).await));
        }
        None
    }

    async fn closed_offline(&mut self, reason: &str) -> Result<Ending> {
        let ending = Ending {
            code: None,
            reason: reason.into(),
            by_server: false,
            unsent: Unsent::default(),
        };
        self.finish(ending).await
    }

    /// Runs `--header-cmd` and `--on-connect-cmd`, then dials with what
    /// they printed, while still taking commands. `Err` means the session
    /// ended meanwhile (the commands are killed if still running).
    async fn dial(
        &mut self,
    ) -> std::result::Result<Result<(crate::net::dial::Connection, Vec<Message>)>, Result<Ending>>
    {
        const REASON: &str = "closed before connecting";
        let dialer = Arc::clone(&self.dialer);
        let shared = Arc::clone(&self.shared);
        let header_cmd = self.config.header_cmd.clone();
        let on_connect_cmd = self.config.on_connect_cmd.clone();
        let dial = async move {
            let fresh =
                match crate::credentials::fresh(header_cmd.as_ref(), on_connect_cmd.as_ref()).await
                {
                    Ok(fresh) => fresh,
                    Err(err) => return (Err(err), Vec::new()),
                };
            let (result, log) = dialer.dial(&fresh.headers).await;
            let messages = fresh.messages.into_iter().map(Message::text).collect();
            (result.map(|conn| (conn, messages)), log)
        };
        tokio::pin!(dial);
        loop {
            if let Some(end) = self.offline_end(REASON).await {
                return Err(end);
            }
            let seen = shared.seen();
            let room = self.commands_open && self.outbox.has_room();
            tokio::select! {
                biased;
                () = shared.changed(seen) => {}
                (result, log) = &mut dial => {
                    // Before `connected` or the failure: what the server said.
                    for exchange in log {
                        self.emitter.emit(Event::Handshake(Box::new(exchange)));
                    }
                    return Ok(result);
                }
                () = self.emitter.room(), if self.emitter.has_backlog() => self.emitter.send_backlog(),
                cmd = self.commands.recv(), if room => {
                    if let Offline::End = self.offline_command(cmd) {
                        return Err(self.closed_offline(REASON).await);
                    }
                }
            }
        }
    }

    /// Sleeps out a backoff delay while taking commands; `Some` if the
    /// session ended meanwhile.
    async fn wait(&mut self, delay: Duration) -> Option<Result<Ending>> {
        const REASON: &str = "closed while disconnected";
        let shared = Arc::clone(&self.shared);
        let wake = sleep(delay);
        tokio::pin!(wake);
        loop {
            if let Some(end) = self.offline_end(REASON).await {
                return Some(end);
            }
            let seen = shared.seen();
            let room = self.commands_open && self.outbox.has_room();
            tokio::select! {
                biased;
                () = shared.changed(seen) => {}
                () = &mut wake => return None,
                () = self.emitter.room(), if self.emitter.has_backlog() => self.emitter.send_backlog(),
                cmd = self.commands.recv(), if room => match self.offline_command(cmd) {
                    Offline::Continue => {}
                    Offline::SkipWait => return None,
                    Offline::End => return Some(self.closed_offline(REASON).await),
                },
            }
        }
    }

    fn offline_command(&mut self, cmd: Option<Command>) -> Offline {
        match cmd {
            Some(Command::Send(payload)) => self.queue(payload),
            Some(Command::SendMany(payloads)) => self.queue_many(payloads),
            Some(Command::Ping(_)) => self
                .emitter
                .emit(Event::Warning("not connected: ping not sent".into())),
            Some(Command::Close { code, reason }) => {
                self.closing = Some(close_frame(code, reason));
                // What is left waits for the next connection, which delivers
                // it and then closes.
                if self.nothing_left() {
                    return Offline::End;
                }
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

    fn queue(&mut self, payload: Payload) {
        self.shared.taken(1);
        self.outbox.push(to_message(payload));
    }

    fn queue_many(&mut self, payloads: Vec<Payload>) {
        self.shared.taken(payloads.len());
        for payload in payloads {
            self.outbox.push(to_message(payload));
        }
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

    fn drain(&mut self) {
        if self.outbox.is_empty() {
            self.emitter.emit(Event::Drained);
        } else {
            self.drain_requested = true;
        }
    }

    async fn finish(&mut self, mut ending: Ending) -> Result<Ending> {
        self.state = State::Closed;
        // A server that closed normally has read what it was sent before;
        // with --confirm-by-reply only its replies say it handled them.
        ending.unsent = self.unsent(!ending.by_server || self.config.confirm.is_some());
        self.emitter.emit(Event::Closed {
            code: ending.code,
            reason: ending.reason.clone(),
            by_server: ending.by_server,
        });
        self.emitter.flush().await;
        Ok(ending)
    }

    async fn give_up(&mut self, failure: Error, attempts: u32) -> Error {
        self.state = State::Closed;
        self.emitter.flush().await;
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
        self.shared.taken(in_channel);
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
            compression: self.compression.clone(),
            compressing: self.compressing,
            connected_since: self.connected_since.map(|(wall, _)| wall),
            uptime: self.connected_since.map(|(_, mono)| mono.elapsed()),
            reconnects: self.reconnects,
            rtt: self.rtt,
            queued: self.outbox.len(),
            sent: self.sent,
            received: self.received,
        }
    }
}

/// What dies with a connection.
struct Connection {
    stream: Stream,
    writer: Writer,
    progress: WriteProgress,
    heartbeat: Heartbeat,
    /// `--app-ping`: the application's heartbeat, if asked for.
    app_heartbeat: Option<AppHeartbeat>,
    /// User pings awaiting their pong: (payload, when queued).
    user_pings: VecDeque<(Bytes, Instant)>,
    /// A Ping was read: tungstenite queued its Pong, which a flush sends.
    pong_owed: bool,
    /// The connection showed the server at work (a message arrived, a Ping
    /// was answered): only then may it reset the reconnect streak.
    healthy: bool,
    /// Our Close is written: the server's answer is due by then.
    close_deadline: Option<Instant>,
    /// The user interrupted: the session ends by then, whatever is left.
    interrupt_deadline: Option<Instant>,
    /// When writing paused with messages unconfirmed: see ACK_WHEN_IDLE.
    idle_ack_at: Option<Instant>,
    /// Since when our Close waits for the server to confirm what it was sent.
    confirming_since: Option<Instant>,
    /// Messages whose `--reply` needs a value not captured yet.
    waiting: Waiting,
}

/// The writing half and what goes into it besides the queue.
struct Writer {
    sink: Sink,
    /// Pings, `--app-ping` and `--reply` messages for the current
    /// connection; they jump the data queue.
    control: VecDeque<Control>,
    /// The `--reply` answers fed and not yet flushed: (what each answers,
    /// the answer), reported as `Event::Replied` once written.
    replies_unflushed: Vec<(String, String)>,
    /// Pings written on this connection and what each confirms.
    acks: Acks,
    unflushed: Unflushed,
    trace: Trace,
    /// For the trace: the Pong tungstenite queued for a Ping it read. It goes
    /// out with the next write, ahead of what that write feeds.
    auto_pong: Option<Bytes>,
    /// `--json-sent`: what each flush wrote is reported.
    record_sent: bool,
    /// With `record_sent`: the `--on-connect` messages fed, reported with
    /// the queue's by the flush that writes them.
    sent: Vec<(Message, bool)>,
    /// `--compress`, when this connection agreed to permessage-deflate.
    deflater: Option<Deflater>,
    /// Where the socket notes that the peer reset the connection: a flush
    /// after that wrote nothing.
    progress: WriteProgress,
}

impl Connection {
    fn new(
        socket: Socket,
        progress: WriteProgress,
        deflater: Option<Deflater>,
        supervisor: &Supervisor,
    ) -> Connection {
        let (sink, stream) = socket.split();
        Connection {
            stream,
            writer: Writer {
                sink,
                control: VecDeque::new(),
                replies_unflushed: Vec::new(),
                acks: Acks::default(),
                unflushed: Unflushed::default(),
                trace: Trace::new(supervisor.config.reports.frame_payloads),
                auto_pong: None,
                record_sent: supervisor.config.reports.sent,
                sent: Vec::new(),
                deflater,
                progress: progress.clone(),
            },
            progress,
            heartbeat: Heartbeat::new(supervisor.config.heartbeat, Instant::now()),
            app_heartbeat: supervisor.config.app_heartbeat.as_ref().map(|config| {
                AppHeartbeat::new(config, supervisor.config.heartbeat.timeout, Instant::now())
            }),
            user_pings: VecDeque::new(),
            pong_owed: false,
            healthy: false,
            close_deadline: None,
            interrupt_deadline: None,
            idle_ack_at: None,
            confirming_since: None,
            waiting: Waiting::default(),
        }
    }

    async fn run(&mut self, sv: &mut Supervisor) -> ConnectionEnd {
        let replayed = sv.outbox.rewind();
        if replayed > 0 {
            sv.emitter.emit(Event::Warning(format!(
                "re-sending {replayed} message{} whose delivery the lost connection left unconfirmed",
                if replayed == 1 { "" } else { "s" }
            )));
        }
        for message in sv.on_connect() {
            if let Err(err) = self.writer.feed(message.clone()).await {
                return ConnectionEnd::Lost(lost(err));
            }
            self.writer.unflushed.frames = true;
            if self.writer.record_sent {
                self.writer.sent.push((message, false));
            }
        }
        for message in std::mem::take(&mut sv.fresh_on_connect) {
            let writer = &mut self.writer;
            let written = if writer.trace.on() {
                writer.trace_auto_pong();
                let written = feed(&mut writer.sink, &mut writer.deflater, message.clone()).await;
                writer.trace.secret_frame(Dir::Out, &message);
                written
            } else {
                feed(&mut writer.sink, &mut writer.deflater, message).await
            };
            if let Err(err) = written {
                return ConnectionEnd::Lost(lost(err));
            }
            self.writer.unflushed.frames = true;
        }
        let shared = Arc::clone(&sv.shared);

        loop {
            // Read once, before anything it covers is looked at: a change
            // after this wakes the select below.
            let seen = shared.seen();
            if shared.interrupted() && self.interrupt_deadline.is_none() {
                self.interrupt(sv);
            }
            if !self.waiting.is_empty() {
                self.answer_waiting(sv, seen.captures);
            }
            let interrupted = self.interrupt_deadline.is_some();
            let close_due = sv.closing.is_some()
                && self.close_deadline.is_none()
                && !self.writer.unflushed.close
                && sv.outbox.is_empty();
            let confirming = close_due && !interrupted && sv.outbox.unconfirmed().0 > 0;
            if confirming {
                // Ask now, not after ACK_WHEN_IDLE; a no-op when the last ping
                // written already follows every message.
                self.writer.acks.request_confirmation(sv.outbox.position());
                self.confirming_since.get_or_insert_with(|| {
                    let (n, _) = sv.outbox.unconfirmed();
                    tracing::debug!("closing once the server confirms {n} messages");
                    Instant::now()
                });
            } else {
                self.confirming_since = None;
            }
            let send_close = close_due && !confirming && self.writer.control.is_empty();
            // With --json-sent every message written is an event: in pipe
            // mode writing waits for the frontend's room, as reading does
            // (see `Reports::sent_paces_writing`).
            let may_send = !sv.config.reports.sent_paces_writing || sv.emitter.may_read();
            let sends = may_send && sv.outbox.ready();
            let want_write = self.writer.unflushed.frames
                || self.pong_owed
                || send_close
                || sends
                || !self.writer.control.is_empty()
                || self.writer.acks.idle.is_some();
            // An interrupt takes nothing more: an endless stdin must not
            // keep the queue from ever running empty.
            // Nor does a close asked for: what was queued before it goes out,
            // what comes after it (an endless stdin past --count) stays
            // unsent, and the close can come due.
            let room = sv.commands_open
                && sv.outbox.has_room()
                && sv.closing.is_none()
                && self.close_deadline.is_none()
                && !interrupted;
            let close = if send_close { sv.closing.clone() } else { None };
            // Whichever comes first: the answer to our Close, or the
            // interrupt's limit.
            let give_up_at = match (self.close_deadline, self.interrupt_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let confirm_at = self.confirm_deadline();

            tokio::select! {
                () = shared.changed(seen) => {}
                // Pending at its first poll, it wakes the loop again once the
                // scheduler has polled the socket without sleeping.
                () = spin::poll_once(), if sv.spin.spinning() => {}
                () = sleep_until(give_up_at.unwrap_or_else(Instant::now)), if give_up_at.is_some() => {
                    return ConnectionEnd::Closed(sv.closed_by_us(
                        None,
                        "the server did not answer our Close in time".into(),
                    ));
                }
                () = sv.emitter.room(), if sv.emitter.has_backlog() => sv.emitter.send_backlog(),
                () = sv.emitter.room_to_read(), if !may_send && !sv.emitter.has_backlog() && sv.outbox.ready() => {}
                // While a Pong is owed and not yet written, nothing more is
                // read: tungstenite buffers one Pong per Ping read, so a server
                // that floods Pings and never reads would grow it without bound.
                incoming = next_incoming(&mut self.stream, &sv.emitter), if !sv.emitter.has_backlog() && !self.pong_owed && self.writer.control.len() < CONTROL_MAX => {
                    let closing = self.close_deadline.is_some();
                    let received = sv.received;
                    if let Some(end) = self.incoming(sv, incoming, closing).await {
                        return end;
                    }
                    // Take the frames that have already arrived too, so a
                    // burst costs one pass of this loop, not one per message.
                    for _ in 1..READ_BURST {
                        if !sv.emitter.may_read() || self.pong_owed || self.writer.control.len() >= CONTROL_MAX {
                            break;
                        }
                        let Some(incoming) = self.stream.next().now_or_never() else {
                            break;
                        };
                        if let Some(end) = self.incoming(sv, incoming, closing).await {
                            return end;
                        }
                    }
                    // Once per pass: a burst is a stream, not a reply.
                    match sv.received - received {
                        0 => {}
                        n => sv.spin.received(std::time::Instant::now(), n == 1),
                    }
                }
                cmd = sv.commands.recv(), if room => {
                    if let Some(end) = self.command(sv, cmd) {
                        return end;
                    }
                }
                written = self.writer.write_batch(&mut sv.outbox, close, may_send), if want_write => {
                    let written = match written {
                        Ok(written) => written,
                        Err(err) if self.progress.reset().is_some() => {
                            return self.last_words(sv, lost(err)).await;
                        }
                        Err(err) => return ConnectionEnd::Lost(lost(err)),
                    };
                    self.written(sv, written);
                }
                () = sleep_until(self.heartbeat.deadline()), if self.heartbeat.enabled() && self.close_deadline.is_none() => {
                    let now = Instant::now();
                    if let Some(drained) = self.progress.last_drain() {
                        self.heartbeat.alive(drained);
                    }
                    match self.heartbeat.tick(now) {
                        Tick::SendPing(payload) => self.writer.control.push_back(Control::frame(Message::Ping(payload))),
                        // Our reader is paused by a slow consumer: the pong
                        // may be sitting unread, so give the peer more time.
                        Tick::Dead if sv.emitter.reader_paused() => self.heartbeat.alive(now),
                        Tick::Dead => {
                            return ConnectionEnd::Lost(Error::ConnectionLost(format!(
                                "heartbeat timeout: no pong within {}",
                                crate::values::format_duration(sv.config.heartbeat.timeout)
                            )));
                        }
                        Tick::Nothing => {}
                    }
                }
                () = sleep_until(self.app_heartbeat.as_ref().map_or_else(Instant::now, AppHeartbeat::deadline)), if self.app_heartbeat.is_some() && self.close_deadline.is_none() && !self.writer.unflushed.close => {
                    let now = Instant::now();
                    let app = self.app_heartbeat.as_mut().expect("in the branch's condition");
                    match app.tick(now) {
                        AppTick::Send => {
                            let message = sv.config.app_heartbeat.as_ref().map(|c| c.message.as_str()).unwrap_or_default();
                            self.writer.control.push_back(Control::frame(Message::text(message)));
                        }
                        // Our reader is paused by a slow consumer: the pong
                        // may be sitting unread.
                        AppTick::Dead if sv.emitter.reader_paused() => app.extend(now),
                        AppTick::Dead => {
                            return ConnectionEnd::Lost(Error::ConnectionLost(format!(
                                "application heartbeat timeout: no reply to --app-ping within {}",
                                crate::values::format_duration(sv.config.heartbeat.timeout)
                            )));
                        }
                        AppTick::Nothing => {}
                    }
                }
                () = sleep_until(self.idle_ack_at.unwrap_or_else(Instant::now)), if self.idle_ack_at.is_some() && self.close_deadline.is_none() => {
                    self.idle_ack_at = None;
                    self.writer.acks.request_idle();
                }
                () = sleep_until(confirm_at), if confirming => {
                    if let Some(drained) = self.progress.last_drain() {
                        self.heartbeat.alive(drained);
                    }
                    // Our reader is paused by a slow consumer: the Pong may
                    // be sitting unread.
                    if !sv.emitter.may_read() {
                        self.heartbeat.alive(Instant::now());
                    }
                    if Instant::now() >= self.confirm_deadline() {
                        let (n, _) = sv.outbox.unconfirmed();
                        return ConnectionEnd::Lost(Error::ConnectionLost(format!(
                            "the server confirmed none of the last {n} message{} within {} (--ping-timeout) before the close",
                            if n == 1 { "" } else { "s" },
                            crate::values::format_duration(self.heartbeat.timeout())
                        )));
                    }
                }
            }
        }
    }

    /// The peer reset the connection under our writes. What it sent before is
    /// still in our receive buffer, its replies and Pongs confirming messages:
    /// read it until the reset shows there too, then end with `err`. Reading
    /// stops early where the main loop would pause it (the frontend is behind:
    /// a hostile server's last words must not grow memory), which only costs
    /// replays.
    async fn last_words(&mut self, sv: &mut Supervisor, err: Error) -> ConnectionEnd {
        let limit = self.limit(FAIL_TIMEOUT);
        let closing = self.close_deadline.is_some();
        loop {
            if sv.emitter.has_backlog() || !sv.emitter.may_read() {
                return ConnectionEnd::Lost(err);
            }
            let Ok(incoming) = timeout_at(limit, self.stream.next()).await else {
                return ConnectionEnd::Lost(err);
            };
            match self.incoming(sv, incoming, closing).await {
                None => {}
                // The answer to our Close: the server read all we sent
                // before it.
                Some(ConnectionEnd::Closed(ending)) if closing && ending.code.is_some() => {
                    return ConnectionEnd::Closed(ending);
                }
                // The server's own Close is no proof: the reset says it threw
                // away bytes we sent after it, so they are sent again.
                Some(ConnectionEnd::Closed(_) | ConnectionEnd::Lost(Error::ConnectionLost(_))) => {
                    return ConnectionEnd::Lost(err);
                }
                // Its Close code, or a protocol error in what it sent, says
                // more than the reset.
                Some(end) => return end,
            }
        }
    }

    /// Answers the messages that waited for a capture, now that `captures`
    /// have been made; none once our Close is on its way.
    fn answer_waiting(&mut self, sv: &Supervisor, captures: usize) {
        if self.close_deadline.is_some() || self.writer.unflushed.close {
            self.waiting.clear();
            return;
        }
        for (to, reply) in self
            .waiting
            .answers(&sv.replies, &sv.shared.captured, captures)
        {
            self.writer.control.push_back(Control {
                frame: Message::text(reply),
                answers: Some(to),
            });
        }
    }

    /// The user interrupted: close with 1000 "interrupted" (unless our Close
    /// is on its way already), confirming nothing, within INTERRUPT_TIMEOUT.
    fn interrupt(&mut self, sv: &mut Supervisor) {
        self.interrupt_deadline = Some(Instant::now() + INTERRUPT_TIMEOUT);
        if self.close_deadline.is_none() && !self.writer.unflushed.close {
            sv.closing = Some(close_frame(1000, "interrupted".into()));
        }
    }

    /// When a Close waiting for confirmations gives up on the connection.
    fn confirm_deadline(&self) -> Instant {
        self.confirming_since.map_or_else(Instant::now, |since| {
            self.heartbeat.since(since) + self.heartbeat.timeout()
        })
    }

    /// How long answering the server may take now: an interrupt bounds it.
    fn limit(&self, timeout: Duration) -> Instant {
        let at = Instant::now() + timeout;
        self.interrupt_deadline.map_or(at, |limit| limit.min(at))
    }

    fn written(&mut self, sv: &mut Supervisor, written: Written) {
        sv.send_credit.give(written.first_time_bytes);
        for (to, reply) in written.replied {
            sv.emitter.emit(Event::Replied { to, reply });
        }
        for (message, replay) in written.sent {
            if let Some(payload) = to_payload(message) {
                sv.emitter.sent(payload, replay);
            }
        }
        if sv.outbox.replay_enabled() && self.writer.acks.owed() && !sv.outbox.has_unfed() {
            self.idle_ack_at
                .get_or_insert_with(|| Instant::now() + ACK_WHEN_IDLE);
        }
        if written.ping {
            self.heartbeat.written(Instant::now());
        }
        self.pong_owed = false;
        if written.close {
            sv.state = State::Closing;
            self.close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
            // Nothing may follow our Close.
            self.idle_ack_at = None;
            self.writer.acks.idle = None;
            self.writer.control.clear();
        }
        if written.delivered > 0 {
            // Only a lone request waits for its reply; a batch keeps the
            // loop busy, and spinning would take the CPU from its peers.
            let lone = written.delivered == 1 && sv.outbox.is_empty();
            sv.spin.sent(std::time::Instant::now(), lone);
            sv.sent += written.delivered as u64;
            sv.emitter.emit(Event::Delivered {
                count: written.delivered,
            });
            if sv.drain_requested && sv.outbox.is_empty() {
                sv.drain_requested = false;
                sv.emitter.emit(Event::Drained);
            }
        }
    }

    fn command(&mut self, sv: &mut Supervisor, cmd: Option<Command>) -> Option<ConnectionEnd> {
        let mut next = cmd;
        // Take whatever else is already waiting, so a burst becomes one batch.
        loop {
            match next {
                Some(Command::Send(payload)) => sv.queue(payload),
                Some(Command::SendMany(payloads)) => sv.queue_many(payloads),
                Some(Command::Ping(payload)) => {
                    self.user_pings.push_back((payload.clone(), Instant::now()));
                    // Unanswered pings must not pile up forever.
                    if self.user_pings.len() > 64 {
                        self.user_pings.pop_front();
                    }
                    self.writer
                        .control
                        .push_back(Control::frame(Message::Ping(payload)));
                }
                Some(Command::Close { code, reason }) => {
                    sv.closing = Some(close_frame(code, reason));
                    return None;
                }
                Some(Command::Reconnect) => return Some(ConnectionEnd::Reconnect),
                Some(Command::Drain) => sv.drain(),
                Some(Command::Status(reply)) => {
                    let _ = reply.send(sv.status());
                }
                None => {
                    sv.commands_open = false;
                    if sv.closing.is_none() {
                        sv.closing = Some(close_frame(1000, String::new()));
                    }
                    return None;
                }
            }
            if !sv.outbox.has_room() || sv.shared.interrupted() {
                return None;
            }
            next = match sv.commands.try_recv() {
                Ok(cmd) => Some(cmd),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => None,
            };
        }
    }

    async fn incoming(
        &mut self,
        sv: &mut Supervisor,
        incoming: Option<tungstenite::Result<Message>>,
        closing: bool,
    ) -> Option<ConnectionEnd> {
        let message = match incoming {
            Some(Ok(message)) => {
                self.writer.trace.frame(Dir::In, &message, false);
                message
            }
            Some(Err(err)) if closing => {
                return Some(ConnectionEnd::Closed(
                    sv.closed_by_us(None, err.to_string()),
                ));
            }
            Some(Err(err)) => {
                if let Some(code) = failure_close_code(&err) {
                    // RFC 6455 7.1.7: say why before hanging up, without waiting
                    // for an answer from a server that is already misbehaving.
                    let frame = Message::Close(Some(close_frame(code, String::new())));
                    let limit = self.limit(FAIL_TIMEOUT);
                    let traced = self.writer.trace.on().then(|| frame.clone());
                    if let Ok(Ok(())) = timeout_at(limit, self.writer.sink.send(frame)).await
                        && let Some(frame) = traced
                    {
                        self.writer.trace.frame(Dir::Out, &frame, false);
                    }
                }
                return Some(ConnectionEnd::Lost(classify_read_error(err)));
            }
            None if closing => {
                return Some(ConnectionEnd::Closed(sv.closed_by_us(None, String::new())));
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
                sv.received += 1;
                if let Some(app) = &mut self.app_heartbeat
                    && let Some(rtt) = app.received(text.as_str(), Instant::now())
                {
                    sv.rtt.record(rtt);
                    sv.emitter.emit(Event::Pong {
                        rtt,
                        heartbeat: true,
                    });
                }
                // An answer shows the server at work, as a Pong does.
                if sv.outbox.replied(text.as_str()) {
                    self.heartbeat.alive(Instant::now());
                }
                // Not after our Close: nothing may follow it.
                let replied = if sv.replies.is_empty() || closing || self.writer.unflushed.close {
                    None
                } else {
                    match sv.replies.answer(text.as_str(), &sv.shared.captured) {
                        Some(Ok(reply)) => Some((text.as_str().to_owned(), reply)),
                        // The step that captures it has not matched yet:
                        // the answer waits for it.
                        Some(Err(name)) => {
                            tracing::debug!(
                                "waiting to reply to {}: {{{{{name}}}}} is not captured yet",
                                crate::render::excerpt(text.as_str(), 60, text.len())
                            );
                            self.waiting.push(text.as_str().to_owned());
                            None
                        }
                        None => None,
                    }
                };
                sv.emitter.message(Payload::Text(text));
                // Reported once written (`Writer::flush`), so after the
                // message it answers; one lost with the connection, or
                // dropped by our Close, is not.
                if let Some((to, reply)) = replied {
                    self.writer.control.push_back(Control {
                        frame: Message::text(reply),
                        answers: Some(to),
                    });
                }
            }
            Message::Binary(data) => {
                self.healthy = true;
                sv.received += 1;
                sv.emitter.message(Payload::Binary(data));
            }
            // tungstenite queued the Pong; the write branch flushes it
            // promptly (not here: a server that stops reading would stall
            // this branch, and with it the heartbeat and the commands).
            Message::Ping(payload) => {
                self.pong_owed = true;
                // None follows our Close.
                if self.writer.trace.on() && !self.writer.unflushed.close && !closing {
                    self.writer.auto_pong = Some(payload.clone());
                }
                if sv.config.reports.ping_pong {
                    sv.emitter.emit(Event::Ping(payload));
                }
            }
            Message::Pong(payload) => {
                let now = Instant::now();
                // Only an answer to a Ping we wrote shows the server reads:
                // Pongs it sends unasked prove nothing.
                let answered = self.writer.acks.answered(&payload);
                if let Some((position, ours)) = answered {
                    self.heartbeat.alive(now);
                    self.healthy = true;
                    sv.outbox.confirm(position);
                    tracing::trace!(position, unconfirmed = ?sv.outbox.unconfirmed(), "pong confirms");
                    if ours {
                        return None;
                    }
                }
                if let Some(rtt) = self.heartbeat.pong(&payload, now) {
                    sv.rtt.record(rtt);
                    sv.emitter.emit(Event::Pong {
                        rtt,
                        heartbeat: true,
                    });
                } else if let Some(i) = self.user_pings.iter().position(|(p, _)| *p == payload) {
                    let (_, sent) = self.user_pings.remove(i).expect("index from position");
                    let rtt = now.saturating_duration_since(sent);
                    sv.rtt.record(rtt);
                    sv.emitter.emit(Event::Pong {
                        rtt,
                        heartbeat: false,
                    });
                } else if answered.is_none() && sv.config.reports.ping_pong {
                    sv.emitter.emit(Event::UnsolicitedPong(payload));
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
                    sv.outbox.confirm(sv.outbox.position());
                    return Some(ConnectionEnd::Closed(sv.closed_by_us(Some(code), reason)));
                }
                // tungstenite queued our reply (the same frame, as handed
                // to us); send it before hanging up.
                let limit = self.limit(CLOSE_TIMEOUT);
                if let Ok(Ok(())) = timeout_at(limit, self.writer.sink.close()).await {
                    self.writer
                        .trace
                        .frame(Dir::Out, &Message::Close(frame), true);
                }
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
}

/// Reads the next frame once the frontend has room for it (see
/// [`Emitter::room_to_read`]).
async fn next_incoming(
    stream: &mut Stream,
    emitter: &Emitter,
) -> Option<tungstenite::Result<Message>> {
    emitter.room_to_read().await;
    stream.next().await
}

impl Writer {
    /// Hands pings, queued messages (unless `messages` is false) and (once
    /// the queue is empty) our Close to the socket, then flushes once.
    /// Cancel-safe: progress is recorded as it is made (`unflushed` says a
    /// flush is owed), and an interrupted flush is resumed by the next call.
    async fn write_batch(
        &mut self,
        outbox: &mut Outbox,
        close: Option<CloseFrame>,
        messages: bool,
    ) -> tungstenite::Result<Written> {
        if self.unflushed.close {
            // Our Close is fed: nothing may follow it, only the flush is owed.
            return self.flush(outbox).await;
        }
        while let Some(control) = self.control.front() {
            self.feed(control.frame.clone()).await?;
            self.unflushed.frames = true;
            match self.control.pop_front() {
                Some(Control {
                    frame: Message::Ping(payload),
                    ..
                }) => self.acks.record(payload, outbox.position(), false),
                Some(Control {
                    frame: Message::Text(reply),
                    answers: Some(to),
                }) => self.replies_unflushed.push((to, reply.as_str().to_owned())),
                _ => {}
            }
        }
        if let Some(payload) = self.acks.idle.clone() {
            self.feed(Message::Ping(payload.clone())).await?;
            self.unflushed.frames = true;
            self.acks.idle = None;
            self.acks.record(payload, outbox.position(), true);
        }
        let batch = if messages { WRITE_BATCH } else { 0 };
        for _ in 0..batch {
            if !outbox.window_open() {
                break;
            }
            let Some(message) = outbox.next_unfed() else {
                break;
            };
            let len = message.len();
            self.feed(message).await?;
            self.unflushed.frames = true;
            outbox.mark_fed();
            if outbox.replay_enabled()
                && let Some(payload) = self.acks.fed(len)
            {
                // Fed after the message: if this feed is cancelled, the next
                // batch simply asks a little later.
                self.feed(Message::Ping(payload.clone())).await?;
                self.acks.record(payload, outbox.position(), true);
            }
        }
        if let Some(frame) = close {
            self.feed(Message::Close(Some(frame))).await?;
            self.unflushed.frames = true;
            self.unflushed.close = true;
            self.acks.idle = None;
        }
        self.flush(outbox).await
    }

    /// Hands one frame to tungstenite (which writes the Pong it owes first),
    /// tracing both.
    async fn feed(&mut self, message: Message) -> tungstenite::Result<()> {
        if !self.trace.on() {
            // The plain case awaits tungstenite directly: no extra future on
            // the hot path.
            return match &mut self.deflater {
                None => self.sink.feed(message).await,
                Some(deflater) => compressed(&mut self.sink, deflater, message).await,
            };
        }
        self.trace_auto_pong();
        feed(&mut self.sink, &mut self.deflater, message.clone()).await?;
        self.trace.frame(Dir::Out, &message, false);
        Ok(())
    }

    fn trace_auto_pong(&mut self) {
        if let Some(payload) = self.auto_pong.take() {
            self.trace.frame(Dir::Out, &Message::Pong(payload), true);
        }
    }

    async fn flush(&mut self, outbox: &mut Outbox) -> tungstenite::Result<Written> {
        self.trace_auto_pong();
        self.sink.flush().await?;
        // The socket took the bytes only to let reads go on (`LastWords`):
        // this flush wrote nothing.
        if let Some(err) = self.progress.reset() {
            return Err(tungstenite::Error::Io(err));
        }
        self.unflushed.frames = false;
        let mut sent = std::mem::take(&mut self.sent);
        let flushed = outbox.flushed(self.record_sent.then_some(&mut sent));
        Ok(Written {
            replied: std::mem::take(&mut self.replies_unflushed),
            delivered: flushed.messages,
            first_time_bytes: flushed.first_time_bytes,
            ping: self.acks.take_ping_unflushed(),
            close: std::mem::take(&mut self.unflushed.close),
            sent,
        })
    }
}

/// Hands one frame to tungstenite, a data message compressed first when the
/// connection compresses.
async fn feed(
    sink: &mut Sink,
    deflater: &mut Option<Deflater>,
    message: Message,
) -> tungstenite::Result<()> {
    match deflater {
        Some(deflater) => compressed(sink, deflater, message).await,
        None => sink.feed(message).await,
    }
}

/// [`feed`] on a connection that compresses. A data message is compressed
/// only once tungstenite has room: a feed cancelled while it waits must not
/// leave the compressor's context ahead of what the server will inflate.
async fn compressed(
    sink: &mut Sink,
    deflater: &mut Deflater,
    message: Message,
) -> tungstenite::Result<()> {
    if !matches!(message, Message::Text(_) | Message::Binary(_)) {
        return sink.feed(message).await;
    }
    std::future::poll_fn(|cx| sink.poll_ready_unpin(cx)).await?;
    sink.start_send_unpin(deflater.frame(message)?)
}

fn to_message(payload: Payload) -> Message {
    match payload {
        Payload::Text(text) => Message::Text(text),
        Payload::Binary(data) => Message::Binary(data),
    }
}

/// A data message's payload; `None` for control frames.
fn to_payload(message: Message) -> Option<Payload> {
    match message {
        Message::Text(text) => Some(Payload::Text(text)),
        Message::Binary(data) => Some(Payload::Binary(data)),
        _ => None,
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
        tungstenite::Error::Io(err) if inflate_error(err).is_some() => {
            Some(u16::from(CloseCode::Invalid))
        }
        _ => None,
    }
}

/// Why the server's compressed data did not inflate (`net/deflate.rs`), when
/// that is what broke the stream.
fn inflate_error(err: &std::io::Error) -> Option<&crate::net::deflate::InflateError> {
    err.get_ref()?.downcast_ref()
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
        tungstenite::Error::Io(err) if inflate_error(&err).is_some() => {
            Error::Protocol(err.to_string())
        }
        other => lost(other),
    }
}
