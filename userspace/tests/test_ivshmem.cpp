// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The ivshmem-doorbell server against a fake VM2 client.
#include <cstring>
#include <system_error>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "ivshmem_server.hpp"
#include "shm_file.hpp"
#include "test_util.hpp"

using namespace vpci;
using namespace vpci::test;
using ::testing::HasSubstr;

namespace {

constexpr unsigned nvec = 3;

/** What a fake client learnt from the setup sequence. */
struct fake_client {
	unique_fd sock;
	std::int64_t id = 0;
	unique_fd shm;
	std::vector<unique_fd> doorbells; // peer 0's vectors
	std::vector<unique_fd> own;	  // our MSI-X vectors
};

class IvshmemTest : public ::testing::Test {
protected:
	IvshmemTest()
		: shm_(dir_.path("mem"), 1 << 20), srv_(dir_.path("ivs.sock"), shm_.fd(), nvec)
	{
	}

	/** Connect, let the server accept, read and check the whole sequence. */
	fake_client connect_client()
	{
		fake_client c;
		c.sock = unix_connect(dir_.path("ivs.sock"));
		EXPECT_TRUE(srv_.handle_listen());

		auto m = recv_ivshmem_msg(c.sock.get());
		EXPECT_TRUE(m && m->value == 0 && !m->fd) << "protocol version";
		m = recv_ivshmem_msg(c.sock.get());
		EXPECT_TRUE(m && m->value > 0 && m->value <= 65535 && !m->fd) << "client id";
		c.id = m ? m->value : -1;
		m = recv_ivshmem_msg(c.sock.get());
		EXPECT_TRUE(m && m->value == -1 && m->fd) << "shm fd";
		if (m)
			c.shm = std::move(m->fd);
		for (unsigned v = 0; v < nvec; v++) {
			m = recv_ivshmem_msg(c.sock.get());
			EXPECT_TRUE(m && m->value == 0 && m->fd) << "backend vector " << v;
			if (m)
				c.doorbells.push_back(std::move(m->fd));
		}
		// Only own vector 0 at connect; the rest come with add_own_vector().
		m = recv_ivshmem_msg(c.sock.get());
		EXPECT_TRUE(m && m->value == c.id && m->fd) << "own vector 0";
		if (m)
			c.own.push_back(std::move(m->fd));
		EXPECT_FALSE(readable(c.sock.get())) << "extra messages after setup";
		EXPECT_EQ(srv_.own_vectors_sent(), 1u);
		EXPECT_TRUE(srv_.client_connected());
		EXPECT_EQ(srv_.client_id(), c.id);
		return c;
	}

