// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net: the datapath.  VM2 plays the device of VM1's virtio-net:
 *
 *  - VM1's TX virtqueue (odd index) is drained by NAPI into VM2's stack;
 *  - VM2's ndo_start_xmit fills VM1's RX virtqueue (even index).
 *
 * All ring state and every peer access of a burst happen under
 * vdev->dp_lock, which also protects the IOTLB: an invalidation applied
 * under it cannot race with a copy, so it is acknowledged right after.
 * A missing translation stalls only its queue: the chain is given back, a
 * miss is posted, and the queue resumes when the config pass sees the
 * update (or gives the chain up as a fault after vdev->miss_timeout).
 */
#include <linux/etherdevice.h>
#include <linux/if_vlan.h>
#include <linux/interrupt.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/virtio_byteorder.h>
#include <linux/virtio_net.h>
#include "compat.h"
#include "vpci.h"
#include "trace.h"

#define VPCI_HDR_LEN	sizeof(struct virtio_net_hdr_mrg_rxbuf)
static_assert(VPCI_HDR_LEN == VPCI_NET_HDR_LEN && ETH_HLEN == VPCI_ETH_HLEN);

/* Pieces of an skb sent to VM1: its head and every page fragment */
#define VPCI_XMIT_IOV	(MAX_SKB_FRAGS + 1)
/* On the stack of ndo_start_xmit and NAPI: bounded whatever MAX_SKB_FRAGS */
static_assert(sizeof(struct vpci_iov) * VPCI_XMIT_IOV <= 1024);

/*
 * Head of an skb for a frame from VM1 longer than the MTU (a GSO frame):
 * room for the Ethernet, IP and TCP headers with options; the rest goes in
 * whole pages, which must fit the skb's fragments.
 */
#define VPCI_RX_HEAD	VPCI_GSO_MAX_HDR
static_assert(DIV_ROUND_UP(VPCI_GSO_MAX_FRAME - VPCI_RX_HEAD, PAGE_SIZE) <=
	      MAX_SKB_FRAGS);

/* The core's names for the virtio_net_hdr fields it checks */
static_assert(VPCI_HDR_GSO_TCPV4 == VIRTIO_NET_HDR_GSO_TCPV4);
static_assert(VPCI_HDR_GSO_TCPV6 == VIRTIO_NET_HDR_GSO_TCPV6);
static_assert(VPCI_HDR_F_NEEDS_CSUM == VIRTIO_NET_HDR_F_NEEDS_CSUM);

/*
 * Count a fault of VM1's on @q, trace it and report it on the netlink
 * "events" group.  @iova/@len: what was being accessed (0 when unknown, e.g.
 * a malformed descriptor).  @ring: the queue stops for it (vpci_q_break()),
 * counted as a ring fault whatever @err says about the access that failed.
 * Called under dp_lock, possibly in softirq.
 */
static void __vpci_fault(struct vpci_queue *q, int err, bool ring, u64 iova,
			 u64 len)
{
	struct vpci_event ev = {
		.type = VPCI_EVENT_FAULT,
		.queue = q->index,
		.iova = iova,
		.len = len,
		.err = err,
	};

	switch (ring ? -EPROTO : err) {
	case -EACCES:
		vpci_q_add(q, &q->stats.fault_perm, 1);
		ev.reason = VPCI_FAULT_PERM;
		break;
	case -ENOENT:
		vpci_q_add(q, &q->stats.fault_miss_timeout, 1);
		ev.reason = VPCI_FAULT_MISS_TIMEOUT;
		break;
	case -ELOOP:
	case -E2BIG:
		vpci_q_add(q, &q->stats.fault_chain, 1);
		ev.reason = VPCI_FAULT_CHAIN;
		break;
	case -ERANGE:
		vpci_q_add(q, &q->stats.fault_head, 1);
		ev.reason = VPCI_FAULT_HEAD;
		break;
	case -EPROTO:
		vpci_q_add(q, &q->stats.fault_ring, 1);
		ev.reason = VPCI_FAULT_RING;
		break;
	default:
		vpci_q_add(q, &q->stats.fault_desc, 1);
		ev.reason = VPCI_FAULT_DESC;
		break;
	}
	/* Translation faults know the access; otherwise the queue's direction. */
	if ((err == -EACCES || err == -ENOENT) && q->vr.miss_perm)
		ev.access = q->vr.miss_perm;
	else
		ev.access = q->index & 1 ? VPCI_PERM_RO : VPCI_PERM_WO;
	trace_vpci_fault(q->vdev->netdev->ifindex, q->index, err, ev.reason,
			 iova, len, ev.access);
	vpci_nl_event(q->vdev, &ev);
	netdev_warn_once(q->vdev->netdev, "queue %u: fault %d from peer (see ethtool -S)\n",
			 q->index, err);
}

/* A fault on one chain or access; the queue goes on.  Under dp_lock. */
static void vpci_fault(struct vpci_queue *q, int err, u64 iova, u64 len)
{
	__vpci_fault(q, err, false, iova, len);
}

/*
 * core_miss.c's way out: post a miss for @iova on @q's behalf (d2b), count
 * it and report it.  False when d2b is full.  Under dp_lock.
 */
static bool vpci_dp_post_miss(void *ctx, u64 iova, u32 perm, bool ahead)
{
	struct vpci_queue *q = ctx;
	struct vpci_dev *vdev = q->vdev;

	if (vpci_post_miss(vdev, q->index, iova, perm))
		return false;
	vpci_q_add(q, &q->stats.iotlb_misses, 1);
	if (ahead)
		vpci_q_add(q, &q->stats.iotlb_prefetch, 1);
	trace_vpci_iotlb_miss(vdev->netdev->ifindex, q->index, iova, perm);
	if (READ_ONCE(vdev->events) & VPCI_EVENTS_IOTLB) {
		struct vpci_event ev = {
			.type = VPCI_EVENT_IOTLB_MISS,
			.queue = q->index,
			.iova = iova,
			.len = 1,
			.access = perm,
		};

		vpci_nl_event(vdev, &ev);
	}
	return true;
}

