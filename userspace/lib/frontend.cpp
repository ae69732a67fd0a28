// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "frontend.hpp"

#include <algorithm>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace vpci {

using clock = std::chrono::steady_clock;

frontend::frontend(control_area &ctrl, frontend_events &ev, const frontend_config &cfg)
	: ctrl_(ctrl), ev_(ev), cfg_(cfg), b2d_(ctrl.raw().b2d), d2b_(ctrl.raw().d2b)
{
	was_bound_ = driver_bound();
}

bool frontend::attach(unique_fd sock)
{
	if (conn_) {
		spdlog::warn("vhost-user: rejecting a second front-end connection");
		return false;
	}
	conn_.emplace(std::move(sock));
	reset_session();
	set_status(VPCI_BS_FRONTEND, VPCI_BS_BROKEN | VPCI_BS_RUNNING);
	spdlog::info("vhost-user: front-end connected");
	return true;
}

void frontend::disconnect(const std::string &why)
{
	if (!conn_)
		return;
	spdlog::info("vhost-user: front-end disconnected: {}", why);
	// A pending reply has nobody to go to; the translations it concerned
	// are dropped below with everything else.
	pending_.reset();
	conn_.reset();
	reset_session();
	set_status(0, VPCI_BS_FRONTEND | VPCI_BS_RUNNING | VPCI_BS_IOMMU);
}

void frontend::flush_driver_iotlb(const char *why)
{
	// Everything the driver may still hold is invalidated: one message
	// for the whole IOVA space (the driver drops all its translations).
	// No ack is waited for here: either VM1's device is gone or stopped
	// (QEMU unregisters its IOMMU notifiers when vhost stops, so no
	// invalidation would ever reach us for what VM1 unmaps next), or the
	// caller waits for the driver's generation ack, which the driver gives
	// only after it applied every earlier b2d message.
	// Updates still held for their window, or waiting for b2d room, are
	// superseded by the flush.
	held_.clear();
	deferred_.clear();
	bool posted = false;
	if (driver_bound()) {
		vpci_msg m{};
		m.type = VPCI_MSG_IOTLB_INVALIDATE;
		m.queue = 0xffff;
		m.seq = next_seq_++;
		m.iova = 0;
		m.size = 0; // from iova to the end of the space (uapi)
		flush_seq_ = m.seq;
		posted = post(m);
		if (posted)
			spdlog::info("iotlb: flushed the driver's IOTLB ({})", why);
	}
	shadow_.clear();
	if (port_ && posted) {
		// VM2's windows go once the driver dropped its translations
		// (its ack of the flush), at the latest after the timeout.
		windows_flush_seq_ = flush_seq_;
		windows_flush_deadline_ =
			clock::now() + std::chrono::milliseconds(cfg_.inval_timeout_ms);
		return;
	}
	sync_windows();
}

void frontend::finish_windows_flush(const char *why)
{
	if (!windows_flush_seq_)
		return;
	spdlog::debug("iotlb: flush seq {}: VM2's windows follow ({})", windows_flush_seq_, why);
	windows_flush_seq_ = 0;
	sync_windows();
}

void frontend::reset_session()
{
	flush_driver_iotlb("front-end session reset");
	slave_.reset();
	features_ = 0;
	features_set_ = false;
	protocol_features_ = 0;
	owner_ = false;
	regions_.clear();
	for (unsigned q = 0; q < VPCI_MAX_QUEUES; q++) {
		bool had_fds = vrings_[q].kick || vrings_[q].call;
		vrings_[q] = vring{};
		if (q < num_queues()) {
			publish_vq(q);
			if (had_fds)
				ev_.queue_fds_changed(q);
		}
	}
	auto &b = ctrl_.raw().backend;
	le_store(b.features, 0);
	le_store(b.num_queue_pairs, 0);
}

void frontend::set_status(std::uint32_t set, std::uint32_t clear)
{
	auto &st = ctrl_.raw().backend.status;
	le_store(st, (le_load(st) & ~clear) | set);
	changed();
}

void frontend::changed()
{
	ctrl_.bump_generation();
	ev_.notify_driver();
}

void frontend::publish_vq(unsigned q)
{
	auto &c = ctrl_.raw().vq_config[q];
	const vring &v = vrings_[q];
	le_store(c.desc, v.desc);
	le_store(c.avail, v.avail);
	le_store(c.used, v.used);
	le_store(c.num, v.num);
	le_store(c.base, v.base);
	le_store(c.enabled, static_cast<std::uint16_t>(v.live()));
	le_store(c.notify, v.notify);
	// A new run of the ring: the driver may never see enabled = 0 in
	// between (a reset and a new setup within one of its config passes).
	if (v.live() && !published_live_[q]) {
		// 0 means "no epoch" (uapi): skipped when the count wraps.
		if (++epochs_[q] == 0)
			epochs_[q] = 1;
		le_store(c.epoch, epochs_[q]);
	}
	published_live_[q] = v.live();
}

