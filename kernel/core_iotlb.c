// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net core: the driver's private IOTLB.
 *
 * Built only from validated copies of the backend's messages, never read
 * from shared memory at lookup time.  Entries are non-overlapping inclusive
 * ranges [start, last] kept sorted by start in an array, so a lookup is a
 * binary search (O(log n)); an update first removes whatever it overlaps,
 * as a later IOMMU mapping replaces an earlier one.  Every entry is checked
 * against peer_mem_size when added, so a hit can never reach past VM1's
 * memory.  The caller serialises all calls (see struct vpci_iotlb).
 */
#include "vpci_core.h"

/**
 * vpci_iotlb_init() - set up an empty IOTLB
 * @t: the table
 * @max_entries: hard limit on entries (memory is allocated on demand)
 * @peer_mem_size: bytes of peer memory; no entry may reach past it
 *
 * Return: 0.
 */
int vpci_iotlb_init(struct vpci_iotlb *t, u32 max_entries, u64 peer_mem_size)
{
	t->ent = NULL;
	t->n = 0;
	t->cap = 0;
	t->max = max_entries;
	t->peer_mem_size = peer_mem_size;
	return 0;
}

/**
 * vpci_iotlb_destroy() - free an IOTLB's memory
 * @t: the table
 */
void vpci_iotlb_destroy(struct vpci_iotlb *t)
{
	kvfree(t->ent);
	t->ent = NULL;
	t->n = 0;
	t->cap = 0;
}

