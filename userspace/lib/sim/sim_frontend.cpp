// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "sim_frontend.hpp"

#include <chrono>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <poll.h>
#include <sys/socket.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace vpci::sim {

namespace {

using clock = std::chrono::steady_clock;

constexpr std::uint32_t channel_iotlb = static_cast<std::uint32_t>(vu::slave_request::iotlb_msg);

int ms_left(clock::time_point end)
{
	auto d = std::chrono::duration_cast<std::chrono::milliseconds>(end - clock::now()).count();
	return d < 0 ? 0 : static_cast<int>(d);
}

} // namespace

vu_frontend::vu_frontend(unique_fd sock, const iommu &mmu, int reply_timeout_ms)
	: sock_(std::move(sock)), mmu_(&mmu), timeout_ms_(reply_timeout_ms)
{
}

unique_fd vu_frontend::connect(const std::string &path, int wait_ms)
{
	const auto end = clock::now() + std::chrono::milliseconds(wait_ms);
	for (;;) {
		try {
			return unix_connect(path);
		} catch (const std::system_error &e) {
			if (clock::now() >= end)
				throw;
			std::this_thread::sleep_for(std::chrono::milliseconds(20));
		}
	}
}

std::uint64_t vu_frontend::call(vu::request r, const void *p, std::size_t len,
				const std::vector<int> &fds, bool get)
{
	const auto req = static_cast<std::uint32_t>(r);
	const bool ack = !get && (proto_ & bit(vu::pf::reply_ack));
	vu::send_message(sock_.get(), req, vu::version | (ack ? vu::flag_need_reply : 0u), p, len,
			 fds);
	if (!get && !ack)
		return 0;
	const auto end = clock::now() + std::chrono::milliseconds(timeout_ms_);
	for (;;) {
		pollfd pfd[2] = {{sock_.get(), POLLIN, 0}, {chan_ours_.get(), POLLIN, 0}};
		int n = ::poll(pfd, chan_ours_ ? 2 : 1, ms_left(end));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			throw_errno("poll(vhost-user reply)");
		// The deadline holds even while the channel keeps poll() busy.
		if (n == 0 || clock::now() >= end)
			throw std::runtime_error(fmt::format(
				"vhost-user: no reply to {} within {} ms", vu::request_name(req),
				timeout_ms_));
		if (chan_ours_ && (pfd[1].revents & (POLLIN | POLLHUP)))
			drain_channel(0);
		if (!(pfd[0].revents & (POLLIN | POLLHUP)))
			continue;
		auto m = vu::recv_raw(sock_.get(), 0);
		if (!m)
			continue;
		if (m->req != req || !(m->flags & vu::flag_reply))
			throw std::runtime_error(fmt::format(
				"vhost-user: expected the reply to {}, got {} flags {:#x}",
				vu::request_name(req), vu::request_name(m->req), m->flags));
		auto v = m->u64();
		if (!v)
			throw std::runtime_error(fmt::format("vhost-user: short reply to {}",
							     vu::request_name(req)));
		if (ack && *v != 0) {
			st_.nacks++;
			throw std::runtime_error(fmt::format("vhost-user: {} refused (ack {:#x})",
							     vu::request_name(req), *v));
		}
		return *v;
	}
}

