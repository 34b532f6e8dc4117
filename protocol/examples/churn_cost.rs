//! The room's own work to open and close connections in a full room, natively: `n` connections
//! opened one by one, then closed in a scrambled order. It bounds what the room's maps cost per
//! join and leave (bench/README.md, "Worker size": its maps are sorted vectors, whose inserts
//! and removes move the entries after them); the runtime's sockets and the fanout are not in it.
//!
//! `cargo run --release -p roomcast-protocol --example churn_cost [n]`

use roomcast_protocol::config::RoomConfig;
use roomcast_protocol::room::{Identity, Room};
use roomcast_protocol::store::MemoryStore;
use roomcast_protocol::token::Rights;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args().nth(1).map_or(Ok(10_000), |a| a.parse())?;
    let vars = [("MAX_CONNECTIONS", "32768"), ("MAX_CONNECTIONS_PER_USER", "32768"), ("HEARTBEAT_TIMEOUT_MS", "3600000")];
    let config = RoomConfig::from_vars(|name| vars.iter().find(|(v, _)| *v == name).map(|(_, v)| v.to_string()));
    let mut store = MemoryStore::default();
    let mut room = Room::load(config, &mut store, "epoch", 1_000, []).map_err(|e| e.0)?;
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..n {
        // Presence off, so that no join or leave is fanned out: the maps' work alone.
        let rights = Rights { presence: false, ..Rights::ALL };
        let identity =
            Identity { client_id: format!("c{i}"), user: format!("u{}", i % 997), meta: None, echo: false, rights, expires: None };
        ids.push(room.handle_open(identity, None, 1_000, &mut store).map_err(|e| format!("{e:?}"))?);
        while room.poll_action().is_some() {}
    }
    let opened = started.elapsed().as_secs_f64();
    // A fixed scramble (a multiplicative step through the ids), so every run closes in one order.
    let started = Instant::now();
    let len = ids.len() as u64;
    for k in 0..len {
        room.handle_close(ids[((k * 7_919) % len) as usize], 2_000, &mut store);
        while room.poll_action().is_some() {}
        while room.poll_changed().is_some() {}
    }
    let closed = started.elapsed().as_secs_f64();
    println!("{n} connections: {:.2} µs per open, {:.2} µs per close", opened * 1e6 / n as f64, closed * 1e6 / n as f64);
    Ok(())
}
