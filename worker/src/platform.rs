//! Runtime APIs that workers-rs 0.8 does not bind: declared here with wasm-bindgen.

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    /// `DurableObjectState`, seen only for the methods below.
    pub type StateExt;

    /// When the runtime last answered this socket's ping with the auto-response, or null.
    #[wasm_bindgen(method, catch, js_name = getWebSocketAutoResponseTimestamp)]
    fn get_web_socket_auto_response_timestamp(this: &StateExt, ws: &JsValue) -> Result<JsValue, JsValue>;

    #[wasm_bindgen(js_namespace = crypto, js_name = getRandomValues)]
    fn get_random_values(buf: &mut [u8]);

}

// `held`: the frames for each socket whose upgrade response is not yet on its way, in order (a
// string is a frame, a pair a close); see `hold`. Empty but for a moment after a join, so the
// fanout's check costs one comparison per recipient.
#[wasm_bindgen(inline_js = "const decoder = new TextDecoder();
const held = new Map();
export function text_of(bytes, ascii) {
  if (ascii && bytes.length <= 8192) return String.fromCharCode.apply(null, bytes);
  return decoder.decode(bytes);
}
function queued(ws, item) {
  const frames = held.get(ws);
  if (frames === undefined) return false;
  frames.push(item);
  return true;
}
export function fanout(sockets, text, skipOne, skip) {
  for (const ws of sockets) {
    if (ws === skipOne || (skip !== undefined && skip.has(ws))) continue;
    if (held.size !== 0 && queued(ws, text)) continue;
    try { ws.send(text); } catch {}
  }
}
export function send_to(ws, text) {
  if (held.size !== 0 && queued(ws, text)) return;
  ws.send(text);
}
export function close_socket(ws, code, reason) {
  if (held.size !== 0 && queued(ws, [code, reason])) return;
  ws.close(code, reason);
}
export function hold(ws) {
  held.set(ws, []);
}
function release(ws) {
  const frames = held.get(ws);
  held.delete(ws);
  for (const item of frames ?? []) {
    try {
      if (typeof item === 'string') ws.send(item);
      else ws.close(item[0], item[1]);
    } catch {}
  }
}
export function release_soon(ws) {
  if (held.has(ws)) setTimeout(() => release(ws), 0);
}")]
extern "C" {
    /// A JS string of `bytes` (UTF-8). When every byte is ASCII (`ascii`, which Rust checks with
    /// SIMD), one char per byte, made by a builtin: the `TextDecoder` call that wasm-bindgen makes
    /// for every `&str` (a runtime API call in workerd) was most of what a broadcast cost a small
    /// room beyond B (bench/README.md, "The ephemeral path"). Long or non-ASCII texts still decode.
    fn text_of(bytes: &[u8], ascii: bool) -> JsValue;

    /// Sends `text` to every socket in `sockets` but `skip_one` and those in `skip` (a `Set`, or
    /// undefined), in one call: the loop runs in JS, so a fanout crosses the wasm boundary once
    /// instead of once per recipient. A send to a closing socket throws; its close event follows,
    /// so the loop skips it.
    #[wasm_bindgen(js_name = fanout)]
    fn fanout_js(sockets: &js_sys::Array, text: &JsValue, skip_one: &JsValue, skip: &JsValue);

    /// `ws.send(text)`, or queued while `ws` is held.
    #[wasm_bindgen(catch)]
    fn send_to(ws: &JsValue, text: &JsValue) -> Result<(), JsValue>;

    /// `ws.close(code, reason)`, or queued after the frames while `ws` is held.
    #[wasm_bindgen(catch)]
    fn close_socket(ws: &JsValue, code: u16, reason: &str) -> Result<(), JsValue>;

    #[wasm_bindgen(js_name = hold)]
    fn hold_js(ws: &JsValue);

    #[wasm_bindgen(js_name = release_soon)]
    fn release_soon_js(ws: &JsValue);
}

/// Holds the frames (and a close) sent to a socket that has just been accepted, in order, from
/// `new` until a moment after it is dropped. A frame written to a new socket before its upgrade
/// response has reached the client is parked in the runtime's WebSocket pipes (the room's pair,
/// then the one between the room and the edge); each pipe pump that then starts on a parked frame
/// stays nested in the one it hands over to for the socket's whole life, about 12 KiB per
/// connection (bench/README.md, *Memory per connection*, has the allocation stacks). The welcome
/// is such a frame. Dropped, it sends what it held from a timer: the runtime fires it only after
/// the events that are ready, which include handing the response to the edge and on to the client
/// (a microtask would still come before).
pub struct Held(JsValue);

