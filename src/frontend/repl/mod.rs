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
pub mod view;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, sleep_until};

use self::command::Input;
use self::editor::{LinkState, SharedLink, Terminal, Typed};
use self::view::View;
use super::session::{Mode, Over, Session};
use crate::config::ClientConfig;
use crate::error::{ExitCode, Result};
use crate::session::{Event, Payload};
use crate::supervisor::{Events, Handle};

pub async fn run(config: &ClientConfig, supervisor: (Handle, Events)) -> Result<ExitCode> {
    let view = View::new(config.output);
    let link: SharedLink = Arc::new(Mutex::new(LinkState::Connecting));
    let history = history::default_path();
    // The driver installs the signal handlers before the editor starts:
    // rustyline swaps in its own SIGINT handler while it reads a line and
    // puts back the one it found.
    let session = Session::new(config, supervisor, false, false);
    let terminal = Terminal::spawn(view, Arc::clone(&link), history.clone());
    let repl = Repl {
        view,
        terminal,
        link,
        in_flight: 0,
        queued: 0,
        binary: config.input.binary,
        tick: None,
        history_missing: history.is_none(),
    };
    session.run(repl).await
}

struct Repl {
    view: View,
    terminal: Terminal,
    link: SharedLink,
    /// Messages handed to the supervisor and not yet reported flushed.
    in_flight: usize,
    /// How many of those were shown as queued (typed while disconnected).
    queued: usize,
    /// `--binary`: typed lines go out as binary messages.
    binary: bool,
    /// When the prompt's countdown next changes.
    tick: Option<Instant>,
    history_missing: bool,
}

/// What the REPL waits for besides events.
enum Wake {
    Typed(Option<Typed>),
    Tick,
}

impl Mode for Repl {
    type Wake = Wake;

    fn forced_exit(&self) -> bool {
        // The REPL restores the terminal before it leaves.
        false
    }

    async fn start(&mut self, _s: &mut Session<'_>) {
        if self.history_missing {
            let warning = self
                .view
                .warning("history will not be saved: neither XDG_STATE_HOME nor HOME is set");
            self.terminal.print(warning).await;
        }
    }

    async fn message(&mut self, _s: &mut Session<'_>, payload: Payload) {
        self.terminal.print(self.view.message(&payload)).await;
    }

    async fn event(&mut self, s: &mut Session<'_>, event: Event) {
        self.on_event(s, event).await;
        self.tick = self.next_tick();
    }

    async fn count_reached(&mut self, s: &mut Session<'_>) {
        if !s.closing() {
            s.close_for_count();
            self.closing_note(s, 1000, "").await;
        }
    }

    async fn interrupted(&mut self, s: &mut Session<'_>) {
        self.closing_note(s, 1000, "interrupted").await;
    }

    async fn wake(&mut self) -> Wake {
        let tick = self.tick;
        tokio::select! {
            typed = self.terminal.typed() => Wake::Typed(typed),
            () = sleep_until(tick.unwrap_or_else(Instant::now)), if tick.is_some() => Wake::Tick,
        }
    }

    async fn on_wake(&mut self, s: &mut Session<'_>, wake: Wake) {
        let r = self.view;
        match wake {
            Wake::Tick => {
                self.terminal.repaint().await;
                self.tick = self.next_tick();
            }
            Wake::Typed(Some(Typed::Input(input))) => self.input(s, input).await,
            // Ctrl-C while closing leaves without waiting (a second one at
            // once); at the prompt it only abandons the line.
            Wake::Typed(Some(Typed::Interrupt)) if s.closing() => s.interrupt(),
            Wake::Typed(Some(Typed::Interrupt)) => {}
            Wake::Typed(Some(Typed::Warning(text))) => self.terminal.print(r.warning(&text)).await,
            Wake::Typed(Some(Typed::Failed(text))) => {
                self.terminal.print(r.error(&text)).await;
                self.close(s, 1000, "").await;
            }
            Wake::Typed(Some(Typed::HangUp)) => self.hang_up(s).await,
            Wake::Typed(Some(Typed::Eof) | None) => self.close(s, 1000, "").await,
        }
    }

    async fn end(mut self, s: &mut Session<'_>, over: Over) -> Result<ExitCode> {
        self.terminal.stop().await;
        s.outcome(over)
    }
}

impl Repl {
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

