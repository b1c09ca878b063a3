//! Pipe mode: each stdin record is one message, each received message is
//! written to stdout, diagnostics go to stderr.
//!
//! Ending well is the driver's work (`session.rs`): at stdin EOF the queue is
//! drained, replies keep printing until the connection has been idle for
//! `--linger` (or `--count` messages arrived), and only then is the
//! connection closed with 1000.

use super::session::{Mode, Over, Session};
use crate::error::{ExitCode, Result};
use crate::session::{Event, Payload};

pub(crate) struct Pipe;

impl Mode for Pipe {
    type Wake = ();

    async fn message(&mut self, s: &mut Session<'_>, payload: Payload) {
        s.print_message(&payload);
    }

    async fn event(&mut self, s: &mut Session<'_>, event: Event) {
        s.report(&event);
    }

    async fn end(self, s: &mut Session<'_>, over: Over) -> Result<ExitCode> {
        let outcome = s.outcome(over);
        s.report_error(&outcome);
        outcome
    }
}
