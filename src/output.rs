//! Writing stdout on a thread of its own, in large chunks.
//!
//! Frontends render into a buffer and hand it over when no more events are
//! immediately waiting, so a burst of messages costs one write. A large
//! message that needs no rendering is handed over as it is (a shared
//! `Bytes`), never copied. A reader that
//! closes the pipe (`| head -1`) is reported, not treated as an error.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

pub struct Stdout {
    chunks: mpsc::Sender<Bytes>,
    closed: watch::Receiver<bool>,
    /// Chunks handed over, and chunks the writer has finished.
    queued: AtomicU64,
    written: watch::Receiver<u64>,
    thread: JoinHandle<()>,
}

impl Stdout {
    pub fn spawn() -> Stdout {
        // Our own descriptor for stdout, written without std's line buffering:
        // chunks are already large, and LineWriter scans each one for its
        // last newline (memrchr was 7% of a bulk run's samples).
        match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Self::spawn_with(std::fs::File::from(fd)),
            Err(_) => Self::spawn_with(std::io::stdout()),
        }
    }

    pub fn spawn_with(mut sink: impl Write + Send + 'static) -> Stdout {
        // One chunk waiting while another is written keeps the writer busy;
        // a chunk holds at least one message, which may be large, and the
        // frontend keeps rendering into its buffer meanwhile.
        let (tx, mut rx) = mpsc::channel::<Bytes>(1);
        let (closed_tx, closed_rx) = watch::channel(false);
        let (written_tx, written_rx) = watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                while let Some(chunk) = rx.blocking_recv() {
                    if sink.write_all(&chunk).and_then(|()| sink.flush()).is_err() {
                        let _ = closed_tx.send(true);
                        return;
                    }
                    drop(chunk);
                    written_tx.send_modify(|n| *n += 1);
                }
            })
            .expect("spawning the stdout thread");
        Stdout {
            chunks: tx,
            closed: closed_rx,
            queued: AtomicU64::new(0),
            written: written_rx,
            thread,
        }
    }

    /// Queues a chunk, waiting while the writer is behind.
    pub async fn write(&self, chunk: impl Into<Bytes>) {
        let chunk = chunk.into();
        if !chunk.is_empty() {
            // An error means the writer stopped: `closed()` reports why.
            if self.chunks.send(chunk).await.is_ok() {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Resolves once the writer has written (and let go of) everything handed
    /// over, or has stopped. After a large message, this keeps the next ones
    /// from piling up behind a slow reader: memory stays at about one
    /// message being printed while the next is received.
    pub async fn drained(&self) {
        let queued = self.queued.load(Ordering::Relaxed);
        let mut written = self.written.clone();
        let _ = written.wait_for(|&n| n >= queued).await;
    }

    /// Resolves when the reader of stdout has gone away.
    pub async fn closed(&mut self) {
        let _ = self.closed.wait_for(|closed| *closed).await;
    }

    /// Writes out everything queued, then stops the writer.
    pub fn finish(self) {
        drop(self.chunks);
        let _ = self.thread.join();
    }
}
