//! Golden frames (`tests/golden/frames.json`): the wire format written down once, byte for byte,
//! with the inputs that produce each frame. This test holds the Rust side to it: the server's
//! encoders (`frame::encode_*`, `room::encode_stored`, the room machine's own answers) and the
//! client machine's hand-built frames must produce exactly the golden text, and every client
//! frame must decode as the server decodes it (`frame::decode_client`). The Node test
//! (`tests/unit/schema.test.mjs`) validates the same frames, and those the test harness and the
//! SDK's JS layer build, against `docs/protocol.schema.json`, so no encoder can drift from the
//! others or from the schema unnoticed.
//!
//! Entries whose `source.fn` names a JavaScript builder (`sdk/…`, `tests/…`) are checked by the
//! Node test only; entries without a source are hand-written examples (decoded and validated).
#![cfg(feature = "server")]

use roomcast_protocol::client::{self, Client, ClientConfig, Output};
use roomcast_protocol::compact::CompactJson;
use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::feed::Gap;
use roomcast_protocol::frame::{
    self, ClientFrame, ErrorCode, GapReason, Heartbeat, Limits, MemberView, PresenceEvent, ResumeOutcome, Rewound, Target, Welcome,
};
use roomcast_protocol::room::{self, Action, Identity, Recipients, Room, Start};
use roomcast_protocol::session;
use roomcast_protocol::store::{MemoryStore, StoredMessage};
use roomcast_protocol::token::Rights;
use serde_json::Value;
use std::collections::BTreeSet;

struct Golden {
    name: String,
    direction: String,
    text: String,
    source: Option<Value>,
}

fn golden() -> Vec<Golden> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/golden/frames.json");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("tests/golden/frames.json")).expect("golden file is JSON");
    file["frames"]
        .as_array()
        .expect("frames: []")
        .iter()
        .map(|f| Golden {
            name: f["name"].as_str().expect("name").to_owned(),
            direction: f["direction"].as_str().expect("direction").to_owned(),
            text: f["text"].as_str().expect("text").to_owned(),
            source: f.get("source").cloned(),
        })
        .collect()
}

// ---- reading inputs -------------------------------------------------------------------------

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_else(|| panic!("input {key:?} must be a string in {v}"))
}

fn opt_s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    match &v[key] {
        Value::Null => None,
        other => Some(other.as_str().unwrap_or_else(|| panic!("input {key:?} must be a string or null in {v}"))),
    }
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("input {key:?} must be a whole number in {v}"))
}

fn opt_n(v: &Value, key: &str) -> Option<u64> {
    match &v[key] {
        Value::Null => None,
        other => Some(other.as_u64().unwrap_or_else(|| panic!("input {key:?} must be a whole number or null in {v}"))),
    }
}

/// JSON text given as a string input (`data`, `meta`): compacted as the room compacts it.
fn json(v: &Value, key: &str) -> CompactJson {
    CompactJson::parse(s(v, key)).unwrap_or_else(|e| panic!("input {key:?} is not JSON: {e}"))
}

fn code(name: &str) -> ErrorCode {
    let all = [
        ErrorCode::BadFrame,
        ErrorCode::UnknownType,
        ErrorCode::TooLarge,
        ErrorCode::NoRecipient,
        ErrorCode::Storage,
        ErrorCode::BadRequest,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
    ];
    all.into_iter().find(|c| c.as_str() == name).unwrap_or_else(|| panic!("unknown error code {name}"))
}

struct Member {
    user: String,
    connections: u32,
    meta: Option<CompactJson>,
}

fn members(v: &Value) -> Vec<Member> {
    v.as_array()
        .expect("members: []")
        .iter()
        .map(|m| Member {
            user: s(m, "user").to_owned(),
            connections: n(m, "connections") as u32,
            meta: opt_s(m, "meta").map(|t| CompactJson::parse(t).expect("meta is JSON")),
        })
        .collect()
}

fn view(m: &Member) -> MemberView<'_> {
    MemberView { user: &m.user, connections: m.connections, meta: m.meta.as_ref() }
}

