/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost_pci_net: private definitions shared by the driver's files.
 */
#ifndef _VPCI_H
#define _VPCI_H

#include <linux/if_vlan.h>
#include <linux/interrupt.h>
#include <linux/netdevice.h>
#include <linux/pci.h>
#include <linux/ratelimit.h>
#include <linux/u64_stats_sync.h>
#include <linux/types.h>
#include <linux/virtio_config.h>
#include <linux/virtio_net.h>
#include <linux/virtio_ring.h>
#include <linux/workqueue.h>
#include <linux/vhost_pci_netlink.h>
#include "compat.h"
#include "vpci_core.h"

#define VPCI_DRV_NAME		"vhost_pci_net"
#define VPCI_DRV_VERSION	"0.1"

/* ivshmem BAR0 registers (docs/specs/ivshmem-spec.rst in QEMU) */
#define IVSHMEM_REG_INTR_MASK	0x00
#define IVSHMEM_REG_INTR_STATUS	0x04
#define IVSHMEM_REG_IVPOSITION	0x08
#define IVSHMEM_REG_DOORBELL	0x0c
#define IVSHMEM_BAR0_SIZE	0x100

/*
 * Translations the private IOTLB holds (24 bytes each + slack): the module
 * parameter iotlb_entries in [VPCI_IOTLB_MIN, VPCI_IOTLB_MAX], the most by
 * default.  A full table evicts an entry round robin.
 */
#define VPCI_IOTLB_MAX		65536
#define VPCI_IOTLB_MIN		16

/* A miss unanswered this long turns the chain into a fault (miss_timeout_ms) */
#define VPCI_MISS_TIMEOUT_MS_DEFAULT	2000
#define VPCI_MISS_TIMEOUT_MS_MIN	10
#define VPCI_MISS_TIMEOUT_MS_MAX	60000

/* Events (netlink *_NTF) sent per device and second, at most */
#define VPCI_EVENTS_PER_SEC	200

/* Largest split virtqueue (VIRTIO 1.x) */
#define VPCI_VRING_MAX		32768

/* Smallest MTU the interface accepts */
#define VPCI_MIN_MTU		ETH_MIN_MTU

/* virtio features this driver implements as the device of VM1's virtio-net */
#define VPCI_DEVICE_FEATURES	(BIT_ULL(VIRTIO_F_VERSION_1) |		\
				 BIT_ULL(VIRTIO_F_ACCESS_PLATFORM) |	\
				 BIT_ULL(VIRTIO_NET_F_MRG_RXBUF) |	\
				 BIT_ULL(VIRTIO_NET_F_CSUM) |		\
				 BIT_ULL(VIRTIO_NET_F_GUEST_CSUM) |	\
				 BIT_ULL(VIRTIO_NET_F_HOST_TSO4) |	\
				 BIT_ULL(VIRTIO_NET_F_HOST_TSO6) |	\
				 BIT_ULL(VIRTIO_NET_F_GUEST_TSO4) |	\
				 BIT_ULL(VIRTIO_NET_F_GUEST_TSO6) |	\
				 BIT_ULL(VIRTIO_RING_F_EVENT_IDX))

/**
 * struct vpci_stats - device-wide control-path counters, written by the
 *	config pass only (under config_lock); ethtool reads each u64 whole,
 *	a snapshot that may lag the writer
 * @iotlb_updates: translations added
 * @iotlb_invalidations: invalidations applied and acked
 * @iotlb_misses: misses posted to the backend
 * @iotlb_bad_msgs: b2d messages refused (bad range, type, full table)
 * @d2b_full: config passes that stopped reading b2d because the d2b ring
 *	had no room for an ack (the backend had not drained it)
 */
struct vpci_stats {
	u64 iotlb_updates;
	u64 iotlb_invalidations;
	u64 iotlb_misses;
	u64 iotlb_bad_msgs;
	u64 d2b_full;
};

