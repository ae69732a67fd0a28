#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Extract the few files the project uses from Debian's linux-source-6.1
# (checkpatch and the kselftest headers) into build/linux-src, once.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${VPCI_BUILD:-$repo/build}/linux-src
tarball=$(ls /usr/src/linux-source-6.1*.tar.xz 2>/dev/null | head -n1)
[ -n "$tarball" ] || { echo "linux-source-6.1 is not installed (make deps)" >&2; exit 1; }
if [ -f "$out/.done" ] && [ "$out/.done" -nt "$tarball" ]; then
	echo "$out"
	exit 0
fi
top=$(basename "$tarball" .tar.xz)
mkdir -p "$out"
tar -xJf "$tarball" -C "$out" --strip-components=1 \
	"$top/scripts/checkpatch.pl" "$top/scripts/spelling.txt" \
	"$top/scripts/const_structs.checkpatch" \
	"$top/tools/testing/selftests/kselftest.h" \
	"$top/tools/testing/selftests/kselftest_harness.h"
touch "$out/.done"
echo "$out"
