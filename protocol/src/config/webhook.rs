//! The `WEBHOOK_*` vars, parsed once per room load. Missing or unparsable values keep their
//! defaults; nothing here fails: a configuration that cannot deliver (no secret, a bad URL) still
//! records events, and says why it does not deliver them (`WebhookConfig::problem`, shown as the
//! stats' `webhook.lastError`). What the outbox does with them is [`crate::webhook`].

use crate::token;
use std::fmt;

/// The kinds of event a room reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    MessagePublished,
    PresenceJoined,
    PresenceLeft,
    RoomOccupied,
    RoomVacated,
    /// A user's first session socket connected (sessions, `GET /session/ws`): opt-in.
    UserOnline,
    /// A user's last session socket went and the grace period passed: opt-in.
    UserOffline,
}

impl EventKind {
    pub const ALL: [EventKind; 7] = [
        EventKind::MessagePublished,
        EventKind::PresenceJoined,
        EventKind::PresenceLeft,
        EventKind::RoomOccupied,
        EventKind::RoomVacated,
        EventKind::UserOnline,
        EventKind::UserOffline,
    ];

    /// The event's `type`, as in `WEBHOOK_EVENTS`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::MessagePublished => "message.published",
            EventKind::PresenceJoined => "presence.joined",
            EventKind::PresenceLeft => "presence.left",
            EventKind::RoomOccupied => "room.occupied",
            EventKind::RoomVacated => "room.vacated",
            EventKind::UserOnline => "user.online",
            EventKind::UserOffline => "user.offline",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of event kinds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct EventSet(u8);

impl EventSet {
    pub const NONE: EventSet = EventSet(0);
    /// Presence and occupancy; `message.published` only when listed.
    pub const DEFAULT: EventSet = EventSet(
        (1 << EventKind::PresenceJoined as u8)
            | (1 << EventKind::PresenceLeft as u8)
            | (1 << EventKind::RoomOccupied as u8)
            | (1 << EventKind::RoomVacated as u8),
    );

    /// A comma-separated list of event names; unknown names are ignored, and an empty list is
    /// the default.
    pub fn parse(list: &str) -> EventSet {
        if list.trim().is_empty() {
            return EventSet::DEFAULT;
        }
        list.split(',').filter_map(|n| EventKind::parse(n.trim())).fold(EventSet::NONE, |s, k| s.with(k))
    }

    pub fn with(self, kind: EventKind) -> EventSet {
        EventSet(self.0 | kind.bit())
    }

    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & kind.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether a user's sessions are reported (`user.online`, `user.offline`).
    pub fn wants_users(self) -> bool {
        self.contains(EventKind::UserOnline) || self.contains(EventKind::UserOffline)
    }

    /// Whether presence is tracked for webhooks at all (joins, leaves or occupancy).
    pub fn wants_presence(self) -> bool {
        [EventKind::PresenceJoined, EventKind::PresenceLeft, EventKind::RoomOccupied, EventKind::RoomVacated]
            .into_iter()
            .any(|k| self.contains(k))
    }
}

impl fmt::Debug for EventSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(EventKind::ALL.into_iter().filter(|k| self.contains(*k)).map(EventKind::name)).finish()
    }
}

