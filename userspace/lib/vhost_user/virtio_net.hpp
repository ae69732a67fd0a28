// SPDX-License-Identifier: GPL-2.0-only OR MIT
/* Virtio-net feature bits (VIRTIO 1.2, 5.1.3) the back-ends offer or check. */
#pragma once

#include <cstdint>

namespace vpci::virtio_net {

constexpr unsigned f_csum = 0, f_guest_csum = 1, f_guest_tso4 = 7, f_guest_tso6 = 8,
		   f_host_tso4 = 11, f_host_tso6 = 12, f_mrg_rxbuf = 15, f_status = 16,
		   f_mq = 22, f_event_idx = 29, f_version_1 = 32, f_access_platform = 33;

constexpr std::uint64_t bit(unsigned f) { return 1ULL << f; }

/**
 * What the project's driver implements as VM1's device (kernel/vpci.h)
 * plus NET_F_STATUS: VERSION_1 | ACCESS_PLATFORM | MRG_RXBUF | EVENT_IDX |
 * CSUM | GUEST_CSUM | GUEST_TSO4/6 | HOST_TSO4/6 | NET_F_STATUS.
 */
constexpr std::uint64_t driver_features =
	bit(f_version_1) | bit(f_access_platform) | bit(f_mrg_rxbuf) | bit(f_event_idx) |
	bit(f_csum) | bit(f_guest_csum) | bit(f_guest_tso4) | bit(f_guest_tso6) |
	bit(f_host_tso4) | bit(f_host_tso6) | bit(f_status);

/** The segmentation offloads of driver_features. */
constexpr std::uint64_t gso_features =
	bit(f_guest_tso4) | bit(f_guest_tso6) | bit(f_host_tso4) | bit(f_host_tso6);

} // namespace vpci::virtio_net
