#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Instructions per frame of the driver core, counted by callgrind.

Runs build/userspace/vpci-insn-core under `valgrind --tool=callgrind` for
each case (xmit and recv at 64 and 1500 bytes, identity and 4 KiB IOTLB, and
memcpy of the same bytes), collecting only its measure_* functions, i.e. the
core's own work per burst and not VM1's side.  Each case runs at N and 2N
frames; the figure is (Ir(2N) - Ir(N)) / N, and the two per-frame figures
must agree within 0.5 %: that is what makes them figures machine load cannot
move (the script fails otherwise).  Prints a Markdown table and, with
--json, writes the figures for scripts/bench-report.py.

usage: scripts/bench-insn.py [--frames N] [--json FILE] [--tool PATH]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = (64, 1500)
IOTLBS = ("identity", "4k")
KINDS = ("xmit", "recv")


def instructions(tool, kind, size, iotlb, frames):
    """Ir of the measure_* functions for one run (callgrind's totals)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        cmd = ["valgrind", "--tool=callgrind", "--toggle-collect=*measure_*",
               f"--callgrind-out-file={out}", "-q",
               tool, kind, str(size), iotlb, str(frames)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            sys.exit(f"bench-insn: {' '.join(cmd[5:])}: exit {r.returncode}: {r.stderr.strip()}")
        with open(out) as f:
            for line in f:
                if line.startswith("totals:"):
                    total = int(line.split()[1])
                    break
            else:
                sys.exit(f"bench-insn: {' '.join(cmd[5:])}: no totals in callgrind's output")
    if total == 0:
        sys.exit(f"bench-insn: {kind} {size} {iotlb}: nothing collected (measure_* not called?)")
    return total


def per_frame(tool, kind, size, iotlb, n):
    a = instructions(tool, kind, size, iotlb, n)
    b = instructions(tool, kind, size, iotlb, 2 * n)
    first, second = a / n, (b - a) / n
    if abs(second - first) > 0.005 * second:
        sys.exit(f"bench-insn: {kind} {size} {iotlb}: {first:.1f} then {second:.1f} "
                 "instructions per frame: not deterministic")
    return second


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=4096,
                    help="N (a multiple of 32; runs N and 2N frames)")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--tool", default=os.path.join(
        os.environ.get("VPCI_BUILD", os.path.join(REPO, "build")), "userspace", "vpci-insn-core"))
    args = ap.parse_args()
    rows = []
    for size in SIZES:
        for iotlb in IOTLBS:
            copy = per_frame(args.tool, "memcpy", size, iotlb, args.frames)
            for kind in KINDS:
                ir = per_frame(args.tool, kind, size, iotlb, args.frames)
                rows.append({"kind": kind, "size": size, "iotlb": iotlb,
                             "ir_per_frame": round(ir, 1), "memcpy_ir_per_frame": round(copy, 1)})
    print("| direction | frame bytes | IOTLB | instructions/frame | memcpy alone | core/memcpy |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind']} | {r['size']} | {r['iotlb']} | {r['ir_per_frame']:.0f} "
              f"| {r['memcpy_ir_per_frame']:.0f} "
              f"| {r['ir_per_frame'] / r['memcpy_ir_per_frame']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"frames": args.frames, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