void frontend::set_notify_modes(unsigned q, std::uint16_t kick, std::uint16_t call)
{
	vring &v = vrings_.at(q);
	v.kick_mode = kick;
	v.call_mode = call;
	std::uint16_t mode = VPCI_NOTIFY_NONE;
	if (kick == VPCI_NOTIFY_RELAY || call == VPCI_NOTIFY_RELAY)
		mode = VPCI_NOTIFY_RELAY;
	else if (kick == VPCI_NOTIFY_DIRECT || call == VPCI_NOTIFY_DIRECT)
		mode = VPCI_NOTIFY_DIRECT;
	if (v.notify == mode)
		return;
	v.notify = mode;
	publish_vq(q);
	changed();
}

void frontend::update_running()
{
	unsigned pairs = 0;
	bool any = false;
	for (unsigned q = 0; q < num_queues(); q++)
		if (vrings_[q].live()) {
			any = true;
			pairs = q / 2 + 1;
		}
	le_store(ctrl_.raw().backend.num_queue_pairs, static_cast<std::uint16_t>(pairs));
	const bool broken = le_load(ctrl_.raw().backend.status) & VPCI_BS_BROKEN;
	if (any && !broken)
		set_status(VPCI_BS_RUNNING, 0);
	else
		set_status(0, VPCI_BS_RUNNING);
}

void frontend::send_reply_u64(std::uint32_t req, std::uint64_t v)
{
	try {
		conn_->reply_u64(req, v);
	} catch (const std::system_error &e) {
		spdlog::warn("vhost-user: reply to {} failed: {}", vu::request_name(req), e.what());
	}
}

void frontend::handle_readable()
{
	if (!conn_ || pending_)
		return;
	auto r = conn_->recv();
	if (std::holds_alternative<vu::connection::incomplete>(r))
		return;
	if (std::holds_alternative<vu::connection::eof>(r))
		return disconnect("EOF");
	if (auto *e = std::get_if<vu::parse_error>(&r)) {
		spdlog::warn("vhost-user: rejected {} (flags {:#x}): {}",
			     vu::request_name(e->request), e->flags, e->reason);
		if (e->fatal)
			return disconnect("framing error: " + e->reason);
		// NAK only when asked and when the version was right.
		if (e->flags & vu::flag_need_reply && !(e->flags & vu::flag_reply))
			send_reply_u64(e->request, 1);
		return;
	}
	vu::message &m = std::get<vu::message>(r);
	spdlog::debug("vhost-user: {}", m.to_string());
	std::uint64_t value = 0;
	bool replied = false;
	bool ok;
	try {
		ok = handle(m, value, replied);
	} catch (const std::exception &e) {
		// A failing syscall while applying a message rejects that
		// message; the daemon and the session keep running.
		spdlog::error("vhost-user: {} failed: {}", m.to_string(), e.what());
		ok = false;
	}
	if (!conn_)
		return;
	if (!ok)
		spdlog::warn("vhost-user: rejected {}", m.to_string());
	if (!replied && m.need_reply())
		send_reply_u64(static_cast<std::uint32_t>(m.req()), ok ? 0 : 1);
}

bool frontend::check_queue(std::uint32_t idx, const char *what) const
{
	if (idx >= num_queues()) {
		spdlog::warn("vhost-user: {}: queue {} out of range (have {})", what, idx,
			     num_queues());
		return false;
	}
	return true;
}

