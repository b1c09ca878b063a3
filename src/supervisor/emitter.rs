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

    /// Whether another frame may be read now, without waiting.
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
        if let Event::Message(payload) = event {
            self.credit.give(payload.len());
        }
    }
}
