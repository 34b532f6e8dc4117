//! The values that cross the room's boundary: who connects, how a connection starts, what the
//! adapter must do, and the HTTP commands' answers and errors. Plain data, re-exported by
//! [`super`].

use crate::close::CloseCode;
use crate::compact::CompactJson;
use crate::store::{StoreError, StoredMessage};
use crate::token::Rights;
use crate::webhook::WebhookStats;
use serde::{Deserialize, Serialize};

/// A connection's number within one room, unique for the room's lifetime in memory and restored
/// from the socket attachments after hibernation.
pub type ConnId = u64;

/// Who a connection is, fixed when it opens (its rights and expiry change only through a
/// `refresh`). The Durable Object keeps it as the socket's attachment (short field names: the
/// attachment budget is 2,048 bytes), so the room is rebuilt from the live sockets after
/// hibernation. A connection's identity is the pair (user, client id): the user comes from the
/// token, and a client id belongs to one user per room (see [`super::Room::handle_open`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Connection {
    #[serde(rename = "i")]
    pub id: ConnId,
    #[serde(rename = "c")]
    pub client_id: String,
    #[serde(rename = "u")]
    pub user: String,
    #[serde(rename = "m", default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<CompactJson>,
    #[serde(rename = "e")]
    pub echo: bool,
    #[serde(rename = "t")]
    pub opened_at: u64,
    #[serde(rename = "r", default)]
    pub rights: Rights,
    /// When the connection's token expires (ms); `None` for anonymous connections.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// The last frame from the connection, as last saved (the room saves it again once it is a
    /// quarter timeout old), so a connection that sends frames but no pings outlives a wake.
    #[serde(rename = "s", default)]
    pub seen: u64,
}

/// The identity a new connection presents, already verified by the edge.
#[derive(Debug, Clone)]
pub struct Identity {
    pub client_id: String,
    pub user: String,
    pub meta: Option<CompactJson>,
    /// Whether this connection receives its own publishes.
    pub echo: bool,
    pub rights: Rights,
    /// When the token expires (ms since the epoch); `None` for anonymous connections.
    pub expires: Option<u64>,
}

/// What the room needs to verify a `refresh` frame's token: its own name (rights are per room)
/// and the signing secret, with the previous one during a rotation (empty: none).
#[derive(Debug, Clone)]
pub struct TokenCheck {
    pub room: String,
    pub secret: Vec<u8>,
    pub previous: Vec<u8>,
}

/// Where a reconnecting client left off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResumePoint {
    pub epoch: String,
    pub since: u64,
}

/// Which connections a frame goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Every connection, but the one named.
    All {
        except: Option<ConnId>,
    },
    One(ConnId),
    List(Vec<ConnId>),
}

/// A close the room asks for: a documented code, and its reason (the table's, or one given
/// with it, such as a kick's reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closing {
    pub code: u16,
    pub reason: std::borrow::Cow<'static, str>,
}

impl From<CloseCode> for Closing {
    fn from(c: CloseCode) -> Closing {
        Closing { code: c.code, reason: std::borrow::Cow::Borrowed(c.reason) }
    }
}

/// What the adapter must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send { to: Recipients, text: String },
    Close { conn: ConnId, code: Closing },
}

/// How a connection starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From now on.
    Fresh,
    /// From where it left off: the missed messages are replayed, or a gap is reported.
    Resume(ResumePoint),
    /// From now on, with the last N stored messages first.
    Rewind(u64),
}

/// Which page of history a read asks for: the edge's type (`api::history`), so an HTTP read
/// reaches the room as the edge checked it.
pub use crate::api::history::Page;

/// A page of history, in seq order.
#[derive(Debug)]
pub struct HistoryPage {
    pub epoch: String,
    pub seq: u64,
    pub messages: Vec<StoredMessage>,
    /// Whether more messages exist in the direction read (newer after `After`, older otherwise).
    pub more: bool,
}

/// One message of an HTTP publish, as the edge parsed it (`api::publish`).
pub use crate::api::publish::PublishItem;

/// The outcome of one published message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Why the room refused an HTTP publish as a whole (the edge refuses malformed batches and
/// those over the room's limits). Normal outcomes, except `Store`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// Normal: the backend removed this user from the room for a while (`/kick` with `banSeconds`).
    #[error("this user is banned from the room")]
    Banned,
    /// Normal under load: the caller or the room is over its HTTP publish rate.
    #[error("too many publishes; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    /// Transient: the room's webhook outbox holds as much as it may (`WEBHOOK_OUTBOX_MAX_*`) until
    /// its receiver takes more; the message was not stored (docs/WEBHOOKS.md, *Bounds*).
    #[error("the room's webhook backlog is full; retry after {retry_after_ms} ms")]
    Backpressure { retry_after_ms: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a history read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Normal: the backend removed this user from the room for a while.
    #[error("this user is banned from the room")]
    Banned,
    /// Normal: the reader (or the room) is over its read budget.
    #[error("read budget exceeded; retry after {retry_after_ms} ms")]
    RateLimited { retry_after_ms: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Counters for the stats endpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    pub epoch: String,
    pub seq: u64,
    pub connections: usize,
    pub users: usize,
    pub history: u64,
    pub oldest: Option<u64>,
    /// Messages stored (client and HTTP publishes) since `countersSince`.
    pub messages_in: u64,
    /// Live deliveries to connections since `countersSince`, one per recipient: stored messages
    /// (echoes included), direct messages and broadcasts; replays and history pages not counted.
    pub messages_out: u64,
    /// Connections opened since `countersSince`.
    pub connections_opened: u64,
    /// When this instance of the room started counting (it restarts after hibernation).
    pub counters_since: u64,
    /// The webhook outbox (docs/WEBHOOKS.md).
    pub webhook: WebhookStats,
}

/// The answer to `DELETE /rooms/:room/history`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Reset {
    /// The new epoch; seq starts again at 0.
    pub epoch: String,
    /// How many stored messages were deleted.
    pub deleted: u64,
}
