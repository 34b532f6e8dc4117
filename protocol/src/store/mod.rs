//! The persistence port: the room's and the webhook outbox's durable state, behind one small
//! interface. The room borrows a store for the length of one event and never owns it (the way
//! tungstenite borrows its stream): the Durable Object passes its SQLite-backed store, the tests
//! pass [`MemoryStore`]. Every call is synchronous, which the Durable Object's SQL API is, so one
//! event is handled without interleaving.
//!
//! A port below both of its users: [`crate::room`] and [`crate::webhook`] import it, and it
//! imports neither (only [`crate::compact`]).
//!
//! - [`memory`]: [`MemoryStore`], in memory, for tests and simulations.
//! - [`sql`]: the store on SQLite, generic over a small executor port; the Worker runs it on the
//!   Durable Object's SQL storage.
//! - `conformance.rs` (tests): the contract every store passes, run on both, and a property test
//!   that gives both the same random calls and compares every answer.
//!
//! Integers (seqs, times, counts) come back exactly up to 2^53 − 1, what a JavaScript number
//! holds; a store may saturate larger ones, never wrap them.

#[cfg(test)]
pub(crate) mod conformance;
pub mod memory;
pub mod sql;

pub use memory::MemoryStore;

use crate::compact::CompactJson;

/// One message in the room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub seq: u64,
    pub ts: u64,
    /// The publishing client id, or [`crate::api::API_ORIGIN`].
    pub from: String,
    pub user: String,
    /// The publisher's message id, which makes retries idempotent (scoped to `user` and `from`).
    pub id: Option<String>,
    pub data: CompactJson,
}

/// The room's identity in time: its epoch and the last sequence number it gave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMeta {
    pub epoch: String,
    pub seq: u64,
}

/// A user whose last connection closed, still shown as present until `due`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLeave {
    pub user: String,
    pub due: u64,
    pub meta: Option<String>,
}

/// One event in the outbox (`body` is the event's JSON without its `id`: see `webhook::event`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// The row number: grows with every event and is never reused (the event's id ends with it).
    pub n: u64,
    /// When a pending event was queued (or last re-queued), for its age; when a dead letter was
    /// set aside, for its expiry.
    pub ts: u64,
    pub body: String,
}

/// A number of outbox events and their bytes: the UTF-8 bytes of their bodies as stored (the
/// event's JSON without its id), what the outbox's bounds count (`webhook::outbox`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxSize {
    pub events: u64,
    pub bytes: u64,
}

impl OutboxSize {
    pub const ZERO: OutboxSize = OutboxSize { events: 0, bytes: 0 };

    /// One event of `bytes` bytes.
    pub fn one(bytes: usize) -> OutboxSize {
        OutboxSize { events: 1, bytes: bytes as u64 }
    }

    pub fn plus(self, other: OutboxSize) -> OutboxSize {
        OutboxSize { events: self.events.saturating_add(other.events), bytes: self.bytes.saturating_add(other.bytes) }
    }

    pub fn minus(self, other: OutboxSize) -> OutboxSize {
        OutboxSize { events: self.events.saturating_sub(other.events), bytes: self.bytes.saturating_sub(other.bytes) }
    }

    /// Whether both counts are within `bound`'s.
    pub fn within(self, bound: OutboxSize) -> bool {
        self.events <= bound.events && self.bytes <= bound.bytes
    }
}

/// What the outbox holds: how many events wait and their bytes, how many are dead letters and
/// theirs, when the oldest waiting one was queued and the first dead letter set aside.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub dead: u64,
    pub oldest_pending: Option<u64>,
    /// The dead letters the receiver refused (see [`Store::outbox_refuse`]), part of `dead`.
    pub refused: u64,
    /// The last of those: its row number and the HTTP status that refused it.
    pub last_refused: Option<(u64, u16)>,
    pub pending_bytes: u64,
    pub dead_bytes: u64,
    /// When the dead letter set aside first (of those kept) was set aside.
    pub oldest_dead: Option<u64>,
}

impl OutboxCounts {
    pub fn pending_size(&self) -> OutboxSize {
        OutboxSize { events: self.pending, bytes: self.pending_bytes }
    }

    pub fn dead_size(&self) -> OutboxSize {
        OutboxSize { events: self.dead, bytes: self.dead_bytes }
    }
}

