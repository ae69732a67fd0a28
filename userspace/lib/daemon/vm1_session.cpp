// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "vm1_session.hpp"

#include <algorithm>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace vpci {

using clock = std::chrono::steady_clock;

vm1_session::vm1_session(control_area &ctrl, vm1_session_events &ev, const vm1_session_config &cfg)
	: ctrl_(ctrl), ev_(ev), cfg_(cfg), sess_(*this, 2u * cfg.max_queue_pairs),
	  b2d_(ctrl.raw().b2d), d2b_(ctrl.raw().d2b)
{
	was_bound_ = driver_bound();
}

bool vm1_session::attach(unique_fd sock)
{
	return sess_.attach(std::move(sock)); // session_reset() follows
}

void vm1_session::disconnect(const std::string &why)
{
	sess_.disconnect(why); // session_reset() follows
}

void vm1_session::flush_driver_iotlb(const char *why)
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

void vm1_session::finish_windows_flush(const char *why)
{
	if (!windows_flush_seq_)
		return;
	spdlog::debug("iotlb: flush seq {}: VM2's windows follow ({})", windows_flush_seq_, why);
	windows_flush_seq_ = 0;
	sync_windows();
}

void vm1_session::session_reset(vu::reset_reason why, std::uint32_t had_fds)
{
	// A pending reply has nobody to go to (a disconnect: only then can
	// one be pending); the translations it concerned are dropped below
	// with everything else.
	pending_.reset();
	flush_driver_iotlb("front-end session reset");
	for (unsigned q = 0; q < num_queues(); q++) {
		notify_[q] = ring_notify{};
		publish_vq(q);
		if (had_fds >> q & 1)
			ev_.queue_fds_changed(q);
	}
	auto &b = ctrl_.raw().backend;
	le_store(b.features, 0);
	le_store(b.num_queue_pairs, 0);
	switch (why) {
	case vu::reset_reason::connected:
		set_status(VPCI_BS_FRONTEND, VPCI_BS_BROKEN | VPCI_BS_RUNNING);
		break;
	case vu::reset_reason::owner_reset:
		set_status(0, VPCI_BS_RUNNING | VPCI_BS_IOMMU);
		break;
	case vu::reset_reason::disconnected:
		set_status(0, VPCI_BS_FRONTEND | VPCI_BS_RUNNING | VPCI_BS_IOMMU);
		break;
	}
}

void vm1_session::set_status(std::uint32_t set, std::uint32_t clear)
{
	auto &st = ctrl_.raw().backend.status;
	le_store(st, (le_load(st) & ~clear) | set);
	changed();
}

void vm1_session::changed()
{
	ctrl_.bump_generation();
	ev_.notify_driver();
}

