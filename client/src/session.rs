//! Sessions: one socket for many rooms (docs/PROTOCOL.md, *Sessions*), as the browser SDK's
//! `createClient` does them. The session socket is a machine of its own (backoff, heartbeats,
//! token refresh), connected to `/session/ws`; each joined room is a machine with
//! `ClientConfig::relayed`, whose "socket" is its join on the session's: its connect becomes a
//! `join` frame (resuming from its own `{epoch, since}`), its close a `leave`, what it sends goes
//! out with the room's name, the session's `joined` is its welcome and `left` its close. So every
//! rule of a room connection (resume without loss, the offline queue, calls settled once) holds
//! per room, over one socket.

use crate::conn::{Conn, Io};
use crate::driver::{self, close_socket, next_message, now, parse_line, protocols, send, take, Opening, SocketEvent, Ws};
use crate::{Auth, Command, Error, Events, Options, Room, RoomTx, TokenFuture};
use roomcast_protocol::client::{session, Client, ClientConfig, State};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How a room joins a session.
#[derive(Debug, Clone, Default)]
pub struct JoinOptions {
    /// Replay the last N stored messages first (on the first join only; later joins resume).
    pub rewind: Option<u64>,
    /// Receive this socket's own publishes live too.
    pub echo: bool,
}

pub(crate) enum SessionCommand {
    Join { room: String, opts: JoinOptions, reply: oneshot::Sender<Result<(Room, Events), Error>> },
    Room { room: Arc<str>, cmd: Command },
    Close,
}

/// A handle on a session socket; clone it freely. It lives until [`Session::close`], a final close
/// code, or until every handle (and every room joined on it) is dropped.
#[derive(Clone)]
pub struct Session {
    tx: mpsc::UnboundedSender<SessionCommand>,
}

impl Session {
    /// Joins `room` on the session socket: a [`Room`] with the same calls as a room's own socket,
    /// and its events. The join goes out once the session socket is open, and again (resuming
    /// from the room's last seq) after every reconnect.
    pub async fn join(&self, room: &str, opts: JoinOptions) -> Result<(Room, Events), Error> {
        driver::endpoint("ws://x", room)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(SessionCommand::Join { room: room.to_owned(), opts, reply })
            .map_err(|_| Error::refused("closed", "the session is closed"))?;
        rx.await.map_err(|_| Error::refused("closed", "the session is closed"))?
    }

    /// Closes the session socket and every room on it, for good.
    pub fn close(&self) {
        let _ = self.tx.send(SessionCommand::Close);
    }
}

/// A room of the session.
struct Joined {
    conn: Conn,
    /// The room's name as a JSON string.
    room_json: String,
    rewind: Option<u64>,
    /// Its "socket": a join sent (or waiting for the session to open) and not left.
    joined: bool,
    /// The join frame, when the session socket was not open to send it.
    pending_join: Option<String>,
}

pub(crate) fn spawn(url: &str, opts: Options) -> Result<(Session, Events), Error> {
    let endpoint = driver::endpoint(url, "x")?;
    let endpoint = format!("{}/session/ws", endpoint.trim_end_matches("/rooms/x/ws"));
    let client_id = opts.client_id.clone().unwrap_or_else(driver::random_client_id);
    let (tx, cmds) = mpsc::unbounded_channel();
    let (etx, erx) = mpsc::unbounded_channel();
    let fetches = matches!(opts.auth, Auth::Callback(_));
    let seed = opts.seed.unwrap_or_else(driver::random_u64);
    let client = Client::new(opts.config.clone(), seed, fetches, now());
    let token = match &opts.auth {
        Auth::Token(t) => Some(t.clone()),
        _ => None,
    };
    let link = Link {
        session: Conn::new(client, client_id, false, etx),
        endpoint,
        opts,
        token,
        socket: None,
        opening: None,
        fetching: None,
        rooms: HashMap::new(),
        tx: tx.downgrade(),
        cmds,
        seed,
        was_open: false,
    };
    tokio::spawn(link.run());
    Ok((Session { tx }, Events { rx: erx }))
}

