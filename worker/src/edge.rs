//! The edge: routes `/rooms/:room/*` to the room's Durable Object, after checking everything
//! that can be checked without waking it: the room name, the origin, the per-IP upgrade rate,
//! the token and its rights, the query, the API key. The identity the room trusts travels in a
//! header the edge sets on a request it builds itself, so a client cannot forge it.

use crate::{http, platform};
use roomcast_protocol::close::{self, CloseCode};
use roomcast_protocol::frame::ErrorCode;
use roomcast_protocol::token::{self, Claims, Right, Rights};
use roomcast_protocol::{name, SUBPROTOCOL};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result, Url, WebSocketPair};

/// The header carrying [`ConnectInfo`] from the edge to the room.
pub const CONNECT_HEADER: &str = "x-roomcast-connect";
/// Largest `meta` query value, in bytes (anonymous connections only).
const META_MAX: usize = token::META_MAX;
/// Prefix of anonymous user ids, so an anonymous user can never pass for a token's `sub`.
const ANON_PREFIX: &str = "anon:";

/// What the edge established about a new connection.
#[derive(Serialize, Deserialize)]
pub struct ConnectInfo {
    pub cid: String,
    pub user: String,
    #[serde(default)]
    pub meta: Option<Box<RawValue>>,
    pub echo: bool,
    #[serde(default)]
    pub resume: Option<(String, u64)>,
    pub rights: Rights,
    /// Whether the client offered `roomcast.v1`, which the response must then select.
    pub subprotocol: bool,
}

/// A refusal, answered as HTTP with a JSON body, or (for clients that asked with
/// `errors=close`, as the SDK does, because browsers cannot read a refused upgrade's body) as
/// an accepted WebSocket closed at once with the matching close code.
struct Refusal {
    status: u16,
    code: ErrorCode,
    close: CloseCode,
    message: String,
}

impl Refusal {
    fn new(status: u16, code: ErrorCode, close: CloseCode, message: impl Into<String>) -> Refusal {
        Refusal { status, code, close, message: message.into() }
    }
}

pub async fn handle(req: Request, env: Env) -> Result<Response> {
    let url = req.url()?;
    let path = url.path().to_owned();
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some("rooms"), Some(room), Some(endpoint), None) => route(req, env, &url, room, endpoint).await,
        (Some("dev"), Some("token"), None, None) => dev_token(&env, &url),
        _ => http::error(404, ErrorCode::NotFound, "no such endpoint; see docs/PROTOCOL.md"),
    }
}

async fn route(mut req: Request, env: Env, url: &Url, room: &str, endpoint: &str) -> Result<Response> {
    if let Err(e) = name::validate_room(room) {
        return http::error(400, ErrorCode::BadRequest, &e.to_string());
    }
    let method = req.method();
    let needs = match endpoint {
        "messages" => Right::Publish,
        "history" => Right::Subscribe,
        "presence" => Right::Presence,
        _ => Right::Subscribe,
    };
    match (endpoint, method) {
        ("ws", Method::Get) => connect(&req, &env, url, room).await,
        ("messages", Method::Post) | ("history" | "presence" | "stats", Method::Get) => {
            // Stats are for operators: the API key only. The rest also take a token with the
            // right for this room.
            let right = if endpoint == "stats" { None } else { Some(needs) };
            if let Err(r) = authorize_api(&req, &env, room, right) {
                return http::error(r.status, r.code, &r.message);
            }
            let body = if endpoint == "messages" { Some(req.text().await?) } else { None };
            let query = url.query().unwrap_or("");
            forward(&env, room, &format!("https://room/{endpoint}?{query}"), body).await
        }
        ("ws" | "messages" | "history" | "presence" | "stats", _) => {
            http::error(405, ErrorCode::BadRequest, "method not allowed for this endpoint")
        }
        _ => http::error(404, ErrorCode::NotFound, "no such room endpoint; see docs/PROTOCOL.md"),
    }
}

