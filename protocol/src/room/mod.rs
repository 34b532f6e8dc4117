//! The room's logic as a pure state machine, in the style of quinn-proto: getters; `handle_*` for
//! inputs (a connection opens, a frame arrives, a connection closes, a timer fires) and commands
//! (an HTTP publish); `poll_*` for outputs (actions to carry out, the next timer). `now` is always
//! passed in, and the durable state is a borrowed [`Store`].
//!
//! Guarantees this module upholds (and `tests/` checks): every message gets the next seq and is
//! stored before it is broadcast or acknowledged; a retried (origin, id) is acknowledged with its
//! first seq and not stored again; a resume replays exactly the missing suffix or says why not;
//! presence follows the set of users with open connections, with a grace period.

pub mod batch;
pub mod presence;
pub mod store;

use crate::close::{self, CloseCode};
use crate::config::RoomConfig;
use crate::frame::{self, ClientFrame, ErrorCode, GapReason, MessageFrame, PresenceEvent, ResumeOutcome, Target};
use crate::limit::Bucket;
use crate::token::Rights;
use presence::Presence;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, VecDeque};
pub use store::{MemoryStore, PendingLeave, RoomMeta, Store, StoreError, StoredMessage, API_ORIGIN};

/// A connection's number within one room, unique for the room's lifetime in memory and restored
/// from the socket attachments after hibernation.
pub type ConnId = u64;

/// Who a connection is, fixed when it opens. The Durable Object keeps it as the socket's
/// attachment (short field names: the attachment budget is 2,048 bytes), so the room is rebuilt
/// from the live sockets after hibernation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    #[serde(rename = "i")]
    pub id: ConnId,
    #[serde(rename = "c")]
    pub client_id: String,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Box<RawValue>>,
    #[serde(rename = "e")]
    pub echo: bool,
    #[serde(rename = "t")]
    pub opened_at: u64,
    #[serde(rename = "r", default)]
    pub rights: Rights,
}

/// The identity a new connection presents, already verified by the edge.
#[derive(Debug, Clone)]
pub struct Identity {
    pub client_id: String,
    pub user: String,
    pub meta: Option<Box<RawValue>>,
    /// Whether this connection receives its own publishes.
    pub echo: bool,
    pub rights: Rights,
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
    All { except: Option<ConnId> },
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
    pub data: Box<RawValue>,
    #[serde(default)]
    pub id: Option<String>,
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
}

/// A page of history for the HTTP API.
#[derive(Debug)]
pub struct HistoryPage {
    pub epoch: String,
    pub seq: u64,
    pub messages: Vec<StoredMessage>,
    /// Whether more messages follow the last one returned.
    pub more: bool,
}

#[derive(Debug)]
struct Live {
    info: Connection,
    /// Last time a frame from this connection reached the room.
    last_seen: u64,
    /// Publishes and direct messages.
    messages: Bucket,
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
    next_sweep: Option<u64>,
    appends_since_trim: u64,
    messages_in: u64,
    messages_out: u64,
    connections_opened: u64,
    counters_since: u64,
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
        let mut room = Room {
            config,
            meta,
            conns: BTreeMap::new(),
            next_conn: 1,
            presence: Presence::default(),
            actions: VecDeque::new(),
            next_sweep: None,
            appends_since_trim: 0,
            messages_in: 0,
            messages_out: 0,
            connections_opened: 0,
            counters_since: now,
        };
        // Ids are never reused, even across wakes: a socket that was closing during the wake
        // may still report its close under its old id. Starting each instance at now x 1024
        // stays ahead of every id an earlier instance gave out (at most 1,024 opens per ms) and
        // below 2^53, so ids survive JSON.
        room.next_conn = now.saturating_mul(1024).max(1);
        for info in connections {
            room.next_conn = room.next_conn.max(info.id + 1);
            room.presence.restore(&info.user, info.meta.clone());
            // Liveness restarts from the open time, not from `now`: a wake by the sweep alarm
            // must not make a dead connection look fresh.
            let live = Live::new(info, 0, &room.config, now);
            room.conns.insert(live.info.id, Live { last_seen: live.info.opened_at, ..live });
        }
        for leave in store.pending_leaves()? {
            if room.presence.get(&leave.user).is_some() {
                // They came back before the object slept; the row is stale.
                let _ = store.delete_pending_leave(&leave.user);
            } else {
                let meta = leave.meta.and_then(|m| RawValue::from_string(m).ok());
                room.presence.restore_pending(&leave.user, meta, leave.due);
            }
        }
        if !room.conns.is_empty() {
            room.next_sweep = Some(now.saturating_add(room.sweep_interval()));
        }
        Ok(room)
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

