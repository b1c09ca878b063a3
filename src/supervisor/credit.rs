//! Byte budgets for the channels around the supervisor.
//!
//! Channel capacities count messages, which bounds nothing when a message
//! can be a megabyte. A `Credit` counts bytes: the sending side waits while
//! the budget is spent, takes a message's size, and the receiving side gives
//! it back. One message may overshoot the budget, so a message larger than
//! the whole budget still passes.
//!
//! Taking and giving are one atomic operation each; only a `give` that brings
//! a spent budget back under its limit wakes anyone, so the common case costs
//! no lock and no system call per message.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use tokio::sync::Notify;

pub struct Credit {
    budget: usize,
    used: AtomicUsize,
    /// Set when the receiving side is gone: nobody waits any more.
    closed: AtomicBool,
    /// Held while a blocked thread checks and sleeps, and while a waker wakes
    /// it, so a wake-up cannot fall between the check and the sleep.
    lock: Mutex<()>,
    /// Wakes threads blocked in `wait_blocking`.
    freed: Condvar,
    /// Wakes tasks awaiting `wait`.
    notify: Notify,
}

impl Credit {
    pub fn new(budget: usize) -> Credit {
        Credit {
            budget,
            used: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            lock: Mutex::new(()),
            freed: Condvar::new(),
            notify: Notify::new(),
        }
    }

    /// Whether a sender may go ahead now.
    pub fn has_room(&self) -> bool {
        self.used.load(Ordering::Acquire) < self.budget || self.closed.load(Ordering::Acquire)
    }

    /// Whether a sender holding `pending` bytes it has not taken yet may
    /// take more now.
    pub fn has_room_for(&self, pending: usize) -> bool {
        self.used.load(Ordering::Acquire).saturating_add(pending) < self.budget
            || self.closed.load(Ordering::Acquire)
    }

    pub fn take(&self, bytes: usize) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
    }

    pub fn give(&self, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                Some(used.saturating_sub(bytes))
            })
            .unwrap_or_else(|used| used);
        if before >= self.budget && before.saturating_sub(bytes) < self.budget {
            self.wake();
        }
    }

    /// From now on nobody waits: the receiving side is gone.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()));
        self.freed.notify_all();
        self.notify.notify_waiters();
    }

    /// Blocks the calling thread until there is room.
    pub fn wait_blocking(&self) {
        if self.has_room() {
            return;
        }
        let guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _room = self
            .freed
            .wait_while(guard, |()| !self.has_room())
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Waits until there is room.
    pub async fn wait(&self) {
        loop {
            if self.has_room() {
                return;
            }
            let freed = self.notify.notified();
            tokio::pin!(freed);
            // Register before checking again, so a `give` in between is not missed.
            freed.as_mut().enable();
            if self.has_room() {
                return;
            }
            freed.await;
        }
    }

    /// Bytes taken and not given back yet.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_spent_budget_blocks_until_bytes_are_given_back() {
        let credit = Arc::new(Credit::new(10));
        credit.take(25); // one oversized message passes
        assert!(!credit.has_room());
        let waiter = {
            let credit = Arc::clone(&credit);
            std::thread::spawn(move || credit.wait_blocking())
        };
        credit.give(10);
        assert!(!credit.has_room(), "15 of 10 still used");
        credit.give(10);
        waiter.join().unwrap();
        assert!(credit.has_room());
        assert_eq!(credit.used(), 5);
    }

    #[test]
    fn giving_back_more_than_was_taken_stops_at_zero() {
        let credit = Credit::new(10);
        credit.take(3);
        credit.give(7);
        assert_eq!(credit.used(), 0);
    }

    #[test]
    fn closing_releases_a_blocked_thread() {
        let credit = Arc::new(Credit::new(1));
        credit.take(1);
        let waiter = {
            let credit = Arc::clone(&credit);
            std::thread::spawn(move || credit.wait_blocking())
        };
        credit.close();
        waiter.join().unwrap();
    }

    #[tokio::test]
    async fn async_waiters_wake_when_room_returns() {
        let credit = Arc::new(Credit::new(4));
        credit.take(4);
        let waiter = tokio::spawn({
            let credit = Arc::clone(&credit);
            async move { credit.wait().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        credit.give(1);
        waiter.await.unwrap();
    }
}
