//! The client's connection logic as a pure state machine (the browser SDK is its adapter):
//! states, backoff, heartbeats, resume and the offline queue. Like the room, it does no IO and
//! draws no randomness of its own: the adapter reports socket events and the time, the seed comes
//! in at construction, and what to do comes back from `poll_output` and `poll_timeout`.
//!
//! It never parses JSON: the adapter reads the few fields it needs (the browser's `JSON.parse`
//! is free, and serde would triple the SDK's size), and message payloads never enter it.
//!
//! Every frame a client sends is built here, by [`encode`]: publish, direct, ping, refresh,
//! history, broadcast and presence. JSON values (a publish's data, a target, a presence meta, the
//! token as a JSON string) come in already encoded by the adapter (the browser's `JSON.stringify`);
//! the machine adds only its own strings (types, ids, field names, numbers), which need no escaping.
//!
//! Calls the room answers are settled here too, whatever kind they are: publishes (queued and
//! resent until answered), and direct messages, history reads and acknowledged broadcasts (bound
//! to the socket they went out on), each by [`Output::Acked`] or [`Output::Rejected`] with its
//! id. Presence meta keeps one change in flight (the newest asked for goes next, and settles every
//! call made since) and the last one the room took goes again on every new connection.
//!
//! What the client accepts is checked against what the room told it, never taken on trust: a
//! `message` must carry exactly the next seq (one that jumps ahead is not delivered: the client
//! reports it and reconnects to resume, so the room replays what is really missing), and a welcome
//! that contradicts what the client saw is reported as a gap. Whatever a frame claims, the client
//! never stops delivering the room's real messages.
//!
//! Tokens from the app's token function are also refreshed on the open connection before they
//! expire (a `refresh` frame), so a long-lived connection is not closed with 4002. A token function
//! that keeps failing is not retried forever: after `max_token_failures` failed fetches in a row
//! the client stops (`closed`, [`close::TOKEN_GAVE_UP`]).
//!
//! Every publish settles: acknowledged, refused by the room (an error frame; never resent), refused
//! here before it is sent (a frame over the room's limit: [`QueueError::TooLarge`], or a queued
//! one the room's welcome says is too large), or rejected when the client closes. A direct message
//! in flight when its socket goes is rejected too (it is never resent).
//!
//! The welcome tells the client the room's liveness contract and limits: it pings at least as often
//! as the room asks, and refuses frames larger than the room takes. On a connection without a
//! resume point that asked to rewind (the adapter adds `rewind=N` whenever `Connect` has no
//! resume), the welcome says how many stored messages follow it, and the client takes them as the
//! next ones.
//!
//! States follow centrifuge-js: `Connecting` (first connection), `Open` (the welcome arrived),
//! `Reconnecting` (after a drop, until open again), `Closed` (by `close()` or a final close
//! code). Every change goes through [`Client::set_state`], which emits it with a code and reason.

pub mod abi;
pub mod backoff;
mod calls;
mod network;
pub mod session;
mod wire;

use wire::{decimal, push_all, push_nth};
pub use wire::{encode, push_u64};

use crate::close::{self, CloseCode};
use crate::PING;
use alloc::borrow::ToOwned;
use alloc::string::String;
use alloc::vec::Vec;
use backoff::{Backoff, Rng};

/// The client's settings, with the SDK's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    pub backoff: Backoff,
    /// The attempt count resets only after a connection stayed open this long, so a server that
    /// accepts and then drops at once still gets growing delays.
    pub min_uptime_ms: u64,
    /// How long an attempt may take to reach the welcome frame.
    pub connect_timeout_ms: u64,
    /// A ping goes out this often while open.
    pub ping_interval_ms: u64,
    /// A connection whose pong is this late is dead.
    pub pong_timeout_ms: u64,
    /// While the page is visible ([`Client::handle_visibility`]) a ping goes out at least this
    /// often, and its pong may be at most `check_timeout_ms` late: a silently dead link is noticed
    /// within the sum (8 s by default). The runtime answers pings without waking the room.
    pub visible_ping_interval_ms: u64,
    /// How late the pong of a check may be: the ping sent at once when the network comes or goes,
    /// the page becomes visible or is shown again, or the app asks ([`Client::handle_wake`]).
    pub check_timeout_ms: u64,
    /// Most unacknowledged publishes kept (sent or waiting to be).
    pub queue_max: usize,
    /// After this many failed token fetches in a row (for connection attempts) the client stops.
    /// Failures while offline, or that the adapter reports as the network being unreachable, do
    /// not count ([`Client::handle_token_unreachable`]).
    pub max_token_failures: u32,
    /// One room of a session socket ([`session`]): its "socket" is a join on the session's, whose
    /// own machine pings and refreshes the token. Acks then settle their calls only: through a
    /// session an ack may come before its message (they travel apart between the objects).
    pub relayed: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            backoff: Backoff { min_ms: 500, max_ms: 30_000, factor: 2.0, jitter: true },
            min_uptime_ms: 5_000,
            connect_timeout_ms: 10_000,
            ping_interval_ms: 20_000,
            pong_timeout_ms: 10_000,
            visible_ping_interval_ms: 4_000,
            check_timeout_ms: 4_000,
            queue_max: 1_000,
            max_token_failures: 10,
            relayed: false,
        }
    }
}

