//! The browser adapter. Every entry point (a socket event, a timer, `online`, page visibility, a
//! call from JavaScript) follows one pattern: borrow the state, feed the event to the client
//! machine, carry out its outputs, release the borrow, then emit the collected events to
//! JavaScript. Events are emitted with nothing borrowed, so handlers may call back in.
//!
//! Closures must not be dropped while they run. Resources replaced or closed inside a callback
//! are moved to `retired` and dropped at the start of the next entry point; `close()` from
//! outside any callback drops everything at once.

use crate::options::{self, Options, Token};
use gloo_events::EventListener;
use gloo_timers::callback::Timeout;
use js_sys::{Array, Function, Object, Reflect, JSON};
use roomcast_protocol::client::{Client, Output, QueueError, Resumed, State};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

type Shared = Rc<RefCell<Inner>>;

struct Socket {
    ws: WebSocket,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
    }
}

struct Inner {
    opts: Options,
    client: Option<Client>,
    socket: Option<Socket>,
    /// Distinguishes the current socket's events from a replaced one's.
    generation: u32,
    token: Option<String>,
    timer: Option<(u64, Timeout)>,
    listeners: Vec<EventListener>,
    retired: Vec<Box<dyn Any>>,
    /// `close()` came before `start()`: the connection never starts.
    closed_early: bool,
    emit: Function,
    weak: Weak<RefCell<Inner>>,
}

