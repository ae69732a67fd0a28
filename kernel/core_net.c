// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net core: virtio-net frames over VM1's virtqueues, chain by
 * chain.  One frame into VM1's RX buffers (vpci_net_rx()), one frame out of
 * VM1's TX virtqueue (vpci_net_tx_pop() and vpci_net_tx_read()).  The
 * driver's datapath, the host datapath (vpci-hostdp) and the unit tests'
 * model device all run these, so what the tests prove of them holds for the
 * module.
 *
 * Every rule about VM1's chains lives here: which are malformed, when they
 * are completed empty, when a frame's buffers can be given back for a retry
 * and when they cannot, and how much work one frame may cost.  What the
 * caller keeps for itself goes through struct vpci_net_ops: counting a
 * fault, the table of outstanding misses (whether to wait on one), and
 * stopping a queue.
 *
 * The used ring is checked before a chain is taken (vpci_vring_used_check()),
 * not when a completion is pushed: a frame's completions cannot be given
 * back once its buffers were written.  A used ring that misses is a miss
 * like any other (the driver's IOTLB may have evicted the entry: nothing
 * consumed, @ops->stall() decides); one mapped without write permission,
 * or a miss that lasted too long, is a ring fault: the queue stops instead
 * of leaking VM1's descriptors one by one.
 *
 * Callers hold the lock that serialises the queue and its IOTLB for the
 * whole call (the driver's dp_lock, in softirq or with BHs off); the
 * callbacks run under it and must not sleep.
 */
#include "vpci_core.h"

/*
 * Complete @head.  The caller checked the used ring under the same lock, so
 * this cannot fail; if it did, the completion is lost: the queue breaks.
 */
static int vpci_net_complete(struct vpci_vring *vr, u16 head, u32 len,
			     const struct vpci_net_ops *ops, void *ctx)
{
	int err = vpci_vring_push(vr, head, len);

	if (err) {
		ops->ring_fault(ctx, err);
		return -EPIPE;
	}
	return 0;
}

/* Complete the first @n buffers of @st empty, once each. */
static int vpci_net_rx_drop(struct vpci_vring *vr, struct vpci_rx_state *st,
			    unsigned int n, const struct vpci_net_ops *ops,
			    void *ctx)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		if (vpci_net_complete(vr, st->heads[i], 0, ops, ctx))
			return -EPIPE;
	}
	return 0;
}

/* Bytes of the frame held in @iov */
static u32 vpci_iov_len(const struct vpci_iov *iov, unsigned int niov)
{
	u32 len = 0;

	while (niov--)
		len += iov[niov].len;
	return len;
}

/*
 * Write @len bytes of the frame in @iov, from its byte @pos on, at byte @off
 * of the writable part of chain @c.  The caller keeps @pos + @len within
 * the frame.
 */
static int vpci_net_write(struct vpci_vring *vr, const struct vpci_chain *c,
			  u32 off, const struct vpci_iov *iov,
			  unsigned int niov, u32 pos, u32 len)
{
	unsigned int i;
	int err;

	for (i = 0; i < niov && len; i++) {
		u32 n;

		if (pos >= iov[i].len) {
			pos -= iov[i].len;
			continue;
		}
		n = min_t(u32, iov[i].len - pos, len);
		err = vpci_chain_write(vr, c, off, (const u8 *)iov[i].base + pos, n);
		if (err)
			return err;
		off += n;
		len -= n;
		pos = 0;
	}
	return 0;
}

/**
 * vpci_net_rx() - copy one frame into VM1's RX buffers
 * @vr: VM1's RX virtqueue
 * @st: scratch and the buffers taken; @st->seen is set when VM1 posted too
 *	few buffers (VPCI_NET_RX_NOBUFS, or -ENOBUFS when the frame was dropped)
 * @hdr: the frame's struct virtio_net_hdr_mrg_rxbuf (VPCI_NET_HDR_LEN
 *	bytes); num_buffers is filled in here
 * @iov: the frame, in pieces (an skb's head and fragments), read only
 * @niov: pieces in @iov
 * @mrg_rxbuf: VIRTIO_NET_F_MRG_RXBUF: a frame may span several buffers
 * @ops: the caller's fault, miss and ring-fault handling
 * @ctx: passed to @ops
 *
 * At most VPCI_RX_MAX_BUFS chains are taken for one frame, malformed ones
 * included (each completed empty and reported): a VM1 that posts nothing
 * but bad buffers costs a bounded amount of work per frame, and the frame
 * is dropped.  The used elements are pushed, not published.
 *
 * Return: VPCI_NET_RX_DONE (0) when delivered; VPCI_NET_RX_NOBUFS when VM1
 * posted too few buffers up to @st->seen and VPCI_NET_RX_STALLED when
 * @ops->stall() asked to wait for a translation (nothing consumed either
 * way: retry the frame unchanged; a used ring that misses stalls too);
 * -EPIPE when @ops->ring_fault() was
 * called (the queue must stop); another negative error when the frame was
 * dropped (reported through @ops->fault(), its buffers completed empty).
 */
