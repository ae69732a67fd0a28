// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The vpci-backend and vpci-ctl binaries as processes: startup, ready file,
// control via vpci-ctl, clean shutdown on SIGTERM.  Processes are only ever
// signalled by the pid this test spawned.
#include <algorithm>
#include <chrono>
#include <cstring>
#include <csignal>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <endian.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "abi.hpp"
#include "test_util.hpp"
#include "vhost_user.hpp"
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

extern char **environ;

namespace {

using namespace std::chrono_literals;

/**
 * Start @p args; @p extra_env ("NAME=value") is added to this process's
 * environment; with @p log its stdout and stderr go to that file.
 */
pid_t spawn(std::vector<std::string> args, std::vector<std::string> extra_env = {},
	    const std::string &log = {})
{
	std::vector<char *> argv, envp;
	for (auto &a : args)
		argv.push_back(a.data());
	argv.push_back(nullptr);
	for (char **e = environ; *e; e++)
		envp.push_back(*e);
	for (auto &e : extra_env)
		envp.push_back(e.data());
	envp.push_back(nullptr);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	if (!log.empty()) {
		posix_spawn_file_actions_addopen(&fa, 1, log.c_str(),
						 O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	pid_t pid = -1;
	const int err = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
	posix_spawn_file_actions_destroy(&fa);
	return err ? -1 : pid;
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

// systemd's Type=notify: READY=1 (with the daemon's pid) once the sockets
// listen, STOPPING=1 on SIGTERM, on the datagram socket $NOTIFY_SOCKET names.
TEST_F(Daemon, NotifiesSystemdWhenReadyAndStopping)
{
	const std::string ctl = dir.path("ctl.sock"), ns = dir.path("notify.sock");
	vpci::unique_fd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	ASSERT_TRUE(sock);
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	std::strncpy(sa.sun_path, ns.c_str(), sizeof(sa.sun_path) - 1);
	ASSERT_EQ(::bind(sock.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0);
	auto next = [&](std::chrono::milliseconds timeout) {
		pollfd p{sock.get(), POLLIN, 0};
		if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1)
			return std::string();
		char buf[512];
		const ssize_t n = ::recv(sock.get(), buf, sizeof(buf), 0);
		return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
	};
	pid = spawn({VPCI_BACKEND_BIN, "--ivshmem-socket", dir.path("ivs.sock"), "--mem-file",
		     dir.path("mem"), "--ram-size", "1M", "--control-socket", ctl, "--log-level",
		     "warn"},
		    {"NOTIFY_SOCKET=" + ns});
	ASSERT_GT(pid, 0);
	const std::string ready = next(5s);
	EXPECT_NE(ready.find("READY=1"), std::string::npos) << ready;
	EXPECT_NE(ready.find("MAINPID=" + std::to_string(pid)), std::string::npos) << ready;
	EXPECT_EQ(::access(ctl.c_str(), F_OK), 0) << "READY=1 before the control socket listened";
	ASSERT_EQ(::kill(pid, SIGTERM), 0);
	const std::string stopping = next(5s);
	EXPECT_NE(stopping.find("STOPPING=1"), std::string::npos) << stopping;
	EXPECT_EQ(wait_exit(pid), 0);
	pid = -1;
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

/** One control request over a fresh connection; the parsed reply. */
nlohmann::json ctl_request(const std::string &path, const std::string &req)
{
	vpci::unique_fd s = vpci::unix_connect(path);
	const std::string line = req + "\n";
	if (::send(s.get(), line.data(), line.size(), MSG_NOSIGNAL) !=
	    static_cast<ssize_t>(line.size()))
		return nullptr;
	std::string in;
	char buf[4096];
	ssize_t n;
	while (in.find('\n') == std::string::npos && (n = ::recv(s.get(), buf, sizeof(buf), 0)) > 0)
		in.append(buf, static_cast<std::size_t>(n));
	return nlohmann::json::parse(in.substr(0, in.find('\n')), nullptr, false);
}

// A vhost-user peer that writes a message a byte at a time holds up only its
// own connection: the control socket and VM2's doorbells keep answering at
// once (a miss VM2's driver posts reaches VM1's back-end channel), and the
// message is taken whole once its last byte is there.
TEST_F(Daemon, SlowVhostUserPeerHoldsUpOnlyItself)
{
	const std::string ready = dir.path("ready"), vus = dir.path("vu.sock"),
			  ctl = dir.path("ctl.sock");
	pid = spawn({VPCI_BACKEND_BIN, "--ivshmem-socket", dir.path("ivs.sock"), "--mem-file",
		     dir.path("mem"), "--ram-size", "1M", "--vhost-user-socket", vus,
		     "--control-socket", ctl, "--ready-file", ready, "--log-level", "warn"});
	ASSERT_GT(pid, 0);
	for (int i = 0; i < 500 && ::access(ready.c_str(), F_OK) != 0; i++)
		std::this_thread::sleep_for(10ms);
	ASSERT_EQ(::access(ready.c_str(), F_OK), 0) << "ready file never appeared";

	vpci::unique_fd vm1 = vpci::unix_connect(vus);
	const timeval tv{5, 0}; // a missing reply fails the test, not hangs it
	ASSERT_EQ(::setsockopt(vm1.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	// VM1's back-end channel (SET_SLAVE_REQ_FD), where VM2's misses go.
	int sv[2];
	ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	vpci::unique_fd channel(sv[0]), theirs(sv[1]);
	{
		const std::uint32_t h[3] = {21, vpci::vu::version | vpci::vu::flag_need_reply, 0};
		vpci::vu::send_raw(vm1.get(), h, sizeof(h), {theirs.get()});
		theirs.reset();
		std::uint32_t rh[3] = {};
		std::uint64_t ack = ~0ULL;
		ASSERT_EQ(::recv(vm1.get(), rh, sizeof(rh), MSG_WAITALL), 12);
		ASSERT_EQ(::recv(vm1.get(), &ack, sizeof(ack), MSG_WAITALL), 8);
		ASSERT_EQ(ack, 0u) << "SET_SLAVE_REQ_FD refused";
	}
	// VM2: version, id, shm, peer 0's 3 vectors (the backend's doorbells),
	// own vector 0.  Its driver's side of the control area is the memory
	// file's last VPCI_CTRL_SIZE bytes.
	vpci::unique_fd vm2 = vpci::unix_connect(dir.path("ivs.sock"));
	vpci::unique_fd shm, doorbell;
	for (int i = 0; i < 7; i++) {
		auto m = vpci::test::recv_ivshmem_msg(vm2.get());
		ASSERT_TRUE(m) << "setup message " << i;
		if (i == 2)
			shm = std::move(m->fd);
		if (i == 3 + static_cast<int>(VPCI_VEC_CONFIG))
			doorbell = std::move(m->fd);
	}
	ASSERT_TRUE(shm && doorbell);
	struct stat sb{};
	ASSERT_EQ(::fstat(shm.get(), &sb), 0);
	void *area = ::mmap(nullptr, VPCI_CTRL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, shm.get(),
			    sb.st_size - VPCI_CTRL_SIZE);
	ASSERT_NE(area, MAP_FAILED);
	struct unmap {
		void *p;
		~unmap() { ::munmap(p, VPCI_CTRL_SIZE); }
	} unmap_area{area};
	auto &d2b = static_cast<vpci_ctrl *>(area)->d2b;
	auto worst_vm2 = std::chrono::steady_clock::duration::zero();

	// VM2's driver reports a miss for page @p i and rings the config
	// doorbell; how long until VM1's back-end channel has it.
	auto vm2_miss = [&](std::size_t i) {
		vpci_msg miss{};
		miss.type = VPCI_MSG_IOTLB_MISS;
		miss.perm = VPCI_PERM_RO;
		miss.iova = htole64(0x1000 * (i + 1));
		miss.size = htole64(1);
		const std::uint32_t prod = vpci::le_load(d2b.prod);
		d2b.ent[prod % VPCI_MSG_RING_SIZE] = miss;
		vpci::le_store(d2b.prod, prod + 1, std::memory_order_release);
		const auto t1 = std::chrono::steady_clock::now();
		vpci::eventfd_signal(doorbell.get());
		const auto r = vpci::vu::recv_raw(channel.get(), 5000);
		worst_vm2 = std::max(worst_vm2, std::chrono::steady_clock::now() - t1);
		ASSERT_TRUE(r) << "VM2's miss after byte " << i << " never reached VM1";
		vpci::vu::iotlb_msg t{};
		ASSERT_EQ(r->payload.size(), sizeof(t));
		std::memcpy(&t, r->payload.data(), sizeof(t));
		EXPECT_EQ(t.iova, 0x1000u * (i + 1));
	};

	// SET_FEATURES (VERSION_1) with NEED_REPLY: 12 header and 8 payload
	// bytes, one every 150 ms, each followed by a status request and a
	// miss from VM2's driver (in turns first: either may be the one that
	// comes while the daemon would wait for the next byte).
	std::uint8_t msg[20];
	const std::uint32_t hdr[3] = {2, vpci::vu::version | vpci::vu::flag_need_reply, 8};
	const std::uint64_t features = 1ULL << 32;
	std::memcpy(msg, hdr, sizeof(hdr));
	std::memcpy(msg + sizeof(hdr), &features, sizeof(features));
	auto worst = std::chrono::steady_clock::duration::zero();
	for (std::size_t i = 0; i < sizeof(msg); i++) {
		vpci::vu::send_raw(vm1.get(), msg + i, 1, {});
		if (i % 2) {
			ASSERT_NO_FATAL_FAILURE(vm2_miss(i));
		}
		const auto t0 = std::chrono::steady_clock::now();
		const auto st = ctl_request(ctl, R"({"cmd":"status"})");
		worst = std::max(worst, std::chrono::steady_clock::now() - t0);
		ASSERT_TRUE(st.is_object() && st.value("ok", false)) << "after byte " << i;
		if (i % 2 == 0) {
			ASSERT_NO_FATAL_FAILURE(vm2_miss(i));
		}
		std::this_thread::sleep_for(150ms);
	}
	EXPECT_LT(worst, 100ms) << "the control socket waited for a vhost-user peer: "
				<< std::chrono::duration_cast<std::chrono::milliseconds>(worst).count()
				<< " ms";
	EXPECT_LT(worst_vm2, 100ms)
		<< "VM2's doorbell waited for a vhost-user peer: "
		<< std::chrono::duration_cast<std::chrono::milliseconds>(worst_vm2).count() << " ms";
	// The dripped message was applied (acked 0) and the session goes on.
	std::uint32_t rh[3] = {};
	std::uint64_t v = 1;
	ASSERT_EQ(::recv(vm1.get(), rh, sizeof(rh), MSG_WAITALL), 12);
	ASSERT_EQ(::recv(vm1.get(), &v, sizeof(v), MSG_WAITALL), 8);
	EXPECT_EQ(rh[0], 2u);
	EXPECT_EQ(v, 0u) << "SET_FEATURES refused";
	const std::uint32_t q[3] = {17, vpci::vu::version, 0}; // GET_QUEUE_NUM
	vpci::vu::send_raw(vm1.get(), q, sizeof(q), {});
	ASSERT_EQ(::recv(vm1.get(), rh, sizeof(rh), MSG_WAITALL), 12);
	ASSERT_EQ(::recv(vm1.get(), &v, sizeof(v), MSG_WAITALL), 8);
	EXPECT_EQ(rh[0], 17u);
	EXPECT_EQ(v, 1u);
}

// Direct kicks: the daemon's CPU time does not grow with VM1's kicks.
TEST_F(Daemon, DirectKicksCostTheBackendNothing)
{
	const std::string ready = dir.path("ready"), vus = dir.path("vu.sock"),
			  ivs = dir.path("ivs.sock"), ctl = dir.path("ctl.sock");
	pid = spawn({VPCI_BACKEND_BIN, "--ivshmem-socket", ivs, "--mem-file", dir.path("mem"),
		     "--ram-size", "1M", "--vhost-user-socket", vus, "--control-socket", ctl,
		     "--ready-file", ready, "--log-level", "warn"});
	ASSERT_GT(pid, 0);
	for (int i = 0; i < 500 && ::access(ready.c_str(), F_OK) != 0; i++)
		std::this_thread::sleep_for(10ms);
	ASSERT_EQ(::access(ready.c_str(), F_OK), 0) << "ready file never appeared";

	// VM2: version, id, shm, peer 0's 3 vectors, own vector 0.
	vpci::unique_fd vm2 = vpci::unix_connect(ivs);
	std::int64_t id = 0;
	for (int i = 0; i < 7; i++) {
		auto m = vpci::test::recv_ivshmem_msg(vm2.get());
		ASSERT_TRUE(m) << "setup message " << i;
		if (i == 1)
			id = m->value;
	}
	// VM1: both kicks (no features needed for SET_VRING_KICK).
	vpci::unique_fd vm1 = vpci::unix_connect(vus);
	std::vector<vpci::unique_fd> kicks;
	for (std::uint64_t q = 0; q < 2; q++) {
		kicks.push_back(vpci::make_eventfd());
		std::uint32_t msg[5] = {12, vpci::vu::version | vpci::vu::flag_need_reply, 8};
		std::memcpy(&msg[3], &q, 8);
		vpci::vu::send_raw(vm1.get(), msg, sizeof(msg), {kicks.back().get()});
		std::uint32_t rh[3] = {};
		std::uint64_t ack = ~0ULL;
		ASSERT_EQ(::recv(vm1.get(), rh, sizeof(rh), MSG_WAITALL), 12);
		ASSERT_EQ(::recv(vm1.get(), &ack, sizeof(ack), MSG_WAITALL), 8);
		ASSERT_EQ(ack, 0u);
	}
	std::vector<vpci::unique_fd> own;
	for (int v = 1; v <= 2; v++) {
		auto m = vpci::test::recv_ivshmem_msg(vm2.get());
		ASSERT_TRUE(m && m->value == id && m->fd) << "own vector " << v;
		own.push_back(std::move(m->fd));
	}

	auto before = ctl_request(ctl, R"({"cmd":"status"})");
	ASSERT_TRUE(before.is_object());
	ASSERT_EQ(before["frontend"]["queues"][0]["notify"], "direct");
	const double cpu0 = before["cpu_seconds"].get<double>();
	EXPECT_GE(cpu0, 0.0);
	for (int i = 0; i < 20000; i++) {
		vpci::eventfd_signal(kicks[static_cast<std::size_t>(i % 2)].get());
		ASSERT_TRUE(vpci::eventfd_consume(own[static_cast<std::size_t>(i % 2)].get()));
	}
	auto after = ctl_request(ctl, R"({"cmd":"status"})");
	ASSERT_TRUE(after.is_object());
	EXPECT_LT(after["cpu_seconds"].get<double>() - cpu0, 0.05)
		<< "the backend worked for direct kicks";
	EXPECT_EQ(after["frontend"]["queues"][0]["kicks_relayed"], 0);
	EXPECT_EQ(after["frontend"]["queues"][1]["kicks_relayed"], 0);

	ASSERT_EQ(::kill(pid, SIGTERM), 0);
	EXPECT_EQ(wait_exit(pid), 0);
	pid = -1;
}

/** The control area's bytes in memory file @p path (its last VPCI_CTRL_SIZE). */
std::string control_area_bytes(const std::string &path)
{
	std::ifstream f(path, std::ios::binary);
	f.seekg(0, std::ios::end);
	const auto size = static_cast<std::streamoff>(f.tellg());
	f.seekg(size - VPCI_CTRL_SIZE);
	std::string bytes(VPCI_CTRL_SIZE, '\0');
	f.read(bytes.data(), VPCI_CTRL_SIZE);
	return f ? bytes : std::string();
}

// A second daemon on the same memory file (other sockets, so only the
// file's lock can refuse it) exits non-zero at once with a message naming
// the lock; the first keeps serving and its control area is untouched (a
// second one used to rewrite it before finding its sockets busy).
TEST_F(Daemon, SecondDaemonOnTheSameMemoryFileIsRefused)
{
	const std::string ready = dir.path("ready"), ctl = dir.path("ctl.sock"),
			  mem = dir.path("mem");
	pid = spawn({VPCI_BACKEND_BIN, "--ivshmem-socket", dir.path("ivs.sock"), "--mem-file",
		     mem, "--ram-size", "1M", "--control-socket", ctl, "--ready-file", ready,
		     "--log-level", "warn"});
	ASSERT_GT(pid, 0);
	for (int i = 0; i < 500 && ::access(ready.c_str(), F_OK) != 0; i++)
		std::this_thread::sleep_for(10ms);
	ASSERT_EQ(::access(ready.c_str(), F_OK), 0) << "ready file never appeared";
	// A state a fresh control area does not have: link down, generation moved.
	ASSERT_EQ(ctl_request(ctl, R"({"cmd":"link","state":"down"})").value("ok", false), true);
	const auto before = ctl_request(ctl, R"({"cmd":"status"})");
	ASSERT_TRUE(before.is_object());
	const std::string area = control_area_bytes(mem);
	ASSERT_EQ(area.size(), VPCI_CTRL_SIZE);

	const std::string log = dir.path("second.log");
	const pid_t second =
		spawn({VPCI_BACKEND_BIN, "--ivshmem-socket", dir.path("ivs2.sock"), "--mem-file",
		       mem, "--ram-size", "1M", "--control-socket", dir.path("ctl2.sock"),
		       "--ready-file", dir.path("ready2"), "--log-level", "warn"},
		      {}, log);
	ASSERT_GT(second, 0);
	const int rc = wait_exit(second); // killed by its pid if it hangs
	EXPECT_NE(rc, 0) << "the second daemon ran";
	EXPECT_NE(rc, -1) << "the second daemon did not exit";
	std::ifstream lf(log);
	const std::string out((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
	EXPECT_NE(out.find("memory file " + mem + " is in use by another vpci-backend"),
		  std::string::npos)
		<< out;
	EXPECT_NE(out.find("flock"), std::string::npos) << "the message does not name the lock: "
							 << out;
	EXPECT_NE(::access(dir.path("ctl2.sock").c_str(), F_OK), 0) << "the second one listened";

	EXPECT_TRUE(control_area_bytes(mem) == area) << "the control area was touched";
	const auto after = ctl_request(ctl, R"({"cmd":"status"})");
	ASSERT_TRUE(after.is_object()) << "the first daemon stopped serving";
	EXPECT_EQ(after["link"], "down");
	EXPECT_EQ(after["generation"], before["generation"]);
	ASSERT_EQ(::kill(pid, SIGTERM), 0);
	EXPECT_EQ(wait_exit(pid), 0);
	pid = -1;
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
