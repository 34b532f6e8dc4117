//! What docs/PROTOCOL.md tells the writer of a client (issue #24, "for clients written by
//! others"), shown on the real machines through the crate's public API: the reconnect backoff
//! the SDK uses and what a 4029 does to it (*Reconnecting*), what a `refresh` without a token
//! gets (*refresh*), and what a token brings in an anonymous room (*Connecting*). Each test is
//! named where the document says it.
#![cfg(feature = "server")]

use roomcast_protocol::api::{admit, authorize_api, AuthConfig, Upgrade};
use roomcast_protocol::client::{Client, ClientConfig, Output, State, Status, Welcome};
use roomcast_protocol::close;
use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::room::{Action, ConnId, Identity, Room, TokenCheck};
use roomcast_protocol::store::MemoryStore;
use roomcast_protocol::token::{self, Claims, Right, Rights};
use serde_json::Value;

fn statuses(c: &mut Client) -> Vec<Status> {
    std::iter::from_fn(|| c.poll_output()).filter_map(|o| if let Output::Status(s) = o { Some(s) } else { None }).collect()
}

/// The close that ends an attempt: `(attempt, delay)` of the reconnecting status it causes, and
/// the time the next attempt starts (the client is then connecting again).
fn closed_with(c: &mut Client, code: u16, now: u64) -> (u32, u64, u64) {
    c.handle_close(code, "", now);
    let s = statuses(c).pop().expect("a status");
    assert_eq!((s.state, s.code), (State::Reconnecting, code), "{code} is retryable");
    let at = c.poll_timeout().expect("a reconnect is scheduled");
    assert_eq!(at, now + s.delay_ms);
    c.handle_timeout(at);
    statuses(c);
    (s.attempt, s.delay_ms, at)
}

/// The SDK's defaults: attempt n waits uniformly in [500 ms, min(30 s, 500 ms × 2^n)], whatever
/// the retryable close code; the count grows while connections fail before they stayed up 5 s,
/// and starts over after one that did.
#[test]
fn reconnect_backoff_with_the_sdks_defaults() {
    let config = ClientConfig::default();
    assert_eq!((config.backoff.min_ms, config.backoff.max_ms, config.backoff.factor, config.backoff.jitter), (500, 30_000, 2.0, true));
    assert_eq!(config.min_uptime_ms, 5_000);
    let windows: Vec<u64> = (1..=8).map(|n| config.backoff.cap(n)).collect();
    assert_eq!(windows, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);

    // Many clients cut off at once (a deploy: 1001) spread their attempts over each window.
    let mut first = Vec::new();
    for seed in 0..300 {
        let mut c = Client::new(ClientConfig::default(), seed, false, 0);
        statuses(&mut c);
        let mut now = 0;
        for attempt in 1..=8u32 {
            let (n, delay, at) = closed_with(&mut c, 1001, now);
            assert_eq!(n, attempt);
            assert!((500..=windows[attempt as usize - 1]).contains(&delay), "attempt {attempt}: {delay} ms");
            if attempt == 1 {
                first.push(delay);
            }
            now = at;
        }
    }
    assert!(first.iter().any(|d| *d < 600) && first.iter().any(|d| *d > 900), "the first window is used whole");

    // 4029 is retryable like any code below 4400, with nothing of its own: a room that refuses
    // the connection before its welcome (read budget in debt) makes the window grow…
    let mut c = Client::new(ClientConfig::default(), 7, false, 0);
    statuses(&mut c);
    let mut now = 0;
    for attempt in 1..=3 {
        let (n, _, at) = closed_with(&mut c, close::READ_BUDGET.code, now);
        assert_eq!(n, attempt);
        now = at;
    }
    // …and so does one closed for too many errors soon after it opened…
    c.handle_welcome_frame(Welcome { epoch: "e", ..Welcome::default() }, now);
    statuses(&mut c);
    assert_eq!(c.state(), State::Open);
    let (n, _, at) = closed_with(&mut c, close::POLICY_VIOLATION.code, now + 4_999);
    assert_eq!(n, 4);
    // …while a connection that stayed up 5 s starts the count over.
    c.handle_welcome_frame(Welcome { epoch: "e", ..Welcome::default() }, at);
    statuses(&mut c);
    let (n, delay, _) = closed_with(&mut c, close::POLICY_VIOLATION.code, at + 5_000);
    assert_eq!(n, 1);
    assert!((500..=1_000).contains(&delay));
    // Final codes (4400-4499) are not retried at all.
    c.handle_close(4409, "room full", at + 6_000);
    assert_eq!(statuses(&mut c).pop().map(|s| s.state), Some(State::Closed));
    assert_eq!(c.poll_timeout(), None);
}

