// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The host datapath (hostdp.hpp): vhost-user back-end + the driver core.
// The datapath functions mirror kernel/datapath.c (vpci_tx_one,
// vpci_rx_one, vpci_stall, vpci_signal, vpci_q_break) with the netdev and
// the control area taken out: a frame read from VM1's TX ring waits in a
// bounce slot (the qdisc's role) until VM1's RX ring takes it.
#include "hostdp.hpp"

#include <array>
#include <atomic>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <endian.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "net_csum.hpp"
#include "vhost_user_session.hpp"
#include "virtio_net.hpp"

extern "C" {
#include "vpci_core.h"
}

namespace vpci::hostdp {

namespace {

using clock = std::chrono::steady_clock;

constexpr unsigned rxq = 0, txq = 1, nqueues = 2;
/** struct virtio_net_hdr_mrg_rxbuf (VERSION_1: always this size). */
constexpr std::uint32_t hdr_len = 12;
/*
 * What this host datapath implements as VM1's device: the driver's
 * features without GSO (frames are linear and at most one MTU here).
 */
constexpr std::uint64_t hostdp_device_features =
	virtio_net::driver_features & ~virtio_net::gso_features;
/** Faults logged at warning level per queue; later ones at debug level. */
constexpr std::uint64_t faults_logged = 10;

std::uint64_t page_up(std::uint64_t v) { return (v + 4095) & ~4095ULL; }

/** Bytes of each part of a split ring, event fields included (kernel: vpci_ring_bytes). */
std::uint64_t ring_bytes(unsigned part, std::uint16_t num)
{
	switch (part) {
	case 0:
		return 16ULL * num;
	case 1:
		return 6ULL + 2ULL * num;
	default:
		return 6ULL + 8ULL * num;
	}
}

/** The kernel's per-queue counters (struct vpci_q_stats) plus drops. */
struct queue_stats {
	std::uint64_t packets = 0, bytes = 0, notify_sent = 0, notify_suppressed = 0,
		      iotlb_misses = 0, stalls = 0, dropped = 0, fault_perm = 0,
		      fault_miss_timeout = 0, fault_chain = 0, fault_head = 0, fault_ring = 0,
		      fault_desc = 0;
	/** Partial checksums taken from VM1, and those completed here (no GUEST_CSUM). */
	std::uint64_t csum_partial = 0, csum_completed = 0;
	std::uint64_t faults() const
	{
		return fault_perm + fault_miss_timeout + fault_chain + fault_head + fault_ring +
		       fault_desc;
	}
};

// stats(), as vpci-hostdp --stats and scripts/ read it.
struct fault_report {
	std::uint64_t perm = 0, miss_timeout = 0, chain = 0, head = 0, ring = 0, desc = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(fault_report, perm, miss_timeout, chain, head, ring, desc)

struct queue_report {
	unsigned index = 0;
	bool running = false, broken = false;
	std::uint64_t last_avail = 0, used_idx = 0, packets = 0, bytes = 0, dropped = 0,
		      notify_sent = 0, notify_suppressed = 0, iotlb_misses = 0, stalls = 0;
	fault_report faults;
	std::uint64_t csum_partial = 0, csum_completed = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(queue_report, index, running, broken, last_avail, used_idx,
				   packets, bytes, dropped, notify_sent, notify_suppressed,
				   iotlb_misses, stalls, faults, csum_partial, csum_completed)

struct iotlb_report {
	std::uint64_t updates = 0, invalidations = 0, rejected = 0, misses_sent = 0, entries = 0,
		      evictions = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(iotlb_report, updates, invalidations, rejected, misses_sent,
				   entries, evictions)

struct device_report {
	bool connected = false;
	std::uint64_t sessions = 0, messages = 0, features = 0, pending_frames = 0, turns = 0,
		      idle_turns = 0, active_ns = 0, busy_ns = 0;
	iotlb_report iotlb;
	std::vector<queue_report> queues;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(device_report, connected, sessions, messages, features,
				   pending_frames, turns, idle_turns, active_ns, busy_ns, iotlb,
				   queues)

/** One of VM1's virtqueues as we serve it. */
struct queue {
	unsigned index = 0;
	/** The ring as the front-end set it up (the session's). */
	vu::ring *vu = nullptr;
	// datapath state (kernel: struct vpci_queue)
	vpci_vring vr{};
	bool running = false, broken = false, mrg_rxbuf = false;
	/** Used entries a miss keeps from VM1: no more work until published. */
	bool pub_stalled = false;
	/** Misses asked and not answered yet (kernel: vpci_queue.miss). */
	vpci_misses miss{};
	vpci_chain chain{};
	vpci_rx_state rx{};
	queue_stats st;

