//! The [`Store`] on SQLite: the schema, every statement, and the reading of rows, generic over
//! a tiny executor port ([`SqlExec`]: run a statement with bound values, get rows of values). The
//! Worker implements the port over the Durable Object's `SqlStorage` (`worker/src/sql_store.rs`);
//! the conformance tests implement it over `rusqlite`, so the statements the Worker runs are the
//! ones tested natively.
//!
//! What an executor must do, whatever its SQLite:
//! - bind [`Param`]s to the statement's `?`s in order;
//! - give every column back as a [`Value`]: an integer as [`Value::Int`], even where its platform
//!   carries numbers as doubles (every integer this store binds is at most [`MAX_INT`], so a
//!   JavaScript number holds it exactly), text as [`Value::Text`], NULL as [`Value::Null`];
//! - for a write, report whether it wrote anything (zero or not: the Durable Object counts
//!   index entries too, so the number means nothing more).
//!
//! Integers the store is given above [`MAX_INT`] are stored as [`MAX_INT`] (the order of times
//! and seqs is kept; no seq or time in milliseconds gets near it).

use super::{
    OutboxCounts, OutboxRow, OutboxSize, PendingLeave, RelayRow, RoomMeta, Store, StoreError, StoredMessage, SubscriberRow, WebhookState,
};
use crate::compact::CompactJson;

/// The tables, made if missing every time a store is opened. `outbox.dead`: 0 pending; 1 a dead
/// letter for its age; otherwise the HTTP status with which the receiver refused the event
/// ([`Store::outbox_refuse`]), also a dead letter. `outbox.ts`: when a pending event was queued,
/// when a dead letter was set aside. An event's bytes are `octet_length(body)`, which SQLite
/// reads from the row's header without loading the body.
pub const SCHEMA: &str = "
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
CREATE TABLE IF NOT EXISTS relays (conn INTEGER PRIMARY KEY, session TEXT NOT NULL, device INTEGER NOT NULL, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS subscribers (session TEXT PRIMARY KEY, epoch TEXT NOT NULL, seq INTEGER NOT NULL, extras INTEGER NOT NULL);
";

/// The largest integer the store binds: 2^53 − 1, the largest a JavaScript number holds exactly.
pub const MAX_INT: u64 = (1 << 53) - 1;

/// A value bound to a statement's `?`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

/// A column of a row, as the executor read it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    /// A number that is not a whole one. No column of this schema holds one; it is an error
    /// wherever an integer is expected.
    Real(f64),
    Text(String),
}

impl Value {
    /// What kind of value this is, for errors. Not `Debug`: that would print a `Real`, and
    /// formatting a float costs the Worker's wasm ~15 KB (bench/README.md, "Worker size").
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real number",
            Value::Text(_) => "text",
        }
    }
}

/// Runs SQL: the port [`SqlStore`] is written against. Synchronous, like the Durable Object's
/// SQL API, so an event's statements run without interleaving.
pub trait SqlExec {
    /// Runs several statements with no bound values (the schema).
    fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError>;
    /// Runs one statement that returns no rows; returns whether it wrote any (see the module).
    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<bool, StoreError>;
    /// Runs one query; returns its rows, each with its columns in the order selected.
    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Vec<Value>>, StoreError>;
}

/// The [`Store`] on SQLite, through an executor.
#[derive(Debug)]
pub struct SqlStore<E> {
    sql: E,
    /// Set by every write; the adapter clears it once it has waited for the write to be durable.
    wrote: bool,
}

/// An integer parameter, at most [`MAX_INT`].
fn int(v: u64) -> Param<'static> {
    Param::Int(v.min(MAX_INT) as i64)
}

fn text(v: &str) -> Param<'_> {
    Param::Text(v)
}

fn opt_text(v: Option<&str>) -> Param<'_> {
    v.map_or(Param::Null, Param::Text)
}

/// A row's columns, read in the order selected.
struct Cols(std::vec::IntoIter<Value>);

impl Cols {
    fn new(row: Vec<Value>) -> Cols {
        Cols(row.into_iter())
    }

    fn next(&mut self) -> Result<Value, StoreError> {
        self.0.next().ok_or_else(|| StoreError("a row has fewer columns than the query selects".into()))
    }

    fn opt_int(&mut self) -> Result<Option<u64>, StoreError> {
        match self.next()? {
            Value::Null => Ok(None),
            Value::Int(i) => u64::try_from(i).map(Some).map_err(|_| StoreError(format!("a negative number ({i}) where none is stored"))),
            other => Err(StoreError(format!("expected an integer, read {}", other.kind()))),
        }
    }

    fn int(&mut self) -> Result<u64, StoreError> {
        self.opt_int()?.ok_or_else(|| StoreError("expected an integer, read NULL".into()))
    }

    fn opt_text(&mut self) -> Result<Option<String>, StoreError> {
        match self.next()? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s)),
            other => Err(StoreError(format!("expected text, read {}", other.kind()))),
        }
    }

    fn text(&mut self) -> Result<String, StoreError> {
        self.opt_text()?.ok_or_else(|| StoreError("expected text, read NULL".into()))
    }
}

