//! The outbox's tests: backoff, splitting, bounds, dead letters, `Retry-After`.

use super::*;
use crate::compact::CompactJson;
use crate::store::{MemoryStore, OutboxCounts, OutboxRow};
use proptest::prelude::*;
use std::collections::BTreeMap;

proptest! {
    /// Full jitter: after the k-th failure the delay lies in [1 s, min(10 min, 2^(k-1) s)].
    #[test]
    fn backoff_bounds(failures in 1u32..100, random in any::<u64>()) {
        let d = backoff_ms(failures, random);
        let cap = (1000u128 << (failures - 1).min(40)).min(600_000) as u64;
        prop_assert!(d >= 1000, "{} < 1 s", d);
        prop_assert!(d <= cap.max(1000), "{} > {}", d, cap);
    }
}

#[test]
fn backoff_reaches_its_bounds() {
    assert_eq!(backoff_ms(1, 12345), 1000, "the first retry is after 1 s");
    assert_eq!(backoff_ms(2, 1000), 2000);
    assert_eq!(backoff_ms(2, 0), 1000);
    assert_eq!(backoff_ms(11, 599_000), 600_000, "at most 10 min");
    assert_eq!(backoff_ms(u32::MAX, u64::MAX), 1000 + u64::MAX % 599_001);
    assert_eq!(backoff_ms(0, 7), 1000);
}

/// A receiver, as the outbox sees it: what it answers to a batch, and what it kept.
struct Receiver {
    /// Messages (their `data`, a number) whose batch it refuses, and with what.
    poisoned: BTreeMap<u64, u16>,
    /// Every event it acknowledged or processed, by message number, in arrival order.
    got: Vec<u64>,
    posts: usize,
    refusals: usize,
}

impl Receiver {
    fn new(poisoned: &[(u64, u16)]) -> Receiver {
        Receiver { poisoned: poisoned.iter().copied().collect(), got: Vec::new(), posts: 0, refusals: 0 }
    }

    /// Parses the body as a receiver would; refuses it if it holds a poisoned message.
    fn answer(&mut self, request: &WebhookRequest) -> u16 {
        self.posts += 1;
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        let numbers: Vec<u64> = body["events"].as_array().unwrap().iter().map(|e| e["data"].as_u64().unwrap()).collect();
        assert_eq!(numbers.len(), request.events);
        if let Some(status) = numbers.iter().find_map(|n| self.poisoned.get(n)) {
            self.refusals += 1;
            return *status;
        }
        self.got.extend(numbers);
        204
    }
}

/// One room's outbox with the in-memory store and a simulated clock.
struct Sim {
    outbox: Outbox,
    store: MemoryStore,
    now: u64,
    published: u64,
}

impl Sim {
    fn new(batch_max: usize) -> Sim {
        Sim::with(&[("WEBHOOK_BATCH_MAX", &batch_max.to_string())])
    }

    /// An outbox of `message.published` with these vars besides.
    fn with(vars: &[(&str, &str)]) -> Sim {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let config = WebhookConfig::from_vars(&move |name| match name {
            "WEBHOOK_URL" => Some("https://hooks.test/in".into()),
            "WEBHOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
            "WEBHOOK_EVENTS" => Some("message.published".into()),
            _ => vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        });
        let mut store = MemoryStore::default();
        let outbox = Outbox::load("r", config, "00112233aabbccdd", &mut store).unwrap();
        Sim { outbox, store, now: 1_000, published: 0 }
    }

    /// The next message's event as stored (its `data` is its number), and its size.
    fn next_event(&self) -> (String, OutboxSize) {
        let n = self.published + 1;
        let data = CompactJson::parse(&n.to_string()).unwrap();
        let event = Event::Message { epoch: "e", seq: n, from: "c", user: "u", data: &data, message_id: None };
        let body = self.outbox.encode(&event, self.now).unwrap();
        let size = OutboxSize::one(body.len());
        (body, size)
    }

    /// Publishes the next message if the outbox admits its event, as the room does.
    fn offer(&mut self) -> bool {
        let (body, size) = self.next_event();
        if !self.outbox.admit(EventClass::Message, size, &mut self.store).unwrap() {
            return false;
        }
        self.published += 1;
        self.outbox.push_body(&body, self.now, &mut self.store).unwrap();
        true
    }