	/** Started, enabled and fully described (docs/backend.md, "live"). */
	bool live() const { return vu->live(); }
};

/**
 * The lock of the datapath state (kernel: dp_lock), held by the polling
 * thread for each turn and by the control thread for each message.  The
 * polling thread takes it again right after releasing it, so a plain mutex
 * would starve the control thread: a waiting control thread makes the
 * polling thread hold off until it got its turn.  The control thread
 * blocks (futex) rather than spins: it shares a CPU with others.
 */
class dp_lock {
public:
	void lock_control()
	{
		waiting_.fetch_add(1, std::memory_order_acq_rel);
		m_.lock();
	}
	void unlock_control()
	{
		m_.unlock();
		waiting_.fetch_sub(1, std::memory_order_acq_rel);
	}
	void lock_datapath()
	{
		while (waiting_.load(std::memory_order_acquire))
			relax();
		m_.lock();
	}
	void unlock_datapath() { m_.unlock(); }

	/** lock_control() for a scope. */
	struct control_guard {
		explicit control_guard(dp_lock &l) : l_(l) { l_.lock_control(); }
		~control_guard() { l_.unlock_control(); }
		control_guard(const control_guard &) = delete;
		control_guard &operator=(const control_guard &) = delete;
		dp_lock &l_;
	};

private:
	static void relax()
	{
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#else
		std::this_thread::yield();
#endif
	}
	std::mutex m_;
	std::atomic<unsigned> waiting_{0};
};

/** A frame taken from VM1's TX ring, waiting for its RX ring. */
struct frame {
	std::vector<std::uint8_t> data;
	std::uint32_t len = 0;
	bool stalled = false; // counted once as a stall
	/** A partial checksum passed on to a front-end with GUEST_CSUM (header fields). */
	bool csum_partial = false;
	std::uint16_t csum_start = 0, csum_offset = 0;
};

} // namespace

guest_memory::guest_memory(const vu::memory &mem, const std::vector<unique_fd> &fds)
{
	struct plan {
		std::uint64_t file_off, delta, len;
	};
	std::vector<plan> plans;
	std::uint64_t total = 0;
	for (std::uint32_t i = 0; i < mem.nregions; i++) {
		const vu::mem_region &r = mem.regions[i];
		if (const char *why = vu::region_error(r))
			throw std::runtime_error(fmt::format("region {}: {}", i, why));
		struct stat st;
		if (::fstat(fds.at(i).get(), &st) < 0)
			throw_errno(fmt::format("fstat(region {} fd)", i));
		// Touching a mapping past the end of a file raises SIGBUS.
		if (S_ISREG(st.st_mode) &&
		    static_cast<std::uint64_t>(st.st_size) < r.mmap_offset + r.memory_size)
			throw std::runtime_error(fmt::format(
				"region {}: offset {:#x} + size {:#x} past the end of its file ({:#x} "
				"bytes)",
				i, r.mmap_offset, r.memory_size, st.st_size));
		plan p{r.mmap_offset & ~4095ULL, r.mmap_offset & 4095ULL, 0};
		p.len = page_up(p.delta + r.memory_size);
		if (p.len < r.memory_size || total + p.len < total)
			throw std::runtime_error(fmt::format("region {}: size {:#x} too large", i,
							     r.memory_size));
		regions_.push_back(vu::region{r.guest_phys_addr, r.memory_size, r.userspace_addr,
					      total + p.delta});
		plans.push_back(p);
		total += p.len;
	}
	area_ = mmap_area::reserve(total);
	std::uint64_t at = 0;
	for (std::uint32_t i = 0; i < mem.nregions; i++) {
		area_.map_fixed_shared(at, fds[i].get(), plans[i].len, plans[i].file_off, true);
		at += plans[i].len;
	}
}

struct device::impl final : vu::device_iface {
	explicit impl(const config &c) : cfg(c), sess(*this, nqueues)
	{
		if (!cfg.burst || !cfg.max_frame || !cfg.backlog)
			throw std::invalid_argument("hostdp: burst, max_frame and backlog must be "
						    "non-zero");
		if (vpci_iotlb_init(&iotlb, cfg.iotlb_entries, 0))
			throw std::bad_alloc();
		peer.iotlb = &iotlb;
		bounce.resize(cfg.backlog);
		for (auto &f : bounce)
			f.data.resize(cfg.max_frame);
		scratch.data.resize(cfg.max_frame);
		for (unsigned i = 0; i < nqueues; i++) {
			q[i].index = i;
			q[i].vu = &sess.queue(i);
		}
	}
	~impl() { vpci_iotlb_destroy(&iotlb); }

