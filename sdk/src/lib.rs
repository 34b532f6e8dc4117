//! roomcast's browser SDK, the Rust half: a thin adapter that feeds browser events (socket open,
//! frames, close, timers, `online`, page visibility) into `roomcast_protocol::client::Client` and
//! carries out what it returns. The JavaScript half (`js/index.js`) gives it the API of
//! `docs/PROTOCOL.md`'s clients: `connect`, `on`, `publish`, and the rest.
//!
//! Resources are values that clean up on drop (gloo's `Timeout` and `EventListener`, the
//! socket's closures), so `close()` drops them and nothing keeps running.

mod adapter;
mod options;

pub use adapter::Connection;