/// The connection's state; the discriminant is its number on the SDK's wasm boundary ([`abi`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Connecting = 0,
    Open = 1,
    Reconnecting = 2,
    Closed = 3,
}

/// A state change, as the `status` event reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: State,
    /// Failed attempts in a row (0 once a connection has stayed up).
    pub attempt: u32,
    /// How long until the next attempt (reconnecting only).
    pub delay_ms: u64,
    /// The close code that caused it (0 when none).
    pub code: u16,
    pub reason: String,
}

/// What the resume in a welcome frame said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resumed {
    Recovered,
    /// Not recovered, with the server's reason (`retention`, `epoch`, `ahead`, `unavailable`).
    NotRecovered(String),
}

/// The frame size limit a client assumes until a welcome states the room's
/// (`limits.maxFrameBytes`): the server's default `MAX_FRAME_BYTES`.
pub const DEFAULT_MAX_FRAME_BYTES: u64 = 65_536;

/// The broadcast size limit a client assumes until a welcome states the room's
/// (`limits.broadcastMaxBytes`): the server's default `BROADCAST_MAX_BYTES`.
pub const DEFAULT_BROADCAST_MAX_BYTES: u64 = 16_384;

/// The presence meta size limit a client assumes until a welcome states the room's
/// (`limits.presenceMetaMax`, in compact JSON bytes): the server's default.
pub const DEFAULT_PRESENCE_META_MAX: u64 = 1_024;

/// The shortest ping interval a welcome can set (a room asking for more would only flood itself).
pub const MIN_PING_INTERVAL_MS: u64 = 1_000;

/// What a welcome frame says that the machine uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Welcome<'a> {
    pub epoch: &'a str,
    pub seq: u64,
    /// The `resume` object, present when the connection asked to resume.
    pub resumed: Option<Resumed>,
    /// When the connection's token expires (ms); `None` for anonymous connections.
    pub expires: Option<u64>,
    /// `heartbeat.interval`: how often the room wants a ping (ms). The client pings every
    /// min(its own interval, this), and at most once a second.
    pub ping_interval: Option<u64>,
    /// `limits.maxFrameBytes`: the largest frame the room takes. Larger publishes are refused
    /// here, never sent.
    pub max_frame_bytes: Option<u64>,
    /// `rewind.replayed`: on a connection that asked for the last N messages (no resume point),
    /// how many follow the welcome. They are the next messages: `last_seq` starts that far back.
    pub rewound: Option<u64>,
    /// `limits.broadcastMaxBytes`: the largest broadcast frame the room takes.
    pub broadcast_max_bytes: Option<u64>,
    /// `limits.presenceMetaMax`: the largest presence meta the room takes (compact JSON bytes).
    pub presence_meta_max: Option<u64>,
}

/// A call's number: 1, 2, … in the order the client's calls were made (0 is none of them). The
/// call's frame carries it as `<session>-<number>` ([`Client::wire_id`]), a text no other client
/// or page load uses; numbers are what the machine keeps, compares and settles.
pub type CallId = u64;

