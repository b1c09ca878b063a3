//! The frontend's side of the supervisor: an actor handle (commands, as
//! `&self` methods) and its events (`&mut`), in the style of mini-redis.
//!
//! Every message sent takes its bytes from the send credit, which the
//! supervisor gives back once the message is written; so a sender that can
//! outpace the socket waits for room instead of growing the queue. What must
//! never wait behind the bounded command channel (an interrupt, the end of
//! input) goes out of band, through [`Shared`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::credit::Credit;
use crate::error::{Error, Result};
use crate::session::{Command, Ending, Event, Payload, Status};
use crate::template::Captured;

/// The supervisor has ended: nothing more can be sent to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

/// What the supervisor has seen of [`Shared`]'s flags and captures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen {
    pub interrupted: bool,
    pub input_ended: bool,
    pub captures: usize,
}

/// What the frontend tells the supervisor out of band, and how many messages
/// wait in the command channel.
#[derive(Default)]
pub(crate) struct Shared {
    interrupted: AtomicBool,
    input_ended: AtomicBool,
    /// Messages sent on the command channel that the supervisor has not
    /// taken yet: with the queue and the replay window, what is left.
    in_channel: AtomicUsize,
    /// How many values the smoke runner has captured: a reply waiting for one
    /// is made once it is there.
    captures: AtomicUsize,
    /// Wakes the supervisor when a flag is raised or a value captured.
    raised: Notify,
    /// What the smoke runner's steps captured, for the `{{name}}` in
    /// `--on-connect` messages and `--reply` answers the supervisor sends.
    pub(crate) captured: Captured,
}

impl Shared {
    fn raise(&self, flag: &AtomicBool) {
        if !flag.swap(true, Ordering::AcqRel) {
            self.raised.notify_waiters();
        }
    }

    pub(crate) fn interrupted(&self) -> bool {
        self.interrupted.load(Ordering::Acquire)
    }

    pub(crate) fn input_ended(&self) -> bool {
        self.input_ended.load(Ordering::Acquire)
    }

    pub(crate) fn in_channel(&self) -> usize {
        self.in_channel.load(Ordering::Acquire)
    }

    /// The supervisor took `n` messages off the channel.
    pub(crate) fn taken(&self, n: usize) {
        self.in_channel.fetch_sub(n, Ordering::AcqRel);
    }

    fn queued(&self, n: usize) {
        self.in_channel.fetch_add(n, Ordering::AcqRel);
    }

    pub(crate) fn seen(&self) -> Seen {
        Seen {
            interrupted: self.interrupted(),
            input_ended: self.input_ended(),
            captures: self.captures.load(Ordering::Acquire),
        }
    }

    fn capture(&self, name: String, value: String) {
        self.captured.set(name, value);
        self.captures.fetch_add(1, Ordering::AcqRel);
        self.raised.notify_waiters();
    }

    /// Waits until a flag that `seen` says is down goes up, or a value is
    /// captured. Registers before checking, so a change in between is not
    /// missed.
    pub(crate) async fn changed(&self, seen: Seen) {
        loop {
            let notified = self.raised.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.seen() != seen {
                return;
            }
            notified.await;
        }
    }
}

/// The command side of a running supervisor.
pub struct Handle {
    commands: mpsc::Sender<Command>,
    send_credit: Arc<Credit>,
    shared: Arc<Shared>,
    task: JoinHandle<Result<Ending>>,
}

/// Room for one command, and the send credit to go with it.
pub struct Permit<'a> {
    permit: mpsc::Permit<'a, Command>,
    credit: &'a Credit,
    shared: &'a Shared,
}

/// For a thread (stdin): sends without a runtime, waiting for credit and a
/// slot by blocking the thread.
#[derive(Clone)]
pub struct BlockingSender {
    commands: mpsc::Sender<Command>,
    credit: Arc<Credit>,
    shared: Arc<Shared>,
}

/// The supervisor's events. Receiving a message gives its bytes back to the
/// supervisor, which reads from the socket only while few enough are waiting.
pub struct Events {
    rx: mpsc::Receiver<Event>,
    credit: Arc<Credit>,
}

impl Handle {
    pub(super) fn new(
        commands: mpsc::Sender<Command>,
        send_credit: Arc<Credit>,
        shared: Arc<Shared>,
        task: JoinHandle<Result<Ending>>,
    ) -> Handle {
        Handle {
            commands,
            send_credit,
            shared,
            task,
        }
    }

