// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The backend's control-socket protocol and event loop, driven in-process.
#include <algorithm>
#include <stdexcept>
#include <string>

#include <sys/socket.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <nlohmann/json.hpp>

#include "backend.hpp"
#include "test_util.hpp"

using namespace vpci;
using namespace vpci::test;
using json = nlohmann::json;
using ::testing::HasSubstr;

namespace {

/** A daemon in @p d with a control socket, no VM1. */
backend_config config(const temp_dir &d)
{
	backend_config c;
	c.ivshmem_socket = d.path("ivs.sock");
	c.mem_file = d.path("mem");
	c.ram_size = 4 << 20;
	c.control_socket = d.path("ctl.sock");
	c.ctrl.max_queue_pairs = 2;
	return c;
}

class BackendTest : public ::testing::Test {
protected:

	json call(const std::string &line) { return json::parse(be_.handle_control_line(line)); }

	/** Send @p req over a control connection, pump the loop, read one line. */
	std::string roundtrip(int sock, const std::string &req)
	{
		EXPECT_EQ(::send(sock, req.data(), req.size(), MSG_NOSIGNAL),
			  static_cast<ssize_t>(req.size()));
		std::string in;
		for (int i = 0; i < 50 && in.find('\n') == std::string::npos; i++) {
			be_.run_once(20);
			char buf[4096];
			ssize_t n = ::recv(sock, buf, sizeof(buf), MSG_DONTWAIT);
			if (n > 0)
				in.append(buf, static_cast<std::size_t>(n));
		}
		EXPECT_NE(in.find('\n'), std::string::npos) << "no reply to " << req;
		return in.substr(0, in.find('\n'));
	}

