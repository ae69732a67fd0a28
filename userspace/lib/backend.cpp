// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "backend.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>

#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace vpci {

/** Longest control request line accepted before the client is dropped. */
static constexpr std::size_t max_ctl_line = 64 * 1024;

backend::backend(const backend_config &cfg)
	: shm_(cfg.mem_file, cfg.ram_size),
	  ctrl_(control_area::create(shm_, cfg.ctrl)),
	  ivs_(cfg.ivshmem_socket, shm_.fd(), VPCI_NUM_VECTORS(cfg.ctrl.max_queue_pairs)),
	  epoll_(make_epoll())
{
	spdlog::info("memory file {}: {} bytes, VM1 RAM {} bytes, control area at {:#x}",
		     shm_.path(), shm_.file_size(), shm_.ram_size(), shm_.ctrl_offset());
	if (!cfg.control_socket.empty()) {
		ctl_listener_.emplace(cfg.control_socket);
		spdlog::info("control: listening on {}", cfg.control_socket);
	}
	watch(ivs_.listen_fd(), tag::ivs_listen);
	watch(ivs_.doorbell_fd(VPCI_VEC_CONFIG), tag::doorbell_config);
	if (ctl_listener_)
		watch(ctl_listener_->fd(), tag::ctl_listen);
	last_driver_ = ctrl_.read_driver();
}

void backend::watch(int fd, tag t)
{
	epoll_add(epoll_.get(), fd, EPOLLIN,
		  (static_cast<std::uint64_t>(t) << 32) | static_cast<std::uint32_t>(fd));
}

void backend::handle_signals()
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, nullptr) < 0)
		throw_errno("sigprocmask(SIG_BLOCK, TERM|INT)");
	sigfd_.reset(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
	if (!sigfd_)
		throw_errno("signalfd(TERM|INT)");
	watch(sigfd_.get(), tag::signal);
}

void backend::run()
{
	while (!stopping_)
		run_once(-1);
}

void backend::run_once(int timeout_ms)
{
	epoll_event evs[16];
	int n = ::epoll_wait(epoll_.get(), evs, 16, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return;
		throw_errno("epoll_wait()");
	}
	for (int i = 0; i < n && !stopping_; i++)
		dispatch(static_cast<tag>(evs[i].data.u64 >> 32),
			 static_cast<int>(evs[i].data.u64 & 0xffffffffu));
}

void backend::dispatch(tag t, int fd)
{
	switch (t) {
	case tag::ivs_listen:
		if (ivs_.handle_listen())
			watch(ivs_.client_fd(), tag::ivs_client);
		break;
	case tag::ivs_client:
		// A stale event for a socket already replaced is harmless:
		// handle_client() only reads the current client.
		if (fd == ivs_.client_fd())
			ivs_.handle_client();
		break;
	case tag::doorbell_config:
		on_config_doorbell();
		break;
	case tag::ctl_listen:
		while (auto s = ctl_listener_->accept()) {
			int cfd = s->get();
			ctl_clients_.emplace(cfd, ctl_client{std::move(*s), {}});
			watch(cfd, tag::ctl_client);
			spdlog::debug("control: client fd {} connected", cfd);
		}
		break;
	case tag::ctl_client:
		on_ctl_client(fd);
		break;
	case tag::signal: {
		signalfd_siginfo si;
		if (::read(sigfd_.get(), &si, sizeof(si)) == sizeof(si)) {
			spdlog::info("received {}, shutting down", strsignal(static_cast<int>(si.ssi_signo)));
			stopping_ = true;
		}
		break;
	}
	}
}

static std::string ds_status_string(std::uint32_t s)
{
	std::string r = fmt::format("{:#x}", s);
	if (s & VPCI_DS_BOUND)
		r += " bound";
	if (s & VPCI_DS_UP)
		r += " up";
	return r;
}

void backend::on_config_doorbell()
{
	if (!eventfd_consume(ivs_.doorbell_fd(VPCI_VEC_CONFIG)))
		return;
	const driver_state d = ctrl_.read_driver();
	const driver_state &o = last_driver_;
	if (d.status != o.status)
		spdlog::info("driver: status {} -> {}", ds_status_string(o.status),
			     ds_status_string(d.status));
	if (d.device_features != o.device_features)
		spdlog::info("driver: device features {:#x} -> {:#x}", o.device_features,
			     d.device_features);
	if (d.mtu != o.mtu)
		spdlog::info("driver: mtu {} -> {}", o.mtu, d.mtu);
	if (d.generation_seen != o.generation_seen)
		spdlog::debug("driver: generation seen {} (backend at {})", d.generation_seen,
			      ctrl_.generation());
	last_driver_ = d;
}

