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
//!
//! `runner.rs` runs the steps, `report.rs` says how they went (the
//! diagnostics, the step reports, the summary), and `script.rs` is the plan:
//! the scenario file and the steps `--send`/`--expect` make.

mod report;
mod runner;
pub mod script;

use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use self::runner::{Runner, Verdict};
use super::session::{Mode, Over, Session};
use crate::config::{ClientConfig, SmokeConfig};
use crate::error::{Error, ExitCode, Result};
use crate::session::{Event, Payload};

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
        // A smoke test whose log could not be written does not pass, and
        // the write error is the cause: it ended the session, so what
        // failed after it is only its consequence.
        let outcome = match s.output_error() {
            Some(err) => Err(err),
            None => outcome,
        };
        run.summarize(s, &outcome);
        outcome
    }
}
