//! Room creation: how many new rooms one creator may bring into existence per window.
//!
//! A room exists once it has stored state: the tables of its object's SQLite storage, which the
//! first request that wakes it writes (a connection, or any HTTP call, a read included) and which
//! it keeps for good, with its own webhook outbox. Unbounded, one token with a prefix pattern
//! (`chat:*`) could create rooms as fast as it can send requests, each with its storage and its
//! own webhook POSTs (found by the red-team report, #22).
//!
//! The edge cannot know whether a room exists without waking it; the room's object can, before
//! it stores anything. So the object, and only when a request finds it without stored state,
//! asks the rate-limiting binding the var `ROOM_CREATION_LIMITER` names (default
//! `ROOM_CREATIONS_PER_USER`: [`PER_WINDOW`] new rooms per [`WINDOW_SECS`] s per key) under the
//! creator's key ([`Creator::limit_key`]): a token's user, or for an anonymous connection its
//! address as the upgrade limit keys it (a name chosen freely would be no bound). Over the limit,
//! the request is refused (429 with `Retry-After`, or 4029 for a connection) and the object
//! stores nothing. The backend (the API key) is not limited: it is trusted with the rooms it
//! makes. Existing rooms never ask. Outsiders create none: whatever the edge refuses never wakes
//! a room.

use super::identity::{Caller, ConnectInfo, API_ORIGIN};
use super::refusal::Refusal;

/// The var naming the binding, and its value when unset ("" turns the limit off).
pub const LIMITER_VAR: &str = "ROOM_CREATION_LIMITER";
pub const LIMITER_DEFAULT: &str = "ROOM_CREATIONS_PER_USER";
/// The bound wrangler.toml's `ROOM_CREATIONS_PER_USER` binding enforces (`protocol/tests/
/// wrangler_config.rs` holds them equal): new rooms per creator, per window of this many seconds.
pub const PER_WINDOW: u64 = 20;
pub const WINDOW_SECS: u64 = 60;
/// The prefix of an address's key: no token's user can start with a colon, so the two kinds of
/// keys never meet in the limiter.
pub const ADDRESS_PREFIX: &str = ":address:";

/// Who a request that creates a room counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creator {
    /// The API key: not limited.
    Backend,
    /// A token's user (`sub`).
    User(String),
    /// An anonymous connection, by its address's key (`client_ip::upgrade_limit_key`).
    Address(String),
}

impl Creator {
    /// The creator of an HTTP API call.
    pub fn of_call(caller: &Caller) -> Creator {
        if caller.user == API_ORIGIN {
            Creator::Backend
        } else {
            Creator::User(caller.user.clone())
        }
    }

    /// The creator of a connection: its token's user, or for an anonymous one the address the
    /// edge recorded ([`record_address`]).
    pub fn of_connection(info: &ConnectInfo) -> Creator {
        match (&info.exp, &info.address) {
            (Some(_), _) => Creator::User(info.user.clone()),
            (None, Some(address)) => Creator::Address(address.clone()),
            // An anonymous connection the edge did not stamp: counted by its chosen name, which
            // still bounds one client that keeps it.
            (None, None) => Creator::User(info.user.clone()),
        }
    }

    /// The key the limit counts this creator under; `None` for the backend.
    pub fn limit_key(&self) -> Option<String> {
        match self {
            Creator::Backend => None,
            Creator::User(user) => Some(user.clone()),
            Creator::Address(address) => Some(format!("{ADDRESS_PREFIX}{address}")),
        }
    }

    /// The refusal when the creator has used up its window: 429 with `Retry-After` (the
    /// window), or 4029 (retryable) for a connection.
    pub fn refusal(&self) -> Refusal {
        let message = match self {
            Creator::Address(_) => "too many new rooms from this address; existing rooms are not limited",
            _ => "too many new rooms for this user; existing rooms are not limited",
        };
        Refusal::rate_limited(message, WINDOW_SECS * 1000)
    }
}

