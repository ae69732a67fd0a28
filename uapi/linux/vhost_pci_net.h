/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * vhost-pci-net control area, ABI version 1.
 *
 * The control area is the last VPCI_CTRL_SIZE bytes of the peer BAR (BAR2 of
 * the ivshmem-doorbell function VM2 sees).  BAR offset == offset in the shared
 * memory file; VM1's RAM occupies [0, peer_mem_size) and the control area sits
 * in the power-of-two padding after it, so VM1 never sees it.
 *
 * Every field is little-endian and fixed-size.  Ownership is split by section
 * so that each cache line has exactly one writer:
 *
 *  - &struct vpci_ctrl_hdr        backend, written once before VM2 may look
 *  - &struct vpci_backend_state   backend
 *  - &struct vpci_driver_state    driver
 *  - &struct vpci_vq_config       backend (one per virtqueue)
 *  - &struct vpci_vq_state        driver (one per virtqueue)
 *  - vpci_ctrl.b2d                backend produces, driver consumes
 *  - vpci_ctrl.d2b                driver produces, backend consumes
 *
 * Neither side trusts the other: every value is read once, validated, and
 * copied before use.
 *
 * Notifications (ivshmem-doorbell MSI-X):
 *  - VM2 vector 0 (VPCI_VEC_CONFIG): the backend changed state or posted
 *    b2d messages.  VM2 vector VPCI_VEC_QUEUE(q): VM1 kicked virtqueue q.
 *  - Doorbell to peer hdr.backend_peer_id, vector 0 (VPCI_VEC_CONFIG): the
 *    driver changed state or posted d2b messages.  Vector VPCI_VEC_QUEUE(q):
 *    interrupt VM1 for virtqueue q (VM1's call eventfd).
 */
#ifndef _UAPI_LINUX_VHOST_PCI_NET_H
#define _UAPI_LINUX_VHOST_PCI_NET_H

#include <linux/types.h>

/** VPCI_CTRL_MAGIC - "VPCI" read as a little-endian u32 */
#define VPCI_CTRL_MAGIC		0x49435056U
/** VPCI_ABI_VERSION - incremented on any incompatible layout change */
#define VPCI_ABI_VERSION	1U
/** VPCI_CTRL_SIZE - bytes of the control area at the end of the peer BAR */
#define VPCI_CTRL_SIZE		0x10000U
/** VPCI_MAX_QUEUE_PAIRS - queue pairs the v1 layout has room for */
#define VPCI_MAX_QUEUE_PAIRS	8U
/** VPCI_MAX_QUEUES - virtqueues (RX and TX of each pair) */
#define VPCI_MAX_QUEUES		(2U * VPCI_MAX_QUEUE_PAIRS)
/** VPCI_MSG_RING_SIZE - entries in each message ring (a power of two) */
#define VPCI_MSG_RING_SIZE	512U

/** VPCI_VEC_CONFIG - MSI-X vector / doorbell vector for control traffic */
#define VPCI_VEC_CONFIG		0U
/** VPCI_VEC_QUEUE - MSI-X vector / doorbell vector of virtqueue @q */
#define VPCI_VEC_QUEUE(q)	(1U + (q))
/** VPCI_NUM_VECTORS - vectors needed for @qp queue pairs */
#define VPCI_NUM_VECTORS(qp)	(1U + 2U * (qp))

/**
 * struct vpci_ctrl_hdr - identity and geometry, immutable while VM2 runs
 * @magic: %VPCI_CTRL_MAGIC
 * @abi_version: %VPCI_ABI_VERSION
 * @total_size: size of the control area, %VPCI_CTRL_SIZE in v1
 * @peer_mem_size: bytes of VM1 memory at BAR offset 0; no translation may
 *	reach at or past this offset
 * @ctrl_offset: BAR offset of this control area; equals BAR size minus
 *	@total_size and is never below @peer_mem_size
 * @max_queue_pairs: queue pairs the backend wired, 1..%VPCI_MAX_QUEUE_PAIRS
 * @msg_ring_size: entries per message ring, %VPCI_MSG_RING_SIZE in v1
 * @backend_peer_id: ivshmem peer id to ring for the backend and VM1
 * @num_vectors: MSI-X vectors the backend supplies to VM2,
 *	VPCI_NUM_VECTORS(@max_queue_pairs)
 * @reserved: zero
 */
struct vpci_ctrl_hdr {
	__le32 magic;
	__le32 abi_version;
	__le64 total_size;
	__le64 peer_mem_size;
	__le64 ctrl_offset;
	__le16 max_queue_pairs;
	__le16 msg_ring_size;
	__le16 backend_peer_id;
	__le16 num_vectors;
	__u8 reserved[24];
};

/* Bits of vpci_backend_state.status */
/** VPCI_BS_FRONTEND - VM1's QEMU (the vhost-user front-end) is connected */
#define VPCI_BS_FRONTEND	(1U << 0)
/** VPCI_BS_RUNNING - VM1's driver set DRIVER_OK and rings are configured */
#define VPCI_BS_RUNNING		(1U << 1)
/** VPCI_BS_IOMMU - ACCESS_PLATFORM negotiated: ring/buffer addresses are IOVAs */
#define VPCI_BS_IOMMU		(1U << 2)
/** VPCI_BS_BROKEN - the backend gave up on the device; stop all queues */
#define VPCI_BS_BROKEN		(1U << 3)
/** VPCI_BS_CALL_PEER - ring vpci_backend_state.call_peer_id for queue vectors */
#define VPCI_BS_CALL_PEER	(1U << 4)

/** VPCI_LINK_UP - bit of vpci_backend_state.link */
#define VPCI_LINK_UP		(1U << 0)

/**
 * struct vpci_backend_state - what the backend learnt from VM1 (backend writes)
 * @generation: incremented after every change to this section or to the
 *	vq configs; the driver re-reads everything when it changes
 * @status: VPCI_BS_* bits
 * @features: virtio features VM1's driver acknowledged (SET_FEATURES)
 * @mac: MAC address for VM2's interface
 * @max_mtu: largest MTU VM2's interface may use (at least 68)
 * @link: VPCI_LINK_* bits, link state of VM2's interface
 * @num_queue_pairs: queue pairs VM1 enabled, 0..max_queue_pairs
 * @call_peer_id: with VPCI_BS_CALL_PEER, the ivshmem peer whose vector
 *	VPCI_VEC_QUEUE(q) is VM1's call eventfd of queue q: the driver rings
 *	it, instead of hdr.backend_peer_id, to interrupt VM1
 * @call_peer_probe: non-zero while the backend announces a new call peer
 *	to VM2's QEMU: the driver rings this peer's vector VPCI_VEC_CONFIG
 *	whenever it sees a new generation, which tells the backend the peer
 *	is attached (a doorbell to a peer QEMU does not know yet is dropped)
 * @reserved: zero
 */
struct vpci_backend_state {
	__le32 generation;
	__le32 status;
	__le64 features;
	__u8 mac[6];
	__le16 max_mtu;
	__le16 link;
	__le16 num_queue_pairs;
	__le16 call_peer_id;
	__le16 call_peer_probe;
	__u8 reserved[32];
};

/* Bits of vpci_driver_state.status */
/** VPCI_DS_BOUND - a driver owns the device and filled device_features */
#define VPCI_DS_BOUND		(1U << 0)
/** VPCI_DS_UP - the interface is administratively up */
#define VPCI_DS_UP		(1U << 1)

/**
 * struct vpci_driver_state - what VM2's driver reports (driver writes)
 * @status: VPCI_DS_* bits, 0 when no driver is bound
 * @generation_seen: last vpci_backend_state.generation fully applied
 * @device_features: virtio features the driver implements as the device;
 *	the backend offers exactly these to VM1
 * @mtu: current MTU of VM2's interface
 * @reserved: zero
 */
struct vpci_driver_state {
	__le32 status;
	__le32 generation_seen;
	__le64 device_features;
	__le16 mtu;
	__u8 reserved[46];
};

/* Values of vpci_vq_config.notify */
/** VPCI_NOTIFY_NONE - no eventfds wired for this queue */
#define VPCI_NOTIFY_NONE	0U
/** VPCI_NOTIFY_DIRECT - VM1's eventfds are VM2's vectors, no host thread */
#define VPCI_NOTIFY_DIRECT	1U
/** VPCI_NOTIFY_RELAY - a backend thread relays kicks and calls */
#define VPCI_NOTIFY_RELAY	2U

/**
 * struct vpci_vq_config - one of VM1's virtqueues (backend writes)
 * @desc: address of the descriptor table (IOVA if VPCI_BS_IOMMU, else GPA)
 * @avail: address of the available ring
 * @used: address of the used ring
 * @num: ring size, a power of two up to 32768, 0 when not configured
 * @base: avail index to start from (SET_VRING_BASE)
 * @enabled: 1 when VM1 enabled the ring
 * @notify: VPCI_NOTIFY_* wiring of this queue's kick and call
 * @epoch: bumped (mod 2^16) each time the ring goes live (enabled, sized
 *	and addressed) after it was not: a run of the ring the driver did
 *	not start is new even if it missed the disabled state in between
 *	(VM1 reset and set up the ring again between two config passes).
 *	0 from a backend that predates it: the driver then relies on
 *	seeing @enabled cleared
 * @reserved: zero
 */
struct vpci_vq_config {
	__le64 desc;
	__le64 avail;
	__le64 used;
	__le16 num;
	__le16 base;
	__le16 enabled;
	__le16 notify;
	__le16 epoch;
	__u8 reserved[30];
};

/**
 * struct vpci_vq_state - the driver's progress on one virtqueue (driver writes)
 * @last_avail_idx: next avail index the driver will consume; reported to
 *	VM1 by GET_VRING_BASE.  The backend seeds it with the base VM1 sets
 *	(SET_VRING_BASE, the queue stopped) until the driver runs the queue
 * @used_idx: last used index the driver published
 * @stopped: 1 when the driver stopped the queue after a fault
 * @reserved: zero
 */
struct vpci_vq_state {
	__le16 last_avail_idx;
	__le16 used_idx;
	__le16 stopped;
	__u8 reserved[58];
};

/* Values of vpci_msg.type */
/** VPCI_MSG_IOTLB_UPDATE - b2d: @iova..+@size maps to @bar_offset with @perm */
#define VPCI_MSG_IOTLB_UPDATE		1U
/** VPCI_MSG_IOTLB_INVALIDATE - b2d: drop @iova..+@size, then ack with @seq */
#define VPCI_MSG_IOTLB_INVALIDATE	2U
/** VPCI_MSG_IOTLB_MISS - d2b: no translation for @iova with @perm */
#define VPCI_MSG_IOTLB_MISS		3U
/** VPCI_MSG_IOTLB_INV_ACK - d2b: invalidation @seq done, no access remains */
#define VPCI_MSG_IOTLB_INV_ACK		4U

/* Values of vpci_msg.perm, as VHOST_ACCESS_* */
#define VPCI_PERM_RO	1U	/* device may read */
#define VPCI_PERM_WO	2U	/* device may write */
#define VPCI_PERM_RW	3U

/**
 * struct vpci_msg - one entry of a message ring
 * @type: VPCI_MSG_*
 * @perm: VPCI_PERM_* (updates and misses)
 * @queue: queue the miss was taken on, 0xffff if none
 * @seq: sequence number chosen by the sender; acks echo it
 * @iova: first byte of the range
 * @size: bytes in the range, non-zero, @iova + @size - 1 must not wrap;
 *	except in VPCI_MSG_IOTLB_INVALIDATE, where 0 means from @iova to the
 *	end of the IOVA space (QEMU's global device-IOTLB flush)
 * @bar_offset: BAR offset of @iova (updates only)
 */
struct vpci_msg {
	__u8 type;
	__u8 perm;
	__le16 queue;
	__le32 seq;
	__le64 iova;
	__le64 size;
	__le64 bar_offset;
};

/**
 * struct vpci_msg_ring - single-producer single-consumer message ring
 * @prod: free-running count of entries produced (producer writes); written
 *	after the entry, with release semantics
 * @pad0: keeps @prod and @cons on separate cache lines
 * @cons: free-running count of entries consumed (consumer writes)
 * @pad1: keeps @cons off the entries' cache lines
 * @ent: entries, slot is count % VPCI_MSG_RING_SIZE
 */
struct vpci_msg_ring {
	__le32 prod;
	__u8 pad0[60];
	__le32 cons;
	__u8 pad1[60];
	struct vpci_msg ent[VPCI_MSG_RING_SIZE];
};

/**
 * struct vpci_ctrl - the whole control area, VPCI_CTRL_SIZE bytes
 * @hdr: identity and geometry
 * @backend: backend state
 * @driver: driver state
 * @vq_config: VM1's virtqueues, index 2*n = RX of pair n, 2*n+1 = TX
 * @vq_state: driver progress per virtqueue
 * @b2d: backend to driver messages (IOTLB updates and invalidations)
 * @d2b: driver to backend messages (IOTLB misses and invalidation acks)
 * @reserved: zero, pads to VPCI_CTRL_SIZE
 */
struct vpci_ctrl {
	struct vpci_ctrl_hdr hdr;
	struct vpci_backend_state backend;
	struct vpci_driver_state driver;
	__u8 pad0[64];
	struct vpci_vq_config vq_config[VPCI_MAX_QUEUES];
	struct vpci_vq_state vq_state[VPCI_MAX_QUEUES];
	struct vpci_msg_ring b2d;
	struct vpci_msg_ring d2b;
	__u8 reserved[VPCI_CTRL_SIZE - 256 - 2 * 64 * VPCI_MAX_QUEUES -
		      2 * (128 + 32 * VPCI_MSG_RING_SIZE)];
};

#endif /* _UAPI_LINUX_VHOST_PCI_NET_H */
