//! A user's session as a pure state machine: every socket (device) of one user, and the rooms
//! each has joined, over one object. Sans-IO like the room: the adapter feeds it socket frames,
//! the rooms' answers and feed calls, and carries out its [`Output`]s.
//!
//! What it promises a device, per room it joined: every stored message exactly once, in seq
//! order, from where the device asked to start, or a `gap` frame saying what it cannot have;
//! every other frame of the room (welcome as `joined`, acks, broadcasts, presence, direct
//! messages, errors, `left`) in the room's order. How:
//!
//! - The room feeds the session once per user ([`crate::feed`], [`crate::relay`]); the session's
//!   [`Receiver`] keeps its position in each room (the answer the room resumes from).
//! - Each device keeps its own cursor per room (a [`Receiver`] of its own). A feed page goes to
//!   the devices whose cursor stands where the session stood before it; a device behind (it
//!   joined to resume from an older seq, or its welcome came after the page) catches up from the
//!   room's history with reads ([`RelayOp::Read`]) until it stands with the session. A cursor only
//!   moves forward over messages it passed on or said lost, so nothing is doubled or skipped.
//! - Frames from a device carry the room's name; the session checks the device joined that room
//!   and passes the frame to the room as it is (the room ignores the extra field): every rule of
//!   the room applies to it. Joins are checked against the device's verified token here
//!   (`Claims::rights_for`, user-limited names included) and again by the room's admission.
//!
//! Read positions (`mark_read`) are the user's, per room, stored and sent to every device.

use crate::feed::{Gap, Position, Receiver};
use crate::frame::ErrorCode;
use crate::limit::Bucket;
use crate::relay::{FeedCall, FeedPage, FeedReply, RelayIdentity, RelayOp, RelayResult};
use crate::token::{self, Claims};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[cfg(test)]
mod tests;

/// Most rooms one device may have joined at once.
pub const MAX_ROOMS_PER_DEVICE: usize = 200;
/// Messages per catch-up read.
const READ_LIMIT: usize = 100;
/// Failed catch-up reads in a row retried at once; past them, a device behind waits for the
/// room's next feed call (at least its probe) to try again, so a room that cannot be reached is
/// not called in a tight loop.
const READ_RETRIES: u32 = 3;
/// Most read positions a session keeps: past it, the one marked longest ago is forgotten (its
/// room then counts as never read).
pub const MAX_READ_POSITIONS: usize = 1_000;

/// A device's frame budget: every frame it sends (joins, leaves, read marks, refreshes, room
/// frames) takes one token. A room's own limits are per connection and start full on every
/// join, so without this a device could leave and join again to reset them (and make each
/// room's members see its presence come and go) as fast as it can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Frames per second, sustained.
    pub per_sec: u64,
    /// Frames a device may send at once.
    pub burst: u64,
    /// Frames refused in a row (for the rate) after which the device's socket is closed (4029).
    pub max_strikes: u32,
}

impl SessionLimits {
    /// From a room's limits: a device may publish and broadcast at one socket's rates, summed
    /// over all its rooms, and rejoin every room at once after a reconnect.
    pub fn from_config(c: &crate::config::RoomConfig) -> SessionLimits {
        SessionLimits {
            per_sec: c.rate_messages_per_sec.saturating_add(c.broadcast_rate_per_sec),
            burst: c.rate_messages_burst.saturating_add(MAX_ROOMS_PER_DEVICE as u64),
            max_strikes: c.max_strikes,
        }
    }
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits::from_config(&crate::config::RoomConfig::default())
    }
}

/// Who a device is: what its socket's attachment keeps (the session is rebuilt from the live
/// sockets after hibernation).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    #[serde(rename = "d")]
    pub id: u64,
    #[serde(rename = "c")]
    pub client_id: String,
    /// The token's claims: its user, expiry, room patterns and meta.
    #[serde(rename = "k")]
    pub claims: Claims,
}

/// How a join starts, as the device asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinStart {
    Fresh,
    Resume { epoch: String, since: u64 },
    Rewind(u64),
}

/// A device's join of one room, as stored (restored after hibernation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRow {
    pub device: u64,
    pub room: String,
    pub start: JoinStart,
    pub echo: bool,
    /// Welcomed: its cursor stands with the session's position (a session only sleeps caught up).
    pub live: bool,
}

/// What the session stores, as rows the adapter keeps under their key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Row {
    Join(JoinRow),
    /// The session's position in a room's feed.
    Feed {
        room: String,
        epoch: String,
        seq: u64,
        extras: u64,
    },
    /// The user's read position in a room, and when it was marked (the oldest is forgotten
    /// past [`MAX_READ_POSITIONS`]).
    Read {
        room: String,
        seq: u64,
        #[serde(default)]
        at: u64,
    },
    /// The rooms a device watches (`watch`).
    Watch {
        device: u64,
        rooms: Vec<String>,
    },
    /// The user was reported online (`user.online`) and not yet offline.
    Online,
    /// The user's last socket went: `user.offline` is due at `due` unless one comes back.
    Offline {
        due: u64,
    },
}

impl Row {
    /// The row's key: one row per join, per followed room, per read room.
    pub fn key(&self) -> String {
        match self {
            Row::Join(j) => format!("j {} {}", j.device, j.room),
            Row::Feed { room, .. } => format!("f {room}"),
            Row::Read { room, .. } => format!("r {room}"),
            Row::Watch { device, .. } => format!("w {device}"),
            Row::Online => "online".into(),
            Row::Offline { .. } => "offline".into(),
        }
    }
}

