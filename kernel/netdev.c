// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net: the net_device VM2's stack sees, and its ethtool view.
 */
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/log2.h>
#include <linux/netdevice.h>
#include "vpci.h"
#ifdef VPCI_HAVE_QSTATS
#include <net/netdev_queues.h>
#endif

static int vpci_open(struct net_device *dev)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	vpci_ctrl_set_driver_status(vdev, VPCI_DS_UP, 0);
	vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	netif_tx_start_all_queues(dev);
	/* NAPI stopped polling while the interface was down. */
	if (READ_ONCE(vdev->poll_mode))
		vpci_dp_poll_again(vdev);
	return 0;
}

static int vpci_stop(struct net_device *dev)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	netif_tx_stop_all_queues(dev);
	vpci_ctrl_set_driver_status(vdev, 0, VPCI_DS_UP);
	vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	return 0;
}

static int vpci_change_mtu(struct net_device *dev, int new_mtu)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	/* The core already bounded new_mtu by dev->min_mtu/max_mtu. */
	WRITE_ONCE(dev->mtu, new_mtu);	/* read locklessly (xmit, NAPI) */
	vpci_ctrl_set_mtu(vdev, new_mtu);
	vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	return 0;
}

static void vpci_q_read(struct vpci_queue *q, struct vpci_q_stats *out)
{
	unsigned int start;

	do {
		start = u64_stats_fetch_begin(&q->syncp);
		*out = q->stats;
	} while (u64_stats_fetch_retry(&q->syncp, start));
}

static void vpci_get_stats64(struct net_device *dev,
			     struct rtnl_link_stats64 *tot)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);
	struct vpci_q_stats s;
	unsigned int i;

	for (i = 0; i < vdev->nqueues; i++) {
		vpci_q_read(&vdev->queues[i], &s);
		if (i & 1) {		/* VM1's TX: our RX */
			tot->rx_packets += s.packets;
			tot->rx_bytes += s.bytes;
			tot->rx_errors += s.fault_perm + s.fault_miss_timeout +
					  s.fault_chain + s.fault_head +
					  s.fault_ring + s.fault_desc;
		} else {
			tot->tx_packets += s.packets;
			tot->tx_bytes += s.bytes;
			tot->tx_errors += s.fault_perm + s.fault_miss_timeout +
					  s.fault_chain + s.fault_head +
					  s.fault_ring + s.fault_desc;
		}
	}
	/* dev->core_stats (tx_dropped) are added by the core. */
}

#ifdef VPCI_HAVE_QSTATS
/*
 * Per-queue statistics (netdev netlink qstats-get).  The stack's RX queue
 * k is VM1's TX virtqueue 2k + 1, its TX queue k VM1's RX virtqueue 2k.
 * Called under RTNL, which also keeps the real queue counts still: the
 * pairs past them (not running in VM1 now) are the base, so that the base
 * plus the live queues add up to vpci_get_stats64().
 */
static void vpci_qstat_rx(struct vpci_queue *q, struct netdev_queue_stats_rx *rx)
{
	struct vpci_q_stats s;

	vpci_q_read(q, &s);
	rx->packets += s.packets;
	rx->bytes += s.bytes;
}

static void vpci_qstat_tx(struct vpci_queue *q, struct netdev_queue_stats_tx *tx)
{
	struct vpci_q_stats s;

	vpci_q_read(q, &s);
	tx->packets += s.packets;
	tx->bytes += s.bytes;
	tx->needs_csum += s.csum_partial;	/* VM1 completes them */
	tx->hw_gso_packets += s.gso;		/* VM1 takes them whole */
}

static void vpci_get_queue_stats_rx(struct net_device *dev, int idx,
				    struct netdev_queue_stats_rx *rx)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	rx->packets = 0;
	rx->bytes = 0;
	vpci_qstat_rx(&vdev->queues[2 * idx + 1], rx);
}

static void vpci_get_queue_stats_tx(struct net_device *dev, int idx,
				    struct netdev_queue_stats_tx *tx)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	tx->packets = 0;
	tx->bytes = 0;
	tx->needs_csum = 0;
	tx->hw_gso_packets = 0;
	vpci_qstat_tx(&vdev->queues[2 * idx], tx);
}