int vpci_net_rx(struct vpci_vring *vr, struct vpci_rx_state *st, u8 *hdr,
		const struct vpci_iov *iov, unsigned int niov, bool mrg_rxbuf,
		const struct vpci_net_ops *ops, void *ctx)
{
	u32 total = VPCI_NET_HDR_LEN + vpci_iov_len(iov, niov), done = 0;
	unsigned int nbufs = 0, taken = 0, i;
	bool rewindable = true;
	__le16 nb;
	u16 avail;
	int err;

	/* Every completion this frame may push (malformed chains too) fits. */
	err = vpci_vring_used_check(vr, VPCI_RX_MAX_BUFS);
	if (err) {
		if (err == -ENOENT && ops->stall(ctx))
			return VPCI_NET_RX_STALLED;
		ops->ring_fault(ctx, err);
		return -EPIPE;
	}
	err = vpci_vring_avail_idx(vr, &avail);
	while (!err && done < total) {
		struct vpci_chain *c = &st->chain;
		u32 chunk, off;

		/* Bounded work per frame, however many bad chains VM1 posts. */
		if (taken == VPCI_RX_MAX_BUFS) {
			err = -EMSGSIZE;
			break;
		}
		err = vpci_vring_pop(vr, avail, c);
		if (err == 0) {
			st->seen = avail;
			err = -ENOBUFS;
			break;
		}
		if (err == -ENOENT || err == -EACCES || err == -EPROTO)
			break;
		taken++;
		if (err < 0 || !c->nin || c->nout) {
			/* Malformed buffer: complete it empty, use the next. */
			if (err < 0) {
				ops->fault(ctx, err, 0, 0);
			} else {
				err = -EINVAL;
				ops->fault(ctx, err, c->seg[0].addr,
					   c->out_len + c->in_len);
			}
			/* A head out of range names no chain to complete. */
			if (err != -ERANGE &&
			    vpci_net_complete(vr, c->head, 0, ops, ctx))
				return -EPIPE;
			/* Its slot is spent: buffers before it can't be given back. */
			rewindable = rewindable && !nbufs;
			err = 0;
			continue;
		}
		st->heads[nbufs] = c->head;
		/* The header goes in last, once num_buffers is known. */
		off = nbufs ? 0 : VPCI_NET_HDR_LEN;
		if (!nbufs && c->in_len < VPCI_NET_HDR_LEN) {
			st->lens[nbufs++] = 0;
			err = -EINVAL;
			break;
		}
		chunk = min_t(u32, c->in_len - off, total - done - off);
		err = vpci_net_write(vr, c, off, iov, niov,
				     done ? done - VPCI_NET_HDR_LEN : 0, chunk);
		if (err) {
			st->lens[nbufs++] = 0;
			break;
		}
		if (!nbufs)
			st->first = *c;		/* the header is written to it */
		st->lens[nbufs++] = chunk + off;
		done += chunk + off;
		if (!mrg_rxbuf && done < total)
			err = -EMSGSIZE;
	}

	if (!err) {
		/* num_buffers: the last field of virtio_net_hdr_mrg_rxbuf */
		nb = cpu_to_le16(nbufs);
		memcpy(hdr + VPCI_NET_HDR_LEN - sizeof(nb), &nb, sizeof(nb));
		err = vpci_chain_write(vr, &st->first, 0, hdr, VPCI_NET_HDR_LEN);
	}
	if (!err) {
		for (i = 0; i < nbufs; i++) {
			if (vpci_net_complete(vr, st->heads[i], st->lens[i], ops, ctx))
				return -EPIPE;
		}
		return VPCI_NET_RX_DONE;
	}
	/*
	 * Rewinding last_avail over nbufs slots is only right when they are
	 * the last slots taken; after a malformed buffer completed between
	 * them it would hand that buffer out (and complete it) twice.  Then
	 * the frame is dropped and its buffers completed empty instead.
	 */
	if (rewindable && (err == -ENOBUFS ||
			   (err == -ENOENT && ops->stall(ctx)))) {
		for (i = 0; i < nbufs; i++)
			vpci_vring_unpop(vr);
		return err == -ENOBUFS ? VPCI_NET_RX_NOBUFS : VPCI_NET_RX_STALLED;
	}
	if (err == -EPROTO) {
		ops->ring_fault(ctx, err);
		return -EPIPE;
	}
	/* A miss timed out (a fault now), or another error: drop the frame. */
	ops->fault(ctx, err, err == -ENOENT || err == -EACCES ? vr->miss_iova : 0,
		   total);
	if (vpci_net_rx_drop(vr, st, nbufs, ops, ctx))
		return -EPIPE;
	return err;
}

