//! The gate driven the way the Durable Object drives it, against a model of the runtime: a
//! storage whose writes become durable when a wait started after them ends, awaits that end in
//! any order, frames arriving at any point, and the alarm. Property tests check the promises of
//! the module docs on arbitrary schedules.

use super::*;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A socket frame.
    Frame,
    /// An HTTP call, a close or the alarm: `begin()`.
    Event,
    /// A new member: `begin_join()`.
    Join,
}

#[derive(Debug, Clone)]
struct Ev {
    kind: Kind,
    writes: bool,
    /// The machine's next deadline after this event ran.
    deadline: Option<u64>,
}

/// Something the machine queued to send: who queued it, the storage generation it depends on,
/// and who was a member when it was queued.
#[derive(Debug, Clone)]
struct Act {
    needs: u64,
    members: BTreeSet<usize>,
}

/// The state machine behind the gate, reduced to what the gate's promises are about.
#[derive(Default)]
struct Machine {
    ran: Vec<usize>,
    actions: Vec<Act>,
    members: BTreeSet<usize>,
    deadline: Option<u64>,
    wrote: bool,
}

enum Waiting {
    /// Waiting for durability: the storage generation the wait covers.
    Sync(u64),
}

struct Running {
    task: Task<usize>,
    /// The event's own work (`None` for a frame task, whose frame travels in the gate).
    event: Option<usize>,
    waiting: Option<Waiting>,
}

#[derive(Default)]
struct World {
    evs: Vec<Ev>,
    machine: Machine,
    /// Storage: writes so far, and how many of them are durable.
    written: u64,
    durable: u64,
    /// The newest write some wait (ended or in flight) was started after.
    covered: u64,
    /// The runtime's alarm, as the adapter's calls left it (they apply in call order).
    alarm: Option<u64>,
    alarm_calls: usize,
    redundant_alarm_calls: usize,
    /// Sends flushed after a write no wait stood behind (nothing would make it durable first).
    flushes_uncovered: usize,
    /// Sends flushed before their write was durable: held by the runtime's output gate.
    held_by_output_gate: usize,
    joiner_got_earlier_frames: usize,
    /// Waits that ended, and flushes: every ended wait is followed by a flush.
    waits_ended: usize,
    flushes: usize,
}

impl World {
    fn run(&mut self, i: usize) {
        let ev = self.evs[i].clone();
        self.machine.ran.push(i);
        if ev.writes {
            self.written += 1;
            self.machine.wrote = true;
        }
        if ev.kind == Kind::Join {
            self.machine.members.insert(i);
        }
        // Every event queues something (an ack, a fanout, a welcome).
        self.machine.actions.push(Act { needs: self.written, members: self.machine.members.clone() });
        self.machine.deadline = ev.deadline;
    }

    fn flush(&mut self) {
        let covering = self.covered;
        self.flushes += 1;
        for act in core::mem::take(&mut self.machine.actions) {
            if act.needs > self.durable {
                self.held_by_output_gate += 1;
                if act.needs > covering {
                    self.flushes_uncovered += 1;
                }
            }
            // A fanout goes to the members present when it is sent.
            if self.machine.members != act.members {
                self.joiner_got_earlier_frames += 1;
            }
        }
    }

    /// Drives a task until it waits or is done, as the adapter's synchronous part does.
    /// Returns the task if it is still waiting.
    fn drive(&mut self, gate: &mut Gate<usize>, mut r: Running) -> Option<Running> {
        loop {
            match gate.poll_step(&mut r.task) {
                Step::Run { frames, event } => {
                    for f in frames {
                        self.run(f);
                    }
                    if event {
                        let own = r.event.take().expect("the event is run once");
                        self.run(own);
                    }
                    let wrote = core::mem::take(&mut self.machine.wrote);
                    gate.handle_ran(&mut r.task, wrote);
                }
                Step::Sync => {
                    self.covered = self.covered.max(self.written);
                    r.waiting = Some(Waiting::Sync(self.written));
                    return Some(r);
                }
                Step::Flush => self.flush(),
                Step::Deadline => {
                    if let Some(change) = gate.handle_deadline(&mut r.task, self.machine.deadline) {
                        if change == self.alarm {
                            self.redundant_alarm_calls += 1;
                        }
                        self.alarm = change;
                        self.alarm_calls += 1;
                    }
                }
                Step::Done => return None,
            }
        }
    }
}

