//! Ctrl-C, SIGTERM and SIGHUP as a stream: the first asks for a clean close,
//! the frontends treat a second Ctrl-C or SIGTERM as "exit now".
//!
//! A frontend can be stuck awaiting something that never comes (a stdout
//! reader that stopped reading, a server that stopped reading). So the
//! signals are watched by a task of their own, and unless the frontend takes
//! the exit on itself, a second signal that the frontend has not acted on
//! within a moment ends the process from there.
//!
//! SIGHUP (the terminal closed, an ssh connection dropped) asks for the same
//! clean close as SIGTERM. It is never a second signal: a shell that hangs
//! up resends it to its jobs, and the kernel may send it again when the
//! shell exits, so a repeated SIGHUP must not cut the close short. Under
//! `nohup` (SIGHUP ignored when tether starts) it stays ignored.

use std::time::Duration;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::error::{Error, ExitCode, Result};

/// How long a frontend has to act on the second signal before the watcher
/// exits for it (it may be flushing what it already rendered).
const FORCED_EXIT_GRACE: Duration = Duration::from_millis(500);

/// What arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Ctrl-C or SIGTERM: the first closes cleanly, a second forces the exit.
    Interrupt,
    /// SIGHUP: close cleanly; the terminal may be gone. A SIGHUP after any
    /// signal changes nothing.
    HangUp,
}

pub struct Signals {
    received: mpsc::UnboundedReceiver<Received>,
}

impl Signals {
    /// Signals for a frontend that may block: a second signal ends the
    /// process even if the frontend never gets to it.
    pub fn new() -> Result<Signals> {
        Self::install(true)
    }

    /// Signals for a frontend that must do its own exit (the REPL restores
    /// the terminal first, and raises SIGINT itself to stop the line editor).
    pub fn handled_by_frontend() -> Result<Signals> {
        Self::install(false)
    }

    fn install(force_exit: bool) -> Result<Signals> {
        let install = |kind| {
            signal(kind).map_err(|err| Error::Runtime(format!("cannot handle signals: {err}")))
        };
        let mut interrupt = install(SignalKind::interrupt())?;
        let mut terminate = install(SignalKind::terminate())?;
        let mut hangup = if hangup_ignored() {
            None
        } else {
            Some(install(SignalKind::hangup())?)
        };
        let (tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut seen = 0u32;
            loop {
                let kind = tokio::select! {
                    _ = interrupt.recv() => Received::Interrupt,
                    _ = terminate.recv() => Received::Interrupt,
                    Some(()) = async { hangup.as_mut()?.recv().await } => Received::HangUp,
                };
                // A SIGHUP counts only as the first signal.
                if kind == Received::HangUp && seen > 0 {
                    continue;
                }
                seen += 1;
                // The frontend may be gone already; the process is ending then.
                let _ = tx.send(kind);
                if force_exit && seen >= 2 {
                    tokio::time::sleep(FORCED_EXIT_GRACE).await;
                    std::process::exit(ExitCode::Interrupted as i32);
                }
            }
        });
        Ok(Signals { received })
    }

    pub async fn recv(&mut self) -> Received {
        match self.received.recv().await {
            Some(kind) => kind,
            None => std::future::pending().await,
        }
    }
}

/// Whether SIGHUP was ignored when tether started (`nohup`). Asking means
/// setting a disposition: it is set to "ignore" and put back at once.
fn hangup_ignored() -> bool {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: no handler runs; the previous disposition is restored at once.
    match unsafe { sigaction(Signal::SIGHUP, &ignore) } {
        Ok(previous) => {
            let ignored = matches!(previous.handler(), SigHandler::SigIgn);
            if !ignored {
                // SAFETY: as above: this is the disposition found.
                let _ = unsafe { sigaction(Signal::SIGHUP, &previous) };
            }
            ignored
        }
        Err(_) => false,
    }
}
