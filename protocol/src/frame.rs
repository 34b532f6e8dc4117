//! The wire format: JSON text frames, each an object with a `type`. Client frames are decoded
//! borrowing from the received text, and a message's `data` is kept as JSON text, compacted once
//! ([`CompactJson`]) and copied into outgoing frames without being re-serialized.
//!
//! Framing rule: every frame the server encodes is one line (serde_json writes no whitespace and
//! escapes control characters in strings, and the only verbatim JSON it embeds is compact), so
//! the room can join frames with line feeds and a client split them back, and no byte a client
//! controls can end or start a frame.

use crate::compact::{CompactJson, JsonError};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The heartbeat ping a client sends, byte for byte. The runtime answers it with [`PONG`] without
/// waking the room (the WebSocket auto-response), so it must match exactly. (Defined at the crate
/// root, which the `no_std` client build also has.)
pub use crate::PING;
/// The heartbeat answer.
pub const PONG: &str = r#"{"type":"pong"}"#;

/// Who a direct message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// Every connection opened with this client id.
    Client(Cow<'a, str>),
    /// Every connection of this user in the room.
    User(Cow<'a, str>),
}

/// A frame a client sent.
#[derive(Debug)]
pub enum ClientFrame<'a> {
    /// Store and broadcast `data`; `id` makes retries idempotent and is echoed in the ack.
    Publish { id: Cow<'a, str>, data: CompactJson },
    /// Deliver `data` to the target's connections only; not stored.
    Direct { id: Cow<'a, str>, to: Target<'a>, data: CompactJson },
    /// Keystrokes (or a resize) for a shared terminal: delivered like a direct message, to the
    /// target's connections only, but needing the `input` right instead of `publish`.
    Input { id: Cow<'a, str>, to: Target<'a>, data: CompactJson },
    /// A heartbeat that did not match [`PING`] byte for byte (it reached the room).
    Ping,
    /// A fresh token for this connection, before its current one expires.
    Refresh { token: Cow<'a, str> },
    /// A page of stored messages: after `since`, before `before`, or the latest (neither).
    History { id: Cow<'a, str>, limit: Option<usize>, before: Option<u64>, since: Option<u64> },
    /// Deliver `data` to the room's other connections now; not stored, no seq, no replay.
    /// Without an `id`, the room sends no `done` (the sender does not wait); refusals still come
    /// as error frames.
    Broadcast { id: Option<Cow<'a, str>>, data: CompactJson },
    /// Replace this connection's presence metadata (a JSON object).
    SetPresence { id: Cow<'a, str>, meta: CompactJson },
    /// The echo of a `mark` frame's id: this connection read up to there.
    Read { id: Cow<'a, str> },
}

/// Why a client frame was refused. Every variant is normal input from a misbehaving or newer
/// client: the sender gets an error frame and the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame is not a JSON object with a string \"type\": {0}")]
    Malformed(String),
    #[error("unknown frame type")]
    UnknownType,
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    #[error("field \"{field}\" {problem}")]
    InvalidField { field: &'static str, problem: &'static str },
    /// A `data` or `meta` outside the JSON rules every value a client sends must keep
    /// ([`crate::compact`]: depth, surrogates, numbers).
    #[error("field \"{field}\" is refused: {error}")]
    Json { field: &'static str, error: JsonError },
}

impl FrameError {
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::UnknownType => ErrorCode::UnknownType,
            _ => ErrorCode::BadFrame,
        }
    }
}

/// The `code` of an error frame or an HTTP error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadFrame,
    UnknownType,
    TooLarge,
    NoRecipient,
    Storage,
    BadRequest,
    NotFound,
    Unauthorized,
    Forbidden,
    RateLimited,
    Backpressure,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::NoRecipient => "no_recipient",
            ErrorCode::Storage => "storage",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Backpressure => "backpressure",
        }
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A present `data` or `meta` as [`CompactJson`], within the rules of [`crate::compact`].
fn value(raw: Option<&RawValue>, field: &'static str) -> Result<CompactJson, FrameError> {
    let raw = raw.ok_or(FrameError::MissingField(field))?;
    CompactJson::from_raw(raw).map_err(|error| FrameError::Json { field, error })
}

// `data` may be JSON null, so "present" is told apart from "absent" without Option's null rule.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// Read as raw JSON so that an id of the wrong type is reported as such (see `check_id`).
    #[serde(default, borrow)]
    id: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    #[serde(default, borrow)]
    to: Option<TargetFields<'a>>,
    #[serde(default, borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default, borrow)]
    meta: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct TargetFields<'a> {
    #[serde(default, borrow, rename = "clientId")]
    client_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    user: Option<Cow<'a, str>>,
}

/// Decodes one client frame. Unknown fields are ignored, so newer clients can add some.
pub fn decode_client(text: &str, max_id_len: usize) -> Result<ClientFrame<'_>, FrameError> {
    // serde reads a struct from a JSON array too (positionally); a frame must be an object.
    // (Found by the client_frame fuzz target.)
    if !text.trim_start().starts_with('{') {
        return Err(FrameError::Malformed("a frame is a JSON object".into()));
    }
    let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| FrameError::Malformed(e.to_string()))?;
    match env.kind.as_ref() {
        "publish" => Ok(ClientFrame::Publish { id: check_id(env.id, max_id_len)?, data: value(env.data, "data")? }),
        kind @ ("direct" | "input") => {
            let to = match env.to {
                Some(TargetFields { client_id: Some(c), user: None }) => Target::Client(c),
                Some(TargetFields { client_id: None, user: Some(u) }) => Target::User(u),
                Some(_) => return Err(FrameError::InvalidField { field: "to", problem: "must have exactly one of clientId or user" }),
                None => return Err(FrameError::MissingField("to")),
            };
            let (id, data) = (check_id(env.id, max_id_len)?, value(env.data, "data")?);
            Ok(if kind == "input" { ClientFrame::Input { id, to, data } } else { ClientFrame::Direct { id, to, data } })
        }
        "ping" => Ok(ClientFrame::Ping),
        "read" => Ok(ClientFrame::Read { id: check_id(env.id, max_id_len)? }),
        "refresh" => Ok(ClientFrame::Refresh { token: env.token.ok_or(FrameError::MissingField("token"))? }),
        "history" => {
            if env.before.is_some() && env.since.is_some() {
                return Err(FrameError::InvalidField { field: "before", problem: "cannot be given with since" });
            }
            let limit = env.limit.map(|l| usize::try_from(l).unwrap_or(usize::MAX));
            Ok(ClientFrame::History { id: check_id(env.id, max_id_len)?, limit, before: env.before, since: env.since })
        }
        "broadcast" => {
            let data = value(env.data, "data")?;
            let id = match env.id {
                Some(_) => Some(check_id(env.id, max_id_len)?),
                None => None,
            };
            Ok(ClientFrame::Broadcast { id, data })
        }
        "presence" => {
            let meta = value(env.meta, "meta")?;
            if !meta.is_object() {
                return Err(FrameError::InvalidField { field: "meta", problem: "must be a JSON object" });
            }
            Ok(ClientFrame::SetPresence { id: check_id(env.id, max_id_len)?, meta })
        }
        _ => Err(FrameError::UnknownType),
    }
}