/**
 * struct vpci_q_stats - per-queue counters (u64_stats, never reset)
 * @packets: frames moved (received from VM1 on odd, sent to VM1 on even queues)
 * @bytes: their bytes
 * @notify_sent: interrupts raised in VM1
 * @notify_suppressed: used-ring updates VM1 asked not to be told about
 * @iotlb_misses: misses posted for this queue
 * @stalls: times the queue waited (no buffers, translation miss)
 * @fault_perm: accesses refused for lack of permission
 * @fault_miss_timeout: misses VM1 never answered
 * @fault_chain: descriptor chains too long or looping
 * @fault_head: head indexes out of range
 * @fault_ring: ring-level faults that stopped the queue
 * @fault_desc: malformed descriptors (length, range, flags) and frames
 *	whose virtio_net_hdr asks for what was not negotiated or is out of
 *	the frame
 * @csum_partial: frames whose checksum the receiver completes
 *	(VIRTIO_NET_HDR_F_NEEDS_CSUM: from VM1 on odd queues, to VM1 on even)
 * @gso: GSO frames (TSO) moved as one: from VM1 on odd queues, to VM1 on
 *	even ones
 * @iotlb_cache_hits: translations served by the queue's own cache
 * @iotlb_lookups: translations looked up in the IOTLB (cache misses)
 * @iotlb_prefetch: misses posted ahead, for chains behind the one that
 *	stalled (also counted in @iotlb_misses)
 */
struct vpci_q_stats {
	u64 packets;
	u64 bytes;
	u64 notify_sent;
	u64 notify_suppressed;
	u64 iotlb_misses;
	u64 stalls;
	u64 fault_perm;
	u64 fault_miss_timeout;
	u64 fault_chain;
	u64 fault_head;
	u64 fault_ring;
	u64 fault_desc;
	u64 csum_partial;
	u64 gso;
	u64 iotlb_cache_hits;
	u64 iotlb_lookups;
	u64 iotlb_prefetch;
};

#define VPCI_Q_NSTATS	(sizeof(struct vpci_q_stats) / sizeof(u64))

struct vpci_dev;

/* A miss that could not be posted (d2b full) is tried again this soon */
#define VPCI_MISS_REPOST_MS	10
/*
 * d2b slots misses leave free: an invalidation's ack always finds room
 * (16 queues x 32 misses would fill the ring otherwise), and the config
 * pass reads no b2d message it could not ack (vpci_iotlb_process()).
 */
#define VPCI_D2B_ACK_RESERVE	64
/* A config pass that found d2b full looks again this soon */
#define VPCI_D2B_RETRY_MS	2

/**
 * struct vpci_queue - one of VM1's virtqueues, served by this driver
 * @vdev: the device
 * @index: virtqueue index: 2n is VM1's RX of pair n, 2n+1 its TX
 * @vr: ring state, under vdev->dp_lock
 * @running: @vr is live, under dp_lock
 * @broken: stopped after a ring-level fault until VM1 disables the ring
 *	or runs it anew (@epoch), under dp_lock
 * @epoch: vq_config.epoch of the run of the ring last started (or found
 *	unusable), under dp_lock
 * @mrg_rxbuf: VIRTIO_NET_F_MRG_RXBUF negotiated
 * @csum: odd queues: VIRTIO_NET_F_CSUM negotiated (VM1 may send partial
 *	checksums); even queues: VIRTIO_NET_F_GUEST_CSUM (VM1 takes them)
 * @gso: the GSO types (BIT(VIRTIO_NET_HDR_GSO_TCPV4) and _TCPV6) VM1
 *	negotiated: odd queues HOST_TSO4/6 (VM1 may send them), even queues
 *	GUEST_TSO4/6 (VM1 takes them); under dp_lock, read without it by
 *	vpci_features_check() (a stale value is caught under the lock)
 * @pub_stalled: used elements wait for a miss to be published
 *	(vpci_signal()); the queue takes no chain until they are, under dp_lock
 * @rings_gone: an invalidation reached this running queue's rings: if they
 *	no longer translate at the config pass, VM1 unmapped them (a ring
 *	fault), rather than the IOTLB evicting an entry; under dp_lock
 * @rx_seen: even queues: VM1's avail index when a frame last found too
 *	few RX buffers; the stopped TX queue wakes only once avail moves
 *	past it (VM1 kicks then), under dp_lock
 * @miss: the misses asked and not answered yet, the one the queue waits
 *	for (@miss.pending, @miss.wait) and those asked ahead (core_miss.c),
 *	under dp_lock
 * @chain: odd queues: the chain being taken, under dp_lock
 * @rx: even queues: the RX buffers of the frame being written, under dp_lock
 * @napi: NAPI context (odd queues: VM1's TX into our stack)
 * @last_work: ktime (ns) of the last poll that moved a frame (NAPI only)
 * @kicks: VM1 kicks received (IRQ context)
 * @irq_name: this queue's vector in /proc/interrupts
 * @affinity: the CPUs of this queue's vector; the IRQ core keeps a pointer
 *	to it as the vector's affinity hint, so it lives until the vector is
 *	freed (vpci_set_affinity())
 * @syncp: protects @stats
 * @stats: counters
 */
