//! A room's ordered stream, delivered to other objects: the mechanism behind sessions (a room
//! delivers to the session object of each user that joined it) and sharded rooms (a sequencer
//! delivers to its shards). Pure: calls between objects, storage and the clock stay in the
//! adapters.
//!
//! The promise is the one a direct socket has, between objects: every stored message reaches
//! every subscriber **at least once, in seq order**, and a subscriber passes each on **exactly
//! once**; what cannot be delivered any more (trimmed from history, or a new epoch) is said
//! explicitly, never skipped silently.
//!
//! How, in one rule: **the receiver's answer carries its position**. The [`Sender`] (in the room)
//! keeps, per subscriber, the highest seq that subscriber confirmed (`acked`) and sends what
//! follows it, read from the room's history, at most one call in flight per subscriber (calls
//! on one stub arrive in order, a new stub's do not; one in flight needs neither). The
//! [`Receiver`] (in the subscriber) keeps per room the epoch and seq it has passed on, passes on
//! only the next ones, and answers with where it now stands. Whatever was lost, doubled or cut
//! short on the way (a failed call, a timeout, a restart of either side), the next call starts at
//! the receiver's position: the sender cannot skip and the receiver cannot double. A failed call
//! is retried with full-jitter backoff.
//!
//! Positions are durable on both sides (the adapters store them with the messages they follow),
//! so a restart resumes rather than replays.
//!
//! **Extras** ride the same calls: ephemeral items a subscriber must get in the order they were
//! made (a session's per-device frames: welcomes, broadcasts, presence, acks, closes). They are
//! numbered per subscriber, kept by the sender until an answer confirms them, and passed on by
//! the receiver once each (it answers with the highest number it has seen). They are not
//! stored: a sender that restarts has none, and says so with [`Sender::lost_extras`] so the
//! adapter can make the subscriber start over. A **probe** (a call with nothing in it, every
//! `probe_ms` while a subscriber is quiet) lets the receiver say what it still holds.

// Sorted vectors under std's names: a fraction of `BTreeMap`'s wasm (bench/README.md, "Worker size").
use crate::sorted::SortedMap as BTreeMap;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

#[cfg(test)]
mod tests;

/// Where a receiver stands in one room's stream: it has passed on every message up to `seq` of
/// `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(serde::Serialize, serde::Deserialize))]
pub struct Position {
    pub epoch: String,
    pub seq: u64,
}

/// The sender's tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedConfig {
    /// Most messages in one call.
    pub batch_max: usize,
    /// A call not answered within this is taken as failed.
    pub call_timeout_ms: u64,
    /// Full-jitter backoff after failed calls: the first delay's ceiling, and the cap.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// Most extras held for one subscriber; past it they are dropped and the subscriber is
    /// [`Sender::overflowed`] (a slow consumer, like a socket that does not read).
    pub extras_max: usize,
    /// Most bytes of extras' text held for one subscriber; past it, as past `extras_max`. Every
    /// call carries all the extras not yet confirmed, so this bounds a call's size too.
    pub extras_max_bytes: usize,
    /// A quiet subscriber is called with nothing in it this often (0: never).
    pub probe_ms: u64,
    /// No call to a subscriber sooner than this after its last answer: what it gets in between
    /// is coalesced into the next call (0: no wait). A head-only feed (`batch_max` 0, a
    /// sidebar's unread count) is called at most once per interval, however busy the room.
    pub min_interval_ms: u64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            batch_max: 100,
            call_timeout_ms: 10_000,
            retry_min_ms: 100,
            retry_max_ms: 30_000,
            extras_max: 4_096,
            extras_max_bytes: 4 << 20,
            probe_ms: 0,
            min_interval_ms: 0,
        }
    }
}

/// One ephemeral item for a subscriber: its number in the subscriber's order, whom it is for
/// (the subscriber's own address, such as a device), and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    pub n: u64,
    pub to: u64,
    pub text: String,
}

/// A receiver's answer: where it stands in the stream, and the last extra it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub position: Position,
    pub extras: u64,
}

/// One call to make: send `subscriber` the first `limit` messages of `epoch` after `after`, read
/// from history (fewer if history holds fewer; where it starts later than `after + 1`, the
/// receiver says the difference was lost), then report the answer with
/// [`Sender::handle_answer`] or [`Sender::handle_failure`], quoting `call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub call: u64,
    pub subscriber: String,
    pub epoch: String,
    pub after: u64,
    pub limit: usize,
    /// The room's latest seq when the call was made: sent along, so a receiver behind a history
    /// that holds nothing after `after` any more learns what it lost.
    pub head: u64,
    /// The extras not yet confirmed, in order.
    pub extras: Vec<Extra>,
}

