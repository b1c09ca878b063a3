//! Python `websockets` as a real third-party WebSocket server.
//!
//! Interop tests must run against software nobody here wrote. [`PythonPeer::venv`] installs
//! `websockets` into `<repo>/.peers/venv` once (a fresh CI machine has nothing installed),
//! and [`PythonServer`] runs a handler written in Python on 127.0.0.1 behind a tiny harness
//! that reports the port it bound. The server dies with its handle, and also by itself when
//! the test process dies (the harness exits when its stdin closes).
//!
//! The interpreter is `python3` from `PATH`, or `$TETHER_PYTHON` if set.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{collect, kill_and_reap, port_line_then_reports};

/// The pip requirement installed into the venv.
pub const REQUIREMENT: &str = "websockets>=15,<18";

/// How long the server may take to print its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `handler` (defined by the handler source in `sys.argv[1]`) on 127.0.0.1, port
/// `sys.argv[2]` (0 = any), or on the Unix socket `unix:PATH` given there, and prints the
/// bound port (0 for a Unix socket) as the first stdout line. The source
/// may define `SERVE_KWARGS`, a dict of extra keyword arguments for `serve` (for example
/// `{"ping_interval": 1}`). Exits when stdin reaches EOF, i.e. when the parent is gone.
const HARNESS: &str = r#"
import asyncio, os, sys, threading
from websockets.asyncio.server import serve

ns = {"__name__": "tether_handler"}
exec(compile(sys.argv[1], "<handler>", "exec"), ns)

def watch_parent():
    sys.stdin.buffer.read()
    os._exit(0)

threading.Thread(target=watch_parent, daemon=True).start()

async def main():
    kwargs = ns.get("SERVE_KWARGS", {})
    where = sys.argv[2]
    if where.startswith("unix:"):
        # A stale socket file at the path is replaced (asyncio does that).
        from websockets.asyncio.server import unix_serve
        server = unix_serve(ns["handler"], where[len("unix:"):], **kwargs)
    else:
        server = serve(ns["handler"], "127.0.0.1", int(where), **kwargs)
    async with server as server:
        port = 0 if where.startswith("unix:") else server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await server.serve_forever()

asyncio.run(main())
"#;

/// Echoes every message: text stays text, binary stays binary.
pub const ECHO: &str = r#"
async def handler(ws):
    async for message in ws:
        await ws.send(message)
"#;

/// A handler that echoes the first message, then closes with `code` and `reason`.
pub fn close_with(code: u16, reason: &str) -> String {
    format!(
        r#"
async def handler(ws):
    await ws.send(await ws.recv())
    await ws.close({code}, {reason})
"#,
        reason = py_str(reason)
    )
}

/// A Python string literal for `s`.
pub fn py_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub struct PythonPeer;

impl PythonPeer {
    /// The venv with `websockets` installed, created on first use. Safe to call from many
    /// threads and test binaries at once: each builder works in its own temp dir and renames
    /// it into place; a builder that loses the race uses the winner's venv.
    pub fn venv() -> PathBuf {
        static VENV: OnceLock<PathBuf> = OnceLock::new();
        VENV.get_or_init(|| {
            let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers");
            let venv = peers.join("venv");
            if !venv.join("bin/python").exists() {
                build_venv(&peers, &venv);
            }
            venv
        })
        .clone()
    }

    /// The venv's interpreter.
    pub fn python() -> PathBuf {
        Self::venv().join("bin/python")
    }
}

fn build_venv(peers: &Path, venv: &Path) {
    std::fs::create_dir_all(peers).expect("create .peers");
    let tmp = tempfile::Builder::new()
        .prefix("venv-building-")
        .tempdir_in(peers)
        .expect("temp dir for venv");
    let python = std::env::var_os("TETHER_PYTHON").unwrap_or_else(|| "python3".into());
    run(Command::new(&python).args(["-m", "venv"]).arg(tmp.path()));
    run(Command::new(tmp.path().join("bin/python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        REQUIREMENT,
    ]));
    // Scripts in bin/ embed the temp path, but bin/python finds its prefix through
    // pyvenv.cfg, so the venv works after the rename.
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, venv).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            venv.join("bin/python").exists(),
            "could not install the venv at {}",
            venv.display()
        );
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running Python `websockets` server. Killed on drop.
pub struct PythonServer {
    child: Child,
    handler: String,
    port: u16,
    /// The Unix socket it listens on instead of a port.
    unix: Option<PathBuf>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl PythonServer {
    /// Starts `handler` (Python source defining `async def handler(ws)`) on a free port.
    pub fn start(handler: &str) -> PythonServer {
        Self::start_on(handler, 0)
    }

    /// Starts `handler` on a given port (0 = any), e.g. to come back on the same port.
    pub fn start_on(handler: &str, port: u16) -> PythonServer {
        Self::launch(handler, port, None)
    }

    /// Starts `handler` on the Unix-domain socket `path` (`unix_serve`).
    pub fn start_unix(handler: &str, path: &Path) -> PythonServer {
        Self::launch(handler, 0, Some(path.to_owned()))
    }

    fn launch(handler: &str, port: u16, unix: Option<PathBuf>) -> PythonServer {
        let listen = match &unix {
            Some(path) => format!("unix:{}", path.display()),
            None => port.to_string(),
        };
        let mut child = Command::new(PythonPeer::python())
            .arg("-u")
            .arg("-c")
            .arg(HARNESS)
            .arg(handler)
            .arg(listen)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the Python server");
        let (stderr, stderr_done) = collect(child.stderr.take().unwrap());
        let (port_rx, stdout) = port_line_then_reports(child.stdout.take().unwrap());
        let mut server = PythonServer {
            child,
            handler: handler.to_owned(),
            port: 0,
            unix,
            stdout,
            stderr,
        };
        let line = port_rx.recv_timeout(START_TIMEOUT).unwrap_or_default();
        match line.trim().parse() {
            Ok(port) => server.port = port,
            Err(_) => {
                kill_and_reap(&mut server.child);
                let _ = stderr_done.join();
                panic!(
                    "Python server exited or did not print its port within {START_TIMEOUT:?} (stdout {line:?}); stderr:\n{}",
                    server.stderr()
                );
            }
        }
        server
    }

    /// Kills the server and starts the same handler again on the same port (or socket).
    pub fn restart(&mut self) {
        self.stop();
        *self = Self::launch(&self.handler, self.port, self.unix.clone());
    }

    /// Kills the server now (also done on drop).
    pub fn stop(&mut self) {
        kill_and_reap(&mut self.child);
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `ws://127.0.0.1:PORT/path` (a leading `/` on `path` is optional).
    pub fn url(&self, path: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// What the handler printed after the port line so far.
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    /// The server's stderr so far (websockets logs errors here).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        self.stop();
    }
}
