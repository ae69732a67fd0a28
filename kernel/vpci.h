/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost_pci_net: private definitions shared by the driver's files.
 */
#ifndef _VPCI_H
#define _VPCI_H

#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/types.h>
#include <linux/workqueue.h>
#include "vpci_core.h"

#define VPCI_DRV_NAME		"vhost_pci_net"
#define VPCI_DRV_VERSION	"0.1"

/* ivshmem BAR0 registers (docs/specs/ivshmem-spec.rst in QEMU) */
#define IVSHMEM_REG_INTR_MASK	0x00
#define IVSHMEM_REG_INTR_STATUS	0x04
#define IVSHMEM_REG_IVPOSITION	0x08
#define IVSHMEM_REG_DOORBELL	0x0c
#define IVSHMEM_BAR0_SIZE	0x100

/* Smallest MTU the interface accepts */
#define VPCI_MIN_MTU		ETH_MIN_MTU

/**
 * struct vpci_dev - one vhost-pci function
 * @pdev: the PCI function (ivshmem-doorbell)
 * @netdev: the interface presented to VM2's stack
 * @regs: BAR0, ivshmem registers
 * @ctrl: control area, the last VPCI_CTRL_SIZE bytes of BAR2, cacheable
 * @peer: VM1's memory, BAR2 offsets [0, @peer_mem_size), cacheable
 * @hdr: private copy of the control area header, validated at probe and
 *	never read from shared memory again
 * @bar_len: size of BAR2
 * @own_id: this VM's ivshmem peer id (IVPosition)
 * @nvec: MSI-X vectors allocated, hdr.num_vectors
 * @config_work: applies backend state changes signalled on VPCI_VEC_CONFIG
 * @state_lock: serialises writers of the driver section of @ctrl (probe,
 *	ndo_open/stop, MTU changes under RTNL, @config_work)
 * @generation: last backend generation applied, under @state_lock
 */
struct vpci_dev {
	struct pci_dev *pdev;
	struct net_device *netdev;
	void __iomem *regs;
	struct vpci_ctrl *ctrl;
	void *peer;
	struct vpci_ctrl_hdr hdr;
	u64 bar_len;
	u16 own_id;
	unsigned int nvec;
	struct work_struct config_work;
	/* protects the driver section of @ctrl and @generation */
	struct mutex state_lock;
	u32 generation;
};

/* ctrl.c */
void vpci_ctrl_set_driver_status(struct vpci_dev *vdev, u32 set, u32 clear);
void vpci_ctrl_set_mtu(struct vpci_dev *vdev, unsigned int mtu);
void vpci_ring_backend(struct vpci_dev *vdev, unsigned int vector);
void vpci_config_work(struct work_struct *work);

/* netdev.c */
struct net_device *vpci_netdev_alloc(struct vpci_dev *vdev);
void vpci_netdev_apply_link(struct vpci_dev *vdev, bool up);

#endif /* _VPCI_H */
