//! The session driver: the one event loop every frontend runs in.
//!
//! What all modes share lives here, once: signals (the first ends the session
//! within the close timeout, a second at once), the stdin reader and the end
//! of input, stdout and its failures, taking events in bursts, `--count`,
//! `--linger`, and turning how the session ended into an exit code. A
//! [`Mode`] (pipe, echo, smoke, the REPL) only says what a message or an
//! event means to it, and what else it waits for.
//!
//! The loop never waits on anything but its `select!`: stdout, the command
//! queue and the signals each get a branch, so a stalled reader, a server
//! that stopped reading or an endless stdin cannot keep a signal from being
//! seen.

use std::collections::VecDeque;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::{Instant, sleep_until};

use crate::config::ClientConfig;
use crate::error::{Error, ExitCode, Result};
use crate::io::input::{InputEnd, NotQueued};
use crate::io::output::{Stdout, Stopped};
use crate::io::signals::{Received, Signals};
use crate::render::{Pieces, eprint_line};
use crate::report::Reporter;
use crate::report::json::{Step, Summary};
use crate::session::{Ending, Event, Payload, Unsent};
use crate::supervisor::{Events, Handle};

/// Output is handed to the writer in chunks of about this size at most.
pub(crate) const CHUNK: usize = 64 * 1024;
/// Events handled per pass of the loop, so signals and timers get their turn.
const EVENT_BURST: usize = 256;
/// After the first signal, how long the session may take to close before
/// tether leaves anyway: the supervisor's own bound (1.7 s), and a little
/// for its answer to arrive.
const LEAVE_AFTER_SIGNAL: Duration = Duration::from_millis(1850);
/// After the first signal, tether has exited by then: the last output is
/// written only while the reader takes it.
const EXIT_AFTER_SIGNAL: Duration = Duration::from_secs(2);
/// Messages the mode sends of its own (`--echo`'s answers) waiting to be
/// handed to the supervisor. Past this many (or bytes), events wait too, so a
/// server that floods us meets backpressure.
const OUTGOING_BACKLOG: usize = 4096;
const OUTGOING_BACKLOG_BYTES: usize = 1 << 20;
/// Outgoing messages handed over per command.
const OUTGOING_BATCH: usize = 64;

/// What a frontend does with a session. The driver calls these from its
/// loop; none of them should wait long (the REPL's terminal and a smoke
/// step's send are short waits).
pub(crate) trait Mode {
    /// What the mode waits for besides events: typed input, a step's timer.
    type Wake;

    /// Whether a second signal may end the process from the signal watcher
    /// (not for the REPL, which restores the terminal first).
    fn forced_exit(&self) -> bool {
        true
    }

    /// Whether a reader closing stdout ends the session (a quiet success).
    fn reader_gone_ends(&self) -> bool {
        true
    }

    /// How long what is rendered may take to be written once the session is
    /// over, when no signal bounds it; unbounded by default (stdout is the
    /// user's). `--exec`'s program may have stopped reading.
    fn output_bound(&self) -> Option<Duration> {
        None
    }

