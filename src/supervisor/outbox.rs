//! The no-loss outgoing queue.
//!
//! A message stays queued until the flush that carried it has completed.
//! Messages fed to the socket but not yet flushed are re-sent after a
//! reconnect, so delivery is at least once: WebSocket has no
//! acknowledgements, and bytes the kernel took before a drop cannot be
//! confirmed.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Message;

pub struct Outbox {
    items: VecDeque<Message>,
    /// `items[..fed]` were handed to the current connection, awaiting flush.
    fed: usize,
    capacity: usize,
}

impl Outbox {
    pub fn new(capacity: usize) -> Outbox {
        Outbox {
            items: VecDeque::with_capacity(capacity.min(4096)),
            fed: 0,
            capacity,
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

    /// The flush completed: everything fed so far is delivered to the kernel.
    pub fn flushed(&mut self) -> usize {
        let n = self.fed;
        self.items.drain(..n);
        self.fed = 0;
        n
    }

    /// The connection is gone: everything unflushed must be sent again.
    pub fn rewind(&mut self) {
        self.fed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflushed_messages_survive_a_rewind_in_order() {
        let mut outbox = Outbox::new(10);
        for i in 0..4 {
            outbox.push(Message::text(i.to_string()));
        }
        outbox.mark_fed();
        assert_eq!(outbox.flushed(), 1);
        outbox.mark_fed();
        outbox.mark_fed();
        outbox.rewind();
        let rest: Vec<_> = std::iter::from_fn(|| {
            let m = outbox.next_unfed()?;
            outbox.mark_fed();
            Some(m.into_text().unwrap().to_string())
        })
        .collect();
        assert_eq!(rest, ["1", "2", "3"]);
    }

    #[test]
    fn room_is_bounded_by_capacity() {
        let mut outbox = Outbox::new(2);
        outbox.push(Message::text("a"));
        assert!(outbox.has_room());
        outbox.push(Message::text("b"));
        assert!(!outbox.has_room());
    }
}
