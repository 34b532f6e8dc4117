//! The room's tunable limits. The Worker reads them from `[vars]` in `wrangler.toml`
//! (names in `docs/PROTOCOL.md`); anything missing or unparsable keeps its default.
//!
//! - [`webhook`]: the `WEBHOOK_*` vars. Parsed here with the rest of the configuration, so
//!   `config` stays below the modules that use it ([`crate::room`], [`crate::webhook`]) and
//!   imports none of them.

pub mod webhook;

use webhook::WebhookConfig;

/// Limits and timings of one room. Durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomConfig {
    /// Largest client frame accepted, in bytes (`MAX_FRAME_BYTES`).
    pub max_frame_bytes: usize,
    /// Most messages kept in history (`HISTORY_MAX_MESSAGES`).
    pub history_max_messages: u64,
    /// Oldest message kept in history (`HISTORY_MAX_AGE_SECONDS`, here in ms).
    pub history_max_age_ms: u64,
    /// How long a user stays present after their last connection closed (`PRESENCE_GRACE_MS`).
    pub presence_grace_ms: u64,
    /// A connection with no ping (or message) for this long is closed (`HEARTBEAT_TIMEOUT_MS`).
    pub heartbeat_timeout_ms: u64,
    /// Most messages one history request or one resume replays (`HISTORY_PAGE_MAX`).
    pub history_page_max: usize,
    /// Most `data` bytes one history page, rewind or resume replay carries (`HISTORY_PAGE_MAX_BYTES`;
    /// the first message of a page always comes). A resume that needs more is answered with a gap.
    pub history_page_max_bytes: usize,
    /// Most messages in one HTTP publish batch (`PUBLISH_BATCH_MAX`).
    pub publish_batch_max: usize,
    /// Longest message id, in bytes.
    pub message_id_max: usize,
    /// Largest presence metadata, in bytes of JSON.
    pub presence_meta_max: usize,
    /// Most connections one room holds (`MAX_CONNECTIONS`; the platform's limit is 32,768).
    pub max_connections: usize,
    /// Sustained publishes (and direct messages) per second per connection (`RATE_MESSAGES_PER_SEC`).
    pub rate_messages_per_sec: u64,
    /// Publishes a connection may burst above the rate (`RATE_MESSAGES_BURST`).
    pub rate_messages_burst: u64,
    /// Sustained bytes of frames per second per connection (`RATE_BYTES_PER_SEC`); the burst is
    /// four times this, and at least one frame of the largest size.
    pub rate_bytes_per_sec: u64,
    /// Refused frames (rate-limited or invalid), net of accepted ones, after which the
    /// connection is closed with 4029 (`MAX_STRIKES`).
    pub max_strikes: u32,
    /// Most connections one user holds in a room (`MAX_CONNECTIONS_PER_USER`).
    pub max_connections_per_user: u32,
    /// Largest sum of `data` bytes in one HTTP publish (`PUBLISH_BATCH_MAX_BYTES`).
    pub publish_batch_max_bytes: usize,
    /// HTTP publishes per second per caller (API key or token user) and room
    /// (`HTTP_RATE_MESSAGES_PER_SEC`); the room as a whole takes four times this.
    pub http_rate_messages_per_sec: u64,
    /// HTTP publishes a caller may burst (`HTTP_RATE_MESSAGES_BURST`; at least a batch).
    pub http_rate_messages_burst: u64,
    /// HTTP publish bytes per second per caller (`HTTP_RATE_BYTES_PER_SEC`; burst four times
    /// this, and at least one batch of the largest size).
    pub http_rate_bytes_per_sec: u64,
    /// Bytes of resume replays and history reads per second per user (`READ_BYTES_PER_SEC`);
    /// the room as a whole reads eight times this.
    pub read_bytes_per_sec: u64,
    /// Read bytes a user may burst (`READ_BYTES_BURST`); one read of any size passes when the
    /// user's budget is not in debt.
    pub read_bytes_burst: u64,
    /// Presence frames per second about one user (`PRESENCE_RATE_PER_SEC`, burst twice this);
    /// changes beyond it are coalesced into the user's latest state.
    pub presence_rate_per_sec: u64,
    /// Ephemeral broadcasts and presence changes per second per connection
    /// (`BROADCAST_RATE_PER_SEC`; burst twice this). Higher than publishes: nothing is stored.
    pub broadcast_rate_per_sec: u64,
    /// Largest broadcast frame, in bytes (`BROADCAST_MAX_BYTES`; at most `MAX_FRAME_BYTES`).
    pub broadcast_max_bytes: usize,
    /// Bytes the room sends to everyone (fanout) that a connection may be behind in echoing its
    /// read marks before it is closed with 4008 (`UNREAD_MAX_BYTES`; 0 turns marks off). A mark
    /// goes out every eighth of this.
    pub unread_max_bytes: u64,
    /// The `WEBHOOK_*` vars and the webhook secret (docs/WEBHOOKS.md).
    pub webhook: WebhookConfig,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            max_frame_bytes: 64 * 1024,
            history_max_messages: 1000,
            history_max_age_ms: 24 * 3600 * 1000,
            presence_grace_ms: 5_000,
            heartbeat_timeout_ms: 60_000,
            history_page_max: 1000,
            history_page_max_bytes: 512 * 1024,
            publish_batch_max: 100,
            message_id_max: 128,
            presence_meta_max: 1024,
            max_connections: 10_000,
            rate_messages_per_sec: 50,
            rate_messages_burst: 100,
            rate_bytes_per_sec: 256 * 1024,
            max_strikes: 50,
            max_connections_per_user: 20,
            publish_batch_max_bytes: 1024 * 1024,
            http_rate_messages_per_sec: 200,
            http_rate_messages_burst: 1000,
            http_rate_bytes_per_sec: 1024 * 1024,
            read_bytes_per_sec: 1024 * 1024,
            read_bytes_burst: 8 * 1024 * 1024,
            presence_rate_per_sec: 10,
            broadcast_rate_per_sec: 100,
            broadcast_max_bytes: 16 * 1024,
            unread_max_bytes: 8 * 1024 * 1024,
            webhook: WebhookConfig::default(),
        }
    }
}

