// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The vpci-backend and vpci-ctl binaries as processes: startup, ready file,
// control via vpci-ctl, clean shutdown on SIGTERM.  Processes are only ever
// signalled by the pid this test spawned.
#include <chrono>
#include <csignal>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "test_util.hpp"
#include "vhost_user.hpp"
#include <sys/socket.h>

extern char **environ;

namespace {

using namespace std::chrono_literals;

pid_t spawn(std::vector<std::string> args)
{
	std::vector<char *> argv;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	pid_t pid = -1;
	if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0)
		return -1;
	return pid;
}

/** Wait up to @p timeout for @p pid; kill it (by pid) if it does not exit. */
int wait_exit(pid_t pid, std::chrono::milliseconds timeout = 5s)
{
	int st = 0;
	for (auto end = std::chrono::steady_clock::now() + timeout;
	     std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(10ms))
		if (::waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	::kill(pid, SIGKILL);
	::waitpid(pid, &st, 0);
	return -1;
}

int run(std::vector<std::string> args)
{
	pid_t pid = spawn(std::move(args));
	return pid < 0 ? -1 : wait_exit(pid);
}

struct Daemon : ::testing::Test {
	void TearDown() override
	{
		if (pid > 0 && ::waitpid(pid, nullptr, WNOHANG) == 0) {
			::kill(pid, SIGKILL);
			::waitpid(pid, nullptr, 0);
		}
	}

	vpci::test::temp_dir dir;
	pid_t pid = -1;
};

TEST_F(Daemon, StartControlAndTerminate)
{
	const std::string ready = dir.path("ready"), ctl = dir.path("ctl.sock"),
			  ivs = dir.path("ivs.sock");
	pid = spawn({VPCI_BACKEND_BIN, "--ivshmem-socket", ivs, "--mem-file", dir.path("mem"),
		     "--ram-size", "1M", "--control-socket", ctl, "--ready-file", ready,
		     "--log-level", "warn"});
	ASSERT_GT(pid, 0);
	for (int i = 0; i < 500 && ::access(ready.c_str(), F_OK) != 0; i++)
		std::this_thread::sleep_for(10ms);
	std::ifstream rf(ready);
	pid_t written = 0;
	ASSERT_TRUE(rf >> written) << "ready file never appeared";
	EXPECT_EQ(written, pid);

	EXPECT_EQ(run({VPCI_CTL_BIN, "--control-socket", ctl, "link", "down"}), 0);
	EXPECT_EQ(run({VPCI_CTL_BIN, "--control-socket", ctl, "status"}), 0);
	EXPECT_EQ(run({VPCI_CTL_BIN, "header", "--mem-file", dir.path("mem"), "--set",
		       "no_such_field=1"}),
		  1);

	ASSERT_EQ(::kill(pid, SIGTERM), 0);
	EXPECT_EQ(wait_exit(pid), 0);
	pid = -1;
	EXPECT_NE(::access(ivs.c_str(), F_OK), 0) << "ivshmem socket left behind";
	EXPECT_NE(::access(ctl.c_str(), F_OK), 0) << "control socket left behind";
}

TEST_F(Daemon, VhostUserSocketServedAndRemoved)
{
	const std::string ready = dir.path("ready"), vus = dir.path("vu.sock");
	pid = spawn({VPCI_BACKEND_BIN, "--ivshmem-socket", dir.path("ivs.sock"), "--mem-file",
		     dir.path("mem"), "--ram-size", "1M", "--vhost-user-socket", vus,
		     "--inval-timeout-ms", "500", "--ready-file", ready, "--log-level", "warn"});
	ASSERT_GT(pid, 0);
	for (int i = 0; i < 500 && ::access(ready.c_str(), F_OK) != 0; i++)
		std::this_thread::sleep_for(10ms);
	ASSERT_EQ(::access(ready.c_str(), F_OK), 0) << "ready file never appeared";
	{
		vpci::unique_fd s = vpci::unix_connect(vus);
		const std::uint32_t hdr[3] = {17, vpci::vu::version, 0}; // GET_QUEUE_NUM
		vpci::vu::send_raw(s.get(), hdr, sizeof(hdr), {});
		std::uint32_t rh[3] = {};
		std::uint64_t n = 0;
		ASSERT_EQ(::recv(s.get(), rh, sizeof(rh), MSG_WAITALL), 12);
		ASSERT_EQ(::recv(s.get(), &n, sizeof(n), MSG_WAITALL), 8);
		EXPECT_EQ(rh[0], 17u);
		EXPECT_EQ(n, 1u);
	}
	ASSERT_EQ(::kill(pid, SIGTERM), 0);
	EXPECT_EQ(wait_exit(pid), 0);
	pid = -1;
	EXPECT_NE(::access(vus.c_str(), F_OK), 0) << "vhost-user socket left behind";
}

TEST_F(Daemon, StartupErrorsExitOne)
{
	// Not a power of two: one clear error line, exit 1.
	{
		std::ofstream f(dir.path("mem"));
		f << "x";
	}
	EXPECT_EQ(run({VPCI_BACKEND_BIN, "--ivshmem-socket", dir.path("s"), "--mem-file",
		       dir.path("mem")}),
		  1);
	EXPECT_NE(run({VPCI_BACKEND_BIN, "--ivshmem-socket", dir.path("s"), "--mem-file",
		       dir.path("mem2"), "--queues", "0"}),
		  0);
}

} // namespace