/* First index whose entry ends at or after @iova (n if none). */
static u32 vpci_iotlb_lower(const struct vpci_iotlb *t, u64 iova)
{
	u32 lo = 0, hi = t->n;

	while (lo < hi) {
		u32 mid = lo + (hi - lo) / 2;

		if (t->ent[mid].last < iova)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int vpci_iotlb_reserve(struct vpci_iotlb *t, u32 need)
{
	struct vpci_iotlb_entry *ent;
	u32 cap;

	if (need <= t->cap)
		return 0;
	if (need > t->max)
		return -ENOSPC;
	cap = t->cap ? t->cap : 64;
	while (cap < need)
		cap = cap > t->max / 2 ? t->max : cap * 2;
	if (cap > t->max)
		cap = t->max;
	ent = kvmalloc_array(cap, sizeof(*ent), GFP_KERNEL);
	if (!ent)
		return -ENOMEM;
	if (t->n)
		memcpy(ent, t->ent, t->n * sizeof(*ent));
	kvfree(t->ent);
	t->ent = ent;
	t->cap = cap;
	return 0;
}

/**
 * vpci_iotlb_range_ok() - check a range for emptiness and wrap-around
 * @iova: first byte
 * @size: bytes
 *
 * Return: true if @size is non-zero and @iova + @size - 1 does not wrap.
 */
bool vpci_iotlb_range_ok(u64 iova, u64 size)
{
	return size && iova + (size - 1) >= iova;
}

/**
 * vpci_iotlb_del() - remove every translation in [@iova, @iova + @size - 1]
 * @t: the table
 * @iova: first byte
 * @size: bytes
 *
 * Entries partly covered are trimmed or split.
 *
 * Return: 0, -EINVAL for an empty or wrapping range, -ENOSPC/-ENOMEM if a
 * split needs room that cannot be had (the table is then unchanged).
 */
int vpci_iotlb_del(struct vpci_iotlb *t, u64 iova, u64 size)
{
	u64 last;
	u32 i, j;
	int err;

	if (!vpci_iotlb_range_ok(iova, size))
		return -EINVAL;
	last = iova + (size - 1);

	i = vpci_iotlb_lower(t, iova);
	if (i < t->n && t->ent[i].start < iova && t->ent[i].last > last) {
		/* Strictly inside one entry: split it in two. */
		struct vpci_iotlb_entry tail = t->ent[i];

		err = vpci_iotlb_reserve(t, t->n + 1);
		if (err)
			return err;
		tail.bar_offset += last + 1 - tail.start;
		tail.start = last + 1;
		t->ent[i].last = iova - 1;
		memmove(&t->ent[i + 2], &t->ent[i + 1],
			(t->n - i - 1) * sizeof(*t->ent));
		t->ent[i + 1] = tail;
		t->n++;
		return 0;
	}
	if (i < t->n && t->ent[i].start < iova && t->ent[i].last >= iova) {
		/* Head survives. */
		t->ent[i].last = iova - 1;
		i++;
	}
	for (j = i; j < t->n && t->ent[j].last <= last; j++)
		;
	/* [i, j) are fully covered; j may be partly covered at its head. */
	if (j < t->n && t->ent[j].start <= last) {
		t->ent[j].bar_offset += last + 1 - t->ent[j].start;
		t->ent[j].start = last + 1;
	}
	if (j > i) {
		memmove(&t->ent[i], &t->ent[j], (t->n - j) * sizeof(*t->ent));
		t->n -= j - i;
	}
	return 0;
}

/**
 * vpci_iotlb_add() - map [@iova, @iova + @size - 1] to @bar_offset
 * @t: the table
 * @iova: first byte
 * @size: bytes
 * @bar_offset: BAR offset of @iova
 * @perm: VPCI_PERM_RO, _WO or _RW
 *
 * Replaces whatever the range overlapped.
 *
 * Return: 0; -EINVAL for an empty or wrapping range or a bad @perm;
 * -ERANGE if the target reaches past peer_mem_size; -ENOSPC/-ENOMEM if the
 * table is full (it may then have lost the overlapped translations, which
 * is safe: a missing translation is a miss, never an access).
 */
int vpci_iotlb_add(struct vpci_iotlb *t, u64 iova, u64 size, u64 bar_offset,
		   u32 perm)
{
	u32 i;
	int err;

	if (!vpci_iotlb_range_ok(iova, size) || !perm || perm > VPCI_PERM_RW)
		return -EINVAL;
	if (bar_offset > t->peer_mem_size || size > t->peer_mem_size - bar_offset)
		return -ERANGE;
	err = vpci_iotlb_del(t, iova, size);
	if (err)
		return err;
	err = vpci_iotlb_reserve(t, t->n + 1);
	if (err)
		return err;
	i = vpci_iotlb_lower(t, iova);
	memmove(&t->ent[i + 1], &t->ent[i], (t->n - i) * sizeof(*t->ent));
	t->ent[i].start = iova;
	t->ent[i].last = iova + (size - 1);
	t->ent[i].bar_offset = bar_offset;
	t->ent[i].perm = perm;
	t->n++;
	return 0;
}

/**
 * vpci_iotlb_translate() - translate the start of an access
 * @t: the table
 * @iova: first byte accessed
 * @len: bytes accessed, non-zero
 * @perm: access wanted, VPCI_PERM_RO (read) or VPCI_PERM_WO (write)
 * @bar_offset: set to the BAR offset of @iova on success
 * @contig: set to the bytes from @iova (at most @len) that the same entry
 *	covers; the caller translates the rest separately
 *
 * Return: 0; -EINVAL for an empty or wrapping access; -ENOENT when @iova is
 * not mapped (a miss); -EACCES when it is mapped without @perm.
 */
int vpci_iotlb_translate(const struct vpci_iotlb *t, u64 iova, u64 len,
			 u32 perm, u64 *bar_offset, u64 *contig)
{
	const struct vpci_iotlb_entry *e;
	u32 i;

	if (!vpci_iotlb_range_ok(iova, len))
		return -EINVAL;
	i = vpci_iotlb_lower(t, iova);
	if (i == t->n || t->ent[i].start > iova)
		return -ENOENT;
	e = &t->ent[i];
	if ((e->perm & perm) != perm)
		return -EACCES;
	*bar_offset = e->bar_offset + (iova - e->start);
	*contig = e->last - iova + 1;
	if (*contig == 0 || *contig > len)	/* 0: the entry spans 2^64 */
		*contig = len;
	return 0;
}
