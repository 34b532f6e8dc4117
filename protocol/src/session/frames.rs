//! The frames of a session socket: what a device sends (`handle_text`, read through one
//! envelope) and what the session sends it (a room's frames with the room's name, and its own).

use super::{Envelope, JoinStart, Output, Session, MAX_ROOMS_PER_DEVICE};
use crate::feed::Gap;
use crate::frame::ErrorCode;
use crate::relay::RelayOp;
use serde::Serialize;

pub(super) fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A room's frame with the room's name: `{"room":…,` before the rest of it. A welcome becomes
/// `joined`. The room encodes every frame as an object starting `{"type":"…"`.
pub fn with_room(room: &str, text: &str) -> String {
    let room = json_str(room);
    match text.strip_prefix("{\"type\":\"welcome\"") {
        Some(rest) => format!("{{\"type\":\"joined\",\"room\":{room}{rest}"),
        None => format!("{{\"room\":{room},{}", text.strip_prefix('{').unwrap_or(text)),
    }
}

pub(super) fn frame_type(text: &str) -> &str {
    text.strip_prefix("{\"type\":\"").and_then(|r| r.split('"').next()).unwrap_or("")
}

pub(super) fn error_frame(room: Option<&str>, id: Option<&str>, code: ErrorCode, message: &str) -> String {
    error_frame_after(room, id, code, message, None)
}

/// An error frame with how long to wait before the same frame may pass (`retryAfterMs`).
pub(super) fn error_frame_after(
    room: Option<&str>,
    id: Option<&str>,
    code: ErrorCode,
    message: &str,
    retry_after_ms: Option<u64>,
) -> String {
    #[derive(Serialize)]
    struct E<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        code: &'static str,
        message: &'a str,
        #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    }
    serde_json::to_string(&E { kind: "error", room, id, code: code.as_str(), message, retry_after_ms }).unwrap_or_default()
}

/// `left`: the socket is no longer in `room`.
pub fn encode_left(room: &str, code: u16, reason: &str) -> String {
    with_room(room, &crate::relay::encode_left(code, reason))
}

/// `watch`: a watched room's latest seq, and how many of its messages are after the user's read
/// position.
pub fn encode_watch(room: &str, seq: u64, unread: u64) -> String {
    format!("{{\"type\":\"watch\",\"room\":{},\"seq\":{seq},\"unread\":{unread}}}", json_str(room))
}

/// `session`: the first frame on a session socket.
pub fn encode_hello(user: &str, client_id: &str, expires: u64) -> String {
    format!(
        "{{\"type\":\"session\",\"user\":{},\"clientId\":{},\"expires\":{expires},\"maxRooms\":{MAX_ROOMS_PER_DEVICE}}}",
        json_str(user),
        json_str(client_id)
    )
}

/// `gap`: messages of `room` this socket cannot have.
pub fn encode_gap(room: &str, gap: &Gap) -> String {
    match gap {
        Gap::Epoch => format!("{{\"type\":\"gap\",\"room\":{},\"reason\":\"epoch\"}}", json_str(room)),
        Gap::Retention { after, until } => {
            format!("{{\"type\":\"gap\",\"room\":{},\"reason\":\"retention\",\"after\":{after},\"until\":{until}}}", json_str(room))
        }
    }
}

/// `read_position`: the user's read position in `room`.
pub fn encode_read_position(room: &str, seq: u64) -> String {
    format!("{{\"type\":\"read_position\",\"room\":{},\"seq\":{seq}}}", json_str(room))
}