impl RoomConfig {
    /// The largest HTTP publish body read at all: a full batch of the largest data, with room for
    /// ids and for as much whitespace again (bodies are compacted after they are read).
    pub fn max_publish_body(&self) -> usize {
        self.publish_batch_max_bytes.saturating_mul(2).saturating_add(self.publish_batch_max.saturating_mul(self.message_id_max + 64))
    }

    /// Builds a config from `(name, value)` pairs as they come from the environment; names that
    /// are absent, or values that do not parse as a positive number, keep the default.
    pub fn from_vars<'a>(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        let mut c = RoomConfig::default();
        for (name, set) in VARS {
            if let Some(v) = lookup(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|v| *v > 0) {
                set(&mut c, v);
            }
        }
        c.broadcast_max_bytes = c.broadcast_max_bytes.min(c.max_frame_bytes);
        // History is capped so a misconfiguration cannot grow a room's storage without bound.
        c.history_max_messages = c.history_max_messages.min(100_000);
        c.webhook = WebhookConfig::from_vars(&lookup);
        c
    }
}

/// The `[vars]` a room reads, each with where its value goes (docs/PROTOCOL.md lists them).
type Setter = fn(&mut RoomConfig, u64);
const VARS: [(&str, Setter); 24] = [
    ("MAX_FRAME_BYTES", |c, v| c.max_frame_bytes = to_usize(v)),
    ("HISTORY_MAX_MESSAGES", |c, v| c.history_max_messages = v),
    ("HISTORY_MAX_AGE_SECONDS", |c, v| c.history_max_age_ms = v.saturating_mul(1000)),
    ("PRESENCE_GRACE_MS", |c, v| c.presence_grace_ms = v),
    ("HEARTBEAT_TIMEOUT_MS", |c, v| c.heartbeat_timeout_ms = v),
    ("HISTORY_PAGE_MAX", |c, v| c.history_page_max = to_usize(v)),
    ("HISTORY_PAGE_MAX_BYTES", |c, v| c.history_page_max_bytes = to_usize(v)),
    ("PUBLISH_BATCH_MAX", |c, v| c.publish_batch_max = to_usize(v)),
    // The platform holds at most 32,768 hibernatable sockets per object.
    ("MAX_CONNECTIONS", |c, v| c.max_connections = to_usize(v).min(32_768)),
    ("RATE_MESSAGES_PER_SEC", |c, v| c.rate_messages_per_sec = v),
    ("RATE_MESSAGES_BURST", |c, v| c.rate_messages_burst = v),
    ("RATE_BYTES_PER_SEC", |c, v| c.rate_bytes_per_sec = v),
    ("MAX_STRIKES", |c, v| c.max_strikes = to_u32(v)),
    ("MAX_CONNECTIONS_PER_USER", |c, v| c.max_connections_per_user = to_u32(v)),
    ("PUBLISH_BATCH_MAX_BYTES", |c, v| c.publish_batch_max_bytes = to_usize(v)),
    ("HTTP_RATE_MESSAGES_PER_SEC", |c, v| c.http_rate_messages_per_sec = v),
    ("HTTP_RATE_MESSAGES_BURST", |c, v| c.http_rate_messages_burst = v),
    ("HTTP_RATE_BYTES_PER_SEC", |c, v| c.http_rate_bytes_per_sec = v),
    ("READ_BYTES_PER_SEC", |c, v| c.read_bytes_per_sec = v),
    ("READ_BYTES_BURST", |c, v| c.read_bytes_burst = v),
    ("PRESENCE_RATE_PER_SEC", |c, v| c.presence_rate_per_sec = v),
    ("BROADCAST_RATE_PER_SEC", |c, v| c.broadcast_rate_per_sec = v),
    ("BROADCAST_MAX_BYTES", |c, v| c.broadcast_max_bytes = to_usize(v)),
    ("UNREAD_MAX_BYTES", |c, v| c.unread_max_bytes = v),
];

