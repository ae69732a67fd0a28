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
#include <linux/types.h>
#include <asm/byteorder.h>
#else
#include "kshim.h"
#endif

#include <linux/vhost_pci_net.h>

int vpci_ctrl_check_hdr(const struct vpci_ctrl_hdr *hdr, u64 bar_len,
			const char **why);

#endif /* _VPCI_CORE_H */