async fn connect(req: &Request, env: &Env, url: &Url, room: &str) -> Result<Response> {
    let upgrade = req.headers().get("Upgrade")?.unwrap_or_default();
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return http::error(426, ErrorCode::BadRequest, "expected a WebSocket upgrade");
    }
    let offered = req.headers().get("Sec-WebSocket-Protocol")?.unwrap_or_default();
    let subprotocol = offered.split(',').any(|p| p.trim() == SUBPROTOCOL);
    let close_on_refusal = url.query_pairs().any(|(k, v)| k == "errors" && v == "close");
    match admit(req, env, url, room, &offered, subprotocol).await {
        Ok(info) => {
            let headers = Headers::new();
            headers.set("Upgrade", "websocket")?;
            headers.set(CONNECT_HEADER, &serde_json::to_string(&info)?)?;
            let internal = Request::new_with_init("https://room/ws", RequestInit::new().with_headers(headers))?;
            stub(env, room)?.fetch_with_request(internal).await
        }
        Err(r) if close_on_refusal => refuse_as_close(&r, subprotocol),
        Err(r) => http::error(r.status, r.code, &r.message),
    }
}

/// Everything a connection must pass before its room is touched.
async fn admit(req: &Request, env: &Env, url: &Url, room: &str, offered: &str, subprotocol: bool) -> std::result::Result<ConnectInfo, Refusal> {
    check_origin(req, env)?;
    check_upgrade_rate(req, env).await?;

    let (mut cid, mut user, mut meta, mut since, mut epoch, mut echo, mut query_token) = (None, None, None, None, None, false, None);
    let bad = |m: String| Refusal::new(400, ErrorCode::BadRequest, close::BAD_REQUEST, m);
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "cid" => cid = Some(value.into_owned()),
            "user" => user = Some(value.into_owned()),
            "meta" => meta = Some(value.into_owned()),
            "since" => since = Some(value.parse::<u64>().map_err(|_| bad("since must be a whole number".into()))?),
            "epoch" => epoch = Some(value.into_owned()),
            "echo" => echo = matches!(value.as_ref(), "1" | "true"),
            "token" => query_token = Some(value.into_owned()),
            _ => {}
        }
    }
    let cid = match cid {
        Some(cid) => {
            name::validate_client_id(&cid).map_err(|e| bad(e.to_string()))?;
            cid
        }
        None => platform::random_hex(12),
    };
    let resume = match (epoch, since) {
        (Some(epoch), Some(since)) if !epoch.is_empty() && epoch.len() <= 64 => Some((epoch, since)),
        (None, None) => None,
        _ => return Err(bad("resume needs both since and epoch (epoch at most 64 bytes)".into())),
    };
    let bearer = offered.split(',').map(str::trim).find_map(|p| p.strip_prefix("bearer.")).map(str::to_owned);

    let (user, meta, rights) = match bearer.or(query_token) {
        Some(t) => {
            let claims = verify_token(env, &t)?;
            let rights = claims.rights_for(room);
            if !rights.subscribe {
                return Err(Refusal::new(403, ErrorCode::Forbidden, close::FORBIDDEN, "the token does not grant this room"));
            }
            (claims.sub, claims.meta, rights)
        }
        None => {
            let anonymous_rooms = env.var("ANONYMOUS_ROOMS").map(|v| v.to_string()).unwrap_or_default();
            if !token::any_pattern_matches(&anonymous_rooms, room) {
                return Err(Refusal::new(401, ErrorCode::Unauthorized, close::UNAUTHORIZED, "a token is required for this room"));
            }
            // Anonymous rooms: the user id is chosen freely but always carries the anon: prefix.
            let name = user.unwrap_or_else(|| cid.clone());
            name::validate_client_id(&name).map_err(|e| bad(format!("user: {e}")))?;
            let meta = match meta {
                Some(m) if m.len() > META_MAX => return Err(bad(format!("meta is longer than {META_MAX} bytes"))),
                Some(m) => match RawValue::from_string(m) {
                    Ok(raw) if raw.get().trim_start().starts_with('{') => Some(raw),
                    _ => return Err(bad("meta must be a JSON object".into())),
                },
                None => None,
            };
            (format!("{ANON_PREFIX}{name}"), meta, Rights::ALL)
        }
    };
    Ok(ConnectInfo { cid, user, meta, echo, resume, rights, subprotocol })
}