/// A `messages` row (seq, ts, origin, user, mid, data) as a message. Compacted on the way out
/// too: rows written before data was compacted on the way in may hold raw line feeds, which must
/// never reach a frame; and a value stored before the JSON rules (compact.rs) that breaks them
/// comes back as `null`, so one old row cannot fail every history read.
fn message(row: Vec<Value>) -> Result<StoredMessage, StoreError> {
    let mut c = Cols::new(row);
    let (seq, ts, from, user, id) = (c.int()?, c.int()?, c.text()?, c.text()?, c.opt_text()?);
    let data = CompactJson::from_stored(c.text()?).map_err(|e| StoreError(e.to_string()))?;
    Ok(StoredMessage { seq, ts, from, user, id, data })
}

impl<E: SqlExec> SqlStore<E> {
    /// Makes the tables that are missing. `exec` is the executor, or what converts into one (the
    /// Worker passes its `SqlStorage`).
    pub fn open(exec: impl Into<E>) -> Result<SqlStore<E>, StoreError> {
        let mut sql = exec.into();
        sql.execute_batch(SCHEMA)?;
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
        let kept = match self.query("SELECT name FROM object_name WHERE k = 1", &[])?.pop() {
            Some(row) => Some(Cols::new(row).text()?),
            None => None,
        };
        match seen {
            Some(name) if kept.as_deref() != Some(name.as_str()) => {
                self.run("INSERT OR REPLACE INTO object_name (k, name) VALUES (1, ?)", &[text(&name)])?;
                Ok(Some(name))
            }
            Some(name) => Ok(Some(name)),
            None => Ok(kept),
        }
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Vec<Value>>, StoreError> {
        self.sql.query(sql, params)
    }

    /// The one integer of a one-row query (`COUNT`, `MIN`, `MAX`), if not NULL.
    fn number(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Option<u64>, StoreError> {
        match self.query(sql, params)?.pop() {
            Some(row) => Cols::new(row).opt_int(),
            None => Ok(None),
        }
    }

    /// The (count, byte sum) of a one-row query as an [`OutboxSize`] (a NULL sum is 0).
    fn size(&mut self, sql: &str, params: &[Param<'_>]) -> Result<OutboxSize, StoreError> {
        let Some(row) = self.query(sql, params)?.pop() else { return Ok(OutboxSize::ZERO) };
        let mut c = Cols::new(row);
        Ok(OutboxSize { events: c.int()?, bytes: c.opt_int()?.unwrap_or(0) })
    }

    fn run(&mut self, sql: &str, params: &[Param<'_>]) -> Result<bool, StoreError> {
        self.wrote = true;
        self.sql.execute(sql, params)
    }

    fn messages(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<StoredMessage>, StoreError> {
        self.query(sql, params)?.into_iter().map(message).collect()
    }
}

impl<E: SqlExec> Store for SqlStore<E> {
    fn meta(&mut self) -> Result<Option<RoomMeta>, StoreError> {
        let Some(row) = self.query("SELECT epoch, seq FROM meta WHERE k = 1", &[])?.pop() else {
            return Ok(None);
        };
        let mut c = Cols::new(row);
        let (epoch, seq) = (c.text()?, c.int()?);
        // `meta.seq` is written when history is trimmed; the newest row holds it otherwise.
        let last = self.number("SELECT MAX(seq) FROM messages", &[])?;
        Ok(Some(RoomMeta { epoch, seq: seq.max(last.unwrap_or(0)) }))
    }

    fn create(&mut self, meta: &RoomMeta) -> Result<(), StoreError> {
        self.run("INSERT INTO meta (k, epoch, seq) VALUES (1, ?, ?)", &[text(&meta.epoch), int(meta.seq)]).map(drop)
    }

    fn append(&mut self, m: &StoredMessage) -> Result<(), StoreError> {
        self.run(
            "INSERT INTO messages (seq, ts, origin, user, mid, data) VALUES (?, ?, ?, ?, ?, ?)",
            &[int(m.seq), int(m.ts), text(&m.from), text(&m.user), opt_text(m.id.as_deref()), text(m.data.get())],
        )
        .map(drop)
    }

    /// One statement for a new message (the unique index on (origin, mid, user) refuses a
    /// retry's copy), and a lookup only when it was one.
    fn append_new(&mut self, m: &StoredMessage) -> Result<Option<u64>, StoreError> {
        let wrote = self.run(
            "INSERT INTO messages (seq, ts, origin, user, mid, data) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (origin, mid, user) WHERE mid IS NOT NULL DO NOTHING",
            &[int(m.seq), int(m.ts), text(&m.from), text(&m.user), opt_text(m.id.as_deref()), text(m.data.get())],
        )?;
        if wrote {
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
        self.number("SELECT seq FROM messages WHERE origin = ? AND mid = ? AND user = ? LIMIT 1", &[text(from), text(id), text(user)])
    }

    fn after(&mut self, after: u64, limit: usize, max_bytes: usize) -> Result<Vec<StoredMessage>, StoreError> {
        // The byte cut is made by SQLite (a running sum of each row's bytes), so rows past it are
        // never loaded: a page of large messages cannot take the room's memory. A `max_bytes` of
        // at least 1 lets the first row through (no data is empty: it is JSON).
        self.messages(
            "SELECT seq, ts, origin, user, mid, data FROM (
               SELECT seq, ts, origin, user, mid, data, length(CAST(data AS BLOB)) AS n,
                 SUM(length(CAST(data AS BLOB))) OVER (ORDER BY seq ROWS UNBOUNDED PRECEDING) AS total
               FROM messages WHERE seq > ? ORDER BY seq LIMIT ?)
             WHERE total - n < ? ORDER BY seq",
            &[int(after), int(limit as u64), int(max_bytes.max(1) as u64)],
        )
    }

    fn before(&mut self, before: u64, limit: usize, max_bytes: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.messages(
            "SELECT seq, ts, origin, user, mid, data FROM (
               SELECT seq, ts, origin, user, mid, data, length(CAST(data AS BLOB)) AS n,
                 SUM(length(CAST(data AS BLOB))) OVER (ORDER BY seq DESC ROWS UNBOUNDED PRECEDING) AS total
               FROM messages WHERE seq < ? ORDER BY seq DESC LIMIT ?)
             WHERE total - n < ? ORDER BY seq",
            &[int(before), int(limit as u64), int(max_bytes.max(1) as u64)],
        )
    }

    fn oldest(&mut self) -> Result<Option<u64>, StoreError> {
        self.number("SELECT MIN(seq) FROM messages", &[])
    }

    fn count(&mut self) -> Result<u64, StoreError> {
        Ok(self.number("SELECT COUNT(*) FROM messages", &[])?.unwrap_or(0))
    }

    fn trim(&mut self, through_seq: u64, before_ts: u64, last_seq: u64) -> Result<(), StoreError> {
        self.run("UPDATE meta SET seq = MAX(seq, ?) WHERE k = 1", &[int(last_seq)])?;
        self.run("DELETE FROM messages WHERE seq <= ? OR ts < ?", &[int(through_seq), int(before_ts)]).map(drop)
    }

    fn pending_leaves(&mut self) -> Result<Vec<PendingLeave>, StoreError> {
        let rows = self.query("SELECT user, due, meta FROM pending_leaves ORDER BY user", &[])?;
        rows.into_iter()
            .map(|row| {
                let mut c = Cols::new(row);
                Ok(PendingLeave { user: c.text()?, due: c.int()?, meta: c.opt_text()? })
            })
            .collect()
    }

    fn put_pending_leave(&mut self, leave: &PendingLeave) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO pending_leaves (user, due, meta) VALUES (?, ?, ?)",
            &[text(&leave.user), int(leave.due), opt_text(leave.meta.as_deref())],
        )
        .map(drop)
    }

    fn delete_pending_leave(&mut self, user: &str) -> Result<(), StoreError> {
        self.run("DELETE FROM pending_leaves WHERE user = ?", &[text(user)]).map(drop)
    }

    fn client_owner(&mut self, cid: &str) -> Result<Option<(String, u64)>, StoreError> {
        let Some(row) = self.query("SELECT user, seen FROM client_ids WHERE cid = ?", &[text(cid)])?.pop() else {
            return Ok(None);
        };
        let mut c = Cols::new(row);
        Ok(Some((c.text()?, c.int()?)))
    }

    fn bind_client(&mut self, cid: &str, user: &str, now: u64) -> Result<(), StoreError> {
        self.run("INSERT OR REPLACE INTO client_ids (cid, user, seen) VALUES (?, ?, ?)", &[text(cid), text(user), int(now)]).map(drop)
    }

    fn forget_clients(&mut self, before: u64) -> Result<(), StoreError> {
        self.run("DELETE FROM client_ids WHERE seen < ?", &[int(before)]).map(drop)
    }

    fn ban(&mut self, user: &str, until: u64) -> Result<(), StoreError> {
        self.run("INSERT OR REPLACE INTO bans (user, until) VALUES (?, ?)", &[text(user), int(until)]).map(drop)
    }

    fn banned_until(&mut self, user: &str) -> Result<Option<u64>, StoreError> {
        self.number("SELECT until FROM bans WHERE user = ?", &[text(user)])
    }

    fn forget_bans(&mut self, now: u64) -> Result<(), StoreError> {
        self.run("DELETE FROM bans WHERE until <= ?", &[int(now)]).map(drop)
    }

    fn outbox_push(&mut self, ts: u64, body: &str) -> Result<(), StoreError> {
        self.run("INSERT INTO outbox (ts, body) VALUES (?, ?)", &[int(ts), text(body)]).map(drop)
    }

    /// Two reads, so a backlog never loads more than one batch: the sizes of the first `limit`
    /// rows (numbers only, not the bodies), then the bodies of the rows within `max_bytes`.
    fn outbox_take(&mut self, limit: usize, max_bytes: usize) -> Result<Vec<OutboxRow>, StoreError> {
        let sizes = self.query("SELECT n, octet_length(body) FROM outbox WHERE dead = 0 ORDER BY n LIMIT ?", &[int(limit as u64)])?;
        let (mut total, mut count, mut last) = (0u64, 0u64, None);
        for row in sizes {
            if count > 0 && total >= max_bytes as u64 {
                break;
            }
            let mut c = Cols::new(row);
            let (n, bytes) = (c.int()?, c.int()?);
            total = total.saturating_add(bytes);
            count += 1;
            last = Some(n);
        }
        let Some(last) = last else { return Ok(Vec::new()) };
        let rows = self.query("SELECT n, ts, body FROM outbox WHERE dead = 0 AND n <= ? ORDER BY n LIMIT ?", &[int(last), int(count)])?;
        rows.into_iter()
            .map(|row| {
                let mut c = Cols::new(row);
                Ok(OutboxRow { n: c.int()?, ts: c.int()?, body: c.text()? })
            })
            .collect()
    }

    fn outbox_any_pending(&mut self) -> Result<bool, StoreError> {
        Ok(!self.query("SELECT n FROM outbox WHERE dead = 0 LIMIT 1", &[])?.is_empty())
    }

    // Each change is measured before it is made (the platform's `rowsWritten` counts index
    // writes too, and the bytes are needed anyway), and made only when there is one.
    fn outbox_delete(&mut self, rows: &[u64]) -> Result<OutboxSize, StoreError> {
        // One bound parameter whatever the batch size (the platform allows 100 per statement).
        let list = serde_json::to_string(rows).map_err(|e| StoreError(e.to_string()))?;
        let gone = self.size(
            "SELECT COUNT(*), SUM(octet_length(body)) FROM outbox WHERE dead = 0 AND n IN (SELECT value FROM json_each(?))",
            &[text(&list)],
        )?;
        if gone.events > 0 {
            self.run("DELETE FROM outbox WHERE dead = 0 AND n IN (SELECT value FROM json_each(?))", &[text(&list)])?;
        }
        Ok(gone)
    }

    fn outbox_mark_dead(&mut self, before_ts: u64, now: u64) -> Result<OutboxSize, StoreError> {
        let moved = self.size("SELECT COUNT(*), SUM(octet_length(body)) FROM outbox WHERE dead = 0 AND ts < ?", &[int(before_ts)])?;
        if moved.events > 0 {
            self.run("UPDATE outbox SET dead = 1, ts = ? WHERE dead = 0 AND ts < ?", &[int(now), int(before_ts)])?;
        }
        Ok(moved)
    }

    fn outbox_refuse(&mut self, n: u64, status: u16, now: u64) -> Result<OutboxSize, StoreError> {
        let moved = self.size("SELECT COUNT(*), SUM(octet_length(body)) FROM outbox WHERE n = ? AND dead = 0", &[int(n)])?;
        if moved.events > 0 {
            self.run("UPDATE outbox SET dead = ?, ts = ? WHERE n = ? AND dead = 0", &[int(u64::from(status.max(2))), int(now), int(n)])?;
        }
        Ok(moved)
    }

    fn outbox_requeue(&mut self, now: u64) -> Result<OutboxSize, StoreError> {
        let moved = self.size("SELECT COUNT(*), SUM(octet_length(body)) FROM outbox WHERE dead <> 0", &[])?;
        if moved.events > 0 {
            self.run("UPDATE outbox SET dead = 0, ts = ? WHERE dead <> 0", &[int(now)])?;
        }
        Ok(moved)
    }

    fn outbox_expire(&mut self, before_ts: u64) -> Result<OutboxSize, StoreError> {
        let gone = self.size("SELECT COUNT(*), SUM(octet_length(body)) FROM outbox WHERE dead <> 0 AND ts < ?", &[int(before_ts)])?;
        if gone.events > 0 {
            self.run("DELETE FROM outbox WHERE dead <> 0 AND ts < ?", &[int(before_ts)])?;
        }
        Ok(gone)
    }

    /// One read finds the last dead letter to delete (the first whose running totals, in the
    /// order they were set aside, reach `need`), one statement deletes it and those before it.
    fn outbox_evict(&mut self, need: OutboxSize) -> Result<OutboxSize, StoreError> {
        if need == OutboxSize::ZERO {
            return Ok(OutboxSize::ZERO);
        }
        let cut = self
            .query(
                "SELECT ts, n, k, total FROM (
                   SELECT ts, n, ROW_NUMBER() OVER w AS k, SUM(octet_length(body)) OVER w AS total
                   FROM outbox WHERE dead <> 0 WINDOW w AS (ORDER BY ts, n ROWS UNBOUNDED PRECEDING))
                 WHERE k >= ? AND total >= ? ORDER BY ts, n LIMIT 1",
                &[int(need.events), int(need.bytes)],
            )?
            .pop();
        let Some(cut) = cut else {
            // Not enough dead letters for `need`: all of them go.
            let gone = self.size("SELECT COUNT(*), SUM(octet_length(body)) FROM outbox WHERE dead <> 0", &[])?;
            if gone.events > 0 {
                self.run("DELETE FROM outbox WHERE dead <> 0", &[])?;
            }
            return Ok(gone);
        };
        let mut c = Cols::new(cut);
        let (ts, n, events, bytes) = (c.int()?, c.int()?, c.int()?, c.int()?);
        self.run("DELETE FROM outbox WHERE dead <> 0 AND (ts < ? OR (ts = ? AND n <= ?))", &[int(ts), int(ts), int(n)])?;
        Ok(OutboxSize { events, bytes })
    }

    fn outbox_oldest_dead(&mut self) -> Result<Option<u64>, StoreError> {
        self.number("SELECT MIN(ts) FROM outbox WHERE dead <> 0", &[])
    }

    fn outbox_counts(&mut self) -> Result<OutboxCounts, StoreError> {
        let row = self
            .query(
                "SELECT COALESCE(SUM(dead = 0), 0), COALESCE(SUM(dead <> 0), 0), MIN(CASE WHEN dead = 0 THEN ts END), \
                 COALESCE(SUM(dead > 1), 0), MAX(CASE WHEN dead > 1 THEN n END), \
                 (SELECT dead FROM outbox WHERE dead > 1 ORDER BY n DESC LIMIT 1), \
                 COALESCE(SUM(CASE WHEN dead = 0 THEN octet_length(body) END), 0), \
                 COALESCE(SUM(CASE WHEN dead <> 0 THEN octet_length(body) END), 0), MIN(CASE WHEN dead <> 0 THEN ts END) FROM outbox",
                &[],
            )?
            .pop();
        let Some(row) = row else { return Ok(OutboxCounts::default()) };
        let mut c = Cols::new(row);
        let (pending, dead, oldest_pending, refused) = (c.int()?, c.int()?, c.opt_int()?, c.int()?);
        let (last, status) = (c.opt_int()?, c.opt_int()?);
        let last_refused = last.zip(status).map(|(n, status)| (n, u16::try_from(status).unwrap_or(u16::MAX)));
        let (pending_bytes, dead_bytes, oldest_dead) = (c.int()?, c.int()?, c.opt_int()?);
        Ok(OutboxCounts { pending, dead, oldest_pending, refused, last_refused, pending_bytes, dead_bytes, oldest_dead })
    }

    fn webhook_state(&mut self) -> Result<Option<WebhookState>, StoreError> {
        let Some(row) = self.query("SELECT key, failures, next_at, last_error FROM webhook_state WHERE k = 1", &[])?.pop() else {
            return Ok(None);
        };
        let mut c = Cols::new(row);
        let (key, failures, next_at, last_error) = (c.text()?, c.int()?, c.int()?, c.opt_text()?);
        Ok(Some(WebhookState { key, failures: u32::try_from(failures).unwrap_or(u32::MAX), next_at, last_error }))
    }

    fn put_webhook_state(&mut self, s: &WebhookState) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO webhook_state (k, key, failures, next_at, last_error) VALUES (1, ?, ?, ?, ?)",
            &[text(&s.key), int(u64::from(s.failures)), int(s.next_at), opt_text(s.last_error.as_deref())],
        )
        .map(drop)
    }

    fn present_users(&mut self) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = self.query("SELECT user, meta FROM webhook_present ORDER BY user", &[])?;
        rows.into_iter()
            .map(|row| {
                let mut c = Cols::new(row);
                Ok((c.text()?, c.opt_text()?))
            })
            .collect()
    }

    fn put_present(&mut self, user: &str, meta: Option<&str>) -> Result<(), StoreError> {
        self.run("INSERT OR REPLACE INTO webhook_present (user, meta) VALUES (?, ?)", &[text(user), opt_text(meta)]).map(drop)
    }

    fn delete_present(&mut self, user: &str) -> Result<(), StoreError> {
        self.run("DELETE FROM webhook_present WHERE user = ?", &[text(user)]).map(drop)
    }

    fn reset(&mut self, meta: &RoomMeta) -> Result<u64, StoreError> {
        let deleted = self.count()?;
        self.run("DELETE FROM messages", &[])?;
        self.run("INSERT OR REPLACE INTO meta (k, epoch, seq) VALUES (1, ?, ?)", &[text(&meta.epoch), int(meta.seq)])?;
        Ok(deleted)
    }

    fn relays(&mut self) -> Result<Vec<RelayRow>, StoreError> {
        let rows = self.query("SELECT conn, session, device, info FROM relays ORDER BY conn", &[])?;
        rows.into_iter()
            .map(|row| {
                let mut c = Cols::new(row);
                Ok(RelayRow { conn: c.int()?, session: c.text()?, device: c.int()?, info: c.text()? })
            })
            .collect()
    }

    fn put_relay(&mut self, row: &RelayRow) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO relays (conn, session, device, info) VALUES (?, ?, ?, ?)",
            &[int(row.conn), text(&row.session), int(row.device), text(&row.info)],
        )
        .map(drop)
    }

    fn delete_relay(&mut self, conn: u64) -> Result<(), StoreError> {
        self.run("DELETE FROM relays WHERE conn = ?", &[int(conn)]).map(drop)
    }

    fn subscribers(&mut self) -> Result<Vec<SubscriberRow>, StoreError> {
        let rows = self.query("SELECT session, epoch, seq, extras FROM subscribers ORDER BY session", &[])?;
        rows.into_iter()
            .map(|row| {
                let mut c = Cols::new(row);
                Ok(SubscriberRow { session: c.text()?, epoch: c.text()?, seq: c.int()?, extras: c.int()? != 0 })
            })
            .collect()
    }

    fn put_subscriber(&mut self, row: &SubscriberRow) -> Result<(), StoreError> {
        self.run(
            "INSERT OR REPLACE INTO subscribers (session, epoch, seq, extras) VALUES (?, ?, ?, ?)",
            &[text(&row.session), text(&row.epoch), int(row.seq), int(u64::from(row.extras))],
        )
        .map(drop)
    }

    fn delete_subscriber(&mut self, session: &str) -> Result<(), StoreError> {
        self.run("DELETE FROM subscribers WHERE session = ?", &[text(session)]).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::conformance_tests;
    use crate::store::MemoryStore;
    use proptest::prelude::*;
    use rusqlite::types::{Value as Sqlite, ValueRef};

    #[test]
    fn a_column_of_the_wrong_kind_is_named_in_the_error() {
        let read = |v: Value| (Cols::new(vec![v.clone()]).int().err(), Cols::new(vec![v]).text().err());
        let (int, text) = read(Value::Real(1.5));
        assert_eq!(int, Some(StoreError("expected an integer, read a real number".into())));
        assert_eq!(text, Some(StoreError("expected text, read a real number".into())));
        assert_eq!(read(Value::Text("x".into())).0, Some(StoreError("expected an integer, read text".into())));
        assert_eq!(read(Value::Int(7)).1, Some(StoreError("expected text, read an integer".into())));
        assert_eq!(
            read(Value::Null),
            (Some(StoreError("expected an integer, read NULL".into())), Some(StoreError("expected text, read NULL".into())))
        );
    }

    /// The port over `rusqlite` (SQLite built from source): the Worker's statements, run natively.
    struct Rusqlite(rusqlite::Connection);

    impl From<rusqlite::Connection> for Rusqlite {
        fn from(conn: rusqlite::Connection) -> Rusqlite {
            Rusqlite(conn)
        }
    }

    fn err(e: impl std::fmt::Display) -> StoreError {
        StoreError(e.to_string())
    }

    fn bind(params: &[Param<'_>]) -> Vec<Sqlite> {
        params
            .iter()
            .map(|p| match p {
                Param::Null => Sqlite::Null,
                Param::Int(i) => Sqlite::Integer(*i),
                Param::Text(t) => Sqlite::Text((*t).to_owned()),
            })
            .collect()
    }

    impl SqlExec for Rusqlite {
        fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
            self.0.execute_batch(sql).map_err(err)
        }

        fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<bool, StoreError> {
            let mut statement = self.0.prepare_cached(sql).map_err(err)?;
            Ok(statement.execute(rusqlite::params_from_iter(bind(params))).map_err(err)? > 0)
        }

        fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Vec<Value>>, StoreError> {
            let mut statement = self.0.prepare_cached(sql).map_err(err)?;
            let columns = statement.column_count();
            let mut rows = statement.query(rusqlite::params_from_iter(bind(params))).map_err(err)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err)? {
                let mut values = Vec::with_capacity(columns);
                for i in 0..columns {
                    values.push(match row.get_ref(i).map_err(err)? {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(i) => Value::Int(i),
                        ValueRef::Real(f) => Value::Real(f),
                        ValueRef::Text(t) => Value::Text(String::from_utf8(t.to_vec()).map_err(err)?),
                        ValueRef::Blob(_) => return Err(StoreError("no column holds a blob".into())),
                    });
                }
                out.push(values);
            }
            Ok(out)
        }
    }

    fn sqlite() -> SqlStore<Rusqlite> {
        SqlStore::open(rusqlite::Connection::open_in_memory().expect("an in-memory SQLite")).expect("the schema")
    }

    mod conformance {
        use super::*;
        conformance_tests!(sqlite());
    }

    #[test]
    fn the_schema_can_be_applied_again() {
        let mut store = sqlite();
        store.create(&RoomMeta { epoch: "e".into(), seq: 0 }).unwrap();
        store.sql.execute_batch(SCHEMA).unwrap();
        assert_eq!(store.meta().unwrap().map(|m| m.epoch), Some("e".into()));
    }

    #[test]
    fn writes_are_reported_once() {
        let mut store = sqlite();
        assert!(store.take_wrote(), "opening writes the schema");
        assert!(!store.take_wrote());
        store.count().unwrap();
        store.pending_leaves().unwrap();
        assert!(!store.take_wrote(), "reads write nothing");
        store.ban("u", 5).unwrap();
        assert!(store.take_wrote());
        store
            .append_new(&StoredMessage {
                seq: 1,
                ts: 1,
                from: "c".into(),
                user: "u".into(),
                id: None,
                data: CompactJson::parse("1").unwrap(),
            })
            .unwrap();
        assert!(store.take_wrote());
    }

    #[test]
    fn the_room_name_is_kept_for_events_without_one() {
        let mut store = sqlite();
        assert_eq!(store.room_name(None).unwrap(), None);
        assert_eq!(store.room_name(Some("chat:a".into())).unwrap(), Some("chat:a".into()));
        assert_eq!(store.room_name(None).unwrap(), Some("chat:a".into()));
        store.take_wrote();
        assert_eq!(store.room_name(Some("chat:a".into())).unwrap(), Some("chat:a".into()));
        assert!(!store.take_wrote(), "the same name is not written again");
    }

    /// Rows stored before the JSON rules (issue #22) that break them read back as `null`, and
    /// whitespace stored before compaction comes back compact; a row that is not JSON at all is
    /// still an error.
    #[test]
    fn data_stored_before_the_json_rules_reads_back_as_null() {
        let mut store = sqlite();
        store.create(&RoomMeta { epoch: "e".into(), seq: 0 }).unwrap();
        let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        for (seq, data) in [(1, deep.as_str()), (2, r#"{"a":"\ud800"}"#), (3, "1e400"), (4, "{ \"a\" :\n 1 }")] {
            store
                .sql
                .0
                .execute("INSERT INTO messages (seq, ts, origin, user, data) VALUES (?1, 1, 'c', 'u', ?2)", rusqlite::params![seq, data])
                .unwrap();
        }
        let page: Vec<String> = store.after(0, 10, 1 << 20).unwrap().into_iter().map(|m| m.data.get().to_owned()).collect();
        assert_eq!(page, ["null", "null", "null", r#"{"a":1}"#]);
        store.sql.0.execute("INSERT INTO messages (seq, ts, origin, user, data) VALUES (5, 1, 'c', 'u', '{')", []).unwrap();
        assert!(store.after(0, 10, 1 << 20).is_err(), "not JSON at all");
    }

    #[test]
    fn a_column_of_the_wrong_type_is_an_error_not_a_guess() {
        let mut store = sqlite();
        store.sql.0.execute("INSERT INTO bans (user, until) VALUES ('u', 1.5)", []).unwrap();
        store.sql.0.execute("INSERT INTO client_ids (cid, user, seen) VALUES ('c', 'u', -1)", []).unwrap();
        assert!(store.banned_until("u").is_err());
        assert!(store.client_owner("c").is_err());
    }

    /// A call to a store, with arguments from small domains so that calls meet each other's rows.
    #[derive(Debug, Clone)]
    enum Op {
        Meta,
        Create(u8, u64),
        Append(u64, u64, u8, u8, Option<u8>, usize),
        AppendNew(u64, u64, u8, u8, Option<u8>, usize),
        Find(u8, u8, u8),
        After(u64, usize, usize),
        Before(u64, usize, usize),
        Oldest,
        Count,
        Trim(u64, u64, u64),
        PendingLeaves,
        PutLeave(u8, u64, Option<u8>),
        DeleteLeave(u8),
        ClientOwner(u8),
        Bind(u8, u8, u64),
        ForgetClients(u64),
        Ban(u8, u64),
        BannedUntil(u8),
        ForgetBans(u64),
        Push(u64, usize),
        Take(usize, usize),
        AnyPending,
        Delete(Vec<u64>),
        MarkDead(u64, u64),
        Refuse(u64, u16, u64),
        Expire(u64),
        Evict(u64, u64),
        OldestDead,
        Requeue(u64),
        Counts,
        State,
        PutState(u8, u32, u64, Option<u8>),
        Present,
        PutPresent(u8, Option<u8>),
        DeletePresent(u8),
        Reset(u8, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let t = 0u64..40;
        let name = 0u8..3;
        prop_oneof![
            Just(Op::Meta),
            (name.clone(), 0u64..5).prop_map(|(e, s)| Op::Create(e, s)),
            (0u64..15, t.clone(), 0u8..2, 0u8..2, proptest::option::of(0u8..3), 1usize..30)
                .prop_map(|(s, t, f, u, i, b)| Op::Append(s, t, f, u, i, b)),
            (0u64..15, t.clone(), 0u8..2, 0u8..2, proptest::option::of(0u8..3), 1usize..30)
                .prop_map(|(s, t, f, u, i, b)| Op::AppendNew(s, t, f, u, i, b)),
            (0u8..2, 0u8..2, 0u8..3).prop_map(|(u, f, i)| Op::Find(u, f, i)),
            (0u64..16, 0usize..8, 0usize..80).prop_map(|(a, l, b)| Op::After(a, l, b)),
            (0u64..17, 0usize..8, 0usize..80).prop_map(|(a, l, b)| Op::Before(a, l, b)),
            Just(Op::Oldest),
            Just(Op::Count),
            (0u64..15, t.clone(), 0u64..20).prop_map(|(s, b, l)| Op::Trim(s, b, l)),
            Just(Op::PendingLeaves),
            (name.clone(), t.clone(), proptest::option::of(0u8..3)).prop_map(|(u, d, m)| Op::PutLeave(u, d, m)),
            name.clone().prop_map(Op::DeleteLeave),
            name.clone().prop_map(Op::ClientOwner),
            (name.clone(), name.clone(), t.clone()).prop_map(|(c, u, n)| Op::Bind(c, u, n)),
            t.clone().prop_map(Op::ForgetClients),
            (name.clone(), t.clone()).prop_map(|(u, n)| Op::Ban(u, n)),
            name.clone().prop_map(Op::BannedUntil),
            t.clone().prop_map(Op::ForgetBans),
            (t.clone(), 1usize..30).prop_map(|(t, b)| Op::Push(t, b)),
            (0usize..8, 0usize..80).prop_map(|(l, b)| Op::Take(l, b)),
            Just(Op::AnyPending),
            proptest::collection::vec(0u64..12, 0..4).prop_map(Op::Delete),
            (t.clone(), t.clone()).prop_map(|(b, n)| Op::MarkDead(b, n)),
            (0u64..12, prop::sample::select(vec![0u16, 1, 400, 413, 422]), t.clone()).prop_map(|(n, st, now)| Op::Refuse(n, st, now)),
            t.clone().prop_map(Op::Expire),
            (0u64..4, 0u64..60).prop_map(|(e, b)| Op::Evict(e, b)),
            Just(Op::OldestDead),
            t.clone().prop_map(Op::Requeue),
            Just(Op::Counts),
            Just(Op::State),
            (name.clone(), 0u32..4, t.clone(), proptest::option::of(0u8..3)).prop_map(|(k, f, n, e)| Op::PutState(k, f, n, e)),
            Just(Op::Present),
            (name.clone(), proptest::option::of(0u8..3)).prop_map(|(u, m)| Op::PutPresent(u, m)),
            name.prop_map(Op::DeletePresent),
            (0u8..3, 0u64..5).prop_map(|(e, s)| Op::Reset(e, s)),
        ]
    }

    /// What a call answered, as text: its value, or only that it failed (messages differ).
    fn apply(s: &mut impl Store, op: &Op) -> String {
        fn show<T: std::fmt::Debug>(r: Result<T, StoreError>) -> String {
            r.map_or_else(|_| "error".into(), |v| format!("{v:?}"))
        }
        let name = |n: &u8| format!("n{n}");
        let message = |seq: u64, ts: u64, from: u8, user: u8, id: Option<u8>, bytes: usize| StoredMessage {
            seq,
            ts,
            from: format!("c{from}"),
            user: format!("u{user}"),
            id: id.map(|i| format!("m{i}")),
            data: CompactJson::parse(&format!("\"{}\"", "é".repeat(bytes / 2) + &"x".repeat(bytes % 2))).unwrap(),
        };
        let meta = |m: &Option<u8>| m.map(|m| format!("{{\"m\":{m}}}"));
        match op {
            Op::Meta => show(s.meta()),
            Op::Create(e, seq) => show(s.create(&RoomMeta { epoch: name(e), seq: *seq })),
            Op::Append(a, b, c, d, e, f) => show(s.append(&message(*a, *b, *c, *d, *e, *f))),
            Op::AppendNew(a, b, c, d, e, f) => show(s.append_new(&message(*a, *b, *c, *d, *e, *f))),
            Op::Find(u, f, i) => show(s.find(&format!("u{u}"), &format!("c{f}"), &format!("m{i}"))),
            Op::After(a, l, b) => show(s.after(*a, *l, *b)),
            Op::Before(a, l, b) => show(s.before(*a, *l, *b)),
            Op::Oldest => show(s.oldest()),
            Op::Count => show(s.count()),
            Op::Trim(a, b, c) => show(s.trim(*a, *b, *c)),
            Op::PendingLeaves => show(s.pending_leaves()),
            Op::PutLeave(u, d, m) => show(s.put_pending_leave(&PendingLeave { user: name(u), due: *d, meta: meta(m) })),
            Op::DeleteLeave(u) => show(s.delete_pending_leave(&name(u))),
            Op::ClientOwner(c) => show(s.client_owner(&name(c))),
            Op::Bind(c, u, n) => show(s.bind_client(&name(c), &name(u), *n)),
            Op::ForgetClients(n) => show(s.forget_clients(*n)),
            Op::Ban(u, n) => show(s.ban(&name(u), *n)),
            Op::BannedUntil(u) => show(s.banned_until(&name(u))),
            Op::ForgetBans(n) => show(s.forget_bans(*n)),
            Op::Push(t, b) => show(s.outbox_push(*t, &("ü".repeat(b / 2) + &"b".repeat(b % 2)))),
            Op::Take(l, b) => show(s.outbox_take(*l, *b)),
            Op::AnyPending => show(s.outbox_any_pending()),
            Op::Delete(rows) => show(s.outbox_delete(rows)),
            Op::MarkDead(t, now) => show(s.outbox_mark_dead(*t, *now)),
            Op::Refuse(n, st, now) => show(s.outbox_refuse(*n, *st, *now)),
            Op::Expire(t) => show(s.outbox_expire(*t)),
            Op::Evict(e, b) => show(s.outbox_evict(OutboxSize { events: *e, bytes: *b })),
            Op::OldestDead => show(s.outbox_oldest_dead()),
            Op::Requeue(t) => show(s.outbox_requeue(*t)),
            Op::Counts => show(s.outbox_counts()),
            Op::State => show(s.webhook_state()),
            Op::PutState(k, f, n, e) => show(s.put_webhook_state(&WebhookState {
                key: name(k),
                failures: *f,
                next_at: *n,
                last_error: e.map(|e| format!("HTTP {e}")),
            })),
            Op::Present => show(s.present_users()),
            Op::PutPresent(u, m) => show(s.put_present(&name(u), meta(m).as_deref())),
            Op::DeletePresent(u) => show(s.delete_present(&name(u))),
            Op::Reset(e, seq) => show(s.reset(&RoomMeta { epoch: name(e), seq: *seq })),
        }
    }

    proptest! {
        /// The in-memory store and the SQL one answer every sequence of calls the same way.
        #[test]
        fn memory_and_sqlite_agree(ops in proptest::collection::vec(op(), 1..80)) {
            let (mut memory, mut sql) = (MemoryStore::default(), sqlite());
            for (i, op) in ops.iter().enumerate() {
                let (m, s) = (apply(&mut memory, op), apply(&mut sql, op));
                prop_assert_eq!(&m, &s, "call {} ({:?}): memory answered {}, SQLite {}", i, op, m, s);
            }
        }
    }
}
