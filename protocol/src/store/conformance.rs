//! The [`Store`] contract, as tests any store must pass: one function per behaviour, over
//! `&mut impl Store`, each starting from a fresh store. [`conformance_tests!`] makes them the
//! `#[test]`s of a store: `memory.rs` runs them on [`super::MemoryStore`], `sql.rs` on
//! [`super::sql::SqlStore`] over a real SQLite (the statements the Worker runs). A differential
//! property test (`sql.rs`) then drives both with the same random calls and compares every answer.
//!
//! What the contract leaves open is left open here too: error messages, and integers at or above
//! 2^53 (which a store may saturate, never wrap: [`above_max_int_saturates_never_wraps`]).

use super::{OutboxCounts, OutboxSize, PendingLeave, RelayRow, RoomMeta, Store, StoredMessage, SubscriberRow, WebhookState};
use crate::compact::CompactJson;

/// 2^53 − 1: integers up to it come back exactly from every store.
const MAX_INT: u64 = (1 << 53) - 1;

fn msg(seq: u64, ts: u64, from: &str, user: &str, id: Option<&str>, data: &str) -> StoredMessage {
    StoredMessage {
        seq,
        ts,
        from: from.into(),
        user: user.into(),
        id: id.map(str::to_owned),
        data: CompactJson::parse(data).expect("test data is JSON"),
    }
}

/// A message whose `data` is exactly `bytes` bytes long (a JSON string of `x`s; at least 2).
fn sized(seq: u64, bytes: usize) -> StoredMessage {
    msg(seq, 1_000 + seq, "c1", "u1", None, &format!("\"{}\"", "x".repeat(bytes - 2)))
}

