#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# Print the guest kernel version: the one Debian's linux-image-amd64
# (6.1 LTS) depends on, or, with "6.12", the one linux-image-6.12-amd64 does.
set -euo pipefail
pkg=linux-image-amd64
[ "${1:-}" = "6.12" ] && pkg=linux-image-6.12-amd64
dep=$(dpkg-query -W -f='${Depends}' "$pkg" 2>/dev/null) || {
	echo "guest-kver: $pkg is not installed (run: make deps)" >&2
	exit 1
}
# "linux-image-6.1.0-56-amd64 (= 6.1.192-2)" -> 6.1.0-56-amd64
echo "$dep" | sed -n 's/^linux-image-\([^ ,]*\).*/\1/p'
