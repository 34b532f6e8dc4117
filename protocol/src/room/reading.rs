//! Read marks: proof that a connection reads what the room sends it.
//!
//! The runtime gives the room no way to see how much it has queued to a socket: a member that
//! stops reading makes it hold everything sent to that socket (docs/SECURITY.md), and its pings
//! are answered by the runtime whether it reads or not. So the room asks for proof: every eighth
//! of `UNREAD_MAX_BYTES` of fanout it sends each connection a `mark` with an id only that
//! connection can know (a keyed hash of the connection and the mark's number, with a key drawn
//! by the adapter), and the client echoes it in a `read` frame once it has read that far. A
//! connection that has not echoed any of the marks sent over the last `UNREAD_MAX_BYTES` of
//! fanout is closed with 4008 (retryable: it resumes from history). Another member cannot echo
//! for it: the ids differ per connection. Counting only what goes to many connections keeps the
//! cost per message O(1); the marks cost one small frame per connection per eighth of the limit.

use super::{Action, ConnId, Room};
use crate::close;
use crate::frame::{self, ErrorCode};
use crate::store::Store;
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;

/// Marks sent over the last `UNREAD_MAX_BYTES` of fanout: one more unechoed and the connection is
/// closed.
const MARKS_PER_LIMIT: u64 = 8;

#[derive(Debug, Default)]
pub(super) struct Marks {
    /// The adapter's random key; marks are off until it is given.
    key: Option<Vec<u8>>,
    /// Bytes sent to many connections since this instance started.
    fanout: u64,
    /// The fanout at which the next mark goes out.
    next_at: u64,
    /// Marks sent so far (the last one's number).
    index: u64,
    /// Connections found not reading, closed at the next step (`handle_timeout`).
    pub(super) not_reading: BTreeSet<ConnId>,
}

/// A mark's id for one connection: 16 hex digits of a keyed hash.
fn mark_id(key: &[u8], conn: ConnId, index: u64) -> String {
    let digest = Sha256::new().chain_update(key).chain_update(conn.to_be_bytes()).chain_update(index.to_be_bytes()).finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl Room {
    /// Turns read marks on with `key`, random bytes from the adapter (16 or more). An instance
    /// keeps its key; a new instance (after hibernation) draws another and starts counting anew.
    pub fn set_mark_key(&mut self, key: &[u8]) {
        if self.config.unread_max_bytes > 0 {
            self.marks.key = Some(key.to_vec());
            self.marks.next_at = self.mark_interval();
        }
    }

    fn mark_interval(&self) -> u64 {
        (self.config.unread_max_bytes / MARKS_PER_LIMIT).max(1)
    }

    /// `bytes` left for many connections (from [`Room::poll_action`]).
    pub(super) fn count_fanout(&mut self, bytes: usize) {
        let Some(key) = self.marks.key.clone() else { return };
        self.marks.fanout = self.marks.fanout.saturating_add(bytes as u64);
        while self.marks.fanout >= self.marks.next_at {
            self.marks.next_at = self.marks.next_at.saturating_add(self.mark_interval());
            self.marks.index += 1;
            let index = self.marks.index;
            for (&conn, live) in self.conns.iter_mut() {
                // A connection's count starts at the first mark it is sent.
                let echoed = *live.read_mark.get_or_insert(index - 1);
                if index - echoed > MARKS_PER_LIMIT {
                    self.marks.not_reading.insert(conn);
                }
                let text = frame::encode_mark(&mark_id(&key, conn, index));
                self.actions.push_back(Action::Send { to: super::Recipients::One(conn), text });
            }
        }
    }

    /// A `read` frame: the client echoes the id of a mark it read.
    pub(super) fn read_frame(&mut self, conn: ConnId, id: &str, now: u64, store: &mut impl Store) {
        let (Some(key), Some(live)) = (self.marks.key.as_deref(), self.conns.get(&conn)) else { return };
        let from = live.read_mark.unwrap_or(0);
        // The newest marks first: a client echoes the latest it read.
        let found = (from + 1..=self.marks.index).rev().find(|&i| mark_id(key, conn, i) == id);
        match (found, self.conns.get_mut(&conn)) {
            (Some(index), Some(live)) => {
                live.read_mark = Some(index);
                self.marks.not_reading.remove(&conn);
            }
            _ => self.refuse(
                conn,
                None,
                ErrorCode::BadFrame,
                "no such read mark (echo the id of a mark this connection was sent)",
                now,
                store,
            ),
        }
    }

    /// Closes the connections found not reading.
    pub(super) fn close_not_reading(&mut self, now: u64, store: &mut impl Store) {
        for conn in std::mem::take(&mut self.marks.not_reading) {
            if self.conns.contains_key(&conn) {
                self.actions.push_back(Action::Close { conn, code: close::NOT_READING.into() });
                self.handle_close(conn, now, store);
            }
        }
    }
}
