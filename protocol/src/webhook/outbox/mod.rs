//! The delivery state machine of one room's outbox, pure (sans-IO, like the room): it says what
//! to POST next ([`Outbox::poll_request`]), when ([`Outbox::poll_timeout`]), and takes the result
//! back ([`Outbox::handle_result`]); it says whether an event may be recorded at all
//! ([`Outbox::admit`]). Time and the random input of the backoff come in as arguments; the
//! adapter does the POST, bounded by `WEBHOOK_TIMEOUT_MS`.
//!
//! - One batch in flight per room. Events go in row order, which is the order they happened.
//!   A batch holds up to `WEBHOOK_BATCH_MAX` events and its body at most
//!   `WEBHOOK_BATCH_MAX_BYTES` (unless it holds one event), so a backlog drains in big POSTs.
//! - A 2xx deletes exactly the rows sent. A refusal ([`refuses`]: 400, 413, 422) says the
//!   receiver will never take this body: the batch is split to find the event it refuses, which
//!   becomes a dead letter with the status, and delivery goes on (below). Anything else (408,
//!   429, any other status, a timeout, a network error) is a failure: the rows stay, and the
//!   next attempt waits [`backoff_ms`] (full jitter, 1 s up to 10 min), or longer when a 429 or
//!   503 says `Retry-After` (honoured up to [`RETRY_AFTER_MAX_MS`]). Failures, the next attempt's
//!   time and the last error are stored, so hibernation and restarts do not reset the backoff.
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
//!   letters (kept, counted in stats, re-queued by the API). A dead letter is deleted
//!   `WEBHOOK_DEAD_LETTER_SECONDS` after it was set aside (checked at most once a minute).
//! - A batch whose result never comes (the object restarted mid-POST) is simply sent again: the
//!   rows are still there, with the same ids. At least once.
//!
//! # Bounds (issue #22)
//!
//! What the outbox holds, pending events and dead letters, is bounded per room in events and in
//! bytes (the events as stored): `WEBHOOK_OUTBOX_MAX_EVENTS` and `WEBHOOK_OUTBOX_MAX_BYTES`.
//! The room asks [`Outbox::admit`] before it records anything, so nothing is stored that the
//! outbox could not hold, and no event is ever dropped:
//!
//! - an event that would take the outbox over its bound first makes room by deleting dead
//!   letters, the first set aside first (counted in stats as expired): they are already out of
//!   the delivery promise, pending events never are;
//! - a message ([`EventClass::Message`]) that still does not fit is refused, and with it the
//!   publish: nothing is stored, the publisher is told to retry later ([`Outbox::retry_after_ms`]);
//! - presence and occupancy ([`EventClass::Presence`]) may take the outbox to twice the bound, so
//!   a backlog of messages never costs the backend its view of who is there. Beyond that the room
//!   refuses a connection that would make someone present (their join could not be recorded);
//!   departures are always recorded, and they are at most one per member present;
//! - an outbox with nothing pending takes any one admission, so a bound smaller than one event
//!   slows a room down instead of stopping it.
//!
//! The sizes are kept in memory, read from the store when the outbox loads and changed by what
//! each store call says it changed.

mod body;
mod policy;
mod stats;
#[cfg(test)]
mod tests;

pub use body::{batch_body, batch_body_within};
pub use policy::{
    backoff_ms, honours_retry_after, refuses, EventClass, WebhookOutcome, WebhookRequest, BACKOFF_MAX_MS, BACKOFF_MIN_MS, EXPIRY_EVERY_MS,
    REFUSAL_RETRY_MAX_MS, REFUSAL_RETRY_MIN_MS, RETRY_AFTER_MAX_MS,
};
pub use stats::{RefusedEvent, WebhookStats};

use super::event::{self, Event};
use super::{retry_after, sign};
use crate::config::webhook::{EventKind, WebhookConfig};
use crate::store::{OutboxSize, Store, StoreError, WebhookState};

