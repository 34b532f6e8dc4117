//! Budgets that are not per connection: HTTP publishes per caller and per room, and reads (resume
//! replays, history) per user and per room. A connection's own limits reset when it reconnects,
//! so these are keyed by who is asking, which a reconnect does not change. In memory only: after a
//! wake every budget starts full, which costs at most one burst per wake.

use super::RoomConfig;
use crate::limit::{Bucket, Budget};
use crate::sorted::SortedMap;

/// How many times a caller's HTTP limits the room as a whole takes.
pub const ROOM_HTTP_FACTOR: u64 = 4;
/// How many times a user's read budget the room as a whole reads.
pub const ROOM_READ_FACTOR: u64 = 8;

#[derive(Debug)]
struct Rate {
    messages: Bucket,
    bytes: Bucket,
}

impl Rate {
    fn new(c: &RoomConfig, factor: u64, now: u64) -> Rate {
        let burst = c.http_rate_messages_burst.max(c.publish_batch_max as u64).saturating_mul(factor);
        let byte_burst = c.http_rate_bytes_per_sec.saturating_mul(4).max(c.publish_batch_max_bytes as u64).saturating_mul(factor);
        Rate {
            messages: Bucket::new(burst, c.http_rate_messages_per_sec.saturating_mul(factor), now),
            bytes: Bucket::new(byte_burst, c.http_rate_bytes_per_sec.saturating_mul(factor), now),
        }
    }

    fn wait(&self, messages: u64, bytes: u64, now: u64) -> u64 {
        self.messages.wait_ms(messages, now).max(self.bytes.wait_ms(bytes, now))
    }

    fn take(&mut self, messages: u64, bytes: u64, now: u64) {
        self.messages.take(messages, now);
        self.bytes.take(bytes, now);
    }

    fn is_full(&self, now: u64) -> bool {
        self.messages.is_full(now) && self.bytes.is_full(now)
    }
}

#[derive(Debug)]
pub struct Guards {
    config: RoomConfig,
    http: SortedMap<String, Rate>,
    http_room: Rate,
    reads: SortedMap<String, Budget>,
    room_reads: Budget,
}

impl Guards {
    pub fn new(config: &RoomConfig, now: u64) -> Guards {
        Guards {
            config: config.clone(),
            http: SortedMap::new(),
            http_room: Rate::new(config, ROOM_HTTP_FACTOR, now),
            reads: SortedMap::new(),
            room_reads: Budget::new(
                config.read_bytes_burst.saturating_mul(ROOM_READ_FACTOR),
                config.read_bytes_per_sec.saturating_mul(ROOM_READ_FACTOR),
                now,
            ),
        }
    }

    /// Takes `messages` publishes of `bytes` from the caller's and the room's HTTP limits, all or
    /// nothing; refused, it says how long to wait (ms).
    pub fn publish(&mut self, caller: &str, messages: u64, bytes: u64, now: u64) -> Result<(), u64> {
        let config = &self.config;
        let mine = self.http.entry(caller.to_owned()).or_insert_with(|| Rate::new(config, 1, now));
        let wait = mine.wait(messages, bytes, now).max(self.http_room.wait(messages, bytes, now));
        if wait > 0 {
            return Err(wait);
        }
        mine.take(messages, bytes, now);
        self.http_room.take(messages, bytes, now);
        Ok(())
    }

    /// Whether `user` may read now (neither their budget nor the room's is in debt); refused, it
    /// says how long to wait (ms).
    pub fn may_read(&mut self, user: &str, now: u64) -> Result<(), u64> {
        self.room_reads.check(now)?;
        match self.reads.get_mut(user) {
            Some(b) => b.check(now),
            None => Ok(()),
        }
    }

    /// Charges a read of `bytes` to `user` and to the room.
    pub fn spend_read(&mut self, user: &str, bytes: u64, now: u64) {
        let c = &self.config;
        self.reads.entry(user.to_owned()).or_insert_with(|| Budget::new(c.read_bytes_burst, c.read_bytes_per_sec, now)).spend(bytes, now);
        self.room_reads.spend(bytes, now);
    }

    /// Forgets callers and readers whose budgets are full again (they carry nothing to remember).
    pub fn prune(&mut self, now: u64) {
        self.http.retain(|_, r| !r.is_full(now));
        self.reads.retain(|_, b| !b.is_full(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callers_are_limited_apart_and_the_room_as_a_whole() {
        let config =
            RoomConfig { http_rate_messages_per_sec: 10, http_rate_messages_burst: 100, publish_batch_max: 100, ..RoomConfig::default() };
        let mut g = Guards::new(&config, 0);
        assert!(g.publish("a", 100, 10, 0).is_ok());
        assert_eq!(g.publish("a", 1, 10, 0), Err(100), "one more message in 100 ms at 10/s");
        assert!(g.publish("b", 100, 10, 0).is_ok(), "another caller has its own budget");
        assert!(g.publish("c", 100, 10, 0).is_ok());
        assert!(g.publish("d", 100, 10, 0).is_ok());
        assert!(g.publish("e", 1, 10, 0).is_err(), "the room takes four callers' bursts at most");
    }

    #[test]
    fn reads_pass_until_in_debt() {
        let config = RoomConfig { read_bytes_per_sec: 1000, read_bytes_burst: 1000, ..RoomConfig::default() };
        let mut g = Guards::new(&config, 0);
        assert!(g.may_read("u", 0).is_ok());
        g.spend_read("u", 5_000, 0);
        assert_eq!(g.may_read("u", 0), Err(4_001));
        assert!(g.may_read("v", 0).is_ok(), "others are not charged for u's reads");
        assert!(g.may_read("u", 4_001).is_ok());
    }
}
