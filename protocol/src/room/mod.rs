//! The room's logic as a pure state machine, in the style of quinn-proto: getters; `handle_*` for
//! inputs (a connection opens, a frame arrives, a connection closes, a timer fires) and commands
//! (an HTTP publish); `poll_*` for outputs (actions to carry out, the next timer). `now` is always
//! passed in, and the durable state is a borrowed [`Store`].
//!
//! Guarantees this module upholds (and `tests/` checks): every message gets the next seq and is
//! stored before it is broadcast or acknowledged; a retried (origin, id) is acknowledged with its
//! first seq and not stored again; a resume replays exactly the missing suffix or says why not;
//! presence follows the set of users with open connections, with a grace period.

pub mod announce;
pub mod batch;
#[cfg(any(test, feature = "fuzzing"))]
pub mod framing_check;
pub mod guard;
pub mod presence;
pub mod store;

use crate::api::Caller;
use crate::close::{self, CloseCode};
use crate::compact::CompactJson;
use crate::config::RoomConfig;
use crate::frame::{self, ClientFrame, ErrorCode, GapReason, MessageFrame, PresenceEvent, ResumeOutcome, Target};
use crate::limit::Bucket;
use crate::token::{self, Rights};
use crate::webhook::event::Event as HookEvent;
use crate::webhook::{Outbox, WebhookOutcome, WebhookRequest, WebhookStats};
use announce::Announcer;
use guard::Guards;
use presence::Presence;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
pub use store::{MemoryStore, OutboxCounts, OutboxRow, PendingLeave, RoomMeta, Store, StoreError, StoredMessage, WebhookState, API_ORIGIN};

/// A connection's number within one room, unique for the room's lifetime in memory and restored
/// from the socket attachments after hibernation.
pub type ConnId = u64;

/// Who a connection is, fixed when it opens (its rights and expiry change only through a
/// `refresh`). The Durable Object keeps it as the socket's attachment (short field names: the
/// attachment budget is 2,048 bytes), so the room is rebuilt from the live sockets after
/// hibernation. A connection's identity is the pair (user, client id): the user comes from the
/// token, and a client id belongs to one user per room (see [`Room::handle_open`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    #[serde(rename = "i")]
    pub id: ConnId,
    #[serde(rename = "c")]
    pub client_id: String,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<CompactJson>,
    #[serde(rename = "e")]
    pub echo: bool,
    #[serde(rename = "t")]
    pub opened_at: u64,
    #[serde(rename = "r", default)]
    pub rights: Rights,
    /// When the connection's token expires (ms); `None` for anonymous connections.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// The last frame from the connection, as last saved (the room saves it again once it is a
    /// quarter timeout old), so a connection that sends frames but no pings outlives a wake.
    #[serde(rename = "s", default)]
    pub seen: u64,
}

/// The identity a new connection presents, already verified by the edge.
#[derive(Debug, Clone)]
pub struct Identity {
    pub client_id: String,
    pub user: String,
    pub meta: Option<CompactJson>,
    /// Whether this connection receives its own publishes.
    pub echo: bool,
    pub rights: Rights,
    /// When the token expires (ms since the epoch); `None` for anonymous connections.
    pub expires: Option<u64>,
}

/// What the room needs to verify a `refresh` frame's token: its own name (rights are per room)
/// and the signing secret.
#[derive(Debug, Clone)]
pub struct TokenCheck {
    pub room: String,
    pub secret: Vec<u8>,
}

/// Where a reconnecting client left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub epoch: String,
    pub since: u64,
}

/// Which connections a frame goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Every connection, but the one named.
    All {
        except: Option<ConnId>,
    },
    One(ConnId),
    List(Vec<ConnId>),
}

/// What the adapter must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send { to: Recipients, text: String },
    Close { conn: ConnId, code: CloseCode },
}

/// One message of an HTTP publish.
#[derive(Debug, Clone, Deserialize)]
pub struct PublishItem {
    pub data: CompactJson,
    #[serde(default)]
    pub id: Option<String>,
}

/// Parses an HTTP publish body: one `{"data", "id"?}` object, or an array of them. Returns the
/// items and whether the body was a single object. Items must be objects: serde would otherwise
/// read an array such as `[1,"id"]` positionally.
pub fn parse_publish_body(body: &str) -> Result<(Vec<PublishItem>, bool), String> {
    const SHAPE: &str = "body must be {\"data\": …, \"id\"?: string} or an array of them";
    let item = |raw: &RawValue| -> Result<PublishItem, String> {
        if !raw.get().starts_with('{') {
            return Err(format!("{SHAPE}: every message must be an object"));
        }
        serde_json::from_str::<PublishItem>(raw.get()).map_err(|e| format!("{SHAPE}: {e}"))
    };
    let value: &RawValue = serde_json::from_str(body).map_err(|e| format!("{SHAPE}: {e}"))?;
    if value.get().starts_with('[') {
        let raws: Vec<&RawValue> = serde_json::from_str(value.get()).map_err(|e| format!("{SHAPE}: {e}"))?;
        Ok((raws.into_iter().map(item).collect::<Result<_, _>>()?, false))
    } else {
        Ok((vec![item(value)?], true))
    }
}

/// The outcome of one published message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Why an HTTP publish was refused as a whole. Normal input errors, except `Store`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("a batch holds at most {0} messages")]
    TooMany(usize),
    #[error("a batch must hold at least one message")]
    Empty,
    #[error("message {0}: id must be a non-empty string within the id length limit")]
    BadId(usize),
    #[error("message {0}: data is larger than the frame limit")]
    TooLarge(usize),
    #[error("the batch's data is larger than PUBLISH_BATCH_MAX_BYTES ({0} bytes)")]
    BatchTooLarge(usize),
    /// Normal: the backend removed this user from the room for a while (`/kick` with `banSeconds`).
    #[error("this user is banned from the room")]
    Banned,
    /// Normal under load: the caller or the room is over its HTTP publish rate.
    #[error("too many publishes; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a history read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Normal: the backend removed this user from the room for a while.
    #[error("this user is banned from the room")]
    Banned,
    /// Normal: the reader (or the room) is over its read budget.
    #[error("read budget exceeded; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counters for the stats endpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub epoch: String,
    pub seq: u64,
    pub connections: usize,
    pub users: usize,
    pub history: u64,
    pub oldest: Option<u64>,
    /// Messages stored (client and HTTP publishes) since `countersSince`.
    pub messages_in: u64,
    /// Message deliveries to connections since `countersSince`.
    pub messages_out: u64,
    /// Connections opened since `countersSince`.
    pub connections_opened: u64,
    /// When this instance of the room started counting (it restarts after hibernation).
    pub counters_since: u64,
    /// The webhook outbox (docs/WEBHOOKS.md).
    pub webhook: WebhookStats,
}

/// The answer to `DELETE /rooms/:room/history`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reset {
    /// The new epoch; seq starts again at 0.
    pub epoch: String,
    /// How many stored messages were deleted.
    pub deleted: u64,
}