static const struct vpci_miss_ops vpci_dp_miss_ops = {
	.post = vpci_dp_post_miss,
};

/*
 * A translation is missing at vr.miss_iova.  Returns true when the caller
 * should stall and retry later, false when the miss has lasted longer than
 * vdev->miss_timeout and the chain must be given up as a fault.
 * Called under dp_lock.
 */
static bool vpci_stall(struct vpci_queue *q)
{
	struct vpci_dev *vdev = q->vdev;
	int ret = vpci_misses_stall(&q->miss, &q->vr, get_jiffies_64(),
				    vdev->miss_timeout, &vpci_dp_miss_ops, q);

	if (ret < 0)
		return false;
	if (ret & VPCI_MISS_POSTED)
		vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	/*
	 * No answer comes for an unmapped IOVA: look again after the
	 * timeout, or shortly if the miss could not even be posted.  A miss
	 * asked before still needs a look once it is due: retry_work is one
	 * per device, and another queue's repost may have used it up early
	 * (queue_delayed_work() leaves an earlier one queued as it is).
	 */
	if (ret & VPCI_MISS_LOST)
		mod_delayed_work(system_wq, &vdev->retry_work,
				 msecs_to_jiffies(VPCI_MISS_REPOST_MS));
	else if (ret & VPCI_MISS_POSTED)
		mod_delayed_work(system_wq, &vdev->retry_work,
				 vdev->miss_timeout + 1);
	else
		queue_delayed_work(system_wq, &vdev->retry_work,
				   vdev->miss_timeout + 1);
	return true;
}

/**
 * vpci_dp_misses_forget() - forget the misses an IOTLB message settles
 * @vdev: the device
 * @iova: first address the message covers
 * @size: its bytes; 0 for everything from @iova on (a global flush)
 *
 * Called under dp_lock for an update that was added and for every
 * invalidation.  An update answers the misses on its pages.  An
 * invalidation settles them too: VM1's IOMMU may look a miss up after VM1
 * unmapped its page (QEMU serves the backend channel only between VM1's
 * unmaps), and then no answer ever comes, even once VM1 maps the page
 * again.  A queue that meets the page later must ask again, not wait out
 * the miss timeout on a question nobody will answer.
 */
void vpci_dp_misses_forget(struct vpci_dev *vdev, u64 iova, u64 size)
{
	unsigned int qi;

	for (qi = 0; qi < vdev->nqueues; qi++)
		vpci_misses_forget(&vdev->queues[qi].miss, iova, size);
}

/* Move the core's translation counters of @q into its stats.  Under dp_lock. */
static void vpci_q_account_tlb(struct vpci_queue *q)
{
	if (!q->vr.tlb_hits && !q->vr.tlb_lookups)
		return;
	vpci_q_add(q, &q->stats.iotlb_cache_hits, q->vr.tlb_hits);
	vpci_q_add(q, &q->stats.iotlb_lookups, q->vr.tlb_lookups);
	q->vr.tlb_hits = 0;
	q->vr.tlb_lookups = 0;
}

/* Stop serving a queue for good after a ring-level fault (VM1 reset recovers). */
static void vpci_q_break(struct vpci_queue *q, int err)
{
	__vpci_fault(q, err, true, err == -EPROTO ? 0 : q->vr.miss_iova, 0);
	q->running = false;
	/* Not restarted by the next config change: only a ring reset. */
	q->broken = true;
	WRITE_ONCE(q->vdev->ctrl->vq_state[q->index].stopped, cpu_to_le16(1));
	net_err_ratelimited("%s: queue %u stopped after a ring fault (%d): last avail %u (bad avail %u), used %u published %u\n",
			    netdev_name(q->vdev->netdev), q->index, err,
			    q->vr.last_avail, q->vr.bad_avail, q->vr.used_idx,
			    q->vr.used_pub);
}

static void vpci_net_fault(void *ctx, int err, u64 iova, u64 len)
{
	vpci_fault(ctx, err, iova, len);
}

static bool vpci_net_stall(void *ctx)
{
	return vpci_stall(ctx);
}

static void vpci_net_ring_fault(void *ctx, int err)
{
	vpci_q_break(ctx, err);
}

/*
 * How core_net.c reaches a queue's counters, miss table and state; called
 * under dp_lock, in softirq or with BHs off, so none of them sleeps.
 */
static const struct vpci_net_ops vpci_dp_net_ops = {
	.fault = vpci_net_fault,
	.stall = vpci_net_stall,
	.ring_fault = vpci_net_ring_fault,
};

/**
 * vpci_signal() - publish @q's used elements and interrupt VM1 if it asked
 * @q: the queue, under dp_lock
 *
 * A miss on the used index or VM1's event field (the driver's own IOTLB
 * may have evicted the entry) is a miss like any other: the elements stay
 * pushed and unpublished, @q->pub_stalled holds the queue's further work
 * back, and the publish is retried when the update arrives (vpci_dp_sync(),
 * or the queue's next poll or xmit), or breaks the queue as a ring fault
 * once the miss outlasts vdev->miss_timeout.  A used ring mapped without
 * write permission is a ring fault at once.
 */
static void vpci_signal(struct vpci_queue *q)
{
	bool notify;
	int ret;

	/* After a ring fault nothing more goes to VM1, not even a partial frame. */
	if (q->broken)
		return;
	/*
	 * A miss stalls (vpci_stall()); VM1 unmapping its own used ring under
	 * a running queue, mapping it read-only, or a miss never answered is
	 * a ring fault (vpci_q_break() through the ops).
	 */
	ret = vpci_net_signal(&q->vr, &vpci_dp_net_ops, q);
	if (ret == VPCI_NET_SIGNAL_STALLED) {
		q->pub_stalled = true;
		return;
	}
	/* Held back by the miss until now: the queue waits for nothing more. */
	if (q->pub_stalled)
		q->miss.pending = false;
	q->pub_stalled = false;
	if (ret < 0)
		return;
	notify = ret == VPCI_NET_SIGNAL_NOTIFY;
	WRITE_ONCE(q->vdev->ctrl->vq_state[q->index].used_idx,
		   cpu_to_le16(q->vr.used_idx));
	WRITE_ONCE(q->vdev->ctrl->vq_state[q->index].last_avail_idx,
		   cpu_to_le16(q->vr.last_avail));
	trace_vpci_notify(q->vdev->netdev->ifindex, q->index, q->vr.used_idx,
			  notify);
	if (notify) {
		vpci_ring_backend(q->vdev, VPCI_VEC_QUEUE(q->index));
		vpci_q_add(q, &q->stats.notify_sent, 1);
	} else {
		vpci_q_add(q, &q->stats.notify_suppressed, 1);
	}
}

