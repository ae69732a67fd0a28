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
#include <linux/minmax.h>
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
/* VIRTIO_F_VERSION_1, without the uapi header that userspace lacks */
#define VPCI_F_VERSION_1	32
int vpci_ctrl_check_features(u64 features, const char **why);

/* core_msg.c */
int vpci_msg_pop(struct vpci_msg_ring *r, u32 *cons, struct vpci_msg *m);
int vpci_msg_push(struct vpci_msg_ring *r, u32 *prod, const struct vpci_msg *m);
int vpci_msg_push_keep(struct vpci_msg_ring *r, u32 *prod,
		       const struct vpci_msg *m, unsigned int keep);
int vpci_msg_room(struct vpci_msg_ring *r, u32 prod);
int vpci_msg_pending(struct vpci_msg_ring *r, u32 cons);

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

struct vpci_iotlb_tree;

/**
 * struct vpci_iotlb - private IOTLB, non-overlapping entries in a tree
 * @tree: the entries in IOVA order and their nodes, private to core_iotlb.c
 *	(a red-black tree; its nodes are allocated once, so updates never
 *	allocate)
 * @n: entries in use
 * @cap: entries allocated (the maximum)
 * @evict: round-robin eviction cursor over the nodes
 * @evictions: entries evicted to make room
 * @gen: bumped by every change (add, del); caches of entries compare it
 * @peer_mem_size: no entry reaches at or past this BAR offset
 *
 * Not locked: the owner (struct vpci_dev) serialises every call.
 */
struct vpci_iotlb {
	struct vpci_iotlb_tree *tree;
	u32 n;
	u32 cap;
	u32 evict;
	u64 evictions;
	u64 gen;
	u64 peer_mem_size;
};

/* core_iotlb.c */
int vpci_iotlb_init(struct vpci_iotlb *t, u32 max_entries, u64 peer_mem_size);
void vpci_iotlb_destroy(struct vpci_iotlb *t);
bool vpci_iotlb_range_ok(u64 iova, u64 size);
int vpci_iotlb_add(struct vpci_iotlb *t, u64 iova, u64 size, u64 bar_offset,
		   u32 perm);
int vpci_iotlb_del(struct vpci_iotlb *t, u64 iova, u64 size);
void vpci_iotlb_del_to_end(struct vpci_iotlb *t, u64 iova);
u32 vpci_iotlb_slice(const struct vpci_iotlb *t, u64 from,
		     struct vpci_iotlb_entry *buf, u32 max);
int vpci_iotlb_translate(const struct vpci_iotlb *t, u64 iova, u64 len,
			 u32 perm, u64 *bar_offset, u64 *contig);
const struct vpci_iotlb_entry *vpci_iotlb_find(const struct vpci_iotlb *t,
					       u64 iova);

/* Split virtqueue flags (VIRTIO 1.x 2.7), spelled here for both builds */
#define VPCI_VRING_DESC_F_NEXT		1
#define VPCI_VRING_DESC_F_WRITE		2
#define VPCI_VRING_DESC_F_INDIRECT	4
#define VPCI_VRING_AVAIL_F_NO_INTERRUPT	1
#define VPCI_VRING_USED_F_NO_NOTIFY	1

/* Longest descriptor chain accepted (virtio-net uses at most MAX_SKB_FRAGS + 2) */
#define VPCI_CHAIN_MAX			64

/**
 * struct vpci_peer - VM1's memory as this side sees it
 * @base: mapping of BAR offsets [0, @size)
 * @size: peer_mem_size
 * @iotlb: translations; its owner's lock is held across each burst
 */
struct vpci_peer {
	u8 *base;
	u64 size;
	struct vpci_iotlb *iotlb;
};

/*
 * Every access to peer memory is announced here first: nothing in the
 * kernel; the fuzz build (VPCI_PEER_ORACLE) checks each one against the
 * IOTLB itself, permission included (userspace/fuzz/fuzz_core.c).
 */
#ifdef VPCI_PEER_ORACLE
void vpci_peer_oracle(const struct vpci_peer *peer, u64 off, u64 len, u32 perm);
#define vpci_peer_access(peer, off, len, perm) vpci_peer_oracle(peer, off, len, perm)
#else
#define vpci_peer_access(peer, off, len, perm) do { } while (0)
#endif