bool frontend::handle(vu::message &m, std::uint64_t &, bool &replied)
{
	using namespace vu;
	const auto req = static_cast<std::uint32_t>(m.req());
	auto reply = [&](std::uint64_t v) {
		send_reply_u64(req, v);
		replied = true;
		return true;
	};

	if (auto *x = std::get_if<get_features>(&m.body)) {
		(void)x;
		const driver_state d = ctrl_.read_driver();
		return reply(f_protocol_features | (d.bound() ? d.device_features : unbound_features()));
	}
	if (auto *x = std::get_if<set_features>(&m.body))
		return on_set_features(x->p.u64);
	if (std::holds_alternative<get_protocol_features>(m.body))
		return reply(offered_protocol_features);
	if (auto *x = std::get_if<set_protocol_features>(&m.body)) {
		if (x->p.u64 & ~offered_protocol_features) {
			spdlog::warn("vhost-user: protocol features {:#x} not offered ({:#x})",
				     x->p.u64, offered_protocol_features);
			return false;
		}
		protocol_features_ = x->p.u64;
		return true;
	}
	if (std::holds_alternative<set_owner>(m.body)) {
		owner_ = true;
		return true;
	}
	if (std::holds_alternative<reset_owner>(m.body)) {
		reset_session();
		set_status(0, VPCI_BS_RUNNING | VPCI_BS_IOMMU);
		return true;
	}
	if (std::holds_alternative<get_queue_num>(m.body))
		return reply(cfg_.max_queue_pairs);
	if (std::holds_alternative<set_mem_table>(m.body))
		return on_mem_table(m);
	if (std::holds_alternative<set_log_base>(m.body) || std::holds_alternative<set_log_fd>(m.body)) {
		spdlog::warn("vhost-user: dirty logging not supported (LOG_ALL not offered)");
		return false;
	}
	if (auto *x = std::get_if<set_vring_num>(&m.body)) {
		if (!check_queue(x->p.index, "SET_VRING_NUM"))
			return false;
		const std::uint32_t n = x->p.num;
		if (!vu::valid_ring_size(n)) {
			spdlog::warn("vhost-user: ring size {} is not a power of two in 1..32768", n);
			return false;
		}
		vrings_[x->p.index].num = static_cast<std::uint16_t>(n);
		publish_vq(x->p.index);
		changed();
		return true;
	}
	if (auto *x = std::get_if<set_vring_addr>(&m.body))
		return on_vring_addr(x->p);
	if (auto *x = std::get_if<set_vring_base>(&m.body)) {
		if (!check_queue(x->p.index, "SET_VRING_BASE"))
			return false;
		if (x->p.num > 0xffff) {
			spdlog::warn("vhost-user: vring base {} does not fit 16 bits", x->p.num);
			return false;
		}
		vrings_[x->p.index].base = static_cast<std::uint16_t>(x->p.num);
		// The ring is not running: until the driver runs it, its progress
		// is the new base.  A pause (SET_VRING_ENABLE 0) before the driver
		// started it must not take the index of an earlier run of the ring.
		le_store(ctrl_.raw().vq_state[x->p.index].last_avail_idx,
			 vrings_[x->p.index].base);
		publish_vq(x->p.index);
		changed();
		return true;
	}
	if (auto *x = std::get_if<get_vring_base>(&m.body)) {
		if (!check_queue(x->p.index, "GET_VRING_BASE"))
			return false;
		bool deferred = false;
		on_get_vring_base(m, x->p.index, deferred);
		replied = true;
		return true;
	}
	auto vring_fd = [&](std::uint64_t u, unique_fd vring::*which, const char *what) {
		const auto i = vring_fd_index(u, num_queues());
		if (!i) {
			spdlog::warn("vhost-user: {}: bad index or unknown bits in {:#x} (have {} "
				     "queues)",
				     what, u, num_queues());
			return false;
		}
		const unsigned idx = *i;
		vrings_[idx].*which = m.fds.empty() ? unique_fd() : std::move(m.fds[0]);
		if (which == &vring::kick)
			vrings_[idx].kick_seq = ++fd_seq_;
		else if (which == &vring::call)
			vrings_[idx].call_seq = ++fd_seq_;
		return true;
	};
	if (auto *x = std::get_if<set_vring_kick>(&m.body)) {
		if (!vring_fd(x->p.u64, &vring::kick, "SET_VRING_KICK"))
			return false;
		const auto q = static_cast<unsigned>(x->p.u64 & vring_idx_mask);
		vrings_[q].started = true;
		publish_vq(q);
		update_running();
		ev_.queue_fds_changed(q);
		return true;
	}
	if (auto *x = std::get_if<set_vring_call>(&m.body)) {
		if (!vring_fd(x->p.u64, &vring::call, "SET_VRING_CALL"))
			return false;
		ev_.queue_fds_changed(static_cast<unsigned>(x->p.u64 & vring_idx_mask));
		return true;
	}
	if (auto *x = std::get_if<set_vring_err>(&m.body))
		return vring_fd(x->p.u64, &vring::err, "SET_VRING_ERR");
	if (auto *x = std::get_if<set_vring_enable>(&m.body)) {
		if (!check_queue(x->p.index, "SET_VRING_ENABLE") || x->p.num > 1)
			return false;
		// QEMU enables rings as soon as protocol features are set,
		// before NUM/ADDR: remember it, publish once the ring is described.
		vring &v = vrings_[x->p.index];
		const bool was_live = v.live();
		v.enabled = x->p.num;
		publish_vq(x->p.index);
		update_running();
		if (was_live && !v.enabled && driver_bound()) {
			// VM1 disabled a pair it ran (ethtool -L): no SET_VRING_BASE
			// comes before it enables the ring again, so the ring must
			// resume where the driver stops it, not at the old base.
			// Wait, as GET_VRING_BASE does, for the driver to confirm
			// this generation (it published its position by then).
			pending_ = pending_op{pending_op::kind::vring_pause,
					      static_cast<std::uint32_t>(m.req()), m.need_reply(), 0,
					      x->p.index, ctrl_.generation(),
					      clock::now() +
						      std::chrono::milliseconds(cfg_.vring_base_timeout_ms)};
			replied = true;
		}
		return true;
	}
	if (std::holds_alternative<set_slave_req_fd>(m.body)) {
		int fl = ::fcntl(m.fds[0].get(), F_GETFL);
		if (fl >= 0)
			::fcntl(m.fds[0].get(), F_SETFL, fl | O_NONBLOCK);
		slave_.emplace(std::move(m.fds[0]));
		spdlog::info("vhost-user: backend (slave) channel set up");
		return true;
	}
	if (auto *x = std::get_if<iotlb>(&m.body)) {
		bool deferred = false;
		bool ok = on_iotlb(m, x->p, deferred);
		if (deferred)
			replied = true;
		return ok;
	}
	spdlog::warn("vhost-user: {} not handled", m.to_string());
	return false;
}

