//! An in-process tokio-tungstenite server whose behaviour each test writes.
//!
//! It runs on its own thread and runtime (so sync tests can use it), binds
//! 127.0.0.1 on a free port, records what every connection received, and
//! stops when dropped. Tests wait on the record with [`Server::wait_until`]
//! instead of sleeping.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What one connection saw.
#[derive(Debug, Clone, Default)]
pub struct ConnLog {
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// Text and binary messages, in arrival order.
    pub messages: Vec<Message>,
    /// The client's Close frame: (code, reason).
    pub close: Option<(u16, String)>,
    pub ended: bool,
}

impl ConnLog {
    pub fn texts(&self) -> Vec<String> {
        self.messages
            .iter()
            .filter_map(|m| match m {
                Message::Text(t) => Some(t.to_string()),
                _ => None,
            })
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
pub struct Log {
    conns: Mutex<Vec<ConnLog>>,
    changed: Condvar,
}

impl Log {
    fn update(&self, index: usize, f: impl FnOnce(&mut ConnLog)) {
        let mut conns = self.conns.lock().unwrap();
        f(&mut conns[index]);
        self.changed.notify_all();
    }
}

/// One accepted WebSocket connection, as a handler sees it.
pub struct Conn {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub index: usize,
    log: Arc<Log>,
}

impl Conn {
    /// The next text or binary message (recorded), or `None` at close/EOF.
    pub async fn recv(&mut self) -> Option<Message> {
        while let Some(Ok(message)) = self.ws.next().await {
            match message {
                Message::Text(_) | Message::Binary(_) => {
                    let m = message.clone();
                    self.log.update(self.index, |c| c.messages.push(m));
                    return Some(message);
                }
                Message::Close(frame) => {
                    let close = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    self.log.update(self.index, |c| c.close = Some(close));
                    // Let tungstenite send its reply.
                    let _ = self.ws.flush().await;
                }
                _ => {}
            }
        }
        None
    }

    pub async fn send(&mut self, message: Message) {
        let _ = self.ws.send(message).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send(Message::text(text)).await;
    }

    /// Ends the connection with a reset (SO_LINGER 0), as an abort does: what
    /// the client sent and this side has not read is thrown away.
    pub fn reset(self) {
        if let MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            tcp.set_zero_linger().expect("SO_LINGER 0");
        }
    }

    pub async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        // Drain until the client's answer, so it is recorded.
        while let Some(Ok(_)) = self.ws.next().await {}
    }

    /// Echoes every message until the client leaves.
    pub async fn echo(&mut self) {
        while let Some(message) = self.recv().await {
            self.send(message).await;
        }
    }
}

pub struct Server {
    addr: SocketAddr,
    log: Arc<Log>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

type Acceptor = Option<tokio_native_tls::TlsAcceptor>;

impl Server {
    /// A server that runs `handler` for every WebSocket connection.
    pub fn start<F, Fut>(handler: F) -> Server
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_inner(None, handler)
    }