/// How long past its timeout a batch may stay unanswered before it counts as lost.
const LOST_AFTER_MS: u64 = 5_000;
/// The longest `last_error` kept.
const ERROR_MAX: usize = 200;

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
    /// What the pending events and the dead letters take (module docs, *Bounds*).
    pending_size: OutboxSize,
    dead_size: OutboxSize,
    /// When the first dead letter kept was set aside: its expiry is the next one.
    dead_since: Option<u64>,
    /// When dead letters were last expired by this instance.
    expired_at: Option<u64>,
    expired: u64,
    backpressure: u64,
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
        let c = store.outbox_counts()?;
        Ok(Outbox {
            room: room.to_owned(),
            config,
            state,
            pending: c.pending > 0,
            in_flight: None,
            next_attempt: 1,
            delivered: 0,
            suspects: 0,
            pending_size: c.pending_size(),
            dead_size: c.dead_size(),
            dead_since: c.oldest_dead,
            expired_at: None,
            expired: 0,
            backpressure: 0,
        })
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

    /// `event` as it would be stored now, if its kind is recorded: what [`Outbox::admit`] is asked
    /// about, and what [`Outbox::push_body`] stores.
    pub fn encode(&self, event: &Event<'_>, now: u64) -> Option<String> {
        self.wants(event.kind()).then(|| event.encode(&self.room, now))
    }

    /// The bound of a class of events (module docs, *Bounds*).
    pub fn bound(&self, class: EventClass) -> OutboxSize {
        let cap = OutboxSize { events: self.config.outbox_max_events, bytes: self.config.outbox_max_bytes };
        match class {
            EventClass::Message => cap,
            EventClass::Presence => cap.plus(cap),
        }
    }

    /// What the outbox holds: its pending events and its dead letters.
    pub fn size(&self) -> (OutboxSize, OutboxSize) {
        (self.pending_size, self.dead_size)
    }

    /// Whether events of `class` taking `need` may be recorded now (module docs, *Bounds*): they
    /// fit within the class's bound with what the outbox holds, after deleting as many dead
    /// letters as that takes, or nothing is pending. Refused, nothing changed.
    pub fn admit(&mut self, class: EventClass, need: OutboxSize, store: &mut impl Store) -> Result<bool, StoreError> {
        let bound = self.bound(class);
        let empty = self.pending_size.events == 0;
        if !empty && !self.pending_size.plus(need).within(bound) {
            return Ok(false);
        }
        let over = self.pending_size.plus(self.dead_size).plus(need).minus(bound);
        if over != OutboxSize::ZERO && self.dead_size.events > 0 {
            let gone = store.outbox_evict(over)?;
            self.forget_dead(gone, store)?;
        }
        Ok(true)
    }

    /// Counts a publish or a join refused because [`Outbox::admit`] said no (stats
    /// `backpressure`).
    pub fn count_refusal(&mut self) {
        self.backpressure = self.backpressure.saturating_add(1);
    }

    /// How long a publisher refused by [`Outbox::admit`] is told to wait: until the next delivery
    /// attempt, between [`REFUSAL_RETRY_MIN_MS`] and [`REFUSAL_RETRY_MAX_MS`].
    pub fn retry_after_ms(&self, now: u64) -> u64 {
        self.state.next_at.saturating_sub(now).clamp(REFUSAL_RETRY_MIN_MS, REFUSAL_RETRY_MAX_MS)
    }

    /// Records `event` (if its kind is wanted) in the outbox, in the caller's synchronous step,
    /// so it commits with the change it reports. The caller asked [`Outbox::admit`] first, or
    /// records a departure (always recorded).
    pub fn push(&mut self, event: Event<'_>, now: u64, store: &mut impl Store) -> Result<(), StoreError> {
        match self.encode(&event, now) {
            Some(body) => self.push_body(&body, now, store),
            None => Ok(()),
        }
    }

    /// Records an event as [`Outbox::encode`] made it.
    pub fn push_body(&mut self, body: &str, now: u64, store: &mut impl Store) -> Result<(), StoreError> {
        store.outbox_push(now, body)?;
        self.pending_size = self.pending_size.plus(OutboxSize::one(body.len()));
        self.pending = true;
        Ok(())
    }

    /// When [`Outbox::poll_request`] has something to do: now (or the backoff's time) when events
    /// wait and nothing is in flight; the time a batch in flight counts as lost otherwise; and
    /// the next expiry of dead letters.
    pub fn poll_timeout(&self) -> Option<u64> {
        let delivery = if let Some(f) = &self.in_flight {
            Some(f.lost_at)
        } else if !self.pending || self.config.problem().is_some() {
            None
        } else {
            Some(self.state.next_at)
        };
        delivery.into_iter().chain(self.expiry_due()).min()
    }

    /// When dead letters are next expired: the first one's time, once a minute at most.
    fn expiry_due(&self) -> Option<u64> {
        let first = self.dead_since?.saturating_add(self.config.dead_letter_ms);
        Some(first.max(self.expired_at.map_or(0, |t| t.saturating_add(EXPIRY_EVERY_MS))))
    }

    /// Deletes the dead letters whose time is up, if that is due.
    fn expire(&mut self, now: u64, store: &mut impl Store) -> Result<(), StoreError> {
        if self.expiry_due().is_none_or(|due| due > now) {
            return Ok(());
        }
        self.expired_at = Some(now);
        // Set aside at or before `now` − the time: theirs is up.
        let gone = store.outbox_expire(now.saturating_sub(self.config.dead_letter_ms).saturating_add(1))?;
        self.forget_dead(gone, store)
    }

    /// Dead letters `gone` were deleted.
    fn forget_dead(&mut self, gone: OutboxSize, store: &mut impl Store) -> Result<(), StoreError> {
        self.dead_size = self.dead_size.minus(gone);
        self.expired = self.expired.saturating_add(gone.events);
        self.dead_since = if self.dead_size.events == 0 { None } else { store.outbox_oldest_dead()? };
        Ok(())
    }

    /// Pending events `moved` became dead letters at `now`.
    fn set_aside(&mut self, moved: OutboxSize, now: u64) {
        self.pending_size = self.pending_size.minus(moved);
        self.dead_size = self.dead_size.plus(moved);
        if moved.events > 0 {
            self.dead_since = Some(self.dead_since.map_or(now, |t| t.min(now)));
        }
    }

    /// The next POST, if one is due: expires dead letters whose time is up, dead-letters what is
    /// too old, then takes the first pending events (up to `WEBHOOK_BATCH_MAX`, or half the
    /// suspects while a refused batch is split, and `WEBHOOK_BATCH_MAX_BYTES`) and signs them.
    /// The batch is then in flight until its result comes back.
    pub fn poll_request(&mut self, now: u64, store: &mut impl Store) -> Result<Option<WebhookRequest>, StoreError> {
        self.expire(now, store)?;
        if let Some(f) = &self.in_flight {
            if now < f.lost_at {
                return Ok(None);
            }
            // The result never came back; the rows are still there and go again.
            self.in_flight = None;
        }
        if self.config.key.is_err() || !self.pending || self.config.problem().is_some() || self.state.next_at > now {
            return Ok(None);
        }
        let moved = store.outbox_mark_dead(now.saturating_sub(self.config.max_age_ms), now)?;
        self.set_aside(moved, now);
        let Ok(key) = &self.config.key else { return Ok(None) };
        let limit = if self.suspects > 0 { (self.suspects / 2).max(1) } else { self.config.batch_max.max(1) };
        let rows = store.outbox_take(limit, self.config.batch_max_bytes)?;
        if rows.is_empty() {
            self.pending = false;
            // Nothing is pending, whatever the sizes kept said.
            self.pending_size = OutboxSize::ZERO;
            return Ok(None);
        }
        let (body, count) = batch_body_within(&self.state.key, &rows, self.config.batch_max_bytes);
        let rows = &rows[..count];
        let webhook_id = format!("batch_{}_{}", event::event_id(&self.state.key, rows[0].n), rows.len());
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
    /// value from a random source), or after the receiver's `Retry-After` if that is later
    /// ([`honours_retry_after`], at most [`RETRY_AFTER_MAX_MS`]). A result for an attempt no
    /// longer in flight is ignored.
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
            WebhookOutcome::Status(status, _) if (200..300).contains(&status) => {
                let gone = store.outbox_delete(&flight.rows)?;
                self.pending_size = self.pending_size.minus(gone);
                self.delivered += flight.rows.len() as u64;
                self.suspects = self.suspects.saturating_sub(flight.rows.len());
                self.answered(store)?;
            }
            WebhookOutcome::Status(status, _) if refuses(status) => {
                match flight.rows.as_slice() {
                    [one] => {
                        let moved = store.outbox_refuse(*one, status, now)?;
                        self.set_aside(moved, now);
                        self.suspects = 0;
                    }
                    rows => self.suspects = rows.len(),
                }
                // The receiver is up and answering: the next batch goes at once.
                self.answered(store)?;
            }
            failure => {
                let (error, asked) = match failure {
                    WebhookOutcome::Status(status, retry_after) => {
                        let asked = retry_after.filter(|_| honours_retry_after(status)).and_then(|v| retry_after::wait_ms(&v, now));
                        let error = match asked {
                            Some(ms) => format!("HTTP {status}, Retry-After {} s", ms.div_ceil(1000)),
                            None => format!("HTTP {status}"),
                        };
                        (error, asked)
                    }
                    WebhookOutcome::Failed(e) => (e.replace(&self.config.url, "WEBHOOK_URL"), None),
                };
                self.state.failures = self.state.failures.saturating_add(1);
                let backoff = backoff_ms(self.state.failures, random);
                let wait = asked.map_or(backoff, |ms| ms.min(RETRY_AFTER_MAX_MS).max(backoff));
                self.state.next_at = now.saturating_add(wait);
                self.state.last_error = Some(truncate(error, ERROR_MAX));
                store.put_webhook_state(&self.state)?;
            }
        }
        Ok(())
    }

    /// The receiver answered: failures and backoff start over.
    fn answered(&mut self, store: &mut impl Store) -> Result<(), StoreError> {
        if self.state.failures > 0 || self.state.last_error.is_some() || self.state.next_at > 0 {
            self.state = WebhookState { key: std::mem::take(&mut self.state.key), ..WebhookState::default() };
            store.put_webhook_state(&self.state)?;
        }
        Ok(())
    }

    /// Dead letters back to pending, delivered at once (the backoff starts over: the operator
    /// says the receiver is back). Refused events come back too, and are split out again if the
    /// receiver still refuses them. Returns how many came back.
    pub fn requeue(&mut self, now: u64, store: &mut impl Store) -> Result<u64, StoreError> {
        let moved = store.outbox_requeue(now)?;
        self.dead_size = self.dead_size.minus(moved);
        self.pending_size = self.pending_size.plus(moved);
        if self.dead_size.events == 0 {
            self.dead_since = None;
        }
        if moved.events > 0 {
            self.pending = true;
            // The re-queued rows go first: the suspects are no longer the first rows.
            self.suspects = 0;
            if self.state.failures > 0 || self.state.next_at > now {
                self.state.failures = 0;
                self.state.next_at = 0;
                store.put_webhook_state(&self.state)?;
            }
        }
        Ok(moved.events)
    }

    pub fn stats(&self, now: u64, store: &mut impl Store) -> Result<WebhookStats, StoreError> {
        let c = store.outbox_counts()?;
        let last_error = self.config.problem().map(str::to_owned).or_else(|| self.state.last_error.clone());
        let cap = self.bound(EventClass::Message);
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
            bytes: c.pending_bytes.saturating_add(c.dead_bytes),
            full: c.pending >= cap.events || c.pending_bytes >= cap.bytes,
            backpressure: self.backpressure,
            expired: self.expired,
        })
    }
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
