// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net core: the control area's message rings, driver side.
 *
 * Single producer, single consumer, free-running u32 counters.  The side
 * that owns a counter keeps it privately and only publishes it; the peer's
 * counter is read once per call and bounds-checked, so a corrupt counter is
 * reported (-EPROTO) and never indexes outside the ring.
 */
#include "vpci_core.h"

/**
 * vpci_msg_pop() - copy the next backend message out of the b2d ring
 * @r: the ring in shared memory (backend produces)
 * @cons: our private consumer count, advanced and published on success
 * @m: set to a private copy of the message
 *
 * Return: 1 if a message was copied, 0 if the ring is empty, -EPROTO if
 * the producer count is impossible.
 */
int vpci_msg_pop(struct vpci_msg_ring *r, u32 *cons, struct vpci_msg *m)
{
	struct vpci_msg *e;
	u32 prod;

	/* Pairs with the producer's release store: the entry is complete. */
	prod = le32_to_cpu(virt_load_acquire(&r->prod));
	if (prod == *cons)
		return 0;
	if (prod - *cons > VPCI_MSG_RING_SIZE)
		return -EPROTO;

	e = &r->ent[*cons % VPCI_MSG_RING_SIZE];
	m->type = READ_ONCE(e->type);
	m->perm = READ_ONCE(e->perm);
	m->queue = READ_ONCE(e->queue);
	m->seq = READ_ONCE(e->seq);
	m->iova = READ_ONCE(e->iova);
	m->size = READ_ONCE(e->size);
	m->bar_offset = READ_ONCE(e->bar_offset);

	(*cons)++;
	/* Our reads of the entry complete before the producer may reuse it. */
	virt_store_release(&r->cons, cpu_to_le32(*cons));
	return 1;
}

/**
 * vpci_msg_pending() - messages waiting on the b2d ring
 * @r: the ring in shared memory (backend produces)
 * @cons: our private consumer count
 *
 * Return: the messages not yet popped, or -EPROTO if the producer count is
 * impossible.
 */
int vpci_msg_pending(struct vpci_msg_ring *r, u32 cons)
{
	/* Pairs with the producer's release store, as in vpci_msg_pop(). */
	u32 prod = le32_to_cpu(virt_load_acquire(&r->prod));

	if (prod - cons > VPCI_MSG_RING_SIZE)
		return -EPROTO;
	return prod - cons;
}

/**
 * vpci_msg_push() - post a message on the d2b ring
 * @r: the ring in shared memory (driver produces)
 * @prod: our private producer count, advanced and published on success
 * @m: message to copy in
 *
 * Return: 0, -ENOSPC if the ring is full, -EPROTO if the consumer count
 * is impossible.
 */
int vpci_msg_push(struct vpci_msg_ring *r, u32 *prod, const struct vpci_msg *m)
{
	return vpci_msg_push_keep(r, prod, m, 0);
}

/**
 * vpci_msg_room() - free slots on the d2b ring
 * @r: the ring in shared memory (driver produces)
 * @prod: our private producer count
 *
 * The consumer may free more at any time, never fewer: the room only grows
 * until we push.
 *
 * Return: the free slots, or -EPROTO if the consumer count is impossible.
 */
int vpci_msg_room(struct vpci_msg_ring *r, u32 prod)
{
	/* Pairs with the consumer's release store: those slots are free. */
	u32 cons = le32_to_cpu(virt_load_acquire(&r->cons));

	if (prod - cons > VPCI_MSG_RING_SIZE)
		return -EPROTO;
	return VPCI_MSG_RING_SIZE - (prod - cons);
}

/**
 * vpci_msg_push_keep() - post a message, leaving @keep slots free
 * @r: the ring in shared memory (driver produces)
 * @prod: our private producer count, advanced and published on success
 * @m: message to copy in
 * @keep: slots that must stay free after this one (reserved for others)
 *
 * Return: 0, -ENOSPC if fewer than @keep + 1 slots are free, -EPROTO if
 * the consumer count is impossible.
 */
int vpci_msg_push_keep(struct vpci_msg_ring *r, u32 *prod,
		       const struct vpci_msg *m, unsigned int keep)
{
	struct vpci_msg *e;
	int room = vpci_msg_room(r, *prod);

	if (room < 0)
		return room;
	if ((unsigned int)room <= keep)
		return -ENOSPC;

	e = &r->ent[*prod % VPCI_MSG_RING_SIZE];
	WRITE_ONCE(e->type, m->type);
	WRITE_ONCE(e->perm, m->perm);
	WRITE_ONCE(e->queue, m->queue);
	WRITE_ONCE(e->seq, m->seq);
	WRITE_ONCE(e->iova, m->iova);
	WRITE_ONCE(e->size, m->size);
	WRITE_ONCE(e->bar_offset, m->bar_offset);

	(*prod)++;
	/* The entry is visible before the new count. */
	virt_store_release(&r->prod, cpu_to_le32(*prod));
	return 0;
}
