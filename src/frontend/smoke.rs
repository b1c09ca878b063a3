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

use tokio::time::{Instant, sleep_until};

use super::session::{Mode, Over, Session};
use crate::config::{ClientConfig, SmokeConfig, Verbosity};
use crate::error::{Error, ExitCode, Result};
use crate::render::{self, Renderer, SmokeSummary, StepReport, eprint_line};
use crate::script::{Action, Expectation, Step};
use crate::session::{Ending, Event, Payload, RttStats};

/// How many received messages a failure diagnostic shows.
const RECENT: usize = 5;
/// Once the deadline has passed, how long the closing handshake may take
/// before the process leaves anyway.
const DEADLINE_GRACE: Duration = Duration::from_millis(250);
/// The deadline of a smoke test run without `--timeout`: no smoke test
/// waits for ever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The smoke test as a mode of the session driver.
pub(crate) struct Smoke<'a> {
    run: Runner<'a>,
    /// Once the verdict is in: whether its close was asked for.
    close_requested: bool,
}

impl<'a> Smoke<'a> {
    pub fn new(
        config: &'a ClientConfig,
        smoke: &'a SmokeConfig,
        started: std::time::Instant,
    ) -> Self {
        Smoke {
            run: Runner::new(config, smoke, Instant::from_std(started)),
            close_requested: false,
        }
    }

    /// After anything that may have decided the run: close, and leave by the
    /// deadline (or shortly after it) if the close takes longer.
    fn settle(&mut self, s: &mut Session<'_>) {
        if self.run.verdict.is_some() && !self.close_requested {
            self.close_requested = true;
            s.close(1000, "");
            s.leave_by(self.run.deadline.max(Instant::now() + DEADLINE_GRACE));
        }
    }
}

/// What the smoke test waits for besides events.
pub(crate) enum Wake {
    Deadline,
    Timer,
}

impl Mode for Smoke<'_> {
    type Wake = Wake;

    fn reader_gone_ends(&self) -> bool {
        // The verdict is the point, not the log: a reader that has seen
        // enough (`| head`) does not decide it.
        false
    }

    async fn start(&mut self, s: &mut Session<'_>) {
        self.run.advance(s).await;
        self.settle(s);
    }

    async fn message(&mut self, s: &mut Session<'_>, payload: Payload) {
        self.run.on_message(s, &payload).await;
        self.settle(s);
    }

    async fn event(&mut self, s: &mut Session<'_>, event: Event) {
        self.run.on_event(s, event).await;
        self.settle(s);
    }

    async fn count_reached(&mut self, s: &mut Session<'_>) {
        if self.run.verdict.is_none() {
            if self.run.cursor < self.run.steps().len() {
                let cause = format!("--count {} was reached", s.received);
                self.run.fail_expectation(s, &cause);
            } else {
                self.run.decide(Verdict::Pass);
            }
        }
        self.settle(s);
    }

    async fn lingered(&mut self, s: &mut Session<'_>) {
        // Nothing to check, input delivered, the connection quiet: done.
        if self.run.cursor == self.run.steps().len() {
            self.run.decide(Verdict::Pass);
        }
        self.settle(s);
    }

    async fn input_ended(&mut self, s: &mut Session<'_>) {
        // Bad bytes on stdin fail the run at once.
        if let Some(err) = s.take_input_error() {
            self.run.decide(Verdict::Fail(err));
            self.settle(s);
        }
    }

    async fn interrupted(&mut self, s: &mut Session<'_>) {
        self.run.interrupted(s);
    }

    async fn wake(&mut self) -> Wake {
        let deadline = self.run.deadline;
        let timer = self.run.timer();
        tokio::select! {
            () = sleep_until(deadline), if self.run.verdict.is_none() => Wake::Deadline,
            () = sleep_until(timer.unwrap_or(deadline)), if timer.is_some() => Wake::Timer,
            else => std::future::pending().await,
        }
    }

    async fn on_wake(&mut self, s: &mut Session<'_>, wake: Wake) {
        match wake {
            Wake::Deadline => self.run.deadline_reached(s),
            Wake::Timer => self.run.advance(s).await,
        }
        self.settle(s);
    }

    async fn end(mut self, s: &mut Session<'_>, over: Over) -> Result<ExitCode> {
        let run = &mut self.run;
        let outcome = match over {
            Over::Ended(result) => run.session_ended(s, result),
            Over::Left if s.interrupted.is_some() => Err(Error::Interrupted),
            // Left during the closing handshake: a failure stands, but a pass
            // is one only once the server has what it was sent, and that is
            // not known yet (the close waits for its confirmation).
            Over::Left | Over::ReaderGone => match run.verdict_outcome() {
                Ok(_) => Err(Error::Timeout(format!(
                    "{} ran out before the server confirmed the messages it was sent \
                     and answered the Close",
                    run.timeout_flag()
                ))),
                failed => failed,
            },
        };
        // A smoke test whose log could not be written does not pass.
        let outcome = match (outcome, s.output_error()) {
            (Ok(_), Some(err)) => Err(err),
            (outcome, _) => outcome,
        };
        run.summarize(s, &outcome);
        outcome
    }
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
    started: Instant,
    /// `--timeout`, or the default.
    timeout: Duration,
    deadline: Instant,
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
    close_sent: bool,
    verdict: Option<Verdict>,
    verdict_at: Option<Instant>,
    failed_step: Option<usize>,
}

