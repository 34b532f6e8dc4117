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

// By concern: what devices send and are sent (`frames`), joining and leaving rooms with the
// rooms' answers (`joins`), the rooms' feed calls and catching devices up (`delivery`), read
// positions and watched rooms (`reads`), sockets coming and going, the sweep and `user.online`
// / `user.offline` (`liveness`).
mod delivery;
mod frames;
mod joins;
mod liveness;
mod reads;

use crate::feed::{Position, Receiver};
use crate::limit::Bucket;
use crate::relay::RelayOp;
use crate::token::Claims;
pub use frames::{encode_gap, encode_hello, encode_left, encode_read_position, encode_watch, with_room};
use serde::{Deserialize, Serialize};
// Sorted vectors under std's names: a fraction of `BTreeMap`'s wasm (bench/README.md, "Worker size").
use crate::sorted::{SortedMap as BTreeMap, SortedSet as BTreeSet};
use std::collections::VecDeque;

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
/// How long a device whose token expired may stay connected without a valid `refresh`, unless
/// [`Session::set_expired_grace`] says otherwise (the adapter uses the heartbeat timeout, 60 s by
/// default, as long as a silent socket is kept): its rooms leave at once (`left` with 4002), the
/// socket stays this long for a fresh token, then closes with 4002.
pub const EXPIRED_GRACE_MS: u64 = 60_000;
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
    /// When the sweep found its token expired (its rooms then left with 4002): the socket stays
    /// open for a `refresh` until [`EXPIRED_GRACE_MS`] after this, then closes with 4002.
    #[serde(rename = "x", default, skip_serializing_if = "Option::is_none")]
    pub expired: Option<u64>,
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
    /// How long an expired device's socket waits for a refresh ([`EXPIRED_GRACE_MS`]).
    expired_grace_ms: u64,
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
            expired_grace_ms: EXPIRED_GRACE_MS,
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

    pub(super) fn send(&mut self, device: u64, text: String) {
        self.out.push_back(Output::Send { device, text });
    }
}
