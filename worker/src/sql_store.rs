//! The room's [`Store`] on the Durable Object's SQLite storage. The SQL API is synchronous, so
//! a room event runs start to finish without interleaving; the runtime's output gate holds every
//! message sent after a write until that write is durable.

use roomcast_protocol::compact::CompactJson;
use roomcast_protocol::store::{OutboxCounts, OutboxRow, PendingLeave, RoomMeta, Store, StoreError, StoredMessage, WebhookState};
use serde::Deserialize;
use worker::{SqlStorage, SqlStorageValue};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (k INTEGER PRIMARY KEY CHECK (k = 1), epoch TEXT NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, origin TEXT NOT NULL, user TEXT NOT NULL,
  mid TEXT, data TEXT NOT NULL);
DROP INDEX IF EXISTS messages_by_mid;
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_key ON messages (origin, mid, user) WHERE mid IS NOT NULL;
CREATE INDEX IF NOT EXISTS messages_by_ts ON messages (ts);
CREATE TABLE IF NOT EXISTS pending_leaves (user TEXT PRIMARY KEY, due INTEGER NOT NULL, meta TEXT);
CREATE TABLE IF NOT EXISTS client_ids (cid TEXT PRIMARY KEY, user TEXT NOT NULL, seen INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bans (user TEXT PRIMARY KEY, until INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (n INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, body TEXT NOT NULL, dead INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS outbox_by_state ON outbox (dead, n);
CREATE TABLE IF NOT EXISTS webhook_state (
  k INTEGER PRIMARY KEY CHECK (k = 1), key TEXT NOT NULL, failures INTEGER NOT NULL, next_at INTEGER NOT NULL, last_error TEXT);
CREATE TABLE IF NOT EXISTS webhook_present (user TEXT PRIMARY KEY, meta TEXT);
CREATE TABLE IF NOT EXISTS object_name (k INTEGER PRIMARY KEY CHECK (k = 1), name TEXT NOT NULL);
";

pub struct SqlStore {
    sql: SqlStorage,
    /// Set by every write; the object clears it once it has waited for the write to be durable.
    wrote: bool,
}

fn err(e: worker::Error) -> StoreError {
    StoreError(e.to_string())
}

// SQLite integers arrive as JS numbers; seqs and times stay far below 2^53.
fn int(v: u64) -> SqlStorageValue {
    SqlStorageValue::Integer(v as i64)
}

#[derive(Deserialize)]
struct MetaRow {
    epoch: String,
    seq: f64,
}

#[derive(Deserialize)]
struct MessageRow {
    seq: f64,
    ts: f64,
    origin: String,
    user: String,
    mid: Option<String>,
    data: String,
}

#[derive(Deserialize)]
struct SeqRow {
    seq: Option<f64>,
}

#[derive(Deserialize)]
struct CountRow {
    n: f64,
}

#[derive(Deserialize)]
struct OwnerRow {
    user: String,
    seen: f64,
}

#[derive(Deserialize)]
struct UntilRow {
    until: f64,
}

#[derive(Deserialize)]
struct LeaveRow {
    user: String,
    due: f64,
    meta: Option<String>,
}

#[derive(Deserialize)]
struct OutboxSizeRow {
    n: f64,
    b: f64,
}

#[derive(Deserialize)]
struct OutboxFullRow {
    n: f64,
    ts: f64,
    body: String,
}

#[derive(Deserialize)]
struct CountsRow {
    pending: f64,
    dead: f64,
    oldest: Option<f64>,
}

#[derive(Deserialize)]
struct StateRow {
    key: String,
    failures: f64,
    next_at: f64,
    last_error: Option<String>,
}

#[derive(Deserialize)]
struct PresentRow {
    user: String,
    meta: Option<String>,
}

/// A row as a message. Compacted on the way out too: rows written before data was compacted on
/// the way in may hold raw line feeds, which must never reach a frame.
fn stored(r: MessageRow) -> Result<StoredMessage, StoreError> {
    let data = CompactJson::parse_owned(r.data).map_err(|e| StoreError(e.to_string()))?;
    Ok(StoredMessage { seq: r.seq as u64, ts: r.ts as u64, from: r.origin, user: r.user, id: r.mid, data })
}

impl SqlStore {
    pub fn open(sql: SqlStorage) -> Result<SqlStore, StoreError> {
        sql.exec(SCHEMA, None).map_err(err)?;
        Ok(SqlStore { sql, wrote: true })
    }

    /// Whether anything was written since the last call.
    pub fn take_wrote(&mut self) -> bool {
        std::mem::take(&mut self.wrote)
    }

    /// The room's name: `seen` (the object's `id.name`, when the runtime gives it), kept for the
    /// events that come without it (an alarm that starts the object knows no name), else the one
    /// kept before. Without it, such an instance would record no webhook events and check no
    /// refresh frame.
    pub fn room_name(&mut self, seen: Option<String>) -> Result<Option<String>, StoreError> {
        #[derive(Deserialize)]
        struct NameRow {
            name: String,
        }
        let kept = self.rows::<NameRow>("SELECT name FROM object_name WHERE k = 1", vec![])?.pop().map(|r| r.name);
        match seen {
            Some(name) if kept.as_deref() != Some(name.as_str()) => {
                self.run("INSERT OR REPLACE INTO object_name (k, name) VALUES (1, ?)", vec![name.as_str().into()])?;
                Ok(Some(name))
            }
            Some(name) => Ok(Some(name)),
            None => Ok(kept),
        }
    }

    fn rows<T: for<'de> Deserialize<'de>>(&self, query: &str, args: Vec<SqlStorageValue>) -> Result<Vec<T>, StoreError> {
        self.sql.exec(query, Some(args)).map_err(err)?.to_array::<T>().map_err(err)
    }

    fn count_of(&self, query: &str, args: Vec<SqlStorageValue>) -> Result<u64, StoreError> {
        Ok(self.rows::<CountRow>(query, args)?.pop().map_or(0, |r| r.n as u64))
    }

    fn run(&mut self, query: &str, args: Vec<SqlStorageValue>) -> Result<(), StoreError> {
        self.wrote = true;
        self.sql.exec(query, Some(args)).map(|_| ()).map_err(err)
    }
}

impl Store for SqlStore {
    fn meta(&mut self) -> Result<Option<RoomMeta>, StoreError> {
        let Some(meta) = self.rows::<MetaRow>("SELECT epoch, seq FROM meta WHERE k = 1", vec![])?.pop() else {
            return Ok(None);
        };
        // `meta.seq` is written when history is trimmed; the newest row holds it otherwise.
        let last = self.rows::<SeqRow>("SELECT MAX(seq) AS seq FROM messages", vec![])?.pop().and_then(|r| r.seq);
        Ok(Some(RoomMeta { epoch: meta.epoch, seq: (meta.seq as u64).max(last.unwrap_or(0.0) as u64) }))
    }

    fn create(&mut self, meta: &RoomMeta) -> Result<(), StoreError> {
        self.run("INSERT INTO meta (k, epoch, seq) VALUES (1, ?, ?)", vec![meta.epoch.as_str().into(), int(meta.seq)])
    }

    fn append(&mut self, m: &StoredMessage) -> Result<(), StoreError> {
        self.run(
            "INSERT INTO messages (seq, ts, origin, user, mid, data) VALUES (?, ?, ?, ?, ?, ?)",
            vec![int(m.seq), int(m.ts), m.from.as_str().into(), m.user.as_str().into(), m.id.as_deref().into(), m.data.get().into()],
        )
    }

    /// One statement for a new message (the unique index on (origin, mid, user) refuses a
    /// retry's copy), and a lookup only when it was one.
    fn append_new(&mut self, m: &StoredMessage) -> Result<Option<u64>, StoreError> {
        self.wrote = true;
        let cursor = self
            .sql
            .exec(
                "INSERT INTO messages (seq, ts, origin, user, mid, data) VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (origin, mid, user) WHERE mid IS NOT NULL DO NOTHING",
                Some(vec![
                    int(m.seq),
                    int(m.ts),
                    m.from.as_str().into(),
                    m.user.as_str().into(),
                    m.id.as_deref().into(),
                    m.data.get().into(),
                ]),
            )
            .map_err(err)?;
        if cursor.rows_written() > 0 {
            return Ok(None);
        }
        match m.id.as_deref() {
            Some(id) => match self.find(&m.user, &m.from, id)? {
                Some(seq) => Ok(Some(seq)),
                None => Err(StoreError("message was not stored".into())),
            },
            None => Err(StoreError("message was not stored".into())),
        }
    }

    fn find(&mut self, user: &str, from: &str, id: &str) -> Result<Option<u64>, StoreError> {
        let rows = self.rows::<SeqRow>(
            "SELECT seq FROM messages WHERE origin = ? AND mid = ? AND user = ? LIMIT 1",
            vec![from.into(), id.into(), user.into()],
        )?;
        Ok(rows.into_iter().next().and_then(|r| r.seq).map(|s| s as u64))
    }

    fn after(&mut self, after: u64, limit: usize, max_bytes: usize) -> Result<Vec<StoredMessage>, StoreError> {
        // The byte cut is made by SQLite (a running sum of each row's bytes), so rows past it are
        // never loaded: a page of large messages cannot take the room's memory.
        let rows = self.rows::<MessageRow>(
            "SELECT seq, ts, origin, user, mid, data FROM (
               SELECT seq, ts, origin, user, mid, data, length(CAST(data AS BLOB)) AS n,
                 SUM(length(CAST(data AS BLOB))) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS total
               FROM messages WHERE seq > ? ORDER BY seq LIMIT ?)
             WHERE total - n < ? ORDER BY seq",
            // SQLite integers are signed: a `since` at or above 2^63 would wrap to a negative number
            // and return everything, so it is clamped (no seq gets anywhere near it).
            vec![int(after.min(i64::MAX as u64)), int(limit.min(i64::MAX as usize) as u64), int(max_bytes as u64)],
        )?;
        rows.into_iter().map(stored).collect()
    }

    fn before(&mut self, before: u64, limit: usize, max_bytes: usize) -> Result<Vec<StoredMessage>, StoreError> {
        let rows = self.rows::<MessageRow>(
            "SELECT seq, ts, origin, user, mid, data FROM (
               SELECT seq, ts, origin, user, mid, data, length(CAST(data AS BLOB)) AS n,
                 SUM(length(CAST(data AS BLOB))) OVER (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING) AS total
               FROM messages WHERE seq < ? ORDER BY seq DESC LIMIT ?)
             WHERE total - n < ? ORDER BY seq",
            vec![int(before.min(i64::MAX as u64)), int(limit.min(i64::MAX as usize) as u64), int(max_bytes as u64)],
        )?;
        rows.into_iter().map(stored).collect()
    }

    fn oldest(&mut self) -> Result<Option<u64>, StoreError> {
        Ok(self.rows::<SeqRow>("SELECT MIN(seq) AS seq FROM messages", vec![])?.pop().and_then(|r| r.seq).map(|s| s as u64))
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        Ok(self.rows::<CountRow>("SELECT COUNT(*) AS n FROM messages", vec![])?.pop().map_or(0, |r| r.n as u64))
    }

    fn trim(&mut self, through_seq: u64, before_ts: u64, last_seq: u64) -> Result<(), StoreError> {
        self.run("UPDATE meta SET seq = MAX(seq, ?) WHERE k = 1", vec![int(last_seq)])?;
        self.run("DELETE FROM messages WHERE seq <= ? OR ts < ?", vec![int(through_seq), int(before_ts)])
    }

    fn pending_leaves(&mut self) -> Result<Vec<PendingLeave>, StoreError> {
        let rows = self.rows::<LeaveRow>("SELECT user, due, meta FROM pending_leaves", vec![])?;
        Ok(rows.into_iter().map(|r| PendingLeave { user: r.user, due: r.due as u64, meta: r.meta }).collect())
    }

    fn put_pending_leave(&mut self, leave: &PendingLeave) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO pending_leaves (user, due, meta) VALUES (?, ?, ?)",
            vec![leave.user.as_str().into(), int(leave.due), leave.meta.as_deref().into()],
        )
    }

    fn delete_pending_leave(&mut self, user: &str) -> Result<(), StoreError> {
        self.run("DELETE FROM pending_leaves WHERE user = ?", vec![user.into()])
    }

    fn client_owner(&mut self, cid: &str) -> Result<Option<(String, u64)>, StoreError> {
        let row = self.rows::<OwnerRow>("SELECT user, seen FROM client_ids WHERE cid = ?", vec![cid.into()])?.pop();
        Ok(row.map(|r| (r.user, r.seen as u64)))
    }

    fn bind_client(&mut self, cid: &str, user: &str, now: u64) -> Result<(), StoreError> {
        self.run("INSERT OR REPLACE INTO client_ids (cid, user, seen) VALUES (?, ?, ?)", vec![cid.into(), user.into(), int(now)])
    }

    fn forget_clients(&mut self, before: u64) -> Result<(), StoreError> {
        self.run("DELETE FROM client_ids WHERE seen < ?", vec![int(before)])
    }

    fn ban(&mut self, user: &str, until: u64) -> Result<(), StoreError> {
        self.run("INSERT OR REPLACE INTO bans (user, until) VALUES (?, ?)", vec![user.into(), int(until)])
    }

    fn banned_until(&mut self, user: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.rows::<UntilRow>("SELECT until FROM bans WHERE user = ?", vec![user.into()])?.pop().map(|r| r.until as u64))
    }

    fn forget_bans(&mut self, now: u64) -> Result<(), StoreError> {
        self.run("DELETE FROM bans WHERE until <= ?", vec![int(now)])
    }

    fn outbox_push(&mut self, ts: u64, body: &str) -> Result<(), StoreError> {
        self.run("INSERT INTO outbox (ts, body) VALUES (?, ?)", vec![int(ts), body.into()])
    }

    /// Two reads, so a backlog never loads more than one batch: the sizes of the first `limit`
    /// rows (numbers only), then the bodies of the rows within `max_bytes`.
    fn outbox_take(&mut self, limit: usize, max_bytes: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let sizes = self.rows::<OutboxSizeRow>(
            "SELECT n, length(CAST(body AS BLOB)) AS b FROM outbox WHERE dead = 0 ORDER BY n LIMIT ?",
            vec![int(limit.min(i64::MAX as usize) as u64)],
        )?;
        let (mut total, mut count, mut last) = (0u64, 0u64, None);
        for row in sizes {
            if count > 0 && total >= max_bytes as u64 {
                break;
            }
            total = total.saturating_add(row.b as u64);
            count += 1;
            last = Some(row.n as u64);
        }
        let Some(last) = last else { return Ok(Vec::new()) };
        let rows = self.rows::<OutboxFullRow>(
            "SELECT n, ts, body FROM outbox WHERE dead = 0 AND n <= ? ORDER BY n LIMIT ?",
            vec![int(last), int(count)],
        )?;
        Ok(rows.into_iter().map(|r| OutboxRow { n: r.n as u64, ts: r.ts as u64, body: r.body }).collect())
    }

    fn outbox_any_pending(&mut self) -> Result<bool, StoreError> {
        Ok(!self.rows::<SeqRow>("SELECT n AS seq FROM outbox WHERE dead = 0 LIMIT 1", vec![])?.is_empty())
    }

    fn outbox_delete(&mut self, rows: &[u64]) -> Result<(), StoreError> {
        // One bound parameter whatever the batch size (the platform allows 100 per statement).
        let list = serde_json::to_string(rows).map_err(|e| StoreError(e.to_string()))?;
        self.run("DELETE FROM outbox WHERE n IN (SELECT value FROM json_each(?))", vec![list.into()])
    }

    // Counted before they change: the platform's `rowsWritten` counts index writes too.
    fn outbox_mark_dead(&mut self, before_ts: u64) -> Result<u64, StoreError> {
        let n = self.count_of("SELECT COUNT(*) AS n FROM outbox WHERE dead = 0 AND ts < ?", vec![int(before_ts)])?;
        if n > 0 {
            self.run("UPDATE outbox SET dead = 1 WHERE dead = 0 AND ts < ?", vec![int(before_ts)])?;
        }
        Ok(n)
    }

    fn outbox_requeue(&mut self, now: u64) -> Result<u64, StoreError> {
        let n = self.count_of("SELECT COUNT(*) AS n FROM outbox WHERE dead = 1", vec![])?;
        if n > 0 {
            self.run("UPDATE outbox SET dead = 0, ts = ? WHERE dead = 1", vec![int(now)])?;
        }
        Ok(n)
    }

    fn outbox_counts(&mut self) -> Result<OutboxCounts, StoreError> {
        let row = self
            .rows::<CountsRow>(
                "SELECT COALESCE(SUM(dead = 0), 0) AS pending, COALESCE(SUM(dead = 1), 0) AS dead, \
                 MIN(CASE WHEN dead = 0 THEN ts END) AS oldest FROM outbox",
                vec![],
            )?
            .pop();
        Ok(row.map_or_else(OutboxCounts::default, |r| OutboxCounts {
            pending: r.pending as u64,
            dead: r.dead as u64,
            oldest_pending: r.oldest.map(|t| t as u64),
        }))
    }

    fn webhook_state(&mut self) -> Result<Option<WebhookState>, StoreError> {
        let row = self.rows::<StateRow>("SELECT key, failures, next_at, last_error FROM webhook_state WHERE k = 1", vec![])?.pop();
        Ok(row.map(|r| WebhookState { key: r.key, failures: r.failures as u32, next_at: r.next_at as u64, last_error: r.last_error }))
    }

    fn put_webhook_state(&mut self, s: &WebhookState) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO webhook_state (k, key, failures, next_at, last_error) VALUES (1, ?, ?, ?, ?)",
            vec![s.key.as_str().into(), int(u64::from(s.failures)), int(s.next_at), s.last_error.as_deref().into()],
        )
    }

    fn present_users(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        Ok(self.rows::<PresentRow>("SELECT user, meta FROM webhook_present", vec![])?.into_iter().map(|r| (r.user, r.meta)).collect())
    }

    fn put_present(&mut self, user: &str, meta: Option<&str>) -> Result<(), StoreError> {
        self.run("INSERT OR REPLACE INTO webhook_present (user, meta) VALUES (?, ?)", vec![user.into(), meta.into()])
    }

    fn delete_present(&mut self, user: &str) -> Result<(), StoreError> {
        self.run("DELETE FROM webhook_present WHERE user = ?", vec![user.into()])
    }

    fn reset(&mut self, meta: &RoomMeta) -> Result<u64, StoreError> {
        let deleted = self.count()?;
        self.run("DELETE FROM messages", vec![])?;
        self.run("INSERT OR REPLACE INTO meta (k, epoch, seq) VALUES (1, ?, ?)", vec![meta.epoch.as_str().into(), int(meta.seq)])?;
        Ok(deleted)
    }
}
