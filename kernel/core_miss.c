// SPDX-License-Identifier: GPL-2.0
/*
 * A queue's translation misses: which pages it asked VM1's IOMMU for and
 * has no answer to yet, the one it waits for, the misses it asks ahead for
 * the chains behind that one, and when a miss has waited too long.
 *
 * Shared by the driver (datapath.c), the host datapath (hostdp) and the
 * unit tests, so that all three run the same rules.  Time is the caller's
 * clock (jiffies in the kernel, milliseconds in userspace), passed in.
 * No locking here: the caller serializes each queue (dp_lock in the
 * driver).
 */
#include "vpci_core.h"

/**
 * vpci_misses_reset() - a queue (re)starts: nothing asked, nothing waited for
 * @m: the queue's misses
 * @ahead: chains behind a stalled one to ask for ahead (at most
 *	VPCI_PREFETCH_CHAINS; 0: one miss at a time)
 */
void vpci_misses_reset(struct vpci_misses *m, unsigned int ahead)
{
	m->ahead = min_t(unsigned int, ahead, VPCI_PREFETCH_CHAINS);
	m->n = 0;
	m->pending = false;
	m->wait = 0;
	m->pf_avail = 0;
	m->pf_gen = ~0ULL;
}

/* @m's outstanding miss on @page, or NULL. */
static struct vpci_miss *vpci_misses_find(struct vpci_misses *m, u64 page)
{
	unsigned int i;

	for (i = 0; i < m->n; i++)
		if (m->slot[i].page == page)
			return &m->slot[i];
	return NULL;
}

static void vpci_misses_drop(struct vpci_misses *m, struct vpci_miss *x)
{
	*x = m->slot[--m->n];
}

/**
 * vpci_misses_forget() - forget the misses an IOTLB message settles
 * @m: the queue's misses
 * @iova: first address the message covers
 * @size: its bytes; 0 for everything from @iova on (a global flush)
 *
 * An update answers the misses on its pages.  An invalidation settles them
 * too: VM1's IOMMU may look a miss up after VM1 unmapped its page, and then
 * no answer ever comes, even once VM1 maps the page again.  A queue that
 * meets the page later must ask again, not wait out the timeout on a
 * question nobody will answer.  The queue's own wait (@m->pending) is left
 * to the caller, who knows whether the message answers it.
 */
void vpci_misses_forget(struct vpci_misses *m, u64 iova, u64 size)
{
	u64 first = iova >> VPCI_PREFETCH_PAGE_SHIFT;
	u64 last = size ? (iova + (size - 1)) >> VPCI_PREFETCH_PAGE_SHIFT :
			  ~0ULL >> VPCI_PREFETCH_PAGE_SHIFT;
	unsigned int i;

	for (i = 0; i < m->n;) {
		if (m->slot[i].page >= first && m->slot[i].page <= last)
			vpci_misses_drop(m, &m->slot[i]);
		else
			i++;
	}
}

/*
 * Ask for @iova and remember it until answered.  @ahead: for a chain
 * behind the one the queue waits on; such a miss is not asked when the
 * table is full, while the one waited for takes the oldest entry's place.
 * Returns true when asked.
 */
static bool vpci_misses_post(struct vpci_misses *m, u64 iova, u32 perm,
			     bool ahead, u64 now,
			     const struct vpci_miss_ops *ops, void *ctx)
{
	struct vpci_miss *x;
	unsigned int i;

	if (m->n == VPCI_MISS_SLOTS) {
		if (ahead)
			return false;
		x = &m->slot[0];
		for (i = 1; i < m->n; i++)
			if (m->slot[i].since < x->since)
				x = &m->slot[i];
	} else {
		x = &m->slot[m->n];
	}
	/* Not sent (the message ring is full): nothing remembered. */
	if (!ops->post(ctx, iova, perm, ahead))
		return false;
	if (x == &m->slot[m->n])
		m->n++;
	x->page = iova >> VPCI_PREFETCH_PAGE_SHIFT;
	x->since = now;
	return true;
}

/**
 * vpci_misses_ask() - ask for a page a queue needs before it can run
 * @m: the queue's misses
 * @iova: the untranslated address (a ring's first missing byte)
 * @perm: the access wanted
 * @now: the caller's clock
 * @timeout: how long an ask stands, in the same clock
 * @ops: how a miss is sent
 * @ctx: passed to @ops
 *
 * For a caller that looks at the rings on every turn (hostdp): the page is
 * asked once, and again only after @timeout or once an IOTLB message
 * settled it (vpci_misses_forget()).
 *
 * Return: true when a miss was sent now.
 */
bool vpci_misses_ask(struct vpci_misses *m, u64 iova, u32 perm, u64 now,
		     u64 timeout, const struct vpci_miss_ops *ops, void *ctx)
{
	struct vpci_miss *x = vpci_misses_find(m, iova >> VPCI_PREFETCH_PAGE_SHIFT);

	if (x && now - x->since <= timeout)
		return false;
	if (x)
		vpci_misses_drop(m, x);
	return vpci_misses_post(m, iova, perm, false, now, ops, ctx);
}

