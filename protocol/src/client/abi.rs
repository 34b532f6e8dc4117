//! The numbers that cross the SDK's wasm boundary, defined once. The SDK's Rust half
//! (`sdk/src`) converts with these; its JavaScript half (`sdk/js/host.js`, and `sdk/js/events.js`
//! for the events) holds the same tables as literal lines, which a test here reads and checks, so
//! the two halves cannot drift apart.
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

/// What the SDK's `conn_event` export is told, in the order of their numbers; `sdk/js/events.js`'s
/// `EV_…` constants number them. One export for all of them keeps one copy of the argument handling
/// in the wasm.
pub const EVENTS: [(Event, &str); 23] = [
    (Event::Publish, "publish"),
    (Event::SendTo, "send_to"),
    (Event::History, "history"),
    (Event::Broadcast, "broadcast"),
    (Event::Presence, "presence"),
    (Event::Token, "token"),
    (Event::Refreshed, "refreshed"),
    (Event::Message, "message"),
    (Event::Settled, "settled"),
    (Event::Pong, "pong"),
    (Event::Closed, "closed"),
    (Event::Timer, "timer"),
    (Event::Wake, "wake"),
    (Event::Close, "close"),
    (Event::LastSeq, "last_seq"),
    (Event::Mark, "mark"),
    (Event::Gap, "gap"),
    (Event::MarkRead, "mark_read"),
    (Event::Watch, "watch"),
    (Event::Network, "network"),
    (Event::Visibility, "visibility"),
    (Event::Nudge, "nudge"),
    (Event::Expired, "expired"),
];

/// What happened to a connection (or what the app asks of it), as the SDK's `conn_event` export
/// numbers it ([`EVENTS`]): the calls the room answers first, then what the host reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Publish,
    SendTo,
    History,
    Broadcast,
    Presence,
    /// The token function's result, or its failure (counted, or not: the network unreachable).
    Token,
    /// A `refreshed` frame.
    Refreshed,
    /// A `message` frame: deliver it or not.
    Message,
    /// An `ack`, `history` or `error` frame naming an id.
    Settled,
    Pong,
    /// The connection's socket closed (or failed to open).
    Closed,
    /// The connection's timer fired.
    Timer,
    /// Back online, or the page visible again.
    Wake,
    /// The app closed the room.
    Close,
    /// The last seq delivered (a question: nothing changes).
    LastSeq,
    /// A read mark, with its id: echoed in a `read` frame.
    Mark,
    /// Through a session: a `gap` frame (messages up to `until` cannot be delivered).
    Gap,
    /// Through a session: the app marked the room read up to a seq.
    MarkRead,
    /// A session socket: the rooms the app watches (a JSON array of names).
    Watch,
    /// `online` or `offline` (or `navigator.onLine` at the start).
    Network,
    /// The page became visible or hidden (or its state at the start).
    Visibility,
    /// Another connection of the page reconnected after an outage.
    Nudge,
    /// A session socket: one of its rooms left with 4002 (the socket's token expired): refresh it.
    Expired,
}

impl Event {
    /// A call the room answers (it gets a number and settles later).
    pub fn is_call(self) -> bool {
        matches!(self, Event::Publish | Event::SendTo | Event::History | Event::Broadcast | Event::Presence)
    }
}

/// The event numbered `n`, if any (by a match, not from [`EVENTS`], whose names the wasm need not
/// carry).
pub fn event(n: u32) -> Option<Event> {
    use Event::*;
    Some(match n {
        0 => Publish,
        1 => SendTo,
        2 => History,
        3 => Broadcast,
        4 => Presence,
        5 => Token,
        6 => Refreshed,
        7 => Message,
        8 => Settled,
        9 => Pong,
        10 => Closed,
        11 => Timer,
        12 => Wake,
        13 => Close,
        14 => LastSeq,
        15 => Mark,
        16 => Gap,
        17 => MarkRead,
        18 => Watch,
        19 => Network,
        20 => Visibility,
        21 => Nudge,
        22 => Expired,
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
    const EVENTS_JS: &str = include_str!("../../../sdk/js/events.js");

    /// `const NAME = ["a", "b"];` as host.js writes it.
    fn js_array(name: &str, items: &[&str]) -> String {
        let items: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
        format!("const {name} = [{}];", items.join(", "))
    }

    /// Whether `js` holds `line`, however its formatter broke it over lines: compared without
    /// whitespace, and without the comma a broken array ends with.
    fn js_holds(js: &str, line: &str) -> bool {
        let bare = |s: &str| s.split_whitespace().collect::<String>().replace(",]", "]");
        bare(js).contains(&bare(line))
    }

    fn host_js_holds(line: &str) -> bool {
        js_holds(HOST_JS, line)
    }

    #[test]
    fn state_numbers_are_their_position_and_host_js_names_them_in_order() {
        for (i, (state, _)) in STATES.iter().enumerate() {
            assert_eq!(state_code(*state), i as u32);
        }
        let names: Vec<&str> = STATES.iter().map(|(_, n)| *n).collect();
        let line = js_array("STATES", &names);
        assert!(host_js_holds(&line), "sdk/js/host.js must hold `{line}`");
    }

    #[test]
    fn queue_failure_numbers_start_at_one_and_host_js_names_them_in_order() {
        for (i, (e, _)) in QUEUE_FAILURES.iter().enumerate() {
            assert_eq!(queue_failure_code(*e), i as u32 + 1, "0 means queued");
        }
        let names: Vec<&str> = QUEUE_FAILURES.iter().map(|(_, n)| *n).collect();
        // `[, "queue_full", …]`: index 0 is a hole (queued)
        let line = format!("const FAILURES = [, {}];", names.iter().map(|n| format!("\"{n}\"")).collect::<Vec<_>>().join(", "));
        assert!(host_js_holds(&line), "sdk/js/host.js must hold `{line}`");
    }

    #[test]
    fn event_numbers_are_their_position_and_events_js_numbers_them_alike() {
        for (i, (e, _)) in EVENTS.iter().enumerate() {
            assert_eq!(event(i as u32), Some(*e));
        }
        assert_eq!(event(EVENTS.len() as u32), None);
        // js/events.js numbers them as constants (esbuild writes the numbers in their place)
        let consts: Vec<String> = EVENTS.iter().enumerate().map(|(i, (_, n))| format!("EV_{} = {i}", n.to_uppercase())).collect();
        let line = format!("export const {};", consts.join(", "));
        assert!(js_holds(EVENTS_JS, &line), "sdk/js/events.js must hold `{line}`");
    }

    #[test]
    fn resume_outcomes_host_js_lists_in_order() {
        let line = js_array("RESUMED", &RESUMED);
        assert!(host_js_holds(&line), "sdk/js/host.js must hold `{line}`");
    }

    #[test]
    fn the_helpers_write_arrays_as_host_js_does_and_find_them_broken_over_lines() {
        assert_eq!(js_array("X", &["a", "b"]), r#"const X = ["a", "b"];"#);
        assert!(js_holds(EVENTS_JS, "export const EV_PUBLISH = 0, EV_SEND_TO = 1,"), "its start, though broken over lines");
        assert!(!js_holds(EVENTS_JS, "export const EV_SEND_TO = 1, EV_PUBLISH = 0,"));
        assert!(!host_js_holds(&js_array("STATES", &["open", "connecting"])));
    }
}
