// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "backend.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <system_error>
#include <vector>

#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace vpci {

/** Control clients at once; more are told so and closed. */
static constexpr std::size_t max_ctl_clients = 64;
/**
 * Connections a listener takes per wakeup: a storm of connects waits its
 * turn (the listeners are level-triggered: the rest wakes the loop again).
 */
static constexpr unsigned accept_budget = 16;
/** A listener whose accept() failed (EMFILE...) rests this long. */
static constexpr auto listener_rest = std::chrono::milliseconds(200);
/** How often VM2's config vector is raised again while a call peer's probe waits. */
static constexpr auto probe_nudge_every = std::chrono::milliseconds(100);

backend::backend(const backend_config &cfg)
	: shm_(cfg.mem_file, cfg.ram_size),
	  ctrl_(control_area::create(shm_, cfg.ctrl)),
	  reannounce_peer_(cfg.reannounce_peer)
{
	const unsigned nvec = VPCI_NUM_VECTORS(cfg.ctrl.max_queue_pairs);
	if (cfg.device == vm2_device::vhost_pci) {
		if (cfg.device_socket.empty())
			throw std::invalid_argument("the vhost-pci device needs a device socket");
		dev_.emplace(cfg.device_socket, shm_.fd(), shm_.file_size(), shm_.ctrl_offset(),
			     nvec);
	} else {
		ivs_.emplace(cfg.ivshmem_socket, shm_.fd(), nvec);
	}
	spdlog::info("memory file {}: {} bytes, VM1 RAM {} bytes, control area at {:#x}",
		     shm_.path(), shm_.file_size(), shm_.ram_size(), shm_.ctrl_offset());
	if (!cfg.control_socket.empty()) {
		ctl_listener_.emplace(cfg.control_socket);
		spdlog::info("control: listening on {}", cfg.control_socket);
	}
	if (dev_)
		watch(dev_->listen_fd(), tag::dev_listen);
	else
		watch(ivs_->listen_fd(), tag::ivs_listen);
	watch(doorbell_fd(VPCI_VEC_CONFIG), tag::doorbell_config);
	if (ctl_listener_)
		watch(ctl_listener_->fd(), tag::ctl_listen);
	for (unsigned v = 1; v < num_vectors(); v++)
		watch(doorbell_fd(v), tag::doorbell_queue);
	last_driver_ = ctrl_.read_driver();
	if (!cfg.vhost_user_socket.empty()) {
		struct stat st;
		if (::fstat(shm_.fd(), &st) < 0)
			throw_errno("fstat(" + shm_.path() + ")");
		vm1_session_config fc;
		fc.peer_mem_size = shm_.ram_size();
		fc.mem_dev = st.st_dev;
		fc.mem_ino = st.st_ino;
		fc.max_queue_pairs = cfg.ctrl.max_queue_pairs;
		fc.inval_timeout_ms = cfg.inval_timeout_ms;
		fc.shadow_max = cfg.shadow_max;
		fc.vring_base_timeout_ms = cfg.vring_base_timeout_ms;
		vm1_ = std::make_unique<vm1_session>(ctrl_, static_cast<vm1_session_events &>(*this), fc);
		if (dev_)
			vm1_->set_window_port(static_cast<window_port *>(this));
		vu_listener_.emplace(cfg.vhost_user_socket);
		watch(vu_listener_->fd(), tag::vu_listen);
		spdlog::info("vhost-user: listening on {}", cfg.vhost_user_socket);
	}
}

void backend::notify_driver()
{
	notify_vm2(VPCI_VEC_CONFIG);
}

bool backend::vm2_connected() const noexcept
{
	return dev_ ? dev_->client_connected() : ivs_->client_connected();
}

unsigned backend::num_vectors() const noexcept
{
	return dev_ ? dev_->num_vectors() : ivs_->num_vectors();
}

int backend::doorbell_fd(unsigned vector) const
{
	return dev_ ? dev_->doorbell_fd(vector) : ivs_->doorbell_fd(vector);
}

void backend::notify_vm2(unsigned vector)
{
	if (dev_)
		dev_->notify_vm2(vector);
	else
		ivs_->notify_vm2(vector);
}

std::uint32_t backend::sync_windows(const std::vector<file_window> &want)
{
	return dev_->sync_windows(want);
}

