//! The Room Durable Object: feeds platform events (upgrade, message, close, error, alarm, HTTP
//! API calls) into [`Room`] and carries out the actions it returns. It holds no rules of its own.
//!
//! After hibernation the object is constructed anew: the first event loads the room from SQLite
//! and rebuilds the connection table from the live sockets' attachments.

use crate::sql_store::SqlStore;
use crate::{http, platform};
use roomcast_protocol::api::call::{RoomCall, RoomRequest, CALL_PATH};
use roomcast_protocol::api::creation::Creator;
use roomcast_protocol::api::{Caller, ConnectInfo, Endpoint, Refusal, CONNECT_HEADER};
use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::frame;
use roomcast_protocol::gate::{AlarmChange, Gate, Step, Task};
use roomcast_protocol::relay::{FeedCall, FeedReply, RelayReply, RelayRequest, RelayResult, FEED_PATH, RELAY_PATH};
use roomcast_protocol::room::batch::{self, Group};
use roomcast_protocol::room::{ConnId, Connection, Identity, ResumePoint, Room, Start, TokenCheck};
use roomcast_protocol::sorted::SortedMap;
use serde::Deserialize;
use std::cell::{RefCell, RefMut};
use std::rc::Rc;
use worker::{durable_object, DurableObject, Env, Headers, Method, Request, Response, Result, State, WebSocket, WebSocketPair};

/// The room and what it needs, loaded on the first event after construction.
struct Loaded {
    room: Room,
    /// The room's name (the object's), which its feed calls to sessions carry.
    name: String,
    store: SqlStore,
    sockets: Sockets,
    /// Socket → connection id, kept current on open, so a message finds its sender without
    /// deserializing the socket's attachment (the runtime hands the same socket object back).
    ids: js_sys::WeakMap,
}

/// A socket frame, read only as far as the room may need it.
enum Incoming {
    /// A text that may be within the frame limit, copied into wasm.
    Text(String),
    /// A text over the frame limit: its length (a lower bound of its UTF-8 bytes) and its start.
    Oversized { len: usize, head: String },
    /// A binary message: its length only (the protocol is text).
    Binary(usize),
}

/// A socket frame as it arrived.
type Frame = (WebSocket, Incoming);

/// An event's work on the room, run once when the gate lets it (see [`Core::drive`]).
type Event<'a> = &'a mut dyn FnMut(&mut Loaded, u64);

/// Reads a frame's size before its content. A JS string's length, in UTF-16 code units, is at
/// most its length in UTF-8 bytes, so a text longer than `limit` units is over the frame limit
/// too and is never copied whole into wasm (the runtime may already have inflated it from a
/// compressed frame, up to its own 32 MiB): only its first bytes are, for the id. A binary
/// message's bytes are never copied.
fn incoming(message: &wasm_bindgen::JsValue, limit: usize) -> Incoming {
    use wasm_bindgen::JsCast;
    let Some(text) = message.dyn_ref::<js_sys::JsString>() else {
        let len = message.dyn_ref::<js_sys::ArrayBuffer>().map_or(0, js_sys::ArrayBuffer::byte_length);
        return Incoming::Binary(len as usize);
    };
    let len = text.length() as usize;
    if len > limit {
        let head = String::from(text.slice(0, frame::ID_PREFIX_SCAN as u32));
        return Incoming::Oversized { len, head };
    }
    Incoming::Text(String::from(text))
}

/// What an event waits for before it can go on (see [`roomcast_protocol::gate`]).
enum Await {
    /// Storage writes to be durable.
    Sync,
    /// The alarm to be set or deleted.
    Alarm(AlarmChange),
}

/// The class the runtime instantiates. Its socket events are exported by hand (`socket_events`),
/// not by `#[durable_object]`, so that a frame that writes nothing is handled synchronously;
/// everything else lives in [`Core`], shared with the futures of the events that must wait.
#[durable_object(alarm)]
pub struct RoomObject {
    core: Rc<Core>,
}

