//! The framing property, as one function that the tests (proptest) and the `framing` fuzz
//! target both run: whatever `data` a client sends, on every path, each connection splits out of
//! what it receives exactly the frames the room encoded for it. Built only for tests and fuzzing.

use super::*;
use crate::api::publish::PublishBatch;
use crate::api::Caller;
use crate::store::MemoryStore;
use crate::token::Rights;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

#[derive(serde::Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow, rename = "data")]
    _data: Option<&'a RawValue>,
}

/// Drives every path a client's `data` takes (WebSocket publish and direct, HTTP single and batch,
/// resume replay, history) with `data`, then checks that what each connection receives, coalesced
/// and split back on line feeds, is exactly the frames the room encoded, one by one, and that no
/// encoded frame holds a line feed. Returns how many frames carried `data`.
pub fn check_framing(data: &str) -> usize {
    use super::batch::{coalesce, split, Group};
    let mut store = MemoryStore::default();
    let mut room = Room::load(RoomConfig::default(), &mut store, "e", 1_000, []).unwrap();
    let who =
        |c: &str, u: &str, echo| Identity { client_id: c.into(), user: u.into(), meta: None, echo, rights: Rights::ALL, expires: None };
    let alice = room.handle_open(who("a", "alice", false), None, 1_000, &mut store).unwrap();
    let bob = room.handle_open(who("b", "bob", true), None, 1_000, &mut store).unwrap();
    room.handle_text(alice, &format!(r#"{{"type":"publish","id":"p","data":{data}}}"#), 1_001, &mut store);
    room.handle_text(alice, &format!(r#"{{"type":"direct","id":"d","to":{{"user":"bob"}},"data":{data}}}"#), 1_002, &mut store);
    room.handle_text(alice, data, 1_003, &mut store);
    for body in [format!(r#"{{"data":{data},"id":"h"}}"#), format!(r#"[{{"data":{data}}},{{"id":"i","data":{data}}}]"#)] {
        if let Ok(batch) = PublishBatch::parse(&body, room.config()) {
            room.publish(&Caller::backend(), &batch.items, 1_004, &mut store).unwrap();
        }
    }
    let carol = room.handle_open(who("c", "carol", true), Some(ResumePoint { epoch: "e".into(), since: 0 }), 1_005, &mut store).unwrap();
    let open = [alice, bob, carol];
    let actions: Vec<Action> = std::iter::from_fn(|| room.poll_action()).collect();
    // one by one: every connection's frames in order
    let mut expected: BTreeMap<ConnId, Vec<String>> = BTreeMap::new();
    let mut carrying = 0;
    for a in &actions {
        let Action::Send { to, text } = a else { continue };
        assert!(!text.contains('\n'), "an encoded frame holds a line feed: {text:?}");
        // Read with a raw `data`: JSON allows numbers (1e999) that a `Value` cannot hold.
        let probe: Probe<'_> = serde_json::from_str(text).expect("frames are JSON objects with a type");
        if matches!(probe.kind, "message" | "direct") {
            carrying += 1;
        }
        let targets: Vec<ConnId> = match to {
            Recipients::All { except } => open.iter().copied().filter(|c| Some(*c) != *except).collect(),
            Recipients::One(c) => vec![*c],
            Recipients::List(l) => l.clone(),
        };
        for c in targets {
            expected.entry(c).or_default().push(text.clone());
        }
    }
    let batch = coalesce(actions, |c| open.contains(&c));
    let mut got: BTreeMap<ConnId, Vec<String>> = BTreeMap::new();
    for d in &batch.deliveries {
        let targets: Vec<ConnId> = match &d.to {
            Group::AllBut(except) => open.iter().copied().filter(|c| !except.contains(c)).collect(),
            Group::Only(ids) => ids.clone(),
        };
        for c in targets {
            got.entry(c).or_default().extend(split(&d.text).map(str::to_owned));
        }
    }
    assert_eq!(got, expected);
    let page = room.read_history(":api", Page::After(0), 100, 1_006, &mut store).unwrap();
    for m in &page.messages {
        assert!(!encode_stored(m).contains('\n'));
    }
    carrying
}