/// What the adapter must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Get a fresh token (the app gave a function), then call [`Client::handle_token`]: before a
    /// connection attempt, or to refresh the open connection's token before it expires.
    FetchToken,
    /// Open a socket, resuming from `(epoch, since)` when given.
    Connect {
        resume: Option<(String, u64)>,
    },
    /// Send this text on the open socket.
    Send(String),
    /// Close the current socket (the client already counts it as gone).
    CloseSocket(CloseCode),
    Status(Status),
    /// Messages were missed and will not be replayed: `since` is the last seq seen. `reason` is
    /// the room's (`retention`, `epoch`, `ahead`, `unavailable`), or the client's own reading of a
    /// welcome that contradicts what it saw (`ahead`: the room is behind the client's last seq;
    /// `epoch`: a different history).
    Gap {
        reason: String,
        since: u64,
    },
    /// A `message` (or a publish's ack) claimed seq `received` when `expected` was next. Nothing
    /// was delivered; the socket is dropped and the client resumes from `expected - 1`, so the
    /// room replays whatever is really missing. Normal only if frames were lost or forged.
    OutOfOrder {
        expected: u64,
        received: u64,
    },
    /// A call was answered: a publish (with its seq), a direct message, a history read (the
    /// adapter holds the page it answered with), an acknowledged broadcast, or a presence change.
    ///
    /// `id` 0: an answer naming an id that is not one of this client's calls.
    Acked {
        id: CallId,
        seq: Option<u64>,
    },
    /// A call failed for good: `code` is the room's (an error frame that names its id),
    /// `too_large` (a queued publish over the limit a welcome stated), `closed` (the client
    /// closed), or `disconnected` (a direct message, history read or acknowledged broadcast whose
    /// socket went before its answer: it may or may not have been delivered, and it is not
    /// resent). A presence change is never `disconnected`: it goes again on the next connection.
    ///
    /// A refusal no call of the adapter's waits for is still reported: of a presence meta sent
    /// again after a reconnect (under that frame's own id), or of an id that is not this client's
    /// at all (`id` 0).
    Rejected {
        id: CallId,
        code: String,
    },
}

/// Why a publish could not even be queued. The discriminant is its number on the SDK's wasm
/// boundary ([`abi`]; 0 there means queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum QueueError {
    /// The queue holds `queue_max` publishes; the newest is refused.
    Full = 1,
    /// The client is closed.
    Closed = 2,
    /// Direct messages, history reads and broadcasts are not queued, and the client is not open.
    Offline = 3,
    /// The frame would be larger than the room's limit (`limits.maxFrameBytes`, or
    /// [`DEFAULT_MAX_FRAME_BYTES`] before the first welcome; for a broadcast also
    /// `limits.broadcastMaxBytes`; for a presence change, its meta over `limits.presenceMetaMax`);
    /// it is never sent. [`Client::refused`] says how large it was, and the limit.
    TooLarge = 4,
}

#[derive(Debug, Clone)]
struct Queued {
    id: CallId,
    text: String,
}

/// A presence change sent and not answered yet.
#[derive(Debug, Clone)]
struct SentPresence {
    /// The frame's id.
    id: CallId,
    meta: String,
    /// The calls it settles (the frame's id among them; none for a meta sent again after a
    /// reconnect).
    calls: Vec<CallId>,
}

/// Presence meta: one change in flight at a time, the newest asked for next.
#[derive(Debug, Default, Clone)]
struct Presence {
    /// The newest meta asked for and not sent yet, and the calls waiting for it.
    want: Option<String>,
    waiting: Vec<CallId>,
    inflight: Option<SentPresence>,
    /// The meta the room took last: a new connection starts with the token's, so it goes again.
    applied: Option<String>,
}

/// A timer that is not set: a time no clock reaches (`handle_timeout` takes `now` as at most one
/// millisecond before it). Plain times with this sentinel compile to less wasm than `Option`s.
const NEVER: u64 = u64::MAX;

/// When each timer is due ([`NEVER`]: not set).
#[derive(Debug, Clone, Copy)]
struct Timers {
    connect_deadline: u64,
    reconnect_at: u64,
    ping_at: u64,
    pong_deadline: u64,
    /// When to fetch a fresh token for the open connection.
    refresh_at: u64,
}

impl Timers {
    const NONE: Timers = Timers { connect_deadline: NEVER, reconnect_at: NEVER, ping_at: NEVER, pong_deadline: NEVER, refresh_at: NEVER };
}

