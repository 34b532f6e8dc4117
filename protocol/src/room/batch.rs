//! Coalescing: the actions one event (or one durability wait) produced, turned into as few
//! WebSocket frames as possible. A connection gets all the frames meant for it, in order, joined
//! by a line feed (frames are single-line JSON, so the line feed never occurs inside one), and
//! connections that get the same frames share one text. Under load this turns K broadcasts into
//! one frame per recipient instead of K: the runtime's cost is per frame, not per byte.

use super::{Action, Closing, ConnId, Recipients};

use crate::sorted::{SortedMap, SortedSet};

/// Frames joined into one text stay under this size; longer runs are split (a single frame
/// larger than this still goes alone).
pub const BATCH_MAX_BYTES: usize = 64 * 1024;

/// Who gets one coalesced text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Group {
    /// Every open connection but these (the common case: one shared text for the room).
    AllBut(SortedSet<ConnId>),
    /// Exactly these connections.
    Only(Vec<ConnId>),
}

/// One text to send to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub text: String,
    pub to: Group,
}

/// What the adapter does with a batch of actions: the deliveries first, then the closes.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    pub deliveries: Vec<Delivery>,
    pub closes: Vec<(ConnId, Closing)>,
}

/// Coalesces `actions` (in the order the room queued them); `is_open` tells which connections
/// the adapter holds (a lookup, so nothing proportional to the room is built per batch). Each
/// connection receives exactly the frames it would have received one by one, in the same order;
/// a connection stops receiving frames at its close.
pub fn coalesce(actions: Vec<Action>, is_open: impl Fn(ConnId) -> bool) -> Batch {
    let plan = Plan::of(actions, Open(is_open));
    plan.deliveries()
}

/// Which frames each connection gets: the common list, and the lists of the connections that
/// differ from it (the sender of a broadcast with echo off, the target of a direct message, a
/// connection closed midway).
struct Plan {
    frames: Vec<String>,
    common: Vec<usize>,
    special: SortedMap<ConnId, Vec<usize>>,
    closes: Vec<(ConnId, Closing)>,
}

impl Plan {
    fn of<F: Fn(ConnId) -> bool>(actions: Vec<Action>, open: Open<F>) -> Plan {
        let mut plan = Plan { frames: Vec::new(), common: Vec::new(), special: SortedMap::new(), closes: Vec::new() };
        let mut closed: SortedSet<ConnId> = SortedSet::new();
        for action in actions {
            match action {
                Action::Send { to, text } => {
                    let i = plan.frames.len();
                    plan.frames.push(text);
                    match to {
                        Recipients::All { except } => plan.send_to_all_but(except, i, &closed, &open),
                        Recipients::One(c) => add_to(&mut plan.special, &plan.common, &closed, &open, c, i),
                        Recipients::List(ids) => {
                            for c in ids {
                                add_to(&mut plan.special, &plan.common, &closed, &open, c, i);
                            }
                        }
                    }
                }
                Action::Close { conn, code } => {
                    if open.contains(&conn) && closed.insert(conn) {
                        // Frees the connection from the common list: it keeps what it got so far.
                        plan.special.entry(conn).or_insert_with(|| plan.common.clone());
                        plan.closes.push((conn, code));
                    }
                }
            }
        }
        plan
    }

    fn send_to_all_but<F: Fn(ConnId) -> bool>(&mut self, except: Option<ConnId>, i: usize, closed: &SortedSet<ConnId>, open: &Open<F>) {
        if let Some(c) = except.filter(|c| open.contains(c) && !closed.contains(c)) {
            // From here on `c` differs from the common list: it gets everything common so far,
            // but not this frame.
            self.special.entry(c).or_insert_with(|| self.common.clone());
        }
        self.common.push(i);
        for (c, list) in self.special.iter_mut() {
            if Some(*c) != except && !closed.contains(c) {
                list.push(i);
            }
        }
    }