/// What the adapter must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A frame to a device's socket.
    Send {
        device: u64,
        text: String,
    },
    /// Close a device's socket.
    Close {
        device: u64,
        code: u16,
        reason: String,
    },
    /// Ask a room; report the result with [`Session::handle_relay_result`] quoting `device`.
    /// Calls to one room must be made in order (one in flight per room).
    Relay {
        room: String,
        device: u64,
        op: RelayOp,
    },
    Save(Row),
    Delete(String),
    /// Report `user.online` (the user's first socket connected), for webhooks.
    UserOnline,
    /// Report `user.offline` (the last socket went, the grace period passed), for webhooks.
    UserOffline,
    /// The device's identity changed (a refresh): its socket's attachment must hold it again
    /// ([`Session::device`]), since the session is rebuilt from the attachments after
    /// hibernation.
    Attach {
        device: u64,
    },
}

#[derive(Debug, Clone)]
struct Join {
    start: JoinStart,
    echo: bool,
    live: bool,
    /// A catch-up read in flight.
    reading: bool,
    /// Catch-up reads that failed in a row.
    read_failures: u32,
}

#[derive(Debug)]
struct Device {
    info: DeviceInfo,
    joins: BTreeMap<String, Join>,
    /// Per room: what this device was passed.
    cursor: Receiver,
    last_seen: u64,
    /// Its frame budget ([`SessionLimits`]) and the frames refused in a row.
    budget: Bucket,
    strikes: u32,
}

impl Device {
    fn new(info: DeviceInfo, limits: &SessionLimits, now: u64) -> Device {
        Device {
            info,
            joins: BTreeMap::new(),
            cursor: Receiver::new(),
            last_seen: now,
            budget: Bucket::new(limits.burst, limits.per_sec, now),
            strikes: 0,
        }
    }
}

/// The frames a device sends to the session itself, or with a room.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    since: Option<u64>,
    #[serde(default)]
    epoch: Option<String>,
    #[serde(default)]
    rewind: Option<u64>,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    rooms: Option<Vec<String>>,
}

/// What a room's welcome says that the session needs.
#[derive(Deserialize)]
struct WelcomeHead {
    epoch: String,
    seq: u64,
}

/// What the session needs to verify a `refresh`: the signing secret and the previous one.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    pub current: Vec<u8>,
    pub previous: Vec<u8>,
}

/// One user's session.
#[derive(Debug)]
pub struct Session {
    user: String,
    devices: BTreeMap<u64, Device>,
    /// Where the session stands in each room's feed.
    feed: Receiver,
    /// Per room: the user's read position and when it was marked.
    reads: BTreeMap<String, (u64, u64)>,
    out: VecDeque<Output>,
    secrets: Secrets,
    limits: SessionLimits,
    next_device: u64,
    /// Rooms watched (`watch`) and the devices watching each; the latest head each room said.
    watching: BTreeMap<String, BTreeSet<u64>>,
    heads: BTreeMap<String, Position>,
    /// Whether `user.online` was reported (and `user.offline` not since), and when the pending
    /// `user.offline` is due.
    online: bool,
    offline_due: Option<u64>,
    offline_grace_ms: u64,
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A room's frame with the room's name: `{"room":…,` before the rest of it. A welcome becomes
/// `joined`. The room encodes every frame as an object starting `{"type":"…"`.
pub fn with_room(room: &str, text: &str) -> String {
    let room = json_str(room);
    match text.strip_prefix("{\"type\":\"welcome\"") {
        Some(rest) => format!("{{\"type\":\"joined\",\"room\":{room}{rest}"),
        None => format!("{{\"room\":{room},{}", text.strip_prefix('{').unwrap_or(text)),
    }
}

fn frame_type(text: &str) -> &str {
    text.strip_prefix("{\"type\":\"").and_then(|r| r.split('"').next()).unwrap_or("")
}

fn error_frame(room: Option<&str>, id: Option<&str>, code: ErrorCode, message: &str) -> String {
    error_frame_after(room, id, code, message, None)
}

/// An error frame with how long to wait before the same frame may pass (`retryAfterMs`).
fn error_frame_after(room: Option<&str>, id: Option<&str>, code: ErrorCode, message: &str, retry_after_ms: Option<u64>) -> String {
    #[derive(Serialize)]
    struct E<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        code: &'static str,
        message: &'a str,
        #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    }
    serde_json::to_string(&E { kind: "error", room, id, code: code.as_str(), message, retry_after_ms }).unwrap_or_default()
}

/// `left`: the socket is no longer in `room`.
pub fn encode_left(room: &str, code: u16, reason: &str) -> String {
    with_room(room, &crate::relay::encode_left(code, reason))
}

/// `watch`: a watched room's latest seq, and how many of its messages are after the user's read
/// position.
pub fn encode_watch(room: &str, seq: u64, unread: u64) -> String {
    format!("{{\"type\":\"watch\",\"room\":{},\"seq\":{seq},\"unread\":{unread}}}", json_str(room))
}

/// `session`: the first frame on a session socket.
pub fn encode_hello(user: &str, client_id: &str, expires: u64) -> String {
    format!(
        "{{\"type\":\"session\",\"user\":{},\"clientId\":{},\"expires\":{expires},\"maxRooms\":{MAX_ROOMS_PER_DEVICE}}}",
        json_str(user),
        json_str(client_id)
    )
}

/// `gap`: messages of `room` this socket cannot have.
pub fn encode_gap(room: &str, gap: &Gap) -> String {
    match gap {
        Gap::Epoch => format!("{{\"type\":\"gap\",\"room\":{},\"reason\":\"epoch\"}}", json_str(room)),
        Gap::Retention { after, until } => {
            format!("{{\"type\":\"gap\",\"room\":{},\"reason\":\"retention\",\"after\":{after},\"until\":{until}}}", json_str(room))
        }
    }
}

impl Session {
    /// A session for `user`, numbering its devices from `now` × 1024 (ids never repeat across
    /// instances, as the room's connection ids do not).
    pub fn new(user: &str, secrets: Secrets, now: u64) -> Session {
        Session {
            user: user.to_owned(),
            devices: BTreeMap::new(),
            feed: Receiver::new(),
            reads: BTreeMap::new(),
            out: VecDeque::new(),
            secrets,
            limits: SessionLimits::default(),
            next_device: now.saturating_mul(1024).max(1),
            watching: BTreeMap::new(),
            heads: BTreeMap::new(),
            online: false,
            offline_due: None,
            offline_grace_ms: 5_000,
        }
    }

