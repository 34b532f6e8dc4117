//! Connections through sessions ([`crate::relay`]): a session object opens one connection per
//! device that joins the room, passes its frames on, and closes it. To the room such a
//! connection is like a socket's (admission, rights, rates, presence, echo, acks), with two
//! differences, both here:
//!
//! - its frames (welcome, acks, broadcasts, presence, direct messages, closes as `left`) become
//!   extras of the session's feed, addressed to the device, in the room's order of frames
//!   ([`Room::emit`] routes them);
//! - stored messages are not sent to it one by one: the feed delivers each to the session once
//!   per user, read from history, and the session passes it to every device that joined.
//!
//! Its liveness is the session's: the session sweeps its sockets itself (an alarm every half
//! heartbeat timeout while it has any) and closes a dead device's connections here; its answers
//! list the devices it still has, and a quiet session is probed every ten heartbeat timeouts, so
//! a session that lost its sockets without a word is found too.
//!
//! What the room keeps: the connections (`relays` rows, with the identity a socket's attachment
//! would hold) and each session's confirmed position (`subscribers` rows), so a wake or a restart
//! resumes the feed where it stood. Extras live in memory; a restart that lost some closes that
//! session's connections (code 1012), and its devices join again.

use super::{Action, ConnId, Connection, Identity, Recipients, Room, Start};
use crate::close;
use crate::feed::{Delivery, FeedConfig, Position, Sender};
use crate::relay::{
    encode_left, FeedCall, FeedMessage, FeedPage, FeedReply, RelayOp, RelayReply, RelayRequest, RelayResult, WireExtra, WATCH_PREFIX,
};
use crate::store::{RelayRow, Store, SubscriberRow};
// Sorted vectors under std's names: a fraction of `BTreeMap`'s wasm (bench/README.md, "Worker size").
use crate::sorted::{SortedMap as BTreeMap, SortedSet as BTreeSet};

/// A session's confirmed position is saved once it moved this many messages past the saved one.
const SAVE_EVERY: u64 = 64;

/// A quiet session is probed every this many heartbeat timeouts (10 minutes by default).
const PROBE_TIMEOUTS: u64 = 10;

/// The largest page of messages one feed call or read carries, in bytes of data.
const PAGE_MAX_BYTES: usize = 1 << 20;

/// The room's relayed connections and its feed to their sessions.
#[derive(Debug)]
pub(super) struct Relays {
    by_conn: BTreeMap<ConnId, (String, u64)>,
    by_key: BTreeMap<(String, u64), ConnId>,
    feed: Sender,
    /// Sessions that follow only the room's latest seq (`RelayOp::Watch`): calls with no
    /// messages, at most one a second per session.
    watch: Sender,
    /// Relayed connections the room closed (their `left` is queued), to end in `settle_relays`.
    closing: Vec<ConnId>,
    /// Per call in flight: the first connection id opened after it was made (an answer that
    /// does not list a device closes only connections opened before its call).
    /// A list, not a map: a few calls are in flight at most (one per session), and a map of
    /// this type was 3.8 KB of the Worker's wasm.
    calls: Vec<(u64, ConnId)>,
    /// Per session, whether its row says it has extras in flight, and the position it holds.
    saved_extras: BTreeMap<String, bool>,
    saved_seq: BTreeMap<String, (String, u64)>,
}

impl Relays {
    pub(super) fn new(head: Position, heartbeat_timeout_ms: u64, now: u64) -> Relays {
        // The session sweeps its own sockets (every half heartbeat timeout, on its alarm) and
        // closes a dead device's connections here; the probe only finds a session that lost its
        // sockets without a word (its instance was reset), so it can be rare.
        let config = FeedConfig { probe_ms: heartbeat_timeout_ms.saturating_mul(PROBE_TIMEOUTS).max(1), ..FeedConfig::default() };
        let mut feed = Sender::new(config, head);
        // Extras of this instance are numbered past any an earlier instance made.
        feed.number_extras_from(now.saturating_mul(1024));
        let watch_config = FeedConfig { batch_max: 0, min_interval_ms: 1_000, ..FeedConfig::default() };
        let watch = Sender::new(watch_config, feed.head().clone());
        Relays {
            by_conn: BTreeMap::new(),
            by_key: BTreeMap::new(),
            feed,
            watch,
            closing: Vec::new(),
            calls: Vec::new(),
            saved_extras: BTreeMap::new(),
            saved_seq: BTreeMap::new(),
        }
    }

    pub(super) fn is_relayed(&self, conn: ConnId) -> bool {
        self.by_conn.contains_key(&conn)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.by_conn.is_empty()
    }

