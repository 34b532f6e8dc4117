//! The delivery state machine of one room's outbox, pure (sans-IO, like the room): it says what
//! to POST next ([`Outbox::poll_request`]), when ([`Outbox::poll_timeout`]), and takes the result
//! back ([`Outbox::handle_result`]). Time and the random input of the backoff come in as
//! arguments; the adapter does the POST, bounded by `WEBHOOK_TIMEOUT_MS`.
//!
//! - One batch in flight per room. Events go in row order, which is the order they happened.
//! - A 2xx deletes exactly the rows sent. A refusal ([`refuses`]: 400, 413, 422) says the
//!   receiver will never take this body: the batch is split to find the event it refuses, which
//!   becomes a dead letter with the status, and delivery goes on (below). Anything else (408,
//!   429, any other status, a timeout, a network error) is a failure: the rows stay, and the
//!   next attempt waits [`backoff_ms`] (full jitter, 1 s up to 10 min). Failures, the next
//!   attempt's time and the last error are stored, so hibernation and restarts do not reset the
//!   backoff.
//! - Splitting (issue #22: one event a receiver's parser refuses must not hold up every later
//!   event of the room): a refused batch of `k` events makes its rows *suspects*, the first `k`
//!   pending rows. The next batches hold half the suspects each, without waiting: a delivered
//!   one clears its rows of suspicion, a refused one narrows the suspects to its rows. A refused
//!   batch of one event is that event's dead letter. So one refused event among `k` costs at
//!   most about `log2 k + 2` more POSTs (9 at most, 8 on average, for `k` = 100), every other
//!   event is delivered once, in row order, and the room's later events follow at once.
//!   Suspects are kept in memory only: after a restart the first batch is simply refused again
//!   and the search starts over, with the rows delivered so far gone.
//! - Before each attempt, pending events older than `WEBHOOK_MAX_AGE_SECONDS` become dead
//!   letters (kept, counted in stats, re-queued by the API).
//! - A batch whose result never comes (the object restarted mid-POST) is simply sent again: the
//!   rows are still there, with the same ids. At least once.

use super::event::{self, Event};
use super::sign;
use crate::config::webhook::{EventKind, WebhookConfig};
use crate::store::{OutboxCounts, OutboxRow, Store, StoreError, WebhookState};
use serde::Serialize;

/// The longest backoff: 10 minutes.
pub const BACKOFF_MAX_MS: u64 = 600_000;
/// The shortest backoff: 1 second.
pub const BACKOFF_MIN_MS: u64 = 1_000;
/// How long past its timeout a batch may stay unanswered before it counts as lost.
const LOST_AFTER_MS: u64 = 5_000;
/// The longest `last_error` kept.
const ERROR_MAX: usize = 200;

/// Whether an answer says the receiver will never take this body (so the same bytes would be
/// refused on every retry): 400 Bad Request, 413 Content Too Large, 422 Unprocessable Content.
/// The batch is split until the event refused alone is found and set aside. Every other status
/// is a failure that is retried as it is: 408 and 429 ask for a retry, and 401, 403, 404 and
/// the like say the endpoint or its configuration is wrong, which no event can be blamed for.
pub fn refuses(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

/// The delay before the next attempt after the `failures`-th consecutive failure (at least 1):
/// uniform in `[1 s, max(1 s, min(10 min, 1 s × 2^(failures-1)))]`, drawn from `random`.
pub fn backoff_ms(failures: u32, random: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(20);
    let cap = BACKOFF_MIN_MS.saturating_mul(1u64 << exp).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    BACKOFF_MIN_MS + random % (cap - BACKOFF_MIN_MS + 1)
}

/// One POST to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Hands the result back to [`Outbox::handle_result`].
    pub attempt: u64,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// `{"events":[…]}`.
    pub body: String,
    /// Abort the POST after this long: a timeout is a failure.
    pub timeout_ms: u64,
    /// How many events the body holds.
    pub events: usize,
}

/// How a POST ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered with this status (2xx acknowledges the whole batch; see
    /// [`refuses`] for the ones that split it).
    Status(u16),
    /// No answer: a timeout or a network error, described.
    Failed(String),
}

/// The stats' `webhook` object.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookStats {
    pub enabled: bool,
    pub pending: u64,
    pub oldest_pending_age_ms: Option<u64>,
    pub failures: u32,
    pub last_error: Option<String>,
    pub dead_letters: u64,
    /// The dead letters the receiver refused (part of `dead_letters`).
    pub refused: u64,
    /// The last event the receiver refused, and how.
    pub last_refused: Option<RefusedEvent>,
    /// Events acknowledged since this instance of the room started counting.
    pub delivered: u64,
}