bool frontend::on_set_features(std::uint64_t f)
{
	const driver_state d = ctrl_.read_driver();
	const std::uint64_t offered =
		vu::f_protocol_features | (d.bound() ? d.device_features : unbound_features());
	if (f & ~offered) {
		spdlog::warn("vhost-user: SET_FEATURES {:#x} acks bits not offered ({:#x})", f,
			     offered);
		return false;
	}
	// A legacy driver's virtio_net_hdr is 10 bytes, not the 12 every
	// consumer of these rings assumes (VIRTIO 1.x 5.1.6): refuse it.
	if (!(f & (1ULL << virtio_f_version_1))) {
		spdlog::warn("vhost-user: SET_FEATURES {:#x} without VERSION_1 (legacy driver) refused",
			     f);
		return false;
	}
	features_ = f & ~vu::f_protocol_features;
	features_set_ = true;
	le_store(ctrl_.raw().backend.features, features_);
	spdlog::info("vhost-user: features {:#x}{}", features_,
		     iommu() ? " (ACCESS_PLATFORM: addresses are IOVAs)" : " (addresses are GPAs)");
	if (iommu())
		set_status(VPCI_BS_IOMMU, 0);
	else
		set_status(0, VPCI_BS_IOMMU);
	return true;
}

bool frontend::on_mem_table(vu::message &m)
{
	const auto &mem = std::get<vu::set_mem_table>(m.body).p;
	std::vector<vu::region> regs;
	for (std::uint32_t i = 0; i < mem.nregions; i++) {
		const vu::mem_region &r = mem.regions[i];
		struct stat st;
		if (::fstat(m.fds[i].get(), &st) < 0 ||
		    static_cast<std::uint64_t>(st.st_dev) != cfg_.mem_dev ||
		    static_cast<std::uint64_t>(st.st_ino) != cfg_.mem_ino) {
			spdlog::warn("vhost-user: SET_MEM_TABLE region {}: region fd is not the "
				     "shared memory file",
				     i);
			return false;
		}
		const char *why = vu::region_error(r);
		if (why || r.mmap_offset + r.memory_size > cfg_.peer_mem_size) {
			spdlog::warn("vhost-user: SET_MEM_TABLE region {} (offset {:#x} size {:#x}): {}",
				     i, r.mmap_offset, r.memory_size,
				     why ? why
					 : fmt::format("reaches past peer_mem_size {:#x}",
						       cfg_.peer_mem_size));
			return false;
		}
		regs.push_back(vu::region{r.guest_phys_addr, r.memory_size, r.userspace_addr,
					  r.mmap_offset});
	}
	// With ACCESS_PLATFORM every translation's BAR offset came from the
	// old table's user addresses: a different table makes them all stale
	// (QEMU re-sends an identical table at every start; that one keeps them).
	const auto same_region = [](const vu::region &a, const vu::region &b) {
		return a.gpa == b.gpa && a.size == b.size && a.uaddr == b.uaddr &&
		       a.offset == b.offset;
	};
	if (iommu() && !regions_.empty() && !std::ranges::equal(regions_, regs, same_region))
		flush_driver_iotlb("memory table changed");
	// Without ACCESS_PLATFORM the driver's table is GPA -> BAR, one entry
	// per region.  Old entries are dropped first (a new table replaces).
	if (!iommu()) {
		for (const vu::region &r : regions_) {
			shadow_.remove(r.gpa, r.size);
			if (driver_bound()) {
				vpci_msg inv{};
				inv.type = VPCI_MSG_IOTLB_INVALIDATE;
				inv.queue = 0xffff;
				inv.seq = next_seq_++;
				inv.iova = r.gpa;
				inv.size = r.size;
				post_after(0, inv);
			}
		}
	}
	regions_ = std::move(regs);
	if (!iommu()) {
		for (const vu::region &r : regions_)
			shadow_.insert(r.gpa, r.size, r.uaddr, r.offset, VPCI_PERM_RW);
		// Without a vIOMMU the window is all of VM1's RAM.
		const std::uint32_t wseq = sync_windows();
		for (const vu::region &r : regions_) {
			if (driver_bound()) {
				vpci_msg up{};
				up.type = VPCI_MSG_IOTLB_UPDATE;
				up.perm = VPCI_PERM_RW;
				up.queue = 0xffff;
				up.iova = r.gpa;
				up.size = r.size;
				up.bar_offset = r.offset;
				post_after(wseq, up);
			}
		}
		ev_.notify_driver();
	}
	spdlog::info("vhost-user: memory table with {} region(s)", regions_.size());
	return true;
}