	config cfg;
	/**
	 * The session's socket belongs to the control thread; its state
	 * (rings, features, the back-end channel the polling thread sends
	 * misses on) changes only inside apply(), under lock.
	 */
	dp_lock lock;
	vu::session sess;
	std::atomic<bool> active{false};
	/** The features VM1 acked (the session's, without PROTOCOL_FEATURES). */
	std::uint64_t features = 0;
	std::optional<guest_memory> mem;
	vpci_iotlb iotlb{};
	vpci_peer peer{};
	std::array<queue, nqueues> q;
	std::vector<frame> bounce; // the backlog, a ring of pend_n frames from pend_head
	frame scratch;		   // a frame read while the backlog is full (dropped)
	std::size_t pend_head = 0, pend_n = 0;
	bool need_sync = false;
	std::chrono::milliseconds miss_timeout{cfg.miss_timeout_ms};
	// counters
	std::uint64_t iotlb_updates = 0, iotlb_invalidations = 0, misses_sent = 0;
	/** Polling turns while a queue was served, and those that moved nothing. */
	std::uint64_t turns = 0, idle_turns = 0;
	/** Time spent in those turns (since the previous turn), and in turns that moved frames. */
	std::uint64_t active_ns = 0, busy_ns = 0;
	clock::time_point last_turn{};

	bool iommu() const { return sess.iommu(); }

	// ---- session (vu::device_iface) --------------------------------------
	void session_reset(vu::reset_reason, std::uint32_t) override
	{
		for (queue &x : q) {
			stop(x);
			const queue_stats keep = x.st; // counters survive sessions
			const unsigned i = x.index;
			x = queue{};
			x.index = i;
			x.vu = &sess.queue(i);
			x.st = keep;
		}
		pend_head = pend_n = 0;
		vpci_iotlb_del_to_end(&iotlb, 0);
		iotlb.peer_mem_size = 0;
		peer.base = nullptr;
		peer.size = 0;
		mem.reset();
		features = 0;
	}

	/** Each message under the lock, the queues following it (sync()) before the reply. */
	void apply(const std::function<void()> &fn) override
	{
		dp_lock::control_guard g(lock);
		fn();
		sync();
	}

	// ---- queues --------------------------------------------------------
	void stop(queue &x)
	{
		if (!x.running)
			return;
		x.running = false;
		spdlog::info("queue {}: stopped at {}", x.index, x.vr.last_avail);
	}

	/** Stop @p x for good after a ring-level fault, until VM1 disables it. */
	void q_break(queue &x, int err)
	{
		// A ring fault whatever the failed access was (kernel: __vpci_fault).
		fault(x, err, err == -EPROTO ? 0 : x.vr.miss_iova, 0, true);
		x.running = false;
		x.broken = true;
		spdlog::error("queue {}: stopped after a ring fault ({})", x.index, err);
	}

	void fault(queue &x, int err, std::uint64_t iova, std::uint64_t len, bool ring = false)
	{
		// The kernel's reasons (vpci_fault); anything else is a bad descriptor.
		static constexpr struct {
			int err;
			std::uint64_t queue_stats::*counter;
			const char *reason;
		} kinds[] = {{-EACCES, &queue_stats::fault_perm, "perm"},
			     {-ENOENT, &queue_stats::fault_miss_timeout, "miss_timeout"},
			     {-ELOOP, &queue_stats::fault_chain, "chain"},
			     {-E2BIG, &queue_stats::fault_chain, "chain"},
			     {-ERANGE, &queue_stats::fault_head, "head"},
			     {-EPROTO, &queue_stats::fault_ring, "ring"}};
		std::uint64_t queue_stats::*counter = &queue_stats::fault_desc;
		const char *reason = "desc";
		for (const auto &k : kinds)
			if (k.err == (ring ? -EPROTO : err)) {
				counter = k.counter;
				reason = k.reason;
			}
		x.st.*counter += 1;
		const auto lvl = x.st.faults() <= faults_logged ? spdlog::level::warn
								: spdlog::level::debug;
		spdlog::log(lvl, "queue {}: fault {} ({}) iova {:#x} len {}", x.index, reason, err,
			    iova, len);
	}

