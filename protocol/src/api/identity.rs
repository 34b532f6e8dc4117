//! What the edge tells the room about who is calling. It travels in headers of a request the edge
//! builds itself (never copied from the client's request), so a client cannot forge it.

use crate::compact::CompactJson;
use crate::token::Rights;
use serde::{Deserialize, Serialize};

/// The header carrying [`ConnectInfo`] from the edge to the room.
pub const CONNECT_HEADER: &str = "x-roomcast-connect";
/// The header of a session upgrade the edge forwards: a [`SessionConnect`] as JSON.
pub const SESSION_HEADER: &str = "x-roomcast-session";

/// What the edge established about a new session socket: its client id, the verified token's
/// claims (rights are decided per room at each join) and whether it offered `roomcast.v1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionConnect {
    pub cid: String,
    pub claims: crate::token::Claims,
    pub subprotocol: bool,
}
/// The header carrying [`Caller`] on HTTP API calls from the edge to the room.
pub const CALLER_HEADER: &str = "x-roomcast-caller";
/// The origin (and user) recorded for messages the backend publishes with the API key; client ids
/// cannot contain a colon and token subjects cannot start with one, so it never collides.
pub const API_ORIGIN: &str = ":api";
/// The `from` of messages a token's holder publishes over the HTTP API (client ids cannot
/// contain a colon, so it never collides with a connection's).
pub const HTTP_ORIGIN: &str = ":http";

/// What the edge established about a new connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectInfo {
    pub cid: String,
    pub user: String,
    #[serde(default)]
    pub meta: Option<CompactJson>,
    pub echo: bool,
    #[serde(default)]
    pub resume: Option<(String, u64)>,
    pub rights: Rights,
    /// Whether the client offered `roomcast.v1`, which the response must then select.
    pub subprotocol: bool,
    /// When the token expires, in ms since the epoch (its `exp`); `None` for anonymous rooms.
    #[serde(default)]
    pub exp: Option<u64>,
    /// `rewind=N`: the last N stored messages first (ignored when resuming).
    #[serde(default)]
    pub rewind: Option<u64>,
    /// An anonymous connection's address, as the upgrade limit keys it: the room counts the
    /// rooms it creates by it (`api::creation`). `None` for a token's connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// Who makes an HTTP API call: the backend (API key) or a token's user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The `user` of what it publishes: [`API_ORIGIN`] for the API key, else the token's `sub`.
    pub user: String,
    /// The `from` of what it publishes: [`API_ORIGIN`] for the API key, [`HTTP_ORIGIN`] for a token.
    pub from: String,
}

impl Caller {
    /// The backend, holding the API key.
    pub fn backend() -> Caller {
        Caller { user: API_ORIGIN.to_owned(), from: API_ORIGIN.to_owned() }
    }

    /// A token's user on the HTTP API.
    pub fn user(sub: &str) -> Caller {
        Caller { user: sub.to_owned(), from: HTTP_ORIGIN.to_owned() }
    }
}
