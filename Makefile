# SPDX-License-Identifier: GPL-2.0
#
# vhost-pci top-level build.  The two commands the README names:
#   make demo    boot VM2 with the backend and show the interface
#   make check   every test: unit tests, then selftests inside QEMU guests
#
# Everything is built under build/.  KVER selects the guest kernel (default:
# the one Debian's linux-image-amd64 depends on); KDIR overrides its headers.

SHELL      := /bin/bash
REPO       := $(CURDIR)
BUILD      := $(REPO)/build
KVER       ?= $(shell $(REPO)/scripts/guest-kver.sh 2>/dev/null)
KDIR       ?= /usr/src/linux-headers-$(KVER)
KBUILD_OUT := $(BUILD)/kernel/$(KVER)
KO         := $(KBUILD_OUT)/vhost_pci_net.ko
US_BUILD   := $(BUILD)/userspace
JOBS       ?= $(shell nproc)
# sim/traffic.sh: every mode with identity mappings (100k frames each way
# per run), and the transient policy (each buffer mapped before it is posted
# and unmapped after use: two misses per frame) in interrupt mode and across
# mode switches, 20k frames each way (TCG serves about 600 misses/s); and
# with two vCPUs in VM2 (smp=2), identity mappings, 30k frames in three
# modes (the transient policy with two vCPUs is not clean yet: see
# docs/datapath.md, "Known problems").
# VM1 in lazy IOMMU mode needs caching-mode=on on QEMU 7.2's intel-iommu,
# or translations go stale (docs/datapath.md, "VM1's IOMMU modes").
VIOMMU_LAZY := intel-iommu,intremap=off,device-iotlb=on,caching-mode=on
SELFTESTS  ?= vm2/basic.sh vm2/basic.sh:queues=2:vectors=5 vm2/ctrl_area.sh vm2/netlink.sh vm2/genl.sh e2e/vm1_rings.sh e2e/ping.sh e2e/ping.sh:iommu=iommu=pt e2e/ping.sh:iommu=iommu.strict=0:viommu=$(VIOMMU_LAZY) e2e/ping.sh:viommu=:viommu_cmdline=:iommu=:iommu_platform=off e2e/modes.sh e2e/lifecycle.sh e2e/traffic.sh e2e/multiqueue.sh:queues=4:vectors=9:vm1_mq=on:vm2_smp=2 e2e/control.sh e2e/packet.sh sim/traffic.sh sim/traffic.sh:policy=transient:modes=interrupt,switch:frames=20000 sim/traffic.sh:smp=2:modes=interrupt,poll,hybrid:frames=30000 sim/faults.sh sim/faults.sh:policy=transient sim/early_ack.sh sim/reconnect.sh sim/rx_buffers.sh sim/gso.sh sim/multiqueue.sh:queues=4:vectors=9:smp=2 sim/iotlb.sh sim/iotlb_evict.sh sim/ro_window.sh
# The same suites with VM2 on the project's vhost-pci QEMU device (make qemu):
# ping in every IOMMU mode, the hostile-VM2 scan (and its ivshmem contrast),
# simulator traffic, faults, read-only windows and TSO (13 entries; 9 min 14 s
# measured with 10).
SELFTESTS_DEV ?= e2e/ping.sh:topology=vm1vm2-dev e2e/ping.sh:topology=vm1vm2-dev:iommu=iommu=pt e2e/ping.sh:topology=vm1vm2-dev:viommu=:viommu_cmdline=:iommu=:iommu_platform=off e2e/hostile_bar.sh e2e/hostile_bar.sh:topology=vm1vm2 e2e/lifecycle.sh:topology=vm1vm2-dev e2e/traffic.sh:topology=vm1vm2-dev e2e/control.sh:topology=vm1vm2-dev sim/traffic.sh:topology=vm2sim-dev:modes=interrupt,poll:frames=20000 sim/faults.sh:topology=vm2sim-dev sim/early_ack.sh:topology=vm2sim-dev sim/ro_window.sh:topology=vm2sim-dev sim/gso.sh:topology=vm2sim-dev
# The same driver on Debian's 6.12 LTS guest kernel (14 entries, 4 min 41 s with 9): the single-VM
# tests, TSO against the simulator, the packet-socket test, ping between two 6.12 guests with VM1 behind intel-iommu and
# behind virtio-iommu (6.12 has virtio_iommu; 6.1 does not), both strict,
# and behind virtio-iommu in passthrough (iommu.passthrough=1),
# iperf3/vpci-traffic behind virtio-iommu strict and in passthrough, and ping between a 6.12
# and a 6.1 guest both ways round (VM2 on 6.1 needs the 6.1 module too).
KVER_612   ?= $(shell $(REPO)/scripts/guest-kver.sh 6.12 2>/dev/null)
SELFTESTS_612 ?= vm2/basic.sh vm2/ctrl_area.sh vm2/netlink.sh vm2/genl.sh e2e/drivers_net.sh sim/gso.sh e2e/ping.sh e2e/packet.sh e2e/ping.sh:viommu=virtio-iommu-pci:viommu_cmdline=:iommu_platform=on e2e/traffic.sh:viommu=virtio-iommu-pci:viommu_cmdline=:iommu_platform=on e2e/ping.sh:viommu=virtio-iommu-pci:viommu_cmdline=:iommu_platform=on:iommu=iommu.passthrough=1 e2e/traffic.sh:viommu=virtio-iommu-pci:viommu_cmdline=:iommu_platform=on:iommu=iommu.passthrough=1 e2e/ping.sh:vm2_kernel=6.1 e2e/ping.sh:vm1_kernel=6.1
# make install: module into /lib/modules/KVER/updates, tools into PREFIX/bin
PREFIX     ?= /usr/local
DESTDIR    ?=

