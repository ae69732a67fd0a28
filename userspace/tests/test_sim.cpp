// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The peer simulator's ring, IOMMU, traffic and fault logic, checked by a
// fake device that is the test's own code reading the same memory through
// the emulated IOMMU; and the front-end against the in-process backend.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <thread>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "abi.hpp"
#include "net_csum.hpp"
#include "backend.hpp"
#include "sim_cli.hpp"
#include "sim_frontend.hpp"
#include "sim_iommu.hpp"
#include "sim_traffic.hpp"
#include "sim_vm1.hpp"
#include "sim_vring.hpp"
#include "test_util.hpp"
#include "vhost_user_session.hpp"

// sim::vm1 holds references (its IOMMU, its IOTLB port): a copy or a move
// would leave the new object's mmu pointing into the old one's own_mmu_.
static_assert(!std::is_copy_constructible_v<vpci::sim::vm1> &&
		      !std::is_move_constructible_v<vpci::sim::vm1> &&
		      !std::is_copy_assignable_v<vpci::sim::vm1> &&
		      !std::is_move_assignable_v<vpci::sim::vm1>,
	      "sim::vm1 is neither copyable nor movable");

using namespace vpci;
using namespace vpci::sim;

namespace {

constexpr std::uint64_t P = page_size;

// ---------------------------------------------------------------- IOMMU

TEST(SimIommu, MapTranslatePermissions)
{
	iommu m(64 * P);
	m.map(0x100000, 2 * P, 2 * P, perm_rw);
	m.map(0x200000, 4 * P, P, perm_ro);
	m.map(0x300000, 5 * P, P, perm_wo);
	EXPECT_EQ(m.translate(0x100010, 16, perm_rw), 2 * P + 0x10);
	EXPECT_EQ(m.translate(0x100ff0, 0x20, perm_ro), 2 * P + 0xff0) << "two contiguous pages";
	EXPECT_EQ(m.translate(0x200000, 64, perm_ro), 4 * P);
	EXPECT_FALSE(m.translate(0x200000, 64, perm_wo)) << "write to a read-only page";
	EXPECT_FALSE(m.translate(0x300000, 64, perm_ro)) << "read of a write-only page";
	EXPECT_EQ(m.translate(0x300000, 64, perm_wo), 5 * P);
	EXPECT_FALSE(m.translate(0x101ff0, 0x20, perm_ro)) << "straddles into unmapped";
	EXPECT_FALSE(m.translate(0x100000, 0, perm_ro)) << "length 0";
	EXPECT_FALSE(m.translate(~0ULL - 15, 32, perm_ro)) << "wraps 2^64";
	EXPECT_EQ(m.pages(), 4u);
}

TEST(SimIommu, NonContiguousGpaIsNotOneBuffer)
{
	iommu m(64 * P);
	m.map(0x10000, 3 * P, P, perm_rw);
	m.map(0x11000, 9 * P, P, perm_rw);
	EXPECT_EQ(m.translate(0x10ff0, 0x10, perm_rw), 3 * P + 0xff0);
	EXPECT_FALSE(m.translate(0x10ff0, 0x20, perm_rw));
}

TEST(SimIommu, UnmapRemapLookup)
{
	iommu m(64 * P);
	m.map(0x10000, 0, 4 * P, perm_rw);
	auto gone = m.unmap(0x11000, 2 * P);
	ASSERT_EQ(gone.size(), 1u);
	EXPECT_EQ(gone[0], (iommu_range{0x11000, 2 * P, P, perm_rw}));
	EXPECT_TRUE(m.unmap(0x11000, P).empty()) << "nothing left there";
	EXPECT_FALSE(m.lookup(0x11abc));
	EXPECT_EQ(m.lookup(0x13abc), (iommu_range{0x13000, P, 3 * P, perm_rw}));
	m.map(0x13000, 3 * P, P, perm_ro); // remap: permission change
	EXPECT_EQ(m.lookup(0x13000)->perm, perm_ro);
	m.map(0x11000, P, 2 * P, perm_rw);
	EXPECT_EQ(m.lookup(0x11000, true), (iommu_range{0x10000, 3 * P, 0, perm_rw}))
		<< "extended to the contiguous same-permission range";
	EXPECT_EQ(m.ranges().size(), 2u);
}

TEST(SimIommu, RejectsBadArguments)
{
	iommu m(16 * P);
	EXPECT_THROW(m.map(0x10001, 0, P, perm_rw), std::invalid_argument);
	EXPECT_THROW(m.map(0x10000, 0, 0, perm_rw), std::invalid_argument);
	EXPECT_THROW(m.map(0x10000, 16 * P, P, perm_rw), std::invalid_argument) << "past memory";
	EXPECT_THROW(m.map(~0ULL - P + 1, 0, 2 * P, perm_rw), std::invalid_argument) << "wraps";
	EXPECT_THROW(m.map(0x10000, 0, P, perm_none), std::invalid_argument);
	EXPECT_THROW(m.unmap(0x10000, 0), std::invalid_argument);
	EXPECT_EQ(parse_policy("static-pool"), iova_policy::static_pool);
	EXPECT_FALSE(parse_policy("strict"));
}

// ---------------------------------------------------------------- fake device

/** Anonymous guest memory. */
struct test_mem {
	explicit test_mem(std::uint64_t size)
	{
		void *p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
				 -1, 0);
		if (p == MAP_FAILED)
			throw_errno("mmap(test memory)");
		gm = {static_cast<std::uint8_t *>(p), size};
	}
	~test_mem() { ::munmap(gm.base, gm.size); }
	guest_mem gm;
};

/** Device side of one split ring, through the IOMMU, as a hostile-input checker. */
struct fake_device {
	const guest_mem &mem;
	const iommu &mmu;
	vring_layout l;
	bool event_idx;
	std::uint16_t last_avail = 0, used_idx = 0;

	template <typename T> T *ring(std::uint64_t iova, std::uint8_t perm) const
	{
		auto g = mmu.translate(iova, sizeof(T), perm);
		return g ? reinterpret_cast<T *>(mem.base + *g) : nullptr;
	}
	std::uint16_t avail_idx() const
	{
		return std::atomic_ref(*ring<std::uint16_t>(l.avail_iova + 2, perm_ro))
			.load(std::memory_order_acquire);
	}
	/**
	 * Pop one chain.  Returns "" and the descriptors, or the name of the
	 * first problem found (what a careful device must detect).
	 */
	std::string pop(std::vector<vring_desc> &out, std::uint16_t *head_out = nullptr)
	{
		out.clear();
		if (!mmu.translate(l.desc_iova, desc_bytes(l.num), perm_ro) ||
		    !mmu.translate(l.avail_iova, avail_bytes(l.num), perm_ro))
			return "ring-unmapped";
		const std::uint16_t idx = avail_idx();
		if (static_cast<std::uint16_t>(idx - last_avail) > l.num)
			return "avail-jump";
		if (idx == last_avail)
			return "empty";
		const std::uint16_t head =
			*ring<std::uint16_t>(l.avail_iova + 4 + 2 * (last_avail % l.num), perm_ro);
		last_avail++;
		if (head_out)
			*head_out = head;
		if (head >= l.num)
			return "head-out-of-range";
		auto *d = ring<vring_desc>(l.desc_iova, perm_ro);
		std::uint16_t i = head;
		for (unsigned n = 0;; n++) {
			if (n >= l.num)
				return "chain-too-long"; // a loop is caught here too
			vring_desc x = d[i];
			out.push_back(x);
			if (!(x.flags & desc_f_next))
				break;
			if (x.next >= l.num)
				return "next-out-of-range";
			i = x.next;
		}
		for (const auto &x : out) {
			const std::uint8_t need = (x.flags & desc_f_write) ? perm_wo : perm_ro;
			if (x.len == 0)
				return "zero-len";
			if (x.addr + x.len - 1 < x.addr)
				return "wrap";
			if (x.len > mem.size)
				return "past-memory";
			if (!mmu.translate(x.addr, x.len, need)) {
				if (mmu.translate(x.addr, x.len, perm_none) ||
				    mmu.lookup(x.addr).has_value())
					return (x.flags & desc_f_write) && mmu.translate(x.addr, 1, perm_ro)
						       ? "readonly"
						       : "straddle";
				return "unmapped";
			}
		}
		// A TX frame (all readable) shorter than header + Ethernet header.
		std::uint64_t readable = 0;
		bool writable = false;
		for (const auto &x : out) {
			writable |= (x.flags & desc_f_write) != 0;
			readable += (x.flags & desc_f_write) ? 0 : x.len;
		}
		if (!writable && readable < net_hdr_size + 14)
			return "runt";
		return "";
	}
	std::uint8_t *buf(const vring_desc &x, std::uint8_t perm) const
	{
		return mem.base + *mmu.translate(x.addr, x.len, perm);
	}
	void push_used(std::uint32_t id, std::uint32_t len)
	{
		auto *u = ring<std::uint8_t>(l.used_iova, perm_wo);
		std::uint32_t e[2] = {id, len};
		std::memcpy(u + 4 + 8 * (used_idx % l.num), e, 8);
		used_idx++;
		std::atomic_ref(*reinterpret_cast<std::uint16_t *>(u + 2))
			.store(used_idx, std::memory_order_release);
	}
	void set_avail_event(std::uint16_t v)
	{
		*ring<std::uint16_t>(l.used_iova + 4 + 8ULL * l.num, perm_wo) = v;
	}
	std::uint16_t used_event() const
	{
		return *ring<std::uint16_t>(l.avail_iova + 4 + 2ULL * l.num, perm_ro);
	}
};

vring_layout identity_layout(std::uint16_t num)
{
	vring_layout l;
	l.num = num;
	l.desc_gpa = l.desc_iova = 0x10000;
	l.avail_gpa = l.avail_iova = 0x20000;
	l.used_gpa = l.used_iova = 0x30000;
	return l;
}

// ---------------------------------------------------------------- vring