/// On an anonymous connection, the address's key, so the room can count the rooms it creates;
/// a token's connection is counted by its user and carries none.
pub fn record_address(info: &mut ConnectInfo, address_key: &str) {
    info.address = info.exp.is_none().then(|| address_key.to_owned());
}

/// Whether the object must ask the limiter before serving, and under which binding and key:
/// only when it has no stored state yet, the limit is on (`limiter` is the var's value), and the
/// creator is limited.
pub fn must_ask<'a>(has_state: bool, creator: &Creator, limiter: &'a str) -> Option<(&'a str, String)> {
    if has_state || limiter.is_empty() {
        return None;
    }
    creator.limit_key().map(|key| (limiter, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Rights;

    fn connection(user: &str, exp: Option<u64>) -> ConnectInfo {
        ConnectInfo {
            cid: "c".into(),
            user: user.into(),
            meta: None,
            echo: false,
            resume: None,
            rights: Rights::ALL,
            subprotocol: true,
            exp,
            rewind: None,
            address: None,
        }
    }

    /// Found by the red-team report (#22): one token with a prefix pattern created rooms without
    /// bound. A new room is now counted against its creator; the backend and existing rooms are not.
    #[test]
    fn new_rooms_count_against_their_creator_only() {
        let limiter = LIMITER_DEFAULT;
        let alice = Creator::of_call(&Caller::user("alice"));
        assert_eq!(must_ask(false, &alice, limiter), Some((limiter, "alice".to_owned())));
        assert_eq!(must_ask(true, &alice, limiter), None, "an existing room never asks");
        assert_eq!(must_ask(false, &alice, ""), None, "the limit off");
        let backend = Creator::of_call(&Caller::backend());
        assert_eq!(backend, Creator::Backend);
        assert_eq!(must_ask(false, &backend, limiter), None, "the API key is not limited");
        // a connection with a token counts against its user, on sockets and the HTTP API alike
        let mut token = connection("alice", Some(1_800_000_000_000));
        record_address(&mut token, "203.0.113.7");
        assert_eq!(token.address, None);
        assert_eq!(must_ask(false, &Creator::of_connection(&token), limiter), Some((limiter, "alice".to_owned())));
        // an anonymous one against its address, whatever name it chose
        for name in ["anon:a", "anon:b"] {
            let mut anonymous = connection(name, None);
            record_address(&mut anonymous, "203.0.113.7");
            assert_eq!(must_ask(false, &Creator::of_connection(&anonymous), limiter), Some((limiter, ":address:203.0.113.7".to_owned())));
        }
    }

    #[test]
    fn address_keys_never_meet_user_keys() {
        // a token's user cannot start with a colon (name::is_reserved_user)
        let key = Creator::Address("alice".into()).limit_key().unwrap();
        assert!(crate::name::is_reserved_user(&key), "{key}");
    }

    #[test]
    fn the_refusal_says_when_to_retry() {
        for creator in [Creator::User("alice".into()), Creator::Address("local".into())] {
            let r = creator.refusal();
            assert_eq!((r.status(), r.close_code(), r.retry_after_seconds()), (429, 4029, Some(WINDOW_SECS)));
            assert!(super::super::refusal::documented::is_documented(&r));
        }
    }

    #[test]
    fn the_address_travels_to_the_room() {
        let mut anonymous = connection("anon:a", None);
        record_address(&mut anonymous, "local");
        let back: ConnectInfo = serde_json::from_str(&serde_json::to_string(&anonymous).unwrap()).unwrap();
        assert_eq!(Creator::of_connection(&back), Creator::Address("local".into()));
        // and a header without it (an edge from before) still reads
        let old = r#"{"cid":"c","user":"anon:a","echo":false,"rights":{"s":true,"p":true,"m":true},"subprotocol":true}"#;
        let info: ConnectInfo = serde_json::from_str(old).unwrap();
        assert_eq!(Creator::of_connection(&info), Creator::User("anon:a".into()));
    }
}
