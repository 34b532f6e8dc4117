//! An in-memory [`Store`]: what the room's tests, the fuzz targets and the examples run on, and
//! the reference the conformance suite holds every other store to.

use super::{
    OutboxCounts, OutboxRow, OutboxSize, PendingLeave, RelayRow, RoomMeta, Store, StoreError, StoredMessage, SubscriberRow, WebhookState,
};
use std::collections::BTreeMap;

/// The first `limit` messages, stopping once the `data` bytes before one reach `max_bytes` (the
/// first always comes).
fn within<'a>(messages: impl Iterator<Item = &'a StoredMessage>, limit: usize, max_bytes: usize) -> Vec<StoredMessage> {
    let mut fits = Fits::new(max_bytes);
    messages.take(limit).take_while(|m| fits.next(m.data.len())).cloned().collect()
}

/// Counts the bytes of what a page holds so far: the next item fits if none came yet, or if
/// the bytes before it are below the cap.
struct Fits {
    bytes: usize,
    first: bool,
    max: usize,
}

impl Fits {
    fn new(max: usize) -> Fits {
        Fits { bytes: 0, first: true, max }
    }

    fn next(&mut self, len: usize) -> bool {
        let fits = std::mem::take(&mut self.first) || self.bytes < self.max;
        self.bytes = self.bytes.saturating_add(len);
        fits
    }
}

/// An in-memory [`Store`], for tests and simulations. It can be told to fail, to test that a
/// failed write is never broadcast.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    meta: Option<RoomMeta>,
    messages: BTreeMap<u64, StoredMessage>,
    leaves: BTreeMap<String, PendingLeave>,
    relays: BTreeMap<u64, RelayRow>,
    subscribers: BTreeMap<String, SubscriberRow>,
    clients: BTreeMap<String, (String, u64)>,
    bans: BTreeMap<String, u64>,
    /// (row, queued at or set aside at, body, dead): dead is 0 for pending, 1 for too old, else
    /// the HTTP status that refused it (as the SQL store keeps it).
    outbox: BTreeMap<u64, (u64, String, u16)>,
    outbox_next: u64,
    webhook: Option<WebhookState>,
    present: BTreeMap<String, Option<String>>,
    /// When set, every write fails.
    pub fail_writes: bool,
}

impl MemoryStore {
    fn writable(&self) -> Result<(), StoreError> {
        if self.fail_writes {
            Err(StoreError("injected failure".into()))
        } else {
            Ok(())
        }
    }
}

