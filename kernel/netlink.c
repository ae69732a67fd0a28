// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net: the "vhost_pci" generic netlink family
 * (uapi/linux/vhost_pci_netlink.h, docs/control-plane.md).
 *
 * DEV_GET and IOTLB_DUMP only read; MODE_SET needs CAP_NET_ADMIN and runs
 * under RTNL like the ethtool knobs it shares.  Devices are looked up in the
 * requester's network namespace and must be ours (netdev_ops).  Events go
 * to the "events" group from any context, the datapath's softirq included,
 * so they are built with GFP_ATOMIC and rate-limited per device.
 */
#include <linux/netdevice.h>
#include <linux/rtnetlink.h>
#include <net/genetlink.h>
#include <net/sock.h>
#include "vpci.h"

/* IOTLB entries copied out per dp_lock hold */
#define VPCI_NL_IOTLB_CHUNK	32

enum vpci_nl_mcgrp {
	VPCI_NL_MCGRP_EVENTS,
};

static const struct genl_multicast_group vpci_nl_mcgrps[] = {
	/* Events carry VM1's addresses: listeners need CAP_NET_ADMIN. */
	[VPCI_NL_MCGRP_EVENTS] = { .name = VPCI_GENL_MCGRP_EVENTS,
				   .flags = GENL_MCAST_CAP_NET_ADMIN, },
};

static struct netlink_range_validation vpci_nl_usecs_range = {
	.min = 0,
	.max = VPCI_HYBRID_USECS_MAX,
};

/* DEV_GET and IOTLB_DUMP: the device only */
static const struct nla_policy vpci_nl_dev_policy[VPCI_A_IFINDEX + 1] = {
	[VPCI_A_IFINDEX] = NLA_POLICY_MIN(NLA_U32, 1),
};

static const struct nla_policy vpci_nl_mode_policy[VPCI_A_EVENTS + 1] = {
	[VPCI_A_IFINDEX] = NLA_POLICY_MIN(NLA_U32, 1),
	[VPCI_A_MODE] = NLA_POLICY_MAX(NLA_U32, VPCI_MODE_MAX),
	[VPCI_A_HYBRID_USECS] = NLA_POLICY_FULL_RANGE(NLA_U32,
						      &vpci_nl_usecs_range),
	[VPCI_A_EVENTS] = NLA_POLICY_MASK(NLA_U32, VPCI_EVENTS_ALL),
};

static struct genl_family vpci_nl_family;

/*
 * The vhost-pci interface named by @attr in @net, with a reference held,
 * or an ERR_PTR with the reason in @extack.
 */
static struct net_device *vpci_nl_dev_get(struct net *net, struct nlattr *attr,
					  struct netlink_ext_ack *extack)
{
	struct net_device *dev;

	if (!attr) {
		NL_SET_ERR_MSG(extack, "ifindex is required");
		return ERR_PTR(-EINVAL);
	}
	dev = dev_get_by_index(net, nla_get_u32(attr));
	if (!dev) {
		NL_SET_ERR_MSG_ATTR(extack, attr, "no such device");
		return ERR_PTR(-ENODEV);
	}
	if (!vpci_netdev_is_ours(dev)) {
		dev_put(dev);
		NL_SET_ERR_MSG_ATTR(extack, attr, "not a vhost-pci device");
		return ERR_PTR(-EOPNOTSUPP);
	}
	return dev;
}

static u32 vpci_nl_mode(struct vpci_dev *vdev)
{
	if (READ_ONCE(vdev->poll_mode))
		return VPCI_MODE_POLL;
	return READ_ONCE(vdev->hybrid_usecs) ? VPCI_MODE_HYBRID :
					       VPCI_MODE_INTERRUPT;
}

/* What a queue nest reports that lives under dp_lock */
struct vpci_nl_qsnap {
	u32 state;
	u16 last_avail;
	u16 used_idx;
};

