//! A fault-injection TCP proxy for integration tests.
//!
//! toxiproxy is not installable here and the kernel has no `netem`, so heartbeat, reconnect
//! and no-loss tests put this proxy between tether and a real server. It can cut or reset
//! every connection, blackhole the stream (TCP stays up, nobody answers), stall one
//! direction (backpressure builds), delay or slice what it forwards, and refuse new
//! connections.
//!
//! The proxy runs on its own thread with its own tokio runtime, so it works the same from
//! `#[test]` and `#[tokio::test]`. Dropping the handle stops the runtime, which closes the
//! listener and every proxied connection. Control methods take effect before they return.
//! Memory is bounded: each direction of each connection holds at most one 16 KiB chunk.
//! `refuse` relies on Linux semantics of `shutdown(SHUT_RD)` on a listening socket.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc as std_mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

/// How long a control call waits for the proxy thread before panicking.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);
/// After a clean cut, how long the proxy keeps reading (and discarding) until each peer
/// closes its side, so that unread data does not turn the FIN into an RST.
const LINGER_AFTER_CUT: Duration = Duration::from_secs(10);
const CHUNK: usize = 16 * 1024;

/// One direction of a proxied connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

/// Connection counters, see [`FaultProxy::connections`] and [`FaultProxy::active`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Connections accepted since start.
    pub accepted: usize,
    /// Connections currently being proxied.
    pub active: usize,
}

#[derive(Clone, Debug, Default)]
struct Faults {
    blackhole: bool,
    stall_c2s: bool,
    stall_s2c: bool,
    delay: Duration,
    slice: Option<usize>,
}

impl Faults {
    /// Whether a pump may read from its source. A blackhole swallows bytes even if stalled.
    fn may_read(&self, dir: Direction) -> bool {
        let stalled = match dir {
            Direction::ClientToServer => self.stall_c2s,
            Direction::ServerToClient => self.stall_s2c,
        };
        self.blackhole || !stalled
    }
}

#[derive(Clone, Copy, Debug)]
enum Kill {
    Fin,
    Rst,
}

enum Cmd {
    Kill(Kill, std_mpsc::SyncSender<()>),
    Refuse(bool, std_mpsc::SyncSender<()>),
}

type Registry = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<(Kill, oneshot::Sender<()>)>>>>;

/// Handle to a running proxy. Dropping it shuts the proxy down.
pub struct FaultProxy {
    addr: SocketAddr,
    faults: watch::Sender<Faults>,
    counts: watch::Receiver<Counts>,
    cmds: Option<mpsc::UnboundedSender<Cmd>>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:<free port>` that forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = bind_fixed_port();
        let addr = listener.local_addr().expect("proxy local_addr");
        let (faults, faults_rx) = watch::channel(Faults::default());
        let (counts_tx, counts) = watch::channel(Counts::default());
        let (cmds, cmds_rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fault proxy runtime");
                rt.block_on(accept_loop(listener, target, faults_rx, counts_tx, cmds_rx));
            })
            .expect("spawn fault proxy thread");
        FaultProxy {
            addr,
            faults,
            counts,
            cmds: Some(cmds),
            thread: Some(thread),
        }
    }

    /// The proxy's listening address (always 127.0.0.1).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:PORT/path` (a leading `/` on `path` is optional).
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Closes every current connection cleanly: both peers get a FIN. New connections are
    /// still accepted.
    pub fn cut(&self) {
        self.control(|ack| Cmd::Kill(Kill::Fin, ack));
    }

    /// Closes every current connection with an RST (SO_LINGER 0) to both peers.
    pub fn reset(&self) {
        self.control(|ack| Cmd::Kill(Kill::Rst, ack));
    }

    /// While on, current and new connections stay open but every byte in both directions is
    /// read and discarded: a dead peer behind a live TCP connection. Turning it off resumes
    /// forwarding of bytes that arrive afterwards.
    pub fn blackhole(&self, on: bool) {
        self.faults.send_modify(|f| f.blackhole = on);
    }

    /// While on, bytes in `dir` are neither read nor forwarded, so the sender's socket
    /// buffers fill and it sees backpressure. Turning it off forwards everything, in order.
    pub fn stall(&self, dir: Direction, on: bool) {
        self.faults.send_modify(|f| match dir {
            Direction::ClientToServer => f.stall_c2s = on,
            Direction::ServerToClient => f.stall_s2c = on,
        });
    }

    /// Holds each chunk for `delay` before forwarding it. Chunks of one direction are
    /// forwarded one after another, so this also limits throughput. `Duration::ZERO` is off.
    pub fn delay(&self, delay: Duration) {
        self.faults.send_modify(|f| f.delay = delay);
    }

    /// Forwards in writes of at most `n` bytes each (tiny TCP segments, TCP_NODELAY is set).
    /// `None` is off.
    pub fn slice(&self, n: Option<usize>) {
        self.faults.send_modify(|f| f.slice = n.map(|n| n.max(1)));
    }

