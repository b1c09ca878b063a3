//! `tether serve`: a small WebSocket echo server, so tether can be tried and
//! tested with no network. It echoes every text and binary message as it
//! came, answers pings, and closes when the client does. Nothing more.

use std::net::SocketAddr;

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};

use crate::error::{Error, Result};

/// The largest message the echo server takes.
const MAX_MESSAGE: usize = 64 << 20;

pub async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| Error::Usage(format!("cannot listen on {addr}: {err}")))
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener) -> Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of descriptors or similar: keep serving the others.
            Err(err) => {
                tracing::warn!("accept failed: {err}");
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(err) = echo(stream, peer).await {
                tracing::debug!("{peer}: {err}");
            }
        });
    }
}

async fn echo(stream: TcpStream, peer: SocketAddr) -> tungstenite::Result<()> {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await?;
    tracing::debug!("{peer}: connected");
    while let Some(message) = ws.next().await {
        let mut next = Some(message);
        // Echo whatever has already arrived, then flush once: a burst of
        // messages costs one write.
        while let Some(message) = next {
            // tungstenite answers pings and closes by itself.
            if let message @ (Message::Text(_) | Message::Binary(_)) = message? {
                ws.feed(message).await?
            }
            next = ws.next().now_or_never().flatten();
        }
        ws.flush().await?;
    }
    tracing::debug!("{peer}: closed");
    Ok(())
}
