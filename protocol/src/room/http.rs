//! The HTTP API's commands, as the room object receives them from the edge (which checked the
//! caller, the room name, and the query or body: `api::call`): publish, read history, stats,
//! kick, reset, requeue dead webhook events. [`Room::serve`] runs one and answers it; every
//! error of the room reaches HTTP through one table, [`PublishError::refusal`] and its kin.

use super::{Action, Closing, ConnId, HistoryPage, Page, PublishError, PublishItem, Published, ReadError, Reset, Room, Stats};
use crate::api::call::{Answer, RoomCall, RoomRequest};
use crate::api::refusal::{Refusal, RefusalKind};
use crate::api::Caller;
use crate::close;
use crate::frame;
use crate::store::{OutboxSize, RoomMeta, Store, StoreError, StoredMessage};
use crate::webhook::event::Event as HookEvent;
use crate::webhook::EventClass;
use crate::webhook::WebhookStats;
use serde::Serialize;
use serde_json::value::RawValue;

impl PublishError {
    /// The HTTP answer to this error.
    pub fn refusal(&self) -> Refusal {
        match self {
            PublishError::Banned => Refusal::forbidden(self.to_string()),
            PublishError::RateLimited { retry_after_ms } => Refusal::rate_limited(self.to_string(), *retry_after_ms),
            PublishError::Backpressure { retry_after_ms } => Refusal::backpressure(self.to_string(), *retry_after_ms),
            PublishError::Store(e) => e.refusal(),
        }
    }
}

impl ReadError {
    /// The HTTP answer to this error.
    pub fn refusal(&self) -> Refusal {
        match self {
            ReadError::Banned => Refusal::forbidden(self.to_string()),
            ReadError::RateLimited { retry_after_ms } => Refusal::rate_limited(self.to_string(), *retry_after_ms),
            ReadError::Store(e) => e.refusal(),
        }
    }
}

impl StoreError {
    /// Transient: 503, the request may be retried.
    pub fn refusal(&self) -> Refusal {
        Refusal::new(RefusalKind::Unavailable, self.to_string())
    }
}

#[derive(Serialize)]
struct Closed {
    closed: usize,
}

#[derive(Serialize)]
struct Requeued {
    requeued: u64,
}

#[derive(Serialize)]
struct Messages<'a> {
    messages: &'a [Published],
}

#[derive(Serialize)]
struct Members<'a> {
    members: &'a RawValue,
}

/// A JSON answer; serializing the room's own plain values cannot fail, and if it did the
/// caller gets a 503 rather than a panic.
fn json(value: &impl Serialize) -> Answer {
    match serde_json::to_string(value) {
        Ok(body) => Answer::ok(body),
        Err(e) => Answer::refused(&Refusal::new(RefusalKind::Unavailable, e.to_string())),
    }
}

impl Room {
    /// Runs one API call from the edge and answers it. `fresh_epoch` (random, from the adapter)
    /// is used only by a history deletion. A call only the backend may make, coming as anyone
    /// else, is refused here too (the edge refuses it first: [`RoomRequest::permitted`]).
    pub fn serve(&mut self, request: &RoomRequest, fresh_epoch: &str, now: u64, store: &mut impl Store) -> Answer {
        if !request.permitted() {
            return Answer::refused(&Refusal::forbidden("this endpoint needs the API key"));
        }
        let answer = match &request.call {
            RoomCall::Publish(batch) => match self.publish(&request.caller, &batch.items, now, store) {
                Ok(published) if batch.single => match published.first() {
                    Some(p) => return json(p),
                    None => Err(Refusal::new(RefusalKind::Unavailable, "nothing was published")),
                },
                Ok(published) => return json(&Messages { messages: &published }),
                Err(e) => Err(e.refusal()),
            },
            RoomCall::History(read) => {
                let limit = usize::try_from(read.limit).unwrap_or(usize::MAX);
                match self.read_history(&request.caller.user, read.page, limit, now, store) {
                    Ok(page) => {
                        let texts: Vec<String> = page.messages.iter().map(super::encode_stored).collect();
                        return Answer::ok(frame::encode_history_page(&page.epoch, page.seq, page.more, &texts));
                    }
                    Err(e) => Err(e.refusal()),
                }
            }
            RoomCall::Presence => {
                let members = self.members_json();
                return match RawValue::from_string(members) {
                    Ok(raw) => json(&Members { members: &raw }),
                    Err(e) => Answer::refused(&Refusal::new(RefusalKind::Unavailable, e.to_string())),
                };
            }
            RoomCall::Stats => self.stats(now, store).map(|s| json(&s)).map_err(|e| e.refusal()),
            RoomCall::Kick(kick) => {
                let until = kick.ban_seconds.map(|s| now.saturating_add(s.saturating_mul(1000)));
                self.kick(&kick.user, until, kick.reason.as_deref(), now, store)
                    .map(|closed| json(&Closed { closed }))
                    .map_err(|e| e.refusal())
            }
            RoomCall::DeleteHistory => self.reset(fresh_epoch, now, store).map(|r| json(&r)).map_err(|e| e.refusal()),
            RoomCall::RequeueWebhooks => {
                self.requeue_webhooks(now, store).map(|requeued| json(&Requeued { requeued })).map_err(|e| e.refusal())
            }
        };
        answer.unwrap_or_else(|r| Answer::refused(&r))
    }
}

