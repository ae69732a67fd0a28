// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net core: the device side of VM1's split virtqueues (VIRTIO 1.x
 * section 2.7), reached only through the private IOTLB.
 *
 * VM1 is hostile.  Every ring field and descriptor is copied out of peer
 * memory once and validated before use; every byte moved goes through a
 * translation with the right permission, bounded by peer_mem_size.  A
 * missing translation is reported as -ENOENT with the address in
 * vr->miss_iova, and the operation is left undone so the caller can post a
 * miss and retry it unchanged when the update lands: nothing is dropped for
 * lack of a cached translation.
 *
 * The caller holds the IOTLB lock for the duration of a burst: pointers into
 * peer memory derived from a translation are never used after it drops the
 * lock, which is what lets an invalidation be acknowledged right after it
 * was applied under that lock.
 */
#include "vpci_core.h"

/* Ring layout (split virtqueue, little-endian) */
#define VR_DESC_SIZE		16
#define VR_AVAIL_FLAGS		0
#define VR_AVAIL_IDX		2
#define VR_AVAIL_RING(i)	(4 + 2 * (u64)(i))
#define VR_USED_FLAGS		0
#define VR_USED_IDX		2
#define VR_USED_RING(i)		(4 + 8 * (u64)(i))

/*
 * Translate like vpci_iotlb_translate(), first from the queue's own copies
 * of the entries it used last.  The copies are dropped whenever the IOTLB
 * changed since they were taken (tlb_gen), so an invalidation applied under
 * the caller's lock is never bypassed.
 */
static int vpci_vr_translate(struct vpci_vring *vr, u64 iova, u64 len,
			     u32 perm, u64 *off, u64 *contig)
{
	const struct vpci_iotlb *t = vr->peer->iotlb;
	const struct vpci_iotlb_entry *e;
	unsigned int i;

	if (!vpci_iotlb_range_ok(iova, len))
		return -EINVAL;
	if (vr->tlb_gen != t->gen) {
		memset(vr->tlb, 0, sizeof(vr->tlb));	/* perm 0: matches nothing */
		vr->tlb_gen = t->gen;
	}
	for (i = 0; i < VPCI_VRING_TLB_SLOTS; i++) {
		e = &vr->tlb[i];
		if (e->perm && e->start <= iova && iova <= e->last)
			break;
	}
	if (i < VPCI_VRING_TLB_SLOTS) {
		vr->tlb_hits++;
	} else {
		vr->tlb_lookups++;
		e = vpci_iotlb_find(t, iova);
		if (!e)
			return -ENOENT;
		vr->tlb[vr->tlb_next++ % VPCI_VRING_TLB_SLOTS] = *e;
	}
	if ((e->perm & perm) != perm)
		return -EACCES;
	*off = e->bar_offset + (iova - e->start);
	*contig = e->last - iova + 1;
	if (*contig == 0 || *contig > len)	/* 0: the entry spans 2^64 */
		*contig = len;
	return 0;
}

/*
 * Copy between peer memory at @iova and @buf, one IOTLB entry at a time.
 * @write: true to write peer memory (needs VPCI_PERM_WO).
 */
static int vpci_vr_copy(struct vpci_vring *vr, u64 iova, void *buf, u64 len,
			bool write)
{
	u32 perm = write ? VPCI_PERM_WO : VPCI_PERM_RO;
	u8 *p = buf;
	u64 off, contig;
	int err;

	while (len) {
		err = vpci_vr_translate(vr, iova, len, perm, &off, &contig);
		if (err) {
			vr->miss_iova = iova;
			vr->miss_perm = perm;
			return err;
		}
		/* The IOTLB never holds an entry past peer_mem_size. */
		vpci_peer_access(vr->peer, off, contig, perm);
		if (write)
			memcpy(vr->peer->base + off, p, contig);
		else
			memcpy(p, vr->peer->base + off, contig);
		iova += contig;
		p += contig;
		len -= contig;
	}
	return 0;
}

