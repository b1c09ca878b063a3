//! The supervisor's side of the event channel.
//!
//! The supervisor never blocks on emitting an event: a frontend that is busy
//! (e.g. waiting to send us a command) must not deadlock against us. Events
//! wait in order in a backlog; only reading from the socket waits for the
//! frontend, in count and in bytes (the event credit). A frontend that has
//! dropped its [`Events`](super::Events) holds nothing up: what it would have
//! received is discarded, and its bytes are given back.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::credit::Credit;
use crate::session::{Event, Payload};

pub struct Emitter {
    tx: mpsc::Sender<Event>,
    /// Bytes of messages emitted and not yet received by the frontend.
    credit: Arc<Credit>,
    /// Events the frontend has no room for yet, in order.
    backlog: VecDeque<Event>,
}

impl Emitter {
    pub fn new(tx: mpsc::Sender<Event>, credit: Arc<Credit>) -> Emitter {
        Emitter {
            tx,
            credit,
            backlog: VecDeque::new(),
        }
    }

    /// A received message, whose bytes the frontend gives back as it takes it.
    pub fn message(&mut self, payload: Payload) {
        self.credit.take(payload.len());
        self.emit(Event::Message(payload));
    }

    /// A message written to the socket (`--json-sent`): its bytes count
    /// against the same credit as a received one's, so a frontend that falls
    /// behind pauses writing as it pauses reading.
    pub fn sent(&mut self, payload: Payload, replay: bool) {
        self.credit.take(payload.len());
        self.emit(Event::Sent { payload, replay });
    }

    /// Never blocks (see the module's doc).
    pub fn emit(&mut self, event: Event) {
        if let (Event::Delivered { count }, Some(Event::Delivered { count: queued })) =
            (&event, self.backlog.back_mut())
        {
            *queued += count;
            return;
        }
        if self.backlog.is_empty() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Closed(event)) => self.discard(&event),
                Err(mpsc::error::TrySendError::Full(event)) => self.backlog.push_back(event),
            }
        } else {
            self.backlog.push_back(event);
        }
    }

    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Waits until the channel has room for one event (at once when nobody
    /// listens any more: there is nothing to wait for).
    pub async fn room(&self) {
        let _ = self.tx.reserve().await;
    }

    /// Waits for room for one event, in count and in bytes, before reading,
    /// so a slow consumer pauses reading (TCP backpressure) instead of
    /// growing memory.
    pub async fn room_to_read(&self) {
        self.room().await;
        if !self.tx.is_closed() {
            self.credit.wait().await;
        }
    }

    /// Whether reading is paused by a slow consumer: then a missing pong may
    /// be sitting unread, and says nothing about the server.
    pub fn reader_paused(&self) -> bool {
        !self.tx.is_closed() && (self.tx.capacity() == 0 || !self.credit.has_room())
    }

    /// Whether another frame may be read (or, with `--json-sent`, another
    /// message written) now, without waiting.
    pub fn may_read(&self) -> bool {
        self.backlog.is_empty() && !self.reader_paused()
    }

    /// Hands over what the backlog holds and the channel has room for.
    pub fn send_backlog(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            match self.tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    self.backlog.push_front(event);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(event)) => {
                    self.discard(&event);
                    for event in std::mem::take(&mut self.backlog) {
                        self.discard(&event);
                    }
                    return;
                }
            }
        }
    }

    /// Hands the backlog over before the supervisor returns.
    pub async fn flush(&mut self) {
        while let Some(event) = self.backlog.pop_front() {
            if let Err(mpsc::error::SendError(event)) = self.tx.send(event).await {
                self.discard(&event);
                self.backlog.clear();
                break;
            }
        }
    }

    fn discard(&self, event: &Event) {
        if let Some(payload) = event.credited() {
            self.credit.give(payload.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emitter(capacity: usize) -> (Emitter, mpsc::Receiver<Event>, Arc<Credit>) {
        let (tx, rx) = mpsc::channel(capacity);
        let credit = Arc::new(Credit::new(1 << 20));
        (Emitter::new(tx, Arc::clone(&credit)), rx, credit)
    }

    #[test]
    fn a_full_channel_keeps_events_in_order_and_merges_deliveries() {
        let (mut emitter, mut rx, _) = emitter(1);
        emitter.emit(Event::Drained);
        emitter.emit(Event::Delivered { count: 2 });
        emitter.emit(Event::Delivered { count: 3 });
        assert!(emitter.has_backlog());
        assert!(matches!(rx.try_recv(), Ok(Event::Drained)));
        emitter.send_backlog();
        assert!(matches!(rx.try_recv(), Ok(Event::Delivered { count: 5 })));
        assert!(!emitter.has_backlog());
    }

    #[tokio::test]
    async fn a_dropped_receiver_gets_nothing_and_holds_no_credit() {
        let (mut emitter, rx, credit) = emitter(1);
        emitter.message(Payload::text("kept"));
        emitter.message(Payload::text("backlogged"));
        assert_eq!(credit.used(), 14);
        drop(rx);
        emitter.send_backlog();
        emitter.message(Payload::text("discarded"));
        assert_eq!(credit.used(), 4, "only the one left in the channel");
        assert!(!emitter.reader_paused());
        // Nothing to wait for.
        emitter.room_to_read().await;
        emitter.flush().await;
    }
}