#[derive(Debug, Clone)]
struct Subscriber {
    /// The receiver's last answer (or where it subscribed from).
    acked: Position,
    /// The call in flight and when it counts as failed.
    in_flight: Option<(u64, u64)>,
    /// Failed calls in a row.
    failures: u32,
    /// No call before this (backoff).
    not_before: u64,
    /// Extras not yet confirmed, and the next one's number.
    extras: VecDeque<Extra>,
    /// The bytes of their text.
    extras_bytes: usize,
    next_extra: u64,
    /// When the receiver last answered (or the subscription began), for probes.
    last_answer: u64,
    /// Extras were dropped (over `extras_max`, or made before a restart) and not yet said.
    overflowed: bool,
}

impl Subscriber {
    fn new(acked: Position, now: u64) -> Subscriber {
        Subscriber {
            acked,
            in_flight: None,
            failures: 0,
            not_before: 0,
            extras: VecDeque::new(),
            extras_bytes: 0,
            next_extra: 1,
            last_answer: now,
            overflowed: false,
        }
    }

    fn behind(&self, head: &Position) -> bool {
        self.acked.epoch != head.epoch || self.acked.seq < head.seq || !self.extras.is_empty()
    }

    fn probe_due(&self, probe_ms: u64) -> Option<u64> {
        (probe_ms > 0).then(|| self.last_answer.saturating_add(probe_ms))
    }
}

/// The room's side: who subscribes, what each has confirmed, and the next call to make.
#[derive(Debug, Clone)]
pub struct Sender {
    config: FeedConfig,
    head: Position,
    subscribers: BTreeMap<String, Subscriber>,
    next_call: u64,
    /// The first extra's number for new subscribers: extras made by a restarted sender must not
    /// reuse numbers a receiver has seen, so the adapter starts each instance past the last
    /// (from the clock, as connection ids are).
    extras_from: u64,
}

impl Sender {
    /// A sender for a room at `head` (its epoch and latest seq).
    pub fn new(config: FeedConfig, head: Position) -> Sender {
        Sender { config, head, subscribers: BTreeMap::new(), next_call: 1, extras_from: 1 }
    }

    /// Numbers this instance's extras from `first` on (see the field's doc).
    pub fn number_extras_from(&mut self, first: u64) {
        self.extras_from = first.max(1);
        for s in self.subscribers.values_mut() {
            s.next_extra = s.next_extra.max(self.extras_from);
        }
    }

    pub fn config(&self) -> &FeedConfig {
        &self.config
    }

    pub fn head(&self) -> &Position {
        &self.head
    }

    /// The subscribers and their confirmed positions (what the adapter stores).
    pub fn subscribers(&self) -> impl Iterator<Item = (&str, &Position)> {
        self.subscribers.iter().map(|(name, s)| (name.as_str(), &s.acked))
    }

    /// `subscriber` follows the stream from `from` (its resume point; a new subscriber's is the
    /// room's head). Subscribing again moves the position only forward within an epoch.
    pub fn subscribe(&mut self, subscriber: &str, from: Position) {
        self.subscribe_at(subscriber, from, 0);
    }

    /// [`Sender::subscribe`] at `now` (the start of its probe interval).
    pub fn subscribe_at(&mut self, subscriber: &str, from: Position, now: u64) {
        match self.subscribers.get_mut(subscriber) {
            Some(s) if s.acked.epoch == from.epoch && s.acked.seq >= from.seq => {}
            Some(s) => s.acked = from,
            None => {
                let mut s = Subscriber::new(from, now);
                s.next_extra = self.extras_from;
                self.subscribers.insert(subscriber.into(), s);
            }
        }
    }

    /// A subscriber restored after a restart that had extras in flight: they are gone, which
    /// [`Sender::overflowed`] reports as for an overflow.
    pub fn lost_extras(&mut self, subscriber: &str) {
        if let Some(s) = self.subscribers.get_mut(subscriber) {
            s.overflowed = true;
        }
    }

    pub fn is_subscribed(&self, subscriber: &str) -> bool {
        self.subscribers.contains_key(subscriber)
    }

    /// Whether `subscriber` holds extras not yet confirmed (what the adapter stores, so a restart
    /// knows some were lost).
    pub fn has_extras(&self, subscriber: &str) -> bool {
        self.subscribers.get(subscriber).is_some_and(|s| !s.extras.is_empty())
    }