	temp_dir dir_;
	shm_file shm_;
	ivshmem_server srv_;
};

TEST_F(IvshmemTest, SetupSequence)
{
	EXPECT_FALSE(srv_.client_connected());
	fake_client c = connect_client();
	EXPECT_EQ(c.id, 1);
	ASSERT_TRUE(c.shm);
	struct stat a, b;
	ASSERT_EQ(::fstat(c.shm.get(), &a), 0);
	ASSERT_EQ(::fstat(shm_.fd(), &b), 0);
	EXPECT_EQ(a.st_ino, b.st_ino);
	EXPECT_EQ(a.st_dev, b.st_dev);
	EXPECT_EQ(c.doorbells.size(), nvec);
	EXPECT_EQ(c.own.size(), 1u);
}

/** Add own vectors 1.. as fresh eventfds; the client records them. */
static void add_all_own(ivshmem_server &srv, fake_client &c)
{
	while (c.own.size() < nvec) {
		unique_fd e = make_eventfd();
		ASSERT_TRUE(srv.add_own_vector(e.get()));
		auto m = recv_ivshmem_msg(c.sock.get());
		ASSERT_TRUE(m && m->value == c.id && m->fd) << "own vector " << c.own.size();
		c.own.push_back(std::move(m->fd));
	}
}

TEST_F(IvshmemTest, OwnVectorsAddedInOrderAndKept)
{
	fake_client c = connect_client();
	unique_fd e1 = make_eventfd(), e2 = make_eventfd();
	// Vector 1 not sent yet: raising it is a quiet no-op.
	EXPECT_NO_THROW(srv_.notify_vm2(1));
	EXPECT_EQ(srv_.own_vector_fd(1), -1);
	ASSERT_TRUE(srv_.add_own_vector(e1.get()));
	ASSERT_TRUE(srv_.add_own_vector(e2.get()));
	EXPECT_EQ(srv_.own_vectors_sent(), 3u);
	EXPECT_FALSE(srv_.add_own_vector(e2.get())) << "more vectors than the device has";
	for (int v = 1; v <= 2; v++) {
		auto m = recv_ivshmem_msg(c.sock.get());
		ASSERT_TRUE(m && m->value == c.id && m->fd) << "own vector " << v;
		// The client got the very eventfd we passed (a dup of it).
		const int mine = v == 1 ? e1.get() : e2.get();
		EXPECT_TRUE(same_file(m->fd.get(), mine));
		EXPECT_TRUE(same_file(srv_.own_vector_fd(static_cast<unsigned>(v)), mine));
		eventfd_signal(mine);
		EXPECT_TRUE(readable(m->fd.get()));
	}
	EXPECT_FALSE(readable(c.sock.get()));
	// The server's dup outlives our fd.
	e1.reset();
	srv_.notify_vm2(1);
	EXPECT_EQ(eventfd_consume(srv_.own_vector_fd(1)), 2u);
}

TEST_F(IvshmemTest, AddOwnVectorWithoutClientFails)
{
	unique_fd e = make_eventfd();
	EXPECT_FALSE(srv_.add_own_vector(e.get()));
	EXPECT_EQ(srv_.own_vectors_sent(), 0u);
}

TEST_F(IvshmemTest, PeerVectorsReannounced)
{
	fake_client c = connect_client();
	unique_fd a = make_eventfd(), b = make_eventfd();
	EXPECT_THROW(srv_.set_peer_vectors({a.get()}), std::invalid_argument);
	srv_.set_peer_vectors({srv_.doorbell_fd(0), a.get(), b.get()});
	EXPECT_EQ(srv_.peer_reannouncements(), 1u);
	auto gone = recv_ivshmem_msg(c.sock.get());
	ASSERT_TRUE(gone);
	EXPECT_EQ(gone->value, 0);
	EXPECT_FALSE(gone->fd) << "peer gone carries no fd";
	std::vector<unique_fd> got;
	for (unsigned v = 0; v < nvec; v++) {
		auto m = recv_ivshmem_msg(c.sock.get());
		ASSERT_TRUE(m && m->value == 0 && m->fd) << "peer 0 vector " << v;
		got.push_back(std::move(m->fd));
	}
	EXPECT_FALSE(readable(c.sock.get()));
	EXPECT_TRUE(same_file(got[0].get(), srv_.doorbell_fd(0)));
	EXPECT_TRUE(same_file(got[1].get(), a.get()));
	EXPECT_TRUE(same_file(got[2].get(), b.get()));
	EXPECT_FALSE(same_file(got[1].get(), b.get()));
	eventfd_signal(got[2].get());
	EXPECT_TRUE(readable(b.get()));
}

TEST_F(IvshmemTest, PeerVectorsSetWithoutClientUsedAtConnect)
{
	unique_fd a = make_eventfd();
	srv_.set_peer_vectors({srv_.doorbell_fd(0), a.get(), srv_.doorbell_fd(2)});
	EXPECT_EQ(srv_.peer_reannouncements(), 0u);
	fake_client c = connect_client();
	EXPECT_TRUE(same_file(c.doorbells[1].get(), a.get()));
	EXPECT_TRUE(same_file(c.doorbells[2].get(), srv_.doorbell_fd(2)));
}

TEST_F(IvshmemTest, NotifyRaisesOwnVector)
{
	fake_client c = connect_client();
	add_all_own(srv_, c);
	ASSERT_EQ(c.own.size(), nvec);
	for (unsigned k = 0; k < nvec; k++) {
		srv_.notify_vm2(k);
		for (unsigned j = 0; j < nvec; j++)
			EXPECT_EQ(readable(c.own[j].get()), j == k) << "notify " << k << " vec " << j;
		EXPECT_EQ(eventfd_consume(c.own[k].get()), 1u);
	}
	EXPECT_THROW(srv_.notify_vm2(nvec), std::out_of_range);
}

TEST_F(IvshmemTest, DoorbellReachesServer)
{
	fake_client c = connect_client();
	ASSERT_EQ(c.doorbells.size(), nvec);
	for (unsigned k = 0; k < nvec; k++) {
		EXPECT_FALSE(readable(srv_.doorbell_fd(k)));
		eventfd_signal(c.doorbells[k].get());
		EXPECT_TRUE(readable(srv_.doorbell_fd(k)));
		EXPECT_EQ(eventfd_consume(srv_.doorbell_fd(k)), 1u);
	}
}

TEST_F(IvshmemTest, NotifyWithoutClientIsNoop)
{
	EXPECT_NO_THROW(srv_.notify_vm2(0));
}

TEST_F(IvshmemTest, ReconnectGetsNewIdAndSameDoorbells)
{
	fake_client c1 = connect_client();
	EXPECT_EQ(c1.id, 1);
	c1.sock.reset();
	srv_.handle_client();
	EXPECT_FALSE(srv_.client_connected());
	EXPECT_EQ(srv_.client_id(), 0);

	fake_client c2 = connect_client();
	EXPECT_EQ(c2.id, 2);
	add_all_own(srv_, c2);
	// The backend's doorbells outlive clients: the old fd still rings it.
	eventfd_signal(c1.doorbells[0].get());
	EXPECT_TRUE(readable(srv_.doorbell_fd(0)));
	// VM2's vectors are per connection.
	srv_.notify_vm2(0);
	EXPECT_TRUE(readable(c2.own[0].get()));
	EXPECT_FALSE(readable(c1.own[0].get()));
	srv_.notify_vm2(1);
	EXPECT_TRUE(readable(c2.own[1].get()));
}

TEST_F(IvshmemTest, SecondConcurrentClientClosed)
{
	fake_client c1 = connect_client();
	unique_fd c2 = unix_connect(dir_.path("ivs.sock"));
	EXPECT_FALSE(srv_.handle_listen());
	EXPECT_FALSE(recv_ivshmem_msg(c2.get())) << "second client got data instead of EOF";
	EXPECT_EQ(srv_.client_id(), c1.id);
	srv_.notify_vm2(0);
	EXPECT_TRUE(readable(c1.own[0].get()));
}

// VM2's QEMU sends nothing after connecting; a client that floods its
// socket anyway is read in chunks of read_budget bytes, one a call, so
// the daemon's loop (level-triggered) serves everything else in between.
TEST_F(IvshmemTest, ClientFloodIsReadInBoundedChunks)
{
	fake_client c = connect_client();
	const std::size_t budget = ivshmem_server::read_budget;
	const std::size_t sent = flood(c.sock.get(), std::string(4096, 'x'), 4 * budget);
	ASSERT_GT(sent, 2 * budget) << "the socket took too little to tell";
	srv_.handle_client();
	EXPECT_TRUE(srv_.client_connected());
	EXPECT_TRUE(readable(srv_.client_fd())) << "one call read the whole flood";
	std::size_t calls = 1;
	for (; readable(srv_.client_fd()) && calls < 1000; calls++)
		srv_.handle_client();
	EXPECT_GE(calls, sent / (budget + 256)) << "a call read more than its budget";
	EXPECT_FALSE(readable(srv_.client_fd())) << "the rest is read on later calls";
	EXPECT_TRUE(srv_.client_connected());
}

// A storm of second clients (each refused and closed) costs a few log lines.
TEST_F(IvshmemTest, SecondClientStormLogsABoundedNumberOfLines)
{
	fake_client c = connect_client();
	log_capture log;
	for (int i = 0; i < 50; i++) {
		unique_fd extra = unix_connect(dir_.path("ivs.sock"));
		EXPECT_FALSE(srv_.handle_listen());
	}
	EXPECT_EQ(srv_.client_id(), c.id);
	EXPECT_LE(log.count(spdlog::level::warn), 10u) << log.text();
	EXPECT_GE(log.count(spdlog::level::warn, "second client"), 1u) << log.text();
}

TEST_F(IvshmemTest, BusyPathRefused)
{
	try {
		ivshmem_server other(dir_.path("ivs.sock"), shm_.fd(), nvec);
		FAIL() << "second server on a live socket";
	} catch (const std::system_error &e) {
		EXPECT_THAT(e.what(), HasSubstr("busy"));
		EXPECT_THAT(e.what(), HasSubstr(dir_.path("ivs.sock")));
	}
	// The first server still works (the probe connection it accepted and
	// lost may have used up an id).
	fake_client c = connect_client();
	EXPECT_GE(c.id, 1);
}

TEST(IvshmemPath, StaleSocketReplaced)
{
	temp_dir d;
	shm_file shm(d.path("mem"), 1 << 20);
	const std::string p = d.path("stale.sock");
	{
		unique_fd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
		sockaddr_un sa{};
		sa.sun_family = AF_UNIX;
		std::strcpy(sa.sun_path, p.c_str());
		ASSERT_EQ(::bind(s.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)), 0);
	} // closed without unlink: stale
	ivshmem_server srv(p, shm.fd(), 1);
	unique_fd c = unix_connect(p);
	EXPECT_TRUE(srv.handle_listen());
}

