// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "sim_iommu.hpp"

#include <iterator>
#include <stdexcept>

#include <fmt/format.h>

namespace vpci::sim {

const char *perm_name(std::uint8_t p)
{
	switch (p) {
	case perm_ro:
		return "ro";
	case perm_wo:
		return "wo";
	case perm_rw:
		return "rw";
	default:
		return "none";
	}
}

void iommu::check(std::uint64_t iova, std::uint64_t size, const char *what) const
{
	if (!size || (iova | size) % page_size || iova + size < iova)
		throw std::invalid_argument(
			fmt::format("iommu {}: iova {:#x} size {:#x} not page aligned, empty or wrapping",
				    what, iova, size));
}

void iommu::map(std::uint64_t iova, std::uint64_t gpa, std::uint64_t size, std::uint8_t perm)
{
	check(iova, size, "map");
	if (gpa % page_size || gpa > mem_size_ || size > mem_size_ - gpa)
		throw std::invalid_argument(fmt::format(
			"iommu map: gpa {:#x} size {:#x} outside memory of {:#x} bytes", gpa, size,
			mem_size_));
	if (perm == perm_none || perm > perm_rw)
		throw std::invalid_argument(fmt::format("iommu map: bad perm {}", perm));
	for (std::uint64_t off = 0; off < size; off += page_size)
		pt_[iova + off] = pte{gpa + off, perm};
}

std::vector<iommu_range> iommu::unmap(std::uint64_t iova, std::uint64_t size)
{
	check(iova, size, "unmap");
	std::vector<iommu_range> out;
	auto it = pt_.lower_bound(iova);
	while (it != pt_.end() && it->first - iova < size) {
		if (!out.empty() && out.back().iova + out.back().size == it->first &&
		    out.back().gpa + out.back().size == it->second.gpa &&
		    out.back().perm == it->second.perm)
			out.back().size += page_size;
		else
			out.push_back({it->first, page_size, it->second.gpa, it->second.perm});
		it = pt_.erase(it);
	}
	return out;
}

std::optional<iommu_range> iommu::lookup(std::uint64_t iova, bool extend) const
{
	auto it = pt_.find(iova & ~(page_size - 1));
	if (it == pt_.end())
		return std::nullopt;
	iommu_range r{it->first, page_size, it->second.gpa, it->second.perm};
	if (!extend)
		return r;
	for (auto b = it; b != pt_.begin();) {
		auto p = std::prev(b);
		if (p->first + page_size != r.iova || p->second.gpa + page_size != r.gpa ||
		    p->second.perm != r.perm)
			break;
		r.iova -= page_size;
		r.gpa -= page_size;
		r.size += page_size;
		b = p;
	}
	for (auto n = std::next(it); n != pt_.end(); ++n) {
		if (n->first != r.iova + r.size || n->second.gpa != r.gpa + r.size ||
		    n->second.perm != r.perm)
			break;
		r.size += page_size;
	}
	return r;
}

std::optional<std::uint64_t> iommu::translate(std::uint64_t iova, std::uint64_t len,
					       std::uint8_t need) const
{
	if (!len || iova + len - 1 < iova)
		return std::nullopt;
	std::optional<std::uint64_t> first;
	const std::uint64_t last = (iova + len - 1) & ~(page_size - 1);
	for (std::uint64_t pg = iova & ~(page_size - 1);; pg += page_size) {
		auto it = pt_.find(pg);
		if (it == pt_.end() || (it->second.perm & need) != need)
			return std::nullopt;
		const std::uint64_t gpa = it->second.gpa + (pg == (iova & ~(page_size - 1))
								    ? iova % page_size
								    : 0);
		if (!first)
			first = gpa;
		else if (gpa != *first + (pg - iova))
			return std::nullopt;
		if (pg == last)
			break;
	}
	return first;
}

std::vector<iommu_range> iommu::ranges() const
{
	std::vector<iommu_range> out;
	for (const auto &[iova, e] : pt_) {
		if (!out.empty() && out.back().iova + out.back().size == iova &&
		    out.back().gpa + out.back().size == e.gpa && out.back().perm == e.perm)
			out.back().size += page_size;
		else
			out.push_back({iova, page_size, e.gpa, e.perm});
	}
	return out;
}

std::optional<iova_policy> parse_policy(const std::string &s)
{
	if (s == "identity")
		return iova_policy::identity;
	if (s == "static-pool")
		return iova_policy::static_pool;
	if (s == "transient")
		return iova_policy::transient;
	return std::nullopt;
}

const char *policy_name(iova_policy p)
{
	switch (p) {
	case iova_policy::identity:
		return "identity";
	case iova_policy::static_pool:
		return "static-pool";
	case iova_policy::transient:
		return "transient";
	}
	return "?";
}

} // namespace vpci::sim
