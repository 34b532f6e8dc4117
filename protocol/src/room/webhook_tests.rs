//! The room's webhook events and their delivery, driven natively with a simulated clock, the
//! in-memory store, and rooms loaded afresh (hibernation, restarts) in between.

use super::*;
use crate::api::call::{RoomCall, RoomRequest};
use crate::api::Caller;
use crate::close::{self, CloseCode};
use crate::compact::CompactJson;
use crate::config::webhook::WebhookConfig;
use crate::store::{MemoryStore, Store};
use crate::token::Rights;
use crate::webhook::WebhookOutcome;
use crate::webhook::{sign, SigningKey};
use proptest::prelude::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ALL: &str = "message.published,presence.joined,presence.left,room.occupied,room.vacated";

fn hooked(events: &str, grace: u64) -> RoomConfig {
    let events = events.to_owned();
    RoomConfig {
        presence_grace_ms: grace,
        webhook: WebhookConfig::from_vars(&move |n| match n {
            "WEBHOOK_URL" => Some("https://hooks.test/in".into()),
            "WEBHOOK_SECRET" => Some(SECRET.into()),
            "WEBHOOK_EVENTS" => Some(events.clone()),
            "WEBHOOK_MAX_AGE_SECONDS" => Some("60".into()),
            "WEBHOOK_BATCH_MAX" => Some("3".into()),
            _ => None,
        }),
        ..RoomConfig::default()
    }
}

/// A room as the Durable Object runs it: it can be reloaded from the store and the live sockets
/// at any point (hibernation), or without the sockets (a restart took them).
struct H {
    room: Room,
    store: MemoryStore,
    config: RoomConfig,
    now: u64,
    key_draws: u64,
}

impl H {
    fn new(config: RoomConfig) -> H {
        let mut store = MemoryStore::default();
        let mut room = Room::load(config.clone(), &mut store, "epoch-1", 1_000, []).unwrap();
        room.attach_webhooks("chat:1", "00112233aabbccdd", 1_000, &mut store).unwrap();
        H { room, store, config, now: 1_000, key_draws: 0 }
    }

    /// Hibernation (`keep_sockets`) or a restart: a new instance from the store.
    fn reload(&mut self, keep_sockets: bool) {
        let conns: Vec<Connection> = if keep_sockets { self.room.conns.values().map(|l| l.info.clone()).collect() } else { Vec::new() };
        let mut room = Room::load(self.config.clone(), &mut self.store, "unused", self.now, conns).unwrap();
        // A fresh key each time: only the first one may ever be used.
        self.key_draws += 1;
        room.attach_webhooks("chat:1", &format!("{:016x}", self.key_draws), self.now, &mut self.store).unwrap();
        self.room = room;
        while self.room.poll_action().is_some() {}
    }

    fn connect(&mut self, user: &str, meta: Option<&str>) -> ConnId {
        let meta = meta.map(|m| CompactJson::parse(m).unwrap());
        let identity = Identity {
            client_id: format!("c-{user}-{}", self.now),
            user: user.into(),
            meta,
            echo: true,
            rights: Rights::ALL,
            expires: None,
        };
        let id = self.room.handle_open(identity, None, self.now, &mut self.store).unwrap();
        while self.room.poll_action().is_some() {}
        id
    }

    fn close(&mut self, id: ConnId) {
        self.room.handle_close(id, self.now, &mut self.store);
        while self.room.poll_action().is_some() {}
    }

    fn advance(&mut self, ms: u64) {
        self.now += ms;
        self.room.handle_timeout(self.now, |_| None, &mut self.store);
        while self.room.poll_action().is_some() {}
    }

    /// Every recorded event, pending or dead, with its id, in row order.
    fn events(&self) -> Vec<Value> {
        let key = self.room.hooks.as_ref().unwrap().key().to_owned();
        self.store
            .outbox_rows()
            .iter()
            .map(|(n, body, _)| {
                let mut out = String::new();
                crate::webhook::event::with_id(&key, *n, body, &mut out);
                serde_json::from_str(&out).unwrap()
            })
            .collect()
    }

    fn types(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["user"].as_str().unwrap_or("")))
            .map(|s| s.trim().to_owned())
            .collect()
    }

    /// One delivery attempt answered with `status`: the events it carried.
    fn deliver(&mut self, status: u16, random: u64) -> Option<Vec<Value>> {
        let request = self.room.poll_webhook(self.now, &mut self.store)?;
        let body: Value = serde_json::from_str(&request.body).unwrap();
        self.room.handle_webhook_result(request.attempt, WebhookOutcome::Status(status, None), self.now, random, &mut self.store);
        Some(body["events"].as_array().unwrap().clone())
    }
}

