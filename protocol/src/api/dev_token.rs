//! `GET /dev/token?user=alice&room=chat:*&rights=subscribe,publish,presence&ttl=3600[&meta=JSON]`:
//! a token for local development (the edge serves it only when `ROOMCAST_DEV_TOKENS` is "1", and
//! only to the origins [`super::origin::check_dev_token_origin`] allows).

use super::query;
use super::refusal::Refusal;
use crate::compact::CompactJson;
use crate::name;
use crate::token::{self, Claims, Right, META_MAX};
use serde::Serialize;

/// The default lifetime, and the longest one given.
pub const TTL_DEFAULT_SECS: u64 = 3600;
pub const TTL_MAX_SECS: u64 = 24 * 3600;

/// The answer's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DevToken {
    pub token: String,
    pub user: String,
    /// The token's `exp`, in seconds since the epoch.
    pub expires: u64,
}

impl DevToken {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Mints the token the query asks for, signed with `secret`, at `now_ms`.
pub fn dev_token(raw_query: &str, secret: &str, now_ms: u64) -> Result<DevToken, Refusal> {
    let (mut user, mut room, mut rights, mut ttl, mut meta) = (None, None, None, TTL_DEFAULT_SECS, None);
    for (k, v) in query::pairs(raw_query) {
        match k.as_ref() {
            "user" => user = Some(v.into_owned()),
            "room" => room = Some(v.into_owned()),
            "rights" => rights = Some(v.into_owned()),
            // Lenient, as it always was: an unreadable ttl is the default, a long one the maximum.
            "ttl" => ttl = v.parse().unwrap_or(TTL_DEFAULT_SECS).min(TTL_MAX_SECS),
            "meta" => meta = Some(v.into_owned()),
            _ => {}
        }
    }
    let (Some(user), Some(room)) = (user, room) else {
        return Err(Refusal::bad_request("user and room are required"));
    };
    name::validate_user(&user).map_err(|e| Refusal::bad_request(e.to_string()))?;
    if name::is_reserved_user(&user) {
        return Err(Refusal::bad_request("user ids starting with ':' or 'anon:' are reserved"));
    }
    token::validate_pattern(&room).map_err(|e| Refusal::bad_request(format!("room pattern: {e}")))?;
    let mut granted = Vec::new();
    for r in rights.as_deref().unwrap_or("subscribe,publish,presence").split(',') {
        granted.push(match r.trim() {
            "subscribe" => Right::Subscribe,
            "publish" => Right::Publish,
            "presence" => Right::Presence,
            "input" => Right::Input,
            _ => return Err(Refusal::bad_request("rights are subscribe, publish, presence, input")),
        });
    }
    let meta = match meta {
        None => None,
        Some(text) => match CompactJson::parse_owned(text) {
            Ok(m) if m.is_object() && m.len() <= META_MAX => Some(m),
            Err(e) if e.is_rule() => return Err(Refusal::bad_request(format!("meta: {e}"))),
            _ => return Err(Refusal::bad_request(format!("meta must be a JSON object of at most {META_MAX} bytes"))),
        },
    };
    if secret.is_empty() {
        return Err(Refusal::unauthorized("ROOMCAST_SECRET is not configured"));
    }
    let now = now_ms / 1000;
    let claims = Claims { sub: user.clone(), exp: now + ttl, nbf: None, iat: Some(now), rooms: [(room, granted)].into(), meta };
    let token = token::mint(&claims, secret.as_bytes()).map_err(|e| Refusal::unauthorized(e.to_string()))?;
    Ok(DevToken { token, user, expires: claims.exp })
}

#[cfg(test)]
mod tests {
    use super::super::refusal::documented;
    use super::*;
    use proptest::prelude::*;

    const NOW_MS: u64 = 1_800_000_000_000;

    #[test]
    fn mints_a_token_the_edge_accepts() {
        let t = dev_token("user=dev&room=chat:*&rights=subscribe&meta=%7B%22n%22%3A%0A1%7D&ttl=99999999", "s", NOW_MS).unwrap();
        assert_eq!((t.user.as_str(), t.expires), ("dev", NOW_MS / 1000 + TTL_MAX_SECS));
        let claims = token::verify(&t.token, b"s", NOW_MS).unwrap();
        assert!(claims.rights_for("chat:x").subscribe);
        assert!(!claims.rights_for("chat:x").publish);
        assert_eq!(claims.meta.unwrap().get(), r#"{"n":1}"#);
        let body: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
        assert_eq!(body["user"], "dev");
        assert!(dev_token("user=dev&room=*", "s", NOW_MS).is_ok());
    }

    #[test]
    fn refusals() {
        for q in [
            "room=x",
            "user=dev",
            "user=:api&room=x",
            "user=anon:x&room=x",
            "user=a b&room=x",
            "user=a&room=x&rights=admin",
            "user=a&room=x&meta=[1]",
            "user=a&room=x&meta=%7B",
            "user=a&room=bad/room",
            "user=a&room=",
            "user=a&room=a**",
        ] {
            assert_eq!(dev_token(q, "s", NOW_MS).unwrap_err().status(), 400, "{q}");
        }
        assert_eq!(dev_token("user=a&room=x", "", NOW_MS).unwrap_err().status(), 401);
        // issue #22: meta within the JSON rules (compact.rs), the rule named
        let r = dev_token("user=a&room=x&meta=%7B%22a%22%3A%22%5Cud800%22%7D", "s", NOW_MS).unwrap_err();
        assert_eq!(
            (r.status(), &*r.message),
            (400, "meta: JSON string with a lone surrogate escape (\\uD800-\\uDFFF outside a high-low pair)")
        );
    }

    proptest! {
        #[test]
        fn arbitrary_queries(q in "[a-z=&%0-9:*,+-]{0,50}") {
            match dev_token(&q, "s", NOW_MS) {
                Ok(t) => {
                    let claims = token::verify(&t.token, b"s", NOW_MS).unwrap();
                    prop_assert!(!name::is_reserved_user(&claims.sub));
                }
                Err(r) => prop_assert!(documented::is_documented(&r)),
            }
        }
    }
}