impl std::ops::Deref for RoomObject {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

pub struct Core {
    /// This core, for the feed calls it starts (they outlive the event that starts them).
    me: std::rc::Weak<Core>,
    state: State,
    env: Env,
    loaded: RefCell<Option<Loaded>>,
    /// The order of events, group commit, when frames may leave and when the alarm moves: a
    /// pure machine (`roomcast_protocol::gate`) this object only carries out.
    gate: RefCell<Gate<Frame>>,
}

/// The open sockets by connection id, and the same sockets as a JS array that the fanout hands
/// to the runtime in one call (kept current on open and close rather than rebuilt per message).
#[derive(Default)]
struct Sockets {
    by_id: SortedMap<ConnId, WebSocket>,
    all: js_sys::Array,
}

impl Sockets {
    fn insert(&mut self, id: ConnId, ws: WebSocket) {
        self.all.push(ws.as_ref());
        if let Some(old) = self.by_id.insert(id, ws) {
            self.forget(&old);
        }
    }

    fn remove(&mut self, id: &ConnId) -> Option<WebSocket> {
        let ws = self.by_id.remove(id)?;
        self.forget(&ws);
        Some(ws)
    }

    fn forget(&self, ws: &WebSocket) {
        // Order in the array does not matter (each recipient's frames keep their order), so the
        // last socket takes the removed one's place.
        let at = self.all.index_of(ws.as_ref(), 0);
        if at >= 0 {
            let last = self.all.pop();
            if (at as u32) < self.all.length() {
                self.all.set(at as u32, last);
            }
        }
    }

    fn get(&self, id: &ConnId) -> Option<&WebSocket> {
        self.by_id.get(id)
    }
}

/// What the room's upgrade response says of WebSocket extensions: none, so no frame is ever
/// compressed (a compressed frame inflates up to a thousandfold inside the runtime, before the
/// room sees its size: docs/SECURITY.md). The runtime negotiates `permessage-deflate` from this
/// header (workerd's manual compression mode: it agrees to a client's offer only when the header
/// offers it too, and then writes its own answer, or none); without the header it agrees to
/// whatever the client offers. An empty value reads as no header, and the compatibility flag
/// `no_web_socket_compression` drops the header, leaving `wrangler dev`'s own entry worker to
/// agree (both measured). So: a value that offers no `permessage-deflate`; clients never see it
/// (tests/e2e/overload.test.mjs).
const NO_EXTENSIONS: &str = "roomcast-no-compression";

/// The attachment holds just the JSON of [`Connection`], well under the 2,048-byte budget.
fn attachment(ws: &WebSocket) -> Option<Connection> {
    serde_json::from_str(&platform::attachment_text(ws)?).ok()
}

#[derive(Deserialize)]
struct IdOnly {
    i: ConnId,
}

fn attached_id(ws: &WebSocket) -> Option<ConnId> {
    serde_json::from_str::<IdOnly>(&platform::attachment_text(ws)?).ok().map(|c| c.i)
}

impl Loaded {
    fn remember(&self, ws: &WebSocket, id: ConnId) {
        // Connection ids stay below 2^53 (the room starts them at now × 1024), so f64 holds them exactly.
        self.ids.set(ws.as_ref(), &wasm_bindgen::JsValue::from_f64(id as f64));
    }

    /// The connection a socket belongs to: from the map, else (a socket this instance has not
    /// seen, which should not happen) from its attachment.
    fn conn_id(&self, ws: &WebSocket) -> Option<ConnId> {
        match self.ids.get(ws.as_ref()).as_f64() {
            Some(id) => Some(id as ConnId),
            None => attached_id(ws),
        }
    }
}

/// A socket whose close the room has handled (it closed it, or ran its close event) loses its
/// attachment, so a later wake does not restore it: `getWebSockets()` still lists closing and
/// closed sockets for a while. A socket the *client* closed keeps its attachment until its close
/// event ran; a wake in between (the close event itself wakes a hibernated room) restores it, and
/// the close event then ends it like any other, grace period and presence events included.
fn forget_attachment(ws: &WebSocket) {
    platform::set_attachment(ws, "");
}

impl Core {
    fn config(&self) -> RoomConfig {
        RoomConfig::from_vars(|name| self.env.var(name).ok().map(|v| v.to_string()))
    }

