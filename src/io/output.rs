//! Writing stdout on a thread of its own, in large chunks.
//!
//! Frontends render into a buffer and hand it over when no more events are
//! immediately waiting, so a burst of messages costs one write. A large
//! message that needs no rendering is handed over as it is (a shared
//! `Bytes`), never copied. A reader that closes the pipe (`| head -1`) has
//! all it wanted; any other write error (a full disk, EIO) is a failure the
//! session reports: tether never claims output it could not write.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};

/// Why the writer stopped before it was asked to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// The reader closed the pipe (EPIPE): it has all it wanted.
    ReaderGone,
    /// Any other write error, as the system says it.
    Failed(String),
}

pub struct Stdout {
    chunks: mpsc::Sender<Bytes>,
    stopped: watch::Receiver<bool>,
    why: Arc<Mutex<Option<Stopped>>>,
    /// Chunks handed over, and chunks the writer has finished.
    queued: AtomicU64,
    written: watch::Receiver<u64>,
    thread: JoinHandle<()>,
}

/// A place in the writer's queue, reserved: handing a chunk over cannot wait.
pub struct Slot<'a> {
    permit: mpsc::Permit<'a, Bytes>,
    queued: &'a AtomicU64,
}

impl Slot<'_> {
    pub fn write(self, chunk: Bytes) {
        self.permit.send(chunk);
        self.queued.fetch_add(1, Ordering::Relaxed);
    }
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
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (written_tx, written_rx) = watch::channel(0u64);
        let why = Arc::new(Mutex::new(None));
        let why_writer = Arc::clone(&why);
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                while let Some(chunk) = rx.blocking_recv() {
                    if let Err(err) = sink.write_all(&chunk).and_then(|()| sink.flush()) {
                        let stopped = if err.kind() == std::io::ErrorKind::BrokenPipe {
                            Stopped::ReaderGone
                        } else {
                            Stopped::Failed(err.to_string())
                        };
                        *why_writer.lock().unwrap_or_else(|e| e.into_inner()) = Some(stopped);
                        let _ = stopped_tx.send(true);
                        return;
                    }
                    drop(chunk);
                    written_tx.send_modify(|n| *n += 1);
                }
            })
            .expect("spawning the stdout thread");
        Stdout {
            chunks: tx,
            stopped: stopped_rx,
            why,
            queued: AtomicU64::new(0),
            written: written_rx,
            thread,
        }
    }

    /// Waits for room in the writer's queue; cancel-safe. `None` once the
    /// writer has stopped (`stopped()` says why).
    pub async fn reserve(&self) -> Option<Slot<'_>> {
        let permit = self.chunks.reserve().await.ok()?;
        Some(Slot {
            permit,
            queued: &self.queued,
        })
    }

    /// Queues a chunk, waiting while the writer is behind.
    pub async fn write(&self, chunk: impl Into<Bytes>) {
        let chunk = chunk.into();
        if !chunk.is_empty()
            && let Some(slot) = self.reserve().await
        {
            slot.write(chunk);
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

    /// Resolves when the writer has stopped on an error, and says which.
    pub async fn stopped(&self) -> Stopped {
        let mut stopped = self.stopped.clone();
        let _ = stopped.wait_for(|stopped| *stopped).await;
        self.why
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or(Stopped::ReaderGone)
    }

    /// Why the writer stopped, if it has.
    pub fn stopped_now(&self) -> Option<Stopped> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Writes out everything queued, then stops the writer. With a deadline,
    /// gives up waiting for a writer stuck on a reader that does not read
    /// (the process is about to exit, which ends the thread too).
    pub async fn finish(self, by: Option<tokio::time::Instant>) {
        let Stdout {
            chunks,
            mut written,
            thread,
            ..
        } = self;
        drop(chunks);
        // The writer drops its end of `written` when it returns.
        let done = async { while written.changed().await.is_ok() {} };
        match by {
            Some(at) => {
                if tokio::time::timeout_at(at, done).await.is_err() {
                    return;
                }
            }
            None => done.await,
        }
        let _ = thread.join();
    }
}