impl Room {
    /// An HTTP publish of one or more messages, applied in order. The edge checked the batch
    /// against the room's limits (`api::publish::PublishBatch`); what needs the room's state is
    /// checked here, for the whole batch before anything is stored.
    /// `caller` is who the edge says is publishing: the backend (`:api`) or a token's user, whose
    /// messages carry its identity and whose ids are its own namespace.
    pub fn publish(
        &mut self,
        caller: &Caller,
        items: &[PublishItem],
        now: u64,
        store: &mut impl Store,
    ) -> Result<Vec<Published>, PublishError> {
        if self.is_banned(&caller.user, now, store) {
            return Err(PublishError::Banned);
        }
        let bytes: usize = items.iter().map(|i| i.data.len()).sum();
        self.guards
            .publish(&caller.user, items.len() as u64, bytes as u64, now)
            .map_err(|retry_after_ms| PublishError::RateLimited { retry_after_ms })?;
        self.admit_batch(caller, items, now, store)?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.append(&caller.from, &caller.user, item.id.as_deref(), &item.data, None, true, now, store)?);
        }
        Ok(out)
    }

    /// A batch is stored whole or not at all: when the room records `message.published`, the
    /// outbox must hold every new message's event (each measured as encoded with the highest seq
    /// the batch could reach, so never less than it will take), or the batch is refused with
    /// backpressure. Messages already in history (retries) need no room.
    fn admit_batch(&mut self, caller: &Caller, items: &[PublishItem], now: u64, store: &mut impl Store) -> Result<(), PublishError> {
        let Some(hooks) = self.hooks.as_mut() else { return Ok(()) };
        let last = self.meta.seq.saturating_add(items.len() as u64);
        let mut sizes = Vec::with_capacity(items.len());
        for item in items {
            let event = HookEvent::Message {
                epoch: &self.meta.epoch,
                seq: last,
                from: &caller.from,
                user: &caller.user,
                data: &item.data,
                message_id: item.id.as_deref(),
            };
            let Some(body) = hooks.encode(&event, now) else { return Ok(()) };
            sizes.push(OutboxSize::one(body.len()));
        }
        let need = sizes.iter().fold(OutboxSize::ZERO, |a, b| a.plus(*b));
        if hooks.admit(EventClass::Message, need, store)? {
            return Ok(());
        }
        let mut new = OutboxSize::ZERO;
        for (item, size) in items.iter().zip(&sizes) {
            let stored = match item.id.as_deref() {
                Some(id) => store.find(&caller.user, &caller.from, id)?.is_some(),
                None => false,
            };
            if !stored {
                new = new.plus(*size);
            }
        }
        if new == OutboxSize::ZERO || (new != need && hooks.admit(EventClass::Message, new, store)?) {
            return Ok(());
        }
        hooks.count_refusal();
        Err(PublishError::Backpressure { retry_after_ms: hooks.retry_after_ms(now) })
    }

    /// Up to `limit` (clamped to 1..`HISTORY_PAGE_MAX`) messages of `page`, in seq order, read by
    /// `reader` (a user, or the backend) and charged to the reader's read budget.
    pub fn read_history(
        &mut self,
        reader: &str,
        page: Page,
        limit: usize,
        now: u64,
        store: &mut impl Store,
    ) -> Result<HistoryPage, ReadError> {
        if self.is_banned(reader, now, store) {
            return Err(ReadError::Banned);
        }
        self.guards.may_read(reader, now).map_err(|retry_after_ms| ReadError::RateLimited { retry_after_ms })?;
        let limit = limit.clamp(1, self.config.history_page_max);
        let (messages, more) = read_page(page, limit, self.config.history_page_max_bytes, store)?;
        self.guards.spend_read(reader, read_cost(&messages), now);
        Ok(HistoryPage { epoch: self.meta.epoch.clone(), seq: self.meta.seq, messages, more })
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

    /// The backend removes `user`: their connections close with 4411 (with `reason` as the close
    /// reason when given, else the table's) and, until `ban_until`, new ones are refused.
    /// Returns how many connections were closed.
    pub fn kick(
        &mut self,
        user: &str,
        ban_until: Option<u64>,
        reason: Option<&str>,
        now: u64,
        store: &mut impl Store,
    ) -> Result<usize, StoreError> {
        if let Some(until) = ban_until.filter(|u| *u > now) {
            store.ban(user, until)?;
        }
        let ids: Vec<ConnId> = self.conns.iter().filter(|(_, l)| l.info.user == user).map(|(id, _)| *id).collect();
        for id in &ids {
            let mut code: Closing = close::REMOVED.into();
            if let Some(reason) = reason {
                // The edge held it to a close frame's 123 bytes (api::kick).
                code.reason = reason.to_owned().into();
            }
            self.emit(Action::Close { conn: *id, code });
            self.handle_close(*id, now, store);
        }
        Ok(ids.len())
    }

    /// `DELETE /rooms/:room/history`: deletes every stored message (idempotency records with
    /// them), starts the epoch `fresh_epoch` (random, from the adapter) at seq 0, and closes
    /// every connection with 4013 (retryable): a client that comes back resumes from the old
    /// epoch and is told so (`not_recovered`, reason `epoch`). Users keep their grace period,
    /// so a reconnect is no leave and join. Pending webhook events are kept.
    pub fn reset(&mut self, fresh_epoch: &str, now: u64, store: &mut impl Store) -> Result<Reset, StoreError> {
        let meta = RoomMeta { epoch: fresh_epoch.to_owned(), seq: 0 };
        let deleted = store.reset(&meta)?;
        self.meta = meta;
        self.relays.reset(&self.meta.epoch);
        self.appends_since_trim = 0;
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.emit(Action::Close { conn: id, code: close::ROOM_RESET.into() });
            self.handle_close(id, now, store);
        }
        Ok(Reset { epoch: self.meta.epoch.clone(), deleted })
    }

    /// `POST /rooms/:room/webhooks/requeue`: dead letters become pending again (same ids), and
    /// are delivered at once. Returns how many.
    pub fn requeue_webhooks(&mut self, now: u64, store: &mut impl Store) -> Result<u64, StoreError> {
        match self.hooks.as_mut() {
            Some(hooks) => hooks.requeue(now, store),
            None => store.outbox_requeue(now).map(|moved| moved.events),
        }
    }
}

