//! Admission: who a WebSocket upgrade becomes in the room ([`ConnectInfo`]), and who an HTTP API
//! call acts as ([`Caller`]), established from the request alone, before the room is touched.

use super::identity::{Caller, ConnectInfo, SessionConnect};
use super::query;
use super::refusal::Refusal;
use super::route::Access;
use crate::compact::CompactJson;
use crate::name::{self, ANON_PREFIX};
use crate::token::{self, Claims, Rights, META_MAX};
use crate::SUBPROTOCOL;

/// What the edge reads from its configuration to authorize anyone.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthConfig<'a> {
    /// `ROOMCAST_SECRET`; empty means not configured.
    pub secret: &'a str,
    /// `ROOMCAST_SECRET_PREVIOUS`: during a rotation, tokens signed with it are accepted too.
    /// Empty means none.
    pub previous_secret: &'a str,
    /// `ROOMCAST_API_KEY`; empty means no API key works.
    pub api_key: &'a str,
    /// `ROOMCAST_API_KEY_PREVIOUS`: during a rotation, it works as the API key too. Empty means none.
    pub previous_api_key: &'a str,
    /// `ANONYMOUS_ROOMS`: comma-separated room patterns that admit connections without a token.
    pub anonymous_rooms: &'a str,
}

/// Longest `epoch` in a resume point, in bytes.
pub const EPOCH_MAX: usize = 64;

/// A WebSocket upgrade, as the edge read it from the platform.
#[derive(Debug, Clone, Copy)]
pub struct Upgrade<'a> {
    /// The room, already routed (its name valid).
    pub room: &'a str,
    /// The raw query string, without `?`.
    pub query: &'a str,
    /// The `Sec-WebSocket-Protocol` header (empty if absent).
    pub protocols: &'a str,
}

/// Whether the client offered `roomcast.v1`, which the response must then select.
pub fn offers_subprotocol(protocols: &str) -> bool {
    protocols.split(',').any(|p| p.trim() == SUBPROTOCOL)
}

/// The query of an upgrade, parsed. Later pairs win over earlier ones.
#[derive(Debug, Default, PartialEq, Eq)]
struct ConnectQuery {
    cid: Option<String>,
    user: Option<String>,
    meta: Option<String>,
    since: Option<u64>,
    epoch: Option<String>,
    echo: bool,
    token: Option<String>,
    rewind: Option<u64>,
}

impl ConnectQuery {
    fn parse(raw: &str) -> Result<ConnectQuery, Refusal> {
        let mut q = ConnectQuery::default();
        for (key, value) in query::pairs(raw) {
            match key.as_ref() {
                "cid" => q.cid = Some(value.into_owned()),
                "user" => q.user = Some(value.into_owned()),
                "meta" => q.meta = Some(value.into_owned()),
                "since" => q.since = Some(query::whole("since", &value)?),
                "epoch" => q.epoch = Some(value.into_owned()),
                "echo" => {
                    q.echo = match value.as_ref() {
                        "1" | "true" => true,
                        "0" | "false" => false,
                        _ => return Err(Refusal::bad_request("echo must be 1, true, 0 or false")),
                    }
                }
                "token" => q.token = Some(value.into_owned()),
                "rewind" => q.rewind = Some(query::whole("rewind", &value)?),
                _ => {}
            }
        }
        Ok(q)
    }
}

