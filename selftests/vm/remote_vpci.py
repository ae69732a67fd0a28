# SPDX-License-Identifier: GPL-2.0
"""
A remote endpoint of the project's own for the kernel's drivers/net
selftests (tools/testing/selftests/drivers/net/lib/py/remote.py loads
"remote_<REMOTE_TYPE>"): REMOTE_TYPE=vpci, REMOTE_ARGS=the other guest's
name (vm1).  Its commands run in that guest through the runner's host
channel, fd 3 of a test (selftests/vm/run.py, "vm NAME CMD"), several at
once: each request carries a tag its reply names, so a listener the test
left running in the other guest (bkg(..., host=remote)) does not hold up
the commands that follow it.

The kernel's test library uses what Remote.cmd() returns as a
subprocess.Popen: communicate(timeout), returncode, stdout/stderr that it
closes, terminate().  Both guests see the host's root at the same paths
(9p), so deploy() copies nothing (and refuses a guest's own tmpfs).
"""

import base64
import io
import os
import secrets
import shlex
import subprocess
import threading

# The host channel of the test that runs us (selftests/lib.sh, `host`).
CHANNEL_FD = 3


class _Channel:
    """fd 3, shared by every request in flight; a thread reads the replies."""

    _lock = threading.Lock()
    _inst = None

    @classmethod
    def get(cls):
        with cls._lock:
            if cls._inst is None:
                cls._inst = cls()
            return cls._inst

    def __init__(self):
        self._wlock = threading.Lock()
        self._pending = {}
        self._rx = os.fdopen(os.dup(CHANNEL_FD), "rb")
        threading.Thread(target=self._read, daemon=True).start()

    def request(self, guest, script, done):
        """Run @script in @guest; done(rc, output bytes) once it ended."""
        tag = secrets.token_hex(6)
        self._pending[tag] = done
        b64 = base64.b64encode(script.encode()).decode()
        line = f"@host #{tag} vm {guest} b64:{b64}\n".encode()
        with self._wlock:
            view = memoryview(line)
            while view:
                view = view[os.write(CHANNEL_FD, view):]

    def _read(self):
        try:
            for raw in self._rx:
                parts = raw.decode(errors="replace").split()
                # "@reply #TAG RC [BASE64]"; a line of anything else is not ours.
                if len(parts) < 3 or parts[0] != "@reply" or not parts[1].startswith("#"):
                    continue
                done = self._pending.pop(parts[1][1:], None)
                if done is None:
                    continue
                try:
                    out = base64.b64decode(parts[3]) if len(parts) > 3 else b""
                    rc = int(parts[2])
                except ValueError:
                    rc, out = 255, b"remote_vpci: bad reply: " + raw
                done(rc, out)
        finally:
            # The channel is gone: nothing pending will be answered.
            for done in list(self._pending.values()):
                done(255, b"remote_vpci: the host channel closed")
            self._pending.clear()


class _RemoteProc:
    """A command running in the other guest, as much of a Popen as needed."""

    def __init__(self, remote, comm):
        self.args = comm
        self.returncode = None
        self.stdout = self.stderr = None
        self._remote = remote
        self._ended = threading.Event()
        self._out = self._err = b""
        self._tok = secrets.token_hex(6)
        self._marker = f"@@vpci-stderr-{self._tok}@@"
        tmp = f"/tmp/vpci-remote-{self._tok}"
        # A session of its own, whose leader records its pid (the group
        # terminate() kills), stdin from /dev/null (the script itself comes
        # on the shell's stdin), no host channel, stderr apart from stdout
        # as a Popen with two pipes gives them.  VM1's timeout(1) stops
        # the wrapper: the trap takes the session with it.  The wrapper's
        # own messages (bash's "Terminated" notice) go nowhere.
        script = ("setsid -w bash -c 'echo $$ > \"$1\"; exec bash -c \"$2\"' "
                  f"_ {tmp}.pid {shlex.quote(comm)} </dev/null 2>{tmp}.err 3>&- &\n"
                  "pid=$!\n"
                  "exec 2>/dev/null\n"
                  f"trap 'kill -TERM -- -$(cat {tmp}.pid); exit 143' TERM\n"
                  "wait $pid\n"
                  "rc=$?\n"
                  f"printf '%s' {shlex.quote(self._marker)}\n"
                  f"cat {tmp}.err\n"
                  f"touch {tmp}.done\n"
                  f"rm -f {tmp}.err {tmp}.pid\n"
                  "exit $rc\n")
        _Channel.get().request(remote.name, script, self._done)

    def _done(self, rc, out):
        head, sep, tail = out.partition(self._marker.encode())
        if sep:
            self._out, self._err = head, tail
        else:
            # The wrapper did not get as far as its marker: all of it is
            # what went wrong.
            self._err = out
        self.returncode = rc
        self.stdout, self.stderr = io.BytesIO(self._out), io.BytesIO(self._err)
        self._ended.set()

    def poll(self):
        return self.returncode

    def wait(self, timeout=None):
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def communicate(self, input=None, timeout=None):
        # Popen's signature: the library's communicate(5) is input=5 and
        # waits without a limit, locally and here alike.
        if input is not None and not isinstance(input, int):
            raise ValueError("remote commands take no input")
        self.wait(timeout)
        return self._out, self._err

    def terminate(self):
        if self.returncode is None:
            tmp = f"/tmp/vpci-remote-{self._tok}"
            # Its own session, by the pid its leader recorded: the request
            # may still be on its way, so wait for the pid (or the end).
            _Channel.get().request(
                self._remote.name,
                f"for i in $(seq 200); do [ -e {tmp}.done ] && exit 0; "
                f"[ -s {tmp}.pid ] && exec kill -TERM -- -$(cat {tmp}.pid); "
                "sleep 0.05; done; exit 1",
                lambda rc, out: None)

    kill = terminate


class Remote:
    def __init__(self, name, dir_path):
        self.name = name
        self.dir_path = dir_path

    def cmd(self, comm):
        return _RemoteProc(self, comm)

    def deploy(self, what):
        # The other guest sees the host's root at the same paths; its
        # tmpfs (selftests/vm/initramfs-init) are its own.
        if not os.path.isabs(what):
            what = os.path.abspath(os.path.join(self.dir_path, what))
        if what.startswith(("/tmp/", "/run/", "/var/tmp/", "/var/log/")):
            raise ValueError(f"remote_vpci: {what} is on this guest's own tmpfs")
        return what
