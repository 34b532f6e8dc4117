//! Sockets coming and going: a device opens and closes, the backend closes the session, the
//! sweep closes silent or expired devices, and `user.online` / `user.offline` with their grace.

use super::frames::{encode_hello, encode_read_position};
use super::{Device, DeviceInfo, JoinRow, Output, Row, Session};
use crate::relay::RelayOp;
use crate::token::{self, Claims};

impl Session {
    /// A socket opened with a verified token (`claims`) and a client id; returns the device id
    /// (its attachment is [`Session::device`]) and queues the session's welcome. A token for
    /// another user is refused (the session would speak for its own user with it).
    pub fn handle_open(&mut self, client_id: String, claims: Claims, now: u64) -> Result<u64, crate::close::CloseCode> {
        if claims.sub != self.user || self.user.is_empty() {
            return Err(crate::close::FORBIDDEN);
        }
        let id = self.next_device;
        self.next_device += 1;
        let expires = claims.expires_ms();
        let info = DeviceInfo { id, client_id, claims, expired: None };
        let welcome = encode_hello(&self.user, &info.client_id, expires);
        self.devices.insert(id, Device::new(info, &self.limits, now));
        self.send(id, welcome);
        for (room, (seq, _)) in self.reads.clone() {
            self.send(id, encode_read_position(&room, seq));
        }
        // Back within the grace period: nothing to say. Otherwise the user just came online.
        if self.offline_due.take().is_some() {
            self.out.push_back(Output::Delete(Row::Offline { due: 0 }.key()));
        } else if !self.online {
            self.online = true;
            self.out.push_back(Output::Save(Row::Online));
            self.out.push_back(Output::UserOnline);
        }
        Ok(id)
    }

    /// When [`Session::handle_timeout`] is next due: the end of an offline grace period, or of an
    /// expired device's grace for a refresh.
    pub fn poll_timeout(&self) -> Option<u64> {
        let expired = self.devices.values().filter_map(|d| d.info.expired).min().map(|at| at.saturating_add(self.expired_grace_ms + 1));
        self.offline_due.into_iter().chain(expired).min()
    }

    /// A timer fired: an expired device whose grace for a refresh is over closes (4002); a grace
    /// period that ended with no socket back reports `user.offline`.
    pub fn handle_timeout(&mut self, now: u64) {
        self.close_expired(now);
        if self.offline_due.is_some_and(|due| due <= now) && self.devices.is_empty() {
            self.offline_due = None;
            self.online = false;
            self.out.push_back(Output::Delete(Row::Offline { due: 0 }.key()));
            self.out.push_back(Output::Delete(Row::Online.key()));
            self.out.push_back(Output::UserOffline);
        }
    }

    /// How long a device whose token expired keeps its socket for a `refresh` (`EXPIRED_GRACE_MS`).
    pub fn set_expired_grace(&mut self, ms: u64) {
        self.expired_grace_ms = ms;
    }

    /// How long a user's last socket may be gone before `user.offline` (a reload is not offline).
    pub fn set_offline_grace(&mut self, ms: u64) {
        self.offline_grace_ms = ms;
    }

    /// A socket closed: its joins end in every room. The user's last socket gone, `user.offline`
    /// is due after the grace period (unless a socket comes back within it).
    pub fn handle_close(&mut self, device: u64, now: u64) {
        if !self.devices.contains_key(&device) {
            return;
        }
        self.watch(device, Vec::new());
        let Some(d) = self.devices.remove(&device) else { return };
        for (room, join) in d.joins {
            self.out.push_back(Output::Delete(
                Row::Join(JoinRow { device, room: room.clone(), start: join.start, echo: join.echo, live: join.live }).key(),
            ));
            self.out.push_back(Output::Relay { room, device, op: RelayOp::Close { device } });
        }
        self.drop_unjoined_rooms();
        if self.devices.is_empty() && self.online && self.offline_due.is_none() {
            let due = now.saturating_add(self.offline_grace_ms);
            self.offline_due = Some(due);
            self.out.push_back(Output::Save(Row::Offline { due }));
        }
    }

