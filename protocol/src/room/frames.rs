//! Client frames: the checks every frame passes before it is read (the connection's token, the
//! frame limit, the byte rate, the shape), the checks a decoded frame passes before it is acted
//! on (its right and rate: [`Gate`]), then one `*_frame` handler per frame type. A refused frame
//! is answered with an error and counts a strike.
//!
//! A frame over the frame limit is never read (the adapter hands over only its length and first
//! bytes when it knows that much without copying it: [`Room::handle_oversized`]). It costs its
//! bytes all the same, and a strike that accepted frames never take away; one larger than the
//! bytes the connection has left closes it at once (4009). So a peer that makes the runtime
//! inflate or carry huge frames gets one of them in per connection, not one per ping.

use super::{expiry_deadline, Action, ConnId, Page, PublishError, ReadError, Recipients, Room};
use crate::close;
use crate::compact::CompactJson;
use crate::frame::{self, ClientFrame, ErrorCode, MessageFrame, Target};
use crate::store::{Store, StoredMessage};
use crate::token;

impl Room {
    /// A text frame arrived from a connection.
    pub fn handle_text(&mut self, conn: ConnId, text: &str, now: u64, store: &mut impl Store) {
        let Some(frame) = self.screen(conn, text, now, store) else { return };
        match frame {
            // Heartbeats and refreshes that reach the room take a message token like any frame,
            // so a flood of them is cut off like a flood of publishes.
            ClientFrame::Ping => {
                if self.pass(conn, None, Gate::Message, now, store) {
                    self.send_to(conn, frame::PONG.to_owned());
                }
            }
            // Not rate-limited (a client at its publish rate must still be able to prove it reads);
            // its bytes were counted, and an id that is no mark is a strike that lasts.
            ClientFrame::Read { id } => self.read_frame(conn, &id, now, store),
            ClientFrame::Refresh { token } => {
                if self.pass(conn, None, Gate::Message, now, store) {
                    self.refresh_frame(conn, &token, now);
                }
            }
            ClientFrame::Publish { id, data } => {
                if self.pass(conn, Some(&id), Gate::Publish, now, store) {
                    self.publish_frame(conn, &id, &data, now, store);
                }
            }
            ClientFrame::Direct { id, to, data } => {
                if self.pass(conn, Some(&id), Gate::Publish, now, store) {
                    self.direct_frame(conn, &id, &to, &data, false, now);
                }
            }
            ClientFrame::Input { id, to, data } => {
                if self.pass(conn, Some(&id), Gate::Input, now, store) {
                    self.direct_frame(conn, &id, &to, &data, true, now);
                }
            }
            ClientFrame::History { id, limit, before, since } => {
                if self.pass(conn, Some(&id), Gate::Message, now, store) {
                    let page = match (before, since) {
                        (Some(b), _) => Page::Before(b),
                        (None, Some(s)) => Page::After(s),
                        (None, None) => Page::Latest,
                    };
                    self.history_frame(conn, &id, page, limit.unwrap_or(100), now, store);
                }
            }
            ClientFrame::Broadcast { id, data } => {
                if self.pass(conn, id.as_deref(), Gate::Broadcast(text.len()), now, store) {
                    self.broadcast_frame(conn, id.as_deref(), &data, now);
                }
            }
            ClientFrame::SetPresence { id, meta } => {
                if self.pass(conn, Some(&id), Gate::Presence(meta.len()), now, store) {
                    self.presence_frame(conn, &id, meta, now);
                }
            }
        }
    }

    /// A text frame of at least `len` UTF-8 bytes, more than the frame limit, arrived; `head` is
    /// its start (at most [`frame::ID_PREFIX_SCAN`] bytes are read, for its id). For an adapter
    /// that can tell a frame's size before copying it (a JS string's UTF-16 length is at most its
    /// UTF-8 length): the frame is refused as [`Room::handle_text`] would refuse it, unread.
    pub fn handle_oversized(&mut self, conn: ConnId, len: usize, head: &str, now: u64, store: &mut impl Store) {
        if !self.heed(conn, now, store) {
            return;
        }
        let id = frame::salvage_id_prefix(head, self.config.message_id_max);
        self.oversized(conn, id, len, now, store);
    }