    /// The store's counts, which the sizes kept in memory must equal.
    fn counts(&mut self) -> OutboxCounts {
        let c = self.store.outbox_counts().unwrap();
        assert_eq!(self.outbox.size(), (c.pending_size(), c.dead_size()), "the sizes kept in memory are the store's");
        c
    }

    /// `n` more messages; their `data` is their number, from 1.
    fn publish(&mut self, n: u64) {
        for _ in 0..n {
            self.published += 1;
            let data = CompactJson::parse(&self.published.to_string()).unwrap();
            let event = Event::Message { epoch: "e", seq: self.published, from: "c", user: "u", data: &data, message_id: None };
            self.outbox.push(event, self.now, &mut self.store).unwrap();
        }
    }

    /// A restart: the outbox is loaded afresh from the store (what is in memory is lost).
    fn restart(&mut self) {
        self.outbox = Outbox::load("r", self.outbox.config().clone(), "ffffffffffffffff", &mut self.store).unwrap();
    }

    /// Runs the alarm at the outbox's time and makes the POST it asks for, if any. An alarm
    /// more than an hour away (longer than any backoff: a dead letter's expiry) is not
    /// waited for.
    fn poll(&mut self) -> Option<WebhookRequest> {
        let at = self.outbox.poll_timeout()?;
        if at > self.now + RETRY_AFTER_MAX_MS {
            return None;
        }
        self.now = self.now.max(at);
        self.outbox.poll_request(self.now, &mut self.store).unwrap()
    }

    fn result(&mut self, request: &WebhookRequest, outcome: WebhookOutcome, random: u64) {
        self.outbox.handle_result(request.attempt, outcome, self.now, random, &mut self.store).unwrap();
    }

    /// Delivers until nothing is pending, every POST answered by `receiver`.
    fn drain(&mut self, receiver: &mut Receiver) {
        for _ in 0..10_000 {
            let Some(request) = self.poll() else { return };
            let status = receiver.answer(&request);
            self.result(&request, WebhookOutcome::Status(status, None), 0);
        }
        panic!("the outbox never drained");
    }

    /// The dead letters' message numbers, with the status that refused each (1: too old).
    fn dead(&self) -> Vec<u64> {
        let rows = self.store.outbox_rows();
        rows.iter().filter(|r| r.2).map(|r| serde_json::from_str::<serde_json::Value>(&r.1).unwrap()["data"].as_u64().unwrap()).collect()
    }
}

/// Issue #22: one event the receiver refuses in a batch of 100 is found by splitting and set
/// aside with its status; every other event is delivered once, in order, at once (no backoff),
/// and events published meanwhile follow.
#[test]
fn a_refused_event_is_split_out_and_dead_lettered_and_delivery_goes_on() {
    let mut sim = Sim::new(100);
    sim.publish(100);
    let mut receiver = Receiver::new(&[(37, 400)]);
    let start = sim.now;
    // the first POST carries all 100 and is refused
    let first = sim.poll().unwrap();
    assert_eq!(first.events, 100);
    assert_eq!(receiver.answer(&first), 400);
    sim.result(&first, WebhookOutcome::Status(400, None), 0);
    assert_eq!(sim.outbox.poll_timeout(), Some(0), "the next batch goes at once");
    sim.publish(10); // events keep coming while the batch is split
    sim.drain(&mut receiver);
    let mut expected: Vec<u64> = (1..=110).collect();
    expected.retain(|n| *n != 37);
    assert_eq!(receiver.got, expected, "everything else, once, in order");
    assert_eq!(sim.dead(), [37]);
    assert_eq!(sim.now, start, "no backoff: refusals are answers");
    assert!(receiver.posts <= 12, "{} POSTs", receiver.posts);
    let c = sim.store.outbox_counts().unwrap();
    assert_eq!((c.pending, c.dead, c.refused, c.last_refused), (0, 1, 1, Some((37, 400))));
    let stats = sim.outbox.stats(sim.now, &mut sim.store).unwrap();
    assert_eq!((stats.dead_letters, stats.refused, stats.failures, stats.last_error.clone()), (1, 1, 0, None));
    assert_eq!(stats.last_refused, Some(RefusedEvent { id: "evt_00112233aabbccdd_37".into(), status: 400 }));
    assert_eq!(serde_json::to_value(&stats).unwrap()["lastRefused"], serde_json::json!({"id": "evt_00112233aabbccdd_37", "status": 400}));
    // re-queued, it is refused again, alone, and set aside again; the rest is not held up
    assert_eq!(sim.outbox.requeue(sim.now, &mut sim.store).unwrap(), 1);
    sim.publish(1);
    sim.drain(&mut receiver);
    assert_eq!(receiver.got.last(), Some(&111));
    assert_eq!(sim.dead(), [37]);
}