/// The HMAC key of `WEBHOOK_SECRET` (the bytes after `whsec_`, base64-decoded). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// A Standard Webhooks secret: `whsec_` + standard base64 (the prefix is optional, as the
    /// standard's libraries accept it). The key must not be empty.
    pub fn parse(secret: &str) -> Result<SigningKey, &'static str> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err("WEBHOOK_SECRET is not set");
        }
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        match crate::b64::decode(encoded, crate::b64::Form::Standard) {
            Some(bytes) if !bytes.is_empty() => Ok(SigningKey(bytes)),
            _ => Err("WEBHOOK_SECRET is not whsec_ followed by a base64 key"),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

/// The default of `WEBHOOK_BATCH_MAX_BYTES`: a POST's body is at most this long, unless it holds
/// one event (which always goes, whatever its size). At 150 ms a POST, 2 MiB a batch drains about
/// 10 MiB/s locally, more than one member may publish (6 MiB/s at the default limits:
/// docs/RELIABILITY.md).
pub const BATCH_MAX_BYTES: usize = 2 * 1024 * 1024;
/// The largest `WEBHOOK_BATCH_MAX_BYTES` honoured.
pub const BATCH_MAX_BYTES_LIMIT: usize = 16 * 1024 * 1024;
/// The largest `WEBHOOK_BATCH_MAX` honoured.
pub const BATCH_MAX_LIMIT: usize = 1000;
/// The longest `WEBHOOK_TIMEOUT_MS` honoured: a POST never holds a room's alarm longer.
pub const TIMEOUT_MAX_MS: u64 = 60_000;
/// The largest `WEBHOOK_OUTBOX_MAX_EVENTS` honoured.
pub const OUTBOX_MAX_EVENTS_LIMIT: u64 = 1_000_000;
/// The largest `WEBHOOK_OUTBOX_MAX_BYTES` honoured: with presence's reserve (twice the cap) and
/// history's own ceiling (100,000 messages of 64 KiB), a room stays within an object's 10 GB.
pub const OUTBOX_MAX_BYTES_LIMIT: u64 = 1024 * 1024 * 1024;

/// The webhook settings of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `WEBHOOK_URL`; empty: webhooks are off and nothing is recorded.
    pub url: String,
    /// `WEBHOOK_SECRET`, or why there is no usable key.
    pub key: Result<SigningKey, &'static str>,
    /// `WEBHOOK_EVENTS`.
    pub events: EventSet,
    /// `WEBHOOK_ROOMS`: room patterns (as `ANONYMOUS_ROOMS`).
    pub rooms: String,
    /// `WEBHOOK_MAX_AGE_SECONDS`, in ms: a pending event older than this becomes a dead letter.
    pub max_age_ms: u64,
    /// `WEBHOOK_TIMEOUT_MS`: the bound of one POST.
    pub timeout_ms: u64,
    /// `WEBHOOK_BATCH_MAX`: most events per POST.
    pub batch_max: usize,
    /// `WEBHOOK_BATCH_MAX_BYTES`: most bytes of a POST's body, unless it holds one event.
    pub batch_max_bytes: usize,
    /// `WEBHOOK_OUTBOX_MAX_EVENTS`: most events the outbox holds (pending and dead letters) before
    /// a message is refused; presence and occupancy may take it to twice this.
    pub outbox_max_events: u64,
    /// `WEBHOOK_OUTBOX_MAX_BYTES`: the same bound in bytes of events as stored.
    pub outbox_max_bytes: u64,
    /// `WEBHOOK_DEAD_LETTER_SECONDS`, in ms: a dead letter is deleted this long after it was set
    /// aside.
    pub dead_letter_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            url: String::new(),
            key: Err("WEBHOOK_SECRET is not set"),
            events: EventSet::DEFAULT,
            rooms: "*".into(),
            max_age_ms: 86_400 * 1000,
            timeout_ms: 10_000,
            batch_max: 500,
            batch_max_bytes: BATCH_MAX_BYTES,
            outbox_max_events: 100_000,
            outbox_max_bytes: 128 * 1024 * 1024,
            dead_letter_ms: 7 * 86_400 * 1000,
        }
    }
}

impl WebhookConfig {
    /// Reads the `WEBHOOK_*` vars (and the secret, which the platform hands over like a var).
    pub fn from_vars(lookup: &dyn Fn(&str) -> Option<String>) -> WebhookConfig {
        let mut c = WebhookConfig::default();
        let number = |name: &str| lookup(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|v| *v > 0);
        c.url = lookup("WEBHOOK_URL").map(|u| u.trim().to_owned()).unwrap_or_default();
        c.key = SigningKey::parse(&lookup("WEBHOOK_SECRET").unwrap_or_default());
        if let Some(events) = lookup("WEBHOOK_EVENTS") {
            c.events = EventSet::parse(&events);
        }
        if let Some(rooms) = lookup("WEBHOOK_ROOMS").filter(|r| !r.trim().is_empty()) {
            c.rooms = rooms;
        }
        if let Some(s) = number("WEBHOOK_MAX_AGE_SECONDS") {
            c.max_age_ms = s.saturating_mul(1000);
        }
        if let Some(ms) = number("WEBHOOK_TIMEOUT_MS") {
            c.timeout_ms = ms.min(TIMEOUT_MAX_MS);
        }
        if let Some(n) = number("WEBHOOK_BATCH_MAX") {
            c.batch_max = usize::try_from(n).unwrap_or(BATCH_MAX_LIMIT).min(BATCH_MAX_LIMIT);
        }
        if let Some(n) = number("WEBHOOK_BATCH_MAX_BYTES") {
            c.batch_max_bytes = usize::try_from(n).unwrap_or(BATCH_MAX_BYTES_LIMIT).min(BATCH_MAX_BYTES_LIMIT);
        }
        if let Some(n) = number("WEBHOOK_OUTBOX_MAX_EVENTS") {
            c.outbox_max_events = n.min(OUTBOX_MAX_EVENTS_LIMIT);
        }
        if let Some(n) = number("WEBHOOK_OUTBOX_MAX_BYTES") {
            c.outbox_max_bytes = n.min(OUTBOX_MAX_BYTES_LIMIT);
        }
        if let Some(s) = number("WEBHOOK_DEAD_LETTER_SECONDS") {
            c.dead_letter_ms = s.saturating_mul(1000);
        }
        c
    }

    /// Whether a URL is configured (events are then recorded for the rooms it applies to).
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Whether `room`'s events are recorded: webhooks are on, `WEBHOOK_ROOMS` matches, and at
    /// least one event kind is wanted.
    pub fn applies_to(&self, room: &str) -> bool {
        self.enabled() && !self.events.is_empty() && token::any_pattern_matches(&self.rooms, room)
    }