/**
 * struct vpci_seg - one descriptor of a chain
 * @addr: IOVA (or GPA) of the buffer
 * @len: bytes
 */
struct vpci_seg {
	u64 addr;
	u32 len;
};

/**
 * struct vpci_chain - a descriptor chain copied out of the ring
 * @head: head descriptor index, what the used element reports
 * @nout: device-readable segments, first in @seg
 * @nin: device-writable segments, after the readable ones
 * @out_len: bytes readable
 * @in_len: bytes writable
 * @seg: the segments
 */
struct vpci_chain {
	u16 head;
	u16 nout;
	u16 nin;
	u32 out_len;
	u32 in_len;
	struct vpci_seg seg[VPCI_CHAIN_MAX];
};

/**
 * struct vpci_prefetch - a translation a chain not yet taken will need
 * @iova: the first untranslated address
 * @perm: the access (VPCI_PERM_RO or VPCI_PERM_WO)
 */
struct vpci_prefetch {
	u64 iova;
	u32 perm;
};

/* Prefetched misses are distinct per page of this size (VM1's IOMMU's) */
#define VPCI_PREFETCH_PAGE_SHIFT	12
/* Lookups vpci_vring_prefetch() may spend per chain it is asked to read */
#define VPCI_PREFETCH_LOOKUPS_PER_CHAIN	4

/* Translations a queue keeps at hand: its ring pages and the last buffer */
#define VPCI_VRING_TLB_SLOTS		4

/**
 * struct vpci_vring - device-side state of one of VM1's virtqueues
 * @peer: memory and translations
 * @desc: descriptor table address
 * @avail: available ring address
 * @used: used ring address
 * @num: ring size
 * @last_avail: next available entry to take
 * @used_idx: next used entry to fill
 * @used_pub: used index VM1 last saw
 * @used_sig: used index up to which VM1's wish for an interrupt was read
 *	(behind @used_pub when a miss on the event field stopped
 *	vpci_vring_publish() in between)
 * @bad_avail: the avail index that made vpci_vring_avail_idx() fail with
 *	-EPROTO (for the report)
 * @event_idx: VIRTIO_RING_F_EVENT_IDX in use
 * @miss_iova: first untranslated address after an -ENOENT/-EACCES
 * @miss_perm: the permission that was wanted there
 * @tlb: copies of IOTLB entries this queue used last (a per-queue cache,
 *	as vhost's meta cache); valid only while @tlb_gen equals the IOTLB's
 *	gen, so any update or invalidation empties it
 * @tlb_gen: IOTLB generation @tlb was filled under
 * @tlb_next: slot the next fill replaces (round robin)
 * @tlb_hits: translations served from @tlb
 * @tlb_lookups: translations looked up in the IOTLB itself
 */
struct vpci_vring {
	struct vpci_peer *peer;
	u64 desc;
	u64 avail;
	u64 used;
	u16 num;
	u16 last_avail;
	u16 used_idx;
	u16 used_pub;
	u16 used_sig;
	u16 bad_avail;
	bool event_idx;
	u64 miss_iova;
	u32 miss_perm;
	struct vpci_iotlb_entry tlb[VPCI_VRING_TLB_SLOTS];
	u64 tlb_gen;
	u32 tlb_next;
	u64 tlb_hits;
	u64 tlb_lookups;
};

/* core_vring.c */
int vpci_vring_init(struct vpci_vring *vr, struct vpci_peer *peer, u64 desc,
		    u64 avail, u64 used, u16 num, u16 base, bool event_idx);
int vpci_vring_avail_idx(struct vpci_vring *vr, u16 *idx);
int vpci_vring_pop(struct vpci_vring *vr, u16 avail_idx, struct vpci_chain *c);
void vpci_vring_unpop(struct vpci_vring *vr);
unsigned int vpci_vring_prefetch(struct vpci_vring *vr, u16 avail_idx,
				 unsigned int max_chains,
				 struct vpci_chain *scratch,
				 struct vpci_prefetch *out, unsigned int max);
int vpci_chain_read(struct vpci_vring *vr, const struct vpci_chain *c,
		    u32 offset, void *dst, u32 len);