    /// While on, the port refuses connections (ECONNREFUSED, like a server that is down).
    /// The port stays reserved, and turning it off listens again on the same port. Current
    /// connections are not touched: call [`cut`](Self::cut) or [`reset`](Self::reset) too
    /// to simulate a crash.
    pub fn refuse(&self, on: bool) {
        self.control(|ack| Cmd::Refuse(on, ack));
    }

    /// Connections accepted since start.
    pub fn connections(&self) -> usize {
        self.counts.borrow().accepted
    }

    /// Connections currently open through the proxy.
    pub fn active(&self) -> usize {
        self.counts.borrow().active
    }

    /// Waits until `pred` holds for the counters. Wrap it in `tokio::time::timeout`.
    pub async fn wait_until(&self, pred: impl FnMut(&Counts) -> bool) -> Counts {
        let mut rx = self.counts.clone();
        *rx.wait_for(pred).await.expect("fault proxy stopped")
    }

    /// Blocking version of [`wait_until`](Self::wait_until) for sync tests. Panics after
    /// `timeout` with the last counters.
    pub fn wait_until_blocking(&self, timeout: Duration, mut pred: impl FnMut(&Counts) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let counts = *self.counts.borrow();
            if pred(&counts) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fault proxy: condition not met within {timeout:?}, counters {counts:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn control(&self, cmd: impl FnOnce(std_mpsc::SyncSender<()>) -> Cmd) {
        let (ack, done) = std_mpsc::sync_channel(1);
        let sent = self.cmds.as_ref().is_some_and(|c| c.send(cmd(ack)).is_ok());
        assert!(sent, "fault proxy thread is gone");
        done.recv_timeout(CONTROL_TIMEOUT)
            .expect("fault proxy did not acknowledge a control command");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cmds.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Binds 127.0.0.1 on an explicitly chosen free port. An explicit port (not 0) keeps the
/// port reserved while `refuse` has the socket out of the listening state.
fn bind_fixed_port() -> std::net::TcpListener {
    for _ in 0..100 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            listener.set_nonblocking(true).expect("set_nonblocking");
            return listener;
        }
    }
    panic!("fault proxy: could not bind a port on 127.0.0.1");
}

enum Listener {
    Open(TcpListener),
    /// A bound socket taken out of the listening state: connects get ECONNREFUSED.
    Refusing(std::net::TcpStream),
}

impl Listener {
    /// Switches refusing on or off. Connections already waiting in the backlog are handed to
    /// `accepted` first: their clients believe they are connected.
    fn set_refuse(
        self,
        on: bool,
        mut accepted: impl FnMut(TcpStream),
    ) -> std::io::Result<Listener> {
        Ok(match (self, on) {
            (Listener::Open(l), true) => {
                drain_backlog(&l, &mut accepted)?;
                let l = l.into_std()?;
                // On Linux, shutdown(SHUT_RD) on a listener stops listening but keeps the bind.
                let sock = std::net::TcpStream::from(OwnedFd::from(l));
                sock.shutdown(Shutdown::Read)?;
                Listener::Refusing(sock)
            }
            (Listener::Refusing(s), false) => {
                Listener::Open(TcpSocket::from_std_stream(s).listen(1024)?)
            }
            (same, _) => same,
        })
    }
}

/// Accepts every connection already waiting in the backlog, without blocking.
fn drain_backlog(l: &TcpListener, mut accepted: impl FnMut(TcpStream)) -> std::io::Result<()> {
    let dup = std::net::TcpListener::from(l.as_fd().try_clone_to_owned()?);
    loop {
        match dup.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(true)?;
                accepted(TcpStream::from_std(s)?);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
}

enum Event {
    Cmd(Option<Cmd>),
    Accept(std::io::Result<(TcpStream, SocketAddr)>),
}

async fn accept_loop(
    listener: std::net::TcpListener,
    target: SocketAddr,
    faults: watch::Receiver<Faults>,
    counts: watch::Sender<Counts>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
) {
    let counts = Arc::new(counts);
    let registry: Registry = Arc::default();
    let next_id = AtomicU64::new(0);
    let mut spawn_conn = |client: TcpStream| {
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let (kill_tx, kill_rx) = mpsc::unbounded_channel();
        registry.lock().unwrap().insert(id, kill_tx);
        counts.send_modify(|c| {
            c.accepted += 1;
            c.active += 1;
        });
        let guard = ActiveGuard {
            id,
            registry: registry.clone(),
            counts: counts.clone(),
        };
        tokio::spawn(proxy_conn(client, target, faults.clone(), kill_rx, guard));
    };
    let mut listener = Some(Listener::Open(
        TcpListener::from_std(listener).expect("register proxy listener"),
    ));
    loop {
        let event = match &listener {
            Some(Listener::Open(l)) => tokio::select! {
                cmd = cmds.recv() => Event::Cmd(cmd),
                accepted = l.accept() => Event::Accept(accepted),
            },
            _ => Event::Cmd(cmds.recv().await),
        };
        match event {
            Event::Cmd(None) => return, // handle dropped
            Event::Cmd(Some(Cmd::Refuse(on, ack))) => {
                let l = listener.take().expect("listener present");
                let l = l.set_refuse(on, &mut spawn_conn);
                listener = Some(l.expect("fault proxy: toggle refuse"));
                let _ = ack.send(());
            }
            Event::Cmd(Some(Cmd::Kill(kind, ack))) => {
                // Clients in the backlog believe they are connected: they are cut too.
                if let Some(Listener::Open(l)) = &listener {
                    let _ = drain_backlog(l, &mut spawn_conn);
                }
                let conns: Vec<_> = registry.lock().unwrap().values().cloned().collect();
                let mut waits = Vec::new();
                for conn in conns {
                    let (tx, rx) = oneshot::channel();
                    if conn.send((kind, tx)).is_ok() {
                        waits.push(rx);
                    }
                }
                tokio::spawn(async move {
                    for rx in waits {
                        let _ = rx.await; // Err: the connection ended by itself meanwhile.
                    }
                    let _ = ack.send(());
                });
            }
            Event::Accept(Ok((client, _))) => spawn_conn(client),
            Event::Accept(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await, // e.g. EMFILE
        }
    }
}

/// Counts a connection as active and registered until dropped.
struct ActiveGuard {
    id: u64,
    registry: Registry,
    counts: Arc<watch::Sender<Counts>>,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.registry.lock().unwrap().remove(&self.id);
        self.counts.send_modify(|c| c.active -= 1);
    }
}

async fn proxy_conn(
    mut client: TcpStream,
    target: SocketAddr,
    faults: watch::Receiver<Faults>,
    mut kill: mpsc::UnboundedReceiver<(Kill, oneshot::Sender<()>)>,
    guard: ActiveGuard,
) {
    let connected = tokio::select! {
        s = TcpStream::connect(target) => s.ok(),
        Some((kind, ack)) = kill.recv() => {
            finish(kind, guard, ack, client, None).await;
            return;
        }
    };
    let Some(mut server) = connected else {
        let _ = client.set_zero_linger(); // target down: the client sees a reset
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let outcome = {
        let (cr, cw) = client.split();
        let (sr, sw) = server.split();
        let c2s = pump(cr, sw, Direction::ClientToServer, faults.clone());
        let s2c = pump(sr, cw, Direction::ServerToClient, faults);
        tokio::select! {
            r = async { tokio::try_join!(c2s, s2c) } => r.map(|_| None),
            Some(k) = kill.recv() => Ok(Some(k)),
        }
    };
    match outcome {
        Ok(None) => {} // both directions reached EOF: close normally
        Ok(Some((kind, ack))) => finish(kind, guard, ack, client, Some(server)).await,
        Err(_) => {
            // One peer reset or failed: pass the reset on to the other.
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
    }
}

/// Carries out a cut or reset on one connection, then acknowledges it.
async fn finish(
    kind: Kill,
    guard: ActiveGuard,
    ack: oneshot::Sender<()>,
    client: TcpStream,
    server: Option<TcpStream>,
) {
    let mut socks: Vec<TcpStream> = std::iter::once(client).chain(server).collect();
    match kind {
        Kill::Rst => {
            for s in &socks {
                let _ = s.set_zero_linger();
            }
            drop(socks);
            drop(guard);
            let _ = ack.send(());
        }
        Kill::Fin => {
            for s in &mut socks {
                let _ = s.shutdown().await;
            }
            drop(guard);
            let _ = ack.send(());
            // Drain until each peer closes, so leftover unread bytes do not cause an RST.
            let drain = futures_util::future::join_all(socks.iter_mut().map(|s| async move {
                let mut buf = vec![0u8; CHUNK];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
            let _ = tokio::time::timeout(LINGER_AFTER_CUT, drain).await;
        }
    }
}

/// Copies one direction, applying the current faults to each chunk. Returns `Ok` at EOF.
async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    dir: Direction,
    mut faults: watch::Receiver<Faults>,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        if faults.wait_for(|f| f.may_read(dir)).await.is_err() {
            return Ok(()); // proxy shutting down
        }
        let n = from.read(&mut buf).await?;
        let delay = faults.borrow().delay;
        if n == 0 {
            if !faults.borrow().blackhole {
                to.shutdown().await?;
            }
            return Ok(());
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // A stall that began after the read holds this chunk until it ends.
        let Ok(f) = faults
            .wait_for(|f| f.may_read(dir))
            .await
            .map(|f| f.clone())
        else {
            return Ok(());
        };
        if f.blackhole {
            continue;
        }
        for part in buf[..n].chunks(f.slice.unwrap_or(n)) {
            to.write_all(part).await?;
            to.flush().await?;
        }
    }
}
