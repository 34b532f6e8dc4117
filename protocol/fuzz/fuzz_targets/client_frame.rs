//! The client-frame decoder on arbitrary bytes: it must never panic, and whatever it accepts
//! must be well-formed, its `data` and `meta` within the JSON rules (issue #22).
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_protocol::compact::{CompactJson, MAX_DEPTH};
use roomcast_protocol::frame::{decode_client, salvage_id, ClientFrame};
use serde_json::Value;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What a frame carries is compact, and JSON every mainstream parser takes (issue #22): it
/// re-parses with serde_json's strict reading at its default depth (so no lone surrogate and no
/// number beyond a double), at most `MAX_DEPTH` deep, and is written out verbatim.
fn within_the_json_rules(data: &CompactJson) {
    assert!(data.get().bytes().all(|b| b >= 0x20), "data is compact: no control bytes");
    let v: Value = serde_json::from_str(data.get()).expect("accepted data re-parses at the default depth");
    assert!(depth(&v) <= MAX_DEPTH);
    assert_eq!(serde_json::to_string(data).unwrap(), data.get());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = salvage_id(text);
    match decode_client(text, 128) {
        Ok(ClientFrame::Publish { id, data })
        | Ok(ClientFrame::Direct { id, data, .. })
        | Ok(ClientFrame::Input { id, data, .. })
        | Ok(ClientFrame::Broadcast { id: Some(id), data })
        | Ok(ClientFrame::SetPresence { id, meta: data }) => {
            assert!(!id.is_empty() && id.len() <= 128);
            assert!(text.trim_start().starts_with('{'));
            within_the_json_rules(&data);
        }
        Ok(ClientFrame::Broadcast { id: None, data }) => within_the_json_rules(&data),
        Ok(ClientFrame::History { id, before, since, .. }) => {
            assert!(!id.is_empty() && id.len() <= 128);
            assert!(before.is_none() || since.is_none(), "never both");
        }
        // A read mark's echo: its id is held to the same rule as every id.
        Ok(ClientFrame::Read { id }) => assert!(!id.is_empty() && id.len() <= 128),
        Ok(ClientFrame::Ping) | Ok(ClientFrame::Refresh { .. }) | Err(_) => {}
    }
});
