#!/usr/bin/env bash
# Installs, idempotently, everything `npm run dev` and `npm test` need on a fresh machine:
# the wasm32 standard library, wasm-bindgen-cli and worker-build at pinned versions, the npm
# packages from package-lock.json (Biome among them), Chromium and shellcheck (with --browser: what npm test
# needs), the git hooks in scripts/hooks, and a local .dev.vars.
# With everything present it only checks, in a few seconds.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

want_browser=0
for arg in "$@"; do
  case "$arg" in
    --browser) want_browser=1 ;;
    *) die "unknown option $arg (known: --browser)" ;;
  esac
done

started=$(date +%s)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "need the Debian packages '$*' but apt-get is missing; install them with your package manager"
  if [ "$apt_updated" -eq 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# --- 1. wasm32 standard library --------------------------------------------------------------
step "wasm32 standard library"
if rustc_has_wasm32 /usr/bin/rustc; then
  note "present for $(/usr/bin/rustc --version) (Debian toolchain)"
elif [ "${ROOMCAST_WASM_STD:-}" != "debian" ] && rustc_has_wasm32 rustc; then
  note "present for $(rustc --version) (rustup target)"
else
  # rustup's download of the target works on an ordinary machine; here it hangs, so it gets a
  # short deadline before the Debian route (TOOLCHAIN.md) takes over.
  # ROOMCAST_WASM_STD=debian skips rustup (to exercise the fallback on a machine where rustup works).
  if [ "${ROOMCAST_WASM_STD:-}" != "debian" ] && command -v rustup >/dev/null 2>&1 \
      && timeout 45 rustup target add wasm32-unknown-unknown >/dev/null 2>&1 && rustc_has_wasm32 rustc; then
    note "installed with rustup"
  else
    note "no rustup target (unavailable or skipped); building the wasm32 std from Debian's Rust sources"
    apt_install rustc-web cargo-web rust-web-src lld-22
    [ -e /usr/bin/rust-lld ] || die "/usr/bin/rust-lld is missing after installing lld-22"
    work="$(mktemp -d)"
    (
      # Debian's cargo must drive Debian's rustc, not the rustup shim earlier in PATH.
      export PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc
      cd "$work"
      /usr/bin/cargo new --lib --quiet wasmstd
      cd wasmstd
      # -Cembed-bitcode=yes: crates built with lto = true need bitcode in the std rlibs.
      RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Cembed-bitcode=yes" /usr/bin/cargo build --quiet --release \
        --target wasm32-unknown-unknown -Z build-std=std,panic_abort
      dest="$(/usr/bin/rustc --print sysroot)/lib/rustlib/wasm32-unknown-unknown/lib"
      $SUDO mkdir -p "$dest"
      find target/wasm32-unknown-unknown/release/deps -name '*.rlib' ! -name 'libwasmstd-*' \
        -exec $SUDO cp {} "$dest/" \;
    ) || die "building the wasm32 standard library failed (see above); on a machine with internet access, 'rustup target add wasm32-unknown-unknown' does the same job"
    rm -rf "$work"
    rustc_has_wasm32 /usr/bin/rustc || die "the wasm32 std build finished but rustc still cannot find it"
    # Artifacts built against an earlier sysroot fail with E0463; start the wasm builds clean.
    rm -rf "$ROOT/target/wasm32-unknown-unknown"
    note "built and installed into $(/usr/bin/rustc --print sysroot)"
  fi
fi
use_toolchain

# --- 2. cargo tools ----------------------------------------------------------------------------
install_cargo_tool() {
  local crate="$1" bin="$2" version="$3"
  if [ -x "$TOOLS_ROOT/bin/$bin" ] && "$TOOLS_ROOT/bin/$bin" --version 2>/dev/null | grep -q "$version"; then
    note "$crate $version present"
    return
  fi
  note "installing $crate $version (a few minutes, once per machine)"
  # No --locked for wasm-bindgen-cli: its lock file pins a webpki-roots release the registry
  # no longer serves.
  cargo install --quiet --root "$TOOLS_ROOT" --version "=$version" "$crate" \
    || die "could not install $crate $version with cargo; check access to crates.io"
}
step "cargo tools"
install_cargo_tool wasm-bindgen-cli wasm-bindgen "$WASM_BINDGEN_VERSION"
install_cargo_tool worker-build worker-build "$WORKER_BUILD_VERSION"

# --- 3. npm packages -----------------------------------------------------------------------------
step "npm packages"
lock_hash="$(sha256sum package-lock.json | cut -c1-64)"
stamp="node_modules/.roomcast-lock"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_hash" ]; then
  note "node_modules matches package-lock.json"
else
  # `npm install` with the committed lock, not `npm ci`: the registry lacks some of workerd's
  # optional builds for other platforms, which `npm ci` reports as a lock mismatch and refuses.
  # The lock pins every version either way.
  npm install --no-audit --no-fund --loglevel=error || die "npm install failed; check access to the npm registry"
  echo "$lock_hash" > "$stamp"
fi
for tool in "$WASM_OPT_BIN" "$ESBUILD_BIN" node_modules/.bin/wrangler node_modules/.bin/biome; do
  [ -x "$tool" ] || die "$tool is missing after npm install"
done

# --- 4. Chromium, for the browser tests ----------------------------------------------------------
if [ "$want_browser" -eq 1 ]; then
  step "Chromium"
  if [ -x /usr/bin/chromium ]; then
    note "present: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
  else
    note "installing Debian's chromium"
    apt_install chromium || die "could not install chromium; install it with 'apt-get install chromium'"
  fi
fi

# --- 5. shellcheck, for npm test's lint of scripts/ --------------------------------------------
if [ "$want_browser" -eq 1 ]; then
  step "shellcheck"
  if command -v shellcheck >/dev/null 2>&1; then
    note "present: $(shellcheck --version | sed -n 's/^version: //p')"
  else
    note "installing Debian's shellcheck"
    apt_install shellcheck || die "could not install shellcheck; install it with 'apt-get install shellcheck'"
  fi
fi

# --- 6. git hooks: scripts/hooks (commit subjects of at most 72 characters) ---------------------
step "git hooks"
if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  note "not a git work tree; no hooks"
else
  hooks_path="$(git config core.hooksPath || true)"
  if [ "$hooks_path" = "scripts/hooks" ]; then
    note "core.hooksPath is scripts/hooks"
  elif [ -n "$hooks_path" ]; then
    note "core.hooksPath is $hooks_path already; left alone (scripts/hooks/commit-msg is the project's hook)"
  else
    git config core.hooksPath scripts/hooks
    note "core.hooksPath set to scripts/hooks"
  fi
fi

# --- 7. local secrets -------------------------------------------------------------------------------
step "local development vars"
# Each key is added if missing, so an older .dev.vars gains new keys and keeps its values.
rand() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
[ -f .dev.vars ] || echo "# Written by scripts/setup.sh for local development only; git ignores this file." > .dev.vars
ensure_var() {
  if grep -q "^$1=" .dev.vars; then
    note "$1 present"
  else
    echo "$1=\"$2\"" >> .dev.vars
    note "$1 written"
  fi
}
ensure_var ROOMCAST_SECRET "$(rand)"
ensure_var ROOMCAST_API_KEY "dev-$(rand)"
# Enables GET /dev/token, which the demo uses; never set in a deployed config.
ensure_var ROOMCAST_DEV_TOKENS "1"

step "setup done in $(( $(date +%s) - started )) s"
