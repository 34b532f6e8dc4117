//! roomcast's protocol core: the wire format, defined once, and the room's logic as a pure state
//! machine.
//!
//! Nothing here does IO, reads a clock or draws randomness: time (`now`, milliseconds since the
//! Unix epoch) and random values come in as arguments, and what to do comes back as values
//! ([`room::Action`]s to carry out, the next timer to set). The Durable Object in `worker/` only
//! translates platform events into calls on [`room::Room`] and carries out what it returns; the
//! tests drive the same machine natively, with a simulated clock.

pub mod client;
pub mod close;
pub mod config;
pub mod frame;
pub mod limit;
pub mod name;
pub mod room;
pub mod token;

/// The WebSocket subprotocol the server selects.
pub const SUBPROTOCOL: &str = "roomcast.v1";
