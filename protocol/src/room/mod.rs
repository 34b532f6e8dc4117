//! The room's logic as a pure state machine, in the style of quinn-proto. `now` and random values
//! are always passed in, and the durable state is a borrowed [`Store`] (the port in
//! [`crate::store`]).
//!
//! Guarantees this module upholds (and `tests/` checks): every message gets the next seq and is
//! stored before it is broadcast or acknowledged; a retried (origin, id) is acknowledged with its
//! first seq and not stored again; a resume replays exactly the missing suffix or says why not;
//! presence follows the set of users with open connections, with a grace period.
//!
//! # Names
//!
//! Every public method of [`Room`] is one of four kinds, and its name says which:
//!
//! - **Inputs**, `handle_*`: something happened that the room must take into account, and it
//!   cannot be undone by refusing it: a connection opened (`handle_open`, `handle_start`), a
//!   frame arrived (`handle_text`, `handle_oversized`, `handle_binary`), a connection closed
//!   (`handle_close`), a timer fired (`handle_timeout`), a webhook POST ended
//!   (`handle_webhook_result`). What the room does about it comes out of the outputs.
//! - **Outputs**, `poll_*`: what the room wants done, handed out one at a time until `None` (or,
//!   for a time, recomputed on every call): `poll_action` (frames to send, sockets to close),
//!   `poll_changed` (attachments to save again), `poll_timeout` (when to call `handle_timeout`
//!   next), `poll_webhook` (the POST to make).
//! - **Commands**, plain verbs: a request (the backend's over HTTP, or the adapter's) that the
//!   room may refuse, answered with a `Result`: `publish`, `read_history`, `kick`, `reset`,
//!   `requeue_webhooks`, `attach_webhooks`, `set_token_check`, and `load`, which makes a room.
//! - **Getters**, nouns (`is_*` for a yes or no): take `&self` and change nothing, though they
//!   may read the store: `epoch`, `seq`, `config`, `connection`, `connection_count`, `is_full`,
//!   `members_json`, `presence`, `outbox`, `stats`.
//!
//! Inside, the handler of one client frame type is `*_frame` (`publish_frame`, `history_frame`,
//! …), called by `handle_text` once the frame passed its checks; `hook_*` records a webhook event.
//!
//! # Files, by concern
//!
//! - `mod.rs`: the [`Room`] and its per-connection state, [`Room::load`], the getters, the
//!   outputs, and what every concern shares: the one write path (`append`, `trim`) and the
//!   presence announcements.
//! - `types.rs`: the values that cross the boundary (identities, actions, pages, answers,
//!   errors), re-exported here.
//! - `lifecycle.rs`: connections start (admission, resume, rewind), are restored after a wake,
//!   close, and time out; the timer's sweep.
//! - `frames.rs`: client frames: the checks every frame passes (size, rate, shape, rights) and
//!   one handler per frame type.
//! - `http.rs`: the HTTP API's commands (publish, history, stats, kick, reset, requeue).
//! - `hooks.rs`: the webhook relay: the outbox's loading, the events recorded as presence
//!   changes, and the delivery's output and input.
//! - building blocks, each its own small machine with no [`Room`] in it: `presence` (the member
//!   list), `announce` (the presence announcements' rate), `guard` (per-reader and per-room
//!   budgets), `batch` (the adapter's coalescing of actions).
//!
//! Methods that one file defines and another calls are `pub(super)`; everything else a file
//! defines stays private to it.
//!
//! # Imports
//!
//! The room sits on top: it imports [`crate::store`], [`crate::config`], [`crate::webhook`] (the
//! outbox), [`crate::api`] (only the identity contract, [`Caller`]), the wire format and the
//! building blocks; none of them imports the room.

pub mod announce;
pub mod batch;
#[cfg(any(test, feature = "fuzzing"))]
pub mod framing_check;
pub mod guard;
pub mod presence;

mod frames;
mod hooks;
mod http;
mod lifecycle;
mod reading;
mod relay;
mod types;

pub use frames::encode_stored;
pub use types::{
    Action, Closing, ConnId, Connection, HistoryPage, Identity, Page, PublishError, PublishItem, Published, ReadError, Recipients, Reset,
    ResumePoint, Start, Stats, TokenCheck,
};

#[cfg(doc)]
use crate::api::Caller;
use crate::compact::CompactJson;
use crate::config::RoomConfig;
use crate::feed;
use crate::frame::{self, PresenceEvent};
use crate::limit::Bucket;
use crate::sorted::{SortedMap, SortedSet};
use crate::store::{OutboxSize, RoomMeta, Store, StoreError, StoredMessage};
use crate::token;
use crate::webhook::event::Event as HookEvent;
use crate::webhook::{EventClass, Outbox};
use announce::Announcer;
use guard::Guards;
use presence::Presence;
use std::collections::VecDeque;