    fn conns_of<'a>(&'a self, session: &'a str) -> impl Iterator<Item = ConnId> + 'a {
        self.by_conn.iter().filter(move |(_, (s, _))| s == session).map(|(c, _)| *c)
    }

    /// The first connection opened after `call` was made, forgetting the call.
    fn take_call(&mut self, call: u64) -> Option<ConnId> {
        let i = self.calls.iter().position(|(c, _)| *c == call)?;
        Some(self.calls.swap_remove(i).1)
    }

    fn extra(&mut self, conn: ConnId, text: String) {
        if let Some((session, device)) = self.by_conn.get(&conn) {
            self.feed.push_extra(session, *device, text);
        }
    }

    pub(super) fn appended(&mut self, seq: u64) {
        self.feed.handle_appended(seq);
        self.watch.handle_appended(seq);
    }

    pub(super) fn reset(&mut self, epoch: &str) {
        self.feed.handle_reset(epoch);
        self.watch.handle_reset(epoch);
    }

    pub(super) fn poll_timeout(&self) -> Option<u64> {
        [self.feed.poll_timeout(), self.watch.poll_timeout()].into_iter().flatten().min()
    }

    pub(super) fn handle_timeout(&mut self, now: u64) {
        // The retry jitter needs only spread, not secrecy: it is derived from the time here,
        // since the timer's sweep takes no random value (a failed call's retry takes the
        // adapter's, `handle_feed_failure`).
        self.feed.handle_timeout(now, now.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        self.watch.handle_timeout(now, now.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
}

impl Room {
    /// Where every action goes: relayed connections' frames become their session's extras
    /// (a close becomes a `left` frame, and the connection ends in [`Room::settle_relays`]);
    /// the rest is queued for the sockets as before. Stored messages do not come here (the feed
    /// carries them to sessions): see `append`.
    pub(super) fn emit(&mut self, action: Action) {
        if self.relays.is_empty() {
            self.actions.push_back(action);
            return;
        }
        match action {
            Action::Send { to: Recipients::One(conn), text } if self.relays.is_relayed(conn) => self.relays.extra(conn, text),
            Action::Send { to: Recipients::List(ids), text } => {
                let (relayed, direct): (Vec<ConnId>, Vec<ConnId>) = ids.into_iter().partition(|c| self.relays.is_relayed(*c));
                for conn in relayed {
                    self.relays.extra(conn, text.clone());
                }
                if !direct.is_empty() {
                    self.actions.push_back(Action::Send { to: Recipients::List(direct), text });
                }
            }
            Action::Send { to: Recipients::All { except }, text } => {
                let relayed: Vec<ConnId> = self.relays.by_conn.keys().copied().filter(|c| Some(*c) != except).collect();
                for conn in relayed {
                    self.relays.extra(conn, text.clone());
                }
                self.actions.push_back(Action::Send { to: Recipients::All { except }, text });
            }
            Action::Close { conn, code } if self.relays.is_relayed(conn) => {
                self.relays.extra(conn, encode_left(code.code, &code.reason));
                self.relays.closing.push(conn);
            }
            other => self.actions.push_back(other),
        }
    }

    /// A session's call: each op in order, answered in order.
    pub fn serve_relay(&mut self, request: &RelayRequest, now: u64, store: &mut impl Store) -> RelayReply {
        let session = request.session.as_str();
        let results = request
            .ops
            .iter()
            .map(|op| match op {
                RelayOp::Open { device, identity } => {
                    // A session speaks only for its own user (it is named by the token's `sub`).
                    if identity.user != session {
                        return RelayResult::Refused { code: close::POLICY_VIOLATION.code, reason: "not this session's user".into() };
                    }
                    let identity = Identity {
                        client_id: identity.cid.clone(),
                        user: identity.user.clone(),
                        meta: identity.meta.clone(),
                        echo: identity.echo,
                        rights: identity.rights,
                        expires: Some(identity.expires),
                    };
                    match self.relay_open(session, *device, identity, now, store) {
                        Ok(_) => RelayResult::Done,
                        Err(c) => {
                            let reason = match self.take_retry_after() {
                                Some(wait) => close::with_retry_after(&c.reason, wait),
                                None => c.reason.into_owned(),
                            };
                            RelayResult::Refused { code: c.code, reason }
                        }
                    }
                }
                RelayOp::Text { device, text } => match self.relays.by_key.get(&(session.to_owned(), *device)) {
                    Some(&conn) => {
                        self.handle_text(conn, text, now, store);
                        RelayResult::Done
                    }
                    None => RelayResult::Unknown,
                },
                RelayOp::Close { device } => match self.relays.by_key.get(&(session.to_owned(), *device)) {
                    Some(&conn) => {
                        self.handle_close(conn, now, store);
                        RelayResult::Done
                    }
                    None => RelayResult::Unknown,
                },
                // A device catching up reads as a socket's resume does: from its user's read
                // budget (a device could otherwise leave and join again from seq 0 in a loop,
                // each time reading the whole history for free). The session's own feed reads
                // are its delivery, once per user, and not charged.
                RelayOp::Read { epoch, after, limit } => match self.guards.may_read(session, now) {
                    Err(wait) => RelayResult::Refused {
                        code: close::READ_BUDGET.code,
                        reason: close::with_retry_after(close::READ_BUDGET.reason, wait),
                    },
                    Ok(()) => {
                        let page = self.feed_page(epoch, *after, *limit, store);
                        let bytes = page.messages.iter().map(|m| m.text.len() as u64).sum();
                        self.guards.spend_read(session, bytes, now);
                        RelayResult::Page(page)
                    }
                },
                RelayOp::Watch { on } => {
                    let key = format!("{WATCH_PREFIX}{session}");
                    if *on {
                        // From seq 0: the first call says the head at once (none while it is 0).
                        let from = Position { epoch: self.meta.epoch.clone(), seq: 0 };
                        self.relays.watch.subscribe_at(session, from.clone(), now);
                        let _ = store.put_subscriber(&SubscriberRow { session: key, epoch: from.epoch, seq: 0, extras: false });
                    } else {
                        self.relays.watch.unsubscribe(session);
                        let _ = store.delete_subscriber(&key);
                    }
                    RelayResult::Done
                }
            })
            .collect();
        self.settle_relays(now, store);
        RelayReply { results }
    }

    /// Opens a device's connection: admitted as a socket would be, its welcome queued as an
    /// extra; the session is fed from the room's head if it was not yet.
    fn relay_open(
        &mut self,
        session: &str,
        device: u64,
        identity: Identity,
        now: u64,
        store: &mut impl Store,
    ) -> Result<ConnId, super::Closing> {
        let key = (session.to_owned(), device);
        if let Some(&conn) = self.relays.by_key.get(&key) {
            return Ok(conn); // a retried open
        }
        let fresh_subscriber = !self.relays.feed.is_subscribed(session);
        if fresh_subscriber {
            let head = Position { epoch: self.meta.epoch.clone(), seq: self.meta.seq };
            self.relays.feed.subscribe_at(session, head, now);
        }
        // The id `register` gives it, mapped first so its welcome is routed as an extra.
        let id = self.next_conn;
        self.relays.by_conn.insert(id, key.clone());
        self.relays.by_key.insert(key.clone(), id);
        match self.handle_start(identity, Start::Fresh, now, store) {
            Ok(conn) => {
                debug_assert_eq!(conn, id);
                if let Some(live) = self.conns.get_mut(&conn) {
                    live.relayed = true;
                }
                self.save_relay(conn, store);
                if fresh_subscriber {
                    self.save_subscriber(session, store);
                }
                Ok(conn)
            }
            Err(code) => {
                self.relays.by_conn.remove(&id);
                self.relays.by_key.remove(&key);
                if fresh_subscriber {
                    self.relays.feed.unsubscribe(session);
                }
                Err(code.into())
            }
        }
    }

    fn save_relay(&mut self, conn: ConnId, store: &mut impl Store) {
        let (Some((session, device)), Some(info)) = (self.relays.by_conn.get(&conn), self.conns.get(&conn)) else { return };
        let row = RelayRow { conn, session: session.clone(), device: *device, info: serde_json::to_string(&info.info).unwrap_or_default() };
        // A failed write leaves the connection in memory only: a restart then forgets it, and
        // the session's next answer (which lists the device) finds no connection to keep.
        let _ = store.put_relay(&row);
    }

    fn save_subscriber(&mut self, session: &str, store: &mut impl Store) {
        let Some(position) = self.relays.feed.subscribers().find(|(s, _)| *s == session).map(|(_, p)| p.clone()) else { return };
        let extras = self.relays.feed.has_extras(session);
        let row = SubscriberRow { session: session.to_owned(), epoch: position.epoch.clone(), seq: position.seq, extras };
        if store.put_subscriber(&row).is_ok() {
            self.relays.saved_extras.insert(session.to_owned(), extras);
            self.relays.saved_seq.insert(session.to_owned(), (position.epoch, position.seq));
        }
    }

    /// A relayed connection ended (from `handle_close`): its mapping and row go.
    pub(super) fn relay_closed(&mut self, conn: ConnId, store: &mut impl Store) {
        if let Some(key) = self.relays.by_conn.remove(&conn) {
            self.relays.by_key.remove(&key);
            let _ = store.delete_relay(conn);
        }
    }

    /// Restores relayed connections and the feed's subscribers after a wake or a restart.
    pub(super) fn restore_relays(&mut self, store: &mut impl Store, now: u64) {
        for row in store.relays().unwrap_or_default() {
            let Ok(info) = serde_json::from_str::<Connection>(&row.info) else {
                let _ = store.delete_relay(row.conn);
                continue;
            };
            let conn = info.id;
            self.relays.by_conn.insert(conn, (row.session.clone(), row.device));
            self.relays.by_key.insert((row.session, row.device), conn);
            self.restore(info, now);
            if let Some(live) = self.conns.get_mut(&conn) {
                live.relayed = true;
            }
        }
        for row in store.subscribers().unwrap_or_default() {
            if let Some(session) = row.session.strip_prefix(WATCH_PREFIX) {
                self.relays.watch.subscribe_at(session, Position { epoch: row.epoch, seq: row.seq }, now);
                continue;
            }
            self.relays.feed.subscribe_at(&row.session, Position { epoch: row.epoch, seq: row.seq }, now);
            if row.extras {
                // Frames for its devices were lost with the last instance's memory.
                self.relays.feed.lost_extras(&row.session);
            }
            self.relays.saved_extras.insert(row.session, row.extras);
        }
    }

    /// Ends what the last event left for relayed connections: the ones the room closed, the
    /// sessions that lost extras (their connections close with 1012, so their devices join
    /// again), sessions with nothing left to deliver, and the rows that say whether a session
    /// has extras in flight. The adapter calls it after every event; it writes a flag that became
    /// true at once, one that became false only with the next saved position.
    pub fn settle_relays(&mut self, now: u64, store: &mut impl Store) {
        // Lost frames (an overflow, or a restart) close with 1001: the devices join again and
        // start from a fresh welcome, as a socket does after the runtime went away.
        for session in self.relays.feed.overflowed() {
            let conns: Vec<ConnId> = self.relays.conns_of(&session).collect();
            for conn in conns {
                self.emit(Action::Close { conn, code: close::GOING_AWAY.into() });
            }
        }
        while let Some(conn) = self.relays.closing.pop() {
            self.handle_close(conn, now, store);
        }
        // A refresh or a presence change: the row keeps the identity, as an attachment does.
        let changed: Vec<ConnId> = self.changed.iter().copied().filter(|c| self.relays.is_relayed(*c)).collect();
        for conn in changed {
            self.save_relay(conn, store);
        }
        let sessions: Vec<String> = self.relays.feed.subscribers().map(|(s, _)| s.to_owned()).collect();
        for session in sessions {
            let has_conns = self.relays.conns_of(&session).next().is_some();
            let extras = self.relays.feed.has_extras(&session);
            if !has_conns && !extras {
                self.relays.feed.unsubscribe(&session);
                self.relays.saved_extras.remove(&session);
                self.relays.saved_seq.remove(&session);
                let _ = store.delete_subscriber(&session);
            } else if (extras && self.relays.saved_extras.get(&session) != Some(&true)) || !self.relays.saved_extras.contains_key(&session)
            {
                // Stored true before any extra is sent (a restart must know they may be lost);
                // false waits for the next save of the position (`SAVE_EVERY`): saving it on
                // every confirmation was a commit per message for a publisher's session (its
                // ack). A restart that finds it still true makes that session's devices join
                // again (1001), as a restart makes a direct socket reconnect.
                self.save_subscriber(&session, store);
            }
        }
    }

    /// The next feed call to make, with its messages read from history, if a session is behind,
    /// has extras waiting or is due a probe.
    pub fn poll_feed(&mut self, room: &str, now: u64, store: &mut impl Store) -> Option<(String, u64, FeedCall)> {
        if let Some(d) = self.relays.watch.poll_delivery(now) {
            // Watch calls are told apart by their number: odd (the feed's are even).
            let page = FeedPage { epoch: d.epoch, end: Some(d.head), messages: Vec::new() };
            return Some((d.subscriber, d.call * 2 + 1, FeedCall { room: room.to_owned(), page, extras: Vec::new(), watch: true }));
        }
        let Delivery { call, subscriber, epoch, after, limit, head: _, extras } = self.relays.feed.poll_delivery(now)?;
        self.relays.take_call(call);
        self.relays.calls.push((call, self.next_conn));
        let page = self.feed_page(&epoch, after, limit, store);
        let extras = extras.into_iter().map(WireExtra::from).collect();
        Some((subscriber, call * 2, FeedCall { room: room.to_owned(), page, extras, watch: false }))
    }

    /// Stored messages of `epoch` after `after`: none when the room is in another epoch (the
    /// page then says the new epoch, which the receiver takes as a reset).
    fn feed_page(&self, epoch: &str, after: u64, limit: usize, store: &mut impl Store) -> FeedPage {
        let head = self.meta.seq;
        let messages =
            if epoch == self.meta.epoch { store.after(after, limit.min(1_000), PAGE_MAX_BYTES).unwrap_or_default() } else { Vec::new() };
        let end = messages.last().is_none_or(|m| m.seq >= head).then_some(head);
        let messages = messages.iter().map(|m| FeedMessage { seq: m.seq, from: m.from.clone(), text: super::encode_stored(m) }).collect();
        FeedPage { epoch: self.meta.epoch.clone(), end, messages }
    }

    /// A session answered a feed call.
    pub fn handle_feed_answer(&mut self, session: &str, call: u64, reply: FeedReply, now: u64, store: &mut impl Store) {
        if call % 2 == 1 {
            let call = call / 2;
            match reply.answer {
                Some(answer) => {
                    let answer: crate::feed::Answer = answer.into();
                    let row = SubscriberRow {
                        session: format!("{WATCH_PREFIX}{session}"),
                        epoch: answer.position.epoch.clone(),
                        seq: answer.position.seq,
                        extras: false,
                    };
                    self.relays.watch.handle_answer(session, call, answer, now);
                    let _ = store.put_subscriber(&row);
                }
                None => {
                    self.relays.watch.unsubscribe(session);
                    let _ = store.delete_subscriber(&format!("{WATCH_PREFIX}{session}"));
                }
            }
            return;
        }
        let call = call / 2;
        let opened_before = self.relays.take_call(call).unwrap_or(0);
        let conns: Vec<ConnId> = self.relays.conns_of(session).collect();
        match reply.answer {
            Some(answer) => {
                self.relays.feed.handle_answer(session, call, answer.into(), now);
                let listed: BTreeSet<u64> = reply.devices.into_iter().collect();
                for conn in conns {
                    let device = self.relays.by_conn.get(&conn).map(|(_, d)| *d);
                    if conn < opened_before && device.is_some_and(|d| !listed.contains(&d)) {
                        // The session has no such device any more: it closes without a `left`.
                        self.handle_close(conn, now, store);
                    }
                }
                // The confirmed position is saved now and then, not on every answer (each save is
                // a commit and an fsync per call: the session path's benchmark): a room restored
                // from an older one sends again what followed it, which the session drops by its
                // own position (at least once, never skipped). A change of the extras flag, which
                // a restart must see, is saved by `settle_relays`.
                let saved = self.relays.saved_seq.get(session).cloned();
                let at = self.relays.feed.subscribers().find(|(s, _)| *s == session).map(|(_, p)| (p.epoch.clone(), p.seq));
                let due = match (saved, at) {
                    (Some((epoch, seq)), Some((e, s))) => epoch != e || s >= seq.saturating_add(SAVE_EVERY),
                    _ => true,
                };
                if due {
                    self.save_subscriber(session, store);
                }
            }
            None => {
                // The session follows nothing here (it restarted, or every device left).
                for conn in conns.into_iter().filter(|c| *c < opened_before) {
                    self.handle_close(conn, now, store);
                }
                self.relays.feed.unsubscribe(session);
                if self.relays.conns_of(session).next().is_some() {
                    // Devices that joined since the call: follow them from the head.
                    let head = Position { epoch: self.meta.epoch.clone(), seq: self.meta.seq };
                    self.relays.feed.subscribe_at(session, head, now);
                }
            }
        }
        self.settle_relays(now, store);
    }

    /// A feed call failed (it threw, or timed out in the adapter); `random` spreads the retry.
    pub fn handle_feed_failure(&mut self, session: &str, call: u64, now: u64, random: u64, store: &mut impl Store) {
        if call % 2 == 1 {
            self.relays.watch.handle_failure(session, call / 2, now, random);
            return;
        }
        let call = call / 2;
        self.relays.take_call(call);
        self.relays.feed.handle_failure(session, call, now, random);
        self.settle_relays(now, store);
    }
}
