//! What a receiver's answer means and when the next attempt may go: the outbox's policy as
//! plain functions and the types it is driven with (`Outbox::poll_request`, `handle_result`).

/// The longest backoff: 10 minutes.
pub const BACKOFF_MAX_MS: u64 = 600_000;
/// The shortest backoff: 1 second.
pub const BACKOFF_MIN_MS: u64 = 1_000;
/// The longest wait a receiver's `Retry-After` gets: 1 hour. A longer one is taken as 1 hour.
pub const RETRY_AFTER_MAX_MS: u64 = 3_600_000;
/// The shortest and longest wait a refused publisher is told (`Retry-After`).
pub const REFUSAL_RETRY_MIN_MS: u64 = 1_000;
pub const REFUSAL_RETRY_MAX_MS: u64 = 60_000;
/// Dead letters are expired at most this often (each time with one read of the oldest one kept).
pub const EXPIRY_EVERY_MS: u64 = 60_000;
/// Whether an answer says the receiver will never take this body (so the same bytes would be
/// refused on every retry): 400 Bad Request, 413 Content Too Large, 422 Unprocessable Content.
/// The batch is split until the event refused alone is found and set aside. Every other status
/// is a failure that is retried as it is: 408 and 429 ask for a retry, and 401, 403, 404 and
/// the like say the endpoint or its configuration is wrong, which no event can be blamed for.
pub fn refuses(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

/// Whether a `Retry-After` with this status is honoured: 429 Too Many Requests and 503 Service
/// Unavailable, the two that ask a client to come back later.
pub fn honours_retry_after(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// The delay before the next attempt after the `failures`-th consecutive failure (at least 1):
/// uniform in `[1 s, max(1 s, min(10 min, 1 s × 2^(failures-1)))]`, drawn from `random`.
pub fn backoff_ms(failures: u32, random: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(20);
    let cap = BACKOFF_MIN_MS.saturating_mul(1u64 << exp).clamp(BACKOFF_MIN_MS, BACKOFF_MAX_MS);
    BACKOFF_MIN_MS + random % (cap - BACKOFF_MIN_MS + 1)
}

/// Which bound an event is held to (module docs, *Bounds*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventClass {
    /// `message.published`: refused at the bound, and its publish with it.
    Message,
    /// `presence.joined` and `room.occupied`: up to twice the bound. (Departures are not asked
    /// about: they are always recorded.)
    Presence,
}

/// One POST to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Hands the result back to [`super::Outbox::handle_result`].
    pub attempt: u64,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    /// `{"events":[…]}`.
    pub body: String,
    /// Abort the POST after this long: a timeout is a failure.
    pub timeout_ms: u64,
    /// How many events the body holds.
    pub events: usize,
}

/// How a POST ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// The receiver answered with this status (2xx acknowledges the whole batch; see
    /// [`refuses`] for the ones that split it) and this `Retry-After` header, if it sent one (the
    /// adapter passes it as it came; [`honours_retry_after`] says when it counts).
    Status(u16, Option<String>),
    /// No answer: a timeout or a network error, described.
    Failed(String),
}