static int vpci_nl_put_queues(struct sk_buff *skb, struct vpci_dev *vdev)
{
	struct vpci_nl_qsnap snap[VPCI_MAX_QUEUES];
	unsigned int i;

	/* dp_lock: ring state of every queue, changed by the datapath */
	spin_lock_bh(&vdev->dp_lock);
	for (i = 0; i < vdev->nqueues; i++) {
		struct vpci_queue *q = &vdev->queues[i];

		snap[i].state = vpci_dp_queue_state(q);
		snap[i].last_avail = q->vr.last_avail;
		snap[i].used_idx = q->vr.used_idx;
	}
	spin_unlock_bh(&vdev->dp_lock);

	for (i = 0; i < vdev->nqueues; i++) {
		/* Backend-written: reported as read, never used. */
		struct vpci_vq_config *vc = &vdev->ctrl->vq_config[i];
		struct nlattr *nest;

		nest = nla_nest_start(skb, VPCI_A_QUEUE);
		if (!nest)
			return -EMSGSIZE;
		if (nla_put_u32(skb, VPCI_QUEUE_A_INDEX, i) ||
		    nla_put_u32(skb, VPCI_QUEUE_A_STATE, snap[i].state) ||
		    nla_put_u8(skb, VPCI_QUEUE_A_ENABLED,
			       !!le16_to_cpu(READ_ONCE(vc->enabled))) ||
		    nla_put_u32(skb, VPCI_QUEUE_A_NUM,
				le16_to_cpu(READ_ONCE(vc->num))) ||
		    nla_put_u32(skb, VPCI_QUEUE_A_NOTIFY,
				le16_to_cpu(READ_ONCE(vc->notify))) ||
		    nla_put_u32(skb, VPCI_QUEUE_A_LAST_AVAIL, snap[i].last_avail) ||
		    nla_put_u32(skb, VPCI_QUEUE_A_USED_IDX, snap[i].used_idx)) {
			nla_nest_cancel(skb, nest);
			return -EMSGSIZE;
		}
		nla_nest_end(skb, nest);
	}
	return 0;
}

static int vpci_nl_fill_dev(struct sk_buff *skb, struct vpci_dev *vdev,
			    u32 portid, u32 seq, int flags)
{
	struct vpci_backend_state *bs = &vdev->ctrl->backend;
	struct net_device *dev = vdev->netdev;
	u32 entries, cap;
	u64 evictions;
	void *hdr;

	hdr = genlmsg_put(skb, portid, seq, &vpci_nl_family, flags,
			  VPCI_CMD_DEV_GET);
	if (!hdr)
		return -EMSGSIZE;

	/* dp_lock: the IOTLB */
	spin_lock_bh(&vdev->dp_lock);
	entries = vdev->iotlb.n;
	cap = vdev->iotlb.cap;
	evictions = vdev->iotlb.evictions;
	spin_unlock_bh(&vdev->dp_lock);

	if (nla_put_u32(skb, VPCI_A_IFINDEX, dev->ifindex) ||
	    nla_put_string(skb, VPCI_A_IFNAME, dev->name) ||
	    nla_put_u64_64bit(skb, VPCI_A_DEVICE_FEATURES, vdev->device_features,
			      VPCI_A_PAD) ||
	    nla_put_u64_64bit(skb, VPCI_A_PEER_FEATURES,
			      le64_to_cpu(READ_ONCE(bs->features)), VPCI_A_PAD) ||
	    nla_put_u32(skb, VPCI_A_MAX_QUEUE_PAIRS, vdev->nqueues / 2) ||
	    nla_put_u32(skb, VPCI_A_QUEUE_PAIRS,
			le16_to_cpu(READ_ONCE(bs->num_queue_pairs))) ||
	    nla_put_u32(skb, VPCI_A_MODE, vpci_nl_mode(vdev)) ||
	    nla_put_u32(skb, VPCI_A_HYBRID_USECS, READ_ONCE(vdev->hybrid_usecs)) ||
	    nla_put_u32(skb, VPCI_A_IOTLB_ENTRIES, entries) ||
	    nla_put_u32(skb, VPCI_A_IOTLB_CAPACITY, cap) ||
	    nla_put_u64_64bit(skb, VPCI_A_IOTLB_EVICTIONS, evictions, VPCI_A_PAD) ||
	    nla_put_u32(skb, VPCI_A_EVENTS, READ_ONCE(vdev->events)) ||
	    nla_put_u64_64bit(skb, VPCI_A_EVENTS_DROPPED,
			      atomic64_read(&vdev->events_dropped), VPCI_A_PAD) ||
	    vpci_nl_put_queues(skb, vdev)) {
		genlmsg_cancel(skb, hdr);
		return -EMSGSIZE;
	}
	genlmsg_end(skb, hdr);
	return 0;
}

