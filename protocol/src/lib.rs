//! roomcast's protocol core: the wire format, defined once, and the room's logic as a pure state
//! machine.
//!
//! Nothing here does IO, reads a clock or draws randomness: time (`now`, milliseconds since the
//! Unix epoch) and random values come in as arguments, and what to do comes back as values
//! ([`room::Action`]s to carry out, the next timer to set). The Durable Object in `worker/` only
//! translates platform events into calls on [`room::Room`] and carries out what it returns; the
//! tests drive the same machine natively, with a simulated clock.
//!
//! Without the default `server` feature the crate is `no_std` and holds only [`client`] and
//! [`close`]: the browser SDK's whole Rust side, kept free of std so its wasm stays small.

#![cfg_attr(not(feature = "server"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod b64;
pub mod client;
pub mod close;
#[cfg(feature = "server")]
pub mod compact;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod feed;
#[cfg(feature = "server")]
pub mod frame;
#[cfg(feature = "server")]
pub mod gate;
#[cfg(feature = "server")]
pub mod limit;
#[cfg(feature = "server")]
pub mod name;
#[cfg(feature = "server")]
pub mod relay;
#[cfg(feature = "server")]
pub mod room;
#[cfg(feature = "server")]
pub mod session;
#[cfg(feature = "server")]
pub mod sorted;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod token;
#[cfg(feature = "server")]
pub mod webhook;

/// The WebSocket subprotocol the server selects.
pub const SUBPROTOCOL: &str = "roomcast.v1";

/// The heartbeat a client sends, byte for byte (see `frame::PING`).
pub const PING: &str = r#"{"type":"ping"}"#;
