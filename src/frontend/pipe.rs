//! Pipe mode: each stdin record is one message, each received message is one
//! stdout record, diagnostics go to stderr. Also `--echo`, which answers every
//! message with itself instead of reading stdin.
//!
//! Ending well is the point of this module: at stdin EOF the queue is drained,
//! replies keep printing until the connection has been idle for `--linger`,
//! and only then is the connection closed with 1000.

use tokio::time::{Instant, sleep_until};

use crate::config::ClientConfig;
use crate::error::{Error, ExitCode, Result};
use crate::input::{self, InputEnd};
use crate::output::Stdout;
use crate::render::{Renderer, eprint_line};
use crate::session::{Command, Event, Payload};
use crate::signals::Signals;
use crate::supervisor::Handle;

/// Output is handed to the writer in chunks of about this size at most.
const CHUNK: usize = 64 * 1024;
/// Events handled per pass of the loop, so signals and timers get their turn.
const EVENT_BURST: usize = 256;
/// `--echo`: answers waiting for room in the command queue. Past this many,
/// events wait too, so a server that floods us meets backpressure, and the
/// loop never blocks on a full queue (signals still get through).
const ECHO_BACKLOG: usize = 4096;

pub async fn run(config: &ClientConfig, handle: Handle, echo: bool) -> Result<ExitCode> {
    let Handle {
        commands,
        send_credit,
        mut events,
        task,
    } = handle;
    let renderer = Renderer::new(config.output);
    let mut stdout = Stdout::spawn();
    let mut signals = Signals::new()?;
    let mut input_end = if echo {
        None
    } else {
        Some(input::spawn(
            config.input,
            std::io::stdin(),
            commands.clone(),
            send_credit,
        ))
    };
    let mut input_error: Option<Error> = None;
    let mut received: u64 = 0;
    // Linger runs once input is drained, and only while connected.
    let mut drained = false;
    let mut connected = false;
    let mut linger_until: Option<Instant> = None;
    let mut closing = false;
    let mut interrupted = false;
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK);
    let mut echoes: Vec<Payload> = Vec::new();

    // Answers still waiting go out before the Close.
    let close = async |echoes: &mut Vec<Payload>, reason: &str| {
        if !echoes.is_empty() {
            let _ = commands
                .send(Command::SendMany(std::mem::take(echoes)))
                .await;
        }
        let _ = commands
            .send(Command::Close {
                code: 1000,
                reason: reason.to_owned(),
            })
            .await;
    };

    loop {
        tokio::select! {
            event = events.recv(), if echoes.len() < ECHO_BACKLOG => {
                let Some(event) = event else { break };
                // Handle whatever else is already waiting too: a burst of
                // messages costs one pass of this loop and one write.
                let mut first = Some(event);
                for _ in 0..EVENT_BURST {
                    let Some(event) = first.take().or_else(|| events.try_recv().ok()) else {
                        break;
                    };
                    match &event {
                        Event::Message(payload) => {
                            if config.end.count.is_some_and(|n| received >= n) {
                                continue;
                            }
                            received += 1;
                            match renderer.verbatim(payload) {
                                Some(bytes) if bytes.len() >= CHUNK => {
                                    stdout.write(std::mem::take(&mut buf)).await;
                                    stdout.write(bytes).await;
                                    buf.push(renderer.separator());
                                }
                                _ => renderer.message(&mut buf, payload),
                            }
                            if echo {
                                echoes.push(payload.clone());
                            }
                            if let Some(linger) = config.end.linger
                                && linger_until.is_some()
                            {
                                linger_until = Some(Instant::now() + linger);
                            }
                            if config.end.count == Some(received) && !closing {
                                closing = true;
                                close(&mut echoes, "").await;
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
            permit = commands.reserve(), if !echoes.is_empty() => match permit {
                Ok(permit) => permit.send(Command::SendMany(std::mem::take(&mut echoes))),
                // The supervisor is gone; its end is reported below.
                Err(_) => echoes.clear(),
            },
            end = async { input_end.as_mut().expect("guarded").await }, if input_end.is_some() => {
                input_end = None;
                if let Ok(Err(err)) = end as std::result::Result<InputEnd, _> {
                    input_error = Some(err);
                }
            }
            () = sleep_until(linger_until.unwrap_or_else(Instant::now)), if linger_until.is_some() && !closing => {
                closing = true;
                close(&mut echoes, "").await;
            }
            () = signals.recv() => {
                if interrupted {
                    stdout.write(std::mem::take(&mut buf)).await;
                    stdout.finish();
                    return Err(Error::Interrupted);
                }
                interrupted = true;
                closing = true;
                close(&mut echoes, "interrupted").await;
            }
            () = stdout.closed() => {
                // The reader has all it wanted (`| head -1`): a success.
                return Ok(ExitCode::Success);
            }
        }
    }
    drop(commands);
    let result = task
        .await
        .map_err(|err| Error::Runtime(format!("the connection task failed: {err}")))?;
    let outcome = match result {
        Ok(ending) if ending.unsent > 0 => Err(Error::Runtime(format!(
            "{} queued message{} never sent",
            ending.unsent,
            if ending.unsent == 1 { " was" } else { "s were" }
        ))),
        Ok(_) => Ok(ExitCode::Success),
        Err(err) => Err(err),
    };
    let outcome = match (outcome, input_error, interrupted) {
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
