// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target for the driver core (kernel/core_*.c) built in userspace
 * with ASan and UBSan.  The input is a hostile VM1 and a hostile backend at
 * once: it supplies the control-area header, IOTLB update/invalidate
 * messages, ring geometry, and all of peer memory (rings, descriptors,
 * buffers).  Two checks: peer memory is an exact-size heap block, so an
 * access past it is an ASan report; and every access the core makes to
 * peer memory goes through vpci_peer_oracle() below first, which aborts
 * unless one IOTLB entry with the permission covers all of it (a stale
 * per-queue cache entry, a wrong offset or a missing permission check).
 */
#include <stdlib.h>
#include <string.h>

#include "vpci_core.h"

#define PEER_SIZE	(64 * 1024)
#define MAX_OPS		64
#define PF_MAX		4	/* misses a look-ahead may report per call */

struct in {
	const u8 *p;
	size_t n;
};

/* The oracle (VPCI_PEER_ORACLE): the IOTLB as it is now, not the caches. */
void vpci_peer_oracle(const struct vpci_peer *peer, u64 off, u64 len, u32 perm)
{
	const struct vpci_iotlb *t = peer->iotlb;
	struct vpci_iotlb_entry ent[32];
	u64 from = 0;
	u32 n, i;

	if (!len || off + len < off || off + len > peer->size)
		abort();
	do {
		n = vpci_iotlb_slice(t, from, ent, 32);
		for (i = 0; i < n; i++) {
			const struct vpci_iotlb_entry *e = &ent[i];
			u64 span = e->last - e->start;	/* bytes - 1 */

			if ((e->perm & perm) == perm && off >= e->bar_offset &&
			    off - e->bar_offset <= span &&
			    len - 1 <= span - (off - e->bar_offset))
				return;
		}
		if (n)
			from = ent[n - 1].last + 1;
	} while (n == 32 && from);
	abort();	/* no entry allows this access: the core escaped its IOTLB */
}

static u64 take(struct in *in, unsigned int bytes);

/* core_net.c's callbacks: a ring fault ends the run, a miss stalls or not. */
struct net_ctx {
	bool broken;
	bool stall;
	u16 bad_heads;
};

static void net_fault(void *ctx, int err, u64 iova, u64 len)
{
	if (err == -ERANGE)
		((struct net_ctx *)ctx)->bad_heads++;
}

static bool net_stall(void *ctx)
{
	return ((struct net_ctx *)ctx)->stall;
}

static void net_ring_fault(void *ctx, int err)
{
	((struct net_ctx *)ctx)->broken = true;
}

static const struct vpci_net_ops net_ops = {
	.fault = net_fault,
	.stall = net_stall,
	.ring_fault = net_ring_fault,
};

/*
 * One frame each way through core_net.c, as the driver's datapath runs it.
 * Returns false when the queue stopped.  Aborts if a frame took more
 * chains than VPCI_RX_MAX_BUFS, or if a chain taken was not completed
 * exactly once (heads out of range name nothing to complete) while the
 * queue still runs; a kept frame's good buffers are given back instead.
 */
static bool fuzz_net(struct in *in, struct vpci_vring *vr, struct vpci_chain *c,
		     struct vpci_rx_state *st, u8 *buf, u32 buf_size)
{
	struct net_ctx ctx = { .stall = take(in, 1) & 1 };
	u16 last = vr->last_avail, used = vr->used_idx, avail;
	u8 hdr[VPCI_NET_HDR_LEN] = { 0 };
	int rc;

	if (take(in, 1) & 1) {
		u32 len = take(in, 2) % buf_size, cut = len ? take(in, 2) % len : 0;
		/* The frame in two pieces, as an skb's head and a fragment */
		struct vpci_iov iov[2] = { { buf, cut }, { buf + cut, len - cut } };

		rc = vpci_net_rx(vr, st, hdr, iov, 2, take(in, 1) & 1, &net_ops, &ctx);
		if ((u16)(vr->last_avail - last) > VPCI_RX_MAX_BUFS)
			abort();
		if (!ctx.broken &&
		    (u16)(vr->last_avail - last) != (u16)(vr->used_idx - used + ctx.bad_heads))
			abort();
		return !ctx.broken;
	}
	if (vpci_vring_avail_idx(vr, &avail))
		return false;
	rc = vpci_net_tx_pop(vr, c, avail, buf_size, &net_ops, &ctx);
	if (rc > 0) {
		u32 cut = take(in, 2) % (u32)rc;
		struct vpci_iov iov[2] = { { buf, cut }, { buf + cut, (u32)rc - cut } };

		vpci_net_tx_read(vr, c, hdr, sizeof(hdr), iov, 2, &net_ops, &ctx);
	}
	if (!ctx.broken &&
	    (u16)(vr->last_avail - last) != (u16)(vr->used_idx - used + ctx.bad_heads))
		abort();
	return !ctx.broken;
}