impl Held {
    pub fn new(ws: &worker::WebSocket) -> Held {
        let ws: &JsValue = ws.as_ref();
        hold_js(ws);
        Held(ws.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        release_soon_js(&self.0);
    }
}

/// Closes `ws` with `code` and `reason`, after the frames [`hold`] keeps for it, if any.
pub fn close(ws: &worker::WebSocket, code: u16, reason: &str) {
    let _ = close_socket(ws.as_ref(), code, reason);
}

/// A frame as a JS string, converted once (see [`text_of`]) to go to many sockets.
pub fn js_text(text: &str) -> JsValue {
    text_of(text.as_bytes(), text.is_ascii())
}

/// Sends `text` to every socket in `sockets` but `except`. The usual case, one socket left out
/// (the sender) or none, needs no `Set` and allocates nothing.
pub fn fanout<'a>(sockets: &js_sys::Array, text: &str, except: impl IntoIterator<Item = &'a worker::WebSocket>) {
    let text = js_text(text);
    let mut except = except.into_iter();
    let Some(first) = except.next() else {
        return fanout_js(sockets, &text, &JsValue::UNDEFINED, &JsValue::UNDEFINED);
    };
    let Some(second) = except.next() else {
        return fanout_js(sockets, &text, first.as_ref(), &JsValue::UNDEFINED);
    };
    let skip = js_sys::Set::new(&JsValue::UNDEFINED);
    for ws in [first, second].into_iter().chain(except) {
        skip.add(ws.as_ref());
    }
    fanout_js(sockets, &text, &JsValue::UNDEFINED, &skip)
}

// The timer is cleared as soon as the POST settles: a pending timer (AbortSignal.timeout's
// included) would keep the object from hibernating for the whole timeout.
#[wasm_bindgen(inline_js = "export async function postWebhook(url, headers, body, timeoutMs) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const res = await fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: controller.signal });
    try { await res.body?.cancel(); } catch {}
    return [res.status, res.headers.get('retry-after')];
  } catch (e) {
    if (controller.signal.aborted) return 'timeout after ' + timeoutMs + ' ms';
    return 'network error: ' + String((e && e.message) || e);
  } finally {
    clearTimeout(timer);
  }
}")]
extern "C" {
    /// POSTs `body` to `url`, aborted after `timeout_ms`; resolves with `[status, retryAfter]`
    /// (a number, and the `Retry-After` header or null) or a description of the failure (a
    /// string). Never rejects; redirects are not followed.
    #[wasm_bindgen(js_name = postWebhook)]
    fn post_webhook_js(url: &str, headers: &js_sys::Array, body: &str, timeout_ms: f64) -> js_sys::Promise;
}

/// Makes a webhook POST the room asked for. The caller holds no borrow of the room meanwhile:
/// other events run while it waits. The receiver's `Retry-After` is passed on as it came; the
/// outbox decides what it means (`roomcast_protocol::webhook::retry_after`).
pub async fn post_webhook(request: &roomcast_protocol::webhook::WebhookRequest) -> roomcast_protocol::webhook::WebhookOutcome {
    use roomcast_protocol::webhook::WebhookOutcome;
    let headers = js_sys::Array::new();
    for (name, value) in &request.headers {
        headers.push(&js_sys::Array::of2(&JsValue::from_str(name), &JsValue::from_str(value)));
    }
    let promise = post_webhook_js(&request.url, &headers, &request.body, request.timeout_ms as f64);
    match worker::wasm_bindgen_futures::JsFuture::from(promise).await {
        Ok(v) if js_sys::Array::is_array(&v) => {
            let answer = js_sys::Array::from(&v);
            match answer.get(0).as_f64() {
                Some(status) => WebhookOutcome::Status(status as u16, answer.get(1).as_string()),
                None => WebhookOutcome::Failed("no status".into()),
            }
        }
        Ok(v) => WebhookOutcome::Failed(v.as_string().unwrap_or_else(|| "no answer".into())),
        Err(e) => WebhookOutcome::Failed(e.as_string().unwrap_or_else(|| "fetch failed".into())),
    }
}

/// A random u64 from the runtime's CSPRNG.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    get_random_values(&mut buf);
    u64::from_le_bytes(buf)
}

#[wasm_bindgen(inline_js = "export function fetch_room(ns, name, request) { return ns.getByName(name).fetch(request); }")]
extern "C" {
    #[wasm_bindgen(catch, js_name = fetch_room)]
    fn fetch_room_js(ns: &JsValue, name: &str, request: &web_sys::Request) -> Result<js_sys::Promise, JsValue>;
}

