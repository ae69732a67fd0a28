// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net: debugfs, in the spirit of netdevsim.  One directory per
 * device, /sys/kernel/debug/vhost_pci_net/<pci address>/:
 *
 *  iotlb              the private IOTLB, one "start last bar_offset perm"
 *                     line per entry (hex), sorted by IOVA
 *  state              mode, IOTLB use and every queue's ring state
 *  fail_next_inv_ack  error injection: the next N invalidations are applied
 *                     but not acknowledged, so the backend's timeout path
 *                     runs (write N; reads back what is left)
 *  stale_next_inv     error injection: the next N invalidations are
 *                     acknowledged with their entries left in place, the
 *                     early ack the security hinge forbids (sim/early_ack.sh
 *                     shows what catches it)
 *  inject_fault       error injection: "QUEUE REASON [IOVA [LEN]]" raises a
 *                     synthetic fault through the datapath's own fault path
 *                     (counters, tracepoint, netlink event); REASON is one
 *                     of perm, miss_timeout, chain, head, ring, desc;
 *                     "QUEUE break" stops a running queue as a ring fault
 *                     does (counted; VM1 disabling the ring recovers it)
 *  hold_config        1: config passes are skipped (the control area, b2d
 *                     and the queues' start and stop are left unread), as
 *                     by a driver slow to look; 0: one pass is queued now
 *                     and the rest run as usual (sim/reconnect.sh)
 *
 * Built only with CONFIG_DEBUG_FS (vpci.h has the stubs).  Files are removed
 * first in remove(): debugfs waits for readers and writers still inside.
 */
#include <linux/debugfs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include "vpci.h"

#define VPCI_DBG_CHUNK	64

static struct dentry *vpci_debugfs_root;

static int vpci_dbg_iotlb_show(struct seq_file *s, void *unused)
{
	struct vpci_dev *vdev = s->private;
	struct vpci_iotlb_entry *buf;
	unsigned int n, i;
	u32 gen, first_gen = 0;
	bool first = true, end = false;
	u64 from = 0;

	buf = kmalloc_array(VPCI_DBG_CHUNK, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	seq_puts(s, "# start last bar_offset perm\n");
	do {
		n = vpci_iotlb_copy(vdev, from, buf, VPCI_DBG_CHUNK, &gen);
		if (first)
			first_gen = gen;
		first = false;
		for (i = 0; i < n; i++)
			seq_printf(s, "%#llx %#llx %#llx %u\n", buf[i].start,
				   buf[i].last, buf[i].bar_offset, buf[i].perm);
		if (n) {
			/* The next chunk starts after this one's last entry. */
			end = buf[n - 1].last == U64_MAX;
			from = buf[n - 1].last + 1;
		}
	} while (n == VPCI_DBG_CHUNK && !end);
	if (gen != first_gen)
		seq_puts(s, "# the table changed while it was read\n");
	kfree(buf);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vpci_dbg_iotlb);

/* Per-queue values that live under dp_lock */
struct vpci_dbg_qsnap {
	u32 state;
	u64 desc, avail, used;
	u16 num, last_avail, used_idx, used_pub, epoch;
	bool event_idx;
	u64 miss_iova;
};

static const char * const vpci_dbg_qstate[] = {
	[VPCI_QUEUE_STOPPED] = "stopped",
	[VPCI_QUEUE_RUNNING] = "running",
	[VPCI_QUEUE_STALLED] = "stalled",
	[VPCI_QUEUE_BROKEN] = "broken",
};

static int vpci_dbg_state_show(struct seq_file *s, void *unused)
{
	struct vpci_dev *vdev = s->private;
	struct vpci_dbg_qsnap *snap;
	u32 entries, cap;
	unsigned int i;

	snap = kcalloc(vdev->nqueues, sizeof(*snap), GFP_KERNEL);
	if (!snap)
		return -ENOMEM;
	/* dp_lock: the IOTLB and every queue's ring state */
	spin_lock_bh(&vdev->dp_lock);
	entries = vdev->iotlb.n;
	cap = vdev->iotlb.cap;
	for (i = 0; i < vdev->nqueues; i++) {
		struct vpci_queue *q = &vdev->queues[i];

		snap[i].state = vpci_dp_queue_state(q);
		snap[i].desc = q->vr.desc;
		snap[i].avail = q->vr.avail;
		snap[i].used = q->vr.used;
		snap[i].num = q->vr.num;
		snap[i].last_avail = q->vr.last_avail;
		snap[i].used_idx = q->vr.used_idx;
		snap[i].used_pub = q->vr.used_pub;
		snap[i].event_idx = q->vr.event_idx;
		snap[i].epoch = q->epoch;
		snap[i].miss_iova = q->miss.pending ? q->miss.wait : 0;
	}
	spin_unlock_bh(&vdev->dp_lock);

	seq_printf(s, "mode: %s\nhybrid_usecs: %u\nevents: %#x\nevents_dropped: %lld\n",
		   READ_ONCE(vdev->poll_mode) ? "poll" : "interrupt",
		   READ_ONCE(vdev->hybrid_usecs), READ_ONCE(vdev->events),
		   (long long)atomic64_read(&vdev->events_dropped));
	seq_printf(s, "iotlb: %u/%u entries\nmiss_timeout_ms: %u\nfail_next_inv_ack: %d\n",
		   entries, cap, jiffies_to_msecs(vdev->miss_timeout),
		   atomic_read(&vdev->fail_inv_ack));
	for (i = 0; i < vdev->nqueues; i++) {
		struct vpci_vq_config *vc = &vdev->ctrl->vq_config[i];

		seq_printf(s, "queue %u: %s enabled=%u notify=%u num=%u desc=%#llx avail=%#llx used=%#llx last_avail=%u used_idx=%u used_pub=%u event_idx=%d miss_iova=%#llx epoch=%u/%u\n",
			   i, vpci_dbg_qstate[snap[i].state],
			   le16_to_cpu(READ_ONCE(vc->enabled)),
			   le16_to_cpu(READ_ONCE(vc->notify)), snap[i].num,
			   snap[i].desc, snap[i].avail, snap[i].used,
			   snap[i].last_avail, snap[i].used_idx,
			   snap[i].used_pub, snap[i].event_idx,
			   snap[i].miss_iova, snap[i].epoch,
			   le16_to_cpu(READ_ONCE(vc->epoch)));
	}
	kfree(snap);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(vpci_dbg_state);

static const struct {
	const char *name;
	int err;
} vpci_dbg_reasons[] = {
	{ "perm", -EACCES },
	{ "miss_timeout", -ENOENT },
	{ "chain", -ELOOP },
	{ "head", -ERANGE },
	{ "ring", -EPROTO },
	{ "desc", -EINVAL },
	{ "break", 0 },		/* vpci_dp_inject_break() */
};

static ssize_t vpci_dbg_inject_write(struct file *file, const char __user *ubuf,
				     size_t count, loff_t *ppos)
{
	struct vpci_dev *vdev = file->private_data;
	char buf[96], reason[16], extra;
	unsigned long long iova = 0, len = 0;
	unsigned int queue, i;
	int n, err;

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';
	n = sscanf(buf, "%u %15s %llx %llu", &queue, reason, &iova, &len);
	if (n < 2)
		return -EINVAL;
	for (i = 0; i < ARRAY_SIZE(vpci_dbg_reasons); i++)
		if (!strcmp(reason, vpci_dbg_reasons[i].name))
			break;
	if (i == ARRAY_SIZE(vpci_dbg_reasons))
		return -EINVAL;
	if (vpci_dbg_reasons[i].err)
		err = vpci_dp_inject_fault(vdev, queue, vpci_dbg_reasons[i].err,
					   iova, len);
	else if (sscanf(buf, "%*u %*s %c", &extra) < 1) /* nothing after "break" */
		err = vpci_dp_inject_break(vdev, queue);
	else
		err = -EINVAL;
	return err ? err : count;
}

static const struct file_operations vpci_dbg_inject_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = vpci_dbg_inject_write,
};

static ssize_t vpci_dbg_hold_read(struct file *file, char __user *ubuf,
				  size_t count, loff_t *ppos)
{
	struct vpci_dev *vdev = file->private_data;
	char buf[3] = { READ_ONCE(vdev->hold_config) ? '1' : '0', '\n', '\0' };

	return simple_read_from_buffer(ubuf, count, ppos, buf, 2);
}

static ssize_t vpci_dbg_hold_write(struct file *file, const char __user *ubuf,
				   size_t count, loff_t *ppos)
{
	struct vpci_dev *vdev = file->private_data;
	bool hold;
	int err;

	err = kstrtobool_from_user(ubuf, count, &hold);
	if (err)
		return err;
	WRITE_ONCE(vdev->hold_config, hold);
	/* What arrived while held has rung already: look now. */
	if (!hold)
		mod_delayed_work(system_wq, &vdev->config_work, 0);
	return count;
}

static const struct file_operations vpci_dbg_hold_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = vpci_dbg_hold_read,
	.write = vpci_dbg_hold_write,
	.llseek = default_llseek,
};

/**
 * vpci_debugfs_init() - create the driver's debugfs root
 */
void vpci_debugfs_init(void)
{
	vpci_debugfs_root = debugfs_create_dir(VPCI_DRV_NAME, NULL);
}

/**
 * vpci_debugfs_exit() - remove the driver's debugfs root
 */
void vpci_debugfs_exit(void)
{
	debugfs_remove_recursive(vpci_debugfs_root);
	vpci_debugfs_root = NULL;
}

/**
 * vpci_debugfs_add() - create a device's debugfs directory
 * @vdev: the device, fully set up
 *
 * debugfs failures are not errors (the files are for debugging only).
 */
void vpci_debugfs_add(struct vpci_dev *vdev)
{
	struct dentry *d;

	d = debugfs_create_dir(pci_name(vdev->pdev), vpci_debugfs_root);
	vdev->debugfs = d;
	debugfs_create_file("iotlb", 0400, d, vdev, &vpci_dbg_iotlb_fops);
	debugfs_create_file("state", 0400, d, vdev, &vpci_dbg_state_fops);
	debugfs_create_atomic_t("fail_next_inv_ack", 0600, d,
				&vdev->fail_inv_ack);
	debugfs_create_atomic_t("stale_next_inv", 0600, d, &vdev->stale_inv);
	debugfs_create_file("inject_fault", 0200, d, vdev,
			    &vpci_dbg_inject_fops);
	debugfs_create_file("hold_config", 0600, d, vdev, &vpci_dbg_hold_fops);
}

/**
 * vpci_debugfs_del() - remove a device's debugfs directory
 * @vdev: the device
 *
 * Returns once no reader or writer of its files is left.
 */
void vpci_debugfs_del(struct vpci_dev *vdev)
{
	debugfs_remove_recursive(vdev->debugfs);
	vdev->debugfs = NULL;
}
