//! Polling instead of sleeping for a moment, where the next event is due
//! within microseconds.
//!
//! In a request/response exchange the reply arrives tens of microseconds
//! after the request went out, and the next request as soon after the reply
//! was printed. Going to sleep in between means the kernel (on a virtual
//! machine, the hypervisor) has to wake an idle CPU for each, which cost more
//! than the exchange itself (issue 19: a third of a round trip). So after a
//! message goes out, and after one comes in, the connection loop keeps polling
//! the socket and the queue for a short window, but only while the recent gaps
//! before the expected event were that short. A feed that only receives, an
//! upload that only sends and a person typing see long gaps, and never spin.
//!
//! Real time, not tokio's: a paused clock would never let the window end.

use std::time::{Duration, Instant};

/// The longest spin, and the longest gap worth spinning for.
const MAX_SPIN: Duration = Duration::from_micros(250);
/// A longer gap counts as this long: one pause must not outweigh many quick
/// exchanges for long.
const GAP_CAP: Duration = Duration::from_micros(1000);

/// The recent gaps before one kind of event, as a moving average.
#[derive(Debug, Clone, Copy)]
struct Gap {
    average: Duration,
}

impl Gap {
    fn record(&mut self, gap: Duration) {
        // A quarter of the new gap: a few quick ones in a row start the
        // spinning, a few slow ones stop it.
        let gap = gap.min(GAP_CAP);
        self.average = (self.average * 3 + gap) / 4;
    }

    /// How long to spin for the event: twice the usual gap, when that is
    /// short enough.
    fn window(self) -> Duration {
        if self.average >= MAX_SPIN {
            Duration::ZERO
        } else {
            (self.average * 2).clamp(MAX_SPIN / 8, MAX_SPIN)
        }
    }
}

/// What the loop waits for after the last event.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A message went out: its reply.
    Reply,
    /// A message came in: the next message to send.
    Request,
}

#[derive(Debug)]
pub(super) struct Spin {
    reply: Gap,
    request: Gap,
    expecting: Option<(Expect, Instant)>,
    until: Option<Instant>,
}

impl Default for Spin {
    fn default() -> Spin {
        // Start as if the gaps were slow: the first quick exchanges earn the
        // spinning.
        let slow = Gap { average: MAX_SPIN };
        Spin {
            reply: slow,
            request: slow,
            expecting: None,
            until: None,
        }
    }
}

impl Spin {
    /// Messages were written to the socket; `lone` when one message went
    /// out and nothing more is queued, as a request waiting for its reply.
    pub(super) fn sent(&mut self, now: Instant, lone: bool) {
        self.event(Expect::Request, Expect::Reply, now, lone);
    }

    /// Messages were read from the socket; `lone` when one came, as a reply
    /// would.
    pub(super) fn received(&mut self, now: Instant, lone: bool) {
        self.event(Expect::Reply, Expect::Request, now, lone);
    }

    /// An event of kind `came`; a lone one makes `next` the one to spin
    /// for, a batch or a burst keeps the loop busy without it.
    fn event(&mut self, came: Expect, next: Expect, now: Instant, lone: bool) {
        self.arrived(came, now);
        if lone {
            self.expect(next, now);
        } else {
            self.until = None;
        }
    }

    /// Whether the loop should poll rather than sleep now.
    pub(super) fn spinning(&mut self) -> bool {
        let Some(until) = self.until else {
            return false;
        };
        if Instant::now() < until {
            return true;
        }
        self.until = None;
        false
    }

    /// The event that `kind` expects came; any other expectation was missed
    /// and counts its gap so far.
    fn arrived(&mut self, kind: Expect, now: Instant) {
        let Some((expected, since)) = self.expecting.take() else {
            return;
        };
        let gap = now.saturating_duration_since(since);
        match (expected, kind) {
            (Expect::Reply, Expect::Reply) => self.reply.record(gap),
            (Expect::Request, Expect::Request) => self.request.record(gap),
            // Sent again before any reply, or received again before anything
            // was sent: the expected event did not come within this gap.
            (Expect::Reply, Expect::Request) => self.reply.record(GAP_CAP.max(gap)),
            (Expect::Request, Expect::Reply) => self.request.record(GAP_CAP.max(gap)),
        }
    }

