//! The no-loss outgoing queue.
//!
//! A message stays queued until the flush that carried it has completed.
//! Even then it is not known to be delivered: WebSocket has no
//! acknowledgements, and bytes the kernel took can die in socket buffers when
//! the connection drops. So flushed messages stay in a bounded replay window
//! until a Pong confirms them (the server answered a Ping written after them,
//! so it has read them), and whatever is unconfirmed is sent again after a
//! reconnect: delivery is at least once, and a drop costs duplicates rather
//! than losses. The window also caps what is in flight unconfirmed, so a
//! replay stays small enough for every new connection to make progress.
//!
//! With `--confirm-by-reply` a Pong proves too little (many server libraries
//! answer Pings as they parse them, before the application has seen what came
//! before), so a message leaves the window only when a reply answers it: in
//! order (the Nth reply on a connection answers the Nth message sent on it),
//! or with `--confirm-key` the unanswered message whose key is equal.

use std::collections::VecDeque;

use tokio_tungstenite::tungstenite::Message;

use crate::config::ConfirmByReply;

/// Messages in flight unconfirmed, at most (the byte budget also applies).
const MAX_UNCONFIRMED: usize = 1024;

pub struct Outbox {
    items: VecDeque<Message>,
    /// `items[..fed]` were handed to the current connection, awaiting flush.
    fed: usize,
    capacity: usize,
    /// Flushed on the current connection, delivery unconfirmed; oldest first.
    replay: VecDeque<Message>,
    replay_bytes: usize,
    replay_budget: usize,
    /// Messages flushed since the start; `replay` holds the last ones.
    flushed_total: u64,
    /// Messages a Pong confirmed, over the whole session.
    confirmed_total: u64,
    /// How many of the first `items` are replays, flushed once before.
    replays_queued: usize,
    /// `--confirm-by-reply`: replies, not Pongs, confirm.
    by_reply: Option<ByReply>,
}

/// Confirmation by reply: what answered which entry of the window.
struct ByReply {
    config: ConfirmByReply,
    /// One per `replay` entry, in the same order.
    entries: VecDeque<Entry>,
    /// Entries answered but still behind an unanswered one (with a key,
    /// replies come in any order); their bytes left `replay_bytes` already.
    answered: usize,
    /// Replies on this connection whose message's flush was not yet
    /// recorded (a write the select cancelled): in order, a count; with a
    /// key, the keys.
    early: usize,
    early_keys: VecDeque<String>,
}

struct Entry {
    /// With `--confirm-key`: the request's key; a message without one is
    /// confirmed by a Pong, as without `--confirm-by-reply`.
    key: Option<String>,
    answered: bool,
}

/// Replies remembered before what they answer is recorded, at most.
const EARLY_MAX: usize = 1024;

/// What a completed flush took out of the queue.
#[derive(Debug, PartialEq, Eq)]
pub struct Flushed {
    pub messages: usize,
    /// Bytes of the messages flushed for the first time (replays excluded):
    /// what the sender's byte credit gets back.
    pub first_time_bytes: usize,
}

impl Outbox {
    /// `replay_budget` bounds the replay window in bytes; 0 turns it off.
    pub fn new(capacity: usize, replay_budget: usize) -> Outbox {
        Outbox {
            // Grows on demand: a full-size queue is 200 KiB nobody may need.
            items: VecDeque::new(),
            fed: 0,
            capacity,
            replay: VecDeque::new(),
            replay_bytes: 0,
            replay_budget,
            flushed_total: 0,
            confirmed_total: 0,
            replays_queued: 0,
            by_reply: None,
        }
    }

