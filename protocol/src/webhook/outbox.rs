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

use super::event::{self, Event};
use super::{retry_after, sign};
use crate::config::webhook::{EventKind, WebhookConfig};
use crate::store::{OutboxCounts, OutboxRow, OutboxSize, Store, StoreError, WebhookState};
use serde::Serialize;

/// The longest backoff: 10 minutes.
pub const BACKOFF_MAX_MS: u64 = 600_000;
/// The shortest backoff: 1 second.
pub const BACKOFF_MIN_MS: u64 = 1_000;
/// The longest wait a receiver's `Retry-After` gets: 1 hour. A longer one is taken as 1 hour.
pub const RETRY_AFTER_MAX_MS: u64 = 3_600_000;
/// The shortest and longest wait a refused publisher is told (`Retry-After`).
pub const REFUSAL_RETRY_MIN_MS: u64 = 1_000;
pub const REFUSAL_RETRY_MAX_MS: u64 = 60_000;
/// Dead letters are expired at most this often (each time with one read of the oldest one kept).
pub const EXPIRY_EVERY_MS: u64 = 60_000;
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

/// Whether a `Retry-After` with this status is honoured: 429 Too Many Requests and 503 Service
/// Unavailable, the two that ask a client to come back later.
pub fn honours_retry_after(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// The delay before the next attempt after the `failures`-th consecutive failure (at least 1):
/// uniform in `[1 s, max(1 s, min(10 min, 1 s × 2^(failures-1)))]`, drawn from `random`.
pub fn backoff_ms(failures: u32, random: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(20);
    let cap = BACKOFF_MIN_MS.saturating_mul(1u64 << exp).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    BACKOFF_MIN_MS + random % (cap - BACKOFF_MIN_MS + 1)
}

/// Which bound an event is held to (module docs, *Bounds*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// `message.published`: refused at the bound, and its publish with it.
    Message,
    /// `presence.joined` and `room.occupied`: up to twice the bound. (Departures are not asked
    /// about: they are always recorded.)
    Presence,
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
    /// [`refuses`] for the ones that split it) and this `Retry-After` header, if it sent one (the
    /// adapter passes it as it came; [`honours_retry_after`] says when it counts).
    Status(u16, Option<String>),
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
    /// The bytes of every event the outbox holds, pending and dead letters (what its bound counts).
    pub bytes: u64,
    /// Whether the pending events hold the bound: a message is refused now.
    pub full: bool,
    /// Publishes and joins refused because the outbox was full, since the room started counting.
    pub backpressure: u64,
    /// Dead letters deleted (their time was up, or they made room), since the room started
    /// counting.
    pub expired: u64,
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
            bytes: c.pending_bytes.saturating_add(c.dead_bytes),
            full: false,
            backpressure: 0,
            expired: 0,
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

/// `{"events":[…]}`: the stored events, each with its id in front, joined as they are.
pub fn batch_body(key: &str, rows: &[OutboxRow]) -> String {
    batch_body_within(key, rows, usize::MAX).0
}

/// The body of the longest prefix of `rows` whose body is at most `max_bytes` long (at least one
/// row, whatever its size), and how many rows it holds.
pub fn batch_body_within(key: &str, rows: &[OutboxRow], max_bytes: usize) -> (String, usize) {
    const CLOSE: &str = "]}";
    let mut body = String::with_capacity(rows.iter().map(|r| r.body.len() + 48).sum::<usize>().min(max_bytes) + 16);
    body.push_str("{\"events\":[");
    let mut count = 0;
    for (i, row) in rows.iter().enumerate() {
        let before = body.len();
        if i > 0 {
            body.push(',');
        }
        event::with_id(key, row.n, &row.body, &mut body);
        if i > 0 && body.len() + CLOSE.len() > max_bytes {
            body.truncate(before);
            break;
        }
        count = i + 1;
    }
    body.push_str(CLOSE);
    (body, count)
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
}