bool frontend::on_vring_addr(const vu::vring_addr &a)
{
	if (!check_queue(a.index, "SET_VRING_ADDR"))
		return false;
	const auto r = vu::ring_addresses(a, iommu(), regions_);
	if (!r) {
		spdlog::warn("vhost-user: SET_VRING_ADDR queue {}: ring address does not "
			     "translate through the memory table",
			     a.index);
		return false;
	}
	vring &v = vrings_[a.index];
	v.desc = r->desc;
	v.avail = r->avail;
	v.used = r->used;
	v.addr_set = true;
	publish_vq(a.index);
	update_running();
	changed();
	return true;
}

bool frontend::post(const vpci_msg &m)
{
	if (m.type == VPCI_MSG_IOTLB_UPDATE && b2d_.room() <= update_keep && !b2d_.corrupt()) {
		// The driver is behind (a burst of updates; VM2 slow to run its
		// config pass).  The entry is in the shadow already: it is posted
		// from there once the driver made room (continue_replay()), and
		// an invalidation still finds a slot now.  Refusing it instead
		// would fail VM1's IOTLB update for a slow consumer.
		deferred_.insert(m.iova);
		stats_.deferred++;
		spdlog::debug("iotlb: b2d nearly full: update {:#x} waits for room", m.iova);
		return true;
	}
	switch (b2d_.push(m)) {
	case msg_producer::result::ok:
		return true;
	case msg_producer::result::full:
		spdlog::warn("iotlb: b2d ring full: the driver does not consume");
		return false;
	case msg_producer::result::corrupt:
		spdlog::error("iotlb: b2d consumer index is corrupt");
		return false;
	}
	return false;
}

bool frontend::post_after(std::uint32_t window_seq, const vpci_msg &m)
{
	// b2d order is the driver's order: once one message waits for its
	// window, every later one waits behind it.
	if (port_ && (!held_.empty() || !port_->windows_done(window_seq))) {
		held_.emplace_back(window_seq, m);
		return true;
	}
	return post(m);
}

std::uint32_t frontend::sync_windows()
{
	if (!port_)
		return 0;
	std::vector<file_window> want;
	want.reserve(shadow_.size());
	shadow_.for_each([&](std::uint64_t iova, const shadow_iotlb::entry &e) {
		want.push_back({e.bar_offset, e.last - iova + 1, e.perm});
	});
	try {
		return port_->sync_windows(want);
	} catch (const std::exception &e) {
		spdlog::error("iotlb: windows not updated: {}", e.what());
		return 0;
	}
}

void frontend::on_windows_progress()
{
	bool any = false;
	while (!held_.empty() && port_->windows_done(held_.front().first)) {
		any |= post(held_.front().second);
		held_.pop_front();
	}
	if (any)
		ev_.notify_driver();
	try_complete_invalidate();
}

void frontend::try_complete_invalidate()
{
	if (!pending_ || pending_->k != pending_op::kind::invalidate || !pending_->driver_acked)
		return;
	if (!pending_->windows_synced) {
		pending_->windows_synced = true;
		pending_->window_seq = sync_windows();
	}
	if (port_ && !port_->windows_done(pending_->window_seq))
		return;
	complete_pending(true, 0);
}