/// Wherever the refused event sits in a batch of 100, finding it costs at most 9 more POSTs.
#[test]
fn finding_a_refused_event_costs_about_log2_of_the_batch() {
    let mut posts = Vec::new();
    for poisoned in 1..=100 {
        let mut sim = Sim::new(100);
        sim.publish(100);
        let mut receiver = Receiver::new(&[(poisoned, 400)]);
        sim.drain(&mut receiver);
        assert_eq!(receiver.got.len(), 99);
        posts.push(receiver.posts);
    }
    assert!(posts.iter().all(|p| *p <= 10), "{posts:?}");
    assert!(posts.iter().sum::<usize>() <= 950, "9.5 on average at most: {posts:?}");
}

/// Which answers split a batch and which are retried as they are.
#[test]
fn only_400_413_and_422_split_a_batch_the_rest_is_retried_with_backoff() {
    for status in [408, 429, 401, 403, 404, 409, 410, 415, 500, 502, 503, 302] {
        assert!(!refuses(status), "{status}");
        let mut sim = Sim::new(10);
        sim.publish(4);
        let first = sim.poll().unwrap();
        sim.result(&first, WebhookOutcome::Status(status, None), u64::MAX);
        let stats = sim.outbox.stats(sim.now, &mut sim.store).unwrap();
        assert_eq!((stats.failures, stats.pending, stats.dead_letters), (1, 4, 0), "{status}");
        assert_eq!(sim.outbox.poll_timeout(), Some(sim.now + 1_000), "{status}: backoff");
        let again = sim.poll().unwrap();
        assert_eq!((again.body.as_str(), again.events), (first.body.as_str(), 4), "{status}: the same batch again");
    }
    for status in [400, 413, 422] {
        assert!(refuses(status));
        let mut sim = Sim::new(10);
        sim.publish(4);
        let mut receiver = Receiver::new(&[(4, status)]);
        sim.drain(&mut receiver);
        assert_eq!((receiver.got.as_slice(), sim.dead()), (&[1, 2, 3][..], vec![4]), "{status}");
        assert_eq!(sim.store.outbox_counts().unwrap().last_refused, Some((4, status)));
    }
    // a lone event refused is set aside at once
    let mut sim = Sim::new(10);
    sim.publish(1);
    let mut receiver = Receiver::new(&[(1, 413)]);
    sim.drain(&mut receiver);
    assert_eq!((receiver.posts, sim.dead()), (1, vec![1]));
}

/// A split interrupted by a restart (suspects are in memory) starts over, with what was
/// delivered gone; a failure during a split retries the same smaller batch.
#[test]
fn a_split_survives_failures_and_restarts() {
    let mut sim = Sim::new(8);
    sim.publish(8);
    let mut receiver = Receiver::new(&[(6, 422)]);
    let first = sim.poll().unwrap();
    let status = receiver.answer(&first);
    sim.result(&first, WebhookOutcome::Status(status, None), 0);
    let half = sim.poll().unwrap();
    assert_eq!(half.events, 4);
    sim.result(&half, WebhookOutcome::Status(503, None), 0);
    let again = sim.poll().unwrap();
    assert_eq!(again.body, half.body, "the same half after the backoff");
    let status = receiver.answer(&again);
    sim.result(&again, WebhookOutcome::Status(status, None), 0);
    assert_eq!(receiver.got, [1, 2, 3, 4]);
    sim.restart();
    sim.drain(&mut receiver);
    assert_eq!(receiver.got, [1, 2, 3, 4, 5, 7, 8]);
    assert_eq!(sim.dead(), [6]);
}

