// SPDX-License-Identifier: GPL-2.0
// Micro-benchmarks of the driver core (kernel/core_*.c) in userspace: the
// device side of a TX ring (pop, copy out, push, publish per burst) at 64
// and 1500 bytes with the IOTLB fragmented into 4 KiB entries or a single
// identity entry, IOTLB lookups, and memcpy as the physical ceiling.
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "bench_peer.hpp"

using namespace vpci::bench;

namespace {

// VM1 posts kBurst single-descriptor frames; the device takes them.
void BM_TxRing(benchmark::State &st)
{
	const u32 size = static_cast<u32>(st.range(0));
	Peer p(st.range(1) ? 8192 : 0); // 32 MiB in 4 KiB entries, or identity
	vpci_vring vr;
	vpci_vring_init(&vr, &p.peer, kDesc, kAvail, kUsed, kNum, 0, true);
	for (u16 i = 0; i < kNum; i++) {
		u64 d = kDesc + 16ULL * i;
		u64 addr = kBufs + 2048ULL * i * 7; // spread over pages
		std::memcpy(&p.mem[d], &addr, 8);
		std::memcpy(&p.mem[d + 8], &size, 4);
		p.put16(d + 12, 0);
		p.put16(kAvail + 4 + 2 * i, i);
	}
	std::vector<u8> out(size);
	vpci_chain c;
	u16 avail_idx = 0;
	for (auto _ : st) {
		avail_idx += kBurst;
		p.put16(kAvail + 2, avail_idx);
		u16 idx;
		vpci_vring_avail_idx(&vr, &idx);
		for (unsigned k = 0; k < kBurst; k++) {
			vpci_vring_pop(&vr, idx, &c);
			vpci_chain_read(&vr, &c, 0, out.data(), size);
			vpci_vring_push(&vr, c.head, 0);
		}
		bool notify;
		vpci_vring_publish(&vr, &notify);
		benchmark::DoNotOptimize(out.data());
	}
	st.SetItemsProcessed(st.iterations() * kBurst);
	st.SetBytesProcessed(st.iterations() * kBurst * size);
	st.SetLabel(st.range(1) ? "iotlb 8192x4KiB" : "iotlb identity");
}
BENCHMARK(BM_TxRing)->ArgsProduct({{64, 1500}, {0, 1}});

void BM_IotlbLookup(benchmark::State &st)
{
	const u64 entries = static_cast<u64>(st.range(0));
	Peer p(entries);
	std::mt19937_64 rng(1);
	std::vector<u64> iovas(4096);
	for (auto &v : iovas)
		v = (rng() % entries) * 4096 + (rng() % 4096);
	size_t i = 0;
	for (auto _ : st) {
		u64 off, contig;
		benchmark::DoNotOptimize(vpci_iotlb_translate(&p.iotlb, iovas[i++ & 4095], 1,
							      VPCI_PERM_RO, &off, &contig));
	}
	st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_IotlbLookup)->Arg(16)->Arg(1024)->Arg(16384)->Arg(65536);

// Strict mode's pair per buffer: VM1 unmaps a page and maps one, here in
// the middle of a table of @entries 4 KiB entries (issue 14: updates are
// memmoves of the sorted array, O(n); this is the figure to beat).
void BM_IotlbUpdate(benchmark::State &st)
{
	const u64 entries = static_cast<u64>(st.range(0));
	Peer p(entries);
	std::mt19937_64 rng(1);
	for (auto _ : st) {
		const u64 page = rng() % entries;
		vpci_iotlb_del(&p.iotlb, page * 4096, 4096);
		vpci_iotlb_add(&p.iotlb, page * 4096, 4096, page * 4096, VPCI_PERM_RW);
	}
	st.SetItemsProcessed(st.iterations());
	st.SetLabel("invalidate + update");
}
BENCHMARK(BM_IotlbUpdate)->Arg(1024)->Arg(65536);

void BM_Memcpy(benchmark::State &st)
{
	const size_t size = static_cast<size_t>(st.range(0));
	std::vector<u8> src(kMem / 4), dst(size);
	size_t off = 0;
	for (auto _ : st) {
		std::memcpy(dst.data(), &src[off], size);
		off = (off + 4096 * 7) % (src.size() - size);
		benchmark::DoNotOptimize(dst.data());
	}
	st.SetItemsProcessed(st.iterations());
	st.SetBytesProcessed(st.iterations() * size);
}
BENCHMARK(BM_Memcpy)->Arg(64)->Arg(1500)->Arg(1 << 20);

} // namespace

BENCHMARK_MAIN();
