//! The Session Durable Object, one per user (by the token's `sub`): every socket of that user
//! that came through `GET /session/ws`, and the rooms each joined. It feeds socket events, the
//! rooms' answers and their feed calls into [`Session`] and carries out its outputs: frames to
//! sockets, calls to rooms (in order, one in flight per room, queued ops batched), rows in its
//! SQLite. It holds no rules of its own.
//!
//! After hibernation the object is constructed anew: the first event rebuilds the session from
//! the live sockets' attachments (each device's identity) and the stored rows (joins, feed
//! positions, read positions).

use crate::sql_store::SqlStore;
use crate::{http, platform};
use roomcast_protocol::api::{Refusal, SessionConnect, SESSION_HEADER};
use roomcast_protocol::close;
use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::frame;
use roomcast_protocol::relay::{FeedCall, RelayOp, RelayReply, RelayRequest, FEED_PATH, RELAY_PATH};
use roomcast_protocol::session::{DeviceInfo, Output, Row, Secrets, Session, SessionLimits};
use roomcast_protocol::sorted::SortedMap;
use roomcast_protocol::webhook::event::Event as HookEvent;
use roomcast_protocol::webhook::Outbox;
use std::cell::RefCell;
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, Headers, Method, Request, Response, Result, SqlStorageValue, State, WebSocket, WebSocketPair,
};

#[durable_object(alarm)]
pub struct SessionObject {
    core: Rc<Core>,
}

impl std::ops::Deref for SessionObject {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

/// Calls to one room: queued ops (with the device each is for) and whether a call is in flight.
#[derive(Default)]
struct RoomCalls {
    queued: Vec<(u64, RelayOp)>,
    busy: bool,
}

pub struct Core {
    state: State,
    env: Env,
    session: RefCell<Option<Session>>,
    sockets: RefCell<SortedMap<u64, WebSocket>>,
    /// Socket → device id, kept current on open (the runtime hands the same socket object back).
    ids: js_sys::WeakMap,
    calls: RefCell<SortedMap<String, RoomCalls>>,
    /// `user.online` / `user.offline` webhooks (when `WEBHOOK_EVENTS` names them): the outbox on
    /// the session's own SQLite, delivered from the alarm as a room's are.
    hooks: RefCell<Option<(SqlStore, Outbox)>>,
    /// Feed positions not saved yet (key → row), whether a save is on its way, and how many feed
    /// positions changed (the save waits until they stop changing).
    feed_rows: RefCell<SortedMap<String, String>>,
    feed_save: std::cell::Cell<bool>,
    feed_changes: std::cell::Cell<u64>,
}

/// How long the feed positions must stay still before they are saved. Saving one on every feed
/// call cost a commit and an fsync per delivery (docs/SESSIONS.md, *Measured*: 31 % of the
/// runtime's samples in the commit, 25 % in its fsync), and saving them once a second still cost
/// one commit per second per busy session, more than the rooms' own commits. They are needed only
/// across hibernation (a crash takes the sockets too, and their devices resume from their own
/// points), which comes only after the calls stop; the pending save keeps the object awake until
/// it is done (`waitUntil`), so it never hibernates with a position unsaved. So: one save once the
/// calls pause for this long, none while they keep coming.
const FEED_SAVE_MS: u64 = 1_000;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS session_rows (k TEXT PRIMARY KEY, v TEXT NOT NULL);";

/// See room_object.rs: no compression is ever negotiated.
const NO_EXTENSIONS: &str = "roomcast-no-compression";

impl Core {
    fn config(&self) -> RoomConfig {
        RoomConfig::from_vars(|name| self.env.var(name).ok().map(|v| v.to_string()))
    }

    fn secret(&self, name: &str) -> Vec<u8> {
        self.env.secret(name).map(|s| s.to_string().into_bytes()).unwrap_or_default()
    }

