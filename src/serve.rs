//! `tether serve`: a small WebSocket echo server, so tether can be tried and
//! tested with no network. It echoes every text and binary message as it
//! came, answers pings, and closes when the client does. Nothing more.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};

use crate::error::{Error, Result};

/// The largest message the echo server takes.
const MAX_MESSAGE: usize = 64 << 20;

/// How long the clients have to answer the server's Close when it stops.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| Error::Usage(format!("cannot listen on {addr}: {err}")))
}

/// Serves until `stop` completes, then closes every client with 1001
/// "going away" (not a dropped TCP connection, which a client sees as 1006
/// and a failure) and waits up to [`CLOSE_GRACE`] for their answers.
pub async fn serve(listener: TcpListener, stop: impl Future<Output = ()>) {
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
            if let Err(err) = echo(stream, peer, stopped).await {
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

async fn echo(
    stream: TcpStream,
    peer: SocketAddr,
    mut stopped: watch::Receiver<bool>,
) -> tungstenite::Result<()> {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    tracing::debug!("{peer}: connected");
    let mut closing = false;
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
            }
            next = ws.next().now_or_never().flatten();
        }
        ws.flush().await?;
    }
    tracing::debug!("{peer}: closed");
    Ok(())
}