#[test]
fn every_event_type_with_its_fields() {
    let mut h = H::new(hooked(ALL, 1_000));
    let a = h.connect("alice", Some(r#"{ "device" : "phone" }"#));
    assert_eq!(h.room.poll_timeout(), Some(0), "an event makes delivery due at once");
    let b = h.connect("bob", None);
    h.room.handle_text(a, r#"{"type":"publish","id":"m1","data":{"text":"hi"}}"#, h.now, &mut h.store);
    let item = PublishItem { data: CompactJson::parse("[1, 2]").unwrap(), id: None };
    h.room.publish(&Caller::backend(), &[item], h.now, &mut h.store).unwrap();
    h.close(a);
    h.close(b);
    assert_eq!(
        h.types(),
        ["room.occupied", "presence.joined alice", "presence.joined bob", "message.published alice", "message.published :api"]
    );
    h.advance(999);
    assert_eq!(h.events().len(), 5, "nothing during the grace period");
    h.advance(1);
    let e = h.events();
    assert_eq!(h.types()[5..], ["presence.left alice", "presence.left bob", "room.vacated"]);
    assert_eq!(e[0], serde_json::json!({"id": "evt_00112233aabbccdd_1", "type": "room.occupied", "room": "chat:1", "ts": 1_000}));
    assert_eq!(e[1]["meta"], serde_json::json!({"device": "phone"}));
    assert!(e[2].get("meta").is_none(), "no meta: no field");
    assert_eq!(e[3]["data"], serde_json::json!({"text": "hi"}));
    assert_eq!((e[3]["epoch"].as_str(), e[3]["seq"].as_u64(), e[3]["messageId"].as_str()), (Some("epoch-1"), Some(1), Some("m1")));
    assert_eq!(
        e[3]["from"].as_str().unwrap(),
        h.room.conns.get(&a).map_or_else(|| e[3]["from"].as_str().unwrap(), |l| l.info.client_id.as_str())
    );
    assert_eq!((e[4]["from"].as_str(), e[4]["seq"].as_u64()), (Some(":api"), Some(2)));
    assert!(e[4].get("messageId").is_none());
    assert_eq!(e[5]["meta"], serde_json::json!({"device": "phone"}), "left carries the meta kept through the grace");
    let ids: Vec<&str> = e.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "ids are unique");
}

#[test]
fn defaults_report_presence_and_occupancy_only_and_off_records_nothing() {
    let mut h = H::new(hooked("", 0));
    let a = h.connect("alice", None);
    h.room.handle_text(a, r#"{"type":"publish","id":"m1","data":1}"#, h.now, &mut h.store);
    h.close(a);
    assert_eq!(h.types(), ["room.occupied", "presence.joined alice", "presence.left alice", "room.vacated"], "no grace: left at once");

    let mut store = MemoryStore::default();
    let mut room = Room::load(RoomConfig::default(), &mut store, "e", 0, []).unwrap();
    room.attach_webhooks("chat:1", "k", 0, &mut store).unwrap();
    let id = room.handle_open(who("x", "x"), None, 0, &mut store).unwrap();
    room.handle_close(id, 0, &mut store);
    assert!(store.outbox_rows().is_empty());
    assert!(!room.stats(0, &mut store).unwrap().webhook.enabled);
    assert_eq!(room.poll_timeout(), Some(5_000), "only the grace period");

    let mut config = hooked(ALL, 0);
    config.webhook.rooms = "other:*".into();
    let mut room = Room::load(config, &mut store, "e", 0, []).unwrap();
    room.attach_webhooks("chat:1", "k", 0, &mut store).unwrap();
    room.handle_open(who("y", "y"), None, 0, &mut store).unwrap();
    assert!(store.outbox_rows().is_empty(), "WEBHOOK_ROOMS does not match");
}

#[test]
fn occupancy_follows_the_first_and_the_last_member_and_a_reconnect_in_grace_is_nothing() {
    let mut h = H::new(hooked(ALL, 1_000));
    let a = h.connect("alice", None);
    let a2 = h.connect("alice", None);
    h.close(a);
    h.close(a2);
    h.advance(500);
    let a3 = h.connect("alice", None);
    h.advance(5_000);
    assert_eq!(h.types(), ["room.occupied", "presence.joined alice"], "a reconnect in the grace period is no leave and join");
    h.close(a3);
    let b = h.connect("bob", None);
    h.advance(1_000);
    assert_eq!(h.types()[2..], ["presence.joined bob", "presence.left alice"], "bob is there: not vacated");
    h.close(b);
    h.advance(1_000);
    let c = h.connect("carol", None);
    assert_eq!(h.types()[4..], ["presence.left bob", "room.vacated", "room.occupied", "presence.joined carol"]);
    let _ = c;
}

#[test]
fn presence_left_exactly_once_across_hibernation_and_restarts() {
    let mut h = H::new(hooked(ALL, 1_000));
    let a = h.connect("alice", Some(r#"{"n":1}"#));
    let _b = h.connect("bob", None);
    h.close(a);
    h.advance(400);
    h.reload(true); // hibernation mid-grace
    assert!(!h.types().iter().any(|t| t.starts_with("presence.left")));
    h.advance(599);
    h.reload(true);
    h.advance(1);
    assert_eq!(h.types().iter().filter(|t| *t == "presence.left alice").count(), 1);
    for _ in 0..3 {
        h.reload(true);
        h.advance(10_000);
    }
    assert_eq!(h.types().iter().filter(|t| *t == "presence.left alice").count(), 1, "reloads never report it again");
    assert_eq!(h.events().last().unwrap()["meta"], serde_json::json!({"n": 1}));
    // A restart takes bob's socket without a close: he gets a grace period from the next load
    // (restarts during it keep it), then is reported left, and the room vacated, once.
    h.reload(false);
    h.advance(500);
    h.reload(false);
    assert_eq!(h.types()[3..], ["presence.left alice"]);
    assert_eq!(h.room.presence().get("bob").and_then(|m| m.leave_at), Some(h.now + 500), "the grace period survives a restart");
    h.advance(500);
    h.reload(false);
    h.advance(10_000);
    assert_eq!(h.types()[3..], ["presence.left alice", "presence.left bob", "room.vacated"]);
    assert_eq!(h.room.hooks.as_ref().unwrap().key(), "00112233aabbccdd", "the key is made once");
}

#[test]
fn a_user_back_within_the_grace_after_a_restart_is_no_leave_and_join() {
    let mut h = H::new(hooked(ALL, 1_000));
    h.connect("alice", None);
    h.reload(false); // a crash: the socket is gone, no close event
    h.advance(300);
    h.connect("alice", None); // the SDK reconnects
    h.advance(5_000);
    assert_eq!(h.types(), ["room.occupied", "presence.joined alice"]);
    let mut h = H::new(hooked(ALL, 0));
    h.connect("alice", None);
    h.reload(false);
    assert_eq!(h.types(), ["room.occupied", "presence.joined alice", "presence.left alice", "room.vacated"], "no grace: left at the load");
}

#[test]
fn messages_are_reported_in_seq_order_and_a_retried_publish_once() {
    let mut h = H::new(hooked("message.published", 0));
    let a = h.connect("alice", None);
    for i in 0..10 {
        h.room.handle_text(a, &format!(r#"{{"type":"publish","id":"m{i}","data":{i}}}"#), h.now, &mut h.store);
        if i % 3 == 0 {
            let items = [PublishItem { data: CompactJson::parse("0").unwrap(), id: Some(format!("h{i}")) }];
            h.room.publish(&Caller::backend(), &items, h.now, &mut h.store).unwrap();
        }
    }
    h.room.handle_text(a, r#"{"type":"publish","id":"m3","data":3}"#, h.now, &mut h.store);
    let seqs: Vec<u64> = h.events().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=14).collect::<Vec<_>>());
    assert!(h.types().iter().all(|t| t.starts_with("message.published")), "presence events were not asked for");
}

#[test]
fn delivery_sends_signed_batches_in_order_and_deletes_what_was_acknowledged() {
    let mut h = H::new(hooked(ALL, 0));
    for u in ["a", "b", "c", "d"] {
        h.connect(u, None);
    }
    let request = h.room.poll_webhook(h.now, &mut h.store).unwrap();
    assert_eq!(h.room.poll_webhook(h.now, &mut h.store), None, "one batch in flight");
    assert_eq!(request.url, "https://hooks.test/in");
    let header = |name: &str| request.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(header("webhook-id"), "batch_evt_00112233aabbccdd_1_3");
    assert_eq!(header("webhook-timestamp"), "1");
    let key = SigningKey::parse(SECRET).unwrap();
    assert_eq!(header("webhook-signature"), sign::signature(&key, &header("webhook-id"), 1, &request.body));
    assert_eq!(header("content-type"), "application/json");
    let body: Value = serde_json::from_str(&request.body).unwrap();
    let ids: Vec<&str> = body["events"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt_00112233aabbccdd_1", "evt_00112233aabbccdd_2", "evt_00112233aabbccdd_3"], "WEBHOOK_BATCH_MAX is 3");
    assert!(!request.body.contains('\n'));
    // An event recorded while the batch is in flight waits for the next one.
    h.connect("e", None);
    h.room.handle_webhook_result(request.attempt, WebhookOutcome::Status(204, None), h.now, 0, &mut h.store);
    assert_eq!(h.store.outbox_rows().iter().map(|r| r.0).collect::<Vec<_>>(), [4, 5, 6], "exactly the rows sent were deleted");
    assert_eq!(h.room.poll_timeout(), Some(0), "the rest goes at once");
    let next = h.deliver(200, 0).unwrap();
    let ids: Vec<&str> = next.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["evt_00112233aabbccdd_4", "evt_00112233aabbccdd_5", "evt_00112233aabbccdd_6"]);
    assert_eq!(h.deliver(200, 0), None, "nothing left");
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.enabled, stats.pending, stats.delivered, stats.failures, stats.last_error), (true, 0, 6, 0, None));
    assert_eq!(h.room.poll_timeout(), Some(h.now + 30_000), "only the heartbeat sweep is left");
}

#[test]
fn failures_back_off_resend_the_same_ids_and_survive_a_restart() {
    let mut h = H::new(hooked(ALL, 0));
    h.connect("a", None);
    let first = h.deliver(500, u64::MAX).unwrap();
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.failures, stats.last_error.as_deref(), stats.pending), (1, Some("HTTP 500"), 2));
    assert_eq!(h.room.poll_timeout(), Some(h.now + 1_000), "the first retry is after 1 s");
    assert_eq!(h.deliver(200, 0), None, "not before");
    h.now += 1_000;
    let request = h.room.poll_webhook(h.now, &mut h.store).unwrap();
    h.room.handle_webhook_result(
        request.attempt,
        WebhookOutcome::Failed("network error calling https://hooks.test/in".into()),
        h.now,
        1_000,
        &mut h.store,
    );
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.failures, stats.last_error.as_deref()), (2, Some("network error calling WEBHOOK_URL")), "the URL never shows");
    let due = h.room.poll_timeout().unwrap();
    assert_eq!(due, h.now + 2_000);
    h.reload(false); // the backoff survives a restart (which also reports "a" left: the socket went)
    assert_eq!(h.room.poll_timeout(), Some(due));
    h.now = due;
    let again = h.deliver(200, 0).unwrap();
    assert_eq!(again[..first.len()], first[..], "the same events with the same ids");
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.failures, stats.last_error, stats.pending), (0, None, 1), "room.vacated waits for the next batch");
}

