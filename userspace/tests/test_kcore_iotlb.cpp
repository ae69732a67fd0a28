// SPDX-License-Identifier: GPL-2.0
// The driver's IOTLB (kernel/core_iotlb.c) compiled in userspace: rules,
// edge cases, and a randomized comparison with a page-granular model.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

extern "C" {
#include "vpci_core.h"
}

namespace {

constexpr u64 kPeer = 1ULL << 30;

struct Table {
	vpci_iotlb t{};
	explicit Table(u32 max = 1U << 16, u64 peer = kPeer) { vpci_iotlb_init(&t, max, peer); }
	~Table() { vpci_iotlb_destroy(&t); }
	Table(const Table &) = delete;
	Table &operator=(const Table &) = delete;

	int tr(u64 iova, u64 len, u32 perm, u64 *off, u64 *contig) const
	{
		return vpci_iotlb_translate(&t, iova, len, perm, off, contig);
	}
};

} // namespace

TEST(KcoreIotlb, EmptyTableMisses)
{
	Table t;
	u64 off, c;
	EXPECT_EQ(t.tr(0x1000, 1, VPCI_PERM_RO, &off, &c), -ENOENT);
}

TEST(KcoreIotlb, TranslatesWithOffsetAndContiguity)
{
	Table t;
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0x10000, 0x3000, 0x200000, VPCI_PERM_RW), 0);
	u64 off, c;
	ASSERT_EQ(t.tr(0x10800, 0x100, VPCI_PERM_RO, &off, &c), 0);
	EXPECT_EQ(off, 0x200800u);
	EXPECT_EQ(c, 0x100u);
	ASSERT_EQ(t.tr(0x12800, 0x1000, VPCI_PERM_WO, &off, &c), 0);
	EXPECT_EQ(off, 0x202800u);
	EXPECT_EQ(c, 0x800u) << "only the rest of the entry is contiguous";
	EXPECT_EQ(t.tr(0x13000, 1, VPCI_PERM_RO, &off, &c), -ENOENT) << "last is inclusive";
	EXPECT_EQ(t.tr(0xffff, 1, VPCI_PERM_RO, &off, &c), -ENOENT);
}

TEST(KcoreIotlb, PermissionsEnforced)
{
	Table t;
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0x1000, 0x1000, 0, VPCI_PERM_RO), 0);
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0x2000, 0x1000, 0x1000, VPCI_PERM_WO), 0);
	u64 off, c;
	EXPECT_EQ(t.tr(0x1000, 8, VPCI_PERM_RO, &off, &c), 0);
	EXPECT_EQ(t.tr(0x1000, 8, VPCI_PERM_WO, &off, &c), -EACCES);
	EXPECT_EQ(t.tr(0x2000, 8, VPCI_PERM_RO, &off, &c), -EACCES);
	EXPECT_EQ(t.tr(0x2000, 8, VPCI_PERM_WO, &off, &c), 0);
	EXPECT_EQ(t.tr(0x2000, 8, VPCI_PERM_RW, &off, &c), -EACCES);
}

TEST(KcoreIotlb, RejectsBadRanges)
{
	Table t;
	EXPECT_EQ(vpci_iotlb_add(&t.t, 0x1000, 0, 0, VPCI_PERM_RW), -EINVAL) << "size 0";
	EXPECT_EQ(vpci_iotlb_add(&t.t, ~0ULL - 0xfff, 0x2000, 0, VPCI_PERM_RW), -EINVAL) << "wraps";
	EXPECT_EQ(vpci_iotlb_add(&t.t, 0x1000, 0x1000, 0, 0), -EINVAL) << "no permission";
	EXPECT_EQ(vpci_iotlb_add(&t.t, 0x1000, 0x1000, 0, 4), -EINVAL) << "unknown permission";
	EXPECT_EQ(vpci_iotlb_add(&t.t, 0x1000, 0x2000, kPeer - 0x1000, VPCI_PERM_RW), -ERANGE)
		<< "past peer_mem_size";
	EXPECT_EQ(vpci_iotlb_add(&t.t, 0x1000, 0x1000, ~0ULL - 0x10, VPCI_PERM_RW), -ERANGE)
		<< "bar offset overflow";
	EXPECT_EQ(vpci_iotlb_add(&t.t, 0x1000, 0x1000, kPeer - 0x1000, VPCI_PERM_RW), 0)
		<< "last page of peer memory";
	u64 off, c;
	EXPECT_EQ(t.tr(~0ULL, 2, VPCI_PERM_RO, &off, &c), -EINVAL) << "access wraps";
	EXPECT_EQ(t.tr(0x1000, 0, VPCI_PERM_RO, &off, &c), -EINVAL) << "empty access";
	EXPECT_EQ(vpci_iotlb_del(&t.t, 5, 0), -EINVAL);
}

