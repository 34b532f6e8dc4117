//! One measurement run against one system: open the members, then publish open-loop at each
//! offered load in turn and record what arrives. Latency is taken from the time each send was
//! scheduled for, not when it went out, so a server that falls behind cannot hide it (no
//! coordinated omission). The same process stamps sends and receipts with one clock.

use crate::procfs;
use crate::wire::{self, Protocol, Stamp};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = Arc<tokio::sync::Mutex<SplitSink<Socket, Message>>>;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("connecting member {member}: {source}")]
    Connect { member: usize, source: tokio_tungstenite::tungstenite::Error },
    #[error("member {member} did not finish joining: {why}")]
    Join { member: usize, why: String },
}

#[derive(Debug, Deserialize)]
pub struct RunConfig {
    pub protocol: Protocol,
    /// WebSocket URL with `{room}` and `{cid}` placeholders.
    pub url: String,
    pub rooms: usize,
    pub members: usize,
    pub publishers_per_room: usize,
    /// Payload bytes (the JSON string literal every system relays).
    pub size: usize,
    pub steps: Vec<StepSpec>,
    /// The server's root process: its tree's CPU and memory are measured.
    pub server_pid: u32,
    pub knee_p99_ms: f64,
    /// Stop at the first step over the knee (p99 above the bound, or anything lost).
    pub stop_after_knee: bool,
    /// How many of the first steps only warm up (first writes, JIT tiers, buffers): they run
    /// like the others but are left out of the result.
    #[serde(default)]
    pub warmup_steps: usize,
    #[serde(default = "default_concurrency")]
    pub connect_concurrency: usize,
    /// How long to wait after the last send for deliveries still in flight.
    #[serde(default = "default_drain")]
    pub drain_seconds: f64,
}

fn default_concurrency() -> usize {
    64
}
fn default_drain() -> f64 {
    3.0
}

#[derive(Debug, Clone, Deserialize)]
pub struct StepSpec {
    /// Messages published per second, over all rooms.
    pub msgs_per_s: f64,
    pub seconds: f64,
}

#[derive(Debug, Serialize)]
pub struct RunResult {
    pub connections: usize,
    pub connect_seconds: f64,
    pub rss_before_kib: u64,
    pub rss_connected_kib: u64,
    pub idle_kib_per_connection: f64,
    /// The same after the steps, with the connections still open: what a connection costs
    /// once frames have gone through it.
    pub rss_after_kib: u64,
    pub used_kib_per_connection: f64,
    pub steps: Vec<StepResult>,
    /// Connections that closed or failed during the run (should be 0).
    pub closed: usize,
}

#[derive(Debug, Serialize)]
pub struct StepResult {
    pub offered_msgs_per_s: f64,
    pub offered_deliveries_per_s: f64,
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Deliveries that came at or below a seq already seen from the same publisher.
    pub reordered: u64,
    pub deliveries_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub server_cpu_seconds: f64,
    pub cpu_us_per_delivery: f64,
    /// The kernel-mode (stime) part of `cpu_us_per_delivery`.
    pub system_cpu_us_per_delivery: f64,
    pub generator_cpu_seconds: f64,
    pub within_knee: bool,
}

struct StepCounters {
    delivered: AtomicU64,
    reordered: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
}

struct Shared {
    base: Instant,
    steps: Vec<StepCounters>,
    closed: AtomicUsize,
}

impl Shared {
    fn record(&self, stamp: Stamp, last: &mut HashMap<u32, u64>) {
        let Some(step) = self.steps.get(stamp.step as usize) else { return };
        let now = self.base.elapsed().as_micros() as u64;
        let latency = now.saturating_sub(stamp.scheduled_us).max(1);
        if let Ok(mut h) = step.latency_us.lock() {
            h.saturating_record(latency);
        }
        step.delivered.fetch_add(1, Ordering::Relaxed);
        match last.get(&stamp.publisher) {
            Some(&seen) if stamp.n <= seen => {
                step.reordered.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                last.insert(stamp.publisher, stamp.n);
            }
        }
    }
}

fn member_url(config: &RunConfig, room: usize, member: usize) -> String {
    config.url.replace("{room}", &format!("r{room}")).replace("{cid}", &format!("m{member}"))
}

