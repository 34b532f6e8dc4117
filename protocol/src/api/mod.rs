//! The edge's policy, pure: what it establishes about a request before the room is touched, and
//! the identity contract between the edge and the room. `worker/src/edge.rs` only reads the
//! platform (headers, vars, the URL, the rate limiter, the clock, randomness) and translates.
//!
//! - [`mod@route`]: which endpoint, with method and room name checked.
//! - [`origin`]: `ALLOWED_ORIGINS` for sockets; who may fetch a development token.
//! - [`client_ip`]: the per-IP upgrade limit's key, and why it differs locally.
//! - [`admission`]: a WebSocket upgrade to a [`ConnectInfo`]; an HTTP API call to a [`Caller`].
//! - [`history`], [`kick`], [`dev_token`]: the HTTP API's queries and bodies.
//! - [`refusal`]: every refusal's HTTP status, error code, close code and JSON body.
//! - [`query`]: query strings as browsers write them.
//! - [`request_url`]: a request URL's path, query and origin, read from the runtime's serialization.

pub mod admission;
pub mod client_ip;
pub mod dev_token;
pub mod history;
pub mod identity;
pub mod kick;
pub mod origin;
pub mod query;
pub mod refusal;
pub mod request_url;
pub mod route;

pub use admission::{admit, authorize_api, AuthConfig, Upgrade};
pub use identity::{Caller, ConnectInfo, CALLER_HEADER, CONNECT_HEADER};
pub use refusal::{Refusal, RefusalKind};
pub use route::{route, Endpoint, Method, Route};