/**
 * vpci_net_hdr_check() - the rules VM1's struct virtio_net_hdr must keep
 * @hdr: the header (its first 10 bytes: flags, gso_type, hdr_len, gso_size,
 *	csum_start, csum_offset)
 * @len: the frame's length, without the header
 * @mtu_max: the longest frame without GSO (MTU plus a VLAN Ethernet header)
 * @csum: VIRTIO_NET_F_CSUM negotiated: VM1 may leave checksums partial
 * @gso: the GSO types negotiated, as BIT(VPCI_HDR_GSO_*) (HOST_TSO4/6)
 *
 * What VIRTIO 1.x (5.1.6.2) asks of VM1 and this device offered: a partial
 * checksum only with CSUM; a GSO type only when negotiated, never with ECN
 * (HOST_ECN is not offered), always with a partial checksum and a segment
 * size; a frame longer than @mtu_max only as a GSO frame.  And what keeps
 * a hostile GSO header cheap and its segments within the MTU: the TCP
 * header starts past an Ethernet and an IP header and ends within
 * VPCI_GSO_MAX_HDR bytes, and a segment (headers, a minimal TCP header and
 * gso_size bytes) fits @mtu_max.  Offsets within the frame are for the
 * caller to check too (the kernel's virtio_net_hdr_to_skb()).
 *
 * Return: 0, or -EINVAL when VM1 broke a rule (a fault).
 */
int vpci_net_hdr_check(const u8 *hdr, u32 len, u32 mtu_max, bool csum, u8 gso)
{
	bool partial = hdr[0] & VPCI_HDR_F_NEEDS_CSUM;
	u8 type = hdr[1];
	u32 gso_size = hdr[4] | hdr[5] << 8, start = hdr[6] | hdr[7] << 8;
	u32 l3 = type == VPCI_HDR_GSO_TCPV6 ? 40 : 20;	/* IPv6 or IPv4 header */

	if (partial && !csum)
		return -EINVAL;
	if (type == VPCI_HDR_GSO_NONE)
		return len > mtu_max ? -EINVAL : 0;
	if (type >= 8 || !(gso & (1U << type)) || !partial || !gso_size)
		return -EINVAL;
	if (start < VPCI_ETH_HLEN + l3 || start + 60 > VPCI_GSO_MAX_HDR ||
	    start + 20 + gso_size > mtu_max)
		return -EINVAL;
	return 0;
}

/**
 * vpci_net_tx_pop() - take the next chain of VM1's TX virtqueue
 * @vr: VM1's TX virtqueue
 * @c: the chain taken, for vpci_net_tx_read()
 * @avail: the avail index the caller read
 * @max_frame: the longest frame accepted (MTU plus a VLAN Ethernet header)
 * @ops: the caller's fault, miss and ring-fault handling
 * @ctx: passed to @ops
 *
 * A malformed chain is reported, completed empty and counts as work done.
 * The used ring is checked first, so that the chain's completion finds it.
 * The used ring, avail ring or descriptor table not translating is a ring
 * fault once @ops->stall() gives up waiting for it.
 *
 * Return: the frame's length (without the header) when a chain is ready to
 * read; 0 when there is nothing to take now (empty, stalled on a miss, or
 * the queue broke); -EBADMSG when a bad chain was consumed.
 */
int vpci_net_tx_pop(struct vpci_vring *vr, struct vpci_chain *c, u16 avail,
		    u32 max_frame, const struct vpci_net_ops *ops, void *ctx)
{
	int err;

	if (vr->last_avail == avail)
		return 0;	/* nothing to take, nothing to complete */
	err = vpci_vring_used_check(vr, 1);
	if (!err)
		err = vpci_vring_pop(vr, avail, c);
	if (err == 0)
		return 0;
	if (err == -ENOENT || err == -EACCES || err == -EPROTO) {
		if (err == -ENOENT && ops->stall(ctx))
			return 0;
		ops->ring_fault(ctx, err);	/* the ring itself is gone */
		return 0;
	}
	if (err < 0) {
		ops->fault(ctx, err, 0, 0);
		if (err != -ERANGE && vpci_net_complete(vr, c->head, 0, ops, ctx))
			return 0;
		return -EBADMSG;
	}
	err = vpci_tx_frame_len(c, max_frame);
	if (err < 0) {
		/* Writable segments, a runt or too long */
		ops->fault(ctx, err, c->seg[0].addr, c->out_len);
		if (vpci_net_complete(vr, c->head, 0, ops, ctx))
			return 0;
		return -EBADMSG;
	}
	return err;
}

