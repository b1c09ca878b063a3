//! TEMPORARY: the Handle API of issue 13 on top of today's supervisor handle,
//! until the supervisor's own lands. Deleted at the merge.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::config::InputConfig;
use crate::error::{Error, Result};
use crate::input::{self, InputEnd, NotQueued};
use crate::session::{Command, Ending, Event, Payload, Status};
use crate::supervisor::{self, Credit};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gone;

pub struct Handle {
    commands: mpsc::Sender<Command>,
    credit: Arc<Credit>,
    task: tokio::task::JoinHandle<Result<Ending>>,
}

pub struct Events(supervisor::Events);

pub struct Permit<'a> {
    permit: mpsc::Permit<'a, Command>,
    credit: &'a Credit,
}

impl Permit<'_> {
    pub fn send_batch(self, batch: Vec<Payload>) {
        self.credit.take(batch.iter().map(Payload::len).sum());
        self.permit.send(Command::SendMany(batch));
    }
}

pub fn split(handle: supervisor::Handle) -> (Handle, Events) {
    (
        Handle {
            commands: handle.commands,
            credit: handle.send_credit,
            task: handle.task,
        },
        Events(handle.events),
    )
}

impl Handle {
    pub async fn reserve(&self) -> std::result::Result<Permit<'_>, Gone> {
        self.credit.wait().await;
        let permit = self.commands.reserve().await.map_err(|_| Gone)?;
        Ok(Permit {
            permit,
            credit: &self.credit,
        })
    }

    pub async fn send(&self, payload: Payload) -> std::result::Result<(), Gone> {
        self.credit.take(payload.len());
        self.commands
            .send(Command::Send(payload))
            .await
            .map_err(|_| Gone)
    }

    pub async fn ping(&self, payload: Bytes) -> std::result::Result<(), Gone> {
        self.commands
            .send(Command::Ping(payload))
            .await
            .map_err(|_| Gone)
    }

    pub async fn close(&self, code: u16, reason: String) -> std::result::Result<(), Gone> {
        self.commands
            .send(Command::Close {
                code,
                reason,
                confirm: true,
            })
            .await
            .map_err(|_| Gone)
    }

    pub fn interrupt(&self) {
        let _ = self.commands.try_send(Command::Close {
            code: 1000,
            reason: "interrupted".into(),
            confirm: false,
        });
    }

    pub async fn reconnect(&self) -> std::result::Result<(), Gone> {
        self.commands
            .send(Command::Reconnect)
            .await
            .map_err(|_| Gone)
    }

    pub async fn drain(&self) -> std::result::Result<(), Gone> {
        self.commands.send(Command::Drain).await.map_err(|_| Gone)
    }

    pub async fn end_of_input(&self) -> std::result::Result<(), Gone> {
        Ok(())
    }

    pub async fn status(&self) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(Command::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    pub fn spawn_stdin(&self, config: InputConfig) -> (oneshot::Receiver<InputEnd>, NotQueued) {
        input::spawn(
            config,
            std::io::stdin(),
            self.commands.clone(),
            Arc::clone(&self.credit),
        )
    }

    pub async fn finish(self) -> Result<Ending> {
        drop(self.commands);
        self.task
            .await
            .map_err(|err| Error::Runtime(format!("the connection task failed: {err}")))?
    }
}

impl Events {
    pub async fn next(&mut self) -> Option<Event> {
        self.0.recv().await
    }

    pub fn try_next(&mut self) -> Option<Event> {
        self.0.try_recv().ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
