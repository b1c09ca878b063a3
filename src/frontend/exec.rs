//! `--exec CMD`: pipe mode with a program in place of stdin and stdout.
//!
//! The program's output is read by the stdin reader (records, batches,
//! backpressure) and what pipe mode writes to stdout goes to its input
//! through the stdout writer, so the driver is the one every mode runs: the
//! queue, the replay after a reconnect (which the program never sees),
//! `--on-connect`, heartbeats, `--linger` and `--count` hold as in a pipe.
//! Its stderr is tether's.
//!
//! How it ends:
//! - Its output ends (it exited, or closed its stdout): as at stdin's EOF,
//!   what is queued is delivered, replies are awaited for `--linger`, and the
//!   connection closes. Then tether waits for it to exit (SIGTERM after
//!   [`GRACE`], SIGKILL after another), and a program that failed passes its
//!   status on ([`Error::Program`]), unless the session failed itself.
//! - The session ends first (the server closed, reconnects gave up,
//!   `--count`): what was received is written to it (for up to [`GRACE`]),
//!   its input is closed, it gets SIGTERM, and SIGKILL after [`GRACE`]. After
//!   a signal, SIGTERM goes at once, so tether still leaves within the signal's
//!   bound. The session's end is the exit status, not the program's.
//!
//! The program runs in a process group of its own: a Ctrl-C on the terminal
//! reaches tether only, which ends the program as above.

use std::fs::File;
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout_at};

use super::session::{Mode, Over, Session};
use crate::config::ExecConfig;
use crate::error::{Error, ExitCode, ProgramEnd, Result};
use crate::render::eprint_line;
use crate::session::Payload;

/// How long the program is given to exit before each escalation: after its
/// output ended (then SIGTERM), after SIGTERM (then SIGKILL); and how long
/// what was received may take to be written to it at the end.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// The running program.
pub(crate) struct Program {
    child: Child,
    command: String,
    /// When it was sent SIGTERM.
    terminated: Option<Instant>,
}

/// The program's pipes, as blocking files for the reader and writer threads.
pub(crate) struct Pipes {
    /// Its stdin: where received messages go.
    pub input: File,
    /// Its stdout: what is sent.
    pub output: File,
}

/// Starts the program, before anything is dialled: one that cannot run is
/// an error of its own (exit 127 or 126) with nothing sent.
pub(crate) fn spawn(exec: &ExecConfig) -> Result<(Program, Pipes)> {
    let program = &exec.argv[0];
    let mut child = Command::new(program)
        .args(&exec.argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| cannot_run(exec, &err))?;
    let pipe = |fd: std::io::Result<std::os::fd::OwnedFd>| {
        fd.map(File::from).map_err(|err| Error::Exec {
            command: exec.command.clone(),
            detail: format!("cannot set up its pipes: {err}"),
            not_found: false,
        })
    };
    let input = pipe(child.stdin.take().expect("piped").into_owned_fd())?;
    let output = pipe(child.stdout.take().expect("piped").into_owned_fd())?;
    tracing::debug!(pid = child.id(), "started --exec {:?}", exec.command);
    Ok((
        Program {
            child,
            command: exec.command.clone(),
            terminated: None,
        },
        Pipes { input, output },
    ))
}

fn cannot_run(exec: &ExecConfig, err: &std::io::Error) -> Error {
    let program = &exec.argv[0];
    let (detail, not_found) = match err.kind() {
        std::io::ErrorKind::NotFound if program.contains('/') => (
            format!("{program}: no such file (or its #! interpreter is missing)"),
            true,
        ),
        std::io::ErrorKind::NotFound => (format!("{program}: not found on PATH"), true),
        std::io::ErrorKind::PermissionDenied => (format!("{program}: permission denied"), false),
        _ => (format!("{program}: {err}"), false),
    };
    Error::Exec {
        command: exec.command.clone(),
        detail,
        not_found,
    }
}

impl Program {
    /// SIGTERM, once.
    fn terminate(&mut self) {
        if self.terminated.is_some() {
            return;
        }
        self.terminated = Some(Instant::now());
        // `id` is gone once the child is reaped, and only `wait` reaps it:
        // the pid cannot belong to another process here.
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            tracing::debug!(pid, "SIGTERM to --exec {:?}", self.command);
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    /// Waits for the program to exit, escalating as the module says: it is
    /// sent SIGTERM at once unless its output had ended. `None` if it could
    /// not be waited for.
    async fn stop(&mut self, output_ended: bool) -> Option<ExitStatus> {
        if !output_ended {
            self.terminate();
        }
        let first = self.terminated.unwrap_or_else(Instant::now) + GRACE;
        if let Ok(status) = timeout_at(first, self.child.wait()).await {
            return status.ok();
        }
        if self.terminated.is_none() {
            self.terminate();
            let at = Instant::now() + GRACE;
            if let Ok(status) = timeout_at(at, self.child.wait()).await {
                return status.ok();
            }
        }
        eprint_line(&format!(
            "warning: --exec {:?} did not exit within {}s of SIGTERM; killed it",
            self.command,
            GRACE.as_secs()
        ));
        let _ = self.child.start_kill();
        // SIGKILL cannot be ignored; a process stuck in the kernel is not
        // worth a hang.
        let at = Instant::now() + GRACE;
        timeout_at(at, self.child.wait()).await.ok()?.ok()
    }
}

/// A status that is a failure, as [`Error::Program`] reports it.
fn failed(status: ExitStatus) -> Option<ProgramEnd> {
    match (status.code(), status.signal()) {
        (Some(0), _) => None,
        (Some(code), _) => Some(ProgramEnd::Code(u8::try_from(code).unwrap_or(255))),
        (None, Some(signal)) => Some(ProgramEnd::Signal(signal)),
        (None, None) => None,
    }
}

pub(crate) struct Exec {
    pub program: Program,
}

impl Mode for Exec {
    type Wake = ();

    /// The program closing its input (or exiting) ends nothing: what it
    /// sent is still delivered, and replies are awaited as at stdin's EOF.
    fn reader_gone_ends(&self) -> bool {
        false
    }

    fn output_bound(&self) -> Option<Duration> {
        Some(GRACE)
    }

    async fn message(&mut self, s: &mut Session<'_>, payload: Payload) {
        s.print_message(&payload);
    }

    async fn interrupted(&mut self, _s: &mut Session<'_>) {
        self.program.terminate();
    }

    async fn end(mut self, s: &mut Session<'_>, over: Over) -> Result<ExitCode> {
        // Its status is its own only if it ended before tether signalled it.
        let output_ended = s.input_ended() && self.program.terminated.is_none();
        let outcome = s.outcome(over);
        s.report_error(&outcome);
        // Its input closes once what is rendered is written to it (as long
        // as it reads, within the grace period).
        if let Some(out) = s.out.take() {
            let by = match (self.program.terminated, s.interrupted) {
                (Some(at), _) | (None, Some(at)) => at + GRACE,
                (None, None) => Instant::now() + GRACE,
            };
            out.finish(Some(by)).await;
        }
        let status = self.program.stop(output_ended).await;
        tracing::debug!("--exec {:?} ended: {status:?}", self.program.command);
        let failure = status.and_then(failed).filter(|_| output_ended);
        match (outcome, failure) {
            (Ok(_), Some(end)) => Err(Error::Program {
                command: self.program.command,
                end,
            }),
            (Err(err), Some(end)) => {
                eprint_line(&format!("warning: --exec {:?} {end}", self.program.command));
                Err(err)
            }
            (outcome, None) => outcome,
        }
    }
}
