//! wrangler.toml's environments (`[env.staging]`, `[env.production]`, `[env.demo]`) list only the
//! vars they change: wrangler does not inherit `[vars]` into an environment, so everything else
//! takes the Worker's defaults in code. That is only the same Worker as the top level if every
//! value in the top-level `[vars]` equals its default; this test holds them to it, and holds each
//! environment's vars to names the Worker reads.
#![cfg(feature = "server")]

use roomcast_protocol::config::RoomConfig;
use std::collections::BTreeMap;

const WRANGLER_TOML: &str = include_str!("../../wrangler.toml");

/// The edge's own vars and their defaults when unset (`worker/src/edge.rs` reads each with
/// `edge_var`, which falls back to these).
use roomcast_protocol::api::EDGE_VARS;

/// The `KEY = "value"` lines of every table, by table header (`vars`, `env.production.vars`, …).
/// wrangler.toml's vars are all single-line strings; anything else in a vars table fails the test.
fn tables() -> BTreeMap<String, BTreeMap<String, String>> {
    let mut tables: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current = String::new();
    for line in WRANGLER_TOML.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            current = header.trim_matches(|c| c == '[' || c == ']').to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let value = value.trim();
        let entry = tables.entry(current.clone()).or_default();
        if current.ends_with("vars") {
            let text = value.strip_prefix('"').and_then(|v| v.strip_suffix('"'));
            let text = text.unwrap_or_else(|| panic!("[{current}] {key}: vars here are single-line strings, got {value}"));
            entry.insert(key.trim().to_owned(), text.to_owned());
        } else {
            entry.insert(key.trim().to_owned(), value.to_owned());
        }
    }
    tables
}

#[test]
fn top_level_vars_equal_the_defaults_in_code() {
    let tables = tables();
    let vars = &tables["vars"];
    let read = RoomConfig::from_vars(|name| vars.get(name).cloned());
    assert_eq!(read, RoomConfig::default(), "a [vars] value differs from its default in protocol/src/config/");
    for (name, default) in EDGE_VARS {
        assert_eq!(vars.get(name).map(String::as_str), Some(default), "{name}");
    }
}

/// Every webhook var the Worker reads is listed in `[vars]` with its default (the secret is set
/// with `wrangler secret put`), so wrangler.toml is where an operator finds them all.
#[test]
fn every_webhook_var_is_listed() {
    let tables = tables();
    for name in roomcast_protocol::config::WEBHOOK_VARS {
        assert_eq!(tables["vars"].contains_key(name), name != "WEBHOOK_SECRET", "{name}");
    }
}

#[test]
fn environments_set_only_vars_the_worker_reads() {
    let tables = tables();
    let known: Vec<&str> = tables["vars"].keys().map(String::as_str).chain(["ROOMCAST_DEV_TOKENS"]).collect();
    let mut environments = Vec::new();
    for (header, vars) in &tables {
        let Some(env) = header.strip_prefix("env.").and_then(|h| h.strip_suffix(".vars")) else { continue };
        environments.push(env);
        for name in vars.keys() {
            assert!(known.contains(&name.as_str()), "[{header}] {name} is not a var the Worker reads");
        }
        // the development-token endpoint exists only on the demo's own Worker
        assert_eq!(vars.contains_key("ROOMCAST_DEV_TOKENS"), env == "demo", "[{header}] ROOMCAST_DEV_TOKENS");
        // and only there on any host (its pages are on its public one, not on loopback)
        assert_eq!(vars.get("DEV_TOKEN_HOSTS").map(String::as_str), (env == "demo").then_some("*"), "[{header}] DEV_TOKEN_HOSTS");
    }
    assert_eq!(environments, ["demo", "production", "staging"]);
    assert!(!tables["vars"].contains_key("ROOMCAST_DEV_TOKENS"), "never in the top level that `wrangler deploy` ships");
}

/// The room-creation limit's binding, in every environment, holds the bound the docs and the
/// refusal's `Retry-After` state (`api::creation::PER_WINDOW` per `WINDOW_SECS`).
#[test]
fn every_environment_bounds_room_creation_as_documented() {
    use roomcast_protocol::api::creation::{LIMITER_DEFAULT, PER_WINDOW, WINDOW_SECS};
    let expected = format!("simple = {{ limit = {PER_WINDOW}, period = {WINDOW_SECS} }}");
    let mut found = Vec::new();
    let lines: Vec<&str> = WRANGLER_TOML.lines().map(str::trim).collect();
    for (i, line) in lines.iter().enumerate() {
        if *line == format!("name = \"{LIMITER_DEFAULT}\"") {
            let header = lines[..i].iter().rev().find(|l| l.starts_with("[[")).copied().unwrap_or_default();
            let simple = lines[i..].iter().find(|l| l.starts_with("simple")).copied().unwrap_or_default();
            assert_eq!(simple, expected, "{header}");
            found.push(header);
        }
    }
    assert_eq!(found, ["[[ratelimits]]", "[[env.staging.ratelimits]]", "[[env.production.ratelimits]]", "[[env.demo.ratelimits]]"]);
}