bool frontend::on_iotlb(const vu::message &m, const vu::iotlb_msg &t, bool &deferred)
{
	auto reject = [&](const std::string &why) {
		stats_.rejected++;
		spdlog::warn("iotlb: rejected {}: {}", m.to_string(), why);
		return false;
	};
	// An INVALIDATE of size 0 (QEMU's global device-IOTLB flush, VM1 in
	// lazy mode) or past the end of the space drops everything from iova on.
	const vu::iotlb_check chk = vu::check_iotlb(t);
	if (chk.error)
		return reject(chk.error);
	const bool inv_to_end = chk.to_end;

	if (t.type == vu::iotlb_update) {
		auto bar = vu::uaddr_to_offset(regions_, t.uaddr, t.size);
		if (!bar)
			return reject("user address range is not inside one memory region");
		// An update adds one entry and may split one: the driver holds
		// at most cfg_.shadow_max, so the backend keeps no more.
		if (shadow_.size() + 2 > cfg_.shadow_max)
			return reject(fmt::format("shadow IOTLB full ({} entries)", shadow_.size()));
		shadow_.insert(t.iova, t.size, t.uaddr, *bar, t.perm);
		stats_.updates++;
		const std::uint32_t wseq = sync_windows();
		if (driver_bound()) {
			vpci_msg u{};
			u.type = VPCI_MSG_IOTLB_UPDATE;
			u.perm = t.perm;
			u.queue = 0xffff;
			u.seq = next_seq_++;
			u.iova = t.iova;
			u.size = t.size;
			u.bar_offset = *bar;
			if (!post_after(wseq, u))
				return false;
			ev_.notify_driver();
		}
		return true;
	}

	// INVALIDATE: the shadow forgets now; VM1 learns it is done only
	// once the driver acked (or no driver exists to hold it).
	// (size 0 - iova reaches the last byte; for iova 0 it is 0, which
	// remove() reads the same way.)
	shadow_.remove(t.iova, inv_to_end ? 0 - t.iova : t.size);
	// Deferred updates in the range have nothing left to post.
	deferred_.erase(deferred_.lower_bound(t.iova),
			inv_to_end ? deferred_.end()
				   : deferred_.lower_bound(t.iova + t.size));
	stats_.invalidations++;
	if (inv_to_end)
		spdlog::debug("iotlb: invalidation from {:#x} to the end of the IOVA space", t.iova);
	// Without a driver VM2's device drops the window now; with one, once
	// the driver acked (try_complete_invalidate()): until then the driver
	// still translates the range and must read VM1's bytes there, not the
	// all-ones of an unmapped BAR.  The device's UNMAP_DONE is the second
	// condition of the reply either way.
	if (!driver_bound()) {
		const std::uint32_t wseq = sync_windows();
		if (!port_ || port_->windows_done(wseq))
			return true;
		pending_ = pending_op{pending_op::kind::invalidate,
				      static_cast<std::uint32_t>(m.req()), m.need_reply(), 0, 0, 0,
				      clock::now() + std::chrono::milliseconds(cfg_.inval_timeout_ms),
				      true, wseq};
		deferred = true;
		return true;
	}
	vpci_msg inv{};
	inv.type = VPCI_MSG_IOTLB_INVALIDATE;
	inv.queue = 0xffff;
	inv.seq = next_seq_++;
	inv.iova = t.iova;
	inv.size = inv_to_end ? 0 : t.size; // 0: to the end (uapi)
	pending_ = pending_op{pending_op::kind::invalidate, static_cast<std::uint32_t>(m.req()),
			      m.need_reply(), inv.seq, 0, 0,
			      clock::now() + std::chrono::milliseconds(cfg_.inval_timeout_ms),
			      false, 0, false};
	deferred = true;
	if (!post_after(0, inv)) {
		go_broken("cannot post an invalidation");
		complete_pending(false, 1);
		return false;
	}
	stats_.to_driver++;
	ev_.notify_driver();
	spdlog::debug("iotlb: invalidate iova {:#x} size {:#x} seq {} waits for the driver",
		      t.iova, t.size, inv.seq);
	return true;
}

bool frontend::on_get_vring_base(const vu::message &m, unsigned q, bool &deferred)
{
	vring &v = vrings_[q];
	v.started = false; // stopped until the next SET_VRING_KICK
	// The device stopped (no ring left): QEMU no longer forwards VM1's
	// unmaps, so nothing translated so far may be trusted later.  The
	// flush is applied before the generation ack the reply waits for.
	bool any_live = false;
	for (unsigned i = 0; i < num_queues(); i++)
		any_live |= vrings_[i].live();
	if (!any_live && iommu())
		flush_driver_iotlb("device stopped");
	publish_vq(q);
	update_running(); // bumps the generation and notifies
	if (!driver_bound()) {
		// Nobody consumed the ring: VM1 resumes where it told us to.
		vu::vring_state s{q, v.base};
		try {
			conn_->send_reply(static_cast<std::uint32_t>(m.req()), &s, sizeof(s));
		} catch (const std::system_error &e) {
			spdlog::warn("vhost-user: GET_VRING_BASE reply failed: {}", e.what());
		}
		return true;
	}
	pending_ = pending_op{pending_op::kind::vring_base, static_cast<std::uint32_t>(m.req()),
			      true, 0, q, ctrl_.generation(),
			      clock::now() + std::chrono::milliseconds(cfg_.vring_base_timeout_ms)};
	deferred = true;
	return true;
}

void frontend::complete_pending(bool ok, std::uint64_t value)
{
	if (!pending_)
		return;
	pending_op p = *pending_;
	pending_.reset();
	if (p.k == pending_op::kind::vring_pause) {
		vring &v = vrings_[p.queue];
		v.base = static_cast<std::uint16_t>(value);
		publish_vq(p.queue);
		spdlog::info("vhost-user: queue {} disabled; resumes at {}", p.queue, v.base);
	}
	if (!conn_)
		return;
	if (p.k == pending_op::kind::vring_base) {
		vu::vring_state s{p.queue, static_cast<std::uint32_t>(value & 0xffff)};
		try {
			conn_->send_reply(p.req, &s, sizeof(s));
		} catch (const std::system_error &e) {
			spdlog::warn("vhost-user: GET_VRING_BASE reply failed: {}", e.what());
		}
		return;
	}
	if (p.need_reply)
		send_reply_u64(p.req, ok ? 0 : 1);
}

