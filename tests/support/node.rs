//! Node `ws` as a real third-party WebSocket server (browsers' and wscat's library).
//!
//! [`NodePeer::modules`] installs `ws` 8.x into `<repo>/.peers/node` with npm once (a fresh
//! CI machine has nothing installed), and [`NodeServer`] runs a handler written in
//! JavaScript on 127.0.0.1 behind a small harness that reports the port it bound. The server
//! dies with its handle, and also by itself when the test process dies (the harness exits
//! when its stdin closes).
//!
//! Node is `node` from `PATH`, or `$TETHER_NODE` if set; npm is `npm` from `PATH`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use super::{collect, kill_and_reap, port_line_then_reports};

/// The npm package spec installed into `.peers/node`.
pub const REQUIREMENT: &str = "ws@8";

/// How long the server may take to print its port.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the handler source in `$TETHER_NODE_HANDLER` on 127.0.0.1, port
/// `$TETHER_NODE_PORT` (0 = any), and prints the bound port as the first stdout line.
/// The source defines `function handler(ws, req)`, called for each connection, and may set
/// `var OPTIONS = {...}`, extra options for `WebSocketServer` (`perMessageDeflate`,
/// `autoPong`, ...). In its scope: `WebSocket`, `WebSocketServer`, `zlib`, `report(value)`
/// (one JSON line on stdout, for [`NodeServer::reports`]) and `wire(ws)` (counts the frames
/// each way as they crossed the wire, see below). Exits when stdin reaches EOF, i.e.
/// when the parent is gone.
const HARNESS: &str = r#"
const { WebSocket, WebSocketServer } = require(process.env.TETHER_WS_MODULE);
const zlib = require('zlib');

function report(value) {
  process.stdout.write(JSON.stringify(value) + '\n');
}

// Frames as they cross the wire, counted from the raw bytes (so before ws inflates what it
// reads, after it compresses what it writes): data frames (continuations included), those
// with RSV1 (compressed), control frames, and all the bytes.
function frameCounter(stats) {
  let pending = Buffer.alloc(0);
  let skip = 0;
  return (chunk) => {
    stats.bytes += chunk.length;
    if (skip >= chunk.length) {
      skip -= chunk.length;
      return;
    }
    chunk = chunk.subarray(skip);
    skip = 0;
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    for (;;) {
      if (pending.length < 2) break;
      let len = pending[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (pending.length < 4) break;
        len = pending.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (pending.length < 10) break;
        len = Number(pending.readBigUInt64BE(2));
        at = 10;
      }
      if (pending[1] & 0x80) at += 4;
      if (pending.length < at) break;
      if ((pending[0] & 0x0f) >= 8) {
        stats.control += 1;
      } else {
        stats.frames += 1;
        if (pending[0] & 0x40) stats.compressed += 1;
      }
      if (pending.length < at + len) {
        skip = at + len - pending.length;
        pending = Buffer.alloc(0);
        break;
      }
      pending = pending.subarray(at + len);
    }
  };
}

// What the client wrote (`read`) and what ws wrote to it (`written`) on this connection,
// from now on: a second 'data' listener sees the chunks ws reads, and the socket's write
// is wrapped.
function wire(ws) {
  const read = { bytes: 0, frames: 0, compressed: 0, control: 0 };
  const written = { ...read };
  ws._socket.on('data', frameCounter(read));
  const socket = ws._socket;
  const write = socket.write;
  const count = frameCounter(written);
  socket.write = function (chunk, ...rest) {
    count(Buffer.from(chunk));
    return write.call(this, chunk, ...rest);
  };
  return { read, written };
}

// Sloppy mode, so the source's `function handler` and `var OPTIONS` land in this scope.
function load(source) {
  var OPTIONS = {}, handler;
  eval(source);
  return { options: OPTIONS, handler };
}

const { options, handler } = load(process.env.TETHER_NODE_HANDLER);
const wss = new WebSocketServer({
  ...options,
  host: '127.0.0.1',
  port: Number(process.env.TETHER_NODE_PORT),
});
wss.on('listening', () => process.stdout.write(wss.address().port + '\n'));
wss.on('connection', (ws, req) => handler(ws, req));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
"#;

