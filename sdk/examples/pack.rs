//! `cargo run --release -p roomcast-sdk --example pack -- WASM JS OUT`: the text
//! `sdk/js/host.js` inlines the wasm as (scripts/build-sdk.sh runs it between two esbuild passes):
//! WASM deflated by Zopfli (zlib format), then written in characters drawn as often as JS (the package file
//! without the wasm) has gzip write them as literals.
//!
//! Why: gzip codes a file of this size as one deflate block, with one Huffman table for the
//! literals of the JavaScript and of the inlined text alike. Base64's alphabet (capitals, digits,
//! `+` and `/`, each as often as the others) is not what minified JavaScript is made of, and
//! sharing the table cost about 1 KB against the two gzipped apart. So the deflated wasm is read
//! as if it were a Huffman-coded text whose code is built from the JavaScript's own literal
//! frequencies: decoding it gives characters about as frequent as the JavaScript's, and the shared
//! table costs the pair little (sdk/README.md, Size). host.js turns each character back into its
//! code's bits. Zopfli's deflate is about 6% smaller than `gzip -9`'s and reads the same (the
//! browser's `DecompressionStream`).
//!
//! OUT: the deflated wasm's length in bytes and a comma; for each code length 1 to 16 how many
//! characters have it, as one character each (`0` + the count); those characters in code order
//! (by length, then by byte); then the text.

use std::process::ExitCode;

/// The longest code (host.js reads at most 16 lengths, and shifts codes into a 32-bit number).
const MAX_LENGTH: usize = 16;

