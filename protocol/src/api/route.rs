//! Which endpoint a request is for: `/rooms/:room/{ws,messages,history,presence,stats,kick}`,
//! `DELETE /rooms/:room/history`, `POST /rooms/:room/webhooks/requeue` and `/dev/token`, checked
//! for method and room name.

use super::refusal::{Refusal, RefusalKind};
use crate::name;
use crate::token::Right;

/// The HTTP methods the edge tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
    /// A browser's CORS preflight.
    Options,
    Other,
}

/// A room's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /rooms/:room/ws`: the WebSocket upgrade.
    Connect,
    /// `POST /rooms/:room/messages`: publish.
    Publish,
    /// `GET /rooms/:room/history`.
    History,
    /// `GET /rooms/:room/presence`.
    Presence,
    /// `GET /rooms/:room/stats`: operators only.
    Stats,
    /// `POST /rooms/:room/kick`: the backend removes a user.
    Kick,
    /// `DELETE /rooms/:room/history`: the backend deletes the room's messages (a new epoch).
    DeleteHistory,
    /// `POST /rooms/:room/webhooks/requeue`: the backend re-queues the room's dead letters.
    RequeueWebhooks,
}

/// Who may call an HTTP API endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The API key, or a token with this right for the room.
    KeyOrRight(Right),
    /// The API key only.
    Key,
}

impl Endpoint {
    fn parse(segment: &str, method: Method) -> Option<Endpoint> {
        Some(match segment {
            "ws" => Endpoint::Connect,
            "messages" => Endpoint::Publish,
            "history" if method == Method::Delete => Endpoint::DeleteHistory,
            "history" => Endpoint::History,
            "presence" => Endpoint::Presence,
            "stats" => Endpoint::Stats,
            "kick" => Endpoint::Kick,
            _ => return None,
        })
    }

    pub fn method(self) -> Method {
        match self {
            Endpoint::Publish | Endpoint::Kick | Endpoint::RequeueWebhooks => Method::Post,
            Endpoint::DeleteHistory => Method::Delete,
            _ => Method::Get,
        }
    }

