//! The one encoder of the frames a client sends, and the digits and pieces it writes them with
//! (without `format!`: its machinery would go into the SDK's wasm).

use alloc::string::String;

/// Appends `n` in decimal; the SDK avoids `format!` and its machinery in the wasm build (and
/// indexing, whose bounds check alone would link `core::fmt`).
pub fn push_u64(out: &mut String, n: u64) {
    if n >= 10 {
        push_u64(out, n / 10);
    }
    push_nth(out, "0123456789", (n % 10) as usize);
}

/// Appends the `i`th character of the ASCII text `chars`. (`String::push` of a `char` would bring
/// its UTF-8 encoder into the wasm; nothing the machine writes needs it.)
pub(super) fn push_nth(out: &mut String, chars: &str, i: usize) {
    out.push_str(chars.get(i..i + 1).unwrap_or_default());
}

/// A client frame: `{"type":"<kind>"`, then `,"id":"<id>"` when there is one, then `,"<key>":<json>`
/// for each field that is present, then `}`. The one encoder of everything a client sends: the
/// type and id come first (so the room can name the id even when it refuses the frame as too
/// large), and the field values come already encoded as JSON (the adapter's `JSON.stringify`),
/// while types, ids and keys are the machine's own and need no escaping.
#[allow(clippy::single_char_add_str)] // `push` of a char: see push_nth
pub fn encode(kind: &str, id: Option<&str>, fields: &[(&str, Option<&str>)]) -> String {
    let mut text = String::new();
    push_all(&mut text, &[r#"{"type":""#, kind, "\""]);
    if let Some(id) = id {
        push_all(&mut text, &[r#","id":""#, id, "\""]);
    }
    for (key, value) in fields {
        if let Some(value) = value {
            push_all(&mut text, &[",\"", key, "\":", value]);
        }
    }
    text.push_str("}");
    text
}

/// Appends each piece (one loop: a single copy of `push_str` in the wasm).
#[inline(never)]
pub(super) fn push_all(text: &mut String, pieces: &[&str]) {
    for piece in pieces {
        text.push_str(piece);
    }
}

/// `n` in decimal, for [`encode`].
pub(super) fn decimal(n: Option<u64>) -> Option<String> {
    n.map(|n| {
        let mut s = String::new();
        push_u64(&mut s, n);
        s
    })
}