    /// A binary frame arrived; the protocol is text only. Refused like an invalid text frame: its
    /// bytes are counted and it is a strike, so a flood of binary frames is cut off like any
    /// other; over the frame limit, like an oversized text frame.
    pub fn handle_binary(&mut self, conn: ConnId, len: usize, now: u64, store: &mut impl Store) {
        if !self.saw(conn, now) {
            return;
        }
        if len > self.config.max_frame_bytes {
            return self.oversized(conn, None, len, now, store);
        }
        let Some(live) = self.conns.get_mut(&conn) else { return };
        if !live.bytes.take(len as u64, now) {
            let wait = live.bytes.wait_ms(len as u64, now);
            return self.refuse_after(conn, None, ErrorCode::RateLimited, "too many bytes per second; slow down", Some(wait), now, store);
        }
        self.refuse(conn, None, ErrorCode::BadFrame, "binary frames are not part of the protocol; send JSON text", now, store);
    }

    /// The checks every text frame passes before it is read: the frame limit, the connection's
    /// byte rate, and the frame's shape. Refused, the sender gets an error and a strike.
    fn screen<'t>(&mut self, conn: ConnId, text: &'t str, now: u64, store: &mut impl Store) -> Option<ClientFrame<'t>> {
        if !self.heed(conn, now, store) {
            return None;
        }
        if text.len() > self.config.max_frame_bytes {
            // Not parsed (a frame over the limit is not worth the CPU); its id is read from its
            // start when the client put it there, so the refusal settles the right publish.
            let id = frame::salvage_id_prefix(text, self.config.message_id_max);
            self.oversized(conn, id, text.len(), now, store);
            return None;
        }
        let len = text.len() as u64;
        if let Some(wait) = self.conns.get_mut(&conn).and_then(|l| (!l.bytes.take(len, now)).then(|| l.bytes.wait_ms(len, now))) {
            // Not parsed either; the id from the frame's start settles the right publish.
            let id = frame::salvage_id_prefix(text, self.config.message_id_max).map(str::to_owned);
            self.refuse_after(conn, id.as_deref(), ErrorCode::RateLimited, "too many bytes per second; slow down", Some(wait), now, store);
            return None;
        }
        match frame::decode_client(text, self.config.message_id_max) {
            Ok(frame) => Some(frame),
            Err(e) => {
                let id = frame::salvage_id(text);
                let msg = e.to_string();
                self.refuse(conn, id.as_deref(), e.code(), &msg, now, store);
                None
            }
        }
    }

    /// Whether a decoded frame may be acted on: the right it needs and its rate. Refused, the
    /// sender gets an error and a strike; passed, one strike is forgiven.
    fn pass(&mut self, conn: ConnId, id: Option<&str>, gate: Gate, now: u64, store: &mut impl Store) -> bool {
        let Some(live) = self.conns.get_mut(&conn) else { return false };
        let refusal = match gate {
            Gate::Publish | Gate::Broadcast(_) | Gate::Presence(_) if !live.info.rights.publish => {
                Some((ErrorCode::Forbidden, "this token may not send to this room"))
            }
            Gate::Input if !live.info.rights.input => Some((ErrorCode::Forbidden, "this token may not type into this room")),
            // A session device never types into a terminal, whatever its token says: the wire
            // drops the right at open, but a `refresh` (the session's, or one the device sends
            // with a room) sets the rights afresh from a token that may hold it.
            Gate::Input if live.relayed => Some((ErrorCode::Forbidden, "a session device may not type into a terminal")),
            Gate::Broadcast(len) if len > self.config.broadcast_max_bytes => {
                Some((ErrorCode::TooLarge, "broadcast is larger than the room's broadcast limit"))
            }
            Gate::Presence(len) if len > self.config.presence_meta_max => {
                Some((ErrorCode::TooLarge, "presence meta is larger than the room's limit"))
            }
            Gate::Message | Gate::Publish | Gate::Input if !live.messages.take(1, now) => {
                Some((ErrorCode::RateLimited, "too many messages per second; slow down"))
            }
            Gate::Broadcast(_) | Gate::Presence(_) if !live.broadcasts.take(1, now) => {
                Some((ErrorCode::RateLimited, "too many broadcasts per second; slow down"))
            }
            _ => None,
        };
        // A rate refusal says when the bucket it emptied has a token again.
        let wait = match gate {
            Gate::Message | Gate::Publish => live.messages.wait_ms(1, now),
            _ => live.broadcasts.wait_ms(1, now),
        };
        match refusal {
            Some((code, message)) => {
                let wait = (code == ErrorCode::RateLimited).then_some(wait);
                self.refuse_after(conn, id, code, message, wait, now, store);
                false
            }
            None => {
                live.strikes = live.strikes.saturating_sub(1);
                true
            }
        }
    }

    /// Whether a text frame from `conn` is looked at: the connection is the room's (the frame is
    /// a sign of life) and its token has not expired.
    fn heed(&mut self, conn: ConnId, now: u64, store: &mut impl Store) -> bool {
        if !self.saw(conn, now) {
            return false;
        }
        // Past its token's expiry (and the leeway) a connection acts no more, even if the alarm
        // that closes it has not run yet.
        if self.conns.get(&conn).and_then(|l| l.info.expires).is_some_and(|exp| expiry_deadline(exp) <= now) {
            self.emit(Action::Close { conn, code: close::TOKEN_EXPIRED.into() });
            self.handle_close(conn, now, store);
            return false;
        }
        true
    }

    /// A frame of `len` bytes over the frame limit, unread. Its bytes are charged to the byte rate
    /// even though it is refused (they crossed the wire, and the runtime carried them); when the
    /// connection had fewer left, the frame was larger than anything it may send now and it is
    /// closed at once (4009). Otherwise it gets `too_large` (with the id, when its start gave
    /// one) and a strike that accepted frames never take away.
    fn oversized(&mut self, conn: ConnId, id: Option<&str>, len: usize, now: u64, store: &mut impl Store) {
        let Some(live) = self.conns.get_mut(&conn) else { return };
        let covered = live.bytes.charge(len as u64, now);
        // The error in either case, first, so a client can tell which frame it was.
        self.send_to(conn, frame::encode_error(id, ErrorCode::TooLarge, "frame is larger than the room's frame limit"));
        if covered {
            return self.strike(conn, Strike::Lasting, now, store);
        }
        self.emit(Action::Close { conn, code: close::FRAME_TOO_LARGE.into() });
        self.handle_close(conn, now, store);
    }

    /// A frame arrived from `conn`: a sign of life, saved in its attachment once the saved one is a
    /// quarter timeout old (so it survives a wake). False for a connection the room does not hold.
    fn saw(&mut self, conn: ConnId, now: u64) -> bool {
        let save_every = (self.config.heartbeat_timeout_ms / 4).max(1);
        let Some(live) = self.conns.get_mut(&conn) else { return false };
        live.last_seen = now;
        if now.saturating_sub(live.info.seen) >= save_every {
            live.info.seen = now;
            self.changed.push_back(conn);
        }
        true
    }

    /// Answers a refused frame with an error and counts a strike; enough strikes (with the
    /// oversized frames') close the connection (4029), so a flood costs the room one cheap check
    /// per frame and then nothing.
    pub(super) fn refuse(&mut self, conn: ConnId, id: Option<&str>, code: ErrorCode, message: &str, now: u64, store: &mut impl Store) {
        self.refuse_after(conn, id, code, message, None, now, store);
    }

    /// [`Room::refuse`], with how long to wait before the same frame may pass (`retryAfterMs`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn refuse_after(
        &mut self,
        conn: ConnId,
        id: Option<&str>,
        code: ErrorCode,
        message: &str,
        retry_after_ms: Option<u64>,
        now: u64,
        store: &mut impl Store,
    ) {
        self.send_to(conn, frame::encode_error_after(id, code, message, retry_after_ms));
        self.strike(conn, Strike::Forgivable, now, store);
    }

    pub(super) fn strike(&mut self, conn: ConnId, kind: Strike, now: u64, store: &mut impl Store) {
        let Some(live) = self.conns.get_mut(&conn) else { return };
        match kind {
            Strike::Forgivable => live.strikes += 1,
            Strike::Lasting => live.oversized += 1,
        }
        if live.strikes.saturating_add(live.oversized) >= self.config.max_strikes {
            self.emit(Action::Close { conn, code: close::POLICY_VIOLATION.into() });
            self.handle_close(conn, now, store);
        }
    }

    fn publish_frame(&mut self, conn: ConnId, id: &str, data: &CompactJson, now: u64, store: &mut impl Store) {
        let (from, user, echo) = {
            let info = &self.conns[&conn].info;
            (info.client_id.clone(), info.user.clone(), info.echo)
        };
        let except = if echo { None } else { Some(conn) };
        match self.append(&from, &user, Some(id), data, except, false, now, store) {
            Ok(p) => self.send_to(conn, frame::encode_ack(id, p.seq, p.duplicate)),
            // Not the sender's fault: no strike.
            Err(e @ PublishError::Backpressure { .. }) => {
                self.send_to(conn, frame::encode_error(Some(id), ErrorCode::Backpressure, &e.to_string()))
            }
            Err(e) => {
                let msg = e.to_string();
                self.send_to(conn, frame::encode_error(Some(id), ErrorCode::Storage, &msg))
            }
        }
    }

    /// A direct message. `{clientId}` reaches the connections with that client id, which all
    /// belong to one user (client ids are bound to users, see `bind_client_id`); `{user}` reaches
    /// every connection of the user. A sender without the presence right learns nothing about who
    /// is online: the ack never says how many connections got it, and a missing recipient is not
    /// reported. `input`: a terminal's input (an `input` frame), delivered the same way.
    fn direct_frame(&mut self, conn: ConnId, id: &str, to: &Target<'_>, data: &CompactJson, input: bool, now: u64) {
        let targets: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(cid, live)| {
                **cid != conn
                    && match to {
                        Target::Client(c) => live.info.client_id == *c,
                        Target::User(u) => live.info.user == *u,
                    }
            })
            .map(|(cid, _)| *cid)
            .collect();
        let (sees_presence, text) = {
            let info = &self.conns[&conn].info;
            let encode = if input { frame::encode_input } else { frame::encode_direct };
            (info.rights.presence, encode(&info.client_id, &info.user, data, now))
        };
        if targets.is_empty() && sees_presence {
            self.send_to(conn, frame::encode_error(Some(id), ErrorCode::NoRecipient, "no connection in the room matches the target"));
            return;
        }
        let delivered = targets.len();
        if delivered > 0 {
            self.messages_out += delivered as u64;
            self.emit(Action::Send { to: Recipients::List(targets), text });
        }
        self.send_to(conn, frame::encode_direct_ack(id, sees_presence.then_some(delivered)));
    }

    /// A `history` request over the socket: answered with one `history` frame, or an error.
    fn history_frame(&mut self, conn: ConnId, id: &str, page: Page, limit: usize, now: u64, store: &mut impl Store) {
        let user = self.conns[&conn].info.user.clone();
        match self.read_history(&user, page, limit, now, store) {
            Ok(page) => {
                let texts: Vec<String> = page.messages.iter().map(encode_stored).collect();
                self.send_to(conn, frame::encode_history(id, &texts, page.more));
            }
            Err(e @ ReadError::RateLimited { retry_after_ms }) => {
                self.send_to(conn, frame::encode_error_after(Some(id), ErrorCode::RateLimited, &e.to_string(), Some(retry_after_ms)))
            }
            Err(e @ ReadError::Banned) => self.send_to(conn, frame::encode_error(Some(id), ErrorCode::Forbidden, &e.to_string())),
            Err(ReadError::Store(e)) => self.send_to(conn, frame::encode_error(Some(id), ErrorCode::Storage, &e.to_string())),
        }
    }

    /// An ephemeral message: to every other connection now (to the sender too with echo on), in
    /// the room's one order of frames, but never stored, replayed or counted in `seq`.
    fn broadcast_frame(&mut self, conn: ConnId, id: Option<&str>, data: &CompactJson, now: u64) {
        let (text, echo) = {
            let info = &self.conns[&conn].info;
            (frame::encode_broadcast(&info.client_id, &info.user, data, now), info.echo)
        };
        let except = if echo { None } else { Some(conn) };
        let recipients = self.conns.len() - usize::from(except.is_some());
        self.messages_out += recipients as u64;
        self.emit(Action::Send { to: Recipients::All { except }, text });
        if let Some(id) = id {
            self.send_to(conn, frame::encode_done(id));
        }
    }

    /// This connection's presence metadata is now `meta`: it replaces the token's for this
    /// connection, and the member's meta is that of their newest connection that has one. The
    /// others hear it as a presence `update`, coalesced per user (`PRESENCE_RATE_PER_SEC`).
    fn presence_frame(&mut self, conn: ConnId, id: &str, meta: CompactJson, now: u64) {
        let Some(live) = self.conns.get_mut(&conn) else { return };
        live.info.meta = Some(meta.clone());
        let user = live.info.user.clone();
        self.presence.set_meta(&user, conn, Some(meta));
        self.changed.push_back(conn);
        self.presence_changed(&user, None, now);
        self.send_to(conn, frame::encode_done(id));
    }

    /// A fresh token for a live connection: it must verify, be for the same user and still grant
    /// this room; its rights and expiry then replace the old ones. Refused, the connection keeps
    /// its old token (and is closed when that expires).
    fn refresh_frame(&mut self, conn: ConnId, token_text: &str, now: u64) {
        let Some(check) = &self.token_check else {
            return self.send_to(conn, frame::encode_error(None, ErrorCode::Unauthorized, "this room cannot verify tokens"));
        };
        let claims = match token::verify_any(token_text, &[&check.secret, &check.previous], now) {
            Ok(claims) => claims,
            Err(e) => return self.send_to(conn, frame::encode_error(None, ErrorCode::Unauthorized, &e.to_string())),
        };
        let rights = claims.rights_for(&check.room);
        let Some(live) = self.conns.get_mut(&conn) else { return };
        if claims.sub != live.info.user {
            return self.send_to(conn, frame::encode_error(None, ErrorCode::Forbidden, "the token is for another user"));
        }
        if !rights.subscribe {
            return self.send_to(conn, frame::encode_error(None, ErrorCode::Forbidden, "the token does not grant this room"));
        }
        let expires = claims.exp.saturating_mul(1000);
        if let Some(old) = live.info.expires {
            self.expiries.remove(&(expiry_deadline(old), conn));
        }
        live.info.rights = rights;
        live.info.expires = Some(expires);
        self.expiries.insert((expiry_deadline(expires), conn));
        self.changed.push_back(conn);
        self.send_to(conn, frame::encode_refreshed(expires));
    }
}

/// A strike that a frame passing its checks takes away again, or one it never does (a frame
/// over the frame limit).
#[derive(Debug, Clone, Copy)]
pub(super) enum Strike {
    Forgivable,
    Lasting,
}

/// What a decoded frame needs before it is acted on (see `Room::pass`).
#[derive(Debug, Clone, Copy)]
enum Gate {
    /// A message token.
    Message,
    /// The publish right and a message token.
    Publish,
    /// The publish right, a broadcast token, and a frame of this size within the broadcast limit.
    Broadcast(usize),
    /// The publish right, a broadcast token, and meta of this size within the meta limit.
    Presence(usize),
    /// The input right and a message token.
    Input,
}

/// The `message` frame of a stored message.
pub fn encode_stored(m: &StoredMessage) -> String {
    frame::encode_message(&MessageFrame {
        kind: "message",
        seq: m.seq,
        from: &m.from,
        user: &m.user,
        id: m.id.as_deref(),
        data: &m.data,
        ts: m.ts,
    })
}
