//! The network and visibility rules (see the module), with the simulated clock of the client's
//! own tests.

use super::super::tests::{config, drain, open, reconnect, run_until, sends, statuses, TOKEN};
use super::super::*;
extern crate std;
use proptest::prelude::{any, prop_assert, prop_assert_eq, proptest};
use std::vec::Vec;

/// The settled calls in `out`, by kind.
fn rejected(out: &[Output]) -> Vec<CallId> {
    out.iter().filter_map(|o| if let Output::Rejected { id, .. } = o { Some(*id) } else { None }).collect()
}

fn acked(out: &[Output]) -> Vec<CallId> {
    out.iter().filter_map(|o| if let Output::Acked { id, .. } = o { Some(*id) } else { None }).collect()
}

#[test]
fn token_failures_while_offline_never_end_the_client_and_online_retries_at_once() {
    let mut c = Client::new(ClientConfig { max_token_failures: 3, queue_max: 100, ..config() }, 1, true, 0);
    drain(&mut c);
    let ids: Vec<CallId> = (0..5).map(|i| c.publish(&std::format!("{i}")).unwrap()).collect();
    c.handle_network(false, 0);
    let mut now = 0;
    // an hour offline: every fetch fails (or hangs to the connect timeout), none counts
    let mut fetches = 0;
    while now < 3_600_000 {
        c.handle_token(None, now);
        let out = drain(&mut c);
        assert!(rejected(&out).is_empty(), "nothing rejected while offline");
        assert_eq!(statuses(&out)[0].state, State::Reconnecting);
        assert_eq!(reconnect(&mut c, &mut now), [Output::FetchToken]);
        fetches += 1;
        if fetches % 2 == 0 {
            let deadline = now + config().connect_timeout_ms;
            let out = run_until(&mut c, &mut now, deadline);
            assert!(rejected(&out).is_empty() && c.state() == State::Reconnecting);
            assert_eq!(reconnect(&mut c, &mut now), [Output::FetchToken]);
        }
    }
    assert_eq!(c.queued(), 5);
    // back online, while a backoff is pending: the attempt starts at once, the backoff over
    c.handle_token(None, now);
    drain(&mut c);
    assert!(c.poll_timeout().unwrap() > now);
    c.handle_network(true, now);
    assert_eq!(drain(&mut c), [Output::FetchToken]);
    c.handle_token(Some(TOKEN), now);
    drain(&mut c);
    let out = open(&mut c, now, 0);
    assert_eq!(sends(&out).len(), 5, "every publish queued offline goes, in order: {out:?}");
    for (i, text) in sends(&out).iter().enumerate() {
        assert!(text.contains(&std::format!(r#""data":{i}"#)), "{text}");
    }
    for id in &ids {
        c.handle_ack(&c.wire_id(*id), None, now);
    }
    assert_eq!(acked(&drain(&mut c)), ids);
}

#[test]
fn online_token_failures_still_end_the_client_and_unreachable_ones_do_not_count() {
    let mut c = Client::new(ClientConfig { max_token_failures: 3, ..config() }, 2, true, 0);
    drain(&mut c);
    let id = c.publish("1").unwrap();
    let mut now = 0;
    for _ in 0..10 {
        c.handle_token_unreachable(now);
        assert!(rejected(&drain(&mut c)).is_empty());
        assert_eq!(reconnect(&mut c, &mut now), [Output::FetchToken]);
    }
    for n in 1..=3 {
        c.handle_token(None, now);
        let out = drain(&mut c);
        if n < 3 {
            assert_eq!(statuses(&out)[0].state, State::Reconnecting);
            assert_eq!(reconnect(&mut c, &mut now), [Output::FetchToken]);
        } else {
            assert_eq!((statuses(&out)[0].state, statuses(&out)[0].reason.as_str()), (State::Closed, close::TOKEN_GAVE_UP.reason));
            assert_eq!(rejected(&out), [id]);
        }
    }
}

#[test]
fn the_default_bound_on_token_failures_survives_a_few_minutes_of_a_failing_token_server() {
    let d = ClientConfig::default();
    assert_eq!(d.max_token_failures, 10);
    let mut c = Client::new(d.clone(), 3, true, 0);
    drain(&mut c);
    let mut now = 0;
    let mut failures = 0;
    while c.state() != State::Closed {
        c.handle_token(None, now);
        drain(&mut c);
        failures += 1;
        if c.state() != State::Closed {
            reconnect(&mut c, &mut now);
        }
    }
    assert_eq!(failures, 10);
    // nine jittered delays: up to 151 s in all (1+2+4+8+16+4×30), about 78 s on average
    assert!((30_000..=151_000).contains(&now), "gave up after {now} ms");
}

#[test]
fn a_wake_check_drops_a_dead_open_connection_within_the_check_timeout() {
    for event in 0..4 {
        let mut c = Client::new(config(), 4, false, 0);
        drain(&mut c);
        open(&mut c, 0, 0);
        let at = 50;
        match event {
            0 => c.handle_network(false, at),
            1 => c.handle_network(true, at),
            2 => c.handle_visibility(true, at),
            _ => c.handle_wake(at),
        }
        assert_eq!(sends(&drain(&mut c)), [PING], "event {event}");
        assert_eq!(c.poll_timeout(), Some(at + config().check_timeout_ms));
        let mut now = at;
        let out = run_until(&mut c, &mut now, at + config().check_timeout_ms);
        let s = statuses(&out);
        assert_eq!((s[0].state, s[0].reason.as_str()), (State::Reconnecting, close::HEARTBEAT_MISSED.reason), "event {event}");
    }
}

#[test]
fn a_check_while_a_pong_is_awaited_sends_no_second_ping_and_only_shortens_the_deadline() {
    let mut c = Client::new(ClientConfig { ping_interval_ms: 1_000, pong_timeout_ms: 900, ..config() }, 5, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    let mut now = 0;
    assert_eq!(sends(&run_until(&mut c, &mut now, 1_000)), [PING]);
    c.handle_wake(1_100);
    assert!(sends(&drain(&mut c)).is_empty());
    assert_eq!(c.poll_timeout(), Some(1_100 + config().check_timeout_ms));
    c.handle_pong();
    c.handle_wake(1_200);
    assert_eq!(sends(&drain(&mut c)), [PING], "answered: the next check pings again");
}

#[test]
fn a_hidden_page_does_not_check_and_keeps_the_long_interval() {
    let mut c = Client::new(ClientConfig { ping_interval_ms: 2_000, pong_timeout_ms: 1_000, ..config() }, 6, false, 0);
    drain(&mut c);
    c.handle_visibility(false, 0);
    open(&mut c, 0, 0);
    assert_eq!(c.poll_timeout(), Some(2_000));
    c.handle_visibility(true, 10);
    assert_eq!(sends(&drain(&mut c)), [PING], "visible again: checked");
    c.handle_pong();
    assert_eq!(c.poll_timeout(), Some(10 + config().visible_ping_interval_ms), "visible: the short interval");
    c.handle_visibility(false, 20);
    c.handle_visibility(false, 30);
    assert!(drain(&mut c).is_empty(), "hiding checks nothing");
}

#[test]
fn a_session_room_never_pings_on_wake_or_visibility() {
    let mut c = Client::new(ClientConfig { relayed: true, ping_interval_ms: u64::MAX / 4, ..config() }, 7, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    c.handle_visibility(true, 1);
    c.handle_wake(2);
    c.handle_network(false, 3);
    assert!(sends(&drain(&mut c)).is_empty());
    assert_eq!(c.poll_timeout(), Some(u64::MAX / 4));
}

#[test]
fn a_nudge_wakes_a_waiting_client_only() {
    let mut c = Client::new(config(), 8, false, 0);
    drain(&mut c);
    open(&mut c, 0, 0);
    c.handle_nudge(1);
    assert!(drain(&mut c).is_empty(), "open: left alone");
    c.handle_close(1006, "lost", 2);
    drain(&mut c);
    assert!(c.poll_timeout().unwrap() > 2);
    c.handle_nudge(3);
    assert_eq!(drain(&mut c), [Output::Connect { resume: Some(("e1".into(), 0)) }]);
    c.handle_nudge(4);
    assert!(drain(&mut c).is_empty(), "connecting already");
    // an attempt under way when the nudge came that fails anyway: the backoff started over
    for _ in 0..6 {
        c.handle_close(1006, "refused", 5);
        drain(&mut c);
        c.handle_nudge(5);
        drain(&mut c);
    }
    c.handle_close(1006, "refused", 5);
    let s = statuses(&drain(&mut c));
    assert_eq!(s[0].attempt, 1);
    assert!(s[0].delay_ms <= 2 * config().backoff.min_ms, "{}", s[0].delay_ms);
}

proptest! {
    /// While visible, a link that goes silent at any moment is dropped within the visible ping
    /// interval plus the check timeout (the default settings: 8 s), whatever the room's interval.
    #[test]
    fn a_silent_link_is_noticed_within_interval_plus_check_timeout(seed in any::<u64>(), dies in 0u64..120_000, asked in 1_000u64..60_000) {
        let d = ClientConfig::default();
        let bound = d.visible_ping_interval_ms + d.check_timeout_ms;
        prop_assert!(bound <= 10_000);
        let mut c = Client::new(d, seed, false, 0);
        drain(&mut c);
        c.handle_visibility(true, 0);
        c.handle_welcome_frame(Welcome { epoch: "e1", ping_interval: Some(asked), ..Welcome::default() }, 0);
        drain(&mut c);
        let mut now = 0;
        // answered until `dies`, then silence
        while let Some(t) = c.poll_timeout() {
            now = t;
            c.handle_timeout(t);
            let out = drain(&mut c);
            if let Some(s) = statuses(&out).first() {
                prop_assert_eq!(s.state, State::Reconnecting);
                break;
            }
            if now < dies && sends(&out).iter().any(|s| s == PING) {
                c.handle_pong();
            }
        }
        prop_assert!(now > dies && now - dies <= bound, "died at {dies}, dropped at {now}");
    }
}

#[test]
fn a_4029_that_names_its_wait_is_not_retried_sooner() {
    for (reason, at_least) in [("read budget exceeded; retry later; retryAfterMs=45000", 45_000), ("too many errors", 0)] {
        let mut c = Client::new(config(), 9, false, 0);
        drain(&mut c);
        open(&mut c, 0, 0);
        c.handle_close(4029, reason, 10);
        let s = statuses(&drain(&mut c));
        assert_eq!((s[0].state, s[0].code), (State::Reconnecting, 4029));
        assert!(s[0].delay_ms >= at_least && s[0].delay_ms <= at_least.max(config().backoff.max_ms), "{reason}: {}", s[0].delay_ms);
        assert_eq!(c.poll_timeout(), Some(10 + s[0].delay_ms));
        // neither the network coming back nor another room's reconnect cuts the wait short
        c.handle_network(false, 20);
        c.handle_network(true, 30);
        c.handle_nudge(40);
        assert_eq!(drain(&mut c).iter().any(|o| matches!(o, Output::Connect { .. })), at_least == 0, "{reason}");
    }
}
