//! Where jq filters run: on a worker thread, never on the caller's, so a
//! filter that never ends (`def f: f; f`, `last(range(1e12))`,
//! `[range(1e12)]`) or recurses until its stack overflows (`def f: 1 + f;
//! f`) can neither hang tether nor abort it.
//!
//! jaq has no step or depth limit, and a thread cannot be killed. So the
//! caller waits at most [`LIMIT`]; then it stops the worker where it is, with
//! a signal whose handler parks the thread for good (no more CPU, no more
//! memory: `[range(1e12)]` would take a GiB a second), and gets an error. A
//! stack overflow on the worker parks it the same way, from its SIGSEGV
//! handler (on the alternate signal stack std gives every thread it spawns),
//! where std's handler would abort the process. The next filter gets a new
//! worker. Each calling thread has its own worker, so one caller's stuck
//! filter never delays another's.
//!
//! A thread parked inside malloc would hold its arena's lock for good, and
//! every later free of memory from that arena (a capture the worker made)
//! would hang tether. So the global allocator ([`Guarded`]) counts, per
//! thread, whether it is inside the allocator: a stop that lands there is
//! deferred until the allocation returns, and a stack overflow there (which
//! cannot be deferred) goes to std's handler, which aborts with its message.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering, compiler_fence};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::pthread::{Pthread, pthread_kill, pthread_self};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

/// How long one evaluation may take: far more than any filter a person
/// writes needs on one message, short enough that a stalled driver still
/// sees a signal within its 2 s.
pub const LIMIT: Duration = Duration::from_secs(1);
/// How often a waiting caller looks whether the worker's stack overflowed.
const POLL: Duration = Duration::from_millis(5);
/// The worker's stack: twice the main thread's, for deep but finite filters.
const STACK: usize = 16 << 20;
/// Stops a worker: its handler parks it.
const STOP: Signal = Signal::SIGUSR2;

/// Why an evaluation has no result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    TooLong,
    StackOverflow,
    /// jaq panicked.
    Failed,
}

impl fmt::Display for Stopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stopped::TooLong => write!(
                f,
                "stopped: it did not finish within {}",
                crate::values::format_duration(LIMIT)
            ),
            Stopped::StackOverflow => {
                f.write_str("stopped: it recursed until its stack overflowed")
            }
            Stopped::Failed => f.write_str("the jq implementation failed on it"),
        }
    }
}

type Job = Box<dyn FnOnce() + Send>;

struct Worker {
    jobs: mpsc::Sender<Job>,
    thread: Pthread,
    /// Set by the worker's SIGSEGV handler.
    overflowed: Arc<AtomicBool>,
}

