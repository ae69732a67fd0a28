/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost_pci_net: private definitions shared by the driver's files.
 */
#ifndef _VPCI_H
#define _VPCI_H

#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
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

/* Most translations the private IOTLB holds (24 bytes each + slack) */
#define VPCI_IOTLB_MAX		65536

/* Smallest MTU the interface accepts */
#define VPCI_MIN_MTU		ETH_MIN_MTU

/* virtio features this driver implements as the device of VM1's virtio-net */
#define VPCI_DEVICE_FEATURES	(BIT_ULL(VIRTIO_F_VERSION_1) |		\
				 BIT_ULL(VIRTIO_F_ACCESS_PLATFORM) |	\
				 BIT_ULL(VIRTIO_NET_F_MRG_RXBUF) |	\
				 BIT_ULL(VIRTIO_RING_F_EVENT_IDX))

/**
 * struct vpci_stats - device-wide control-path counters, under state_lock
 * @iotlb_updates: translations added
 * @iotlb_invalidations: invalidations applied and acked
 * @iotlb_misses: misses posted to the backend
 * @iotlb_bad_msgs: b2d messages refused (bad range, type, full table)
 */
struct vpci_stats {
	u64 iotlb_updates;
	u64 iotlb_invalidations;
	u64 iotlb_misses;
	u64 iotlb_bad_msgs;
};

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
 * @iotlb: private IOTLB built from b2d messages
 * @iotlb_lock: protects @iotlb
 * @msg_lock: serialises producers of the d2b ring and @d2b_prod
 * @b2d_cons: private consumer count of b2d (config work only)
 * @d2b_prod: private producer count of d2b, under @msg_lock
 * @rings_mapped: bit per queue whose rings fully translate (config work)
 * @stats: control-path counters (config work)
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
	struct vpci_iotlb iotlb;
	/* protects @iotlb */
	struct mutex iotlb_lock;
	/* serialises d2b producers */
	spinlock_t msg_lock;
	u32 b2d_cons;
	u32 d2b_prod;
	u32 rings_mapped;
	struct vpci_stats stats;
};

/* ctrl.c */
void vpci_ctrl_set_driver_status(struct vpci_dev *vdev, u32 set, u32 clear);
void vpci_ctrl_set_mtu(struct vpci_dev *vdev, unsigned int mtu);
void vpci_ring_backend(struct vpci_dev *vdev, unsigned int vector);
void vpci_config_work(struct work_struct *work);

/* iotlb.c */
bool vpci_iotlb_process(struct vpci_dev *vdev);

/* netdev.c */
struct net_device *vpci_netdev_alloc(struct vpci_dev *vdev);
void vpci_netdev_apply_link(struct vpci_dev *vdev, bool up);

#endif /* _VPCI_H */