fn secret(env: &Env) -> std::result::Result<String, Refusal> {
    env.secret("ROOMCAST_SECRET").map(|s| s.to_string()).ok().filter(|s| !s.is_empty()).ok_or_else(|| {
        Refusal::new(401, ErrorCode::Unauthorized, close::UNAUTHORIZED, "ROOMCAST_SECRET is not configured")
    })
}

fn verify_token(env: &Env, t: &str) -> std::result::Result<Claims, Refusal> {
    let secret = secret(env)?;
    token::verify(t, secret.as_bytes(), platform::now_ms())
        .map_err(|e| Refusal::new(401, ErrorCode::Unauthorized, close::UNAUTHORIZED, e.to_string()))
}

/// Cross-site WebSocket hijacking: a browser page from another site could open a socket with
/// the user's cookies. `ALLOWED_ORIGINS` (comma-separated, exact) closes that; empty allows all.
/// Requests without an Origin header do not come from a browser page and pass.
fn check_origin(req: &Request, env: &Env) -> std::result::Result<(), Refusal> {
    let allowed = env.var("ALLOWED_ORIGINS").map(|v| v.to_string()).unwrap_or_default();
    if allowed.trim().is_empty() {
        return Ok(());
    }
    let Some(origin) = req.headers().get("Origin").ok().flatten() else { return Ok(()) };
    if allowed.split(',').map(str::trim).any(|a| a == origin) {
        Ok(())
    } else {
        Err(Refusal::new(403, ErrorCode::Forbidden, close::FORBIDDEN, "this origin may not connect"))
    }
}

/// Per-IP limit on upgrades, with the platform's rate-limiting binding named by the var
/// `UPGRADE_LIMITER` (default `UPGRADES_PER_IP`; empty turns the limit off, as the load and
/// reconnect-storm tests do, which connect thousands of clients from one address).
async fn check_upgrade_rate(req: &Request, env: &Env) -> std::result::Result<(), Refusal> {
    let binding = env.var("UPGRADE_LIMITER").map(|v| v.to_string()).unwrap_or_else(|_| "UPGRADES_PER_IP".into());
    if binding.is_empty() {
        return Ok(());
    }
    let Ok(limiter) = env.rate_limiter(&binding) else { return Ok(()) };
    let ip = req.headers().get("CF-Connecting-IP").ok().flatten().unwrap_or_else(|| "unknown".into());
    match limiter.limit(ip).await {
        Ok(outcome) if !outcome.success => {
            Err(Refusal::new(429, ErrorCode::RateLimited, close::RATE_LIMITED, "too many connection attempts from this address"))
        }
        // If the limiter itself fails, connections are let through rather than refused.
        _ => Ok(()),
    }
}

fn refuse_as_close(r: &Refusal, subprotocol: bool) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    pair.server.accept()?;
    pair.server.close(Some(r.close.code), Some(r.message.chars().take(120).collect::<String>()))?;
    let response = Response::from_websocket(pair.client)?;
    if subprotocol {
        let headers = Headers::new();
        headers.set("Sec-WebSocket-Protocol", SUBPROTOCOL)?;
        return Ok(response.with_headers(headers));
    }
    Ok(response)
}

/// The API key, or a token whose rights for this room include `right` (`None`: key only).
fn authorize_api(req: &Request, env: &Env, room: &str, right: Option<Right>) -> std::result::Result<(), Refusal> {
    let unauthorized = |m: &str| Refusal::new(401, ErrorCode::Unauthorized, close::UNAUTHORIZED, m);
    let given = req.headers().get("Authorization").ok().flatten().unwrap_or_default();
    let Some(credential) = given.strip_prefix("Bearer ") else {
        return Err(unauthorized("missing Authorization: Bearer <API key or token>"));
    };
    let key = env.secret("ROOMCAST_API_KEY").map(|s| s.to_string()).unwrap_or_default();
    // Constant time, so the key cannot be guessed byte by byte from response times.
    if !key.is_empty() && bool::from(credential.as_bytes().ct_eq(key.as_bytes())) {
        return Ok(());
    }
    let Some(right) = right else { return Err(unauthorized("this endpoint needs the API key")) };
    if credential.matches('.').count() != 2 {
        return Err(unauthorized("wrong API key"));
    }
    let claims = verify_token(env, credential)?;
    if claims.rights_for(room).has(right) {
        Ok(())
    } else {
        Err(Refusal::new(403, ErrorCode::Forbidden, close::FORBIDDEN, "the token lacks the right for this room"))
    }
}

