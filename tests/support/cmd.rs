//! A fluent way to run the real `tether` binary, so each test reads as a
//! scenario:
//!
//! ```ignore
//! Tether::new().arg(server.url("/")).stdin("hi\n").run().code(0).stdout_is("hi\n");
//! ```
//!
//! Every run has a deadline: a hung binary fails the test with its output
//! instead of hanging the suite. The checks are `#[track_caller]`: a failure
//! names the test's line, not this file's.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{drain, kill_and_reap, wait_for_exit, wait_for_exit_sampling};

pub const BIN: &str = env!("CARGO_BIN_EXE_tether");

/// Variables (and their lowercase forms) removed from every run: tests must
/// not depend on the developer's environment.
pub const CLEARED_ENV: &[&str] = &[
    "NO_COLOR",
    "RUST_LOG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// Removes [`CLEARED_ENV`] from a command that runs the binary without [`Tether`].
pub fn clear_env(command: &mut Command) -> &mut Command {
    for var in CLEARED_ENV {
        command.env_remove(var).env_remove(var.to_lowercase());
    }
    command
}

/// Fast reconnects, for tests that need a second attempt (or a few) without waiting.
pub const FAST_BACKOFF: [&str; 4] = ["--backoff-initial", "10ms", "--backoff-max", "20ms"];

/// What tether's own error line on stderr starts with.
pub const ERROR_PREFIX: &str = "tether: error:";

/// `n` numbered lines, `0\n` to `n-1\n`.
pub fn numbered(n: usize) -> String {
    (0..n).map(|i| format!("{i}\n")).collect()
}

/// `len` bytes that look random (xorshift64*, from `seed`): the same on every run.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where two byte strings first differ, for a failure message that does not print them.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let common = a.iter().zip(b).position(|(x, y)| x != y);
    common.or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Generous: only a hang should ever reach it.
const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

pub struct Tether {
    args: Vec<OsString>,
    stdin: Vec<u8>,
    env: Vec<(OsString, Option<OsString>)>,
    deadline: Duration,
    /// Whether [`Tether::spawn`] reads stdout (a reader that stalls is a scenario too).
    read_stdout: bool,
    /// With [`Tether::run_peak_rss`]: read stdout this many bytes a millisecond at most.
    stdout_rate: Option<usize>,
    /// stdout goes to this file instead of a pipe (`/dev/full`).
    stdout_file: Option<std::path::PathBuf>,
    /// With [`Tether::spawn`]: a producer that writes lines to stdin until tether stops reading.
    stdin_endless: bool,
}

impl Default for Tether {
    fn default() -> Self {
        Self::new()
    }
}

impl Tether {
    pub fn new() -> Tether {
        Tether {
            args: Vec::new(),
            stdin: Vec::new(),
            env: CLEARED_ENV
                .iter()
                .flat_map(|v| [v.to_string(), v.to_lowercase()])
                .map(|v| (OsString::from(v), None))
                .collect(),
            deadline: DEFAULT_DEADLINE,
            read_stdout: true,
            stdout_rate: None,
            stdout_file: None,
            stdin_endless: false,
        }
    }

    /// stdout is this file (`/dev/full` for a full disk); nothing is read back.
    pub fn stdout_to(mut self, path: impl Into<std::path::PathBuf>) -> Tether {
        self.stdout_file = Some(path.into());
        self
    }

    /// With [`Tether::spawn`]: stdin never ends; a thread writes lines to it
    /// as fast as tether takes them.
    pub fn stdin_endless(mut self) -> Tether {
        self.stdin_endless = true;
        self
    }

    /// With [`Tether::spawn`]: hold stdout open but never read it, like a
    /// reader that has stalled. The pipe fills and tether's writes block.
    pub fn stdout_unread(mut self) -> Tether {
        self.read_stdout = false;
        self
    }

    /// With [`Tether::run_peak_rss`]: a reader of stdout that takes at most `bytes` a
    /// millisecond, so tether's output backs up.
    pub fn slow_stdout(mut self, bytes: usize) -> Tether {
        self.stdout_rate = Some(bytes);
        self
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Tether {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Tether
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Tether {
        self.stdin = input.as_ref().to_vec();
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Tether {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    pub fn deadline(mut self, deadline: Duration) -> Tether {
        self.deadline = deadline;
        self
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = &self.stdout_file {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("opening the stdout file");
            cmd.stdout(file);
        }
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd
    }

    /// Runs to completion with the given stdin, which is then closed.
    #[track_caller]
    pub fn run(self) -> Run {
        let mut child = self.command().spawn().expect("starting tether");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = self.stdin.clone();
        let writer = std::thread::spawn(move || {
            // A closed pipe is the binary's business (it may exit early).
            let _ = stdin.write_all(&input);
        });
        let run = wait_with_deadline(child, self.deadline, &self.args);
        let _ = writer.join();
        run
    }

    /// As [`Tether::run`], and also the highest `VmHWM` (peak
    /// resident memory, KiB) read from `/proc/PID/status` while the process ran. It is
    /// sampled every millisecond: memory that grows with what is read from the network
    /// grows over many samples, which is what the tests using this look for. (`ru_maxrss`
    /// from `wait4` is no use here: Linux charges the forking test process's own peak to it.)
    #[track_caller]
    pub fn run_peak_rss(self) -> (Run, u64) {
        let mut child = self.command().spawn().expect("starting tether");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = self.stdin.clone();
        let writer = std::thread::spawn(move || {
            // A closed pipe is the binary's business (it may exit early).
            let _ = stdin.write_all(&input);
        });
        let (out, err) = read_output(&mut child, self.stdout_rate);
        let status_file = format!("/proc/{}/status", child.id());
        let started = std::time::Instant::now();
        let mut peak = 0;
        let mut samples = 0;
        let sample = || {
            if let Some(hwm) = std::fs::read_to_string(&status_file)
                .ok()
                .and_then(|s| vm_hwm_kib(&s))
            {
                peak = peak.max(hwm);
                samples += 1;
            }
        };
        let status =
            wait_for_exit_sampling(&mut child, self.deadline, Duration::from_millis(1), sample);
        if status.is_none() {
            kill_and_reap(&mut child);
        }
        let _ = writer.join();
        let run = Run {
            code: status.and_then(|s| s.code()),
            stdout: out.join().unwrap_or_default(),
            stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
            elapsed: started.elapsed(),
        };
        assert!(
            status.is_some(),
            "tether {:?} did not finish within {:?}\n{}",
            self.args,
            self.deadline,
            run.describe()
        );
        assert!(samples > 0, "no memory sample\n{}", run.describe());
        (run, peak)
    }

    /// Starts the binary and hands back its pipes, for scenarios that need
    /// to act while it runs.
    #[track_caller]
    pub fn spawn(self) -> Running {
        let mut child = self.command().spawn().expect("starting tether");
        let mut stdin = child.stdin.take();
        let mut threads = Vec::new();
        if self.stdin_endless
            && let Some(mut pipe) = stdin.take()
        {
            threads.push(std::thread::spawn(move || {
                let lines = "endless input\n".repeat(1024);
                while pipe.write_all(lines.as_bytes()).is_ok() {}
            }));
        }
        let mut stdout = child.stdout.take();
        let unread_stdout = if self.read_stdout {
            None
        } else {
            stdout.take()
        };
        let stderr = child.stderr.take().expect("piped stderr");
        let (line_tx, line_rx) = mpsc::channel();
        let out_thread = std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).split(b'\n') {
                let Ok(line) = line else { break };
                if line_tx
                    .send(String::from_utf8_lossy(&line).into_owned())
                    .is_err()
                {
                    break;
                }
            }
        });
        let (err_tx, err_rx) = mpsc::channel();
        let err_thread = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if err_tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            stdin,
            unread_stdout,
            lines: line_rx,
            errors: err_rx,
            stderr_seen: Vec::new(),
            threads: {
                threads.extend([out_thread, err_thread]);
                threads
            },
            deadline: self.deadline,
        }
    }
}

/// The `VmHWM` line of a `/proc/PID/status`, in KiB.
fn vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Threads that read the child's stdout and stderr to the end.
fn read_output(
    child: &mut Child,
    rate: Option<usize>,
) -> (JoinHandle<Vec<u8>>, JoinHandle<Vec<u8>>) {
    let stdout = child.stdout.take();
    let stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        // Not piped: stdout went to a file.
        let Some(mut stdout) = stdout else {
            return buf;
        };
        match rate {
            None => {
                let _ = stdout.read_to_end(&mut buf);
            }
            Some(rate) => {
                let mut chunk = vec![0u8; rate];
                while let Ok(n @ 1..) = stdout.read(&mut chunk) {
                    buf.extend_from_slice(&chunk[..n]);
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        buf
    });
    (out, drain(stderr))
}

#[track_caller]
fn wait_with_deadline(mut child: Child, deadline: Duration, args: &[OsString]) -> Run {
    let (out, err) = read_output(&mut child, None);
    let started = std::time::Instant::now();
    let status = wait_for_exit(&mut child, deadline);
    if status.is_none() {
        kill_and_reap(&mut child);
    }
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let run = Run {
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
        elapsed: started.elapsed(),
    };
    assert!(
        status.is_some(),
        "tether {args:?} did not finish within {deadline:?}\n{}",
        run.describe()
    );
    run
}

/// A finished run.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn describe(&self) -> String {
        format!(
            "exit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        )
    }

    #[track_caller]
    pub fn code(&self, expected: i32) -> &Run {
        assert_eq!(self.code, Some(expected), "{}", self.describe());
        self
    }

    #[track_caller]
    pub fn stdout_str(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    #[track_caller]
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_str().lines().map(str::to_owned).collect()
    }

    #[track_caller]
    pub fn stdout_is(&self, expected: &str) -> &Run {
        assert_eq!(self.stdout_str(), expected, "{}", self.describe());
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}\n{}",
            self.describe()
        );
        self
    }

    #[track_caller]
    pub fn stderr_lacks(&self, needle: &str) -> &Run {
        assert!(
            !self.stderr.contains(needle),
            "stderr has {needle:?}\n{}",
            self.describe()
        );
        self
    }

    /// tether's own error lines on stderr (`tether: error: ...`), in order.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with(ERROR_PREFIX))
            .collect()
    }

    /// The first of [`Run::error_lines`]; fails the test if there is none.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        match self.error_lines().first() {
            Some(line) => line,
            None => panic!("no error line\n{}", self.describe()),
        }
    }

    /// The `--json` events on stdout.
    #[track_caller]
    pub fn json_events(&self) -> Vec<serde_json::Value> {
        self.stdout_str()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
            .collect()
    }
}

