#!/usr/bin/env bash
# `npm run bench` (quick) / `npm run bench -- --full`: builds what the comparison runs (the Worker,
# the SDK, the load generator), installs the peers (bench/package.json), then runs bench/run.mjs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$ROOT/scripts/build.sh"
use_toolchain
cd "$ROOT"

step "benchmark peers (bench/package.json)"
if [ ! -d bench/node_modules ] || [ bench/package-lock.json -nt bench/node_modules/.package-lock.json ]; then
  (cd bench && npm install --no-audit --no-fund --loglevel=error)
else
  note "installed"
fi

step "load generator (bench/, release)"
# Its own workspace and target dir; native, whatever toolchain PATH has.
cargo build --release --quiet --manifest-path bench/Cargo.toml

step "run"
# 5,000 members each side of loopback need more than the usual 1,024 descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 20000 2>/dev/null || true
exec node bench/run.mjs "$@"