thread_local! {
    /// This thread's worker, made on first use.
    static WORKER: RefCell<Option<Worker>> = const { RefCell::new(None) };
    /// On a worker: its overflow flag, which also says it is one (for the
    /// signal handlers, which may read a const thread-local and nothing else).
    static OVERFLOWED: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
    /// How deep this thread is in the allocator (see [`Guarded`]).
    static IN_ALLOCATOR: Cell<u32> = const { Cell::new(0) };
    /// A stop arrived inside the allocator: park on the way out.
    static PARK_ON_RETURN: Cell<bool> = const { Cell::new(false) };
    /// On a worker, while it runs a job's filter: a stop outside it (late, after
    /// the job returned) is ignored, since the worker may then hold a lock of
    /// the channels it talks through.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// The system allocator, counting per thread whether it is inside it, so a
/// worker is never parked holding an allocator lock.
pub struct Guarded;

#[global_allocator]
static ALLOCATOR: Guarded = Guarded;

/// Inside the allocator while alive.
struct Inside;

impl Inside {
    fn enter() -> Inside {
        IN_ALLOCATOR.set(IN_ALLOCATOR.get() + 1);
        // The signal handler runs on this thread: keep the count's store
        // before the call it guards.
        compiler_fence(Ordering::SeqCst);
        Inside
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        let depth = IN_ALLOCATOR.get() - 1;
        IN_ALLOCATOR.set(depth);
        compiler_fence(Ordering::SeqCst);
        if depth == 0 && PARK_ON_RETURN.get() {
            park();
        }
    }
}

// SAFETY: each method forwards to `System` with the same arguments; the
// count around it touches only const thread-locals, which never allocate.
unsafe impl GlobalAlloc for Guarded {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _inside = Inside::enter();
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _inside = Inside::enter();
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _inside = Inside::enter();
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _inside = Inside::enter();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Runs `job` on this thread's worker and returns what it made, unless it
/// took longer than [`LIMIT`] or overflowed its stack.
pub fn run<R: Send + 'static>(job: impl FnOnce() -> R + Send + 'static) -> Result<R, Stopped> {
    let (tx, rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        IN_JOB.set(true);
        compiler_fence(Ordering::SeqCst);
        let made = job();
        compiler_fence(Ordering::SeqCst);
        IN_JOB.set(false);
        let _ = tx.send(made);
    });
    let (thread, overflowed) = WORKER.with_borrow_mut(|slot| {
        let worker = slot.get_or_insert_with(spawn);
        if let Err(mpsc::SendError(job)) = worker.jobs.send(job) {
            // Its thread is gone (it cannot be, short of a bug): a new one.
            *worker = spawn();
            let _ = worker.jobs.send(job);
        }
        (worker.thread, Arc::clone(&worker.overflowed))
    });
    let started = Instant::now();
    let stopped = loop {
        match rx.recv_timeout(POLL) {
            Ok(made) => return Ok(made),
            Err(mpsc::RecvTimeoutError::Disconnected) => break Stopped::Failed,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if overflowed.load(Ordering::Acquire) {
                    break Stopped::StackOverflow;
                }
                if started.elapsed() >= LIMIT {
                    let _ = pthread_kill(thread, STOP);
                    break Stopped::TooLong;
                }
            }
        }
    };
    // Parked for good (or panicked): the next job needs a new worker.
    WORKER.with_borrow_mut(|slot| *slot = None);
    Err(stopped)
}

fn spawn() -> Worker {
    install_handlers();
    let (jobs, queue) = mpsc::channel::<Job>();
    let (id_tx, id_rx) = mpsc::sync_channel(1);
    let overflowed = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&overflowed);
    std::thread::Builder::new()
        .name("jq".into())
        .stack_size(STACK)
        .spawn(move || {
            // The Arc lives as long as the thread, parked or not.
            OVERFLOWED.set(Arc::as_ptr(&flag));
            let _ = id_tx.send(pthread_self());
            for job in queue {
                // A panic drops the job's sender: the caller sees it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })
        .expect("spawning the jq worker thread");
    let thread = id_rx.recv().expect("the jq worker says who it is");
    Worker {
        jobs,
        thread,
        overflowed,
    }
}

/// std's SIGSEGV action, which the worker's handler passes other faults to.
static PREVIOUS_SEGV: OnceLock<SigAction> = OnceLock::new();

fn install_handlers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let flags = SaFlags::SA_SIGINFO | SaFlags::SA_ONSTACK;
        let segv = SigAction::new(SigHandler::SigAction(on_segv), flags, SigSet::empty());
        let stop = SigAction::new(SigHandler::SigAction(on_stop), flags, SigSet::empty());
        // SAFETY: both handlers only read a const thread-local, store to an
        // atomic, and call async-signal-safe functions (pause, sigaction).
        unsafe {
            if let Ok(previous) = sigaction(Signal::SIGSEGV, &segv) {
                let _ = PREVIOUS_SEGV.set(previous);
            }
            let _ = sigaction(STOP, &stop);
        }
    });
}

/// A worker's stack ran out: flag it for the caller and park.
fn overflowed() -> ! {
    // SAFETY: only called on a worker, whose Arc outlives it (see `spawn`).
    unsafe { (*OVERFLOWED.get()).store(true, Ordering::Release) };
    park();
}

/// Parks the calling thread for good, in its signal handler.
fn park() -> ! {
    loop {
        // SAFETY: pause is async-signal-safe and has no preconditions.
        unsafe {
            libc::pause();
        }
    }
}