TEST(KcoreIotlb, WholeAddressSpaceEntry)
{
	Table t(16, ~0ULL);
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0, ~0ULL, 0, VPCI_PERM_RW), 0);
	u64 off, c;
	ASSERT_EQ(t.tr(0, 64, VPCI_PERM_RO, &off, &c), 0);
	EXPECT_EQ(c, 64u);
}

TEST(KcoreIotlb, DeleteToEnd)
{
	Table t(16, ~0ULL);
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0x1000, 0x1000, 0, VPCI_PERM_RW), 0);
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0x8000, 0x2000, 0x1000, VPCI_PERM_RW), 0);
	ASSERT_EQ(vpci_iotlb_add(&t.t, ~0ULL - 0xfff, 0x1000, 0x3000, VPCI_PERM_RW), 0);
	u64 off, c;
	vpci_iotlb_del_to_end(&t.t, 0x9000);
	EXPECT_EQ(t.tr(0x8fff, 1, VPCI_PERM_RO, &off, &c), 0) << "below: kept";
	EXPECT_EQ(t.tr(0x9000, 1, VPCI_PERM_RO, &off, &c), -ENOENT);
	EXPECT_EQ(t.tr(~0ULL, 1, VPCI_PERM_RO, &off, &c), -ENOENT) << "the very last byte too";
	vpci_iotlb_del_to_end(&t.t, 0);
	EXPECT_EQ(t.t.n, 0u);
	EXPECT_EQ(t.tr(0x1000, 1, VPCI_PERM_RO, &off, &c), -ENOENT);
	// Every node is free again: the whole capacity fills without eviction.
	for (u64 i = 0; i < 16; i++)
		ASSERT_EQ(vpci_iotlb_add(&t.t, i * 0x2000, 0x1000, 0, VPCI_PERM_RW), 0);
	EXPECT_EQ(t.t.n, 16u);
	EXPECT_EQ(t.t.evictions, 0u);
}

TEST(KcoreIotlb, DeleteSplitsTrimsAndRemoves)
{
	Table t;
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0x0, 0x10000, 0x100000, VPCI_PERM_RW), 0);
	ASSERT_EQ(vpci_iotlb_del(&t.t, 0x4000, 0x1000), 0);
	EXPECT_EQ(t.t.n, 2u);
	u64 off, c;
	EXPECT_EQ(t.tr(0x4000, 1, VPCI_PERM_RO, &off, &c), -ENOENT);
	ASSERT_EQ(t.tr(0x5000, 1, VPCI_PERM_RO, &off, &c), 0);
	EXPECT_EQ(off, 0x105000u);
	ASSERT_EQ(t.tr(0x3fff, 1, VPCI_PERM_RO, &off, &c), 0);
	EXPECT_EQ(off, 0x103fffu);
	ASSERT_EQ(vpci_iotlb_del(&t.t, 0x0, 0x10000), 0);
	EXPECT_EQ(t.t.n, 0u);
}