/// Runs `evs` arriving in order, with `choices` deciding at each point whether the next event
/// arrives or which wait ends (and whether it failed), until everything is done.
fn simulate(evs: Vec<Ev>, choices: &[u8]) -> (World, Gate<usize>) {
    let mut world = World { evs, ..World::default() };
    let mut gate = Gate::new();
    let mut waiting: Vec<Running> = Vec::new();
    let mut next = 0;
    let mut choice = choices.iter().copied().chain(core::iter::repeat(0));
    while next < world.evs.len() || !waiting.is_empty() {
        let c = choice.next().unwrap_or(0) as usize;
        let arrive = waiting.is_empty() || (next < world.evs.len() && c % 2 == 0);
        if arrive {
            let i = next;
            next += 1;
            let running = match world.evs[i].kind {
                Kind::Frame => gate.handle_frame(i).map(|task| Running { task, event: None, waiting: None }),
                Kind::Event => Some(Running { task: gate.begin(), event: Some(i), waiting: None }),
                Kind::Join => Some(Running { task: gate.begin_join(), event: Some(i), waiting: None }),
            };
            if let Some(r) = running {
                if let Some(r) = world.drive(&mut gate, r) {
                    waiting.push(r);
                }
            }
        } else {
            let mut r = waiting.remove((c / 2) % waiting.len());
            let failed = c % 7 == 3;
            match r.waiting.take() {
                Some(Waiting::Sync(covers)) => {
                    // A wait ends when everything written before it started is durable; a failed
                    // one leaves storage as it was.
                    if !failed {
                        world.durable = world.durable.max(covers);
                    }
                    world.waits_ended += 1;
                    gate.handle_durable(&mut r.task);
                }
                None => unreachable!("only waiting tasks are kept"),
            }
            if let Some(r) = world.drive(&mut gate, r) {
                waiting.push(r);
            }
        }
    }
    (world, gate)
}

