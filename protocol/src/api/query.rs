//! Query strings, read the way browsers and the `url` crate write them
//! (`application/x-www-form-urlencoded`, by the `form_urlencoded` crate that `url` uses): pairs
//! split on `&`, key and value on the first `=`, `+` is a space, `%XX` a byte, and bytes that are
//! not UTF-8 become U+FFFD. A `%` not followed by two hex digits stays as it is.

use super::refusal::Refusal;
use std::borrow::Cow;

/// The largest whole number a query may carry: 2^53 - 1. Sequence numbers and counts are
/// JavaScript numbers on the client side and SQLite integers (i64) in the room; at or above 2^53
/// a value is not exact in JavaScript, and above 2^63 - 1 it wrapped negative in SQLite (a
/// `since` of 2^63 returned the whole history).
pub const MAX_WHOLE: u64 = (1 << 53) - 1;

/// The decoded `(key, value)` pairs of a raw query string (without the `?`), in order. Empty
/// pieces (`a=1&&b=2`) are skipped.
pub fn pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(query.as_bytes())
}

/// The last value of `key`, if any (later pairs win, as they did when the edge read them in a loop).
pub fn last<'a>(query: &'a str, key: &str) -> Option<Cow<'a, str>> {
    pairs(query).filter(|(k, _)| k == key).map(|(_, v)| v).last()
}

/// Whether the client asked for refusals as close codes (`errors=close`).
pub fn errors_as_close(query: &str) -> bool {
    pairs(query).any(|(k, v)| k == "errors" && v == "close")
}

/// Reads a whole number in `0..=MAX_WHOLE`: ASCII digits only (no sign, no spaces, no exponent).
pub fn whole(name: &'static str, value: &str) -> Result<u64, Refusal> {
    let bad = || Refusal::bad_request(format!("{name} must be a whole number below 2^53"));
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    // More than 16 digits is at least 10^16 > 2^53 whatever they are; this also keeps the parse
    // from overflowing on long input.
    if value.trim_start_matches('0').len() > 16 {
        return Err(bad());
    }
    match value.parse::<u64>() {
        Ok(n) if n <= MAX_WHOLE => Ok(n),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(v: &str) -> String {
        form_urlencoded::byte_serialize(v.as_bytes()).collect()
    }

    fn all(q: &str) -> Vec<(String, String)> {
        pairs(q).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    #[test]
    fn decodes_like_a_form() {
        assert_eq!(
            all("a=1&b=two+words&c=%7B%22x%22%3A1%7D"),
            [("a", "1"), ("b", "two words"), ("c", r#"{"x":1}"#)].map(|(k, v)| (k.into(), v.into()))
        );
        assert_eq!(all("&&flag&=v&k="), [("flag", ""), ("", "v"), ("k", "")].map(|(k, v)| (k.into(), v.into())));
        assert_eq!(all("bad=%zz%4&eq=a=b"), [("bad", "%zz%4"), ("eq", "a=b")].map(|(k, v)| (k.into(), v.into())));
        assert_eq!(all("u=%FF%C3%A9"), [("u".into(), "\u{FFFD}é".into())]);
        assert_eq!(last("a=1&a=2&b=3", "a").as_deref(), Some("2"));
        assert!(errors_as_close("x=1&errors=close"));
        assert!(!errors_as_close("errors=closed&errors"));
    }

    #[test]
    fn whole_numbers_stop_below_2_pow_53() {
        assert_eq!(whole("since", "0"), Ok(0));
        assert_eq!(whole("since", "0009007199254740991"), Ok(MAX_WHOLE));
        for bad in [
            "",
            "-1",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "9007199254740992",
            "9223372036854775808",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let r = whole("since", bad).unwrap_err();
            assert_eq!(r.status(), 400, "{bad}");
        }
    }

    #[test]
    fn encode_round_trips() {
        for v in ["plain", "a b&c=d", "é%+", ""] {
            let q = format!("k={}", encode(v));
            assert_eq!(last(&q, "k").as_deref(), Some(v));
        }
    }

    proptest! {
        /// Any query string (any bytes a URL can carry, and more) decodes without panicking.
        #[test]
        fn arbitrary_queries_decode(q in "[%+=&a-zA-Z0-9\u{0}-\u{7f}é😀]{0,80}") {
            for (k, v) in pairs(&q) {
                prop_assert!(k.len() + v.len() <= q.len() * 3);
            }
        }

        #[test]
        fn encoded_values_decode_to_themselves(v in ".{0,40}") {
            let q = format!("x=1&k={}&y=2", encode(&v));
            let got = last(&q, "k");
            prop_assert_eq!(got.as_deref(), Some(v.as_str()));
        }

        /// `whole` accepts exactly the decimal numbers below 2^53.
        #[test]
        fn whole_matches_u64_below_the_limit(n in any::<u64>()) {
            prop_assert_eq!(whole("n", &n.to_string()).is_ok(), n <= MAX_WHOLE);
        }
    }
}
