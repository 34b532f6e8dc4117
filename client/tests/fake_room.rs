//! The client against a scripted fake room: an in-test WebSocket server that speaks
//! docs/PROTOCOL.md's frames, one step at a time, so each test says exactly what the room sends and
//! checks exactly what the client sends back.

// tungstenite's handshake callback returns its own (large) error response type.
#![allow(clippy::result_large_err)]

use futures_util::{SinkExt, StreamExt};
use roomcast_client::{Backoff, Client, ClientConfig, Event, JoinOptions, Options, State, Target};
use serde::Deserialize;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

/// Fails the test instead of hanging it.
async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(5), f).await.expect("timed out")
}

struct FakeRoom {
    url: String,
    conns: mpsc::UnboundedReceiver<Conn>,
}

/// One accepted connection: its query and offered subprotocols, and the socket.
struct Conn {
    query: String,
    protocols: String,
    ws: WebSocketStream<TcpStream>,
}

impl FakeRoom {
    async fn start() -> FakeRoom {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, conns) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut seen = None;
                    let ws = tokio_tungstenite::accept_hdr_async(stream, |req: &Request, mut res: Response| {
                        let protocols = req.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
                        seen = Some((req.uri().to_string(), protocols.to_owned()));
                        res.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("roomcast.v1"));
                        Ok(res)
                    })
                    .await;
                    if let (Ok(ws), Some((uri, protocols))) = (ws, seen) {
                        assert!(uri.starts_with("/rooms/chat:lobby/ws?") || uri.starts_with("/session/ws?"), "{uri}");
                        let query = uri.split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
                        let _ = tx.send(Conn { query, protocols, ws });
                    }
                });
            }
        });
        FakeRoom { url, conns }
    }

    async fn accept(&mut self) -> Conn {
        within(self.conns.recv()).await.expect("no connection")
    }
}

impl Conn {
    async fn send(&mut self, frames: &[Value]) {
        // Several frames go in one message, joined by line feeds, as the room coalesces them.
        let text = frames.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
        self.ws.send(WsMessage::Text(text.into())).await.unwrap();
    }

