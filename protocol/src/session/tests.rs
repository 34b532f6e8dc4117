//! Sessions and rooms wired together natively: a simulated adapter carries the session's relay
//! calls to the rooms and the rooms' feed calls to the session (optionally losing them), with a
//! simulated clock and in-memory stores. What each device receives is checked per room: every
//! message exactly once, in order, or said lost.

use super::*;
use crate::config::RoomConfig;
use crate::relay::RelayRequest;
use crate::room::Room;
use crate::store::MemoryStore;
use crate::token::{Claims, Right};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;

const USER: &str = "alice";

struct World {
    now: u64,
    session: Session,
    rooms: BTreeMap<String, (Room, MemoryStore)>,
    /// Frames each device received.
    inbox: BTreeMap<u64, Vec<Value>>,
    /// Feed calls lost before the session saw them, or their answers lost, by `fate`.
    lossy: bool,
    fates: Vec<u8>,
    rows: BTreeMap<String, Row>,
    /// `user.online` / `user.offline` as the session reported them.
    user_events: Vec<&'static str>,
    /// Each live device's socket attachment, as the adapter keeps it.
    attachments: BTreeMap<u64, DeviceInfo>,
    /// Catch-up reads fail (the room cannot be reached), and how many were asked.
    reads_fail: bool,
    reads_asked: usize,
    /// Sockets the session closed, with the code.
    closes: Vec<(u64, u16)>,
    /// Rooms make no feed calls (they are held up on the way).
    feeds_paused: bool,
    /// The rooms' configuration.
    config: RoomConfig,
    /// Every op the session asked of a room.
    relayed: Vec<(String, RelayOp)>,
}

fn claims(user: &str, patterns: &[&str]) -> Claims {
    let rooms = patterns.iter().map(|p| (p.to_string(), vec![Right::Subscribe, Right::Publish, Right::Presence])).collect();
    Claims { sub: user.into(), exp: 4_000_000_000, nbf: None, iat: None, rooms, meta: None }
}

impl World {
    fn new(user: &str) -> World {
        World {
            now: 1_000,
            session: Session::new(user, Secrets::default(), 1_000),
            rooms: BTreeMap::new(),
            inbox: BTreeMap::new(),
            lossy: false,
            fates: Vec::new(),
            rows: BTreeMap::new(),
            user_events: Vec::new(),
            attachments: BTreeMap::new(),
            reads_fail: false,
            reads_asked: 0,
            closes: Vec::new(),
            feeds_paused: false,
            config: RoomConfig::default(),
            relayed: Vec::new(),
        }
    }

    fn room(&mut self, name: &str) -> &mut (Room, MemoryStore) {
        let now = self.now;
        let config = self.config.clone();
        self.rooms.entry(name.into()).or_insert_with(|| {
            let mut store = MemoryStore::default();
            let room = Room::load(config, &mut store, &format!("ep-{name}"), now, []).unwrap();
            (room, store)
        })
    }

    fn device(&mut self, patterns: &[&str]) -> u64 {
        let user = self.session.user().to_owned();
        let n = self.inbox.len();
        let id = self.session.handle_open(format!("dev{n}"), claims(&user, patterns), self.now).expect("the session's user");
        self.attachments.insert(id, self.session.device(id).cloned().unwrap());
        self.inbox.insert(id, Vec::new());
        self.pump();
        id
    }

    fn send(&mut self, device: u64, frame: &str) {
        self.session.handle_text(device, frame, self.now);
        self.pump();
    }

    fn fate(&mut self) -> u8 {
        if self.lossy {
            self.fates.pop().unwrap_or(3)
        } else {
            3
        }
    }

