//! The feed between a room and one subscriber over an unreliable link: calls fail before or
//! after the receiver saw them, answers are lost, calls time out, either side restarts (keeping
//! what it stored), history is trimmed and the room is reset. What the subscriber passes on must
//! be each stored message exactly once, in order, with every message it never got said in a gap.

use super::*;
use alloc::vec;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Op {
    /// The room stores a message.
    Append,
    /// The room makes its next call; `fate` decides what the link does with it.
    Call { fate: u8 },
    /// Time passes.
    Tick(u16),
    /// The room trims its history to the newest `keep` messages.
    Trim { keep: u8 },
    /// The room's history is deleted (a new epoch).
    Reset,
    /// The room restarts: its sender is rebuilt from the positions it stored.
    RestartSender,
    /// The room queues an extra for the subscriber.
    Extra,
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => Just(Op::Append),
        8 => any::<u8>().prop_map(|fate| Op::Call { fate }),
        2 => (0u16..20_000).prop_map(Op::Tick),
        1 => (0u8..10).prop_map(|keep| Op::Trim { keep }),
        1 => Just(Op::Reset),
        1 => Just(Op::RestartSender),
        4 => Just(Op::Extra),
    ]
}

struct World {
    now: u64,
    epochs: u32,
    epoch: String,
    /// The room's history: (seq, payload) of the current epoch.
    history: Vec<(u64, u64)>,
    head: u64,
    sender: Sender,
    receiver: Receiver,
    /// What the subscriber passed on, per epoch: seqs in order.
    passed: BTreeMap<String, Vec<u64>>,
    /// Seqs the subscriber was told it lost, per epoch.
    lost: BTreeMap<String, Vec<u64>>,
    epoch_gaps: usize,
    /// Extras: each one's payload is its push order; what the receiver passed on; the first
    /// pushed since the sender last lost its queue (a restart).
    pushed: u64,
    extras_passed: Vec<u64>,
    extras_kept_from: u64,
    restarts: u64,
}

impl World {
    fn new() -> World {
        let epoch = String::from("e0");
        let mut sender = Sender::new(FeedConfig { batch_max: 3, ..FeedConfig::default() }, Position { epoch: epoch.clone(), seq: 0 });
        sender.subscribe("s", Position { epoch: epoch.clone(), seq: 0 });
        let mut receiver = Receiver::new();
        receiver.follow("room", Position { epoch: epoch.clone(), seq: 0 });
        World {
            now: 1_000,
            epochs: 0,
            epoch,
            history: Vec::new(),
            head: 0,
            sender,
            receiver,
            passed: BTreeMap::new(),
            lost: BTreeMap::new(),
            epoch_gaps: 0,
            pushed: 0,
            extras_passed: Vec::new(),
            extras_kept_from: 0,
            restarts: 0,
        }
    }

