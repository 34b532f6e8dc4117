//! The client machine with a simulated clock and a seeded generator: every test is
//! deterministic and runs in microseconds.

use super::*;
// The crate is `no_std` without its `server` feature; the tests may use std either way.
extern crate std;
use std::{format, string::String, vec::Vec};

pub(super) fn config() -> ClientConfig {
    ClientConfig {
        backoff: Backoff { min_ms: 100, max_ms: 2_000, factor: 2.0, jitter: true },
        min_uptime_ms: 1_000,
        connect_timeout_ms: 500,
        ping_interval_ms: 1_000,
        pong_timeout_ms: 300,
        visible_ping_interval_ms: 500,
        check_timeout_ms: 200,
        queue_max: 3,
        max_token_failures: 5,
        relayed: false,
    }
}

/// A token as the adapter hands it over (a JSON string), and the refresh frame that carries it.
pub(super) const TOKEN: &str = r#""a.b.c""#;
const REFRESH: &str = r#"{"type":"refresh","token":"a.b.c"}"#;

pub(super) fn drain(c: &mut Client) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

pub(super) fn statuses(out: &[Output]) -> Vec<Status> {
    out.iter().filter_map(|o| if let Output::Status(s) = o { Some(s.clone()) } else { None }).collect()
}

pub(super) fn sends(out: &[Output]) -> Vec<String> {
    out.iter().filter_map(|o| if let Output::Send(t) = o { Some(t.clone()) } else { None }).collect()
}

/// Runs the timers up to `until`, collecting outputs.
pub(super) fn run_until(c: &mut Client, now: &mut u64, until: u64) -> Vec<Output> {
    let mut out = Vec::new();
    while let Some(t) = c.poll_timeout() {
        if t > until {
            break;
        }
        *now = t;
        c.handle_timeout(t);
        out.extend(drain(c));
    }
    *now = until;
    out
}

/// Fires the pending reconnect timer once, returning its outputs (the new Connect).
pub(super) fn reconnect(c: &mut Client, now: &mut u64) -> Vec<Output> {
    *now = c.poll_timeout().expect("a reconnect is scheduled");
    c.handle_timeout(*now);
    drain(c)
}

/// A welcome without heartbeat or limits (the machine keeps its own settings).
fn w(epoch: &str, seq: u64, resumed: Option<Resumed>, expires: Option<u64>) -> Welcome<'_> {
    Welcome { epoch, seq, resumed, expires, ..Welcome::default() }
}

pub(super) fn open(c: &mut Client, now: u64, seq: u64) -> Vec<Output> {
    c.handle_welcome_frame(w("e1", seq, None, None), now);
    drain(c)
}

#[test]
fn connects_then_opens_on_welcome() {
    let mut c = Client::new(config(), 1, false, 0);
    let out = drain(&mut c);
    assert_eq!(out[0], Output::Status(Status { state: State::Connecting, attempt: 0, delay_ms: 0, code: 0, reason: String::new() }));
    assert_eq!(out[1], Output::Connect { resume: None });
    let out = open(&mut c, 10, 7);
    assert_eq!(statuses(&out)[0].state, State::Open);
    assert_eq!(c.last_seq(), 7);
}

