// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net: the net_device VM2's stack sees.
 *
 * The datapath (VM1's virtqueues) is not wired yet: transmitted frames are
 * dropped and counted in tx_dropped, and nothing is received.
 */
#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/netdevice.h>
#include "vpci.h"

static int vpci_open(struct net_device *dev)
{
	struct vpci_dev *vdev = *(struct vpci_dev **)netdev_priv(dev);

	vpci_ctrl_set_driver_status(vdev, VPCI_DS_UP, 0);
	vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	netif_tx_start_all_queues(dev);
	return 0;
}

static int vpci_stop(struct net_device *dev)
{
	struct vpci_dev *vdev = *(struct vpci_dev **)netdev_priv(dev);

	netif_tx_stop_all_queues(dev);
	vpci_ctrl_set_driver_status(vdev, 0, VPCI_DS_UP);
	vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	return 0;
}

static netdev_tx_t vpci_start_xmit(struct sk_buff *skb, struct net_device *dev)
{
	/* No datapath yet: account the frame as dropped. */
	dev_core_stats_tx_dropped_inc(dev);
	dev_kfree_skb_any(skb);
	return NETDEV_TX_OK;
}

static int vpci_change_mtu(struct net_device *dev, int new_mtu)
{
	struct vpci_dev *vdev = *(struct vpci_dev **)netdev_priv(dev);

	/* The core already bounded new_mtu by dev->min_mtu/max_mtu. */
	dev->mtu = new_mtu;
	vpci_ctrl_set_mtu(vdev, new_mtu);
	vpci_ring_backend(vdev, VPCI_VEC_CONFIG);
	return 0;
}

static const struct net_device_ops vpci_netdev_ops = {
	.ndo_open		= vpci_open,
	.ndo_stop		= vpci_stop,
	.ndo_start_xmit		= vpci_start_xmit,
	.ndo_change_mtu		= vpci_change_mtu,
	.ndo_set_mac_address	= eth_mac_addr,
	.ndo_validate_addr	= eth_validate_addr,
};

static void vpci_get_drvinfo(struct net_device *dev,
			     struct ethtool_drvinfo *info)
{
	struct vpci_dev *vdev = *(struct vpci_dev **)netdev_priv(dev);

	strscpy(info->driver, VPCI_DRV_NAME, sizeof(info->driver));
	strscpy(info->version, VPCI_DRV_VERSION, sizeof(info->version));
	strscpy(info->bus_info, pci_name(vdev->pdev), sizeof(info->bus_info));
}

static const struct ethtool_ops vpci_ethtool_ops = {
	.get_drvinfo	= vpci_get_drvinfo,
	.get_link	= ethtool_op_get_link,
};

/**
 * vpci_netdev_apply_link() - make the carrier follow the backend's link state
 * @vdev: the device
 * @up: link state read from the control area
 *
 * Safe before register_netdev(): the carrier helpers ignore unregistered
 * devices' link events.
 */
void vpci_netdev_apply_link(struct vpci_dev *vdev, bool up)
{
	struct net_device *dev = vdev->netdev;

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
	*(struct vpci_dev **)netdev_priv(dev) = vdev;
	SET_NETDEV_DEV(dev, &vdev->pdev->dev);
	dev->netdev_ops = &vpci_netdev_ops;
	dev->ethtool_ops = &vpci_ethtool_ops;

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
