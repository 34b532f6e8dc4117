//! The Room Durable Object: feeds platform events (upgrade, message, close, error, alarm, HTTP
//! API calls) into [`Room`] and carries out the actions it returns. It holds no rules of its own.
//!
//! After hibernation the object is constructed anew: the first event loads the room from SQLite
//! and rebuilds the connection table from the live sockets' attachments.

use crate::sql_store::SqlStore;
use crate::{http, platform};
use roomcast_protocol::api::{Caller, ConnectInfo, CALLER_HEADER, CONNECT_HEADER};
use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::frame::{self, ErrorCode};
use roomcast_protocol::room::batch::{self, Group};
use roomcast_protocol::room::{self, ConnId, Connection, Identity, Page, PublishError, ReadError, ResumePoint, Room, Start, TokenCheck};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use worker::{
    durable_object, DurableObject, Env, Headers, Method, Request, Response, Result, State, WebSocket, WebSocketIncomingMessage,
    WebSocketPair,
};

/// The room and what it needs, loaded on the first event after construction.
struct Loaded {
    room: Room,
    store: SqlStore,
    sockets: Sockets,
    /// Socket → connection id, kept current on open, so a message finds its sender without
    /// deserializing the socket's attachment (the runtime hands the same socket object back).
    ids: js_sys::WeakMap,
    /// The alarm this instance last set, so it is only rewritten when the deadline moves.
    alarm_at: Option<u64>,
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
    state: State,
    env: Env,
    loaded: RefCell<Option<Loaded>>,
    /// Frames that arrived while an event was waiting for its write to be durable (group commit,
    /// see [`Core::with_room`]): that event runs them after its wait, all in one
    /// transaction, so a busy room pays one commit for many messages instead of one each.
    pending: RefCell<VecDeque<(WebSocket, WebSocketIncomingMessage)>>,
    /// How many events are waiting for a write to be durable right now.
    waiting: Cell<u32>,
}

/// The open sockets by connection id, and the same sockets as a JS array that the fanout hands
/// to the runtime in one call (kept current on open and close rather than rebuilt per message).
#[derive(Default)]
struct Sockets {
    by_id: BTreeMap<ConnId, WebSocket>,
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

/// The attachment holds just the JSON of [`Connection`], well under the 2,048-byte budget.
fn attachment(ws: &WebSocket) -> Option<Connection> {
    let text: String = ws.deserialize_attachment().ok()??;
    serde_json::from_str(&text).ok()
}

#[derive(Deserialize)]
struct IdOnly {
    i: ConnId,
}

fn attached_id(ws: &WebSocket) -> Option<ConnId> {
    let text: String = ws.deserialize_attachment().ok()??;
    serde_json::from_str::<IdOnly>(&text).ok().map(|c| c.i)
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
    let _ = ws.serialize_attachment("");
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
        Ok(Loaded { room, store, sockets, ids, alarm_at: None })
    }

    /// Runs `f` on the loaded room, carries out the actions it queued, and sets the alarm if
    /// the room's next deadline moved.
    ///
    /// If `f` wrote to storage, the actions wait until the write is durable. The runtime's output
    /// gate would hold the frames anyway, but it does so per `send`: every frame of a fanout
    /// sent while a write is pending waits on the gate on its own, which cost more CPU than the
    /// send itself (bench/README.md). One wait per event instead, then every send goes straight
    /// out. Frames stay in order: all of them leave through the room's one action queue, and an
    /// event that runs during the wait only drains that queue further, still behind the gate.
    ///
    /// Group commit: socket frames that arrive during the wait are queued (`pending`) instead of
    /// each writing and committing on its own (a commit is a WAL write and an fsync, the largest
    /// cost per message in a small room: bench/README.md). After the wait, this event carries out
    /// what is now durable, then runs the queued frames in arrival order, all in one synchronous
    /// step and so one transaction, waits once for that, and so on until nothing is queued. Every
    /// other event runs the queued frames first, so the order in which the room sees events is
    /// the order in which they arrived; nothing is acknowledged or fanned out before it is durable.
    async fn with_room<R>(&self, f: impl FnOnce(&mut Loaded, u64) -> R) -> Result<R> {
        let (result, wrote) = self.run(f)?;
        self.settle(wrote).await?;
        Ok(result)
    }

