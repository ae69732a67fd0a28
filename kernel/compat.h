/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost_pci_net: the kernel APIs that differ between the kernels the
 * driver is built for (Debian's 6.1 and 6.12), in one place.
 */
#ifndef _VPCI_COMPAT_H
#define _VPCI_COMPAT_H

#include <linux/version.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <net/genetlink.h>

/* Page fragments the CPU can read (6.12: device-memory TCP has others). */
static inline bool vpci_skb_frags_readable(const struct sk_buff *skb)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 12, 0)
	return true;
#else
	return skb_frags_readable(skb);
#endif
}

/* The request's attributes in a dumpit: 6.2 moved them into a genl_info. */
static inline struct nlattr **vpci_genl_dump_attrs(struct netlink_callback *cb)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 2, 0)
	return genl_dumpit_info(cb)->attrs;
#else
	return genl_dumpit_info(cb)->info.attrs;
#endif
}

/*
 * 6.8: an RX queue names the NAPI instance that serves it and that NAPI
 * its IRQ (netdev netlink: queue-get, napi-get).  Before
 * register_netdev() no RTNL is needed.
 */
static inline void vpci_queue_set_napi(struct net_device *dev,
				       unsigned int rxq,
				       struct napi_struct *napi, int irq)
{
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 8, 0)
	netif_queue_set_napi(dev, rxq, NETDEV_QUEUE_TYPE_RX, napi);
	netif_napi_set_irq(napi, irq);
#endif
}

/* 6.10: per-queue statistics over netdev netlink (struct netdev_stat_ops). */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 10, 0)
#define VPCI_HAVE_QSTATS 1
#endif

#endif /* _VPCI_COMPAT_H */
