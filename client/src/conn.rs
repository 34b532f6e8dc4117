//! One connection's machine and what waits on it: the calls, their answer frames, the app's event
//! stream. Shared by a room's own socket ([`crate::driver`]) and a room joined on a session socket
//! ([`crate::session`]): each feeds it frames and commands, and carries out the [`Io`] it returns.

use crate::frames::{self, ErrorEvent};
use crate::{Answer, Command, Error, Event, Reply};
use roomcast_protocol::client::{CallId, Client, Output, QueueError, Resumed, State, Welcome};
use roomcast_protocol::close::CloseCode;
use serde_json::Value;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// What the machine asks of the transport, in order.
pub enum Io {
    FetchToken,
    Connect(Option<(String, u64)>),
    Send(String),
    CloseSocket(CloseCode),
    /// Closed for good: drop every resource.
    Finished,
}

pub struct Conn {
    pub client: Client,
    pub client_id: String,
    pub echo: bool,
    calls: HashMap<CallId, Reply>,
    /// Answer frames by their wire id, kept while the machine settles the call they name.
    answers: HashMap<String, Value>,
    events: mpsc::UnboundedSender<Event>,
}

fn queue_error(q: QueueError, client: &Client) -> Error {
    match q {
        QueueError::Full => Error::refused("queue_full", "the offline queue is full"),
        QueueError::Closed => Error::refused("closed", "the client is closed"),
        QueueError::Offline => Error::refused("offline", "not connected (only publishes and presence are queued)"),
        QueueError::TooLarge => {
            let (size, max) = client.refused();
            Error::refused("too_large", format!("{size} bytes is over the room's limit of {max}"))
        }
    }
}

impl Conn {
    pub fn new(client: Client, client_id: String, echo: bool, events: mpsc::UnboundedSender<Event>) -> Conn {
        Conn { client, client_id, echo, calls: HashMap::new(), answers: HashMap::new(), events }
    }

    pub fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    pub fn bad_frame(&self, message: String) {
        self.emit(Event::Error(ErrorEvent { code: "bad_frame".to_owned(), message }));
    }

    /// Closed: whatever a late command asked fails as closed (dropping its reply says so).
    pub fn forget_calls(&mut self) {
        self.calls.clear();
    }

    pub fn command(&mut self, cmd: Command, now: u64) {
        let c = &mut self.client;
        let (result, reply) = match cmd {
            Command::Publish { data, reply } => (c.publish(&data), reply),
            Command::Broadcast { data, ack, reply } => match c.broadcast(&data, ack) {
                Ok(Some(id)) => (Ok(id), reply),
                Ok(None) => {
                    let _ = reply.send(Ok(Answer { seq: None, frame: None }));
                    return;
                }
                Err(e) => (Err(e), reply),
            },
            Command::History { limit, before, since, reply } => (c.history(limit, before, since), reply),
            Command::Presence { meta, reply } => (c.set_presence(&meta), reply),
            Command::Direct { to, data, reply } => (c.direct(&to, &data), reply),
            Command::Input { to, data, reply } => (c.input(&to, &data), reply),
            Command::LastSeq(reply) => {
                let _ = reply.send((c.last_seq(), c.epoch().map(str::to_owned)));
                return;
            }
            Command::Wake => return c.handle_wake(now),
            Command::Close => return c.close(),
        };
        match result {
            Ok(id) => {
                self.calls.insert(id, reply);
            }
            Err(q) => {
                let _ = reply.send(Err(queue_error(q, &self.client)));
            }
        }
    }