static u64 take(struct in *in, unsigned int bytes)
{
	u64 v = 0;

	for (unsigned int i = 0; i < bytes && in->n; i++, in->n--)
		v |= (u64)*in->p++ << (8 * i);
	return v;
}

/* Mostly small addresses (so rings and buffers can translate), sometimes raw. */
static u64 take_addr(struct in *in)
{
	return take(in, 1) & 1 ? take(in, 8) : take(in, 2) << 4;
}

static void fuzz_header(struct in *in)
{
	struct vpci_ctrl_hdr h;
	const char *why;
	u64 bar = take(in, 8);

	memset(&h, 0, sizeof(h));
	for (size_t i = 0; i < sizeof(h) && in->n; i++)
		((u8 *)&h)[i] = (u8)take(in, 1);
	vpci_ctrl_check_hdr(&h, bar, &why);
}

static void fuzz_msg_ring(struct in *in)
{
	static struct vpci_msg_ring r;
	struct vpci_msg m;
	u32 cons = (u32)take(in, 4), prod = (u32)take(in, 4);

	r.prod = (__le32)take(in, 4);
	r.cons = (__le32)take(in, 4);
	for (int i = 0; i < 4; i++)
		if (vpci_msg_pop(&r, &cons, &m) <= 0)
			break;
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < 4; i++)
		if (vpci_msg_push(&r, &prod, &m))
			break;
}

int LLVMFuzzerTestOneInput(const u8 *data, size_t size)
{
	struct in in = { data, size };
	struct vpci_iotlb iotlb;
	struct vpci_peer peer;
	struct vpci_vring vr;
	struct vpci_chain c;
	struct vpci_rx_state st;
	u8 *mem, buf[256], frame[9018] = { 0 };
	unsigned int ops;

	fuzz_header(&in);
	fuzz_msg_ring(&in);

	mem = malloc(PEER_SIZE);
	if (!mem || vpci_iotlb_init(&iotlb, 32, PEER_SIZE)) {
		free(mem);
		return 0;
	}
	peer.base = mem;
	peer.size = PEER_SIZE;
	peer.iotlb = &iotlb;

	/* IOTLB updates and invalidations, as b2d messages would carry. */
	ops = take(&in, 1) % 16;
	while (ops--) {
		u8 kind = (u8)take(&in, 1);
		u64 iova = take_addr(&in), sz = take_addr(&in), off = take_addr(&in);

		if (kind & 1)
			vpci_iotlb_add(&iotlb, iova, sz, off, kind >> 5);
		else
			vpci_iotlb_del(&iotlb, iova, sz);
	}

	/* Peer memory: whatever is left of the input, repeated. */
	for (size_t i = 0; i < PEER_SIZE; i++)
		mem[i] = in.n ? in.p[i % in.n] : 0;

	if (vpci_vring_init(&vr, &peer, take_addr(&in), take_addr(&in),
			    take_addr(&in), 1 << (take(&in, 1) % 16),
			    (u16)take(&in, 2), take(&in, 1) & 1))
		goto out;

	for (ops = 0; ops < MAX_OPS; ops++) {
		struct vpci_prefetch pf[PF_MAX];
		u16 avail, last;
		bool notify;
		int rc;

		if (vpci_vring_avail_idx(&vr, &avail))
			break;
		/* Looking ahead must consume nothing, whatever the ring says. */
		last = vr.last_avail;
		if (vpci_vring_prefetch(&vr, avail, 1 + ops % 8, &c, pf, PF_MAX) > PF_MAX ||
		    vr.last_avail != last)
			abort();
		if (take(&in, 1) % 4 == 0) {
			/* A frame through core_net.c instead of a raw chain. */
			if (!fuzz_net(&in, &vr, &c, &st, frame, sizeof(frame)))
				break;
			vpci_vring_publish(&vr, &notify);
			continue;
		}
		rc = vpci_vring_pop(&vr, avail, &c);
		if (rc == 0)
			break;
		if (rc > 0) {
			vpci_chain_read(&vr, &c, 0, buf, c.out_len < sizeof(buf) ?
					c.out_len : sizeof(buf));
			vpci_chain_write(&vr, &c, 3, buf, c.in_len < sizeof(buf) ?
					 c.in_len : sizeof(buf));
		} else if (rc == -ENOENT) {
			break;
		}
		if (rc != -ERANGE && rc != -ENOENT && rc != -EPROTO)
			vpci_vring_push(&vr, c.head, 1);
		vpci_vring_publish(&vr, &notify);
		vpci_vring_kick_enable(&vr, ops & 1);
	}
out:
	vpci_iotlb_destroy(&iotlb);
	free(mem);
	return 0;
}