    /// The same over TLS, with the given acceptor (see `support::tls`).
    pub fn start_tls<F, Fut>(acceptor: tokio_native_tls::TlsAcceptor, handler: F) -> Server
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_inner(Some(acceptor), handler)
    }

    pub fn echo() -> Server {
        Self::start(|mut conn| async move { conn.echo().await })
    }

    /// An echo server listening on `addr`: to restart a server where a
    /// client expects it.
    pub fn echo_at(addr: SocketAddr) -> Server {
        Self::start_inner_at(addr, None, |mut conn| async move { conn.echo().await })
    }

    /// An echo server that also sends every connection whatever the test
    /// pushes through the returned [`Pusher`], when it pushes it.
    pub fn echo_with_push() -> (Server, Pusher) {
        let (tx, _) = broadcast::channel::<Message>(64);
        let pusher = Pusher(tx.clone());
        let server = Self::start(move |mut conn| {
            let mut pushed = tx.subscribe();
            async move {
                loop {
                    tokio::select! {
                        message = conn.recv() => match message {
                            Some(message) => conn.send(message).await,
                            None => return,
                        },
                        Ok(message) = pushed.recv() => conn.send(message).await,
                    }
                }
            }
        });
        (server, pusher)
    }

    /// A server that speaks raw TCP: for HTTP rejections and hostile peers.
    pub fn raw<F, Fut>(handler: F) -> Server
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let log = Arc::new(Log::default());
        let handler = Arc::new(handler);
        Self::spawn(log, move |listener: TcpListener, _log| async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(handler(stream));
            }
        })
    }

    /// Answers every request with this HTTP status and body.
    pub fn http(status_line: &'static str, headers: &'static str, body: &'static str) -> Server {
        Self::raw(move |mut stream| async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = vec![0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let response = format!(
                "HTTP/1.1 {status_line}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
    }

    fn start_inner<F, Fut>(acceptor: Acceptor, handler: F) -> Server
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self::start_inner_at(SocketAddr::from(([127, 0, 0, 1], 0)), acceptor, handler)
    }

    fn start_inner_at<F, Fut>(addr: SocketAddr, acceptor: Acceptor, handler: F) -> Server
    where
        F: Fn(Conn) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let log = Arc::new(Log::default());
        Self::spawn_at(
            addr,
            log,
            move |listener: TcpListener, log: Arc<Log>| async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let handler = Arc::clone(&handler);
                    let log = Arc::clone(&log);
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        let stream = match acceptor {
                            Some(acceptor) => match acceptor.accept(stream).await {
                                Ok(tls) => MaybeTlsStream::NativeTls(tls),
                                Err(_) => return,
                            },
                            None => MaybeTlsStream::Plain(stream),
                        };
                        let mut seen = ConnLog::default();
                        // tungstenite's callback signature fixes the large error type.
                        #[allow(clippy::result_large_err)]
                        let callback = |req: &Request, resp: Response| {
                            seen.path = req.uri().to_string();
                            seen.headers = req
                                .headers()
                                .iter()
                                .map(|(n, v)| {
                                    (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into())
                                })
                                .collect();
                            Ok(resp)
                        };
                        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                        else {
                            return;
                        };
                        let index = {
                            let mut conns = log.conns.lock().unwrap();
                            conns.push(seen);
                            log.changed.notify_all();
                            conns.len() - 1
                        };
                        handler(Conn {
                            ws,
                            index,
                            log: Arc::clone(&log),
                        })
                        .await;
                        log.update(index, |c| c.ended = true);
                    });
                }
            },
        )
    }

    fn spawn<F, Fut>(log: Arc<Log>, serve: F) -> Server
    where
        F: FnOnce(TcpListener, Arc<Log>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        Self::spawn_at(SocketAddr::from(([127, 0, 0, 1], 0)), log, serve)
    }

    fn spawn_at<F, Fut>(addr: SocketAddr, log: Arc<Log>, serve: F) -> Server
    where
        F: FnOnce(TcpListener, Arc<Log>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        assert!(addr.ip().is_loopback(), "test servers bind loopback only");
        // std sets SO_REUSEADDR, so a port just freed can be bound again.
        let std_listener = std::net::TcpListener::bind(addr).expect("binding 127.0.0.1");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread_log = Arc::clone(&log);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).unwrap();
                tokio::select! {
                    () = serve(listener, thread_log) => {}
                    _ = shutdown_rx => {}
                }
            });
        });
        Server {
            addr,
            log,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// The same address as `wss://localhost:PORT`, matching the test certificate.
    pub fn wss_url(&self, path: &str) -> String {
        format!("wss://localhost:{}{path}", self.addr.port())
    }

    pub fn connections(&self) -> Vec<ConnLog> {
        self.log.conns.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the connections seen so far; fails the
    /// test with the log if it does not within `timeout`.
    pub fn wait_until(&self, timeout: Duration, pred: impl Fn(&[ConnLog]) -> bool) -> Vec<ConnLog> {
        let conns = self.log.conns.lock().unwrap();
        let (conns, result) = self
            .log
            .changed
            .wait_timeout_while(conns, timeout, |c| !pred(c))
            .unwrap();
        assert!(
            !result.timed_out(),
            "the server never saw what the test waited for within {timeout:?}; it saw: {:#?}",
            *conns
        );
        conns.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Handler tasks die with the runtime when the thread ends.
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sends messages to every connection of an [`Server::echo_with_push`] server.
#[derive(Clone)]
pub struct Pusher(broadcast::Sender<Message>);

impl Pusher {
    /// The client may see its handshake answered before the server's handler
    /// has subscribed: wait (a bounded while) for a connection to listen.
    fn push(&self, message: Message) {
        let started = std::time::Instant::now();
        while self.0.receiver_count() == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no connection is listening"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        self.0.send(message).expect("a connection is listening");
    }

    pub fn text(&self, text: &str) {
        self.push(Message::text(text));
    }

    /// Sends to whoever listens now, if anyone (a connection may be closing).
    pub fn text_if_listening(&self, text: &str) {
        let _ = self.0.send(Message::text(text));
    }

    /// Starts the close handshake on every connection.
    pub fn close(&self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        self.push(Message::Close(Some(frame)));
    }
}

/// A handler that completes the handshake and never reads: what the client writes
/// sits in the socket buffers, and no Ping is ever answered (for a minute).
pub async fn never_reads(_conn: Conn) {
    tokio::time::sleep(Duration::from_secs(60)).await;
}

/// Bytes for a binary message.
pub fn binary(data: &[u8]) -> Message {
    Message::Binary(Bytes::copy_from_slice(data))
}