#[test]
fn delays_stay_within_full_jitter_bounds_and_grow_to_the_cap() {
    let mut c = Client::new(config(), 42, false, 0);
    drain(&mut c);
    let mut now = 0;
    let mut seen = Vec::new();
    for _ in 0..10 {
        c.handle_close(1006, "lost", now);
        let s = statuses(&drain(&mut c)).pop().unwrap();
        assert_eq!(s.state, State::Reconnecting);
        assert!(s.delay_ms <= config().backoff.cap(s.attempt), "{s:?}");
        assert!(s.delay_ms <= config().backoff.max_ms);
        seen.push((s.attempt, s.delay_ms));
        let at = c.poll_timeout().unwrap();
        assert_eq!(at, now + s.delay_ms);
        now = at;
        c.handle_timeout(now);
        assert!(drain(&mut c).contains(&Output::Connect { resume: None }));
    }
    assert_eq!(seen.iter().map(|(a, _)| *a).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
    // the same seed replays the same delays
    let mut again = Client::new(config(), 42, false, 0);
    drain(&mut again);
    again.handle_close(1006, "lost", 0);
    assert_eq!(statuses(&drain(&mut again))[0].delay_ms, seen[0].1);
}

#[test]
fn the_attempt_count_resets_only_after_the_minimum_uptime() {
    let mut c = Client::new(config(), 3, false, 0);
    drain(&mut c);
    let mut now = 0;
    // up and down quickly, three times: attempts keep growing
    for expected in 1..=3 {
        open(&mut c, now, 0);
        now += 100;
        c.handle_close(1006, "dropped", now);
        assert_eq!(statuses(&drain(&mut c))[0].attempt, expected);
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        drain(&mut c);
    }
    // a connection that stays up past the minimum uptime resets the count
    open(&mut c, now, 0);
    now += 1_000;
    c.handle_close(1006, "dropped", now);
    assert_eq!(statuses(&drain(&mut c))[0].attempt, 1);
}

#[test]
fn a_missing_pong_closes_the_socket_and_reconnects() {
    let mut c = Client::new(config(), 5, false, 0);
    drain(&mut c);
    let mut now = 0;
    open(&mut c, now, 0);
    // one healthy ping round trip
    let out = run_until(&mut c, &mut now, 1_000);
    assert_eq!(sends(&out), [PING]);
    c.handle_pong();
    // the next ping goes unanswered
    let out = run_until(&mut c, &mut now, 2_000);
    assert_eq!(sends(&out), [PING]);
    let out = run_until(&mut c, &mut now, 2_300);
    assert!(out.contains(&Output::CloseSocket(CloseCode { code: 1000, reason: "heartbeat missed" })), "{out:?}");
    let s = statuses(&out);
    // the client's own code (4000), not the server's 4001 (which says the *server* heard nothing)
    assert_eq!((s[0].state, s[0].code, s[0].reason.as_str()), (State::Reconnecting, 4000, "heartbeat missed"));
    // detected within interval + timeout of the last pong
    assert!(now <= 1_000 + config().ping_interval_ms + config().pong_timeout_ms);
    let out = run_until(&mut c, &mut now, 5_000);
    assert!(out.contains(&Output::Connect { resume: Some(("e1".into(), 0)) }));
}

#[test]
fn resume_sends_the_last_seq_and_drops_replayed_duplicates() {
    let mut c = Client::new(config(), 9, false, 0);
    drain(&mut c);
    open(&mut c, 0, 10);
    assert!(c.handle_message(11, 0));
    assert!(c.handle_message(12, 0));
    c.handle_close(1006, "lost", 50);
    drain(&mut c);
    let mut now = 50;
    let out = reconnect(&mut c, &mut now);
    assert!(out.contains(&Output::Connect { resume: Some(("e1".into(), 12)) }));
    c.handle_welcome_frame(w("e1", 14, Some(Resumed::Recovered), None), now);
    // an overlapping replay: 12 again, then 13, 14
    let delivered: Vec<u64> = [12, 13, 14, 13].into_iter().filter(|s| c.handle_message(*s, now)).collect();
    assert_eq!(delivered, [13, 14]);
    assert_eq!(c.last_seq(), 14);
}

#[test]
fn a_resume_the_server_cannot_serve_is_reported_as_a_gap() {
    let mut c = Client::new(config(), 9, false, 0);
    drain(&mut c);
    open(&mut c, 0, 10);
    c.handle_close(1006, "lost", 0);
    drain(&mut c);
    let mut now = 0;
    reconnect(&mut c, &mut now);
    c.handle_welcome_frame(w("e1", 500, Some(Resumed::NotRecovered("retention".into())), None), now);
    let out = drain(&mut c);
    assert_eq!(out[0], Output::Gap { reason: "retention".into(), since: 10 });
    assert_eq!(c.last_seq(), 500);
}

#[test]
fn the_queue_is_bounded_and_flushed_in_order_with_the_same_ids_after_a_reconnect() {
    let mut c = Client::new(config(), 11, false, 0);
    drain(&mut c);
    let ids: Vec<CallId> = ["1", "2", "3"].iter().map(|d| c.publish(d).unwrap()).collect();
    assert_eq!(c.publish("4"), Err(QueueError::Full), "the newest publish is refused");
    assert!(sends(&drain(&mut c)).is_empty(), "nothing is sent before the welcome");
    let out = open(&mut c, 0, 0);
    let sent = sends(&out);
    assert_eq!(sent.len(), 3);
    for (text, (id, data)) in sent.iter().zip(ids.iter().zip(["1", "2", "3"])) {
        let id = c.wire_id(*id);
        assert_eq!(text, &format!(r#"{{"type":"publish","id":"{id}","data":{data}}}"#));
    }
    c.handle_ack(&c.wire_id(ids[0]), Some(1), 0);
    // the connection drops before 2 and 3 are acknowledged: they go again, same ids
    c.handle_close(1006, "lost", 10);
    drain(&mut c);
    let mut now = 10;
    reconnect(&mut c, &mut now);
    let again = sends(&open(&mut c, now, 1));
    assert_eq!(again, sent[1..]);
    c.handle_ack(&c.wire_id(ids[1]), Some(2), 0);
    c.handle_error(&c.wire_id(ids[2]), "forbidden");
    assert_eq!(c.queued(), 0);
    let out = drain(&mut c);
    assert!(out.contains(&Output::Rejected { id: ids[2], code: "forbidden".into() }));
}

#[test]
fn message_ids_differ_between_clients_with_different_seeds() {
    let mut a = Client::new(config(), 1, false, 0);
    let mut b = Client::new(config(), 2, false, 0);
    let (x, y) = (a.publish("1").unwrap(), b.publish("1").unwrap());
    assert_eq!(x, y, "both clients' first call");
    assert_ne!(a.wire_id(x), b.wire_id(y), "but not the same id on the wire");
}

#[test]
fn final_close_codes_stop_retrying_and_say_why() {
    for code in [4401, 4403, 4409, 4400] {
        let mut c = Client::new(config(), 13, false, 0);
        let id = c.publish("1").unwrap();
        drain(&mut c);
        c.handle_close(code, "refused", 5);
        let out = drain(&mut c);
        let s = statuses(&out);
        assert_eq!((s[0].state, s[0].code, s[0].reason.as_str()), (State::Closed, code, "refused"));
        assert!(out.contains(&Output::Rejected { id, code: "closed".into() }));
        assert_eq!(c.poll_timeout(), None, "no retry is scheduled");
    }
    // retryable ones do retry
    let mut c = Client::new(config(), 13, false, 0);
    drain(&mut c);
    c.handle_close(4001, "heartbeat timeout", 0);
    assert_eq!(statuses(&drain(&mut c))[0].state, State::Reconnecting);
}

#[test]
fn a_token_is_fetched_before_every_attempt() {
    let mut c = Client::new(config(), 17, true, 0);
    let out = drain(&mut c);
    assert!(out.contains(&Output::FetchToken));
    assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })), "no connect before the token");
    c.handle_token(Some(TOKEN), 1);
    assert_eq!(drain(&mut c), [Output::Connect { resume: None }]);
    let mut now = 1;
    for _ in 0..3 {
        c.handle_close(1006, "lost", now);
        drain(&mut c);
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        assert_eq!(drain(&mut c), [Output::FetchToken]);
        c.handle_token(Some(TOKEN), now);
        assert!(matches!(drain(&mut c)[..], [Output::Connect { .. }]));
    }
    // a failed fetch counts as a failed attempt
    c.handle_close(1006, "lost", now);
    drain(&mut c);
    now = c.poll_timeout().unwrap();
    c.handle_timeout(now);
    drain(&mut c);
    c.handle_token(None, now);
    let s = statuses(&drain(&mut c));
    assert_eq!((s[0].state, s[0].reason.as_str()), (State::Reconnecting, "token fetch failed"));
}

#[test]
fn a_connect_that_never_gets_its_welcome_times_out() {
    let mut c = Client::new(config(), 19, false, 0);
    drain(&mut c);
    let mut now = 0;
    let out = run_until(&mut c, &mut now, 500);
    assert!(out.contains(&Output::CloseSocket(CloseCode { code: 1000, reason: "connect timeout" })));
    assert_eq!(statuses(&out)[0].state, State::Reconnecting);
}