	/**
	 * A translation is missing at x.vr.miss_iova (kernel: vpci_stall), with
	 * the driver's rules (core_miss.c): asked once per page, settled by
	 * IOTLB messages, timed out from the first ask (no look-ahead, see
	 * sync()).  True: stall and retry later; false: the miss lasted longer
	 * than the timeout and the access is a fault now.
	 */
	bool stall(queue &x)
	{
		miss_ctx ctx{this, &x};
		return vpci_misses_stall(&x.miss, &x.vr, now_ms(), timeout_ms(), &miss_ops, &ctx) >=
		       0;
	}
	/** A ring page @p x needs before it starts: asked once per timeout. */
	void ask_ring_page(queue &x, std::uint64_t iova, std::uint32_t perm)
	{
		miss_ctx ctx{this, &x};
		vpci_misses_ask(&x.miss, iova, perm, now_ms(), timeout_ms(), &miss_ops, &ctx);
	}
	/** The clock of misses (core_miss.c): milliseconds. */
	static std::uint64_t now_ms()
	{
		return static_cast<std::uint64_t>(
			std::chrono::duration_cast<std::chrono::milliseconds>(
				clock::now().time_since_epoch())
				.count());
	}
	std::uint64_t timeout_ms() const { return static_cast<std::uint64_t>(miss_timeout.count()); }

	/**
	 * core_miss.c's way out.  False only when the message could not be
	 * sent (asked again at the next stall); without a back-end channel
	 * nobody answers, and the miss times out like an unanswered one.
	 */
	bool send_miss(queue &x, std::uint64_t iova, std::uint32_t perm)
	{
		if (!sess.has_backend_channel()) {
			spdlog::warn("iotlb: miss for {:#x} but no back-end channel", iova);
			x.st.iotlb_misses++;
			return true;
		}
		try {
			sess.send_iotlb_miss(iova, 1, static_cast<std::uint8_t>(perm));
		} catch (const std::system_error &e) {
			spdlog::warn("iotlb: sending a miss failed: {}", e.what());
			return false;
		}
		misses_sent++;
		x.st.iotlb_misses++;
		return true;
	}
	struct miss_ctx {
		impl *self;
		queue *x;
	};
	static constexpr vpci_miss_ops miss_ops = {
		.post =
			[](void *c, std::uint64_t iova, std::uint32_t perm, bool) {
				auto *n = static_cast<miss_ctx *>(c);
				return n->self->send_miss(*n->x, iova, perm);
			},
	};

	/**
	 * Publish used entries and interrupt VM1 if it asked (kernel:
	 * vpci_signal): a miss holds them, and the queue's work, until it is
	 * answered (pub_stalled); VM1 unmapping its used ring is a ring fault.
	 */
	void signal(queue &x)
	{
		if (x.broken)
			return; // nothing more goes to VM1 after a ring fault
		net_ctx ctx{this, &x};
		const int ret = vpci_net_signal(&x.vr, &net_ops, &ctx);
		if (ret == VPCI_NET_SIGNAL_STALLED) {
			x.pub_stalled = true;
			return;
		}
		if (x.pub_stalled)
			x.miss.pending = false; // the miss it waited for is answered
		x.pub_stalled = false;
		if (ret < 0)
			return; // q_break() through net_ops
		if (ret != VPCI_NET_SIGNAL_NOTIFY) {
			x.st.notify_suppressed++;
			return;
		}
		x.st.notify_sent++;
		const std::uint64_t one = 1;
		if (x.vu->call && ::write(x.vu->call.get(), &one, sizeof(one)) != sizeof(one))
			spdlog::debug("queue {}: write(call eventfd): {}", x.index,
				      std::strerror(errno));
	}

