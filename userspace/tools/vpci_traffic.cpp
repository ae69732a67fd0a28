// SPDX-License-Identifier: GPL-2.0
// vpci-traffic: UDP integrity traffic between two hosts (run inside the
// guests).  Every datagram carries a sequence number, its length and a
// checksum of a payload derived from the sequence number; the receiver
// checks every payload byte and counts loss, reordering, duplicates and
// corruption.  "send" runs for a count or a duration (batched with
// sendmmsg when unpaced), "recv" for a count or until the sender goes
// quiet, and "echo" + "rtt" measure round trips.  Summaries are JSON.
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <charconv>
#include <optional>
#include <string_view>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "cli_check.hpp"
#include "event_loop.hpp"
#include "fd.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using vpci::checked_by;
constexpr std::uint32_t kMagic = 0x56504354; // "VPCT"
constexpr std::size_t kMaxDatagram = 65507;
constexpr unsigned kMaxBatch = 256;

struct header {
	std::uint32_t magic;
	std::uint32_t len; // whole datagram
	std::uint64_t seq;
	std::uint64_t sum; // FNV-1a of the payload after the header
};
constexpr std::size_t kHdr = sizeof(header);

std::uint64_t fnv1a(const std::uint8_t *p, std::size_t n)
{
	std::uint64_t h = 1469598103934665603ULL;
	for (std::size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

// Byte i of datagram seq is (seq * 131 + i * 7) & 0xff.  As 7 * 165 = 131
// (mod 256) that is P[i + k] with P[j] = 7j & 0xff and k = 165 * seq & 0xff,
// so one table serves every sequence number: the sender copies, the
// receiver compares (memcpy/memcmp instead of a loop a byte: under TCG
// the per-byte loops, not the network, bounded the rate).
class pattern {
public:
	pattern() : p_(kMaxDatagram + 256)
	{
		for (std::size_t j = 0; j < p_.size(); j++)
			p_[j] = static_cast<std::uint8_t>(7 * j);
	}
	// Expected datagram bytes (from offset kHdr on) for @seq.
	const std::uint8_t *of(std::uint64_t seq) const { return p_.data() + ((165 * seq) & 0xff); }

private:
	std::vector<std::uint8_t> p_;
};

// Writes datagrams; the payload checksum is cached when every datagram
// has the same length (it only depends on seq & 0xff and the length).
class writer {
public:
	explicit writer(std::size_t fixed_len) : fixed_(fixed_len) {}

	void fill(std::uint8_t *buf, std::uint64_t seq, std::size_t len)
	{
		const std::uint8_t *src = pat_.of(seq);
		std::memcpy(buf + kHdr, src + kHdr, len - kHdr);
		std::uint64_t sum;
		if (len == fixed_) {
			auto &c = sums_[seq & 0xff];
			if (!c)
				c = fnv1a(buf + kHdr, len - kHdr);
			sum = *c;
		} else {
			sum = fnv1a(buf + kHdr, len - kHdr);
		}
		header h{kMagic, static_cast<std::uint32_t>(len), seq, sum};
		std::memcpy(buf, &h, sizeof(h));
	}

private:
	pattern pat_;
	std::size_t fixed_;
	std::array<std::optional<std::uint64_t>, 256> sums_{};
};

// SIGTERM/SIGINT end recv and echo early, with their summary: taken as an
// fd (vpci::signal_set) that their waits watch beside the socket.
std::optional<vpci::signal_set> stop_signals;
bool stop_requested = false;

void stop_on_signals() { stop_signals.emplace(); }

/** poll() @p fd for @p events up to @p ms or until a stop signal; > 0: @p fd is ready. */
int poll_or_stop(int fd, short events, int ms)
{
	pollfd p[2] = {{fd, events, 0}, {stop_signals ? stop_signals->fd() : -1, POLLIN, 0}};
	const int n = ::poll(p, 2, ms);
	if (n > 0 && p[1].revents && stop_signals->take())
		stop_requested = true;
	return n > 0 ? (p[0].revents != 0) : n;
}

enum class verdict { ok, foreign, corrupt };

// A received datagram: foreign (not ours / out of range), corrupt (length
// or any payload byte wrong), or ok with its sequence number.
verdict check(const pattern &pat, const std::uint8_t *buf, std::size_t n, std::uint64_t limit,
	      std::uint64_t *seq)
{
	header h;
	if (n < kHdr)
		return verdict::foreign;
	std::memcpy(&h, buf, sizeof(h));
	if (h.magic != kMagic || h.seq >= limit)
		return verdict::foreign;
	if (h.len != n || std::memcmp(buf + kHdr, pat.of(h.seq) + kHdr, n - kHdr) != 0)
		return verdict::corrupt;
	*seq = h.seq;
	return verdict::ok;
}

/** @p s as a whole decimal number, or nullopt. */
std::optional<std::size_t> parse_number(std::string_view s)
{
	std::size_t v = 0;
	const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
	if (ec != std::errc() || end != s.data() + s.size() || s.empty())
		return std::nullopt;
	return v;
}

sockaddr_in parse_addr(const std::string &s)
{
	auto colon = s.rfind(':');
	if (colon == std::string::npos)
		throw std::invalid_argument("address must be IPV4:PORT: " + s);
	const auto port = parse_number(std::string_view(s).substr(colon + 1));
	if (!port || *port < 1 || *port > 65535)
		throw std::invalid_argument("port must be 1..65535: " + s.substr(colon + 1));
	sockaddr_in a{};
	a.sin_family = AF_INET;
	a.sin_port = htons(static_cast<std::uint16_t>(*port));
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

vpci::unique_fd bound_socket(const std::string &bind_to)
{
	auto a = parse_addr(bind_to);
	auto sock = udp_socket();
	int big = 8 << 20;
	::setsockopt(sock.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	if (::bind(sock.get(), reinterpret_cast<const sockaddr *>(&a), sizeof(a)) < 0)
		throw std::system_error(errno, std::generic_category(), "bind(" + bind_to + ")");
	return sock;
}

double since(clock_type::time_point t)
{
	return std::chrono::duration<double>(clock_type::now() - t).count();
}

// Milliseconds until @t for poll(), at least 0.
int ms_until(clock_type::time_point t)
{
	auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - clock_type::now()).count();
	return ms > 0 ? static_cast<int>(std::min<long long>(ms, 1000)) : 0;
}

clock_type::time_point after(double seconds)
{
	return clock_type::now() +
	       std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(seconds));
}

// Datagrams the kernel dropped for this socket (receive buffer full).
std::uint64_t socket_drops(int fd)
{
	std::uint32_t mem[SK_MEMINFO_VARS] = {};
	socklen_t len = sizeof(mem);
	if (::getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) < 0 ||
	    len <= SK_MEMINFO_DROPS * sizeof(std::uint32_t))
		return 0;
	return mem[SK_MEMINFO_DROPS];
}

struct send_opts {
	std::string to;
	std::uint64_t count = 10000;
	std::size_t min_size = 64, max_size = 1400;
	double rate = 0, seconds = 0;
	unsigned batch = 32;
};

// Stops at count datagrams or after seconds (whichever first; 0 = no
// limit), also when the path stalls: the socket is non-blocking and a full
// send buffer is waited for only until then.  IP_RECVERR makes a full
// qdisc an ENOBUFS we back off from instead of a silent drop counted as
// sent.
int do_send(const send_opts &o)
{
	auto dst = parse_addr(o.to);
	auto sock = udp_socket();
	int one = 1;
	::setsockopt(sock.get(), IPPROTO_IP, IP_RECVERR, &one, sizeof(one));
	if (::fcntl(sock.get(), F_SETFL, O_NONBLOCK) < 0)
		throw std::system_error(errno, std::generic_category(), "fcntl(O_NONBLOCK)");
	writer w(o.min_size == o.max_size ? o.min_size : 0);
	const unsigned batch = o.rate > 0 ? 1 : o.batch;
	std::vector<std::uint8_t> bufs(static_cast<std::size_t>(batch) * o.max_size);
	std::vector<iovec> iov(batch);
	std::vector<mmsghdr> msgs(batch);
	const auto start = clock_type::now();
	const auto end = after(o.seconds);
	std::uint64_t sent = 0, bytes = 0, backoffs = 0;
	bool out_of_time = false;
	auto timed_out = [&] { return o.seconds > 0 && clock_type::now() >= end; };
	auto size_of = [&](std::uint64_t seq) {
		return o.min_size + (o.max_size > o.min_size ? (seq * 7919) % (o.max_size - o.min_size + 1) : 0);
	};
	while (sent < o.count && !out_of_time && !timed_out()) {
		unsigned n = static_cast<unsigned>(std::min<std::uint64_t>(batch, o.count - sent));
		for (unsigned i = 0; i < n; i++) {
			std::uint8_t *b = bufs.data() + static_cast<std::size_t>(i) * o.max_size;
			std::size_t len = size_of(sent + i);
			w.fill(b, sent + i, len);
			iov[i] = {b, len};
			msgs[i] = {};
			msgs[i].msg_hdr.msg_name = &dst;
			msgs[i].msg_hdr.msg_namelen = sizeof(dst);
			msgs[i].msg_hdr.msg_iov = &iov[i];
			msgs[i].msg_hdr.msg_iovlen = 1;
		}
		if (o.rate > 0) {
			auto due = start + std::chrono::duration<double>(static_cast<double>(sent) / o.rate);
			std::this_thread::sleep_until(
				std::chrono::time_point_cast<clock_type::duration>(due));
		}
		unsigned done = 0;
		while (done < n) {
			int r = ::sendmmsg(sock.get(), msgs.data() + done, n - done, 0);
			if (r > 0) {
				for (int i = 0; i < r; i++)
					bytes += iov[done + i].iov_len;
				done += static_cast<unsigned>(r);
				continue;
			}
			if (r < 0 && errno == EAGAIN) {
				pollfd p{sock.get(), POLLOUT, 0};
				::poll(&p, 1, o.seconds > 0 ? ms_until(end) : -1);
			} else if (r < 0 && (errno == ENOBUFS || errno == ECONNREFUSED)) {
				// ECONNREFUSED: an ICMP error from earlier (receiver
				// not up yet); this datagram was not sent either.
				backoffs++;
				std::this_thread::sleep_for(std::chrono::microseconds(200));
			} else if (r < 0 && errno != EINTR) {
				throw std::system_error(errno, std::generic_category(), "sendmmsg");
			}
			if (timed_out()) {
				out_of_time = true;
				break;
			}
		}
		sent += done;
	}
	double secs = since(start);
	nlohmann::json j = {{"role", "send"},
			    {"sent", sent},
			    {"bytes", bytes},
			    {"seconds", secs},
			    {"pps", secs > 0 ? static_cast<double>(sent) / secs : 0.0},
			    {"mbps", secs > 0 ? static_cast<double>(bytes) * 8 / secs / 1e6 : 0.0},
			    {"backoffs", backoffs}};
	std::cout << j.dump() << "\n";
	return 0;
}

// count > 0: expect datagrams 0..count-1 and stop when all arrived.
// SIGTERM ends the wait early (with the summary).
// count == 0: open-ended (a --seconds sender): stop after @idle seconds
// without a datagram once one arrived; "expected" is then the highest
// sequence number + 1, so losses at the tail are the sender's to count.
int do_recv(const std::string &bind_to, std::uint64_t count, double timeout_s, double idle,
	    bool json)
{
	auto sock = bound_socket(bind_to);
	std::cout << "ready" << std::endl;

	const pattern pat;
	const std::uint64_t limit = count ? count : (1ULL << 32);
	std::vector<bool> seen(count);
	constexpr unsigned kBatch = 64;
	std::vector<std::uint8_t> bufs(kBatch * (kMaxDatagram + 1));
	std::vector<iovec> iov(kBatch);
	std::vector<mmsghdr> msgs(kBatch);
	for (unsigned i = 0; i < kBatch; i++) {
		iov[i] = {bufs.data() + i * (kMaxDatagram + 1), kMaxDatagram + 1};
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	std::uint64_t received = 0, dups = 0, corrupt = 0, reordered = 0, foreign = 0, bytes = 0;
	std::uint64_t highest = 0;
	bool any = false;
	auto first = clock_type::now(), last = first;
	const auto deadline = after(timeout_s);
	stop_on_signals();
	while (!stop_requested) {
		if (count && received >= count)
			break;
		auto now = clock_type::now();
		if (now >= deadline)
			break;
		auto until = deadline;
		if (any && idle > 0) {
			auto quiet = last + std::chrono::duration_cast<clock_type::duration>(
						    std::chrono::duration<double>(idle));
			if (now >= quiet)
				break;
			until = std::min(until, quiet);
		}
		if (poll_or_stop(sock.get(), POLLIN, ms_until(until)) <= 0)
			continue;
		int r = ::recvmmsg(sock.get(), msgs.data(), kBatch, MSG_DONTWAIT, nullptr);
		if (r < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			throw std::system_error(errno, std::generic_category(), "recvmmsg");
		}
		for (int i = 0; i < r; i++) {
			std::uint64_t seq = 0;
			std::size_t n = msgs[i].msg_len;
			switch (check(pat, static_cast<const std::uint8_t *>(iov[i].iov_base), n, limit, &seq)) {
			case verdict::foreign:
				foreign++;
				continue;
			case verdict::corrupt:
				corrupt++;
				continue;
			case verdict::ok:
				break;
			}
			if (seq >= seen.size())
				seen.resize(std::max<std::uint64_t>(seq + 1, seen.size() * 2));
			if (seen[seq]) {
				dups++;
				continue;
			}
			seen[seq] = true;
			if (any && seq < highest)
				reordered++;
			if (!any)
				first = clock_type::now();
			any = true;
			highest = std::max(highest, seq);
			received++;
			bytes += n;
			last = clock_type::now();
		}
	}
	const std::uint64_t expected = count ? count : (any ? highest + 1 : 0);
	double secs = std::chrono::duration<double>(last - first).count();
	nlohmann::json j = {{"role", "recv"},
			    {"expected", expected},
			    {"received", received},
			    {"lost", expected - received},
			    {"duplicates", dups},
			    {"corrupt", corrupt},
			    {"reordered", reordered},
			    {"foreign", foreign},
			    {"socket_drops", socket_drops(sock.get())},
			    {"bytes", bytes},
			    {"seconds", secs},
			    {"pps", secs > 0 ? static_cast<double>(received) / secs : 0.0},
			    {"mbps", secs > 0 ? static_cast<double>(bytes) * 8 / secs / 1e6 : 0.0}};
	if (json)
		std::cout << j.dump() << "\n";
	else
		std::cout << fmt::format("received {}/{} lost {} dup {} corrupt {} reordered {} "
					 "in {:.2f}s ({:.0f} pps, {:.1f} Mbit/s)\n",
					 received, expected, expected - received, dups, corrupt,
					 reordered, secs, j["pps"].get<double>(),
					 j["mbps"].get<double>());
	return (received > 0 && received == expected && !dups && !corrupt && !reordered) ? 0 : 1;
}

// Sends every datagram back to where it came from, until @count were
// echoed (0: no limit), @idle seconds passed without one once one came,
// or @timeout_s.
int do_echo(const std::string &bind_to, std::uint64_t count, double timeout_s, double idle)
{
	auto sock = bound_socket(bind_to);
	std::cout << "ready" << std::endl;
	std::vector<std::uint8_t> buf(kMaxDatagram + 1);
	std::uint64_t echoed = 0;
	bool any = false;
	auto last = clock_type::now();
	const auto deadline = after(timeout_s);
	stop_on_signals();
	while ((!count || echoed < count) && clock_type::now() < deadline && !stop_requested) {
		auto until = deadline;
		if (any && idle > 0) {
			auto quiet = last + std::chrono::duration_cast<clock_type::duration>(
						    std::chrono::duration<double>(idle));
			if (clock_type::now() >= quiet)
				break;
			until = std::min(until, quiet);
		}
		if (poll_or_stop(sock.get(), POLLIN, ms_until(until)) <= 0)
			continue;
		sockaddr_in from{};
		socklen_t flen = sizeof(from);
		ssize_t n = ::recvfrom(sock.get(), buf.data(), buf.size(), MSG_DONTWAIT,
				       reinterpret_cast<sockaddr *>(&from), &flen);
		if (n < 0)
			continue;
		if (::sendto(sock.get(), buf.data(), static_cast<std::size_t>(n), 0,
			     reinterpret_cast<const sockaddr *>(&from), flen) == n)
			echoed++;
		any = true;
		last = clock_type::now();
	}
	std::cout << nlohmann::json{{"role", "echo"}, {"echoed", echoed}}.dump() << "\n";
	return 0;
}

// Nearest-rank percentile of sorted @v.
double percentile(const std::vector<double> &v, double p)
{
	if (v.empty())
		return 0;
	auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
	return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

// One datagram in flight: send, wait up to wait_ms for its echo (late
// echoes of earlier ones are skipped), record the round trip.  The first
// @warmup round trips (ARP, IOTLB misses) are not counted.
int do_rtt(const std::string &to, std::uint64_t count, std::size_t size, double wait_ms,
	   std::uint64_t warmup, double seconds)
{
	auto dst = parse_addr(to);
	auto sock = udp_socket();
	writer w(size);
	const pattern pat;
	std::vector<std::uint8_t> out(size), in(kMaxDatagram + 1);
	std::vector<double> rtts;
	std::uint64_t sent = 0, lost = 0, corrupt = 0;
	const auto end = after(seconds);
	for (std::uint64_t seq = 0; seq < warmup + count; seq++) {
		if (seconds > 0 && clock_type::now() >= end)
			break;
		w.fill(out.data(), seq, size);
		const auto t0 = clock_type::now();
		if (::sendto(sock.get(), out.data(), size, 0, reinterpret_cast<const sockaddr *>(&dst),
			     sizeof(dst)) != static_cast<ssize_t>(size)) {
			if (errno != ENOBUFS && errno != ECONNREFUSED)
				throw std::system_error(errno, std::generic_category(), "sendto");
		}
		const bool counted = seq >= warmup;
		sent += counted;
		const auto give_up = t0 + std::chrono::duration_cast<clock_type::duration>(
						  std::chrono::duration<double, std::milli>(wait_ms));
		bool answered = false;
		while (!answered && clock_type::now() < give_up) {
			pollfd p{sock.get(), POLLIN, 0};
			if (::poll(&p, 1, ms_until(give_up)) <= 0)
				continue;
			ssize_t n = ::recv(sock.get(), in.data(), in.size(), MSG_DONTWAIT);
			if (n < 0)
				continue; // e.g. ECONNREFUSED: the echo is not up yet
			std::uint64_t got = 0;
			verdict v = check(pat, in.data(), static_cast<std::size_t>(n), ~0ULL, &got);
			if (v == verdict::corrupt && counted)
				corrupt++;
			if (v != verdict::ok || got != seq)
				continue;
			answered = true;
			if (counted)
				rtts.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
		}
		if (!answered && counted)
			lost++;
	}
	std::sort(rtts.begin(), rtts.end());
	double mean = 0;
	for (double r : rtts)
		mean += r / static_cast<double>(rtts.size());
	nlohmann::json j = {{"role", "rtt"},
			    {"size", size},
			    {"sent", sent},
			    {"received", rtts.size()},
			    {"lost", lost},
			    {"corrupt", corrupt},
			    {"min_us", rtts.empty() ? 0.0 : rtts.front()},
			    {"p50_us", percentile(rtts, 50)},
			    {"p99_us", percentile(rtts, 99)},
			    {"max_us", rtts.empty() ? 0.0 : rtts.back()},
			    {"mean_us", mean}};
	std::cout << j.dump() << "\n";
	return (!rtts.empty() && !lost && !corrupt) ? 0 : 1;
}

std::pair<std::size_t, std::size_t> parse_size(const std::string &size)
{
	const auto dash = size.find('-');
	const auto lo = parse_number(std::string_view(size).substr(0, dash));
	const auto hi = dash == std::string::npos
				? lo
				: parse_number(std::string_view(size).substr(dash + 1));
	if (!lo || !hi)
		throw std::invalid_argument("size must be N or MIN-MAX: " + size);
	if (*lo < kHdr || *hi < *lo || *hi > kMaxDatagram)
		throw std::invalid_argument("size must be within 24..65507 and MIN <= MAX: " + size);
	return {*lo, *hi};
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"vpci-traffic: UDP traffic with sequence numbers and checksums; the "
		     "receiver exits 0 only with zero loss, duplicates, corruption and reordering"};
	app.require_subcommand(1);
	send_opts so;
	std::string bind_to, size = "64-1400";
	std::uint64_t count = 10000, warmup = 10;
	double timeout_s = 60, idle = 0, wait_ms = 200, seconds = 0;
	unsigned batch = 32;
	bool json = false;

	auto *send = app.add_subcommand("send", "send COUNT datagrams (or for --seconds) to --to");
	const CLI::Validator addr = checked_by(parse_addr, "IPV4:PORT");
	const CLI::Validator sizes = checked_by(parse_size, "N or MIN-MAX");
	send->add_option("--to", so.to, "receiver IPV4:PORT")->required()->check(addr);
	send->add_option("-n,--count", count, "datagrams (with --seconds: no limit unless given)")
		->capture_default_str();
	send->add_option("--size", size, "UDP payload bytes: N or MIN-MAX (>= 24, <= 65507)")
		->capture_default_str()
		->check(sizes);
	send->add_option("--rate", so.rate, "datagrams per second, 0 = as fast as possible")
		->check(CLI::NonNegativeNumber);
	send->add_option("--seconds", seconds, "stop after this long (0 = after COUNT)")
		->check(CLI::NonNegativeNumber);
	send->add_option("--batch", batch, "datagrams a sendmmsg() when unpaced")
		->check(CLI::Range(1u, kMaxBatch))
		->capture_default_str();

	auto *recv = app.add_subcommand("recv", "receive and validate COUNT datagrams");
	recv->add_option("--bind", bind_to, "local IPV4:PORT")->required()->check(addr);
	recv->add_option("-n,--count", count,
			 "datagrams expected; 0 = open-ended, ends after --idle (default 1 s) of silence")
		->check(CLI::Range(std::uint64_t{0}, std::uint64_t{1} << 32))
		->capture_default_str();
	recv->add_option("--timeout", timeout_s, "seconds to wait in all")->capture_default_str();
	recv->add_option("--idle", idle, "stop after this many seconds without a datagram")
		->check(CLI::NonNegativeNumber);
	recv->add_flag("--json", json, "print the summary as JSON");

	auto *echo = app.add_subcommand("echo", "send every datagram back to its source");
	echo->add_option("--bind", bind_to, "local IPV4:PORT")->required()->check(addr);
	echo->add_option("-n,--count", count, "stop after this many (0 = no limit)")
		->capture_default_str();
	echo->add_option("--timeout", timeout_s, "seconds in all")->capture_default_str();
	echo->add_option("--idle", idle, "stop after this many seconds without a datagram")
		->check(CLI::NonNegativeNumber);

	auto *rtt = app.add_subcommand("rtt", "round trips against an echo, one in flight; "
					      "JSON with min/p50/p99/max in microseconds");
	rtt->add_option("--to", so.to, "echo IPV4:PORT")->required()->check(addr);
	rtt->add_option("-n,--count", count, "round trips measured")->capture_default_str();
	const CLI::Validator one_size = checked_by(
		[](const std::string &v) {
			auto [lo, hi] = parse_size(v);
			if (lo != hi)
				throw std::invalid_argument("rtt takes one --size: " + v);
			return lo;
		},
		"N");
	rtt->add_option("--size", size, "UDP payload bytes (>= 24)")
		->capture_default_str()
		->check(one_size);
	rtt->add_option("--wait-ms", wait_ms, "give a datagram up as lost after this long")
		->check(CLI::PositiveNumber)
		->capture_default_str();
	rtt->add_option("--warmup", warmup, "round trips first, not counted")->capture_default_str();
	rtt->add_option("--seconds", seconds, "stop after this long (0 = no limit)")
		->check(CLI::NonNegativeNumber);

	CLI11_PARSE(app, argc, argv);
	try {
		if (*send) {
			std::tie(so.min_size, so.max_size) = parse_size(size);
			so.count = seconds > 0 && !send->count("--count") ? ~0ULL : count;
			so.seconds = seconds;
			so.batch = batch;
			return do_send(so);
		}
		if (*echo)
			return do_echo(bind_to, count, timeout_s, idle);
		if (*rtt) {
			const std::size_t one = parse_size(size).first; // checked: MIN == MAX
			return do_rtt(so.to, count, one, wait_ms, warmup, seconds);
		}
		if (!count && idle <= 0)
			idle = 1;
		return do_recv(bind_to, count, timeout_s, idle, json);
	} catch (const std::exception &e) {
		std::cerr << "error: " << e.what() << "\n";
		return 2;
	}
}
