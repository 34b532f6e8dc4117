//! WebSocket close codes. Browsers may only send 1000 or 3000-4999, so the application's codes
//! live in 4000-4999: 4000-4399 are retryable (the client reconnects with backoff), 4400-4499 are
//! final (the client stops and reports why). `docs/PROTOCOL.md` lists them for client authors.

/// A close code the room or the edge sends, with its meaning for a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseCode {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseCode {
    /// Final codes tell a client not to reconnect.
    pub fn is_final(code: u16) -> bool {
        (4400..4500).contains(&code)
    }
}

/// The room is going away (reset or shutting down); reconnect with backoff.
pub const GOING_AWAY: CloseCode = CloseCode { code: 4000, reason: "going away" };
/// No ping from the client within the heartbeat timeout; reconnect.
pub const HEARTBEAT_TIMEOUT: CloseCode = CloseCode { code: 4001, reason: "heartbeat timeout" };
/// The connection broke the room's limits repeatedly; reconnect after backing off.
pub const POLICY_VIOLATION: CloseCode = CloseCode { code: 4029, reason: "too many errors" };
/// Too many connection attempts from this address; reconnect after backing off.
pub const RATE_LIMITED: CloseCode = CloseCode { code: 4029, reason: "rate limited" };
/// The upgrade request was invalid (bad room name, bad query); final.
pub const BAD_REQUEST: CloseCode = CloseCode { code: 4400, reason: "bad request" };
/// The token was missing, malformed, expired or forged; final until the app has a new token.
pub const UNAUTHORIZED: CloseCode = CloseCode { code: 4401, reason: "unauthorized" };
/// The token does not grant this room; final.
pub const FORBIDDEN: CloseCode = CloseCode { code: 4403, reason: "forbidden" };
/// The room has as many members as it may hold; final.
pub const ROOM_FULL: CloseCode = CloseCode { code: 4409, reason: "room full" };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_and_final_ranges_do_not_overlap() {
        for c in [GOING_AWAY, HEARTBEAT_TIMEOUT, POLICY_VIOLATION, RATE_LIMITED] {
            assert!(!CloseCode::is_final(c.code), "{} should be retryable", c.code);
        }
        for c in [BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, ROOM_FULL] {
            assert!(CloseCode::is_final(c.code), "{} should be final", c.code);
        }
        assert!(!CloseCode::is_final(1000));
        assert!(!CloseCode::is_final(1006));
    }
}
