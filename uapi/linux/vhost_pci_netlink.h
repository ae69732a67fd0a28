/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * vhost-pci-net generic netlink family, version 1.
 *
 * Family %VPCI_GENL_NAME, multicast group %VPCI_GENL_MCGRP_EVENTS.  Every
 * request names a device by %VPCI_A_IFINDEX, looked up in the caller's
 * network namespace; an interface that is not driven by vhost_pci_net is
 * refused with -EOPNOTSUPP.  Policies are strict: an attribute a command
 * does not take, a wrong length or a value out of range is -EINVAL (with an
 * extended ack naming the attribute).  docs/control-plane.md has examples;
 * docs/vhost_pci.yaml describes the same family in YNL form.
 */
#ifndef _UAPI_LINUX_VHOST_PCI_NETLINK_H
#define _UAPI_LINUX_VHOST_PCI_NETLINK_H

/** VPCI_GENL_NAME - generic netlink family name */
#define VPCI_GENL_NAME		"vhost_pci"
/** VPCI_GENL_VERSION - family version, in genlmsghdr.version */
#define VPCI_GENL_VERSION	1
/** VPCI_GENL_MCGRP_EVENTS - multicast group of the *_NTF messages */
#define VPCI_GENL_MCGRP_EVENTS	"events"

/** VPCI_HYBRID_USECS_MAX - largest %VPCI_A_HYBRID_USECS accepted */
#define VPCI_HYBRID_USECS_MAX	1000000

/**
 * enum vpci_cmd - commands
 * @VPCI_CMD_UNSPEC: unused
 * @VPCI_CMD_DEV_GET: doit with %VPCI_A_IFINDEX, or dump every device of
 *	the namespace; replies carry the device attributes and one
 *	%VPCI_A_QUEUE nest per virtqueue
 * @VPCI_CMD_IOTLB_DUMP: dump (only) with %VPCI_A_IFINDEX: one message per
 *	private IOTLB entry, a %VPCI_A_IOTLB_ENTRY nest; NLM_F_DUMP_INTR is
 *	set when the table changed while it was being dumped
 * @VPCI_CMD_MODE_SET: set %VPCI_A_MODE, %VPCI_A_HYBRID_USECS and/or
 *	%VPCI_A_EVENTS of %VPCI_A_IFINDEX; needs CAP_NET_ADMIN
 * @VPCI_CMD_FAULT_NTF: event: the datapath refused an access or a
 *	descriptor of VM1 (%VPCI_A_IFINDEX, %VPCI_A_EVENT)
 * @VPCI_CMD_IOTLB_NTF: event: an IOTLB miss was posted or an invalidation
 *	applied; sent only while %VPCI_EVENTS_IOTLB is enabled on the device
 * @__VPCI_CMD_MAX: internal
 * @VPCI_CMD_MAX: highest command
 */
enum vpci_cmd {
	VPCI_CMD_UNSPEC,
	VPCI_CMD_DEV_GET,
	VPCI_CMD_IOTLB_DUMP,
	VPCI_CMD_MODE_SET,
	VPCI_CMD_FAULT_NTF,
	VPCI_CMD_IOTLB_NTF,

	__VPCI_CMD_MAX,
	VPCI_CMD_MAX = __VPCI_CMD_MAX - 1
};

/**
 * enum vpci_mode - how VM1's kicks are waited for
 * @VPCI_MODE_INTERRUPT: NAPI completes and re-arms kicks when idle
 * @VPCI_MODE_POLL: NAPI never completes, VM1 is told not to kick
 * @VPCI_MODE_HYBRID: as interrupt, but polling continues
 *	%VPCI_A_HYBRID_USECS after the last frame
 * @__VPCI_MODE_MAX: internal
 * @VPCI_MODE_MAX: highest mode
 */
enum vpci_mode {
	VPCI_MODE_INTERRUPT,
	VPCI_MODE_POLL,
	VPCI_MODE_HYBRID,

	__VPCI_MODE_MAX,
	VPCI_MODE_MAX = __VPCI_MODE_MAX - 1
};

/**
 * enum vpci_events - bits of %VPCI_A_EVENTS: optional events of a device
 * @VPCI_EVENTS_IOTLB: send %VPCI_CMD_IOTLB_NTF for misses and
 *	invalidations (faults are always sent)
 * @VPCI_EVENTS_ALL: every known bit
 */
enum vpci_events {
	VPCI_EVENTS_IOTLB = 1 << 0,

	VPCI_EVENTS_ALL = VPCI_EVENTS_IOTLB
};

