//! The native client under load, for the benchmark (`node bench/native-client.mjs` drives it next
//! to the load generator; bench/README.md, *The native client*): `members` clients of this crate
//! join one room in this one process, `publishers` of them publish stored messages open-loop (each
//! send scheduled in advance, evenly spread, not waiting for the previous ack), and every member
//! counts the `Message` events it receives. The payloads are the load generator's (bench/src/wire.rs:
//! `"~B~step~publisher~n~scheduled~xxx…"`, `size` bytes), so both handle the same frames. A warm-up
//! phase (step 0) runs first; the measured phase (step 1) is timed from its first send until every
//! delivery arrived (or `drain` seconds passed), and this process's CPU (utime + stime from
//! `/proc/self/stat`) over that span is what it costs. Prints one JSON line.
//!
//! ```text
//! cargo build --release -p roomcast-client --example load
//! target/release/examples/load <origin> <room> <token> <members> <publishers> <msgs_per_s> <seconds> <size> [warmup_seconds] [threads]
//! ```

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use roomcast_client::{Client, Event, Options, Room, State};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long to wait after the last send for deliveries still in flight (the generator's default).
const DRAIN: Duration = Duration::from_secs(3);

struct Args {
    origin: String,
    room: String,
    token: String,
    members: usize,
    publishers: usize,
    msgs_per_s: f64,
    seconds: f64,
    size: usize,
    warmup_seconds: f64,
    threads: usize,
}

fn args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 8 {
        return Err(
            "usage: load <origin> <room> <token> <members> <publishers> <msgs_per_s> <seconds> <size> [warmup_seconds] [threads]".into()
        );
    }
    let num = |i: usize, what: &str| a[i].parse::<f64>().map_err(|_| format!("{what}: {:?} is not a number", a[i]));
    let args = Args {
        origin: a[0].clone(),
        room: a[1].clone(),
        token: a[2].clone(),
        members: num(3, "members")? as usize,
        publishers: num(4, "publishers")? as usize,
        msgs_per_s: num(5, "msgs_per_s")?,
        seconds: num(6, "seconds")?,
        size: num(7, "size")? as usize,
        warmup_seconds: if a.len() > 8 { num(8, "warmup_seconds")? } else { 1.0 },
        threads: if a.len() > 9 { num(9, "threads")? as usize } else { 0 },
    };
    if args.members < 2 || args.publishers == 0 || args.publishers > args.members || args.msgs_per_s <= 0.0 {
        return Err("need members >= 2, 1 <= publishers <= members, msgs_per_s > 0".into());
    }
    Ok(args)
}

/// The load generator's payload (bench/src/wire.rs `payload`): a JSON string of exactly `size` bytes.
fn payload(step: u32, publisher: usize, n: u64, scheduled_us: u64, size: usize) -> String {
    let mut s = format!("\"~B~{step}~{publisher}~{n}~{scheduled_us}~");
    let pad = size.saturating_sub(s.len() + 1);
    s.extend(std::iter::repeat_n('x', pad));
    s.push('"');
    s
}

/// The step a delivered payload belongs to.
fn step_of(data: &serde_json::Value) -> Option<usize> {
    data.as_str()?.strip_prefix("~B~")?.split('~').next()?.parse().ok()
}

/// CPU seconds (utime + stime) this process used so far; USER_HZ is 100 on Linux.
fn own_cpu() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = text.rfind(')').map_or("", |i| &text[i + 2..]);
    let f: Vec<&str> = rest.split(' ').collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
    (tick(11), tick(12))
}

/// What every publisher of one step shares: the step, the payload size, the interval between one
/// publisher's sends, when the step ends, and the clock's zero (for the scheduled time).
#[derive(Clone, Copy)]
struct Pace {
    step: u32,
    size: usize,
    interval: Duration,
    end: Instant,
    base: Instant,
}

