// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net: PCI probe and removal.
 *
 * Two PCI functions carry the same layout: BAR0 the ivshmem registers,
 * BAR1 the MSI-X table, BAR2 the peer's memory followed by the control area.
 * QEMU's ivshmem-doorbell (1af4:1110) is the emulation on stock QEMU: BAR2
 * maps all of the peer's memory and only this driver enforces the peer's
 * IOMMU.  The project's vhost-pci QEMU device (1af4:10f0, qemu/README.md)
 * shows in BAR2 only the windows the peer's IOMMU maps, so the hypervisor
 * enforces it.  The same ivshmem IDs are used by every other ivshmem user,
 * so either device is claimed only when BAR2 ends in a valid control area.
 */
#include <linux/cpu.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/pci.h>
#include "vpci.h"

#define CREATE_TRACE_POINTS
#include "trace.h"

#define PCI_DEVICE_ID_IVSHMEM	0x1110
/* QEMU's experimental range 1af4:10f0..10ff (docs/specs/pci-ids) */
#define PCI_DEVICE_ID_VHOST_PCI	0x10f0

static bool default_poll;
module_param(default_poll, bool, 0444);
MODULE_PARM_DESC(default_poll,
		 "Start new devices in poll mode instead of interrupt mode (default: false)");

static unsigned int miss_timeout_ms = VPCI_MISS_TIMEOUT_MS_DEFAULT;
module_param(miss_timeout_ms, uint, 0444);
MODULE_PARM_DESC(miss_timeout_ms,
		 "Milliseconds an IOTLB miss may stay unanswered before the access is a fault (10..60000, default 2000)");

static unsigned int iotlb_entries = VPCI_IOTLB_MAX;
module_param(iotlb_entries, uint, 0444);
MODULE_PARM_DESC(iotlb_entries,
		 "Translations the private IOTLB holds before it evicts round robin (16..65536, default 65536)");

/* Map the control area, copy its header out once and validate the copy. */
static int vpci_map_ctrl(struct vpci_dev *vdev)
{
	struct pci_dev *pdev = vdev->pdev;
	resource_size_t start = pci_resource_start(pdev, 2);
	const char *why;
	int err;

	if (!(pci_resource_flags(pdev, 2) & IORESOURCE_MEM) ||
	    vdev->bar_len < VPCI_CTRL_SIZE) {
		dev_info(&pdev->dev, "BAR2 too small for a control area, not a vhost-pci device\n");
		return -ENODEV;
	}
	if (!devm_request_mem_region(&pdev->dev, start, vdev->bar_len,
				     VPCI_DRV_NAME))
		return -EBUSY;

	vdev->ctrl = devm_memremap(&pdev->dev,
				   start + vdev->bar_len - VPCI_CTRL_SIZE,
				   VPCI_CTRL_SIZE, MEMREMAP_WB);
	if (IS_ERR(vdev->ctrl))
		return PTR_ERR(vdev->ctrl);

	memcpy(&vdev->hdr, &vdev->ctrl->hdr, sizeof(vdev->hdr));
	err = vpci_ctrl_check_hdr(&vdev->hdr, vdev->bar_len, &why);
	if (err) {
		if (le32_to_cpu(vdev->hdr.magic) == VPCI_CTRL_MAGIC)
			dev_err(&pdev->dev, "rejecting control area: %s\n", why);
		else
			dev_info(&pdev->dev, "%s, not a vhost-pci device\n", why);
		return err;
	}

	vdev->peer.size = le64_to_cpu(vdev->hdr.peer_mem_size);
	vdev->call_peer = le16_to_cpu(vdev->hdr.backend_peer_id);
	vdev->peer.base = devm_memremap(&pdev->dev, start, vdev->peer.size,
					MEMREMAP_WB);
	if (IS_ERR(vdev->peer.base))
		return PTR_ERR(vdev->peer.base);
	vdev->peer.iotlb = &vdev->iotlb;
	return 0;
}

