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

    /// A `WebSocket`, seen only for `send` with a JS value: one JS string built once can go to
    /// many sockets (`send_with_str` would convert the Rust string again for every recipient).
    pub type SocketExt;

    #[wasm_bindgen(method, catch, js_name = send)]
    fn send_value(this: &SocketExt, data: &JsValue) -> Result<(), JsValue>;
}

#[wasm_bindgen(inline_js = "export function fanout(sockets, text, skip) {
  for (const ws of sockets) {
    if (skip.size && skip.has(ws)) continue;
    try { ws.send(text); } catch {}
  }
}")]
extern "C" {
    /// Sends `text` to every socket in `sockets` but those in `skip`, in one call: the loop runs
    /// in JS, so a fanout crosses the wasm boundary once instead of once per recipient. A send to
    /// a closing socket throws; its close event follows, so the loop skips it.
    pub fn fanout(sockets: &js_sys::Array, text: &str, skip: &js_sys::Set);
}

// The timer is cleared as soon as the POST settles: a pending timer (AbortSignal.timeout's
// included) would keep the object from hibernating for the whole timeout.
#[wasm_bindgen(inline_js = "export async function postWebhook(url, headers, body, timeoutMs) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const res = await fetch(url, { method: 'POST', headers, body, redirect: 'manual', signal: controller.signal });
    try { await res.body?.cancel(); } catch {}
    return res.status;
  } catch (e) {
    if (controller.signal.aborted) return 'timeout after ' + timeoutMs + ' ms';
    return 'network error: ' + String((e && e.message) || e);
  } finally {
    clearTimeout(timer);
  }
}")]
extern "C" {
    /// POSTs `body` to `url`, aborted after `timeout_ms`; resolves with the status (a number) or
    /// a description of the failure (a string). Never rejects; redirects are not followed.
    #[wasm_bindgen(js_name = postWebhook)]
    fn post_webhook_js(url: &str, headers: &js_sys::Array, body: &str, timeout_ms: f64) -> js_sys::Promise;
}

/// Makes a webhook POST the room asked for. The caller holds no borrow of the room meanwhile:
/// other events run while it waits.
pub async fn post_webhook(request: &roomcast_protocol::webhook::WebhookRequest) -> roomcast_protocol::webhook::WebhookOutcome {
    use roomcast_protocol::webhook::WebhookOutcome;
    let headers = js_sys::Array::new();
    for (name, value) in &request.headers {
        headers.push(&js_sys::Array::of2(&JsValue::from_str(name), &JsValue::from_str(value)));
    }
    let promise = post_webhook_js(&request.url, &headers, &request.body, request.timeout_ms as f64);
    match worker::wasm_bindgen_futures::JsFuture::from(promise).await {
        Ok(v) => match (v.as_f64(), v.as_string()) {
            (Some(status), _) => WebhookOutcome::Status(status as u16),
            (None, Some(text)) => WebhookOutcome::Failed(text),
            (None, None) => WebhookOutcome::Failed("no answer".into()),
        },
        Err(e) => WebhookOutcome::Failed(e.as_string().unwrap_or_else(|| "fetch failed".into())),
    }
}

/// A random u64 from the runtime's CSPRNG.
pub fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    get_random_values(&mut buf);
    u64::from_le_bytes(buf)
}

/// Sends an already-converted JS string; errors (a closing socket) are the caller's to ignore.
pub fn send_js(ws: &worker::WebSocket, text: &JsValue) -> Result<(), JsValue> {
    let raw: &web_sys::WebSocket = ws.as_ref();
    let ext: &SocketExt = raw.unchecked_ref();
    ext.send_value(text)
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