    fn expect(&mut self, kind: Expect, now: Instant) {
        self.expecting = Some((kind, now));
        let window = match kind {
            Expect::Reply => self.reply.window(),
            Expect::Request => self.request.window(),
        };
        self.until = (!window.is_zero()).then(|| now + window);
    }
}

/// Resolves after one trip through the scheduler, which polls the I/O driver
/// without sleeping.
pub(super) async fn poll_once() {
    tokio::task::yield_now().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// Runs `steps` of (event, µs since the previous event) and says whether
    /// the last one started a spin.
    fn spins_after(steps: &[(&str, u64)]) -> bool {
        let mut spin = Spin::default();
        let mut now = Instant::now();
        for &(event, after) in steps {
            now += Duration::from_micros(after);
            match event {
                "sent" => spin.sent(now, true),
                "batch" => spin.sent(now, false),
                "received" => spin.received(now, true),
                "burst" => spin.received(now, false),
                other => unreachable!("{other}"),
            }
        }
        spin.until.is_some_and(|until| until > now)
    }

    fn exchange(times: usize, reply_us: u64, next_us: u64) -> Vec<(&'static str, u64)> {
        (0..times)
            .flat_map(|_| [("sent", next_us), ("received", reply_us)])
            .collect()
    }

    #[test]
    fn a_first_message_does_not_spin() {
        assert!(!spins_after(&[("sent", 0)]));
    }

    #[test]
    fn quick_exchanges_earn_the_spin_both_ways() {
        let mut steps = exchange(10, 40, 30);
        assert!(spins_after(&steps), "after a reply: waits for the request");
        steps.push(("sent", 30));
        assert!(spins_after(&steps), "after a request: waits for the reply");
    }

    #[test]
    fn the_window_is_twice_the_usual_gap_and_at_most_the_limit() {
        let mut spin = Spin::default();
        let mut now = Instant::now();
        for _ in 0..50 {
            now += 30 * US;
            spin.sent(now, true);
            now += 40 * US;
            spin.received(now, true);
        }
        let window = spin.until.unwrap() - now;
        assert!(window >= 55 * US && window <= 65 * US, "{window:?}");
        assert!(
            Gap {
                average: MAX_SPIN / 2 + US
            }
            .window()
                == MAX_SPIN
        );
    }

    #[test]
    fn slow_replies_do_not_spin_for_the_reply() {
        let mut steps = exchange(20, 2_000, 30);
        assert!(spins_after(&steps), "the next request still comes quickly");
        steps.push(("sent", 30));
        assert!(!spins_after(&steps));
    }

    #[test]
    fn a_batch_going_out_does_not_spin_for_replies() {
        let mut steps = exchange(10, 40, 30);
        steps.push(("batch", 30));
        assert!(!spins_after(&steps));
        steps.push(("received", 40));
        assert!(
            spins_after(&steps),
            "the request that follows still comes quickly"
        );
    }

    #[test]
    fn a_burst_coming_in_does_not_spin_for_requests() {
        let mut steps = exchange(10, 40, 30);
        steps.push(("sent", 30));
        steps.push(("burst", 40));
        assert!(!spins_after(&steps));
    }

    #[test]
    fn a_feed_that_only_receives_never_spins() {
        let steps: Vec<_> = (0..100).map(|_| ("received", 20)).collect();
        assert!(!spins_after(&steps));
    }

    #[test]
    fn an_upload_that_only_sends_never_spins() {
        let steps: Vec<_> = (0..100).map(|_| ("sent", 20)).collect();
        assert!(!spins_after(&steps));
    }

    #[test]
    fn a_pause_stops_the_spin_and_quick_exchanges_bring_it_back() {
        let mut steps = exchange(20, 40, 30);
        steps.push(("sent", 5_000_000));
        steps.push(("received", 5_000_000));
        assert!(!spins_after(&steps), "one long gap stops it");
        steps.extend(exchange(6, 40, 30));
        assert!(spins_after(&steps), "a few quick ones bring it back");
    }

    #[test]
    fn the_spin_ends_by_itself() {
        let mut spin = Spin {
            until: Some(Instant::now() + MAX_SPIN),
            ..Spin::default()
        };
        assert!(spin.spinning());
        std::thread::sleep(MAX_SPIN);
        assert!(!spin.spinning());
        assert!(spin.until.is_none());
    }
}
