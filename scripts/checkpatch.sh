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
special=(kernel/compat.h kernel/trace.h)
"${cp[@]}" -f $(ls kernel/*.c kernel/*.h | grep -vxF "${special[@]/#/-e}") || rc=1
# compat.h is the one place that tests the kernel version (out of tree, it
# must build against 6.1 and 6.12).
"${cp[@]}" --ignore LINUX_VERSION_CODE,CONSTANT_COMPARISON -f kernel/compat.h || rc=1
# TRACE_EVENT() is laid out as in include/trace/events/: open-ended lines.
"${cp[@]}" --ignore OPEN_ENDED_LINE,PARENTHESIS_ALIGNMENT -f kernel/trace.h || rc=1
# uapi headers cannot use BIT(); they spell bits as (1U << n).
"${cp[@]}" --ignore BIT_MACRO -f uapi/linux/*.h || rc=1
exit $rc