/**
 * enum vpci_a - top-level attributes
 * @VPCI_A_UNSPEC: unused
 * @VPCI_A_IFINDEX: u32, the interface (requests and replies)
 * @VPCI_A_IFNAME: string, its name (replies)
 * @VPCI_A_DEVICE_FEATURES: u64, virtio features the driver offers as device
 * @VPCI_A_PEER_FEATURES: u64, features VM1's driver acknowledged
 * @VPCI_A_MAX_QUEUE_PAIRS: u32, queue pairs the backend wired
 * @VPCI_A_QUEUE_PAIRS: u32, queue pairs VM1 enabled
 * @VPCI_A_MODE: u32, &enum vpci_mode (MODE_SET: the mode to enter; hybrid
 *	needs a non-zero %VPCI_A_HYBRID_USECS, now or from before)
 * @VPCI_A_HYBRID_USECS: u32, 0..%VPCI_HYBRID_USECS_MAX, hybrid poll time
 * @VPCI_A_IOTLB_ENTRIES: u32, translations in the private IOTLB
 * @VPCI_A_IOTLB_CAPACITY: u32, most translations it holds
 * @VPCI_A_IOTLB_EVICTIONS: u64, translations evicted to make room
 * @VPCI_A_EVENTS: u32, &enum vpci_events enabled on the device
 * @VPCI_A_EVENTS_DROPPED: u64, events not sent (rate limit, no memory)
 * @VPCI_A_QUEUE: nest, &enum vpci_queue_a, one per virtqueue (replies)
 * @VPCI_A_IOTLB_ENTRY: nest, &enum vpci_iotlb_a (IOTLB_DUMP replies)
 * @VPCI_A_EVENT: nest, &enum vpci_event_a (*_NTF messages)
 * @VPCI_A_PAD: alignment padding of u64 attributes
 * @__VPCI_A_MAX: internal
 * @VPCI_A_MAX: highest attribute
 */
enum vpci_a {
	VPCI_A_UNSPEC,
	VPCI_A_IFINDEX,
	VPCI_A_IFNAME,
	VPCI_A_DEVICE_FEATURES,
	VPCI_A_PEER_FEATURES,
	VPCI_A_MAX_QUEUE_PAIRS,
	VPCI_A_QUEUE_PAIRS,
	VPCI_A_MODE,
	VPCI_A_HYBRID_USECS,
	VPCI_A_IOTLB_ENTRIES,
	VPCI_A_IOTLB_CAPACITY,
	VPCI_A_IOTLB_EVICTIONS,
	VPCI_A_EVENTS,
	VPCI_A_EVENTS_DROPPED,
	VPCI_A_QUEUE,
	VPCI_A_IOTLB_ENTRY,
	VPCI_A_EVENT,
	VPCI_A_PAD,

	__VPCI_A_MAX,
	VPCI_A_MAX = __VPCI_A_MAX - 1
};

/**
 * enum vpci_queue_state - state of one virtqueue
 * @VPCI_QUEUE_STOPPED: not served (not enabled by VM1, or rings unmapped)
 * @VPCI_QUEUE_RUNNING: served
 * @VPCI_QUEUE_STALLED: served, waiting for the answer to an IOTLB miss
 * @VPCI_QUEUE_BROKEN: stopped after a ring fault until VM1 resets it
 */
enum vpci_queue_state {
	VPCI_QUEUE_STOPPED,
	VPCI_QUEUE_RUNNING,
	VPCI_QUEUE_STALLED,
	VPCI_QUEUE_BROKEN,
};

/**
 * enum vpci_queue_a - attributes of a %VPCI_A_QUEUE nest
 * @VPCI_QUEUE_A_UNSPEC: unused
 * @VPCI_QUEUE_A_INDEX: u32, virtqueue index (2n: VM1's RX of pair n)
 * @VPCI_QUEUE_A_STATE: u32, &enum vpci_queue_state
 * @VPCI_QUEUE_A_ENABLED: u8, 1 when VM1 enabled the ring
 * @VPCI_QUEUE_A_NUM: u32, ring size VM1 configured (0: not configured)
 * @VPCI_QUEUE_A_NOTIFY: u32, VPCI_NOTIFY_* wiring of kick and call
 * @VPCI_QUEUE_A_LAST_AVAIL: u32, next avail index the driver takes
 * @VPCI_QUEUE_A_USED_IDX: u32, next used index the driver fills
 * @VPCI_QUEUE_A_PAD: unused
 * @__VPCI_QUEUE_A_MAX: internal
 * @VPCI_QUEUE_A_MAX: highest attribute
 */
enum vpci_queue_a {
	VPCI_QUEUE_A_UNSPEC,
	VPCI_QUEUE_A_INDEX,
	VPCI_QUEUE_A_STATE,
	VPCI_QUEUE_A_ENABLED,
	VPCI_QUEUE_A_NUM,
	VPCI_QUEUE_A_NOTIFY,
	VPCI_QUEUE_A_LAST_AVAIL,
	VPCI_QUEUE_A_USED_IDX,
	VPCI_QUEUE_A_PAD,

