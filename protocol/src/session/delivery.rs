//! A room's feed calls: the session's position in each room, pages passed to the devices that
//! stand with it, and devices behind it caught up from the room's history.

use super::frames::{encode_gap, with_room};
use super::{Output, Row, Session, READ_LIMIT};
use crate::feed::Position;
use crate::relay::{FeedCall, FeedPage, FeedReply, RelayOp};

impl Session {
    /// A feed call from `call.room`: messages to the devices that stand with the session,
    /// extras to their devices; the answer to give.
    pub fn handle_feed(&mut self, call: FeedCall) -> FeedReply {
        if call.watch {
            return self.watched_head(&call.room, call.page);
        }
        let room = call.room.as_str();
        let joined: Vec<u64> = self.devices.iter().filter(|(_, d)| d.joins.contains_key(room)).map(|(id, _)| *id).collect();
        if joined.is_empty() {
            return FeedReply { answer: None, devices: Vec::new() };
        }
        // What the session last answered (a probe that changes nothing saves nothing).
        let previous = self.feed.answer(room);
        if !self.feed.is_following(room) {
            // The first call since the session followed: it stands where the room's page starts.
            let start = call.page.messages.first().map_or(call.page.end.unwrap_or(0), |m| m.seq.saturating_sub(1));
            self.feed.follow(room, Position { epoch: call.page.epoch.clone(), seq: start });
        }
        let before = self.feed.position(room).cloned();
        // The session's own position needs the seqs only; the texts go to devices (`pass_page`).
        let seqs: Vec<(u64, ())> = call.page.messages.iter().map(|m| (m.seq, ())).collect();
        self.feed.handle_call(room, &call.page.epoch, call.page.end, seqs);
        for device in &joined {
            let standing = self.devices.get(device).and_then(|d| d.cursor.position(room)).cloned();
            if standing.is_some() && standing == before {
                // With the session: the same page, through its own cursor.
                self.pass_page(room, *device, &call.page);
            } else {
                self.catch_up(room, *device);
            }
        }
        let extras = self.feed.handle_extras(room, call.extras.into_iter().map(Into::into).collect());
        for extra in extras {
            self.extra(room, extra.to, extra.text);
        }
        let answer = self.feed.answer(room);
        if let Some(a) = answer.as_ref().filter(|a| previous.as_ref() != Some(*a)) {
            let row = Row::Feed { room: room.to_owned(), epoch: a.position.epoch.clone(), seq: a.position.seq, extras: a.extras };
            self.out.push_back(Output::Save(row));
        }
        let devices = self.devices.iter().filter(|(_, d)| d.joins.contains_key(room)).map(|(id, _)| *id).collect();
        FeedReply { answer: answer.map(Into::into), devices }
    }

    /// Passes a page of stored messages to one device through its cursor: each once, in order,
    /// what it cannot have said as a gap; its own publishes only with echo on.
    pub(super) fn pass_page(&mut self, room: &str, device: u64, page: &FeedPage) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        let echo = d.joins.get(room).is_none_or(|j| j.echo);
        let cid = d.info.client_id.clone();
        // Borrowed: each device's cursor picks from the one page, nothing copied per device.
        let messages: Vec<(u64, &crate::relay::FeedMessage)> = page.messages.iter().map(|m| (m.seq, m)).collect();
        let got = d.cursor.handle_call(room, &page.epoch, page.end, messages);
        if let Some(gap) = &got.gap {
            self.send(device, encode_gap(room, gap));
        }
        for m in got.fresh {
            if echo || m.from != cid {
                self.send(device, with_room(room, &m.text));
            }
        }
    }

    /// A device behind the session reads from the room's history until it stands with it.
    pub(super) fn catch_up(&mut self, room: &str, device: u64) {
        let target = self.feed.position(room).cloned();
        let Some(d) = self.devices.get_mut(&device) else { return };
        let Some(join) = d.joins.get_mut(room) else { return };
        if !join.live || join.reading {
            return;
        }
        let Some(at) = d.cursor.position(room).cloned() else { return };
        let behind = match &target {
            Some(t) => t.epoch != at.epoch || t.seq > at.seq,
            None => false,
        };
        if !behind {
            return;
        }
        join.reading = true;
        let op = RelayOp::Read { epoch: at.epoch, after: at.seq, limit: READ_LIMIT };
        self.out.push_back(Output::Relay { room: room.to_owned(), device, op });
    }

    pub(super) fn caught_up_by(&mut self, room: &str, device: u64, page: FeedPage) {
        let Some(j) = self.devices.get_mut(&device).and_then(|d| d.joins.get_mut(room)) else { return };
        j.reading = false;
        j.read_failures = 0;
        self.pass_page(room, device, &page);
        self.catch_up(room, device);
    }
}
