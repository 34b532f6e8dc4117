//! Presence announcements, coalesced per user. Every change to a user's presence is announced at
//! once while the user's budget allows (`PRESENCE_RATE_PER_SEC`, burst twice that); beyond it the
//! change is held and the user's *latest* state goes out when the budget refills. So a user who
//! churns connections costs each member a bounded number of frames per second, and what the
//! others see still converges to the truth: a member who is present was announced (join), a member
//! who left was announced (leave), never the other way round.

use crate::frame::PresenceEvent;
use crate::limit::Bucket;
use crate::sorted::SortedMap;

#[derive(Debug)]
struct Seen {
    budget: Bucket,
    /// Whether the others were last told this user is present.
    shown: bool,
    /// A change is held until this time.
    held_until: Option<u64>,
}

#[derive(Debug)]
pub struct Announcer {
    rate: u64,
    users: SortedMap<String, Seen>,
}

/// What the others must be told, given what they were told and the truth.
fn event(shown: bool, present: bool) -> Option<PresenceEvent> {
    match (shown, present) {
        (false, true) => Some(PresenceEvent::Join),
        (true, true) => Some(PresenceEvent::Update),
        (true, false) => Some(PresenceEvent::Leave),
        (false, false) => None,
    }
}

impl Announcer {
    pub fn new(rate_per_sec: u64) -> Announcer {
        Announcer { rate: rate_per_sec.max(1), users: SortedMap::new() }
    }

    fn seen(&mut self, user: &str, now: u64) -> &mut Seen {
        let rate = self.rate;
        self.users.entry(user.to_owned()).or_insert_with(|| Seen {
            budget: Bucket::new(rate.saturating_mul(2), rate, now),
            shown: false,
            held_until: None,
        })
    }

    /// A user the others already know about (restored after a wake).
    pub fn restore(&mut self, user: &str, now: u64) {
        self.seen(user, now).shown = true;
    }

    /// The user's presence changed (`present`: whether they are a member now). Returns the event
    /// to announce now, or `None` when there is nothing to say or the change is held.
    pub fn changed(&mut self, user: &str, present: bool, now: u64) -> Option<PresenceEvent> {
        let seen = self.seen(user, now);
        if seen.held_until.is_some() {
            return None;
        }
        if seen.budget.take(1, now) {
            let e = event(seen.shown, present);
            seen.shown = present;
            return e;
        }
        seen.held_until = Some(now.saturating_add(seen.budget.wait_ms(1, now).max(1)));
        None
    }

    /// The held changes whose time has come, with what to announce (`is_present` gives the truth).
    pub fn due(&mut self, now: u64, is_present: impl Fn(&str) -> bool) -> Vec<(String, PresenceEvent)> {
        let mut out = Vec::new();
        for (user, seen) in self.users.iter_mut() {
            if seen.held_until.is_some_and(|t| t <= now) && seen.budget.take(1, now) {
                seen.held_until = None;
                let present = is_present(user);
                if let Some(e) = event(seen.shown, present) {
                    out.push((user.clone(), e));
                }
                seen.shown = present;
            } else if seen.held_until.is_some_and(|t| t <= now) {
                seen.held_until = Some(now.saturating_add(seen.budget.wait_ms(1, now).max(1)));
            }
        }
        out
    }

    /// When the next held change is due.
    pub fn next_due(&self) -> Option<u64> {
        self.users.values().filter_map(|s| s.held_until).min()
    }

    /// Forgets users nobody was told about, with nothing held and a full budget.
    pub fn prune(&mut self, now: u64) {
        self.users.retain(|_, s| s.shown || s.held_until.is_some() || !s.budget.is_full(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn within_budget_every_change_is_announced() {
        let mut a = Announcer::new(5);
        assert_eq!(a.changed("u", true, 0), Some(PresenceEvent::Join));
        assert_eq!(a.changed("u", true, 0), Some(PresenceEvent::Update));
        assert_eq!(a.changed("u", false, 0), Some(PresenceEvent::Leave));
        assert_eq!(a.changed("u", false, 0), None, "nothing to say about someone already gone");
    }

    #[test]
    fn churn_beyond_the_budget_is_coalesced_into_the_latest_state() {
        let mut a = Announcer::new(1); // burst 2
        assert_eq!(a.changed("u", true, 0), Some(PresenceEvent::Join));
        assert_eq!(a.changed("u", true, 0), Some(PresenceEvent::Update));
        assert_eq!(a.changed("u", false, 0), None, "held");
        assert_eq!(a.changed("u", true, 10), None, "still held");
        assert_eq!(a.next_due(), Some(1000));
        assert!(a.due(999, |_| true).is_empty());
        assert_eq!(a.due(1000, |_| false), vec![("u".to_string(), PresenceEvent::Leave)], "the latest state wins");
        assert_eq!(a.next_due(), None);
    }

    proptest! {
        /// Whatever the churn, at most burst + rate x time frames are sent about a user, and once
        /// the held changes are flushed the others' view equals the truth.
        #[test]
        fn bounded_and_convergent(changes in proptest::collection::vec((0u64..300, any::<bool>()), 1..200)) {
            let mut a = Announcer::new(2);
            let (mut now, mut sent, mut shown, mut truth) = (0u64, 0u64, false, false);
            let apply = |e: PresenceEvent, shown: &mut bool| match e {
                PresenceEvent::Join => { assert!(!*shown); *shown = true }
                PresenceEvent::Update => assert!(*shown),
                PresenceEvent::Leave => { assert!(*shown); *shown = false }
            };
            for (dt, present) in changes {
                now += dt;
                for (_, e) in a.due(now, |_| truth) { sent += 1; apply(e, &mut shown); }
                truth = present;
                if let Some(e) = a.changed("u", present, now) { sent += 1; apply(e, &mut shown); }
            }
            prop_assert!(sent as f64 <= 4.0 + 2.0 * now as f64 / 1000.0 + 1e-9);
            while let Some(t) = a.next_due() {
                now = now.max(t);
                for (_, e) in a.due(now, |_| truth) { apply(e, &mut shown); }
            }
            prop_assert_eq!(shown, truth);
        }
    }
}