/// An event the receiver refused ([`refuses`]), kept as a dead letter.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RefusedEvent {
    pub id: String,
    pub status: u16,
}

impl RefusedEvent {
    fn from_counts(key: Option<&str>, c: &OutboxCounts) -> Option<RefusedEvent> {
        let (n, status) = c.last_refused?;
        Some(RefusedEvent { id: event::event_id(key?, n), status })
    }
}

impl WebhookStats {
    /// The stats of a room whose events are not recorded (leftovers are still counted).
    pub fn off(store: &mut impl Store, now: u64) -> Result<WebhookStats, StoreError> {
        let c = store.outbox_counts()?;
        let key = if c.last_refused.is_some() { store.webhook_state()?.map(|s| s.key) } else { None };
        Ok(WebhookStats {
            enabled: false,
            pending: c.pending,
            oldest_pending_age_ms: c.oldest_pending.map(|t| now.saturating_sub(t)),
            failures: 0,
            last_error: None,
            dead_letters: c.dead,
            refused: c.refused,
            last_refused: RefusedEvent::from_counts(key.as_deref(), &c),
            delivered: 0,
        })
    }
}

#[derive(Debug)]
struct InFlight {
    attempt: u64,
    rows: Vec<u64>,
    /// When the batch counts as lost if no result came.
    lost_at: u64,
}

/// One room's outbox.
#[derive(Debug)]
pub struct Outbox {
    room: String,
    config: WebhookConfig,
    state: WebhookState,
    /// Whether the outbox may hold pending events (cleared when a poll finds none).
    pending: bool,
    in_flight: Option<InFlight>,
    next_attempt: u64,
    delivered: u64,
    /// How many of the first pending rows hold an event the receiver refused (module docs,
    /// splitting); 0 when no batch is being split.
    suspects: usize,
}