/*
 * The 16-bit ring fields (indices, flags, event indices) change while we
 * read them and VM1 reads those we write at any time: each is accessed with
 * one load or store.  A byte-wise copy (memcpy of 2 bytes is one in the
 * x86 kernel and in glibc) tears an index crossing a multiple of 256, e.g.
 * 0x0ffa -> 0x107a read as 0x10fa: more than the ring size ahead (-EPROTO)
 * or, when less, entries VM1 has not published yet.  Only a field VM1 split
 * across two translations or put at an odd address is copied bytewise; no
 * single access can reach it, and it is VM1's own ring that suffers.
 */
static int vpci_vr_access16(struct vpci_vring *vr, u64 iova, __le16 *x,
			    bool write)
{
	u32 perm = write ? VPCI_PERM_WO : VPCI_PERM_RO;
	u64 off, contig;
	__le16 *p;
	int err;

	err = vpci_vr_translate(vr, iova, sizeof(*x), perm, &off, &contig);
	if (err) {
		vr->miss_iova = iova;
		vr->miss_perm = perm;
		return err;
	}
	p = (__le16 *)(vr->peer->base + off);
	if (contig < sizeof(*x) || ((unsigned long)p & 1))
		return vpci_vr_copy(vr, iova, x, sizeof(*x), write);
	vpci_peer_access(vr->peer, off, sizeof(*x), perm);
	if (write)
		WRITE_ONCE(*p, *x);
	else
		*x = READ_ONCE(*p);
	return 0;
}

static int vpci_vr_read16(struct vpci_vring *vr, u64 iova, u16 *v)
{
	__le16 x = 0;
	int err = vpci_vr_access16(vr, iova, &x, false);

	*v = le16_to_cpu(x);
	return err;
}

static int vpci_vr_write16(struct vpci_vring *vr, u64 iova, u16 v)
{
	__le16 x = cpu_to_le16(v);

	return vpci_vr_access16(vr, iova, &x, true);
}

/**
 * vpci_vring_init() - start serving a virtqueue
 * @vr: the ring
 * @peer: peer memory and IOTLB
 * @desc: descriptor table address
 * @avail: available ring address
 * @used: used ring address
 * @num: ring size, a power of two <= 32768
 * @base: avail index to start from (and used index: all earlier entries
 *	were completed by whoever served the ring before)
 * @event_idx: VIRTIO_RING_F_EVENT_IDX negotiated
 *
 * Return: 0, or -EINVAL for a bad size or misaligned ring.
 */
int vpci_vring_init(struct vpci_vring *vr, struct vpci_peer *peer, u64 desc,
		    u64 avail, u64 used, u16 num, u16 base, bool event_idx)
{
	if (!num || (num & (num - 1)) || (desc & 15) || (avail & 1) ||
	    (used & 3))
		return -EINVAL;
	memset(vr, 0, sizeof(*vr));
	vr->peer = peer;
	vr->desc = desc;
	vr->avail = avail;
	vr->used = used;
	vr->num = num;
	vr->last_avail = base;
	vr->used_idx = base;
	vr->used_pub = base;
	vr->used_sig = base;
	vr->event_idx = event_idx;
	return 0;
}

/**
 * vpci_vring_avail_idx() - read VM1's avail index
 * @vr: the ring
 * @idx: set to the index
 *
 * Return: 0, -ENOENT (miss), -EACCES, or -EPROTO when the index is more
 * than the ring size ahead of what was consumed (the queue must stop).
 */
int vpci_vring_avail_idx(struct vpci_vring *vr, u16 *idx)
{
	int err = vpci_vr_read16(vr, vr->avail + VR_AVAIL_IDX, idx);

	if (err)
		return err;
	if ((u16)(*idx - vr->last_avail) > vr->num) {
		vr->bad_avail = *idx;
		return -EPROTO;
	}
	/*
	 * Ring entries and descriptors are read after the index: pairs with
	 * the driver's write barrier before it publishes avail->idx.
	 */
	virt_rmb();
	return 0;
}