/* Queue vectors: VPCI_VEC_QUEUE(q) is VM1's kick of virtqueue q. */
static int vpci_request_queue_irqs(struct vpci_dev *vdev)
{
	struct pci_dev *pdev = vdev->pdev;
	unsigned int i;
	int err;

	for (i = 0; i < vdev->nqueues; i++) {
		struct vpci_queue *q = &vdev->queues[i];

		/* VM1's TX ring is our rx, as ethtool -S names the queues. */
		snprintf(q->irq_name, sizeof(q->irq_name), "%s-vq%u-%s",
			 pci_name(pdev), i / 2, i & 1 ? "rx" : "tx");
		err = request_irq(pci_irq_vector(pdev, VPCI_VEC_QUEUE(i)),
				  vpci_queue_irq, 0, q->irq_name, q);
		if (err)
			goto err_free;
	}
	return 0;

err_free:
	while (i--)
		free_irq(pci_irq_vector(pdev, VPCI_VEC_QUEUE(i)), &vdev->queues[i]);
	return err;
}

/*
 * The CPUs of queue pair @pair when @n pairs run, divided as virtio_net
 * divides them (virtnet_set_affinity()): the online CPUs (those nearest
 * the device first) in contiguous blocks of ncpus / n, the first
 * ncpus % n blocks one larger; with more pairs than CPUs, one CPU each,
 * wrapping around.  Called with cpus_read_lock() held: the online set
 * must not change under num_online_cpus() and cpumask_local_spread().
 */
static void vpci_pair_cpus(struct vpci_dev *vdev, unsigned int pair,
			   unsigned int n, struct cpumask *mask)
{
	unsigned int ncpu = num_online_cpus();
	unsigned int stride = max(ncpu / n, 1U);
	unsigned int stragglers = ncpu >= n ? ncpu % n : 0;
	unsigned int first = pair * stride + min(pair, stragglers);
	unsigned int size = stride + (pair < stragglers ? 1 : 0);
	int node = dev_to_node(&vdev->pdev->dev);
	unsigned int k;

	cpumask_clear(mask);
	for (k = 0; k < size; k++)
		cpumask_set_cpu(cpumask_local_spread((first + k) % ncpu, node), mask);
}

/*
 * Spread pairs 0..@n-1 (vpci_set_affinity()); the caller holds the CPU
 * hotplug lock, for reading or, in a hotplug callback, for writing.
 */
static void __vpci_set_affinity(struct vpci_dev *vdev, unsigned int n, bool xps)
{
	unsigned int p;
	int err;

	vdev->spread_pairs = n;
	vdev->spread_xps = xps;
	for (p = 0; p < n && 2 * p + 1 < vdev->nqueues; p++) {
		struct vpci_queue *tx = &vdev->queues[2 * p];
		struct vpci_queue *rx = &vdev->queues[2 * p + 1];

		/*
		 * Each vector's own mask: the hint is kept by reference, and
		 * a mask shared by the pairs would show every vector the
		 * last pair's CPUs in /proc/irq/N/affinity_hint.
		 */
		vpci_pair_cpus(vdev, p, n, tx->affinity);
		cpumask_copy(rx->affinity, tx->affinity);
		irq_set_affinity_and_hint(pci_irq_vector(vdev->pdev, VPCI_VEC_QUEUE(2 * p)),
					  tx->affinity);
		irq_set_affinity_and_hint(pci_irq_vector(vdev->pdev, VPCI_VEC_QUEUE(2 * p + 1)),
					  rx->affinity);
		if (!xps)
			continue;
		/* __ variant: netif_set_xps_queue() takes cpus_read_lock() itself. */
		err = __netif_set_xps_queue(vdev->netdev, cpumask_bits(tx->affinity), p,
					    XPS_CPUS);
		if (err)
			netdev_warn(vdev->netdev, "TX queue %u: XPS map not set: %d\n", p, err);
	}
	/*
	 * The pairs VM1 does not run keep no hint: one from an earlier spread
	 * may name a CPU that is gone.  Their affinity stays (the IRQ core
	 * moves it off a dead CPU); the next spread that covers them sets both.
	 */
	for (; p < vdev->nqueues / 2; p++) {
		irq_update_affinity_hint(pci_irq_vector(vdev->pdev, VPCI_VEC_QUEUE(2 * p)), NULL);
		irq_update_affinity_hint(pci_irq_vector(vdev->pdev, VPCI_VEC_QUEUE(2 * p + 1)),
					 NULL);
	}
}

