//! The edge's policy, pure: what it establishes about a request before the room is touched, and
//! the identity contract between the edge and the room. `worker/src/edge.rs` only translates.

pub mod identity;

pub use identity::{Caller, ConnectInfo, CALLER_HEADER, CONNECT_HEADER};
