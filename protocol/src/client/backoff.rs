//! Reconnect delays: exponential backoff with jitter, from a seeded generator so tests are
//! deterministic. Attempt `n` (1, 2, …) waits a uniformly random time in
//! `[min_ms, min(max_ms, min_ms × factor^n)]`: `min_ms` is a true minimum (no attempt comes
//! sooner), and spreading even the first retry over a window is what keeps a thousand clients cut
//! off at once from coming back at once.

/// SplitMix64: tiny, fast, and good enough to spread reconnects; not for secrets.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, upper]`.
    pub fn up_to(&mut self, upper: u64) -> u64 {
        match upper.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub min_ms: u64,
    pub max_ms: u64,
    pub factor: f64,
    /// Off only for experiments (the reconnect-storm comparison): every delay is the cap.
    pub jitter: bool,
}

impl Backoff {
    /// The upper bound of attempt `attempt`'s window.
    pub fn cap(&self, attempt: u32) -> u64 {
        // min × factor^attempt by multiplication: `f64::powi` is std-only, and this crate is
        // `no_std` in the SDK. 64 steps reach any cap a u64 holds.
        let factor = self.factor.max(1.0);
        let mut grown = self.min_ms as f64;
        for _ in 0..attempt.min(64) {
            grown *= factor;
            if grown >= self.max_ms as f64 {
                break;
            }
        }
        if grown >= self.max_ms as f64 {
            self.max_ms
        } else {
            grown as u64
        }
    }

    /// The delay before attempt `attempt`: `min_ms` plus a uniform jitter over the rest of the
    /// window (the cap without jitter). Never below `min_ms`, unless `max_ms` is lower still.
    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> u64 {
        let cap = self.cap(attempt);
        if self.jitter {
            let floor = self.min_ms.min(cap);
            floor + rng.up_to(cap - floor)
        } else {
            cap
        }
    }
}

#[cfg(test)]
mod tests {
    // The crate is `no_std` without its `server` feature; the tests may use std either way.
    extern crate std;
    use super::{Backoff, Rng};
    use proptest::prelude::{any, prop_assert, proptest};
    use std::vec::Vec;

    #[test]
    fn caps_grow_by_the_factor_and_stop_at_the_max() {
        let b = Backoff { min_ms: 500, max_ms: 10_000, factor: 2.0, jitter: true };
        let caps: Vec<u64> = (1..=7).map(|n| b.cap(n)).collect();
        assert_eq!(caps, [1_000, 2_000, 4_000, 8_000, 10_000, 10_000, 10_000]);
        assert_eq!(b.cap(10_000), 10_000);
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let b = Backoff { min_ms: 100, max_ms: 5_000, factor: 1.5, jitter: true };
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (1..20).map(|n| b.delay(n, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    proptest! {
        /// Every delay lies within the jittered window of its attempt: at least the minimum,
        /// at most the attempt's cap and never above the max.
        #[test]
        fn delays_within_the_jittered_window(seed in any::<u64>(), min in 0u64..2_000, span in 0u64..60_000, factor in 1.0f64..4.0) {
            let b = Backoff { min_ms: min, max_ms: min + span, factor, jitter: true };
            let mut rng = Rng::new(seed);
            for attempt in 1..40 {
                let d = b.delay(attempt, &mut rng);
                prop_assert!(d >= b.min_ms, "attempt {attempt}: {d} ms is below the minimum {min} ms");
                prop_assert!(d <= b.cap(attempt));
                prop_assert!(d <= b.max_ms);
            }
        }

        /// The delays are spread: over many draws of one window, both halves are hit.
        #[test]
        fn delays_are_spread(seed in any::<u64>()) {
            let b = Backoff { min_ms: 100, max_ms: 1_000, factor: 2.0, jitter: true };
            let mut rng = Rng::new(seed);
            let draws: Vec<u64> = (0..200).map(|_| b.delay(10, &mut rng)).collect();
            prop_assert!(draws.iter().all(|d| (100..=1_000).contains(d)));
            prop_assert!(draws.iter().any(|d| *d < 550) && draws.iter().any(|d| *d >= 550));
        }
    }

    /// `min_ms` is a true minimum: even the first attempt, with full jitter, never comes sooner
    /// (it used to draw from [0, cap], so 0 ms delays came up).
    #[test]
    fn the_minimum_delay_is_a_minimum() {
        let b = Backoff { min_ms: 500, max_ms: 30_000, factor: 2.0, jitter: true };
        let mut rng = Rng::new(1);
        let first: Vec<u64> = (0..1_000).map(|_| b.delay(1, &mut rng)).collect();
        assert!(first.iter().all(|d| (500..=1_000).contains(d)), "{:?}", first.iter().min());
        // a window wider than the minimum is still spread over its whole width
        assert!(first.iter().any(|d| *d < 600) && first.iter().any(|d| *d > 900));
        // a max below the min wins (the window is just the max)
        let odd = Backoff { min_ms: 500, max_ms: 200, factor: 2.0, jitter: true };
        assert_eq!(odd.delay(1, &mut rng), 200);
    }
}
