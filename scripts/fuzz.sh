#!/usr/bin/env bash
# `npm run fuzz -- [--seconds N] [TARGET...]`: runs the cargo-fuzz targets in protocol/fuzz for a
# bounded time each (default 60 s; targets: client_frame room_events token framing json_rules).
# Not part of npm test. Needs rustup's nightly toolchain (on this machine kind) and installs
# cargo-fuzz once.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[ ${#targets[@]} -gt 0 ] || targets=(client_frame room_events token framing json_rules)

if ! command -v rustup >/dev/null || ! rustup toolchain list | grep -q '^nightly'; then
  die "fuzzing needs rustup's nightly toolchain: rustup toolchain install nightly"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  step "installing cargo-fuzz (once per machine)"
  cargo install --quiet --locked cargo-fuzz || die "could not install cargo-fuzz from crates.io"
fi

cd protocol/fuzz
for t in "${targets[@]}"; do
  step "fuzzing $t for ${seconds}s"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$seconds" -max_len=4096 2>&1 \
    | tee "/tmp/roomcast-fuzz-$t.log" | grep -E '^(#[0-9]+.*(DONE|pulse))|Done [0-9]+ runs|ERROR|panicked' || true
  grep -q "Done [0-9]* runs" "/tmp/roomcast-fuzz-$t.log" || die "fuzz target $t failed; see /tmp/roomcast-fuzz-$t.log"
done