fn resume(v: &Value) -> Option<ResumeOutcome> {
    if v.is_null() {
        return None;
    }
    Some(match s(v, "status") {
        "recovered" => ResumeOutcome::Recovered { replayed: n(v, "replayed") },
        "not_recovered" => ResumeOutcome::NotRecovered {
            reason: match s(v, "reason") {
                "retention" => GapReason::Retention,
                "epoch" => GapReason::Epoch,
                "ahead" => GapReason::Ahead,
                "unavailable" => GapReason::Unavailable,
                other => panic!("unknown gap reason {other}"),
            },
            since: n(v, "since"),
        },
        other => panic!("unknown resume status {other}"),
    })
}

fn event(name: &str) -> PresenceEvent {
    match name {
        "join" => PresenceEvent::Join,
        "update" => PresenceEvent::Update,
        "leave" => PresenceEvent::Leave,
        other => panic!("unknown presence event {other}"),
    }
}

// ---- the client machine ---------------------------------------------------------------------

/// A client machine with the SDK's defaults, opened by a welcome, its outputs so far drained.
fn open_client(seed: u64) -> Client {
    let mut c = Client::new(ClientConfig::default(), seed, false, 0);
    c.handle_welcome_frame(client::Welcome { epoch: "e1", seq: 0, ..client::Welcome::default() }, 0);
    while c.poll_output().is_some() {}
    c
}

fn sent(c: &mut Client) -> Vec<String> {
    std::iter::from_fn(|| c.poll_output()).filter_map(|o| if let Output::Send(t) = o { Some(t) } else { None }).collect()
}

fn one(mut texts: Vec<String>, what: &str) -> String {
    assert_eq!(texts.len(), 1, "{what} should send exactly one frame: {texts:?}");
    texts.remove(0)
}

// ---- the room machine -----------------------------------------------------------------------

/// A room with the given `[vars]`, the messages of `stored` published over HTTP by the backend,
/// and one connection opened in it (`rewind`: asking for the last N messages); returns the texts
/// sent to that connection by the open (the welcome first) and, when `input` is given, by that
/// frame instead.
fn room_answer(src: &Value) -> Vec<String> {
    let vars = src.get("vars").cloned().unwrap_or(Value::Null);
    let config = RoomConfig::from_vars(|name| vars.get(name).and_then(Value::as_str).map(str::to_owned));
    let now = n(src, "now");
    let mut store = MemoryStore::default();
    let mut room = Room::load(config, &mut store, s(src, "epoch"), now, []).expect("room loads");
    if let Some(stored) = src.get("stored").and_then(Value::as_array) {
        let items: Vec<room::PublishItem> =
            stored.iter().map(|m| room::PublishItem { data: json(m, "data"), id: opt_s(m, "id").map(str::to_owned) }).collect();
        room.publish(&roomcast_protocol::api::Caller::backend(), &items, now, &mut store).expect("stored");
        while room.poll_action().is_some() {}
    }
    let who = &src["identity"];
    let rights = who["rights"].as_array().expect("rights: []").iter().map(|r| r.as_str().expect("right")).collect::<BTreeSet<_>>();
    let identity = Identity {
        client_id: s(who, "clientId").to_owned(),
        user: s(who, "user").to_owned(),
        meta: opt_s(who, "meta").map(|t| CompactJson::parse(t).expect("meta is JSON")),
        echo: who["echo"].as_bool().unwrap_or(false),
        rights: Rights {
            subscribe: rights.contains("subscribe"),
            publish: rights.contains("publish"),
            presence: rights.contains("presence"),
            input: rights.contains("input"),
        },
        expires: opt_n(who, "expires"),
    };
    let start = opt_n(src, "rewind").map_or(Start::Fresh, Start::Rewind);
    let conn = room.handle_start(identity, start, now, &mut store).expect("the room admits the connection");
    let mut texts = Vec::new();
    let drain = |room: &mut Room, texts: &mut Vec<String>| {
        while let Some(action) = room.poll_action() {
            if let Action::Send { to, text } = action {
                let to_conn = match &to {
                    Recipients::One(c) => *c == conn,
                    Recipients::List(l) => l.contains(&conn),
                    Recipients::All { except } => *except != Some(conn),
                };
                if to_conn {
                    texts.push(text);
                }
            }
        }
    };
    drain(&mut room, &mut texts);
    if let Some(input) = opt_s(src, "input") {
        texts.clear();
        room.handle_text(conn, input, now, &mut store);
        drain(&mut room, &mut texts);
    }
    texts
}