/**
 * vpci_set_affinity() - spread pairs 0..@n-1 over the CPUs
 * @vdev: the device
 * @n: the pairs that run
 * @xps: also set the stack's XPS maps (the netdev has @n TX queues)
 *
 * Both vectors of pair p get the CPUs vpci_pair_cpus() gives it as
 * affinity and affinity hint (a hint with an initial affinity, not a
 * managed one: irqbalance and /proc/irq may move them), and with @xps TX
 * queue p is sent on from those CPUs: a CPU transmits on the queues whose
 * completions it handles.  At probe for every pair, then again whenever
 * VM1 changes the pairs it runs (vpci_queues_work(), under RTNL; the stack
 * dropped the maps of the queues it took away), and as virtio_net does
 * whenever a CPU comes online or has gone (vpci_cpu_online(),
 * vpci_cpu_dead()).  Best effort: a vector or a queue left as it is still
 * works.
 */
void vpci_set_affinity(struct vpci_dev *vdev, unsigned int n, bool xps)
{
	/* The online CPUs stay put while the masks are computed and set. */
	cpus_read_lock();
	__vpci_set_affinity(vdev, n, xps);
	cpus_read_unlock();
}

/*
 * CPU hotplug: spread the pairs of the last vpci_set_affinity() again
 * over the CPUs online now (the hotplug lock is held for writing, so no
 * vpci_set_affinity() runs meanwhile).  The online callback runs once the
 * CPU is online, the dead one once it is gone: IRQs of a CPU going down
 * are moved off it by the IRQ core, this puts them where the spread wants
 * them and stops XPS from naming the dead CPU.
 */
static enum cpuhp_state vpci_online_state;
static enum cpuhp_state vpci_dead_state;

static void vpci_respread(struct vpci_dev *vdev)
{
	unsigned int n = vdev->spread_pairs;

	/*
	 * vpci_queues_work() may have cut the TX queues under RTNL and wait
	 * for the hotplug lock to spread the rest: no XPS map for a queue
	 * the stack no longer has (a racy read, it only narrows).
	 */
	if (vdev->spread_xps)
		n = min(n, READ_ONCE(vdev->netdev->real_num_tx_queues));
	if (n)
		__vpci_set_affinity(vdev, n, vdev->spread_xps);
}

static int vpci_cpu_online(unsigned int cpu, struct hlist_node *node)
{
	vpci_respread(hlist_entry_safe(node, struct vpci_dev, cpuhp_online));
	return 0;
}

static int vpci_cpu_dead(unsigned int cpu, struct hlist_node *node)
{
	vpci_respread(hlist_entry_safe(node, struct vpci_dev, cpuhp_dead));
	return 0;
}

static int vpci_cpuhp_init(void)
{
	int ret;

	ret = cpuhp_setup_state_multi(CPUHP_AP_ONLINE_DYN, "net/vhost_pci:online",
				      vpci_cpu_online, NULL);
	if (ret < 0)
		return ret;
	vpci_online_state = ret;
	/* A PREPARE state's teardown runs after the CPU is dead. */
	ret = cpuhp_setup_state_multi(CPUHP_BP_PREPARE_DYN, "net/vhost_pci:dead",
				      NULL, vpci_cpu_dead);
	if (ret < 0) {
		cpuhp_remove_multi_state(vpci_online_state);
		return ret;
	}
	vpci_dead_state = ret;
	return 0;
}

static void vpci_cpuhp_exit(void)
{
	cpuhp_remove_multi_state(vpci_dead_state);
	cpuhp_remove_multi_state(vpci_online_state);
}

