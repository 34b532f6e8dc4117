#!/usr/bin/env bash
# `npm test`: setup, native tests of the pure code, the wasm builds, then the end-to-end tests
# against the real local runtime (wrangler dev) and Chromium.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$ROOT/scripts/setup.sh" --browser
use_toolchain
cd "$ROOT"

step "lint (rustfmt, clippy on every crate and both wasm builds, the fuzz and bench crates, shellcheck, Biome)"
cargo fmt --all --check
cargo fmt --check --manifest-path protocol/fuzz/Cargo.toml
cargo fmt --check --manifest-path bench/Cargo.toml
cargo clippy --quiet -p roomcast-protocol --all-targets -- -D warnings
cargo clippy --quiet -p roomcast-protocol --no-default-features --all-targets -- -D warnings
cargo clippy --quiet -p roomcast-worker --target wasm32-unknown-unknown -- -D warnings
cargo clippy --quiet -p roomcast-sdk --target wasm32-unknown-unknown -- -D warnings
cargo clippy --quiet -p roomcast-client -p roomcast-cli --all-targets -- -D warnings
cargo clippy --quiet --manifest-path bench/Cargo.toml --all-targets -- -D warnings
# The fuzz targets build on stable; running them needs nightly (npm run fuzz).
cargo build --quiet --manifest-path protocol/fuzz/Cargo.toml
shellcheck -x -P scripts scripts/*.sh scripts/hooks/commit-msg
# JavaScript (biome.jsonc): lint errors, lint warnings, formatting and import order fail, in
# every folder.
biome lint --diagnostic-level=error
biome check --error-on-warnings

step "native tests (cargo test; the no_std client build on its own; the native client and CLI)"
cargo test --quiet -p roomcast-protocol
cargo test --quiet -p roomcast-protocol --no-default-features
cargo test --quiet -p roomcast-client -p roomcast-cli
# The binary tests/e2e/cli.test.mjs runs (target/debug/roomcast).
cargo build --quiet -p roomcast-cli

step "wasm builds"
bash scripts/build-worker.sh
bash scripts/build-sdk.sh

step "unit tests of the JS layer and the wire schema (node --test)"
node --test sdk/test/*.test.mjs tests/unit/*.test.mjs

step "end-to-end tests (node --test, wrangler dev, Chromium)"
node_ws_flags
# (the timeout holds each file: offline-90s.test.mjs keeps a page offline for 90 s, after its
# edge and Chromium started on a machine busy with the other file)
node "${NODE_WS_FLAGS[@]}" --test --test-concurrency=2 --test-timeout=150000 --test-reporter=spec "tests/e2e/"*.test.mjs