/// Whether a string literal takes byte `b` as it is: printable ASCII but `"` and `\`.
fn usable(b: u8) -> bool {
    (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\'
}

/// How often deflate would write each byte of `text` as a literal: a greedy LZ77 parse (matches of
/// 3 to 258 bytes within 32 KiB, as gzip finds them), counting the bytes no match covers.
fn literals(text: &[u8]) -> [usize; 256] {
    let mut counts = [0usize; 256];
    let mut last = std::collections::HashMap::<[u8; 3], Vec<usize>>::new();
    let mut at = 0;
    while at < text.len() {
        let mut best = 0;
        if let Some(key) = text.get(at..at + 3) {
            let key: [u8; 3] = key.try_into().unwrap();
            for &from in last.get(&key).into_iter().flatten().rev().take(128) {
                if at - from > 32_768 {
                    break;
                }
                let len = text[from..].iter().zip(&text[at..]).take(258).take_while(|(a, b)| a == b).count();
                best = best.max(len);
            }
        }
        let step = if best >= 3 { best } else { 1 };
        if step == 1 {
            counts[usize::from(text[at])] += 1;
        }
        for i in at..(at + step) {
            if let Some(key) = text.get(i..i + 3) {
                last.entry(key.try_into().unwrap()).or_default().push(i);
            }
        }
        at += step;
    }
    counts
}

/// Huffman code lengths for `weights` (all above 0), at most [`MAX_LENGTH`]: when a tree is
/// deeper, the weights are flattened and the tree built again.
fn lengths(weights: &[usize]) -> Vec<usize> {
    let mut weights = weights.to_vec();
    loop {
        // (weight, symbols under the node)
        let mut nodes: Vec<(usize, Vec<usize>)> = weights.iter().enumerate().map(|(i, w)| (*w, vec![i])).collect();
        let mut depth = vec![0; weights.len()];
        while nodes.len() > 1 {
            nodes.sort_by_key(|n| std::cmp::Reverse(n.0));
            let (wa, a) = nodes.pop().unwrap();
            let (wb, b) = nodes.pop().unwrap();
            for &s in a.iter().chain(&b) {
                depth[s] += 1;
            }
            nodes.push((wa + wb, [a, b].concat()));
        }
        if depth.iter().all(|d| (1..=MAX_LENGTH).contains(d)) {
            return depth;
        }
        weights = weights.iter().map(|w| w / 2 + 1).collect();
    }
}

/// The code: its characters in code order, with their lengths.
struct Code(Vec<(u8, usize)>);

impl Code {
    /// The code for `js`: the 72 usable characters gzip writes most as literals there, by how
    /// often (measured 64 to 84 on the file of 17,015 bytes: 72 the smallest, 16,992; 80 17,015;
    /// the best count moves with the JavaScript: 80 was the smallest on the file of 14,155).
    fn for_js(js: &[u8]) -> Code {
        let counts = literals(js);
        let mut chars: Vec<u8> = (0..=255).filter(|b| usable(*b) && counts[usize::from(*b)] > 0).collect();
        chars.sort_by_key(|c| std::cmp::Reverse(counts[usize::from(*c)]));
        chars.truncate(72);
        if chars.len() < 2 {
            // (a code needs two characters; JavaScript this short does not happen)
            chars = vec![b'a', b'b'];
        }
        let lengths = lengths(&chars.iter().map(|c| counts[usize::from(*c)].max(1)).collect::<Vec<_>>());
        let mut code: Vec<(u8, usize)> = chars.into_iter().zip(lengths).collect();
        code.sort_by_key(|(c, l)| (*l, *c));
        Code(code)
    }

    /// The canonical code of each character, in code order: (bits, length).
    fn codes(&self) -> Vec<(u32, usize)> {
        let mut out = Vec::new();
        let (mut code, mut length) = (0u32, 1);
        for &(_, l) in &self.0 {
            code <<= l - length;
            length = l;
            out.push((code, l));
            code += 1;
        }
        out
    }

    /// The header host.js reads before the text.
    fn header(&self, bytes: usize) -> Vec<u8> {
        let mut out = format!("{bytes},").into_bytes();
        out.extend((1..=MAX_LENGTH).map(|l| b'0' + self.0.iter().filter(|(_, len)| *len == l).count() as u8));
        out.extend(self.0.iter().map(|(c, _)| *c));
        out
    }

    /// `bytes` read, first bit first, as characters of this code; the last one completed with
    /// zero bits.
    fn text(&self, bytes: &[u8]) -> Vec<u8> {
        let codes = self.codes();
        let mut out = Vec::new();
        let (mut bits, mut length) = (0u32, 0);
        let mut take = |bit: u32, out: &mut Vec<u8>| {
            bits = (bits << 1) | bit;
            length += 1;
            if let Some(i) = codes.iter().position(|&(c, l)| l == length && c == bits) {
                out.push(self.0[i].0);
                (bits, length) = (0, 0);
            }
            length > 0
        };
        for b in bytes {
            for i in (0..8).rev() {
                take(u32::from(b >> i) & 1, &mut out);
            }
        }
        while take(0, &mut out) {}
        out
    }
}

/// `bytes` in the zlib format (`DecompressionStream("deflate")`, which every browser with
/// `DecompressionStream` reads: its header and checksum take 12 bytes less than gzip's), the
/// deflate by Zopfli with 1,000 iterations (a second here; 2.5% smaller than its default 15).
fn zlib(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let options = zopfli::Options { iteration_count: std::num::NonZeroU64::new(1000).unwrap(), ..Default::default() };
    // CMF 0x78 (deflate, 32 KiB window) and FLG 0xDA (level 3, no dictionary; CMF·256+FLG a multiple of 31)
    let mut out = vec![0x78, 0xDA];
    zopfli::compress(options, zopfli::Format::Deflate, bytes, &mut out)?;
    out.extend(adler32(bytes).to_be_bytes());
    Ok(out)
}

/// zlib's checksum.
fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in bytes {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    b << 16 | a
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [wasm, js, out] = args.as_slice() else {
        eprintln!("usage: pack WASM JS OUT");
        return ExitCode::FAILURE;
    };
    let run = || -> std::io::Result<()> {
        let wasm = std::fs::read(wasm)?;
        let deflated = zlib(&wasm)?;
        let code = Code::for_js(&std::fs::read(js)?);
        let mut text = code.header(deflated.len());
        text.extend(code.text(&deflated));
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
    fn unpack(packed: &[u8]) -> Vec<u8> {
        let comma = packed.iter().position(|b| *b == b',').unwrap();
        let n: usize = std::str::from_utf8(&packed[..comma]).unwrap().parse().unwrap();
        let counts = &packed[comma + 1..comma + 1 + MAX_LENGTH];
        let mut at = comma + 1 + MAX_LENGTH;
        let mut codes = std::collections::HashMap::new();
        let mut code = 0u32;
        for (length, count) in (1..=MAX_LENGTH).zip(counts) {
            for _ in 0..count - b'0' {
                codes.insert(packed[at], (code, length));
                code += 1;
                at += 1;
            }
            code <<= 1;
        }
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in &packed[at..] {
            let (code, length) = codes[c];
            acc = (acc << length) | code;
            bits += length;
            while bits > 7 {
                bits -= 8;
                out.push((acc >> bits) as u8);
            }
        }
        out.truncate(n);
        assert_eq!(out.len(), n, "the text holds every byte");
        out
    }

    #[test]
    fn zlib_has_its_header_and_checksum() {
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        let z = zlib(b"roomcast roomcast roomcast").unwrap();
        assert_eq!((u16::from(z[0]) << 8 | u16::from(z[1])) % 31, 0);
        assert_eq!(z[z.len() - 4..], adler32(b"roomcast roomcast roomcast").to_be_bytes());
    }

    #[test]
    fn literals_are_the_bytes_no_match_covers() {
        let counts = literals(b"abcabcabcabcx");
        assert_eq!((counts[usize::from(b'a')], counts[usize::from(b'c')], counts[usize::from(b'x')]), (1, 1, 1));
    }

    #[test]
    fn codes_are_a_complete_prefix_code_no_longer_than_16() {
        let js = b"function(e){return this.#t.get(e)??[]}const n=new Map,o=(a,b)=>a+b;export{o as add}";
        let code = Code::for_js(js);
        assert!(code.0.iter().all(|(c, l)| usable(*c) && (1..=MAX_LENGTH).contains(l)));
        let kraft: f64 = code.0.iter().map(|(_, l)| 0.5f64.powi(*l as i32)).sum();
        assert!((kraft - 1.0).abs() < 1e-9, "complete: {kraft}");
        // skewed weights are flattened to fit
        let deep = lengths(&(0..40).map(|i| 1usize << i.min(30)).collect::<Vec<_>>());
        assert!(deep.iter().all(|l| (1..=MAX_LENGTH).contains(l)));
    }

    #[test]
    fn what_is_packed_unpacks_to_the_same_bytes() {
        let code = Code::for_js(b"const add=(a,b)=>a+b,sub=(a,b)=>a-b;export{add,sub};if(x)y();else z()");
        for len in 0..300usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11 + i / 7) as u8).collect();
            let packed = [code.header(bytes.len()), code.text(&bytes)].concat();
            assert!(packed.iter().all(|b| usable(*b) || *b == b','));
            assert_eq!(unpack(&packed), bytes);
        }
    }
}
