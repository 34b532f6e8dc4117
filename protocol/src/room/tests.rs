//! The room driven natively: a simulated adapter delivers the room's actions to per-connection
//! inboxes, with a simulated clock and the in-memory store.

use super::*;
use crate::api::Caller;
use crate::api::API_ORIGIN;
use crate::close;
use crate::compact::CompactJson;
use crate::frame::PING;
use crate::store::{MemoryStore, Store};
use crate::token::Rights;
use proptest::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

struct Sim {
    room: Room,
    store: MemoryStore,
    now: u64,
    open: BTreeSet<ConnId>,
    inbox: HashMap<ConnId, Vec<Value>>,
    closed_by_room: Vec<(ConnId, u16)>,
}

impl Sim {
    fn new(config: RoomConfig) -> Sim {
        let mut store = MemoryStore::default();
        let room = Room::load(config, &mut store, "epoch-1", 1_000, []).unwrap();
        Sim { room, store, now: 1_000, open: BTreeSet::new(), inbox: HashMap::new(), closed_by_room: Vec::new() }
    }

    fn deliver(&mut self) {
        while let Some(action) = self.room.poll_action() {
            match action {
                Action::Send { to, text } => {
                    let value: Value = serde_json::from_str(&text).expect("server frames are JSON");
                    let targets: Vec<ConnId> = match to {
                        Recipients::All { except } => self.open.iter().copied().filter(|c| Some(*c) != except).collect(),
                        Recipients::One(c) => vec![c],
                        Recipients::List(list) => list,
                    };
                    for c in targets {
                        assert!(self.open.contains(&c), "frame sent to a closed connection {c}");
                        self.inbox.entry(c).or_default().push(value.clone());
                    }
                }
                Action::Close { conn, code } => {
                    self.open.remove(&conn);
                    self.closed_by_room.push((conn, code.code));
                }
            }
        }
    }

    fn connect(&mut self, client: &str, user: &str, echo: bool, resume: Option<ResumePoint>) -> ConnId {
        self.connect_with(client, user, echo, resume, Rights::ALL)
    }

    fn connect_with(&mut self, client: &str, user: &str, echo: bool, resume: Option<ResumePoint>, rights: Rights) -> ConnId {
        let identity = Identity { client_id: client.into(), user: user.into(), meta: None, echo, rights, expires: None };
        let id = self.room.handle_open(identity, resume, self.now, &mut self.store).expect("admitted");
        self.open.insert(id);
        self.deliver();
        id
    }

    fn text(&mut self, conn: ConnId, text: &str) {
        self.room.handle_text(conn, text, self.now, &mut self.store);
        self.deliver();
    }

    fn publish(&mut self, conn: ConnId, id: &str, data: &str) {
        self.text(conn, &format!(r#"{{"type":"publish","id":"{id}","data":{data}}}"#));
    }

    fn close(&mut self, conn: ConnId) {
        self.open.remove(&conn);
        self.room.handle_close(conn, self.now, &mut self.store);
        self.deliver();
    }

    fn advance(&mut self, ms: u64, last_pong: impl Fn(ConnId) -> Option<u64>) {
        self.now += ms;
        self.room.handle_timeout(self.now, last_pong, &mut self.store);
        self.deliver();
    }

    fn frames(&self, conn: ConnId, kind: &str) -> Vec<Value> {
        self.inbox.get(&conn).map(|v| v.iter().filter(|f| f["type"] == kind).cloned().collect()).unwrap_or_default()
    }

    fn seqs(&self, conn: ConnId) -> Vec<u64> {
        self.frames(conn, "message").iter().map(|f| f["seq"].as_u64().unwrap()).collect()
    }

    fn last(&self, conn: ConnId) -> Value {
        self.inbox[&conn].last().cloned().unwrap()
    }
}

fn small_history() -> RoomConfig {
    RoomConfig { history_max_messages: 16, ..RoomConfig::default() }
}

#[test]
fn fanout_reaches_the_others_and_not_the_sender_with_echo_off() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "ua", true, None);
    let b = sim.connect("b", "ub", true, None);
    let c = sim.connect("c", "uc", true, None);
    let sender = sim.connect("d", "ud", false, None);
    sim.publish(sender, "m1", r#"{"text":"hi"}"#);
    for conn in [a, b, c] {
        let msgs = sim.frames(conn, "message");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0]["data"]["text"], "hi");
        assert_eq!(msgs[0]["seq"], 1);
        assert_eq!(msgs[0]["from"], "d");
        assert_eq!(msgs[0]["user"], "ud");
    }
    assert!(sim.frames(sender, "message").is_empty());
    assert_eq!(sim.last(sender), serde_json::json!({"type":"ack","id":"m1","seq":1}));
}

#[test]
fn echo_on_sends_the_message_then_the_ack() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "ua", true, None);
    sim.publish(a, "x", "1");
    let kinds: Vec<_> = sim.inbox[&a].iter().map(|f| f["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["welcome", "message", "ack"]);
}

#[test]
fn welcome_carries_epoch_seq_and_members() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "alice", true, None);
    sim.publish(a, "1", "1");
    let b = sim.connect("b", "bob", true, None);
    let w = &sim.frames(b, "welcome")[0];
    assert_eq!(w["epoch"], "epoch-1");
    assert_eq!(w["seq"], 1);
    assert_eq!(w["clientId"], "b");
    let users: Vec<_> = w["members"].as_array().unwrap().iter().map(|m| m["user"].as_str().unwrap().to_owned()).collect();
    assert_eq!(users, ["alice", "bob"]);
    let joins = sim.frames(a, "presence");
    assert_eq!(joins.last().unwrap()["event"], "join");
    assert_eq!(joins.last().unwrap()["member"]["user"], "bob");
}

#[test]
fn retried_publish_is_acknowledged_with_its_first_seq_and_not_rebroadcast() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "ua", false, None);
    let b = sim.connect("b", "ub", true, None);
    sim.publish(a, "same", "1");
    sim.publish(a, "other", "2");
    sim.publish(a, "same", "1");
    assert_eq!(sim.last(a), serde_json::json!({"type":"ack","id":"same","seq":1,"duplicate":true}));
    assert_eq!(sim.seqs(b), [1, 2]);
    assert_eq!(sim.room.seq(), 2);
    // the same id from another client is a different message
    sim.publish(b, "same", "3");
    assert_eq!(sim.room.seq(), 3);
}

#[test]
fn a_failed_write_is_neither_broadcast_nor_acknowledged() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "ua", false, None);
    let b = sim.connect("b", "ub", true, None);
    sim.store.fail_writes = true;
    sim.publish(a, "m", "1");
    assert_eq!(sim.last(a)["type"], "error");
    assert_eq!(sim.last(a)["code"], "storage");
    assert_eq!(sim.last(a)["id"], "m");
    assert!(sim.seqs(b).is_empty());
    assert_eq!(sim.room.seq(), 0);
    sim.store.fail_writes = false;
    sim.publish(a, "m", "1");
    assert_eq!(sim.seqs(b), [1]);
}

