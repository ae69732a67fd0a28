// SPDX-License-Identifier: GPL-2.0
// VM1's memory and IOTLB as the core benchmarks lay them out: rings at the
// start, buffers from kBufs, IOVA = BAR offset, either one identity entry
// or an entry per 4 KiB page.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

extern "C" {
#include "vpci_core.h"
}

namespace vpci::bench {

constexpr u64 kMem = 64ULL << 20;
constexpr u16 kNum = 256;
constexpr u64 kDesc = 0x0, kAvail = 0x1000, kUsed = 0x2000, kBufs = 0x100000;
constexpr unsigned kBurst = 32;

struct Peer {
	std::vector<u8> mem;
	vpci_iotlb iotlb{};
	vpci_peer peer{};

	// pages == 0: one entry for all memory (no IOMMU); else 4 KiB entries,
	// in memory of at least kMem bytes that holds them all
	explicit Peer(u64 pages) : mem(std::max(kMem, pages * 4096))
	{
		const u64 size = mem.size();
		vpci_iotlb_init(&iotlb, 65536, size);
		peer = {mem.data(), size, &iotlb};
		if (!pages) {
			vpci_iotlb_add(&iotlb, 0, size, 0, VPCI_PERM_RW);
			return;
		}
		for (u64 p = 0; p < pages; p++)
			vpci_iotlb_add(&iotlb, p * 4096, 4096, p * 4096, VPCI_PERM_RW);
	}
	~Peer() { vpci_iotlb_destroy(&iotlb); }
	Peer(const Peer &) = delete;
	Peer &operator=(const Peer &) = delete;

	void put16(u64 off, u16 v) { std::memcpy(&mem[off], &v, 2); }
};

} // namespace vpci::bench