/// Everything an upgrade must pass after its origin and rate checks: the query, the token (from
/// the subprotocol list, else `?token=`) and its rights for the room, or the room being
/// anonymous. `now_ms` checks the token's times; `fresh_cid` is called for a client that brought
/// no client id (the edge draws it from the runtime's CSPRNG).
pub fn admit(
    upgrade: &Upgrade<'_>,
    config: &AuthConfig<'_>,
    now_ms: u64,
    fresh_cid: impl FnOnce() -> String,
) -> Result<ConnectInfo, Refusal> {
    let q = ConnectQuery::parse(upgrade.query)?;
    let cid = match q.cid {
        Some(cid) => {
            name::validate_client_id(&cid).map_err(|e| Refusal::bad_request(e.to_string()))?;
            cid
        }
        None => fresh_cid(),
    };
    let resume = match (q.epoch, q.since) {
        (Some(epoch), Some(since)) if !epoch.is_empty() && epoch.len() <= EPOCH_MAX => Some((epoch, since)),
        (None, None) => None,
        _ => return Err(Refusal::bad_request("resume needs both since and epoch (epoch at most 64 bytes)")),
    };
    let bearer = upgrade.protocols.split(',').map(str::trim).find_map(|p| p.strip_prefix("bearer."));
    let subprotocol = offers_subprotocol(upgrade.protocols);

    let (user, meta, rights, exp) = match bearer.or(q.token.as_deref()) {
        Some(t) => {
            let claims = verify(config, t, now_ms)?;
            let rights = claims.rights_for(upgrade.room);
            if !rights.subscribe {
                return Err(Refusal::forbidden("the token does not grant this room"));
            }
            let exp = claims.expires_ms();
            (claims.sub, claims.meta, rights, Some(exp))
        }
        None => {
            // Anonymous users are never listed in a user-limited room.
            if !token::any_pattern_matches(config.anonymous_rooms, upgrade.room) || name::limited_to(upgrade.room).is_some() {
                return Err(Refusal::unauthorized("a token is required for this room"));
            }
            // Anonymous rooms: the user id is chosen freely but always carries the anon: prefix.
            let name = q.user.unwrap_or_else(|| cid.clone());
            name::validate_client_id(&name).map_err(|e| Refusal::bad_request(format!("user: {e}")))?;
            (format!("{ANON_PREFIX}{name}"), anonymous_meta(q.meta)?, Rights::ALL, None)
        }
    };
    Ok(ConnectInfo { cid, user, meta, echo: q.echo, resume, rights, subprotocol, exp, rewind: q.rewind, address: None })
}

/// A session upgrade (`GET /session/ws`): a token is required (a session is a user's; anonymous
/// users have none), from the subprotocol list or `?token=`; `cid` as for a room. Rights are not
/// checked here: each join is checked against the token's patterns.
pub fn admit_session(
    query: &str,
    protocols: &str,
    config: &AuthConfig<'_>,
    now_ms: u64,
    fresh_cid: impl FnOnce() -> String,
) -> Result<SessionConnect, Refusal> {
    let q = ConnectQuery::parse(query)?;
    let cid = match q.cid {
        Some(cid) => {
            name::validate_client_id(&cid).map_err(|e| Refusal::bad_request(e.to_string()))?;
            cid
        }
        None => fresh_cid(),
    };
    let bearer = protocols.split(',').map(str::trim).find_map(|p| p.strip_prefix("bearer."));
    let Some(token) = bearer.or(q.token.as_deref()) else {
        return Err(Refusal::unauthorized("a session needs a token"));
    };
    let claims = verify(config, token, now_ms)?;
    Ok(SessionConnect { cid, claims, subprotocol: offers_subprotocol(protocols) })
}

/// An anonymous connection's `meta` query value: a JSON object, compacted (the raw text may hold
/// line feeds between tokens, which must never reach a frame or a header).
fn anonymous_meta(meta: Option<String>) -> Result<Option<CompactJson>, Refusal> {
    let Some(text) = meta else { return Ok(None) };
    if text.len() > META_MAX {
        return Err(Refusal::bad_request(format!("meta is longer than {META_MAX} bytes")));
    }
    match CompactJson::parse_owned(text) {
        Ok(meta) if meta.is_object() => Ok(Some(meta)),
        Err(e) if e.is_rule() => Err(Refusal::bad_request(format!("meta: {e}"))),
        _ => Err(Refusal::bad_request("meta must be a JSON object")),
    }
}

/// Verifies a token signed with the secret or, during a rotation, the previous one; every failure
/// is a 401 with the reason.
pub fn verify(config: &AuthConfig<'_>, token: &str, now_ms: u64) -> Result<Claims, Refusal> {
    if config.secret.is_empty() {
        // Nobody can be admitted with a token until the operator sets the secret (the previous
        // one alone does not count: it is only ever the tail of a rotation).
        return Err(Refusal::unauthorized("ROOMCAST_SECRET is not configured"));
    }
    let keys = [config.secret.as_bytes(), config.previous_secret.as_bytes()];
    token::verify_any(token, &keys, now_ms).map_err(|e| Refusal::unauthorized(e.to_string()))
}