/// One publisher's sends for one step: open-loop, every `pace.interval` from `start` until the end.
async fn publish_for(room: Room, index: usize, pace: Pace, start: Instant) -> (u64, u64) {
    let Pace { step, size, interval, end, base } = pace;
    let mut inflight = FuturesUnordered::new();
    let (mut sent, mut acked) = (0u64, 0u64);
    loop {
        let at = start + interval.mul_f64(sent as f64);
        if at >= end {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {
                let data = payload(step, index, sent, (at - base).as_micros() as u64, size);
                inflight.push(room.publish_json(data));
                sent += 1;
            }
            Some(r) = inflight.next(), if !inflight.is_empty() => acked += u64::from(r.is_ok()),
        }
    }
    while let Some(r) = inflight.next().await {
        acked += u64::from(r.is_ok());
    }
    (sent, acked)
}

async fn run(a: Args) -> Result<String, String> {
    let base = Instant::now();
    let delivered: Arc<[AtomicU64; 2]> = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let opened = Arc::new(AtomicU64::new(0));
    let mut rooms = Vec::with_capacity(a.members);
    for m in 0..a.members {
        let opts = Options { client_id: Some(format!("n{m}")), ..Options::token(a.token.clone()) };
        let (room, mut events) = Client::connect(&a.origin, &a.room, opts).await.map_err(|e| e.to_string())?;
        let (delivered, opened) = (delivered.clone(), opened.clone());
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    Event::Message(m) => {
                        if let Some(step) = step_of(&m.data).filter(|s| *s < 2) {
                            delivered[step].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Event::Status(s) if s.state == State::Open => {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
        rooms.push(room);
    }
    let connect_by = Instant::now() + Duration::from_secs(30);
    while opened.load(Ordering::Relaxed) < a.members as u64 {
        if Instant::now() > connect_by {
            return Err(format!("only {} of {} members opened", opened.load(Ordering::Relaxed), a.members));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let connect_seconds = base.elapsed().as_secs_f64();
    let interval = Duration::from_secs_f64(a.publishers as f64 / a.msgs_per_s);
    let mut out = Vec::new();
    for (step, seconds) in [(0u32, a.warmup_seconds), (1, a.seconds)] {
        let (user0, sys0) = own_cpu();
        let start = Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_secs_f64(seconds);
        let pace = Pace { step, size: a.size, interval, end, base };
        let handles: Vec<_> = (0..a.publishers)
            .map(|k| {
                // Publishers are spread evenly over one interval so the load is smooth.
                let phase = interval.mul_f64(k as f64 / a.publishers as f64);
                tokio::spawn(publish_for(rooms[k].clone(), k, pace, start + phase))
            })
            .collect();
        let (mut sent, mut acked) = (0, 0);
        for h in handles {
            let (s, k) = h.await.map_err(|e| e.to_string())?;
            sent += s;
            acked += k;
        }
        let expected = sent * (a.members as u64 - 1);
        let drain_until = Instant::now() + DRAIN;
        while delivered[step as usize].load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (user1, sys1) = own_cpu();
        out.push(serde_json::json!({
            "step": step,
            "seconds": seconds,
            "sent": sent,
            "acked": acked,
            "expected": expected,
            "delivered": delivered[step as usize].load(Ordering::Relaxed),
            "cpu_seconds": (user1 - user0) + (sys1 - sys0),
            "system_cpu_seconds": sys1 - sys0,
        }));
    }
    for room in &rooms {
        room.close();
    }
    Ok(serde_json::json!({ "members": a.members, "connect_seconds": connect_seconds, "steps": out }).to_string())
}

fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("load: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if a.threads > 0 {
        builder.worker_threads(a.threads);
    }
    let runtime = builder.enable_all().build().expect("a tokio runtime");
    let outcome = runtime.block_on(run(a));
    runtime.shutdown_background();
    match outcome {
        Ok(json) => {
            println!("{json}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("load: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
