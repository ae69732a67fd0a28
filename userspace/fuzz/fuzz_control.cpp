// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * libFuzzer target: the backend daemon's control socket, as vpci-ctl (or
 * anyone who can open it) writes to it.  The input is cut into pieces,
 * written to a stream socket and served by vpci::control_conn, the class
 * the daemon keeps per client: request lines put together over several
 * reads, each answered by control_request() against a stand-in for the
 * daemon's status and link.  A piece can be repeated (lines past the
 * length cap, deep JSON nesting); the socket is served after a piece, or
 * only once it is full, so lines arrive whole, split or many at a time.
 *
 * Findings: ASan/UBSan reports; an exception escaping serve(); a reply
 * that is not one line of JSON (nlohmann::json::accept) holding an object
 * with a boolean "ok"; a complete request line answered never or twice,
 * or dropped as too long when it is not; a request that is not JSON
 * answered "ok"; more than max_line + read_chunk bytes buffered; a
 * connection still open after EOF.
 *
 * Input: one byte of settings (bit 0: set_link() throws, as a failed
 * doorbell would; bits 1-4: length of status's "mem_file", taken from the
 * bytes that follow: a path is any bytes; bits 5-6: a repeated piece is
 * written 4, 32, 256 or 2048 times), then pieces: one control byte (low 6
 * bits + 1: the piece's length; bit 6: repeat it; bit 7: do not serve
 * before the next piece), then the piece's bytes.
 */
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "control_conn.hpp"

using vpci::control_conn;
using json = nlohmann::json;

namespace {

/** What one input may write: a few lines past the cap, a few budgets of lines. */
constexpr std::size_t max_sent = 160 * 1024;
constexpr std::size_t max_lines = 256;

[[noreturn]] void fail(const char *what, const std::string &detail = {})
{
	std::fprintf(stderr, "fuzz_control: %s%s%.200s\n", what, detail.empty() ? "" : ": ",
		     detail.c_str());
	std::abort();
}

/** The daemon's side of the requests: what status reports, what link sets. */
class stand_in final : public vpci::control_target {
public:
	bool link_throws = false;
	std::string mem_file;
	bool link = false;

	json status() const override
	{
		return {{"ok", true}, {"link", link ? "up" : "down"}, {"mem_file", mem_file}};
	}
	void set_link(bool up) override
	{
		if (link_throws)
			throw std::system_error(EPIPE, std::generic_category(), "send(doorbell)");
		link = up;
	}
};

struct session {
	int peer;
	std::optional<control_conn> conn;
	stand_in &daemon;
	std::string sent, replies;