/* Follow CPU hotplug from now on (no callback runs for the CPUs up now). */
static int vpci_cpuhp_add(struct vpci_dev *vdev)
{
	int err;

	err = cpuhp_state_add_instance_nocalls(vpci_online_state, &vdev->cpuhp_online);
	if (err)
		return err;
	err = cpuhp_state_add_instance_nocalls(vpci_dead_state, &vdev->cpuhp_dead);
	if (err)
		cpuhp_state_remove_instance_nocalls(vpci_online_state, &vdev->cpuhp_online);
	return err;
}

/* No callback of @vdev runs once this returns (it takes the hotplug lock). */
static void vpci_cpuhp_del(struct vpci_dev *vdev)
{
	cpuhp_state_remove_instance_nocalls(vpci_dead_state, &vdev->cpuhp_dead);
	cpuhp_state_remove_instance_nocalls(vpci_online_state, &vdev->cpuhp_online);
}

/* devres action: the queues' affinity masks, after their vectors are freed. */
static void vpci_free_affinity(void *data)
{
	struct vpci_dev *vdev = data;
	unsigned int i;

	for (i = 0; i < vdev->nqueues; i++)
		free_cpumask_var(vdev->queues[i].affinity);
}

static int vpci_alloc_affinity(struct vpci_dev *vdev)
{
	unsigned int i;
	int err;

	/* First, so a partial allocation is undone too (the rest are NULL). */
	err = devm_add_action_or_reset(&vdev->pdev->dev, vpci_free_affinity, vdev);
	if (err)
		return err;
	for (i = 0; i < vdev->nqueues; i++)
		if (!zalloc_cpumask_var(&vdev->queues[i].affinity, GFP_KERNEL))
			return -ENOMEM;
	return 0;
}

static void vpci_free_queue_irqs(struct vpci_dev *vdev)
{
	unsigned int i;

	for (i = 0; i < vdev->nqueues; i++) {
		unsigned int irq = pci_irq_vector(vdev->pdev, VPCI_VEC_QUEUE(i));

		/* free_irq() warns about a hint still set. */
		irq_update_affinity_hint(irq, NULL);
		free_irq(irq, &vdev->queues[i]);
	}
}

static void vpci_init_queues(struct vpci_dev *vdev)
{
	unsigned int i;

	for (i = 0; i < vdev->nqueues; i++) {
		struct vpci_queue *q = &vdev->queues[i];

		q->vdev = vdev;
		q->index = i;
		u64_stats_init(&q->syncp);
		atomic64_set(&q->kicks, 0);
		if (i & 1)
			netif_napi_add(vdev->netdev, &q->napi, vpci_poll);
	}
}

/* Each RX queue's NAPI and its vector, for netdev netlink (6.8+). */
static void vpci_link_napi(struct vpci_dev *vdev)
{
	unsigned int i;

	for (i = 1; i < vdev->nqueues; i += 2)
		vpci_queue_set_napi(vdev->netdev, i / 2, &vdev->queues[i].napi,
				    pci_irq_vector(vdev->pdev, VPCI_VEC_QUEUE(i)));
}

static void vpci_napi(struct vpci_dev *vdev, bool enable)
{
	unsigned int i;

	for (i = 1; i < vdev->nqueues; i += 2) {
		if (enable)
			napi_enable(&vdev->queues[i].napi);
		else
			napi_disable(&vdev->queues[i].napi);
	}
}

