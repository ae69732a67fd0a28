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
 * @max_entries: entries, all allocated now so that updates never allocate
 *	(they run under a spinlock the datapath shares)
 * @peer_mem_size: bytes of peer memory; no entry may reach past it
 *
 * Return: 0 or -ENOMEM.
 */
int vpci_iotlb_init(struct vpci_iotlb *t, u32 max_entries, u64 peer_mem_size)
{
	t->n = 0;
	t->evict = 0;
	t->evictions = 0;
	t->gen = 0;
	t->peer_mem_size = peer_mem_size;
	t->ent = kvmalloc_array(max_entries ? max_entries : 1, sizeof(*t->ent),
				GFP_KERNEL);
	t->cap = t->ent ? max_entries : 0;
	return t->ent ? 0 : -ENOMEM;
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

/* Drop entry @i: dropping a translation is always safe (a later miss). */
static void vpci_iotlb_drop(struct vpci_iotlb *t, u32 i)
{
	memmove(&t->ent[i], &t->ent[i + 1], (t->n - i - 1) * sizeof(*t->ent));
	t->n--;
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
 * Entries partly covered are trimmed or split; when the table is full a
 * split drops the whole entry instead (more is removed, never less).
 *
 * Return: 0, or -EINVAL for an empty or wrapping range.
 */
int vpci_iotlb_del(struct vpci_iotlb *t, u64 iova, u64 size)
{
	u64 last;
	u32 i, j;

	if (!vpci_iotlb_range_ok(iova, size))
		return -EINVAL;
	last = iova + (size - 1);
	/* Even when nothing overlaps: cheaper than proving it for caches. */
	t->gen++;

	i = vpci_iotlb_lower(t, iova);
	if (i < t->n && t->ent[i].start < iova && t->ent[i].last > last) {
		/* Strictly inside one entry: split it in two. */
		struct vpci_iotlb_entry tail = t->ent[i];

		if (t->n == t->cap) {
			vpci_iotlb_drop(t, i);
			return 0;
		}
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
 * vpci_iotlb_del_to_end() - remove every translation at or above @iova
 * @t: the table
 * @iova: first byte
 */
void vpci_iotlb_del_to_end(struct vpci_iotlb *t, u64 iova)
{
	if (!iova) {
		t->n = 0;
		t->gen++;
		return;
	}
	/* 0 - iova bytes reach exactly the last byte of the space. */
	vpci_iotlb_del(t, iova, 0 - iova);
}

/**
 * vpci_iotlb_add() - map [@iova, @iova + @size - 1] to @bar_offset
 * @t: the table
 * @iova: first byte
 * @size: bytes
 * @bar_offset: BAR offset of @iova
 * @perm: VPCI_PERM_RO, _WO or _RW
 *
 * Replaces whatever the range overlapped.  A full table evicts another
 * entry (round robin): the IOTLB is a cache of VM1's IOMMU, and an evicted
 * translation is only a later miss, never a wrong access.
 *
 * Return: 0; -EINVAL for an empty or wrapping range or a bad @perm;
 * -ERANGE if the target reaches past peer_mem_size.
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
	if (!t->cap)
		return -ENOMEM;
	if (t->n == t->cap) {
		vpci_iotlb_drop(t, t->evict++ % t->n);
		t->evictions++;
	}
	i = vpci_iotlb_lower(t, iova);
	memmove(&t->ent[i + 1], &t->ent[i], (t->n - i) * sizeof(*t->ent));
	t->ent[i].start = iova;
	t->ent[i].last = iova + (size - 1);
	t->ent[i].bar_offset = bar_offset;
	t->ent[i].perm = perm;
	t->n++;
	t->gen++;
	return 0;
}

/**
 * vpci_iotlb_find() - the entry that translates @iova
 * @t: the table
 * @iova: address
 *
 * Return: the entry (valid until the next change of @t), or NULL.
 */
const struct vpci_iotlb_entry *vpci_iotlb_find(const struct vpci_iotlb *t,
					       u64 iova)
{
	u32 i = vpci_iotlb_lower(t, iova);

	if (i == t->n || t->ent[i].start > iova)
		return NULL;
	return &t->ent[i];
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

	if (!vpci_iotlb_range_ok(iova, len))
		return -EINVAL;
	e = vpci_iotlb_find(t, iova);
	if (!e)
		return -ENOENT;
	if ((e->perm & perm) != perm)
		return -EACCES;
	*bar_offset = e->bar_offset + (iova - e->start);
	*contig = e->last - iova + 1;
	if (*contig == 0 || *contig > len)	/* 0: the entry spans 2^64 */
		*contig = len;
	return 0;
}
