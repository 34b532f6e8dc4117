//! Joining and leaving rooms: a device's join checked against its token, the room's answers,
//! the welcome that makes a join live, leaves (asked, refused, or by the room), refreshes.

use super::frames::{encode_left, error_frame, frame_type, json_str, with_room};
use super::{Envelope, Join, JoinRow, JoinStart, Output, Row, Session, WelcomeHead, MAX_ROOMS_PER_DEVICE, READ_RETRIES};
use crate::feed::Position;
use crate::frame::ErrorCode;
use crate::relay::{RelayIdentity, RelayOp, RelayResult};
use crate::token;

impl Session {
    pub(super) fn join(&mut self, device: u64, room: &str, start: JoinStart, echo: bool, now: u64) {
        if let Err(e) = crate::name::validate_room(room) {
            return self.send(device, error_frame(Some(room), None, ErrorCode::BadFrame, &e.to_string()));
        }
        let Some(d) = self.devices.get_mut(&device) else { return };
        if d.joins.contains_key(room) {
            return self.send(device, error_frame(Some(room), None, ErrorCode::BadFrame, "already joined; leave first"));
        }
        if d.joins.len() >= MAX_ROOMS_PER_DEVICE {
            let message = format!("a device joins at most {MAX_ROOMS_PER_DEVICE} rooms");
            return self.send(device, error_frame(Some(room), None, ErrorCode::BadFrame, &message));
        }
        let claims = &d.info.claims;
        if token::is_expired(claims.expires_ms(), now) {
            let c = crate::close::TOKEN_EXPIRED;
            return self.send(device, encode_left(room, c.code, c.reason));
        }
        let rights = claims.rights_for(room);
        if !rights.subscribe {
            let c = crate::close::FORBIDDEN;
            return self.send(device, encode_left(room, c.code, "the token does not grant this room"));
        }
        let identity = RelayIdentity {
            cid: d.info.client_id.clone(),
            user: self.user.clone(),
            meta: claims.meta.clone(),
            echo,
            rights,
            expires: claims.expires_ms(),
        };
        d.joins.insert(room.to_owned(), Join { start: start.clone(), echo, live: false, reading: false, read_failures: 0 });
        self.out.push_back(Output::Save(Row::Join(JoinRow { device, room: room.to_owned(), start, echo, live: false })));
        self.out.push_back(Output::Relay { room: room.to_owned(), device, op: RelayOp::Open { device, identity } });
    }

