// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net: IOTLB messages from the backend, misses and acks to it.
 *
 * Runs from the config pass (the config vector's IRQ thread or a work item:
 * process context).  The b2d ring is consumed here only; the d2b ring is
 * produced under @msg_lock because the datapath posts misses too.
 */
#include <linux/ratelimit.h>
#include "vpci.h"
#include "trace.h"

/* Report a miss or an invalidation on netlink if the device asked for it. */
static void vpci_iotlb_event(struct vpci_dev *vdev, u32 type, u16 queue,
			     u64 iova, u64 len, u32 access)
{
	struct vpci_event ev = {
		.type = type,
		.queue = queue,
		.iova = iova,
		.len = len,
		.access = access,
	};

	if (READ_ONCE(vdev->events) & VPCI_EVENTS_IOTLB)
		vpci_nl_event(vdev, &ev);
}

/* Post on d2b, leaving @keep slots free (misses keep room for acks). */
static int vpci_post(struct vpci_dev *vdev, u8 type, u8 perm, u16 queue,
		     u32 seq, u64 iova, u64 size, unsigned int keep)
{
	struct vpci_msg m = {
		.type = type,
		.perm = perm,
		.queue = cpu_to_le16(queue),
		.seq = cpu_to_le32(seq),
		.iova = cpu_to_le64(iova),
		.size = cpu_to_le64(size),
	};
	int err;

	spin_lock_bh(&vdev->msg_lock);
	err = vpci_msg_push_keep(&vdev->ctrl->d2b, &vdev->d2b_prod, &m, keep);
	spin_unlock_bh(&vdev->msg_lock);
	/* A miss finding no room is normal (its queue asks again); an ack can't */
	if (err && (err != -ENOSPC || !keep))
		dev_warn_ratelimited(&vdev->pdev->dev, "d2b ring: %s\n",
				     err == -ENOSPC ? "full" : "corrupt consumer count");
	return err;
}

/* Bytes of each part of a split virtqueue of @num entries, event idx included. */
static u64 vpci_ring_bytes(unsigned int part, u16 num)
{
	switch (part) {
	case 0:
		return 16ULL * num;		/* descriptor table */
	case 1:
		return 6ULL + 2ULL * num;	/* avail: flags, idx, ring, used_event */
	default:
		return 6ULL + 8ULL * num;	/* used: flags, idx, ring, avail_event */
	}
}

/*
 * Mark the running queues whose rings [@iova, @iova + @size - 1] reaches
 * (@size 0: from @iova to the end): VM1 unmapped a ring it runs, which the
 * config pass then takes for a ring fault, unlike an entry the IOTLB
 * evicted (struct vpci_queue, rings_gone).  Under dp_lock.
 */
static void vpci_rings_invalidated(struct vpci_dev *vdev, u64 iova, u64 size)
{
	u64 last = size ? iova + (size - 1) : U64_MAX;
	unsigned int i, part;

	for (i = 0; i < vdev->nqueues; i++) {
		struct vpci_queue *q = &vdev->queues[i];
		u64 addr[3] = { q->vr.desc, q->vr.avail, q->vr.used };

		if (!q->running)
			continue;
		for (part = 0; part < 3; part++)
			/* A running queue's rings translated: no wrap. */
			if (addr[part] <= last &&
			    iova <= addr[part] + (vpci_ring_bytes(part, q->vr.num) - 1))
				q->rings_gone = true;
	}
}

/*
 * Apply one validated-by-copy message.  Returns true if the backend must be
 * rung (an ack was posted).
 */