    /// Replies, not Pongs, confirm from now on.
    pub fn confirm_by_reply(&mut self, config: ConfirmByReply) {
        self.by_reply = Some(ByReply {
            config,
            entries: VecDeque::new(),
            answered: 0,
            early: 0,
            early_keys: VecDeque::new(),
        });
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

    /// Whether another message may go out before confirmations come back.
    pub fn window_open(&self) -> bool {
        self.replay_budget == 0
            || (self.replay.len() + self.fed < MAX_UNCONFIRMED
                && self.replay_bytes < self.replay_budget)
    }

    /// There is something to send, and room in the window to send it.
    pub fn ready(&self) -> bool {
        self.has_unfed() && self.window_open()
    }

    /// The next message to hand to the socket (a cheap clone: buffers are shared).
    pub fn next_unfed(&self) -> Option<Message> {
        self.items.get(self.fed).cloned()
    }

    pub fn mark_fed(&mut self) {
        self.fed += 1;
    }

    /// The flush completed: everything fed so far is with the kernel. With
    /// `sent`, each message flushed is added to it, with whether it is a replay.
    pub fn flushed(&mut self, mut sent: Option<&mut Vec<(Message, bool)>>) -> Flushed {
        let n = self.fed;
        self.flushed_total += n as u64;
        let replays = self.replays_queued.min(n);
        self.replays_queued -= replays;
        let mut first_time_bytes = 0;
        for (i, message) in self.items.drain(..n).enumerate() {
            if i >= replays {
                first_time_bytes += message.len();
            }
            if let Some(sent) = &mut sent {
                sent.push((message.clone(), i < replays));
            }
            if self.replay_budget > 0 {
                self.replay_bytes += message.len();
                if let Some(by_reply) = &mut self.by_reply {
                    let key = match (&by_reply.config.key, &message) {
                        (Some(jq), Message::Text(text)) => jq.key(text.as_str()),
                        _ => None,
                    };
                    let answered = match &key {
                        None if by_reply.config.key.is_some() => false,
                        None => take_one(&mut by_reply.early),
                        Some(key) => {
                            let i = by_reply.early_keys.iter().position(|k| k == key);
                            i.and_then(|i| by_reply.early_keys.remove(i)).is_some()
                        }
                    };
                    if answered {
                        self.replay_bytes -= message.len();
                        by_reply.answered += 1;
                        self.confirmed_total += 1;
                    }
                    by_reply.entries.push_back(Entry { key, answered });
                }
                self.replay.push_back(message);
            }
        }
        self.fed = 0;
        self.settle();
        Flushed {
            messages: n,
            first_time_bytes,
        }
    }

    /// A new connection starts: what was unflushed goes again, preceded by
    /// the replay window. Returns how many messages are replayed.
    pub fn rewind(&mut self) -> usize {
        self.fed = 0;
        if let Some(by_reply) = &mut self.by_reply {
            // What was answered is not sent again; what answers came early
            // for belongs to the old connection.
            let mut entries = std::mem::take(&mut by_reply.entries).into_iter();
            self.replay
                .retain(|_| !entries.next().is_some_and(|e| e.answered));
            by_reply.answered = 0;
            by_reply.early = 0;
            by_reply.early_keys.clear();
        }
        let replayed = self.replay.len();
        while let Some(message) = self.replay.pop_back() {
            self.items.push_front(message);
        }
        self.replay_bytes = 0;
        self.replays_queued += replayed;
        replayed
    }

    /// Where a frame written now stands: the count of messages before it.
    pub fn position(&self) -> u64 {
        self.flushed_total + self.fed as u64
    }

    /// The server has read every message before `position`.
    pub fn confirm(&mut self, position: u64) {
        let unconfirmed = self.flushed_total - self.replay.len() as u64;
        let n = position
            .saturating_sub(unconfirmed)
            .min(self.replay.len() as u64);
        if let Some(by_reply) = &mut self.by_reply {
            // Only a message no reply can answer (no key) is the Pong's.
            if by_reply.config.key.is_some() {
                let window = by_reply.entries.iter_mut().zip(&self.replay);
                for (entry, message) in window.take(n as usize) {
                    if entry.key.is_none() && !entry.answered {
                        entry.answered = true;
                        by_reply.answered += 1;
                        self.replay_bytes -= message.len();
                        self.confirmed_total += 1;
                    }
                }
            }
            self.settle();
            return;
        }
        for message in self.replay.drain(..n as usize) {
            self.replay_bytes -= message.len();
        }
        self.confirmed_total += n;
    }

    /// A text message arrived: with `--confirm-by-reply`, whether it is a
    /// reply that confirmed a message (or will, once its flush is recorded).
    pub fn replied(&mut self, text: &str) -> bool {
        let Some(by_reply) = &mut self.by_reply else {
            return false;
        };
        if by_reply.config.reply.matches(text).is_none() {
            return false;
        }
        let index = match &by_reply.config.key {
            None => by_reply.entries.iter().position(|e| !e.answered),
            Some(jq) => {
                let Some(key) = jq.key(text) else {
                    return false;
                };
                let found = by_reply
                    .entries
                    .iter()
                    .position(|e| !e.answered && e.key.as_ref() == Some(&key));
                // Early only while a write is unrecorded: otherwise it is a
                // stray (a second answer), which must not confirm a later
                // request that reuses the key.
                if found.is_none() && self.fed > 0 {
                    if by_reply.early_keys.len() == EARLY_MAX {
                        by_reply.early_keys.pop_front();
                    }
                    by_reply.early_keys.push_back(key);
                }
                found
            }
        };
        match index {
            Some(i) => {
                by_reply.entries[i].answered = true;
                by_reply.answered += 1;
                self.replay_bytes -= self.replay[i].len();
                self.confirmed_total += 1;
                self.settle();
            }
            None if by_reply.config.key.is_none() && self.fed > 0 => {
                by_reply.early = (by_reply.early + 1).min(EARLY_MAX);
            }
            None => {}
        }
        true
    }

    /// Answered entries at the front of the window leave it.
    fn settle(&mut self) {
        let Some(by_reply) = &mut self.by_reply else {
            return;
        };
        while by_reply.entries.front().is_some_and(|e| e.answered) {
            by_reply.entries.pop_front();
            by_reply.answered -= 1;
            self.replay.pop_front();
        }
    }

    /// Messages confirmed so far, over the whole session.
    pub fn confirmed_total(&self) -> u64 {
        self.confirmed_total
    }

    /// Messages and bytes flushed but unconfirmed (the replay window).
    pub fn unconfirmed(&self) -> (usize, usize) {
        let answered = self.by_reply.as_ref().map_or(0, |b| b.answered);
        (self.replay.len() - answered, self.replay_bytes)
    }

    pub fn replay_enabled(&self) -> bool {
        self.replay_budget > 0
    }
}

fn take_one(n: &mut usize) -> bool {
    let had = *n > 0;
    *n = n.saturating_sub(1);
    had
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
        assert_eq!(outbox.flushed(None).messages, 2);
        outbox.mark_fed();
        assert_eq!(outbox.rewind(), 2);
        assert_eq!(drain_texts(&mut outbox), ["0", "1", "2", "3"]);
    }