TEST(SimVring, AddPopCompleteRoundTrip)
{
	test_mem tm(1 << 20);
	iommu mmu(tm.gm.size);
	mmu.map(0, 0, tm.gm.size, perm_rw);
	vring_driver vr(tm.gm, identity_layout(8), true);
	fake_device dev{tm.gm, mmu, identity_layout(8), true};
	vring_driver::seg two[2] = {{0x40000, 12, false}, {0x41000, 100, true}};
	auto h = vr.add(two, 77);
	ASSERT_TRUE(h);
	EXPECT_EQ(vr.free_count(), 6);
	std::vector<vring_desc> d;
	EXPECT_EQ(dev.pop(d), "empty") << "not visible before kick_prepare";
	dev.last_avail = 0;
	EXPECT_TRUE(vr.kick_prepare()) << "avail_event 0, first post";
	ASSERT_EQ(dev.pop(d), "");
	ASSERT_EQ(d.size(), 2u);
	EXPECT_EQ(d[0].addr, 0x40000u);
	EXPECT_EQ(d[0].flags, desc_f_next);
	EXPECT_EQ(d[1].flags, desc_f_write);
	EXPECT_FALSE(vr.get_used());
	dev.push_used(*h, 100);
	auto c = vr.get_used();
	ASSERT_TRUE(c);
	EXPECT_EQ(c->token, 77u);
	EXPECT_EQ(c->len, 100u);
	EXPECT_EQ(vr.free_count(), 8);
	// Fill the ring completely, then one more fails.
	for (int i = 0; i < 8; i++) {
		vring_driver::seg s{0x40000, 64, false};
		ASSERT_TRUE(vr.add(std::span(&s, 1), i));
	}
	vring_driver::seg s{0x40000, 64, false};
	EXPECT_FALSE(vr.add(std::span(&s, 1), 9));
}

TEST(SimVring, EventIdxSuppressesKicksAndCalls)
{
	test_mem tm(1 << 20);
	iommu mmu(tm.gm.size);
	mmu.map(0, 0, tm.gm.size, perm_rw);
	vring_driver vr(tm.gm, identity_layout(16), true);
	fake_device dev{tm.gm, mmu, identity_layout(16), true};
	vring_driver::seg s{0x40000, 64, false};
	vr.add(std::span(&s, 1), 0);
	EXPECT_TRUE(vr.kick_prepare());
	dev.set_avail_event(5); // device: wake me when avail passes 5
	for (int i = 0; i < 3; i++)
		vr.add(std::span(&s, 1), 0);
	EXPECT_FALSE(vr.kick_prepare()) << "idx 4 has not passed 5";
	vr.add(std::span(&s, 1), 0);
	vr.add(std::span(&s, 1), 0);
	EXPECT_TRUE(vr.kick_prepare()) << "idx 6 passed 5";
	EXPECT_FALSE(vr.kick_prepare()) << "nothing new";
	EXPECT_EQ(vr.counters().kicks, 2u);
	// Call side: enable_cb publishes used_event = last_used.
	EXPECT_TRUE(vr.enable_cb());
	EXPECT_EQ(dev.used_event(), 0);
	dev.push_used(0, 1);
	EXPECT_FALSE(vr.enable_cb()) << "a used entry is already there";
	ASSERT_TRUE(vr.get_used());
	EXPECT_EQ(dev.used_event(), 1) << "get_used with callbacks on moves used_event";
	EXPECT_TRUE(need_event(dev.used_event(), 2, 1));
}

TEST(SimVring, FlagsWithoutEventIdx)
{
	test_mem tm(1 << 20);
	vring_driver vr(tm.gm, identity_layout(4), false);
	auto *used_flags = reinterpret_cast<std::uint16_t *>(tm.gm.base + 0x30000);
	auto *avail_flags = reinterpret_cast<std::uint16_t *>(tm.gm.base + 0x20000);
	vring_driver::seg s{0x40000, 64, false};
	vr.add(std::span(&s, 1), 0);
	*used_flags = used_f_no_notify;
	EXPECT_FALSE(vr.kick_prepare());
	vr.add(std::span(&s, 1), 0);
	*used_flags = 0;
	EXPECT_TRUE(vr.kick_prepare());
	vr.disable_cb();
	EXPECT_EQ(*avail_flags, avail_f_no_interrupt);
	EXPECT_TRUE(vr.enable_cb());
	EXPECT_EQ(*avail_flags, 0);
}

TEST(SimVring, HostileUsedEntriesAreCountedNotTrusted)
{
	test_mem tm(1 << 20);
	iommu mmu(tm.gm.size);
	mmu.map(0, 0, tm.gm.size, perm_rw);
	vring_driver vr(tm.gm, identity_layout(8), true);
	fake_device dev{tm.gm, mmu, identity_layout(8), true};
	vring_driver::seg s{0x40000, 64, false};
	auto h = vr.add(std::span(&s, 1), 5);
	vr.kick_prepare();
	dev.push_used(99, 0);  // out of range
	dev.push_used(*h + 1, 0); // not in flight
	dev.push_used(*h, 64);
	dev.push_used(*h, 64); // completed twice
	auto c = vr.get_used();
	ASSERT_TRUE(c);
	EXPECT_EQ(c->token, 5u);
	EXPECT_FALSE(vr.get_used());
	EXPECT_EQ(vr.counters().bad_used, 3u);
	EXPECT_EQ(vr.free_count(), 8);
}

// ---------------------------------------------------------------- traffic

TEST(SimTraffic, FrameRoundTripAndCorruption)
{
	std::vector<std::uint8_t> f(300);
	build_frame(f, 42, 1234);
	frame_info fi{};
	ASSERT_TRUE(parse_frame(f, fi));
	EXPECT_EQ(fi.seq, 42u);
	EXPECT_EQ(fi.tx_ns, 1234u);
	for (std::size_t i : {14ul, 20ul, 27ul, 40ul, 299ul}) {
		auto g = f;
		g[i] ^= 1;
		EXPECT_FALSE(parse_frame(g, fi)) << "flip at " << i;
	}
	EXPECT_FALSE(parse_frame(std::span(f).first(299), fi)) << "truncated";
	EXPECT_THROW(build_frame(std::span(f).first(59), 0, 0), std::invalid_argument);
}