    /// The next frame the client sent.
    async fn recv(&mut self) -> Value {
        loop {
            match within(self.ws.next()).await {
                Some(Ok(WsMessage::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("socket ended: {other:?}"),
            }
        }
    }

    async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame { code: CloseCode::from(code), reason: reason.into() };
        let _ = self.ws.close(Some(frame)).await;
    }

    fn has(&self, pair: &str) -> bool {
        self.query.split('&').any(|p| p == pair)
    }
}

fn welcome(epoch: &str, seq: u64) -> Value {
    json!({"type":"welcome","epoch":epoch,"seq":seq,"clientId":"me","user":"alice","members":[],
           "heartbeat":{"interval":20000,"timeout":60000},
           "limits":{"maxFrameBytes":65536,"messagesPerSec":50,"messagesBurst":100,"bytesPerSec":262144,"messageIdMax":128,
                     "presenceMetaMax":1024,"broadcastsPerSec":100,"broadcastsBurst":200,"broadcastMaxBytes":16384}})
}

fn message(seq: u64, from: &str, data: Value) -> Value {
    json!({"type":"message","seq":seq,"from":from,"user":"bob","data":data,"ts":1_795_291_934_172u64})
}

/// Fast reconnects, so the tests do not wait out the SDK's half-second backoff.
fn opts(mut o: Options) -> Options {
    o.client_id = Some("me".to_owned());
    o.seed = Some(7);
    o.config = ClientConfig { backoff: Backoff { min_ms: 10, max_ms: 40, factor: 2.0, jitter: false }, ..ClientConfig::default() };
    o
}

/// The next event that is not a status or welcome.
async fn next_event(events: &mut roomcast_client::Events) -> Event {
    loop {
        match within(events.recv()).await.expect("events ended") {
            Event::Status(_) | Event::Welcome(_) => continue,
            e => return e,
        }
    }
}

async fn next_status(events: &mut roomcast_client::Events) -> roomcast_client::Status {
    loop {
        if let Event::Status(s) = within(events.recv()).await.expect("events ended") {
            return s;
        }
    }
}

#[derive(Debug, Deserialize, PartialEq)]
struct Chat {
    text: String,
}

#[tokio::test]
async fn publish_returns_the_acks_seq_and_messages_arrive_typed_in_seq_order() {
    let mut fake = FakeRoom::start().await;
    let (room, mut events) = Client::connect(&fake.url, "chat:lobby", opts(Options::token("tok"))).await.unwrap();
    let mut c = fake.accept().await;
    assert_eq!(c.protocols, "roomcast.v1, bearer.tok");
    assert!(c.has("cid=me") && c.has("errors=close"), "{}", c.query);
    assert!(!c.query.contains("since="), "a first connection has no resume point: {}", c.query);
    c.send(&[welcome("e1", 5)]).await;

    let publisher = room.clone();
    let publish = tokio::spawn(async move { publisher.publish(&json!({"text": "hi"})).await });
    let f = c.recv().await;
    assert_eq!((f["type"].as_str(), &f["data"]), (Some("publish"), &json!({"text": "hi"})));
    let id = f["id"].as_str().unwrap().to_owned();
    // Another member's message, this client's ack, then another message, in one coalesced message.
    c.send(&[message(6, "other", json!({"text": "a"})), json!({"type":"ack","id":id,"seq":7}), message(8, "other", json!({"text": "b"}))])
        .await;
    assert_eq!(within(publish).await.unwrap().unwrap(), 7);

    let mut got = Vec::new();
    for _ in 0..2 {
        match next_event(&mut events).await {
            Event::Message(m) => got.push((m.seq, m.data_as::<Chat>().unwrap())),
            e => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(got, [(6, Chat { text: "a".into() }), (8, Chat { text: "b".into() })]);
    assert_eq!(room.last_seq().await, (8, Some("e1".to_owned())));
}

#[tokio::test]
async fn a_message_many_times_the_read_buffer_arrives_whole_among_small_ones() {
    // The client reads at most 8 KiB per read (driver::READ_BUFFER_BYTES); a frame of 200 KiB and
    // a coalesced message around it must still arrive whole and in order.
    let mut fake = FakeRoom::start().await;
    let (_room, mut events) = Client::connect(&fake.url, "chat:lobby", opts(Options::token("tok"))).await.unwrap();
    let mut c = fake.accept().await;
    c.send(&[welcome("e1", 0)]).await;
    let big: String = (0..200 * 1024).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    c.send(&[
        message(1, "other", json!({"text": "a"})),
        message(2, "other", json!({"text": big})),
        message(3, "other", json!({"text": "c"})),
    ])
    .await;
    c.send(&[message(4, "other", json!({"text": "d"}))]).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        match next_event(&mut events).await {
            Event::Message(m) => got.push((m.seq, m.data_as::<Chat>().unwrap().text)),
            e => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(got, [(1, "a".to_owned()), (2, big), (3, "c".to_owned()), (4, "d".to_owned())]);
}

#[tokio::test]
async fn a_dropped_socket_resumes_and_the_unacked_publish_goes_again_with_its_id() {
    let mut fake = FakeRoom::start().await;
    let (room, mut events) = Client::connect(&fake.url, "chat:lobby", opts(Options::default())).await.unwrap();
    let mut c = fake.accept().await;
    assert_eq!(c.protocols, "roomcast.v1");
    c.send(&[welcome("e1", 0), message(1, "other", json!(1))]).await;
    assert!(matches!(next_event(&mut events).await, Event::Message(m) if m.seq == 1));

    let publisher = room.clone();
    let publish = tokio::spawn(async move { publisher.publish(&json!("once")).await });
    let first = c.recv().await;
    c.close(1012, "restart").await;
    loop {
        let s = next_status(&mut events).await;
        if s.state == State::Reconnecting {
            assert_eq!((s.code, s.reason.as_str()), (1012, "restart"));
            break;
        }
    }

    let mut c = fake.accept().await;
    assert!(c.has("since=1") && c.has("epoch=e1"), "resumes from what it saw: {}", c.query);
    c.send(&[json!({"type":"welcome","epoch":"e1","seq":1,"clientId":"me","user":"alice","resume":{"status":"recovered","replayed":0}})])
        .await;
    let again = c.recv().await;
    assert_eq!(again, first, "the same frame, id included, so the room stores it once");
    c.send(&[json!({"type":"ack","id":again["id"],"seq":2})]).await;
    assert_eq!(within(publish).await.unwrap().unwrap(), 2);
}

#[tokio::test]
async fn a_seq_out_of_order_reconnects_and_a_room_that_cannot_replay_is_a_gap() {
    let mut fake = FakeRoom::start().await;
    let (_room, mut events) = Client::connect(&fake.url, "chat:lobby", opts(Options::default())).await.unwrap();
    let mut c = fake.accept().await;
    c.send(&[welcome("e1", 3), message(5, "other", json!("jumped"))]).await;
    match next_event(&mut events).await {
        Event::Error(e) => assert_eq!(e.code, "out_of_order"),
        e => panic!("unexpected {e:?}"),
    }
    let mut c2 = fake.accept().await;
    assert!(c2.has("since=3") && c2.has("epoch=e1"), "{}", c2.query);
    drop(c);
    let mut w = welcome("e1", 10);
    w["resume"] = json!({"status":"not_recovered","reason":"retention","since":3});
    c2.send(&[w, message(11, "other", json!("live"))]).await;
    match next_event(&mut events).await {
        Event::Gap { reason, since } => assert_eq!((reason.as_str(), since), ("retention", 3)),
        e => panic!("unexpected {e:?}"),
    }
    assert!(matches!(next_event(&mut events).await, Event::Message(m) if m.seq == 11 && m.data == json!("live")));
}

#[tokio::test]
async fn the_token_function_runs_per_attempt_and_calls_settle_with_their_answers() {
    let mut fake = FakeRoom::start().await;
    let fetches = Arc::new(AtomicU32::new(0));
    let counter = fetches.clone();
    let o = Options::token_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(format!("t{n}")) }
    });
    let (room, mut events) = Client::connect(&fake.url, "chat:lobby", opts(o)).await.unwrap();
    let mut c = fake.accept().await;
    assert_eq!(c.protocols, "roomcast.v1, bearer.t1");
    c.send(&[welcome("e1", 2)]).await;
    loop {
        if next_status(&mut events).await.state == State::Open {
            break;
        }
    }

    // history: the page the room answered with
    let r = room.clone();
    let history = tokio::spawn(async move { r.history(Some(2), None, None).await });
    let f = c.recv().await;
    assert_eq!((f["type"].as_str(), f["limit"].as_u64()), (Some("history"), Some(2)));
    c.send(&[json!({"type":"history","id":f["id"],"messages":[message(1, "x", json!(1)), message(2, "y", json!(2))],"more":true})]).await;
    let page = within(history).await.unwrap().unwrap();
    assert_eq!((page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), page.more), (vec![1, 2], true));

