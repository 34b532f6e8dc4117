//! The room-creation limit's adapter; the rule is `roomcast_protocol::api::creation`. Before a
//! request can wake a room that has no stored state, the object asks the rate-limiting binding
//! under the creator's key, and refused, stores nothing.

use roomcast_protocol::api::creation::{self, Creator};
use roomcast_protocol::api::Refusal;
use serde::Deserialize;
use worker::{Env, State};

/// Whether a request from `creator` may go on into this object (`loaded`: the room is already
/// loaded in memory, so it has stored state). Refused, nothing was written.
pub async fn admit(state: &State, env: &Env, loaded: bool, creator: &Creator) -> Result<(), Refusal> {
    let limiter = env.var(creation::LIMITER_VAR).map(|v| v.to_string()).unwrap_or_else(|_| creation::LIMITER_DEFAULT.into());
    let has_state = loaded || has_stored_state(state);
    let Some((binding, key)) = creation::must_ask(has_state, creator, &limiter) else { return Ok(()) };
    // If the binding is missing or fails, the room is created rather than the request refused.
    let Ok(limiter) = env.rate_limiter(binding) else { return Ok(()) };
    match limiter.limit(key).await {
        Ok(outcome) if !outcome.success => Err(creator.refusal()),
        _ => Ok(()),
    }
}

/// Whether the room's tables exist: the first event's `SqlStore::open` creates them all (`meta`
/// among them), and nothing removes them. A read of the schema writes nothing. If it fails, the
/// room counts as existing (the request is served, as it was before the limit).
fn has_stored_state(state: &State) -> bool {
    #[derive(Deserialize)]
    struct Count {
        n: f64,
    }
    state
        .storage()
        .sql()
        .exec("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table' AND name = 'meta'", None)
        .and_then(|cursor| cursor.to_array::<Count>())
        .map_or(true, |rows| rows.first().is_some_and(|r| r.n > 0.0))
}
