/* SPDX-License-Identifier: GPL-2.0-or-later OR MIT */
/*
 * vhost-pci device <-> backend protocol (QEMU's "vhost-pci" PCI device).
 *
 * This file is kept byte-identical in two places: the vhost-pci project's
 * qemu/vhost-pci-protocol.h (used by the C++ backend) and, through the
 * project's QEMU patch, include/hw/misc/vhost-pci-protocol.h.
 *
 * Transport: the device's chardev (a UNIX stream socket).  Every message
 * in either direction is one struct vhost_pci_msg, 32 bytes, all fields
 * little-endian; file descriptors travel with it as SCM_RIGHTS ancillary
 * data sent in the same sendmsg() as the message's first byte.
 *
 * Backend -> device:
 *   HELLO        1 fd (the memory file).  arg = VHOST_PCI_PROTO_VERSION,
 *                offset = control-area offset, size = file size (a power
 *                of two: BAR2's size), aux = the device's id (IVPosition).
 *                First message of every connection.  Answered by READY.
 *   SET_VECTOR   1 fd (an eventfd).  arg = MSI-X vector: a write to the
 *                eventfd raises that vector in the guest (irqfd-style).
 *                Replaces the vector's previous eventfd.
 *   SET_DOORBELL 1 fd (an eventfd).  arg = vector: a guest Doorbell write
 *                of (0 << 16 | vector) signals it.  Replaceable.
 *   MAP          offset, size (4 KiB aligned), arg = VHOST_PCI_PERM_*:
 *                make [offset, offset + size) of the file visible at the
 *                same BAR2 offset.  Answered by MAP_DONE (same seq) once
 *                every vCPU sees the window.
 *   UNMAP        offset, size: remove that range from every window (parts
 *                not mapped are ignored).  Answered by UNMAP_DONE (same
 *                seq) only once the memory transaction committed and no
 *                vCPU can still reach the pages through a stale TLB entry.
 * Device -> backend:
 *   READY        arg = protocol version, offset = max windows, size = BAR2
 *                size, aux = number of MSI-X vectors, seq = HELLO's seq.
 *   MAP_DONE, UNMAP_DONE   seq = the request's seq, offset/size echoed.
 *   ERROR        arg = VHOST_PCI_ERR_*, aux = the refused message's type,
 *                seq/offset/size echoed.  The device state is unchanged.
 */
#ifndef VHOST_PCI_PROTOCOL_H
#define VHOST_PCI_PROTOCOL_H

#include <stdint.h>

#define VHOST_PCI_PROTO_VERSION    1

/* PCI identity: 1af4:10f0, from QEMU's experimental range (pci-ids). */
#define VHOST_PCI_VENDOR_ID        0x1af4
#define VHOST_PCI_DEVICE_ID        0x10f0

/* BAR0 registers (ivshmem's layout) */
#define VHOST_PCI_REG_INTR_MASK    0x00
#define VHOST_PCI_REG_INTR_STATUS  0x04
#define VHOST_PCI_REG_IVPOSITION   0x08
#define VHOST_PCI_REG_DOORBELL     0x0c

/* Window granularity */
#define VHOST_PCI_PAGE_SIZE        4096u

enum vhost_pci_msg_type {
    VHOST_PCI_MSG_HELLO        = 1,
    VHOST_PCI_MSG_SET_VECTOR   = 2,
    VHOST_PCI_MSG_SET_DOORBELL = 3,
    VHOST_PCI_MSG_MAP          = 4,
    VHOST_PCI_MSG_UNMAP        = 5,

    VHOST_PCI_MSG_READY        = 0x81,
    VHOST_PCI_MSG_MAP_DONE     = 0x84,
    VHOST_PCI_MSG_UNMAP_DONE   = 0x85,
    VHOST_PCI_MSG_ERROR        = 0xff,
};

enum vhost_pci_perm {
    VHOST_PCI_PERM_RO = 1,     /* guest reads; writes are discarded */
    VHOST_PCI_PERM_WO = 2,     /* guest writes; reads return all-ones */
    VHOST_PCI_PERM_RW = 3,
};

enum vhost_pci_err {
    VHOST_PCI_ERR_TYPE      = 1,   /* unknown message type */
    VHOST_PCI_ERR_FDS       = 2,   /* wrong number of fds */
    VHOST_PCI_ERR_NO_HELLO  = 3,   /* message before HELLO */
    VHOST_PCI_ERR_VERSION   = 4,   /* HELLO with another protocol version */
    VHOST_PCI_ERR_HELLO     = 5,   /* HELLO: bad size/offset/file, or repeated */
    VHOST_PCI_ERR_ALIGN     = 6,   /* offset/size zero or not 4 KiB aligned */
    VHOST_PCI_ERR_RANGE     = 7,   /* offset + size wraps or is beyond the file */
    VHOST_PCI_ERR_CTRL      = 8,   /* overlaps the control area */
    VHOST_PCI_ERR_OVERLAP   = 9,   /* MAP overlaps an existing window */
    VHOST_PCI_ERR_LIMIT     = 10,  /* too many windows */
    VHOST_PCI_ERR_PERM      = 11,  /* bad permission */
    VHOST_PCI_ERR_VECTOR    = 12,  /* vector >= vectors, or the fd is unusable */
};

struct vhost_pci_msg {
    uint32_t type;
    uint32_t arg;
    uint64_t offset;
    uint64_t size;
    uint32_t seq;
    uint32_t aux;
};

#define VHOST_PCI_MSG_SIZE 32
/* C11 and C++11 both spell it this way */
#ifdef __cplusplus
static_assert(sizeof(struct vhost_pci_msg) == VHOST_PCI_MSG_SIZE, "message size");
#else
_Static_assert(sizeof(struct vhost_pci_msg) == VHOST_PCI_MSG_SIZE, "message size");
#endif

#endif /* VHOST_PCI_PROTOCOL_H */
