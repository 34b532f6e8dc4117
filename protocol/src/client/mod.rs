//! The client's connection logic as a pure state machine (the browser SDK is its adapter):
//! states, backoff, heartbeats, resume and the offline queue. Like the room, it does no IO and
//! draws no randomness of its own: the adapter reports socket events and the time, the seed comes
//! in at construction, and what to do comes back from `poll_output` and `poll_timeout`.
//!
//! It never parses JSON: the adapter reads the few fields it needs (the browser's `JSON.parse`
//! is free, and serde would triple the SDK's size), and message payloads never enter it.
//!
//! What the client accepts is checked against what the room told it, never taken on trust: a
//! `message` must carry exactly the next seq (one that jumps ahead is not delivered: the client
//! reports it and reconnects to resume, so the room replays what is really missing), and a welcome
//! that contradicts what the client saw is reported as a gap. Whatever a frame claims, the client
//! never stops delivering the room's real messages.
//!
//! Tokens from the app's token function are also refreshed on the open connection before they
//! expire (a `refresh` frame), so a long-lived connection is not closed with 4002.
//!
//! States follow centrifuge-js: `Connecting` (first connection), `Open` (the welcome arrived),
//! `Reconnecting` (after a drop, until open again), `Closed` (by `close()` or a final close
//! code). Every change goes through [`Client::set_state`], which emits it with a code and reason.

pub mod backoff;

use crate::close::{self, CloseCode};
use crate::PING;
use alloc::borrow::ToOwned;
use alloc::collections::VecDeque;
use alloc::string::String;
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
    /// Most unacknowledged publishes kept (sent or waiting to be).
    pub queue_max: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            backoff: Backoff { min_ms: 500, max_ms: 30_000, factor: 2.0, jitter: true },
            min_uptime_ms: 5_000,
            connect_timeout_ms: 10_000,
            ping_interval_ms: 20_000,
            pong_timeout_ms: 10_000,
            queue_max: 1_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Open,
    Reconnecting,
    Closed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Open => "open",
            State::Reconnecting => "reconnecting",
            State::Closed => "closed",
        }
    }
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

/// What the adapter must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Get a fresh token (the app gave a function), then call [`Client::handle_token`]: before a
    /// connection attempt, or to refresh the open connection's token before it expires.
    FetchToken,
    /// Open a socket, resuming from `(epoch, since)` when given.
    Connect { resume: Option<(String, u64)> },
    /// Send this text on the open socket.
    Send(String),
    /// Send `{"type":"refresh","token":<token>}` on the open socket, with the token the adapter
    /// just fetched. Tokens never enter the machine (the adapter connects with them too), so it
    /// neither holds credentials nor needs a JSON string encoder.
    SendRefresh,
    /// Close the current socket (the client already counts it as gone).
    CloseSocket(CloseCode),
    Status(Status),
    /// Messages were missed and will not be replayed: `since` is the last seq seen. `reason` is
    /// the room's (`retention`, `epoch`, `ahead`, `unavailable`), or the client's own reading of a
    /// welcome that contradicts what it saw (`ahead`: the room is behind the client's last seq;
    /// `epoch`: a different history).
    Gap { reason: String, since: u64 },
    /// A `message` (or a publish's ack) claimed seq `received` when `expected` was next. Nothing
    /// was delivered; the socket is dropped and the client resumes from `expected - 1`, so the
    /// room replays whatever is really missing. Normal only if frames were lost or forged.
    OutOfOrder { expected: u64, received: u64 },
    /// A publish or direct message was acknowledged.
    Acked { id: String, seq: Option<u64> },
    /// A publish or direct message failed for good (an error frame, a full queue, or close).
    Rejected { id: String, code: String },
}

/// Why a publish could not even be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// The queue holds `queue_max` publishes; the newest is refused.
    Full,
    /// The client is closed.
    Closed,
    /// Direct messages are not queued, and the client is not open.
    Offline,
}

#[derive(Debug, Clone)]
struct Queued {
    id: String,
    text: String,
}

#[derive(Debug, Default, Clone, Copy)]
struct Timers {
    connect_deadline: Option<u64>,
    reconnect_at: Option<u64>,
    ping_at: Option<u64>,
    pong_deadline: Option<u64>,
    /// When to fetch a fresh token for the open connection.
    refresh_at: Option<u64>,
}

/// One client connection to one room, across reconnects.
#[derive(Debug)]
pub struct Client {
    config: ClientConfig,
    state: State,
    attempt: u32,
    rng: Rng,
    fetches_token: bool,
    /// Waiting for the adapter's token before connecting.
    awaiting_token: bool,
    /// Waiting for the adapter's token to refresh the open connection's.
    awaiting_refresh: bool,
    /// When the open connection's token expires (ms), as the room said.
    expires: Option<u64>,
    /// Whether a socket is in use (connecting or open).
    socket: bool,
    epoch: Option<String>,
    last_seq: u64,
    opened_at: Option<u64>,
    queue: VecDeque<Queued>,
    session: String,
    next_id: u64,
    timers: Timers,
    outputs: VecDeque<Output>,
}