    /// The session, loaded first if this is the instance's first event.
    fn with<R>(&self, f: impl FnOnce(&mut Session, u64) -> R) -> Result<R> {
        let now = platform::now_ms();
        let mut slot = self.session.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.load(now)?);
        }
        let session = slot.as_mut().ok_or_else(|| worker::Error::RustError("session not loaded".into()))?;
        Ok(f(session, now))
    }

    fn load(&self, now: u64) -> Result<Session> {
        let pair = worker::worker_sys::WebSocketRequestResponsePair::new(frame::PING, frame::PONG)
            .map_err(|_| worker::Error::RustError("auto-response pair".into()))?;
        self.state.set_websocket_auto_response(&pair);
        let sql = self.state.storage().sql();
        sql.exec(SCHEMA, None)?;
        // Read with `raw()` as the room's store does: `to_array` would bring serde_wasm_bindgen
        // (and float formatting through its errors) into the wasm for this one query.
        let mut rows: Vec<Row> = Vec::new();
        for row in sql.exec("SELECT v FROM session_rows", None)?.raw() {
            if let Some(SqlStorageValue::String(v)) = row?.into_iter().next() {
                rows.extend(serde_json::from_str::<Row>(&v).ok());
            }
        }
        let mut devices = Vec::new();
        for ws in self.state.get_websockets() {
            let Some(info) = attachment(&ws) else { continue };
            self.ids.set(ws.as_ref(), &wasm_bindgen::JsValue::from_f64(info.id as f64));
            self.sockets.borrow_mut().insert(info.id, ws);
            devices.push(info);
        }
        let user = platform::object_name(&self.state).unwrap_or_default();
        let secrets = Secrets { current: self.secret("ROOMCAST_SECRET"), previous: self.secret("ROOMCAST_SECRET_PREVIOUS") };
        let config = self.config();
        let mut session = Session::new(&user, secrets, now);
        session.set_limits(SessionLimits::from_config(&config));
        session.set_offline_grace(config.presence_grace_ms);
        // A socket whose token expired waits for a refresh as long as a silent one is kept.
        session.set_expired_grace(config.heartbeat_timeout_ms);
        if config.webhook.enabled() && config.webhook.events.wants_users() {
            let mut store = SqlStore::open(self.state.storage().sql()).map_err(|e| worker::Error::RustError(e.0))?;
            let outbox = Outbox::load(&format!("session:{user}"), config.webhook.clone(), &platform::random_hex(8), &mut store)
                .map_err(|e| worker::Error::RustError(e.0))?;
            *self.hooks.borrow_mut() = Some((store, outbox));
        }
        session.restore(devices, rows, now);
        Ok(session)
    }

    fn device_of(&self, ws: &WebSocket) -> Option<u64> {
        match self.ids.get(ws.as_ref()).as_f64() {
            Some(id) => Some(id as u64),
            None => attachment(ws).map(|d| d.id),
        }
    }

    /// Carries out what the session queued: frames and closes now, rows now, room calls in order.
    fn carry_out(self: &Rc<Self>) {
        loop {
            let next = self.session.borrow_mut().as_mut().and_then(Session::poll_output);
            let Some(output) = next else { break };
            match output {
                Output::Send { device, text } => {
                    if let Some(ws) = self.sockets.borrow().get(&device) {
                        // A closing socket refuses; its close event follows. (Through the
                        // platform: a new socket's frames wait for its upgrade response.)
                        let _ = platform::send_js(ws, &platform::js_text(&text));
                    }
                }
                Output::Close { device, code, reason } => {
                    if let Some(ws) = self.sockets.borrow_mut().remove(&device) {
                        platform::set_attachment(&ws, "");
                        platform::close(&ws, code, &reason);
                    }
                }
                Output::Save(row) => {
                    let v = serde_json::to_string(&row).unwrap_or_default();
                    if matches!(row, Row::Feed { .. }) {
                        // A feed position is saved at most once a FEED_SAVE_MS per room (below).
                        self.feed_rows.borrow_mut().insert(row.key(), v);
                        self.feed_changes.set(self.feed_changes.get().wrapping_add(1));
                        self.save_feed_soon();
                        continue;
                    }
                    self.save_row(row.key(), v);
                }
                Output::Attach { device } => {
                    let info = self.session.borrow().as_ref().and_then(|s| s.device(device)).and_then(|d| serde_json::to_string(d).ok());
                    if let (Some(info), Some(ws)) = (info, self.sockets.borrow().get(&device)) {
                        platform::set_attachment(ws, &info);
                    }
                }
                Output::Delete(key) => {
                    self.feed_rows.borrow_mut().remove(&key);
                    let _ = self.state.storage().sql().exec("DELETE FROM session_rows WHERE k = ?", vec![key.into()]);
                }
                Output::UserOnline | Output::UserOffline => {
                    let online = matches!(output, Output::UserOnline);
                    let user = self.session.borrow().as_ref().map(|s| s.user().to_owned()).unwrap_or_default();
                    if let Some((store, outbox)) = self.hooks.borrow_mut().as_mut() {
                        let event = if online { HookEvent::UserOnline { user: &user } } else { HookEvent::UserOffline { user: &user } };
                        // A failed write loses the event (as a room's presence events do).
                        let _ = outbox.push(event, platform::now_ms(), store);
                    }
                    self.arm_soon();
                }
                Output::Relay { room, device, op } => {
                    let start = {
                        let mut calls = self.calls.borrow_mut();
                        let entry = calls.entry(room.clone()).or_default();
                        entry.queued.push((device, op));
                        !std::mem::replace(&mut entry.busy, true)
                    };
                    if start {
                        self.spawn_calls(room);
                    }
                }
            }
        }
    }

    /// Calls `room` with everything queued for it, then again while more was queued meanwhile.
    fn spawn_calls(self: &Rc<Self>, room: String) {
        let core = self.clone();
        let work = async move {
            loop {
                let ops = {
                    let mut calls = core.calls.borrow_mut();
                    match calls.get_mut(&room) {
                        Some(c) if !c.queued.is_empty() => std::mem::take(&mut c.queued),
                        // Idle: the entry goes (one per room ever called would pile up).
                        Some(_) => {
                            calls.remove(&room);
                            break;
                        }
                        None => break,
                    }
                };
                let user = core.session.borrow().as_ref().map(|s| s.user().to_owned()).unwrap_or_default();
                let request = RelayRequest { session: user, ops: ops.iter().map(|(_, op)| op.clone()).collect() };
                let reply = core.call_room(&room, &request).await;
                let _ = core.with(|s, _| match reply {
                    Some(reply) if reply.results.len() == ops.len() => {
                        for ((device, _), result) in ops.iter().zip(reply.results) {
                            s.handle_relay_result(&room, *device, result);
                        }
                    }
                    _ => {
                        for (device, op) in &ops {
                            s.handle_relay_failure(&room, *device, op);
                        }
                    }
                });
                core.carry_out();
            }
            Ok(wasm_bindgen::JsValue::UNDEFINED)
        };
        // `waitUntil` keeps the calls alive after the event that queued them returned.
        let _ = self.state.as_raw().wait_until(&worker::wasm_bindgen_futures::future_to_promise(work));
    }

    async fn call_room(&self, room: &str, request: &RelayRequest) -> Option<RelayReply> {
        let rooms = self.env.durable_object("ROOMS").ok()?;
        let text = platform::call_object(&rooms, room, RELAY_PATH, &request.encode()).await?;
        RelayReply::decode(&text)
    }

    async fn accept(self: &Rc<Self>, req: &Request) -> Result<Response> {
        let Some(header) = req.headers().get(SESSION_HEADER)? else {
            return http::refused(&Refusal::bad_request("sessions come through the edge"), None);
        };
        // From bytes, as the token's claims are read: one copy of their deserializer (see `attachment`).
        let Ok(connect) = serde_json::from_str::<SessionConnect>(&header) else {
            return http::refused(&Refusal::bad_request("bad session header"), None);
        };
        let subprotocol = connect.subprotocol;
        let device = match self.with(|s, now| s.handle_open(connect.cid, connect.claims, now))? {
            Ok(device) => device,
            Err(_) => return http::refused(&Refusal::forbidden("the token is for another user"), None),
        };
        let pair = WebSocketPair::new()?;
        let server = pair.server;
        self.state.accept_web_socket(&server);
        // Its first frames wait until the response below is on its way (see platform::Held).
        let _held = platform::Held::new(&server);
        if let Some(info) = self.session.borrow().as_ref().and_then(|s| s.device(device)) {
            platform::set_attachment(&server, &serde_json::to_string(info).unwrap_or_default());
        }
        self.ids.set(server.as_ref(), &wasm_bindgen::JsValue::from_f64(device as f64));
        let first = self.sockets.borrow().is_empty();
        self.sockets.borrow_mut().insert(device, server);
        self.carry_out();
        if first {
            self.arm_sweep().await?;
        }
        let headers = Headers::new();
        headers.set("Sec-WebSocket-Extensions", NO_EXTENSIONS)?;
        if subprotocol {
            headers.set("Sec-WebSocket-Protocol", roomcast_protocol::SUBPROTOCOL)?;
        }
        Ok(Response::from_websocket(pair.client)?.with_headers(headers))
    }

    /// The sweep: sockets silent for longer than the heartbeat timeout are closed (their rooms
    /// told), every half timeout while the session has sockets, and as soon as one would be past
    /// the timeout (`next_deadline`). One alarm per user, not per room.
    fn sweep(self: &Rc<Self>) -> Result<bool> {
        let timeout = self.config().heartbeat_timeout_ms;
        let state = &self.state;
        let sockets = self.sockets.borrow().clone();
        let any = self.with(|s, now| {
            s.handle_sweep(now, timeout, |d| sockets.get(&d).and_then(|ws| platform::last_auto_response(state, ws)));
            s.has_devices()
        })?;
        self.carry_out();
        Ok(any)
    }

    async fn arm_sweep(&self) -> Result<()> {
        let half = (self.config().heartbeat_timeout_ms / 2).max(1_000);
        self.arm_at(platform::now_ms().saturating_add(half)).await
    }

    /// When the alarm is next needed: the sweep while sockets are open, the end of an offline
    /// grace period, the webhook outbox's next attempt.
    fn next_deadline(&self, now: u64) -> Option<u64> {
        let timeout = self.config().heartbeat_timeout_ms;
        let sockets = self.sockets.borrow();
        // Every half timeout, or sooner when a socket would be past the timeout before then.
        let sweep = self.session.borrow().as_ref().filter(|s| s.has_devices()).map(|s| {
            let due = s.next_sweep(timeout, |d| sockets.get(&d).and_then(|ws| platform::last_auto_response(&self.state, ws)));
            now.saturating_add((timeout / 2).max(1_000)).min(due.unwrap_or(u64::MAX)).max(now)
        });
        let grace = self.session.borrow().as_ref().and_then(Session::poll_timeout);
        let hooks = self.hooks.borrow().as_ref().and_then(|(_, o)| o.poll_timeout());
        [sweep, grace, hooks].into_iter().flatten().min()
    }

    /// Sets the alarm for `at` unless one is set earlier.
    async fn arm_at(&self, at: u64) -> Result<()> {
        let storage = self.state.storage();
        let current = storage.get_alarm().await?;
        if current.is_none_or(|c| c.max(0) as u64 > at) {
            storage.set_alarm(std::time::Duration::from_millis(at.saturating_sub(platform::now_ms()))).await?;
        }
        Ok(())
    }

    fn save_row(&self, key: String, value: String) {
        // A failed write is forgotten at the next wake at worst: the device then joins again.
        let _ = self.state.storage().sql().exec("INSERT OR REPLACE INTO session_rows (k, v) VALUES (?, ?)", vec![key.into(), value.into()]);
    }

    /// Saves the pending feed positions, all in one go, once none changed for `FEED_SAVE_MS`.
    fn save_feed_soon(self: &Rc<Self>) {
        if self.feed_save.replace(true) {
            return;
        }
        let core = self.clone();
        let work = async move {
            loop {
                let seen = core.feed_changes.get();
                worker::Delay::from(std::time::Duration::from_millis(FEED_SAVE_MS)).await;
                if core.feed_changes.get() == seen {
                    break;
                }
            }
            core.feed_save.set(false);
            let rows = std::mem::take(&mut *core.feed_rows.borrow_mut());
            for (key, value) in rows {
                core.save_row(key, value);
            }
            Ok(wasm_bindgen::JsValue::UNDEFINED)
        };
        let _ = self.state.as_raw().wait_until(&worker::wasm_bindgen_futures::future_to_promise(work));
    }

    /// Brings the alarm forward to the next deadline (after an event that made a new one).
    fn arm_soon(self: &Rc<Self>) {
        let core = self.clone();
        let work = async move {
            if let Some(at) = core.next_deadline(platform::now_ms()) {
                core.arm_at(at).await?;
            }
            Ok(wasm_bindgen::JsValue::UNDEFINED)
        };
        let _ = self.state.as_raw().wait_until(&worker::wasm_bindgen_futures::future_to_promise(work));
    }

    /// The webhook POST that is due, made on its own (as a room's: the alarm is not held up by
    /// it); its result is recorded and the alarm moved.
    fn deliver_hooks(self: &Rc<Self>, now: u64) {
        let request = {
            let mut hooks = self.hooks.borrow_mut();
            let Some((store, outbox)) = hooks.as_mut() else { return };
            outbox.poll_request(now, store).ok().flatten()
        };
        let Some(request) = request else { return };
        let core = self.clone();
        let work = async move {
            let outcome = platform::post_webhook(&request).await;
            let (now, random) = (platform::now_ms(), platform::random_u64());
            if let Some((store, outbox)) = core.hooks.borrow_mut().as_mut() {
                let _ = outbox.handle_result(request.attempt, outcome, now, random, store);
            }
            if let Some(at) = core.next_deadline(now) {
                core.arm_at(at).await?;
            }
            Ok(wasm_bindgen::JsValue::UNDEFINED)
        };
        let _ = self.state.as_raw().wait_until(&worker::wasm_bindgen_futures::future_to_promise(work));
    }

    /// A room's feed call: dead sockets are closed first (the answer then lists only live
    /// devices), then the call is handled and answered.
    async fn feed(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        let Some(call) = FeedCall::decode(&req.text().await?) else {
            return http::refused(&Refusal::bad_request("feed calls come from rooms"), None);
        };
        let timeout = self.config().heartbeat_timeout_ms;
        let state = &self.state;
        let reply = self.with(|s, now| {
            // Borrowed once the session is loaded (loading fills the map).
            let sockets = self.sockets.borrow();
            s.handle_sweep(now, timeout, |d| sockets.get(&d).and_then(|ws| platform::last_auto_response(state, ws)));
            s.handle_feed(call)
        })?;
        self.carry_out();
        Response::ok(reply.encode())
    }

    fn closed(self: &Rc<Self>, ws: &WebSocket) {
        let device = self.device_of(ws);
        platform::set_attachment(ws, "");
        if let Some(device) = device {
            self.sockets.borrow_mut().remove(&device);
            let _ = self.with(|s, now| s.handle_close(device, now));
            self.carry_out();
            // the last socket gone: the offline grace period's end is a new deadline
            if self.session.borrow().as_ref().is_some_and(|s| s.poll_timeout().is_some()) {
                self.arm_soon();
            }
        }
    }
}

