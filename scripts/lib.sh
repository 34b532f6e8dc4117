# shellcheck shell=bash
# Shared by every script: pinned tool versions, where the tools live, and the PATH that builds use.
# Sourced, never executed.

# These must equal the versions pinned in Cargo.toml (wasm-bindgen with `=`): the CLI and the crate
# have to agree byte for byte on the generated glue.
# shellcheck disable=SC2034 # read by setup.sh, which sources this file
WASM_BINDGEN_VERSION="0.2.130"
# shellcheck disable=SC2034 # read by setup.sh
WORKER_BUILD_VERSION="0.8.7"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Cargo tools go to a per-user cache rather than the clone, so a fresh clone (CI) reuses them.
TOOLS_ROOT="${ROOMCAST_TOOLS:-$HOME/.cache/roomcast/tools}"
export WRANGLER_SEND_METRICS=false
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\nroomcast setup: %s\n' "$*" >&2; exit 1; }

# Does this rustc have a wasm32 standard library? (the sysroot holds libstd-*.rlib for the target)
rustc_has_wasm32() {
  local rustc="$1" dir
  [ -x "$rustc" ] || command -v "$rustc" >/dev/null 2>&1 || return 1
  dir="$("$rustc" --print target-libdir --target wasm32-unknown-unknown 2>/dev/null)" || return 1
  compgen -G "$dir/libstd-*.rlib" >/dev/null
}

# Put the compiler that can target wasm32 first in PATH, with the project's tools and node's bin.
# Debian's /usr/bin/rustc wins when it has the wasm32 std (the rustup shims would otherwise win and
# have none); rustup's toolchain is used where `rustup target add` worked.
use_toolchain() {
  if rustc_has_wasm32 /usr/bin/rustc; then
    export PATH="/usr/bin:$PATH"
  fi
  export PATH="$TOOLS_ROOT/bin:$ROOT/node_modules/.bin:$PATH"
  export WASM_BINDGEN_BIN="$TOOLS_ROOT/bin/wasm-bindgen"
  export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
  export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
}

# Node 20 has a global WebSocket (which the SDK uses in the chaos tests) only behind a flag;
# newer Node has it built in and may not know the flag. Fills the array NODE_WS_FLAGS.
node_ws_flags() {
  NODE_WS_FLAGS=()
  if ! node -e 'process.exit(typeof WebSocket === "undefined" ? 1 : 0)'; then NODE_WS_FLAGS=(--experimental-websocket); fi
}