    /// One server frame (`kind` its type) for this connection; `line` is its text.
    pub fn on_frame(&mut self, kind: &str, f: Value, line: &str, t: u64) {
        let id = f.get("id").and_then(Value::as_str).map(str::to_owned);
        let u64_of = |key: &str| f.get(key).and_then(Value::as_u64);
        match kind {
            "welcome" => self.on_welcome(&f, t),
            "message" => {
                let Some(seq) = u64_of("seq") else { return self.bad_frame("invalid message frame".to_owned()) };
                let own = f.get("from").and_then(Value::as_str) == Some(&self.client_id);
                if self.client.handle_message(seq, t) && (self.echo || !own) {
                    match frames::message(&f, line) {
                        Ok(m) => self.emit(Event::Message(m)),
                        Err(e) => self.bad_frame(e),
                    }
                }
            }
            "ack" | "history" => {
                let Some(id) = id else { return self.bad_frame(format!("invalid {kind} frame")) };
                let seq = if kind == "ack" { u64_of("seq") } else { None };
                self.answers.insert(id.clone(), f);
                self.client.handle_ack(&id, seq, t);
            }
            "error" => {
                let code = f.get("code").and_then(Value::as_str).unwrap_or("error").to_owned();
                match id {
                    Some(id) => {
                        self.answers.insert(id.clone(), f);
                        self.client.handle_error(&id, &code);
                    }
                    None => {
                        let message = f.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
                        self.emit(Event::Error(ErrorEvent { code, message }));
                    }
                }
            }
            "pong" => self.client.handle_pong(),
            "mark" => {
                if let Some(id) = id {
                    self.client.handle_mark(&id);
                }
            }
            "refreshed" => match u64_of("expires") {
                Some(expires) => self.client.handle_refreshed(expires, t),
                None => self.bad_frame("invalid refreshed frame".to_owned()),
            },
            "broadcast" | "direct" | "input" => match serde_json::from_value::<frames::Broadcast>(f) {
                Ok(b) if kind == "broadcast" => self.emit(Event::Broadcast(b)),
                Ok(b) if kind == "input" => self.emit(Event::Input(b)),
                Ok(b) => self.emit(Event::Direct(b)),
                Err(e) => self.bad_frame(format!("invalid {kind} frame: {e}")),
            },
            "presence" => match serde_json::from_value::<frames::PresenceEvent>(f) {
                Ok(p) => self.emit(Event::Presence(p)),
                Err(e) => self.bad_frame(format!("invalid presence frame: {e}")),
            },
            // A newer server's frame: ignored (docs/PROTOCOL.md, *Framing*).
            _ => {}
        }
    }

    /// A welcome (or a session's `joined`, which is one).
    pub fn on_welcome(&mut self, f: &Value, now: u64) {
        let (Some(epoch), Some(seq)) = (f.get("epoch").and_then(Value::as_str), f.get("seq").and_then(Value::as_u64)) else {
            return self.bad_frame("invalid welcome frame".to_owned());
        };
        let at = |path: &[&str]| path.iter().try_fold(f, |v, k| v.get(k)).and_then(Value::as_u64);
        let resumed = f.get("resume").map(|r| match r.get("status").and_then(Value::as_str) {
            Some("recovered") => Resumed::Recovered,
            _ => Resumed::NotRecovered(r.get("reason").and_then(Value::as_str).unwrap_or("unavailable").to_owned()),
        });
        if let Ok(w) = serde_json::from_value::<frames::Welcome>(f.clone()) {
            self.emit(Event::Welcome(w));
        }
        let welcome = Welcome {
            epoch,
            seq,
            resumed,
            expires: at(&["expires"]),
            ping_interval: at(&["heartbeat", "interval"]),
            max_frame_bytes: at(&["limits", "maxFrameBytes"]),
            rewound: at(&["rewind", "replayed"]),
            broadcast_max_bytes: at(&["limits", "broadcastMaxBytes"]),
            presence_meta_max: at(&["limits", "presenceMetaMax"]),
        };
        self.client.handle_welcome_frame(welcome, now);
    }

    /// Takes the machine's outputs: settles calls and emits events itself, and hands back what
    /// the transport must do, in order.
    pub fn drain(&mut self) -> Vec<Io> {
        let mut io = Vec::new();
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::FetchToken => io.push(Io::FetchToken),
                Output::Connect { resume } => io.push(Io::Connect(resume)),
                Output::Send(text) => io.push(Io::Send(text)),
                Output::CloseSocket(code) => io.push(Io::CloseSocket(code)),
                Output::Status(s) => {
                    if s.state == State::Closed {
                        io.push(Io::Finished);
                    }
                    self.emit(Event::Status(s));
                }
                Output::Gap { reason, since } => self.emit(Event::Gap { reason, since }),
                Output::OutOfOrder { expected, received } => self.emit(Event::Error(ErrorEvent {
                    code: "out_of_order".to_owned(),
                    message: format!("seq {received} arrived when {expected} was next; resuming from {}", expected - 1),
                })),
                Output::Acked { id, seq } => {
                    let frame = self.answers.remove(&self.client.wire_id(id));
                    if let Some(reply) = self.calls.remove(&id) {
                        let _ = reply.send(Ok(Answer { seq, frame }));
                    }
                }
                Output::Rejected { id, code } => {
                    let frame = self.answers.remove(&self.client.wire_id(id));
                    let message = frame.as_ref().and_then(|f| f.get("message")).and_then(Value::as_str).unwrap_or(&code).to_owned();
                    match self.calls.remove(&id) {
                        Some(reply) => {
                            let _ = reply.send(Err(Error::Refused { code, message }));
                        }
                        // A refusal no call waits for (a presence meta sent again, an id not ours).
                        None => self.emit(Event::Error(ErrorEvent { code, message })),
                    }
                }
            }
        }
        // Every answer frame was consumed by the settlement its frame caused, just now.
        self.answers.clear();
        io
    }
}
