//! The adapter: one tokio task per room owns the machine, the socket, the pending token fetch and
//! the calls waiting for answers. Each turn of its loop feeds the machine one event (a command, a
//! frame, a close, a token, the timer) and then carries out every output the machine returned
//! ([`Driver::pump`]), exactly as the browser SDK's `conn.rs` does.

use crate::frames::{self, ErrorEvent};
use crate::{Answer, Auth, Command, Error, Event, Options, Reply, TokenFuture};
use futures_util::{SinkExt, StreamExt};
use roomcast_protocol::client::{CallId, Client, Output, QueueError, Resumed, State, Welcome};
use serde_json::Value;
use std::collections::HashMap;
use std::future::{pending, Future};
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a socket did not open: a failure worth retrying, or a request that would be refused again.
enum OpenError {
    Failed(String),
    Refused(String),
}

type Opening = Pin<Box<dyn Future<Output = Result<Ws, OpenError>> + Send>>;

/// The subprotocol the server selects (`roomcast_protocol::SUBPROTOCOL`).
const SUBPROTOCOL: &str = "roomcast.v1";

/// The wall clock in ms: the machine compares it with the welcome's `expires`.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// 64 random bits from the standard library's per-process random keys and the clock.
pub fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// A random client id: 16 hex digits.
pub fn random_client_id() -> String {
    format!("{:016x}", random_u64())
}

/// The room's WebSocket endpoint under the edge's origin `url`.
pub fn endpoint(url: &str, room: &str) -> Result<String, Error> {
    let url = url.trim_end_matches('/');
    let base = if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if url.starts_with("wss://") || url.starts_with("ws://") {
        url.to_owned()
    } else {
        return Err(Error::Url(format!("{url:?} is not an http(s):// or ws(s):// URL")));
    };
    // Room names go into the path verbatim (docs/PROTOCOL.md); the edge checks the rest.
    if room.is_empty() || room.len() > 128 || !room.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:~,@".contains(&b)) {
        return Err(Error::Url(format!("{room:?} is not a room name (1-128 of A-Z a-z 0-9 _ - . : and a ~user,user list)")));
    }
    Ok(format!("{base}/rooms/{room}/ws"))
}

/// `s` percent-encoded for a query value.
fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub fn spawn(
    endpoint: String,
    client_id: String,
    opts: Options,
    cmds: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
) {
    let fetches = matches!(opts.auth, Auth::Callback(_));
    let seed = opts.seed.unwrap_or_else(random_u64);
    let client = Client::new(opts.config.clone(), seed, fetches, now());
    let token = match &opts.auth {
        Auth::Token(t) => Some(t.clone()),
        _ => None,
    };
    let driver = Driver {
        client,
        endpoint,
        client_id,
        opts,
        token,
        socket: None,
        opening: None,
        fetching: None,
        calls: HashMap::new(),
        answers: HashMap::new(),
        cmds,
        cmds_open: true,
        events,
    };
    tokio::spawn(driver.run());
}

struct Driver {
    client: Client,
    endpoint: String,
    client_id: String,
    opts: Options,
    /// The token the next connection presents.
    token: Option<String>,
    socket: Option<Ws>,
    opening: Option<Opening>,
    fetching: Option<TokenFuture>,
    /// Calls waiting for their answer, by the machine's call id.
    calls: HashMap<CallId, Reply>,
    /// Answer frames by their wire id, kept while the machine settles the call they name.
    answers: HashMap<String, Value>,
    cmds: mpsc::UnboundedReceiver<Command>,
    cmds_open: bool,
    events: mpsc::UnboundedSender<Event>,
}

/// Awaits the future in `slot`, or forever when there is none; the slot is emptied when it ends.
async fn take<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(f) => {
            let out = f.await;
            *slot = None;
            out
        }
        None => pending().await,
    }
}

async fn next_message(socket: &mut Option<Ws>) -> Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>> {
    match socket {
        Some(ws) => ws.next().await,
        None => pending().await,
    }
}

async fn open(url: String, protocols: String) -> Result<Ws, OpenError> {
    let mut request = url.as_str().into_client_request().map_err(|e| OpenError::Refused(e.to_string()))?;
    let value = HeaderValue::from_str(&protocols).map_err(|_| OpenError::Refused("the token is not a valid header value".to_owned()))?;
    request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(e) => Err(OpenError::Failed(e.to_string())),
    }
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

