//! Origins: which web pages may open a socket (`ALLOWED_ORIGINS`), and which may fetch a
//! development token.

use super::refusal::Refusal;

/// Cross-site WebSocket hijacking: a page from another site could open a socket carrying the
/// user's cookies. `allowed` is `ALLOWED_ORIGINS` (comma-separated, exact); empty allows every
/// origin. A request without an `Origin` header does not come from a browser page and passes.
pub fn check_socket_origin(origin: Option<&str>, allowed: &str) -> Result<(), Refusal> {
    if allowed.trim().is_empty() {
        return Ok(());
    }
    let Some(origin) = origin else { return Ok(()) };
    if allowed.split(',').map(str::trim).any(|a| a == origin) {
        Ok(())
    } else {
        Err(Refusal::forbidden("this origin may not connect"))
    }
}

/// The origin to echo in `Access-Control-Allow-Origin` for a page calling the history endpoint:
/// the page's own origin when `ALLOWED_ORIGINS` lets it connect (empty: every origin), else none,
/// and the browser keeps the answer from the page. Never `*`.
pub fn cors_origin<'a>(origin: Option<&'a str>, allowed: &str) -> Option<&'a str> {
    let origin = origin?;
    check_socket_origin(Some(origin), allowed).ok().map(|()| origin)
}

/// Who may fetch `/dev/token`: it mints a token for any user and room, so any web site could
/// otherwise collect tokens from a developer's running edge. Allowed: no `Origin` (curl, scripts,
/// tests) and loopback origins on any port (the demo pages this edge serves on 127.0.0.1, a Vite
/// dev server). The edge's "own" origin is not trusted as such: it comes from the Host header,
/// which a DNS-rebinding page controls (`evil.example` resolving to 127.0.0.1). On success, the
/// origin to echo in `Access-Control-Allow-Origin`, if any: never `*`.
pub fn check_dev_token_origin<'a>(origin: Option<&'a str>, _own_origin: &str) -> Result<Option<&'a str>, Refusal> {
    match origin {
        None => Ok(None),
        Some(o) if is_loopback_origin(o) => Ok(Some(o)),
        Some(_) => Err(Refusal::forbidden("development tokens are only handed to loopback origins")),
    }
}

/// `http(s)://localhost`, `127.0.0.1` or `[::1]`, with an optional port, and nothing else (no
/// path, no user info: `http://localhost.evil.example` and `http://localhost@evil.example` are
/// not loopback).
pub fn is_loopback_origin(origin: &str) -> bool {
    let lower = origin.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("http://").or_else(|| lower.strip_prefix("https://")) else {
        return false;
    };
    let Some(port) = ["localhost", "127.0.0.1", "[::1]"].iter().find_map(|host| rest.strip_prefix(host)) else {
        return false;
    };
    match port.strip_prefix(':') {
        None => port.is_empty(),
        Some(digits) => !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cors_follows_allowed_origins() {
        assert_eq!(cors_origin(Some("https://app.example"), "https://app.example"), Some("https://app.example"));
        assert_eq!(cors_origin(Some("https://evil.example"), "https://app.example"), None);
        assert_eq!(cors_origin(Some("https://any.example"), ""), Some("https://any.example"));
        assert_eq!(cors_origin(None, ""), None);
    }

    #[test]
    fn socket_origins() {
        assert!(check_socket_origin(Some("https://evil.example"), "").is_ok(), "empty allows all");
        assert!(check_socket_origin(None, "https://app.example").is_ok(), "not a browser page");
        assert!(check_socket_origin(Some("https://app.example"), "https://x.example, https://app.example").is_ok());
        let r = check_socket_origin(Some("https://evil.example"), "https://app.example").unwrap_err();
        assert_eq!((r.status(), r.close_code()), (403, 4403));
    }

    #[test]
    fn loopback_origins() {
        for o in ["http://localhost", "http://localhost:5173", "https://127.0.0.1:8787", "http://[::1]:3000", "HTTP://LOCALHOST:1"] {
            assert!(is_loopback_origin(o), "{o}");
        }
        for o in [
            "http://localhost.evil.example",
            "http://localhost@evil.example",
            "http://localhost:80/path",
            "http://localhost:",
            "http://localhost:123456",
            "http://127.0.0.2",
            "ws://localhost",
            "null",
            "",
            "http://[::1]x",
        ] {
            assert!(!is_loopback_origin(o), "{o}");
        }
    }

    #[test]
    fn dev_token_origins() {
        let own = "http://127.0.0.1:8787";
        assert_eq!(check_dev_token_origin(None, own), Ok(None));
        assert_eq!(check_dev_token_origin(Some(own), own), Ok(Some(own)));
        assert_eq!(check_dev_token_origin(Some("http://localhost:5173"), own), Ok(Some("http://localhost:5173")));
        // found by review: the "own" origin comes from the Host header, which DNS rebinding controls
        let rebound = "http://evil.example:8787";
        assert_eq!(check_dev_token_origin(Some(rebound), rebound).unwrap_err().status(), 403);
        for o in ["https://evil.example", "null", "http://localhost.evil.example"] {
            assert_eq!(check_dev_token_origin(Some(o), own).unwrap_err().status(), 403, "{o}");
        }
    }

    proptest! {
        /// Whatever the origin, a success echoes exactly that origin, never `*`.
        #[test]
        fn dev_token_never_echoes_a_wildcard(origin in "[a-z:/.\\[\\]0-9*@]{0,30}") {
            if let Ok(Some(echo)) = check_dev_token_origin(Some(&origin), "http://127.0.0.1:8787") {
                prop_assert_eq!(echo, origin.as_str());
                prop_assert!(echo != "*");
            }
        }
    }
}
