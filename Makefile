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
SELFTESTS  ?= vm2/basic.sh vm2/ctrl_area.sh e2e/vm1_rings.sh e2e/ping.sh e2e/ping.sh:iommu=iommu.strict=0 e2e/ping.sh:iommu=iommu=pt e2e/modes.sh e2e/lifecycle.sh sim/traffic.sh sim/traffic.sh:policy=transient:modes=interrupt,hybrid sim/traffic.sh:policy=transient:modes=poll sim/traffic.sh:policy=transient:modes=switch sim/faults.sh sim/faults.sh:policy=transient

export VPCI_BUILD := $(BUILD)

.PHONY: all deps module userspace unit fuzz bench selftests check demo style clean help

all: module userspace

help:
	@echo "make demo       two VMs over vhost-pci: ping, iperf3 both ways (IOMMU=strict|lazy|pt TIME=5)"
	@echo "make check      install deps, build, unit tests, in-guest selftests"
	@echo "make deps       install the Debian packages (scripts/debian-packages.txt)"
	@echo "make module     build vhost_pci_net.ko for KVER=$(KVER) (W=1, warnings fail)"
	@echo "make userspace  build the C++ backend, tools and tests"
	@echo "make unit       run the userspace unit tests (ctest)"
	@echo "make selftests  run SELFTESTS inside QEMU guests"
	@echo "make style      checkpatch on the kernel sources"
	@echo "make fuzz       fuzz the driver core (FUZZ_SECONDS=20)"
	@echo "make bench      micro-benchmarks of the driver core (Google Benchmark)"

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

# libFuzzer + ASan + UBSan over the driver core; FUZZ_SECONDS=600 for a long run
FUZZ_SECONDS ?= 20
fuzz: deps
	@$(REPO)/scripts/fuzz.sh $(FUZZ_SECONDS)

# Benchmarks print figures; not part of check (ctest runs a smoke of it).
bench: userspace
	@$(US_BUILD)/vpci-bench-core --benchmark_min_time=0.5

selftests: module userspace
	@$(REPO)/selftests/run_selftests.sh $(SELFTESTS)

check: deps
	@$(MAKE) --no-print-directory module
	@$(MAKE) --no-print-directory style
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory fuzz
	@$(MAKE) --no-print-directory selftests

# IOMMU=strict|lazy|pt|off-less modes of VM1's intel-iommu; TIME= iperf3 seconds
IOMMU ?= strict
TIME  ?= 5
demo_iommu_strict := iommu.strict=1
demo_iommu_lazy   := iommu.strict=0
demo_iommu_pt     := iommu=pt

demo: module userspace
	@test -n "$(demo_iommu_$(IOMMU))" || { echo "IOMMU must be strict, lazy or pt"; exit 2; }
	@VPCI_DEMO_TIME=$(TIME) $(REPO)/selftests/vm/run.py --timeout 600 \
		--var "iommu=$(demo_iommu_$(IOMMU))" $(REPO)/selftests/demo/two_vms.sh

style: deps
	@$(REPO)/scripts/checkpatch.sh

clean:
	rm -rf $(BUILD)