static int vpci_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct vpci_dev *vdev;
	int nvec, err;

	vdev = devm_kzalloc(&pdev->dev, sizeof(*vdev), GFP_KERNEL);
	if (!vdev)
		return -ENOMEM;
	vdev->pdev = pdev;
	mutex_init(&vdev->state_lock);
	spin_lock_init(&vdev->dp_lock);
	spin_lock_init(&vdev->msg_lock);
	INIT_DELAYED_WORK(&vdev->config_work, vpci_config_work);
	mutex_init(&vdev->config_lock);
	INIT_DELAYED_WORK(&vdev->retry_work, vpci_dp_retry_work);
	INIT_WORK(&vdev->queues_work, vpci_queues_work);
	vdev->miss_timeout = msecs_to_jiffies(miss_timeout_ms);
	vdev->poll_mode = default_poll;
	atomic64_set(&vdev->events_dropped, 0);
	atomic_set(&vdev->fail_inv_ack, 0);
	atomic_set(&vdev->stale_inv, 0);
	/* No "callbacks suppressed" lines: drops are counted instead. */
	ratelimit_state_init(&vdev->event_rs, HZ, VPCI_EVENTS_PER_SEC);
	ratelimit_set_flags(&vdev->event_rs, RATELIMIT_MSG_ON_RELEASE);

	err = pcim_enable_device(pdev);
	if (err)
		return err;
	err = pcim_iomap_regions(pdev, BIT(0), VPCI_DRV_NAME);
	if (err)
		return err;
	vdev->regs = pcim_iomap_table(pdev)[0];
	vdev->bar_len = pci_resource_len(pdev, 2);

	err = vpci_map_ctrl(vdev);
	if (err)
		return err;

	/* Start where the backend's rings are (a previous driver consumed). */
	vdev->b2d_cons = le32_to_cpu(READ_ONCE(vdev->ctrl->b2d.cons));
	vdev->d2b_prod = le32_to_cpu(READ_ONCE(vdev->ctrl->d2b.prod));

	vdev->own_id = readl(vdev->regs + IVSHMEM_REG_IVPOSITION) & 0xffff;
	vdev->nvec = le16_to_cpu(vdev->hdr.num_vectors);
	nvec = pci_msix_vec_count(pdev);
	if (nvec < 0 || (unsigned int)nvec < vdev->nvec) {
		dev_err(&pdev->dev, "device has %d MSI-X vectors, control area needs %u\n",
			nvec, vdev->nvec);
		return -ENODEV;
	}

	vdev->nqueues = 2 * le16_to_cpu(vdev->hdr.max_queue_pairs);
	vdev->queues = devm_kcalloc(&pdev->dev, vdev->nqueues,
				    sizeof(*vdev->queues), GFP_KERNEL);
	if (!vdev->queues)
		return -ENOMEM;
	err = vpci_alloc_affinity(vdev);
	if (err)
		return err;

	err = vpci_iotlb_init(&vdev->iotlb, iotlb_entries,
			      le64_to_cpu(vdev->hdr.peer_mem_size));
	if (err)
		return err;

	vdev->netdev = vpci_netdev_alloc(vdev);
	if (!vdev->netdev) {
		err = -ENOMEM;
		goto err_destroy_iotlb;
	}
	vpci_init_queues(vdev);

	/* QEMU drops MSI-X messages of a device that is not bus master. */
	pci_set_master(pdev);
	nvec = pci_alloc_irq_vectors(pdev, vdev->nvec, vdev->nvec, PCI_IRQ_MSIX);
	if (nvec < 0) {
		err = nvec;
		goto err_clear_master;
	}
	/* Threaded: the config pass sleeps (mutexes) and acks invalidations. */
	snprintf(vdev->config_irq_name, sizeof(vdev->config_irq_name),
		 "%s-config", pci_name(pdev));
	err = request_threaded_irq(pci_irq_vector(pdev, VPCI_VEC_CONFIG), NULL,
				   vpci_config_thread, IRQF_ONESHOT,
				   vdev->config_irq_name, vdev);
	if (err)
		goto err_free_vectors;
	err = vpci_request_queue_irqs(vdev);
	if (err)
		goto err_free_config_irq;
	/*
	 * Follow hotplug first, then spread: a CPU coming or going between
	 * the two finds nothing spread yet (spread_pairs 0) and the spread
	 * below sees the CPUs online after it; one during the spread waits
	 * for its hotplug lock and then spreads again.
	 */
	err = vpci_cpuhp_add(vdev);
	if (err)
		goto err_free_queue_irqs;
	vpci_set_affinity(vdev, vdev->nqueues / 2, false);
	vpci_link_napi(vdev);

	pci_set_drvdata(pdev, vdev);

	/*
	 * Tell the backend what device we are before VM1 can negotiate:
	 * multiqueue when the backend wired more than one pair (VM1's QEMU
	 * answers its control virtqueue and enables the pairs it asks for).
	 */
	vdev->device_features = VPCI_DEVICE_FEATURES;
	if (vdev->nqueues > 2)
		vdev->device_features |= BIT_ULL(VIRTIO_NET_F_MQ);
	WRITE_ONCE(vdev->ctrl->driver.device_features,
		   cpu_to_le64(vdev->device_features));
	vpci_ctrl_set_mtu(vdev, vdev->netdev->mtu);
	vpci_ctrl_set_driver_status(vdev, VPCI_DS_BOUND, VPCI_DS_UP);

	err = register_netdev(vdev->netdev);
	if (err)
		goto err_clear_status;
	vpci_napi(vdev, true);
	/* Pairs VM1 started before registration: vpci_queues_work() waited. */
	schedule_work(&vdev->queues_work);

	vpci_debugfs_add(vdev);

	/* Apply the current link state; later changes arrive as interrupts. */
	schedule_delayed_work(&vdev->config_work, 0);
	vpci_ring_backend(vdev, VPCI_VEC_CONFIG);

	netdev_info(vdev->netdev,
		    "vhost-pci peer: %llu MiB, %u queue pair(s), ivshmem id %u, backend id %u\n",
		    le64_to_cpu(vdev->hdr.peer_mem_size) >> 20,
		    le16_to_cpu(vdev->hdr.max_queue_pairs), vdev->own_id,
		    le16_to_cpu(vdev->hdr.backend_peer_id));
	return 0;

