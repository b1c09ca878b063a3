//! The ways a person or a script drives a session. Each frontend consumes the
//! supervisor's events and sends it commands; rendering goes through
//! [`crate::render::Renderer`].

pub mod pipe;
pub mod repl;
pub mod smoke;

use crate::error::{Error, Result};
use crate::session::Ending;

/// The supervisor's result with the stdin records it never got (`not_queued`)
/// added, and a session that ended with anything undelivered made a failure:
/// tether never reports a success it did not have.
pub(crate) fn delivered(result: Result<Ending>, not_queued: usize) -> Result<Ending> {
    match result {
        Ok(mut ending) => {
            ending.unsent.stdin += not_queued;
            if ending.unsent.total() > 0 {
                Err(Error::Runtime(ending.unsent.to_string()))
            } else {
                Ok(ending)
            }
        }
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
            unsent: crate::session::Unsent {
                stdin: not_queued,
                ..Default::default()
            },
        }),
        Err(err) => Err(err),
    }
}
