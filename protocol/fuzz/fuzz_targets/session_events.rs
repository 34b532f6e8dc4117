//! A user's session and its rooms driven by arbitrary events: devices open and close, send
//! arbitrary text or the frames a client sends (join with any start, leave, publish, mark_read,
//! watch, frames naming rooms not joined), rooms kick and reset, and the feed calls between the
//! rooms and the session are lost before or after the session saw them. It must never panic, every
//! frame a device gets must be one JSON object with a type, and per device per room the stored
//! messages it gets must come in strictly increasing seq order (none doubled or reordered).
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::relay::RelayRequest;
use roomcast_protocol::room::Room;
use roomcast_protocol::session::{Output, Secrets, Session};
use roomcast_protocol::store::MemoryStore;
use roomcast_protocol::token::{Claims, Right};
use serde_json::Value;
use std::collections::BTreeMap;

const ROOMS: [&str; 3] = ["chat:a", "chat:b", "dm~alice,bob"];

#[derive(Arbitrary, Debug)]
enum Event {
    Open,
    Close {
        pick: u8,
    },
    Text {
        pick: u8,
        text: String,
    },
    Join {
        pick: u8,
        room: u8,
        start: Option<(bool, u8)>,
        rewind: Option<u8>,
        echo: bool,
    },
    Leave {
        pick: u8,
        room: u8,
    },
    Publish {
        pick: u8,
        room: u8,
        id: u8,
    },
    MarkRead {
        pick: u8,
        room: u8,
        seq: u8,
    },
    Watch {
        pick: u8,
        rooms: u8,
    },
    Kick {
        room: u8,
    },
    Reset {
        room: u8,
    },
    /// The next feed calls' fates: lost before, or after the session saw them, or answered.
    Fates(Vec<u8>),
    Advance(u16),
}

struct World {
    now: u64,
    session: Session,
    rooms: BTreeMap<&'static str, (Room, MemoryStore)>,
    devices: Vec<u64>,
    last_seq: BTreeMap<(u64, String), u64>,
    fates: Vec<u8>,
    resets: u32,
}

impl World {
    fn room(&mut self, name: &str) -> Option<&mut (Room, MemoryStore)> {
        let key = *ROOMS.iter().find(|r| **r == name)?;
        let now = self.now;
        Some(self.rooms.entry(key).or_insert_with(|| {
            let mut store = MemoryStore::default();
            let config = RoomConfig { history_max_messages: 6, ..RoomConfig::default() };
            let room = Room::load(config, &mut store, "e0", now, []).expect("a fresh store loads");
            (room, store)
        }))
    }

    fn pump(&mut self) {
        for _ in 0..200 {
            let mut moved = false;
            while let Some(out) = self.session.poll_output() {
                moved = true;
                match out {
                    Output::Send { device, text } => {
                        let v: Value = serde_json::from_str(&text).expect("every frame to a device is JSON");
                        let kind = v["type"].as_str().expect("every frame has a type").to_owned();
                        if kind == "message" {
                            let room = v["room"].as_str().expect("a session's message names its room").to_owned();
                            let seq = v["seq"].as_u64().expect("a message has a seq");
                            let last = self.last_seq.entry((device, room)).or_insert(0);
                            assert!(seq > *last, "device {device}: seq {seq} after {last}");
                            *last = seq;
                        }
                        if kind == "joined" {
                            // a new join: its messages start from its own point (a resume or a
                            // rewind may go back before what an earlier join delivered)
                            let room = v["room"].as_str().unwrap_or_default().to_owned();
                            self.last_seq.remove(&(device, room));
                        }
                    }
                    Output::Relay { room, device, op } => {
                        let user = self.session.user().to_owned();
                        let now = self.now;
                        if let Some((r, store)) = self.room(&room) {
                            let mut reply = r.serve_relay(&RelayRequest { session: user, ops: vec![op] }, now, store);
                            while r.poll_action().is_some() {}
                            self.session.handle_relay_result(&room, device, reply.results.remove(0));
                        }
                    }
                    Output::Close { .. }
                    | Output::Save(_)
                    | Output::Delete(_)
                    | Output::Attach { .. }
                    | Output::UserOnline
                    | Output::UserOffline => {}
                }
            }
            let names: Vec<&'static str> = self.rooms.keys().copied().collect();
            for name in names {
                let now = self.now;
                let fate = self.fates.pop().unwrap_or(3);
                let Some((r, store)) = self.rooms.get_mut(name) else { continue };
                let Some((session, call, body)) = r.poll_feed(name, now, store) else { continue };
                moved = true;
                match fate % 4 {
                    0 => r.handle_feed_failure(&session, call, now, 7, store),
                    1 => {
                        let _ = self.session.handle_feed(body);
                        r.handle_feed_failure(&session, call, now, 7, store);
                    }
                    _ => {
                        let reply = self.session.handle_feed(body);
                        r.handle_feed_answer(&session, call, reply, now, store);
                    }
                }
                while r.poll_action().is_some() {}
            }
            if !moved {
                return;
            }
        }
    }