thread_local! {
    /// Whether an entry point of ours is on the stack (so nothing may be dropped now).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

fn now() -> u64 {
    js_sys::Date::now() as u64
}

fn obj() -> Object {
    Object::new()
}

fn set(o: &Object, key: &str, value: JsValue) {
    let _ = Reflect::set(o, &JsValue::from_str(key), &value);
}

fn get(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

type Events = Vec<(&'static str, JsValue)>;

/// Runs an entry point: marks it, cleans up what earlier callbacks retired, borrows the state,
/// runs `f`, carries out the machine's outputs, and emits the events afterwards.
fn enter(shared: &Shared, f: impl FnOnce(&mut Inner, &mut Events)) {
    let outer = IN_CALLBACK.with(|c| c.replace(true));
    let mut events = Events::new();
    let emit = {
        let Ok(mut me) = shared.try_borrow_mut() else {
            IN_CALLBACK.with(|c| c.set(outer));
            return;
        };
        if !outer {
            me.retired.clear();
        }
        f(&mut me, &mut events);
        me.pump(&mut events);
        me.emit.clone()
    };
    for (kind, payload) in events {
        let _ = emit.call2(&JsValue::NULL, &JsValue::from_str(kind), &payload);
    }
    IN_CALLBACK.with(|c| c.set(outer));
}

impl Inner {
    /// Carries out everything the machine asked for.
    fn pump(&mut self, events: &mut Events) {
        loop {
            let Some(out) = self.client.as_mut().and_then(Client::poll_output) else { break };
            match out {
                Output::FetchToken => events.push(("token", JsValue::NULL)),
                Output::Connect { resume } => self.open_socket(resume),
                Output::Send(text) => {
                    if let Some(s) = &self.socket {
                        let _ = s.ws.send_with_str(&text);
                    }
                }
                Output::CloseSocket(code) => {
                    if let Some(s) = self.socket.take() {
                        let _ = s.ws.close_with_code_and_reason(code.code, code.reason);
                        self.retired.push(Box::new(s));
                    }
                }
                Output::Status(s) => {
                    let o = obj();
                    set(&o, "state", s.state.as_str().into());
                    set(&o, "attempt", s.attempt.into());
                    set(&o, "delayMs", (s.delay_ms as f64).into());
                    set(&o, "code", s.code.into());
                    set(&o, "reason", s.reason.as_str().into());
                    events.push(("status", o.into()));
                    if s.state == State::Closed {
                        self.release();
                    }
                }
                Output::Gap { reason, since } => {
                    let o = obj();
                    set(&o, "reason", reason.as_str().into());
                    set(&o, "since", (since as f64).into());
                    events.push(("gap", o.into()));
                }
                Output::Acked { id, seq } => {
                    let o = obj();
                    set(&o, "id", id.as_str().into());
                    set(&o, "seq", seq.map_or(JsValue::UNDEFINED, |s| (s as f64).into()));
                    events.push(("ack", o.into()));
                }
                Output::Rejected { id, code } => {
                    let o = obj();
                    set(&o, "id", id.as_str().into());
                    set(&o, "code", code.as_str().into());
                    events.push(("reject", o.into()));
                }
            }
        }
        self.reschedule();
    }

    /// Keeps one browser timer at the machine's next deadline.
    fn reschedule(&mut self) {
        let due = self.client.as_ref().and_then(Client::poll_timeout);
        if self.timer.as_ref().map(|(at, _)| *at) == due {
            return;
        }
        if let Some((_, old)) = self.timer.take() {
            self.retired.push(Box::new(old.cancel()));
        }
        let Some(at) = due else { return };
        let weak = self.weak.clone();
        let delay = at.saturating_sub(now()).min(u32::MAX as u64) as u32;
        let timeout = Timeout::new(delay, move || {
            if let Some(shared) = weak.upgrade() {
                enter(&shared, |me, _| {
                    if let Some((_, fired)) = me.timer.take() {
                        me.retired.push(Box::new(fired));
                    }
                    if let Some(c) = me.client.as_mut() {
                        c.handle_timeout(now());
                    }
                });
            }
        });
        self.timer = Some((at, timeout));
    }

    fn open_socket(&mut self, resume: Option<(String, u64)>) {
        if let Some(old) = self.socket.take() {
            self.retired.push(Box::new(old));
        }
        self.generation = self.generation.wrapping_add(1);
        let generation = self.generation;
        let mut url = String::with_capacity(self.opts.endpoint.len() + 96);
        url.push_str(&self.opts.endpoint);
        url.push_str("?errors=close&cid=");
        url.push_str(&self.opts.client_id);
        if self.opts.echo {
            url.push_str("&echo=1");
        }
        if let Some((epoch, since)) = resume {
            url.push_str("&since=");
            roomcast_protocol::client::push_u64(&mut url, since);
            url.push_str("&epoch=");
            url.push_str(&String::from(js_sys::encode_uri_component(&epoch)));
        }
        let protocols = Array::new();
        protocols.push(&JsValue::from_str(roomcast_protocol::SUBPROTOCOL));
        let token = match &self.opts.token {
            Token::Fixed(t) => Some(t.clone()),
            Token::Function => self.token.clone(),
            Token::None => None,
        };
        if let Some(t) = token {
            let mut p = String::with_capacity(t.len() + 7);
            p.push_str("bearer.");
            p.push_str(&t);
            protocols.push(&JsValue::from_str(&p));
        }
        let ws = match WebSocket::new_with_str_sequence(&url, &protocols) {
            Ok(ws) => ws,
            Err(_) => {
                // An invalid URL fails synchronously: report it like a failed connection.
                if let Some(c) = self.client.as_mut() {
                    c.handle_close(1006, "could not open the WebSocket", now());
                }
                return;
            }
        };
        let weak = self.weak.clone();
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |e: MessageEvent| {
            if let Some(shared) = weak.upgrade() {
                enter(&shared, |me, events| me.on_frame(generation, e.data(), events));
            }
        });
        let weak = self.weak.clone();
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            if let Some(shared) = weak.upgrade() {
                enter(&shared, |me, _| {
                    if me.generation != generation {
                        return;
                    }
                    if let Some(s) = me.socket.take() {
                        me.retired.push(Box::new(s));
                    }
                    if let Some(c) = me.client.as_mut() {
                        c.handle_close(e.code(), &e.reason(), now());
                    }
                });
            }
        });
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        self.socket = Some(Socket { ws, _on_message: on_message, _on_close: on_close });
    }

    fn on_frame(&mut self, generation: u32, data: JsValue, events: &mut Events) {
        if generation != self.generation {
            return;
        }
        let Some(text) = data.as_string() else { return };
        // The server may coalesce several frames into one message, one per line.
        for line in text.split('\n') {
            self.on_line(line, events);
        }
    }

    fn on_line(&mut self, line: &str, events: &mut Events) {
        let Ok(frame) = JSON::parse(line) else { return };
        let Some(client) = self.client.as_mut() else { return };
        let kind = get(&frame, "type").as_string().unwrap_or_default();
        let seq = get(&frame, "seq").as_f64().map(|s| s as u64);
        match kind.as_str() {
            "welcome" => {
                let resume = get(&frame, "resume");
                let resumed = match get(&resume, "status").as_string().as_deref() {
                    Some("recovered") => Some(Resumed::Recovered),
                    Some(_) => Some(Resumed::NotRecovered(get(&resume, "reason").as_string().unwrap_or_default())),
                    None => None,
                };
                let epoch = get(&frame, "epoch").as_string().unwrap_or_default();
                events.push(("welcome", frame));
                client.handle_welcome(&epoch, seq.unwrap_or(0), resumed, now());
            }
            "message" => {
                if seq.is_some_and(|s| client.handle_message(s)) {
                    events.push(("message", frame));
                }
            }
            "ack" => client.handle_ack(&get(&frame, "id").as_string().unwrap_or_default(), seq),
            "error" => match get(&frame, "id").as_string() {
                Some(id) => client.handle_error(&id, &get(&frame, "code").as_string().unwrap_or_default()),
                None => events.push(("error", frame)),
            },
            "pong" => client.handle_pong(),
            "presence" | "direct" => events.push((if kind == "presence" { "presence" } else { "direct" }, frame)),
            _ => {}
        }
    }

    /// Drops (or retires, inside a callback) every socket, timer and listener.
    fn release(&mut self) {
        let inside = IN_CALLBACK.with(Cell::get);
        let socket = self.socket.take();
        let timer = self.timer.take().map(|(_, t)| t.cancel());
        let listeners = std::mem::take(&mut self.listeners);
        if inside {
            self.retired.push(Box::new((socket, timer, listeners)));
        }
    }
}

