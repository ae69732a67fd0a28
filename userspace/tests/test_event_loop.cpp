// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The base library's event loop (lib/base/event_loop.hpp): handles, timers,
// isolation of a failing callback, signals as an fd.
#include <chrono>
#include <csignal>
#include <future>
#include <stdexcept>
#include <string>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "event_loop.hpp"
#include "fd.hpp"

using namespace vpci;
using namespace std::chrono_literals;

namespace {

TEST(EventLoop, WatchFiresUntilItsHandleGoes)
{
	event_loop loop;
	unique_fd ev = make_eventfd();
	int fired = 0;
	{
		event_loop::watch w = loop.add(ev.get(), EPOLLIN, [&](std::uint32_t) {
			fired++;
			(void)eventfd_consume(ev.get());
		});
		eventfd_signal(ev.get());
		EXPECT_EQ(loop.run_once(100), 1u);
		EXPECT_EQ(fired, 1);
	}
	eventfd_signal(ev.get());
	EXPECT_EQ(loop.run_once(20), 0u) << "a dropped handle still fired";
	EXPECT_EQ(fired, 1);
}

// A callback may drop its own handle (a client that hung up, a one-shot
// timer that is done): the loop keeps what it runs alive through the call
// (the sanitizer build sees a use after free otherwise), and a handle moved
// before keeps working from its new place.
TEST(EventLoop, CallbackMayDropItsOwnHandle)
{
	event_loop loop;
	unique_fd ev = make_eventfd();
	std::string seen;
	event_loop::watch w;
	event_loop::timer t;
	{
		event_loop::watch first = loop.add(ev.get(), EPOLLIN, [&, tag = std::string(64, 'w')](
								      std::uint32_t) {
			w.reset(); // the handle of this very callback
			seen += tag.substr(0, 1);
		});
		w = std::move(first);
		EXPECT_FALSE(first) << "a moved-from handle owns nothing";
	}
	t = loop.add_timer([&, tag = std::string(64, 't')] {
		t = event_loop::timer(); // assigning over it drops it
		seen += tag.substr(0, 1);
	});
	t.arm(event_loop::clock::now());
	eventfd_signal(ev.get());
	EXPECT_EQ(loop.run_once(100), 2u);
	EXPECT_EQ(seen, "wt");
	EXPECT_FALSE(w);
	EXPECT_FALSE(t);
	EXPECT_EQ(loop.run_once(20), 0u) << "both are gone";
}

// A paused socket reports no input, but a peer's hang-up once (so its owner
// can end a session at once), and then nothing more: an empty epoll mask
// would report EPOLLHUP on every wait and spin.
TEST(EventLoop, PausedSocketReportsAHangUpOnceWithoutSpinning)
{
	event_loop loop;
	int sv[2];
	ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	unique_fd mine(sv[0]), peer(sv[1]);
	int fired = 0;
	std::uint32_t got = 0;
	event_loop::watch w = loop.add(mine.get(), EPOLLIN, [&](std::uint32_t ev) {
		fired++;
		got = ev;
	});
	w.pause();
	ASSERT_EQ(::write(peer.get(), "x", 1), 1);
	auto t0 = std::chrono::steady_clock::now();
	EXPECT_EQ(loop.run_once(50), 0u) << "input on a paused socket";
	EXPECT_GE(std::chrono::steady_clock::now() - t0, 45ms) << "woken while paused";
	peer.reset();
	EXPECT_EQ(loop.run_once(1000), 1u) << "the hang-up is reported";
	EXPECT_EQ(fired, 1);
	EXPECT_FALSE(got & EPOLLIN) << "a paused watch never reports input";
	EXPECT_TRUE(got & (EPOLLHUP | EPOLLRDHUP));
	t0 = std::chrono::steady_clock::now();
	for (int i = 0; i < 5; i++)
		EXPECT_EQ(loop.run_once(10), 0u) << "reported again";
	EXPECT_GE(std::chrono::steady_clock::now() - t0, 45ms) << "the loop spins";
	EXPECT_EQ(fired, 1);
	w.resume(); // what came meanwhile is reported
	EXPECT_EQ(loop.run_once(100), 1u);
	EXPECT_EQ(fired, 2);
	EXPECT_TRUE(got & EPOLLIN);
}

TEST(EventLoop, FailingCallbackIsCountedAndIsolated)
{
	event_loop loop;
	unique_fd a = make_eventfd(), b = make_eventfd();
	int b_fired = 0, a_errors = 0;
	event_loop::watch wa = loop.add(
		a.get(), EPOLLIN, [](std::uint32_t) { throw std::runtime_error("accept4: EMFILE"); },
		[&](const std::exception &e) {
			a_errors++;
			EXPECT_STREQ(e.what(), "accept4: EMFILE");
		});
	event_loop::watch wb = loop.add(b.get(), EPOLLIN, [&](std::uint32_t) {
		b_fired++;
		(void)eventfd_consume(b.get());
	});
	eventfd_signal(a.get());
	eventfd_signal(b.get());
	EXPECT_EQ(loop.run_once(100), 2u);
	EXPECT_EQ(loop.errors(), 1u);
	EXPECT_EQ(a_errors, 1);
	EXPECT_EQ(b_fired, 1) << "the other handler did not run";
}

TEST(EventLoop, TimersFireOnceAtTheirDeadlineAndShortenTheWait)
{
	event_loop loop;
	int fired = 0;
	event_loop::timer t = loop.add_timer([&] { fired++; });
	EXPECT_FALSE(t.armed());
	const auto t0 = std::chrono::steady_clock::now();
	t.arm(t0 + 30ms);
	EXPECT_EQ(loop.run_once(5000), 1u);
	const auto took = std::chrono::steady_clock::now() - t0;
	EXPECT_GE(took, 30ms);
	EXPECT_LT(took, 2s) << "the timer did not shorten the wait";
	EXPECT_EQ(fired, 1);
	EXPECT_FALSE(t.armed()) << "one shot";
	EXPECT_EQ(loop.run_once(20), 0u);
	t.arm(std::chrono::steady_clock::now());
	t.disarm();
	EXPECT_EQ(loop.run_once(20), 0u);
	EXPECT_EQ(fired, 1);
}

// A closed fd's number taken by a new fd another handle watches: dropping
// the old handle must not take the new fd out of the set.
TEST(EventLoop, ReusedFdNumberKeepsTheNewerWatch)
{
	event_loop loop;
	unique_fd first = make_eventfd();
	const int n = first.get();
	int old_fired = 0, new_fired = 0;
	event_loop::watch old_w =
		loop.add(n, EPOLLIN, [&](std::uint32_t) { old_fired++; });
	first.reset();
	unique_fd second = make_eventfd();
	ASSERT_EQ(second.get(), n) << "the number was not reused (test premise)";
	event_loop::watch new_w = loop.add(n, EPOLLIN, [&](std::uint32_t) {
		new_fired++;
		(void)eventfd_consume(second.get());
	});
	old_w.reset();
	eventfd_signal(second.get());
	EXPECT_EQ(loop.run_once(100), 1u);
	EXPECT_EQ(new_fired, 1);
	EXPECT_EQ(old_fired, 0);
}

TEST(SignalSet, SignalsArriveAsAnFdAndTheMaskFollowsTheShutdown)
{
	sigset_t before;
	ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &before), 0);
	ASSERT_FALSE(sigismember(&before, SIGUSR2));
	{
		signal_set s({SIGUSR2});
		EXPECT_FALSE(s.take());
		ASSERT_EQ(::raise(SIGUSR2), 0); // blocked: pending, not delivered
		auto sig = s.wait(1000);
		ASSERT_TRUE(sig);
		EXPECT_EQ(*sig, SIGUSR2);
	}
	// One was taken: the process is shutting down on it, a second stays
	// blocked rather than kill it halfway.
	sigset_t after;
	ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &after), 0);
	EXPECT_TRUE(sigismember(&after, SIGUSR2));
	ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &before, nullptr), 0);
	{
		signal_set s({SIGUSR2}); // none taken: the mask comes back
	}
	ASSERT_EQ(pthread_sigmask(SIG_SETMASK, nullptr, &after), 0);
	EXPECT_FALSE(sigismember(&after, SIGUSR2));
}

} // namespace

