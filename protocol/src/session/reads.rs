//! Read positions (`mark_read`, the user's, per room, sent to every device) and watched rooms
//! (`watch`: a room's latest seq and unread count without joining it).

use super::frames::{encode_read_position, encode_watch, error_frame};
use super::{Output, Row, Session, MAX_READ_POSITIONS, MAX_ROOMS_PER_DEVICE};
use crate::feed::Position;
use crate::frame::ErrorCode;
use crate::relay::{FeedPage, FeedReply, RelayOp};
use crate::sorted::SortedSet as BTreeSet;

impl Session {
    /// The user read `room` up to `seq`: at most what the session has of the room (its feed's
    /// position, or a watched room's head; a position past it would hide messages still to
    /// come), never backwards.
    pub(super) fn mark_read(&mut self, room: &str, seq: u64, now: u64) {
        let known = self.feed.position(room).map_or(0, |p| p.seq).max(self.heads.get(room).map_or(0, |h| h.seq));
        let seq = seq.min(known);
        if seq <= self.reads.get(room).map_or(0, |r| r.0) {
            return; // read positions never move back
        }
        if !self.reads.contains_key(room) && self.reads.len() >= MAX_READ_POSITIONS {
            let oldest = self.reads.iter().min_by_key(|(_, (_, at))| *at).map(|(r, _)| r.clone());
            if let Some(oldest) = oldest {
                self.reads.remove(&oldest);
                self.out.push_back(Output::Delete(format!("r {oldest}")));
            }
        }
        self.reads.insert(room.to_owned(), (seq, now));
        self.out.push_back(Output::Save(Row::Read { room: room.to_owned(), seq, at: now }));
        let devices: Vec<u64> = self.devices.keys().copied().collect();
        for device in devices {
            self.send(device, encode_read_position(room, seq));
        }
    }

    /// A device's `watch`: the rooms it shows without joining them (a sidebar), replacing the
    /// ones it watched. Each is checked like a join (name, the token's right to subscribe); the
    /// session follows a room's head while any device watches it, and tells each watcher the
    /// latest seq and the unread count at once and then as it moves (at most once a second).
    pub(super) fn watch(&mut self, device: u64, rooms: Vec<String>) {
        let Some(d) = self.devices.get(&device) else { return };
        let mut wanted = BTreeSet::new();
        let mut refused = Vec::new();
        for room in rooms {
            if crate::name::validate_room(&room).is_ok() && d.info.claims.rights_for(&room).subscribe && wanted.len() < MAX_ROOMS_PER_DEVICE
            {
                wanted.insert(room);
            } else {
                refused.push(room);
            }
        }
        if !refused.is_empty() {
            let message = format!("not watched (a bad name, no right to it, or over {MAX_ROOMS_PER_DEVICE} rooms): {}", refused.join(", "));
            self.send(device, error_frame(None, None, ErrorCode::Forbidden, &message));
        }
        let had: Vec<String> = self.watching.iter().filter(|(_, ds)| ds.contains(&device)).map(|(r, _)| r.clone()).collect();
        for room in had.iter().filter(|r| !wanted.contains(*r)) {
            let Some(devices) = self.watching.get_mut(room) else { continue };
            devices.remove(&device);
            if devices.is_empty() {
                self.watching.remove(room);
                self.heads.remove(room);
                self.out.push_back(Output::Relay { room: room.clone(), device, op: RelayOp::Watch { on: false } });
            }
        }
        for room in wanted.iter().filter(|r| !had.contains(*r)) {
            let devices = self.watching.entry(room.clone()).or_default();
            let first = devices.is_empty();
            devices.insert(device);
            if first {
                self.out.push_back(Output::Relay { room: room.clone(), device, op: RelayOp::Watch { on: true } });
            } else if let Some(head) = self.heads.get(room) {
                let unread = head.seq.saturating_sub(self.reads.get(room).map_or(0, |r| r.0));
                self.send(device, encode_watch(room, head.seq, unread));
            }
        }
        if wanted.is_empty() {
            self.out.push_back(Output::Delete(format!("w {device}")));
        } else {
            self.out.push_back(Output::Save(Row::Watch { device, rooms: wanted.into_iter().collect() }));
        }
    }

    /// A watched room's head moved.
    pub(super) fn watched_head(&mut self, room: &str, page: FeedPage) -> FeedReply {
        let Some(devices) = self.watching.get(room).cloned() else { return FeedReply { answer: None, devices: Vec::new() } };
        let head = Position { epoch: page.epoch, seq: page.end.unwrap_or(0) };
        let unread = head.seq.saturating_sub(self.reads.get(room).map_or(0, |r| r.0));
        for &device in &devices {
            self.send(device, encode_watch(room, head.seq, unread));
        }
        self.heads.insert(room.to_owned(), head.clone());
        FeedReply {
            answer: Some(crate::relay::WireAnswer { epoch: head.epoch, seq: head.seq, extras: 0 }),
            devices: devices.into_iter().collect(),
        }
    }
}
