//! Pipe mode: each stdin record is one message, each received message is
//! written to stdout, diagnostics go to stderr.
//!
//! Ending well is the driver's work (`session.rs`): at stdin EOF the queue is
//! drained, replies keep printing until the connection has been idle for
//! `--linger` (or `--count` messages arrived), and only then is the
//! connection closed with 1000. Status events and the exit status are the
//! driver's defaults.

use super::session::{Mode, Session};
use crate::session::Payload;

pub(crate) struct Pipe;

impl Mode for Pipe {
    type Wake = ();

    async fn message(&mut self, s: &mut Session<'_>, payload: Payload) {
        s.print_message(&payload);
    }
}
