//! Smoke-test mode: run the steps of a [`SmokeConfig`] against a live
//! connection and end with an exit code, and one diagnostic, that a CI log
//! can explain.
//!
//! Steps run in order. Received messages wait in an inbox and `expect` steps
//! consume them in arrival order, so a reply that comes before its
//! expectation is reached still counts; a message that matches nothing is
//! skipped (or, with `--strict`, fails the run). The verdict is reached as
//! soon as it is known: the last step done (pass, then a clean close), the
//! deadline (exit 6), or the end of what the server can still send: it
//! closed, or `--count` was reached (exit 7). Received messages are printed
//! as in pipe mode, so the CI log shows what the server said.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::pipe::report;
use crate::config::{ClientConfig, SmokeConfig, Verbosity};
use crate::error::{Error, ExitCode, Result};
use crate::input::{self, InputEnd, NotQueued};
use crate::output::Stdout;
use crate::render::{self, Renderer, SmokeSummary, StepReport, eprint_line};
use crate::script::{Action, Expectation, Step};
use crate::session::{Command, Ending, Event, Payload, RttStats};
use crate::signals::Signals;
use crate::supervisor::Handle;

/// Output is handed to the writer in chunks of about this size at most.
const CHUNK: usize = 64 * 1024;
/// How many received messages a failure diagnostic shows.
const RECENT: usize = 5;
/// Once the deadline has passed, how long the closing handshake may take
/// before the process leaves anyway.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);

pub async fn run(
    config: &ClientConfig,
    smoke: &SmokeConfig,
    handle: Handle,
    started: std::time::Instant,
) -> Result<ExitCode> {
    let Handle {
        commands,
        send_credit,
        mut events,
        task,
    } = handle;
    let started = Instant::from_std(started);
    let deadline = smoke.timeout.map(|t| started + t);
    let stdout = Stdout::spawn();
    let mut signals = Signals::new()?;
    let (mut input_end, not_queued) = if smoke.read_stdin {
        let (end, not_queued) = input::spawn(
            config.input,
            std::io::stdin(),
            commands.clone(),
            send_credit,
        );
        (Some(end), not_queued)
    } else {
        (None, NotQueued::default())
    };
    let mut run = Runner::new(config, smoke, commands.clone(), started);
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    run.advance(&mut buf).await;

    let mut close_requested = false;
    // After a verdict: when to stop waiting for the closing handshake.
    let mut leave_by: Option<Instant> = None;
    let mut interrupted = false;
    let session_over = loop {
        if run.verdict.is_some() && !close_requested {
            close_requested = true;
            if !run.close_sent {
                let reason = if interrupted { "interrupted" } else { "" };
                let _ = commands
                    .send(Command::Close {
                        code: 1000,
                        reason: reason.into(),
                        confirm: !interrupted,
                    })
                    .await;
            }
            leave_by = deadline.map(|d| d.max(Instant::now() + DEADLINE_GRACE));
        }
        let timer = run.timer();
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break true };
                run.on_event(event, &mut buf).await;
                if buf.len() >= CHUNK || events.is_empty() {
                    stdout.write(std::mem::take(&mut buf)).await;
                }
            }
            end = async { input_end.as_mut().expect("guarded").await }, if input_end.is_some() => {
                input_end = None;
                if let Ok(Err(err)) = end as std::result::Result<InputEnd, _> {
                    run.decide(Verdict::Fail(err));
                }
            }
            () = sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                run.on_timer(&mut buf).await;
            }
            () = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() && run.verdict.is_none() => {
                run.deadline_reached(&mut buf);
            }
            () = sleep_until(leave_by.unwrap_or_else(Instant::now)), if leave_by.is_some() => {
                break false;
            }
            _ = signals.recv() => {
                if interrupted {
                    stdout.write(std::mem::take(&mut buf)).await;
                    stdout.finish();
                    return Err(Error::Interrupted);
                }
                interrupted = true;
                run.decide(Verdict::Fail(Error::Interrupted));
                if close_requested || run.close_sent {
                    // A Close that waits for confirmations may be under way:
                    // this one does not wait.
                    let _ = commands.try_send(Command::Close {
                        code: 1000,
                        reason: "interrupted".into(),
                        confirm: false,
                    });
                }
            }
        }
    };
    drop(commands);

    let outcome = if session_over {
        let result = task
            .await
            .map_err(|err| Error::Runtime(format!("the connection task failed: {err}")))
            .and_then(|result| result);
        run.session_ended(result, not_queued.get(), &mut buf)
    } else {
        // Left during the closing handshake: a failure stands, but a pass
        // is one only once the server has what it was sent, and that is not
        // known yet (the close waits for its confirmation).
        match run.verdict_outcome() {
            Ok(_) => Err(Error::Timeout(format!(
                "--timeout {} ran out before the server confirmed the messages it was sent \
                 and answered the Close",
                humantime::format_duration(run.smoke.timeout.unwrap_or_default())
            ))),
            failed => failed,
        }
    };
    run.summarize(&outcome, &mut buf);
    stdout.write(buf).await;
    stdout.finish();
    outcome
}