/*
 * Publish what a miss held back in vpci_signal(), if @q runs.  Returns true
 * when the queue no longer waits for it (published, or broken).  Under
 * dp_lock.
 */
static bool vpci_signal_retry(struct vpci_queue *q)
{
	if (!q->pub_stalled || !vpci_q_live(q))
		return false;
	vpci_signal(q);
	return !q->pub_stalled;
}

/*
 * Copy one skb into VM1's RX buffers.  Returns 0 when delivered, -EAGAIN
 * when the caller must stop the queue (no buffers or a translation miss:
 * the skb is kept), or another error when the frame was dropped.
 */
static int vpci_rx_one(struct vpci_queue *q, struct sk_buff *skb)
{
	struct virtio_net_hdr_mrg_rxbuf hdr;
	struct vpci_iov iov[VPCI_XMIT_IOV];
	struct skb_shared_info *sh = skb_shinfo(skb);
	unsigned int i, n = 0;
	int ret;

	/*
	 * CHECKSUM_PARTIAL and GSO types reach here only when VM1 takes them
	 * (q->csum, q->gso); num_buffers is filled in by vpci_net_rx().
	 */
	if (virtio_net_hdr_from_skb(skb, &hdr.hdr, true, false, 0))
		return -EINVAL;
	hdr.num_buffers = 0;
	/*
	 * The head and the page fragments, read in place.  No frag_list
	 * (no NETIF_F_FRAGLIST) and no highmem page (no NETIF_F_HIGHDMA):
	 * the stack linearizes those before ndo_start_xmit.
	 */
	iov[n++] = (struct vpci_iov){ skb->data, skb_headlen(skb) };
	for (i = 0; i < sh->nr_frags; i++)
		iov[n++] = (struct vpci_iov){ skb_frag_address(&sh->frags[i]),
					      skb_frag_size(&sh->frags[i]) };
	ret = vpci_net_rx(&q->vr, &q->rx, (u8 *)&hdr, iov, n, q->mrg_rxbuf,
			  &vpci_dp_net_ops, q);
	switch (ret) {
	case VPCI_NET_RX_DONE:
		/*
		 * Whatever stalled the queue was served.  A stale miss.pending
		 * would keep kicks off after the next "no buffers" stall (the
		 * queue then waits for retry_work) and turn the next miss at a
		 * reused IOVA into an instant miss timeout.
		 */
		q->miss.pending = false;
		return 0;
	case VPCI_NET_RX_NOBUFS:
	case -ENOBUFS:
		/*
		 * Too few buffers up to rx.seen: wait for VM1 to go past it.
		 * Every chain up to there translated, so no miss is waited for
		 * any more (a stale miss.pending would keep kicks off and the
		 * queue asleep for good).
		 */
		q->rx_seen = q->rx.seen;
		q->miss.pending = false;
		return ret == -ENOBUFS ? ret : -EAGAIN;
	case VPCI_NET_RX_STALLED:
		return -EAGAIN;
	}
	return ret;
}

/* Does VM1 take @skb's GSO type?  @gso: the queue's vpci_queue.gso */
static bool vpci_gso_ok(u8 gso, const struct sk_buff *skb)
{
	unsigned int t = skb_shinfo(skb)->gso_type;

	if (!(t & (SKB_GSO_TCPV4 | SKB_GSO_TCPV6)) ||
	    (t & ~(SKB_GSO_TCPV4 | SKB_GSO_TCPV6 | SKB_GSO_DODGY)))
		return false;
	return (!(t & SKB_GSO_TCPV4) || (gso & BIT(VIRTIO_NET_HDR_GSO_TCPV4))) &&
	       (!(t & SKB_GSO_TCPV6) || (gso & BIT(VIRTIO_NET_HDR_GSO_TCPV6)));
}

/**
 * vpci_features_check() - ndo_features_check: segment in software what VM1
 *	does not take whole
 * @skb: the frame about to be sent
 * @dev: our netdev
 * @features: what the stack may leave to us
 *
 * The netdev offers TSO whatever VM1 negotiated (VM1 may renegotiate at
 * any time); a GSO frame for a queue whose VM1 lacks GUEST_TSO4/6 is
 * segmented by the stack instead.  Read without dp_lock: a value that
 * changes before the frame is sent is caught in vpci_start_xmit().
 *
 * Return: @features, without the GSO ones when VM1 does not take @skb's.
 */
netdev_features_t vpci_features_check(struct sk_buff *skb, struct net_device *dev,
				      netdev_features_t features)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);
	struct vpci_queue *q = &vdev->queues[2 * skb_get_queue_mapping(skb)];

	features = vlan_features_check(skb, features);
	if (skb_is_gso(skb) && !vpci_gso_ok(READ_ONCE(q->gso), skb))
		features &= ~NETIF_F_GSO_MASK;
	return features;
}

/**
 * vpci_start_xmit() - ndo_start_xmit: copy into VM1's RX virtqueue
 * @skb: the frame
 * @dev: our netdev
 *
 * Return: NETDEV_TX_OK, or NETDEV_TX_BUSY with the queue stopped when VM1
 * has no buffers or a translation is being fetched (nothing is dropped for
 * that; the queue wakes on VM1's kick or on the IOTLB update).
 */
