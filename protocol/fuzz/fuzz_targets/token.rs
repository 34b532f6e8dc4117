//! Token verification on arbitrary input: never panics, never accepts without the secret.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_protocol::token::verify;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    assert!(verify(text, b"fuzz-secret-never-in-input", 1_800_000_000_000).is_err());
});
