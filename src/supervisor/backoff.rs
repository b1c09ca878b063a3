//! The reconnect schedule: capped exponential backoff with jitter, from backon.
//!
//! backon adds jitter after applying its cap, so a jittered delay can exceed
//! `--backoff-max`; the clamp here makes the cap hold.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, seed: Option<u64>) -> Backoff {
        let mut builder = ExponentialBuilder::new()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_factor(2.0)
            .without_max_times()
            .with_jitter();
        if let Some(seed) = seed {
            builder = builder.with_jitter_seed(seed);
        }
        Backoff {
            delays: builder.build(),
            builder,
            max,
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        self.delays.next().unwrap_or(self.max).min(self.max)
    }

    /// Start over from the initial delay, after a healthy connection.
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn delays_grow_by_the_factor_and_never_pass_the_cap() {
        for seed in 0..200 {
            let mut backoff = Backoff::new(MS(100), MS(1_000), Some(seed));
            let delays: Vec<_> = (0..12).map(|_| backoff.next_delay()).collect();
            // Without jitter the base is 100, 200, 400, 800, 1000...; jitter
            // adds up to one base more, and the clamp holds the cap.
            for (i, d) in delays.iter().enumerate() {
                let base = MS(100 * (1 << i.min(4))).min(MS(1_000));
                assert!(*d >= base, "seed {seed}: delay {i} = {d:?} < {base:?}");
                assert!(
                    *d <= MS(1_000),
                    "seed {seed}: delay {i} = {d:?} over the cap"
                );
                assert!(
                    *d <= base * 2,
                    "seed {seed}: delay {i} = {d:?} over 2x base"
                );
            }
        }
    }

    #[test]
    fn reset_starts_again_from_the_initial_delay() {
        let mut backoff = Backoff::new(MS(100), MS(10_000), Some(7));
        for _ in 0..6 {
            backoff.next_delay();
        }
        assert!(backoff.next_delay() >= MS(6_400));
        backoff.reset();
        let first = backoff.next_delay();
        assert!(first >= MS(100) && first <= MS(200), "{first:?}");
    }
}