    /// The backend closed this user's session (`DELETE /sessions/:user`): every socket closes
    /// with 4411, as a kick closes a room's, and leaves its rooms. Returns how many.
    pub fn handle_removed(&mut self, now: u64) -> usize {
        let devices: Vec<u64> = self.devices.keys().copied().collect();
        let c = crate::close::REMOVED;
        for &device in &devices {
            self.out.push_back(Output::Close { device, code: c.code, reason: "session closed by the backend".into() });
            self.handle_close(device, now);
        }
        devices.len()
    }

    /// Whether the session holds any socket (the adapter sweeps, on an alarm, while it does).
    pub fn has_devices(&self) -> bool {
        !self.devices.is_empty()
    }

    /// When the next device would be past the heartbeat timeout (a millisecond after its last sign
    /// of life plus `timeout_ms`): the adapter sweeps then, if that is before its regular sweep, so
    /// a dead socket is closed (and its rooms told) as soon as the timeout has run out.
    pub fn next_sweep(&self, timeout_ms: u64, last_pong: impl Fn(u64) -> Option<u64>) -> Option<u64> {
        self.devices.iter().map(|(id, d)| d.last_seen.max(last_pong(*id).unwrap_or(0)).saturating_add(timeout_ms).saturating_add(1)).min()
    }

    /// Devices whose last sign of life (a frame, or the runtime's auto-answered ping, from
    /// `last_pong`) is older than `timeout_ms` are closed (4001), like a room's sockets. A device
    /// whose token expired leaves every room it joined (`left` with 4002, as a room socket's close
    /// at expiry says) and keeps its socket for a `refresh` (a valid one lets it join
    /// again); without one within the grace (`EXPIRED_GRACE_MS`) its socket closes with 4002.
    pub fn handle_sweep(&mut self, now: u64, timeout_ms: u64, last_pong: impl Fn(u64) -> Option<u64>) {
        let silent: Vec<u64> = self
            .devices
            .iter()
            .filter(|(id, d)| now.saturating_sub(d.last_seen.max(last_pong(**id).unwrap_or(0))) > timeout_ms)
            .map(|(id, _)| *id)
            .collect();
        for device in silent {
            let c = crate::close::HEARTBEAT_TIMEOUT;
            self.out.push_back(Output::Close { device, code: c.code, reason: c.reason.into() });
            self.handle_close(device, now);
        }
        let expiring: Vec<u64> = self
            .devices
            .iter()
            .filter(|(_, d)| d.info.expired.is_none() && token::is_expired(d.info.claims.expires_ms(), now))
            .map(|(id, _)| *id)
            .collect();
        for device in expiring {
            self.expire(device, now);
        }
        self.close_expired(now);
    }

    /// `device`'s token expired: each room it joined leaves with 4002; the socket stays.
    fn expire(&mut self, device: u64, now: u64) {
        let Some(d) = self.devices.get_mut(&device) else { return };
        d.info.expired = Some(now);
        // Kept in the socket's attachment: a session that hibernates keeps counting the grace.
        self.out.push_back(Output::Attach { device });
        let c = crate::close::TOKEN_EXPIRED;
        for room in self.rooms_of(device) {
            self.leave(device, &room, c.code, c.reason);
        }
    }

    /// Expired devices whose grace for a refresh is over close with 4002.
    fn close_expired(&mut self, now: u64) {
        let over: Vec<u64> = self
            .devices
            .iter()
            .filter(|(_, d)| d.info.expired.is_some_and(|at| now.saturating_sub(at) > self.expired_grace_ms))
            .map(|(id, _)| *id)
            .collect();
        for device in over {
            let c = crate::close::TOKEN_EXPIRED;
            self.out.push_back(Output::Close { device, code: c.code, reason: "the token expired and was not refreshed".into() });
            self.handle_close(device, now);
        }
    }
}