/// One client connection to one room, across reconnects.
#[derive(Debug)]
// In the order the SDK's wasm reaches the fields most (`repr(C)` keeps it): a field within the first
// 128 bytes takes one byte less in every instruction that reads or writes it.
#[repr(C)]
pub struct Client {
    outputs: Outputs,
    state: State,
    /// Whether a socket is in use (connecting or open).
    socket: bool,
    fetches_token: bool,
    /// Waiting for the adapter's token before connecting.
    awaiting_token: bool,
    /// Waiting for the adapter's token to refresh the open connection's.
    awaiting_refresh: bool,
    attempt: u32,
    timers: Timers,
    last_seq: u64,
    next_id: u64,
    queue: Vec<Queued>,
    /// Calls sent on the current socket and not yet answered (direct messages, history reads,
    /// acknowledged broadcasts): they are not resent, so they fail when the socket goes.
    calls: Vec<CallId>,
    /// Failed token fetches in a row for connection attempts.
    token_failures: u32,
    /// What the adapter last said of the network (`online`/`offline`) and the page's visibility
    /// ([`network`]); online and not visible until told otherwise.
    online: bool,
    visible: bool,
    /// The wait the last close named (a 4029's `retryAfterMs`): the next delay's floor, and the
    /// time before which no wake or nudge tries early.
    wait_floor: u64,
    not_before: u64,
    /// The room's frame limit (the last welcome's, or the default).
    max_frame_bytes: u64,
    /// The ping interval of the open connection: min(config, the welcome's heartbeat interval).
    ping_interval: u64,
    presence: Presence,
    session: String,
    epoch: Option<String>,
    /// When the open connection's token expires (ms), as the room said.
    expires: Option<u64>,
    opened_at: Option<u64>,
    /// The room's broadcast and presence meta limits (the last welcome's, or the defaults).
    broadcast_max_bytes: u64,
    presence_meta_max: u64,
    /// The size and the limit of the last frame (or meta) refused as [`QueueError::TooLarge`].
    refused: (u64, u64),
    rng: Rng,
    config: ClientConfig,
}

/// The outputs in order: pushed at the back, taken from the front. (A `VecDeque` costs more wasm.)
#[derive(Debug, Default)]
struct Outputs {
    slots: Vec<Option<Output>>,
    /// The first slot not taken yet.
    next: usize,
}

impl Outputs {
    fn push(&mut self, out: Output) {
        self.slots.push(Some(out));
    }

    fn pop_front(&mut self) -> Option<Output> {
        let out = self.slots.get_mut(self.next).and_then(Option::take);
        if out.is_some() {
            self.next += 1;
        } else {
            self.slots.clear();
            self.next = 0;
        }
        out
    }
}

/// When to refresh a token that expires at `expires`: a fifth of its remaining life early, at
/// most a minute early (the room's leeway after expiry is 30 s, so a refresh has time to land),
/// and never in the past.
pub fn refresh_at(now: u64, expires: u64) -> u64 {
    let left = expires.saturating_sub(now);
    expires.saturating_sub((left / 5).min(60_000)).max(now)
}

/// When to try again after a refresh that brought nothing new (the token function failed, or
/// returned a token no fresher than the last): half the time left, at least a second on, and only
/// before the token expires. So a few tries, never a busy loop.
pub fn retry_refresh_at(now: u64, expires: u64) -> Option<u64> {
    let at = now.saturating_add((expires.saturating_sub(now) / 2).max(1_000));
    (at < expires).then_some(at)
}

impl Client {
    /// A client that starts connecting at once. `seed` drives the jitter and the message-id
    /// prefix; `fetches_token` says whether a token must be fetched before every attempt.
    pub fn new(config: ClientConfig, seed: u64, fetches_token: bool, now: u64) -> Client {
        let mut rng = Rng::new(seed);
        // Message ids must not repeat across page loads with the same client id (the server
        // would take a new message for a retry), so they carry a random session prefix.
        const ALPHABET: &str = "abcdefghijkmnpqrstuvwxyz23456789";
        let mut session = String::with_capacity(10);
        let mut bits = rng.next_u64();
        for _ in 0..10 {
            push_nth(&mut session, ALPHABET, (bits & 31) as usize);
            bits >>= 5;
        }
        let ping_interval = config.ping_interval_ms;
        let mut client = Client {
            config,
            state: State::Connecting,
            attempt: 0,
            rng,
            fetches_token,
            awaiting_token: false,
            awaiting_refresh: false,
            expires: None,
            token_failures: 0,
            online: true,
            visible: false,
            wait_floor: 0,
            not_before: 0,
            socket: false,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            ping_interval,
            epoch: None,
            last_seq: 0,
            opened_at: None,
            queue: Vec::new(),
            calls: Vec::new(),
            presence: Presence::default(),
            broadcast_max_bytes: DEFAULT_BROADCAST_MAX_BYTES,
            presence_meta_max: DEFAULT_PRESENCE_META_MAX,
            refused: (0, 0),
            session,
            next_id: 0,
            timers: Timers::NONE,
            outputs: Outputs::default(),
        };
        client.emit_status(0, 0, "");
        client.begin_attempt(now);
        client
    }

