//! Ping/pong liveness for one connection.
//!
//! One heartbeat ping is outstanding at a time. Its deadline runs from the
//! moment the ping was flushed to the socket (or, while it sits unflushed
//! behind a full send buffer, from when it was queued, so a stuck write is
//! caught too).
//!
//! A late pong alone does not make a peer dead: a Ping written behind data
//! the server has not read yet is answered only once it has read its way to
//! it. While the peer shows that it is reading (a pong to an earlier ping
//! arrives, or it drains a full send buffer), the deadline runs from that
//! evidence instead, so a slow server lives and a silent one still dies
//! within the timeout.

use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::config::Heartbeat as HeartbeatConfig;

pub struct Heartbeat {
    config: HeartbeatConfig,
    next_ping: Instant,
    outstanding: Option<Ping>,
    counter: u64,
    /// The last evidence that the peer reads what we write.
    alive_at: Option<Instant>,
}

struct Ping {
    payload: Bytes,
    queued_at: Instant,
    written_at: Option<Instant>,
}

pub enum Tick {
    /// Time to send this heartbeat ping.
    SendPing(Bytes),
    /// No pong within the timeout: the peer is gone.
    Dead,
    Nothing,
}

impl Heartbeat {
    pub fn new(config: HeartbeatConfig, now: Instant) -> Heartbeat {
        Heartbeat {
            next_ping: now + config.interval.unwrap_or_default(),
            config,
            outstanding: None,
            counter: 0,
            alive_at: None,
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.interval.is_some()
    }

    /// When `tick` next has something to do.
    pub fn deadline(&self) -> Instant {
        match &self.outstanding {
            Some(ping) => {
                self.since(ping.written_at.unwrap_or(ping.queued_at)) + self.config.timeout
            }
            None => self.next_ping,
        }
    }

    pub fn tick(&mut self, now: Instant) -> Tick {
        let Some(interval) = self.config.interval else {
            return Tick::Nothing;
        };
        if now < self.deadline() {
            return Tick::Nothing;
        }
        if self.outstanding.is_some() {
            return Tick::Dead;
        }
        self.counter += 1;
        let payload = Bytes::copy_from_slice(format!("tether-hb-{}", self.counter).as_bytes());
        self.outstanding = Some(Ping {
            payload: payload.clone(),
            queued_at: now,
            written_at: None,
        });
        self.next_ping = now + interval;
        Tick::SendPing(payload)
    }

    /// The heartbeat ping (if any) was flushed to the socket.
    pub fn written(&mut self, now: Instant) {
        if let Some(ping) = &mut self.outstanding
            && ping.written_at.is_none()
        {
            ping.written_at = Some(now);
        }
    }

    /// The peer showed it reads what we write (see the module's doc). Also
    /// how the peer is given more time while our own reader is paused by a
    /// slow consumer, when a missing pong says nothing about the peer.
    pub fn alive(&mut self, at: Instant) {
        if self.alive_at.is_none_or(|t| t < at) {
            self.alive_at = Some(at);
        }
    }

    /// When the time without evidence of a live peer started, for a wait
    /// that began at `start`.
    pub fn since(&self, start: Instant) -> Instant {
        self.alive_at.map_or(start, |alive| alive.max(start))
    }

    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// A pong arrived; the round trip if it answers the heartbeat ping.
    pub fn pong(&mut self, payload: &[u8], now: Instant) -> Option<Duration> {
        let ping = self.outstanding.as_ref()?;
        if ping.payload != payload {
            return None;
        }
        let sent = ping.written_at.unwrap_or(ping.queued_at);
        self.outstanding = None;
        Some(now.saturating_duration_since(sent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(interval: u64, timeout: u64) -> HeartbeatConfig {
        HeartbeatConfig {
            interval: Some(Duration::from_secs(interval)),
            timeout: Duration::from_secs(timeout),
        }
    }

    #[test]
    fn a_missing_pong_is_fatal_after_the_timeout_from_the_write() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut hb = Heartbeat::new(config(20, 5), t0);
        assert!(matches!(hb.tick(t0 + s(19)), Tick::Nothing));
        let Tick::SendPing(_) = hb.tick(t0 + s(20)) else {
            panic!("expected a ping at the interval")
        };
        hb.written(t0 + s(21));
        assert_eq!(hb.deadline(), t0 + s(26));
        assert!(matches!(hb.tick(t0 + s(25)), Tick::Nothing));
        assert!(matches!(hb.tick(t0 + s(26)), Tick::Dead));
    }

    #[test]
    fn an_answered_ping_reports_rtt_and_schedules_the_next() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut hb = Heartbeat::new(config(10, 5), t0);
        let Tick::SendPing(payload) = hb.tick(t0 + s(10)) else {
            panic!("expected a ping")
        };
        hb.written(t0 + s(10));
        assert_eq!(hb.pong(b"someone else's", t0 + s(11)), None);
        assert_eq!(hb.pong(&payload, t0 + s(12)), Some(s(2)));
        assert_eq!(hb.deadline(), t0 + s(20));
    }

    #[test]
    fn a_peer_that_shows_it_reads_is_given_the_timeout_from_then() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut hb = Heartbeat::new(config(10, 5), t0);
        let Tick::SendPing(_) = hb.tick(t0 + s(10)) else {
            panic!("expected a ping")
        };
        hb.written(t0 + s(10));
        hb.alive(t0 + s(8));
        assert_eq!(hb.deadline(), t0 + s(15), "old evidence changes nothing");
        hb.alive(t0 + s(14));
        assert!(matches!(hb.tick(t0 + s(15)), Tick::Nothing));
        assert_eq!(hb.deadline(), t0 + s(19));
        assert!(matches!(hb.tick(t0 + s(19)), Tick::Dead));
    }
}