netdev_tx_t vpci_start_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);
	u16 qi = skb_get_queue_mapping(skb);
	struct vpci_queue *q = &vdev->queues[2 * qi];
	unsigned int len = skb->len;
	bool partial, gso = skb_is_gso(skb);
	int err;

	/*
	 * A frag_list is never sent (no NETIF_F_FRAGLIST) and would be missed
	 * by vpci_rx_one(); fragments the CPU cannot read (device memory)
	 * cannot be copied.
	 */
	if ((unlikely(skb_has_frag_list(skb)) && skb_linearize(skb)) ||
	    unlikely(!vpci_skb_frags_readable(skb))) {
		dev_core_stats_tx_dropped_inc(dev);
		dev_kfree_skb_any(skb);
		return NETDEV_TX_OK;
	}

	spin_lock(&vdev->dp_lock);
	vpci_signal_retry(q);
	/*
	 * q->csum and q->gso are stable under dp_lock.  VM1 without GUEST_CSUM
	 * gets the checksum done; a GSO frame VM1 no longer takes (it
	 * renegotiated after vpci_features_check() looked) is dropped.
	 */
	if (!vpci_q_live(q) || (gso && !vpci_gso_ok(q->gso, skb)) ||
	    (skb->ip_summed == CHECKSUM_PARTIAL && !q->csum &&
	     skb_checksum_help(skb))) {
		spin_unlock(&vdev->dp_lock);
		dev_core_stats_tx_dropped_inc(dev);
		dev_kfree_skb_any(skb);
		return NETDEV_TX_OK;
	}
	if (q->pub_stalled) {
		/* Frames already written wait for a translation: nothing more. */
		netif_stop_subqueue(dev, qi);
		vpci_q_add(q, &q->stats.stalls, 1);
		vpci_q_account_tlb(q);
		spin_unlock(&vdev->dp_lock);
		return NETDEV_TX_BUSY;
	}
	partial = skb->ip_summed == CHECKSUM_PARTIAL;
	err = vpci_rx_one(q, skb);
	if (err == -EAGAIN) {
		netif_stop_subqueue(dev, qi);
		/*
		 * Ask VM1 to kick once it posts past what this frame saw, then
		 * look once more.  Not on any avail != last_avail: a frame that
		 * needs more buffers than VM1 posted would be retried at once,
		 * forever (a hostile VM1 posting one buffer short).
		 */
		if (!q->miss.pending &&
		    vpci_net_kick_after(&q->vr, q->rx_seen, &vpci_dp_net_ops, q) > 0)
			netif_wake_subqueue(dev, qi);
		vpci_q_add(q, &q->stats.stalls, 1);
		if (vpci_vring_unsignalled(&q->vr))
			vpci_signal(q);
		vpci_q_account_tlb(q);
		spin_unlock(&vdev->dp_lock);
		return NETDEV_TX_BUSY;
	}
	if (!netdev_xmit_more() || netif_xmit_stopped(netdev_get_tx_queue(dev, qi)))
		vpci_signal(q);
	vpci_q_account_tlb(q);
	spin_unlock(&vdev->dp_lock);

	if (err) {
		dev_core_stats_tx_dropped_inc(dev);
		dev_kfree_skb_any(skb);
		return NETDEV_TX_OK;
	}
	vpci_q_add(q, &q->stats.packets, 1);
	vpci_q_add(q, &q->stats.bytes, len);
	if (partial)
		vpci_q_add(q, &q->stats.csum_partial, 1);
	if (gso)
		vpci_q_add(q, &q->stats.gso, 1);
	/* Delivered: not a drop for the drop monitor. */
	dev_consume_skb_any(skb);
	return NETDEV_TX_OK;
}

/*
 * Apply the virtio_net_hdr VM1 sent with a frame: the rules of
 * vpci_net_hdr_check() (what was negotiated, GSO only with a partial
 * checksum and a segment size, only GSO frames over @mtu_max), then
 * virtio_net_hdr_to_skb() checks the offsets and headers against the frame
 * and sets the skb up.  Returns 0 or -EINVAL (a fault).
 */
static int vpci_rx_hdr(struct vpci_queue *q, struct sk_buff *skb,
		       const struct virtio_net_hdr *h, u32 mtu_max)
{
	if (vpci_net_hdr_check((const u8 *)h, skb->len, mtu_max, q->csum, q->gso))
		return -EINVAL;
	if (virtio_net_hdr_to_skb(skb, h, true))
		return -EINVAL;
	/* The helper keeps a "GSO" frame no longer than one segment linear. */
	if (!skb_is_gso(skb) && skb->len > mtu_max)
		return -EINVAL;
	if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
		vpci_q_add(q, &q->stats.csum_partial, 1);
	if (skb_is_gso(skb))
		vpci_q_add(q, &q->stats.gso, 1);
	return 0;
}

/*
 * An skb for a @len-byte frame from VM1 and the pieces to read it into
 * (*@n of them): linear up to @mtu_max, else VPCI_RX_HEAD bytes of head and
 * whole pages.  NULL when memory is short.
 */
static struct sk_buff *vpci_rx_skb(struct vpci_queue *q, u32 len, u32 mtu_max,
				   struct vpci_iov *iov, unsigned int *n)
{
	u32 head = len <= mtu_max ? len : min_t(u32, len, VPCI_RX_HEAD), off, size;
	struct sk_buff *skb = napi_alloc_skb(&q->napi, head);

	if (!skb)
		return NULL;
	iov[0] = (struct vpci_iov){ skb_put(skb, head), head };
	*n = 1;
	for (off = head; off < len; off += size) {
		struct page *page = dev_alloc_page();

		if (!page) {
			kfree_skb(skb);	/* and the pages added so far */
			return NULL;
		}
		size = min_t(u32, len - off, PAGE_SIZE);
		skb_add_rx_frag(skb, *n - 1, page, 0, size, PAGE_SIZE);
		iov[(*n)++] = (struct vpci_iov){ page_address(page), size };
	}
	return skb;
}