err_clear_status:
	vpci_ctrl_set_driver_status(vdev, 0, VPCI_DS_BOUND | VPCI_DS_UP);
	vpci_cpuhp_del(vdev);
err_free_queue_irqs:
	vpci_free_queue_irqs(vdev);
err_free_config_irq:
	free_irq(pci_irq_vector(pdev, VPCI_VEC_CONFIG), vdev);
	cancel_delayed_work_sync(&vdev->config_work);
	cancel_delayed_work_sync(&vdev->retry_work);
	cancel_work_sync(&vdev->queues_work);
err_free_vectors:
	pci_free_irq_vectors(pdev);
err_clear_master:
	pci_clear_master(pdev);
	free_netdev(vdev->netdev);
err_destroy_iotlb:
	vpci_iotlb_destroy(&vdev->iotlb);
	return err;
}

/*
 * Remove, or with @shutdown the part of it a reboot, power-off or kexec
 * needs: everything stops and BOUND is cleared, but the netdev is only
 * detached and closed (unregistering it could wait forever on a reference
 * held elsewhere, and power-off would hang) and nothing is freed.
 */
static void vpci_teardown(struct pci_dev *pdev, bool shutdown)
{
	struct vpci_dev *vdev = pci_get_drvdata(pdev);

	/* First, so no error injection races with the teardown below. */
	vpci_debugfs_del(vdev);

	/*
	 * Stop interrupts, then the work they queue, then the stack's and
	 * NAPI's use of the queues; only then is no peer access left and
	 * BOUND may be cleared (the backend stops waiting for our acks).
	 */
	free_irq(pci_irq_vector(pdev, VPCI_VEC_CONFIG), vdev);
	cancel_delayed_work_sync(&vdev->config_work);
	cancel_delayed_work_sync(&vdev->retry_work);
	cancel_work_sync(&vdev->queues_work);
	/*
	 * No more respreads (hotplug callbacks, vpci_queues_work(), cancelled
	 * above after the config pass that schedules it): a hint set between
	 * clearing it and free_irq() would warn.
	 */
	vpci_cpuhp_del(vdev);
	vpci_free_queue_irqs(vdev);

	if (shutdown) {
		/* ndo_stop as unregister would run it; the stack sends no more */
		rtnl_lock();
		netif_device_detach(vdev->netdev);
		dev_close(vdev->netdev);
		rtnl_unlock();
	} else {
		unregister_netdev(vdev->netdev);
	}
	vpci_napi(vdev, false);
	cancel_delayed_work_sync(&vdev->retry_work);
	vpci_dp_stop_all(vdev);

	vpci_ctrl_set_driver_status(vdev, 0, VPCI_DS_BOUND | VPCI_DS_UP);
	vpci_ring_backend(vdev, VPCI_VEC_CONFIG);

	pci_free_irq_vectors(pdev);
	pci_clear_master(pdev);
	if (shutdown) {
		/* Nothing may tear it down twice (see vpci_remove()). */
		pci_set_drvdata(pdev, NULL);
		return;
	}
	free_netdev(vdev->netdev);
	vpci_iotlb_destroy(&vdev->iotlb);
	/* BAR mappings, regions and the device enable are devres-managed. */
}

