//! The stats' `webhook` object: what the outbox holds and how delivery goes.

use super::super::event;
use crate::store::{OutboxCounts, Store, StoreError};
use serde::Serialize;

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

/// An event the receiver refused ([`super::refuses`]), kept as a dead letter.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RefusedEvent {
    pub id: String,
    pub status: u16,
}

impl RefusedEvent {
    pub(super) fn from_counts(key: Option<&str>, c: &OutboxCounts) -> Option<RefusedEvent> {
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
