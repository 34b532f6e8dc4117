//! roomcast's Worker: the edge entry (routing, checks, the HTTP API) and the Room Durable Object.
//! Both are thin adapters: the rules live in `roomcast-protocol`.

#![forbid(unsafe_code)]

mod creation;
mod edge;
mod http;
mod platform;
mod room_object;
mod session_object;
mod sql_store;

pub use room_object::RoomObject;
pub use session_object::SessionObject;

use worker::{event, Context, Env, Request, Result};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<web_sys::Response> {
    edge::handle(req, env).await
}