extern "C" fn on_stop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Sent only to workers running a job; elsewhere (a stray kill, or a stop
    // that came after the job returned) it is ignored.
    if !OVERFLOWED.get().is_null() && IN_JOB.get() {
        if IN_ALLOCATOR.get() > 0 {
            PARK_ON_RETURN.set(true);
        } else {
            park();
        }
    }
}

extern "C" fn on_segv(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // Inside the allocator it may hold a lock: parking could hang tether,
    // so std's handler aborts instead (rare: jaq's frames are far larger).
    if !OVERFLOWED.get().is_null() && IN_ALLOCATOR.get() == 0 {
        overflowed();
    }
    // Not a worker: what std would do (its stack-overflow message, or the
    // default action once this handler returns and the fault repeats).
    match PREVIOUS_SEGV.get().map(SigAction::handler) {
        Some(SigHandler::SigAction(previous)) => previous(signal, info, context),
        Some(SigHandler::Handler(previous)) => previous(signal),
        _ => {
            let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
            // SAFETY: sigaction is async-signal-safe.
            let _ = unsafe { sigaction(Signal::SIGSEGV, &default) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_and_a_stuck_job_is_stopped() {
        assert_eq!(run(|| 1 + 1), Ok(2));
        let started = Instant::now();
        assert_eq!(
            run(|| loop {
                std::hint::spin_loop();
            }),
            Err::<(), _>(Stopped::TooLong)
        );
        assert!(started.elapsed() < LIMIT + Duration::from_millis(500));
        // A new worker takes the next job.
        assert_eq!(run(|| "next"), Ok("next"));
    }

    #[test]
    fn a_worker_stopped_while_allocating_leaves_the_allocator_usable() {
        // The worker does little but allocate and free, so a stop lands inside
        // the allocator most times; the caller then frees what the worker
        // allocated, which takes the worker's arena lock. Without `Guarded`
        // this hangs within a few rounds.
        for _ in 0..8 {
            let (tx, rx) = mpsc::sync_channel(1_000);
            let made = run(move || {
                loop {
                    let boxes: Vec<Box<[u8; 64]>> = (0..64).map(|_| Box::new([0; 64])).collect();
                    let _ = tx.try_send(boxes);
                }
            });
            assert_eq!(made, Err::<(), _>(Stopped::TooLong));
            drop(rx.try_iter().collect::<Vec<_>>());
            let fresh: Vec<Box<[u8; 64]>> = (0..100_000).map(|_| Box::new([1; 64])).collect();
            assert_eq!(fresh.len(), 100_000);
        }
    }

    #[test]
    fn a_stop_that_comes_after_the_job_returned_is_ignored() {
        assert_eq!(run(|| 1), Ok(1));
        let thread = WORKER.with_borrow(|slot| slot.as_ref().unwrap().thread);
        // As when the job returns just as the caller gives up on it.
        pthread_kill(thread, STOP).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // The same worker still takes jobs (parked, it would time out).
        assert_eq!(run(|| 2), Ok(2));
        assert_eq!(
            WORKER.with_borrow(|slot| slot.as_ref().unwrap().thread),
            thread
        );
    }

    #[test]
    fn an_overflow_that_allocates_at_every_level_parks_the_worker() {
        // Every level allocates, and the overflow is still parked (it comes in
        // jaq's or here in this frame's code, not inside malloc).
        #[allow(unconditional_recursion)]
        fn deep(n: u64) -> u64 {
            let v = std::hint::black_box(vec![n; 8]);
            v[0] + deep(n + 1)
        }
        for _ in 0..5 {
            assert_eq!(run(|| deep(0)), Err(Stopped::StackOverflow));
        }
        assert_eq!(run(|| 3), Ok(3));
    }

    #[test]
    fn a_stack_overflow_parks_the_worker_instead_of_aborting() {
        #[allow(unconditional_recursion)]
        fn deep(n: u64) -> u64 {
            let pad = std::hint::black_box([n; 64]);
            pad[0] + deep(n + 1)
        }
        assert_eq!(run(|| deep(0)), Err(Stopped::StackOverflow));
        assert_eq!(run(|| 3), Ok(3));
    }
}
