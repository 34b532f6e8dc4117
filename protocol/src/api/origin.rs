//! Origins: which web pages may open a socket (`ALLOWED_ORIGINS`), and which requests may fetch
//! a development token (their `Origin` and their `Host`).

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

/// Who may fetch `/dev/token`, by both headers: first the `Host` the request was sent to, then its
/// `Origin` ([`check_dev_token_origin`]).
///
/// DNS rebinding: a page on `rebind.attacker.example`, whose name the attacker then points at
/// 127.0.0.1, reaches the developer's edge with a *same-origin* request, and a same-origin GET
/// carries no `Origin`. What gives it away is the `Host` header, which names the attacker's
/// host, never a loopback one ([`is_loopback_host`]): the browser sends the name it resolved.
/// So the endpoint answers only requests sent to a loopback host, or to one of `allowed_hosts`
/// (`DEV_TOKEN_HOSTS`: comma-separated host names, compared without the port and case, or `*`
/// for any host, which only the demo's own public Worker sets). A request without `Host` is
/// refused. On success, the origin to echo in `Access-Control-Allow-Origin`, if any.
pub fn check_dev_token_request<'a>(origin: Option<&'a str>, host: Option<&str>, allowed_hosts: &str) -> Result<Option<&'a str>, Refusal> {
    let Some(host) = host.map(str::trim) else {
        return Err(Refusal::forbidden("development tokens are only handed out on a loopback host"));
    };
    if !is_loopback_host(host) && !host_allowed(host, allowed_hosts) {
        return Err(Refusal::forbidden("development tokens are only handed out on a loopback host"));
    }
    check_dev_token_origin(origin, "")
}

/// Whether `DEV_TOKEN_HOSTS` names this `Host` (its name, without the port; any case), or is `*`.
fn host_allowed(host: &str, allowed_hosts: &str) -> bool {
    let Some((name, _)) = split_host(host) else { return false };
    allowed_hosts.split(',').map(str::trim).filter(|a| !a.is_empty()).any(|a| a == "*" || a.eq_ignore_ascii_case(name))
}

/// A `Host` header's name and port (`[::1]:8787` → `[::1]`, `8787`), or `None` when it is not
/// `name`, `name:port`, `[v6]` or `[v6]:port` with a port of 1-5 digits.
fn split_host(host: &str) -> Option<(&str, Option<&str>)> {
    let (name, port) = if host.starts_with('[') {
        let end = host.find(']')?;
        let (name, rest) = host.split_at(end + 1);
        match rest {
            "" => (name, None),
            _ => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (!name.is_empty() && port_ok).then_some((name, port))
}

/// Whether a `Host` header names this machine's loopback, as a browser writes it, with an
/// optional port: `localhost`, a name under `.localhost` (RFC 6761: browsers resolve these to
/// loopback themselves, and no public DNS answers for them, so no rebinding page can have one),
/// an IPv4 address in 127.0.0.0/8 in dotted decimal (`127.0.0.1`, `127.1.2.3`), or `[::1]`.
/// Nothing else: not `localhost.evil.example`, not `127.0.0.1.evil.example`, not `0x7f.1`.
pub fn is_loopback_host(host: &str) -> bool {
    let Some((name, _)) = split_host(host) else { return false };
    let name = name.to_ascii_lowercase();
    if name == "[::1]" || name == "localhost" {
        return true;
    }
    if let Some(sub) = name.strip_suffix(".localhost") {
        let label = |l: &str| !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        return sub.split('.').all(label);
    }
    let octets: Vec<&str> = name.split('.').collect();
    let octet = |o: &&str| {
        !o.is_empty()
            && o.len() <= 3
            && o.bytes().all(|b| b.is_ascii_digit())
            && (o.len() == 1 || !o.starts_with('0'))
            && o.parse::<u16>().is_ok_and(|n| n <= 255)
    };
    octets.len() == 4 && octets[0] == "127" && octets.iter().all(octet)
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

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:8787",
            "LOCALHOST:1",
            "app.localhost:5173",
            "a.b-c.localhost",
            "127.0.0.1",
            "127.0.0.1:8787",
            "127.255.0.9:80",
            "127.0.0.0",
            "[::1]",
            "[::1]:8787",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "rebind.attacker.example",
            "rebind.attacker.example:8787",
            "localhost.attacker.example",
            "127.0.0.1.attacker.example",
            "attacker.example:127.0.0.1",
            ".localhost",
            "a..localhost",
            "a_b.localhost",
            "localhost:",
            "localhost:123456",
            "localhost:80x",
            "128.0.0.1",
            "127.0.0",
            "127.0.0.1.1",
            "127.0.0.256",
            "127.0.0.01",
            "0x7f.0.0.1",
            "127.1",
            "[::2]",
            "[::1",
            "[::1]x",
            "[::1]:",
            "0.0.0.0",
            "",
            "192.168.1.10:8787",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    /// Found by the red-team report (#22): a same-origin GET from a DNS-rebinding page carries no
    /// Origin and got a token for every room; its Host names the attacker's host.
    #[test]
    fn dev_tokens_need_a_loopback_host() {
        fn forbidden(origin: Option<&str>, host: Option<&str>, allowed: &str) -> Result<(), (u16, u16)> {
            check_dev_token_request(origin, host, allowed).map(|_| ()).map_err(|r| (r.status(), r.close_code()))
        }
        assert_eq!(forbidden(None, Some("rebind.attacker.example:8787"), ""), Err((403, 4403)));
        assert_eq!(forbidden(None, Some("rebind.attacker.example"), ""), Err((403, 4403)));
        assert_eq!(forbidden(None, None, ""), Err((403, 4403)), "no Host, no token");
        assert_eq!(forbidden(Some("http://localhost:5173"), Some("rebind.attacker.example:8787"), ""), Err((403, 4403)));
        // loopback hosts, with the origin rule as before
        assert_eq!(check_dev_token_request(None, Some("127.0.0.1:8787"), ""), Ok(None));
        assert_eq!(check_dev_token_request(None, Some("localhost:8787"), ""), Ok(None));
        assert_eq!(check_dev_token_request(Some("http://localhost:5173"), Some("127.0.0.1:8787"), ""), Ok(Some("http://localhost:5173")));
        assert_eq!(forbidden(Some("https://evil.example"), Some("127.0.0.1:8787"), ""), Err((403, 4403)));
        // DEV_TOKEN_HOSTS: the demo's public Worker names its host, or every host
        let demo = "roomcast-demo.example.workers.dev";
        assert_eq!(check_dev_token_request(None, Some(demo), demo), Ok(None));
        assert_eq!(check_dev_token_request(None, Some("ROOMCAST-demo.example.workers.dev:443"), &format!("x.example, {demo}")), Ok(None));
        assert_eq!(forbidden(None, Some("other.example"), demo), Err((403, 4403)));
        assert_eq!(check_dev_token_request(None, Some("demo.example:8787"), "*"), Ok(None));
        assert_eq!(forbidden(Some("https://evil.example"), Some("demo.example:8787"), "*"), Err((403, 4403)), "origins still apply");
        assert_eq!(forbidden(None, Some("demo.example:bad"), "*"), Err((403, 4403)), "not a Host");
    }

    proptest! {
        /// Any Host with a port: loopback exactly when its name is.
        #[test]
        fn a_port_changes_nothing(name in "[a-z0-9.\\[\\]:]{0,20}", port in 1u32..65536) {
            let with_port = format!("{name}:{port}");
            if !name.contains(':') && !name.is_empty() {
                prop_assert_eq!(is_loopback_host(&with_port), is_loopback_host(&name));
            }
        }

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