    /// The devices' frame budget (devices opened from now on, and restored ones).
    pub fn set_limits(&mut self, limits: SessionLimits) {
        self.limits = limits;
    }

    /// Rebuilds the session after hibernation from its live sockets' devices and its rows.
    /// Devices without a socket lose their joins (the rows are deleted).
    pub fn restore(&mut self, devices: Vec<DeviceInfo>, rows: Vec<Row>, now: u64) {
        for info in devices {
            self.next_device = self.next_device.max(info.id + 1);
            let id = info.id;
            self.devices.insert(id, Device::new(info, &self.limits, now));
        }
        let mut joins = Vec::new();
        for row in rows {
            match row {
                Row::Feed { room, epoch, seq, extras } => self.feed.follow_with(&room, Position { epoch, seq }, extras),
                Row::Read { room, seq, at } => {
                    self.reads.insert(room, (seq, at));
                }
                Row::Watch { device, rooms } if self.devices.contains_key(&device) => {
                    for room in rooms {
                        self.watching.entry(room).or_default().insert(device);
                    }
                }
                Row::Watch { device, .. } => self.out.push_back(Output::Delete(format!("w {device}"))),
                Row::Join(j) => joins.push(j),
                Row::Online => self.online = true,
                Row::Offline { due } => self.offline_due = Some(due),
            }
        }
        if !self.devices.is_empty() {
            // A socket is here: whatever grace period was running is over, with nothing to say.
            if self.offline_due.take().is_some() {
                self.out.push_back(Output::Delete(Row::Offline { due: 0 }.key()));
            }
        } else if self.online && self.offline_due.is_none() {
            // Reported online, and every socket gone without a close (the runtime restarted):
            // the grace period starts now.
            let due = now.saturating_add(self.offline_grace_ms);
            self.offline_due = Some(due);
            self.out.push_back(Output::Save(Row::Offline { due }));
        }
        for j in joins {
            let at = self.feed.position(&j.room).cloned();
            match self.devices.get_mut(&j.device) {
                Some(d) => {
                    // A session sleeps only with every live device caught up.
                    if let (true, Some(at)) = (j.live, at) {
                        d.cursor.follow(&j.room, at);
                    }
                    d.joins.insert(j.room.clone(), Join { start: j.start, echo: j.echo, live: j.live, reading: false, read_failures: 0 });
                }
                None => {
                    let key = Row::Join(j.clone()).key();
                    self.out.push_back(Output::Delete(key));
                    self.out.push_back(Output::Relay { room: j.room, device: j.device, op: RelayOp::Close { device: j.device } });
                }
            }
        }
        self.drop_unjoined_rooms();
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn device(&self, id: u64) -> Option<&DeviceInfo> {
        self.devices.get(&id).map(|d| &d.info)
    }

    /// The rooms a device joined.
    pub fn rooms_of(&self, device: u64) -> Vec<String> {
        self.devices.get(&device).map(|d| d.joins.keys().cloned().collect()).unwrap_or_default()
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn send(&mut self, device: u64, text: String) {
        self.out.push_back(Output::Send { device, text });
    }

    /// A socket opened with a verified token (`claims`) and a client id; returns the device id
    /// (its attachment is [`Session::device`]) and queues the session's welcome. A token for
    /// another user is refused (the session would speak for its own user with it).
    pub fn handle_open(&mut self, client_id: String, claims: Claims, now: u64) -> Result<u64, crate::close::CloseCode> {
        if claims.sub != self.user || self.user.is_empty() {
            return Err(crate::close::FORBIDDEN);
        }
        let id = self.next_device;
        self.next_device += 1;
        let expires = claims.expires_ms();
        let info = DeviceInfo { id, client_id, claims };
        let welcome = encode_hello(&self.user, &info.client_id, expires);
        self.devices.insert(id, Device::new(info, &self.limits, now));
        self.send(id, welcome);
        for (room, (seq, _)) in self.reads.clone() {
            self.send(id, encode_read_position(&room, seq));
        }
        // Back within the grace period: nothing to say. Otherwise the user just came online.
        if self.offline_due.take().is_some() {
            self.out.push_back(Output::Delete(Row::Offline { due: 0 }.key()));
        } else if !self.online {
            self.online = true;
            self.out.push_back(Output::Save(Row::Online));
            self.out.push_back(Output::UserOnline);
        }
        Ok(id)
    }

    /// When [`Session::handle_timeout`] is next due: the end of an offline grace period.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.offline_due
    }

    /// A timer fired: a grace period that ended with no socket back reports `user.offline`.
    pub fn handle_timeout(&mut self, now: u64) {
        if self.offline_due.is_some_and(|due| due <= now) && self.devices.is_empty() {
            self.offline_due = None;
            self.online = false;
            self.out.push_back(Output::Delete(Row::Offline { due: 0 }.key()));
            self.out.push_back(Output::Delete(Row::Online.key()));
            self.out.push_back(Output::UserOffline);
        }
    }

    /// How long a user's last socket may be gone before `user.offline` (a reload is not offline).
    pub fn set_offline_grace(&mut self, ms: u64) {
        self.offline_grace_ms = ms;
    }

    /// A socket closed: its joins end in every room. The user's last socket gone, `user.offline`
    /// is due after the grace period (unless a socket comes back within it).
    pub fn handle_close(&mut self, device: u64, now: u64) {
        if !self.devices.contains_key(&device) {
            return;
        }
        self.watch(device, Vec::new());
        let Some(d) = self.devices.remove(&device) else { return };
        for (room, join) in d.joins {
            self.out.push_back(Output::Delete(
                Row::Join(JoinRow { device, room: room.clone(), start: join.start, echo: join.echo, live: join.live }).key(),
            ));
            self.out.push_back(Output::Relay { room, device, op: RelayOp::Close { device } });
        }
        self.drop_unjoined_rooms();
        if self.devices.is_empty() && self.online && self.offline_due.is_none() {
            let due = now.saturating_add(self.offline_grace_ms);
            self.offline_due = Some(due);
            self.out.push_back(Output::Save(Row::Offline { due }));
        }
    }

    /// The backend closed this user's session (`DELETE /sessions/:user`): every socket closes
    /// with 4411, as a kick closes a room's, and leaves its rooms. Returns how many.
    pub fn handle_removed(&mut self, now: u64) -> usize {
        let devices: Vec<u64> = self.devices.keys().copied().collect();
        let c = crate::close::REMOVED;
        for &device in &devices {
            self.out.push_back(Output::Close { device, code: c.code, reason: "session closed by the backend".into() });
            self.handle_close(device, now);
        }
        devices.len()
    }

    /// Whether the session holds any socket (the adapter sweeps, on an alarm, while it does).
    pub fn has_devices(&self) -> bool {
        !self.devices.is_empty()
    }

    /// Devices whose last sign of life (a frame, or the runtime's auto-answered ping, from
    /// `last_pong`) is older than `timeout_ms` are closed (4001), like a room's sockets; devices
    /// whose token expired without a `refresh` are closed with 4002, so the client comes back with
    /// a fresh token and its rooms join again (the rooms close their own connections at expiry too).
    /// When the next device would be past the heartbeat timeout (a millisecond after its last sign
    /// of life plus `timeout_ms`): the adapter sweeps then, if that is before its regular sweep, so
    /// a dead socket is closed (and its rooms told) as soon as the timeout has run out.
    pub fn next_sweep(&self, timeout_ms: u64, last_pong: impl Fn(u64) -> Option<u64>) -> Option<u64> {
        self.devices.iter().map(|(id, d)| d.last_seen.max(last_pong(*id).unwrap_or(0)).saturating_add(timeout_ms).saturating_add(1)).min()
    }

    pub fn handle_sweep(&mut self, now: u64, timeout_ms: u64, last_pong: impl Fn(u64) -> Option<u64>) {
        let closing: Vec<(u64, crate::close::CloseCode)> = self
            .devices
            .iter()
            .filter_map(|(id, d)| {
                if now.saturating_sub(d.last_seen.max(last_pong(*id).unwrap_or(0))) > timeout_ms {
                    Some((*id, crate::close::HEARTBEAT_TIMEOUT))
                } else if token::is_expired(d.info.claims.expires_ms(), now) {
                    Some((*id, crate::close::TOKEN_EXPIRED))
                } else {
                    None
                }
            })
            .collect();
        for (device, c) in closing {
            self.out.push_back(Output::Close { device, code: c.code, reason: c.reason.into() });
            self.handle_close(device, now);
        }
    }

    /// A frame from a device.
    pub fn handle_text(&mut self, device: u64, text: &str, now: u64) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        d.last_seen = now;
        if !d.budget.take(1, now) {
            d.strikes = d.strikes.saturating_add(1);
            if d.strikes > self.limits.max_strikes {
                let c = crate::close::RATE_LIMITED;
                self.out.push_back(Output::Close { device, code: c.code, reason: c.reason.into() });
                return self.handle_close(device, now);
            }
            // Only the id and room are read back, to say which frame was refused.
            let env = serde_json::from_str::<Envelope<'_>>(text).ok();
            let (room, id) = env.map_or((None, None), |e| (e.room, e.id));
            let wait = d.budget.wait_ms(1, now);
            return self.send(
                device,
                error_frame_after(
                    room.as_deref(),
                    id.as_deref(),
                    ErrorCode::RateLimited,
                    "too many frames per second; slow down",
                    Some(wait),
                ),
            );
        }
        d.strikes = 0;
        if !text.trim_start().starts_with('{') {
            return self.send(device, error_frame(None, None, ErrorCode::BadFrame, "a frame is a JSON object"));
        }
        let env: Envelope<'_> = match serde_json::from_str(text) {
            Ok(env) => env,
            Err(e) => return self.send(device, error_frame(None, None, ErrorCode::BadFrame, &e.to_string())),
        };
        let id = env.id.as_deref();
        match (env.kind.as_ref(), env.room.as_deref()) {
            ("ping", None) => self.send(device, crate::frame::PONG.to_owned()),
            ("refresh", None) => match env.token.as_deref() {
                Some(t) => self.refresh(device, t, now),
                None => self.send(device, error_frame(None, None, ErrorCode::BadFrame, "refresh needs a token")),
            },
            ("join", Some(room)) => {
                let start = match (env.epoch, env.since, env.rewind) {
                    (Some(epoch), Some(since), _) if !epoch.is_empty() && epoch.len() <= 64 => JoinStart::Resume { epoch, since },
                    (None, None, Some(n)) => JoinStart::Rewind(n),
                    (None, None, None) => JoinStart::Fresh,
                    _ => {
                        return self.send(
                            device,
                            error_frame(Some(room), id, ErrorCode::BadFrame, "a resume needs both since and epoch; rewind goes alone"),
                        )
                    }
                };
                self.join(device, room, start, env.echo.unwrap_or(true), now)
            }
            ("leave", Some(room)) => self.leave(device, room, 1000, "left"),
            ("watch", None) => match env.rooms {
                Some(rooms) => self.watch(device, rooms),
                None => self.send(device, error_frame(None, id, ErrorCode::BadFrame, "watch needs rooms (a list of room names)")),
            },
            ("mark_read", Some(room)) => match env.seq {
                // A room this device was admitted to, or watches (its token granted it either way).
                Some(seq)
                    if self.devices.get(&device).is_some_and(|d| d.joins.get(room).is_some_and(|j| j.live))
                        || self.watching.get(room).is_some_and(|ds| ds.contains(&device)) =>
                {
                    self.mark_read(room, seq, now)
                }
                Some(_) => {
                    self.send(device, error_frame(Some(room), id, ErrorCode::BadFrame, "join or watch the room before marking it read"))
                }
                None => self.send(device, error_frame(Some(room), id, ErrorCode::BadFrame, "mark_read needs a seq")),
            },
            (_, Some(room)) => {
                if !self.devices.get(&device).is_some_and(|d| d.joins.contains_key(room)) {
                    return self.send(device, error_frame(Some(room), id, ErrorCode::BadFrame, "this device has not joined that room"));
                }
                let (room, text) = (room.to_owned(), text.to_owned());
                self.out.push_back(Output::Relay { room, device, op: RelayOp::Text { device, text } });
            }
            (_, None) => self.send(device, error_frame(None, id, ErrorCode::BadFrame, "a room frame needs a room")),
        }
    }