impl<'a> Runner<'a> {
    fn new(config: &'a ClientConfig, smoke: &'a SmokeConfig, started: Instant) -> Runner<'a> {
        let timeout = smoke.timeout.unwrap_or(DEFAULT_TIMEOUT);
        Runner {
            config,
            smoke,
            renderer: Renderer::new(config.output),
            started,
            timeout,
            deadline: started + timeout,
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
            close_sent: false,
            verdict: None,
            verdict_at: None,
            failed_step: None,
        }
    }

    fn steps(&self) -> &'a [Step] {
        &self.smoke.steps
    }

    /// How diagnostics name the deadline.
    fn timeout_flag(&self) -> String {
        let timeout = humantime::format_duration(self.timeout);
        if self.smoke.timeout.is_some() {
            format!("--timeout {timeout}")
        } else {
            format!("--timeout {timeout} (the default)")
        }
    }

    /// Runs steps until one has to wait, or the run is decided.
    async fn advance(&mut self, s: &mut Session<'_>) {
        while self.verdict.is_none() {
            let Some(step) = self.steps().get(self.cursor) else {
                self.all_steps_done(s);
                return;
            };
            let pending = match self.pending {
                Some(pending) => pending,
                None => {
                    self.step_started = Instant::now();
                    let pending = self.start(s, step).await;
                    self.pending = Some(pending);
                    pending
                }
            };
            match pending {
                Pending::Delivery if std::mem::take(&mut self.drained) => {
                    self.pass(s, Detail::default());
                }
                Pending::Message => {
                    let Action::Expect(expectation) = &step.action else {
                        unreachable!("only expect steps wait for messages")
                    };
                    match self.examine(expectation) {
                        Some(Ok(seen)) => self.pass(
                            s,
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
                            self.fail_expectation(s, &cause);
                        }
                        None => return,
                    }
                }
                Pending::Until(at) if Instant::now() >= at => self.pass(s, Detail::default()),
                Pending::Connection if self.connected => {
                    if let Action::Ping(payload) = &step.action {
                        let _ = s.handle().ping(payload.clone()).await;
                    }
                    self.pending = Some(Pending::Pong);
                }
                Pending::Pong if self.pong.is_some() => {
                    let rtt = self.pong.take();
                    self.pass(
                        s,
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
    async fn start(&mut self, s: &mut Session<'_>, step: &Step) -> Pending {
        match &step.action {
            Action::Send(payload) => {
                self.drained = false;
                let _ = s.handle().send(payload.clone()).await;
                let _ = s.handle().drain().await;
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
                s.close(*code, reason);
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

    fn all_steps_done(&mut self, s: &mut Session<'_>) {
        // `--count N` means N: the run waits for them (the deadline bounds it).
        if self.config.end.count.is_some_and(|n| s.received < n) {
            return;
        }
        if self.smoke.has_checks() {
            self.decide(Verdict::Pass);
            return;
        }
        // Nothing to check: end as pipe mode does, once input is delivered
        // and the connection has been quiet for --linger (the driver's).
        if !self.smoke.read_stdin {
            s.input_finished();
        }
    }

    async fn on_event(&mut self, s: &mut Session<'_>, event: Event) {
        match &event {
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
                // A ping lost with its connection goes out again on the next.
                if self.pending == Some(Pending::Pong) {
                    self.pending = Some(Pending::Connection);
                }
            }
            _ => {}
        }
        s.report(&event);
        self.advance(s).await;
    }

    async fn on_message(&mut self, s: &mut Session<'_>, payload: &Payload) {
        self.received = s.received;
        s.print_message(payload);
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
        self.advance(s).await;
    }

    /// When a `wait` step ends.
    fn timer(&self) -> Option<Instant> {
        match self.pending {
            Some(Pending::Until(at)) if self.verdict.is_none() => Some(at),
            _ => None,
        }
    }

    /// Where the run stands, for a diagnostic: the step it waited on.
    fn waiting_on(&self) -> String {
        match self.steps().get(self.cursor) {
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
            None => match self.config.end.count {
                Some(n) if self.received < n => format!(
                    "with every step done, waiting for --count {n} ({} of {n} messages arrived)",
                    self.received
                ),
                _ => "with every step done, while the connection was still open".into(),
            },
        }
    }

    fn deadline_reached(&mut self, s: &mut Session<'_>) {
        let text = format!(
            "{} ran out {}{}",
            self.timeout_flag(),
            self.waiting_on(),
            self.tail()
        );
        let reason = text.lines().next().unwrap_or_default().to_owned();
        self.report_failed_step(s, &reason);
        self.decide(Verdict::Fail(Error::Timeout(text)));
    }

    /// A signal ended the run: it fails, with the diagnostic a failure has
    /// (the step it waited on, what arrived), unless it was decided already.
    fn interrupted(&mut self, s: &mut Session<'_>) {
        if self.verdict.is_some() {
            return;
        }
        let text = format!("interrupted {}{}", self.waiting_on(), self.tail());
        let reason = text.lines().next().unwrap_or_default().to_owned();
        self.report_failed_step(s, &reason);
        eprint_line(&format!("the smoke test was {text}"));
        self.decide(Verdict::Fail(Error::Interrupted));
    }

    fn pass(&mut self, s: &mut Session<'_>, detail: Detail) {
        self.report_current(s, &detail, None);
        self.steps_passed += 1;
        self.cursor += 1;
        self.pending = None;
    }

    /// Fails the current step with exit code 7.
    fn fail_expectation(&mut self, s: &mut Session<'_>, cause: &str) {
        let step = &self.steps()[self.cursor];
        let text = format!(
            "expectation not met: {}: {cause}, after waiting {}{}",
            self.label(step),
            render::format_delay(self.step_started.elapsed()),
            self.tail()
        );
        self.report_failed_step(s, cause);
        self.decide(Verdict::Fail(Error::Expectation(text)));
    }

    fn report_failed_step(&mut self, s: &mut Session<'_>, reason: &str) {
        if self.cursor < self.steps().len() {
            self.failed_step = Some(self.cursor + 1);
            self.report_current(s, &Detail::default(), Some(reason));
        }
    }

    /// Reports the current step: passed when `failure` is `None`.
    fn report_current(&self, s: &mut Session<'_>, detail: &Detail, failure: Option<&str>) {
        let step = &self.steps()[self.cursor];
        self.report_step(
            s,
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

    fn report_step(&self, s: &mut Session<'_>, step: &StepReport<'_>) {
        if self.renderer.json() {
            self.renderer.json_step(s.buf(), step);
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
    fn session_ended(&mut self, s: &mut Session<'_>, result: Result<Ending>) -> Result<ExitCode> {
        let not_queued = s.not_queued();
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
                        s,
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
                            self.fail_expectation(s, &cause);
                        }
                        (_, Some(got)) => self.pass(
                            s,
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
                            self.fail_expectation(s, &cause);
                        }
                    }
                    return self.verdict_outcome();
                }
                _ => break,
            }
        }
        if self.cursor == self.steps().len() {
            // Every step done, and waiting for --count (or, with nothing to
            // check, the session's own outcome, as in pipe mode).
            let ending = if self.smoke.has_checks() {
                result?
            } else {
                super::delivered(result, not_queued)?
            };
            s.count_met(&ending)?;
            return Ok(ExitCode::Success);
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
                self.report_failed_step(s, &reason);
                self.verdict_at = Some(Instant::now());
                return Err(result.expect_err("matched an error"));
            }
        };
        self.fail_expectation(s, &cause);
        self.verdict_outcome()
    }

    fn verdict_outcome(&mut self) -> Result<ExitCode> {
        match self.verdict.take() {
            Some(Verdict::Pass) | None => Ok(ExitCode::Success),
            Some(Verdict::Fail(err)) => Err(err),
        }
    }

    /// The `--json` summary, or the one-line success note on stderr.
    fn summarize(&self, s: &mut Session<'_>, outcome: &Result<ExitCode>) {
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
                s.buf(),
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
