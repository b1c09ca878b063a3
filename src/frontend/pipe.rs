//! Pipe mode: each stdin record is one message, each received message is one
//! stdout record, diagnostics go to stderr. Also `--echo`, which answers every
//! message with itself instead of reading stdin.
//!
//! Ending well is the point of this module: at stdin EOF the queue is drained,
//! replies keep printing until the connection has been idle for `--linger`,
//! and only then is the connection closed with 1000.

use std::collections::VecDeque;

use tokio::time::{Instant, sleep_until};

use crate::config::ClientConfig;
use crate::error::{Error, ExitCode, Result};
use crate::input::{self, InputEnd, NotQueued};
use crate::output::Stdout;
use crate::render::{Renderer, eprint_line};
use crate::session::{Event, Payload};
use crate::signals::Signals;
use crate::supervisor::{Events, Handle};

/// Output is handed to the writer in chunks of about this size at most.
const CHUNK: usize = 64 * 1024;
/// Events handled per pass of the loop, so signals and timers get their turn.
const EVENT_BURST: usize = 256;
/// `--echo`: answers waiting to be handed to the supervisor. Past this many
/// (or bytes), events wait too, so a server that floods us meets backpressure.
const ECHO_BACKLOG: usize = 4096;
const ECHO_BACKLOG_BYTES: usize = 1 << 20;
/// Echoes handed over per command.
const ECHO_BATCH: usize = 64;

pub async fn run(
    config: &ClientConfig,
    handle: Handle,
    mut events: Events,
    echo: bool,
) -> Result<ExitCode> {
    let renderer = Renderer::new(config.output);
    let mut stdout = Stdout::spawn();
    let mut signals = Signals::new()?;
    let (mut input_end, not_queued) = if echo {
        (None, NotQueued::default())
    } else {
        let (end, not_queued) =
            input::spawn(config.input, std::io::stdin(), handle.blocking_sender());
        (Some(end), not_queued)
    };
    let mut input_error: Option<Error> = None;
    let mut received: u64 = 0;
    // Linger runs once input is drained, and only while connected.
    let mut drained = false;
    let mut connected = false;
    let mut linger_until: Option<Instant> = None;
    let mut interrupted = false;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut outgoing = Outgoing::default();

    loop {
        tokio::select! {
            event = events.next(), if !outgoing.full() => {
                let Some(event) = event else { break };
                // Handle whatever else is already waiting too: a burst of
                // messages costs one pass of this loop and one write.
                let mut first = Some(event);
                for _ in 0..EVENT_BURST {
                    let Some(event) = first.take().or_else(|| events.try_next()) else {
                        break;
                    };
                    match &event {
                        Event::Message(payload) => {
                            if config.end.count.is_some_and(|n| received >= n) {
                                continue;
                            }
                            received += 1;
                            if payload.len() >= CHUNK {
                                // Large: printed without a rendered copy of
                                // its own, and before the next is taken.
                                stdout.write(std::mem::take(&mut buf)).await;
                                if let Some(bytes) = renderer.verbatim(payload) {
                                    stdout.write(bytes).await;
                                    buf.push(renderer.separator());
                                } else if let Some(pieces) = renderer.message_pieces(payload, CHUNK) {
                                    for piece in pieces {
                                        stdout.write(piece).await;
                                    }
                                } else {
                                    renderer.message(&mut buf, payload);
                                    stdout.write(std::mem::take(&mut buf)).await;
                                }
                                stdout.drained().await;
                            } else {
                                renderer.message(&mut buf, payload);
                            }
                            if echo {
                                outgoing.echo(payload.clone());
                            }
                            if let Some(linger) = config.end.linger
                                && linger_until.is_some()
                            {
                                linger_until = Some(Instant::now() + linger);
                            }
                            if config.end.count == Some(received) {
                                outgoing.close_with("");
                            }
                        }
                        Event::Drained => {
                            drained = true;
                            if connected {
                                linger_until = config.end.linger.map(|l| Instant::now() + l);
                            }
                        }
                        other => {
                            match other {
                                Event::Connected { .. } => {
                                    connected = true;
                                    if drained {
                                        linger_until = config.end.linger.map(|l| Instant::now() + l);
                                    }
                                }
                                Event::Disconnected { .. } | Event::Reconnecting { .. } => {
                                    connected = false;
                                    linger_until = None;
                                }
                                _ => {}
                            }
                            report(&renderer, &mut buf, other);
                        }
                    }
                    if buf.len() >= CHUNK {
                        stdout.write(std::mem::take(&mut buf)).await;
                    }
                }
                if events.is_empty() {
                    stdout.write(std::mem::take(&mut buf)).await;
                }
            }
            // Echoes wait for send credit, as stdin does; the Close does not.
            permit = handle.reserve(), if !outgoing.echoes.is_empty() => match permit {
                Ok(permit) => permit.send_batch(outgoing.next_batch()),
                // The supervisor is gone; its end is reported below.
                Err(_) => outgoing = Outgoing::default(),
            },
            sent = handle.close(1000, outgoing.close.clone().unwrap_or_default()), if outgoing.close_ready() => match sent {
                Ok(()) => outgoing.close = None,
                Err(_) => outgoing = Outgoing::default(),
            },
            end = async { input_end.as_mut().expect("guarded").await }, if input_end.is_some() => {
                input_end = None;
                // Nothing more to send: a session that only waits out the
                // linger need not be dialled again once the server has it
                // all. `--keep-open` and `--count` still wait for messages.
                if config.end.linger.is_some() && config.end.count.is_none() {
                    let _ = handle.end_of_input().await;
                }
                if let Ok(Err(err)) = end as std::result::Result<InputEnd, _> {
                    input_error = Some(err);
                }
            }
            () = sleep_until(linger_until.unwrap_or_else(Instant::now)), if linger_until.is_some() && !outgoing.closing => {
                outgoing.close_with("");
            }
            _ = signals.recv() => {
                if interrupted {
                    stdout.write(std::mem::take(&mut buf)).await;
                    stdout.finish();
                    return Err(Error::Interrupted);
                }
                interrupted = true;
                outgoing.interrupt();
                handle.interrupt();
            }
            () = stdout.closed() => {
                // The reader has all it wanted (`| head -1`): a success.
                return Ok(ExitCode::Success);
            }
        }
    }
    let result = handle.finish().await;
    let outcome = super::delivered(result, not_queued.get()).map(|_| ExitCode::Success);
    let outcome = match (outcome, input_error, interrupted) {
        // Asked to leave: say what was left behind, and leave as asked.
        (Err(Error::Undelivered(unsent)), _, true) => {
            report(&renderer, &mut buf, &Event::Warning(unsent.to_string()));
            Err(Error::Interrupted)
        }
        (Err(err), _, _) => Err(err),
        (Ok(_), Some(err), _) => Err(err),
        (Ok(_), None, true) => Err(Error::Interrupted),
        (ok, None, false) => ok,
    };
    if let (Err(err), true) = (&outcome, renderer.json()) {
        renderer.json_error(&mut buf, err);
    }
    stdout.write(buf).await;
    stdout.finish();
    outcome
}