enum Verdict {
    Pass,
    Fail(Error),
}

/// What the current step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The message a `send` step queued to be written.
    Delivery,
    /// A message that matches.
    Message,
    Until(Instant),
    /// A connection to send a ping on.
    Connection,
    Pong,
    /// The end of the connection (`close`, `expect-close`).
    SessionEnd,
}

/// A received message as expectations see it.
struct Seen {
    number: u64,
    binary: bool,
    form: String,
}

/// What a passed step reports besides its duration.
#[derive(Default)]
struct Detail {
    matched: Option<String>,
    rtt: Option<Duration>,
    code: Option<u16>,
}

struct Runner<'a> {
    config: &'a ClientConfig,
    smoke: &'a SmokeConfig,
    renderer: Renderer,
    commands: mpsc::Sender<Command>,
    started: Instant,
    cursor: usize,
    pending: Option<Pending>,
    step_started: Instant,
    steps_passed: usize,
    /// Messages not yet examined by an expectation.
    inbox: VecDeque<Seen>,
    /// The last few messages, for diagnostics.
    recent: VecDeque<Seen>,
    /// Messages are kept for expectations only while one is still to come.
    last_expect: Option<usize>,
    received: u64,
    sent: u64,
    rtt: RttStats,
    connected: bool,
    connected_at: Option<Instant>,
    drained: bool,
    pong: Option<Duration>,
    input_drained: bool,
    linger_until: Option<Instant>,
    close_sent: bool,
    verdict: Option<Verdict>,
    verdict_at: Option<Instant>,
    failed_step: Option<usize>,
}

