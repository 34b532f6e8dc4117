//! What the page tells the client about the network and itself, and the liveness rules it drives
//! (sdk/README.md, *Liveness and offline*):
//!
//! - **Offline is not failure.** While the adapter says the network is gone (`offline`), token
//!   fetches that fail do not count toward `max_token_failures`, nor do those the adapter reports
//!   as unreachable (a fetch that could not reach its server): queued publishes wait however long
//!   the network is gone. When it comes back (`online`) the client tries at once, with its backoff
//!   started over.
//! - **Fast liveness.** When the network comes or goes, the page becomes visible or is shown again,
//!   an open connection is checked at once: a ping whose pong may be at most `check_timeout_ms`
//!   late, else the connection is dropped and the client reconnects. While the page is visible it
//!   pings at least every `visible_ping_interval_ms` with the same short timeout, so a silently
//!   dead link is noticed within their sum; hidden, it keeps the room's interval and
//!   `pong_timeout_ms` (browsers throttle a hidden page's timers anyway). The runtime answers
//!   pings without waking the room, so checks cost the room nothing.
//! - **Waking the page's other rooms.** A room that reconnected after an outage tells the adapter,
//!   which nudges the page's other rooms ([`Client::handle_nudge`]): those waiting out a backoff
//!   try at once.

use super::{Client, State, NEVER};

impl Client {
    /// The browser's `online` (`true`) or `offline` event, or what `navigator.onLine` says at the
    /// start. Online again: reconnect now (the backoff starts over: the outage was the network's)
    /// or check the open connection. Offline: check the open connection (it may be dead already).
    pub fn handle_network(&mut self, online: bool, now: u64) {
        let back = online && !self.online;
        self.online = online;
        if back && self.state == State::Reconnecting {
            self.attempt = 0;
        }
        self.handle_wake(now);
    }

    /// Whether the page is visible (`visibilitychange`, or the state at the start). Visible again:
    /// as [`Client::handle_wake`]. The ping interval and pong timeout follow (see the module).
    pub fn handle_visibility(&mut self, visible: bool, now: u64) {
        let was = self.visible;
        self.visible = visible;
        if visible && !was {
            self.handle_wake(now);
        }
    }

    /// Another connection of the page reconnected after an outage: reconnect now if waiting out a
    /// backoff (an open connection is left alone), unless the last close named a wait (a 4029's
    /// `retryAfterMs`) that is not over.
    /// The backoff starts over (the outage is over for the page): an attempt under way that fails
    /// anyway tries again after the shortest delay.
    pub fn handle_nudge(&mut self, now: u64) {
        if self.state == State::Reconnecting {
            self.attempt = 0;
        }
        if self.state == State::Reconnecting && self.timers.reconnect_at != NEVER && now >= self.not_before {
            self.timers.reconnect_at = NEVER;
            self.begin_attempt(now);
        }
    }

    /// The token fetch failed because its server could not be reached (the adapter's reading of
    /// the error: a network error, not an answer): like [`Client::handle_token`] with `None`, but
    /// not counted toward `max_token_failures`.
    pub fn handle_token_unreachable(&mut self, now: u64) {
        if self.awaiting_token && self.state != State::Closed {
            self.awaiting_token = false;
            self.token_failed(false, now);
        } else {
            self.handle_token(None, now);
        }
    }

    /// Whether the adapter last said the network is there.
    pub fn online(&self) -> bool {
        self.online
    }

    /// The ping interval and pong timeout now: the open connection's interval and
    /// `pong_timeout_ms`, each capped while the page is visible (a session's room never pings).
    pub(super) fn heartbeat(&self) -> (u64, u64) {
        let c = &self.config;
        if self.visible && !c.relayed {
            (self.ping_interval.min(c.visible_ping_interval_ms), c.pong_timeout_ms.min(c.check_timeout_ms))
        } else {
            (self.ping_interval, c.pong_timeout_ms)
        }
    }

    /// Checks the open connection now: a ping (unless one is awaited already) whose pong may be at
    /// most `check_timeout_ms` late.
    pub(super) fn check(&mut self, now: u64) {
        if !self.socket || self.config.relayed {
            return;
        }
        if self.timers.pong_deadline == NEVER {
            self.ping(now);
        }
        self.timers.pong_deadline = self.timers.pong_deadline.min(now.saturating_add(self.config.check_timeout_ms));
    }
}

#[cfg(test)]
mod tests;
