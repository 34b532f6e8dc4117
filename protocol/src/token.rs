//! Access tokens: HS256 JWTs signed with `ROOMCAST_SECRET` by the application's backend.
//!
//! The algorithm is pinned to HS256: the header must say so, and `none`, HS512, RS256 or anything
//! else is refused before any signature work. HMAC-SHA256 comes from RustCrypto (`hmac`, `sha2`),
//! whose `verify_slice` compares in constant time. The signature is checked before the payload
//! is parsed, so unauthenticated input never reaches the claim parser.
//!
//! Claims: `sub` (user id), `exp` (required, seconds since the epoch), `nbf` and `iat`
//! (optional), `rooms` (patterns to rights), `meta` (optional presence metadata, a JSON object
//! of at most [`META_MAX`] bytes). Times get a leeway of [`LEEWAY_SECS`] for clock skew.
//!
//! Expiry is one boundary, in milliseconds, for everyone who checks it: [`expiry_deadline`]
//! (`exp` plus the leeway) and [`is_expired`] (at or past it). The edge's verification, the room's
//! start of a connection, its sweep and its `refresh` all use them, so nothing the edge admits is
//! already past the instant the room closes it.
//!
//! Rotation: [`verify_any`] accepts a token signed with any of the configured keys (the current
//! secret and, while a rotation is under way, the previous one), and [`secrets_match_any`] an API
//! key equal to any of the configured ones. An empty key in either list is "not set" and
//! matches nothing.
//!
//! `sub` may not be a reserved user id (`:api`, anything else starting with a colon, `anon:…`:
//! [`crate::name::is_reserved_user`]): those are the identities the server assigns itself.
//! `meta` is read into [`CompactJson`]: a token signed with whitespace or line feeds inside its
//! `meta` is accepted and its meta compacted, so it can never break a frame or a header.

use crate::b64::{self, Form::UrlSafeNoPad};
use crate::compact::CompactJson;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::collections::BTreeMap;

/// Longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 30;
/// Largest `meta` claim, in bytes of JSON.
pub const META_MAX: usize = 1024;

/// What a token lets its holder do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Connect and receive messages (and read history through the API).
    Subscribe,
    /// Publish messages and send direct messages.
    Publish,
    /// See the member list and presence events.
    Presence,
    /// Type into a shared terminal: send `input` frames (docs/PROTOCOL.md, *input*). Granted by a
    /// token only, never to anonymous connections.
    Input,
}

/// The rights one connection holds in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Rights {
    #[serde(rename = "s")]
    pub subscribe: bool,
    #[serde(rename = "p")]
    pub publish: bool,
    #[serde(rename = "m")]
    pub presence: bool,
    /// Absent in what older edges wrote: no input right.
    #[serde(rename = "i", default)]
    pub input: bool,
}

impl Rights {
    /// What an anonymous connection (and the backend) holds: everything but `input`, which only a
    /// token grants, so no anonymous peer can type into a terminal.
    pub const ALL: Rights = Rights { subscribe: true, publish: true, presence: true, input: false };

    pub fn has(&self, right: Right) -> bool {
        match right {
            Right::Subscribe => self.subscribe,
            Right::Publish => self.publish,
            Right::Presence => self.presence,
            Right::Input => self.input,
        }
    }

    fn grant(&mut self, right: Right) {
        match right {
            Right::Subscribe => self.subscribe = true,
            Right::Publish => self.publish = true,
            Right::Presence => self.presence = true,
            Right::Input => self.input = true,
        }
    }
}

/// The claims roomcast reads. Other claims (`iss`, `aud`, `jti`, …) are allowed and ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Room patterns to rights: an exact name (`chat:lobby`), a prefix ending in `*` (`chat:*`
    /// matches `chat:lobby` but not `chatroom`), or `*` for every room.
    #[serde(default)]
    pub rooms: BTreeMap<String, Vec<Right>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<CompactJson>,
}