    #[test]
    fn only_first_flushes_count_as_bytes_given_back() {
        let mut outbox = Outbox::new(10, 1024);
        for word in ["a", "bb", "ccc"] {
            outbox.push(Message::text(word));
        }
        outbox.mark_fed();
        outbox.mark_fed();
        assert_eq!(
            outbox.flushed(None),
            Flushed {
                messages: 2,
                first_time_bytes: 3
            }
        );
        // After a drop, "a" and "bb" go again: they were counted already.
        assert_eq!(outbox.rewind(), 2);
        outbox.mark_fed();
        assert_eq!(outbox.flushed(None).first_time_bytes, 0);
        assert_eq!(outbox.rewind(), 1, "a again, with bb still queued");
        for _ in 0..3 {
            outbox.mark_fed();
        }
        assert_eq!(
            outbox.flushed(None),
            Flushed {
                messages: 3,
                first_time_bytes: 3
            },
            "only ccc is new"
        );
    }

    #[test]
    fn the_window_closes_when_too_much_is_unconfirmed() {
        let mut outbox = Outbox::new(10, 10);
        for word in ["aaaa", "bbbb", "cccc"] {
            outbox.push(Message::text(word));
        }
        for _ in 0..3 {
            assert!(outbox.ready());
            outbox.mark_fed();
            outbox.flushed(None);
        }
        assert_eq!(outbox.unconfirmed(), (3, 12));
        outbox.push(Message::text("dddd"));
        assert!(
            !outbox.ready(),
            "12 unconfirmed bytes exceed the budget of 10"
        );
        outbox.confirm(2);
        assert!(outbox.ready());
    }

    #[test]
    fn a_confirmation_empties_the_window_up_to_its_position() {
        let mut outbox = Outbox::new(10, 1024);
        for word in ["a", "b", "c"] {
            outbox.push(Message::text(word));
        }
        outbox.mark_fed();
        outbox.mark_fed();
        outbox.flushed(None);
        // A ping written now would follow "a" and "b".
        let ping_at = outbox.position();
        outbox.mark_fed();
        outbox.flushed(None);
        outbox.confirm(ping_at);
        assert_eq!(outbox.unconfirmed(), (1, 1));
        outbox.confirm(ping_at);
        assert_eq!(outbox.rewind(), 1);
        assert_eq!(drain_texts(&mut outbox), ["c"]);
    }