    /// The synchronous part of [`Core::with_room`]: loads the room if needed, runs the queued
    /// frames and then `f`; returns `f`'s result and whether storage was written.
    fn run<R>(&self, f: impl FnOnce(&mut Loaded, u64) -> R) -> Result<(R, bool)> {
        let mut slot = self.loaded.borrow_mut();
        if slot.is_none() {
            *slot = Some(self.load()?);
        }
        let Some(loaded) = slot.as_mut() else { return Err(worker::Error::RustError("room not loaded".into())) };
        let now = platform::now_ms();
        self.run_pending(loaded, now);
        let result = f(loaded, now);
        save_changed(loaded);
        Ok((result, loaded.store.take_wrote()))
    }

    /// What follows [`Core::run`]: waits for the write (if any) to be durable, carries out the
    /// actions, runs what was queued meanwhile, and sets the alarm if the deadline moved.
    async fn settle(&self, mut wrote: bool) -> Result<()> {
        loop {
            if wrote {
                // A failed sync means the write is not durable: the output gate then never releases
                // what follows and the runtime resets the object, so the error itself needs no answer.
                self.waiting.set(self.waiting.get() + 1);
                let _ = self.state.storage().sync().await;
                self.waiting.set(self.waiting.get() - 1);
            }
            let mut slot = self.loaded.borrow_mut();
            let Some(loaded) = slot.as_mut() else { return Err(worker::Error::RustError("room not loaded".into())) };
            carry_out(loaded);
            if self.pending.borrow().is_empty() {
                break;
            }
            // No await between the check above and this: a frame queued during the wait is
            // always run by a waiting event.
            self.run_pending(loaded, platform::now_ms());
            save_changed(loaded);
            wrote = loaded.store.take_wrote();
        }
        match self.moved_alarm() {
            Some(change) => self.move_alarm(change).await,
            None => Ok(()),
        }
    }

    /// [`Core::settle`] without an await, when nothing was written: carries out the actions and
    /// says whether anything is left that needs one (an alarm to move, frames queued).
    fn settle_now(&self) -> Result<Option<Option<u64>>> {
        let mut slot = self.loaded.borrow_mut();
        let Some(loaded) = slot.as_mut() else { return Err(worker::Error::RustError("room not loaded".into())) };
        carry_out(loaded);
        drop(slot);
        Ok(self.moved_alarm())
    }

    /// The alarm's change, if the room's next deadline is not the alarm this instance last set:
    /// `Some(Some(t))` to set it for `t`, `Some(None)` to delete it.
    fn moved_alarm(&self) -> Option<Option<u64>> {
        let mut slot = self.loaded.borrow_mut();
        let loaded = slot.as_mut()?;
        match loaded.room.poll_timeout() {
            Some(t) if loaded.alarm_at != Some(t) => {
                loaded.alarm_at = Some(t);
                Some(Some(t))
            }
            // Nothing is due any more (e.g. a webhook batch in flight, whose lost-batch alarm
            // was set, came back and nothing else waits): the room need not wake again.
            None if loaded.alarm_at.is_some() => {
                loaded.alarm_at = None;
                Some(None)
            }
            _ => None,
        }
    }

    async fn move_alarm(&self, at: Option<u64>) -> Result<()> {
        match at {
            // workers-rs reads an integer as an offset from now, not as a timestamp.
            Some(at) => self.state.storage().set_alarm(std::time::Duration::from_millis(at.saturating_sub(platform::now_ms()))).await,
            None => self.state.storage().delete_alarm().await,
        }
    }

    /// Runs the socket frames queued during a wait, in arrival order.
    fn run_pending(&self, l: &mut Loaded, now: u64) {
        let queued = std::mem::take(&mut *self.pending.borrow_mut());
        for (ws, message) in queued {
            handle_frame(l, &ws, &message, now);
        }
    }

