// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "vhost_user_session.hpp"

#include <fcntl.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace vpci::vu {

namespace {

/** std::visit over lambdas: a message type without a handler does not compile. */
template <typename... F> struct handlers : F... {
	using F::operator()...;
};
template <typename... F> handlers(F...) -> handlers<F...>;

} // namespace

session::session(device_iface &dev, unsigned rings) : dev_(dev), nrings_(rings)
{
	if (!nrings_ || nrings_ > vu::max_rings)
		throw std::invalid_argument(
			fmt::format("vhost-user session: {} rings (1..{})", nrings_, vu::max_rings));
}

bool session::attach(unique_fd sock)
{
	if (conn_) {
		log_.warn("vhost-user: rejecting a second front-end connection");
		return false;
	}
	conn_.emplace(std::move(sock));
	stats_.sessions++;
	dev_.apply([&] { reset(reset_reason::connected); });
	spdlog::info("vhost-user: front-end connected");
	return true;
}

void session::disconnect(const std::string &why)
{
	if (!conn_)
		return;
	spdlog::info("vhost-user: front-end disconnected: {}", why);
	conn_.reset();
	dev_.apply([&] { reset(reset_reason::disconnected); });
}

void session::reset(reset_reason why)
{
	slave_.reset();
	features_ = 0;
	protocol_features_ = 0;
	regions_.clear();
	// fd_seq_ keeps counting: a ring's next fd never looks like an old one.
	std::uint32_t had_fds = 0;
	for (unsigned q = 0; q < max_rings; q++) {
		if (rings_[q].kick || rings_[q].call)
			had_fds |= 1u << q;
		rings_[q] = ring{};
	}
	dev_.session_reset(why, had_fds);
}

void session::reply_u64(std::uint32_t req, std::uint64_t v)
{
	if (!conn_)
		return;
	try {
		conn_->reply_u64(req, v);
	} catch (const std::system_error &e) {
		log_.warn("vhost-user: reply to {} failed: {}", request_name(req), e.what());
	}
}

void session::reply_ack(std::uint32_t req, bool need_reply, bool ok)
{
	if (need_reply)
		reply_u64(req, ok ? 0 : 1);
}

void session::reply_vring_base(std::uint32_t req, unsigned q, std::uint16_t pos)
{
	if (!conn_)
		return;
	vring_state s{q, pos};
	try {
		conn_->send_reply(req, &s, sizeof(s));
	} catch (const std::system_error &e) {
		log_.warn("vhost-user: GET_VRING_BASE reply failed: {}", e.what());
	}
}

void session::send_iotlb_miss(std::uint64_t iova, std::uint64_t size, std::uint8_t perm)
{
	if (!slave_)
		throw std::system_error(ENOTCONN, std::generic_category(),
					"no back-end channel (SET_SLAVE_REQ_FD)");
	iotlb_msg t{};
	t.iova = iova;
	t.size = size;
	t.perm = perm;
	t.type = iotlb_miss;
	slave_->send_request(static_cast<std::uint32_t>(slave_request::iotlb_msg), version, &t,
			     sizeof(t));
}

bool session::handle_one()
{
	if (!conn_ || dev_.busy())
		return false;
	auto r = conn_->recv();
	if (std::holds_alternative<connection::incomplete>(r))
		return false;
	if (std::holds_alternative<connection::eof>(r)) {
		disconnect("EOF");
		return false;
	}
	if (auto *e = std::get_if<parse_error>(&r)) {
		stats_.rejected++;
		log_.warn("vhost-user: rejected {} (flags {:#x}): {}", request_name(e->request),
			  e->flags, e->reason);
		if (e->fatal) {
			disconnect("framing error: " + e->reason);
			return false;
		}
		// NAK only when asked and when the version was right.
		if (e->flags & flag_need_reply && !(e->flags & flag_reply))
			reply_u64(e->request, 1);
		return true;
	}
	message &m = std::get<message>(r);
	if (spdlog::should_log(spdlog::level::debug))
		spdlog::debug("vhost-user: {}", m.to_string());
	bool replied = false, ok = false;
	dev_.apply([&] {
		stats_.messages++;
		try {
			ok = dispatch(m, replied);
		} catch (const std::exception &e) {
			// A failing syscall while applying a message rejects that
			// message; the session goes on.
			spdlog::error("vhost-user: {} failed: {}", m.to_string(), e.what());
			ok = false;
		}
	});
	if (!conn_)
		return false;
	if (!ok) {
		stats_.rejected++;
		log_.warn("vhost-user: rejected {}", m.to_string());
	}
	if (!replied && m.need_reply())
		reply_u64(static_cast<std::uint32_t>(m.req()), ok ? 0 : 1);
	return true;
}