impl Outbox {
    /// The outbox of `room`, with its stored state; the first time, its key is `fresh_key`
    /// (random, from the adapter) and is stored.
    pub fn load(room: &str, config: WebhookConfig, fresh_key: &str, store: &mut impl Store) -> Result<Outbox, StoreError> {
        let state = match store.webhook_state()? {
            Some(state) => state,
            None => {
                let state = WebhookState { key: fresh_key.to_owned(), ..WebhookState::default() };
                store.put_webhook_state(&state)?;
                state
            }
        };
        let pending = store.outbox_any_pending()?;
        Ok(Outbox { room: room.to_owned(), config, state, pending, in_flight: None, next_attempt: 1, delivered: 0, suspects: 0 })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// The room's outbox key (the middle of its event ids).
    pub fn key(&self) -> &str {
        &self.state.key
    }

    /// Whether events of this kind are recorded.
    pub fn wants(&self, kind: EventKind) -> bool {
        self.config.events.contains(kind)
    }

    /// Records `event` (if its kind is wanted) in the outbox, in the caller's synchronous step,
    /// so it commits with the change it reports.
    pub fn push(&mut self, event: Event<'_>, now: u64, store: &mut impl Store) -> Result<(), StoreError> {
        if !self.wants(event.kind()) {
            return Ok(());
        }
        store.outbox_push(now, &event.encode(&self.room, now))?;
        self.pending = true;
        Ok(())
    }

    /// When [`Outbox::poll_request`] has something to do: now (or the backoff's time) when events
    /// wait and nothing is in flight; the time a batch in flight counts as lost otherwise.
    pub fn poll_timeout(&self) -> Option<u64> {
        if let Some(f) = &self.in_flight {
            return Some(f.lost_at);
        }
        if !self.pending || self.config.problem().is_some() {
            return None;
        }
        Some(self.state.next_at)
    }

    /// The next POST, if one is due: dead-letters what is too old, then takes the first pending
    /// events (up to `WEBHOOK_BATCH_MAX`, or half the suspects while a refused batch is split,
    /// and the byte cap) and signs them. The batch is then in flight until its result comes back.
    pub fn poll_request(&mut self, now: u64, store: &mut impl Store) -> Result<Option<WebhookRequest>, StoreError> {
        if let Some(f) = &self.in_flight {
            if now < f.lost_at {
                return Ok(None);
            }
            // The result never came back; the rows are still there and go again.
            self.in_flight = None;
        }
        let Ok(key) = &self.config.key else { return Ok(None) };
        if !self.pending || self.config.problem().is_some() || self.state.next_at > now {
            return Ok(None);
        }
        store.outbox_mark_dead(now.saturating_sub(self.config.max_age_ms))?;
        let limit = if self.suspects > 0 { (self.suspects / 2).max(1) } else { self.config.batch_max.max(1) };
        let rows = store.outbox_take(limit, self.config.batch_max_bytes)?;
        let Some(first) = rows.first() else {
            self.pending = false;
            return Ok(None);
        };
        let webhook_id = format!("batch_{}_{}", event::event_id(&self.state.key, first.n), rows.len());
        let body = batch_body(&self.state.key, &rows);
        let timestamp = now / 1000;
        let headers = vec![
            ("content-type", "application/json".to_owned()),
            ("user-agent", "roomcast-webhooks/1".to_owned()),
            ("webhook-signature", sign::signature(key, &webhook_id, timestamp, &body)),
            ("webhook-id", webhook_id),
            ("webhook-timestamp", timestamp.to_string()),
        ];
        let attempt = self.next_attempt;
        self.next_attempt += 1;
        let lost_at = now.saturating_add(self.config.timeout_ms).saturating_add(LOST_AFTER_MS);
        self.in_flight = Some(InFlight { attempt, rows: rows.iter().map(|r| r.n).collect(), lost_at });
        Ok(Some(WebhookRequest {
            attempt,
            url: self.config.url.clone(),
            headers,
            body,
            timeout_ms: self.config.timeout_ms,
            events: rows.len(),
        }))
    }

    /// The result of attempt `attempt`. A 2xx deletes exactly the rows sent; a refusal
    /// ([`refuses`]) splits the batch, or makes its one event a dead letter, and the next batch
    /// goes at once; anything else schedules the next attempt after the backoff (`random`: any
    /// value from a random source). A result for an attempt no longer in flight is ignored.
    pub fn handle_result(
        &mut self,
        attempt: u64,
        outcome: WebhookOutcome,
        now: u64,
        random: u64,
        store: &mut impl Store,
    ) -> Result<(), StoreError> {
        if self.in_flight.as_ref().is_none_or(|f| f.attempt != attempt) {
            return Ok(());
        }
        let Some(flight) = self.in_flight.take() else { return Ok(()) };
        match outcome {
            WebhookOutcome::Status(status) if (200..300).contains(&status) => {
                store.outbox_delete(&flight.rows)?;
                self.delivered += flight.rows.len() as u64;
                self.suspects = self.suspects.saturating_sub(flight.rows.len());
                self.answered(store)?;
            }
            WebhookOutcome::Status(status) if refuses(status) => {
                match flight.rows.as_slice() {
                    [one] => {
                        store.outbox_refuse(*one, status)?;
                        self.suspects = 0;
                    }
                    rows => self.suspects = rows.len(),
                }
                // The receiver is up and answering: the next batch goes at once.
                self.answered(store)?;
            }
            failure => {
                let error = match failure {
                    WebhookOutcome::Status(status) => format!("HTTP {status}"),
                    WebhookOutcome::Failed(e) => e.replace(&self.config.url, "WEBHOOK_URL"),
                };
                self.state.failures = self.state.failures.saturating_add(1);
                self.state.next_at = now.saturating_add(backoff_ms(self.state.failures, random));
                self.state.last_error = Some(truncate(error, ERROR_MAX));
                store.put_webhook_state(&self.state)?;
            }
        }
        Ok(())
    }

    /// The receiver answered (a 2xx or a refusal): the backoff starts over.
    fn answered(&mut self, store: &mut impl Store) -> Result<(), StoreError> {
        if self.state.failures > 0 || self.state.last_error.is_some() || self.state.next_at > 0 {
            self.state = WebhookState { key: std::mem::take(&mut self.state.key), ..WebhookState::default() };
            store.put_webhook_state(&self.state)?;
        }
        Ok(())
    }

    /// Dead letters back to pending, delivered at once (the backoff starts over: the operator
    /// says the receiver is back). Refused events come back too, and are split out again if the
    /// receiver still refuses them.
    pub fn requeue(&mut self, now: u64, store: &mut impl Store) -> Result<u64, StoreError> {
        let n = store.outbox_requeue(now)?;
        if n > 0 {
            self.pending = true;
            // The re-queued rows go first: the suspects are no longer the first rows.
            self.suspects = 0;
            if self.state.failures > 0 || self.state.next_at > now {
                self.state.failures = 0;
                self.state.next_at = 0;
                store.put_webhook_state(&self.state)?;
            }
        }
        Ok(n)
    }

    pub fn stats(&self, now: u64, store: &mut impl Store) -> Result<WebhookStats, StoreError> {
        let c = store.outbox_counts()?;
        let last_error = self.config.problem().map(str::to_owned).or_else(|| self.state.last_error.clone());
        Ok(WebhookStats {
            enabled: true,
            pending: c.pending,
            oldest_pending_age_ms: c.oldest_pending.map(|t| now.saturating_sub(t)),
            failures: self.state.failures,
            last_error,
            dead_letters: c.dead,
            refused: c.refused,
            last_refused: RefusedEvent::from_counts(Some(&self.state.key), &c),
            delivered: self.delivered,
        })
    }
}

/// `{"events":[…]}`: the stored events, each with its id in front, joined as they are.
pub fn batch_body(key: &str, rows: &[OutboxRow]) -> String {
    let mut body = String::with_capacity(rows.iter().map(|r| r.body.len() + 48).sum::<usize>() + 16);
    body.push_str("{\"events\":[");
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        event::with_id(key, row.n, &row.body, &mut body);
    }
    body.push_str("]}");
    body
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::CompactJson;
    use crate::store::MemoryStore;
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
            let batch_max = batch_max.to_string();
            let config = WebhookConfig::from_vars(&move |name| match name {
                "WEBHOOK_URL" => Some("https://hooks.test/in".into()),
                "WEBHOOK_SECRET" => Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
                "WEBHOOK_EVENTS" => Some("message.published".into()),
                "WEBHOOK_BATCH_MAX" => Some(batch_max.clone()),
                _ => None,
            });
            let mut store = MemoryStore::default();
            let outbox = Outbox::load("r", config, "00112233aabbccdd", &mut store).unwrap();
            Sim { outbox, store, now: 1_000, published: 0 }
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

