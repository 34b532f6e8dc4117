//! The edge: routes `/rooms/:room/*` to the room's Durable Object, after checking everything
//! that can be checked without waking it (room name, query, API key). The identity the room
//! trusts travels in a header the edge sets on a request it builds itself, so a client cannot
//! forge it.

use crate::{http, platform};
use roomcast_protocol::frame::ErrorCode;
use roomcast_protocol::{name, SUBPROTOCOL};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use subtle::ConstantTimeEq;
use worker::{Env, Headers, Method, Request, RequestInit, Response, Result, Url};

/// The header carrying [`ConnectInfo`] from the edge to the room.
pub const CONNECT_HEADER: &str = "x-roomcast-connect";
/// Largest `meta` query value, in bytes (development identities only).
const META_MAX: usize = 1024;

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
    /// Whether the client offered `roomcast.v1`, which the response must then select.
    pub subprotocol: bool,
}

pub async fn handle(req: Request, env: Env) -> Result<Response> {
    let url = req.url()?;
    let path = url.path().to_owned();
    let mut segments = path.trim_start_matches('/').split('/');
    match (segments.next(), segments.next(), segments.next(), segments.next()) {
        (Some("rooms"), Some(room), Some(endpoint), None) => route(req, env, &url, room, endpoint).await,
        _ => http::error(404, ErrorCode::NotFound, "no such endpoint; see docs/PROTOCOL.md"),
    }
}

async fn route(mut req: Request, env: Env, url: &Url, room: &str, endpoint: &str) -> Result<Response> {
    if let Err(e) = name::validate_room(room) {
        return http::error(400, ErrorCode::BadRequest, &e.to_string());
    }
    let method = req.method();
    match (endpoint, method) {
        ("ws", Method::Get) => connect(&req, &env, url, room).await,
        ("messages", Method::Post) | ("history" | "presence" | "stats", Method::Get) => {
            if let Some(denied) = authorize_api(&req, &env)? {
                return Ok(denied);
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
    let info = match connect_info(req, url) {
        Ok(info) => info,
        Err(message) => return http::error(400, ErrorCode::BadRequest, &message),
    };
    let headers = Headers::new();
    headers.set("Upgrade", "websocket")?;
    headers.set(CONNECT_HEADER, &serde_json::to_string(&info)?)?;
    let internal = Request::new_with_init("https://room/ws", RequestInit::new().with_headers(headers))?;
    stub(env, room)?.fetch_with_request(internal).await
}

fn connect_info(req: &Request, url: &Url) -> std::result::Result<ConnectInfo, String> {
    let (mut cid, mut user, mut meta, mut since, mut epoch, mut echo) = (None, None, None, None, None, false);
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "cid" => cid = Some(value.into_owned()),
            // Development identity until tokens carry it; see docs/PROTOCOL.md.
            "user" => user = Some(value.into_owned()),
            "meta" => meta = Some(value.into_owned()),
            "since" => since = Some(value.parse::<u64>().map_err(|_| "since must be a whole number".to_string())?),
            "epoch" => epoch = Some(value.into_owned()),
            "echo" => echo = matches!(value.as_ref(), "1" | "true"),
            _ => {}
        }
    }
    let cid = match cid {
        Some(cid) => {
            name::validate_client_id(&cid).map_err(|e| e.to_string())?;
            cid
        }
        None => platform::random_hex(12),
    };
    let user = match user {
        Some(user) => {
            name::validate_user(&user).map_err(|e| e.to_string())?;
            user
        }
        None => cid.clone(),
    };
    let meta = match meta {
        Some(m) if m.len() > META_MAX => return Err(format!("meta is longer than {META_MAX} bytes")),
        Some(m) => match RawValue::from_string(m) {
            Ok(raw) if raw.get().trim_start().starts_with('{') => Some(raw),
            _ => return Err("meta must be a JSON object".into()),
        },
        None => None,
    };
    let resume = match (epoch, since) {
        (Some(epoch), Some(since)) if !epoch.is_empty() && epoch.len() <= 64 => Some((epoch, since)),
        (None, None) => None,
        _ => return Err("resume needs both since and epoch (epoch at most 64 bytes)".into()),
    };
    let offered = req.headers().get("Sec-WebSocket-Protocol").ok().flatten().unwrap_or_default();
    let subprotocol = offered.split(',').any(|p| p.trim() == SUBPROTOCOL);
    Ok(ConnectInfo { cid, user, meta, echo, resume, subprotocol })
}

/// `None` when the request carries the API key; otherwise the 401 to answer with.
fn authorize_api(req: &Request, env: &Env) -> Result<Option<Response>> {
    let Ok(key) = env.secret("ROOMCAST_API_KEY").map(|s| s.to_string()) else {
        return http::error(401, ErrorCode::Unauthorized, "ROOMCAST_API_KEY is not configured").map(Some);
    };
    let given = req.headers().get("Authorization")?.unwrap_or_default();
    let token = given.strip_prefix("Bearer ").unwrap_or("");
    // Constant time, so the key cannot be guessed byte by byte from response times.
    if !key.is_empty() && bool::from(token.as_bytes().ct_eq(key.as_bytes())) {
        Ok(None)
    } else {
        http::error(401, ErrorCode::Unauthorized, "missing or wrong Authorization: Bearer <API key>").map(Some)
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
