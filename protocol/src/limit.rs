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

impl Bucket {
    /// Takes `amount` tokens, or every token there is when there are fewer: for what was spent
    /// already (a refused frame's bytes still crossed the wire). False when it took fewer.
    pub fn charge(&mut self, amount: u64, now: u64) -> bool {
        if self.take(amount, now) {
            return true;
        }
        self.tokens = 0.0;
        false
    }

    /// How long until `amount` tokens are there (0 if they are now; `u64::MAX` if `amount` is
    /// more than the bucket ever holds).
    pub fn wait_ms(&self, amount: u64, now: u64) -> u64 {
        let amount = amount as f64;
        if amount > self.capacity {
            return u64::MAX;
        }
        let tokens = (self.tokens + now.saturating_sub(self.last) as f64 * self.per_ms).min(self.capacity);
        if tokens >= amount || self.per_ms <= 0.0 {
            return 0;
        }
        ((amount - tokens) / self.per_ms).ceil() as u64
    }

    /// Whether the bucket is back to full at `now` (it then carries no history worth keeping).
    pub fn is_full(&self, now: u64) -> bool {
        self.tokens + now.saturating_sub(self.last) as f64 * self.per_ms >= self.capacity
    }
}

/// A budget that lets a spend through whenever it is not in debt, whatever its size, and then
/// refills at its rate: one read of any size passes, a loop of them is slowed to the rate. Used
/// for reads (resume replays, history), whose size is known only after they are planned.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    capacity: f64,
    per_ms: f64,
    /// May go below zero: the debt a large spend left.
    tokens: f64,
    last: u64,
}

impl Budget {
    pub fn new(capacity: u64, per_sec: u64, now: u64) -> Budget {
        Budget { capacity: capacity as f64, per_ms: per_sec as f64 / 1000.0, tokens: capacity as f64, last: now }
    }

    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.last) as f64;
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.per_ms).min(self.capacity);
    }

    /// `Ok` if the budget is not in debt (nothing is taken), else how long until it is not.
    pub fn check(&mut self, now: u64) -> Result<(), u64> {
        self.refill(now);
        if self.tokens > 0.0 {
            Ok(())
        } else if self.per_ms <= 0.0 {
            Err(u64::MAX)
        } else {
            Err((-self.tokens / self.per_ms).floor() as u64 + 1)
        }
    }

    /// Spends `amount` (which may leave the budget in debt).
    pub fn spend(&mut self, amount: u64, now: u64) {
        self.refill(now);
        self.tokens -= amount as f64;
    }

    pub fn is_full(&self, now: u64) -> bool {
        self.tokens + now.saturating_sub(self.last) as f64 * self.per_ms >= self.capacity
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

    #[test]
    fn wait_says_when_a_take_will_pass() {
        let mut b = Bucket::new(10, 10, 0);
        assert!(b.take(10, 0));
        assert_eq!(b.wait_ms(1, 0), 100);
        assert_eq!(b.wait_ms(5, 0), 500);
        assert_eq!(b.wait_ms(11, 0), u64::MAX);
        assert!(!b.take(1, 99) && b.take(1, 100));
    }

    #[test]
    fn a_charge_takes_what_there_is_and_says_whether_it_was_enough() {
        let mut b = Bucket::new(100, 10, 0);
        assert!(b.charge(60, 0));
        assert!(!b.charge(60, 0), "40 left: the charge empties the bucket and says so");
        assert!(!b.take(1, 0), "nothing left");
        assert!(b.take(1, 100), "and it refills at its rate");
    }

    #[test]
    fn a_budget_lets_one_large_read_through_then_waits_out_its_debt() {
        let mut b = Budget::new(100, 100, 0);
        assert!(b.check(0).is_ok());
        b.spend(1_000, 0);
        assert_eq!(b.check(0), Err(9_001), "900 in debt at 100 a second");
        assert!(b.check(9_000).is_err());
        assert!(b.check(9_001).is_ok());
    }

    proptest! {
        /// A budget spends at most its capacity plus its rate over the window plus one spend.
        #[test]
        fn budget_bounds_the_total(spends in proptest::collection::vec((0u64..50, 1u64..500), 1..200), cap in 1u64..1000, rate in 1u64..1000) {
            let mut b = Budget::new(cap, rate, 0);
            let (mut now, mut spent, mut largest) = (0u64, 0u64, 0u64);
            for (dt, amount) in spends {
                now += dt;
                if b.check(now).is_ok() { b.spend(amount, now); spent += amount; largest = largest.max(amount); }
            }
            prop_assert!(spent as f64 <= cap as f64 + rate as f64 * now as f64 / 1000.0 + largest as f64 + 1e-6);
        }

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
