// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file vm1_session.hpp
 * The daemon's session with VM1's QEMU (the vhost-user front-end): the
 * device behind a vu::session that turns feature negotiation, the memory
 * table and ring setup into control-area state, and bridges the IOTLB
 * between QEMU and VM2's driver.  See docs/backend.md.
 *
 * It never maps VM1's memory and never touches packets.  It is
 * single-threaded: the backend's epoll loop calls it.
 */
#pragma once

#include <array>
#include <deque>
#include <set>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "control_area.hpp"
#include "device_server.hpp"
#include "log_limit.hpp"
#include "msg_ring.hpp"
#include "vhost_user.hpp"
#include "vhost_user_session.hpp"
#include "virtio_net.hpp"

namespace vpci {

/**
 * Virtio features offered while no driver is bound in VM2: what the
 * project's driver implements as the device.  QEMU asks once, when it
 * starts, so this is what VM1 usually gets (plus MQ when the backend wires
 * more than one pair, as the driver then offers).  With a bound driver
 * exactly driver.device_features is offered.
 */
constexpr std::uint64_t default_device_features = virtio_net::driver_features;

/** Protocol features offered: MQ | REPLY_ACK | SLAVE_REQ (BACKEND_REQ). */
constexpr std::uint64_t offered_protocol_features = vu::session_protocol_features;

/** Callbacks into the owner (the backend). */
class vm1_session_events {
public:
	virtual ~vm1_session_events() = default;
	/** Raise VM2's config vector (VPCI_VEC_CONFIG). */
	virtual void notify_driver() = 0;
	/** Queue @p q's kick or call eventfd changed: rewire notifications. */
	virtual void queue_fds_changed(unsigned q) = 0;
};

/**
 * VM2's device enforces the IOTLB (the vhost-pci QEMU device): its BAR shows
 * only the file ranges the shadow IOTLB maps.  The front-end hands it the
 * desired windows after every change; a driver update is posted only once
 * its MAP is done, and VM1's invalidation completes only once both the
 * driver's INV_ACK and the device's UNMAP_DONE are in.
 */
class window_port {
public:
	virtual ~window_port() = default;
	/** Make the device show @p want; the seq to wait for, 0 if nothing was sent. */
	virtual std::uint32_t sync_windows(const std::vector<file_window> &want) = 0;
	/** Everything up to @p seq is done (answered, or its device is gone). */
	virtual bool windows_done(std::uint32_t seq) const = 0;
};

struct vm1_session_config {
	std::uint64_t peer_mem_size = 0;
	/** Identity of the memory file: region fds must be this file. */
	std::uint64_t mem_dev = 0, mem_ino = 0;
	std::uint16_t max_queue_pairs = 1;
	int inval_timeout_ms = 2000;
	int vring_base_timeout_ms = 1000;
	/** Shadow IOTLB entries at most: what the driver's IOTLB holds (VPCI_IOTLB_MAX). */
	std::size_t shadow_max = 65536;
};

/** How a ring's notifications travel between VM1 and VM2 (the daemon's part of a ring). */
struct ring_notify {
	/** Published VPCI_NOTIFY_* of the queue, and of each direction. */
	std::uint16_t notify = VPCI_NOTIFY_NONE;
	std::uint16_t kick_mode = VPCI_NOTIFY_NONE, call_mode = VPCI_NOTIFY_NONE;
	std::uint64_t kicks_relayed = 0, calls_relayed = 0;
};

struct iotlb_counters {
	std::uint64_t updates = 0, invalidations = 0, acks = 0, misses_sent = 0, timeouts = 0,
		      rejected = 0;
	/** Invalidations that waited for the driver's ack (acks counts those that got it). */
	std::uint64_t to_driver = 0;
	/** Updates the b2d ring had no room for: in the shadow, posted by the paced replay. */
	std::uint64_t deferred = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(iotlb_counters, updates, invalidations, acks, misses_sent,
				   timeouts, rejected, to_driver, deferred)

/** VM1's virtio-net device as the daemon serves it, on the one vhost-user session. */
class vm1_session : private vu::device_iface {
public:
	vm1_session(control_area &ctrl, vm1_session_events &ev, const vm1_session_config &cfg);
	/** It holds references and is its session's device: neither copied nor moved. */
	vm1_session(const vm1_session &) = delete;
	vm1_session &operator=(const vm1_session &) = delete;