std::uint64_t vu_frontend::negotiate(std::uint64_t want, std::uint64_t required,
				     unsigned queue_pairs)
{
	offered_ = call(vu::request::get_features, nullptr, 0, {}, true);
	const bool mq = queue_pairs > 1;
	if (mq && !(offered_ & bit(vf::mq)))
		throw std::runtime_error(fmt::format(
			"{} queue pairs need VIRTIO_NET_F_MQ; back-end offers features {:#x}",
			queue_pairs, offered_));
	if (mq && !(offered_ & vu::f_protocol_features))
		throw std::runtime_error(fmt::format(
			"{} queue pairs need VHOST_USER_PROTOCOL_F_MQ; back-end offers no protocol "
			"features",
			queue_pairs));
	if (mq)
		want |= bit(vf::mq);
	const bool platform = want & bit(vf::access_platform);
	for (unsigned b : {vf::version_1, vf::access_platform})
		if ((want & bit(b)) && !(offered_ & bit(b)))
			throw std::runtime_error(fmt::format(
				"back-end does not offer feature bit {} (offered {:#x})", b, offered_));
	if ((required & offered_) != required)
		throw std::runtime_error(fmt::format("back-end lacks required features {:#x}",
						     required & ~offered_));
	if (offered_ & vu::f_protocol_features) {
		const std::uint64_t pf = call(vu::request::get_protocol_features, nullptr, 0, {}, true);
		const std::uint64_t need = bit(vu::pf::reply_ack) | bit(vu::pf::slave_req);
		if (platform && (pf & need) != need)
			throw std::runtime_error(fmt::format(
				"ACCESS_PLATFORM needs REPLY_ACK and SLAVE_REQ; back-end offers "
				"protocol features {:#x}",
				pf));
		if (mq && !(pf & bit(vu::pf::mq)))
			throw std::runtime_error(fmt::format(
				"{} queue pairs need VHOST_USER_PROTOCOL_F_MQ; back-end offers "
				"protocol features {:#x}",
				queue_pairs, pf));
		const std::uint64_t mine = (pf & need) | (mq ? bit(vu::pf::mq) : 0);
		call(vu::request::set_protocol_features, &mine, sizeof(mine), {}, false);
		proto_ = mine;
	}
	if (mq) {
		queue_num_ = call(vu::request::get_queue_num, nullptr, 0, {}, true);
		if (queue_num_ < queue_pairs)
			throw std::runtime_error(fmt::format(
				"back-end serves {} queue pairs (VHOST_USER_GET_QUEUE_NUM), {} asked",
				queue_num_, queue_pairs));
	}
	if (proto_ & bit(vu::pf::slave_req)) {
		int sv[2];
		if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			throw_errno("socketpair(back-end channel)");
		unique_fd theirs(sv[1]);
		chan_ours_.reset(sv[0]);
		call(vu::request::set_slave_req_fd, nullptr, 0, {theirs.get()}, false);
	}
	call(vu::request::set_owner, nullptr, 0, {}, false);
	features_ = (want & offered_) | (offered_ & vu::f_protocol_features);
	call(vu::request::set_features, &features_, sizeof(features_), {}, false);
	features_ &= ~vu::f_protocol_features;
	spdlog::debug("sim: offered {:#x}, acked {:#x}, protocol {:#x}", offered_, features_, proto_);
	return features_;
}

void vu_frontend::set_mem_table(const memory_desc &m)
{
	uaddr_ = m.userspace_addr;
	vu::memory mem{};
	mem.nregions = 1;
	mem.regions[0] = vu::mem_region{0, m.size, m.userspace_addr, 0};
	call(vu::request::set_mem_table, &mem, 8 + sizeof(vu::mem_region), {m.fd}, false);
}

void vu_frontend::setup_vring(unsigned q, std::uint16_t num, std::uint64_t desc,
			      std::uint64_t avail, std::uint64_t used, int kick_fd, int call_fd)
{
	vu::vring_state s{q, num};
	call(vu::request::set_vring_num, &s, sizeof(s), {}, false);
	s.num = 0;
	call(vu::request::set_vring_base, &s, sizeof(s), {}, false);
	vu::vring_addr a{q, 0, desc, used, avail, 0};
	call(vu::request::set_vring_addr, &a, sizeof(a), {}, false);
	std::uint64_t v = q;
	call(vu::request::set_vring_kick, &v, sizeof(v), {kick_fd}, false);
	call(vu::request::set_vring_call, &v, sizeof(v), {call_fd}, false);
}

void vu_frontend::enable_vring(unsigned q, bool on)
{
	vu::vring_state s{q, on ? 1u : 0u};
	call(vu::request::set_vring_enable, &s, sizeof(s), {}, false);
}