static int vpci_nl_dev_get_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct net_device *dev;
	struct sk_buff *msg;
	int err;

	dev = vpci_nl_dev_get(genl_info_net(info), info->attrs[VPCI_A_IFINDEX],
			      info->extack);
	if (IS_ERR(dev))
		return PTR_ERR(dev);

	msg = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!msg) {
		err = -ENOMEM;
		goto err_put_dev;
	}
	/* The reference keeps vdev: remove() waits for it in unregister. */
	err = vpci_nl_fill_dev(msg, vpci_from_netdev(dev), info->snd_portid,
			       info->snd_seq, 0);
	if (err)
		goto err_free_msg;
	dev_put(dev);
	return genlmsg_reply(msg, info);

err_free_msg:
	nlmsg_free(msg);
err_put_dev:
	dev_put(dev);
	return err;
}

static int vpci_nl_dev_get_dumpit(struct sk_buff *skb,
				  struct netlink_callback *cb)
{
	struct nlattr **attrs = vpci_genl_dump_attrs(cb);
	struct net *net = sock_net(skb->sk);
	long idx = 0, start = cb->args[0];
	struct net_device *dev;
	u32 only = 0;
	int err = 0;

	if (attrs[VPCI_A_IFINDEX]) {
		/* A filter must name one of ours, as DEV_GET's doit. */
		dev = vpci_nl_dev_get(net, attrs[VPCI_A_IFINDEX], cb->extack);
		if (IS_ERR(dev))
			return PTR_ERR(dev);
		only = dev->ifindex;
		dev_put(dev);
	}

	/*
	 * RCU keeps each device and its vdev: remove() unregisters the
	 * netdev, which waits for readers, before freeing anything.
	 */
	rcu_read_lock();
	for_each_netdev_rcu(net, dev) {
		if (!vpci_netdev_is_ours(dev) || (only && dev->ifindex != only))
			continue;
		if (idx < start) {
			idx++;
			continue;
		}
		err = vpci_nl_fill_dev(skb, vpci_from_netdev(dev),
				       NETLINK_CB(cb->skb).portid,
				       cb->nlh->nlmsg_seq, NLM_F_MULTI);
		if (err)
			break;
		idx++;
	}
	rcu_read_unlock();
	cb->args[0] = idx;
	/* A full skb ends this round; an empty one cannot hold a device. */
	return err && !skb->len ? err : skb->len;
}

static int vpci_nl_put_entry(struct sk_buff *skb, struct netlink_callback *cb,
			     int ifindex, const struct vpci_iotlb_entry *e)
{
	struct nlattr *nest;
	void *hdr;

	hdr = genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			  &vpci_nl_family, NLM_F_MULTI, VPCI_CMD_IOTLB_DUMP);
	if (!hdr)
		return -EMSGSIZE;
	genl_dump_check_consistent(cb, hdr);
	if (nla_put_u32(skb, VPCI_A_IFINDEX, ifindex))
		goto err_cancel;
	nest = nla_nest_start(skb, VPCI_A_IOTLB_ENTRY);
	if (!nest)
		goto err_cancel;
	if (nla_put_u64_64bit(skb, VPCI_IOTLB_A_START, e->start, VPCI_IOTLB_A_PAD) ||
	    nla_put_u64_64bit(skb, VPCI_IOTLB_A_LAST, e->last, VPCI_IOTLB_A_PAD) ||
	    nla_put_u64_64bit(skb, VPCI_IOTLB_A_BAR_OFFSET, e->bar_offset,
			      VPCI_IOTLB_A_PAD) ||
	    nla_put_u32(skb, VPCI_IOTLB_A_PERM, e->perm))
		goto err_cancel;
	nla_nest_end(skb, nest);
	genlmsg_end(skb, hdr);
	return 0;

err_cancel:
	genlmsg_cancel(skb, hdr);
	return -EMSGSIZE;
}

static int vpci_nl_iotlb_dumpit(struct sk_buff *skb,
				struct netlink_callback *cb)
{
	struct nlattr **attrs = vpci_genl_dump_attrs(cb);
	struct vpci_iotlb_entry *buf;
	struct net_device *dev;
	unsigned int n, i;
	/* Where the last message stopped: an IOVA, in two halves (long may be 32 bits). */
	u64 from = (u64)(u32)cb->args[1] << 32 | (u32)cb->args[0];
	u32 gen;
	int err = 0;

	if (cb->args[2])
		return 0;	/* the last entry ended at U64_MAX */
	dev = vpci_nl_dev_get(sock_net(skb->sk), attrs[VPCI_A_IFINDEX],
			      cb->extack);
	if (IS_ERR(dev))
		return PTR_ERR(dev);
	buf = kmalloc_array(VPCI_NL_IOTLB_CHUNK, sizeof(*buf), GFP_KERNEL);
	if (!buf) {
		err = -ENOMEM;
		goto out_put_dev;
	}

