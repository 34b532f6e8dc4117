#!/usr/bin/env bash
# Builds the browser SDK into sdk/dist: Rust -> wasm (no_std, opt-level z, LTO, panic=abort),
# wasm-opt -Oz (with tools/wasm-trim.mjs), then one ESM file with the wasm inlined (deflated by
# Zopfli and written as text in the JavaScript's own characters: sdk/examples/pack.rs;
# DecompressionStream unpacks it)
# and its TypeScript types. Prints the sizes, and fails when the package file (what a page loads)
# is over its gzipped budget (tools/sdk-size.mjs; sdk/README.md, Size).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
use_toolchain
cd "$ROOT"

# The allocator the wasm links and the packing of the wasm are tested natively first
# (sdk/src/heap.rs, sdk/examples/pack.rs).
if ! out="$(cargo test --quiet -p roomcast-sdk --lib --example pack 2>&1)"; then printf '%s\n' "$out" >&2; exit 1; fi
# LLVM inlines what is marked #[inline] (most of core's and alloc's small functions) up to a cost
# of 325 even at opt-level z; without the hint, and at threshold 1 (only what costs nothing: a call
# that just calls), the wasm is 6% smaller.
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C llvm-args=-inline-threshold=1 -C llvm-args=-inlinehint-threshold=0" \
  cargo build --quiet -p roomcast-sdk --target wasm32-unknown-unknown --release
rm -rf sdk/pkg && mkdir -p sdk/pkg sdk/dist
# --low-memory-unused: the low 1 KiB of memory is the far end of rustc's 1 MiB stack (the data
# starts above it), which the SDK never comes near; it lets wasm-opt fold constant offsets.
# --always-inline-max-function-size 6 (default 2): inlining the smallest functions everywhere makes
# the wasm 0.7% larger raw but 0.8% smaller gzipped (measured 2 to 16; 6 was the smallest).
# The linker's `__heap_base` and `__data_end` exports go first: the host reads neither.
optimize() {
  wasm-opt --remove-exports --pass-arg='remove-exports@__*' -Oz --strip-debug --strip-producers --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-multivalue --strip-target-features --converge --low-memory-unused \
    --always-inline-max-function-size 6 "$@"
}
# tools/wasm-trim.mjs: std's out-of-memory and capacity-overflow message builders become bare traps
# (the panic handler never reads a message), then the data only they reached is dropped.
wasm-dis "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/roomcast_sdk.wasm" -o sdk/pkg/linked.wat
node tools/wasm-trim.mjs stub sdk/pkg/linked.wat
optimize sdk/pkg/linked.wat -o sdk/pkg/optimized.wasm
wasm-dis sdk/pkg/optimized.wasm -o sdk/pkg/optimized.wat
node tools/wasm-trim.mjs tail sdk/pkg/optimized.wat
optimize sdk/pkg/optimized.wat -o sdk/pkg/roomcast_sdk.wasm
rm sdk/pkg/linked.wat sdk/pkg/optimized.wasm sdk/pkg/optimized.wat
# The wasm goes in as text (sdk/examples/pack.rs: Zopfli's deflate, written in characters as frequent
# as the JavaScript's own), so the JavaScript is bundled once without it to count them.
# Properties named `_…` are the package's own (between js/host.js and js/index.js): esbuild renames
# them; `_resources` (the tests read it) and `__proto__` keep their names.
bundle() {
  esbuild sdk/js/index.js --bundle --format=esm --platform=browser --target=es2022 --minify \
    --mangle-props='^_' --reserve-props='^(_resources|__proto__)$' \
    --loader:.txt=text --log-level=warning --outfile=sdk/dist/index.js
}
: > sdk/pkg/roomcast_sdk.wasm.txt
bundle
cargo run --quiet --release -p roomcast-sdk --example pack -- sdk/pkg/roomcast_sdk.wasm sdk/dist/index.js sdk/pkg/roomcast_sdk.wasm.txt
bundle
cp sdk/types/index.d.ts sdk/dist/index.d.ts
# roomcast/react: kept as its own module that imports "roomcast" and "react" (both stay external).
esbuild sdk/js/react.js --format=esm --target=es2022 --minify --log-level=warning --outfile=sdk/dist/react.js
cp sdk/types/react.d.ts sdk/dist/react.d.ts
# roomcast/messages: the message list without React (useMessages is it with a hook around it).
esbuild sdk/js/messages.js --format=esm --target=es2022 --minify --log-level=warning --outfile=sdk/dist/messages.js
cp sdk/types/messages.d.ts sdk/dist/messages.d.ts
# The demo pages load the package file as a plain `<script type="module">` app would.
mkdir -p demo/vendor && cp sdk/dist/index.js demo/vendor/roomcast.js
# The terminal page's emulator, xterm.js and its fit add-on, from the npm packages (XTERM_MODULES:
# another node_modules that holds them).
xterm="${XTERM_MODULES:-node_modules}/@xterm"
cp "$xterm/xterm/lib/xterm.mjs" "$xterm/xterm/css/xterm.css" "$xterm/addon-fit/lib/addon-fit.mjs" demo/vendor/ \
  || die "@xterm/xterm or @xterm/addon-fit is missing: run npm run setup"

node tools/sdk-size.mjs
