#!/usr/bin/env bash
# Builds the browser SDK into sdk/dist: Rust -> wasm (no_std, opt-level z, LTO, panic=abort),
# wasm-opt -Oz, then one ESM file with the wasm inlined (gzipped, through esbuild's binary loader;
# DecompressionStream unpacks it) and its
# TypeScript types. Prints the sizes: the budget is 13 KiB gzipped for the wasm and its JS host
# layer together (sdk/README.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
use_toolchain
cd "$ROOT"

cargo build --quiet -p roomcast-sdk --target wasm32-unknown-unknown --release
rm -rf sdk/pkg && mkdir -p sdk/pkg sdk/dist
wasm-opt -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-multivalue \
  "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/roomcast_sdk.wasm" -o sdk/pkg/roomcast_sdk.wasm
gzip -9 -n -c sdk/pkg/roomcast_sdk.wasm > sdk/pkg/roomcast_sdk.wasm.gz
esbuild sdk/js/index.js --bundle --format=esm --platform=browser --target=es2022 --minify \
  --loader:.gz=binary --log-level=warning --outfile=sdk/dist/index.js
cp sdk/types/index.d.ts sdk/dist/index.d.ts
# roomcast/react: kept as its own module that imports "roomcast" and "react" (both stay external).
esbuild sdk/js/react.js --format=esm --target=es2022 --minify --log-level=warning --outfile=sdk/dist/react.js
cp sdk/types/react.d.ts sdk/dist/react.d.ts
# The demo pages load the package file as a plain `<script type="module">` app would.
mkdir -p demo/vendor && cp sdk/dist/index.js demo/vendor/roomcast.js

node tools/sdk-size.mjs
