#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build the driver-core fuzzer (clang, libFuzzer, ASan, UBSan) and run it.
#   scripts/fuzz.sh [SECONDS]   default 20; corpus kept in build/fuzz/corpus
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${VPCI_BUILD:-$repo/build}/fuzz
secs=${1:-20}
mkdir -p "$out/corpus"
# The kernel's red-black tree for the IOTLB, as userspace/CMakeLists.txt builds it.
src=$("$repo/scripts/linux-src.sh")
san=(-g -O1 -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all)
clang "${san[@]}" -std=gnu11 -I "$src/tools/include" -I "$src/tools/arch/x86/include" \
	-c "$src/tools/lib/rbtree.c" -o "$out/rbtree.o"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-DVPCI_PEER_ORACLE -std=gnu11 -I "$repo/kernel" -I "$repo/userspace/kshim" -I "$repo/uapi" \
	-idirafter "$src/tools/include" \
	"$repo/userspace/fuzz/fuzz_core.c" "$repo"/kernel/core_{ctrl,iotlb,msg,net,vring}.c \
	"$out/rbtree.o" -o "$out/fuzz_core"
echo "fuzz: running the driver core for ${secs}s (ASan+UBSan)"
rc=0
"$out/fuzz_core" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 \
	-artifact_prefix="$out/" "$out/corpus" >"$out/last.log" 2>&1 || rc=$?
grep -E 'stat::number_of_executed_units|stat::peak_rss|cov:.*(DONE|REDUCE)|^Done' "$out/last.log" | tail -n 4
if [ $rc -ne 0 ]; then
	echo "fuzz: FAILED (exit $rc), crash input saved under $out/; report:"
	grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x' "$out/last.log" | head -n 30
fi
exit $rc