    /// Before the loop: the mode's first steps.
    async fn start(&mut self, _s: &mut Session<'_>) {}

    /// A received message, within `--count`.
    async fn message(&mut self, s: &mut Session<'_>, payload: Payload);

    /// Any other event (the driver has taken what it needs from it). By
    /// default, reported as a status line (or a `--json` event).
    async fn event(&mut self, s: &mut Session<'_>, event: Event) {
        s.report(&event);
    }

    /// The `--count`th message arrived. By default, the session closes.
    async fn count_reached(&mut self, s: &mut Session<'_>) {
        s.close_for_count();
    }

    /// Input has ended and been delivered, and the connection then stayed
    /// idle for `--linger`. By default, the session closes.
    async fn lingered(&mut self, s: &mut Session<'_>) {
        s.close(1000, "");
    }

    /// stdin has ended; [`Session::take_input_error`] says whether on bad
    /// input. By default the session goes on (to linger, or `--count`) and
    /// the error decides the exit code at the end.
    async fn input_ended(&mut self, _s: &mut Session<'_>) {}

    /// The first signal: the driver has interrupted the session already.
    async fn interrupted(&mut self, _s: &mut Session<'_>) {}

    /// Resolves with what the mode waits for; never, by default.
    async fn wake(&mut self) -> Self::Wake {
        std::future::pending().await
    }

    async fn on_wake(&mut self, _s: &mut Session<'_>, _wake: Self::Wake) {}

    /// The session is over: the exit status and the last words. By default
    /// the common judgement ([`Session::outcome`]) and, with `--json`, the
    /// `error` event.
    async fn end(self, s: &mut Session<'_>, over: Over) -> Result<ExitCode>
    where
        Self: Sized,
    {
        let outcome = s.outcome(over);
        s.report_error(&outcome);
        outcome
    }
}

/// How the loop ended.
pub(crate) enum Over {
    /// The supervisor ended the session.
    Ended(Result<Ending>),
    /// The session was left before it ended (a second signal, the deadline
    /// after a signal, a mode's own deadline).
    Left,
    /// The reader of stdout has gone (`| head -1`): it has all it wanted.
    ReaderGone,
}

/// Where the session's input stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Input {
    /// Nothing is read from stdin (the REPL, `--echo`, a smoke test's steps).
    None,
    Reading,
    /// Stdin has ended; `delivered` once the supervisor flushed its records.
    Done {
        delivered: bool,
    },
}

/// The driver's state, which modes see and act through.
pub(crate) struct Session<'a> {
    pub config: &'a ClientConfig,
    pub reporter: Reporter,
    /// Until the session is over.
    handle: Option<Handle>,
    events: Events,
    /// stdout, for every mode but the REPL.
    pub out: Option<Output>,
    input: Input,
    stdin_end: Option<oneshot::Receiver<InputEnd>>,
    not_queued: NotQueued,
    input_error: Option<Error>,
    /// The drain the stdin thread asks for at its end has been reported.
    stdin_drained: bool,
    /// Messages counted against `--count`.
    pub received: u64,
    pub connected: bool,
    linger_until: Option<Instant>,
    outgoing: Outgoing,
    /// The close asked for and not yet handed to the supervisor (after the
    /// mode's own messages).
    close: Option<(u16, String)>,
    closing: bool,
    /// When the first signal came.
    pub interrupted: Option<Instant>,
    /// Set by a second signal (or the mode): leave now.
    forced: bool,
    /// The loop ends here even if the session has not.
    leave_by: Option<Instant>,
    /// stdout failed (not EPIPE): the session is ended and this is its error.
    output_error: Option<String>,
    reader_gone: bool,
    /// What an interrupted session left behind, for the `--json` error.
    unsent_at_end: Option<Unsent>,
    /// The close came from `--count`.
    count_closed: bool,
}

impl<'a> Session<'a> {
    /// A session for `config` over a spawned supervisor. `stdout` for every
    /// mode but the REPL; `read_stdin` for pipe mode and smoke tests fed on
    /// stdin.
    pub fn new(
        config: &'a ClientConfig,
        supervisor: (Handle, Events),
        stdout: bool,
        read_stdin: bool,
    ) -> Session<'a> {
        let stdin = read_stdin.then(|| Box::new(std::io::stdin()) as Box<dyn Read + Send>);
        Session::with_streams(config, supervisor, stdout.then(Stdout::spawn), stdin)
    }

    /// A session whose records come from `input` and whose output goes to
    /// `stdout`, in place of the process's own (`--exec`: the program's
    /// pipes).
    pub fn with_streams(
        config: &'a ClientConfig,
        (handle, events): (Handle, Events),
        stdout: Option<Stdout>,
        input: Option<Box<dyn Read + Send>>,
    ) -> Session<'a> {
        let read_stdin = input.is_some();
        let (stdin_end, not_queued) = match input {
            Some(input) => {
                let (end, not_queued) =
                    crate::io::input::spawn(config.input, input, handle.blocking_sender());
                (Some(end), not_queued)
            }
            None => (None, NotQueued::default()),
        };
        Session {
            config,
            reporter: Reporter::new(config.output),
            handle: Some(handle),
            events,
            out: stdout.map(Output::new),
            input: if read_stdin {
                Input::Reading
            } else {
                Input::None
            },
            stdin_end,
            not_queued,
            input_error: None,
            stdin_drained: false,
            received: 0,
            connected: false,
            linger_until: None,
            outgoing: Outgoing::default(),
            close: None,
            closing: false,
            interrupted: None,
            forced: false,
            leave_by: None,
            output_error: None,
            reader_gone: false,
            unsent_at_end: None,
            count_closed: false,
        }
    }

    /// Runs the session to its end with `mode` and says how to exit.
    pub async fn run<M: Mode>(mut self, mut mode: M) -> Result<ExitCode> {
        let signals = if mode.forced_exit() {
            Signals::new()
        } else {
            Signals::handled_by_frontend()
        };
        let mut signals = signals?;
        let reader_gone_ends = mode.reader_gone_ends();
        let output_bound = mode.output_bound();
        mode.start(&mut self).await;
        let over = loop {
            if self.forced {
                break Over::Left;
            }
            if self.reader_gone {
                break Over::ReaderGone;
            }
            let out_room = self.out.as_ref().is_none_or(Output::has_room);
            let take_events = out_room && !self.outgoing.full();
            let no_event_waiting = self.events.is_empty();
            let sending = self.outgoing.pending() || self.close.is_some();
            let handle = self.handle.as_ref().expect("held until the end");
            tokio::select! {
                biased;
                received = signals.recv() => self.signal(&mut mode, received).await,
                () = sleep_until(self.leave_by.unwrap_or_else(Instant::now)), if self.leave_by.is_some() => {
                    break Over::Left;
                }
                worked = async { self.out.as_mut().expect("guarded").work(no_event_waiting).await }, if self.out.as_ref().is_some_and(|o| !o.discarding) => {
                    match worked {
                        Err(stopped) => self.stdout_stopped(stopped, reader_gone_ends),
                        // Output behind a slow reader is not idleness: replies
                        // still being printed keep the linger from ending the
                        // session (the next message waits behind them). Output
                        // a ready reader takes at once is no reason to wait:
                        // periodic events (heartbeat pongs with --json) would
                        // otherwise keep the session open for ever.
                        Ok(Moved::Behind) if self.linger_until.is_some() => self.start_linger(),
                        Ok(_) => {}
                    }
                }
                event = self.events.next(), if take_events => {
                    let Some(event) = event else {
                        let handle = self.handle.take().expect("held until the end");
                        break Over::Ended(handle.finish().await);
                    };
                    self.burst(&mut mode, event).await;
                }
                () = send_next(handle, &mut self.outgoing, &mut self.close), if sending => {}
                end = async { self.stdin_end.as_mut().expect("guarded").await }, if self.stdin_end.is_some() => {
                    self.stdin_ended(end.unwrap_or(Ok(0)));
                    mode.input_ended(&mut self).await;
                }
                () = sleep_until(self.linger_until.unwrap_or_else(Instant::now)), if self.linger_until.is_some() && out_room => {
                    self.linger_until = None;
                    mode.lingered(&mut self).await;
                }
                wake = mode.wake() => mode.on_wake(&mut self, wake).await,
            }
        };
        // What was shown must be written before the verdict: a smoke test
        // whose log hit a full disk has not passed. After a signal, only as
        // long as the reader takes it.
        let by = self
            .interrupted
            .map(|at| (at + EXIT_AFTER_SIGNAL - Duration::from_millis(50)).max(Instant::now()))
            .or_else(|| output_bound.map(|bound| Instant::now() + bound));
        if let Some(out) = &mut self.out
            && let Some(stopped) = out.flush(by).await
        {
            self.stdout_stopped(stopped, reader_gone_ends);
        }
        let result = mode.end(&mut self, over).await;
        // Whatever is rendered goes out; after a signal, only as long as
        // the reader takes it.
        if let Some(out) = self.out.take() {
            let by = self
                .interrupted
                .map(|at| (at + EXIT_AFTER_SIGNAL).max(Instant::now()));
            out.finish(by).await;
        }
        result
    }

    /// Handles `first` and whatever else is already waiting: a burst of
    /// messages costs one pass of the loop and one write.
    async fn burst<M: Mode>(&mut self, mode: &mut M, first: Event) {
        let mut next = Some(first);
        for _ in 0..EVENT_BURST {
            let Some(event) = next.take().or_else(|| self.events.try_next()) else {
                break;
            };
            self.event(mode, event).await;
            if self.forced || !self.out.as_ref().is_none_or(Output::has_room) {
                break;
            }
        }
    }

    async fn event<M: Mode>(&mut self, mode: &mut M, event: Event) {
        match event {
            Event::Message(payload) => {
                let count = self.config.end.count;
                if count.is_some_and(|n| self.received >= n) {
                    return;
                }
                self.received += 1;
                if self.linger_until.is_some() {
                    self.start_linger();
                }
                mode.message(self, payload).await;
                if count == Some(self.received) {
                    mode.count_reached(self).await;
                }
            }
            // The stdin thread asks for this drain at its end, so it may
            // arrive before the thread's end is seen.
            Event::Drained if self.input != Input::None => {
                self.stdin_drained = true;
                if self.input == (Input::Done { delivered: false }) {
                    self.input = Input::Done { delivered: true };
                    self.start_linger();
                }
                mode.event(self, Event::Drained).await;
            }
            event => {
                match &event {
                    Event::Connected { .. } => {
                        self.connected = true;
                        self.start_linger();
                    }
                    Event::Disconnected { .. } | Event::Reconnecting { .. } => {
                        self.connected = false;
                        self.linger_until = None;
                    }
                    _ => {}
                }
                mode.event(self, event).await;
            }
        }
    }

    /// `--linger` runs once input is delivered, while connected, and not
    /// with `--count` (which waits for its messages instead).
    fn start_linger(&mut self) {
        let input_delivered = self.input == Input::Done { delivered: true };
        self.linger_until = match self.config.end.linger {
            Some(linger)
                if input_delivered
                    && self.connected
                    && !self.closing
                    && self.config.end.count.is_none() =>
            {
                Some(Instant::now() + linger)
            }
            _ => None,
        };
    }

    fn stdin_ended(&mut self, end: InputEnd) {
        self.stdin_end = None;
        self.input = Input::Done {
            delivered: self.stdin_drained,
        };
        self.start_linger();
        if let Err(err) = end {
            self.input_error = Some(err);
        }
        // Nothing more will be sent: once nothing is left undelivered, a
        // lost connection ends the session instead of reconnecting. Not
        // with --keep-open, which asks to stay, nor with --count, which
        // still waits for messages.
        if self.config.end.linger.is_some()
            && self.config.end.count.is_none()
            && !self.closing
            && let Some(handle) = &self.handle
        {
            // Out of band: it never waits. Gone means the session is ending.
            let _ = handle.end_of_input();
        }
    }

    async fn signal<M: Mode>(&mut self, mode: &mut M, received: Received) {
        if self.interrupted.is_some() {
            // A SIGHUP after an interrupt (the REPL's terminal hung up, then
            // the signal came) never forces the exit.
            if received == Received::Interrupt {
                self.forced = true;
            }
            return;
        }
        self.interrupt();
        mode.interrupted(self).await;
    }

    /// Ends the session as a signal does: the supervisor closes without
    /// waiting for confirmations, and the loop leaves within the close
    /// timeout whatever happens. A second call forces the exit.
    pub fn interrupt(&mut self) {
        if self.interrupted.is_some() {
            self.forced = true;
            return;
        }
        self.interrupted = Some(Instant::now());
        self.end_now();
    }

    /// Ends the session without waiting for confirmations (a signal, or a
    /// stdout that cannot be written), leaving within the close timeout.
    fn end_now(&mut self) {
        self.closing = true;
        self.linger_until = None;
        // Nothing may follow the Close, and the supervisor may never take
        // what waits (it may wait for credit a stalled server never gives).
        self.outgoing.clear();
        self.close = None;
        if let Some(handle) = &self.handle {
            handle.interrupt();
        }
        self.leave_by(Instant::now() + LEAVE_AFTER_SIGNAL);
    }

    /// Asks for a close that waits until the server confirmed what it was
    /// sent, once (and not after an interrupt).
    pub fn close(&mut self, code: u16, reason: &str) {
        if !self.closing {
            self.closing = true;
            self.linger_until = None;
            self.close = Some((code, reason.to_owned()));
        }
    }

    /// The supervisor's handle, for a mode's own commands.
    pub fn handle(&self) -> &Handle {
        self.handle
            .as_ref()
            .expect("held until the session is over")
    }

    /// The close `--count` asks for. What stdin still gives after it is not
    /// sent, by the user's own limit: that is no failure, only a note.
    pub fn close_for_count(&mut self) {
        if !self.closing {
            self.count_closed = true;
        }
        self.close(1000, "");
    }

    pub fn closing(&self) -> bool {
        self.closing
    }

    /// The loop ends at `at` even if the session has not.
    pub fn leave_by(&mut self, at: Instant) {
        self.leave_by = Some(self.leave_by.map_or(at, |t| t.min(at)));
    }

    /// Queues a message of the mode's own (an echo). It goes out through the
    /// loop, so the loop never waits on a full command queue.
    pub fn send_later(&mut self, payload: Payload) {
        if !self.closing {
            self.outgoing.push(payload);
        }
    }

    /// stdin's records not yet handed to the supervisor.
    pub fn not_queued(&self) -> usize {
        self.not_queued.get()
    }

    /// A mode with no stdin has sent all it will (a smoke test's steps are
    /// done): `--linger` may run from here, as after stdin's end.
    pub fn input_finished(&mut self) {
        if self.input == Input::None {
            self.input = Input::Done { delivered: true };
            self.start_linger();
        }
    }

    /// Input has ended (stdin's EOF, or its error).
    pub fn input_ended(&self) -> bool {
        matches!(self.input, Input::Done { .. })
    }

    pub fn take_input_error(&mut self) -> Option<Error> {
        self.input_error.take()
    }

    /// The failure that stdout's writer stopped on, as an error.
    pub fn output_error(&self) -> Option<Error> {
        self.output_error
            .as_ref()
            .map(|detail| Error::Output(format!("cannot write to stdout: {detail}")))
    }

    fn stdout_stopped(&mut self, stopped: Stopped, reader_gone_ends: bool) {
        match stopped {
            Stopped::ReaderGone => {
                if let Some(out) = &mut self.out {
                    out.discard();
                }
                self.reader_gone = reader_gone_ends;
            }
            Stopped::Failed(detail) => {
                // Nothing more can be shown: end the session now, and fail.
                self.output_error = Some(detail);
                if let Some(out) = &mut self.out {
                    out.discard();
                }
                if self.interrupted.is_none() {
                    self.end_now();
                }
            }
        }
    }

    /// Reports a status event: a JSON line on stdout with `--json`, else a
    /// line on stderr.
    pub fn report(&mut self, event: &Event) {
        self.reporter
            .status(self.out.as_mut().map(|o| &mut o.buf), event);
    }

    /// With `--json`, a failure's `error` event is the last line on stdout.
    pub fn report_error(&mut self, outcome: &Result<ExitCode>) {
        if let Err(err) = outcome {
            let out = self.out.as_mut().map(|o| &mut o.buf);
            self.reporter.error(out, err, self.unsent_at_end);
        }
    }

    /// A smoke-test step done or failed.
    pub fn report_step(&mut self, step: &Step<'_>) {
        self.reporter
            .step(self.out.as_mut().map(|o| &mut o.buf), step);
    }

    /// A smoke test's verdict.
    pub fn report_summary(&mut self, summary: &Summary<'_>) {
        let out = self.out.as_mut().map(|o| &mut o.buf);
        self.reporter.summary(out, summary);
    }

    /// A received message on stdout, as the reporter formats it.
    pub fn print_message(&mut self, payload: &Payload) {
        if let Some(out) = &mut self.out {
            out.message(&self.reporter, payload);
        }
    }

    /// The common judgement of a session that delivers stdin or typed lines
    /// (pipe, echo, the REPL): every message confirmed, input read cleanly,
    /// `--count` met, stdout written; and after a signal, 130 with a word on
    /// what was left behind.
    pub fn outcome(&mut self, over: Over) -> Result<ExitCode> {
        let result = match over {
            Over::ReaderGone => return Ok(ExitCode::Success),
            Over::Left => {
                if let Some(err) = self.output_error() {
                    return Err(err);
                }
                if self.interrupted.is_some() && !self.forced {
                    eprint_line(
                        "warning: left before the server answered the Close; \
                         what it has of the last messages is not known",
                    );
                }
                return Err(Error::Interrupted);
            }
            Over::Ended(result) => result,
        };
        let outcome = super::delivered(result, self.not_queued());
        if let Some(err) = self.output_error() {
            return Err(err);
        }
        if self.interrupted.is_some() {
            // Asked to leave: say what was left behind, and leave as asked.
            return match outcome {
                Err(Error::Undelivered(unsent)) | Err(Error::GaveUp { unsent, .. }) => {
                    self.warn_unsent(unsent);
                    Err(Error::Interrupted)
                }
                Err(err @ (Error::ServerClosed { .. } | Error::Protocol(_))) => Err(err),
                _ => Err(Error::Interrupted),
            };
        }
        let ending = match outcome {
            // Past --count, the rest of stdin is not sent by the user's own
            // limit (a clean close means all before it was delivered).
            Err(Error::Undelivered(unsent)) if self.count_closed => {
                let n = unsent.total();
                self.report(&Event::Warning(format!(
                    "--count {} reached: {n} message{} from stdin {} not sent",
                    self.received,
                    if n == 1 { "" } else { "s" },
                    if n == 1 { "was" } else { "were" },
                )));
                return Ok(ExitCode::Success);
            }
            outcome => outcome?,
        };
        if let Some(err) = self.take_input_error() {
            return Err(err);
        }
        self.count_met(&ending)?;
        Ok(ExitCode::Success)
    }

    /// A session that ended before `--count` messages arrived failed.
    pub fn count_met(&self, ending: &Ending) -> Result<()> {
        match self.config.end.count {
            Some(n) if self.received < n => Err(Error::Expectation(format!(
                "--count {n} not reached: {} of {n} message{} arrived before {}",
                self.received,
                if n == 1 { "" } else { "s" },
                ended_how(ending),
            ))),
            _ => Ok(()),
        }
    }

    pub fn warn_unsent(&mut self, unsent: Unsent) {
        self.unsent_at_end = Some(unsent);
        self.report(&Event::Warning(unsent.to_string()));
    }
}

/// Hands the next outgoing batch, or once they are out the close, to the
/// supervisor; cancel-safe: nothing leaves its queue before the supervisor
/// has it.
async fn send_next(handle: &Handle, outgoing: &mut Outgoing, close: &mut Option<(u16, String)>) {
    if outgoing.pending() {
        match handle.reserve().await {
            Ok(permit) => permit.send_batch(outgoing.batch()),
            // The supervisor is gone; its end is reported as events end.
            Err(_) => outgoing.clear(),
        }
        return;
    }
    if let Some((code, reason)) = close {
        // Sent, or the supervisor is gone (its end is reported as events end).
        let _ = handle.close(*code, reason.clone()).await;
        *close = None;
    }
}

/// How a session that did not fail ended, for a diagnostic.
pub(crate) fn ended_how(ending: &Ending) -> String {
    let code = match ending.code {
        Some(code) if ending.reason.is_empty() => format!(" (code {code})"),
        Some(code) => format!(" (code {code} {:?})", ending.reason),
        None => String::new(),
    };
    if ending.by_server {
        format!("the server closed the connection{code}")
    } else {
        format!("the connection was closed{code}")
    }
}

/// What a step of [`Output::work`] found.
enum Moved {
    /// The writer had written everything before: the reader keeps up.
    Taken,
    /// The writer was still busy (or a large message has just been written):
    /// the reader is slow, and what is printing is not yet printed.
    Behind,
}

/// stdout as the loop feeds it: rendered bytes gather in `buf`, and go to the
/// writer through the loop's own branch, so the loop never waits for a slow
/// reader and keeps seeing signals.
pub(crate) struct Output {
    stdout: Stdout,
    pub buf: Vec<u8>,
    /// Chunks waiting for the writer, in order: a large message's own bytes
    /// or its rendered pieces, with what was rendered before it.
    queue: VecDeque<Bytes>,
    /// The rest of a large message rendered as base64 or hex, rendered a
    /// piece at a time as the writer takes them: never its whole form at once.
    pieces: Option<Pieces>,
    /// After a large message: take no event until the writer has written it,
    /// so memory stays at about one message being printed.
    wait_drained: bool,
    discarding: bool,
}

impl Output {
    fn new(stdout: Stdout) -> Output {
        Output {
            stdout,
            buf: Vec::with_capacity(CHUNK),
            queue: VecDeque::new(),
            pieces: None,
            wait_drained: false,
            discarding: false,
        }
    }

    /// Whether more may be rendered now.
    pub(crate) fn has_room(&self) -> bool {
        self.discarding
            || (self.queue.is_empty()
                && self.pieces.is_none()
                && !self.wait_drained
                && self.buf.len() < CHUNK)
    }

    /// Moves output one step towards the writer, when there is something
    /// for it: the buffer once no event is waiting (or it is full), and any
    /// queued chunk. Resolves with whether the output is behind its reader,
    /// or why the writer stopped. Cancel-safe.
    async fn work(&mut self, no_event_waiting: bool) -> Result<Moved, Stopped> {
        self.refill();
        if self.queue.is_empty()
            && !self.buf.is_empty()
            && (no_event_waiting || self.buf.len() >= CHUNK)
        {
            self.queue
                .push_back(Bytes::from(std::mem::take(&mut self.buf)));
        }
        let stdout = &self.stdout;
        let queue = &mut self.queue;
        let wait_drained = &mut self.wait_drained;
        let step = async {
            if !queue.is_empty() {
                if let Some(slot) = stdout.reserve().await {
                    // Still writing the chunk before this one: the reader is slow.
                    let moved = if stdout.idle() {
                        Moved::Taken
                    } else {
                        Moved::Behind
                    };
                    slot.write(queue.pop_front().expect("not empty"));
                    return moved;
                }
                // The writer stopped: `stopped` below says why.
                std::future::pending::<()>().await;
            }
            if *wait_drained {
                stdout.drained().await;
                *wait_drained = false;
                return Moved::Behind;
            }
            std::future::pending().await
        };
        tokio::select! {
            biased;
            stopped = stdout.stopped() => Err(stopped),
            moved = step => Ok(moved),
        }
    }

    /// Renders a message; a large one goes without a rendered copy of its
    /// own, and the next event waits until it is written.
    pub fn message(&mut self, reporter: &Reporter, payload: &Payload) {
        if self.discarding {
            return;
        }
        if payload.len() < CHUNK {
            reporter.message(&mut self.buf, payload);
            return;
        }
        self.push_buf();
        if let Some(bytes) = reporter.verbatim(payload) {
            self.queue.push_back(bytes);
            self.buf.extend(reporter.separator());
        } else if let Some(pieces) = reporter.message_pieces(payload, CHUNK) {
            self.pieces = Some(pieces);
        } else {
            reporter.message(&mut self.buf, payload);
            self.push_buf();
        }
        self.wait_drained = true;
    }

    /// The next piece of a large message, once the last one is handed over.
    fn refill(&mut self) {
        if self.queue.is_empty()
            && let Some(pieces) = &mut self.pieces
        {
            match pieces.next() {
                Some(piece) => self.queue.push_back(Bytes::from(piece)),
                None => self.pieces = None,
            }
        }
    }

    fn push_buf(&mut self) {
        if !self.buf.is_empty() {
            self.queue
                .push_back(Bytes::from(std::mem::take(&mut self.buf)));
        }
    }

    /// The writer is gone: nothing more is kept for it.
    fn discard(&mut self) {
        self.discarding = true;
        self.buf = Vec::new();
        self.queue.clear();
        self.pieces = None;
        self.wait_drained = false;
    }

    /// Hands everything over, in order: the queue, the rest of a large
    /// message's pieces, then the buffer (rendered after them).
    async fn write_all(&mut self) {
        loop {
            self.refill();
            let Some(chunk) = self.queue.pop_front() else {
                break;
            };
            self.stdout.write(chunk).await;
        }
        self.push_buf();
        while let Some(chunk) = self.queue.pop_front() {
            self.stdout.write(chunk).await;
        }
    }

    /// Writes out what is rendered so far and waits until it is written (or
    /// `by`); says why the writer stopped, if it did.
    async fn flush(&mut self, by: Option<Instant>) -> Option<Stopped> {
        if !self.discarding {
            let write_all = async {
                self.write_all().await;
                self.stdout.drained().await;
            };
            match by {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, write_all).await;
                }
                None => write_all.await,
            }
        }
        self.stdout.stopped_now()
    }

