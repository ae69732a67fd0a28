#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""
Unit test of selftests/vm/remote_vpci.py (ctest remote_vpci): the remote
class's commands against a stand-in for the runner and VM1 on fd 3 that
runs each request's script with bash, every one on its own thread, and
answers "@reply #TAG RC B64" as each ends.  Run with --child for the side
that uses the class (it needs the channel as its fd 3).
"""

import ast
import base64
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def child():
    spec = importlib.util.spec_from_file_location("remote_vpci",
                                                  os.path.join(HERE, "remote_vpci.py"))
    rv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rv)
    r = rv.Remote("vm1", "/opt/t")
    out = {}
    p = r.cmd("echo hi; echo err >&2; exit 3")
    out["split"] = [*map(bytes.decode, p.communicate(timeout=5)), p.returncode]
    t0 = time.monotonic()
    slow = r.cmd("sleep 5; echo late")
    quick = r.cmd("echo quick")
    out["quick"] = [quick.communicate(timeout=5)[0].decode(), round(time.monotonic() - t0, 1),
                    slow.poll()]
    out["slow"] = [slow.communicate(timeout=15)[0].decode(), slow.returncode]
    # At once: the kill may reach VM1 before the command started.
    k = r.cmd("sleep 30; echo never")
    k.terminate()
    out["terminated"] = [*map(bytes.decode, k.communicate(timeout=10)), k.returncode]
    # A session of its own: what the command started goes with it.
    k = r.cmd("sleep 30 & sleep 31; echo never")
    time.sleep(0.5)
    k.terminate()
    out["group"] = [k.communicate(timeout=10)[0].decode(), k.returncode,
                    subprocess.run(["pgrep", "-f", "^sleep 3[01]$"], capture_output=True).returncode]
    try:
        r.cmd("sleep 3").communicate(timeout=0.5)
        out["timeout"] = "none"
    except subprocess.TimeoutExpired:
        out["timeout"] = "TimeoutExpired"
    out["deploy"] = r.deploy("x.py")
    try:
        r.deploy("/tmp/x.py")
        out["deploy_tmp"] = "taken"
    except ValueError:
        out["deploy_tmp"] = "refused"
    print(repr(out), flush=True)


class RemoteVpci(unittest.TestCase):
    def test_commands(self):
        runner, chan = socket.socketpair()
        proc = subprocess.Popen([sys.executable, __file__, "--child"], stdout=subprocess.PIPE,
                                pass_fds=(3,), preexec_fn=lambda: os.dup2(chan.fileno(), 3))
        chan.close()
        lock = threading.Lock()
        bad = []

        def serve(tag, script):
            # As selftests/vm1/guest.sh runs it: one output, $(...)'s.
            r = subprocess.run(["bash", "-c", 'out=$(timeout 120 bash 2>&1 3>&-); rc=$?; '
                                'printf "%s" "$out"; exit $rc'],
                               input=script.encode(), capture_output=True, timeout=60)
            with lock:
                b64 = base64.b64encode(r.stdout).decode()
                runner.sendall(f"@reply #{tag} {r.returncode} {b64}\n".encode())

        def serve_all():
            for line in runner.makefile("rb"):
                parts = line.decode().split()
                if (len(parts) != 5 or parts[:1] != ["@host"] or not parts[1].startswith("#")
                        or parts[2:4] != ["vm", "vm1"] or not parts[4].startswith("b64:")):
                    bad.append(parts)
                    continue
                script = base64.b64decode(parts[4][4:]).decode()
                threading.Thread(target=serve, args=(parts[1][1:], script), daemon=True).start()

        threading.Thread(target=serve_all, daemon=True).start()
        out, _ = proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, 0)
        self.assertEqual(bad, [])
        got = ast.literal_eval(out.decode())  # the child's own repr()
        # (VM1's $(...) takes the last newline of the whole output)
        self.assertEqual(got["split"], ["hi\n", "err", 3])
        # Answered while the slow one still ran, not after it.
        self.assertEqual(got["quick"][0], "quick\n")
        self.assertLess(got["quick"][1], 4)
        self.assertIsNone(got["quick"][2])
        self.assertEqual(got["slow"], ["late\n", 0])
        # Killed by SIGTERM, and nothing of the wrapper's in either stream.
        self.assertEqual(got["terminated"], ["", "", 143])
        self.assertEqual(got["group"], ["", 143, 1])
        self.assertEqual(got["deploy_tmp"], "refused")
        self.assertEqual(got["timeout"], "TimeoutExpired")
        self.assertEqual(got["deploy"], "/opt/t/x.py")


    def test_host_helper_passes_over_a_stray_tagged_reply(self):
        # selftests/lib.sh's `host`: a tagged reply left over (a remote
        # request nobody waited for) must not be taken for its own answer.
        runner, chan = socket.socketpair()
        lib = os.path.join(HERE, "..", "lib.sh")
        proc = subprocess.Popen(["bash", "-c", f'source {lib}; host vpci-ctl status; '
                                 'echo "rc=$? out=$HOST_OUT"'],
                                stdout=subprocess.PIPE, pass_fds=(3,),
                                preexec_fn=lambda: os.dup2(chan.fileno(), 3))
        chan.close()
        self.assertEqual(runner.makefile("rb").readline(), b"@host vpci-ctl status\n")
        runner.sendall(b"@reply #0123abcd 0 " + base64.b64encode(b"stray") + b"\n")
        runner.sendall(b"@reply 7 " + base64.b64encode(b"mine") + b"\n")
        out, _ = proc.communicate(timeout=30)
        self.assertEqual(out.decode().strip(), "rc=7 out=mine")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        unittest.main()
