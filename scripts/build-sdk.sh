#!/usr/bin/env bash
# Builds the browser SDK into sdk/dist: Rust -> wasm (opt-level z, LTO, panic=abort), wasm-bindgen
# (--target web), wasm-opt -Oz, then one ESM file with the wasm inlined (esbuild's binary loader)
# and its TypeScript types. Prints the sizes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
use_toolchain
cd "$ROOT"

cargo build --quiet -p roomcast-sdk --target wasm32-unknown-unknown --release
rm -rf sdk/pkg && mkdir -p sdk/pkg sdk/dist
wasm-bindgen --target web --no-typescript --out-dir sdk/pkg --out-name roomcast_wasm \
  target/wasm32-unknown-unknown/release/roomcast_sdk.wasm
wasm-opt -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  sdk/pkg/roomcast_wasm_bg.wasm -o sdk/pkg/roomcast_wasm_bg.wasm
esbuild sdk/js/index.js --bundle --format=esm --platform=browser --target=es2022 --minify \
  --loader:.wasm=binary --log-level=warning --outfile=sdk/dist/index.js
cp sdk/types/index.d.ts sdk/dist/index.d.ts
# roomcast/react: kept as its own module that imports "roomcast" and "react" (both stay external).
esbuild sdk/js/react.js --format=esm --target=es2022 --minify --log-level=warning --outfile=sdk/dist/react.js
cp sdk/types/react.d.ts sdk/dist/react.d.ts
# The demo pages load the package file as a plain `<script type="module">` app would.
mkdir -p demo/vendor && cp sdk/dist/index.js demo/vendor/roomcast.js

wasm_raw=$(stat -c %s sdk/pkg/roomcast_wasm_bg.wasm)
wasm_gz=$(gzip -9 -c sdk/pkg/roomcast_wasm_bg.wasm | wc -c)
glue_gz=$(esbuild sdk/pkg/roomcast_wasm.js --minify --log-level=warning | gzip -9 | wc -c)
bundle_raw=$(stat -c %s sdk/dist/index.js)
bundle_gz=$(gzip -9 -c sdk/dist/index.js | wc -c)
echo "sdk: wasm ${wasm_raw} bytes (${wasm_gz} gzipped); glue ${glue_gz} gzipped;" \
  "dist/index.js (wasm inlined + glue + API) ${bundle_raw} bytes, ${bundle_gz} bytes gzipped"