/// Up to `limit` messages of `page` within `max_bytes` of data, in seq order, and whether more
/// exist in that direction.
pub(super) fn read_page(
    page: Page,
    limit: usize,
    max_bytes: usize,
    store: &mut impl Store,
) -> Result<(Vec<StoredMessage>, bool), StoreError> {
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

/// What a read costs a reader's budget: the bytes it sends, roughly.
pub(super) fn read_cost(messages: &[StoredMessage]) -> u64 {
    messages.iter().map(|m| (m.data.len() + m.from.len() + m.user.len() + m.id.as_ref().map_or(0, String::len) + 64) as u64).sum()
}

#[cfg(test)]
mod answer_tests {
    use super::*;
    use crate::api::call::RoomCall;
    use crate::api::history::HistoryRead;
    use crate::api::kick::KickRequest;
    use crate::api::publish::PublishBatch;
    use crate::api::refusal::documented;
    use crate::config::RoomConfig;
    use crate::store::MemoryStore;

    /// Every error of the room reaches HTTP through this table, with a documented status and
    /// error code; a rate limit carries its Retry-After.
    #[test]
    fn every_room_error_has_a_documented_answer() {
        let store = StoreError("disk".into());
        let refusals = [
            (PublishError::Banned.refusal(), 403),
            (PublishError::RateLimited { retry_after_ms: 1_001 }.refusal(), 429),
            (PublishError::Backpressure { retry_after_ms: 4_500 }.refusal(), 507),
            (PublishError::Store(store.clone()).refusal(), 503),
            (ReadError::Banned.refusal(), 403),
            (ReadError::RateLimited { retry_after_ms: 1 }.refusal(), 429),
            (ReadError::Store(store.clone()).refusal(), 503),
            (store.refusal(), 503),
        ];
        for (refusal, status) in refusals {
            assert_eq!(refusal.status(), status, "{refusal:?}");
            assert!(documented::is_documented(&refusal), "{refusal:?}");
            assert_eq!(refusal.retry_after_ms.is_some(), status == 429 || status == 507, "{refusal:?}");
        }
        assert_eq!(PublishError::RateLimited { retry_after_ms: 1_001 }.refusal().retry_after_seconds(), Some(2));
        let full = PublishError::Backpressure { retry_after_ms: 4_500 }.refusal();
        assert_eq!((full.retry_after_seconds(), full.kind.code().as_str()), (Some(5), "backpressure"));
        assert_eq!(ReadError::RateLimited { retry_after_ms: 1 }.refusal().retry_after_seconds(), Some(1));
        let body: serde_json::Value = serde_json::from_str(&Answer::refused(&store.refusal()).body).unwrap();
        assert_eq!(body["error"]["code"], "storage");
    }

    #[test]
    fn serve_answers_each_call() {
        let mut store = MemoryStore::default();
        let mut room = Room::load(RoomConfig::default(), &mut store, "e", 1_000, []).unwrap();
        let call = |caller: Caller, call: RoomCall| RoomRequest { caller, call };
        let batch = PublishBatch::parse(r#"[{"data":1,"id":"a"},{"data":2,"id":"a"}]"#, room.config()).unwrap();
        let answer = room.serve(&call(Caller::user("u"), RoomCall::Publish(batch)), "f", 1_001, &mut store);
        assert_eq!(
            (answer.status, answer.body.as_str()),
            (200, r#"{"messages":[{"seq":1,"id":"a"},{"seq":1,"id":"a","duplicate":true}]}"#)
        );
        let read = HistoryRead { page: Page::After(0), limit: 10 };
        let answer = room.serve(&call(Caller::user("u"), RoomCall::History(read)), "f", 1_002, &mut store);
        assert_eq!(answer.status, 200);
        assert!(answer.body.contains(r#""seq":1"#), "{}", answer.body);
        // The backend-only calls, as a user: refused by the room too.
        let kick = KickRequest { user: "u".into(), ban_seconds: Some(60), reason: None };
        let answer = room.serve(&call(Caller::user("u"), RoomCall::Kick(kick.clone())), "f", 1_003, &mut store);
        assert_eq!(answer.status, 403);
        let answer = room.serve(&call(Caller::backend(), RoomCall::Kick(kick)), "f", 1_003, &mut store);
        assert_eq!((answer.status, answer.body.as_str()), (200, r#"{"closed":0}"#));
        // With a member of its own to close: the kick's reason is the close reason.
        let who = crate::room::Identity {
            client_id: "c".into(),
            user: "v".into(),
            meta: None,
            echo: false,
            rights: crate::token::Rights::ALL,
            expires: None,
        };
        let victim = room.handle_open(who, None, 1_003, &mut store).unwrap();
        while room.poll_action().is_some() {}
        let kick = KickRequest { user: "v".into(), ban_seconds: None, reason: Some("spam".into()) };
        assert_eq!(room.serve(&call(Caller::backend(), RoomCall::Kick(kick)), "f", 1_003, &mut store).body, r#"{"closed":1}"#);
        let closes: Vec<Action> = std::iter::from_fn(|| room.poll_action()).filter(|a| matches!(a, Action::Close { .. })).collect();
        assert_eq!(closes, [Action::Close { conn: victim, code: Closing { code: 4411, reason: "spam".into() } }]);
        // Banned now: the user's publish is 403 through the same table.
        let batch = PublishBatch::parse(r#"{"data":3}"#, room.config()).unwrap();
        let answer = room.serve(&call(Caller::user("u"), RoomCall::Publish(batch)), "f", 1_004, &mut store);
        assert_eq!(answer.status, 403);
        let answer = room.serve(&call(Caller::backend(), RoomCall::DeleteHistory), "f", 1_005, &mut store);
        assert_eq!((answer.status, answer.body.as_str()), (200, r#"{"epoch":"f","deleted":1}"#));
        let answer = room.serve(&call(Caller::user("u"), RoomCall::Presence), "f", 1_006, &mut store);
        // The kicked member is in its presence grace period, with no connection left.
        assert_eq!((answer.status, answer.body.as_str()), (200, r#"{"members":[{"user":"v","connections":0}]}"#));
    }
}
