//! One connection: the client machine and the browser resources it asked for. Every entry point
//! feeds one event to the machine and then calls [`Conn::pump`], which carries out what the
//! machine returned and keeps one timer at its next deadline.

use crate::host::{self, Socket, Timer, WakeListeners};
use roomcast_protocol::client::{Client, ClientConfig, Output, State};

// The client first: its fields keep the offsets its own code uses (see `Client`).
#[repr(C)]
pub struct Conn {
    pub client: Client,
    pub id: u32,
    socket: Option<Socket>,
    timer: Option<Timer>,
    wake: Option<WakeListeners>,
}

impl Conn {
    /// Starts connecting at once (the host creates connections once the app could attach its
    /// handlers).
    pub fn start(id: u32, config: ClientConfig, seed: u64, fetches_token: bool) -> Conn {
        let client = Client::new(config, seed, fetches_token, host::now(id));
        let mut conn = Conn { id, client, socket: None, timer: None, wake: Some(WakeListeners::add(id)) };
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
    pub fn on_closed(&mut self, socket: u32, code: u16, reason: &str) {
        if self.socket.as_ref().is_some_and(|s| s.id() == socket) {
            if let Some(s) = self.socket.take() {
                s.closed();
            }
            self.client.handle_close(code, reason, self.now());
        }
    }

    pub fn pump(&mut self) {
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::FetchToken => host::fetch_token(self.id),
                Output::Connect { resume } => {
                    self.socket = Socket::open(self.id, resume.as_ref().map(|(e, s)| (e.as_str(), *s)));
                    if self.socket.is_none() {
                        // The browser refused outright (the host reported why): it would again.
                        self.client.handle_socket_refused();
                    }
                }
                Output::Send(text) => {
                    if let Some(s) = &self.socket {
                        s.send(&text);
                    }
                }
                Output::CloseSocket(code) => {
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