/// The room's answer to `request`, as the runtime's own Response object: returned unchanged to
/// the client, a WebSocket upgrade's socket is passed through, not pumped through one more pipe
/// (`worker::Stub::fetch_with_request` rebuilds the response).
pub async fn fetch_room(rooms: &worker::ObjectNamespace, room: &str, request: &web_sys::Request) -> worker::Result<web_sys::Response> {
    let promise = fetch_room_js(rooms.as_ref(), room, request)?;
    let response = worker::wasm_bindgen_futures::JsFuture::from(promise).await?;
    Ok(response.dyn_into::<web_sys::Response>()?)
}

/// A socket's attachment, when it is a string. `worker::WebSocket`'s own attachment methods (and
/// its rate limiter's `limit`) convert through `serde_wasm_bindgen`, code the Worker needs nowhere
/// else (issue #21): the room's attachments are JSON texts (`room_object::attachment`), passed as
/// JS strings here.
pub fn attachment_text(ws: &worker::WebSocket) -> Option<String> {
    use worker::worker_sys::ext::WebSocketExt;
    let raw: &web_sys::WebSocket = ws.as_ref();
    raw.deserialize_attachment().ok()?.as_string()
}

/// Replaces a socket's attachment with `text` (see [`attachment_text`]).
pub fn set_attachment(ws: &worker::WebSocket, text: &str) {
    use worker::worker_sys::ext::WebSocketExt;
    let raw: &web_sys::WebSocket = ws.as_ref();
    let _ = raw.serialize_attachment(JsValue::from_str(text));
}

#[wasm_bindgen(inline_js = "export async function rateLimit(limiter, key) { return (await limiter.limit({ key })).success; }")]
extern "C" {
    #[wasm_bindgen(js_name = rateLimit)]
    fn rate_limit_js(limiter: &JsValue, key: &str) -> js_sys::Promise;
}

/// Asks a rate-limiting binding about `key`: `Some(false)` when it refused, `Some(true)` when it
/// let the key through, `None` when it failed or answered something else.
pub async fn rate_limit(limiter: &worker::RateLimiter, key: &str) -> Option<bool> {
    worker::wasm_bindgen_futures::JsFuture::from(rate_limit_js(limiter.as_ref(), key)).await.ok()?.as_bool()
}

/// A response's body as text, read by the runtime (`worker::Response::text` reads it through a
/// Rust byte stream, code the Worker needs nowhere else: issue #21).
pub async fn response_text(response: &web_sys::Response) -> worker::Result<String> {
    let text = worker::wasm_bindgen_futures::JsFuture::from(response.text()?).await?;
    Ok(text.as_string().unwrap_or_default())
}

/// A request the edge builds for a room, made with the runtime's own types: `worker::Request`'s
/// constructor converts a `RequestInit` that can carry every `cf` option, code the Worker never
/// needs (issue #21, the wasm's size).
pub fn internal_request(url: &str, method: &str, headers: &worker::Headers, body: Option<&str>) -> worker::Result<web_sys::Request> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers.0);
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(body));
    }
    Ok(web_sys::Request::new_with_str_and_init(url, &init)?)
}

/// A POST of `body` to another object's `path`, answered 200 with a text: the calls between
/// sessions and rooms, in the relay's compact form (`roomcast_protocol::relay`'s `wire`). `None`
/// when the call failed or was refused.
pub async fn call_object(ns: &worker::ObjectNamespace, name: &str, path: &str, body: &str) -> Option<String> {
    let request = internal_request(&format!("https://object{path}"), "POST", &worker::Headers::new(), Some(body)).ok()?;
    let response = fetch_room(ns, name, &request).await.ok()?;
    if response.status() != 200 {
        return None;
    }
    response_text(&response).await.ok()
}

/// Sends an already-converted JS string (queued while the socket is held: [`hold`]); errors (a
/// closing socket) are the caller's to ignore.
pub fn send_js(ws: &worker::WebSocket, text: &JsValue) -> Result<(), JsValue> {
    send_to(ws.as_ref(), text)
}

/// The last auto-response time of `ws`, in ms since the epoch.
pub fn last_auto_response(state: &worker::State, ws: &worker::WebSocket) -> Option<u64> {
    let ext: &StateExt = state.as_raw().unchecked_ref();
    let value = ext.get_web_socket_auto_response_timestamp(ws.as_ref()).ok()?;
    value.dyn_into::<js_sys::Date>().ok().map(|d| d.get_time() as u64)
}

/// `n` random bytes as lowercase hex, from the runtime's CSPRNG.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    get_random_values(&mut buf);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(n * 2);
    for b in buf {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

/// The object's name (`ctx.id.name`, set when the object is reached by name, as every room is).
pub fn object_name(state: &worker::State) -> Option<String> {
    let id = js_sys::Reflect::get(state.as_raw(), &JsValue::from_str("id")).ok()?;
    js_sys::Reflect::get(&id, &JsValue::from_str("name")).ok()?.as_string()
}

pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}