    /// The path of the room object's endpoint the edge forwards to.
    pub fn room_path(self) -> &'static str {
        match self {
            Endpoint::Connect => "/ws",
            Endpoint::Publish => "/messages",
            Endpoint::History => "/history",
            Endpoint::Presence => "/presence",
            Endpoint::Stats => "/stats",
            Endpoint::Kick => "/kick",
            Endpoint::DeleteHistory => "/reset",
            Endpoint::RequeueWebhooks => "/webhooks/requeue",
        }
    }

    /// Who may call it (`Connect` is admitted by [`super::admission`], not here).
    pub fn access(self) -> Access {
        match self {
            Endpoint::Publish => Access::KeyOrRight(Right::Publish),
            Endpoint::Presence => Access::KeyOrRight(Right::Presence),
            Endpoint::Connect | Endpoint::History => Access::KeyOrRight(Right::Subscribe),
            // Stats are for operators; removing a user, deleting history and re-queueing
            // webhooks are the backend's calls alone.
            Endpoint::Stats | Endpoint::Kick | Endpoint::DeleteHistory | Endpoint::RequeueWebhooks => Access::Key,
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Room {
        room: String,
        endpoint: Endpoint,
    },
    /// A browser asks whether a page on another origin may call this endpoint (only history is
    /// offered to pages: the rest is the backend's).
    Preflight {
        room: String,
        endpoint: Endpoint,
    },
    DevToken,
    /// `GET /session/ws`: one socket for any number of rooms, to the user's session object.
    Session,
    /// `DELETE /sessions/:user` (API key only): closes every session socket of `user` (4411).
    CloseSession {
        user: String,
    },
}

/// Routes a request by method and path (the path as the URL carries it, percent-encoded: a room
/// name with `%` in it is refused like any other bad character).
pub fn route(method: Method, path: &str) -> Result<Route, Refusal> {
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some("rooms"), Some(room), Some("webhooks"), Some("requeue"), None) => {
            name::validate_room(room).map_err(|e| Refusal::bad_request(e.to_string()))?;
            if method != Method::Post {
                return Err(Refusal::new(RefusalKind::MethodNotAllowed, "method not allowed for this endpoint"));
            }
            Ok(Route::Room { room: room.to_owned(), endpoint: Endpoint::RequeueWebhooks })
        }
        (Some("rooms"), Some(room), Some(endpoint), None, None) => {
            let Some(endpoint) = Endpoint::parse(endpoint, method) else {
                return Err(Refusal::not_found("no such room endpoint; see docs/PROTOCOL.md"));
            };
            name::validate_room(room).map_err(|e| Refusal::bad_request(e.to_string()))?;
            if method == Method::Options && endpoint == Endpoint::History {
                return Ok(Route::Preflight { room: room.to_owned(), endpoint });
            }
            if method != endpoint.method() {
                return Err(Refusal::new(RefusalKind::MethodNotAllowed, "method not allowed for this endpoint"));
            }
            Ok(Route::Room { room: room.to_owned(), endpoint })
        }
        (Some("dev"), Some("token"), None, None, None) if method == Method::Get => Ok(Route::DevToken),
        (Some("session"), Some("ws"), None, None, None) if method == Method::Get => Ok(Route::Session),
        (Some("session"), Some("ws"), None, None, None) => {
            Err(Refusal::new(RefusalKind::MethodNotAllowed, "method not allowed for this endpoint"))
        }
        (Some("sessions"), Some(user), None, None, None) => {
            name::validate_user(user).map_err(|e| Refusal::bad_request(e.to_string()))?;
            if method != Method::Delete {
                return Err(Refusal::new(RefusalKind::MethodNotAllowed, "method not allowed for this endpoint"));
            }
            Ok(Route::CloseSession { user: user.to_owned() })
        }
        (Some("dev"), Some("token"), None, None, None) => {
            Err(Refusal::new(RefusalKind::MethodNotAllowed, "method not allowed for this endpoint"))
        }
        _ => Err(Refusal::not_found("no such endpoint; see docs/PROTOCOL.md")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::refusal::documented;
    use super::*;
    use proptest::prelude::*;

    fn room(r: &str, e: Endpoint) -> Result<Route, Refusal> {
        Ok(Route::Room { room: r.into(), endpoint: e })
    }

    #[test]
    fn routes() {
        assert_eq!(route(Method::Get, "/rooms/chat:lobby/ws"), room("chat:lobby", Endpoint::Connect));
        assert_eq!(route(Method::Post, "/rooms/a/messages"), room("a", Endpoint::Publish));
        assert_eq!(route(Method::Get, "/rooms/a/history"), room("a", Endpoint::History));
        assert_eq!(route(Method::Get, "/rooms/a/presence"), room("a", Endpoint::Presence));
        assert_eq!(route(Method::Get, "/rooms/a/stats"), room("a", Endpoint::Stats));
        assert_eq!(route(Method::Post, "/rooms/a/kick"), room("a", Endpoint::Kick));
        assert_eq!(route(Method::Get, "/dev/token"), Ok(Route::DevToken));
        assert_eq!(route(Method::Get, "/session/ws"), Ok(Route::Session));
        assert_eq!(route(Method::Post, "/session/ws").unwrap_err().status(), 405);
        assert_eq!(route(Method::Get, "/session/ws/x").unwrap_err().status(), 404);
        assert_eq!(route(Method::Delete, "/sessions/alice"), Ok(Route::CloseSession { user: "alice".into() }));
        assert_eq!(route(Method::Get, "/sessions/alice").unwrap_err().status(), 405);
        assert_eq!(route(Method::Delete, "/sessions/a%20b").unwrap_err().status(), 400);
        let status = |m, p| route(m, p).unwrap_err().status();
        assert_eq!(status(Method::Get, "/rooms/a/kick"), 405);
        assert_eq!(status(Method::Post, "/rooms/a/ws"), 405);
        assert_eq!(status(Method::Other, "/rooms/a/history"), 405);
        assert_eq!(route(Method::Options, "/rooms/a/history"), Ok(Route::Preflight { room: "a".into(), endpoint: Endpoint::History }));
        assert_eq!(status(Method::Options, "/rooms/a/messages"), 405, "only history is offered to pages");
        assert_eq!(status(Method::Get, "/rooms/a/nope"), 404);
        assert_eq!(status(Method::Get, "/rooms/a/ws/"), 404);
        assert_eq!(status(Method::Get, "/rooms/a%20b/ws"), 400);
        assert_eq!(status(Method::Get, "/rooms//ws"), 400);
        assert_eq!(status(Method::Get, "/elsewhere"), 404);
        assert_eq!(status(Method::Post, "/dev/token"), 405);
        assert_eq!(route(Method::Delete, "/rooms/a/history"), room("a", Endpoint::DeleteHistory));
        assert_eq!(route(Method::Post, "/rooms/a/webhooks/requeue"), room("a", Endpoint::RequeueWebhooks));
        assert_eq!(status(Method::Get, "/rooms/a/webhooks/requeue"), 405);
        assert_eq!(status(Method::Post, "/rooms/a%20b/webhooks/requeue"), 400);
        assert_eq!(status(Method::Post, "/rooms/a/webhooks"), 404);
        assert_eq!(status(Method::Post, "/rooms/a/webhooks/requeue/x"), 404);
        assert_eq!(status(Method::Delete, "/rooms/a/messages"), 405);
        assert_eq!(status(Method::Post, "/rooms/a/history"), 405);
    }

    #[test]
    fn key_only_endpoints() {
        assert_eq!(Endpoint::Kick.access(), Access::Key);
        assert_eq!(Endpoint::Stats.access(), Access::Key);
        assert_eq!(Endpoint::DeleteHistory.access(), Access::Key);
        assert_eq!(Endpoint::RequeueWebhooks.access(), Access::Key);
        assert_eq!(Endpoint::Publish.access(), Access::KeyOrRight(Right::Publish));
    }

    proptest! {
        /// Any path and method: a route or a documented refusal, never a panic; a routed room name
        /// is always valid.
        #[test]
        fn arbitrary_paths(path in "(/[a-z:%._ -]{0,12}){0,5}", post in any::<bool>()) {
            let method = if post { Method::Post } else { Method::Get };
            match route(method, &path) {
                Ok(Route::Room { room, endpoint }) => {
                    prop_assert!(name::validate_room(&room).is_ok());
                    prop_assert_eq!(endpoint.method(), method);
                }
                Ok(Route::DevToken) => prop_assert_eq!(path.as_str(), "/dev/token"),
                Ok(Route::Session) => prop_assert_eq!(path.as_str(), "/session/ws"),
                Ok(Route::CloseSession { user }) => prop_assert!(name::validate_user(&user).is_ok()),
                Ok(Route::Preflight { .. }) => prop_assert!(false, "no preflight without OPTIONS"),
                Err(r) => prop_assert!(documented::is_documented(&r)),
            }
        }
    }
}