/* Take one frame from VM1's TX virtqueue.  Returns 1, 0 (empty or stalled). */
static int vpci_tx_one(struct vpci_queue *q, u16 avail, struct sk_buff **pskb)
{
	struct net_device *dev = q->vdev->netdev;
	u32 mtu_max = READ_ONCE(dev->mtu) + VLAN_ETH_HLEN;
	struct vpci_iov iov[VPCI_XMIT_IOV];
	struct virtio_net_hdr hdr;
	struct sk_buff *skb;
	unsigned int n;
	int len, err;

	*pskb = NULL;
	/* With HOST_TSO4/6 a frame may be a GSO one, up to 64 KiB */
	len = vpci_net_tx_pop(&q->vr, &q->chain, avail,
			      q->gso ? max_t(u32, mtu_max, VPCI_GSO_MAX_FRAME) : mtu_max,
			      &vpci_dp_net_ops, q);
	if (len <= 0)
		return len ? 1 : 0;	/* a bad chain consumed, or nothing */
	skb = vpci_rx_skb(q, len, mtu_max, iov, &n);
	if (!skb) {
		vpci_vring_unpop(&q->vr);
		return 0;
	}
	err = vpci_net_tx_read(&q->vr, &q->chain, &hdr, sizeof(hdr), iov, n,
			       &vpci_dp_net_ops, q);
	if (err == -EAGAIN || err == -EPIPE) {
		kfree_skb(skb);
		return 0;
	}
	if (!err && vpci_rx_hdr(q, skb, &hdr, mtu_max)) {
		err = -EINVAL;
		vpci_fault(q, err, q->chain.seg[0].addr, len);
	}
	if (err) {
		kfree_skb(skb);
		return 1;
	}
	q->miss.pending = false;
	*pskb = skb;
	return 1;
}

/* Wake transmit queue @qp if VM1 posted RX buffers past what it waited on. */
static void vpci_poll_rx_buffers(struct vpci_dev *vdev, unsigned int qp)
{
	struct vpci_queue *rq = &vdev->queues[2 * qp];
	bool wake = false;
	u16 avail;

	if (!netif_tx_queue_stopped(netdev_get_tx_queue(vdev->netdev, qp)))
		return;
	spin_lock(&vdev->dp_lock);
	if (vpci_q_live(rq) && !rq->miss.pending &&
	    !vpci_vring_avail_idx(&rq->vr, &avail) && avail != rq->rx_seen)
		wake = true;
	spin_unlock(&vdev->dp_lock);
	if (wake)
		netif_wake_subqueue(vdev->netdev, qp);
}

/**
 * vpci_poll() - NAPI: drain VM1's TX virtqueue into the stack
 * @napi: the queue's NAPI context
 * @budget: frames allowed
 *
 * Interrupt mode completes NAPI and re-arms VM1's kicks when the ring is
 * empty; hybrid mode (rx-usecs > 0) first keeps polling that long after
 * the last frame; poll mode never completes and never asks for kicks.
 *
 * Return: frames received (budget to stay scheduled).
 */
int vpci_poll(struct napi_struct *napi, int budget)
{
	struct vpci_queue *q = container_of(napi, struct vpci_queue, napi);
	struct vpci_dev *vdev = q->vdev;
	struct sk_buff_head list;
	struct sk_buff *skb;
	int done = 0, work = 0;
	bool more = false, live, go;
	u16 avail;

	__skb_queue_head_init(&list);
	spin_lock(&vdev->dp_lock);
	live = vpci_q_live(q);
	/*
	 * Used elements a miss held back go out first, and no chain is taken
	 * before they did: the update or the miss timeout schedules us again.
	 */
	if (vpci_signal_retry(q))
		live = vpci_q_live(q);
	go = live && !q->pub_stalled;
	if (go && !vpci_vring_avail_idx(&q->vr, &avail)) {
		/* Each chain: VM1 may take the ring back mid-burst. */
		while (work < budget && (live = vpci_q_live(q)) &&
		       vpci_tx_one(q, avail, &skb) == 1) {
			work++;
			if (skb)
				__skb_queue_tail(&list, skb);
		}
		/* Nothing more into a ring VM1 took back, not even used->idx. */
		if (work && live)
			vpci_signal(q);
		more = work == budget;
		/*
		 * Every chain taken: no miss is waited for any more (one on the
		 * avail ring was served).  A stale miss.pending would keep kicks
		 * off, the queue then moving only when retry_work polls it.
		 */
		if (live && !q->pub_stalled && avail == q->vr.last_avail)
			q->miss.pending = false;
	} else if (go) {
		/*
		 * avail ring untranslated (wait for the miss, up to the miss
		 * timeout), unreadable or corrupt: a ring fault either way,
		 * reported with the address when there is one.
		 */
		int err = vpci_vring_avail_idx(&q->vr, &avail);

		if (err != -ENOENT || !vpci_stall(q))
			vpci_q_break(q, err == -ENOENT || err == -EACCES ? err : -EPROTO);
	}
	vpci_q_account_tlb(q);
	spin_unlock(&vdev->dp_lock);

	while ((skb = __skb_dequeue(&list))) {
		vpci_q_add(q, &q->stats.packets, 1);
		vpci_q_add(q, &q->stats.bytes, skb->len);
		skb_record_rx_queue(skb, q->index / 2);
		skb->protocol = eth_type_trans(skb, vdev->netdev);
		napi_gro_receive(napi, skb);
		done++;
	}
	if (more)
		return budget;
	/*
	 * Poll mode polls a queue VM1 runs on an interface that is up; a
	 * stopped queue, one VM1 took back (vpci_q_live()) or a down
	 * interface completes like interrupt mode instead of spinning (the
	 * queue's start and ndo_open schedule NAPI again).
	 */
	if (READ_ONCE(vdev->poll_mode) && live && netif_running(vdev->netdev)) {
		/* Nobody kicks in poll mode: watch VM1's RX buffers too. */
		vpci_poll_rx_buffers(vdev, q->index / 2);
		return budget;
	}
	if (work)
		q->last_work = ktime_get_ns();
	else if (ktime_get_ns() - q->last_work <
		 (u64)READ_ONCE(vdev->hybrid_usecs) * NSEC_PER_USEC)
		return budget;		/* hybrid: keep polling a while */

	if (napi_complete_done(napi, done) && !READ_ONCE(vdev->poll_mode)) {
		/*
		 * Re-arm kicks, then catch what raced with it.  A miss on
		 * the request stalls the queue (the update schedules NAPI
		 * again, vpci_dp_sync()); before, it was ignored and the
		 * queue slept with no kick requested.  One VM1 never answers
		 * is asked again after each miss timeout (retry_work polls,
		 * the poll finds nothing and clears miss.pending): VM1's own
		 * queue waits, VM2 spends one miss per timeout on it.
		 */
		spin_lock(&vdev->dp_lock);
		if (vpci_q_live(q) && !q->miss.pending &&
		    vpci_net_kick_after(&q->vr, q->vr.last_avail,
					&vpci_dp_net_ops, q) > 0)
			more = true;
		vpci_q_account_tlb(q);
		spin_unlock(&vdev->dp_lock);
		if (more)
			napi_schedule(napi);
	}
	return done;
}

