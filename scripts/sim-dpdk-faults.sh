#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only OR MIT
# Survey: every vpci-sim fault scenario against a fresh dpdk-testpmd (io
# forwarding, vhost PMD with iommu-support=1), one table row per fault.
# This is the DPDK baseline recorded in docs/simulator.md.
#   scripts/sim-dpdk-faults.sh VPCI_SIM [extra vpci-sim options]
set -u
SIM=${1:?usage: sim-dpdk-faults.sh VPCI_SIM [options]}
shift
HERE=$(cd "$(dirname "$0")" && pwd)
printf '%-18s %-9s %-6s %-6s %-5s %-5s %-8s %-7s %s\n' fault outcome s_aft r_aft dup bad_u unanswd testpmd note
for f in $("$SIM" --list-faults | awk '{print $1}'); do
	out=$(KEEP=1 "$HERE/sim-dpdk.sh" "$SIM" "-n 2000 --drain-ms 500 --fault $f $*" 2>&1)
	dir=$(echo "$out" | sed -n 's/^# logs kept in //p')
	alive=alive
	echo "$out" | grep -q 'testpmd died' && alive=DIED
	python3 - "$dir/run1.json" "$f" "$alive" "$(echo "$out" | grep -o 'exit [0-9]*.*)' | head -1)" <<'PY'
import json, sys
path, name, alive, note = sys.argv[1:5]
try:
    j = json.load(open(path))
except Exception:
    print(f"{name:<18} {'no-json':<9} {'':6} {'':6} {'':5} {'':5} {'':8} {alive:<7} {note}")
    sys.exit(0)
f = j["fault"]
print(f"{name:<18} {f['outcome']:<9} {f['sent_after']:<6} {f['received_after']:<6} "
      f"{f['duplicates']:<5} {f['bad_used']:<5} {j['frontend']['iotlb']['misses_unanswered']:<8} "
      f"{alive:<7} {note}")
PY
	rm -rf "$dir"
done
