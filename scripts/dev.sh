#!/usr/bin/env bash
# `npm run dev`: setup, build, then the local edge on http://127.0.0.1:8787 (or the port in $PORT)
# with room state kept
# on local disk in .wrangler/state, serving the demo pages from demo/ (wrangler.toml has no
# [assets], so `wrangler deploy` ships the Worker alone). Extra arguments go to `wrangler dev`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$ROOT/scripts/build.sh"
use_toolchain
cd "$ROOT"
port="${PORT:-8787}"
step "wrangler dev on http://127.0.0.1:${port}"
exec wrangler dev --ip 127.0.0.1 --port "$port" --persist-to .wrangler/state --assets demo "$@"
