#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The vhost-pci QEMU device without a guest: QEMU's qtest accelerator.

This script plays the backend on the device's chardev socket (the protocol
of qemu/vhost-pci-protocol.h) and the guest through the qtest text protocol
on QEMU's stdin/stdout (PCI config space through ports 0xcf8/0xcfc, BAR
accesses with readl/writel/read/write).  It checks that BAR2 shows exactly
the windows mapped, with their permissions, that UNMAP_DONE comes and the
page is gone, that doorbells and vectors reach their eventfds, and that
every malformed message is refused with an ERROR while QEMU keeps
answering.  Output is TAP 13; exit 0 pass, 1 fail, 4 skip (no binary).

Usage: device_qtest.py [--qemu build/qemu/qemu-system-x86_64] [--timeout 120]
"""

import argparse
import array
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

REPO = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_QEMU = os.path.join(os.environ.get("VPCI_BUILD", os.path.join(REPO, "build")),
                            "qemu", "qemu-system-x86_64")

# qemu/vhost-pci-protocol.h
MSG = struct.Struct("<IIQQII")
HELLO, SET_VECTOR, SET_DOORBELL, MAP, UNMAP = 1, 2, 3, 4, 5
READY, MAP_DONE, UNMAP_DONE, ERROR = 0x81, 0x84, 0x85, 0xff
RO, WO, RW = 1, 2, 3
(E_TYPE, E_FDS, E_NO_HELLO, E_VERSION, E_HELLO, E_ALIGN, E_RANGE, E_CTRL,
 E_OVERLAP, E_LIMIT, E_PERM, E_VECTOR) = range(1, 13)
VENDOR, DEVICE = 0x1af4, 0x10f0
PAGE = 4096

FILE_SIZE = 1 << 20
CTRL_SIZE = 64 << 10
CTRL_OFF = FILE_SIZE - CTRL_SIZE
MAX_WINDOWS = 8
VECTORS = 4
BAR0, BAR1, BAR2 = 0xc0000000, 0xc0001000, 0x100000000
FILL = 0x5a                     # every file byte outside markers


class Fail(Exception):
    pass


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, detail=""):
        self.n += 1
        if cond:
            print(f"ok {self.n} {name}", flush=True)
        else:
            self.failed += 1
            print(f"not ok {self.n} {name}", flush=True)
            if detail:
                for line in str(detail).splitlines():
                    print(f"#   {line}", flush=True)
        return cond

    def diag(self, msg):
        print(f"# {msg}", flush=True)


class Qemu:
    """QEMU under qtest: commands on stdin, answers on stdout."""

    def __init__(self, argv, log_path, deadline):
        self.deadline = deadline
        self.log = open(log_path, "wb")
        remaining = max(1, int(deadline - time.monotonic()))
        self.p = subprocess.Popen(["timeout", "-s", "KILL", str(remaining + 5)] + argv,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self.log, start_new_session=True)
        self.buf = b""

    def alive(self):
        return self.p.poll() is None

    def _line(self, timeout=None):
        end = self.deadline if timeout is None else min(self.deadline, time.monotonic() + timeout)
        while b"\n" not in self.buf:
            left = end - time.monotonic()
            if left <= 0:
                raise Fail("qtest: timed out waiting for an answer")
            r, _, _ = select.select([self.p.stdout], [], [], min(left, 1.0))
            if not r:
                if not self.alive():
                    raise Fail(f"qtest: QEMU exited (rc {self.p.returncode})")
                continue
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise Fail("qtest: QEMU closed its stdout")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def cmd(self, text, timeout=None):
        self.p.stdin.write((text + "\n").encode())
        self.p.stdin.flush()
        while True:
            line = self._line(timeout)
            if line.startswith("IRQ"):
                continue   # asynchronous, not an answer
            if not line.startswith("OK"):
                raise Fail(f"qtest: '{text}' -> '{line}'")
            return line[3:].strip()

    def readl(self, addr):
        return int(self.cmd(f"readl {addr:#x}"), 16)

    def writel(self, addr, val):
        self.cmd(f"writel {addr:#x} {val:#x}")

    def readb_n(self, addr, n):
        return bytes.fromhex(self.cmd(f"read {addr:#x} {n:#x}")[2:])

    def write_bytes(self, addr, data):
        self.cmd(f"write {addr:#x} {len(data):#x} 0x{data.hex()}")

    def cfg_addr(self, slot, reg):
        return 0x80000000 | (slot << 11) | (reg & 0xfc)

    def cfg_readl(self, slot, reg):
        self.cmd(f"outl 0xcf8 {self.cfg_addr(slot, reg):#x}")
        return int(self.cmd("inl 0xcfc"), 16)

    def cfg_writel(self, slot, reg, val):
        self.cmd(f"outl 0xcf8 {self.cfg_addr(slot, reg):#x}")
        self.cmd(f"outl 0xcfc {val:#x}")

    def close(self):
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.log.close()


class Backend:
    """One connection of the device's chardev."""

    def __init__(self, conn, deadline):
        self.s = conn
        self.deadline = deadline
        self.seq = 100

    def send(self, mtype, arg=0, offset=0, size=0, seq=None, aux=0, fds=(), raw=None):
        if seq is None:
            self.seq += 1
            seq = self.seq
        data = raw if raw is not None else MSG.pack(mtype, arg, offset, size, seq, aux)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        self.s.sendmsg([data], anc)
        return seq

    def recv(self, timeout=10.0):
        data = b""
        end = min(self.deadline, time.monotonic() + timeout)
        while len(data) < MSG.size:
            left = end - time.monotonic()
            if left <= 0:
                raise Fail("backend: no reply from the device")
            r, _, _ = select.select([self.s], [], [], left)
            if not r:
                continue
            chunk = self.s.recv(MSG.size - len(data))
            if not chunk:
                raise Fail("backend: the device closed the connection")
            data += chunk
        t, arg, off, size, seq, aux = MSG.unpack(data)
        return {"type": t, "arg": arg, "offset": off, "size": size, "seq": seq, "aux": aux}

    def request(self, mtype, **kw):
        seq = self.send(mtype, **kw)
        r = self.recv()
        return seq, r