bool backend::windows_done(std::uint32_t seq) const
{
	return dev_->done(seq);
}

void backend::rewire_device()
{
	// The device's vectors and doorbells can be replaced at any time: VM2's
	// vector 1+q is VM1's kick fd of queue q, doorbell 1+q VM1's call fd,
	// each sent again whenever VM1 sets a new one.  No relay, no peers.
	if (!vm1_)
		return;
	if (dev_epoch_ != dev_->epoch()) {
		// A new connection got the current set in its setup.
		dev_epoch_ = dev_->epoch();
	}
	for (unsigned q = 0; q < vm1_->num_queues(); q++) {
		const vu::ring &v = vm1_->queue(q);
		const unsigned vec = VPCI_VEC_QUEUE(q);
		if (vec >= dev_->num_vectors())
			break;
		if (dev_kick_seq_[q] != v.kick_seq) {
			dev_kick_seq_[q] = v.kick_seq;
			dev_->set_vector(vec, v.kick ? v.kick.get() : -1);
			spdlog::info("notify: VM2 vector {} = {}", vec,
				     v.kick ? "VM1's kick of queue " + std::to_string(q)
					    : std::string("backend eventfd"));
		}
		if (dev_call_seq_[q] != v.call_seq) {
			dev_call_seq_[q] = v.call_seq;
			dev_->set_doorbell(vec, v.call ? v.call.get() : -1);
			spdlog::info("notify: VM2 doorbell {} = {}", vec,
				     v.call ? "VM1's call of queue " + std::to_string(q)
					    : std::string("backend eventfd"));
		}
		const std::uint16_t kick = v.kick ? VPCI_NOTIFY_DIRECT : VPCI_NOTIFY_NONE;
		const std::uint16_t call = v.call ? VPCI_NOTIFY_DIRECT : VPCI_NOTIFY_NONE;
		vm1_->set_notify_modes(q, kick, call);
	}
}

void backend::on_device_client()
{
	const std::uint64_t epoch = dev_->epoch();
	dev_->handle_client();
	if (dev_->epoch() != epoch)
		spdlog::info("vhost-pci device: VM2's QEMU went away");
	if (vm1_) {
		vm1_->on_windows_progress();
		sync_vm1_watch();
	}
}

void backend::queue_fds_changed(unsigned)
{
	// Nothing to do at once: rewire() runs at the end of every loop turn
	// and compares each queue's kick_seq/call_seq with what it wired.
}

static const char *mode_name(std::uint16_t m)
{
	return m == VPCI_NOTIFY_DIRECT ? "direct" : m == VPCI_NOTIFY_RELAY ? "relay" : "none";
}