impl Claims {
    /// The union of the rights of every pattern that matches `room`; none at all in a
    /// user-limited room (`dm~alice,bob`) that does not list this token's user, whatever its
    /// patterns say (`crate::name::limited_to`).
    pub fn rights_for(&self, room: &str) -> Rights {
        let mut rights = Rights::default();
        if !crate::name::admits(room, &self.sub) {
            return rights;
        }
        for (pattern, granted) in &self.rooms {
            if pattern_matches(pattern, room) {
                for r in granted {
                    rights.grant(*r);
                }
            }
        }
        rights
    }

    /// When the token expires, in ms since the epoch (`exp` is in seconds).
    pub fn expires_ms(&self) -> u64 {
        self.exp.saturating_mul(1000)
    }
}

/// The instant (ms since the epoch) from which a token that expires at `exp_ms` (its `exp` in
/// ms, [`Claims::expires_ms`]) is expired: `exp` plus [`LEEWAY_SECS`]. The one boundary the edge
/// and the room share.
pub fn expiry_deadline(exp_ms: u64) -> u64 {
    exp_ms.saturating_add(LEEWAY_SECS * 1000)
}

/// Whether a token that expires at `exp_ms` is expired at `now_ms`: at or past
/// [`expiry_deadline`], to the millisecond. Nothing is admitted, started or kept from then on.
pub fn is_expired(exp_ms: u64, now_ms: u64) -> bool {
    now_ms >= expiry_deadline(exp_ms)
}

/// Whether a room pattern matches a room name: exact, or a prefix before a final `*`.
pub fn pattern_matches(pattern: &str, room: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => room.starts_with(prefix),
        None => pattern == room,
    }
}

/// Whether a room pattern can grant a room: `*`, a prefix of a valid room name before a final
/// `*`, or a valid room name ([`crate::name::validate_room`]). A token may hold others (they
/// match no room the edge routes); `/dev/token` and `roomcast/server`'s `mintToken` refuse
/// them with `room pattern: ` and this error.
pub fn validate_pattern(pattern: &str) -> Result<(), crate::name::NameError> {
    // The name rules own it: a user-limited room's prefix may stop at its `~` or a comma.
    crate::name::validate_pattern(pattern)
}

/// Whether any pattern in a comma-separated list matches (for `ANONYMOUS_ROOMS`).
pub fn any_pattern_matches(patterns: &str, room: &str) -> bool {
    patterns.split(',').map(str::trim).filter(|p| !p.is_empty()).any(|p| pattern_matches(p, room))
}

