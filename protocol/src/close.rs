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
/// The token this connection holds expired (past the leeway) and no fresh one arrived through a
/// `refresh` frame; reconnect with a fresh token (a client with a fixed token then meets 4401).
pub const TOKEN_EXPIRED: CloseCode = CloseCode { code: 4002, reason: "token expired" };
/// The connection broke the room's limits repeatedly; reconnect after backing off.
pub const POLICY_VIOLATION: CloseCode = CloseCode { code: 4029, reason: "too many errors" };
/// Too many connection attempts from this address; reconnect after backing off.
pub const RATE_LIMITED: CloseCode = CloseCode { code: 4029, reason: "rate limited" };
/// A resume replay or history read went over the user's read budget; reconnect after backing off.
pub const READ_BUDGET: CloseCode = CloseCode { code: 4029, reason: "read budget exceeded; retry later" };
/// The upgrade request was invalid (bad room name, bad query); final.
pub const BAD_REQUEST: CloseCode = CloseCode { code: 4400, reason: "bad request" };
/// The token was missing, malformed, expired or forged; final until the app has a new token.
pub const UNAUTHORIZED: CloseCode = CloseCode { code: 4401, reason: "unauthorized" };
/// The token does not grant this room; final.
pub const FORBIDDEN: CloseCode = CloseCode { code: 4403, reason: "forbidden" };
/// The room has as many members as it may hold; final.
pub const ROOM_FULL: CloseCode = CloseCode { code: 4409, reason: "room full" };
/// The user already holds `MAX_CONNECTIONS_PER_USER` connections to this room; final.
pub const USER_CONNECTIONS: CloseCode = CloseCode { code: 4410, reason: "too many connections for this user" };
/// The backend removed this user from the room (`POST /rooms/:room/kick`), or the user is banned
/// from it for a while; final.
pub const REMOVED: CloseCode = CloseCode { code: 4411, reason: "removed from the room" };
/// The client id is bound to another user in this room; final (pick another client id).
pub const CLIENT_ID_TAKEN: CloseCode = CloseCode { code: 4412, reason: "client id belongs to another user" };

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_and_final_ranges_do_not_overlap() {
        for c in [GOING_AWAY, HEARTBEAT_TIMEOUT, TOKEN_EXPIRED, POLICY_VIOLATION, RATE_LIMITED, READ_BUDGET] {
            assert!(!CloseCode::is_final(c.code), "{} should be retryable", c.code);
        }
        for c in [BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, ROOM_FULL, USER_CONNECTIONS, REMOVED, CLIENT_ID_TAKEN] {
            assert!(CloseCode::is_final(c.code), "{} should be final", c.code);
        }
        assert!(!CloseCode::is_final(1000));
        assert!(!CloseCode::is_final(1006));
    }
}