static void vpci_get_base_stats(struct net_device *dev,
				struct netdev_queue_stats_rx *rx,
				struct netdev_queue_stats_tx *tx)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);
	unsigned int i;

	rx->packets = 0;
	rx->bytes = 0;
	tx->packets = 0;
	tx->bytes = 0;
	tx->needs_csum = 0;
	tx->hw_gso_packets = 0;
	for (i = 2 * dev->real_num_rx_queues + 1; i < vdev->nqueues; i += 2)
		vpci_qstat_rx(&vdev->queues[i], rx);
	for (i = 2 * dev->real_num_tx_queues; i < vdev->nqueues; i += 2)
		vpci_qstat_tx(&vdev->queues[i], tx);
}

static const struct netdev_stat_ops vpci_stat_ops = {
	.get_queue_stats_rx	= vpci_get_queue_stats_rx,
	.get_queue_stats_tx	= vpci_get_queue_stats_tx,
	.get_base_stats		= vpci_get_base_stats,
};
#endif

static const struct net_device_ops vpci_netdev_ops = {
	.ndo_open		= vpci_open,
	.ndo_stop		= vpci_stop,
	.ndo_start_xmit		= vpci_start_xmit,
	.ndo_features_check	= vpci_features_check,
	.ndo_change_mtu		= vpci_change_mtu,
	.ndo_get_stats64	= vpci_get_stats64,
	.ndo_set_mac_address	= eth_mac_addr,
	.ndo_validate_addr	= eth_validate_addr,
};

static void vpci_get_drvinfo(struct net_device *dev,
			     struct ethtool_drvinfo *info)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	strscpy(info->driver, VPCI_DRV_NAME, sizeof(info->driver));
	strscpy(info->version, VPCI_DRV_VERSION, sizeof(info->version));
	strscpy(info->bus_info, pci_name(vdev->pdev), sizeof(info->bus_info));
}

static const char vpci_priv_flags[][ETH_GSTRING_LEN] = {
	"poll-mode",
};

#define VPCI_PRIV_POLL	BIT(0)

/* ethtool -S names, in struct vpci_q_stats order, then kicks */
static const char vpci_q_stat_names[][ETH_GSTRING_LEN] = {
	"packets", "bytes", "notify_sent", "notify_suppressed", "iotlb_misses",
	"stalls", "fault_perm", "fault_miss_timeout", "fault_chain",
	"fault_head", "fault_ring", "fault_desc", "csum_partial", "gso", "iotlb_cache_hits",
	"iotlb_lookups", "iotlb_prefetch", "kicks",
};

static const char vpci_dev_stat_names[][ETH_GSTRING_LEN] = {
	"iotlb_updates", "iotlb_invalidations", "iotlb_misses",
	"iotlb_bad_msgs", "iotlb_entries", "iotlb_evictions", "d2b_full",
};

static int vpci_get_sset_count(struct net_device *dev, int sset)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	if (sset == ETH_SS_PRIV_FLAGS)
		return ARRAY_SIZE(vpci_priv_flags);
	if (sset != ETH_SS_STATS)
		return -EOPNOTSUPP;
	return ARRAY_SIZE(vpci_dev_stat_names) +
	       vdev->nqueues * ARRAY_SIZE(vpci_q_stat_names);
}

static void vpci_get_strings(struct net_device *dev, u32 sset, u8 *buf)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);
	unsigned int i, j;

	if (sset == ETH_SS_PRIV_FLAGS) {
		memcpy(buf, vpci_priv_flags, sizeof(vpci_priv_flags));
		return;
	}
	if (sset != ETH_SS_STATS)
		return;
	for (j = 0; j < ARRAY_SIZE(vpci_dev_stat_names); j++)
		ethtool_sprintf(&buf, "%s", vpci_dev_stat_names[j]);
	for (i = 0; i < vdev->nqueues; i++)
		for (j = 0; j < ARRAY_SIZE(vpci_q_stat_names); j++)
			ethtool_sprintf(&buf, "vq%u_%s_%s", i / 2,
					i & 1 ? "rx" : "tx", vpci_q_stat_names[j]);
}

static void vpci_get_ethtool_stats(struct net_device *dev,
				   struct ethtool_stats *st, u64 *data)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);
	struct vpci_q_stats s;
	unsigned int i;

	BUILD_BUG_ON(ARRAY_SIZE(vpci_q_stat_names) != VPCI_Q_NSTATS + 1);

	mutex_lock(&vdev->state_lock);
	*data++ = vdev->stats.iotlb_updates;
	*data++ = vdev->stats.iotlb_invalidations;
	*data++ = vdev->stats.iotlb_misses;
	*data++ = vdev->stats.iotlb_bad_msgs;
	mutex_unlock(&vdev->state_lock);
	spin_lock_bh(&vdev->dp_lock);
	*data++ = vdev->iotlb.n;
	*data++ = vdev->iotlb.evictions;
	spin_unlock_bh(&vdev->dp_lock);
	mutex_lock(&vdev->state_lock);
	*data++ = vdev->stats.d2b_full;
	mutex_unlock(&vdev->state_lock);

	for (i = 0; i < vdev->nqueues; i++) {
		vpci_q_read(&vdev->queues[i], &s);
		memcpy(data, &s, sizeof(s));
		data += VPCI_Q_NSTATS;
		*data++ = atomic64_read(&vdev->queues[i].kicks);
	}
}