    async fn on_event(&mut self, s: &mut Session<'_>, event: Event) {
        if let Event::Delivered { count } = &event {
            self.in_flight = self.in_flight.saturating_sub(*count);
            if self.queued > self.in_flight && !self.view.json() {
                let sent = self.queued - self.in_flight;
                self.queued = self.in_flight;
                let line = self.view.outgoing(&format!(
                    "sent {sent} queued message{}",
                    if sent == 1 { "" } else { "s" }
                ));
                self.terminal.print(line).await;
            }
            return;
        }
        let closing = s.closing();
        let before = self.link();
        match &event {
            Event::Connecting { .. } if !closing => self.set_link(LinkState::Connecting),
            Event::Connected { .. } if !closing => self.set_link(LinkState::Connected),
            Event::Disconnected { .. } if !closing => self.set_link(LinkState::Connecting),
            Event::Reconnecting { delay, .. } if !closing => {
                self.set_link(LinkState::Retry {
                    until: Instant::now() + *delay,
                });
            }
            Event::Closed { .. } => self.set_link(LinkState::Closed),
            _ => {}
        }
        if let Some(line) = self.view.status(&event) {
            // Printing redraws the prompt too.
            self.terminal.print(line).await;
        } else if self.link() != before {
            self.terminal.repaint().await;
        }
    }

    async fn input(&mut self, s: &mut Session<'_>, input: Input) {
        let r = self.view;
        match input {
            Input::Nothing => {}
            Input::Text(text) if self.binary => {
                self.send(s, Payload::Binary(Bytes::from(text))).await
            }
            Input::Text(text) => self.send(s, Payload::text(text)).await,
            Input::Binary(data) => self.send(s, Payload::Binary(data)).await,
            Input::Ping(payload) => {
                let _ = s.handle().ping(payload).await;
            }
            Input::Close { code, reason } => self.close(s, code, &reason).await,
            Input::Quit => self.close(s, 1000, "").await,
            Input::Reconnect => {
                if s.closing() {
                    self.terminal
                        .print(r.warning("closing: not reconnecting"))
                        .await;
                } else {
                    let _ = s.handle().reconnect().await;
                }
            }
            Input::Status => {
                if let Some(status) = s.handle().status().await {
                    self.terminal.print(r.status_report(&status)).await;
                }
            }
            Input::Help => self.terminal.print(r.help(command::COMMANDS)).await,
            Input::Usage(hint) => self.terminal.print(r.error(&hint)).await,
        }
    }

    async fn send(&mut self, s: &mut Session<'_>, payload: Payload) {
        if s.closing() {
            let warning = self.view.warning("closing: not sent");
            self.terminal.print(warning).await;
            return;
        }
        if s.handle().send(payload).await.is_err() {
            return;
        }
        self.in_flight += 1;
        if self.link() != LinkState::Connected && !self.view.json() {
            self.queued += 1;
            let waiting = self.in_flight;
            let line = self.view.outgoing(&format!(
                "queued: not connected; it goes out after the reconnect ({waiting} waiting)"
            ));
            self.terminal.print(line).await;
        }
    }

    /// The terminal is gone (SIGHUP, or the editor found it hung up; both
    /// come, in either order): close as SIGTERM does, once. It never forces
    /// the exit, since a shell that hangs up may signal more than once.
    async fn hang_up(&mut self, s: &mut Session<'_>) {
        if s.interrupted.is_some() {
            return;
        }
        s.interrupt();
        self.closing_note(s, 1000, "interrupted").await;
    }

    /// Ctrl-D, `/quit`, `/close`, `--count`: a close that waits until the
    /// server confirmed every line, reconnecting first if it must.
    async fn close(&mut self, s: &mut Session<'_>, code: u16, reason: &str) {
        if s.closing() {
            return;
        }
        s.close(code, reason);
        self.closing_note(s, code, reason).await;
    }

    async fn closing_note(&mut self, s: &Session<'_>, code: u16, reason: &str) {
        self.set_link(LinkState::Closing);
        if self.view.json() {
            return;
        }
        let how = if reason.is_empty() {
            format!("closing with {code}")
        } else {
            format!("closing with {code} ({reason})")
        };
        let waiting = self.in_flight;
        let note = if s.interrupted.is_none() && waiting > 0 && !s.connected {
            format!(
                "{how} once the reconnect delivers {waiting} queued message{}; \
                 Ctrl-C leaves without waiting",
                if waiting == 1 { "" } else { "s" }
            )
        } else {
            format!("{how}; Ctrl-C leaves without waiting")
        };
        self.terminal.print(self.view.note(&note)).await;
    }
}