    fn join(&mut self, device: u64, room: &str, start: JoinStart, echo: bool, now: u64) {
        if let Err(e) = crate::name::validate_room(room) {
            return self.send(device, error_frame(Some(room), None, ErrorCode::BadFrame, &e.to_string()));
        }
        let Some(d) = self.devices.get_mut(&device) else { return };
        if d.joins.contains_key(room) {
            return self.send(device, error_frame(Some(room), None, ErrorCode::BadFrame, "already joined; leave first"));
        }
        if d.joins.len() >= MAX_ROOMS_PER_DEVICE {
            let message = format!("a device joins at most {MAX_ROOMS_PER_DEVICE} rooms");
            return self.send(device, error_frame(Some(room), None, ErrorCode::BadFrame, &message));
        }
        let claims = &d.info.claims;
        if token::is_expired(claims.expires_ms(), now) {
            let c = crate::close::TOKEN_EXPIRED;
            return self.send(device, encode_left(room, c.code, c.reason));
        }
        let rights = claims.rights_for(room);
        if !rights.subscribe {
            let c = crate::close::FORBIDDEN;
            return self.send(device, encode_left(room, c.code, "the token does not grant this room"));
        }
        let identity = RelayIdentity {
            cid: d.info.client_id.clone(),
            user: self.user.clone(),
            meta: claims.meta.clone(),
            echo,
            rights,
            expires: claims.expires_ms(),
        };
        d.joins.insert(room.to_owned(), Join { start: start.clone(), echo, live: false, reading: false, read_failures: 0 });
        self.out.push_back(Output::Save(Row::Join(JoinRow { device, room: room.to_owned(), start, echo, live: false })));
        self.out.push_back(Output::Relay { room: room.to_owned(), device, op: RelayOp::Open { device, identity } });
    }