async fn next_text(stream: &mut SplitStream<Socket>) -> Result<String, String> {
    loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => return Err(format!("closed: {c:?}")),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.to_string()),
            None => return Err("stream ended".into()),
        }
    }
}

/// Opens one member and waits until it is in its room.
async fn join(config: &RunConfig, room: usize, member: usize) -> Result<(Sink, SplitStream<Socket>), LoadError> {
    let url = member_url(config, room, member);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .map_err(|source| LoadError::Connect { member, source })?;
    let (mut sink, mut stream) = socket.split();
    let fail = |why: String| LoadError::Join { member, why };
    let handshake = async {
        match config.protocol {
            Protocol::Relay => Ok(()),
            Protocol::Roomcast | Protocol::RoomcastBroadcast => loop {
                if next_text(&mut stream).await?.contains("\"type\":\"welcome\"") {
                    return Ok(());
                }
            },
            Protocol::SocketIo => {
                // Engine.IO open packet, then the Socket.IO connect to the main namespace.
                let open = next_text(&mut stream).await?;
                if !open.starts_with('0') {
                    return Err(format!("expected an open packet, got {open}"));
                }
                sink.send(Message::text("40")).await.map_err(|e| e.to_string())?;
                while !next_text(&mut stream).await?.starts_with("40") {}
                sink.send(Message::text(format!("42[\"join\",\"r{room}\"]"))).await.map_err(|e| e.to_string())?;
                while !next_text(&mut stream).await?.starts_with("42[\"joined\"") {}
                Ok(())
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), handshake).await.map_err(|_| fail("timed out".into()))?.map_err(fail)?;
    Ok((Arc::new(tokio::sync::Mutex::new(sink)), stream))
}

async fn read_loop(protocol: Protocol, mut stream: SplitStream<Socket>, sink: Sink, shared: Arc<Shared>) {
    let mut last = HashMap::new();
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) => {
                let text = text.as_str();
                let mut any = false;
                for stamp in wire::stamps(text) {
                    shared.record(stamp, &mut last);
                    any = true;
                }
                if !any && protocol == Protocol::SocketIo && text == "2" {
                    // Engine.IO heartbeat: the server pings, the client answers.
                    let _ = sink.lock().await.send(Message::text("3")).await;
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

struct Publisher {
    index: u32,
    sink: Sink,
    /// The next counter value; continues across steps so per-publisher order is checked throughout.
    next_n: u64,
}

async fn publish_for(
    mut p: Publisher,
    protocol: Protocol,
    size: usize,
    step: u32,
    start: Instant,
    interval: Duration,
    end: Instant,
    base: Instant,
) -> (Publisher, u64) {
    let mut sent = 0u64;
    let mut at = start;
    while at < end {
        tokio::time::sleep_until(at.into()).await;
        let stamp = Stamp { step, publisher: p.index, n: p.next_n, scheduled_us: (at - base).as_micros() as u64 };
        let frame = wire::publish_frame(protocol, p.next_n, &wire::payload(stamp, size));
        if p.sink.lock().await.send(Message::text(frame)).await.is_err() {
            break;
        }
        p.next_n += 1;
        sent += 1;
        at += interval;
    }
    (p, sent)
}

pub async fn run(config: RunConfig) -> Result<RunResult, LoadError> {
    let shared = Arc::new(Shared {
        base: Instant::now(),
        steps: (0..config.steps.len())
            .map(|_| StepCounters {
                delivered: AtomicU64::new(0),
                reordered: AtomicU64::new(0),
                latency_us: Mutex::new(Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")),
            })
            .collect(),
        closed: AtomicUsize::new(0),
    });

    let rss_before = procfs::rss_kib(config.server_pid);
    let connect_start = Instant::now();
    let total = config.rooms * config.members;
    let config = Arc::new(config);
    let mut publishers = Vec::new();
    // Members join in waves of `connect_concurrency`, all of a room's before the next room's.
    let mut member = 0;
    while member < total {
        let wave: Vec<_> = (member..(member + config.connect_concurrency).min(total))
            .map(|m| {
                let config = config.clone();
                tokio::spawn(async move { (m, join(&config, m / config.members, m).await) })
            })
            .collect();
        for handle in wave {
            let (m, joined) = handle.await.expect("join task");
            let (sink, stream) = joined?;
            let room = m / config.members;
            let rank = m % config.members;
            if rank < config.publishers_per_room {
                publishers.push(Publisher { index: (room * config.publishers_per_room + rank) as u32, sink: sink.clone(), next_n: 0 });
            }
            tokio::spawn(read_loop(config.protocol, stream, sink, shared.clone()));
        }
        member += config.connect_concurrency;
    }
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    let rss_connected = procfs::rss_kib(config.server_pid);

    let mut steps = Vec::new();
    let recipients = (config.members - 1) as f64;
    for (i, spec) in config.steps.iter().enumerate() {
        let counters = &shared.steps[i];
        let per_publisher = spec.msgs_per_s / publishers.len() as f64;
        let interval = Duration::from_secs_f64(1.0 / per_publisher);
        let cpu_before = procfs::cpu_seconds(config.server_pid);
        let sys_before = procfs::system_cpu_seconds(config.server_pid);
        let own_before = procfs::own_cpu_seconds();
        let start = Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_secs_f64(spec.seconds);
        let count = publishers.len();
        let handles: Vec<_> = publishers
            .drain(..)
            .enumerate()
            .map(|(k, p)| {
                // Publishers are spread evenly over one interval so the load is smooth.
                let phase = interval.mul_f64(k as f64 / count as f64);
                let (protocol, size, base) = (config.protocol, config.size, shared.base);
                tokio::spawn(publish_for(p, protocol, size, i as u32, start + phase, interval, end, base))
            })
            .collect();
        let mut sent = 0;
        for h in handles {
            let (p, n) = h.await.expect("publisher task");
            sent += n;
            publishers.push(p);
        }
        let expected = sent * (config.members as u64 - 1);
        let drain_until = Instant::now() + Duration::from_secs_f64(config.drain_seconds);
        while counters.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let cpu = procfs::cpu_seconds(config.server_pid) - cpu_before;
        let sys = procfs::system_cpu_seconds(config.server_pid) - sys_before;
        let own = procfs::own_cpu_seconds() - own_before;
        let delivered = counters.delivered.load(Ordering::Relaxed);
        let reordered = counters.reordered.load(Ordering::Relaxed);
        let h = counters.latency_us.lock().map(|h| h.clone()).unwrap_or_else(|e| e.into_inner().clone());
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        let lost = expected.saturating_sub(delivered);
        let p99 = ms(0.99);
        let within_knee = lost == 0 && delivered > 0 && p99 <= config.knee_p99_ms;
        steps.push(StepResult {
            offered_msgs_per_s: spec.msgs_per_s,
            offered_deliveries_per_s: spec.msgs_per_s * recipients,
            sent,
            expected,
            delivered,
            lost,
            reordered,
            // Over the sending window; a step whose deliveries spill far past it is over the knee anyway.
            deliveries_per_s: delivered as f64 / spec.seconds,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: p99,
            max_ms: h.max() as f64 / 1000.0,
            server_cpu_seconds: cpu,
            cpu_us_per_delivery: if delivered > 0 { cpu * 1e6 / delivered as f64 } else { 0.0 },
            system_cpu_us_per_delivery: if delivered > 0 { sys * 1e6 / delivered as f64 } else { 0.0 },
            generator_cpu_seconds: own,
            within_knee,
        });
        if i < config.warmup_steps {
            steps.pop();
            continue;
        }
        if config.stop_after_knee && !within_knee {
            break;
        }
    }
    let rss_after = procfs::rss_kib(config.server_pid);
    Ok(RunResult {
        rss_after_kib: rss_after,
        used_kib_per_connection: rss_after.saturating_sub(rss_before) as f64 / total.max(1) as f64,
        connections: total,
        connect_seconds,
        rss_before_kib: rss_before,
        rss_connected_kib: rss_connected,
        idle_kib_per_connection: rss_connected.saturating_sub(rss_before) as f64 / total.max(1) as f64,
        steps,
        closed: shared.closed.load(Ordering::Relaxed),
    })
}
