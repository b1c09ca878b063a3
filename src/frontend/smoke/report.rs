//! How a smoke test tells what happened: the diagnostics (the step it
//! waited on, the last messages received), each step's report, and the
//! summary.

use std::fmt::Write as _;

use tokio::time::Instant;

use super::runner::{Detail, Runner, Seen};
use super::script::{Action, Step};
use crate::error::{Error, ExitCode, Result};
use crate::frontend::session::Session;
use crate::matcher::Matcher;
use crate::render;
use crate::report::json::{self, Millis, StepStatus, Summary};
use crate::session::Ending;

impl Runner<'_> {
    /// How diagnostics name the deadline.
    pub(super) fn timeout_flag(&self) -> String {
        let timeout = crate::values::format_duration(self.timeout);
        if self.smoke.timeout.is_some() {
            format!("--timeout {timeout}")
        } else {
            format!("--timeout {timeout} (the default)")
        }
    }

    /// Where the run stands, for a diagnostic: the step it waited on.
    pub(super) fn waiting_on(&self) -> String {
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

    pub(super) fn report_failed_step(&mut self, s: &mut Session<'_>, reason: &str) {
        if self.cursor < self.steps().len() {
            self.failed_step = Some(self.cursor + 1);
            self.report_current(s, &Detail::default(), Some(reason));
        }
    }

    /// Reports the current step: passed when `failure` is `None`.
    pub(super) fn report_current(
        &self,
        s: &mut Session<'_>,
        detail: &Detail,
        failure: Option<&str>,
    ) {
        let step = &self.steps()[self.cursor];
        s.report_step(&json::Step {
            step: self.cursor + 1,
            of: self.steps().len(),
            line: step.line,
            action: step.action.keyword(),
            text: &step.text,
            status: match failure {
                None => StepStatus::Passed,
                Some(_) => StepStatus::Failed,
            },
            duration_ms: Millis(self.step_started.elapsed()),
            matched: detail.matched.as_ref().map(|seen| seen.form.as_str()),
            matched_bytes: detail.matched.as_ref().map_or(0, |seen| seen.bytes),
            rtt_ms: detail.rtt.map(Millis),
            code: detail.code,
            reason: failure,
        });
    }

    /// How diagnostics name a step: the flag, or the script's file and line.
    pub(super) fn label(&self, step: &Step) -> String {
        let text = match &step.action {
            Action::ExpectAnyOrder(members) => self.any_order_text(step, members),
            _ => step.text.clone(),
        };
        match (&self.smoke.script, step.line) {
            (Some(script), Some(line)) => format!("{script}:{line} ({text})"),
            _ => text,
        }
    }

    /// An `expect-any-order` block in a diagnostic: while it waits, how
    /// many of its steps are met and which are still missing.
    fn any_order_text(&self, step: &Step, members: &[Step]) -> String {
        let current = self
            .steps()
            .get(self.cursor)
            .is_some_and(|c| std::ptr::eq(c, step));
        if !current || self.met.len() != members.len() {
            return step.text.clone();
        }
        let missing: Vec<String> = members
            .iter()
            .zip(&self.met)
            .filter(|(_, met)| !**met)
            .map(|(m, _)| match m.line {
                Some(line) => format!("{} (line {line})", m.text),
                None => m.text.clone(),
            })
            .collect();
        format!(
            "{}, {} of {} met; still missing: {}",
            step.text,
            members.len() - missing.len(),
            members.len(),
            missing.join(", ")
        )
    }

    /// The last messages; while a jq expectation waits, each with what its
    /// filter made of it, so a near miss (`false`, `null`, an error) shows.
    pub(super) fn tail(&self) -> String {
        let jq = match self.steps().get(self.cursor).map(|step| &step.action) {
            Some(Action::Expect(e)) if matches!(e.matcher, Matcher::Jq(_)) => Some(e),
            _ => None,
        };
        let explain = jq.map(|e| {
            move |seen: &Seen| {
                let Matcher::Jq(filter) = &e.matcher else {
                    unreachable!("only jq expectations explain")
                };
                let value = if seen.binary {
                    "a binary message, never matched".to_owned()
                } else {
                    e.matcher.explain(&seen.form).unwrap_or_default()
                };
                format!(
                    "{} gave: {}",
                    filter.source(),
                    render::excerpt(&value, 120, value.len())
                )
            }
        });
        received_tail(
            self.received,
            self.recent.iter(),
            explain.as_ref().map(|f| f as &dyn Fn(&Seen) -> String),
        )
    }

    /// The `--json` summary, or the one-line success note on stderr.
    pub(super) fn summarize(&self, s: &mut Session<'_>, outcome: &Result<ExitCode>) {
        let ended = self.verdict_at.unwrap_or_else(Instant::now);
        let first_line = outcome.as_ref().err().map(|err| match err {
            Error::Interrupted if self.interrupted_reason.is_some() => {
                self.interrupted_reason.clone().unwrap_or_default()
            }
            err => err
                .to_string()
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        });
        s.report_summary(&Summary {
            result: match outcome {
                Ok(_) => json::Verdict::Pass,
                Err(_) => json::Verdict::Fail,
            },
            exit_code: match outcome {
                Ok(code) => *code as u8,
                Err(err) => err.exit_code() as u8,
            },
            error: outcome.as_ref().err().map(Error::kind),
            reason: first_line.as_deref(),
            steps: self.steps().len(),
            steps_passed: self.steps_passed,
            failed_step: self.failed_step,
            duration_ms: Millis(ended.saturating_duration_since(self.started)),
            connect_ms: self
                .connected_at
                .map(|at| Millis(at.saturating_duration_since(self.started))),
            sent: self.sent,
            received: self.received,
            rtt_ms: self.rtt.into(),
        });
    }
}

