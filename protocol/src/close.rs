//! WebSocket close codes: one table for the server (the room and the edge), the client machine and
//! the SDK's JavaScript layer (which gets every code and reason from the machine, through the
//! wasm). Browsers may only send 1000 or 3000-4999, so the application's codes live in 4000-4999:
//! 4000-4399 are retryable (the client reconnects with backoff), 4400-4499 are final (the client
//! stops and reports why). `docs/PROTOCOL.md` lists them for client authors.
//!
//! 4000 is the client's own: the server never sends it. The client machine reports it in its
//! status when it gives up on a socket by itself (no welcome in time, no pong in time, a message
//! out of order, no token) and, with state `closed`, when it stops for good by itself (the token
//! function kept failing, the WebSocket could not even be created). The socket itself is closed
//! with 1000 (browsers allow no other code below 3000) and the same reason.

/// A close code with its meaning for a client.
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

    /// The table's reason for `code`, for a close that came without one (the first entry with
    /// that code in [`SERVER`], [`STANDARD`], [`CLIENT`]); `""` for a code the table lacks.
    pub fn reason_for(code: u16) -> &'static str {
        // (a loop over bytes: `str::split` brings a pattern searcher into the wasm)
        let (mut start, mut line) = (0, 0);
        for (at, byte) in REASONS.bytes().enumerate() {
            if byte == b'\n' {
                if REASON_CODES.get(line) == Some(&code) {
                    return REASONS.get(start..at).unwrap_or_default();
                }
                (start, line) = (at + 1, line + 1);
            }
        }
        ""
    }
}

/// [`CloseCode::reason_for`]'s table, compact for the SDK's wasm (a table of `CloseCode`s takes 12
/// bytes an entry beside its text, and one that every entry of the three tables reaches keeps
/// them all): each code once, with the first reason the tables give it, each ending in a line
/// break in [`REASONS`]. A test holds the two to the tables.
const REASON_CODES: [u16; 18] =
    [4001, 4002, 4009, 4008, 4013, 4029, 4400, 4401, 4403, 4409, 4410, 4411, 4412, 1000, 1001, 1006, 1009, 4000];
const REASONS: &str = "heartbeat timeout\ntoken expired\nframe too large\nnot reading\nroom reset\ntoo many errors\nbad request\n\
    unauthorized\nforbidden\nroom full\ntoo many connections for this user\nremoved from the room\n\
    client id belongs to another user\nclient closed\ngoing away\nconnection lost\nmessage too big\nconnect timeout\n";

// ---- sent by the server ------------------------------------------------------------------------

/// No sign of life from the client (a ping, or any frame) within the heartbeat timeout; reconnect.
pub const HEARTBEAT_TIMEOUT: CloseCode = CloseCode { code: 4001, reason: "heartbeat timeout" };
/// The token this connection holds expired (past the leeway) and no fresh one arrived through a
/// `refresh` frame; reconnect with a fresh token (a client with a fixed token then meets 4401).
pub const TOKEN_EXPIRED: CloseCode = CloseCode { code: 4002, reason: "token expired" };
/// A frame over the room's frame limit (`MAX_FRAME_BYTES`) that was also larger than the bytes
/// the connection had left in its byte rate (any frame over the rate's burst, 1 MiB by default):
/// closed at once, the frame unread; reconnect after backing off.
pub const FRAME_TOO_LARGE: CloseCode = CloseCode { code: 4009, reason: "frame too large" };
/// The connection did not echo the room's read marks while the room sent it more than
/// `UNREAD_MAX_BYTES`: it is not reading what it is sent (the runtime would hold it all);
/// reconnect and resume.
pub const NOT_READING: CloseCode = CloseCode { code: 4008, reason: "not reading" };
/// The room's history was deleted (`DELETE /rooms/:room/history`) and a new epoch began;
/// reconnect: the resume point names the old epoch, so the client is told it cannot recover
/// (`not_recovered`, reason `epoch`: the SDK's `gap`).
pub const ROOM_RESET: CloseCode = CloseCode { code: 4013, reason: "room reset" };
/// The connection broke the room's limits repeatedly; reconnect after backing off.
pub const POLICY_VIOLATION: CloseCode = CloseCode { code: 4029, reason: "too many errors" };
/// Too many connection attempts from this address; reconnect after backing off.
pub const RATE_LIMITED: CloseCode = CloseCode { code: 4029, reason: "rate limited" };
/// A resume replay or history read went over the user's read budget; reconnect after backing off.
pub const READ_BUDGET: CloseCode = CloseCode { code: 4029, reason: "read budget exceeded; retry later" };
/// The room's webhook outbox is full even for presence (twice its bound), so it cannot record the
/// join this connection would make; reconnect after backing off (docs/WEBHOOKS.md, *Bounds*).
pub const WEBHOOK_BACKLOG: CloseCode = CloseCode { code: 4029, reason: "webhook backlog full; retry later" };
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