const SECRET: &[u8] = b"room-secret";

fn mint(sub: &str, rooms: &[(&str, &[Right])], exp: u64) -> String {
    let claims = Claims {
        sub: sub.into(),
        exp,
        nbf: None,
        iat: None,
        rooms: rooms.iter().map(|(p, r)| (p.to_string(), r.to_vec())).collect(),
        meta: None,
    };
    token::mint(&claims, SECRET).unwrap()
}

/// A room with one connection of `alice` (token expiring in an hour), holding at most
/// `max_strikes` strikes; the frames it was sent, and whether it was closed (and how).
struct OneConnection {
    room: Room,
    store: MemoryStore,
    conn: ConnId,
    now: u64,
    frames: Vec<Value>,
    closed: Option<u16>,
}

impl OneConnection {
    fn new(max_strikes: u32) -> OneConnection {
        let mut store = MemoryStore::default();
        let now = 1_800_000_000_000;
        let mut room = Room::load(RoomConfig { max_strikes, ..RoomConfig::default() }, &mut store, "e", now, []).unwrap();
        room.set_token_check(TokenCheck { room: "chat:x".into(), secret: SECRET.to_vec(), previous: Vec::new() });
        let identity = Identity {
            client_id: "c1".into(),
            user: "alice".into(),
            meta: None,
            echo: false,
            rights: Rights::ALL,
            expires: Some(now + 3_600_000),
        };
        let conn = room.handle_open(identity, None, now, &mut store).unwrap();
        let mut c = OneConnection { room, store, conn, now, frames: Vec::new(), closed: None };
        c.drain();
        c.frames.clear(); // the welcome
        c
    }

    fn drain(&mut self) {
        while let Some(action) = self.room.poll_action() {
            match action {
                Action::Send { text, .. } => self.frames.extend(text.split('\n').map(|l| serde_json::from_str::<Value>(l).unwrap())),
                Action::Close { code, .. } => self.closed = Some(code.code),
            }
        }
    }

    /// Sends `text`; the frame it got back, if any.
    fn send(&mut self, text: &str) -> Option<Value> {
        self.now += 1;
        self.frames.clear();
        self.room.handle_text(self.conn, text, self.now, &mut self.store);
        self.drain();
        self.frames.pop()
    }
}

