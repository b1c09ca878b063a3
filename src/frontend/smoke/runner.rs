//! The steps runner: starts each step, matches received messages against
//! expectations, and reaches the verdict.

use std::collections::VecDeque;
use std::time::Duration;

use base64::Engine;
use tokio::time::Instant;

use super::DEFAULT_TIMEOUT;
use super::report::{close_suffix, quoted_reason};
use super::script::{Action, Expectation, Step};
use crate::config::{BinaryFormat, ClientConfig, SmokeConfig};
use crate::error::{Error, ExitCode, Result};
use crate::frontend::session::Session;
use crate::render::{self, eprint_line};
use crate::session::{Ending, Event, Payload, RttStats};

/// How many received messages a failure diagnostic shows.
const RECENT: usize = 5;

pub(super) enum Verdict {
    Pass,
    Fail(Error),
}

/// What the current step waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
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
pub(super) struct Seen {
    pub(super) number: u64,
    pub(super) binary: bool,
    pub(super) form: String,
    /// The payload's size: a binary message's form (hex, base64) is longer.
    pub(super) bytes: usize,
}

impl Seen {
    /// The message in a diagnostic: its form, cut short, with its real size.
    pub(super) fn excerpt(&self, max: usize) -> String {
        render::excerpt(&self.form, max, self.bytes)
    }
}

/// What a passed step reports besides its duration.
#[derive(Default)]
pub(super) struct Detail {
    pub(super) matched: Option<Seen>,
    pub(super) rtt: Option<Duration>,
    pub(super) code: Option<u16>,
}

pub(super) struct Runner<'a> {
    /// An interrupted run's diagnostic, first line: the summary's reason
    /// (the error itself only says "interrupted").
    pub(super) interrupted_reason: Option<String>,
    pub(super) config: &'a ClientConfig,
    pub(super) smoke: &'a SmokeConfig,
    pub(super) started: Instant,
    /// `--timeout`, or the default.
    pub(super) timeout: Duration,
    pub(super) deadline: Instant,
    pub(super) cursor: usize,
    pub(super) pending: Option<Pending>,
    pub(super) step_started: Instant,
    pub(super) steps_passed: usize,
    /// Messages not yet examined by an expectation.
    pub(super) inbox: VecDeque<Seen>,
    /// The last few messages, for diagnostics.
    pub(super) recent: VecDeque<Seen>,
    /// Messages are kept for expectations only while one is still to come.
    pub(super) last_expect: Option<usize>,
    pub(super) received: u64,
    pub(super) sent: u64,
    pub(super) rtt: RttStats,
    pub(super) connected: bool,
    pub(super) connected_at: Option<Instant>,
    pub(super) drained: bool,
    pub(super) pong: Option<Duration>,
    pub(super) input_drained: bool,
    pub(super) close_sent: bool,
    pub(super) verdict: Option<Verdict>,
    pub(super) verdict_at: Option<Instant>,
    pub(super) failed_step: Option<usize>,
    /// Which steps of the current `expect-any-order` block are met.
    pub(super) met: Vec<bool>,
}