/// A binary still running: write to it, read its lines as they come.
pub struct Running {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Held open and never read, for [`Tether::stdout_unread`].
    #[allow(dead_code)]
    unread_stdout: Option<ChildStdout>,
    lines: mpsc::Receiver<String>,
    errors: mpsc::Receiver<String>,
    stderr_seen: Vec<String>,
    threads: Vec<JoinHandle<()>>,
    deadline: Duration,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The CPU time (user and system, all threads) tether has used so far,
    /// to the kernel's tick (10 ms).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("reading /proc/PID/stat");
        // Fields after the command name, which is in parentheses: utime and
        // stime are the 12th and 13th, in clock ticks (USER_HZ, 100 on Linux).
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    #[track_caller]
    pub fn send(&mut self, input: impl AsRef<[u8]>) -> &mut Running {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(input.as_ref()).expect("writing to tether");
        stdin.flush().expect("flushing tether's stdin");
        self
    }

    pub fn close_stdin(&mut self) -> &mut Running {
        self.stdin = None;
        self
    }

    /// The next stdout line, or a failure with what was seen if none comes
    /// in time.
    #[track_caller]
    pub fn line(&mut self) -> String {
        match self.lines.recv_timeout(self.deadline) {
            Ok(line) => line,
            Err(_) => {
                let deadline = self.deadline;
                panic!(
                    "no stdout line within {deadline:?}; stderr so far:\n{}",
                    self.stderr_until_now().join("\n")
                )
            }
        }
    }