proptest! {
    /// Any refused events among any number, any batch size, with failures, lost results and
    /// restarts on the way: each refused event ends as a dead letter with its status; every
    /// other event reaches the receiver at least once, and the first arrivals are in order.
    #[test]
    fn refused_events_never_hold_up_the_others(
        total in 1u64..150,
        batch_max in 1usize..40,
        poisoned in prop::collection::btree_map(1u64..150, prop::sample::select(vec![400u16, 413, 422]), 0..6),
        faults in prop::collection::vec((0u8..12, any::<u64>()), 0..40),
    ) {
        let poisoned: Vec<(u64, u16)> = poisoned.into_iter().filter(|(n, _)| *n <= total).collect();
        let mut sim = Sim::new(batch_max);
        sim.publish(total / 2);
        let mut receiver = Receiver::new(&poisoned);
        for (fault, random) in faults {
            let Some(request) = sim.poll() else { continue };
            match fault {
                0 => sim.result(&request, WebhookOutcome::Failed("timeout".into()), random),
                1 => sim.result(&request, WebhookOutcome::Status(503, None), random),
                2 => sim.result(&request, WebhookOutcome::Status(429, None), random),
                3 => { let status = receiver.answer(&request); if status < 300 { sim.restart() } else { sim.result(&request, WebhookOutcome::Status(status, None), random) } }
                4 => { let _ = receiver.answer(&request); sim.now += 20_000 } // processed, result lost
                5 => { sim.publish((total - sim.published).min(5)); let status = receiver.answer(&request); sim.result(&request, WebhookOutcome::Status(status, None), random) }
                _ => { let status = receiver.answer(&request); sim.result(&request, WebhookOutcome::Status(status, None), random) }
            }
        }
        sim.publish(total - sim.published);
        sim.drain(&mut receiver);
        let refused: BTreeMap<u64, u16> = poisoned.iter().copied().collect();
        prop_assert_eq!(sim.dead(), refused.keys().copied().collect::<Vec<_>>(), "each refused event is a dead letter");
        let c = sim.store.outbox_counts().unwrap();
        prop_assert_eq!((c.pending, c.refused), (0, refused.len() as u64));
        let mut first_arrivals = Vec::new();
        for n in &receiver.got {
            prop_assert!(!refused.contains_key(n), "a refused event was never taken");
            if !first_arrivals.contains(n) {
                first_arrivals.push(*n);
            }
        }
        let others: Vec<u64> = (1..=total).filter(|n| !refused.contains_key(n)).collect();
        prop_assert_eq!(first_arrivals, others, "every other event, first arrivals in order");
    }
}

// ---- bounds (issue #22) ------------------------------------------------------------------

/// The outbox holds at most `WEBHOOK_OUTBOX_MAX_EVENTS` events: the next message is refused,
/// nothing is stored for it, and once a delivery makes room messages are taken again.
#[test]
fn the_outbox_is_bounded_in_events_and_takes_again_once_drained() {
    let mut sim = Sim::with(&[("WEBHOOK_OUTBOX_MAX_EVENTS", "10"), ("WEBHOOK_BATCH_MAX", "4")]);
    for _ in 0..10 {
        assert!(sim.offer());
    }
    assert!(!sim.offer(), "the 11th is refused");
    assert!(!sim.offer());
    let c = sim.counts();
    assert_eq!((c.pending, sim.published), (10, 10), "nothing stored for the refused ones");
    let stats = sim.outbox.stats(sim.now, &mut sim.store).unwrap();
    assert!(stats.full);
    // the receiver is down: still full, and the publisher is told when the next attempt is
    let first = sim.poll().unwrap();
    sim.result(&first, WebhookOutcome::Status(503, None), 1_000);
    assert!(!sim.offer());
    assert_eq!(sim.outbox.retry_after_ms(sim.now), 1_000, "the first backoff is 1 s");
    let again = sim.poll().unwrap();
    sim.result(&again, WebhookOutcome::Status(503, None), 1_000);
    assert_eq!(sim.outbox.retry_after_ms(sim.now), 2_000);
    // it comes back: one batch of 4 delivered makes room for 4 more, in order
    let batch = sim.poll().unwrap();
    assert_eq!(batch.events, 4);
    sim.result(&batch, WebhookOutcome::Status(204, None), 0);
    for _ in 0..4 {
        assert!(sim.offer());
    }
    assert!(!sim.offer());
    assert_eq!(sim.counts().pending, 10);
    let mut receiver = Receiver::new(&[]);
    sim.drain(&mut receiver);
    assert_eq!(receiver.got, (5..=14).collect::<Vec<_>>(), "the rest, once, in order");
    assert!(sim.offer());
    assert!(!sim.outbox.stats(sim.now, &mut sim.store).unwrap().full);
}