export VPCI_BUILD := $(BUILD)

.PHONY: ynl all deps module module-612 userspace unit unit-sanitize unit-tsan fuzz bench bench-retry bench-insn bench-smoke bench-tcp tcg-plugin selftests selftests-612 \
	check demo style clean help install install-test dkms-install qemu qemu-test selftests-dev

all: module userspace

help:
	@echo "make demo       two VMs over vhost-pci: ping, iperf3 both ways (IOMMU=strict|lazy|pt TIME=5 MODE=interrupt|poll|hybrid DEVICE=vhost-pci|ivshmem)"
	@echo "make check      install deps, build, unit tests, in-guest selftests"
	@echo "make deps       install the Debian packages (scripts/debian-packages.txt)"
	@echo "make module     build vhost_pci_net.ko for KVER=$(KVER) (W=1, warnings fail)"
	@echo "make userspace  build the C++ backend, tools and tests"
	@echo "make unit       run the userspace unit tests (ctest)"
	@echo "make unit-sanitize  the unit tests built with ASan and UBSan (part of check)"
	@echo "make unit-tsan   hostdp's tests against a TSan build of it (part of check)"
	@echo "make qemu       Debian's QEMU 7.2 + the vhost-pci device -> build/qemu/ (cached)"
	@echo "make qemu-test  the vhost-pci device under qtest, no guest (TAP)"
	@echo "make selftests-dev  SELFTESTS_DEV with VM2 on the vhost-pci QEMU device"
	@echo "make selftests  run SELFTESTS inside QEMU guests"
	@echo "make selftests-612  run SELFTESTS_612 on the 6.12 guest kernel"
	@echo "make install    module (KVER) + depmod, tools to PREFIX/bin, systemd unit (DESTDIR=)"
	@echo "make dkms-install  register the module source with DKMS (root)"
	@echo "make style      checkpatch on the kernel sources"
	@echo "make fuzz       fuzz the driver core, the vhost-user session, the control socket (FUZZ_SECONDS=20)"
	@echo "make bench      core micro-benchmark, host-only and VM-to-VM (vs DPDK) matrices -> docs/benchmarks.md"
	@echo "make bench-insn   the driver core's instructions per frame (callgrind)"
	@echo "make bench-smoke  one short VM-to-VM boot per path, report into build/bench-smoke"
	@echo "make bench-tcp    iperf3 TCP between the guests: TSO on/off, 1/2/4 pairs, pt and strict"
	@echo "make tcg-plugin   the guest-instruction counter the VM benchmarks load (build/qemu/vpci-insn.so)"

