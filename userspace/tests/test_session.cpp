// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The vhost-user session's checks (vhost_user_session.cpp), run once for
// each of its two devices: the daemon's VM1 session and the host datapath.
// What is observed is only what a front-end sees: the replies.
#include <cstdint>
#include <optional>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "backend.hpp"
#include "hostdp.hpp"
#include "test_util.hpp"
#include "vhost_user.hpp"
#include "vhost_user_session.hpp"
#include "virtio_net.hpp"

using namespace vpci;
using namespace vpci::test;

namespace {

/** The daemon: VM1's session behind a whole backend (two queue pairs). */
struct daemon_device {
	static constexpr unsigned pairs = 2;
	static backend_config config(const temp_dir &d)
	{
		backend_config c;
		c.ivshmem_socket = d.path("ivs.sock");
		c.mem_file = d.path("mem");
		c.ram_size = 4 << 20;
		c.ctrl.max_queue_pairs = pairs;
		c.vhost_user_socket = d.path("vu.sock");
		return c;
	}
	temp_dir dir;
	backend be{config(dir)};

	unique_fd connect()
	{
		unique_fd s = unix_connect(dir.path("vu.sock"));
		pump();
		return s;
	}
	void pump() { be.run_once(5); }
	/** VM1's RAM: the daemon takes only its own memory file. */
	unique_fd mem_fd() const
	{
		unique_fd fd(::open(dir.path("mem").c_str(), O_RDWR | O_CLOEXEC));
		if (!fd)
			throw_errno("open(mem)");
		return fd;
	}
};

/** The host datapath (one queue pair), its control side pumped in this thread. */
struct hostdp_device {
	static constexpr unsigned pairs = 1;
	hostdp::device dev{hostdp::config{}};

	unique_fd connect()
	{
		int sv[2];
		if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0)
			throw_errno("socketpair");
		unique_fd mine(sv[0]);
		EXPECT_TRUE(dev.attach(unique_fd(sv[1])));
		return mine;
	}
	void pump() { dev.poll_control(); }
	unique_fd mem_fd() const
	{
		unique_fd fd(::memfd_create("vm1-ram", MFD_CLOEXEC));
		if (!fd || ::ftruncate(fd.get(), 4 << 20) < 0)
			throw_errno("memfd_create");
		return fd;
	}
};

template <typename Device> class SessionTest : public ::testing::Test {
protected:
	/** Send with NEED_REPLY and return the u64 reply (~0: none). */
	template <typename P>
	std::uint64_t ask(vu::request r, const P &p, std::vector<int> fds = {})
	{
		vu::send_message(sock_.get(), static_cast<std::uint32_t>(r),
				 vu::version | vu::flag_need_reply, &p, sizeof(p), fds);
		return reply();
	}
	std::uint64_t ask_u64(vu::request r, std::uint64_t v) { return ask(r, v); }
	std::uint64_t get(vu::request r)
	{
		vu::send_message(sock_.get(), static_cast<std::uint32_t>(r), vu::version, nullptr,
				 0);
		return reply();
	}
	std::uint64_t reply()
	{
		for (int i = 0; i < 400; i++) {
			dev_.pump();
			if (auto m = vu::recv_raw(sock_.get(), 5))
				return m->u64().value_or(~0ULL);
		}
		ADD_FAILURE() << "no reply";
		return ~0ULL;
	}
	/** Features this device offers, PROTOCOL_FEATURES included. */
	std::uint64_t offered() { return get(vu::request::get_features); }

	Device dev_;
	unique_fd sock_ = dev_.connect();
};

using Devices = ::testing::Types<daemon_device, hostdp_device>;
class DeviceNames {
public:
	template <typename T> static std::string GetName(int)
	{
		return std::is_same_v<T, daemon_device> ? "daemon" : "hostdp";
	}
};
TYPED_TEST_SUITE(SessionTest, Devices, DeviceNames);