fn check_id(id: Option<&RawValue>, max: usize) -> Result<Cow<'_, str>, FrameError> {
    let raw = id.ok_or(FrameError::MissingField("id"))?;
    let id: Cow<'_, str> = serde_json::from_str(raw.get())
        .map_err(|_| FrameError::InvalidField { field: "id", problem: "must be a non-empty string within the id length limit" })?;
    if id.is_empty() || id.len() > max {
        return Err(FrameError::InvalidField { field: "id", problem: "must be a non-empty string within the id length limit" });
    }
    Ok(id)
}

/// How far into an oversized frame the room looks for its `id`.
pub const ID_PREFIX_SCAN: usize = 512;

/// The `id` of a frame too large to parse, read from its first [`ID_PREFIX_SCAN`] bytes: the
/// first `"id":"…"` there, when it is a plain string (no escapes) of at most `max` bytes. Clients
/// that put `type` and `id` first (the SDK does) get their refusals matched to the publish.
pub fn salvage_id_prefix(text: &str, max: usize) -> Option<&str> {
    let mut end = text.len().min(ID_PREFIX_SCAN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    // Only a frame that starts exactly `{"type":"<word>","id":"`: an `"id":"…"` further in could
    // be inside `data`, and would settle some other publish.
    let rest = text[..end].strip_prefix("{\"type\":\"")?;
    let kind_end = rest.find('"')?;
    if kind_end == 0 || !rest[..kind_end].bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return None;
    }
    let rest = rest[kind_end..].strip_prefix("\",\"id\":\"")?;
    let id = &rest[..rest.find('"')?];
    (!id.is_empty() && id.len() <= max && !id.contains('\\')).then_some(id)
}

