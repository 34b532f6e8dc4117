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
    let (socket, _) =
        tokio_tungstenite::connect_async_with_config(url, None, true).await.map_err(|source| LoadError::Connect { member, source })?;
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

/// What every publisher of one step shares: what it sends, at what pace, until when.
#[derive(Clone, Copy)]
struct Pace {
    protocol: Protocol,
    size: usize,
    step: u32,
    interval: Duration,
    end: Instant,
    /// The zero of the stamps' scheduled times.
    base: Instant,
}

/// Publishes one message every `pace.interval` from `start` until `pace.end`.
async fn publish_for(mut p: Publisher, pace: Pace, start: Instant) -> (Publisher, u64) {
    let Pace { protocol, size, step, interval, end, base } = pace;
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

/// One system's members, connected and ready for steps: its counters, its publishers and what
/// connecting them cost.
struct Target {
    config: Arc<RunConfig>,
    shared: Arc<Shared>,
    publishers: Vec<Publisher>,
    connections: usize,
    connect_seconds: f64,
    rss_before_kib: u64,
    rss_connected_kib: u64,
}

/// Opens every member of `config` (counters for `step_count` steps) and starts their readers.
async fn connect(config: RunConfig, step_count: usize) -> Result<Target, LoadError> {
    let shared = Arc::new(Shared {
        base: Instant::now(),
        steps: (0..step_count)
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
    Ok(Target {
        connect_seconds: connect_start.elapsed().as_secs_f64(),
        rss_connected_kib: procfs::rss_kib(config.server_pid),
        rss_before_kib: rss_before,
        connections: total,
        config,
        shared,
        publishers,
    })
}

/// What one step measured, before it is reported: its counts, CPU and latency histogram.
struct Measured {
    seconds: f64,
    msgs_per_s: f64,
    sent: u64,
    delivered: u64,
    reordered: u64,
    cpu: f64,
    sys: f64,
    own: f64,
    latency: Histogram<u64>,
}

impl Measured {
    /// Several measurements of one offered load as one step (the interleaved slots of a level).
    fn merge(parts: Vec<Measured>) -> Option<Measured> {
        let mut parts = parts.into_iter();
        let mut all = parts.next()?;
        for p in parts {
            all.seconds += p.seconds;
            all.sent += p.sent;
            all.delivered += p.delivered;
            all.reordered += p.reordered;
            all.cpu += p.cpu;
            all.sys += p.sys;
            all.own += p.own;
            let _ = all.latency.add(&p.latency);
        }
        Some(all)
    }

    fn report(&self, recipients: u64, knee_p99_ms: f64) -> StepResult {
        let expected = self.sent * recipients;
        let ms = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        let lost = expected.saturating_sub(self.delivered);
        let p99 = ms(0.99);
        let per_delivery = |s: f64| if self.delivered > 0 { s * 1e6 / self.delivered as f64 } else { 0.0 };
        StepResult {
            offered_msgs_per_s: self.msgs_per_s,
            offered_deliveries_per_s: self.msgs_per_s * recipients as f64,
            sent: self.sent,
            expected,
            delivered: self.delivered,
            lost,
            reordered: self.reordered,
            // Over the sending window; a step whose deliveries spill far past it is over the knee anyway.
            deliveries_per_s: self.delivered as f64 / self.seconds,
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: p99,
            max_ms: self.latency.max() as f64 / 1000.0,
            server_cpu_seconds: self.cpu,
            cpu_us_per_delivery: per_delivery(self.cpu),
            system_cpu_us_per_delivery: per_delivery(self.sys),
            generator_cpu_seconds: self.own,
            within_knee: lost == 0 && self.delivered > 0 && p99 <= knee_p99_ms,
        }
    }
}

impl Target {
    fn recipients(&self) -> u64 {
        self.config.members as u64 - 1
    }

    /// Offers `spec`'s load for its seconds (counted as step `index`), waits up to
    /// `drain_seconds` for what is still in flight, and measures the server meanwhile.
    async fn step(&mut self, spec: &StepSpec, index: usize) -> Measured {
        let config = self.config.clone();
        let counters = &self.shared.steps[index];
        let per_publisher = spec.msgs_per_s / self.publishers.len() as f64;
        let interval = Duration::from_secs_f64(1.0 / per_publisher);
        let cpu_before = procfs::cpu_seconds(config.server_pid);
        let sys_before = procfs::system_cpu_seconds(config.server_pid);
        let own_before = procfs::own_cpu_seconds();
        let start = Instant::now() + Duration::from_millis(50);
        let end = start + Duration::from_secs_f64(spec.seconds);
        let count = self.publishers.len();
        let pace = Pace { protocol: config.protocol, size: config.size, step: index as u32, interval, end, base: self.shared.base };
        let handles: Vec<_> = self
            .publishers
            .drain(..)
            .enumerate()
            .map(|(k, p)| {
                // Publishers are spread evenly over one interval so the load is smooth.
                let phase = interval.mul_f64(k as f64 / count as f64);
                tokio::spawn(publish_for(p, pace, start + phase))
            })
            .collect();
        let mut sent = 0;
        for h in handles {
            let (p, n) = h.await.expect("publisher task");
            sent += n;
            self.publishers.push(p);
        }
        let expected = sent * self.recipients();
        let drain_until = Instant::now() + Duration::from_secs_f64(config.drain_seconds);
        while counters.delivered.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let latency = counters.latency_us.lock().map(|h| h.clone()).unwrap_or_else(|e| e.into_inner().clone());
        Measured {
            seconds: spec.seconds,
            msgs_per_s: spec.msgs_per_s,
            sent,
            delivered: counters.delivered.load(Ordering::Relaxed),
            reordered: counters.reordered.load(Ordering::Relaxed),
            cpu: procfs::cpu_seconds(config.server_pid) - cpu_before,
            sys: procfs::system_cpu_seconds(config.server_pid) - sys_before,
            own: procfs::own_cpu_seconds() - own_before,
            latency,
        }
    }

    fn finish(self, steps: Vec<StepResult>) -> RunResult {
        let rss_after = procfs::rss_kib(self.config.server_pid);
        let total = self.connections.max(1) as f64;
        RunResult {
            rss_after_kib: rss_after,
            used_kib_per_connection: rss_after.saturating_sub(self.rss_before_kib) as f64 / total,
            connections: self.connections,
            connect_seconds: self.connect_seconds,
            rss_before_kib: self.rss_before_kib,
            rss_connected_kib: self.rss_connected_kib,
            idle_kib_per_connection: self.rss_connected_kib.saturating_sub(self.rss_before_kib) as f64 / total,
            steps,
            closed: self.shared.closed.load(Ordering::Relaxed),
        }
    }
}

pub async fn run(config: RunConfig) -> Result<RunResult, LoadError> {
    let specs = config.steps.clone();
    let (warmup_steps, stop_after_knee, knee) = (config.warmup_steps, config.stop_after_knee, config.knee_p99_ms);
    let mut target = connect(config, specs.len()).await?;
    let mut steps = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let step = target.step(spec, i).await.report(target.recipients(), knee);
        if i < warmup_steps {
            continue;
        }
        let within_knee = step.within_knee;
        steps.push(step);
        if stop_after_knee && !within_knee {
            break;
        }
    }
    Ok(target.finish(steps))
}

/// Several systems measured in turns: every system's members stay connected, and each offered
/// load is given to one system at a time, in short slots that take turns (ABBA, so none is
/// always first), `slots` times each. On a shared machine the cost of the same work drifts by
/// 10–25 % over tens of seconds; systems measured minutes apart see different drifts, systems
/// measured in alternating slots see the same one, so their ratio is what it is.
#[derive(Debug, Deserialize)]
pub struct InterleavedConfig {
    pub targets: Vec<TargetSpec>,
    pub rooms: usize,
    pub members: usize,
    pub publishers_per_room: usize,
    pub size: usize,
    /// Offered loads in messages per second over all rooms, climbing.
    pub levels: Vec<f64>,
    pub slot_seconds: f64,
    /// Slots per system per level; their measurements add up to the level's step.
    pub slots: usize,
    /// One slot per system at the first level, before the measured ones, not reported.
    pub warmup_seconds: f64,
    pub knee_p99_ms: f64,
    #[serde(default = "default_drain")]
    pub drain_seconds: f64,
    #[serde(default = "default_concurrency")]
    pub connect_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TargetSpec {
    pub name: String,
    pub protocol: Protocol,
    pub url: String,
    pub server_pid: u32,
}

#[derive(Debug, Serialize)]
pub struct NamedResult {
    pub name: String,
    pub result: RunResult,
}

/// Waits until the server under `pid` is idle (under 5 % of a core over 200 ms), at most
/// `limit`: a system pushed past its knee keeps working off its backlog, which must not be
/// billed to, or slow down, the next system's slot.
async fn quiet(pid: u32, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let before = procfs::cpu_seconds(pid);
        tokio::time::sleep(Duration::from_millis(200)).await;
        if procfs::cpu_seconds(pid) - before < 0.01 {
            return;
        }
    }
}

pub async fn run_interleaved(config: InterleavedConfig) -> Result<Vec<NamedResult>, LoadError> {
    let slot = |msgs_per_s: f64, seconds: f64| StepSpec { msgs_per_s, seconds };
    // Step counters: 0 is the warm-up, then one per slot of every level.
    let step_count = 1 + config.levels.len() * config.slots;
    let mut targets = Vec::new();
    for spec in &config.targets {
        let run = RunConfig {
            protocol: spec.protocol,
            url: spec.url.clone(),
            rooms: config.rooms,
            members: config.members,
            publishers_per_room: config.publishers_per_room,
            size: config.size,
            steps: Vec::new(),
            server_pid: spec.server_pid,
            knee_p99_ms: config.knee_p99_ms,
            stop_after_knee: true,
            warmup_steps: 0,
            connect_concurrency: config.connect_concurrency,
            drain_seconds: config.drain_seconds,
        };
        targets.push(connect(run, step_count).await?);
    }
    let first = config.levels.first().copied().unwrap_or(0.0);
    for target in &mut targets {
        target.step(&slot(first, config.warmup_seconds), 0).await;
        quiet(target.config.server_pid, Duration::from_secs(10)).await;
    }
    let n = targets.len();
    let mut steps: Vec<Vec<StepResult>> = (0..n).map(|_| Vec::new()).collect();
    let mut active = vec![true; n];
    for (level, &msgs_per_s) in config.levels.iter().enumerate() {
        let mut parts: Vec<Vec<Measured>> = (0..n).map(|_| Vec::new()).collect();
        let mut failed = vec![false; n];
        for rep in 0..config.slots {
            // Rotated by level, reversed every other pass: ABBA.
            let mut order: Vec<usize> = (0..n).map(|k| (k + level) % n).collect();
            if rep % 2 == 1 {
                order.reverse();
            }
            for t in order {
                if !active[t] || failed[t] {
                    continue;
                }
                let measured = targets[t].step(&slot(msgs_per_s, config.slot_seconds), 1 + level * config.slots + rep).await;
                if !measured.report(targets[t].recipients(), config.knee_p99_ms).within_knee {
                    failed[t] = true;
                    quiet(targets[t].config.server_pid, Duration::from_secs(20)).await;
                }
                parts[t].push(measured);
            }
        }
        for (t, measured) in parts.into_iter().enumerate() {
            if let Some(all) = Measured::merge(measured) {
                let mut step = all.report(targets[t].recipients(), config.knee_p99_ms);
                // A level is within the knee only if every one of its slots was.
                step.within_knee &= !failed[t];
                steps[t].push(step);
            }
            if failed[t] {
                active[t] = false;
            }
        }
        if !active.iter().any(|a| *a) {
            break;
        }
    }
    Ok(targets
        .into_iter()
        .zip(steps)
        .zip(&config.targets)
        .map(|((target, steps), spec)| NamedResult { name: spec.name.clone(), result: target.finish(steps) })
        .collect())
}