impl Driver {
    async fn run(mut self) {
        self.pump().await;
        while self.client.state() != State::Closed {
            let delay = self.client.poll_timeout().map_or(Duration::from_secs(3600), |at| Duration::from_millis(at.saturating_sub(now())));
            tokio::select! {
                cmd = self.cmds.recv(), if self.cmds_open => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        // Every handle is gone: nobody can read or call any more.
                        self.cmds_open = false;
                        self.client.close();
                    }
                },
                msg = next_message(&mut self.socket) => self.on_socket(msg).await,
                opened = take(&mut self.opening) => match opened {
                    Ok(ws) => self.socket = Some(ws),
                    Err(OpenError::Failed(reason)) => self.client.handle_close(1006, &reason, now()),
                    Err(OpenError::Refused(reason)) => {
                        self.emit(Event::Error(ErrorEvent { code: "socket_refused".to_owned(), message: reason }));
                        self.client.handle_socket_refused();
                    }
                },
                token = take(&mut self.fetching) => {
                    let json = token.as_ref().ok().map(|t| Value::String(t.clone()).to_string());
                    match token {
                        Ok(t) => self.token = Some(t),
                        Err(e) => self.emit(Event::Error(ErrorEvent { code: "token".to_owned(), message: e })),
                    }
                    self.client.handle_token(json.as_deref(), now());
                },
                _ = tokio::time::sleep(delay) => self.client.handle_timeout(now()),
            }
            self.pump().await;
        }
        // Closed: whatever a late command asked fails as closed (dropping its reply says so).
        self.calls.clear();
    }

    fn emit(&self, event: Event) {
        let _ = self.events.send(event);
    }

    fn command(&mut self, cmd: Command) {
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
            Command::Wake => return c.handle_wake(now()),
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

    async fn on_socket(&mut self, msg: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>) {
        match msg {
            Some(Ok(WsMessage::Text(text))) => {
                for line in text.as_str().split('\n') {
                    self.on_line(line);
                    self.pump().await;
                    if self.socket.is_none() {
                        // The machine dropped the socket (a seq out of order): the resume covers
                        // the rest of its lines.
                        break;
                    }
                }
            }
            Some(Ok(WsMessage::Binary(_))) => {
                self.emit(Event::Error(ErrorEvent { code: "bad_frame".to_owned(), message: "a binary message".to_owned() }))
            }
            Some(Ok(WsMessage::Close(frame))) => {
                self.socket = None;
                let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_owned()));
                self.client.handle_close(code, &reason, now());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                self.socket = None;
                self.client.handle_close(1006, &e.to_string(), now());
            }
            None => {
                self.socket = None;
                self.client.handle_close(1006, "", now());
            }
        }
    }

    fn bad_frame(&self, message: String) {
        self.emit(Event::Error(ErrorEvent { code: "bad_frame".to_owned(), message }));
    }

    /// One server frame (one line of a message).
    fn on_line(&mut self, line: &str) {
        let t = now();
        let f: Value = match serde_json::from_str(line) {
            Ok(f) => f,
            Err(_) => return self.bad_frame(format!("not JSON: {}", line.chars().take(200).collect::<String>())),
        };
        let Some(kind) = f.get("type").and_then(Value::as_str).map(str::to_owned) else { return self.bad_frame("not a frame".to_owned()) };
        let id = f.get("id").and_then(Value::as_str).map(str::to_owned);
        let u64_of = |key: &str| f.get(key).and_then(Value::as_u64);
        match kind.as_str() {
            "welcome" => self.on_welcome(&f, t),
            "message" => {
                let Some(seq) = u64_of("seq") else { return self.bad_frame("invalid message frame".to_owned()) };
                let own = f.get("from").and_then(Value::as_str) == Some(&self.client_id);
                if self.client.handle_message(seq, t) && (self.opts.echo || !own) {
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

    fn on_welcome(&mut self, f: &Value, now: u64) {
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

    /// The connection URL for a connect, resuming from `(epoch, since)` when given.
    fn url(&self, resume: Option<(String, u64)>) -> String {
        let mut url = format!("{}?errors=close&cid={}", self.endpoint, query_value(&self.client_id));
        if self.opts.echo {
            url.push_str("&echo=1");
        }
        match resume {
            Some((epoch, since)) => url.push_str(&format!("&since={since}&epoch={}", query_value(&epoch))),
            None => {
                if let Some(n) = self.opts.rewind {
                    url.push_str(&format!("&rewind={n}"));
                }
            }
        }
        url
    }

    /// Carries out everything the machine asked, in order.
    async fn pump(&mut self) {
        while let Some(out) = self.client.poll_output() {
            match out {
                Output::FetchToken => match &self.opts.auth {
                    Auth::Callback(f) => self.fetching = Some(f()),
                    _ => self.client.handle_token(None, now()),
                },
                Output::Connect { resume } => {
                    let protocols = match &self.token {
                        Some(t) => format!("{SUBPROTOCOL}, bearer.{t}"),
                        None => SUBPROTOCOL.to_owned(),
                    };
                    self.opening = Some(Box::pin(open(self.url(resume), protocols)));
                }
                Output::Send(text) => {
                    if let Some(ws) = &mut self.socket {
                        // A failed send is followed by the socket's close, which the machine hears.
                        let _ = ws.send(WsMessage::Text(text.into())).await;
                    }
                }
                Output::CloseSocket(code) => {
                    self.opening = None;
                    if let Some(mut ws) = self.socket.take() {
                        let frame = CloseFrame { code: CloseCode::from(code.code), reason: code.reason.into() };
                        // The close handshake must not hold the machine up.
                        tokio::spawn(async move {
                            let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(Some(frame))).await;
                        });
                    }
                }
                Output::Status(s) => {
                    if s.state == State::Closed {
                        self.socket = None;
                        self.opening = None;
                        self.fetching = None;
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
        self.answers.clear();
    }
}
