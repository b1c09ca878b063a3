//! The interactive session: a line editor whose prompt shows the
//! connection's state, with received messages and status lines printed
//! above the line being typed.
//!
//! Three threads meet here. The editor thread (`editor.rs`) runs rustyline
//! and sends parsed lines ([`command::Input`]) to this task; this task turns
//! them into supervisor commands and renders the supervisor's events; the
//! printer thread puts the rendered text on the screen through rustyline's
//! external printer, so a half-typed line survives.

pub mod command;
mod editor;
pub mod history;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;

use tokio::time::{Instant, sleep_until};

use self::command::Input;
use self::editor::{LinkState, SharedLink, Terminal, Typed};
use crate::config::ClientConfig;
use crate::error::{Error, ExitCode, Result};
use crate::render::Renderer;
use crate::session::{Event, Payload};
use crate::signals::{Received, Signals};
use crate::supervisor::{Events, Handle};

pub async fn run(config: &ClientConfig, handle: Handle, mut events: Events) -> Result<ExitCode> {
    // Before the editor starts: rustyline swaps in its own SIGINT handler
    // while it reads a line and puts back the one it found.
    let mut signals = Signals::handled_by_frontend()?;
    let renderer = Renderer::new(config.output);
    let link: SharedLink = Arc::new(Mutex::new(LinkState::Connecting));
    let history = history::default_path();
    let mut terminal = Terminal::spawn(renderer, Arc::clone(&link), history.clone());
    if history.is_none() {
        terminal
            .print(
                renderer.repl_warning(
                    "history will not be saved: neither XDG_STATE_HOME nor HOME is set",
                ),
            )
            .await;
    }
    let mut repl = Repl {
        renderer,
        handle: &handle,
        link,
        in_flight: 0,
        queued: 0,
        received: 0,
        count: config.end.count,
        lost: None,
        binary: config.input.binary,
        closing: false,
        interrupted: false,
    };
    // When the prompt's countdown next changes.
    let mut tick: Option<Instant> = None;

    loop {
        tokio::select! {
            event = events.next() => {
                let Some(event) = event else { break };
                repl.event(&mut terminal, event).await;
                tick = repl.next_tick();
            }
            typed = terminal.typed() => match typed {
                Some(Typed::Input(input)) => repl.input(&mut terminal, input).await,
                Some(Typed::Interrupt) if repl.closing => {
                    // A second Ctrl-C while closing: leave now.
                    terminal.stop().await;
                    return Err(Error::Interrupted);
                }
                Some(Typed::Interrupt) => {}
                Some(Typed::Warning(text)) => terminal.print(renderer.repl_warning(&text)).await,
                Some(Typed::Failed(text)) => {
                    terminal.print(renderer.repl_error(&text)).await;
                    repl.close(&terminal, 1000, "").await;
                }
                Some(Typed::HangUp) => repl.hang_up(&terminal).await,
                Some(Typed::Eof) | None => repl.close(&terminal, 1000, "").await,
            },
            received = signals.recv() => match received {
                Received::HangUp => repl.hang_up(&terminal).await,
                Received::Interrupt if repl.closing => {
                    terminal.stop().await;
                    return Err(Error::Interrupted);
                }
                Received::Interrupt => {
                    repl.interrupted = true;
                    repl.close(&terminal, 1000, "interrupted").await;
                }
            },
            () = sleep_until(tick.unwrap_or_else(Instant::now)), if tick.is_some() => {
                terminal.repaint().await;
                tick = repl.next_tick();
            }
        }
    }
    terminal.stop().await;
    let interrupted = repl.interrupted;
    drop(repl);
    let result = handle.finish().await;
    match super::delivered(result, 0) {
        // Asked to leave: say what was left behind, and leave as asked.
        Err(Error::Undelivered(unsent)) if interrupted => {
            crate::render::eprint_line(&format!("warning: {unsent}"));
            Err(Error::Interrupted)
        }
        Ok(_) if interrupted => Err(Error::Interrupted),
        Ok(_) => Ok(ExitCode::Success),
        Err(err) => Err(err),
    }
}

struct Repl<'h> {
    renderer: Renderer,
    handle: &'h Handle,
    link: SharedLink,
    /// Messages handed to the supervisor and not yet reported flushed.
    in_flight: usize,
    /// How many of those were shown as queued (typed while disconnected).
    queued: usize,
    received: u64,
    count: Option<u64>,
    /// Why the connection was just lost, so the retry line need not repeat it.
    lost: Option<String>,
    /// `--binary`: typed lines go out as binary messages.
    binary: bool,
    closing: bool,
    interrupted: bool,
}

