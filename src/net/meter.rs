//! Write progress of one connection's socket, for telling a slow peer from a
//! dead one.
//!
//! A Ping written behind megabytes the peer has not read yet is answered late
//! by a live but slow server. What tells the two apart is the kernel: while
//! our send buffer is full, it takes more bytes only as the peer reads (TCP
//! acknowledges them). So [`Metered`] notes each time a write that had to wait
//! goes through. A write that never waits says nothing: a blackholed peer
//! still has room in the buffers for a few typed lines.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// When the peer was last seen draining our writes, and whether a write found
/// it gone (see [`LastWords`](super::last_words::LastWords)).
#[derive(Clone, Debug, Default)]
pub struct WriteProgress(Arc<Progress>);

#[derive(Debug, Default)]
struct Progress {
    drained: Mutex<Option<Instant>>,
    /// The error of the write that met the peer's reset: kind and OS code.
    reset: OnceLock<(io::ErrorKind, Option<i32>)>,
}

impl WriteProgress {
    /// The last time a write that had to wait for room went through.
    pub fn last_drain(&self) -> Option<Instant> {
        *self.0.drained.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn drained(&self) {
        *self.0.drained.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// The error of the write that found the peer gone, if one did: what
    /// was written since went nowhere.
    pub fn reset(&self) -> Option<io::Error> {
        self.0.reset.get().map(|&(kind, code)| match code {
            Some(code) => io::Error::from_raw_os_error(code),
            None => io::Error::from(kind),
        })
    }

    pub(super) fn set_reset(&self, err: &io::Error) {
        let _ = self.0.reset.set((err.kind(), err.raw_os_error()));
    }
}

/// A stream that reports [`WriteProgress`]; reads pass through untouched.
#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    progress: WriteProgress,
    /// The last write found the send buffer full.
    blocked: bool,
}

impl<S> Metered<S> {
    pub fn new(inner: S) -> Metered<S> {
        Metered {
            inner,
            progress: WriteProgress::default(),
            blocked: false,
        }
    }

    pub fn progress(&self) -> WriteProgress {
        self.progress.clone()
    }

    fn note(&mut self, poll: &Poll<io::Result<usize>>) {
        match poll {
            Poll::Pending => self.blocked = true,
            Poll::Ready(Ok(n)) if *n > 0 && self.blocked => {
                self.blocked = false;
                self.progress.drained();
            }
            Poll::Ready(_) => {}
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(&poll);
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note(&poll);
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn only_a_write_that_waited_counts_as_progress() {
        let (client, mut server) = tokio::io::duplex(16);
        let mut metered = Metered::new(client);
        let progress = metered.progress();
        metered.write_all(b"0123456789").await.unwrap();
        assert_eq!(progress.last_drain(), None, "room was there: no news");

        // 16 bytes fill the pipe; the rest waits until the peer reads.
        let writer = tokio::spawn(async move {
            metered.write_all(&[7u8; 32]).await.unwrap();
            metered
        });
        let mut buf = [0u8; 64];
        let mut read = 0;
        while read < 42 {
            read += server.read(&mut buf).await.unwrap();
        }
        writer.await.unwrap();
        assert!(
            progress.last_drain().is_some(),
            "the peer drained a full pipe"
        );
    }
}
