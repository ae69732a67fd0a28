// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * vpci-ctl: talk to vpci-backend's control socket, or inspect and patch the
 * control-area header of a memory file directly (fault injection for tests).
 */
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <stdexcept>
#include <system_error>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "parse.hpp"
#include "control_area.hpp"
#include "fd.hpp"

namespace {

using vpci::parse_u64;

/** Send one request line and return the reply line (5 s timeout). */
nlohmann::json request(const std::string &sock_path, const nlohmann::json &req)
{
	vpci::unique_fd s = vpci::unix_connect(sock_path);
	std::string out = req.dump() + "\n", in;

	if (::send(s.get(), out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size()))
		vpci::throw_errno("send(" + sock_path + ")");
	while (in.find('\n') == std::string::npos) {
		pollfd p{s.get(), POLLIN, 0};
		int r = ::poll(&p, 1, 5000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			vpci::throw_errno("poll(" + sock_path + ")");
		if (r == 0)
			throw std::runtime_error("no reply from " + sock_path + " within 5 s");
		char buf[4096];
		ssize_t n = ::recv(s.get(), buf, sizeof(buf), 0);
		if (n < 0)
			vpci::throw_errno("recv(" + sock_path + ")");
		if (n == 0)
			throw std::runtime_error(sock_path + " closed the connection without a reply");
		in.append(buf, static_cast<std::size_t>(n));
	}
	in.resize(in.find('\n'));
	auto reply = nlohmann::json::parse(in, nullptr, false);
	if (reply.is_discarded() || !reply.is_object())
		throw std::runtime_error("malformed reply: " + in);
	return reply;
}

using header_assignment = std::pair<const vpci::header_field *, std::uint64_t>;

/** One --set FIELD=VALUE; std::invalid_argument saying what is wrong. */
header_assignment parse_set(const std::string &a)
{
	auto eq = a.find('=');
	if (eq == std::string::npos)
		throw std::invalid_argument("'" + a + "': expected FIELD=VALUE");
	std::string name = a.substr(0, eq), val = a.substr(eq + 1);
	const vpci::header_field *f = vpci::find_header_field(name);
	if (!f) {
		std::string known;
		for (const auto &h : vpci::header_fields())
			known += std::string(known.empty() ? "" : ", ") + h.name;
		throw std::invalid_argument("unknown header field '" + name + "' (known: " + known +
					    ")");
	}
	auto v = parse_u64(val);
	if (!v)
		throw std::invalid_argument(name + ": '" + val +
					    "' is not a decimal or 0x hex number");
	if (f->size < 8 && *v >> (8 * f->size))
		throw std::invalid_argument(
			fmt::format("{}: {} does not fit in {} bytes", name, val, f->size));
	return {f, *v};
}

int cmd_header(const std::string &mem_file, const std::vector<std::string> &sets, bool json)
{
	// Every assignment was checked while parsing (before the file is
	// opened for writing).
	std::vector<header_assignment> todo;
	for (const auto &a : sets)
		todo.push_back(parse_set(a));

	const bool rw = !todo.empty();
	vpci::unique_fd fd(::open(mem_file.c_str(), (rw ? O_RDWR : O_RDONLY) | O_CLOEXEC));
	if (!fd)
		vpci::throw_errno("open(" + mem_file + ")");
	struct stat st;
	if (::fstat(fd.get(), &st) < 0)
		vpci::throw_errno("fstat(" + mem_file + ")");
	auto area = vpci::control_area::map(fd.get(), static_cast<std::uint64_t>(st.st_size), rw);
	vpci_ctrl_hdr &h = area.raw().hdr;

	for (auto &[f, v] : todo)
		vpci::header_set(h, *f, v);

	if (json) {
		nlohmann::json j = nlohmann::json::object();
		for (const auto &f : vpci::header_fields())
			j[f.name] = vpci::header_get(h, f);
		std::puts(j.dump().c_str());
	} else {
		for (const auto &f : vpci::header_fields()) {
			std::uint64_t v = vpci::header_get(h, f);
			fmt::print("{:<16} {:<20} {:#x}\n", f.name, v, v);
		}
	}
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	std::string ctl_sock, link_state, mem_file;
	std::vector<std::string> sets;
	bool json = false;

	CLI::App app{"vhost-pci control tool"};
	app.require_subcommand(1);
	app.add_option("--control-socket", ctl_sock, "vpci-backend control socket (status, link)");

	auto *status = app.add_subcommand("status", "print the backend's status as JSON");
	auto *link = app.add_subcommand("link", "set VM2's link state");
	link->add_option("state", link_state, "up or down")
		->required()
		->check(CLI::IsMember({"up", "down"}));
	auto *header = app.add_subcommand(
		"header", "print (and optionally patch) the control-area header of a memory file");
	header->add_option("--mem-file", mem_file, "memory file")->required();
	header->add_option("--set", sets,
			   "FIELD=VALUE (decimal or 0x hex), repeatable; FIELD is a header "
			   "field name as printed")
		->type_name("FIELD=VALUE")
		->check(CLI::Validator(
			[](std::string &a) -> std::string {
				try {
					(void)parse_set(a);
				} catch (const std::invalid_argument &e) {
					return e.what();
				}
				return {};
			},
			"FIELD=VALUE"));
	header->add_flag("--json", json, "print JSON instead of text");
	try {
		app.parse(argc, argv);
	} catch (const CLI::ValidationError &e) {
		// CLI11's message; exit 1 as every failure of this tool (a bad
		// --set always has: tests/test_daemon.cpp).
		(void)app.exit(e);
		return 1;
	} catch (const CLI::ParseError &e) {
		return app.exit(e);
	}

	try {
		if (*header)
			return cmd_header(mem_file, sets, json);

		if (ctl_sock.empty()) {
			std::fprintf(stderr, "error: --control-socket is required for '%s'\n",
				     (*status ? "status" : "link"));
			return 1;
		}
		nlohmann::json req = *status ? nlohmann::json{{"cmd", "status"}}
					     : nlohmann::json{{"cmd", "link"}, {"state", link_state}};
		nlohmann::json reply = request(ctl_sock, req);
		bool ok = reply.value("ok", false);
		if (*status)
			std::puts(reply.dump().c_str());
		if (!ok)
			std::fprintf(stderr, "error: %s\n",
				     reply.value("error", std::string("request failed")).c_str());
		return ok ? 0 : 1;
	} catch (const std::exception &e) {
		std::fprintf(stderr, "error: %s\n", e.what());
		return 1;
	}
}
