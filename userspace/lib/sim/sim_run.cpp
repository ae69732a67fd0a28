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
#include <thread>

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

nlohmann::json run(const run_config &c)
{
	using clock = std::chrono::steady_clock;
	if (!c.iommu && c.vm.policy != iova_policy::identity)
		throw std::invalid_argument("without an IOMMU only the identity policy exists");
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
	// (the gso-* faults); the simulator's own frames carry none.
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
	const std::uint64_t acked =
		fe.negotiate(want, bit(vf::version_1) | (c.vm.tx_csum ? bit(vf::csum) : 0));
	vc.event_idx = acked & bit(vf::event_idx);
	vc.mrg_rxbuf = acked & bit(vf::mrg_rxbuf);

	vm1 vm(gm, vc, p);
	vm.paint_canaries();
	fe.bind_iommu(vm.mmu);
	fe.set_miss_hook([&vm](std::uint64_t iova) { return vm.on_miss(iova); });
	fe.set_miss_ranges(vc.policy == iova_policy::identity);
	p.fe = &fe;
	set_phase("memory table, static mappings, rings");
	fe.set_mem_table(memory_desc{memfd.get(), ram, reinterpret_cast<std::uint64_t>(area.data())});
	vm.map_static();

	unique_fd kick[2] = {make_eventfd(), make_eventfd()};
	unique_fd call[2] = {make_eventfd(), make_eventfd()};
	for (unsigned q : {rxq, txq}) {
		const vring_layout &l = vm.layout(q);
		auto addr = [&](std::uint64_t iova, std::uint64_t gpa) {
			return c.iommu ? iova : reinterpret_cast<std::uint64_t>(area.data()) + gpa;
		};
		fe.setup_vring(q, l.num, addr(l.desc_iova, l.desc_gpa), addr(l.avail_iova, l.avail_gpa),
			       addr(l.used_iova, l.used_gpa), kick[q].get(), call[q].get());
	}
	if (c.dir != direction::tx)
		vm.fill_rx();
	for (unsigned q : {rxq, txq})
		fe.enable_vring(q, true);
	// DPDK keeps its IOTLB per virtqueue: what is pushed before the rings
	// exist is lost, so push the static mappings now.
	if (c.push && c.iommu)
		for (const auto &r : vm.mmu.ranges())
			p.push(r);
	if (vm.rx.kick_prepare())
		eventfd_signal(kick[rxq].get());

	const bool sending = c.dir != direction::rx;
	const bool receiving = c.dir != direction::tx;
	rx_validator val(sending ? c.count : 0);
	size_picker sizes(c.size_min, c.size_max, c.seed);
	std::uint64_t sent = 0, tx_done = 0, tx_bytes = 0, rx_frames_total = 0, merged = 0;
	std::uint64_t fault_sent_at = 0, fault_rx_at = 0;
	nlohmann::json fault_json = nullptr;
	std::optional<fault_report> fault;
	clock::time_point repair_at{};
	const auto t0 = clock::now();
	auto last_progress = t0, last_activity = t0, last_any = t0, last_print = t0;
	// The longest pause between two frames moving (the final drain
	// excluded): how close a run came to ending by its drain_ms.
	clock::duration longest_idle{};
	const double ns_per_frame = c.rate_pps > 0 ? 1e9 / c.rate_pps : 0;
	std::uint64_t wakeups = 0;
	std::vector<std::uint8_t> pkt;
	std::uint8_t rx_hdr[net_hdr_size] = {};
	// --tx-csum: frames back with the checksum partial, completed, bad.
	std::array<std::uint64_t, 3> csum{};
	static_assert(static_cast<unsigned>(csum_seen::partial) == 0 &&
		      static_cast<unsigned>(csum_seen::complete) == 1 &&
		      static_cast<unsigned>(csum_seen::bad) == 2);
	int pending_bufs = 0;

	if (!vc.event_idx && !c.interrupt) {
		vm.rx.disable_cb();
		vm.tx.disable_cb();
	}
	set_phase("traffic");
	for (;;) {
		g_sent.store(sent, std::memory_order_relaxed);
		g_completed.store(tx_done, std::memory_order_relaxed);
		g_received.store(val.unique, std::memory_order_relaxed);
		// IOTLB traffic keeps the loop awake but is not progress of the
		// frames: a device that only asks for translations is stalled.
		const bool iotlb_busy = fe.service() > 0;
		bool progress = false;
		const auto now = clock::now();
		const double elapsed = std::chrono::duration<double>(now - t0).count();
		// TX completions.
		while (auto comp = vm.tx.get_used()) {
			if (comp->token & fault_token)
				vm.fault_used_len = std::max(vm.fault_used_len, comp->len);
			vm.complete_tx(*comp);
			if (!(comp->token & fault_token))
				tx_done++;
			progress = true;
		}
		// RX completions (num_buffers > 1: the frame continues in the next ones).
		bool reposted = false;
		while (auto comp = vm.rx.get_used()) {
			progress = true;
			auto data = vm.complete_rx(*comp);
			if (!(comp->token & fault_token)) {
				if (pending_bufs == 0) {
					pkt.clear();
					std::uint16_t nb = 1;
					if (data.size() >= net_hdr_size)
						std::memcpy(&nb, data.data() + 10, 2);
					pending_bufs = vc.mrg_rxbuf && nb ? nb : 1;
					if (pending_bufs > 1)
						merged++;
					// A buffer shorter than the header: no header
					// (not the previous frame's).
					std::memset(rx_hdr, 0, net_hdr_size);
					if (data.size() >= net_hdr_size) {
						std::memcpy(rx_hdr, data.data(), net_hdr_size);
						pkt.insert(pkt.end(), data.begin() + net_hdr_size, data.end());
					}
				} else {
					pkt.insert(pkt.end(), data.begin(), data.end());
				}
				vm.post_rx(vm1::slot_of(*comp));
				reposted = true;
				if (--pending_bufs == 0) {
					rx_frames_total++;
					if (vc.tx_csum)
						csum[static_cast<unsigned>(take_csum(rx_hdr, pkt))]++;
					val.on_frame(pkt, now_ns());
				}
			}
		}
		if (reposted && vm.rx.kick_prepare())
			eventfd_signal(kick[rxq].get());
		// Fault injection half way (or right away when receive-only).
		// Sending pauses until the fault's ring has room for it.  Checked
		// again while sending, so that as many frames follow the fault
		// as the run asked for (an RX fault's buffer sits behind a
		// ring's worth of posted ones).
		auto fault_is_due = [&] {
			return !c.fault.empty() && !fault && (sent >= c.count / 2 || !sending);
		};
		const fault_info *fdue = fault_is_due() ? find_fault(c.fault) : nullptr;
		if (fdue && (fdue->queue == rxq ? vm.rx.free_count() >= 1 : vm.tx.free_count() >= 2)) {
			fault = vm.inject(c.fault);
			fault_sent_at = sent;
			fault_rx_at = val.unique;
			if (fault->name == "ring-unmapped")
				repair_at = now + std::chrono::milliseconds(300);
			vring_driver &q = fault->queue == rxq ? vm.rx : vm.tx;
			if (q.kick_prepare() || true)
				eventfd_signal(kick[fault->queue].get());
		}
		if (fault && repair_at != clock::time_point{} && now >= repair_at) {
			vm.repair(*fault);
			repair_at = {};
		}
		// Send.
		const bool time_up = c.duration_s > 0 && elapsed >= c.duration_s;
		bool added = false;
		const std::uint64_t window = c.window ? c.window : vc.ring_size - 1u;
		const bool stuck = now - last_any > std::chrono::milliseconds(100);
		while (sending && sent < c.count && !time_up && !fault_is_due()) {
			if (receiving && !stuck && sent - rx_frames_total >= window)
				break;
			if (ns_per_frame > 0 && static_cast<double>(sent) * ns_per_frame > elapsed * 1e9)
				break;
			const std::uint32_t sz = sizes.next();
			if (!vm.send(sent, sz, now_ns()))
				break;
			tx_bytes += sz;
			sent++;
			added = progress = true;
		}
		if (added && vm.tx.kick_prepare())
			eventfd_signal(kick[txq].get());
		if (progress) {
			longest_idle = std::max(longest_idle, now - last_activity);
			last_activity = now;
		}
		progress |= iotlb_busy;
		if (progress)
			last_any = now;
		// Progress line.
		if (c.progress && now - last_print >= std::chrono::seconds(1)) {
			last_print = now;
			c.progress(fmt::format("{:.1f}s sent {} completed {} received {} lost-so-far {} "
					       "misses {}",
					       elapsed, sent, tx_done, val.unique,
					       sending ? sent - val.unique : 0, fe.stats().misses));
		}
		// Termination.
		const bool all_sent = !sending || sent >= c.count || time_up;
		const bool all_back = !receiving || !sending || val.unique >= sent;
		const bool tx_clean = !sending || tx_done >= sent;
		if (all_sent && all_back && tx_clean && sending && !fault)
			break;
		// No frame moved for drain_ms: done (all sent) or stalled (a
		// device that stopped, or asks for translations without end;
		// the window or the TX ring is full).
		if (now - last_activity > std::chrono::milliseconds(c.drain_ms))
			break;
		if (!sending && c.duration_s > 0 && time_up)
			break;
		(void)last_progress;
		// Wait.
		if (!progress) {
			if (c.interrupt) {
				bool idle = vm.rx.enable_cb() && vm.tx.enable_cb();
				if (idle) {
					pollfd pfd[3] = {{call[rxq].get(), POLLIN, 0},
							 {call[txq].get(), POLLIN, 0},
							 {fe.channel_fd(), POLLIN, 0}};
					int wait = 10;
					if (ns_per_frame > 0)
						wait = 1;
					if (::poll(pfd, fe.channel_fd() >= 0 ? 3 : 2, wait) > 0)
						wakeups++;
					eventfd_consume(call[rxq].get());
					eventfd_consume(call[txq].get());
				}
				vm.rx.disable_cb();
				vm.tx.disable_cb();
			} else if (ns_per_frame > 0 || all_sent || receiving) {
				std::this_thread::sleep_for(std::chrono::microseconds(20));
			}
		}
	}
	set_phase("summary and teardown");
	const double secs = std::chrono::duration<double>(clock::now() - t0).count();
	const std::uint64_t lost = sending && receiving ? val.lost(sent) : 0;
	// With a fault injected, what the device does is the observation;
	// only a corrupted frame (bad magic, length or checksum) fails.
	std::vector<std::uint64_t> damaged;
	const std::uint64_t canary_pages = vm.check_canaries(damaged);
	const bool canaries_ok = damaged.empty() && vm.rx_tail_damaged == 0;
	nlohmann::json damaged_json = nlohmann::json::array();
	for (std::size_t i = 0; i < damaged.size() && i < 16; i++)
		damaged_json.push_back(fmt::format("{:#x}", damaged[i]));
	bool ok = val.corrupt == 0 && canaries_ok && csum[2] == 0;
	if (!fault)
		ok = ok && val.duplicates == 0 && val.out_of_range == 0 &&
		     vm.rx.counters().bad_used == 0 && vm.tx.counters().bad_used == 0 && lost == 0 &&
		     val.reordered == 0 && tx_done == sent && (!sending || sent == c.count ||
							       c.duration_s > 0);
	if (!c.fault.empty() && !fault) {
		ok = false;
		fault_json = {{"name", c.fault}, {"outcome", "not-injected"}, {"sent_after", 0},
			      {"received_after", 0}, {"duplicates", 0}, {"bad_used", 0}};
	}
	if (fault) {
		fault_json = fault->to_json();
		const std::uint64_t after_sent = sent - fault_sent_at;
		const std::uint64_t after_rx = val.unique - fault_rx_at;
		fault_json["sent_after"] = after_sent;
		fault_json["received_after"] = after_rx;
		fault_json["bad_used"] = vm.tx.counters().bad_used + vm.rx.counters().bad_used;
		fault_json["duplicates"] = val.duplicates;
		fault_json["foreign"] = val.out_of_range;
		fault_json["misses_left_unanswered"] = vm.misses_left_unanswered;
		fault_json["outcome"] = !receiving || !sending ? (tx_done == sent ? "completed" : "stalled")
					: after_rx == 0 || sent < c.count ? "stalled"
					: lost == 0 ? "recovered"
						    : "dropped";
	}
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
		{"seconds", secs},
		{"tx", {{"sent", sent}, {"completed", tx_done}, {"bytes", tx_bytes},
			{"pps", secs > 0 ? static_cast<double>(sent) / secs : 0},
			{"kicks", vm.tx.counters().kicks},
			{"kicks_suppressed", vm.tx.counters().kicks_suppressed},
			{"bad_used", vm.tx.counters().bad_used}}},
		{"rx", {{"frames", rx_frames_total}, {"unique", val.unique}, {"lost", lost},
			{"duplicates", val.duplicates}, {"reordered", val.reordered},
			{"corrupt", val.corrupt}, {"out_of_range", val.out_of_range},
			{"merged", merged}, {"bytes", val.bytes},
			{"pps", secs > 0 ? static_cast<double>(val.unique) / secs : 0},
			{"bad_used", vm.rx.counters().bad_used},
			{"latency", val.latency_json()},
			{"csum", vc.tx_csum ? nlohmann::json{{"partial", csum[0]},
							     {"complete", csum[1]},
							     {"bad", csum[2]}}
					    : nlohmann::json()}}},
		{"iommu_ops", {{"maps", vm.maps}, {"unmaps", vm.unmaps}, {"pages", vm.mmu.pages()}}},
		{"wakeups", wakeups},
		{"longest_idle_ms",
		 std::chrono::duration_cast<std::chrono::milliseconds>(longest_idle).count()},
		{"canaries", {{"ok", canaries_ok}, {"pages_checked", canary_pages},
			      {"damaged_pages", damaged.size()}, {"damaged", damaged_json},
			      {"rx_tail_damaged", vm.rx_tail_damaged}}},
		{"frontend", fe.to_json()},
		{"fault", fault_json},
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
	return s;
}

} // namespace vpci::sim
