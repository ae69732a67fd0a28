#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn a `make bench` run directory into docs/benchmarks.md and its plots.

  bench-report.py env OUTDIR          record the machine (OUTDIR/env.json)
  bench-report.py report OUTDIR [--doc FILE] [--plots DIR] [--elapsed S]
                               [--require-traffic] [--require-ndr]

report reads OUTDIR/env.json, OUTDIR/core.json (Google Benchmark JSON of
vpci-bench-core), OUTDIR/host.json (scripts/bench-host.sh, optional) and
OUTDIR/vm/results.jsonl (scripts/bench-vm.sh), prints the tables and writes
the same text as the document, so the numbers in the document are exactly
those the run printed.  Plots are PNGs drawn by gnuplot.  Python stdlib only.
"""

import argparse
import datetime
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
# A, B; B is "dpdk" (testpmd io forwarding) or "dpdk-retry" (io forwarding
# with retry, "B-retry"), chosen by report --b-path.
PATHS = ("vhost-pci", "dpdk")
B_PATHS = {"dpdk": "`--forward-mode=io`",
           "dpdk-retry": "io forwarding with retry (`--cmdline-file` "
                         "`selftests/topologies/testpmd-io-retry.cmds`: `set burst tx delay 50 "
                         "retry 1000`, `set fwd io retry`: a burst the other guest's RX ring "
                         "cannot take yet, or whose buffers miss in DPDK's IOTLB until VM1's "
                         "QEMU answers, is retried every 50 µs for up to 50 ms before the rest "
                         "is dropped)"}
SWITCH = {"vhost-pci": "backend", "dpdk": "testpmd", "dpdk-retry": "testpmd"}
DIR_LABEL = {"vm1-vm2": "VM1 → VM2", "vm2-vm1": "VM2 → VM1"}
MODE_ORDER = ("pt", "strict")
MODE_LABEL = {"pt": "passthrough (`iommu=pt`)", "strict": "strict (`iommu.strict=1`)"}
# Confidence interval of a median A/B ratio: percentile bootstrap over rounds.
BOOT_RESAMPLES = 10000
BOOT_SEED = 1           # fixed: the same records give the same document
BOOT_MIN_ROUNDS = 3     # fewer rounds: no interval, only their count
# virtio-net feature bits, for the setup table.
FEATURES = {0: "CSUM", 1: "GUEST_CSUM", 2: "CTRL_GUEST_OFFLOADS", 3: "MTU", 5: "MAC",
            7: "GUEST_TSO4", 8: "GUEST_TSO6", 9: "GUEST_ECN", 10: "GUEST_UFO",
            11: "HOST_TSO4", 12: "HOST_TSO6", 13: "HOST_ECN", 14: "HOST_UFO",
            15: "MRG_RXBUF", 16: "STATUS", 17: "CTRL_VQ", 18: "CTRL_RX", 19: "CTRL_VLAN",
            20: "CTRL_RX_EXTRA", 21: "GUEST_ANNOUNCE", 22: "MQ", 23: "CTRL_MAC_ADDR",
            28: "RING_INDIRECT_DESC", 29: "RING_EVENT_IDX", 32: "VERSION_1",
            33: "ACCESS_PLATFORM", 34: "RING_PACKED", 35: "IN_ORDER", 36: "ORDER_PLATFORM"}


def b_name():
    """Path B's name in text and plots."""
    return "DPDK testpmd" + (", io retry" if PATHS[1] == "dpdk-retry" else "")


def run(argv):
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


# ---------------------------------------------------------------- env

def capture_env(outdir):
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "host_kernel": platform.release(),
        "guest_kernel": run([os.path.join(REPO, "scripts", "guest-kver.sh")]),
        "qemu": run(["qemu-system-x86_64", "--version"]).splitlines()[0:1],
        "dpdk": run(["dpkg-query", "-W", "-f=${Version}", "dpdk"]),
        "commit": run(["git", "-C", REPO, "describe", "--always", "--dirty"]),
        "pin": os.environ.get("BENCH_PIN", "0"),
        "b_vm2_viommu": os.environ.get("BENCH_B_VM2_VIOMMU") == "1",
        "insn": os.environ.get("BENCH_INSN", "0") == "1",
        # The knobs this run was given (what "make bench" alone would not do).
        "knobs": {k: v for k, v in sorted(os.environ.items()) if k.startswith("BENCH_")},
    }
    env["qemu"] = env["qemu"][0] if env["qemu"] else ""
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "env.json"), "w") as f:
        json.dump(env, f, indent=1)


# ---------------------------------------------------------------- helpers

def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def med(xs):
    return statistics.median(xs) if xs else None


