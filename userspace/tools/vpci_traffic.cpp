// SPDX-License-Identifier: GPL-2.0
// vpci-traffic: UDP integrity traffic between two hosts (run inside the
// guests).  Every datagram carries a sequence number, its length and a
// checksum of a payload derived from the sequence number; the receiver
// counts loss, reordering, duplicates and corruption and prints a summary.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "fd.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
constexpr std::uint32_t kMagic = 0x56504354; // "VPCT"

struct header {
	std::uint32_t magic;
	std::uint32_t len; // whole datagram
	std::uint64_t seq;
	std::uint64_t sum; // FNV-1a of the payload after the header
};

std::uint64_t fnv1a(const std::uint8_t *p, std::size_t n)
{
	std::uint64_t h = 1469598103934665603ULL;
	for (std::size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

void fill(std::vector<std::uint8_t> &buf, std::uint64_t seq, std::size_t len)
{
	buf.resize(len);
	for (std::size_t i = sizeof(header); i < len; i++)
		buf[i] = static_cast<std::uint8_t>((seq * 131 + i * 7) & 0xff);
	header h{kMagic, static_cast<std::uint32_t>(len), seq,
		 fnv1a(buf.data() + sizeof(header), len - sizeof(header))};
	std::memcpy(buf.data(), &h, sizeof(h));
}

sockaddr_in parse_addr(const std::string &s)
{
	auto colon = s.rfind(':');
	if (colon == std::string::npos)
		throw std::invalid_argument("address must be IPV4:PORT: " + s);
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(static_cast<std::uint16_t>(std::stoul(s.substr(colon + 1))));
	if (inet_pton(AF_INET, s.substr(0, colon).c_str(), &a.sin_addr) != 1)
		throw std::invalid_argument("not an IPv4 address: " + s.substr(0, colon));
	return a;
}

vpci::unique_fd udp_socket()
{
	int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		throw std::system_error(errno, std::generic_category(), "socket(AF_INET, SOCK_DGRAM)");
	return vpci::unique_fd(fd);
}

int do_send(const std::string &to, std::uint64_t count, std::size_t min_size,
	    std::size_t max_size, double rate)
{
	auto dst = parse_addr(to);
	auto sock = udp_socket();
	std::vector<std::uint8_t> buf;
	const auto start = clock_type::now();
	std::uint64_t sent = 0;
	for (std::uint64_t seq = 0; seq < count; seq++) {
		std::size_t len = min_size + (max_size > min_size ? (seq * 7919) % (max_size - min_size + 1) : 0);
		fill(buf, seq, len);
		if (rate > 0) {
			auto due = start + std::chrono::duration<double>(static_cast<double>(seq) / rate);
			std::this_thread::sleep_until(
				std::chrono::time_point_cast<clock_type::duration>(due));
		}
		for (;;) {
			ssize_t n = ::sendto(sock.get(), buf.data(), len, 0,
					     reinterpret_cast<const sockaddr *>(&dst), sizeof(dst));
			if (n == static_cast<ssize_t>(len))
				break;
			if (n < 0 && (errno == ENOBUFS || errno == EAGAIN)) {
				std::this_thread::sleep_for(std::chrono::microseconds(200));
				continue;
			}
			throw std::system_error(errno, std::generic_category(), "sendto");
		}
		sent++;
	}
	double secs = std::chrono::duration<double>(clock_type::now() - start).count();
	nlohmann::json j = {{"role", "send"}, {"sent", sent}, {"seconds", secs},
			    {"pps", secs > 0 ? static_cast<double>(sent) / secs : 0.0}};
	std::cout << j.dump() << "\n";
	return 0;
}

int do_recv(const std::string &bind_to, std::uint64_t count, double timeout_s, bool json)
{
	auto a = parse_addr(bind_to);
	auto sock = udp_socket();
	int big = 8 << 20;
	::setsockopt(sock.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (::bind(sock.get(), reinterpret_cast<const sockaddr *>(&a), sizeof(a)) < 0)
		throw std::system_error(errno, std::generic_category(), "bind(" + bind_to + ")");
	std::cout << "ready" << std::endl;

	std::vector<bool> seen(count, false);
	std::vector<std::uint8_t> buf(65536);
	std::uint64_t received = 0, dups = 0, corrupt = 0, reordered = 0, foreign = 0, bytes = 0;
	std::uint64_t highest = 0;
	bool any = false;
	auto first = clock_type::now(), last = first;
	auto deadline = clock_type::now() + std::chrono::duration_cast<clock_type::duration>(
						    std::chrono::duration<double>(timeout_s));
	while (received < count && clock_type::now() < deadline) {
		pollfd p{sock.get(), POLLIN, 0};
		int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
						  deadline - clock_type::now()).count());
		if (::poll(&p, 1, ms > 0 ? ms : 0) <= 0)
			continue;
		ssize_t n = ::recv(sock.get(), buf.data(), buf.size(), 0);
		if (n < 0)
			throw std::system_error(errno, std::generic_category(), "recv");
		header h;
		if (static_cast<std::size_t>(n) < sizeof(h)) {
			foreign++;
			continue;
		}
		std::memcpy(&h, buf.data(), sizeof(h));
		if (h.magic != kMagic || h.seq >= count) {
			foreign++;
			continue;
		}
		if (h.len != static_cast<std::uint32_t>(n) ||
		    fnv1a(buf.data() + sizeof(h), static_cast<std::size_t>(n) - sizeof(h)) != h.sum) {
			corrupt++;
			continue;
		}
		if (seen[h.seq]) {
			dups++;
			continue;
		}
		seen[h.seq] = true;
		if (any && h.seq < highest)
			reordered++;
		if (!any)
			first = clock_type::now();
		any = true;
		highest = std::max(highest, h.seq);
		received++;
		bytes += static_cast<std::uint64_t>(n);
		last = clock_type::now();
	}
	double secs = std::chrono::duration<double>(last - first).count();
	nlohmann::json j = {{"role", "recv"},	   {"expected", count},	   {"received", received},
			    {"lost", count - received}, {"duplicates", dups},	   {"corrupt", corrupt},
			    {"reordered", reordered},	{"foreign", foreign},	   {"seconds", secs},
			    {"pps", secs > 0 ? static_cast<double>(received) / secs : 0.0},
			    {"mbps", secs > 0 ? static_cast<double>(bytes) * 8 / secs / 1e6 : 0.0}};
	if (json)
		std::cout << j.dump() << "\n";
	else
		std::cout << fmt::format("received {}/{} lost {} dup {} corrupt {} reordered {} "
					 "in {:.2f}s ({:.0f} pps, {:.1f} Mbit/s)\n",
					 received, count, count - received, dups, corrupt, reordered,
					 secs, j["pps"].get<double>(), j["mbps"].get<double>());
	return (received == count && !dups && !corrupt && !reordered) ? 0 : 1;
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"vpci-traffic: UDP traffic with sequence numbers and checksums; the "
		     "receiver exits 0 only with zero loss, duplicates, corruption and reordering"};
	app.require_subcommand(1);
	std::string to, bind_to;
	std::uint64_t count = 10000;
	std::string size = "64-1400";
	double rate = 0, timeout_s = 60;
	bool json = false;

	auto *send = app.add_subcommand("send", "send COUNT datagrams to --to");
	send->add_option("--to", to, "receiver IPV4:PORT")->required();
	send->add_option("-n,--count", count, "datagrams")->capture_default_str();
	send->add_option("--size", size, "UDP payload bytes: N or MIN-MAX (>= 24, <= 65507)")
		->capture_default_str();
	send->add_option("--rate", rate, "datagrams per second, 0 = as fast as possible")
		->check(CLI::NonNegativeNumber);

	auto *recv = app.add_subcommand("recv", "receive and validate COUNT datagrams");
	recv->add_option("--bind", bind_to, "local IPV4:PORT")->required();
	recv->add_option("-n,--count", count, "datagrams expected")->capture_default_str();
	recv->add_option("--timeout", timeout_s, "seconds to wait in all")->capture_default_str();
	recv->add_flag("--json", json, "print the summary as JSON");

	CLI11_PARSE(app, argc, argv);
	try {
		if (*send) {
			std::size_t lo, hi;
			auto dash = size.find('-');
			lo = std::stoul(size.substr(0, dash));
			hi = dash == std::string::npos ? lo : std::stoul(size.substr(dash + 1));
			if (lo < sizeof(header) || hi < lo || hi > 65507)
				throw std::invalid_argument("--size must be within 24..65507 and MIN <= MAX");
			return do_send(to, count, lo, hi, rate);
		}
		if (count == 0 || count > (1ULL << 32))
			throw std::invalid_argument("--count must be 1..2^32");
		return do_recv(bind_to, count, timeout_s, json);
	} catch (const std::exception &e) {
		std::cerr << "error: " << e.what() << "\n";
		return 2;
	}
}