        /// Runs the alarm at the outbox's time and makes the POST it asks for, if any.
        fn poll(&mut self) -> Option<WebhookRequest> {
            self.now = self.now.max(self.outbox.poll_timeout()?);
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
                self.result(&request, WebhookOutcome::Status(status), 0);
            }
            panic!("the outbox never drained");
        }

        /// The dead letters' message numbers, with the status that refused each (1: too old).
        fn dead(&self) -> Vec<u64> {
            let rows = self.store.outbox_rows();
            rows.iter()
                .filter(|r| r.2)
                .map(|r| serde_json::from_str::<serde_json::Value>(&r.1).unwrap()["data"].as_u64().unwrap())
                .collect()
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
        sim.result(&first, WebhookOutcome::Status(400), 0);
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
        assert_eq!(
            serde_json::to_value(&stats).unwrap()["lastRefused"],
            serde_json::json!({"id": "evt_00112233aabbccdd_37", "status": 400})
        );
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
            sim.result(&first, WebhookOutcome::Status(status), u64::MAX);
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
        sim.result(&first, WebhookOutcome::Status(status), 0);
        let half = sim.poll().unwrap();
        assert_eq!(half.events, 4);
        sim.result(&half, WebhookOutcome::Status(503), 0);
        let again = sim.poll().unwrap();
        assert_eq!(again.body, half.body, "the same half after the backoff");
        let status = receiver.answer(&again);
        sim.result(&again, WebhookOutcome::Status(status), 0);
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
                    1 => sim.result(&request, WebhookOutcome::Status(503), random),
                    2 => sim.result(&request, WebhookOutcome::Status(429), random),
                    3 => { let status = receiver.answer(&request); if status < 300 { sim.restart() } else { sim.result(&request, WebhookOutcome::Status(status), random) } }
                    4 => { let _ = receiver.answer(&request); sim.now += 20_000 } // processed, result lost
                    5 => { sim.publish((total - sim.published).min(5)); let status = receiver.answer(&request); sim.result(&request, WebhookOutcome::Status(status), random) }
                    _ => { let status = receiver.answer(&request); sim.result(&request, WebhookOutcome::Status(status), random) }
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

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("ééé".into(), 3), "é");
        assert_eq!(truncate("abc".into(), 5), "abc");
    }
}