TYPED_TEST(SessionTest, FeaturesOnlyAsOfferedAndVersion1Required)
{
	const std::uint64_t f = this->offered();
	ASSERT_NE(f, ~0ULL);
	ASSERT_TRUE(f & vu::f_protocol_features);
	ASSERT_TRUE(f & virtio_net::bit(virtio_net::f_version_1));
	// A bit not offered.
	std::uint64_t missing = 0;
	for (unsigned b = 0; b < 64 && !missing; b++)
		if (!(f >> b & 1))
			missing = 1ULL << b;
	ASSERT_NE(missing, 0u);
	EXPECT_EQ(this->ask_u64(vu::request::set_features, f | missing), 1u);
	// A legacy driver: 10-byte headers, refused by both devices.
	EXPECT_EQ(this->ask_u64(vu::request::set_features,
				f & ~virtio_net::bit(virtio_net::f_version_1)),
		  1u);
	EXPECT_EQ(this->ask_u64(vu::request::set_features, f), 0u);
}

TYPED_TEST(SessionTest, ProtocolFeaturesAndQueueCount)
{
	EXPECT_EQ(this->get(vu::request::get_protocol_features), vu::session_protocol_features);
	EXPECT_EQ(this->ask_u64(vu::request::set_protocol_features,
				vu::session_protocol_features | 1ULL << vu::pf::config),
		  1u);
	EXPECT_EQ(this->ask_u64(vu::request::set_protocol_features, vu::session_protocol_features),
		  0u);
	EXPECT_EQ(this->get(vu::request::get_queue_num), TypeParam::pairs);
}

TYPED_TEST(SessionTest, RingMessagesChecked)
{
	const std::uint32_t rings = 2 * TypeParam::pairs;
	// Out of range, then not a power of two, then good.
	EXPECT_EQ(this->ask(vu::request::set_vring_num, vu::vring_state{rings, 256}), 1u);
	EXPECT_EQ(this->ask(vu::request::set_vring_num, vu::vring_state{0, 100}), 1u);
	EXPECT_EQ(this->ask(vu::request::set_vring_num, vu::vring_state{0, 65536}), 1u);
	EXPECT_EQ(this->ask(vu::request::set_vring_num, vu::vring_state{0, 256}), 0u);
	EXPECT_EQ(this->ask(vu::request::set_vring_base, vu::vring_state{0, 0x10000}), 1u);
	EXPECT_EQ(this->ask(vu::request::set_vring_base, vu::vring_state{rings, 0}), 1u);
	EXPECT_EQ(this->ask(vu::request::set_vring_base, vu::vring_state{0, 7}), 0u);
	EXPECT_EQ(this->ask(vu::request::set_vring_enable, vu::vring_state{0, 2}), 1u);
	EXPECT_EQ(this->ask(vu::request::set_vring_enable, vu::vring_state{rings, 1}), 1u);
	EXPECT_EQ(this->ask(vu::request::set_vring_enable, vu::vring_state{0, 1}), 0u);
	// No memory table: the ring's addresses translate through nothing.
	vu::vring_addr a{};
	a.desc_user_addr = 0x1000;
	a.avail_user_addr = 0x2000;
	a.used_user_addr = 0x3000;
	EXPECT_EQ(this->ask(vu::request::set_vring_addr, a), 1u);
	// A kick fd for a ring past the device's: refused, fd and all.
	unique_fd ev = make_eventfd();
	EXPECT_EQ(this->ask(vu::request::set_vring_kick, std::uint64_t{rings}, {ev.get()}), 1u);
	EXPECT_EQ(this->ask(vu::request::set_vring_kick, std::uint64_t{0}, {ev.get()}), 0u);
}