int vpci_chain_write(struct vpci_vring *vr, const struct vpci_chain *c,
		     u32 offset, const void *src, u32 len);
int vpci_vring_push(struct vpci_vring *vr, u16 head, u32 len);
int vpci_vring_used_check(struct vpci_vring *vr, u16 n);

/* struct virtio_net_hdr_mrg_rxbuf: VERSION_1 is required (12 bytes) */
#define VPCI_NET_HDR_LEN	12
/* An Ethernet header: the shortest frame the stack may parse */
#define VPCI_ETH_HLEN		14
int vpci_tx_frame_len(const struct vpci_chain *c, u32 max_frame);
int vpci_vring_publish(struct vpci_vring *vr, bool *notify);
int vpci_vring_kick_after(struct vpci_vring *vr, u16 seen);
int vpci_vring_kick_enable(struct vpci_vring *vr, bool enable);

/**
 * vpci_vring_unsignalled() - used elements VM1 was not told of in full
 * @vr: the ring
 *
 * Return: true while elements were pushed after the last vpci_vring_publish()
 * that succeeded (a miss may have stopped it halfway).
 */
static inline bool vpci_vring_unsignalled(const struct vpci_vring *vr)
{
	return vr->used_sig != vr->used_idx;
}

/* Most VM1 RX buffers one frame may take, malformed ones included */
#define VPCI_RX_MAX_BUFS	64

/**
 * struct vpci_net_ops - what a caller of core_net.c keeps for itself
 * @fault: VM1 posted a bad chain or buffer, or a miss timed out: count
 *	and report it (@iova and @len: what was accessed, 0 when unknown);
 *	the queue goes on
 * @stall: a translation is missing at vr->miss_iova (vr->miss_perm):
 *	true to give the work back and retry once it is answered, false when
 *	the miss lasted too long (then it is a fault)
 * @ring_fault: VM1's ring itself failed with @err: stop the queue
 *
 * Called with the caller's queue lock held (the driver's dp_lock): none may
 * sleep.  @ctx is what the caller passed to the core_net.c function.
 */
struct vpci_net_ops {
	void (*fault)(void *ctx, int err, u64 iova, u64 len);
	bool (*stall)(void *ctx);
	void (*ring_fault)(void *ctx, int err);
};

/**
 * struct vpci_rx_state - the RX buffers one frame is placed in
 * @chain: the chain being taken
 * @first: the frame's first buffer, where the header goes last
 * @heads: heads of the buffers taken
 * @lens: bytes written to each
 * @seen: the avail index that held too few buffers (after -ENOBUFS)
 */
struct vpci_rx_state {
	struct vpci_chain chain;
	struct vpci_chain first;
	u16 heads[VPCI_RX_MAX_BUFS];
	u32 lens[VPCI_RX_MAX_BUFS];
	u16 seen;
};

/**
 * struct vpci_iov - one piece of a frame in the caller's own memory (an
 *	skb's head or one of its page fragments)
 * @base: where the piece is
 * @len: its bytes
 */
struct vpci_iov {
	void *base;
	u32 len;
};

/*
 * Longest frame a GSO header may announce: a 64 KiB IP datagram behind a
 * VLAN Ethernet header.
 */
#define VPCI_GSO_MAX_FRAME	(65535 + 18)

/* struct virtio_net_hdr as VM1 sends it: flags, gso_type, gso_size */
#define VPCI_HDR_F_NEEDS_CSUM	1
#define VPCI_HDR_GSO_NONE	0
#define VPCI_HDR_GSO_TCPV4	1
#define VPCI_HDR_GSO_TCPV6	4
#define VPCI_HDR_GSO_ECN	0x80
/*
 * A GSO frame's Ethernet, IP and TCP headers (up to the end of a 60-byte
 * TCP header from csum_start) lie within its first bytes: the skb's head.
 */
#define VPCI_GSO_MAX_HDR	256

