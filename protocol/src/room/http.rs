//! The HTTP API's commands, as the room object receives them from the edge (which checked the
//! caller and the room name): publish, read history, stats, kick, reset, requeue dead webhook
//! events. Each answers with a value or an error the adapter turns into a JSON response.

use super::{Action, ConnId, HistoryPage, Page, PublishError, PublishItem, Published, ReadError, Reset, Room, Stats};
use crate::api::Caller;
use crate::close;
use crate::store::{RoomMeta, Store, StoreError, StoredMessage};
use crate::webhook::WebhookStats;
use serde_json::value::RawValue;

impl Room {
    /// An HTTP publish of one or more messages, applied in order. The whole batch is validated
    /// before anything is stored.
    /// `caller` is who the edge says is publishing: the backend (`:api`) or a token's user, whose
    /// messages carry its identity and whose ids are its own namespace.
    pub fn publish(
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

    /// The backend removes `user`: their connections close with 4411 and, until `ban_until`,
    /// new ones are refused. Returns how many connections were closed.
    pub fn kick(&mut self, user: &str, ban_until: Option<u64>, now: u64, store: &mut impl Store) -> Result<usize, StoreError> {
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

    /// `DELETE /rooms/:room/history`: deletes every stored message (idempotency records with
    /// them), starts the epoch `fresh_epoch` (random, from the adapter) at seq 0, and closes
    /// every connection with 4013 (retryable): a client that comes back resumes from the old
    /// epoch and is told so (`not_recovered`, reason `epoch`). Users keep their grace period,
    /// so a reconnect is no leave and join. Pending webhook events are kept.
    pub fn reset(&mut self, fresh_epoch: &str, now: u64, store: &mut impl Store) -> Result<Reset, StoreError> {
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

    /// `POST /rooms/:room/webhooks/requeue`: dead letters become pending again (same ids), and
    /// are delivered at once. Returns how many.
    pub fn requeue_webhooks(&mut self, now: u64, store: &mut impl Store) -> Result<u64, StoreError> {
        match self.hooks.as_mut() {
            Some(hooks) => hooks.requeue(now, store),
            None => store.outbox_requeue(now),
        }
    }
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
