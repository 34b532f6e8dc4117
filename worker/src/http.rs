//! JSON responses. Every error the HTTP side gives is `{"error": {"code", "message"}}` with a
//! fitting status.

use roomcast_protocol::frame::ErrorCode;
use serde::Serialize;
use worker::{Response, Result};

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

pub fn error(status: u16, code: ErrorCode, message: &str) -> Result<Response> {
    let body = ErrorBody { error: ErrorDetail { code: code.as_str(), message } };
    Ok(Response::from_json(&body)?.with_status(status))
}

pub fn json<T: Serialize>(value: &T) -> Result<Response> {
    Response::from_json(value)
}
