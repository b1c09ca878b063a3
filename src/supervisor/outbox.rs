//! The no-loss outgoing queue.
//!
//! A message stays queued until the flush that carried it has completed.
//! Even then it is not known to be delivered: WebSocket has no
//! acknowledgements, and bytes the kernel took can die in socket buffers when
//! the connection drops. So the most recently flushed messages stay in a
//! bounded replay window and are sent again after a reconnect: delivery is at
//! least once, and a drop costs duplicates rather than losses.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Message;

pub struct Outbox {
    items: VecDeque<Message>,
    /// `items[..fed]` were handed to the current connection, awaiting flush.
    fed: usize,
    capacity: usize,
    /// Flushed on the current connection, delivery unconfirmed; oldest first.
    replay: VecDeque<Message>,
    replay_bytes: usize,
    replay_budget: usize,
}

impl Outbox {
    /// `replay_budget` bounds the replay window in bytes; 0 turns it off.
    pub fn new(capacity: usize, replay_budget: usize) -> Outbox {
        Outbox {
            items: VecDeque::with_capacity(capacity.min(4096)),
            fed: 0,
            capacity,
            replay: VecDeque::new(),
            replay_bytes: 0,
            replay_budget,
        }
    }

    pub fn push(&mut self, message: Message) {
        self.items.push_back(message);
    }

    pub fn has_room(&self) -> bool {
        self.items.len() < self.capacity
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn has_unfed(&self) -> bool {
        self.fed < self.items.len()
    }

    /// The next message to hand to the socket (a cheap clone: buffers are shared).
    pub fn next_unfed(&self) -> Option<Message> {
        self.items.get(self.fed).cloned()
    }

    pub fn mark_fed(&mut self) {
        self.fed += 1;
    }

    /// The flush completed: everything fed so far is with the kernel.
    pub fn flushed(&mut self) -> usize {
        let n = self.fed;
        for message in self.items.drain(..n) {
            if self.replay_budget > 0 {
                self.replay_bytes += message.len();
                self.replay.push_back(message);
            }
        }
        while self.replay_bytes > self.replay_budget {
            let Some(old) = self.replay.pop_front() else {
                break;
            };
            self.replay_bytes -= old.len();
        }
        self.fed = 0;
        n
    }

    /// A new connection starts: what was unflushed goes again, preceded by
    /// the replay window. Returns how many messages are replayed.
    pub fn rewind(&mut self) -> usize {
        self.fed = 0;
        let replayed = self.replay.len();
        while let Some(message) = self.replay.pop_back() {
            self.items.push_front(message);
        }
        self.replay_bytes = 0;
        replayed
    }

    /// Messages flushed but unconfirmed (the replay window).
    #[cfg(test)]
    pub fn unconfirmed(&self) -> usize {
        self.replay.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_texts(outbox: &mut Outbox) -> Vec<String> {
        std::iter::from_fn(|| {
            let m = outbox.next_unfed()?;
            outbox.mark_fed();
            Some(m.into_text().unwrap().to_string())
        })
        .collect()
    }

    #[test]
    fn flushed_messages_are_replayed_before_unflushed_ones() {
        let mut outbox = Outbox::new(10, 1024);
        for i in 0..4 {
            outbox.push(Message::text(i.to_string()));
        }
        outbox.mark_fed();
        outbox.mark_fed();
        assert_eq!(outbox.flushed(), 2);
        outbox.mark_fed();
        assert_eq!(outbox.rewind(), 2);
        assert_eq!(drain_texts(&mut outbox), ["0", "1", "2", "3"]);
    }

    #[test]
    fn the_replay_window_keeps_only_the_newest_bytes() {
        let mut outbox = Outbox::new(10, 10);
        for word in ["aaaa", "bbbb", "cccc"] {
            outbox.push(Message::text(word));
            outbox.mark_fed();
            outbox.flushed();
        }
        assert_eq!(outbox.unconfirmed(), 2);
        outbox.rewind();
        assert_eq!(drain_texts(&mut outbox), ["bbbb", "cccc"]);
    }

    #[test]
    fn unflushed_messages_survive_a_rewind_in_order() {
        let mut outbox = Outbox::new(10, 0);
        for i in 0..4 {
            outbox.push(Message::text(i.to_string()));
        }
        outbox.mark_fed();
        assert_eq!(outbox.flushed(), 1);
        outbox.mark_fed();
        outbox.mark_fed();
        assert_eq!(outbox.rewind(), 0);
        assert_eq!(drain_texts(&mut outbox), ["1", "2", "3"]);
    }

    #[test]
    fn room_is_bounded_by_capacity() {
        let mut outbox = Outbox::new(2, 0);
        outbox.push(Message::text("a"));
        assert!(outbox.has_room());
        outbox.push(Message::text("b"));
        assert!(!outbox.has_room());
    }
}
