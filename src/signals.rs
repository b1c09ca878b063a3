//! Ctrl-C and SIGTERM as a stream: the first asks for a clean close, the
//! frontends treat a second as "exit now".
//!
//! A frontend can be stuck awaiting something that never comes (a stdout
//! reader that stopped reading, a server that stopped reading). So the
//! signals are watched by a task of their own, and unless the frontend takes
//! the exit on itself, a second signal that the frontend has not acted on
//! within a moment ends the process from there.

use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::error::{Error, ExitCode, Result};

/// How long a frontend has to act on the second signal before the watcher
/// exits for it (it may be flushing what it already rendered).
const FORCED_EXIT_GRACE: Duration = Duration::from_millis(500);

pub struct Signals {
    received: mpsc::UnboundedReceiver<()>,
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
        let (tx, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut seen = 0u32;
            loop {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                seen += 1;
                // The frontend may be gone already; the process is ending then.
                let _ = tx.send(());
                if force_exit && seen >= 2 {
                    tokio::time::sleep(FORCED_EXIT_GRACE).await;
                    std::process::exit(ExitCode::Interrupted as i32);
                }
            }
        });
        Ok(Signals { received })
    }

    pub async fn recv(&mut self) {
        if self.received.recv().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}