/**
 * vpci_vring_pop() - take the next descriptor chain
 * @vr: the ring
 * @avail_idx: index from vpci_vring_avail_idx()
 * @c: set to the chain; c->head is valid whenever the slot was consumed
 *
 * Return: 1 with a valid chain; 0 if nothing is available; -ENOENT/-EACCES
 * when the ring itself does not translate (nothing consumed, retry after
 * the miss is served); for a malformed chain the avail slot is consumed
 * and: -ERANGE (head out of range: nothing to complete), -ELOOP (chain
 * longer than the ring), -E2BIG (more than VPCI_CHAIN_MAX segments),
 * -EINVAL (zero length, wrapping range, a chain of 4 GiB or more,
 * readable after writable descriptor, or an indirect descriptor, which is
 * not offered); the caller
 * completes c->head with length 0.
 */
int vpci_vring_pop(struct vpci_vring *vr, u16 avail_idx, struct vpci_chain *c)
{
	u16 head, i, flags, next;
	u32 n = 0;
	int err;

	if (vr->last_avail == avail_idx)
		return 0;
	err = vpci_vr_read16(vr, vr->avail +
			     VR_AVAIL_RING(vr->last_avail & (vr->num - 1)), &head);
	if (err)
		return err;

	c->nout = 0;
	c->nin = 0;
	c->out_len = 0;
	c->in_len = 0;
	c->head = head;
	if (head >= vr->num) {
		vr->last_avail++;
		return -ERANGE;
	}

	i = head;
	for (;;) {
		u8 d[VR_DESC_SIZE];
		struct vpci_seg *s;
		u64 addr;
		u32 len;

		/* Descriptors are 16-byte aligned: never split across pages. */
		err = vpci_vr_copy(vr, vr->desc + (u64)i * VR_DESC_SIZE, d,
				   sizeof(d), false);
		if (err)
			return err;	/* nothing consumed yet */
		addr = le64_to_cpu(*(__le64 *)d);
		len = le32_to_cpu(*(__le32 *)(d + 8));
		flags = le16_to_cpu(*(__le16 *)(d + 12));
		next = le16_to_cpu(*(__le16 *)(d + 14));

		if (++n > vr->num) {
			err = -ELOOP;
			break;
		}
		if (n > VPCI_CHAIN_MAX) {
			err = -E2BIG;
			break;
		}
		if ((flags & VPCI_VRING_DESC_F_INDIRECT) || !len ||
		    !vpci_iotlb_range_ok(addr, len) ||
		    /* the chain's total must fit the u32 lengths */
		    len > ~0U - c->out_len - c->in_len ||
		    (!(flags & VPCI_VRING_DESC_F_WRITE) && c->nin)) {
			err = -EINVAL;
			break;
		}
		s = &c->seg[c->nout + c->nin];
		s->addr = addr;
		s->len = len;
		if (flags & VPCI_VRING_DESC_F_WRITE) {
			c->nin++;
			c->in_len += len;
		} else {
			c->nout++;
			c->out_len += len;
		}
		if (!(flags & VPCI_VRING_DESC_F_NEXT))
			break;
		if (next >= vr->num) {
			err = -EINVAL;
			break;
		}
		i = next;
	}
	vr->last_avail++;
	return err ? err : 1;
}

/*
 * Copy @len bytes at byte @offset of the chain's readable (or writable)
 * part from (to) @buf.
 */
static int vpci_chain_copy(struct vpci_vring *vr, const struct vpci_chain *c,
			   u32 offset, void *buf, u32 len, bool write)
{
	const struct vpci_seg *s = write ? &c->seg[c->nout] : c->seg;
	u16 nseg = write ? c->nin : c->nout;
	u8 *p = buf;
	u16 k;
	int err;

	for (k = 0; k < nseg && len; k++) {
		u32 chunk;

		if (offset >= s[k].len) {
			offset -= s[k].len;
			continue;
		}
		chunk = min_t(u32, s[k].len - offset, len);
		err = vpci_vr_copy(vr, s[k].addr + offset, p, chunk, write);
		if (err)
			return err;
		p += chunk;
		len -= chunk;
		offset = 0;
	}
	return len ? -EMSGSIZE : 0;
}

/**
 * vpci_chain_read() - read from the readable part of a chain
 * @vr: the ring
 * @c: the chain
 * @offset: byte offset into the readable part
 * @dst: destination
 * @len: bytes
 *
 * Return: 0, -ENOENT/-EACCES (vr->miss_iova set), or -EMSGSIZE if the
 * chain is shorter.
 */
