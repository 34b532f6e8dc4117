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
  { echo "names:${ROOMCAST_KEEP_WASM_NAMES:-}"; cat Cargo.toml Cargo.lock scripts/build-worker.sh; find protocol/src worker/src protocol/Cargo.toml worker/Cargo.toml -type f | sort | xargs cat; } \
    | sha256sum | cut -c1-64
}
hash="$(sources_hash)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ] && [ -f "$out/index.js" ]; then
  echo "worker: up to date"
  exit 0
fi
(cd worker && worker-build --release)
wasm="$out/index_bg.wasm"
# worker-build keeps the wasm's function names (wasm-opt --debuginfo): 117 KB of the module, 31 KB
# gzipped, only for stack traces, and a panic-free build has none to show. They are dropped here
# (ROOMCAST_KEEP_WASM_NAMES=1 keeps them, e.g. for a profile). The features are worker-build's.
# One more pass, -Os, after worker-build's -O: 1.9 KB gzipped less, CPU per delivery unchanged
# (bench/README.md, "Worker size"). -Oz was larger gzipped.
strip=(--strip-debug --strip-producers)
if [ "${ROOMCAST_KEEP_WASM_NAMES:-}" = 1 ]; then strip=(--debuginfo); fi
wasm-opt "$wasm" -o "$wasm" -Os "${strip[@]}" \
  --enable-mutable-globals --enable-sign-ext --enable-nontrapping-float-to-int --enable-bulk-memory \
  --enable-multivalue --enable-reference-types --enable-exception-handling
echo "$hash" > "$stamp"
raw=$(stat -c %s "$wasm")
gz=$(gzip -9 -c "$wasm" | wc -c)
echo "worker: $(basename "$wasm") ${raw} bytes, ${gz} bytes gzipped"