	__VPCI_QUEUE_A_MAX,
	VPCI_QUEUE_A_MAX = __VPCI_QUEUE_A_MAX - 1
};

/**
 * enum vpci_iotlb_a - attributes of a %VPCI_A_IOTLB_ENTRY nest
 * @VPCI_IOTLB_A_UNSPEC: unused
 * @VPCI_IOTLB_A_START: u64, first IOVA
 * @VPCI_IOTLB_A_LAST: u64, last IOVA (inclusive)
 * @VPCI_IOTLB_A_BAR_OFFSET: u64, BAR offset of the first IOVA
 * @VPCI_IOTLB_A_PERM: u32, VPCI_PERM_* bits
 * @VPCI_IOTLB_A_PAD: alignment padding
 * @__VPCI_IOTLB_A_MAX: internal
 * @VPCI_IOTLB_A_MAX: highest attribute
 */
enum vpci_iotlb_a {
	VPCI_IOTLB_A_UNSPEC,
	VPCI_IOTLB_A_START,
	VPCI_IOTLB_A_LAST,
	VPCI_IOTLB_A_BAR_OFFSET,
	VPCI_IOTLB_A_PERM,
	VPCI_IOTLB_A_PAD,

	__VPCI_IOTLB_A_MAX,
	VPCI_IOTLB_A_MAX = __VPCI_IOTLB_A_MAX - 1
};

/**
 * enum vpci_event_type - what a %VPCI_A_EVENT nest reports
 * @VPCI_EVENT_FAULT: a fault (%VPCI_CMD_FAULT_NTF)
 * @VPCI_EVENT_IOTLB_MISS: a miss posted to the backend
 * @VPCI_EVENT_IOTLB_INVALIDATE: an invalidation applied (and acked unless
 *	the ack was withheld by error injection)
 */
enum vpci_event_type {
	VPCI_EVENT_FAULT,
	VPCI_EVENT_IOTLB_MISS,
	VPCI_EVENT_IOTLB_INVALIDATE,
};

/**
 * enum vpci_fault_reason - why an access was refused (the ethtool -S
 *	fault_* counter it is counted in)
 * @VPCI_FAULT_PERM: translation without the needed permission
 * @VPCI_FAULT_MISS_TIMEOUT: a miss nobody answered
 * @VPCI_FAULT_CHAIN: descriptor chain loops or is too long
 * @VPCI_FAULT_HEAD: head index out of range
 * @VPCI_FAULT_RING: ring-level fault, the queue stopped
 * @VPCI_FAULT_DESC: malformed descriptor
 * @__VPCI_FAULT_MAX: internal
 * @VPCI_FAULT_MAX: highest reason
 */
enum vpci_fault_reason {
	VPCI_FAULT_PERM,
	VPCI_FAULT_MISS_TIMEOUT,
	VPCI_FAULT_CHAIN,
	VPCI_FAULT_HEAD,
	VPCI_FAULT_RING,
	VPCI_FAULT_DESC,

	__VPCI_FAULT_MAX,
	VPCI_FAULT_MAX = __VPCI_FAULT_MAX - 1
};

/**
 * enum vpci_event_a - attributes of a %VPCI_A_EVENT nest
 * @VPCI_EVENT_A_UNSPEC: unused
 * @VPCI_EVENT_A_TYPE: u32, &enum vpci_event_type
 * @VPCI_EVENT_A_QUEUE: u32, virtqueue index (0xffff: none, e.g. an
 *	invalidation)
 * @VPCI_EVENT_A_IOVA: u64, first IOVA concerned (0 when unknown)
 * @VPCI_EVENT_A_LEN: u64, bytes concerned (0 when unknown)
 * @VPCI_EVENT_A_ACCESS: u32, VPCI_PERM_* access that was attempted
 * @VPCI_EVENT_A_REASON: u32, &enum vpci_fault_reason (faults only)
 * @VPCI_EVENT_A_ERRNO: s32, the driver's negative error code (faults only)
 * @VPCI_EVENT_A_PAD: alignment padding
 * @__VPCI_EVENT_A_MAX: internal
 * @VPCI_EVENT_A_MAX: highest attribute
 */
enum vpci_event_a {
	VPCI_EVENT_A_UNSPEC,
	VPCI_EVENT_A_TYPE,
	VPCI_EVENT_A_QUEUE,
	VPCI_EVENT_A_IOVA,
	VPCI_EVENT_A_LEN,
	VPCI_EVENT_A_ACCESS,
	VPCI_EVENT_A_REASON,
	VPCI_EVENT_A_ERRNO,
	VPCI_EVENT_A_PAD,

	__VPCI_EVENT_A_MAX,
	VPCI_EVENT_A_MAX = __VPCI_EVENT_A_MAX - 1
};

#endif /* _UAPI_LINUX_VHOST_PCI_NETLINK_H */