/**
 * vpci_queue_irq() - VM1 kicked one of its virtqueues
 * @irq: the MSI-X vector
 * @data: the queue
 *
 * Return: IRQ_HANDLED.
 */
irqreturn_t vpci_queue_irq(int irq, void *data)
{
	struct vpci_queue *q = data;

	atomic64_inc(&q->kicks);
	trace_vpci_kick(q->vdev->netdev->ifindex, q->index);
	if (q->index & 1)
		napi_schedule(&q->napi);
	else
		netif_wake_subqueue(q->vdev->netdev, q->index / 2);
	return IRQ_HANDLED;
}

/*
 * The GSO types (BIT(VIRTIO_NET_HDR_GSO_*)) VM1 negotiated for queue @i:
 * HOST_TSO4/6 for its TX (odd), GUEST_TSO4/6 for its RX (even).  Both
 * need the matching checksum feature (VIRTIO 1.x 5.1.3.1); the caller
 * checks that.
 */
static u8 vpci_gso_types(u64 features, unsigned int i)
{
	u8 gso = 0;

	if (features & BIT_ULL(i & 1 ? VIRTIO_NET_F_HOST_TSO4 : VIRTIO_NET_F_GUEST_TSO4))
		gso |= BIT(VIRTIO_NET_HDR_GSO_TCPV4);
	if (features & BIT_ULL(i & 1 ? VIRTIO_NET_F_HOST_TSO6 : VIRTIO_NET_F_GUEST_TSO6))
		gso |= BIT(VIRTIO_NET_HDR_GSO_TCPV6);
	return gso;
}

/**
 * vpci_dp_sync() - start and stop queues to match the control area
 * @vdev: the device
 *
 * Called from the config pass after the IOTLB was updated and before the
 * generation is acknowledged: a queue the backend disabled (GET_VRING_BASE)
 * is stopped, under dp_lock, with its progress published, before the
 * backend may read it.  Queues waiting on a miss are kicked to retry.
 *
 * A pass sees only the latest state.  When VM1 reset a ring and set it up
 * again since the last pass (a reconnect), enabled never read 0 here and
 * the addresses may be the same: vq_config.epoch tells the run apart.  The
 * old run's position and ring fault are dropped and the ring starts at
 * its base, which also goes back into vq_state: the old run may have
 * published its position over the base the backend seeded there.
 */