int vpci_chain_read(struct vpci_vring *vr, const struct vpci_chain *c,
		    u32 offset, void *dst, u32 len)
{
	return vpci_chain_copy(vr, c, offset, dst, len, false);
}

/**
 * vpci_chain_write() - write into the writable part of a chain
 * @vr: the ring
 * @c: the chain
 * @offset: byte offset into the writable part
 * @src: source
 * @len: bytes
 *
 * Return: as vpci_chain_read().
 */
int vpci_chain_write(struct vpci_vring *vr, const struct vpci_chain *c,
		     u32 offset, const void *src, u32 len)
{
	return vpci_chain_copy(vr, c, offset, (void *)src, len, true);
}

/**
 * vpci_vring_unpop() - give back the last chain taken
 * @vr: the ring
 *
 * For a chain that could not be processed for lack of a translation: it is
 * taken again, unchanged, after the miss is served.
 */
void vpci_vring_unpop(struct vpci_vring *vr)
{
	vr->last_avail--;
}

/*
 * The first untranslated byte of [@iova, @iova + @len) for access @perm:
 * -ENOENT with *@miss set, 0 when all of it translates, -ENOSPC when
 * *@budget lookups ran out first, or another error.
 */
static int vpci_vr_first_miss(struct vpci_vring *vr, u64 iova, u64 len,
			      u32 perm, u64 *miss, unsigned int *budget)
{
	u64 off, contig;
	int err;

	while (len) {
		if (!*budget)
			return -ENOSPC;
		(*budget)--;
		err = vpci_vr_translate(vr, iova, len, perm, &off, &contig);
		if (err) {
			*miss = iova;
			return err;
		}
		iova += contig;
		len -= contig;
	}
	return 0;
}

/* Record @iova/@perm in @out unless it is on the page of one already there. */
static unsigned int vpci_prefetch_add(struct vpci_prefetch *out, unsigned int n,
				      unsigned int max, u64 iova, u32 perm)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		if (out[i].iova >> VPCI_PREFETCH_PAGE_SHIFT ==
		    iova >> VPCI_PREFETCH_PAGE_SHIFT)
			return n;
	if (n == max)
		return n;
	out[n].iova = iova;
	out[n].perm = perm;
	return n + 1;
}

/**
 * vpci_vring_prefetch() - the translations chains not yet taken will miss
 * @vr: the ring
 * @avail_idx: index from vpci_vring_avail_idx()
 * @max_chains: how many chains from last_avail on to look at
 * @scratch: a chain to parse into (its contents are lost)
 * @out: set to the first untranslated address of each buffer and
 *	descriptor-table page that has one, one per 4 KiB page
 * @max: room in @out
 *
 * Reads the avail ring and descriptors as vpci_vring_pop() would, through
 * the same checked translations, and consumes nothing: last_avail, the
 * miss address and bad_avail are as they were (only the translation cache
 * and its counters see the lookups).  A malformed chain is skipped (the
 * real pop reports it); a ring or descriptor that does not translate ends
 * the walk, and so does a budget of VPCI_PREFETCH_LOOKUPS_PER_CHAIN
 * lookups per chain asked for, however many pages VM1's buffers span.
 * Lets a queue that stalls on one miss ask for the whole burst's
 * translations at once, instead of one round trip to VM1 per chain.
 *
 * Return: the number of entries in @out.
 */
unsigned int vpci_vring_prefetch(struct vpci_vring *vr, u16 avail_idx,
				 unsigned int max_chains,
				 struct vpci_chain *scratch,
				 struct vpci_prefetch *out, unsigned int max)
{
	unsigned int budget = max_chains * VPCI_PREFETCH_LOOKUPS_PER_CHAIN;
	u16 last_avail = vr->last_avail, bad_avail = vr->bad_avail;
	u64 miss_iova = vr->miss_iova;
	u32 miss_perm = vr->miss_perm;
	unsigned int n = 0, c, k;
	u64 iova;
	int err = 0;

