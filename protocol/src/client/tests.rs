//! The client machine with a simulated clock and a seeded generator: every test is
//! deterministic and runs in microseconds.

use super::*;

fn config() -> ClientConfig {
    ClientConfig {
        backoff: Backoff { min_ms: 100, max_ms: 2_000, factor: 2.0, jitter: true },
        min_uptime_ms: 1_000,
        connect_timeout_ms: 500,
        ping_interval_ms: 1_000,
        pong_timeout_ms: 300,
        queue_max: 3,
    }
}

fn drain(c: &mut Client) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn statuses(out: &[Output]) -> Vec<Status> {
    out.iter().filter_map(|o| if let Output::Status(s) = o { Some(s.clone()) } else { None }).collect()
}

fn sends(out: &[Output]) -> Vec<String> {
    out.iter().filter_map(|o| if let Output::Send(t) = o { Some(t.clone()) } else { None }).collect()
}

/// Runs the timers up to `until`, collecting outputs.
fn run_until(c: &mut Client, now: &mut u64, until: u64) -> Vec<Output> {
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
fn reconnect(c: &mut Client, now: &mut u64) -> Vec<Output> {
    *now = c.poll_timeout().expect("a reconnect is scheduled");
    c.handle_timeout(*now);
    drain(c)
}

fn open(c: &mut Client, now: u64, seq: u64) -> Vec<Output> {
    c.handle_welcome("e1", seq, None, now);
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
    assert!(out.contains(&Output::CloseSocket(CloseCode { code: 1000, reason: "heartbeat timeout" })), "{out:?}");
    let s = statuses(&out);
    assert_eq!((s[0].state, s[0].code), (State::Reconnecting, 4001));
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
    assert!(c.handle_message(11));
    assert!(c.handle_message(12));
    c.handle_close(1006, "lost", 50);
    drain(&mut c);
    let mut now = 50;
    let out = reconnect(&mut c, &mut now);
    assert!(out.contains(&Output::Connect { resume: Some(("e1".into(), 12)) }));
    c.handle_welcome("e1", 14, Some(Resumed::Recovered), now);
    // an overlapping replay: 12 again, then 13, 14
    let delivered: Vec<u64> = [12, 13, 14, 13].into_iter().filter(|s| c.handle_message(*s)).collect();
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
    c.handle_welcome("e1", 500, Some(Resumed::NotRecovered("retention".into())), now);
    let out = drain(&mut c);
    assert_eq!(out[0], Output::Gap { reason: "retention".into(), since: 10 });
    assert_eq!(c.last_seq(), 500);
}

#[test]
fn the_queue_is_bounded_and_flushed_in_order_with_the_same_ids_after_a_reconnect() {
    let mut c = Client::new(config(), 11, false, 0);
    drain(&mut c);
    let ids: Vec<String> = ["1", "2", "3"].iter().map(|d| c.publish(d).unwrap()).collect();
    assert_eq!(c.publish("4"), Err(QueueError::Full), "the newest publish is refused");
    assert!(sends(&drain(&mut c)).is_empty(), "nothing is sent before the welcome");
    let out = open(&mut c, 0, 0);
    let sent = sends(&out);
    assert_eq!(sent.len(), 3);
    for (text, (id, data)) in sent.iter().zip(ids.iter().zip(["1", "2", "3"])) {
        assert_eq!(text, &format!(r#"{{"type":"publish","id":"{id}","data":{data}}}"#));
    }
    c.handle_ack(&ids[0], Some(1));
    // the connection drops before 2 and 3 are acknowledged: they go again, same ids
    c.handle_close(1006, "lost", 10);
    drain(&mut c);
    let mut now = 10;
    reconnect(&mut c, &mut now);
    let again = sends(&open(&mut c, now, 1));
    assert_eq!(again, sent[1..]);
    c.handle_ack(&ids[1], Some(2));
    c.handle_error(&ids[2], "forbidden");
    assert_eq!(c.queued(), 0);
    let out = drain(&mut c);
    assert!(out.contains(&Output::Rejected { id: ids[2].clone(), code: "forbidden".into() }));
}

#[test]
fn message_ids_differ_between_clients_with_different_seeds() {
    let mut a = Client::new(config(), 1, false, 0);
    let mut b = Client::new(config(), 2, false, 0);
    assert_ne!(a.publish("1").unwrap(), b.publish("1").unwrap());
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
        assert!(out.contains(&Output::Rejected { id: id.clone(), code: "closed".into() }));
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
    c.handle_token(true, 1);
    assert_eq!(drain(&mut c), [Output::Connect { resume: None }]);
    let mut now = 1;
    for _ in 0..3 {
        c.handle_close(1006, "lost", now);
        drain(&mut c);
        now = c.poll_timeout().unwrap();
        c.handle_timeout(now);
        assert_eq!(drain(&mut c), [Output::FetchToken]);
        c.handle_token(true, now);
        assert!(matches!(drain(&mut c)[..], [Output::Connect { .. }]));
    }
    // a failed fetch counts as a failed attempt
    c.handle_close(1006, "lost", now);
    drain(&mut c);
    now = c.poll_timeout().unwrap();
    c.handle_timeout(now);
    drain(&mut c);
    c.handle_token(false, now);
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
    assert_eq!(sends(&drain(&mut c)), [format!(r#"{{"type":"direct","id":"{id}","to":{{"user":"bob"}},"data":"hi"}}"#)]);
}
