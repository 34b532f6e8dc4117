#!/usr/bin/env bash
# `npm test`: setup, native tests of the pure code, the wasm builds, then the end-to-end tests
# against the real local runtime (wrangler dev) and Chromium.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$ROOT/scripts/setup.sh" --browser
use_toolchain
cd "$ROOT"

step "native tests (cargo test)"
cargo test --quiet -p roomcast-protocol
node --test tests/unit/*.test.mjs

step "wasm builds"
bash scripts/build-worker.sh
bash scripts/build-sdk.sh
node --test sdk/test/*.test.mjs

step "end-to-end tests (node --test, wrangler dev, Chromium)"
node_ws_flags
node "${NODE_WS_FLAGS[@]}" --test --test-concurrency=2 --test-timeout=120000 --test-reporter=spec "tests/e2e/"*.test.mjs
