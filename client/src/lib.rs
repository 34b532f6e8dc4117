//! A native client for roomcast rooms: tokio and tokio-tungstenite (rustls for `wss://`) around
//! the same pure [`roomcast_protocol::client::Client`] machine the browser SDK runs. Reconnection
//! with full-jitter backoff, heartbeats, resume with `{since, epoch}`, the bounded offline queue,
//! idempotent publish retries and token refresh are the machine's: this crate only carries out
//! what it asks (open a socket, send a frame, fetch a token, wake it at a time) and reports back
//! what happened (a frame, a close, the time). See README.md for examples.
//!
//! ```no_run
//! # async fn run() -> Result<(), roomcast_client::Error> {
//! use roomcast_client::{Client, Event, Options};
//! let (room, mut events) = Client::connect("https://rooms.example.com", "chat:lobby", Options::token("eyJ…")).await?;
//! let seq = room.publish(&serde_json::json!({"text": "hello"})).await?;
//! println!("stored as {seq}");
//! while let Some(event) = events.recv().await {
//!     if let Event::Message(m) = event {
//!         println!("{} {}", m.seq, m.data);
//!     }
//! }
//! # Ok(()) }
//! ```

mod conn;
mod driver;
mod frames;
mod session;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// 64 random bits (from the standard library's per-process random keys and the clock): the
/// default seed, also handy for ids that must not repeat across runs.
pub use driver::random_u64;
pub use frames::{Broadcast, ErrorEvent, HistoryPage, Message, PresenceEvent, Welcome};
pub use roomcast_protocol::client::backoff::Backoff;
pub use roomcast_protocol::client::{ClientConfig, State, Status};
pub use session::{JoinOptions, Session};

/// A boxed future returned by a token function.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// How the client authenticates.
#[derive(Clone, Default)]
pub enum Auth {
    /// No token: an anonymous room.
    #[default]
    None,
    /// One token for every connection (it is not refreshed; the room closes the connection with
    /// 4002 when it expires, and the reconnect presents the same token, which the edge refuses).
    Token(String),
    /// A token function, called before every connection attempt and before the open
    /// connection's token expires (a `refresh` frame). An `Err` counts as a failed fetch: after
    /// `ClientConfig::max_token_failures` in a row the client closes.
    Callback(Arc<dyn Fn() -> TokenFuture + Send + Sync>),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Token(_) => "Auth::Token(..)",
            Auth::Callback(_) => "Auth::Callback(..)",
        })
    }
}

/// How to connect. `Options::default()` is an anonymous connection with the SDK's defaults.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub auth: Auth,
    /// The client id (`cid`): one per running connection; a random one when `None`.
    pub client_id: Option<String>,
    /// Receive this connection's own publishes and broadcasts live too.
    pub echo: bool,
    /// On the first connection (no resume point yet), replay the last N stored messages first.
    pub rewind: Option<u64>,
    /// Backoff, heartbeat, timeouts and the offline queue's bound (the machine's settings).
    pub config: ClientConfig,
    /// The seed of the backoff jitter and of the message-id prefix; drawn at random when `None`.
    pub seed: Option<u64>,
}

impl Options {
    /// A connection with one fixed token.
    pub fn token(token: impl Into<String>) -> Options {
        Options { auth: Auth::Token(token.into()), ..Options::default() }
    }

    /// A connection that asks `f` for a token before every attempt and to refresh it.
    pub fn token_fn<F, Fut>(f: F) -> Options
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        Options { auth: Auth::Callback(Arc::new(move || Box::pin(f()) as TokenFuture)), ..Options::default() }
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The room refused the call (`code` is the room's: `forbidden`, `rate_limited`, …), or the
    /// client did: `queue_full`, `offline` (not open, for calls that are not queued), `too_large`,
    /// `closed`, `disconnected` (the socket went before the answer; not resent).
    #[error("{code}: {message}")]
    Refused { code: String, message: String },
    /// The URL or the room name cannot make a connection.
    #[error("bad url: {0}")]
    Url(String),
    /// The payload could not be encoded, or an answer decoded into the asked type.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// The refusal's code (`closed` for a client whose driver is gone), or `None` for a URL or
    /// JSON error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    pub(crate) fn refused(code: &str, message: impl Into<String>) -> Error {
        Error::Refused { code: code.to_owned(), message: message.into() }
    }

    fn gone() -> Error {
        Error::refused("closed", "the client is closed")
    }
}