/// Read from bytes (`from_slice`), as `token::verify` reads a token's claims: serde_json's
/// deserializers are generic over the reader, so `from_str` would add a second copy of the
/// claims' (and their room map's) deserializer.
fn attachment(ws: &WebSocket) -> Option<DeviceInfo> {
    serde_json::from_str(&platform::attachment_text(ws)?).ok()
}

impl DurableObject for SessionObject {
    fn new(state: State, env: Env) -> Self {
        let core = Core {
            state,
            env,
            session: RefCell::new(None),
            sockets: RefCell::new(SortedMap::new()),
            ids: js_sys::WeakMap::new(),
            calls: RefCell::new(SortedMap::new()),
            hooks: RefCell::new(None),
            feed_rows: RefCell::new(SortedMap::new()),
            feed_save: std::cell::Cell::new(false),
            feed_changes: std::cell::Cell::new(0),
        };
        SessionObject { core: Rc::new(core) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let url = req.inner().url();
        let path = roomcast_protocol::api::request_url::path(&url);
        if path == "/ws" && req.method() == Method::Get {
            self.core.accept(&req).await
        } else if path == FEED_PATH && req.method() == Method::Post {
            self.core.feed(req).await
        } else if path == "/close" && req.method() == Method::Post {
            // the backend closes this user's session (the edge checked the API key)
            let closed = self.core.with(|s, now| s.handle_removed(now))?;
            self.core.carry_out();
            http::json_text(200, format!("{{\"closed\":{closed}}}"), None)
        } else {
            http::refused(&Refusal::not_found("no such session endpoint"), None)
        }
    }

    /// The session's one alarm: the sweep, the end of an offline grace period, the webhook's
    /// next POST.
    async fn alarm(&self) -> Result<Response> {
        self.core.sweep()?;
        self.core.with(|s, now| s.handle_timeout(now))?;
        self.core.carry_out();
        let now = platform::now_ms();
        self.core.deliver_hooks(now);
        if let Some(at) = self.core.next_deadline(now) {
            self.core.arm_at(at).await?;
        }
        Response::ok("")
    }
}

/// The socket events, exported by hand as the room's are: a frame's length is read before it is
/// copied into wasm (a frame over the limit closes the socket with 4009, never copied).
#[wasm_bindgen::prelude::wasm_bindgen]
impl SessionObject {
    #[wasm_bindgen(js_name = webSocketMessage)]
    pub fn web_socket_message(&self, ws: web_sys::WebSocket, message: wasm_bindgen::JsValue) -> wasm_bindgen::JsValue {
        use wasm_bindgen::JsCast;
        let ws = WebSocket::from(ws);
        let limit = self.core.config().max_frame_bytes;
        let Some(text) = message.dyn_ref::<js_sys::JsString>() else {
            let _ = ws.send_with_str(r#"{"type":"error","code":"bad_frame","message":"frames are text"}"#);
            return wasm_bindgen::JsValue::UNDEFINED;
        };
        if text.length() as usize > limit {
            let c = close::FRAME_TOO_LARGE;
            self.core.closed(&ws);
            let _ = ws.close(Some(c.code), Some(c.reason));
            return wasm_bindgen::JsValue::UNDEFINED;
        }
        let text = String::from(text);
        if let Some(device) = self.core.device_of(&ws) {
            match self.core.with(|s, now| s.handle_text(device, &text, now)) {
                Ok(()) => self.core.carry_out(),
                Err(e) => return js_sys::Promise::reject(&e.into()).into(),
            }
        }
        wasm_bindgen::JsValue::UNDEFINED
    }

    #[wasm_bindgen(js_name = webSocketClose)]
    pub fn web_socket_close(&self, ws: web_sys::WebSocket, code: u16, reason: String, _was_clean: bool) -> wasm_bindgen::JsValue {
        let code = if code == 1000 || (3000..5000).contains(&code) { code } else { 1000 };
        let ws = WebSocket::from(ws);
        let _ = ws.close(Some(code), Some(reason));
        self.core.closed(&ws);
        wasm_bindgen::JsValue::UNDEFINED
    }

    #[wasm_bindgen(js_name = webSocketError)]
    pub fn web_socket_error(&self, ws: web_sys::WebSocket, _error: wasm_bindgen::JsValue) -> wasm_bindgen::JsValue {
        self.core.closed(&WebSocket::from(ws));
        wasm_bindgen::JsValue::UNDEFINED
    }
}
