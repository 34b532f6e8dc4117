//! The HTTP API as the room gets it: one canonical request that the edge builds from what it
//! parsed and checked ([`RoomRequest::build`]), and the room object reads with one serde call.
//! Every rule about a query or a body has one owner, here in `api`; a request the edge would
//! refuse never wakes a room, and the room never parses the client's text again.

use super::history::{HistoryQuery, HistoryRead};
use super::identity::Caller;
use super::kick::KickRequest;
use super::publish::PublishBatch;
use super::refusal::Refusal;
use super::route::{Access, Endpoint};
use crate::config::RoomConfig;
use serde::{Deserialize, Serialize};

/// The room object's path for HTTP API calls (the upgrade goes to `Endpoint::Connect.room_path()`).
pub const CALL_PATH: &str = "/call";

/// What the caller asks of the room, checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Externally tagged: an internally tagged enum buffers its content, which RawValue (the
// messages' `data`) cannot come through.
#[serde(rename_all = "camelCase")]
pub enum RoomCall {
    Publish(PublishBatch),
    History(HistoryRead),
    Presence,
    Stats,
    Kick(KickRequest),
    DeleteHistory,
    RequeueWebhooks,
}

/// A call with who makes it (the backend for the API key, the token's own user for a token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRequest {
    pub caller: Caller,
    pub call: RoomCall,
}

impl RoomCall {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            RoomCall::Publish(_) => Endpoint::Publish,
            RoomCall::History(_) => Endpoint::History,
            RoomCall::Presence => Endpoint::Presence,
            RoomCall::Stats => Endpoint::Stats,
            RoomCall::Kick(_) => Endpoint::Kick,
            RoomCall::DeleteHistory => Endpoint::DeleteHistory,
            RoomCall::RequeueWebhooks => Endpoint::RequeueWebhooks,
        }
    }
}

impl RoomRequest {
    /// The edge's one reading of an authorized API call: its query or body, parsed and checked
    /// against the room's limits. `body` is read only for the endpoints that take one.
    pub fn build(
        endpoint: Endpoint,
        raw_query: &str,
        body: Option<&str>,
        caller: Caller,
        config: &RoomConfig,
    ) -> Result<RoomRequest, Refusal> {
        let body = body.unwrap_or("");
        let call = match endpoint {
            Endpoint::Publish => RoomCall::Publish(PublishBatch::parse(body, config)?),
            Endpoint::History => RoomCall::History(HistoryQuery::parse(raw_query)?.read()?),
            Endpoint::Presence => RoomCall::Presence,
            Endpoint::Stats => RoomCall::Stats,
            Endpoint::Kick => RoomCall::Kick(KickRequest::parse(body)?),
            Endpoint::DeleteHistory => RoomCall::DeleteHistory,
            Endpoint::RequeueWebhooks => RoomCall::RequeueWebhooks,
            Endpoint::Connect => return Err(Refusal::bad_request("a WebSocket upgrade is not an API call")),
        };
        Ok(RoomRequest { caller, call })
    }

    /// Whether the caller may make this call: the same rule as the edge's ([`Endpoint::access`]),
    /// checked again by the room for the calls only the backend may make.
    pub fn permitted(&self) -> bool {
        match self.call.endpoint().access() {
            Access::Key => self.caller == Caller::backend(),
            Access::KeyOrRight(_) => true,
        }
    }

    pub fn to_json(&self) -> String {
        // Only strings, numbers and already valid JSON: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Option<RoomRequest> {
        serde_json::from_str(text).ok()
    }
}

/// The room's answer to an API call: a status and a JSON body, and for a rate limit how long to
/// wait. The object turns it into a response as it is; it writes no status of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// `Retry-After`, in whole seconds.
    pub retry_after: Option<u64>,
}

impl Answer {
    /// 200 with a JSON body.
    pub fn ok(body: String) -> Answer {
        Answer { status: 200, body, retry_after: None }
    }

    pub fn refused(r: &Refusal) -> Answer {
        Answer { status: r.status(), body: r.body(), retry_after: r.retry_after_seconds() }
    }
}

#[cfg(test)]
mod tests {
    use super::super::history::Page;
    use super::super::refusal::documented;
    use super::*;

    fn build(endpoint: Endpoint, query: &str, body: &str) -> Result<RoomRequest, Refusal> {
        RoomRequest::build(endpoint, query, Some(body), Caller::user("alice"), &RoomConfig::default())
    }

    #[test]
    fn every_call_travels_to_the_room_unchanged() {
        let calls = [
            build(Endpoint::Publish, "", r#"[{"data":{"x":1},"id":"a"},{"data":null}]"#),
            build(Endpoint::History, "before=7&limit=3", ""),
            build(Endpoint::Presence, "", ""),
            build(Endpoint::Stats, "", ""),
            build(Endpoint::Kick, "", r#"{"user":"bob","banSeconds":60,"reason":"spam"}"#),
            build(Endpoint::DeleteHistory, "", ""),
            build(Endpoint::RequeueWebhooks, "", ""),
        ];
        for call in calls {
            let call = call.unwrap();
            assert_eq!(RoomRequest::from_json(&call.to_json()).as_ref(), Some(&call), "{}", call.to_json());
        }
        let history = build(Endpoint::History, "before=7&limit=3", "").unwrap();
        assert_eq!(history.call, RoomCall::History(HistoryRead { page: Page::Before(7), limit: 3 }));
    }

    /// Each disagreement the edge and the room had: the edge now refuses what the room refused
    /// after being woken, and the room keeps what the edge checked.
    #[test]
    fn the_edge_refuses_what_the_room_would() {
        for (endpoint, query, body) in [
            (Endpoint::History, "since=1&before=2", ""),
            (Endpoint::Publish, "", "{"),
            (Endpoint::Publish, "", "[]"),
            (Endpoint::Publish, "", r#"{"data":1,"id":""}"#),
            (Endpoint::Kick, "", r#"{"user":"bob","extra":1}"#),
        ] {
            let r = build(endpoint, query, body).unwrap_err();
            assert_eq!(r.status(), 400, "{endpoint:?} {query} {body}");
            assert!(documented::is_documented(&r));
        }
        let kick = build(Endpoint::Kick, "", r#"{"user":"bob","reason":"spam"}"#).unwrap();
        assert!(matches!(kick.call, RoomCall::Kick(KickRequest { reason: Some(ref r), .. }) if r == "spam"));
    }

    #[test]
    fn backend_only_calls_need_the_backend() {
        for endpoint in [Endpoint::Stats, Endpoint::Kick, Endpoint::DeleteHistory, Endpoint::RequeueWebhooks] {
            let body = if endpoint == Endpoint::Kick { r#"{"user":"bob"}"# } else { "" };
            let mut request = build(endpoint, "", body).unwrap();
            assert!(!request.permitted(), "{endpoint:?}");
            request.caller = Caller::backend();
            assert!(request.permitted(), "{endpoint:?}");
        }
        for endpoint in [Endpoint::History, Endpoint::Presence] {
            assert!(build(endpoint, "", "").unwrap().permitted());
        }
    }
}
