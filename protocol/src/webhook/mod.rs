//! Webhooks: the room tells the application's backend what happened, from a transactional
//! outbox. Pure like the room (no IO, no clock, no randomness of its own); `docs/WEBHOOKS.md`
//! is the receiver's side.
//!
//! - [`crate::config::webhook`]: the `WEBHOOK_*` vars (with the rest of the configuration;
//!   re-exported here).
//! - [`event`]: events as JSON, built by serde (no value a client controls can forge a field).
//! - [`sign`]: Standard Webhooks signatures.
//! - [`outbox`]: what to send next, backoff, dead letters, results, and the outbox's bounds.
//! - [`retry_after`]: a receiver's `Retry-After`, read.
//!
//! The room ([`crate::room::Room`]) records an event through its [`crate::store::Store`] in the
//! same synchronous step as the change it reports, so both commit together or not at all.
//!
//! Imports: [`crate::store`] (the outbox's rows), [`crate::config`], [`crate::compact`]; never
//! [`crate::room`], which drives it.

pub mod event;
pub mod outbox;
pub mod retry_after;
pub mod sign;

pub use crate::config::webhook::{EventKind, EventSet, SigningKey, WebhookConfig};
pub use event::Event;
pub use outbox::{backoff_ms, refuses, EventClass, Outbox, RefusedEvent, WebhookOutcome, WebhookRequest, WebhookStats};