struct vpci_queue {
	struct vpci_dev *vdev;
	unsigned int index;
	struct vpci_vring vr;
	bool running;
	bool broken;
	u16 epoch;
	bool mrg_rxbuf;
	bool csum;
	u8 gso;
	bool pub_stalled;
	bool rings_gone;
	u16 rx_seen;
	struct vpci_misses miss;
	struct vpci_chain chain;
	struct vpci_rx_state rx;
	struct napi_struct napi;
	char irq_name[32];
	cpumask_var_t affinity;
	u64 last_work;
	atomic64_t kicks;
	struct u64_stats_sync syncp;
	struct vpci_q_stats stats;
};

/**
 * struct vpci_dev - one vhost-pci function
 * @pdev: the PCI function (ivshmem-doorbell)
 * @netdev: the interface presented to VM2's stack
 * @regs: BAR0, ivshmem registers
 * @ctrl: control area, the last VPCI_CTRL_SIZE bytes of BAR2, cacheable
 * @peer: VM1's memory (BAR2 offsets [0, peer_mem_size), cacheable) and
 *	the IOTLB that reaches it
 * @hdr: private copy of the control area header, validated at probe and
 *	never read from shared memory again
 * @bar_len: size of BAR2
 * @own_id: this VM's ivshmem peer id (IVPosition)
 * @nvec: MSI-X vectors allocated, hdr.num_vectors
 * @config_irq_name: the config vector in /proc/interrupts
 * @config_work: applies the backend state at probe, before any interrupt,
 *	and again when a pass stopped for a full d2b ring
 * @config_lock: serialises vpci_config_run() between the config vector's
 *	IRQ thread and @config_work
 * @state_lock: serialises writers of the driver section of @ctrl (probe,
 *	ndo_open/stop, MTU changes under RTNL, the config pass)
 * @generation: last backend generation applied, under @state_lock
 * @iotlb: private IOTLB built from b2d messages
 * @dp_lock: protects @iotlb, every queue's ring state and all peer memory
 *	accesses of a burst (so an applied invalidation has no user left)
 * @msg_lock: serialises producers of the d2b ring and @d2b_prod
 * @b2d_cons: private consumer count of b2d (config work only)
 * @d2b_prod: private producer count of d2b, under @msg_lock
 * @rings_mapped: bit per queue whose rings fully translate (config work)
 * @stats: control-path counters (config work)
 * @queues: @nqueues virtqueues
 * @nqueues: 2 * hdr.max_queue_pairs
 * @retry_work: re-polls queues stalled on an unanswered miss
 * @queues_work: sets the stack's queue counts to the pairs VM1 runs
 *	(under RTNL, which the config pass cannot take)
 * @spread_pairs: pairs the last vpci_set_affinity() spread (0: none yet),
 *	written and read with the CPU hotplug lock held
 * @spread_xps: whether that spread set the XPS maps too, as @spread_pairs
 * @cpuhp_online: instance of the CPU-online hotplug state
 * @cpuhp_dead: instance of the CPU-dead hotplug state
 * @device_features: the virtio features offered to VM1 (driver section)
 * @link_up: backend link state, under @state_lock
 * @call_peer: ivshmem peer whose queue vectors are VM1's call eventfds
 *	(hdr.backend_peer_id until the backend names another); written by
 *	the config work, read with READ_ONCE by whoever interrupts VM1
 * @poll_mode: poll VM1's rings instead of waiting for kicks
 * @hybrid_usecs: in interrupt mode, keep polling this long after the last
 *	frame before re-arming kicks (ethtool -C rx-usecs)
 * @miss_timeout: jiffies after which an unanswered miss is a fault
 *	(module parameter miss_timeout_ms, read at probe)
 * @iotlb_gen: bumped on every change of @iotlb, under dp_lock (netlink
 *	dumps use it to flag a table that changed under them)
 * @events: VPCI_EVENTS_* enabled through netlink, READ_ONCE/WRITE_ONCE
 * @event_rs: rate limit of the netlink events of this device
 * @events_dropped: events not sent (rate limit, allocation failure)
 * @debugfs: this device's debugfs directory (NULL without debugfs)
 * @fail_inv_ack: debugfs error injection: invalidation acks to withhold
 * @stale_inv: debugfs error injection: invalidations to ack without
 *	removing their entries (a driver that acks before it is done)
 * @hold_config: debugfs: config passes are skipped while it is set (a
 *	driver slow to look at the control area); clearing it queues one,
 *	READ_ONCE/WRITE_ONCE
 */