	for (c = 0; c < max_chains && n < max && err != -ENOSPC; c++) {
		err = vpci_vring_pop(vr, avail_idx, scratch);
		if (!err)
			break;
		if (err == -ENOENT || err == -EACCES) {
			/* The ring itself: nothing behind it can be read. */
			if (err == -ENOENT)
				n = vpci_prefetch_add(out, n, max, vr->miss_iova,
						      vr->miss_perm);
			break;
		}
		if (err < 0)
			continue;
		for (k = 0; k < scratch->nout + scratch->nin && n < max; k++) {
			u32 perm = k < scratch->nout ? VPCI_PERM_RO : VPCI_PERM_WO;

			err = vpci_vr_first_miss(vr, scratch->seg[k].addr,
						 scratch->seg[k].len, perm,
						 &iova, &budget);
			if (err == -ENOENT)
				n = vpci_prefetch_add(out, n, max, iova, perm);
			if (err == -ENOSPC)
				break;
		}
	}
	vr->last_avail = last_avail;
	vr->bad_avail = bad_avail;
	vr->miss_iova = miss_iova;
	vr->miss_perm = miss_perm;
	return n;
}

/**
 * vpci_vring_push() - add a used element (not yet visible to VM1)
 * @vr: the ring
 * @head: chain head
 * @len: bytes written into the chain
 *
 * Return: 0 or -ENOENT/-EACCES for an untranslated used ring (nothing
 * written; vpci_vring_used_check() beforehand rules it out).
 */
int vpci_vring_push(struct vpci_vring *vr, u16 head, u32 len)
{
	__le32 e[2] = { cpu_to_le32(head), cpu_to_le32(len) };
	int err;

	err = vpci_vr_copy(vr, vr->used + VR_USED_RING(vr->used_idx & (vr->num - 1)),
			   e, sizeof(e), true);
	if (err)
		return err;
	vr->used_idx++;
	return 0;
}

/**
 * vpci_vring_used_check() - can the next used elements be written?
 * @vr: the ring
 * @n: how many used elements, from used_idx on, the caller may push
 *	(at most the ring size)
 *
 * A caller checks before it takes chains whose completion it could not
 * give back: the IOTLB does not change under the caller's lock, so each
 * vpci_vring_push() of those @n elements then succeeds.  A miss found here
 * consumed nothing and is retried as any other.
 *
 * Return: 0, or -ENOENT/-EACCES with vr->miss_iova and vr->miss_perm set.
 */
int vpci_vring_used_check(struct vpci_vring *vr, u16 n)
{
	u16 first = vr->used_idx & (vr->num - 1), k;
	u64 off, contig, iova, len;
	int err;

	n = min_t(u16, n, vr->num);
	while (n) {
		/* Up to the end of the ring, then from its start. */
		k = min_t(u16, n, vr->num - first);
		iova = vr->used + VR_USED_RING(first);
		len = 8 * (u64)k;
		while (len) {
			err = vpci_vr_translate(vr, iova, len, VPCI_PERM_WO, &off,
						&contig);
			if (err) {
				vr->miss_iova = iova;
				vr->miss_perm = VPCI_PERM_WO;
				return err;
			}
			iova += contig;
			len -= contig;
		}
		n -= k;
		first = 0;
	}
	return 0;
}

/**
 * vpci_vring_publish() - make pushed used elements visible to VM1
 * @vr: the ring
 * @notify: set to whether VM1 asked to be interrupted for them
 *
 * A miss leaves everything to do for the retry: the used index is written
 * once (used_pub), and the interrupt is decided once over all the elements
 * published since the last decision (used_sig), so a miss on VM1's event
 * field between the two loses no interrupt.
 *
 * Return: 0, or -ENOENT/-EACCES with vr->miss_iova and vr->miss_perm set
 * (retry after the miss is served).
 */