void vpci_dp_sync(struct vpci_dev *vdev)
{
	struct vpci_backend_state *bs = &vdev->ctrl->backend;
	unsigned int i, nq = vdev->nqueues;
	u64 features = le64_to_cpu(READ_ONCE(bs->features));
	bool running_before[VPCI_MAX_QUEUES], started[VPCI_MAX_QUEUES];
	bool resumed[VPCI_MAX_QUEUES];
	const char *why;
	bool usable;

	/* A legacy VM1's 10-byte headers would be misparsed: serve nothing. */
	usable = !vpci_ctrl_check_features(features, &why);
	spin_lock_bh(&vdev->dp_lock);
	for (i = 0; i < nq; i++) {
		struct vpci_queue *q = &vdev->queues[i];
		struct vpci_vq_config *vc = &vdev->ctrl->vq_config[i];
		/*
		 * Rings of a running queue that no invalidation reached but
		 * that no longer translate lost an entry the IOTLB evicted:
		 * vpci_map_rings() asked for it again, and the datapath waits
		 * on that miss like any other (up to the miss timeout).
		 */
		bool mapped = (vdev->rings_mapped & BIT(i)) ||
			      (q->running && !q->rings_gone);
		bool want = READ_ONCE(vc->enabled) && mapped &&
			    !(le32_to_cpu(READ_ONCE(bs->status)) & VPCI_BS_BROKEN);

		u16 epoch = le16_to_cpu(READ_ONCE(vc->epoch));
		bool renewed = epoch != q->epoch;
		u64 desc = le64_to_cpu(READ_ONCE(vc->desc));
		u64 avail = le64_to_cpu(READ_ONCE(vc->avail));
		u64 used = le64_to_cpu(READ_ONCE(vc->used));
		u16 num = le16_to_cpu(READ_ONCE(vc->num));

		if (want && !usable) {
			net_err_ratelimited("%s: queue %u not started: %s (features %#llx)\n",
					    netdev_name(vdev->netdev), i, why, features);
			want = false;
		}

		running_before[i] = q->running;
		started[i] = false;
		resumed[i] = false;
		if (vdev->rings_mapped & BIT(i))
			q->rings_gone = false;	/* VM1 mapped them again */
		/*
		 * Disabled, VM1 moved the ring under a running queue, or a
		 * new run of it (a reset this pass did not see): stop.
		 */
		if (q->running && (!want || renewed || desc != q->vr.desc ||
				   avail != q->vr.avail || used != q->vr.used ||
				   num != q->vr.num)) {
			q->running = false;
			if (renewed) {
				/*
				 * The old run may have published its position
				 * over the base the backend seeded for the new
				 * one (GET_VRING_BASE before we run it reads it).
				 */
				WRITE_ONCE(vdev->ctrl->vq_state[i].last_avail_idx,
					   READ_ONCE(vc->base));
				netdev_info(vdev->netdev,
					    "queue %u: run %u replaced by %u at %u\n",
					    i, q->epoch, epoch, q->vr.last_avail);
			} else {
				WRITE_ONCE(vdev->ctrl->vq_state[i].last_avail_idx,
					   cpu_to_le16(q->vr.last_avail));
				WRITE_ONCE(vdev->ctrl->vq_state[i].used_idx,
					   cpu_to_le16(q->vr.used_idx));
				netdev_info(vdev->netdev, "queue %u: stopped at %u\n",
					    i, q->vr.last_avail);
			}
			/*
			 * Still enabled but VM1 unmapped its rings: a ring
			 * fault.  The queue stays stopped until VM1 disables
			 * the ring: restarting it at vc->base would replay.
			 */
			if (!renewed && READ_ONCE(vc->enabled) && !mapped) {
				netdev_err(vdev->netdev, "queue %u: rings no longer translate\n",
					   i);
				vpci_q_break(q, -EPROTO);
			}
		}
		/* A new run recovers a broken queue, as a disable does. */
		if (renewed)
			q->broken = false;
		if (want && !q->running && !q->broken) {
			q->epoch = epoch;
			if (vpci_vring_init(&q->vr, &vdev->peer, desc, avail, used,
					    num, le16_to_cpu(READ_ONCE(vc->base)),
					    features & BIT_ULL(VIRTIO_RING_F_EVENT_IDX))) {
				q->broken = true;
				netdev_err(vdev->netdev, "queue %u: bad ring geometry\n", i);
				continue;
			}
			q->mrg_rxbuf = features & BIT_ULL(VIRTIO_NET_F_MRG_RXBUF);
			q->csum = features & BIT_ULL(i & 1 ? VIRTIO_NET_F_CSUM :
							     VIRTIO_NET_F_GUEST_CSUM);
			/* vpci_features_check() reads it without dp_lock */
			WRITE_ONCE(q->gso, q->csum ? vpci_gso_types(features, i) : 0);
			vpci_misses_reset(&q->miss, VPCI_PREFETCH_CHAINS);
			q->pub_stalled = false;
			q->rings_gone = false;
			q->rx_seen = q->vr.last_avail;
			q->running = true;
			started[i] = true;
			/* Poll mode (default_poll, or set before VM1 came): no kicks */
			if (READ_ONCE(vdev->poll_mode))
				vpci_vring_kick_enable(&q->vr, false);
			WRITE_ONCE(vdev->ctrl->vq_state[i].stopped, 0);
			netdev_info(vdev->netdev, "queue %u: started at %u\n", i,
				    q->vr.last_avail);
		}
		/* The update a held-back publish waited for may be in. */
		resumed[i] = vpci_signal_retry(q);
		if (!READ_ONCE(vc->enabled))
			q->broken = false;	/* VM1 reset recovers a broken queue */
	}
	spin_unlock_bh(&vdev->dp_lock);

	/*
	 * Process context: napi_schedule() only raises NET_RX, which would
	 * wait for the next hard interrupt (up to a tick); local_bh_enable()
	 * runs it now.
	 */
	local_bh_disable();
	for (i = 0; i < nq; i++) {
		struct vpci_queue *q = &vdev->queues[i];

		if (!q->running)
			continue;
		if (i & 1)
			napi_schedule(&q->napi);
		else if (started[i] || q->miss.pending || resumed[i])
			netif_wake_subqueue(vdev->netdev, i / 2);
	}
	local_bh_enable();
	/* A pair VM1 enabled or disabled: the stack's queue counts follow. */
	for (i = 0; i < nq; i += 2) {
		if (READ_ONCE(vdev->queues[i].running) != running_before[i]) {
			schedule_work(&vdev->queues_work);
			break;
		}
	}
	vpci_netdev_update_carrier(vdev);
}

/**
 * vpci_queues_work() - give the stack as many queues as VM1 runs pairs
 * @work: &vpci_dev.queues_work
 *
 * VM1's virtio-net enables pairs 0..n-1 (ethtool -L in VM1; its QEMU
 * answers VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET and enables the rings): the
 * stack hashes frames over that many TX queues, and records as many RX
 * queues.  One at least, so the interface works before VM1 comes.  Frames
 * the stack sent to a pair VM1 disabled before this ran are dropped (and
 * counted), as when VM1 is away.
 */
void vpci_queues_work(struct work_struct *work)
{
	struct vpci_dev *vdev = container_of(work, struct vpci_dev, queues_work);
	struct net_device *dev = vdev->netdev;
	unsigned int i, n = 1;
	int err;

	/* dp_lock: q->running; a later change schedules this work again */
	spin_lock_bh(&vdev->dp_lock);
	for (i = 0; i < vdev->nqueues; i += 2)
		if (vdev->queues[i].running)
			n = i / 2 + 1;
	spin_unlock_bh(&vdev->dp_lock);

	rtnl_lock();
	/*
	 * Not before register_netdev(): probe schedules this work once the
	 * netdev is registered (queue counts and XPS maps of an unregistered
	 * device would leak if registration failed).
	 */
	if (dev->reg_state != NETREG_REGISTERED) {
		rtnl_unlock();
		return;
	}
	if (n != dev->real_num_tx_queues) {
		err = netif_set_real_num_queues(dev, n, n);
		if (err)
			netdev_warn(dev, "%u queue pairs not set: %d\n", n, err);
		else
			netdev_info(dev, "%u queue pair(s) in use\n", n);
		/* Vectors and XPS maps for the pairs that run now. */
		if (!err)
			vpci_set_affinity(vdev, n, true);
	}
	rtnl_unlock();
}

/**
 * vpci_dp_retry_work() - look again at queues stalled on a miss
 * @work: &vpci_dev.retry_work
 *
 * Misses for IOVAs VM1 never mapped get no answer; this turns them into
 * faults after vdev->miss_timeout instead of a queue stalled forever.  A
 * publish held back by a miss is retried here itself: an idle queue has
 * no frame that would retry it.
 */
