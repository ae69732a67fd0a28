// SPDX-License-Identifier: GPL-2.0
// The driver's core (kernel/core_vring.c, core_iotlb.c) against every fault
// of the peer simulator's catalogue (vpci::sim::faults()), in two processes
// that map the same guest memory at different addresses:
//
//  - this process is VM1: a vpci::sim::vm1 (emulated IOMMU, split rings,
//    canaries) over a memfd.  It posts frames and RX buffers, answers the
//    device's IOTLB misses from its IOMMU (never for an IOVA it has not
//    mapped, like QEMU), sends invalidations and waits for their ack,
//    injects the fault and checks what came back;
//  - a forked child is VM2's driver: its own mapping of the memfd is the
//    peer BAR (VM1's mapping is unmapped there), its vpci_iotlb holds only
//    what VM1 sent, and it serves VM1's two rings with the core the way
//    kernel/datapath.c does: NAPI's poll of VM1's TX ring (vpci_poll,
//    vpci_tx_one), ndo_start_xmit into VM1's RX ring with mergeable
//    buffers (vpci_start_xmit, vpci_rx_one), a miss stalls only its queue
//    and is retried after the update or becomes fault_miss_timeout
//    (vpci_stall), ring faults stop the queue until VM1 resets it
//    (vpci_q_break, vpci_dp_sync), and the rings are mapped through misses
//    before a queue starts (vpci_map_rings).  Frames taken from VM1's TX
//    ring go back into VM1's RX ring (the reflector of sim/traffic.sh);
//    the child also sends frames of its own that need two RX buffers.
//    datapath.c is kernel code (skbs, NAPI), so the device here restates
//    its logic; each function names the one it follows, and must change
//    with it.
//
// The processes talk over a SOCK_SEQPACKET socketpair in lock step (VM1
// asks, the device answers with its misses and one "done"), standing in
// for the control area's message rings and doorbells.  Time is counted in
// rounds: a miss nobody answers times out after kMissRetries rounds
// (miss_timeout_ms), and the device polls both rings every round (poll
// mode), so kicks and interrupts are not modelled.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include "fd.hpp"
#include "sim_iommu.hpp"
#include "sim_traffic.hpp"
#include "sim_vm1.hpp"
#include "sim_vring.hpp"
#include "test_util.hpp"

#include <linux/vhost_pci_netlink.h>
extern "C" {
#include "vpci_core.h"
}

using namespace vpci;
using namespace vpci::sim;