bool session::check_ring(std::uint32_t idx, const char *what) const
{
	if (idx >= nrings_) {
		log_.warn("vhost-user: {}: queue {} out of range (have {})", what, idx, nrings_);
		return false;
	}
	return true;
}

bool session::changed(message &m, unsigned q, ring_change what, bool was_live, bool &replied)
{
	if (dev_.ring_changed(m, q, what, was_live))
		replied = true;
	return true;
}

bool session::set_ring_fd(message &m, std::uint64_t u, unique_fd ring::*which, const char *what,
			  bool &replied)
{
	const auto i = vring_fd_index(u, nrings_);
	if (!i) {
		log_.warn("vhost-user: {}: bad index or unknown bits in {:#x} (have {} queues)", what,
			  u, nrings_);
		return false;
	}
	ring &r = rings_[*i];
	const bool was_live = r.live();
	r.*which = m.fds.empty() ? unique_fd() : std::move(m.fds[0]);
	ring_change c = ring_change::err;
	if (which == &ring::kick) {
		r.kick_seq = ++fd_seq_;
		r.started = true;
		// Without PROTOCOL_FEATURES a ring starts enabled (vhost-user
		// spec, "Ring states"); with them, SET_VRING_ENABLE says.
		if (!(features_ & f_protocol_features))
			r.enabled = true;
		c = ring_change::kick;
	} else if (which == &ring::call) {
		r.call_seq = ++fd_seq_;
		c = ring_change::call;
	}
	return changed(m, *i, c, was_live, replied);
}