// RFC 1071's example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2; an odd
// tail byte counts as the high byte of a word.
TEST(NetCsum, FoldCompleteVerify)
{
	const std::uint8_t rfc[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
	EXPECT_EQ(vpci::net::csum_fold(rfc, sizeof(rfc)), 0xddf2);
	const std::uint8_t odd[] = {0x12, 0x34, 0x56};
	EXPECT_EQ(vpci::net::csum_fold(odd, sizeof(odd)), 0x1234 + 0x5600);

	std::vector<std::uint8_t> f(301, 0xa5);
	f[20] = 0x12; // the seed (a pseudo-header sum) in the field at 10 + 10
	f[21] = 0x34;
	ASSERT_TRUE(vpci::net::csum_complete(f.data(), f.size(), 10, 10));
	// With the seed added back (what the receiver's pseudo-header does).
	std::uint32_t sum = vpci::net::csum_fold(f.data() + 10, f.size() - 10) + 0x1234u;
	EXPECT_EQ((sum & 0xffff) + (sum >> 16), 0xffffu);
	EXPECT_FALSE(vpci::net::csum_complete(f.data(), f.size(), 10, 290)) << "field past the end";
	EXPECT_FALSE(vpci::net::csum_complete(f.data(), f.size(), 301, 0)) << "start past the end";
	EXPECT_FALSE(vpci::net::csum_field_fits(100, 0xffff, 0xffff));
}

// A --tx-csum frame as the device may return it: still partial, completed
// (the field set back to zero as built), or neither.
TEST(SimTraffic, PartialChecksumPassedOnCompletedOrBad)
{
	std::vector<std::uint8_t> f(200);
	build_frame(f, 7, 1);
	std::uint8_t hdr[net_hdr_size] = {1, 0, 0, 0, 0, 0, csum_start, 0, csum_offset, 0};
	frame_info fi{};
	EXPECT_EQ(take_csum(hdr, f), csum_seen::partial);
	hdr[6]++;
	EXPECT_EQ(take_csum(hdr, f), csum_seen::bad) << "start moved";
	std::memset(hdr, 0, sizeof(hdr));
	EXPECT_EQ(take_csum(hdr, f), csum_seen::bad) << "header emptied, checksum unfinished";
	ASSERT_TRUE(vpci::net::csum_complete(f.data(), f.size(), csum_start, csum_offset));
	auto g = f;
	EXPECT_EQ(take_csum(hdr, f), csum_seen::complete);
	EXPECT_TRUE(parse_frame(f, fi)) << "field set back to zero";
	g[150] ^= 1;
	EXPECT_EQ(take_csum(hdr, g), csum_seen::bad) << "a flipped byte";
}

// --gso frames: TCP/IPv4 as a guest's stack hands them to virtio-net with
// TSO, and what the device may return: whole and still partial, completed,
// or anything else as bad.
TEST(SimTraffic, TcpFramesAsAGuestStackSendsThem)
{
	for (std::size_t size : {tcp_frame_min, gso_frame_max, gso_frame_max + 1, tcp_frame_max}) {
		SCOPED_TRACE(size);
		std::vector<std::uint8_t> f(size);
		build_tcp_frame(f, pair_seq(3, 9), 77);
		std::uint8_t h[net_hdr_size];
		tcp_net_hdr(h, size);
		frame_info fi{};
		ASSERT_TRUE(parse_frame(f, fi));
		EXPECT_EQ(fi.seq, pair_seq(3, 9));
		EXPECT_EQ(frame_pair(f), 3);
		EXPECT_EQ(vpci::net::csum_fold(f.data() + 14, 20), 0xffff) << "IPv4 header checksum";
		const bool gso = size > gso_frame_max;
		EXPECT_EQ(h[1], gso ? 1 : 0);
		auto t = take_tcp(h, f);
		EXPECT_EQ(t.csum, csum_seen::partial);
		EXPECT_EQ(t.gso, gso);

		auto g = f;
		g[tcp_csum_start + tcp_csum_offset] ^= 1;
		EXPECT_EQ(take_tcp(h, g).csum, csum_seen::bad) << "partial field changed";
		auto hb = std::to_array(h);
		hb[1] = gso ? 0 : 1;
		EXPECT_EQ(take_tcp(hb.data(), f).csum, csum_seen::bad) << "GSO type changed";
		hb = std::to_array(h);
		hb[4] = static_cast<std::uint8_t>(hb[4] - 1);
		EXPECT_EQ(take_tcp(hb.data(), f).csum, csum_seen::bad) << "gso_size changed";
		g = f;
		g[14 + 8]--; // TTL
		EXPECT_FALSE(parse_frame(g, fi)) << "IPv4 header changed";
		g = f;
		g[tcp_csum_start + 1] ^= 1; // source port
		EXPECT_FALSE(parse_frame(g, fi)) << "TCP header changed";

		// Completed by the device (a VM1 without GUEST_CSUM), then
		// checked with the pseudo-header and set back to the seed.
		ASSERT_TRUE(vpci::net::csum_complete(f.data(), size, tcp_csum_start, tcp_csum_offset));
		h[0] = 0;
		g = f;
		t = take_tcp(h, f);
		EXPECT_EQ(t.csum, csum_seen::complete);
		EXPECT_TRUE(parse_frame(f, fi)) << "field set back to the seed";
		g[size - 1] ^= 0x10;
		EXPECT_EQ(take_tcp(h, g).csum, csum_seen::bad) << "a flipped byte";
	}
	std::vector<std::uint8_t> f(tcp_frame_max + 1);
	EXPECT_THROW(build_tcp_frame(f, 0, 0), std::invalid_argument);
	EXPECT_THROW(build_tcp_frame(std::span(f).first(tcp_frame_min - 1), 0, 0),
		     std::invalid_argument);
}

// Segments of a TCP frame as Linux's tcp_gso_segment() makes them: the
// headers copied, the IPv4 length, ID and checksum and the TCP sequence
// number per segment, PSH on the last only, each checksum partial.
std::vector<std::vector<std::uint8_t>> segment_tcp(std::span<const std::uint8_t> f)
{
	std::vector<std::vector<std::uint8_t>> out;
	const std::size_t payload = f.size() - tcp_hdrs;
	for (std::size_t off = 0; off < payload; off += gso_mss) {
		const std::size_t n = std::min<std::size_t>(gso_mss, payload - off);
		std::vector<std::uint8_t> s(f.begin(), f.begin() + tcp_hdrs);
		s.insert(s.end(), f.begin() + tcp_hdrs + off, f.begin() + tcp_hdrs + off + n);
		const std::size_t tot = s.size() - 14;
		s[16] = static_cast<std::uint8_t>(tot >> 8);
		s[17] = static_cast<std::uint8_t>(tot);
		s[19] = static_cast<std::uint8_t>(s[19] + out.size());
		s[24] = s[25] = 0;
		const std::uint16_t ipc = static_cast<std::uint16_t>(~vpci::net::csum_fold(&s[14], 20));
		s[24] = static_cast<std::uint8_t>(ipc >> 8);
		s[25] = static_cast<std::uint8_t>(ipc);
		const std::uint32_t seq = (static_cast<std::uint32_t>(s[38]) << 24 | s[39] << 16 |
					   s[40] << 8 | s[41]) + static_cast<std::uint32_t>(off);
		for (int i = 0; i < 4; i++)
			s[38 + i] = static_cast<std::uint8_t>(seq >> (24 - 8 * i));
		if (off + n < payload)
			s[47] &= static_cast<std::uint8_t>(~0x08);
		const std::uint16_t seed = tcp_seed(s.size());
		s[50] = static_cast<std::uint8_t>(seed >> 8);
		s[51] = static_cast<std::uint8_t>(seed);
		out.push_back(std::move(s));
	}
	return out;
}

// --gso without GUEST_TSO4: what a device segmented is put back together
// exactly, and segments out of place are refused, not glued.
TEST(SimTraffic, SegmentsOfATsoFrameReassembled)
{
	std::vector<std::uint8_t> f(tcp_frame_max);
	build_tcp_frame(f, pair_seq(2, 11), 5);
	const std::uint8_t partial[net_hdr_size] = {1, 0, 0, 0, 0, 0, tcp_csum_start, 0,
						    tcp_csum_offset, 0};
	const std::uint8_t none[net_hdr_size] = {};
	auto segs = segment_tcp(f);
	ASSERT_EQ(segs.size(), 46u);
	tcp_reassembler r;
	for (std::size_t i = 0; i + 1 < segs.size(); i++)
		ASSERT_EQ(r.add(partial, segs[i]), tcp_reassembler::result::more) << i;
	ASSERT_EQ(r.add(partial, segs.back()), tcp_reassembler::result::frame);
	ASSERT_EQ(r.frame().size(), f.size());
	EXPECT_EQ(std::memcmp(r.frame().data(), f.data(), f.size()), 0) << "byte for byte";
	EXPECT_EQ(r.partial, 46u);
	EXPECT_EQ(r.bad, 0u);

	// Checksums completed by the device verify and count as such.
	segs = segment_tcp(f);
	for (std::size_t i = 0; i < segs.size(); i++) {
		ASSERT_TRUE(vpci::net::csum_complete(segs[i].data(), segs[i].size(), tcp_csum_start,
						     tcp_csum_offset));
		EXPECT_EQ(r.add(none, segs[i]), i + 1 < segs.size() ? tcp_reassembler::result::more
								     : tcp_reassembler::result::frame);
	}
	EXPECT_EQ(r.complete, 46u);
	EXPECT_EQ(std::memcmp(r.frame().data(), f.data(), f.size()), 0);

	// A lost segment: the next one is out of place; the frame is dropped
	// and the next frame starts clean.
	segs = segment_tcp(f);
	EXPECT_EQ(r.add(partial, segs[0]), tcp_reassembler::result::more);
	EXPECT_EQ(r.add(partial, segs[2]), tcp_reassembler::result::bad);
	EXPECT_EQ(r.add(partial, segs[3]), tcp_reassembler::result::bad) << "no frame in progress";
	std::vector<std::uint8_t> small(1000);
	build_tcp_frame(small, 3, 0);
	auto one = segment_tcp(small);
	ASSERT_EQ(one.size(), 1u);
	EXPECT_EQ(one[0], small) << "a frame of one segment is itself";
	ASSERT_EQ(r.add(partial, one[0]), tcp_reassembler::result::frame);
	frame_info fi{};
	EXPECT_TRUE(parse_frame(r.frame(), fi));
	EXPECT_EQ(fi.seq, 3u);

	// What a segment may not be: with a GSO header, over the MTU, with a
	// wrong checksum, of another flow, with a changed header.
	auto bad = [&](std::vector<std::uint8_t> s, const std::uint8_t *h, const char *what) {
		tcp_reassembler x;
		EXPECT_EQ(x.add(h, s), tcp_reassembler::result::bad) << what;
	};
	std::uint8_t gso[net_hdr_size];
	std::memcpy(gso, partial, net_hdr_size);
	gso[1] = 1;
	bad(segs[0], gso, "GSO header on a segment");
	bad(std::vector<std::uint8_t>(f.begin(), f.begin() + 1515), partial, "over the MTU");
	auto s = segs[0];
	s[51] ^= 1;
	bad(s, partial, "partial field changed");
	bad(segs[0], none, "checksum neither partial nor complete");
	s = segs[0];
	s[14 + 8]--;
	bad(s, partial, "TTL changed");
	s = segs[0];
	s[34 + 3] ^= 1;
	bad(s, partial, "destination port changed");
	// A segment of pair 1's flow in the middle of pair 2's frame.
	std::vector<std::uint8_t> other(tcp_frame_max);
	build_tcp_frame(other, pair_seq(1, 11), 5);
	auto osegs = segment_tcp(other);
	tcp_reassembler x;
	EXPECT_EQ(x.add(partial, segs[0]), tcp_reassembler::result::more);
	EXPECT_EQ(x.add(partial, osegs[1]), tcp_reassembler::result::bad) << "another flow's";
	// A segment of another frame of the same flow, at the right offset.
	std::vector<std::uint8_t> next(tcp_frame_max);
	build_tcp_frame(next, pair_seq(2, 12), 5);
	auto nsegs = segment_tcp(next);
	tcp_reassembler z;
	EXPECT_EQ(z.add(partial, segs[0]), tcp_reassembler::result::more);
	EXPECT_EQ(z.add(partial, nsegs[1]), tcp_reassembler::result::bad) << "another frame's";
	// A frame abandoned half way is counted when the next one starts.
	tcp_reassembler w;
	EXPECT_EQ(w.add(partial, segs[0]), tcp_reassembler::result::more);
	EXPECT_EQ(w.add(partial, segs[1]), tcp_reassembler::result::more);
	EXPECT_EQ(w.add(partial, nsegs[0]), tcp_reassembler::result::more);
	EXPECT_EQ(w.bad, 1u) << "the abandoned frame";
	for (std::size_t i = 1; i < nsegs.size(); i++)
		w.add(partial, nsegs[i]);
	EXPECT_EQ(w.bad, 1u);
	ASSERT_EQ(w.frame().size(), next.size());
	EXPECT_EQ(std::memcmp(w.frame().data(), next.data(), next.size()), 0);
	// A flipped payload byte passes as a segment; the frame's own check fails.
	segs = segment_tcp(f);
	segs[7][100] ^= 1;
	const std::uint16_t seed = tcp_seed(segs[7].size());
	EXPECT_EQ(segs[7][50] << 8 | segs[7][51], seed);
	tcp_reassembler y;
	for (auto &g : segs)
		y.add(partial, g);
	ASSERT_EQ(y.frame().size(), f.size());
	EXPECT_FALSE(parse_frame(y.frame(), fi));
}

TEST(SimTraffic, ValidatorCountsLossReorderDuplicates)
{
	rx_validator v(10);
	auto frame = [](std::uint64_t seq) {
		std::vector<std::uint8_t> f(60);
		build_frame(f, seq, now_ns());
		return f;
	};
	for (std::uint64_t s : {0, 1, 3, 2, 3, 5})
		v.on_frame(frame(s), now_ns());
	std::vector<std::uint8_t> junk(60, 0xab);
	v.on_frame(junk, now_ns());
	v.on_frame(frame(12), now_ns());
	EXPECT_EQ(v.received, 8u);
	EXPECT_EQ(v.unique, 5u);
	EXPECT_EQ(v.duplicates, 1u);
	EXPECT_EQ(v.reordered, 1u);
	EXPECT_EQ(v.corrupt, 1u);
	EXPECT_EQ(v.out_of_range, 1u);
	EXPECT_EQ(v.lost(6), 1u) << "4 missing among 0..5";
	EXPECT_FALSE(v.latency_json().is_null());
	size_picker mixed(60, 1514, 7);
	for (int i = 0; i < 1000; i++) {
		auto n = mixed.next();
		ASSERT_GE(n, 60u);
		ASSERT_LE(n, 1514u);
	}
}

TEST(SimTraffic, EachPairIsItsOwnFlow)
{
	auto frame = [](std::uint64_t seq) {
		std::vector<std::uint8_t> f(60);
		build_frame(f, seq, now_ns());
		return f;
	};
	EXPECT_EQ(pair_seq(0, 7), 7u) << "pair 0 sends what one pair always sent";
	EXPECT_EQ(frame_pair(frame(pair_seq(2, 5))), 2);
	EXPECT_EQ(frame_pair(frame(5)), 0);
	std::vector<std::uint8_t> junk(60, 0xab);
	EXPECT_EQ(frame_pair(junk), -1);
	rx_validator two(10, 2), zero(10);
	for (std::uint64_t s : {0, 1, 2})
		two.on_frame(frame(pair_seq(2, s)), now_ns());
	two.on_frame(frame(pair_seq(1, 3)), now_ns());
	EXPECT_EQ(two.unique, 3u);
	EXPECT_EQ(two.out_of_range, 1u) << "another pair's frame is not this flow's";
	EXPECT_EQ(two.reordered, 0u);
	EXPECT_EQ(two.lost(3), 0u);
	zero.on_frame(frame(pair_seq(2, 0)), now_ns());
	EXPECT_EQ(zero.out_of_range, 1u);
	EXPECT_EQ(zero.unique, 0u);
}

// ---------------------------------------------------------------- VM1 + faults

struct recording_port : iotlb_port {
	void invalidate(const std::vector<iommu_range> &rs) override
	{
		inval.insert(inval.end(), rs.begin(), rs.end());
	}
	void mapped(const iommu_range &r) override { maps.push_back(r); }
	std::vector<iommu_range> inval, maps;
};

struct vm1_fixture {
	explicit vm1_fixture(iova_policy p, std::uint16_t num = 16, bool gso = false)
		: tm(min_ram_size(num)), vm(tm.gm, cfg(p, num, gso), port),
		  rxdev{tm.gm, vm.mmu, vm.layout(rxq), true}, txdev{tm.gm, vm.mmu, vm.layout(txq), true}
	{
		vm.map_static();
	}
	static vm1_config cfg(iova_policy p, std::uint16_t num, bool gso = false)
	{
		vm1_config c;
		c.policy = p;
		c.ring_size = num;
		c.gso = gso;
		return c;
	}
	test_mem tm;
	recording_port port;
	vm1 vm;
	fake_device rxdev, txdev;
};

TEST(SimVm1, TransientMapsBeforePostAndInvalidatesAfterUse)
{
	vm1_fixture f(iova_policy::transient);
	EXPECT_EQ(f.vm.mmu.ranges().size(), 2u) << "only the two rings";
	ASSERT_TRUE(f.vm.send(0, 100, now_ns()));
	f.vm.tx.kick_prepare();
	std::vector<vring_desc> d;
	std::uint16_t head;
	ASSERT_EQ(f.txdev.pop(d, &head), "");
	EXPECT_GE(d[0].addr, iova_offset) << "device sees IOVAs, not GPAs";
	EXPECT_EQ(f.port.maps.back().perm, perm_ro);
	frame_info fi;
	EXPECT_TRUE(parse_frame({f.txdev.buf(d[0], perm_ro) + net_hdr_size, 100}, fi));
	EXPECT_FALSE(f.vm.mmu.translate(d[0].addr, d[0].len, perm_wo)) << "TX buffers are RO";
	f.txdev.push_used(head, 0);
	f.vm.complete_tx(*f.vm.tx.get_used());
	ASSERT_EQ(f.port.inval.size(), 1u);
	EXPECT_EQ(f.port.inval[0].iova, d[0].addr & ~(P - 1));
	EXPECT_FALSE(f.vm.mmu.translate(d[0].addr, 1, perm_ro)) << "unmapped after use";

	// RX: the device writes a frame with num_buffers 1; the VM reads it back.
	ASSERT_EQ(f.vm.fill_rx(), 15u) << "one descriptor kept for fault scenarios";
	f.vm.rx.kick_prepare();
	ASSERT_EQ(f.rxdev.pop(d, &head), "");
	std::uint8_t *b = f.rxdev.buf(d[0], perm_wo);
	std::memset(b, 0, net_hdr_size);
	b[10] = 1;
	build_frame({b + net_hdr_size, 60}, 3, now_ns());
	f.rxdev.push_used(head, 72);
	auto c = f.vm.rx.get_used();
	ASSERT_TRUE(c);
	auto data = f.vm.complete_rx(*c);
	ASSERT_EQ(data.size(), 72u);
	EXPECT_TRUE(parse_frame(data.subspan(net_hdr_size), fi));
	EXPECT_EQ(fi.seq, 3u);
}

// A TSO frame is one chain of 4 KiB TX slots, each its own descriptor and
// (transient) its own mapping; completing it frees and unmaps them all.
TEST(SimVm1, TsoFrameIsOneChainOfSlots)
{
	vm1_fixture f(iova_policy::transient, 32, true);
	const std::size_t total = net_hdr_size + tcp_frame_max, ndesc = (total + P - 1) / P;
	ASSERT_EQ(ndesc, 17u);
	ASSERT_TRUE(f.vm.send(5, tcp_frame_max, now_ns()));
	EXPECT_FALSE(f.vm.send(6, tcp_frame_max, now_ns())) << "15 slots left of 32";
	ASSERT_TRUE(f.vm.send(6, 1000, now_ns())) << "a short frame still fits";
	f.vm.tx.kick_prepare();
	std::vector<vring_desc> d;
	std::uint16_t head;
	ASSERT_EQ(f.txdev.pop(d, &head), "");
	ASSERT_EQ(d.size(), ndesc);
	std::vector<std::uint8_t> bytes;
	for (const auto &x : d) {
		EXPECT_FALSE(x.flags & desc_f_write);
		const std::uint8_t *b = f.txdev.buf(x, perm_ro);
		bytes.insert(bytes.end(), b, b + x.len);
	}
	ASSERT_EQ(bytes.size(), total);
	std::uint8_t want[net_hdr_size];
	tcp_net_hdr(want, tcp_frame_max);
	EXPECT_EQ(std::memcmp(bytes.data(), want, net_hdr_size), 0);
	frame_info fi{};
	ASSERT_TRUE(parse_frame(std::span(bytes).subspan(net_hdr_size), fi));
	EXPECT_EQ(fi.seq, 5u);
	f.txdev.push_used(head, 0);
	const std::size_t inval0 = f.port.inval.size();
	f.vm.complete_tx(*f.vm.tx.get_used());
	EXPECT_EQ(f.port.inval.size() - inval0, ndesc) << "each slot unmapped";
	EXPECT_TRUE(f.vm.send(7, tcp_frame_max, now_ns())) << "the slots are free again";

	vm1_fixture plain(iova_policy::identity, 32);
	EXPECT_THROW(plain.vm.send(1, 5000, now_ns()), std::invalid_argument)
		<< "only --gso frames span slots";
}

TEST(SimVm1, IdentityAndStaticPoolMappings)
{
	vm1_fixture id(iova_policy::identity);
	EXPECT_EQ(id.vm.mmu.pages(), id.tm.gm.size / P);
	EXPECT_EQ(id.vm.layout(txq).desc_iova, id.vm.layout(txq).desc_gpa);
	vm1_fixture pool(iova_policy::static_pool);
	ASSERT_TRUE(pool.vm.send(0, 60, 0));
	pool.vm.tx.kick_prepare();
	std::vector<vring_desc> d;
	EXPECT_EQ(pool.txdev.pop(d), "");
	EXPECT_EQ(pool.port.inval.size(), 0u);
	EXPECT_EQ(pool.vm.mmu.ranges().size(), 4u) << "two rings, two pools";
}

/** Expected device-side verdict for each fault (data-driven). */
const std::map<std::string, std::string> verdicts = {
	{"unmapped-iova", "unmapped"},	 {"readonly-rx", "readonly"},
	{"straddle", "straddle"},	 {"wrap", "wrap"},
	{"zero-len", "zero-len"},	 {"past-memory", "past-memory"},
	{"runt", "runt"},
	{"chain-loop", "chain-too-long"}, {"chain-too-long", "chain-too-long"},
	{"avail-jump", "avail-jump"},	 {"head-out-of-range", "head-out-of-range"},
	{"unmap-in-flight", "unmapped"}, {"post-after-unmap", "unmapped"},
	{"ring-unmapped", "ring-unmapped"},
	{"double-post", "double-post"},
	{"miss-after-unmap", "empty"},
	// Valid descriptors: only the header or the length inside is wrong.
	{"gso-size-zero", ""},
	{"oversize-no-gso", ""},
};

class SimFault : public ::testing::TestWithParam<test::fault_param> {};

TEST_P(SimFault, DeviceSeesTheHostileDescriptor)
{
	const auto &[name, policy] = GetParam();
	vm1_fixture f(policy);
	// Warm-up: one good frame each way, consumed and completed.
	ASSERT_TRUE(f.vm.send(0, 60, 0));
	f.vm.tx.kick_prepare();
	std::vector<vring_desc> d;
	std::uint16_t head = 0;
	ASSERT_EQ(f.txdev.pop(d, &head), "");
	f.txdev.push_used(head, 0);
	f.vm.complete_tx(*f.vm.tx.get_used());
	f.vm.fill_rx();
	f.vm.rx.kick_prepare();
	for (int i = 0; i < 15; i++)
		ASSERT_EQ(f.rxdev.pop(d), "");
	ASSERT_EQ(f.rxdev.pop(d), "empty") << "one RX descriptor kept free";
	const std::size_t inval_before = f.port.inval.size();

	auto rep = f.vm.inject(name);
	fake_device &dev = rep.queue == rxq ? f.rxdev : f.txdev;
	(rep.queue == rxq ? f.vm.rx : f.vm.tx).kick_prepare();
	std::string verdict = dev.pop(d, &head);
	if (name == "double-post") {
		ASSERT_EQ(verdict, "");
		std::uint16_t again;
		ASSERT_EQ(dev.pop(d, &again), "");
		verdict = again == head ? "double-post" : "distinct";
	}
	EXPECT_EQ(verdict, verdicts.at(name)) << rep.detail;
	if (name == "unmap-in-flight" || name == "post-after-unmap" || name == "ring-unmapped") {
		EXPECT_GT(f.port.inval.size(), inval_before) << "the device was told";
	}
	if (name == "miss-after-unmap") {
		EXPECT_GT(f.port.inval.size(), inval_before) << "posted RX buffers invalidated";
		const std::uint64_t page = f.vm.dev_addr(f.vm.slot_gpa(rxq, 3));
		ASSERT_TRUE(f.vm.mmu.lookup(page)) << "and mapped again";
		EXPECT_TRUE(f.vm.on_miss(f.vm.dev_addr(f.vm.slot_gpa(txq, 0)))) << "RX pages only";
		const std::size_t n = f.port.inval.size();
		EXPECT_FALSE(f.vm.on_miss(page + 100)) << "the first miss goes unanswered";
		EXPECT_EQ(f.port.inval.size(), n + 1) << "after an invalidation of its page";
		EXPECT_TRUE(f.vm.mmu.lookup(page)) << "which is mapped again";
		EXPECT_TRUE(f.vm.on_miss(page + 100)) << "once";
		EXPECT_EQ(f.vm.misses_left_unanswered, 1u);
	}
	if (name == "ring-unmapped") {
		f.vm.repair(rep);
		EXPECT_EQ(dev.pop(d), "empty") << "ring readable again";
	}
	EXPECT_FALSE(rep.to_json().is_null());
}

INSTANTIATE_TEST_SUITE_P(All, SimFault, ::testing::ValuesIn(test::fault_params()),
			 [](const auto &pi) { return test::fault_param_name(pi.param); });

TEST(SimFaults, TableIsCompleteAndUnknownRejected)
{
	EXPECT_EQ(faults().size(), verdicts.size());
	for (const auto &fi : faults())
		EXPECT_TRUE(verdicts.count(fi.name)) << fi.name;
	vm1_fixture f(iova_policy::identity);
	EXPECT_THROW(f.vm.inject("no-such-fault"), std::invalid_argument);
}

// ---------------------------------------------------------------- front-end vs backend

/** The in-process backend wired with @p Pairs queue pairs (--queues) over @p RamMiB. */
template <std::uint16_t Pairs, std::uint64_t RamMiB> class frontend_backend : public ::testing::Test {
protected:
	static backend_config config(const test::temp_dir &d)
	{
		backend_config c;
		c.ivshmem_socket = d.path("ivs.sock");
		c.mem_file = d.path("mem");
		c.ram_size = RamMiB << 20;
		c.vhost_user_socket = d.path("vu.sock");
		c.inval_timeout_ms = 500;
		c.ctrl.max_queue_pairs = Pairs;
		return c;
	}
	void SetUp() override
	{
		loop_ = std::thread([this] {
			while (!stop_.load())
				be_.run_once(2);
		});
	}
	void TearDown() override
	{
		stop_ = true;
		loop_.join();
	}
	void stop_loop()
	{
		stop_ = true;
		loop_.join();
		loop_ = std::thread([] {});
	}
	vpci_ctrl &ctrl() { return be_.control().raw(); }

	test::temp_dir dir_;
	backend be_{config(dir_)};
	std::atomic<bool> stop_{false};
	std::thread loop_;
};

class SimFrontendBackend : public frontend_backend<1, 4> {};
/** vpci-backend --queues 4. */
class SimFrontendBackendMq : public frontend_backend<4, 8> {};

TEST_F(SimFrontendBackend, NegotiatesSetsUpRingsAndServesMisses)
{
	const std::uint64_t ram = 4 << 20;
	unique_fd memfd(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_TRUE(memfd);
	mmap_area area = mmap_area::map_shared(memfd.get(), ram, 0, true);
	guest_mem gm{static_cast<std::uint8_t *>(area.data()), ram};
	recording_port port;
	vm1_config vc;
	vc.policy = iova_policy::static_pool;
	vc.ring_size = 64;
	vm1 vm(gm, vc, port);
	vm.map_static();

	vu_frontend fe(vu_frontend::connect(dir_.path("vu.sock"), 2000), vm.mmu, 1000);
	const std::uint64_t f = fe.negotiate(bit(vf::version_1) | bit(vf::access_platform) |
						     bit(vf::event_idx) | bit(vf::mrg_rxbuf) |
						     bit(vf::csum) | bit(vf::mac),
					     bit(vf::version_1));
	EXPECT_EQ(f, bit(vf::version_1) | bit(vf::access_platform) | bit(vf::event_idx) |
			     bit(vf::mrg_rxbuf) | bit(vf::csum))
		<< "MAC is not offered by the backend, so not acked";
	EXPECT_EQ(fe.protocol_features(), bit(vu::pf::reply_ack) | bit(vu::pf::slave_req));
	EXPECT_GE(fe.channel_fd(), 0);
	fe.set_mem_table({memfd.get(), ram, reinterpret_cast<std::uint64_t>(area.data())});
	unique_fd kick = make_eventfd(), call = make_eventfd();
	for (unsigned q : {rxq, txq}) {
		const auto &l = vm.layout(q);
		fe.setup_vring(q, l.num, l.desc_iova, l.avail_iova, l.used_iova, kick.get(),
			       call.get());
		fe.enable_vring(q, true);
	}
	// Unbound driver: invalidations are acked at once by the backend.
	fe.invalidate({{iova_offset + vm.spare_gpa(0), P, vm.spare_gpa(0), perm_rw}});
	EXPECT_EQ(fe.stats().acks, 1u);

	// Play VM2's driver: bind, then report misses for a mapped ring page
	// and an unmapped IOVA.
	le_store(ctrl().driver.device_features, default_device_features);
	le_store(ctrl().driver.status, VPCI_DS_BOUND, std::memory_order_release);
	eventfd_signal(be_.ivshmem().doorbell_fd(VPCI_VEC_CONFIG));
	std::this_thread::sleep_for(std::chrono::milliseconds(50));
	auto &d2b = ctrl().d2b;
	std::uint32_t p = le_load(d2b.prod);
	for (std::uint64_t iova : {vm.layout(txq).used_iova + 8, unmapped_iova}) {
		vpci_msg m{};
		m.type = VPCI_MSG_IOTLB_MISS;
		m.perm = VPCI_PERM_RW;
		m.queue = htole16(1);
		m.iova = htole64(iova);
		m.size = htole64(1);
		d2b.ent[p++ % VPCI_MSG_RING_SIZE] = m;
	}
	le_store(d2b.prod, p, std::memory_order_release);
	eventfd_signal(be_.ivshmem().doorbell_fd(VPCI_VEC_CONFIG));
	for (int i = 0; i < 100 && fe.stats().misses < 2; i++) {
		fe.service();
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	EXPECT_EQ(fe.stats().misses, 2u);
	EXPECT_EQ(fe.stats().misses_unanswered, 1u) << "an unmapped IOVA gets no answer";
	EXPECT_EQ(fe.stats().updates, 1u);
	stop_loop();

	EXPECT_EQ(le_load(ctrl().vq_config[txq].desc), vm.layout(txq).desc_iova);
	EXPECT_EQ(le_load(ctrl().vq_config[rxq].num), 64);
	EXPECT_EQ(le_load(ctrl().vq_config[txq].enabled), 1);
	EXPECT_TRUE(le_load(ctrl().backend.status) & VPCI_BS_IOMMU);
	// The backend turned our UPDATE into a b2d message: the ring page's
	// BAR offset is its GPA (RAM starts at file offset 0).
	bool found = false;
	auto &b2d = ctrl().b2d;
	for (std::uint32_t c = le_load(b2d.cons), e = le_load(b2d.prod); c != e; c++) {
		const vpci_msg &m = b2d.ent[c % VPCI_MSG_RING_SIZE];
		if (m.type == VPCI_MSG_IOTLB_UPDATE &&
		    le64toh(m.iova) == (vm.layout(txq).used_iova & ~(P - 1))) {
			EXPECT_EQ(le64toh(m.bar_offset), vm.layout(txq).used_gpa & ~(P - 1));
			EXPECT_EQ(m.perm, VPCI_PERM_RW);
			found = true;
		}
	}
	EXPECT_TRUE(found) << "UPDATE for the missed ring page reached the driver";
}

TEST_F(SimFrontendBackend, RefusalIsAnErrorNamingTheRequest)
{
	recording_port port;
	iommu mmu(1 << 20);
	vu_frontend fe(vu_frontend::connect(dir_.path("vu.sock"), 2000), mmu, 1000);
	fe.negotiate(bit(vf::version_1) | bit(vf::access_platform), bit(vf::version_1));
	// A memfd is not the backend's memory file: SET_MEM_TABLE is refused.
	unique_fd other(::memfd_create("other", MFD_CLOEXEC));
	ASSERT_EQ(::ftruncate(other.get(), 1 << 20), 0);
	try {
		fe.set_mem_table({other.get(), 1 << 20, 0x7f0000000000ULL});
		FAIL() << "no exception";
	} catch (const std::runtime_error &e) {
		EXPECT_NE(std::string(e.what()).find("VHOST_USER_SET_MEM_TABLE"), std::string::npos)
			<< e.what();
	}
	EXPECT_THROW(vu_frontend::connect(dir_.path("nope.sock"), 50), std::system_error);
}

// ---------------------------------------------------------------- queue pairs

static_assert(max_queue_pairs == VPCI_MAX_QUEUE_PAIRS,
	      "vpci-sim offers as many pairs as the control area describes");
static_assert(2 * max_queue_pairs <= vu::max_rings);

/** vpci-sim's command line as the tool parses it. */
struct cli_parse {
	CLI::App app{"vpci-sim"};
	cli_options o;
	cli_parse() { add_cli_options(app, o); }
	/** Parse and finish; "" or the CLI11 error's message. */
	std::string operator()(std::vector<std::string> args)
	{
		std::reverse(args.begin(), args.end());
		try {
			app.parse(args);
			finish_cli_options(o);
		} catch (const CLI::Error &e) {
			return e.what();
		}
		return "";
	}
};

TEST(SimCli, QueuePairsDefaultToOne)
{
	cli_parse p;
	EXPECT_EQ(p({"-s", "x"}), "");
	EXPECT_EQ(p.o.run.queue_pairs, 1u);
	EXPECT_EQ(p.o.run.fault_pair, 0u);
	cli_parse q;
	EXPECT_EQ(q({"-s", "x", "--queue-pairs", "4", "--fault", "avail-jump", "--fault-pair", "2"}),
		  "");
	EXPECT_EQ(q.o.run.queue_pairs, 4u);
	EXPECT_EQ(q.o.run.fault_pair, 2u);
	EXPECT_EQ(q.o.run.fault, "avail-jump");
	cli_parse r;
	EXPECT_EQ(r({"-s", "x", "--queue-pairs", "8", "--ring-size", "128"}), "")
		<< "8 pairs of 128 fit 16 MiB";
}

TEST(SimCli, QueuePairOptionsAreChecked)
{
	auto has = [](const std::string &msg, const std::string &part) {
		return msg.find(part) != std::string::npos;
	};
	for (const char *n : {"0", "9", "-1", "two"}) {
		const std::string e = cli_parse()({"-s", "x", "--queue-pairs", n});
		EXPECT_TRUE(has(e, "--queue-pairs")) << n << ": " << e;
	}
	std::string e = cli_parse()({"-s", "x", "--queue-pairs", "2", "--fault-pair", "1"});
	EXPECT_TRUE(has(e, "--fault-pair") && has(e, "--fault")) << "needs --fault: " << e;
	e = cli_parse()({"-s", "x", "--queue-pairs", "2", "--fault", "wrap", "--fault-pair", "2"});
	EXPECT_TRUE(has(e, "--fault-pair: 2 is not a queue pair of --queue-pairs 2")) << e;
	e = cli_parse()({"-s", "x", "--fault", "wrap", "--fault-pair", "1"});
	EXPECT_TRUE(has(e, "--fault-pair: 1 is not a queue pair of --queue-pairs 1")) << e;
	e = cli_parse()({"-s", "x", "--fault", "wrap", "--fault-pair", "8"});
	EXPECT_TRUE(has(e, "--fault-pair")) << e;
	e = cli_parse()({"-s", "x", "--queue-pairs", "8"});
	EXPECT_TRUE(has(e, "--ram-size: 8 queue pairs of ring size 256 need at least")) << e;
	EXPECT_EQ(cli_parse()({"-s", "x", "--queue-pairs", "8", "--ram-size", "32M"}), "");
}

TEST(SimCli, GsoOptionsAreChecked)
{
	auto has = [](const std::string &msg, const std::string &part) {
		return msg.find(part) != std::string::npos;
	};
	EXPECT_EQ(cli_parse()({"-s", "x", "--gso", "--size", "80-65535"}), "");
	EXPECT_EQ(cli_parse()({"-s", "x", "--gso", "--no-guest-tso", "--size", "80"}), "");
	std::string e = cli_parse()({"-s", "x", "--gso"});
	EXPECT_TRUE(has(e, "--size: 80..65535 with --gso")) << "60 is too short a TCP frame: " << e;
	e = cli_parse()({"-s", "x", "--gso", "--size", "80-65536"});
	EXPECT_TRUE(has(e, "--size: 80..65535")) << e;
	e = cli_parse()({"-s", "x", "--size", "5000"});
	EXPECT_TRUE(has(e, "--size: 60..4084")) << "only --gso frames span buffers: " << e;
	e = cli_parse()({"-s", "x", "--no-guest-tso"});
	EXPECT_TRUE(has(e, "--no-guest-tso requires --gso")) << e;
	for (const char *o : {"--tx-csum", "--no-guest-csum", "--no-mrg-rxbuf"}) {
		e = cli_parse()({"-s", "x", "--gso", "--size", "100", o});
		EXPECT_TRUE(has(e, "excludes") && has(e, "--gso") && has(e, o)) << o << ": " << e;
	}
	e = cli_parse()({"-s", "x", "--gso", "--size", "80-65535", "--ring-size", "16"});
	EXPECT_TRUE(has(e, "takes 17 TX descriptors")) << "a 16-entry ring cannot hold a chain: " << e;
	EXPECT_EQ(cli_parse()({"-s", "x", "--gso", "--size", "80-65535", "--ring-size", "32"}), "");
	e = cli_parse()({"-s", "x", "--gso", "--size", "80-65535", "--rx-buf-size", "512"});
	EXPECT_TRUE(has(e, "129 RX buffers")) << "over 64 buffers a frame: " << e;
	for (const char *v : {"abc", "60-", "-60", "60x", "99999999999"}) {
		e = cli_parse()({"-s", "x", "--size", v});
		EXPECT_TRUE(has(e, "--size")) << v << ": " << e;
	}
}

// Each option's own check fails while parsing, naming the option.
TEST(SimCli, BadValuesFailAtParse)
{
	const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
		{{}, "--socket is required"},
		{{"-s", "x", "--iommu-policy", "none"}, "--iommu-policy"},
		{{"-s", "x", "--rx-perm", "ro"}, "--rx-perm"},
		{{"-s", "x", "--direction", "up"}, "--direction"},
		{{"-s", "x", "--mode", "hybrid"}, "--mode"},
		{{"-s", "x", "--ring-size", "100"}, "--ring-size: a power of two up to 1024"},
		{{"-s", "x", "--ring-size", "2048"}, "--ring-size: a power of two up to 1024"},
		{{"-s", "x", "--ring-size", "0"}, "--ring-size: a power of two up to 1024"},
		{{"-s", "x", "--fault", "nope"}, "--fault: unknown (see --list-faults)"},
		{{"-s", "x", "--size", "100-60"}, "--size: 100 is more than 60"},
		{{"-s", "x", "--size", "6x"}, "--size: '6x' is not a number"},
		// Whole decimal numbers only: no sign, no blanks, no wrap.
		{{"-s", "x", "--size", "+100"}, "--size: '+100' is not a number"},
		{{"-s", "x", "--size", " 100"}, "--size: ' 100' is not a number"},
		{{"-s", "x", "--size", "60-+100"}, "--size: '+100' is not a number"},
		{{"-s", "x", "--size", "4294967396"}, "--size: '4294967396' is not a number"},
		{{"-s", "x", "--size", "0x40"}, "--size: '0x40' is not a number"},
	};
	for (const auto &[args, want] : bad) {
		CLI::App app;
		cli_options o;
		add_cli_options(app, o);
		std::vector<std::string> rev(args.rbegin(), args.rend());
		std::string e;
		try {
			app.parse(rev);
		} catch (const CLI::ParseError &x) {
			e = x.what();
		}
		EXPECT_NE(e.find(want), std::string::npos) << want << ": got '" << e << "'";
	}
	// CLI::Success: the list printed, the tool exits 0.
	EXPECT_NE(cli_parse()({"--list-faults"}).find("Success"), std::string::npos)
		<< "--list-faults needs no --socket";
}

// Every distinct vpci-sim command line of selftests/sim/*.sh, scripts/
// (sim-dpdk.sh, sim-dpdk-faults.sh, bench-host.sh) and
// tests/test_hostdp.cpp, with the values those scripts use: all must
// still parse.
TEST(SimCli, CommandLinesOfTheScriptsParse)
{
	// selftests/sim/lib_sim.sh sim_args, selftests/topologies/vm2sim.json
	const std::vector<std::string> base = {"-s", "/run/vhost-user.sock", "--mem-file",
					       "/run/vm1.mem", "--ram-size", "16M", "-q"};
	const std::vector<std::vector<std::string>> lines = {
		// early_ack.sh
		{"--iommu-policy", "identity", "--mode", "interrupt", "--direction", "both", "--size",
		 "60-1514", "--rate", "5000", "--connect-wait-ms", "5000", "--json", "j", "-n", "1000",
		 "--drain-ms", "8000", "--fault", "post-after-unmap"},
		{"--iommu-policy", "identity", "--mode", "interrupt", "--direction", "both", "--size",
		 "60-1514", "--rate", "5000", "--connect-wait-ms", "5000", "--json", "j", "-n", "1000",
		 "--drain-ms", "8000"},
		// faults.sh sim_cmd, with and without a fault
		{"--iommu-policy", "transient", "--mode", "interrupt", "--direction", "both", "--size",
		 "60-1514", "--rate", "5000", "--connect-wait-ms", "5000", "--watchdog-s", "50",
		 "--json", "j", "-n", "400", "--fault", "wrap", "--drain-ms", "4000"},
		{"--iommu-policy", "static-pool", "--mode", "interrupt", "--direction", "both", "--size",
		 "60-1514", "--rate", "5000", "--connect-wait-ms", "5000", "--watchdog-s", "50",
		 "--json", "j", "-n", "400", "--drain-ms", "3000"},
		// gso.sh
		{"--iommu-policy", "transient", "--mode", "interrupt", "--direction", "both", "-n",
		 "300", "--gso", "--size", "80-65535", "--drain-ms", "5000", "--connect-wait-ms", "5000",
		 "--json", "j"},
		{"--iommu-policy", "identity", "--mode", "interrupt", "--direction", "both", "-n",
		 "800", "--gso", "--size", "80-65535", "--drain-ms", "5000", "--connect-wait-ms", "5000",
		 "--json", "j", "--no-guest-tso"},
		{"--iommu-policy", "identity", "--mode", "interrupt", "--direction", "both", "-n",
		 "600", "--gso", "--size", "80-65535", "--fault", "gso-size-zero", "--drain-ms", "5000",
		 "--connect-wait-ms", "5000", "--json", "j"},
		// iotlb.sh
		{"--iommu-policy", "static-pool", "--iotlb-push", "--push-pages", "--extra-mappings",
		 "3000", "--mode", "interrupt", "--direction", "both", "-n", "8000", "--size", "60-1514",
		 "--rate", "1000", "--drain-ms", "3000", "--connect-wait-ms", "5000", "--json", "j"},
		// iotlb_evict.sh
		{"--iommu-policy", "static-pool", "--mode", "interrupt", "--direction", "both", "-n",
		 "8000", "--size", "60-1514", "--rate", "1000", "--drain-ms", "4000",
		 "--connect-wait-ms", "5000", "--watchdog-s", "120", "--json", "j"},
		// multiqueue.sh start_sim: clean, fault, again
		{"--queue-pairs", "4", "--iommu-policy", "identity", "--mode", "interrupt",
		 "--direction", "both", "--size", "60-1514", "--rate", "2000", "--connect-wait-ms",
		 "5000", "--watchdog-s", "25", "--json", "j", "-n", "4000", "--drain-ms", "3000"},
		{"--queue-pairs", "4", "--iommu-policy", "identity", "--mode", "interrupt",
		 "--direction", "both", "--size", "60-1514", "--rate", "2000", "--connect-wait-ms",
		 "5000", "--watchdog-s", "25", "--json", "j", "-n", "4000", "--drain-ms", "2000",
		 "--fault", "avail-jump", "--fault-pair", "2"},
		// reconnect.sh
		{"--iommu-policy", "identity", "--mode", "interrupt", "--direction", "both", "--size",
		 "60-1514", "--connect-wait-ms", "5000", "--watchdog-s", "30", "--json", "j", "-n",
		 "2000", "--rate", "1000"},
		// ro_window.sh
		{"--iommu-policy", "static-pool", "--iotlb-push", "--extra-mappings", "16", "--mode",
		 "interrupt", "--direction", "both", "-n", "4000", "--size", "60-1514", "--rate", "200",
		 "--drain-ms", "15000", "--connect-wait-ms", "5000", "--json", "j"},
		// rx_buffers.sh
		{"--iommu-policy", "transient", "--mode", "interrupt", "--direction", "both", "-n",
		 "2000", "--size", "60-1514", "--rx-buf-size", "1024", "--rate", "2000", "--drain-ms",
		 "3000", "--connect-wait-ms", "5000", "--json", "j"},
		{"--iommu-policy", "identity", "--mode", "interrupt", "--direction", "both", "-n", "1",
		 "--size", "1000", "--rx-buf-size", "256", "--rx-buf-limit", "2", "--drain-ms", "6000",
		 "--connect-wait-ms", "5000", "--json", "j"},
		// traffic.sh sim_cmd
		{"--iommu-policy", "static-pool", "--mode", "interrupt", "--direction", "both", "-n",
		 "100000", "--size", "60-1514", "--rate", "20000", "--drain-ms", "3000",
		 "--connect-wait-ms", "5000", "--json", "j"},
	};
	for (const auto &l : lines) {
		std::vector<std::string> args = base;
		args.insert(args.end(), l.begin(), l.end());
		EXPECT_EQ(cli_parse()(args), "") << ::testing::PrintToString(l);
	}
	// scripts/sim-dpdk.sh's runs and sim-dpdk-faults.sh, bench-host.sh
	// and tests/test_hostdp.cpp: "-q -s SOCK" and a memfd.
	const std::vector<std::vector<std::string>> host = {
		{"--iommu-policy", "identity", "-n", "50000"},
		{"--iommu-policy", "identity", "-n", "20000", "--size", "60-1514", "--mode", "interrupt",
		 "--no-event-idx"},
		{"--iommu-policy", "static-pool", "--iotlb-push", "-n", "20000", "--size", "60-1514"},
		{"--iommu-policy", "transient", "--iotlb-push", "-n", "3000"},
		{"--iommu-policy", "transient", "--iotlb-push", "-n", "3000", "--mode", "interrupt",
		 "--size", "1514"},
		{"-n", "2000", "--drain-ms", "500", "--fault", "wrap"},
		{"--size", "64", "--duration", "3", "-n", "1000000000", "--iommu-policy", "static-pool",
		 "--iotlb-push", "--push-pages", "--extra-mappings", "1400"},
		{"--size", "1500", "--duration", "3", "-n", "1000000000", "--iommu-policy",
		 "transient", "--iotlb-push"},
		{"--iommu-policy", "identity", "-n", "30000", "--size", "60-4084"},
		{"--iommu-policy", "identity", "-n", "3000", "--size", "60-1514", "--tx-csum",
		 "--no-guest-csum"},
		{"--iommu-policy", "static-pool", "--iotlb-push", "--push-pages", "--extra-mappings",
		 "1500", "-n", "20000", "--no-event-idx"},
		{"--iommu-policy", "static-pool", "-n", "20000", "--mode", "interrupt", "--ring-size",
		 "1024"},
		{"-n", "20000", "--window", "100000", "--drain-ms", "300"},
	};
	for (const auto &l : host) {
		std::vector<std::string> args = {"-q", "-s", "/tmp/vh.sock", "--json", "j"};
		args.insert(args.end(), l.begin(), l.end());
		EXPECT_EQ(cli_parse()(args), "") << ::testing::PrintToString(l);
	}
	for (const fault_info &f : faults()) {
		std::vector<std::string> args = {"-q", "-s", "x", "--fault", f.name, "-n", "600",
						 "--drain-ms", "500"};
		EXPECT_EQ(cli_parse()(args), "") << f.name;
	}
}

TEST(SimVm1, OnePairKeepsItsLayout)
{
	vm1_fixture f(iova_policy::identity, 256);
	EXPECT_EQ(f.vm.ring_gpa(rxq), 0x10000u);
	EXPECT_EQ(f.vm.ring_gpa(txq), 0x30000u);
	EXPECT_EQ(f.vm.slot_gpa(rxq, 0), 0x100000u);
	EXPECT_EQ(f.vm.slot_gpa(txq, 0), 0x100000u + 256 * P);
	EXPECT_EQ(f.vm.spare_gpa(0), 0x100000u + 512 * P);
	EXPECT_EQ(min_ram_size(256, 1), min_ram_size(256));
	EXPECT_EQ(pair_buf_gpa(256, 1, 0), buf_base_gpa);
	EXPECT_THROW(pair_buf_gpa(256, 9, 0), std::invalid_argument);
	EXPECT_THROW(pair_buf_gpa(256, 2, 2), std::invalid_argument);
}

/** VM1 with @p n pairs over one RAM and one IOMMU, and a loopback device per pair. */
struct pairs_fixture {
	pairs_fixture(iova_policy pol, unsigned n, std::uint16_t num = 16)
		: tm(min_ram_size(num, n)), mmu(tm.gm.size)
	{
		for (unsigned p = 0; p < n; p++) {
			vm1_config c = vm1_fixture::cfg(pol, num);
			c.pairs = n;
			c.pair = p;
			vms.push_back(std::make_unique<vm1>(tm.gm, c, port, mmu));
		}
		for (auto &v : vms)
			v->paint_canaries();
		for (auto &v : vms) {
			v->map_static();
			rx.push_back({tm.gm, mmu, v->layout(rxq), true});
			tx.push_back({tm.gm, mmu, v->layout(txq), true});
		}
	}
	/**
	 * Pair @p p's device: every TX chain into an RX buffer of the same
	 * pair.  Returns the first problem a chain had, "" if none.
	 */
	std::string loop(unsigned p)
	{
		std::vector<vring_desc> d, r;
		std::uint16_t head, rhead;
		for (;;) {
			const std::string e = tx[p].pop(d, &head);
			if (e == "empty")
				return "";
			if (!e.empty())
				return e;
			if (rx[p].pop(r, &rhead) != "")
				return "no-rx-buffer";
			const std::uint8_t *src = tx[p].buf(d[0], perm_ro);
			std::memcpy(rx[p].buf(r[0], perm_wo), src, d[0].len);
			tx[p].push_used(head, 0);
			rx[p].push_used(rhead, d[0].len);
		}
	}
	test_mem tm;
	recording_port port;
	iommu mmu;
	std::vector<std::unique_ptr<vm1>> vms;
	std::vector<fake_device> rx, tx;
};

TEST(SimVm1, PairsShareRamAndIommuButNothingElse)
{
	pairs_fixture f(iova_policy::static_pool, 4, 256);
	std::vector<std::pair<std::uint64_t, std::uint64_t>> used; // [start, end) of each area
	for (unsigned p = 0; p < 4; p++) {
		const vm1 &v = *f.vms[p];
		for (unsigned q : {rxq, txq}) {
			EXPECT_EQ(v.ring_gpa(q), ring_base_gpa + (2 * p + q) * ring_stride)
				<< "ring " << 2 * p + q;
			EXPECT_EQ(v.layout(q).desc_gpa, v.ring_gpa(q));
			used.push_back({v.ring_gpa(q), v.ring_gpa(q) + ring_stride});
		}
		used.push_back({v.slot_gpa(rxq, 0), v.spare_gpa(spare_pages)});
		EXPECT_GE(v.slot_gpa(rxq, 0), ring_base_gpa + 8 * ring_stride)
			<< "buffers above every ring";
		EXPECT_LE(v.spare_gpa(spare_pages), f.tm.gm.size);
	}
	std::sort(used.begin(), used.end());
	for (std::size_t i = 1; i < used.size(); i++)
		EXPECT_LE(used[i - 1].second, used[i].first) << "areas overlap at " << i;
	// One IOMMU: every pair's rings and pools are in it, each mapped once.
	EXPECT_EQ(f.mmu.ranges().size(), 4u * 4u) << "2 rings + 2 pools per pair";
	std::vector<std::uint64_t> damaged;
	for (auto &v : f.vms)
		v->check_canaries(damaged);
	EXPECT_TRUE(damaged.empty()) << "no pair paints over another's rings";
	// Damage in pair 2's spare page is pair 2's to report.
	f.tm.gm.base[f.vms[2]->spare_gpa(3)] = 0;
	for (unsigned p = 0; p < 4; p++) {
		damaged.clear();
		f.vms[p]->check_canaries(damaged);
		EXPECT_EQ(damaged.size(), p == 2 ? 1u : 0u) << "pair " << p;
	}
	EXPECT_THROW(vm1(f.tm.gm, [] {
			     vm1_config c;
			     c.pairs = 8;
			     c.pair = 7;
			     return c;
		     }(),
			 f.port, f.mmu),
		     std::invalid_argument)
		<< "8 pairs of 256 do not fit this RAM";
}

TEST(SimVm1, IdentityMapsRamOnceForAllPairs)
{
	pairs_fixture f(iova_policy::identity, 3);
	EXPECT_EQ(f.port.maps.size(), 1u) << "pair 0 maps all RAM, the others nothing";
	EXPECT_TRUE(f.port.inval.empty());
}

TEST(SimVm1, FaultOnOnePairLeavesTheOthersFlowing)
{
	for (iova_policy pol : {iova_policy::identity, iova_policy::transient}) {
		pairs_fixture f(pol, 4);
		for (auto &v : f.vms) {
			v->fill_rx();
			v->rx.kick_prepare(); // publishes the avail index
		}
		std::vector<rx_validator> val;
		for (unsigned p = 0; p < 4; p++)
			val.emplace_back(8, p);
		std::uint64_t seq = 0;
		auto round = [&](std::uint64_t n) {
			for (unsigned p = 0; p < 4; p++) {
				for (std::uint64_t k = 0; k < n; k++)
					ASSERT_TRUE(f.vms[p]->send(pair_seq(p, seq + k), 100, now_ns()));
				f.vms[p]->tx.kick_prepare();
			}
			seq += n;
		};
		auto reap = [&](unsigned p) {
			vm1 &v = *f.vms[p];
			while (auto c = v.tx.get_used())
				v.complete_tx(*c);
			while (auto c = v.rx.get_used()) {
				auto data = v.complete_rx(*c);
				if (c->token & fault_token)
					continue;
				std::vector<std::uint8_t> fr(data.begin() + net_hdr_size, data.end());
				val[static_cast<unsigned>(frame_pair(fr) >= 0 ? frame_pair(fr) : 0)]
					.on_frame(fr, now_ns());
				v.post_rx(vm1::slot_of(*c));
			}
			v.rx.kick_prepare();
		};
		round(4);
		for (unsigned p = 0; p < 4; p++) {
			EXPECT_EQ(f.loop(p), "") << "pair " << p;
			reap(p);
		}
		const fault_report r = f.vms[2]->inject("head-out-of-range");
		EXPECT_EQ(r.queue, txq);
		round(4);
		for (unsigned p = 0; p < 4; p++) {
			const std::string e = f.loop(p);
			EXPECT_EQ(e, p == 2 ? "head-out-of-range" : "")
				<< "pair " << p << " policy " << policy_name(pol);
			reap(p);
		}
		for (unsigned p = 0; p < 4; p++) {
			EXPECT_EQ(val[p].unique, p == 2 ? 4u : 8u) << "pair " << p;
			EXPECT_EQ(val[p].out_of_range + val[p].reordered + val[p].duplicates +
					  val[p].corrupt,
				  0u);
			std::vector<std::uint64_t> damaged;
			f.vms[p]->check_canaries(damaged);
			EXPECT_TRUE(damaged.empty()) << "pair " << p;
		}
	}
}

TEST_F(SimFrontendBackendMq, NegotiatesMqAndSetsUpEveryRing)
{
	const std::uint64_t ram = 8 << 20;
	unique_fd memfd(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_TRUE(memfd);
	mmap_area area = mmap_area::map_shared(memfd.get(), ram, 0, true);
	guest_mem gm{static_cast<std::uint8_t *>(area.data()), ram};
	recording_port port;
	iommu mmu(ram);
	std::vector<std::unique_ptr<vm1>> vms;
	for (unsigned p = 0; p < 4; p++) {
		vm1_config vc;
		vc.policy = iova_policy::static_pool;
		vc.ring_size = 64;
		vc.pairs = 4;
		vc.pair = p;
		vms.push_back(std::make_unique<vm1>(gm, vc, port, mmu));
		vms.back()->map_static();
	}
	vu_frontend fe(vu_frontend::connect(dir_.path("vu.sock"), 2000), mmu, 1000);
	const std::uint64_t f =
		fe.negotiate(bit(vf::version_1) | bit(vf::access_platform) | bit(vf::event_idx),
			     bit(vf::version_1), 4);
	EXPECT_TRUE(f & bit(vf::mq)) << "VIRTIO_NET_F_MQ acked";
	EXPECT_EQ(fe.protocol_features(),
		  bit(vu::pf::mq) | bit(vu::pf::reply_ack) | bit(vu::pf::slave_req));
	EXPECT_EQ(fe.queue_num(), 4u) << "GET_QUEUE_NUM: the backend's --queues";
	fe.set_mem_table({memfd.get(), ram, reinterpret_cast<std::uint64_t>(area.data())});
	std::vector<unique_fd> fds;
	for (unsigned p = 0; p < 4; p++)
		for (unsigned q : {rxq, txq}) {
			const auto &l = vms[p]->layout(q);
			fds.push_back(make_eventfd());
			fds.push_back(make_eventfd());
			fe.setup_vring(2 * p + q, l.num, l.desc_iova, l.avail_iova, l.used_iova,
				       fds[fds.size() - 2].get(), fds.back().get());
		}
	for (unsigned r = 0; r < 8; r++)
		fe.enable_vring(r, true);
	stop_loop();
	// Every ring reached the control area at its index: RX of pair p is
	// ring 2p, TX ring 2p + 1.
	for (unsigned p = 0; p < 4; p++)
		for (unsigned q : {rxq, txq}) {
			const unsigned r = 2 * p + q;
			EXPECT_EQ(le_load(ctrl().vq_config[r].desc), vms[p]->layout(q).desc_iova)
				<< "ring " << r;
			EXPECT_EQ(le_load(ctrl().vq_config[r].used), vms[p]->layout(q).used_iova)
				<< "ring " << r;
			EXPECT_EQ(le_load(ctrl().vq_config[r].num), 64) << "ring " << r;
			EXPECT_EQ(le_load(ctrl().vq_config[r].enabled), 1) << "ring " << r;
		}
	EXPECT_EQ(le_load(ctrl().backend.num_queue_pairs), 4) << "all four pairs running";
	EXPECT_TRUE(le_load(ctrl().backend.features) & bit(vf::mq));
}

TEST_F(SimFrontendBackendMq, MorePairsThanTheBackendServesIsRefused)
{
	iommu mmu(1 << 20);
	vu_frontend fe(vu_frontend::connect(dir_.path("vu.sock"), 2000), mmu, 1000);
	try {
		fe.negotiate(bit(vf::version_1) | bit(vf::access_platform), bit(vf::version_1), 5);
		FAIL() << "no exception";
	} catch (const std::runtime_error &e) {
		EXPECT_NE(std::string(e.what()).find("VHOST_USER_GET_QUEUE_NUM"), std::string::npos)
			<< e.what();
		EXPECT_NE(std::string(e.what()).find("serves 4 queue pairs"), std::string::npos)
			<< e.what();
	}
}

TEST_F(SimFrontendBackend, OnePairBackendRefusesSeveralAndOnePairAsksNoMq)
{
	iommu mmu(1 << 20);
	{
		vu_frontend fe(vu_frontend::connect(dir_.path("vu.sock"), 2000), mmu, 1000);
		try {
			fe.negotiate(bit(vf::version_1) | bit(vf::access_platform), bit(vf::version_1),
				     2);
			FAIL() << "no exception";
		} catch (const std::runtime_error &e) {
			EXPECT_NE(std::string(e.what()).find("VIRTIO_NET_F_MQ"), std::string::npos)
				<< e.what();
		}
	}
	std::this_thread::sleep_for(std::chrono::milliseconds(50));
	vu_frontend fe(vu_frontend::connect(dir_.path("vu.sock"), 2000), mmu, 1000);
	const std::uint64_t f =
		fe.negotiate(bit(vf::version_1) | bit(vf::access_platform), bit(vf::version_1));
	EXPECT_FALSE(f & bit(vf::mq));
	EXPECT_FALSE(fe.protocol_features() & bit(vu::pf::mq)) << "one pair: not negotiated";
	EXPECT_EQ(fe.queue_num(), 0u) << "one pair: GET_QUEUE_NUM not sent";
}

} // namespace