namespace {

constexpr std::uint16_t kRingSize = 16;
/** Frames VM1 sends in each phase (more than a ring: an RX fault is reached). */
constexpr unsigned kFrames = 24;
/** Sizes of the device's own frames: header + frame spill into a second buffer. */
constexpr std::uint32_t kDeviceFrame[] = {4085, 8000};
constexpr std::uint64_t kMaxFrames = 256;

// The device (kernel/vpci.h, datapath.c), as far as the datapath uses it.
constexpr u8 kGso = (1U << VPCI_HDR_GSO_TCPV4) | (1U << VPCI_HDR_GSO_TCPV6);
constexpr u32 kMtu = 9000;		// VM1's page-sized frames and the device's own fit
constexpr u32 kVlanEthHlen = 18;	// VLAN_ETH_HLEN
constexpr unsigned kBudget = 64;	// NAPI weight
constexpr unsigned kMissRetries = 3;	// rounds an unanswered miss stalls (miss_timeout)
constexpr u32 kIotlbEntries = 4096;
constexpr unsigned kReasons = VPCI_FAULT_MAX + 1;
const char *const kReasonNames[] = {"perm", "miss_timeout", "chain", "head", "ring", "desc"};
static_assert(std::size(kReasonNames) == kReasons);

constexpr int kReplyTimeoutMs = 5000;
constexpr unsigned kChildSeconds = 10;
constexpr unsigned kMaxRounds = 2000;

/** ethtool -S name of a counter: VM1's TX ring is the device's receive side. */
std::string counter_name(unsigned vq, unsigned reason)
{
	return fmt::format("vq0_{}_fault_{}", vq == txq ? "rx" : "tx", kReasonNames[reason]);
}

// ---------------------------------------------------------------- the link

enum class op : std::uint32_t {
	// VM1 -> device; each is answered by misses, then one done
	config = 1, // ring q at a (desc), b (avail), c (used), d entries, enabled
	update,	    // a..+b maps to BAR offset c with perm
	invalidate, // drop a..+b; the done is the ack
	run,	    // one burst on both rings
	xmit,	    // the device's stack sends frame seq a of b bytes
	reset,	    // VM1 disabled both rings and dropped every mapping
	stats,	    // answered by a device_report instead
	quit,
	// device -> VM1
	miss, // queue q has no translation for a with perm
	done, // a: work done, b: queues stalled on a miss, c: queues broken, d: frames queued
};

struct wire {
	op type;
	std::uint32_t q = 0, perm = 0, pad = 0;
	std::uint64_t a = 0, b = 0, c = 0, d = 0;
};

struct device_report {
	std::uint64_t faults[2][kReasons];
	std::uint64_t delivered, dropped, bad_msgs;
};

void send_msg(int fd, const void *p, std::size_t n)
{
	if (::send(fd, p, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n))
		throw_errno("send(device link)");
}

/** Receive one message of exactly @p n bytes; false on EOF.  @p timeout_ms < 0: wait forever. */
bool recv_msg(int fd, void *p, std::size_t n, int timeout_ms)
{
	pollfd pfd{fd, POLLIN, 0};
	const int r = ::poll(&pfd, 1, timeout_ms);
	if (r < 0)
		throw_errno("poll(device link)");
	if (r == 0)
		throw std::runtime_error("device link: no answer");
	const ssize_t got = ::recv(fd, p, n, MSG_TRUNC);
	if (got < 0)
		throw_errno("recv(device link)");
	if (got == 0)
		return false;
	if (static_cast<std::size_t>(got) != n)
		throw std::runtime_error("device link: message of the wrong size");
	return true;
}

// ---------------------------------------------------------------- process B: the device

/** struct vpci_queue, what of it the datapath uses. */
struct dev_queue {
	unsigned index = 0;
	vpci_vring vr{};
	vpci_chain chain{};
	vpci_rx_state rx{};
	u64 desc = 0, avail = 0, used = 0;
	u16 num = 0;
	bool enabled = false, mapped = false, running = false, broken = false;
	vpci_misses miss{};
	std::uint64_t faults[kReasons] = {};
};

class device {
public:
	device(u8 *bar, u64 size)
	{
		if (vpci_iotlb_init(&iotlb_, kIotlbEntries, size))
			throw std::bad_alloc();
		peer_ = {bar, size, &iotlb_};
		q_[rxq].index = rxq;
		q_[txq].index = txq;
	}
	~device() { vpci_iotlb_destroy(&iotlb_); }
	device(const device &) = delete;
	device &operator=(const device &) = delete;

	/** Handle one message from VM1: the misses it caused, then done. */
	const std::vector<wire> &handle(const wire &m)
	{
		out_.clear();
		std::uint64_t work = 0;
		switch (m.type) {
		case op::config: {
			dev_queue &q = q_.at(m.q);
			q.desc = m.a;
			q.avail = m.b;
			q.used = m.c;
			q.num = static_cast<u16>(m.d);
			q.enabled = true;
			config_changed();
			break;
		}
		case op::update:
			if (vpci_iotlb_add(&iotlb_, m.a, m.b, m.c, m.perm) == 0) {
				// vpci_dp_misses_forget(): the misses it answers.
				for (auto &q : q_)
					vpci_misses_forget(&q.miss, m.a, m.b);
			} else {
				bad_msgs_++;
			}
			config_changed();
			break;
		case op::invalidate:
			bad_msgs_ += vpci_iotlb_del(&iotlb_, m.a, m.b) != 0;
			// vpci_dp_misses_forget(): a miss asked there is asked again.
			for (auto &q : q_)
				vpci_misses_forget(&q.miss, m.a, m.b);
			config_changed();
			break;
		case op::reset:
			for (auto &q : q_)
				q.enabled = false;
			vpci_iotlb_del_to_end(&iotlb_, 0);
			config_changed();
			break;
		case op::xmit: {
			std::vector<u8> f(m.b);
			build_frame(f, m.a, now_ns());
			stack_.push_back(std::move(f));
			break;
		}
		case op::run:
			rounds_++;
			work = poll() + start_xmit();
			break;
		default:
			throw std::runtime_error("device: unexpected message");
		}
		u32 stalled = 0, broken = 0;
		for (const auto &q : q_) {
			stalled |= (q.running && q.miss.pending) << q.index;
			broken |= q.broken << q.index;
		}
		out_.push_back(wire{.type = op::done, .a = work, .b = stalled, .c = broken,
				    .d = stack_.size()});
		return out_;
	}