	temp_dir dir_;
	backend be_{config(dir_)};
};

TEST_F(BackendTest, StatusFields)
{
	json r = call(R"({"cmd":"status"})");
	EXPECT_EQ(r["ok"], true);
	EXPECT_EQ(r["vm2_connected"], false);
	EXPECT_EQ(r["client_id"], 0);
	EXPECT_EQ(r["link"], "up");
	EXPECT_EQ(r["generation"], 1);
	EXPECT_EQ(r["driver"]["status"], 0);
	EXPECT_EQ(r["driver"]["bound"], false);
	EXPECT_EQ(r["driver"]["up"], false);
	EXPECT_EQ(r["driver"]["features"], 0);
	EXPECT_EQ(r["driver"]["mtu"], 0);
	EXPECT_EQ(r["mem_file"], dir_.path("mem"));
	EXPECT_EQ(r["file_size"], 8 << 20);
	EXPECT_EQ(r["peer_mem_size"], 4 << 20);
}

TEST_F(BackendTest, BadRequests)
{
	for (const char *bad : {"{not json", "[1,2]", R"({"nocmd":1})", R"({"cmd":5})",
				R"({"cmd":"reboot"})", R"({"cmd":"link"})",
				R"({"cmd":"link","state":"sideways"})", R"({"cmd":"link","state":1})"}) {
		json r = call(bad);
		EXPECT_EQ(r["ok"], false) << bad;
		EXPECT_TRUE(r["error"].is_string()) << bad;
	}
	EXPECT_THAT(call("{oops").at("error").get<std::string>(), HasSubstr("malformed"));
	EXPECT_THAT(call(R"({"cmd":"reboot"})").at("error").get<std::string>(),
		    HasSubstr("unknown command"));
	EXPECT_EQ(be_.control().generation(), 1u) << "a failed request changed state";
}

TEST_F(BackendTest, LinkDownClearsBitAndBumpsGeneration)
{
	EXPECT_EQ(call(R"({"cmd":"link","state":"down"})"), json({{"ok", true}}));
	EXPECT_EQ(le_load(be_.control().raw().backend.link) & VPCI_LINK_UP, 0);
	EXPECT_EQ(be_.control().generation(), 2u);
	EXPECT_EQ(call(R"({"cmd":"status"})")["link"], "down");
	EXPECT_EQ(call(R"({"cmd":"link","state":"up"})")["ok"], true);
	EXPECT_TRUE(be_.control().link_up());
	EXPECT_EQ(be_.control().generation(), 3u);
}

TEST_F(BackendTest, ControlSocketEndToEnd)
{
	unique_fd s = unix_connect(dir_.path("ctl.sock"));
	EXPECT_EQ(json::parse(roundtrip(s.get(), "garbage\n"))["ok"], false);
	// The connection stays usable after an error.
	EXPECT_EQ(json::parse(roundtrip(s.get(), "{\"cmd\":\"link\",\"state\":\"down\"}\n"))["ok"],
		  true);
	json st = json::parse(roundtrip(s.get(), "{\"cmd\":\"status\"}\r\n"));
	EXPECT_EQ(st["link"], "down");

	// Two requests in one write get two replies.
	unique_fd s2 = unix_connect(dir_.path("ctl.sock"));
	std::string both = roundtrip(s2.get(), "{\"cmd\":\"status\"}\n{\"cmd\":\"nope\"}\n");
	EXPECT_EQ(json::parse(both)["ok"], true);
	s2.reset();
	s.reset();
	for (int i = 0; i < 3; i++)
		be_.run_once(10); // disconnects are handled quietly
	unique_fd s3 = unix_connect(dir_.path("ctl.sock"));
	EXPECT_EQ(json::parse(roundtrip(s3.get(), "{\"cmd\":\"status\"}\n"))["ok"], true);
}

// A client streaming requests gets a bounded share of each wakeup (32
// answers); another client is served in the same turn, and the stream's
// remaining requests are all answered on the following turns.
TEST_F(BackendTest, ControlClientWorkPerWakeupIsBounded)
{
	unique_fd flood = unix_connect(dir_.path("ctl.sock"));
	unique_fd other = unix_connect(dir_.path("ctl.sock"));
	be_.run_once(0); // accept both
	be_.run_once(0);
	constexpr std::size_t n = 1000;
	std::string reqs;
	for (std::size_t i = 0; i < n; i++)
		reqs += "{\"cmd\":\"nope\"}\n"; // a short error reply each
	ASSERT_EQ(::send(flood.get(), reqs.data(), reqs.size(), MSG_NOSIGNAL),
		  static_cast<ssize_t>(reqs.size()));
	ASSERT_EQ(::send(other.get(), "{\"cmd\":\"status\"}\n", 17, MSG_NOSIGNAL), 17);
	be_.run_once(100);
	std::string a, b;
	const auto first = lines_so_far(flood.get(), a);
	EXPECT_GT(first, 0u);
	EXPECT_LE(first, 32u) << "one wakeup answered the whole stream";
	EXPECT_EQ(lines_so_far(other.get(), b), 1u) << "the other client waited behind the stream";
	for (int i = 0; i < 200 && lines_so_far(flood.get(), a) < n; i++)
		be_.run_once(0);
	EXPECT_EQ(lines_so_far(flood.get(), a), n) << "every request answered, in later turns";
}

// Control clients are bounded: the 65th is told so and closed, the daemon
// goes on and the earlier clients keep working.
TEST_F(BackendTest, ControlClientsAreBounded)
{
	std::vector<unique_fd> socks;
	for (int i = 0; i < 64; i++) {
		socks.push_back(unix_connect(dir_.path("ctl.sock")));
		be_.run_once(0);
	}
	unique_fd extra = unix_connect(dir_.path("ctl.sock"));
	std::string in;
	for (int i = 0; i < 50 && in.find('\n') == std::string::npos; i++) {
		be_.run_once(10);
		char buf[256];
		ssize_t n = ::recv(extra.get(), buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			in.append(buf, static_cast<std::size_t>(n));
	}
	EXPECT_NE(in.find("too many control clients"), std::string::npos) << in;
	EXPECT_EQ(json::parse(roundtrip(socks.front().get(), "{\"cmd\":\"status\"}\n"))["ok"], true);
}

// accept4() failing (EMFILE) must neither end the daemon nor spin it: the
// error is counted, the listener rests, and once fds are free again the
// waiting client is served.
TEST_F(BackendTest, AcceptFailureIsCountedAndTheListenerRests)
{
	rlimit old{};
	ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
	int probe = ::dup(0); // the lowest free fd: everything below is in use
	ASSERT_GE(probe, 0);
	::close(probe);
	unique_fd c = unix_connect(dir_.path("ctl.sock")); // takes fd `probe`
	rlimit low = old;
	low.rlim_cur = static_cast<rlim_t>(probe + 1); // no fd left for accept4()
	ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
	const auto t0 = std::chrono::steady_clock::now();
	for (int i = 0; i < 10; i++)
		be_.run_once(10);
	const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
				std::chrono::steady_clock::now() - t0).count();
	ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
	EXPECT_GE(be_.status()["handler_errors"].get<int>(), 1);
	EXPECT_GE(ms, 50) << "the loop woke without end on the failing listener";
	EXPECT_EQ(json::parse(roundtrip(c.get(), "{\"cmd\":\"status\"}\n"))["ok"], true)
		<< "the client is served once fds are free again";
}

namespace {
/**
 * A daemon whose status fails the next @c failures times with a message
 * that is not UTF-8, so that even the error reply cannot be made: the
 * exception leaves the control client's handler.
 */
class failing_status_backend : public backend {
public:
	using backend::backend;
	nlohmann::json status() const override
	{
		if (failures > 0) {
			failures--;
			throw std::runtime_error("status failed: \xff\xfe");
		}
		return backend::status();
	}
	mutable int failures = 0;
};
} // namespace

// A control client whose handler throws is dropped (closed and forgotten),
// not left registered with its state unknown; the other clients and the
// daemon go on.
TEST(BackendControl, ClientWhoseHandlerThrowsIsDropped)
{
	temp_dir d;
	failing_status_backend be(config(d));
	unique_fd bad = unix_connect(d.path("ctl.sock"));
	unique_fd good = unix_connect(d.path("ctl.sock"));
	be.run_once(0); // accept both
	be.run_once(0);
	be.failures = 1;
	const std::string req = "{\"cmd\":\"status\"}\n";
	ASSERT_EQ(::send(bad.get(), req.data(), req.size(), MSG_NOSIGNAL),
		  static_cast<ssize_t>(req.size()));
	bool closed = false;
	for (int i = 0; i < 20 && !closed; i++) {
		be.run_once(10);
		char buf[256];
		closed = ::recv(bad.get(), buf, sizeof(buf), MSG_DONTWAIT) == 0;
	}
	EXPECT_EQ(be.failures, 0) << "the handler did not run";
	EXPECT_TRUE(closed) << "the failing client is still connected";
	EXPECT_GE(be.status()["handler_errors"].get<int>(), 1);
	ASSERT_EQ(::send(good.get(), req.data(), req.size(), MSG_NOSIGNAL),
		  static_cast<ssize_t>(req.size()));
	std::string in;
	for (int i = 0; i < 50 && in.find('\n') == std::string::npos; i++) {
		be.run_once(10);
		char buf[65536];
		const ssize_t n = ::recv(good.get(), buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0)
			in.append(buf, static_cast<std::size_t>(n));
	}
	ASSERT_NE(in.find('\n'), std::string::npos) << "the other client is not served";
	EXPECT_EQ(json::parse(in.substr(0, in.find('\n')))["ok"], true);
}

TEST_F(BackendTest, LinkChangeRaisesVm2ConfigVector)
{
	unique_fd c = unix_connect(dir_.path("ivs.sock"));
	be_.run_once(100);
	ASSERT_TRUE(be_.ivshmem().client_connected());
	// Skip version, id, shm and the backend's 5 doorbells, keep own vector 0.
	for (int i = 0; i < 3 + 5; i++)
		ASSERT_TRUE(recv_ivshmem_msg(c.get()));
	auto v0 = recv_ivshmem_msg(c.get());
	ASSERT_TRUE(v0 && v0->fd);
	EXPECT_FALSE(readable(v0->fd.get()));
	be_.set_link(false);
	EXPECT_TRUE(readable(v0->fd.get()));
	EXPECT_EQ(call(R"({"cmd":"status"})")["vm2_connected"], true);
	EXPECT_EQ(call(R"({"cmd":"status"})")["client_id"], 1);

	c.reset();
	be_.run_once(100);
	EXPECT_FALSE(be_.ivshmem().client_connected());
}

TEST_F(BackendTest, ConfigDoorbellReadsDriverState)
{
	auto &d = be_.control().raw().driver;
	le_store(d.mtu, 1500);
	le_store(d.status, VPCI_DS_BOUND);
	eventfd_signal(be_.ivshmem().doorbell_fd(VPCI_VEC_CONFIG));
	be_.run_once(100);
	EXPECT_FALSE(readable(be_.ivshmem().doorbell_fd(VPCI_VEC_CONFIG))) << "doorbell not consumed";
	json r = call(R"({"cmd":"status"})");
	EXPECT_EQ(r["driver"]["bound"], true);
	EXPECT_EQ(r["driver"]["mtu"], 1500);
}

TEST(BackendSetup, SocketsRemovedOnDestruction)
{
	temp_dir d;
	backend_config c = config(d);
	{
		backend be(c);
		EXPECT_EQ(::access(c.ivshmem_socket.c_str(), F_OK), 0);
		EXPECT_EQ(::access(c.control_socket.c_str(), F_OK), 0);
		// A second backend on the same sockets is refused.
		c.mem_file = d.path("mem2");
		EXPECT_THROW(backend be2(c), std::system_error);
	}
	EXPECT_NE(::access(c.ivshmem_socket.c_str(), F_OK), 0);
	EXPECT_NE(::access(c.control_socket.c_str(), F_OK), 0);
}

} // namespace