/// Who an HTTP API call acts as, from its `Authorization` header: the backend for the API key,
/// the token's user for a token with the right `access` asks for in this room.
pub fn authorize_api(
    authorization: Option<&str>,
    config: &AuthConfig<'_>,
    room: &str,
    access: Access,
    now_ms: u64,
) -> Result<Caller, Refusal> {
    let Some(credential) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
        return Err(Refusal::unauthorized("missing Authorization: Bearer <API key or token>"));
    };
    if token::secrets_match_any(credential.as_bytes(), &[config.api_key.as_bytes(), config.previous_api_key.as_bytes()]) {
        return Ok(Caller::backend());
    }
    if credential.matches('.').count() != 2 {
        return Err(Refusal::unauthorized("wrong API key"));
    }
    let claims = verify(config, credential, now_ms)?;
    // A valid token is who it says, but this endpoint is the backend's alone: forbidden, not
    // unauthorized (a new token would not help).
    let Access::KeyOrRight(right) = access else {
        return Err(Refusal::forbidden("this endpoint needs the API key"));
    };
    if claims.rights_for(room).has(right) {
        Ok(Caller::user(&claims.sub))
    } else {
        Err(Refusal::forbidden("the token lacks the right for this room"))
    }
}

#[cfg(test)]
mod tests {
    use super::super::refusal::documented;
    use super::*;
    use crate::api::API_ORIGIN;
    use crate::token::{mint, Right};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const SECRET: &str = "edge-secret";
    const KEY: &str = "dev-api-key";
    const NOW_MS: u64 = 1_800_000_000_000;
    const CONFIG: AuthConfig<'static> =
        AuthConfig { secret: SECRET, previous_secret: "", api_key: KEY, previous_api_key: "", anonymous_rooms: "public:*" };

    fn token_for(sub: &str, rooms: &[(&str, &[Right])]) -> String {
        let claims = Claims {
            sub: sub.into(),
            exp: NOW_MS / 1000 + 600,
            nbf: None,
            iat: None,
            rooms: rooms.iter().map(|(p, r)| (p.to_string(), r.to_vec())).collect::<BTreeMap<_, _>>(),
            meta: None,
        };
        mint(&claims, SECRET.as_bytes()).unwrap()
    }

    /// Signs any payload text, as an attacker holding the secret's output would not be able to,
    /// but as a careless backend might (whitespace, reserved subs).
    fn sign_raw(payload: &str) -> String {
        let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(payload);
        let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
        m.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
    }

    #[test]
    fn a_session_needs_a_valid_token_and_checks_no_room() {
        let session = |query: &str, protocols: &str| admit_session(query, protocols, &CONFIG, NOW_MS, || "fresh".into());
        let token = token_for("alice", &[("chat:*", &[Right::Subscribe])]);
        let s = session(&format!("token={token}&cid=tab1"), "").unwrap();
        assert_eq!((s.cid.as_str(), s.claims.sub.as_str(), s.subprotocol), ("tab1", "alice", false));
        let s = session("", &format!("roomcast.v1, bearer.{token}")).unwrap();
        assert_eq!((s.cid.as_str(), s.subprotocol), ("fresh", true));
        assert_eq!(session("", "").unwrap_err().status(), 401, "anonymous users have no session");
        assert_eq!(session("token=nope", "").unwrap_err().status(), 401);
        assert_eq!(session(&format!("token={token}&cid=a%20b"), "").unwrap_err().status(), 400);
        let other = mint(
            &Claims { sub: "alice".into(), exp: NOW_MS / 1000 + 600, nbf: None, iat: None, rooms: BTreeMap::new(), meta: None },
            b"other",
        )
        .unwrap();
        assert_eq!(session(&format!("token={other}"), "").unwrap_err().status(), 401, "signed with another secret");
    }

    fn connect(room: &str, query: &str, protocols: &str) -> Result<ConnectInfo, Refusal> {
        admit(&Upgrade { room, query, protocols }, &CONFIG, NOW_MS, || "fresh".into())
    }