/** True if @p fd has data to read right now. */
static bool input_pending(int fd)
{
	pollfd p{fd, POLLIN, 0};
	return fd >= 0 && ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

void backend::rewire()
{
	try {
		if (dev_)
			return rewire_device();
		wire_own_vectors();
		if (!vm1_)
			return;
		for (unsigned q = 0; q < vm1_->num_queues(); q++)
			wire_kick(q);
		// VM1's QEMU sends SET_VRING_CALL for each queue back to back:
		// while more of its messages wait (and are going to be read),
		// hold back peer 0's re-announcement and the mode publication so
		// a burst costs one "peer 0 gone" instead of one per queue.  A
		// doorbell meanwhile is relayed.  Bounded: a steady stream (IOTLB
		// traffic in strict mode) must not hold it back for long.
		const auto now = std::chrono::steady_clock::now();
		if (reannounce_peer_ && ivs_->client_connected() && !vm1_->busy() &&
		    input_pending(vm1_->fd())) {
			if (!holding_since_)
				holding_since_ = now;
			if (now - *holding_since_ < std::chrono::milliseconds(50))
				return;
		}
		holding_since_.reset();
		if (call_epoch_ != ivs_->epoch()) {
			// A new (or no) VM2: it knows peer 0 only.
			call_epoch_ = ivs_->epoch();
			reset_call_peer();
		}
		wire_peer_vectors();
		for (unsigned q = 0; q < vm1_->num_queues(); q++)
			wire_stale_call(q);
		for (unsigned q = 0; q < vm1_->num_queues(); q++) {
			const vu::ring &v = vm1_->queue(q);
			std::uint16_t call = VPCI_NOTIFY_NONE;
			if (v.call)
				call = ivs_->client_connected() &&
						       wire_[q].announced_call_seq == v.call_seq
					       ? VPCI_NOTIFY_DIRECT
					       : VPCI_NOTIFY_RELAY;
			if (call != vm1_->notify(q).call_mode)
				spdlog::info("notify: queue {} call {}", q, mode_name(call));
			vm1_->set_notify_modes(q, wire_[q].kick, call);
		}
	} catch (const std::system_error &e) {
		spdlog::error("notify: rewiring failed: {}", e.what());
	}
}

void backend::wire_own_vectors()
{
	// VM2's own vectors can only be added, one message per next vector.
	// Vector VPCI_VEC_QUEUE(q) is VM1's kick fd of queue q as soon as it is
	// known; a missing lower kick holds the higher ones back (a count
	// pending on a kick eventfd is delivered once QEMU attaches it) unless
	// a higher queue is already live: then the gap gets a backend eventfd
	// and that queue is relayed once its kick arrives.
	const unsigned nvec = ivs_->num_vectors();
	while (ivs_->client_connected() && ivs_->own_vectors_sent() < nvec) {
		const unsigned v = ivs_->own_vectors_sent(), q = v - 1;
		if (vm1_ && vm1_->queue(q).kick) {
			if (!ivs_->add_own_vector(vm1_->queue(q).kick.get()))
				return;
			spdlog::info("notify: VM2 vector {} = VM1's kick of queue {}", v, q);
			continue;
		}
		bool fill = !vm1_; // no front-end: no kick will ever come
		for (unsigned h = q + 1; vm1_ && !fill && h < vm1_->num_queues(); h++)
			fill = vm1_->queue(h).kick && vm1_->queue(h).live();
		if (!fill)
			return;
		unique_fd placeholder = make_eventfd();
		if (!ivs_->add_own_vector(placeholder.get()))
			return;
		if (vm1_)
			spdlog::info("notify: VM2 vector {} = backend eventfd (queue {} has no kick "
				     "yet, a higher queue is live); queue {} will be relayed",
				     v, q, q);
	}
}

void backend::wire_peer_vectors()
{
	// Peer 0's vector VPCI_VEC_QUEUE(q) is VM1's call fd of queue q when
	// known, else the backend's doorbell eventfd; vector 0 is always the
	// backend's doorbell.  A change is announced as "peer 0 gone" + all
	// vectors again.
	const unsigned nq = vm1_->num_queues();
	bool differs = false;
	for (unsigned q = 0; q < nq; q++) {
		const vu::ring &v = vm1_->queue(q);
		queue_wiring &w = wire_[q];
		const std::uint64_t want = v.call ? v.call_seq : 0;
		if (w.announced_call_seq == want)
			continue;
		// QEMU often sends the same eventfd again: nothing to re-wire.
		const int fd = v.call ? v.call.get() : ivs_->doorbell_fd(VPCI_VEC_QUEUE(q));
		if (same_file(fd, ivs_->peer_fd(call_peer_, VPCI_VEC_QUEUE(q)))) {
			w.announced_call_seq = want;
			continue;
		}
		differs = true;
	}
	if (!differs) {
		if (probe_peer_) {
			// VM1 went back to the fds VM2 already rings: no new peer.
			unwatch(probe_fd_.get());
			probe_fd_.reset();
			probe_peer_ = 0;
			publish_call_peer();
		}
		return;
	}
	std::vector<int> fds;
	for (unsigned vec = 0; vec < ivs_->num_vectors(); vec++) {
		const unsigned q = vec - 1;
		if (vec != VPCI_VEC_CONFIG && q < nq && vm1_->queue(q).call)
			fds.push_back(vm1_->queue(q).call.get());
		else
			fds.push_back(ivs_->doorbell_fd(vec));
	}
	if (ivs_->client_connected() && !reannounce_peer_) {
		start_call_peer(fds);
		return;
	}
	ivs_->set_peer_vectors(fds);
	for (unsigned q = 0; q < nq; q++)
		wire_[q].announced_call_seq = vm1_->queue(q).call ? vm1_->queue(q).call_seq : 0;
}

void backend::wire_stale_call(unsigned q)
{
	// VM2 has one of VM1's call fds as peer 0's vector, but VM1 has since
	// set another (and peer 0 was not re-announced): VM2 still rings the
	// old eventfd, so read it and write VM1's current call fd.  If VM1's
	// QEMU still reads the old one too, whoever reads first interrupts VM1.
	queue_wiring &w = wire_[q];
	const vu::ring &v = vm1_->queue(q);
	const unsigned vec = VPCI_VEC_QUEUE(q);
	const bool need = ivs_->client_connected() && w.announced_call_seq != 0 &&
			  w.announced_call_seq != v.call_seq;
	if (need && !w.stale_call) {
		w.stale_call = dup_fd(ivs_->peer_fd(call_peer_, vec), "announced call fd");
		watch(w.stale_call.get(), tag::stale_call);
		spdlog::info("notify: queue {}: VM2 rings VM1's previous call eventfd, relaying", q);
	} else if (!need && w.stale_call) {
		unwatch(w.stale_call.get());
		w.stale_call.reset();
	}
}

void backend::start_call_peer(const std::vector<int> &fds)
{
	// Already waiting for a peer with exactly these call fds?
	bool same = probe_peer_ != 0;
	for (unsigned q = 0; same && q < vm1_->num_queues(); q++)
		same = probe_seq_[q] == (vm1_->queue(q).call ? vm1_->queue(q).call_seq : 0);
	if (same)
		return;
	if (probe_fd_)
		unwatch(probe_fd_.get());
	probe_fd_ = make_eventfd();
	std::vector<int> with_probe = fds;
	with_probe[VPCI_VEC_CONFIG] = probe_fd_.get();
	probe_peer_ = ivs_->add_peer(with_probe);
	if (!probe_peer_) {
		probe_fd_.reset();
		return;
	}
	watch(probe_fd_.get(), tag::call_probe);
	for (unsigned q = 0; q < vm1_->num_queues(); q++)
		probe_seq_[q] = vm1_->queue(q).call ? vm1_->queue(q).call_seq : 0;
	// A new VM2 gets the current set as peer 0 at connect.
	ivs_->set_peer_vectors_for_next_client(fds);
	spdlog::info("notify: VM1's call fds announced as peer {}; waiting for VM2 to ring it",
		     probe_peer_);
	publish_call_peer();
}

void backend::on_call_probe()
{
	if (!eventfd_consume(probe_fd_.get()) || !probe_peer_)
		return;
	unwatch(probe_fd_.get());
	probe_fd_.reset();
	call_peer_ = probe_peer_;
	probe_peer_ = 0;
	for (unsigned q = 0; vm1_ && q < vm1_->num_queues(); q++)
		wire_[q].announced_call_seq = probe_seq_[q];
	spdlog::info("notify: VM2 attached peer {}: VM2 rings VM1's call fds directly", call_peer_);
	publish_call_peer();
}

void backend::publish_call_peer()
{
	auto &b = ctrl_.raw().backend;
	const std::uint32_t st = le_load(b.status);
	le_store(b.call_peer_id, call_peer_);
	le_store(b.call_peer_probe, probe_peer_);
	le_store(b.status, call_peer_ ? st | VPCI_BS_CALL_PEER : st & ~VPCI_BS_CALL_PEER);
	probe_timer_.arm(std::chrono::steady_clock::now() + probe_nudge_every);
	ctrl_.bump_generation();
	ivs_->notify_vm2(VPCI_VEC_CONFIG);
}

void backend::reset_call_peer()
{
	if (probe_fd_)
		unwatch(probe_fd_.get());
	probe_fd_.reset();
	const bool had = call_peer_ || probe_peer_;
	call_peer_ = 0;
	probe_peer_ = 0;
	if (had)
		publish_call_peer();
}

void backend::on_stale_call(int fd)
{
	for (unsigned q = 0; q < VPCI_MAX_QUEUES; q++) {
		if (wire_[q].stale_call.get() != fd)
			continue;
		if (eventfd_consume(fd) && vm1_->queue(q).call) {
			eventfd_signal(vm1_->queue(q).call.get());
			vm1_->notify(q).calls_relayed++;
		}
		return;
	}
}

void backend::wire_kick(unsigned q)
{
	const vu::ring &v = vm1_->queue(q);
	queue_wiring &w = wire_[q];
	const unsigned vec = VPCI_VEC_QUEUE(q);
	const bool sent = vec < ivs_->own_vectors_sent();
	if (w.kick_seq == v.kick_seq && w.epoch == ivs_->epoch() && w.vec_sent == sent)
		return;
	w.kick_seq = v.kick_seq;
	w.epoch = ivs_->epoch();
	w.vec_sent = sent;

	// Without VM2, or before its vector is sent, a kick stays pending on
	// VM1's eventfd.  Once sent, the vector is VM1's kick (direct) or,
	// after VM1 replaced its kick fd, the relay writes the fd VM2 has.
	std::uint16_t mode = VPCI_NOTIFY_NONE;
	if (v.kick && sent)
		mode = same_file(v.kick.get(), ivs_->own_vector_fd(vec)) ? VPCI_NOTIFY_DIRECT
									  : VPCI_NOTIFY_RELAY;
	if (mode == VPCI_NOTIFY_RELAY) {
		if (!w.relay_kick || !same_file(w.relay_kick.get(), v.kick.get())) {
			if (w.relay_kick)
				unwatch(w.relay_kick.get());
			w.relay_kick = dup_fd(v.kick.get(), "kick fd");
			watch(w.relay_kick.get(), tag::kick);
		}
	} else if (w.relay_kick) {
		unwatch(w.relay_kick.get());
		w.relay_kick.reset();
	}
	if (mode != w.kick)
		spdlog::info("notify: queue {} kick {}", q, mode_name(mode));
	w.kick = mode;
}

void backend::on_kick(int fd)
{
	for (unsigned q = 0; q < VPCI_MAX_QUEUES; q++) {
		if (wire_[q].relay_kick.get() != fd)
			continue;
		if (eventfd_consume(fd)) {
			vm1_->notify(q).kicks_relayed++;
			ivs_->notify_vm2(VPCI_VEC_QUEUE(q));
		}
		return;
	}
}

void backend::on_queue_doorbell(int fd)
{
	for (unsigned v = 1; v < num_vectors(); v++) {
		if (doorbell_fd(v) != fd)
			continue;
		// VM2 rang a backend eventfd for a queue: VM1's call fd was not
		// (yet) peer 0's vector when VM2 rang.
		if (eventfd_consume(fd) && vm1_ && v - 1 < vm1_->num_queues() &&
		    vm1_->queue(v - 1).call) {
			eventfd_signal(vm1_->queue(v - 1).call.get());
			vm1_->notify(v - 1).calls_relayed++;
		}
		return;
	}
}

void backend::sync_vm1_watch()
{
	if (!vm1_)
		return;
	const int fd = vm1_->fd();
	if (fd != vu_watched_fd_) {
		vu_watched_fd_ = fd;
		vu_paused_ = false;
		if (fd >= 0)
			watch(fd, tag::vu_client);
	}
	if (fd >= 0 && vm1_->busy() != vu_paused_) {
		// Paused (VM1's reply waits for VM2): no input is read, but a
		// hang-up is reported once (on_vm1_hangup()), not on every wait
		// as with an empty mask, which spun the loop at 100% until the
		// wait ended.  Resumed, data that came meanwhile is reported
		// (level-triggered).
		vu_paused_ = vm1_->busy();
		if (vu_paused_)
			watches_.at(fd).pause();
		else
			watches_.at(fd).resume();
	}
}

void backend::watch(int fd, tag t)
{
	event_loop::error_callback on_error;
	if (t == tag::ctl_listen || t == tag::vu_listen || t == tag::ivs_listen ||
	    t == tag::dev_listen)
		on_error = [this, fd](const std::exception &) { rest_listener(fd); };
	else if (t == tag::ctl_client)
		// Its state is unknown after a throw: it goes, the others stay
		// (the loop logged and counted the error).
		on_error = [this, fd](const std::exception &) { drop_ctl_client(fd); };
	// A number a closed fd left may be taken again: the new watch replaces
	// the stale one (event_loop keeps the new fd in its set).
	watches_.insert_or_assign(
		fd, loop_.add(
			    fd, EPOLLIN,
			    [this, t, fd](std::uint32_t ev) {
				    // A paused watch reports a hang-up only (no EPOLLIN).
				    auto it = watches_.find(fd);
				    if (!(ev & EPOLLIN) && it != watches_.end() &&
					it->second.paused()) {
					    if (t == tag::vu_client)
						    on_vm1_hangup(fd);
					    return; // a resting listener: its resume reports
				    }
				    dispatch(t, fd);
			    },
			    std::move(on_error)));
}

void backend::on_vm1_hangup(int fd)
{
	if (!vm1_ || fd != vm1_->fd())
		return;
	// VM1's QEMU went away while its reply waits for VM2's driver: the
	// session ends now, not when the wait times out.  What a disconnect
	// does, it does here (session_reset(): the pending reply is dropped,
	// the driver's IOTLB flushed, VM2's windows follow), so VM2 can still
	// reach nothing VM1 invalidated.  Unwatched before the fd closes: its
	// number may come back.
	unwatch(fd);
	vu_watched_fd_ = -1;
	vu_paused_ = false;
	vm1_->disconnect("hang-up while a reply was pending");
	sync_vm1_watch();
}

void backend::unwatch(int fd)
{
	watches_.erase(fd);
}

void backend::handle_signals()
{
	signals_.emplace();
	watch(signals_->fd(), tag::signal);
}

void backend::run()
{
	while (!stopping_)
		run_once(-1);
}

void backend::run_once(int timeout_ms)
{
	if (!ctl_more_.empty())
		timeout_ms = 0; // requests already read wait for their turn
	const std::set<int> more = ctl_more_;
	ctl_served_.clear();
	loop_.run_once(timeout_ms);
	// Clients whose budget ran out with whole requests left: their next
	// share (the socket may have nothing new to wake them).
	for (int fd : more) {
		if (stopping_ || ctl_served_.count(fd))
			continue;
		try {
			on_ctl_client(fd);
		} catch (const std::exception &e) {
			handler_errors_++;
			spdlog::error("control client fd {}: {}", fd, e.what());
			drop_ctl_client(fd);
		}
	}
	if (vm1_) {
		vm1_->check_timeout();
		sync_vm1_watch();
		// The session's next deadline wakes the loop; check_timeout()
		// above runs after every wait.
		if (auto dl = vm1_->deadline())
			vm1_timer_.arm(*dl);
		else
			vm1_timer_.disarm();
	}
	rewire();
}

void backend::rest_listener(int fd)
{
	auto it = watches_.find(fd);
	if (it == watches_.end() || it->second.paused())
		return; // not watched (any more): nothing would wake us
	it->second.pause();
	resting_.push_back(fd);
	rest_timer_.arm(std::chrono::steady_clock::now() + listener_rest);
}

void backend::end_rest()
{
	for (int fd : resting_)
		if (auto it = watches_.find(fd); it != watches_.end())
			it->second.resume();
	resting_.clear();
}

void backend::nudge_probe()
{
	// The driver's probe ring is lost if it beat QEMU attaching the peer:
	// raise the config vector again until it comes.
	if (!probe_peer_)
		return;
	probe_timer_.arm(std::chrono::steady_clock::now() + probe_nudge_every);
	ctrl_.bump_generation();
	ivs_->notify_vm2(VPCI_VEC_CONFIG);
}

void backend::dispatch(tag t, int fd)
{
	switch (t) {
	case tag::dev_listen:
		if (dev_->handle_listen())
			watch(dev_->client_fd(), tag::dev_client);
		if (vm1_) {
			vm1_->on_windows_progress();
			sync_vm1_watch();
		}
		break;
	case tag::dev_client:
		if (fd == dev_->client_fd())
			on_device_client();
		break;
	case tag::ivs_listen:
		if (ivs_->handle_listen())
			watch(ivs_->client_fd(), tag::ivs_client);
		break;
	case tag::ivs_client:
		// A stale event for a socket already replaced is harmless:
		// handle_client() only reads the current client.
		if (fd == ivs_->client_fd())
			ivs_->handle_client();
		break;
	case tag::doorbell_config:
		on_config_doorbell();
		break;
	case tag::ctl_listen:
		for (unsigned i = 0; i < accept_budget; i++) {
			auto s = ctl_listener_->accept();
			if (!s)
				break;
			int cfd = s->get();
			if (ctl_clients_.size() >= max_ctl_clients) {
				static constexpr char busy[] =
					"{\"ok\": false, \"error\": \"too many control clients\"}\n";
				(void)!::send(cfd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
				continue; // closed here
			}
			ctl_clients_.emplace(cfd, control_conn{std::move(*s)});
			watch(cfd, tag::ctl_client);
			spdlog::debug("control: client fd {} connected", cfd);
		}
		break;
	case tag::ctl_client:
		on_ctl_client(fd);
		break;
	case tag::vu_listen:
		for (unsigned i = 0; i < accept_budget; i++) {
			auto s = vu_listener_->accept();
			if (!s)
				break;
			// Non-blocking: a message arriving in pieces waits in its
			// connection.  A second one is refused (closed).
			vm1_->attach(std::move(*s));
		}
		sync_vm1_watch();
		break;
	case tag::vu_client:
		if (fd == vm1_->fd()) {
			vm1_->handle_readable();
			sync_vm1_watch();
		}
		break;
	case tag::kick:
		on_kick(fd);
		break;
	case tag::doorbell_queue:
		on_queue_doorbell(fd);
		break;
	case tag::stale_call:
		on_stale_call(fd);
		break;
	case tag::call_probe:
		on_call_probe();
		break;
	case tag::signal:
		if (auto sig = signals_->take()) {
			spdlog::info("received {}, shutting down", strsignal(*sig));
			stopping_ = true;
		}
		break;
	}
}

/** User + system CPU time of this process (getrusage(RUSAGE_SELF)). */
static double cpu_seconds()
{
	rusage ru{};
	if (::getrusage(RUSAGE_SELF, &ru) < 0)
		throw_errno("getrusage(RUSAGE_SELF)");
	auto sec = [](const timeval &t) {
		return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
	};
	return sec(ru.ru_utime) + sec(ru.ru_stime);
}

static std::string ds_status_string(std::uint32_t s)
{
	std::string r = fmt::format("{:#x}", s);
	if (s & VPCI_DS_BOUND)
		r += " bound";
	if (s & VPCI_DS_UP)
		r += " up";
	return r;
}

void backend::on_config_doorbell()
{
	if (!eventfd_consume(doorbell_fd(VPCI_VEC_CONFIG)))
		return;
	const driver_state d = ctrl_.read_driver();
	const driver_state &o = last_driver_;
	if (d.status != o.status)
		spdlog::info("driver: status {} -> {}", ds_status_string(o.status),
			     ds_status_string(d.status));
	if (d.device_features != o.device_features)
		spdlog::info("driver: device features {:#x} -> {:#x}", o.device_features,
			     d.device_features);
	if (d.mtu != o.mtu)
		spdlog::info("driver: mtu {} -> {}", o.mtu, d.mtu);
	if (d.generation_seen != o.generation_seen)
		spdlog::debug("driver: generation seen {} (backend at {})", d.generation_seen,
			      ctrl_.generation());
	last_driver_ = d;
	if (vm1_) {
		vm1_->on_driver_doorbell();
		sync_vm1_watch();
	}
}

void backend::set_link(bool up)
{
	ctrl_.set_link(up);
	spdlog::info("link {} (generation {})", up ? "up" : "down", ctrl_.generation());
	notify_vm2(VPCI_VEC_CONFIG);
}

namespace {

// The reply to `status` (docs/backend.md; selftests/, scripts/ and
// vpci-ctl read it by these names).
struct driver_status {
	std::uint32_t status = 0;
	bool bound = false, up = false;
	std::uint64_t features = 0;
	std::uint16_t mtu = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(driver_status, status, bound, up, features, mtu)

struct notify_status {
	std::uint64_t own_vectors_sent = 0, peer_reannouncements = 0;
	std::uint16_t call_peer = 0, call_peer_probe = 0;
	bool reannounce_peer = false;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(notify_status, own_vectors_sent, peer_reannouncements,
				   call_peer, call_peer_probe, reannounce_peer)

/** Always there; "frontend", "iotlb" and "device" are added when they exist. */
struct status_reply {
	bool ok = true;
	bool vm2_connected = false;
	std::string vm2_device;
	int client_id = 0;
	std::string link;
	std::uint32_t generation = 0, backend_status = 0;
	driver_status driver;
	std::string mem_file;
	std::uint64_t file_size = 0, peer_mem_size = 0;
	double cpu_seconds = 0;
	std::uint64_t handler_errors = 0;
	notify_status notify;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(status_reply, ok, vm2_connected, vm2_device, client_id, link,
				   generation, backend_status, driver, mem_file, file_size,
				   peer_mem_size, cpu_seconds, handler_errors, notify)

/** VM2's vhost-pci device, beside its device_server_stats. */
struct device_status {
	bool connected = false, ready = false;
	std::uint64_t windows = 0;
	std::vector<file_window> window_list;
	std::uint64_t mapped_bytes = 0, max_windows = 0, outstanding = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(device_status, connected, ready, windows, window_list,
				   mapped_bytes, max_windows, outstanding)

} // namespace

nlohmann::json backend::status() const
{
	const driver_state d = ctrl_.read_driver();
	status_reply s;
	s.vm2_connected = vm2_connected();
	s.vm2_device = dev_ ? "vhost-pci" : "ivshmem";
	s.client_id = dev_ ? (dev_->client_connected() ? 1 : 0) : ivs_->client_id();
	s.link = ctrl_.link_up() ? "up" : "down";
	s.generation = ctrl_.generation();
	s.backend_status = le_load(ctrl_.raw().backend.status);
	s.driver = {d.status, d.bound(), d.up(), d.device_features, d.mtu};
	s.mem_file = shm_.path();
	s.file_size = shm_.file_size();
	s.peer_mem_size = shm_.ram_size();
	s.cpu_seconds = cpu_seconds();
	s.handler_errors = handler_errors_ + loop_.errors();
	s.notify = {dev_ ? dev_->num_vectors() : ivs_->own_vectors_sent(),
		    dev_ ? 0 : ivs_->peer_reannouncements(), call_peer_, probe_peer_,
		    reannounce_peer_};
	nlohmann::json r = s;
	// The parts present only with VM1's socket or the vhost-pci device.
	if (vm1_) {
		// VM1's session; "frontend" is what selftests/ and scripts/ read.
		r["frontend"] = vm1_->status();
		r["iotlb"] = vm1_->counters();
		r["iotlb"]["shadow_entries"] = vm1_->shadow().size();
	}
	if (dev_) {
		device_status ds;
		// What VM2's BAR2 shows of VM1, and how: the first status_windows
		// (one reply line stays small; max_windows may be 65536).
		for (const file_window &w : dev_->windows()) {
			ds.mapped_bytes += w.size;
			if (ds.window_list.size() < status_windows)
				ds.window_list.push_back(w);
		}
		ds.connected = dev_->client_connected();
		ds.ready = dev_->ready();
		ds.windows = dev_->windows().size();
		ds.max_windows = dev_->max_windows();
		ds.outstanding = dev_->outstanding();
		nlohmann::json dj = dev_->stats(); // maps, unmaps, errors, connects, the latencies
		dj.update(nlohmann::json(ds));
		r["device"] = std::move(dj);
	}
	return r;
}

std::string backend::handle_control_line(const std::string &line)
{
	return control_request(line, *this);
}

void backend::drop_ctl_client(int fd)
{
	spdlog::warn("control: client fd {} dropped after a failure", fd);
	ctl_more_.erase(fd);
	unwatch(fd); // before the fd closes: its number may come back
	ctl_clients_.erase(fd);
}

void backend::on_ctl_client(int fd)
{
	auto it = ctl_clients_.find(fd);
	if (it == ctl_clients_.end())
		return;
	ctl_more_.erase(fd);
	ctl_served_.insert(fd);
	switch (it->second.serve(*this)) {
	case control_conn::state::idle:
		break;
	case control_conn::state::more:
		ctl_more_.insert(fd); // the rest next turn
		break;
	case control_conn::state::closed:
		spdlog::debug("control: client fd {} closed", fd);
		unwatch(fd); // before the fd closes: its number may come back
		ctl_clients_.erase(it);
		break;
	}
}

} // namespace vpci