// ---- the builders ---------------------------------------------------------------------------

/// What the named builder produces for the entry's inputs; `None` for JavaScript builders (the
/// Node test checks those).
fn build(src: &Value) -> Option<String> {
    let f = s(src, "fn");
    let text = match f {
        "client::Client::publish" => {
            let mut c = open_client(n(src, "seed"));
            c.publish(s(src, "data")).expect("publish is queued");
            one(sent(&mut c), f)
        }
        "client::Client::direct" => {
            let mut c = open_client(n(src, "seed"));
            c.direct(s(src, "to"), s(src, "data")).expect("direct is sent");
            one(sent(&mut c), f)
        }
        "client::Client::input" => {
            let mut c = open_client(n(src, "seed"));
            c.input(s(src, "to"), s(src, "data")).expect("input is sent");
            one(sent(&mut c), f)
        }
        "client::Client::handle_mark" => {
            let mut c = open_client(n(src, "seed"));
            c.handle_mark(s(src, "id"));
            one(sent(&mut c), f)
        }
        "client::Client (heartbeat)" => {
            // The machine's own timer decides when; the first frame it sends while open is the ping.
            let mut c = open_client(n(src, "seed"));
            let mut texts = Vec::new();
            while texts.is_empty() {
                let t = c.poll_timeout().expect("an open client has a ping timer");
                c.handle_timeout(t);
                texts = sent(&mut c);
            }
            one(texts, f)
        }
        "PING" => roomcast_protocol::PING.to_owned(),
        "frame::PONG" => frame::PONG.to_owned(),
        "frame::encode_welcome" => {
            let ms = members(&src["members"]);
            let views: Vec<MemberView<'_>> = ms.iter().map(view).collect();
            let resume = resume(&src["resume"]);
            let (hb, lim) = (&src["heartbeat"], &src["limits"]);
            let heartbeat = Heartbeat { interval: n(hb, "interval"), timeout: n(hb, "timeout") };
            let limits = Limits {
                max_frame_bytes: n(lim, "maxFrameBytes") as usize,
                messages_per_sec: n(lim, "messagesPerSec"),
                messages_burst: n(lim, "messagesBurst"),
                bytes_per_sec: n(lim, "bytesPerSec"),
                message_id_max: n(lim, "messageIdMax") as usize,
                presence_meta_max: n(lim, "presenceMetaMax") as usize,
                broadcasts_per_sec: n(lim, "broadcastsPerSec"),
                broadcasts_burst: n(lim, "broadcastsBurst"),
                broadcast_max_bytes: n(lim, "broadcastMaxBytes") as usize,
            };
            let welcome = Welcome {
                epoch: s(src, "epoch"),
                seq: n(src, "seq"),
                client_id: s(src, "clientId"),
                user: s(src, "user"),
                resume: resume.as_ref(),
                expires: opt_n(src, "expires"),
                rewind: opt_n(src, "rewind").map(|replayed| Rewound { replayed }),
                heartbeat: &heartbeat,
                limits: &limits,
            };
            frame::encode_welcome(&welcome, &views)
        }
        "frame::encode_message" => {
            let data = json(src, "data");
            frame::encode_message(&frame::MessageFrame {
                kind: "message",
                seq: n(src, "seq"),
                from: s(src, "from"),
                user: s(src, "user"),
                id: opt_s(src, "id"),
                data: &data,
                ts: n(src, "ts"),
            })
        }
        "room::encode_stored" => room::encode_stored(&StoredMessage {
            seq: n(src, "seq"),
            ts: n(src, "ts"),
            from: s(src, "from").to_owned(),
            user: s(src, "user").to_owned(),
            id: opt_s(src, "id").map(str::to_owned),
            data: json(src, "data"),
        }),
        "frame::encode_ack" => frame::encode_ack(s(src, "id"), n(src, "seq"), src["duplicate"].as_bool().expect("duplicate")),
        "frame::encode_direct_ack" => frame::encode_direct_ack(s(src, "id"), opt_n(src, "delivered").map(|d| d as usize)),
        "frame::encode_error" => frame::encode_error(opt_s(src, "id"), code(s(src, "code")), s(src, "message")),
        "frame::encode_error_after" => {
            frame::encode_error_after(opt_s(src, "id"), code(s(src, "code")), s(src, "message"), opt_n(src, "retryAfterMs"))
        }
        "frame::encode_direct" => frame::encode_direct(s(src, "from"), s(src, "user"), &json(src, "data"), n(src, "ts")),
        "frame::encode_input" => frame::encode_input(s(src, "from"), s(src, "user"), &json(src, "data"), n(src, "ts")),
        "frame::encode_presence" => {
            let ms = members(&Value::Array(vec![src["member"].clone()]));
            frame::encode_presence(event(s(src, "event")), &view(&ms[0]))
        }
        "frame::encode_refreshed" => frame::encode_refreshed(n(src, "expires")),
        "frame::encode_broadcast" => frame::encode_broadcast(s(src, "from"), s(src, "user"), &json(src, "data"), n(src, "ts")),
        "frame::encode_done" => frame::encode_done(s(src, "id")),
        "frame::encode_mark" => frame::encode_mark(s(src, "id")),
        "frame::encode_history" => {
            // The page's messages as the room encodes them (room::encode_stored).
            let texts: Vec<String> = src["messages"]
                .as_array()
                .expect("messages: []")
                .iter()
                .map(|m| {
                    room::encode_stored(&StoredMessage {
                        seq: n(m, "seq"),
                        ts: n(m, "ts"),
                        from: s(m, "from").to_owned(),
                        user: s(m, "user").to_owned(),
                        id: opt_s(m, "id").map(str::to_owned),
                        data: json(m, "data"),
                    })
                })
                .collect();
            frame::encode_history(s(src, "id"), &texts, src["more"].as_bool().expect("more"))
        }
        // `nth`: which of the texts sent to the connection (default: the first of the open, the
        // only one of a frame).
        "room::Room::handle_start" => {
            let texts = room_answer(src);
            texts.get(opt_n(src, "nth").unwrap_or(0) as usize).cloned().unwrap_or_else(|| panic!("{f}: only {texts:?}"))
        }
        "room::Room::handle_text" => match opt_n(src, "nth") {
            Some(i) => room_answer(src).get(i as usize).cloned().expect("that many answers"),
            None => one(room_answer(src), f),
        },
        "session::encode_hello" => session::encode_hello(s(src, "user"), s(src, "clientId"), n(src, "expires")),
        "session::with_room" => session::with_room(s(src, "room"), s(src, "text")),
        "session::encode_left" => session::encode_left(s(src, "room"), n(src, "code") as u16, s(src, "reason")),
        "session::encode_gap" => {
            let gap = match s(src, "reason") {
                "epoch" => Gap::Epoch,
                _ => Gap::Retention { after: n(src, "after"), until: n(src, "until") },
            };
            session::encode_gap(s(src, "room"), &gap)
        }
        "session::encode_watch" => session::encode_watch(s(src, "room"), n(src, "seq"), n(src, "unread")),
        "session::encode_read_position" => session::encode_read_position(s(src, "room"), n(src, "seq")),
        js if js.starts_with("sdk/") || js.starts_with("tests/") => return None,
        other => panic!("golden source {other:?} has no builder in protocol/tests/golden.rs"),
    };
    Some(text)
}