    fn load(&self) -> Result<Loaded> {
        let pair = worker::worker_sys::WebSocketRequestResponsePair::new(frame::PING, frame::PONG)
            .map_err(|_| worker::Error::RustError("auto-response pair".into()))?;
        self.state.set_websocket_auto_response(&pair);
        let mut store = SqlStore::open(self.state.storage().sql()).map_err(|e| worker::Error::RustError(e.0))?;
        let mut sockets = Sockets::default();
        let mut connections = Vec::new();
        let ids = js_sys::WeakMap::new();
        for ws in self.state.get_websockets() {
            if let Some(info) = attachment(&ws) {
                ids.set(ws.as_ref(), &wasm_bindgen::JsValue::from_f64(info.id as f64));
                sockets.insert(info.id, ws);
                connections.push(info);
            }
        }
        let epoch = platform::random_hex(8);
        let now = platform::now_ms();
        let mut room = Room::load(self.config(), &mut store, &epoch, now, connections).map_err(|e| worker::Error::RustError(e.0))?;
        let name = store.room_name(platform::object_name(&self.state)).map_err(|e| worker::Error::RustError(e.0))?;
        let room_name = name.clone().unwrap_or_default();
        // Webhooks are per room name (WEBHOOK_ROOMS); the outbox key is drawn once per room.
        if let Some(name) = &name {
            room.attach_webhooks(name, &platform::random_hex(8), now, &mut store).map_err(|e| worker::Error::RustError(e.0))?;
        }
        // Refresh frames are verified in the room, against its own name (rights are per room).
        // During a rotation, tokens signed with the previous secret refresh too (as at the edge).
        let secret = |name: &str| self.env.secret(name).map(|s| s.to_string()).unwrap_or_default();
        let (current, previous) = (secret("ROOMCAST_SECRET"), secret("ROOMCAST_SECRET_PREVIOUS"));
        if let (Some(name), false) = (name, current.is_empty()) {
            room.set_token_check(TokenCheck { room: name, secret: current.into_bytes(), previous: previous.into_bytes() });
        }
        // Read marks (room/reading.rs): a key of this instance's own, so no client can make a mark's id.
        room.set_mark_key(platform::random_hex(16).as_bytes());
        Ok(Loaded { room, name: room_name, store, sockets, ids })
    }

