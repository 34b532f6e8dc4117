//! The calls the room answers, on the client's side: publish, direct and input messages, history
//! reads, acknowledged broadcasts and presence meta (one change in flight), each numbered, sent
//! or queued, and settled once by its id (an `ack`, a `history` answer, an `error`, a `mark`); what
//! goes when the socket does.

use super::*;

impl Client {
    // ---- commands ----------------------------------------------------------------------------

    /// Queues a publish of `data_json` (already JSON) and returns its id. It is sent at once when
    /// open, otherwise on the next open, and resent with the same id after every reconnect until
    /// the room acknowledges or refuses it, so the server applies it once. A frame larger than
    /// the room's limit is refused here and never sent.
    pub fn publish(&mut self, data_json: &str) -> Result<CallId, QueueError> {
        if self.state == State::Closed {
            return Err(QueueError::Closed);
        }
        if self.queue.len() >= self.config.queue_max {
            return Err(QueueError::Full);
        }
        let id = self.new_id();
        let text = self.frame("publish", id, &[("data", Some(data_json))]);
        self.fits(&text, self.max_frame_bytes)?;
        if self.state == State::Open {
            self.outputs.push(Output::Send(text.clone()));
        }
        self.queue.push(Queued { id, text });
        Ok(id)
    }

    /// Sends a direct message; `to_json` is `{"user":…}` or `{"clientId":…}`. Direct messages are
    /// not stored by the server, so they are not queued or retried: offline, they fail at once,
    /// and one whose socket goes before the room answered is rejected (`disconnected`).
    pub fn direct(&mut self, to_json: &str, data_json: &str) -> Result<CallId, QueueError> {
        let id = self.open_call()?;
        let text = self.frame("direct", id, &[("to", Some(to_json)), ("data", Some(data_json))]);
        self.send_call(id, text, self.max_frame_bytes)
    }

    /// Sends a shared terminal's input (an `input` frame: keystrokes or a resize) to `to_json`
    /// (`{"clientId":…}`, the terminal's agent). The room takes it only from a token with the
    /// `input` right; otherwise it is settled like a direct message: not queued, not resent.
    pub fn input(&mut self, to_json: &str, data_json: &str) -> Result<CallId, QueueError> {
        let id = self.open_call()?;
        let text = self.frame("input", id, &[("to", Some(to_json)), ("data", Some(data_json))]);
        self.send_call(id, text, self.max_frame_bytes)
    }

    /// Asks for a page of stored messages (`history`): the latest `limit` (the room's default
    /// when `None`), or those before or since a seq. Not queued, like a direct message; the room
    /// answers with a `history` frame naming the id, which the adapter hands to
    /// [`Client::handle_ack`] (the page itself never enters the machine).
    pub fn history(&mut self, limit: Option<u64>, before: Option<u64>, since: Option<u64>) -> Result<CallId, QueueError> {
        let id = self.open_call()?;
        let (limit, before, since) = (decimal(limit), decimal(before), decimal(since));
        let fields = [("limit", limit.as_deref()), ("before", before.as_deref()), ("since", since.as_deref())];
        let text = self.frame("history", id, &fields);
        self.send_call(id, text, self.max_frame_bytes)
    }

    /// Sends an ephemeral message to the room's other members (`broadcast`). Not queued, never
    /// resent. With `ack` the frame carries an id, the room answers it, and the id is returned
    /// (settled like a direct message); without, the room sends no answer and `None` comes back
    /// once the frame is handed to the socket. Over `limits.broadcastMaxBytes` it is refused here.
    pub fn broadcast(&mut self, data_json: &str, ack: bool) -> Result<Option<CallId>, QueueError> {
        let id = self.open_call()?;
        let id = if ack { id } else { 0 };
        let text = self.frame("broadcast", id, &[("data", Some(data_json))]);
        let max = self.max_frame_bytes.min(self.broadcast_max_bytes);
        self.send_call(id, text, max).map(|id| (id != 0).then_some(id))
    }

    /// Replaces this connection's presence meta (`meta_json`: a JSON object, already encoded) and
    /// returns the id the call settles with. One change is in flight at a time: calls made
    /// meanwhile wait, and only the newest meta goes next (settling every call made since). Not
    /// open, the change waits for the connection; one in flight when the socket goes is sent
    /// again; and after every reconnect the last meta the room took goes again. A meta over
    /// `limits.presenceMetaMax` bytes is refused here.
    pub fn set_presence(&mut self, meta_json: &str) -> Result<CallId, QueueError> {
        if self.state == State::Closed {
            return Err(QueueError::Closed);
        }
        self.fits(meta_json, self.presence_meta_max)?;
        let id = self.new_id();
        self.presence.want = Some(meta_json.to_owned());
        self.presence.waiting.push(id);
        self.send_presence();
        Ok(id)
    }

    /// An ack arrived (or a `history` page, which answers its call the same way). A publish's seq
    /// also moves `last_seq`: the server sent everything before it first, and with echo off the
    /// message itself does not come back live. So an ack further ahead than the next seq means
    /// messages were lost, exactly like a message that jumps.
    pub fn handle_ack(&mut self, id: &str, seq: Option<u64>, now: u64) {
        let id = self.call_id(id);
        if self.presence_answered(id, None) {
            return;
        }
        self.forget(id);
        self.outputs.push(Output::Acked { id, seq });
        if self.config.relayed {
            return;
        }
        match seq {
            Some(seq) if seq == self.last_seq.saturating_add(1) => self.last_seq = seq,
            Some(seq) if seq > self.last_seq && self.socket && self.state == State::Open => self.out_of_order(seq, now),
            _ => {}
        }
    }

