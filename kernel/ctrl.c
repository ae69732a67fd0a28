// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net: the control area at the end of BAR2.
 *
 * The backend (host) writes the header and its state section; this driver
 * writes only its own sections.  Everything read from the control area is
 * peer-controlled: read once, validated, then used from a private copy.
 */
#include <linux/io.h>
#include "vpci.h"

/**
 * vpci_ctrl_set_driver_status() - update VPCI_DS_* bits seen by the backend
 * @vdev: the device
 * @set: bits to set
 * @clear: bits to clear
 *
 * Does not notify; callers ring the backend once they are done.
 */
void vpci_ctrl_set_driver_status(struct vpci_dev *vdev, u32 set, u32 clear)
{
	u32 status;

	mutex_lock(&vdev->state_lock);
	/* Only this driver writes the driver section: our own value is safe. */
	status = le32_to_cpu(READ_ONCE(vdev->ctrl->driver.status));
	status = (status & ~clear) | set;
	WRITE_ONCE(vdev->ctrl->driver.status, cpu_to_le32(status));
	mutex_unlock(&vdev->state_lock);
}

/**
 * vpci_ctrl_set_mtu() - publish the interface MTU to the backend
 * @vdev: the device
 * @mtu: new MTU, already bounded by the netdev core
 */
void vpci_ctrl_set_mtu(struct vpci_dev *vdev, unsigned int mtu)
{
	mutex_lock(&vdev->state_lock);
	WRITE_ONCE(vdev->ctrl->driver.mtu, cpu_to_le16(mtu));
	mutex_unlock(&vdev->state_lock);
}

/**
 * vpci_ring_backend() - ring the backend's doorbell
 * @vdev: the device
 * @vector: VPCI_VEC_CONFIG, or VPCI_VEC_QUEUE(q) to interrupt VM1
 *
 * Queue vectors go to vdev->call_peer (VM1's call eventfds, once the
 * backend announced them as a peer of their own), the config vector to the
 * backend.  writel() orders all earlier stores to the control area (normal
 * memory) before the doorbell MMIO write, so the backend sees them once
 * woken.
 */
void vpci_ring_backend(struct vpci_dev *vdev, unsigned int vector)
{
	u32 peer = vector == VPCI_VEC_CONFIG ? le16_to_cpu(vdev->hdr.backend_peer_id) :
					       READ_ONCE(vdev->call_peer);

	writel(peer << 16 | (vector & 0xffff), vdev->regs + IVSHMEM_REG_DOORBELL);
}

/*
 * Apply the backend state: reads the generation first and the fields after
 * it; acknowledges the generation it applied through driver.generation_seen.
 * Returns true when b2d had more than one pass' worth: run again.  Under
 * config_lock.
 */
static bool vpci_config_run(struct vpci_dev *vdev)
{
	struct vpci_backend_state *bs = &vdev->ctrl->backend;
	u16 link, call_peer, probe;
	u32 gen, status;
	bool ring = false, more, blocked;

	gen = le32_to_cpu(READ_ONCE(bs->generation));
	/*
	 * Pairs with the backend's release store of generation after it
	 * updated the fields: fields read below are at least that new.
	 */
	virt_rmb();
	link = le16_to_cpu(READ_ONCE(bs->link));
	status = le32_to_cpu(READ_ONCE(bs->status));
	call_peer = le16_to_cpu(READ_ONCE(bs->call_peer_id));
	probe = le16_to_cpu(READ_ONCE(bs->call_peer_probe));

	mutex_lock(&vdev->state_lock);
	vdev->link_up = link & VPCI_LINK_UP;
	mutex_unlock(&vdev->state_lock);
	/* Any peer id is harmless: QEMU drops a doorbell to an unknown one. */
	WRITE_ONCE(vdev->call_peer, status & VPCI_BS_CALL_PEER ? call_peer :
			le16_to_cpu(vdev->hdr.backend_peer_id));
	/* Tell the backend its new peer reached us (see call_peer_probe). */
	if (probe)
		writel((u32)probe << 16 | VPCI_VEC_CONFIG,
		       vdev->regs + IVSHMEM_REG_DOORBELL);

	/*
	 * Acks and misses go out before vpci_dp_sync(): the NAPI runs it
	 * schedules may take a while, and VM1 waits for each ack.
	 */
	if (vpci_iotlb_process(vdev, &more, &blocked))
		vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	/*
	 * b2d left unread for want of d2b room: no queue starts and no
	 * generation ack until it is read (config_work comes back).
	 */
	if (blocked)
		return false;
	/* Queues stop (and publish progress) before the generation is acked. */
	vpci_dp_sync(vdev);

	mutex_lock(&vdev->state_lock);
	if (gen != vdev->generation) {
		vdev->generation = gen;
		/* Everything applied above is visible before the ack. */
		virt_store_release(&vdev->ctrl->driver.generation_seen,
				   cpu_to_le32(gen));
		ring = true;
	}
	mutex_unlock(&vdev->state_lock);

	if (ring)
		vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	return more;
}

/*
 * Config passes until b2d is drained, yielding between them.  None while
 * debugfs holds them (hold_config): releasing the hold queues config_work.
 */
static void vpci_config_drain(struct vpci_dev *vdev)
{
	mutex_lock(&vdev->config_lock);
	while (!READ_ONCE(vdev->hold_config) && vpci_config_run(vdev)) {
		mutex_unlock(&vdev->config_lock);
		cond_resched();
		mutex_lock(&vdev->config_lock);
	}
	mutex_unlock(&vdev->config_lock);
}

/**
 * vpci_config_thread() - the config vector's IRQ thread
 * @irq: the vector
 * @data: the device
 *
 * VM1 waits for each invalidation's ack with its vCPU stopped (strict
 * mode: one per unmapped buffer), so the backend's messages are handled
 * in the IRQ thread, which runs ahead of the tasks the datapath keeps busy,
 * rather than in a work item queued behind them.
 *
 * Return: IRQ_HANDLED.
 */
irqreturn_t vpci_config_thread(int irq, void *data)
{
	/* Here, not in a work item: a backlog must not queue behind others. */
	vpci_config_drain(data);
	return IRQ_HANDLED;
}

/**
 * vpci_config_work() - apply the backend state outside the config vector
 * @work: &vpci_dev.config_work (queued at probe)
 */
void vpci_config_work(struct work_struct *work)
{
	vpci_config_drain(container_of(to_delayed_work(work), struct vpci_dev,
				       config_work));
}