static bool vpci_iotlb_apply(struct vpci_dev *vdev, const struct vpci_msg *m)
{
	u64 iova = le64_to_cpu(m->iova);
	u64 size = le64_to_cpu(m->size);
	u32 seq = le32_to_cpu(m->seq);
	int err;

	switch (m->type) {
	case VPCI_MSG_IOTLB_UPDATE:
		spin_lock_bh(&vdev->dp_lock);
		err = vpci_iotlb_add(&vdev->iotlb, iova, size,
				     le64_to_cpu(m->bar_offset), m->perm);
		if (!err)
			vpci_dp_misses_forget(vdev, iova, size);
		vdev->iotlb_gen++;
		spin_unlock_bh(&vdev->dp_lock);
		trace_vpci_iotlb_update(vdev->netdev->ifindex, iova, size,
					le64_to_cpu(m->bar_offset), m->perm, err);
		if (err) {
			vdev->stats.iotlb_bad_msgs++;
			dev_warn_ratelimited(&vdev->pdev->dev,
					     "IOTLB update iova %#llx size %#llx -> %#llx perm %u refused: %d\n",
					     iova, size, le64_to_cpu(m->bar_offset),
					     m->perm, err);
			return false;
		}
		vdev->stats.iotlb_updates++;
		return false;
	case VPCI_MSG_IOTLB_INVALIDATE:
		if (vpci_stale_inv(vdev)) {
			/* debugfs stale_next_inv: ack, keep the entries */
			dev_info(&vdev->pdev->dev,
				 "error injection: acking invalidation %u, entries kept\n",
				 seq);
			err = vpci_post(vdev, VPCI_MSG_IOTLB_INV_ACK, 0, 0xffff,
					seq, iova, size, 0);
			return !err;
		}
		spin_lock_bh(&vdev->dp_lock);
		if (size) {
			err = vpci_iotlb_del(&vdev->iotlb, iova, size);
		} else {
			/* 0: from iova to the end (a global flush in VM1) */
			vpci_iotlb_del_to_end(&vdev->iotlb, iova);
			err = 0;
		}
		/* Misses asked there before may never be answered now. */
		vpci_dp_misses_forget(vdev, iova, size);
		if (!err)
			vpci_rings_invalidated(vdev, iova, size);
		vdev->iotlb_gen++;
		spin_unlock_bh(&vdev->dp_lock);
		if (err) {
			trace_vpci_iotlb_invalidate(vdev->netdev->ifindex, iova,
						    size, seq, err, false);
			/* Never ack what was not removed: the backend times out. */
			vdev->stats.iotlb_bad_msgs++;
			dev_warn_ratelimited(&vdev->pdev->dev,
					     "IOTLB invalidate iova %#llx size %#llx failed: %d, not acked\n",
					     iova, size, err);
			return false;
		}
		vdev->stats.iotlb_invalidations++;
		vpci_iotlb_event(vdev, VPCI_EVENT_IOTLB_INVALIDATE, 0xffff, iova,
				 size, 0);
		if (vpci_withhold_inv_ack(vdev)) {
			/* debugfs fail_next_inv_ack: let the backend time out */
			dev_info(&vdev->pdev->dev,
				 "error injection: withholding the ack of invalidation %u\n",
				 seq);
			trace_vpci_iotlb_invalidate(vdev->netdev->ifindex, iova,
						    size, seq, 0, false);
			return false;
		}
		/*
		 * The datapath uses translations only inside dp_lock, which we
		 * just held to remove these: no access to the range remains.
		 */
		err = vpci_post(vdev, VPCI_MSG_IOTLB_INV_ACK, 0, 0xffff, seq,
				iova, size, 0);
		trace_vpci_iotlb_invalidate(vdev->netdev->ifindex, iova, size,
					    seq, err, !err);
		return !err;
	default:
		vdev->stats.iotlb_bad_msgs++;
		dev_warn_ratelimited(&vdev->pdev->dev, "unknown b2d message type %u\n",
				     m->type);
		return false;
	}
}

/**
 * vpci_post_miss() - ask the backend for a translation
 * @vdev: the device
 * @queue: the queue that stalled on it
 * @iova: the untranslated address
 * @perm: the access wanted
 *
 * Return: 0 when posted (ring the backend), -ENOSPC or -EPROTO otherwise.
 */
int vpci_post_miss(struct vpci_dev *vdev, u16 queue, u64 iova, u32 perm)
{
	return vpci_post(vdev, VPCI_MSG_IOTLB_MISS, perm, queue, 0, iova, 1,
			 VPCI_D2B_ACK_RESERVE);
}

/*
 * For every enabled queue, find the first untranslated byte of its rings
 * and post one miss for it; the update answering it raises another config
 * interrupt, which brings us back here for the next gap.
 */
