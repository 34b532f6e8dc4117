//! A connection's life: it starts (the checks it must pass, its welcome, a resume's replay or a
//! rewind), it is restored after a wake, it closes, and the timer closes it when it goes quiet
//! or its token expires. The timer's sweep (grace periods, trims) is here too.

use super::frames::encode_stored;
use super::http::{read_cost, read_page};
use super::{expiry_deadline, Action, ConnId, Connection, Identity, Live, Page, ResumePoint, Room, Start};
use crate::close::{self, CloseCode};
use crate::frame::{self, GapReason, PresenceEvent, ResumeOutcome};
use crate::store::{PendingLeave, Store, StoredMessage};
use crate::token;

impl Room {
    /// A connection from before a wake, from its socket's attachment; announces nothing.
    pub(super) fn restore(&mut self, info: Connection, now: u64) {
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
        let id = live.info.id;
        self.conns.insert(id, live);
        self.start_reading(id);
    }

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
    /// adapter closes the socket with, and nothing else happened: the token reached its expiry
    /// ([`token::is_expired`], 4002) on the way from the edge, the room is full (4409), the
    /// user is banned (4411) or holds `MAX_CONNECTIONS_PER_USER` connections (4410), the webhook
    /// outbox cannot record the user's join (4029), the client id belongs to another user (4412),
    /// or the replay is over the user's read budget (4029).
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
                self.guards.may_read(user, now).map_err(|wait| self.refused_for(wait, close::READ_BUDGET))?;
                let (outcome, replay) = self.plan_resume(point, store);
                (Some(outcome), None, replay)
            }
            Start::Rewind(n) => {
                self.guards.may_read(user, now).map_err(|wait| self.refused_for(wait, close::READ_BUDGET))?;
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
        self.start_reading(id);
        if self.next_sweep.is_none() {
            self.next_sweep = Some(now.saturating_add(self.sweep_interval()));
        }
        self.presence_changed(&user, Some(id), now);
        id
    }

    /// The checks a new connection must pass before anything changes.
    fn admit(&mut self, identity: &Identity, now: u64, store: &mut impl Store) -> Result<(), CloseCode> {
        // The edge admitted it before the boundary; it may reach the room at or past it.
        if identity.expires.is_some_and(|exp| token::is_expired(exp, now)) {
            return Err(close::TOKEN_EXPIRED);
        }
        if self.is_full() {
            return Err(close::ROOM_FULL);
        }
        if self.is_banned(&identity.user, now, store) {
            return Err(close::REMOVED);
        }
        if self.presence.get(&identity.user).is_some_and(|m| m.connections >= self.config.max_connections_per_user) {
            return Err(close::USER_CONNECTIONS);
        }
        if self.presence.get(&identity.user).is_none() && !self.hooks_admit_join(&identity.user, identity.meta.as_ref(), now, store) {
            let wait = self.hooks.as_ref().map_or(1_000, |h| h.retry_after_ms(now));
            return Err(self.refused_for(wait, close::WEBHOOK_BACKLOG));
        }
        self.bind_client_id(&identity.client_id, &identity.user, now, store)
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

    /// A connection closed (by either side, or it errored). Closing an unknown or already closed
    /// connection does nothing, so the adapter may report a socket more than once.
    pub fn handle_close(&mut self, conn: ConnId, now: u64, store: &mut impl Store) {
        let Some(live) = self.conns.remove(&conn) else { return };
        if live.relayed {
            self.relay_closed(conn, store);
        }
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
        self.relays.handle_timeout(now);
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
        self.close_not_reading(now, store);
        while let Some(&(deadline, conn)) = self.expiries.first() {
            if deadline > now {
                break;
            }
            self.expiries.pop_first();
            self.emit(Action::Close { conn, code: close::TOKEN_EXPIRED.into() });
            self.handle_close(conn, now, store);
        }
        if self.next_sweep.is_some_and(|t| t <= now) {
            let timeout = self.config.heartbeat_timeout_ms;
            let mut dead = Vec::new();
            // The next sweep: half a timeout on, or sooner when a connection's last sign of life
            // is older, the moment it would be past the timeout. So a dead connection is closed
            // at most a millisecond after the timeout the welcome advertises (its member leaves
            // after the grace period), and the room wakes no more often than every half timeout
            // unless a connection is going quiet.
            let mut next = now.saturating_add(self.sweep_interval());
            // A session's connections live as long as its answers list them (`relay.rs`).
            for (id, live) in self.conns.iter().filter(|(_, live)| !live.relayed) {
                let last = live.last_seen.max(last_pong(*id).unwrap_or(0));
                if now.saturating_sub(last) > timeout {
                    dead.push(*id);
                } else {
                    next = next.min(last.saturating_add(timeout).saturating_add(1));
                }
            }
            for id in dead {
                self.emit(Action::Close { conn: id, code: close::HEARTBEAT_TIMEOUT.into() });
                self.handle_close(id, now, store);
            }
            self.next_sweep = if self.conns.is_empty() { None } else { Some(next.max(now.saturating_add(1))) };
            self.trim(now, store);
            self.guards.prune(now);
            self.announcer.prune(now);
            let _ = store.forget_clients(now.saturating_sub(self.config.history_max_age_ms));
            let _ = store.forget_bans(now);
        }
    }
}