	/** Take @p sock as the front-end connection; false if one is connected. */
	bool attach(unique_fd sock);
	bool connected() const noexcept { return sess_.connected(); }
	int fd() const noexcept { return sess_.fd(); }
	/** Waiting for the driver: do not read the socket (keeps ordering). */
	bool busy() const noexcept override { return pending_.has_value(); }

	/** The socket is readable: handle one message.  May disconnect. */
	void handle_readable();
	/** VM2 rang the backend's config doorbell: d2b messages, driver state. */
	void on_driver_doorbell();
	/** d2b messages handled per wakeup at most (acks and misses of VM2's driver). */
	static constexpr unsigned d2b_budget = 64;
	/** b2d slots a replay leaves free for live messages (updates, invalidations). */
	static constexpr std::uint32_t replay_keep = 64;
	/** How soon a replay the b2d ring stopped looks again. */
	static constexpr std::chrono::milliseconds replay_pace{5};
	/**
	 * b2d slots a live UPDATE leaves free: with fewer, the update waits in
	 * the shadow for the replay, so the one invalidation that can be in
	 * flight (VM1's socket waits for it) always finds room.
	 */
	static constexpr std::uint32_t update_keep = 8;
	/** Windows are enforced by VM2's device through @p port (may be null). */
	void set_window_port(window_port *port) noexcept { port_ = port; }
	/** The device answered (or went away): post held updates, finish invalidations. */
	void on_windows_progress();
	/** Deadline of the pending operation, if any. */
	std::optional<std::chrono::steady_clock::time_point> deadline() const;
	/** Fail or complete the pending operation if its deadline passed. */
	void check_timeout();
	/** Drop the front-end (EOF, framing error, shutdown). */
	void disconnect(const std::string &why);

	const vu::ring &queue(unsigned q) const { return sess_.queue(q); }
	/** How queue @p q's notifications travel (set_notify_modes, the relays). */
	const ring_notify &notify(unsigned q) const { return notify_.at(q); }
	ring_notify &notify(unsigned q) { return notify_.at(q); }
	unsigned num_queues() const noexcept { return 2u * cfg_.max_queue_pairs; }
	/** Offered while no driver is bound: the driver's set, MQ with several pairs. */
	std::uint64_t unbound_features() const noexcept
	{
		return default_device_features |
		       (cfg_.max_queue_pairs > 1 ? virtio_net::bit(virtio_net::f_mq) : 0);
	}
	/**
	 * Set how queue @p q's kick and call are wired (VPCI_NOTIFY_*).  The
	 * queue's mode is RELAY if either is relayed, else DIRECT if either is
	 * direct, else NONE; a change is published (generation, vector 0).
	 */
	void set_notify_modes(unsigned q, std::uint16_t kick, std::uint16_t call);
	iotlb_counters counters() const noexcept
	{
		iotlb_counters c = stats_;
		c.rejected = sess_.counters().iotlb_rejected;
		return c;
	}
	const shadow_iotlb &shadow() const noexcept { return shadow_; }
	nlohmann::json status() const;

private:
	struct pending_op {
		/**
		 * vring_pause: SET_VRING_ENABLE 0 of a running ring; the ring
		 * resumes where the driver stopped it (ethtool -L in VM1).
		 */
		enum class kind { invalidate, vring_base, vring_pause } k;
		std::uint32_t req;
		bool need_reply;
		std::uint32_t seq = 0;	 // invalidate
		unsigned queue = 0;	 // vring_base, vring_pause
		std::uint32_t gen = 0;	 // vring_base, vring_pause: generation to be seen
		std::chrono::steady_clock::time_point deadline;
		bool driver_acked = false;    // invalidate: INV_ACK in (or no driver)
		std::uint32_t window_seq = 0; // invalidate: the device's UNMAP to wait for
		/** invalidate: VM2's windows follow the shadow (else: after INV_ACK) */
		bool windows_synced = true;
		/** Completes with the driver's vq_state once it saw generation gen. */
		bool waits_for_generation() const
		{
			return k == kind::vring_base || k == kind::vring_pause;
		}
	};