TEST(IvshmemPath, RegularFileRefusedAndKept)
{
	temp_dir d;
	shm_file shm(d.path("mem"), 1 << 20);
	try {
		ivshmem_server srv(d.path("mem"), shm.fd(), 1);
		FAIL() << "listened on a regular file";
	} catch (const std::system_error &e) {
		EXPECT_THAT(e.what(), HasSubstr("not a socket"));
	}
	EXPECT_EQ(::access(d.path("mem").c_str(), F_OK), 0);
}

TEST(IvshmemPath, SocketUnlinkedOnDestruction)
{
	temp_dir d;
	shm_file shm(d.path("mem"), 1 << 20);
	{
		ivshmem_server srv(d.path("s"), shm.fd(), 1);
		EXPECT_EQ(::access(d.path("s").c_str(), F_OK), 0);
	}
	EXPECT_NE(::access(d.path("s").c_str(), F_OK), 0);
}

TEST(IvshmemIds, WrapWithinRange)
{
	temp_dir d;
	shm_file shm(d.path("mem"), 1 << 20);
	ivshmem_server srv(d.path("s"), shm.fd(), 1);
	std::int64_t last = 0;
	// Cheap enough: 65536 connects exercise the wrap 65535 -> 1.
	for (int i = 0; i < 65536; i++) {
		unique_fd c = unix_connect(d.path("s"));
		ASSERT_TRUE(srv.handle_listen());
		auto v = recv_ivshmem_msg(c.get());
		auto id = recv_ivshmem_msg(c.get());
		ASSERT_TRUE(v && id);
		ASSERT_GE(id->value, 1);
		ASSERT_LE(id->value, 65535);
		if (last) {
			ASSERT_EQ(id->value, last == 65535 ? 1 : last + 1);
		}
		last = id->value;
		c.reset();
		srv.handle_client();
		ASSERT_FALSE(srv.client_connected());
	}
	EXPECT_EQ(last, 1);
}

} // namespace