    /// Carries out everything until nothing moves.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(out) = self.session.poll_output() {
                moved = true;
                if let Output::Relay { room, op, .. } = &out {
                    self.relayed.push((room.clone(), op.clone()));
                }
                match out {
                    Output::Send { device, text } => {
                        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
                        self.inbox.entry(device).or_default().push(v);
                    }
                    Output::Close { device, code, .. } => {
                        self.closes.push((device, code));
                        self.inbox.remove(&device);
                        self.attachments.remove(&device);
                    }
                    Output::Attach { device } => {
                        let info = self.session.device(device).cloned().unwrap();
                        self.attachments.insert(device, info);
                    }
                    Output::Relay { room, device, op } if self.reads_fail && matches!(op, RelayOp::Read { .. }) => {
                        self.reads_asked += 1;
                        assert!(self.reads_asked < 1_000, "a failing read is retried in a loop");
                        self.session.handle_relay_failure(&room, device, &op);
                    }
                    Output::Relay { room, device, op } => {
                        if matches!(op, RelayOp::Read { .. }) {
                            self.reads_asked += 1;
                        }
                        let user = self.session.user().to_owned();
                        let now = self.now;
                        let (r, store) = self.room(&room);
                        let mut reply = r.serve_relay(&RelayRequest { session: user, ops: vec![op] }, now, store);
                        while r.poll_action().is_some() {}
                        self.session.handle_relay_result(&room, device, reply.results.remove(0));
                    }
                    Output::UserOnline => self.user_events.push("online"),
                    Output::UserOffline => self.user_events.push("offline"),
                    Output::Save(row) => {
                        self.rows.insert(row.key(), row);
                    }
                    Output::Delete(key) => {
                        self.rows.remove(&key);
                    }
                }
            }
            let names: Vec<String> = if self.feeds_paused { Vec::new() } else { self.rooms.keys().cloned().collect() };
            for name in names {
                let now = self.now;
                let call = {
                    let (r, store) = self.room(&name);
                    r.poll_feed(&name, now, store)
                };
                if let Some((session, call_no, call)) = call {
                    moved = true;
                    let fate = self.fate();
                    let (r, store) = self.rooms.get_mut(&name).unwrap();
                    match fate % 4 {
                        0 => r.handle_feed_failure(&session, call_no, now, 7, store),
                        1 => {
                            let _ = self.session.handle_feed(call);
                            r.handle_feed_failure(&session, call_no, now, 7, store);
                        }
                        _ => {
                            let reply = self.session.handle_feed(call);
                            r.handle_feed_answer(&session, call_no, reply, now, store);
                        }
                    }
                    while r.poll_action().is_some() {}
                }
            }
            if !moved && self.feeds_paused {
                return;
            }
            if !moved {
                // Backoffs: let time pass to the next deadline.
                let next = self.rooms.values().filter_map(|(r, _)| r.poll_timeout()).min();
                match next {
                    Some(t) if t <= self.now + 1_000 => {
                        self.now = self.now.max(t) + 1;
                        let now = self.now;
                        for (r, store) in self.rooms.values_mut() {
                            r.handle_timeout(now, |_| Some(now), store);
                            r.settle_relays(now, store);
                            while r.poll_action().is_some() {}
                        }
                    }
                    _ => return,
                }
            }
        }
        panic!("the world did not settle");
    }

    /// The session object is rebuilt after hibernation: from its sockets' attachments and rows.
    fn restart_session(&mut self) {
        let devices = self.attachments.values().cloned().collect();
        let rows = self.rows.values().cloned().collect();
        let user = self.session.user().to_owned();
        self.session = Session::new(&user, Secrets::default(), self.now);
        self.session.restore(devices, rows, self.now);
        self.pump();
    }

    /// A room's runtime restarts: the room is loaded again from its store, its memory (extras
    /// in flight, budgets) gone. Time moves on, as it does across a restart.
    fn restart_room(&mut self, name: &str) {
        self.now += 1_000;
        let now = self.now;
        if let Some((room, store)) = self.rooms.get_mut(name) {
            *room = Room::load(self.config.clone(), store, &format!("ep-{name}"), now, []).unwrap();
            room.settle_relays(now, store);
            while room.poll_action().is_some() {}
        }
        self.pump();
    }

    fn frames(&self, device: u64, room: &str, kind: &str) -> Vec<Value> {
        self.inbox[&device].iter().filter(|v| v["room"] == room && v["type"] == kind).cloned().collect()
    }

    fn seqs(&self, device: u64, room: &str) -> Vec<u64> {
        self.frames(device, room, "message").iter().map(|v| v["seq"].as_u64().unwrap()).collect()
    }

    fn publish(&mut self, device: u64, room: &str, id: &str) {
        self.send(device, &format!(r#"{{"type":"publish","room":"{room}","id":"{id}","data":"{id}"}}"#));
    }
}

#[test]
fn one_socket_many_rooms_each_message_once_per_device() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    let b = w.device(&["*"]);
    for room in ["r1", "r2", "r3"] {
        w.send(a, &format!(r#"{{"type":"join","room":"{room}"}}"#));
    }
    w.send(b, r#"{"type":"join","room":"r1"}"#);
    assert_eq!(w.frames(a, "r1", "joined").len(), 1);
    assert_eq!(w.frames(a, "r3", "joined").len(), 1);
    w.publish(a, "r1", "m1");
    w.publish(b, "r1", "m2");
    w.publish(a, "r2", "m3");
    assert_eq!(w.seqs(a, "r1"), vec![1, 2]);
    assert_eq!(w.seqs(b, "r1"), vec![1, 2]);
    assert_eq!(w.seqs(a, "r2"), vec![1]);
    assert!(w.seqs(b, "r2").is_empty(), "b did not join r2");
    assert_eq!(w.frames(a, "r1", "ack").len(), 1, "acks go to the publishing device only");
    // The room sees two connections of one user: presence counts devices.
    let (r1, _) = w.room("r1");
    assert_eq!(r1.presence().get(USER).map(|m| m.connections), Some(2));
}

#[test]
fn a_device_resumes_from_its_own_point() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    for i in 0..5 {
        w.publish(a, "r", &format!("m{i}"));
    }
    let b = w.device(&["*"]);
    w.send(b, r#"{"type":"join","room":"r","epoch":"ep-r","since":2}"#);
    assert_eq!(w.seqs(b, "r"), vec![3, 4, 5]);
    // The joined frame says so, as a room socket's welcome would.
    let joined = &w.frames(b, "r", "joined")[0];
    assert_eq!(
        (joined["resume"]["status"].as_str(), joined["resume"]["replayed"].as_u64(), joined["seq"].as_u64()),
        (Some("recovered"), Some(3), Some(5))
    );
    w.publish(a, "r", "m5");
    assert_eq!(w.seqs(b, "r"), vec![3, 4, 5, 6]);
    assert_eq!(w.seqs(a, "r"), vec![1, 2, 3, 4, 5, 6]);
    // A resume from another epoch is not recovered: live from the joined frame's seq.
    let c = w.device(&["*"]);
    w.send(c, r#"{"type":"join","room":"r","epoch":"old","since":2}"#);
    let joined = &w.frames(c, "r", "joined")[0];
    assert_eq!((joined["resume"]["status"].as_str(), joined["resume"]["reason"].as_str()), (Some("not_recovered"), Some("epoch")));
    assert!(w.seqs(c, "r").is_empty());
    // Rewind: the last two.
    let d = w.device(&["*"]);
    w.send(d, r#"{"type":"join","room":"r","rewind":2}"#);
    assert_eq!(w.seqs(d, "r"), vec![5, 6]);
    assert_eq!(w.frames(d, "r", "joined")[0]["rewind"]["replayed"], 2);
}

#[test]
fn rooms_the_token_does_not_grant_and_user_limited_rooms_are_refused() {
    let mut w = World::new("carol");
    let a = w.device(&["chat:*", "dm~*"]);
    w.send(a, r#"{"type":"join","room":"secret"}"#);
    assert_eq!(w.frames(a, "secret", "left")[0]["code"], 4403);
    w.send(a, r#"{"type":"join","room":"dm~alice,bob"}"#);
    assert_eq!(w.frames(a, "dm~alice,bob", "left")[0]["code"], 4403);
    w.send(a, r#"{"type":"join","room":"dm~bob,carol"}"#);
    assert_eq!(w.frames(a, "dm~bob,carol", "joined").len(), 1);
    // A frame for a room not joined is refused, not passed on.
    w.send(a, r#"{"type":"publish","room":"chat:x","id":"1","data":1}"#);
    assert_eq!(w.frames(a, "chat:x", "error").len(), 1);
    assert!(!w.rooms.contains_key("chat:x"), "a refused frame never reaches (or makes) a room");
}

#[test]
fn kick_and_reset_leave_one_room_and_keep_the_others() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r1"}"#);
    w.send(a, r#"{"type":"join","room":"r2"}"#);
    let now = w.now;
    {
        let (r1, store) = w.room("r1");
        r1.kick(USER, None, Some("spam"), now, store).unwrap();
        r1.settle_relays(now, store);
    }
    w.pump();
    let left = w.frames(a, "r1", "left");
    assert_eq!((left[0]["code"].as_u64(), left[0]["reason"].as_str()), (Some(4411), Some("spam")));
    w.publish(a, "r2", "still");
    assert_eq!(w.seqs(a, "r2"), vec![1]);
    w.send(a, r#"{"type":"publish","room":"r1","id":"x","data":1}"#);
    assert_eq!(w.frames(a, "r1", "error").len(), 1, "r1 was left");
    {
        let (r2, store) = w.room("r2");
        r2.reset("ep2", now, store).unwrap();
        r2.settle_relays(now, store);
    }
    w.pump();
    assert_eq!(w.frames(a, "r2", "left")[0]["code"], 4013);
}

#[test]
fn read_positions_reach_every_device_and_never_move_back() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    let b = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    // Read positions stand on messages the session has (see the clamping test below).
    for i in 0..5 {
        w.publish(a, "r", &format!("m{i}"));
    }
    w.send(a, r#"{"type":"mark_read","room":"r","seq":4}"#);
    w.send(a, r#"{"type":"mark_read","room":"r","seq":2}"#);
    let reads =
        |w: &World, d| w.inbox[&d].iter().filter(|v| v["type"] == "read_position").map(|v| v["seq"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(reads(&w, a), vec![4]);
    assert_eq!(reads(&w, b), vec![4]);
    assert!(w.rows.contains_key("r r"));
    let c = w.device(&["*"]);
    assert_eq!(reads(&w, c), vec![4], "a new device learns the read positions");
}

#[test]
fn a_closed_device_leaves_its_rooms() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    w.session.handle_close(a, w.now);
    w.pump();
    let (r, _) = w.room("r");
    assert_eq!(r.connection_count(), 0);
    // no join or feed row is left; what stays is the user's online state and its grace period
    assert_eq!(w.rows.keys().collect::<Vec<_>>(), ["offline", "online"]);
}

#[test]
fn a_device_cannot_reset_a_rooms_limits_by_rejoining() {
    // A room's publish limit is per connection and starts full on each join: leaving and
    // joining again between publishes would lift it, and flood the room with presence.
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    // All in one instant (the adapter carries the calls out afterwards, in order).
    for i in 0..400 {
        w.session.handle_text(a, r#"{"type":"leave","room":"r"}"#, w.now);
        w.session.handle_text(a, r#"{"type":"join","room":"r"}"#, w.now);
        w.session.handle_text(a, &format!(r#"{{"type":"publish","room":"r","id":"m{i}","data":{i}}}"#), w.now);
    }
    w.pump();
    let limits = SessionLimits::default();
    let stored = w.room("r").0.seq();
    assert!(stored <= limits.burst / 3 + 1, "{stored} publishes in one instant through rejoins");
    // Refused frames past the strikes close the socket, as a room does.
    assert_eq!(w.closes, vec![(a, crate::close::RATE_LIMITED.code)]);
    assert!(w.session.device(a).is_none());
    assert_eq!(w.room("r").0.connection_count(), 0);
}

#[test]
fn a_device_under_its_rate_is_never_refused_and_refused_frames_say_which() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    let limits = SessionLimits::default();
    // A reconnect rejoins every room at once: within the burst.
    for i in 0..MAX_ROOMS_PER_DEVICE {
        w.session.handle_text(a, &format!(r#"{{"type":"join","room":"r{i}"}}"#), w.now);
    }
    w.pump();
    assert_eq!(w.session.rooms_of(a).len(), MAX_ROOMS_PER_DEVICE);
    assert!(w.inbox[&a].iter().all(|v| v["type"] != "error"), "no join refused");
    let left = limits.burst - MAX_ROOMS_PER_DEVICE as u64;
    for i in 0..left {
        w.session.handle_text(a, &format!(r#"{{"type":"broadcast","room":"r0","id":"b{i}","data":1}}"#), w.now);
    }
    w.session.handle_text(a, r#"{"type":"publish","room":"r1","id":"over","data":1}"#, w.now);
    w.pump();
    let errors: Vec<&Value> = w.inbox[&a].iter().filter(|v| v["type"] == "error").collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(
        (errors[0]["code"].as_str(), errors[0]["id"].as_str(), errors[0]["room"].as_str()),
        (Some("rate_limited"), Some("over"), Some("r1"))
    );
    // A second later the budget has refilled by the rate.
    w.now += 1_000;
    for i in 0..limits.per_sec {
        w.session.handle_text(a, &format!(r#"{{"type":"mark_read","room":"r0","seq":{i}}}"#), w.now);
    }
    w.pump();
    assert_eq!(w.inbox[&a].iter().filter(|v| v["type"] == "error").count(), 1);
}

#[test]
fn a_token_for_another_user_opens_no_device() {
    let mut session = Session::new(USER, Secrets::default(), 1_000);
    assert_eq!(session.handle_open("x".into(), claims("mallory", &["*"]), 1_000), Err(crate::close::FORBIDDEN));
    assert!(session.poll_output().is_none(), "nothing is sent or joined");
    // A session that does not know its user (the runtime gave no name) serves no one.
    let mut nameless = Session::new("", Secrets::default(), 1_000);
    assert!(nameless.handle_open("x".into(), claims("", &["*"]), 1_000).is_err());
}

#[test]
fn a_narrowing_refresh_holds_after_hibernation() {
    let secret = b"s3cret".to_vec();
    let mut w = World::new(USER);
    w.session = Session::new(USER, Secrets { current: secret.clone(), previous: Vec::new() }, w.now);
    let a = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"chat:1"}"#);
    w.send(a, r#"{"type":"join","room":"secret"}"#);
    let narrow = crate::token::mint(&claims(USER, &["chat:*"]), &secret).unwrap();
    w.send(a, &format!(r#"{{"type":"refresh","token":"{narrow}"}}"#));
    assert_eq!(w.frames(a, "secret", "left")[0]["code"], 4403, "the refresh left the room it no longer grants");
    // The session sleeps and wakes: it must still know the narrower token.
    w.restart_session();
    w.session.set_limits(SessionLimits::default());
    w.send(a, r#"{"type":"join","room":"secret"}"#);
    assert_eq!(w.frames(a, "secret", "left").len(), 2, "the old token's rights came back after hibernation");
    assert!(w.frames(a, "secret", "joined").len() == 1, "joined only before the refresh");
}

#[test]
fn read_positions_need_an_admitted_join_stand_on_known_messages_and_are_bounded() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    let reads = |w: &World, room: &str| {
        w.inbox[&a]
            .iter()
            .filter(|v| v["type"] == "read_position" && v["room"] == room)
            .map(|v| v["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    let b = w.device(&["*"]);
    w.send(b, r#"{"type":"join","room":"r"}"#);
    for i in 0..3 {
        w.publish(b, "r", &format!("m{i}"));
    }
    // Marked before the room admitted the join (a room that may refuse it): nothing is kept.
    w.session.handle_text(a, r#"{"type":"join","room":"r"}"#, w.now);
    w.session.handle_text(a, r#"{"type":"mark_read","room":"r","seq":2}"#, w.now);
    w.pump();
    assert!(reads(&w, "r").is_empty());
    assert!(!w.rows.contains_key("r r"));
    // A position past what the room has is the room's head: later messages stay unread.
    w.send(a, &format!(r#"{{"type":"mark_read","room":"r","seq":{}}}"#, u64::MAX));
    assert_eq!(reads(&w, "r"), vec![3]);
    // Read positions kept are bounded: the one marked longest ago goes.
    let mut rows = w.rows.clone();
    for i in 0..MAX_READ_POSITIONS as u64 - 1 {
        let row = Row::Read { room: format!("old{i}"), seq: 1, at: i };
        rows.insert(row.key(), row);
    }
    w.rows = rows;
    w.restart_session();
    w.send(a, r#"{"type":"join","room":"q"}"#);
    w.publish(a, "q", "q0");
    w.send(a, r#"{"type":"mark_read","room":"q","seq":1}"#);
    assert_eq!(reads(&w, "q"), vec![1]);
    assert!(!w.rows.contains_key("r old0"), "the oldest read position was forgotten");
    assert!(w.rows.contains_key("r old1") && w.rows.contains_key("r r"));
    assert_eq!(w.rows.keys().filter(|k| k.starts_with("r ")).count(), MAX_READ_POSITIONS);
}

#[test]
fn a_room_that_cannot_be_read_is_not_called_in_a_loop() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    for i in 0..5 {
        w.publish(a, "r", &format!("m{i}"));
    }
    w.reads_fail = true;
    let b = w.device(&["*"]);
    w.send(b, r#"{"type":"join","room":"r","epoch":"ep-r","since":0}"#);
    assert!(w.reads_asked <= 1 + READ_RETRIES as usize, "{} reads", w.reads_asked);
    assert!(w.seqs(b, "r").is_empty());
    // The room's next feed call tries again, and the device catches up.
    w.reads_fail = false;
    w.publish(a, "r", "m5");
    assert_eq!(w.seqs(b, "r"), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn catch_up_reads_spend_the_users_read_budget() {
    let mut w = World::new(USER);
    w.config = RoomConfig { read_bytes_burst: 1_000, read_bytes_per_sec: 10, ..RoomConfig::default() };
    let a = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    for i in 0..20 {
        w.publish(a, "r", &format!("message number {i:04}, long enough"));
    }
    // One resume from the start passes (a budget not in debt lets one read of any size).
    let b = w.device(&["*"]);
    w.send(b, r#"{"type":"join","room":"r","epoch":"ep-r","since":0}"#);
    assert_eq!(w.seqs(b, "r").len(), 20);
    // Leaving and resuming from the start again in a loop is refused, as a socket's resume is.
    for _ in 0..3 {
        w.send(b, r#"{"type":"leave","room":"r"}"#);
        w.send(b, r#"{"type":"join","room":"r","epoch":"ep-r","since":0}"#);
    }
    let left = w.frames(b, "r", "left");
    assert!(left.iter().any(|l| l["code"] == crate::close::READ_BUDGET.code), "{left:?}");
    assert_eq!(w.seqs(b, "r").len(), 20, "nothing read past the budget");
    assert!(w.session.rooms_of(b).is_empty());
    assert_eq!(w.room("r").0.connection_count(), 1, "the refused device's connection closed too");
}

#[test]
fn a_refused_join_calls_the_room_no_more() {
    // The worker lets only an open create a room (ROOM_CREATIONS_PER_USER): a close sent after
    // a refused open would wake the room for nothing, or make it.
    let mut w = World::new(USER);
    w.config = RoomConfig { max_connections_per_user: 1, ..RoomConfig::default() };
    let a = w.device(&["*"]);
    let b = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    w.relayed.clear();
    w.send(b, r#"{"type":"join","room":"r"}"#);
    assert_eq!(w.frames(b, "r", "left")[0]["code"], crate::close::USER_CONNECTIONS.code);
    assert_eq!(w.relayed.len(), 1, "only the open: {:?}", w.relayed);
    assert!(w.session.rooms_of(b).is_empty());
}

#[test]
fn restarts_of_the_session_and_of_a_room_neither_double_nor_skip() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    let b = w.device(&["*"]);
    for room in ["r1", "r2"] {
        w.send(a, &format!(r#"{{"type":"join","room":"{room}"}}"#));
        w.send(b, &format!(r#"{{"type":"join","room":"{room}"}}"#));
        for i in 0..3 {
            w.publish(a, room, &format!("{room}-{i}"));
        }
    }
    w.restart_session();
    w.publish(b, "r1", "after");
    for d in [a, b] {
        assert_eq!(w.seqs(d, "r1"), vec![1, 2, 3, 4]);
        assert_eq!(w.seqs(d, "r2"), vec![1, 2, 3]);
    }
    // r2 restarts with a message and its ack on the way: the message still comes, once; the
    // lost ack makes both devices leave (1001) and join again from where they stood.
    w.feeds_paused = true;
    w.publish(a, "r2", "in flight");
    w.restart_room("r2");
    w.feeds_paused = false;
    w.pump();
    for d in [a, b] {
        assert_eq!(w.seqs(d, "r2"), vec![1, 2, 3, 4]);
        assert_eq!(w.frames(d, "r2", "left")[0]["code"], 1001);
        w.send(d, r#"{"type":"join","room":"r2","epoch":"ep-r2","since":4}"#);
    }
    w.publish(b, "r2", "again");
    w.restart_session();
    w.publish(a, "r2", "and again");
    for d in [a, b] {
        assert_eq!(w.seqs(d, "r2"), vec![1, 2, 3, 4, 5, 6]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Devices join, publish, leave and rejoin with resume points while feed calls and their
    /// answers are lost, the session hibernates and rooms restart: each device sees each room's messages once, in order, per join.
    #[test]
    fn every_device_gets_every_message_once_in_order(ops in prop::collection::vec((0u8..8, 0u8..3, 0u8..2), 1..60), fates in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut w = World::new(USER);
        w.lossy = true;
        w.fates = fates;
        let devices = [w.device(&["*"]), w.device(&["*"]), w.device(&["*"])];
        let rooms = ["r0", "r1"];
        let mut n = 0;
        for (op, d, r) in ops {
            let (device, room) = (devices[d as usize], rooms[r as usize]);
            match op {
                0 | 1 => w.send(device, &format!(r#"{{"type":"join","room":"{room}"}}"#)),
                2 | 3 => { n += 1; w.publish(device, room, &format!("m{n}")); }
                4 => w.send(device, &format!(r#"{{"type":"leave","room":"{room}"}}"#)),
                // The session hibernates and wakes (from its sockets' attachments and rows).
                6 => w.restart_session(),
                // The room's runtime restarts (its extras in flight are lost).
                7 => w.restart_room(room),
                _ => {
                    // Leave, then join again from the last seq it saw.
                    let last = w.seqs(device, room).last().copied();
                    w.send(device, &format!(r#"{{"type":"leave","room":"{room}"}}"#));
                    let epoch = format!("ep-{room}");
                    match last {
                        Some(s) => {
                            w.send(device, &format!(r#"{{"type":"join","room":"{room}","epoch":"{epoch}","since":{s}}}"#));
                            // The resume brought everything after `s`, once.
                            let head = w.rooms.get(room).map_or(0, |(r, _)| r.seq());
                            let seen = w.seqs(device, room);
                            for seq in s + 1..=head {
                                prop_assert!(seen.contains(&seq), "resume from {s} lost {seq}: {seen:?}");
                            }
                        }
                        None => w.send(device, &format!(r#"{{"type":"join","room":"{room}"}}"#)),
                    }
                }
            }
        }
        w.lossy = false;
        w.pump();
        for device in devices {
            for room in rooms {
                // Rejoins resume from the last seq seen or start at the head: across all of a
                // device's joins, its seqs strictly increase (nothing doubled or reordered).
                let (mut last, mut covered) = (0, 0);
                for v in &w.inbox[&device] {
                    if v["room"] != room { continue; }
                    match v["type"].as_str() {
                        // A fresh join starts at the welcome's seq.
                        Some("joined") => covered = covered.max(v["seq"].as_u64().unwrap()),
                        Some("message") => {
                            let seq = v["seq"].as_u64().unwrap();
                            prop_assert!(seq > last, "device {device} room {room}: {seq} after {last}");
                            last = seq;
                            covered = covered.max(seq);
                        }
                        _ => {}
                    }
                }
                // A device still joined has everything up to the room's head since its join.
                let joined = w.session.rooms_of(device).contains(&room.to_string());
                if joined {
                    let head = w.rooms.get(room).map_or(0, |(r, _)| r.seq());
                    prop_assert_eq!(covered, head, "device {} room {} is behind", device, room);
                }
            }
        }
    }
}

#[test]
fn watched_rooms_report_their_latest_seq_and_unread_count_coalesced() {
    let mut w = World::new(USER);
    let sidebar = w.device(&["chat:*"]);
    let writer = w.device(&["chat:*"]);
    w.send(writer, r#"{"type":"join","room":"chat:a"}"#);
    w.publish(writer, "chat:a", "m1");
    w.send(sidebar, r#"{"type":"watch","rooms":["chat:a","chat:b","secret"]}"#);
    let refused = w.inbox[&sidebar].iter().filter(|v| v["type"] == "error").count();
    assert_eq!(refused, 1, "a room the token does not grant is not watched");
    let heads = |w: &World, room: &str| {
        w.frames(sidebar, room, "watch").iter().map(|v| (v["seq"].as_u64().unwrap(), v["unread"].as_u64().unwrap())).collect::<Vec<_>>()
    };
    assert_eq!(heads(&w, "chat:a"), vec![(1, 1)], "the head at once");
    assert!(heads(&w, "chat:b").is_empty(), "a room at seq 0 says nothing");
    // A burst: the room stores 19 messages before its next watch call may go.
    for i in 2..=20 {
        let frame = format!(r#"{{"type":"publish","room":"chat:a","id":"m{i}","data":{i}}}"#);
        w.session.handle_text(writer, &frame, w.now);
    }
    w.pump();
    let got = heads(&w, "chat:a");
    assert_eq!(got.last(), Some(&(20, 20)));
    assert!(got.len() < 20, "coalesced: {got:?}");
    assert!(w.seqs(sidebar, "chat:a").is_empty(), "watching is not joining: no messages");
    w.send(writer, r#"{"type":"mark_read","room":"chat:a","seq":15}"#);
    w.publish(writer, "chat:a", "m21");
    assert_eq!(heads(&w, "chat:a").last(), Some(&(21, 6)));
    // Unwatching everything stops the room's calls.
    w.send(sidebar, r#"{"type":"watch","rooms":[]}"#);
    let before = heads(&w, "chat:a").len();
    w.publish(writer, "chat:a", "m22");
    assert_eq!(heads(&w, "chat:a").len(), before);
}

/// A device whose token expires `in_ms` from now (to the second), opened now.
fn short_device(w: &mut World, in_ms: u64) -> u64 {
    let mut c = claims(USER, &["*"]);
    c.exp = (w.now + in_ms) / 1000;
    let id = w.session.handle_open(format!("short{}", w.inbox.len()), c, w.now).unwrap();
    w.attachments.insert(id, w.session.device(id).cloned().unwrap());
    w.inbox.insert(id, Vec::new());
    w.pump();
    id
}

#[test]
fn the_sweep_closes_silent_devices_and_expired_tokens_leave_their_rooms() {
    let mut w = World::new(USER);
    let quiet = w.device(&["*"]);
    let short = short_device(&mut w, 60_000);
    let alive = w.device(&["*"]);
    for d in [quiet, short, alive] {
        w.send(d, r#"{"type":"join","room":"r"}"#);
    }
    assert_eq!(w.room("r").0.connection_count(), 3);
    // `alive` pings (the runtime's answer counts); `quiet` says nothing for over the timeout;
    // `short`'s token expires meanwhile.
    w.now += 120_000;
    let now = w.now;
    w.session.handle_sweep(now, 60_000, |d| (d == alive || d == short).then_some(now));
    w.pump();
    assert_eq!(w.closes, vec![(quiet, 4001)], "only the silent socket closed");
    let left = w.frames(short, "r", "left");
    assert_eq!(left.len(), 1, "{:?}", w.inbox[&short]);
    assert_eq!(left[0]["code"], 4002);
    assert_eq!(w.room("r").0.connection_count(), 1, "the room let the closed and the expired devices go");
    assert_eq!(w.session.rooms_of(short), Vec::<String>::new());
}

#[test]
fn an_expired_token_leaves_each_room_keeps_the_socket_and_a_refresh_joins_again() {
    let secret = b"s3cret".to_vec();
    let mut w = World::new(USER);
    w.session = Session::new(USER, Secrets { current: secret.clone(), previous: Vec::new() }, w.now);
    let a = short_device(&mut w, 60_000);
    let other = w.device(&["*"]);
    for room in ["r1", "r2"] {
        w.send(a, &format!(r#"{{"type":"join","room":"{room}"}}"#));
    }
    w.send(other, r#"{"type":"join","room":"r1"}"#);
    w.now += 120_000;
    let now = w.now;
    w.session.handle_sweep(now, 600_000, |_| Some(now));
    w.pump();
    for room in ["r1", "r2"] {
        let left = w.frames(a, room, "left");
        assert_eq!(left.len(), 1, "{room}: one left each");
        assert_eq!(left[0]["code"], 4002);
    }
    assert!(w.closes.is_empty(), "the socket stays open for a refresh");
    assert_eq!(w.room("r1").0.connection_count(), 1, "only the other device is left in r1");
    assert_eq!(w.room("r2").0.connection_count(), 0);
    // A sweep again changes nothing: the rooms left once.
    w.session.handle_sweep(now + 1, 600_000, |_| Some(now));
    w.pump();
    assert_eq!(w.frames(a, "r1", "left").len(), 1);
    // Until a refresh, a join is refused with 4002.
    w.send(a, r#"{"type":"join","room":"r1"}"#);
    assert_eq!(w.frames(a, "r1", "left").len(), 2);
    assert_eq!(w.frames(a, "r1", "left")[1]["code"], 4002);
    assert_eq!(w.frames(a, "r1", "joined").len(), 1, "only the first join");
    // An invalid refresh changes nothing; a valid one lets it join again.
    w.send(a, r#"{"type":"refresh","token":"nope"}"#);
    w.send(a, r#"{"type":"join","room":"r1"}"#);
    assert_eq!(w.frames(a, "r1", "left").len(), 3);
    let fresh = crate::token::mint(&claims(USER, &["*"]), &secret).unwrap();
    w.send(a, &format!(r#"{{"type":"refresh","token":"{fresh}"}}"#));
    assert!(w.inbox[&a].iter().any(|v| v["type"] == "refreshed"));
    assert_eq!(w.attachments[&a].expired, None, "the attachment no longer says expired");
    w.send(a, r#"{"type":"join","room":"r1"}"#);
    assert_eq!(w.frames(a, "r1", "joined").len(), 2, "joined again after the refresh");
    assert_eq!(w.room("r1").0.connection_count(), 2);
    // Past the grace, the refreshed socket stays.
    w.now += EXPIRED_GRACE_MS * 2;
    let now = w.now;
    w.session.handle_sweep(now, 600_000, |_| Some(now));
    w.pump();
    assert!(w.closes.is_empty());
}

#[test]
fn an_expired_socket_without_a_refresh_closes_after_the_grace_even_across_hibernation() {
    let mut w = World::new(USER);
    let a = short_device(&mut w, 60_000);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    w.now += 120_000;
    let expired_at = w.now;
    w.session.handle_sweep(expired_at, 600_000, |_| Some(expired_at));
    w.pump();
    assert_eq!(w.attachments[&a].expired, Some(expired_at), "kept in the attachment");
    assert_eq!(w.session.poll_timeout(), Some(expired_at + EXPIRED_GRACE_MS + 1), "the alarm is due at the grace's end");
    // The session hibernates and wakes within the grace: the socket is still open.
    w.now += EXPIRED_GRACE_MS / 2;
    w.restart_session();
    let now = w.now;
    w.session.handle_sweep(now, 600_000, |_| Some(now));
    w.pump();
    assert!(w.closes.is_empty(), "within the grace");
    assert_eq!(w.session.poll_timeout(), Some(expired_at + EXPIRED_GRACE_MS + 1), "the grace did not start over");
    w.now = expired_at + EXPIRED_GRACE_MS + 1;
    w.session.handle_timeout(w.now);
    w.pump();
    assert_eq!(w.closes, vec![(a, 4002)], "closed at the grace's end");
    assert!(!w.session.has_devices());
}

#[test]
fn a_feed_call_that_moves_nothing_saves_nothing() {
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    w.publish(a, "r", "m1");
    let Some(Row::Feed { epoch, seq, .. }) = w.rows.get("f r").cloned() else { panic!("the position is saved: {:?}", w.rows) };
    assert!(seq >= 1);
    // A probe: the room's head where the session stands, nothing new.
    let probe = crate::relay::FeedCall {
        room: "r".into(),
        page: crate::relay::FeedPage { epoch: epoch.clone(), end: Some(seq), messages: Vec::new() },
        extras: Vec::new(),
        watch: false,
    };
    let reply = w.session.handle_feed(probe.clone());
    assert_eq!(reply.answer.map(|a| a.seq), Some(seq), "it still answers where it stands");
    let mut saves = 0;
    while let Some(out) = w.session.poll_output() {
        saves += usize::from(matches!(out, Output::Save(Row::Feed { .. })));
    }
    assert_eq!(saves, 0, "nothing to save");
    // A call that moves it saves again.
    w.publish(a, "r", "m2");
    assert!(matches!(w.rows.get("f r"), Some(Row::Feed { seq: s, .. }) if *s > seq));
}

#[test]
fn a_publishers_confirmed_acks_are_not_saved_one_by_one_and_a_restart_still_loses_nothing() {
    use crate::store::Store;
    let mut w = World::new(USER);
    let a = w.device(&["*"]);
    let b = w.device(&["*"]);
    w.send(a, r#"{"type":"join","room":"r"}"#);
    w.send(b, r#"{"type":"join","room":"r"}"#);
    let stored = |w: &mut World| {
        let (_, store) = w.room("r");
        store.subscribers().unwrap().into_iter().find(|s| s.session == USER).map(|s| s.extras)
    };
    // Each publish queues an ack (an extra) for the publisher's session, which the next feed
    // call's answer confirms: the stored flag is set before the ack goes, and left set after.
    for i in 0..5 {
        w.publish(a, "r", &format!("m{i}"));
        assert_eq!(w.frames(a, "r", "ack").len(), i + 1);
        assert_eq!(stored(&mut w), Some(true), "not written back to false on every confirmation");
    }
    // A restart that finds it set: the session's devices leave (1001) and join again from where
    // they stood; nothing is lost or doubled.
    w.restart_room("r");
    for d in [a, b] {
        assert_eq!(w.seqs(d, "r"), vec![1, 2, 3, 4, 5]);
        assert_eq!(w.frames(d, "r", "left")[0]["code"], 1001);
        w.send(d, r#"{"type":"join","room":"r","epoch":"ep-r","since":5}"#);
    }
    w.publish(b, "r", "after");
    for d in [a, b] {
        assert_eq!(w.seqs(d, "r"), vec![1, 2, 3, 4, 5, 6]);
    }
}

#[test]
fn the_backend_closes_a_users_session_and_its_rooms_let_go() {
    let mut w = World::new(USER);
    let (a, b) = (w.device(&["*"]), w.device(&["*"]));
    w.send(a, r#"{"type":"join","room":"r"}"#);
    w.send(b, r#"{"type":"join","room":"r"}"#);
    assert_eq!(w.session.handle_removed(w.now), 2);
    w.pump();
    assert!(!w.inbox.contains_key(&a) && !w.inbox.contains_key(&b), "both sockets closed");
    assert_eq!(w.room("r").0.connection_count(), 0);
    assert!(!w.session.has_devices());
}

#[test]
fn online_on_the_first_socket_offline_after_the_last_and_the_grace_period() {
    let mut w = World::new(USER);
    w.session.set_offline_grace(5_000);
    let a = w.device(&["*"]);
    let b = w.device(&["*"]);
    assert_eq!(w.user_events, ["online"], "once for the first socket");
    w.session.handle_close(a, w.now);
    w.session.handle_close(b, w.now);
    w.pump();
    assert_eq!(w.session.poll_timeout(), Some(w.now + 5_000));
    w.session.handle_timeout(w.now + 4_999);
    w.pump();
    assert_eq!(w.user_events, ["online"], "not before the grace period ends");
    // back within the grace period (a reload): nothing at all
    let c = w.device(&["*"]);
    assert_eq!(w.user_events, ["online"]);
    assert_eq!(w.session.poll_timeout(), None);
    w.session.handle_close(c, w.now);
    w.pump();
    w.session.handle_timeout(w.now + 5_000);
    w.pump();
    assert_eq!(w.user_events, ["online", "offline"]);
    assert!(!w.rows.contains_key("online") && !w.rows.contains_key("offline"));
    // online again later
    w.device(&["*"]);
    assert_eq!(w.user_events, ["online", "offline", "online"]);
}

#[test]
fn a_restart_that_took_the_sockets_reports_offline_after_the_grace_period() {
    let mut w = World::new(USER);
    w.session.set_offline_grace(5_000);
    w.device(&["*"]);
    assert_eq!(w.user_events, ["online"]);
    // The runtime restarts: a new instance with the stored rows and no socket.
    let rows: Vec<Row> = w.rows.values().cloned().collect();
    let mut s = Session::new(USER, Secrets::default(), w.now + 10);
    s.set_offline_grace(5_000);
    s.restore(Vec::new(), rows, w.now + 10);
    assert_eq!(s.poll_timeout(), Some(w.now + 10 + 5_000));
    s.handle_timeout(w.now + 10 + 5_000);
    let outs: Vec<Output> = std::iter::from_fn(|| s.poll_output()).collect();
    assert!(outs.contains(&Output::UserOffline), "{outs:?}");
}

#[test]
fn the_next_sweep_is_when_the_quietest_device_would_pass_the_timeout() {
    let mut w = World::new(USER);
    assert_eq!(w.session.next_sweep(60_000, |_| None), None, "no devices, no sweep");
    let start = w.now;
    let quiet = w.device(&["*"]);
    let pinging = w.device(&["*"]);
    // `pinging`'s pings, answered by the runtime 50 s on; `quiet` was last heard of at its open
    assert_eq!(w.session.next_sweep(60_000, |d| (d == pinging).then_some(start + 50_000)), Some(start + 60_001));
    w.now = start + 60_001;
    w.session.handle_sweep(w.now, 60_000, |d| (d == pinging).then_some(start + 50_000));
    assert!(w.session.poll_output().is_some_and(|o| matches!(o, Output::Close { device, code: 4001, .. } if device == quiet)));
    assert_eq!(w.session.next_sweep(60_000, |d| (d == pinging).then_some(start + 50_000)), Some(start + 110_001));
}

/// A terminal's room takes input from its own sockets only: a session device never types into
/// it, whether its token held the `input` right when it joined or gained it by a `refresh`
/// (which the session passes on to each room, and which a device can also send itself).
#[test]
fn a_session_device_never_types_into_a_terminal_not_even_after_a_refresh() {
    let secret = b"s3cret".to_vec();
    let mut w = World::new(USER);
    w.session = Session::new(USER, Secrets { current: secret.clone(), previous: Vec::new() }, w.now);
    let now = w.now;
    let (room, store) = w.room("term");
    room.set_token_check(crate::room::TokenCheck { room: "term".into(), secret: secret.clone(), previous: Vec::new() });
    let agent = crate::room::Identity {
        client_id: "agent".into(),
        user: "host".into(),
        meta: None,
        echo: false,
        rights: crate::token::Rights { subscribe: true, publish: true, presence: false, input: false },
        expires: None,
    };
    room.handle_open(agent, None, now, store).expect("the agent is admitted");
    while room.poll_action().is_some() {}
    let typist = |rights: Vec<Right>| {
        let mut c = claims(USER, &[]);
        c.rooms.insert("term".into(), rights);
        c
    };
    let all = vec![Right::Subscribe, Right::Publish, Right::Presence, Right::Input];
    // Joined with the right in its token.
    let id = w.session.handle_open("dev-typist".into(), typist(all.clone()), w.now).unwrap();
    w.inbox.insert(id, Vec::new());
    w.pump();
    w.send(id, r#"{"type":"join","room":"term"}"#);
    assert_eq!(w.frames(id, "term", "joined").len(), 1);
    let keys = |n: u32| format!(r#"{{"type":"input","room":"term","id":"i{n}","to":{{"clientId":"agent"}},"data":{{"keys":"id\r"}}}}"#);
    w.send(id, &keys(1));
    // Joined without it, then refreshed (by the session, and by the device itself) with it.
    let plain = w.session.handle_open("dev-plain".into(), typist(vec![Right::Subscribe]), w.now).unwrap();
    w.inbox.insert(plain, Vec::new());
    w.pump();
    w.send(plain, r#"{"type":"join","room":"term"}"#);
    let fresh = crate::token::mint(&typist(all), &secret).unwrap();
    w.send(plain, &format!(r#"{{"type":"refresh","token":"{fresh}"}}"#));
    assert!(w.inbox[&plain].iter().any(|v| v["type"] == "refreshed"));
    w.send(plain, &keys(2));
    w.send(plain, &format!(r#"{{"type":"refresh","room":"term","token":"{fresh}"}}"#));
    w.send(plain, &keys(3));
    let answer = |device: u64, n: u32| {
        let answers: Vec<&Value> = w.inbox[&device].iter().filter(|v| v["id"] == format!("i{n}")).collect();
        assert_eq!(answers.len(), 1, "i{n}: {:?}", w.inbox[&device]);
        (answers[0]["type"].as_str().map(str::to_owned), answers[0]["code"].as_str().map(str::to_owned))
    };
    let forbidden = (Some("error".to_owned()), Some("forbidden".to_owned()));
    let got = [answer(id, 1), answer(plain, 2), answer(plain, 3)];
    assert_eq!(got, [forbidden.clone(), forbidden.clone(), forbidden]);
}

/// A socket whose token expired keeps, until a refresh or the grace's end, the rooms it watched
/// and the user's read positions, but adds no watch and moves no position (a `watch` or
/// `mark_read` before the sweep noticed the expiry, too).
#[test]
fn an_expired_token_neither_watches_more_rooms_nor_moves_read_positions() {
    let mut w = World::new(USER);
    let other = w.device(&["*"]);
    w.send(other, r#"{"type":"join","room":"r"}"#);
    for i in 0..3 {
        w.publish(other, "r", &format!("m{i}"));
    }
    let a = short_device(&mut w, 60_000);
    w.send(a, r#"{"type":"watch","rooms":["r"]}"#);
    let watched = |w: &World| w.relayed.iter().filter(|(_, op)| matches!(op, RelayOp::Watch { on: true })).count();
    assert_eq!(watched(&w), 1, "watched while its token is valid");
    w.now += 120_000;
    // Before the sweep and after it.
    for sweep in [false, true] {
        if sweep {
            let now = w.now;
            w.session.handle_sweep(now, 600_000, |_| Some(now));
            w.pump();
        }
        w.inbox.get_mut(&a).unwrap().clear();
        w.send(a, r#"{"type":"watch","rooms":["r","s"]}"#);
        w.send(a, r#"{"type":"mark_read","room":"r","seq":3}"#);
        let errors: Vec<&str> = w.inbox[&a].iter().filter(|v| v["type"] == "error").filter_map(|v| v["code"].as_str()).collect();
        assert_eq!(errors, ["unauthorized", "unauthorized"], "sweep {sweep}: {:?}", w.inbox[&a]);
        assert_eq!(watched(&w), 1, "sweep {sweep}: no room watched afresh");
        assert!(!w.rows.contains_key("r r"), "sweep {sweep}: no read position moved");
        assert!(w.rows.contains_key(&format!("w {a}")), "sweep {sweep}: what it watched stays");
    }
}