pub(super) fn close_suffix(ending: &Ending) -> String {
    match ending.code {
        Some(code) => format!(" (code {code}{})", quoted_reason(&ending.reason)),
        None if ending.reason.is_empty() => String::new(),
        None => format!(" ({})", ending.reason),
    }
}

/// A close reason in quotes, escaped once (Debug quoting escapes controls,
/// quotes and backslashes; a reason is at most 123 bytes, so it is not cut).
pub(super) fn quoted_reason(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(" {reason:?}")
    }
}

/// The tail of a smoke-test diagnostic: how many messages came and the last
/// few, each on one line, escaped and cut short, oldest first.
pub(super) fn received_tail<'a>(
    total: u64,
    recent: impl ExactSizeIterator<Item = &'a Seen>,
    explain: Option<&dyn Fn(&Seen) -> String>,
) -> String {
    let shown = recent.len();
    let mut out = match (total, shown as u64) {
        (0, _) => return "\n  no messages were received".into(),
        (1, _) => "\n  1 message was received:".to_string(),
        (n, k) if k < n => format!("\n  {n} messages were received; the last {k}:"),
        (n, _) => format!("\n  {n} messages were received:"),
    };
    for seen in recent {
        let kind = if seen.binary { "[binary] " } else { "" };
        let _ = write!(out, "\n    #{}: {kind}{}", seen.number, seen.excerpt(120));
        if let Some(explain) = explain {
            let _ = write!(out, "\n      {}", explain(seen));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_received_tail_counts_and_lists() {
        assert_eq!(
            received_tail(0, std::iter::empty(), None),
            "\n  no messages were received"
        );
        let seen = |number, binary, form: &str, bytes| Seen {
            number,
            binary,
            form: form.to_owned(),
            bytes,
        };
        let recent = [seen(6, false, "six", 3), seen(7, true, "00ff", 2)];
        assert_eq!(
            received_tail(7, recent.iter(), None),
            "\n  7 messages were received; the last 2:\n    #6: six\n    #7: [binary] 00ff"
        );
        // A long binary message is cut in its hex form but counted in bytes.
        let recent = [seen(1, true, &"ab".repeat(100), 100)];
        assert_eq!(
            received_tail(1, recent.iter(), None),
            format!(
                "\n  1 message was received:\n    #1: [binary] {}... (100 bytes in all)",
                "ab".repeat(60)
            )
        );
    }
}