	device_report report() const
	{
		device_report r{};
		for (const auto &q : q_)
			std::copy(std::begin(q.faults), std::end(q.faults), r.faults[q.index]);
		r.delivered = delivered_;
		r.dropped = dropped_;
		r.bad_msgs = bad_msgs_;
		return r;
	}

private:
	// vpci_fault(): the same errno -> reason mapping.
	static unsigned reason_of(int err)
	{
		switch (err) {
		case -EACCES:
			return VPCI_FAULT_PERM;
		case -ENOENT:
			return VPCI_FAULT_MISS_TIMEOUT;
		case -ELOOP:
		case -E2BIG:
			return VPCI_FAULT_CHAIN;
		case -ERANGE:
			return VPCI_FAULT_HEAD;
		case -EPROTO:
			return VPCI_FAULT_RING;
		default:
			return VPCI_FAULT_DESC;
		}
	}
	static void fault(dev_queue &q, int err) { q.faults[reason_of(err)]++; }

	void post_miss(unsigned q, u64 iova, u32 perm)
	{
		out_.push_back(wire{.type = op::miss, .q = q, .perm = perm, .a = iova});
	}

	// vpci_stall(): the driver's own rules (core_miss.c), time in rounds.
	// True to stall and retry, false when the miss timed out.
	bool stall(dev_queue &q)
	{
		struct ctx {
			device *self;
			dev_queue *q;
		} c{this, &q};
		static constexpr vpci_miss_ops ops = {
			.post =
				[](void *p, u64 iova, u32 perm, bool) {
					auto *x = static_cast<ctx *>(p);
					x->self->post_miss(x->q->index, iova, perm);
					return true;
				},
		};
		return vpci_misses_stall(&q.miss, &q.vr, rounds_, kMissRetries, &ops, &c) >= 0;
	}

	// vpci_signal(); notifications are not modelled (poll mode).
	void signal_q(dev_queue &q)
	{
		if (q.broken)
			return; // nothing more goes to VM1 after a ring fault
		// The driver's publish: a miss keeps the entries for the next
		// call, a ring fault stops the queue (through net_ops).
		net_ctx ctx{this, &q};
		(void)vpci_net_signal(&q.vr, &net_ops, &ctx);
	}

	// vpci_q_break()
	static void stop_broken(dev_queue &q, int err)
	{
		fault(q, err);
		q.running = false;
		q.broken = true;
	}

	// vpci_net_ops: what core_net.c reaches of a queue.
	struct net_ctx {
		device *self;
		dev_queue *q;
	};
	static constexpr vpci_net_ops net_ops = {
		.fault = [](void *c, int err, u64, u64) { fault(*static_cast<net_ctx *>(c)->q, err); },
		.stall =
			[](void *c) {
				auto *n = static_cast<net_ctx *>(c);
				return n->self->stall(*n->q);
			},
		.ring_fault = [](void *c, int err) { stop_broken(*static_cast<net_ctx *>(c)->q, err); },
	};

	// vpci_rx_one(): 0 delivered, -EAGAIN keep the frame and stop, else dropped.
	int rx_one(dev_queue &q, const std::vector<u8> &frame)
	{
		net_ctx ctx{this, &q};
		u8 hdr[net_hdr_size] = {}; // no flags, no GSO
		const vpci_iov from{const_cast<u8 *>(frame.data()), static_cast<u32>(frame.size())};
		const int ret = vpci_net_rx(&q.vr, &q.rx, hdr, &from, 1, true, &net_ops, &ctx);
		switch (ret) {
		case VPCI_NET_RX_DONE:
			q.miss.pending = false;
			return 0;
		case VPCI_NET_RX_NOBUFS:
		case VPCI_NET_RX_STALLED:
			return -EAGAIN;
		default:
			return ret;
		}
	}

	// vpci_start_xmit() for every frame the stack has queued, until the queue stops.
	unsigned start_xmit()
	{
		dev_queue &q = q_[rxq];
		unsigned n = 0;
		while (!stack_.empty()) {
			if (!q.running) {
				stack_.pop_front();
				dropped_++;
				n++;
				continue;
			}
			const int err = rx_one(q, stack_.front());
			if (err == -EAGAIN) { // NETDEV_TX_BUSY: the frame stays queued
				if (q.vr.used_idx != q.vr.used_pub)
					signal_q(q);
				break;
			}
			signal_q(q);
			stack_.pop_front();
			if (err)
				dropped_++;
			else
				delivered_++;
			n++;
		}
		return n;
	}