	enum class rings { mapped, missing, unusable };
	/**
	 * Whether every byte of @p x's rings translates with the access the
	 * device needs; with @p ask, a miss for the first missing byte goes out
	 * (kernel: vpci_map_rings).  unusable: mapped without the permission
	 * (only an IOTLB message can change that).
	 */
	rings rings_mapped(queue &x, bool ask)
	{
		const std::uint64_t addr[3] = {x.vu->desc, x.vu->avail, x.vu->used};
		for (unsigned part = 0; part < 3; part++) {
			const std::uint32_t perm = part == 2 ? VPCI_PERM_WO : VPCI_PERM_RO;
			std::uint64_t iova = addr[part], left = ring_bytes(part, x.vu->num), off,
				      contig;
			while (left) {
				int err = vpci_iotlb_translate(&iotlb, iova, left, perm, &off, &contig);
				if (err == -ENOENT) {
					if (ask)
						ask_ring_page(x, iova, perm);
					return rings::missing;
				}
				if (err) {
					if (ask)
						spdlog::warn("queue {}: ring part {} at {:#x} unusable: {}",
							     x.index, part, addr[part], err);
					return rings::unusable;
				}
				iova += contig;
				left -= contig;
			}
		}
		return rings::mapped;
	}

	/** Start or stop queues to match the session (kernel: vpci_dp_sync). */
	void sync()
	{
		need_sync = false;
		for (queue &x : q) {
			const bool want = x.live() && mem;
			if (x.running && !want)
				stop(x);
			if (!x.vu->enabled)
				x.broken = false; // VM1 disabling the ring recovers it
			if (!want || x.running || x.broken)
				continue;
			if (const rings r = rings_mapped(x, true); r != rings::mapped) {
				// Missing: look again next turn; unusable: at the next message.
				need_sync = need_sync || r == rings::missing;
				continue;
			}
			// Disabled and enabled again: resume where it stopped.
			vu::ring &r = *x.vu;
			r.base = position(x);
			if (vpci_vring_init(&x.vr, &peer, r.desc, r.avail, r.used, r.num, r.base,
					    features & virtio_net::bit(virtio_net::f_event_idx))) {
				x.broken = true;
				spdlog::error("queue {}: bad ring geometry", x.index);
				continue;
			}
			x.mrg_rxbuf = features & virtio_net::bit(virtio_net::f_mrg_rxbuf);
			// One miss at a time, not the driver's look-ahead: hostdp
			// reflects through a bounded backlog and drops when it
			// overflows, and with a small IOTLB the answers to misses
			// asked ahead evict the entries in use (seen: 4-13 % of
			// HostDp.EvictedRingEntriesAreMissesNotRingFaults lost
			// under TSan; none without the look-ahead).
			vpci_misses_reset(&x.miss, 0);
			x.pub_stalled = false;
			x.running = true;
			// Busy polling: VM1 need not kick (a no-op with EVENT_IDX).
			vpci_vring_kick_enable(&x.vr, false);
			spdlog::info("queue {}: started at {} (num {}, desc {:#x} avail {:#x} used {:#x})",
				     x.index, r.base, r.num, r.desc, r.avail, r.used);
		}
	}

	/** Where a stopped ring resumes: its progress if it ran since it was set up. */
	std::uint16_t position(queue &x)
	{
		if (x.running || x.vr.num)
			return x.vr.last_avail;
		return x.vu->base;
	}

	/** Stop @p x because VM1 changes it; the next start begins at its ring's base. */
	void reconfigure(queue &x)
	{
		stop(x);
		x.vr = vpci_vring{};
	}

	// ---- datapath ------------------------------------------------------

	/** What core_net.c reaches of a queue (kernel: vpci_net_ops). */
	struct net_ctx {
		impl *self;
		queue *x;
	};
	static constexpr vpci_net_ops net_ops = {
		.fault =
			[](void *c, int err, std::uint64_t iova, std::uint64_t len) {
				auto *n = static_cast<net_ctx *>(c);
				n->self->fault(*n->x, err, iova, len, false);
			},
		.stall =
			[](void *c) {
				auto *n = static_cast<net_ctx *>(c);
				return n->self->stall(*n->x);
			},
		.ring_fault =
			[](void *c, int err) {
				auto *n = static_cast<net_ctx *>(c);
				n->self->q_break(*n->x, err);
			},
	};