fn any_ev() -> impl Strategy<Value = Ev> {
    (
        prop_oneof![6 => Just(Kind::Frame), 2 => Just(Kind::Event), 1 => Just(Kind::Join)],
        any::<bool>(),
        prop_oneof![Just(None), (1u64..4).prop_map(Some)],
    )
        .prop_map(|(kind, writes, deadline)| Ev { kind, writes, deadline })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Every event runs exactly once, in arrival order (a join may let frames that arrived
    /// while it waited for durability run before it, never the other way round).
    #[test]
    fn events_run_once_in_arrival_order(evs in prop::collection::vec(any_ev(), 0..40), choices in prop::collection::vec(any::<u8>(), 0..200)) {
        let (world, gate) = simulate(evs.clone(), &choices);
        let mut ran = world.machine.ran.clone();
        ran.sort_unstable();
        prop_assert_eq!(ran, (0..evs.len()).collect::<Vec<_>>());
        let position: Vec<usize> = {
            let mut p = alloc::vec![0; evs.len()];
            for (at, &i) in world.machine.ran.iter().enumerate() { p[i] = at; }
            p
        };
        for a in 0..evs.len() {
            for b in a + 1..evs.len() {
                if evs[a].kind != Kind::Join {
                    prop_assert!(position[a] < position[b], "{a} arrived before {b} but ran after it");
                }
            }
        }
        prop_assert_eq!(gate.queued(), 0);
        prop_assert_eq!(gate.in_flight(), 0);
    }

    /// Nothing is carried out before the writes before it are durable, a member that joins gets
    /// nothing queued before it joined, and everything queued is carried out in the end.
    #[test]
    fn nothing_leaves_before_durable(evs in prop::collection::vec(any_ev(), 0..40), choices in prop::collection::vec(any::<u8>(), 0..200)) {
        // Waits that fail are left out here: the runtime resets such an object.
        let choices: Vec<u8> = choices.into_iter().map(|c| if c % 7 == 3 { c.wrapping_add(1) } else { c }).collect();
        let (world, gate) = simulate(evs, &choices);
        prop_assert_eq!(world.flushes_uncovered, 0);
        prop_assert_eq!(world.joiner_got_earlier_frames, 0);
        prop_assert!(world.flushes >= world.waits_ended, "a wait ended without a flush after it");
        prop_assert!(world.machine.actions.is_empty(), "left unsent: {:?}", world.machine.actions);
        prop_assert!(gate.is_durable());
    }

    /// The alarm is never later than the machine's deadline (nothing is due unseen), is set
    /// exactly while there is one, and is only written when the deadline moved earlier or went.
    #[test]
    fn alarm_follows_the_deadline(evs in prop::collection::vec(any_ev(), 0..40), choices in prop::collection::vec(any::<u8>(), 0..200)) {
        let (world, gate) = simulate(evs, &choices);
        prop_assert_eq!(world.alarm.is_some(), world.machine.deadline.is_some());
        if let (Some(alarm), Some(deadline)) = (world.alarm, world.machine.deadline) {
            prop_assert!(alarm <= deadline, "the alarm at {} is later than the deadline {}", alarm, deadline);
        }
        prop_assert_eq!(gate.alarm_at(), world.alarm);
        prop_assert_eq!(world.redundant_alarm_calls, 0);
    }
}

fn ev(kind: Kind, writes: bool) -> Ev {
    Ev { kind, writes, deadline: None }
}

#[test]
fn a_frame_that_writes_nothing_needs_no_await() {
    let mut gate = Gate::new();
    let mut task = gate.handle_frame(7).expect("runs at once");
    assert_eq!(gate.poll_step(&mut task), Step::Run { frames: VecDeque::from([7]), event: false });
    gate.handle_ran(&mut task, false);
    assert_eq!(gate.poll_step(&mut task), Step::Flush);
    assert_eq!(gate.poll_step(&mut task), Step::Deadline);
    assert_eq!(gate.handle_deadline(&mut task, None), None);
    assert_eq!(gate.poll_step(&mut task), Step::Done);
}

#[test]
fn a_later_deadline_keeps_the_earlier_alarm_until_it_fires() {
    let mut gate: Gate<usize> = Gate::new();
    let deadline = |gate: &mut Gate<usize>, next: Option<u64>| {
        let mut task = gate.begin();
        assert!(matches!(gate.poll_step(&mut task), Step::Run { .. }));
        gate.handle_ran(&mut task, false);
        assert_eq!(gate.poll_step(&mut task), Step::Flush);
        assert_eq!(gate.poll_step(&mut task), Step::Deadline);
        let change = gate.handle_deadline(&mut task, next);
        assert_eq!(gate.poll_step(&mut task), Step::Done);
        change
    };
    assert_eq!(deadline(&mut gate, Some(10)), Some(Some(10)));
    // Later deadlines (a feed call's timeout, the next probe): no write, the alarm stays at 10.
    assert_eq!(deadline(&mut gate, Some(20)), None);
    assert_eq!(deadline(&mut gate, Some(600)), None);
    assert_eq!(gate.alarm_at(), Some(10));
    // An earlier one moves it.
    assert_eq!(deadline(&mut gate, Some(5)), Some(Some(5)));
    // Nothing due any more: the alarm goes.
    assert_eq!(deadline(&mut gate, None), Some(None));
    assert_eq!(deadline(&mut gate, Some(30)), Some(Some(30)));
    // It fires (early): the alarm's own event sets the later deadline.
    gate.handle_alarm();
    assert_eq!(deadline(&mut gate, Some(600)), Some(Some(600)));
}

#[test]
fn frames_during_a_wait_run_together_after_it() {
    let mut gate = Gate::new();
    let mut task = gate.handle_frame(1).unwrap();
    assert!(matches!(gate.poll_step(&mut task), Step::Run { .. }));
    gate.handle_ran(&mut task, true);
    assert_eq!(gate.poll_step(&mut task), Step::Sync);
    assert!(gate.handle_frame(2).is_none());
    assert!(gate.handle_frame(3).is_none());
    gate.handle_durable(&mut task);
    assert_eq!(gate.poll_step(&mut task), Step::Flush);
    assert_eq!(gate.poll_step(&mut task), Step::Run { frames: VecDeque::from([2, 3]), event: false });
    gate.handle_ran(&mut task, true);
    assert_eq!(gate.poll_step(&mut task), Step::Sync);
    gate.handle_durable(&mut task);
    assert_eq!(gate.poll_step(&mut task), Step::Flush);
    assert_eq!(gate.poll_step(&mut task), Step::Deadline);
    assert_eq!(gate.handle_deadline(&mut task, Some(5)), Some(Some(5)));
    assert_eq!(gate.poll_step(&mut task), Step::Done);
}

#[test]
fn an_event_during_a_wait_leaves_the_flush_to_the_waiting_one() {
    let mut gate = Gate::new();
    let mut writer = gate.handle_frame(1).unwrap();
    let _ = gate.poll_step(&mut writer);
    gate.handle_ran(&mut writer, true);
    assert_eq!(gate.poll_step(&mut writer), Step::Sync);
    // A presence GET: writes nothing, and must not send the writer's ack early.
    let mut reader = gate.begin();
    assert_eq!(gate.poll_step(&mut reader), Step::Run { frames: VecDeque::new(), event: true });
    gate.handle_ran(&mut reader, false);
    assert_eq!(gate.poll_step(&mut reader), Step::Deadline);
}

#[test]
fn a_join_waits_for_what_was_queued_before_it() {
    let (world, _) = simulate(alloc::vec![ev(Kind::Frame, true), ev(Kind::Join, false), ev(Kind::Frame, true)], &[0, 0, 0, 1, 1, 1]);
    assert_eq!(world.joiner_got_earlier_frames, 0);
    assert_eq!(world.flushes_uncovered, 0);
}

/// Found by review: with the rule "flush only when every write is durable", two chains of
/// writes taking turns (frames keep arriving and writing while another event's wait is in
/// flight) never flushed, and a join never ran. Every wait that ends is now followed by a flush.
#[test]
fn overlapping_writers_never_starve_the_flush_or_a_join() {
    let mut gate = Gate::new();
    let mut world = World { evs: alloc::vec![ev(Kind::Frame, true); 400], ..World::default() };
    world.evs.push(ev(Kind::Join, false));
    let mut waiting: Vec<Running> = Vec::new();
    let mut join_ran_at = None;
    for i in 0..world.evs.len() {
        let running = match world.evs[i].kind {
            Kind::Join => Some(Running { task: gate.begin_join(), event: Some(i), waiting: None }),
            _ => {
                // An HTTP write now and then starts a second chain of waits.
                if i % 7 == 0 {
                    Some(Running { task: gate.begin(), event: Some(i), waiting: None })
                } else {
                    gate.handle_frame(i).map(|task| Running { task, event: None, waiting: None })
                }
            }
        };
        if let Some(r) = running.and_then(|r| world.drive(&mut gate, r)) {
            waiting.push(r);
        }
        // The oldest wait ends after every second arrival: waits always overlap.
        if i % 2 == 1 && !waiting.is_empty() {
            let mut r = waiting.remove(0);
            if let Some(Waiting::Sync(covers)) = r.waiting.take() {
                world.durable = world.durable.max(covers);
            }
            world.waits_ended += 1;
            gate.handle_durable(&mut r.task);
            if let Some(r) = world.drive(&mut gate, r) {
                waiting.push(r);
            }
        }
        if join_ran_at.is_none() && world.machine.ran.contains(&400) {
            join_ran_at = Some(i);
        }
        assert!(world.flushes >= world.waits_ended, "after arrival {i}: {} waits ended, {} flushes", world.waits_ended, world.flushes);
    }
    // The waits still in flight end; the join has run by then.
    while let Some(mut r) = waiting.pop() {
        if let Some(Waiting::Sync(covers)) = r.waiting.take() {
            world.durable = world.durable.max(covers);
        }
        gate.handle_durable(&mut r.task);
        if let Some(r) = world.drive(&mut gate, r) {
            waiting.push(r);
        }
    }
    assert!(world.machine.ran.contains(&400), "the join ran (it arrived last)");
    let _ = join_ran_at;
    assert!(world.flushes > 100, "{} flushes", world.flushes);
    assert_eq!(world.flushes_uncovered, 0);
    assert_eq!(world.joiner_got_earlier_frames, 0);
}

#[test]
fn a_failed_wait_loses_no_event() {
    // c % 7 == 3 fails the wait, c % 2 == 1 picks a wait to end rather than an arrival.
    let evs = alloc::vec![ev(Kind::Frame, true), ev(Kind::Frame, true), ev(Kind::Event, true), ev(Kind::Frame, false)];
    let (world, gate) = simulate(evs, &[0, 0, 3, 0, 3, 0, 3, 3]);
    assert_eq!(world.machine.ran.len(), 4);
    assert_eq!(gate.queued(), 0);
}
