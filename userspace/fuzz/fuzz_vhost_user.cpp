// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * libFuzzer target: the vhost-user wire format and the back-end session as
 * they take what VM1's QEMU sends.  The input is cut into pieces, each
 * written to a stream socket (some with an fd attached, as SCM_RIGHTS), and
 * read the way the daemon and hostdp read it: vu::session::handle_one()
 * whenever the socket is readable, a message put together over several
 * calls, then checked and dispatched by the session to a device that takes
 * whatever the session lets through (the session's checks are what is
 * fuzzed; the devices' own have their unit tests).
 *
 * Findings: ASan/UBSan reports, exceptions escaping the session (it turns
 * errors into refusals), and fds left open once the session is gone (a
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

#include <spdlog/spdlog.h>

#include "vhost_user.hpp"
#include "vhost_user_session.hpp"

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

/** A device that takes what the session lets through; every second GET_VRING_BASE deferred. */
class fuzz_device final : public vu::device_iface {
public:
	std::uint64_t offered_features() const override { return ~vu::f_protocol_features; }
	unsigned queue_pairs() const override { return 2; }
	void features_set(std::uint64_t) override {}
	std::optional<std::vector<vu::region>> memory_table(vu::message &m) override
	{
		const auto &t = std::get<vu::set_mem_table>(m.body).p;
		std::vector<vu::region> rs;
		std::uint64_t off = 0;
		for (std::uint32_t i = 0; i < t.nregions; i++) {
			const vu::mem_region &r = t.regions[i];
			if (vu::region_error(r))
				return std::nullopt;
			rs.push_back({r.guest_phys_addr, r.memory_size, r.userspace_addr, off});
			off += r.memory_size;
		}
		return rs;
	}
	bool ring_changed(const vu::message &, unsigned, vu::ring_change, bool) override
	{
		return false;
	}
	std::optional<std::uint16_t> stop_ring(const vu::message &m, unsigned q) override
	{
		if (++stops_ & 1)
			return std::uint16_t{0};
		pending_ = {static_cast<std::uint32_t>(m.req()), q};
		return std::nullopt;
	}
	vu::iotlb_result iotlb_message(const vu::message &, const vu::iotlb_msg &, bool,
				       std::uint64_t) override
	{
		return {};
	}
	void session_reset(vu::reset_reason, std::uint32_t) override { pending_.reset(); }
	bool busy() const override { return pending_.has_value(); }

	/** Send the deferred reply, as the daemon does once VM2's driver answered. */
	void complete(vu::session &s)
	{
		if (pending_)
			s.reply_vring_base(pending_->first, pending_->second, 0);
		pending_.reset();
	}

private:
	unsigned stops_ = 0;
	std::optional<std::pair<std::uint32_t, unsigned>> pending_;
};

/** Read what the socket has; false once the connection ended. */
bool drain(vu::session &s, fuzz_device &d)
{
	while (s.handle_one())
		;
	d.complete(s);
	return s.connected();
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
	spdlog::set_level(spdlog::level::off);
	return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	const int before = open_fds();
	{
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
			abort();
		vpci::unique_fd peer(sv[0]);
		fuzz_device dev;
		vu::session sess(dev, 4);
		sess.attach(vpci::unique_fd(sv[1]));
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
				live = drain(sess, dev);
		}
		if (live) {
			shutdown(peer.get(), SHUT_WR);
			while (drain(sess, dev))
				;
		}
	}
	if (open_fds() != before)
		abort(); // an fd that came with a refused message was kept
	return 0;
}