impl Store for MemoryStore {
    fn meta(&mut self) -> Result<Option<RoomMeta>, StoreError> {
        let last = self.messages.keys().next_back().copied().unwrap_or(0);
        Ok(self.meta.clone().map(|m| RoomMeta { seq: m.seq.max(last), ..m }))
    }
    fn create(&mut self, meta: &RoomMeta) -> Result<(), StoreError> {
        self.writable()?;
        if self.meta.is_some() {
            return Err(StoreError("the room was already created".into()));
        }
        self.meta = Some(meta.clone());
        Ok(())
    }
    fn append(&mut self, message: &StoredMessage) -> Result<(), StoreError> {
        self.writable()?;
        if self.messages.contains_key(&message.seq) {
            return Err(StoreError(format!("seq {} is taken", message.seq)));
        }
        if let Some(id) = &message.id {
            if self.find(&message.user, &message.from, id)?.is_some() {
                return Err(StoreError("a message with this (user, origin, id) is in history".into()));
            }
        }
        self.messages.insert(message.seq, message.clone());
        Ok(())
    }
    fn find(&mut self, user: &str, from: &str, id: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.messages.values().find(|m| m.user == user && m.from == from && m.id.as_deref() == Some(id)).map(|m| m.seq))
    }
    fn after(&mut self, after: u64, limit: usize, max_bytes: usize) -> Result<Vec<StoredMessage>, StoreError> {
        Ok(within(self.messages.range(after.saturating_add(1)..).map(|(_, m)| m), limit, max_bytes))
    }
    fn before(&mut self, before: u64, limit: usize, max_bytes: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let mut page = within(self.messages.range(..before).rev().map(|(_, m)| m), limit, max_bytes);
        page.reverse();
        Ok(page)
    }
    fn oldest(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(self.messages.keys().next().copied())
    }
    fn count(&mut self) -> Result<u64, StoreError> {
        Ok(self.messages.len() as u64)
    }
    fn trim(&mut self, through_seq: u64, before_ts: u64, last_seq: u64) -> Result<(), StoreError> {
        self.writable()?;
        if let Some(meta) = self.meta.as_mut() {
            meta.seq = meta.seq.max(last_seq);
        }
        self.messages.retain(|seq, m| *seq > through_seq && m.ts >= before_ts);
        Ok(())
    }
    fn pending_leaves(&mut self) -> Result<Vec<PendingLeave>, StoreError> {
        Ok(self.leaves.values().cloned().collect())
    }
    fn put_pending_leave(&mut self, leave: &PendingLeave) -> Result<(), StoreError> {
        self.writable()?;
        self.leaves.insert(leave.user.clone(), leave.clone());
        Ok(())
    }
    fn delete_pending_leave(&mut self, user: &str) -> Result<(), StoreError> {
        self.writable()?;
        self.leaves.remove(user);
        Ok(())
    }
    fn client_owner(&mut self, cid: &str) -> Result<Option<(String, u64)>, StoreError> {
        Ok(self.clients.get(cid).cloned())
    }
    fn bind_client(&mut self, cid: &str, user: &str, now: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.clients.insert(cid.to_owned(), (user.to_owned(), now));
        Ok(())
    }
    fn forget_clients(&mut self, before: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.clients.retain(|_, (_, seen)| *seen >= before);
        Ok(())
    }
    fn ban(&mut self, user: &str, until: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.bans.insert(user.to_owned(), until);
        Ok(())
    }
    fn banned_until(&mut self, user: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.bans.get(user).copied())
    }
    fn forget_bans(&mut self, now: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.bans.retain(|_, until| *until > now);
        Ok(())
    }
    fn outbox_push(&mut self, ts: u64, body: &str) -> Result<(), StoreError> {
        self.writable()?;
        self.outbox_next += 1;
        self.outbox.insert(self.outbox_next, (ts, body.to_owned(), 0));
        Ok(())
    }
    fn outbox_take(&mut self, limit: usize, max_bytes: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let mut fits = Fits::new(max_bytes);
        Ok(self
            .outbox
            .iter()
            .filter(|(_, (_, _, dead))| *dead == 0)
            .take(limit)
            .take_while(|(_, (_, body, _))| fits.next(body.len()))
            .map(|(n, (ts, body, _))| OutboxRow { n: *n, ts: *ts, body: body.clone() })
            .collect())
    }
    fn outbox_any_pending(&mut self) -> Result<bool, StoreError> {
        Ok(self.outbox.values().any(|(_, _, dead)| *dead == 0))
    }
    fn outbox_delete(&mut self, rows: &[u64]) -> Result<OutboxSize, StoreError> {
        self.writable()?;
        let mut gone = OutboxSize::ZERO;
        for n in rows {
            if self.outbox.get(n).is_some_and(|(_, _, dead)| *dead == 0) {
                if let Some((_, body, _)) = self.outbox.remove(n) {
                    gone = gone.plus(OutboxSize::one(body.len()));
                }
            }
        }
        Ok(gone)
    }
    fn outbox_mark_dead(&mut self, before_ts: u64, now: u64) -> Result<OutboxSize, StoreError> {
        self.writable()?;
        let mut moved = OutboxSize::ZERO;
        for (ts, body, dead) in self.outbox.values_mut() {
            if *dead == 0 && *ts < before_ts {
                *dead = 1;
                *ts = now;
                moved = moved.plus(OutboxSize::one(body.len()));
            }
        }
        Ok(moved)
    }
    fn outbox_refuse(&mut self, n: u64, status: u16, now: u64) -> Result<OutboxSize, StoreError> {
        self.writable()?;
        match self.outbox.get_mut(&n).filter(|(_, _, dead)| *dead == 0) {
            Some((ts, body, dead)) => {
                *dead = status.max(2);
                *ts = now;
                Ok(OutboxSize::one(body.len()))
            }
            None => Ok(OutboxSize::ZERO),
        }
    }
    fn outbox_requeue(&mut self, now: u64) -> Result<OutboxSize, StoreError> {
        self.writable()?;
        let mut moved = OutboxSize::ZERO;
        for (ts, body, dead) in self.outbox.values_mut() {
            if *dead != 0 {
                *dead = 0;
                *ts = now;
                moved = moved.plus(OutboxSize::one(body.len()));
            }
        }
        Ok(moved)
    }
    fn outbox_expire(&mut self, before_ts: u64) -> Result<OutboxSize, StoreError> {
        self.writable()?;
        let mut gone = OutboxSize::ZERO;
        self.outbox.retain(|_, (ts, body, dead)| {
            let expired = *dead != 0 && *ts < before_ts;
            if expired {
                gone = gone.plus(OutboxSize::one(body.len()));
            }
            !expired
        });
        Ok(gone)
    }
    fn outbox_evict(&mut self, need: OutboxSize) -> Result<OutboxSize, StoreError> {
        self.writable()?;
        let mut dead: Vec<(u64, u64, usize)> =
            self.outbox.iter().filter(|(_, (_, _, d))| *d != 0).map(|(n, (ts, body, _))| (*ts, *n, body.len())).collect();
        dead.sort_unstable();
        let mut gone = OutboxSize::ZERO;
        for (_, n, bytes) in dead {
            if gone.events >= need.events && gone.bytes >= need.bytes {
                break;
            }
            self.outbox.remove(&n);
            gone = gone.plus(OutboxSize::one(bytes));
        }
        Ok(gone)
    }
    fn outbox_oldest_dead(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(self.outbox.values().filter(|(_, _, dead)| *dead != 0).map(|(ts, _, _)| *ts).min())
    }
    fn outbox_counts(&mut self) -> Result<OutboxCounts, StoreError> {
        let mut c = OutboxCounts::default();
        for (n, (ts, body, dead)) in &self.outbox {
            if *dead > 1 {
                c.refused += 1;
                c.last_refused = Some((*n, *dead));
            }
            if *dead != 0 {
                c.dead += 1;
                c.dead_bytes += body.len() as u64;
                c.oldest_dead = Some(c.oldest_dead.map_or(*ts, |o: u64| o.min(*ts)));
            } else {
                c.pending += 1;
                c.pending_bytes += body.len() as u64;
                c.oldest_pending = Some(c.oldest_pending.map_or(*ts, |o: u64| o.min(*ts)));
            }
        }
        Ok(c)
    }
    fn webhook_state(&mut self) -> Result<Option<WebhookState>, StoreError> {
        Ok(self.webhook.clone())
    }
    fn put_webhook_state(&mut self, state: &WebhookState) -> Result<(), StoreError> {
        self.writable()?;
        self.webhook = Some(state.clone());
        Ok(())
    }
    fn present_users(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        Ok(self.present.iter().map(|(u, m)| (u.clone(), m.clone())).collect())
    }
    fn put_present(&mut self, user: &str, meta: Option<&str>) -> Result<(), StoreError> {
        self.writable()?;
        self.present.insert(user.to_owned(), meta.map(str::to_owned));
        Ok(())
    }
    fn delete_present(&mut self, user: &str) -> Result<(), StoreError> {
        self.writable()?;
        self.present.remove(user);
        Ok(())
    }
    fn reset(&mut self, meta: &RoomMeta) -> Result<u64, StoreError> {
        self.writable()?;
        let deleted = self.messages.len() as u64;
        self.messages.clear();
        self.meta = Some(meta.clone());
        Ok(deleted)
    }
    fn relays(&mut self) -> Result<Vec<RelayRow>, StoreError> {
        Ok(self.relays.values().cloned().collect())
    }
    fn put_relay(&mut self, row: &RelayRow) -> Result<(), StoreError> {
        self.writable()?;
        self.relays.insert(row.conn, row.clone());
        Ok(())
    }
    fn delete_relay(&mut self, conn: u64) -> Result<(), StoreError> {
        self.writable()?;
        self.relays.remove(&conn);
        Ok(())
    }
    fn subscribers(&mut self) -> Result<Vec<SubscriberRow>, StoreError> {
        Ok(self.subscribers.values().cloned().collect())
    }
    fn put_subscriber(&mut self, row: &SubscriberRow) -> Result<(), StoreError> {
        self.writable()?;
        self.subscribers.insert(row.session.clone(), row.clone());
        Ok(())
    }
    fn delete_subscriber(&mut self, session: &str) -> Result<(), StoreError> {
        self.writable()?;
        self.subscribers.remove(session);
        Ok(())
    }
}

impl MemoryStore {
    /// Every outbox row in row order, dead letters included, as (row, body, dead): what a test
    /// reads to check what was recorded.
    pub fn outbox_rows(&self) -> Vec<(u64, String, bool)> {
        self.outbox.iter().map(|(n, (_, body, dead))| (*n, body.clone(), *dead != 0)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::conformance_tests;

    conformance_tests!(MemoryStore::default());
}