/// One open connection: its identity (what its socket's attachment keeps) and what lives only
/// in memory (its last sign of life, its rates, its strikes).
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
    /// Refused frames, net of accepted ones; with `oversized`, at `max_strikes` the connection
    /// is closed.
    strikes: u32,
    /// Frames over the frame limit: strikes that accepted frames never take away.
    oversized: u32,
    /// What this connection was sent and what it proved it read (`reading.rs`).
    reading: reading::Reading,
    /// Opened through a session (`relay.rs`): no socket, no pings, no read marks.
    relayed: bool,
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
            oversized: 0,
            reading: reading::Reading::default(),
            relayed: false,
        }
    }
}

/// One room.
#[derive(Debug)]
pub struct Room {
    config: RoomConfig,
    meta: RoomMeta,
    conns: SortedMap<ConnId, Live>,
    next_conn: ConnId,
    presence: Presence,
    actions: VecDeque<Action>,
    announcer: Announcer,
    guards: Guards,
    /// (deadline, connection): when each token-holding connection must have refreshed by.
    expiries: SortedSet<(u64, ConnId)>,
    token_check: Option<TokenCheck>,
    /// What every welcome tells the client (from the config).
    heartbeat: frame::Heartbeat,
    limits: frame::Limits,
    /// Connections whose info changed (a refresh): the adapter re-saves their attachments.
    changed: VecDeque<ConnId>,
    next_sweep: Option<u64>,
    /// The wait of the last connection refused with a 4029 ([`Room::take_retry_after`]).
    retry_after: Option<u64>,
    appends_since_trim: u64,
    messages_in: u64,
    messages_out: u64,
    connections_opened: u64,
    counters_since: u64,
    /// The webhook outbox, when webhooks apply to this room (see [`Room::attach_webhooks`]).
    hooks: Option<Outbox>,
    /// Read marks: proof that a connection reads what it is sent (`reading.rs`).
    marks: reading::Marks,
    /// Connections through sessions, and the feed to those sessions (`relay.rs`).
    relays: relay::Relays,
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
        room.restore_relays(store, now);
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
        let relays = relay::Relays::new(feed::Position { epoch: meta.epoch.clone(), seq: meta.seq }, config.heartbeat_timeout_ms, now);
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
            conns: SortedMap::new(),
            // Ids are never reused, even across wakes: a socket that was closing during the wake
            // may still report its close under its old id. Starting each instance at now x 1024
            // stays ahead of every id an earlier instance gave out (at most 1,024 opens per ms)
            // and below 2^53, so ids survive JSON.
            next_conn: now.saturating_mul(1024).max(1),
            presence: Presence::default(),
            actions: VecDeque::new(),
            expiries: SortedSet::new(),
            token_check: None,
            changed: VecDeque::new(),
            next_sweep: None,
            retry_after: None,
            appends_since_trim: 0,
            messages_in: 0,
            messages_out: 0,
            connections_opened: 0,
            counters_since: now,
            hooks: None,
            marks: reading::Marks::default(),
            relays,
        }
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

    /// The webhook outbox, when webhooks apply to this room.
    pub fn outbox(&self) -> Option<&Outbox> {
        self.hooks.as_ref()
    }

    // ---- outputs (`poll_webhook` is in hooks.rs) ----------------------------------------------

    /// The next action to carry out, in order. What goes to each connection is counted here, as
    /// it leaves, for the read marks (`reading.rs`).
    pub fn poll_action(&mut self) -> Option<Action> {
        let action = self.actions.pop_front()?;
        if let Action::Send { to, text } = &action {
            self.count_sent(to, text.len());
        }
        Some(action)
    }

    /// When [`Room::handle_timeout`] (and [`Room::poll_webhook`]) should next run: the heartbeat
    /// sweep, the end of a presence grace period, a held presence announcement, a token's expiry,
    /// the webhook's next attempt or its dead letters' expiry, whichever is first. A time in the
    /// past means now.
    pub fn poll_timeout(&self) -> Option<u64> {
        [
            self.next_sweep,
            self.presence.next_due(),
            self.announcer.next_due(),
            self.expiries.first().map(|(t, _)| *t),
            self.hooks.as_ref().and_then(Outbox::poll_timeout),
            // Connections far behind in echoing read marks: checked again after a grace period.
            self.reading_deadline(),
            // The feed to sessions: a call's deadline, a retry, a probe (`relay.rs`).
            self.relays.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next connection whose stored info changed (its rights and expiry after a refresh, its
    /// presence meta, its last sign of life), in order, possibly more than once; the adapter
    /// saves its attachment again.
    pub fn poll_changed(&mut self) -> Option<ConnId> {
        self.changed.pop_front()
    }

    // ---- shared by the inputs and commands ----------------------------------------------------

    /// A connection is refused with `code` (a 4029) for at least `wait` ms: the adapter reads the
    /// wait back with [`Room::take_retry_after`] to put it in the close's reason.
    pub(super) fn refused_for(&mut self, wait: u64, code: crate::close::CloseCode) -> crate::close::CloseCode {
        self.retry_after = Some(wait);
        code
    }

    /// How long the connection just refused (4029: read budget, webhook backlog) should wait
    /// before it tries again, once: the adapter closes with [`crate::close::with_retry_after`].
    pub fn take_retry_after(&mut self) -> Option<u64> {
        self.retry_after.take()
    }

    fn sweep_interval(&self) -> u64 {
        // Half the timeout, while the room has connections; a sweep comes sooner when a
        // connection would be past the timeout before then (`handle_timeout`).
        (self.config.heartbeat_timeout_ms / 2).max(1)
    }

    pub(super) fn send_to(&mut self, conn: ConnId, text: String) {
        self.emit(Action::Send { to: Recipients::One(conn), text });
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
        self.emit(Action::Send { to, text });
    }

    /// Stores one message and queues its broadcast, or finds the earlier copy of a retry. When
    /// the room records `message.published`, the message is stored only if the outbox can hold
    /// its event (asked here unless `admitted`: the caller asked for a whole batch); otherwise it
    /// is refused with backpressure, and nothing is stored (a retry of a stored message is still
    /// answered as a duplicate: it needs no room).
    #[allow(clippy::too_many_arguments)]
    fn append(
        &mut self,
        from: &str,
        user: &str,
        id: Option<&str>,
        data: &CompactJson,
        except: Option<ConnId>,
        admitted: bool,
        now: u64,
        store: &mut impl Store,
    ) -> Result<Published, PublishError> {
        let seq = self.meta.seq + 1;
        let event = self
            .hooks
            .as_ref()
            .and_then(|hooks| hooks.encode(&HookEvent::Message { epoch: &self.meta.epoch, seq, from, user, data, message_id: id }, now));
        if let (Some(hooks), Some(body), false) = (self.hooks.as_mut(), &event, admitted) {
            if !hooks.admit(EventClass::Message, OutboxSize::one(body.len()), store)? {
                if let Some(seq) = id.map(|id| store.find(user, from, id)).transpose()?.flatten() {
                    return Ok(Published { seq, id: id.map(str::to_owned), duplicate: true });
                }
                hooks.count_refusal();
                return Err(PublishError::Backpressure { retry_after_ms: hooks.retry_after_ms(now) });
            }
        }
        let message =
            StoredMessage { seq, ts: now, from: from.to_owned(), user: user.to_owned(), id: id.map(str::to_owned), data: data.clone() };
        // Stored first: a message nobody could recover is never broadcast or acknowledged.
        // Ids are scoped to (user, from): nobody can make another user's publish a duplicate.
        if let Some(seq) = store.append_new(&message)? {
            return Ok(Published { seq, id: message.id, duplicate: true });
        }
        self.meta.seq = seq;
        if let (Some(hooks), Some(body)) = (self.hooks.as_mut(), event) {
            // See `hook_joined` on a failed write.
            let _ = hooks.push_body(&body, now, store);
        }
        let recipients = self.conns.len() - usize::from(except.is_some_and(|c| self.conns.contains_key(&c)));
        self.messages_in += 1;
        self.messages_out += recipients as u64;
        // To the sockets only: the feed takes it to sessions, once per user (`relay.rs`).
        self.actions.push_back(Action::Send { to: Recipients::All { except }, text: encode_stored(&message) });
        self.relays.appended(seq);
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

    /// Whether the backend banned `user` until after `now`. A failed read lets the user in: bans
    /// are the backend's tool for a moment, not a safety property.
    fn is_banned(&self, user: &str, now: u64, store: &mut impl Store) -> bool {
        store.banned_until(user).ok().flatten().is_some_and(|until| until > now)
    }
}

/// When a connection holding a token that expires at `exp` (ms) is closed: the edge's boundary
/// ([`token::expiry_deadline`]), so the two never disagree.
fn expiry_deadline(exp: u64) -> u64 {
    token::expiry_deadline(exp)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_tests;
