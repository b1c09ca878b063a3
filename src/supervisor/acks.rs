//! Acknowledging pings: which Pong confirms which messages.
//!
//! WebSocket has no acknowledgements, so the supervisor interleaves Pings of
//! its own with the data: a Pong to one shows the server has read every
//! message written before its Ping.

use std::collections::VecDeque;

use bytes::Bytes;

/// Unconfirmed messages or bytes that call for an acknowledging ping.
pub const ACK_EVERY_MESSAGES: usize = 256;
pub const ACK_EVERY_BYTES: usize = 64 * 1024;

/// Pings in flight on one connection. Each confirms, when answered, every
/// message written before it; ours are interleaved with the data so that a
/// server dying mid-stream has confirmed all it read.
#[derive(Default)]
pub struct Acks {
    /// (payload, outbox position, sent by us as an ack)
    written: VecDeque<(Bytes, u64, bool)>,
    messages_since: usize,
    bytes_since: usize,
    counter: u64,
    /// A ping went into the current, not yet flushed, batch.
    ping_unflushed: bool,
    /// An ack asked for because writing paused, to go out with the next batch.
    pub idle: Option<Bytes>,
}

impl Acks {
    pub fn record(&mut self, payload: Bytes, position: u64, ours: bool) {
        self.written.push_back((payload, position, ours));
        // A server may answer only the latest ping; the old ones must not pile up.
        if self.written.len() > 1024 {
            self.written.pop_front();
        }
        self.ping_unflushed = true;
    }

    /// A message of `len` bytes was fed; returns an ack ping when one is due.
    pub fn fed(&mut self, len: usize) -> Option<Bytes> {
        self.messages_since += 1;
        self.bytes_since += len;
        if self.messages_since < ACK_EVERY_MESSAGES && self.bytes_since < ACK_EVERY_BYTES {
            return None;
        }
        Some(self.next_payload())
    }

    /// Whether messages were written since the last ack.
    pub fn owed(&self) -> bool {
        self.messages_since > 0
    }

    /// Asks for an ack with the next batch, for what was written since the last.
    pub fn request_idle(&mut self) {
        if self.owed() && self.idle.is_none() {
            self.idle = Some(self.next_payload());
        }
    }

    /// Makes sure a ping follows everything before `position`: one already
    /// written that is still unanswered, or one asked for now.
    pub fn request_confirmation(&mut self, position: u64) {
        let covered = self.idle.is_some()
            || self
                .written
                .back()
                .is_some_and(|(_, written_at, _)| *written_at >= position);
        if !covered {
            self.idle = Some(self.next_payload());
        }
    }

    /// Whether a ping went into the batch just flushed (and forget it).
    pub fn take_ping_unflushed(&mut self) -> bool {
        std::mem::take(&mut self.ping_unflushed)
    }

    pub fn next_payload(&mut self) -> Bytes {
        self.messages_since = 0;
        self.bytes_since = 0;
        self.counter += 1;
        Bytes::from(format!("tether-ack-{}", self.counter))
    }

    /// The position a pong confirms, and whether the ping was an ack of ours.
    /// Pongs come in order, so earlier pings are settled too.
    pub fn answered(&mut self, payload: &[u8]) -> Option<(u64, bool)> {
        let i = self.written.iter().position(|(p, _, _)| p == payload)?;
        let (_, position, ours) = self.written.drain(..=i).last()?;
        Some((position, ours))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_is_due_after_enough_messages_or_bytes() {
        let mut acks = Acks::default();
        for _ in 1..ACK_EVERY_MESSAGES {
            assert_eq!(acks.fed(1), None);
        }
        assert!(acks.owed());
        let first = acks.fed(1).expect("due after the message count");
        assert!(!acks.owed());
        let second = acks.fed(ACK_EVERY_BYTES).expect("due after the byte count");
        assert_ne!(first, second, "each ack has its own payload");
    }

    #[test]
    fn a_pong_confirms_its_position_and_settles_earlier_pings() {
        let mut acks = Acks::default();
        acks.record(Bytes::from_static(b"user"), 3, false);
        let ours = acks.next_payload();
        acks.record(ours.clone(), 7, true);
        assert_eq!(acks.answered(b"unknown"), None);
        assert_eq!(acks.answered(&ours), Some((7, true)));
        assert_eq!(acks.answered(b"user"), None, "settled by the later pong");
    }

    #[test]
    fn an_idle_ack_is_asked_only_when_something_is_unconfirmed() {
        let mut acks = Acks::default();
        acks.request_idle();
        assert!(acks.idle.is_none(), "nothing written since the last ack");
        acks.fed(10);
        acks.request_idle();
        let idle = acks.idle.clone().expect("an ack for the written message");
        acks.request_idle();
        assert_eq!(acks.idle, Some(idle), "asked once");
    }

    #[test]
    fn a_confirmation_is_asked_unless_a_written_ping_covers_the_position() {
        let mut acks = Acks::default();
        let ping = acks.next_payload();
        acks.record(ping, 5, true);
        acks.request_confirmation(5);
        assert!(
            acks.idle.is_none(),
            "the ping at 5 follows every message before it"
        );
        acks.request_confirmation(6);
        assert!(acks.idle.is_some());
    }

    #[test]
    fn old_pings_do_not_pile_up() {
        let mut acks = Acks::default();
        for i in 0..2000 {
            acks.record(Bytes::from(format!("p{i}")), i, true);
        }
        assert_eq!(acks.answered(b"p0"), None, "forgotten");
        assert_eq!(acks.answered(b"p1999"), Some((1999, true)));
    }
}
