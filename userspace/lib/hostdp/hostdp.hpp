// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file hostdp.hpp
 * The host datapath: the driver's ring and IOTLB core (kernel/core_*.c,
 * built for userspace against kshim) serving a vhost-user front-end from a
 * host process, with no VM2.  The device reflects: every frame VM1 puts on
 * its TX ring (queue 1) is written into its RX ring (queue 0) with
 * mergeable buffers, as VM2's driver does for a frame its stack sends.
 * Used to compare the core with DPDK's vhost PMD on the same front-end
 * (vpci-sim), see docs/host-datapath.md.
 *
 * The device maps the front-end's memory regions side by side in one
 * reserved range (the "peer BAR" of the core), keeps a private IOTLB built
 * from IOTLB_MSG updates (user address -> offset in that range), asks for
 * misses on the back-end channel and stalls only the queue that missed.
 * Two threads, as DPDK's vhost library has: the control thread handles
 * the front-end's messages (attach, connected, fd, disconnect,
 * poll_control), the polling thread calls poll_datapath() in a loop.  The
 * datapath state is under one lock, held for each burst (the kernel's
 * dp_lock): an invalidation is applied between two bursts and acknowledged
 * after, with no access to the range left in flight.
 */
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "fd.hpp"
#include "vhost_user.hpp"

namespace vpci::hostdp {

struct config {
	/** Chains taken from VM1's TX ring per turn (DPDK's io forwarding: 32). */
	unsigned burst = 32;
	/**
	 * Frames read from TX that wait for room in VM1's RX ring; more are
	 * dropped (the role of VM2's qdisc, txqueuelen 1000).
	 */
	unsigned backlog = 1024;
	/** Largest frame accepted from VM1, without the virtio-net header. */
	std::uint32_t max_frame = 9216;
	/** A miss unanswered this long turns the chain into a fault (kernel: miss_timeout_ms). */
	int miss_timeout_ms = 2000;
	/** Entries of the private IOTLB (kernel: VPCI_IOTLB_MAX). */
	std::uint32_t iotlb_entries = 65536;
};

/** The front-end's memory regions mapped side by side in one reserved range. */
class guest_memory {
public:
	/**
	 * Map SET_MEM_TABLE's regions; @p fds[i] belongs to regions[i].
	 * Throws std::system_error naming the failing syscall, or
	 * std::runtime_error for a region the file cannot back.
	 */
	guest_memory(const vu::memory &mem, const std::vector<unique_fd> &fds);

	std::uint8_t *base() const noexcept { return static_cast<std::uint8_t *>(area_.data()); }
	std::uint64_t size() const noexcept { return area_.size(); }
	/** offset: where the region's first byte lies in [base, base + size). */
	const std::vector<vu::region> &regions() const noexcept { return regions_; }

private:
	mmap_area area_;
	std::vector<vu::region> regions_;
};

/** One vhost-user session and the datapath behind it. */
class device {
public:
	explicit device(const config &cfg);
	~device();
	device(const device &) = delete;
	device &operator=(const device &) = delete;

	/** Take @p sock as the front-end connection; false if one is connected. */
	bool attach(unique_fd sock);
	bool connected() const noexcept;
	int fd() const noexcept;
	/** Drop the front-end and everything of its session. */
	void disconnect(const std::string &why);

	/** Messages poll_control() handles per call at most. */
	static constexpr unsigned control_budget = 32;
	/**
	 * Control thread: handle the messages waiting on the socket, at most
	 * control_budget (never blocks).  Watch the socket level-triggered:
	 * what is left wakes the loop again.
	 */
	unsigned poll_control();
	/** Polling thread: one turn; chains taken from TX plus frames delivered to RX. */
	unsigned poll_datapath();
	/** A queue is served or about to be (as of the last turn: keep polling). */
	bool active() const noexcept;

	/** Counters and queue states (any thread). */
	nlohmann::json stats() const;

private:
	struct impl;
	std::unique_ptr<impl> p_;
};

} // namespace vpci::hostdp