fn seqs(messages: &[StoredMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn created(s: &mut impl Store) {
    s.create(&RoomMeta { epoch: "e1".into(), seq: 0 }).expect("create");
}

/// `n` messages, seq 1..=n, each with `data` of 10 bytes and `ts` = 1,000 + seq.
fn filled(s: &mut impl Store, n: u64) {
    created(s);
    for seq in 1..=n {
        s.append(&sized(seq, 10)).expect("append");
    }
}

fn outbox_ns(s: &mut impl Store) -> Vec<u64> {
    s.outbox_take(usize::MAX, usize::MAX).expect("take").iter().map(|r| r.n).collect()
}

/// Every read of a fresh store finds nothing, and nothing fails.
pub fn fresh_store_is_empty(s: &mut impl Store) {
    assert_eq!(s.meta().unwrap(), None);
    assert_eq!(s.count().unwrap(), 0);
    assert_eq!(s.oldest().unwrap(), None);
    assert!(s.after(0, 10, usize::MAX).unwrap().is_empty());
    assert!(s.before(u64::MAX, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(s.find("u", "c", "id").unwrap(), None);
    assert!(s.pending_leaves().unwrap().is_empty());
    assert_eq!(s.client_owner("c").unwrap(), None);
    assert_eq!(s.banned_until("u").unwrap(), None);
    assert!(s.outbox_take(10, usize::MAX).unwrap().is_empty());
    assert!(!s.outbox_any_pending().unwrap());
    assert_eq!(s.outbox_counts().unwrap(), OutboxCounts::default());
    assert_eq!(s.webhook_state().unwrap(), None);
    assert!(s.present_users().unwrap().is_empty());
}

/// `create` records the epoch and seq; a second `create` fails and changes nothing.
pub fn create_once(s: &mut impl Store) {
    s.create(&RoomMeta { epoch: "e1".into(), seq: 7 }).unwrap();
    assert_eq!(s.meta().unwrap(), Some(RoomMeta { epoch: "e1".into(), seq: 7 }));
    assert!(s.create(&RoomMeta { epoch: "e2".into(), seq: 0 }).is_err(), "a room is created once");
    assert_eq!(s.meta().unwrap(), Some(RoomMeta { epoch: "e1".into(), seq: 7 }));
}

/// `meta`'s seq is the newest message's, or the recorded one if that is higher (after a trim).
pub fn meta_seq_follows_history(s: &mut impl Store) {
    filled(s, 3);
    assert_eq!(s.meta().unwrap().unwrap().seq, 3);
    s.trim(3, 0, 3).unwrap();
    assert_eq!(s.count().unwrap(), 0);
    assert_eq!(s.meta().unwrap(), Some(RoomMeta { epoch: "e1".into(), seq: 3 }), "seq survives an emptied history");
}

/// A message comes back field for field, its `data` compact.
pub fn append_round_trips(s: &mut impl Store) {
    created(s);
    let with_id = msg(1, 1_700_000_000_123, "c-1", "ünï 🎉 'quoted' \"double\"", Some("m-1"), r#"{"a": [1, 2.5, "x\ny"], "é": null}"#);
    let without = msg(2, 1_700_000_000_124, ":api", ":api", None, "42");
    s.append(&with_id).unwrap();
    s.append(&without).unwrap();
    let read = s.after(0, 10, usize::MAX).unwrap();
    assert_eq!(read, vec![with_id.clone(), without]);
    assert_eq!(read[0].data.get(), r#"{"a":[1,2.5,"x\ny"],"é":null}"#);
    assert_eq!(s.count().unwrap(), 2);
}

/// `append` refuses a seq that is taken, and an (user, origin, id) still in history; nothing is
/// stored then. The same id from another user or origin, or no id, is another message.
pub fn append_refuses_taken_seq_and_key(s: &mut impl Store) {
    created(s);
    let first = msg(1, 10, "c1", "u1", Some("m"), "1");
    s.append(&first).unwrap();
    assert!(s.append(&msg(1, 11, "c2", "u2", None, "2")).is_err(), "seq 1 is taken");
    assert!(s.append(&msg(2, 11, "c1", "u1", Some("m"), "2")).is_err(), "(u1, c1, m) is taken");
    assert_eq!(s.after(0, 10, usize::MAX).unwrap(), vec![first]);
    s.append(&msg(2, 12, "c1", "u2", Some("m"), "3")).unwrap();
    s.append(&msg(3, 13, "c2", "u1", Some("m"), "4")).unwrap();
    s.append(&msg(4, 14, "c1", "u1", None, "5")).unwrap();
    s.append(&msg(5, 15, "c1", "u1", None, "6")).unwrap();
    assert_eq!(s.count().unwrap(), 5);
}

/// `find` matches (user, origin, id) exactly, and only messages still in history.
pub fn find_matches_the_whole_key(s: &mut impl Store) {
    created(s);
    s.append(&msg(1, 10, "c1", "u1", Some("m"), "1")).unwrap();
    s.append(&msg(2, 20, "c1", "u1", Some("n"), "1")).unwrap();
    assert_eq!(s.find("u1", "c1", "m").unwrap(), Some(1));
    assert_eq!(s.find("u1", "c1", "n").unwrap(), Some(2));
    assert_eq!(s.find("u2", "c1", "m").unwrap(), None);
    assert_eq!(s.find("u1", "c2", "m").unwrap(), None);
    assert_eq!(s.find("u1", "c1", "M").unwrap(), None);
    s.trim(1, 0, 2).unwrap();
    assert_eq!(s.find("u1", "c1", "m").unwrap(), None, "trimmed");
    assert_eq!(s.find("u1", "c1", "n").unwrap(), Some(2));
}

/// `append_new` stores a new message (`None`), or finds a retry's first copy (`Some(seq)`) and
/// stores nothing; once that copy is trimmed or reset away, the key is free again.
pub fn append_new_is_idempotent(s: &mut impl Store) {
    created(s);
    assert_eq!(s.append_new(&msg(1, 10, "c1", "u1", Some("m"), "1")).unwrap(), None);
    assert_eq!(s.append_new(&msg(2, 11, "c1", "u1", Some("m"), "2")).unwrap(), Some(1));
    assert_eq!((s.count().unwrap(), s.meta().unwrap().unwrap().seq), (1, 1), "the retry stored nothing");
    assert_eq!(s.append_new(&msg(2, 12, "c1", "u2", Some("m"), "3")).unwrap(), None, "another user's id");
    assert_eq!(s.append_new(&msg(3, 13, "c1", "u1", None, "4")).unwrap(), None);
    assert_eq!(s.append_new(&msg(4, 14, "c1", "u1", None, "4")).unwrap(), None, "no id: never a duplicate");
    assert!(s.append_new(&msg(4, 15, "c9", "u9", None, "5")).is_err(), "a taken seq is an error, not a duplicate");
    s.trim(1, 0, 4).unwrap();
    assert_eq!(s.append_new(&msg(5, 16, "c1", "u1", Some("m"), "6")).unwrap(), None, "trimmed: stored anew");
    assert_eq!(s.find("u1", "c1", "m").unwrap(), Some(5));
    s.reset(&RoomMeta { epoch: "e2".into(), seq: 0 }).unwrap();
    assert_eq!(s.append_new(&msg(1, 17, "c1", "u1", Some("m"), "7")).unwrap(), None, "reset: stored anew");
}

/// `after`: the oldest `limit` messages above a seq, in seq order.
pub fn after_reads_forward(s: &mut impl Store) {
    filled(s, 10);
    assert_eq!(seqs(&s.after(3, 4, usize::MAX).unwrap()), [4, 5, 6, 7]);
    assert_eq!(seqs(&s.after(0, usize::MAX, usize::MAX).unwrap()), (1..=10).collect::<Vec<_>>());
    assert_eq!(seqs(&s.after(8, 10, usize::MAX).unwrap()), [9, 10]);
    assert!(s.after(10, 10, usize::MAX).unwrap().is_empty());
    assert!(s.after(u64::MAX, 10, usize::MAX).unwrap().is_empty());
    assert!(s.after(0, 0, usize::MAX).unwrap().is_empty());
}

/// `before`: the newest `limit` messages below a seq, in seq order.
pub fn before_reads_backward(s: &mut impl Store) {
    filled(s, 10);
    assert_eq!(seqs(&s.before(8, 3, usize::MAX).unwrap()), [5, 6, 7]);
    assert_eq!(seqs(&s.before(u64::MAX, 2, usize::MAX).unwrap()), [9, 10]);
    assert_eq!(seqs(&s.before(3, 10, usize::MAX).unwrap()), [1, 2]);
    assert!(s.before(1, 10, usize::MAX).unwrap().is_empty());
    assert!(s.before(0, 10, usize::MAX).unwrap().is_empty());
    assert!(s.before(u64::MAX, 0, usize::MAX).unwrap().is_empty());
}

/// Both directions stop once the `data` bytes before a message reach `max_bytes`, counted in
/// the direction read (bytes, not characters); the first message always comes.
pub fn pages_stop_at_max_bytes(s: &mut impl Store) {
    created(s);
    for (seq, bytes) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
        s.append(&sized(seq, bytes)).unwrap();
    }
    s.append(&msg(5, 2_000, "c1", "u1", None, "\"éé\"")).unwrap(); // 6 bytes, 4 characters
    assert_eq!(seqs(&s.after(0, 10, 30).unwrap()), [1, 2], "10 + 20 reach 30: no third");
    assert_eq!(seqs(&s.after(0, 10, 31).unwrap()), [1, 2, 3]);
    assert_eq!(seqs(&s.after(0, 10, 1).unwrap()), [1]);
    assert_eq!(seqs(&s.after(0, 10, 0).unwrap()), [1], "the first always comes");
    assert_eq!(seqs(&s.after(2, 10, 25).unwrap()), [3]);
    assert_eq!(seqs(&s.after(0, 2, 1_000).unwrap()), [1, 2], "the limit still applies");
    assert_eq!(seqs(&s.before(u64::MAX, 10, 46).unwrap()), [4, 5], "6 + 40 reach 46: no 3");
    assert_eq!(seqs(&s.before(u64::MAX, 10, 47).unwrap()), [3, 4, 5]);
    assert_eq!(seqs(&s.before(u64::MAX, 10, 6).unwrap()), [5], "bytes, not characters");
    assert_eq!(seqs(&s.before(u64::MAX, 10, 7).unwrap()), [4, 5]);
    assert_eq!(seqs(&s.before(5, 10, 0).unwrap()), [4], "the first always comes");
}

/// `oldest` and `count` follow appends, trims and resets.
pub fn oldest_and_count(s: &mut impl Store) {
    filled(s, 5);
    assert_eq!((s.oldest().unwrap(), s.count().unwrap()), (Some(1), 5));
    s.trim(2, 0, 5).unwrap();
    assert_eq!((s.oldest().unwrap(), s.count().unwrap()), (Some(3), 3));
    assert_eq!(s.reset(&RoomMeta { epoch: "e2".into(), seq: 0 }).unwrap(), 3);
    assert_eq!((s.oldest().unwrap(), s.count().unwrap()), (None, 0));
}

/// `trim` deletes by seq (at most `through_seq`) or age (`ts` below `before_ts`), and raises
/// the recorded seq to `last_seq`, never lowers it.
pub fn trim_by_seq_or_age(s: &mut impl Store) {
    filled(s, 10); // ts = 1,000 + seq
    s.trim(0, 0, 10).unwrap();
    assert_eq!(s.count().unwrap(), 10, "nothing is due");
    s.trim(2, 0, 10).unwrap();
    assert_eq!(s.oldest().unwrap(), Some(3));
    s.trim(0, 1_005, 10).unwrap();
    assert_eq!(seqs(&s.after(0, 100, usize::MAX).unwrap()), [5, 6, 7, 8, 9, 10], "ts 1,003 and 1,004 were below 1,005");
    s.trim(6, 1_008, 10).unwrap();
    assert_eq!(seqs(&s.after(0, 100, usize::MAX).unwrap()), [8, 9, 10], "either condition deletes");
    s.trim(0, 0, 50).unwrap();
    assert_eq!(s.meta().unwrap().unwrap().seq, 50);
    s.trim(0, 0, 20).unwrap();
    assert_eq!(s.meta().unwrap().unwrap().seq, 50, "never lowered");
}

/// `trim` of a store that was never created deletes and records nothing, without failing.
pub fn trim_before_create(s: &mut impl Store) {
    s.append(&sized(1, 10)).unwrap();
    s.trim(1, 0, 9).unwrap();
    assert_eq!((s.count().unwrap(), s.meta().unwrap()), (0, None));
}

/// `reset` deletes every message (returning how many), starts the new epoch at its seq, and
/// keeps everything else: leaves, client bindings, bans, the outbox and the webhook state.
pub fn reset_keeps_all_but_history(s: &mut impl Store) {
    filled(s, 4);
    s.put_pending_leave(&PendingLeave { user: "u".into(), due: 5, meta: None }).unwrap();
    s.bind_client("c", "u", 5).unwrap();
    s.ban("b", 99).unwrap();
    s.outbox_push(5, "{}").unwrap();
    s.put_webhook_state(&WebhookState { key: "k".into(), failures: 1, next_at: 2, last_error: None }).unwrap();
    s.put_present("u", None).unwrap();
    assert_eq!(s.reset(&RoomMeta { epoch: "e2".into(), seq: 0 }).unwrap(), 4);
    assert_eq!(s.meta().unwrap(), Some(RoomMeta { epoch: "e2".into(), seq: 0 }));
    assert_eq!(s.count().unwrap(), 0);
    assert_eq!(s.pending_leaves().unwrap().len(), 1);
    assert_eq!(s.client_owner("c").unwrap(), Some(("u".into(), 5)));
    assert_eq!(s.banned_until("b").unwrap(), Some(99));
    assert_eq!(s.outbox_counts().unwrap().pending, 1);
    assert_eq!(s.webhook_state().unwrap().map(|w| w.key), Some("k".into()));
    assert_eq!(s.present_users().unwrap().len(), 1);
    assert_eq!(s.reset(&RoomMeta { epoch: "e3".into(), seq: 4 }).unwrap(), 0);
    assert_eq!(s.meta().unwrap(), Some(RoomMeta { epoch: "e3".into(), seq: 4 }));
}

/// `reset` of a store that was never created creates it.
pub fn reset_before_create(s: &mut impl Store) {
    assert_eq!(s.reset(&RoomMeta { epoch: "e1".into(), seq: 0 }).unwrap(), 0);
    assert_eq!(s.meta().unwrap(), Some(RoomMeta { epoch: "e1".into(), seq: 0 }));
}

/// Pending leaves: one per user, replaced by a later put, listed in user order.
pub fn pending_leaves_by_user(s: &mut impl Store) {
    let leave = |user: &str, due, meta: Option<&str>| PendingLeave { user: user.into(), due, meta: meta.map(str::to_owned) };
    s.put_pending_leave(&leave("zoë", 30, Some(r#"{"name":"Zoë"}"#))).unwrap();
    s.put_pending_leave(&leave("alice", 10, None)).unwrap();
    s.put_pending_leave(&leave("bob", 20, Some("1"))).unwrap();
    s.put_pending_leave(&leave("alice", 40, Some("2"))).unwrap();
    assert_eq!(
        s.pending_leaves().unwrap(),
        [leave("alice", 40, Some("2")), leave("bob", 20, Some("1")), leave("zoë", 30, Some(r#"{"name":"Zoë"}"#))]
    );
    s.delete_pending_leave("bob").unwrap();
    s.delete_pending_leave("nobody").unwrap();
    assert_eq!(s.pending_leaves().unwrap(), [leave("alice", 40, Some("2")), leave("zoë", 30, Some(r#"{"name":"Zoë"}"#))]);
}

/// A client id is bound to the last user bound, with when; bindings refreshed before `before`
/// are forgotten.
pub fn client_bindings(s: &mut impl Store) {
    s.bind_client("c1", "u1", 10).unwrap();
    s.bind_client("c2", "u2", 30).unwrap();
    assert_eq!(s.client_owner("c1").unwrap(), Some(("u1".into(), 10)));
    s.bind_client("c1", "u3", 20).unwrap();
    assert_eq!(s.client_owner("c1").unwrap(), Some(("u3".into(), 20)), "rebound");
    s.forget_clients(20).unwrap();
    assert_eq!(s.client_owner("c1").unwrap(), Some(("u3".into(), 20)), "seen at 20 is not before 20");
    s.forget_clients(21).unwrap();
    assert_eq!(s.client_owner("c1").unwrap(), None);
    assert_eq!(s.client_owner("c2").unwrap(), Some(("u2".into(), 30)));
}

/// A ban is replaced by a later one (even a shorter one); bans that ended by `now` are forgotten.
pub fn bans(s: &mut impl Store) {
    s.ban("u1", 100).unwrap();
    s.ban("u2", 200).unwrap();
    assert_eq!(s.banned_until("u1").unwrap(), Some(100));
    s.ban("u1", 50).unwrap();
    assert_eq!(s.banned_until("u1").unwrap(), Some(50), "replaced, not extended");
    s.forget_bans(49).unwrap();
    assert_eq!(s.banned_until("u1").unwrap(), Some(50));
    s.forget_bans(50).unwrap();
    assert_eq!(s.banned_until("u1").unwrap(), None, "ended at 50");
    assert_eq!(s.banned_until("u2").unwrap(), Some(200));
}

/// Outbox rows are numbered in push order from 1, and a number is never used again, even when
/// the newest row was deleted.
pub fn outbox_numbers_rows(s: &mut impl Store) {
    for (ts, body) in [(10, r#"{"a":1}"#), (11, "ünï 🎉"), (12, "x")] {
        s.outbox_push(ts, body).unwrap();
    }
    let rows = s.outbox_take(10, usize::MAX).unwrap();
    let got: Vec<(u64, u64, &str)> = rows.iter().map(|r| (r.n, r.ts, r.body.as_str())).collect();
    assert_eq!(got, [(1, 10, r#"{"a":1}"#), (2, 11, "ünï 🎉"), (3, 12, "x")]);
    s.outbox_delete(&[2]).unwrap();
    assert_eq!(outbox_ns(s), [1, 3]);
    s.outbox_delete(&[3]).unwrap();
    s.outbox_push(13, "y").unwrap();
    assert_eq!(outbox_ns(s), [1, 4], "3 is not used again");
}

/// `outbox_take`: the first `limit` pending rows in row order, stopping once the body bytes
/// before one reach `max_bytes` (the first always comes); dead letters are skipped.
pub fn outbox_take_limits(s: &mut impl Store) {
    for bytes in [10, 20, 30, 40] {
        s.outbox_push(1, &"b".repeat(bytes)).unwrap();
    }
    s.outbox_push(1, "éé").unwrap(); // 4 bytes, 2 characters
    assert_eq!(s.outbox_take(2, usize::MAX).unwrap().len(), 2);
    assert!(s.outbox_take(0, usize::MAX).unwrap().is_empty());
    let ns = |rows: Vec<super::OutboxRow>| rows.iter().map(|r| r.n).collect::<Vec<_>>();
    assert_eq!(ns(s.outbox_take(10, 30).unwrap()), [1, 2], "10 + 20 reach 30");
    assert_eq!(ns(s.outbox_take(10, 31).unwrap()), [1, 2, 3]);
    assert_eq!(ns(s.outbox_take(10, 0).unwrap()), [1], "the first always comes");
    s.outbox_delete(&[1, 2, 3]).unwrap();
    assert_eq!(ns(s.outbox_take(10, 44).unwrap()), [4, 5], "40 bytes before 5: below 44");
    assert_eq!(ns(s.outbox_take(10, 40).unwrap()), [4]);
    s.outbox_push(1_000, "late").unwrap();
    s.outbox_mark_dead(2, 5).unwrap();
    assert_eq!(ns(s.outbox_take(10, usize::MAX).unwrap()), [6], "dead letters are skipped");
}

/// Dead letters: pending rows queued before a time become dead letters, set aside now (counted,
/// with their bytes); a requeue makes every dead letter pending again, queued now, with its row
/// number. Each change says what it changed.
pub fn outbox_dead_letters(s: &mut impl Store) {
    for (ts, body) in [(1, "e"), (2, "éé"), (3, "eee")] {
        s.outbox_push(ts, body).unwrap();
    }
    let c = OutboxCounts { pending: 3, pending_bytes: 8, oldest_pending: Some(1), ..OutboxCounts::default() };
    assert_eq!(s.outbox_counts().unwrap(), c, "bytes, not characters");
    assert_eq!(s.outbox_mark_dead(3, 10).unwrap(), OutboxSize { events: 2, bytes: 5 }, "ts 1 and 2 are below 3");
    assert_eq!(s.outbox_mark_dead(3, 11).unwrap(), OutboxSize::ZERO, "already dead");
    let c = OutboxCounts { pending: 1, pending_bytes: 3, oldest_pending: Some(3), dead: 2, dead_bytes: 5, oldest_dead: Some(10), ..c };
    assert_eq!(s.outbox_counts().unwrap(), c, "set aside at 10");
    assert_eq!(s.outbox_oldest_dead().unwrap(), Some(10));
    assert!(s.outbox_any_pending().unwrap());
    assert_eq!(s.outbox_mark_dead(4, 12).unwrap(), OutboxSize::one(3));
    assert!(!s.outbox_any_pending().unwrap());
    let c = OutboxCounts { pending: 0, pending_bytes: 0, oldest_pending: None, dead: 3, dead_bytes: 8, ..c };
    assert_eq!(s.outbox_counts().unwrap(), c);
    assert_eq!(s.outbox_requeue(50).unwrap(), OutboxSize { events: 3, bytes: 8 });
    assert_eq!(s.outbox_requeue(60).unwrap(), OutboxSize::ZERO, "none is dead");
    assert_eq!(s.outbox_oldest_dead().unwrap(), None);
    let rows = s.outbox_take(10, usize::MAX).unwrap();
    assert_eq!(rows.iter().map(|r| (r.n, r.ts)).collect::<Vec<_>>(), [(1, 50), (2, 50), (3, 50)], "same rows, queued again");
    let c = OutboxCounts { pending: 3, pending_bytes: 8, oldest_pending: Some(50), ..OutboxCounts::default() };
    assert_eq!(s.outbox_counts().unwrap(), c);
    s.outbox_mark_dead(51, 60).unwrap();
    assert_eq!(s.outbox_delete(&[2]).unwrap(), OutboxSize::ZERO, "a dead letter is not a delivered batch");
    assert_eq!(s.outbox_counts().unwrap().dead, 3);
}

/// Refused events (issue #22): `outbox_refuse` makes one pending row a dead letter that keeps the
/// receiver's status, set aside now; counted in `dead` and in `refused`, the last one (by row
/// number) with its status. A row that is not pending is left alone. A requeue brings refused
/// letters back too.
pub fn outbox_refused_letters(s: &mut impl Store) {
    for ts in [1, 2, 3, 4, 5] {
        s.outbox_push(ts, "e").unwrap();
    }
    assert_eq!(s.outbox_refuse(4, 422, 20).unwrap(), OutboxSize::one(1));
    assert_eq!(s.outbox_refuse(2, 400, 21).unwrap(), OutboxSize::one(1));
    let c = s.outbox_counts().unwrap();
    let expect = OutboxCounts {
        pending: 3,
        pending_bytes: 3,
        oldest_pending: Some(1),
        dead: 2,
        dead_bytes: 2,
        oldest_dead: Some(20),
        refused: 2,
        last_refused: Some((4, 422)),
    };
    assert_eq!(c, expect);
    assert_eq!(outbox_ns(s), [1, 3, 5], "refused rows are not taken");
    s.outbox_mark_dead(2, 22).unwrap(); // row 1, for its age: dead, not refused
    assert_eq!(s.outbox_refuse(1, 413, 23).unwrap(), OutboxSize::ZERO);
    assert_eq!(s.outbox_refuse(4, 400, 23).unwrap(), OutboxSize::ZERO);
    assert_eq!(s.outbox_refuse(99, 400, 23).unwrap(), OutboxSize::ZERO);
    let c = s.outbox_counts().unwrap();
    assert_eq!((c.dead, c.refused, c.last_refused), (3, 2, Some((4, 422))), "dead letters keep what made them dead");
    s.outbox_refuse(5, 0, 24).unwrap(); // a status below 2 still reads as refused
    assert_eq!(s.outbox_counts().unwrap().refused, 3);
    assert_eq!(s.outbox_requeue(70).unwrap().events, 4);
    let c = OutboxCounts { pending: 5, pending_bytes: 5, oldest_pending: Some(3), ..OutboxCounts::default() };
    assert_eq!(s.outbox_counts().unwrap(), c);
    assert_eq!(outbox_ns(s), [1, 2, 3, 4, 5], "the same rows, pending again");
    s.outbox_refuse(3, 503, 80).unwrap();
    assert_eq!(s.outbox_counts().unwrap().last_refused, Some((3, 503)));
}

/// Expiry: dead letters set aside before a time are deleted (pending events never are, however
/// old); what was deleted is returned.
pub fn outbox_expire_by_set_aside_time(s: &mut impl Store) {
    for ts in [1, 2, 3, 4] {
        s.outbox_push(ts, "ab").unwrap();
    }
    s.outbox_mark_dead(2, 100).unwrap(); // row 1, set aside at 100
    s.outbox_refuse(3, 400, 200).unwrap(); // row 3, at 200
    assert_eq!(s.outbox_expire(100).unwrap(), OutboxSize::ZERO, "set aside at 100: not before 100");
    assert_eq!(s.outbox_expire(101).unwrap(), OutboxSize::one(2));
    assert_eq!(s.outbox_oldest_dead().unwrap(), Some(200));
    assert_eq!(s.outbox_expire(1_000).unwrap(), OutboxSize::one(2));
    assert_eq!(s.outbox_oldest_dead().unwrap(), None);
    assert_eq!(outbox_ns(s), [2, 4], "pending events are never expired");
    assert_eq!(s.outbox_counts().unwrap().dead, 0);
}

/// Eviction: dead letters go in the order they were set aside (row order among equals) until
/// both the events and the bytes asked for are gone, or none is left; pending events never go.
pub fn outbox_evict_first_set_aside_first(s: &mut impl Store) {
    for (ts, bytes) in [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)] {
        s.outbox_push(ts, &"x".repeat(bytes)).unwrap();
    }
    s.outbox_refuse(5, 400, 100).unwrap(); // 50 bytes, set aside at 100
    s.outbox_refuse(2, 400, 300).unwrap(); // 20 bytes, at 300
    s.outbox_mark_dead(2, 200).unwrap(); // row 1, 10 bytes, at 200
    s.outbox_refuse(4, 400, 100).unwrap(); // 40 bytes, at 100 too: before row 5 in row order
    assert_eq!(s.outbox_evict(OutboxSize::ZERO).unwrap(), OutboxSize::ZERO);
    // set-aside order: row 4 (100), row 5 (100), row 1 (200), row 2 (300)
    assert_eq!(s.outbox_evict(OutboxSize { events: 1, bytes: 0 }).unwrap(), OutboxSize::one(40));
    assert_eq!(s.outbox_evict(OutboxSize { events: 1, bytes: 55 }).unwrap(), OutboxSize { events: 2, bytes: 60 }, "rows 5 and 1");
    assert_eq!(s.outbox_oldest_dead().unwrap(), Some(300));
    assert_eq!(s.outbox_evict(OutboxSize { events: 5, bytes: 0 }).unwrap(), OutboxSize::one(20), "all that is left");
    assert_eq!(s.outbox_evict(OutboxSize { events: 1, bytes: 1 }).unwrap(), OutboxSize::ZERO);
    assert_eq!(outbox_ns(s), [3, 6]);
    let c = s.outbox_counts().unwrap();
    assert_eq!((c.pending, c.pending_bytes, c.dead), (2, 90, 0));
}

/// `outbox_delete` deletes exactly the rows named, ignores unknown ones, and takes any number.
pub fn outbox_delete_exactly(s: &mut impl Store) {
    for i in 0..250 {
        s.outbox_push(i, "e").unwrap();
    }
    assert_eq!(s.outbox_delete(&[]).unwrap(), OutboxSize::ZERO);
    assert_eq!(s.outbox_delete(&[999, 0]).unwrap(), OutboxSize::ZERO);
    assert_eq!(s.outbox_counts().unwrap().pending, 250);
    let even: Vec<u64> = (1..=250).filter(|n| n % 2 == 0).collect();
    assert_eq!(s.outbox_delete(&even).unwrap(), OutboxSize { events: 125, bytes: 125 });
    assert_eq!(outbox_ns(s), (1..=250).filter(|n| n % 2 == 1).collect::<Vec<_>>());
}

/// The webhook state is one record, replaced whole.
pub fn webhook_state_replaced(s: &mut impl Store) {
    let first = WebhookState { key: "k1".into(), failures: 3, next_at: 1_700_000_000_000, last_error: Some("HTTP 500 ü".into()) };
    s.put_webhook_state(&first).unwrap();
    assert_eq!(s.webhook_state().unwrap(), Some(first));
    let second = WebhookState { key: "k1".into(), failures: u32::MAX, next_at: 0, last_error: None };
    s.put_webhook_state(&second).unwrap();
    assert_eq!(s.webhook_state().unwrap(), Some(second));
}

/// Present users: one record per user (meta replaced), listed in user order.
pub fn present_users_by_user(s: &mut impl Store) {
    s.put_present("zoë", None).unwrap();
    s.put_present("alice", Some("1")).unwrap();
    s.put_present("bob", Some(r#"{"x":"ü"}"#)).unwrap();
    s.put_present("alice", None).unwrap();
    let expect = |l: &[(&str, Option<&str>)]| l.iter().map(|(u, m)| (u.to_string(), m.map(str::to_owned))).collect::<Vec<_>>();
    assert_eq!(s.present_users().unwrap(), expect(&[("alice", None), ("bob", Some(r#"{"x":"ü"}"#)), ("zoë", None)]));
    s.delete_present("bob").unwrap();
    s.delete_present("nobody").unwrap();
    assert_eq!(s.present_users().unwrap(), expect(&[("alice", None), ("zoë", None)]));
}

/// Session connections: by conn, replaced whole, deleted exactly; kept by a history reset.
pub fn relays_by_conn(s: &mut impl Store) {
    created(s);
    let row = |conn: u64, device: u64, info: &str| RelayRow { conn, session: "alice".into(), device, info: info.into() };
    s.put_relay(&row(9, 2, "{}")).unwrap();
    s.put_relay(&row(3, 1, r#"{"u":"zoë"}"#)).unwrap();
    s.put_relay(&row(9, 2, r#"{"x":1}"#)).unwrap();
    assert_eq!(s.relays().unwrap(), vec![row(3, 1, r#"{"u":"zoë"}"#), row(9, 2, r#"{"x":1}"#)]);
    s.reset(&RoomMeta { epoch: "e2".into(), seq: 0 }).unwrap();
    s.delete_relay(3).unwrap();
    s.delete_relay(77).unwrap();
    assert_eq!(s.relays().unwrap(), vec![row(9, 2, r#"{"x":1}"#)]);
}

/// Feed subscribers: by session, replaced whole, deleted exactly.
pub fn subscribers_by_session(s: &mut impl Store) {
    let row = |session: &str, seq: u64, extras: bool| SubscriberRow { session: session.into(), epoch: "e1".into(), seq, extras };
    s.put_subscriber(&row("bob", 4, true)).unwrap();
    s.put_subscriber(&row("alice", 1, false)).unwrap();
    s.put_subscriber(&row("bob", 7, false)).unwrap();
    assert_eq!(s.subscribers().unwrap(), vec![row("alice", 1, false), row("bob", 7, false)]);
    s.delete_subscriber("alice").unwrap();
    s.delete_subscriber("nobody").unwrap();
    assert_eq!(s.subscribers().unwrap(), vec![row("bob", 7, false)]);
}

/// Integers up to 2^53 − 1 come back exactly; larger ones may be saturated, but never come back
/// smaller than that (a wrapped ban or due time would end at once).
pub fn above_max_int_saturates_never_wraps(s: &mut impl Store) {
    s.ban("exact", MAX_INT).unwrap();
    assert_eq!(s.banned_until("exact").unwrap(), Some(MAX_INT));
    s.ban("huge", u64::MAX).unwrap();
    assert!(s.banned_until("huge").unwrap().is_some_and(|t| t >= MAX_INT));
    s.forget_bans(1_700_000_000_000).unwrap();
    assert!(s.banned_until("huge").unwrap().is_some(), "still banned");
    s.put_pending_leave(&PendingLeave { user: "u".into(), due: u64::MAX, meta: None }).unwrap();
    assert!(s.pending_leaves().unwrap()[0].due >= MAX_INT);
    s.create(&RoomMeta { epoch: "e".into(), seq: 0 }).unwrap();
    s.trim(0, 0, u64::MAX).unwrap();
    assert!(s.meta().unwrap().unwrap().seq >= MAX_INT);
}

/// Makes every conformance case a `#[test]` of a store: `conformance_tests!(expr)` where `expr`
/// makes a fresh store.
macro_rules! conformance_tests {
    ($fresh:expr) => {
        $crate::store::conformance::conformance_tests!(@cases $fresh;
            fresh_store_is_empty, create_once, meta_seq_follows_history, append_round_trips,
            append_refuses_taken_seq_and_key, find_matches_the_whole_key, append_new_is_idempotent,
            after_reads_forward, before_reads_backward, pages_stop_at_max_bytes, oldest_and_count,
            trim_by_seq_or_age, trim_before_create, reset_keeps_all_but_history, reset_before_create,
            pending_leaves_by_user, client_bindings, bans, outbox_numbers_rows, outbox_take_limits,
            outbox_dead_letters, outbox_refused_letters, outbox_expire_by_set_aside_time,
            outbox_evict_first_set_aside_first, outbox_delete_exactly, webhook_state_replaced, present_users_by_user,
            relays_by_conn, subscribers_by_session, above_max_int_saturates_never_wraps);
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                let mut store = $fresh;
                $crate::store::conformance::$case(&mut store);
            }
        )*
    };
}
pub(crate) use conformance_tests;