static u32 vpci_get_priv_flags(struct net_device *dev)
{
	return READ_ONCE(vpci_from_netdev(dev)->poll_mode) ? VPCI_PRIV_POLL : 0;
}

static int vpci_set_priv_flags(struct net_device *dev, u32 flags)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);
	bool poll = flags & VPCI_PRIV_POLL;

	if (flags & ~VPCI_PRIV_POLL)
		return -EINVAL;
	if (poll != READ_ONCE(vdev->poll_mode))
		vpci_dp_set_poll(vdev, poll);
	return 0;
}

static int vpci_get_coalesce(struct net_device *dev,
			     struct ethtool_coalesce *ec,
			     struct kernel_ethtool_coalesce *kec,
			     struct netlink_ext_ack *extack)
{
	ec->rx_coalesce_usecs = READ_ONCE(vpci_from_netdev(dev)->hybrid_usecs);
	return 0;
}

static int vpci_set_coalesce(struct net_device *dev,
			     struct ethtool_coalesce *ec,
			     struct kernel_ethtool_coalesce *kec,
			     struct netlink_ext_ack *extack)
{
	if (ec->rx_coalesce_usecs > USEC_PER_SEC) {
		NL_SET_ERR_MSG(extack, "rx-usecs (hybrid poll time) is at most 1000000");
		return -EINVAL;
	}
	WRITE_ONCE(vpci_from_netdev(dev)->hybrid_usecs, ec->rx_coalesce_usecs);
	return 0;
}

/* Queue pairs are fixed by the backend (the control area header). */
static void vpci_get_channels(struct net_device *dev,
			      struct ethtool_channels *ch)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	ch->max_combined = vdev->nqueues / 2;
	ch->combined_count = dev->real_num_tx_queues;
}

/* A ring size VM1 configured, or 0 when unset or not a power of two. */
static u32 vpci_vq_num(struct vpci_dev *vdev, unsigned int q)
{
	u16 num = le16_to_cpu(READ_ONCE(vdev->ctrl->vq_config[q].num));

	return num && num <= VPCI_VRING_MAX && is_power_of_2(num) ? num : 0;
}

/*
 * VM1's rings, sized by VM1's driver: our RX is VM1's TX ring of pair 0
 * (virtqueue 1), our TX is VM1's RX ring (virtqueue 0).
 */
static void vpci_get_ringparam(struct net_device *dev,
			       struct ethtool_ringparam *ring,
			       struct kernel_ethtool_ringparam *kring,
			       struct netlink_ext_ack *extack)
{
	struct vpci_dev *vdev = vpci_from_netdev(dev);

	ring->rx_max_pending = VPCI_VRING_MAX;
	ring->tx_max_pending = VPCI_VRING_MAX;
	ring->rx_pending = vpci_vq_num(vdev, 1);
	ring->tx_pending = vpci_vq_num(vdev, 0);
}

static int vpci_set_ringparam(struct net_device *dev,
			      struct ethtool_ringparam *ring,
			      struct kernel_ethtool_ringparam *kring,
			      struct netlink_ext_ack *extack)
{
	NL_SET_ERR_MSG(extack, "ring sizes are chosen by the peer's virtio-net driver");
	return -EOPNOTSUPP;
}

static const struct ethtool_ops vpci_ethtool_ops = {
	.supported_coalesce_params = ETHTOOL_COALESCE_RX_USECS,
	.get_drvinfo		= vpci_get_drvinfo,
	.get_priv_flags		= vpci_get_priv_flags,
	.set_priv_flags		= vpci_set_priv_flags,
	.get_coalesce		= vpci_get_coalesce,
	.set_coalesce		= vpci_set_coalesce,
	.get_channels		= vpci_get_channels,
	.get_ringparam		= vpci_get_ringparam,
	.set_ringparam		= vpci_set_ringparam,
	.get_link		= ethtool_op_get_link,
	.get_sset_count		= vpci_get_sset_count,
	.get_strings		= vpci_get_strings,
	.get_ethtool_stats	= vpci_get_ethtool_stats,
};