// ---- the tests ------------------------------------------------------------------------------

#[test]
fn builders_produce_the_golden_bytes() {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for g in golden() {
        let Some(src) = &g.source else { continue };
        let Some(text) = build(src) else { continue };
        checked += 1;
        if text != g.text {
            wrong.push(format!("{}\n  golden: {}\n  built:  {}", g.name, g.text, text));
        }
    }
    assert!(wrong.is_empty(), "{} of {checked} golden frames differ from what the code builds:\n{}", wrong.len(), wrong.join("\n"));
    assert!(checked >= 25, "only {checked} golden frames have a Rust builder");
}

#[test]
fn every_client_frame_decodes_as_the_server_reads_it() {
    for g in golden().iter().filter(|g| g.direction == "client") {
        let parsed: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", g.name));
        let decoded = frame::decode_client(&g.text, RoomConfig::default().message_id_max)
            .unwrap_or_else(|e| panic!("{}: the server refuses it: {e}", g.name));
        let same_data = |data: &CompactJson| serde_json::from_str::<Value>(data.get()).unwrap() == parsed["data"];
        match decoded {
            ClientFrame::Publish { id, data } => {
                assert_eq!(parsed["type"], "publish", "{}", g.name);
                assert_eq!(parsed["id"], *id, "{}", g.name);
                assert!(same_data(&data), "{}: data", g.name);
                assert!(!data.get().contains('\n'), "{}: data is compacted", g.name);
            }
            ClientFrame::Direct { id, to, data } => {
                assert_eq!(parsed["type"], "direct", "{}", g.name);
                assert_eq!(parsed["id"], *id, "{}", g.name);
                match to {
                    Target::User(u) => assert_eq!(parsed["to"]["user"], *u, "{}", g.name),
                    Target::Client(c) => assert_eq!(parsed["to"]["clientId"], *c, "{}", g.name),
                }
                assert!(same_data(&data), "{}: data", g.name);
            }
            ClientFrame::Input { id, to, data } => {
                assert_eq!(parsed["type"], "input", "{}", g.name);
                assert_eq!(parsed["id"], *id, "{}", g.name);
                match to {
                    Target::User(u) => assert_eq!(parsed["to"]["user"], *u, "{}", g.name),
                    Target::Client(c) => assert_eq!(parsed["to"]["clientId"], *c, "{}", g.name),
                }
                assert!(same_data(&data), "{}: data", g.name);
            }
            ClientFrame::Ping => assert_eq!(parsed["type"], "ping", "{}", g.name),
            ClientFrame::Read { id } => {
                assert_eq!(parsed["type"], "read", "{}", g.name);
                assert_eq!(parsed["id"], *id, "{}", g.name);
            }
            ClientFrame::Refresh { token } => {
                assert_eq!(parsed["type"], "refresh", "{}", g.name);
                assert_eq!(parsed["token"], *token, "{}", g.name);
            }
            ClientFrame::History { id, limit, before, since } => {
                assert_eq!(parsed["type"], "history", "{}", g.name);
                assert_eq!(parsed["id"], *id, "{}", g.name);
                assert_eq!(parsed["limit"].as_u64(), limit.map(|l| l as u64), "{}", g.name);
                assert_eq!((parsed["before"].as_u64(), parsed["since"].as_u64()), (before, since), "{}", g.name);
            }
            ClientFrame::Broadcast { id, data } => {
                assert_eq!(parsed["type"], "broadcast", "{}", g.name);
                assert_eq!(parsed["id"].as_str(), id.as_deref(), "{}", g.name);
                assert!(same_data(&data), "{}: data", g.name);
            }
            ClientFrame::SetPresence { id, meta } => {
                assert_eq!(parsed["type"], "presence", "{}", g.name);
                assert_eq!(parsed["id"], *id, "{}", g.name);
                assert_eq!(serde_json::from_str::<Value>(meta.get()).unwrap(), parsed["meta"], "{}: meta", g.name);
            }
        }
    }
}

