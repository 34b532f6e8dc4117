//! `roomcast token`: HS256 tokens as `npm run token` (tools/token.mjs) mints them: the same
//! header, the claims in the same order (`sub`, `exp`, `iat`, `rooms`, `meta`), the same checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

const RIGHTS: [&str; 4] = ["subscribe", "publish", "presence", "input"];

/// What a token grants, and to whom.
pub struct Mint<'a> {
    pub user: &'a str,
    pub room: &'a str,
    pub rights: &'a str,
    pub ttl_seconds: u64,
    pub meta: Option<&'a str>,
    /// Seconds since the Unix epoch.
    pub now: u64,
}

/// `--ttl`: a number with `s`, `m`, `h` or `d` (seconds without).
pub fn parse_ttl(text: &str) -> Result<u64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => 0,
    };
    match digits.parse::<u64>() {
        Ok(n) if scale > 0 && !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) => Ok(n.saturating_mul(scale)),
        _ => Err(format!("--ttl: expected a number with s, m, h or d, got {text}")),
    }
}

/// The token, or why it cannot be minted (the edge would refuse it).
pub fn mint(secret: &str, m: &Mint) -> Result<String, String> {
    if secret.is_empty() {
        return Err("no secret: pass --secret, set ROOMCAST_SECRET, or run `npm run setup` for a .dev.vars".to_owned());
    }
    let user_ok = (1..=64).contains(&m.user.len()) && m.user.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:@-".contains(&b));
    if !user_ok {
        return Err("user must be 1-64 of A-Z a-z 0-9 _ - . : @".to_owned());
    }
    if m.user.starts_with(':') || m.user.starts_with("anon:") {
        return Err(format!("user {} is reserved (ids starting with \":\" or \"anon:\" are the server's)", m.user));
    }
    let rights: Vec<&str> = m.rights.split(',').map(str::trim).collect();
    if let Some(bad) = rights.iter().find(|r| !RIGHTS.contains(r)) {
        return Err(format!("unknown right {bad} for {}", m.room));
    }
    let meta = match m.meta {
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => Some(v),
            _ => return Err("--meta must be a JSON object".to_owned()),
        },
        None => None,
    };
    let s = |v: &str| Value::String(v.to_owned()).to_string();
    let rights_json = rights.iter().map(|r| s(r)).collect::<Vec<_>>().join(",");
    let mut claims = format!(
        r#"{{"sub":{},"exp":{},"iat":{},"rooms":{{{}:[{}]}}"#,
        s(m.user),
        m.now.saturating_add(m.ttl_seconds),
        m.now,
        s(m.room),
        rights_json
    );
    if let Some(meta) = meta {
        claims.push_str(&format!(r#","meta":{meta}"#));
    }
    claims.push('}');
    let head = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims);
    let signing = format!("{head}.{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(signing.as_bytes());
    Ok(format!("{signing}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())))
}

/// A value from a `.dev.vars` file's text (`NAME="value"` or `NAME=value`).
pub fn dev_var(vars: &str, name: &str) -> Option<String> {
    vars.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix('=')?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use roomcast_protocol::token::{verify, Right};

    const NOW: u64 = 1_795_296_400;

    fn mint_alice(rights: &str, meta: Option<&str>) -> Result<String, String> {
        mint("s3cret", &Mint { user: "alice", room: "chat:*", rights, ttl_seconds: 3600, meta, now: NOW })
    }

    #[test]
    fn tokens_verify_at_the_edge_with_their_rights_and_expiry() {
        let token = mint_alice("subscribe,publish", Some(r#"{"name": "Alice"}"#)).unwrap();
        let claims = verify(&token, b"s3cret", NOW * 1000).expect("the edge takes it");
        assert_eq!((claims.sub.as_str(), claims.exp, claims.iat), ("alice", NOW + 3600, Some(NOW)));
        let rights = claims.rights_for("chat:lobby");
        assert!(rights.has(Right::Subscribe) && rights.has(Right::Publish) && !rights.has(Right::Presence));
        assert!(!claims.rights_for("news").has(Right::Subscribe));
        let typist = verify(&mint_alice("subscribe,input", None).unwrap(), b"s3cret", NOW * 1000).unwrap();
        assert!(typist.rights_for("chat:x").has(Right::Input) && !typist.rights_for("chat:x").has(Right::Publish));
        assert!(verify(&token, b"other", NOW * 1000).is_err(), "another secret's check fails");
        assert!(verify(&token, b"s3cret", (NOW + 3600 + 31) * 1000).is_err(), "expired after exp + 30 s");
    }

    #[test]
    fn the_claims_are_written_in_tools_token_mjs_order() {
        let token = mint_alice("subscribe", None).unwrap();
        let body = token.split('.').nth(1).unwrap();
        let claims = String::from_utf8(URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        assert_eq!(claims, format!(r#"{{"sub":"alice","exp":{},"iat":{NOW},"rooms":{{"chat:*":["subscribe"]}}}}"#, NOW + 3600));
    }

    #[test]
    fn what_the_edge_would_refuse_is_refused_here() {
        assert!(mint_alice("subscribe,admin", None).unwrap_err().contains("unknown right admin"));
        assert!(mint_alice("subscribe", Some("[1]")).is_err());
        let m = |user| Mint { user, room: "r", rights: "subscribe", ttl_seconds: 1, meta: None, now: NOW };
        assert!(mint("s", &m(":api")).unwrap_err().contains("reserved"));
        assert!(mint("s", &m("anon:x")).unwrap_err().contains("reserved"));
        assert!(mint("s", &m("a b")).is_err());
        assert!(mint("", &m("alice")).unwrap_err().contains("no secret"));
    }

    #[test]
    fn ttls_read_like_the_javascript_tool() {
        assert_eq!(["90", "90s", "2m", "1h", "1d"].map(|t| parse_ttl(t).unwrap()), [90, 90, 120, 3600, 86_400]);
        for bad in ["", "h", "1w", "-1h", "1.5h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dev_vars_are_read_quoted_or_not() {
        let vars = "ROOMCAST_API_KEY=\"k1\"\nROOMCAST_SECRET=abc\n";
        assert_eq!(dev_var(vars, "ROOMCAST_SECRET").as_deref(), Some("abc"));
        assert_eq!(dev_var(vars, "ROOMCAST_API_KEY").as_deref(), Some("k1"));
        assert_eq!(dev_var(vars, "ROOMCAST"), None);
    }
}
