//! One connection: the client machine and the browser resources it asked for. Every entry point
//! feeds one event to the machine and then calls [`Conn::pump`], which carries out what the
//! machine returned and keeps one timer at its next deadline.

use crate::host::{self, Socket, Timer, WakeListeners};
use roomcast_protocol::client::{Client, ClientConfig, Output, State};

pub struct Conn {
    pub id: u32,
    pub client: Client,
    socket: Option<Socket>,
    timer: Option<Timer>,
    wake: Option<WakeListeners>,
}

impl Conn {
    /// Starts connecting at once (the host creates connections once the app could attach its
    /// handlers).
    pub fn start(id: u32, config: ClientConfig, seed: u64, fetches_token: bool) -> Conn {
        let client = Client::new(config, seed, fetches_token, host::now());
        let mut conn = Conn { id, client, socket: None, timer: None, wake: Some(WakeListeners::add(id)) };
        conn.pump();
        conn
    }

    /// The timer fired.
    pub fn on_timer(&mut self) {
        if let Some(t) = self.timer.take() {
            t.fired();
        }
        self.client.handle_timeout(host::now());
    }

    pub fn pump(&mut self) {
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::FetchToken => host::fetch_token(self.id),
                Output::Connect { resume } => {
                    self.socket = None;
                    self.socket = Socket::open(self.id, resume.as_ref().map(|(e, s)| (e.as_str(), *s)));
                    if self.socket.is_none() {
                        // Reported like a failed connection: the machine backs off and retries.
                        self.client.handle_close(1006, "could not open the WebSocket", host::now());
                    }
                }
                Output::Send(text) => {
                    if let Some(s) = &self.socket {
                        s.send(&text);
                    }
                }
                Output::SendRefresh => {
                    if self.socket.is_some() {
                        host::send_refresh(self.id);
                    }
                }
                Output::CloseSocket(code) => {
                    if let Some(s) = self.socket.take() {
                        s.close(code.code, code.reason);
                    }
                }
                Output::Status(s) => {
                    host::emit_status(self.id, &s);
                    if s.state == State::Closed {
                        // Closed for good: no socket, no timer, no listeners.
                        self.socket = None;
                        self.wake = None;
                    }
                }
                Output::Gap { reason, since } => host::emit_gap(self.id, &reason, since),
                Output::OutOfOrder { expected, received } => host::emit_out_of_order(self.id, expected, received),
                Output::Acked { id, seq } => host::emit_settled(self.id, &id, seq, ""),
                Output::Rejected { id, code } => host::emit_settled(self.id, &id, None, &code),
            }
        }
        let due = self.client.poll_timeout();
        if self.timer.as_ref().map(|t| t.at) != due {
            // Cancel the old timer before starting the new one: the host keeps one per connection.
            self.timer = None;
            self.timer = due.map(|at| Timer::start(self.id, at));
        }
    }
}
