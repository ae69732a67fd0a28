// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file sim_frontend.hpp
 * The peer simulator's vhost-user **front-end**: the role VM1's QEMU plays.
 * It connects to a back-end (vpci-backend or DPDK's vhost PMD), negotiates,
 * hands over the guest memory, describes the rings, and plays the IOMMU:
 * IOTLB MISS requests on the back-end channel are answered from the
 * emulated IOMMU (sim_iommu.hpp) with an UPDATE on the main socket; an
 * unmapped IOVA gets no answer, as with QEMU.  Unmaps are sent as
 * INVALIDATE with REPLY_ACK and waited for.
 *
 * Single-threaded: the simulator's loop calls service() to answer misses.
 * Requests that arrive on the back-end channel while the front-end waits
 * for a reply on the main socket are queued and served afterwards (QEMU
 * does the same: it never nests a request inside another).
 */
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "fd.hpp"
#include "sim_iommu.hpp"
#include "vhost_user.hpp"

namespace vpci::sim {

/** Virtio feature bits the simulator knows. */
namespace vf {
constexpr unsigned csum = 0, guest_csum = 1, mac = 5, guest_tso4 = 7, host_tso4 = 11, host_tso6 = 12,
		   mrg_rxbuf = 15, status = 16, mq = 22, event_idx = 29, version_1 = 32,
		   access_platform = 33;
}
constexpr std::uint64_t bit(unsigned b) { return 1ULL << b; }

/** Guest memory as handed to the back-end: a file, its size, our mapping. */
struct memory_desc {
	int fd = -1;
	std::uint64_t size = 0;	       // bytes of guest RAM (GPA 0..size)
	std::uint64_t userspace_addr = 0; // the "QEMU virtual address" of GPA 0
};

struct frontend_stats {
	std::uint64_t misses = 0, misses_unanswered = 0, updates = 0, pushes = 0,
		      invalidations = 0, acks = 0, nacks = 0, channel_other = 0;
};

class vu_frontend {
public:
	/** Takes the connected main socket.  @p reply_timeout_ms bounds every wait. */
	vu_frontend(unique_fd sock, const iommu &mmu, int reply_timeout_ms = 2000);

	/** Connect to a back-end listening on @p path, retrying up to @p wait_ms. */
	static unique_fd connect(const std::string &path, int wait_ms);

	/**
	 * GET_FEATURES, GET/SET_PROTOCOL_FEATURES (REPLY_ACK, SLAVE_REQ if
	 * offered; both required when @p want includes ACCESS_PLATFORM),
	 * SET_SLAVE_REQ_FD, SET_OWNER, SET_FEATURES (@p want & offered, plus
	 * PROTOCOL_FEATURES).  Throws if ACCESS_PLATFORM, VERSION_1 or a
	 * @p required bit is wanted but not offered.  Returns the acked set.
	 *
	 * @p queue_pairs > 1, as QEMU does for a multiqueue virtio-net:
	 * VIRTIO_NET_F_MQ and VHOST_USER_PROTOCOL_F_MQ are required and
	 * negotiated, GET_QUEUE_NUM follows SET_PROTOCOL_FEATURES, and the
	 * back-end must serve that many pairs.  With one pair neither is asked.
	 */
	std::uint64_t negotiate(std::uint64_t want, std::uint64_t required,
				unsigned queue_pairs = 1);
	/** One region: GPA 0..size at mmap offset 0. */
	void set_mem_table(const memory_desc &m);
	/** NUM, BASE (0), ADDR (device addresses), KICK, CALL. */
	void setup_vring(unsigned q, std::uint16_t num, std::uint64_t desc, std::uint64_t avail,
			 std::uint64_t used, int kick_fd, int call_fd);
	void enable_vring(unsigned q, bool on);
	/** GET_VRING_BASE (stops the ring in the back-end); the avail index it reports. */
	std::uint32_t get_vring_base(unsigned q);

	/** Answer misses from @p mmu from now on (it must outlive this object). */
	void bind_iommu(const iommu &mmu) noexcept { mmu_ = &mmu; }
	/**
	 * Called with each miss's IOVA before it is looked up; false leaves
	 * the miss unanswered (a fault scenario's IOMMU race).
	 */
	void set_miss_hook(std::function<bool(std::uint64_t)> h) { miss_hook_ = std::move(h); }
	/** Answer misses with whole contiguous ranges (passthrough) instead of pages. */
	void set_miss_ranges(bool on) noexcept { miss_ranges_ = on; }
	/** Send an UPDATE for @p r unasked (a push; QEMU never does this). */
	void push_update(const iommu_range &r);
	/** INVALIDATE each range, waiting for each ack; throws on NAK or timeout. */
	void invalidate(const std::vector<iommu_range> &rs);

	/** Answer what arrived on the back-end channel; returns messages handled. */
	unsigned service();
	int channel_fd() const noexcept { return chan_ours_.get(); }
	int fd() const noexcept { return sock_.get(); }

	std::uint64_t offered_features() const noexcept { return offered_; }
	std::uint64_t features() const noexcept { return features_; }
	std::uint64_t protocol_features() const noexcept { return proto_; }
	/** GET_QUEUE_NUM's answer (0: not asked, one pair). */
	std::uint64_t queue_num() const noexcept { return queue_num_; }
	bool iommu_on() const noexcept { return features_ & bit(vf::access_platform); }
	const frontend_stats &stats() const noexcept { return st_; }
	nlohmann::json to_json() const;

private:
	/** Send; when @p want_reply (a GET) or REPLY_ACK applies, wait for the reply. */
	std::uint64_t call(vu::request r, const void *p, std::size_t len,
			   const std::vector<int> &fds, bool get);
	void send_update(const iommu_range &r);
	void drain_channel(int timeout_ms);
	void handle_channel(const vu::raw_message &m);

	unique_fd sock_;
	unique_fd chan_ours_; // our end of the back-end channel
	const iommu *mmu_;
	int timeout_ms_;
	bool miss_ranges_ = false;
	std::function<bool(std::uint64_t)> miss_hook_;
	std::uint64_t offered_ = 0, features_ = 0, proto_ = 0, queue_num_ = 0;
	std::uint64_t uaddr_ = 0;
	std::deque<vu::raw_message> queued_;
	frontend_stats st_;
};

} // namespace vpci::sim