pub struct NodePeer;

impl NodePeer {
    /// `.peers/node`, with `ws` installed in its `node_modules`, made on first use. Safe
    /// to call from many threads and test binaries at once: each installer works in its
    /// own temp dir and renames it into place; one that loses the race uses the winner's.
    pub fn prefix() -> PathBuf {
        static PREFIX: OnceLock<PathBuf> = OnceLock::new();
        PREFIX
            .get_or_init(|| {
                let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers");
                let prefix = peers.join("node");
                if !ws_module(&prefix).join("package.json").exists() {
                    install(&peers, &prefix);
                }
                prefix
            })
            .clone()
    }

    /// The `ws` package's directory, for `require`.
    pub fn ws() -> PathBuf {
        ws_module(&Self::prefix())
    }

    /// The installed `ws` version, such as `8.18.3`.
    pub fn ws_version() -> String {
        let manifest = std::fs::read_to_string(Self::ws().join("package.json"))
            .expect("reading ws's package.json");
        let manifest: serde_json::Value = serde_json::from_str(&manifest).expect("package.json");
        manifest["version"].as_str().expect("a version").to_owned()
    }

    /// The Node interpreter.
    pub fn node() -> std::ffi::OsString {
        std::env::var_os("TETHER_NODE").unwrap_or_else(|| "node".into())
    }
}

fn ws_module(prefix: &Path) -> PathBuf {
    prefix.join("node_modules/ws")
}

fn install(peers: &Path, prefix: &Path) {
    std::fs::create_dir_all(peers).expect("create .peers");
    let tmp = tempfile::Builder::new()
        .prefix("node-installing-")
        .tempdir_in(peers)
        .expect("temp dir for npm");
    let mut npm = Command::new("npm");
    npm.args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
        .arg("--prefix")
        .arg(tmp.path())
        .arg(REQUIREMENT);
    let out = npm.output().unwrap_or_else(|e| {
        panic!("cannot run npm to install Node `ws` for the interop tests ({npm:?}): {e}; install Node.js and npm")
    });
    assert!(
        out.status.success(),
        "installing Node `ws` with npm failed ({}): {npm:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // node_modules holds no absolute paths, so the prefix works after the rename.
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, prefix).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
        assert!(
            ws_module(prefix).join("package.json").exists(),
            "could not install Node `ws` at {}",
            prefix.display()
        );
    }
}

/// A running Node `ws` server. Killed on drop.
pub struct NodeServer {
    child: Child,
    port: u16,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl NodeServer {
    /// Starts `handler` (JavaScript, see [`HARNESS`]) on a free port.
    pub fn start(handler: &str) -> NodeServer {
        let mut child = Command::new(NodePeer::node())
            .arg("-e")
            .arg(HARNESS)
            .env("TETHER_WS_MODULE", NodePeer::ws())
            .env("TETHER_NODE_HANDLER", handler)
            .env("TETHER_NODE_PORT", "0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node (install Node.js, or set TETHER_NODE)");
        let (stderr, stderr_done) = collect(child.stderr.take().unwrap());
        let (port_rx, stdout) = port_line_then_reports(child.stdout.take().unwrap());
        let mut server = NodeServer {
            child,
            port: 0,
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
                    "Node server exited or did not print its port within {START_TIMEOUT:?} (stdout {line:?}); stderr:\n{}",
                    server.stderr()
                );
            }
        }
        server
    }

    /// `ws://127.0.0.1:PORT/path` (a leading `/` on `path` is optional).
    pub fn url(&self, path: &str) -> String {
        format!(
            "ws://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }

    /// What the handler has `report`ed so far, one value a line.
    pub fn reports(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.stdout.lock().unwrap())
            .lines()
            .map(|line| serde_json::from_str(line).expect("a report line is JSON"))
            .collect()
    }

    /// Waits (up to 10 s) for the handler's `n`th report and returns it.
    #[track_caller]
    pub fn report(&self, n: usize) -> serde_json::Value {
        super::wait_for(&format!("report {n} from the Node server"), || {
            self.reports().len() >= n
        });
        self.reports()[n - 1].clone()
    }

    /// The server's stderr so far (an uncaught exception lands here).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}
