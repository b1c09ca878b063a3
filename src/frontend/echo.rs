//! `--echo`: answers every message with itself instead of reading stdin, and
//! prints it as pipe mode does. It runs until the server closes or a signal.

use super::session::{Mode, Session};
use crate::session::Payload;

pub(crate) struct Echo;

impl Mode for Echo {
    type Wake = ();

    async fn message(&mut self, s: &mut Session<'_>, payload: Payload) {
        s.print_message(&payload);
        // Through the driver's queue: the loop never waits for the
        // supervisor, and a flood meets backpressure there.
        s.send_later(payload);
    }
}