    /// The loaded room, loaded first if this is the instance's first event.
    fn loaded(&self) -> Result<RefMut<'_, Loaded>> {
        let mut slot = self.loaded.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.load()?);
        }
        RefMut::filter_map(slot, Option::as_mut).map_err(|_| worker::Error::RustError("room not loaded".into()))
    }

    /// Runs `f` on the room as an event of its own (an HTTP call, a close, the alarm) through
    /// the gate: after the frames that arrived before it, with what it queued carried out once
    /// every write before it is durable, and the alarm moved if the room's deadline did.
    async fn with_room<R>(&self, f: impl FnOnce(&mut Loaded, u64) -> R) -> Result<R> {
        self.loaded()?;
        let task = self.gate.borrow_mut().begin();
        self.run(task, f).await
    }

    /// [`Core::with_room`] for a joining socket: what the room queued before it is carried out
    /// first, to the sockets open when it was queued.
    async fn join<R>(&self, f: impl FnOnce(&mut Loaded, u64) -> R) -> Result<R> {
        self.loaded()?;
        let task = self.gate.borrow_mut().begin_join();
        self.run(task, f).await
    }

    /// Drives `task` with `f` as its event and hands back what `f` returned. The driving itself
    /// ([`Core::drive`], [`Core::advance`]) is not generic: one copy in the wasm, not one per
    /// kind of event (issue #21, the wasm's size).
    async fn run<R>(&self, task: Task<Frame>, f: impl FnOnce(&mut Loaded, u64) -> R) -> Result<R> {
        let (mut f, mut result) = (Some(f), None);
        self.drive(task, &mut |l, now| {
            if let Some(f) = f.take() {
                result = Some(f(l, now));
            }
        })
        .await?;
        result.ok_or_else(|| worker::Error::RustError("the event did not run".into()))
    }

    /// Drives `task` until it is done; `event` runs at most once, when the gate says so.
    async fn drive(&self, mut task: Task<Frame>, event: Event<'_>) -> Result<()> {
        let mut event = Some(event);
        while let Some(wait) = self.advance(&mut task, &mut event)? {
            self.wait(&mut task, wait).await?;
        }
        match event {
            None => Ok(()),
            Some(_) => Err(worker::Error::RustError("the event did not run".into())),
        }
    }

    /// Carries out the gate's steps for `task` until it must wait (returned) or is done.
    /// Everything here is synchronous: a frame that writes nothing and moves no alarm never
    /// becomes a promise.
    fn advance(&self, task: &mut Task<Frame>, event: &mut Option<Event<'_>>) -> Result<Option<Await>> {
        loop {
            let step = self.gate.borrow_mut().poll_step(task);
            match step {
                Step::Run { frames, event: run_event } => {
                    let mut l = self.loaded()?;
                    let now = platform::now_ms();
                    for (ws, message) in frames {
                        handle_frame(&mut l, &ws, &message, now);
                    }
                    if run_event {
                        if let Some(f) = event.take() {
                            f(&mut l, now);
                        }
                    }
                    // Connections through sessions the event closed, and the rows that follow.
                    let Loaded { room, store, .. } = &mut *l;
                    room.settle_relays(now, store);
                    save_changed(&mut l);
                    let wrote = l.store.take_wrote();
                    drop(l);
                    self.gate.borrow_mut().handle_ran(task, wrote);
                }
                Step::Sync => return Ok(Some(Await::Sync)),
                Step::Flush => {
                    carry_out(&mut *self.loaded()?);
                    self.start_feeds()?;
                }
                Step::Deadline => {
                    let next = self.loaded()?.room.poll_timeout();
                    if let Some(change) = self.gate.borrow_mut().handle_deadline(task, next) {
                        return Ok(Some(Await::Alarm(change)));
                    }
                }
                Step::Done => return Ok(None),
            }
        }
    }

    async fn wait(&self, task: &mut Task<Frame>, wait: Await) -> Result<()> {
        match wait {
            Await::Sync => {
                // A failed sync means the write is not durable: the output gate then never releases
                // what follows and the runtime resets the object, so the error itself needs no answer.
                let _ = self.state.storage().sync().await;
                self.gate.borrow_mut().handle_durable(task);
                Ok(())
            }
            Await::Alarm(at) => self.move_alarm(at).await,
        }
    }

    /// Finishes a frame's task that had to wait, as a promise the runtime waits for.
    async fn finish_frame(&self, mut task: Task<Frame>, first: Await) -> Result<()> {
        self.wait(&mut task, first).await?;
        self.drive(task, &mut |_, _| ()).await
    }

    async fn move_alarm(&self, at: Option<u64>) -> Result<()> {
        match at {
            // workers-rs reads an integer as an offset from now, not as a timestamp.
            Some(at) => self.state.storage().set_alarm(std::time::Duration::from_millis(at.saturating_sub(platform::now_ms()))).await,
            None => self.state.storage().delete_alarm().await,
        }
    }

    async fn accept(&self, req: &Request) -> Result<Response> {
        let Some(header) = req.headers().get(CONNECT_HEADER)? else {
            return http::refused(&Refusal::bad_request("connections come through the edge"), None);
        };
        let Ok(info) = serde_json::from_str::<ConnectInfo>(&header) else {
            return http::refused(&Refusal::bad_request("bad connect header"), None);
        };
        if let Err(r) = self.may_create(&Creator::of_connection(&info)).await {
            return http::refused_socket(&r, info.subprotocol);
        }
        let pair = WebSocketPair::new()?;
        let server = pair.server;
        self.state.accept_web_socket(&server);
        // Its frames (the welcome, a replay) wait until the response below is on its way.
        let _held = platform::Held::new(&server);
        let subprotocol = info.subprotocol;
        let identity =
            Identity { client_id: info.cid, user: info.user, meta: info.meta, echo: info.echo, rights: info.rights, expires: info.exp };
        let start = match (info.resume, info.rewind) {
            (Some((epoch, since)), _) => Start::Resume(ResumePoint { epoch, since }),
            (None, Some(n)) => Start::Rewind(n),
            (None, None) => Start::Fresh,
        };
        // A join: what the room queued before it leaves first, to the sockets open then (a
        // fanout's recipients are resolved when it is sent).
        self.join(move |l, now| {
            let id = match l.room.handle_start(identity, start, now, &mut l.store) {
                Ok(id) => id,
                Err(code) => {
                    // After the 101, like the frames it holds: a hibernatable socket closed
                    // before its upgrade response left keeps the client's TCP connection open
                    // about 10 s after the close handshake (tests/repro/close-linger.mjs).
                    // A 4029 that knows its wait says it (`; retryAfterMs=<n>`).
                    let reason = l.room.take_retry_after().map(|ms| roomcast_protocol::close::with_retry_after(code.reason, ms));
                    platform::close(&server, code.code, reason.as_deref().unwrap_or(code.reason));
                    return;
                }
            };
            if let Some(conn) = l.room.connection(id) {
                platform::set_attachment(&server, &serde_json::to_string(conn).unwrap_or_default());
            }
            l.remember(&server, id);
            l.sockets.insert(id, server);
        })
        .await?;
        let headers = Headers::new();
        headers.set("Sec-WebSocket-Extensions", NO_EXTENSIONS)?;
        if subprotocol {
            headers.set("Sec-WebSocket-Protocol", roomcast_protocol::SUBPROTOCOL)?;
        }
        Ok(Response::from_websocket(pair.client)?.with_headers(headers))
    }

    async fn closed(&self, ws: &WebSocket) -> Result<()> {
        self.with_room(|l, now| {
            if let Some(id) = l.conn_id(ws) {
                l.sockets.remove(&id);
                l.room.handle_close(id, now, &mut l.store);
            }
            forget_attachment(ws);
        })
        .await
    }
}