bool session::dispatch(message &m, bool &replied)
{
	const auto req = static_cast<std::uint32_t>(m.req());
	auto reply = [&](std::uint64_t v) {
		reply_u64(req, v);
		replied = true;
		return true;
	};
	auto offered = [&] { return f_protocol_features | dev_.offered_features(); };
	auto refuse = [&](std::string_view why) {
		log_.warn("vhost-user: {}: {}", request_name(req), why);
		return false;
	};

	return std::visit(
		handlers{
			[&](const get_features &) { return reply(offered()); },
			[&](const set_features &x) {
				const std::uint64_t f = x.p.u64;
				if (f & ~offered())
					return refuse(fmt::format("{:#x} acks bits not offered ({:#x})",
								  f, offered()));
				// A legacy driver's virtio_net_hdr is 10 bytes, not the
				// 12 every consumer of these rings assumes (VIRTIO 1.x
				// 5.1.6): refuse it.
				if (!(f & 1ULL << feature::version_1))
					return refuse(fmt::format("{:#x} without VERSION_1 (a legacy "
								  "driver) refused",
								  f));
				features_ = f;
				spdlog::info("vhost-user: features {:#x}{}", f,
					     iommu() ? " (ACCESS_PLATFORM: addresses are IOVAs)"
						     : " (addresses are GPAs)");
				dev_.features_set(f & ~f_protocol_features);
				return true;
			},
			[&](const get_protocol_features &) {
				return reply(session_protocol_features);
			},
			[&](const set_protocol_features &x) {
				if (x.p.u64 & ~session_protocol_features)
					return refuse(fmt::format("{:#x} not offered ({:#x})", x.p.u64,
								  session_protocol_features));
				protocol_features_ = x.p.u64;
				return true;
			},
			[&](const set_owner &) { return true; }, // one front-end a socket
			[&](const reset_owner &) {
				reset(reset_reason::owner_reset);
				return true;
			},
			[&](const get_queue_num &) { return reply(dev_.queue_pairs()); },
			[&](const set_mem_table &) {
				auto regs = dev_.memory_table(m);
				if (!regs)
					return false;
				regions_ = std::move(*regs);
				return true;
			},
			[&](const set_log_base &) {
				return refuse("dirty logging not supported (LOG_ALL not offered)");
			},
			[&](const set_log_fd &) {
				return refuse("dirty logging not supported (LOG_ALL not offered)");
			},
			[&](const set_vring_num &x) {
				if (!check_ring(x.p.index, "SET_VRING_NUM"))
					return false;
				if (!valid_ring_size(x.p.num))
					return refuse(fmt::format("ring size {} is not a power of two "
								  "in 1..32768",
								  x.p.num));
				ring &r = rings_[x.p.index];
				const bool was_live = r.live();
				r.num = static_cast<std::uint16_t>(x.p.num);
				return changed(m, x.p.index, ring_change::num, was_live, replied);
			},
			[&](const set_vring_addr &x) {
				if (!check_ring(x.p.index, "SET_VRING_ADDR"))
					return false;
				const auto a = ring_addresses(x.p, iommu(), regions_);
				if (!a)
					return refuse(fmt::format("queue {}: ring address does not "
								  "translate through the memory "
								  "table",
								  x.p.index));
				ring &r = rings_[x.p.index];
				const bool was_live = r.live();
				r.desc = a->desc;
				r.avail = a->avail;
				r.used = a->used;
				r.addr_set = true;
				return changed(m, x.p.index, ring_change::addr, was_live, replied);
			},
			[&](const set_vring_base &x) {
				if (!check_ring(x.p.index, "SET_VRING_BASE"))
					return false;
				if (x.p.num > 0xffff)
					return refuse(fmt::format("vring base {} does not fit 16 bits",
								  x.p.num));
				ring &r = rings_[x.p.index];
				const bool was_live = r.live();
				r.base = static_cast<std::uint16_t>(x.p.num);
				return changed(m, x.p.index, ring_change::base, was_live, replied);
			},
			[&](const get_vring_base &x) {
				if (!check_ring(x.p.index, "GET_VRING_BASE"))
					return false;
				// Stopped until the next SET_VRING_KICK.
				rings_[x.p.index].started = false;
				if (auto pos = dev_.stop_ring(m, x.p.index))
					reply_vring_base(req, x.p.index, *pos);
				replied = true;
				return true;
			},
			[&](const set_vring_kick &x) {
				return set_ring_fd(m, x.p.u64, &ring::kick, "SET_VRING_KICK", replied);
			},
			[&](const set_vring_call &x) {
				return set_ring_fd(m, x.p.u64, &ring::call, "SET_VRING_CALL", replied);
			},
			[&](const set_vring_err &x) {
				return set_ring_fd(m, x.p.u64, &ring::err, "SET_VRING_ERR", replied);
			},
			[&](const set_vring_enable &x) {
				if (!check_ring(x.p.index, "SET_VRING_ENABLE"))
					return false;
				if (x.p.num > 1)
					return refuse(fmt::format("state {} is neither 0 nor 1", x.p.num));
				ring &r = rings_[x.p.index];
				const bool was_live = r.live();
				r.enabled = x.p.num;
				return changed(m, x.p.index, ring_change::enable, was_live, replied);
			},
			[&](const set_slave_req_fd &) {
				// parse() guarantees the one fd.  Misses go out from a
				// loop that must not block on VM1.
				const int fd = m.fds[0].get();
				const int fl = ::fcntl(fd, F_GETFL);
				if (fl < 0 || ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
					throw_errno("fcntl(back-end channel, O_NONBLOCK)");
				slave_.emplace(std::move(m.fds[0]));
				spdlog::info("vhost-user: back-end channel set up");
				return true;
			},
			[&](const iotlb &x) {
				auto reject = [&](std::string_view why) {
					stats_.iotlb_rejected++;
					log_.warn("iotlb: rejected {}: {}", m.to_string(), why);
					return false;
				};
				if (!iommu())
					return reject("ACCESS_PLATFORM not negotiated");
				const iotlb_check chk = check_iotlb(x.p);
				if (chk.error)
					return reject(chk.error);
				std::uint64_t offset = 0;
				if (x.p.type == iotlb_update) {
					if (regions_.empty())
						return reject("no memory table");
					auto off = uaddr_to_offset(regions_, x.p.uaddr, x.p.size);
					if (!off)
						return reject("user address range is not inside one "
							      "memory region");
					offset = *off;
				}
				const iotlb_result r = dev_.iotlb_message(m, x.p, chk.to_end, offset);
				if (!r.ok)
					stats_.iotlb_rejected++;
				if (r.deferred)
					replied = true;
				return r.ok;
			},
		},
		m.body);
}

} // namespace vpci::vu
