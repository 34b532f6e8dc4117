//! Canonical compact JSON: the only form in which a value a client controls (a message's `data`,
//! a token's `meta`) is stored or sent.
//!
//! JSON *text* may hold raw whitespace, line feeds included, between tokens; only JSON *strings*
//! cannot hold a raw control character. The room joins frames with line feeds (coalescing), so a
//! value passed through byte for byte could end one frame and start a forged one. A
//! [`CompactJson`] can only be made by compacting: whitespace outside strings is removed and
//! everything else (numbers, key order, escapes) is kept byte for byte. A compact value holds no
//! byte below 0x20 at all, so no frame built from it can contain a line feed.

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;

/// A JSON value in canonical compact form (see the module docs). Cheap to clone into frames:
/// it is serialized verbatim.
#[derive(Clone)]
pub struct CompactJson(Box<RawValue>);

/// Equal texts: compact forms of one value written the same way compare equal.
impl PartialEq for CompactJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for CompactJson {}

impl CompactJson {
    /// Compacts a value that is already known to be valid JSON.
    pub fn from_raw(raw: &RawValue) -> CompactJson {
        let text = raw.get();
        if !text.bytes().any(is_json_whitespace) {
            return CompactJson(raw.to_owned());
        }
        CompactJson::from_valid(compact(text))
    }

    /// Parses and compacts `text`; fails if it is not one JSON value.
    pub fn parse(text: &str) -> Result<CompactJson, serde_json::Error> {
        let raw: Box<RawValue> = serde_json::from_str(text)?;
        Ok(CompactJson::from_raw(&raw))
    }

    /// Like [`CompactJson::parse`], taking ownership (no copy when the text is already compact).
    pub fn parse_owned(text: String) -> Result<CompactJson, serde_json::Error> {
        let raw = RawValue::from_string(text)?;
        if raw.get().bytes().any(is_json_whitespace) {
            return Ok(CompactJson::from_raw(&raw));
        }
        Ok(CompactJson(raw))
    }

    fn from_valid(text: String) -> CompactJson {
        // Compacting valid JSON yields valid JSON; the fallback is unreachable but keeps the
        // wasm build free of a panic path.
        match RawValue::from_string(text) {
            Ok(raw) => CompactJson(raw),
            Err(_) => CompactJson(RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable_null())),
        }
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn as_raw(&self) -> &RawValue {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.get().len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.get().is_empty()
    }

    /// Whether the value is a JSON object.
    pub fn is_object(&self) -> bool {
        self.0.get().starts_with('{')
    }
}

#[cold]
fn unreachable_null() -> Box<RawValue> {
    // `RawValue::NULL` is a `&'static RawValue`; owning a copy never fails.
    RawValue::NULL.to_owned()
}

impl fmt::Debug for CompactJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

impl Serialize for CompactJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for CompactJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        Ok(CompactJson::from_raw(&raw))
    }
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Removes whitespace outside strings from valid JSON text. Inside a string, a backslash escapes
/// the next byte, so an escaped quote does not end it.
fn compact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn removes_whitespace_outside_strings_only() {
        let c = CompactJson::parse("{ \"a\" :\n {\"type\":\"message\"}\r\n,\t\"b\\\" \\n\": [ 1 , 2.50e3 ] }").unwrap();
        assert_eq!(c.get(), r#"{"a":{"type":"message"},"b\" \n":[1,2.50e3]}"#);
        assert_eq!(CompactJson::parse("\" keep  spaces \"").unwrap().get(), "\" keep  spaces \"");
        assert!(CompactJson::parse("{\"a\":\"raw\nLF\"}").is_err(), "a raw control character in a string is not JSON");
        assert!(CompactJson::parse("{} {}").is_err());
    }

    /// Arbitrary JSON values, printed with arbitrary whitespace between tokens.
    pub(crate) fn json_text() -> impl Strategy<Value = String> {
        let ws = prop::collection::vec(prop::sample::select(vec![" ", "\n", "\r", "\t", ""]), 0..3).prop_map(|v| v.concat());
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| f.to_string()),
            ".*".prop_map(|s| serde_json::to_string(&s).unwrap()),
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            let ws = ws.clone();
            prop_oneof![
                (prop::collection::vec((inner.clone(), ws.clone()), 0..5)).prop_map(|items| {
                    let parts: Vec<String> = items.into_iter().map(|(v, w)| format!("{w}{v}{w}")).collect();
                    format!("[{}]", parts.join(","))
                }),
                (prop::collection::vec((".*", inner, ws), 0..5)).prop_map(|items| {
                    let parts: Vec<String> =
                        items.into_iter().map(|(k, v, w)| format!("{w}{}{w}:{w}{v}{w}", serde_json::to_string(&k).unwrap())).collect();
                    format!("{{{}}}", parts.join(","))
                }),
            ]
        })
    }

    proptest! {
        /// Compacting keeps the value, leaves no byte below 0x20, and is idempotent.
        #[test]
        fn compact_keeps_the_value_and_drops_every_control_byte(text in json_text()) {
            let c = CompactJson::parse(&text).unwrap();
            prop_assert!(c.get().bytes().all(|b| b >= 0x20), "{:?}", c.get());
            let before: serde_json::Value = serde_json::from_str(&text).unwrap();
            let after: serde_json::Value = serde_json::from_str(c.get()).unwrap();
            prop_assert_eq!(before, after);
            let again = CompactJson::parse(c.get()).unwrap();
            prop_assert_eq!(again.get(), c.get());
        }
    }
}
