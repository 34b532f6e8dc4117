//! The numbers that cross the SDK's wasm boundary, defined once. The SDK's Rust half
//! (`sdk/src`) converts with these; its JavaScript half (`sdk/js/host.js`) holds the same tables
//! as literal lines, which a test here reads and checks, so the two halves cannot drift apart.
//! Close codes cross the boundary as plain numbers, with their reasons, from [`crate::close`].

use super::{QueueError, State};

/// The states, in the order of their numbers (`emit_status`); host.js's `STATES` names them.
pub const STATES: [(State, &str); 4] =
    [(State::Connecting, "connecting"), (State::Open, "open"), (State::Reconnecting, "reconnecting"), (State::Closed, "closed")];

/// Why a call was not queued or sent, by number (`conn_call`'s result; 0 means it was); host.js's
/// `FAILURES` names them, and the names are the `code` of the rejection the app sees.
pub const QUEUE_FAILURES: [(QueueError, &str); 4] = [
    (QueueError::Full, "queue_full"),
    (QueueError::Closed, "closed"),
    (QueueError::Offline, "offline"),
    (QueueError::TooLarge, "too_large"),
];

/// A welcome's `resume.status`, by number (`conn_welcome`'s `resumed`): 0 no resume was asked (no
/// `resume` object), 1 recovered, 2 not recovered (any other status counts as not recovered);
/// host.js's `RESUMED` lists them.
pub const RESUMED: [&str; 3] = ["", "recovered", "not_recovered"];

/// The calls of the SDK's `conn_call` export, in the order of their numbers; host.js's `CALLS`
/// names them.
pub const CALLS: [(Call, &str); 5] = [
    (Call::Publish, "publish"),
    (Call::SendTo, "send_to"),
    (Call::History, "history"),
    (Call::Broadcast, "broadcast"),
    (Call::Presence, "presence"),
];

/// A call the room answers, as the SDK's `conn_call` export numbers it ([`CALLS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Publish,
    SendTo,
    History,
    Broadcast,
    Presence,
}

/// The call numbered `n`, if any (by a match, not from [`CALLS`], whose names the wasm need not
/// carry).
pub fn call(n: u32) -> Option<Call> {
    Some(match n {
        0 => Call::Publish,
        1 => Call::SendTo,
        2 => Call::History,
        3 => Call::Broadcast,
        4 => Call::Presence,
        _ => return None,
    })
}

/// A state's number.
pub fn state_code(state: State) -> u32 {
    state as u32
}

/// A queue failure's number.
pub fn queue_failure_code(e: QueueError) -> u32 {
    e as u32
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::{format, string::String, vec::Vec};

    const HOST_JS: &str = include_str!("../../../sdk/js/host.js");

    /// `const NAME = ["a", "b"];` as host.js writes it.
    fn js_array(name: &str, items: &[&str]) -> String {
        let items: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
        format!("const {name} = [{}];", items.join(", "))
    }

    #[test]
    fn state_numbers_are_their_position_and_host_js_names_them_in_order() {
        for (i, (state, _)) in STATES.iter().enumerate() {
            assert_eq!(state_code(*state), i as u32);
        }
        let names: Vec<&str> = STATES.iter().map(|(_, n)| *n).collect();
        let line = js_array("STATES", &names);
        assert!(HOST_JS.contains(&line), "sdk/js/host.js must hold `{line}`");
    }

    #[test]
    fn queue_failure_numbers_start_at_one_and_host_js_names_them_in_order() {
        for (i, (e, _)) in QUEUE_FAILURES.iter().enumerate() {
            assert_eq!(queue_failure_code(*e), i as u32 + 1, "0 means queued");
        }
        let names: Vec<&str> = QUEUE_FAILURES.iter().map(|(_, n)| *n).collect();
        // `[, "queue_full", …]`: index 0 is a hole (queued)
        let line = format!("const FAILURES = [, {}];", names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "));
        assert!(HOST_JS.contains(&line), "sdk/js/host.js must hold `{line}`");
    }

    #[test]
    fn call_numbers_are_their_position_and_host_js_names_them_in_order() {
        for (i, (c, _)) in CALLS.iter().enumerate() {
            assert_eq!(call(i as u32), Some(*c));
        }
        assert_eq!(call(CALLS.len() as u32), None);
        let names: Vec<&str> = CALLS.iter().map(|(_, n)| *n).collect();
        let line = js_array("CALLS", &names);
        assert!(HOST_JS.contains(&line), "sdk/js/host.js must hold `{line}`");
    }

    #[test]
    fn resume_outcomes_host_js_lists_in_order() {
        let line = js_array("RESUMED", &RESUMED);
        assert!(HOST_JS.contains(&line), "sdk/js/host.js must hold `{line}`");
    }

    #[test]
    fn the_helper_writes_arrays_as_host_js_does() {
        assert_eq!(js_array("X", &["a", "b"]), r#"const X = ["a", "b"];"#);
    }
}