/// Every code the room or the edge sends (the edge's closes carry its own refusal message).
pub const SERVER: &[CloseCode] = &[
    HEARTBEAT_TIMEOUT,
    TOKEN_EXPIRED,
    FRAME_TOO_LARGE,
    NOT_READING,
    ROOM_RESET,
    POLICY_VIOLATION,
    RATE_LIMITED,
    READ_BUDGET,
    WEBHOOK_BACKLOG,
    BAD_REQUEST,
    UNAUTHORIZED,
    FORBIDDEN,
    ROOM_FULL,
    USER_CONNECTIONS,
    REMOVED,
    CLIENT_ID_TAKEN,
];

// ---- standard codes a client sees ----------------------------------------------------------------

/// A normal close: the client's own `close()` (the only code below 3000 a browser may send).
pub const CLIENT_CLOSED: CloseCode = CloseCode { code: 1000, reason: "client closed" };
/// The runtime is going away (a deploy, a restart); reconnect.
pub const GOING_AWAY: CloseCode = CloseCode { code: 1001, reason: "going away" };
/// The connection broke without a close frame (or never opened); reconnect.
pub const CONNECTION_LOST: CloseCode = CloseCode { code: 1006, reason: "connection lost" };
/// A frame over the runtime's own limit (32 MiB received); reconnect.
pub const MESSAGE_TOO_BIG: CloseCode = CloseCode { code: 1009, reason: "message too big" };

pub const STANDARD: &[CloseCode] = &[CLIENT_CLOSED, GOING_AWAY, CONNECTION_LOST, MESSAGE_TOO_BIG];

// ---- the client's own (never sent by the server) -------------------------------------------------

/// The code of every reason below.
pub const CLIENT_OWN: u16 = 4000;
/// No welcome within the connect timeout (after the token, if one was fetched); retried.
pub const CONNECT_TIMEOUT: CloseCode = CloseCode { code: CLIENT_OWN, reason: "connect timeout" };
/// No pong within the pong timeout after a ping; retried.
pub const HEARTBEAT_MISSED: CloseCode = CloseCode { code: CLIENT_OWN, reason: "heartbeat missed" };
/// A message (or an ack) jumped ahead of the sequence; retried, resuming before it.
pub const OUT_OF_ORDER: CloseCode = CloseCode { code: CLIENT_OWN, reason: "message out of order" };
/// The token function failed (threw, rejected, returned no string, or took longer than the
/// connect timeout); retried until it failed `max_token_failures` times in a row.
pub const TOKEN_FAILED: CloseCode = CloseCode { code: CLIENT_OWN, reason: "token fetch failed" };
/// The token function failed `max_token_failures` times in a row: stopped for good (`closed`).
pub const TOKEN_GAVE_UP: CloseCode = CloseCode { code: CLIENT_OWN, reason: "token fetch failed too many times in a row" };
/// The WebSocket could not be created (the constructor threw: a URL or subprotocol the browser
/// refuses, a blocked port); stopped for good (`closed`): the same request would fail again.
pub const SOCKET_REFUSED: CloseCode = CloseCode { code: CLIENT_OWN, reason: "the WebSocket could not be created" };

pub const CLIENT: &[CloseCode] = &[CONNECT_TIMEOUT, HEARTBEAT_MISSED, OUT_OF_ORDER, TOKEN_FAILED, TOKEN_GAVE_UP, SOCKET_REFUSED];

/// The most bytes a close reason may have (a close frame's payload is at most 125 bytes).
pub const REASON_MAX: usize = 123;

/// What a 4029 close's reason ends with when the server knows how long the client should wait
/// before it connects again: `; retryAfterMs=<n>` (docs/PROTOCOL.md, *Reconnecting*).
pub const RETRY_AFTER: &str = "; retryAfterMs=";

/// `reason` with the wait appended ([`RETRY_AFTER`]), the reason cut on a character boundary so
/// the whole fits [`REASON_MAX`] bytes.
pub fn with_retry_after(reason: &str, retry_after_ms: u64) -> alloc::string::String {
    let mut digits = alloc::string::String::new();
    crate::client::push_u64(&mut digits, retry_after_ms);
    let mut end = reason.len().min(REASON_MAX.saturating_sub(RETRY_AFTER.len() + digits.len()));
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut text = alloc::string::String::from(reason.get(..end).unwrap_or_default());
    text.push_str(RETRY_AFTER);
    text.push_str(&digits);
    text
}