void frontend::drain_d2b()
{
	// Bounded: a driver that keeps the ring full gets d2b_budget messages
	// a wakeup; the rest waits for the next turn of the loop (deadline()).
	bool corrupt = false;
	unsigned n = 0;
	for (; n < d2b_budget; n++) {
		auto m = d2b_.pop(corrupt);
		if (!m)
			break;
		switch (m->type) {
		case VPCI_MSG_IOTLB_INV_ACK:
			if (pending_ && pending_->k == pending_op::kind::invalidate &&
			    !pending_->driver_acked && m->seq == pending_->seq) {
				stats_.acks++;
				spdlog::debug("iotlb: driver acked seq {}", m->seq);
				pending_->driver_acked = true;
				try_complete_invalidate();
			} else {
				if (m->seq == flush_seq_) {
					spdlog::debug("iotlb: flush seq {} acked", m->seq);
					if (m->seq == windows_flush_seq_)
						finish_windows_flush("driver acked");
				}
				else
					d2b_warn("stale or unexpected INV_ACK seq {}", m->seq);
			}
			break;
		case VPCI_MSG_IOTLB_MISS: {
			if (m->perm < VPCI_PERM_RO || m->perm > VPCI_PERM_RW) {
				d2b_warn("driver miss with bad perm {}", m->perm);
				break;
			}
			if (!slave_) {
				d2b_warn("miss for {:#x} but no backend channel", m->iova);
				break;
			}
			vu::iotlb_msg t{};
			t.iova = m->iova;
			t.size = m->size;
			t.perm = m->perm;
			t.type = vu::iotlb_miss;
			try {
				slave_->send_request(
					static_cast<std::uint32_t>(vu::slave_request::iotlb_msg),
					vu::version, &t, sizeof(t));
				stats_.misses_sent++;
				spdlog::debug("iotlb: miss iova {:#x} perm {} queue {} forwarded",
					      t.iova, t.perm, m->queue);
			} catch (const std::system_error &e) {
				d2b_warn("sending miss failed: {}", e.what());
			}
			break;
		}
		default:
			d2b_warn("unknown d2b message type {}", m->type);
		}
	}
	if (corrupt)
		d2b_warn("d2b producer index is corrupt; skipped");
	// A full budget: more may wait; deadline() brings the loop back at once.
	d2b_more_ = n == d2b_budget;
}

void frontend::on_driver_doorbell()
{
	const driver_state d = ctrl_.read_driver();
	if (d.bound() && !was_bound_) {
		was_bound_ = true;
		spdlog::info("iotlb: driver bound: replaying {} shadow entries", shadow_.size());
		replay_shadow();
	} else if (!d.bound() && was_bound_) {
		was_bound_ = false;
		// The next driver resumes each running ring where this one
		// stopped (it published its progress before clearing BOUND);
		// GET_VRING_BASE without a driver reports the same index.
		for (unsigned q = 0; q < num_queues(); q++) {
			if (!vrings_[q].live())
				continue;
			vrings_[q].base = le_load(ctrl_.raw().vq_state[q].last_avail_idx);
			publish_vq(q);
			spdlog::info("vhost-user: queue {} resumes at {} for the next driver", q,
				     vrings_[q].base);
		}
		// Rule (docs/backend.md): the driver clears BOUND only after it
		// stopped every access, so nothing remains to wait for.
		finish_windows_flush("driver unbound");
		if (pending_ && pending_->k == pending_op::kind::invalidate) {
			spdlog::info("iotlb: driver unbound: invalidation seq {} acked",
				     pending_->seq);
			pending_->driver_acked = true;
			try_complete_invalidate();
		}
	}

	drain_d2b();

	// No driver any more: it published its progress before clearing BOUND.
	if (pending_ && pending_->waits_for_generation() &&
	    (!d.bound() || static_cast<std::int32_t>(d.generation_seen - pending_->gen) >= 0))
		complete_pending(true,
				 le_load(ctrl_.raw().vq_state[pending_->queue].last_avail_idx));
}

void frontend::replay_shadow()
{
	replay_next_ = 0;
	continue_replay();
}

/* The shadow's entry that holds @p iova as one UPDATE from @p from on. */
static vpci_msg shadow_update(std::uint64_t from, std::uint64_t iova, const shadow_iotlb::entry &e,
			      std::uint32_t seq)
{
	vpci_msg u{};
	u.type = VPCI_MSG_IOTLB_UPDATE;
	u.perm = e.perm;
	u.queue = 0xffff;
	u.seq = seq;
	u.iova = std::max(iova, from);
	u.size = e.last - u.iova + 1;
	u.bar_offset = e.bar_offset + (u.iova - iova);
	return u;
}