// O_NONBLOCK belongs to the open file, which every copy of an eventfd passed
// over a socket shares, and QEMU clears it on each fd it receives
// (tcp_chr_recv(): "O_NONBLOCK is preserved across SCM_RIGHTS so reset it").
// Reading an empty eventfd must still not block: vpci-sim's wait once sat
// for good in read() on a call fd VM2's QEMU had been given (seen in CI, a
// sim/multiqueue.sh session stalled until its watchdog).
TEST(Fd, EventfdConsumeNeverBlocksWhenAnotherHolderClearedNonblock)
{
	unique_fd efd = make_eventfd();
	unique_fd qemu_copy = dup_fd(efd.get(), "eventfd");
	const int fl = ::fcntl(qemu_copy.get(), F_GETFL);
	ASSERT_GE(fl, 0);
	ASSERT_EQ(::fcntl(qemu_copy.get(), F_SETFL, fl & ~O_NONBLOCK), 0);

	auto read_empty = std::async(std::launch::async,
				     [&] { return eventfd_consume(efd.get()); });
	if (read_empty.wait_for(2s) != std::future_status::ready) {
		eventfd_signal(efd.get()); // let the blocked read return
		read_empty.wait();
		FAIL() << "eventfd_consume() blocked on an empty eventfd";
	}
	EXPECT_FALSE(read_empty.get().has_value());
	eventfd_signal(efd.get());
	EXPECT_EQ(eventfd_consume(efd.get()), 1u);
	EXPECT_FALSE(eventfd_consume(efd.get()).has_value());
}