static bool vpci_map_rings(struct vpci_dev *vdev)
{
	unsigned int q, part, nq = 2 * le16_to_cpu(vdev->hdr.max_queue_pairs);
	bool rung = false;

	for (q = 0; q < nq; q++) {
		struct vpci_vq_config *vc = &vdev->ctrl->vq_config[q];
		u64 addr[3], iova, left, off, contig;
		bool mapped = true;
		u16 num;

		num = le16_to_cpu(READ_ONCE(vc->num));
		if (!READ_ONCE(vc->enabled) || !num || num > 32768 ||
		    (num & (num - 1))) {
			vdev->rings_mapped &= ~BIT(q);
			continue;
		}
		addr[0] = le64_to_cpu(READ_ONCE(vc->desc));
		addr[1] = le64_to_cpu(READ_ONCE(vc->avail));
		addr[2] = le64_to_cpu(READ_ONCE(vc->used));

		for (part = 0; part < 3 && mapped; part++) {
			u32 perm = part == 2 ? VPCI_PERM_WO : VPCI_PERM_RO;
			int err = 0;

			iova = addr[part];
			left = vpci_ring_bytes(part, num);
			spin_lock_bh(&vdev->dp_lock);
			while (left) {
				err = vpci_iotlb_translate(&vdev->iotlb, iova, left,
							   perm, &off, &contig);
				if (err)
					break;
				iova += contig;
				left -= contig;
			}
			spin_unlock_bh(&vdev->dp_lock);
			if (!err)
				continue;
			mapped = false;
			/* An eviction is no fault, and may come at every pass. */
			if ((vdev->rings_mapped & BIT(q)) && net_ratelimit())
				netdev_warn(vdev->netdev,
					    "queue %u: ring part %u no longer translates at %#llx (%d)\n",
					    q, part, iova, err);
			if (err == -ENOENT && !vpci_post_miss(vdev, q, iova, perm)) {
				vdev->stats.iotlb_misses++;
				trace_vpci_iotlb_miss(vdev->netdev->ifindex, q, iova,
						      perm);
				vpci_iotlb_event(vdev, VPCI_EVENT_IOTLB_MISS, q,
						 iova, 1, perm);
				rung = true;
			} else if (err != -ENOENT) {
				dev_warn_ratelimited(&vdev->pdev->dev,
						     "queue %u ring part %u at %#llx unusable: %d\n",
						     q, part, addr[part], err);
			}
		}
		if (mapped && !(vdev->rings_mapped & BIT(q)))
			netdev_info(vdev->netdev,
				    "queue %u: rings mapped (num %u, desc %#llx avail %#llx used %#llx)\n",
				    q, num, addr[0], addr[1], addr[2]);
		if (mapped)
			vdev->rings_mapped |= BIT(q);
		else
			vdev->rings_mapped &= ~BIT(q);
	}
	return rung;
}

/**
 * vpci_iotlb_process() - drain b2d, then ask for untranslated ring pages
 * @vdev: the device
 * @more: set when b2d held more than one pass' worth (call again)
 * @blocked: set when b2d holds messages but d2b has no room for an ack:
 *	nothing else of the pass may run (the rings would be mapped and the
 *	generation acked with an invalidation still unread); config_work
 *	runs the pass again shortly
 *
 * Return: true if messages were posted on d2b and the backend must be rung.
 */
bool vpci_iotlb_process(struct vpci_dev *vdev, bool *more, bool *blocked)
{
	struct vpci_msg m;
	bool ring = false;
	int n, budget = VPCI_MSG_RING_SIZE;

	*blocked = false;
	while (budget-- > 0) {
		/*
		 * Read nothing we could not ack: misses leave
		 * VPCI_D2B_ACK_RESERVE slots, and only this pass (under
		 * config_lock) posts acks, so room >= 1 now means the ack of
		 * the message below finds a slot.  Without room, stop and
		 * look again shortly; the backend drains d2b when rung.  An
		 * empty b2d needs no room (no polling while the backend is
		 * gone); a corrupt count is vpci_msg_pop()'s to report.
		 */
		n = vpci_msg_pending(&vdev->ctrl->b2d, vdev->b2d_cons);
		if (n == 0)
			break;
		if (n > 0 && vpci_msg_room(&vdev->ctrl->d2b,
					   READ_ONCE(vdev->d2b_prod)) <= 0) {
			vdev->stats.d2b_full++;
			mod_delayed_work(system_wq, &vdev->config_work,
					 msecs_to_jiffies(VPCI_D2B_RETRY_MS));
			*blocked = true;
			*more = false;
			return true;	/* ring: the backend drains d2b */
		}
		n = vpci_msg_pop(&vdev->ctrl->b2d, &vdev->b2d_cons, &m);
		if (n < 0) {
			dev_err_ratelimited(&vdev->pdev->dev, "b2d ring: corrupt producer count\n");
			break;
		}
		if (!n)
			break;
		ring |= vpci_iotlb_apply(vdev, &m);
	}
	/* More pending: the caller comes back (see vpci_config_thread()). */
	*more = budget < 0;
	ring |= vpci_map_rings(vdev);
	return ring;
}

/**
 * vpci_iotlb_copy() - copy a slice of the private IOTLB out
 * @vdev: the device
 * @from: copy the entries that end at or after this IOVA, in IOVA order
 *	(a dump goes on from the last one's @last + 1)
 * @buf: where to copy
 * @max: entries @buf holds
 * @gen: set to the table's generation (changes whenever the table does)
 *
 * Takes dp_lock for the copy only, so a long dump never holds the
 * datapath off for more than @max entries.
 *
 * Return: entries copied; fewer than @max at the end of the table.
 */
unsigned int vpci_iotlb_copy(struct vpci_dev *vdev, u64 from,
			     struct vpci_iotlb_entry *buf, unsigned int max,
			     u32 *gen)
{
	unsigned int n;

	/* dp_lock: the datapath's softirqs use the IOTLB too */
	spin_lock_bh(&vdev->dp_lock);
	n = vpci_iotlb_slice(&vdev->iotlb, from, buf, max);
	*gen = vdev->iotlb_gen;
	spin_unlock_bh(&vdev->dp_lock);
	return n;
}