void frontend::continue_replay()
{
	if (!driver_bound()) {
		replay_next_.reset(); // the next driver gets its own replay
		deferred_.clear();    // and the whole shadow with it
		return;
	}
	bool any = false;
	// Live updates that found no room: each as the shadow holds it now
	// (what VM1 unmapped meanwhile is not posted; an entry merged or
	// split meanwhile is posted as it is).
	while (!deferred_.empty() && held_.empty() && b2d_.room() > replay_keep) {
		const std::uint64_t at = *deferred_.begin();
		deferred_.erase(deferred_.begin());
		shadow_.for_each_from(at, [&](std::uint64_t iova, const shadow_iotlb::entry &e) {
			if (iova <= at)
				any |= post(shadow_update(at, iova, e, next_seq_++));
			return false; // the one entry that holds @at, if any
		});
	}
	if (replay_next_) {
		// As much as the b2d ring takes now, in IOVA order from the
		// cursor; the rest on later turns (deadline()).  The shadow is
		// read afresh each turn: what VM1 unmapped meanwhile is not
		// replayed, what it mapped meanwhile was posted live (and may
		// come again, unchanged).
		bool done = true;
		shadow_.for_each_from(*replay_next_, [&](std::uint64_t iova,
							 const shadow_iotlb::entry &e) {
			if (!held_.empty() || b2d_.room() <= replay_keep) {
				done = false;
				return false;
			}
			any |= post(shadow_update(*replay_next_, iova, e, next_seq_++));
			if (e.last == ~0ULL)
				return false; // the end of the IOVA space
			replay_next_ = e.last + 1;
			return true;
		});
		if (done)
			replay_next_.reset();
	}
	if (any)
		ev_.notify_driver();
}

std::optional<clock::time_point> frontend::deadline() const
{
	std::optional<clock::time_point> d;
	if (pending_)
		d = pending_->deadline;
	if (windows_flush_seq_ && (!d || windows_flush_deadline_ < *d))
		d = windows_flush_deadline_;
	if (d2b_more_)
		d = clock::now(); // the rest of the d2b ring, next turn
	if ((replay_next_ || !deferred_.empty()) && (!d || clock::now() + replay_pace < *d))
		d = clock::now() + replay_pace; // once the driver made room
	return d;
}

void frontend::check_timeout()
{
	if (d2b_more_)
		drain_d2b();
	continue_replay();
	if (windows_flush_seq_ && clock::now() >= windows_flush_deadline_)
		finish_windows_flush("no ack from the driver in time");
	if (!pending_ || clock::now() < pending_->deadline)
		return;
	if (pending_->waits_for_generation()) {
		const unsigned q = pending_->queue;
		spdlog::warn("vhost-user: {} queue {}: driver did not confirm "
			     "generation {} in time; using its last published index",
			     pending_->k == pending_op::kind::vring_base ? "GET_VRING_BASE"
									  : "SET_VRING_ENABLE",
			     q, pending_->gen);
		complete_pending(true, le_load(ctrl_.raw().vq_state[q].last_avail_idx));
		return;
	}
	stats_.timeouts++;
	if (!pending_->windows_synced) {
		pending_->windows_synced = true;
		sync_windows(); // VM2 loses the range even without the driver's ack
	}
	go_broken(pending_->driver_acked
			  ? fmt::format("VM2's device did not confirm the unmap of invalidation "
					"seq {} within {} ms",
					pending_->seq, cfg_.inval_timeout_ms)
			  : fmt::format("driver did not ack invalidation seq {} within {} ms",
					pending_->seq, cfg_.inval_timeout_ms));
	complete_pending(false, 1);
}

void frontend::go_broken(const std::string &why)
{
	spdlog::error("BROKEN: {}; all queues stopped, VM1 gets a failure", why);
	for (unsigned q = 0; q < num_queues(); q++) {
		vrings_[q].enabled = false;
		publish_vq(q);
		if (vrings_[q].err)
			eventfd_signal(vrings_[q].err.get());
	}
	le_store(ctrl_.raw().backend.num_queue_pairs, 0);
	set_status(VPCI_BS_BROKEN, VPCI_BS_RUNNING);
}

nlohmann::json frontend::status() const
{
	nlohmann::json queues = nlohmann::json::array();
	static const char *modes[] = {"none", "direct", "relay"};
	for (unsigned q = 0; q < num_queues(); q++) {
		const vring &v = vrings_[q];
		queues.push_back({{"num", v.num},
				  {"desc", v.desc},
				  {"avail", v.avail},
				  {"used", v.used},
				  {"enabled", v.live()},
				  {"notify", modes[v.notify <= 2 ? v.notify : 0]},
				  {"kick", modes[v.kick_mode <= 2 ? v.kick_mode : 0]},
				  {"call", modes[v.call_mode <= 2 ? v.call_mode : 0]},
				  {"kicks_relayed", v.kicks_relayed},
				  {"calls_relayed", v.calls_relayed}});
	}
	return {{"connected", connected()},
		{"features", features_},
		{"protocol_features", protocol_features_},
		{"mem_regions", regions_.size()},
		{"queues", queues}};
}

} // namespace vpci
