//! Canonical compact JSON: the only form in which a value a client controls (a message's `data`,
//! a presence or token `meta`) is stored or sent.
//!
//! JSON *text* may hold raw whitespace, line feeds included, between tokens; only JSON *strings*
//! cannot hold a raw control character. The room joins frames with line feeds (coalescing), so a
//! value passed through byte for byte could end one frame and start a forged one. A
//! [`CompactJson`] can only be made by compacting: whitespace outside strings is removed and
//! everything else (numbers, key order, escapes) is kept byte for byte. A compact value holds no
//! byte below 0x20 at all, so no frame built from it can contain a line feed.
//!
//! It is also JSON that **every mainstream parser accepts** (issue #22): the room hands these
//! values on to receivers it does not control (webhook backends in Python, Go, .NET, Java, Ruby,
//! Rust), and one value that a receiver's parser refuses would be refused on every retry. Every
//! constructor refuses, with a [`JsonError`]:
//!
//! - nesting deeper than [`MAX_DEPTH`] arrays and objects. The strictest mainstream default is
//!   .NET's (System.Text.Json and Newtonsoft: 64 levels for the whole document); the deepest
//!   envelope the room puts around a value is 3 levels (`{"events":[{…,"data":…}]}`, a history
//!   page, a welcome's member list), and [`MAX_DEPTH`] keeps room for envelopes to grow;
//! - a lone surrogate escape (`\uD800`-`\uDBFF` not followed by `\uDC00`-`\uDFFF`, or
//!   `\uDC00`-`\uDFFF` on its own), in strings and keys alike: it is no Unicode text. Strict
//!   parsers refuse it (serde_json, .NET's System.Text.Json, PostgreSQL's `jsonb`); others pass on
//!   a string that fails later (Python's, once encoded) or mangle it (Go's: U+FFFD);
//! - a number outside the range of a double: its magnitude must stay below 1e308
//!   ([`MAX_DECIMAL_EXPONENT`]; the largest double is 1.8e308, and `1e400` rounds to infinity),
//!   decided exactly from its digits; and a number written with more than [`MAX_NUMBER_CHARS`]
//!   characters (Jackson's default limit is 1,000). Numbers that underflow (`1e-400`) are
//!   accepted: every parser reads them as 0. Integers beyond 2^53 (or 2^64) are kept as written,
//!   byte for byte, but many parsers read them as the nearest double.
//!
//! Values read back from storage go through [`CompactJson::from_stored`].

use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use std::fmt;

/// The deepest nesting of arrays and objects in a value a client sends (`[[1]]` is 2 deep, a
/// scalar 0). See the module docs for why 32.
pub const MAX_DEPTH: usize = 32;

/// The most characters one number may be written with (the longest integer within a double's
/// range has 309 digits).
pub const MAX_NUMBER_CHARS: usize = 500;

/// Numbers must stay below 10^308 in magnitude: the largest double is 1.7976931348623157e308,
/// and parsers disagree at that edge (serde_json's default reading overflows on
/// `1.7976931348623158e308` and even on the 309 digits of the largest double itself, which
/// others round down), so the last sliver of the range is left out.
pub const MAX_DECIMAL_EXPONENT: i64 = 308;

/// Why a text is not accepted as a client's JSON value. Every variant is normal input from a
/// client (or a backend) and is answered with a clear error (`bad_frame`, 400, 401).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not one JSON value; the parser's message.
    #[error("{0}")]
    Syntax(String),
    #[error("JSON nested deeper than {MAX_DEPTH} arrays and objects")]
    TooDeep,
    #[error("JSON string with a lone surrogate escape (\\uD800-\\uDFFF outside a high-low pair)")]
    LoneSurrogate,
    #[error("JSON number outside the range of a double (its magnitude must stay below 1e308)")]
    NumberOutOfRange,
    #[error("JSON number written with more than {MAX_NUMBER_CHARS} characters")]
    NumberTooLong,
}