    /// Queues an extra for `subscriber`. Past `extras_max` the queue is dropped and the
    /// subscriber marked: see [`Sender::overflowed`]. Nothing happens for one not subscribed.
    pub fn push_extra(&mut self, subscriber: &str, to: u64, text: String) {
        let (max, max_bytes) = (self.config.extras_max, self.config.extras_max_bytes);
        let Some(s) = self.subscribers.get_mut(subscriber) else { return };
        if s.overflowed {
            return;
        }
        if s.extras.len() >= max || s.extras_bytes.saturating_add(text.len()) > max_bytes {
            s.extras.clear();
            s.extras_bytes = 0;
            s.overflowed = true;
            return;
        }
        let n = s.next_extra;
        s.next_extra += 1;
        s.extras_bytes += text.len();
        s.extras.push_back(Extra { n, to, text });
    }

    /// Subscribers whose extras were dropped since the last call, each once: the adapter must
    /// make them start over (the room closes their connections), since they missed frames.
    pub fn overflowed(&mut self) -> Vec<String> {
        self.subscribers
            .iter_mut()
            .filter(|(_, s)| s.overflowed)
            .map(|(name, s)| {
                s.overflowed = false;
                name.clone()
            })
            .collect()
    }

    pub fn unsubscribe(&mut self, subscriber: &str) {
        self.subscribers.remove(subscriber);
    }

    /// The room stored messages up to `seq`.
    pub fn handle_appended(&mut self, seq: u64) {
        self.head.seq = self.head.seq.max(seq);
    }

    /// The room's history was deleted: a new epoch from seq 0. Every subscriber is told by its
    /// next call (its position names the old epoch).
    pub fn handle_reset(&mut self, epoch: &str) {
        self.head = Position { epoch: epoch.into(), seq: 0 };
    }

    /// The next call to make, if a subscriber is behind, has nothing in flight and is not
    /// backing off. A subscriber in another epoch gets a call too (with no messages before the
    /// head's seq 0), which tells it of the reset.
    /// A probe (`probe_ms`) is a call too, with nothing in it.
    pub fn poll_delivery(&mut self, now: u64) -> Option<Delivery> {
        let head = &self.head;
        let probe_ms = self.config.probe_ms;
        let (name, s) = self.subscribers.iter_mut().find(|(_, s)| {
            s.in_flight.is_none() && now >= s.not_before && (s.behind(head) || s.probe_due(probe_ms).is_some_and(|t| now >= t))
        })?;
        let call = self.next_call;
        self.next_call += 1;
        s.in_flight = Some((call, now.saturating_add(self.config.call_timeout_ms)));
        let after = if s.acked.epoch == head.epoch { s.acked.seq } else { 0 };
        let extras = s.extras.iter().cloned().collect();
        Some(Delivery {
            call,
            subscriber: name.clone(),
            epoch: head.epoch.clone(),
            after,
            limit: self.config.batch_max,
            head: head.seq,
            extras,
        })
    }

    /// The receiver answered `call` with where it stands now.
    pub fn handle_answer(&mut self, subscriber: &str, call: u64, answer: Answer, now: u64) {
        let min_interval = self.config.min_interval_ms;
        let Some(s) = self.subscribers.get_mut(subscriber) else { return };
        if s.in_flight.map(|(c, _)| c) != Some(call) {
            return; // an answer to a call already given up on: the next call asks again
        }
        s.in_flight = None;
        s.failures = 0;
        s.last_answer = now;
        s.not_before = now.saturating_add(min_interval);
        s.acked = answer.position;
        while let Some(e) = s.extras.pop_front() {
            if e.n > answer.extras {
                s.extras.push_front(e);
                break;
            }
            s.extras_bytes = s.extras_bytes.saturating_sub(e.text.len());
        }
    }

    /// `call` failed (the call threw, or timed out). It is retried after a full-jitter delay;
    /// `random` is a uniformly random value from the adapter.
    pub fn handle_failure(&mut self, subscriber: &str, call: u64, now: u64, random: u64) {
        let Some(s) = self.subscribers.get_mut(subscriber) else { return };
        if s.in_flight.map(|(c, _)| c) != Some(call) {
            return;
        }
        s.in_flight = None;
        s.failures = s.failures.saturating_add(1);
        let ceiling = self.config.retry_min_ms.saturating_mul(1u64 << s.failures.min(20)).min(self.config.retry_max_ms);
        s.not_before = now.saturating_add(random % ceiling.max(1));
    }

    /// Calls past their deadline count as failed.
    pub fn handle_timeout(&mut self, now: u64, random: u64) {
        let late: Vec<(String, u64)> = self
            .subscribers
            .iter()
            .filter_map(|(name, s)| s.in_flight.filter(|(_, deadline)| *deadline <= now).map(|(call, _)| (name.clone(), call)))
            .collect();
        for (name, call) in late {
            self.handle_failure(&name, call, now, random);
        }
    }

