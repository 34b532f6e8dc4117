//! The edge's policy, pure: what it establishes about a request before the room is touched, and
//! the identity contract between the edge and the room (who calls, and the origins recorded for
//! the backend and HTTP publishers, in [`identity`]). `worker/src/edge.rs` only reads the
//! platform (headers, vars, the URL, the rate limiter, the clock, randomness) and translates.
//!
//! - [`mod@route`]: which endpoint, with method and room name checked.
//! - [`origin`]: `ALLOWED_ORIGINS` for sockets; who may fetch a development token.
//! - [`client_ip`]: the per-IP upgrade limits: their key, why it differs locally, and which of
//!   the two budgets (with a valid token, or without) an upgrade spends.
//! - [`admission`]: a WebSocket upgrade to a [`ConnectInfo`]; an HTTP API call to a [`Caller`].
//! - [`creation`]: how many new rooms one creator may make per window (the room's object asks).
//! - [`history`], [`kick`], [`publish`], [`dev_token`]: the HTTP API's queries and bodies.
//! - [`call`]: the API call in the one canonical form the edge builds and the room reads.
//! - [`refusal`]: every refusal's HTTP status, error code, close code and JSON body.
//! - [`query`]: query strings as browsers write them.
//! - [`request_url`]: a request URL's path, query and origin, read from the runtime's serialization.

pub mod admission;
pub mod call;
pub mod client_ip;
pub mod creation;
pub mod dev_token;
pub mod history;
pub mod identity;
pub mod kick;
pub mod origin;
pub mod publish;
pub mod query;
pub mod refusal;
pub mod request_url;
pub mod route;

pub use admission::{admit, authorize_api, AuthConfig, Upgrade};

/// The vars the Worker reads outside `RoomConfig` and the webhooks' (the edge's, and the room
/// object's creation limit), each with its value when unset. wrangler.toml's `[vars]` lists each
/// with that value (`protocol/tests/wrangler_config.rs`).
pub const EDGE_VARS: [(&str, &str); 6] = [
    ("ANONYMOUS_ROOMS", ""),
    ("ALLOWED_ORIGINS", ""),
    ("UPGRADE_LIMITER", "UPGRADES_PER_IP"),
    ("UNVERIFIED_UPGRADE_LIMITER", "UNVERIFIED_UPGRADES_PER_IP"),
    ("DEV_TOKEN_HOSTS", ""),
    (creation::LIMITER_VAR, creation::LIMITER_DEFAULT),
];
pub use identity::{Caller, ConnectInfo, SessionConnect, API_ORIGIN, CALLER_HEADER, CONNECT_HEADER, HTTP_ORIGIN, SESSION_HEADER};
pub use refusal::{Refusal, RefusalKind};
pub use route::{route, Access, Endpoint, Method, Route};
