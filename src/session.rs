//! The vocabulary between the supervisor and its frontends: the commands a
//! [`Handle`](crate::supervisor::Handle) sends and the events the supervisor
//! reports. Frontends (pipe, REPL, smoke) see only these types, never the
//! socket.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use crate::net::handshake::{Exchange, Peer, Request, Response};

/// A message's content. Both variants share their buffer when cloned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Text(Utf8Bytes),
    Binary(Bytes),
}

impl Payload {
    pub fn text(s: impl Into<String>) -> Payload {
        Payload::Text(Utf8Bytes::from(s.into()))
    }

    pub fn len(&self) -> usize {
        match self {
            Payload::Text(t) => t.len(),
            Payload::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a [`Handle`](crate::supervisor::Handle) asks of the supervisor.
#[derive(Debug)]
pub(crate) enum Command {
    /// Queue a message; it goes out in order, after any reconnect.
    Send(Payload),
    /// Queue several, in order: one command for a burst of stdin records.
    SendMany(Vec<Payload>),
    /// Send a Ping now; the answer comes back as [`Event::Pong`].
    Ping(Bytes),
    /// Send what is queued, then close with this code and reason. The Close
    /// waits until a Pong confirms every message written (within the ping
    /// timeout, extended while the server visibly reads); a connection that
    /// cannot confirm them counts as lost, so they are sent again after a
    /// reconnect. Asked while disconnected with anything left, it waits for
    /// the reconnect. An interrupt (out of band) closes without waiting.
    Close { code: u16, reason: String },
    /// Drop the current connection (or skip the backoff wait) and dial again.
    Reconnect,
    /// Report [`Event::Drained`] once everything queued so far is flushed.
    Drain,
    /// Answer with a snapshot of the session.
    Status(oneshot::Sender<Status>),
}

#[derive(Debug, Clone)]
pub enum Event {
    Connecting {
        attempt: u32,
    },
    Connected {
        url: String,
        subprotocol: Option<String>,
        /// The permessage-deflate parameters agreed, as the header spells them.
        compression: Option<String>,
        /// Whether tether compresses what it sends (`--compress`, agreed).
        compressing: bool,
        attempt: u32,
    },
    /// One HTTP exchange of a dial: the proxy's `CONNECT`, the upgrade (or a
    /// redirect), secrets redacted. Every dial's, before its `Connected` or
    /// its failure.
    Handshake(Box<Exchange>),
    Message(Payload),
    /// Queued messages were written and flushed.
    Delivered {
        count: usize,
    },
    Drained,
    Pong {
        rtt: Duration,
        /// True for the supervisor's own heartbeat, false for a user's ping.
        heartbeat: bool,
    },
    /// A Ping from the server, with its payload (tungstenite answers it).
    /// Only with `-P`.
    Ping(Bytes),
    /// A Pong from the server that answers no Ping of ours. Only with `-P`.
    UnsolicitedPong(Bytes),
    /// A message was written to the socket: the flush that carried it
    /// completed. `replay`: it went out before, on a connection lost before
    /// the server confirmed it. Only with `--json-sent`.
    Sent {
        payload: Payload,
        replay: bool,
    },
    Disconnected {
        reason: String,
        code: Option<u16>,
        will_retry: bool,
    },
    /// Waiting before the next attempt; `reason` is why the last one failed.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        reason: String,
        /// A `Disconnected` with this reason came just before: a line for
        /// people need not say it again.
        after_disconnect: bool,
    },
    /// The session ended with a close handshake (or the server's normal close).
    Closed {
        /// The code in the server's Close frame; `None` when none came (e.g.
        /// the server did not answer ours).
        code: Option<u16>,
        reason: String,
        by_server: bool,
    },
    Warning(String),
    /// A `--reply*` matched a received message (`to`): `reply`
    /// goes out next, ahead of anything queued.
    Replied {
        to: String,
        reply: String,
    },
}

impl Event {
    /// The payload whose bytes the event took from the event credit (see
    /// `supervisor::emitter`), given back as the frontend receives it.
    pub(crate) fn credited(&self) -> Option<&Payload> {
        match self {
            Event::Message(payload) | Event::Sent { payload, .. } => Some(payload),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Connected,
    Waiting,
    Closing,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Waiting => "reconnecting",
            State::Closing => "closing",
            State::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Status {
    pub state: State,
    pub url: String,
    pub subprotocol: Option<String>,
    /// The permessage-deflate parameters agreed on this connection.
    pub compression: Option<String>,
    /// Whether this connection compresses what tether sends.
    pub compressing: bool,
    /// When the current connection was made.
    pub connected_since: Option<SystemTime>,
    pub uptime: Option<Duration>,
    pub reconnects: u32,
    pub rtt: RttStats,
    pub queued: usize,
    pub sent: u64,
    pub received: u64,
}

/// Round-trip times of answered pings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RttStats {
    pub last: Option<Duration>,
    pub min: Option<Duration>,
    pub max: Option<Duration>,
    total: Duration,
    pub count: u32,
}

impl RttStats {
    pub fn record(&mut self, rtt: Duration) {
        self.last = Some(rtt);
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
        self.max = Some(self.max.map_or(rtt, |m| m.max(rtt)));
        self.total += rtt;
        self.count += 1;
    }

    pub fn avg(&self) -> Option<Duration> {
        (self.count > 0).then(|| self.total / self.count)
    }
}

/// How a session that did not fail ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ending {
    /// The code in the server's Close frame, if one came.
    pub code: Option<u16>,
    pub reason: String,
    pub by_server: bool,
    /// What the server never got, when the session ended (e.g. closed by the
    /// user while disconnected).
    pub unsent: Unsent,
}

/// Messages handed to tether that the server never confirmed, by where they
/// were when the session ended. `--on-connect` and `--on-connect-cmd` messages are not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsent {
    /// Not yet written to the socket (in the queue or the command channel).
    pub queued: usize,
    /// Written, but no Pong confirmed that the server read them.
    pub unconfirmed: usize,
    /// Read from stdin and not yet handed to the queue.
    pub stdin: usize,
}

impl Unsent {
    pub fn total(&self) -> usize {
        self.queued + self.unconfirmed + self.stdin
    }
}

/// `1 message was never confirmed by the server (1 written but unconfirmed)`.
impl std::fmt::Display for Unsent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total = self.total();
        write!(
            f,
            "{total} message{} never confirmed by the server (",
            if total == 1 { " was" } else { "s were" }
        )?;
        let parts = [
            (self.queued, "queued, never written"),
            (self.unconfirmed, "written, unconfirmed"),
            (self.stdin, "read from stdin, not yet queued"),
        ];
        let mut first = true;
        for (n, what) in parts.into_iter().filter(|(n, _)| *n > 0) {
            write!(f, "{}{n} {what}", if first { "" } else { "; " })?;
            first = false;
        }
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_stats_track_last_min_avg_max() {
        let mut stats = RttStats::default();
        assert_eq!(stats.avg(), None);
        for ms in [30, 10, 20] {
            stats.record(Duration::from_millis(ms));
        }
        assert_eq!(stats.last, Some(Duration::from_millis(20)));
        assert_eq!(stats.min, Some(Duration::from_millis(10)));
        assert_eq!(stats.max, Some(Duration::from_millis(30)));
        assert_eq!(stats.avg(), Some(Duration::from_millis(20)));
    }

    #[test]
    fn unsent_says_what_it_counts() {
        let one = Unsent {
            unconfirmed: 1,
            ..Unsent::default()
        };
        assert_eq!(
            one.to_string(),
            "1 message was never confirmed by the server (1 written, unconfirmed)"
        );
        let all = Unsent {
            queued: 4096,
            unconfirmed: 1024,
            stdin: 64,
        };
        assert_eq!(
            all.to_string(),
            "5184 messages were never confirmed by the server \
             (4096 queued, never written; 1024 written, unconfirmed; 64 read from stdin, not yet queued)"
        );
    }
}
