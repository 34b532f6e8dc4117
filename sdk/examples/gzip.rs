//! `cargo run --release -p roomcast-sdk --example gzip -- IN OUT`: gzips IN to OUT with Zopfli,
//! whose deflate stream any inflater (the browser's `DecompressionStream`) reads, 5-6% smaller
//! than `gzip -9`'s (Zopfli's default 15 iterations take a third of a second here; 1,000
//! gain 10 bytes more). scripts/build-sdk.sh packs the wasm with it before inlining it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        eprintln!("usage: gzip IN OUT");
        return ExitCode::FAILURE;
    };
    let run = || -> std::io::Result<()> {
        let data = std::fs::read(input)?;
        let mut out = Vec::new();
        zopfli::compress(zopfli::Options::default(), zopfli::Format::Gzip, data.as_slice(), &mut out)?;
        std::fs::write(output, out)
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gzip: {e}");
            ExitCode::FAILURE
        }
    }
}
