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

#include "event_loop.hpp"
#include "fd.hpp"
#include "hostdp.hpp"

namespace {

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
		// SIGINT and SIGTERM as an fd the control loop watches; blocked
		// here before the polling thread starts, so it inherits the mask.
		vpci::signal_set signals;
		std::signal(SIGPIPE, SIG_IGN);
		vpci::unix_listener listener(socket);
		vpci::hostdp::device dev(cfg);

		// The polling thread: one core, spinning while a queue is served.
		std::exception_ptr poll_error;
		std::atomic<bool> poll_failed{false};
		std::jthread poller([&](std::stop_token st) {
			try {
				if (cpu >= 0)
					pin_thread(cpu, false);
				while (!st.stop_requested())
					if (!dev.poll_datapath() && !dev.active())
						std::this_thread::sleep_for(std::chrono::microseconds(200));
			} catch (...) {
				poll_error = std::current_exception();
				poll_failed = true;
			}
		});

		// The control thread (this one): the sockets, event driven.
		if (cpu >= 0)
			pin_thread(cpu, true);
		if (!ready_file.empty())
			write_file(ready_file, fmt::format("{}\n", ::getpid()));
		spdlog::info("ready: pid {}, socket {}, polling cpu {}, burst {}", ::getpid(), socket,
			     cpu, cfg.burst);
		vpci::event_loop loop;
		bool stop = false;
		auto on_signal = loop.add(signals.fd(), EPOLLIN, [&](std::uint32_t) {
			if (auto sig = signals.take()) {
				spdlog::info("received {}", strsignal(*sig));
				stop = true;
			}
		});
		// The front-end's socket, watched while it is connected (reset as
		// soon as it is gone: its number may come back with the next one).
		vpci::event_loop::watch on_frontend;
		auto follow_frontend = [&] {
			if (!dev.connected())
				on_frontend.reset();
			else if (!on_frontend)
				on_frontend = loop.add(dev.fd(), EPOLLIN, [&](std::uint32_t) {
					dev.poll_control();
					if (!dev.connected())
						on_frontend.reset();
				});
		};
		// Level-triggered, as the front-end's socket: a bounded share each
		// wakeup, the rest on the next.
		auto on_listen = loop.add(listener.fd(), EPOLLIN, [&](std::uint32_t) {
			for (int i = 0; i < 16; i++) {
				auto s = listener.accept();
				if (!s)
					break;
				dev.attach(std::move(*s)); // a second one is refused and closed
			}
			follow_frontend();
		});
		// The timeout only notices a failed polling thread.
		while (!stop && !poll_failed)
			loop.run_once(200);
		poller.request_stop();
		poller.join();
		if (poll_error)
			std::rethrow_exception(poll_error);
		spdlog::info("exiting");
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