	/** Take one chain from VM1's TX ring (kernel: vpci_tx_one). 1: consumed. */
	int tx_one(queue &x, std::uint16_t avail, frame *&out)
	{
		net_ctx ctx{this, &x};
		out = nullptr;
		const int len = vpci_net_tx_pop(&x.vr, &x.chain, avail, cfg.max_frame, &net_ops, &ctx);
		if (len <= 0)
			return len ? 1 : 0; // a bad chain consumed, or nothing
		// A full backlog drops (the kernel's qdisc does); VM1's TX ring
		// is drained either way.
		frame &f = pend_n < bounce.size() ? bounce[(pend_head + pend_n) % bounce.size()]
						  : scratch;
		std::uint8_t hdr[hdr_len];
		const vpci_iov to{f.data.data(), static_cast<std::uint32_t>(len)};
		const int err =
			vpci_net_tx_read(&x.vr, &x.chain, hdr, sizeof(hdr), &to, 1, &net_ops, &ctx);
		if (err == -EAGAIN || err == -EPIPE)
			return 0;
		if (err)
			return 1;
		// The driver's header rules (vpci_rx_hdr()); no GSO offered here.
		if (vpci_net_hdr_check(hdr, static_cast<std::uint32_t>(len), cfg.max_frame, true,
				       0)) {
			net_ops.fault(&ctx, -EINVAL, x.chain.seg[0].addr,
				      static_cast<std::uint64_t>(len));
			return 1;
		}
		// A partial checksum goes on as one (VIRTIO 5.1.6.4: the device
		// may set NEEDS_CSUM once GUEST_CSUM is negotiated) or is
		// completed here; its field must lie within the frame.
		f.csum_partial = hdr[0] & VPCI_HDR_F_NEEDS_CSUM;
		if (f.csum_partial) {
			f.csum_start = static_cast<std::uint16_t>(hdr[6] | hdr[7] << 8);
			f.csum_offset = static_cast<std::uint16_t>(hdr[8] | hdr[9] << 8);
			if (!net::csum_field_fits(static_cast<std::uint32_t>(len), f.csum_start,
						  f.csum_offset)) {
				net_ops.fault(&ctx, -EINVAL, x.chain.seg[0].addr,
					      static_cast<std::uint64_t>(len));
				return 1;
			}
			x.st.csum_partial++;
			if (!(features & virtio_net::bit(virtio_net::f_guest_csum))) {
				net::csum_complete(f.data.data(), static_cast<std::uint32_t>(len),
						   f.csum_start, f.csum_offset);
				f.csum_partial = false;
				x.st.csum_completed++;
			}
		}
		x.miss.pending = false;
		x.st.packets++;
		x.st.bytes += static_cast<std::uint32_t>(len);
		if (&f == &scratch) {
			x.st.dropped++;
			return 1;
		}
		f.len = static_cast<std::uint32_t>(len);
		f.stalled = false;
		out = &f;
		return 1;
	}

	/**
	 * Copy one frame into VM1's RX buffers (kernel: vpci_rx_one).  0:
	 * delivered; -EAGAIN: keep it (no buffers, or a miss being served);
	 * another error: dropped.
	 */
	int rx_one(queue &x, const frame &f)
	{
		net_ctx ctx{this, &x};
		std::uint8_t hdr[hdr_len] = {}; // no offloads but a partial checksum
		if (f.csum_partial) {
			hdr[0] = VPCI_HDR_F_NEEDS_CSUM;
			hdr[6] = static_cast<std::uint8_t>(f.csum_start);
			hdr[7] = static_cast<std::uint8_t>(f.csum_start >> 8);
			hdr[8] = static_cast<std::uint8_t>(f.csum_offset);
			hdr[9] = static_cast<std::uint8_t>(f.csum_offset >> 8);
		}
		// One piece: frames are linear here (no GSO, no SG).
		const vpci_iov from{const_cast<std::uint8_t *>(f.data.data()), f.len};
		const int ret = vpci_net_rx(&x.vr, &x.rx, hdr, &from, 1, x.mrg_rxbuf, &net_ops, &ctx);
		switch (ret) {
		case VPCI_NET_RX_DONE:
			// Cleared so that a later miss at the same IOVA (transient:
			// the same slot mapped again) is asked.
			x.miss.pending = false;
			return 0;
		case VPCI_NET_RX_NOBUFS:
		case VPCI_NET_RX_STALLED:
			return -EAGAIN;
		default:
			return ret;
		}
	}

	/** Drain VM1's TX ring into free bounce slots (kernel: vpci_poll). */
	/** Publish what a miss held back; true while @p x still waits for it. */
	bool held_back(queue &x)
	{
		if (x.pub_stalled && x.running)
			signal(x);
		return x.pub_stalled && x.running;
	}

