// SPDX-License-Identifier: GPL-2.0
/*
 * vpci-insn: a TCG plugin that counts the guest instructions each vCPU
 * executes, live, into a file the host can read at any moment.
 *
 *   qemu-system-x86_64 ... -plugin PATH/vpci-insn.so,out=FILE
 *
 * FILE holds VPCI_INSN_SLOTS little-endian u64 counters, one per vCPU
 * index, each on its own cache line (no two vCPU threads write one line);
 * the sum is the VM's instruction count so far.  The benchmark reads it
 * before and after a measurement and divides the difference by the
 * packets: under TCG that figure does not move with the host's load.
 *
 * Counting is per translation block: a callback on every executed block
 * adds its instruction count.  A block left early (an exception or an
 * interrupt taken in its middle) counts whole, so the figure is exact to
 * within those; it is the same rule for every VM measured.
 *
 * Built against the plugin API header of Debian's QEMU 7.2 source
 * (scripts/tcg-plugin.sh); loads into Debian's qemu-system-x86 (the
 * project's own build is configured without plugins).  A rep-prefixed
 * string instruction counts once per iteration: QEMU 7.2 re-enters its
 * block for each.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <glib.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define VPCI_INSN_SLOTS 64
#define VPCI_INSN_STRIDE 8	/* u64s per slot: 64 bytes, one cache line */

static uint64_t *counters;

static void vpci_insn_exec(unsigned int vcpu, void *udata)
{
	uint64_t *c = &counters[vcpu * VPCI_INSN_STRIDE];

	/*
	 * One writer per slot (vCPU @vcpu's thread, or the one TCG thread);
	 * relaxed atomics only keep the host's concurrent reads untorn.
	 */
	__atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + (uintptr_t)udata,
			 __ATOMIC_RELAXED);
}

static void vpci_insn_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	qemu_plugin_register_vcpu_tb_exec_cb(tb, vpci_insn_exec,
					     QEMU_PLUGIN_CB_NO_REGS,
					     (void *)(uintptr_t)qemu_plugin_tb_n_insns(tb));
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
					   const qemu_info_t *info,
					   int argc, char **argv)
{
	size_t len = VPCI_INSN_SLOTS * VPCI_INSN_STRIDE * sizeof(uint64_t);
	const char *out = NULL;
	void *map;
	int fd;
	int i;

	for (i = 0; i < argc; i++) {
		if (strncmp(argv[i], "out=", 4) == 0 && argv[i][4])
			out = argv[i] + 4;
		else {
			fprintf(stderr, "vpci-insn: unknown argument '%s' (want out=FILE)\n",
				argv[i]);
			return -1;
		}
	}
	if (!out) {
		fprintf(stderr, "vpci-insn: out=FILE is required\n");
		return -1;
	}
	if (info->system.max_vcpus > VPCI_INSN_SLOTS) {
		fprintf(stderr, "vpci-insn: %d vCPUs, at most %d\n",
			info->system.max_vcpus, VPCI_INSN_SLOTS);
		return -1;
	}
	fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fprintf(stderr, "vpci-insn: open(%s): %s\n", out, strerror(errno));
		return -1;
	}
	if (ftruncate(fd, len) < 0) {
		fprintf(stderr, "vpci-insn: ftruncate(%s): %s\n", out, strerror(errno));
		close(fd);
		return -1;
	}
	map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		fprintf(stderr, "vpci-insn: mmap(%s): %s\n", out, strerror(errno));
		return -1;
	}
	/* The mapping lives as long as QEMU: the file stays readable after. */
	counters = map;
	qemu_plugin_register_vcpu_tb_trans_cb(id, vpci_insn_trans);
	return 0;
}