/// Pulls the `id` out of a frame that failed to decode, so the error frame can name it.
pub fn salvage_id(text: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct IdOnly {
        id: Option<String>,
    }
    serde_json::from_str::<IdOnly>(text).ok().and_then(|f| f.id).filter(|id| id.len() <= 256)
}

// ---- server frames --------------------------------------------------------------------------

/// One stored or live message as it goes to clients (`type: "message"`).
#[derive(Serialize)]
pub struct MessageFrame<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub seq: u64,
    pub from: &'a str,
    pub user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub data: &'a CompactJson,
    pub ts: u64,
}

#[derive(Serialize)]
struct AckFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered: Option<usize>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

#[derive(Serialize)]
struct ErrorFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    code: ErrorCode,
    message: &'a str,
    #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
}

#[derive(Serialize)]
struct DirectFrame<'a> {
    /// `direct`, `input` or `broadcast`: the same shape.
    #[serde(rename = "type")]
    kind: &'static str,
    from: &'a str,
    user: &'a str,
    data: &'a CompactJson,
    ts: u64,
}

/// One member of the room, as the welcome frame, presence frames and the HTTP API show it.
#[derive(Serialize, Debug, Clone)]
pub struct MemberView<'a> {
    pub user: &'a str,
    pub connections: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a CompactJson>,
}

/// What a resume request turned into, in the welcome frame.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ResumeOutcome {
    /// The missed messages follow the welcome, in order, before any live one.
    Recovered { replayed: u64 },
    /// Nothing is replayed: the client must refetch (history API) or accept the gap.
    NotRecovered { reason: GapReason, since: u64 },
}

/// Why a resume point could not be served.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The room's history was reset since (a different epoch).
    Epoch,
    /// The messages after the resume point are older than the history kept.
    Retention,
    /// The resume point is ahead of the room (it never had that seq in this epoch).
    Ahead,
    /// History could not be read just now; the client should refetch.
    Unavailable,
}

#[derive(Serialize)]
struct WelcomeFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    epoch: &'a str,
    seq: u64,
    #[serde(rename = "clientId")]
    client_id: &'a str,
    user: &'a str,
    members: &'a [MemberView<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    resume: Option<&'a ResumeOutcome>,
    /// When the connection's token expires (ms); absent for anonymous connections.
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rewind: Option<Rewound>,
    heartbeat: &'a Heartbeat,
    limits: &'a Limits,
}

/// The liveness contract, in the welcome: ping at least every `interval` ms; a connection with no
/// sign of life (an answered ping or any frame) for `timeout` ms is closed with 4001 within half
/// a timeout more.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub interval: u64,
    pub timeout: u64,
}

