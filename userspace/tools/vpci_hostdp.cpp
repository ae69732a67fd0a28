// SPDX-License-Identifier: GPL-2.0-only OR MIT
// vpci-hostdp: the driver's ring and IOTLB core as the device side of a
// vhost-user front-end, in a host process that busy-polls one core and
// reflects every frame VM1 sends back to it.  See docs/host-datapath.md.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "fd.hpp"
#include "hostdp.hpp"

namespace {

std::atomic<bool> stop_requested{false};
static_assert(std::atomic<bool>::is_always_lock_free); // so a handler may store it

void on_signal(int) { stop_requested = true; }

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

/** Pin the calling thread to @p cpu, or (@p except) to every allowed CPU but it. */
void pin_thread(int cpu, bool except)
{
	cpu_set_t set;
	if (except) {
		if (::sched_getaffinity(0, sizeof(set), &set) < 0)
			vpci::throw_errno("sched_getaffinity()");
		CPU_CLR(cpu, &set);
		if (CPU_COUNT(&set) == 0)
			return; // nothing else allowed: share the CPU
	} else {
		CPU_ZERO(&set);
		CPU_SET(cpu, &set);
	}
	if (::sched_setaffinity(0, sizeof(set), &set) < 0)
		vpci::throw_errno(fmt::format("sched_setaffinity({}cpu {})", except ? "all but " : "",
					      cpu));
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

/** Wait up to @p ms for @p a or @p b (-1: ignored) to become readable. */
void wait_readable(int a, int b, int ms)
{
	pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
	if (::poll(p, 2, ms) < 0 && errno != EINTR)
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
	app.add_option("--cpu", cpu,
		       "pin the polling thread to this CPU and the control thread to the others "
		       "(-1: no pinning)")
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
		vpci::unix_listener listener(socket);
		vpci::hostdp::device dev(cfg);

		// The polling thread: one core, spinning while a queue is served.
		// Signals go to the control thread (its poll() returns EINTR).
		sigset_t sigs, old;
		sigemptyset(&sigs);
		sigaddset(&sigs, SIGINT);
		sigaddset(&sigs, SIGTERM);
		pthread_sigmask(SIG_BLOCK, &sigs, &old);
		std::exception_ptr poll_error;
		std::jthread poller([&](std::stop_token st) {
			try {
				if (cpu >= 0)
					pin_thread(cpu, false);
				while (!st.stop_requested())
					if (!dev.poll_datapath() && !dev.active())
						std::this_thread::sleep_for(std::chrono::microseconds(200));
			} catch (...) {
				poll_error = std::current_exception();
				stop_requested = true;
			}
		});
		pthread_sigmask(SIG_SETMASK, &old, nullptr);

		// The control thread (this one): the sockets, event driven.
		if (cpu >= 0)
			pin_thread(cpu, true);
		if (!ready_file.empty())
			write_file(ready_file, fmt::format("{}\n", ::getpid()));
		spdlog::info("ready: pid {}, socket {}, polling cpu {}, burst {}", ::getpid(), socket,
			     cpu, cfg.burst);
		while (!stop_requested) {
			wait_readable(listener.fd(), dev.fd(), 200);
			if (auto s = listener.accept())
				dev.attach(std::move(*s)); // a second one is refused and closed
			if (dev.connected())
				dev.poll_control();
		}
		poller.request_stop();
		poller.join();
		if (poll_error)
			std::rethrow_exception(poll_error);
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
