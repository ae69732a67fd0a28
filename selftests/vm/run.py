#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Run a guest-side script inside QEMU guests built from a topology.

A topology (selftests/topologies/*.json) lists host services (started
before QEMU, stopped after), files to create, and VMs with their devices.
The guest's root is the host's root over read-only virtio-9p (tmpfs on /tmp
and /run), so guests run every host tool and the freshly built module.

Each VM gets two serial ports: ttyS0 is the kernel console, written to
<run>/<vm>-console.log; ttyS1 carries the script's output (TAP) to this
runner and "@host <cmd>" requests back, answered "@reply <rc> <base64>".
The script's exit status arrives as "@exit <rc>".

Every process is started in its own session under a deadline and killed by
its own process group on every path.  Exit status: the script's (0 pass,
1 fail, 4 skip), 1 on timeout, on a kernel splat, or on a runner error.
"""

import argparse
import base64
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("VPCI_BUILD", os.path.join(REPO, "build"))
SPLAT = re.compile(r"\b(BUG:|WARNING:|Oops|Call Trace:|general protection fault|"
                   r"Kernel panic|UBSAN:|KASAN:)")
# Programs a guest may run on the host, and where they live.
HOST_PROGRAMS = {
    "vpci-ctl": os.path.join(BUILD, "userspace", "vpci-ctl"),
    "vpci-sim": os.path.join(BUILD, "userspace", "vpci-sim"),
}
# Seconds a host command may run: default, and the cap of "timeout=N".
HOST_TIMEOUT = 30
HOST_TIMEOUT_MAX = 600
# Bytes of a background job's output sent back by "host wait".
BG_REPLY_MAX = 64 << 10


class RunnerError(Exception):
    pass


def log(msg):
    print(f"# [runner] {msg}", flush=True)


def guest_kver(which):
    out = subprocess.run([os.path.join(REPO, "scripts", "guest-kver.sh")] +
                         ([which] if which else []),
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def build_initramfs(kver):
    """Busybox + the modules needed to mount the host root over virtio-9p,
    and virtio-iommu where the kernel has it as a module (6.12): a guest
    behind a virtio-iommu-pci waits for it before its devices probe."""
    out = os.path.join(BUILD, "vm", f"initramfs-{kver}.cpio.gz")
    init_src = os.path.join(REPO, "selftests", "vm", "initramfs-init")
    if (os.path.exists(out) and os.path.getmtime(out) > os.path.getmtime(init_src)
            and os.path.getmtime(out) > os.path.getmtime(__file__)):
        return out
    wanted = ["virtio_pci", "virtio_iommu", "9pnet_virtio", "9p"]
    have = subprocess.run(["modprobe", "--show-depends", "-S", kver, "virtio_iommu"],
                          capture_output=True, text=True).returncode == 0
    if not have:
        wanted.remove("virtio_iommu")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="vpci-initramfs-") as root:
        for d in ("bin", "proc", "sys", "dev", "newroot", "mod"):
            os.makedirs(os.path.join(root, d))
        shutil.copy("/bin/busybox", os.path.join(root, "bin", "busybox"))
        shutil.copy(init_src, os.path.join(root, "init"))
        os.chmod(os.path.join(root, "init"), 0o755)
        deps = subprocess.run(
            ["modprobe", "--show-depends", "-S", kver, "-a"] + wanted,
            check=True, capture_output=True, text=True).stdout
        order = []
        for line in deps.splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[0] != "insmod":
                continue
            src = parts[1]
            name = os.path.basename(src)
            dst = name
            for ext, tool in ((".xz", ["xz", "-dc"]), (".zst", ["zstd", "-dcq"])):
                if name.endswith(ext):
                    dst = name[:-len(ext)]
                    with open(os.path.join(root, "mod", dst), "wb") as f:
                        subprocess.run(tool + [src], check=True, stdout=f)
                    break
            else:
                shutil.copy(src, os.path.join(root, "mod", dst))
            if dst not in order:
                order.append(dst)
        with open(os.path.join(root, "mod", "order"), "w") as f:
            f.write("\n".join(order) + "\n")
        files = subprocess.run(["find", "."], cwd=root, check=True,
                               capture_output=True).stdout
        tmp = f"{out}.{os.getpid()}.tmp"  # runners may build it at once
        with open(tmp, "wb") as f:
            cpio = subprocess.Popen(["cpio", "-o", "-H", "newc", "--quiet"],
                                    cwd=root, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE)
            gz = subprocess.Popen(["gzip", "-1"], stdin=cpio.stdout, stdout=f)
            cpio.stdout.close()
            cpio.communicate(files)
            if gz.wait() or cpio.returncode:
                raise RunnerError("building the initramfs failed")
        os.rename(tmp, out)
    return out


class Proc:
    """A child in its own session, killed by process group on close()."""

    def __init__(self, name, argv, log_path, deadline):
        self.name = name
        self.waiters = []
        # timeout(1) is a second line of defence should this runner die:
        # 10 s after the run's deadline, so that the runner's own check
        # reports a run out of time as such (not as a guest gone away).
        remaining = max(1, int(deadline - time.monotonic())) + 10
        full = ["timeout", "-s", "TERM", "-k", "5", str(remaining)] + argv
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(full, stdin=subprocess.DEVNULL,
                                  stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

    def alive(self):
        return self.p.poll() is None

    def close(self, grace=5.0):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(grace)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        self.log.close()
        return self.p.returncode


def expand(obj, env):
    if isinstance(obj, str):
        return obj.format(**env)
    if isinstance(obj, list):
        return [expand(o, env) for o in obj]
    if isinstance(obj, dict):
        return {k: expand(v, env) for k, v in obj.items()}
    return obj


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMG]?)", str(s))
    if not m:
        raise RunnerError(f"bad size {s!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


class Asker:
    """Who a host request came from: a guest, and its request's tag if any."""

    def __init__(self, guest, tag=None):
        self.guest = guest
        self.name = guest.name
        self.tag = tag

    def reply(self, rc, out):
        self.guest.reply(rc, out, self.tag)


class Guest:
    """One VM: its QEMU process and its script channel."""

    def __init__(self, spec, env, kver, initramfs, deadline, script):
        self.name = spec["name"]
        self.run = env["run"]
        self.sock_path = os.path.join(self.run, f"{self.name}-tty.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.sock_path)
        self.listener.listen(1)
        self.conn = None
        self.buf = b""
        self.exit_code = None
        self.output = []
        self.bye_sent = False
        self.forwarded = {}
        genv = os.path.join(self.run, f"{self.name}.env")
        with open(genv, "w") as f:
            f.write(f"VPCI_REPO={shlex.quote(REPO)}\n")
            f.write(f"VPCI_BUILD={shlex.quote(BUILD)}\n")
            f.write(f"VPCI_RUN={shlex.quote(self.run)}\n")
            f.write(f"VPCI_VM={shlex.quote(self.name)}\n")
            f.write(f"VPCI_KVER={shlex.quote(kver)}\n")
            f.write(f"VPCI_SCRIPT={shlex.quote(script)}\n")
            for k, v in spec.get("env", {}).items():
                f.write(f"{k}={shlex.quote(str(v))}\n")
            # Knobs of demos, tests and benchmarks pass through from the host.
            for k, v in os.environ.items():
                if k.startswith(("VPCI_DEMO_", "VPCI_TEST_", "VPCI_BENCH_")):
                    f.write(f"{k}={shlex.quote(v)}\n")
        self.console = os.path.join(self.run, f"{self.name}-console.log")
        cmdline = ("console=ttyS0 panic=-1 loglevel=6 quiet_splash=0 "
                   "8250.nr_uarts=2 " + spec.get("cmdline", "") +
                   f" vpci_env={genv}")
        # A VM may name its QEMU ("qemu": "{build}/qemu/qemu-system-x86_64"
        # for the project's vhost-pci device); default: the host's.
        qemu = spec.get("qemu", "qemu-system-x86_64")
        if os.sep in qemu and not os.access(qemu, os.X_OK):
            raise RunnerError(f"{self.name}: {qemu} is not built (make qemu)")
        argv = [qemu, "-accel", "tcg", "-nodefaults",
                "-display", "none", "-no-reboot",
                "-machine", spec.get("machine", "q35"),
                "-cpu", spec.get("cpu", "max"),
                "-smp", str(spec.get("smp", 1)),
                "-m", spec.get("memory", "256M"),
                "-kernel", f"/boot/vmlinuz-{kver}", "-initrd", initramfs,
                "-append", cmdline,
                "-chardev", f"file,id=con,path={self.console}",
                "-serial", "chardev:con",
                "-chardev", f"socket,id=tty,path={self.sock_path}",
                "-serial", "chardev:tty",
                "-fsdev", "local,id=root,path=/,security_model=none,readonly=on",
                "-device", "virtio-9p-pci,fsdev=root,mount_tag=hostroot"]
        # VPCI_QEMU_INSN=1: the project's TCG plugin counts this guest's
        # instructions live into RUN/NAME.insn ("host cpu" reports them).
        self.insn_file = None
        if os.environ.get("VPCI_QEMU_INSN") == "1":
            plugin = os.path.join(BUILD, "qemu", "vpci-insn.so")
            if not os.access(plugin, os.R_OK):
                raise RunnerError(f"{plugin} is not built (make tcg-plugin)")
            self.insn_file = os.path.join(self.run, f"{self.name}.insn")
            argv += ["-plugin", f"{plugin},out={self.insn_file}"]
        for dev in spec.get("devices", []):
            # An entry whose arguments expanded to nothing is left out
            # (a topology variable set empty turns a device off).
            if all(a for a in dev):
                argv += dev
        with open(os.path.join(self.run, f"{self.name}.cmdline"), "w") as f:
            f.write(shlex.join(argv) + "\n")
        self.proc = Proc(self.name, pinned(argv),
                         os.path.join(self.run, f"{self.name}-qemu.log"), deadline)

    def fileno(self):
        return self.conn.fileno() if self.conn else self.listener.fileno()

    def on_readable(self, handle_host):
        if self.conn is None:
            self.conn, _ = self.listener.accept()
            return
        data = self.conn.recv(65536)
        if not data:
            raise RunnerError(f"{self.name}: script channel closed without @exit")
        self.buf += data
        while b"\n" in self.buf:
            raw, self.buf = self.buf.split(b"\n", 1)
            line = raw.decode(errors="replace").rstrip("\r")
            if line.startswith("@host "):
                # "@host #TAG CMD": a tagged request, answered with the tag
                # and possibly out of order (a guest with several requests
                # open at once, e.g. a remote class serving the kernel's
                # drivers/net tests); untagged ones are answered in turn.
                cmd, asker = line[6:], Asker(self)
                if re.match(r"#[A-Za-z0-9_-]+ ", cmd):
                    asker.tag, cmd = cmd[1:].split(" ", 1)
                r = handle_host(asker, cmd)
                if r is not None:   # None: answered later (forwarded to a VM)
                    asker.reply(*r)
            elif line.startswith("@done "):
                # A command forwarded to this VM finished: answer the asker.
                _, rid, rc, *b64 = line.split(" ")
                asker = self.forwarded.pop(rid, None)
                if asker:
                    asker.reply(int(rc), base64.b64decode(b64[0] if b64 else ""))
            elif line.startswith("@exit "):
                self.exit_code = int(line.split()[1])
            else:
                self.output.append(line)
                print(line, flush=True)

    def reply(self, rc, out, tag=None):
        reply = base64.b64encode(out).decode()
        tag = f"#{tag} " if tag else ""
        self.conn.sendall(f"@reply {tag}{rc} {reply}\n".encode())

    def forward(self, asker, rid, cmd):
        """Run @cmd in this VM (its script serves @run requests)."""
        if self.conn is None:
            asker.reply(125, f"{self.name} is not up yet\n".encode())
            return
        self.forwarded[rid] = asker
        with open(os.path.join(self.run, "host-commands.log"), "a") as f:
            f.write(f"[{asker.name}] -> {self.name}: {cmd}\n")
        b64 = base64.b64encode(cmd.encode()).decode()
        self.conn.sendall(f"@run {rid} {b64}\n".encode())

    def splats(self):
        try:
            with open(self.console, errors="replace") as f:
                return [l.rstrip() for l in f if SPLAT.search(l)]
        except FileNotFoundError:
            return []

    def close(self):
        rc = self.proc.close()
        for s in (self.conn, self.listener):
            if s:
                s.close()
        return rc


def tail(path, n):
    """The last n lines of a log, or [] when it is not there."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return []
    return [l.rstrip() for l in text.splitlines()[-n:]]


def post_mortem(guests, services):
    """What a failed run needs said in CI's own output (the run directory
    stays on the machine that ran it): for each guest whether its script
    ever spoke and the end of its kernel console, for each service the end
    of its log."""
    now = time.time()
    for g in guests:
        try:
            quiet = f", console silent for {now - os.stat(g.console).st_mtime:.0f} s"
        except OSError:
            quiet = ""
        state = ("script channel never connected" if g.conn is None else
                 f"script printed {len(g.output)} lines")
        print(f"# {g.name}: {state}{quiet}; end of its console:", flush=True)
        for l in tail(g.console, 15):
            print(f"#   {l}", flush=True)
    for s in services:
        print(f"# {s.name}: end of {os.path.basename(s.log_path)}:", flush=True)
        for l in tail(s.log_path, 8):
            print(f"#   {l}", flush=True)


def wait_for(ready, proc, deadline, what):
    """Until ready() is true; fail if proc exits first or at deadline."""
    while not ready():
        if not proc.alive():
            raise RunnerError(f"{what} exited early; see {proc.log_path}")
        if time.monotonic() > deadline:
            raise RunnerError(f"timed out waiting for {what}")
        time.sleep(0.05)


def log_has(path, pattern, start=0):
    """Whether the log matches pattern, from byte start on."""
    with open(path, "rb") as f:
        f.seek(start)
        return re.search(pattern, f.read().decode(errors="replace")) is not None


def pinned(argv, own=False):
    """argv under taskset when VPCI_PIN_CPUS names a CPU list (benchmarks
    on equal footing: every guest's QEMU and service on those CPUs), unless
    the process places its own threads (own=True, e.g. DPDK's lcores)."""
    cpus = os.environ.get("VPCI_PIN_CPUS", "")
    if not cpus or own:
        return argv
    if not re.fullmatch(r"[0-9]+([,-][0-9]+)*", cpus):
        raise RunnerError(f"VPCI_PIN_CPUS={cpus!r}: want a CPU list such as 0 or 0-1")
    return ["taskset", "-c", cpus] + argv


def insn_count(path):
    """A VM's instructions so far: the sum of the vpci-insn plugin's
    per-vCPU counters (u64, one every 64 bytes); None before it wrote."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if len(data) < 8:
        return None
    return sum(int.from_bytes(data[o:o + 8], "little")
               for o in range(0, len(data) - 7, 64))


def group_cpu_seconds(pgid):
    """CPU seconds of the live processes in process group pgid (all their
    threads; a runner child leads its own group), in nanoseconds' precision:
    each thread's time on a CPU from /proc/PID/task/TID/schedstat.  The
    clock-tick counters of /proc/PID/stat round a short run's backend to 0."""
    total_ns = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) != pgid:
            continue
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total_ns += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total_ns / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("script", help="guest-side script to run")
    ap.add_argument("--topology", help="topology name or JSON path "
                    "(default: the script's '# vpci-topology:' line, else vm2)")
    ap.add_argument("--kernel", default=os.environ.get("VPCI_GUEST_KERNEL", ""),
                    help="guest kernel: '' (Debian 6.1), '6.12', or a version")
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("VPCI_VM_TIMEOUT", 0)),
                    help="seconds for the whole run (default: the script's "
                    "'# vpci-timeout:' line, else 300)")
    ap.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                    help="override a topology variable (repeatable)")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()

    # timeout(1), make or CI stopping us: tear everything down on the way out.
    def on_signal(signum, _frame):
        raise RunnerError(f"stopped by signal {signal.Signals(signum).name}")
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    script = os.path.realpath(args.script)
    with open(script) as f:
        header = f.read()
    if not args.timeout:
        m = re.search(r"^# vpci-timeout:\s*(\d+)", header, re.M)
        args.timeout = int(m.group(1)) if m else 300
    deadline = time.monotonic() + args.timeout
    topo = args.topology
    if not topo:
        m = re.search(r"^# vpci-topology:\s*(\S+)", header, re.M)
        topo = m.group(1) if m else "vm2"
    if not topo.endswith(".json"):
        topo = os.path.join(REPO, "selftests", "topologies", topo + ".json")
    with open(topo) as f:
        topology = json.load(f)

    def resolve_kver(which):
        return which if re.match(r"^\d+\.\d+\.\d+-", which) else guest_kver(which)

    kver = resolve_kver(args.kernel)
    os.makedirs(os.path.join(BUILD, "vm"), exist_ok=True)
    run = tempfile.mkdtemp(prefix="run-", dir=os.path.join(BUILD, "vm"))
    env = {"run": run, "runid": os.path.basename(run), "build": BUILD, "repo": REPO}
    tvars = dict(topology.get("vars", {}))
    for kv in args.var:
        k, sep, v = kv.partition("=")
        if not sep or k not in tvars:
            print(f"not ok runner # --var {kv!r}: topology has no variable {k!r}", flush=True)
            return 1
        tvars[k] = v
    for k, v in tvars.items():
        env[k] = expand(v, env)
    log(f"topology {os.path.basename(topo)}, kernel {kver}, run dir {run}")

    services, guests = [], []
    bgjobs = {}
    status = 1
    try:
        initramfs = build_initramfs(kver)
        for fspec in expand(topology.get("files", []), env):
            with open(fspec["path"], "wb") as f:
                f.truncate(parse_size(fspec["size"]))
        for sspec in expand(topology.get("services", []), env):
            log(f"starting {sspec['name']}")
            p = Proc(sspec["name"], pinned(sspec["argv"], sspec.get("own_cpus", False)),
                     os.path.join(run, sspec["name"] + ".log"), deadline)
            services.append(p)
            if "ready_file" in sspec:
                wait_for(lambda: os.path.exists(sspec["ready_file"]), p, deadline,
                         sspec["name"])
            if "ready_pattern" in sspec:
                wait_for(lambda: log_has(p.log_path, sspec["ready_pattern"]), p, deadline,
                         sspec["name"])

        requests = iter(range(1, 1 << 30))

        def handle_host(asker, cmd):
            vm = asker.name
            argv = shlex.split(cmd)
            if len(argv) > 2 and argv[0] == "vm":
                # "vm NAME CMD...": run CMD inside another guest.
                target = next((g for g in guests if g.name == argv[1]), None)
                if target is None or target is asker.guest:
                    return 127, f"no other guest named {argv[1]}\n".encode()
                cmd = argv[2]
                if cmd.startswith("b64:") and len(argv) == 3:
                    cmd = base64.b64decode(cmd[4:]).decode(errors="replace")
                else:
                    cmd = shlex.join(argv[2:])
                target.forward(asker, str(next(requests)), cmd)
                return None
            # "[timeout=N] PROG ARGS": run PROG, answer when it exits;
            # "[timeout=N] bg NAME PROG ARGS": start it in the background;
            # "wait NAME": answer when that job exits (rc + output).
            limit = HOST_TIMEOUT
            if argv and argv[0].startswith("timeout="):
                try:
                    limit = min(HOST_TIMEOUT_MAX, max(1, int(argv[0][8:])))
                except ValueError:
                    return 2, f"bad {argv[0]}\n".encode()
                argv = argv[1:]
            if argv and argv[0] == "cpu":
                # "cpu [NAME...]": CPU seconds of services and guests
                # (their process groups) and the runner's monotonic clock.
                procs = {p.name: p for p in services + [g.proc for g in guests]}
                names = argv[1:] or list(procs)
                if any(n not in procs for n in names):
                    return 127, f"no service or guest among {names}\n".encode()
                out = {n: group_cpu_seconds(procs[n].p.pid) for n in names}
                out["wall"] = time.monotonic()
                insn = {g.name: insn_count(g.insn_file) for g in guests if g.insn_file}
                if insn:
                    out["insn"] = insn
                return 0, (json.dumps(out) + "\n").encode()
            if len(argv) == 2 and argv[0] == "running":
                # "running NAME": 0 while the job runs, 1 once it ended
                # (then "wait NAME" answers at once): a guest can look at
                # its own state while a host job is still in progress.
                job = bgjobs.get(argv[1])
                if job is None:
                    return 127, f"no background job {argv[1]}\n".encode()
                return (0 if job.p.poll() is None else 1), b""
            if len(argv) == 2 and argv[0] == "wait":
                job = bgjobs.get(argv[1])
                if job is None:
                    return 127, f"no background job {argv[1]}\n".encode()
                job.waiters.append(asker)
                return None         # answered by reap_bg()
            bg = None
            if len(argv) > 2 and argv[0] == "bg":
                bg, argv = argv[1], argv[2:]
                if not re.fullmatch(r"[A-Za-z0-9_.-]+", bg) or bg in bgjobs:
                    return 2, f"bad or duplicate job name {bg!r}\n".encode()
            if not argv or argv[0] not in HOST_PROGRAMS:
                return 127, f"host command not allowed: {cmd}\n".encode()
            argv = [HOST_PROGRAMS[argv[0]]] + expand(argv[1:], env)
            with open(os.path.join(run, "host-commands.log"), "a") as f:
                f.write(f"[{vm}] {'bg ' + bg + ' ' if bg else ''}"
                        f"{shlex.join(argv)} (limit {limit}s)\n")
            if bg:
                # Own session under timeout(1), killed by process group at
                # the end of the run on every path.
                bgjobs[bg] = Proc(bg, argv, os.path.join(run, f"bg-{bg}.log"),
                                  min(deadline, time.monotonic() + limit))
                return 0, f"started {bg}\n".encode()
            try:
                r = subprocess.run(argv, capture_output=True, timeout=limit,
                                   stdin=subprocess.DEVNULL)
            except subprocess.TimeoutExpired as e:
                # Keep what it printed: a hang must be explainable.
                partial = (e.stdout or b"") + (e.stderr or b"")
                with open(os.path.join(run, "host-commands.log"), "a") as f:
                    f.write(f"[{vm}] {shlex.join(argv)} -> timed out after {limit}s\n")
                    f.write(partial[-4096:].decode(errors="replace"))
                return 124, partial[-4096:] + b"host command timed out\n"
            with open(os.path.join(run, "host-commands.log"), "a") as f:
                f.write(f"[{vm}] {shlex.join(argv)} -> {r.returncode}\n")
            return r.returncode, r.stdout + r.stderr

        def reap_bg():
            """Answer "host wait" for background jobs that have exited."""
            for name, job in bgjobs.items():
                if not job.waiters or job.alive():
                    continue
                job.log.flush()
                with open(job.log_path, "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - BG_REPLY_MAX))
                    out = f.read()
                with open(os.path.join(run, "host-commands.log"), "a") as f:
                    f.write(f"bg {name} -> {job.p.returncode}\n")
                for g in job.waiters:
                    g.reply(job.p.returncode, out)
                job.waiters = []

        initramfs_of = {kver: initramfs}
        for vspec in expand(topology["vms"], env):
            gscript = script if vspec.get("test", True) else vspec.get("script", "")
            # A VM's own "kernel" ('6.1', '6.12' or a version; empty: the
            # run's) lets two guests run different kernels.
            want = vspec.get("kernel", "")
            vkver = kver if not want else resolve_kver("" if want == "6.1" else want)
            if vkver not in initramfs_of:
                initramfs_of[vkver] = build_initramfs(vkver)
            log(f"booting {vspec['name']} (QEMU TCG, about 10 s)" +
                (f", kernel {vkver}" if vkver != kver else ""))
            guests.append(Guest(vspec, env, vkver, initramfs_of[vkver], deadline, gscript))
        tested = [g for g, v in zip(guests, topology["vms"]) if v.get("test", True)]

        sel = selectors.DefaultSelector()
        for g in guests:
            sel.register(g.listener, selectors.EVENT_READ, g)
        # Where each service's log stood when the first tested guest
        # reported its exit, before it powers off (it waits for "@bye"):
        # the vpci-after-log checks look only at what came after.
        log_at = {}
        while any(g.exit_code is None for g in tested):
            if time.monotonic() > deadline:
                raise RunnerError(f"timed out after {args.timeout}s")
            for g in guests:
                if not g.proc.alive() and g.exit_code is None:
                    raise RunnerError(f"{g.name}: QEMU exited (rc {g.proc.p.returncode}) "
                                      f"before the script finished; see {g.proc.log_path} "
                                      f"and {g.console}")
            for s in services:
                if not s.alive():
                    raise RunnerError(f"service {s.name} died; see {s.log_path}")
            reap_bg()
            waiting = any(j.waiters for j in bgjobs.values())
            for key, _ in sel.select(timeout=0.1 if waiting else 0.5):
                g = key.data
                was_listening = g.conn is None
                g.on_readable(handle_host)
                if g.exit_code is not None and not g.bye_sent:
                    for sv in services:
                        log_at.setdefault(sv.name, os.path.getsize(sv.log_path))
                    g.bye_sent = True
                    try:
                        g.conn.sendall(b"@bye\n")
                    except OSError:
                        pass    # gone already: it powers off anyway
                if was_listening and g.conn is not None:
                    sel.unregister(g.listener)
                    sel.register(g.conn, selectors.EVENT_READ, g)
        status = max(g.exit_code for g in tested)
        # Guests that only serve others (VM1's command loop) are told to
        # stop, and answered the "@exit" they report next at once (the
        # logs' sizes are noted already); then let all power off so their
        # consoles are complete.
        for g in guests:
            if g not in tested and g.conn is not None:
                try:
                    g.conn.sendall(b"@quit\n@bye\n")
                except OSError:
                    pass
        end = min(deadline, time.monotonic() + 30)
        while any(g.proc.alive() for g in guests) and time.monotonic() < end:
            time.sleep(0.1)
        # "# vpci-after-log: SERVICE REGEX": what a guest's power-off must
        # leave in a service's log (the driver's .shutdown, seen by the
        # backend); a few seconds for the service to get there.
        # Only for a run that passed and whose guests all powered off (a
        # skip or a failure keeps its own status).
        checks = re.findall(r"^# vpci-after-log:\s*(\S+)\s+(.+?)\s*$", header, re.M)
        if checks and status == 0 and any(g.proc.alive() for g in guests):
            print("not ok runner # a guest did not power off within 30 s", flush=True)
            status = 1
        for name, pattern in checks if status == 0 else []:
            svc = next((p for p in services if p.name == name), None)
            if svc is None:
                raise RunnerError(f"vpci-after-log: no service {name}")
            until = time.monotonic() + 5
            while (not log_has(svc.log_path, pattern, log_at[name]) and
                   time.monotonic() < until):
                time.sleep(0.1)
            if log_has(svc.log_path, pattern, log_at[name]):
                print(f"# [runner] after power-off, {name}'s log has /{pattern}/", flush=True)
            else:
                print(f"not ok runner # after power-off, {name}'s log has no new line "
                      f"matching /{pattern}/", flush=True)
                status = 1
    except (RunnerError, OSError, subprocess.CalledProcessError) as e:
        print(f"not ok runner # {e}", flush=True)
        status = 1
        post_mortem(guests, services)
    finally:
        for j in bgjobs.values():
            j.close()
        for g in guests:
            g.close()
        for s in reversed(services):
            s.close()
    for g in guests:
        bad = g.splats()
        if bad:
            print(f"# {g.name}: kernel splat on the console:", flush=True)
            for l in bad[:20]:
                print(f"#   {l}", flush=True)
            status = 1
    if status not in (0, 4) or args.keep:
        log(f"logs kept in {run}")
    else:
        shutil.rmtree(run, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
