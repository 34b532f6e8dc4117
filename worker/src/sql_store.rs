//! The room's [`Store`](roomcast_protocol::store::Store) on the Durable Object's SQLite storage:
//! the statements are `roomcast_protocol::store::sql` (tested natively against a real SQLite);
//! this file only runs them on the object's `SqlStorage`. The SQL API is synchronous, so a room
//! event runs start to finish without interleaving; the runtime's output gate holds every message
//! sent after a write until that write is durable.
//!
//! What the Durable Object's API does differently from a native SQLite, and how it is bridged:
//! - Values cross into JavaScript. Bindings become JS values: integers become numbers (the store
//!   binds none above 2^53 − 1, so they are exact), text becomes strings.
//! - Rows come back as JS values too: a number that is a safe integer arrives as
//!   `SqlStorageValue::Integer`, any other number as `Float` (an integral one, which no column of
//!   the schema holds, is still given back as an integer: SQLite stored an integer); `Boolean`
//!   (never produced by SQL) is 0 or 1; a blob is an error (no column holds one).
//! - `exec` takes the statement and its bindings at once and returns a cursor: rows are read
//!   with `raw()` (arrays, in the order selected), and a write's `rowsWritten` counts index
//!   entries too, so only zero versus not zero is passed on.
//! - `exec` with no bindings runs several statements (the schema).

use roomcast_protocol::store::sql::{self, Param, SqlExec, Value};
use roomcast_protocol::store::StoreError;
use worker::{SqlStorage, SqlStorageValue};

/// The store the room object uses.
pub type SqlStore = sql::SqlStore<DoSql>;

/// The executor over the object's `SqlStorage`.
pub struct DoSql(SqlStorage);

impl From<SqlStorage> for DoSql {
    fn from(sql: SqlStorage) -> DoSql {
        DoSql(sql)
    }
}

fn err(e: worker::Error) -> StoreError {
    StoreError(e.to_string())
}

fn bind(params: &[Param<'_>]) -> Vec<SqlStorageValue> {
    params
        .iter()
        .map(|p| match p {
            Param::Null => SqlStorageValue::Null,
            Param::Int(i) => SqlStorageValue::Integer(*i),
            Param::Text(t) => SqlStorageValue::String((*t).to_owned()),
        })
        .collect()
}

fn value(v: SqlStorageValue) -> Result<Value, StoreError> {
    Ok(match v {
        SqlStorageValue::Null => Value::Null,
        SqlStorageValue::Integer(i) => Value::Int(i),
        // Integral and within i64: an integer SQLite stored, beyond what a JS number holds exactly.
        SqlStorageValue::Float(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Value::Int(f as i64),
        SqlStorageValue::Float(f) => Value::Real(f),
        SqlStorageValue::Boolean(b) => Value::Int(i64::from(b)),
        SqlStorageValue::String(s) => Value::Text(s),
        SqlStorageValue::Blob(_) => return Err(StoreError("no column holds a blob".into())),
    })
}

impl SqlExec for DoSql {
    fn execute_batch(&mut self, sql: &str) -> Result<(), StoreError> {
        self.0.exec(sql, None).map(drop).map_err(err)
    }

    fn execute(&mut self, sql: &str, params: &[Param<'_>]) -> Result<bool, StoreError> {
        Ok(self.0.exec(sql, Some(bind(params))).map_err(err)?.rows_written() > 0)
    }

    fn query(&mut self, sql: &str, params: &[Param<'_>]) -> Result<Vec<Vec<Value>>, StoreError> {
        let cursor = self.0.exec(sql, Some(bind(params))).map_err(err)?;
        cursor.raw().map(|row| row.map_err(err)?.into_iter().map(value).collect()).collect()
    }
}