impl<'a> Runner<'a> {
    fn new(
        config: &'a ClientConfig,
        smoke: &'a SmokeConfig,
        commands: mpsc::Sender<Command>,
        started: Instant,
    ) -> Runner<'a> {
        Runner {
            config,
            smoke,
            renderer: Renderer::new(config.output),
            commands,
            started,
            cursor: 0,
            pending: None,
            step_started: started,
            steps_passed: 0,
            inbox: VecDeque::new(),
            recent: VecDeque::with_capacity(RECENT),
            last_expect: smoke
                .steps
                .iter()
                .rposition(|s| matches!(s.action, Action::Expect(_))),
            received: 0,
            sent: 0,
            rtt: RttStats::default(),
            connected: false,
            connected_at: None,
            drained: false,
            pong: None,
            input_drained: false,
            linger_until: None,
            close_sent: false,
            verdict: None,
            verdict_at: None,
            failed_step: None,
        }
    }

    fn steps(&self) -> &'a [Step] {
        &self.smoke.steps
    }

    /// Runs steps until one has to wait, or the run is decided.
    async fn advance(&mut self, buf: &mut Vec<u8>) {
        while self.verdict.is_none() {
            let Some(step) = self.steps().get(self.cursor) else {
                self.all_steps_done();
                return;
            };
            let pending = match self.pending {
                Some(pending) => pending,
                None => {
                    self.step_started = Instant::now();
                    let pending = self.start(step).await;
                    self.pending = Some(pending);
                    pending
                }
            };
            match pending {
                Pending::Delivery if std::mem::take(&mut self.drained) => {
                    self.pass(buf, Detail::default());
                }
                Pending::Message => {
                    let Action::Expect(expectation) = &step.action else {
                        unreachable!("only expect steps wait for messages")
                    };
                    match self.examine(expectation) {
                        Some(Ok(seen)) => self.pass(
                            buf,
                            Detail {
                                matched: Some(seen.form),
                                ..Detail::default()
                            },
                        ),
                        Some(Err(seen)) => {
                            let cause = format!(
                                "message #{} did not match it (--strict): {}",
                                seen.number,
                                render::excerpt(&seen.form, 120)
                            );
                            self.fail_expectation(buf, &cause);
                        }
                        None => return,
                    }
                }
                Pending::Until(at) if Instant::now() >= at => self.pass(buf, Detail::default()),
                Pending::Connection if self.connected => {
                    if let Action::Ping(payload) = &step.action {
                        let _ = self.commands.send(Command::Ping(payload.clone())).await;
                    }
                    self.pending = Some(Pending::Pong);
                }
                Pending::Pong if self.pong.is_some() => {
                    let rtt = self.pong.take();
                    self.pass(
                        buf,
                        Detail {
                            rtt,
                            ..Detail::default()
                        },
                    );
                }
                _ => return,
            }
        }
    }

    /// Starts a step and says what it waits for.
    async fn start(&mut self, step: &Step) -> Pending {
        match &step.action {
            Action::Send(payload) => {
                self.drained = false;
                let _ = self.commands.send(Command::Send(payload.clone())).await;
                let _ = self.commands.send(Command::Drain).await;
                Pending::Delivery
            }
            Action::Expect(_) => Pending::Message,
            Action::Wait(duration) => Pending::Until(Instant::now() + *duration),
            Action::Ping(_) => {
                self.pong = None;
                Pending::Connection
            }
            Action::Close { code, reason } => {
                self.close_sent = true;
                let _ = self
                    .commands
                    .send(Command::Close {
                        code: *code,
                        reason: reason.clone(),
                        confirm: true,
                    })
                    .await;
                Pending::SessionEnd
            }
            Action::ExpectClose(_) => Pending::SessionEnd,
        }
    }

    /// The next unexamined message that matches; with `--strict`, the first
    /// one that does not is an error.
    fn examine(&mut self, expectation: &Expectation) -> Option<std::result::Result<Seen, Seen>> {
        while let Some(seen) = self.inbox.pop_front() {
            let eligible = seen.binary || !expectation.binary_only;
            if eligible && expectation.pattern.is_match(&seen.form) {
                return Some(Ok(seen));
            }
            if self.smoke.strict {
                return Some(Err(seen));
            }
        }
        None
    }

    fn all_steps_done(&mut self) {
        if self.smoke.has_checks() {
            self.decide(Verdict::Pass);
            return;
        }
        // Nothing to check: end as pipe mode does, once input is delivered
        // and the connection has been quiet for --linger.
        let input_done = !self.smoke.read_stdin || self.input_drained;
        if input_done
            && self.connected
            && self.linger_until.is_none()
            && let Some(linger) = self.config.end.linger
        {
            self.linger_until = Some(Instant::now() + linger);
        }
    }

    async fn on_event(&mut self, event: Event, buf: &mut Vec<u8>) {
        match &event {
            Event::Message(payload) => return self.on_message(payload, buf).await,
            Event::Drained if self.smoke.read_stdin => self.input_drained = true,
            Event::Drained => self.drained = true,
            Event::Delivered { count } => self.sent += *count as u64,
            Event::Pong { rtt, heartbeat } => {
                self.rtt.record(*rtt);
                if !heartbeat {
                    self.pong = Some(*rtt);
                }
            }
            Event::Connected { .. } => {
                self.connected = true;
                self.connected_at.get_or_insert_with(Instant::now);
            }
            Event::Disconnected { .. } | Event::Reconnecting { .. } => {
                self.connected = false;
                self.linger_until = None;
                // A ping lost with its connection goes out again on the next.
                if self.pending == Some(Pending::Pong) {
                    self.pending = Some(Pending::Connection);
                }
            }
            _ => {}
        }
        report(&self.renderer, buf, &event);
        self.advance(buf).await;
    }

    async fn on_message(&mut self, payload: &Payload, buf: &mut Vec<u8>) {
        let count = self.config.end.count;
        if count.is_some_and(|n| self.received >= n) {
            return;
        }
        self.received += 1;
        self.renderer.message(buf, payload);
        let seen = Seen {
            number: self.received,
            binary: matches!(payload, Payload::Binary(_)),
            form: render::match_form(payload, self.smoke.binary_match).into_owned(),
        };
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        if self.verdict.is_none() && self.last_expect.is_some_and(|last| self.cursor <= last) {
            self.inbox.push_back(Seen {
                number: seen.number,
                binary: seen.binary,
                form: seen.form.clone(),
            });
        }
        self.recent.push_back(seen);
        if let (Some(_), Some(linger)) = (self.linger_until, self.config.end.linger) {
            self.linger_until = Some(Instant::now() + linger);
        }
        self.advance(buf).await;
        if count == Some(self.received) && self.verdict.is_none() {
            if self.cursor < self.steps().len() {
                let cause = format!("--count {} was reached", self.received);
                self.fail_expectation(buf, &cause);
            } else {
                self.decide(Verdict::Pass);
            }
        }
    }

    /// When the next timed thing happens: a `wait` step's end or --linger.
    fn timer(&self) -> Option<Instant> {
        let wait = match self.pending {
            Some(Pending::Until(at)) => Some(at),
            _ => None,
        };
        let linger = self.linger_until.filter(|_| self.verdict.is_none());
        match (wait, linger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn on_timer(&mut self, buf: &mut Vec<u8>) {
        if self
            .linger_until
            .is_some_and(|at| Instant::now() >= at && self.verdict.is_none())
        {
            self.decide(Verdict::Pass);
            return;
        }
        self.advance(buf).await;
    }

    fn deadline_reached(&mut self, buf: &mut Vec<u8>) {
        let timeout = humantime::format_duration(self.smoke.timeout.unwrap_or_default());
        let what = match self.steps().get(self.cursor) {
            _ if self.connected_at.is_none() => format!(
                "before the connection to {} was made",
                self.config.session.dial.endpoint
            ),
            Some(step) => format!(
                "after waiting {} for {}",
                render::format_delay(self.step_started.elapsed()),
                self.label(step)
            ),
            None if self.steps().is_empty() => "while the connection was still open".into(),
            None => "with every step done, while the connection was still open".into(),
        };
        let text = format!("--timeout {timeout} ran out {what}{}", self.tail());
        let reason = text.lines().next().unwrap_or_default().to_owned();
        self.report_failed_step(buf, &reason);
        self.decide(Verdict::Fail(Error::Timeout(text)));
    }

    fn pass(&mut self, buf: &mut Vec<u8>, detail: Detail) {
        self.report_current(buf, &detail, None);
        self.steps_passed += 1;
        self.cursor += 1;
        self.pending = None;
    }

    /// Fails the current step with exit code 7.
    fn fail_expectation(&mut self, buf: &mut Vec<u8>, cause: &str) {
        let step = &self.steps()[self.cursor];
        let text = format!(
            "expectation not met: {}: {cause}, after waiting {}{}",
            self.label(step),
            render::format_delay(self.step_started.elapsed()),
            self.tail()
        );
        self.report_failed_step(buf, cause);
        self.decide(Verdict::Fail(Error::Expectation(text)));
    }

    fn report_failed_step(&mut self, buf: &mut Vec<u8>, reason: &str) {
        if self.cursor < self.steps().len() {
            self.failed_step = Some(self.cursor + 1);
            self.report_current(buf, &Detail::default(), Some(reason));
        }
    }

    /// Reports the current step: passed when `failure` is `None`.
    fn report_current(&self, buf: &mut Vec<u8>, detail: &Detail, failure: Option<&str>) {
        let step = &self.steps()[self.cursor];
        self.report_step(
            buf,
            &StepReport {
                number: self.cursor + 1,
                total: self.steps().len(),
                line: step.line,
                action: step.action.keyword(),
                step: &step.text,
                passed: failure.is_none(),
                duration: self.step_started.elapsed(),
                matched: detail.matched.as_deref(),
                rtt: detail.rtt,
                code: detail.code,
                reason: failure,
            },
        );
    }

    fn report_step(&self, buf: &mut Vec<u8>, step: &StepReport<'_>) {
        if self.renderer.json() {
            self.renderer.json_step(buf, step);
        } else if self.config.output.verbosity >= Verbosity::Debug {
            eprint_line(&render::step_line(step));
        }
    }

    fn decide(&mut self, verdict: Verdict) {
        if self.verdict.is_none() {
            self.verdict = Some(verdict);
            self.verdict_at = Some(Instant::now());
        }
    }

    /// How diagnostics name a step: the flag, or the script's file and line.
    fn label(&self, step: &Step) -> String {
        match (&self.smoke.script, step.line) {
            (Some(script), Some(line)) => format!("{script}:{line} ({})", step.text),
            _ => step.text.clone(),
        }
    }

    fn tail(&self) -> String {
        render::received_tail(
            self.received,
            self.recent
                .iter()
                .map(|s| (s.number, s.binary, s.form.as_str())),
        )
    }

    /// Judges the steps the end of the connection completes or dooms.
    fn session_ended(
        &mut self,
        result: Result<Ending>,
        not_queued: usize,
        buf: &mut Vec<u8>,
    ) -> Result<ExitCode> {
        if self.verdict.is_some() {
            let outcome = self.verdict_outcome();
            // A pass is one only if what the steps sent got there.
            if outcome.is_ok()
                && let Ok(ending) = &result
                && let Some(unsent) = super::undelivered(ending, not_queued)
            {
                return Err(Error::Undelivered(unsent));
            }
            if outcome.is_ok()
                && let Err(err @ Error::GaveUp { unsent, .. }) = result
                && unsent.total() + not_queued > 0
            {
                return Err(err);
            }
            return outcome;
        }
        let server_code = match &result {
            Ok(ending) => ending.code,
            Err(Error::ServerClosed { code, .. }) => Some(*code),
            Err(Error::GaveUp { source, .. }) => match source.as_ref() {
                Error::ServerClosed { code, .. } => Some(*code),
                _ => None,
            },
            Err(_) => None,
        };
        while self.cursor < self.steps().len() {
            let step = &self.steps()[self.cursor];
            match (&step.action, &result) {
                (Action::Close { .. }, Ok(ending)) if !ending.by_server && self.close_sent => {
                    self.pass(
                        buf,
                        Detail {
                            code: ending.code,
                            ..Detail::default()
                        },
                    );
                }
                (Action::ExpectClose(want), _) => {
                    if self.pending.is_none() {
                        self.step_started = Instant::now();
                    }
                    match (want, server_code) {
                        (Some(want), Some(got)) if *want != got => {
                            let cause = format!("the server closed with code {got}, not {want}");
                            self.fail_expectation(buf, &cause);
                        }
                        (_, Some(got)) => self.pass(
                            buf,
                            Detail {
                                code: Some(got),
                                ..Detail::default()
                            },
                        ),
                        (_, None) => {
                            let cause = match &result {
                                Ok(ending) if ending.reason.is_empty() => {
                                    "the connection ended without a Close frame from the server"
                                        .to_owned()
                                }
                                Ok(ending) => format!(
                                    "the connection ended without a Close frame from the server ({})",
                                    ending.reason
                                ),
                                Err(err) => format!("the connection ended: {err}"),
                            };
                            self.fail_expectation(buf, &cause);
                        }
                    }
                    return self.verdict_outcome();
                }
                _ => break,
            }
        }
        if self.cursor == self.steps().len() {
            if self.smoke.has_checks() {
                return Ok(ExitCode::Success);
            }
            // Nothing was checked: the session's own outcome, as in pipe mode.
            return super::delivered(result, not_queued).map(|_| ExitCode::Success);
        }
        // A step was still waiting and the connection is gone.
        let cause = match &result {
            Ok(ending) if ending.by_server => {
                format!("the server closed the connection{}", close_suffix(ending))
            }
            Ok(ending) => format!("the connection was closed{}", close_suffix(ending)),
            Err(Error::ServerClosed { code, reason }) => format!(
                "the server closed the connection (code {code}{})",
                quoted_reason(reason)
            ),
            Err(err) => {
                // Not the server's answer but a failure of its own (connect,
                // TLS, lost connection): keep its exit code, and say where the
                // run stopped if it got anywhere.
                if self.connected_at.is_some() {
                    let step = &self.steps()[self.cursor];
                    eprint_line(&format!(
                        "the smoke test stopped at {}, after waiting {}{}",
                        self.label(step),
                        render::format_delay(self.step_started.elapsed()),
                        self.tail()
                    ));
                }
                let reason = err.to_string();
                self.report_failed_step(buf, &reason);
                self.verdict_at = Some(Instant::now());
                return Err(result.expect_err("matched an error"));
            }
        };
        self.fail_expectation(buf, &cause);
        self.verdict_outcome()
    }

    fn verdict_outcome(&mut self) -> Result<ExitCode> {
        match self.verdict.take() {
            Some(Verdict::Pass) | None => Ok(ExitCode::Success),
            Some(Verdict::Fail(err)) => Err(err),
        }
    }

    /// The `--json` summary, or the one-line success note on stderr.
    fn summarize(&self, outcome: &Result<ExitCode>, buf: &mut Vec<u8>) {
        let ended = self.verdict_at.unwrap_or_else(Instant::now);
        let duration = ended.saturating_duration_since(self.started);
        if self.renderer.json() {
            let first_line = outcome.as_ref().err().map(|err| {
                err.to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
            let error = match (outcome, &first_line) {
                (Err(err), Some(line)) => Some((err.kind(), line.as_str())),
                _ => None,
            };
            self.renderer.json_summary(
                buf,
                &SmokeSummary {
                    passed: outcome.is_ok(),
                    exit_code: match outcome {
                        Ok(code) => *code as u8,
                        Err(err) => err.exit_code() as u8,
                    },
                    error,
                    steps: self.steps().len(),
                    steps_passed: self.steps_passed,
                    failed_step: self.failed_step,
                    duration,
                    connect: self
                        .connected_at
                        .map(|at| at.saturating_duration_since(self.started)),
                    sent: self.sent,
                    received: self.received,
                    rtt: self.rtt,
                },
            );
        } else if outcome.is_ok()
            && !self.steps().is_empty()
            && self.config.output.verbosity > Verbosity::Quiet
        {
            let n = self.steps().len();
            eprint_line(&format!(
                "smoke test passed: {n} step{} in {}",
                if n == 1 { "" } else { "s" },
                render::format_delay(duration)
            ));
        }
    }
}

fn close_suffix(ending: &Ending) -> String {
    match ending.code {
        Some(code) => format!(" (code {code}{})", quoted_reason(&ending.reason)),
        None if ending.reason.is_empty() => String::new(),
        None => format!(" ({})", ending.reason),
    }
}

/// A close reason in quotes, escaped once (Debug quoting escapes controls,
/// quotes and backslashes; a reason is at most 123 bytes, so it is not cut).
fn quoted_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" {reason:?}")
    }
}
