// SPDX-License-Identifier: GPL-2.0-only OR MIT
// vpci-hostdp: the driver's ring and IOTLB core as the device side of a
// vhost-user front-end, in a host process that busy-polls one core and
// reflects every frame VM1 sends back to it.  See docs/host-datapath.md.
#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "fd.hpp"
#include "hostdp.hpp"

namespace {

volatile std::sig_atomic_t stop_requested = 0;

void on_signal(int) { stop_requested = 1; }

void install_signals()
{
	struct sigaction sa{};
	sa.sa_handler = on_signal; // no SA_RESTART: poll() returns EINTR
	sigemptyset(&sa.sa_mask);
	for (int sig : {SIGINT, SIGTERM})
		if (::sigaction(sig, &sa, nullptr) < 0)
			vpci::throw_errno(fmt::format("sigaction({})", sig));
	std::signal(SIGPIPE, SIG_IGN);
}

void pin_to_cpu(int cpu)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	if (::sched_setaffinity(0, sizeof(set), &set) < 0)
		vpci::throw_errno(fmt::format("sched_setaffinity(cpu {})", cpu));
}

void write_file(const std::string &path, const std::string &text)
{
	const std::string tmp = path + ".tmp";
	{
		std::ofstream f(tmp, std::ios::trunc);
		f << text;
		if (!f.flush())
			throw std::runtime_error("cannot write " + tmp);
	}
	std::filesystem::rename(tmp, path);
}

/** Wait up to @p ms for @p a or @p b (-1: none) to become readable. */
void wait_readable(int a, int b, int ms)
{
	pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
	if (::poll(p, b >= 0 ? 2 : 1, ms) < 0 && errno != EINTR)
		vpci::throw_errno("poll(vhost-user sockets)");
}

} // namespace

int main(int argc, char **argv)
{
	vpci::hostdp::config cfg;
	std::string socket, log_level = "info", ready_file, stats_json;
	int cpu = -1;
	CLI::App app{"vpci-hostdp: the vhost-pci driver core as a vhost-user back-end in a host "
		     "process (busy polling, reflects VM1's TX frames into its RX ring)"};
	app.option_defaults()->always_capture_default();
	app.add_option("-s,--socket", socket, "UNIX socket to listen on (the front-end connects)")
		->required();
	app.add_option("--cpu", cpu, "pin the polling thread to this CPU (-1: no pinning)")
		->check(CLI::Range(-1, CPU_SETSIZE - 1));
	app.add_option("--burst", cfg.burst, "TX chains taken per turn")
		->check(CLI::Range(1u, 1024u));
	app.add_option("--backlog", cfg.backlog,
		       "frames waiting for VM1's RX ring at most; more are dropped")
		->check(CLI::Range(1u, 65536u));
	app.add_option("--max-frame", cfg.max_frame,
		       "largest frame accepted from VM1 (bytes, without the virtio-net header)")
		->check(CLI::Range(60u, 65535u));
	app.add_option("--miss-timeout-ms", cfg.miss_timeout_ms,
		       "an IOTLB miss unanswered this long becomes a fault")
		->check(CLI::Range(10, 60000));
	app.add_option("--iotlb-entries", cfg.iotlb_entries, "size of the private IOTLB")
		->check(CLI::Range(16u, 1u << 20));
	app.add_option("--log-level", log_level, "stderr log level")
		->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
	app.add_option("--ready-file", ready_file, "write the pid here once the socket listens");
	app.add_option("--stats-json", stats_json, "write the counters here on exit ('-': stdout)");
	CLI11_PARSE(app, argc, argv);

	spdlog::set_default_logger(spdlog::stderr_color_mt("vpci-hostdp"));
	spdlog::set_level(spdlog::level::from_str(log_level));
	spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

	try {
		install_signals();
		if (cpu >= 0)
			pin_to_cpu(cpu);
		vpci::unix_listener listener(socket);
		vpci::hostdp::device dev(cfg);
		if (!ready_file.empty())
			write_file(ready_file, fmt::format("{}\n", ::getpid()));
		spdlog::info("ready: pid {}, socket {}, cpu {}, burst {}", ::getpid(), socket, cpu,
			     cfg.burst);

		unsigned turn = 0;
		bool busy = false;
		while (!stop_requested) {
			if (!dev.connected()) {
				wait_readable(listener.fd(), -1, 200);
				if (auto s = listener.accept())
					dev.attach(std::move(*s));
				continue;
			}
			// While frames move, the socket is looked at every 8th turn.
			const unsigned msgs = !busy || ++turn % 8 == 0 ? dev.poll_control() : 0;
			const unsigned work = dev.poll_datapath();
			busy = work > 0;
			if (!dev.active() && !msgs && !work) {
				// Nothing to serve: sleep until the front-end talks;
				// a second front-end is turned away meanwhile.
				wait_readable(dev.fd(), listener.fd(), 100);
				if (auto s = listener.accept())
					dev.attach(std::move(*s)); // refused and closed
			}
		}
		spdlog::info("signal: exiting");
		const auto st = dev.stats();
		spdlog::info("stats: {}", st.dump());
		if (stats_json == "-")
			fmt::print("{}\n", st.dump(2));
		else if (!stats_json.empty())
			write_file(stats_json, st.dump(2) + "\n");
		if (!ready_file.empty())
			::unlink(ready_file.c_str());
	} catch (const std::exception &e) {
		spdlog::error("{}", e.what());
		return 1;
	}
	return 0;
}