#[test]
fn server_frames_are_single_lines_and_every_type_is_covered() {
    let frames = golden();
    let mut seen = BTreeSet::new();
    for g in &frames {
        assert!(matches!(g.direction.as_str(), "client" | "server" | "session-client" | "session-server"), "{}: direction", g.name);
        let v: Value = serde_json::from_str(&g.text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", g.name));
        let kind = v["type"].as_str().unwrap_or_else(|| panic!("{}: no string type", g.name)).to_owned();
        if g.direction == "server" || g.direction == "session-server" {
            assert!(g.text.bytes().all(|b| b >= 0x20), "{}: a server frame is one line with no control byte", g.name);
            // What the room writes is compact: no whitespace between tokens.
            let compact = CompactJson::parse(&g.text).unwrap();
            assert_eq!(compact.get(), g.text, "{}: a server frame is compact", g.name);
        }
        if kind == "ack" {
            seen.insert(format!("server ack {}", if v.get("seq").is_some() { "publish" } else { "direct" }));
        }
        seen.insert(format!("{} {kind}", g.direction));
    }
    for needed in [
        "client publish",
        "client direct",
        "client input",
        "server input",
        "client ping",
        "client refresh",
        "client history",
        "client broadcast",
        "client presence",
        "server welcome",
        "server message",
        "server ack",
        "server ack publish",
        "server ack direct",
        "server error",
        "server direct",
        "server presence",
        "server pong",
        "server refreshed",
        "server history",
        "server broadcast",
        "session-client join",
        "session-client leave",
        "session-client mark_read",
        "session-server session",
        "session-server joined",
        "session-server left",
        "session-server gap",
        "session-server read_position",
        "session-client watch",
        "session-server watch",
    ] {
        assert!(seen.contains(needed), "no golden frame for {needed}");
    }
}

/// Every session client frame of the golden file is one a session takes: no error comes back,
/// and a join reaches the room as an open.
#[test]
fn every_session_client_frame_is_taken_by_a_session() {
    use roomcast_protocol::session::{Output as SessionOutput, Secrets, Session};
    use roomcast_protocol::token::{Claims, Right};
    let frames: Vec<_> = golden().into_iter().filter(|g| g.direction == "session-client").collect();
    assert!(frames.len() >= 4, "only {} session client frames", frames.len());
    for g in frames {
        let mut session = Session::new("alice", Secrets::default(), 1_000);
        let rights = vec![Right::Subscribe, Right::Publish, Right::Presence];
        let claims =
            Claims { sub: "alice".into(), exp: 4_000_000_000, nbf: None, iat: None, rooms: [("*".to_owned(), rights)].into(), meta: None };
        let device = session.handle_open("tab-1".into(), claims, 1_000).unwrap();
        let parsed: Value = serde_json::from_str(&g.text).unwrap();
        // A read position needs the room watched (or a join the room admitted); other room
        // frames but a join need the room joined first.
        if let (Some(room), true) = (parsed["room"].as_str(), parsed["type"] == "mark_read") {
            session.handle_text(device, &format!(r#"{{"type":"watch","rooms":["{room}"]}}"#), 1_000);
            // the room's head, so the position is one the session knows of
            let page = roomcast_protocol::relay::FeedPage { epoch: "e1".into(), end: Some(50), messages: Vec::new() };
            session.handle_feed(roomcast_protocol::relay::FeedCall { room: room.into(), page, extras: Vec::new(), watch: true });
        } else if let (Some(room), false) = (parsed["room"].as_str(), parsed["type"] == "join") {
            session.handle_text(device, &format!(r#"{{"type":"join","room":"{room}"}}"#), 1_000);
        }
        while session.poll_output().is_some() {}
        session.handle_text(device, &g.text, 1_000);
        let outputs: Vec<SessionOutput> = std::iter::from_fn(|| session.poll_output()).collect();
        for o in &outputs {
            if let SessionOutput::Send { text, .. } = o {
                assert!(!text.contains(r#""type":"error""#), "{}: {text}", g.name);
            }
        }
        assert!(!outputs.is_empty(), "{}: the session did nothing with it", g.name);
    }
}
