// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "vhost_user.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <poll.h>
#include <sys/socket.h>

#include <fmt/format.h>

namespace vpci::vu {

namespace {

struct req_info {
	std::uint32_t id;
	const char *name;
};

constexpr req_info req_names[] = {
	{0, "VHOST_USER_NONE"},
	{1, "VHOST_USER_GET_FEATURES"},
	{2, "VHOST_USER_SET_FEATURES"},
	{3, "VHOST_USER_SET_OWNER"},
	{4, "VHOST_USER_RESET_OWNER"},
	{5, "VHOST_USER_SET_MEM_TABLE"},
	{6, "VHOST_USER_SET_LOG_BASE"},
	{7, "VHOST_USER_SET_LOG_FD"},
	{8, "VHOST_USER_SET_VRING_NUM"},
	{9, "VHOST_USER_SET_VRING_ADDR"},
	{10, "VHOST_USER_SET_VRING_BASE"},
	{11, "VHOST_USER_GET_VRING_BASE"},
	{12, "VHOST_USER_SET_VRING_KICK"},
	{13, "VHOST_USER_SET_VRING_CALL"},
	{14, "VHOST_USER_SET_VRING_ERR"},
	{15, "VHOST_USER_GET_PROTOCOL_FEATURES"},
	{16, "VHOST_USER_SET_PROTOCOL_FEATURES"},
	{17, "VHOST_USER_GET_QUEUE_NUM"},
	{18, "VHOST_USER_SET_VRING_ENABLE"},
	{19, "VHOST_USER_SEND_RARP"},
	{20, "VHOST_USER_NET_SET_MTU"},
	{21, "VHOST_USER_SET_SLAVE_REQ_FD"},
	{22, "VHOST_USER_IOTLB_MSG"},
	{23, "VHOST_USER_SET_VRING_ENDIAN"},
	{24, "VHOST_USER_GET_CONFIG"},
	{25, "VHOST_USER_SET_CONFIG"},
	{26, "VHOST_USER_CREATE_CRYPTO_SESSION"},
	{27, "VHOST_USER_CLOSE_CRYPTO_SESSION"},
	{28, "VHOST_USER_POSTCOPY_ADVISE"},
	{29, "VHOST_USER_POSTCOPY_LISTEN"},
	{30, "VHOST_USER_POSTCOPY_END"},
	{31, "VHOST_USER_GET_INFLIGHT_FD"},
	{32, "VHOST_USER_SET_INFLIGHT_FD"},
	{33, "VHOST_USER_GPU_SET_SOCKET"},
	{34, "VHOST_USER_RESET_DEVICE"},
	{35, "VHOST_USER_VRING_KICK"},
	{36, "VHOST_USER_GET_MAX_MEM_SLOTS"},
	{37, "VHOST_USER_ADD_MEM_REG"},
	{38, "VHOST_USER_REM_MEM_REG"},
	{39, "VHOST_USER_SET_STATUS"},
	{40, "VHOST_USER_GET_STATUS"},
};

template <typename T> struct is_empty_msg : std::false_type {};
template <request R> struct is_empty_msg<empty_msg<R>> : std::true_type {};

/** Decode a message type T from @p payload; false if the size is wrong. */
template <typename T> bool decode(const std::vector<std::uint8_t> &payload, T &out)
{
	if constexpr (is_empty_msg<T>::value) {
		return payload.empty();
	} else if constexpr (std::is_same_v<decltype(out.p), memory>) {
		// Variable: header + nregions regions, nregions 1..8.
		if (payload.size() < 8)
			return false;
		std::memset(&out.p, 0, sizeof(out.p));
		std::memcpy(&out.p, payload.data(), 8);
		if (out.p.nregions < 1 || out.p.nregions > max_mem_regions ||
		    payload.size() != 8 + out.p.nregions * sizeof(mem_region))
			return false;
		std::memcpy(&out.p, payload.data(), payload.size());
		return true;
	} else if constexpr (std::is_same_v<decltype(out.p), iotlb_msg>) {
		// QEMU sends the padded 32-byte struct; the packed 26 bytes of
		// the spec's table are accepted too.
		if (payload.size() != sizeof(iotlb_msg) && payload.size() != 26)
			return false;
		std::memset(&out.p, 0, sizeof(out.p));
		std::memcpy(&out.p, payload.data(), payload.size());
		return true;
	} else {
		if (payload.size() != sizeof(out.p))
			return false;
		std::memcpy(&out.p, payload.data(), sizeof(out.p));
		return true;
	}
}

/** Build the variant alternative whose id is @p req. */
template <std::size_t I = 0>
std::optional<message_body> decode_body(request req, const std::vector<std::uint8_t> &payload,
					bool &size_ok)
{
	if constexpr (I == std::variant_size_v<message_body>) {
		size_ok = false;
		return std::nullopt;
	} else {
		using T = std::variant_alternative_t<I, message_body>;
		if (T::id == req) {
			T m{};
			size_ok = decode(payload, m);
			if (!size_ok)
				return std::nullopt;
			return message_body(std::move(m));
		}
		return decode_body<I + 1>(req, payload, size_ok);
	}
}

/** fds a message must carry, or nullopt if it cannot be known. */
std::size_t expected_fds(const message_body &b)
{
	return std::visit(
		[](const auto &m) -> std::size_t {
			using T = std::decay_t<decltype(m)>;
			if constexpr (std::is_same_v<T, set_mem_table>)
				return m.p.nregions;
			else if constexpr (std::is_same_v<T, set_vring_kick> ||
					   std::is_same_v<T, set_vring_call> ||
					   std::is_same_v<T, set_vring_err>)
				return (m.p.u64 & vring_nofd_mask) ? 0 : 1;
			else if constexpr (std::is_same_v<T, set_log_base> ||
					   std::is_same_v<T, set_log_fd> ||
					   std::is_same_v<T, set_slave_req_fd>)
				return 1;
			else
				return 0;
		},
		b);
}

} // namespace

std::string request_name(std::uint32_t req)
{
	for (const auto &r : req_names)
		if (r.id == req)
			return r.name;
	return fmt::format("UNKNOWN({})", req);
}

request message::req() const
{
	return std::visit([](const auto &m) { return std::decay_t<decltype(m)>::id; }, body);
}

std::string message::to_string() const
{
	std::string s = request_name(static_cast<std::uint32_t>(req()));
	s += std::visit(
		[](const auto &m) -> std::string {
			using T = std::decay_t<decltype(m)>;
			if constexpr (is_empty_msg<T>::value) {
				return "";
			} else if constexpr (std::is_same_v<decltype(m.p), u64_payload>) {
				return fmt::format(" u64={:#x}", m.p.u64);
			} else if constexpr (std::is_same_v<decltype(m.p), vring_state>) {
				return fmt::format(" index={} num={}", m.p.index, m.p.num);
			} else if constexpr (std::is_same_v<decltype(m.p), vring_addr>) {
				return fmt::format(" index={} flags={:#x} desc={:#x} used={:#x} "
						   "avail={:#x} log={:#x}",
						   m.p.index, m.p.flags, m.p.desc_user_addr,
						   m.p.used_user_addr, m.p.avail_user_addr,
						   m.p.log_guest_addr);
			} else if constexpr (std::is_same_v<decltype(m.p), memory>) {
				std::string r = fmt::format(" nregions={}", m.p.nregions);
				for (std::uint32_t i = 0; i < m.p.nregions && i < max_mem_regions; i++)
					r += fmt::format(" [gpa={:#x} size={:#x} uaddr={:#x} off={:#x}]",
							 m.p.regions[i].guest_phys_addr,
							 m.p.regions[i].memory_size,
							 m.p.regions[i].userspace_addr,
							 m.p.regions[i].mmap_offset);
				return r;
			} else if constexpr (std::is_same_v<decltype(m.p), iotlb_msg>) {
				return fmt::format(" type={} iova={:#x} size={:#x} uaddr={:#x} perm={}",
						   m.p.type, m.p.iova, m.p.size, m.p.uaddr, m.p.perm);
			} else {
				return fmt::format(" mmap_size={:#x} mmap_offset={:#x}", m.p.mmap_size,
						   m.p.mmap_offset);
			}
		},
		body);
	if (flags & flag_need_reply)
		s += " need_reply";
	if (!fds.empty())
		s += fmt::format(" fds={}", fds.size());
	return s;
}

std::variant<message, parse_error> parse(std::uint32_t req, std::uint32_t flags,
					 const std::vector<std::uint8_t> &payload,
					 std::vector<unique_fd> fds)
{
	auto err = [&](bool fatal, std::string why) {
		return parse_error{fatal, req, flags, std::move(why)};
	};
	if ((flags & flag_version_mask) != version)
		return err(true, fmt::format("bad version {} in flags {:#x}", flags & flag_version_mask,
					     flags));
	if (flags & flag_reply)
		return err(false, "reply flag set on a request");
	if (flags & ~(flag_version_mask | flag_reply | flag_need_reply))
		return err(false, fmt::format("unknown flags {:#x}", flags));
	bool size_ok = true;
	auto body = decode_body(static_cast<request>(req), payload, size_ok);
	if (!body && size_ok)
		return err(false, "unknown or unsupported request");
	if (!body)
		return err(false, fmt::format("bad payload size {}", payload.size()));
	const std::size_t want = expected_fds(*body);
	if (fds.size() != want)
		return err(false, fmt::format("carries {} fds, expected {}", fds.size(), want));
	return message{flags, std::move(*body), std::move(fds)};
}

namespace {

/**
 * Read exactly @p len bytes, waiting up to @p timeout_ms for each chunk.
 * False at EOF or when a chunk does not come in time; a failing recv() or
 * poll() throws with its errno (ECONNRESET is not a "truncated" message).
 */
bool read_full(int fd, void *buf, std::size_t len, int timeout_ms)
{
	auto *p = static_cast<std::uint8_t *>(buf);
	while (len) {
		ssize_t n = ::recv(fd, p, len, MSG_DONTWAIT);
		if (n > 0) {
			p += n;
			len -= static_cast<std::size_t>(n);
			continue;
		}
		if (n == 0)
			return false;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			throw_errno("recv(vhost-user)");
		pollfd pfd{fd, POLLIN, 0};
		const int r = ::poll(&pfd, 1, timeout_ms);
		if (r < 0 && errno != EINTR)
			throw_errno("poll(vhost-user)");
		if (r == 0)
			return false;
	}
	return true;
}

/**
 * One non-blocking recvmsg() of up to @p len bytes into @p buf.  Every
 * SCM_RIGHTS fd that came with them is appended to @p fds at once (so
 * whatever happens to the message later closes them instead of leaking
 * them); @p ctrunc is set if the kernel had to drop some.  Returns bytes,
 * 0 at EOF, -1 with errno.
 */
ssize_t recv_some(int sock, void *buf, std::size_t len, std::vector<unique_fd> &fds,
		  bool &ctrunc)
{
	iovec iov{buf, len};
	alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * max_fds)];
	msghdr mh{};
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf;
	mh.msg_controllen = sizeof(cbuf);