/// The wait a close reason names ([`with_retry_after`]), if it names one.
pub fn retry_after_ms(reason: &str) -> Option<u64> {
    // (bytes, not a pattern search: the SDK's wasm reads this)
    let b = reason.as_bytes();
    let digits = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
    let (head, tail) = b.split_at_checked(b.len() - digits)?;
    let tag = RETRY_AFTER.as_bytes();
    // (compared by hand: a slice comparison links `memcmp` into the wasm)
    if !(1..=12).contains(&digits) || head.len() < tag.len() || !head.iter().rev().zip(tag.iter().rev()).all(|(a, b)| a == b) {
        return None;
    }
    Some(tail.iter().fold(0, |n, c| n * 10 + u64::from(c - b'0')))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn a_wait_rides_at_the_end_of_a_reason_that_still_fits_and_reads_back() {
        assert_eq!(with_retry_after("rate limited", 1_500), "rate limited; retryAfterMs=1500");
        assert_eq!(retry_after_ms("rate limited; retryAfterMs=1500"), Some(1_500));
        let long = "é".repeat(100);
        let cut = with_retry_after(&long, 60_000);
        assert!(cut.len() <= REASON_MAX && cut.ends_with("; retryAfterMs=60000"), "{cut}");
        assert_eq!(retry_after_ms(&cut), Some(60_000));
        for plain in ["rate limited", "retryAfterMs=5", "; retryAfterMs=", "; retryAfterMs=1x", "; retryAfterMs=9999999999999"] {
            assert_eq!(retry_after_ms(plain), None, "{plain}");
        }
    }

    #[test]
    fn retryable_and_final_ranges_do_not_overlap() {
        for c in [HEARTBEAT_TIMEOUT, TOKEN_EXPIRED, FRAME_TOO_LARGE, NOT_READING, ROOM_RESET, POLICY_VIOLATION, RATE_LIMITED, READ_BUDGET] {
            assert!(!CloseCode::is_final(c.code), "{} should be retryable", c.code);
        }
        for c in [BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, ROOM_FULL, USER_CONNECTIONS, REMOVED, CLIENT_ID_TAKEN] {
            assert!(CloseCode::is_final(c.code), "{} should be final", c.code);
        }
        for c in STANDARD.iter().chain(CLIENT) {
            assert!(!CloseCode::is_final(c.code), "{} is decided by the client, not by the range", c.code);
        }
    }

    #[test]
    fn the_server_never_sends_the_clients_own_code() {
        assert!(SERVER.iter().all(|c| c.code != CLIENT_OWN));
        assert!(CLIENT.iter().all(|c| c.code == CLIENT_OWN));
        // and every application code is one a browser may send or receive
        assert!(SERVER.iter().chain(CLIENT).all(|c| (4000..5000).contains(&c.code)));
        // a close frame carries at most 123 bytes of reason
        assert!(SERVER.iter().chain(STANDARD).chain(CLIENT).all(|c| c.reason.len() <= 123));
    }

    #[test]
    fn the_compact_reasons_are_the_tables_first_for_each_code() {
        let tables = || SERVER.iter().chain(STANDARD).chain(CLIENT);
        for c in tables() {
            let first = tables().find(|t| t.code == c.code).map(|t| t.reason);
            assert_eq!(Some(CloseCode::reason_for(c.code)), first, "code {}", c.code);
        }
        // every compact entry is a code of the tables, once
        assert_eq!(REASONS.split_terminator('\n').count(), REASON_CODES.len());
        for (i, code) in REASON_CODES.iter().enumerate() {
            assert!(tables().any(|t| t.code == *code) && !REASON_CODES[..i].contains(code), "{code}");
        }
    }

    #[test]
    fn a_close_without_a_reason_gets_the_tables() {
        assert_eq!(CloseCode::reason_for(4400), "bad request");
        assert_eq!(CloseCode::reason_for(4412), "client id belongs to another user");
        assert_eq!(CloseCode::reason_for(1006), "connection lost");
        assert_eq!(CloseCode::reason_for(4000), "connect timeout");
        assert_eq!(CloseCode::reason_for(4999), "");
    }

    /// The SDK's status documentation (sdk/types/index.d.ts) names every code of the table, so an
    /// app author sees the same list the server and the machine use.
    #[test]
    fn the_sdk_types_document_every_code() {
        let types = include_str!("../../sdk/types/index.d.ts");
        let doc = types.split("interface StatusEvent").nth(1).and_then(|s| s.split("code: number").next()).expect("StatusEvent.code's doc");
        // the comment's words, without its line breaks and leading stars
        let doc = doc.split_whitespace().filter(|w| *w != "*").collect::<std::vec::Vec<_>>().join(" ");
        for c in SERVER.iter().chain(STANDARD).chain(CLIENT) {
            assert!(doc.contains(&std::format!("{}", c.code)), "index.d.ts's StatusEvent.code does not name {}", c.code);
            assert!(doc.contains(c.reason), "index.d.ts's StatusEvent.code does not give {}'s reason {:?}", c.code, c.reason);
        }
    }
}