    /// One text per group of connections that get the same frames, then the closes.
    fn deliveries(self) -> Batch {
        let mut deliveries = Vec::new();
        let excluded: SortedSet<ConnId> = self.special.keys().copied().collect();
        for text in join(&self.frames, &self.common) {
            deliveries.push(Delivery { text, to: Group::AllBut(excluded.clone()) });
        }
        // Special connections with the same list share their texts.
        let mut by_list: SortedMap<Vec<usize>, Vec<ConnId>> = SortedMap::new();
        for (c, list) in self.special {
            if !list.is_empty() {
                by_list.entry(list).or_default().push(c);
            }
        }
        for (list, conns) in by_list {
            for text in join(&self.frames, &list) {
                deliveries.push(Delivery { text, to: Group::Only(conns.clone()) });
            }
        }
        Batch { deliveries, closes: self.closes }
    }
}

/// The frames in one delivered text: the inverse of the joining above. It is exact because no
/// frame the room encodes contains a line feed (see `frame`: every embedded value a client
/// controls is [`crate::compact::CompactJson`]).
pub fn split(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
}

struct Open<F>(F);

impl<F: Fn(ConnId) -> bool> Open<F> {
    fn contains(&self, c: &ConnId) -> bool {
        (self.0)(*c)
    }
}

fn add_to<F: Fn(ConnId) -> bool>(
    special: &mut SortedMap<ConnId, Vec<usize>>,
    common: &[usize],
    closed: &SortedSet<ConnId>,
    open: &Open<F>,
    c: ConnId,
    i: usize,
) {
    if open.contains(&c) && !closed.contains(&c) {
        special.entry(c).or_insert_with(|| common.to_vec()).push(i);
    }
}

