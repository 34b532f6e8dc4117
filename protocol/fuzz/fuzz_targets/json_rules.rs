//! The JSON rules of `compact::CompactJson` (issue #22) on arbitrary text: never a panic; every
//! constructor agrees; what is accepted is compact, at most `MAX_DEPTH` deep, re-parses with
//! serde_json's strict reading at its default depth to the value of the text it came from, and is
//! read again as itself; what is refused for a rule is refused for a reason a strict reader
//! confirms (too deep, or a string or number that serde_json's `Value` refuses too).
#![no_main]
use libfuzzer_sys::fuzz_target;
use roomcast_protocol::compact::{CompactJson, JsonError, MAX_DEPTH, MAX_NUMBER_CHARS};
use serde_json::value::RawValue;
use serde_json::Value;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The largest magnitude of a number in `v`.
fn largest(v: &Value) -> f64 {
    match v {
        Value::Array(a) => a.iter().map(largest).fold(0.0, f64::max),
        Value::Object(o) => o.values().map(largest).fold(0.0, f64::max),
        Value::Number(n) => n.as_f64().map_or(0.0, f64::abs),
        _ => 0.0,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = CompactJson::parse(text);
    assert_eq!(CompactJson::parse_owned(text.to_owned()), parsed, "parse and parse_owned agree");
    if let Ok(raw) = serde_json::from_str::<Box<RawValue>>(text) {
        assert_eq!(CompactJson::from_raw(&raw), parsed, "from_raw agrees");
    }
    let stored = CompactJson::from_stored(text.to_owned());
    match &parsed {
        Ok(c) => assert_eq!(stored.as_ref(), Ok(c)),
        Err(JsonError::Syntax(_)) => assert!(matches!(stored, Err(JsonError::Syntax(_)))),
        Err(_) => assert_eq!(stored.map(|c| c.get().to_owned()), Ok("null".to_owned())),
    }
    // serde_json's strict reading: default recursion limit (128), strings must be Unicode,
    // numbers must fit a double.
    let reference = serde_json::from_str::<Value>(text);
    match parsed {
        Ok(c) => {
            assert!(c.get().bytes().all(|b| b >= 0x20), "compact: no control bytes");
            let v: Value = serde_json::from_str(c.get()).expect("accepted JSON re-parses at the default depth");
            assert_eq!(Some(&v), reference.as_ref().ok(), "the value of the text");
            assert!(depth(&v) <= MAX_DEPTH);
            assert_eq!(serde_json::to_string(&c).unwrap(), c.get(), "written verbatim");
            assert_eq!(CompactJson::parse(c.get()).as_ref(), Ok(&c), "read again as itself");
        }
        Err(JsonError::TooDeep) => assert!(reference.as_ref().map_or(true, |v| depth(v) > MAX_DEPTH)),
        Err(JsonError::LoneSurrogate) => assert!(reference.is_err(), "serde_json refuses a lone surrogate too"),
        // refused by serde_json too, or read by it at the very top of the range (the rule also
        // refuses what rounds to infinity when rounded correctly)
        Err(JsonError::NumberOutOfRange) => assert!(reference.as_ref().map_or(true, |v| largest(v) >= 1e308)),
        Err(JsonError::NumberTooLong) => assert!(text.len() > MAX_NUMBER_CHARS),
        Err(JsonError::Syntax(_)) => assert!(serde_json::from_str::<Box<RawValue>>(text).is_err(), "only text that is not JSON"),
    }
});