#[derive(Serialize)]
struct DevToken {
    token: String,
    user: String,
    expires: u64,
}

/// `GET /dev/token?user=alice&room=chat:*&rights=subscribe,publish,presence&ttl=3600`: a token
/// for local development. It exists only when `ROOMCAST_DEV_TOKENS` is "1", which the setup
/// writes into `.dev.vars`; `wrangler deploy` never uploads that file.
fn dev_token(env: &Env, url: &Url) -> Result<Response> {
    let enabled = env.var("ROOMCAST_DEV_TOKENS").map(|v| v.to_string() == "1").unwrap_or(false)
        || env.secret("ROOMCAST_DEV_TOKENS").map(|v| v.to_string() == "1").unwrap_or(false);
    if !enabled {
        return http::error(404, ErrorCode::NotFound, "no such endpoint; see docs/PROTOCOL.md");
    }
    let (mut user, mut room, mut rights, mut ttl, mut meta) = (None, None, None, 3600u64, None);
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "user" => user = Some(v.into_owned()),
            "room" => room = Some(v.into_owned()),
            "rights" => rights = Some(v.into_owned()),
            "ttl" => ttl = v.parse().unwrap_or(3600).min(24 * 3600),
            "meta" => meta = Some(v.into_owned()),
            _ => {}
        }
    }
    let (Some(user), Some(room)) = (user, room) else {
        return http::error(400, ErrorCode::BadRequest, "user and room are required");
    };
    if let Err(e) = name::validate_user(&user) {
        return http::error(400, ErrorCode::BadRequest, &e.to_string());
    }
    let mut granted = Vec::new();
    for r in rights.as_deref().unwrap_or("subscribe,publish,presence").split(',') {
        match serde_json::from_str::<Right>(&format!("\"{}\"", r.trim())) {
            Ok(right) => granted.push(right),
            Err(_) => return http::error(400, ErrorCode::BadRequest, "rights are subscribe, publish, presence"),
        }
    }
    let meta = match meta.map(RawValue::from_string) {
        Some(Ok(m)) => Some(m),
        Some(Err(_)) => return http::error(400, ErrorCode::BadRequest, "meta must be JSON"),
        None => None,
    };
    let now = platform::now_ms() / 1000;
    let claims = Claims { sub: user.clone(), exp: now + ttl, nbf: None, iat: Some(now), rooms: [(room, granted)].into(), meta };
    let secret = match secret(env) {
        Ok(s) => s,
        Err(r) => return http::error(500, ErrorCode::Unauthorized, &r.message),
    };
    match token::mint(&claims, secret.as_bytes()) {
        Ok(token) => {
            // Development pages may run on another origin (a Vite dev server, say).
            let response = http::json(&DevToken { token, user, expires: claims.exp })?;
            let headers = Headers::new();
            headers.set("Content-Type", "application/json")?;
            headers.set("Access-Control-Allow-Origin", "*")?;
            Ok(response.with_headers(headers))
        }
        Err(e) => http::error(500, ErrorCode::Unauthorized, &e.to_string()),
    }
}

async fn forward(env: &Env, room: &str, url: &str, body: Option<String>) -> Result<Response> {
    let mut init = RequestInit::new();
    if let Some(body) = body {
        init.with_method(Method::Post).with_body(Some(body.into()));
    }
    stub(env, room)?.fetch_with_request(Request::new_with_init(url, &init)?).await
}

fn stub(env: &Env, room: &str) -> Result<worker::Stub> {
    env.durable_object("ROOMS")?.get_by_name(room)
}