	unsigned tx_burst()
	{
		queue &x = q[txq];
		if (!x.running || held_back(x))
			return 0;
		std::uint16_t avail;
		int err = vpci_vring_avail_idx(&x.vr, &avail);
		if (err) {
			if (err == -ENOENT) {
				stall(x);
			} else {
				if (err == -EPROTO)
					spdlog::error("queue {}: avail idx {} but last_avail {} (num {})",
						      x.index, avail, x.vr.last_avail, x.vr.num);
				q_break(x, -EPROTO);
			}
			return 0;
		}
		unsigned work = 0;
		frame *f;
		while (x.running && work < cfg.burst && tx_one(x, avail, f) == 1) {
			work++;
			if (f)
				pend_n++;
		}
		if (work)
			signal(x);
		return work;
	}

	/** Hand the waiting frames to VM1's RX ring, in order. */
	unsigned deliver()
	{
		queue &x = q[rxq];
		unsigned n = 0;
		if (held_back(x))
			return 0;
		while (pend_n) {
			frame &f = bounce[pend_head];
			if (!x.running && x.live() && !x.broken)
				break; // its rings are being translated: wait
			int err = x.running ? rx_one(x, f) : -ENODEV;
			if (err == -EAGAIN) {
				if (!f.stalled) {
					f.stalled = true;
					x.st.stalls++;
				}
				break;
			}
			if (!err) {
				x.st.packets++;
				x.st.bytes += f.len;
			} else {
				x.st.dropped++;
			}
			pend_head = (pend_head + 1) % bounce.size();
			pend_n--;
			n++;
		}
		if (x.running && x.vr.used_idx != x.vr.used_pub)
			signal(x);
		return n;
	}

	// ---- control (vu::device_iface) --------------------------------------
	std::uint64_t offered_features() const override { return hostdp_device_features; }
	unsigned queue_pairs() const override { return nqueues / 2; }
	void features_set(std::uint64_t f) override
	{
		features = f;
	}

	std::optional<std::vector<vu::region>> memory_table(vu::message &m) override
	{
		const auto &t = std::get<vu::set_mem_table>(m.body).p;
		guest_memory gm(t, m.fds); // throws: the message is refused
		for (queue &x : q)
			if (x.running) {
				x.vu->base = position(x); // resumes there with the new table
				reconfigure(x);
			}
		mem.emplace(std::move(gm));
		peer.base = mem->base();
		peer.size = mem->size();
		iotlb.peer_mem_size = mem->size();
		// Old translations point into the old layout.
		vpci_iotlb_del_to_end(&iotlb, 0);
		if (!iommu())
			for (const vu::region &r : mem->regions())
				if (vpci_iotlb_add(&iotlb, r.gpa, r.size, r.offset, VPCI_PERM_RW))
					throw std::runtime_error(fmt::format(
						"region at GPA {:#x} does not fit the IOTLB", r.gpa));
		spdlog::info("vhost-user: memory table with {} region(s), {} MiB mapped",
			     mem->regions().size(), mem->size() >> 20);
		return mem->regions();
	}

	bool ring_changed(const vu::message &, unsigned i, vu::ring_change what, bool) override
	{
		switch (what) {
		case vu::ring_change::num:
		case vu::ring_change::addr:
		case vu::ring_change::base:
			// The ring starts again from its (new) set-up.
			reconfigure(q[i]);
			break;
		case vu::ring_change::kick:
		case vu::ring_change::call:
		case vu::ring_change::err:
		case vu::ring_change::enable:
			break; // sync() follows the ring's state
		}
		return false;
	}

	std::optional<std::uint16_t> stop_ring(const vu::message &, unsigned i) override
	{
		queue &x = q[i];
		const std::uint16_t pos = position(x);
		reconfigure(x);
		x.vu->base = pos;
		return pos;
	}

