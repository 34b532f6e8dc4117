//! One connection: the client machine and the browser resources it asked for. Every entry point
//! feeds one event to the machine and then calls [`Conn::pump`], which carries out what the
//! machine returned and keeps one timer at its next deadline.

use crate::host::{self, Socket, Timer, WakeListeners};
use alloc::string::String;
use roomcast_protocol::client::{session, Client, ClientConfig, Output, State};

/// A room of a session socket: its name (as a JSON string) and how it joins.
pub struct Relay {
    pub room: String,
    pub rewind: Option<u64>,
    pub echo: bool,
}

// The client first: its fields keep the offsets its own code uses (see `Client`).
#[repr(C)]
pub struct Conn {
    pub client: Client,
    pub id: u32,
    socket: Option<Socket>,
    timer: Option<Timer>,
    wake: Option<WakeListeners>,
    /// Set for a room of a session socket: its "socket" is its join on the session's.
    relay: Option<Relay>,
}

impl Conn {
    /// Starts connecting at once (the host creates connections once the app could attach its
    /// handlers).
    pub fn start(id: u32, config: ClientConfig, seed: u64, fetches_token: bool, relay: Option<Relay>) -> Conn {
        let client = Client::new(config, seed, fetches_token, host::now(id));
        // A session's rooms wake with their session (the host wakes them when it opens).
        let wake = if relay.is_none() { Some(WakeListeners::add(id)) } else { None };
        let mut conn = Conn { id, client, socket: None, timer: None, wake, relay };
        conn.pump();
        conn
    }

    /// The connection's clock.
    pub fn now(&self) -> u64 {
        host::now(self.id)
    }

    /// Timer `timer` fired (a timer this connection no longer holds only wakes the machine, which
    /// finds nothing due).
    pub fn on_timer(&mut self, timer: u32) {
        if self.timer.as_ref().is_some_and(|t| t.id() == timer) {
            if let Some(t) = self.timer.take() {
                t.fired();
            }
        }
        self.client.handle_timeout(self.now());
    }

    /// Socket `socket` closed (or failed). Only the connection's current socket counts.
    /// `wait`: the `retryAfterMs` the reason names (read by the host).
    pub fn on_closed(&mut self, socket: u32, code: u16, reason: &str, wait: Option<u64>) {
        if self.socket.as_ref().is_some_and(|s| s.id() == socket) {
            if let Some(s) = self.socket.take() {
                s.closed();
            }
            self.client.handle_close_after(code, reason, wait, self.now());
        }
    }

    /// Sends a frame on the connection's socket, if it has one; a session's room adds its name.
    pub fn send(&self, text: &str) {
        let Some(s) = &self.socket else { return };
        match &self.relay {
            Some(r) => s.send(&session::with_room(&r.room, text)),
            None => s.send(text),
        }
    }

    /// A session's frame of this connection's own (`mark_read`, `watch`), sent only while open.
    pub fn send_own(&self, frame: impl FnOnce(Option<&str>) -> String) {
        if let (Some(s), State::Open) = (&self.socket, self.client.state()) {
            s.send(&frame(self.relay.as_ref().map(|r| r.room.as_str())));
        }
    }

    pub fn pump(&mut self) {
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::FetchToken => host::fetch_token(self.id),
                Output::Connect { resume } => {
                    let resume = resume.as_ref().map(|(e, s)| (e.as_str(), *s));
                    self.socket = match &self.relay {
                        Some(r) => Some(Socket::join(self.id, &session::join_frame(&r.room, resume, r.rewind, r.echo))),
                        None => Socket::open(self.id, resume),
                    };
                    if self.socket.is_none() {
                        // The browser refused outright (the host reported why): it would again.
                        self.client.handle_socket_refused();
                    }
                }
                Output::Send(text) => self.send(&text),
                Output::CloseSocket(code) => {
                    // `leave` names its room itself: sent as it is (through `send` the room
                    // went in twice, a frame the session refuses, and the join stayed).
                    if let (Some(r), Some(s)) = (&self.relay, &self.socket) {
                        s.send(&session::leave_frame(&r.room));
                    }
                    if let Some(s) = self.socket.take() {
                        s.close(code);
                    }
                }
                Output::Status(s) => {
                    host::emit_status(self.id, &s);
                    if s.state == State::Closed {
                        // Closed for good: no socket, no listeners (and no timer, below).
                        self.socket = None;
                        self.wake = None;
                    }
                }
                Output::Gap { reason, since } => host::emit_gap(self.id, &reason, since),
                Output::OutOfOrder { expected, received } => host::emit_out_of_order(self.id, expected, received),
                Output::Acked { id, seq } => host::emit_settled(self.id, id, seq, ""),
                Output::Rejected { id, code } => host::emit_settled(self.id, id, None, &code),
            }
        }
        let due = self.client.poll_timeout();
        if self.timer.as_ref().map(|t| t.at) != due {
            // Each timer owns its own host timer: the new one starts, then the old one is
            // cancelled (only it) as it is replaced.
            self.timer = due.map(|at| Timer::start(self.id, at));
        }
    }
}