std::uint32_t vu_frontend::get_vring_base(unsigned q)
{
	vu::vring_state s{q, 0};
	vu::send_message(sock_.get(), static_cast<std::uint32_t>(vu::request::get_vring_base),
			 vu::version, &s, sizeof(s));
	const auto end = clock::now() + std::chrono::milliseconds(timeout_ms_);
	for (;;) {
		if (chan_ours_)
			drain_channel(0);
		auto m = vu::recv_raw(sock_.get(), std::min(ms_left(end), 10));
		if (m && m->payload.size() == sizeof(s)) {
			std::memcpy(&s, m->payload.data(), sizeof(s));
			return s.num;
		}
		if (m)
			throw std::runtime_error("vhost-user: bad GET_VRING_BASE reply");
		if (!ms_left(end))
			throw std::runtime_error("vhost-user: no reply to GET_VRING_BASE");
	}
}

void vu_frontend::send_update(const iommu_range &r)
{
	vu::iotlb_msg t{};
	t.iova = r.iova;
	t.size = r.size;
	t.uaddr = uaddr_ + r.gpa;
	t.perm = r.perm;
	t.type = vu::iotlb_update;
	call(vu::request::iotlb_msg, &t, sizeof(t), {}, false);
	st_.updates++;
}

void vu_frontend::push_update(const iommu_range &r)
{
	send_update(r);
	st_.pushes++;
}

void vu_frontend::invalidate(const std::vector<iommu_range> &rs)
{
	for (const auto &r : rs) {
		vu::iotlb_msg t{};
		t.iova = r.iova;
		t.size = r.size;
		t.type = vu::iotlb_invalidate;
		st_.invalidations++;
		call(vu::request::iotlb_msg, &t, sizeof(t), {}, false);
		st_.acks++;
	}
}

void vu_frontend::drain_channel(int timeout_ms)
{
	while (auto m = vu::recv_raw(chan_ours_.get(), timeout_ms)) {
		queued_.push_back(std::move(*m));
		timeout_ms = 0;
	}
}

void vu_frontend::handle_channel(const vu::raw_message &m)
{
	bool ok = false;
	if (m.req == channel_iotlb && (m.payload.size() == sizeof(vu::iotlb_msg) ||
				       m.payload.size() == 26)) {
		vu::iotlb_msg t{};
		std::memcpy(&t, m.payload.data(), m.payload.size());
		if (t.type == vu::iotlb_miss) {
			st_.misses++;
			std::optional<iommu_range> e;
			if (!miss_hook_ || miss_hook_(t.iova))
				e = mmu_->lookup(t.iova, miss_ranges_);
			if (e) {
				send_update(*e);
			} else {
				// QEMU: "iotlb miss for unmapped iova": no answer.
				st_.misses_unanswered++;
				spdlog::debug("sim: miss for unmapped iova {:#x} perm {}", t.iova,
					      perm_name(t.perm));
			}
			ok = true;
		}
	}
	if (!ok)
		st_.channel_other++;
	if (m.flags & vu::flag_need_reply) {
		std::uint64_t v = ok ? 0 : 1;
		vu::send_message(chan_ours_.get(), m.req, vu::version | vu::flag_reply, &v, sizeof(v));
	}
}

unsigned vu_frontend::service()
{
	if (!chan_ours_)
		return 0;
	drain_channel(0);
	unsigned n = 0;
	while (!queued_.empty()) {
		auto m = std::move(queued_.front());
		queued_.pop_front();
		handle_channel(m);
		n++;
	}
	return n;
}

nlohmann::json vu_frontend::to_json() const
{
	return {{"offered_features", offered_},
		{"features", features_},
		{"protocol_features", proto_},
		{"queue_num", queue_num_},
		{"iotlb",
		 {{"misses", st_.misses},
		  {"misses_unanswered", st_.misses_unanswered},
		  {"updates", st_.updates},
		  {"pushes", st_.pushes},
		  {"invalidations", st_.invalidations},
		  {"acks", st_.acks},
		  {"nacks", st_.nacks},
		  {"channel_other", st_.channel_other}}}};
}

} // namespace vpci::sim
