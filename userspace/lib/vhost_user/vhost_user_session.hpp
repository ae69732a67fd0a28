// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * One vhost-user back-end session: the messages every back-end answers the
 * same way (features, owner, rings, the back-end channel) handled once, and
 * what a device does with them behind an interface, the way QEMU's
 * libvhost-user has VuDevIface and DPDK's vhost_user.c its table of
 * handlers.  The daemon's VM1 session (vm1_session) and the host datapath
 * (hostdp) are its two devices.
 */
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "fd.hpp"
#include "log_limit.hpp"
#include "vhost_user.hpp"

namespace vpci::vu {

/** Virtio feature bits the session itself needs to know. */
namespace feature {
constexpr unsigned version_1 = 32;
constexpr unsigned access_platform = 33;
} // namespace feature

/** Rings a session can describe (VHOST_USER_MAX_QUEUES in the uapi is the same). */
constexpr unsigned max_rings = 16;

/** Protocol features the session implements for every device. */
constexpr std::uint64_t session_protocol_features =
	(1ULL << pf::mq) | (1ULL << pf::reply_ack) | (1ULL << pf::slave_req);

/** One virtqueue as the front-end set it up. */
struct ring {
	std::uint16_t num = 0;
	/** Where the ring starts: SET_VRING_BASE, or where the device stopped it. */
	std::uint16_t base = 0;
	bool addr_set = false;
	/** IOVAs with ACCESS_PLATFORM, GPAs without (vu::ring_addresses). */
	std::uint64_t desc = 0, avail = 0, used = 0;
	/** As VM1 asked; QEMU may enable a ring before NUM/ADDR. */
	bool enabled = false;
	/** SET_VRING_KICK seen since the last GET_VRING_BASE. */
	bool started = false;
	unique_fd kick, call, err;
	/** Which kick/call fd this is: a new fd gets a new number. */
	std::uint64_t kick_seq = 0, call_seq = 0;

	bool live() const noexcept { return started && enabled && num && addr_set; }
};

/** What changed about a ring (device_iface::ring_changed). */
enum class ring_change { num, addr, base, kick, call, err, enable };

/** Why a session starts over (device_iface::session_reset). */
enum class reset_reason { connected, owner_reset, disconnected };

/** How the device took an IOTLB message. */
struct iotlb_result {
	bool ok = true;
	/** The device sends the reply itself (session::reply_ack) later. */
	bool deferred = false;
};

/**
 * A device behind a session.  Every hook runs inside apply(); the session
 * has validated the message against its own state first (queue index, ring
 * size, fds, features offered).
 */
class device_iface {
public:
	virtual ~device_iface() = default;
	/** Device features offered; VHOST_USER_F_PROTOCOL_FEATURES is the session's. */
	virtual std::uint64_t offered_features() const = 0;
	/** Queue pairs the device serves (GET_QUEUE_NUM); rings are twice that. */
	virtual unsigned queue_pairs() const = 0;
	/** SET_FEATURES, validated: the device follows. */
	virtual void features_set(std::uint64_t features) = 0;
	/**
	 * SET_MEM_TABLE: check and map the table.  Returns its regions, each
	 * region's offset being where the device reaches it; nullopt or an
	 * exception refuses the message and the old table stays.
	 */
	virtual std::optional<std::vector<region>> memory_table(message &m) = 0;
	/**
	 * A ring's set-up changed (the session's ring already holds the new
	 * state; @p was_live is live() before).  True: the device holds the
	 * reply and sends it later (session::reply_ack).
	 */
	virtual bool ring_changed(const message &m, unsigned q, ring_change what, bool was_live) = 0;
	/**
	 * GET_VRING_BASE of ring @p q (already not started).  The position to
	 * reply, or nullopt when the device replies later (reply_vring_base).
	 */
	virtual std::optional<std::uint16_t> stop_ring(const message &m, unsigned q) = 0;
	/**
	 * An IOTLB update or invalidation, checked (ACCESS_PLATFORM negotiated,
	 * vu::check_iotlb) and, for an update, its user address found in the
	 * memory table at @p offset.
	 */
	virtual iotlb_result iotlb_message(const message &m, const iotlb_msg &t, bool to_end,
				   std::uint64_t offset) = 0;
	/**
	 * The session's state is gone and its rings are blank again; @p
	 * had_fds has bit q set for each ring whose kick or call fd went with it.
	 */
	virtual void session_reset(reset_reason why, std::uint32_t had_fds) = 0;
	/** A reply the device holds is pending: the session reads nothing more. */
	virtual bool busy() const { return false; }
	/** Runs the handling of one message (hostdp: under its lock). */
	virtual void apply(const std::function<void()> &fn) { fn(); }
};

/** Counters of the session itself. */
struct session_counters {
	std::uint64_t sessions = 0, messages = 0, rejected = 0, iotlb_rejected = 0;
};

class session {
public:
	session(device_iface &dev, unsigned rings);
	session(const session &) = delete;
	session &operator=(const session &) = delete;

	/** A front-end connected; false (and @p sock closed) while one is. */
	bool attach(unique_fd sock);
	void disconnect(const std::string &why);
	bool connected() const noexcept { return conn_.has_value(); }
	int fd() const noexcept { return conn_ ? conn_->fd() : -1; }

	/**
	 * Read and apply what the socket holds, one message.  False when
	 * nothing complete was there, the session ended, or the device is busy.
	 */
	bool handle_one();

	unsigned num_rings() const noexcept { return nrings_; }
	const ring &queue(unsigned q) const { return rings_.at(q); }
	ring &queue(unsigned q) { return rings_.at(q); }
	std::uint64_t features() const noexcept { return features_; }
	bool has_feature(unsigned bit) const noexcept { return features_ >> bit & 1; }
	bool iommu() const noexcept { return has_feature(feature::access_platform); }
	std::uint64_t protocol_features() const noexcept { return protocol_features_; }
	const std::vector<region> &regions() const noexcept { return regions_; }
	const session_counters &counters() const noexcept { return stats_; }

	/** Replies the device held (device_iface::busy() until then). */
	void reply_ack(std::uint32_t req, bool need_reply, bool ok);
	void reply_vring_base(std::uint32_t req, unsigned q, std::uint16_t pos);

	/** Whether VM1 gave a back-end channel (SET_SLAVE_REQ_FD). */
	bool has_backend_channel() const noexcept { return slave_.has_value(); }
	/** An IOTLB miss to VM1 on the back-end channel; throws std::system_error. */
	void send_iotlb_miss(std::uint64_t iova, std::uint64_t size, std::uint8_t perm);

private:
	bool dispatch(message &m, bool &replied);
	bool check_ring(std::uint32_t idx, const char *what) const;
	bool set_ring_fd(message &m, std::uint64_t u, unique_fd ring::*which, const char *what,
			 bool &replied);
	bool changed(message &m, unsigned q, ring_change what, bool was_live, bool &replied);
	void reply_u64(std::uint32_t req, std::uint64_t v);
	void reset(reset_reason why);

	device_iface &dev_;
	unsigned nrings_;
	std::optional<connection> conn_, slave_;
	std::uint64_t features_ = 0;
	std::uint64_t protocol_features_ = 0;
	std::vector<region> regions_;
	std::array<ring, max_rings> rings_;
	std::uint64_t fd_seq_ = 0;
	session_counters stats_;
	/**
	 * Every warning the front-end can cause (a rejected message, a second
	 * connection, a failed reply) goes through it: a burst costs a few
	 * lines, the rest are counted.
	 */
	mutable log_limit log_;
};

} // namespace vpci::vu
