//! Reconnect delays: exponential backoff with full jitter, from a seeded generator so tests are
//! deterministic. Attempt `n` (1, 2, …) waits a uniformly random time in
//! `[0, min(max_ms, min_ms × factor^n)]`: spreading even the first retry over a window is what
//! keeps a thousand clients cut off at once from coming back at once.

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

    pub fn delay(&self, attempt: u32, rng: &mut Rng) -> u64 {
        let cap = self.cap(attempt);
        if self.jitter {
            rng.up_to(cap)
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
    use std::vec::Vec;
    use proptest::prelude::{any, prop_assert, proptest};

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
        /// Every delay lies within the full-jitter window of its attempt and never above the max.
        #[test]
        fn delays_within_full_jitter_bounds(seed in any::<u64>(), min in 1u64..2_000, span in 0u64..60_000, factor in 1.0f64..4.0) {
            let b = Backoff { min_ms: min, max_ms: min + span, factor, jitter: true };
            let mut rng = Rng::new(seed);
            for attempt in 1..40 {
                let d = b.delay(attempt, &mut rng);
                prop_assert!(d <= b.cap(attempt));
                prop_assert!(d <= b.max_ms);
            }
        }

        /// The delays are spread: over many draws of one window, both halves are hit.
        #[test]
        fn delays_are_spread(seed in any::<u64>()) {
            let b = Backoff { min_ms: 1_000, max_ms: 1_000, factor: 2.0, jitter: true };
            let mut rng = Rng::new(seed);
            let draws: Vec<u64> = (0..200).map(|_| b.delay(1, &mut rng)).collect();
            prop_assert!(draws.iter().any(|d| *d < 500) && draws.iter().any(|d| *d >= 500));
        }
    }
}