    #[test]
    fn a_token_in_the_subprotocol_or_the_query_admits_its_user() {
        let t = token_for("alice", &[("chat:*", &[Right::Subscribe, Right::Publish])]);
        let info = connect("chat:lobby", "cid=c1&echo=1", &format!("roomcast.v1, bearer.{t}")).unwrap();
        for (echo, expected) in [("true", Some(true)), ("0", Some(false)), ("false", Some(false)), ("yes", None), ("", None), ("2", None)] {
            let got = connect("chat:lobby", &format!("echo={echo}"), &format!("roomcast.v1, bearer.{t}"));
            assert_eq!(got.as_ref().ok().map(|i| i.echo), expected, "echo={echo}");
        }
        assert_eq!((info.cid.as_str(), info.user.as_str(), info.echo, info.subprotocol), ("c1", "alice", true, true));
        assert_eq!(info.rights, Rights { subscribe: true, publish: true, presence: false, input: false });
        assert_eq!(info.exp, Some((NOW_MS / 1000 + 600) * 1000));
        assert_eq!(info.resume, None);
        let info = connect("chat:lobby", &format!("token={t}&since=5&epoch=e1"), "").unwrap();
        assert_eq!((info.cid.as_str(), info.subprotocol), ("fresh", false));
        assert_eq!(info.resume, Some(("e1".into(), 5)));
    }

    #[test]
    fn refusals_in_order_and_with_their_codes() {
        let t = token_for("alice", &[("chat:*", &[Right::Subscribe])]);
        let bearer = format!("roomcast.v1, bearer.{t}");
        let status = |room: &str, q: &str, p: &str| connect(room, q, p).unwrap_err().status();
        assert_eq!(status("chat:a", "cid=has space", &bearer), 400);
        assert_eq!(status("chat:a", "since=5", &bearer), 400, "since without epoch");
        assert_eq!(status("chat:a", &format!("since=1&epoch={}", "e".repeat(65)), &bearer), 400);
        assert_eq!(status("chat:a", "since=9223372036854775808&epoch=e", &bearer), 400);
        assert_eq!(status("chat:a", "since=9007199254740992&epoch=e", &bearer), 400);
        assert_eq!(status("other", "", &bearer), 403);
        assert_eq!(status("chat:a", "", "roomcast.v1"), 401, "no token, not an anonymous room");
        assert_eq!(status("chat:a", "", "roomcast.v1, bearer.x.y.z"), 401);
        let no_subscribe = token_for("alice", &[("chat:*", &[Right::Publish])]);
        assert_eq!(status("chat:a", "", &format!("bearer.{no_subscribe}")), 403);
        let unconfigured = AuthConfig { secret: "", ..CONFIG };
        let r = admit(&Upgrade { room: "chat:a", query: "", protocols: &bearer }, &unconfigured, NOW_MS, || "c".into()).unwrap_err();
        assert_eq!((r.status(), r.close_code()), (401, 4401));
    }

