// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "event_loop.hpp"

#include <cerrno>
#include <vector>

#include <pthread.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace vpci {

void event_loop::watch::pause()
{
	if (loop_)
		loop_->set_paused(id_, true);
}

void event_loop::watch::resume()
{
	if (loop_)
		loop_->set_paused(id_, false);
}

bool event_loop::watch::paused() const
{
	return loop_ && loop_->entries_.at(id_).paused;
}

void event_loop::watch::reset() noexcept
{
	if (loop_)
		loop_->unwatch(id_);
	loop_ = nullptr;
}

void event_loop::timer::arm(clock::time_point when)
{
	if (loop_)
		loop_->timers_.at(id_).when = when;
}

void event_loop::timer::disarm()
{
	if (loop_)
		loop_->timers_.at(id_).when.reset();
}

bool event_loop::timer::armed() const
{
	return loop_ && loop_->timers_.at(id_).when.has_value();
}

void event_loop::timer::reset() noexcept
{
	if (loop_)
		loop_->timers_.erase(id_);
	loop_ = nullptr;
}

event_loop::event_loop() : epoll_(make_epoll()) {}

event_loop::watch event_loop::add(int fd, std::uint32_t events, callback cb,
				  error_callback on_error)
{
	const std::uint64_t id = next_id_++;
	epoll_add(epoll_.get(), fd, events, id);
	registered_[fd] = id;
	entries_.emplace(id, entry{fd, events, false,
				   std::make_shared<const callbacks>(
					   callbacks{std::move(cb), std::move(on_error)})});
	return watch(this, id);
}

event_loop::timer event_loop::add_timer(std::function<void()> cb)
{
	const std::uint64_t id = next_id_++;
	timers_.emplace(id, timer_entry{std::nullopt, std::make_shared<const std::function<void()>>(
							     std::move(cb))});
	return timer(this, id);
}

void event_loop::unwatch(std::uint64_t id) noexcept
{
	auto it = entries_.find(id);
	if (it == entries_.end())
		return;
	const int fd = it->second.fd;
	entries_.erase(it);
	// The fd may be closed already (closing removed it from the set), and
	// its number taken by a newer fd another handle watches: that one
	// stays.
	auto r = registered_.find(fd);
	if (r == registered_.end() || r->second != id)
		return;
	registered_.erase(r);
	epoll_del(epoll_.get(), fd);
}

void event_loop::modify(std::uint64_t id, const entry &e, std::uint32_t events)
{
	// Not ours any more (closed, the number watched by a newer entry):
	// the kernel reports nothing for it.
	auto r = registered_.find(e.fd);
	if (r == registered_.end() || r->second != id)
		return;
	epoll_event ev{};
	ev.events = events;
	ev.data.u64 = id;
	if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, e.fd, &ev) == 0)
		return;
	if (errno == ENOENT || errno == EBADF) {
		registered_.erase(r); // closed: the kernel dropped it
		return;
	}
	throw_errno(fmt::format("epoll_ctl(MOD, fd {})", e.fd));
}

void event_loop::set_paused(std::uint64_t id, bool paused)
{
	entry &e = entries_.at(id);
	if (e.paused == paused)
		return;
	// Paused: in the set for a hang-up only, once (EPOLLHUP and EPOLLERR
	// are always reported; ONESHOT disarms the fd after the first).
	modify(id, e, paused ? EPOLLRDHUP | EPOLLONESHOT : e.events);
	e.paused = paused;
}

void event_loop::isolate(const std::function<void()> &fn, const error_callback &on_error)
{
	// One failing handler must not end a daemon others depend on: log it,
	// count it, and let its owner react (a listener that cannot accept
	// rests instead of waking the loop without end).
	try {
		fn();
	} catch (const std::exception &e) {
		errors_++;
		if (errors_ <= 10 || errors_ % 1000 == 0)
			spdlog::error("event handler failed ({} so far): {}", errors_, e.what());
		if (on_error) {
			try {
				on_error(e);
			} catch (const std::exception &e2) {
				spdlog::error("event handler's error path failed: {}", e2.what());
			}
		}
	}
}

unsigned event_loop::run_once(int timeout_ms)
{
	const auto now = clock::now();
	for (const auto &[id, t] : timers_) {
		if (!t.when)
			continue;
		const auto left =
			std::chrono::duration_cast<std::chrono::milliseconds>(*t.when - now).count() +
			(*t.when > now ? 1 : 0);
		const int ms = left < 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
		if (timeout_ms < 0 || ms < timeout_ms)
			timeout_ms = ms;
	}
	epoll_event evs[32];
	const int n = ::epoll_wait(epoll_.get(), evs, 32, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		throw_errno("epoll_wait()");
	}
	unsigned ran = 0;
	for (int i = 0; i < n; i++) {
		// Looked up afresh: an earlier callback may have dropped it (a
		// stale event for a handle that is gone is skipped).
		auto it = entries_.find(evs[i].data.u64);
		if (it == entries_.end())
			continue;
		std::uint32_t ev = evs[i].events;
		// Paused: a hang-up only (the event may also have been collected
		// before an earlier callback paused it).
		if (it->second.paused && !(ev &= hangup_events))
			continue;
		// Held: the callback may drop its own handle.
		const std::shared_ptr<const callbacks> fns = it->second.fns;
		isolate([&] { fns->cb(ev); }, fns->on_error);
		ran++;
	}
	const auto after = clock::now();
	std::vector<std::uint64_t> due;
	for (const auto &[id, t] : timers_)
		if (t.when && *t.when <= after)
			due.push_back(id);
	for (std::uint64_t id : due) {
		auto it = timers_.find(id);
		if (it == timers_.end() || !it->second.when || *it->second.when > after)
			continue;
		it->second.when.reset(); // one shot; the callback may arm it again
		const std::shared_ptr<const std::function<void()>> cb = it->second.cb;
		isolate(*cb, {});
		ran++;
	}
	return ran;
}

signal_set::signal_set(std::initializer_list<int> sigs)
{
	sigemptyset(&set_);
	for (int s : sigs)
		sigaddset(&set_, s);
	if (int err = pthread_sigmask(SIG_BLOCK, &set_, &old_))
		throw std::system_error(err, std::generic_category(), "pthread_sigmask(SIG_BLOCK)");
	fd_.reset(::signalfd(-1, &set_, SFD_CLOEXEC | SFD_NONBLOCK));
	if (!fd_) {
		const int err = errno;
		pthread_sigmask(SIG_SETMASK, &old_, nullptr);
		throw std::system_error(err, std::generic_category(), "signalfd");
	}
}

signal_set::~signal_set()
{
	fd_.reset();
	// After a signal was taken the process is shutting down on it: a
	// second one (a supervisor repeating itself) must not kill it with
	// the default action halfway through.
	if (!taken_)
		pthread_sigmask(SIG_SETMASK, &old_, nullptr);
}

std::optional<int> signal_set::take()
{
	signalfd_siginfo si;
	const ssize_t n = ::read(fd_.get(), &si, sizeof(si));
	if (n == sizeof(si)) {
		taken_ = true;
		return static_cast<int>(si.ssi_signo);
	}
	if (n < 0 && errno != EAGAIN && errno != EINTR)
		throw_errno("read(signalfd)");
	return std::nullopt;
}

std::optional<int> signal_set::wait(int timeout_ms)
{
	pollfd p{fd_.get(), POLLIN, 0};
	const int n = ::poll(&p, 1, timeout_ms);
	if (n < 0 && errno != EINTR)
		throw_errno("poll(signalfd)");
	return n > 0 ? take() : std::nullopt;
}

} // namespace vpci
