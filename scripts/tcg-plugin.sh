#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
#
# Builds qemu/plugins/vpci_insn.c into build/qemu/vpci-insn.so against the
# plugin API header of the QEMU source `make qemu` fetched (Debian's 7.2,
# kept in its cache directory).  Usage: scripts/tcg-plugin.sh BUILD_DIR
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: $0 BUILD_DIR}
qemu=$build/qemu/qemu-system-x86_64
bin=$(readlink -f "$qemu" 2>/dev/null) || true
[ -x "$bin" ] || { echo "tcg-plugin: $qemu missing (make qemu)" >&2; exit 1; }
# The cache entry's usr/bin/qemu-system-x86_64 -> its src/qemu-*/
header=$(find "${bin%/usr/bin/*}/src" -maxdepth 4 -path '*/include/qemu/qemu-plugin.h' | head -n 1)
[ -n "$header" ] || { echo "tcg-plugin: no qemu-plugin.h under ${bin%/usr/bin/*}/src" >&2; exit 1; }
out=$build/qemu/vpci-insn.so
src=$repo/qemu/plugins/vpci_insn.c
if [ "$out" -nt "$src" ] && [ "$out" -nt "$header" ]; then
	exit 0
fi
# shellcheck disable=SC2046
cc -shared -fPIC -O2 -Wall -Wextra -Wno-unused-parameter -Werror -I"$(dirname "$header")" \
	$(pkg-config --cflags glib-2.0) -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
echo "tcg-plugin: $out"