    async fn accept(&self, req: &Request) -> Result<Response> {
        let Some(header) = req.headers().get(CONNECT_HEADER)? else {
            return http::error(400, ErrorCode::BadRequest, "connections come through the edge");
        };
        let Ok(info) = serde_json::from_str::<ConnectInfo>(&header) else {
            return http::error(400, ErrorCode::BadRequest, "bad connect header");
        };
        let pair = WebSocketPair::new()?;
        let server = pair.server;
        self.state.accept_web_socket(&server);
        let subprotocol = info.subprotocol;
        let identity =
            Identity { client_id: info.cid, user: info.user, meta: info.meta, echo: info.echo, rights: info.rights, expires: info.exp };
        let start = match (info.resume, info.rewind) {
            (Some((epoch, since)), _) => Start::Resume(ResumePoint { epoch, since }),
            (None, Some(n)) => Start::Rewind(n),
            (None, None) => Start::Fresh,
        };
        self.with_room(move |l, now| {
            // Frames still queued (another event waiting for its write to be durable) were meant
            // for the connections open when they were queued; `All` is resolved when they are sent,
            // so they leave now, before this socket joins. The output gate still holds them until
            // the write is durable.
            carry_out(l);
            let id = match l.room.handle_start(identity, start, now, &mut l.store) {
                Ok(id) => id,
                Err(code) => {
                    let _ = server.close(Some(code.code), Some(code.reason));
                    return;
                }
            };
            if let Some(conn) = l.room.connection(id) {
                let _ = server.serialize_attachment(serde_json::to_string(conn).unwrap_or_default());
            }
            l.remember(&server, id);
            l.sockets.insert(id, server);
        })
        .await?;
        let response = Response::from_websocket(pair.client)?;
        if subprotocol {
            let headers = Headers::new();
            headers.set("Sec-WebSocket-Protocol", roomcast_protocol::SUBPROTOCOL)?;
            return Ok(response.with_headers(headers));
        }
        Ok(response)
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
fn handle_frame(l: &mut Loaded, ws: &WebSocket, message: &WebSocketIncomingMessage, now: u64) {
    let Some(id) = l.conn_id(ws) else { return };
    match message {
        WebSocketIncomingMessage::String(text) => l.room.handle_text(id, text, now, &mut l.store),
        WebSocketIncomingMessage::Binary(bytes) => l.room.handle_binary(id, bytes.len(), now, &mut l.store),
    }
}

/// A refresh changed a connection's rights and expiry (or its last sign of life is due to be
/// saved): its attachment must say so, or a wake would restore the old ones.
fn save_changed(l: &mut Loaded) {
    for id in l.room.take_changed() {
        if let (Some(ws), Some(conn)) = (l.sockets.get(&id), l.room.connection(id)) {
            let _ = ws.serialize_attachment(serde_json::to_string(conn).unwrap_or_default());
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
            let _ = ws.close(Some(code.code), Some(code.reason));
        }
    }
}

type RawMessage = serde_json::value::RawValue;

#[derive(Serialize)]
struct PresenceBody<'a> {
    members: &'a RawMessage,
}

#[derive(Serialize)]
struct BatchBody<'a> {
    messages: &'a [room::Published],
}

fn query_u64(query: &str, key: &str) -> Option<std::result::Result<u64, ()>> {
    roomcast_protocol::api::query::pairs(query).find(|(k, _)| k == key).map(|(_, v)| v.parse::<u64>().map_err(|_| ()))
}

impl Core {
    async fn publish(&self, mut req: Request) -> Result<Response> {
        let Some(caller) = caller(&req) else { return http::error(400, ErrorCode::BadRequest, "calls come through the edge") };
        let body = req.text().await?;
        // The loaded room already holds the limits; no need to read the vars again.
        let max_body = self.with_room(|l, _| l.room.config().max_publish_body()).await?;
        if body.len() > max_body {
            return http::error(413, ErrorCode::TooLarge, "request body is larger than a batch may be");
        }
        let (items, single) = match room::parse_publish_body(&body) {
            Ok(parsed) => parsed,
            Err(message) => return http::error(400, ErrorCode::BadRequest, &message),
        };
        let result = self.with_room(|l, now| l.room.handle_publish(&caller, &items, now, &mut l.store)).await?;
        match result {
            Ok(published) if single => match published.first() {
                Some(p) => http::json(p),
                None => http::error(500, ErrorCode::Storage, "nothing was published"),
            },
            Ok(published) => http::json(&BatchBody { messages: &published }),
            Err(PublishError::Store(e)) => http::error(503, ErrorCode::Storage, &e.to_string()),
            Err(e @ (PublishError::TooLarge(_) | PublishError::BatchTooLarge(_))) => http::error(413, ErrorCode::TooLarge, &e.to_string()),
            Err(e @ PublishError::RateLimited { retry_after_ms }) => too_many(&e.to_string(), retry_after_ms),
            Err(e @ PublishError::Banned) => http::error(403, ErrorCode::Forbidden, &e.to_string()),
            Err(e) => http::error(400, ErrorCode::BadRequest, &e.to_string()),
        }
    }

