/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost_pci_net core: the parts of the driver that compile both in the
 * kernel and in userspace (unit tests, fuzzing, benchmarks), in the way
 * tools/virtio builds vringh.c.  Core files include only this header; in
 * userspace it pulls in userspace/kshim/kshim.h instead of kernel headers.
 */
#ifndef _VPCI_CORE_H
#define _VPCI_CORE_H

#ifdef __KERNEL__
#include <linux/errno.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/types.h>
#include <asm/barrier.h>
#include <asm/byteorder.h>
#else
#include "kshim.h"
#endif

#include <linux/vhost_pci_net.h>

/* core_ctrl.c */
int vpci_ctrl_check_hdr(const struct vpci_ctrl_hdr *hdr, u64 bar_len,
			const char **why);

/* core_msg.c */
int vpci_msg_pop(struct vpci_msg_ring *r, u32 *cons, struct vpci_msg *m);
int vpci_msg_push(struct vpci_msg_ring *r, u32 *prod, const struct vpci_msg *m);

/**
 * struct vpci_iotlb_entry - one translation, an inclusive IOVA range
 * @start: first IOVA
 * @last: last IOVA (inclusive)
 * @bar_offset: BAR offset of @start
 * @perm: VPCI_PERM_* the device has on the range
 */
struct vpci_iotlb_entry {
	u64 start;
	u64 last;
	u64 bar_offset;
	u32 perm;
};

/**
 * struct vpci_iotlb - private IOTLB, sorted non-overlapping entries
 * @ent: entries sorted by @start
 * @n: entries in use
 * @cap: entries allocated
 * @max: entries allowed
 * @peer_mem_size: no entry reaches at or past this BAR offset
 *
 * Not locked: the owner (struct vpci_dev) serialises every call.
 */
struct vpci_iotlb {
	struct vpci_iotlb_entry *ent;
	u32 n;
	u32 cap;
	u32 max;
	u64 peer_mem_size;
};

/* core_iotlb.c */
int vpci_iotlb_init(struct vpci_iotlb *t, u32 max_entries, u64 peer_mem_size);
void vpci_iotlb_destroy(struct vpci_iotlb *t);
bool vpci_iotlb_range_ok(u64 iova, u64 size);
int vpci_iotlb_add(struct vpci_iotlb *t, u64 iova, u64 size, u64 bar_offset,
		   u32 perm);
int vpci_iotlb_del(struct vpci_iotlb *t, u64 iova, u64 size);
int vpci_iotlb_translate(const struct vpci_iotlb *t, u64 iova, u64 len,
			 u32 perm, u64 *bar_offset, u64 *contig);

#endif /* _VPCI_CORE_H */