    /// The device leaves `room` (it asked, the room refused or closed it, or the token lost the
    /// right): `left` goes to it, the room's connection closes.
    fn leave(&mut self, device: u64, room: &str, code: u16, reason: &str) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        let Some(join) = d.joins.remove(room) else {
            return self.send(device, error_frame(Some(room), None, ErrorCode::BadFrame, "this device has not joined that room"));
        };
        d.cursor.unfollow(room);
        let row = JoinRow { device, room: room.to_owned(), start: join.start, echo: join.echo, live: join.live };
        self.out.push_back(Output::Delete(Row::Join(row).key()));
        self.out.push_back(Output::Relay { room: room.to_owned(), device, op: RelayOp::Close { device } });
        self.send(device, encode_left(room, code, reason));
        self.drop_unjoined_rooms();
    }

    /// A room no device has joined any more is not followed (the room's next call is answered
    /// with no position, and it stops).
    fn drop_unjoined_rooms(&mut self) {
        // The followed rooms, in order (a joined room is never dropped, so the joined rooms need
        // no merging in: that sort was 4.8 KB of the Worker's wasm).
        for room in self.followed() {
            if !self.devices.values().any(|d| d.joins.contains_key(&room)) {
                self.feed.unfollow(&room);
                self.out.push_back(Output::Delete(format!("f {room}")));
            }
        }
    }

    fn followed(&self) -> Vec<String> {
        self.feed.rooms().map(str::to_owned).collect()
    }

    /// A fresh token for a device: it must verify and be for this session's user. Every room
    /// the device joined is checked again: those it no longer grants are left (4403), the
    /// others get the token too (each room checks it against its name, as for a socket).
    fn refresh(&mut self, device: u64, token_text: &str, now: u64) {
        let keys = [self.secrets.current.as_slice(), self.secrets.previous.as_slice()];
        let claims = match token::verify_any(token_text, &keys, now) {
            Ok(c) => c,
            Err(e) => return self.send(device, error_frame(None, None, ErrorCode::Unauthorized, &e.to_string())),
        };
        if claims.sub != self.user {
            return self.send(device, error_frame(None, None, ErrorCode::Forbidden, "the token is for another user"));
        }
        let Some(d) = self.devices.get_mut(&device) else { return };
        let expires = claims.expires_ms();
        d.info.claims = claims;
        self.out.push_back(Output::Attach { device });
        let rooms: Vec<String> = d.joins.keys().cloned().collect();
        let frame = format!("{{\"type\":\"refresh\",\"token\":{}}}", json_str(token_text));
        for room in rooms {
            let granted = self.devices.get(&device).is_some_and(|d| d.info.claims.rights_for(&room).subscribe);
            if granted {
                self.out.push_back(Output::Relay { room, device, op: RelayOp::Text { device, text: frame.clone() } });
            } else {
                let c = crate::close::FORBIDDEN;
                self.leave(device, &room, c.code, "the token no longer grants this room");
            }
        }
        self.send(device, format!("{{\"type\":\"refreshed\",\"expires\":{expires}}}"));
    }

    /// The user read `room` up to `seq`: at most what the session has of the room (its feed's
    /// position, or a watched room's head; a position past it would hide messages still to
    /// come), never backwards.
    fn mark_read(&mut self, room: &str, seq: u64, now: u64) {
        let known = self.feed.position(room).map_or(0, |p| p.seq).max(self.heads.get(room).map_or(0, |h| h.seq));
        let seq = seq.min(known);
        if seq <= self.reads.get(room).map_or(0, |r| r.0) {
            return; // read positions never move back
        }
        if !self.reads.contains_key(room) && self.reads.len() >= MAX_READ_POSITIONS {
            let oldest = self.reads.iter().min_by_key(|(_, (_, at))| *at).map(|(r, _)| r.clone());
            if let Some(oldest) = oldest {
                self.reads.remove(&oldest);
                self.out.push_back(Output::Delete(format!("r {oldest}")));
            }
        }
        self.reads.insert(room.to_owned(), (seq, now));
        self.out.push_back(Output::Save(Row::Read { room: room.to_owned(), seq, at: now }));
        let devices: Vec<u64> = self.devices.keys().copied().collect();
        for device in devices {
            self.send(device, encode_read_position(room, seq));
        }
    }

    /// A device's `watch`: the rooms it shows without joining them (a sidebar), replacing the
    /// ones it watched. Each is checked like a join (name, the token's right to subscribe); the
    /// session follows a room's head while any device watches it, and tells each watcher the
    /// latest seq and the unread count at once and then as it moves (at most once a second).
    fn watch(&mut self, device: u64, rooms: Vec<String>) {
        let Some(d) = self.devices.get(&device) else { return };
        let mut wanted = BTreeSet::new();
        let mut refused = Vec::new();
        for room in rooms {
            if crate::name::validate_room(&room).is_ok() && d.info.claims.rights_for(&room).subscribe && wanted.len() < MAX_ROOMS_PER_DEVICE
            {
                wanted.insert(room);
            } else {
                refused.push(room);
            }
        }
        if !refused.is_empty() {
            let message = format!("not watched (a bad name, no right to it, or over {MAX_ROOMS_PER_DEVICE} rooms): {}", refused.join(", "));
            self.send(device, error_frame(None, None, ErrorCode::Forbidden, &message));
        }
        let had: Vec<String> = self.watching.iter().filter(|(_, ds)| ds.contains(&device)).map(|(r, _)| r.clone()).collect();
        for room in had.iter().filter(|r| !wanted.contains(*r)) {
            let Some(devices) = self.watching.get_mut(room) else { continue };
            devices.remove(&device);
            if devices.is_empty() {
                self.watching.remove(room);
                self.heads.remove(room);
                self.out.push_back(Output::Relay { room: room.clone(), device, op: RelayOp::Watch { on: false } });
            }
        }
        for room in wanted.iter().filter(|r| !had.contains(*r)) {
            let devices = self.watching.entry(room.clone()).or_default();
            let first = devices.is_empty();
            devices.insert(device);
            if first {
                self.out.push_back(Output::Relay { room: room.clone(), device, op: RelayOp::Watch { on: true } });
            } else if let Some(head) = self.heads.get(room) {
                let unread = head.seq.saturating_sub(self.reads.get(room).map_or(0, |r| r.0));
                self.send(device, encode_watch(room, head.seq, unread));
            }
        }
        if wanted.is_empty() {
            self.out.push_back(Output::Delete(format!("w {device}")));
        } else {
            self.out.push_back(Output::Save(Row::Watch { device, rooms: wanted.into_iter().collect() }));
        }
    }

    /// A watched room's head moved.
    fn watched_head(&mut self, room: &str, page: FeedPage) -> FeedReply {
        let Some(devices) = self.watching.get(room).cloned() else { return FeedReply { answer: None, devices: Vec::new() } };
        let head = Position { epoch: page.epoch, seq: page.end.unwrap_or(0) };
        let unread = head.seq.saturating_sub(self.reads.get(room).map_or(0, |r| r.0));
        for &device in &devices {
            self.send(device, encode_watch(room, head.seq, unread));
        }
        self.heads.insert(room.to_owned(), head.clone());
        FeedReply {
            answer: Some(crate::relay::WireAnswer { epoch: head.epoch, seq: head.seq, extras: 0 }),
            devices: devices.into_iter().collect(),
        }
    }

    /// A room answered one op the session asked of it for `device`.
    pub fn handle_relay_result(&mut self, room: &str, device: u64, result: RelayResult) {
        match result {
            RelayResult::Refused { code, reason } => {
                let Some(d) = self.devices.get_mut(&device) else { return };
                let Some(join) = d.joins.remove(room) else { return };
                d.cursor.unfollow(room);
                let live = join.live;
                let row = JoinRow { device, room: room.to_owned(), start: join.start, echo: join.echo, live };
                self.out.push_back(Output::Delete(Row::Join(row).key()));
                self.send(device, encode_left(room, code, &reason));
                if live {
                    // A refused read (the read budget) leaves the device's connection open in
                    // the room: it closes too. A refused open has none, and a call for it
                    // would only wake (or make) the room for nothing.
                    self.out.push_back(Output::Relay { room: room.to_owned(), device, op: RelayOp::Close { device } });
                }
                self.drop_unjoined_rooms();
            }
            RelayResult::Page(page) => self.caught_up_by(room, device, page),
            RelayResult::Done | RelayResult::Unknown => {}
        }
    }

    /// A relay call failed as a whole (the room could not be reached): the device's join fails
    /// like a refused one, with 1011, so it may try again.
    pub fn handle_relay_failure(&mut self, room: &str, device: u64, op: &RelayOp) {
        match op {
            RelayOp::Open { .. } => {
                self.handle_relay_result(room, device, RelayResult::Refused { code: 1011, reason: "the room could not be reached".into() })
            }
            RelayOp::Read { .. } => {
                // Try again: the device stays behind until its read succeeds; past a few
                // failures in a row, at the room's next feed call.
                let Some(j) = self.devices.get_mut(&device).and_then(|d| d.joins.get_mut(room)) else { return };
                j.reading = false;
                j.read_failures = j.read_failures.saturating_add(1);
                if j.read_failures <= READ_RETRIES {
                    self.catch_up(room, device);
                }
            }
            RelayOp::Text { text, .. } => {
                let id = serde_json::from_str::<Envelope<'_>>(text).ok().and_then(|e| e.id);
                self.send(device, error_frame(Some(room), id.as_deref(), ErrorCode::Storage, "the room could not be reached; retry"));
            }
            RelayOp::Close { .. } | RelayOp::Watch { .. } => {}
        }
    }

    /// A feed call from `call.room`: messages to the devices that stand with the session,
    /// extras to their devices; the answer to give.
    pub fn handle_feed(&mut self, call: FeedCall) -> FeedReply {
        if call.watch {
            return self.watched_head(&call.room, call.page);
        }
        let room = call.room.as_str();
        let joined: Vec<u64> = self.devices.iter().filter(|(_, d)| d.joins.contains_key(room)).map(|(id, _)| *id).collect();
        if joined.is_empty() {
            return FeedReply { answer: None, devices: Vec::new() };
        }
        if !self.feed.is_following(room) {
            // The first call since the session followed: it stands where the room's page starts.
            let start = call.page.messages.first().map_or(call.page.end.unwrap_or(0), |m| m.seq.saturating_sub(1));
            self.feed.follow(room, Position { epoch: call.page.epoch.clone(), seq: start });
        }
        let before = self.feed.position(room).cloned();
        // The session's own position needs the seqs only; the texts go to devices (`pass_page`).
        let seqs: Vec<(u64, ())> = call.page.messages.iter().map(|m| (m.seq, ())).collect();
        self.feed.handle_call(room, &call.page.epoch, call.page.end, seqs);
        for device in &joined {
            let standing = self.devices.get(device).and_then(|d| d.cursor.position(room)).cloned();
            if standing.is_some() && standing == before {
                // With the session: the same page, through its own cursor.
                self.pass_page(room, *device, &call.page);
            } else {
                self.catch_up(room, *device);
            }
        }
        let extras = self.feed.handle_extras(room, call.extras.into_iter().map(Into::into).collect());
        for extra in extras {
            self.extra(room, extra.to, extra.text);
        }
        let answer = self.feed.answer(room);
        if let Some(a) = &answer {
            let row = Row::Feed { room: room.to_owned(), epoch: a.position.epoch.clone(), seq: a.position.seq, extras: a.extras };
            self.out.push_back(Output::Save(row));
        }
        let devices = self.devices.iter().filter(|(_, d)| d.joins.contains_key(room)).map(|(id, _)| *id).collect();
        FeedReply { answer: answer.map(Into::into), devices }
    }

    /// Passes a page of stored messages to one device through its cursor: each once, in order,
    /// what it cannot have said as a gap; its own publishes only with echo on.
    fn pass_page(&mut self, room: &str, device: u64, page: &FeedPage) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        let echo = d.joins.get(room).is_none_or(|j| j.echo);
        let cid = d.info.client_id.clone();
        // Borrowed: each device's cursor picks from the one page, nothing copied per device.
        let messages: Vec<(u64, &crate::relay::FeedMessage)> = page.messages.iter().map(|m| (m.seq, m)).collect();
        let got = d.cursor.handle_call(room, &page.epoch, page.end, messages);
        if let Some(gap) = &got.gap {
            self.send(device, encode_gap(room, gap));
        }
        for m in got.fresh {
            if echo || m.from != cid {
                self.send(device, with_room(room, &m.text));
            }
        }
    }

    /// A device behind the session reads from the room's history until it stands with it.
    fn catch_up(&mut self, room: &str, device: u64) {
        let target = self.feed.position(room).cloned();
        let Some(d) = self.devices.get_mut(&device) else { return };
        let Some(join) = d.joins.get_mut(room) else { return };
        if !join.live || join.reading {
            return;
        }
        let Some(at) = d.cursor.position(room).cloned() else { return };
        let behind = match &target {
            Some(t) => t.epoch != at.epoch || t.seq > at.seq,
            None => false,
        };
        if !behind {
            return;
        }
        join.reading = true;
        let op = RelayOp::Read { epoch: at.epoch, after: at.seq, limit: READ_LIMIT };
        self.out.push_back(Output::Relay { room: room.to_owned(), device, op });
    }

    fn caught_up_by(&mut self, room: &str, device: u64, page: FeedPage) {
        let Some(j) = self.devices.get_mut(&device).and_then(|d| d.joins.get_mut(room)) else { return };
        j.reading = false;
        j.read_failures = 0;
        self.pass_page(room, device, &page);
        self.catch_up(room, device);
    }

    /// One extra from the room for `device`.
    fn extra(&mut self, room: &str, device: u64, text: String) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        let Some(join) = d.joins.get_mut(room) else { return };
        match frame_type(&text) {
            "welcome" => {
                let Ok(head) = serde_json::from_str::<WelcomeHead>(&text) else { return };
                join.live = true;
                let (start, echo) = (join.start.clone(), join.echo);
                // What the welcome says of the join's start, as a room socket's welcome would
                // (`resume` for a resume point, `rewind` for the last N): the messages it promises
                // follow it, read from history.
                let (from, said) = match &start {
                    JoinStart::Fresh => (head.seq, String::new()),
                    JoinStart::Rewind(n) => {
                        let from = head.seq.saturating_sub(*n);
                        (from, format!(",\"rewind\":{{\"replayed\":{}}}", head.seq - from))
                    }
                    JoinStart::Resume { epoch, since } if *epoch == head.epoch && *since <= head.seq => {
                        (*since, format!(",\"resume\":{{\"status\":\"recovered\",\"replayed\":{}}}", head.seq - since))
                    }
                    JoinStart::Resume { epoch, since } => {
                        let reason = if *epoch == head.epoch { "ahead" } else { "epoch" };
                        (head.seq, format!(",\"resume\":{{\"status\":\"not_recovered\",\"reason\":\"{reason}\",\"since\":{since}}}"))
                    }
                };
                d.cursor.follow(room, Position { epoch: head.epoch.clone(), seq: from });
                let read = self.reads.get(room).map(|r| format!(",\"read\":{}", r.0)).unwrap_or_default();
                // `{"type":"joined","room":…` and the user's read position and the start's
                // outcome, then the rest of the room's welcome.
                let joined = with_room(room, &text);
                let at = joined.find(",\"epoch\":").unwrap_or(joined.len());
                let joined = format!("{}{read}{said}{}", joined.get(..at).unwrap_or_default(), joined.get(at..).unwrap_or_default());
                self.send(device, joined);
                let row = JoinRow { device, room: room.to_owned(), start, echo, live: true };
                self.out.push_back(Output::Save(Row::Join(row)));
                // Everything up to the welcome's seq (and what the session has beyond it) comes
                // from history; then the feed.
                let target = self.feed.position(room).cloned();
                let needs = target.is_none_or(|t| t.epoch != head.epoch || t.seq < head.seq);
                if needs {
                    let extras = self.feed.answer(room).map_or(0, |a| a.extras);
                    self.feed.follow_with(room, Position { epoch: head.epoch.clone(), seq: head.seq }, extras);
                }
                self.catch_up(room, device);
            }
            "left" => {
                d.joins.remove(room);
                d.cursor.unfollow(room);
                self.out.push_back(Output::Delete(format!("j {device} {room}")));
                self.send(device, with_room(room, &text));
                self.drop_unjoined_rooms();
            }
            // The session answers a device's refresh itself, once for all its rooms.
            "refreshed" => {}
            _ => self.send(device, with_room(room, &text)),
        }
    }
}

/// `read_position`: the user's read position in `room`.
pub fn encode_read_position(room: &str, seq: u64) -> String {
    format!("{{\"type\":\"read_position\",\"room\":{},\"seq\":{seq}}}", json_str(room))
}