/*
 * Ask for the chains VM1 made available behind the one the queue stalls
 * on, so that a burst's translations come back in one round trip to VM1's
 * IOMMU instead of one each.  Returns true if any was asked.
 */
static bool vpci_misses_prefetch(struct vpci_misses *m, struct vpci_vring *vr,
				 u64 now, u64 timeout,
				 const struct vpci_miss_ops *ops, void *ctx)
{
	struct vpci_prefetch pf[VPCI_PREFETCH_CHAINS];
	u64 miss_iova = vr->miss_iova, wait = m->wait >> VPCI_PREFETCH_PAGE_SHIFT;
	u64 gen = vr->peer->iotlb->gen;
	u16 avail, bad_avail = vr->bad_avail;
	u32 miss_perm = vr->miss_perm;
	unsigned int n = 0, i;
	bool posted = false;

	/*
	 * Misses asked ahead that VM1 never answered (a chain the datapath
	 * then refused, an IOVA never mapped) make room after the timeout;
	 * the one the queue waits for times out in vpci_misses_stall().
	 */
	for (i = 0; i < m->n;) {
		if (now - m->slot[i].since > timeout && m->slot[i].page != wait)
			vpci_misses_drop(m, &m->slot[i]);
		else
			i++;
	}
	/*
	 * The same avail index under the same IOTLB finds what the last walk
	 * found, all asked for already: a queue that stalls again (poll mode
	 * looks every poll) does not walk again.
	 */
	if (m->ahead && m->n < VPCI_MISS_SLOTS && !vpci_vring_avail_idx(vr, &avail) &&
	    (avail != m->pf_avail || gen != m->pf_gen)) {
		n = vpci_vring_prefetch(vr, avail, m->ahead,
					&m->pchain, pf, VPCI_PREFETCH_CHAINS);
		m->pf_avail = avail;
		m->pf_gen = gen;
	}
	for (i = 0; i < n; i++) {
		if (vpci_misses_find(m, pf[i].iova >> VPCI_PREFETCH_PAGE_SHIFT))
			continue;
		if (!vpci_misses_post(m, pf[i].iova, pf[i].perm, true, now, ops,
				      ctx)) {
			m->pf_gen = ~0ULL;	/* not all asked: walk again */
			break;
		}
		posted = true;
	}
	/* The caller reports the stall's own miss from these. */
	vr->miss_iova = miss_iova;
	vr->miss_perm = miss_perm;
	vr->bad_avail = bad_avail;
	return posted;
}

/**
 * vpci_misses_stall() - a translation is missing at vr->miss_iova
 * @m: the queue's misses
 * @vr: the ring whose access missed (vr->miss_iova, vr->miss_perm)
 * @now: the caller's clock
 * @timeout: how long a miss may wait, in the same clock
 * @ops: how a miss is sent
 * @ctx: passed to @ops
 *
 * The queue waits for the page (@m->pending, @m->wait): asked now unless it
 * is asked already, with the chains behind it asked ahead.  The timeout
 * runs from the first ask, which may have been ahead of the queue; an
 * entry that old which the queue only now reaches is asked again rather
 * than turned into a fault at once.
 *
 * Return: -ETIMEDOUT when the miss the queue waited for lasted longer than
 * @timeout (give the chain up as a fault; @m->pending is cleared), else
 * VPCI_MISS_POSTED if anything was sent (ring the backend), ored with
 * VPCI_MISS_LOST if the stall's own miss could not be sent (ask again
 * soon); 0: asked before, nothing to do but wait.
 */
int vpci_misses_stall(struct vpci_misses *m, struct vpci_vring *vr, u64 now,
		      u64 timeout, const struct vpci_miss_ops *ops, void *ctx)
{
	u64 page = vr->miss_iova >> VPCI_PREFETCH_PAGE_SHIFT;
	bool waiting = m->pending &&
		       m->wait >> VPCI_PREFETCH_PAGE_SHIFT == page;
	struct vpci_miss *x = vpci_misses_find(m, page);
	int ret = 0;

	if (x && now - x->since > timeout) {
		vpci_misses_drop(m, x);
		if (waiting) {
			m->pending = false;
			return -ETIMEDOUT;
		}
		x = NULL;
	}
	m->pending = true;
	m->wait = vr->miss_iova;
	/* Asked already (maybe ahead): keep the chains behind it asked for. */
	if (!x) {
		if (vpci_misses_post(m, vr->miss_iova, vr->miss_perm, false, now,
				     ops, ctx))
			ret |= VPCI_MISS_POSTED;
		else
			ret |= VPCI_MISS_LOST;
	}
	if (vpci_misses_prefetch(m, vr, now, timeout, ops, ctx))
		ret |= VPCI_MISS_POSTED;
	return ret;
}
