// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "control_conn.hpp"

#include <cerrno>
#include <cstring>
#include <exception>

#include <sys/socket.h>

#include <spdlog/spdlog.h>

namespace vpci {

namespace {
/** A reply that is not a status: {"ok": true} or {"ok": false, "error": "..."}. */
struct control_ack {
	bool ok = true;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(control_ack, ok)
struct control_failure {
	bool ok = false;
	std::string error;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(control_failure, ok, error)
} // namespace

std::string control_error(const std::string &msg)
{
	return nlohmann::json(control_failure{false, msg}).dump();
}

std::string control_request(const std::string &line, control_target &t)
{
	auto req = nlohmann::json::parse(line, nullptr, false);
	if (req.is_discarded())
		return control_error("malformed JSON");
	if (!req.is_object())
		return control_error("request must be a JSON object");
	auto cmd = req.find("cmd");
	if (cmd == req.end() || !cmd->is_string())
		return control_error("missing string field 'cmd'");

	const auto &name = cmd->get_ref<const std::string &>();
	if (name == "status")
		return t.status().dump();
	if (name == "link") {
		auto st = req.find("state");
		if (st == req.end() || !st->is_string() ||
		    (*st != "up" && *st != "down"))
			return control_error("link: field 'state' must be \"up\" or \"down\"");
		t.set_link(*st == "up");
		return nlohmann::json(control_ack{}).dump();
	}
	return control_error("unknown command '" + name + "'");
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

bool control_conn::reply(control_target &t, const std::string &line)
{
	std::string out;
	try {
		out = control_request(line, t);
	} catch (const std::exception &e) {
		out = control_error(e.what());
	}
	return ctl_send(fd_.get(), std::move(out));
}

control_conn::state control_conn::serve(control_target &t)
{
	const int fd = fd_.get();
	bool eof = false, drop = false;
	char buf[read_chunk];
	std::size_t got = 0;
	unsigned lines = 0;

	// Bounded: reading stops at the first chunk that completes a request
	// (or at the budget, for one long line); whole requests already
	// waiting are answered first, line_budget of them.  Level-triggered
	// epoll, or state::more, brings the rest next turn.
	while (got < read_budget && in_.size() <= max_line &&
	       in_.find('\n') == std::string::npos) {
		ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			in_.append(buf, static_cast<std::size_t>(n));
			got += static_cast<std::size_t>(n);
		} else if (n < 0 && errno == EINTR) {
			continue;
		} else {
			eof = n == 0 || errno != EAGAIN;
			break;
		}
	}

	std::size_t pos;
	while (!drop && lines < line_budget && (pos = in_.find('\n')) != std::string::npos) {
		lines++;
		std::string line = in_.substr(0, pos);
		in_.erase(0, pos + 1);
		if (!line.empty() && line.back() == '\r')
			line.pop_back();
		if (line.find_first_not_of(" \t") == std::string::npos)
			continue;
		drop = !reply(t, line);
	}
	if (!drop && in_.find('\n') != std::string::npos)
		return state::more; // the rest next turn
	if (!drop && in_.size() > max_line) {
		ctl_send(fd, control_error("request line longer than " + std::to_string(max_line) +
					   " bytes"));
		drop = true;
	}
	if (!drop && eof && !in_.empty())
		reply(t, in_); // last request without newline
	return drop || eof ? state::closed : state::idle;
}

} // namespace vpci
