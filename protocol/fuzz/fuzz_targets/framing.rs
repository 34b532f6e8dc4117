//! Framing on arbitrary input: whatever text a client sends as `data` (any JSON with any
//! whitespace, or not JSON at all), on every path in and out of the room (WebSocket publish and
//! direct, HTTP single and batch, resume replay, history), each connection splits out of what it
//! receives, coalesced, exactly the frames the room encoded for it, and no frame holds a line feed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_protocol::room::framing_check::check_framing;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    check_framing(text);
});