/// Which page of history a read asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// The oldest messages with a seq above this one.
    After(u64),
    /// The newest messages with a seq below this one.
    Before(u64),
    /// The newest messages.
    Latest,
}

/// How a connection starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From now on.
    Fresh,
    /// From where it left off: the missed messages are replayed, or a gap is reported.
    Resume(ResumePoint),
    /// From now on, with the last N stored messages first.
    Rewind(u64),
}

/// A page of history, in seq order.
#[derive(Debug)]
pub struct HistoryPage {
    pub epoch: String,
    pub seq: u64,
    pub messages: Vec<StoredMessage>,
    /// Whether more messages exist in the direction read (newer after `After`, older otherwise).
    pub more: bool,
}

#[derive(Debug)]
struct Live {
    info: Connection,
    /// Last time a frame from this connection reached the room.
    last_seen: u64,
    /// Publishes, direct messages, history requests, pings and refreshes that reach the room.
    messages: Bucket,
    /// Ephemeral broadcasts and presence changes.
    broadcasts: Bucket,
    /// Bytes of every frame that reaches the room.
    bytes: Bucket,
    /// Refused frames, net of accepted ones; at `max_strikes` the connection is closed.
    strikes: u32,
}

impl Live {
    // Buckets are not persisted: after a wake every connection starts with a full bucket.
    fn new(info: Connection, last_seen: u64, config: &RoomConfig, now: u64) -> Live {
        let byte_burst = (config.rate_bytes_per_sec.saturating_mul(4)).max(config.max_frame_bytes as u64);
        Live {
            info,
            last_seen,
            messages: Bucket::new(config.rate_messages_burst, config.rate_messages_per_sec, now),
            broadcasts: Bucket::new(config.broadcast_rate_per_sec.saturating_mul(2), config.broadcast_rate_per_sec, now),
            bytes: Bucket::new(byte_burst, config.rate_bytes_per_sec, now),
            strikes: 0,
        }
    }
}

/// One room.
#[derive(Debug)]
pub struct Room {
    config: RoomConfig,
    meta: RoomMeta,
    conns: BTreeMap<ConnId, Live>,
    next_conn: ConnId,
    presence: Presence,
    actions: VecDeque<Action>,
    announcer: Announcer,
    guards: Guards,
    /// (deadline, connection): when each token-holding connection must have refreshed by.
    expiries: BTreeSet<(u64, ConnId)>,
    token_check: Option<TokenCheck>,
    /// What every welcome tells the client (from the config).
    heartbeat: frame::Heartbeat,
    limits: frame::Limits,
    /// Connections whose info changed (a refresh): the adapter re-saves their attachments.
    changed: Vec<ConnId>,
    next_sweep: Option<u64>,
    appends_since_trim: u64,
    messages_in: u64,
    messages_out: u64,
    connections_opened: u64,
    counters_since: u64,
    /// The webhook outbox, when webhooks apply to this room (see [`Room::attach_webhooks`]).
    hooks: Option<Outbox>,
}

impl Room {
    /// Loads the room from its store, creating it with `fresh_epoch` (random, from the caller)
    /// the first time, and rebuilds connections and presence from the live sockets' attachments
    /// after a wake. Nothing is announced for restored connections.
    pub fn load(
        config: RoomConfig,
        store: &mut impl Store,
        fresh_epoch: &str,
        now: u64,
        connections: impl IntoIterator<Item = Connection>,
    ) -> Result<Room, StoreError> {
        let meta = match store.meta()? {
            Some(meta) => meta,
            None => {
                let meta = RoomMeta { epoch: fresh_epoch.to_owned(), seq: 0 };
                store.create(&meta)?;
                meta
            }
        };
        let mut room = Room::new(config, meta, now);
        for info in connections {
            room.restore(info, now);
        }
        for leave in store.pending_leaves()? {
            if room.presence.get(&leave.user).is_some() {
                // They came back before the object slept; the row is stale.
                let _ = store.delete_pending_leave(&leave.user);
            } else {
                let meta = leave.meta.and_then(|m| CompactJson::parse_owned(m).ok());
                room.presence.restore_pending(&leave.user, meta, leave.due);
                room.announcer.restore(&leave.user, now);
            }
        }
        // The sweep is due when the first connection could be dead, at the latest: scheduling it
        // from `now` instead would push it out again at every wake, and a room that hibernates
        // between sweeps would never run one.
        let timeout = room.config.heartbeat_timeout_ms;
        room.next_sweep = room.conns.values().map(|l| l.last_seen.saturating_add(timeout).saturating_add(1)).min().map(|t| t.max(now));
        Ok(room)
    }

    /// A room with no connections yet.
    fn new(config: RoomConfig, meta: RoomMeta, now: u64) -> Room {
        Room {
            announcer: Announcer::new(config.presence_rate_per_sec),
            heartbeat: frame::Heartbeat {
                // A third of the timeout: two pings may be lost before the room gives up.
                interval: (config.heartbeat_timeout_ms / 3).max(1),
                timeout: config.heartbeat_timeout_ms,
            },
            limits: frame::Limits {
                max_frame_bytes: config.max_frame_bytes,
                messages_per_sec: config.rate_messages_per_sec,
                messages_burst: config.rate_messages_burst,
                bytes_per_sec: config.rate_bytes_per_sec,
                message_id_max: config.message_id_max,
                presence_meta_max: config.presence_meta_max,
                broadcasts_per_sec: config.broadcast_rate_per_sec,
                broadcasts_burst: config.broadcast_rate_per_sec.saturating_mul(2),
                broadcast_max_bytes: config.broadcast_max_bytes,
            },
            guards: Guards::new(&config, now),
            config,
            meta,
            conns: BTreeMap::new(),
            // Ids are never reused, even across wakes: a socket that was closing during the wake
            // may still report its close under its old id. Starting each instance at now x 1024
            // stays ahead of every id an earlier instance gave out (at most 1,024 opens per ms)
            // and below 2^53, so ids survive JSON.
            next_conn: now.saturating_mul(1024).max(1),
            presence: Presence::default(),
            actions: VecDeque::new(),
            expiries: BTreeSet::new(),
            token_check: None,
            changed: Vec::new(),
            next_sweep: None,
            appends_since_trim: 0,
            messages_in: 0,
            messages_out: 0,
            connections_opened: 0,
            counters_since: now,
            hooks: None,
        }
    }

    /// A connection from before a wake, from its socket's attachment; announces nothing.
    fn restore(&mut self, info: Connection, now: u64) {
        self.next_conn = self.next_conn.max(info.id + 1);
        self.presence.restore(&info.user, info.id, info.meta.clone());
        self.announcer.restore(&info.user, now);
        if let Some(exp) = info.expires {
            self.expiries.insert((expiry_deadline(exp), info.id));
        }
        // Liveness restarts from the last saved sign of life, never from `now`: a wake (by the
        // sweep's alarm, or any event) must not make a dead connection look fresh.
        let seen = info.opened_at.max(info.seen);
        let live = Live::new(info, seen, &self.config, now);
        self.conns.insert(live.info.id, live);
    }