	// vpci_tx_one(): 1 a chain was handled (a frame in @frame when @got), 0 empty or stalled.
	int tx_one(dev_queue &q, u16 avail, std::vector<u8> &frame, bool &got)
	{
		net_ctx ctx{this, &q};
		got = false;
		// As VM2's driver with HOST_TSO4/6 negotiated and no CSUM.
		const int len = vpci_net_tx_pop(&q.vr, &q.chain, avail, VPCI_GSO_MAX_FRAME,
						&net_ops, &ctx);
		if (len <= 0)
			return len ? 1 : 0;
		frame.resize(static_cast<u32>(len));
		u8 hdr[10]; // struct virtio_net_hdr
		const vpci_iov to{frame.data(), static_cast<u32>(len)};
		int err = vpci_net_tx_read(&q.vr, &q.chain, hdr, sizeof(hdr), &to, 1, &net_ops, &ctx);
		if (err == -EAGAIN || err == -EPIPE)
			return 0;
		// vpci_rx_hdr()
		if (!err && vpci_net_hdr_check(hdr, static_cast<u32>(len), kMtu + kVlanEthHlen,
					       false, kGso)) {
			err = -EINVAL;
			fault(q, err);
		}
		if (err)
			return 1;
		q.miss.pending = false;
		got = true;
		return 1;
	}

	// vpci_poll(): drain VM1's TX ring; what it sent goes back (the reflector).
	unsigned poll()
	{
		dev_queue &q = q_[txq];
		unsigned work = 0;
		u16 avail;
		if (q.running && !vpci_vring_avail_idx(&q.vr, &avail)) {
			std::vector<u8> frame;
			bool got;
			while (work < kBudget && tx_one(q, avail, frame, got) == 1) {
				work++;
				if (got)
					stack_.push_back(frame);
			}
			if (work)
				signal_q(q);
		} else if (q.running) {
			if (vpci_vring_avail_idx(&q.vr, &avail) == -ENOENT)
				stall(q);
			else
				stop_broken(q, -EPROTO);
		}
		return work;
	}

	// vpci_map_rings(): a queue's rings must translate before it starts;
	// one miss for the first gap.
	void map_rings()
	{
		for (auto &q : q_) {
			if (!q.enabled) {
				q.mapped = false;
				continue;
			}
			const u64 addr[3] = {q.desc, q.avail, q.used};
			const u64 bytes[3] = {desc_bytes(q.num), avail_bytes(q.num), used_bytes(q.num)};
			bool mapped = true;
			for (unsigned part = 0; part < 3 && mapped; part++) {
				const u32 perm = part == 2 ? VPCI_PERM_WO : VPCI_PERM_RO;
				u64 iova = addr[part], left = bytes[part], off, contig;
				int err = 0;
				while (left) {
					err = vpci_iotlb_translate(&iotlb_, iova, left, perm, &off, &contig);
					if (err)
						break;
					iova += contig;
					left -= contig;
				}
				if (!err)
					continue;
				mapped = false;
				if (err == -ENOENT)
					post_miss(q.index, iova, perm);
			}
			q.mapped = mapped;
		}
	}

	// vpci_dp_sync(): start queues whose rings translate; a running queue
	// whose rings stopped translating is a ring fault, stopped until VM1
	// disables the ring.
	void sync()
	{
		for (auto &q : q_) {
			const bool want = q.enabled && q.mapped;
			if (q.running && !want) {
				q.running = false;
				if (q.enabled && !q.mapped)
					stop_broken(q, -EPROTO);
			}
			if (want && !q.running && !q.broken) {
				if (vpci_vring_init(&q.vr, &peer_, q.desc, q.avail, q.used, q.num, 0,
						    true)) {
					q.broken = true;
					continue;
				}
				vpci_misses_reset(&q.miss, VPCI_PREFETCH_CHAINS);
				q.running = true;
			}
			if (!q.enabled)
				q.broken = false; // VM1 reset recovers a broken queue
		}
	}

	void config_changed()
	{
		map_rings();
		sync();
	}

