#!/usr/bin/env bash
# Adds (or with -d removes) the uprobes bench/native-heap.mjs records: every entry point of the
# tcmalloc that workerd links statically (heaptrack's LD_PRELOAD cannot see those): allocations
# with their size and the address they return, frees with the address. Needs root (perf probe).
#   bash bench/native-heap-probes.sh [-d] [path/to/workerd]
set -euo pipefail
if [ "${1:-}" = "-d" ]; then
  perf probe -q -d 'probe_workerd:*'
  exit 0
fi
bin="${1:-$(find "$(dirname "${BASH_SOURCE[0]}")/../node_modules/" -path '*workerd-linux-64/bin/workerd' -type f | head -1)}"
# perf probe takes a file offset for an address: the text segment's address minus its offset.
read -r seg_addr seg_off < <(readelf -lW "$bin" | awk '$1 == "LOAD" && $8 == "E" { print $3, $2 }')
probe() { perf probe -q -x "$bin" --add "$1"; }
at() { # probe name, symbol: the symbol's file offset (C++ names do not parse as perf probe points)
  local addr
  addr=$(nm "$bin" | awk -v s="$2" '$3 == s { print $1; exit }')
  printf '0x%x' $((0x$addr - seg_addr + seg_off))
}
n=0
for f in malloc __size_returning_new __size_returning_new_hot_cold __size_returning_new_aligned __size_returning_new_aligned_hot_cold; do
  probe "a_$f=$f size=%di:u64"
  probe "r_$f=$f%return ret=\$retval:u64"
done
for f in calloc reallocarray; do
  probe "a_$f=$f n=%di:u64 size=%si:u64"
  probe "r_$f=$f%return ret=\$retval:u64"
done
probe "a_realloc=realloc ptr=%di:u64 size=%si:u64"
probe "r_realloc=realloc%return ret=\$retval:u64"
for f in aligned_alloc memalign aligned_alloc_at_least; do
  probe "a_$f=$f align=%di:u64 size=%si:u64"
  probe "r_$f=$f%return ret=\$retval:u64"
done
# Counted, not followed (the address goes to memory): rare here.
probe "a_posix_memalign=posix_memalign memptr=%di:u64 align=%si:u64 size=%dx:u64"
for f in free sdallocx free_sized free_aligned_sized; do
  probe "f_$f=$f ptr=%di:u64"
done
# operator new and new[] share entry points; their variants take the size first too.
for f in _Znwm _ZnwmRKSt9nothrow_t _Znwm12__hot_cold_t _ZnwmRKSt9nothrow_t12__hot_cold_t _Znam12__hot_cold_t \
  _ZnamRKSt9nothrow_t12__hot_cold_t _ZnwmSt11align_val_t _ZnwmSt11align_val_tRKSt9nothrow_t \
  _ZnwmSt11align_val_t12__hot_cold_t _ZnwmSt11align_val_tRKSt9nothrow_t12__hot_cold_t \
  _ZnamSt11align_val_t12__hot_cold_t _ZnamSt11align_val_tRKSt9nothrow_t12__hot_cold_t; do
  n=$((n + 1))
  probe "an$n=$(at an "$f") size=%di:u64"
  probe "rn$n=$(at an "$f")%return ret=\$retval:u64"
done
n=0
for f in _ZdlPv _ZdlPvm _ZdlPvSt11align_val_t _ZdlPvmSt11align_val_t; do
  n=$((n + 1))
  probe "fd$n=$(at fd "$f") ptr=%di:u64"
done
echo "$(perf probe -l 2>/dev/null | wc -l) probes on $bin"