void vpci_dp_retry_work(struct work_struct *work)
{
	struct vpci_dev *vdev = container_of(to_delayed_work(work),
					     struct vpci_dev, retry_work);
	unsigned int i;

	spin_lock_bh(&vdev->dp_lock);
	for (i = 0; i < vdev->nqueues; i++)
		vpci_signal_retry(&vdev->queues[i]);
	spin_unlock_bh(&vdev->dp_lock);
	local_bh_disable();	/* NET_RX runs at local_bh_enable(), see vpci_dp_sync() */
	for (i = 0; i < vdev->nqueues; i++) {
		struct vpci_queue *q = &vdev->queues[i];

		if (!READ_ONCE(q->running) || !READ_ONCE(q->miss.pending))
			continue;
		if (i & 1)
			napi_schedule(&q->napi);
		else
			netif_wake_subqueue(vdev->netdev, i / 2);
	}
	local_bh_enable();
}

/**
 * vpci_dp_set_poll() - switch between poll and interrupt mode
 * @vdev: the device
 * @poll: true for poll mode
 *
 * No frame is lost: entering poll mode tells VM1 not to kick and schedules
 * every NAPI context, which then never completes; leaving it lets the next
 * empty poll complete and re-arm kicks (with a re-check of the ring).
 */
void vpci_dp_set_poll(struct vpci_dev *vdev, bool poll)
{
	unsigned int i;

	WRITE_ONCE(vdev->poll_mode, poll);
	spin_lock_bh(&vdev->dp_lock);
	for (i = 0; i < vdev->nqueues; i++)
		if (vpci_q_live(&vdev->queues[i]))
			vpci_vring_kick_enable(&vdev->queues[i].vr, !poll);
	spin_unlock_bh(&vdev->dp_lock);
	vpci_dp_poll_again(vdev);
	/*
	 * Kicks are armed at last_avail again; a TX queue that waited past
	 * rx_seen in poll mode would sleep through buffers VM1 posted
	 * meanwhile (no kick comes for them): let each try once more.
	 */
	if (!poll)
		for (i = 0; i < vdev->nqueues / 2; i++)
			netif_wake_subqueue(vdev->netdev, i);
	netdev_info(vdev->netdev, "%s mode\n", poll ? "poll" : "interrupt");
}

/**
 * vpci_dp_poll_again() - schedule every NAPI context (poll mode resumes)
 * @vdev: the device
 */
void vpci_dp_poll_again(struct vpci_dev *vdev)
{
	unsigned int i;

	local_bh_disable();	/* NET_RX runs at local_bh_enable(), see vpci_dp_sync() */
	for (i = 1; i < vdev->nqueues; i += 2)
		napi_schedule(&vdev->queues[i].napi);
	local_bh_enable();
}

/**
 * vpci_dp_stop_all() - stop every queue (driver unbind, interface down)
 * @vdev: the device
 */
void vpci_dp_stop_all(struct vpci_dev *vdev)
{
	unsigned int i;

	spin_lock_bh(&vdev->dp_lock);
	for (i = 0; i < vdev->nqueues; i++) {
		struct vpci_queue *q = &vdev->queues[i];

		if (!q->running)
			continue;
		q->running = false;
		/* A newer run's base is the backend's, not our old position. */
		if (le16_to_cpu(READ_ONCE(vdev->ctrl->vq_config[i].epoch)) != q->epoch)
			continue;
		WRITE_ONCE(vdev->ctrl->vq_state[i].last_avail_idx,
			   cpu_to_le16(q->vr.last_avail));
		WRITE_ONCE(vdev->ctrl->vq_state[i].used_idx,
			   cpu_to_le16(q->vr.used_idx));
	}
	spin_unlock_bh(&vdev->dp_lock);
}

/**
 * vpci_dp_queue_state() - the state of a queue as netlink reports it
 * @q: the queue
 *
 * Called under dp_lock.
 *
 * Return: a VPCI_QUEUE_* value.
 */
u32 vpci_dp_queue_state(struct vpci_queue *q)
{
	if (q->broken)
		return VPCI_QUEUE_BROKEN;
	if (!q->running)
		return VPCI_QUEUE_STOPPED;
	return q->miss.pending ? VPCI_QUEUE_STALLED : VPCI_QUEUE_RUNNING;
}

/**
 * vpci_dp_inject_fault() - raise a synthetic fault (debugfs error injection)
 * @vdev: the device
 * @queue: virtqueue to blame
 * @err: the error a real fault would carry (-EACCES, -ENOENT, -ELOOP, ...)
 * @iova: address to report
 * @len: length to report
 *
 * Goes through the same path as a fault found by the datapath: counters,
 * tracepoint, warning and netlink event; nothing else changes, the queue
 * keeps running.  The access reported for -EACCES/-ENOENT is the last miss
 * permission of the queue.
 *
 * Return: 0, or -EINVAL for a queue out of range.
 */
int vpci_dp_inject_fault(struct vpci_dev *vdev, unsigned int queue, int err,
			 u64 iova, u64 len)
{
	if (queue >= vdev->nqueues)
		return -EINVAL;
	/* vpci_fault() expects dp_lock held, as on the datapath. */
	spin_lock_bh(&vdev->dp_lock);
	vpci_fault(&vdev->queues[queue], err, iova, len);
	spin_unlock_bh(&vdev->dp_lock);
	return 0;
}

/**
 * vpci_dp_inject_break() - stop a queue as a ring fault does (debugfs)
 * @vdev: the device
 * @queue: the running virtqueue to stop
 *
 * The queue is broken exactly as by a ring fault the datapath found
 * (counted as one, stopped until VM1 resets or disables the ring), so a
 * test can show that the other queues go on without it.
 *
 * Return: 0, -EINVAL for a queue out of range, -EBUSY for one not running.
 */
int vpci_dp_inject_break(struct vpci_dev *vdev, unsigned int queue)
{
	struct vpci_queue *q;
	int err = 0;

	if (queue >= vdev->nqueues)
		return -EINVAL;
	q = &vdev->queues[queue];
	/* dp_lock: q->running and the ring state, as on the datapath. */
	spin_lock_bh(&vdev->dp_lock);
	if (vpci_q_live(q))
		vpci_q_break(q, -EPROTO);
	else
		err = -EBUSY;
	spin_unlock_bh(&vdev->dp_lock);
	return err;
}