#[test]
fn a_batch_whose_result_never_comes_is_sent_again() {
    let mut h = H::new(hooked(ALL, 0));
    h.connect("a", None);
    let lost = h.room.poll_webhook(h.now, &mut h.store).unwrap();
    // The object is reset mid-POST: nothing in memory survives, the rows do.
    h.reload(true);
    let again = h.room.poll_webhook(h.now, &mut h.store).unwrap();
    assert_eq!(
        (again.body.as_str(), again.headers.iter().find(|(k, _)| *k == "webhook-id")),
        (lost.body.as_str(), lost.headers.iter().find(|(k, _)| *k == "webhook-id"))
    );
    // Without a restart, a result that never comes frees the slot after the timeout.
    let due = h.room.poll_timeout().unwrap();
    assert_eq!(due, h.now + 10_000 + 5_000);
    h.now = due;
    assert!(h.room.poll_webhook(h.now, &mut h.store).is_some());
    h.room.handle_webhook_result(again.attempt, WebhookOutcome::Status(200, None), h.now, 0, &mut h.store);
    assert_eq!(h.store.outbox_rows().len(), 2, "a stale result is ignored");
}

#[test]
fn old_events_become_dead_letters_and_requeue_delivers_them_with_their_ids() {
    let mut h = H::new(hooked(ALL, 0));
    h.connect("a", None);
    let mut sent = Vec::new();
    while h.now < 1_000 + 61_000 {
        if let Some(events) = h.deliver(503, 0) {
            sent = events;
        }
        h.now = h.room.poll_timeout().unwrap_or(h.now + 1_000).max(h.now + 1);
    }
    h.connect("b", None);
    assert_eq!(h.deliver(503, 0).map(|e| e.len()), Some(1), "only the young event goes");
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.dead_letters, stats.pending, stats.last_error.as_deref()), (2, 1, Some("HTTP 503")));
    assert_eq!(h.room.requeue_webhooks(h.now, &mut h.store).unwrap(), 2);
    assert_eq!(h.room.poll_timeout(), Some(0), "requeued: at once");
    let events = h.deliver(200, 0).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[..2], sent[..], "the dead letters first, with their ids");
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.dead_letters, stats.pending, stats.failures), (0, 0, 0));
    assert_eq!(h.room.requeue_webhooks(h.now, &mut h.store).unwrap(), 0);
}

