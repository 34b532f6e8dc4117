//! `cargo run --release -p roomcast-sdk --example pack -- WASM JS OUT`: the text
//! `sdk/js/host.js` inlines the wasm as (scripts/build-sdk.sh runs it between two esbuild passes):
//! WASM gzipped by Zopfli, written 6 bits a character in the 64 characters that JS (the package
//! file without the wasm) uses most. OUT holds those 64 characters, then the encoded wasm.
//!
//! Why not base64: gzip codes a file of this size as one deflate block, with one Huffman table for
//! the literals of the JavaScript and of the inlined text alike. Base64's alphabet (capitals,
//! digits, `+` and `/`) is not what minified JavaScript is made of, and sharing the table cost
//! about 1 KB against the two gzipped apart; in the JavaScript's own most frequent characters it
//! costs half that (sdk/README.md, Size). Zopfli's deflate is about 6% smaller than `gzip -9`'s
//! and reads the same (the browser's `DecompressionStream`); its default 15 iterations take a
//! third of a second here (1,000 would gain 10 bytes in 6 s).

use std::process::ExitCode;

/// The characters the text is written in: the 64 most frequent printable ASCII characters of
/// `js` (fewest first when tied: by code), leaving out `"` and `\`, which a string literal would
/// escape. Too few in `js`, the rest of printable ASCII fills in.
fn alphabet(js: &[u8]) -> Vec<u8> {
    let usable = |b: u8| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\';
    let mut count = [0usize; 128];
    for &b in js.iter().filter(|b| usable(**b)) {
        count[usize::from(b)] += 1;
    }
    let mut chars: Vec<u8> = (b' '..=b'~').filter(|b| usable(*b)).collect();
    chars.sort_by_key(|b| std::cmp::Reverse(count[usize::from(*b)]));
    chars.truncate(64);
    chars
}

/// `bytes`, 6 bits a character of `alphabet`, the first bits first; the last character is padded
/// with zero bits.
fn encode(bytes: &[u8], alphabet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 4 / 3 + 1);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(alphabet[(acc >> bits) as usize & 63]);
        }
    }
    if bits > 0 {
        out.push(alphabet[(acc << (6 - bits)) as usize & 63]);
    }
    out
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wasm, js, out] = args.as_slice() else {
        eprintln!("usage: pack WASM JS OUT");
        return ExitCode::FAILURE;
    };
    let run = || -> std::io::Result<()> {
        let mut gzipped = Vec::new();
        zopfli::compress(zopfli::Options::default(), zopfli::Format::Gzip, std::fs::read(wasm)?.as_slice(), &mut gzipped)?;
        let alphabet = alphabet(&std::fs::read(js)?);
        let mut text = alphabet.clone();
        text.extend(encode(&gzipped, &alphabet));
        std::fs::write(out, text)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pack: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What host.js does with the text, in Rust.
    fn decode(text: &[u8]) -> Vec<u8> {
        let (alphabet, chars) = text.split_at(64);
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in chars {
            acc = (acc << 6) | alphabet.iter().position(|a| a == c).unwrap() as u32;
            bits += 6;
            if bits > 7 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out.truncate(chars.len() * 6 / 8);
        out
    }

    #[test]
    fn the_alphabet_is_the_most_frequent_usable_characters() {
        let a = alphabet(b"eeee\"\"\"\"\\\\\\\\ttt\n\n\n\nooz");
        assert_eq!(&a[..5], b"etoz ", "by count, then by code (space first of those absent)");
        assert_eq!(a.len(), 64);
        assert!(!a.contains(&b'"') && !a.contains(&b'\\') && !a.contains(&b'\n'));
        let mut unique = a.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 64);
    }

    #[test]
    fn what_is_encoded_decodes_to_the_same_bytes() {
        let a = alphabet(b"function(){return this}");
        for len in 0..40usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = [a.clone(), encode(&bytes, &a)].concat();
            assert_eq!(text.len(), 64 + (len * 8).div_ceil(6));
            assert_eq!(decode(&text), bytes);
        }
    }
}
