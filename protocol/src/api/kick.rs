//! The backend's removal call, `POST /rooms/:room/kick` with
//! `{"user": "alice", "banSeconds"?: n, "reason"?: "…"}`: checked at the edge, forwarded to the
//! room as the JSON the edge writes itself (unknown fields and bad values never reach the room).

use super::refusal::{Refusal, CLOSE_REASON_MAX};
use crate::name;
use serde::{Deserialize, Serialize};

/// The longest ban: 30 days.
pub const BAN_SECONDS_MAX: u64 = 30 * 24 * 3600;

/// A removal request, valid by construction (only [`KickRequest::parse`] makes one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KickRequest {
    /// The user whose connections close (4411): a token's `sub`, or `anon:<name>`.
    pub user: String,
    /// Refuse the user's new connections for this long (0 or absent: no ban).
    #[serde(rename = "banSeconds", default, skip_serializing_if = "Option::is_none")]
    pub ban_seconds: Option<u64>,
    /// The kicked connections' close reason (else "removed from the room"): at most a close
    /// reason's 123 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl KickRequest {
    pub fn parse(body: &str) -> Result<KickRequest, Refusal> {
        let usage = "body must be {\"user\": string, \"banSeconds\"?: whole number of seconds (at most 30 days), \"reason\"?: string of at most 123 bytes}";
        // serde would also read a struct from an array, positionally (`["alice", 60]`): only an
        // object is a removal request.
        if !body.trim_start().starts_with('{') {
            return Err(Refusal::bad_request(usage));
        }
        let request: KickRequest = serde_json::from_str(body).map_err(|e| Refusal::bad_request(format!("{usage}: {e}")))?;
        name::validate_user(&request.user).map_err(|e| Refusal::bad_request(e.to_string()))?;
        if request.ban_seconds.is_some_and(|s| s > BAN_SECONDS_MAX) {
            return Err(Refusal::bad_request(format!("banSeconds is at most {BAN_SECONDS_MAX} (30 days)")));
        }
        if request.reason.as_ref().is_some_and(|r| r.len() > CLOSE_REASON_MAX) {
            return Err(Refusal::bad_request(format!("reason is at most {CLOSE_REASON_MAX} bytes")));
        }
        Ok(request)
    }

    /// The body forwarded to the room.
    pub fn to_json(&self) -> String {
        // Serializing a string, a number and a string cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::refusal::documented;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn valid_bodies() {
        let k = KickRequest::parse(r#"{"user":"alice"}"#).unwrap();
        assert_eq!(k.to_json(), r#"{"user":"alice"}"#);
        let k = KickRequest::parse("{ \"user\" : \"anon:bob\",\n \"banSeconds\": 2592000, \"reason\": \"spam\" }").unwrap();
        assert_eq!(k.to_json(), r#"{"user":"anon:bob","banSeconds":2592000,"reason":"spam"}"#);
        assert_eq!(KickRequest::parse(r#"{"user":"a","banSeconds":null}"#).unwrap().ban_seconds, None);
        assert!(KickRequest::parse(&format!(r#"{{"user":"a","reason":"{}"}}"#, "é".repeat(61))).is_ok(), "122 bytes");
    }

    #[test]
    fn invalid_bodies_are_400() {
        for body in [
            "",
            "null",
            "[]",
            r#"["alice"]"#,
            r#"["alice", 60, "spam"]"#,
            r#"{"user":5}"#,
            r#"{}"#,
            r#"{"user":""}"#,
            r#"{"user":"has space"}"#,
            r#"{"user":"a","banSeconds":-1}"#,
            r#"{"user":"a","banSeconds":1.5}"#,
            r#"{"user":"a","banSeconds":"60"}"#,
            r#"{"user":"a","banSeconds":2592001}"#,
            r#"{"user":"a","banSeconds":1e3}"#,
            r#"{"user":"a","reason":5}"#,
            r#"{"user":"a","extra":true}"#,
            r#"{"user":"a"} {}"#,
        ] {
            let r = KickRequest::parse(body).unwrap_err();
            assert_eq!((r.status(), r.close_code()), (400, 4400), "{body}");
        }
        let long = format!(r#"{{"user":"a","reason":"{}"}}"#, "é".repeat(62));
        assert_eq!(KickRequest::parse(&long).unwrap_err().status(), 400, "124 bytes");
    }

    proptest! {
        #[test]
        fn arbitrary_bodies(body in "[{}\\[\\]\":,a-zA-Z0-9 .-]{0,60}") {
            match KickRequest::parse(&body) {
                Ok(k) => {
                    prop_assert!(name::validate_user(&k.user).is_ok());
                    prop_assert!(k.ban_seconds.is_none_or(|s| s <= BAN_SECONDS_MAX));
                    prop_assert_eq!(KickRequest::parse(&k.to_json()).unwrap(), k);
                }
                Err(r) => prop_assert!(documented::is_documented(&r)),
            }
        }

        #[test]
        fn bans_up_to_30_days(n in any::<u64>()) {
            let ok = KickRequest::parse(&format!(r#"{{"user":"u","banSeconds":{n}}}"#)).is_ok();
            prop_assert_eq!(ok, n <= BAN_SECONDS_MAX);
        }
    }
}
