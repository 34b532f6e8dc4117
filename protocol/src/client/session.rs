//! One socket for many rooms, on the client's side (docs/PROTOCOL.md, *Sessions*). The session's
//! socket is a [`super::Client`] of its own (backoff, heartbeats, token refresh), connected to
//! `/session/ws`; each joined room is a [`super::Client`] with [`super::ClientConfig::relayed`]
//! set, whose "socket" is its join on the session's: its `Connect` becomes a `join` frame, its
//! `CloseSocket` a `leave`, what it sends goes out with the room's name, and the session's `left`
//! for it is its close. So every rule of a room connection (resume without loss, the offline
//! queue, calls settled once) holds per room, over one socket.
//!
//! Here: the frames only a session socket carries, built like every other client frame by
//! [`super::encode`]. The room's name comes in already encoded as a JSON string (the adapter's
//! `JSON.stringify`).

use super::{decimal, encode, push_all};
use alloc::string::String;

/// A room frame, for the session socket: `{"room":<room>,` before the rest of `text` (a frame
/// [`encode`] built, which starts `{"type":`).
pub fn with_room(room_json: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + room_json.len() + 9);
    push_all(&mut out, &["{\"room\":", room_json, ",", text.get(1..).unwrap_or_default()]);
    out
}

/// Whether an epoch can go into a frame as it is: the room's epochs are short hex texts; anything
/// else (which no room sends) is not resumed from.
fn plain(epoch: &str) -> bool {
    (1..=64).contains(&epoch.len()) && epoch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `join`: from `resume` (the room's epoch and the last seq seen), else with the last `rewind`
/// messages, else from now; `echo` off by request.
pub fn join_frame(room_json: &str, resume: Option<(&str, u64)>, rewind: Option<u64>, echo: bool) -> String {
    let resume = resume.filter(|(epoch, _)| plain(epoch));
    let mut epoch_json = String::new();
    if let Some((epoch, _)) = resume {
        push_all(&mut epoch_json, &["\"", epoch, "\""]);
    }
    let since = decimal(resume.map(|(_, s)| s));
    let rewind = if resume.is_some() { None } else { decimal(rewind) };
    encode(
        "join",
        None,
        &[
            ("room", Some(room_json)),
            ("epoch", resume.map(|_| epoch_json.as_str())),
            ("since", since.as_deref()),
            ("rewind", rewind.as_deref()),
            ("echo", (!echo).then_some("false")),
        ],
    )
}

/// `leave`.
pub fn leave_frame(room_json: &str) -> String {
    encode("leave", None, &[("room", Some(room_json))])
}

/// `watch`: the rooms a session socket shows without joining them (`rooms_json`: a JSON array of
/// names, the adapter's `JSON.stringify`).
pub fn watch_frame(rooms_json: &str) -> String {
    encode("watch", None, &[("rooms", Some(rooms_json))])
}

/// `mark_read`: the user read the room up to `seq`.
pub fn mark_read_frame(room_json: &str, seq: u64) -> String {
    let seq = decimal(Some(seq));
    encode("mark_read", None, &[("room", Some(room_json)), ("seq", seq.as_deref())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_frames() {
        assert_eq!(join_frame("\"chat:lobby\"", None, None, true), r#"{"type":"join","room":"chat:lobby"}"#);
        assert_eq!(
            join_frame("\"r\"", Some(("e1", 41)), Some(5), false),
            r#"{"type":"join","room":"r","epoch":"e1","since":41,"echo":false}"#,
            "a resume wins over a rewind"
        );
        assert_eq!(join_frame("\"r\"", None, Some(20), true), r#"{"type":"join","room":"r","rewind":20}"#);
        assert_eq!(join_frame("\"r\"", Some(("e\"1", 3)), None, true), r#"{"type":"join","room":"r"}"#, "an odd epoch is not resumed");
        assert_eq!(leave_frame("\"r\""), r#"{"type":"leave","room":"r"}"#);
        assert_eq!(mark_read_frame("\"r\"", 42), r#"{"type":"mark_read","room":"r","seq":42}"#);
        assert_eq!(with_room("\"r\"", r#"{"type":"publish","id":"a-1","data":1}"#), r#"{"room":"r","type":"publish","id":"a-1","data":1}"#);
    }
}
