#!/usr/bin/env bash
# `npm run chaos`: the fault suite at full size (tests/chaos/run.mjs; figures in docs/RELIABILITY.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$ROOT/scripts/build.sh"
cd "$ROOT"
node_ws_flags
exec node "${NODE_WS_FLAGS[@]}" tests/chaos/run.mjs "$@"