    #[test]
    fn unflushed_messages_survive_a_rewind_in_order() {
        let mut outbox = Outbox::new(10, 0);
        for i in 0..4 {
            outbox.push(Message::text(i.to_string()));
        }
        outbox.mark_fed();
        assert_eq!(outbox.flushed(None).messages, 1);
        outbox.mark_fed();
        outbox.mark_fed();
        assert_eq!(outbox.rewind(), 0);
        assert_eq!(drain_texts(&mut outbox), ["1", "2", "3"]);
    }

    fn by_reply(key: Option<&str>) -> Outbox {
        let mut outbox = Outbox::new(100, 1 << 20);
        outbox.confirm_by_reply(ConfirmByReply {
            reply: crate::matcher::Matcher::text("ok"),
            key: key.map(|k| crate::matcher::Jq::compile(k).unwrap()),
        });
        outbox
    }

    fn send(outbox: &mut Outbox, texts: &[&str]) {
        for text in texts {
            outbox.push(Message::text(*text));
            outbox.mark_fed();
        }
        outbox.flushed(None);
    }

    #[test]
    fn in_order_replies_confirm_the_oldest_unanswered_and_pongs_nothing() {
        let mut outbox = by_reply(None);
        send(&mut outbox, &["a", "b", "c"]);
        outbox.confirm(outbox.position());
        assert_eq!(outbox.unconfirmed(), (3, 3), "a Pong confirms nothing");
        assert!(!outbox.replied("push"), "not a reply");
        assert!(outbox.replied("ok"));
        assert_eq!(outbox.unconfirmed(), (2, 2));
        assert_eq!(outbox.confirmed_total(), 1);
        assert_eq!(outbox.rewind(), 2);
        assert_eq!(drain_texts(&mut outbox), ["b", "c"]);
    }

    #[test]
    fn a_reply_before_its_flush_is_recorded_counts_once_it_is() {
        let mut outbox = by_reply(None);
        outbox.push(Message::text("a"));
        outbox.mark_fed();
        assert!(outbox.replied("ok"));
        outbox.flushed(None);
        assert_eq!(outbox.unconfirmed(), (0, 0));
    }

    #[test]
    fn a_stray_reply_confirms_nothing_sent_later() {
        let mut outbox = by_reply(Some(".id"));
        send(&mut outbox, &[r#"{"id":1}"#]);
        outbox.replied(r#"{"id":1,"ok":true}"#);
        assert!(outbox.replied(r#"{"id":1,"ok":true}"#), "a second answer");
        send(&mut outbox, &[r#"{"id":1}"#]);
        assert_eq!(outbox.unconfirmed().0, 1, "the new request is unanswered");
    }

    #[test]
    fn a_key_pairs_replies_in_any_order_and_answered_ones_are_not_resent() {
        let mut outbox = by_reply(Some(".id"));
        send(
            &mut outbox,
            &[r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#, "plain"],
        );
        assert!(outbox.replied(r#"{"ok":1,"id":2}"#));
        assert_eq!(outbox.unconfirmed().0, 3, "2 answered, behind 1");
        assert!(
            !outbox.replied(r#"{"ok":1}"#),
            "a reply without a key answers nothing"
        );
        // A Pong confirms only what no reply can answer.
        outbox.confirm(outbox.position());
        assert_eq!(outbox.unconfirmed().0, 2);
        assert_eq!(outbox.rewind(), 2);
        assert_eq!(drain_texts(&mut outbox), [r#"{"id":1}"#, r#"{"id":3}"#]);
    }

    #[test]
    fn keyed_replies_empty_the_window_once_the_oldest_is_answered() {
        let mut outbox = by_reply(Some(".id"));
        send(&mut outbox, &[r#"{"id":1}"#, r#"{"id":2}"#]);
        outbox.replied(r#"{"id":2,"ok":true}"#);
        outbox.replied(r#"{"id":1,"ok":true}"#);
        assert_eq!(outbox.unconfirmed(), (0, 0));
        assert_eq!(outbox.confirmed_total(), 2);
        assert_eq!(outbox.rewind(), 0);
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