/// What the frontend sends itself: `--echo`'s answers, then the Close. They
/// go through branches of the loop, so the loop never blocks on a full
/// command queue and keeps reading events and signals.
#[derive(Default)]
struct Outgoing {
    echoes: VecDeque<Payload>,
    echo_bytes: usize,
    /// The reason of the Close to send once the echoes are out.
    close: Option<String>,
    /// A Close was asked for: what arrives from now on is not answered,
    /// since nothing may follow the Close.
    closing: bool,
    /// Interrupted: the supervisor closes by itself, without waiting.
    interrupted: bool,
}

impl Outgoing {
    fn echo(&mut self, payload: Payload) {
        if !self.closing {
            self.echo_bytes += payload.len();
            self.echoes.push_back(payload);
        }
    }

    /// The supervisor was interrupted: nothing more is sent. Echoes not yet
    /// handed over are dropped: they may wait for send credit a stalled
    /// server never gives back.
    fn interrupt(&mut self) {
        self.interrupted = true;
        self.closing = true;
        self.echoes.clear();
        self.echo_bytes = 0;
        self.close = None;
    }

    /// Asks for the Close, once.
    fn close_with(&mut self, reason: &str) {
        if !self.closing {
            self.close = Some(reason.to_owned());
            self.closing = true;
        }
    }

    fn full(&self) -> bool {
        self.echoes.len() >= ECHO_BACKLOG || self.echo_bytes >= ECHO_BACKLOG_BYTES
    }

    /// The Close is due once the echoes are all out.
    fn close_ready(&self) -> bool {
        self.close.is_some() && self.echoes.is_empty()
    }

    /// The next batch of echoes (the permit takes their bytes from the send
    /// credit, which the supervisor gives back once they are written).
    fn next_batch(&mut self) -> Vec<Payload> {
        let n = self.echoes.len().min(ECHO_BATCH);
        let batch: Vec<Payload> = self.echoes.drain(..n).collect();
        self.echo_bytes -= batch.iter().map(Payload::len).sum::<usize>();
        batch
    }
}

/// Status events: JSON lines on stdout with `--json`, else lines on stderr.
pub(super) fn report(renderer: &Renderer, buf: &mut Vec<u8>, event: &Event) {
    if renderer.json() {
        if !matches!(event, Event::Delivered { .. } | Event::Drained) {
            renderer.json_event(buf, event);
        }
    } else if let Some(line) = renderer.status(event) {
        eprint_line(&line);
    }
}