    // a refusal settles the call with the room's code and message
    let r = room.clone();
    let publish = tokio::spawn(async move { r.publish(&json!({})).await });
    let f = c.recv().await;
    c.send(&[json!({"type":"error","id":f["id"],"code":"forbidden","message":"no publish right"})]).await;
    let err = within(publish).await.unwrap().unwrap_err();
    assert_eq!((err.code(), err.to_string().as_str()), (Some("forbidden"), "forbidden: no publish right"));

    // a direct message says how many got it; a read mark is echoed at once
    let r = room.clone();
    let direct = tokio::spawn(async move { r.send_to(&Target::User("bob".into()), &json!("psst")).await });
    let f = c.recv().await;
    assert_eq!((&f["type"], &f["to"], &f["data"]), (&json!("direct"), &json!({"user":"bob"}), &json!("psst")));
    c.send(&[json!({"type":"ack","id":f["id"],"delivered":2}), json!({"type":"mark","id":"0a1b2c3d4e5f6071"})]).await;
    assert_eq!(within(direct).await.unwrap().unwrap(), Some(2));
    assert_eq!(c.recv().await, json!({"type":"read","id":"0a1b2c3d4e5f6071"}));

    // terminal input both ways: sent to the agent, and received as an input event
    let r = room.clone();
    let input = tokio::spawn(async move { r.send_input(&Target::ClientId("agent".into()), &json!({"keys": "ls\r"})).await });
    let f = c.recv().await;
    assert_eq!((&f["type"], &f["to"], &f["data"]), (&json!("input"), &json!({"clientId":"agent"}), &json!({"keys":"ls\r"})));
    c.send(&[json!({"type":"ack","id":f["id"]}), json!({"type":"input","from":"v","user":"val","data":{"resize":[30,100]},"ts":1})]).await;
    assert_eq!(within(input).await.unwrap().unwrap(), None);
    match next_event(&mut events).await {
        Event::Input(b) => assert_eq!((b.from.as_str(), b.data), ("v", json!({"resize":[30,100]}))),
        e => panic!("unexpected {e:?}"),
    }

