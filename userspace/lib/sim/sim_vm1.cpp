// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "sim_vm1.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>

#include <fmt/format.h>

#include "sim_traffic.hpp"

namespace vpci::sim {

namespace {

std::uint64_t page_up(std::uint64_t v) { return (v + page_size - 1) & ~(page_size - 1); }

vring_layout make_layout(const vm1_config &c, unsigned q)
{
	const std::uint64_t base = ring_base_gpa + (2ULL * c.pair + q) * ring_stride;
	const std::uint64_t off = c.policy == iova_policy::identity ? 0 : iova_offset;
	vring_layout l;
	l.num = c.ring_size;
	l.desc_gpa = base;
	l.avail_gpa = base + page_up(desc_bytes(c.ring_size));
	l.used_gpa = l.avail_gpa + page_up(avail_bytes(c.ring_size));
	l.desc_iova = off + l.desc_gpa;
	l.avail_iova = off + l.avail_gpa;
	l.used_iova = off + l.used_gpa;
	return l;
}

std::uint64_t ring_span(std::uint16_t num)
{
	return page_up(desc_bytes(num)) + page_up(avail_bytes(num)) + page_up(used_bytes(num));
}

const fault_info fault_table[] = {
	{"unmapped-iova", txq, "TX descriptor pointing at an IOVA that is not mapped"},
	{"readonly-rx", rxq, "RX buffer mapped read-only (the device must write it)"},
	{"straddle", txq, "TX buffer straddling a mapped and an unmapped page"},
	{"wrap", txq, "TX buffer whose range wraps past 2^64"},
	{"zero-len", txq, "TX descriptor of length 0"},
	{"runt", txq, "TX frame of 10 bytes, shorter than an Ethernet header"},
	{"past-memory", txq, "TX descriptor longer than the guest memory"},
	{"chain-loop", txq, "TX chain of two descriptors pointing at each other"},
	{"chain-too-long", txq, "TX chain over every free descriptor, last one linking to the first"},
	{"avail-jump", txq, "TX avail index moved by ring size + 1"},
	{"head-out-of-range", txq, "TX avail entry naming head num + 5"},
	{"unmap-in-flight", rxq, "RX buffer unmapped (invalidated) right after posting"},
	{"ring-unmapped", txq, "TX ring pages unmapped, then a frame posted (remapped 300 ms later)"},
	{"double-post", txq, "the same TX head put in the avail ring twice"},
	{"post-after-unmap", rxq,
	 "RX buffer unmapped (INVALIDATE acked), then posted: the device may never write it"},
	{"miss-after-unmap", rxq,
	 "RX buffer pages unmapped and mapped again; the IOMMU looks the next miss up in between"},
	{"gso-size-zero", txq, "TX frame with a TCPv4 GSO header (HOST_TSO4) whose gso_size is 0"},
	{"oversize-no-gso", txq, "TX frame of 10000 bytes, over the MTU, without a GSO header"},
};

} // namespace

std::uint64_t pair_buf_gpa(std::uint16_t n, unsigned pairs, unsigned pair)
{
	if (pairs < 1 || pairs > max_queue_pairs || pair >= pairs)
		throw std::invalid_argument(fmt::format("queue pair {} of {}: 1..{} pairs", pair,
							pairs, max_queue_pairs));
	// Past every pair's rings: from 0x100000 as with one pair, unless
	// more than three pairs' rings reach beyond it.
	const std::uint64_t first =
		std::max(buf_base_gpa, page_up(ring_base_gpa + 2ULL * pairs * ring_stride));
	return first + pair * (2ULL * n + spare_pages) * page_size;
}

std::uint64_t min_ram_size(std::uint16_t n, unsigned pairs)
{
	if (ring_span(n) > ring_stride)
		throw std::invalid_argument(fmt::format("ring size {} too large for the layout", n));
	return page_up(pair_buf_gpa(n, pairs, pairs - 1) + (2ULL * n + spare_pages) * page_size);
}

std::span<const fault_info> faults() { return fault_table; }

const fault_info *find_fault(const std::string &name)
{
	for (const auto &f : fault_table)
		if (name == f.name)
			return &f;
	return nullptr;
}

nlohmann::json fault_report::to_json() const
{
	return {{"name", name}, {"queue", queue == rxq ? "rx" : "tx"}, {"heads", heads},
		{"detail", detail}};
}

namespace {

const guest_mem &checked_mem(const guest_mem &m, const vm1_config &cfg)
{
	const std::uint64_t need = min_ram_size(cfg.ring_size, cfg.pairs);
	if (m.size < need)
		throw std::invalid_argument(fmt::format(
			"guest memory of {:#x} bytes is smaller than the {:#x} the layout needs{}",
			m.size, need,
			cfg.pairs > 1 ? fmt::format(" ({} queue pairs of ring size {})", cfg.pairs,
						    cfg.ring_size)
				      : std::string()));
	return m;
}

} // namespace

vm1::vm1(const guest_mem &m, const vm1_config &cfg, iotlb_port &port)
	: vm1(m, cfg, port, std::make_unique<iommu>(m.size), nullptr)
{
}

vm1::vm1(const guest_mem &m, const vm1_config &cfg, iotlb_port &port, iommu &shared)
	: vm1(m, cfg, port, nullptr, &shared)
{
}

vm1::vm1(const guest_mem &m, const vm1_config &cfg, iotlb_port &port, std::unique_ptr<iommu> own,
	 iommu *shared)
	: own_mmu_(std::move(own)), bufs_(pair_buf_gpa(cfg.ring_size, cfg.pairs, cfg.pair)),
	  mem(checked_mem(m, cfg)), mmu(shared ? *shared : *own_mmu_),
	  rx(m, make_layout(cfg, rxq), cfg.event_idx), tx(m, make_layout(cfg, txq), cfg.event_idx),
	  cfg_(cfg), port_(port)
{
	for (std::uint16_t s = cfg.ring_size; s-- > 0;)
		tx_free_.push_back(s);
	rx_posted_.assign(cfg.ring_size, false);
	tx_chain_.resize(cfg.ring_size);
}

bool vm1::ring_page(std::uint64_t gpa) const
{
	for (unsigned q = 0; q < 2 * cfg_.pairs; q++) {
		const std::uint64_t r = ring_base_gpa + q * ring_stride;
		if (gpa >= r && gpa < r + ring_span(cfg_.ring_size))
			return true;
	}
	return false;
}

bool vm1::owns_page(std::uint64_t gpa) const
{
	if (cfg_.pairs == 1)
		return true;
	const std::uint64_t first = pair_buf_gpa(cfg_.ring_size, cfg_.pairs, 0);
	const std::uint64_t area = (2ULL * cfg_.ring_size + spare_pages) * page_size;
	if (gpa < first || gpa >= first + cfg_.pairs * area)
		return cfg_.pair == 0;
	return (gpa - first) / area == cfg_.pair;
}

void vm1::paint_canaries()
{
	const std::uint64_t end = mem.size & ~(page_size - 1);
	for (std::uint64_t gpa = 0; gpa < end; gpa += page_size)
		if (!ring_page(gpa) && owns_page(gpa))
			std::memset(mem.ptr(gpa, page_size), canary_byte, page_size);
}

std::uint64_t vm1::check_canaries(std::vector<std::uint64_t> &damaged) const
{
	const std::uint64_t end = mem.size & ~(page_size - 1);
	std::uint64_t checked = 0;
	for (std::uint64_t gpa = 0; gpa < end; gpa += page_size) {
		bool skip = ring_page(gpa) || !owns_page(gpa);
		// TX slots hold the sim's frames; spare 0 its fault frame.
		skip = skip || (gpa >= slot_gpa(txq, 0) && gpa < slot_gpa(txq, cfg_.ring_size));
		skip = skip || gpa == spare_gpa(0);
		// oversize-no-gso: its frame spans spares 5..7.
		skip = skip || (fault_name_ == "oversize-no-gso" && gpa >= spare_gpa(5) &&
				gpa < spare_gpa(8));
		// An RX slot is checked at completion; one still posted may
		// legitimately be written when the run ends.
		if (gpa >= slot_gpa(rxq, 0) && gpa < slot_gpa(rxq, cfg_.ring_size))
			skip = skip || rx_posted_[(gpa - slot_gpa(rxq, 0)) / page_size];
		// unmap-in-flight: a write before the INVALIDATE was applied is
		// legitimate when the device reported it in the used entry.
		skip = skip || (gpa == spare_gpa(4) && fault_name_ == "unmap-in-flight" &&
				fault_used_len > 0);
		if (skip)
			continue;
		checked++;
		const std::uint8_t *p = mem.ptr(gpa, page_size);
		for (std::uint64_t i = 0; i < page_size; i++)
			if (p[i] != canary_byte) {
				damaged.push_back(gpa);
				break;
			}
	}
	return checked;
}

void vm1::map(std::uint64_t gpa, std::uint64_t size, std::uint8_t perm)
{
	const iommu_range r{dev_addr(gpa), size, gpa, perm};
	// Remapping a mapped range (e.g. read-only over identity's RW): a
	// real IOMMU driver invalidates the old entry before the device may
	// rely on the new permission.
	auto old = mmu.unmap(r.iova, size);
	if (!old.empty())
		port_.invalidate(old);
	mmu.map(r.iova, gpa, size, perm);
	maps++;
	port_.mapped(r);
}

void vm1::unmap_iova(std::uint64_t iova, std::uint64_t size)
{
	auto gone = mmu.unmap(iova, size);
	unmaps++;
	if (!gone.empty())
		port_.invalidate(gone);
}

void vm1::unmap(std::uint64_t gpa, std::uint64_t size) { unmap_iova(dev_addr(gpa), size); }

void vm1::map_static()
{
	if (cfg_.policy == iova_policy::identity) {
		// One mapping of all RAM, the first pair's to make.
		if (cfg_.pair == 0)
			map(0, mem.size & ~(page_size - 1), perm_rw);
		return;
	}
	for (unsigned q : {rxq, txq})
		map(ring_gpa(q), ring_span(cfg_.ring_size), perm_rw);
	if (cfg_.policy == iova_policy::static_pool) {
		map(slot_gpa(rxq, 0), cfg_.ring_size * page_size, cfg_.rx_perm);
		map(slot_gpa(txq, 0), cfg_.ring_size * page_size, perm_ro);
	}
	map_extra();
}

void vm1::map_extra()
{
	const std::uint32_t n = cfg_.pair == 0 ? cfg_.extra_pages : 0;
	if (n && cfg_.policy == iova_policy::identity)
		throw std::invalid_argument("extra mappings need an IOVA space apart from GPAs "
					    "(static-pool or transient)");
	// 0x10000000 bytes leave room for 32768 pages at every other page.
	if (n > 65536)
		throw std::invalid_argument(fmt::format("{} extra mappings: at most 65536", n));
	const std::uint64_t gpa = spare_gpa(spare_pages - 1);
	for (std::uint32_t i = 0; i < n; i++) {
		const std::uint64_t k = i / 2;
		const std::uint64_t iova = i % 2 ? extra_above_iova + 2 * k * page_size
						 : extra_below_iova + 2 * k * page_size;
		const iommu_range r{iova, page_size, gpa, perm_ro};
		mmu.map(iova, gpa, page_size, perm_ro);
		maps++;
		port_.mapped(r);
	}
}

bool vm1::post_rx(std::uint16_t slot)
{
	const std::uint64_t gpa = slot_gpa(rxq, slot);
	if (cfg_.rx_buf_limit && rx_bufs_posted_ >= cfg_.rx_buf_limit)
		return false;
	std::memset(mem.ptr(gpa, page_size), canary_byte, page_size);
	if (cfg_.policy == iova_policy::transient)
		map(gpa, page_size, cfg_.rx_perm);
	vring_driver::seg s{dev_addr(gpa), cfg_.rx_buf_size, true};
	if (!rx.add(std::span(&s, 1), slot)) {
		if (cfg_.policy == iova_policy::transient)
			unmap(gpa, page_size);
		return false;
	}
	rx_posted_[slot] = true;
	rx_bufs_posted_++;
	return true;
}

unsigned vm1::fill_rx()
{
	unsigned n = 0;
	// At start, in slot order; one descriptor stays free so that an RX
	// fault scenario can always be posted.
	for (std::uint16_t s = 0; s + 1 < cfg_.ring_size && rx.free_count() > 1; s++)
		n += post_rx(s);
	return n;
}

std::uint16_t vm1::take_tx_slot()
{
	std::uint16_t s = tx_free_.back();
	tx_free_.pop_back();
	return s;
}

bool vm1::send(std::uint64_t seq, std::uint32_t size, std::uint64_t tx_ns)
{
	const std::size_t total = net_hdr_size + size;
	const std::size_t nslots = (total + page_size - 1) / page_size;
	if (!cfg_.gso && nslots > 1)
		throw std::invalid_argument(fmt::format("frame size {} exceeds a buffer slot", size));
	if (size < (cfg_.gso ? tcp_frame_min : frame_min) || size > tcp_frame_max)
		throw std::invalid_argument(fmt::format("frame size {} out of range", size));
	if (tx_free_.size() < nslots || tx.free_count() < nslots || !tx.avail_room())
		return false;
	// A frame of one slot is built in place; a longer one is spread over
	// its slots after.
	const std::uint16_t first = take_tx_slot();
	std::uint8_t *p = mem.ptr(slot_gpa(txq, first), page_size);
	if (nslots > 1) {
		tx_scratch_.resize(total);
		p = tx_scratch_.data();
	}
	std::memset(p, 0, net_hdr_size);
	if (cfg_.gso) {
		build_tcp_frame(std::span(p + net_hdr_size, size), seq, tx_ns);
		tcp_net_hdr(p, size);
	} else {
		build_frame(std::span(p + net_hdr_size, size), seq, tx_ns);
	}
	if (cfg_.tx_csum && !cfg_.gso) {
		p[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
		std::memcpy(p + 6, &csum_start, 2);
		std::memcpy(p + 8, &csum_offset, 2);
	}
	// One descriptor per slot, as a guest's skb frags each get one; the
	// chain's slots are kept under its first (no allocation once warm).
	constexpr std::size_t max_slots = (net_hdr_size + tcp_frame_max + page_size - 1) / page_size;
	std::array<vring_driver::seg, max_slots> segs;
	std::vector<std::uint16_t> &chain = tx_chain_[first];
	chain.clear();
	for (std::size_t off = 0, i = 0; off < total; off += page_size, i++) {
		const std::uint16_t slot = off ? take_tx_slot() : first;
		const std::uint64_t gpa = slot_gpa(txq, slot);
		const std::size_t n = std::min<std::size_t>(page_size, total - off);
		if (nslots > 1) {
			std::memcpy(mem.ptr(gpa, n), p + off, n);
			chain.push_back(slot);
		}
		if (cfg_.policy == iova_policy::transient)
			map(gpa, page_size, perm_ro);
		segs[i] = {dev_addr(gpa), static_cast<std::uint32_t>(n), false};
	}
	if (!tx.add(std::span(segs).first(nslots), first))
		throw std::logic_error("vm1::send: descriptors checked free but add failed");
	return true;
}

void vm1::complete_tx(const vring_driver::completion &c)
{
	if (c.token & fault_token)
		return;
	const std::uint16_t first = slot_of(c);
	std::vector<std::uint16_t> &chain = tx_chain_[first];
	const std::span<const std::uint16_t> slots =
		chain.empty() ? std::span<const std::uint16_t>(&first, 1) : std::span(chain);
	for (std::uint16_t slot : slots) {
		if (cfg_.policy == iova_policy::transient)
			unmap(slot_gpa(txq, slot), page_size);
		tx_free_.push_back(slot);
	}
	chain.clear();
}

std::span<const std::uint8_t> vm1::complete_rx(const vring_driver::completion &c)
{
	if (c.token & fault_token) {
		fault_used_len = std::max(fault_used_len, c.len);
		return {};
	}
	const std::uint64_t gpa = slot_gpa(rxq, slot_of(c));
	if (cfg_.policy == iova_policy::transient)
		unmap(gpa, page_size);
	rx_posted_[slot_of(c)] = false;
	const std::uint8_t *p = mem.ptr(gpa, page_size);
	// Past the buffer's own length is canary too: the device must not
	// write beyond what the descriptor gave it.
	const std::uint64_t len = std::min<std::uint64_t>(c.len, cfg_.rx_buf_size);
	for (std::uint64_t i = len; i < page_size; i++)
		if (p[i] != canary_byte) {
			rx_tail_damaged++;
			break;
		}
	return {p, len};
}

fault_report vm1::inject(const std::string &name)
{
	const fault_info *fi = find_fault(name);
	if (!fi)
		throw std::invalid_argument(fmt::format("unknown fault '{}'", name));
	fault_report r{name, fi->queue, {}, fi->what};
	fault_name_ = name;
	vring_driver &q = fi->queue == rxq ? rx : tx;
	const std::uint16_t num = cfg_.ring_size;
	auto one = [&](std::uint64_t addr, std::uint32_t len, bool write) {
		vring_driver::seg s{addr, len, write};
		auto h = q.add(std::span(&s, 1), fault_token);
		if (!h)
			throw std::invalid_argument(fmt::format("fault {}: ring {} is full", name,
								fi->queue));
		r.heads.push_back(*h);
	};
	// A valid frame in spare page 0, for descriptors that are only bad in
	// their address or length.
	auto frame_in_spare = [&]() {
		std::uint8_t *p = mem.ptr(spare_gpa(0), page_size);
		std::memset(p, 0, net_hdr_size);
		build_frame(std::span(p + net_hdr_size, 64), ~0ULL >> 1, now_ns());
	};
	if (name == "unmapped-iova") {
		one(unmapped_iova, 64 + net_hdr_size, false);
	} else if (name == "readonly-rx") {
		map(spare_gpa(1), page_size, perm_ro);
		one(dev_addr(spare_gpa(1)), page_size, true);
	} else if (name == "straddle") {
		frame_in_spare();
		// Spare pages 2 (mapped) and 3 (unmapped); the buffer spans both.
		map(spare_gpa(2), page_size, perm_ro);
		unmap(spare_gpa(3), page_size);
		one(dev_addr(spare_gpa(3)) - 32, 128, false);
	} else if (name == "wrap") {
		one(~0ULL - 31, 128, false);
	} else if (name == "zero-len") {
		frame_in_spare();
		if (cfg_.policy != iova_policy::identity)
			map(spare_gpa(0), page_size, perm_ro);
		one(dev_addr(spare_gpa(0)), 0, false);
	} else if (name == "runt") {
		frame_in_spare();
		if (cfg_.policy != iova_policy::identity)
			map(spare_gpa(0), page_size, perm_ro);
		one(dev_addr(spare_gpa(0)), net_hdr_size + 10, false);
	} else if (name == "past-memory") {
		frame_in_spare();
		if (cfg_.policy != iova_policy::identity)
			map(spare_gpa(0), page_size, perm_ro);
		one(dev_addr(spare_gpa(0)), static_cast<std::uint32_t>(
						    std::min<std::uint64_t>(mem.size + page_size, UINT32_MAX)),
		    false);
	} else if (name == "chain-loop" || name == "chain-too-long") {
		frame_in_spare();
		if (cfg_.policy != iova_policy::identity)
			map(spare_gpa(0), page_size, perm_ro);
		const std::uint16_t n = name == "chain-loop" ? 2 : q.free_count();
		if (n < 2)
			throw std::invalid_argument(fmt::format("fault {}: not enough free descriptors",
								name));
		auto chain = q.alloc_chain(n, fault_token);
		if (!chain)
			throw std::invalid_argument(fmt::format("fault {}: ring full", name));
		for (std::uint16_t k = 0; k < n; k++)
			q.write_desc((*chain)[k], vring_desc{dev_addr(spare_gpa(0)), 16, desc_f_next,
							     (*chain)[(k + 1) % n]});
		q.push_avail_raw((*chain)[0]);
		r.heads.push_back((*chain)[0]);
		r.detail += fmt::format(" ({} descriptors)", n);
	} else if (name == "avail-jump") {
		q.bump_avail_idx_raw(static_cast<std::uint16_t>(num + 1));
	} else if (name == "head-out-of-range") {
		q.push_avail_raw(static_cast<std::uint16_t>(num + 5));
		r.heads.push_back(static_cast<std::uint16_t>(num + 5));
	} else if (name == "unmap-in-flight") {
		map(spare_gpa(4), page_size, cfg_.rx_perm);
		one(dev_addr(spare_gpa(4)), page_size, true);
		unmap(spare_gpa(4), page_size);
	} else if (name == "post-after-unmap") {
		// Mapped and, once the device can hold a translation of it,
		// unmapped: the INVALIDATE has been acked when it is posted, so
		// any write into it (its canaries) breaks the security hinge.
		map(spare_gpa(4), page_size, cfg_.rx_perm);
		unmap(spare_gpa(4), page_size);
		one(dev_addr(spare_gpa(4)), page_size, true);
	} else if (name == "ring-unmapped") {
		const vring_layout &l = q.layout();
		unmap_iova(l.desc_iova, ring_span(num));
	} else if (name == "miss-after-unmap") {
		// The device forgets every posted RX buffer, so that its next
		// write misses whatever the policy; on_miss() does the rest.
		remap(dev_addr(slot_gpa(rxq, 0)), std::uint64_t{num} * page_size);
		miss_after_unmap_armed_ = true;
	} else if (name == "gso-size-zero" || name == "oversize-no-gso") {
		// struct virtio_net_hdr in front of the simulator's own frame:
		// what VM1 may send once HOST_TSO4 is negotiated, but broken.
		// The oversized frame spans spare pages 5..7 (contiguous).
		const bool big = name == "oversize-no-gso";
		const std::uint32_t len = big ? 10000 : 64;
		const std::uint64_t gpa = spare_gpa(big ? 5 : 0), span = big ? 3 * page_size : page_size;
		std::uint8_t *p = mem.ptr(gpa, span);
		std::memset(p, 0, net_hdr_size);
		build_frame(std::span(p + net_hdr_size, len), ~0ULL >> 1, now_ns());
		if (!big) {
			// TCPv4 GSO, NEEDS_CSUM at start 34, offset 16; gso_size 0.
			// (Each rule of the header has its own case in the unit
			// tests, KcoreNet.HdrCheck*; this one proves the driver's
			// wiring: counter, event, recovery.)
			p[0] = 1;
			p[1] = 1;
			p[6] = 34;
			p[8] = 16;
		}
		if (cfg_.policy != iova_policy::identity)
			map(gpa, span, perm_ro);
		one(dev_addr(gpa), len + net_hdr_size, false);
	} else if (name == "double-post") {
		frame_in_spare();
		if (cfg_.policy != iova_policy::identity)
			map(spare_gpa(0), page_size, perm_ro);
		one(dev_addr(spare_gpa(0)), 64 + net_hdr_size, false);
		q.push_avail_raw(r.heads.back());
	}
	return r;
}

void vm1::remap(std::uint64_t iova, std::uint64_t size)
{
	auto gone = mmu.unmap(iova, size);
	unmaps++;
	if (gone.empty())
		return;
	port_.invalidate(gone);
	for (const iommu_range &r : gone) {
		mmu.map(r.iova, r.gpa, r.size, r.perm);
		maps++;
		port_.mapped(r);
	}
}

bool vm1::on_miss(std::uint64_t iova)
{
	const std::uint64_t first = dev_addr(slot_gpa(rxq, 0));
	if (!miss_after_unmap_armed_ || iova < first ||
	    iova - first >= std::uint64_t{cfg_.ring_size} * page_size)
		return true;
	const std::uint64_t page = iova & ~(page_size - 1);
	if (!mmu.lookup(page))
		return true;
	// What QEMU does when VM1's unmap and map of the page both run
	// while the miss waits on the back-end channel, and the lookup falls
	// between them: the device hears the invalidation and no answer.
	miss_after_unmap_armed_ = false;
	misses_left_unanswered++;
	remap(page, page_size);
	return false;
}

void vm1::repair(const fault_report &f)
{
	if (f.name == "ring-unmapped") {
		const vring_layout &l = (f.queue == rxq ? rx : tx).layout();
		mmu.map(l.desc_iova, l.desc_gpa, ring_span(cfg_.ring_size), perm_rw);
		maps++;
		// Like QEMU: nothing is pushed, the device misses again.
	}
}

} // namespace vpci::sim