    fn device(&self, pick: u8) -> Option<u64> {
        (!self.devices.is_empty()).then(|| self.devices[pick as usize % self.devices.len()])
    }

    fn send(&mut self, pick: u8, text: &str) {
        if let Some(d) = self.device(pick) {
            self.session.handle_text(d, text, self.now);
        }
    }
}

fuzz_target!(|events: Vec<Event>| {
    let mut w = World {
        now: 1_000,
        session: Session::new("alice", Secrets::default(), 1_000),
        rooms: BTreeMap::new(),
        devices: Vec::new(),
        last_seq: BTreeMap::new(),
        fates: Vec::new(),
        resets: 0,
    };
    for event in events.into_iter().take(64) {
        match event {
            Event::Open => {
                let rights = vec![Right::Subscribe, Right::Publish, Right::Presence];
                let claims = Claims {
                    sub: "alice".into(),
                    exp: 4_000_000_000,
                    nbf: None,
                    iat: None,
                    rooms: [("chat:*".to_owned(), rights.clone()), ("dm~*".to_owned(), rights)].into(),
                    meta: None,
                };
                let d = w.session.handle_open(format!("tab{}", w.devices.len()), claims, w.now).expect("the session's own user");
                w.devices.push(d);
            }
            Event::Close { pick } => {
                if let Some(d) = w.device(pick) {
                    w.session.handle_close(d, w.now);
                    w.devices.retain(|x| *x != d);
                }
            }
            Event::Text { pick, text } => w.send(pick, &text),
            Event::Join { pick, room, start, rewind, echo } => {
                let room = ROOMS[room as usize % ROOMS.len()];
                let mut f = serde_json::json!({ "type": "join", "room": room, "echo": echo });
                if let Some((same, since)) = start {
                    f["epoch"] = Value::from(if same { format!("e{}", w.resets) } else { "other".into() });
                    f["since"] = Value::from(since);
                } else if let Some(n) = rewind {
                    f["rewind"] = Value::from(n);
                }
                w.send(pick, &f.to_string());
            }
            Event::Leave { pick, room } => w.send(pick, &format!(r#"{{"type":"leave","room":"{}"}}"#, ROOMS[room as usize % ROOMS.len()])),
            Event::Publish { pick, room, id } => {
                let room = ROOMS[room as usize % ROOMS.len()];
                w.send(pick, &format!(r#"{{"type":"publish","room":"{room}","id":"m{id}","data":{id}}}"#));
            }
            Event::MarkRead { pick, room, seq } => {
                w.send(pick, &format!(r#"{{"type":"mark_read","room":"{}","seq":{seq}}}"#, ROOMS[room as usize % ROOMS.len()]))
            }
            Event::Watch { pick, rooms } => {
                let list: Vec<&str> = ROOMS.iter().enumerate().filter(|(i, _)| rooms & (1 << i) != 0).map(|(_, r)| *r).collect();
                w.send(pick, &serde_json::json!({ "type": "watch", "rooms": list }).to_string());
            }
            Event::Kick { room } => {
                let now = w.now;
                if let Some((r, store)) = w.room(ROOMS[room as usize % ROOMS.len()]) {
                    let _ = r.kick("alice", None, None, now, store);
                    r.settle_relays(now, store);
                    while r.poll_action().is_some() {}
                }
            }
            Event::Reset { room } => {
                let now = w.now;
                w.resets += 1;
                let epoch = format!("e{}", w.resets);
                if let Some((r, store)) = w.room(ROOMS[room as usize % ROOMS.len()]) {
                    let _ = r.reset(&epoch, now, store);
                    r.settle_relays(now, store);
                    while r.poll_action().is_some() {}
                }
                // a new epoch: seqs start again
                w.last_seq.clear();
            }
            Event::Fates(f) => w.fates = f.into_iter().take(16).collect(),
            Event::Advance(ms) => {
                w.now += u64::from(ms);
                let now = w.now;
                for (r, store) in w.rooms.values_mut() {
                    r.handle_timeout(now, |_| Some(now), store);
                    r.settle_relays(now, store);
                    while r.poll_action().is_some() {}
                }
            }
        }
        w.pump();
    }
});
