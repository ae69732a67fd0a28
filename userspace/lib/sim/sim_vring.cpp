// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "sim_vring.hpp"

#include <utility>

#include <fmt/format.h>

namespace vpci::sim {

vring_driver::vring_driver(const guest_mem &mem, const vring_layout &l, bool event_idx)
	: mem_(mem), l_(l), event_idx_(event_idx), heads_(l.num), next_(l.num)
{
	if (!l.num || (l.num & (l.num - 1)) || l.num > 32768)
		throw std::invalid_argument(fmt::format("vring: size {} not a power of two 1..32768",
							l.num));
	std::memset(mem_.ptr(l.desc_gpa, desc_bytes(l.num)), 0, desc_bytes(l.num));
	std::memset(mem_.ptr(l.avail_gpa, avail_bytes(l.num)), 0, avail_bytes(l.num));
	std::memset(mem_.ptr(l.used_gpa, used_bytes(l.num)), 0, used_bytes(l.num));
	for (std::uint16_t i = 0; i < l.num; i++)
		next_[i] = static_cast<std::uint16_t>(i + 1);
	num_free_ = l.num;
}

std::optional<std::vector<std::uint16_t>> vring_driver::alloc_chain(std::uint16_t n,
								   std::uint64_t token)
{
	if (!n || n > num_free_)
		return std::nullopt;
	std::vector<std::uint16_t> idx(n);
	std::uint16_t i = free_head_;
	for (std::uint16_t k = 0; k < n; k++) {
		idx[k] = i;
		i = next_[i];
	}
	free_head_ = i;
	num_free_ = static_cast<std::uint16_t>(num_free_ - n);
	// next_ of the chain already links idx[k] -> idx[k+1].
	heads_[idx[0]] = head_state{n, idx[n - 1], token};
	return idx;
}

std::optional<std::uint16_t> vring_driver::add(std::span<const seg> segs, std::uint64_t token)
{
	if (segs.empty() || segs.size() > 0xffff)
		return std::nullopt;
	// The avail ring holds num entries the device has not completed: a
	// fault that posted an entry without a descriptor of its own (a head
	// twice, a head out of range) takes a slot until it is used, or VM1
	// would run more than a ring ahead, which the device rightly refuses.
	if (!avail_room())
		return std::nullopt;
	auto chain = alloc_chain(static_cast<std::uint16_t>(segs.size()), token);
	if (!chain)
		return std::nullopt;
	vring_desc *d = desc();
	for (std::size_t k = 0; k < segs.size(); k++) {
		const bool last = k + 1 == segs.size();
		d[(*chain)[k]] = vring_desc{
			segs[k].addr, segs[k].len,
			static_cast<std::uint16_t>((last ? 0 : desc_f_next) |
						   (segs[k].write ? desc_f_write : 0)),
			last ? std::uint16_t{0} : (*chain)[k + 1]};
	}
	push_avail_raw((*chain)[0]);
	c_.added++;
	return (*chain)[0];
}

void vring_driver::write_desc(std::uint16_t idx, const vring_desc &dsc)
{
	desc()[idx % l_.num] = dsc;
}

void vring_driver::push_avail_raw(std::uint16_t head)
{
	at<std::uint16_t>(avail_ring_gpa(static_cast<std::uint16_t>(avail_shadow_ % l_.num)))
		.store(head, std::memory_order_relaxed);
	avail_shadow_++;
}

void vring_driver::bump_avail_idx_raw(std::uint16_t n)
{
	avail_shadow_ = static_cast<std::uint16_t>(avail_shadow_ + n);
}

bool vring_driver::kick_prepare()
{
	const std::uint16_t old = avail_published_, now = avail_shadow_;
	// Descriptors and ring entries before the index: pairs with the
	// device's acquire load of avail->idx.
	at<std::uint16_t>(l_.avail_gpa + 2).store(now, std::memory_order_release);
	avail_published_ = now;
	// Index store before reading the device's suppression state (a full
	// barrier, as virtqueue_kick_prepare's virtio_mb).
	std::atomic_thread_fence(std::memory_order_seq_cst);
	bool kick;
	if (event_idx_)
		kick = need_event(at<std::uint16_t>(avail_event_gpa()).load(std::memory_order_relaxed),
				  now, old);
	else
		kick = !(at<std::uint16_t>(l_.used_gpa).load(std::memory_order_relaxed) &
			 used_f_no_notify);
	if (old == now)
		kick = false;
	kick ? c_.kicks++ : c_.kicks_suppressed++;
	return kick;
}

bool vring_driver::more_used() const
{
	return at<std::uint16_t>(l_.used_gpa + 2).load(std::memory_order_acquire) != last_used_;
}

std::optional<vring_driver::completion> vring_driver::get_used()
{
	for (;;) {
		// Acquire: the used element is read after the index.
		const std::uint16_t idx = at<std::uint16_t>(l_.used_gpa + 2).load(std::memory_order_acquire);
		if (idx == last_used_)
			return std::nullopt;
		const std::uint64_t e = l_.used_gpa + 4 + 8ULL * (last_used_ % l_.num);
		const std::uint32_t id = at<std::uint32_t>(e).load(std::memory_order_relaxed);
		const std::uint32_t len = at<std::uint32_t>(e + 4).load(std::memory_order_relaxed);
		last_used_++;
		if (event_idx_ && cb_enabled_)
			at<std::uint16_t>(used_event_gpa()).store(last_used_, std::memory_order_relaxed);
		if (id >= l_.num || !heads_[id].ndesc) {
			c_.bad_used++;
			continue;
		}
		head_state h = std::exchange(heads_[id], head_state{});
		next_[h.last] = free_head_;
		free_head_ = static_cast<std::uint16_t>(id);
		num_free_ = static_cast<std::uint16_t>(num_free_ + h.ndesc);
		c_.completed++;
		return completion{static_cast<std::uint16_t>(id), len, h.token};
	}
}

void vring_driver::disable_cb()
{
	cb_enabled_ = false;
	if (!event_idx_) {
		auto f = at<std::uint16_t>(l_.avail_gpa);
		f.store(f.load(std::memory_order_relaxed) | avail_f_no_interrupt,
			std::memory_order_relaxed);
	}
}

bool vring_driver::enable_cb()
{
	cb_enabled_ = true;
	if (event_idx_) {
		at<std::uint16_t>(used_event_gpa()).store(last_used_, std::memory_order_relaxed);
	} else {
		auto f = at<std::uint16_t>(l_.avail_gpa);
		f.store(f.load(std::memory_order_relaxed) & ~avail_f_no_interrupt,
			std::memory_order_relaxed);
	}
	// The event/flag store before re-reading used->idx (virtio_mb).
	std::atomic_thread_fence(std::memory_order_seq_cst);
	return !more_used();
}

} // namespace vpci::sim
