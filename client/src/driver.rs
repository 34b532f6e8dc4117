//! The adapter: one tokio task per room owns the machine, the socket, the pending token fetch and
//! the calls waiting for answers. Each turn of its loop feeds the machine one event (a command, a
//! frame, a close, a token, the timer) and then carries out every output the machine returned
//! ([`Driver::pump`]), exactly as the browser SDK's `conn.rs` does.

use crate::conn::{Conn, Io};
use crate::frames::ErrorEvent;
use crate::{Auth, Command, Error, Event, Options, TokenFuture};
use futures_util::{SinkExt, StreamExt};
use roomcast_protocol::client::{Client, State};
use serde_json::Value;
use std::future::{pending, Future};
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a socket did not open: a failure worth retrying, or a request that would be refused again.
pub enum OpenError {
    Failed(String),
    Refused(String),
}

pub type Opening = Pin<Box<dyn Future<Output = Result<Ws, OpenError>> + Send>>;

/// A socket attempt of `conn`'s machine ended (a room's driver or a session's): the socket, or
/// the machine told why there is none.
pub(crate) fn opened_socket(conn: &mut Conn, opened: Result<Ws, OpenError>) -> Option<Ws> {
    match opened {
        Ok(ws) => Some(ws),
        Err(OpenError::Failed(reason)) => {
            conn.client.handle_close(1006, &reason, now());
            None
        }
        Err(OpenError::Refused(reason)) => {
            conn.emit(Event::Error(ErrorEvent { code: "socket_refused".to_owned(), message: reason }));
            conn.client.handle_socket_refused();
            None
        }
    }
}

/// A token fetch for `conn`'s machine ended: the token to present from now on, if it brought one
/// (the machine is told either way; a failure is an `Error` event too).
pub(crate) fn fetched_token(conn: &mut Conn, token: Result<String, String>) -> Option<String> {
    let json = token.as_ref().ok().map(|t| Value::String(t.clone()).to_string());
    let fresh = match token {
        Ok(t) => Some(t),
        Err(e) => {
            conn.emit(Event::Error(ErrorEvent { code: "token".to_owned(), message: e }));
            None
        }
    };
    conn.client.handle_token(json.as_deref(), now());
    fresh
}

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
pub fn query_value(s: &str) -> String {
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
    let conn = Conn::new(client, client_id, opts.echo, events);
    let driver = Driver { conn, endpoint, opts, token, socket: None, opening: None, fetching: None, cmds, cmds_open: true };
    tokio::spawn(driver.run());
}

struct Driver {
    conn: Conn,
    endpoint: String,
    opts: Options,
    /// The token the next connection presents.
    token: Option<String>,
    socket: Option<Ws>,
    opening: Option<Opening>,
    fetching: Option<TokenFuture>,
    cmds: mpsc::UnboundedReceiver<Command>,
    cmds_open: bool,
}

/// Awaits the future in `slot`, or forever when there is none; the slot is emptied when it ends.
pub async fn take<F: Future + Unpin>(slot: &mut Option<F>) -> F::Output {
    match slot {
        Some(f) => {
            let out = f.await;
            *slot = None;
            out
        }
        None => pending().await,
    }
}

pub async fn next_message(socket: &mut Option<Ws>) -> Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>> {
    match socket {
        Some(ws) => ws.next().await,
        None => pending().await,
    }
}

/// Bytes a socket's read asks the kernel for at most. tungstenite zero-fills the free part of its
/// read buffer before every read, up to this size, and a read that finds nothing (each wake-up
/// ends with one) pays it too: with its default of 128 KiB, `memset` was the hottest function of
/// a client receiving 9,500 messages/s (8.7 % of its samples; bench/README.md, *The native
/// client*). A room's frames are small, and a larger one still arrives whole (the buffer grows to
/// the frame's length; only each read is capped).
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The socket settings every connection of this crate uses (tungstenite's defaults otherwise).
pub fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(READ_BUFFER_BYTES)
}

pub async fn open(url: String, protocols: String) -> Result<Ws, OpenError> {
    let mut request = url.as_str().into_client_request().map_err(|e| OpenError::Refused(e.to_string()))?;
    let value = HeaderValue::from_str(&protocols).map_err(|_| OpenError::Refused("the token is not a valid header value".to_owned()))?;
    request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
    match tokio_tungstenite::connect_async_with_config(request, Some(socket_config()), false).await {
        Ok((ws, _)) => Ok(ws),
        Err(e) => Err(OpenError::Failed(e.to_string())),
    }
}

impl Driver {
    async fn run(mut self) {
        self.pump().await;
        while self.conn.client.state() != State::Closed {
            let delay =
                self.conn.client.poll_timeout().map_or(Duration::from_secs(3600), |at| Duration::from_millis(at.saturating_sub(now())));
            tokio::select! {
                cmd = self.cmds.recv(), if self.cmds_open => match cmd {
                    Some(cmd) => self.conn.command(cmd, now()),
                    None => {
                        // Every handle is gone: nobody can read or call any more.
                        self.cmds_open = false;
                        self.conn.client.close();
                    }
                },
                msg = next_message(&mut self.socket) => self.on_socket(msg).await,
                opened = take(&mut self.opening) => {
                    if let Some(ws) = opened_socket(&mut self.conn, opened) {
                        self.socket = Some(ws);
                    }
                },
                token = take(&mut self.fetching) => {
                    if let Some(t) = fetched_token(&mut self.conn, token) {
                        self.token = Some(t);
                    }
                },
                _ = tokio::time::sleep(delay) => self.conn.client.handle_timeout(now()),
            }
            self.pump().await;
        }
        self.conn.forget_calls();
    }