	// vu::device_iface: VM1's virtio-net device as the daemon serves it.
	std::uint64_t offered_features() const override;
	unsigned queue_pairs() const override { return cfg_.max_queue_pairs; }
	void features_set(std::uint64_t features) override;
	std::optional<std::vector<vu::region>> memory_table(vu::message &m) override;
	bool ring_changed(const vu::message &m, unsigned q, vu::ring_change what,
			  bool was_live) override;
	std::optional<std::uint16_t> stop_ring(const vu::message &m, unsigned q) override;
	vu::iotlb_result iotlb_message(const vu::message &m, const vu::iotlb_msg &t, bool to_end,
			       std::uint64_t bar) override;
	void session_reset(vu::reset_reason why, std::uint32_t had_fds) override;

	bool driver_bound() const noexcept { return ctrl_.read_driver().bound(); }
	bool iommu() const noexcept { return sess_.iommu(); }
	/** Post on b2d; an UPDATE with too little room waits for the replay (true). */
	bool post(const vpci_msg &m);
	/** Post @p m once the device finished @p window_seq, in order. */
	bool post_after(std::uint32_t window_seq, const vpci_msg &m);
	std::uint32_t sync_windows();
	void try_complete_invalidate();
	/** Post the shadow to a driver that just bound, paced (continue_replay()). */
	void replay_shadow();
	void continue_replay();
	/** Handle up to d2b_budget messages of the d2b ring (acks, misses). */
	void drain_d2b();
	void complete_pending(bool ok, std::uint64_t value);
	void go_broken(const std::string &why);
	void publish_vq(unsigned q);
	void update_running();
	void set_status(std::uint32_t set, std::uint32_t clear);
	void changed();
	void flush_driver_iotlb(const char *why);

	control_area &ctrl_;
	vm1_session_events &ev_;
	vm1_session_config cfg_;
	/** The vhost-user session with VM1's QEMU; its regions' offsets are BAR offsets. */
	vu::session sess_;
	std::array<ring_notify, VPCI_MAX_QUEUES> notify_;
	/** vq_config.epoch per ring, and whether the ring was live when last published. */
	std::array<std::uint16_t, VPCI_MAX_QUEUES> epochs_{};
	std::array<bool, VPCI_MAX_QUEUES> published_live_{};
	shadow_iotlb shadow_;
	msg_producer b2d_;
	msg_consumer d2b_;
	/** drain_d2b() stopped at its budget: the loop comes back (deadline()). */
	bool d2b_more_ = false;
	/** Where the shadow replay goes on (IOVA), while one is under way. */
	std::optional<std::uint64_t> replay_next_;
	/** Warnings about what VM2's driver sent (the d2b ring). */
	log_limit d2b_log_;
	/** Warnings about what VM1 sent that the session passed on (IOTLB, memory table). */
	log_limit vm1_log_;
	std::uint32_t next_seq_ = 1;
	std::uint32_t flush_seq_ = 0; // last fire-and-forget flush
	std::optional<pending_op> pending_;
	bool was_bound_ = false;
	iotlb_counters stats_;
	window_port *port_ = nullptr;
	/** b2d messages held until the device mapped their window. */
	std::deque<std::pair<std::uint32_t, vpci_msg>> held_;
	/** IOVAs of live UPDATEs b2d had no room for, posted from the shadow later. */
	std::set<std::uint64_t> deferred_;
	/**
	 * A flush posted to a bound driver: VM2's device keeps the old
	 * windows until the driver acked it (or the deadline), so a driver
	 * still walking a ring does not read all-ones mid-flush.  0: none.
	 */
	std::uint32_t windows_flush_seq_ = 0;
	std::chrono::steady_clock::time_point windows_flush_deadline_;
	void finish_windows_flush(const char *why);
};

} // namespace vpci
