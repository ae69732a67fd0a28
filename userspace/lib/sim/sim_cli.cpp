// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "sim_cli.hpp"

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include <fmt/format.h>

#include "parse.hpp"
#include "sim_traffic.hpp"

namespace vpci::sim {

namespace {

/** A decimal u32, the whole string (no sign, no blanks); nullopt otherwise. */
std::optional<std::uint32_t> parse_u32(const std::string &v)
{
	const auto n = parse_u64(v, true);
	if (!n || *n > 0xffffffffU)
		return std::nullopt;
	return static_cast<std::uint32_t>(*n);
}

/** --size: N or MIN-MAX with MIN <= MAX; CLI::ValidationError if not. */
std::pair<std::uint32_t, std::uint32_t> parse_sizes(const std::string &v)
{
	const auto dash = v.find('-');
	const std::string a = v.substr(0, dash), b = dash == std::string::npos ? a : v.substr(dash + 1);
	const auto lo = parse_u32(a), hi = parse_u32(b);
	if (!lo || !hi)
		throw CLI::ValidationError(fmt::format("--size: '{}' is not a number", !lo ? a : b));
	if (*lo > *hi)
		throw CLI::ValidationError(fmt::format("--size: {} is more than {}", *lo, *hi));
	return {*lo, *hi};
}

const CLI::Validator size_syntax(
	[](std::string &v) -> std::string {
		try {
			(void)parse_sizes(v);
		} catch (const CLI::ValidationError &e) {
			return std::string(e.what()).substr(sizeof("--size: ") - 1);
		}
		return {};
	},
	"N or MIN-MAX");

const CLI::Validator power_of_two_ring(
	[](std::string &v) -> std::string {
		const auto n = parse_u32(v);
		if (!n || *n == 0 || *n > 1024 || (*n & (*n - 1)))
			return "a power of two up to 1024";
		return {};
	},
	"POWER OF 2 <= 1024");

const CLI::Validator known_fault(
	[](std::string &v) -> std::string {
		return find_fault(v) ? std::string() : "unknown (see --list-faults)";
	},
	"FAULT");

} // namespace

void add_cli_options(CLI::App &app, cli_options &o)
{
	app.add_option("-s,--socket", o.run.socket, "vhost-user socket of the back-end (it listens)")
		->required();
	app.add_option("--mem-file", o.run.mem_file,
		       "use this existing memory file (vpci-backend --mem-file); default: a memfd");
	app.add_option("--ram-size", o.run.ram_size,
		       "guest RAM: bytes or with K/M/G suffix (with --mem-file: the backend's --ram-size)")
		->transform(CLI::AsSizeValue(false))
		->default_str("16M");
	app.add_option("--iommu-policy", o.policy, "identity | transient | static-pool")
		->check(CLI::IsMember({"identity", "transient", "static-pool"}))
		->capture_default_str();
	app.add_flag("--no-iommu", o.no_iommu, "do not negotiate ACCESS_PLATFORM (GPA mode)");
	app.add_flag("--iotlb-push", o.run.push,
		     "send an IOTLB UPDATE for every new mapping (QEMU only answers misses)");
	app.add_flag("--push-pages", o.run.push_pages,
		     "with --iotlb-push: one UPDATE per 4 KiB page (as intel-iommu maps), not "
		     "per contiguous range");
	app.add_option("--extra-mappings", o.run.vm.extra_pages,
		       "static-pool/transient: map this many more 4 KiB pages no traffic uses "
		       "(IOTLB size; half below, half above the buffers' IOVAs)")
		->check(CLI::Range(0u, 65536u));
	app.add_option("--rx-buf-size", o.run.vm.rx_buf_size,
		       "bytes of each RX buffer (frames longer than one span several: "
		       "num_buffers > 1)")
		->check(CLI::Range(64u, 4096u))
		->capture_default_str();
	app.add_option("--rx-buf-limit", o.run.vm.rx_buf_limit,
		       "post at most this many RX buffers in the whole run (0: no limit; "
		       "a VM1 that stops posting)");
	app.add_option("--rx-perm", o.rx_perm, "permission of RX buffer mappings: rw | wo")
		->check(CLI::IsMember({"rw", "wo"}))
		->capture_default_str();
	app.add_option("--direction", o.dir, "tx | rx | both (both: expects frames back)")
		->check(CLI::IsMember({"tx", "rx", "both"}))
		->capture_default_str();
	app.add_option("-n,--count", o.run.count, "frames to send")->capture_default_str();
	app.add_option("--duration", o.run.duration_s, "stop sending after this many seconds (0: none)");
	app.add_option("--size", o.sizes,
		       "frame size N or MIN-MAX (mixed), 60..4084; with --gso 80..65535")
		->check(size_syntax)
		->capture_default_str();
	app.add_option("--rate", o.run.rate_pps, "pacing in frames per second (0: unpaced)");
	app.add_option("--mode", o.mode, "poll | interrupt (wait on the call eventfds)")
		->check(CLI::IsMember({"poll", "interrupt"}))
		->capture_default_str();
	app.add_option("--ring-size", o.ring, "virtqueue size (power of two, <= 1024)")
		->check(power_of_two_ring)
		->capture_default_str();
	app.add_flag("--no-event-idx", [&](std::int64_t) { o.run.vm.event_idx = false; },
		     "do not negotiate EVENT_IDX (use the flags)");
	auto *no_mrg = app.add_flag("--no-mrg-rxbuf", [&](std::int64_t) { o.run.vm.mrg_rxbuf = false; },
				    "do not negotiate MRG_RXBUF");
	auto *tx_csum = app.add_flag("--tx-csum", o.run.vm.tx_csum,
		     "leave every frame's checksum partial (needs the device's CSUM); check what "
		     "comes back: still partial, or completed");
	auto *gso = app.add_flag("--gso", o.run.vm.gso,
		     "send TCP/IPv4 frames with partial checksums, those over 1514 bytes as TSO "
		     "frames (gso_size 1448) in chains of 4 KiB buffers; needs CSUM, HOST_TSO4, "
		     "GUEST_CSUM, GUEST_TSO4 and MRG_RXBUF, and every TSO frame back whole "
		     "(its frames carry their own partial checksums: not with --tx-csum, "
		     "--no-guest-csum or --no-mrg-rxbuf)");
	app.add_flag("--no-guest-tso", [&](std::int64_t) { o.run.vm.guest_tso = false; },
		     "with --gso: do not negotiate GUEST_TSO4; the device must then segment "
		     "TSO frames, which come back as segments and are put back together")
		->needs(gso);
	auto *no_guest_csum =
		app.add_flag("--no-guest-csum", [&](std::int64_t) { o.run.vm.guest_csum = false; },
			     "do not negotiate GUEST_CSUM (the device must then complete checksums)");
	gso->excludes(tx_csum)->excludes(no_guest_csum)->excludes(no_mrg);
	auto *fault = app.add_option("--fault", o.run.fault,
				     "inject this fault half way (see --list-faults)")
			      ->check(known_fault);
	app.add_option("--queue-pairs", o.run.queue_pairs,
		       fmt::format("queue pairs (1..{}): VIRTIO_NET_F_MQ and PROTOCOL_F_MQ when more "
				   "than one, the back-end must serve them (GET_QUEUE_NUM); each "
				   "pair sends --count frames of its own flow",
				   max_queue_pairs))
		->check(CLI::Range(1u, max_queue_pairs))
		->capture_default_str();
	app.add_option("--fault-pair", o.run.fault_pair,
		       "the queue pair --fault is injected on (the others must stay lossless)")
		->check(CLI::Range(0u, max_queue_pairs - 1))
		->needs(fault)
		->capture_default_str();
	// Before --socket is required: the list needs nothing else.
	app.add_flag_callback(
		"--list-faults",
		[] {
			for (const auto &f : faults())
				fmt::print("{:<18} {}  {}\n", f.name, f.queue == rxq ? "rx" : "tx",
					   f.what);
			throw CLI::Success();
		},
		"list the fault scenarios and exit");
	app.add_option("--drain-ms", o.run.drain_ms, "stop after this long without progress")
		->capture_default_str();
	app.add_option("--connect-wait-ms", o.run.connect_wait_ms, "retry connecting this long")
		->capture_default_str();
	app.add_option("--reply-timeout-ms", o.run.reply_timeout_ms,
		       "how long a request (e.g. an INVALIDATE) waits for its ack")
		->capture_default_str();
	app.add_option("--window", o.run.window,
		       "direction both: frames in flight at most (0: RX ring size - 1)")
		->capture_default_str();
	app.add_option("--seed", o.run.seed, "seed for mixed sizes")->capture_default_str();
	app.add_option("--json", o.json_out, "write the JSON summary to this file ('-': stdout)");
	app.add_flag("-q,--quiet", o.quiet, "no progress lines");
	app.add_option("--watchdog-s", o.watchdog_s,
		       "after this long, say where the run is and exit 3 (0: never)");
	app.add_flag("-v,--verbose", o.verbose, "debug logging");
}

void finish_cli_options(cli_options &o)
{
	// Each option's own syntax was checked while parsing; what is left
	// relates several (--size's bounds depend on --gso, the chains on
	// --ring-size and --rx-buf-size, --fault-pair on --queue-pairs, the
	// RAM on the rings), which CLI11 has no check for.
	o.run.vm.policy = parse_policy(o.policy).value();
	o.run.iommu = !o.no_iommu;
	o.run.vm.rx_perm = o.rx_perm == "rw" ? perm_rw : perm_wo;
	if (o.dir == "tx")
		o.run.dir = direction::tx;
	else if (o.dir == "rx")
		o.run.dir = direction::rx;
	o.run.interrupt = o.mode == "interrupt";
	std::tie(o.run.size_min, o.run.size_max) = parse_sizes(o.sizes);
	const std::size_t lo = o.run.vm.gso ? tcp_frame_min : frame_min,
			  hi = o.run.vm.gso ? tcp_frame_max : page_size - net_hdr_size;
	if (o.run.size_min < lo || o.run.size_max > hi)
		throw CLI::ValidationError(
			fmt::format("--size: {}..{}{}", lo, hi, o.run.vm.gso ? " with --gso" : ""));
	o.run.vm.ring_size = static_cast<std::uint16_t>(o.ring);
	if (o.run.vm.gso) {
		// The longest frame's TX chain (4 KiB slots) and its RX buffers
		// must fit a ring (one descriptor stays free for faults) and the
		// 64 descriptors a chain may have.
		const std::size_t bytes = net_hdr_size + o.run.size_max,
				  tx = (bytes + page_size - 1) / page_size,
				  rx = (bytes + o.run.vm.rx_buf_size - 1) / o.run.vm.rx_buf_size;
		if (std::max(tx, rx) > std::min<std::size_t>(o.ring - 1, 64))
			throw CLI::ValidationError(fmt::format(
				"--gso: a {}-byte frame takes {} TX descriptors and {} RX buffers of {} "
				"bytes; --ring-size {} allows {} (at most 64 a frame)",
				o.run.size_max, tx, rx, o.run.vm.rx_buf_size, o.ring,
				std::min<std::size_t>(o.ring - 1, 64)));
	}
	if (o.run.fault_pair >= o.run.queue_pairs)
		throw CLI::ValidationError(fmt::format(
			"--fault-pair: {} is not a queue pair of --queue-pairs {} (0..{})",
			o.run.fault_pair, o.run.queue_pairs, o.run.queue_pairs - 1));
	if (o.run.queue_pairs > 1 &&
	    o.run.ram_size < min_ram_size(o.run.vm.ring_size, o.run.queue_pairs))
		throw CLI::ValidationError(fmt::format(
			"--ram-size: {} queue pairs of ring size {} need at least {} bytes, {} given",
			o.run.queue_pairs, o.ring, min_ram_size(o.run.vm.ring_size, o.run.queue_pairs),
			o.run.ram_size));
}

} // namespace vpci::sim