    /// Lets the room verify `refresh` frames (the adapter knows the room's name and the secret).
    pub fn set_token_check(&mut self, check: TokenCheck) {
        self.token_check = Some(check);
    }

    // ---- getters -----------------------------------------------------------------------------

    pub fn epoch(&self) -> &str {
        &self.meta.epoch
    }

    pub fn seq(&self) -> u64 {
        self.meta.seq
    }

    pub fn config(&self) -> &RoomConfig {
        &self.config
    }

    pub fn connection(&self, id: ConnId) -> Option<&Connection> {
        self.conns.get(&id).map(|l| &l.info)
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Whether the room holds as many connections as it may; the adapter then refuses new
    /// ones with close code 4409.
    pub fn is_full(&self) -> bool {
        self.conns.len() >= self.config.max_connections
    }

    /// The member list as JSON (`[{user, connections, meta?}]`).
    pub fn members_json(&self) -> String {
        serde_json::to_string(&self.presence.views()).unwrap_or_else(|_| "[]".into())
    }

    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    pub fn stats(&self, now: u64, store: &mut impl Store) -> Result<Stats, StoreError> {
        let webhook = match &self.hooks {
            Some(hooks) => hooks.stats(now, store)?,
            None => WebhookStats::off(store, now)?,
        };
        Ok(Stats {
            epoch: self.meta.epoch.clone(),
            seq: self.meta.seq,
            connections: self.conns.len(),
            users: self.presence.len(),
            history: store.count()?,
            oldest: store.oldest()?,
            messages_in: self.messages_in,
            messages_out: self.messages_out,
            connections_opened: self.connections_opened,
            counters_since: self.counters_since,
            webhook,
        })
    }

    /// Up to `limit` (clamped to 1..`HISTORY_PAGE_MAX`) messages of `page`, in seq order, read by
    /// `reader` (a user, or the backend) and charged to the reader's read budget.
    pub fn history(&mut self, reader: &str, page: Page, limit: usize, now: u64, store: &mut impl Store) -> Result<HistoryPage, ReadError> {
        if self.is_banned(reader, now, store) {
            return Err(ReadError::Banned);
        }
        self.guards.may_read(reader, now).map_err(|retry_after_ms| ReadError::RateLimited { retry_after_ms })?;
        let limit = limit.clamp(1, self.config.history_page_max);
        let (messages, more) = read_page(page, limit, self.config.history_page_max_bytes, store)?;
        self.guards.spend_read(reader, read_cost(&messages), now);
        Ok(HistoryPage { epoch: self.meta.epoch.clone(), seq: self.meta.seq, messages, more })
    }

    /// Connections whose stored info changed since the last call (their rights and expiry after a
    /// refresh, their last sign of life); the adapter re-saves their attachments.
    pub fn take_changed(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.changed)
    }

