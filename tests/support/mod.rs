//! What the integration tests share: the runner for the real binary (`cmd`), the servers
//! and peers it is tested against, and the small helpers below, written once here rather
//! than in each test module.

pub mod cmd;
pub mod fault_proxy;
pub mod hostile;
pub mod node;
pub mod proxies;
pub mod pty;
pub mod python;
pub mod server;
pub mod tls;

pub use cmd::{FAST_BACKOFF, Tether, first_difference, numbered, random_bytes};
pub use server::Server;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, ExitStatus};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that nothing listens on right now: to dial and be refused, or to
/// hand to a server that binds it itself. Another process could take it meanwhile; the
/// tests that use it say what they saw, so such a race fails loudly.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("binding 127.0.0.1")
        .port()
}

/// Polls `cond` until it holds, failing the test after 10 s with `what` it waited for.
#[track_caller]
pub fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let started = Instant::now();
    while !cond() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child` to exit, looking every 5 ms; `None` once `deadline` has passed, with
/// the child still running (what to do with it is the caller's business).
pub fn wait_for_exit(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    wait_for_exit_sampling(child, deadline, Duration::from_millis(5), || {})
}

/// [`wait_for_exit`], calling `sample` before each look, `every` apart.
pub fn wait_for_exit_sampling(
    child: &mut Child,
    deadline: Duration,
    every: Duration,
    mut sample: impl FnMut(),
) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        sample();
        // Nothing to block on for a child's exit without a signal handler.
        if let Some(status) = child.try_wait().expect("waiting for a child process") {
            return Some(status);
        }
        if started.elapsed() > deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Kills `child` if it still runs, and reaps it: for `Drop` impls.
pub fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Reads `pipe` to its end on a thread, so the process writing it never blocks on it.
pub fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Copies a pipe into a shared buffer on a thread, so the child never blocks on it.
pub fn collect(mut pipe: impl Read + Send + 'static) -> (Arc<Mutex<Vec<u8>>>, JoinHandle<()>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = buf.clone();
    let done = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, done)
}

/// A peer server's stdout: its first line (the port it bound) comes through the receiver,
/// the rest (what its handler reports) into the buffer, read on a thread so the child never
/// blocks on the pipe.
pub fn port_line_then_reports(
    stdout: ChildStdout,
) -> (mpsc::Receiver<String>, Arc<Mutex<Vec<u8>>>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let (port_tx, port_rx) = mpsc::channel();
    let mut out = BufReader::new(stdout);
    let sink = buf.clone();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let _ = port_tx.send(line);
        let mut chunk = [0u8; 4096];
        while let Ok(n @ 1..) = out.read(&mut chunk) {
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (port_rx, buf)
}