/// The same bound in bytes: events are counted as stored.
#[test]
fn the_outbox_is_bounded_in_bytes() {
    let probe = Sim::with(&[]);
    let one = probe.next_event().1.bytes;
    let cap = (one * 5 + one / 2).to_string();
    let mut sim = Sim::with(&[("WEBHOOK_OUTBOX_MAX_BYTES", &cap)]);
    let mut taken = 0;
    while sim.offer() {
        taken += 1;
        assert!(taken < 100);
    }
    let c = sim.counts();
    assert_eq!(taken, 5, "{one} bytes an event, {cap} in all");
    assert!(c.pending_bytes <= cap.parse().unwrap());
    let mut receiver = Receiver::new(&[]);
    sim.drain(&mut receiver);
    assert!(sim.offer(), "drained, it takes again");
}

/// An outbox with nothing pending takes one event whatever its size, so a bound smaller than
/// an event slows the room down instead of stopping it; presence may go to twice the bound.
#[test]
fn an_empty_outbox_takes_one_event_and_presence_may_take_twice_the_bound() {
    let mut sim = Sim::with(&[("WEBHOOK_OUTBOX_MAX_BYTES", "5")]);
    assert!(sim.offer(), "larger than the bound, but nothing is pending");
    assert!(!sim.offer());
    let mut receiver = Receiver::new(&[]);
    sim.drain(&mut receiver);
    assert!(sim.offer());
    assert_eq!(receiver.got, [1]);

    let mut sim = Sim::with(&[("WEBHOOK_OUTBOX_MAX_EVENTS", "3")]);
    let one = |bytes| OutboxSize { events: 1, bytes };
    for _ in 0..3 {
        assert!(sim.offer());
    }
    assert!(!sim.outbox.admit(EventClass::Message, one(10), &mut sim.store).unwrap());
    for _ in 0..3 {
        assert!(sim.outbox.admit(EventClass::Presence, one(10), &mut sim.store).unwrap());
        sim.outbox.push_body(r#"{"type":"presence.joined"}"#, sim.now, &mut sim.store).unwrap();
    }
    assert!(!sim.outbox.admit(EventClass::Presence, one(10), &mut sim.store).unwrap(), "twice the bound");
    assert_eq!(sim.outbox.bound(EventClass::Presence), OutboxSize { events: 6, bytes: 2 * 128 * 1024 * 1024 });
    sim.counts();
}

/// Dead letters count against the bound, but an event that needs room takes it from them,
/// the first set aside first; pending events are never deleted.
#[test]
fn dead_letters_make_room_first_set_aside_first() {
    let mut sim = Sim::with(&[("WEBHOOK_OUTBOX_MAX_EVENTS", "6"), ("WEBHOOK_BATCH_MAX", "1")]);
    let mut receiver = Receiver::new(&[(1, 400), (2, 422), (3, 413)]);
    for _ in 0..6 {
        assert!(sim.offer());
    }
    sim.drain(&mut receiver);
    assert_eq!((sim.dead(), receiver.got.clone()), (vec![1, 2, 3], vec![4, 5, 6]));
    for _ in 0..3 {
        sim.offer();
    }
    // 3 dead + 3 pending: the bound. The next one takes the oldest dead letter's place.
    assert_eq!(sim.counts().dead, 3);
    assert!(sim.offer());
    assert_eq!(sim.dead(), [2, 3]);
    assert!(sim.offer());
    assert!(sim.offer());
    assert_eq!(sim.dead(), Vec::<u64>::new());
    assert!(!sim.offer(), "6 pending: no dead letter left to make room");
    let stats = sim.outbox.stats(sim.now, &mut sim.store).unwrap();
    assert_eq!((stats.expired, stats.dead_letters, stats.pending), (3, 0, 6));
    sim.counts();
}

/// A dead letter is deleted `WEBHOOK_DEAD_LETTER_SECONDS` after it was set aside, on the
/// room's alarm even when nothing else is due, and not before; expiry runs at most once a
/// minute.
#[test]
fn dead_letters_expire_after_their_time() {
    let mut sim = Sim::with(&[("WEBHOOK_DEAD_LETTER_SECONDS", "3600"), ("WEBHOOK_MAX_AGE_SECONDS", "60"), ("WEBHOOK_BATCH_MAX", "1")]);
    let mut receiver = Receiver::new(&[(1, 400)]);
    sim.publish(2);
    sim.drain(&mut receiver);
    let refused_at = sim.now;
    assert_eq!(sim.dead(), [1]);
    // the receiver goes down; event 3 ages into a dead letter 90 s later
    sim.publish(1);
    let r = sim.poll().unwrap();
    sim.result(&r, WebhookOutcome::Failed("down".into()), 0);
    sim.now += 90_000;
    assert!(sim.outbox.poll_request(sim.now, &mut sim.store).unwrap().is_none(), "too old: set aside");
    let aged_at = sim.now;
    assert_eq!(sim.dead(), [1, 3]);
    assert_eq!(sim.outbox.poll_timeout(), Some(refused_at + 3_600_000), "the alarm is set for the first expiry");
    sim.now = refused_at + 3_599_999;
    sim.outbox.poll_request(sim.now, &mut sim.store).unwrap();
    assert_eq!(sim.dead(), [1, 3], "not before its time");
    sim.now = refused_at + 3_600_000;
    sim.outbox.poll_request(sim.now, &mut sim.store).unwrap();
    assert_eq!(sim.dead(), [3]);
    assert_eq!(sim.outbox.poll_timeout(), Some(aged_at + 3_600_000), "the next one's time");
    sim.now = aged_at + 3_600_000;
    sim.outbox.poll_request(sim.now, &mut sim.store).unwrap();
    assert_eq!(sim.dead(), Vec::<u64>::new());
    assert_eq!(sim.outbox.poll_timeout(), None, "nothing left to do");
    assert_eq!(sim.outbox.stats(sim.now, &mut sim.store).unwrap().expired, 2);
    sim.counts();
    // dead letters set aside a millisecond apart: the first expires at its time, the other
    // four in one go a minute later, not one alarm each
    let mut sim = Sim::with(&[("WEBHOOK_DEAD_LETTER_SECONDS", "1"), ("WEBHOOK_BATCH_MAX", "1")]);
    let poisoned: Vec<(u64, u16)> = (1..=5).map(|n| (n, 400)).collect();
    let mut receiver = Receiver::new(&poisoned);
    let start = sim.now;
    for _ in 0..5 {
        sim.publish(1);
        sim.drain(&mut receiver);
        sim.now += 1;
    }
    assert_eq!(sim.dead(), [1, 2, 3, 4, 5]);
    assert_eq!(sim.outbox.poll_timeout(), Some(start + 1_000));
    sim.now = start + 1_000;
    sim.outbox.poll_request(sim.now, &mut sim.store).unwrap();
    assert_eq!(sim.dead(), [2, 3, 4, 5]);
    assert_eq!(sim.outbox.poll_timeout(), Some(start + 1_000 + EXPIRY_EVERY_MS), "once a minute at most");
    sim.restart();
    assert_eq!(sim.outbox.poll_timeout(), Some(start + 1_001), "a restart reads the first one kept from the store");
    sim.now = start + 1_000 + EXPIRY_EVERY_MS;
    sim.outbox.poll_request(sim.now, &mut sim.store).unwrap();
    assert_eq!(sim.dead(), Vec::<u64>::new());
    sim.counts();
}

/// A receiver's 429 or 503 with `Retry-After` (seconds or a date) makes the next attempt wait
/// that long when it is longer than the backoff, up to an hour; other statuses and unreadable
/// values get the backoff alone.
#[test]
fn retry_after_is_honoured_for_429_and_503() {
    let attempt = |status: u16, retry_after: Option<&str>| {
        let mut sim = Sim::new(10);
        sim.publish(1);
        let r = sim.poll().unwrap();
        let start = sim.now;
        sim.result(&r, WebhookOutcome::Status(status, retry_after.map(str::to_owned)), 0);
        let stats = sim.outbox.stats(sim.now, &mut sim.store).unwrap();
        (sim.outbox.poll_timeout().unwrap() - start, stats.last_error.unwrap(), stats.failures)
    };
    assert_eq!(attempt(503, Some("30")), (30_000, "HTTP 503, Retry-After 30 s".into(), 1));
    assert_eq!(attempt(429, Some("120")).0, 120_000);
    assert_eq!(attempt(429, Some("0")).0, 1_000, "never sooner than the backoff");
    assert_eq!(attempt(503, Some("86400")).0, RETRY_AFTER_MAX_MS, "an hour at most");
    assert_eq!(attempt(503, Some("soon")), (1_000, "HTTP 503".into(), 1), "unreadable: ignored");
    assert_eq!(attempt(500, Some("30")), (1_000, "HTTP 500".into(), 1), "only 429 and 503");
    assert_eq!(attempt(503, None).0, 1_000);
    // a date: the Sim's clock is at 1 s past the epoch
    assert_eq!(attempt(503, Some("Thu, 01 Jan 1970 00:01:01 GMT")).0, 60_000);
    // the publisher refused meanwhile is told the same wait, up to a minute
    let mut sim = Sim::with(&[("WEBHOOK_OUTBOX_MAX_EVENTS", "1")]);
    assert!(sim.offer());
    let r = sim.poll().unwrap();
    sim.result(&r, WebhookOutcome::Status(429, Some("45".into())), 0);
    assert!(!sim.offer());
    assert_eq!(sim.outbox.retry_after_ms(sim.now), 45_000);
    sim.now += 44_000;
    assert_eq!(sim.outbox.retry_after_ms(sim.now), 1_000);
    let r = sim.poll().unwrap();
    sim.result(&r, WebhookOutcome::Status(503, Some("7200".into())), 0);
    assert_eq!(sim.outbox.retry_after_ms(sim.now), REFUSAL_RETRY_MAX_MS);
}

proptest! {
    /// A body is at most `max_bytes` long unless it holds one event, and holds as many of the
    /// rows as fit.
    #[test]
    fn a_batch_body_stays_within_its_bytes(sizes in prop::collection::vec(1usize..300, 1..30), max in 0usize..3000) {
        let rows: Vec<OutboxRow> = sizes.iter().enumerate().map(|(i, n)| OutboxRow {
            n: i as u64 + 1,
            ts: 0,
            body: format!(r#"{{"type":"x","d":"{}"}}"#, "é".repeat(*n / 2)),
        }).collect();
        let (body, count) = batch_body_within("k", &rows, max);
        prop_assert!(count >= 1 && count <= rows.len());
        prop_assert_eq!(&body, &batch_body("k", &rows[..count]));
        prop_assert!(count == 1 || body.len() <= max, "{} > {}", body.len(), max);
        if count < rows.len() {
            prop_assert!(batch_body("k", &rows[..count + 1]).len() > max, "one more would have fit");
        }
    }

    /// Whatever happens (publishes against small bounds, deliveries, refusals, failures, time
    /// passing past the max age and the dead letters' time, re-queues, restarts), the sizes
    /// kept in memory are the store's, and messages never take the outbox past its bound
    /// (unless nothing was pending).
    #[test]
    fn sizes_are_exact_and_messages_stay_within_the_bound(
        steps in prop::collection::vec((0u8..9, any::<u64>()), 1..120),
        max_events in 1u64..12,
        max_bytes in 50u64..2_000,
    ) {
        let (events, bytes) = (max_events.to_string(), max_bytes.to_string());
        let mut sim = Sim::with(&[
            ("WEBHOOK_OUTBOX_MAX_EVENTS", &events),
            ("WEBHOOK_OUTBOX_MAX_BYTES", &bytes),
            ("WEBHOOK_MAX_AGE_SECONDS", "30"),
            ("WEBHOOK_DEAD_LETTER_SECONDS", "120"),
            ("WEBHOOK_BATCH_MAX", "3"),
        ]);
        let poisoned: Vec<(u64, u16)> = (1..500).filter(|n| n % 7 == 3).map(|n| (n, 400)).collect();
        let mut receiver = Receiver::new(&poisoned);
        let bound = OutboxSize { events: max_events, bytes: max_bytes };
        for (step, random) in steps {
            match step {
                0..=2 => {
                    let before = sim.counts();
                    if sim.offer() {
                        let after = sim.counts();
                        prop_assert!(before.pending == 0 || after.pending_size().plus(after.dead_size()).within(bound));
                    }
                }
                3 => if let Some(r) = sim.poll() {
                    let status = receiver.answer(&r);
                    sim.result(&r, WebhookOutcome::Status(status, None), random);
                },
                4 => if let Some(r) = sim.poll() { sim.result(&r, WebhookOutcome::Status(503, Some("5".into())), random) },
                5 => sim.now += random % 100_000,
                6 => { sim.outbox.requeue(sim.now, &mut sim.store).unwrap(); }
                7 => sim.restart(),
                _ => { sim.outbox.poll_request(sim.now, &mut sim.store).unwrap(); }
            }
            sim.counts();
        }
    }
}

#[test]
fn truncation_keeps_whole_characters() {
    assert_eq!(truncate("ééé".into(), 3), "é");
    assert_eq!(truncate("abc".into(), 5), "abc");
}