    // ---- outputs -----------------------------------------------------------------------------

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Room::handle_timeout`] (and [`Room::poll_webhook`]) should next run: the heartbeat
    /// sweep, the end of a presence grace period, a held presence announcement, a token's expiry
    /// or the webhook's next attempt, whichever is first. A time in the past means now.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.next_sweep,
            self.presence.next_due(),
            self.announcer.next_due(),
            self.expiries.first().map(|(t, _)| *t),
            self.hooks.as_ref().and_then(Outbox::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The webhook POST to make now, if one is due (see [`crate::webhook::outbox`]). The adapter
    /// makes it without holding the room (other events run meanwhile) and hands the outcome to
    /// [`Room::handle_webhook_result`]. A failed read or write means no attempt this time.
    pub fn poll_webhook(&mut self, now: u64, store: &mut impl Store) -> Option<WebhookRequest> {
        self.hooks.as_mut()?.poll_request(now, store).ok().flatten()
    }

    // ---- webhooks ----------------------------------------------------------------------------

    /// Turns webhooks on for this room when the config applies to `name` (the adapter knows the
    /// room's name): loads the outbox (its key is `fresh_key`, random, the first time). Users
    /// the webhooks last saw present who have neither a connection nor a grace period any more
    /// (a restart took their sockets without a close) get a grace period from now, as for a
    /// close: back within it, nothing is reported; otherwise `presence.left` (and `room.vacated`)
    /// follow as usual. Call it once, right after [`Room::load`].
    pub fn attach_webhooks(&mut self, name: &str, fresh_key: &str, now: u64, store: &mut impl Store) -> Result<(), StoreError> {
        if !self.config.webhook.applies_to(name) {
            self.hooks = None;
            return Ok(());
        }
        self.hooks = Some(Outbox::load(name, self.config.webhook.clone(), fresh_key, store)?);
        if self.config.webhook.events.wants_presence() {
            let grace = self.config.presence_grace_ms;
            let mut gone = false;
            for (user, meta) in store.present_users()? {
                if self.presence.get(&user).is_some() {
                    continue;
                }
                let meta = meta.and_then(|m| CompactJson::parse_owned(m).ok());
                if grace == 0 {
                    self.hook_left(&user, meta.as_ref(), now, store);
                    gone = true;
                    continue;
                }
                let due = now.saturating_add(grace);
                // If this write fails, a later load starts the grace period again.
                let _ = store.put_pending_leave(&PendingLeave { user: user.clone(), due, meta: meta.as_ref().map(|m| m.get().to_owned()) });
                self.presence.restore_pending(&user, meta, due);
                self.announcer.restore(&user, now);
            }
            if gone {
                self.hook_vacated(now, store);
            }
        }
        Ok(())
    }

    /// How the POST of [`Room::poll_webhook`]'s attempt ended; `random` is any value from a
    /// random source (the backoff's jitter).
    pub fn handle_webhook_result(&mut self, attempt: u64, outcome: WebhookOutcome, now: u64, random: u64, store: &mut impl Store) {
        if let Some(hooks) = self.hooks.as_mut() {
            // A failed write keeps the rows (a delivered batch is sent again: at least once) or
            // the backoff state in memory only.
            let _ = hooks.handle_result(attempt, outcome, now, random, store);
        }
    }

    /// `POST /rooms/:room/webhooks/requeue`: dead letters become pending again (same ids), and
    /// are delivered at once. Returns how many.
    pub fn requeue_webhooks(&mut self, now: u64, store: &mut impl Store) -> Result<u64, StoreError> {
        match self.hooks.as_mut() {
            Some(hooks) => hooks.requeue(now, store),
            None => store.outbox_requeue(now),
        }
    }

    /// `DELETE /rooms/:room/history`: deletes every stored message (idempotency records with
    /// them), starts the epoch `fresh_epoch` (random, from the adapter) at seq 0, and closes
    /// every connection with 4013 (retryable): a client that comes back resumes from the old
    /// epoch and is told so (`not_recovered`, reason `epoch`). Users keep their grace period,
    /// so a reconnect is no leave and join. Pending webhook events are kept.
    pub fn handle_reset(&mut self, fresh_epoch: &str, now: u64, store: &mut impl Store) -> Result<Reset, StoreError> {
        let meta = RoomMeta { epoch: fresh_epoch.to_owned(), seq: 0 };
        let deleted = store.reset(&meta)?;
        self.meta = meta;
        self.appends_since_trim = 0;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.actions.push_back(Action::Close { conn: id, code: close::ROOM_RESET });
            self.handle_close(id, now, store);
        }
        Ok(Reset { epoch: self.meta.epoch.clone(), deleted })
    }

    /// A user became present: `room.occupied` first if nobody was, then `presence.joined`; the
    /// user is remembered as present (for a restart that takes their sockets). A failed write
    /// loses the event, not the change: within one step the platform's storage fails only by
    /// resetting the object, which undoes the step.
    fn hook_joined(&mut self, user: &str, was_empty: bool, now: u64, store: &mut impl Store) {
        let Some(hooks) = self.hooks.as_mut() else { return };
        if !hooks.config().events.wants_presence() {
            return;
        }
        let meta = self.presence.get(user).and_then(|m| m.meta.as_ref());
        if was_empty {
            let _ = hooks.push(HookEvent::Occupied, now, store);
        }
        let _ = hooks.push(HookEvent::Joined { user, meta }, now, store);
        let _ = store.put_present(user, meta.map(CompactJson::get));
    }

    /// A user's departure is final (grace over, or none): `presence.left`, in the same step as
    /// the pending leave's deletion, so it is reported exactly once.
    fn hook_left(&mut self, user: &str, meta: Option<&CompactJson>, now: u64, store: &mut impl Store) {
        let Some(hooks) = self.hooks.as_mut() else { return };
        if !hooks.config().events.wants_presence() {
            return;
        }
        let _ = hooks.push(HookEvent::Left { user, meta }, now, store);
        let _ = store.delete_present(user);
    }

    /// After departures: `room.vacated` when nobody is present or in a grace period.
    fn hook_vacated(&mut self, now: u64, store: &mut impl Store) {
        if !self.presence.is_empty() {
            return;
        }
        if let Some(hooks) = self.hooks.as_mut() {
            let _ = hooks.push(HookEvent::Vacated, now, store);
        }
    }

    // ---- inputs ------------------------------------------------------------------------------

    /// A connection opened, resuming from `resume` if given. See [`Room::handle_start`].
    pub fn handle_open(
        &mut self,
        identity: Identity,
        resume: Option<ResumePoint>,
        now: u64,
        store: &mut impl Store,
    ) -> Result<ConnId, CloseCode> {
        self.handle_start(identity, resume.map_or(Start::Fresh, Start::Resume), now, store)
    }

    /// A connection opened. Returns its id; the welcome (and any replay or rewind) is queued for
    /// it, and the others hear about a presence change. Refused, it returns the close code the
    /// adapter closes the socket with, and nothing else happened: the room is full (4409), the
    /// user is banned (4411) or holds `MAX_CONNECTIONS_PER_USER` connections (4410), the client id
    /// belongs to another user (4412), or the replay is over the user's read budget (4029).
    pub fn handle_start(&mut self, identity: Identity, start: Start, now: u64, store: &mut impl Store) -> Result<ConnId, CloseCode> {
        self.admit(&identity, now, store)?;
        let (resume, rewind, replay) = self.plan_start(&identity.user, &start, now, store)?;
        let id = self.register(identity, now, store);
        let welcome = {
            let info = &self.conns[&id].info;
            // Without the presence right the member list stays empty.
            let members = if info.rights.presence { self.presence.views() } else { Vec::new() };
            let welcome = frame::Welcome {
                epoch: &self.meta.epoch,
                seq: self.meta.seq,
                client_id: &info.client_id,
                user: &info.user,
                resume: resume.as_ref(),
                expires: info.expires,
                rewind,
                heartbeat: &self.heartbeat,
                limits: &self.limits,
            };
            frame::encode_welcome(&welcome, &members)
        };
        self.send_to(id, welcome);
        // Replayed or rewound, the messages come right after the welcome, before any live one:
        // they were read in this same event, so nothing stored in between can be missed or doubled.
        for m in &replay {
            let text = encode_stored(m);
            self.send_to(id, text);
        }
        Ok(id)
    }

    /// What a starting connection is sent before live messages, charged to the user's read budget.
    /// The replay is contiguous, the client's own messages included even with echo off (the
    /// client drops those itself), so a client can tell a skipped seq from a replay and never has
    /// to trust a jump.
    #[allow(clippy::type_complexity)]
    fn plan_start(
        &mut self,
        user: &str,
        start: &Start,
        now: u64,
        store: &mut impl Store,
    ) -> Result<(Option<ResumeOutcome>, Option<frame::Rewound>, Vec<StoredMessage>), CloseCode> {
        let planned = match start {
            Start::Fresh => return Ok((None, None, Vec::new())),
            Start::Resume(point) => {
                self.guards.may_read(user, now).map_err(|_| close::READ_BUDGET)?;
                let (outcome, replay) = self.plan_resume(point, store);
                (Some(outcome), None, replay)
            }
            Start::Rewind(n) => {
                self.guards.may_read(user, now).map_err(|_| close::READ_BUDGET)?;
                let n = (*n).min(self.config.history_page_max as u64) as usize;
                // A failed read rewinds nothing; the welcome says so and live messages follow.
                let cap = self.config.history_page_max_bytes;
                let replay = if n == 0 { Vec::new() } else { read_page(Page::Latest, n, cap, store).map(|(m, _)| m).unwrap_or_default() };
                (None, Some(frame::Rewound { replayed: replay.len() as u64 }), replay)
            }
        };
        self.guards.spend_read(user, read_cost(&planned.2), now);
        Ok(planned)
    }

    /// Adds an admitted connection to the room and announces it; returns its id.
    fn register(&mut self, identity: Identity, now: u64, store: &mut impl Store) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.connections_opened += 1;
        let was_pending = self.presence.get(&identity.user).is_some_and(|m| m.leave_at.is_some());
        let was_empty = self.presence.is_empty();
        let joined = self.presence.connect(&identity.user, id, identity.meta.clone()).event == PresenceEvent::Join;
        if joined {
            self.hook_joined(&identity.user, was_empty, now, store);
        }
        if was_pending {
            // A failed delete only leaves a stale row, which `load` recognizes and drops.
            let _ = store.delete_pending_leave(&identity.user);
        }
        let user = identity.user.clone();
        let info = Connection {
            id,
            client_id: identity.client_id,
            user: identity.user,
            meta: identity.meta,
            echo: identity.echo,
            opened_at: now,
            rights: identity.rights,
            expires: identity.expires,
            seen: now,
        };
        if let Some(exp) = info.expires {
            self.expiries.insert((expiry_deadline(exp), id));
        }
        self.conns.insert(id, Live::new(info, now, &self.config, now));
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.saturating_add(self.sweep_interval()));
        }
        self.presence_changed(&user, Some(id), now);
        id
    }

    /// The checks a new connection must pass before anything changes.
    fn admit(&mut self, identity: &Identity, now: u64, store: &mut impl Store) -> Result<(), CloseCode> {
        if self.is_full() {
            return Err(close::ROOM_FULL);
        }
        if self.is_banned(&identity.user, now, store) {
            return Err(close::REMOVED);
        }
        if self.presence.get(&identity.user).is_some_and(|m| m.connections >= self.config.max_connections_per_user) {
            return Err(close::USER_CONNECTIONS);
        }
        self.bind_client_id(&identity.client_id, &identity.user, now, store)
    }

    /// Whether the backend banned `user` until after `now`. A failed read lets the user in: bans
    /// are the backend's tool for a moment, not a safety property.
    fn is_banned(&self, user: &str, now: u64, store: &mut impl Store) -> bool {
        store.banned_until(user).ok().flatten().is_some_and(|until| until > now)
    }

    /// A client id belongs to the first user who opens it in this room, for as long as it stays
    /// in use (and `HISTORY_MAX_AGE_SECONDS` after): direct messages to it and the idempotency of
    /// its publishes then cannot be taken over by another user who learned it from `from`.
    fn bind_client_id(&mut self, cid: &str, user: &str, now: u64, store: &mut impl Store) -> Result<(), CloseCode> {
        if self.conns.values().any(|l| l.info.client_id == cid && l.info.user != user) {
            return Err(close::CLIENT_ID_TAKEN);
        }
        let max_age = self.config.history_max_age_ms;
        match store.client_owner(cid) {
            Ok(Some((owner, seen))) if owner != user && now.saturating_sub(seen) <= max_age => Err(close::CLIENT_ID_TAKEN),
            // The binding is refreshed only now and then, so a reconnect rarely costs a write.
            Ok(Some((owner, seen))) if owner == user && now.saturating_sub(seen) <= max_age / 8 => Ok(()),
            // A failed write leaves the open-connection check above as the guard.
            Ok(_) => {
                let _ = store.bind_client(cid, user, now);
                Ok(())
            }
            Err(_) => Ok(()),
        }
    }

    /// The backend removes `user`: their connections close with 4411 and, until `ban_until`,
    /// new ones are refused. Returns how many connections were closed.
    pub fn handle_kick(&mut self, user: &str, ban_until: Option<u64>, now: u64, store: &mut impl Store) -> Result<usize, StoreError> {
        if let Some(until) = ban_until.filter(|u| *u > now) {
            store.ban(user, until)?;
        }
        let ids: Vec<ConnId> = self.conns.iter().filter(|(_, l)| l.info.user == user).map(|(id, _)| *id).collect();
        for id in &ids {
            self.actions.push_back(Action::Close { conn: *id, code: close::REMOVED });
            self.handle_close(*id, now, store);
        }
        Ok(ids.len())
    }

    /// A text frame arrived from a connection.
    pub fn handle_text(&mut self, conn: ConnId, text: &str, now: u64, store: &mut impl Store) {
        let Some(frame) = self.screen(conn, text, now, store) else { return };
        match frame {
            // Heartbeats and refreshes that reach the room take a message token like any frame,
            // so a flood of them is cut off like a flood of publishes.
            ClientFrame::Ping => {
                if self.pass(conn, None, Gate::Message, now, store) {
                    self.send_to(conn, frame::PONG.to_owned());
                }
            }
            ClientFrame::Refresh { token } => {
                if self.pass(conn, None, Gate::Message, now, store) {
                    self.refresh(conn, &token, now);
                }
            }
            ClientFrame::Publish { id, data } => {
                if self.pass(conn, Some(&id), Gate::Publish, now, store) {
                    self.publish(conn, &id, &data, now, store);
                }
            }
            ClientFrame::Direct { id, to, data } => {
                if self.pass(conn, Some(&id), Gate::Publish, now, store) {
                    self.direct(conn, &id, &to, &data, now);
                }
            }
            ClientFrame::History { id, limit, before, since } => {
                if self.pass(conn, Some(&id), Gate::Message, now, store) {
                    let page = match (before, since) {
                        (Some(b), _) => Page::Before(b),
                        (None, Some(s)) => Page::After(s),
                        (None, None) => Page::Latest,
                    };
                    self.history_frame(conn, &id, page, limit.unwrap_or(100), now, store);
                }
            }
            ClientFrame::Broadcast { id, data } => {
                if self.pass(conn, Some(&id), Gate::Broadcast(text.len()), now, store) {
                    self.broadcast(conn, &id, &data, now);
                }
            }
            ClientFrame::SetPresence { id, meta } => {
                if self.pass(conn, Some(&id), Gate::Presence(meta.len()), now, store) {
                    self.set_presence(conn, &id, meta, now);
                }
            }
        }
    }

    /// The checks every text frame passes before it is read: the frame limit, the connection's
    /// byte rate, and the frame's shape. Refused, the sender gets an error and a strike.
    fn screen<'t>(&mut self, conn: ConnId, text: &'t str, now: u64, store: &mut impl Store) -> Option<ClientFrame<'t>> {
        if !self.saw(conn, now) {
            return None;
        }
        // Past its token's expiry (and the leeway) a connection acts no more, even if the alarm
        // that closes it has not run yet.
        if self.conns.get(&conn).and_then(|l| l.info.expires).is_some_and(|exp| expiry_deadline(exp) <= now) {
            self.actions.push_back(Action::Close { conn, code: close::TOKEN_EXPIRED });
            self.handle_close(conn, now, store);
            return None;
        }
        if text.len() > self.config.max_frame_bytes {
            // Not parsed (a frame over the limit is not worth the CPU); its id is read from its
            // start when the client put it there, so the refusal settles the right publish.
            let id = frame::salvage_id_prefix(text, self.config.message_id_max).map(str::to_owned);
            self.refuse(conn, id.as_deref(), ErrorCode::TooLarge, "frame is larger than the room's frame limit", now, store);
            return None;
        }
        if !self.conns.get_mut(&conn).is_some_and(|l| l.bytes.take(text.len() as u64, now)) {
            // Not parsed either; the id from the frame's start settles the right publish.
            let id = frame::salvage_id_prefix(text, self.config.message_id_max).map(str::to_owned);
            self.refuse(conn, id.as_deref(), ErrorCode::RateLimited, "too many bytes per second; slow down", now, store);
            return None;
        }
        match frame::decode_client(text, self.config.message_id_max) {
            Ok(frame) => Some(frame),
            Err(e) => {
                let id = frame::salvage_id(text);
                let msg = e.to_string();
                self.refuse(conn, id.as_deref(), e.code(), &msg, now, store);
                None
            }
        }
    }

    /// Whether a decoded frame may be acted on: the right it needs and its rate. Refused, the
    /// sender gets an error and a strike; passed, one strike is forgiven.
    fn pass(&mut self, conn: ConnId, id: Option<&str>, gate: Gate, now: u64, store: &mut impl Store) -> bool {
        let Some(live) = self.conns.get_mut(&conn) else { return false };
        let refusal = match gate {
            Gate::Publish | Gate::Broadcast(_) | Gate::Presence(_) if !live.info.rights.publish => {
                Some((ErrorCode::Forbidden, "this token may not send to this room"))
            }
            Gate::Broadcast(len) if len > self.config.broadcast_max_bytes => {
                Some((ErrorCode::TooLarge, "broadcast is larger than the room's broadcast limit"))
            }
            Gate::Presence(len) if len > self.config.presence_meta_max => {
                Some((ErrorCode::TooLarge, "presence meta is larger than the room's limit"))
            }
            Gate::Message | Gate::Publish if !live.messages.take(1, now) => {
                Some((ErrorCode::RateLimited, "too many messages per second; slow down"))
            }
            Gate::Broadcast(_) | Gate::Presence(_) if !live.broadcasts.take(1, now) => {
                Some((ErrorCode::RateLimited, "too many broadcasts per second; slow down"))
            }
            _ => None,
        };
        match refusal {
            Some((code, message)) => {
                self.refuse(conn, id, code, message, now, store);
                false
            }
            None => {
                live.strikes = live.strikes.saturating_sub(1);
                true
            }
        }
    }

    fn publish(&mut self, conn: ConnId, id: &str, data: &CompactJson, now: u64, store: &mut impl Store) {
        let (from, user, echo) = {
            let info = &self.conns[&conn].info;
            (info.client_id.clone(), info.user.clone(), info.echo)
        };
        let except = if echo { None } else { Some(conn) };
        match self.append(&from, &user, Some(id), data, except, now, store) {
            Ok(p) => self.send_to(conn, frame::encode_ack(id, p.seq, p.duplicate)),
            Err(e) => {
                let msg = e.to_string();
                self.send_to(conn, frame::encode_error(Some(id), ErrorCode::Storage, &msg))
            }
        }
    }

    /// A `history` request over the socket: answered with one `history` frame, or an error.
    fn history_frame(&mut self, conn: ConnId, id: &str, page: Page, limit: usize, now: u64, store: &mut impl Store) {
        let user = self.conns[&conn].info.user.clone();
        match self.history(&user, page, limit, now, store) {
            Ok(page) => {
                let texts: Vec<String> = page.messages.iter().map(encode_stored).collect();
                self.send_to(conn, frame::encode_history(id, &texts, page.more));
            }
            Err(e @ ReadError::RateLimited { .. }) => {
                self.send_to(conn, frame::encode_error(Some(id), ErrorCode::RateLimited, &e.to_string()))
            }
            Err(e @ ReadError::Banned) => self.send_to(conn, frame::encode_error(Some(id), ErrorCode::Forbidden, &e.to_string())),
            Err(ReadError::Store(e)) => self.send_to(conn, frame::encode_error(Some(id), ErrorCode::Storage, &e.to_string())),
        }
    }

    /// An ephemeral message: to every other connection now (to the sender too with echo on), in
    /// the room's one order of frames, but never stored, replayed or counted in `seq`.
    fn broadcast(&mut self, conn: ConnId, id: &str, data: &CompactJson, now: u64) {
        let (text, echo) = {
            let info = &self.conns[&conn].info;
            (frame::encode_broadcast(&info.client_id, &info.user, data, now), info.echo)
        };
        let except = if echo { None } else { Some(conn) };
        let recipients = self.conns.len() - usize::from(except.is_some());
        self.messages_out += recipients as u64;
        self.actions.push_back(Action::Send { to: Recipients::All { except }, text });
        self.send_to(conn, frame::encode_done(id));
    }

    /// This connection's presence metadata is now `meta`: it replaces the token's for this
    /// connection, and the member's meta is that of their newest connection that has one. The
    /// others hear it as a presence `update`, coalesced per user (`PRESENCE_RATE_PER_SEC`).
    fn set_presence(&mut self, conn: ConnId, id: &str, meta: CompactJson, now: u64) {
        let Some(live) = self.conns.get_mut(&conn) else { return };
        live.info.meta = Some(meta.clone());
        let user = live.info.user.clone();
        self.presence.set_meta(&user, conn, Some(meta));
        self.changed.push(conn);
        self.presence_changed(&user, None, now);
        self.send_to(conn, frame::encode_done(id));
    }

    /// A fresh token for a live connection: it must verify, be for the same user and still grant
    /// this room; its rights and expiry then replace the old ones. Refused, the connection keeps
    /// its old token (and is closed when that expires).
    fn refresh(&mut self, conn: ConnId, token_text: &str, now: u64) {
        let Some(check) = &self.token_check else {
            return self.send_to(conn, frame::encode_error(None, ErrorCode::Unauthorized, "this room cannot verify tokens"));
        };
        let claims = match token::verify(token_text, &check.secret, now) {
            Ok(claims) => claims,
            Err(e) => return self.send_to(conn, frame::encode_error(None, ErrorCode::Unauthorized, &e.to_string())),
        };
        let rights = claims.rights_for(&check.room);
        let Some(live) = self.conns.get_mut(&conn) else { return };
        if claims.sub != live.info.user {
            return self.send_to(conn, frame::encode_error(None, ErrorCode::Forbidden, "the token is for another user"));
        }
        if !rights.subscribe {
            return self.send_to(conn, frame::encode_error(None, ErrorCode::Forbidden, "the token does not grant this room"));
        }
        let expires = claims.exp.saturating_mul(1000);
        if let Some(old) = live.info.expires {
            self.expiries.remove(&(expiry_deadline(old), conn));
        }
        live.info.rights = rights;
        live.info.expires = Some(expires);
        self.expiries.insert((expiry_deadline(expires), conn));
        self.changed.push(conn);
        self.send_to(conn, frame::encode_refreshed(expires));
    }

    /// Answers a refused frame with an error and counts a strike; enough strikes close the
    /// connection (4029), so a flood costs the room one cheap check per frame and then nothing.
    fn refuse(&mut self, conn: ConnId, id: Option<&str>, code: ErrorCode, message: &str, now: u64, store: &mut impl Store) {
        self.send_to(conn, frame::encode_error(id, code, message));
        let Some(live) = self.conns.get_mut(&conn) else { return };
        live.strikes += 1;
        if live.strikes >= self.config.max_strikes {
            self.actions.push_back(Action::Close { conn, code: close::POLICY_VIOLATION });
            self.handle_close(conn, now, store);
        }
    }

    /// A binary frame arrived; the protocol is text only.
    /// A frame arrived from `conn`: a sign of life, saved in its attachment once the saved one is a
    /// quarter timeout old (so it survives a wake). False for a connection the room does not hold.
    fn saw(&mut self, conn: ConnId, now: u64) -> bool {
        let save_every = (self.config.heartbeat_timeout_ms / 4).max(1);
        let Some(live) = self.conns.get_mut(&conn) else { return false };
        live.last_seen = now;
        if now.saturating_sub(live.info.seen) >= save_every {
            live.info.seen = now;
            self.changed.push(conn);
        }
        true
    }

    /// Refused like an invalid text frame: its bytes are counted and it is a strike, so a flood
    /// of binary frames is cut off like any other.
    pub fn handle_binary(&mut self, conn: ConnId, len: usize, now: u64, store: &mut impl Store) {
        if !self.saw(conn, now) {
            return;
        }
        let Some(live) = self.conns.get_mut(&conn) else { return };
        if !live.bytes.take(len as u64, now) {
            return self.refuse(conn, None, ErrorCode::RateLimited, "too many bytes per second; slow down", now, store);
        }
        self.refuse(conn, None, ErrorCode::BadFrame, "binary frames are not part of the protocol; send JSON text", now, store);
    }

    /// A connection closed (by either side, or it errored). Closing an unknown or already closed
    /// connection does nothing, so the adapter may report a socket more than once.
    pub fn handle_close(&mut self, conn: ConnId, now: u64, store: &mut impl Store) {
        let Some(live) = self.conns.remove(&conn) else { return };
        if let Some(exp) = live.info.expires {
            self.expiries.remove(&(expiry_deadline(exp), conn));
        }
        let user = live.info.user;
        let meta = if self.hooks.is_some() { self.presence.get(&user).and_then(|m| m.meta.clone()) } else { None };
        if let Some(change) = self.presence.disconnect(&user, conn, now, self.config.presence_grace_ms) {
            if change.event == PresenceEvent::Leave {
                // No grace period: the departure is final now.
                self.hook_left(&user, meta.as_ref(), now, store);
                self.hook_vacated(now, store);
            }
            if let Some(member) = self.presence.get(&user) {
                if let Some(due) = member.leave_at {
                    let meta = member.meta.as_ref().map(|m| m.get().to_owned());
                    // If this write fails, a wake before `due` forgets the grace period: the
                    // user then simply leaves without a leave event, which `members` still shows.
                    let _ = store.put_pending_leave(&PendingLeave { user: user.clone(), due, meta });
                }
            }
            self.presence_changed(&user, None, now);
        }
        if self.conns.is_empty() {
            self.next_sweep = None;
        }
    }

    /// A timer fired. Ends grace periods that are due, closes connections whose last ping or
    /// frame is older than the heartbeat timeout, and trims history by age. Safe to call at any
    /// time and any number of times: it only acts on what is due.
    /// `last_pong` gives the runtime's last auto-response time of a connection, if any.
    pub fn handle_timeout(&mut self, now: u64, last_pong: impl Fn(ConnId) -> Option<u64>, store: &mut impl Store) {
        let left = self.presence.expire(now);
        for (user, meta) in &left {
            // One step: the pending leave goes and its event comes, so a restart either finds the
            // grace period (and ends it again) or the event, never both or neither.
            let _ = store.delete_pending_leave(user);
            self.hook_left(user, meta.as_ref(), now, store);
            self.presence_changed(user, None, now);
        }
        if !left.is_empty() {
            self.hook_vacated(now, store);
        }
        let presence = &self.presence;
        for (user, event) in self.announcer.due(now, |u| presence.get(u).is_some()) {
            self.announce(event, &user, None);
        }
        while let Some(&(deadline, conn)) = self.expiries.first() {
            if deadline > now {
                break;
            }
            self.expiries.pop_first();
            self.actions.push_back(Action::Close { conn, code: close::TOKEN_EXPIRED });
            self.handle_close(conn, now, store);
        }
        if self.next_sweep.is_some_and(|t| t <= now) {
            let timeout = self.config.heartbeat_timeout_ms;
            let dead: Vec<ConnId> = self
                .conns
                .iter()
                .filter(|(id, live)| {
                    let last = live.last_seen.max(last_pong(**id).unwrap_or(0));
                    now.saturating_sub(last) > timeout
                })
                .map(|(id, _)| *id)
                .collect();
            for id in dead {
                self.actions.push_back(Action::Close { conn: id, code: close::HEARTBEAT_TIMEOUT });
                self.handle_close(id, now, store);
            }
            self.next_sweep = if self.conns.is_empty() { None } else { Some(now.saturating_add(self.sweep_interval())) };
            self.trim(now, store);
            self.guards.prune(now);
            self.announcer.prune(now);
            let _ = store.forget_clients(now.saturating_sub(self.config.history_max_age_ms));
            let _ = store.forget_bans(now);
        }
    }

    /// An HTTP publish of one or more messages, applied in order. The whole batch is validated
    /// before anything is stored.
    /// `caller` is who the edge says is publishing: the backend (`:api`) or a token's user, whose
    /// messages carry its identity and whose ids are its own namespace.
    pub fn handle_publish(
        &mut self,
        caller: &Caller,
        items: &[PublishItem],
        now: u64,
        store: &mut impl Store,
    ) -> Result<Vec<Published>, PublishError> {
        if items.is_empty() {
            return Err(PublishError::Empty);
        }
        if items.len() > self.config.publish_batch_max {
            return Err(PublishError::TooMany(self.config.publish_batch_max));
        }
        for (i, item) in items.iter().enumerate() {
            if item.id.as_ref().is_some_and(|id| id.is_empty() || id.len() > self.config.message_id_max) {
                return Err(PublishError::BadId(i));
            }
            if item.data.get().len() > self.config.max_frame_bytes {
                return Err(PublishError::TooLarge(i));
            }
        }
        if self.is_banned(&caller.user, now, store) {
            return Err(PublishError::Banned);
        }
        let bytes: usize = items.iter().map(|i| i.data.len()).sum();
        if bytes > self.config.publish_batch_max_bytes {
            return Err(PublishError::BatchTooLarge(self.config.publish_batch_max_bytes));
        }
        self.guards
            .publish(&caller.user, items.len() as u64, bytes as u64, now)
            .map_err(|retry_after_ms| PublishError::RateLimited { retry_after_ms })?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.append(&caller.from, &caller.user, item.id.as_deref(), &item.data, None, now, store)?);
        }
        Ok(out)
    }

    // ---- internals ---------------------------------------------------------------------------

    fn sweep_interval(&self) -> u64 {
        // Half the timeout: a dead connection is closed between 1 and 1.5 timeouts after its
        // last ping, with one wake per half timeout while the room has connections.
        (self.config.heartbeat_timeout_ms / 2).max(1)
    }

    fn send_to(&mut self, conn: ConnId, text: String) {
        self.actions.push_back(Action::Send { to: Recipients::One(conn), text });
    }

    /// A user's presence changed: announce it now, or later when the user's presence budget has
    /// refilled (see [`announce`]). `except` is a connection that already knows (its welcome).
    fn presence_changed(&mut self, user: &str, except: Option<ConnId>, now: u64) {
        let present = self.presence.get(user).is_some();
        if let Some(event) = self.announcer.changed(user, present, now) {
            self.announce(event, user, except);
        }
    }

    /// Tells the connections that hold the presence right about a member's change.
    fn announce(&mut self, event: PresenceEvent, user: &str, except: Option<ConnId>) {
        let text = frame::encode_presence(event, &self.presence.view(user));
        let to = if self.conns.values().all(|l| l.info.rights.presence) {
            Recipients::All { except }
        } else {
            let ids = self.conns.iter().filter(|(id, l)| l.info.rights.presence && Some(**id) != except).map(|(id, _)| *id).collect();
            Recipients::List(ids)
        };
        self.actions.push_back(Action::Send { to, text });
    }

    /// Stores one message and queues its broadcast, or finds the earlier copy of a retry.
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        from: &str,
        user: &str,
        id: Option<&str>,
        data: &CompactJson,
        except: Option<ConnId>,
        now: u64,
        store: &mut impl Store,
    ) -> Result<Published, StoreError> {
        let seq = self.meta.seq + 1;
        let message =
            StoredMessage { seq, ts: now, from: from.to_owned(), user: user.to_owned(), id: id.map(str::to_owned), data: data.clone() };
        // Stored first: a message nobody could recover is never broadcast or acknowledged.
        // Ids are scoped to (user, from): nobody can make another user's publish a duplicate.
        if let Some(seq) = store.append_new(&message)? {
            return Ok(Published { seq, id: message.id, duplicate: true });
        }
        self.meta.seq = seq;
        if let Some(hooks) = self.hooks.as_mut() {
            let event = HookEvent::Message { epoch: &self.meta.epoch, seq, from, user, data, message_id: id };
            // See `hook_joined` on a failed write.
            let _ = hooks.push(event, now, store);
        }
        let recipients = self.conns.len() - usize::from(except.is_some_and(|c| self.conns.contains_key(&c)));
        self.messages_in += 1;
        self.messages_out += recipients as u64;
        self.actions.push_back(Action::Send { to: Recipients::All { except }, text: encode_stored(&message) });
        self.appends_since_trim += 1;
        if self.appends_since_trim >= (self.config.history_max_messages / 16).clamp(1, 64) {
            self.trim(now, store);
        }
        Ok(Published { seq, id: message.id, duplicate: false })
    }

    fn trim(&mut self, now: u64, store: &mut impl Store) {
        let through = self.meta.seq.saturating_sub(self.config.history_max_messages);
        let before = now.saturating_sub(self.config.history_max_age_ms);
        // A failed trim only keeps more history than asked for; the next one catches up.
        if store.trim(through, before, self.meta.seq).is_ok() {
            self.appends_since_trim = 0;
        }
    }

    /// A direct message. `{clientId}` reaches the connections with that client id, which all
    /// belong to one user (client ids are bound to users, see `bind_client_id`); `{user}` reaches
    /// every connection of the user. A sender without the presence right learns nothing about who
    /// is online: the ack never says how many connections got it, and a missing recipient is not
    /// reported.
    fn direct(&mut self, conn: ConnId, id: &str, to: &Target<'_>, data: &CompactJson, now: u64) {
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(cid, live)| {
                **cid != conn
                    && match to {
                        Target::Client(c) => live.info.client_id == *c,
                        Target::User(u) => live.info.user == *u,
                    }
            })
            .map(|(cid, _)| *cid)
            .collect();
        let (sees_presence, text) = {
            let info = &self.conns[&conn].info;
            (info.rights.presence, frame::encode_direct(&info.client_id, &info.user, data, now))
        };
        if targets.is_empty() && sees_presence {
            self.send_to(conn, frame::encode_error(Some(id), ErrorCode::NoRecipient, "no connection in the room matches the target"));
            return;
        }
        let delivered = targets.len();
        if delivered > 0 {
            self.messages_out += delivered as u64;
            self.actions.push_back(Action::Send { to: Recipients::List(targets), text });
        }
        self.send_to(conn, frame::encode_direct_ack(id, sees_presence.then_some(delivered)));
    }

    /// Decides what a resume point gets: the missing suffix, or an explicit reason why not.
    fn plan_resume(&self, point: &ResumePoint, store: &mut impl Store) -> (ResumeOutcome, Vec<StoredMessage>) {
        let since = point.since;
        let not = |reason| (ResumeOutcome::NotRecovered { reason, since }, Vec::new());
        if point.epoch != self.meta.epoch {
            return not(GapReason::Epoch);
        }
        if since > self.meta.seq {
            return not(GapReason::Ahead);
        }
        let missing = self.meta.seq - since;
        if missing == 0 {
            return (ResumeOutcome::Recovered { replayed: 0 }, Vec::new());
        }
        if missing > self.config.history_page_max as u64 {
            return not(GapReason::Retention);
        }
        let oldest = match store.oldest() {
            Ok(o) => o,
            Err(_) => return not(GapReason::Unavailable),
        };
        if oldest.is_none_or(|o| o > since + 1) {
            return not(GapReason::Retention);
        }
        match store.after(since, missing as usize, self.config.history_page_max_bytes) {
            Ok(messages) if messages.len() as u64 == missing => (ResumeOutcome::Recovered { replayed: messages.len() as u64 }, messages),
            // More bytes than one replay carries (HISTORY_PAGE_MAX_BYTES): the client pages history.
            Ok(_) => not(GapReason::Retention),
            Err(_) => not(GapReason::Unavailable),
        }
    }
}

/// What a decoded frame needs before it is acted on (see `Room::pass`).
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// A message token.
    Message,
    /// The publish right and a message token.
    Publish,
    /// The publish right, a broadcast token, and a frame of this size within the broadcast limit.
    Broadcast(usize),
    /// The publish right, a broadcast token, and meta of this size within the meta limit.
    Presence(usize),
}

/// Up to `limit` messages of `page` within `max_bytes` of data, in seq order, and whether more
/// exist in that direction.
fn read_page(page: Page, limit: usize, max_bytes: usize, store: &mut impl Store) -> Result<(Vec<StoredMessage>, bool), StoreError> {
    let mut messages = match page {
        Page::After(since) => store.after(since, limit + 1, max_bytes)?,
        Page::Before(before) => store.before(before, limit + 1, max_bytes)?,
        Page::Latest => store.before(u64::MAX, limit + 1, max_bytes)?,
    };
    if messages.len() > limit {
        match page {
            Page::After(_) => messages.truncate(limit),
            // Newest first were wanted: the extra one is the oldest.
            Page::Before(_) | Page::Latest => {
                messages.remove(0);
            }
        }
        return Ok((messages, true));
    }
    // Fewer than asked: the end, or the byte cap. One more row tells.
    let more = match (page, messages.first(), messages.last()) {
        (_, None, _) | (_, _, None) => false,
        (Page::After(_), _, Some(last)) => !store.after(last.seq, 1, usize::MAX)?.is_empty(),
        (Page::Before(_) | Page::Latest, Some(first), _) => !store.before(first.seq, 1, usize::MAX)?.is_empty(),
    };
    Ok((messages, more))
}

/// When a connection holding a token that expires at `exp` (ms) is closed: after the leeway.
fn expiry_deadline(exp: u64) -> u64 {
    exp.saturating_add(token::LEEWAY_SECS * 1000)
}

/// What a read costs a reader's budget: the bytes it sends, roughly.
fn read_cost(messages: &[StoredMessage]) -> u64 {
    messages.iter().map(|m| (m.data.len() + m.from.len() + m.user.len() + m.id.as_ref().map_or(0, String::len) + 64) as u64).sum()
}

/// The `message` frame of a stored message.
pub fn encode_stored(m: &StoredMessage) -> String {
    frame::encode_message(&MessageFrame {
        kind: "message",
        seq: m.seq,
        from: &m.from,
        user: &m.user,
        id: m.id.as_deref(),
        data: &m.data,
        ts: m.ts,
    })
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_tests;