void backend::set_link(bool up)
{
	ctrl_.set_link(up);
	spdlog::info("link {} (generation {})", up ? "up" : "down", ctrl_.generation());
	ivs_.notify_vm2(VPCI_VEC_CONFIG);
}

nlohmann::json backend::status() const
{
	const driver_state d = ctrl_.read_driver();
	return {
		{"ok", true},
		{"vm2_connected", ivs_.client_connected()},
		{"client_id", ivs_.client_id()},
		{"link", ctrl_.link_up() ? "up" : "down"},
		{"generation", ctrl_.generation()},
		{"driver",
		 {{"status", d.status},
		  {"bound", d.bound()},
		  {"up", d.up()},
		  {"features", d.device_features},
		  {"mtu", d.mtu}}},
		{"mem_file", shm_.path()},
		{"file_size", shm_.file_size()},
		{"peer_mem_size", shm_.ram_size()},
	};
}

static std::string error_reply(const std::string &msg)
{
	return nlohmann::json{{"ok", false}, {"error", msg}}.dump();
}

std::string backend::handle_control_line(const std::string &line)
{
	auto req = nlohmann::json::parse(line, nullptr, false);
	if (req.is_discarded())
		return error_reply("malformed JSON");
	if (!req.is_object())
		return error_reply("request must be a JSON object");
	auto cmd = req.find("cmd");
	if (cmd == req.end() || !cmd->is_string())
		return error_reply("missing string field 'cmd'");

	const auto &name = cmd->get_ref<const std::string &>();
	if (name == "status")
		return status().dump();
	if (name == "link") {
		auto st = req.find("state");
		if (st == req.end() || !st->is_string() ||
		    (*st != "up" && *st != "down"))
			return error_reply("link: field 'state' must be \"up\" or \"down\"");
		set_link(*st == "up");
		return nlohmann::json{{"ok", true}}.dump();
	}
	return error_reply("unknown command '" + name + "'");
}

/** Send one reply line; false if the client must be dropped. */
static bool ctl_send(int fd, std::string reply)
{
	reply += '\n';
	// Replies are small; a client that lets its receive buffer fill up
	// without reading is dropped rather than buffered for.
	ssize_t n = ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
	if (n != static_cast<ssize_t>(reply.size())) {
		spdlog::warn("control: dropping client fd {}: {}", fd,
			     n < 0 ? std::strerror(errno) : "reply did not fit");
		return false;
	}
	return true;
}

bool backend::ctl_reply(ctl_client &c, const std::string &line)
{
	std::string out;
	try {
		out = handle_control_line(line);
	} catch (const std::exception &e) {
		out = error_reply(e.what());
	}
	return ctl_send(c.fd.get(), std::move(out));
}

void backend::on_ctl_client(int fd)
{
	auto it = ctl_clients_.find(fd);
	if (it == ctl_clients_.end())
		return;
	ctl_client &c = it->second;
	bool eof = false, drop = false;
	char buf[4096];

	for (;;) {
		ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			c.in.append(buf, static_cast<std::size_t>(n));
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			eof = n == 0 || errno != EAGAIN;
			break;
		}
	}

	std::size_t pos;
	while (!drop && (pos = c.in.find('\n')) != std::string::npos) {
		std::string line = c.in.substr(0, pos);
		c.in.erase(0, pos + 1);
		if (!line.empty() && line.back() == '\r')
			line.pop_back();
		if (line.find_first_not_of(" \t") == std::string::npos)
			continue;
		drop = !ctl_reply(c, line);
	}
	if (!drop && c.in.size() > max_ctl_line) {
		ctl_send(fd, error_reply("request line longer than " +
					 std::to_string(max_ctl_line) + " bytes"));
		drop = true;
	}
	if (!drop && eof && !c.in.empty())
		ctl_reply(c, c.in); // last request without newline
	if (drop || eof) {
		spdlog::debug("control: client fd {} closed", fd);
		ctl_clients_.erase(it); // closing removes it from epoll
	}
}

} // namespace vpci