    async fn on_socket(&mut self, msg: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>) {
        match socket_event(msg) {
            SocketEvent::Text(text) => {
                for line in text.split('\n') {
                    if let Some((kind, f)) = parse_line(&self.conn, line) {
                        self.conn.on_frame(&kind, f, line, now());
                    }
                    self.pump().await;
                    if self.socket.is_none() {
                        // The machine dropped the socket (a seq out of order): the resume covers
                        // the rest of its lines.
                        break;
                    }
                }
            }
            SocketEvent::Binary => self.conn.bad_frame("a binary message".to_owned()),
            SocketEvent::Closed(code, reason) => {
                self.socket = None;
                self.conn.client.handle_close(code, &reason, now());
            }
            SocketEvent::Other => {}
        }
    }

    /// The connection URL for a connect, resuming from `(epoch, since)` when given.
    fn url(&self, resume: Option<(String, u64)>) -> String {
        let mut url = format!("{}?errors=close&cid={}", self.endpoint, query_value(&self.conn.client_id));
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
        loop {
            let io = self.conn.drain();
            if io.is_empty() {
                return;
            }
            for io in io {
                match io {
                    Io::FetchToken => match &self.opts.auth {
                        Auth::Callback(f) => self.fetching = Some(f()),
                        _ => self.conn.client.handle_token(None, now()),
                    },
                    Io::Connect(resume) => {
                        let protocols = protocols(self.token.as_deref());
                        self.opening = Some(Box::pin(open(self.url(resume), protocols)));
                    }
                    Io::Send(text) => send(&mut self.socket, text).await,
                    Io::CloseSocket(code) => {
                        self.opening = None;
                        close_socket(self.socket.take(), code);
                    }
                    Io::Finished => {
                        self.socket = None;
                        self.opening = None;
                        self.fetching = None;
                    }
                }
            }
        }
    }
}

/// The subprotocols offered: `roomcast.v1`, and the token as `bearer.<token>`.
pub fn protocols(token: Option<&str>) -> String {
    match token {
        Some(t) => format!("{SUBPROTOCOL}, bearer.{t}"),
        None => SUBPROTOCOL.to_owned(),
    }
}

/// Sends a text on the socket, if there is one (a failed send is followed by the socket's close,
/// which the machine hears).
pub async fn send(socket: &mut Option<Ws>, text: String) {
    if let Some(ws) = socket {
        let _ = ws.send(WsMessage::Text(text.into())).await;
    }
}

/// Closes a socket the machine gave up on, without holding the machine up.
pub fn close_socket(socket: Option<Ws>, code: roomcast_protocol::close::CloseCode) {
    if let Some(mut ws) = socket {
        let frame = CloseFrame { code: CloseCode::from(code.code), reason: code.reason.into() };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(Some(frame))).await;
        });
    }
}

/// What a socket's read came to.
pub enum SocketEvent {
    Text(String),
    Binary,
    Closed(u16, String),
    Other,
}

pub fn socket_event(msg: Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>) -> SocketEvent {
    match msg {
        Some(Ok(WsMessage::Text(text))) => SocketEvent::Text(text.as_str().to_owned()),
        Some(Ok(WsMessage::Binary(_))) => SocketEvent::Binary,
        Some(Ok(WsMessage::Close(frame))) => {
            let (code, reason) = frame.map_or((1005, String::new()), |f| (u16::from(f.code), f.reason.as_str().to_owned()));
            SocketEvent::Closed(code, reason)
        }
        Some(Ok(_)) => SocketEvent::Other,
        Some(Err(e)) => SocketEvent::Closed(1006, e.to_string()),
        None => SocketEvent::Closed(1006, String::new()),
    }
}

/// A line as a frame and its type, or `None` after reporting why it is not one to `conn`.
pub fn parse_line(conn: &Conn, line: &str) -> Option<(String, Value)> {
    let Ok(f) = serde_json::from_str::<Value>(line) else {
        conn.bad_frame(format!("not JSON: {}", line.chars().take(200).collect::<String>()));
        return None;
    };
    let Some(kind) = f.get("type").and_then(Value::as_str).map(str::to_owned) else {
        conn.bad_frame("not a frame".to_owned());
        return None;
    };
    Some((kind, f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_capped_well_below_tungstenites_zero_filled_default() {
        // The default zero-fills 128 KiB before every read (see READ_BUFFER_BYTES).
        let default = WebSocketConfig::default().read_buffer_size;
        assert!(socket_config().read_buffer_size <= 16 * 1024, "{}", socket_config().read_buffer_size);
        assert!(socket_config().read_buffer_size * 8 <= default, "default {default}");
    }
}
