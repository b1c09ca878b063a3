//! The real `tether` binary on a pseudo-terminal, for the interactive
//! session: type keys, wait for what the screen gets, hang the terminal up.
//!
//! A thread reads the terminal with blocking reads and wakes waiters, so
//! waiting for output costs no CPU, and every wait has a deadline that fails
//! the test with what was seen. The terminal is tether's controlling
//! terminal (started through `setsid --ctty`), so closing every handle on
//! its master side hangs it up as a closed terminal window or a dropped ssh
//! session does: the kernel sends tether SIGHUP, and the terminal reads EOF
//! and fails writes from then on.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt};
use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};

use super::cmd::{BIN, clear_env};
use super::{kill_and_reap, wait_for_exit};

/// Generous: only a hang should ever reach it.
const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Output {
    bytes: Vec<u8>,
    closed: bool,
}

pub struct Pty {
    child: Child,
    /// The master side: every handle on it is closed to hang up.
    master: Option<PtyMaster>,
    input: Option<File>,
    /// Tells the reader thread to let go of its handle.
    wake: UnixStream,
    reader: Option<JoinHandle<()>>,
    output: Arc<(Mutex<Output>, Condvar)>,
    /// Output before this offset has been matched already.
    seen: usize,
}

impl Pty {
    /// Starts `tether ARGS` on a fresh terminal (80x24, TERM=xterm, echo
    /// off), with none of the developer's environment that would change its
    /// output.
    pub fn tether<I, S>(args: I, state_home: &std::path::Path) -> Pty
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("setsid");
        command
            .arg("--ctty")
            .arg(BIN)
            .args(args)
            .env("TERM", "xterm")
            .env("XDG_STATE_HOME", state_home);
        clear_env(&mut command);
        Self::spawn(command)
    }

    /// Runs `command` (which must make the terminal its controlling one,
    /// as `setsid --ctty` does) with the terminal as its stdio.
    pub fn spawn(mut command: Command) -> Pty {
        // Close-on-exec from the start: a copy of the master inherited by a
        // process another test starts meanwhile would keep the terminal up.
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
            .expect("opening a pty");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let slave_path = ptsname_r(&master).expect("the pty's name");
        let slave = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOCTTY)
            .open(&slave_path)
            .expect("opening the pty's slave");
        let mut termios = tcgetattr(&slave).expect("the terminal's settings");
        termios.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&slave, SetArg::TCSANOW, &termios).expect("turning echo off");
        let size = nix::pty::Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one Winsize, which lives across the call.
        unsafe { set_window_size(std::os::fd::AsRawFd::as_raw_fd(&slave), &size) }
            .expect("setting the window size");
        let stdio = || Stdio::from(OwnedFd::from(slave.try_clone().expect("dup")));
        command.stdin(stdio()).stdout(stdio()).stderr(stdio());
        let child = command.spawn().expect("starting tether on a pty");
        // The child holds the slave now; the test must not.
        drop(command);
        drop(slave);

        let handle = || File::from(master.as_fd().try_clone_to_owned().expect("dup"));
        let mut reader = handle();
        let input = handle();
        let (wake, woken) = UnixStream::pair().expect("a socket pair");
        let output = Arc::new((Mutex::new(Output::default()), Condvar::new()));
        let sink = Arc::clone(&output);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let mut fds = [
                    PollFd::new(reader.as_fd(), PollFlags::POLLIN),
                    PollFd::new(woken.as_fd(), PollFlags::POLLIN),
                ];
                if poll(&mut fds, PollTimeout::NONE).is_err() {
                    continue;
                }
                let hung_up = fds[1].any().unwrap_or(false);
                // EIO once the child has exited and the terminal is gone.
                let n = if hung_up {
                    0
                } else {
                    reader.read(&mut buf).unwrap_or(0)
                };
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
            child,
            master: Some(master),
            input: Some(input),
            wake,
            reader: Some(reader),
            output,
            seen: 0,
        }
    }

    /// Hangs the terminal up, as closing its window does: every handle on
    /// the master side is closed. What tether printed until now stays
    /// readable in [`Pty::all_output`]; nothing more arrives.
    pub fn hang_up(&mut self) {
        let _ = self.wake.write_all(b"x");
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.input = None;
        self.master = None;
    }

    /// Types bytes (keys) into the terminal.
    #[track_caller]
    pub fn send(&mut self, keys: impl AsRef<[u8]>) -> &mut Pty {
        let input = self.input.as_mut().expect("the terminal is not hung up");
        input.write_all(keys.as_ref()).expect("typing");
        input.flush().expect("typing");
        self
    }

    /// Types a line and presses Enter.
    #[track_caller]
    pub fn line(&mut self, text: &str) -> &mut Pty {
        self.send(format!("{text}\r"))
    }

    /// Waits until the output after the last match contains `needle`;
    /// returns the output up to and including it, and moves past it.
    #[track_caller]
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_with(needle, |text| text.find(needle).map(|at| at + needle.len()))
    }

    /// The same with a regex; returns the text up to the end of the match.
    #[track_caller]
    pub fn expect_regex(&mut self, pattern: &str) -> String {
        let re = regex::Regex::new(pattern).expect("a valid regex");
        self.expect_with(pattern, |text| re.find(text).map(|m| m.end()))
    }

    #[track_caller]
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

    pub fn signal(&mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signalling tether");
    }

    /// Waits for tether to exit and returns its exit code.
    #[track_caller]
    pub fn exit_code(&mut self) -> i32 {
        use std::os::unix::process::ExitStatusExt;
        let Some(status) = wait_for_exit(&mut self.child, DEADLINE) else {
            panic!(
                "tether did not exit within {DEADLINE:?}; the terminal showed:\n{:?}",
                self.all_output()
            )
        };
        self.drain();
        match status.code() {
            Some(code) => code,
            None => panic!("tether was killed by signal {:?}", status.signal()),
        }
    }

    /// Waits (a few seconds at most) for the reader to see the terminal close, so that
    /// everything tether wrote before it exited is in [`Pty::all_output`]: its exit can be
    /// seen before the reader thread has read its last bytes.
    fn drain(&self) {
        let (lock, changed) = &*self.output;
        let out = lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = changed.wait_timeout_while(out, Duration::from_secs(5), |out| !out.closed);
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

nix::ioctl_write_ptr_bad!(set_window_size, nix::libc::TIOCSWINSZ, nix::pty::Winsize);