    // a new attempt fetches a new token
    c.close(1001, "going away").await;
    let c2 = fake.accept().await;
    assert_eq!(c2.protocols, "roomcast.v1, bearer.t2");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_final_close_code_closes_for_good_and_rejects_what_is_pending() {
    let mut fake = FakeRoom::start().await;
    let (room, mut events) = Client::connect(&fake.url, "chat:lobby", opts(Options::default())).await.unwrap();
    let c = fake.accept().await;
    // Not open yet: the publish waits in the queue.
    let r = room.clone();
    let publish = tokio::spawn(async move { r.publish(&json!(1)).await });
    c.close(4403, "this token may not subscribe").await;
    let s = loop {
        let s = next_status(&mut events).await;
        if s.state == State::Closed {
            break s;
        }
    };
    assert_eq!((s.code, s.reason.as_str()), (4403, "this token may not subscribe"));
    assert_eq!(within(publish).await.unwrap().unwrap_err().code(), Some("closed"));
    assert!(within(events.recv()).await.is_none(), "the event stream ends");
    assert_eq!(room.broadcast(&json!(1)).await.unwrap_err().code(), Some("closed"));
}

#[tokio::test]
async fn calls_that_need_the_open_connection_fail_offline_and_bad_urls_are_refused() {
    let mut fake = FakeRoom::start().await;
    let (room, _events) = Client::connect(&fake.url, "chat:lobby", opts(Options::default())).await.unwrap();
    let _c = fake.accept().await;
    assert_eq!(room.broadcast(&json!(1)).await.unwrap_err().code(), Some("offline"));
    assert!(Client::connect("ftp://x", "chat:lobby", Options::default()).await.is_err());
    assert!(Client::connect(&fake.url, "bad/room", Options::default()).await.is_err());
}

#[tokio::test]
async fn the_open_connections_token_is_refreshed_before_it_expires() {
    let mut fake = FakeRoom::start().await;
    let fetches = Arc::new(AtomicU32::new(0));
    let counter = fetches.clone();
    let o = Options::token_fn(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        async move { Ok(format!("t{n}")) }
    });
    let (_room, _events) = Client::connect(&fake.url, "chat:lobby", opts(o)).await.unwrap();
    let mut c = fake.accept().await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    // Expires in 1.5 s: the machine refreshes a fifth of that early, on this socket.
    let mut w = welcome("e1", 0);
    w["expires"] = json!(now + 1_500);
    c.send(&[w]).await;
    assert_eq!(c.recv().await, json!({"type":"refresh","token":"t2"}));
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

fn joined(room: &str, epoch: &str, seq: u64) -> Value {
    let mut w = welcome(epoch, seq);
    w["type"] = json!("joined");
    w["room"] = json!(room);
    w
}

fn in_room(room: &str, mut frame: Value) -> Value {
    frame["room"] = json!(room);
    frame
}

#[tokio::test]
async fn a_session_carries_many_rooms_each_resuming_from_its_own_seq() {
    let mut fake = FakeRoom::start().await;
    let (session, _session_events) = Client::session(&fake.url, opts(Options::token("tok"))).await.unwrap();
    let (a, mut a_events) = session.join("chat:a", JoinOptions { rewind: Some(2), echo: false }).await.unwrap();
    let (_b, mut b_events) = session.join("chat:b", JoinOptions::default()).await.unwrap();
    let mut c = fake.accept().await;
    assert_eq!(c.protocols, "roomcast.v1, bearer.tok");
    assert!(c.has("cid=me") && !c.query.contains("since="), "{}", c.query);
    // Nothing goes before the session frame; then both joins.
    c.send(&[json!({"type":"session","user":"alice","clientId":"me","maxRooms":200})]).await;
    let mut joins = vec![c.recv().await, c.recv().await];
    joins.sort_by_key(|j| j["room"].to_string());
    assert_eq!(
        joins,
        [json!({"type":"join","room":"chat:a","rewind":2,"echo":false}), json!({"type":"join","room":"chat:b","echo":false})]
    );

    let mut ja = joined("chat:a", "e1", 5);
    ja["rewind"] = json!({"replayed": 2});
    c.send(&[ja, in_room("chat:a", message(4, "x", json!("a4"))), in_room("chat:a", message(5, "x", json!("a5")))]).await;
    c.send(&[joined("chat:b", "e2", 0), in_room("chat:b", message(1, "y", json!("b1")))]).await;
    for want in [4, 5] {
        assert!(matches!(next_event(&mut a_events).await, Event::Message(m) if m.seq == want));
    }
    assert!(matches!(next_event(&mut b_events).await, Event::Message(m) if m.seq == 1 && m.data == json!("b1")));

    // A call of one room goes out with its name, and its answer settles it.
    let r = a.clone();
    let publish = tokio::spawn(async move { r.publish(&json!("hi")).await });
    let f = c.recv().await;
    assert_eq!((&f["room"], &f["type"], &f["data"]), (&json!("chat:a"), &json!("publish"), &json!("hi")));
    c.send(&[in_room("chat:a", json!({"type":"ack","id":f["id"],"seq":6})), in_room("chat:a", message(6, "me", json!("hi")))]).await;
    assert_eq!(within(publish).await.unwrap().unwrap(), 6);

    // The socket drops: one reconnect, and each room joins again from its own point.
    c.close(1012, "restart").await;
    let mut c = fake.accept().await;
    c.send(&[json!({"type":"session","user":"alice","clientId":"me","maxRooms":200})]).await;
    let mut joins = vec![c.recv().await, c.recv().await];
    joins.sort_by_key(|j| j["room"].to_string());
    assert_eq!(
        joins,
        [
            json!({"type":"join","room":"chat:a","epoch":"e1","since":6,"echo":false}),
            json!({"type":"join","room":"chat:b","epoch":"e2","since":1,"echo":false})
        ]
    );

    // A room refused for good ends alone: its stream closes, the session and the other room stay.
    c.send(&[json!({"type":"left","room":"chat:b","code":4403,"reason":"no longer granted"})]).await;
    let s = loop {
        let s = next_status(&mut b_events).await;
        if s.state == State::Closed {
            break s;
        }
    };
    assert_eq!((s.code, s.reason.as_str()), (4403, "no longer granted"));
    assert!(within(b_events.recv()).await.is_none());
    let mut w = joined("chat:a", "e1", 7);
    w["resume"] = json!({"status":"recovered","replayed":1});
    c.send(&[w, in_room("chat:a", message(7, "x", json!("a7")))]).await;
    assert!(matches!(next_event(&mut a_events).await, Event::Message(m) if m.seq == 7));
}