    /// Waits for a stderr line containing `needle`, and returns it.
    #[track_caller]
    pub fn stderr_line(&mut self, needle: &str) -> String {
        self.stderr_nth(needle, 1)
    }

    /// Waits for the `n`-th stderr line (from 1) containing `needle`.
    #[track_caller]
    pub fn stderr_nth(&mut self, needle: &str, n: usize) -> String {
        let started = std::time::Instant::now();
        loop {
            if let Some(line) = self
                .stderr_seen
                .iter()
                .filter(|l| l.contains(needle))
                .nth(n - 1)
            {
                return line.clone();
            }
            let left = self.deadline.saturating_sub(started.elapsed());
            match self.errors.recv_timeout(left) {
                Ok(line) => self.stderr_seen.push(line),
                Err(_) => panic!(
                    "no stderr line with {needle:?} within {:?}; stderr:\n{}",
                    self.deadline,
                    self.stderr_seen.join("\n")
                ),
            }
        }
    }

    pub fn stderr_until_now(&mut self) -> &[String] {
        while let Ok(line) = self.errors.try_recv() {
            self.stderr_seen.push(line);
        }
        &self.stderr_seen
    }

    #[track_caller]
    pub fn signal(&mut self, signal: &str) -> &mut Running {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{signal} failed");
        self
    }

    /// Waits for the exit; returns the code and the rest of stdout.
    #[track_caller]
    pub fn wait(mut self) -> (Option<i32>, Vec<String>) {
        self.stdin = None;
        let Some(status) = wait_for_exit(&mut self.child, self.deadline) else {
            kill_and_reap(&mut self.child);
            let deadline = self.deadline;
            panic!(
                "tether did not exit within {deadline:?}; stderr:\n{}",
                self.stderr_until_now().join("\n")
            );
        };
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let rest = self.lines.try_iter().collect();
        self.stderr_until_now();
        (status.code(), rest)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}