#[test]
fn bad_frames_get_errors_and_the_connection_keeps_working() {
    let config = RoomConfig { max_frame_bytes: 100, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let a = sim.connect("a", "ua", false, None);
    let b = sim.connect("b", "ub", true, None);
    for (text, code) in [
        ("{not json", "bad_frame"),
        (r#"{"type":"teleport","id":"t1"}"#, "unknown_type"),
        (r#"{"type":"publish","id":"p1"}"#, "bad_frame"),
        (&"x".repeat(101), "too_large"),
    ] {
        sim.text(a, text);
        let last = sim.last(a);
        assert_eq!(last["type"], "error", "for {text}");
        assert_eq!(last["code"], code, "for {text}");
    }
    assert_eq!(sim.frames(a, "error")[1]["id"], "t1");
    sim.room.handle_binary(a, 3, sim.now, &mut sim.store);
    sim.deliver();
    assert_eq!(sim.last(a)["code"], "bad_frame");
    sim.publish(a, "ok", "1");
    assert_eq!(sim.seqs(b), [1]);
    assert!(sim.frames(b, "error").is_empty());
}

#[test]
fn a_ping_that_reaches_the_room_is_answered() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "ua", true, None);
    sim.text(a, r#"{ "type": "ping" }"#);
    assert_eq!(sim.last(a)["type"], "pong");
    sim.text(a, PING);
    assert_eq!(sim.last(a)["type"], "pong");
}

#[test]
fn direct_messages_reach_only_their_target() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "alice", true, None);
    let b1 = sim.connect("b1", "bob", true, None);
    let b2 = sim.connect("b2", "bob", true, None);
    let c = sim.connect("c", "carol", true, None);
    sim.text(a, r#"{"type":"direct","id":"d1","to":{"user":"bob"},"data":"psst"}"#);
    assert_eq!(sim.last(a), serde_json::json!({"type":"ack","id":"d1","delivered":2}));
    for conn in [b1, b2] {
        let d = sim.frames(conn, "direct");
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["from"], "a");
        assert_eq!(d[0]["user"], "alice");
        assert_eq!(d[0]["data"], "psst");
    }
    assert!(sim.frames(c, "direct").is_empty());
    sim.text(a, r#"{"type":"direct","id":"d2","to":{"clientId":"c"},"data":1}"#);
    assert_eq!(sim.frames(c, "direct").len(), 1);
    assert_eq!(sim.frames(b1, "direct").len(), 1);
    sim.text(a, r#"{"type":"direct","id":"d3","to":{"clientId":"nobody"},"data":1}"#);
    assert_eq!(sim.last(a)["code"], "no_recipient");
    assert_eq!(sim.room.seq(), 0, "direct messages are not stored");
}

#[test]
fn only_the_input_right_types_into_a_terminal_and_only_its_agent_hears_it() {
    let mut sim = Sim::new(RoomConfig::default());
    let agent = sim.connect("agent", "host", false, None);
    // A viewer with every other right (anonymous connections hold Rights::ALL: no input either).
    let viewer = sim.connect("v", "val", false, None);
    let typist = sim.connect_with("t", "tom", false, None, Rights { subscribe: true, publish: false, presence: false, input: true });
    let keys = r#"{"type":"input","id":"i1","to":{"clientId":"agent"},"data":{"keys":"ls\r"}}"#;
    sim.text(viewer, keys);
    assert_eq!((sim.last(viewer)["code"].as_str(), sim.last(viewer)["id"].as_str()), (Some("forbidden"), Some("i1")));
    assert!(sim.frames(agent, "input").is_empty(), "refused by the room, not only the page");
    sim.text(typist, keys);
    assert_eq!(sim.last(typist), serde_json::json!({"type":"ack","id":"i1"}), "without presence: no count");
    let got = sim.frames(agent, "input");
    assert_eq!(got.len(), 1);
    assert_eq!((&got[0]["from"], &got[0]["user"], &got[0]["data"]), (&"t".into(), &"tom".into(), &serde_json::json!({"keys":"ls\r"})));
    assert!(sim.frames(viewer, "input").is_empty() && sim.frames(viewer, "direct").is_empty(), "nobody else hears keystrokes");
    // the input right does not let it publish, and input is not stored
    sim.publish(typist, "m", "1");
    assert_eq!(sim.last(typist)["code"], "forbidden");
    assert_eq!(sim.room.seq(), 0);
}

#[test]
fn resume_replays_exactly_the_missing_suffix() {
    let mut sim = Sim::new(RoomConfig::default());
    let p = sim.connect("p", "pub", false, None);
    for i in 0..10 {
        sim.publish(p, &format!("m{i}"), &i.to_string());
    }
    let r = sim.connect("r", "reader", true, Some(ResumePoint { epoch: "epoch-1".into(), since: 6 }));
    let w = &sim.frames(r, "welcome")[0];
    assert_eq!(w["resume"], serde_json::json!({"status":"recovered","replayed":4}));
    assert_eq!(sim.seqs(r), [7, 8, 9, 10]);
    sim.publish(p, "live", "11");
    assert_eq!(sim.seqs(r), [7, 8, 9, 10, 11]);
    // replay comes right after the welcome, before anything else
    let kinds: Vec<_> = sim.inbox[&r].iter().take(5).map(|f| f["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(kinds, ["welcome", "message", "message", "message", "message"]);
}

#[test]
fn resume_that_cannot_be_served_says_why() {
    let mut sim = Sim::new(small_history());
    let p = sim.connect("p", "pub", false, None);
    for i in 0..40 {
        sim.publish(p, &format!("m{i}"), "0");
    }
    let cases = [("epoch-1", 2, "retention"), ("other", 39, "epoch"), ("epoch-1", 99, "ahead")];
    for (i, (epoch, since, reason)) in cases.into_iter().enumerate() {
        let r = sim.connect(&format!("r{i}"), "reader", true, Some(ResumePoint { epoch: epoch.into(), since }));
        let w = &sim.frames(r, "welcome")[0];
        assert_eq!(w["resume"]["status"], "not_recovered");
        assert_eq!(w["resume"]["reason"], reason);
        assert_eq!(w["resume"]["since"], since);
        assert!(sim.seqs(r).is_empty(), "nothing is replayed on a gap");
    }
}

#[test]
fn presence_is_per_user_with_grace() {
    let config = RoomConfig { presence_grace_ms: 500, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let watcher = sim.connect("w", "watcher", true, None);
    let phone = sim.connect("p", "alice", true, None);
    let laptop = sim.connect("l", "alice", true, None);
    let events = |sim: &Sim| -> Vec<(String, u64)> {
        sim.frames(watcher, "presence")
            .iter()
            .filter(|f| f["member"]["user"] == "alice")
            .map(|f| (f["event"].as_str().unwrap().to_owned(), f["member"]["connections"].as_u64().unwrap()))
            .collect()
    };
    assert_eq!(events(&sim), [("join".into(), 1), ("update".into(), 2)]);
    sim.close(phone);
    sim.close(laptop);
    assert_eq!(events(&sim).last().unwrap(), &("update".to_string(), 0));
    assert_eq!(sim.room.poll_timeout(), Some(sim.now + 500));
    // a reconnect inside the grace period is not a leave
    sim.advance(300, |_| None);
    let back = sim.connect("p", "alice", true, None);
    sim.advance(1_000, |_| None);
    assert!(!events(&sim).iter().any(|(e, _)| e == "leave"));
    sim.close(back);
    sim.advance(499, |_| None);
    assert!(!events(&sim).iter().any(|(e, _)| e == "leave"));
    sim.advance(1, |_| None);
    assert_eq!(events(&sim).last().unwrap(), &("leave".to_string(), 0));
    assert!(sim.room.presence().get("alice").is_none());
}

#[test]
fn heartbeat_sweep_closes_silent_connections_only() {
    let config = RoomConfig { heartbeat_timeout_ms: 1_000, presence_grace_ms: 1, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let pinging = sim.connect("a", "ua", true, None);
    let silent = sim.connect("b", "ub", true, None);
    // the runtime answers `pinging`'s pings as time goes by; `silent` sends nothing
    for _ in 0..4 {
        let pong_at = sim.now + 500;
        sim.advance(500, |c| (c == pinging).then_some(pong_at));
    }
    assert_eq!(sim.closed_by_room, [(silent, close::HEARTBEAT_TIMEOUT.code)]);
    assert!(sim.open.contains(&pinging));
    let pong_at = sim.now + 10;
    sim.advance(10, |c| (c == pinging).then_some(pong_at));
    let leaves: Vec<_> = sim.frames(pinging, "presence").into_iter().filter(|f| f["event"] == "leave").collect();
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0]["member"]["user"], "ub");
    // calling the timer again, early or late, changes nothing more
    let pong_at = sim.now;
    sim.advance(0, |_| Some(pong_at));
    assert_eq!(sim.closed_by_room.len(), 1);
}

#[test]
fn load_rebuilds_connections_and_grace_without_announcing() {
    let config = RoomConfig { presence_grace_ms: 1_000, ..RoomConfig::default() };
    let mut sim = Sim::new(config.clone());
    let a = sim.connect("a", "alice", true, None);
    let b = sim.connect("b", "bob", true, None);
    sim.publish(a, "m", "1");
    sim.close(b);
    let attachments: Vec<Connection> =
        [a].iter().map(|id| serde_json::from_str(&serde_json::to_string(sim.room.connection(*id).unwrap()).unwrap()).unwrap()).collect();
    // hibernation: a new instance from the store and the live sockets' attachments
    let mut room = Room::load(config, &mut sim.store, "unused-epoch", sim.now + 10, attachments).unwrap();
    assert!(room.poll_action().is_none(), "a wake announces nothing");
    assert_eq!(room.epoch(), "epoch-1");
    assert_eq!(room.seq(), 1);
    assert_eq!(room.presence().get("alice").unwrap().connections, 1);
    assert_eq!(room.presence().get("bob").unwrap().leave_at, Some(sim.now + 1_000));
    // new connections get fresh ids
    let c = room
        .handle_open(
            Identity { client_id: "c".into(), user: "carol".into(), meta: None, echo: true, rights: Rights::ALL, expires: None },
            None,
            sim.now + 20,
            &mut sim.store,
        )
        .unwrap();
    assert!(c > a && c > b);
    room.handle_timeout(sim.now + 1_000, |_| None, &mut sim.store);
    let leave = std::iter::from_fn(|| room.poll_action())
        .any(|a| matches!(a, Action::Send { text, .. } if text.contains("\"leave\"") && text.contains("bob")));
    assert!(leave, "bob's grace period ends after the wake too");
}

#[test]
fn http_publish_validates_the_whole_batch_first() {
    let config = RoomConfig { publish_batch_max: 3, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let a = sim.connect("a", "ua", true, None);
    let item = |id: Option<&str>| PublishItem { data: CompactJson::parse("1").unwrap(), id: id.map(Into::into) };
    // Bad ids, too many or too large items are the edge's to refuse now, before the room wakes:
    // api::publish's tests (bad_bodies_are_refused_with_documented_answers).
    let r = sim.room.publish(&Caller::backend(), &[item(Some("x")), item(None), item(Some("x"))], sim.now, &mut sim.store).unwrap();
    assert_eq!(r.iter().map(|p| (p.seq, p.duplicate)).collect::<Vec<_>>(), [(1, false), (2, false), (1, true)]);
    sim.deliver();
    assert_eq!(sim.seqs(a), [1, 2]);
    assert_eq!(sim.frames(a, "message")[0]["from"], API_ORIGIN);
    let stats = sim.room.stats(sim.now, &mut sim.store).unwrap();
    assert_eq!((stats.seq, stats.messages_in, stats.messages_out, stats.history), (2, 2, 2, 2));
}

#[test]
fn history_is_trimmed_by_count_and_age() {
    let config = RoomConfig { history_max_messages: 16, history_max_age_ms: 10_000, heartbeat_timeout_ms: 2_000, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let a = sim.connect("a", "ua", true, None);
    for i in 0..50 {
        sim.publish(a, &format!("m{i}"), "0");
    }
    let count = sim.store.count().unwrap();
    assert!((16..=17).contains(&count), "history holds {count}");
    let page = sim.room.read_history("reader", Page::After(0), 100, sim.now, &mut sim.store).unwrap();
    assert_eq!(page.messages.last().unwrap().seq, 50);
    sim.advance(20_000, |_| Some(u64::MAX / 4));
    assert_eq!(sim.store.count().unwrap(), 0, "age trims everything old");
    assert_eq!(sim.store.meta().unwrap().unwrap().seq, 50, "seq survives an empty history");
}

#[test]
fn rights_gate_publishing_and_presence() {
    let mut sim = Sim::new(RoomConfig::default());
    let reader_only = Rights { subscribe: true, publish: false, presence: false, input: false };
    let watcher = sim.connect("w", "watcher", true, None);
    let reader = sim.connect_with("r", "reader", true, None, reader_only);
    assert_eq!(sim.frames(reader, "welcome")[0]["members"], serde_json::json!([]), "no presence right, no member list");
    sim.publish(reader, "m", "1");
    assert_eq!(sim.last(reader)["code"], "forbidden");
    assert_eq!(sim.last(reader)["id"], "m");
    sim.text(reader, r#"{"type":"direct","id":"d","to":{"user":"watcher"},"data":1}"#);
    assert_eq!(sim.last(reader)["code"], "forbidden");
    assert_eq!(sim.room.seq(), 0);
    assert!(sim.frames(watcher, "direct").is_empty());
    // presence events reach only connections with the right
    sim.connect("x", "xavier", true, None);
    assert!(sim.frames(reader, "presence").is_empty());
    assert!(sim.frames(watcher, "presence").iter().any(|f| f["member"]["user"] == "xavier"));
    // the reader still receives messages
    sim.publish(watcher, "w1", "2");
    assert_eq!(sim.seqs(reader), [1]);
}

#[test]
fn a_flood_is_rate_limited_then_closed_and_others_keep_flowing() {
    let config = RoomConfig { rate_messages_per_sec: 10, rate_messages_burst: 5, max_strikes: 20, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let flooder = sim.connect("f", "flood", false, None);
    let calm = sim.connect("c", "calm", false, None);
    let watcher = sim.connect("w", "watch", false, None);
    for i in 0..30 {
        if sim.open.contains(&flooder) {
            sim.publish(flooder, &format!("f{i}"), "0");
        }
    }
    let limited = sim.frames(flooder, "error").iter().filter(|f| f["code"] == "rate_limited").count();
    assert_eq!(limited, 20, "everything past the burst is refused until the strikes run out");
    assert_eq!(sim.closed_by_room, [(flooder, close::POLICY_VIOLATION.code)]);
    let from_flooder = sim.frames(watcher, "message").iter().filter(|m| m["from"] == "f").count();
    assert_eq!(from_flooder, 5, "only the burst got through");
    sim.publish(calm, "c1", "1");
    assert_eq!(sim.frames(watcher, "message").last().unwrap()["from"], "c");
    // tokens come back with time
    let mut sim2 = Sim::new(RoomConfig { rate_messages_per_sec: 10, rate_messages_burst: 1, ..RoomConfig::default() });
    let a = sim2.connect("a", "a", false, None);
    sim2.publish(a, "1", "0");
    sim2.publish(a, "2", "0");
    assert_eq!(sim2.last(a)["code"], "rate_limited");
    // the refusal says when a token is back (10 per second: 100 ms), and then it passes
    assert_eq!(sim2.last(a)["retryAfterMs"], 100);
    sim2.advance(90, |_| None);
    sim2.publish(a, "3", "0");
    let wait = sim2.last(a)["retryAfterMs"].as_u64().unwrap();
    assert!((10..=11).contains(&wait), "{wait}");
    sim2.advance(wait, |_| None);
    sim2.publish(a, "4", "0");
    assert_eq!(sim2.last(a)["type"], "ack", "after the wait it said");
}

#[test]
fn byte_rate_limit_and_invalid_frames_count_as_strikes() {
    let config = RoomConfig { rate_bytes_per_sec: 100, max_frame_bytes: 400, max_strikes: 3, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let a = sim.connect("a", "a", false, None);
    let payload = format!("\"{}\"", "x".repeat(300));
    sim.publish(a, "1", &payload);
    assert_eq!(sim.last(a)["type"], "ack");
    sim.publish(a, "2", &payload);
    assert_eq!(sim.last(a)["code"], "rate_limited");
    assert_eq!(sim.last(a)["id"], "2", "read from the frame's start, so the publish settles");
    assert!(sim.last(a)["retryAfterMs"].as_u64().is_some_and(|ms| ms > 0), "{}", sim.last(a));
    sim.text(a, "garbage");
    assert!(sim.open.contains(&a));
    sim.text(a, "garbage");
    assert_eq!(sim.closed_by_room, [(a, close::POLICY_VIOLATION.code)]);
}

#[test]
fn a_full_room_says_so() {
    let mut sim = Sim::new(RoomConfig { max_connections: 2, ..RoomConfig::default() });
    sim.connect("a", "a", false, None);
    assert!(!sim.room.is_full());
    sim.connect("b", "b", false, None);
    assert!(sim.room.is_full());
}

// ---- properties -----------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Open { user: u8, echo: bool },
    Close { pick: usize },
    Publish { pick: usize, id: u8 },
    HttpPublish { id: Option<u8> },
    Advance { ms: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0u8..4, any::<bool>()).prop_map(|(user, echo)| Op::Open { user, echo }),
        1 => any::<usize>().prop_map(|pick| Op::Close { pick }),
        4 => (any::<usize>(), 0u8..12).prop_map(|(pick, id)| Op::Publish { pick, id }),
        1 => proptest::option::of(0u8..6).prop_map(|id| Op::HttpPublish { id }),
        1 => (0u16..400).prop_map(|ms| Op::Advance { ms }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Sequence numbers strictly increase without gaps; every open connection gets every
    /// broadcast made while it was open exactly once and in order (its own only with echo on);
    /// retries are applied once; after the grace period presence equals the users with open
    /// connections.
    #[test]
    fn room_invariants(ops in proptest::collection::vec(op(), 1..120)) {
        let config = RoomConfig { presence_grace_ms: 300, heartbeat_timeout_ms: 1_000_000, ..RoomConfig::default() };
        let mut sim = Sim::new(config);
        // what each connection should have seen: seqs broadcast while it was open
        let mut expected: HashMap<ConnId, Vec<u64>> = HashMap::new();
        let mut echo_of: HashMap<ConnId, bool> = HashMap::new();
        let mut applied: BTreeSet<(String, String)> = BTreeSet::new();
        let mut next_client = 0;
        for op in ops {
            let before = sim.room.seq();
            let mut sender = None;
            match op {
                Op::Open { user, echo } => {
                    next_client += 1;
                    let c = sim.connect(&format!("c{next_client}"), &format!("u{user}"), echo, None);
                    echo_of.insert(c, echo);
                    expected.insert(c, Vec::new());
                }
                Op::Close { pick } => {
                    if let Some(c) = sim.open.iter().nth(pick % sim.open.len().max(1)).copied() {
                        sim.close(c);
                    }
                }
                Op::Publish { pick, id } => {
                    if let Some(c) = sim.open.iter().nth(pick % sim.open.len().max(1)).copied() {
                        let client = sim.room.connection(c).unwrap().client_id.clone();
                        let fresh = applied.insert((client, id.to_string()));
                        sim.publish(c, &id.to_string(), "0");
                        prop_assert_eq!(sim.room.seq(), before + u64::from(fresh));
                        let ack = sim.last(c);
                        prop_assert_eq!(&ack["type"], "ack");
                        prop_assert_eq!(ack.get("duplicate").is_some(), !fresh);
                        sender = Some(c);
                    }
                }
                Op::HttpPublish { id } => {
                    let fresh = id.is_none_or(|i| applied.insert((API_ORIGIN.into(), i.to_string())));
                    let item = PublishItem { data: CompactJson::parse("0").unwrap(), id: id.map(|i| i.to_string()) };
                    sim.room.publish(&Caller::backend(), &[item], sim.now, &mut sim.store).unwrap();
                    sim.deliver();
                    prop_assert_eq!(sim.room.seq(), before + u64::from(fresh));
                }
                Op::Advance { ms } => sim.advance(u64::from(ms), |_| None),
            }
            if sim.room.seq() > before {
                let seq = sim.room.seq();
                for c in sim.open.iter() {
                    if Some(*c) != sender || echo_of[c] {
                        expected.get_mut(c).unwrap().push(seq);
                    }
                }
            }
        }
        for (c, want) in &expected {
            prop_assert_eq!(&sim.seqs(*c), want, "connection {}", c);
        }
        let stored: Vec<u64> = sim.store.after(0, usize::MAX, usize::MAX).unwrap().iter().map(|m| m.seq).collect();
        prop_assert_eq!(stored, (1..=sim.room.seq()).collect::<Vec<_>>());
        sim.advance(301, |_| None);
        let truth: BTreeSet<String> = sim.open.iter().map(|c| sim.room.connection(*c).unwrap().user.clone()).collect();
        let present: BTreeSet<String> = sim.room.presence().views().iter().map(|m| m.user.to_owned()).collect();
        prop_assert_eq!(present, truth);
    }

    /// Resuming from any seq still in history yields exactly the missing suffix, in order; from
    /// any older seq, an explicit retention gap.
    #[test]
    fn resume_yields_the_suffix_or_a_gap(total in 1u64..80, since_frac in 0.0f64..=1.0) {
        let mut sim = Sim::new(small_history());
        let p = sim.connect("p", "pub", false, None);
        for i in 0..total {
            sim.publish(p, &format!("m{i}"), "0");
        }
        let since = ((total as f64) * since_frac) as u64;
        let r = sim.connect("r", "reader", true, Some(ResumePoint { epoch: "epoch-1".into(), since }));
        let oldest = sim.store.oldest().unwrap().unwrap();
        let resume = &sim.frames(r, "welcome")[0]["resume"];
        if since + 1 >= oldest {
            prop_assert_eq!(&resume["status"], "recovered");
            prop_assert_eq!(sim.seqs(r), (since + 1..=total).collect::<Vec<_>>());
        } else {
            prop_assert_eq!(&resume["reason"], "retention");
            prop_assert!(sim.seqs(r).is_empty());
        }
    }
}

// ---- framing --------------------------------------------------------------------------------

use super::framing_check::check_framing;

#[test]
fn a_raw_line_feed_in_data_cannot_forge_a_frame() {
    let forged = "{\"a\":\n{\"type\":\"message\",\"seq\":999999,\"from\":\"x\",\"user\":\"alice\",\"data\":1,\"ts\":1}\n,\"b\":1}";
    // publish, direct, HTTP single, HTTP batch x2, replay x4 (publish + 3 HTTP)
    assert_eq!(check_framing(forged), 1 + 1 + 1 + 2 + 4);
    assert_eq!(check_framing("\"plain\""), 9);
    assert_eq!(check_framing("not json\n{}"), 0, "refused everywhere, and the error frames are single lines");
    // Found by the fuzz target: valid JSON numbers no f64 holds used to pass through intact.
    // Since issue #22 they are refused on every path, like nesting beyond MAX_DEPTH and lone
    // surrogates (compact.rs), and the refusals are single-line error frames.
    let deep = crate::compact::tests::nested(crate::compact::MAX_DEPTH + 1, false, "1");
    for refused in ["[1e999, -1e999]", r#"{"a":"\ud800"}"#, &deep] {
        assert_eq!(check_framing(refused), 0, "{refused}");
    }
    assert_eq!(check_framing(&crate::compact::tests::nested(crate::compact::MAX_DEPTH, true, "1")), 9);
}

/// Issue #22: a client's JSON outside the rules every mainstream parser keeps (compact.rs: depth,
/// lone surrogates, numbers no double holds) is refused on every frame that carries it, with
/// `bad_frame` and the frame's id; nothing is stored or sent, and the connection goes on. Over
/// HTTP the body is refused whole, with the rule in the message.
#[test]
fn json_outside_the_rules_is_refused_with_bad_frame_and_its_id() {
    use crate::compact::tests::nested;
    use crate::compact::MAX_DEPTH;
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "ua", false, None);
    let b = sim.connect("b", "ub", false, None);
    // the finding's payload: 10,001 levels in 20 KB
    sim.publish(a, "deep", &nested(10_001, false, "0"));
    let e = sim.last(a);
    assert_eq!((e["code"].as_str(), e["id"].as_str()), (Some("bad_frame"), Some("deep")), "{e}");
    assert_eq!(e["message"], "field \"data\" is refused: JSON nested deeper than 32 arrays and objects");
    let too_deep = nested(MAX_DEPTH + 1, true, "1");
    for (i, bad) in [too_deep.as_str(), r#""\ud800""#, r#""x\udc00""#, r#"{"\udbff":1}"#, "1e400", "[-1e309]"].into_iter().enumerate() {
        for (kind, frame) in [
            ("publish", format!(r#"{{"type":"publish","id":"p{i}","data":{bad}}}"#)),
            ("direct", format!(r#"{{"type":"direct","id":"d{i}","to":{{"user":"ub"}},"data":{bad}}}"#)),
            ("broadcast", format!(r#"{{"type":"broadcast","id":"b{i}","data":{bad}}}"#)),
            ("presence", format!(r#"{{"type":"presence","id":"m{i}","meta":{{"x":{bad}}}}}"#)),
        ] {
            sim.text(a, &frame);
            let e = sim.last(a);
            assert_eq!(e["type"], "error", "{kind} {bad}");
            assert_eq!(e["code"], "bad_frame", "{kind} {bad}");
            assert_eq!(e["id"].as_str().map(|id| &id[1..]), Some(i.to_string().as_str()), "{kind}: the error names the frame");
            assert!(e["message"].as_str().unwrap().contains("is refused: JSON"), "{e}");
        }
    }
    assert_eq!(sim.store.count().unwrap(), 0, "nothing stored");
    let others: Vec<&Value> = sim.inbox[&b].iter().filter(|f| f["type"] != "welcome" && f["type"] != "presence").collect();
    assert!(others.is_empty(), "nothing sent: {others:?}");
    assert!(sim.frames(b, "presence").iter().all(|f| f["member"]["meta"].is_null()), "no meta update");
    sim.publish(a, "fine", &nested(MAX_DEPTH, false, "\"\\ud83d\\ude00\""));
    assert_eq!(sim.last(a), serde_json::json!({"type":"ack","id":"fine","seq":1}));
    assert_eq!(sim.frames(b, "message").len(), 1);
    // HTTP: the body is refused whole, with the rule named
    for bad in [too_deep.as_str(), r#""\ud800""#, "1e400"] {
        for body in [format!(r#"{{"data":{bad}}}"#), format!(r#"[{{"data":1}},{{"data":{bad},"id":"x"}}]"#)] {
            let e = crate::api::publish::PublishBatch::parse(&body, &RoomConfig::default()).unwrap_err();
            assert_eq!(e.kind, crate::api::RefusalKind::BadRequest, "{body}");
            assert!(e.message.contains("JSON "), "{body}: {}", e.message);
        }
    }
}

proptest! {
    /// Any JSON, with any whitespace between its tokens, on every path.
    #[test]
    fn no_data_can_forge_a_frame(data in crate::compact::tests::json_text()) {
        prop_assert_eq!(check_framing(&data), 9);
    }
}

// ---- trust: identity, budgets, lifetime (issue #13) -------------------------------------------

impl Sim {
    fn try_connect(&mut self, identity: Identity, resume: Option<ResumePoint>) -> Result<ConnId, u16> {
        let r = self.room.handle_open(identity, resume, self.now, &mut self.store).map_err(|c| c.code);
        if let Ok(id) = r {
            self.open.insert(id);
        }
        self.deliver();
        r
    }
}

fn who(client: &str, user: &str) -> Identity {
    Identity { client_id: client.into(), user: user.into(), meta: None, echo: false, rights: Rights::ALL, expires: None }
}

#[test]
fn a_client_id_belongs_to_one_user() {
    let mut sim = Sim::new(RoomConfig::default());
    let alice = sim.connect("phone", "alice", false, None);
    assert_eq!(sim.try_connect(who("phone", "mallory"), None), Err(close::CLIENT_ID_TAKEN.code));
    // still refused once alice is gone: the binding is stored, not just held by a live socket
    sim.close(alice);
    sim.advance(60_000, |_| None);
    assert_eq!(sim.try_connect(who("phone", "mallory"), None), Err(close::CLIENT_ID_TAKEN.code));
    assert!(sim.try_connect(who("phone", "alice"), None).is_ok(), "the owner comes back with it");
    // after HISTORY_MAX_AGE of disuse the binding lapses
    let config = RoomConfig { history_max_age_ms: 10_000, heartbeat_timeout_ms: 1_000, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let a = sim.connect("tab", "alice", false, None);
    sim.close(a);
    sim.connect("other", "bob", false, None);
    sim.advance(11_000, |_| Some(u64::MAX / 4));
    assert!(sim.try_connect(who("tab", "mallory"), None).is_ok());
}

#[test]
fn nobody_can_make_another_users_publish_a_duplicate() {
    let mut sim = Sim::new(RoomConfig::default());
    let alice = sim.connect("a", "alice", false, None);
    let mallory = sim.connect("m", "mallory", false, None);
    let watcher = sim.connect("w", "watcher", false, None);
    sim.publish(mallory, "a-1", "\"mine first\"");
    sim.publish(alice, "a-1", "\"hello\"");
    assert!(sim.last(alice).get("duplicate").is_none(), "{}", sim.last(alice));
    assert_eq!(sim.frames(watcher, "message").len(), 2);
    // the backend's ids are its own too: a token user on HTTP cannot pre-empt them
    let item = PublishItem { data: CompactJson::parse("1").unwrap(), id: Some("b-1".into()) };
    let by_token = sim.room.publish(&Caller::user("mallory"), std::slice::from_ref(&item), sim.now, &mut sim.store).unwrap();
    let by_key = sim.room.publish(&Caller::backend(), &[item], sim.now, &mut sim.store).unwrap();
    assert!(!by_token[0].duplicate && !by_key[0].duplicate);
    sim.deliver();
    let m = sim.frames(watcher, "message");
    assert_eq!((m[2]["from"].as_str(), m[2]["user"].as_str()), (Some(":http"), Some("mallory")));
    assert_eq!((m[3]["from"].as_str(), m[3]["user"].as_str()), (Some(":api"), Some(":api")));
}

#[test]
fn direct_answers_reveal_nothing_without_the_presence_right() {
    let mut sim = Sim::new(RoomConfig::default());
    let no_presence = Rights { subscribe: true, publish: true, presence: false, input: false };
    let s = sim.connect_with("s", "sender", false, None, no_presence);
    let b = sim.connect("b", "bob", false, None);
    sim.text(s, r#"{"type":"direct","id":"1","to":{"user":"bob"},"data":1}"#);
    let online = sim.last(s);
    sim.text(s, r#"{"type":"direct","id":"1","to":{"user":"nobody"},"data":1}"#);
    let offline = sim.last(s);
    assert_eq!(online, offline);
    assert_eq!(online, serde_json::json!({"type":"ack","id":"1"}));
    assert_eq!(sim.frames(b, "direct").len(), 1, "it was still delivered");
}

#[test]
fn binary_frames_are_strikes_and_a_flood_of_them_is_cut_off() {
    let mut sim = Sim::new(RoomConfig { max_strikes: 5, ..RoomConfig::default() });
    let a = sim.connect("a", "ua", false, None);
    for _ in 0..5 {
        sim.room.handle_binary(a, 10, sim.now, &mut sim.store);
        sim.deliver();
    }
    assert_eq!(sim.closed_by_room, vec![(a, close::POLICY_VIOLATION.code)]);
}

// ---- frames over the frame limit (issue #22, the compression bomb) -----------------------------

/// A publish frame of exactly `len` bytes whose id starts it, as the SDK writes one.
fn publish_of_len(id: &str, len: usize) -> String {
    let head = format!(r#"{{"type":"publish","id":"{id}","data":""#);
    let fill = len.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(fill))
}

#[test]
fn a_frame_larger_than_the_bytes_left_closes_the_connection_at_once() {
    // Default limits: 64 KiB frames, a byte burst of 1 MiB.
    let mut sim = Sim::new(RoomConfig::default());
    let bomber = sim.connect("b", "bomber", false, None);
    let calm = sim.connect("c", "calm", false, None);
    let bomb = publish_of_len("bomb", 600);
    // What the adapter hands over for a 32 MiB text: its length and its start, never the whole.
    sim.room.handle_oversized(bomber, 32 << 20, &bomb, sim.now, &mut sim.store);
    sim.deliver();
    let e = sim.last(bomber);
    assert_eq!((e["code"].as_str(), e["id"].as_str()), (Some("too_large"), Some("bomb")), "the error names the frame");
    assert_eq!(sim.closed_by_room, [(bomber, close::FRAME_TOO_LARGE.code)]);
    sim.publish(calm, "c1", "1");
    assert_eq!(sim.last(calm)["type"], "ack", "nobody else is touched");
    // A binary frame over the limit is the same frame to the room.
    let binary = sim.connect("b2", "bomber", false, None);
    sim.room.handle_binary(binary, 2 << 20, sim.now, &mut sim.store);
    sim.deliver();
    assert_eq!(sim.closed_by_room.last(), Some(&(binary, close::FRAME_TOO_LARGE.code)));
}

#[test]
fn oversized_frames_cost_their_bytes() {
    // 100-byte frames, 1,000 bytes a second, a burst of 4,000.
    let config = RoomConfig { max_frame_bytes: 100, rate_bytes_per_sec: 1_000, max_strikes: 100, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let a = sim.connect("a", "a", false, None);
    sim.text(a, &publish_of_len("o1", 1_500));
    sim.text(a, &publish_of_len("o2", 1_500));
    assert_eq!(sim.frames(a, "error").len(), 2);
    assert!(sim.closed_by_room.is_empty(), "both were within what the connection had left");
    assert!(sim.open.contains(&a));
    // 1,000 bytes left: a small frame still passes, the next oversized one is more than is left.
    sim.publish(a, "ok", "1");
    assert_eq!(sim.last(a)["type"], "ack");
    sim.text(a, &publish_of_len("o3", 1_500));
    assert_eq!(sim.last(a)["id"], "o3");
    assert_eq!(sim.closed_by_room, [(a, close::FRAME_TOO_LARGE.code)]);
}

#[test]
fn strikes_for_oversized_frames_are_never_forgiven() {
    // The bomb's rhythm: an oversized frame, then a frame that passes (a ping that reaches the
    // room), again and again. Passing frames take back ordinary strikes, not these.
    let config = RoomConfig { max_frame_bytes: 100, max_strikes: 5, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let a = sim.connect("a", "a", false, None);
    for i in 0..5 {
        assert!(sim.open.contains(&a), "closed after {i} oversized frames");
        sim.text(a, &publish_of_len(&format!("o{i}"), 200));
        if sim.open.contains(&a) {
            sim.text(a, r#"{"type": "ping"}"#);
            assert_eq!(sim.last(a)["type"], "pong");
        }
    }
    assert_eq!(sim.closed_by_room, [(a, close::POLICY_VIOLATION.code)]);
    assert_eq!(sim.frames(a, "error").iter().filter(|e| e["code"] == "too_large").count(), 5);
}

proptest! {
    /// The adapter's shortcut (a frame it knows to be over the limit from its length alone goes to
    /// `handle_oversized` with its first bytes) gives every connection the same frames and closes
    /// as `handle_text` given the whole frame.
    #[test]
    fn handing_over_only_the_length_changes_nothing(
        frames in proptest::collection::vec((0usize..4_000, any::<bool>(), 0u64..400), 1..40),
    ) {
        let config = RoomConfig { max_frame_bytes: 1_000, rate_bytes_per_sec: 2_000, max_strikes: 8, ..RoomConfig::default() };
        let mut whole = Sim::new(config.clone());
        let mut short = Sim::new(config);
        let (a, b) = (whole.connect("a", "a", false, None), whole.connect("b", "b", true, None));
        prop_assert_eq!((a, b), (short.connect("a", "a", false, None), short.connect("b", "b", true, None)));
        for (i, (len, named, dt)) in frames.into_iter().enumerate() {
            let text = if named { publish_of_len(&format!("m{i}"), len) } else { format!("{{\"data\":\"{}\"}}", "y".repeat(len)) };
            for sim in [&mut whole, &mut short] {
                sim.now += dt;
            }
            whole.text(a, &text);
            if text.len() > 1_000 {
                let head = &text[..text.len().min(crate::frame::ID_PREFIX_SCAN)];
                short.room.handle_oversized(a, text.len(), head, short.now, &mut short.store);
                short.deliver();
            } else {
                short.text(a, &text);
            }
        }
        prop_assert_eq!(&whole.inbox, &short.inbox);
        prop_assert_eq!(&whole.closed_by_room, &short.closed_by_room);
    }
}

#[test]
fn pings_that_reach_the_room_are_rate_limited() {
    let mut sim = Sim::new(RoomConfig { rate_messages_burst: 3, rate_messages_per_sec: 1, max_strikes: 100, ..RoomConfig::default() });
    let a = sim.connect("a", "ua", false, None);
    for _ in 0..3 {
        sim.text(a, r#"{"type": "ping"}"#);
        assert_eq!(sim.last(a)["type"], "pong");
    }
    sim.text(a, r#"{"type": "ping"}"#);
    assert_eq!(sim.last(a)["code"], "rate_limited");
}

#[test]
fn a_user_holds_at_most_the_per_user_connections() {
    let mut sim = Sim::new(RoomConfig { max_connections_per_user: 2, ..RoomConfig::default() });
    sim.connect("a1", "alice", false, None);
    sim.connect("a2", "alice", false, None);
    assert_eq!(sim.try_connect(who("a3", "alice"), None), Err(close::USER_CONNECTIONS.code));
    assert!(sim.try_connect(who("b1", "bob"), None).is_ok());
}

#[test]
fn http_publishes_are_limited_per_caller_with_a_retry_time() {
    let config = RoomConfig { http_rate_messages_per_sec: 10, http_rate_messages_burst: 5, publish_batch_max: 5, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let item = PublishItem { data: CompactJson::parse("1").unwrap(), id: None };
    assert!(sim.room.publish(&Caller::user("u"), &vec![item.clone(); 5], sim.now, &mut sim.store).is_ok());
    let refused = sim.room.publish(&Caller::user("u"), std::slice::from_ref(&item), sim.now, &mut sim.store);
    assert_eq!(refused, Err(PublishError::RateLimited { retry_after_ms: 100 }));
    assert!(sim.room.publish(&Caller::backend(), std::slice::from_ref(&item), sim.now, &mut sim.store).is_ok(), "per caller");
    // A batch over PUBLISH_BATCH_MAX_BYTES is the edge's to refuse now: api::publish's tests.
}

#[test]
fn resume_loops_run_out_of_read_budget_and_honest_readers_do_not() {
    let config = RoomConfig { read_bytes_per_sec: 1_000, read_bytes_burst: 1_000, ..RoomConfig::default() };
    let mut sim = Sim::new(config);
    let p = sim.connect("p", "pub", false, None);
    for i in 0..20 {
        sim.publish(p, &format!("m{i}"), &format!("\"{}\"", "x".repeat(100)));
    }
    let from_start = || Some(ResumePoint { epoch: "epoch-1".into(), since: 0 });
    let first = sim.try_connect(who("r", "reader"), from_start()).expect("one read of any size passes");
    assert_eq!(sim.seqs(first).len(), 20);
    sim.close(first);
    assert_eq!(sim.try_connect(who("r", "reader"), from_start()), Err(close::READ_BUDGET.code));
    // the close's reason names the wait (the adapter reads it once)
    let wait = sim.room.take_retry_after().expect("a wait for the 4029");
    assert!(wait > 0 && wait <= 10_000, "{wait}");
    assert_eq!(sim.room.take_retry_after(), None);
    assert!(sim.try_connect(who("h", "honest"), from_start()).is_ok(), "another user's budget is their own");
    assert!(matches!(sim.room.read_history("reader", Page::After(0), 100, sim.now, &mut sim.store), Err(ReadError::RateLimited { .. })));
    sim.now += 10_000;
    assert!(sim.try_connect(who("r", "reader"), from_start()).is_ok(), "the budget refills");
}

#[test]
fn replays_are_contiguous_even_with_echo_off() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "alice", false, None);
    let b = sim.connect("b", "bob", false, None);
    sim.publish(a, "1", "1");
    sim.publish(b, "2", "2");
    sim.close(a);
    let again = sim.connect("a", "alice", false, Some(ResumePoint { epoch: "epoch-1".into(), since: 0 }));
    assert_eq!(sim.seqs(again), [1, 2], "its own message comes back in the replay; the client drops it");
}

#[test]
fn expired_tokens_are_closed_unless_refreshed() {
    let secret = b"s3cret".to_vec();
    let mut sim = Sim::new(RoomConfig::default());
    sim.room.set_token_check(TokenCheck { room: "chat:x".into(), secret: secret.clone(), previous: Vec::new() });
    let exp_ms = sim.now + 5_000;
    let leeway = token::LEEWAY_SECS * 1000;
    let mut identity = who("a", "alice");
    identity.expires = Some(exp_ms);
    let a = sim.try_connect(identity.clone(), None).unwrap();
    assert_eq!(sim.frames(a, "welcome")[0]["expires"], exp_ms);
    assert_eq!(sim.room.poll_timeout().unwrap().min(exp_ms + leeway), sim.room.poll_timeout().unwrap());
    identity.client_id = "b".into();
    let b = sim.try_connect(identity, None).unwrap();
    let mint = |sub: &str, room: &str, exp_s: u64| {
        let claims = token::Claims {
            sub: sub.into(),
            exp: exp_s,
            nbf: None,
            iat: None,
            rooms: [(room.to_owned(), vec![token::Right::Subscribe])].into(),
            meta: None,
        };
        token::mint(&claims, &secret).unwrap()
    };
    let later = sim.now / 1000 + 3_600;
    // refusals keep the old token
    sim.text(b, &format!(r#"{{"type":"refresh","token":"{}"}}"#, mint("mallory", "chat:x", later)));
    assert_eq!(sim.last(b)["code"], "forbidden");
    sim.text(b, &format!(r#"{{"type":"refresh","token":"{}"}}"#, mint("alice", "chat:other", later)));
    assert_eq!(sim.last(b)["code"], "forbidden");
    sim.text(b, r#"{"type":"refresh","token":"garbage"}"#);
    assert_eq!(sim.last(b)["code"], "unauthorized");
    sim.text(b, &format!(r#"{{"type":"refresh","token":"{}"}}"#, mint("alice", "chat:x", later)));
    assert_eq!(sim.last(b), serde_json::json!({"type":"refreshed","expires": later * 1000}));
    assert_eq!((sim.room.poll_changed(), sim.room.poll_changed()), (Some(b), None));
    assert_eq!(sim.room.connection(b).unwrap().rights, Rights { subscribe: true, publish: false, presence: false, input: false });
    sim.advance(5_000 + leeway - 1, |_| Some(u64::MAX / 4));
    assert!(sim.open.contains(&a), "within the leeway");
    sim.advance(1, |_| Some(u64::MAX / 4));
    assert_eq!(sim.closed_by_room, vec![(a, close::TOKEN_EXPIRED.code)]);
    assert!(sim.open.contains(&b), "refreshed");
    // a frame that arrives past the deadline, before any alarm ran, is not acted on
    let mut late = who("late", "alice");
    late.expires = Some(sim.now);
    let l = sim.try_connect(late, None).unwrap();
    sim.now += leeway;
    sim.publish(l, "after-expiry", "1");
    assert_eq!(sim.closed_by_room.last(), Some(&(l, close::TOKEN_EXPIRED.code)));
    assert!(sim.frames(l, "ack").is_empty(), "the publish was not acted on");
}

#[test]
fn refresh_accepts_the_previous_secret_during_a_rotation_only() {
    let (new, old) = (b"new-secret".to_vec(), b"old-secret".to_vec());
    let mint = |secret: &[u8]| {
        let claims = token::Claims {
            sub: "alice".into(),
            exp: 2_000_000_000,
            nbf: None,
            iat: None,
            rooms: [("chat:x".to_owned(), vec![token::Right::Subscribe])].into(),
            meta: None,
        };
        token::mint(&claims, secret).unwrap()
    };
    let refresh = |t: &str| format!(r#"{{"type":"refresh","token":"{t}"}}"#);
    let mut sim = Sim::new(RoomConfig::default());
    sim.room.set_token_check(TokenCheck { room: "chat:x".into(), secret: new.clone(), previous: old.clone() });
    let mut identity = who("a", "alice");
    identity.expires = Some(sim.now + 60_000);
    let a = sim.try_connect(identity, None).unwrap();
    for secret in [&old, &new] {
        sim.text(a, &refresh(&mint(secret)));
        assert_eq!(sim.last(a), serde_json::json!({"type":"refreshed","expires": 2_000_000_000_000u64}));
    }
    sim.text(a, &refresh(&mint(b"neither")));
    assert_eq!(sim.last(a)["code"], "unauthorized");
    // the previous secret removed (the adapter loads an empty one): its tokens are refused
    sim.room.set_token_check(TokenCheck { room: "chat:x".into(), secret: new.clone(), previous: Vec::new() });
    sim.text(a, &refresh(&mint(&old)));
    assert_eq!(sim.last(a)["code"], "unauthorized");
    sim.text(a, &refresh(&mint(&new)));
    assert_eq!(sim.last(a)["type"], "refreshed");
}

#[test]
fn the_backend_removes_and_bans_a_user() {
    let mut sim = Sim::new(RoomConfig::default());
    let a1 = sim.connect("a1", "alice", false, None);
    let a2 = sim.connect("a2", "alice", false, None);
    let b = sim.connect("b", "bob", false, None);
    assert_eq!(sim.room.kick("alice", Some(sim.now + 60_000), None, sim.now, &mut sim.store), Ok(2));
    sim.deliver();
    assert_eq!(sim.closed_by_room, vec![(a1, close::REMOVED.code), (a2, close::REMOVED.code)]);
    assert!(sim.open.contains(&b));
    assert_eq!(sim.try_connect(who("a1", "alice"), None), Err(close::REMOVED.code));
    // the HTTP API is closed to them too
    let item = PublishItem { data: CompactJson::parse("1").unwrap(), id: None };
    let publish = sim.room.publish(&Caller::user("alice"), std::slice::from_ref(&item), sim.now, &mut sim.store);
    assert_eq!(publish, Err(PublishError::Banned));
    assert!(matches!(sim.room.read_history("alice", Page::After(0), 10, sim.now, &mut sim.store), Err(ReadError::Banned)));
    sim.now += 60_001;
    assert!(sim.try_connect(who("a1", "alice"), None).is_ok(), "the ban ends");
}

#[test]
fn a_churning_user_costs_others_a_bounded_number_of_presence_frames() {
    let mut sim = Sim::new(RoomConfig { presence_rate_per_sec: 5, presence_grace_ms: 0, ..RoomConfig::default() });
    let watcher = sim.connect("w", "watcher", false, None);
    for i in 0..200 {
        let c = sim.connect(&format!("c{i}"), "churner", false, None);
        sim.close(c);
        sim.now += 5; // 200 opens and closes in one second
    }
    let frames = sim.frames(watcher, "presence").len();
    assert!(frames <= 10 + 5 + 1, "{frames} presence frames in one second");
    // and the watcher's view converges: the churner left
    sim.advance(5_000, |_| Some(u64::MAX / 4));
    let last = sim.frames(watcher, "presence").into_iter().rfind(|f| f["member"]["user"] == "churner").unwrap();
    assert_eq!(last["event"], "leave");
}

// http_publish_bodies_are_objects_or_arrays_of_objects moved to api::publish (the edge parses
// publish bodies now): one_object_or_an_array_of_them and bad_bodies_are_refused_with_documented_answers.

#[test]
fn an_oversized_publish_is_refused_with_its_id_and_the_welcome_states_the_terms() {
    let mut sim = Sim::new(RoomConfig { max_frame_bytes: 100, heartbeat_timeout_ms: 30_000, ..RoomConfig::default() });
    let a = sim.connect("a", "ua", false, None);
    let w = &sim.frames(a, "welcome")[0];
    assert_eq!(w["heartbeat"], serde_json::json!({"interval": 10_000, "timeout": 30_000}));
    assert_eq!(w["limits"]["maxFrameBytes"], 100);
    sim.publish(a, "big-1", &format!("\"{}\"", "x".repeat(200)));
    let e = sim.last(a);
    assert_eq!((e["code"].as_str(), e["id"].as_str()), (Some("too_large"), Some("big-1")));
}

// ---- liveness across hibernation (issue #14) ---------------------------------------------------

/// The room as the Durable Object runs it when it hibernates between every two events: each
/// event (a frame, the alarm) meets a room loaded afresh from the store and the live sockets'
/// attachments, and the alarm fires exactly at the room's `poll_timeout`.
struct Hibernating {
    store: MemoryStore,
    config: RoomConfig,
    attachments: BTreeMap<ConnId, Connection>,
    closed: Vec<(ConnId, u16, u64)>,
    alarm: Option<u64>,
}

impl Hibernating {
    fn wake(&mut self, now: u64) -> Room {
        Room::load(self.config.clone(), &mut self.store, "unused", now, self.attachments.values().cloned()).unwrap()
    }

    /// Carries out what the room did and saves it before it hibernates again.
    fn sleep(&mut self, mut room: Room, now: u64) {
        while let Some(action) = room.poll_action() {
            if let Action::Close { conn, code } = action {
                self.attachments.remove(&conn);
                self.closed.push((conn, code.code, now));
            }
        }
        while let Some(id) = room.poll_changed() {
            if let Some(info) = room.connection(id) {
                self.attachments.insert(id, info.clone());
            }
        }
        self.alarm = room.poll_timeout();
    }
}

#[test]
fn silent_connections_are_closed_in_time_however_often_the_room_hibernates() {
    let timeout = 60_000;
    let config = RoomConfig { heartbeat_timeout_ms: timeout, presence_grace_ms: 1, ..RoomConfig::default() };
    let mut h = Hibernating { store: MemoryStore::default(), config, attachments: BTreeMap::new(), closed: Vec::new(), alarm: None };
    let start = 1_000_000;
    let mut room = h.wake(start);
    let mut open = |room: &mut Room, c: &str| {
        let id = room.handle_open(who(c, c), None, start, &mut h.store).unwrap();
        (id, room.connection(id).unwrap().clone())
    };
    let (silent, a) = open(&mut room, "silent");
    let (talker, b) = open(&mut room, "talker");
    let (pinger, c) = open(&mut room, "pinger");
    h.attachments.extend([(silent, a), (talker, b), (pinger, c)]);
    h.sleep(room, start);
    // The talker publishes every 15 s (no pings); the pinger's pings are answered by the runtime
    // every 20 s (the room never sees them, it reads their time at a sweep). Every event wakes the
    // room from hibernation.
    let pong = |now: u64| Some(now - (now - start) % 20_000);
    let mut now = start;
    let mut next_publish = start + 15_000;
    while now < start + 10 * timeout {
        let alarm = h.alarm.unwrap_or(u64::MAX);
        now = alarm.min(next_publish);
        let mut room = h.wake(now);
        if now == next_publish {
            room.handle_text(talker, &format!(r#"{{"type":"publish","id":"{now}","data":1}}"#), now, &mut h.store);
            next_publish += 15_000;
        }
        if room.poll_timeout().is_some_and(|t| t <= now) {
            room.handle_timeout(now, |id| (id == pinger).then(|| pong(now)).flatten(), &mut h.store);
        }
        h.sleep(room, now);
    }
    assert_eq!(h.closed.len(), 1, "only the silent connection is closed: {:?}", h.closed);
    let (conn, code, at) = h.closed[0];
    assert_eq!((conn, code), (silent, close::HEARTBEAT_TIMEOUT.code));
    let after = at - start;
    // (its last sign of life was its open: closed a millisecond after the advertised timeout)
    assert!(after > timeout && after <= timeout + 1, "closed {after} ms after its last sign of life");
}

// ---- chat, cursors and typing (issue #15) ----------------------------------------------------

#[test]
fn history_pages_both_ways_to_the_ends() {
    let mut sim = Sim::new(RoomConfig::default());
    let p = sim.connect("p", "pub", false, None);
    for i in 1..=7 {
        sim.publish(p, &format!("m{i}"), &i.to_string());
    }
    let seqs = |f: &Value| f["messages"].as_array().unwrap().iter().map(|m| m["seq"].as_u64().unwrap()).collect::<Vec<_>>();
    let ask = |sim: &mut Sim, frame: &str| {
        sim.text(p, frame);
        sim.last(p)
    };
    let latest = ask(&mut sim, r#"{"type":"history","id":"h1","limit":3}"#);
    assert_eq!((seqs(&latest), latest["more"].as_bool(), latest["id"].as_str()), (vec![5, 6, 7], Some(true), Some("h1")));
    let older = ask(&mut sim, r#"{"type":"history","id":"h2","limit":3,"before":5}"#);
    assert_eq!((seqs(&older), older["more"].as_bool()), (vec![2, 3, 4], Some(true)));
    let oldest = ask(&mut sim, r#"{"type":"history","id":"h3","limit":3,"before":2}"#);
    assert_eq!((seqs(&oldest), oldest["more"].as_bool()), (vec![1], Some(false)));
    let newer = ask(&mut sim, r#"{"type":"history","id":"h4","limit":4,"since":1}"#);
    assert_eq!((seqs(&newer), newer["more"].as_bool()), (vec![2, 3, 4, 5], Some(true)));
    let newest = ask(&mut sim, r#"{"type":"history","id":"h5","limit":4,"since":5}"#);
    assert_eq!((seqs(&newest), newest["more"].as_bool()), (vec![6, 7], Some(false)));
    assert_eq!(latest["messages"][0]["type"], "message");
    assert_eq!(latest["messages"][0]["data"], 5);
    let both = ask(&mut sim, r#"{"type":"history","id":"h6","before":3,"since":1}"#);
    assert_eq!((both["type"].as_str(), both["code"].as_str()), (Some("error"), Some("bad_frame")));
}

#[test]
fn rewind_delivers_the_last_messages_then_live_with_no_gap_or_duplicate() {
    let mut sim = Sim::new(RoomConfig::default());
    let p = sim.connect("p", "pub", false, None);
    for i in 1..=5 {
        sim.publish(p, &format!("m{i}"), &i.to_string());
    }
    let r = sim.room.handle_start(who("r", "reader"), Start::Rewind(3), sim.now, &mut sim.store).unwrap();
    sim.open.insert(r);
    sim.deliver();
    let w = &sim.frames(r, "welcome")[0];
    assert_eq!((w["seq"].as_u64(), w["rewind"]["replayed"].as_u64()), (Some(5), Some(3)));
    sim.publish(p, "m6", "6");
    assert_eq!(sim.seqs(r), [3, 4, 5, 6]);
    let kinds: Vec<_> = sim.inbox[&r].iter().map(|f| f["type"].as_str().unwrap().to_owned()).collect();
    assert_eq!(&kinds[..4], ["welcome", "message", "message", "message"]);
    // more than the room holds: all of it
    let all = sim.room.handle_start(who("a", "all"), Start::Rewind(1_000), sim.now, &mut sim.store).unwrap();
    sim.open.insert(all);
    sim.deliver();
    assert_eq!(sim.seqs(all), [1, 2, 3, 4, 5, 6]);
}

#[test]
fn broadcasts_reach_the_others_now_and_are_never_stored() {
    let mut sim = Sim::new(RoomConfig { broadcast_max_bytes: 200, broadcast_rate_per_sec: 2, max_strikes: 100, ..RoomConfig::default() });
    let a = sim.connect("a", "alice", false, None);
    let b = sim.connect("b", "bob", false, None);
    sim.text(a, r#"{"type":"broadcast","id":"b1","data":{"x":1,"y":2}}"#);
    assert_eq!(sim.last(a), serde_json::json!({"type":"ack","id":"b1"}));
    let got = sim.frames(b, "broadcast");
    assert_eq!((got.len(), got[0]["from"].as_str(), got[0]["user"].as_str()), (1, Some("a"), Some("alice")));
    assert_eq!(got[0]["data"], serde_json::json!({"x":1,"y":2}));
    assert!(sim.frames(a, "broadcast").is_empty(), "echo off");
    assert_eq!((sim.room.seq(), sim.store.count().unwrap()), (0, 0), "no seq, nothing stored");
    // a member who joins later gets nothing of it, and a resume replays nothing of it
    let late = sim.connect("c", "carol", false, Some(ResumePoint { epoch: "epoch-1".into(), since: 0 }));
    assert!(sim.frames(late, "broadcast").is_empty());
    // its own rate (burst 4 at 2/s) and frame limit
    for i in 0..3 {
        sim.text(a, &format!(r#"{{"type":"broadcast","id":"r{i}","data":1}}"#));
    }
    assert_eq!(sim.last(a)["type"], "ack");
    sim.text(a, r#"{"type":"broadcast","id":"r9","data":1}"#);
    assert_eq!(sim.last(a)["code"], "rate_limited");
    sim.now += 10_000;
    sim.text(a, &format!(r#"{{"type":"broadcast","id":"big","data":"{}"}}"#, "x".repeat(300)));
    assert_eq!((sim.last(a)["code"].as_str(), sim.last(a)["id"].as_str()), (Some("too_large"), Some("big")));
    // it needs the publish right
    let reader = sim.connect_with("r", "reader", false, None, Rights { subscribe: true, publish: false, presence: true, input: false });
    sim.text(reader, r#"{"type":"broadcast","id":"x","data":1}"#);
    assert_eq!(sim.last(reader)["code"], "forbidden");
}

#[test]
fn a_broadcast_without_an_id_gets_no_answer_but_its_refusals() {
    let mut sim = Sim::new(RoomConfig { broadcast_rate_per_sec: 1, max_strikes: 100, ..RoomConfig::default() });
    let a = sim.connect("a", "alice", false, None);
    let b = sim.connect("b", "bob", false, None);
    let before = sim.frames(a, "ack").len();
    sim.text(a, r#"{"type":"broadcast","data":{"x":1}}"#);
    assert_eq!(sim.frames(b, "broadcast").len(), 1);
    assert_eq!(sim.frames(a, "ack").len(), before, "no done frame without an id");
    sim.text(a, r#"{"type":"broadcast","data":2}"#);
    sim.text(a, r#"{"type":"broadcast","data":3}"#);
    let refused = sim.last(a);
    assert_eq!((refused["type"].as_str(), refused["code"].as_str()), (Some("error"), Some("rate_limited")));
    assert!(refused.get("id").is_none(), "the refusal names no id: {refused}");
    sim.text(a, r#"{"type":"broadcast","id":"","data":1}"#);
    assert_eq!(sim.last(a)["code"], "bad_frame", "an id, when given, is checked as always");
}

#[test]
fn broadcasts_keep_their_place_among_stored_messages() {
    let mut sim = Sim::new(RoomConfig::default());
    let a = sim.connect("a", "alice", false, None);
    let b = sim.connect("b", "bob", false, None);
    sim.publish(a, "m1", "1");
    sim.text(a, r#"{"type":"broadcast","id":"b","data":"typing"}"#);
    sim.publish(a, "m2", "2");
    let kinds: Vec<_> = sim.inbox[&b].iter().filter_map(|f| f["type"].as_str().filter(|t| *t != "presence").map(str::to_owned)).collect();
    assert_eq!(kinds, ["welcome", "message", "broadcast", "message"]);
}

#[test]
fn set_presence_updates_the_member_for_everyone_and_survives_a_wake() {
    let mut sim = Sim::new(RoomConfig { presence_rate_per_sec: 2, ..RoomConfig::default() });
    let w = sim.connect("w", "watcher", false, None);
    let mut identity = who("a", "alice");
    identity.meta = Some(CompactJson::parse(r#"{"name":"Alice"}"#).unwrap());
    let a = sim.try_connect(identity, None).unwrap();
    sim.text(a, r#"{"type":"presence","id":"p1","meta":{"name":"Alice","typing":true}}"#);
    assert_eq!(sim.last(a), serde_json::json!({"type":"ack","id":"p1"}));
    let update = sim.frames(w, "presence").into_iter().next_back().unwrap();
    assert_eq!((update["event"].as_str(), update["member"]["meta"]["typing"].as_bool()), (Some("update"), Some(true)));
    assert_eq!(std::iter::from_fn(|| sim.room.poll_changed()).last(), Some(a), "the attachment is saved again");
    assert_eq!(sim.room.connection(a).unwrap().meta.as_ref().unwrap().get(), r#"{"name":"Alice","typing":true}"#);
    // a 60 Hz cursor loop for one second: at most burst + rate presence frames reach the others
    let before = sim.frames(w, "presence").len();
    for i in 0..60 {
        sim.now += 16;
        sim.text(a, &format!(r#"{{"type":"presence","id":"c{i}","meta":{{"x":{i}}}}}"#));
        sim.advance(0, |_| None);
    }
    sim.advance(2_000, |_| Some(u64::MAX / 4));
    let frames = sim.frames(w, "presence");
    assert!(frames.len() - before <= 4 + 2 + 1, "{} presence frames for 60 changes", frames.len() - before);
    assert_eq!(frames.last().unwrap()["member"]["meta"], serde_json::json!({"x": 59}), "the latest state arrives");
    // not an object: refused
    sim.text(a, r#"{"type":"presence","id":"bad","meta":[1]}"#);
    assert_eq!(sim.last(a)["code"], "bad_frame");
}

#[test]
fn pages_replays_and_rewinds_stop_at_the_byte_cap() {
    // found by review: a page of 1,000 messages of 64 KiB each took the room's memory
    let mut sim = Sim::new(RoomConfig { history_page_max_bytes: 2_500, ..RoomConfig::default() });
    let p = sim.connect("p", "pub", false, None);
    let big = format!("\"{}\"", "x".repeat(998)); // 1,000 bytes of data each
    for i in 1..=6 {
        sim.publish(p, &format!("m{i}"), &big);
    }
    let page = sim.room.read_history("reader", Page::After(0), 100, sim.now, &mut sim.store).unwrap();
    assert_eq!((page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), page.more), (vec![1, 2, 3], true), "2,000 bytes before the third");
    let back = sim.room.read_history("reader", Page::Latest, 100, sim.now, &mut sim.store).unwrap();
    assert_eq!((back.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), back.more), (vec![4, 5, 6], true));
    let end = sim.room.read_history("reader", Page::After(3), 100, sim.now, &mut sim.store).unwrap();
    assert_eq!((end.messages.len(), end.more), (3, false));
    let resumed = sim.connect("r", "resumer", false, Some(ResumePoint { epoch: "epoch-1".into(), since: 0 }));
    assert_eq!(sim.frames(resumed, "welcome")[0]["resume"]["reason"], "retention", "more than one replay carries");
    assert!(sim.seqs(resumed).is_empty());
    let rewound = sim.room.handle_start(who("w", "rewinder"), Start::Rewind(6), sim.now, &mut sim.store).unwrap();
    sim.open.insert(rewound);
    sim.deliver();
    assert_eq!(sim.seqs(rewound), [4, 5, 6]);
    assert_eq!(sim.frames(rewound, "welcome")[0]["rewind"]["replayed"], 3);
}

/// Read marks: a connection that echoes them stays however much the room sends; one that stops
/// reading is closed with 4008 once it is `UNREAD_MAX_BYTES` behind for the grace period; nobody
/// can echo for it.
fn marks_config() -> RoomConfig {
    RoomConfig {
        unread_max_bytes: 8 * 1024,
        max_frame_bytes: 1024,
        rate_messages_burst: 100_000,
        rate_messages_per_sec: 100_000,
        rate_bytes_per_sec: 1 << 30,
        broadcast_rate_per_sec: 100_000,
        read_bytes_per_sec: 1 << 30,
        read_bytes_burst: 1 << 30,
        ..RoomConfig::default()
    }
}

/// Echoes every mark `conn` got since `from` (an index into its marks); returns the new count.
fn echo_marks(sim: &mut Sim, conn: ConnId, from: usize) -> usize {
    let marks = sim.frames(conn, "mark");
    for mark in &marks[from..] {
        let id = mark["id"].as_str().unwrap().to_owned();
        sim.text(conn, &format!(r#"{{"type":"read","id":"{id}"}}"#));
    }
    marks.len()
}

#[test]
fn a_member_that_stops_reading_is_closed_and_readers_stay() {
    let mut sim = Sim::new(marks_config());
    sim.room.set_mark_key(b"0123456789abcdef");
    let talker = sim.connect("t", "talker", false, None);
    let reader = sim.connect("r", "reader", false, None);
    let sleeper = sim.connect("s", "sleeper", false, None);
    let data = format!("\"{}\"", "x".repeat(900));
    let (mut echoed_r, mut echoed_t) = (0, 0);
    for _ in 0..40 {
        sim.text(talker, &format!(r#"{{"type":"broadcast","data":{data}}}"#));
        echoed_r = echo_marks(&mut sim, reader, echoed_r);
        echoed_t = echo_marks(&mut sim, talker, echoed_t);
        sim.advance(1, |_| Some(u64::MAX / 4));
    }
    assert!(echoed_r >= 10, "the reader got marks ({echoed_r})");
    assert!(sim.closed_by_room.is_empty(), "nobody is closed before the grace period: {:?}", sim.closed_by_room);
    sim.advance(super::reading::GRACE_MS, |_| Some(u64::MAX / 4));
    assert_eq!(sim.closed_by_room, [(sleeper, 4008)], "only the sleeper is closed");
    assert!(sim.frames(reader, "error").is_empty(), "the reader's echoes were all accepted");
    // Another connection's mark is no proof for this one.
    let other = sim.frames(reader, "mark")[0]["id"].as_str().unwrap().to_owned();
    sim.text(talker, &format!(r#"{{"type":"read","id":"{other}"}}"#));
    assert_eq!(sim.last(talker)["code"], "bad_frame");
}

/// Found by review: direct messages to one's own second socket counted for everyone, and one
/// big flush closed every member before any echo could come back.
#[test]
fn only_what_a_connection_is_sent_counts_and_a_big_flush_gets_its_grace() {
    let mut sim = Sim::new(marks_config());
    sim.room.set_mark_key(b"0123456789abcdef");
    let mallory = sim.connect("m", "mallory", false, None);
    let sink = sim.connect("k", "mallory", false, None);
    let honest = sim.connect("h", "honest", false, None);
    let data = format!("\"{}\"", "x".repeat(900));
    for i in 0..40 {
        sim.text(mallory, &format!(r#"{{"type":"direct","id":"d{i}","to":{{"clientId":"k"}},"data":{data}}}"#));
    }
    assert!(sim.frames(honest, "mark").is_empty(), "the honest member was sent nothing, so no mark");
    // One flush of far more than the limit: the honest reader echoes once it has read it.
    for _ in 0..40 {
        sim.room.handle_text(mallory, &format!(r#"{{"type":"broadcast","data":{data}}}"#), sim.now, &mut sim.store);
    }
    sim.deliver();
    sim.advance(1, |_| Some(u64::MAX / 4));
    echo_marks(&mut sim, honest, 0);
    sim.advance(super::reading::GRACE_MS + 1, |_| Some(u64::MAX / 4));
    let closed: Vec<ConnId> = sim.closed_by_room.iter().map(|(c, _)| *c).collect();
    assert!(closed.contains(&sink), "the sink got the direct messages and never read: {closed:?}");
    assert!(!closed.contains(&honest), "the honest reader stays: {closed:?}");
}

/// Found by review: history pages to a non-reader were never counted.
#[test]
fn history_pages_count_for_the_reader_that_asked() {
    let mut sim = Sim::new(marks_config());
    sim.room.set_mark_key(b"0123456789abcdef");
    let writer = sim.connect("w", "writer", false, None);
    let greedy = sim.connect("g", "greedy", false, None);
    for i in 0..20 {
        sim.publish(writer, &format!("p{i}"), &format!("\"{}\"", "y".repeat(500)));
    }
    echo_marks(&mut sim, writer, 0);
    for i in 0..40 {
        sim.text(greedy, &format!(r#"{{"type":"history","id":"h{i}","limit":20}}"#));
    }
    sim.advance(1, |_| Some(u64::MAX / 4));
    sim.advance(super::reading::GRACE_MS + 1, |_| Some(u64::MAX / 4));
    assert!(sim.closed_by_room.contains(&(greedy, 4008)), "{:?}", sim.closed_by_room);
}

#[test]
fn read_marks_are_off_without_a_key_or_with_a_limit_of_0() {
    for (key, limit) in [(false, 8 * 1024), (true, 0)] {
        let config = RoomConfig { unread_max_bytes: limit, broadcast_rate_per_sec: 100_000, ..RoomConfig::default() };
        let mut sim = Sim::new(config);
        if key {
            sim.room.set_mark_key(b"0123456789abcdef");
        }
        let talker = sim.connect("t", "talker", false, None);
        let sleeper = sim.connect("s", "sleeper", false, None);
        for _ in 0..40 {
            sim.text(talker, &format!(r#"{{"type":"broadcast","data":"{}"}}"#, "x".repeat(900)));
            sim.advance(30, |_| Some(u64::MAX / 4));
        }
        assert!(sim.frames(sleeper, "mark").is_empty());
        assert!(sim.closed_by_room.is_empty());
    }
}

// ---- the expiry boundary, shared by the edge and the room (#22) --------------------------------

proptest! {
    /// Found by the red-team report (#22): a token up to a second past `exp` + leeway was admitted
    /// at the edge (which compared whole seconds) and served a welcome and a rewind before the
    /// room's 4002. Now, at every ms around the boundary, the edge admits exactly when the room
    /// starts the connection, and the room's sweep at that instant leaves it open; past it the
    /// room refuses with 4002 before anything is sent.
    #[test]
    fn the_edge_and_the_room_agree_on_the_expiry_boundary(offset in 0u64..4_000) {
        use crate::api::admission::{admit, AuthConfig, Upgrade};
        let exp_s = 2_000_000_000;
        let now = token::expiry_deadline(exp_s * 1000) - 2_000 + offset;
        let claims = token::Claims {
            sub: "alice".into(),
            exp: exp_s,
            nbf: None,
            iat: None,
            rooms: [("chat:x".to_owned(), vec![token::Right::Subscribe])].into(),
            meta: None,
        };
        let t = token::mint(&claims, b"s").unwrap();
        let protocols = format!("roomcast.v1, bearer.{t}");
        let config = AuthConfig { secret: "s", ..AuthConfig::default() };
        let edge = admit(&Upgrade { room: "chat:x", query: "cid=a&rewind=5", protocols: &protocols }, &config, now, || "c".into());

        let mut sim = Sim::new(RoomConfig::default());
        let p = sim.connect("p", "pub", false, None);
        sim.publish(p, "m1", "1");
        sim.now = now;
        let mut identity = who("a", "alice");
        identity.expires = edge.as_ref().ok().and_then(|info| info.exp).or(Some(exp_s * 1000));
        let started = sim.room.handle_start(identity, Start::Rewind(5), now, &mut sim.store);
        prop_assert_eq!(edge.is_ok(), started.is_ok(), "edge {:?}, room {:?} at {} ms before the deadline",
            edge.as_ref().err(), started, token::expiry_deadline(exp_s * 1000) as i64 - now as i64);
        match started {
            Ok(id) => {
                sim.open.insert(id);
                sim.room.handle_timeout(now, |_| Some(now), &mut sim.store);
                sim.deliver();
                prop_assert!(sim.open.contains(&id), "admitted, then closed by the sweep at the same instant");
                prop_assert_eq!(sim.frames(id, "welcome").len(), 1);
            }
            Err(code) => {
                prop_assert_eq!(code, close::TOKEN_EXPIRED);
                prop_assert!(sim.room.poll_action().is_none(), "nothing is sent for a refused start");
            }
        }
    }
}

/// `stats.messagesOut` as docs/PROTOCOL.md (stats) and docs/openapi.json define it: live deliveries
/// of stored messages, direct messages and broadcasts to the room's connections (an echo to the
/// sender included), one per recipient; replays on resume or rewind and history pages are not counted.
#[test]
fn messages_out_counts_live_messages_direct_messages_and_broadcasts_per_recipient() {
    let mut sim = Sim::new(RoomConfig { max_strikes: 100, ..RoomConfig::default() });
    let out = |sim: &mut Sim| sim.room.stats(sim.now, &mut sim.store).unwrap().messages_out;
    let a = sim.connect("a", "alice", true, None);
    let b = sim.connect("b", "bob", false, None);
    let _c = sim.connect("c", "carol", false, None);
    assert_eq!(out(&mut sim), 0, "welcomes and presence are not counted");
    sim.text(a, r#"{"type":"publish","id":"p1","data":1}"#);
    assert_eq!(out(&mut sim), 3, "a stored message: two others and the echo");
    sim.text(b, r#"{"type":"publish","id":"p2","data":2}"#);
    assert_eq!(out(&mut sim), 5, "without echo: the two others");
    sim.text(a, r#"{"type":"direct","id":"d1","to":{"user":"bob"},"data":3}"#);
    assert_eq!(out(&mut sim), 6, "a direct message: its one recipient");
    sim.text(b, r#"{"type":"broadcast","id":"b1","data":4}"#);
    assert_eq!(out(&mut sim), 8, "a broadcast: the two others");
    let late = sim.connect("d", "dave", false, Some(ResumePoint { epoch: sim.room.epoch().to_owned(), since: 0 }));
    assert_eq!(sim.seqs(late), [1, 2], "the replay came");
    sim.text(late, r#"{"type":"history","id":"h","since":0}"#);
    assert_eq!(sim.last(late)["type"], "history");
    assert_eq!(out(&mut sim), 8, "neither the replay nor the history page counts");
}