/// Who a direct message is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    User(String),
    ClientId(String),
}

/// What the room (or the connection) tells the app, in order.
#[derive(Debug, Clone)]
pub enum Event {
    /// A connection opened: the room's welcome (its seq, epoch, who this connection is).
    Welcome(Welcome),
    /// A stored message, in seq order, each once (own ones only with `echo`).
    Message(Message),
    /// An ephemeral message from another connection.
    Broadcast(Broadcast),
    /// A direct message for this connection.
    Direct(Broadcast),
    /// Input for the shared terminal this connection runs (from a token with the `input` right).
    Input(Broadcast),
    /// A member changed.
    Presence(PresenceEvent),
    /// Messages after `since` were missed and will not be replayed (`reason`: `retention`,
    /// `epoch`, `ahead`, `unavailable`). Read them with [`Room::history`] if needed.
    Gap { reason: String, since: u64 },
    /// The connection's state changed (connecting, open, reconnecting with its delay, closed).
    Status(Status),
    /// An error no call waits for: a frame that could not be read, an error frame without id, a
    /// seq out of order (the client then resumes by itself).
    Error(ErrorEvent),
}

/// The stream of [`Event`]s of one room; it ends when the client is closed for good.
pub struct Events {
    pub(crate) rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event, or `None` once the client closed and every event was read.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// The answer to a call, as the driver hands it back.
pub(crate) struct Answer {
    pub seq: Option<u64>,
    /// The frame that answered (an `ack`'s, a `history` page).
    pub frame: Option<Value>,
}

pub(crate) type Reply = oneshot::Sender<Result<Answer, Error>>;

/// What a [`Room`] asks of its driver.
pub(crate) enum Command {
    Publish { data: String, reply: Reply },
    Broadcast { data: String, ack: bool, reply: Reply },
    History { limit: Option<u64>, before: Option<u64>, since: Option<u64>, reply: Reply },
    Presence { meta: String, reply: Reply },
    Direct { to: String, data: String, reply: Reply },
    Input { to: String, data: String, reply: Reply },
    LastSeq(oneshot::Sender<(u64, Option<String>)>),
    Wake,
    Close,
}

/// A handle on one room's connection; clone it freely. The connection lives until
/// [`Room::close`] is called, a final close code arrives, or every handle is dropped.
#[derive(Clone)]
pub struct Room {
    tx: RoomTx,
    client_id: Arc<str>,
}

/// Where a room's commands go: its own socket's driver, or its session's (with its name).
#[derive(Clone)]
pub(crate) enum RoomTx {
    Own(mpsc::UnboundedSender<Command>),
    Session(mpsc::UnboundedSender<session::SessionCommand>, Arc<str>),
}

impl RoomTx {
    fn send(&self, cmd: Command) -> Result<(), ()> {
        match self {
            RoomTx::Own(tx) => tx.send(cmd).map_err(|_| ()),
            RoomTx::Session(tx, room) => tx.send(session::SessionCommand::Room { room: room.clone(), cmd }).map_err(|_| ()),
        }
    }
}

/// The entry point.
pub struct Client;

impl Client {
    /// Starts connecting to `room` at `url` (the edge's origin: `https://…`, `http://…`, `wss://…`
    /// or `ws://…`) and returns at once: calls made before the connection opens wait for it
    /// (publishes are queued), the rest fail with `offline`. Must run inside a tokio runtime.
    pub async fn connect(url: &str, room: &str, opts: Options) -> Result<(Room, Events), Error> {
        let endpoint = driver::endpoint(url, room)?;
        let client_id = match &opts.client_id {
            Some(id) => id.clone(),
            None => driver::random_client_id(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let (etx, erx) = mpsc::unbounded_channel();
        driver::spawn(endpoint, client_id.clone(), opts, rx, etx);
        Ok((Room { tx: RoomTx::Own(tx), client_id: client_id.into() }, Events { rx: erx }))
    }

    /// Opens a session socket (`/session/ws`): one socket, and one token, for many rooms
    /// ([`Session::join`]). A token is required (anonymous users have no session). The events are
    /// the session socket's own (`Status`, `Error`); each room has its own stream.
    pub async fn session(url: &str, opts: Options) -> Result<(Session, Events), Error> {
        session::spawn(url, opts)
    }
}

impl Room {
    /// This connection's client id (the `from` of what it publishes).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    async fn call(&self, make: impl FnOnce(Reply) -> Command) -> Result<Answer, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|()| Error::gone())?;
        rx.await.map_err(|_| Error::gone())?
    }

    /// Stores `data` in the room and returns its seq. Queued while offline and resent with the
    /// same id after every reconnect until the room answers, so it is stored once. Fails with
    /// `queue_full` when `ClientConfig::queue_max` publishes are unanswered.
    pub async fn publish<T: Serialize + ?Sized>(&self, data: &T) -> Result<u64, Error> {
        self.publish_json(serde_json::to_string(data)?).await
    }

    /// [`Room::publish`] of a text that is already JSON (not checked here: the room refuses
    /// what is not, with `bad_frame`).
    pub async fn publish_json(&self, data: String) -> Result<u64, Error> {
        let answer = self.call(|reply| Command::Publish { data, reply }).await?;
        answer.seq.ok_or_else(|| Error::refused("bad_frame", "an ack without seq"))
    }

    /// Sends an ephemeral message to the room's other members (never stored, never resent).
    /// Returns once it is handed to the socket; fails with `offline` when not open.
    pub async fn broadcast<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), Error> {
        let data = serde_json::to_string(data)?;
        self.call(|reply| Command::Broadcast { data, ack: false, reply }).await.map(|_| ())
    }

