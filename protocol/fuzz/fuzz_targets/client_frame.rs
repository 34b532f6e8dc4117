//! The client-frame decoder on arbitrary bytes: it must never panic, and whatever it accepts
//! must be well-formed.
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_protocol::frame::{decode_client, salvage_id, ClientFrame};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = salvage_id(text);
    match decode_client(text, 128) {
        Ok(ClientFrame::Publish { id, data })
        | Ok(ClientFrame::Direct { id, data, .. })
        | Ok(ClientFrame::Broadcast { id: Some(id), data })
        | Ok(ClientFrame::SetPresence { id, meta: data }) => {
            assert!(!id.is_empty() && id.len() <= 128);
            // valid JSON text (numbers beyond f64 are valid JSON, so no Value round trip)
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(data.get()).is_ok());
            assert!(text.trim_start().starts_with('{'));
            assert!(data.get().bytes().all(|b| b >= 0x20), "data is compact: no control bytes");
        }
        Ok(ClientFrame::Broadcast { id: None, data }) => {
            assert!(data.get().bytes().all(|b| b >= 0x20), "data is compact: no control bytes");
        }
        Ok(ClientFrame::History { id, before, since, .. }) => {
            assert!(!id.is_empty() && id.len() <= 128);
            assert!(before.is_none() || since.is_none(), "never both");
        }
        // A read mark's echo: its id is held to the same rule as every id.
        Ok(ClientFrame::Read { id }) => assert!(!id.is_empty() && id.len() <= 128),
        Ok(ClientFrame::Ping) | Ok(ClientFrame::Refresh { .. }) | Err(_) => {}
    }
});