    async fn history(&self, req: &Request) -> Result<Response> {
        let Some(caller) = caller(req) else { return http::error(400, ErrorCode::BadRequest, "calls come through the edge") };
        let url = req.inner().url();
        let query = roomcast_protocol::api::request_url::query(&url);
        // The edge checked these numbers and wrote the query itself.
        let (since, before, limit) = (query_u64(query, "since"), query_u64(query, "before"), query_u64(query, "limit"));
        let page = match (before, since) {
            (Some(Ok(b)), None) => Page::Before(b),
            (None, since) => Page::After(since.and_then(|s| s.ok()).unwrap_or(0)),
            _ => return http::error(400, ErrorCode::BadRequest, "give since or before, not both, as whole numbers"),
        };
        let limit = match limit {
            Some(Err(())) => return http::error(400, ErrorCode::BadRequest, "limit must be a whole number"),
            Some(Ok(l)) => l,
            None => 100,
        };
        let page = self.with_room(|l, now| l.room.history(&caller.user, page, limit as usize, now, &mut l.store)).await?;
        match page {
            Ok(page) => {
                let texts: Vec<String> = page.messages.iter().map(room::encode_stored).collect();
                http::json_text(200, frame::encode_history_page(&page.epoch, page.seq, page.more, &texts), None)
            }
            Err(e @ ReadError::RateLimited { retry_after_ms }) => too_many(&e.to_string(), retry_after_ms),
            Err(ReadError::Store(e)) => http::error(503, ErrorCode::Storage, &e.to_string()),
            Err(e @ ReadError::Banned) => http::error(403, ErrorCode::Forbidden, &e.to_string()),
        }
    }

    /// `POST /kick` from the edge (API key only): `{"user", "banSeconds"?, "reason"?}`.
    async fn kick(&self, mut req: Request) -> Result<Response> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Kick {
            user: String,
            #[serde(default)]
            ban_seconds: Option<u64>,
        }
        let Some(caller) = caller(&req) else { return http::error(400, ErrorCode::BadRequest, "calls come through the edge") };
        if caller != Caller::backend() {
            return http::error(403, ErrorCode::Forbidden, "removing users needs the API key");
        }
        let Ok(kick) = serde_json::from_str::<Kick>(&req.text().await?) else {
            return http::error(400, ErrorCode::BadRequest, "body must be {\"user\": string, \"banSeconds\"?: number}");
        };
        let closed = self
            .with_room(|l, now| {
                let until = kick.ban_seconds.map(|s| now.saturating_add(s.saturating_mul(1000)));
                l.room.handle_kick(&kick.user, until, now, &mut l.store)
            })
            .await?;
        match closed {
            Ok(closed) => http::json(&serde_json::json!({ "closed": closed })),
            Err(e) => http::error(503, ErrorCode::Storage, &e.to_string()),
        }
    }
}

impl RoomObject {
    /// `DELETE /rooms/:room/history` from the edge (API key only): a new epoch, messages gone,
    /// sockets closed with 4013.
    async fn reset(&self, req: &Request) -> Result<Response> {
        if caller(req) != Some(Caller::backend()) {
            return http::error(403, ErrorCode::Forbidden, "deleting history needs the API key");
        }
        let epoch = platform::random_hex(8);
        match self.with_room(|l, now| l.room.handle_reset(&epoch, now, &mut l.store)).await? {
            Ok(reset) => http::json(&reset),
            Err(e) => http::error(503, ErrorCode::Storage, &e.to_string()),
        }
    }

