//! What a peer sent before it reset the connection is still read.
//!
//! A server that aborts (an RST) leaves its last messages in our receive
//! buffer, where the kernel keeps them readable: with `--confirm-by-reply` the
//! replies that confirm messages, without it the Pongs. But the first write to
//! the dead socket fails with `ECONNRESET` or `EPIPE`, and the connection used
//! to end right there, unread. Reading on after that needs the write side
//! quiet too: tungstenite writes as it reads (a read first flushes a Pong or
//! Close it owes, with whatever was fed before it), and tokio-tungstenite ends
//! the stream at a read's first error. So [`LastWords`] turns such a write into
//! one that succeeds and goes nowhere, and notes the reset in the connection's
//! [`WriteProgress`]: the supervisor's flush checks it, so a message written
//! since is not taken as written, and then reads what is left
//! (`Connection::last_words`). Reads here report the write's error once the
//! kernel's buffer is empty. It cannot hang: after a reset (or a peer that
//! closed a Unix socket) reads end once the buffer is empty.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::net::meter::WriteProgress;

/// A stream whose writes to a peer that is gone are dropped, so that reads
/// drain what it sent first.
#[derive(Debug)]
pub struct LastWords<S> {
    inner: S,
    /// Where the reset is noted, for reads here and the supervisor's flush.
    progress: WriteProgress,
}

impl<S> LastWords<S> {
    pub fn new(inner: S, progress: WriteProgress) -> LastWords<S> {
        LastWords { inner, progress }
    }

    fn gone(&self) -> bool {
        self.progress.reset().is_some()
    }

    /// A write's result, with the peer's reset taken in.
    fn wrote<T>(&mut self, poll: Poll<io::Result<T>>, done: T) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(Err(err)) if peer_gone(&err) => {
                tracing::debug!("the peer is gone ({err}); reading what it sent before");
                self.progress.set_reset(&err);
                Poll::Ready(Ok(done))
            }
            other => other,
        }
    }
}

/// The errors a write gets once the peer has reset the connection (or closed
/// its end of a Unix socket).
fn peer_gone(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionAborted
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for LastWords<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        match poll {
            // The end of what the peer sent: now its reset is the news.
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                match self.progress.reset() {
                    Some(err) => Poll::Ready(Err(err)),
                    None => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LastWords<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.gone() {
            return Poll::Ready(Ok(buf.len()));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(poll, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.gone() {
            return Poll::Ready(Ok(len));
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(poll, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gone() {
            return Poll::Ready(Ok(()));
        }
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.wrote(poll, ())
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gone() {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A server that writes `said`, then resets the connection with our bytes
    /// unread (SO_LINGER 0), as `transport.abort()` does.
    async fn resetting_server(said: &'static [u8]) -> (TcpStream, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut first = [0u8; 1];
            socket.read_exact(&mut first).await.unwrap();
            socket.write_all(said).await.unwrap();
            // Our next bytes arrive unread: the close is a reset.
            let mut more = [0u8; 1];
            socket.peek(&mut more).await.unwrap();
            socket.set_zero_linger().unwrap();
            drop(socket);
        });
        (TcpStream::connect(addr).await.unwrap(), server)
    }

    /// Writes until one fails, or until `met` says the reset was met; the
    /// reset may reach our socket a moment after the server is done.
    async fn write_until_reset<S: AsyncWrite + Unpin>(
        stream: &mut S,
        met: impl Fn(&S) -> bool,
    ) -> io::Result<()> {
        for _ in 0..1_000 {
            stream.write_all(b"more").await?;
            stream.flush().await?;
            if met(stream) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    #[tokio::test]
    async fn what_the_peer_said_before_its_reset_is_read_then_the_reset() {
        let (tcp, server) = resetting_server(b"last words").await;
        let progress = WriteProgress::default();
        let mut stream = LastWords::new(tcp, progress.clone());
        stream.write_all(b"!").await.unwrap();
        stream.write_all(b"?").await.unwrap();
        server.await.unwrap();
        write_until_reset(&mut stream, |s| s.gone()).await.unwrap();
        assert!(
            progress.reset().is_some(),
            "a write met the reset, and it is noted"
        );
        let mut said = vec![0u8; 10];
        stream.read_exact(&mut said).await.unwrap();
        assert_eq!(said, b"last words");
        let err = stream.read(&mut [0u8; 16]).await.unwrap_err();
        assert!(peer_gone(&err), "the reset is reported: {err}");
    }

    /// The reason for the wrapper: without it, the write fails and a reader
    /// that stops at the first error never sees the words.
    #[tokio::test]
    async fn unwrapped_the_write_fails() {
        let (mut tcp, server) = resetting_server(b"last words").await;
        tcp.write_all(b"!?").await.unwrap();
        server.await.unwrap();
        let err = write_until_reset(&mut tcp, |_| false).await.unwrap_err();
        assert!(peer_gone(&err), "{err}");
    }

    #[tokio::test]
    async fn an_orderly_end_stays_an_orderly_end() {
        let (client, server) = tokio::io::duplex(64);
        let mut stream = LastWords::new(client, WriteProgress::default());
        drop(server);
        assert_eq!(stream.read(&mut [0u8; 8]).await.unwrap(), 0);
    }
}
