#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Build the fuzzers (clang, libFuzzer, ASan, UBSan) and run them: the driver
# core for SECONDS, the vhost-user session and the backend's control socket
# for half as long each.
#   scripts/fuzz.sh [SECONDS]   default 20; corpora kept in build/fuzz/
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
lib=$repo/userspace/lib
clang++ -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c++20 \
	-DSPDLOG_SHARED_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL \
	-I "$lib/base" -I "$lib/vhost_user" "$repo/userspace/fuzz/fuzz_vhost_user.cpp" \
	"$lib/vhost_user/vhost_user.cpp" "$lib/vhost_user/vhost_user_session.cpp" \
	"$lib/base/fd.cpp" -lspdlog -lfmt -o "$out/fuzz_vhost_user"
clang++ -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -std=c++20 \
	-DSPDLOG_SHARED_LIB -DSPDLOG_COMPILED_LIB -DSPDLOG_FMT_EXTERNAL \
	-I "$lib/base" -I "$lib/daemon" "$repo/userspace/fuzz/fuzz_control.cpp" \
	"$lib/daemon/control_conn.cpp" "$lib/base/fd.cpp" -lspdlog -lfmt \
	-o "$out/fuzz_control"

# run NAME SECONDS CORPUS: one fuzzer; its stats, or its report and the crash input.
run()
{
	local rc=0
	"$out/$1" -max_total_time="$2" -max_len=4096 -print_final_stats=1 \
		-artifact_prefix="$out/$1-" "$3" >"$out/$1.log" 2>&1 || rc=$?
	grep -E 'stat::number_of_executed_units|stat::peak_rss|cov:.*(DONE|REDUCE)|^Done' \
		"$out/$1.log" | tail -n 4
	if [ $rc -ne 0 ]; then
		echo "fuzz: $1 FAILED (exit $rc), crash input saved under $out/; report:"
		grep -E 'ERROR|SUMMARY|runtime error|#[0-9]+ 0x' "$out/$1.log" | head -n 30
	fi
	return $rc
}
mkdir -p "$out/corpus-vhost-user" "$out/corpus-control"
# Seeds for the control socket: its two commands, and wrong types (a
# settings byte, then pieces: length - 1, bytes; see fuzz_control.cpp).
printf '\000\020{"cmd":"status"}\n\033{"cmd":"link","state":"up"}\n' \
	>"$out/corpus-control/seed-commands"
printf '\000\062{"cmd":["status"],"state":[1,-2.5e3,true,null,{}]}\n' \
	>"$out/corpus-control/seed-types"
rc=0
echo "fuzz: running the driver core for ${secs}s (ASan+UBSan)"
run fuzz_core "$secs" "$out/corpus" || rc=1
echo "fuzz: running the vhost-user session for $(( (secs + 1) / 2 ))s (ASan+UBSan, fd leaks)"
run fuzz_vhost_user $(( (secs + 1) / 2 )) "$out/corpus-vhost-user" || rc=1
echo "fuzz: running the control socket for $(( (secs + 1) / 2 ))s (ASan+UBSan, one JSON reply a line)"
run fuzz_control $(( (secs + 1) / 2 )) "$out/corpus-control" || rc=1
exit $rc
