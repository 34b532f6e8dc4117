//! Base64, the two forms roomcast reads and writes: URL-safe without padding (tokens) and standard
//! with padding (webhook signatures and secrets). Strict as the `base64` crate's engines it
//! replaced (`URL_SAFE_NO_PAD`, `STANDARD`), against which the property tests below check it:
//! canonical padding or none, no stray symbols, no bits set past the last byte. The crate was
//! 5.8 KB of the Worker's wasm for four calls (bench/README.md, "Worker size").

/// Which of the two forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `A-Z a-z 0-9 - _`, no `=` (RFC 4648 §5, as JWTs use it).
    UrlSafeNoPad,
    /// `A-Z a-z 0-9 + /`, padded with `=` to a multiple of four.
    Standard,
}

impl Form {
    fn symbols(self) -> &'static [u8; 64] {
        match self {
            Form::UrlSafeNoPad => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
            Form::Standard => b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
        }
    }

    fn value(self, symbol: u8) -> Option<u32> {
        let v = match symbol {
            b'A'..=b'Z' => symbol - b'A',
            b'a'..=b'z' => symbol - b'a' + 26,
            b'0'..=b'9' => symbol - b'0' + 52,
            b'-' if self == Form::UrlSafeNoPad => 62,
            b'_' if self == Form::UrlSafeNoPad => 63,
            b'+' if self == Form::Standard => 62,
            b'/' if self == Form::Standard => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }
}

/// `bytes` in base64 of the given form.
pub fn encode(bytes: &[u8], form: Form) -> String {
    let symbols = form.symbols();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = |i: usize| chunk.get(i).map_or(0, |b| u32::from(*b));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        // A chunk of k bytes gives k + 1 symbols.
        for i in 0..=chunk.len() {
            out.push(char::from(symbols[((n >> (18 - 6 * i)) & 63) as usize]));
        }
        if form == Form::Standard {
            for _ in chunk.len()..3 {
                out.push('=');
            }
        }
    }
    out
}

/// The bytes `text` encodes in the given form, or `None` when it is not exactly that form.
pub fn decode(text: &str, form: Form) -> Option<Vec<u8>> {
    let mut body = text.as_bytes();
    if form == Form::Standard {
        if body.len() % 4 != 0 {
            return None;
        }
        // At most two `=` (a third is a symbol below, and refused): with the length a multiple
        // of four, they leave a last group of two or three symbols, as the padding must.
        let pad = body.iter().rev().take(2).take_while(|b| **b == b'=').count();
        body = &body[..body.len() - pad];
    }
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for group in body.chunks(4) {
        let mut n = 0u32;
        for (i, symbol) in group.iter().enumerate() {
            n |= form.value(*symbol)? << (18 - 6 * i);
        }
        // A group of k symbols carries k - 1 bytes; the bits past them must be zero.
        let bytes = group.len() - 1;
        if n & (0xff_ffff >> (8 * bytes)) != 0 {
            return None;
        }
        for i in 0..bytes {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use proptest::prelude::*;

    fn engine(form: Form) -> &'static base64::engine::GeneralPurpose {
        match form {
            Form::UrlSafeNoPad => &URL_SAFE_NO_PAD,
            Form::Standard => &STANDARD,
        }
    }

    fn form() -> impl Strategy<Value = Form> {
        prop_oneof![Just(Form::UrlSafeNoPad), Just(Form::Standard)]
    }

    #[test]
    fn known_values() {
        assert_eq!(encode(b"", Form::Standard), "");
        assert_eq!(encode(b"f", Form::Standard), "Zg==");
        assert_eq!(encode(b"fo", Form::Standard), "Zm8=");
        assert_eq!(encode(b"foo", Form::Standard), "Zm9v");
        assert_eq!(encode(&[0xfb, 0xff], Form::Standard), "+/8=");
        assert_eq!(encode(&[0xfb, 0xff], Form::UrlSafeNoPad), "-_8");
        assert_eq!(decode("-_8", Form::UrlSafeNoPad), Some(vec![0xfb, 0xff]));
        assert_eq!(decode("+/8=", Form::Standard), Some(vec![0xfb, 0xff]));
        for bad in ["Zg", "Zg=", "Zg===", "Zh==", "Z===", "====", "Zm9v=", "Zm 9"] {
            assert_eq!(decode(bad, Form::Standard), None, "{bad}");
        }
        for bad in ["Zg==", "Z", "Zh", "+/8", "Zm9v="] {
            assert_eq!(decode(bad, Form::UrlSafeNoPad), None, "{bad}");
        }
    }

    proptest! {
        /// Encoding agrees with the `base64` crate's engine of the same form, and decodes back.
        #[test]
        fn encodes_as_the_crate_does(bytes in proptest::collection::vec(any::<u8>(), 0..64), form in form()) {
            let text = encode(&bytes, form);
            prop_assert_eq!(&text, &engine(form).encode(&bytes));
            prop_assert_eq!(decode(&text, form), Some(bytes));
        }

        /// Any text, mostly near-valid (symbols of both alphabets, `=`, a stray byte): decoded
        /// exactly when the crate decodes it, to the same bytes.
        #[test]
        fn decodes_as_the_crate_does(text in "[A-Za-z0-9+/_=-]{0,14}|[A-Za-z0-9_-]{0,12}={0,3}|[A-Za-z0-9+/]{0,12}[ .=]{0,2}", form in form()) {
            prop_assert_eq!(decode(&text, form), engine(form).decode(&text).ok(), "{:?}", text);
        }
    }
}
