//! The room's own work per ephemeral broadcast, natively: parse and check the frame, encode the
//! `broadcast` frame, coalesce the fanout. It bounds what the Room Durable Object's wasm adds per
//! broadcast (bench/README.md, "The ephemeral path"); the runtime's sockets are not in it.
//!
//! `cargo run --release -p roomcast-protocol --example broadcast_cost`

use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::room::{batch, Identity, Room};
use roomcast_protocol::store::MemoryStore;
use roomcast_protocol::token::Rights;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The limits the benchmark lifts (bench/systems.mjs), so that no frame is refused.
    let vars = [
        ("RATE_MESSAGES_PER_SEC", "1000000"),
        ("RATE_MESSAGES_BURST", "1000000"),
        ("RATE_BYTES_PER_SEC", "1000000000"),
        ("HEARTBEAT_TIMEOUT_MS", "3600000"),
        ("BROADCAST_RATE_PER_SEC", "1000000"),
        ("BROADCAST_MAX_BYTES", "65536"),
    ];
    let config = RoomConfig::from_vars(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string()));
    let mut store = MemoryStore::default();
    let mut room = Room::load(config, &mut store, "epoch", 1_000, []).map_err(|e| e.0)?;
    // A room of 10, as in the benchmark's 100 × 10; five members send.
    let mut members = Vec::new();
    for i in 0..10 {
        let identity =
            Identity { client_id: format!("m{i}"), user: "bench".into(), meta: None, echo: false, rights: Rights::ALL, expires: None };
        members.push(room.handle_open(identity, None, 1_000, &mut store).map_err(|e| format!("{e:?}"))?);
    }
    while room.poll_action().is_some() {}
    let frame = format!(r#"{{"type":"broadcast","data":"{}"}}"#, "x".repeat(62));
    let count = 200_000u64;
    let (mut frames, mut bytes) = (0usize, 0usize);
    let started = Instant::now();
    for k in 0..count {
        let now = 1_000 + k / 100;
        room.handle_text(members[(k % 5) as usize], &frame, now, &mut store);
        let mut actions = Vec::new();
        while let Some(action) = room.poll_action() {
            actions.push(action);
        }
        for delivery in batch::coalesce(actions, |_| true).deliveries {
            frames += 1;
            bytes += delivery.text.len();
        }
        while room.poll_changed().is_some() {}
        let _ = room.poll_timeout();
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{:.3} µs per broadcast ({count} broadcasts, {frames} frames out, {} bytes each)",
        seconds * 1e6 / count as f64,
        bytes / frames.max(1)
    );
    Ok(())
}