    /// `POST /rooms/:room/webhooks/requeue` from the edge (API key only).
    async fn requeue(&self, req: &Request) -> Result<Response> {
        if caller(req) != Some(Caller::backend()) {
            return http::error(403, ErrorCode::Forbidden, "re-queueing webhooks needs the API key");
        }
        match self.with_room(|l, now| l.room.requeue_webhooks(now, &mut l.store)).await? {
            Ok(requeued) => http::json(&serde_json::json!({ "requeued": requeued })),
            Err(e) => http::error(503, ErrorCode::Storage, &e.to_string()),
        }
    }
}

/// Who the edge says is calling (a header on the request it built; clients cannot set it).
fn caller(req: &Request) -> Option<Caller> {
    let header = req.headers().get(CALLER_HEADER).ok().flatten()?;
    serde_json::from_str(&header).ok()
}

/// 429 with `Retry-After` (whole seconds, rounded up) and the JSON error body.
fn too_many(message: &str, retry_after_ms: u64) -> Result<Response> {
    let response = http::error(429, ErrorCode::RateLimited, message)?;
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    headers.set("Retry-After", &retry_after_ms.div_ceil(1000).max(1).to_string())?;
    Ok(response.with_headers(headers))
}

impl DurableObject for RoomObject {
    fn new(state: State, env: Env) -> Self {
        let core = Core { state, env, loaded: RefCell::new(None), pending: RefCell::new(VecDeque::new()), waiting: Cell::new(0) };
        RoomObject { core: Rc::new(core) }
    }

    async fn fetch(&self, req: Request) -> Result<Response> {
        let path = req.path();
        match (path.as_str(), req.method()) {
            ("/ws", Method::Get) => self.accept(&req).await,
            ("/messages", Method::Post) => self.publish(req).await,
            ("/history", Method::Get) => self.history(&req).await,
            ("/kick", Method::Post) => self.kick(req).await,
            ("/presence", Method::Get) => {
                let members = self.with_room(|l, _| l.room.members_json()).await?;
                let raw = RawMessage::from_string(members).map_err(|e| worker::Error::RustError(e.to_string()))?;
                http::json(&PresenceBody { members: &raw })
            }
            ("/reset", Method::Post) => self.reset(&req).await,
            ("/webhooks/requeue", Method::Post) => self.requeue(&req).await,
            ("/stats", Method::Get) => match self.with_room(|l, now| l.room.stats(now, &mut l.store)).await? {
                Ok(stats) => http::json(&stats),
                Err(e) => http::error(503, ErrorCode::Storage, &e.to_string()),
            },
            _ => http::error(404, ErrorCode::NotFound, "no such room endpoint"),
        }
    }

    /// The room's one alarm: its timers, then the webhook's next POST if one is due. The POST
    /// runs with the room released, so publishes, acks and fanout go on while it waits (at most
    /// `WEBHOOK_TIMEOUT_MS`); the output gate sends it only once the events in it are durable.
    async fn alarm(&self) -> Result<Response> {
        let state = &self.state;
        let request = self
            .with_room(|l, now| {
                // The deadline this alarm was set for has passed; the next one is set afresh.
                l.alarm_at = None;
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
        let message = match message.as_string() {
            Some(text) => WebSocketIncomingMessage::String(text),
            None => WebSocketIncomingMessage::Binary(js_sys::Uint8Array::new(&message).to_vec()),
        };
        let ws = WebSocket::from(ws);
        if self.waiting.get() > 0 {
            // An event is waiting for a write to be durable: it runs this frame after its wait,
            // with the others that arrive meanwhile, in one transaction (group commit).
            self.pending.borrow_mut().push_back((ws, message));
            return wasm_bindgen::JsValue::UNDEFINED;
        }
        let wrote = match self.run(|l, now| handle_frame(l, &ws, &message, now)) {
            Ok(((), wrote)) => wrote,
            Err(e) => return js_sys::Promise::reject(&e.into()).into(),
        };
        if !wrote && self.pending.borrow().is_empty() {
            match self.settle_now() {
                Ok(None) => return wasm_bindgen::JsValue::UNDEFINED,
                Ok(Some(change)) => return self.later(|core| async move { core.move_alarm(change).await }),
                Err(e) => return js_sys::Promise::reject(&e.into()).into(),
            }
        }
        self.later(|core| async move { core.settle(wrote).await })
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
