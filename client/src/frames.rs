//! The server frames the app sees, read from JSON (docs/PROTOCOL.md, *Server → client*).

use crate::Error;
use serde::Deserialize;
use serde_json::Value;

/// A stored message (`message` frame). `raw` is the frame's line as it arrived.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub seq: u64,
    /// The publisher's client id (`:api` for the API key, `:http` for a token over HTTP).
    pub from: String,
    pub user: String,
    /// The publisher's message id, when it gave one.
    #[serde(default)]
    pub id: Option<String>,
    pub data: Value,
    /// When the room stored it (ms since the Unix epoch).
    pub ts: u64,
    #[serde(skip)]
    pub raw: String,
}

/// An ephemeral message (`broadcast` or `direct` frame).
#[derive(Debug, Clone, Deserialize)]
pub struct Broadcast {
    pub from: String,
    pub user: String,
    pub data: Value,
    pub ts: u64,
}

/// A member changed (`presence` frame): `event` is `join`, `update` or `leave`; `member` is the
/// member's current state (`user`, `connections`, `meta`).
#[derive(Debug, Clone, Deserialize)]
pub struct PresenceEvent {
    pub event: String,
    pub member: Value,
}

/// What a welcome said to the app.
#[derive(Debug, Clone, Deserialize)]
pub struct Welcome {
    pub epoch: String,
    pub seq: u64,
    #[serde(rename = "clientId")]
    pub client_id: String,
    pub user: String,
    #[serde(default)]
    pub members: Vec<Value>,
}

/// An error no call waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorEvent {
    pub code: String,
    pub message: String,
}

/// A page of history: messages in seq order, and whether more exist in the direction read.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    pub messages: Vec<Message>,
    pub more: bool,
}

/// A message frame, or why it is not one.
pub fn message(frame: &Value, raw: &str) -> Result<Message, String> {
    let mut m = Message::deserialize(frame).map_err(|e| format!("invalid message frame: {e}"))?;
    m.raw = raw.to_owned();
    Ok(m)
}

/// The page a `history` frame answered with.
pub fn history_page(frame: Option<&Value>) -> Result<HistoryPage, Error> {
    let bad = || Error::refused("bad_frame", "invalid history frame");
    let frame = frame.ok_or_else(bad)?;
    let list = frame.get("messages").and_then(Value::as_array).ok_or_else(bad)?;
    let mut messages = Vec::with_capacity(list.len());
    for m in list {
        let raw = m.to_string();
        messages.push(message(m, &raw).map_err(|e| Error::refused("bad_frame", e))?);
    }
    Ok(HistoryPage { messages, more: frame.get("more").and_then(Value::as_bool).unwrap_or(false) })
}