/// The webhook delivery state that survives hibernation and restarts (one row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookState {
    /// Random per room, made once: the middle of every event id.
    pub key: String,
    /// Consecutive failed deliveries.
    pub failures: u32,
    /// No delivery before this time (ms).
    pub next_at: u64,
    pub last_error: Option<String>,
}

/// A connection opened through a session ([`crate::relay`]): the room's id for it, the session and
/// device it belongs to, and the connection's identity as JSON (the room's `Connection`, as a
/// socket's attachment holds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayRow {
    pub conn: u64,
    pub session: String,
    pub device: u64,
    pub info: String,
}

/// A session the room delivers to ([`crate::feed`]): the position it confirmed, and whether it
/// had extras not yet confirmed when this was written (a restart then knows they were lost).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberRow {
    pub session: String,
    pub epoch: String,
    pub seq: u64,
    pub extras: bool,
}

/// A storage failure. Transient from the room's point of view: the event that met it is answered
/// with an error and nothing is broadcast, so no client sees a message that was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage: {0}")]
pub struct StoreError(pub String);

/// What the room needs to keep across restarts and hibernation.
pub trait Store {
    /// The room's epoch and last seq, if the room was ever created.
    fn meta(&mut self) -> Result<Option<RoomMeta>, StoreError>;
    /// Records a new room's epoch and seq. Fails, changing nothing, if the room was created.
    fn create(&mut self, meta: &RoomMeta) -> Result<(), StoreError>;
    /// Appends one message (the room gives it the seq one more than the last). Fails, storing
    /// nothing, if its seq is taken or a message with its (user, origin, id) is in history.
    fn append(&mut self, message: &StoredMessage) -> Result<(), StoreError>;
    /// The seq a message with this (user, origin, id) got, if it is still in history.
    fn find(&mut self, user: &str, from: &str, id: &str) -> Result<Option<u64>, StoreError>;
    /// Appends `message` unless one with its (user, origin, id) is still in history, and then
    /// returns that one's seq and stores nothing. This default looks up, then appends; a store
    /// that can do both in one statement (SQLite: a unique index and `ON CONFLICT DO NOTHING`)
    /// does that instead, the cost of a publish in a small room being mostly per statement.
    fn append_new(&mut self, message: &StoredMessage) -> Result<Option<u64>, StoreError> {
        if let Some(id) = &message.id {
            if let Some(seq) = self.find(&message.user, &message.from, id)? {
                return Ok(Some(seq));
            }
        }
        self.append(message)?;
        Ok(None)
    }
    /// Up to `limit` messages with seq greater than `after`, in seq order, and no more once the
    /// `data` bytes before a message reach `max_bytes` (the first always comes: a page moves on).
    fn after(&mut self, after: u64, limit: usize, max_bytes: usize) -> Result<Vec<StoredMessage>, StoreError>;
    /// Up to `limit` of the newest messages with seq below `before`, in seq order, newest first
    /// counted against `max_bytes` as in [`Store::after`].
    fn before(&mut self, before: u64, limit: usize, max_bytes: usize) -> Result<Vec<StoredMessage>, StoreError>;
    /// The oldest seq still in history.
    fn oldest(&mut self) -> Result<Option<u64>, StoreError>;
    /// How many messages history holds.
    fn count(&mut self) -> Result<u64, StoreError>;
    /// Deletes messages with seq at most `through_seq` or timestamp below `before_ts`, after
    /// raising the recorded seq to `last_seq` (never lowering it) so that the room's seq survives
    /// even an emptied history. Records nothing for a room never created.
    fn trim(&mut self, through_seq: u64, before_ts: u64, last_seq: u64) -> Result<(), StoreError>;
    /// Every pending leave, in user order.
    fn pending_leaves(&mut self) -> Result<Vec<PendingLeave>, StoreError>;
    /// Records a user's pending leave, replacing theirs if any.
    fn put_pending_leave(&mut self, leave: &PendingLeave) -> Result<(), StoreError>;
    fn delete_pending_leave(&mut self, user: &str) -> Result<(), StoreError>;
    /// The user a client id is bound to in this room, and when the binding was last refreshed.
    fn client_owner(&mut self, cid: &str) -> Result<Option<(String, u64)>, StoreError>;
    /// Binds (or rebinds, or refreshes) a client id to a user.
    fn bind_client(&mut self, cid: &str, user: &str, now: u64) -> Result<(), StoreError>;
    /// Forgets bindings last refreshed before `before`.
    fn forget_clients(&mut self, before: u64) -> Result<(), StoreError>;
    /// Refuses `user`'s connections until `until` (ms), replacing any earlier ban of theirs.
    fn ban(&mut self, user: &str, until: u64) -> Result<(), StoreError>;
    fn banned_until(&mut self, user: &str) -> Result<Option<u64>, StoreError>;
    /// Forgets bans that ended by `now`.
    fn forget_bans(&mut self, now: u64) -> Result<(), StoreError>;

