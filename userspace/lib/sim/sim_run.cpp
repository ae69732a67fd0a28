// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "sim_run.hpp"

#include <poll.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "fd.hpp"
#include "sim_frontend.hpp"
#include "sim_traffic.hpp"

namespace vpci::sim {

namespace {

/** The front-end as the VM's iotlb_port. */
class port : public iotlb_port {
public:
	port(bool push, bool pages) : push_(push), pages_(pages) {}
	void invalidate(const std::vector<iommu_range> &rs) override
	{
		if (fe && fe->iommu_on())
			fe->invalidate(rs);
	}
	void mapped(const iommu_range &r) override
	{
		if (push_)
			push(r);
	}
	/** Push @p r, page by page with push_pages. */
	void push(const iommu_range &r)
	{
		if (!fe || !fe->iommu_on())
			return;
		if (!pages_) {
			fe->push_update(r);
			return;
		}
		for (std::uint64_t o = 0; o < r.size; o += page_size)
			fe->push_update({r.iova + o, std::min(page_size, r.size - o), r.gpa + o, r.perm});
	}
	vu_frontend *fe = nullptr;

private:
	bool push_, pages_;
};

unique_fd open_memory(const run_config &c, std::uint64_t &size)
{
	if (c.mem_file.empty()) {
		unique_fd fd(::memfd_create("vpci-sim", MFD_CLOEXEC));
		if (!fd)
			throw_errno("memfd_create(vpci-sim)");
		if (::ftruncate(fd.get(), static_cast<off_t>(c.ram_size)) < 0)
			throw_errno("ftruncate(memfd)");
		size = c.ram_size;
		return fd;
	}
	unique_fd fd(::open(c.mem_file.c_str(), O_RDWR | O_CLOEXEC));
	if (!fd)
		throw_errno(fmt::format("open({})", c.mem_file));
	const off_t end = ::lseek(fd.get(), 0, SEEK_END);
	if (end < 0)
		throw_errno(fmt::format("lseek({})", c.mem_file));
	if (static_cast<std::uint64_t>(end) < c.ram_size)
		throw std::runtime_error(fmt::format("memory file {} has {} bytes, RAM size is {}",
						     c.mem_file, end, c.ram_size));
	size = c.ram_size;
	return fd;
}

std::atomic<const char *> g_phase{"not started"};
std::atomic<std::uint64_t> g_sent{0}, g_completed{0}, g_received{0};

void set_phase(const char *p)
{
	g_phase.store(p, std::memory_order_relaxed);
}

const char *dir_name(direction d)
{
	return d == direction::tx ? "tx" : d == direction::rx ? "rx" : "both";
}

} // namespace

run_progress current_progress() noexcept
{
	return {g_phase.load(std::memory_order_relaxed), g_sent.load(std::memory_order_relaxed),
		g_completed.load(std::memory_order_relaxed),
		g_received.load(std::memory_order_relaxed)};
}

namespace {

using clock = std::chrono::steady_clock;

/** One queue pair of a run: its rings, its flow, its fault. */
struct pair_run {
	pair_run(unsigned i, std::uint64_t expected, const run_config &c)
		: index(i), val(expected, i), sizes(c.size_min, c.size_max, c.seed + i)
	{
	}
	unsigned index;
	std::unique_ptr<vm1> vm;
	unique_fd kick[2], call[2];
	rx_validator val;
	size_picker sizes;
	std::uint64_t sent = 0, tx_done = 0, tx_bytes = 0, merged = 0;
	/** --gso: TSO frames of this flow sent, and back whole with their GSO header. */
	std::uint64_t gso_sent = 0, gso_back = 0;
	/** Frames completed on this pair's RX ring, whichever flow. */
	std::uint64_t rx_frames = 0;
	/** Frames of this pair's flow back, on whichever RX ring (the window). */
	std::uint64_t back = 0;
	/** This flow's frames that came back on another pair's RX ring. */
	std::uint64_t on_other_rings = 0;
	/** Frames of other pairs' flows on this pair's RX ring. */
	std::uint64_t from_other_pairs = 0;
	std::vector<std::uint8_t> pkt;
	/** --gso without GUEST_TSO4: the segments of the frame in progress. */
	tcp_reassembler reasm;
	std::uint8_t rx_hdr[net_hdr_size] = {};
	int pending_bufs = 0;
	std::uint64_t fault_sent_at = 0, fault_rx_at = 0;
	std::optional<fault_report> fault;
	clock::time_point repair_at{};
};

} // namespace

nlohmann::json run(const run_config &c)
{
	if (!c.iommu && c.vm.policy != iova_policy::identity)
		throw std::invalid_argument("without an IOMMU only the identity policy exists");
	const unsigned npairs = c.queue_pairs;
	if (npairs < 1 || npairs > max_queue_pairs)
		throw std::invalid_argument(fmt::format("{} queue pairs: 1..{}", npairs,
							max_queue_pairs));
	if (!c.fault.empty() && c.fault_pair >= npairs)
		throw std::invalid_argument(fmt::format("fault on queue pair {}: there are {}",
							c.fault_pair, npairs));
	if (npairs > 1 && c.ram_size < min_ram_size(c.vm.ring_size, npairs))
		throw std::invalid_argument(fmt::format(
			"guest RAM of {:#x} bytes is smaller than the {:#x} that {} queue pairs of "
			"ring size {} need",
			c.ram_size, min_ram_size(c.vm.ring_size, npairs), npairs, c.vm.ring_size));
	std::uint64_t ram = 0;
	unique_fd memfd = open_memory(c, ram);
	mmap_area area = mmap_area::map_shared(memfd.get(), ram, 0, true);
	guest_mem gm{static_cast<std::uint8_t *>(area.data()), ram};

	port p(c.push, c.push_pages);
	vm1_config vc = c.vm;
	iommu dummy(0);
	set_phase("connect");
	vu_frontend fe(vu_frontend::connect(c.socket, c.connect_wait_ms), dummy, c.reply_timeout_ms);
	set_phase("negotiate");
	// (the real IOMMU lives in the vm1 below; rebind by constructing after)
	// HOST_TSO4/6: the device must then take GSO headers, and check them
	// (the gso-* faults); the simulator's own frames carry none unless
	// --gso, which needs TSO both ways (GUEST_TSO4: frames come back whole).
	std::uint64_t want = bit(vf::version_1) | bit(vf::event_idx) | bit(vf::mrg_rxbuf) |
			     bit(vf::csum) | bit(vf::guest_csum) | bit(vf::mac) | bit(vf::status) |
			     bit(vf::host_tso4) | bit(vf::host_tso6);
	if (c.iommu)
		want |= bit(vf::access_platform);
	if (!c.vm.event_idx)
		want &= ~bit(vf::event_idx);
	if (!c.vm.mrg_rxbuf)
		want &= ~bit(vf::mrg_rxbuf);
	if (!c.vm.guest_csum)
		want &= ~bit(vf::guest_csum);
	const std::uint64_t gso_need = bit(vf::csum) | bit(vf::host_tso4) | bit(vf::guest_csum) |
				       (c.vm.guest_tso ? bit(vf::guest_tso4) : 0) |
				       bit(vf::mrg_rxbuf);
	if (c.vm.gso)
		want |= gso_need;
	const bool segmented = c.vm.gso && !c.vm.guest_tso;
	const std::uint64_t acked = fe.negotiate(
		want,
		bit(vf::version_1) | (c.vm.tx_csum ? bit(vf::csum) : 0) | (c.vm.gso ? gso_need : 0),
		npairs);
	vc.event_idx = acked & bit(vf::event_idx);
	vc.mrg_rxbuf = acked & bit(vf::mrg_rxbuf);
	vc.pairs = npairs;

	// One IOMMU for VM1, one vm1 (rings, buffers, faults) per pair.
	iommu mmu(ram);
	const bool sending = c.dir != direction::rx;
	const bool receiving = c.dir != direction::tx;
	std::vector<pair_run> pairs;
	pairs.reserve(npairs);
	for (unsigned i = 0; i < npairs; i++) {
		pairs.emplace_back(i, sending ? c.count : 0, c);
		vm1_config pc = vc;
		pc.pair = i;
		pairs.back().vm = std::make_unique<vm1>(gm, pc, p, mmu);
	}
	for (auto &pr : pairs)
		pr.vm->paint_canaries();
	fe.bind_iommu(mmu);
	fe.set_miss_hook([&pairs](std::uint64_t iova) {
		for (auto &pr : pairs)
			if (!pr.vm->on_miss(iova))
				return false;
		return true;
	});
	fe.set_miss_ranges(vc.policy == iova_policy::identity);
	p.fe = &fe;
	set_phase("memory table, static mappings, rings");
	fe.set_mem_table(memory_desc{memfd.get(), ram, reinterpret_cast<std::uint64_t>(area.data())});
	for (auto &pr : pairs)
		pr.vm->map_static();

	auto ring = [](const pair_run &pr, unsigned q) { return 2 * pr.index + q; };
	for (auto &pr : pairs)
		for (unsigned q : {rxq, txq}) {
			pr.kick[q] = make_eventfd();
			pr.call[q] = make_eventfd();
			const vring_layout &l = pr.vm->layout(q);
			auto addr = [&](std::uint64_t iova, std::uint64_t gpa) {
				return c.iommu ? iova
					       : reinterpret_cast<std::uint64_t>(area.data()) + gpa;
			};
			fe.setup_vring(ring(pr, q), l.num, addr(l.desc_iova, l.desc_gpa),
				       addr(l.avail_iova, l.avail_gpa), addr(l.used_iova, l.used_gpa),
				       pr.kick[q].get(), pr.call[q].get());
		}
	if (c.dir != direction::tx)
		for (auto &pr : pairs)
			pr.vm->fill_rx();
	for (auto &pr : pairs)
		for (unsigned q : {rxq, txq})
			fe.enable_vring(ring(pr, q), true);
	// DPDK keeps its IOTLB per virtqueue: what is pushed before the rings
	// exist is lost, so push the static mappings now.
	if (c.push && c.iommu)
		for (const auto &r : mmu.ranges())
			p.push(r);
	for (auto &pr : pairs)
		if (pr.vm->rx.kick_prepare())
			eventfd_signal(pr.kick[rxq].get());

	pair_run &fp = pairs[c.fault.empty() ? 0 : c.fault_pair];
	auto any_fault = [&] {
		return std::any_of(pairs.begin(), pairs.end(),
				   [](const pair_run &pr) { return pr.fault.has_value(); });
	};
	// --tx-csum: frames back with the checksum partial, completed, bad.
	std::array<std::uint64_t, 3> csum{};
	static_assert(static_cast<unsigned>(csum_seen::partial) == 0 &&
		      static_cast<unsigned>(csum_seen::complete) == 1 &&
		      static_cast<unsigned>(csum_seen::bad) == 2);
	const auto t0 = clock::now();
	auto last_activity = t0, last_any = t0, last_print = t0;
	// The longest pause between two frames moving (the final drain
	// excluded): how close a run came to ending by its drain_ms.
	clock::duration longest_idle{};
	const double ns_per_frame = c.rate_pps > 0 ? 1e9 / c.rate_pps : 0;
	std::uint64_t wakeups = 0;
	auto total = [&pairs](auto field) {
		std::uint64_t n = 0;
		for (const auto &pr : pairs)
			n += field(pr);
		return n;
	};

	if (!vc.event_idx && !c.interrupt) {
		for (auto &pr : pairs) {
			pr.vm->rx.disable_cb();
			pr.vm->tx.disable_cb();
		}
	}
	set_phase("traffic");
	for (;;) {
		g_sent.store(total([](const pair_run &pr) { return pr.sent; }),
			     std::memory_order_relaxed);
		g_completed.store(total([](const pair_run &pr) { return pr.tx_done; }),
				  std::memory_order_relaxed);
		g_received.store(total([](const pair_run &pr) { return pr.val.unique; }),
				 std::memory_order_relaxed);
		// IOTLB traffic keeps the loop awake but is not progress of the
		// frames: a device that only asks for translations is stalled.
		const bool iotlb_busy = fe.service() > 0;
		bool progress = false;
		const auto now = clock::now();
		const double elapsed = std::chrono::duration<double>(now - t0).count();
		const bool time_up = c.duration_s > 0 && elapsed >= c.duration_s;
		const std::uint64_t window = c.window ? c.window : vc.ring_size - 1u;
		const bool stuck = now - last_any > std::chrono::milliseconds(100);
		for (auto &pr : pairs) {
			vm1 &vm = *pr.vm;
			// TX completions.
			while (auto comp = vm.tx.get_used()) {
				if (comp->token & fault_token)
					vm.fault_used_len = std::max(vm.fault_used_len, comp->len);
				vm.complete_tx(*comp);
				if (!(comp->token & fault_token))
					pr.tx_done++;
				progress = true;
			}
			// RX completions (num_buffers > 1: the frame continues in the next ones).
			bool reposted = false;
			while (auto comp = vm.rx.get_used()) {
				progress = true;
				auto data = vm.complete_rx(*comp);
				if (comp->token & fault_token)
					continue;
				if (pr.pending_bufs == 0) {
					pr.pkt.clear();
					std::uint16_t nb = 1;
					if (data.size() >= net_hdr_size)
						std::memcpy(&nb, data.data() + 10, 2);
					pr.pending_bufs = vc.mrg_rxbuf && nb ? nb : 1;
					if (pr.pending_bufs > 1)
						pr.merged++;
					// A buffer shorter than the header: no header
					// (not the previous frame's).
					std::memset(pr.rx_hdr, 0, net_hdr_size);
					if (data.size() >= net_hdr_size) {
						std::memcpy(pr.rx_hdr, data.data(), net_hdr_size);
						pr.pkt.insert(pr.pkt.end(), data.begin() + net_hdr_size,
							      data.end());
					}
				} else {
					pr.pkt.insert(pr.pkt.end(), data.begin(), data.end());
				}
				vm.post_rx(vm1::slot_of(*comp));
				reposted = true;
				if (--pr.pending_bufs == 0) {
					pr.rx_frames++;
					std::span<const std::uint8_t> whole = pr.pkt;
					bool tso_whole = false;
					if (segmented) {
						// A segment: on once its frame is whole.
						if (pr.reasm.add(pr.rx_hdr, pr.pkt) !=
						    tcp_reassembler::result::frame)
							continue;
						whole = pr.reasm.frame();
					} else if (vc.gso) {
						const tcp_seen ts = take_tcp(pr.rx_hdr, pr.pkt);
						csum[static_cast<unsigned>(ts.csum)]++;
						tso_whole = ts.gso;
					} else if (vc.tx_csum) {
						csum[static_cast<unsigned>(take_csum(pr.rx_hdr, pr.pkt))]++;
					}
					// Each pair's flow is validated as one, on
					// whichever RX ring its frames come back.
					pair_run *owner = &pr;
					if (npairs > 1) {
						const int t = frame_pair(whole);
						if (t >= 0 && static_cast<unsigned>(t) < npairs)
							owner = &pairs[static_cast<unsigned>(t)];
					}
					if (owner != &pr) {
						owner->on_other_rings++;
						pr.from_other_pairs++;
					}
					owner->back++;
					owner->gso_back += tso_whole;
					owner->val.on_frame(whole, now_ns());
				}
			}
			if (reposted && vm.rx.kick_prepare())
				eventfd_signal(pr.kick[rxq].get());
			// Fault injection half way (or right away when receive-only),
			// on its pair.  Sending pauses until the fault's ring has
			// room for it.  Checked again while sending, so that as many
			// frames follow the fault as the run asked for (an RX
			// fault's buffer sits behind a ring's worth of posted ones).
			auto fault_is_due = [&] {
				return !c.fault.empty() && &pr == &fp && !pr.fault &&
				       (pr.sent >= c.count / 2 || !sending);
			};
			const fault_info *fdue = fault_is_due() ? find_fault(c.fault) : nullptr;
			if (fdue &&
			    (fdue->queue == rxq ? vm.rx.free_count() >= 1 : vm.tx.free_count() >= 2)) {
				pr.fault = vm.inject(c.fault);
				pr.fault_sent_at = pr.sent;
				pr.fault_rx_at = pr.val.unique;
				if (pr.fault->name == "ring-unmapped")
					pr.repair_at = now + std::chrono::milliseconds(300);
				vring_driver &fq = pr.fault->queue == rxq ? vm.rx : vm.tx;
				if (fq.kick_prepare() || true)
					eventfd_signal(pr.kick[pr.fault->queue].get());
			}
			if (pr.fault && pr.repair_at != clock::time_point{} && now >= pr.repair_at) {
				vm.repair(*pr.fault);
				pr.repair_at = {};
			}
			// Send.
			bool added = false;
			while (sending && pr.sent < c.count && !time_up && !fault_is_due()) {
				if (receiving && !stuck && pr.sent - pr.back >= window)
					break;
				if (ns_per_frame > 0 &&
				    static_cast<double>(pr.sent) * ns_per_frame > elapsed * 1e9)
					break;
				const std::uint32_t sz = pr.sizes.next();
				if (!vm.send(pair_seq(pr.index, pr.sent), sz, now_ns()))
					break;
				pr.tx_bytes += sz;
				pr.gso_sent += vc.gso && sz > gso_frame_max;
				pr.sent++;
				added = progress = true;
			}
			if (added && vm.tx.kick_prepare())
				eventfd_signal(pr.kick[txq].get());
		}
		if (progress) {
			longest_idle = std::max(longest_idle, now - last_activity);
			last_activity = now;
		}
		progress |= iotlb_busy;
		if (progress)
			last_any = now;
		const std::uint64_t sent = total([](const pair_run &pr) { return pr.sent; });
		const std::uint64_t unique = total([](const pair_run &pr) { return pr.val.unique; });
		// Progress line.
		if (c.progress && now - last_print >= std::chrono::seconds(1)) {
			last_print = now;
			c.progress(fmt::format("{:.1f}s sent {} completed {} received {} lost-so-far {} "
					       "misses {}",
					       elapsed, sent,
					       total([](const pair_run &pr) { return pr.tx_done; }),
					       unique, sending ? sent - unique : 0, fe.stats().misses));
		}
		// Termination.
		bool all_sent = !sending || time_up, all_back = true, tx_clean = true;
		if (!all_sent)
			all_sent = std::all_of(pairs.begin(), pairs.end(),
					       [&](const pair_run &pr) { return pr.sent >= c.count; });
		for (const auto &pr : pairs) {
			all_back = all_back && (!receiving || !sending || pr.val.unique >= pr.sent);
			tx_clean = tx_clean && (!sending || pr.tx_done >= pr.sent);
		}
		if (all_sent && all_back && tx_clean && sending && !any_fault())
			break;
		// No frame moved for drain_ms: done (all sent) or stalled (a
		// device that stopped, or asks for translations without end;
		// the window or the TX ring is full).
		if (now - last_activity > std::chrono::milliseconds(c.drain_ms))
			break;
		if (!sending && c.duration_s > 0 && time_up)
			break;
		// Wait.
		if (!progress) {
			if (c.interrupt) {
				bool idle = true;
				for (auto &pr : pairs)
					idle = idle && pr.vm->rx.enable_cb() && pr.vm->tx.enable_cb();
				if (idle) {
					std::vector<pollfd> pfd;
					for (auto &pr : pairs)
						for (unsigned q : {rxq, txq})
							pfd.push_back({pr.call[q].get(), POLLIN, 0});
					if (fe.channel_fd() >= 0)
						pfd.push_back({fe.channel_fd(), POLLIN, 0});
					int wait = 10;
					if (ns_per_frame > 0)
						wait = 1;
					if (::poll(pfd.data(), pfd.size(), wait) > 0)
						wakeups++;
					// Only the calls that came (the fds are VM2's
					// QEMU's too, which made them blocking).
					for (std::size_t i = 0; i < 2 * pairs.size(); i++)
						if (pfd[i].revents & POLLIN)
							eventfd_consume(pfd[i].fd);
				}
				for (auto &pr : pairs) {
					pr.vm->rx.disable_cb();
					pr.vm->tx.disable_cb();
				}
			} else if (ns_per_frame > 0 || all_sent || receiving) {
				std::this_thread::sleep_for(std::chrono::microseconds(20));
			}
		}
	}
	set_phase("summary and teardown");
	const double secs = std::chrono::duration<double>(clock::now() - t0).count();
	auto pps = [secs](std::uint64_t n) { return secs > 0 ? static_cast<double>(n) / secs : 0; };
	// With a fault injected, what the device does on its pair is the
	// observation; only a corrupted frame fails there.  Every other pair
	// must be as clean as a run without a fault.
	std::vector<std::uint64_t> damaged;
	std::uint64_t canary_pages = 0, rx_tail_damaged = 0, maps = 0, unmaps = 0;
	for (const auto &pr : pairs) {
		canary_pages += pr.vm->check_canaries(damaged);
		rx_tail_damaged += pr.vm->rx_tail_damaged;
		maps += pr.vm->maps;
		unmaps += pr.vm->unmaps;
	}
	const bool canaries_ok = damaged.empty() && rx_tail_damaged == 0;
	std::uint64_t segments = 0;
	for (const auto &pr : pairs) {
		segments += pr.reasm.segments;
		csum[0] += pr.reasm.partial;
		csum[1] += pr.reasm.complete;
		csum[2] += pr.reasm.bad;
	}
	nlohmann::json damaged_json = nlohmann::json::array();
	for (std::size_t i = 0; i < damaged.size() && i < 16; i++)
		damaged_json.push_back(fmt::format("{:#x}", damaged[i]));
	bool ok = canaries_ok && csum[2] == 0;
	nlohmann::json pairs_json = nlohmann::json::array();
	std::uint64_t lost_all = 0;
	rx_validator lat_all(0);
	for (auto &pr : pairs) {
		const vm1 &vm = *pr.vm;
		const std::uint64_t lost = sending && receiving ? pr.val.lost(pr.sent) : 0;
		lost_all += lost;
		bool pok = pr.val.corrupt == 0;
		if (!pr.fault)
			pok = pok && pr.val.duplicates == 0 && pr.val.out_of_range == 0 &&
			      vm.rx.counters().bad_used == 0 && vm.tx.counters().bad_used == 0 &&
			      lost == 0 && pr.val.reordered == 0 && pr.tx_done == pr.sent &&
			      (!vc.gso || !receiving || !sending ||
			       pr.gso_back == (segmented ? 0 : pr.gso_sent)) &&
			      (!sending || pr.sent == c.count || c.duration_s > 0);
		ok = ok && pok;
		nlohmann::json fault_json = nullptr;
		if (&pr == &fp && !c.fault.empty() && !pr.fault) {
			ok = false;
			fault_json = {{"name", c.fault}, {"pair", pr.index}, {"outcome", "not-injected"},
				      {"sent_after", 0}, {"received_after", 0}, {"duplicates", 0},
				      {"bad_used", 0}};
		}
		if (pr.fault) {
			fault_json = pr.fault->to_json();
			const std::uint64_t after_sent = pr.sent - pr.fault_sent_at;
			const std::uint64_t after_rx = pr.val.unique - pr.fault_rx_at;
			fault_json["pair"] = pr.index;
			fault_json["sent_after"] = after_sent;
			fault_json["received_after"] = after_rx;
			fault_json["bad_used"] = vm.tx.counters().bad_used + vm.rx.counters().bad_used;
			fault_json["duplicates"] = pr.val.duplicates;
			fault_json["foreign"] = pr.val.out_of_range;
			fault_json["misses_left_unanswered"] = vm.misses_left_unanswered;
			fault_json["outcome"] = !receiving || !sending
							? (pr.tx_done == pr.sent ? "completed" : "stalled")
						: after_rx == 0 || pr.sent < c.count ? "stalled"
						: lost == 0			     ? "recovered"
										     : "dropped";
		}
		lat_all.lat_ns.insert(lat_all.lat_ns.end(), pr.val.lat_ns.begin(),
				      pr.val.lat_ns.end());
		pairs_json.push_back({
			{"pair", pr.index},
			{"ok", pok},
			{"rings", {ring(pr, rxq), ring(pr, txq)}},
			{"tx", {{"sent", pr.sent}, {"completed", pr.tx_done}, {"bytes", pr.tx_bytes},
				{"pps", pps(pr.sent)}, {"kicks", vm.tx.counters().kicks},
				{"kicks_suppressed", vm.tx.counters().kicks_suppressed},
				{"bad_used", vm.tx.counters().bad_used}, {"gso", pr.gso_sent}}},
			{"rx", {{"frames", pr.rx_frames}, {"gso", pr.gso_back}, {"unique", pr.val.unique}, {"lost", lost},
				{"duplicates", pr.val.duplicates}, {"reordered", pr.val.reordered},
				{"corrupt", pr.val.corrupt}, {"out_of_range", pr.val.out_of_range},
				{"on_other_rings", pr.on_other_rings},
				{"from_other_pairs", pr.from_other_pairs}, {"merged", pr.merged},
				{"bytes", pr.val.bytes}, {"pps", pps(pr.val.unique)},
				{"bad_used", vm.rx.counters().bad_used},
				{"latency", pr.val.latency_json()}}},
			{"fault", fault_json},
		});
	}
	auto sum = [&pairs_json](const char *dir, const char *key) {
		std::uint64_t n = 0;
		for (const auto &pj : pairs_json)
			n += pj[dir][key].get<std::uint64_t>();
		return n;
	};
	const std::uint64_t sent = sum("tx", "sent"), unique = sum("rx", "unique");
	nlohmann::json j = {
		{"ok", ok},
		{"socket", c.socket},
		{"policy", policy_name(vc.policy)},
		{"iommu", c.iommu},
		{"push", c.push},
		{"push_pages", c.push_pages},
		{"extra_mappings", vc.extra_pages},
		{"direction", dir_name(c.dir)},
		{"mode", c.interrupt ? "interrupt" : "poll"},
		{"ring_size", vc.ring_size},
		{"event_idx", vc.event_idx},
		{"mrg_rxbuf", vc.mrg_rxbuf},
		{"gso", vc.gso},
		{"guest_tso", vc.gso && !segmented},
		{"queue_pairs", npairs},
		{"seconds", secs},
		{"tx", {{"sent", sent}, {"completed", sum("tx", "completed")},
			{"bytes", sum("tx", "bytes")}, {"pps", pps(sent)},
			{"kicks", sum("tx", "kicks")}, {"kicks_suppressed", sum("tx", "kicks_suppressed")},
			{"bad_used", sum("tx", "bad_used")}, {"gso", sum("tx", "gso")}}},
		{"rx", {{"frames", sum("rx", "frames")}, {"gso", sum("rx", "gso")}, {"unique", unique}, {"lost", lost_all},
			{"duplicates", sum("rx", "duplicates")}, {"reordered", sum("rx", "reordered")},
			{"corrupt", sum("rx", "corrupt")}, {"out_of_range", sum("rx", "out_of_range")},
			{"merged", sum("rx", "merged")}, {"bytes", sum("rx", "bytes")},
			{"pps", pps(unique)},
			{"bad_used", sum("rx", "bad_used")},
			{"segments", segments},
			{"latency", lat_all.latency_json()},
			{"csum", vc.tx_csum || vc.gso ? nlohmann::json{{"partial", csum[0]},
							     {"complete", csum[1]},
							     {"bad", csum[2]}}
					    : nlohmann::json()}}},
		{"iommu_ops", {{"maps", maps}, {"unmaps", unmaps}, {"pages", mmu.pages()}}},
		{"wakeups", wakeups},
		{"longest_idle_ms",
		 std::chrono::duration_cast<std::chrono::milliseconds>(longest_idle).count()},
		{"canaries", {{"ok", canaries_ok}, {"pages_checked", canary_pages},
			      {"damaged_pages", damaged.size()}, {"damaged", damaged_json},
			      {"rx_tail_damaged", rx_tail_damaged}}},
		{"frontend", fe.to_json()},
		{"fault", c.fault.empty() ? nlohmann::json() : pairs_json[fp.index]["fault"]},
		{"pairs", pairs_json},
	};
	return j;
}

std::string summary_text(const nlohmann::json &j)
{
	std::string s = fmt::format(
		"vpci-sim: {} policy={} mode={} dir={} in {:.2f}s\n"
		"  tx: sent {} completed {} ({:.0f} pps)\n"
		"  rx: received {} lost {} dup {} reordered {} corrupt {} ({:.0f} pps)\n"
		"  iotlb: misses {} unanswered {} updates {} invalidations {}\n",
		j["ok"].get<bool>() ? "OK" : "FAILED", j["policy"].get<std::string>(),
		j["mode"].get<std::string>(), j["direction"].get<std::string>(),
		j["seconds"].get<double>(), j["tx"]["sent"].get<std::uint64_t>(),
		j["tx"]["completed"].get<std::uint64_t>(), j["tx"]["pps"].get<double>(),
		j["rx"]["unique"].get<std::uint64_t>(), j["rx"]["lost"].get<std::uint64_t>(),
		j["rx"]["duplicates"].get<std::uint64_t>(), j["rx"]["reordered"].get<std::uint64_t>(),
		j["rx"]["corrupt"].get<std::uint64_t>(), j["rx"]["pps"].get<double>(),
		j["frontend"]["iotlb"]["misses"].get<std::uint64_t>(),
		j["frontend"]["iotlb"]["misses_unanswered"].get<std::uint64_t>(),
		j["frontend"]["iotlb"]["updates"].get<std::uint64_t>(),
		j["frontend"]["iotlb"]["invalidations"].get<std::uint64_t>());
	if (!j["rx"]["latency"].is_null())
		s += fmt::format("  latency: p50 {:.1f} us p99 {:.1f} us max {:.1f} us\n",
				 j["rx"]["latency"]["p50_us"].get<double>(),
				 j["rx"]["latency"]["p99_us"].get<double>(),
				 j["rx"]["latency"]["max_us"].get<double>());
	s += fmt::format("  canaries: {} ({} pages checked, {} damaged, {} RX tails written)\n",
			 j["canaries"]["ok"].get<bool>() ? "intact" : "DAMAGED",
			 j["canaries"]["pages_checked"].get<std::uint64_t>(),
			 j["canaries"]["damaged_pages"].get<std::uint64_t>(),
			 j["canaries"]["rx_tail_damaged"].get<std::uint64_t>());
	if (!j["fault"].is_null())
		s += fmt::format("  fault {}: {} (sent after {}, received after {})\n",
				 j["fault"]["name"].get<std::string>(),
				 j["fault"]["outcome"].get<std::string>(),
				 j["fault"]["sent_after"].get<std::uint64_t>(),
				 j["fault"]["received_after"].get<std::uint64_t>());
	if (j.value("queue_pairs", 1u) > 1)
		for (const auto &pj : j["pairs"])
			s += fmt::format("  pair {}: {} sent {} completed {}, received {} lost {} dup {} "
					 "reordered {} corrupt {} (on other rings {}){}\n",
					 pj["pair"].get<unsigned>(), pj["ok"].get<bool>() ? "ok" : "FAILED",
					 pj["tx"]["sent"].get<std::uint64_t>(),
					 pj["tx"]["completed"].get<std::uint64_t>(),
					 pj["rx"]["unique"].get<std::uint64_t>(),
					 pj["rx"]["lost"].get<std::uint64_t>(),
					 pj["rx"]["duplicates"].get<std::uint64_t>(),
					 pj["rx"]["reordered"].get<std::uint64_t>(),
					 pj["rx"]["corrupt"].get<std::uint64_t>(),
					 pj["rx"]["on_other_rings"].get<std::uint64_t>(),
					 pj["fault"].is_null() ? "" : ", fault here");
	return s;
}

} // namespace vpci::sim
