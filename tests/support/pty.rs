//! The real `tether` binary on a pseudo-terminal (expectrl's pty process),
//! for the interactive session: type keys, wait for what the screen gets.
//!
//! A thread reads the terminal with blocking reads and wakes waiters, so
//! waiting for output costs no CPU (expectrl's own `expect` polls), and
//! every wait has a deadline that fails the test with what was seen.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use expectrl::process::Process;
use expectrl::process::unix::{UnixProcess, WaitStatus};

use super::cmd::{BIN, CLEARED_ENV};

/// Generous: only a hang should ever reach it.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    closed: bool,
}

pub struct Pty {
    process: UnixProcess,
    input: File,
    output: Arc<(Mutex<Output>, Condvar)>,
    /// Output before this offset has been matched already.
    seen: usize,
}

impl Pty {
    /// Starts `tether ARGS` on a fresh terminal (80x24, TERM=xterm), with
    /// none of the developer's environment that would change its output.
    pub fn tether<I, S>(args: I, state_home: &std::path::Path) -> Pty
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new(BIN);
        command
            .args(args)
            .env("TERM", "xterm")
            .env("XDG_STATE_HOME", state_home);
        for var in CLEARED_ENV {
            command.env_remove(var).env_remove(var.to_lowercase());
        }
        Self::spawn(command)
    }

    pub fn spawn(command: Command) -> Pty {
        let process = UnixProcess::spawn_command(command).expect("starting tether on a pty");
        let mut reader = process.get_raw_handle().expect("the pty's master");
        let input = process.get_raw_handle().expect("the pty's master");
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // EIO once the child has exited and the terminal is gone.
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, changed) = &*sink;
                // A test that failed while holding the lock poisoned it.
                let mut out = lock.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    out.closed = true;
                    changed.notify_all();
                    return;
                }
                out.bytes.extend_from_slice(&buf[..n]);
                changed.notify_all();
            }
        });
        Pty {
            process,
            input,
            output,
            seen: 0,
        }
    }

    /// Types bytes (keys) into the terminal.
    pub fn send(&mut self, keys: impl AsRef<[u8]>) -> &mut Pty {
        self.input.write_all(keys.as_ref()).expect("typing");
        self.input.flush().expect("typing");
        self
    }

    /// Types a line and presses Enter.
    pub fn line(&mut self, text: &str) -> &mut Pty {
        self.send(format!("{text}\r"))
    }

    /// Waits until the output after the last match contains `needle`;
    /// returns the output up to and including it, and moves past it.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_with(needle, |text| text.find(needle).map(|at| at + needle.len()))
    }

    /// The same with a regex; returns the text up to the end of the match.
    pub fn expect_regex(&mut self, pattern: &str) -> String {
        let re = regex::Regex::new(pattern).expect("a valid regex");
        self.expect_with(pattern, |text| re.find(text).map(|m| m.end()))
    }

    fn expect_with(&mut self, what: &str, find: impl Fn(&str) -> Option<usize>) -> String {
        let started = Instant::now();
        let (lock, changed) = &*self.output;
        let mut out = lock.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&out.bytes[self.seen..]).into_owned();
            if let Some(end) = find(&text) {
                // Lossy decoding keeps the length of valid UTF-8 text.
                let matched = text[..end].to_owned();
                self.seen += matched.len();
                return matched;
            }
            let left = DEADLINE.saturating_sub(started.elapsed());
            if out.closed || left.is_zero() {
                panic!(
                    "the terminal never showed {what:?} ({}); after the last match it showed:\n{text:?}",
                    if out.closed {
                        "tether exited"
                    } else {
                        "deadline"
                    }
                );
            }
            out = changed.wait_timeout(out, left).unwrap().0;
        }
    }

    /// Everything the terminal received so far, matched or not.
    pub fn all_output(&self) -> String {
        String::from_utf8_lossy(&self.output.0.lock().unwrap().bytes).into_owned()
    }

    pub fn signal(&mut self, signal: expectrl::process::unix::Signal) {
        self.process.kill(signal).expect("signalling tether");
    }

    /// Waits for tether to exit and returns its exit code.
    pub fn exit_code(&mut self) -> i32 {
        let started = Instant::now();
        loop {
            match self.process.status().expect("tether's status") {
                WaitStatus::Exited(_, code) => return code,
                WaitStatus::Signaled(_, signal, _) => panic!("tether was killed by {signal}"),
                _ if started.elapsed() > DEADLINE => panic!(
                    "tether did not exit within {DEADLINE:?}; the terminal showed:\n{:?}",
                    self.all_output()
                ),
                // Nothing to block on for a child's exit without a signal handler.
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}
