//! `tether serve`: a small WebSocket echo server, so tether can be tried and
//! tested with no network. It echoes every text and binary message as it
//! came, answers pings, and closes when the client does; with `--drop-after`
//! it drops each connection after so many messages, for trying reconnects.
//! Nothing more. It listens on TCP or on a Unix-domain socket (`unix:PATH`).

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};

use crate::error::{Error, Result};
use crate::net::unix::Transport;

/// The largest message the echo server takes.
const MAX_MESSAGE: usize = 64 << 20;

/// How long the clients have to answer the server's Close when it stops.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How the echo server treats each connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoConfig {
    /// Drop the connection (no Close frame) once this many messages are
    /// echoed on it.
    pub drop_after: Option<u64>,
}

/// Where the echo server listens: a TCP address, or a Unix-domain socket
/// (`unix:PATH`), whose file is removed when the server stops.
pub enum Listener {
    Tcp(TcpListener),
    Unix {
        listener: UnixListener,
        path: PathBuf,
        /// The socket file this server made, so it removes only that one
        /// (not a file someone put in its place since).
        made: Option<(u64, u64)>,
    },
}

/// `ADDR` as given to `tether serve`: `unix:PATH` or a TCP address.
pub async fn bind(addr: &str) -> Result<Listener> {
    if let Some(path) = addr.strip_prefix("unix:") {
        return bind_unix(Path::new(path));
    }
    TcpListener::bind(addr)
        .await
        .map(Listener::Tcp)
        .map_err(|err| Error::Usage(format!("cannot listen on {addr}: {err}")))
}

/// Binds a Unix socket. A socket file left by a server that is gone (no
/// one accepts on it) is replaced; a live one, or a file that is not a
/// socket, is left alone and is an error.
fn bind_unix(path: &Path) -> Result<Listener> {
    let fail =
        |why: String| Error::Usage(format!("cannot listen on unix:{}: {why}", path.display()));
    if path.as_os_str().is_empty() {
        return Err(fail("the path is empty".into()));
    }
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            let is_socket = std::fs::symlink_metadata(path)
                .map(|meta| meta.file_type().is_socket())
                .unwrap_or(false);
            if !is_socket {
                return Err(fail(
                    "the file exists and is not a socket (not removing it)".into(),
                ));
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(fail("a server is already listening on it".into())),
                Err(err) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
                    tracing::debug!("removing the stale socket {}", path.display());
                    std::fs::remove_file(path)
                        .map_err(|err| fail(format!("cannot remove the stale socket: {err}")))?;
                    UnixListener::bind(path).map_err(|err| fail(err.to_string()))?
                }
                Err(err) => return Err(fail(err.to_string())),
            }
        }
        Err(err) => return Err(fail(err.to_string())),
    };
    let made = std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()));
    Ok(Listener::Unix {
        listener,
        // Shown in the URL, which needs an absolute path.
        path: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
        made,
    })
}

impl Listener {
    /// The URL a client connects to.
    pub fn url(&self) -> Result<String> {
        match self {
            Listener::Tcp(listener) => listener
                .local_addr()
                .map(|addr| format!("ws://{addr}/"))
                .map_err(|err| Error::Runtime(format!("cannot read the listening address: {err}"))),
            Listener::Unix { path, .. } => Ok(format!("ws+unix://{}", path.display())),
        }
    }

    async fn accept(&self) -> std::io::Result<(Transport, String)> {
        match self {
            Listener::Tcp(listener) => {
                let (stream, peer) = listener.accept().await?;
                // Small messages are the common case; don't let Nagle delay them.
                let _ = stream.set_nodelay(true);
                Ok((Transport::Tcp(stream), peer.to_string()))
            }
            Listener::Unix { listener, path, .. } => {
                let (stream, _) = listener.accept().await?;
                Ok((Transport::Unix(stream), format!("unix:{}", path.display())))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix {
            path,
            made: Some(made),
            ..
        } = self
        {
            let still_ours = std::fs::symlink_metadata(&*path)
                .is_ok_and(|meta| (meta.dev(), meta.ino()) == *made);
            if still_ours {
                let _ = std::fs::remove_file(&*path);
            }
        }
    }
}

/// Serves until `stop` completes, then closes every client with 1001
/// "going away" (not a dropped TCP connection, which a client sees as 1006
/// and a failure) and waits up to [`CLOSE_GRACE`] for their answers.
pub async fn serve(listener: Listener, config: EchoConfig, stop: impl Future<Output = ()>) {
    let (stopping, stopped) = watch::channel(false);
    let mut clients = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Out of descriptors or similar: keep serving the others.
                Err(err) => {
                    tracing::warn!("accept failed: {err}");
                    continue;
                }
            },
            // Reap finished clients so the set holds only live ones.
            Some(_) = clients.join_next(), if !clients.is_empty() => continue,
        };
        let stopped = stopped.clone();
        clients.spawn(async move {
            if let Err(err) = echo(stream, &peer, config, stopped).await {
                tracing::debug!("{peer}: {err}");
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let all_closed = async { while clients.join_next().await.is_some() {} };
    if tokio::time::timeout(CLOSE_GRACE, all_closed).await.is_err() {
        tracing::debug!("{} clients did not answer the Close in time", clients.len());
    }
}

/// Ends the TCP connection without a Close frame, as a crashed server's
/// would end, but after the echoes: a FIN, then what the client still sends
/// is read and dropped until it hangs up. Closing with its bytes unread would
/// be a reset, which may discard echoes not yet on the wire.
async fn drop_connection(stream: &mut Transport) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 16 << 10];
    let drained = async { while let Ok(1..) = stream.read(&mut sink).await {} };
    let _ = tokio::time::timeout(CLOSE_GRACE, drained).await;
}

async fn echo(
    stream: Transport,
    peer: &str,
    config: EchoConfig,
    mut stopped: watch::Receiver<bool>,
) -> tungstenite::Result<()> {
    let limits = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(limits)).await?;
    tracing::debug!("{peer}: connected");
    let mut closing = false;
    let mut echoed = 0u64;
    loop {
        let message = tokio::select! {
            message = ws.next() => message,
            true = stopped.wait_for(|stop| *stop).map(|stop| stop.is_ok()), if !closing => {
                closing = true;
                ws.close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "going away".into(),
                }))
                .await?;
                continue;
            }
        };
        let Some(message) = message else { break };
        let mut next = Some(message);
        // Echo whatever has already arrived, then flush once: a burst of
        // messages costs one write.
        while let Some(message) = next {
            // tungstenite answers pings and closes by itself.
            let message = message?;
            if !closing && let Message::Text(_) | Message::Binary(_) = message {
                ws.feed(message).await?;
                echoed += 1;
                if config.drop_after == Some(echoed) {
                    ws.flush().await?;
                    tracing::debug!("{peer}: dropped after {echoed} messages (--drop-after)");
                    drop_connection(ws.get_mut()).await;
                    return Ok(());
                }
            }
            next = ws.next().now_or_never().flatten();
        }
        ws.flush().await?;
    }
    tracing::debug!("{peer}: closed");
    Ok(())
}