/// A socket frame, into the room.
fn handle_frame(l: &mut Loaded, ws: &WebSocket, message: &Incoming, now: u64) {
    let Some(id) = l.conn_id(ws) else { return };
    match message {
        Incoming::Text(text) => l.room.handle_text(id, text, now, &mut l.store),
        Incoming::Oversized { len, head } => l.room.handle_oversized(id, *len, head, now, &mut l.store),
        Incoming::Binary(len) => l.room.handle_binary(id, *len, now, &mut l.store),
    }
}

/// A refresh changed a connection's rights and expiry (or its last sign of life is due to be
/// saved): its attachment must say so, or a wake would restore the old ones.
fn save_changed(l: &mut Loaded) {
    while let Some(id) = l.room.poll_changed() {
        if let (Some(ws), Some(conn)) = (l.sockets.get(&id), l.room.connection(id)) {
            platform::set_attachment(ws, &serde_json::to_string(conn).unwrap_or_default());
        }
    }
}

/// Carries out what the room queued, coalesced (`room::batch`): one text per group of
/// connections that get the same frames, each converted to a JS string once
/// ([`platform::js_text`]); the shared text goes to the room in one call into the runtime.
fn carry_out(l: &mut Loaded) {
    let mut actions = Vec::new();
    while let Some(action) = l.room.poll_action() {
        actions.push(action);
    }
    if actions.is_empty() {
        return;
    }
    let batch = batch::coalesce(actions, |id| l.sockets.by_id.contains_key(&id));
    // Sends to a closing socket fail; its close event follows, so they are ignored.
    for delivery in batch.deliveries {
        match delivery.to {
            Group::AllBut(except) => {
                platform::fanout(&l.sockets.all, &delivery.text, except.iter().filter_map(|id| l.sockets.get(id)));
            }
            Group::Only(ids) => {
                let js = platform::js_text(&delivery.text);
                for ws in ids.iter().filter_map(|id| l.sockets.get(id)) {
                    let _ = platform::send_js(ws, &js);
                }
            }
        }
    }
    for (conn, code) in batch.closes {
        if let Some(ws) = l.sockets.remove(&conn) {
            forget_attachment(&ws);
            platform::close(&ws, code.code, &code.reason);
        }
    }
}

impl Core {
    /// The room-creation limit (`api::creation`): a request that would create this room (it has
    /// no stored state yet) counts against its creator first, and over the limit is refused with
    /// nothing stored. An existing room never asks.
    async fn may_create(&self, creator: &Creator) -> std::result::Result<(), Refusal> {
        let loaded = self.loaded.borrow().is_some();
        crate::creation::admit(&self.state, &self.env, loaded, creator).await
    }

    /// An HTTP API call from the edge, in the canonical form it built (`api::call`): parsed
    /// once, served by the room, answered as the room wrote it.
    async fn serve(&self, mut req: Request) -> Result<Response> {
        let Some(request) = RoomRequest::from_json(&req.text().await?) else {
            return http::refused(&Refusal::bad_request("calls come through the edge"), None);
        };
        if let Err(r) = self.may_create(&Creator::of_call(&request.caller)).await {
            return http::refused(&r, None);
        }
        let epoch = match request.call {
            RoomCall::DeleteHistory => platform::random_hex(8),
            _ => String::new(),
        };
        let answer = self.with_room(|l, now| l.room.serve(&request, &epoch, now, &mut l.store)).await?;
        http::answer(&answer)
    }
}