impl JsonError {
    /// Whether the text was JSON but broke one of the rules (rather than not being JSON at all).
    pub fn is_rule(&self) -> bool {
        !matches!(self, JsonError::Syntax(_))
    }
}

impl From<serde_json::Error> for JsonError {
    fn from(e: serde_json::Error) -> JsonError {
        JsonError::Syntax(e.to_string())
    }
}

/// A JSON value in canonical compact form, within the rules above (see the module docs). Cheap to
/// clone into frames: it is serialized verbatim.
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
    /// Checks and compacts a value that is already known to be valid JSON.
    pub fn from_raw(raw: &RawValue) -> Result<CompactJson, JsonError> {
        let text = raw.get();
        if !check(text)? {
            return Ok(CompactJson(raw.to_owned()));
        }
        Ok(CompactJson::from_valid(compact(text)))
    }

    /// Parses, checks and compacts `text`; fails if it is not one JSON value within the rules.
    pub fn parse(text: &str) -> Result<CompactJson, JsonError> {
        let raw: Box<RawValue> = serde_json::from_str(text)?;
        CompactJson::from_raw(&raw)
    }

    /// Like [`CompactJson::parse`], taking ownership (no copy when the text is already compact).
    pub fn parse_owned(text: String) -> Result<CompactJson, JsonError> {
        let raw = RawValue::from_string(text)?;
        if check(raw.get())? {
            return Ok(CompactJson::from_valid(compact(raw.get())));
        }
        Ok(CompactJson(raw))
    }

    /// A value the room stored itself. Rows stored before these rules existed may break them; such
    /// a value comes back as `null` (rather than failing the read of every row after it), so what
    /// the room sends stays within the rules. Text that is not JSON at all is an error.
    pub fn from_stored(text: String) -> Result<CompactJson, JsonError> {
        match CompactJson::parse_owned(text) {
            Err(e) if e.is_rule() => Ok(CompactJson(null())),
            other => other,
        }
    }

    fn from_valid(text: String) -> CompactJson {
        // Compacting valid JSON yields valid JSON; the fallback is unreachable but keeps the
        // wasm build free of a panic path.
        match RawValue::from_string(text) {
            Ok(raw) => CompactJson(raw),
            Err(_) => CompactJson(null()),
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

fn null() -> Box<RawValue> {
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

/// Read as part of a larger document (an HTTP publish body, a token's claims, the identity the
/// edge hands the room): the rules apply, and a value that breaks one fails the whole read.
impl<'de> serde::Deserialize<'de> for CompactJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        CompactJson::from_raw(&raw).map_err(serde::de::Error::custom)
    }
}

fn is_json_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// Checks the rules (module docs) on valid JSON text in one pass, and says whether it holds
/// whitespace outside strings (then it needs [`compact`]). Never panics, whatever the text.
fn check(text: &str) -> Result<bool, JsonError> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    let mut whitespace = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => i = string_end(b, i + 1)?,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while matches!(b.get(i), Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')) {
                    i += 1;
                }
                check_number(text.get(start..i).unwrap_or(""))?;
            }
            c if is_json_whitespace(c) => {
                whitespace = true;
                i += 1;
            }
            _ => i += 1,
        }
    }
    Ok(whitespace)
}

/// The index after the string whose contents start at `i`, checking its `\u` escapes: a high
/// surrogate must be followed at once by an escaped low one, and a low one must follow a high.
/// (Raw text cannot hold a surrogate: it is UTF-8.)
fn string_end(b: &[u8], mut i: usize) -> Result<usize, JsonError> {
    loop {
        match b.get(i) {
            None => return Ok(i),
            Some(b'"') => return Ok(i + 1),
            Some(b'\\') if b.get(i + 1) == Some(&b'u') => match hex4(b, i + 2) {
                Some(0xD800..=0xDBFF) => {
                    let low = b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u');
                    if !(low && matches!(hex4(b, i + 8), Some(0xDC00..=0xDFFF))) {
                        return Err(JsonError::LoneSurrogate);
                    }
                    i += 12;
                }
                Some(0xDC00..=0xDFFF) => return Err(JsonError::LoneSurrogate),
                _ => i += 6,
            },
            Some(b'\\') => i += 2,
            Some(_) => i += 1,
        }
    }
}

