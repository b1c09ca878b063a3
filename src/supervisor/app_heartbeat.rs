//! `--app-ping`: a heartbeat in the application's own messages, for servers
//! that want one (and proxies that do not pass WebSocket Pings): MESSAGE every
//! `--app-ping-interval`, and a message matching `--app-pong` within
//! `--ping-timeout`, or the connection is dead and reconnected as for a
//! protocol heartbeat timeout. One per connection.

use std::time::Duration;

use tokio::time::Instant;

use super::replies::{Replies, ReplySpec};

/// The settings, as config checked them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppHeartbeatConfig {
    pub message: String,
    pub interval: Duration,
    /// The pong's matcher (its response unused).
    pub pong: ReplySpec,
}

/// What the timer asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum AppTick {
    Send,
    Dead,
    Nothing,
}

pub struct AppHeartbeat {
    interval: Duration,
    timeout: Duration,
    pong: Replies,
    next_ping: Instant,
    /// When the unanswered ping was written.
    awaiting: Option<Instant>,
}

impl AppHeartbeat {
    pub fn new(config: &AppHeartbeatConfig, timeout: Duration, now: Instant) -> AppHeartbeat {
        AppHeartbeat {
            interval: config.interval,
            timeout,
            pong: Replies::from_specs(std::slice::from_ref(&config.pong)),
            next_ping: now + config.interval,
            awaiting: None,
        }
    }

    pub fn deadline(&self) -> Instant {
        match self.awaiting {
            Some(sent) => sent + self.timeout,
            None => self.next_ping,
        }
    }

    pub fn tick(&mut self, now: Instant) -> AppTick {
        match self.awaiting {
            Some(sent) if now >= sent + self.timeout => AppTick::Dead,
            Some(_) => AppTick::Nothing,
            None if now >= self.next_ping => {
                self.awaiting = Some(now);
                self.next_ping = now + self.interval;
                AppTick::Send
            }
            None => AppTick::Nothing,
        }
    }

    /// A reader paused by a slow consumer may hold the pong unread.
    pub fn extend(&mut self, now: Instant) {
        if self.awaiting.is_some() {
            self.awaiting = Some(now);
        }
    }

    /// The round trip when `message` is the pong awaited.
    pub fn received(&mut self, message: &str, now: Instant) -> Option<Duration> {
        let sent = self.awaiting?;
        if !self.pong.matches(message) {
            return None;
        }
        self.awaiting = None;
        Some(now.saturating_duration_since(sent))
    }
}