    /// Why recorded events cannot be delivered, if they cannot.
    pub fn problem(&self) -> Option<&'static str> {
        let lower = self.url.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) || self.url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Some("WEBHOOK_URL is not an http:// or https:// URL");
        }
        self.key.as_ref().err().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> WebhookConfig {
        let owned: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        WebhookConfig::from_vars(&move |name| owned.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_and_off() {
        let c = vars(&[]);
        assert!(!c.enabled());
        assert!(!c.applies_to("any"));
        assert_eq!(c.events, EventSet::DEFAULT);
        assert!(!c.events.contains(EventKind::MessagePublished), "messages only when listed");
        assert_eq!((c.max_age_ms, c.timeout_ms, c.batch_max, c.batch_max_bytes), (86_400_000, 10_000, 500, 2 << 20));
        assert_eq!((c.outbox_max_events, c.outbox_max_bytes, c.dead_letter_ms), (100_000, 128 << 20, 604_800_000));
    }

    #[test]
    fn parses_every_var() {
        let c = vars(&[
            ("WEBHOOK_URL", " https://hooks.example.com/roomcast "),
            ("WEBHOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            ("WEBHOOK_EVENTS", "message.published, presence.left,nonsense"),
            ("WEBHOOK_ROOMS", "chat:*,support"),
            ("WEBHOOK_MAX_AGE_SECONDS", "60"),
            ("WEBHOOK_TIMEOUT_MS", "999999"),
            ("WEBHOOK_BATCH_MAX", "5000"),
            ("WEBHOOK_BATCH_MAX_BYTES", "999999999999"),
            ("WEBHOOK_OUTBOX_MAX_EVENTS", "99999999"),
            ("WEBHOOK_OUTBOX_MAX_BYTES", "99999999999"),
            ("WEBHOOK_DEAD_LETTER_SECONDS", "3600"),
        ]);
        assert_eq!(c.url, "https://hooks.example.com/roomcast");
        assert!(c.key.is_ok());
        assert_eq!(c.problem(), None);
        assert!(c.events.contains(EventKind::MessagePublished) && c.events.contains(EventKind::PresenceLeft));
        assert!(!c.events.contains(EventKind::PresenceJoined) && !c.events.contains(EventKind::RoomOccupied));
        assert!(c.applies_to("chat:1") && c.applies_to("support") && !c.applies_to("supports") && !c.applies_to("other"));
        assert_eq!((c.max_age_ms, c.timeout_ms, c.batch_max), (60_000, TIMEOUT_MAX_MS, BATCH_MAX_LIMIT));
        assert_eq!(c.batch_max_bytes, BATCH_MAX_BYTES_LIMIT);
        assert_eq!(
            (c.outbox_max_events, c.outbox_max_bytes, c.dead_letter_ms),
            (OUTBOX_MAX_EVENTS_LIMIT, OUTBOX_MAX_BYTES_LIMIT, 3_600_000)
        );
        let small = vars(&[("WEBHOOK_OUTBOX_MAX_EVENTS", "3"), ("WEBHOOK_OUTBOX_MAX_BYTES", "1000"), ("WEBHOOK_BATCH_MAX_BYTES", "0")]);
        assert_eq!(
            (small.outbox_max_events, small.outbox_max_bytes, small.batch_max_bytes),
            (3, 1000, BATCH_MAX_BYTES),
            "0 keeps the default"
        );
        assert!(!format!("{c:?}").contains("MfKQ"), "the key is never printed");
    }

    #[test]
    fn problems_are_reported_not_fatal() {
        let c = vars(&[("WEBHOOK_URL", "https://x.example")]);
        assert!(c.applies_to("r"), "events are still recorded");
        assert_eq!(c.problem(), Some("WEBHOOK_SECRET is not set"));
        let c = vars(&[("WEBHOOK_URL", "https://x.example"), ("WEBHOOK_SECRET", "whsec_***")]);
        assert_eq!(c.problem(), Some("WEBHOOK_SECRET is not whsec_ followed by a base64 key"));
        let c = vars(&[("WEBHOOK_URL", "ftp://x"), ("WEBHOOK_SECRET", "whsec_AAAA")]);
        assert_eq!(c.problem(), Some("WEBHOOK_URL is not an http:// or https:// URL"));
        let c = vars(&[("WEBHOOK_URL", "http://x"), ("WEBHOOK_SECRET", "AAAA")]);
        assert_eq!(c.problem(), None, "the whsec_ prefix is optional");
        let c = vars(&[("WEBHOOK_URL", "http://x"), ("WEBHOOK_SECRET", "whsec_AAAA"), ("WEBHOOK_EVENTS", "none.of.these")]);
        assert!(!c.applies_to("r"), "no event wanted: nothing recorded");
        assert_eq!(vars(&[("WEBHOOK_EVENTS", " ")]).events, EventSet::DEFAULT);
    }
}
