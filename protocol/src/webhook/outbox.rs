//! The delivery state machine of one room's outbox, pure (sans-IO, like the room): it says what
//! to POST next ([`Outbox::poll_request`]), when ([`Outbox::poll_timeout`]), and takes the result
//! back ([`Outbox::handle_result`]). Time and the random input of the backoff come in as
//! arguments; the adapter does the POST, bounded by `WEBHOOK_TIMEOUT_MS`.
//!
//! - One batch in flight per room. Events go in row order, which is the order they happened.
//! - A 2xx deletes exactly the rows sent. Anything else, a timeout or a network error is a
//!   failure: the rows stay, and the next attempt waits [`backoff_ms`] (full jitter, 1 s up to
//!   10 min). Failures, the next attempt's time and the last error are stored, so hibernation
//!   and restarts do not reset the backoff.
//! - Before each attempt, pending events older than `WEBHOOK_MAX_AGE_SECONDS` become dead
//!   letters (kept, counted in stats, re-queued by the API).
//! - A batch whose result never comes (the object restarted mid-POST) is simply sent again: the
//!   rows are still there, with the same ids. At least once.

use super::event::{self, Event};
use super::sign;
use crate::config::webhook::{EventKind, WebhookConfig};
use crate::store::{OutboxRow, Store, StoreError, WebhookState};
use serde::Serialize;

/// The longest backoff: 10 minutes.
pub const BACKOFF_MAX_MS: u64 = 600_000;
/// The shortest backoff: 1 second.
pub const BACKOFF_MIN_MS: u64 = 1_000;
/// How long past its timeout a batch may stay unanswered before it counts as lost.
const LOST_AFTER_MS: u64 = 5_000;
/// The longest `last_error` kept.
const ERROR_MAX: usize = 200;

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
    /// The receiver answered with this status (2xx acknowledges the whole batch).
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
    /// Events acknowledged since this instance of the room started counting.
    pub delivered: u64,
}

impl WebhookStats {
    /// The stats of a room whose events are not recorded (leftovers are still counted).
    pub fn off(store: &mut impl Store, now: u64) -> Result<WebhookStats, StoreError> {
        let c = store.outbox_counts()?;
        Ok(WebhookStats {
            enabled: false,
            pending: c.pending,
            oldest_pending_age_ms: c.oldest_pending.map(|t| now.saturating_sub(t)),
            failures: 0,
            last_error: None,
            dead_letters: c.dead,
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
        Ok(Outbox { room: room.to_owned(), config, state, pending, in_flight: None, next_attempt: 1, delivered: 0 })
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
    /// events (up to `WEBHOOK_BATCH_MAX` and the byte cap) and signs them. The batch is then in
    /// flight until its result comes back.
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
        let rows = store.outbox_take(self.config.batch_max.max(1), self.config.batch_max_bytes)?;
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

    /// The result of attempt `attempt`. A 2xx deletes exactly the rows sent; anything else
    /// schedules the next attempt after the backoff (`random`: any value from a random source).
    /// A result for an attempt no longer in flight is ignored.
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
                if self.state.failures > 0 || self.state.last_error.is_some() || self.state.next_at > 0 {
                    self.state = WebhookState { key: std::mem::take(&mut self.state.key), ..WebhookState::default() };
                    store.put_webhook_state(&self.state)?;
                }
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

    /// Dead letters back to pending, delivered at once (the backoff starts over: the operator
    /// says the receiver is back).
    pub fn requeue(&mut self, now: u64, store: &mut impl Store) -> Result<u64, StoreError> {
        let n = store.outbox_requeue(now)?;
        if n > 0 {
            self.pending = true;
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
    use proptest::prelude::*;

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

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("ééé".into(), 3), "é");
        assert_eq!(truncate("abc".into(), 5), "abc");
    }
}