static void vpci_remove(struct pci_dev *pdev)
{
	/* Shut down already (vpci_shutdown()): nothing left to stop. */
	if (!pci_get_drvdata(pdev))
		return;
	vpci_teardown(pdev, false);
}

/**
 * vpci_shutdown() - reboot, power-off or kexec: let go of VM1 first
 * @pdev: the function
 *
 * The queues stop, nothing in this guest touches VM1's memory any more,
 * and BOUND is cleared, so the backend answers VM1's invalidations itself
 * at once instead of waiting for acks from a guest that went away (up to
 * its --inval-timeout-ms), and a kexec'd kernel finds the function quiet.
 * As NIC drivers do, the netdev is detached and closed, not unregistered.
 */
static void vpci_shutdown(struct pci_dev *pdev)
{
	vpci_teardown(pdev, true);
}

static const struct pci_device_id vpci_ids[] = {
	{ PCI_VDEVICE(REDHAT_QUMRANET, PCI_DEVICE_ID_IVSHMEM) },
	{ PCI_VDEVICE(REDHAT_QUMRANET, PCI_DEVICE_ID_VHOST_PCI) },
	{ }
};
MODULE_DEVICE_TABLE(pci, vpci_ids);

static struct pci_driver vpci_driver = {
	.name		= VPCI_DRV_NAME,
	.id_table	= vpci_ids,
	.probe		= vpci_probe,
	.remove		= vpci_remove,
	.shutdown	= vpci_shutdown,
};

/*
 * The netlink family exists before any device can send an event on it and
 * goes away after the last one is gone.
 */
static int __init vpci_init(void)
{
	int err;

	if (miss_timeout_ms < VPCI_MISS_TIMEOUT_MS_MIN ||
	    miss_timeout_ms > VPCI_MISS_TIMEOUT_MS_MAX) {
		pr_err("miss_timeout_ms=%u out of range [%u, %u]\n",
		       miss_timeout_ms, VPCI_MISS_TIMEOUT_MS_MIN,
		       VPCI_MISS_TIMEOUT_MS_MAX);
		return -EINVAL;
	}
	if (iotlb_entries < VPCI_IOTLB_MIN || iotlb_entries > VPCI_IOTLB_MAX) {
		pr_err("iotlb_entries=%u out of range [%u, %u]\n", iotlb_entries,
		       VPCI_IOTLB_MIN, VPCI_IOTLB_MAX);
		return -EINVAL;
	}
	err = vpci_cpuhp_init();
	if (err)
		return err;
	err = vpci_nl_init();
	if (err)
		goto err_cpuhp_exit;
	vpci_debugfs_init();
	err = pci_register_driver(&vpci_driver);
	if (err)
		goto err_debugfs_exit;
	return 0;

err_debugfs_exit:
	vpci_debugfs_exit();
	vpci_nl_exit();
err_cpuhp_exit:
	vpci_cpuhp_exit();
	return err;
}
module_init(vpci_init);

static void __exit vpci_exit(void)
{
	pci_unregister_driver(&vpci_driver);
	vpci_debugfs_exit();
	vpci_nl_exit();
	vpci_cpuhp_exit();
}
module_exit(vpci_exit);

MODULE_DESCRIPTION("vhost-pci: device side of a peer VM's virtio-net");
MODULE_AUTHOR("The vhost-pci authors");
MODULE_LICENSE("GPL");
MODULE_VERSION(VPCI_DRV_VERSION);
