//! The ways a person or a script drives a session. One driver
//! ([`session::Session`]) runs the event loop and the rules every mode
//! shares; each mode (pipe, echo, smoke, the REPL) says what the events mean
//! to it. What they print goes through [`crate::report::Reporter`]
//! (the REPL's screen through `repl::view`).

pub mod echo;
pub mod exec;
pub mod pipe;
pub mod repl;
pub mod session;
pub mod smoke;

use crate::config::{ClientConfig, Frontend};
use crate::error::{Error, ExitCode, Result};
use crate::io::output::Stdout;
use crate::session::{Ending, Unsent};
use crate::supervisor;

use self::session::Session;

/// Runs the session `config` asks for, in its mode, and says how to exit.
pub async fn run(config: &ClientConfig, started: std::time::Instant) -> Result<ExitCode> {
    let supervisor = || supervisor::spawn(config.session.clone());
    match &config.frontend {
        Frontend::Pipe => {
            Session::new(config, supervisor()?, true, true)
                .run(pipe::Pipe)
                .await
        }
        Frontend::Exec(exec) => {
            // Started before dialling: a program that cannot run sends nothing.
            let (program, pipes) = exec::spawn(exec)?;
            let input: Box<dyn std::io::Read + Send> = Box::new(pipes.output);
            let out = Stdout::spawn_on(pipes.input);
            Session::with_streams(config, supervisor()?, Some(out), Some(input))
                .run(exec::Exec { program })
                .await
        }
        Frontend::Echo => {
            Session::new(config, supervisor()?, true, false)
                .run(echo::Echo)
                .await
        }
        Frontend::Smoke(smoke) => {
            Session::new(config, supervisor()?, true, smoke.read_stdin)
                .run(smoke::Smoke::new(config, smoke, started))
                .await
        }
        Frontend::Repl => repl::run(config, supervisor()?).await,
    }
}

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
