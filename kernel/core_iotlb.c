// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net core: the driver's private IOTLB.
 *
 * Built only from validated copies of the backend's messages, never read
 * from shared memory at lookup time.  Entries are non-overlapping inclusive
 * ranges [start, last] in the kernel's red-black tree, keyed by start (being
 * disjoint, they are in order of last too), so lookups, updates and
 * invalidations are O(log n) per entry touched; an update first removes
 * whatever it overlaps, as a later IOMMU mapping replaces an earlier one.
 * The nodes come from a pool allocated once, so updates under the
 * datapath's spinlock never allocate.  Every entry is checked
 * against peer_mem_size when added, so a hit can never reach past VM1's
 * memory.  The caller serialises all calls (see struct vpci_iotlb).
 */
#include "vpci_core.h"
/* Userspace: tools/include/linux/rbtree.h of linux-source, tools/lib/rbtree.c */
#include <linux/rbtree.h>

/**
 * struct vpci_iotlb_node - an entry of the IOTLB's tree
 * @rb: in the tree, keyed by @e.start
 * @next_free: next node of the free list while not in the tree
 * @e: the translation
 */
struct vpci_iotlb_node {
	struct rb_node rb;
	struct vpci_iotlb_node *next_free;
	struct vpci_iotlb_entry e;
};

/**
 * struct vpci_iotlb_tree - the entries of a struct vpci_iotlb
 * @root: the tree, in IOVA order
 * @free: nodes not in the tree
 * @pool: every node, allocated with the table
 */
struct vpci_iotlb_tree {
	struct rb_root root;
	struct vpci_iotlb_node *free;
	struct vpci_iotlb_node pool[];
};

/* Every node on the free list, the tree empty: at init, O(cap). */
static void vpci_iotlb_init_empty(struct vpci_iotlb *t)
{
	u32 i;

	t->n = 0;
	if (!t->tree)
		return;
	t->tree->root = RB_ROOT;
	t->tree->free = NULL;
	for (i = t->cap; i-- > 0;) {
		t->tree->pool[i].next_free = t->tree->free;
		t->tree->free = &t->tree->pool[i];
	}
}

static struct vpci_iotlb_node *vpci_iotlb_node(struct rb_node *rb)
{
	return rb ? rb_entry(rb, struct vpci_iotlb_node, rb) : NULL;
}

/* The first entry that ends at or after @iova, or NULL: O(log n). */
static struct vpci_iotlb_node *vpci_iotlb_lower(const struct vpci_iotlb *t,
						u64 iova)
{
	struct rb_node *rb = t->tree ? t->tree->root.rb_node : NULL;
	struct vpci_iotlb_node *found = NULL;

	while (rb) {
		struct vpci_iotlb_node *x = vpci_iotlb_node(rb);

		if (x->e.last < iova) {
			rb = rb->rb_right;
		} else {
			found = x;
			rb = rb->rb_left;
		}
	}
	return found;
}

/* Drop entry @x: dropping a translation is always safe (a later miss). */
static void vpci_iotlb_drop(struct vpci_iotlb *t, struct vpci_iotlb_node *x)
{
	rb_erase(&x->rb, &t->tree->root);
	RB_CLEAR_NODE(&x->rb);
	x->next_free = t->tree->free;
	t->tree->free = x;
	t->n--;
}

/* Link @x, which overlaps no entry, in IOVA order: O(log n). */
static void vpci_iotlb_link(struct vpci_iotlb *t, struct vpci_iotlb_node *x)
{
	struct rb_node **link = &t->tree->root.rb_node, *parent = NULL;

	while (*link) {
		parent = *link;
		if (x->e.start < vpci_iotlb_node(parent)->e.start)
			link = &parent->rb_left;
		else
			link = &parent->rb_right;
	}
	rb_link_node(&x->rb, parent, link);
	rb_insert_color(&x->rb, &t->tree->root);
	t->n++;
}

/* A free node, or NULL when all @cap are in the table. */
static struct vpci_iotlb_node *vpci_iotlb_alloc(struct vpci_iotlb *t)
{
	struct vpci_iotlb_node *x = t->tree ? t->tree->free : NULL;