impl Core {
    /// A session's call for its devices (`relay`): served by the room through the gate, like an
    /// HTTP call; a join that would create the room counts against the user's creation limit.
    async fn relay(&self, mut req: Request) -> Result<Response> {
        let Some(request) = RelayRequest::decode(&req.text().await?) else {
            return http::refused(&Refusal::bad_request("relay calls come from sessions"), None);
        };
        let reply_with = |reply: &RelayReply| Response::ok(reply.encode());
        if !request.opens() {
            // Only a join may create the room: a session's frames or closes for a join the
            // creation limit refused must not wake (and so create) it.
            if !crate::creation::exists(&self.state, self.loaded.borrow().is_some()) {
                return reply_with(&request.answer_without_room());
            }
        } else {
            let caller = Caller { user: request.session.clone(), from: roomcast_protocol::api::HTTP_ORIGIN.to_owned() };
            if let Err(r) = self.may_create(&Creator::of_call(&caller)).await {
                let results = request
                    .ops
                    .iter()
                    .map(|_| RelayResult::Refused { code: r.close_code(), reason: r.close_reason().into_owned() })
                    .collect();
                return reply_with(&RelayReply { results });
            }
        }
        let reply = self.with_room(|l, now| l.room.serve_relay(&request, now, &mut l.store)).await?;
        reply_with(&reply)
    }

    /// Starts the feed calls the room has for sessions (after a flush: what they carry is
    /// durable). Each runs on its own; its answer is an event of the room's.
    fn start_feeds(&self) -> Result<()> {
        loop {
            let next = {
                let mut l = self.loaded()?;
                let Loaded { room, name, store, .. } = &mut *l;
                room.poll_feed(name, platform::now_ms(), store)
            };
            let Some((session, call, body)) = next else { return Ok(()) };
            let Some(core) = self.me.upgrade() else { return Ok(()) };
            let work = async move {
                let reply = core.call_session(&session, &body).await;
                let random = platform::random_u64();
                core.with_room(|l, now| match reply {
                    Some(reply) => l.room.handle_feed_answer(&session, call, reply, now, &mut l.store),
                    None => l.room.handle_feed_failure(&session, call, now, random, &mut l.store),
                })
                .await
                .map(|_| wasm_bindgen::JsValue::UNDEFINED)
                .map_err(wasm_bindgen::JsValue::from)
            };
            // If the runtime refuses the promise, the call's deadline retries it.
            let _ = self.state.as_raw().wait_until(&worker::wasm_bindgen_futures::future_to_promise(work));
        }
    }

    async fn call_session(&self, session: &str, body: &FeedCall) -> Option<FeedReply> {
        let sessions = self.env.durable_object("SESSIONS").ok()?;
        let text = platform::call_object(&sessions, session, FEED_PATH, &body.encode()).await?;
        FeedReply::decode(&text)
    }
}

impl DurableObject for RoomObject {
    fn new(state: State, env: Env) -> Self {
        let core = Rc::new_cyclic(|me| Core { me: me.clone(), state, env, loaded: RefCell::new(None), gate: RefCell::new(Gate::new()) });
        RoomObject { core }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        // Read without the url crate (api::request_url): the runtime's URL is already serialized.
        let url = req.inner().url();
        let path = roomcast_protocol::api::request_url::path(&url);
        if path == Endpoint::Connect.room_path() && req.method() == Method::Get {
            self.accept(&req).await
        } else if path == CALL_PATH && req.method() == Method::Post {
            self.serve(req).await
        } else if path == RELAY_PATH && req.method() == Method::Post {
            self.relay(req).await
        } else {
            http::refused(&Refusal::not_found("no such room endpoint"), None)
        }
    }