	ssize_t n;
	do
		n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return n; // nothing received: cbuf is uninitialised, not control data
	for (cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		std::size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (std::size_t i = 0; i < nfd; i++) {
			int fd;
			std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			fds.emplace_back(fd);
		}
	}
	ctrunc = ctrunc || (mh.msg_flags & MSG_CTRUNC);
	return n;
}

} // namespace

connection::result connection::recv()
{
	// At most one message per call; what is missing is waited for by the
	// caller's event loop, not here.
	while (hdr_got_ < header_size) {
		const ssize_t n = recv_some(sock_.get(), reinterpret_cast<std::uint8_t *>(hdr_) + hdr_got_,
					    header_size - hdr_got_, fds_, ctrunc_);
		if (n == 0)
			return eof{};
		if (n < 0 && errno == EAGAIN)
			return incomplete{};
		if (n < 0)
			return parse_error{true, 0, 0, fmt::format("recvmsg: {}", std::strerror(errno))};
		hdr_got_ += static_cast<std::size_t>(n);
		if (hdr_got_ == header_size) {
			if (hdr_[2] > max_payload)
				return parse_error{true, hdr_[0], hdr_[1],
						   fmt::format("payload size {} exceeds {}", hdr_[2],
							       max_payload)};
			payload_.assign(hdr_[2], 0);
			payload_got_ = 0;
		}
	}
	while (payload_got_ < payload_.size()) {
		const ssize_t n = recv_some(sock_.get(), payload_.data() + payload_got_,
					    payload_.size() - payload_got_, fds_, ctrunc_);
		if (n == 0)
			return eof{};
		if (n < 0 && errno == EAGAIN)
			return incomplete{};
		if (n < 0)
			return parse_error{true, hdr_[0], hdr_[1],
					   fmt::format("recvmsg: {}", std::strerror(errno))};
		payload_got_ += static_cast<std::size_t>(n);
	}
	// Whole: the next call starts a new message.
	const std::uint32_t req = hdr_[0], flags = hdr_[1];
	hdr_got_ = 0;
	std::vector<unique_fd> fds = std::move(fds_);
	fds_.clear();
	const bool ctrunc = std::exchange(ctrunc_, false);
	const std::vector<std::uint8_t> payload = std::move(payload_);
	payload_.clear();
	if (ctrunc) {
		fds.clear(); // close what did arrive
		return parse_error{false, req, flags,
				   fmt::format("more than {} fds attached", max_fds)};
	}
	auto r = parse(req, flags, payload, std::move(fds));
	if (auto *m = std::get_if<message>(&r))
		return std::move(*m);
	return std::get<parse_error>(r);
}