struct vpci_dev {
	struct pci_dev *pdev;
	struct net_device *netdev;
	void __iomem *regs;
	struct vpci_ctrl *ctrl;
	struct vpci_peer peer;
	struct vpci_ctrl_hdr hdr;
	u64 bar_len;
	u16 own_id;
	unsigned int nvec;
	char config_irq_name[32];
	struct delayed_work config_work;
	/* one config pass at a time (IRQ thread or work) */
	struct mutex config_lock;
	/* protects the driver section of @ctrl and @generation */
	struct mutex state_lock;
	u32 generation;
	struct vpci_iotlb iotlb;
	/* protects @iotlb, queue ring state and peer accesses */
	spinlock_t dp_lock;
	/* serialises d2b producers */
	spinlock_t msg_lock;
	u32 b2d_cons;
	u32 d2b_prod;
	u32 rings_mapped;
	struct vpci_stats stats;
	struct vpci_queue *queues;
	unsigned int nqueues;
	struct delayed_work retry_work;
	struct work_struct queues_work;
	unsigned int spread_pairs;
	bool spread_xps;
	struct hlist_node cpuhp_online;
	struct hlist_node cpuhp_dead;
	u64 device_features;
	bool link_up;
	u16 call_peer;
	bool poll_mode;
	u32 hybrid_usecs;
	unsigned long miss_timeout;
	u32 iotlb_gen;
	u32 events;
	struct ratelimit_state event_rs;
	atomic64_t events_dropped;
	struct dentry *debugfs;
	atomic_t fail_inv_ack;
	atomic_t stale_inv;
	bool hold_config;
};

/**
 * struct vpci_event - one event for the netlink "events" group
 * @type: VPCI_EVENT_*
 * @queue: virtqueue, 0xffff if none
 * @iova: first IOVA concerned
 * @len: bytes concerned
 * @access: VPCI_PERM_* attempted
 * @reason: VPCI_FAULT_* (faults)
 * @err: the driver's error code (faults)
 */
struct vpci_event {
	u32 type;
	u16 queue;
	u64 iova;
	u64 len;
	u32 access;
	u32 reason;
	int err;
};

/* Add to one counter of a queue; each queue's updaters are serialised. */
static inline void vpci_q_add(struct vpci_queue *q, u64 *ctr, u64 n)
{
	u64_stats_update_begin(&q->syncp);
	*ctr += n;
	u64_stats_update_end(&q->syncp);
}

static inline struct vpci_dev *vpci_from_netdev(struct net_device *dev)
{
	return *(struct vpci_dev **)netdev_priv(dev);
}

/* ctrl.c */
void vpci_ctrl_set_driver_status(struct vpci_dev *vdev, u32 set, u32 clear);
void vpci_ctrl_set_mtu(struct vpci_dev *vdev, unsigned int mtu);
void vpci_ring_backend(struct vpci_dev *vdev, unsigned int vector);
void vpci_config_work(struct work_struct *work);
irqreturn_t vpci_config_thread(int irq, void *data);

/* iotlb.c */
bool vpci_iotlb_process(struct vpci_dev *vdev, bool *more, bool *blocked);
int vpci_post_miss(struct vpci_dev *vdev, u16 queue, u64 iova, u32 perm);
unsigned int vpci_iotlb_copy(struct vpci_dev *vdev, u64 from,
			     struct vpci_iotlb_entry *buf, unsigned int max,
			     u32 *gen);

