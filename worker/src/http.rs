//! JSON responses. Every error the HTTP side gives is `{"error": {"code", "message"}}` with a
//! fitting status; the body is written by `roomcast_protocol::api::refusal`.

use roomcast_protocol::api::refusal::{self, Refusal};
use roomcast_protocol::frame::ErrorCode;
use serde::Serialize;
use worker::{Headers, Response, Result};

pub fn error(status: u16, code: ErrorCode, message: &str) -> Result<Response> {
    json_text(status, refusal::error_body(code, message), None)
}

/// The HTTP answer to a refusal at the edge.
pub fn refused(r: &Refusal, cors_origin: Option<&str>) -> Result<Response> {
    json_text(r.status(), r.body(), cors_origin)
}

pub fn json<T: Serialize>(value: &T) -> Result<Response> {
    Response::from_json(value)
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
