// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file sim_iommu.hpp
 * The peer simulator's emulated IOMMU: VM1's view of which IOVA pages a
 * device may touch, at 4 KiB page granularity, with RO/WO/RW permissions.
 *
 * This is the front-end's truth (what VM1's intel-iommu page tables say),
 * not a cache: a device's IOTLB MISS is answered from it, and an unmap
 * produces the ranges that must be invalidated in the device.
 */
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace vpci::sim {

constexpr std::uint64_t page_size = 4096;

/** VHOST_ACCESS_* values (same as VPCI_PERM_*). */
enum perm : std::uint8_t { perm_none = 0, perm_ro = 1, perm_wo = 2, perm_rw = 3 };

const char *perm_name(std::uint8_t p);

/** One contiguous translation: [iova, iova + size) -> [gpa, gpa + size). */
struct iommu_range {
	std::uint64_t iova, size, gpa;
	std::uint8_t perm;
	bool operator==(const iommu_range &) const = default;
};

/**
 * Page table of the emulated IOMMU.  All addresses and sizes given to
 * map()/unmap() must be page aligned and not wrap (std::invalid_argument
 * otherwise); @p gpa + size must stay within the memory size given at
 * construction, because VM1 cannot map what it does not have.
 */
class iommu {
public:
	explicit iommu(std::uint64_t mem_size) : mem_size_(mem_size) {}

	/** Map (or remap: replaces what was there) @p size bytes. */
	void map(std::uint64_t iova, std::uint64_t gpa, std::uint64_t size, std::uint8_t perm);
	/**
	 * Unmap @p size bytes at @p iova.  Returns the ranges that were
	 * mapped (merged where contiguous), i.e. what a device must forget.
	 */
	std::vector<iommu_range> unmap(std::uint64_t iova, std::uint64_t size);

	/**
	 * The page containing @p iova, if mapped (what a MISS is answered
	 * with, as intel-iommu does in strict/lazy mode); with @p extend the
	 * maximal contiguous same-permission range around it (as a
	 * passthrough IOMMU answers).
	 */
	std::optional<iommu_range> lookup(std::uint64_t iova, bool extend = false) const;
	/**
	 * GPA of [iova, iova + len) if every page is mapped with at least
	 * @p need and the GPAs are contiguous; nullopt otherwise (also for
	 * len 0 and wrapping ranges).
	 */
	std::optional<std::uint64_t> translate(std::uint64_t iova, std::uint64_t len,
					       std::uint8_t need) const;
	/** All mappings, merged into maximal contiguous ranges. */
	std::vector<iommu_range> ranges() const;
	std::size_t pages() const noexcept { return pt_.size(); }
	std::uint64_t mem_size() const noexcept { return mem_size_; }

private:
	struct pte {
		std::uint64_t gpa;
		std::uint8_t perm;
	};
	void check(std::uint64_t iova, std::uint64_t size, const char *what) const;

	std::uint64_t mem_size_;
	std::map<std::uint64_t, pte> pt_; // iova page -> entry
};

/**
 * IOVA allocation policy of the simulator.
 *   identity:    IOVA == GPA, all of RAM mapped RW once at start (like iommu=pt).
 *   static_pool: rings and the whole buffer pool mapped once at a separate
 *                IOVA base, buffers stay mapped (like a driver with a
 *                premapped pool).
 *   transient:   rings mapped once; every buffer mapped just before it is
 *                posted and unmapped (invalidated, acked) after use (like
 *                iommu.strict=1).
 */
enum class iova_policy { identity, static_pool, transient };

std::optional<iova_policy> parse_policy(const std::string &s);
const char *policy_name(iova_policy p);

} // namespace vpci::sim