/// The webhook vars (read by [`WebhookConfig::from_vars`]; `WEBHOOK_SECRET` is a secret).
pub const WEBHOOK_VARS: [&str; 11] = [
    "WEBHOOK_URL",
    "WEBHOOK_EVENTS",
    "WEBHOOK_ROOMS",
    "WEBHOOK_MAX_AGE_SECONDS",
    "WEBHOOK_TIMEOUT_MS",
    "WEBHOOK_BATCH_MAX",
    "WEBHOOK_BATCH_MAX_BYTES",
    "WEBHOOK_OUTBOX_MAX_EVENTS",
    "WEBHOOK_OUTBOX_MAX_BYTES",
    "WEBHOOK_DEAD_LETTER_SECONDS",
    "WEBHOOK_SECRET",
];

fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

fn to_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_var_is_read() {
        // wrangler.toml lists the room's vars; each one it sets must be one the room reads.
        let toml = include_str!("../../../wrangler.toml");
        let vars = toml.split("[vars]").nth(1).unwrap_or("");
        for line in vars.lines().take_while(|l| !l.starts_with('[')) {
            let Some((name, _)) = line.split_once(" = ") else { continue };
            let name = name.trim();
            if name.starts_with('#') || crate::api::EDGE_VARS.iter().any(|(edge_var, _)| *edge_var == name) {
                continue;
            }
            if name.starts_with("WEBHOOK_") {
                // Read by `WebhookConfig::from_vars`.
                assert!(WEBHOOK_VARS.contains(&name), "{name} is in wrangler.toml but the webhooks do not read it");
                continue;
            }
            assert!(VARS.iter().any(|(n, _)| *n == name), "{name} is in wrangler.toml but the room does not read it");
        }
        let read = RoomConfig::from_vars(|_| Some("7".into()));
        assert_eq!((read.max_frame_bytes, read.max_strikes, read.history_max_age_ms), (7, 7, 7_000));
    }

    #[test]
    fn vars_override_defaults_and_bad_values_are_ignored() {
        let c = RoomConfig::from_vars(|name| match name {
            "MAX_FRAME_BYTES" => Some("1024".into()),
            "HISTORY_MAX_AGE_SECONDS" => Some("60".into()),
            "PRESENCE_GRACE_MS" => Some("not a number".into()),
            "HEARTBEAT_TIMEOUT_MS" => Some("0".into()),
            _ => None,
        });
        assert_eq!(c.max_frame_bytes, 1024);
        assert_eq!(c.history_max_age_ms, 60_000);
        assert_eq!(c.presence_grace_ms, RoomConfig::default().presence_grace_ms);
        assert_eq!(c.heartbeat_timeout_ms, RoomConfig::default().heartbeat_timeout_ms);
    }
}
