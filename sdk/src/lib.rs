//! roomcast's browser SDK. The wire constants come from `roomcast-protocol`; the client's
//! connection state machine and the browser adapter are built in the SDK issue.

pub use roomcast_protocol::frame::{PING, PONG};
pub use roomcast_protocol::SUBPROTOCOL;
