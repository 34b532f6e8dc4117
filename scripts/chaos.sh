#!/usr/bin/env bash
# `npm run chaos`: the fault suite at full size (tests/chaos/run.mjs; figures in docs/RELIABILITY.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$ROOT/scripts/setup.sh"
use_toolchain
cd "$ROOT"
bash scripts/build-worker.sh
bash scripts/build-sdk.sh
exec node $(node_ws_flag) tests/chaos/run.mjs "$@"
