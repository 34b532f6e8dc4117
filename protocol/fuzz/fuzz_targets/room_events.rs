//! The room state machine driven by arbitrary event sequences (opens with arbitrary identities
//! and resume points, arbitrary text frames, frames known only by their length and start,
//! closes, timers, HTTP publishes, storage failures).
//! It must never panic, and its core invariants must hold after every event: seq only grows and
//! equals the number of stored messages' highest seq (until a reset starts a new epoch), no frame
//! goes to a closed connection, and webhook deliveries (answered with arbitrary statuses) carry
//! events in row order with nothing sent twice in one batch.
#![no_main]
use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use roomcast_protocol::api::Caller;
use roomcast_protocol::compact::CompactJson;
use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::room::{Action, Identity, PublishItem, Recipients, ResumePoint, Room};
use roomcast_protocol::store::{MemoryStore, Store};
use roomcast_protocol::token::Rights;
use roomcast_protocol::webhook::{WebhookConfig, WebhookOutcome};
use std::collections::BTreeSet;

#[derive(Arbitrary, Debug)]
enum Event {
    Open { client: u8, user: u8, echo: bool, resume: Option<(bool, u16)>, publish: bool, presence: bool, expires: Option<u16> },
    Text { pick: u8, text: String },
    Publish { pick: u8, id: u8, data: u8 },
    Close { pick: u8 },
    Advance { ms: u16, pong: bool },
    Http { id: Option<u8>, count: u8 },
    FailWrites(bool),
    Kick { user: u8, ban: Option<u16> },
    Binary { pick: u8, len: u16 },
    Oversized { pick: u8, len: u32, head: String },
    Deliver { status: u16, random: u64, retry_after: Option<String> },
    Reset,
    Requeue,
}

