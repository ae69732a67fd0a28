// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file sim_vm1.hpp
 * The simulated VM1: guest memory layout, emulated IOMMU, the virtio-net
 * driver's two split virtqueues (queue 0 RX, queue 1 TX), its buffer slots
 * and IOVA policy, and the fault scenarios that post hostile descriptors.
 *
 * It knows nothing about sockets: IOMMU changes that a device must hear
 * about go to an iotlb_port (the vhost-user front-end, or a test's fake).
 *
 * Guest-physical layout (page = 4 KiB):
 *   0x10000 + q * 0x20000   ring q: desc, avail, used (each page aligned)
 *   0x100000                RX buffer slots, one page each (num of them)
 *   then                    TX buffer slots, one page each (num of them)
 *   then                    spare_pages pages for fault scenarios
 * Device addresses: identity -> IOVA = GPA; otherwise IOVA = iova_offset + GPA.
 *
 * Several queue pairs (vm1_config::pairs): one vm1 per pair, all over the
 * same guest RAM and one IOMMU.  Pair p's rings are rings 2p (RX) and
 * 2p + 1 (TX) of the layout above; its buffer slots and spare pages
 * follow pair p - 1's (pair_buf_gpa()).  With one pair nothing moves.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim_iommu.hpp"
#include "sim_vring.hpp"

namespace vpci::sim {

constexpr std::uint64_t ring_base_gpa = 0x10000, ring_stride = 0x20000;
constexpr std::uint64_t buf_base_gpa = 0x100000;
constexpr std::uint64_t iova_offset = 0x4000000000ULL; // 256 GiB
constexpr std::uint64_t unmapped_iova = 0x7e0000000000ULL;
constexpr unsigned spare_pages = 8;
constexpr unsigned rxq = 0, txq = 1;
/** Queue pairs VM1 may have (VPCI_MAX_QUEUE_PAIRS: what the control area describes). */
constexpr unsigned max_queue_pairs = 8;
/** Tokens of fault descriptors have this bit; the datapath ignores them. */
constexpr std::uint64_t fault_token = 1ULL << 63;

/** Where IOMMU changes go (the vhost-user front-end). */
class iotlb_port {
public:
	virtual ~iotlb_port() = default;
	/** Ranges unmapped: the device must forget them (waits for its ack). */
	virtual void invalidate(const std::vector<iommu_range> &rs) = 0;
	/** A range was mapped (a port may push it). */
	virtual void mapped(const iommu_range &r) = 0;
};

struct vm1_config {
	iova_policy policy = iova_policy::identity;
	std::uint16_t ring_size = 256;
	bool event_idx = true;
	bool mrg_rxbuf = true;
	/** Leave each frame's checksum partial (NEEDS_CSUM, csum_start/csum_offset). */
	bool tx_csum = false;
	/** Negotiate GUEST_CSUM: the device may pass partial checksums on. */
	bool guest_csum = true;
	/**
	 * Send TCP/IPv4 frames (build_tcp_frame()) with their virtio-net
	 * header (tcp_net_hdr()): partial checksums, TSO frames over 1514
	 * bytes in chains of one descriptor per 4 KiB TX slot.
	 */
	bool gso = false;
	/**
	 * With gso: negotiate GUEST_TSO4, so TSO frames come back whole;
	 * without it the device segments them (tcp_reassembler).
	 */
	bool guest_tso = true;
	/** Permission RX buffers are mapped with (Linux: DMA_FROM_DEVICE = WO). */
	std::uint8_t rx_perm = perm_rw;
	/**
	 * static-pool and transient: this many more 4 KiB mappings that no
	 * traffic uses (a guest's other DMA mappings), read-only onto the last
	 * spare page, every other IOVA page (so none merge), half of them
	 * below the rings' and buffers' IOVAs and half above.  They fill a
	 * device's IOTLB, which is what a lookup costs depends on.
	 */
	std::uint32_t extra_pages = 0;
	/**
	 * Bytes of each RX buffer (at most a page): smaller buffers make
	 * frames span several (num_buffers > 1 with MRG_RXBUF).
	 */
	std::uint32_t rx_buf_size = 4096;
	/** RX buffers posted in the whole run, at most (0: no limit). */
	std::uint64_t rx_buf_limit = 0;
	/**
	 * The queue pair this vm1 drives (its rings are 2 * pair and
	 * 2 * pair + 1), of @p pairs sharing guest RAM and the IOMMU.  Pair 0
	 * maps what is shared (identity: all RAM; the extra mappings) and
	 * owns, for canaries, every page outside the pairs' buffer areas.
	 */
	unsigned pair = 0, pairs = 1;
};

/** IOVA of the first extra mapping below / above the buffers (see extra_pages). */
constexpr std::uint64_t extra_below_iova = iova_offset - 0x10000000ULL,
			extra_above_iova = iova_offset + 0x10000000ULL;

/** Smallest guest RAM the layout needs for @p ring_size and @p pairs queue pairs. */
std::uint64_t min_ram_size(std::uint16_t ring_size, unsigned pairs = 1);
/** GPA of the first RX buffer slot of pair @p pair (of @p pairs). */
std::uint64_t pair_buf_gpa(std::uint16_t ring_size, unsigned pairs, unsigned pair);

struct fault_info {
	const char *name;
	unsigned queue;
	const char *what;
};
/** The fault scenarios, in the order of the project's list. */
std::span<const fault_info> faults();
const fault_info *find_fault(const std::string &name);

/** What an injection posted. */
struct fault_report {
	std::string name;
	unsigned queue = 0;
	std::vector<std::uint16_t> heads; // heads posted (may be out of range)
	std::string detail;
	nlohmann::json to_json() const;
};

class vm1 {
public:
	/** One pair (cfg.pairs 1), or pair cfg.pair with an IOMMU of its own. */
	vm1(const guest_mem &mem, const vm1_config &cfg, iotlb_port &port);
	/** Pair cfg.pair of cfg.pairs, sharing @p shared (it must outlive this object). */
	vm1(const guest_mem &mem, const vm1_config &cfg, iotlb_port &port, iommu &shared);
	/** It holds references (mmu may be its own own_mmu_, port_): neither copied nor moved. */
	vm1(const vm1 &) = delete;
	vm1 &operator=(const vm1 &) = delete;

	/** Map what the policy maps up front (rings; identity: all RAM; pool: all buffers). */
	void map_static();
	std::uint64_t dev_addr(std::uint64_t gpa) const
	{
		return cfg_.policy == iova_policy::identity ? gpa : iova_offset + gpa;
	}
	const vring_layout &layout(unsigned q) const { return q == rxq ? rx.layout() : tx.layout(); }

	/** Post RX slot @p slot (maps it first when transient). */
	bool post_rx(std::uint16_t slot);
	/** Post RX slots 0..num-2 (one descriptor stays free for RX faults). */
	unsigned fill_rx();
	/**
	 * Build frame @p seq of @p size bytes in free TX slots (one, or with
	 * gso as many as header and frame fill) and add it as one chain.
	 * false if not enough slots or descriptors are free.
	 */
	bool send(std::uint64_t seq, std::uint32_t size, std::uint64_t tx_ns);
	/** A TX completion: free (and unmap when transient) its slot. */
	void complete_tx(const vring_driver::completion &c);
	/**
	 * An RX completion: the bytes the device wrote (virtio-net header
	 * included), valid until the slot is posted again; unmaps when
	 * transient.  Empty span for fault tokens.  The slot is *not*
	 * reposted: call post_rx(slot_of(c)).
	 */
	std::span<const std::uint8_t> complete_rx(const vring_driver::completion &c);
	static std::uint16_t slot_of(const vring_driver::completion &c)
	{
		return static_cast<std::uint16_t>(c.token);
	}

	/** Post fault @p name (see faults()); std::invalid_argument if unknown or impossible now. */
	fault_report inject(const std::string &name);
	/** Undo what a fault changed in the IOMMU (ring-unmapped: map the rings again). */
	void repair(const fault_report &f);
	/**
	 * A miss for @p iova reached VM1's IOMMU: false to leave it
	 * unanswered.  miss-after-unmap uses it once, on a posted RX buffer's
	 * page: unmapped and mapped again, the miss looked up in between.
	 */
	bool on_miss(std::uint64_t iova);
	/** Misses a fault scenario left unanswered on purpose (on_miss()). */
	std::uint64_t misses_left_unanswered = 0;

	/**
	 * Canaries: every page of guest RAM outside the rings is filled with
	 * canary_byte at start (unmapped pages, gaps, spare pages, buffer
	 * slots); each RX slot again before it is posted.  A device may write
	 * only the RX bytes it reports in a used entry.
	 */
	static constexpr std::uint8_t canary_byte = 0xc5;
	void paint_canaries();
	/** Pages outside the rings, the TX slots, spare page 0 (the sim's own
	 * frame) and RX slots still posted whose canaries changed; appends
	 * their GPAs to @p damaged. */
	std::uint64_t check_canaries(std::vector<std::uint64_t> &damaged) const;
	/** RX completions that wrote past their used length (checked in complete_rx). */
	std::uint64_t rx_tail_damaged = 0;
	/** Largest used length a fault head came back with (fault tokens). */
	std::uint32_t fault_used_len = 0;

	std::uint64_t slot_gpa(unsigned q, std::uint16_t slot) const
	{
		return bufs_ + (q == rxq ? 0 : cfg_.ring_size) * page_size + slot * page_size;
	}
	std::uint64_t spare_gpa(unsigned i) const
	{
		return bufs_ + 2ULL * cfg_.ring_size * page_size + i * page_size;
	}
	/** Ring @p q (rxq or txq) of this vm1's pair. */
	std::uint64_t ring_gpa(unsigned q) const
	{
		return ring_base_gpa + (2ULL * cfg_.pair + q) * ring_stride;
	}
	unsigned pair() const noexcept { return cfg_.pair; }

private:
	vm1(const guest_mem &mem, const vm1_config &cfg, iotlb_port &port,
	    std::unique_ptr<iommu> own, iommu *shared);
	/** The IOMMU when not shared (declared first: mmu refers to it). */
	std::unique_ptr<iommu> own_mmu_;
	/** First RX slot of this pair. */
	std::uint64_t bufs_;

public:
	guest_mem mem;
	iommu &mmu;
	vring_driver rx, tx;
	std::uint64_t unmaps = 0, maps = 0;

private:
	void map(std::uint64_t gpa, std::uint64_t size, std::uint8_t perm);
	void map_extra();
	void unmap(std::uint64_t gpa, std::uint64_t size);
	void unmap_iova(std::uint64_t iova, std::uint64_t size);
	/** Unmap @p size bytes at @p iova (one invalidation) and map the same again. */
	void remap(std::uint64_t iova, std::uint64_t size);
	vring_layout ring_layout(unsigned q) const;
	/** A page of some pair's rings. */
	bool ring_page(std::uint64_t gpa) const;
	/** Whether this pair paints and checks the canaries of @p gpa. */
	bool owns_page(std::uint64_t gpa) const;
	std::uint16_t take_tx_slot();

	vm1_config cfg_;
	iotlb_port &port_;
	std::vector<std::uint16_t> tx_free_;
	/** Slots of the TX chain whose token is its first slot (gso). */
	std::vector<std::vector<std::uint16_t>> tx_chain_;
	/** A frame being built before it is spread over its slots. */
	std::vector<std::uint8_t> tx_scratch_;
	std::vector<bool> rx_posted_;
	std::uint64_t rx_bufs_posted_ = 0;
	std::string fault_name_;
	bool miss_after_unmap_armed_ = false;
};

} // namespace vpci::sim
