//! The room's tunable limits. The Worker reads them from `[vars]` in `wrangler.toml`
//! (names in `docs/PROTOCOL.md`); anything missing or unparsable keeps its default.

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
            publish_batch_max: 100,
            message_id_max: 128,
            presence_meta_max: 1024,
            max_connections: 10_000,
            rate_messages_per_sec: 50,
            rate_messages_burst: 100,
            rate_bytes_per_sec: 256 * 1024,
            max_strikes: 50,
        }
    }
}

impl RoomConfig {
    /// Builds a config from `(name, value)` pairs as they come from the environment; names that
    /// are absent, or values that do not parse as a positive number, keep the default.
    pub fn from_vars<'a>(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        let mut c = RoomConfig::default();
        let num = |name: &str| lookup(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|v| *v > 0);
        if let Some(v) = num("MAX_FRAME_BYTES") {
            c.max_frame_bytes = v as usize;
        }
        if let Some(v) = num("HISTORY_MAX_MESSAGES") {
            c.history_max_messages = v;
        }
        if let Some(v) = num("HISTORY_MAX_AGE_SECONDS") {
            c.history_max_age_ms = v.saturating_mul(1000);
        }
        if let Some(v) = num("PRESENCE_GRACE_MS") {
            c.presence_grace_ms = v;
        }
        if let Some(v) = num("HEARTBEAT_TIMEOUT_MS") {
            c.heartbeat_timeout_ms = v;
        }
        if let Some(v) = num("HISTORY_PAGE_MAX") {
            c.history_page_max = v as usize;
        }
        if let Some(v) = num("PUBLISH_BATCH_MAX") {
            c.publish_batch_max = v as usize;
        }
        if let Some(v) = num("MAX_CONNECTIONS") {
            c.max_connections = (v as usize).min(32_768);
        }
        if let Some(v) = num("RATE_MESSAGES_PER_SEC") {
            c.rate_messages_per_sec = v;
        }
        if let Some(v) = num("RATE_MESSAGES_BURST") {
            c.rate_messages_burst = v;
        }
        if let Some(v) = num("RATE_BYTES_PER_SEC") {
            c.rate_bytes_per_sec = v;
        }
        if let Some(v) = num("MAX_STRIKES") {
            c.max_strikes = v.min(u64::from(u32::MAX)) as u32;
        }
        // History is capped so a misconfiguration cannot grow a room's storage without bound.
        c.history_max_messages = c.history_max_messages.min(100_000);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