void vm1_session::publish_vq(unsigned q)
{
	auto &c = ctrl_.raw().vq_config[q];
	const vu::ring &v = sess_.queue(q);
	le_store(c.desc, v.desc);
	le_store(c.avail, v.avail);
	le_store(c.used, v.used);
	le_store(c.num, v.num);
	le_store(c.base, v.base);
	le_store(c.enabled, static_cast<std::uint16_t>(v.live()));
	le_store(c.notify, notify_[q].notify);
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

void vm1_session::set_notify_modes(unsigned q, std::uint16_t kick, std::uint16_t call)
{
	ring_notify &v = notify_.at(q);
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

void vm1_session::update_running()
{
	unsigned pairs = 0;
	bool any = false;
	for (unsigned q = 0; q < num_queues(); q++)
		if (sess_.queue(q).live()) {
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

void vm1_session::handle_readable()
{
	sess_.handle_one();
}

std::uint64_t vm1_session::offered_features() const
{
	const driver_state d = ctrl_.read_driver();
	return d.bound() ? d.device_features : unbound_features();
}

void vm1_session::features_set(std::uint64_t features)
{
	le_store(ctrl_.raw().backend.features, features);
	if (iommu())
		set_status(VPCI_BS_IOMMU, 0);
	else
		set_status(0, VPCI_BS_IOMMU);
}

std::optional<std::vector<vu::region>> vm1_session::memory_table(vu::message &m)
{
	const auto &mem = std::get<vu::set_mem_table>(m.body).p;
	std::vector<vu::region> regs;
	for (std::uint32_t i = 0; i < mem.nregions; i++) {
		const vu::mem_region &r = mem.regions[i];
		struct stat st;
		if (::fstat(m.fds[i].get(), &st) < 0 ||
		    static_cast<std::uint64_t>(st.st_dev) != cfg_.mem_dev ||
		    static_cast<std::uint64_t>(st.st_ino) != cfg_.mem_ino) {
			vm1_log_.warn("vhost-user: SET_MEM_TABLE region {}: region fd is not "
				      "the shared memory file",
				      i);
			return std::nullopt;
		}
		const char *why = vu::region_error(r);
		if (why || r.mmap_offset + r.memory_size > cfg_.peer_mem_size) {
			vm1_log_.warn("vhost-user: SET_MEM_TABLE region {} (offset {:#x} size {:#x}): {}",
				      i, r.mmap_offset, r.memory_size,
				      why ? why
					  : fmt::format("reaches past peer_mem_size {:#x}",
							cfg_.peer_mem_size));
			return std::nullopt;
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
	const std::vector<vu::region> &old = sess_.regions();
	if (iommu() && !old.empty() && !std::ranges::equal(old, regs, same_region))
		flush_driver_iotlb("memory table changed");
	// Without ACCESS_PLATFORM the driver's table is GPA -> BAR, one entry
	// per region.  Old entries are dropped first (a new table replaces).
	if (!iommu()) {
		for (const vu::region &r : old) {
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
	if (!iommu()) {
		for (const vu::region &r : regs)
			shadow_.insert(r.gpa, r.size, r.uaddr, r.offset, VPCI_PERM_RW);
		// Without a vIOMMU the window is all of VM1's RAM.
		const std::uint32_t wseq = sync_windows();
		for (const vu::region &r : regs) {
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
	spdlog::info("vhost-user: memory table with {} region(s)", regs.size());
	return regs;
}

bool vm1_session::ring_changed(const vu::message &m, unsigned q, vu::ring_change what,
			    bool was_live)
{
	vu::ring &v = sess_.queue(q);
	switch (what) {
	case vu::ring_change::num:
		publish_vq(q);
		changed();
		break;
	case vu::ring_change::addr:
		publish_vq(q);
		update_running();
		changed();
		break;
	case vu::ring_change::base:
		// The ring is not running: until the driver runs it, its progress
		// is the new base.  A pause (SET_VRING_ENABLE 0) before the driver
		// started it must not take the index of an earlier run of the ring.
		le_store(ctrl_.raw().vq_state[q].last_avail_idx, v.base);
		publish_vq(q);
		changed();
		break;
	case vu::ring_change::kick:
		publish_vq(q);
		update_running();
		ev_.queue_fds_changed(q);
		break;
	case vu::ring_change::call:
		ev_.queue_fds_changed(q);
		break;
	case vu::ring_change::err:
		break;
	case vu::ring_change::enable:
		// QEMU enables rings as soon as protocol features are set,
		// before NUM/ADDR: published once the ring is described.
		publish_vq(q);
		update_running();
		if (was_live && !v.enabled && driver_bound()) {
			// VM1 disabled a pair it ran (ethtool -L): no SET_VRING_BASE
			// comes before it enables the ring again, so the ring must
			// resume where the driver stops it, not at the old base.
			// Wait, as GET_VRING_BASE does, for the driver to confirm
			// this generation (it published its position by then).
			pending_ = pending_op{pending_op::kind::vring_pause,
					      static_cast<std::uint32_t>(m.req()), m.need_reply(), 0,
					      q, ctrl_.generation(),
					      clock::now() +
						      std::chrono::milliseconds(cfg_.vring_base_timeout_ms)};
			return true;
		}
		break;
	}
	return false;
}

bool vm1_session::post(const vpci_msg &m)
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

bool vm1_session::post_after(std::uint32_t window_seq, const vpci_msg &m)
{
	// b2d order is the driver's order: once one message waits for its
	// window, every later one waits behind it.
	if (port_ && (!held_.empty() || !port_->windows_done(window_seq))) {
		held_.emplace_back(window_seq, m);
		return true;
	}
	return post(m);
}

std::uint32_t vm1_session::sync_windows()
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

void vm1_session::on_windows_progress()
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

void vm1_session::try_complete_invalidate()
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

vu::iotlb_result vm1_session::iotlb_message(const vu::message &m, const vu::iotlb_msg &t, bool inv_to_end,
				 std::uint64_t bar)
{
	// The session counts what is refused (counters()).
	auto reject = [&](const std::string &why) {
		vm1_log_.warn("iotlb: rejected {}: {}", m.to_string(), why);
		return vu::iotlb_result{false, false};
	};
	// An INVALIDATE of size 0 (QEMU's global device-IOTLB flush, VM1 in
	// lazy mode) or past the end of the space drops everything from iova
	// on (inv_to_end).
	if (t.type == vu::iotlb_update) {
		// An update adds one entry and may split one: the driver holds
		// at most cfg_.shadow_max, so the backend keeps no more.
		if (shadow_.size() + 2 > cfg_.shadow_max)
			return reject(fmt::format("shadow IOTLB full ({} entries)", shadow_.size()));
		shadow_.insert(t.iova, t.size, t.uaddr, bar, t.perm);
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
			u.bar_offset = bar;
			if (!post_after(wseq, u))
				return {false, false};
			ev_.notify_driver();
		}
		return {};
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
			return {};
		pending_ = pending_op{pending_op::kind::invalidate,
				      static_cast<std::uint32_t>(m.req()), m.need_reply(), 0, 0, 0,
				      clock::now() + std::chrono::milliseconds(cfg_.inval_timeout_ms),
				      true, wseq};
		return {true, true};
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
	if (!post_after(0, inv)) {
		go_broken("cannot post an invalidation");
		// The reply goes now, the failure in it.
		complete_pending(false, 1);
		return {false, true};
	}
	stats_.to_driver++;
	ev_.notify_driver();
	spdlog::debug("iotlb: invalidate iova {:#x} size {:#x} seq {} waits for the driver",
		      t.iova, t.size, inv.seq);
	return {true, true};
}

std::optional<std::uint16_t> vm1_session::stop_ring(const vu::message &m, unsigned q)
{
	const vu::ring &v = sess_.queue(q); // stopped until the next SET_VRING_KICK
	// The device stopped (no ring left): QEMU no longer forwards VM1's
	// unmaps, so nothing translated so far may be trusted later.  The
	// flush is applied before the generation ack the reply waits for.
	bool any_live = false;
	for (unsigned i = 0; i < num_queues(); i++)
		any_live |= sess_.queue(i).live();
	if (!any_live && iommu())
		flush_driver_iotlb("device stopped");
	publish_vq(q);
	update_running(); // bumps the generation and notifies
	if (!driver_bound())
		return v.base; // nobody consumed the ring: VM1 resumes where it told us to
	pending_ = pending_op{pending_op::kind::vring_base, static_cast<std::uint32_t>(m.req()),
			      true, 0, q, ctrl_.generation(),
			      clock::now() + std::chrono::milliseconds(cfg_.vring_base_timeout_ms)};
	return std::nullopt;
}

void vm1_session::complete_pending(bool ok, std::uint64_t value)
{
	if (!pending_)
		return;
	pending_op p = *pending_;
	pending_.reset();
	if (p.k == pending_op::kind::vring_pause) {
		vu::ring &v = sess_.queue(p.queue);
		v.base = static_cast<std::uint16_t>(value);
		publish_vq(p.queue);
		spdlog::info("vhost-user: queue {} disabled; resumes at {}", p.queue, v.base);
	}
	if (p.k == pending_op::kind::vring_base)
		sess_.reply_vring_base(p.req, p.queue, static_cast<std::uint16_t>(value));
	else
		sess_.reply_ack(p.req, p.need_reply, ok);
}

void vm1_session::drain_d2b()
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
					d2b_log_.warn("iotlb: stale or unexpected INV_ACK seq {}", m->seq);
			}
			break;
		case VPCI_MSG_IOTLB_MISS: {
			if (m->perm < VPCI_PERM_RO || m->perm > VPCI_PERM_RW) {
				d2b_log_.warn("iotlb: driver miss with bad perm {}", m->perm);
				break;
			}
			if (!sess_.has_backend_channel()) {
				d2b_log_.warn("iotlb: miss for {:#x} but no backend channel", m->iova);
				break;
			}
			try {
				sess_.send_iotlb_miss(m->iova, m->size, m->perm);
				stats_.misses_sent++;
				spdlog::debug("iotlb: miss iova {:#x} perm {} queue {} forwarded",
					      m->iova, m->perm, m->queue);
			} catch (const std::system_error &e) {
				d2b_log_.warn("iotlb: sending miss failed: {}", e.what());
			}
			break;
		}
		default:
			d2b_log_.warn("iotlb: unknown d2b message type {}", m->type);
		}
	}
	if (corrupt)
		d2b_log_.warn("iotlb: d2b producer index is corrupt; skipped");
	// A full budget: more may wait; deadline() brings the loop back at once.
	d2b_more_ = n == d2b_budget;
}

void vm1_session::on_driver_doorbell()
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
			vu::ring &v = sess_.queue(q);
			if (!v.live())
				continue;
			v.base = le_load(ctrl_.raw().vq_state[q].last_avail_idx);
			publish_vq(q);
			spdlog::info("vhost-user: queue {} resumes at {} for the next driver", q,
				     v.base);
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

void vm1_session::replay_shadow()
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

void vm1_session::continue_replay()
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

std::optional<clock::time_point> vm1_session::deadline() const
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

void vm1_session::check_timeout()
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

void vm1_session::go_broken(const std::string &why)
{
	spdlog::error("BROKEN: {}; all queues stopped, VM1 gets a failure", why);
	for (unsigned q = 0; q < num_queues(); q++) {
		vu::ring &v = sess_.queue(q);
		v.enabled = false;
		publish_vq(q);
		if (v.err)
			eventfd_signal(v.err.get());
	}
	le_store(ctrl_.raw().backend.num_queue_pairs, 0);
	set_status(VPCI_BS_BROKEN, VPCI_BS_RUNNING);
}

namespace {

// backend status's "frontend" (selftests/ and scripts/ read it by these names).
struct queue_status {
	std::uint16_t num = 0;
	std::uint64_t desc = 0, avail = 0, used = 0;
	bool enabled = false;
	/** "none", "direct" or "relay" (VPCI_NOTIFY_*). */
	std::string notify, kick, call;
	std::uint64_t kicks_relayed = 0, calls_relayed = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(queue_status, num, desc, avail, used, enabled, notify, kick,
				   call, kicks_relayed, calls_relayed)

struct session_status {
	bool connected = false;
	std::uint64_t features = 0, protocol_features = 0, mem_regions = 0;
	std::vector<queue_status> queues;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(session_status, connected, features, protocol_features,
				   mem_regions, queues)

const char *notify_mode_name(std::uint16_t m)
{
	static const char *modes[] = {"none", "direct", "relay"};
	return modes[m <= 2 ? m : 0];
}

} // namespace

nlohmann::json vm1_session::status() const
{
	session_status s{connected(), sess_.features() & ~vu::f_protocol_features,
			 sess_.protocol_features(), sess_.regions().size(), {}};
	for (unsigned q = 0; q < num_queues(); q++) {
		const vu::ring &v = sess_.queue(q);
		const ring_notify &n = notify_[q];
		s.queues.push_back({v.num, v.desc, v.avail, v.used, v.live(),
				    notify_mode_name(n.notify), notify_mode_name(n.kick_mode),
				    notify_mode_name(n.call_mode), n.kicks_relayed, n.calls_relayed});
	}
	return s;
}

} // namespace vpci