	if (x)
		t->tree->free = x->next_free;
	return x;
}

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
	t->evict = 0;
	t->evictions = 0;
	t->peer_mem_size = peer_mem_size;
	t->gen = 0;
	t->tree = kvmalloc(struct_size(t->tree, pool, max_entries), GFP_KERNEL);
	t->cap = t->tree ? max_entries : 0;
	vpci_iotlb_init_empty(t);
	return t->tree ? 0 : -ENOMEM;
}

/**
 * vpci_iotlb_destroy() - free an IOTLB's memory
 * @t: the table
 */
void vpci_iotlb_destroy(struct vpci_iotlb *t)
{
	kvfree(t->tree);
	t->tree = NULL;
	t->n = 0;
	t->cap = 0;
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
	struct vpci_iotlb_node *x, *next, *tail;
	u64 last;

	if (!vpci_iotlb_range_ok(iova, size))
		return -EINVAL;
	last = iova + (size - 1);
	/* Even when nothing overlaps: cheaper than proving it for caches. */
	t->gen++;

	x = vpci_iotlb_lower(t, iova);
	if (x && x->e.start < iova && x->e.last > last) {
		/* Strictly inside one entry: split it in two. */
		tail = vpci_iotlb_alloc(t);
		if (!tail) {
			vpci_iotlb_drop(t, x);
			return 0;
		}
		tail->e = x->e;
		tail->e.bar_offset += last + 1 - tail->e.start;
		tail->e.start = last + 1;
		x->e.last = iova - 1;
		vpci_iotlb_link(t, tail);
		return 0;
	}
	if (x && x->e.start < iova) {
		/* Head survives. */
		x->e.last = iova - 1;
		x = vpci_iotlb_node(rb_next(&x->rb));
	}
	/* Entries fully covered go; the last may be partly covered at its head. */
	for (; x && x->e.start <= last; x = next) {
		next = vpci_iotlb_node(rb_next(&x->rb));
		if (x->e.last > last) {
			x->e.bar_offset += last + 1 - x->e.start;
			x->e.start = last + 1;	/* still after its predecessor */
			break;
		}
		vpci_iotlb_drop(t, x);
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
	struct vpci_iotlb_node *x, *next;

	if (!iova) {
		/* A global flush (VM1 in lazy mode sends many): O(entries). */
		t->gen++;
		if (!t->tree)
			return;
		rbtree_postorder_for_each_entry_safe(x, next, &t->tree->root, rb) {
			x->next_free = t->tree->free;
			t->tree->free = x;
		}
		t->tree->root = RB_ROOT;
		t->n = 0;
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
	struct vpci_iotlb_node *x;
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
	x = vpci_iotlb_alloc(t);
	if (!x) {
		/* Full: every node is in the table; evict one round robin. */
		x = &t->tree->pool[t->evict++ % t->cap];
		vpci_iotlb_drop(t, x);
		t->evictions++;
		x = vpci_iotlb_alloc(t);
	}
	x->e.start = iova;
	x->e.last = iova + (size - 1);
	x->e.bar_offset = bar_offset;
	x->e.perm = perm;
	vpci_iotlb_link(t, x);
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
	struct rb_node *rb = t->tree ? t->tree->root.rb_node : NULL;

	while (rb) {
		struct vpci_iotlb_node *x = vpci_iotlb_node(rb);

		if (iova < x->e.start)
			rb = rb->rb_left;
		else if (iova > x->e.last)
			rb = rb->rb_right;
		else
			return &x->e;
	}
	return NULL;
}

/**
 * vpci_iotlb_slice() - copy entries out in IOVA order
 * @t: the table
 * @from: copy the entries that end at or after this address
 * @buf: where to copy
 * @max: entries @buf holds
 *
 * A dump goes on from the last entry's @last + 1 (and ends after an entry
 * whose @last is U64_MAX).
 *
 * Return: entries copied; fewer than @max at the end of the table.
 */
u32 vpci_iotlb_slice(const struct vpci_iotlb *t, u64 from,
		     struct vpci_iotlb_entry *buf, u32 max)
{
	struct vpci_iotlb_node *x = vpci_iotlb_lower(t, from);
	u32 n = 0;

	for (; x && n < max; x = vpci_iotlb_node(rb_next(&x->rb)))
		buf[n++] = x->e;
	return n;
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