    /// Writes out what is left, then stops the writer (see [`Stdout::finish`]).
    pub(crate) async fn finish(mut self, by: Option<Instant>) {
        let write_all = self.write_all();
        match by {
            Some(at) => {
                if tokio::time::timeout_at(at, write_all).await.is_err() {
                    return;
                }
            }
            None => write_all.await,
        }
        self.stdout.finish(by).await;
    }
}

/// Messages the mode sends of its own, waiting for the supervisor.
#[derive(Default)]
struct Outgoing {
    messages: VecDeque<Payload>,
    bytes: usize,
}

impl Outgoing {
    fn push(&mut self, payload: Payload) {
        self.bytes += payload.len();
        self.messages.push_back(payload);
    }

    fn full(&self) -> bool {
        self.messages.len() >= OUTGOING_BACKLOG || self.bytes >= OUTGOING_BACKLOG_BYTES
    }

    fn pending(&self) -> bool {
        !self.messages.is_empty()
    }

    fn batch(&mut self) -> Vec<Payload> {
        let n = self.messages.len().min(OUTGOING_BATCH);
        let batch: Vec<Payload> = self.messages.drain(..n).collect();
        self.bytes -= batch.iter().map(Payload::len).sum::<usize>();
        batch
    }

    fn clear(&mut self) {
        self.messages.clear();
        self.bytes = 0;
    }
}