int vpci_vring_publish(struct vpci_vring *vr, bool *notify)
{
	u16 old = vr->used_sig, new = vr->used_idx, v;
	int err;

	*notify = false;
	if (old == new)
		return 0;
	if (vr->used_pub != new) {
		/* Used elements are visible before the index that covers them. */
		virt_wmb();
		err = vpci_vr_write16(vr, vr->used + VR_USED_IDX, new);
		if (err)
			return err;
		vr->used_pub = new;
	}
	/*
	 * The index store is ordered before reading VM1's suppression state,
	 * pairing with VM1's barrier between its event write and its read of
	 * used->idx (virtqueue_enable_cb), so one side always sees the other.
	 */
	virt_mb();
	if (vr->event_idx) {
		err = vpci_vr_read16(vr, vr->avail + VR_AVAIL_RING(vr->num), &v);
		if (err)
			return err;
		/* vring_need_event(used_event, new, old) */
		*notify = (u16)(new - v - 1) < (u16)(new - old);
	} else {
		err = vpci_vr_read16(vr, vr->avail + VR_AVAIL_FLAGS, &v);
		if (err)
			return err;
		*notify = !(v & VPCI_VRING_AVAIL_F_NO_INTERRUPT);
	}
	vr->used_sig = new;
	return 0;
}

/* Without EVENT_IDX: VRING_USED_F_NO_NOTIFY off (@enable) or on. */
static int vpci_vring_kick_flags(struct vpci_vring *vr, bool enable)
{
	int err = vpci_vr_write16(vr, vr->used + VR_USED_FLAGS,
				  enable ? 0 : VPCI_VRING_USED_F_NO_NOTIFY);

	if (err)
		return err;
	/* Our request is visible before we re-read avail->idx. */
	virt_mb();
	return 0;
}

/**
 * vpci_vring_kick_after() - ask VM1 for a kick once avail moves past @seen
 * @vr: the ring
 * @seen: the avail index the caller saw and could not use (a frame found
 *	too few buffers there); last_avail to be kicked on any new buffer
 *
 * With EVENT_IDX VM1 kicks when it moves avail->idx past @seen; without,
 * on every buffer it adds.  After this the caller re-reads avail->idx and
 * goes on only if it moved past @seen: waking on buffers it already saw
 * would retry the same frame without end.
 *
 * Return: 0 or -ENOENT/-EACCES.
 */
int vpci_vring_kick_after(struct vpci_vring *vr, u16 seen)
{
	int err;

	if (!vr->event_idx)
		return vpci_vring_kick_flags(vr, true);
	err = vpci_vr_write16(vr, vr->used + VR_USED_RING(vr->num), seen);
	if (err)
		return err;
	/* Our request is visible before we re-read avail->idx. */
	virt_mb();
	return 0;
}

/**
 * vpci_vring_kick_enable() - ask VM1 for (or off) kicks on new buffers
 * @vr: the ring
 * @enable: true to be kicked when VM1 adds buffers after last_avail
 *
 * After enabling, the caller re-reads the avail index: a buffer added just
 * before VM1 saw the request raises no kick.
 *
 * Return: 0 or -ENOENT/-EACCES.
 */
int vpci_vring_kick_enable(struct vpci_vring *vr, bool enable)
{
	if (enable)
		return vpci_vring_kick_after(vr, vr->last_avail);
	if (vr->event_idx)
		return 0;	/* no "off": VM1 kicks only on passing avail_event */
	return vpci_vring_kick_flags(vr, false);
}

/**
 * vpci_tx_frame_len() - the frame a chain from VM1's TX virtqueue carries
 * @c: the chain, as vpci_vring_pop() returned it
 * @max_frame: the longest frame accepted (MTU plus a VLAN Ethernet header)
 *
 * A TX chain is the 12-byte header followed by the frame, all readable.
 * A frame shorter than an Ethernet header is refused as virtio_net and tun
 * refuse it: eth_type_trans() would read bytes the peer never wrote.
 *
 * Return: the frame's length (without the header), or -EINVAL for a chain
 * with writable segments, a runt or an oversized frame.
 */
int vpci_tx_frame_len(const struct vpci_chain *c, u32 max_frame)
{
	if (c->nin || c->out_len < VPCI_NET_HDR_LEN + VPCI_ETH_HLEN ||
	    c->out_len - VPCI_NET_HDR_LEN > max_frame)
		return -EINVAL;
	return c->out_len - VPCI_NET_HDR_LEN;
}