	for (;;) {
		n = vpci_iotlb_copy(vpci_from_netdev(dev), from, buf,
				    VPCI_NL_IOTLB_CHUNK, &gen);
		/* Non-zero; a change between messages sets NLM_F_DUMP_INTR. */
		cb->seq = gen | 1U << 31;
		for (i = 0; i < n; i++) {
			err = vpci_nl_put_entry(skb, cb, dev->ifindex, &buf[i]);
			if (err)
				goto out_free;
			/* Past the entry sent; U64_MAX was the last possible. */
			if (buf[i].last == U64_MAX) {
				cb->args[2] = 1;
				goto out_free;
			}
			from = buf[i].last + 1;
		}
		if (n < VPCI_NL_IOTLB_CHUNK)
			break;
	}

out_free:
	kfree(buf);
out_put_dev:
	dev_put(dev);
	cb->args[0] = (u32)from;
	cb->args[1] = from >> 32;
	return err && !skb->len ? err : skb->len;
}

static int vpci_nl_mode_set_doit(struct sk_buff *skb, struct genl_info *info)
{
	struct nlattr *mode_attr = info->attrs[VPCI_A_MODE];
	struct nlattr *usecs_attr = info->attrs[VPCI_A_HYBRID_USECS];
	struct nlattr *events_attr = info->attrs[VPCI_A_EVENTS];
	struct net_device *dev;
	struct vpci_dev *vdev;
	bool poll;
	u32 usecs;
	int err = 0;

	dev = vpci_nl_dev_get(genl_info_net(info), info->attrs[VPCI_A_IFINDEX],
			      info->extack);
	if (IS_ERR(dev))
		return PTR_ERR(dev);
	vdev = vpci_from_netdev(dev);
	if (!mode_attr && !usecs_attr && !events_attr) {
		GENL_SET_ERR_MSG(info, "nothing to set: give mode, hybrid usecs or events");
		err = -EINVAL;
		goto out_put_dev;
	}

	/* RTNL: serialises with ethtool's poll-mode flag and rx-usecs. */
	rtnl_lock();
	if (dev->reg_state != NETREG_REGISTERED) {
		err = -ENODEV;
		goto out_unlock;
	}
	poll = READ_ONCE(vdev->poll_mode);
	usecs = usecs_attr ? nla_get_u32(usecs_attr) : READ_ONCE(vdev->hybrid_usecs);
	if (mode_attr) {
		switch (nla_get_u32(mode_attr)) {
		case VPCI_MODE_INTERRUPT:
			if (usecs_attr && usecs) {
				NL_SET_ERR_MSG_ATTR(info->extack, usecs_attr,
						    "interrupt mode polls 0 usecs");
				err = -EINVAL;
				goto out_unlock;
			}
			usecs = 0;
			poll = false;
			break;
		case VPCI_MODE_HYBRID:
			if (!usecs) {
				NL_SET_ERR_MSG_ATTR(info->extack, mode_attr,
						    "hybrid mode needs hybrid usecs > 0");
				err = -EINVAL;
				goto out_unlock;
			}
			poll = false;
			break;
		default:	/* the policy allows nothing else */
			poll = true;
			break;
		}
	}
	WRITE_ONCE(vdev->hybrid_usecs, usecs);
	if (poll != READ_ONCE(vdev->poll_mode))
		vpci_dp_set_poll(vdev, poll);
	if (events_attr)
		WRITE_ONCE(vdev->events, nla_get_u32(events_attr));

out_unlock:
	rtnl_unlock();
out_put_dev:
	dev_put(dev);
	return err;
}

static const struct genl_ops vpci_nl_ops[] = {
	{
		.cmd = VPCI_CMD_DEV_GET,
		.doit = vpci_nl_dev_get_doit,
		.dumpit = vpci_nl_dev_get_dumpit,
		.policy = vpci_nl_dev_policy,
		.maxattr = ARRAY_SIZE(vpci_nl_dev_policy) - 1,
	},
	{
		.cmd = VPCI_CMD_IOTLB_DUMP,
		/* VM1's memory layout, like the events group: CAP_NET_ADMIN. */
		.flags = GENL_ADMIN_PERM,
		.dumpit = vpci_nl_iotlb_dumpit,
		.policy = vpci_nl_dev_policy,
		.maxattr = ARRAY_SIZE(vpci_nl_dev_policy) - 1,
	},
	{
		.cmd = VPCI_CMD_MODE_SET,
		.flags = GENL_ADMIN_PERM,
		.doit = vpci_nl_mode_set_doit,
		.policy = vpci_nl_mode_policy,
		.maxattr = ARRAY_SIZE(vpci_nl_mode_policy) - 1,
	},
};