void send_raw(int sock, const void *data, std::size_t len, const std::vector<int> &fds)
{
	iovec iov{const_cast<void *>(data), len};
	alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 16)] = {};
	msghdr mh{};
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (!fds.empty()) {
		if (fds.size() > 16)
			throw std::invalid_argument("send_raw: too many fds");
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
		cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
		std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
	}
	ssize_t n;
	do
		n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n != static_cast<ssize_t>(len)) {
		if (n >= 0)
			errno = EAGAIN;
		throw_errno("sendmsg(vhost-user)");
	}
}

void connection::send_reply(std::uint32_t req, const void *payload, std::size_t len)
{
	std::vector<std::uint8_t> buf(header_size + len);
	const std::uint32_t hdr[3] = {req, version | flag_reply, static_cast<std::uint32_t>(len)};
	std::memcpy(buf.data(), hdr, header_size);
	if (len)
		std::memcpy(buf.data() + header_size, payload, len);
	send_raw(sock_.get(), buf.data(), buf.size(), {});
}

void connection::send_request(std::uint32_t req, std::uint32_t flags, const void *payload,
			      std::size_t len)
{
	std::vector<std::uint8_t> buf(header_size + len);
	const std::uint32_t hdr[3] = {req, flags, static_cast<std::uint32_t>(len)};
	std::memcpy(buf.data(), hdr, header_size);
	if (len)
		std::memcpy(buf.data() + header_size, payload, len);
	// The slave channel is non-blocking; QEMU reads it from its main loop.
	send_raw(sock_.get(), buf.data(), buf.size(), {});
}