#[test]
fn close_leaves_no_timers_and_ignores_later_events() {
    let mut c = Client::new(config(), 23, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    c.close();
    let out = drain(&mut c);
    assert!(out.contains(&Output::CloseSocket(CloseCode { code: 1000, reason: "client closed" })));
    assert_eq!(statuses(&out).last().unwrap().state, State::Closed);
    assert_eq!(c.poll_timeout(), None);
    c.handle_close(1006, "late close event", 10);
    c.handle_wake(20);
    c.handle_timeout(1_000_000);
    assert!(drain(&mut c).is_empty());
    assert_eq!(c.publish("1"), Err(QueueError::Closed));
}

#[test]
fn waking_reconnects_at_once_or_checks_an_open_connection() {
    let mut c = Client::new(config(), 29, false, 0);
    drain(&mut c);
    c.handle_close(1006, "offline", 0);
    drain(&mut c);
    c.handle_wake(1);
    assert_eq!(drain(&mut c), [Output::Connect { resume: None }]);
    open(&mut c, 2, 0);
    c.handle_wake(3);
    assert_eq!(sends(&drain(&mut c)), [PING]);
}

#[test]
fn direct_messages_are_not_queued_offline() {
    let mut c = Client::new(config(), 31, false, 0);
    assert_eq!(c.direct(r#"{"user":"bob"}"#, "1"), Err(QueueError::Offline));
    drain(&mut c);
    open(&mut c, 0, 0);
    let id = c.direct(r#"{"user":"bob"}"#, r#""hi""#).unwrap();
    let id = c.wire_id(id);
    assert_eq!(sends(&drain(&mut c)), [format!(r#"{{"type":"direct","id":"{id}","to":{{"user":"bob"}},"data":"hi"}}"#)]);
}

// ---- sequence integrity ------------------------------------------------------------------------

fn gaps(out: &[Output]) -> Vec<(String, u64)> {
    out.iter().filter_map(|o| if let Output::Gap { reason, since } = o { Some((reason.clone(), *since)) } else { None }).collect()
}

#[test]
fn a_message_that_jumps_ahead_is_reported_never_delivered_and_the_client_resumes_before_it() {
    let mut c = Client::new(config(), 37, false, 0);
    drain(&mut c);
    open(&mut c, 0, 10);
    assert!(c.handle_message(11, 5));
    // a frame claiming a far seq (what a forged frame did): not delivered, reported, socket dropped
    assert!(!c.handle_message(999_999, 6));
    let out = drain(&mut c);
    assert_eq!(out[0], Output::OutOfOrder { expected: 12, received: 999_999 });
    assert_eq!(out[1], Output::CloseSocket(CloseCode { code: 1000, reason: "message out of order" }));
    let s = statuses(&out);
    assert_eq!((s[0].state, s[0].code, s[0].reason.as_str()), (State::Reconnecting, 4000, "message out of order"));
    assert_eq!(c.last_seq(), 11, "the claimed seq was not believed");
    // the rest of the dead socket's frames are ignored: the resume covers them
    assert!(!c.handle_message(12, 7));
    assert!(drain(&mut c).is_empty());
    // the reconnect resumes from the last real seq, and the room replays what is really missing
    let mut now = 7;
    let out = reconnect(&mut c, &mut now);
    assert!(out.contains(&Output::Connect { resume: Some(("e1".into(), 11)) }), "{out:?}");
    c.handle_welcome_frame(w("e1", 13, Some(Resumed::Recovered), None), now);
    assert!(gaps(&drain(&mut c)).is_empty());
    let delivered: Vec<u64> = [12, 13, 14, 15].into_iter().filter(|s| c.handle_message(*s, now)).collect();
    assert_eq!(delivered, [12, 13, 14, 15], "later real messages still arrive");
    assert_eq!(c.state(), State::Open);
}

#[test]
fn a_message_before_the_welcome_is_out_of_order() {
    let mut c = Client::new(config(), 41, false, 0);
    drain(&mut c);
    assert!(!c.handle_message(1, 1));
    let out = drain(&mut c);
    assert_eq!(out[0], Output::OutOfOrder { expected: 1, received: 1 });
    assert_eq!(statuses(&out)[0].state, State::Reconnecting);
}

#[test]
fn an_ack_ahead_of_the_sequence_settles_its_publish_and_resumes_before_it() {
    let mut c = Client::new(config(), 43, false, 0);
    drain(&mut c);
    open(&mut c, 0, 5);
    let a = c.publish("1").unwrap();
    let b = c.publish("2").unwrap();
    drain(&mut c);
    // echo off: the ack stands for the message itself, so 6 moves last_seq on
    c.handle_ack(&c.wire_id(a), Some(6), 1);
    assert_eq!(c.last_seq(), 6);
    assert_eq!(drain(&mut c), [Output::Acked { id: a, seq: Some(6) }]);
    // 7 and 8 never came: the publish is settled, and the client goes back for them
    c.handle_ack(&c.wire_id(b), Some(9), 2);
    let out = drain(&mut c);
    assert_eq!(out[0], Output::Acked { id: b, seq: Some(9) });
    assert_eq!(out[1], Output::OutOfOrder { expected: 7, received: 9 });
    assert_eq!(c.last_seq(), 6);
    assert_eq!(c.queued(), 0);
    let mut now = 2;
    assert!(reconnect(&mut c, &mut now).contains(&Output::Connect { resume: Some(("e1".into(), 6)) }));
}

#[test]
fn a_welcome_that_contradicts_what_the_client_saw_is_a_gap_and_delivery_goes_on() {
    // (epoch, seq, what the room said) -> the gap reported when the client had seen up to 12 in e1
    let cases: [(&str, u64, Option<Resumed>, Option<&str>); 6] = [
        // the room says recovered, but it is behind: the next seq the client waits for never comes
        ("e1", 5, Some(Resumed::Recovered), Some("ahead")),
        // recovered across a different history
        ("e2", 20, Some(Resumed::Recovered), Some("epoch")),
        // asked to resume, and the room said nothing about it
        ("e1", 20, None, Some("unavailable")),
        // nothing happened since: nothing to replay, whatever the room says
        ("e1", 12, None, None),
        ("e1", 12, Some(Resumed::NotRecovered("unavailable".into())), None),
        ("e1", 15, Some(Resumed::Recovered), None),
    ];
    for (epoch, seq, resumed, gap) in cases {
        let mut c = Client::new(config(), 47, false, 0);
        drain(&mut c);
        open(&mut c, 0, 10);
        assert!(c.handle_message(11, 0) && c.handle_message(12, 0));
        c.handle_close(1006, "lost", 0);
        drain(&mut c);
        let mut now = 0;
        reconnect(&mut c, &mut now);
        let recovered = gap.is_none() && seq > 12;
        c.handle_welcome_frame(w(epoch, seq, resumed.clone(), None), now);
        let out = drain(&mut c);
        assert_eq!(gaps(&out), gap.map(|r| (r.to_owned(), 12)).into_iter().collect::<Vec<_>>(), "{epoch} {seq} {resumed:?}");
        // either way the next real message is delivered
        let next = if recovered { 13 } else { seq + 1 };
        assert!(c.handle_message(next, now), "{epoch} {seq} {resumed:?}: {next} not delivered");
    }
}

/// A room with history 1..=`total`, published one by one; before real message `k`, the frames
/// in `forged` with index `k` reach the client on its current socket. Whenever the client drops
/// its socket, the room takes its resume point and replays from it.
fn run_forgery(total: u64, forged: &[(u64, u64)], seed: u64) -> (Vec<u64>, u32) {
    let mut c = Client::new(config(), seed, false, 0);
    drain(&mut c);
    let mut now = 0;
    let mut published = 0;
    let mut delivered = Vec::new();
    let mut errors = 0;
    c.handle_welcome_frame(w("e", 0, None, None), now);
    drain(&mut c);
    let mut connected = true;
    let feed = |c: &mut Client, seq: u64, now: u64, delivered: &mut Vec<u64>, errors: &mut u32| -> bool {
        if c.handle_message(seq, now) {
            delivered.push(seq);
        }
        let out = drain(c);
        *errors += out.iter().filter(|o| matches!(o, Output::OutOfOrder { .. })).count() as u32;
        !out.iter().any(|o| matches!(o, Output::CloseSocket(_)))
    };
    loop {
        if !connected {
            // back off, reconnect, and replay what the room has after the resume point
            now = c.poll_timeout().expect("a reconnect is scheduled");
            c.handle_timeout(now);
            let out = drain(&mut c);
            let Some(Output::Connect { resume: Some((_, since)) }) = out.into_iter().find(|o| matches!(o, Output::Connect { .. })) else {
                panic!("no resume")
            };
            c.handle_welcome_frame(w("e", published, Some(Resumed::Recovered), None), now);
            drain(&mut c);
            connected = true;
            for seq in since + 1..=published {
                if !feed(&mut c, seq, now, &mut delivered, &mut errors) {
                    connected = false;
                    break;
                }
            }
            continue;
        }
        if published == total {
            break;
        }
        let k = published + 1;
        for &(_, seq) in forged.iter().filter(|(at, _)| *at == k) {
            if connected && !feed(&mut c, seq, now, &mut delivered, &mut errors) {
                connected = false;
            }
        }
        published = k;
        if connected && !feed(&mut c, k, now, &mut delivered, &mut errors) {
            connected = false;
        }
        now += 10;
    }
    (delivered, errors)
}

#[test]
fn a_forged_future_seq_costs_a_reconnect_and_no_message() {
    let (delivered, errors) = run_forgery(6, &[(3, 999_999)], 53);
    assert_eq!(delivered, [1, 2, 3, 4, 5, 6]);
    assert_eq!(errors, 1);
}

proptest::proptest! {
    /// Whatever seqs untrusted frames claim, and wherever they come, the client delivers the
    /// room's sequence exactly: every seq once, in order, none skipped, and it never goes quiet.
    /// (A forged frame that claims exactly the next seq takes that seq's place: no client can tell;
    /// the framing fix is what keeps such frames out.)
    #[test]
    fn the_delivered_sequence_is_the_rooms_whatever_frames_claim(
        total in 1u64..30,
        forged in proptest::collection::vec((1u64..30, proptest::prelude::any::<u64>()), 0..8),
        seed in proptest::prelude::any::<u64>(),
    ) {
        let (delivered, _) = run_forgery(total, &forged, seed);
        proptest::prop_assert_eq!(delivered, (1..=total).collect::<Vec<_>>());
    }
}

// ---- token refresh -----------------------------------------------------------------------------

/// Heartbeats far apart, so refresh tests see only refresh timers.
fn quiet_config() -> ClientConfig {
    ClientConfig { ping_interval_ms: 10_000_000, ..config() }
}

fn opened_with_token_fn(expires: u64, now: u64) -> Client {
    let mut c = Client::new(quiet_config(), 59, true, now);
    drain(&mut c);
    c.handle_token(Some(TOKEN), now);
    drain(&mut c);
    c.handle_welcome_frame(w("e1", 0, None, Some(expires)), now);
    drain(&mut c);
    c
}

#[test]
fn the_refresh_time_is_a_fifth_of_the_remaining_life_early_at_most_a_minute_and_never_past() {
    let hour = 3_600_000;
    assert_eq!(refresh_at(0, hour), hour - 60_000);
    assert_eq!(refresh_at(1_000, 101_000), 81_000);
    assert_eq!(refresh_at(5_000, 5_000), 5_000);
    assert_eq!(refresh_at(9_000, 5_000), 9_000, "already expired: at once");
    assert_eq!(retry_refresh_at(0, 60_000), Some(30_000));
    assert_eq!(retry_refresh_at(0, 1_500), Some(1_000));
    assert_eq!(retry_refresh_at(0, 1_000), None, "too close to expiry to try again");
}

#[test]
fn a_token_function_refreshes_the_open_connection_before_expiry() {
    let t0 = 1_000;
    let mut c = opened_with_token_fn(t0 + 100_000, t0);
    assert_eq!(c.poll_timeout(), Some(t0 + 80_000));
    let mut now = t0;
    assert!(run_until(&mut c, &mut now, t0 + 79_999).is_empty());
    assert_eq!(run_until(&mut c, &mut now, t0 + 80_000), [Output::FetchToken]);
    c.handle_token(Some(TOKEN), now);
    assert_eq!(drain(&mut c), [Output::Send(REFRESH.to_owned())]);
    assert_eq!(c.state(), State::Open, "the connection stays as it is");
    // the room took it: the next refresh is timed from the new expiry
    c.handle_refreshed(now + 3_600_000, now);
    assert_eq!(c.poll_timeout(), Some(now + 3_600_000 - 60_000));
    let later = now + 3_600_000 - 60_000;
    assert_eq!(run_until(&mut c, &mut now, later), [Output::FetchToken]);
}

#[test]
fn a_failed_or_stale_refresh_is_retried_a_few_times_then_left_to_the_expiry_close() {
    // the token function fails every time
    let mut c = opened_with_token_fn(100_000, 0);
    let mut now = 0;
    let mut fetches = 0;
    // (the heartbeat timer is far beyond the expiry)
    while let Some(at) = c.poll_timeout().filter(|at| *at < 100_000) {
        now = at;
        c.handle_timeout(now);
        assert_eq!(drain(&mut c), [Output::FetchToken]);
        fetches += 1;
        c.handle_token(None, now);
        assert!(drain(&mut c).is_empty());
    }
    assert!((2..=8).contains(&fetches), "{fetches} fetches");
    assert!(now < 100_000);
    // the token function hands back the same token: no refresh loop either
    let mut c = opened_with_token_fn(100_000, 0);
    let mut refreshes = 0;
    while let Some(at) = c.poll_timeout().filter(|at| *at < 100_000) {
        let now = at;
        c.handle_timeout(now);
        drain(&mut c);
        // (the token function hands back the token the connection already has)
        c.handle_token(Some(TOKEN), now);
        assert_eq!(drain(&mut c), [Output::Send(REFRESH.to_owned())]);
        refreshes += 1;
        c.handle_refreshed(100_000, now);
    }
    assert!((2..=8).contains(&refreshes), "{refreshes} refreshes");
}

#[test]
fn a_session_socket_told_its_token_expired_refreshes_at_once_and_once() {
    // The refreshes all failed before expiry; past it, the session's rooms leave with 4002.
    let mut c = opened_with_token_fn(100_000, 0);
    c.handle_expired();
    assert_eq!(drain(&mut c), [Output::FetchToken], "a fetch now, not at the refresh time");
    c.handle_expired();
    assert!(drain(&mut c).is_empty(), "another room's 4002 while the fetch is on its way asks nothing more");
    c.handle_token(Some(TOKEN), 1_000);
    assert_eq!(drain(&mut c), [Output::Send(REFRESH.to_owned())]);
    c.handle_refreshed(3_700_000, 1_000);
    assert_eq!(c.poll_timeout(), Some(3_700_000 - 60_000), "timed from the new expiry");
    // Without a token function there is nothing to fetch: the session closes the socket (4002)
    // after its grace and the reconnect brings the token back.
    let mut c = Client::new(quiet_config(), 61, false, 0);
    drain(&mut c);
    c.handle_welcome_frame(w("e1", 0, None, Some(50_000)), 0);
    drain(&mut c);
    c.handle_expired();
    assert!(drain(&mut c).is_empty());
}

#[test]
fn no_refresh_without_a_token_function_or_an_expiry() {
    let mut c = Client::new(quiet_config(), 61, false, 0);
    drain(&mut c);
    c.handle_welcome_frame(w("e1", 0, None, Some(50_000)), 0);
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(10_000_000), "only the heartbeat");
    let mut c = Client::new(quiet_config(), 61, true, 0);
    drain(&mut c);
    c.handle_token(Some(TOKEN), 0);
    c.handle_welcome_frame(w("e1", 0, None, None), 0);
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(10_000_000), "an anonymous connection has no expiry");
}

#[test]
fn a_refresh_token_that_arrives_after_the_socket_dropped_is_not_sent() {
    let mut c = opened_with_token_fn(10_000, 0);
    let mut now = 0;
    assert_eq!(run_until(&mut c, &mut now, 8_000), [Output::FetchToken]);
    c.handle_close(1006, "lost", now);
    drain(&mut c);
    c.handle_token(Some(TOKEN), now);
    assert!(drain(&mut c).is_empty(), "nothing sent, no connect before the reconnect timer");
    // the reconnect fetches its own token, and the refresh is timed from the new welcome
    let out = reconnect(&mut c, &mut now);
    assert_eq!(out, [Output::FetchToken]);
    c.handle_token(Some(TOKEN), now);
    assert!(matches!(drain(&mut c)[..], [Output::Connect { .. }]));
    c.handle_welcome_frame(w("e1", 0, None, Some(now + 100_000)), now);
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(now + 80_000));
}

// ---- close codes of the trust issue --------------------------------------------------------------

#[test]
fn an_expired_token_close_reconnects_with_a_fresh_token() {
    let mut c = opened_with_token_fn(100_000, 0);
    c.handle_close(4002, "token expired", 130_000);
    let s = statuses(&drain(&mut c));
    assert_eq!((s[0].state, s[0].code), (State::Reconnecting, 4002));
    let mut now = 130_000;
    assert_eq!(reconnect(&mut c, &mut now), [Output::FetchToken]);
}

#[test]
fn per_user_limit_removal_and_a_taken_client_id_are_final_with_their_reason() {
    for (code, reason) in
        [(4410, "too many connections for this user"), (4411, "removed from the room"), (4412, "client id belongs to another user")]
    {
        let mut c = Client::new(config(), 67, true, 0);
        drain(&mut c);
        c.handle_token(Some(TOKEN), 0);
        drain(&mut c);
        c.handle_close(code, reason, 1);
        let s = statuses(&drain(&mut c));
        assert_eq!((s[0].state, s[0].code, s[0].reason.as_str()), (State::Closed, code, reason));
        assert_eq!(c.poll_timeout(), None, "no retry is scheduled");
    }
}

// ---- issue #14: every call settles, every refusal says why ---------------------------------------

fn rejected(out: &[Output]) -> Vec<(CallId, String)> {
    out.iter().filter_map(|o| if let Output::Rejected { id, code } = o { Some((*id, code.clone())) } else { None }).collect()
}

/// A data payload (JSON text) whose publish frame, with the client's next id, is exactly
/// `frame_len` bytes.
fn data_for_frame(c: &Client, frame_len: usize) -> String {
    let mut id = c.session.clone();
    id.push('-');
    push_u64(&mut id, c.next_id + 1);
    let probe = encode("publish", Some(&id), &[("data", Some("\"\""))]);
    "\"".to_owned() + &"x".repeat(frame_len - probe.len()) + "\""
}

#[test]
fn frames_put_type_then_id_first() {
    let mut c = Client::new(config(), 71, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    let (id, to) = (c.publish(r#"{"big":"payload"}"#).unwrap(), c.direct(r#"{"user":"bob"}"#, "1").unwrap());
    let (id, to) = (c.wire_id(id), c.wire_id(to));
    let out = sends(&drain(&mut c));
    assert!(out[0].starts_with(&format!(r#"{{"type":"publish","id":"{id}","#)), "{}", out[0]);
    assert!(out[1].starts_with(&format!(r#"{{"type":"direct","id":"{to}","#)), "{}", out[1]);
}

#[test]
fn a_publish_over_the_default_frame_limit_is_refused_before_the_first_welcome_and_never_sent() {
    let mut c = Client::new(config(), 73, false, 0);
    drain(&mut c);
    assert_eq!(c.max_frame_bytes(), DEFAULT_MAX_FRAME_BYTES);
    let over = data_for_frame(&c, DEFAULT_MAX_FRAME_BYTES as usize + 1);
    assert_eq!(c.publish(&over), Err(QueueError::TooLarge));
    let fits = data_for_frame(&c, DEFAULT_MAX_FRAME_BYTES as usize);
    let ok = c.publish(&fits).expect("a frame of exactly the limit is fine");
    assert_eq!(c.queued(), 1, "the refused one was never queued");
    let out = open(&mut c, 0, 0);
    assert_eq!(sends(&out).len(), 1);
    assert!(sends(&out)[0].contains(&c.wire_id(ok)));
    assert_eq!(sends(&out)[0].len() as u64, DEFAULT_MAX_FRAME_BYTES);
}

#[test]
fn the_welcome_sets_the_frame_limit_and_queued_publishes_over_it_are_rejected_not_sent() {
    let mut c = Client::new(config(), 79, false, 0);
    drain(&mut c);
    let small = c.publish("1").unwrap();
    let big_data = "\"".to_owned() + &"y".repeat(2_000) + "\"";
    let big = c.publish(&big_data).unwrap();
    let after = c.publish("2").unwrap();
    c.handle_welcome_frame(Welcome { epoch: "e1", seq: 0, max_frame_bytes: Some(1_024), ..Welcome::default() }, 0);
    let out = drain(&mut c);
    assert_eq!(rejected(&out), [(big, "too_large".to_owned())]);
    let sent = sends(&out);
    assert_eq!(sent.len(), 2);
    assert!(sent[0].contains(&c.wire_id(small)) && sent[1].contains(&c.wire_id(after)), "the rest in order: {sent:?}");
    assert_eq!(c.queued(), 2);
    // and from now on the room's limit holds for new publishes
    assert_eq!(c.max_frame_bytes(), 1_024);
    assert_eq!(c.publish(&big_data), Err(QueueError::TooLarge));
    assert_eq!(c.direct(r#"{"user":"bob"}"#, &big_data), Err(QueueError::TooLarge));
    // after a reconnect the big one is not resent either
    c.handle_close(1006, "lost", 10);
    drain(&mut c);
    let mut now = 10;
    reconnect(&mut c, &mut now);
    c.handle_welcome_frame(w("e1", 0, None, None), now);
    let again = sends(&drain(&mut c));
    assert_eq!(again.len(), 2);
    assert!(!again.iter().any(|t| t.contains(&c.wire_id(big))));
}

#[test]
fn a_publish_the_room_refuses_is_rejected_once_and_never_resent() {
    let mut c = Client::new(config(), 83, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    let refused = c.publish("1").unwrap();
    let kept = c.publish("2").unwrap();
    drain(&mut c);
    c.handle_error(&c.wire_id(refused), "rate_limited");
    assert_eq!(rejected(&drain(&mut c)), [(refused, "rate_limited".to_owned())]);
    assert_eq!(c.queued(), 1);
    // the connection drops before `kept` is acknowledged: only `kept` goes out again
    c.handle_close(1006, "lost", 5);
    drain(&mut c);
    let mut now = 5;
    reconnect(&mut c, &mut now);
    c.handle_welcome_frame(w("e1", 0, Some(Resumed::Recovered), None), now);
    let out = sends(&drain(&mut c));
    assert_eq!(out.len(), 1);
    assert!(out[0].contains(&c.wire_id(kept)) && !out[0].contains(&c.wire_id(refused)), "{out:?}");
    // a late duplicate refusal settles nothing new beyond reporting it
    c.handle_ack(&c.wire_id(kept), Some(1), now);
    assert_eq!(c.queued(), 0);
}

#[test]
fn a_direct_message_in_flight_when_the_socket_goes_is_rejected_and_not_resent() {
    let mut c = Client::new(config(), 89, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    let answered = c.direct(r#"{"user":"bob"}"#, "1").unwrap();
    let lost = c.direct(r#"{"user":"bob"}"#, "2").unwrap();
    drain(&mut c);
    c.handle_ack(&c.wire_id(answered), None, 1);
    drain(&mut c);
    c.handle_close(1006, "lost", 2);
    let out = drain(&mut c);
    assert_eq!(rejected(&out), [(lost, "disconnected".to_owned())]);
    let mut now = 2;
    reconnect(&mut c, &mut now);
    let out = open(&mut c, now, 0);
    assert!(sends(&out).is_empty(), "direct messages are never resent");
    // and one in flight when the app closes is rejected as closed
    let last = c.direct(r#"{"user":"bob"}"#, "3").unwrap();
    drain(&mut c);
    c.close();
    assert_eq!(rejected(&drain(&mut c)), [(last, "closed".to_owned())]);
}

#[test]
fn the_closed_status_comes_before_the_rejections_it_causes() {
    let mut c = Client::new(config(), 97, false, 0);
    drain(&mut c);
    let id = c.publish("1").unwrap();
    c.handle_close(4403, "the token does not grant this room", 1);
    let out = drain(&mut c);
    let status_at = out.iter().position(|o| matches!(o, Output::Status(s) if s.state == State::Closed)).unwrap();
    let reject_at = out.iter().position(|o| matches!(o, Output::Rejected { id: r, .. } if *r == id)).unwrap();
    assert!(status_at < reject_at, "{out:?}");
}

#[test]
fn a_final_close_without_a_reason_reports_the_tables() {
    let mut c = Client::new(config(), 101, false, 0);
    drain(&mut c);
    c.handle_close(4400, "", 1);
    let s = statuses(&drain(&mut c));
    assert_eq!((s[0].state, s[0].code, s[0].reason.as_str()), (State::Closed, 4400, "bad request"));
    // with the edge's own message, that message is the reason
    let mut c = Client::new(config(), 101, false, 0);
    drain(&mut c);
    c.handle_close(4400, "room name may only contain A-Z a-z 0-9 _ - . :", 1);
    let s = statuses(&drain(&mut c));
    assert_eq!((s[0].state, s[0].reason.as_str()), (State::Closed, "room name may only contain A-Z a-z 0-9 _ - . :"));
    // a browser's 1006 has no reason: the status still says what happened
    let mut c = Client::new(config(), 101, false, 0);
    drain(&mut c);
    c.handle_close(1006, "", 1);
    let s = statuses(&drain(&mut c));
    assert_eq!((s[0].state, s[0].reason.as_str()), (State::Reconnecting, "connection lost"));
}

#[test]
fn the_client_reports_its_own_drops_with_4000_from_the_table() {
    let mut c = Client::new(config(), 103, false, 0);
    drain(&mut c);
    let mut now = 0;
    let out = run_until(&mut c, &mut now, 500);
    let s = statuses(&out);
    assert_eq!((s[0].code, s[0].reason.as_str()), (close::CONNECT_TIMEOUT.code, close::CONNECT_TIMEOUT.reason));
    assert_eq!(close::CONNECT_TIMEOUT.code, 4000);
}

#[test]
fn a_token_function_that_keeps_failing_stops_the_client_after_the_bound() {
    let mut c = Client::new(config(), 107, true, 0);
    let publish = c.publish("1").unwrap();
    drain(&mut c);
    let mut now = 0;
    let mut reconnecting = Vec::new();
    for n in 1..=5 {
        c.handle_token(None, now);
        let out = drain(&mut c);
        let s = statuses(&out);
        if n < 5 {
            assert_eq!((s[0].state, s[0].code, s[0].reason.as_str()), (State::Reconnecting, 4000, "token fetch failed"));
            reconnecting.push(s[0].attempt);
            assert_eq!(reconnect(&mut c, &mut now), [Output::FetchToken]);
        } else {
            assert_eq!((s[0].state, s[0].code, s[0].reason.as_str()), (State::Closed, 4000, "token fetch failed too many times in a row"));
            assert_eq!(rejected(&out), [(publish, "closed".to_owned())]);
        }
    }
    assert_eq!(reconnecting, [1, 2, 3, 4], "backing off as it retries");
    assert_eq!(c.poll_timeout(), None, "nothing left running");
    assert_eq!(c.state(), State::Closed);
}

#[test]
fn a_successful_fetch_resets_the_token_failure_count_and_a_hung_function_counts_as_failed() {
    let mut c = Client::new(ClientConfig { max_token_failures: 3, ..config() }, 109, true, 0);
    drain(&mut c);
    let mut now = 0;
    // two failures, one success (and a dropped connection), two more failures: still retrying
    for ok in [false, false, true, false, false] {
        c.handle_token(ok.then_some(TOKEN), now);
        drain(&mut c);
        if ok {
            c.handle_close(1006, "lost", now);
            drain(&mut c);
        }
        assert_eq!(reconnect(&mut c, &mut now), [Output::FetchToken]);
    }
    // the third failure in a row: a token function that never answers (the connect timeout)
    let deadline = now + config().connect_timeout_ms;
    let out = run_until(&mut c, &mut now, deadline);
    let s = statuses(&out);
    assert_eq!((s[0].state, s[0].reason.as_str()), (State::Closed, "token fetch failed too many times in a row"));
    // its late answer changes nothing
    c.handle_token(Some(TOKEN), now + 1);
    assert!(drain(&mut c).is_empty());
}

#[test]
fn refresh_failures_do_not_count_toward_the_bound() {
    let mut c = opened_with_token_fn(100_000, 0);
    let mut fetches = 0;
    while let Some(now) = c.poll_timeout().filter(|at| *at < 100_000) {
        c.handle_timeout(now);
        drain(&mut c);
        c.handle_token(None, now);
        drain(&mut c);
        fetches += 1;
    }
    assert!(fetches >= 2, "{fetches}");
    assert_eq!(c.state(), State::Open, "a failing refresh is left to the expiry close, never the end");
}

#[test]
fn a_socket_the_browser_refuses_to_create_stops_the_client() {
    let mut c = Client::new(config(), 113, false, 0);
    let id = c.publish("1").unwrap();
    drain(&mut c);
    c.handle_socket_refused();
    let out = drain(&mut c);
    let s = statuses(&out);
    assert_eq!((s[0].state, s[0].code, s[0].reason.as_str()), (State::Closed, 4000, close::SOCKET_REFUSED.reason));
    assert_eq!(rejected(&out), [(id, "closed".to_owned())]);
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn the_client_pings_as_often_as_the_welcome_asks_but_no_more_than_its_own_interval() {
    // the room asks for more often than the client's 1 s: at most once a second still (floor)
    for (asked, expected) in [(Some(400), 1_000), (Some(600_000), 1_000), (None, 1_000)] {
        let mut c = Client::new(config(), 127, false, 0);
        drain(&mut c);
        c.handle_welcome_frame(Welcome { epoch: "e1", ping_interval: asked, ..Welcome::default() }, 0);
        drain(&mut c);
        assert_eq!(c.ping_interval(), expected, "asked {asked:?}");
    }
    // a client with a long interval follows the room's shorter one
    let mut c = Client::new(ClientConfig { ping_interval_ms: 20_000, pong_timeout_ms: 10_000, ..config() }, 131, false, 0);
    drain(&mut c);
    c.handle_welcome_frame(Welcome { epoch: "e1", ping_interval: Some(5_000), ..Welcome::default() }, 0);
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(5_000));
    let mut now = 0;
    let out = run_until(&mut c, &mut now, 5_000);
    assert_eq!(sends(&out), [PING]);
    c.handle_pong();
    drain(&mut c);
    assert_eq!(c.poll_timeout(), Some(10_000), "the next ping one room interval later");
}

fn rewind_welcome(seq: u64, rewound: u64) -> Welcome<'static> {
    Welcome { epoch: "e1", seq, rewound: Some(rewound), ..Welcome::default() }
}

#[test]
fn a_rewind_makes_the_last_n_messages_the_next_ones_with_no_gap_or_duplicate_at_the_live_boundary() {
    let mut c = Client::new(config(), 1, false, 0);
    assert!(drain(&mut c).contains(&Output::Connect { resume: None }), "no resume point: the adapter asks to rewind");
    c.handle_welcome_frame(rewind_welcome(10, 3), 0);
    drain(&mut c);
    assert_eq!(c.last_seq(), 7, "seq - replayed");
    // the rewound 8, 9, 10 arrive next, then live 11; a repeat of any of them is dropped
    let delivered: Vec<u64> = [8, 9, 8, 10, 10, 11].into_iter().filter(|s| c.handle_message(*s, 1)).collect();
    assert_eq!(delivered, [8, 9, 10, 11]);
    assert!(drain(&mut c).iter().all(|o| !matches!(o, Output::OutOfOrder { .. } | Output::Gap { .. })));
    // a rewound message that skipped one is out of order, never silently accepted
    let mut c = Client::new(config(), 1, false, 0);
    drain(&mut c);
    c.handle_welcome_frame(rewind_welcome(10, 3), 0);
    drain(&mut c);
    assert!(!c.handle_message(9, 1));
    assert!(drain(&mut c).contains(&Output::OutOfOrder { expected: 8, received: 9 }));
}

#[test]
fn a_rewind_larger_than_the_history_starts_from_zero_and_none_means_nothing_follows() {
    let mut c = Client::new(config(), 1, false, 0);
    drain(&mut c);
    c.handle_welcome_frame(rewind_welcome(2, 50), 0);
    assert_eq!(c.last_seq(), 0, "a claim beyond seq cannot make the client wait for seq 0 or below");
    assert!(c.handle_message(1, 1) && c.handle_message(2, 1));
    let mut c = Client::new(config(), 1, false, 0);
    drain(&mut c);
    c.handle_welcome_frame(rewind_welcome(5, 0), 0);
    assert_eq!(c.last_seq(), 5);
}

#[test]
fn a_rewind_applies_only_without_a_resume_point() {
    let mut c = Client::new(config(), 1, false, 0);
    let mut now = 0;
    drain(&mut c);
    // the first attempt fails before its welcome: the next one still has no resume point
    c.handle_close(1006, "lost", now);
    drain(&mut c);
    assert!(reconnect(&mut c, &mut now).contains(&Output::Connect { resume: None }));
    c.handle_welcome_frame(rewind_welcome(4, 2), now);
    drain(&mut c);
    assert!(c.handle_message(3, now) && c.handle_message(4, now));
    // after that every reconnect resumes; a rewind a room would wrongly add there moves nothing
    c.handle_close(1006, "lost", now);
    drain(&mut c);
    assert!(reconnect(&mut c, &mut now).contains(&Output::Connect { resume: Some(("e1".into(), 4)) }));
    c.handle_welcome_frame(Welcome { resumed: Some(Resumed::Recovered), ..rewind_welcome(4, 2) }, now);
    drain(&mut c);
    assert_eq!(c.last_seq(), 4);
    assert!(!c.handle_message(3, now) && !c.handle_message(4, now), "duplicates, dropped");
    assert!(c.handle_message(5, now));
}

// ---- issue #21: every frame from one encoder, every call settled by the machine -----------------

fn acked(out: &[Output]) -> Vec<CallId> {
    out.iter().filter_map(|o| if let Output::Acked { id, .. } = o { Some(*id) } else { None }).collect()
}

#[test]
fn the_encoder_puts_type_then_id_then_the_present_fields_in_order() {
    assert_eq!(encode("ping", None, &[]), PING);
    assert_eq!(encode("broadcast", None, &[("data", Some("[1]"))]), r#"{"type":"broadcast","data":[1]}"#);
    assert_eq!(
        encode("history", Some("a-1"), &[("limit", Some("5")), ("before", None), ("since", Some("0"))]),
        r#"{"type":"history","id":"a-1","limit":5,"since":0}"#
    );
    let mut n = String::new();
    push_u64(&mut n, u64::MAX);
    assert_eq!(n, "18446744073709551615");
}

#[test]
fn history_reads_are_sent_when_open_settled_by_their_answer_and_disconnected_with_the_socket() {
    let mut c = Client::new(config(), 81, false, 0);
    drain(&mut c);
    assert_eq!(c.history(Some(5), None, None), Err(QueueError::Offline), "not queued");
    open(&mut c, 0, 0);
    let a = c.history(Some(5), Some(9), None).unwrap();
    let b = c.history(None, None, Some(3)).unwrap();
    let out = sends(&drain(&mut c));
    assert_eq!(
        out,
        [
            format!(r#"{{"type":"history","id":"{}","limit":5,"before":9}}"#, c.wire_id(a)),
            format!(r#"{{"type":"history","id":"{}","since":3}}"#, c.wire_id(b))
        ]
    );
    // the page answers `a` (the adapter hands it over like an ack); `b`'s socket goes first
    c.handle_ack(&c.wire_id(a), None, 1);
    assert_eq!(acked(&drain(&mut c)), [a]);
    c.handle_close(1006, "", 2);
    assert_eq!(rejected(&drain(&mut c)), [(b, "disconnected".to_owned())]);
    c.close();
    assert_eq!(c.history(None, None, None), Err(QueueError::Closed));
}

#[test]
fn broadcasts_carry_an_id_only_with_ack_and_are_held_to_the_broadcast_limit() {
    let mut c = Client::new(config(), 83, false, 0);
    drain(&mut c);
    assert_eq!(c.broadcast("1", false), Err(QueueError::Offline));
    c.handle_welcome_frame(Welcome { broadcast_max_bytes: Some(60), ..w("e1", 0, None, None) }, 0);
    drain(&mut c);
    assert_eq!(c.broadcast(r#"{"x":1}"#, false), Ok(None));
    let id = c.broadcast("2", true).unwrap().expect("an id with ack");
    assert_eq!(
        sends(&drain(&mut c)),
        [r#"{"type":"broadcast","data":{"x":1}}"#.to_owned(), format!(r#"{{"type":"broadcast","id":"{}","data":2}}"#, c.wire_id(id))]
    );
    // 28 bytes of frame around the data: 32 more is 60 (fits), 33 more is 61 (refused, never sent)
    assert_eq!(c.broadcast(&"1".repeat(32), false), Ok(None));
    assert_eq!(c.broadcast(&"1".repeat(33), false), Err(QueueError::TooLarge));
    assert_eq!(c.refused(), (61, 60));
    assert_eq!(sends(&drain(&mut c)).len(), 1);
    c.handle_error(&c.wire_id(id), "rate_limited");
    assert_eq!(rejected(&drain(&mut c)), [(id, "rate_limited".to_owned())]);
}

#[test]
fn presence_keeps_one_change_in_flight_and_the_newest_settles_every_call_since() {
    let mut c = Client::new(config(), 85, false, 0);
    drain(&mut c);
    // offline: waits for the connection; only the newest goes, and it settles both calls
    let a = c.set_presence(r#"{"n":1}"#).unwrap();
    let b = c.set_presence(r#"{"n":2}"#).unwrap();
    assert!(sends(&drain(&mut c)).is_empty());
    let out = open(&mut c, 0, 0);
    assert_eq!(sends(&out), [format!(r#"{{"type":"presence","id":"{}","meta":{{"n":2}}}}"#, c.wire_id(b))]);
    // calls made while one is in flight wait for its answer
    let d = c.set_presence(r#"{"n":3}"#).unwrap();
    assert!(sends(&drain(&mut c)).is_empty(), "one in flight at a time");
    c.handle_ack(&c.wire_id(b), None, 1);
    let out = drain(&mut c);
    assert_eq!(acked(&out), [a, b]);
    assert_eq!(sends(&out), [format!(r#"{{"type":"presence","id":"{}","meta":{{"n":3}}}}"#, c.wire_id(d))]);
    c.handle_ack(&c.wire_id(d), None, 2);
    assert_eq!(acked(&drain(&mut c)), [d]);
    // over the room's meta limit: refused here
    c.handle_welcome_frame(Welcome { presence_meta_max: Some(8), ..w("e1", 0, None, None) }, 3);
    assert_eq!(c.set_presence(r#"{"n":"long"}"#), Err(QueueError::TooLarge));
    assert_eq!(c.refused(), (12, 8));
}

#[test]
fn after_a_reconnect_the_meta_in_flight_goes_again_else_the_last_one_taken() {
    let mut c = Client::new(config(), 87, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    let a = c.set_presence(r#"{"n":1}"#).unwrap();
    drain(&mut c);
    c.handle_ack(&c.wire_id(a), None, 1);
    drain(&mut c);
    let b = c.set_presence(r#"{"n":2}"#).unwrap();
    drain(&mut c);
    // the socket goes with `b` in flight: not rejected, sent again on the next connection
    c.handle_close(1006, "", 2);
    assert!(rejected(&drain(&mut c)).is_empty());
    let mut now = 2;
    reconnect(&mut c, &mut now);
    c.handle_welcome_frame(w("e1", 0, Some(Resumed::Recovered), None), now);
    let out = drain(&mut c);
    assert_eq!(sends(&out), [format!(r#"{{"type":"presence","id":"{}","meta":{{"n":2}}}}"#, c.wire_id(b))]);
    c.handle_ack(&c.wire_id(b), None, now);
    assert_eq!(acked(&drain(&mut c)), [b]);
    // the next connection sends the last meta the room took, under an id no call has
    c.handle_close(1006, "", now);
    drain(&mut c);
    reconnect(&mut c, &mut now);
    c.handle_welcome_frame(w("e1", 0, Some(Resumed::Recovered), None), now);
    let resent: Vec<String> = sends(&drain(&mut c));
    assert_eq!(resent.len(), 1);
    assert!(resent[0].ends_with(r#","meta":{"n":2}}"#), "{}", resent[0]);
    let id = resent[0].split('"').nth(7).unwrap().to_owned();
    // refused: reported under that id's number (the adapter's error event gives the frame's id),
    // which no call has, and not sent on the next one
    c.handle_error(&id, "forbidden");
    let out = rejected(&drain(&mut c));
    assert_eq!(out.len(), 1);
    assert_eq!((c.wire_id(out[0].0), out[0].1.as_str()), (id, "forbidden"));
    assert!(![a, b].contains(&out[0].0));
    c.handle_close(1006, "", now);
    drain(&mut c);
    reconnect(&mut c, &mut now);
    c.handle_welcome_frame(w("e1", 0, Some(Resumed::Recovered), None), now);
    assert!(sends(&drain(&mut c)).is_empty(), "the room keeps the token's meta");
}

#[test]
fn closing_rejects_every_call_it_holds_and_a_resend_nobody_waits_for_says_nothing() {
    let mut c = Client::new(config(), 89, false, 0);
    drain(&mut c);
    let queued = c.publish("1").unwrap();
    let waiting = c.set_presence("{}").unwrap();
    let sent = sends(&open(&mut c, 0, 0));
    assert_eq!(sent.len(), 2, "the publish and the presence change go out");
    let read = c.history(None, None, None).unwrap();
    let later = c.set_presence(r#"{"a":1}"#).unwrap();
    let to = c.broadcast("1", true).unwrap().unwrap();
    drain(&mut c);
    c.close();
    let mut ids = rejected(&drain(&mut c));
    ids.sort();
    let mut expected: Vec<(CallId, String)> = [queued, waiting, read, later, to].into_iter().map(|id| (id, "closed".to_owned())).collect();
    expected.sort();
    assert_eq!(ids, expected);
    // a meta sent again after a reconnect has no call: closing says nothing of it
    let mut c = Client::new(config(), 91, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    let a = c.set_presence("{}").unwrap();
    drain(&mut c);
    c.handle_ack(&c.wire_id(a), None, 0);
    c.handle_close(1006, "", 0);
    let mut now = 0;
    drain(&mut c);
    reconnect(&mut c, &mut now);
    c.handle_welcome_frame(w("e1", 0, Some(Resumed::Recovered), None), now);
    assert_eq!(sends(&drain(&mut c)).len(), 1);
    c.close();
    assert!(rejected(&drain(&mut c)).is_empty());
}

#[test]
fn a_refresh_frame_carries_the_token_as_the_adapter_encoded_it() {
    let mut c = opened_with_token_fn(100_000, 0);
    let mut now = 0;
    assert_eq!(run_until(&mut c, &mut now, 80_000), [Output::FetchToken]);
    c.handle_token(Some(r#""tok\"en""#), now);
    assert_eq!(drain(&mut c), [Output::Send(r#"{"type":"refresh","token":"tok\"en"}"#.to_owned())]);
}

#[test]
fn read_marks_are_echoed_and_only_plain_ids() {
    let mut c = Client::new(config(), 1, false, 0);
    drain(&mut c);
    open(&mut c, 10, 0);
    c.handle_mark("0a1b2c3d4e5f6071");
    assert_eq!(drain(&mut c), [Output::Send(r#"{"type":"read","id":"0a1b2c3d4e5f6071"}"#.into())]);
    for bad in [r#"a"b"#.to_owned(), String::new(), "f".repeat(65), "é".to_owned()] {
        let bad = bad.as_str();
        c.handle_mark(bad);
        assert_eq!(drain(&mut c), [], "{bad:?}");
    }
}

#[test]
fn an_answer_settles_a_call_only_under_the_exact_id_its_frame_carried() {
    let mut c = Client::new(config(), 5, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    let id = c.direct(r#"{"user":"bob"}"#, "1").unwrap();
    let wire = c.wire_id(id);
    assert_eq!(sends(&drain(&mut c))[0], format!(r#"{{"type":"direct","id":"{wire}","to":{{"user":"bob"}},"data":1}}"#));
    let session = wire.strip_suffix(&format!("-{id}")).expect("<session>-<number>").to_owned();
    let other = Client::new(config(), 6, false, 0).wire_id(id);
    assert_ne!(other, wire, "another session");
    // none of these is the call's id: each refusal is reported as naming no call (0)
    for foreign in
        [other, format!("{session}-0{id}"), format!("{session}-"), format!("{session}{id}"), format!("{session}-{id}x"), String::new()]
    {
        c.handle_error(&foreign, "forbidden");
        assert_eq!(rejected(&drain(&mut c)), [(0, "forbidden".to_owned())], "{foreign:?}");
    }
    c.handle_ack(&wire, None, 1);
    assert_eq!(acked(&drain(&mut c)), [id]);
}

/// A room of a session socket: an ack may come before its message (they travel apart between the
/// objects), so it settles its call and moves nothing; the messages then come in order.
#[test]
fn through_a_session_an_ack_before_its_message_settles_and_moves_nothing() {
    let mut c = Client::new(ClientConfig { relayed: true, ..config() }, 43, false, 0);
    drain(&mut c);
    open(&mut c, 0, 5);
    let a = c.publish("1").unwrap();
    drain(&mut c);
    c.handle_ack(&c.wire_id(a), Some(7), 1);
    assert_eq!(drain(&mut c), [Output::Acked { id: a, seq: Some(7) }], "no out-of-order");
    assert_eq!(c.last_seq(), 5);
    assert!(c.handle_message(6, 2) && c.handle_message(7, 2));
    assert_eq!(c.last_seq(), 7);
}

/// A session's `gap` (trimmed history while a room caught up) is reported once and delivery goes
/// on after it.
#[test]
fn through_a_session_a_gap_moves_the_next_expected_seq() {
    let mut c = Client::new(ClientConfig { relayed: true, ..config() }, 44, false, 0);
    drain(&mut c);
    open(&mut c, 0, 10);
    c.handle_gap(17);
    assert_eq!(drain(&mut c), [Output::Gap { reason: "retention".into(), since: 10 }]);
    c.handle_gap(12);
    assert!(drain(&mut c).is_empty(), "a gap behind the client says nothing");
    assert!(c.handle_message(18, 1));
}
