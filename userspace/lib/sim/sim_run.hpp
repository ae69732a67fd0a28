// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file sim_run.hpp
 * One simulator run: connect as the vhost-user front-end, set up VM1
 * (memory, IOMMU, one or several queue pairs), drive traffic (each pair
 * its own flow, all at once), optionally inject a fault half way on one
 * pair, validate what comes back per pair, and summarise.
 */
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "sim_vm1.hpp"

namespace vpci::sim {

enum class direction { tx, rx, both };

struct run_config {
	std::string socket;
	/** Existing memory file (vpci-backend's --mem-file); empty: a memfd. */
	std::string mem_file;
	std::uint64_t ram_size = 16ULL << 20;
	bool iommu = true;
	/** Send an UPDATE for every new mapping (QEMU never does). */
	bool push = false;
	/** Push one UPDATE per 4 KiB page (intel-iommu's granularity), not per range. */
	bool push_pages = false;
	vm1_config vm;
	direction dir = direction::both;
	std::uint64_t count = 10000;
	double duration_s = 0; // 0: no limit
	std::uint32_t size_min = 60, size_max = 60;
	double rate_pps = 0; // 0: as fast as possible
	bool interrupt = false;
	std::string fault;
	/**
	 * Queue pairs (1..max_queue_pairs): rings 2p (RX) and 2p + 1 (TX) of
	 * pair p.  count, rate, duration and window apply to each pair.
	 */
	unsigned queue_pairs = 1;
	/** The pair the fault is injected on; the others must stay lossless. */
	unsigned fault_pair = 0;
	int connect_wait_ms = 5000;
	int reply_timeout_ms = 2000;
	/** Stop when nothing progressed for this long after the last frame was sent. */
	int drain_ms = 1000;
	std::uint64_t seed = 1;
	/**
	 * direction both: at most this many frames sent and not yet back
	 * (0: the RX ring size).  A forwarder without retry (testpmd io)
	 * drops what does not fit the RX ring; the window keeps the test
	 * about the device, not about a race the test itself creates.  A
	 * window stuck for 100 ms opens anyway (frames are lost).
	 */
	std::uint32_t window = 0;
	/** Called about once a second with a progress line. */
	std::function<void(const std::string &)> progress;
};

/**
 * Run; returns the summary JSON ("ok" says whether validation passed).
 * Throws on setup failures (connect, negotiation, refused messages).
 */
nlohmann::json run(const run_config &cfg);

/**
 * Where run() is, for a watchdog that must say why a run did not end:
 * its phase and the frame counters of its loop (relaxed atomics).
 */
struct run_progress {
	const char *phase;
	std::uint64_t sent, completed, received;
};
run_progress current_progress() noexcept;

/** The human-readable summary of run()'s JSON. */
std::string summary_text(const nlohmann::json &j);

} // namespace vpci::sim
