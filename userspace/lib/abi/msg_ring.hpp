// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file msg_ring.hpp
 * Backend ends of the control area's single-producer single-consumer
 * message rings (&struct vpci_msg_ring), and the backend's shadow IOTLB.
 *
 * Producer: write the entry, then store prod + 1 with release.  Consumer:
 * load prod with acquire, copy the entry once, then store cons + 1 with
 * release.  Counters are free-running u32; slot = count % VPCI_MSG_RING_SIZE.
 * The peer's counter is untrusted: a distance above the ring size means the
 * peer is broken and is reported, never used to index.
 */
#pragma once

#include <cstdint>
#include <functional>
#include <iterator>
#include <map>
#include <optional>

#include "abi.hpp"

namespace vpci {

/** The producer end (the backend's b2d). */
class msg_producer {
public:
	explicit msg_producer(vpci_msg_ring &r) noexcept : r_(&r), prod_(le_load(r.prod)) {}

	enum class result { ok, full, corrupt };
	/** Append @p m; does not notify. */
	result push(const vpci_msg &m) noexcept
	{
		const std::uint32_t used = in_use();
		if (used > VPCI_MSG_RING_SIZE)
			return result::corrupt;
		if (used == VPCI_MSG_RING_SIZE)
			return result::full;
		vpci_msg &e = r_->ent[prod_ % VPCI_MSG_RING_SIZE];
		le_store(e.type, m.type);
		le_store(e.perm, m.perm);
		le_store(e.queue, m.queue);
		le_store(e.seq, m.seq);
		le_store(e.iova, m.iova);
		le_store(e.size, m.size);
		le_store(e.bar_offset, m.bar_offset);
		prod_++;
		le_store(r_->prod, prod_, std::memory_order_release);
		return result::ok;
	}
	std::uint32_t prod() const noexcept { return prod_; }
	/** The consumer's counter claims more than was produced. */
	bool corrupt() const noexcept { return in_use() > VPCI_MSG_RING_SIZE; }
	/** Free slots now (0 also when the consumer's counter is corrupt). */
	std::uint32_t room() const noexcept
	{
		const std::uint32_t used = in_use();
		return used > VPCI_MSG_RING_SIZE ? 0 : VPCI_MSG_RING_SIZE - used;
	}

private:
	/** Entries the consumer has not taken (more than the ring: corrupt). */
	std::uint32_t in_use() const noexcept
	{
		return prod_ - le_load(r_->cons, std::memory_order_acquire);
	}

	vpci_msg_ring *r_;
	std::uint32_t prod_;
};

/** The consumer end (the backend's d2b).  Entries are host order. */
class msg_consumer {
public:
	explicit msg_consumer(vpci_msg_ring &r) noexcept : r_(&r), cons_(le_load(r.cons)) {}

	/** Next entry, nullopt if empty.  @p corrupt is set if prod is bogus. */
	std::optional<vpci_msg> pop(bool &corrupt) noexcept
	{
		corrupt = false;
		const std::uint32_t prod = le_load(r_->prod, std::memory_order_acquire);
		if (prod == cons_)
			return std::nullopt;
		if (prod - cons_ > VPCI_MSG_RING_SIZE) {
			corrupt = true;
			// Resynchronise: drop everything the peer claims to have.
			cons_ = prod;
			le_store(r_->cons, cons_, std::memory_order_release);
			return std::nullopt;
		}
		vpci_msg &e = r_->ent[cons_ % VPCI_MSG_RING_SIZE];
		vpci_msg m{};
		m.type = le_load(e.type);
		m.perm = le_load(e.perm);
		m.queue = le_load(e.queue);
		m.seq = le_load(e.seq);
		m.iova = le_load(e.iova);
		m.size = le_load(e.size);
		m.bar_offset = le_load(e.bar_offset);
		cons_++;
		le_store(r_->cons, cons_, std::memory_order_release);
		return m;
	}

private:
	vpci_msg_ring *r_;
	std::uint32_t cons_;
};

/** The backend's copy of what the driver's IOTLB may hold. */
class shadow_iotlb {
public:
	struct entry {
		std::uint64_t last; // inclusive
		std::uint64_t uaddr;
		std::uint64_t bar_offset;
		std::uint8_t perm;
	};

	/** Map [iova, iova+size) (size > 0, no wrap), replacing overlaps. */
	void insert(std::uint64_t iova, std::uint64_t size, std::uint64_t uaddr,
		    std::uint64_t bar_offset, std::uint8_t perm)
	{
		remove(iova, size);
		map_[iova] = entry{iova + size - 1, uaddr, bar_offset, perm};
	}

	/** Unmap [iova, iova+size), splitting entries that straddle it. */
	void remove(std::uint64_t iova, std::uint64_t size)
	{
		const std::uint64_t last = iova + size - 1;
		auto it = map_.upper_bound(iova);
		if (it != map_.begin())
			--it;
		while (it != map_.end() && it->first <= last) {
			const std::uint64_t s = it->first;
			const entry e = it->second;
			if (e.last < iova) {
				++it;
				continue;
			}
			it = map_.erase(it);
			if (s < iova)
				map_[s] = entry{iova - 1, e.uaddr, e.bar_offset, e.perm};
			if (e.last > last) {
				const std::uint64_t d = last + 1 - s;
				map_[last + 1] = entry{e.last, e.uaddr + d, e.bar_offset + d, e.perm};
				break;
			}
		}
	}

	void clear() noexcept { map_.clear(); }
	std::size_t size() const noexcept { return map_.size(); }
	/**
	 * Visit (iova, entry) in IOVA order from the first entry that ends at
	 * or after @p from, while @p f returns true.
	 */
	void for_each_from(std::uint64_t from,
			   const std::function<bool(std::uint64_t, const entry &)> &f) const
	{
		auto it = map_.upper_bound(from);
		if (it != map_.begin() && std::prev(it)->second.last >= from)
			--it;
		for (; it != map_.end(); ++it)
			if (!f(it->first, it->second))
				return;
	}
	/** Visit (iova, entry) in IOVA order. */
	void for_each(const std::function<void(std::uint64_t, const entry &)> &f) const
	{
		for (const auto &[k, v] : map_)
			f(k, v);
	}
	const entry *find(std::uint64_t iova) const
	{
		auto it = map_.upper_bound(iova);
		if (it == map_.begin())
			return nullptr;
		--it;
		return iova <= it->second.last ? &it->second : nullptr;
	}

private:
	std::map<std::uint64_t, entry> map_;
};

} // namespace vpci