/// A `refresh` without `token` (or with one that is not a string) does not decode: a `bad_frame`
/// error, its id echoed by the general rule when the frame has a string `id`, and a strike like
/// any frame that does not decode. A refresh whose token is refused (`unauthorized`,
/// `forbidden`) is no strike, however many come.
#[test]
fn a_refresh_without_a_token_is_a_bad_frame_and_a_strike() {
    let mut c = OneConnection::new(3);
    let answer = c.send(r#"{"type":"refresh"}"#).unwrap();
    assert_eq!((answer["type"].as_str(), answer["code"].as_str(), answer.get("id")), (Some("error"), Some("bad_frame"), None));
    let answer = c.send(r#"{"type":"refresh","id":"r-1","token":5}"#).unwrap();
    assert_eq!((answer["code"].as_str(), answer["id"].as_str()), (Some("bad_frame"), Some("r-1")));
    // A refused token, ten times over: an error each time and no strike (each one that passes
    // the rate check even forgives one).
    let exp = c.now / 1000 + 3_600;
    for refused in [
        "garbage".to_owned(),
        mint("mallory", &[("chat:x", &[Right::Subscribe])], exp),
        mint("alice", &[("other", &[Right::Subscribe])], exp),
    ] {
        for _ in 0..10 {
            let answer = c.send(&format!(r#"{{"type":"refresh","token":"{refused}"}}"#)).unwrap();
            assert!(["unauthorized", "forbidden"].contains(&answer["code"].as_str().unwrap()), "{answer}");
            assert_eq!(answer.get("id"), None);
        }
    }
    assert_eq!(c.closed, None, "refused refreshes are not strikes");
    // Three token-less refreshes in a row reach MAX_STRIKES (3 here): closed with 4029.
    c.send(r#"{"type":"refresh"}"#);
    c.send(r#"{"type":"refresh"}"#);
    assert_eq!(c.closed, None);
    c.send(r#"{"type":"refresh"}"#);
    assert_eq!(c.closed, Some(close::POLICY_VIOLATION.code));
    assert_eq!(close::POLICY_VIOLATION.code, 4029);
    // And an accepted one, for contrast: the new expiry, in ms.
    let mut c = OneConnection::new(3);
    let answer = c.send(&format!(r#"{{"type":"refresh","token":"{}"}}"#, mint("alice", &[("chat:*", &[Right::Subscribe])], exp))).unwrap();
    assert_eq!(answer, serde_json::json!({"type": "refreshed", "expires": exp * 1000}));
}

/// In a room that `ANONYMOUS_ROOMS` opens, a token is not ignored: it is checked as anywhere
/// else, and the connection is the token's user with the token's rights, meta and expiry (the
/// `user` and `meta` query keys are ignored). A bad token is refused (401), never taken for no
/// token, and a token without `subscribe` for the room is 403. Without a token the connection is
/// `anon:<name>` with every right and no expiry. The HTTP API has no anonymous rooms.
#[test]
fn a_token_in_an_anonymous_room_is_the_tokens_user() {
    let now_ms = 1_800_000_000_000;
    let secret = std::str::from_utf8(SECRET).unwrap();
    let config = AuthConfig { secret, api_key: "key", anonymous_rooms: "public:*", ..AuthConfig::default() };
    let connect =
        |query: &str, protocols: &str| admit(&Upgrade { room: "public:lobby", query, protocols }, &config, now_ms, || "fresh".into());
    let query = "cid=c1&user=bob&meta=%7B%22n%22%3A1%7D";

    let anonymous = connect(query, "roomcast.v1").unwrap();
    assert_eq!((anonymous.user.as_str(), anonymous.rights, anonymous.exp), ("anon:bob", Rights::ALL, None));
    assert_eq!(anonymous.meta.unwrap().get(), r#"{"n":1}"#);

    let exp = now_ms / 1000 + 600;
    let t = mint("alice", &[("public:*", &[Right::Subscribe])], exp);
    let with_token = connect(query, &format!("roomcast.v1, bearer.{t}")).unwrap();
    assert_eq!(with_token.user, "alice", "the token's user, not anon:bob");
    assert_eq!(
        with_token.rights,
        Rights { subscribe: true, publish: false, presence: false, input: false },
        "the token's rights, not every right"
    );
    assert_eq!(with_token.exp, Some(exp * 1000), "it expires with the token (4002)");
    assert!(with_token.meta.is_none(), "the token's meta (none here), not the query's");

    let forged =
        token::mint(&Claims { sub: "alice".into(), exp, nbf: None, iat: None, rooms: Default::default(), meta: None }, b"other").unwrap();
    assert_eq!(connect(query, &format!("roomcast.v1, bearer.{forged}")).unwrap_err().status(), 401);
    let expired = mint("alice", &[("public:*", &[Right::Subscribe])], now_ms / 1000 - 60);
    assert_eq!(connect(query, &format!("roomcast.v1, bearer.{expired}")).unwrap_err().status(), 401);
    let elsewhere = mint("alice", &[("chat:*", &[Right::Subscribe])], exp);
    assert_eq!(connect(query, &format!("roomcast.v1, bearer.{elsewhere}")).unwrap_err().status(), 403);

    let http = |header: Option<&str>| {
        authorize_api(header, &config, "public:lobby", roomcast_protocol::api::route::Access::KeyOrRight(Right::Subscribe), now_ms)
    };
    assert_eq!(http(None).unwrap_err().status(), 401, "no anonymous HTTP API");
    assert_eq!(http(Some(&format!("Bearer {t}"))).unwrap().user, "alice");
}