    #[test]
    fn reserved_subs_are_never_admitted() {
        let exp = NOW_MS / 1000 + 600;
        for sub in [":api", "anon:x", ":foo", ":http"] {
            let t = sign_raw(&format!(r#"{{"sub":"{sub}","exp":{exp},"rooms":{{"*":["subscribe","publish","presence"]}}}}"#));
            let r = connect("chat:a", "", &format!("bearer.{t}")).unwrap_err();
            assert_eq!((r.status(), r.close_code()), (401, 4401), "{sub}");
            assert!(r.message.contains("reserved"), "{sub}: {}", r.message);
            let r = authorize_api(Some(&format!("Bearer {t}")), &CONFIG, "chat:a", Access::KeyOrRight(Right::Publish), NOW_MS).unwrap_err();
            assert_eq!(r.status(), 401, "{sub} on the HTTP API");
        }
    }

    #[test]
    fn token_meta_with_raw_line_feeds_is_compacted() {
        let exp = NOW_MS / 1000 + 600;
        let t = sign_raw(&format!(
            "{{\"sub\":\"bob\",\"exp\":{exp},\"rooms\":{{\"r\":[\"subscribe\"]}},\"meta\":{{\n\"name\" :\r\n \"Bob\"\n}}}}"
        ));
        let info = connect("r", "", &format!("bearer.{t}")).unwrap();
        assert_eq!(info.meta.unwrap().get(), r#"{"name":"Bob"}"#);
    }

    #[test]
    fn anonymous_rooms() {
        let info = connect("public:lobby", "cid=a1&user=alice&meta=%7B%0A%22n%22%3A+1%7D", "roomcast.v1").unwrap();
        assert_eq!((info.user.as_str(), info.rights, info.exp), ("anon:alice", Rights::ALL, None));
        assert_eq!(info.meta.unwrap().get(), r#"{"n":1}"#);
        assert_eq!(connect("public:lobby", "cid=a1", "").unwrap().user, "anon:a1");
        assert_eq!(connect("public:lobby", "", "").unwrap().user, "anon:fresh");
        for q in ["user=a:b", "meta=[1]", "meta=%7B", &format!("meta={}", "x".repeat(META_MAX + 1))] {
            assert_eq!(connect("public:lobby", q, "").unwrap_err().status(), 400, "{q}");
        }
    }

    /// Issue #22: a token's or an anonymous user's meta outside the JSON rules (compact.rs) is
    /// refused at the edge, with the rule named.
    #[test]
    fn meta_outside_the_json_rules_is_refused() {
        let exp = NOW_MS / 1000 + 600;
        let t = sign_raw(&format!(r#"{{"sub":"bob","exp":{exp},"rooms":{{"r":["subscribe"]}},"meta":{{"a":"\udc00"}}}}"#));
        let r = connect("r", "", &format!("bearer.{t}")).unwrap_err();
        assert_eq!(r.status(), 401);
        assert!(r.message.contains("lone surrogate"), "{}", r.message);
        for (q, rule) in [
            (
                format!(
                    "meta={}",
                    "%7B%22k%22%3A".repeat(crate::compact::MAX_DEPTH + 1) + "1" + &"%7D".repeat(crate::compact::MAX_DEPTH + 1)
                ),
                "nested deeper",
            ),
            ("meta=%7B%22a%22%3A%22%5Cud800%22%7D".to_string(), "lone surrogate"),
            ("meta=%7B%22n%22%3A1e400%7D".to_string(), "range of a double"),
        ] {
            let r = connect("public:lobby", &format!("cid=a1&{q}"), "").unwrap_err();
            assert_eq!(r.status(), 400, "{q}");
            assert!(r.message.starts_with("meta: JSON") && r.message.contains(rule), "{q}: {}", r.message);
        }
    }

    #[test]
    fn api_callers() {
        let auth = |header: Option<&str>, access| authorize_api(header, &CONFIG, "chat:a", access, NOW_MS);
        let publish = Access::KeyOrRight(Right::Publish);
        assert_eq!(auth(Some("Bearer dev-api-key"), Access::Key), Ok(Caller::backend()));
        assert_eq!(Caller::backend().user, API_ORIGIN);
        let t = token_for("svc", &[("chat:a", &[Right::Publish])]);
        let caller = auth(Some(&format!("Bearer {t}")), publish).unwrap();
        assert_eq!(caller, Caller::user("svc"));
        assert_ne!(caller.user, API_ORIGIN, "a token never acts as the backend");
        assert_eq!(auth(Some(&format!("Bearer {t}")), Access::KeyOrRight(Right::Presence)).unwrap_err().status(), 403);
        assert_eq!(
            auth(Some(&format!("Bearer {t}")), Access::Key).unwrap_err().status(),
            403,
            "kick and stats need the key: a valid token is forbidden"
        );
        assert_eq!(auth(Some("Bearer a.b.c"), Access::Key).unwrap_err().status(), 401, "an invalid token stays unauthorized");
        assert_eq!(auth(None, publish).unwrap_err().status(), 401);
        assert_eq!(auth(Some("Basic abc"), publish).unwrap_err().status(), 401);
        assert_eq!(auth(Some("Bearer dev-api-kez"), publish).unwrap_err().status(), 401);
        assert_eq!(auth(Some("Bearer "), publish).unwrap_err().status(), 401);
        let no_key = AuthConfig { api_key: "", ..CONFIG };
        assert_eq!(
            authorize_api(Some("Bearer "), &no_key, "chat:a", Access::Key, NOW_MS).unwrap_err().status(),
            401,
            "an unset key matches nothing"
        );
    }

    #[test]
    fn rotation_admits_the_previous_secret_and_key_while_they_are_set() {
        const OLD_SECRET: &str = "old-edge-secret";
        const OLD_KEY: &str = "old-api-key";
        let rotating = AuthConfig { previous_secret: OLD_SECRET, previous_api_key: OLD_KEY, ..CONFIG };
        let rotated = CONFIG;
        let claims = Claims {
            sub: "alice".into(),
            exp: NOW_MS / 1000 + 600,
            nbf: None,
            iat: None,
            rooms: BTreeMap::from([("chat:*".to_owned(), vec![Right::Subscribe, Right::Publish])]),
            meta: None,
        };
        let by_old = mint(&claims, OLD_SECRET.as_bytes()).unwrap();
        let by_new = mint(&claims, SECRET.as_bytes()).unwrap();
        let by_other = mint(&claims, b"someone-else").unwrap();
        let upgrade = |t: &str, config: &AuthConfig<'_>| {
            let protocols = format!("roomcast.v1, bearer.{t}");
            admit(&Upgrade { room: "chat:a", query: "", protocols: &protocols }, config, NOW_MS, || "c".into())
        };
        let call = |credential: &str, config: &AuthConfig<'_>| {
            authorize_api(Some(&format!("Bearer {credential}")), config, "chat:a", Access::KeyOrRight(Right::Publish), NOW_MS)
        };
        // while the previous secret and key are set, both generations work, on sockets and the API
        assert_eq!(upgrade(&by_old, &rotating).unwrap().user, "alice");
        assert_eq!(upgrade(&by_new, &rotating).unwrap().user, "alice");
        assert_eq!(call(&by_old, &rotating), Ok(Caller::user("alice")));
        assert_eq!(call(OLD_KEY, &rotating), Ok(Caller::backend()));
        assert_eq!(call(KEY, &rotating), Ok(Caller::backend()));
        // neither generation: refused as any bad token or key
        let r = upgrade(&by_other, &rotating).unwrap_err();
        assert_eq!((r.status(), r.close_code()), (401, 4401));
        assert_eq!(call("not-a-key", &rotating).unwrap_err().status(), 401);
        // the previous ones removed: refused
        let r = upgrade(&by_old, &rotated).unwrap_err();
        assert_eq!((r.status(), r.close_code()), (401, 4401));
        assert_eq!(call(&by_old, &rotated).unwrap_err().status(), 401);
        assert_eq!(call(OLD_KEY, &rotated).unwrap_err().status(), 401);
        assert_eq!(upgrade(&by_new, &rotated).unwrap().user, "alice");
        // the previous secret alone admits nobody: the current one must be set
        let only_previous = AuthConfig { secret: "", ..rotating };
        assert_eq!(upgrade(&by_old, &only_previous).unwrap_err().message, "ROOMCAST_SECRET is not configured");
    }

    proptest! {
        /// Arbitrary queries and protocol headers never panic; every refusal is documented, and
        /// whatever is admitted has a valid client id and a user that is the token's or anon:.
        #[test]
        fn arbitrary_upgrades(query in "[a-z=&%0-9+.:{}\"_-]{0,60}", protocols in "[a-z0-9.,_ -]{0,40}", anonymous in any::<bool>()) {
            let room = if anonymous { "public:x" } else { "chat:x" };
            match connect(room, &query, &protocols) {
                Ok(info) => {
                    prop_assert!(name::validate_client_id(&info.cid).is_ok() || info.cid == "fresh");
                    prop_assert!(info.user.starts_with(ANON_PREFIX));
                    prop_assert!(info.meta.is_none_or(|m| m.is_object() && !m.get().contains('\n')));
                }
                Err(r) => prop_assert!(documented::is_documented(&r), "{:?}", r),
            }
        }

        /// A token whose sub is reserved is never admitted, on a socket or the HTTP API.
        #[test]
        fn reserved_subs_never_admitted(prefix in prop::sample::select(vec![":", "anon:"]), rest in "[a-z0-9:]{0,12}") {
            let exp = NOW_MS / 1000 + 600;
            let t = sign_raw(&format!(r#"{{"sub":"{prefix}{rest}","exp":{exp},"rooms":{{"*":["subscribe","publish","presence"]}}}}"#));
            let (query, header) = (format!("token={t}"), format!("Bearer {t}"));
            prop_assert!(connect("chat:x", &query, "").is_err());
            prop_assert!(authorize_api(Some(&header), &CONFIG, "chat:x", Access::KeyOrRight(Right::Subscribe), NOW_MS).is_err());
        }

        /// Any Authorization header: the backend only for the exact key; otherwise a documented refusal.
        #[test]
        fn arbitrary_credentials(header in "(Bearer )?[a-zA-Z0-9._ -]{0,40}") {
            match authorize_api(Some(&header), &CONFIG, "chat:x", Access::KeyOrRight(Right::Publish), NOW_MS) {
                Ok(c) => {
                    let key_header = format!("Bearer {}", KEY);
                    prop_assert!(header == key_header && c == Caller::backend());
                }
                Err(r) => prop_assert!(documented::is_documented(&r)),
            }
        }
    }
}
