#!/usr/bin/env bash
# Builds the Worker (worker/ -> worker/build/) with worker-build, using the locally installed
# wasm-bindgen, wasm-opt and esbuild so nothing is downloaded. Skips the work when the sources
# have not changed since the last build, because `wrangler dev` runs this on every start.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
use_toolchain
cd "$ROOT"

out=worker/build
stamp="$out/.sources"
sources_hash() {
  { cat Cargo.toml Cargo.lock; find protocol/src worker/src protocol/Cargo.toml worker/Cargo.toml -type f | sort | xargs cat; } \
    | sha256sum | cut -c1-64
}
hash="$(sources_hash)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && [ -f "$out/index.js" ]; then
  echo "worker: up to date"
  exit 0
fi
(cd worker && worker-build --release)
echo "$hash" > "$stamp"
wasm="$out/index_bg.wasm"
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "worker: $(basename "$wasm") ${raw} bytes, ${gz} bytes gzipped"