    // ---- getters -----------------------------------------------------------------------------

    pub fn state(&self) -> State {
        self.state
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn epoch(&self) -> Option<&str> {
        self.epoch.as_deref()
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Publishes not yet acknowledged.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The largest frame the client sends: the room's limit from the last welcome, or
    /// [`DEFAULT_MAX_FRAME_BYTES`].
    pub fn max_frame_bytes(&self) -> u64 {
        self.max_frame_bytes
    }

    /// How often the open connection pings.
    pub fn ping_interval(&self) -> u64 {
        self.ping_interval
    }

    /// The id call `id`'s frames carry: `<session>-<id>`, the session a random prefix drawn from
    /// the seed, so ids do not repeat across page loads with the same client id.
    #[allow(clippy::single_char_add_str)] // `push` of a char: see push_nth
    pub fn wire_id(&self, id: CallId) -> String {
        let mut text = self.session.clone();
        text.push_str("-");
        push_u64(&mut text, id);
        text
    }

    /// How large the last frame refused as [`QueueError::TooLarge`] was (for a presence change,
    /// its meta) and the limit it went over, in bytes, so the adapter can say by how much.
    pub fn refused(&self) -> (u64, u64) {
        self.refused
    }

    // ---- outputs -----------------------------------------------------------------------------

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Client::handle_timeout`] should run next; `None` when nothing is scheduled (a
    /// closed client has no timers at all).
    pub fn poll_timeout(&self) -> Option<u64> {
        let t = self.timers;
        let at = t.connect_deadline.min(t.reconnect_at).min(t.ping_at).min(t.pong_deadline).min(t.refresh_at);
        (at != NEVER).then_some(at)
    }

    /// Closes for good: no timers, no attempts, queued publishes rejected.
    pub fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        if self.socket {
            self.socket = false;
            self.outputs.push(Output::CloseSocket(close::CLIENT_CLOSED));
        }
        self.finish(close::CLIENT_CLOSED.code, close::CLIENT_CLOSED.reason);
    }

    /// The adapter could not even create a socket (the browser refused the request outright): the
    /// same request would be refused again, so the client stops ([`close::SOCKET_REFUSED`]).
    pub fn handle_socket_refused(&mut self) {
        if !self.socket || self.state == State::Closed {
            return;
        }
        self.socket_gone();
        self.finish(close::SOCKET_REFUSED.code, close::SOCKET_REFUSED.reason);
    }

    // ---- inputs ------------------------------------------------------------------------------

    /// The token the adapter fetched is ready (`token_json`: the token as a JSON string), or
    /// fetching it failed (`None`): for a connection attempt, or for a refresh of the open
    /// connection's token. Failures for connection attempts are counted: after
    /// `max_token_failures` in a row the client stops. The token only passes through: a refresh
    /// frame is sent with it at once, and it is not kept (the adapter connects with its own copy).
    pub fn handle_token(&mut self, token_json: Option<&str>, now: u64) {
        if self.state == State::Closed {
            return;
        }
        if self.awaiting_token {
            self.awaiting_token = false;
            if token_json.is_some() {
                self.token_failures = 0;
                self.connect(now);
            } else {
                self.token_failed(self.online, now);
            }
        } else if self.awaiting_refresh {
            self.awaiting_refresh = false;
            if token_json.is_some() {
                self.outputs.push(Output::Send(encode("refresh", None, &[("token", token_json)])));
            } else {
                // Tried again while the token is still valid; past that, the room closes the
                // connection with 4002 and the reconnect fetches one.
                self.timers.refresh_at = self.expires.and_then(|e| retry_refresh_at(now, e)).unwrap_or(NEVER);
            }
        }
    }

    /// The welcome frame arrived, read without its heartbeat and limits (the client keeps its own
    /// ping interval and the frame limit it had): [`Client::handle_welcome_frame`].
    pub fn handle_welcome(&mut self, epoch: &str, seq: u64, resumed: Option<Resumed>, expires: Option<u64>, now: u64) {
        self.handle_welcome_frame(Welcome { epoch, seq, resumed, expires, ..Welcome::default() }, now);
    }

    /// The welcome frame arrived: the connection is open.
    pub fn handle_welcome_frame(&mut self, welcome: Welcome<'_>, now: u64) {
        if !self.socket || self.state == State::Closed {
            return;
        }
        let Welcome { epoch, seq, resumed, expires, ping_interval, max_frame_bytes, rewound, broadcast_max_bytes, presence_meta_max } =
            welcome;
        self.max_frame_bytes = max_frame_bytes.unwrap_or(self.max_frame_bytes);
        self.broadcast_max_bytes = broadcast_max_bytes.unwrap_or(self.broadcast_max_bytes);
        self.presence_meta_max = presence_meta_max.unwrap_or(self.presence_meta_max);
        self.ping_interval = match ping_interval {
            Some(asked) => self.config.ping_interval_ms.min(asked.max(MIN_PING_INTERVAL_MS)),
            None => self.config.ping_interval_ms,
        };
        // A resume was asked exactly when an epoch is known (see `connect`).
        let asked = self.epoch.is_some();
        let same_epoch = self.epoch.as_deref() == Some(epoch);
        // Recovered: the replay (last_seq + 1 ..= seq) follows and moves `last_seq` on. Only
        // believed when it fits what the client saw: a room at a seq below the client's last one
        // could never send the next message the client waits for, and it would go quiet. A room
        // at exactly the client's seq has nothing to replay, whatever it says.
        let recovered = same_epoch && (seq == self.last_seq || (seq > self.last_seq && matches!(resumed, Some(Resumed::Recovered))));
        if asked && !recovered {
            let reason = match &resumed {
                Some(Resumed::NotRecovered(reason)) => reason,
                _ if !same_epoch => "epoch",
                _ if seq < self.last_seq => "ahead",
                // Asked, and the room said nothing about it: nothing will be replayed.
                _ => "unavailable",
            };
            self.outputs.push(Output::Gap { reason: reason.to_owned(), since: self.last_seq });
        }
        if !recovered {
            // A rewind (asked for only without a resume point) is the R messages up to `seq`,
            // next: so the client waits for `seq - R + 1`, and takes nothing twice or out of
            // order at the boundary with live messages. On a resume it means nothing.
            let back = if asked { 0 } else { rewound.unwrap_or(0) };
            self.last_seq = seq.saturating_sub(back);
        }
        self.epoch = Some(epoch.to_owned());
        self.opened_at = Some(now);
        self.timers.connect_deadline = NEVER;
        self.timers.ping_at = now.saturating_add(self.heartbeat().0);
        self.timers.pong_deadline = NEVER;
        self.expires = expires;
        self.timers.refresh_at = expires.filter(|_| self.fetches_token).map_or(NEVER, |e| refresh_at(now, e));
        self.set_state(State::Open, 0, 0, "");
        // Queued publishes over the room's limit would only be refused: they settle here. The rest
        // go out in order, with their original ids; the server drops what it has.
        let max = self.max_frame_bytes;
        let outputs = &mut self.outputs;
        self.queue.retain(|q| {
            let fits = q.text.len() as u64 <= max;
            outputs.push(if fits { Output::Send(q.text.clone()) } else { Output::Rejected { id: q.id, code: "too_large".to_owned() } });
            fits
        });
        // Then the presence meta: the newest asked for, or the last one the room took.
        if self.presence.want.is_none() {
            self.presence.want = self.presence.applied.clone();
        }
        self.send_presence();
    }

    /// A message frame with `seq` arrived. Returns whether to deliver it. Only the next seq is:
    /// replays can overlap what was already seen, and those duplicates are dropped silently; a seq
    /// further ahead (or any message before the welcome) means frames were lost or forged, so it
    /// is reported ([`Output::OutOfOrder`]) and the client reconnects to resume from `last_seq`.
    /// Believing it instead would drop every real message up to the claimed seq.
    pub fn handle_message(&mut self, seq: u64, now: u64) -> bool {
        if !self.socket {
            // From a socket already given up on; the resume covers it.
            return false;
        }
        if self.state == State::Open {
            if seq <= self.last_seq {
                return false;
            }
            if seq == self.last_seq.saturating_add(1) {
                self.last_seq = seq;
                return true;
            }
        }
        self.out_of_order(seq, now);
        false
    }

    /// The room took the fresh token from a `refresh` frame: the connection's token now expires
    /// at `expires` (ms).
    pub fn handle_refreshed(&mut self, expires: u64, now: u64) {
        if !self.socket || self.state != State::Open || !self.fetches_token {
            return;
        }
        // A token that expires no later than the last one (the app's function handed back a
        // cached token) would be refreshed again at once, over and over; wait a while instead.
        let extended = self.expires.is_none_or(|old| expires > old);
        self.timers.refresh_at = if extended { refresh_at(now, expires) } else { retry_refresh_at(now, expires).unwrap_or(NEVER) };
        self.expires = Some(expires);
    }

    /// The server said the connection's token expired while the socket stays open (a session
    /// socket's rooms leave with 4002 and the socket waits for a `refresh`): the token is fetched
    /// and sent in a `refresh` now, unless one is on its way. The rooms join again on their own
    /// backoff, or at once when the host wakes them after `refreshed`.
    pub fn handle_expired(&mut self) {
        if !self.socket || self.state != State::Open || !self.fetches_token || self.awaiting_refresh {
            return;
        }
        self.timers.refresh_at = NEVER;
        self.awaiting_refresh = true;
        self.outputs.push(Output::FetchToken);
    }

    /// Through a session: messages after `last_seq` up to `until` can no longer be delivered
    /// (trimmed from history). They are reported as a gap and the next one expected is `until + 1`.
    pub fn handle_gap(&mut self, until: u64) {
        if until > self.last_seq && self.socket && self.state == State::Open {
            self.outputs.push(Output::Gap { reason: "retention".to_owned(), since: self.last_seq });
            self.last_seq = until;
        }
    }

    pub fn handle_pong(&mut self) {
        self.timers.pong_deadline = NEVER;
    }

    /// The socket closed (or failed to open). A close without a reason gets the table's
    /// ([`CloseCode::reason_for`]), so the status always says why.
    /// A 4029 whose reason names a wait ([`close::retry_after_ms`]) is not retried sooner.
    pub fn handle_close(&mut self, code: u16, reason: &str, now: u64) {
        let wait = if code == 4029 { close::retry_after_ms(reason) } else { None };
        self.handle_close_after(code, reason, wait, now);
    }

    /// [`Client::handle_close`] with the wait already read from the reason (the SDK's adapter
    /// reads it in JavaScript, which costs the wasm nothing): the next attempt comes no sooner.
    pub fn handle_close_after(&mut self, code: u16, reason: &str, wait: Option<u64>, now: u64) {
        if !self.socket || self.state == State::Closed {
            return;
        }
        self.socket_gone();
        let reason = if reason.is_empty() { CloseCode::reason_for(code) } else { reason };
        if CloseCode::is_final(code) {
            self.finish(code, reason);
        } else {
            self.wait_floor = wait.unwrap_or(0);
            self.schedule_reconnect(code, reason, now);
        }
    }

    /// The page was shown again (`pageshow`) or the app asks (`reconnect()`); also part of the
    /// network coming back and the page becoming visible ([`network`]): reconnect now if waiting
    /// out a backoff, or check an open connection with a ping whose pong may be at most
    /// `check_timeout_ms` late.
    pub fn handle_wake(&mut self, now: u64) {
        match self.state {
            State::Reconnecting => self.handle_nudge(now),
            State::Open => self.check(now),
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: u64) {
        let now = now.min(NEVER - 1);
        let t = self.timers;
        if t.reconnect_at <= now {
            self.timers.reconnect_at = NEVER;
            self.begin_attempt(now);
        }
        if t.connect_deadline <= now {
            self.timers.connect_deadline = NEVER;
            if self.awaiting_token {
                // The token function did not answer in time: a failed fetch (its late answer is
                // ignored).
                self.awaiting_token = false;
                self.token_failed(self.online, now);
            } else {
                self.drop_socket(close::CONNECT_TIMEOUT, now);
            }
        }
        if t.pong_deadline <= now {
            self.drop_socket(close::HEARTBEAT_MISSED, now);
        } else if t.ping_at <= now && self.state == State::Open {
            self.ping(now);
        }
        if self.timers.refresh_at <= now && self.state == State::Open && self.socket {
            self.timers.refresh_at = NEVER;
            self.awaiting_refresh = true;
            self.outputs.push(Output::FetchToken);
        }
    }

    /// The one place the state changes; every change is emitted with its code and reason.
    fn set_state(&mut self, state: State, delay_ms: u64, code: u16, reason: &str) {
        if self.state == state && state != State::Reconnecting {
            return;
        }
        self.state = state;
        self.emit_status(delay_ms, code, reason);
    }

    fn emit_status(&mut self, delay_ms: u64, code: u16, reason: &str) {
        self.outputs.push(Output::Status(Status { state: self.state, attempt: self.attempt, delay_ms, code, reason: reason.to_owned() }));
    }

    fn begin_attempt(&mut self, now: u64) {
        if self.fetches_token {
            self.awaiting_token = true;
            self.timers.connect_deadline = now.saturating_add(self.config.connect_timeout_ms);
            self.outputs.push(Output::FetchToken);
        } else {
            self.connect(now);
        }
    }

    fn connect(&mut self, now: u64) {
        self.socket = true;
        self.timers.connect_deadline = now.saturating_add(self.config.connect_timeout_ms);
        let resume = self.epoch.clone().map(|e| (e, self.last_seq));
        self.outputs.push(Output::Connect { resume });
    }

    /// Sends a ping. A pong already awaited keeps its deadline (a ping never extends it).
    fn ping(&mut self, now: u64) {
        self.outputs.push(Output::Send(PING.to_owned()));
        let (every, timeout) = self.heartbeat();
        self.timers.pong_deadline = self.timers.pong_deadline.min(now.saturating_add(timeout));
        self.timers.ping_at = now.saturating_add(every);
    }

    /// The socket went: calls bound to it fail (`disconnected`), and a presence change in flight
    /// waits to go again (the newest meta asked for wins, and it settles every call made since).
    fn socket_gone(&mut self) {
        self.socket = false;
        self.reject_calls("disconnected");
        let p = &mut self.presence;
        if let Some(mut sent) = p.inflight.take() {
            p.want.get_or_insert(sent.meta);
            sent.calls.append(&mut p.waiting);
            p.waiting = sent.calls;
        }
    }

    /// A token fetch for a connection attempt failed (or timed out): retried with backoff, or,
    /// after `max_token_failures` in a row that `count`, the end. Failures while offline or
    /// unreachable do not count: the queue waits for the network however long it is gone.
    fn token_failed(&mut self, count: bool, now: u64) {
        self.token_failures = self.token_failures.saturating_add(count.into());
        if count && self.token_failures >= self.config.max_token_failures {
            self.finish(close::TOKEN_GAVE_UP.code, close::TOKEN_GAVE_UP.reason);
        } else {
            self.schedule_reconnect(close::TOKEN_FAILED.code, close::TOKEN_FAILED.reason, now);
        }
    }

    /// The client gives up on the current socket (timeout, dead heartbeat) and reconnects.
    fn drop_socket(&mut self, code: CloseCode, now: u64) {
        self.awaiting_token = false;
        if self.socket {
            self.socket_gone();
            // Browsers may only send 1000 or 3000-4999; the reason says why.
            self.outputs.push(Output::CloseSocket(CloseCode { code: 1000, reason: code.reason }));
        }
        self.schedule_reconnect(code.code, code.reason, now);
    }

    fn out_of_order(&mut self, received: u64, now: u64) {
        self.outputs.push(Output::OutOfOrder { expected: self.last_seq.saturating_add(1), received });
        self.drop_socket(close::OUT_OF_ORDER, now);
    }

    fn schedule_reconnect(&mut self, code: u16, reason: &str, now: u64) {
        if self.opened_at.is_some_and(|t| now.saturating_sub(t) >= self.config.min_uptime_ms) {
            self.attempt = 0;
        }
        self.opened_at = None;
        self.attempt = self.attempt.saturating_add(1);
        // A close that named its wait is not tried sooner (a wake or a nudge included).
        let floor = core::mem::take(&mut self.wait_floor);
        self.not_before = now.saturating_add(floor);
        let delay = self.config.backoff.delay(self.attempt, &mut self.rng).max(floor);
        self.timers = Timers { reconnect_at: now.saturating_add(delay), ..Timers::NONE };
        // A refresh belongs to the connection that is gone; the next one fetches its own token.
        self.awaiting_refresh = false;
        self.expires = None;
        self.set_state(State::Reconnecting, delay, code, reason);
    }

    /// Closed for good. The status comes first, so the adapter knows the close code and reason
    /// when it rejects what was still pending.
    fn finish(&mut self, code: u16, reason: &str) {
        self.timers = Timers::NONE;
        self.awaiting_token = false;
        self.awaiting_refresh = false;
        self.set_state(State::Closed, 0, code, reason);
        // Everything still pending: calls on the socket, queued publishes, presence changes.
        self.reject_calls("closed");
        let queue = core::mem::take(&mut self.queue);
        for q in &queue {
            self.reject(&[q.id], "closed");
        }
        let p = core::mem::take(&mut self.presence);
        if let Some(sent) = &p.inflight {
            self.reject(&sent.calls, "closed");
        }
        self.reject(&p.waiting, "closed");
    }
}

#[cfg(test)]
mod tests;
