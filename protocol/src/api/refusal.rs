//! Refusals at the edge, and how each is answered: an HTTP status with a JSON body
//! (`{"error":{"code","message"}}`), or, for an upgrade that asked with `errors=close` (browsers
//! cannot read a refused upgrade's status or body), an accepted WebSocket closed at once with the
//! matching close code and the message as its reason.

use crate::close::{self, CloseCode};
use crate::frame::ErrorCode;
use serde::Serialize;
use std::borrow::Cow;

/// The longest close reason, in UTF-8 bytes: a close frame's payload is at most 125 bytes, two of
/// which carry the code (RFC 6455 §5.5). The runtime throws on a longer one.
pub const CLOSE_REASON_MAX: usize = 123;

/// Why the edge refused a request. All are normal outcomes of bad or unauthorized input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// Bad room name, query or body.
    BadRequest,
    /// Missing, malformed, expired or forged token or API key.
    Unauthorized,
    /// The token lacks the right, or the origin is not allowed.
    Forbidden,
    /// No such endpoint.
    NotFound,
    /// Wrong method for the endpoint.
    MethodNotAllowed,
    /// `/ws` without a WebSocket upgrade.
    UpgradeRequired,
    /// Too many upgrades from this address.
    RateLimited,
    /// A request body larger than the endpoint takes (told by its Content-Length, before reading).
    TooLarge,
    /// A publish without a Content-Length: its size must be known before it is read.
    LengthRequired,
    /// Transient: the room's storage failed (only the room answers this).
    Unavailable,
    /// Transient: the room's webhook outbox is full, so it stores no message until delivery
    /// makes room (only the room answers this, with a `Retry-After`).
    Backpressure,
}

impl RefusalKind {
    pub const ALL: [RefusalKind; 11] = [
        RefusalKind::BadRequest,
        RefusalKind::Unauthorized,
        RefusalKind::Forbidden,
        RefusalKind::NotFound,
        RefusalKind::MethodNotAllowed,
        RefusalKind::UpgradeRequired,
        RefusalKind::RateLimited,
        RefusalKind::TooLarge,
        RefusalKind::LengthRequired,
        RefusalKind::Unavailable,
        RefusalKind::Backpressure,
    ];

    /// The HTTP status (docs/PROTOCOL.md, *Errors over HTTP*).
    pub fn status(self) -> u16 {
        match self {
            RefusalKind::BadRequest => 400,
            RefusalKind::Unauthorized => 401,
            RefusalKind::Forbidden => 403,
            RefusalKind::NotFound => 404,
            RefusalKind::MethodNotAllowed => 405,
            RefusalKind::UpgradeRequired => 426,
            RefusalKind::RateLimited => 429,
            RefusalKind::TooLarge => 413,
            RefusalKind::LengthRequired => 411,
            RefusalKind::Unavailable => 503,
            // 507 Insufficient Storage: "unable to store the representation needed to complete
            // the request", a condition "considered to be temporary" (RFC 4918, 11.5).
            RefusalKind::Backpressure => 507,
        }
    }

    /// The `code` of the JSON error body.
    pub fn code(self) -> ErrorCode {
        match self {
            RefusalKind::BadRequest | RefusalKind::MethodNotAllowed | RefusalKind::UpgradeRequired => ErrorCode::BadRequest,
            RefusalKind::Unauthorized => ErrorCode::Unauthorized,
            RefusalKind::Forbidden => ErrorCode::Forbidden,
            RefusalKind::NotFound => ErrorCode::NotFound,
            RefusalKind::RateLimited => ErrorCode::RateLimited,
            RefusalKind::TooLarge => ErrorCode::TooLarge,
            RefusalKind::LengthRequired => ErrorCode::BadRequest,
            RefusalKind::Unavailable => ErrorCode::Storage,
            RefusalKind::Backpressure => ErrorCode::Backpressure,
        }
    }

    /// The close code under `errors=close` (docs/PROTOCOL.md, *Close codes*). Everything that
    /// retrying cannot fix is final; only the rate limit is retryable.
    pub fn close(self) -> CloseCode {
        match self {
            RefusalKind::BadRequest
            | RefusalKind::NotFound
            | RefusalKind::MethodNotAllowed
            | RefusalKind::UpgradeRequired
            | RefusalKind::TooLarge
            | RefusalKind::LengthRequired => close::BAD_REQUEST,
            RefusalKind::Unauthorized => close::UNAUTHORIZED,
            RefusalKind::Forbidden => close::FORBIDDEN,
            // Retryable, like the rate limit: the same request may succeed later. Never sent as
            // a close today (upgrades are refused before the room's storage is touched).
            RefusalKind::RateLimited | RefusalKind::Unavailable | RefusalKind::Backpressure => close::RATE_LIMITED,
        }
    }
}

/// A refusal with the message the client gets (in the JSON body or as the close reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: Cow<'static, str>,
    /// For a rate limit or backpressure: how long to wait, sent as `Retry-After` (whole seconds,
    /// rounded up).
    pub retry_after_ms: Option<u64>,
}

impl Refusal {
    pub fn new(kind: RefusalKind, message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal { kind, message: message.into(), retry_after_ms: None }
    }

    /// The room's webhook outbox is full; the same request may succeed after `retry_after_ms`.
    pub fn backpressure(message: impl Into<Cow<'static, str>>, retry_after_ms: u64) -> Refusal {
        Refusal { kind: RefusalKind::Backpressure, message: message.into(), retry_after_ms: Some(retry_after_ms) }
    }