TYPED_TEST(SessionTest, IotlbNeedsAccessPlatformAndAMemoryTable)
{
	const std::uint64_t f = this->offered();
	constexpr std::uint64_t uaddr = 0x7f0000000000ULL;
	vu::iotlb_msg t{};
	t.iova = 0x10000;
	t.size = 0x1000;
	t.uaddr = uaddr + 0x3000;
	t.perm = 3;
	t.type = vu::iotlb_update;
	ASSERT_EQ(this->ask_u64(vu::request::set_features, f), 0u);
	// No memory table to find the user address in.
	EXPECT_EQ(this->ask(vu::request::iotlb_msg, t), 1u);
	vu::memory mem{};
	mem.nregions = 1;
	mem.regions[0] = {0, 1 << 20, uaddr, 0};
	unique_fd ram = this->dev_.mem_fd();
	// The payload holds the regions given, no more (as QEMU sends it).
	vu::send_message(this->sock_.get(), static_cast<std::uint32_t>(vu::request::set_mem_table),
			 vu::version | vu::flag_need_reply, &mem, 8 + sizeof(vu::mem_region),
			 {ram.get()});
	ASSERT_EQ(this->reply(), 0u);
	EXPECT_EQ(this->ask(vu::request::iotlb_msg, t), 0u);
	// Outside the table.
	t.uaddr = uaddr + (2 << 20);
	EXPECT_EQ(this->ask(vu::request::iotlb_msg, t), 1u);
	// Without ACCESS_PLATFORM addresses are GPAs: an IOTLB has no place.
	t.uaddr = uaddr + 0x3000;
	ASSERT_EQ(this->ask_u64(vu::request::set_features,
				f & ~virtio_net::bit(virtio_net::f_access_platform)),
		  0u);
	EXPECT_EQ(this->ask(vu::request::iotlb_msg, t), 1u);
}

TYPED_TEST(SessionTest, DirtyLoggingRefused)
{
	unique_fd ev = make_eventfd();
	vu::send_message(this->sock_.get(), static_cast<std::uint32_t>(vu::request::set_log_fd),
			 vu::version | vu::flag_need_reply, nullptr, 0, {ev.get()});
	EXPECT_EQ(this->reply(), 1u);
	// The session goes on.
	EXPECT_EQ(this->ask(vu::request::set_vring_num, vu::vring_state{0, 256}), 0u);
}

// The blocking reader the simulator and the tests use (vu::recv_raw()): a
// reset in the middle of a message is the reset, errno and all, not a
// "truncated" message.
// hostdp's control thread takes a bounded share of a front-end streaming
// messages per poll_control() (its socket is watched level-triggered: the
// rest wakes it again), and every message is answered over the next calls.
TEST(HostdpControl, WorkPerCallIsBounded)
{
	hostdp_device d;
	unique_fd sock = d.connect();
	constexpr unsigned n = 200;
	for (unsigned i = 0; i < n; i++)
		vu::send_message(sock.get(), static_cast<std::uint32_t>(vu::request::get_queue_num),
				 vu::version, nullptr, 0);
	const unsigned first = d.dev.poll_control();
	EXPECT_GT(first, 0u);
	EXPECT_LE(first, hostdp::device::control_budget) << "one call took the whole stream";
	unsigned handled = first;
	for (int i = 0; i < 100 && handled < n; i++)
		handled += d.dev.poll_control();
	EXPECT_EQ(handled, n);
	unsigned replies = 0;
	while (vu::recv_raw(sock.get(), 0))
		replies++;
	EXPECT_EQ(replies, n);
}

TEST(VhostUserReader, ResetMidMessageKeepsItsErrno)
{
	int sv[2];
	ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	unique_fd reader(sv[0]), writer(sv[1]);
	// Unread data in the writer's queue makes its close a reset for us.
	const char unread = 'x';
	ASSERT_EQ(::send(reader.get(), &unread, 1, 0), 1);
	const std::uint32_t half_header = 1; // 4 of the header's 12 bytes
	ASSERT_EQ(::send(writer.get(), &half_header, sizeof(half_header), 0), 4);
	writer.reset();
	try {
		(void)vu::recv_raw(reader.get(), 1000);
		ADD_FAILURE() << "no error";
	} catch (const std::system_error &e) {
		EXPECT_EQ(e.code().value(), ECONNRESET) << e.what();
	} catch (const std::exception &e) {
		ADD_FAILURE() << "errno lost: " << e.what();
	}
}

} // namespace
