//! Read marks: proof that a connection reads what the room sends it.
//!
//! The runtime gives the room no way to see how much it has queued to a socket: a member that
//! stops reading makes it hold everything sent to that socket (docs/SECURITY.md), and its pings
//! are answered by the runtime whether it reads or not. So the room asks for proof: every
//! [`Room::mark_interval`] bytes sent **to that connection** (fanout, direct messages, history
//! pages, replays, errors: everything that leaves for it, counted as it leaves), the connection
//! gets a `mark` whose id only it can know (a keyed hash of the connection and the mark's number,
//! with a key the adapter draws per instance), and the client echoes it in a `read` frame once it
//! has read that far. A connection more than `UNREAD_MAX_BYTES` behind (more than
//! [`MARKS_PER_LIMIT`] marks unechoed) that is still behind [`GRACE_MS`] later is closed with 4008
//! (retryable: it resumes from history); nothing more is sent to it. Another member cannot echo
//! for it: the ids differ per connection. Fanout to everyone is counted once per message, with
//! one check over the connections per mark interval; what goes to one or a few connections is
//! counted per recipient.

use super::frames::Strike;
use super::{Action, ConnId, Recipients, Room};
use crate::close;
use crate::frame::{self, ErrorCode};
use crate::store::Store;
use sha2::{Digest, Sha256};

/// Marks per `UNREAD_MAX_BYTES`: a connection this many marks behind, and one more, is over it.
pub(super) const MARKS_PER_LIMIT: u64 = 8;
/// How long a connection may stay over the limit before it is closed: time for marks already on
/// their way to be echoed.
pub(super) const GRACE_MS: u64 = 3_000;

/// The room's side: the key, and what it has sent to everyone.
#[derive(Debug, Default)]
pub(super) struct Marks {
    /// The adapter's random key; marks are off until it is given.
    key: Option<Vec<u8>>,
    /// Bytes sent to every connection (`Recipients::All`) since this instance started.
    fanout: u64,
    /// The fanout at which the connections are next checked for a mark due.
    next_check: u64,
}

/// One connection's side.
#[derive(Debug, Default)]
pub(super) struct Reading {
    /// The room's fanout when this connection joined (it was sent what came after).
    fanout_base: u64,
    /// Bytes sent to this connection alone (or to a list it was in).
    own: u64,
    /// Its total sent at which its next mark goes out.
    next_mark_at: u64,
    /// Marks sent, and the last one it echoed.
    sent: u64,
    echoed: u64,
    /// Since when it has been over the limit (stamped at the next timeout step); `Some(None)`:
    /// over it, not stamped yet.
    over_since: Option<Option<u64>>,
}

/// A mark's id for one connection: 16 hex digits of a keyed hash.
fn mark_id(key: &[u8], conn: ConnId, index: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::new().chain_update(key).chain_update(conn.to_be_bytes()).chain_update(index.to_be_bytes()).finalize();
    digest.iter().take(8).flat_map(|b| [char::from(HEX[usize::from(b >> 4)]), char::from(HEX[usize::from(b & 15)])]).collect()
}

impl Room {
    /// Turns read marks on with `key`, random bytes from the adapter (16 or more). An instance
    /// keeps its key; a new one (after hibernation) draws another and starts counting anew.
    pub fn set_mark_key(&mut self, key: &[u8]) {
        if self.config.unread_max_bytes > 0 {
            self.marks.key = Some(key.to_vec());
            self.marks.next_check = self.mark_interval();
        }
    }

    /// Bytes between marks: an eighth of `UNREAD_MAX_BYTES`, and at least one frame of the
    /// largest size (a small setting cannot make a mark per message).
    fn mark_interval(&self) -> u64 {
        (self.config.unread_max_bytes / MARKS_PER_LIMIT).max(self.config.max_frame_bytes as u64).max(1)
    }

    /// A connection starts counting from the room's fanout now.
    pub(super) fn start_reading(&mut self, conn: ConnId) {
        let (fanout, interval) = (self.marks.fanout, self.mark_interval());
        if let Some(live) = self.conns.get_mut(&conn) {
            live.reading = super::reading::Reading { fanout_base: fanout, next_mark_at: interval, ..Default::default() };
        }
    }