impl Session {
    /// A frame from a device.
    pub fn handle_text(&mut self, device: u64, text: &str, now: u64) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        d.last_seen = now;
        if !d.budget.take(1, now) {
            d.strikes = d.strikes.saturating_add(1);
            if d.strikes > self.limits.max_strikes {
                let c = crate::close::RATE_LIMITED;
                self.out.push_back(Output::Close { device, code: c.code, reason: c.reason.into() });
                return self.handle_close(device, now);
            }
            // Only the id and room are read back, to say which frame was refused.
            let env = serde_json::from_str::<Envelope<'_>>(text).ok();
            let (room, id) = env.map_or((None, None), |e| (e.room, e.id));
            let wait = d.budget.wait_ms(1, now);
            return self.send(
                device,
                error_frame_after(
                    room.as_deref(),
                    id.as_deref(),
                    ErrorCode::RateLimited,
                    "too many frames per second; slow down",
                    Some(wait),
                ),
            );
        }
        d.strikes = 0;
        if !text.trim_start().starts_with('{') {
            return self.send(device, error_frame(None, None, ErrorCode::BadFrame, "a frame is a JSON object"));
        }
        let env: Envelope<'_> = match serde_json::from_str(text) {
            Ok(env) => env,
            Err(e) => return self.send(device, error_frame(None, None, ErrorCode::BadFrame, &e.to_string())),
        };
        let id = env.id.as_deref();
        // A socket whose token expired keeps what it watched and the read positions until a
        // refresh or the grace's end, but adds no watch and moves no position.
        let expired = self
            .devices
            .get(&device)
            .is_some_and(|d| d.info.expired.is_some() || crate::token::is_expired(d.info.claims.expires_ms(), now));
        match (env.kind.as_ref(), env.room.as_deref()) {
            ("ping", None) => self.send(device, crate::frame::PONG.to_owned()),
            ("watch", None) | ("mark_read", Some(_)) if expired => {
                self.send(device, error_frame(env.room.as_deref(), id, ErrorCode::Unauthorized, "the token expired; refresh it first"))
            }
            ("refresh", None) => match env.token.as_deref() {
                Some(t) => self.refresh(device, t, now),
                None => self.send(device, error_frame(None, None, ErrorCode::BadFrame, "refresh needs a token")),
            },
            ("join", Some(room)) => {
                let start = match (env.epoch, env.since, env.rewind) {
                    (Some(epoch), Some(since), _) if !epoch.is_empty() && epoch.len() <= 64 => JoinStart::Resume { epoch, since },
                    (None, None, Some(n)) => JoinStart::Rewind(n),
                    (None, None, None) => JoinStart::Fresh,
                    _ => {
                        return self.send(
                            device,
                            error_frame(Some(room), id, ErrorCode::BadFrame, "a resume needs both since and epoch; rewind goes alone"),
                        )
                    }
                };
                self.join(device, room, start, env.echo.unwrap_or(true), now)
            }
            ("leave", Some(room)) => self.leave(device, room, 1000, "left"),
            ("watch", None) => match env.rooms {
                Some(rooms) => self.watch(device, rooms),
                None => self.send(device, error_frame(None, id, ErrorCode::BadFrame, "watch needs rooms (a list of room names)")),
            },
            ("mark_read", Some(room)) => match env.seq {
                // A room this device was admitted to, or watches (its token granted it either way).
                Some(seq)
                    if self.devices.get(&device).is_some_and(|d| d.joins.get(room).is_some_and(|j| j.live))
                        || self.watching.get(room).is_some_and(|ds| ds.contains(&device)) =>
                {
                    self.mark_read(room, seq, now)
                }
                Some(_) => {
                    self.send(device, error_frame(Some(room), id, ErrorCode::BadFrame, "join or watch the room before marking it read"))
                }
                None => self.send(device, error_frame(Some(room), id, ErrorCode::BadFrame, "mark_read needs a seq")),
            },
            (_, Some(room)) => {
                if !self.devices.get(&device).is_some_and(|d| d.joins.contains_key(room)) {
                    return self.send(device, error_frame(Some(room), id, ErrorCode::BadFrame, "this device has not joined that room"));
                }
                let (room, text) = (room.to_owned(), text.to_owned());
                self.out.push_back(Output::Relay { room, device, op: RelayOp::Text { device, text } });
            }
            (_, None) => self.send(device, error_frame(None, id, ErrorCode::BadFrame, "a room frame needs a room")),
        }
    }
}
