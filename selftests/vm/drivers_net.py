#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""
Run one of the kernel's drivers/net selftests (TEST.py, in tree under
build/linux-src-6.12) with the project's remote endpoint class available
as REMOTE_TYPE=vpci (selftests/vm/remote_vpci.py): registered as the
kernel library's module lib.py.remote_vpci, which its Remote() loader
imports, without writing into the kernel's tree.

Usage: drivers_net.py TEST.py [ARGS...]  (NETIF, LOCAL_V4, ... in the
environment, as the kernel's README.rst describes)
"""

import faulthandler
import importlib.util
import os
import runpy
import signal
import sys


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: drivers_net.py TEST.py [ARGS...]")
    test = os.path.abspath(sys.argv[1])
    # The library names the cases after argv[0] when it is imported.
    sys.argv = [test] + sys.argv[2:]
    sys.path.insert(0, os.path.dirname(test))
    # A test stopped by timeout(1) says where each thread was.
    faulthandler.register(signal.SIGTERM, all_threads=True, chain=True)
    import lib.py  # noqa: F401  the kernel's library, as the test imports it

    name = "lib.py.remote_vpci"
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(name, os.path.join(here, "remote_vpci.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)

    runpy.run_path(test, run_name="__main__")


if __name__ == "__main__":
    main()