impl<'a> Runner<'a> {
    pub(super) fn new(
        config: &'a ClientConfig,
        smoke: &'a SmokeConfig,
        started: Instant,
    ) -> Runner<'a> {
        let timeout = smoke.timeout.unwrap_or(DEFAULT_TIMEOUT);
        Runner {
            interrupted_reason: None,
            config,
            smoke,
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
                .rposition(|s| matches!(s.action, Action::Expect(_) | Action::ExpectAnyOrder(_))),
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
            met: Vec::new(),
        }
    }

    pub(super) fn steps(&self) -> &'a [Step] {
        &self.smoke.steps
    }

    /// Runs steps until one has to wait, or the run is decided.
    pub(super) async fn advance(&mut self, s: &mut Session<'_>) {
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
                    let examined = match &step.action {
                        Action::Expect(expectation) => self.examine(s, expectation),
                        Action::ExpectAnyOrder(members) => self.examine_any_order(s, members),
                        _ => unreachable!("only expect steps wait for messages"),
                    };
                    match examined {
                        Some(Ok(seen)) => self.pass(
                            s,
                            Detail {
                                matched: Some(seen),
                                ..Detail::default()
                            },
                        ),
                        Some(Err(seen)) => {
                            let cause = format!(
                                "message #{} did not match it (--strict): {}",
                                seen.number,
                                seen.excerpt(120)
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
    pub(super) async fn start(&mut self, s: &mut Session<'_>, step: &Step) -> Pending {
        match &step.action {
            Action::Send(payload) => {
                self.drained = false;
                let _ = s.handle().send(payload.clone()).await;
                let _ = s.handle().drain().await;
                Pending::Delivery
            }
            Action::SendTemplate(template) => {
                // Parsing checked that an earlier step captures every name.
                let text = s
                    .handle()
                    .captured()
                    .render(template)
                    .unwrap_or_else(|name| {
                        unreachable!("{{{{{name}}}}} captured by an earlier step")
                    });
                self.drained = false;
                let _ = s.handle().send(Payload::text(text)).await;
                let _ = s.handle().drain().await;
                Pending::Delivery
            }
            Action::Expect(_) => Pending::Message,
            Action::ExpectAnyOrder(members) => {
                self.met = vec![false; members.len()];
                Pending::Message
            }
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

    /// The next unexamined message that matches, its captures kept (in the
    /// handle: the supervisor reads them too); with `--strict`, the first one
    /// that does not is an error.
    pub(super) fn examine(
        &mut self,
        s: &Session<'_>,
        expectation: &Expectation,
    ) -> Option<std::result::Result<Seen, Seen>> {
        while let Some(seen) = self.inbox.pop_front() {
            if let Some(captured) = captures_of(expectation, &seen) {
                keep(s, captured);
                return Some(Ok(seen));
            }
            if self.smoke.strict {
                return Some(Err(seen));
            }
        }
        None
    }

    /// For an `expect-any-order` block: the message that meets its last
    /// unmet step. Each message meets at most one step, the first unmet one
    /// it matches; with `--strict`, one that matches none is an error.
    pub(super) fn examine_any_order(
        &mut self,
        s: &Session<'_>,
        members: &[Step],
    ) -> Option<std::result::Result<Seen, Seen>> {
        while let Some(seen) = self.inbox.pop_front() {
            let found = members.iter().enumerate().find_map(|(i, member)| {
                let Action::Expect(e) = &member.action else {
                    unreachable!("a block holds expect steps")
                };
                if self.met[i] {
                    return None;
                }
                captures_of(e, &seen).map(|captured| (i, captured))
            });
            match found {
                Some((i, captured)) => {
                    self.met[i] = true;
                    keep(s, captured);
                    if self.met.iter().all(|m| *m) {
                        return Some(Ok(seen));
                    }
                }
                None if self.smoke.strict => return Some(Err(seen)),
                None => {}
            }
        }
        None
    }

    pub(super) fn all_steps_done(&mut self, s: &mut Session<'_>) {
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

    pub(super) async fn on_event(&mut self, s: &mut Session<'_>, event: Event) {
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

    pub(super) async fn on_message(&mut self, s: &mut Session<'_>, payload: &Payload) {
        self.received = s.received;
        s.print_message(payload);
        let seen = Seen {
            number: self.received,
            binary: matches!(payload, Payload::Binary(_)),
            form: match_form(payload, self.smoke.binary_match).into_owned(),
            bytes: payload.len(),
        };
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        if self.verdict.is_none() && self.last_expect.is_some_and(|last| self.cursor <= last) {
            self.inbox.push_back(Seen {
                number: seen.number,
                binary: seen.binary,
                form: seen.form.clone(),
                bytes: seen.bytes,
            });
        }
        self.recent.push_back(seen);
        self.advance(s).await;
    }

    /// When a `wait` step ends.
    pub(super) fn timer(&self) -> Option<Instant> {
        match self.pending {
            Some(Pending::Until(at)) if self.verdict.is_none() => Some(at),
            _ => None,
        }
    }

    pub(super) fn deadline_reached(&mut self, s: &mut Session<'_>) {
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
    pub(super) fn interrupted(&mut self, s: &mut Session<'_>) {
        if self.verdict.is_some() {
            return;
        }
        let text = format!("interrupted {}{}", self.waiting_on(), self.tail());
        let reason = text.lines().next().unwrap_or_default().to_owned();
        self.report_failed_step(s, &reason);
        eprint_line(&format!("the smoke test was {text}"));
        self.interrupted_reason = Some(format!("the smoke test was {reason}"));
        self.decide(Verdict::Fail(Error::Interrupted));
    }

    pub(super) fn pass(&mut self, s: &mut Session<'_>, detail: Detail) {
        self.report_current(s, &detail, None);
        self.steps_passed += 1;
        self.cursor += 1;
        self.pending = None;
    }

    /// Fails the current step with exit code 7.
    pub(super) fn fail_expectation(&mut self, s: &mut Session<'_>, cause: &str) {
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

    pub(super) fn decide(&mut self, verdict: Verdict) {
        if self.verdict.is_none() {
            self.verdict = Some(verdict);
            self.verdict_at = Some(Instant::now());
        }
    }

    /// Judges the steps the end of the connection completes or dooms.
    pub(super) fn session_ended(
        &mut self,
        s: &mut Session<'_>,
        result: Result<Ending>,
    ) -> Result<ExitCode> {
        let not_queued = s.not_queued();
        if self.verdict.is_some() {
            let outcome = self.verdict_outcome();
            // A pass is one only if what the steps sent got there.
            if outcome.is_ok()
                && let Ok(ending) = &result
                && let Some(unsent) = crate::frontend::undelivered(ending, not_queued)
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
                crate::frontend::delivered(result, not_queued)?
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

    pub(super) fn verdict_outcome(&mut self) -> Result<ExitCode> {
        match self.verdict.take() {
            Some(Verdict::Pass) | None => Ok(ExitCode::Success),
            Some(Verdict::Fail(err)) => Err(err),
        }
    }
}

/// The captures of a message that matches `expectation`: `None` when it
/// does not, or when a capture finds no value in it (the message is not
/// the one the step is waiting for).
fn captures_of(expectation: &Expectation, seen: &Seen) -> Option<Vec<(String, String)>> {
    if !expectation.eligible(seen.binary) {
        return None;
    }
    let found = expectation.matcher.matches(&seen.form)?;
    expectation
        .captures
        .iter()
        .map(|c| Some((c.name.clone(), found.capture(&c.source)?)))
        .collect()
}

fn keep(s: &Session<'_>, captured: Vec<(String, String)>) {
    for (name, value) in captured {
        s.handle().capture(name, value);
    }
}

/// The form of a message that smoke-test expectations match: text as it
/// came, binary as hex or base64 (`binary` is `Hex` or `Base64`).
pub(super) fn match_form(payload: &Payload, binary: BinaryFormat) -> std::borrow::Cow<'_, str> {
    match payload {
        Payload::Text(text) => std::borrow::Cow::Borrowed(text.as_str()),
        Payload::Binary(data) if binary == BinaryFormat::Base64 => {
            std::borrow::Cow::Owned(base64::engine::general_purpose::STANDARD.encode(data))
        }
        Payload::Binary(data) => std::borrow::Cow::Owned(render::hex(data)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_is_matched_as_hex_or_base64() {
        let data = Payload::Binary(bytes::Bytes::from_static(b"\x00\xffhi"));
        assert_eq!(match_form(&data, BinaryFormat::Hex), "00ff6869");
        assert_eq!(match_form(&data, BinaryFormat::Base64), "AP9oaQ==");
        assert_eq!(match_form(&Payload::text("t"), BinaryFormat::Hex), "t");
    }
}