def accept(listener, qemu, deadline):
    while time.monotonic() < deadline:
        r, _, _ = select.select([listener], [], [], 0.5)
        if r:
            conn, _ = listener.accept()
            return conn
        if not qemu.alive():
            raise Fail(f"QEMU exited before connecting (rc {qemu.p.returncode})")
    raise Fail("QEMU did not connect to the backend socket")


def find_device(q):
    for slot in range(32):
        v = q.cfg_readl(slot, 0)
        if v == (DEVICE << 16 | VENDOR):
            return slot
    return None


def msix_layout(q, slot):
    """(table offset, PBA offset) in BAR1 from the MSI-X capability."""
    cap = q.cfg_readl(slot, 0x34) & 0xff
    while cap:
        hdr = q.cfg_readl(slot, cap)
        if hdr & 0xff == 0x11:
            table = q.cfg_readl(slot, cap + 4)
            pba = q.cfg_readl(slot, cap + 8)
            return cap, table & ~7, pba & ~7
        cap = (hdr >> 8) & 0xff
    raise Fail("no MSI-X capability")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qemu", default=DEFAULT_QEMU)
    ap.add_argument("--timeout", type=int, default=120)
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()

    print("TAP version 13", flush=True)
    if not os.access(args.qemu, os.X_OK):
        print(f"1..0 # SKIP {args.qemu} not built (make qemu)")
        return 4
    deadline = time.monotonic() + args.timeout
    tap = Tap()
    run = tempfile.mkdtemp(prefix="vpci-qtest-")
    qemu = None
    listener = None
    be = None
    try:
        mem = os.path.join(run, "vm1.mem")
        other = os.path.join(run, "other.mem")
        sock = os.path.join(run, "dev.sock")
        with open(mem, "wb") as f:
            f.write(bytes([FILL]) * FILE_SIZE)
        with open(other, "wb") as f:
            f.truncate(FILE_SIZE)
        memfd = os.open(mem, os.O_RDWR)

        def marker(page):
            return f"VM1-PAGE-{page:#x}-MARKER".encode()

        def file_bytes(off, n):
            return os.pread(memfd, n, off)

        for pg in range(0, CTRL_OFF, PAGE):
            os.pwrite(memfd, marker(pg), pg)
        os.pwrite(memfd, b"CTRL-AREA-HEADER", CTRL_OFF)

        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(sock)
        listener.listen(2)
        argv = [args.qemu, "-machine", "q35", "-accel", "qtest", "-qtest", "stdio",
                "-display", "none", "-nodefaults", "-monitor", "none", "-serial", "none",
                "-m", "64M", "-chardev", f"socket,id=be,path={sock},reconnect=1",
                "-device", f"vhost-pci,chardev=be,vectors={VECTORS},max-windows={MAX_WINDOWS}",
                "-trace", "vhost_pci_*"]
        # Debian's firmware directories (build/qemu's binary is configured
        # with them; a hand-built one may not be)
        for d in ("/usr/share/seabios", "/usr/share/qemu"):
            if os.path.isdir(d):
                argv += ["-L", d]
        qemu = Qemu(argv, os.path.join(run, "qemu.log"), deadline)
        be = Backend(accept(listener, qemu, deadline), deadline)

        # --- HELLO + READY (realize waits for it)
        hello_seq = be.send(HELLO, arg=1, offset=CTRL_OFF, size=FILE_SIZE, aux=7, fds=[memfd])
        r = be.recv()
        tap.ok(r["type"] == READY and r["seq"] == hello_seq and r["size"] == FILE_SIZE and
               r["offset"] == MAX_WINDOWS and r["aux"] == VECTORS, "HELLO answered by READY", r)

        # --- PCI identity and BARs (no firmware ran: assign them here)
        slot = find_device(q := qemu)
        if not tap.ok(slot is not None, "device 1af4:10f0 found on bus 0"):
            raise Fail("no device")
        q.cfg_writel(slot, 0x10, BAR0)
        q.cfg_writel(slot, 0x14, BAR1)
        q.cfg_writel(slot, 0x18, 0xffffffff)
        q.cfg_writel(slot, 0x1c, 0xffffffff)
        lo, hi = q.cfg_readl(slot, 0x18), q.cfg_readl(slot, 0x1c)
        bar2_size = ((~((hi << 32) | (lo & ~0xf))) & ((1 << 64) - 1)) + 1
        tap.ok(lo & 0xf == 0xc and bar2_size == FILE_SIZE,
               "BAR2 is 64-bit prefetchable and the file's size",
               f"flags {lo & 0xf:#x} size {bar2_size:#x}")
        q.cfg_writel(slot, 0x18, BAR2 & 0xffffffff)
        q.cfg_writel(slot, 0x1c, BAR2 >> 32)
        q.cfg_writel(slot, 0x04, 0x6)        # memory space + bus master
        tap.ok(q.readl(BAR0 + 8) == 7, "IVPosition is HELLO's id")

        # --- control area: always there, read/write
        tap.ok(q.readb_n(BAR2 + CTRL_OFF, 16) == b"CTRL-AREA-HEADER", "control area readable")
        q.write_bytes(BAR2 + CTRL_OFF + 64, b"driver-was-here")
        tap.ok(file_bytes(CTRL_OFF + 64, 15) == b"driver-was-here", "control area writable")

        # --- nothing else before a MAP
        def unmapped(off):
            return q.readb_n(BAR2 + off, 64) == b"\xff" * 64

        tap.ok(all(unmapped(off) for off in (0, 0x1000, 0x40000, CTRL_OFF - PAGE)),
               "unmapped BAR2 reads all-ones, not file bytes")
        q.writel(BAR2 + 0x3000, 0x11223344)
        tap.ok(file_bytes(0x3000, len(marker(0x3000))) == marker(0x3000),
               "write to unmapped BAR2 does not reach the file")

        # --- read/write window
        p_rw = 0x10000
        t0 = time.monotonic()
        seq, r = be.request(MAP, arg=RW, offset=p_rw, size=PAGE)
        map_ms = (time.monotonic() - t0) * 1000
        tap.ok(r["type"] == MAP_DONE and r["seq"] == seq and r["aux"] == 1, "MAP answered by MAP_DONE", r)
        tap.ok(q.readb_n(BAR2 + p_rw, len(marker(p_rw))) == marker(p_rw), "RW window shows the file's marker")
        q.write_bytes(BAR2 + p_rw + 0x100, b"written-by-vm2")
        tap.ok(file_bytes(p_rw + 0x100, 14) == b"written-by-vm2", "RW window write reaches the file")
        tap.ok(unmapped(p_rw + PAGE) and unmapped(p_rw - PAGE), "pages beside the window stay unmapped")

        # --- read-only window
        p_ro = 0x20000
        seq, r = be.request(MAP, arg=RO, offset=p_ro, size=PAGE)
        tap.ok(r["type"] == MAP_DONE and r["seq"] == seq, "MAP read-only answered", r)
        tap.ok(q.readb_n(BAR2 + p_ro, len(marker(p_ro))) == marker(p_ro), "RO window readable")
        q.writel(BAR2 + p_ro, 0xdeadbeef)
        q.write_bytes(BAR2 + p_ro + 8, b"\x00" * 16)
        tap.ok(file_bytes(p_ro, len(marker(p_ro))) == marker(p_ro) and
               q.readb_n(BAR2 + p_ro, len(marker(p_ro))) == marker(p_ro),
               "RO window ignores writes, file unchanged")

        # --- write-only window
        p_wo = 0x30000
        seq, r = be.request(MAP, arg=WO, offset=p_wo, size=PAGE)
        tap.ok(r["type"] == MAP_DONE, "MAP write-only answered", r)
        tap.ok(unmapped(p_wo), "WO window reads all-ones")
        q.writel(BAR2 + p_wo + 0x10, 0xcafef00d)
        tap.ok(file_bytes(p_wo + 0x10, 4) == struct.pack("<I", 0xcafef00d), "WO window write reaches the file")

        # --- coalescing: the next RW page joins the first window
        seq, r = be.request(MAP, arg=RW, offset=p_rw + PAGE, size=2 * PAGE)
        tap.ok(r["type"] == MAP_DONE and r["aux"] == 3, "adjacent same-permission MAP coalesces",
               f"windows after: {r['aux']}")
        tap.ok(q.readb_n(BAR2 + p_rw + PAGE, len(marker(p_rw + PAGE))) == marker(p_rw + PAGE),
               "coalesced window readable")

        # --- UNMAP the middle page of the coalesced window
        t0 = time.monotonic()
        seq, r = be.request(UNMAP, offset=p_rw + PAGE, size=PAGE)
        unmap_ms = (time.monotonic() - t0) * 1000
        tap.ok(r["type"] == UNMAP_DONE and r["seq"] == seq and r["aux"] == 4,
               "UNMAP answered by UNMAP_DONE (window split)", r)
        tap.ok(unmapped(p_rw + PAGE), "unmapped page no longer readable")
        tap.ok(q.readb_n(BAR2 + p_rw, len(marker(p_rw))) == marker(p_rw) and
               q.readb_n(BAR2 + p_rw + 2 * PAGE, len(marker(p_rw + 2 * PAGE))) ==
               marker(p_rw + 2 * PAGE), "both halves of the split window stay")

        # --- MAP the hole again: the halves and the page merge into one
        # window, which must write through to the file everywhere (the
        # simulator's miss-after-unmap does this with a 16 MiB window)
        seq, r = be.request(MAP, arg=RW, offset=p_rw + PAGE, size=PAGE)
        tap.ok(r["type"] == MAP_DONE and r["aux"] == 3, "MAP into the hole merges the split window",
               f"windows after: {r['aux']}")
        merged = (p_rw, p_rw + PAGE, p_rw + 2 * PAGE)
        for off in merged:
            q.writel(BAR2 + off + 0x20, 0x5eed0000 | off >> 12)
        tap.ok(all(file_bytes(off + 0x20, 4) == struct.pack("<I", 0x5eed0000 | off >> 12)
                   for off in merged), "writes through the merged window reach the file")
        tap.ok(all(q.readl(BAR2 + off + 0x20) == 0x5eed0000 | off >> 12 for off in merged),
               "and read back through BAR2")
        seq, r = be.request(UNMAP, offset=p_rw + PAGE, size=PAGE)
        tap.ok(r["type"] == UNMAP_DONE and r["aux"] == 4, "split again for what follows", r)
        seq, r = be.request(UNMAP, offset=0x80000, size=PAGE)
        tap.ok(r["type"] == UNMAP_DONE and r["seq"] == seq, "UNMAP of an unmapped range is answered")

        # --- latency (qtest: no vCPU runs guest code, the fence is one round trip)
        n = 200
        t0 = time.monotonic()
        for i in range(n):
            be.request(MAP, arg=RW, offset=0x50000, size=PAGE)
            be.request(UNMAP, offset=0x50000, size=PAGE)
        per = (time.monotonic() - t0) / n * 1e6
        tap.diag(f"first MAP {map_ms:.2f} ms, first UNMAP {unmap_ms:.2f} ms; "
                 f"MAP+UNMAP pair mean {per:.0f} us over {n} (qtest accel)")

        # --- doorbell: BAR0 Doorbell -> the backend's eventfd
        efd = os.eventfd(0, os.EFD_NONBLOCK)
        be.send(SET_DOORBELL, arg=2, fds=[efd])
        q.readl(BAR0)                        # the message is handled by now
        q.writel(BAR0 + 12, (0 << 16) | 2)
        r, _, _ = select.select([efd], [], [], 5)
        tap.ok(bool(r) and os.eventfd_read(efd) == 1, "doorbell vector 2 signals its eventfd")
        q.writel(BAR0 + 12, (5 << 16) | 2)   # unknown peer: dropped
        q.writel(BAR0 + 12, (0 << 16) | 200)  # no such vector: dropped
        r, _, _ = select.select([efd], [], [], 0.3)
        tap.ok(not r, "doorbells to another peer or vector are dropped")

        # --- own vector: eventfd -> MSI-X vector (pending while MSI-X is off)
        cap, table, pba = msix_layout(q, slot)
        vfd = os.eventfd(0, os.EFD_NONBLOCK)
        be.send(SET_VECTOR, arg=1, fds=[vfd])
        # An empty eventfd must not block QEMU's main loop (the chardev
        # hands fds over blocking)
        try:
            seq = be.send(UNMAP, offset=0x80000, size=PAGE)
            r = be.recv(timeout=5)       # handled after SET_VECTOR
            blocked = r["seq"] != seq
            q.cmd(f"readl {BAR0:#x}", timeout=5)
        except Fail:
            blocked = True
        tap.ok(not blocked, "SET_VECTOR with an empty eventfd keeps QEMU answering")
        if blocked:
            os.eventfd_write(vfd, 1)      # unblock it, drain the late reply
            be.recv()
            q.readl(BAR0)
        os.eventfd_write(vfd, 1)
        ok = False
        for _ in range(50):
            if q.readl(BAR1 + pba) & (1 << 1):
                ok = True
                break
            time.sleep(0.05)
        tap.ok(ok, "a write on the vector's eventfd raises MSI-X vector 1 (pending bit)")

        # --- malformed messages: each refused with ERROR, QEMU keeps answering
        efd2 = os.eventfd(0)
        bad = [
            ("unknown type", dict(mtype=0x42), E_TYPE),
            ("reply type sent to the device", dict(mtype=MAP_DONE), E_TYPE),
            ("MAP with an fd", dict(mtype=MAP, arg=RW, offset=0x60000, size=PAGE, fds=[efd2]), E_FDS),
            ("SET_VECTOR without an fd", dict(mtype=SET_VECTOR, arg=0), E_FDS),
            ("SET_VECTOR with two fds", dict(mtype=SET_VECTOR, arg=0, fds=[efd2, efd2]), E_FDS),
            ("MAP size 0", dict(mtype=MAP, arg=RW, offset=0x60000, size=0), E_ALIGN),
            ("MAP unaligned offset", dict(mtype=MAP, arg=RW, offset=0x60010, size=PAGE), E_ALIGN),
            ("MAP unaligned size", dict(mtype=MAP, arg=RW, offset=0x60000, size=100), E_ALIGN),
            ("MAP offset+size wraps", dict(mtype=MAP, arg=RW, offset=(1 << 64) - PAGE, size=2 * PAGE), E_RANGE),
            ("MAP beyond the file", dict(mtype=MAP, arg=RW, offset=FILE_SIZE, size=PAGE), E_RANGE),
            ("MAP over the control area", dict(mtype=MAP, arg=RW, offset=CTRL_OFF - PAGE, size=2 * PAGE), E_CTRL),
            ("UNMAP of the control area", dict(mtype=UNMAP, offset=CTRL_OFF, size=PAGE), E_CTRL),
            ("UNMAP unaligned", dict(mtype=UNMAP, offset=0x60000, size=10), E_ALIGN),
            ("MAP overlapping a window", dict(mtype=MAP, arg=RW, offset=p_ro, size=PAGE), E_OVERLAP),
            ("MAP overlapping a window's tail", dict(mtype=MAP, arg=RO, offset=p_rw - PAGE, size=2 * PAGE), E_OVERLAP),
            ("MAP with permission 0", dict(mtype=MAP, arg=0, offset=0x60000, size=PAGE), E_PERM),
            ("MAP with permission 7", dict(mtype=MAP, arg=7, offset=0x60000, size=PAGE), E_PERM),
            ("SET_VECTOR past vectors", dict(mtype=SET_VECTOR, arg=VECTORS, fds=[efd2]), E_VECTOR),
            ("SET_DOORBELL with a regular file", dict(mtype=SET_DOORBELL, arg=0, fds=[memfd]), E_VECTOR),
            ("HELLO repeated", dict(mtype=HELLO, arg=1, offset=CTRL_OFF, size=FILE_SIZE, fds=[memfd]), E_HELLO),
            ("HELLO of another version", dict(mtype=HELLO, arg=2, offset=CTRL_OFF, size=FILE_SIZE, fds=[memfd]), E_VERSION),
        ]
        for name, kw, code in bad:
            mtype = kw.pop("mtype")
            seq, r = be.request(mtype, **kw)
            tap.ok(r["type"] == ERROR and r["arg"] == code and r["seq"] == seq and r["aux"] == mtype,
                   f"refused: {name}", r)
        os.close(efd2)

        # window limit: MAX_WINDOWS non-adjacent windows, then one more
        r = None
        live = 4        # rw, rw-tail, ro, wo
        for i in range(MAX_WINDOWS - live):
            _, r = be.request(MAP, arg=RO, offset=0x80000 + 2 * i * PAGE, size=PAGE)
        tap.ok(r is not None and r["type"] == MAP_DONE and r["aux"] == MAX_WINDOWS,
               "MAP up to max-windows", r)
        seq, r = be.request(MAP, arg=RO, offset=0xc0000, size=PAGE)
        tap.ok(r["type"] == ERROR and r["arg"] == E_LIMIT, "MAP past max-windows refused", r)
        seq, r = be.request(MAP, arg=RO, offset=0x80000 + PAGE, size=PAGE)
        tap.ok(r["type"] == MAP_DONE and r["aux"] == MAX_WINDOWS - 1,
               "a MAP joining two windows is allowed at the limit", r)

        # a partial message, then the rest: still one message
        raw = MSG.pack(UNMAP, 0, 0x80000, PAGE, 4242, 0)
        be.s.send(raw[:10])
        time.sleep(0.1)
        be.s.send(raw[10:])
        r = be.recv()
        tap.ok(r["type"] == UNMAP_DONE and r["seq"] == 4242, "a message split across writes", r)

        tap.ok(qemu.alive() and q.readl(BAR0 + 8) == 7, "QEMU alive and answering after every refusal")

        # --- backend goes away: windows dropped, guest runs, reconnect
        be.s.close()
        be = Backend(accept(listener, qemu, deadline), deadline)
        tap.ok(unmapped(p_ro) and unmapped(p_rw), "backend disconnect drops every window")
        tap.ok(q.readb_n(BAR2 + CTRL_OFF, 16) == b"CTRL-AREA-HEADER", "control area stays mapped")
        seq, r = be.request(MAP, arg=RW, offset=p_rw, size=PAGE)
        tap.ok(r["type"] == ERROR and r["arg"] == E_NO_HELLO, "MAP before HELLO refused", r)
        ofd = os.open(other, os.O_RDWR)
        seq, r = be.request(HELLO, arg=1, offset=CTRL_OFF, size=FILE_SIZE, fds=[ofd])
        tap.ok(r["type"] == ERROR and r["arg"] == E_HELLO, "HELLO with another file refused", r)
        seq, r = be.request(HELLO, arg=1, offset=CTRL_OFF, size=FILE_SIZE * 2, fds=[memfd])
        tap.ok(r["type"] == ERROR and r["arg"] == E_HELLO, "HELLO with another size refused", r)
        os.close(ofd)
        seq, r = be.request(HELLO, arg=1, offset=CTRL_OFF, size=FILE_SIZE, fds=[memfd])
        tap.ok(r["type"] == READY and r["seq"] == seq, "HELLO again with the same file", r)
        seq, r = be.request(MAP, arg=RO, offset=p_ro, size=PAGE)
        tap.ok(r["type"] == MAP_DONE and q.readb_n(BAR2 + p_ro, len(marker(p_ro))) == marker(p_ro),
               "MAP works on the new connection", r)

        # garbage flood: 64 random messages, then a valid request still works
        rnd = os.urandom(64 * MSG.size)
        for i in range(64):
            be.s.send(rnd[i * MSG.size:(i + 1) * MSG.size])
        errors = 0
        seq = be.send(UNMAP, offset=p_ro, size=PAGE)
        while True:
            r = be.recv()
            if r["type"] == UNMAP_DONE and r["seq"] == seq:
                break
            errors += r["type"] == ERROR
        tap.ok(qemu.alive() and errors >= 60 and unmapped(p_ro),
               "64 random messages refused, the next request served", f"errors {errors}")
        tap.ok(file_bytes(p_ro, len(marker(p_ro))) == marker(p_ro), "the RO page never changed")

        # --- a bad first HELLO: realize fails cleanly (ERROR, exit 1, no abort)
        be.s.close()
        be = None
        qemu.close()
        for name, kw in (("size not a power of two", dict(size=3 << 20, offset=CTRL_OFF)),
                         ("control offset outside the file", dict(size=FILE_SIZE, offset=FILE_SIZE))):
            q2 = Qemu(argv, os.path.join(run, "qemu-bad-hello.log"), deadline)
            b2 = Backend(accept(listener, q2, deadline), deadline)
            b2.send(HELLO, arg=1, aux=7, fds=[memfd], **kw)
            r = b2.recv()
            try:
                rc = q2.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                rc = None
            b2.s.close()
            q2.close()
            with open(os.path.join(run, "qemu-bad-hello.log"), errors="replace") as f:
                err = f.read()
            tap.ok(r["type"] == ERROR and r["arg"] == E_HELLO and rc == 1 and
                   "HELLO refused" in err, f"first HELLO refused ({name}): ERROR, QEMU exits 1",
                   f"reply {r} rc {rc} log {err[-300:]}")
    except (Fail, OSError) as e:
        tap.ok(False, "test aborted", e)
    finally:
        if be:
            be.s.close()
        if qemu:
            qemu.close()
        if listener:
            listener.close()
        if tap.failed or args.keep:
            print(f"# run directory kept: {run}")
        else:
            subprocess.run(["rm", "-rf", run], check=False)
    print(f"1..{tap.n}")
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(main())
