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

#include "sim_run.hpp"

using namespace vpci::sim;

int main(int argc, char **argv)
{
	CLI::App app{"vpci-sim: a simulated VM1 (virtio-net driver + IOMMU) as a vhost-user "
		     "front-end"};
	run_config c;
	std::string policy = "identity", dir = "both", mode = "poll", sizes = "60", json_out,
		    rx_perm = "rw";
	bool no_iommu = false, list_faults = false, quiet = false, verbose = false;
	unsigned ring = 256;
	app.add_option("-s,--socket", c.socket, "vhost-user socket of the back-end (it listens)");
	app.add_option("--mem-file", c.mem_file,
		       "use this existing memory file (vpci-backend --mem-file); default: a memfd");
	app.add_option("--ram-size", c.ram_size,
		       "guest RAM: bytes or with K/M/G suffix (with --mem-file: the backend's --ram-size)")
		->transform(CLI::AsSizeValue(false))
		->default_str("16M");
	app.add_option("--iommu-policy", policy, "identity | transient | static-pool")
		->capture_default_str();
	app.add_flag("--no-iommu", no_iommu, "do not negotiate ACCESS_PLATFORM (GPA mode)");
	app.add_flag("--iotlb-push", c.push,
		     "send an IOTLB UPDATE for every new mapping (QEMU only answers misses)");
	app.add_flag("--push-pages", c.push_pages,
		     "with --iotlb-push: one UPDATE per 4 KiB page (as intel-iommu maps), not "
		     "per contiguous range");
	app.add_option("--extra-mappings", c.vm.extra_pages,
		       "static-pool/transient: map this many more 4 KiB pages no traffic uses "
		       "(IOTLB size; half below, half above the buffers' IOVAs)")
		->check(CLI::Range(0u, 65536u));
	app.add_option("--rx-buf-size", c.vm.rx_buf_size,
		       "bytes of each RX buffer (frames longer than one span several: "
		       "num_buffers > 1)")
		->check(CLI::Range(64u, 4096u))
		->capture_default_str();
	app.add_option("--rx-buf-limit", c.vm.rx_buf_limit,
		       "post at most this many RX buffers in the whole run (0: no limit; "
		       "a VM1 that stops posting)");
	app.add_option("--rx-perm", rx_perm, "permission of RX buffer mappings: rw | wo")
		->capture_default_str();
	app.add_option("--direction", dir, "tx | rx | both (both: expects frames back)")
		->capture_default_str();
	app.add_option("-n,--count", c.count, "frames to send")->capture_default_str();
	app.add_option("--duration", c.duration_s, "stop sending after this many seconds (0: none)");
	app.add_option("--size", sizes, "frame size N or MIN-MAX (mixed), 60..4084")
		->capture_default_str();
	app.add_option("--rate", c.rate_pps, "pacing in frames per second (0: unpaced)");
	app.add_option("--mode", mode, "poll | interrupt (wait on the call eventfds)")
		->capture_default_str();
	app.add_option("--ring-size", ring, "virtqueue size (power of two, <= 1024)")
		->capture_default_str();
	app.add_flag("--no-event-idx", [&](std::int64_t) { c.vm.event_idx = false; },
		     "do not negotiate EVENT_IDX (use the flags)");
	app.add_flag("--no-mrg-rxbuf", [&](std::int64_t) { c.vm.mrg_rxbuf = false; },
		     "do not negotiate MRG_RXBUF");
	app.add_flag("--tx-csum", c.vm.tx_csum,
		     "leave every frame's checksum partial (needs the device's CSUM); check what "
		     "comes back: still partial, or completed");
	app.add_flag("--no-guest-csum", [&](std::int64_t) { c.vm.guest_csum = false; },
		     "do not negotiate GUEST_CSUM (the device must then complete checksums)");
	app.add_option("--fault", c.fault, "inject this fault half way (see --list-faults)");
	app.add_flag("--list-faults", list_faults, "list the fault scenarios and exit");
	app.add_option("--drain-ms", c.drain_ms, "stop after this long without progress")
		->capture_default_str();
	app.add_option("--connect-wait-ms", c.connect_wait_ms, "retry connecting this long")
		->capture_default_str();
	app.add_option("--reply-timeout-ms", c.reply_timeout_ms,
		       "how long a request (e.g. an INVALIDATE) waits for its ack")
		->capture_default_str();
	app.add_option("--window", c.window,
		       "direction both: frames in flight at most (0: RX ring size - 1)")
		->capture_default_str();
	app.add_option("--seed", c.seed, "seed for mixed sizes")->capture_default_str();
	app.add_option("--json", json_out, "write the JSON summary to this file ('-': stdout)");
	app.add_flag("-q,--quiet", quiet, "no progress lines");
	unsigned watchdog_s = 0;
	app.add_option("--watchdog-s", watchdog_s,
		       "after this long, say where the run is and exit 3 (0: never)");
	app.add_flag("-v,--verbose", verbose, "debug logging");
	CLI11_PARSE(app, argc, argv);

	spdlog::set_level(verbose ? spdlog::level::debug : spdlog::level::info);
	spdlog::set_default_logger(spdlog::stderr_color_mt("vpci-sim"));
	if (list_faults) {
		for (const auto &f : faults())
			fmt::print("{:<18} {}  {}\n", f.name, f.queue == rxq ? "rx" : "tx", f.what);
		return 0;
	}
	try {
		if (c.socket.empty())
			throw CLI::ValidationError("--socket is required");
		auto p = parse_policy(policy);
		if (!p)
			throw CLI::ValidationError("--iommu-policy: identity, transient or static-pool");
		c.vm.policy = *p;
		c.iommu = !no_iommu;
		if (rx_perm != "rw" && rx_perm != "wo")
			throw CLI::ValidationError("--rx-perm: rw or wo");
		c.vm.rx_perm = rx_perm == "rw" ? perm_rw : perm_wo;
		if (dir == "tx")
			c.dir = direction::tx;
		else if (dir == "rx")
			c.dir = direction::rx;
		else if (dir != "both")
			throw CLI::ValidationError("--direction: tx, rx or both");
		if (mode != "poll" && mode != "interrupt")
			throw CLI::ValidationError("--mode: poll or interrupt");
		c.interrupt = mode == "interrupt";
		if (auto dash = sizes.find('-'); dash != std::string::npos) {
			c.size_min = static_cast<std::uint32_t>(std::stoul(sizes.substr(0, dash)));
			c.size_max = static_cast<std::uint32_t>(std::stoul(sizes.substr(dash + 1)));
		} else {
			c.size_min = c.size_max = static_cast<std::uint32_t>(std::stoul(sizes));
		}
		if (c.size_min < 60 || c.size_max > 4084 || c.size_min > c.size_max)
			throw CLI::ValidationError("--size: 60..4084");
		if (ring == 0 || ring > 1024 || (ring & (ring - 1)))
			throw CLI::ValidationError("--ring-size: a power of two up to 1024");
		c.vm.ring_size = static_cast<std::uint16_t>(ring);
		if (!c.fault.empty() && !find_fault(c.fault))
			throw CLI::ValidationError("--fault: unknown (see --list-faults)");
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
