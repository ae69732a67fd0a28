// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "test_util.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include <endian.h>
#include <poll.h>
#include <sys/socket.h>

#include <spdlog/sinks/ostream_sink.h>

#include "sim_vm1.hpp"

namespace vpci::test {

temp_dir::temp_dir()
{
	const char *base = std::getenv("TMPDIR");
	std::string tmpl = std::string(base && *base ? base : "/tmp") + "/vpci-test.XXXXXX";
	if (!::mkdtemp(tmpl.data()))
		throw_errno("mkdtemp(" + tmpl + ")");
	dir_ = tmpl;
}

temp_dir::~temp_dir()
{
	std::error_code ec;
	std::filesystem::remove_all(dir_, ec);
}

std::optional<ivshmem_msg> recv_ivshmem_msg(int sock)
{
	std::uint64_t le = 0;
	iovec iov{&le, sizeof(le)};
	alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
	msghdr msg{};
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	msg.msg_control = cbuf;
	msg.msg_controllen = sizeof(cbuf);

	ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	if (n < 0)
		throw_errno("recvmsg(test client)");
	if (n == 0)
		return std::nullopt;
	if (n != sizeof(le))
		throw std::runtime_error("short ivshmem message");
	ivshmem_msg m{static_cast<std::int64_t>(le64toh(le)), unique_fd()};
	for (cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			int fd;
			std::memcpy(&fd, CMSG_DATA(c), sizeof(fd));
			m.fd.reset(fd);
		}
	}
	return m;
}

log_capture::log_capture() : old_(spdlog::default_logger())
{
	auto sink = std::make_shared<spdlog::sinks::ostream_sink_st>(out_);
	auto logger = std::make_shared<spdlog::logger>("capture", std::move(sink));
	logger->set_pattern("%l %v");
	logger->set_level(spdlog::level::trace);
	spdlog::set_default_logger(std::move(logger));
}

log_capture::~log_capture()
{
	spdlog::set_default_logger(old_);
}

std::size_t log_capture::count(spdlog::level::level_enum level, const std::string &part) const
{
	const std::string prefix =
		std::string(spdlog::level::to_string_view(level).data(),
			    spdlog::level::to_string_view(level).size()) + " ";
	std::istringstream in(out_.str());
	std::size_t n = 0;
	for (std::string line; std::getline(in, line);)
		n += line.starts_with(prefix) && line.find(part) != std::string::npos;
	return n;
}

bool readable(int fd)
{
	pollfd p{fd, POLLIN, 0};
	return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

std::size_t lines_so_far(int fd, std::string &acc)
{
	char buf[65536];
	ssize_t r;
	while ((r = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
		acc.append(buf, static_cast<std::size_t>(r));
	return static_cast<std::size_t>(std::count(acc.begin(), acc.end(), '\n'));
}

std::size_t flood(int fd, const std::string &unit, std::size_t at_most)
{
	const int big = 4 << 20; // capped at net.core.wmem_max
	if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big)) < 0)
		throw_errno("setsockopt(SO_SNDBUF)");
	std::size_t sent = 0;
	while (sent + unit.size() <= at_most) {
		// One unit a call: a stream socket takes a small one whole or not at all.
		const ssize_t n = ::send(fd, unit.data(), unit.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0)
			throw_errno("send(flood)");
		sent += static_cast<std::size_t>(n);
	}
	return sent;
}

std::vector<fault_param> fault_params()
{
	std::vector<fault_param> v;
	for (const auto &fi : sim::faults())
		for (auto p : {sim::iova_policy::identity, sim::iova_policy::static_pool,
			       sim::iova_policy::transient})
			v.emplace_back(fi.name, p);
	return v;
}

std::string fault_param_name(const fault_param &p)
{
	std::string n = std::get<0>(p) + "_" + sim::policy_name(std::get<1>(p));
	std::replace(n.begin(), n.end(), '-', '_');
	return n;
}

} // namespace vpci::test
