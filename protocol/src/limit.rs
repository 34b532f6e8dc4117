//! Token buckets for per-connection rate limits. Pure: time comes in as `now` (ms).

/// A bucket holding up to `capacity` tokens, refilled at `per_sec` tokens a second.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    capacity: f64,
    per_ms: f64,
    tokens: f64,
    last: u64,
}

impl Bucket {
    /// A full bucket.
    pub fn new(capacity: u64, per_sec: u64, now: u64) -> Bucket {
        Bucket { capacity: capacity as f64, per_ms: per_sec as f64 / 1000.0, tokens: capacity as f64, last: now }
    }

    /// Takes `amount` tokens if there are that many; a refused take takes nothing.
    pub fn take(&mut self, amount: u64, now: u64) -> bool {
        let elapsed = now.saturating_sub(self.last) as f64;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
        let amount = amount as f64;
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn burst_then_refill() {
        let mut b = Bucket::new(3, 10, 0);
        assert!(b.take(1, 0) && b.take(1, 0) && b.take(1, 0));
        assert!(!b.take(1, 0));
        assert!(!b.take(1, 99));
        assert!(b.take(1, 100), "10 per second: one token after 100 ms");
        assert!(!b.take(5, 10_000), "never more than the capacity");
        assert!(b.take(3, 10_000));
    }

    proptest! {
        /// Over any window, a bucket lets through at most capacity + rate x duration.
        #[test]
        fn never_more_than_burst_plus_rate(times in proptest::collection::vec(0u64..50, 1..400), cap in 1u64..20, rate in 1u64..100) {
            let mut b = Bucket::new(cap, rate, 0);
            let mut now = 0;
            let mut taken = 0u64;
            for dt in times {
                now += dt;
                if b.take(1, now) { taken += 1; }
            }
            prop_assert!(taken as f64 <= cap as f64 + rate as f64 * now as f64 / 1000.0 + 1e-9);
        }
    }
}
