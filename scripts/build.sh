#!/usr/bin/env bash
# `npm run build`: the Worker and the browser SDK (after setup). dev.sh and chaos.sh start here.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$ROOT/scripts/setup.sh" "$@"
use_toolchain
cd "$ROOT"
bash scripts/build-worker.sh
bash scripts/build-sdk.sh