/// Appends `n` in decimal; the SDK avoids `format!` and its machinery in the wasm build.
pub fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[i..] {
        out.push(*d as char);
    }
}

/// `{"type":<kind>,"id":<id>[,"to":<to_json>],"data":<data_json>}`, built by concatenation: the id
/// is ours (no escaping needed) and the JSON parts come already encoded.
fn frame_text(kind: &str, id: &str, to_json: Option<&str>, data_json: &str) -> String {
    let mut text = String::with_capacity(data_json.len() + id.len() + to_json.map_or(0, str::len) + 48);
    text.push_str(r#"{"type":""#);
    text.push_str(kind);
    text.push_str(r#"","id":""#);
    text.push_str(id);
    text.push('"');
    if let Some(to) = to_json {
        text.push_str(r#","to":"#);
        text.push_str(to);
    }
    text.push_str(r#","data":"#);
    text.push_str(data_json);
    text.push('}');
    text
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

/// The client's own reason for dropping a socket whose frames jumped ahead of the sequence. The
/// socket itself is closed with 1000 (browsers allow no other code below 3000); 4000 is what the
/// status reports, like a connect timeout: retryable.
const OUT_OF_ORDER: CloseCode = CloseCode { code: 4000, reason: "message out of order" };

impl Client {
    /// A client that starts connecting at once. `seed` drives the jitter and the message-id
    /// prefix; `fetches_token` says whether a token must be fetched before every attempt.
    pub fn new(config: ClientConfig, seed: u64, fetches_token: bool, now: u64) -> Client {
        let mut rng = Rng::new(seed);
        // Message ids must not repeat across page loads with the same client id (the server
        // would take a new message for a retry), so they carry a random session prefix.
        const ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";
        let mut session = String::with_capacity(10);
        let mut bits = rng.next_u64();
        for _ in 0..10 {
            session.push(ALPHABET[(bits & 31) as usize] as char);
            bits >>= 5;
        }
        let mut client = Client {
            config,
            state: State::Connecting,
            attempt: 0,
            rng,
            fetches_token,
            awaiting_token: false,
            awaiting_refresh: false,
            expires: None,
            socket: false,
            epoch: None,
            last_seq: 0,
            opened_at: None,
            queue: VecDeque::new(),
            session,
            next_id: 0,
            timers: Timers::default(),
            outputs: VecDeque::new(),
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

    // ---- outputs -----------------------------------------------------------------------------

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Client::handle_timeout`] should run next; `None` when nothing is scheduled (a
    /// closed client has no timers at all).
    pub fn poll_timeout(&self) -> Option<u64> {
        let t = self.timers;
        [t.connect_deadline, t.reconnect_at, t.ping_at, t.pong_deadline, t.refresh_at].into_iter().flatten().min()
    }

    // ---- commands ----------------------------------------------------------------------------

    /// Queues a publish of `data_json` (already JSON) and returns its id. It is sent at once when
    /// open, otherwise on the next open, and resent with the same id after every reconnect until
    /// acknowledged, so the server applies it once.
    pub fn publish(&mut self, data_json: &str) -> Result<String, QueueError> {
        if self.state == State::Closed {
            return Err(QueueError::Closed);
        }
        if self.queue.len() >= self.config.queue_max {
            return Err(QueueError::Full);
        }
        let id = self.new_id();
        let text = frame_text("publish", &id, None, data_json);
        if self.state == State::Open {
            self.outputs.push_back(Output::Send(text.clone()));
        }
        self.queue.push_back(Queued { id: id.clone(), text });
        Ok(id)
    }

    /// Sends a direct message; `to_json` is `{"user":…}` or `{"clientId":…}`. Direct messages are
    /// not stored by the server, so they are not queued or retried: offline, they fail at once.
    pub fn direct(&mut self, to_json: &str, data_json: &str) -> Result<String, QueueError> {
        if self.state != State::Open {
            return Err(if self.state == State::Closed { QueueError::Closed } else { QueueError::Offline });
        }
        let id = self.new_id();
        self.outputs.push_back(Output::Send(frame_text("direct", &id, Some(to_json), data_json)));
        Ok(id)
    }

    /// Closes for good: no timers, no attempts, queued publishes rejected.
    pub fn close(&mut self) {
        if self.state == State::Closed {
            return;
        }
        if self.socket {
            self.socket = false;
            self.outputs.push_back(Output::CloseSocket(CloseCode { code: 1000, reason: "client closed" }));
        }
        self.finish(1000, "client closed");
    }

    // ---- inputs ------------------------------------------------------------------------------

    /// The token the adapter fetched is ready (`ok`), or fetching it failed: for a connection
    /// attempt, or for a refresh of the open connection's token.
    pub fn handle_token(&mut self, ok: bool, now: u64) {
        if self.state == State::Closed {
            return;
        }
        if self.awaiting_token {
            self.awaiting_token = false;
            if ok {
                self.connect(now);
            } else {
                self.schedule_reconnect(0, "token fetch failed", now);
            }
        } else if self.awaiting_refresh {
            self.awaiting_refresh = false;
            if ok {
                self.outputs.push_back(Output::SendRefresh);
            } else {
                // Tried again while the token is still valid; past that, the room closes the
                // connection with 4002 and the reconnect fetches one.
                self.timers.refresh_at = self.expires.and_then(|e| retry_refresh_at(now, e));
            }
        }
    }

    /// The welcome frame arrived: the connection is open. `expires` is when its token expires
    /// (ms; `None` for anonymous connections).
    pub fn handle_welcome(&mut self, epoch: &str, seq: u64, resumed: Option<Resumed>, expires: Option<u64>, now: u64) {
        if !self.socket || self.state == State::Closed {
            return;
        }
        // A resume was asked exactly when an epoch is known (see `connect`).
        let asked = self.epoch.is_some();
        let same_epoch = self.epoch.as_deref() == Some(epoch);
        // Recovered: the replay (last_seq + 1 ..= seq) follows and moves `last_seq` on. Only
        // believed when it fits what the client saw: a room at a seq below the client's last one
        // could never send the next message the client waits for, and it would go quiet. A room
        // at exactly the client's seq has nothing to replay, whatever it says.
        let recovered = same_epoch
            && (seq == self.last_seq || (seq > self.last_seq && matches!(resumed, Some(Resumed::Recovered))));
        if asked && !recovered {
            let reason = match resumed {
                Some(Resumed::NotRecovered(reason)) => reason,
                _ if !same_epoch => "epoch".to_owned(),
                _ if seq < self.last_seq => "ahead".to_owned(),
                // Asked, and the room said nothing about it: nothing will be replayed.
                _ => "unavailable".to_owned(),
            };
            self.outputs.push_back(Output::Gap { reason, since: self.last_seq });
        }
        if !recovered {
            self.last_seq = seq;
        }
        self.epoch = Some(epoch.to_owned());
        self.opened_at = Some(now);
        self.timers.connect_deadline = None;
        self.timers.ping_at = Some(now.saturating_add(self.config.ping_interval_ms));
        self.timers.pong_deadline = None;
        self.expires = expires;
        self.timers.refresh_at = expires.filter(|_| self.fetches_token).map(|e| refresh_at(now, e));
        self.set_state(State::Open, 0, 0, "");
        // The queue goes out in order, with its original ids; the server drops what it has.
        for q in &self.queue {
            self.outputs.push_back(Output::Send(q.text.clone()));
        }
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

    /// An ack arrived. A publish's seq also moves `last_seq`: the server sent everything before
    /// it first, and with echo off the message itself does not come back live. So an ack further
    /// ahead than the next seq means messages were lost, exactly like a message that jumps.
    pub fn handle_ack(&mut self, id: &str, seq: Option<u64>, now: u64) {
        if let Some(i) = self.queue.iter().position(|q| q.id == id) {
            self.queue.remove(i);
        }
        self.outputs.push_back(Output::Acked { id: id.to_owned(), seq });
        match seq {
            Some(seq) if seq == self.last_seq.saturating_add(1) => self.last_seq = seq,
            Some(seq) if seq > self.last_seq && self.socket && self.state == State::Open => self.out_of_order(seq, now),
            _ => {}
        }
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
        self.timers.refresh_at = if extended { Some(refresh_at(now, expires)) } else { retry_refresh_at(now, expires) };
        self.expires = Some(expires);
    }

    /// An error frame arrived for a publish or direct message.
    pub fn handle_error(&mut self, id: &str, code: &str) {
        if let Some(i) = self.queue.iter().position(|q| q.id == id) {
            self.queue.remove(i);
        }
        self.outputs.push_back(Output::Rejected { id: id.to_owned(), code: code.to_owned() });
    }

    pub fn handle_pong(&mut self) {
        self.timers.pong_deadline = None;
    }

    /// The socket closed (or failed to open).
    pub fn handle_close(&mut self, code: u16, reason: &str, now: u64) {
        if !self.socket || self.state == State::Closed {
            return;
        }
        self.socket = false;
        if CloseCode::is_final(code) {
            self.finish(code, reason);
        } else {
            self.schedule_reconnect(code, reason, now);
        }
    }

    /// The network came back or the page became visible: reconnect now if waiting, or check an
    /// open connection with a ping.
    pub fn handle_wake(&mut self, now: u64) {
        match self.state {
            State::Reconnecting if self.timers.reconnect_at.is_some() => {
                self.timers.reconnect_at = None;
                self.begin_attempt(now);
            }
            State::Open if self.timers.pong_deadline.is_none() => self.ping(now),
            _ => {}
        }
    }

    pub fn handle_timeout(&mut self, now: u64) {
        let t = self.timers;
        if t.reconnect_at.is_some_and(|at| at <= now) {
            self.timers.reconnect_at = None;
            self.begin_attempt(now);
        }
        if t.connect_deadline.is_some_and(|at| at <= now) {
            self.timers.connect_deadline = None;
            self.drop_socket(CloseCode { code: 4000, reason: "connect timeout" }, now);
        }
        if t.pong_deadline.is_some_and(|at| at <= now) {
            self.drop_socket(close::HEARTBEAT_TIMEOUT, now);
        } else if t.ping_at.is_some_and(|at| at <= now) && self.state == State::Open {
            self.ping(now);
        }
        if self.timers.refresh_at.is_some_and(|at| at <= now) && self.state == State::Open && self.socket {
            self.timers.refresh_at = None;
            self.awaiting_refresh = true;
            self.outputs.push_back(Output::FetchToken);
        }
    }

    // ---- internals ---------------------------------------------------------------------------

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        let mut id = String::with_capacity(self.session.len() + 8);
        id.push_str(&self.session);
        id.push('-');
        push_u64(&mut id, self.next_id);
        id
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
        self.outputs.push_back(Output::Status(Status {
            state: self.state,
            attempt: self.attempt,
            delay_ms,
            code,
            reason: reason.to_owned(),
        }));
    }

    fn begin_attempt(&mut self, now: u64) {
        if self.fetches_token {
            self.awaiting_token = true;
            self.timers.connect_deadline = Some(now.saturating_add(self.config.connect_timeout_ms));
            self.outputs.push_back(Output::FetchToken);
        } else {
            self.connect(now);
        }
    }

    fn connect(&mut self, now: u64) {
        self.socket = true;
        self.timers.connect_deadline = Some(now.saturating_add(self.config.connect_timeout_ms));
        let resume = self.epoch.clone().map(|e| (e, self.last_seq));
        self.outputs.push_back(Output::Connect { resume });
    }

    fn ping(&mut self, now: u64) {
        self.outputs.push_back(Output::Send(PING.to_owned()));
        self.timers.pong_deadline = Some(now.saturating_add(self.config.pong_timeout_ms));
        self.timers.ping_at = Some(now.saturating_add(self.config.ping_interval_ms));
    }

    /// The client gives up on the current socket (timeout, dead heartbeat) and reconnects.
    fn drop_socket(&mut self, code: CloseCode, now: u64) {
        self.awaiting_token = false;
        if self.socket {
            self.socket = false;
            // Browsers may only send 1000 or 3000-4999; the reason says why.
            self.outputs.push_back(Output::CloseSocket(CloseCode { code: 1000, reason: code.reason }));
        }
        self.schedule_reconnect(code.code, code.reason, now);
    }

    fn out_of_order(&mut self, received: u64, now: u64) {
        self.outputs.push_back(Output::OutOfOrder { expected: self.last_seq.saturating_add(1), received });
        self.drop_socket(OUT_OF_ORDER, now);
    }

    fn schedule_reconnect(&mut self, code: u16, reason: &str, now: u64) {
        if self.opened_at.is_some_and(|t| now.saturating_sub(t) >= self.config.min_uptime_ms) {
            self.attempt = 0;
        }
        self.opened_at = None;
        self.attempt = self.attempt.saturating_add(1);
        let delay = self.config.backoff.delay(self.attempt, &mut self.rng);
        self.timers = Timers { reconnect_at: Some(now.saturating_add(delay)), ..Timers::default() };
        // A refresh belongs to the connection that is gone; the next one fetches its own token.
        self.awaiting_refresh = false;
        self.expires = None;
        self.set_state(State::Reconnecting, delay, code, reason);
    }

    fn finish(&mut self, code: u16, reason: &str) {
        self.timers = Timers::default();
        self.awaiting_token = false;
        self.awaiting_refresh = false;
        for q in core::mem::take(&mut self.queue) {
            self.outputs.push_back(Output::Rejected { id: q.id, code: "closed".to_owned() });
        }
        self.set_state(State::Closed, 0, code, reason);
    }
}

#[cfg(test)]
mod tests;