/*
 * resv_start_op stays 0: every command gets the strict checks (reserved
 * header fields, nlmsg flags, and a reject-all policy where none is given).
 */
static struct genl_family vpci_nl_family __ro_after_init = {
	.name = VPCI_GENL_NAME,
	.version = VPCI_GENL_VERSION,
	.netnsok = true,
	.parallel_ops = true,
	.module = THIS_MODULE,
	.ops = vpci_nl_ops,
	.n_ops = ARRAY_SIZE(vpci_nl_ops),
	.mcgrps = vpci_nl_mcgrps,
	.n_mcgrps = ARRAY_SIZE(vpci_nl_mcgrps),
};

/**
 * vpci_nl_event() - report a fault or an IOTLB event on the "events" group
 * @vdev: the device
 * @ev: what happened
 *
 * Any context, dp_lock possibly held: GFP_ATOMIC, never sleeps.  Nothing is
 * built without a listener; past VPCI_EVENTS_PER_SEC per device, or without
 * memory, the event is counted in events_dropped instead.
 */
void vpci_nl_event(struct vpci_dev *vdev, const struct vpci_event *ev)
{
	struct net *net = dev_net(vdev->netdev);
	struct sk_buff *skb;
	struct nlattr *nest;
	void *hdr;

	if (!genl_has_listeners(&vpci_nl_family, net, VPCI_NL_MCGRP_EVENTS))
		return;
	if (!__ratelimit(&vdev->event_rs))
		goto err_drop;

	skb = genlmsg_new(nla_total_size(sizeof(u32)) + nla_total_size(0) +
			  5 * nla_total_size(sizeof(u32)) +
			  2 * nla_total_size_64bit(sizeof(u64)), GFP_ATOMIC);
	if (!skb)
		goto err_drop;
	hdr = genlmsg_put(skb, 0, 0, &vpci_nl_family, 0,
			  ev->type == VPCI_EVENT_FAULT ? VPCI_CMD_FAULT_NTF :
							 VPCI_CMD_IOTLB_NTF);
	if (!hdr)
		goto err_free;
	if (nla_put_u32(skb, VPCI_A_IFINDEX, vdev->netdev->ifindex))
		goto err_free;
	nest = nla_nest_start(skb, VPCI_A_EVENT);
	if (!nest ||
	    nla_put_u32(skb, VPCI_EVENT_A_TYPE, ev->type) ||
	    nla_put_u32(skb, VPCI_EVENT_A_QUEUE, ev->queue) ||
	    nla_put_u64_64bit(skb, VPCI_EVENT_A_IOVA, ev->iova, VPCI_EVENT_A_PAD) ||
	    nla_put_u64_64bit(skb, VPCI_EVENT_A_LEN, ev->len, VPCI_EVENT_A_PAD) ||
	    nla_put_u32(skb, VPCI_EVENT_A_ACCESS, ev->access))
		goto err_free;
	if (ev->type == VPCI_EVENT_FAULT &&
	    (nla_put_u32(skb, VPCI_EVENT_A_REASON, ev->reason) ||
	     nla_put_s32(skb, VPCI_EVENT_A_ERRNO, ev->err)))
		goto err_free;
	nla_nest_end(skb, nest);
	genlmsg_end(skb, hdr);
	/* Consumes the skb; no listener left by now is not an error. */
	genlmsg_multicast_netns(&vpci_nl_family, net, skb, 0,
				VPCI_NL_MCGRP_EVENTS, GFP_ATOMIC);
	return;

err_free:
	nlmsg_free(skb);
err_drop:
	atomic64_inc(&vdev->events_dropped);
}

/**
 * vpci_nl_init() - register the generic netlink family
 *
 * Return: 0 or a negative error code.
 */
int __init vpci_nl_init(void)
{
	return genl_register_family(&vpci_nl_family);
}

/**
 * vpci_nl_exit() - unregister the generic netlink family
 */
void vpci_nl_exit(void)
{
	genl_unregister_family(&vpci_nl_family);
}
