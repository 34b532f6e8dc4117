//! Presence keyed by user: a user is present while any of their connections is open, and for a
//! grace period after the last one closed, so that a reconnect does not flicker leave/join.

use crate::frame::{MemberView, PresenceEvent};
use crate::compact::CompactJson;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct Member {
    pub connections: u32,
    pub meta: Option<CompactJson>,
    /// Set while the user has no connection left: when they leave unless one opens.
    pub leave_at: Option<u64>,
}

/// A change to announce to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub event: PresenceEvent,
    pub user: String,
}

#[derive(Debug, Default, Clone)]
pub struct Presence {
    members: BTreeMap<String, Member>,
}

impl Presence {
    /// A connection of `user` opened.
    pub fn connect(&mut self, user: &str, meta: Option<CompactJson>) -> Change {
        let event = match self.members.get_mut(user) {
            Some(m) => {
                m.connections += 1;
                m.leave_at = None;
                if meta.is_some() {
                    m.meta = meta;
                }
                PresenceEvent::Update
            }
            None => {
                self.members.insert(user.to_owned(), Member { connections: 1, meta, leave_at: None });
                PresenceEvent::Join
            }
        };
        Change { event, user: user.to_owned() }
    }

    /// Restores a connection after the object woke from hibernation; announces nothing.
    pub fn restore(&mut self, user: &str, meta: Option<CompactJson>) {
        let _ = self.connect(user, meta);
    }

    /// Restores a user in their grace period after a wake.
    pub fn restore_pending(&mut self, user: &str, meta: Option<CompactJson>, due: u64) {
        self.members.entry(user.to_owned()).or_insert(Member { connections: 0, meta, leave_at: Some(due) });
    }

    /// A connection of `user` closed. With connections left, or during the grace period, the
    /// member is updated; with no grace the user leaves at once.
    pub fn disconnect(&mut self, user: &str, now: u64, grace_ms: u64) -> Option<Change> {
        let m = self.members.get_mut(user)?;
        m.connections = m.connections.saturating_sub(1);
        if m.connections == 0 {
            if grace_ms == 0 {
                self.members.remove(user);
                return Some(Change { event: PresenceEvent::Leave, user: user.to_owned() });
            }
            m.leave_at = Some(now.saturating_add(grace_ms));
        }
        Some(Change { event: PresenceEvent::Update, user: user.to_owned() })
    }

    /// Removes every user whose grace period ended by `now`, returning them.
    pub fn expire(&mut self, now: u64) -> Vec<String> {
        let due: Vec<String> =
            self.members.iter().filter(|(_, m)| m.leave_at.is_some_and(|t| t <= now)).map(|(u, _)| u.clone()).collect();
        for user in &due {
            self.members.remove(user);
        }
        due
    }

    /// When the next grace period ends.
    pub fn next_due(&self) -> Option<u64> {
        self.members.values().filter_map(|m| m.leave_at).min()
    }

    pub fn get(&self, user: &str) -> Option<&Member> {
        self.members.get(user)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Users with at least one open connection.
    pub fn connected_users(&self) -> impl Iterator<Item = &str> {
        self.members.iter().filter(|(_, m)| m.connections > 0).map(|(u, _)| u.as_str())
    }

    pub fn view<'a>(&'a self, user: &'a str) -> MemberView<'a> {
        match self.members.get(user) {
            Some(m) => MemberView { user, connections: m.connections, meta: m.meta.as_ref() },
            None => MemberView { user, connections: 0, meta: None },
        }
    }

    pub fn views(&self) -> Vec<MemberView<'_>> {
        self.members.iter().map(|(u, m)| MemberView { user: u, connections: m.connections, meta: m.meta.as_ref() }).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_update_grace_and_leave() {
        let mut p = Presence::default();
        assert_eq!(p.connect("a", None).event, PresenceEvent::Join);
        assert_eq!(p.connect("a", None).event, PresenceEvent::Update);
        assert_eq!(p.get("a").unwrap().connections, 2);
        assert_eq!(p.disconnect("a", 100, 50).unwrap().event, PresenceEvent::Update);
        assert_eq!(p.disconnect("a", 100, 50).unwrap().event, PresenceEvent::Update);
        assert_eq!(p.next_due(), Some(150));
        assert!(p.expire(149).is_empty());
        // a reconnect within grace cancels the leave
        assert_eq!(p.connect("a", None).event, PresenceEvent::Update);
        assert_eq!(p.next_due(), None);
        p.disconnect("a", 200, 50);
        assert_eq!(p.expire(250), vec!["a".to_string()]);
        assert!(p.is_empty());
    }

    #[test]
    fn zero_grace_leaves_at_once_and_unknown_users_are_ignored() {
        let mut p = Presence::default();
        p.connect("b", None);
        assert_eq!(p.disconnect("b", 0, 0).unwrap().event, PresenceEvent::Leave);
        assert!(p.disconnect("b", 0, 0).is_none());
    }
}