struct Link {
    session: Conn,
    endpoint: String,
    opts: Options,
    token: Option<String>,
    socket: Option<Ws>,
    opening: Option<Opening>,
    fetching: Option<TokenFuture>,
    rooms: HashMap<Arc<str>, Joined>,
    /// For the rooms' handles (weak: the link ends when every handle is gone).
    tx: mpsc::WeakUnboundedSender<SessionCommand>,
    cmds: mpsc::UnboundedReceiver<SessionCommand>,
    seed: u64,
    /// Whether the session was open when the rooms last heard of it.
    was_open: bool,
}

impl Link {
    fn open(&self) -> bool {
        self.socket.is_some() && self.session.client.state() == State::Open
    }

    async fn run(mut self) {
        self.pump().await;
        while self.session.client.state() != State::Closed {
            let at = self.rooms.values().filter_map(|r| r.conn.client.poll_timeout()).chain(self.session.client.poll_timeout()).min();
            let delay = at.map_or(Duration::from_secs(3600), |at| Duration::from_millis(at.saturating_sub(now())));
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    // Every handle is gone.
                    None => self.close_all(),
                },
                msg = next_message(&mut self.socket) => self.on_socket(msg).await,
                opened = take(&mut self.opening) => {
                    if let Some(ws) = driver::opened_socket(&mut self.session, opened) {
                        self.socket = Some(ws);
                    }
                },
                token = take(&mut self.fetching) => {
                    if let Some(t) = driver::fetched_token(&mut self.session, token) {
                        self.token = Some(t);
                    }
                },
                _ = tokio::time::sleep(delay) => {
                    let t = now();
                    self.session.client.handle_timeout(t);
                    for r in self.rooms.values_mut() {
                        r.conn.client.handle_timeout(t);
                    }
                }
            }
            self.pump().await;
        }
        self.session.forget_calls();
    }

    fn close_all(&mut self) {
        self.session.client.close();
    }

    fn command(&mut self, cmd: SessionCommand) {
        match cmd {
            SessionCommand::Join { room, opts, reply } => {
                let room: Arc<str> = room.into();
                if self.rooms.contains_key(&room) {
                    let _ = reply.send(Err(Error::refused("bad_frame", format!("{room} is already joined on this session"))));
                    return;
                }
                let Some(tx) = self.tx.upgrade() else { return };
                let config = ClientConfig { relayed: true, ..self.opts.config.clone() };
                self.seed = self.seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let client = Client::new(config, self.seed, false, now());
                let (etx, erx) = mpsc::unbounded_channel();
                let conn = Conn::new(client, self.session.client_id.clone(), opts.echo, etx);
                let room_json = Value::String(room.to_string()).to_string();
                self.rooms.insert(room.clone(), Joined { conn, room_json, rewind: opts.rewind, joined: false, pending_join: None });
                let handle = Room { tx: RoomTx::Session(tx, room), client_id: self.session.client_id.clone().into() };
                let _ = reply.send(Ok((handle, Events { rx: erx })));
            }
            SessionCommand::Room { room, cmd } => match self.rooms.get_mut(&room) {
                Some(r) => r.conn.command(cmd, now()),
                // Closed and gone: dropping the command's reply says so.
                None => drop(cmd),
            },
            SessionCommand::Close => self.close_all(),
        }
    }

    async fn on_socket(&mut self, msg: Option<Result<tokio_tungstenite::tungstenite::Message, tokio_tungstenite::tungstenite::Error>>) {
        match driver::socket_event(msg) {
            SocketEvent::Text(text) => {
                for line in text.split('\n') {
                    if let Some((kind, f)) = parse_line(&self.session, line) {
                        self.on_frame(&kind, f, line);
                    }
                    self.pump().await;
                }
            }
            SocketEvent::Binary => self.session.bad_frame("a binary message".to_owned()),
            SocketEvent::Closed(code, reason) => {
                self.socket = None;
                self.socket_gone(code, &reason);
                self.session.client.handle_close(code, &reason, now());
            }
            SocketEvent::Other => {}
        }
    }

    /// The session socket went: every room's join went with it.
    fn socket_gone(&mut self, code: u16, reason: &str) {
        let t = now();
        for r in self.rooms.values_mut() {
            r.pending_join = None;
            if std::mem::take(&mut r.joined) {
                r.conn.client.handle_close(code, reason, t);
            }
        }
    }

    fn on_frame(&mut self, kind: &str, mut f: Value, line: &str) {
        let t = now();
        let room = f.get("room").and_then(Value::as_str).filter(|_| kind != "watch" && kind != "read_position").map(Arc::<str>::from);
        let Some(room) = room else {
            return match kind {
                "session" => {
                    let expires = f.get("expires").and_then(Value::as_u64);
                    self.session.client.handle_welcome("", 0, None, expires, t);
                }
                _ => self.session.on_frame(kind, f, line, t),
            };
        };
        // A frame of a room this socket does not hold (left already) is dropped.
        let Some(r) = self.rooms.get_mut(&room) else { return };
        match kind {
            "joined" => {
                // The session's socket pings, not the room's.
                if let Some(o) = f.as_object_mut() {
                    o.remove("heartbeat");
                }
                r.conn.on_welcome(&f, t);
            }
            "left" => {
                let code = f.get("code").and_then(Value::as_u64).map_or(1000, |c| c.min(u16::MAX.into()) as u16);
                let reason = f.get("reason").and_then(Value::as_str).unwrap_or_default().to_owned();
                if std::mem::take(&mut r.joined) {
                    r.conn.client.handle_close(code, &reason, t);
                }
            }
            "gap" => match f.get("until").and_then(Value::as_u64) {
                Some(until) => r.conn.client.handle_gap(until),
                None => r.conn.bad_frame("invalid gap frame".to_owned()),
            },
            _ => r.conn.on_frame(kind, f, line, t),
        }
    }

    /// Carries out what the session's machine and every room's asked, until none asks more.
    async fn pump(&mut self) {
        loop {
            let mut busy = false;
            for io in self.session.drain() {
                busy = true;
                match io {
                    Io::FetchToken => match &self.opts.auth {
                        Auth::Callback(f) => self.fetching = Some(f()),
                        _ => self.session.client.handle_token(None, now()),
                    },
                    // A session socket resumes nothing: its rooms do, each in its join.
                    Io::Connect(_) => {
                        let url = format!("{}?errors=close&cid={}", self.endpoint, driver::query_value(&self.session.client_id));
                        self.opening = Some(Box::pin(driver::open(url, protocols(self.token.as_deref()))));
                    }
                    Io::Send(text) => send(&mut self.socket, text).await,
                    Io::CloseSocket(code) => {
                        self.opening = None;
                        close_socket(self.socket.take(), code);
                        self.socket_gone(code.code, code.reason);
                    }
                    Io::Finished => {
                        self.socket = None;
                        self.opening = None;
                        self.fetching = None;
                        // Closed for good: so is every room on it.
                        for r in self.rooms.values_mut() {
                            r.joined = false;
                            r.conn.client.close();
                        }
                    }
                }
            }
            if !self.was_open && self.open() {
                // Open: the rooms waiting join now, and those backing off since it dropped too.
                busy = true;
                let t = now();
                for r in self.rooms.values_mut() {
                    match r.pending_join.take() {
                        Some(join) => send(&mut self.socket, join).await,
                        None => r.conn.client.handle_wake(t),
                    }
                }
            }
            let open = self.open();
            self.was_open = open;
            let mut finished = Vec::new();
            for (name, r) in self.rooms.iter_mut() {
                for io in r.conn.drain() {
                    busy = true;
                    match io {
                        // A room of a session fetches no token: the session's socket holds it.
                        Io::FetchToken => r.conn.client.handle_token(None, now()),
                        Io::Connect(resume) => {
                            let resume = resume.as_ref().map(|(e, s)| (e.as_str(), *s));
                            let join = session::join_frame(&r.room_json, resume, r.rewind, r.conn.echo);
                            r.joined = true;
                            if open {
                                send(&mut self.socket, join).await;
                            } else {
                                r.pending_join = Some(join);
                            }
                        }
                        Io::Send(text) => {
                            if open && r.joined {
                                send(&mut self.socket, session::with_room(&r.room_json, &text)).await;
                            }
                        }
                        Io::CloseSocket(_) => {
                            r.pending_join = None;
                            if open && std::mem::take(&mut r.joined) {
                                send(&mut self.socket, session::leave_frame(&r.room_json)).await;
                            }
                        }
                        Io::Finished => finished.push(name.clone()),
                    }
                }
            }
            for name in finished {
                // Its event stream ends once the room is gone; late calls fail as closed.
                if let Some(mut r) = self.rooms.remove(&name) {
                    r.conn.forget_calls();
                }
            }
            if !busy {
                return;
            }
        }
    }
}
