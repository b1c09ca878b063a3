//! Writing stdout on a thread of its own, in large chunks.
//!
//! Frontends render into a buffer and hand it over when no more events are
//! immediately waiting, so a burst of messages costs one write. A large
//! message that needs no rendering is handed over as it is (a shared
//! `Bytes`), never copied. A reader that closes the pipe (`| head -1`) has
//! all it wanted; any other write error (a full disk, EIO) is a failure the
//! session reports: tether never claims output it could not write.
//!
//! A small chunk while the writer is idle is written at once by the caller,
//! when stdout is a pipe with room or a regular file: waking the writer
//! thread for one reply cost a request/response exchange about a sixth of its
//! time. A pipe that polls writable has a free page, so a write of at most
//! `PIPE_BUF` bytes does not block (unless another process fills the pipe in
//! between); a terminal or a socket could block, and keeps the thread. Output
//! that streams goes to the thread too (see `QUIET`).

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    stop: Stop,
    /// stdout, when small chunks may be written to it without the thread.
    direct: Option<Direct>,
    /// Chunks handed over, and chunks the writer has finished.
    queued: AtomicU64,
    written: watch::Receiver<u64>,
    thread: JoinHandle<()>,
}

/// How the writer stopped, shared by the thread and direct writes.
#[derive(Clone)]
struct Stop {
    why: Arc<Mutex<Option<Stopped>>>,
    tx: watch::Sender<bool>,
}

impl Stop {
    fn record(&self, err: &std::io::Error) {
        let stopped = if err.kind() == std::io::ErrorKind::BrokenPipe {
            Stopped::ReaderGone
        } else {
            Stopped::Failed(err.to_string())
        };
        let mut why = self.why.lock().unwrap_or_else(|e| e.into_inner());
        why.get_or_insert(stopped);
        drop(why);
        let _ = self.tx.send(true);
    }

    fn now(&self) -> Option<Stopped> {
        self.why.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// stdout written from the caller's thread: a pipe or a regular file.
struct Direct {
    file: File,
    pipe: bool,
    /// When the last chunk was written or handed over.
    last: Mutex<Option<Instant>>,
}

/// Larger chunks go to the thread: writing them overlaps with rendering.
/// Also `PIPE_BUF` on Linux, at most a page: what a pipe with a free page
/// takes without blocking.
const DIRECT_MAX: usize = 4096;
/// Output this soon after the last is part of a stream, which the thread
/// writes in fewer, larger chunks while the loop goes on (written at once, a
/// round trip of 100,000 lines was 12% slower). A reply comes a round trip
/// after the one before it.
const QUIET: Duration = Duration::from_micros(40);

impl Direct {
    fn of(file: &File) -> Option<Direct> {
        let kind = file.metadata().ok()?.file_type();
        let pipe = kind.is_fifo();
        if !(pipe || kind.is_file()) {
            return None;
        }
        Some(Direct {
            file: file.try_clone().ok()?,
            pipe,
            last: Mutex::new(None),
        })
    }

    /// Whether output has been quiet for a while, and notes that it is not.
    fn quiet(&self) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let quiet = last.is_none_or(|at| now.duration_since(at) >= QUIET);
        *last = Some(now);
        quiet
    }

    /// Whether a write of at most `DIRECT_MAX` bytes completes at once.
    fn ready(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        if !self.pipe {
            return true;
        }
        let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLOUT)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(1))
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLOUT))
    }
}

/// A place in the writer's queue, reserved: handing a chunk over cannot wait.
pub struct Slot<'a> {
    permit: mpsc::Permit<'a, Bytes>,
    stdout: &'a Stdout,
}

impl Slot<'_> {
    pub fn write(self, chunk: Bytes) {
        let stdout = self.stdout;
        if stdout.stop.now().is_some() {
            // Nothing is written after a failed write: no output with a hole.
            return;
        }
        if let Some(direct) = &stdout.direct
            && direct.quiet()
            && chunk.len() <= DIRECT_MAX
            && stdout.idle()
            && direct.ready()
        {
            if let Err(err) = (&direct.file).write_all(&chunk) {
                stdout.stop.record(&err);
            }
            return;
        }
        self.permit.send(chunk);
        stdout.queued.fetch_add(1, Ordering::Relaxed);
    }
}