/// The four hex digits at `i` as a UTF-16 code unit.
fn hex4(b: &[u8], i: usize) -> Option<u16> {
    let digits = b.get(i..i + 4)?;
    let mut unit = 0u16;
    for &d in digits {
        let v = (d as char).to_digit(16)?;
        unit = unit << 4 | v as u16;
    }
    Some(unit)
}

/// A number token: at most [`MAX_NUMBER_CHARS`] characters, and of a magnitude below
/// 10^[`MAX_DECIMAL_EXPONENT`]. Decided exactly from the digits, with no float parsing (which
/// would differ by a rounding at the edge, and weighs on the Worker's size).
fn check_number(n: &str) -> Result<(), JsonError> {
    if n.len() > MAX_NUMBER_CHARS {
        return Err(JsonError::NumberTooLong);
    }
    match decimal_exponent(n) {
        Some(e) if e >= MAX_DECIMAL_EXPONENT => Err(JsonError::NumberOutOfRange),
        _ => Ok(()),
    }
}

/// `floor(log10(|n|))` of a valid JSON number token, exactly, from its digits (`None` for zero):
/// the place of the first significant digit, moved by the exponent.
fn decimal_exponent(n: &str) -> Option<i64> {
    let n = n.strip_prefix('-').unwrap_or(n);
    let (mantissa, exponent) = n.split_once(['e', 'E']).unwrap_or((n, "0"));
    let (negative, digits) = match exponent.as_bytes().first() {
        Some(b'-') => (true, &exponent[1..]),
        Some(b'+') => (false, &exponent[1..]),
        _ => (false, exponent),
    };
    // Saturating: an exponent beyond a billion says as much as a billion.
    let exponent = digits.bytes().fold(0i64, |e, d| (e * 10 + i64::from(d.wrapping_sub(b'0') % 10)).min(1_000_000_000));
    let exponent = if negative { -exponent } else { exponent };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let place = match (int.bytes().position(|d| d != b'0'), frac.bytes().position(|d| d != b'0')) {
        (Some(k), _) => (int.len() - k - 1) as i64,
        (None, Some(j)) => -(j as i64) - 1,
        (None, None) => return None,
    };
    Some(place + exponent)
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

    /// `n` arrays (or objects, `{"k":…}`) around `inner`.
    pub(crate) fn nested(n: usize, objects: bool, inner: &str) -> String {
        let (open, close) = if objects { ("{\"k\":", "}") } else { ("[", "]") };
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    }

    /// The largest magnitude of a number in `v`.
    pub(crate) fn largest(v: &serde_json::Value) -> f64 {
        match v {
            serde_json::Value::Array(a) => a.iter().map(largest).fold(0.0, f64::max),
            serde_json::Value::Object(o) => o.values().map(largest).fold(0.0, f64::max),
            serde_json::Value::Number(n) => n.as_f64().map_or(0.0, f64::abs),
            _ => 0.0,
        }
    }

    /// How deep a parsed value nests (a scalar is 0).
    pub(crate) fn depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    #[test]
    fn nesting_is_refused_beyond_max_depth() {
        for objects in [false, true] {
            let at_limit = nested(MAX_DEPTH, objects, "1");
            assert_eq!(CompactJson::parse(&at_limit).unwrap().get(), at_limit);
            assert_eq!(CompactJson::parse(&nested(MAX_DEPTH + 1, objects, "1")).unwrap_err(), JsonError::TooDeep);
            // the finding's payload: 10,001 levels, 20 KB
            assert_eq!(CompactJson::parse(&nested(10_001, objects, "0")).unwrap_err(), JsonError::TooDeep);
        }
        // siblings do not add up; brackets inside strings (escaped quotes included) do not count
        let wide = format!("[{}]", vec![nested(MAX_DEPTH - 1, false, "0"); 50].join(","));
        assert!(CompactJson::parse(&wide).is_ok());
        let strings = format!("[\"{}\\\"{}\"]", "[".repeat(100), "{".repeat(100));
        assert!(CompactJson::parse(&strings).is_ok());
        // whitespace takes the slow path: the same rule
        let spaced = nested(MAX_DEPTH + 1, false, " 1 ").replace('[', "[ \n");
        assert_eq!(CompactJson::parse(&spaced).unwrap_err(), JsonError::TooDeep);
        assert_eq!(CompactJson::parse_owned(spaced).unwrap_err(), JsonError::TooDeep);
    }

    #[test]
    fn lone_surrogates_are_refused_in_strings_and_keys() {
        for bad in [
            r#""\ud800""#,
            r#""\uDBFF""#,
            r#""\udc00""#,
            r#""a\uDFFFb""#,
            r#""\ud800\u0041""#,
            r#""\ud800\ud800""#,
            r#""\ud800x""#,
            r#""\ud800\n""#,
            r#""\udc00\ud800""#,
            r#"{"\ud800":1}"#,
            r#"{"ok":{"\udfff":[]}}"#,
            r#"["fine","\ud83d"]"#,
        ] {
            assert_eq!(CompactJson::parse(bad).unwrap_err(), JsonError::LoneSurrogate, "{bad}");
            assert!(serde_json::from_str::<serde_json::Value>(bad).is_err(), "serde_json refuses {bad} too");
        }
        for good in [
            r#""\ud83d\ude00""#,
            r#""\uD83D\uDE00""#,
            r#"{"\udbff\udfff":"\u0000\u00e9"}"#,
            r#""\\ud800""#,
            r#""\\\ud83d\ude00""#,
            "\"😀\"",
        ] {
            let c = CompactJson::parse(good).unwrap();
            assert_eq!(c.get(), good, "kept byte for byte");
            assert!(serde_json::from_str::<serde_json::Value>(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn numbers_must_stay_below_1e308_and_500_characters() {
        let max_digits = format!("{}", f64::MAX); // 309 digits, the largest double written out
        let long_zero = format!("0.{}1", "0".repeat(MAX_NUMBER_CHARS - 3));
        assert_eq!(long_zero.len(), MAX_NUMBER_CHARS);
        let too_long = format!("0.{}1", "0".repeat(MAX_NUMBER_CHARS - 2));
        for (text, expected) in [
            ("1e400", Err(JsonError::NumberOutOfRange)),
            ("-1e400", Err(JsonError::NumberOutOfRange)),
            ("1e309", Err(JsonError::NumberOutOfRange)),
            ("[1,{\"n\":-2.5E+309}]", Err(JsonError::NumberOutOfRange)),
            ("1.7976931348623159e308", Err(JsonError::NumberOutOfRange)),
            // rounds to the largest double, but serde_json's reading overflows on it
            ("1.7976931348623158e308", Err(JsonError::NumberOutOfRange)),
            (max_digits.as_str(), Err(JsonError::NumberOutOfRange)),
            // the last sliver of the range is left out: at or above 1e308, whatever the spelling
            ("1.7976931348623157e308", Err(JsonError::NumberOutOfRange)),
            ("1e308", Err(JsonError::NumberOutOfRange)),
            ("-1E+308", Err(JsonError::NumberOutOfRange)),
            ("100e306", Err(JsonError::NumberOutOfRange)),
            ("0.001e311", Err(JsonError::NumberOutOfRange)),
            ("1e99999999999999999999", Err(JsonError::NumberOutOfRange)),
            (too_long.as_str(), Err(JsonError::NumberTooLong)),
            ("9.999999999999999999999e307", Ok(())),
            ("-99.99e306", Ok(())),
            ("0.001e310", Ok(())),
            ("1e-400", Ok(())),
            ("1e-99999999999999999999", Ok(())),
            ("-0", Ok(())),
            ("0.0e99999", Ok(())),
            ("123456789012345678901234567890", Ok(())),
            ("-18446744073709551617", Ok(())),
            (long_zero.as_str(), Ok(())),
        ] {
            assert_eq!(CompactJson::parse(text).map(|c| assert_eq!(c.get(), text, "kept as written")), expected, "{text}");
            if expected.is_ok() {
                assert!(serde_json::from_str::<serde_json::Value>(text).is_ok(), "{text}");
            }
        }
        let hundred_digits = format!("1{}", "0".repeat(99));
        assert!(CompactJson::parse(&hundred_digits).is_ok(), "integers beyond 2^64 within range are kept");
        assert!(CompactJson::parse(&"9".repeat(308)).is_ok(), "308 digits: below 1e308");
        assert_eq!(CompactJson::parse(&format!("1{}", "0".repeat(308))).unwrap_err(), JsonError::NumberOutOfRange, "1e308");
    }

    #[test]
    fn stored_values_that_break_the_rules_come_back_null() {
        assert_eq!(CompactJson::from_stored(nested(40, false, "1")).unwrap().get(), "null");
        assert_eq!(CompactJson::from_stored(r#"{"a":"\ud800"}"#.into()).unwrap().get(), "null");
        assert_eq!(CompactJson::from_stored("{ \"a\" : 1 }".into()).unwrap().get(), r#"{"a":1}"#);
        assert!(matches!(CompactJson::from_stored("{".into()), Err(JsonError::Syntax(_))));
    }

    #[test]
    fn read_inside_a_document_the_rules_apply() {
        #[derive(serde::Deserialize)]
        struct Item {
            #[allow(dead_code)]
            data: CompactJson,
        }
        let deep = format!(r#"{{"data":{}}}"#, nested(MAX_DEPTH + 1, false, "1"));
        let e = serde_json::from_str::<Item>(&deep).err().unwrap().to_string();
        assert!(e.contains("nested deeper than 32"), "{e}");
        assert!(serde_json::from_str::<Item>(r#"{"data":"\udc00"}"#).is_err());
        assert!(serde_json::from_str::<Item>(r#"{"data":[1e999]}"#).is_err());
        assert!(serde_json::from_str::<Item>(&format!(r#"{{"data":{}}}"#, nested(MAX_DEPTH, true, "1"))).is_ok());
    }

    /// The deepest envelope the room writes around a value plus [`MAX_DEPTH`] stays within the
    /// strictest mainstream parser's limit for a whole document (.NET: 64).
    #[test]
    fn the_deepest_value_in_its_deepest_envelope_fits_dotnets_64() {
        const DOTNET_MAX_DEPTH: usize = 64;
        let data = CompactJson::parse(&nested(MAX_DEPTH, true, "1")).unwrap();
        let event = crate::webhook::Event::Message { epoch: "e", seq: 1, from: "c", user: "u", data: &data, message_id: None };
        let row = crate::store::OutboxRow { n: 1, ts: 1, body: event.encode("r", 1) };
        let body = crate::webhook::outbox::batch_body("k", &[row]);
        let member = crate::frame::MemberView { user: "u", connections: 1, meta: Some(&data) };
        let message = crate::frame::encode_message(&crate::frame::MessageFrame {
            kind: "message",
            seq: 1,
            from: "c",
            user: "u",
            id: None,
            data: &data,
            ts: 1,
        });
        let texts = [
            body,
            crate::frame::encode_history("h", std::slice::from_ref(&message), false),
            crate::frame::encode_history_page("e", 1, false, &[message]),
            crate::frame::encode_presence(crate::frame::PresenceEvent::Join, &member),
            crate::frame::encode_direct("c", "u", &data, 1),
        ];
        for text in texts {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(depth(&v) <= DOTNET_MAX_DEPTH, "{} levels: {text}", depth(&v));
            assert!(depth(&v) > MAX_DEPTH, "the value is in there");
        }
    }

    /// Arbitrary JSON values, printed with arbitrary whitespace between tokens.
    pub(crate) fn json_text() -> impl Strategy<Value = String> {
        let ws = prop::collection::vec(prop::sample::select(vec![" ", "\n", "\r", "\t", ""]), 0..3).prop_map(|v| v.concat());
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            // Rust writes 1e308 as 309 digits: below 1e308, well within the rules' number range.
            any::<f64>().prop_filter("finite, below 1e308", |f| f.abs() < 1e308).prop_map(|f| f.to_string()),
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

    /// JSON texts built to probe the rules: nesting on both sides of [`MAX_DEPTH`], strings and
    /// keys of arbitrary UTF-16 code units written as `\u` escapes (lone surrogates included),
    /// numbers on both sides of a double's range and of [`MAX_NUMBER_CHARS`], with whitespace.
    pub(crate) fn hostile_json() -> impl Strategy<Value = String> {
        let escaped = prop::collection::vec(prop_oneof![any::<u16>(), 0xD800u16..0xE000, Just(0xD83D), Just(0xDE00), 0x20u16..0x7F], 0..3)
            .prop_map(|units| format!("\"{}\"", units.iter().map(|u| format!("\\u{u:04x}")).collect::<String>()));
        let number = prop_oneof![
            (any::<i64>(), -330i32..330).prop_map(|(m, e)| format!("{m}e{e}")),
            (1u32..10, 0u64..1_000_000_000_000_000u64, 300i32..312).prop_map(|(a, b, e)| format!("{a}.{b}e{e}")),
            (1usize..620).prop_map(|n| format!("1{}", "0".repeat(n))),
            (1usize..620).prop_map(|n| format!("0.{}1", "0".repeat(n))),
            Just("1.7976931348623157e308".to_string()),
            Just("1.7976931348623158e308".to_string()),
        ];
        let leaf = prop_oneof![json_text(), escaped.clone(), number];
        let key = prop_oneof![8 => Just("\"k\"".to_string()), 1 => escaped];
        (leaf, prop::collection::vec((any::<bool>(), key, prop::sample::select(vec!["", " ", "\n"])), 0..(MAX_DEPTH + 8))).prop_map(
            |(inner, levels)| {
                levels.into_iter().fold(
                    inner,
                    |acc, (object, key, ws)| {
                        if object {
                            format!("{{{ws}{key}{ws}:{acc}}}")
                        } else {
                            format!("[{ws}{acc}{ws},0]")
                        }
                    },
                )
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// The rules against a reference: serde_json's own strict reading (`Value`, default depth
        /// limit 128, exact strings, numbers within a double) plus the depth and length limits.
        /// What is accepted re-parses at the default depth, round-trips, and keeps its value.
        #[test]
        fn accepted_exactly_when_strict_parsers_read_it_within_the_limits(text in hostile_json()) {
            let reference = serde_json::from_str::<serde_json::Value>(&text);
            match CompactJson::parse(&text) {
                Ok(c) => {
                    let v: serde_json::Value = serde_json::from_str(c.get()).expect("re-parses at the default depth");
                    prop_assert_eq!(Some(&v), reference.as_ref().ok(), "the same value as the text");
                    prop_assert!(depth(&v) <= MAX_DEPTH);
                    // round trip: written out verbatim, and read again as the same compact text
                    prop_assert_eq!(serde_json::to_string(&c).unwrap(), c.get());
                    prop_assert_eq!(CompactJson::parse(c.get()).unwrap(), c.clone());
                    prop_assert!(c.get().bytes().all(|b| b >= 0x20));
                }
                Err(JsonError::TooDeep) => prop_assert!(reference.as_ref().map_or(true, |v| depth(v) > MAX_DEPTH), "{}", text),
                Err(JsonError::LoneSurrogate) => prop_assert!(reference.is_err()),
                Err(JsonError::NumberOutOfRange) => prop_assert!(
                    reference.as_ref().map_or(true, |v| largest(v) >= 1e308),
                    "serde_json reads {} below 1e308", text
                ),
                Err(JsonError::NumberTooLong) => prop_assert!(text.len() > MAX_NUMBER_CHARS),
                Err(JsonError::Syntax(e)) => prop_assert!(false, "{} is JSON: {}", text, e),
            }
            if let Ok(v) = &reference {
                // what serde_json reads, within the depth limit, without numbers written long and
                // clearly below 1e308 (its reading may round by a little), is accepted
                let long_number = text.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e')).any(|t| t.len() > MAX_NUMBER_CHARS);
                if depth(v) <= MAX_DEPTH && !long_number && largest(v) < 0.99e308 {
                    prop_assert!(CompactJson::parse(&text).is_ok(), "{}", text);
                }
            }
        }

        /// A string of any UTF-16 code units, written as escapes (in a value and as a key), is
        /// accepted exactly when the units are well-formed UTF-16, and then read as that text.
        #[test]
        fn strings_are_accepted_exactly_when_well_formed_utf16(units in prop::collection::vec(prop_oneof![any::<u16>(), 0xD800u16..0xE000], 0..8)) {
            let escaped: String = units.iter().map(|u| format!("\\u{u:04X}")).collect();
            let decoded = String::from_utf16(&units);
            for text in [format!("\"{escaped}\""), format!("{{\"{escaped}\":0}}")] {
                match (CompactJson::parse(&text), &decoded) {
                    (Ok(c), Ok(s)) => {
                        let v: serde_json::Value = serde_json::from_str(c.get()).unwrap();
                        let read = v.as_str().map(str::to_owned).or_else(|| v.as_object().and_then(|o| o.keys().next().cloned()));
                        prop_assert_eq!(read.as_deref(), Some(s.as_str()));
                    }
                    (Err(JsonError::LoneSurrogate), Err(_)) => {}
                    (got, want) => prop_assert!(false, "{:?} for {:?} ({:?})", got, text, want),
                }
            }
        }

        /// Any nesting of arrays and objects, any mix: accepted exactly up to [`MAX_DEPTH`].
        #[test]
        fn nesting_is_accepted_exactly_up_to_the_limit(kinds in prop::collection::vec(any::<bool>(), 0..100)) {
            let text = kinds.iter().rev().fold("null".to_string(), |acc, object| if *object { format!("{{\"k\":{acc}}}") } else { format!("[{acc}]") });
            let result = CompactJson::parse(&text);
            prop_assert_eq!(result.is_ok(), kinds.len() <= MAX_DEPTH);
            if kinds.len() > MAX_DEPTH {
                prop_assert_eq!(result.unwrap_err(), JsonError::TooDeep);
            } else {
                let v: serde_json::Value = serde_json::from_str(result.unwrap().get()).unwrap();
                prop_assert_eq!(depth(&v), kinds.len());
            }
        }

        /// A number is accepted exactly when its magnitude is below 1e308 (as the correctly
        /// rounded reading says, and then serde_json reads it too); what is accepted is kept as
        /// written.
        #[test]
        fn numbers_are_accepted_exactly_below_1e308(
            mantissa in any::<i64>(), zeros in 0usize..4, fraction in any::<u32>(), exponent in prop_oneof![-400i32..400, 280i32..320],
        ) {
            let text = format!("{mantissa}.{}{fraction}e{exponent}", "0".repeat(zeros));
            let v = text.parse::<f64>().unwrap().abs();
            match CompactJson::parse(&text) {
                Ok(c) => {
                    prop_assert!(v <= 1e308, "{} is {}", text, v);
                    prop_assert!(serde_json::from_str::<f64>(&text).is_ok(), "{}", text);
                    prop_assert_eq!(c.get(), text.as_str());
                }
                Err(e) => {
                    prop_assert_eq!(e, JsonError::NumberOutOfRange);
                    prop_assert!(v >= 1e308, "{} is {}", text, v);
                }
            }
        }
    }
}
