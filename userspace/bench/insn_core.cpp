// SPDX-License-Identifier: GPL-2.0
// Instructions per frame of the driver core, the figure machine load cannot
// move: the same kernel/core_net.c the module runs (over core_vring.c and
// core_iotlb.c), one case per run, counted by callgrind.  Only the
// functions named measure_* are collected (scripts/bench-insn.sh runs
// valgrind --tool=callgrind --toggle-collect='measure_*'); VM1's side
// (posting buffers and frames) is outside them.
//
//   vpci-insn-core {xmit|recv|memcpy} SIZE {identity|4k} FRAMES
//
// xmit: VM2's stack sends (vpci_net_rx() into VM1's RX buffers, one publish
// per burst); recv: VM2 receives (vpci_net_tx_pop() and vpci_net_tx_read()
// out of VM1's TX ring); memcpy: the same bytes copied and nothing else.
// Exits non-zero if the core reported any fault: the figures are only
// valid for frames that went through.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "bench_peer.hpp"

using namespace vpci::bench;

namespace {

unsigned faults;

void on_fault(void *, int, u64, u64) { faults++; }
bool on_stall(void *)
{
	faults++;
	return false;
}
void on_ring_fault(void *, int) { faults++; }

const vpci_net_ops ops = {.fault = on_fault, .stall = on_stall, .ring_fault = on_ring_fault};

struct Run {
	Peer p;
	vpci_vring vr{};
	vpci_rx_state st{};
	vpci_chain c{};
	std::vector<u8> frame, out;
	u32 size;
	u16 posted = 0;

	Run(u32 sz, bool pages) : p(pages ? 8192 : 0), frame(sz, 0x5a), out(sz), size(sz)
	{
		vpci_vring_init(&vr, &p.peer, kDesc, kAvail, kUsed, kNum, 0, true);
	}

	// VM1 posts kBurst chains, each in its own page: RX buffers of 2 KiB
	// (xmit) or a header and frame to send (recv).
	void post(bool writable)
	{
		for (unsigned k = 0; k < kBurst; k++, posted++) {
			const u16 i = posted % kNum;
			const u64 d = kDesc + 16ULL * i, addr = kBufs + 4096ULL * i;
			const u32 len = writable ? 2048 : VPCI_NET_HDR_LEN + size;
			std::memcpy(&p.mem[d], &addr, 8);
			std::memcpy(&p.mem[d + 8], &len, 4);
			p.put16(d + 12, writable ? VPCI_VRING_DESC_F_WRITE : 0);
			p.put16(kAvail + 4 + 2 * i, i);
			if (!writable)
				std::memset(&p.mem[addr], 0, VPCI_NET_HDR_LEN);
		}
		p.put16(kAvail + 2, posted);
	}
};

// What ndo_start_xmit does for a burst of frames (xmit_more: one publish).
__attribute__((noinline)) void measure_xmit(Run &r)
{
	for (unsigned k = 0; k < kBurst; k++) {
		u8 hdr[VPCI_NET_HDR_LEN] = {};
		const vpci_iov from{r.frame.data(), r.size};
		if (vpci_net_rx(&r.vr, &r.st, hdr, &from, 1, true, &ops, nullptr) !=
		    VPCI_NET_RX_DONE)
			faults++;
	}
	bool notify;
	vpci_vring_publish(&r.vr, &notify);
}

// What a NAPI poll does for a burst (the skb allocation aside).
__attribute__((noinline)) void measure_recv(Run &r)
{
	u16 avail;
	if (vpci_vring_avail_idx(&r.vr, &avail))
		faults++;
	for (unsigned k = 0; k < kBurst; k++) {
		u8 hdr[10];
		const int len = vpci_net_tx_pop(&r.vr, &r.c, avail, 9018, &ops, nullptr);
		const vpci_iov to{r.out.data(), r.size};
		if (len != static_cast<int>(r.size) ||
		    vpci_net_tx_read(&r.vr, &r.c, hdr, sizeof(hdr), &to, 1, &ops, nullptr))
			faults++;
	}
	bool notify;
	vpci_vring_publish(&r.vr, &notify);
}

// The copy alone: the same bytes from the same buffers.
__attribute__((noinline)) void measure_memcpy(Run &r)
{
	for (unsigned k = 0; k < kBurst; k++) {
		const u16 i = (r.posted + k) % kNum;
		std::memcpy(r.out.data(), &r.p.mem[kBufs + 4096ULL * i + VPCI_NET_HDR_LEN], r.size);
		asm volatile("" : : "r"(r.out.data()) : "memory");
	}
	r.posted += kBurst;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 5) {
		std::fprintf(stderr, "usage: %s {xmit|recv|memcpy} SIZE {identity|4k} FRAMES\n",
			     argv[0]);
		return 2;
	}
	const std::string kind = argv[1], iotlb = argv[3];
	const unsigned long size = std::strtoul(argv[2], nullptr, 0);
	const unsigned long frames = std::strtoul(argv[4], nullptr, 0);
	if ((kind != "xmit" && kind != "recv" && kind != "memcpy") ||
	    (iotlb != "identity" && iotlb != "4k") || size < 14 || size > 2048 - VPCI_NET_HDR_LEN ||
	    frames == 0 || frames % kBurst) {
		std::fprintf(stderr,
			     "%s: bad arguments (SIZE 14..%u, FRAMES a non-zero multiple of %u)\n",
			     argv[0], 2048 - VPCI_NET_HDR_LEN, kBurst);
		return 2;
	}
	Run r(static_cast<u32>(size), iotlb == "4k");
	for (unsigned long n = 0; n < frames; n += kBurst) {
		if (kind == "xmit") {
			r.post(true);
			measure_xmit(r);
		} else if (kind == "recv") {
			r.post(false);
			measure_recv(r);
		} else {
			measure_memcpy(r);
		}
	}
	if (faults) {
		std::fprintf(stderr, "%s: %u faults: the figures are not valid\n", argv[0], faults);
		return 1;
	}
	std::printf("%s %lu %s %lu\n", kind.c_str(), size, iotlb.c_str(), frames);
	return 0;
}