/* core_net.c; vpci_net_rx() returns these or a negative error */
#define VPCI_NET_RX_DONE	0	/* delivered */
#define VPCI_NET_RX_NOBUFS	1	/* kept: too few buffers up to st->seen */
#define VPCI_NET_RX_STALLED	2	/* kept: waiting for a translation */
int vpci_net_rx(struct vpci_vring *vr, struct vpci_rx_state *st, u8 *hdr,
		const struct vpci_iov *iov, unsigned int niov, bool mrg_rxbuf,
		const struct vpci_net_ops *ops, void *ctx);
int vpci_net_hdr_check(const u8 *hdr, u32 len, u32 mtu_max, bool csum, u8 gso);
int vpci_net_tx_pop(struct vpci_vring *vr, struct vpci_chain *c, u16 avail,
		    u32 max_frame, const struct vpci_net_ops *ops, void *ctx);
int vpci_net_tx_read(struct vpci_vring *vr, const struct vpci_chain *c,
		     void *hdr, u32 hdr_len, const struct vpci_iov *iov,
		     unsigned int niov, const struct vpci_net_ops *ops, void *ctx);
/* core_miss.c */
/* Misses a queue may have outstanding (one stalls it, the rest ahead) */
#define VPCI_MISS_SLOTS		32
/* Chains looked at behind the one that stalled, for misses to ask ahead */
#define VPCI_PREFETCH_CHAINS	16

/**
 * struct vpci_miss - a miss asked and not answered yet
 * @page: IOVA >> VPCI_PREFETCH_PAGE_SHIFT (VM1's IOMMU answers per page)
 * @since: when it was asked, in the caller's clock
 */
struct vpci_miss {
	u64 page;
	u64 since;
};

/**
 * struct vpci_misses - a queue's translation misses (vpci_misses_stall())
 * @slot: misses asked and not answered yet: the one the queue waits for
 *	and those asked ahead for the chains behind it
 * @n: entries in @slot
 * @pending: the queue waits for the miss at @wait
 * @wait: the address it waits for
 * @ahead: chains behind the stalled one asked for ahead (0: none)
 * @pchain: scratch chain for looking ahead (vpci_vring_prefetch())
 * @pf_avail: avail index of the last look ahead
 * @pf_gen: IOTLB generation of the last look ahead (~0: none)
 */
struct vpci_misses {
	struct vpci_miss slot[VPCI_MISS_SLOTS];
	unsigned int n;
	bool pending;
	u64 wait;
	unsigned int ahead;
	struct vpci_chain pchain;
	u16 pf_avail;
	u64 pf_gen;
};

/**
 * struct vpci_miss_ops - how a queue's misses reach VM1's IOMMU
 * @post: send a miss for @iova (@perm: the access); @ahead: for a chain
 *	behind the one the queue waits for.  False when it could not be
 *	sent (the message ring is full): nothing is remembered then
 */
struct vpci_miss_ops {
	bool (*post)(void *ctx, u64 iova, u32 perm, bool ahead);
};

/* vpci_misses_stall() returns these (ored), or -ETIMEDOUT */
#define VPCI_MISS_POSTED	1	/* something was sent: ring the backend */
#define VPCI_MISS_LOST		2	/* the stall's own miss was not sent */
void vpci_misses_reset(struct vpci_misses *m, unsigned int ahead);
void vpci_misses_forget(struct vpci_misses *m, u64 iova, u64 size);
bool vpci_misses_ask(struct vpci_misses *m, u64 iova, u32 perm, u64 now,
		     u64 timeout, const struct vpci_miss_ops *ops, void *ctx);
int vpci_misses_stall(struct vpci_misses *m, struct vpci_vring *vr, u64 now,
		      u64 timeout, const struct vpci_miss_ops *ops, void *ctx);

/* vpci_net_signal() returns these or a negative error (a ring fault) */
#define VPCI_NET_SIGNAL_QUIET	0	/* published; VM1 wants no interrupt */
#define VPCI_NET_SIGNAL_NOTIFY	1	/* published; interrupt VM1 */
#define VPCI_NET_SIGNAL_STALLED	2	/* kept: waiting for a translation */
int vpci_net_signal(struct vpci_vring *vr, const struct vpci_net_ops *ops,
		    void *ctx);
int vpci_net_kick_after(struct vpci_vring *vr, u16 seen,
			const struct vpci_net_ops *ops, void *ctx);

#endif /* _VPCI_CORE_H */