impl Repl<'_> {
    fn set_link(&self, state: LinkState) {
        *self.link.lock().unwrap_or_else(|e| e.into_inner()) = state;
    }

    fn link(&self) -> LinkState {
        *self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// While waiting to reconnect: when the countdown's whole seconds change.
    fn next_tick(&self) -> Option<Instant> {
        let LinkState::Retry { until } = self.link() else {
            return None;
        };
        let now = Instant::now();
        let left = until.checked_duration_since(now)?;
        let into_second = Duration::from_nanos((left.as_nanos() % 1_000_000_000) as u64);
        Some(if into_second.is_zero() {
            now + Duration::from_secs(1)
        } else {
            now + into_second
        })
    }

    async fn event(&mut self, terminal: &mut Terminal, event: Event) {
        match &event {
            Event::Message(payload) => {
                if self.count.is_some_and(|n| self.received >= n) {
                    return;
                }
                self.received += 1;
                terminal.print(self.renderer.repl_message(payload)).await;
                if self.count == Some(self.received) {
                    self.close(terminal, 1000, "").await;
                }
                return;
            }
            Event::Delivered { count } => {
                self.in_flight = self.in_flight.saturating_sub(*count);
                if self.queued > self.in_flight && !self.renderer.json() {
                    let sent = self.queued - self.in_flight;
                    self.queued = self.in_flight;
                    terminal
                        .print(self.renderer.repl_outgoing(&format!(
                            "sent {sent} queued message{}",
                            if sent == 1 { "" } else { "s" }
                        )))
                        .await;
                }
                return;
            }
            _ => {}
        }
        let before = self.link();
        let mut shown = event;
        match &shown {
            Event::Connecting { .. } if !self.closing => self.set_link(LinkState::Connecting),
            Event::Connected { .. } if !self.closing => self.set_link(LinkState::Connected),
            Event::Disconnected { reason, .. } if !self.closing => {
                self.set_link(LinkState::Connecting);
                self.lost = Some(reason.clone());
            }
            Event::Reconnecting {
                attempt,
                delay,
                reason,
            } if !self.closing => {
                self.set_link(LinkState::Retry {
                    until: Instant::now() + *delay,
                });
                if self.lost.take().as_ref() == Some(reason) {
                    // The line above already says why.
                    shown = Event::Reconnecting {
                        attempt: *attempt,
                        delay: *delay,
                        reason: String::new(),
                    };
                }
            }
            Event::Closed { .. } => self.set_link(LinkState::Closed),
            _ => {}
        }
        if let Some(line) = self.renderer.repl_status(&shown) {
            // Printing redraws the prompt too.
            terminal.print(line).await;
        } else if self.link() != before {
            terminal.repaint().await;
        }
    }

    async fn input(&mut self, terminal: &mut Terminal, input: Input) {
        let r = self.renderer;
        match input {
            Input::Nothing => {}
            Input::Text(text) if self.binary => {
                self.send(terminal, Payload::Binary(Bytes::from(text)))
                    .await
            }
            Input::Text(text) => self.send(terminal, Payload::text(text)).await,
            Input::Binary(data) => self.send(terminal, Payload::Binary(data)).await,
            Input::Ping(payload) => {
                let _ = self.handle.ping(payload).await;
            }
            Input::Close { code, reason } => self.close(terminal, code, &reason).await,
            Input::Quit => self.close(terminal, 1000, "").await,
            Input::Reconnect => {
                if self.closing {
                    terminal
                        .print(r.repl_warning("closing: not reconnecting"))
                        .await;
                } else {
                    let _ = self.handle.reconnect().await;
                }
            }
            Input::Status => {
                if let Some(status) = self.handle.status().await {
                    terminal.print(r.repl_status_report(&status)).await;
                }
            }
            Input::Help => terminal.print(r.repl_help(command::COMMANDS)).await,
            Input::Usage(hint) => terminal.print(r.repl_error(&hint)).await,
        }
    }

    async fn send(&mut self, terminal: &mut Terminal, payload: Payload) {
        if self.closing {
            terminal
                .print(self.renderer.repl_warning("closing: not sent"))
                .await;
            return;
        }
        if self.handle.send(payload).await.is_err() {
            return;
        }
        self.in_flight += 1;
        if self.link() != LinkState::Connected && !self.renderer.json() {
            self.queued += 1;
            let waiting = self.in_flight;
            terminal
                .print(self.renderer.repl_outgoing(&format!(
                    "queued: not connected; it goes out after the reconnect ({waiting} waiting)"
                )))
                .await;
        }
    }

    /// The terminal is gone (SIGHUP, or the editor found it hung up; both
    /// come, in either order): close as SIGTERM does, once. It never forces
    /// the exit, since a shell that hangs up may signal more than once.
    async fn hang_up(&mut self, terminal: &Terminal) {
        if self.closing {
            return;
        }
        self.interrupted = true;
        self.close(terminal, 1000, "interrupted").await;
    }

    async fn close(&mut self, terminal: &Terminal, code: u16, reason: &str) {
        if self.closing {
            return;
        }
        self.closing = true;
        self.set_link(LinkState::Closing);
        let how = if reason.is_empty() {
            format!("closing with {code}")
        } else {
            format!("closing with {code} ({reason})")
        };
        if !self.renderer.json() {
            terminal
                .print(
                    self.renderer
                        .repl_note(&format!("{how}; Ctrl-C leaves without waiting")),
                )
                .await;
        }
        if self.interrupted {
            self.handle.interrupt();
        } else {
            let _ = self.handle.close(code, reason.to_owned()).await;
        }
    }
}
