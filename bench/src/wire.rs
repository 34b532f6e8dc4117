//! What differs between the systems on the wire: how a member joins, how it publishes, and how a
//! delivered message is recognized. The payload itself is the same for all of them.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// roomcast's frames (docs/PROTOCOL.md): publish frames in, `message` frames out.
    Roomcast,
    /// roomcast's ephemeral path: `broadcast` frames in and out, never stored (AE). Sent without
    /// an id, as the SDK's `broadcast()` does by default: the room answers nothing.
    RoomcastBroadcast,
    /// A relay that sends every text frame as is to the room's other members (B, C, E).
    Relay,
    /// Engine.IO 4 / Socket.IO 5 over a WebSocket: `42["m", payload]` (D).
    SocketIo,
}

/// The marker that starts the fields in every payload.
const MARK: &str = "~B~";

/// The fields a payload carries: which measurement step, which publisher, its counter, and the
/// time the send was scheduled for (µs since the generator's start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub step: u32,
    pub publisher: u32,
    pub n: u64,
    pub scheduled_us: u64,
}

/// A JSON string literal of exactly `size` bytes (at least the fields' length) carrying `stamp`.
pub fn payload(stamp: Stamp, size: usize) -> String {
    let mut s = format!("\"{MARK}{}~{}~{}~{}~", stamp.step, stamp.publisher, stamp.n, stamp.scheduled_us);
    let pad = size.saturating_sub(s.len() + 1);
    s.extend(std::iter::repeat_n('x', pad));
    s.push('"');
    s
}

/// The frame a member sends to publish `payload` (a JSON string literal).
pub fn publish_frame(protocol: Protocol, n: u64, payload: &str) -> String {
    match protocol {
        Protocol::Roomcast => format!("{{\"type\":\"publish\",\"id\":\"{n}\",\"data\":{payload}}}"),
        Protocol::RoomcastBroadcast => format!("{{\"type\":\"broadcast\",\"data\":{payload}}}"),
        Protocol::Relay => payload.to_owned(),
        Protocol::SocketIo => format!("42[\"m\",{payload}]"),
    }
}

/// Every stamp in a received WebSocket message, in order: roomcast may coalesce several
/// frames into one message (one per line), the others send one per message.
pub fn stamps(text: &str) -> impl Iterator<Item = Stamp> + '_ {
    text.match_indices(MARK).filter_map(|(at, _)| {
        let mut fields = text[at + MARK.len()..].splitn(5, '~');
        let mut next = || fields.next()?.parse::<u64>().ok();
        Some(Stamp { step: next()? as u32, publisher: next()? as u32, n: next()?, scheduled_us: next()? })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Option<Stamp> {
        stamps(text).next()
    }

    #[test]
    fn payload_has_the_size_asked_for_and_parses_back_in_every_frame() {
        let stamp = Stamp { step: 3, publisher: 17, n: 123_456, scheduled_us: 9_876_543_210 };
        for size in [64, 1024] {
            let p = payload(stamp, size);
            assert_eq!(p.len(), size);
            for protocol in [Protocol::Roomcast, Protocol::RoomcastBroadcast, Protocol::Relay, Protocol::SocketIo] {
                let frame = publish_frame(protocol, stamp.n, &p);
                assert_eq!(parse(&frame), Some(stamp), "{frame}");
            }
            let delivered = format!("{{\"type\":\"message\",\"seq\":9,\"from\":\"c1\",\"user\":\"u\",\"id\":\"1\",\"data\":{p},\"ts\":1}}");
            assert_eq!(parse(&delivered), Some(stamp));
            let broadcast = format!("{{\"type\":\"broadcast\",\"from\":\"c1\",\"user\":\"u\",\"data\":{p},\"ts\":1}}");
            assert_eq!(parse(&broadcast), Some(stamp));
        }
        assert_eq!(parse("{\"type\":\"welcome\"}"), None);
        let other = Stamp { n: stamp.n + 1, ..stamp };
        let coalesced = format!("{}\n{{\"type\":\"ack\"}}\n{}", payload(stamp, 64), payload(other, 64));
        assert_eq!(stamps(&coalesced).collect::<Vec<_>>(), vec![stamp, other]);
        assert_eq!(parse("~B~1~2~x~4~"), None);
    }
}
