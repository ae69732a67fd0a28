// SPDX-License-Identifier: GPL-2.0-only OR MIT
// vpci-sim: the peer simulator, a VM1 in userspace with its own IOMMU, as a
// vhost-user front-end.  See docs/simulator.md.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "sim_cli.hpp"
#include "sim_run.hpp"

using namespace vpci::sim;

int main(int argc, char **argv)
{
	CLI::App app{"vpci-sim: a simulated VM1 (virtio-net driver + IOMMU) as a vhost-user "
		     "front-end"};
	cli_options o;
	add_cli_options(app, o);
	CLI11_PARSE(app, argc, argv);

	run_config &c = o.run;
	const bool quiet = o.quiet, verbose = o.verbose;
	const unsigned watchdog_s = o.watchdog_s;
	const std::string &json_out = o.json_out;
	spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
	spdlog::set_default_logger(spdlog::stderr_color_mt("vpci-sim"));
	try {
		finish_cli_options(o);
		if (!quiet)
			c.progress = [](const std::string &l) { fmt::print(stderr, "{}\n", l); };
	} catch (const CLI::Error &e) {
		return app.exit(e);
	} catch (const std::exception &e) {
		fmt::print(stderr, "vpci-sim: {}\n", e.what());
		return 2;
	}
	if (watchdog_s > 0) {
		// A run that does not end says where it is before an outer
		// timeout kills it without a word.
		std::thread([watchdog_s] {
			std::this_thread::sleep_for(std::chrono::seconds(watchdog_s));
			const run_progress p = current_progress();
			fmt::print(stderr,
				   "vpci-sim: watchdog: run still in phase '{}' after {} s: sent {} "
				   "completed {} received {}\n",
				   p.phase, watchdog_s, p.sent, p.completed, p.received);
			std::fflush(stdout);
			std::_Exit(3);
		}).detach();
	}
	try {
		auto j = run(c);
		fmt::print("{}", summary_text(j));
		if (json_out == "-") {
			fmt::print("{}\n", j.dump(2));
		} else if (!json_out.empty()) {
			std::ofstream f(json_out);
			f << j.dump(2) << "\n";
			if (!f)
				throw std::runtime_error("cannot write " + json_out);
		}
		return j["ok"].get<bool>() ? 0 : 1;
	} catch (const std::exception &e) {
		fmt::print(stderr, "vpci-sim: {}\n", e.what());
		return 2;
	}
}