    pub fn stats(&self, store: &mut impl Store) -> Result<Stats, StoreError> {
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
        })
    }

    /// Up to `limit` (capped by the page maximum) messages after `since`.
    pub fn history(&self, since: u64, limit: usize, store: &mut impl Store) -> Result<HistoryPage, StoreError> {
        let limit = limit.clamp(1, self.config.history_page_max);
        let mut messages = store.after(since, limit + 1)?;
        let more = messages.len() > limit;
        messages.truncate(limit);
        Ok(HistoryPage { epoch: self.meta.epoch.clone(), seq: self.meta.seq, messages, more })
    }

    // ---- outputs -----------------------------------------------------------------------------

    /// The next action to carry out, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Room::handle_timeout`] should next run: the heartbeat sweep or the end of a
    /// presence grace period, whichever is first.
    pub fn poll_timeout(&self) -> Option<u64> {
        match (self.next_sweep, self.presence.next_due()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- inputs ------------------------------------------------------------------------------

    /// A connection opened. Returns its id; the welcome (and any replay) is queued for it, and
    /// the others hear about a presence change.
    pub fn handle_open(&mut self, identity: Identity, resume: Option<ResumePoint>, now: u64, store: &mut impl Store) -> ConnId {
        let id = self.next_conn;
        self.next_conn += 1;
        self.connections_opened += 1;
        let was_pending = self.presence.get(&identity.user).is_some_and(|m| m.leave_at.is_some());
        let change = self.presence.connect(&identity.user, identity.meta.clone());
        if was_pending {
            // A failed delete only leaves a stale row, which `load` recognizes and drops.
            let _ = store.delete_pending_leave(&identity.user);
        }
        let info = Connection {
            id,
            client_id: identity.client_id,
            user: identity.user,
            meta: identity.meta,
            echo: identity.echo,
            opened_at: now,
            rights: identity.rights,
        };
        self.conns.insert(id, Live::new(info, now, &self.config, now));
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.saturating_add(self.sweep_interval()));
        }
        self.announce(change.event, &change.user, Some(id));

        let (outcome, replay) = match resume {
            Some(point) => {
                let (mut outcome, mut replay) = self.plan_resume(&point, store);
                let info = &self.conns[&id].info;
                if !info.echo {
                    // Echo off covers replays too: a client never gets back what it published.
                    replay.retain(|m| m.from != info.client_id);
                    if let ResumeOutcome::Recovered { replayed } = &mut outcome {
                        *replayed = replay.len() as u64;
                    }
                }
                (Some(outcome), replay)
            }
            None => (None, Vec::new()),
        };
        let welcome = {
            let info = &self.conns[&id].info;
            // Without the presence right the member list stays empty.
            let members = if info.rights.presence { self.presence.views() } else { Vec::new() };
            frame::encode_welcome(&self.meta.epoch, self.meta.seq, &info.client_id, &info.user, &members, outcome.as_ref())
        };
        self.send_to(id, welcome);
        for m in &replay {
            let text = encode_stored(m);
            self.send_to(id, text);
        }
        id
    }

    /// A text frame arrived from a connection.
    pub fn handle_text(&mut self, conn: ConnId, text: &str, now: u64, store: &mut impl Store) {
        let Some(live) = self.conns.get_mut(&conn) else { return };
        live.last_seen = now;
        if text.len() > self.config.max_frame_bytes {
            // Not parsed: a frame over the limit is not worth the CPU to salvage its id.
            return self.refuse(conn, None, ErrorCode::TooLarge, "frame is larger than the room's frame limit", now, store);
        }
        if !live.bytes.take(text.len() as u64, now) {
            return self.refuse(conn, None, ErrorCode::RateLimited, "too many bytes per second; slow down", now, store);
        }
        let frame = match frame::decode_client(text, self.config.message_id_max) {
            Ok(frame) => frame,
            Err(e) => {
                let id = frame::salvage_id(text);
                let msg = e.to_string();
                return self.refuse(conn, id.as_deref(), e.code(), &msg, now, store);
            }
        };
        let (id, is_direct) = match &frame {
            ClientFrame::Ping => return self.send_to(conn, frame::PONG.to_owned()),
            ClientFrame::Publish { id, .. } => (id.as_ref(), false),
            ClientFrame::Direct { id, .. } => (id.as_ref(), true),
        };
        if !self.conns.get(&conn).is_some_and(|l| l.info.rights.publish) {
            let msg = if is_direct { "this token may not send direct messages here" } else { "this token may not publish here" };
            return self.refuse(conn, Some(id), ErrorCode::Forbidden, msg, now, store);
        }
        if !self.conns.get_mut(&conn).is_some_and(|l| l.messages.take(1, now)) {
            return self.refuse(conn, Some(id), ErrorCode::RateLimited, "too many messages per second; slow down", now, store);
        }
        if let Some(l) = self.conns.get_mut(&conn) {
            l.strikes = l.strikes.saturating_sub(1);
        }
        match frame {
            ClientFrame::Publish { id, data } => {
                let (from, user, echo) = {
                    let info = &self.conns[&conn].info;
                    (info.client_id.clone(), info.user.clone(), info.echo)
                };
                let except = if echo { None } else { Some(conn) };
                match self.append(&from, &user, Some(&id), data, except, now, store) {
                    Ok(p) => self.send_to(conn, frame::encode_ack(&id, p.seq, p.duplicate)),
                    Err(e) => {
                        let msg = e.to_string();
                        self.send_to(conn, frame::encode_error(Some(&id), ErrorCode::Storage, &msg))
                    }
                }
            }
            ClientFrame::Direct { id, to, data } => self.direct(conn, &id, &to, data, now),
            ClientFrame::Ping => {}
        }
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
    pub fn handle_binary(&mut self, conn: ConnId, now: u64) {
        let Some(live) = self.conns.get_mut(&conn) else { return };
        live.last_seen = now;
        self.send_to(conn, frame::encode_error(None, ErrorCode::BadFrame, "binary frames are not part of the protocol; send JSON text"));
    }

    /// A connection closed (by either side, or it errored). Closing an unknown or already closed
    /// connection does nothing, so the adapter may report a socket more than once.
    pub fn handle_close(&mut self, conn: ConnId, now: u64, store: &mut impl Store) {
        let Some(live) = self.conns.remove(&conn) else { return };
        let user = live.info.user;
        if let Some(change) = self.presence.disconnect(&user, now, self.config.presence_grace_ms) {
            if let Some(member) = self.presence.get(&user) {
                if let Some(due) = member.leave_at {
                    let meta = member.meta.as_ref().map(|m| m.get().to_owned());
                    // If this write fails, a wake before `due` forgets the grace period: the
                    // user then simply leaves without a leave event, which `members` still shows.
                    let _ = store.put_pending_leave(&PendingLeave { user: user.clone(), due, meta });
                }
            }
            self.announce(change.event, &change.user, None);
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
        for user in self.presence.expire(now) {
            let _ = store.delete_pending_leave(&user);
            self.announce(PresenceEvent::Leave, &user, None);
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
        }
    }

    /// An HTTP publish of one or more messages, applied in order. The whole batch is validated
    /// before anything is stored.
    pub fn handle_publish(&mut self, items: &[PublishItem], now: u64, store: &mut impl Store) -> Result<Vec<Published>, PublishError> {
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
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.append(API_ORIGIN, API_ORIGIN, item.id.as_deref(), &item.data, None, now, store)?);
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
        data: &RawValue,
        except: Option<ConnId>,
        now: u64,
        store: &mut impl Store,
    ) -> Result<Published, StoreError> {
        if let Some(id) = id {
            if let Some(seq) = store.find(from, id)? {
                return Ok(Published { seq, id: Some(id.to_owned()), duplicate: true });
            }
        }
        let seq = self.meta.seq + 1;
        let message = StoredMessage {
            seq,
            ts: now,
            from: from.to_owned(),
            user: user.to_owned(),
            id: id.map(str::to_owned),
            data: data.to_owned(),
        };
        // Stored first: a message nobody could recover is never broadcast or acknowledged.
        store.append(&message)?;
        self.meta.seq = seq;
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

    fn direct(&mut self, conn: ConnId, id: &str, to: &Target<'_>, data: &RawValue, now: u64) {
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
        if targets.is_empty() {
            self.send_to(conn, frame::encode_error(Some(id), ErrorCode::NoRecipient, "no connection in the room matches the target"));
            return;
        }
        let text = {
            let info = &self.conns[&conn].info;
            frame::encode_direct(&info.client_id, &info.user, data, now)
        };
        let delivered = targets.len();
        self.messages_out += delivered as u64;
        self.actions.push_back(Action::Send { to: Recipients::List(targets), text });
        self.send_to(conn, frame::encode_direct_ack(id, delivered));
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
        match store.after(since, missing as usize) {
            Ok(messages) => (ResumeOutcome::Recovered { replayed: messages.len() as u64 }, messages),
            Err(_) => not(GapReason::Unavailable),
        }
    }
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
