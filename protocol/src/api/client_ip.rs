//! The per-IP upgrade limits: their key, and which of the two budgets an upgrade spends.
//!
//! **Two budgets.** An upgrade the edge admits with a valid token spends the address's normal
//! budget (`UPGRADE_LIMITER`, the `UPGRADES_PER_IP` binding); every other one (no token, an
//! invalid or expired token, any refusal, and an anonymous room's) spends a budget of its own
//! (`UNVERIFIED_UPGRADE_LIMITER`, the `UNVERIFIED_UPGRADES_PER_IP` binding). The budget is chosen
//! after the token is checked (an HMAC, at most 4,096 bytes of input), so a hostile page that
//! opens token-less sockets from a visitor's browser, or anyone behind the same address, can
//! only spend the unverified budget: users with tokens on that address keep connecting
//! ([`UpgradeBudget`]). Anonymous rooms admit without a token, so their users share the
//! unverified budget with whatever else on their address has no token: a choice (their
//! connections prove nothing a hostile page's could not), documented in docs/SECURITY.md.
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

use super::identity::ConnectInfo;
use super::refusal::{Refusal, RefusalKind};

/// Which per-address budget an upgrade spends (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeBudget {
    /// Admitted with a valid token for the room.
    Token,
    /// Everything else: refused (whatever refused it), or admitted to an anonymous room.
    Unverified,
}

impl UpgradeBudget {
    /// The budget of an upgrade, from what admission made of it.
    pub fn of(admitted: &Result<ConnectInfo, Refusal>) -> UpgradeBudget {
        match admitted {
            // Only a token's connection carries its expiry; an anonymous one has none.
            Ok(info) if info.exp.is_some() => UpgradeBudget::Token,
            _ => UpgradeBudget::Unverified,
        }
    }

    /// The rate-limit binding that holds this budget: `upgrade_limiter` (the var
    /// `UPGRADE_LIMITER`) for tokens, `unverified_limiter` (`UNVERIFIED_UPGRADE_LIMITER`) for the
    /// rest, or the token's binding when that one is empty (one shared budget, as before the two
    /// existed). An empty `upgrade_limiter` turns every upgrade limit off: `None`.
    pub fn limiter<'a>(self, upgrade_limiter: &'a str, unverified_limiter: &'a str) -> Option<&'a str> {
        match self {
            _ if upgrade_limiter.is_empty() => None,
            UpgradeBudget::Unverified if !unverified_limiter.is_empty() => Some(unverified_limiter),
            _ => Some(upgrade_limiter),
        }
    }

    /// The refusal when the budget is spent: 429, or 4029 (retryable) under `errors=close`.
    pub fn refusal(self) -> Refusal {
        match self {
            UpgradeBudget::Token => Refusal::new(RefusalKind::RateLimited, "too many connection attempts from this address"),
            UpgradeBudget::Unverified => {
                Refusal::new(RefusalKind::RateLimited, "too many connection attempts without a valid token from this address")
            }
        }
    }
}

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

    fn admitted(room: &str, protocols: &str) -> Result<ConnectInfo, Refusal> {
        use crate::api::admission::{admit, AuthConfig, Upgrade};
        let config = AuthConfig { secret: "s", anonymous_rooms: "public:*", ..AuthConfig::default() };
        admit(&Upgrade { room, query: "", protocols }, &config, 1_800_000_000_000, || "c".into())
    }

    fn token(exp: u64, room: &str) -> String {
        let claims = crate::token::Claims {
            sub: "alice".into(),
            exp,
            nbf: None,
            iat: None,
            rooms: [(room.to_owned(), vec![crate::token::Right::Subscribe])].into(),
            meta: None,
        };
        format!("roomcast.v1, bearer.{}", crate::token::mint(&claims, b"s").unwrap())
    }

    /// Found by the red-team report (#22): token-less upgrades from a hostile page spent the
    /// address's one budget and locked its real users out. Only a valid token's upgrade spends
    /// the normal budget now.
    #[test]
    fn only_a_valid_token_spends_the_normal_budget() {
        let valid = token(1_800_000_600, "chat:*");
        assert_eq!(UpgradeBudget::of(&admitted("chat:a", &valid)), UpgradeBudget::Token);
        for (room, protocols) in [
            ("chat:a", "roomcast.v1".to_owned()),                       // no token
            ("chat:a", "roomcast.v1, bearer.x.y.z".to_owned()),         // a forged one
            ("chat:a", token(1_700_000_000, "chat:*")),                 // expired
            ("chat:a", format!("{}x", token(1_800_000_600, "chat:*"))), // altered signature
            ("other", valid.clone()),                                   // valid, but not for this room: refused
            ("public:lobby", "roomcast.v1".to_owned()),                 // anonymous: admitted without a token
        ] {
            assert_eq!(UpgradeBudget::of(&admitted(room, &protocols)), UpgradeBudget::Unverified, "{room} {protocols}");
        }
    }

    #[test]
    fn each_budget_has_its_binding() {
        let (normal, unverified) = ("UPGRADES_PER_IP", "UNVERIFIED_UPGRADES_PER_IP");
        assert_eq!(UpgradeBudget::Token.limiter(normal, unverified), Some(normal));
        assert_eq!(UpgradeBudget::Unverified.limiter(normal, unverified), Some(unverified));
        assert_eq!(UpgradeBudget::Unverified.limiter(normal, ""), Some(normal), "one shared budget");
        assert_eq!(UpgradeBudget::Token.limiter("", unverified), None, "the limits off");
        assert_eq!(UpgradeBudget::Unverified.limiter("", unverified), None);
        for budget in [UpgradeBudget::Token, UpgradeBudget::Unverified] {
            let r = budget.refusal();
            assert_eq!((r.status(), r.close_code()), (429, 4029));
        }
    }

    proptest! {
        /// Whatever an upgrade offers, it spends the normal budget only if admitted with a token.
        #[test]
        fn arbitrary_upgrades_spend_the_normal_budget_only_with_a_token(protocols in "[a-z0-9.,_ -]{0,40}", anonymous in any::<bool>()) {
            let room = if anonymous { "public:x" } else { "chat:x" };
            let outcome = admitted(room, &protocols);
            let with_token = outcome.as_ref().is_ok_and(|info| !info.user.starts_with(crate::name::ANON_PREFIX));
            prop_assert_eq!(UpgradeBudget::of(&outcome) == UpgradeBudget::Token, with_token);
        }

        /// Locally no header value changes the key: a forged address cannot open a fresh bucket.
        #[test]
        fn local_keys_ignore_the_header(ip in proptest::option::of(".{0,40}")) {
            prop_assert_eq!(upgrade_limit_key(ip.as_deref(), Runtime::LocalDevelopment), LOCAL_KEY);
        }
    }
}