/// The frames at `indices`, joined by line feeds into texts of at most [`BATCH_MAX_BYTES`].
fn join(frames: &[String], indices: &[usize]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for &i in indices {
        let frame = &frames[i];
        if !current.is_empty() && current.len() + 1 + frame.len() > BATCH_MAX_BYTES {
            out.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(frame);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::close;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn send(to: Recipients, text: &str) -> Action {
        Action::Send { to, text: text.into() }
    }

    /// What each connection receives, frame by frame, if the actions are carried out one by one.
    fn one_by_one(actions: &[Action], open: &BTreeSet<ConnId>) -> BTreeMap<ConnId, Vec<String>> {
        let mut got: BTreeMap<ConnId, Vec<String>> = open.iter().map(|c| (*c, Vec::new())).collect();
        let mut live = open.clone();
        for a in actions {
            match a {
                Action::Send { to, text } => {
                    let targets: Vec<ConnId> = match to {
                        Recipients::All { except } => live.iter().copied().filter(|c| Some(*c) != *except).collect(),
                        Recipients::One(c) => vec![*c],
                        Recipients::List(ids) => ids.clone(),
                    };
                    for c in targets.into_iter().filter(|c| live.contains(c)) {
                        got.entry(c).or_default().push(text.clone());
                    }
                }
                Action::Close { conn, .. } => {
                    live.remove(conn);
                }
            }
        }
        got
    }

    /// What each connection receives from a batch, split back into frames.
    fn batched(batch: &Batch, open: &BTreeSet<ConnId>) -> BTreeMap<ConnId, Vec<String>> {
        let mut got: BTreeMap<ConnId, Vec<String>> = open.iter().map(|c| (*c, Vec::new())).collect();
        for d in &batch.deliveries {
            let targets: Vec<ConnId> = match &d.to {
                Group::AllBut(except) => open.iter().copied().filter(|c| !except.contains(c)).collect(),
                Group::Only(ids) => ids.clone(),
            };
            for c in targets {
                got.entry(c).or_default().extend(d.text.split('\n').map(str::to_owned));
            }
        }
        got
    }

    #[test]
    fn broadcasts_with_echo_off_share_one_text_and_each_sender_gets_its_own() {
        let open: BTreeSet<ConnId> = (1..=5).collect();
        let actions = vec![
            send(Recipients::All { except: Some(1) }, "m1"),
            send(Recipients::One(1), "ack1"),
            send(Recipients::All { except: Some(2) }, "m2"),
            send(Recipients::One(2), "ack2"),
        ];
        let batch = coalesce(actions, |c| open.contains(&c));
        assert_eq!(batch.deliveries[0], Delivery { text: "m1\nm2".into(), to: Group::AllBut([1, 2].into()) });
        assert_eq!(batch.deliveries.len(), 3);
        assert!(batch.deliveries.contains(&Delivery { text: "ack1\nm2".into(), to: Group::Only(vec![1]) }));
        assert!(batch.deliveries.contains(&Delivery { text: "m1\nack2".into(), to: Group::Only(vec![2]) }));
    }

    #[test]
    fn a_single_broadcast_is_one_text_for_all_but_the_sender() {
        let open: BTreeSet<ConnId> = (1..=3).collect();
        let batch = coalesce(vec![send(Recipients::All { except: Some(2) }, "m")], |c| open.contains(&c));
        assert_eq!(batch, Batch { deliveries: vec![Delivery { text: "m".into(), to: Group::AllBut([2].into()) }], closes: vec![] });
    }

    #[test]
    fn a_closed_connection_gets_nothing_after_its_close() {
        let open: BTreeSet<ConnId> = (1..=3).collect();
        let actions = vec![
            send(Recipients::All { except: None }, "a"),
            Action::Close { conn: 3, code: close::POLICY_VIOLATION.into() },
            send(Recipients::All { except: None }, "b"),
            send(Recipients::One(3), "late"),
        ];
        let batch = coalesce(actions.clone(), |c| open.contains(&c));
        assert_eq!(batched(&batch, &open), one_by_one(&actions, &open));
        assert_eq!(batch.closes, vec![(3, close::POLICY_VIOLATION.into())]);
        assert_eq!(batched(&batch, &open)[&3], vec!["a".to_string()]);
    }

    #[test]
    fn long_runs_are_split_under_the_batch_limit() {
        let open: BTreeSet<ConnId> = (1..=2).collect();
        let big = "x".repeat(BATCH_MAX_BYTES / 2);
        let actions: Vec<Action> = (0..3).map(|_| send(Recipients::All { except: None }, &big)).collect();
        let batch = coalesce(actions.clone(), |c| open.contains(&c));
        assert_eq!(batch.deliveries.len(), 3);
        assert!(batch.deliveries.iter().all(|d| d.text.len() <= BATCH_MAX_BYTES));
        assert_eq!(batched(&batch, &open), one_by_one(&actions, &open));
    }

    fn action(n_conns: u64) -> impl Strategy<Value = Action> {
        let conn = 1..=n_conns + 1; // sometimes a connection that is not open
        prop_oneof![
            4 => (proptest::option::of(conn.clone()), "[a-z]{1,3}").prop_map(|(except, t)| Action::Send { to: Recipients::All { except }, text: t }),
            2 => (conn.clone(), "[a-z]{1,3}").prop_map(|(c, t)| Action::Send { to: Recipients::One(c), text: t }),
            1 => (proptest::collection::vec(conn.clone(), 0..4), "[a-z]{1,3}").prop_map(|(ids, t)| Action::Send { to: Recipients::List(ids), text: t }),
            1 => conn.prop_map(|c| Action::Close { conn: c, code: close::POLICY_VIOLATION.into() }),
        ]
    }

    proptest! {
        /// Whatever the actions, every connection receives the same frames in the same order as
        /// if they were sent one by one, and each close comes once.
        #[test]
        fn coalescing_changes_no_connections_frames(actions in proptest::collection::vec(action(6), 0..40)) {
            let open: BTreeSet<ConnId> = (1..=6).collect();
            let batch = coalesce(actions.clone(), |c| open.contains(&c));
            prop_assert_eq!(batched(&batch, &open), one_by_one(&actions, &open));
            let mut closes: Vec<ConnId> = batch.closes.iter().map(|(c, _)| *c).collect();
            let n = closes.len();
            closes.dedup();
            prop_assert_eq!(closes.len(), n);
        }
    }
}