/// The limits a client needs to stay within, in the welcome.
#[derive(Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub messages_per_sec: u64,
    pub messages_burst: u64,
    pub bytes_per_sec: u64,
    pub message_id_max: usize,
    pub presence_meta_max: usize,
    pub broadcasts_per_sec: u64,
    pub broadcasts_burst: u64,
    pub broadcast_max_bytes: usize,
}

/// How many stored messages follow the welcome of a connection that asked to rewind.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewound {
    pub replayed: u64,
}

/// What a welcome frame says, besides the member list.
pub struct Welcome<'a> {
    pub epoch: &'a str,
    pub seq: u64,
    pub client_id: &'a str,
    pub user: &'a str,
    pub resume: Option<&'a ResumeOutcome>,
    pub expires: Option<u64>,
    /// For a connection that asked for the last N messages: how many follow.
    pub rewind: Option<Rewound>,
    pub heartbeat: &'a Heartbeat,
    pub limits: &'a Limits,
}

#[derive(Serialize)]
struct RefreshedFrame {
    #[serde(rename = "type")]
    kind: &'static str,
    expires: u64,
}

/// What happened to a member.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PresenceEvent {
    Join,
    Update,
    Leave,
}

#[derive(Serialize)]
struct PresenceFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    event: PresenceEvent,
    member: &'a MemberView<'a>,
}

fn to_text<T: Serialize>(frame: &T) -> String {
    // These frames hold only strings, numbers and already-valid raw JSON: serialization cannot
    // fail, and an empty string would be the harmless answer if it ever did.
    serde_json::to_string(frame).unwrap_or_default()
}

pub fn encode_message(frame: &MessageFrame<'_>) -> String {
    to_text(frame)
}

pub fn encode_ack(id: &str, seq: u64, duplicate: bool) -> String {
    to_text(&AckFrame { kind: "ack", id, seq: Some(seq), delivered: None, duplicate })
}

/// The answer to a direct message; `delivered` is left out for a sender who may not see presence.
pub fn encode_direct_ack(id: &str, delivered: Option<usize>) -> String {
    to_text(&AckFrame { kind: "ack", id, seq: None, delivered, duplicate: false })
}

/// An ephemeral message to the room's other members.
pub fn encode_broadcast(from: &str, user: &str, data: &CompactJson, ts: u64) -> String {
    to_text(&DirectFrame { kind: "broadcast", from, user, data, ts })
}