/**
 * vpci_net_tx_read() - read the chain vpci_net_tx_pop() took, complete it
 * @vr: VM1's TX virtqueue
 * @c: the chain
 * @hdr: where its struct virtio_net_hdr goes (@hdr_len bytes)
 * @hdr_len: bytes of @hdr wanted, at most VPCI_NET_HDR_LEN
 * @iov: where the frame goes, in pieces: as many bytes as
 *	vpci_net_tx_pop() returned, in all
 * @niov: pieces in @iov
 * @ops: the caller's fault, miss and ring-fault handling
 * @ctx: passed to @ops
 *
 * Return: 0 when read and completed; -EAGAIN when @ops->stall() asked to
 * wait for a translation (the chain is given back); -EPIPE when the queue
 * broke; another error when the frame was dropped (reported, completed).
 */
int vpci_net_tx_read(struct vpci_vring *vr, const struct vpci_chain *c,
		     void *hdr, u32 hdr_len, const struct vpci_iov *iov,
		     unsigned int niov, const struct vpci_net_ops *ops, void *ctx)
{
	u32 off = VPCI_NET_HDR_LEN, len = vpci_iov_len(iov, niov);
	int err = vpci_chain_read(vr, c, 0, hdr, hdr_len);
	unsigned int i;

	for (i = 0; !err && i < niov; off += iov[i].len, i++)
		err = vpci_chain_read(vr, c, off, iov[i].base, iov[i].len);
	if (err == -ENOENT && ops->stall(ctx)) {
		vpci_vring_unpop(vr);
		return -EAGAIN;
	}
	if (err)
		ops->fault(ctx, err, err == -EINVAL ? c->seg[0].addr : vr->miss_iova,
			   len);
	if (vpci_net_complete(vr, c->head, 0, ops, ctx))
		return -EPIPE;
	return err;
}

/**
 * vpci_net_signal() - publish the used elements pushed so far
 * @vr: the ring
 * @ops: the caller's callbacks (@stall on a miss, @ring_fault on a failure)
 * @ctx: passed to @ops
 *
 * A miss on the used index or on VM1's event field (the driver's IOTLB may
 * have evicted the entry) is a miss like any other: the elements stay
 * pushed and unpublished, and the next call publishes them (with the
 * interrupt decision taken over all of them, vpci_vring_publish()).  A used
 * ring mapped without write permission, or a miss that lasted too long, is
 * a ring fault: @ops->ring_fault() is called.
 *
 * Return: VPCI_NET_SIGNAL_QUIET or VPCI_NET_SIGNAL_NOTIFY when published
 * (or nothing was pending), VPCI_NET_SIGNAL_STALLED on a miss, or the
 * negative error of the ring fault.
 */
int vpci_net_signal(struct vpci_vring *vr, const struct vpci_net_ops *ops,
		    void *ctx)
{
	bool notify;
	int err = vpci_vring_publish(vr, &notify);

	if (err == -ENOENT && ops->stall(ctx))
		return VPCI_NET_SIGNAL_STALLED;
	if (err) {
		ops->ring_fault(ctx, err);
		return err;
	}
	return notify ? VPCI_NET_SIGNAL_NOTIFY : VPCI_NET_SIGNAL_QUIET;
}

/**
 * vpci_net_kick_after() - ask VM1 for a kick past @seen, then look again
 * @vr: the ring
 * @seen: the avail index the caller has seen (vr->last_avail, or the
 *	index a frame waiting for more buffers saw)
 * @ops: the caller's callbacks (@stall on a miss, @ring_fault on a failure)
 * @ctx: passed to @ops
 *
 * The request lives in VM1's used ring (avail_event, or the flags without
 * EVENT_IDX).  A miss there (the driver's IOTLB may have evicted the entry)
 * is a miss like any other: the request is not made, and a queue that went
 * to sleep anyway would wait for a kick VM1 was never asked for.  The avail
 * index is read again after the request: a buffer VM1 added before it saw
 * the request raises no kick (the barrier is vpci_vring_kick_after()'s).
 *
 * Return: 1 when VM1 posted past @seen (look again now), 0 when the kick is
 * requested and nothing new came, -EAGAIN while a translation is waited for
 * (the update wakes the queue), or the negative error of a ring fault
 * (@ops->ring_fault() was called).
 */
int vpci_net_kick_after(struct vpci_vring *vr, u16 seen,
			const struct vpci_net_ops *ops, void *ctx)
{
	u16 avail;
	int err = vpci_vring_kick_after(vr, seen);

	if (!err)
		err = vpci_vring_avail_idx(vr, &avail);
	if (!err)
		return avail != seen;
	if (err == -ENOENT && ops->stall(ctx))
		return -EAGAIN;
	err = err == -ENOENT || err == -EACCES ? err : -EPROTO;
	ops->ring_fault(ctx, err);
	return err;
}