    /// The device leaves `room` (it asked, the room refused or closed it, or the token lost the
    /// right): `left` goes to it, the room's connection closes.
    pub(super) fn leave(&mut self, device: u64, room: &str, code: u16, reason: &str) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        let Some(join) = d.joins.remove(room) else {
            return self.send(device, error_frame(Some(room), None, ErrorCode::BadFrame, "this device has not joined that room"));
        };
        d.cursor.unfollow(room);
        let row = JoinRow { device, room: room.to_owned(), start: join.start, echo: join.echo, live: join.live };
        self.out.push_back(Output::Delete(Row::Join(row).key()));
        self.out.push_back(Output::Relay { room: room.to_owned(), device, op: RelayOp::Close { device } });
        self.send(device, encode_left(room, code, reason));
        self.drop_unjoined_rooms();
    }

    /// A room no device has joined any more is not followed (the room's next call is answered
    /// with no position, and it stops).
    pub(super) fn drop_unjoined_rooms(&mut self) {
        // The followed rooms, in order (a joined room is never dropped, so the joined rooms need
        // no merging in: that sort was 4.8 KB of the Worker's wasm).
        for room in self.followed() {
            if !self.devices.values().any(|d| d.joins.contains_key(&room)) {
                self.feed.unfollow(&room);
                self.out.push_back(Output::Delete(format!("f {room}")));
            }
        }
    }

    pub(super) fn followed(&self) -> Vec<String> {
        self.feed.rooms().map(str::to_owned).collect()
    }

    /// A fresh token for a device: it must verify and be for this session's user. Every room
    /// the device joined is checked again: those it no longer grants are left (4403), the
    /// others get the token too (each room checks it against its name, as for a socket).
    pub(super) fn refresh(&mut self, device: u64, token_text: &str, now: u64) {
        let keys = [self.secrets.current.as_slice(), self.secrets.previous.as_slice()];
        let claims = match token::verify_any(token_text, &keys, now) {
            Ok(c) => c,
            Err(e) => return self.send(device, error_frame(None, None, ErrorCode::Unauthorized, &e.to_string())),
        };
        if claims.sub != self.user {
            return self.send(device, error_frame(None, None, ErrorCode::Forbidden, "the token is for another user"));
        }
        let Some(d) = self.devices.get_mut(&device) else { return };
        let expires = claims.expires_ms();
        d.info.claims = claims;
        // A device whose token had expired (its rooms left) may join again.
        d.info.expired = None;
        self.out.push_back(Output::Attach { device });
        let rooms: Vec<String> = d.joins.keys().cloned().collect();
        let frame = format!("{{\"type\":\"refresh\",\"token\":{}}}", json_str(token_text));
        for room in rooms {
            let granted = self.devices.get(&device).is_some_and(|d| d.info.claims.rights_for(&room).subscribe);
            if granted {
                self.out.push_back(Output::Relay { room, device, op: RelayOp::Text { device, text: frame.clone() } });
            } else {
                let c = crate::close::FORBIDDEN;
                self.leave(device, &room, c.code, "the token no longer grants this room");
            }
        }
        self.send(device, format!("{{\"type\":\"refreshed\",\"expires\":{expires}}}"));
    }

    /// A room answered one op the session asked of it for `device`.
    pub fn handle_relay_result(&mut self, room: &str, device: u64, result: RelayResult) {
        match result {
            RelayResult::Refused { code, reason } => {
                let Some(d) = self.devices.get_mut(&device) else { return };
                let Some(join) = d.joins.remove(room) else { return };
                d.cursor.unfollow(room);
                let live = join.live;
                let row = JoinRow { device, room: room.to_owned(), start: join.start, echo: join.echo, live };
                self.out.push_back(Output::Delete(Row::Join(row).key()));
                self.send(device, encode_left(room, code, &reason));
                if live {
                    // A refused read (the read budget) leaves the device's connection open in
                    // the room: it closes too. A refused open has none, and a call for it
                    // would only wake (or make) the room for nothing.
                    self.out.push_back(Output::Relay { room: room.to_owned(), device, op: RelayOp::Close { device } });
                }
                self.drop_unjoined_rooms();
            }
            RelayResult::Page(page) => self.caught_up_by(room, device, page),
            RelayResult::Done | RelayResult::Unknown => {}
        }
    }

    /// A relay call failed as a whole (the room could not be reached): the device's join fails
    /// like a refused one, with 1011, so it may try again.
    pub fn handle_relay_failure(&mut self, room: &str, device: u64, op: &RelayOp) {
        match op {
            RelayOp::Open { .. } => {
                self.handle_relay_result(room, device, RelayResult::Refused { code: 1011, reason: "the room could not be reached".into() })
            }
            RelayOp::Read { .. } => {
                // Try again: the device stays behind until its read succeeds; past a few
                // failures in a row, at the room's next feed call.
                let Some(j) = self.devices.get_mut(&device).and_then(|d| d.joins.get_mut(room)) else { return };
                j.reading = false;
                j.read_failures = j.read_failures.saturating_add(1);
                if j.read_failures <= READ_RETRIES {
                    self.catch_up(room, device);
                }
            }
            RelayOp::Text { text, .. } => {
                let id = serde_json::from_str::<Envelope<'_>>(text).ok().and_then(|e| e.id);
                self.send(device, error_frame(Some(room), id.as_deref(), ErrorCode::Storage, "the room could not be reached; retry"));
            }
            RelayOp::Close { .. } | RelayOp::Watch { .. } => {}
        }
    }

    /// One extra from the room for `device`.
    pub(super) fn extra(&mut self, room: &str, device: u64, text: String) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        let Some(join) = d.joins.get_mut(room) else { return };
        match frame_type(&text) {
            "welcome" => {
                let Ok(head) = serde_json::from_str::<WelcomeHead>(&text) else { return };
                join.live = true;
                let (start, echo) = (join.start.clone(), join.echo);
                // What the welcome says of the join's start, as a room socket's welcome would
                // (`resume` for a resume point, `rewind` for the last N): the messages it promises
                // follow it, read from history.
                let (from, said) = match &start {
                    JoinStart::Fresh => (head.seq, String::new()),
                    JoinStart::Rewind(n) => {
                        let from = head.seq.saturating_sub(*n);
                        (from, format!(",\"rewind\":{{\"replayed\":{}}}", head.seq - from))
                    }
                    JoinStart::Resume { epoch, since } if *epoch == head.epoch && *since <= head.seq => {
                        (*since, format!(",\"resume\":{{\"status\":\"recovered\",\"replayed\":{}}}", head.seq - since))
                    }
                    JoinStart::Resume { epoch, since } => {
                        let reason = if *epoch == head.epoch { "ahead" } else { "epoch" };
                        (head.seq, format!(",\"resume\":{{\"status\":\"not_recovered\",\"reason\":\"{reason}\",\"since\":{since}}}"))
                    }
                };
                d.cursor.follow(room, Position { epoch: head.epoch.clone(), seq: from });
                let read = self.reads.get(room).map(|r| format!(",\"read\":{}", r.0)).unwrap_or_default();
                // `{"type":"joined","room":…` and the user's read position and the start's
                // outcome, then the rest of the room's welcome.
                let joined = with_room(room, &text);
                let at = joined.find(",\"epoch\":").unwrap_or(joined.len());
                let joined = format!("{}{read}{said}{}", joined.get(..at).unwrap_or_default(), joined.get(at..).unwrap_or_default());
                self.send(device, joined);
                let row = JoinRow { device, room: room.to_owned(), start, echo, live: true };
                self.out.push_back(Output::Save(Row::Join(row)));
                // Everything up to the welcome's seq (and what the session has beyond it) comes
                // from history; then the feed.
                let target = self.feed.position(room).cloned();
                let needs = target.is_none_or(|t| t.epoch != head.epoch || t.seq < head.seq);
                if needs {
                    let extras = self.feed.answer(room).map_or(0, |a| a.extras);
                    self.feed.follow_with(room, Position { epoch: head.epoch.clone(), seq: head.seq }, extras);
                }
                self.catch_up(room, device);
            }
            "left" => {
                d.joins.remove(room);
                d.cursor.unfollow(room);
                self.out.push_back(Output::Delete(format!("j {device} {room}")));
                self.send(device, with_room(room, &text));
                self.drop_unjoined_rooms();
            }
            // The session answers a device's refresh itself, once for all its rooms.
            "refreshed" => {}
            _ => self.send(device, with_room(room, &text)),
        }
    }
}