impl Stdout {
    pub fn spawn() -> Stdout {
        // Our own descriptor for stdout, written without std's line buffering:
        // chunks are already large, and LineWriter scans each one for its
        // last newline (memrchr was 7% of a bulk run's samples).
        match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => Self::spawn_on(File::from(fd)),
            Err(_) => Self::spawn_with(std::io::stdout()),
        }
    }

    /// Writes to `file`, small chunks at once where it is a pipe or a
    /// regular file.
    pub fn spawn_on(file: File) -> Stdout {
        let direct = Direct::of(&file);
        let mut stdout = Self::spawn_with(file);
        stdout.direct = direct;
        stdout
    }

    pub fn spawn_with(mut sink: impl Write + Send + 'static) -> Stdout {
        // One chunk waiting while another is written keeps the writer busy;
        // a chunk holds at least one message, which may be large, and the
        // frontend keeps rendering into its buffer meanwhile.
        let (tx, mut rx) = mpsc::channel::<Bytes>(1);
        let (stopped_tx, stopped_rx) = watch::channel(false);
        let (written_tx, written_rx) = watch::channel(0u64);
        let stop = Stop {
            why: Arc::new(Mutex::new(None)),
            tx: stopped_tx,
        };
        let stop_writer = stop.clone();
        let thread = std::thread::Builder::new()
            .name("stdout".into())
            .spawn(move || {
                while let Some(chunk) = rx.blocking_recv() {
                    if let Err(err) = sink.write_all(&chunk).and_then(|()| sink.flush()) {
                        stop_writer.record(&err);
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
            stop,
            direct: None,
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
            stdout: self,
        })
    }

    /// Whether the thread has written everything handed to it.
    pub fn idle(&self) -> bool {
        *self.written.borrow() >= self.queued.load(Ordering::Relaxed)
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
        self.stop.now().unwrap_or(Stopped::ReaderGone)
    }

    /// Why the writer stopped, if it has.
    pub fn stopped_now(&self) -> Option<Stopped> {
        self.stop.now()
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    async fn write(stdout: &Stdout, chunk: &'static [u8]) {
        stdout.write(Bytes::from_static(chunk)).await;
    }

    #[tokio::test]
    async fn small_chunks_to_an_idle_pipe_skip_the_thread_and_keep_their_order() {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let stdout = Stdout::spawn_on(File::from(std::os::fd::OwnedFd::from(writer)));
        write(&stdout, b"one\n").await;
        assert_eq!(stdout.queued.load(Ordering::Relaxed), 0, "written at once");
        let big = vec![b'x'; DIRECT_MAX + 1];
        stdout.write(big.clone()).await;
        assert_eq!(
            stdout.queued.load(Ordering::Relaxed),
            1,
            "large: the thread"
        );
        // The thread may still be writing the large one: this one waits
        // its turn behind it, or goes at once once the thread is done.
        write(&stdout, b"two\n").await;
        stdout.finish(None).await;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).unwrap();
        let mut expected = b"one\n".to_vec();
        expected.extend_from_slice(&big);
        expected.extend_from_slice(b"two\n");
        assert!(out == expected, "output differs");
    }

    #[tokio::test]
    async fn a_closed_pipe_stops_the_writer_and_nothing_more_is_written() {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let stdout = Stdout::spawn_on(File::from(std::os::fd::OwnedFd::from(writer)));
        write(&stdout, b"lost\n").await;
        assert_eq!(stdout.stopped_now(), Some(Stopped::ReaderGone));
        assert_eq!(stdout.stopped().await, Stopped::ReaderGone);
        write(&stdout, b"dropped\n").await;
        assert_eq!(stdout.queued.load(Ordering::Relaxed), 0, "not handed over");
        stdout.finish(None).await;
    }

    #[tokio::test]
    async fn a_full_pipe_hands_small_chunks_to_the_thread() {
        let (mut reader, writer) = std::io::pipe().unwrap();
        let file = File::from(std::os::fd::OwnedFd::from(writer));
        // Fill the pipe a page at a time while it polls writable: each such
        // write fits, which is what the direct path relies on.
        let probe = Direct::of(&file).expect("a pipe");
        let mut filled = 0;
        while probe.ready() {
            filled += (&file).write(&[b'.'; DIRECT_MAX]).unwrap();
        }
        assert!(filled >= DIRECT_MAX, "{filled}");
        let stdout = Stdout::spawn_on(file);
        write(&stdout, b"waits\n").await;
        assert_eq!(
            stdout.queued.load(Ordering::Relaxed),
            1,
            "the thread waits, not us"
        );
        let mut out = vec![0; filled];
        reader.read_exact(&mut out).unwrap();
        stdout.drained().await;
        let mut tail = [0; 6];
        reader.read_exact(&mut tail).unwrap();
        assert_eq!(&tail, b"waits\n");
        stdout.finish(None).await;
    }
}