/// One room connection, driven from JavaScript (`js/index.js` wraps it in the public API).
#[wasm_bindgen]
pub struct Connection {
    shared: Shared,
}

#[wasm_bindgen]
impl Connection {
    /// Reads the options; nothing starts until [`Connection::start`], so that JavaScript can
    /// attach its handlers first.
    #[wasm_bindgen(constructor)]
    pub fn new(options: &JsValue, emit: Function) -> Connection {
        // The JS wrapper validates the options; what cannot be read falls back to defaults.
        let opts = options::read(options);
        let shared = Rc::new_cyclic(|weak| {
            RefCell::new(Inner {
                opts,
                client: None,
                socket: None,
                generation: 0,
                token: None,
                timer: None,
                listeners: Vec::new(),
                retired: Vec::new(),
                closed_early: false,
                emit,
                weak: weak.clone(),
            })
        });
        Connection { shared }
    }

    pub fn start(&self) {
        enter(&self.shared, |me, _| {
            if me.client.is_some() || me.closed_early {
                return;
            }
            let fetches = matches!(me.opts.token, Token::Function);
            me.client = Some(Client::new(me.opts.config.clone(), me.opts.seed, fetches, now()));
            // Back online, or the tab visible again: reconnect now rather than at the backoff.
            let wake = |weak: Weak<RefCell<Inner>>| {
                move |_: &web_sys::Event| {
                    if let Some(shared) = weak.upgrade() {
                        enter(&shared, |me, _| {
                            let visible = web_sys::window()
                                .and_then(|w| w.document())
                                .is_none_or(|d| d.visibility_state() == web_sys::VisibilityState::Visible);
                            if let (Some(c), true) = (me.client.as_mut(), visible) {
                                c.handle_wake(now());
                            }
                        });
                    }
                }
            };
            if let Some(window) = web_sys::window() {
                me.listeners.push(EventListener::new(&window, "online", wake(me.weak.clone())));
                if let Some(document) = window.document() {
                    me.listeners.push(EventListener::new(&document, "visibilitychange", wake(me.weak.clone())));
                }
            }
        });
    }