fuzz_target!(|events: Vec<Event>| {
    let config = RoomConfig {
        history_max_messages: 8,
        presence_grace_ms: 50,
        heartbeat_timeout_ms: 300,
        rate_messages_burst: 5,
        max_strikes: 6,
        max_frame_bytes: 256,
        // Read marks on, small: a mark every 256 bytes a connection is sent, closed 8 behind.
        unread_max_bytes: 2048,
        webhook: WebhookConfig::from_vars(&|name| match name {
            "WEBHOOK_URL" => Some("https://hooks.test/".into()),
            "WEBHOOK_SECRET" => Some("whsec_AAAA".into()),
            "WEBHOOK_EVENTS" => Some("message.published,presence.joined,presence.left,room.occupied,room.vacated".into()),
            "WEBHOOK_MAX_AGE_SECONDS" => Some("1".into()),
            "WEBHOOK_BATCH_MAX" => Some("4".into()),
            // Small bounds, so that publishes and joins meet them and dead letters make room.
            "WEBHOOK_OUTBOX_MAX_EVENTS" => Some("6".into()),
            "WEBHOOK_OUTBOX_MAX_BYTES" => Some("1500".into()),
            "WEBHOOK_DEAD_LETTER_SECONDS" => Some("2".into()),
            _ => None,
        }),
        ..RoomConfig::default()
    };
    let mut store = MemoryStore::default();
    let Ok(mut room) = Room::load(config, &mut store, "e", 1_000, []) else { return };
    room.set_mark_key(b"fuzz-mark-key-16");
    if room.attach_webhooks("r", "0011223344556677", 1_000, &mut store).is_err() {
        return;
    }
    let mut resets = 0u32;
    let mut now = 1_000u64;
    let mut open: BTreeSet<u64> = BTreeSet::new();
    let mut last_seq = 0;
    let pick = |open: &BTreeSet<u64>, i: u8| open.iter().nth(i as usize % open.len().max(1)).copied();
    for event in events.into_iter().take(200) {
        match event {
            Event::Open { client, user, echo, resume, publish, presence, expires } => {
                let identity = Identity {
                    client_id: format!("c{client}"),
                    user: format!("u{}", user % 4),
                    meta: None,
                    echo,
                    rights: Rights { subscribe: true, publish, presence, input: publish && presence },
                    expires: expires.map(|e| now + u64::from(e)),
                };
                let resume =
                    resume.map(|(same, since)| ResumePoint { epoch: if same { "e".into() } else { "x".into() }, since: since.into() });
                if let Ok(id) = room.handle_open(identity, resume, now, &mut store) {
                    open.insert(id);
                }
            }
            Event::Text { pick: i, text } => {
                if let Some(c) = pick(&open, i) {
                    room.handle_text(c, &text, now, &mut store);
                }
            }
            Event::Publish { pick: i, id, data } => {
                if let Some(c) = pick(&open, i) {
                    room.handle_text(c, &format!(r#"{{"type":"publish","id":"{id}","data":{data}}}"#), now, &mut store);
                }
            }
            Event::Close { pick: i } => {
                if let Some(c) = pick(&open, i) {
                    open.remove(&c);
                    room.handle_close(c, now, &mut store);
                }
            }
            Event::Advance { ms, pong } => {
                now += u64::from(ms);
                let at = now;
                room.handle_timeout(now, |_| pong.then_some(at), &mut store);
            }
            Event::Http { id, count } => {
                let items: Vec<PublishItem> = (0..count % 4)
                    .map(|i| PublishItem { data: CompactJson::parse(&i.to_string()).unwrap(), id: id.map(|x| x.to_string()) })
                    .collect();
                let _ = room.publish(&Caller::backend(), &items, now, &mut store);
            }
            Event::FailWrites(fail) => store.fail_writes = fail,
            Event::Kick { user, ban } => {
                let _ = room.kick(&format!("u{}", user % 4), ban.map(|b| now + u64::from(b)), None, now, &mut store);
            }
            Event::Binary { pick: i, len } => {
                if let Some(c) = pick(&open, i) {
                    room.handle_binary(c, len.into(), now, &mut store);
                }
            }
            Event::Oversized { pick: i, len, head } => {
                if let Some(c) = pick(&open, i) {
                    room.handle_oversized(c, len as usize, &head, now, &mut store);
                }
            }
            Event::Deliver { status, random, retry_after } => {
                if let Some(request) = room.poll_webhook(now, &mut store) {
                    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
                    let rows: Vec<u64> = body["events"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["id"].as_str().unwrap().rsplit('_').next().unwrap().parse().unwrap())
                        .collect();
                    assert!(rows.windows(2).all(|w| w[0] < w[1]), "row order, no repeat: {rows:?}");
                    assert_eq!(rows.len(), request.events);
                    room.handle_webhook_result(request.attempt, WebhookOutcome::Status(status, retry_after), now, random, &mut store);
                }
            }
            Event::Reset => {
                resets += 1;
                if room.reset(&format!("e{resets}"), now, &mut store).is_ok() {
                    last_seq = 0;
                }
            }
            Event::Requeue => {
                let _ = room.requeue_webhooks(now, &mut store);
            }
        }
        while let Some(action) = room.poll_action() {
            match action {
                Action::Send { to: Recipients::One(c), .. } => assert!(open.contains(&c)),
                Action::Send { to: Recipients::List(list), .. } => assert!(list.iter().all(|c| open.contains(c))),
                Action::Send { .. } => {}
                Action::Close { conn, .. } => {
                    open.remove(&conn);
                }
            }
        }
        assert!(room.seq() >= last_seq);
        last_seq = room.seq();
        let newest = store.after(room.seq().saturating_sub(1), 10, usize::MAX).unwrap();
        if room.seq() > 0 && !newest.is_empty() {
            assert_eq!(newest.last().unwrap().seq, room.seq());
        }
        assert_eq!(room.connection_count(), open.len());
        // The outbox's sizes, kept in memory for its bounds, are what the store holds.
        if let (Some(outbox), Ok(c)) = (room.outbox(), store.outbox_counts()) {
            assert_eq!(outbox.size(), (c.pending_size(), c.dead_size()));
        }
    }
});