def fmt_int(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def fmt_sig(x):
    """Three significant digits, for CPU per packet spanning decades."""
    if x is None:
        return "—"
    if x == 0:
        return "0"
    if x >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def mmm(xs, digits=2):
    """min / median / max."""
    if not xs:
        return "—"
    return f"{min(xs):.{digits}f} / {statistics.median(xs):.{digits}f} / {max(xs):.{digits}f}"


def isnum(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def boot_ci(by_round):
    """95 % percentile bootstrap interval of the median of the values in
    by_round ({round: [values]}), or None from fewer than BOOT_MIN_ROUNDS
    rounds.  The round is what is resampled (with replacement): values of
    one round (its sizes and directions) came from the same boots and go
    together.  Seeded, so a report is reproducible."""
    groups = [list(v) for _, v in sorted(by_round.items()) if v]
    if len(groups) < BOOT_MIN_ROUNDS:
        return None
    rng = random.Random(BOOT_SEED)
    meds = []
    for _ in range(BOOT_RESAMPLES):
        meds.append(statistics.median([x for g in rng.choices(groups, k=len(groups)) for x in g]))
    q = statistics.quantiles(meds, n=40, method="inclusive")    # 2.5 %, 5 %, ..., 97.5 %
    return q[0], q[-1]


def ci_only(by_round, digits=2):
    """"[lo, hi]", or "— (n=N)" from fewer than BOOT_MIN_ROUNDS rounds."""
    n = sum(1 for v in by_round.values() if v)
    if not n:
        return "—"
    ci = boot_ci(by_round)
    if ci is None:
        return f"— (n={n})"
    return f"[{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


def fmt_ci(by_round, digits=2, show_n=False):
    """"median [lo, hi]" of the values in by_round, or "— (n=N)" from
    fewer than BOOT_MIN_ROUNDS rounds; show_n adds " (n=N)" to an interval."""
    vals = [x for v in by_round.values() for x in v]
    ci = ci_only(by_round, digits)
    if not ci.startswith("["):
        return ci
    n = sum(1 for v in by_round.values() if v)
    return f"{statistics.median(vals):.{digits}f} {ci}" + (f" (n={n})" if show_n else "")


def table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def features(bits):
    """(value, [names]) from the sysfs string of 0/1 characters, bit 0 first."""
    if not bits or set(bits) - {"0", "1"}:
        return None, []
    v = sum(1 << i for i, c in enumerate(bits) if c == "1")
    return v, [FEATURES.get(i, f"bit{i}") for i, c in enumerate(bits) if c == "1"]


# ---------------------------------------------------------------- VM results

class VmResults:
    def __init__(self, path):
        self.tput = {}      # (path, iommu, size, dir) -> {round: record}
        self.rtt = {}
        self.ndr = {}       # (path, iommu, size, dir) -> {round: derive_ndr()}
        self.runs = []
        self.setup = {}     # path -> first setup record
        self.bad_lines = 0
        try:
            f = open(path)
        except OSError:
            return
        with f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    self.bad_lines += 1
                    continue
                kind = r.get("kind")
                if kind == "run":
                    self.runs.append(r)
                elif kind == "setup":
                    self.setup.setdefault(r["path"], r)
                elif kind == "throughput":
                    t = self.derive(r)
                    if t:
                        self.tput.setdefault(self.key(r), {})[r["round"]] = t
                    else:
                        self.bad_lines += 1
                elif kind == "rtt":
                    if isinstance(r.get("rtt"), dict):
                        self.rtt.setdefault(self.key(r), {})[r["round"]] = r["rtt"]
                    else:
                        self.bad_lines += 1
                elif kind == "ndr":
                    n = self.derive_ndr(r)
                    if n:
                        self.ndr.setdefault(self.key(r), {})[r["round"]] = n
                    else:
                        self.bad_lines += 1

    @staticmethod
    def key(r):
        return (r["path"], r["iommu"], r["size"], r["dir"])

    @staticmethod
    def derive(r):
        s, v, c0, c1 = r.get("send"), r.get("recv"), r.get("cpu0"), r.get("cpu1")
        if not all(isinstance(x, dict) for x in (s, v)):
            return None
        t = {"sent": s["sent"], "received": v["received"],
             "lost": max(0, s["sent"] - v["received"]),
             "socket_drops": v.get("socket_drops", 0),
             "pps": v["pps"], "mbps": v["pps"] * r["size"] * 8 / 1e6,
             "send_seconds": s["seconds"]}
        t["loss_pct"] = 100.0 * t["lost"] / t["sent"] if t["sent"] else 0.0
        if isinstance(c0, dict) and isinstance(c1, dict):
            d = {k: c1[k] - c0[k] for k in c1
                 if k in c0 and isinstance(c1[k], (int, float)) and isinstance(c0[k], (int, float))}
            sw = d.get(SWITCH[r["path"]])
            t["wall"] = d.get("wall")
            t["switch_cpu"] = sw
            if t["wall"] is not None:
                t["window_extra"] = t["wall"] - s["seconds"]
            if sw is not None and t["wall"]:
                t["switch_core_pct"] = 100.0 * sw / t["wall"]
            if sw is not None and t["received"]:
                t["switch_per_mpkt"] = sw / t["received"] * 1e6
                t["vms_per_mpkt"] = (d.get("vm1", 0) + d.get("vm2", 0)) / t["received"] * 1e6
                # All the host CPU the path spent per packet: switch and guests.
                t["host_per_mpkt"] = t["switch_per_mpkt"] + t["vms_per_mpkt"]
            # Guest instructions (the vpci-insn TCG plugin, VPCI_QEMU_INSN=1).
            i0, i1 = c0.get("insn"), c1.get("insn")
            if isinstance(i0, dict) and isinstance(i1, dict) and t["received"]:
                di = {vm: i1[vm] - i0[vm] for vm in ("vm1", "vm2")
                      if isinstance(i0.get(vm), int) and isinstance(i1.get(vm), int)}
                if len(di) == 2:
                    t["vm1_insn_per_pkt"] = di["vm1"] / t["received"]
                    t["vm2_insn_per_pkt"] = di["vm2"] / t["received"]
                    t["vms_insn_per_pkt"] = (di["vm1"] + di["vm2"]) / t["received"]
        return t

    @staticmethod
    def derive_ndr(r):
        """An ndr record (selftests/bench/vm2vm.sh, VPCI_BENCH_NDR=1) as
        {"ndr_pps": number or None (the search failed), "probes": [...],
        "seconds": a probe's}
        or None when it is not one.  ndr_pps is checked against its probes:
        the highest send_pps of a probe in which the receiver got every
        datagram sent, 0 when none was lossless."""
        if (r.get("path") not in PATHS or not isinstance(r.get("iommu"), str)
                or not isnum(r.get("size")) or not isinstance(r.get("dir"), str)
                or not isnum(r.get("round"))):
            return None
        probes = [p for p in (r.get("probes") or []) if isinstance(p, dict)]
        ndr = r.get("ndr_pps") if isnum(r.get("ndr_pps")) else None
        lossless = [p["send_pps"] for p in probes
                    if isnum(p.get("sent")) and p["sent"] > 0 and p.get("received") == p["sent"]
                    and p.get("lost") == 0 and isnum(p.get("send_pps"))]
        best = max(lossless) if lossless else 0
        if ndr is not None and abs(ndr - best) > 0.5:
            print(f"bench-report: ndr record {r['path']} {r['iommu']} {r['size']} B {r['dir']} "
                  f"round {r['round']}: ndr_pps {ndr} but its probes give {best}", file=sys.stderr)
        return {"ndr_pps": ndr, "probes": probes,
                "seconds": r["seconds"] if isnum(r.get("seconds")) else None}

    def cells(self):
        """(iommu, size, dir) present in the throughput results, in order."""
        keys = {(k[1], k[2], k[3]) for k in list(self.tput) + list(self.rtt)}
        return sorted(keys, key=lambda k: (MODE_ORDER.index(k[0]) if k[0] in MODE_ORDER else 9,
                                           k[1], k[2]))

    def modes(self):
        seen = {c[0] for c in self.cells()}
        return [m for m in MODE_ORDER if m in seen] + sorted(seen - set(MODE_ORDER))

    def values(self, path, cell, field, source=None):
        runs = (source or self.tput).get((path,) + cell, {})
        return [runs[r][field] for r in sorted(runs) if runs[r].get(field) is not None]

    def latency(self, path, cell, field):
        """A percentile of the round-trip runs that got any answer."""
        runs = self.rtt.get((path,) + cell, {})
        return [runs[r][field] for r in sorted(runs) if runs[r].get("received")]

    def ratios_by_round(self, cell, field="pps"):
        """{round: A/B of field} for the rounds in which both ran."""
        a = self.tput.get(("vhost-pci",) + cell, {})
        b = self.tput.get((PATHS[1],) + cell, {})
        return {r: a[r][field] / b[r][field] for r in sorted(a)
                if r in b and b[r].get(field)}

    def ratios(self, cell, field="pps"):
        """A/B of field per round in which both ran."""
        return list(self.ratios_by_round(cell, field).values())

    def mode_ratios(self, mode, field="pps"):
        """{round: [A/B of field, every size and direction]} of one IOMMU mode."""
        out = {}
        for c in self.cells():
            if c[0] == mode:
                for r, x in self.ratios_by_round(c, field).items():
                    out.setdefault(r, []).append(x)
        return out

    def ndr_cells(self):
        """(iommu, size, dir) with ndr or throughput records, in order;
        none when nothing measured the NDR."""
        if not self.ndr:
            return []
        keys = {(k[1], k[2], k[3]) for k in list(self.ndr) + list(self.tput)}
        return sorted(keys, key=lambda k: (MODE_ORDER.index(k[0]) if k[0] in MODE_ORDER else 9,
                                           k[1], k[2]))

    def ndr_values(self, path, cell):
        """{round: ndr_pps} of the rounds whose search finished."""
        runs = self.ndr.get((path,) + cell, {})
        return {r: runs[r]["ndr_pps"] for r in sorted(runs) if runs[r]["ndr_pps"] is not None}


# ---------------------------------------------------------------- sections

def header(env, vm, elapsed):
    e = env or {}
    rows = [("machine", f"{e.get('cpu', '?')}, {e.get('cores', '?')} cores"),
            ("host kernel", e.get("host_kernel", "?")),
            ("guest kernel", e.get("guest_kernel", "?") + " (Debian), QEMU TCG (`-accel tcg`, no KVM)"),
            ("QEMU", e.get("qemu", "?")),
            ("DPDK", e.get("dpdk", "?") + " (Debian `dpdk`, `dpdk-testpmd`)"),
            ("date", e.get("date", "?")),
            ("commit", f"`{e.get('commit', '?')}`"),
            ("knobs", " ".join(f"`{k}={v}`" for k, v in e.get("knobs", {}).items()) or "none")]
    if elapsed is not None:
        rows.append((("`make bench-retry`" if PATHS[1] == "dpdk-retry" else "`make bench`") + " took",
                     f"{elapsed / 60:.1f} min"))
    return table(("", ""), rows)


def section_headline(vm):
    out = []
    rows = []
    for mode in vm.modes():
        by = vm.mode_ratios(mode)
        rs = [x for v in by.values() for x in v]
        rows.append((MODE_LABEL.get(mode, mode), len(by), len(rs), mmm(rs), fmt_ci(by)))
    if rows:
        out.append(f"Throughput ratio A/B (A = vhost-pci, B = {b_name()}), received packets/s, "
                   "one ratio per size, direction and round (A and B booted back to back):\n")
        out.append(table(("VM1 IOMMU", "rounds", "pairs", "A/B min / median / max",
                          "median [95 % CI]"), rows))
        out.append("\n" + CI_NOTE)
    rows = []
    for mode in vm.modes():
        by = {r: v for r, v in vm.mode_ratios(mode, "host_per_mpkt").items() if v}
        rs = [x for v in by.values() for x in v]
        if rs:
            rows.append((MODE_LABEL.get(mode, mode), len(by), len(rs), mmm(rs), fmt_ci(by)))
    if rows:
        out.append("\nHost CPU per packet A/B: CPU seconds of the switch and both guests' QEMU "
                   "together, per packet received, over the unpaced throughput runs (each path at the "
                   "rate it reached, B's polling lcore included); below 1, A spends less of the "
                   "host per packet (Host CPU below has each part):\n")
        out.append(table(("VM1 IOMMU", "rounds", "pairs", "A/B min / median / max",
                          "median [95 % CI]"), rows))
    return "\n".join(out)


CI_NOTE = (f"95 % CI: percentile bootstrap of the median over rounds ({BOOT_RESAMPLES:,} "
           "resamples of the rounds with replacement, a round's sizes and directions kept "
           f"together, seed {BOOT_SEED}), none from fewer than {BOOT_MIN_ROUNDS} rounds "
           "(n = rounds); A and B ran in ABBA order over rounds.")


def section_setup(vm):
    rows = []
    for path, who, field in (("vhost-pci", "A: VM1 (virtio-net ↔ vpci-backend)", "vm1_features"),
                             (PATHS[1], "B: VM1 (virtio-net ↔ testpmd port 0)", "vm1_features"),
                             (PATHS[1], "B: VM2 (virtio-net ↔ testpmd port 1)", "vm2_features")):
        s = vm.setup.get(path)
        v, names = features(s.get(field) if s else None)
        rows.append((who, "—" if v is None else f"`{v:#x}`", " ".join(names) or "—"))
    return table(("device", "negotiated features", "names"), rows)


def section_throughput(vm):
    rows = []
    for c in vm.cells():
        a, b = vm.values("vhost-pci", c, "pps"), vm.values(PATHS[1], c, "pps")
        am, bm = vm.values("vhost-pci", c, "mbps"), vm.values(PATHS[1], c, "mbps")
        by = {r: [x] for r, x in vm.ratios_by_round(c).items()}
        rows.append((c[0], c[1], DIR_LABEL.get(c[2], c[2]), fmt_int(med(a)), fmt_int(med(b)),
                     mmm(vm.ratios(c)), fmt_ci(by), fmt(med(am), 1), fmt(med(bm), 1)))
    return table(("IOMMU", "size (B)", "direction", "A pkt/s", "B pkt/s",
                  "A/B min / median / max", "A/B median [95 % CI]", "A Mbit/s", "B Mbit/s"),
                 rows)


def section_ndr(vm):
    """Zero-loss rate per cell: median over rounds of each path's NDR, the
    A/B ratio per round (rounds in which B had one), the unpaced goodput of
    the same cell, and how many probes the searches took."""
    cells = vm.ndr_cells()
    if not cells:
        return "not measured (BENCH_NDR=1 measures it)"
    rows = []
    for c in cells:
        row = [c[0], c[1], DIR_LABEL.get(c[2], c[2])]
        nv = {p: vm.ndr_values(p, c) for p in PATHS}
        for p in PATHS:
            recs = vm.ndr.get((p,) + c, {})
            failed = len(recs) - len(nv[p])
            row.append(fmt_int(med(list(nv[p].values()))) + (f" ({failed} failed)" if failed else "")
                       if nv[p] else "failed" if recs else "—")
        a, b = nv["vhost-pci"], nv[PATHS[1]]
        by = {r: [a[r] / b[r]] for r in a if r in b and b[r] > 0}
        b0 = sum(1 for r in a if r in b and b[r] == 0 and a[r] > 0)
        ratio = fmt(med([v[0] for v in by.values()])) if by else "—"
        if b0:
            ratio += f" (B 0 in {b0} of {len([r for r in a if r in b])} rounds)"
        row += [ratio, ci_only(by)]
        row += [fmt_int(med(vm.values(p, c, "pps"))) for p in PATHS]
        row.append(" / ".join(str(sum(len(n["probes"]) for n in vm.ndr.get((p,) + c, {}).values()))
                              for p in PATHS))
        rows.append(row)
    return table(("IOMMU", "size (B)", "direction", "A NDR pkt/s", "B NDR pkt/s", "A/B",
                  "A/B 95 % CI", "A unpaced pkt/s", "B unpaced pkt/s", "probes A / B"), rows)


def cell_table(vm, cols, per_path, initiator=False):
    """One row a cell (IOMMU, size, direction), then per_path(path, cell)
    for A and then B under the column names cols (prefixed "A "/"B ")."""
    rows = []
    for c in vm.cells():
        d = DIR_LABEL.get(c[2], c[2])
        row = [c[0], c[1], d.split(" ")[0] if initiator else d]
        for p in PATHS:
            row += per_path(p, c)
        rows.append(row)
    head = ("IOMMU", "size (B)", "initiator" if initiator else "direction")
    return table(head + tuple(f"{n} {h}" for n in "AB" for h in cols), rows)


def section_loss(vm):
    def cols(p, c):
        sent = sum(vm.values(p, c, "sent"))
        lost = sum(vm.values(p, c, "lost"))
        pct = fmt(100.0 * lost / sent if sent else None)
        return [fmt_int(sent), f"{fmt_int(lost)} ({pct} %)",
                fmt_int(sum(vm.values(p, c, "socket_drops")))]
    return cell_table(vm, ("sent", "lost", "of which rcvbuf"), cols)


def section_cpu(vm):
    def cols(p, c):
        return [fmt(med(vm.values(p, c, "switch_core_pct")), 1),
                fmt_sig(med(vm.values(p, c, "switch_per_mpkt"))),
                fmt_sig(med(vm.values(p, c, "vms_per_mpkt")))]
    return cell_table(vm, ("switch % of a core", "switch CPU s / Mpkt",
                           "both VMs CPU s / Mpkt"), cols)


def section_guest_insn(vm):
    def cols(p, c):
        return [fmt_int(med(vm.values(p, c, k)))
                for k in ("vm1_insn_per_pkt", "vm2_insn_per_pkt", "vms_insn_per_pkt")]
    return cell_table(vm, ("VM1 insn/pkt", "VM2 insn/pkt", "both"), cols)


def has_guest_insn(vm):
    return any(r.get("vms_insn_per_pkt") is not None
               for runs in vm.tput.values() for r in runs.values())


def section_rtt(vm):
    def cols(p, c):
        p50 = med(vm.latency(p, c, "p50_us"))
        p99 = med(vm.latency(p, c, "p99_us"))
        sent = sum(vm.values(p, c, "sent", vm.rtt))
        lost = sum(vm.values(p, c, "lost", vm.rtt))
        return [fmt(p50 / 1000 if p50 is not None else None),
                fmt(p99 / 1000 if p99 is not None else None), f"{lost}/{sent}"]
    return cell_table(vm, ("p50 ms", "p99 ms", "lost"), cols, initiator=True)


def section_targets(vm):
    rows = []
    for mode in vm.modes():
        by = vm.mode_ratios(mode)
        rs = [x for v in by.values() for x in v]
        m = med(rs)
        rows.append((f"A ≥ 2 × B throughput, {mode}",
                     f"A/B over {len(rs)} pairs: {mmm(rs)} (min / median / max); "
                     f"median [95 % CI] {fmt_ci(by, show_n=True)}",
                     "—" if m is None else "met" if min(rs) >= 2 else
                     "met at the median, not in every pair" if m >= 2 else "missed"))
    for mode in vm.modes():
        pct = [x for c in vm.cells() if c[0] == mode
               for x in vm.values("vhost-pci", c, "switch_core_pct")]
        rows.append((f"vpci-backend < 1 % of a core during traffic, {mode}",
                     f"median {fmt(med(pct))} %, max {fmt(max(pct) if pct else None)} % "
                     f"(over {len(pct)} runs)",
                     "—" if not pct else ("met" if max(pct) < 1 else
                                          "met at the median, missed at the max"
                                          if med(pct) < 1 else "missed")))
    for p, name in (("vhost-pci", "A"), (PATHS[1], "B")):
        fr, lost, sent = [], 0, 0
        for c in vm.cells():
            if c[0] != "strict":
                continue
            pt = med(vm.values(p, ("pt",) + c[1:], "pps"))
            st = med(vm.values(p, c, "pps"))
            if pt and st is not None:
                fr.append(st / pt)
            lost += sum(vm.values(p, c, "lost"))
            sent += sum(vm.values(p, c, "sent"))
        verdict = "—" if not fr else ("met" if min(fr) >= 0.5 and lost == 0 else "missed")
        rows.append((f"{name}: strict ≥ ½ passthrough, zero loss",
                     f"strict/pt {mmm(fr)} (min / median / max over sizes and directions); "
                     f"strict lost {lost:,} of {sent:,}", verdict))
    return table(("target", "measured", "verdict"), rows)


def section_runs(vm):
    rows = []
    for r in vm.runs:
        probs = "; ".join(p.replace("|", "\\|") for p in r.get("problems", [])[:4]) or "—"
        steal = r.get("steal_s")
        rows.append((r["round"], r["path"], r["iommu"], r["rc"], r["seconds"],
                     "—" if steal is None else f"{steal:.2f}", r.get("loadavg", "—"), probs))
    return table(("round", "path", "IOMMU", "exit", "seconds", "host steal s",
                  "load average at the end (1, 5, 15 min)", "problems"), rows)


def host_section(host):
    if host is None:
        return None, ("not run: `make bench-retry` runs only the VM-to-VM matrix."
                      if PATHS[1] == "dpdk-retry" else
                      "not run (`scripts/bench-host.sh` is absent in this tree).")
    runs = host.get("runs", [])
    by = {}
    for r in runs:
        by.setdefault((r["iommu"], r["size"]), {}).setdefault(r["path"], []).append(r)
    order = {"off": 0, "transient": 1, "pool": 2}
    rows = []
    for key in sorted(by, key=lambda k: (order.get(k[0], 9), k[1])):
        a = by[key].get("vhost-pci-core", [])
        b = by[key].get("dpdk-vhost-pmd", [])
        bi = {r["iter"]: r for r in b}
        ratios = [r["pps"] / bi[r["iter"]]["pps"] for r in a
                  if r["iter"] in bi and bi[r["iter"]]["pps"]]
        row = [key[0], key[1]]
        for rs in (a, b):
            row += [fmt(med([r["pps"] / 1e3 for r in rs]), 1) if rs else "—",
                    fmt(med([r["gbps"] for r in rs]), 2) if rs else "—",
                    f"{sum(r['lost'] for r in rs):,} / {sum(r['corrupt'] for r in rs):,}" if rs else "—"]
        row.append(mmm(ratios))
        # Busy time per frame (bench-host.sh): what each device spent in
        # polls that found work, per frame; paired per round.
        def busy(rs, k):
            return med([r[k] for r in rs if r.get(k) is not None])
        an, bn = busy(a, "busy_ns_per_frame"), busy(b, "busy_ns_per_frame")
        nratios = [r["busy_ns_per_frame"] / bi[r["iter"]]["busy_ns_per_frame"] for r in a
                   if r.get("busy_ns_per_frame") and r["iter"] in bi and
                   bi[r["iter"]].get("busy_ns_per_frame")]
        ash, bsh = busy(a, "busy_share"), busy(b, "busy_share")
        bound = ("—" if ash is None or bsh is None else
                 "simulator" if ash < 0.5 and bsh < 0.5 else "device")
        pct = lambda v: "—" if v is None else f"{v * 100:.0f} %"
        row += [fmt(an, 0), fmt(bn, 0), mmm(nratios), f"{pct(ash)} / {pct(bsh)}", bound]
        rows.append(row)
    text = (f"memcpy: {fmt(host.get('memcpy_gbytes_per_s'))} GB/s.\n\n" +
            table(("IOMMU", "size (B)", "vhost-pci core kpkt/s", "Gbit/s", "lost / corrupt",
                   "DPDK vhost PMD kpkt/s", "Gbit/s", "lost / corrupt",
                   "core/PMD min / median / max", "core busy ns/frame", "PMD busy ns/frame",
                   "core/PMD busy min / median / max", "busy core / PMD", "rate set by"),
                  rows) +
            "\n\nBusy ns/frame: each device's time in polls that found work, per frame it "
            "took (the core: `vpci-hostdp`'s `busy_ns`; the PMD: testpmd "
            "`--record-core-cycles`, the cycles of bursts that received, at its TSC clock); "
            "lower is better, and it measures the device even where the simulator sets the "
            "rate. Busy: that time's share of the run; a row where both devices were busy "
            "less than half of it is simulator-bound (its packets/s say little about the "
            "devices). The two busy times are not the same instrument: hostdp times whole "
            "polling turns (its IOTLB work and notifications included), testpmd the receive "
            "and transmit bursts of its io forwarding.")
    return by, text


def core_section(core):
    if not core:
        return "not run."
    rows = []
    for b in core.get("benchmarks", []):
        if b.get("run_type") != "iteration":
            continue
        rows.append((f"`{b['name']}`", b.get("label", ""),
                     f"{b['real_time']:.1f} {b['time_unit']}",
                     fmt(b["items_per_second"] / 1e6, 2) if b.get("items_per_second") else "—",
                     fmt(b["bytes_per_second"] / 1e9, 2) if b.get("bytes_per_second") else "—"))
    note = ""
    if core.get("context", {}).get("library_build_type") == "debug":
        note = ("\n\n(Google Benchmark reports its own library as a debug build: that is "
                "Debian's `libbenchmark`; the code measured is built RelWithDebInfo.)")
    return table(("benchmark", "label", "time / iteration", "M items/s", "GB/s"), rows) + note


def insn_section(insn):
    if not insn:
        return "not run."
    rows = [(r["kind"], r["size"], r["iotlb"], f"{r['ir_per_frame']:.0f}",
             f"{r['memcpy_ir_per_frame']:.0f}",
             fmt(r["ir_per_frame"] / r["memcpy_ir_per_frame"], 1)) for r in insn["rows"]]
    return table(("direction", "frame bytes", "IOTLB", "instructions/frame", "memcpy alone",
                  "core/memcpy"), rows)


# ---------------------------------------------------------------- plots

def gnuplot(script, workdir):
    if not shutil.which("gnuplot"):
        print("bench-report: gnuplot missing (make deps): no plots", file=sys.stderr)
        return False
    r = subprocess.run(["gnuplot"], input=script, text=True, cwd=workdir,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode:
        print(f"bench-report: gnuplot failed: {r.stderr}", file=sys.stderr)
    return r.returncode == 0


def clustered(png, title, ylabel, panels, series, tmp, logy=False):
    """panels: [(title, [(xlabel, [values a series])])]; one PNG, side by side.
    None when there is nothing gnuplot could draw (it refuses a plot whose
    every point is undefined, e.g. a log scale over values that are all 0)."""
    vals = [v for _, rows in panels for _, vs in rows for v in vs if v is not None]
    if not any(v > 0 for v in vals) if logy else not vals:
        return None
    n = max(1, len(panels))
    lines = ["set terminal pngcairo size %d,420 font ',9'" % (420 * n + 60),
             f"set output '{png}'",
             "set style data histograms", "set style histogram clustered gap 1",
             "set style fill solid 0.85 border -1", "set boxwidth 0.9",
             "set key top right", "set grid ytics", "set xtics rotate by -30 nomirror",
             f"set ylabel '{ylabel}'", "set yrange [0:*]" if not logy else "set logscale y",
             f"set multiplot layout 1,{n} title '{title}'"]
    for i, (ptitle, rows) in enumerate(panels):
        dat = os.path.join(tmp, f"{os.path.basename(png)}.{i}.dat")
        with open(dat, "w") as f:
            for label, vals in rows:
                f.write('"%s" %s\n' % (label, " ".join(
                    "NaN" if v is None or (logy and v <= 0) else repr(v) for v in vals)))
        # A in purples, B in greens (p50 dark, p99 light where both).
        colors = (["#7b2cbf", "#1b9e77"] if len(series) == 2 else
                  ["#7b2cbf", "#c77dff", "#1b9e77", "#8fd9bf"])
        plots = ", ".join(f"'{dat}' using {j + 2}:xtic(1) title '{s}' lc rgb '{colors[j % 4]}'"
                          for j, s in enumerate(series))
        lines += [f"set title '{ptitle}'", f"plot {plots}"]
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def plots(vm, host_by, plotdir):
    os.makedirs(plotdir, exist_ok=True)
    made = {}
    with tempfile.TemporaryDirectory(prefix="vpci-bench-plot-") as tmp:
        def panel_rows(mode, fn):
            return [(f"{c[1]} B {DIR_LABEL.get(c[2], c[2]).replace('→', '>')}", fn(c))
                    for c in vm.cells() if c[0] == mode]
        mtitle = {"pt": "IOMMU passthrough", "strict": "IOMMU strict"}
        jobs = []
        if vm.tput:
            jobs.append(("vm-throughput.png", clustered(
                os.path.join(plotdir, "vm-throughput.png"),
                "VM to VM throughput (received packets/s, median of rounds)", "packets/s",
                [(mtitle.get(m, m), panel_rows(m, lambda c: [
                    med(vm.values(p, c, "pps")) for p in PATHS])) for m in vm.modes()],
                ["A: vhost-pci", f"B: {b_name()}"], tmp)))
            jobs.append(("vm-cpu.png", clustered(
                os.path.join(plotdir, "vm-cpu.png"),
                "Host CPU seconds per million packets: the switch (log scale)",
                "CPU s / Mpkt", [(mtitle.get(m, m), panel_rows(m, lambda c: [
                    med(vm.values(p, c, "switch_per_mpkt")) for p in PATHS]))
                    for m in vm.modes()],
                ["A: vpci-backend", "B: testpmd"], tmp, logy=True)))
        if vm.rtt:
            jobs.append(("vm-rtt.png", clustered(
                os.path.join(plotdir, "vm-rtt.png"),
                "UDP round trip (ms, median of rounds)", "ms",
                [(mtitle.get(m, m), panel_rows(m, lambda c: [
                    (lambda v: v / 1000 if v is not None else None)(
                        med(vm.latency(p, c, q)))
                    for p in PATHS for q in ("p50_us", "p99_us")])) for m in vm.modes()],
                ["A p50", "A p99", "B p50", "B p99"], tmp)))
        if host_by:
            order = {"off": 0, "transient": 1, "pool": 2}
            rows = [(f"{k[0]} {k[1]} B", [
                med([r["pps"] / 1e3 for r in host_by[k].get(p, [])]) if host_by[k].get(p) else None
                for p in ("vhost-pci-core", "dpdk-vhost-pmd")])
                for k in sorted(host_by, key=lambda k: (order.get(k[0], 9), k[1]))]
            jobs.append(("host.png", clustered(
                os.path.join(plotdir, "host.png"),
                "Host-only: simulated VM1, frames reflected (kpkt/s, median, log scale)",
                "kpkt/s", [("", rows)], ["vhost-pci core", "DPDK vhost PMD"], tmp, logy=True)))
        for name, script in jobs:
            if script is None:
                print(f"bench-report: {name}: no value to plot", file=sys.stderr)
                made[name] = False
                continue
            made[name] = gnuplot(script, tmp)
    return made


# ---------------------------------------------------------------- main

def ndr_text(vm):
    """The method paragraph of the NDR section, none when it was not measured."""
    if not vm.ndr:
        return ""
    recs = [n for runs in vm.ndr.values() for n in runs.values()]
    secs = sorted({n["seconds"] for n in recs if n["seconds"] is not None})
    return ("The zero-loss rate (NDR, the no-drop rate of RFC 2544 and DPDK's performance "
            "reports) is the highest paced offered rate, as the sender achieved it, at which "
            "the receiver got every datagram sent, found by a binary search over the rate "
            "(`vpci-traffic send --rate`, each probe " +
            (f"{'/'.join(f'{x:g}' for x in secs)} s" if secs else "?") + " against a fresh "
            "receiver). Packets/s, median over rounds; 0: no probe was lossless; \"failed\": "
            "the search did not finish. A/B is the median of the per-round ratios (rounds in "
            "which B had a non-zero NDR), its CI as in the headline. \"Unpaced\" is the same "
            "cell's throughput above (received packets/s, median), for comparison; the probes "
            "are those of all rounds.")


def report(args):
    outdir = args.outdir
    env = load_json(os.path.join(outdir, "env.json"))
    core = load_json(os.path.join(outdir, "core.json"))
    insn = load_json(os.path.join(outdir, "insn.json"))
    host = load_json(os.path.join(outdir, "host.json"))
    vm = VmResults(os.path.join(outdir, "vm", "results.jsonl"))
    # Guest instructions: from the matrix itself when it counted them
    # (BENCH_INSN=1), else from bench.sh's separate counting pass (one
    # round, its own boots), which leaves the matrix's timing alone.
    insn_pass = VmResults(os.path.join(outdir, "insn-pass", "vm", "results.jsonl"))
    insn_vm = vm if has_guest_insn(vm) else insn_pass if has_guest_insn(insn_pass) else None
    insn_where = ("over the same window as the throughput runs above (this run counted them: "
                  "`BENCH_INSN=1`, so its throughput understates A, whose switching is guest "
                  "code)" if insn_vm is vm else
                  f"in a separate pass after the matrix ({len(insn_pass.runs)} boots: "
                  "one round, every path, mode, size and direction, no zero-loss search, "
                  "`scripts/bench.sh`), so that the plugin slows none of the figures above; "
                  "the window is each unpaced throughput run of that pass")
    # A pass that ran and counted nothing is said, not left out.
    insn_missing = None
    if insn_vm is None and insn_pass.runs:
        insn_missing = (f"The counting pass ran ({len(insn_pass.runs)} boots, Runs below) but "
                        "recorded no counts: see `insn-pass/vm/*.log` in the run's directory.")
    elapsed = args.elapsed
    host_by, host_text = host_section(host)

    # Absolute: gnuplot runs in a temporary directory.
    plotdir = os.path.abspath(args.plots or os.path.join(outdir, "plots"))
    made = plots(vm, host_by, plotdir)
    docdir = os.path.dirname(os.path.abspath(args.doc)) if args.doc else outdir

    def img(name, alt):
        if not made.get(name):
            return ""
        rel = os.path.relpath(os.path.join(plotdir, name), docdir)
        return f"\n\n![{alt}]({rel})"

    rounds = sorted({r["round"] for r in vm.runs})
    extra = [t["window_extra"] for runs in vm.tput.values() for t in runs.values()
             if "window_extra" in t]
    window = (f"{min(extra):.1f} to {max(extra):.1f} s" if extra else "somewhat")
    seconds = sorted({round(t["send_seconds"]) for runs in vm.tput.values()
                      for t in runs.values()})
    parts = [
        "# Benchmarks" + (" with B-retry" if PATHS[1] == "dpdk-retry" else ""),
        ("Generated by `make bench-retry` (`scripts/bench.sh --retry`): the VM-to-VM matrix "
         "only, with path B as testpmd's io forwarding with retry; every number below is one "
         "the run printed. To reproduce: `make bench-retry` (it rewrites this file and "
         "`docs/bench-retry/*.png`; `make bench` writes [benchmarks.md](benchmarks.md), with "
         "plain io forwarding as B). "
         if PATHS[1] == "dpdk-retry" else
         "Generated by `make bench` (`scripts/bench.sh`); every number below is one the run "
         "printed. To reproduce: `make bench` on a Debian 12 host (it installs what is "
         "missing, builds, and rewrites this file and `docs/bench/*.png`); ") + "`make bench-smoke` "
        "(about 4 minutes) checks the same machinery on one short boot of each path. The guests run under QEMU TCG on a small "
        "shared machine, so absolute rates are those of emulated CPUs and vary between runs; "
        "the ratios between paths measured back to back are the result.",
        header(env, vm, elapsed),
        "What this measures, and what it does not:\n\n"
        "* **Measured:** guests under QEMU TCG (no KVM) on a 2-core machine that both guests, "
        "the switch and testpmd's polling lcore share. Packet rates are those of emulated "
        "CPUs: compare the paths within one run, never these rates with a KVM host's.\n"
        "* **Figures noise cannot move:** the driver core's instructions per frame "
        "(callgrind, below); nearly so, the guests' instructions per packet (TCG's count, from "
        "the counting round; they still follow batching). Compare those across commits. Packets/s, zero-loss rates, CPU seconds and "
        "round trips move with the machine's load: read their intervals and the host steal "
        "and load average of each boot (Runs).\n"
        "* **Not measured (they need a KVM machine with cores to spare):** absolute Mpps and "
        "Gbit/s, VM exits, kicks and interrupts per packet, DPDK with a dedicated core per "
        "port, and the device with KVM's irqfd and ioeventfd.",
        "## Headline",
        section_headline(vm) or "The VM-to-VM matrix did not run.",
        "## VM to VM: vhost-pci against DPDK",
        "* **A, vhost-pci**: VM1 virtio-net (behind intel-iommu) → `vpci-backend` (control "
        "plane only) → VM2's `vhost_pci_net` driver, which copies between VM1's rings and its "
        "own netdev (topology `selftests/topologies/vm1vm2.json`).\n"
        "* **B, DPDK**: the same VM1 → `dpdk-testpmd` with two vhost-user ports "
        "(`iommu-support=1`, " + B_PATHS[PATHS[1]] + ", ports paired, `--no-huge -m 1024`, the "
        "forwarding lcore on CPU 1) → VM2, an ordinary virtio-net guest " +
        ("behind intel-iommu in the same mode" if (env or {}).get("b_vm2_viommu")
         else "without a vIOMMU, as A's VM2 (the protection compared is VM1's)") +
        " (`selftests/topologies/vm1dpdkvm2.json`). Both paths' VM1 and B's VM2 use INTx "
        "(`vectors=0`: with MSI-X, QEMU 7.2 crashes under TCG when vhost-user starts); "
        "A's VM2 has MSI-X.\n"
        "* CPUs: " + (f"every guest's QEMU and the backend pinned to CPU {(env or {}).get('pin')} "
                      "(`BENCH_PIN`), testpmd's forwarding lcore alone on CPU 1: B needs a polling "
                      "core A leaves idle, and neither path's guests may use it."
                      if (env or {}).get("pin") else
                      "not pinned (`BENCH_PIN=`): the guests share both CPUs with testpmd's "
                      "busy-polling lcore, the CPU-starved variant.") + "\n"
        "* Both guests: Debian's kernel, 1 vCPU, 256 MiB. Traffic: `vpci-traffic` "
        "(UDP, sequence numbers, every payload byte checked), unpaced, batched `sendmmsg`, "
        f"{'/'.join(str(s) for s in seconds) or '?'} s a run; sizes are IP packet bytes "
        "(UDP payload = size − 28), Mbit/s counts IP bytes. Round trips: `vpci-traffic rtt` "
        "against `vpci-traffic echo`, one datagram in flight, 100 ms until one counts as lost, "
        "at most 6 s a run. "
        f"Rounds: {len(rounds)}; in each, A and B boot back to back for each IOMMU mode, "
        "in ABBA order over rounds (`scripts/bench-vm.sh`), and every size and direction runs "
        "inside one boot: the throughput runs and the zero-loss searches in an order drawn at "
        "random for each round (the same for A and B), the round trips in a fixed order.\n"
        "* Host CPU: seconds on a CPU of the switch's process (`vpci-backend` or "
        "`testpmd`, all threads) and of both QEMU processes (a guest's CPU under TCG), read "
        "from `/proc/PID/task/TID/schedstat` (nanoseconds) by the runner just before and "
        "just after each send. In this run the window was " + window + " longer than the "
        "traffic (the command round trip into the sending guest), which a busy-polling switch "
        "pays for and an idle one does not.",
        "Negotiated virtio features (what each guest's driver acked). Both paths have "
        "checksum offload; B also has TSO/UFO/ECN, which these datagrams (each within the "
        "MTU) do not use, and indirect descriptors. VM2's vhost-pci driver runs in its "
        "default interrupt mode.",
        section_setup(vm),
        "### Throughput",
        "Received packets/s (median over rounds) and the A/B ratio per round." +
        img("vm-throughput.png", "VM to VM throughput"),
        section_throughput(vm),
        "### Loss",
        "Sender's count minus receiver's count, summed over rounds. \"rcvbuf\": of those, "
        "dropped by the receiving socket (the receiving guest's application fell behind), "
        "the rest were lost on the path (B: testpmd drops when VM2's RX ring is full or a "
        "translation misses; A stops the sender's queue instead).",
        section_loss(vm),
        "### Zero-loss rate (NDR)",
        ndr_text(vm),
        section_ndr(vm),
        "### Host CPU",
        "The switch (A: `vpci-backend`, B: `testpmd`): % of one core over the window, and "
        "CPU seconds per million packets received; then CPU seconds per million packets of "
        "both guests' QEMU together (under TCG that is the guests' own work)." +
        img("vm-cpu.png", "CPU per packet"),
        section_cpu(vm),
        *(["### Guest instructions per packet",
            "Instructions each guest executed, counted " + (insn_where if insn_vm else "") +
            ", by the project's "
            "TCG plugin (`qemu/plugins/vpci_insn.c`, loaded into every guest's QEMU with "
            "`VPCI_QEMU_INSN=1`), per packet received" +
            ("; median over rounds" if insn_vm is vm else "") + ". Under TCG these move far "
            "less with the host's load than the CPU seconds above (they still follow batching: "
            "a guest that takes more packets per interrupt runs fewer instructions per packet); "
            "they include "
            "the guests' share of the measurement's own commands, spread over the packets. "
            "Guest code only: A's switching runs in VM2's kernel and is counted, B's switch "
            "(testpmd, native) is not (its cost is the switch CPU above). A `rep`-prefixed "
            "string instruction counts once per iteration (QEMU 7.2 re-enters the block), so "
            "copies count per byte moved. The window ends when the sender returns; packets "
            "still queued then are received after it, so figures lean low for the path with "
            "the deeper backlog.",
            section_guest_insn(insn_vm)] if insn_vm else
          ["### Guest instructions per packet", insn_missing] if insn_missing else []),
        "### Round-trip time",
        "Median over rounds of each run's p50 and p99 (of the runs that got any answer; "
        "\"—\": every round trip was lost); lost/sent summed." +
        img("vm-rtt.png", "Round-trip time"),
        section_rtt(vm),
        "### Targets",
        section_targets(vm),
        "### Runs",
        "One line a boot; a non-zero exit is a failed TAP test (traffic did not move, or a "
        "kernel splat on a console — under heavy host load TCG guests can report RCU stalls "
        "while booting) or a runner error. Records of a failed boot are still used. Host "
        "steal: CPU time, summed over the host's CPUs, that the hypervisor below this machine "
        "gave to something else during the boot (`/proc/stat`); load average: "
        "`/proc/loadavg` when the boot ended. A boot with steal or a load well above the "
        "guests' own is one the machine disturbed." +
        (f" {vm.bad_lines} result line(s) could not be used." if vm.bad_lines else ""),
        section_runs(vm),
        *(["The guest-instruction counting pass:", section_runs(insn_pass)]
          if insn_pass.runs else []),
        "## Host-only matrix",
        "`scripts/bench-host.sh` ([host-datapath.md](host-datapath.md)): the same simulated "
        "VM1 (`vpci-sim`) against the driver's ring and IOTLB core as a host back-end "
        "(`vpci-hostdp`, polling) and against `dpdk-testpmd`'s vhost PMD (io forwarding), both "
        "reflecting every frame, no VMs. Packets/s are frames back at the simulator (median "
        "of the rounds), sizes are frame bytes; IOMMU `off` is identity, `transient` maps every "
        "buffer for one use (mappings pushed; DPDK drops a frame on a miss), `pool` a static "
        "pool of about 1900 4 KiB pages; the ratio is core/PMD per round." +
        img("host.png", "Host-only matrix"),
        host_text,
        "## Driver core micro-benchmark",
        "`vpci-bench-core --benchmark_min_time=0.5`: the device side of a TX ring in userspace "
        "(`kernel/core_*.c`), IOTLB lookups, memcpy.",
        core_section(core),
        "## Driver core: instructions per frame",
        "`scripts/bench-insn.py` (callgrind, `vpci-insn-core`): the instructions the core "
        "(`kernel/core_net.c` over `core_vring.c` and `core_iotlb.c`, as the module runs them) "
        "executes per frame in bursts of 32, VM1's side excluded. *xmit* is VM2 sending "
        "(`vpci_net_rx()` into VM1's RX buffers), *recv* VM2 receiving (`vpci_net_tx_pop()` and "
        "`vpci_net_tx_read()`); IOTLB `identity` is one entry, `4k` 8192 entries of 4 KiB; "
        "memcpy alone copies the same bytes. Each figure is measured at N and 2N frames and "
        "must agree within 0.5 %: machine load cannot move these, so they are the ones to "
        "compare across commits.",
        insn_section(insn),
        "## Reproducing",
        "`make bench` runs `scripts/bench.sh build/bench`: the core micro-benchmark, "
        "`scripts/bench-host.sh` if present, `scripts/bench-vm.sh` (knobs: `BENCH_ROUNDS`, "
        "`BENCH_IOMMU`, `BENCH_SECONDS`, `BENCH_SIZES`, `BENCH_DIRS`, `BENCH_RTT`, "
        "`BENCH_PATHS`, `BENCH_NDR`, `BENCH_NDR_SECONDS`, `BENCH_NDR_STEPS`), then `scripts/bench-report.py report build/bench --doc "
        "docs/benchmarks.md --plots docs/bench`. Raw records stay in "
        "`build/bench/vm/results.jsonl`, each boot's log next to them. One boot by hand: "
        "`VPCI_BENCH_IOMMU=pt selftests/vm/run.py --topology vm1dpdkvm2 --var iommu=iommu=pt "
        "selftests/bench/vm2vm.sh`.",
    ]
    text = "\n\n".join(p for p in parts if p) + "\n"
    print(text)
    if args.doc:
        with open(args.doc, "w") as f:
            f.write(text)
    status = 0
    if args.require_traffic:
        for p in PATHS:
            recs = [t for k, runs in vm.tput.items() if k[0] == p for t in runs.values()]
            if not recs or any(t["received"] == 0 for t in recs):
                print(f"bench-report: path {p}: a run moved no traffic "
                      f"({len(recs)} throughput records)", file=sys.stderr)
                status = 1
            if not any(k[0] == p for k in vm.rtt):
                print(f"bench-report: path {p}: no round trips", file=sys.stderr)
                status = 1
        if not all(made.get(n) for n in ("vm-throughput.png", "vm-cpu.png", "vm-rtt.png")):
            print("bench-report: plots missing", file=sys.stderr)
            status = 1
    if args.require_ndr:
        cells = sorted({k[1:] for k in vm.tput}, key=str)
        if not cells:
            print("bench-report: --require-ndr: no throughput records", file=sys.stderr)
            status = 1
        for c in cells:
            recs = vm.ndr.get(("vhost-pci",) + c, {})
            vals = vm.ndr_values("vhost-pci", c)
            if not any(v > 0 for v in vals.values()):
                why = ("no ndr record" if not recs else "the search failed" if not vals else
                       "no lossless probe (ndr_pps 0)")
                print(f"bench-report: --require-ndr: path vhost-pci, IOMMU {c[0]}, {c[1]} B, "
                      f"{c[2]}: {why}", file=sys.stderr)
                status = 1
                continue
            # A pushes back instead of dropping: its NDR is near its unpaced
            # rate.  Far below it, the search ran in the wrong range (e.g.
            # from an unpaced rate it could not read): not a figure.
            unpaced = vm.values("vhost-pci", c, "pps")
            ndr = statistics.median(vals.values())
            if unpaced and ndr < 0.25 * statistics.median(unpaced):
                print(f"bench-report: --require-ndr: path vhost-pci, IOMMU {c[0]}, {c[1]} B, "
                      f"{c[2]}: NDR {ndr:.0f} pkt/s is below a quarter of the unpaced "
                      f"{statistics.median(unpaced):.0f}", file=sys.stderr)
                status = 1
    return status


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("env", help="record the machine into OUTDIR/env.json")
    e.add_argument("outdir")
    r = sub.add_parser("report", help="tables on stdout, the document and plots")
    r.add_argument("outdir")
    r.add_argument("--doc", help="write the document here (e.g. docs/benchmarks.md)")
    r.add_argument("--plots", help="PNG directory (default OUTDIR/plots)")
    r.add_argument("--elapsed", type=float, help="seconds the whole run took (for the header)")
    r.add_argument("--b-path", choices=sorted(B_PATHS), default="dpdk",
                   help="which DPDK path is B (dpdk-retry: testpmd io forwarding with retry)")
    r.add_argument("--require-traffic", action="store_true",
                   help="exit 1 unless both paths moved traffic in every run and the plots exist")
    r.add_argument("--require-ndr", action="store_true",
                   help="exit 1 unless every (IOMMU, size, direction) with throughput records "
                        "has a zero-loss rate above 0 for path A (vhost-pci)")
    args = ap.parse_args()
    if args.cmd == "env":
        capture_env(args.outdir)
        return 0
    global PATHS
    PATHS = ("vhost-pci", args.b_path)
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
