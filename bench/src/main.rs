//! roomcast-bench: the load generator behind `npm run bench` (bench/run.mjs drives it).
//!
//! - `roomcast-bench run <config.json>`: one measurement run against one system; prints the
//!   result as JSON on stdout.
//! - `roomcast-bench interleave <config.json>`: several systems, each load offered to one at a
//!   time in alternating slots (what `npm run bench` uses); prints `[{name, result}]`.
//! - `roomcast-bench chart <chart.json> <out.svg>`: draws the summary chart.

mod chart;
mod load;
mod procfs;
mod wire;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["run", config] => run(config),
        ["interleave", config] => interleave(config),
        ["chart", spec, out] => draw(spec, out),
        _ => Err("usage: roomcast-bench run <config.json> | interleave <config.json> | chart <chart.json> <out.svg>".into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roomcast-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    measure(path, load::run)
}

fn interleave(path: &str) -> Result<(), Box<dyn std::error::Error>> {
    measure(path, load::run_interleaved)
}

/// Reads the config at `path`, runs `f` on it in a tokio runtime and prints its result as JSON.
fn measure<C, R, F>(path: &str, f: impl FnOnce(C) -> F) -> Result<(), Box<dyn std::error::Error>>
where
    C: serde::de::DeserializeOwned,
    R: serde::Serialize,
    F: std::future::Future<Output = Result<R, load::LoadError>>,
{
    let config: C = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(f(config))?;
    println!("{}", serde_json::to_string(&result)?);
    // Open sockets and reader tasks are dropped with the runtime; no need to close them politely.
    runtime.shutdown_background();
    Ok(())
}

fn draw(spec: &str, out: &str) -> Result<(), Box<dyn std::error::Error>> {
    let chart: chart::Chart = serde_json::from_str(&std::fs::read_to_string(spec)?)?;
    chart::draw(&chart, out)
}
