//! Reads the options object JavaScript passes to `connect`.

use js_sys::Reflect;
use roomcast_protocol::client::backoff::Backoff;
use roomcast_protocol::client::ClientConfig;
use wasm_bindgen::JsValue;

pub struct Options {
    /// `ws(s)://host/rooms/<room>/ws`
    pub endpoint: String,
    pub client_id: String,
    pub echo: bool,
    pub token: Token,
    pub config: ClientConfig,
    pub seed: u64,
}

pub enum Token {
    None,
    Fixed(String),
    /// A function the JavaScript side calls before every attempt (the adapter asks with a
    /// `token` event and gets the result through `set_token`).
    Function,
}

fn get(o: &JsValue, key: &str) -> JsValue {
    Reflect::get(o, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

fn num(o: &JsValue, key: &str) -> Option<f64> {
    get(o, key).as_f64().filter(|v| v.is_finite() && *v >= 0.0)
}

fn ms(o: &JsValue, key: &str, default: u64) -> u64 {
    num(o, key).map_or(default, |v| v as u64)
}

/// Options as the JS wrapper normalized them: `url` is already the room's WebSocket endpoint.
pub fn read(o: &JsValue) -> Options {
    let endpoint = get(o, "endpoint").as_string().unwrap_or_default();
    let client_id = get(o, "clientId").as_string().unwrap_or_default();
    let token = match get(o, "token") {
        t if t.is_function() => Token::Function,
        t => t.as_string().map_or(Token::None, Token::Fixed),
    };
    let d = ClientConfig::default();
    let config = ClientConfig {
        backoff: Backoff {
            min_ms: ms(o, "minReconnectDelayMs", d.backoff.min_ms),
            max_ms: ms(o, "maxReconnectDelayMs", d.backoff.max_ms),
            factor: num(o, "reconnectFactor").unwrap_or(d.backoff.factor),
            jitter: get(o, "jitter").as_bool().unwrap_or(true),
        },
        min_uptime_ms: ms(o, "minUptimeMs", d.min_uptime_ms),
        connect_timeout_ms: ms(o, "connectTimeoutMs", d.connect_timeout_ms),
        ping_interval_ms: ms(o, "pingIntervalMs", d.ping_interval_ms),
        pong_timeout_ms: ms(o, "pongTimeoutMs", d.pong_timeout_ms),
        queue_max: num(o, "queueMax").map_or(d.queue_max, |v| v as usize),
    };
    let seed = num(o, "seed").map_or_else(|| (js_sys::Math::random() * 9_007_199_254_740_991.0) as u64, |v| v as u64);
    Options { endpoint, client_id, echo: get(o, "echo").as_bool().unwrap_or(false), token, config, seed }
}