    /// Over a rate or a budget; the same request may succeed after `retry_after_ms`.
    pub fn rate_limited(message: impl Into<Cow<'static, str>>, retry_after_ms: u64) -> Refusal {
        Refusal { kind: RefusalKind::RateLimited, message: message.into(), retry_after_ms: Some(retry_after_ms) }
    }

    /// The `Retry-After` header's value: whole seconds, rounded up, at least 1.
    pub fn retry_after_seconds(&self) -> Option<u64> {
        self.retry_after_ms.map(|ms| ms.div_ceil(1000).max(1))
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(RefusalKind::BadRequest, message)
    }

    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(RefusalKind::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(RefusalKind::Forbidden, message)
    }

    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(RefusalKind::NotFound, message)
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    pub fn close_code(&self) -> u16 {
        self.kind.close().code
    }

    /// The close reason: the message cut to [`CLOSE_REASON_MAX`] bytes; a refusal with a wait
    /// ends with it ([`crate::close::with_retry_after`]: `; retryAfterMs=<n>`).
    pub fn close_reason(&self) -> Cow<'_, str> {
        match self.retry_after_ms {
            Some(ms) => Cow::Owned(crate::close::with_retry_after(&self.message, ms)),
            None => Cow::Borrowed(close_reason(&self.message)),
        }
    }

    /// The JSON body of the HTTP answer.
    pub fn body(&self) -> String {
        error_body(self.kind.code(), &self.message)
    }
}

/// `text` cut to at most [`CLOSE_REASON_MAX`] UTF-8 bytes, on a character boundary (cutting by
/// characters lets a multibyte reason exceed the frame and the close throw).
pub fn close_reason(text: &str) -> &str {
    if text.len() <= CLOSE_REASON_MAX {
        return text;
    }
    let mut end = CLOSE_REASON_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

/// `{"error":{"code","message"}}`, the body of every HTTP error roomcast gives.
pub fn error_body(code: ErrorCode, message: &str) -> String {
    let body = ErrorBody { error: ErrorDetail { code: code.as_str(), message } };
    // Serializing two strings cannot fail; the fallback keeps a panic path out of the wasm build.
    serde_json::to_string(&body).unwrap_or_else(|_| r#"{"error":{"code":"bad_request","message":""}}"#.to_owned())
}

/// The statuses and close codes docs/PROTOCOL.md lists for refusals at the edge; the property
/// tests of the other modules check every refusal against them.
#[cfg(test)]
pub(crate) mod documented {
    pub const STATUSES: [u16; 11] = [400, 401, 403, 404, 405, 411, 413, 426, 429, 503, 507];
    pub const CLOSES: [u16; 4] = [4400, 4401, 4403, 4029];

    pub fn is_documented(r: &super::Refusal) -> bool {
        STATUSES.contains(&r.status()) && CLOSES.contains(&r.close_code()) && r.close_reason().len() <= super::CLOSE_REASON_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::documented::{CLOSES as DOCUMENTED_CLOSES, STATUSES as DOCUMENTED_STATUSES};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_kind_maps_to_a_documented_answer() {
        for kind in RefusalKind::ALL {
            assert!(DOCUMENTED_STATUSES.contains(&kind.status()), "{kind:?}");
            assert!(DOCUMENTED_CLOSES.contains(&kind.close().code), "{kind:?}");
            // final exactly when retrying the same request cannot help
            let retryable = matches!(kind, RefusalKind::RateLimited | RefusalKind::Unavailable | RefusalKind::Backpressure);
            assert_eq!(CloseCode::is_final(kind.close().code), !retryable, "{kind:?}");
        }
        assert_eq!(RefusalKind::BadRequest.close().code, 4400);
        assert_eq!(RefusalKind::Unauthorized.close().code, 4401);
        assert_eq!(RefusalKind::Forbidden.close().code, 4403);
        assert_eq!(RefusalKind::RateLimited.close().code, 4029);
    }

    #[test]
    fn body_is_the_documented_json() {
        let r = Refusal::bad_request("since must be \"whole\"\n");
        let v: serde_json::Value = serde_json::from_str(&r.body()).unwrap();
        assert_eq!(v, serde_json::json!({"error": {"code": "bad_request", "message": "since must be \"whole\"\n"}}));
        assert!(!r.body().contains('\n'));
    }

    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        assert_eq!(close_reason("short"), "short");
        let exact = "a".repeat(CLOSE_REASON_MAX);
        assert_eq!(close_reason(&exact), exact);
        // 'é' is two bytes: 61 of them are 122 bytes, the 62nd would make 124
        let accented = "é".repeat(80);
        assert_eq!(close_reason(&accented).len(), 122);
        let emoji = format!("ab{}", "😀".repeat(40));
        let cut = close_reason(&emoji);
        assert!(cut.len() <= CLOSE_REASON_MAX && cut.len() >= CLOSE_REASON_MAX - 3, "{}", cut.len());
        assert!(emoji.starts_with(cut));
    }

    proptest! {
        #[test]
        fn close_reason_is_a_prefix_within_the_limit(text in ".{0,200}") {
            let cut = close_reason(&text);
            prop_assert!(cut.len() <= CLOSE_REASON_MAX);
            prop_assert!(text.starts_with(cut));
            // as long as possible: the next character would not have fit
            if cut.len() < text.len() {
                let next = text[cut.len()..].chars().next().unwrap();
                prop_assert!(cut.len() + next.len_utf8() > CLOSE_REASON_MAX);
            }
        }
    }
}
