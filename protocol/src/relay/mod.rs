//! The contract between a session object and a room object: what a session asks of a room
//! ([`RelayRequest`] to the room's [`RELAY_PATH`]: open a device's connection, pass it a frame,
//! close it, read history for a device catching up) and what a room delivers to a session
//! ([`FeedCall`] to the session's [`FEED_PATH`], answered by a [`FeedReply`]). Both objects are
//! reached only through the worker's own stubs: no client can send either.
//!
//! A device joined through a session is, to the room, a connection like a socket's (rights,
//! rates, presence, echo, acks all apply as they do to sockets), with two differences: its
//! frames go to the session as the feed's extras, addressed to the device, and it gets no
//! stored message one by one: those reach the session once per user through the feed
//! ([`crate::feed`]), and the session passes them to each device that joined.

use crate::compact::CompactJson;
use crate::feed::{Answer, Extra};
use crate::token::Rights;
use serde::{Deserialize, Serialize};

/// The compact form the objects exchange these in (`encode`/`decode` on the four messages).
mod wire;

/// The room object's path for a session's calls.
pub const RELAY_PATH: &str = "/relay";
/// The session object's path for a room's feed calls.
pub const FEED_PATH: &str = "/feed";

/// How the room names a session's watch subscription among its stored subscribers: a prefix no
/// user id can start with (user ids have no spaces).
pub const WATCH_PREFIX: &str = "watch ";

/// Who a device is in a room, established by the session from its verified token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayIdentity {
    pub cid: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<CompactJson>,
    pub echo: bool,
    pub rights: Rights,
    pub expires: u64,
}

/// One thing a session asks of a room for one of its devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RelayOp {
    /// The device joins: a connection opens, its welcome comes as an extra.
    Open { device: u64, identity: RelayIdentity },
    /// A frame from the device, as it sent it.
    Text { device: u64, text: String },
    /// The device left the room or closed its socket.
    Close { device: u64 },
    /// Stored messages of `epoch` after `after`, for a device that is behind the session.
    Read { epoch: String, after: u64, limit: usize },
    /// The session follows (`on`) or stops following the room's latest seq, for rooms its user
    /// shows but has not joined (a sidebar's unread counts): feed calls with no messages, at most
    /// one a second ([`FeedCall::watch`]).
    Watch { on: bool },
}

/// A session's call: its user (the session's name) and what it asks, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRequest {
    pub session: String,
    pub ops: Vec<RelayOp>,
}

impl RelayRequest {
    /// Whether the call holds a device's join: the only op that may create the room (and so
    /// the only one the room-creation limit is asked about).
    pub fn opens(&self) -> bool {
        // A watch makes the room too (a sidebar may name a channel nobody has written in yet, and
        // must hear its first message): it counts against the creation limit like a join.
        self.ops.iter().any(|op| matches!(op, RelayOp::Open { .. } | RelayOp::Watch { on: true }))
    }

    /// The answer when the room has nothing stored and the call holds no join (or watch): no device has a
    /// connection there, so nothing is loaded (which would create the room, past the creation
    /// limit: a session's frames and closes for a join the limit refused come after it).
    pub fn answer_without_room(&self) -> RelayReply {
        let results = self
            .ops
            .iter()
            .map(|op| match op {
                RelayOp::Read { .. } => {
                    let c = crate::close::GOING_AWAY;
                    RelayResult::Refused { code: c.code, reason: c.reason.into() }
                }
                _ => RelayResult::Unknown,
            })
            .collect();
        RelayReply { results }
    }
}

/// The room's answer to one [`RelayOp`], in the same order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum RelayResult {
    /// Done (an open's welcome follows as an extra).
    Done,
    /// The open was refused, with the close code a socket would have got.
    Refused { code: u16, reason: String },
    /// No connection of this device in the room (it was closed).
    Unknown,
    /// A read's page.
    Page(FeedPage),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayReply {
    pub results: Vec<RelayResult>,
}

/// One stored message as it goes to sessions: its seq, its sender's client id (for echo) and
/// its `message` frame, encoded by the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedMessage {
    pub seq: u64,
    pub from: String,
    pub text: String,
}

/// Stored messages read from history: `end` is the room's head when the page holds the end of
/// history (see [`crate::feed::Receiver::handle_call`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedPage {
    pub epoch: String,
    pub end: Option<u64>,
    pub messages: Vec<FeedMessage>,
}

/// A room's delivery to a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedCall {
    pub room: String,
    pub page: FeedPage,
    pub extras: Vec<WireExtra>,
    /// A call of the watch feed ([`RelayOp::Watch`]): its page has no messages, only the head.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watch: bool,
}

/// [`Extra`] on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireExtra {
    pub n: u64,
    pub to: u64,
    pub text: String,
}

impl From<Extra> for WireExtra {
    fn from(e: Extra) -> WireExtra {
        WireExtra { n: e.n, to: e.to, text: e.text }
    }
}

impl From<WireExtra> for Extra {
    fn from(e: WireExtra) -> Extra {
        Extra { n: e.n, to: e.to, text: e.text }
    }
}

/// A session's answer to a feed call: where it stands (`None`: it does not follow this room, so
/// the room drops it), and the devices it still has joined to the room (the room closes the
/// others it opened before the call).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedReply {
    pub answer: Option<WireAnswer>,
    pub devices: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireAnswer {
    pub epoch: String,
    pub seq: u64,
    pub extras: u64,
}

impl From<Answer> for WireAnswer {
    fn from(a: Answer) -> WireAnswer {
        WireAnswer { epoch: a.position.epoch, seq: a.position.seq, extras: a.extras }
    }
}

impl From<WireAnswer> for Answer {
    fn from(a: WireAnswer) -> Answer {
        Answer { position: crate::feed::Position { epoch: a.epoch, seq: a.seq }, extras: a.extras }
    }
}

/// The `left` frame a room sends a device whose connection it closed (the session passes it on
/// with the room's name and forgets the join).
pub fn encode_left(code: u16, reason: &str) -> String {
    #[derive(Serialize)]
    struct Left<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        code: u16,
        reason: &'a str,
    }
    serde_json::to_string(&Left { kind: "left", code, reason }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_join_may_create_a_room() {
        let identity = RelayIdentity { cid: "c".into(), user: "u".into(), meta: None, echo: true, rights: Rights::ALL, expires: 0 };
        let text = RelayOp::Text { device: 1, text: "{}".into() };
        let read = RelayOp::Read { epoch: "e".into(), after: 0, limit: 1 };
        let without = RelayRequest { session: "u".into(), ops: vec![text.clone(), RelayOp::Close { device: 1 }, read] };
        assert!(!without.opens());
        let answer = without.answer_without_room();
        assert_eq!(answer.results[..2], [RelayResult::Unknown, RelayResult::Unknown]);
        assert!(matches!(answer.results[2], RelayResult::Refused { .. }), "a read is refused, so the device is not left waiting");
        let with = RelayRequest { session: "u".into(), ops: vec![text, RelayOp::Open { device: 1, identity }] };
        assert!(with.opens());
        // a watch makes the room too (and counts against the creation limit); an unwatch does not
        let watch = |on| RelayRequest { session: "u".into(), ops: vec![RelayOp::Watch { on }] };
        assert!(watch(true).opens() && !watch(false).opens());
    }
}