    /// Waits for send credit (bytes) and a command slot. Cancel-safe: nothing
    /// is taken until the permit is used.
    pub async fn reserve(&self) -> std::result::Result<Permit<'_>, Gone> {
        self.send_credit.wait().await;
        let permit = self.commands.reserve().await.map_err(|_| Gone)?;
        Ok(Permit {
            permit,
            credit: &self.send_credit,
            shared: &self.shared,
        })
    }

    /// Keeps a value a step captured: later send steps, and the supervisor's
    /// `--on-connect` messages and `--reply` answers, fill `{{name}}` with it.
    pub fn capture(&self, name: String, value: String) {
        self.shared.capture(name, value);
    }

    /// The values captured so far.
    pub fn captured(&self) -> &Captured {
        &self.shared.captured
    }

    pub async fn send(&self, payload: Payload) -> std::result::Result<(), Gone> {
        self.reserve().await?.send(payload);
        Ok(())
    }

    pub async fn send_batch(&self, batch: Vec<Payload>) -> std::result::Result<(), Gone> {
        if batch.is_empty() {
            return Ok(());
        }
        self.reserve().await?.send_batch(batch);
        Ok(())
    }

    pub async fn ping(&self, payload: Bytes) -> std::result::Result<(), Gone> {
        self.command(Command::Ping(payload)).await
    }

    /// A confirming close: what is queued goes out, and the Close waits until
    /// the server has confirmed it (see `Command::Close`).
    pub async fn close(&self, code: u16, reason: String) -> std::result::Result<(), Gone> {
        self.command(Command::Close { code, reason }).await
    }

    /// Ends the session soon, out of band: never blocks, idempotent. What the
    /// server has not confirmed is counted as unsent; a connected session
    /// sends Close 1000 "interrupted" and waits at most CLOSE_TIMEOUT.
    pub fn interrupt(&self) {
        self.shared.raise(&self.shared.interrupted);
    }

    /// Drops the current connection (or skips the backoff wait) and dials again.
    pub async fn reconnect(&self) -> std::result::Result<(), Gone> {
        self.command(Command::Reconnect).await
    }

    /// [`Event::Drained`] follows once everything queued so far is flushed.
    pub async fn drain(&self) -> std::result::Result<(), Gone> {
        self.command(Command::Drain).await
    }

    /// No more messages will be sent: once the server has confirmed all, a
    /// lost connection is not dialled again. Out of band, so it never waits
    /// behind a full command channel.
    pub fn end_of_input(&self) -> std::result::Result<(), Gone> {
        if self.commands.is_closed() {
            return Err(Gone);
        }
        self.shared.raise(&self.shared.input_ended);
        Ok(())
    }

    /// A snapshot of the session; `None` once the supervisor has ended.
    pub async fn status(&self) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        self.command(Command::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    pub fn blocking_sender(&self) -> BlockingSender {
        BlockingSender {
            commands: self.commands.clone(),
            credit: Arc::clone(&self.send_credit),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits for the supervisor to end, after dropping the command side (a
    /// supervisor still running takes that as the end of the commands).
    pub async fn finish(self) -> Result<Ending> {
        let Handle { commands, task, .. } = self;
        drop(commands);
        task.await
            .map_err(|err| Error::Runtime(format!("the connection task failed: {err}")))?
    }

    async fn command(&self, command: Command) -> std::result::Result<(), Gone> {
        self.commands.send(command).await.map_err(|_| Gone)
    }

    /// Bytes taken by senders and not yet given back (tests).
    #[doc(hidden)]
    pub fn send_credit_used(&self) -> usize {
        self.send_credit.used()
    }
}

impl Permit<'_> {
    pub fn send(self, payload: Payload) {
        self.credit.take(payload.len());
        self.shared.queued(1);
        self.permit.send(Command::Send(payload));
    }

    pub fn send_batch(self, batch: Vec<Payload>) {
        self.credit.take(batch.iter().map(Payload::len).sum());
        self.shared.queued(batch.len());
        self.permit.send(Command::SendMany(batch));
    }
}

impl BlockingSender {
    /// Waits (blocking the thread) for credit and a slot, then queues the
    /// batch in order. Its records leave `not_queued` as they are counted
    /// as queued, never after: a session ending meanwhile sees each record
    /// in one of the two counts, not in both (the supervisor may confirm a
    /// batch before this thread runs again) nor in neither.
    pub fn send_batch(
        &self,
        batch: Vec<Payload>,
        not_queued: &NotQueued,
    ) -> std::result::Result<(), Gone> {
        if batch.is_empty() {
            return Ok(());
        }
        self.credit.wait_blocking();
        let bytes = batch.iter().map(Payload::len).sum();
        self.credit.take(bytes);
        self.send(batch, bytes, not_queued)
    }

    /// Whether `pending` more bytes fit in the send credit now.
    pub(crate) fn has_room(&self, pending: usize) -> bool {
        self.credit.has_room_for(pending)
    }

    /// Blocks the thread until some send credit is free again.
    pub(crate) fn wait_for_room(&self) {
        self.credit.wait_blocking();
    }

    /// Asks for [`Event::Drained`], as [`Handle::drain`].
    pub(crate) fn drain(&self) -> std::result::Result<(), Gone> {
        self.commands
            .blocking_send(Command::Drain)
            .map_err(|_| Gone)
    }

    /// A sender on a channel of its own, with the credit it takes from.
    #[cfg(test)]
    pub(crate) fn for_tests(
        capacity: usize,
        budget: usize,
    ) -> (BlockingSender, mpsc::Receiver<Command>, Arc<Credit>) {
        let (commands, rx) = mpsc::channel(capacity);
        let credit = Arc::new(Credit::new(budget));
        let sender = BlockingSender {
            commands,
            credit: Arc::clone(&credit),
            shared: Arc::default(),
        };
        (sender, rx, credit)
    }

    fn send(
        &self,
        batch: Vec<Payload>,
        bytes: usize,
        not_queued: &NotQueued,
    ) -> std::result::Result<(), Gone> {
        let n = batch.len();
        self.shared.queued(n);
        not_queued.handed(n);
        let command = if n == 1 {
            Command::Send(batch.into_iter().next().expect("one"))
        } else {
            Command::SendMany(batch)
        };
        self.commands.blocking_send(command).map_err(|_| {
            // Back to not queued before leaving the queued count.
            not_queued.read(n);
            self.shared.taken(n);
            self.credit.give(bytes);
            Gone
        })
    }
}

/// Records a producer thread (stdin, an `--exec` program's output) has read
/// and not (yet) handed to the supervisor: what the session loses of its
/// input if it ends now. Up to date whenever the reader waits, so it can be
/// read without waiting for a reader blocked on its input.
#[derive(Clone, Debug, Default)]
pub struct NotQueued(Arc<AtomicUsize>);

impl NotQueued {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// `n` more records were read.
    pub fn read(&self, n: usize) {
        self.0.fetch_add(n, Ordering::AcqRel);
    }

    fn handed(&self, n: usize) {
        self.0.fetch_sub(n, Ordering::AcqRel);
    }
}

impl Events {
    pub(super) fn new(rx: mpsc::Receiver<Event>, credit: Arc<Credit>) -> Events {
        Events { rx, credit }
    }

    pub async fn next(&mut self) -> Option<Event> {
        let event = self.rx.recv().await;
        self.received(event.as_ref());
        event
    }

    pub fn try_next(&mut self) -> Option<Event> {
        let event = self.rx.try_recv().ok();
        self.received(event.as_ref());
        event
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }

    fn received(&self, event: Option<&Event>) {
        if let Some(payload) = event.and_then(Event::credited) {
            self.credit.give(payload.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A session that ends while the stdin thread hands a batch over must
    /// see each record once: as not queued, or as queued (in the channel),
    /// never in both and never in neither.
    #[test]
    fn a_record_leaves_not_queued_only_once_it_counts_as_queued() {
        let (sender, rx, _credit) = BlockingSender::for_tests(1, 1 << 20);
        let shared = Arc::clone(&sender.shared);
        let not_queued = NotQueued::default();
        not_queued.read(2);
        sender
            .send_batch(vec![Payload::text("one")], &not_queued)
            .unwrap();
        assert_eq!((not_queued.get(), shared.in_channel()), (1, 1));

        // The channel is full: the next hand-over blocks, its record counted
        // as queued already.
        let blocked = std::thread::spawn({
            let not_queued = not_queued.clone();
            move || sender.send_batch(vec![Payload::text("two")], &not_queued)
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while shared.in_channel() < 2 {
            assert!(Instant::now() < deadline, "the hand-over never started");
            std::thread::yield_now();
        }
        assert_eq!(not_queued.get(), 0);

        // Nobody takes it: it is not queued again, and no longer queued.
        drop(rx);
        assert!(blocked.join().unwrap().is_err());
        assert_eq!((not_queued.get(), shared.in_channel()), (1, 1));
    }
}