    /// An error frame arrived for one of the client's calls: it is settled as refused and leaves
    /// the queue, so it is never resent.
    pub fn handle_error(&mut self, id: &str, code: &str) {
        let id = self.call_id(id);
        if self.presence_answered(id, Some(code)) {
            return;
        }
        self.forget(id);
        self.outputs.push(Output::Rejected { id, code: code.to_owned() });
    }

    /// A read mark: echoed at once in a `read` frame, the proof the room asks for that this
    /// client reads what it is sent (a client that does not is closed with 4008).
    pub fn handle_mark(&mut self, id: &str) {
        // Marks are the room's hex ids; anything else is not echoed (the encoder writes ids
        // unescaped, so only plain ones may reach it).
        if self.socket && (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            self.outputs.push(Output::Send(encode("read", Some(id), &[])));
        }
    }

    // ---- internals ---------------------------------------------------------------------------

    pub(super) fn new_id(&mut self) -> CallId {
        self.next_id += 1;
        self.next_id
    }

    /// Call `id`'s frame (0: a frame without an id), by [`encode`].
    pub(super) fn frame(&self, kind: &str, id: CallId, fields: &[(&str, Option<&str>)]) -> String {
        let wire = (id != 0).then(|| self.wire_id(id));
        encode(kind, wire.as_deref(), fields)
    }

    /// The call a frame's id names: 0 when it is none of this client's (not `<session>-<n>`
    /// exactly as [`Client::wire_id`] writes it).
    pub(super) fn call_id(&self, wire: &str) -> CallId {
        let Some((head, digits)) = wire.as_bytes().split_at_checked(self.session.len() + 1) else { return 0 };
        if head.split_last() != Some((&b'-', self.session.as_bytes())) || digits.first() == Some(&b'0') {
            return 0;
        }
        let mut n: CallId = 0;
        for &b in digits {
            if !b.is_ascii_digit() {
                return 0;
            }
            n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
        }
        n
    }

    /// Takes a settled call off the books.
    pub(super) fn forget(&mut self, id: CallId) {
        self.queue.retain(|q| q.id != id);
        self.calls.retain(|d| *d != id);
    }

    /// The refusal of a frame (or meta) of `text`'s size over `max`.
    pub(super) fn fits(&mut self, text: &str, max: u64) -> Result<(), QueueError> {
        if text.len() as u64 > max {
            self.refused = (text.len() as u64, max);
            return Err(QueueError::TooLarge);
        }
        Ok(())
    }

    /// A new id for a call that needs the open connection (it is not queued).
    pub(super) fn open_call(&mut self) -> Result<CallId, QueueError> {
        match self.state {
            State::Open => Ok(self.new_id()),
            State::Closed => Err(QueueError::Closed),
            _ => Err(QueueError::Offline),
        }
    }

    /// Sends a call's frame if it fits `max`, and (with an id, not 0) expects its answer on this
    /// socket.
    pub(super) fn send_call(&mut self, id: CallId, text: String, max: u64) -> Result<CallId, QueueError> {
        self.fits(&text, max)?;
        self.outputs.push(Output::Send(text));
        if id != 0 {
            self.calls.push(id);
        }
        Ok(id)
    }

    /// Sends the newest presence meta asked for, when open and none is in flight. The frame takes
    /// the id of the newest call it settles; a meta sent again with no call waiting (after a
    /// reconnect) gets an id of its own.
    pub(super) fn send_presence(&mut self) {
        let p = &mut self.presence;
        if !self.socket || self.state != State::Open || p.inflight.is_some() {
            return;
        }
        let Some(meta) = p.want.take() else { return };
        let calls = core::mem::take(&mut p.waiting);
        let id = match calls.last() {
            Some(id) => *id,
            None => self.new_id(),
        };
        self.outputs.push(Output::Send(self.frame("presence", id, &[("meta", Some(&meta))])));
        self.presence.inflight = Some(SentPresence { id, meta, calls });
    }

    /// The presence change in flight was answered, if `id` is its frame's: taken (`refusal`
    /// `None`) or refused with that code. Every call it carried settles, and the next goes. A
    /// refusal that no call waits for (of a meta sent again) is still reported, under the
    /// frame's id, which no call of the adapter's knows.
    pub(super) fn presence_answered(&mut self, id: CallId, refusal: Option<&str>) -> bool {
        let Some(sent) = self.presence.inflight.take_if(|s| s.id == id) else { return false };
        match refusal {
            None => {
                for &id in &sent.calls {
                    self.outputs.push(Output::Acked { id, seq: None });
                }
                self.presence.applied = Some(sent.meta);
            }
            Some(code) => {
                // The room keeps the token's meta (or the one before) until the app sets one again.
                if self.presence.applied.as_ref() == Some(&sent.meta) {
                    self.presence.applied = None;
                }
                let own = [sent.id];
                self.reject(if sent.calls.is_empty() { &own } else { &sent.calls }, code);
            }
        }
        self.send_presence();
        true
    }

    pub(super) fn reject_calls(&mut self, code: &str) {
        let calls = core::mem::take(&mut self.calls);
        self.reject(&calls, code);
    }

    /// Each of `ids` failed with `code`.
    pub(super) fn reject(&mut self, ids: &[CallId], code: &str) {
        for &id in ids {
            self.outputs.push(Output::Rejected { id, code: code.to_owned() });
        }
    }
}
