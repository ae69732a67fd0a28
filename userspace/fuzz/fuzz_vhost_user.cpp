// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * libFuzzer target: the vhost-user wire format as the back-ends read it
 * from VM1's QEMU.  The input is cut into pieces, each written to a stream
 * socket (some with an fd attached, as SCM_RIGHTS), and read the way the
 * daemon's and hostdp's sessions read it: vu::connection::recv() whenever
 * the socket is readable, a message put together over several calls.
 * Every message that parses goes through the checks the sessions apply
 * before acting on it (ring sizes, memory regions, ring addresses, IOTLB
 * messages, vring fd indexes) and is printed as the logs would.
 *
 * Findings: ASan/UBSan reports, exceptions escaping recv() (it reports
 * errors as values), and fds left open once a connection is gone (a
 * message refused must close the fds it came with).
 *
 * Piece encoding: one control byte (low 6 bits + 1: the piece's length;
 * bit 6: attach an fd; bit 7: stop reading until the next piece), then
 * the piece's bytes.
 */
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <variant>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vhost_user.hpp"

namespace vu = vpci::vu;

namespace {

int open_fds()
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		abort();
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/** What a session checks of a message before it uses it. */
void check(const vu::message &m)
{
	static const std::vector<vu::region> regions = {
		{0, 1 << 20, 0x7f0000000000ULL, 0},
		{1ULL << 32, 1 << 20, 0x7f0000100000ULL, 1 << 20},
	};
	(void)m.to_string();
	std::visit(
		[&](const auto &b) {
			using T = std::decay_t<decltype(b)>;
			if constexpr (std::is_same_v<T, vu::set_vring_num>) {
				(void)vu::valid_ring_size(b.p.num);
			} else if constexpr (std::is_same_v<T, vu::set_mem_table>) {
				for (std::uint32_t i = 0; i < b.p.nregions && i < vu::max_mem_regions;
				     i++)
					(void)vu::region_error(b.p.regions[i]);
			} else if constexpr (std::is_same_v<T, vu::set_vring_addr>) {
				(void)vu::ring_addresses(b.p, true, regions);
				(void)vu::ring_addresses(b.p, false, regions);
			} else if constexpr (std::is_same_v<T, vu::iotlb>) {
				const vu::iotlb_check c = vu::check_iotlb(b.p);
				if (!c.error)
					(void)vu::uaddr_to_offset(regions, b.p.uaddr, b.p.size);
			} else if constexpr (std::is_same_v<T, vu::set_vring_kick> ||
					     std::is_same_v<T, vu::set_vring_call> ||
					     std::is_same_v<T, vu::set_vring_err>) {
				(void)vu::vring_fd_index(b.p.u64, 2);
			}
		},
		m.body);
}

/** Read what the socket has; false once the connection must end. */
bool drain(vu::connection &c)
{
	for (;;) {
		vu::connection::result r = c.recv();
		if (std::holds_alternative<vu::connection::incomplete>(r))
			return true;
		if (std::holds_alternative<vu::connection::eof>(r))
			return false;
		if (auto *e = std::get_if<vu::parse_error>(&r)) {
			if (e->fatal)
				return false; // the sessions close the connection
			continue;
		}
		check(std::get<vu::message>(r));
	}
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	const int before = open_fds();
	{
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
			abort();
		vpci::unique_fd peer(sv[0]);
		vu::connection c{vpci::unique_fd(sv[1])};
		bool live = true;
		std::size_t off = 0;
		while (live && off < size) {
			const std::uint8_t ctl = data[off++];
			const std::size_t n = std::min<std::size_t>((ctl & 63) + 1, size - off);
			if (!n)
				break;
			std::vector<int> fds;
			vpci::unique_fd extra;
			if (ctl & 64) {
				extra.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
				fds.push_back(extra.get());
			}
			try {
				vu::send_raw(peer.get(), data + off, n, fds);
			} catch (...) {
				break; // the socket buffer is full: the reader gave up
			}
			off += n;
			if (!(ctl & 128))
				live = drain(c);
		}
		if (live) {
			shutdown(peer.get(), SHUT_WR);
			while (drain(c))
				;
		}
	}
	if (open_fds() != before)
		abort(); // an fd that came with a refused message was kept
	return 0;
}
