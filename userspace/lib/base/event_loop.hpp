// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * One epoll loop for a daemon: fds watched through handles that unwatch
 * when they go, timers, and signals as an fd.  Nothing in it blocks but the
 * wait itself; a callback that throws is isolated (counted, logged, its
 * handle told), never the end of the loop.
 */
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>

#include <signal.h>
#include <sys/epoll.h>

#include "fd.hpp"

namespace vpci {

class event_loop {
public:
	using clock = std::chrono::steady_clock;
	/** Called with the epoll events that fired. */
	using callback = std::function<void(std::uint32_t events)>;
	/** Called when the handle's callback threw (after the loop counted it). */
	using error_callback = std::function<void(const std::exception &)>;

	/**
	 * What a watch and a timer share: the loop and an id, moved (the
	 * moved-from handle owns nothing), released by @p Handle::reset().
	 */
	template <typename Handle> class handle {
	public:
		handle(const handle &) = delete;
		handle &operator=(const handle &) = delete;
		explicit operator bool() const noexcept { return loop_ != nullptr; }

	protected:
		handle() = default;
		handle(event_loop *l, std::uint64_t id) noexcept : loop_(l), id_(id) {}
		handle(handle &&o) noexcept : loop_(o.loop_), id_(o.id_) { o.loop_ = nullptr; }
		handle &operator=(handle &&o) noexcept
		{
			if (this != &o) {
				static_cast<Handle *>(this)->reset();
				loop_ = o.loop_;
				id_ = o.id_;
				o.loop_ = nullptr;
			}
			return *this;
		}
		~handle() = default;
		event_loop *loop_ = nullptr;
		std::uint64_t id_ = 0;
	};

	/** What a paused watch still reports (its callback gets only these bits). */
	static constexpr std::uint32_t hangup_events = EPOLLHUP | EPOLLRDHUP | EPOLLERR;

	/**
	 * An fd the loop watches, for as long as the handle lives.  Paused, it
	 * reports no input, but a hang-up once (EPOLLRDHUP | EPOLLONESHOT: an
	 * empty mask would report EPOLLHUP on every wait and spin), so a peer
	 * that goes away while its socket waits is seen at once; the callback
	 * then gets hangup_events bits only, never EPOLLIN.  Resumed, what came
	 * meanwhile is reported (level-triggered).
	 */
	class watch : public handle<watch> {
	public:
		watch() = default;
		watch(watch &&) noexcept = default;
		watch &operator=(watch &&) noexcept = default;
		~watch() { reset(); }

		void pause();
		void resume();
		bool paused() const;
		/** Stop watching (also what the destructor does). */
		void reset() noexcept;

	private:
		friend class event_loop;
		watch(event_loop *l, std::uint64_t id) noexcept : handle(l, id) {}
	};

	/** A deadline the loop wakes for; disarmed when the handle goes. */
	class timer : public handle<timer> {
	public:
		timer() = default;
		timer(timer &&) noexcept = default;
		timer &operator=(timer &&) noexcept = default;
		~timer() { reset(); }

		/** Run the callback once at @p when (replaces an earlier arming). */
		void arm(clock::time_point when);
		void disarm();
		bool armed() const;
		void reset() noexcept;

	private:
		friend class event_loop;
		timer(event_loop *l, std::uint64_t id) noexcept : handle(l, id) {}
	};

	event_loop();
	event_loop(const event_loop &) = delete;
	event_loop &operator=(const event_loop &) = delete;
	/** Handles must not outlive the loop. */
	~event_loop() = default;

	/** Watch @p fd for @p events (EPOLLIN...); throws naming epoll_ctl. */
	[[nodiscard]] watch add(int fd, std::uint32_t events, callback cb,
				error_callback on_error = {});
	/** A timer, disarmed. */
	[[nodiscard]] timer add_timer(std::function<void()> cb);

	/**
	 * Wait for events up to @p timeout_ms (-1: no limit), shortened to the
	 * earliest armed timer, then run the callbacks of what is ready and of
	 * the timers that expired.  Returns the callbacks run.
	 */
	unsigned run_once(int timeout_ms);
	/** Callbacks that threw so far. */
	std::uint64_t errors() const noexcept { return errors_; }

private:
	/*
	 * The callbacks are shared: a callback may drop its own handle, and
	 * the loop keeps them alive through the call by a reference count
	 * instead of copying each std::function per event.
	 */
	struct callbacks {
		callback cb;
		error_callback on_error;
	};
	struct entry {
		int fd;
		std::uint32_t events;
		bool paused = false;
		std::shared_ptr<const callbacks> fns;
	};
	/** Ask epoll for @p events of entry @p id (EPOLL_CTL_MOD); throws naming it. */
	void modify(std::uint64_t id, const entry &e, std::uint32_t events);
	struct timer_entry {
		std::optional<clock::time_point> when;
		std::shared_ptr<const std::function<void()>> cb;
	};
	void unwatch(std::uint64_t id) noexcept;
	void set_paused(std::uint64_t id, bool paused);
	/** Run @p fn; a throw is counted, logged and given to @p on_error. */
	void isolate(const std::function<void()> &fn, const error_callback &on_error);

	unique_fd epoll_;
	std::uint64_t next_id_ = 1;
	std::map<std::uint64_t, entry> entries_;
	/**
	 * Which entry holds each fd number's registration in the epoll set:
	 * an entry whose fd was closed (the kernel dropped it) may share its
	 * number with a newer fd another entry watches.
	 */
	std::map<int, std::uint64_t> registered_;
	std::map<std::uint64_t, timer_entry> timers_;
	std::uint64_t errors_ = 0;
};

/**
 * Signals taken as an fd (signalfd): blocked for the thread that makes the
 * set (and the threads it starts later) while the object lives, the old
 * mask restored after unless one was taken (the process then shuts down on
 * it, and a repeated signal must not kill it halfway).  Every main handles
 * SIGINT and SIGTERM this way.
 */
class signal_set {
public:
	explicit signal_set(std::initializer_list<int> sigs = {SIGINT, SIGTERM});
	signal_set(const signal_set &) = delete;
	signal_set &operator=(const signal_set &) = delete;
	~signal_set();

	int fd() const noexcept { return fd_.get(); }
	/** The next signal that came, if any (non-blocking). */
	std::optional<int> take();
	/** Wait up to @p timeout_ms for one (-1: no limit). */
	std::optional<int> wait(int timeout_ms);

private:
	sigset_t set_{}, old_{};
	unique_fd fd_;
	bool taken_ = false;
};

} // namespace vpci
