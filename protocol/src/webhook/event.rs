//! Events as JSON, built by serde only: room names, users, meta and data are attacker-controlled,
//! and go in as escaped strings or as [`CompactJson`] (one JSON value, no raw control byte), so
//! no value can add a field, end an event or put a line break into a body.
//!
//! An event is stored without its `id` (the outbox row number is only known once it is stored):
//! `{"type":…,"room":…,"ts":…,…}`. [`with_id`] puts `{"id":"evt_<key>_<n>",` in front of the
//! rest when it is sent, so every event reads `{"id","type","room","ts",…}` in that order.

use crate::compact::CompactJson;
use crate::config::webhook::EventKind;
use serde::Serialize;

#[derive(Serialize)]
struct MessageEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    ts: u64,
    epoch: &'a str,
    seq: u64,
    from: &'a str,
    user: &'a str,
    data: &'a CompactJson,
    #[serde(rename = "messageId", skip_serializing_if = "Option::is_none")]
    message_id: Option<&'a str>,
}

#[derive(Serialize)]
struct PresenceEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    ts: u64,
    user: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<&'a CompactJson>,
}

/// A user's event (sessions): no room.
#[derive(Serialize)]
struct UserEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    ts: u64,
    user: &'a str,
}

#[derive(Serialize)]
struct RoomEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    room: &'a str,
    ts: u64,
}

/// What happened, with what the event reports.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Message {
        epoch: &'a str,
        seq: u64,
        from: &'a str,
        user: &'a str,
        data: &'a CompactJson,
        message_id: Option<&'a str>,
    },
    Joined {
        user: &'a str,
        meta: Option<&'a CompactJson>,
    },
    Left {
        user: &'a str,
        meta: Option<&'a CompactJson>,
    },
    Occupied,
    Vacated,
    /// A user's first session socket connected.
    UserOnline {
        user: &'a str,
    },
    /// A user's last session socket went, and the grace period passed.
    UserOffline {
        user: &'a str,
    },
}

impl Event<'_> {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Message { .. } => EventKind::MessagePublished,
            Event::Joined { .. } => EventKind::PresenceJoined,
            Event::Left { .. } => EventKind::PresenceLeft,
            Event::Occupied => EventKind::RoomOccupied,
            Event::Vacated => EventKind::RoomVacated,
            Event::UserOnline { .. } => EventKind::UserOnline,
            Event::UserOffline { .. } => EventKind::UserOffline,
        }
    }

    /// The event as stored: one compact JSON object without its `id`.
    pub fn encode(&self, room: &str, ts: u64) -> String {
        let kind = self.kind().name();
        let json = match *self {
            Event::Message { epoch, seq, from, user, data, message_id } => {
                serde_json::to_string(&MessageEvent { kind, room, ts, epoch, seq, from, user, data, message_id })
            }
            Event::Joined { user, meta } | Event::Left { user, meta } => {
                serde_json::to_string(&PresenceEvent { kind, room, ts, user, meta })
            }
            Event::Occupied | Event::Vacated => serde_json::to_string(&RoomEvent { kind, room, ts }),
            // A session's outbox is named for the session; its events are the user's, not a room's.
            Event::UserOnline { user } | Event::UserOffline { user } => serde_json::to_string(&UserEvent { kind, ts, user }),
        };
        // Strings, numbers and compact JSON always serialize.
        json.unwrap_or_default()
    }
}

/// An event's id: `evt_` + the room's outbox key + `_` + its outbox row number.
pub fn event_id(key: &str, n: u64) -> String {
    format!("evt_{key}_{n}")
}

/// Appends the stored event `body` to `out` with its `id` in front.
pub fn with_id(key: &str, n: u64, body: &str, out: &mut String) {
    // The id is escaped like any string, so even a damaged key could not break the object.
    let id = serde_json::to_string(&event_id(key, n)).unwrap_or_else(|_| "\"\"".into());
    out.push_str("{\"id\":");
    out.push_str(&id);
    match body.strip_prefix('{') {
        Some(rest) if rest.starts_with('"') => {
            out.push(',');
            out.push_str(rest);
        }
        // Not an event this module wrote; the receiver still gets a well-formed object.
        _ => out.push('}'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn shapes_and_field_order() {
        let data = CompactJson::parse(r#"{ "text" : "hi" }"#).unwrap();
        let m = Event::Message { epoch: "e1", seq: 7, from: "c1", user: "alice", data: &data, message_id: Some("m1") };
        let mut out = String::new();
        with_id("00112233aabbccdd", 42, &m.encode("chat:1", 1000), &mut out);
        assert_eq!(
            out,
            r#"{"id":"evt_00112233aabbccdd_42","type":"message.published","room":"chat:1","ts":1000,"epoch":"e1","seq":7,"from":"c1","user":"alice","data":{"text":"hi"},"messageId":"m1"}"#
        );
        let m = Event::Message { epoch: "e1", seq: 8, from: ":api", user: ":api", data: &data, message_id: None };
        assert!(!m.encode("r", 1).contains("messageId"));
        let meta = CompactJson::parse(r#"{"device":"phone"}"#).unwrap();
        assert_eq!(
            Event::Joined { user: "bob", meta: Some(&meta) }.encode("r", 5),
            r#"{"type":"presence.joined","room":"r","ts":5,"user":"bob","meta":{"device":"phone"}}"#
        );
        assert_eq!(Event::Left { user: "bob", meta: None }.encode("r", 6), r#"{"type":"presence.left","room":"r","ts":6,"user":"bob"}"#);
        assert_eq!(Event::Occupied.encode("r", 1), r#"{"type":"room.occupied","room":"r","ts":1}"#);
        assert_eq!(Event::Vacated.encode("r", 2), r#"{"type":"room.vacated","room":"r","ts":2}"#);
    }

    #[test]
    fn a_damaged_row_still_gives_an_object() {
        let mut out = String::new();
        with_id("k\"", 1, "garbage", &mut out);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], "evt_k\"_1");
    }

    proptest! {
        /// Whatever the user, room, meta and data hold, the event is one line of JSON whose fields
        /// are exactly the ones the encoder wrote, with the values given.
        #[test]
        fn attacker_values_cannot_forge_fields(
            room in ".*", user in ".*", from in ".*", id in proptest::option::of(".*"),
            data in crate::compact::tests::json_text(), n in any::<u64>(), key in ".*",
        ) {
            let data = CompactJson::parse(&data).unwrap();
            let m = Event::Message { epoch: "e", seq: 1, from: &from, user: &user, data: &data, message_id: id.as_deref() };
            let mut out = String::new();
            with_id(&key, n, &m.encode(&room, 9), &mut out);
            prop_assert!(!out.bytes().any(|b| b < 0x20), "one line");
            let v: Value = serde_json::from_str(&out).unwrap();
            let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
            let mut expected = vec!["id", "type", "room", "ts", "epoch", "seq", "from", "user", "data"];
            if id.is_some() { expected.push("messageId"); }
            let mut sorted = expected.clone();
            sorted.sort_unstable();
            let mut got = keys.clone();
            got.sort_unstable();
            prop_assert_eq!(got, sorted);
            prop_assert_eq!(v["user"].as_str(), Some(user.as_str()));
            prop_assert_eq!(v["room"].as_str(), Some(room.as_str()));
            prop_assert_eq!(v["id"].as_str().map(str::to_owned), Some(event_id(&key, n)));
            let expected_data: Value = serde_json::from_str(data.get()).unwrap();
            prop_assert_eq!(&v["data"], &expected_data);
        }
    }
}