const char *region_error(const mem_region &r) noexcept
{
	std::uint64_t end;
	if (r.memory_size == 0)
		return "size 0";
	if (__builtin_add_overflow(r.mmap_offset, r.memory_size, &end))
		return "mmap offset + size overflows";
	if (r.userspace_addr + (r.memory_size - 1) < r.userspace_addr)
		return "user address range wraps";
	if (r.guest_phys_addr + (r.memory_size - 1) < r.guest_phys_addr)
		return "guest physical range wraps";
	return nullptr;
}

std::optional<std::uint64_t> uaddr_to_offset(const std::vector<region> &rs, std::uint64_t uaddr,
					     std::uint64_t size) noexcept
{
	for (const region &r : rs)
		if (uaddr >= r.uaddr && uaddr - r.uaddr < r.size && size <= r.size - (uaddr - r.uaddr))
			return r.offset + (uaddr - r.uaddr);
	return std::nullopt;
}

std::optional<std::uint64_t> uaddr_to_gpa(const std::vector<region> &rs,
					  std::uint64_t uaddr) noexcept
{
	for (const region &r : rs)
		if (uaddr >= r.uaddr && uaddr - r.uaddr < r.size)
			return r.gpa + (uaddr - r.uaddr);
	return std::nullopt;
}

std::optional<ring_addrs> ring_addresses(const vring_addr &a, bool iommu,
					 const std::vector<region> &rs) noexcept
{
	if (iommu)
		return ring_addrs{a.desc_user_addr, a.avail_user_addr, a.used_user_addr};
	auto d = uaddr_to_gpa(rs, a.desc_user_addr), av = uaddr_to_gpa(rs, a.avail_user_addr),
	     u = uaddr_to_gpa(rs, a.used_user_addr);
	if (!d || !av || !u)
		return std::nullopt;
	return ring_addrs{*d, *av, *u};
}