    /// The room's one alarm: its timers, then the webhook's next POST if one is due. The POST
    /// runs with the room released, so publishes, acks and fanout go on while it waits (at most
    /// `WEBHOOK_TIMEOUT_MS`); the output gate sends it only once the events in it are durable.
    async fn alarm(&self) -> Result<Response> {
        let state = &self.state;
        // The deadline this alarm was set for has passed; the next one is set afresh.
        self.gate.borrow_mut().handle_alarm();
        let request = self
            .with_room(|l, now| {
                let sockets = &l.sockets;
                l.room.handle_timeout(now, |id| sockets.get(&id).and_then(|ws| platform::last_auto_response(state, ws)), &mut l.store);
                l.room.poll_webhook(now, &mut l.store)
            })
            .await?;
        if let Some(request) = request {
            // The POST runs on its own, not in this handler: a handler that waited for it would
            // hold back the room's next alarm (a grace period ending, the heartbeat sweep) for up
            // to WEBHOOK_TIMEOUT_MS (found by the webhook chaos run). `waitUntil` keeps its I/O
            // alive after the handler returns. Its result is recorded in a step of its own; until
            // then the outbox sends nothing else (one batch in flight), and the next batch, if any,
            // is due at once and the alarm is set for it.
            let core = self.core.clone();
            let delivery = async move {
                let outcome = platform::post_webhook(&request).await;
                let random = platform::random_u64();
                core.with_room(|l, now| l.room.handle_webhook_result(request.attempt, outcome, now, random, &mut l.store))
                    .await
                    .map(|_| wasm_bindgen::JsValue::UNDEFINED)
                    .map_err(wasm_bindgen::JsValue::from)
            };
            // If the runtime refused the promise, the batch counts as lost: the outbox's own
            // deadline for it sends it again.
            let _ = self.state.as_raw().wait_until(&worker::wasm_bindgen_futures::future_to_promise(delivery));
        }
        Response::ok("")
    }
}

/// The socket events, exported by hand. `#[durable_object]` exports every event as an async
/// function, which makes each frame a future polled through the microtask queue (a fifth of the
/// object's CPU in a small room's broadcast profile, bench/README.md); most frames (broadcasts,
/// pings, presence, refusals) write nothing and need no await. A frame is handled synchronously
/// and only what must wait (a write to be durable, an alarm to move) becomes a promise.
#[wasm_bindgen::prelude::wasm_bindgen]
impl RoomObject {
    #[wasm_bindgen(js_name = webSocketMessage)]
    pub fn web_socket_message(&self, ws: web_sys::WebSocket, message: wasm_bindgen::JsValue) -> wasm_bindgen::JsValue {
        // Loaded before the gate takes the frame, so a failed load loses no queued frame; the
        // room's frame limit decides how much of the frame is read.
        let limit = match self.loaded() {
            Ok(l) => l.room.config().max_frame_bytes,
            Err(e) => return js_sys::Promise::reject(&e.into()).into(),
        };
        let message = incoming(&message, limit);
        let ws = WebSocket::from(ws);
        // While a write is in flight the frame is queued: the event waiting for it runs it after
        // its wait, with the others that arrive meanwhile, in one transaction (group commit).
        let Some(mut task) = self.gate.borrow_mut().handle_frame((ws, message)) else {
            return wasm_bindgen::JsValue::UNDEFINED;
        };
        match self.advance(&mut task, &mut None) {
            Ok(None) => wasm_bindgen::JsValue::UNDEFINED,
            Ok(Some(wait)) => self.later(|core| async move { core.finish_frame(task, wait).await }),
            Err(e) => js_sys::Promise::reject(&e.into()).into(),
        }
    }

    #[wasm_bindgen(js_name = webSocketClose)]
    pub fn web_socket_close(&self, ws: web_sys::WebSocket, code: u16, reason: String, _was_clean: bool) -> wasm_bindgen::JsValue {
        // Complete the closing handshake; 1005/1006 may not be sent, so they become 1000.
        let code = if code == 1000 || (3000..5000).contains(&code) { code } else { 1000 };
        let ws = WebSocket::from(ws);
        let _ = ws.close(Some(code), Some(reason));
        self.later(|core| async move { core.closed(&ws).await })
    }

    #[wasm_bindgen(js_name = webSocketError)]
    pub fn web_socket_error(&self, ws: web_sys::WebSocket, _error: wasm_bindgen::JsValue) -> wasm_bindgen::JsValue {
        let ws = WebSocket::from(ws);
        self.later(|core| async move { core.closed(&ws).await })
    }
}

impl RoomObject {
    /// Runs `f` on the shared core as a promise the runtime waits for.
    fn later<F>(&self, f: impl FnOnce(Rc<Core>) -> F) -> wasm_bindgen::JsValue
    where
        F: std::future::Future<Output = Result<()>> + 'static,
    {
        let future = f(self.core.clone());
        worker::wasm_bindgen_futures::future_to_promise(async move {
            future.await.map(|()| wasm_bindgen::JsValue::UNDEFINED).map_err(wasm_bindgen::JsValue::from)
        })
        .into()
    }
}
