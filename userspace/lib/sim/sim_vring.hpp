// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file sim_vring.hpp
 * The driver side of a split virtqueue (virtio 1.x 2.7), as VM1's
 * virtio_ring.c does it, laid out in the simulator's guest memory.
 *
 * The driver writes its rings through guest-physical addresses (it is the
 * guest); the device sees them at the IOVAs the emulated IOMMU maps.  The
 * driver keeps shadow copies of everything it needs to free a chain, so a
 * device scribbling on the descriptor table cannot confuse it; used entries
 * are validated (id in range and in flight) before use.
 *
 * Raw accessors (write_desc, push_avail_raw, bump_avail_idx_raw) exist for
 * the fault scenarios, which must build descriptors no sane driver would.
 */
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

namespace vpci::sim {

/** VRING_DESC_F_* and VRING_{AVAIL,USED}_F_*. */
constexpr std::uint16_t desc_f_next = 1, desc_f_write = 2, desc_f_indirect = 4;
constexpr std::uint16_t avail_f_no_interrupt = 1, used_f_no_notify = 1;

struct vring_desc {
	std::uint64_t addr;
	std::uint32_t len;
	std::uint16_t flags;
	std::uint16_t next;
};
static_assert(sizeof(vring_desc) == 16);

/** The guest's RAM as the simulator maps it: GPA 0 at @c base. */
struct guest_mem {
	std::uint8_t *base = nullptr;
	std::uint64_t size = 0;

	/** Host pointer for [gpa, gpa + len); std::out_of_range if outside. */
	std::uint8_t *ptr(std::uint64_t gpa, std::uint64_t len) const
	{
		if (gpa > size || len > size - gpa)
			throw std::out_of_range("guest_mem: gpa range outside guest memory");
		return base + gpa;
	}
};

/** Bytes of each ring part for @p num entries (with the event-idx words). */
constexpr std::uint64_t desc_bytes(std::uint16_t num) { return 16ULL * num; }
constexpr std::uint64_t avail_bytes(std::uint16_t num) { return 6ULL + 2ULL * num; }
constexpr std::uint64_t used_bytes(std::uint16_t num) { return 6ULL + 8ULL * num; }

/** Where a ring lives: GPAs for the driver, IOVAs for the device. */
struct vring_layout {
	std::uint16_t num = 0;
	std::uint64_t desc_gpa = 0, avail_gpa = 0, used_gpa = 0;
	std::uint64_t desc_iova = 0, avail_iova = 0, used_iova = 0;
};

/** vring_need_event() of the virtio spec. */
constexpr bool need_event(std::uint16_t event_idx, std::uint16_t new_idx, std::uint16_t old_idx)
{
	return static_cast<std::uint16_t>(new_idx - event_idx - 1) <
	       static_cast<std::uint16_t>(new_idx - old_idx);
}

struct vring_counters {
	std::uint64_t added = 0, completed = 0, kicks = 0, kicks_suppressed = 0;
	/** Used entries with an id out of range or not in flight. */
	std::uint64_t bad_used = 0;
};

class vring_driver {
public:
	/** One buffer segment: device address (IOVA), length, device-writable. */
	struct seg {
		std::uint64_t addr;
		std::uint32_t len;
		bool write;
	};
	struct completion {
		std::uint16_t head;
		std::uint32_t len;
		std::uint64_t token;
	};

	/** Zeroes the ring memory and builds the free list. */
	vring_driver(const guest_mem &mem, const vring_layout &l, bool event_idx);

	std::uint16_t num() const noexcept { return l_.num; }
	const vring_layout &layout() const noexcept { return l_; }
	std::uint16_t free_count() const noexcept { return num_free_; }
	/** Avail entries that may be added before the ring holds num not yet used. */
	std::uint16_t avail_room() const noexcept
	{
		const auto out = static_cast<std::uint16_t>(avail_shadow_ - last_used_);
		return out >= l_.num ? 0 : static_cast<std::uint16_t>(l_.num - out);
	}

	/**
	 * Chain @p segs into free descriptors and put the head in the avail
	 * ring (not yet visible: kick_prepare() publishes).  nullopt if there
	 * are not enough free descriptors.
	 */
	std::optional<std::uint16_t> add(std::span<const seg> segs, std::uint64_t token);
	/**
	 * Publish the avail index (release).  Returns whether the device wants
	 * a kick (event idx or the used ring's NO_NOTIFY flag).
	 */
	bool kick_prepare();
	/** Next completion, if the device produced one (validated). */
	std::optional<completion> get_used();
	bool more_used() const;
	/** Ask for no call (interrupt) from the device. */
	void disable_cb();
	/** Ask for a call on the next used entry; false if some are already there. */
	bool enable_cb();

	// Raw access for fault scenarios.
	/** Take @p n free descriptors as one in-flight chain (shadow-linked). */
	std::optional<std::vector<std::uint16_t>> alloc_chain(std::uint16_t n, std::uint64_t token);
	/** Write descriptor @p idx exactly as given. */
	void write_desc(std::uint16_t idx, const vring_desc &d);
	/** Put @p head (anything, even out of range) in the next avail slot. */
	void push_avail_raw(std::uint16_t head);
	/** Move the driver's avail index by @p n without posting anything. */
	void bump_avail_idx_raw(std::uint16_t n);

	const vring_counters &counters() const noexcept { return c_; }
	std::uint16_t last_used() const noexcept { return last_used_; }
	std::uint16_t avail_idx() const noexcept { return avail_shadow_; }
	/** Heads in flight (posted, not completed). */
	std::uint16_t in_flight() const noexcept { return static_cast<std::uint16_t>(l_.num - num_free_); }

private:
	struct head_state {
		std::uint16_t ndesc = 0; // 0: not in flight
		std::uint16_t last = 0;	 // last descriptor of the chain
		std::uint64_t token = 0;
	};
	template <typename T> std::atomic_ref<T> at(std::uint64_t gpa) const
	{
		return std::atomic_ref<T>(*reinterpret_cast<T *>(mem_.ptr(gpa, sizeof(T))));
	}
	vring_desc *desc() const
	{
		return reinterpret_cast<vring_desc *>(mem_.ptr(l_.desc_gpa, desc_bytes(l_.num)));
	}
	std::uint64_t avail_ring_gpa(std::uint16_t i) const { return l_.avail_gpa + 4 + 2ULL * i; }
	std::uint64_t used_event_gpa() const { return l_.avail_gpa + 4 + 2ULL * l_.num; }
	std::uint64_t avail_event_gpa() const { return l_.used_gpa + 4 + 8ULL * l_.num; }

	guest_mem mem_;
	vring_layout l_;
	bool event_idx_;
	std::vector<head_state> heads_;
	std::vector<std::uint16_t> next_; // shadow of desc.next / free list links
	std::uint16_t free_head_ = 0, num_free_ = 0;
	std::uint16_t avail_shadow_ = 0, avail_published_ = 0;
	std::uint16_t last_used_ = 0;
	bool cb_enabled_ = true;
	vring_counters c_;
};

} // namespace vpci::sim