# Idempotent, fast when nothing is missing.
deps:
	@$(REPO)/scripts/deps.sh

# Out of tree, in a per-kernel copy so 6.1 and 6.12 builds do not collide.
# W=1 must be warning-free: any "warning:" fails the build.
module: deps
	@test -n "$(KVER)" || { echo "no guest kernel found (make deps)"; exit 1; }
	@mkdir -p $(KBUILD_OUT)
	@cp -u $(REPO)/kernel/*.c $(REPO)/kernel/*.h $(REPO)/kernel/Kbuild $(KBUILD_OUT)/
	@set -o pipefail; $(MAKE) -C $(KDIR) M=$(KBUILD_OUT) VPCI_UAPI=$(REPO)/uapi W=1 modules 2>&1 \
		| tee $(KBUILD_OUT)/build.log
	@! grep -E 'warning:|error:' $(KBUILD_OUT)/build.log

userspace: deps
	@cmake -S $(REPO)/userspace -B $(US_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(US_BUILD) -j$(JOBS)

unit: userspace
	@ctest --test-dir $(US_BUILD) --output-on-failure -j$(JOBS)

# The unit tests again, built with ASan and UBSan: the driver core, the
# daemon, vhost-user, the simulator (vpci-tests and the binaries it runs;
# hostdp's busy-polling pair stays in `unit` and `unit-tsan`).  vptr is left out: with no fd
# free (BackendTest.AcceptFailure...) its check cannot read /proc and
# reports a false error.
SAN_FLAGS := -O1 -fsanitize=address,undefined -fno-sanitize=vptr \
	-fno-sanitize-recover=all -fno-omit-frame-pointer
unit-sanitize: deps
	@cmake -S $(REPO)/userspace -B $(BUILD)/userspace-san -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_FLAGS="$(SAN_FLAGS)" -DCMAKE_CXX_FLAGS="$(SAN_FLAGS)" \
		-DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
	@cmake --build $(BUILD)/userspace-san -j$(JOBS) --target vpci-tests
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
		$(BUILD)/userspace-san/vpci-tests --gtest_brief=1

# hostdp's two threads (control and polling, one dp_lock) under TSan: the
# hostdp tests against a TSan build of vpci-hostdp (and vpci-sim).  A race
# report makes vpci-hostdp exit 66 instead of 0, which its tests check.
TSAN_FLAGS := -O1 -g -fsanitize=thread -fno-omit-frame-pointer
unit-tsan: deps
	@cmake -S $(REPO)/userspace -B $(BUILD)/userspace-tsan -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_FLAGS="$(TSAN_FLAGS)" -DCMAKE_CXX_FLAGS="$(TSAN_FLAGS)" \
		-DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
	@cmake --build $(BUILD)/userspace-tsan -j$(JOBS) --target vpci-hostdp-tests
	@TSAN_OPTIONS=halt_on_error=0 $(BUILD)/userspace-tsan/vpci-hostdp-tests --gtest_brief=1

# Debian 12's QEMU 7.2 source + qemu/patches: build/qemu/qemu-system-x86_64,
# cached outside the clone by Debian version and patch hash
# (scripts/qemu-build.sh; cold about 6 min on 2 cores, cached in seconds).
qemu:
	@$(REPO)/scripts/qemu-build.sh

# The device without a guest: qtest accelerator, this script as the backend.
qemu-test: qemu
	@$(REPO)/selftests/qemu/device_qtest.py --qemu $(BUILD)/qemu/qemu-system-x86_64

# libFuzzer + ASan + UBSan over the driver core; FUZZ_SECONDS=600 for a long run
FUZZ_SECONDS ?= 20
fuzz: deps
	@$(REPO)/scripts/fuzz.sh $(FUZZ_SECONDS)

# Benchmarks: the core micro-benchmark, the host-only matrix (if
# scripts/bench-host.sh exists), VM to VM against DPDK testpmd and one
# round of it counting guest instructions; rewrites docs/benchmarks.md and
# docs/bench/*.png (see docs/testing.md for how long it takes).
# Not part of check; bench-smoke (about 4 min) checks the machinery.
# The guest-instruction plugin (and so QEMU's source) unless nothing counts
# (BENCH_INSN_PASS=0 and BENCH_INSN unset or 0).
bench: module userspace $(if $(filter-out 0,$(BENCH_INSN) $(or $(BENCH_INSN_PASS),1)),tcg-plugin)
	@$(REPO)/scripts/bench.sh $(BUILD)/bench

# Instructions per frame of the driver core under callgrind (about 1 min).
bench-insn: userspace
	@$(REPO)/scripts/bench-insn.py

# The VM-to-VM matrix with B as testpmd's io forwarding with retry
# ("B-retry"), into docs/benchmarks-retry.md (BENCH_* knobs as for bench).
bench-retry: module userspace $(if $(filter-out 0,$(BENCH_INSN)),tcg-plugin)
	@$(REPO)/scripts/bench.sh --retry $(BUILD)/bench-retry

bench-smoke: module userspace tcg-plugin
	@$(REPO)/scripts/bench.sh --smoke $(BUILD)/bench-smoke

# The guest-instruction counter (a TCG plugin) the VM-to-VM benchmarks
# load into every guest's QEMU: build/qemu/vpci-insn.so.
tcg-plugin: qemu
	@$(REPO)/scripts/tcg-plugin.sh $(BUILD)

# iperf3 TCP between two guests: TSO on/off, 1/2/4 queue pairs, pt and strict.
bench-tcp: module userspace
	@$(REPO)/scripts/bench-tcp.sh $(BUILD)/bench-tcp

selftests: module userspace
	@$(REPO)/selftests/run_selftests.sh $(SELFTESTS)

selftests-dev: module userspace qemu
	@$(REPO)/selftests/run_selftests.sh $(SELFTESTS_DEV)

module-612: deps
	@test -n "$(KVER_612)" || { echo "linux-image-6.12-amd64 missing (make deps)"; exit 1; }
	@$(MAKE) --no-print-directory module KVER=$(KVER_612) KDIR=/usr/src/linux-headers-$(KVER_612)

# The kernel's YNL CLI for netdev netlink (qstats, queue-get) in 6.12 guests.
ynl: deps
	@$(REPO)/scripts/linux-src.sh 6.12 >/dev/null

selftests-612: module module-612 userspace ynl
	@VPCI_GUEST_KERNEL=6.12 $(REPO)/selftests/run_selftests.sh $(SELFTESTS_612)

# DESTDIR=... installs into a staging tree (no depmod there).
install: module userspace
	install -D -m 0644 $(KO) $(DESTDIR)/lib/modules/$(KVER)/updates/vhost_pci_net.ko
	install -D -m 0755 -t $(DESTDIR)$(PREFIX)/bin \
		$(US_BUILD)/vpci-backend $(US_BUILD)/vpci-ctl $(US_BUILD)/vpci-nl
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/lib/systemd/system \
		$(REPO)/userspace/systemd/vpci-backend@.service
	install -D -m 0644 $(REPO)/userspace/systemd/vpci-backend.env.example \
		$(DESTDIR)$(PREFIX)/share/doc/vhost-pci/vpci-backend.env.example
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/doc/vhost-pci \
		$(REPO)/docs/backend.md $(REPO)/docs/control-plane.md
	@if [ -z "$(DESTDIR)" ]; then depmod -a $(KVER); fi

# What make check runs: an install into build/destdir, checked file by file.
install-test:
	@rm -rf $(BUILD)/destdir
	@$(MAKE) --no-print-directory install DESTDIR=$(BUILD)/destdir >/dev/null
	@cd $(BUILD)/destdir && for f in lib/modules/$(KVER)/updates/vhost_pci_net.ko \
		usr/local/bin/vpci-backend usr/local/bin/vpci-ctl usr/local/bin/vpci-nl \
		usr/local/lib/systemd/system/vpci-backend@.service; do \
		test -s $$f || { echo "install-test: $$f missing"; exit 1; }; done
	@modinfo -F parm $(BUILD)/destdir/lib/modules/$(KVER)/updates/vhost_pci_net.ko | \
		grep -q '^miss_timeout_ms:' || { echo "install-test: modinfo lacks parameters"; exit 1; }
	@echo "install-test: ok ($(BUILD)/destdir)"

# The module source under /usr/src, built by DKMS for every installed kernel.
DKMS_VER := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' $(REPO)/dkms.conf)
dkms-install:
	rm -rf /usr/src/vhost-pci-net-$(DKMS_VER)
	mkdir -p /usr/src/vhost-pci-net-$(DKMS_VER)
	cp -r $(REPO)/kernel $(REPO)/uapi $(REPO)/dkms.conf /usr/src/vhost-pci-net-$(DKMS_VER)/
	dkms add -m vhost-pci-net -v $(DKMS_VER)
	dkms build -m vhost-pci-net -v $(DKMS_VER)
	dkms install -m vhost-pci-net -v $(DKMS_VER)

check: deps
	@$(MAKE) --no-print-directory module
	@$(MAKE) --no-print-directory style
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory unit-sanitize
	@$(MAKE) --no-print-directory unit-tsan
	@$(MAKE) --no-print-directory qemu-test
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory install-test
	@$(MAKE) --no-print-directory selftests
	@$(MAKE) --no-print-directory selftests-dev
	@$(MAKE) --no-print-directory selftests-612

# IOMMU=strict|lazy|pt (VM1's intel-iommu), TIME= iperf3 seconds,
# MODE=interrupt|poll|hybrid (VM2's driver)
IOMMU ?= strict
TIME  ?= 5
MODE  ?= interrupt
demo_iommu_strict := iommu.strict=1
demo_iommu_lazy   := iommu.strict=0
demo_iommu_pt     := iommu=pt

# DEVICE=vhost-pci (default): VM2 on the project's QEMU device (make qemu),
# BAR2 holds only what VM1's IOMMU maps; DEVICE=ivshmem: stock QEMU's
# ivshmem-doorbell emulation (driver-enforced only).
DEVICE ?= vhost-pci
demo_topology_vhost-pci := vm1vm2-dev
demo_topology_ivshmem   := vm1vm2

demo: module userspace $(if $(filter vhost-pci,$(DEVICE)),qemu)
	@test -n "$(demo_topology_$(DEVICE))" || { echo "DEVICE must be vhost-pci or ivshmem"; exit 2; }
	@test -n "$(demo_iommu_$(IOMMU))" || { echo "IOMMU must be strict, lazy or pt"; exit 2; }
	@case "$(MODE)" in interrupt|poll|hybrid) ;; *) echo "MODE must be interrupt, poll or hybrid"; exit 2;; esac
	@VPCI_DEMO_TIME=$(TIME) VPCI_DEMO_MODE=$(MODE) $(REPO)/selftests/vm/run.py --timeout 600 \
		--topology $(demo_topology_$(DEVICE)) \
		--var "iommu=$(demo_iommu_$(IOMMU))" $(if $(filter lazy,$(IOMMU)),--var "viommu=$(VIOMMU_LAZY)") \
		$(REPO)/selftests/demo/two_vms.sh

style: deps
	@$(REPO)/scripts/checkpatch.sh

clean:
	rm -rf $(BUILD)
