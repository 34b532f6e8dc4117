//! The key of the per-IP upgrade limit.
//!
//! What each runtime gives the Worker (checked against Cloudflare's docs and the workers-sdk
//! source, wrangler 4 / miniflare 4):
//!
//! - **Production.** Cloudflare's edge sets `CF-Connecting-IP` on every request it passes to a
//!   Worker to the address of the client connecting to it; the client cannot choose it (a copy the
//!   client sends is replaced). Cloudflare's "HTTP request headers" reference: "When no Worker
//!   subrequest is triggered, cf-connecting-ip reflects the client's IP address".
//! - **Local (`wrangler dev`).** Miniflare's entry worker (`packages/miniflare/src/workers/core/
//!   entry.worker.ts`, `getUserRequest`) sets `CF-Connecting-IP` from workerd's `request.cf.clientIp`
//!   only when the request has no such header: `if (clientIp && !request.headers.get("CF-Connecting-IP"))`.
//!   A header the client sent is kept (workers-sdk PR #7702 made that deliberate, "CF-Connecting-IP
//!   is preserved when present", so it can be mocked). `wrangler dev` puts its proxy worker in
//!   front, in a Miniflare instance of its own with the same entry worker, and starts it with
//!   `stripCfConnectingIp: false` ("the user Worker Miniflare instance _should_ receive
//!   CF-Connecting-IP", wrangler 4.86 `cli.js`); the proxy copies every request header onto its
//!   fetch to the user worker. So locally the header is the client's address only when the
//!   client sent none, and otherwise whatever the client says: one that sends a fresh
//!   `CF-Connecting-IP` on every upgrade never met the limit. Nothing else in the request can be
//!   trusted locally either: `request.cf` is replaced by Miniflare's (read from the client-settable
//!   `MF-CF-Blob` header when present), so workerd's `clientIp` never reaches the user worker.
//!
//! So the key follows the runtime: in production the platform's header; in local development
//! (told by configuration, which a client cannot touch: the `.dev.vars` the setup writes, never
//! uploaded by `wrangler deploy`) one key for every upgrade. Local clients are the developer's
//! own (loopback, at most a LAN), so one shared bucket loses nothing; a client choosing its own
//! bucket loses the limit.

/// Where the edge runs, as far as the upgrade limit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Deployed: `CF-Connecting-IP` is set by Cloudflare.
    Production,
    /// `wrangler dev`: `CF-Connecting-IP` may come from the client.
    LocalDevelopment,
}

/// The key all local upgrades share.
pub const LOCAL_KEY: &str = "local";
/// The key of a deployed request without `CF-Connecting-IP` (not seen from the internet; a
/// request from a Worker in another zone carries Cloudflare's Worker address instead).
pub const UNKNOWN_KEY: &str = "unknown";

/// The limiter key for an upgrade, given the `CF-Connecting-IP` header.
pub fn upgrade_limit_key(connecting_ip: Option<&str>, runtime: Runtime) -> &str {
    match runtime {
        Runtime::LocalDevelopment => LOCAL_KEY,
        Runtime::Production => connecting_ip.map(str::trim).filter(|ip| !ip.is_empty()).unwrap_or(UNKNOWN_KEY),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn production_keys_on_the_platform_header() {
        assert_eq!(upgrade_limit_key(Some("203.0.113.7"), Runtime::Production), "203.0.113.7");
        assert_eq!(upgrade_limit_key(Some(" 2001:db8::1 "), Runtime::Production), "2001:db8::1");
        assert_eq!(upgrade_limit_key(None, Runtime::Production), UNKNOWN_KEY);
        assert_eq!(upgrade_limit_key(Some(""), Runtime::Production), UNKNOWN_KEY);
    }

    proptest! {
        /// Locally no header value changes the key: a forged address cannot open a fresh bucket.
        #[test]
        fn local_keys_ignore_the_header(ip in proptest::option::of(".{0,40}")) {
            prop_assert_eq!(upgrade_limit_key(ip.as_deref(), Runtime::LocalDevelopment), LOCAL_KEY);
        }
    }
}