/* datapath.c */
netdev_tx_t vpci_start_xmit(struct sk_buff *skb, struct net_device *dev);
netdev_features_t vpci_features_check(struct sk_buff *skb, struct net_device *dev,
				      netdev_features_t features);
int vpci_poll(struct napi_struct *napi, int budget);
irqreturn_t vpci_queue_irq(int irq, void *data);
void vpci_dp_sync(struct vpci_dev *vdev);
void vpci_dp_retry_work(struct work_struct *work);
void vpci_queues_work(struct work_struct *work);
void vpci_set_affinity(struct vpci_dev *vdev, unsigned int n, bool xps);
void vpci_dp_misses_forget(struct vpci_dev *vdev, u64 iova, u64 size);
void vpci_dp_stop_all(struct vpci_dev *vdev);
void vpci_dp_set_poll(struct vpci_dev *vdev, bool poll);
void vpci_dp_poll_again(struct vpci_dev *vdev);
int vpci_dp_inject_fault(struct vpci_dev *vdev, unsigned int queue, int err,
			 u64 iova, u64 len);
int vpci_dp_inject_break(struct vpci_dev *vdev, unsigned int queue);
u32 vpci_dp_queue_state(struct vpci_queue *q);

/* netdev.c */
struct net_device *vpci_netdev_alloc(struct vpci_dev *vdev);
void vpci_netdev_update_carrier(struct vpci_dev *vdev);
bool vpci_netdev_is_ours(const struct net_device *dev);

/* netlink.c */
int vpci_nl_init(void);
void vpci_nl_exit(void);
void vpci_nl_event(struct vpci_dev *vdev, const struct vpci_event *ev);

/* debugfs.c: absent without CONFIG_DEBUG_FS */
#if IS_ENABLED(CONFIG_DEBUG_FS)
void vpci_debugfs_init(void);
void vpci_debugfs_exit(void);
void vpci_debugfs_add(struct vpci_dev *vdev);
void vpci_debugfs_del(struct vpci_dev *vdev);
#else
static inline void vpci_debugfs_init(void) {}
static inline void vpci_debugfs_exit(void) {}
static inline void vpci_debugfs_add(struct vpci_dev *vdev) {}
static inline void vpci_debugfs_del(struct vpci_dev *vdev) {}
#endif

/**
 * vpci_q_live() - the queue runs the ring VM1 runs now
 * @q: the queue, under dp_lock
 *
 * The datapath stops touching a ring as soon as the backend publishes it
 * disabled (VM1 paused, reset or went away), not only at the next config
 * pass: VM1 may be writing the ring afresh already.  A VM1 that reset the
 * ring and set it up again since the last pass publishes a new
 * vq_config.epoch: until that pass restarts the queue at its base, the
 * queue's indexes belong to the old run and would read the new ring as
 * corrupt, or write the old run's used entries into it.  Two fields of one
 * line of the control area, which the backend writes only on
 * configuration changes; no ordering needed (a change that lands just
 * after the read is one more burst of the old run, as before the change).
 *
 * Return: true if the datapath may use the queue's ring state.
 */
static inline bool vpci_q_live(const struct vpci_queue *q)
{
	const struct vpci_vq_config *vc = &q->vdev->ctrl->vq_config[q->index];

	return q->running && READ_ONCE(vc->enabled) &&
	       le16_to_cpu(READ_ONCE(vc->epoch)) == q->epoch;
}

/*
 * Error injection: take one withheld invalidation ack if debugfs asked for
 * it.  Always false without debugfs (nothing can set the counter).
 */
static inline bool vpci_withhold_inv_ack(struct vpci_dev *vdev)
{
	return atomic_add_unless(&vdev->fail_inv_ack, -1, 0);
}

/*
 * Error injection: take one invalidation to ack with its entries left in
 * place, if debugfs asked for it (the bug the security hinge forbids, so
 * that tests can show what catches it).  Always false without debugfs.
 */
static inline bool vpci_stale_inv(struct vpci_dev *vdev)
{
	return atomic_add_unless(&vdev->stale_inv, -1, 0);
}

#endif /* _VPCI_H */