    /// The token function's result arrived (`None`: it failed).
    pub fn set_token(&self, token: Option<String>) {
        enter(&self.shared, |me, _| {
            let ok = token.is_some();
            me.token = token;
            if let Some(c) = me.client.as_mut() {
                c.handle_token(ok, now());
            }
        });
    }

    /// Queues a publish of JSON text. Returns its id (a string), or why not (a number: see
    /// `queue_error`). Plain values rather than `Result`s keep wasm-bindgen's shims small.
    pub fn publish(&self, data_json: &str) -> JsValue {
        let mut result = queue_error(QueueError::Closed);
        enter(&self.shared, |me, _| {
            if let Some(c) = me.client.as_mut() {
                result = c.publish(data_json).map_or_else(queue_error, |id| JsValue::from_str(&id));
            }
        });
        result
    }

    /// Sends a direct message; `to_json` is `{"user":…}` or `{"clientId":…}`. Returns like
    /// `publish`.
    pub fn send_to(&self, to_json: &str, data_json: &str) -> JsValue {
        let mut result = queue_error(QueueError::Closed);
        enter(&self.shared, |me, _| {
            if let Some(c) = me.client.as_mut() {
                result = c.direct(to_json, data_json).map_or_else(queue_error, |id| JsValue::from_str(&id));
            }
        });
        result
    }

    pub fn close(&self) {
        enter(&self.shared, |me, _| match me.client.as_mut() {
            Some(c) => c.close(),
            None => me.closed_early = true,
        });
        // Outside any callback everything retired can go now; inside one, the next entry
        // point would never come, so a zero-delay timer finishes the job once.
        if IN_CALLBACK.with(Cell::get) {
            let weak = Rc::downgrade(&self.shared);
            Timeout::new(0, move || {
                if let Some(shared) = weak.upgrade() {
                    if let Ok(mut me) = shared.try_borrow_mut() {
                        me.retired.clear();
                    }
                }
            })
            .forget();
        } else if let Ok(mut me) = self.shared.try_borrow_mut() {
            me.retired.clear();
        }
    }

    #[wasm_bindgen(getter)]
    pub fn state(&self) -> JsValue {
        let state = self.shared.try_borrow().ok().and_then(|me| me.client.as_ref().map(|c| c.state().as_str()));
        JsValue::from_str(state.unwrap_or("connecting"))
    }

    #[wasm_bindgen(getter, js_name = lastSeq)]
    pub fn last_seq(&self) -> f64 {
        self.shared.try_borrow().ok().and_then(|me| me.client.as_ref().map(|c| c.last_seq() as f64)).unwrap_or(0.0)
    }

    /// Open resources, for tests: [sockets, timers, listeners].
    #[wasm_bindgen(js_name = resources)]
    pub fn resources(&self) -> Array {
        let out = Array::new();
        if let Ok(me) = self.shared.try_borrow() {
            out.push(&JsValue::from(u32::from(me.socket.is_some())));
            out.push(&JsValue::from(u32::from(me.timer.is_some())));
            out.push(&JsValue::from(me.listeners.len() as u32));
        }
        out
    }
}

/// 1: the queue is full, 2: closed, 3: offline (direct messages only).
fn queue_error(e: QueueError) -> JsValue {
    JsValue::from(match e {
        QueueError::Full => 1,
        QueueError::Closed => 2,
        QueueError::Offline => 3,
    })
}