	vpci_iotlb iotlb_{};
	vpci_peer peer_{};
	std::array<dev_queue, 2> q_;
	std::deque<std::vector<u8>> stack_; // frames VM2's stack wants to send
	std::uint64_t delivered_ = 0, dropped_ = 0, bad_msgs_ = 0;
	u64 rounds_ = 0; // the clock of misses (miss_timeout: kMissRetries)
	std::vector<wire> out_;
};

[[noreturn]] void device_main(int sock, int memfd, std::uint64_t size, void *vm1_view)
{
	::alarm(kChildSeconds);
	try {
		void *bar = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
		if (bar == MAP_FAILED || bar == vm1_view)
			_exit(2);
		// Only the device's own mapping is left: a pointer of VM1's faults here.
		::munmap(vm1_view, size);
		device dev(static_cast<u8 *>(bar), size);
		wire m;
		while (recv_msg(sock, &m, sizeof(m), -1)) {
			if (m.type == op::quit)
				_exit(0);
			if (m.type == op::stats) {
				const device_report r = dev.report();
				send_msg(sock, &r, sizeof(r));
				continue;
			}
			for (const wire &w : dev.handle(m))
				send_msg(sock, &w, sizeof(w));
		}
		_exit(3); // VM1 went away without a quit
	} catch (...) {
		_exit(4);
	}
}

// ---------------------------------------------------------------- process A: VM1

/** The forked device: killed (by its pid) and reaped on every path. */
class child_process {
public:
	explicit child_process(pid_t pid) noexcept : pid_(pid) {}
	child_process(const child_process &) = delete;
	child_process &operator=(const child_process &) = delete;
	~child_process()
	{
		if (pid_ > 0) {
			::kill(pid_, SIGKILL);
			::waitpid(pid_, nullptr, 0);
		}
	}
	/** Wait up to @p ms for it to exit (then kill it); its wait status. */
	int wait(int ms)
	{
		int status = 0;
		for (int t = 0;; t++) {
			const pid_t r = ::waitpid(pid_, &status, WNOHANG);
			if (r < 0)
				throw_errno("waitpid(device)");
			if (r == pid_)
				break;
			if (t >= ms) {
				::kill(pid_, SIGKILL);
				::waitpid(pid_, &status, 0);
				break;
			}
			::usleep(1000);
		}
		pid_ = -1;
		return status;
	}

private:
	pid_t pid_;
};

struct spawned {
	pid_t pid;
	unique_fd sock;
};

spawned spawn_device(int memfd, std::uint64_t size, void *vm1_view)
{
	int sv[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		throw_errno("socketpair(device link)");
	unique_fd mine(sv[0]), theirs(sv[1]);
	const pid_t pid = ::fork();
	if (pid < 0)
		throw_errno("fork(device)");
	if (pid == 0) {
		mine.reset(); // EOF reaches the device when VM1 goes away
		device_main(theirs.get(), memfd, size, vm1_view);
	}
	return {pid, std::move(mine)};
}

/** VM1's end of the link and its iotlb_port: invalidations wait for the ack. */
class device_link : public iotlb_port {
public:
	explicit device_link(unique_fd sock) : sock_(std::move(sock)) {}
	void invalidate(const std::vector<iommu_range> &rs) override
	{
		for (const auto &r : rs) {
			call({.type = op::invalidate, .a = r.iova, .b = r.size});
			invalidations++;
		}
	}
	/** Like QEMU, nothing is pushed: the device misses. */
	void mapped(const iommu_range &) override {}

	/** Send @p m; keep the misses the device answers with; return its done. */
	wire call(const wire &m)
	{
		send_msg(sock_.get(), &m, sizeof(m));
		for (;;) {
			wire r;
			if (!recv_msg(sock_.get(), &r, sizeof(r), kReplyTimeoutMs))
				throw std::runtime_error("device link closed (the device died)");
			if (r.type == op::done)
				return r;
			if (r.type != op::miss)
				throw std::runtime_error("device link: unexpected message");
			misses.push_back(r);
		}
	}
	device_report stats()
	{
		const wire m{.type = op::stats};
		send_msg(sock_.get(), &m, sizeof(m));
		device_report r;
		if (!recv_msg(sock_.get(), &r, sizeof(r), kReplyTimeoutMs))
			throw std::runtime_error("device link closed (the device died)");
		return r;
	}
	void quit()
	{
		const wire m{.type = op::quit};
		send_msg(sock_.get(), &m, sizeof(m));
	}

	std::deque<wire> misses;
	std::uint64_t invalidations = 0;

private:
	unique_fd sock_;
};

unique_fd guest_memfd(std::uint64_t size)
{
	unique_fd fd(::memfd_create("vpci-kcore-faults", MFD_CLOEXEC));
	if (!fd)
		throw_errno("memfd_create");
	if (::ftruncate(fd.get(), static_cast<off_t>(size)) < 0)
		throw_errno("ftruncate(memfd)");
	return fd;
}

vm1_config vm1_cfg(iova_policy p)
{
	vm1_config c;
	c.policy = p;
	c.ring_size = kRingSize;
	return c;
}

/** VM1 and its device in the other process. */
class vm1_process {
public:
	explicit vm1_process(iova_policy policy)
		: policy_(policy), size_(min_ram_size(kRingSize)), memfd_(guest_memfd(size_)),
		  area_(mmap_area::map_shared(memfd_.get(), size_, 0, true)),
		  gm_{static_cast<std::uint8_t *>(area_.data()), size_},
		  dev_(spawn_device(memfd_.get(), size_, area_.data())), child_(dev_.pid),
		  link_(std::move(dev_.sock))
	{
	}

	vm1 &vm() { return *vm_; }

	/** VM1's driver starts: fresh rings, canaries, mappings, RX buffers posted. */
	void boot()
	{
		vm_.reset();
		vm_.emplace(gm_, vm1_cfg(policy_), link_);
		vm().paint_canaries();
		vm().map_static();
		for (unsigned q : {rxq, txq}) {
			const vring_layout &l = vm().layout(q);
			link_.call({.type = op::config, .q = q, .a = l.desc_iova, .b = l.avail_iova,
				    .c = l.used_iova, .d = l.num});
		}
		vm().fill_rx();
		publish();
		pump();
	}
	/** Device reset: VM1 disables its rings and unmaps everything, then boots again. */
	void reset()
	{
		vm_.reset();
		link_.call({.type = op::reset});
		link_.misses.clear(); // asked under the old mappings
		boot();
	}

	/** Make what VM1 added visible (kicks are not needed: the device polls). */
	void publish()
	{
		vm().tx.kick_prepare();
		vm().rx.kick_prepare();
	}

	/**
	 * VM1 sends @p n frames of mixed sizes on its TX ring, one descriptor
	 * short of a full ring (vpci-sim's window): a fault that adds an avail
	 * entry without a descriptor of its own (head-out-of-range,
	 * double-post) would otherwise let a full ring put the avail index
	 * num + 1 ahead of the device, which is rightly a ring fault.
	 */
	void send(unsigned n)
	{
		for (unsigned i = 0; i < n; i++) {
			const std::uint32_t size = sizes_.next();
			for (unsigned r = 0; vm().tx.in_flight() >= kRingSize - 1 ||
					     !vm().send(next_seq, size, now_ns());
			     r++) {
				if (r == kMaxRounds)
					throw std::runtime_error(fmt::format(
						"VM1's TX ring never drains: {} in flight, device queues broken {:#x}",
						vm().tx.in_flight(), broken));
				publish();
				round();
			}
			next_seq++;
		}
		publish();
	}
	/** The device's stack sends @p n frames of its own (two RX buffers each). */
	void xmit(unsigned n)
	{
		for (unsigned i = 0; i < n; i++) {
			const std::uint64_t seq = next_seq++;
			link_.call({.type = op::xmit, .a = seq,
				    .b = kDeviceFrame[seq % std::size(kDeviceFrame)]});
		}
	}

	/** Rounds until nothing moves (twice in a row). */
	void pump()
	{
		for (unsigned n = 0, quiet = 0; n < kMaxRounds; n++) {
			quiet = round() ? 0 : quiet + 1;
			if (quiet == 2)
				return;
		}
		throw std::runtime_error("the device never settles");
	}

	/** Every check on one life of VM1's driver (before a reset, and at the end). */
	void check_vm1(const std::string &when, unsigned bad_used_tx)
	{
		std::vector<std::uint64_t> damaged;
		EXPECT_GT(vm().check_canaries(damaged), 0u);
		EXPECT_TRUE(damaged.empty())
			<< when << ": " << damaged.size()
			<< " canary pages written outside a valid translation, the first at GPA "
			<< fmt::format("{:#x}", damaged.empty() ? 0 : damaged[0]);
		// virtio lets a device write more than it reports, and a frame
		// dropped after its first buffer was written completes that
		// buffer empty: only those may have a written tail.
		EXPECT_LE(vm().rx_tail_damaged, rx_empty)
			<< when << ": RX bytes written past a used length";
		EXPECT_EQ(vm().fault_used_len, 0u) << when << ": fault heads come back empty";
		EXPECT_EQ(vm().rx.counters().bad_used, 0u) << when;
		EXPECT_EQ(vm().tx.counters().bad_used, bad_used_tx) << when;
		EXPECT_EQ(vm().tx.in_flight(), 0) << when << ": every TX chain completed";
		EXPECT_EQ(vm().rx.in_flight(), kRingSize - 1)
			<< when << ": every RX buffer the device took came back";
	}

	/** The device's counters; then it quits and is reaped.  Its wait status in @p status. */
	std::uint64_t invalidations() const { return link_.invalidations; }
	device_report finish(int &status)
	{
		const device_report r = link_.stats();
		link_.quit();
		status = child_.wait(kReplyTimeoutMs);
		return r;
	}

	/** Queues the device reported broken (bit per virtqueue) in its last answer. */
	std::uint32_t broken = 0;
	rx_validator val{kMaxFrames};
	std::uint64_t next_seq = 0, tx_done = 0, rx_empty = 0;
	/** Rounds run, misses answered with an update, misses left unanswered. */
	std::uint64_t rounds = 0, updates = 0, unanswered = 0;

private:
	/** One round: the device runs a burst, VM1 answers misses and reaps. True if anything moved. */
	bool round()
	{
		rounds++;
		const wire d = link_.call({.type = op::run});
		broken = static_cast<std::uint32_t>(d.c);
		bool busy = d.a || d.b || d.d;
		busy |= serve();
		busy |= reap();
		publish();
		return busy;
	}

	/** Answer misses from the IOMMU, as VM1's QEMU does (not at all when unmapped). */
	bool serve()
	{
		const bool any = !link_.misses.empty();
		while (!link_.misses.empty()) {
			const wire m = link_.misses.front();
			link_.misses.pop_front();
			std::optional<iommu_range> r;
			if (vm().on_miss(m.a))
				r = vm().mmu.lookup(m.a, policy_ == iova_policy::identity);
			if (!r) {
				unanswered++;
				continue;
			}
			link_.call({.type = op::update, .perm = r->perm, .a = r->iova,
				    .b = r->size, .c = r->gpa});
			updates++;
		}
		return any;
	}

	/** Take completions; RX frames (num_buffers of them) to the validator. */
	bool reap()
	{
		bool any = false;
		while (auto c = vm().tx.get_used()) {
			any = true;
			if (c->token & fault_token)
				vm().fault_used_len = std::max(vm().fault_used_len, c->len);
			else
				tx_done++;
			vm().complete_tx(*c);
		}
		while (auto c = vm().rx.get_used()) {
			any = true;
			const auto data = vm().complete_rx(*c);
			if (c->token & fault_token)
				continue;
			if (data.empty() || (!pending_bufs_ && data.size() < net_hdr_size)) {
				rx_empty++; // completed empty: its frame was dropped
				pending_bufs_ = 0;
			} else if (pending_bufs_ == 0) {
				u16 nb;
				std::memcpy(&nb, data.data() + 10, sizeof(nb));
				pending_bufs_ = std::max<u16>(le16toh(nb), 1);
				frame_.assign(data.begin() + net_hdr_size, data.end());
			} else {
				frame_.insert(frame_.end(), data.begin(), data.end());
			}
			if (pending_bufs_ && --pending_bufs_ == 0)
				val.on_frame(frame_, now_ns());
			vm().post_rx(vm1::slot_of(*c)); // repaints the slot: after the copy
		}
		return any;
	}

	iova_policy policy_;
	std::uint64_t size_;
	unique_fd memfd_;
	mmap_area area_;
	guest_mem gm_;
	spawned dev_;
	child_process child_;
	device_link link_;
	std::optional<vm1> vm_;
	size_picker sizes_{frame_min, static_cast<std::uint32_t>(page_size - net_hdr_size), 1};
	unsigned pending_bufs_ = 0;
	std::vector<std::uint8_t> frame_;
};

// ---------------------------------------------------------------- expectations

/** What VM2's driver makes of each fault: the table of selftests/sim/faults.sh. */
struct expectation {
	int vq;			  // virtqueue whose counter moves (txq: vq0_rx_*, rxq: vq0_tx_*); -1 none
	unsigned reason = 0;	  // enum vpci_fault_reason
	unsigned dropped = 0;	  // frames the fault costs
	bool stops_queue = false; // until VM1 resets the ring
	unsigned foreign = 0;	  // times the simulator's own fault frame comes back
	unsigned bad_used = 0;	  // used entries VM1 rejects on its TX ring
};

const std::map<std::string, expectation> expectations = {
	{"unmapped-iova", {txq, VPCI_FAULT_MISS_TIMEOUT}},
	{"readonly-rx", {rxq, VPCI_FAULT_PERM, 1}},
	{"straddle", {txq, VPCI_FAULT_MISS_TIMEOUT}},
	{"wrap", {txq, VPCI_FAULT_DESC}},
	{"zero-len", {txq, VPCI_FAULT_DESC}},
	{"runt", {txq, VPCI_FAULT_DESC}},
	{"past-memory", {txq, VPCI_FAULT_DESC}},
	{"chain-loop", {txq, VPCI_FAULT_CHAIN}},
	{"chain-too-long", {txq, VPCI_FAULT_CHAIN}},
	{"avail-jump", {txq, VPCI_FAULT_RING, 0, true}},
	{"head-out-of-range", {txq, VPCI_FAULT_HEAD}},
	{"unmap-in-flight", {rxq, VPCI_FAULT_MISS_TIMEOUT, 1}},
	{"post-after-unmap", {rxq, VPCI_FAULT_MISS_TIMEOUT, 1}},
	{"ring-unmapped", {txq, VPCI_FAULT_RING, 0, true}},
	// A head posted twice is a valid chain twice: its frame comes back
	// twice and VM1 rejects the second completion.
	{"double-post", {-1, 0, 0, false, 2, 1}},
	// The device hears the invalidation, asks again and is answered.
	{"miss-after-unmap", {-1}},
	// A GSO header the driver refuses, a frame over the MTU without one.
	{"gso-size-zero", {txq, VPCI_FAULT_DESC}},
	{"oversize-no-gso", {txq, VPCI_FAULT_DESC}},
};

class KcoreFaults : public ::testing::TestWithParam<test::fault_param> {};

TEST_P(KcoreFaults, OnlyItsCounterMovesAndTrafficAroundItIsIntact)
{
	const auto &[name, policy] = GetParam();
	const auto it = expectations.find(name);
	ASSERT_TRUE(it != expectations.end())
		<< "no expectation for fault '" << name
		<< "': add it here and in selftests/sim/faults.sh";
	const expectation &e = it->second;

	vm1_process p(policy);
	p.boot();
	ASSERT_EQ(p.broken, 0u);
	// Before: VM1's frames reflected, the device's own over two buffers.
	p.send(kFrames);
	p.xmit(2);
	p.pump();
	ASSERT_EQ(p.val.unique, p.next_seq) << "before the fault";
	ASSERT_EQ(p.tx_done, kFrames);

	const fault_report rep = p.vm().inject(name);
	p.publish();
	// During: the other queue keeps working, and so does the faulty one
	// unless the fault stops it.
	p.xmit(2);
	if (!e.stops_queue)
		p.send(kFrames);
	p.pump();
	if (e.stops_queue) {
		EXPECT_EQ(p.broken, 1u << e.vq) << "the fault stops its queue";
		// Mapped again (through misses), the ring still stays stopped:
		// restarting at its base would replay old entries.
		p.vm().repair(rep);
		p.pump();
		EXPECT_EQ(p.broken, 1u << e.vq) << "until VM1 resets the ring";
		p.check_vm1("before the reset", 0);
		p.reset();
	}
	// After: both ways again.
	p.send(kFrames);
	p.xmit(2);
	p.pump();
	EXPECT_EQ(p.broken, 0u);
	p.check_vm1("at the end", e.stops_queue ? 0 : e.bad_used);

	const std::uint64_t vm1_frames = (e.stops_queue ? 2 : 3) * kFrames;
	EXPECT_EQ(p.tx_done, vm1_frames) << "every frame VM1 sent was completed";
	EXPECT_EQ(p.val.corrupt, 0u);
	EXPECT_EQ(p.val.duplicates, 0u);
	EXPECT_EQ(p.val.lost(p.next_seq), e.dropped) << "of " << p.next_seq << " frames";
	EXPECT_EQ(p.val.out_of_range, e.foreign) << "the simulator's fault frame";
	EXPECT_LE(p.rx_empty, e.dropped);

	// The paths were really taken: rings (and, unless identity maps all,
	// buffers) reached the device through misses, and a miss_timeout is a
	// miss VM1 left unanswered.
	RecordProperty("rounds", std::to_string(p.rounds));
	RecordProperty("updates", std::to_string(p.updates));
	RecordProperty("unanswered", std::to_string(p.unanswered));
	RecordProperty("invalidations", std::to_string(p.invalidations()));
	EXPECT_GT(p.updates, 0u);
	if (e.vq >= 0 && e.reason == VPCI_FAULT_MISS_TIMEOUT) {
		EXPECT_GT(p.unanswered, 0u);
	}
	if (policy == iova_policy::transient) {
		EXPECT_GT(p.invalidations(), 2 * kFrames) << "every buffer unmapped after use";
	}

	int status = -1;
	const device_report r = p.finish(status);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
		<< "device: wait status " << status
		<< (WIFSIGNALED(status) ? fmt::format(" (signal {})", WTERMSIG(status)) : "");
	EXPECT_EQ(r.bad_msgs, 0u) << "IOTLB messages the device refused";
	EXPECT_EQ(r.dropped, e.dropped) << "frames the device dropped";
	EXPECT_EQ(r.delivered, p.val.received);
	for (unsigned vq : {rxq, txq})
		for (unsigned reason = 0; reason < kReasons; reason++)
			EXPECT_EQ(r.faults[vq][reason],
				  static_cast<int>(vq) == e.vq && reason == e.reason ? 1u : 0u)
				<< counter_name(vq, reason);
}

INSTANTIATE_TEST_SUITE_P(Catalogue, KcoreFaults, ::testing::ValuesIn(test::fault_params()),
			 [](const auto &pi) { return test::fault_param_name(pi.param); });

TEST(KcoreFaultsTable, NamesOnlyCatalogueFaults)
{
	for (const auto &[name, e] : expectations)
		EXPECT_TRUE(find_fault(name)) << name << " is not in vpci::sim::faults()";
}

} // namespace
