//! Presence keyed by user: a user is present while any of their connections is open, and for a
//! grace period after the last one closed, so that a reconnect does not flicker leave/join.

use crate::compact::CompactJson;
use crate::frame::{MemberView, PresenceEvent};
use crate::sorted::SortedMap;

/// A connection's number in the room (ids grow with time, so the largest is the newest).
type ConnId = u64;

#[derive(Debug, Clone)]
pub struct Member {
    pub connections: u32,
    /// The meta of the user's newest live connection that has one; kept through the grace period
    /// after the last one closed.
    pub meta: Option<CompactJson>,
    /// Set while the user has no connection left: when they leave unless one opens.
    pub leave_at: Option<u64>,
    /// The metas of the live connections, by connection id.
    metas: SortedMap<ConnId, Option<CompactJson>>,
}

impl Member {
    fn newest_meta(&self) -> Option<CompactJson> {
        self.metas.values().rev().find_map(Clone::clone)
    }
}

/// A change to announce to the room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub event: PresenceEvent,
    pub user: String,
}

#[derive(Debug, Default, Clone)]
pub struct Presence {
    members: SortedMap<String, Member>,
}

impl Presence {
    /// Connection `conn` of `user` opened, with its token's (or query's) meta.
    pub fn connect(&mut self, user: &str, conn: ConnId, meta: Option<CompactJson>) -> Change {
        let (m, event) = match self.members.get_mut(user) {
            Some(m) => (m, PresenceEvent::Update),
            None => {
                let fresh = Member { connections: 0, meta: None, leave_at: None, metas: SortedMap::new() };
                (self.members.entry(user.to_owned()).or_insert(fresh), PresenceEvent::Join)
            }
        };
        m.connections += 1;
        m.leave_at = None;
        m.metas.insert(conn, meta);
        m.meta = m.newest_meta();
        Change { event, user: user.to_owned() }
    }

    /// Connection `conn` of `user` now has `meta` (it set its presence state).
    pub fn set_meta(&mut self, user: &str, conn: ConnId, meta: Option<CompactJson>) {
        if let Some(m) = self.members.get_mut(user) {
            if let Some(slot) = m.metas.get_mut(&conn) {
                *slot = meta;
                m.meta = m.newest_meta();
            }
        }
    }

    /// Restores a connection after the object woke from hibernation; announces nothing.
    pub fn restore(&mut self, user: &str, conn: ConnId, meta: Option<CompactJson>) {
        let _ = self.connect(user, conn, meta);
    }

    /// Restores a user in their grace period after a wake.
    pub fn restore_pending(&mut self, user: &str, meta: Option<CompactJson>, due: u64) {
        self.members.entry(user.to_owned()).or_insert(Member { connections: 0, meta, leave_at: Some(due), metas: SortedMap::new() });
    }

    /// Connection `conn` of `user` closed. With connections left the member is updated (their
    /// meta becomes that of their newest remaining connection), during the grace period it keeps
    /// its last meta, and with no grace the user leaves at once.
    pub fn disconnect(&mut self, user: &str, conn: ConnId, now: u64, grace_ms: u64) -> Option<Change> {
        let m = self.members.get_mut(user)?;
        m.connections = m.connections.saturating_sub(1);
        if m.metas.remove(&conn).is_some() && !m.metas.is_empty() {
            m.meta = m.newest_meta();
        }
        if m.connections == 0 {
            if grace_ms == 0 {
                self.members.remove(user);
                return Some(Change { event: PresenceEvent::Leave, user: user.to_owned() });
            }
            m.leave_at = Some(now.saturating_add(grace_ms));
        }
        Some(Change { event: PresenceEvent::Update, user: user.to_owned() })
    }

    /// Removes every user whose grace period ended by `now`, returning them with the meta they
    /// kept through it.
    pub fn expire(&mut self, now: u64) -> Vec<(String, Option<CompactJson>)> {
        let due: Vec<String> = self.members.iter().filter(|(_, m)| m.leave_at.is_some_and(|t| t <= now)).map(|(u, _)| u.clone()).collect();
        due.into_iter().filter_map(|user| self.members.remove(&user).map(|m| (user, m.meta))).collect()
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
        assert_eq!(p.connect("a", 1, None).event, PresenceEvent::Join);
        assert_eq!(p.connect("a", 2, None).event, PresenceEvent::Update);
        assert_eq!(p.get("a").unwrap().connections, 2);
        assert_eq!(p.disconnect("a", 1, 100, 50).unwrap().event, PresenceEvent::Update);
        assert_eq!(p.disconnect("a", 2, 100, 50).unwrap().event, PresenceEvent::Update);
        assert_eq!(p.next_due(), Some(150));
        assert!(p.expire(149).is_empty());
        // a reconnect within grace cancels the leave
        assert_eq!(p.connect("a", 3, None).event, PresenceEvent::Update);
        assert_eq!(p.next_due(), None);
        p.disconnect("a", 3, 200, 50);
        assert_eq!(p.expire(250), vec![("a".to_string(), None)]);
        assert!(p.is_empty());
    }

    #[test]
    fn zero_grace_leaves_at_once_and_unknown_users_are_ignored() {
        let mut p = Presence::default();
        p.connect("b", 1, None);
        assert_eq!(p.disconnect("b", 1, 0, 0).unwrap().event, PresenceEvent::Leave);
        assert!(p.disconnect("b", 1, 0, 0).is_none());
    }

    #[test]
    fn meta_is_the_newest_live_connections() {
        let meta = |s: &str| Some(CompactJson::parse(s).unwrap());
        let mut p = Presence::default();
        p.connect("u", 1, meta(r#"{"device":"phone"}"#));
        p.connect("u", 2, meta(r#"{"device":"laptop"}"#));
        p.connect("u", 3, None);
        assert_eq!(p.get("u").unwrap().meta, meta(r#"{"device":"laptop"}"#), "the newest that has one");
        p.disconnect("u", 2, 0, 1_000);
        assert_eq!(p.get("u").unwrap().meta, meta(r#"{"device":"phone"}"#), "the laptop's meta left with it");
        p.disconnect("u", 1, 0, 1_000);
        p.disconnect("u", 3, 0, 1_000);
        assert_eq!(p.get("u").unwrap().meta, None, "no live connection with meta");
        p.connect("v", 4, meta(r#"{"a":1}"#));
        p.disconnect("v", 4, 0, 1_000);
        assert_eq!(p.get("v").unwrap().meta, meta(r#"{"a":1}"#), "kept through the grace period");
    }
}