TEST(KcoreIotlb, FullTableEvictsNeverAWrongHit)
{
	Table t(4);
	for (u64 i = 0; i < 4; i++)
		ASSERT_EQ(vpci_iotlb_add(&t.t, i * 0x2000, 0x1000, i * 0x1000, VPCI_PERM_RW), 0);
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0x100000, 0x1000, 0x8000, VPCI_PERM_RW), 0);
	EXPECT_EQ(t.t.n, 4u);
	EXPECT_EQ(t.t.evictions, 1u);
	u64 off, c, hits = 0;
	ASSERT_EQ(t.tr(0x100000, 1, VPCI_PERM_RO, &off, &c), 0);
	EXPECT_EQ(off, 0x8000u);
	for (u64 i = 0; i < 4; i++) {
		int rc = t.tr(i * 0x2000, 1, VPCI_PERM_RO, &off, &c);
		ASSERT_TRUE(rc == 0 || rc == -ENOENT);
		if (rc == 0) {
			EXPECT_EQ(off, i * 0x1000) << "survivors still translate right";
			hits++;
		}
	}
	EXPECT_EQ(hits, 3u) << "exactly one entry evicted";
	// A split in a full table drops the whole entry: more removed, never less.
	ASSERT_EQ(vpci_iotlb_add(&t.t, 0x200000, 0x3000, 0x10000, VPCI_PERM_RW), 0);
	ASSERT_EQ(vpci_iotlb_del(&t.t, 0x201000, 0x1000), 0);
	EXPECT_EQ(t.tr(0x200000, 1, VPCI_PERM_RO, &off, &c), -ENOENT);
	EXPECT_EQ(t.tr(0x201000, 1, VPCI_PERM_RO, &off, &c), -ENOENT);
	EXPECT_EQ(t.tr(0x202000, 1, VPCI_PERM_RO, &off, &c), -ENOENT);
}

// Differential test: random adds and deletes on a small page space, each
// page's translation compared with a std::map model after every step.
TEST(KcoreIotlb, RandomizedAgainstPageModel)
{
	constexpr u64 kPages = 256;
	constexpr u64 kPage = 4096;
	struct Map {
		u64 bar;
		u32 perm;
	};
	std::mt19937_64 rng(12345);
	Table t;
	std::map<u64, Map> model;
	for (int step = 0; step < 4000; step++) {
		u64 first = rng() % kPages;
		u64 npages = 1 + rng() % 16;
		if (first + npages > kPages)
			npages = kPages - first;
		if (rng() % 3) {
			u64 bar = (rng() % 1024) * kPage;
			u32 perm = 1 + rng() % 3;
			ASSERT_EQ(vpci_iotlb_add(&t.t, first * kPage, npages * kPage, bar, perm), 0);
			for (u64 p = 0; p < npages; p++)
				model[first + p] = Map{bar + p * kPage, perm};
		} else {
			ASSERT_EQ(vpci_iotlb_del(&t.t, first * kPage, npages * kPage), 0);
			for (u64 p = 0; p < npages; p++)
				model.erase(first + p);
		}
		std::vector<vpci_iotlb_entry> all(t.t.n + 1);
		ASSERT_EQ(vpci_iotlb_slice(&t.t, 0, all.data(), t.t.n + 1), t.t.n);
		for (u32 i = 1; i < t.t.n; i++)
			ASSERT_LT(all[i - 1].last, all[i].start) << "sorted, disjoint";
		for (u64 p = 0; p < kPages; p++) {
			u64 off = 0, c = 0;
			u64 iova = p * kPage + 7;
			int rc = t.tr(iova, 1, VPCI_PERM_RO, &off, &c);
			auto it = model.find(p);
			if (it == model.end()) {
				ASSERT_EQ(rc, -ENOENT) << "page " << p << " step " << step;
			} else if (!(it->second.perm & VPCI_PERM_RO)) {
				ASSERT_EQ(rc, -EACCES);
			} else {
				ASSERT_EQ(rc, 0);
				ASSERT_EQ(off, it->second.bar + 7);
			}
		}
	}
}
