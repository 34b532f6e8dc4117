//! JSON responses. Every error the HTTP side gives is `{"error": {"code", "message"}}` with a
//! fitting status; status, body and `Retry-After` are written in `roomcast_protocol::api`
//! (`refusal`, `call::Answer`), never here. A refused upgrade that is to be told by close code
//! is an accepted socket closed at once ([`refused_socket`]).

use roomcast_protocol::api::call::Answer;
use roomcast_protocol::api::refusal::Refusal;
use roomcast_protocol::SUBPROTOCOL;
use worker::{Headers, Response, Result, WebSocketPair};

/// The HTTP answer to a refusal (at the edge, or the object's own for a request that did not
/// come through it), with `Retry-After` for a rate limit.
pub fn refused(r: &Refusal, cors_origin: Option<&str>) -> Result<Response> {
    answer_with(&Answer::refused(r), cors_origin)
}

/// The room's answer to an API call, as the room wrote it.
pub fn answer(a: &Answer) -> Result<Response> {
    answer_with(a, None)
}

fn answer_with(a: &Answer, cors_origin: Option<&str>) -> Result<Response> {
    let response = json_text(a.status, a.body.clone(), cors_origin)?;
    if let Some(seconds) = a.retry_after {
        response.headers().set("Retry-After", &seconds.to_string())?;
    }
    Ok(response)
}

/// A JSON text already written, with its status and, for pages on another allowed origin, the
/// CORS header echoing that origin (never `*`).
pub fn json_text(status: u16, body: String, cors_origin: Option<&str>) -> Result<Response> {
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    if let Some(origin) = cors_origin {
        headers.set("Access-Control-Allow-Origin", origin)?;
        headers.set("Vary", "Origin")?;
    }
    Ok(Response::ok(body)?.with_status(status).with_headers(headers))
}

/// An accepted WebSocket closed at once with the refusal's close code and its reason, cut to the
/// 123 bytes a close frame can carry; with `roomcast.v1` selected when the client offered it.
pub fn refused_socket(r: &Refusal, subprotocol: bool) -> Result<Response> {
    let pair = WebSocketPair::new()?;
    pair.server.accept()?;
    pair.server.close(Some(r.close_code()), Some(&r.close_reason()))?;
    let response = Response::from_websocket(pair.client)?;
    if subprotocol {
        let headers = Headers::new();
        headers.set("Sec-WebSocket-Protocol", SUBPROTOCOL)?;
        return Ok(response.with_headers(headers));
    }
    Ok(response)
}