iotlb_check check_iotlb(const iotlb_msg &t) noexcept
{
	iotlb_check c;
	if (t.type != iotlb_update && t.type != iotlb_invalidate) {
		c.error = "type is neither UPDATE nor INVALIDATE";
		return c;
	}
	const bool wraps = t.size && t.iova + (t.size - 1) < t.iova;
	c.to_end = t.type == iotlb_invalidate && (t.size == 0 || wraps);
	if (c.to_end)
		return c;
	if (t.size == 0)
		c.error = "size 0";
	else if (wraps)
		c.error = "IOVA range wraps";
	else if (t.type == iotlb_update && (t.perm < 1 || t.perm > 3)) // VHOST_ACCESS_RO..RW
		c.error = "bad permission";
	else if (t.type == iotlb_update && t.uaddr + (t.size - 1) < t.uaddr)
		c.error = "user address range wraps";
	return c;
}

std::optional<unsigned> vring_fd_index(std::uint64_t u, unsigned nqueues) noexcept
{
	if (u & ~(vring_idx_mask | vring_nofd_mask) || (u & vring_idx_mask) >= nqueues)
		return std::nullopt;
	return static_cast<unsigned>(u & vring_idx_mask);
}

std::optional<std::uint64_t> raw_message::u64() const
{
	if (payload.size() < 8)
		return std::nullopt;
	std::uint64_t v;
	std::memcpy(&v, payload.data(), 8);
	return v;
}

void send_message(int sock, std::uint32_t req, std::uint32_t flags, const void *payload,
		  std::size_t len, const std::vector<int> &fds)
{
	if (len > max_payload || fds.size() > max_fds)
		throw std::invalid_argument(fmt::format("vhost-user {}: payload {} bytes, {} fds",
							request_name(req), len, fds.size()));
	std::vector<std::uint8_t> buf(header_size + len);
	const std::uint32_t hdr[3] = {req, flags, static_cast<std::uint32_t>(len)};
	std::memcpy(buf.data(), hdr, header_size);
	if (len)
		std::memcpy(buf.data() + header_size, payload, len);
	send_raw(sock, buf.data(), buf.size(), fds);
}

std::optional<raw_message> recv_raw(int sock, int timeout_ms)
{
	pollfd pfd{sock, POLLIN, 0};
	int r;
	do
		r = ::poll(&pfd, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		throw_errno("poll(vhost-user)");
	if (r == 0)
		return std::nullopt;

	std::uint32_t hdr[3] = {};
	std::vector<unique_fd> fds;
	bool ctrunc = false;
	const ssize_t n = recv_some(sock, hdr, header_size, fds, ctrunc);
	if (n < 0 && errno == EAGAIN)
		return std::nullopt;
	if (n < 0)
		throw_errno("recvmsg(vhost-user)");
	if (n == 0)
		throw std::runtime_error("vhost-user: peer closed the connection");
	// The front-end's own blocking client (simulator, tests) may wait.
	if (static_cast<std::size_t>(n) < header_size &&
	    !read_full(sock, reinterpret_cast<std::uint8_t *>(hdr) + n, header_size - n, 1000))
		throw std::runtime_error("vhost-user: truncated header (EOF or no more in 1 s)");
	const std::uint32_t size = hdr[2];
	raw_message m;
	m.req = hdr[0];
	m.flags = hdr[1];
	m.fds = std::move(fds);
	if (size > max_payload)
		throw std::runtime_error(fmt::format("vhost-user: {} payload of {} bytes",
						     request_name(m.req), size));
	m.payload.resize(size);
	if (size && !read_full(sock, m.payload.data(), size, 1000))
		throw std::runtime_error(fmt::format(
			"vhost-user: truncated {} payload (EOF or no more in 1 s)",
			request_name(m.req)));
	// Read whole first, so that the stream stays in step; the fds that did
	// arrive close with m.
	if (ctrunc)
		throw std::runtime_error(fmt::format("vhost-user: {} with more than {} fds",
						     request_name(m.req), max_fds));
	return m;
}

} // namespace vpci::vu
