//! The ways a person or a script drives a session. Each frontend consumes the
//! supervisor's events and sends it commands; rendering goes through
//! [`crate::render::Renderer`].

pub mod pipe;
pub mod repl;
pub mod smoke;

use crate::error::{Error, Result};
use crate::session::{Ending, Unsent};

/// What a session that ended without an error of its own left undelivered,
/// with the stdin records it never got (`not_queued`) added.
pub(crate) fn undelivered(ending: &Ending, not_queued: usize) -> Option<Unsent> {
    let mut unsent = ending.unsent;
    unsent.stdin += not_queued;
    (unsent.total() > 0).then_some(unsent)
}

/// The supervisor's result with the stdin records it never got added, and a
/// session that ended with anything undelivered made a failure: tether never
/// reports a success it did not have.
pub(crate) fn delivered(result: Result<Ending>, not_queued: usize) -> Result<Ending> {
    match result {
        Ok(ending) => match undelivered(&ending, not_queued) {
            Some(unsent) => Err(Error::Undelivered(unsent)),
            None => Ok(ending),
        },
        Err(Error::GaveUp {
            source,
            attempts,
            mut unsent,
        }) => {
            unsent.stdin += not_queued;
            Err(Error::GaveUp {
                source,
                attempts,
                unsent,
            })
        }
        Err(err) if not_queued > 0 => Err(Error::GaveUp {
            source: Box::new(err),
            attempts: 1,
            unsent: Unsent {
                stdin: not_queued,
                ..Unsent::default()
            },
        }),
        Err(err) => Err(err),
    }
}