/**
 * vpci_netdev_is_ours() - tell whether this driver created @dev
 * @dev: any net_device
 *
 * Return: true if @dev is a vhost-pci interface (vpci_from_netdev() valid).
 */
bool vpci_netdev_is_ours(const struct net_device *dev)
{
	return dev->netdev_ops == &vpci_netdev_ops;
}

/**
 * vpci_netdev_update_carrier() - make the carrier follow the backend's link
 * @vdev: the device
 *
 * The backend owns the link state (the "cable"); frames sent while VM1's
 * RX virtqueue is not served are dropped and counted in tx_dropped.  Safe
 * before register_netdev(): the carrier helpers ignore unregistered
 * devices' link events.
 */
void vpci_netdev_update_carrier(struct vpci_dev *vdev)
{
	struct net_device *dev = vdev->netdev;
	bool up;

	mutex_lock(&vdev->state_lock);
	up = vdev->link_up;
	mutex_unlock(&vdev->state_lock);

	if (up == netif_carrier_ok(dev))
		return;
	if (up)
		netif_carrier_on(dev);
	else
		netif_carrier_off(dev);
	netdev_info(dev, "link %s\n", up ? "up" : "down");
}

/**
 * vpci_netdev_alloc() - allocate and set up (but not register) the netdev
 * @vdev: the device, with a validated header and mapped control area
 *
 * MAC address and MTU bound come from the backend state; bad values are
 * replaced by safe ones with a warning, never trusted.
 *
 * Return: the net_device, or NULL on allocation failure.
 */
struct net_device *vpci_netdev_alloc(struct vpci_dev *vdev)
{
	struct vpci_backend_state *bs = &vdev->ctrl->backend;
	unsigned int qp = le16_to_cpu(vdev->hdr.max_queue_pairs);
	struct net_device *dev;
	u8 mac[ETH_ALEN];
	unsigned int max_mtu;

	dev = alloc_etherdev_mq(sizeof(struct vpci_dev *), qp);
	if (!dev)
		return NULL;
	/*
	 * One pair until VM1 runs more (vpci_queues_work()): the stack must
	 * not hash frames to pairs no VM1 serves (they would be dropped).
	 * Before register_netdev() these cannot fail.
	 */
	netif_set_real_num_tx_queues(dev, 1);
	netif_set_real_num_rx_queues(dev, 1);
	*(struct vpci_dev **)netdev_priv(dev) = vdev;
	SET_NETDEV_DEV(dev, &vdev->pdev->dev);
	dev->netdev_ops = &vpci_netdev_ops;
	dev->ethtool_ops = &vpci_ethtool_ops;
#ifdef VPCI_HAVE_QSTATS
	dev->stat_ops = &vpci_stat_ops;
#endif
	/*
	 * Checksums are left to VM1 when it negotiated GUEST_CSUM, and
	 * computed in vpci_start_xmit() otherwise.  Fragments are copied in
	 * place (SG); TSO frames go to VM1 whole when it negotiated
	 * GUEST_TSO4/6 and are segmented by the stack otherwise
	 * (vpci_features_check()).
	 */
	dev->hw_features = NETIF_F_HW_CSUM | NETIF_F_SG | NETIF_F_TSO | NETIF_F_TSO6;
	dev->features = dev->hw_features;
	/*
	 * netpoll would call vpci_start_xmit() with interrupts off, possibly
	 * from an interrupt that came while dp_lock was held: dp_lock is
	 * BH-safe, not IRQ-safe.
	 */
	dev->priv_flags |= IFF_DISABLE_NETPOLL;

	memcpy(mac, bs->mac, ETH_ALEN);
	if (is_valid_ether_addr(mac)) {
		eth_hw_addr_set(dev, mac);
	} else {
		dev_warn(&vdev->pdev->dev, "invalid MAC %pM from peer, using a random one\n",
			 mac);
		eth_hw_addr_random(dev);
	}

	max_mtu = le16_to_cpu(READ_ONCE(bs->max_mtu));
	if (max_mtu < VPCI_MIN_MTU) {
		dev_warn(&vdev->pdev->dev, "peer max MTU %u below %u, using %u\n",
			 max_mtu, VPCI_MIN_MTU, ETH_DATA_LEN);
		max_mtu = ETH_DATA_LEN;
	}
	dev->min_mtu = VPCI_MIN_MTU;
	dev->max_mtu = max_mtu;
	dev->mtu = min_t(unsigned int, ETH_DATA_LEN, max_mtu);

	netif_carrier_off(dev);
	return dev;
}