    /// When the sender next needs [`Sender::handle_timeout`] or a [`Sender::poll_delivery`]:
    /// the earliest call deadline, or the end of a backoff of a subscriber that is behind.
    pub fn poll_timeout(&self) -> Option<u64> {
        let head = &self.head;
        self.subscribers
            .values()
            .filter_map(|s| match s.in_flight {
                Some((_, deadline)) => Some(deadline),
                None if s.behind(head) => Some(s.not_before),
                None => s.probe_due(self.config.probe_ms).map(|t| t.max(s.not_before)),
            })
            .min()
    }
}

/// What a receiver makes of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received<T> {
    /// The messages to pass on, in order, each exactly once.
    pub fresh: Vec<T>,
    /// Messages that cannot be delivered any more, said before `fresh`.
    pub gap: Option<Gap>,
    /// Where the receiver stands now (the answer's position).
    pub position: Position,
}

/// Why messages were skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gap {
    /// The room's history was deleted; the stream starts again in a new epoch.
    Epoch,
    /// Messages after `after` up to `until` are no longer in history.
    Retention { after: u64, until: u64 },
}

/// Where a receiver stands in one room: messages and extras.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Follow {
    at: Position,
    extras: u64,
}

/// The subscriber's side: per room, where it stands.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    rooms: BTreeMap<String, Follow>,
}

impl Receiver {
    pub fn new() -> Receiver {
        Receiver::default()
    }

    /// Where the receiver stands in `room`, if it follows it.
    pub fn position(&self, room: &str) -> Option<&Position> {
        self.rooms.get(room).map(|f| &f.at)
    }

    /// The answer to give `room` now: where the receiver stands, if it follows it.
    pub fn answer(&self, room: &str) -> Option<Answer> {
        self.rooms.get(room).map(|f| Answer { position: f.at.clone(), extras: f.extras })
    }

    /// Follow `room` from `from` (restored from storage, or where a join starts), with extras
    /// passed on up to `extras`.
    pub fn follow(&mut self, room: &str, from: Position) {
        self.follow_with(room, from, 0);
    }

    pub fn follow_with(&mut self, room: &str, from: Position, extras: u64) {
        self.rooms.insert(room.into(), Follow { at: from, extras });
    }

    pub fn unfollow(&mut self, room: &str) {
        self.rooms.remove(room);
    }

    /// The rooms it follows.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    pub fn is_following(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// The extras of one call from `room`: those not passed on before, in order. Nothing for a
    /// room not followed.
    pub fn handle_extras(&mut self, room: &str, extras: Vec<Extra>) -> Vec<Extra> {
        let Some(f) = self.rooms.get_mut(room) else { return Vec::new() };
        let mut fresh = Vec::new();
        for e in extras {
            if e.n > f.extras {
                f.extras = e.n;
                fresh.push(e);
            }
        }
        fresh
    }

    /// One call from `room`: the messages of `epoch` after `after` that history still held, as
    /// `(seq, message)` in seq order. Passes on those after the receiver's position, once; a call
    /// whose first new message is past the receiver's next seq says what was lost (history
    /// trimmed, or the receiver's position was behind the one it subscribed from).
    /// `end` is the room's latest seq ([`Delivery::head`]) when the call holds the end of the
    /// room's history (history had fewer than `limit` messages after `after`), `None` when more
    /// may follow: only then can the receiver tell that a position behind the head lost what
    /// history no longer holds.
    pub fn handle_call<T>(&mut self, room: &str, epoch: &str, end: Option<u64>, messages: Vec<(u64, T)>) -> Received<T> {
        let at =
            &mut self.rooms.entry(room.into()).or_insert_with(|| Follow { at: Position { epoch: epoch.into(), seq: 0 }, extras: 0 }).at;
        let mut gap = None;
        if at.epoch != epoch {
            gap = Some(Gap::Epoch);
            *at = Position { epoch: epoch.into(), seq: 0 };
        }
        let mut fresh = Vec::new();
        for (seq, message) in messages {
            if seq <= at.seq {
                continue; // a duplicate: passed on before
            }
            if seq > at.seq + 1 && gap.is_none() {
                gap = Some(Gap::Retention { after: at.seq, until: seq - 1 });
            } else if seq > at.seq + 1 {
                // Only one gap per call can be said; the sender starts the next call here.
                break;
            }
            at.seq = seq;
            fresh.push(message);
        }
        match end {
            Some(head) if gap.is_none() && head > at.seq => {
                // History holds nothing after the receiver's position, yet the room is ahead.
                gap = Some(Gap::Retention { after: at.seq, until: head });
                at.seq = head;
            }
            _ => {}
        }
        Received { fresh, gap, position: at.clone() }
    }
}