    // ---- webhooks: the outbox (see `crate::webhook`) ------------------------------------------

    /// Appends an event, queued at `ts`; its row number is one more than any before it.
    fn outbox_push(&mut self, ts: u64, body: &str) -> Result<(), StoreError>;
    /// The first `limit` pending events in row order, stopping once the body bytes before one
    /// reach `max_bytes` (the first always comes). Dead letters are skipped.
    fn outbox_take(&mut self, limit: usize, max_bytes: usize) -> Result<Vec<OutboxRow>, StoreError>;
    /// Whether any event is pending.
    fn outbox_any_pending(&mut self) -> Result<bool, StoreError>;
    /// Deletes exactly these rows where they are pending (a delivered batch); unknown rows and
    /// dead letters are left alone. Returns what it deleted.
    fn outbox_delete(&mut self, rows: &[u64]) -> Result<OutboxSize, StoreError>;
    /// Makes pending events queued before `before_ts` dead letters, set aside at `now`; returns
    /// what it set aside.
    fn outbox_mark_dead(&mut self, before_ts: u64, now: u64) -> Result<OutboxSize, StoreError>;
    /// Makes the pending event `n` a dead letter that the receiver refused, set aside at `now`,
    /// keeping the HTTP `status` it answered (see `webhook::outbox`: a refused event must not
    /// hold up the rest). A row that is not pending (a dead letter already, or gone) is left as
    /// it is. Returns what it set aside.
    fn outbox_refuse(&mut self, n: u64, status: u16, now: u64) -> Result<OutboxSize, StoreError>;
    /// Makes every dead letter pending again (too old or refused), queued at `now` (it keeps
    /// its row number, so its id); returns what it moved.
    fn outbox_requeue(&mut self, now: u64) -> Result<OutboxSize, StoreError>;
    /// Deletes the dead letters set aside before `before_ts`; returns what it deleted.
    fn outbox_expire(&mut self, before_ts: u64) -> Result<OutboxSize, StoreError>;
    /// Deletes dead letters, the first set aside first (in row order among those set aside at
    /// the same time), until at least `need.events` events and `need.bytes` bytes are gone or
    /// none is left; returns what it deleted.
    fn outbox_evict(&mut self, need: OutboxSize) -> Result<OutboxSize, StoreError>;
    /// When the first dead letter still kept was set aside.
    fn outbox_oldest_dead(&mut self) -> Result<Option<u64>, StoreError>;
    fn outbox_counts(&mut self) -> Result<OutboxCounts, StoreError>;
    fn webhook_state(&mut self) -> Result<Option<WebhookState>, StoreError>;
    fn put_webhook_state(&mut self, state: &WebhookState) -> Result<(), StoreError>;
    /// The users the webhooks last reported present (joined and not yet left), with the meta
    /// they joined with, in user order: after a restart that took their sockets, they are
    /// reported as left.
    fn present_users(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError>;
    fn put_present(&mut self, user: &str, meta: Option<&str>) -> Result<(), StoreError>;
    fn delete_present(&mut self, user: &str) -> Result<(), StoreError>;

    /// Deletes every stored message (and with them their idempotency records) and starts
    /// `meta`'s epoch at its seq (creating the room if need be); everything else is kept.
    /// Returns how many messages were deleted.
    fn reset(&mut self, meta: &RoomMeta) -> Result<u64, StoreError>;

    /// Connections opened through sessions, by `conn`.
    fn relays(&mut self) -> Result<Vec<RelayRow>, StoreError>;
    /// Inserts or replaces the row of `row.conn`.
    fn put_relay(&mut self, row: &RelayRow) -> Result<(), StoreError>;
    fn delete_relay(&mut self, conn: u64) -> Result<(), StoreError>;
    /// Sessions the room delivers to, by name.
    fn subscribers(&mut self) -> Result<Vec<SubscriberRow>, StoreError>;
    /// Inserts or replaces the row of `row.session`.
    fn put_subscriber(&mut self, row: &SubscriberRow) -> Result<(), StoreError>;
    fn delete_subscriber(&mut self, session: &str) -> Result<(), StoreError>;
}