/// Why a token was refused. All are normal input errors: the request gets 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    #[error("token is not three base64url parts")]
    Malformed,
    #[error("token algorithm must be HS256")]
    Algorithm,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token claims are invalid: {0}")]
    BadClaims(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

type HmacSha256 = Hmac<Sha256>;

// HMAC takes keys of any length, so this never fails; it still returns a Result rather than
// carrying a panic path into the wasm build.
fn mac(secret: &[u8]) -> Result<HmacSha256, TokenError> {
    <HmacSha256 as Mac>::new_from_slice(secret).map_err(|_| TokenError::BadSignature)
}

/// Verifies a token at `now_ms` and returns its claims.
pub fn verify(token: &str, secret: &[u8], now_ms: u64) -> Result<Claims, TokenError> {
    verify_any(token, &[secret], now_ms)
}

/// Verifies a token signed with any of `secrets` (during a rotation: the current secret and the
/// previous one) at `now_ms`. Empty secrets are skipped: an unset key verifies nothing. The claims
/// are checked only after a signature matched, and the same way whichever key signed.
/// Each comparison is `verify_slice`'s constant-time one; which key matched may show in the
/// timing (one more HMAC), which reveals nothing a holder of the token does not know.
pub fn verify_any(token: &str, secrets: &[&[u8]], now_ms: u64) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let header = b64::decode(h, UrlSafeNoPad).ok_or(TokenError::Malformed)?;
    // Read as text, as every other JSON is: one copy of serde_json's reader in the Worker's wasm.
    let header = core::str::from_utf8(&header).map_err(|_| TokenError::Malformed)?;
    let header: Header = serde_json::from_str(header).map_err(|_| TokenError::Malformed)?;
    if header.alg != "HS256" {
        return Err(TokenError::Algorithm);
    }
    let signature = b64::decode(s, UrlSafeNoPad).ok_or(TokenError::Malformed)?;
    let signed_by = |secret: &[u8]| -> bool {
        if secret.is_empty() {
            return false;
        }
        let Ok(mut m) = mac(secret) else { return false };
        m.update(h.as_bytes());
        m.update(b".");
        m.update(p.as_bytes());
        m.verify_slice(&signature).is_ok()
    };
    if !secrets.iter().any(|secret| signed_by(secret)) {
        return Err(TokenError::BadSignature);
    }

    let payload = b64::decode(p, UrlSafeNoPad).ok_or(TokenError::Malformed)?;
    let payload = core::str::from_utf8(&payload).map_err(|_| TokenError::BadClaims("the claims are not UTF-8".into()))?;
    let claims: Claims = serde_json::from_str(payload).map_err(|e| TokenError::BadClaims(e.to_string()))?;
    crate::name::validate_user(&claims.sub).map_err(|e| TokenError::BadClaims(format!("sub: {e}")))?;
    if crate::name::is_reserved_user(&claims.sub) {
        return Err(TokenError::BadClaims("sub: reserved (starts with ':' or 'anon:')".into()));
    }
    if let Some(meta) = &claims.meta {
        // Measured compact: the form that is stored and sent.
        if meta.len() > META_MAX || !meta.is_object() {
            return Err(TokenError::BadClaims(format!("meta must be a JSON object of at most {META_MAX} bytes")));
        }
    }
    if is_expired(claims.expires_ms(), now_ms) {
        return Err(TokenError::Expired);
    }
    let now = now_ms / 1000;
    let earliest = claims.nbf.into_iter().chain(claims.iat).max();
    if earliest.is_some_and(|t| t > now.saturating_add(LEEWAY_SECS)) {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// Signs claims into a token (header `{"alg":"HS256","typ":"JWT"}`). This is what an
/// application's backend does; `tools/token.mjs` does the same in JavaScript.
pub fn mint(claims: &Claims, secret: &[u8]) -> Result<String, TokenError> {
    sign(&serde_json::to_vec(claims).unwrap_or_default(), secret)
}

/// Signs a claims payload given as JSON text, as it is (header `{"alg":"HS256","typ":"JWT"}`):
/// what another language's minting writes, for the contract tests that hold it to the edge's
/// rules (`tests/golden/tokens.json`).
pub fn sign(payload_json: &[u8], secret: &[u8]) -> Result<String, TokenError> {
    let header = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#, UrlSafeNoPad);
    let payload = b64::encode(payload_json, UrlSafeNoPad);
    let mut m = mac(secret)?;
    m.update(header.as_bytes());
    m.update(b".");
    m.update(payload.as_bytes());
    let signature = b64::encode(&m.finalize().into_bytes(), UrlSafeNoPad);
    Ok(format!("{header}.{payload}.{signature}"))
}

/// Whether a presented API key equals any of the configured ones (during a rotation: the
/// current key and the previous one). Every configured key is compared, whatever the outcome of
/// the others, each with [`secrets_match`]; empty ones match nothing.
pub fn secrets_match_any(given: &[u8], expected: &[&[u8]]) -> bool {
    expected.iter().fold(false, |matched, key| secrets_match(given, key) | matched)
}

/// Whether a presented secret (an API key) equals the configured one, in time independent of
/// where they differ and of their lengths: both are run through HMAC-SHA256 under a fixed key
/// and the tags compared with `verify_slice`, RustCrypto's constant-time comparison. An empty
/// configured secret matches nothing.
pub fn secrets_match(given: &[u8], expected: &[u8]) -> bool {
    const DOMAIN: &[u8] = b"roomcast secret comparison";
    if expected.is_empty() {
        return false;
    }
    let Ok(mut tag) = mac(DOMAIN) else { return false };
    tag.update(expected);
    let expected_tag = tag.finalize().into_bytes();
    let Ok(mut m) = mac(DOMAIN) else { return false };
    m.update(given);
    m.verify_slice(&expected_tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"test-secret";
    const NOW_MS: u64 = 1_800_000_000_000;

    fn claims() -> Claims {
        Claims {
            sub: "alice".into(),
            exp: NOW_MS / 1000 + 3600,
            nbf: None,
            iat: Some(NOW_MS / 1000),
            rooms: BTreeMap::from([("chat:*".into(), vec![Right::Subscribe, Right::Publish]), ("news".into(), vec![Right::Subscribe])]),
            meta: Some(CompactJson::parse(r#"{"name":"Alice"}"#).unwrap()),
        }
    }

    fn forge(header: &str, payload: &str, secret: &[u8]) -> String {
        let h = URL_SAFE_NO_PAD.encode(header);
        let p = URL_SAFE_NO_PAD.encode(payload);
        let mut m = mac(secret).unwrap();
        m.update(format!("{h}.{p}").as_bytes());
        format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
    }

    #[test]
    fn a_header_or_claims_that_are_not_utf8_are_refused() {
        let forge_bytes = |header: &[u8], payload: &[u8]| {
            let (h, p) = (URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
            let mut m = mac(SECRET).unwrap();
            m.update(format!("{h}.{p}").as_bytes());
            format!("{h}.{p}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
        };
        let (h, exp) = (br#"{"alg":"HS256","typ":"JWT"}"#, NOW_MS / 1000 + 60);
        let good = format!(r#"{{"sub":"a","exp":{exp}}}"#).into_bytes();
        assert!(verify(&forge_bytes(h, &good), SECRET, NOW_MS).is_ok());
        // A byte that is not UTF-8 in place of the `a` of the subject, then of the `J` of `JWT`.
        let mut bad = good.clone();
        bad[good.iter().position(|b| *b == b'a').unwrap()] = 0xff;
        assert!(matches!(verify(&forge_bytes(h, &bad), SECRET, NOW_MS), Err(TokenError::BadClaims(_))));
        let mut bad_header = h.to_vec();
        bad_header[h.iter().position(|b| *b == b'J').unwrap()] = 0xff;
        assert!(matches!(verify(&forge_bytes(&bad_header, &good), SECRET, NOW_MS), Err(TokenError::Malformed)));
    }

    #[test]
    fn minted_tokens_verify_and_grant_by_pattern() {
        let t = mint(&claims(), SECRET).unwrap();
        let c = verify(&t, SECRET, NOW_MS).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.rights_for("chat:lobby"), Rights { subscribe: true, publish: true, presence: false, input: false });
        assert_eq!(c.rights_for("news"), Rights { subscribe: true, publish: false, presence: false, input: false });
        assert_eq!(c.rights_for("chatroom"), Rights::default(), "chat:* must not match chatroom");
        assert_eq!(c.rights_for("newsroom"), Rights::default());
        assert_eq!(c.rights_for("chat:"), Rights { subscribe: true, publish: true, presence: false, input: false });
    }

    #[test]
    fn a_user_limited_room_grants_only_the_users_it_lists() {
        let mut claims = claims();
        claims.rooms.insert("dm~*".into(), vec![Right::Subscribe, Right::Publish]);
        claims.rooms.insert("*".into(), vec![Right::Presence]);
        let c = verify(&mint(&claims, SECRET).unwrap(), SECRET, NOW_MS).unwrap();
        assert_eq!(c.rights_for("dm~alice,bob"), Rights { subscribe: true, publish: true, presence: true, input: false });
        assert_eq!(c.rights_for("dm~bob,carol"), Rights::default(), "alice is not listed, whatever * grants");
        claims.sub = "carol".into();
        let c = verify(&mint(&claims, SECRET).unwrap(), SECRET, NOW_MS).unwrap();
        assert_eq!(c.rights_for("dm~alice,bob"), Rights::default());
    }

    #[test]
    fn every_forgery_is_refused() {
        let good = mint(&claims(), SECRET).unwrap();
        assert_eq!(verify(&good, b"other-secret", NOW_MS).unwrap_err(), TokenError::BadSignature);
        let payload = serde_json::to_string(&claims()).unwrap();
        assert_eq!(verify(&forge(r#"{"alg":"none"}"#, &payload, SECRET), SECRET, NOW_MS).unwrap_err(), TokenError::Algorithm);
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(&payload));
        assert_eq!(verify(&none, SECRET, NOW_MS).unwrap_err(), TokenError::Algorithm);
        for alg in ["HS512", "RS256", "hs256", "ES256"] {
            let t = forge(&format!(r#"{{"alg":"{alg}"}}"#), &payload, SECRET);
            assert_eq!(verify(&t, SECRET, NOW_MS).unwrap_err(), TokenError::Algorithm, "{alg}");
        }
        // tampered payload: the signature no longer matches
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        parts[1] = URL_SAFE_NO_PAD.encode(payload.replace("alice", "mallory"));
        assert_eq!(verify(&parts.join("."), SECRET, NOW_MS).unwrap_err(), TokenError::BadSignature);
        assert_eq!(verify("a.b", SECRET, NOW_MS).unwrap_err(), TokenError::Malformed);
        assert_eq!(verify("a.b.c.d", SECRET, NOW_MS).unwrap_err(), TokenError::Malformed);
        assert_eq!(verify("!!!.???.***", SECRET, NOW_MS).unwrap_err(), TokenError::Malformed);
        assert_eq!(verify(&"a".repeat(MAX_TOKEN_BYTES + 1), SECRET, NOW_MS).unwrap_err(), TokenError::TooLarge);
    }

    #[test]
    fn claim_types_and_times_are_checked() {
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let exp = NOW_MS / 1000 + 60;
        for bad in [
            format!(r#"{{"sub":5,"exp":{exp}}}"#),
            r#"{"sub":"a","exp":"tomorrow"}"#.to_string(),
            r#"{"sub":"a"}"#.to_string(),
            format!(r#"{{"sub":"a","exp":{exp},"rooms":{{"x":["fly"]}}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"rooms":["x"]}}"#),
            format!(r#"{{"sub":"a b","exp":{exp}}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"meta":"not an object"}}"#),
            format!(r#"{{"sub":"a","exp":{exp},"meta":{{"pad":"{}"}}}}"#, "x".repeat(META_MAX)),
        ] {
            assert!(matches!(verify(&forge(h, &bad, SECRET), SECRET, NOW_MS), Err(TokenError::BadClaims(_))), "{bad}");
        }
        let now = NOW_MS / 1000;
        let at = |exp: u64, nbf: Option<u64>| {
            let c = Claims { exp, nbf, iat: None, ..claims() };
            verify(&mint(&c, SECRET).unwrap(), SECRET, NOW_MS)
        };
        assert_eq!(at(now - LEEWAY_SECS - 1, None).unwrap_err(), TokenError::Expired);
        // NOW_MS is a whole second: exp + leeway == now is the boundary itself (expiry_boundary_to_the_ms)
        assert_eq!(at(now - LEEWAY_SECS, None).unwrap_err(), TokenError::Expired, "at the boundary");
        assert!(at(now - LEEWAY_SECS + 1, None).is_ok(), "within the leeway");
        assert_eq!(at(now + 60, Some(now + LEEWAY_SECS + 1)).unwrap_err(), TokenError::NotYetValid);
        assert!(at(now + 60, Some(now + LEEWAY_SECS)).is_ok());
    }

    /// Found by the red-team report (#22): `exp` is in seconds and the clock in ms, and the edge
    /// compared whole seconds, so a token up to a second past `exp` + leeway still verified while
    /// the room's deadline had passed. The boundary is now one instant, to the millisecond.
    #[test]
    fn expiry_boundary_to_the_ms() {
        let exp = NOW_MS / 1000 + 7;
        let deadline = (exp + LEEWAY_SECS) * 1000;
        assert_eq!(expiry_deadline(exp * 1000), deadline);
        let t = mint(&Claims { exp, ..claims() }, SECRET).unwrap();
        for now in [deadline - 1000, deadline - 1] {
            assert!(!is_expired(exp * 1000, now));
            assert!(verify(&t, SECRET, now).is_ok(), "{now}");
        }
        for now in [deadline, deadline + 1, deadline + 999, deadline + 1000] {
            assert!(is_expired(exp * 1000, now));
            assert_eq!(verify(&t, SECRET, now).unwrap_err(), TokenError::Expired, "{} ms past the deadline", now - deadline);
        }
        assert!(!is_expired(u64::MAX, u64::MAX - 1), "saturates instead of wrapping");
    }

    #[test]
    fn reserved_subs_are_refused() {
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let exp = NOW_MS / 1000 + 60;
        for sub in [":api", ":http", ":foo", ":", "anon:x", "anon:"] {
            let t = forge(h, &format!(r#"{{"sub":"{sub}","exp":{exp}}}"#), SECRET);
            match verify(&t, SECRET, NOW_MS) {
                Err(TokenError::BadClaims(m)) => assert!(m.contains("reserved") || sub == ":" || sub == "anon:", "{sub}: {m}"),
                other => panic!("{sub} was not refused: {other:?}"),
            }
        }
        let t = forge(h, &format!(r#"{{"sub":"a:pi","exp":{exp}}}"#), SECRET);
        assert!(verify(&t, SECRET, NOW_MS).is_ok());
    }

    #[test]
    fn meta_with_raw_whitespace_is_compacted() {
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let exp = NOW_MS / 1000 + 60;
        let payload = format!("{{\"sub\":\"a\",\"exp\":{exp},\"meta\":\n{{ \"name\" :\n\"A\\nB\",\r\n\t\"n\": [1, 2] }}\n}}");
        let c = verify(&forge(h, &payload, SECRET), SECRET, NOW_MS).unwrap();
        assert_eq!(c.meta.unwrap().get(), r#"{"name":"A\nB","n":[1,2]}"#);
        // the limit applies to the compact form: padding with whitespace does not count
        let padded = format!(r#"{{"sub":"a","exp":{exp},"meta":{{"k":{}"{}"}}}}"#, " ".repeat(META_MAX), "v".repeat(META_MAX - 10));
        assert!(verify(&forge(h, &padded, SECRET), SECRET, NOW_MS).is_ok());
    }

    /// Issue #22: a token's meta is held to the JSON rules too (compact.rs); a token that breaks
    /// them is refused with the rule named.
    #[test]
    fn meta_outside_the_json_rules_is_refused() {
        let h = r#"{"alg":"HS256","typ":"JWT"}"#;
        let exp = NOW_MS / 1000 + 60;
        let deep = crate::compact::tests::nested(crate::compact::MAX_DEPTH + 1, true, "1");
        for (meta, rule) in
            [(deep.as_str(), "nested deeper"), (r#"{"a":"\ud800"}"#, "lone surrogate"), (r#"{"n":1e400}"#, "range of a double")]
        {
            let payload = format!(r#"{{"sub":"a","exp":{exp},"meta":{meta}}}"#);
            match verify(&forge(h, &payload, SECRET), SECRET, NOW_MS) {
                Err(TokenError::BadClaims(m)) => assert!(m.contains(rule), "{meta}: {m}"),
                other => panic!("{meta}: {other:?}"),
            }
        }
        let within = crate::compact::tests::nested(crate::compact::MAX_DEPTH - 1, true, "1");
        let payload = format!(r#"{{"sub":"a","exp":{exp},"meta":{{"k":{within}}}}}"#);
        assert!(verify(&forge(h, &payload, SECRET), SECRET, NOW_MS).is_ok());
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(secrets_match(b"key-123", b"key-123"));
        assert!(!secrets_match(b"key-124", b"key-123"));
        assert!(!secrets_match(b"key-12", b"key-123"));
        assert!(!secrets_match(b"", b""), "an unset key matches nothing");
        assert!(!secrets_match(b"x", b""));
    }

    #[test]
    fn rotation_accepts_the_current_and_the_previous_secret_only() {
        const NEW: &[u8] = b"new-secret";
        const OLD: &[u8] = b"old-secret";
        let by_new = mint(&claims(), NEW).unwrap();
        let by_old = mint(&claims(), OLD).unwrap();
        let by_other = mint(&claims(), b"other-secret").unwrap();
        for keys in [&[NEW, OLD][..], &[OLD, NEW][..]] {
            assert_eq!(verify_any(&by_new, keys, NOW_MS).unwrap().sub, "alice");
            assert_eq!(verify_any(&by_old, keys, NOW_MS).unwrap().sub, "alice");
            assert_eq!(verify_any(&by_other, keys, NOW_MS).unwrap_err(), TokenError::BadSignature);
        }
        // the previous secret removed (unset is empty): its tokens are refused
        assert_eq!(verify_any(&by_old, &[NEW, b""], NOW_MS).unwrap_err(), TokenError::BadSignature);
        assert_eq!(verify_any(&by_old, &[NEW], NOW_MS).unwrap_err(), TokenError::BadSignature);
        // an empty key verifies nothing, not even a token signed with the empty key
        let by_empty = mint(&claims(), b"").unwrap();
        assert_eq!(verify_any(&by_empty, &[b"", b""], NOW_MS).unwrap_err(), TokenError::BadSignature);
        assert_eq!(verify_any(&by_empty, &[], NOW_MS).unwrap_err(), TokenError::BadSignature);
        // the claims are checked whichever key signed: an expired token of the old key stays expired
        let expired = Claims { exp: NOW_MS / 1000 - LEEWAY_SECS - 1, ..claims() };
        assert_eq!(verify_any(&mint(&expired, OLD).unwrap(), &[NEW, OLD], NOW_MS).unwrap_err(), TokenError::Expired);
        // and every forgery the single-key check refuses is refused with two keys
        let payload = serde_json::to_string(&claims()).unwrap();
        assert_eq!(verify_any(&forge(r#"{"alg":"none"}"#, &payload, OLD), &[NEW, OLD], NOW_MS).unwrap_err(), TokenError::Algorithm);
    }

    #[test]
    fn api_keys_rotate() {
        assert!(secrets_match_any(b"key-new", &[b"key-new", b"key-old"]));
        assert!(secrets_match_any(b"key-old", &[b"key-new", b"key-old"]));
        assert!(!secrets_match_any(b"key-older", &[b"key-new", b"key-old"]));
        assert!(!secrets_match_any(b"key-old", &[b"key-new", b""]), "the previous key removed");
        assert!(!secrets_match_any(b"", &[b"key-new", b""]), "an unset previous key matches nothing");
        assert!(!secrets_match_any(b"", &[]));
    }

    #[test]
    fn patterns_that_can_grant_a_room() {
        for p in ["*", "chat:*", "chat:lobby", "a.b-c_D9:*", &"r".repeat(128), &format!("{}*", "r".repeat(128))] {
            assert!(validate_pattern(p).is_ok(), "{p}");
        }
        for p in ["", "**", "a*b", "chat:*x", "bad/room", "bad/*", "has space", &"r".repeat(129), &format!("{}*", "r".repeat(129))] {
            assert!(validate_pattern(p).is_err(), "{p}");
        }
        assert_eq!(validate_pattern("").unwrap_err().to_string(), "room name must not be empty");
    }

    #[test]
    fn anonymous_patterns() {
        assert!(any_pattern_matches("demo:*, public", "demo:lobby"));
        assert!(any_pattern_matches("demo:*, public", "public"));
        assert!(!any_pattern_matches("demo:*, public", "publicity"));
        assert!(!any_pattern_matches("", "anything"));
        assert!(any_pattern_matches("*", "anything"));
    }

    proptest! {
        /// Arbitrary input never panics and is never accepted without the secret.
        #[test]
        fn arbitrary_tokens_are_refused(token in "[A-Za-z0-9_.-]{0,300}") {
            prop_assert!(verify(&token, SECRET, NOW_MS).is_err());
        }

        /// No signed token with a reserved `sub` is ever accepted, whatever follows the prefix.
        #[test]
        fn reserved_subs_never_verify(prefix in prop::sample::select(vec![":", "anon:"]), rest in "[A-Za-z0-9_.:@-]{0,20}") {
            let c = Claims { sub: format!("{prefix}{rest}"), ..claims() };
            prop_assert!(matches!(verify(&mint(&c, SECRET).unwrap(), SECRET, NOW_MS), Err(TokenError::BadClaims(_))));
        }

        /// With two keys, a token verifies exactly when one of them signed it.
        #[test]
        fn two_keys_accept_exactly_their_tokens(signer in "[a-z]{0,8}", current in "[a-z]{0,8}", previous in "[a-z]{0,8}") {
            let t = mint(&claims(), signer.as_bytes()).unwrap();
            let expected = !signer.is_empty() && (signer == current || signer == previous);
            prop_assert_eq!(verify_any(&t, &[current.as_bytes(), previous.as_bytes()], NOW_MS).is_ok(), expected);
            prop_assert_eq!(secrets_match_any(signer.as_bytes(), &[current.as_bytes(), previous.as_bytes()]), expected);
        }

        /// Flipping any character of a valid token makes it invalid.
        #[test]
        fn any_single_change_is_refused(pos in 0usize..200, ch in "[A-Za-z0-9_-]") {
            let good = mint(&claims(), SECRET).unwrap();
            let pos = pos % good.len();
            let mut bytes = good.clone().into_bytes();
            let replacement = ch.as_bytes()[0];
            prop_assume!(bytes[pos] != replacement && bytes[pos] != b'.');
            bytes[pos] = replacement;
            let changed = String::from_utf8(bytes).unwrap();
            // base64url's last character can carry unused bits: a change there may decode the same
            let same_bytes = changed.split('.').zip(good.split('.'))
                .all(|(a, b)| URL_SAFE_NO_PAD.decode(a).ok() == URL_SAFE_NO_PAD.decode(b).ok());
            prop_assume!(!same_bytes);
            prop_assert!(verify(&changed, SECRET, NOW_MS).is_err());
        }

        /// Verification refuses a token exactly when [`is_expired`] says so, at any ms.
        #[test]
        fn verification_expires_with_is_expired(offset in 0u64..200_000, exp_delta in 0u64..120) {
            let exp = NOW_MS / 1000 + exp_delta;
            let now = NOW_MS + offset;
            let t = mint(&Claims { exp, iat: None, ..claims() }, SECRET).unwrap();
            prop_assert_eq!(verify(&t, SECRET, now).err() == Some(TokenError::Expired), is_expired(exp * 1000, now));
        }

        /// Patterns: a prefix pattern matches exactly the names that start with its prefix.
        #[test]
        fn prefix_patterns(prefix in "[a-z:]{0,6}", room in "[a-z:]{1,10}") {
            let pattern = format!("{prefix}*");
            prop_assert_eq!(pattern_matches(&pattern, &room), room.starts_with(&prefix));
            prop_assert_eq!(pattern_matches(&prefix, &room), prefix == room);
        }
    }
}