/// The answer to a `history` request: `messages` are `message` frames as the room encodes them
/// (each one line of JSON: see [`encode_message`]), joined into the array as they are.
pub fn encode_history(id: &str, messages: &[String], more: bool) -> String {
    let id = serde_json::to_string(id).unwrap_or_default();
    let mut out = String::with_capacity(messages.iter().map(|m| m.len() + 1).sum::<usize>() + id.len() + 48);
    out.push_str(r#"{"type":"history","id":"#);
    out.push_str(&id);
    out.push_str(r#","messages":["#);
    for (i, m) in messages.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(m);
    }
    out.push_str(r#"],"more":"#);
    out.push_str(if more { "true" } else { "false" });
    out.push('}');
    out
}

/// The HTTP history answer, `{"epoch","seq","more","messages":[…]}`, with the `message` frames
/// joined in as they are encoded (each one line of JSON), so none is parsed again.
pub fn encode_history_page(epoch: &str, seq: u64, more: bool, messages: &[String]) -> String {
    let mut out = String::with_capacity(messages.iter().map(|m| m.len() + 1).sum::<usize>() + epoch.len() + 64);
    out.push_str(r#"{"epoch":"#);
    out.push_str(&serde_json::to_string(epoch).unwrap_or_default());
    out.push_str(r#","seq":"#);
    out.push_str(&seq.to_string());
    out.push_str(r#","more":"#);
    out.push_str(if more { "true" } else { "false" });
    out.push_str(r#","messages":["#);
    out.push_str(&messages.join(","));
    out.push_str("]}");
    out
}

/// A read mark: the client echoes its id in a `read` frame (docs/PROTOCOL.md, *Read marks*).
pub fn encode_mark(id: &str) -> String {
    to_text(&MarkFrame { kind: "mark", id })
}

#[derive(Serialize)]
struct MarkFrame<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
}

/// The answer to a broadcast or a presence change: done (there is nothing more to say).
pub fn encode_done(id: &str) -> String {
    to_text(&AckFrame { kind: "ack", id, seq: None, delivered: None, duplicate: false })
}

pub fn encode_refreshed(expires: u64) -> String {
    to_text(&RefreshedFrame { kind: "refreshed", expires })
}

pub fn encode_error(id: Option<&str>, code: ErrorCode, message: &str) -> String {
    encode_error_after(id, code, message, None)
}

/// An error frame that says how long to wait before the same frame may succeed (`retryAfterMs`:
/// every `rate_limited` refusal carries it).
pub fn encode_error_after(id: Option<&str>, code: ErrorCode, message: &str, retry_after_ms: Option<u64>) -> String {
    to_text(&ErrorFrame { kind: "error", id, code, message, retry_after_ms })
}

pub fn encode_direct(from: &str, user: &str, data: &CompactJson, ts: u64) -> String {
    to_text(&DirectFrame { kind: "direct", from, user, data, ts })
}

/// Input for a shared terminal, for the connection it was sent to: a direct message's shape.
pub fn encode_input(from: &str, user: &str, data: &CompactJson, ts: u64) -> String {
    to_text(&DirectFrame { kind: "input", from, user, data, ts })
}

pub fn encode_welcome(w: &Welcome<'_>, members: &[MemberView<'_>]) -> String {
    to_text(&WelcomeFrame {
        kind: "welcome",
        epoch: w.epoch,
        seq: w.seq,
        client_id: w.client_id,
        user: w.user,
        members,
        resume: w.resume,
        expires: w.expires,
        rewind: w.rewind,
        heartbeat: w.heartbeat,
        limits: w.limits,
    })
}

pub fn encode_presence(event: PresenceEvent, member: &MemberView<'_>) -> String {
    to_text(&PresenceFrame { kind: "presence", event, member })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_publish_keeping_raw_data() {
        let f = decode_client(r#"{"type":"publish","id":"m1","data":{"text":"hi","n":[1,2]}}"#, 128).unwrap();
        match f {
            ClientFrame::Publish { id, data } => {
                assert_eq!(id, "m1");
                assert_eq!(data.get(), r#"{"text":"hi","n":[1,2]}"#);
            }
            other => panic!("unexpected {other:?}"),
        }
        // whitespace between tokens (line feeds included) is dropped, strings are kept
        match decode_client("{\"type\":\"publish\",\"id\":\"m\",\"data\":{\"a\":\n{\"b\" : \"x y\"}\r\n}}", 128).unwrap() {
            ClientFrame::Publish { data, .. } => assert_eq!(data.get(), r#"{"a":{"b":"x y"}}"#),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn null_data_is_present_but_missing_data_is_an_error() {
        assert!(matches!(decode_client(r#"{"type":"publish","id":"a","data":null}"#, 128), Ok(ClientFrame::Publish { .. })));
        assert_eq!(decode_client(r#"{"type":"publish","id":"a"}"#, 128).unwrap_err(), FrameError::MissingField("data"));
    }

    #[test]
    fn escaped_ids_decode() {
        match decode_client(r#"{"type":"publish","id":"a\"b","data":1}"#, 128).unwrap() {
            ClientFrame::Publish { id, .. } => assert_eq!(id, "a\"b"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn direct_targets() {
        match decode_client(r#"{"type":"direct","id":"d","to":{"user":"bob"},"data":"x"}"#, 128).unwrap() {
            ClientFrame::Direct { to, .. } => assert_eq!(to, Target::User("bob".into())),
            other => panic!("unexpected {other:?}"),
        }
        let both = decode_client(r#"{"type":"direct","id":"d","to":{"user":"b","clientId":"c"},"data":1}"#, 128);
        assert!(matches!(both, Err(FrameError::InvalidField { field: "to", .. })));
        let none = decode_client(r#"{"type":"direct","id":"d","data":1}"#, 128);
        assert_eq!(none.unwrap_err(), FrameError::MissingField("to"));
    }

    #[test]
    fn bad_frames_are_classified() {
        assert!(matches!(decode_client("not json", 128), Err(FrameError::Malformed(_))));
        assert!(matches!(decode_client("[1,2]", 128), Err(FrameError::Malformed(_))));
        // regression (fuzzing): serde would read this array positionally as a publish
        assert!(matches!(decode_client(r#"["publish","id",1]"#, 128), Err(FrameError::Malformed(_))));
        assert!(matches!(decode_client(r#"  ["direct","id",{"user":"u"},1]"#, 128), Err(FrameError::Malformed(_))));
        assert!(matches!(decode_client(r#"{"type":5}"#, 128), Err(FrameError::Malformed(_))));
        assert_eq!(decode_client(r#"{"type":"dance"}"#, 128).unwrap_err(), FrameError::UnknownType);
        assert_eq!(decode_client(r#"{"type":"dance"}"#, 128).unwrap_err().code(), ErrorCode::UnknownType);
        let long_id = format!(r#"{{"type":"publish","id":"{}","data":1}}"#, "x".repeat(129));
        assert!(matches!(decode_client(&long_id, 128), Err(FrameError::InvalidField { field: "id", .. })));
        assert!(matches!(decode_client(r#"{"type":"publish","id":"","data":1}"#, 128), Err(FrameError::InvalidField { field: "id", .. })));
    }

    /// Issue #22: `data` and `meta` outside the JSON rules (compact.rs) are bad frames naming the
    /// field and the rule; the id is still salvaged for the error frame.
    #[test]
    fn json_outside_the_rules_is_a_bad_frame() {
        let deep = crate::compact::tests::nested(10_001, false, "0");
        let text = format!(r#"{{"type":"publish","id":"m","data":{deep}}}"#);
        let e = decode_client(&text, 128).unwrap_err();
        assert_eq!(e, FrameError::Json { field: "data", error: JsonError::TooDeep });
        assert_eq!(
            (e.code(), e.to_string().as_str()),
            (ErrorCode::BadFrame, "field \"data\" is refused: JSON nested deeper than 32 arrays and objects")
        );
        assert_eq!(salvage_id(&text).as_deref(), Some("m"));
        let e = decode_client(r#"{"type":"presence","id":"p","meta":{"\ud800":1}}"#, 128).unwrap_err();
        assert_eq!(e, FrameError::Json { field: "meta", error: JsonError::LoneSurrogate });
        let e = decode_client(r#"{"type":"broadcast","data":[1e400]}"#, 128).unwrap_err();
        assert_eq!(e, FrameError::Json { field: "data", error: JsonError::NumberOutOfRange });
        let e = decode_client(r#"{"type":"direct","id":"d","to":{"user":"u"},"data":"\udc00"}"#, 128).unwrap_err();
        assert_eq!(e, FrameError::Json { field: "data", error: JsonError::LoneSurrogate });
        // what the frame ignores is not held to the rules: it is neither stored nor sent
        assert!(decode_client(&format!(r#"{{"type":"publish","id":"m","data":1,"extra":{deep}}}"#), 128).is_ok());
    }

    #[test]
    fn ping_constant_is_a_ping_frame() {
        assert!(matches!(decode_client(PING, 128), Ok(ClientFrame::Ping)));
    }

    #[test]
    fn server_frames_are_json() {
        let data = CompactJson::parse("{\"a\": 1}").unwrap();
        let text = encode_message(&MessageFrame { kind: "message", seq: 7, from: "c1", user: "u", id: Some("m"), data: &data, ts: 5 });
        assert_eq!(text, r#"{"type":"message","seq":7,"from":"c1","user":"u","id":"m","data":{"a":1},"ts":5}"#);
        assert_eq!(encode_ack("m", 7, false), r#"{"type":"ack","id":"m","seq":7}"#);
        assert_eq!(encode_ack("m", 7, true), r#"{"type":"ack","id":"m","seq":7,"duplicate":true}"#);
        assert_eq!(encode_direct_ack("d", Some(2)), r#"{"type":"ack","id":"d","delivered":2}"#);
        assert_eq!(encode_direct_ack("d", None), r#"{"type":"ack","id":"d"}"#);
        assert_eq!(encode_refreshed(5000), r#"{"type":"refreshed","expires":5000}"#);
        assert_eq!(
            encode_history_page("e\"1", 2, true, &[r#"{"seq":1}"#.into(), r#"{"seq":2}"#.into()]),
            r#"{"epoch":"e\"1","seq":2,"more":true,"messages":[{"seq":1},{"seq":2}]}"#
        );
        assert_eq!(encode_error(Some("m"), ErrorCode::TooLarge, "big"), r#"{"type":"error","id":"m","code":"too_large","message":"big"}"#);
        let outcome = ResumeOutcome::NotRecovered { reason: GapReason::Retention, since: 3 };
        let heartbeat = Heartbeat { interval: 20_000, timeout: 60_000 };
        let limits = Limits {
            max_frame_bytes: 100,
            messages_per_sec: 1,
            messages_burst: 2,
            bytes_per_sec: 3,
            message_id_max: 4,
            presence_meta_max: 5,
            broadcasts_per_sec: 6,
            broadcasts_burst: 7,
            broadcast_max_bytes: 8,
        };
        let welcome = Welcome {
            epoch: "e1",
            seq: 9,
            client_id: "c",
            user: "u",
            resume: Some(&outcome),
            expires: None,
            rewind: None,
            heartbeat: &heartbeat,
            limits: &limits,
        };
        let w = encode_welcome(&welcome, &[MemberView { user: "u", connections: 1, meta: None }]);
        assert_eq!(
            w,
            r#"{"type":"welcome","epoch":"e1","seq":9,"clientId":"c","user":"u","members":[{"user":"u","connections":1}],"resume":{"status":"not_recovered","reason":"retention","since":3},"heartbeat":{"interval":20000,"timeout":60000},"limits":{"maxFrameBytes":100,"messagesPerSec":1,"messagesBurst":2,"bytesPerSec":3,"messageIdMax":4,"presenceMetaMax":5,"broadcastsPerSec":6,"broadcastsBurst":7,"broadcastMaxBytes":8}}"#
        );
    }

    #[test]
    fn ids_are_salvaged_from_the_start_of_an_oversized_frame() {
        let big = format!(r#"{{"type":"publish","id":"m-7","data":"{}"}}"#, "x".repeat(10_000));
        assert_eq!(salvage_id_prefix(&big, 128), Some("m-7"));
        assert_eq!(salvage_id_prefix(&format!(r#"{{"type":"publish","data":"{}","id":"late"}}"#, "x".repeat(600)), 128), None);
        assert_eq!(salvage_id_prefix(r#"{"type":"publish","data":{"id":"inner"},"id":"outer"}"#, 128), None, "only right after the type");
        assert_eq!(salvage_id_prefix(r#"{"type":"direct","id":"d1","to":{}}"#, 128), Some("d1"));
        assert_eq!(salvage_id_prefix(r#"{"id":"a\"b"}"#, 128), None, "escapes are not unpicked");
        assert_eq!(salvage_id_prefix(r#"{"id":""}"#, 128), None);
        assert_eq!(salvage_id_prefix(r#"{"id":"toolong"}"#, 3), None);
        assert_eq!(salvage_id_prefix(&format!("{{\"id\":\"{}", "é".repeat(300)), 1000), None, "cut on a char boundary, unterminated");
    }
}