	vu::iotlb_result iotlb_message(const vu::message &m, const vu::iotlb_msg &t, bool to_end,
			       std::uint64_t offset) override
	{
		if (t.type == vu::iotlb_update) {
			if (int err = vpci_iotlb_add(&iotlb, t.iova, t.size, offset, t.perm)) {
				spdlog::warn("iotlb: rejected {}: vpci_iotlb_add: {}", m.to_string(),
					     err);
				return {false, false};
			}
			iotlb_updates++;
			// The misses it answers (kernel: vpci_dp_misses_forget).
			for (queue &x : q)
				vpci_misses_forget(&x.miss, t.iova, t.size);
			return {};
		}
		// INVALIDATE: applied before the ack (the caller sends it): the
		// datapath runs in this thread and holds no translation between
		// turns, so no access to the range can follow.
		if (to_end)
			vpci_iotlb_del_to_end(&iotlb, t.iova);
		else
			vpci_iotlb_del(&iotlb, t.iova, t.size);
		iotlb_invalidations++;
		// A miss asked there may never be answered now (VM1's IOMMU looked
		// it up after the unmap): the queue asks again when it meets the
		// address (kernel: vpci_dp_misses_forget).
		for (queue &x : q) {
			if (x.miss.pending && x.miss.wait >= t.iova &&
			    (to_end || x.miss.wait - t.iova < t.size))
				x.miss.pending = false;
			vpci_misses_forget(&x.miss, t.iova, to_end ? 0 : t.size);
		}
		// A running queue whose rings no longer translate: a ring fault,
		// stopped until VM1 disables the ring (kernel: vpci_dp_sync).
		for (queue &x : q)
			if (x.running && rings_mapped(x, false) != rings::mapped)
				q_break(x, -EPROTO);
		return {};
	}

	void disconnect(const std::string &why) { sess.disconnect(why); }

	static queue_report report(const queue &x)
	{
		const queue_stats &s = x.st;
		return {x.index,
			x.running,
			x.broken,
			x.vr.last_avail,
			x.vr.used_idx,
			s.packets,
			s.bytes,
			s.dropped,
			s.notify_sent,
			s.notify_suppressed,
			s.iotlb_misses,
			s.stalls,
			{s.fault_perm, s.fault_miss_timeout, s.fault_chain, s.fault_head, s.fault_ring,
			 s.fault_desc},
			s.csum_partial,
			s.csum_completed};
	}
};

device::device(const config &cfg) : p_(std::make_unique<impl>(cfg)) {}
device::~device() = default;

bool device::attach(unique_fd sock) { return p_->sess.attach(std::move(sock)); }
bool device::connected() const noexcept { return p_->sess.connected(); }
int device::fd() const noexcept { return p_->sess.fd(); }
void device::disconnect(const std::string &why) { p_->disconnect(why); }

unsigned device::poll_control()
{
	// Bounded: a front-end streaming messages does not keep this thread
	// (signals, the listener) waiting.
	unsigned n = 0;
	while (n < control_budget && p_->sess.handle_one())
		n++;
	return n;
}

unsigned device::poll_datapath()
{
	impl &d = *p_;
	const auto t0 = clock::now();
	d.lock.lock_datapath();
	if (d.need_sync)
		d.sync();
	const unsigned work = d.tx_burst() + d.deliver();
	bool act = d.pend_n || d.need_sync;
	for (const queue &x : d.q)
		act = act || x.running;
	const auto t1 = clock::now();
	auto ns = [](clock::duration x) {
		return static_cast<std::uint64_t>(
			std::chrono::duration_cast<std::chrono::nanoseconds>(x).count());
	};
	if (act) {
		d.turns++;
		d.idle_turns += !work;
		d.active_ns += ns(t1 - (d.last_turn > t0 - std::chrono::milliseconds(1) ? d.last_turn : t0));
		if (work)
			d.busy_ns += ns(t1 - t0);
	}
	d.last_turn = t1;
	d.active.store(act, std::memory_order_relaxed);
	d.lock.unlock_datapath();
	return work;
}

bool device::active() const noexcept { return p_->active.load(std::memory_order_relaxed); }

nlohmann::json device::stats() const
{
	impl &d = *p_;
	dp_lock::control_guard g(d.lock);
	const vu::session_counters &sc = d.sess.counters();
	device_report r{d.sess.connected(),
			sc.sessions,
			sc.messages,
			d.features,
			d.pend_n,
			d.turns,
			d.idle_turns,
			d.active_ns,
			d.busy_ns,
			{d.iotlb_updates, d.iotlb_invalidations, sc.iotlb_rejected, d.misses_sent,
			 d.iotlb.n, d.iotlb.evictions},
			{}};
	for (const queue &x : d.q)
		r.queues.push_back(impl::report(x));
	return r;
}

} // namespace vpci::hostdp
