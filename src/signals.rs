//! Ctrl-C and SIGTERM as a stream: the first asks for a clean close, the
//! frontends treat a second as "exit now".

use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::{Error, Result};

pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    pub fn new() -> Result<Signals> {
        let install = |kind| {
            signal(kind).map_err(|err| Error::Runtime(format!("cannot handle signals: {err}")))
        };
        Ok(Signals {
            interrupt: install(SignalKind::interrupt())?,
            terminate: install(SignalKind::terminate())?,
        })
    }

    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
