// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file abi.hpp
 * C++ view of the control-area ABI (<linux/vhost_pci_net.h>): compile-time
 * layout checks and little-endian accessors.
 *
 * All shared-memory accesses go through le_load()/le_store(), which use
 * std::atomic_ref so that each field is read or written exactly once (the
 * peer may change it concurrently) and so that release/acquire ordering can
 * be requested where the protocol needs it (generation counters).
 */
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include <endian.h>
#include <linux/vhost_pci_net.h>

namespace vpci {

// Section sizes: each section is whole cache lines with one writer.
static_assert(sizeof(vpci_ctrl_hdr) == 64);
static_assert(sizeof(vpci_backend_state) == 64);
static_assert(sizeof(vpci_driver_state) == 64);
static_assert(sizeof(vpci_vq_config) == 64);
static_assert(sizeof(vpci_vq_state) == 64);
static_assert(sizeof(vpci_msg) == 32);
static_assert(sizeof(vpci_msg_ring) == 128 + 32 * VPCI_MSG_RING_SIZE);
static_assert(sizeof(vpci_ctrl) == VPCI_CTRL_SIZE);
static_assert(VPCI_CTRL_SIZE % 4096 == 0);
static_assert((VPCI_MSG_RING_SIZE & (VPCI_MSG_RING_SIZE - 1)) == 0);

static_assert(offsetof(vpci_ctrl_hdr, magic) == 0);
static_assert(offsetof(vpci_ctrl_hdr, abi_version) == 4);
static_assert(offsetof(vpci_ctrl_hdr, total_size) == 8);
static_assert(offsetof(vpci_ctrl_hdr, peer_mem_size) == 16);
static_assert(offsetof(vpci_ctrl_hdr, ctrl_offset) == 24);
static_assert(offsetof(vpci_ctrl_hdr, max_queue_pairs) == 32);
static_assert(offsetof(vpci_ctrl_hdr, msg_ring_size) == 34);
static_assert(offsetof(vpci_ctrl_hdr, backend_peer_id) == 36);
static_assert(offsetof(vpci_ctrl_hdr, num_vectors) == 38);
static_assert(offsetof(vpci_ctrl_hdr, reserved) == 40);

static_assert(offsetof(vpci_backend_state, generation) == 0);
static_assert(offsetof(vpci_backend_state, status) == 4);
static_assert(offsetof(vpci_backend_state, features) == 8);
static_assert(offsetof(vpci_backend_state, mac) == 16);
static_assert(offsetof(vpci_backend_state, max_mtu) == 22);
static_assert(offsetof(vpci_backend_state, link) == 24);
static_assert(offsetof(vpci_backend_state, num_queue_pairs) == 26);
static_assert(offsetof(vpci_backend_state, call_peer_id) == 28);
static_assert(offsetof(vpci_backend_state, call_peer_probe) == 30);
static_assert(offsetof(vpci_backend_state, reserved) == 32);

static_assert(offsetof(vpci_driver_state, status) == 0);
static_assert(offsetof(vpci_driver_state, generation_seen) == 4);
static_assert(offsetof(vpci_driver_state, device_features) == 8);
static_assert(offsetof(vpci_driver_state, mtu) == 16);
static_assert(offsetof(vpci_driver_state, reserved) == 18);

static_assert(offsetof(vpci_vq_config, desc) == 0);
static_assert(offsetof(vpci_vq_config, avail) == 8);
static_assert(offsetof(vpci_vq_config, used) == 16);
static_assert(offsetof(vpci_vq_config, num) == 24);
static_assert(offsetof(vpci_vq_config, base) == 26);
static_assert(offsetof(vpci_vq_config, enabled) == 28);
static_assert(offsetof(vpci_vq_config, notify) == 30);
static_assert(offsetof(vpci_vq_config, epoch) == 32);
static_assert(offsetof(vpci_vq_config, reserved) == 34);

static_assert(offsetof(vpci_vq_state, last_avail_idx) == 0);
static_assert(offsetof(vpci_vq_state, used_idx) == 2);
static_assert(offsetof(vpci_vq_state, stopped) == 4);
static_assert(offsetof(vpci_vq_state, reserved) == 6);

static_assert(offsetof(vpci_msg, type) == 0);
static_assert(offsetof(vpci_msg, perm) == 1);
static_assert(offsetof(vpci_msg, queue) == 2);
static_assert(offsetof(vpci_msg, seq) == 4);
static_assert(offsetof(vpci_msg, iova) == 8);
static_assert(offsetof(vpci_msg, size) == 16);
static_assert(offsetof(vpci_msg, bar_offset) == 24);

static_assert(offsetof(vpci_msg_ring, prod) == 0);
static_assert(offsetof(vpci_msg_ring, cons) == 64);
static_assert(offsetof(vpci_msg_ring, ent) == 128);

static_assert(offsetof(vpci_ctrl, hdr) == 0);
static_assert(offsetof(vpci_ctrl, backend) == 64);
static_assert(offsetof(vpci_ctrl, driver) == 128);
static_assert(offsetof(vpci_ctrl, pad0) == 192);
static_assert(offsetof(vpci_ctrl, vq_config) == 256);
static_assert(offsetof(vpci_ctrl, vq_state) == 256 + 64 * VPCI_MAX_QUEUES);
static_assert(offsetof(vpci_ctrl, b2d) == 256 + 128 * VPCI_MAX_QUEUES);
static_assert(offsetof(vpci_ctrl, d2b) == offsetof(vpci_ctrl, b2d) + sizeof(vpci_msg_ring));
static_assert(offsetof(vpci_ctrl, reserved) == offsetof(vpci_ctrl, d2b) + sizeof(vpci_msg_ring));

/** Host-order <-> little-endian conversion for the ABI's integer widths. */
template <typename T> constexpr T to_le(T v) noexcept
{
	static_assert(std::is_unsigned_v<T>);
	if constexpr (sizeof(T) == 1)
		return v;
	else if constexpr (sizeof(T) == 2)
		return htole16(v);
	else if constexpr (sizeof(T) == 4)
		return htole32(v);
	else
		return htole64(v);
}
template <typename T> constexpr T from_le(T v) noexcept
{
	// Byte swapping is an involution: le->host is the same operation.
	return to_le(v);
}

/** Load a little-endian field of shared memory exactly once. */
template <typename T>
T le_load(T &field, std::memory_order mo = std::memory_order_relaxed) noexcept
{
	return from_le(std::atomic_ref<T>(field).load(mo));
}

/** Store a host-order value into a little-endian field of shared memory. */
template <typename T>
void le_store(T &field, std::type_identity_t<T> v,
	      std::memory_order mo = std::memory_order_relaxed) noexcept
{
	std::atomic_ref<T>(field).store(to_le(v), mo);
}

} // namespace vpci