#[test]
fn a_big_backlog_goes_in_batches_capped_in_bytes() {
    let mut config = hooked("message.published", 0);
    config.webhook.batch_max = 1000;
    config.webhook.batch_max_bytes = 256 * 1024;
    let mut h = H::new(config);
    let a = h.connect("a", None);
    let data = format!("\"{}\"", "x".repeat(60_000));
    for i in 0..10 {
        h.room.handle_text(a, &format!(r#"{{"type":"publish","id":"m{i}","data":{data}}}"#), h.now, &mut h.store);
    }
    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    while let Some(events) = h.deliver(200, 0) {
        sizes.push(events.len());
        seen.extend(events.iter().map(|e| e["seq"].as_u64().unwrap()));
    }
    assert_eq!(seen, (1..=10).collect::<Vec<_>>());
    // Four events of 60 KB make a body under 256 KiB; a fifth would not fit.
    assert_eq!(sizes, [4, 4, 2], "the body's bytes are the bound, exactly");
}

/// Issue #22: one message whose event the receiver refuses (400: its parser will not take it)
/// does not hold up the room's webhooks. The batch is split at once, the event is set aside as a
/// dead letter with its status, the others arrive once and in seq order, and so do the room's
/// later events; a restart in the middle only starts the search over.
#[test]
fn an_event_the_receiver_refuses_is_set_aside_and_the_rest_arrives_in_order() {
    let mut config = hooked(ALL, 0);
    config.webhook.batch_max = 100;
    let mut h = H::new(config);
    let a = h.connect("alice", None);
    for i in 1..=99 {
        let data = if i == 37 { r#"{"poison":true}"#.to_string() } else { i.to_string() };
        h.room.handle_text(a, &format!(r#"{{"type":"publish","id":"m{i}","data":{data}}}"#), h.now, &mut h.store);
    }
    let refuses = |events: &[Value]| events.iter().any(|e| e["data"]["poison"] == true);
    let mut got: Vec<String> = Vec::new();
    let mut posts = 0;
    let start = h.now;
    while let Some(request) = h.room.poll_webhook(h.now, &mut h.store) {
        posts += 1;
        let body: Value = serde_json::from_str(&request.body).unwrap();
        let events = body["events"].as_array().unwrap();
        let status = if refuses(events) { 400 } else { 204 };
        if status == 204 {
            got.extend(
                events
                    .iter()
                    .map(|e| e["type"].as_str().unwrap().to_owned() + &e["seq"].as_u64().map(|s| format!(" {s}")).unwrap_or_default()),
            );
        }
        h.room.handle_webhook_result(request.attempt, WebhookOutcome::Status(status, None), h.now, 0, &mut h.store);
        if posts == 4 {
            h.reload(true); // a restart mid-split: the search starts over
            h.room.handle_text(a, r#"{"type":"publish","id":"late","data":"after"}"#, h.now, &mut h.store);
        }
        assert!(posts < 40, "{posts} POSTs");
    }
    let mut expected = vec!["room.occupied".to_string(), "presence.joined".to_string()];
    expected.extend((1..=100).filter(|s| *s != 37).map(|s| format!("message.published {s}")));
    assert_eq!(got, expected, "everything else, once, in order");
    assert_eq!(h.now, start, "at once: no backoff");
    let dead: Vec<(String, bool)> = h.store.outbox_rows().into_iter().map(|(_, body, dead)| (body, dead)).collect();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].1 && dead[0].0.contains(r#""seq":37"#));
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.pending, stats.dead_letters, stats.refused, stats.failures), (0, 1, 1, 0));
    let refused = stats.last_refused.unwrap();
    assert_eq!(refused.status, 400);
    assert!(refused.id.starts_with("evt_00112233aabbccdd_"), "{}", refused.id);
}

#[test]
fn a_missing_secret_records_but_does_not_deliver_and_says_why() {
    let mut config = hooked(ALL, 0);
    config.webhook.key = SigningKey::parse("");
    let mut h = H::new(config);
    h.connect("a", None);
    assert_eq!(h.events().len(), 2);
    assert_eq!(h.room.poll_timeout(), Some(h.now + 30_000), "only the heartbeat sweep");
    assert!(h.room.poll_webhook(h.now, &mut h.store).is_none());
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.enabled, stats.pending, stats.last_error.as_deref()), (true, 2, Some("WEBHOOK_SECRET is not set")));
}

#[test]
fn reset_starts_a_new_epoch_closes_with_4013_and_a_resume_is_told() {
    let mut h = H::new(hooked(ALL, 1_000));
    let a = h.connect("alice", None);
    for i in 0..3 {
        h.room.handle_text(a, &format!(r#"{{"type":"publish","id":"m{i}","data":{i}}}"#), h.now, &mut h.store);
    }
    while h.room.poll_action().is_some() {}
    let before = h.events().len();
    let reset = h.room.reset("epoch-2", h.now, &mut h.store).unwrap();
    assert_eq!(reset, Reset { epoch: "epoch-2".into(), deleted: 3 });
    let actions: Vec<Action> = std::iter::from_fn(|| h.room.poll_action()).collect();
    assert!(actions.contains(&Action::Close { conn: a, code: close::ROOM_RESET.into() }));
    assert!(!CloseCode::is_final(4013));
    assert_eq!((h.room.epoch(), h.room.seq(), h.store.count().unwrap()), ("epoch-2", 0, 0));
    assert_eq!(h.events().len(), before, "pending events are kept and the reset invents none");
    // The client comes back within the grace period with its old resume point.
    let identity = Identity { client_id: "again".into(), user: "alice".into(), meta: None, echo: true, rights: Rights::ALL, expires: None };
    let id = h.room.handle_open(identity, Some(ResumePoint { epoch: "epoch-1".into(), since: 3 }), h.now, &mut h.store).unwrap();
    let welcome = std::iter::from_fn(|| h.room.poll_action())
        .find_map(|a| match a {
            Action::Send { to: Recipients::One(c), text } if c == id => Some(text),
            _ => None,
        })
        .unwrap();
    let w: Value = serde_json::from_str(&welcome).unwrap();
    assert_eq!((w["epoch"].as_str(), w["seq"].as_u64()), (Some("epoch-2"), Some(0)));
    assert_eq!(w["resume"], serde_json::json!({"status": "not_recovered", "reason": "epoch", "since": 3}));
    h.room.handle_text(id, r#"{"type":"publish","id":"n","data":1}"#, h.now, &mut h.store);
    let last = h.events().pop().unwrap();
    assert_eq!((last["epoch"].as_str(), last["seq"].as_u64()), (Some("epoch-2"), Some(1)));
    assert_eq!(h.events().len(), before + 1, "a reconnect in grace is no leave and join");
}

fn who(client: &str, user: &str) -> Identity {
    Identity { client_id: client.into(), user: user.into(), meta: None, echo: true, rights: Rights::ALL, expires: None }
}

proptest! {
    /// Random churn of connections, closes, timers, reloads with and without sockets: after the
    /// last grace period ends, the events of each user alternate joined/left starting with a
    /// join, occupancy alternates occupied/vacated, and the room's recorded view matches the
    /// truth (nobody present, the room vacated).
    #[test]
    fn presence_events_alternate_whatever_happens(steps in proptest::collection::vec((0u8..5, 0u8..3, 0u64..1500), 1..60)) {
        let mut h = H::new(hooked(ALL, 1_000));
        let mut open: Vec<ConnId> = Vec::new();
        for (op, user, dt) in steps {
            match op {
                0 | 1 => open.push(h.connect(&format!("u{user}"), None)),
                2 => if !open.is_empty() { let id = open.remove(usize::from(user) % open.len()); h.close(id) },
                3 => h.advance(dt),
                _ => { let keep = user != 0; h.reload(keep); if !keep { open.clear() } }
            }
        }
        for id in std::mem::take(&mut open) { h.close(id); }
        h.advance(10_000);
        let mut present: BTreeMap<String, bool> = BTreeMap::new();
        let mut occupied = false;
        for e in h.events() {
            match e["type"].as_str().unwrap() {
                "room.occupied" => { prop_assert!(!occupied); occupied = true }
                "room.vacated" => { prop_assert!(occupied); prop_assert!(present.values().all(|p| !p)); occupied = false }
                "presence.joined" => { prop_assert!(occupied); let p = present.entry(e["user"].as_str().unwrap().into()).or_default(); prop_assert!(!*p); *p = true }
                "presence.left" => { let p = present.entry(e["user"].as_str().unwrap().into()).or_default(); prop_assert!(*p); *p = false }
                other => prop_assert!(false, "{}", other),
            }
        }
        prop_assert!(!occupied);
        prop_assert!(present.values().all(|p| !p));
    }
}

// ---- the outbox's bounds (issue #22) ------------------------------------------------------------

/// A room whose outbox holds at most `max_events` events.
fn bounded(max_events: u64, grace: u64) -> RoomConfig {
    let mut config = hooked(ALL, grace);
    config.webhook.outbox_max_events = max_events;
    config
}

/// The last frame sent to `conn` among `actions`.
fn last_to(actions: &[Action], conn: ConnId) -> Option<Value> {
    actions.iter().rev().find_map(|a| match a {
        Action::Send { to: Recipients::One(c), text } if *c == conn => serde_json::from_str(text.lines().last()?).ok(),
        _ => None,
    })
}

/// Issue #22: once the outbox holds its bound (the receiver is down), a publish is refused with
/// `backpressure` (WebSocket) or 507 and a Retry-After (HTTP), and nothing is stored, broadcast
/// or recorded for it; a retry of a stored message is still answered as a duplicate. Once the
/// receiver is back and a batch is delivered, publishing goes on, and every event arrives in
/// order: none was lost for the refusals.
#[test]
fn publishing_is_refused_at_the_bound_and_goes_on_once_drained() {
    let mut h = H::new(bounded(6, 0));
    let a = h.connect("alice", None); // room.occupied, presence.joined: 2 events
    let b = h.connect("bob", None); // 1 more
    assert_eq!(h.deliver(503, 0).map(|e| e.len()), Some(3), "the receiver is down");
    for i in 1..=3 {
        h.room.handle_text(a, &format!(r#"{{"type":"publish","id":"m{i}","data":{i}}}"#), h.now, &mut h.store);
        while h.room.poll_action().is_some() {}
    }
    assert_eq!((h.room.seq(), h.events().len()), (3, 6), "the bound");
    // the 4th over the socket: refused, with the frame's id, and nothing happens
    h.room.handle_text(a, r#"{"type":"publish","id":"m4","data":4}"#, h.now, &mut h.store);
    let actions: Vec<Action> = std::iter::from_fn(|| h.room.poll_action()).collect();
    let e = last_to(&actions, a).unwrap();
    assert_eq!((e["type"].as_str(), e["code"].as_str(), e["id"].as_str()), (Some("error"), Some("backpressure"), Some("m4")), "{e}");
    assert_eq!(e["message"], "the room's webhook backlog is full; retry after 1000 ms");
    assert!(actions.iter().all(|a| !matches!(a, Action::Send { to: Recipients::All { .. }, .. })), "no broadcast");
    assert_eq!((h.room.seq(), h.store.count().unwrap(), h.events().len()), (3, 3, 6), "nothing stored");
    // a retry of a stored message needs no room: acknowledged as the duplicate it is
    h.room.handle_text(a, r#"{"type":"publish","id":"m2","data":2}"#, h.now, &mut h.store);
    let actions: Vec<Action> = std::iter::from_fn(|| h.room.poll_action()).collect();
    assert_eq!(last_to(&actions, a).unwrap(), serde_json::json!({"type":"ack","id":"m2","seq":2,"duplicate":true}));
    // HTTP: 507, the code, and a Retry-After (the next attempt's time, 1 s at least)
    let call = |items: &str| RoomRequest {
        caller: Caller::backend(),
        call: RoomCall::Publish(crate::api::publish::PublishBatch::parse(items, &RoomConfig::default()).unwrap()),
    };
    let answer = h.room.serve(&call(r#"[{"data":5},{"data":6}]"#), "unused", h.now, &mut h.store);
    assert_eq!((answer.status, answer.retry_after), (507, Some(1)), "{}", answer.body);
    let body: Value = serde_json::from_str(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "backpressure");
    assert_eq!(h.store.count().unwrap(), 3, "the whole batch refused");
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.full, stats.backpressure, stats.pending), (true, 2, 6));
    // the receiver is back: a batch of 3 makes room for 3
    h.now = h.room.poll_timeout().unwrap().max(h.now);
    assert_eq!(h.deliver(204, 0).map(|e| e.len()), Some(3));
    let answer = h.room.serve(&call(r#"[{"data":5},{"data":6},{"data":7},{"data":8}]"#), "unused", h.now, &mut h.store);
    assert_eq!(answer.status, 507, "4 do not fit in 3: all or nothing");
    let answer = h.room.serve(&call(r#"[{"data":5},{"data":6}]"#), "unused", h.now, &mut h.store);
    assert_eq!((answer.status, answer.body.as_str()), (200, r#"{"messages":[{"seq":4},{"seq":5}]}"#));
    h.room.handle_text(b, r#"{"type":"publish","id":"m6","data":6}"#, h.now, &mut h.store);
    let actions: Vec<Action> = std::iter::from_fn(|| h.room.poll_action()).collect();
    assert_eq!(last_to(&actions, b).unwrap(), serde_json::json!({"type":"ack","id":"m6","seq":6}));
    let mut delivered = Vec::new();
    while let Some(events) = h.deliver(204, 0) {
        delivered.extend(events.iter().filter_map(|e| e["seq"].as_u64()));
    }
    assert_eq!(delivered, [1, 2, 3, 4, 5, 6], "every stored message, once, in order");
    assert!(!h.room.stats(h.now, &mut h.store).unwrap().webhook.full);
}

/// Presence and occupancy are the backend's view of who is there: a backlog of messages never
/// stops them (they may take the outbox to twice its bound). Beyond that a connection that would
/// make someone present is refused with 4029 (retryable), while departures are still recorded
/// and a member's own reconnect (no join) still gets in.
#[test]
fn presence_goes_past_the_message_bound_and_joins_are_refused_at_twice_it() {
    let mut h = H::new(bounded(4, 1_000));
    let a = h.connect("alice", None);
    for i in 1..=2 {
        h.room.handle_text(a, &format!(r#"{{"type":"publish","id":"m{i}","data":{i}}}"#), h.now, &mut h.store);
    }
    while h.room.poll_action().is_some() {}
    assert_eq!(h.events().len(), 4, "messages filled the bound");
    let b = h.connect("bob", None);
    let c = h.connect("carol", None);
    let d = h.connect("dave", None);
    assert_eq!(h.events().len(), 7, "joins still recorded");
    let e = h.connect("erin", None);
    assert_eq!(h.events().len(), 8, "twice the bound");
    let frank = Identity { client_id: "c-frank".into(), user: "frank".into(), meta: None, echo: false, rights: Rights::ALL, expires: None };
    assert_eq!(h.room.handle_open(frank.clone(), None, h.now, &mut h.store), Err(close::WEBHOOK_BACKLOG));
    assert_eq!(close::WEBHOOK_BACKLOG.code, 4029);
    assert!(!CloseCode::is_final(close::WEBHOOK_BACKLOG.code), "retryable");
    // a member already present opens another connection: no join, so it gets in
    let alice_again = Identity { client_id: "c-alice-2".into(), user: "alice".into(), ..frank.clone() };
    let a2 = h.room.handle_open(alice_again, None, h.now, &mut h.store).unwrap();
    while h.room.poll_action().is_some() {}
    // departures are always recorded
    for id in [a, a2, b, c, d, e] {
        h.close(id);
    }
    h.advance(1_000);
    let types = h.types();
    assert_eq!(types.len(), 8 + 5 + 1, "five lefts and the vacated, past twice the bound: {types:?}");
    assert_eq!(types.last().map(String::as_str), Some("room.vacated"));
    assert_eq!(h.room.stats(h.now, &mut h.store).unwrap().webhook.backpressure, 1);
    // once delivered, frank gets in and is reported
    while h.deliver(204, 0).is_some() {}
    h.room.handle_open(frank, None, h.now, &mut h.store).unwrap();
    assert_eq!(h.types(), ["room.occupied", "presence.joined frank"]);
}

/// A dead letter that a new message needs room for is deleted, and a dead letter expires on the
/// room's alarm after `WEBHOOK_DEAD_LETTER_SECONDS`, even in a room where nothing else happens.
#[test]
fn dead_letters_make_room_and_expire_on_the_alarm() {
    let mut config = bounded(3, 0);
    config.webhook.dead_letter_ms = 3_600_000;
    config.heartbeat_timeout_ms = 10 * 3_600_000; // alice stays without pinging
    let mut h = H::new(config);
    let a = h.connect("alice", None);
    h.room.handle_text(a, r#"{"type":"publish","id":"m1","data":1}"#, h.now, &mut h.store);
    while h.room.poll_action().is_some() {}
    assert_eq!(h.deliver(503, 0).map(|e| e.len()), Some(3));
    h.advance(61_000); // past WEBHOOK_MAX_AGE_SECONDS (60 s): the three become dead letters
    assert!(h.room.poll_webhook(h.now, &mut h.store).is_none());
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.dead_letters, stats.pending), (3, 0));
    h.room.handle_text(a, r#"{"type":"publish","id":"m2","data":2}"#, h.now, &mut h.store);
    while h.room.poll_action().is_some() {}
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.dead_letters, stats.pending, stats.expired), (2, 1, 1), "the first dead letter made room");
    assert_eq!(h.room.seq(), 2);
    let set_aside = h.now;
    h.close(a);
    while h.deliver(204, 0).is_some() {}
    // a quiet room: only the expiry is left for the alarm
    assert_eq!(h.room.poll_timeout(), Some(set_aside + 3_600_000));
    h.reload(false);
    assert_eq!(h.room.poll_timeout(), Some(set_aside + 3_600_000), "known again after a restart");
    h.now = set_aside + 3_600_000;
    h.room.handle_timeout(h.now, |_| None, &mut h.store);
    assert!(h.room.poll_webhook(h.now, &mut h.store).is_none());
    let stats = h.room.stats(h.now, &mut h.store).unwrap().webhook;
    assert_eq!((stats.dead_letters, stats.bytes), (0, 0));
    assert_eq!(h.room.poll_timeout(), None);
}