    /// `bytes` left for `to` (from [`Room::poll_action`]).
    pub(super) fn count_sent(&mut self, to: &Recipients, bytes: usize) {
        if self.marks.key.is_none() {
            return;
        }
        let bytes = bytes as u64;
        match to {
            Recipients::All { .. } => {
                self.marks.fanout = self.marks.fanout.saturating_add(bytes);
                if self.marks.fanout >= self.marks.next_check {
                    self.marks.next_check = self.marks.fanout.saturating_add(self.mark_interval());
                    let ids: Vec<ConnId> = self.conns.keys().copied().collect();
                    for conn in ids {
                        self.mark_if_due(conn);
                    }
                }
            }
            Recipients::One(conn) => self.add_own(*conn, bytes),
            Recipients::List(list) => {
                for &conn in list {
                    self.add_own(conn, bytes);
                }
            }
        }
    }

    fn add_own(&mut self, conn: ConnId, bytes: u64) {
        if let Some(live) = self.conns.get_mut(&conn) {
            live.reading.own = live.reading.own.saturating_add(bytes);
            self.mark_if_due(conn);
        }
    }

    /// Sends `conn` a mark if its total crossed the next one, and notes it over the limit.
    fn mark_if_due(&mut self, conn: ConnId) {
        let (fanout, interval) = (self.marks.fanout, self.mark_interval());
        let Some(key) = self.marks.key.as_deref() else { return };
        let Some(live) = self.conns.get_mut(&conn).filter(|l| !l.relayed) else { return };
        let r = &mut live.reading;
        let total = r.own.saturating_add(fanout.saturating_sub(r.fanout_base));
        if total < r.next_mark_at {
            return;
        }
        r.next_mark_at = total.saturating_add(interval);
        r.sent += 1;
        if r.sent - r.echoed > MARKS_PER_LIMIT && r.over_since.is_none() {
            r.over_since = Some(None);
        }
        let text = frame::encode_mark(&mark_id(key, conn, r.sent));
        // Pushed, not counted: a mark is not what it asks about.
        self.emit(Action::Send { to: Recipients::One(conn), text });
    }

    /// A `read` frame: the client echoes the id of a mark it read. Only the marks that could
    /// still matter are searched (a bounded cost per frame).
    pub(super) fn read_frame(&mut self, conn: ConnId, id: &str, now: u64, store: &mut impl Store) {
        let (Some(key), Some(live)) = (self.marks.key.as_deref(), self.conns.get(&conn)) else { return };
        let r = &live.reading;
        if r.sent == 0 {
            // Nothing sent by this instance: an echo of a mark from before a wake; harmless.
            return;
        }
        let from = r.echoed.max(r.sent.saturating_sub(MARKS_PER_LIMIT + 1));
        let found = (from + 1..=r.sent).rev().find(|&i| mark_id(key, conn, i) == id);
        match (found, self.conns.get_mut(&conn)) {
            (Some(index), Some(live)) => {
                let r = &mut live.reading;
                r.echoed = index;
                if r.sent - r.echoed <= MARKS_PER_LIMIT {
                    r.over_since = None;
                }
            }
            _ => {
                self.send_to(
                    conn,
                    frame::encode_error(None, ErrorCode::BadFrame, "no such read mark (echo the id of a mark this connection was sent)"),
                );
                self.strike(conn, Strike::Lasting, now, store);
            }
        }
    }

    /// When a connection over the limit is next looked at: at once to stamp it, else when its
    /// grace period ends.
    pub(super) fn reading_deadline(&self) -> Option<u64> {
        self.conns
            .values()
            .filter_map(|l| match l.reading.over_since {
                Some(None) => Some(0),
                Some(Some(t)) => Some(t.saturating_add(GRACE_MS)),
                None => None,
            })
            .min()
    }

    /// Stamps the connections that went over the limit, and closes those still over it after
    /// the grace period.
    pub(super) fn close_not_reading(&mut self, now: u64, store: &mut impl Store) {
        let mut closing = Vec::new();
        for (&conn, live) in self.conns.iter_mut() {
            match live.reading.over_since {
                Some(None) => live.reading.over_since = Some(Some(now)),
                Some(Some(t)) if t.saturating_add(GRACE_MS) <= now => closing.push(conn),
                _ => {}
            }
        }
        for conn in closing {
            self.emit(Action::Close { conn, code: close::NOT_READING.into() });
            self.handle_close(conn, now, store);
        }
    }
}