	void read_replies()
	{
		char buf[65536];
		ssize_t n;
		while ((n = ::recv(peer, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
			replies.append(buf, static_cast<std::size_t>(n));
	}

	/** serve() until it waits for the socket (or the client is gone). */
	void serve()
	{
		for (unsigned turns = 0; conn; turns++) {
			if (turns > 100000)
				fail("serve() makes no progress");
			control_conn::state st;
			try {
				st = conn->serve(daemon);
			} catch (const std::exception &e) {
				fail("exception escaped serve()", e.what());
			} catch (...) {
				fail("exception escaped serve()");
			}
			if (conn->buffered() > control_conn::max_line + control_conn::read_chunk)
				fail("request buffer unbounded", std::to_string(conn->buffered()));
			read_replies();
			if (st == control_conn::state::closed)
				conn.reset();
			else if (st == control_conn::state::idle)
				return;
		}
	}

	void write(const std::uint8_t *p, std::size_t n)
	{
		while (n && conn) {
			ssize_t w = ::send(peer, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w > 0) {
				sent.append(reinterpret_cast<const char *>(p), static_cast<std::size_t>(w));
				p += w;
				n -= static_cast<std::size_t>(w);
			} else if (w < 0 && errno == EAGAIN) {
				serve(); // the socket is full: the daemon's turn
			} else {
				fail("send() to the control connection failed");
			}
		}
	}
};

bool blank(const std::string &s)
{
	return s.find_first_not_of(" \t") == std::string::npos;
}

bool too_long_error(const json &r)
{
	return r.contains("error") && r["error"].is_string() &&
	       r["error"].get_ref<const std::string &>().rfind("request line longer than", 0) == 0;
}

/** One reply per request line, in order, each a JSON object with "ok". */
void check(const std::string &sent, const std::string &replies)
{
	if (!replies.empty() && replies.back() != '\n')
		fail("reply without its newline");
	std::vector<json> rs;
	for (std::size_t b = 0, e; b < replies.size(); b = e + 1) {
		e = replies.find('\n', b);
		const std::string r = replies.substr(b, e - b);
		if (!json::accept(r))
			fail("reply is not JSON", r);
		json j = json::parse(r);
		if (!j.is_object() || !j.contains("ok") || !j["ok"].is_boolean())
			fail("reply is not an object with a boolean \"ok\"", r);
		rs.push_back(std::move(j));
	}

	std::size_t next = 0;
	for (std::size_t b = 0; b < sent.size();) {
		const std::size_t nl = sent.find('\n', b);
		const bool whole = nl != std::string::npos;
		std::string line = sent.substr(b, whole ? nl - b : std::string::npos);
		b = whole ? nl + 1 : sent.size();
		if (next < rs.size() && too_long_error(rs[next])) {
			if (line.size() <= control_conn::max_line)
				fail("line dropped as too long", std::to_string(line.size()));
			next++;
			if (next != rs.size())
				fail("replies after dropping a client");
			return;
		}
		if (!line.empty() && line.back() == '\r')
			line.pop_back();
		if (blank(line)) {
			// A blank last line without newline may get an answer.
			if (!whole && next < rs.size())
				next++;
			continue;
		}
		if (next >= rs.size())
			fail("request without a reply", line);
		if (!json::accept(line) && rs[next]["ok"].get<bool>())
			fail("malformed request answered ok", line);
		next++;
	}
	if (next != rs.size())
		fail("more replies than requests", std::to_string(rs.size() - next));
}

} // namespace

extern "C" int LLVMFuzzerInitialize(int *, char ***)
{
	spdlog::set_level(spdlog::level::off);
	return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size)
{
	if (size < 1)
		return 0;
	stand_in daemon;
	daemon.link_throws = data[0] & 1;
	const unsigned repeat = 4u << (3 * ((data[0] >> 5) & 3));
	std::size_t off = 1;
	const std::size_t path = std::min<std::size_t>((data[0] >> 1) & 15, size - off);
	daemon.mem_file.assign(reinterpret_cast<const char *>(data + off), path);
	off += path;

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	vpci::unique_fd peer(sv[0]);
	session s{sv[0], control_conn{vpci::unique_fd(sv[1])}, daemon, {}, {}};

	std::size_t lines = 0;
	while (s.conn && off < size && s.sent.size() < max_sent && lines < max_lines) {
		const std::uint8_t ctl = data[off++];
		const std::size_t n = std::min<std::size_t>((ctl & 63) + 1, size - off);
		if (!n)
			break;
		const auto nl = static_cast<std::size_t>(std::count(data + off, data + off + n, '\n'));
		if (ctl & 64) {
			std::string big;
			for (unsigned i = 0; i < repeat && lines < max_lines; i++, lines += nl)
				big.append(reinterpret_cast<const char *>(data + off), n);
			s.write(reinterpret_cast<const std::uint8_t *>(big.data()), big.size());
		} else {
			s.write(data + off, n);
			lines += nl;
		}
		off += n;
		if (!(ctl & 128))
			s.serve();
	}
	::shutdown(peer.get(), SHUT_WR);
	// A serve() reads read_budget at most: a full socket takes a few.
	for (unsigned i = 0; s.conn && i < 64; i++)
		s.serve();
	if (s.conn)
		fail("connection open after EOF");
	check(s.sent, s.replies);
	return 0;
}