    fn deliver(&mut self, d: &Delivery) -> Answer {
        let messages: Vec<(u64, u64)> = self.history.iter().copied().filter(|(seq, _)| *seq > d.after).take(d.limit).collect();
        let end = (messages.len() < d.limit).then_some(d.head);
        let got = self.receiver.handle_call("room", &d.epoch, end, messages);
        match got.gap {
            Some(Gap::Epoch) => self.epoch_gaps += 1,
            Some(Gap::Retention { after, until }) => self.lost.entry(d.epoch.clone()).or_default().extend(after + 1..=until),
            None => {}
        }
        for payload in got.fresh {
            // payload == seq in this model
            self.passed.entry(d.epoch.clone()).or_default().push(payload);
        }
        for e in self.receiver.handle_extras("room", d.extras.clone()) {
            self.extras_passed.push(e.text.parse().unwrap());
        }
        self.receiver.answer("room").unwrap()
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Append => {
                self.head += 1;
                self.history.push((self.head, self.head));
                self.sender.handle_appended(self.head);
            }
            Op::Call { fate } => {
                let Some(d) = self.sender.poll_delivery(self.now) else { return };
                match fate % 5 {
                    // lost before the receiver saw it
                    0 => self.sender.handle_failure(&d.subscriber, d.call, self.now, fate as u64 * 7919),
                    // seen, but the answer was lost
                    1 => {
                        self.deliver(&d);
                        self.sender.handle_failure(&d.subscriber, d.call, self.now, fate as u64 * 7919);
                    }
                    // never answered: the deadline will pass
                    2 => {}
                    // answered
                    _ => {
                        let answer = self.deliver(&d);
                        self.sender.handle_answer(&d.subscriber, d.call, answer, self.now);
                    }
                }
            }
            Op::Tick(ms) => {
                self.now += u64::from(ms);
                self.sender.handle_timeout(self.now, self.now.wrapping_mul(2654435761));
            }
            Op::Trim { keep } => {
                let keep = keep as usize;
                if self.history.len() > keep {
                    self.history.drain(..self.history.len() - keep);
                }
            }
            Op::Reset => {
                self.epochs += 1;
                self.epoch = alloc::format!("e{}", self.epochs);
                self.history.clear();
                self.head = 0;
                self.sender.handle_reset(&self.epoch);
            }
            Op::RestartSender => {
                let stored: Vec<(String, Position)> = self.sender.subscribers().map(|(n, p)| (n.into(), p.clone())).collect();
                let mut sender = Sender::new(self.sender.config, Position { epoch: self.epoch.clone(), seq: self.head });
                self.restarts += 1;
                sender.number_extras_from(self.restarts * 1_000_000);
                for (name, position) in stored {
                    sender.subscribe(&name, position);
                }
                self.sender = sender;
                self.extras_kept_from = self.pushed;
            }
            Op::Extra => {
                self.sender.push_extra("s", 7, alloc::format!("{}", self.pushed));
                self.pushed += 1;
            }
        }
    }

    /// Lets the link work until the subscriber is caught up.
    fn settle(&mut self) {
        for _ in 0..10_000 {
            match self.sender.poll_delivery(self.now) {
                Some(d) => {
                    let answer = self.deliver(&d);
                    self.sender.handle_answer(&d.subscriber, d.call, answer, self.now);
                }
                None => match self.sender.poll_timeout() {
                    Some(t) => {
                        self.now = self.now.max(t);
                        self.sender.handle_timeout(self.now, 1);
                    }
                    None => return,
                },
            }
        }
        panic!("the feed did not settle");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn every_message_once_in_order_or_said_lost(ops in prop::collection::vec(any_op(), 0..120)) {
        let mut w = World::new();
        let mut resets = 0;
        for op in ops {
            if matches!(op, Op::Reset) { resets += 1; }
            w.step(op);
        }
        w.settle();
        // Caught up with the room's head.
        prop_assert_eq!(w.receiver.position("room").cloned(), Some(Position { epoch: w.epoch.clone(), seq: w.head }));
        for (epoch, passed) in &w.passed {
            // In order, each once.
            prop_assert!(passed.windows(2).all(|p| p[0] < p[1]), "{epoch}: {passed:?}");
            // Nothing both passed on and said lost.
            let lost = w.lost.get(epoch).cloned().unwrap_or_default();
            prop_assert!(passed.iter().all(|s| !lost.contains(s)), "{epoch}: passed {passed:?} lost {lost:?}");
        }
        // The current epoch: every seq up to the head was passed on or said lost.
        let passed = w.passed.get(&w.epoch).cloned().unwrap_or_default();
        let lost = w.lost.get(&w.epoch).cloned().unwrap_or_default();
        for seq in 1..=w.head {
            prop_assert!(passed.contains(&seq) || lost.contains(&seq), "seq {seq} neither passed on nor said lost");
        }
        // Extras: each at most once, in the order pushed; all those pushed since the last
        // restart arrived.
        prop_assert!(w.extras_passed.windows(2).all(|p| p[0] < p[1]), "{:?}", w.extras_passed);
        for n in w.extras_kept_from..w.pushed {
            prop_assert!(w.extras_passed.contains(&n), "extra {n} lost: {:?}", w.extras_passed);
        }
        // A reset reaches the subscriber as an epoch gap (several resets may fold into one).
        prop_assert!(w.epoch_gaps <= resets && (resets == 0) == (w.epoch_gaps == 0));
    }
}

#[test]
fn a_lost_answer_is_not_a_lost_message() {
    let mut w = World::new();
    for _ in 0..5 {
        w.step(Op::Append);
    }
    w.step(Op::Call { fate: 1 }); // seen, answer lost
    w.step(Op::Tick(20_000));
    w.settle();
    assert_eq!(w.passed["e0"], vec![1, 2, 3, 4, 5]);
    assert!(w.lost.is_empty());
}

#[test]
fn trimmed_history_is_said_lost() {
    let mut w = World::new();
    for _ in 0..5 {
        w.step(Op::Append);
    }
    w.step(Op::Trim { keep: 2 });
    w.settle();
    assert_eq!(w.lost["e0"], vec![1, 2, 3]);
    assert_eq!(w.passed["e0"], vec![4, 5]);
}

