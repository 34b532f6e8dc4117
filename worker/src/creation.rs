//! The room-creation limit's adapter; the rule is `roomcast_protocol::api::creation`. Before a
//! request can wake a room that has no stored state, the object asks the rate-limiting binding
//! under the creator's key, and refused, stores nothing.

use roomcast_protocol::api::creation::{self, Creator};
use roomcast_protocol::api::Refusal;
use worker::{Env, SqlStorageValue, State};

/// Whether a request from `creator` may go on into this object (`loaded`: the room is already
/// loaded in memory, so it has stored state). Refused, nothing was written.
pub async fn admit(state: &State, env: &Env, loaded: bool, creator: &Creator) -> Result<(), Refusal> {
    let limiter = env.var(creation::LIMITER_VAR).map(|v| v.to_string()).unwrap_or_else(|_| creation::LIMITER_DEFAULT.into());
    let has_state = exists(state, loaded);
    let Some((binding, key)) = creation::must_ask(has_state, creator, &limiter) else { return Ok(()) };
    // If the binding is missing or fails, the room is created rather than the request refused.
    let Ok(limiter) = env.rate_limiter(binding) else { return Ok(()) };
    match crate::platform::rate_limit(&limiter, &key).await {
        Some(false) => Err(creator.refusal()),
        _ => Ok(()),
    }
}

/// Whether the room has stored state (`loaded`: it is loaded in memory, so it has).
pub fn exists(state: &State, loaded: bool) -> bool {
    loaded || has_stored_state(state)
}

/// Whether the room's tables exist: the first event's `SqlStore::open` creates them all (`meta`
/// among them), and nothing removes them. A read of the schema writes nothing. If it fails, the
/// room counts as existing (the request is served, as it was before the limit).
fn has_stored_state(state: &State) -> bool {
    let count = state
        .storage()
        .sql()
        .exec("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'meta'", None)
        .map(|cursor| cursor.raw().next());
    match count {
        Ok(Some(Ok(row))) => match row.first() {
            Some(SqlStorageValue::Integer(n)) => *n > 0,
            Some(SqlStorageValue::Float(n)) => *n > 0.0,
            // Not a count: read as existing, like a failed read.
            _ => true,
        },
        Ok(None) => false,
        Ok(Some(Err(_))) | Err(_) => true,
    }
}
