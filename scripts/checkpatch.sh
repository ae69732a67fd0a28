#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# checkpatch.pl (from Debian's linux-source-6.1) over the driver and uapi.
# Exit non-zero on any error or warning.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=$("$repo/scripts/linux-src.sh")
cd "$repo"
cp=("$src/scripts/checkpatch.pl" --no-tree --strict --show-types --terse
    --ignore FILE_PATH_CHANGES,SPDX_LICENSE_TAG)
rc=0
"${cp[@]}" -f kernel/*.c kernel/*.h || rc=1
# uapi headers cannot use BIT(); they spell bits as (1U << n).
"${cp[@]}" --ignore BIT_MACRO -f uapi/linux/*.h || rc=1
exit $rc