#[test]
fn a_failed_call_backs_off_with_jitter_within_the_cap() {
    let mut s = Sender::new(FeedConfig::default(), Position { epoch: "e".into(), seq: 3 });
    s.subscribe("a", Position { epoch: "e".into(), seq: 0 });
    let d = s.poll_delivery(0).unwrap();
    assert_eq!((d.after, d.limit), (0, 100));
    assert!(s.poll_delivery(0).is_none(), "one call in flight per subscriber");
    s.handle_failure("a", d.call, 0, u64::MAX);
    let retry = s.poll_timeout().unwrap();
    assert!(retry < 200, "{retry}");
    assert!(s.poll_delivery(retry.saturating_sub(1)).is_none() || retry == 0);
    let d2 = s.poll_delivery(retry).unwrap();
    // A stale answer to the first call is ignored.
    s.handle_answer("a", d.call, Answer { position: Position { epoch: "e".into(), seq: 3 }, extras: 0 }, retry);
    assert!(s.poll_delivery(retry).is_none(), "still in flight: {d2:?}");
    s.handle_answer("a", d2.call, Answer { position: Position { epoch: "e".into(), seq: 3 }, extras: 0 }, retry);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn extras_past_the_bound_mark_the_subscriber_once() {
    let mut s = Sender::new(FeedConfig { extras_max: 2, ..FeedConfig::default() }, Position { epoch: "e".into(), seq: 0 });
    s.subscribe("a", Position { epoch: "e".into(), seq: 0 });
    for i in 0..3 {
        s.push_extra("a", 1, alloc::format!("{i}"));
    }
    assert_eq!(s.overflowed(), vec![String::from("a")]);
    assert!(s.overflowed().is_empty());
    assert!(!s.has_extras("a"), "the queue is dropped");
    assert!(s.poll_delivery(0).is_none());
}

#[test]
fn a_quiet_subscriber_is_probed() {
    let mut s = Sender::new(FeedConfig { probe_ms: 1_000, ..FeedConfig::default() }, Position { epoch: "e".into(), seq: 0 });
    s.subscribe_at("a", Position { epoch: "e".into(), seq: 0 }, 5_000);
    assert_eq!(s.poll_timeout(), Some(6_000));
    assert!(s.poll_delivery(5_999).is_none());
    let d = s.poll_delivery(6_000).unwrap();
    assert!(d.extras.is_empty() && d.after == 0 && d.head == 0);
    s.handle_answer("a", d.call, Answer { position: Position { epoch: "e".into(), seq: 0 }, extras: 0 }, 6_010);
    assert_eq!(s.poll_timeout(), Some(7_010));
}

#[test]
fn a_head_only_feed_is_called_at_most_once_per_interval() {
    let config = FeedConfig { batch_max: 0, min_interval_ms: 1_000, ..FeedConfig::default() };
    let mut s = Sender::new(config, Position { epoch: "e".into(), seq: 0 });
    s.subscribe("a", Position { epoch: "e".into(), seq: 0 });
    s.handle_appended(1);
    let d = s.poll_delivery(0).unwrap();
    assert_eq!((d.limit, d.head), (0, 1));
    s.handle_answer("a", d.call, Answer { position: Position { epoch: "e".into(), seq: 1 }, extras: 0 }, 10);
    for seq in 2..50 {
        s.handle_appended(seq);
        assert!(s.poll_delivery(500).is_none(), "coalesced until the interval passed");
    }
    assert_eq!(s.poll_timeout(), Some(1_010));
    let d = s.poll_delivery(1_010).unwrap();
    assert_eq!(d.head, 49, "one call carries the latest head");
}

#[test]
fn extras_past_the_byte_bound_mark_the_subscriber_and_confirmed_ones_free_their_bytes() {
    let config = FeedConfig { extras_max_bytes: 10, ..FeedConfig::default() };
    let mut s = Sender::new(config, Position { epoch: "e".into(), seq: 0 });
    s.subscribe("a", Position { epoch: "e".into(), seq: 0 });
    s.push_extra("a", 1, "12345".into());
    s.push_extra("a", 1, "12345".into());
    assert!(s.overflowed().is_empty(), "10 bytes fit");
    // Confirmed extras no longer count: two more fit after the answer.
    let d = s.poll_delivery(0).unwrap();
    s.handle_answer("a", d.call, Answer { position: Position { epoch: "e".into(), seq: 0 }, extras: d.extras[1].n }, 1);
    s.push_extra("a", 1, "12345".into());
    s.push_extra("a", 1, "12345".into());
    assert!(s.overflowed().is_empty());
    // One byte more than the bound: dropped, and said once.
    s.push_extra("a", 1, "x".into());
    assert_eq!(s.overflowed(), vec![String::from("a")]);
    assert!(!s.has_extras("a"), "the queue is dropped");
}