    /// [`Room::broadcast`], answered by the room (so a refusal comes back here).
    pub async fn broadcast_acked<T: Serialize + ?Sized>(&self, data: &T) -> Result<(), Error> {
        let data = serde_json::to_string(data)?;
        self.call(|reply| Command::Broadcast { data, ack: true, reply }).await.map(|_| ())
    }

    /// A page of stored messages: the latest `limit`, or those before `before`, or after `since`.
    pub async fn history(&self, limit: Option<u64>, before: Option<u64>, since: Option<u64>) -> Result<HistoryPage, Error> {
        let answer = self.call(|reply| Command::History { limit, before, since, reply }).await?;
        frames::history_page(answer.frame.as_ref())
    }

    /// Replaces this connection's presence meta (a JSON object); sent again after reconnects.
    pub async fn set_presence<T: Serialize + ?Sized>(&self, meta: &T) -> Result<(), Error> {
        let meta = serde_json::to_string(meta)?;
        self.call(|reply| Command::Presence { meta, reply }).await.map(|_| ())
    }

    /// Sends a direct message; returns how many connections got it when the token has the
    /// `presence` right (`None` without it).
    pub async fn send_to<T: Serialize + ?Sized>(&self, to: &Target, data: &T) -> Result<Option<u64>, Error> {
        let to = target_json(to);
        let data = serde_json::to_string(data)?;
        let answer = self.call(|reply| Command::Direct { to, data, reply }).await?;
        Ok(answer.frame.as_ref().and_then(|f| f.get("delivered")).and_then(Value::as_u64))
    }

    /// Sends input (keystrokes, a resize) to a shared terminal's agent; the token needs the
    /// `input` right (else `forbidden`). Settled like [`Room::send_to`].
    pub async fn send_input<T: Serialize + ?Sized>(&self, to: &Target, data: &T) -> Result<Option<u64>, Error> {
        let to = target_json(to);
        let data = serde_json::to_string(data)?;
        let answer = self.call(|reply| Command::Input { to, data, reply }).await?;
        Ok(answer.frame.as_ref().and_then(|f| f.get("delivered")).and_then(Value::as_u64))
    }

    /// The last seq delivered (or skipped as this client's own) and the room's epoch, once known.
    pub async fn last_seq(&self) -> (u64, Option<String>) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::LastSeq(tx)).is_err() {
            return (0, None);
        }
        rx.await.unwrap_or((0, None))
    }

    /// The network is back: reconnect now instead of waiting out the backoff.
    pub fn wake(&self) {
        let _ = self.tx.send(Command::Wake);
    }

    /// Closes for good: unanswered calls fail with `closed`, and the event stream ends.
    pub fn close(&self) {
        let _ = self.tx.send(Command::Close);
    }
}

fn target_json(to: &Target) -> String {
    match to {
        Target::User(u) => serde_json::json!({ "user": u }),
        Target::ClientId(c) => serde_json::json!({ "clientId": c }),
    }
    .to_string()
}

impl Message {
    /// The payload as `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(T::deserialize(&self.data)?)
    }
}

impl Broadcast {
    /// The payload as `T`.
    pub fn data_as<T: DeserializeOwned>(&self) -> Result<T, Error> {
        Ok(T::deserialize(&self.data)?)
    }
}
