// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The vhost-user back-end against an in-process fake front-end (acting like
// QEMU 7.2) over a real UNIX socket with real fds; the test also plays VM2's
// driver through the control area and the backend's doorbell.
#include <chrono>
#include <cstring>
#include <map>
#include <thread>
#include <set>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backend.hpp"
#include "log_limit.hpp"
#include "test_util.hpp"
#include "vhost_user.hpp"

using namespace vpci;
using namespace vpci::test;

namespace {

constexpr std::uint64_t kRam = 4 << 20;
constexpr std::uint64_t kUaddr = 0x7f0000000000ULL; // QEMU's mapping of RAM
constexpr std::size_t kShadowMax = 64; // the backend's shadow IOTLB cap here
constexpr std::uint64_t kPlatform = 1ULL << 33, kVersion1 = 1ULL << 32;

class VhostUserTest : public ::testing::Test {
protected:
	static backend_config config(const temp_dir &d)
	{
		backend_config c;
		c.ivshmem_socket = d.path("ivs.sock");
		c.mem_file = d.path("mem");
		c.ram_size = kRam;
		c.ctrl.max_queue_pairs = 2;
		c.vhost_user_socket = d.path("vu.sock");
		c.inval_timeout_ms = wait_timeout_ms;
		c.vring_base_timeout_ms = wait_timeout_ms;
		c.shadow_max = shadow_max;
		c.reannounce_peer = reannounce_peer;
		if (control_socket)
			c.control_socket = d.path("ctl.sock");
		return c;
	}
	/** The next fixture's backend has a control socket too (default not). */
	static inline bool control_socket = false;
	/** backend_config::reannounce_peer for the next fixture (default off). */
	static inline bool reannounce_peer = false;
	/** backend_config::inval_timeout_ms and vring_base_timeout_ms for the next fixture. */
	static inline int wait_timeout_ms = 200;
	/** backend_config::shadow_max for the next fixture. */
	static inline std::size_t shadow_max = kShadowMax;

	void SetUp() override { connect(); }

	void connect()
	{
		sock_ = unix_connect(dir_.path("vu.sock"));
		pump();
	}
	void pump(int rounds = 3)
	{
		for (int i = 0; i < rounds; i++)
			be_.run_once(5);
	}
	vpci_ctrl &ctrl() { return be_.control().raw(); }

	/**
	 * Send a request as the front-end would, then let the backend read it.
	 * Any request number and payload size go through, so malformed ones
	 * can be sent too; more than max_fds needs vu::send_raw().
	 */
	void send(std::uint32_t req, const void *p, std::size_t len, std::vector<int> fds = {},
		  bool need_reply = false)
	{
		const std::uint32_t flags = vu::version | (need_reply ? vu::flag_need_reply : 0u);
		vu::send_message(sock_.get(), req, flags, p, len, fds);
		pump();
	}
	void send_u64(vu::request r, std::uint64_t v, bool need_reply = true, std::vector<int> fds = {})
	{
		send(static_cast<std::uint32_t>(r), &v, sizeof(v), std::move(fds), need_reply);
	}
	template <typename P>
	void send_p(vu::request r, const P &p, bool need_reply = true, std::vector<int> fds = {})
	{
		send(static_cast<std::uint32_t>(r), &p, sizeof(p), std::move(fds), need_reply);
	}

	/**
	 * Read one message from @p fd, pumping the backend meanwhile: it runs
	 * in this thread, so recv_raw() must not block waiting for it.  EOF
	 * or a malformed message throws (the test fails).
	 */
	std::optional<vu::raw_message> recv_from(int fd, int ms = 3000)
	{
		for (auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
		     std::chrono::steady_clock::now() < end;) {
			if (auto m = vu::recv_raw(fd, 0))
				return m;
			be_.run_once(5);
		}
		return std::nullopt;
	}
	std::optional<vu::raw_message> recv_reply(int ms = 3000)
	{
		return recv_from(sock_.get(), ms);
	}
	std::uint64_t ack(int ms = 3000)
	{
		auto r = recv_reply(ms);
		EXPECT_TRUE(r) << "no reply";
		return r ? r->u64().value_or(~0ULL) : ~0ULL;
	}

	/** Play VM2's driver: bound with @p features, ring the doorbell. */
	void bind_driver(std::uint64_t features = default_device_features)
	{
		le_store(ctrl().driver.device_features, features);
		le_store(ctrl().driver.status, VPCI_DS_BOUND, std::memory_order_release);
		ring_doorbell();
	}
	/** SET_SLAVE_REQ_FD with one end of a socketpair; the other end (VM1's). */
	unique_fd slave_channel()
	{
		int sv[2];
		if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
			return unique_fd();
		unique_fd ours(sv[0]), theirs(sv[1]);
		send(static_cast<std::uint32_t>(vu::request::set_slave_req_fd), nullptr, 0,
		     {theirs.get()}, true);
		EXPECT_EQ(ack(), 0u);
		return ours;
	}
	void ring_doorbell()
	{
		eventfd_signal(be_.ivshmem().doorbell_fd(VPCI_VEC_CONFIG));
		pump();
	}
	/** The driver confirms the backend's current generation. */
	void driver_confirms()
	{
		le_store(ctrl().driver.generation_seen, be_.control().generation(),
			 std::memory_order_release);
		ring_doorbell();
	}
	/**
	 * A bound driver and ring 0 live (base 7, enabled); returns the memory
	 * file, which must stay open.
	 */
	unique_fd live_ring0()
	{
		bind_driver();
		negotiate(default_device_features);
		unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
		EXPECT_EQ(set_mem_table(mem.get()), 0u);
		setup_ring(0, 0x10000, 0x11000, 0x12000);
		send_p(vu::request::set_vring_enable, vu::vring_state{0, 1});
		EXPECT_EQ(ack(), 0u);
		EXPECT_EQ(le_load(ctrl().vq_config[0].enabled), 1);
		return mem;
	}
	void driver_post(const vpci_msg &m)
	{
		auto &r = ctrl().d2b;
		std::uint32_t p = le_load(r.prod);
		r.ent[p % VPCI_MSG_RING_SIZE] = m;
		le_store(r.prod, p + 1, std::memory_order_release);
	}
	/** Consume all b2d entries (the driver side). */
	std::vector<vpci_msg> driver_drain() { return test::drain_b2d(ctrl()); }

	/**
	 * driver_drain() until at least @p n messages came, or 5 s, running
	 * the backend meanwhile: on a loaded machine a short wait for a
	 * reply may have ended before the backend read the request.
	 */
	std::vector<vpci_msg> driver_wait(std::size_t n)
	{
		std::vector<vpci_msg> out;
		const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
		while (out.size() < n && std::chrono::steady_clock::now() < end) {
			auto more = driver_drain();
			out.insert(out.end(), more.begin(), more.end());
			if (out.size() < n)
				be_.run_once(5);
		}
		return out;
	}

	/** Negotiate like QEMU: protocol features, features, owner. */
	void negotiate(std::uint64_t features)
	{
		send(static_cast<std::uint32_t>(vu::request::get_features), nullptr, 0);
		ASSERT_TRUE(recv_reply());
		send(static_cast<std::uint32_t>(vu::request::get_protocol_features), nullptr, 0);
		ASSERT_TRUE(recv_reply());
		send_u64(vu::request::set_protocol_features, offered_protocol_features);
		ASSERT_EQ(ack(), 0u);
		send(static_cast<std::uint32_t>(vu::request::set_owner), nullptr, 0);
		send_u64(vu::request::set_features, features | vu::f_protocol_features);
		ASSERT_EQ(ack(), 0u);
	}
	/** One region covering all of RAM, uaddr kUaddr, GPA 0. */
	std::uint64_t set_mem_table(int fd, std::uint64_t size = kRam, std::uint64_t off = 0)
	{
		vu::memory mem{};
		mem.nregions = 1;
		mem.regions[0] = {0, size, kUaddr, off};
		send(static_cast<std::uint32_t>(vu::request::set_mem_table), &mem, 8 + 32, {fd},
		     true);
		return ack();
	}
	std::uint64_t iotlb(std::uint8_t type, std::uint64_t iova, std::uint64_t size,
			    std::uint64_t uaddr = 0, std::uint8_t perm = VPCI_PERM_RW)
	{
		vu::iotlb_msg t{};
		t.iova = iova;
		t.size = size;
		t.uaddr = uaddr;
		t.perm = perm;
		t.type = type;
		send_p(vu::request::iotlb_msg, t);
		return type == vu::iotlb_invalidate ? 0 : ack();
	}
	void setup_ring(unsigned q, std::uint64_t desc, std::uint64_t avail, std::uint64_t used)
	{
		send_p(vu::request::set_vring_num, vu::vring_state{q, 256});
		ASSERT_EQ(ack(), 0u);
		send_p(vu::request::set_vring_base, vu::vring_state{q, 7});
		ASSERT_EQ(ack(), 0u);
		send_p(vu::request::set_vring_addr, vu::vring_addr{q, 0, desc, used, avail, 0});
		ASSERT_EQ(ack(), 0u);
		// The ring starts on SET_VRING_KICK (here without an fd: polling).
		send_u64(vu::request::set_vring_kick, q | vu::vring_nofd_mask, true, {});
		ASSERT_EQ(ack(), 0u);
	}
	std::uint32_t bstatus() { return le_load(ctrl().backend.status); }

	/** VM2's QEMU as an ivshmem client: what it was given so far. */
	struct vm2 {
		unique_fd sock;
		std::int64_t id = 0;
		std::vector<unique_fd> peer; // peer 0's vectors (current set)
		std::vector<unique_fd> own;  // own MSI-X vectors, in order
		std::map<std::int64_t, std::vector<unique_fd>> others; // other peers' vectors
		unsigned peer_gone = 0;
	};
	static constexpr unsigned kVectors = VPCI_NUM_VECTORS(2);

	/** Connect, pump, read the setup sequence (checked) and anything after. */
	vm2 connect_vm2()
	{
		vm2 c;
		c.sock = unix_connect(dir_.path("ivs.sock"));
		pump();
		auto m = recv_ivshmem_msg(c.sock.get());
		EXPECT_TRUE(m && m->value == 0 && !m->fd) << "version";
		m = recv_ivshmem_msg(c.sock.get());
		EXPECT_TRUE(m && m->value > 0 && !m->fd) << "id";
		c.id = m ? m->value : -1;
		m = recv_ivshmem_msg(c.sock.get());
		EXPECT_TRUE(m && m->value == -1 && m->fd) << "shm";
		for (unsigned v = 0; v < kVectors; v++) {
			m = recv_ivshmem_msg(c.sock.get());
			EXPECT_TRUE(m && m->value == 0 && m->fd) << "peer 0 vector " << v;
			if (m)
				c.peer.push_back(std::move(m->fd));
		}
		m = recv_ivshmem_msg(c.sock.get());
		EXPECT_TRUE(m && m->value == c.id && m->fd) << "own vector 0";
		if (m)
			c.own.push_back(std::move(m->fd));
		return c;
	}
	/**
	 * Read what the server sent since, as QEMU would apply it: own vectors
	 * appended, "peer 0 gone" clears peer 0, "0 + fd" appends.
	 * @return messages read
	 */
	unsigned vm2_read(vm2 &c)
	{
		unsigned n = 0;
		while (readable(c.sock.get())) {
			auto m = recv_ivshmem_msg(c.sock.get());
			if (!m)
				break;
			n++;
			if (m->value == c.id) {
				EXPECT_TRUE(m->fd) << "own vector without fd";
				c.own.push_back(std::move(m->fd));
			} else if (m->value == 0 && !m->fd) {
				c.peer_gone++;
				c.peer.clear();
			} else if (m->value == 0) {
				c.peer.push_back(std::move(m->fd));
			} else if (m->fd) {
				c.others[m->value].push_back(std::move(m->fd));
			} else {
				ADD_FAILURE() << "peer " << m->value << " gone: QEMU 7.2 cannot take it back";
			}
		}
		return n;
	}
	nlohmann::json qstatus(unsigned q) { return be_.status()["frontend"]["queues"][q]; }
	void set_kick(unsigned q, int fd)
	{
		send_u64(vu::request::set_vring_kick, q, true, {fd});
		EXPECT_EQ(ack(), 0u);
	}
	void set_call(unsigned q, int fd)
	{
		send_u64(vu::request::set_vring_call, q, true, {fd});
		EXPECT_EQ(ack(), 0u);
	}

	temp_dir dir_;
	backend be_{config(dir_)};
	unique_fd sock_;
};

TEST_F(VhostUserTest, FeaturesUnboundDriver)
{
	EXPECT_TRUE(bstatus() & VPCI_BS_FRONTEND);
	send(static_cast<std::uint32_t>(vu::request::get_features), nullptr, 0);
	auto r = recv_reply();
	ASSERT_TRUE(r);
	EXPECT_EQ(r->flags, vu::version | vu::flag_reply);
	// Two pairs wired: MQ too (VM1's QEMU enables the pairs VM1 asks for).
	EXPECT_EQ(r->u64(),
		  default_device_features | virtio_net::bit(virtio_net::f_mq) | vu::f_protocol_features);
	send(static_cast<std::uint32_t>(vu::request::get_protocol_features), nullptr, 0);
	EXPECT_EQ(ack(), offered_protocol_features);
	send(static_cast<std::uint32_t>(vu::request::get_queue_num), nullptr, 0);
	EXPECT_EQ(ack(), 2u);
	send_u64(vu::request::set_protocol_features, 1ULL << 9); // CONFIG: not offered
	EXPECT_EQ(ack(), 1u);
	negotiate(default_device_features);
	EXPECT_EQ(le_load(ctrl().backend.features), default_device_features);
	EXPECT_TRUE(bstatus() & VPCI_BS_IOMMU);
	auto st = be_.status();
	EXPECT_EQ(st["frontend"]["connected"], true);
	EXPECT_EQ(st["frontend"]["features"], default_device_features);
	EXPECT_EQ(st["frontend"]["protocol_features"], offered_protocol_features);
	EXPECT_EQ(st["frontend"]["queues"].size(), 4u);
	EXPECT_EQ(st["iotlb"]["timeouts"], 0);
}

TEST_F(VhostUserTest, FeaturesBoundDriverExactly)
{
	const std::uint64_t f = kVersion1 | kPlatform | (1ULL << 5);
	bind_driver(f);
	send(static_cast<std::uint32_t>(vu::request::get_features), nullptr, 0);
	EXPECT_EQ(ack(), f | vu::f_protocol_features);
	send_u64(vu::request::set_features, f | (1ULL << 15)); // MRG_RXBUF not offered now
	EXPECT_EQ(ack(), 1u);
	send_u64(vu::request::set_features, kVersion1);
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(ctrl().backend.features), kVersion1);
	EXPECT_FALSE(bstatus() & VPCI_BS_IOMMU);
}

TEST_F(VhostUserTest, LegacyDriverWithoutVersion1Refused)
{
	negotiate(default_device_features);
	send_u64(vu::request::set_features, default_device_features & ~kVersion1);
	EXPECT_EQ(ack(), 1u);
	EXPECT_EQ(le_load(ctrl().backend.features), default_device_features);
}

TEST_F(VhostUserTest, MemTableFileIdentityAndBounds)
{
	negotiate(default_device_features);
	unique_fd same(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	EXPECT_EQ(set_mem_table(same.get()), 0u);
	unique_fd foreign(::memfd_create("foreign", MFD_CLOEXEC));
	ASSERT_EQ(::ftruncate(foreign.get(), kRam), 0);
	EXPECT_EQ(set_mem_table(foreign.get()), 1u) << "region fd is not the shared memory file";
	EXPECT_EQ(set_mem_table(same.get(), kRam, 4096), 1u) << "past peer_mem_size";
	EXPECT_EQ(set_mem_table(same.get(), ~0ULL - 4095, 8192), 1u) << "overflow";
	EXPECT_EQ(be_.status()["frontend"]["mem_regions"], 1);
}

// Without PROTOCOL_FEATURES there is no SET_VRING_ENABLE: a ring starts
// enabled with its kick (vhost-user spec, "Ring states"), as hostdp always
// did and the daemon did not (one session now).
TEST_F(VhostUserTest, RingStartsEnabledWithoutProtocolFeatures)
{
	send(static_cast<std::uint32_t>(vu::request::get_features), nullptr, 0);
	ASSERT_TRUE(recv_reply());
	send_u64(vu::request::set_features, default_device_features);
	ASSERT_EQ(ack(), 0u);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	setup_ring(0, 0x10000, 0x11000, 0x12000);
	EXPECT_EQ(le_load(ctrl().vq_config[0].enabled), 1);
	EXPECT_TRUE(bstatus() & VPCI_BS_RUNNING);
}

TEST_F(VhostUserTest, RingSetupIovaMode)
{
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	const std::uint32_t g0 = be_.control().generation();
	setup_ring(1, 0x10000, 0x11000, 0x12000);
	send_p(vu::request::set_vring_enable, vu::vring_state{1, 1});
	EXPECT_EQ(ack(), 0u);
	auto &c = ctrl().vq_config[1];
	EXPECT_EQ(le_load(c.desc), 0x10000u); // IOVAs as given
	EXPECT_EQ(le_load(c.avail), 0x11000u);
	EXPECT_EQ(le_load(c.used), 0x12000u);
	EXPECT_EQ(le_load(c.num), 256);
	EXPECT_EQ(le_load(c.base), 7);
	EXPECT_EQ(le_load(c.enabled), 1);
	EXPECT_TRUE(bstatus() & VPCI_BS_RUNNING);
	EXPECT_EQ(le_load(ctrl().backend.num_queue_pairs), 1);
	EXPECT_GT(be_.control().generation(), g0);
	send_p(vu::request::set_vring_num, vu::vring_state{1, 0});
	EXPECT_EQ(ack(), 1u) << "size 0";
	send_p(vu::request::set_vring_num, vu::vring_state{1, 100});
	EXPECT_EQ(ack(), 1u) << "not a power of two";
	send_p(vu::request::set_vring_num, vu::vring_state{4, 256});
	EXPECT_EQ(ack(), 1u) << "queue out of range";
	EXPECT_EQ(le_load(c.num), 256);
	// GET_VRING_BASE without a driver: the base VM1 set.
	send_p(vu::request::get_vring_base, vu::vring_state{1, 0}, false);
	auto r = recv_reply();
	ASSERT_TRUE(r);
	ASSERT_EQ(r->payload.size(), 8u);
	vu::vring_state s;
	std::memcpy(&s, r->payload.data(), 8);
	EXPECT_EQ(s.index, 1u);
	EXPECT_EQ(s.num, 7u);
	EXPECT_EQ(le_load(c.enabled), 0);
	// Stopped: a later SET_VRING_ENABLE does not restart it; a kick does.
	send_p(vu::request::set_vring_enable, vu::vring_state{1, 1});
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(c.enabled), 0) << "GET_VRING_BASE stopped the ring";
	send_u64(vu::request::set_vring_kick, 1 | vu::vring_nofd_mask, true, {});
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(c.enabled), 1);
}

// QEMU 7.2 sends SET_VRING_ENABLE as soon as protocol features are set,
// long before SET_VRING_NUM/ADDR: accepted, published once described.
TEST_F(VhostUserTest, EnableBeforeRingDescribed)
{
	negotiate(default_device_features);
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 1});
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(ctrl().vq_config[0].enabled), 0) << "nothing to enable yet";
	EXPECT_FALSE(bstatus() & VPCI_BS_RUNNING);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	setup_ring(0, 0x20000, 0x21000, 0x22000);
	EXPECT_EQ(le_load(ctrl().vq_config[0].enabled), 1);
	EXPECT_TRUE(bstatus() & VPCI_BS_RUNNING);
}

TEST_F(VhostUserTest, RingSetupGpaMode)
{
	bind_driver(kVersion1 | (1ULL << 15));
	negotiate(kVersion1);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u) << "one identity UPDATE per region";
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_UPDATE);
	EXPECT_EQ(le_load(msgs[0].iova), 0u);
	EXPECT_EQ(le_load(msgs[0].size), kRam);
	EXPECT_EQ(le_load(msgs[0].bar_offset), 0u);
	EXPECT_EQ(msgs[0].perm, VPCI_PERM_RW);
	setup_ring(0, kUaddr + 0x1000, kUaddr + 0x2000, kUaddr + 0x3000);
	auto &c = ctrl().vq_config[0];
	EXPECT_EQ(le_load(c.desc), 0x1000u);
	EXPECT_EQ(le_load(c.avail), 0x2000u);
	EXPECT_EQ(le_load(c.used), 0x3000u);
	send_p(vu::request::set_vring_addr, vu::vring_addr{0, 0, 0x1000, 0x2000, 0x3000, 0});
	EXPECT_EQ(ack(), 1u) << "address outside every region";
	EXPECT_EQ(le_load(c.desc), 0x1000u);
}

TEST_F(VhostUserTest, IotlbUpdateReachesDriver)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get(), kRam - 0x100000, 0x100000), 0u);
	EXPECT_EQ(iotlb(vu::iotlb_update, 0xfffff000, 0x1000, kUaddr + 0x5000, VPCI_PERM_RO), 0u);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u);
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_UPDATE);
	EXPECT_EQ(le_load(msgs[0].iova), 0xfffff000u);
	EXPECT_EQ(le_load(msgs[0].size), 0x1000u);
	EXPECT_EQ(le_load(msgs[0].bar_offset), 0x105000u); // mmap_offset + (uaddr - base)
	EXPECT_EQ(msgs[0].perm, VPCI_PERM_RO);
	EXPECT_EQ(iotlb(vu::iotlb_update, 0x1000, 0x1000, kUaddr + kRam), 1u) << "outside region";
	EXPECT_EQ(iotlb(vu::iotlb_update, ~0ULL - 0xfff, 0x2000, kUaddr), 1u) << "IOVA wraps";
	EXPECT_EQ(iotlb(vu::iotlb_update, 0x1000, 0, kUaddr), 1u) << "size 0";
	EXPECT_EQ(iotlb(vu::iotlb_update, 0x1000, 0x1000, kUaddr, 0), 1u) << "no permission";
	EXPECT_TRUE(driver_drain().empty());
	EXPECT_EQ(be_.status()["iotlb"]["updates"], 1);
	EXPECT_EQ(be_.status()["iotlb"]["rejected"], 4);
}

TEST_F(VhostUserTest, MissGoesToSlaveChannel)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd ours = slave_channel();
	ASSERT_TRUE(ours);
	vpci_msg miss{};
	miss.type = VPCI_MSG_IOTLB_MISS;
	miss.perm = VPCI_PERM_WO;
	miss.queue = htole16(0);
	miss.iova = htole64(0xabc000);
	miss.size = htole64(1);
	driver_post(miss);
	ring_doorbell();
	auto r = recv_from(ours.get());
	ASSERT_TRUE(r);
	EXPECT_EQ(r->req, static_cast<std::uint32_t>(vu::slave_request::iotlb_msg));
	EXPECT_EQ(r->flags & vu::flag_need_reply, 0u);
	ASSERT_EQ(r->payload.size(), sizeof(vu::iotlb_msg));
	vu::iotlb_msg t;
	std::memcpy(&t, r->payload.data(), sizeof(t));
	EXPECT_EQ(t.type, vu::iotlb_miss);
	EXPECT_EQ(t.iova, 0xabc000u);
	EXPECT_EQ(t.perm, VPCI_PERM_WO);
	EXPECT_EQ(be_.status()["iotlb"]["misses_sent"], 1);
}

// A driver that fills the d2b ring gets d2b_budget messages a wakeup: the
// loop turns (other fds are served: VM1's request is answered while the
// ring still holds most of the burst) and comes back for the rest at once.
// Its malformed entries' warnings are rate-limited (log_limit's burst of 10
// per 5 s), not one line each.
TEST_F(VhostUserTest, D2bWorkPerWakeupIsBounded)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd ours = slave_channel();
	ASSERT_TRUE(ours);
	log_capture log;
	constexpr unsigned n = 400;
	for (unsigned i = 0; i < n; i++) {
		vpci_msg miss{};
		miss.type = VPCI_MSG_IOTLB_MISS;
		miss.perm = i % 2 ? VPCI_PERM_WO : 7; // every other one malformed
		miss.iova = htole64(0x100000 + i * 0x1000);
		miss.size = htole64(1);
		driver_post(miss);
	}
	eventfd_signal(be_.ivshmem().doorbell_fd(VPCI_VEC_CONFIG));
	// VM1 asks something in the same breath (not pumped: it waits for
	// the turns below).
	vu::send_message(sock_.get(), static_cast<std::uint32_t>(vu::request::get_queue_num),
			 vu::version, nullptr, 0);
	be_.run_once(0); // the doorbell's turn, then the deadline's
	const auto first = be_.status()["iotlb"]["misses_sent"].get<unsigned>();
	EXPECT_GT(first, 0u);
	EXPECT_LE(first, vm1_session::d2b_budget) << "at most two budgets (half valid) in one turn";
	// VM1's reply comes while most of the burst still waits in the ring.
	std::optional<vu::raw_message> reply = vu::recv_raw(sock_.get(), 0);
	for (int i = 0; i < 20 && !reply; i++) {
		be_.run_once(0);
		reply = vu::recv_raw(sock_.get(), 0);
	}
	const auto sent_by_reply = be_.status()["iotlb"]["misses_sent"].get<unsigned>();
	ASSERT_TRUE(reply) << "VM1 was not answered while the d2b ring was full";
	EXPECT_EQ(reply->req, static_cast<std::uint32_t>(vu::request::get_queue_num));
	EXPECT_LE(sent_by_reply, n / 4) << "VM1 was answered only after the d2b burst";
	pump(20);
	EXPECT_EQ(be_.status()["iotlb"]["misses_sent"], n / 2) << "the rest on later turns";
	std::size_t got = 0;
	while (vu::recv_raw(ours.get(), 0))
		got++;
	EXPECT_EQ(got, n / 2);
	// n / 2 entries with a bad permission: a burst of warnings, not n / 2.
	const std::size_t warned = log.count(spdlog::level::warn, "bad perm");
	EXPECT_GE(warned, 1u) << "the malformed entries were not reported";
	EXPECT_LE(warned, 10u) << "one warning per malformed d2b entry: " << warned;
}

// A backend with a control socket, for what control clients must not hold up.
class VhostUserWithControl : public VhostUserTest {
protected:
	static void SetUpTestSuite() { control_socket = true; }
	static void TearDownTestSuite() { control_socket = false; }
};

// EMFILE and a flood of control clients: while the control listener rests
// after accept4() failed (no fd left), with the most control clients there
// may be (64) connected, a quarter of them streaming requests, and one more
// waiting to be accepted, VM1's request is answered and a miss VM2's driver
// posts reaches VM1's back-end channel, both within 100 ms; the flood is
// still being worked off meanwhile, and answered in full once fds are free.
TEST_F(VhostUserWithControl, EmfileAndAControlFloodLeaveVm1AndVm2Served)
{
	using clock = std::chrono::steady_clock;
	bind_driver();
	negotiate(default_device_features);
	unique_fd ours = slave_channel();
	ASSERT_TRUE(ours);
	const std::string ctl = dir_.path("ctl.sock");
	constexpr std::size_t clients = 64, streaming = clients / 4, each = 200;
	std::vector<unique_fd> flood;
	for (std::size_t i = 0; i < clients; i++) {
		flood.push_back(unix_connect(ctl));
		be_.run_once(0);
	}
	std::string reqs;
	for (std::size_t i = 0; i < each; i++)
		reqs += "{\"cmd\":\"nope\"}\n"; // a short error reply each
	for (std::size_t i = 0; i < streaming; i++)
		ASSERT_EQ(::send(flood[i].get(), reqs.data(), reqs.size(), MSG_NOSIGNAL),
			  static_cast<ssize_t>(reqs.size()));
	std::vector<std::string> got(streaming);
	auto answered = [&] {
		std::size_t n = 0;
		for (std::size_t i = 0; i < streaming; i++)
			n += lines_so_far(flood[i].get(), got[i]);
		return n;
	};

	// No fd left for accept4() (as in BackendTest's
	// AcceptFailureIsCountedAndTheListenerRests), a 65th client waiting.
	rlimit old{};
	ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &old), 0);
	const int probe = ::dup(0); // the lowest free fd: everything below is in use
	ASSERT_GE(probe, 0);
	::close(probe);
	unique_fd waiting = unix_connect(ctl); // takes fd `probe`
	rlimit low = old;
	low.rlim_cur = static_cast<rlim_t>(probe + 1);
	ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
	struct restore {
		rlimit r;
		~restore() { ::setrlimit(RLIMIT_NOFILE, &r); }
	} restore_limit{old};
	const auto errors0 = be_.status()["handler_errors"].get<std::uint64_t>();
	for (int i = 0; i < 50 && be_.status()["handler_errors"].get<std::uint64_t>() == errors0;
	     i++)
		be_.run_once(5);
	ASSERT_GT(be_.status()["handler_errors"].get<std::uint64_t>(), errors0)
		<< "accept4() did not fail";

	// The listener rests; VM1 asks, VM2's driver reports a miss.
	const auto t0 = clock::now();
	vu::send_message(sock_.get(), static_cast<std::uint32_t>(vu::request::get_queue_num),
			 vu::version, nullptr, 0);
	vpci_msg miss{};
	miss.type = VPCI_MSG_IOTLB_MISS;
	miss.perm = VPCI_PERM_RO;
	miss.iova = htole64(0xabc000);
	miss.size = htole64(1);
	driver_post(miss);
	eventfd_signal(be_.ivshmem().doorbell_fd(VPCI_VEC_CONFIG));
	std::optional<vu::raw_message> reply, to_vm1;
	while ((!reply || !to_vm1) && clock::now() - t0 < std::chrono::seconds(3)) {
		be_.run_once(5);
		if (!reply)
			reply = vu::recv_raw(sock_.get(), 0);
		if (!to_vm1)
			to_vm1 = vu::recv_raw(ours.get(), 0);
	}
	const auto took = clock::now() - t0;
	const std::size_t flood_answered = answered();
	ASSERT_TRUE(reply) << "VM1 was not answered";
	EXPECT_EQ(reply->u64(), 2u) << "GET_QUEUE_NUM";
	ASSERT_TRUE(to_vm1) << "VM2's miss did not reach VM1";
	EXPECT_EQ(to_vm1->req, static_cast<std::uint32_t>(vu::slave_request::iotlb_msg));
	EXPECT_LT(took, std::chrono::milliseconds(100))
		<< "VM1 and VM2 waited for the control listener or its clients: "
		<< std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
	EXPECT_LT(flood_answered, streaming * each)
		<< "VM1 and VM2 were served only after the whole flood";

	// fds free again: the waiting 65th client is told it is one too many,
	// and every flood request is answered.
	ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &old), 0);
	std::string busy;
	std::size_t total = flood_answered;
	for (int i = 0; i < 500 && (total < streaming * each || busy.empty()); i++) {
		be_.run_once(5);
		lines_so_far(waiting.get(), busy);
		total = answered();
	}
	EXPECT_NE(busy.find("too many control clients"), std::string::npos) << busy;
	EXPECT_EQ(total, streaming * each);
}

// The shadow IOTLB holds what the driver's IOTLB can (65,536 entries; this
// fixture's backend 64): an update past that is refused (NAK), not grown
// without bound.
TEST_F(VhostUserTest, ShadowIotlbIsCapped)
{
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	std::uint64_t refused = 0, accepted = 0;
	// Every other page, so that none merge.
	for (std::uint64_t i = 0; i < kShadowMax + 10; i++)
		(iotlb(vu::iotlb_update, 0x100000000ULL + 2 * i * 0x1000, 0x1000, kUaddr) ? refused
											 : accepted)++;
	EXPECT_EQ(accepted, kShadowMax - 1);
	EXPECT_EQ(refused, 11u);
	EXPECT_EQ(be_.status()["iotlb"]["shadow_entries"], kShadowMax - 1);
	// An invalidation makes room again.
	iotlb(vu::iotlb_invalidate, 0x100000000ULL, 0x1000);
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(iotlb(vu::iotlb_update, 0x100000000ULL, 0x1000, kUaddr), 0u);
}

TEST_F(VhostUserTest, InvalidateWaitsForDriverAck)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	ASSERT_EQ(iotlb(vu::iotlb_update, 0x4000, 0x1000, kUaddr), 0u);
	driver_drain();
	iotlb(vu::iotlb_invalidate, 0x4000, 0x1000);
	// A second message behind it must not be processed first.
	send(static_cast<std::uint32_t>(vu::request::get_queue_num), nullptr, 0);
	EXPECT_FALSE(recv_reply(100)) << "invalidation acked before the driver acked";
	auto msgs = driver_wait(1);
	ASSERT_EQ(msgs.size(), 1u);
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_INVALIDATE);
	EXPECT_EQ(le_load(msgs[0].iova), 0x4000u);
	EXPECT_EQ(le_load(msgs[0].size), 0x1000u);
	vpci_msg a{};
	a.type = VPCI_MSG_IOTLB_INV_ACK;
	a.seq = htole32(le_load(msgs[0].seq) + 1); // wrong seq: still no reply
	driver_post(a);
	ring_doorbell();
	EXPECT_FALSE(recv_reply(50));
	a.seq = msgs[0].seq;
	driver_post(a);
	ring_doorbell();
	EXPECT_EQ(ack(), 0u) << "invalidate reply";
	EXPECT_EQ(ack(), 2u) << "then the queued GET_QUEUE_NUM";
	EXPECT_EQ(be_.status()["iotlb"]["acks"], 1);
	EXPECT_EQ(be_.status()["iotlb"]["to_driver"], 1);
	EXPECT_FALSE(bstatus() & VPCI_BS_BROKEN);
}

// While VM1's reply waits for the driver, the backend stops reading VM1's
// socket.  A hang-up meanwhile ends the session at once, not when the wait
// times out (5 s here), without spinning the event loop on EPOLLHUP, and the
// driver is still told to drop every translation (the security hinge: the
// invalidation VM1 never got its reply for is covered by the flush).
class VhostUserLongWait : public VhostUserTest {
protected:
	static void SetUpTestSuite() { wait_timeout_ms = 5000; }
	static void TearDownTestSuite() { wait_timeout_ms = 200; }

	/** This thread's CPU time (getrusage(RUSAGE_THREAD)). */
	static std::chrono::microseconds cpu_time()
	{
		rusage ru{};
		EXPECT_EQ(::getrusage(RUSAGE_THREAD, &ru), 0);
		return std::chrono::seconds(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
		       std::chrono::microseconds(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
	}
	/**
	 * VM1 hangs up while its reply waits: the session must end well
	 * before the 5 s wait would, with the loop near idle meanwhile.
	 */
	void hang_up_and_expect_the_end()
	{
		sock_.reset(); // VM1's QEMU goes away
		const auto t0 = std::chrono::steady_clock::now();
		const auto c0 = cpu_time();
		while (be_.status()["frontend"]["connected"] == true &&
		       std::chrono::steady_clock::now() - t0 < std::chrono::seconds(6))
			be_.run_once(50);
		const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
					std::chrono::steady_clock::now() - t0)
					.count();
		EXPECT_EQ(be_.status()["frontend"]["connected"], false);
		EXPECT_LT(ms, 300) << "the hang-up was seen only when the wait ended";
		EXPECT_FALSE(bstatus() & VPCI_BS_FRONTEND);
		// Afterwards: 20 waits of 10 ms wait (no EPOLLHUP spin), near idle.
		const auto t1 = std::chrono::steady_clock::now();
		const auto c1 = cpu_time();
		for (int i = 0; i < 20; i++)
			be_.run_once(10);
		const auto wall = std::chrono::steady_clock::now() - t1;
		EXPECT_GE(wall, std::chrono::milliseconds(150)) << "the loop spins";
		EXPECT_LT(cpu_time() - c1, wall / 4) << "CPU far from idle";
		EXPECT_LT(c1 - c0, std::chrono::milliseconds(100)) << "CPU spent until the end";
	}
	/** The driver was told to drop everything (iova 0, size 0: to the end). */
	void expect_driver_flushed()
	{
		bool flushed = false;
		for (const vpci_msg &m : driver_drain())
			flushed |= m.type == VPCI_MSG_IOTLB_INVALIDATE && le_load(m.iova) == 0 &&
				   le_load(m.size) == 0;
		EXPECT_TRUE(flushed) << "no IOTLB flush posted to the driver";
	}
};

TEST_F(VhostUserLongWait, HangUpWhileAnInvalidationWaitsEndsTheSessionAtOnce)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	ASSERT_EQ(iotlb(vu::iotlb_update, 0x4000, 0x1000, kUaddr), 0u);
	driver_drain();
	iotlb(vu::iotlb_invalidate, 0x4000, 0x1000);
	ASSERT_EQ(driver_wait(1).size(), 1u) << "the invalidation waits for the driver";
	// A message behind it stays unread (the socket is paused) when VM1 goes.
	send(static_cast<std::uint32_t>(vu::request::get_queue_num), nullptr, 0);
	hang_up_and_expect_the_end();
	expect_driver_flushed();
	EXPECT_EQ(be_.status()["iotlb"]["shadow_entries"], 0);
	EXPECT_EQ(be_.status()["iotlb"]["timeouts"], 0) << "ended by the hang-up, not the timeout";
	// A new VM1 is served at once.
	connect();
	send(static_cast<std::uint32_t>(vu::request::get_queue_num), nullptr, 0);
	EXPECT_EQ(ack(), 2u);
}

TEST_F(VhostUserLongWait, HangUpWhileGetVringBaseWaitsEndsTheSessionAtOnce)
{
	unique_fd mem = live_ring0();
	send_p(vu::request::get_vring_base, vu::vring_state{0, 0}, false);
	EXPECT_FALSE(recv_reply(50)) << "GET_VRING_BASE waits for the driver";
	hang_up_and_expect_the_end();
	expect_driver_flushed();
}

TEST_F(VhostUserTest, InvalidateWithoutDriverAckedAtOnce)
{
	negotiate(default_device_features);
	iotlb(vu::iotlb_invalidate, 0x4000, 0x1000);
	EXPECT_EQ(ack(), 0u);
	EXPECT_TRUE(driver_drain().empty());
	// Size 0 (QEMU's global flush) and ranges past the end invalidate
	// everything from iova on: accepted, never refused.
	iotlb(vu::iotlb_invalidate, 0x4000, 0);
	EXPECT_EQ(ack(), 0u) << "size 0: to the end";
	iotlb(vu::iotlb_invalidate, ~0ULL, 2);
	EXPECT_EQ(ack(), 0u) << "past the end: to the end";
	EXPECT_EQ(be_.status()["iotlb"]["rejected"], 0);
}

TEST_F(VhostUserTest, InvalidateTimeoutBreaksDevice)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	setup_ring(0, 0x10000, 0x11000, 0x12000);
	unique_fd err = make_eventfd();
	send_u64(vu::request::set_vring_err, 0, true, {err.get()});
	EXPECT_EQ(ack(), 0u);
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 1});
	EXPECT_EQ(ack(), 0u);
	iotlb(vu::iotlb_invalidate, 0x4000, 0x1000);
	EXPECT_FALSE(recv_reply(100));
	EXPECT_EQ(ack(500), 1u) << "failure, never success";
	EXPECT_TRUE(bstatus() & VPCI_BS_BROKEN);
	EXPECT_FALSE(bstatus() & VPCI_BS_RUNNING);
	EXPECT_EQ(le_load(ctrl().vq_config[0].enabled), 0);
	EXPECT_TRUE(readable(err.get()));
	EXPECT_EQ(be_.status()["iotlb"]["timeouts"], 1);
	// A late ack changes nothing and the daemon keeps serving.
	send(static_cast<std::uint32_t>(vu::request::get_queue_num), nullptr, 0);
	EXPECT_EQ(ack(), 2u);
}

TEST_F(VhostUserTest, GetVringBaseWaitsForDriver)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	setup_ring(0, 0x10000, 0x11000, 0x12000);
	send_p(vu::request::get_vring_base, vu::vring_state{0, 0}, false);
	EXPECT_FALSE(recv_reply(50));
	le_store(ctrl().vq_state[0].last_avail_idx, 42);
	le_store(ctrl().driver.generation_seen, be_.control().generation(),
		 std::memory_order_release);
	ring_doorbell();
	auto r = recv_reply();
	ASSERT_TRUE(r);
	vu::vring_state s;
	std::memcpy(&s, r->payload.data(), 8);
	EXPECT_EQ(s.num, 42u);
}

// VM1 running fewer pairs (ethtool -L) disables rings and later enables
// them with no SET_VRING_BASE: the ring resumes where the driver stopped
// it, not at its old base (7 here), which the driver would take as VM1's
// avail index thousands of entries ahead (a ring fault).
TEST_F(VhostUserTest, DisabledRingResumesWhereTheDriverStopped)
{
	unique_fd mem = live_ring0();
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 0});
	EXPECT_FALSE(recv_reply(50)) << "the disable waits for the driver's position";
	EXPECT_EQ(le_load(ctrl().vq_config[0].enabled), 0);
	le_store(ctrl().vq_state[0].last_avail_idx, 3000);
	driver_confirms();
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(ctrl().vq_config[0].base), 3000);
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 1});
	EXPECT_EQ(ack(), 0u) << "enabling waits for nothing";
	EXPECT_EQ(le_load(ctrl().vq_config[0].enabled), 1);
	EXPECT_EQ(le_load(ctrl().vq_config[0].base), 3000) << "resumes where the driver stopped";
}

// Each run of a ring gets a new vq_config.epoch: a pause and resume, and a
// reconnect, whose disabled state a slow driver may never see (the same
// addresses, enabled = 1 again: only the epoch tells the runs apart;
// sim/reconnect.sh shows the driver's side).  Nothing else bumps it.
TEST_F(VhostUserTest, EveryNewRunOfARingHasANewEpoch)
{
	unique_fd mem = live_ring0();
	auto &c = ctrl().vq_config[0];
	const auto e1 = le_load(c.epoch);
	EXPECT_NE(e1, 0) << "0 is a backend without epochs";
	send_u64(vu::request::set_vring_call, 0 | vu::vring_nofd_mask, true, {});
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(c.epoch), e1) << "a change to a live ring is the same run";
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 0});
	le_store(ctrl().vq_state[0].last_avail_idx, 3000);
	driver_confirms();
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(c.epoch), e1) << "not live: nothing new to run";
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 1});
	EXPECT_EQ(ack(), 0u);
	const auto e2 = le_load(c.epoch);
	EXPECT_EQ(e2, static_cast<std::uint16_t>(e1 + 1)) << "resumed: a new run";
	sock_.reset();
	pump();
	EXPECT_EQ(le_load(c.enabled), 0);
	connect();
	negotiate(default_device_features);
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	setup_ring(0, 0x10000, 0x11000, 0x12000);
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 1});
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(c.enabled), 1);
	EXPECT_EQ(le_load(c.desc), 0x10000u) << "the same addresses as before";
	EXPECT_EQ(le_load(c.epoch), static_cast<std::uint16_t>(e2 + 1))
		<< "a new session's ring is a new run; the count survives the reset";
}

// A ring paused before the driver ran it keeps the base VM1 set, not the
// position the driver published for an earlier run of the ring.
TEST_F(VhostUserTest, PausedRingTheDriverNeverRanKeepsItsBase)
{
	le_store(ctrl().vq_state[0].last_avail_idx, 5000); // an earlier run's stop
	unique_fd mem = live_ring0();			    // SET_VRING_BASE 7
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 0});
	driver_confirms(); // without having run the ring
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(ctrl().vq_config[0].base), 7);
}

// The driver unbinding while a pause waits ends the wait at once (it
// published its position before clearing BOUND), not after the timeout.
TEST_F(VhostUserTest, PauseEndsWhenTheDriverUnbinds)
{
	unique_fd mem = live_ring0();
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 0});
	EXPECT_FALSE(recv_reply(50));
	le_store(ctrl().vq_state[0].last_avail_idx, 1234);
	le_store(ctrl().driver.status, 0u, std::memory_order_release);
	ring_doorbell();
	EXPECT_EQ(ack(20), 0u) << "answered at once, not after the 200 ms timeout";
	EXPECT_EQ(le_load(ctrl().vq_config[0].base), 1234);
}

// QEMU stops forwarding VM1's unmaps once vhost stops: when the last ring
// stops, the driver's IOTLB is flushed before the GET_VRING_BASE reply.
TEST_F(VhostUserTest, LastRingStopFlushesDriverIotlb)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	setup_ring(0, 0x10000, 0x11000, 0x12000);
	setup_ring(1, 0x20000, 0x21000, 0x22000);
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 1});
	EXPECT_EQ(ack(), 0u);
	send_p(vu::request::set_vring_enable, vu::vring_state{1, 1});
	EXPECT_EQ(ack(), 0u);
	driver_drain();
	auto stop = [&](unsigned q) {
		send_p(vu::request::get_vring_base, vu::vring_state{q, 0}, false);
		le_store(ctrl().driver.generation_seen, be_.control().generation(),
			 std::memory_order_release);
		ring_doorbell();
		ASSERT_TRUE(recv_reply());
	};
	stop(0);
	EXPECT_TRUE(driver_drain().empty()) << "ring 1 still runs: no flush yet";
	stop(1);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u);
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_INVALIDATE);
	EXPECT_EQ(le_load(msgs[0].iova), 0u);
	EXPECT_EQ(le_load(msgs[0].size), 0u) << "0: to the end of the space";
}

// Translations name BAR offsets derived from the memory table: a different
// table drops them all (shadow and driver), an identical one keeps them.
TEST_F(VhostUserTest, NewMemTableFlushesIotlb)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get(), kRam - 0x100000, 0x100000), 0u);
	ASSERT_EQ(iotlb(vu::iotlb_update, 0x4000, 0x1000, kUaddr + 0x8000), 0u);
	driver_drain();
	ASSERT_EQ(set_mem_table(mem.get(), kRam - 0x100000, 0x100000), 0u);
	EXPECT_TRUE(driver_drain().empty()) << "the same table again: nothing to flush";
	EXPECT_EQ(be_.status()["iotlb"]["shadow_entries"], 1);
	ASSERT_EQ(set_mem_table(mem.get(), kRam - 0x200000, 0x200000), 0u);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u);
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_INVALIDATE);
	EXPECT_EQ(le_load(msgs[0].iova), 0u);
	EXPECT_EQ(le_load(msgs[0].size), 0u) << "everything";
	EXPECT_EQ(be_.status()["iotlb"]["shadow_entries"], 0);
	// What VM1 maps next translates through the new table.
	ASSERT_EQ(iotlb(vu::iotlb_update, 0x4000, 0x1000, kUaddr + 0x8000), 0u);
	msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u);
	EXPECT_EQ(le_load(msgs[0].bar_offset), 0x208000u);
}

// QEMU's global device-IOTLB flush (VM1 in lazy mode) arrives as an
// INVALIDATE of size 0: everything from iova on, acked only after the driver.
TEST_F(VhostUserTest, InvalidateSizeZeroMeansToTheEnd)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	driver_drain();
	iotlb(vu::iotlb_invalidate, 0, 0);
	EXPECT_FALSE(recv_reply(50)) << "waits for the driver";
	auto msgs = driver_wait(1);
	ASSERT_EQ(msgs.size(), 1u);
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_INVALIDATE);
	EXPECT_EQ(le_load(msgs[0].size), 0u);
	EXPECT_EQ(be_.status()["iotlb"]["rejected"], 0);
}

// A driver unloaded while VM1 runs: the next one resumes where it stopped.
TEST_F(VhostUserTest, DriverUnbindCarriesProgressToNextDriver)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	setup_ring(0, 0x10000, 0x11000, 0x12000);
	send_p(vu::request::set_vring_enable, vu::vring_state{0, 1});
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(le_load(ctrl().vq_config[0].base), 7);
	le_store(ctrl().vq_state[0].last_avail_idx, 1234);
	le_store(ctrl().driver.status, 0u, std::memory_order_release);
	ring_doorbell();
	EXPECT_EQ(le_load(ctrl().vq_config[0].base), 1234);
	EXPECT_EQ(le_load(ctrl().vq_config[0].enabled), 1) << "VM1 still runs";
	send_p(vu::request::get_vring_base, vu::vring_state{0, 0}, false);
	auto r = recv_reply();
	ASSERT_TRUE(r);
	vu::vring_state st;
	std::memcpy(&st, r->payload.data(), 8);
	EXPECT_EQ(st.num, 1234u) << "no driver: VM1 learns the last progress";
}

TEST_F(VhostUserTest, ReconnectClearsState)
{
	bind_driver();
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	setup_ring(0, 0x10000, 0x11000, 0x12000);
	ASSERT_EQ(iotlb(vu::iotlb_update, 0x4000, 0x1000, kUaddr), 0u);
	driver_drain();
	sock_.reset();
	pump();
	EXPECT_FALSE(bstatus() & VPCI_BS_FRONTEND);
	EXPECT_EQ(le_load(ctrl().vq_config[0].num), 0);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u) << "one invalidate-all";
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_INVALIDATE);
	EXPECT_EQ(le_load(msgs[0].size), 0u) << "0: to the end of the space";
	EXPECT_EQ(be_.status()["frontend"]["connected"], false);
	connect();
	EXPECT_TRUE(bstatus() & VPCI_BS_FRONTEND);
	negotiate(default_device_features);
	EXPECT_EQ(be_.status()["frontend"]["connected"], true);
}

TEST_F(VhostUserTest, ShadowReplayedWhenDriverBinds)
{
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	ASSERT_EQ(iotlb(vu::iotlb_update, 0x4000, 0x2000, kUaddr + 0x8000), 0u);
	ASSERT_EQ(iotlb(vu::iotlb_update, 0x9000, 0x1000, kUaddr), 0u);
	iotlb(vu::iotlb_invalidate, 0x5000, 0x1000);
	EXPECT_EQ(ack(), 0u);
	EXPECT_TRUE(driver_drain().empty()) << "nothing posted without a driver";
	bind_driver();
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 2u);
	EXPECT_EQ(le_load(msgs[0].iova), 0x4000u);
	EXPECT_EQ(le_load(msgs[0].size), 0x1000u);
	EXPECT_EQ(le_load(msgs[0].bar_offset), 0x8000u);
	EXPECT_EQ(le_load(msgs[1].iova), 0x9000u);
}

// More shadow entries than the b2d ring holds: the replay to a driver that
// binds goes as the ring makes room, none dropped, in IOVA order.
class VhostUserBigShadow : public VhostUserTest {
protected:
	static void SetUpTestSuite() { shadow_max = 4096; }
	static void TearDownTestSuite() { shadow_max = kShadowMax; }
};

TEST_F(VhostUserBigShadow, ReplayIsPacedByTheRing)
{
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	constexpr std::uint64_t n = VPCI_MSG_RING_SIZE + 88;
	for (std::uint64_t i = 0; i < n; i++) // every other page: none merge
		ASSERT_EQ(iotlb(vu::iotlb_update, 0x100000 + 2 * i * 0x1000, 0x1000, kUaddr), 0u);
	ASSERT_EQ(be_.status()["iotlb"]["shadow_entries"], n);
	bind_driver();
	std::vector<vpci_msg> got = driver_drain();
	EXPECT_LE(got.size(), VPCI_MSG_RING_SIZE - vm1_session::replay_keep)
		<< "room left for live messages";
	for (int i = 0; i < 20 && got.size() < n; i++) {
		pump(2);
		for (const vpci_msg &m : driver_drain())
			got.push_back(m);
	}
	ASSERT_EQ(got.size(), n) << "every entry replayed, none dropped";
	for (std::uint64_t i = 0; i < n; i++) {
		EXPECT_EQ(got[i].type, VPCI_MSG_IOTLB_UPDATE);
		EXPECT_EQ(le_load(got[i].iova), 0x100000 + 2 * i * 0x1000) << i;
	}
}

// VM1 pushes updates faster than VM2's driver consumes b2d: none is refused
// (VM1's IOTLB update would fail), the overflow waits in the shadow for the
// paced replay, and an invalidation in the middle of it still gets a slot.
TEST_F(VhostUserBigShadow, UpdatesFasterThanTheDriverAreDeferredNotRefused)
{
	negotiate(default_device_features);
	unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
	ASSERT_EQ(set_mem_table(mem.get()), 0u);
	bind_driver();
	driver_drain();
	// Entries the driver already has, above the burst: not posted again.
	constexpr std::uint64_t high = 0x40000000, nhigh = 200;
	for (std::uint64_t i = 0; i < nhigh; i++) {
		ASSERT_EQ(iotlb(vu::iotlb_update, high + 2 * i * 0x1000, 0x1000, kUaddr), 0u);
		driver_drain();
	}
	constexpr std::uint64_t n = VPCI_MSG_RING_SIZE + 100;
	for (std::uint64_t i = 0; i < n; i++)
		ASSERT_EQ(iotlb(vu::iotlb_update, 0x100000 + 2 * i * 0x1000, 0x1000, kUaddr), 0u)
			<< "update " << i << " refused";
	EXPECT_GE(be_.status()["iotlb"]["deferred"], n - VPCI_MSG_RING_SIZE);
	EXPECT_EQ(be_.status()["iotlb"]["rejected"], 0);
	const std::uint32_t used = le_load(ctrl().b2d.prod) - le_load(ctrl().b2d.cons);
	EXPECT_GE(VPCI_MSG_RING_SIZE - used, vm1_session::update_keep) << "room kept for an invalidation";
	// That room takes an invalidation now, ahead of the deferred updates.
	iotlb(vu::iotlb_invalidate, 0x100000, 0x1000);
	std::set<std::uint64_t> have;
	std::uint64_t again = 0;
	bool acked = false;
	for (int i = 0; i < 40 && (have.size() < n || !acked); i++) {
		for (const vpci_msg &m : driver_drain()) {
			if (m.type == VPCI_MSG_IOTLB_UPDATE) {
				have.insert(le_load(m.iova));
				again += le_load(m.iova) >= high;
			} else if (m.type == VPCI_MSG_IOTLB_INVALIDATE && !acked) {
				vpci_msg a{};
				a.type = VPCI_MSG_IOTLB_INV_ACK;
				a.seq = m.seq;
				driver_post(a);
				ring_doorbell();
				EXPECT_EQ(ack(), 0u) << "invalidate reply";
				acked = true;
			}
		}
		pump(2);
	}
	EXPECT_TRUE(acked) << "the invalidation reached the driver";
	EXPECT_FALSE(bstatus() & VPCI_BS_BROKEN);
	EXPECT_EQ(have.size(), n) << "every update reached the driver";
	EXPECT_EQ(again, 0u) << "entries the driver had were posted again";
}

TEST_F(VhostUserTest, WithoutVm2KicksStayPendingAndCallsAreRelayed)
{
	negotiate(default_device_features);
	unique_fd kick = make_eventfd(), call = make_eventfd();
	set_kick(1, kick.get());
	set_call(1, call.get());
	// No VM2: nothing takes the kick, its count waits on VM1's eventfd for
	// VM2's QEMU to attach it.
	eventfd_signal(kick.get());
	pump();
	EXPECT_TRUE(readable(kick.get())) << "backend consumed a kick nobody can receive";
	EXPECT_EQ(qstatus(1)["kick"], "none");
	EXPECT_EQ(qstatus(1)["kicks_relayed"], 0);
	// The backend's doorbell for queue 1 still reaches VM1's call fd.
	EXPECT_EQ(le_load(ctrl().vq_config[1].notify), VPCI_NOTIFY_RELAY);
	EXPECT_EQ(qstatus(1)["notify"], "relay");
	EXPECT_EQ(qstatus(1)["call"], "relay");
	eventfd_signal(be_.ivshmem().doorbell_fd(VPCI_VEC_QUEUE(1)));
	pump();
	EXPECT_TRUE(readable(call.get()));
	EXPECT_EQ(qstatus(1)["calls_relayed"], 1);
	EXPECT_EQ(qstatus(0)["notify"], "none");
}

TEST_F(VhostUserTest, Vm2FirstThenKicksSentInOrderAndDirect)
{
	vm2 c = connect_vm2();
	EXPECT_EQ(c.own.size(), 1u) << "only vector 0 at connect";
	EXPECT_EQ(vm2_read(c), 0u);
	// VM2's peer 0 vectors are the backend's doorbells for now.
	for (unsigned v = 0; v < kVectors; v++)
		EXPECT_TRUE(same_file(c.peer[v].get(), be_.ivshmem().doorbell_fd(v))) << v;

	negotiate(default_device_features);
	unique_fd kick0 = make_eventfd(), kick1 = make_eventfd();
	set_kick(1, kick1.get());
	EXPECT_EQ(vm2_read(c), 0u) << "queue 1's vector sent before queue 0's";
	EXPECT_EQ(qstatus(1)["kick"], "none");
	const auto gen = be_.control().generation();
	set_kick(0, kick0.get());
	EXPECT_EQ(vm2_read(c), 2u);
	ASSERT_EQ(c.own.size(), 3u);
	EXPECT_TRUE(same_file(c.own[VPCI_VEC_QUEUE(0)].get(), kick0.get()));
	EXPECT_TRUE(same_file(c.own[VPCI_VEC_QUEUE(1)].get(), kick1.get()));
	EXPECT_EQ(be_.status()["notify"]["own_vectors_sent"], 3);
	for (unsigned q : {0u, 1u}) {
		EXPECT_EQ(qstatus(q)["kick"], "direct") << q;
		EXPECT_EQ(qstatus(q)["notify"], "direct") << q;
		EXPECT_EQ(le_load(ctrl().vq_config[q].notify), VPCI_NOTIFY_DIRECT) << q;
	}
	EXPECT_GT(be_.control().generation(), gen) << "mode change not published";
	EXPECT_EQ(qstatus(2)["notify"], "none");

	// VM1 kicks: VM2's vector fires with no backend involvement (the loop
	// does not run between the write and the check).
	eventfd_signal(kick1.get());
	EXPECT_TRUE(readable(c.own[VPCI_VEC_QUEUE(1)].get()));
	EXPECT_FALSE(readable(c.own[VPCI_VEC_QUEUE(0)].get()));
	eventfd_signal(kick0.get());
	EXPECT_TRUE(readable(c.own[VPCI_VEC_QUEUE(0)].get()));
	pump();
	// Nobody took the counts but VM2.
	EXPECT_EQ(eventfd_consume(c.own[VPCI_VEC_QUEUE(0)].get()), 1u);
	EXPECT_EQ(eventfd_consume(c.own[VPCI_VEC_QUEUE(1)].get()), 1u);
	EXPECT_EQ(qstatus(0)["kicks_relayed"], 0);
	EXPECT_EQ(qstatus(1)["kicks_relayed"], 0);
}

TEST_F(VhostUserTest, Vm1FirstThenVm2GetsEverythingAtConnect)
{
	negotiate(default_device_features);
	unique_fd kick0 = make_eventfd(), kick1 = make_eventfd();
	unique_fd call0 = make_eventfd(), call1 = make_eventfd();
	set_kick(0, kick0.get());
	set_call(0, call0.get());
	set_kick(1, kick1.get());
	set_call(1, call1.get());
	eventfd_signal(kick0.get()); // before VM2 exists: delivered once attached

	vm2 c = connect_vm2();
	EXPECT_EQ(vm2_read(c), 2u) << "kick vectors right after vector 0";
	EXPECT_EQ(c.peer_gone, 0u) << "no re-announcement needed";
	ASSERT_EQ(c.own.size(), 3u);
	EXPECT_TRUE(same_file(c.own[1].get(), kick0.get()));
	EXPECT_TRUE(same_file(c.own[2].get(), kick1.get()));
	EXPECT_TRUE(readable(c.own[1].get())) << "pending kick lost";
	ASSERT_EQ(c.peer.size(), kVectors);
	EXPECT_TRUE(same_file(c.peer[0].get(), be_.ivshmem().doorbell_fd(0)));
	EXPECT_TRUE(same_file(c.peer[1].get(), call0.get()));
	EXPECT_TRUE(same_file(c.peer[2].get(), call1.get()));
	EXPECT_TRUE(same_file(c.peer[3].get(), be_.ivshmem().doorbell_fd(3)));
	for (unsigned q : {0u, 1u}) {
		EXPECT_EQ(qstatus(q)["kick"], "direct") << q;
		EXPECT_EQ(qstatus(q)["call"], "direct") << q;
		EXPECT_EQ(le_load(ctrl().vq_config[q].notify), VPCI_NOTIFY_DIRECT) << q;
	}
	// VM2 rings peer 0's vector 2: VM1's call fd of queue 1, directly.
	eventfd_signal(c.peer[VPCI_VEC_QUEUE(1)].get());
	EXPECT_TRUE(readable(call1.get()));
	EXPECT_FALSE(readable(call0.get()));
	pump();
	EXPECT_EQ(qstatus(1)["calls_relayed"], 0);
	EXPECT_EQ(be_.status()["notify"]["peer_reannouncements"], 0);
}

TEST_F(VhostUserTest, ReplacedKickIsRelayedUntilVm2Reconnects)
{
	vm2 c = connect_vm2();
	negotiate(default_device_features);
	unique_fd kick0 = make_eventfd(), kick1 = make_eventfd();
	set_kick(0, kick0.get());
	set_kick(1, kick1.get());
	vm2_read(c);
	ASSERT_EQ(c.own.size(), 3u);
	EXPECT_EQ(qstatus(0)["kick"], "direct");

	// VM1 re-sends the same eventfd (QEMU does on vhost restart): still direct.
	set_kick(0, kick0.get());
	EXPECT_EQ(vm2_read(c), 0u);
	EXPECT_EQ(qstatus(0)["kick"], "direct");

	// VM1 recreates queue 0's kick: an own vector cannot be replaced.
	const auto gen = be_.control().generation();
	unique_fd kick0b = make_eventfd();
	set_kick(0, kick0b.get());
	EXPECT_EQ(vm2_read(c), 0u) << "nothing can be sent for a vector VM2 has";
	EXPECT_EQ(qstatus(0)["kick"], "relay");
	EXPECT_EQ(qstatus(0)["notify"], "relay");
	EXPECT_EQ(le_load(ctrl().vq_config[0].notify), VPCI_NOTIFY_RELAY);
	EXPECT_GT(be_.control().generation(), gen);
	EXPECT_EQ(qstatus(1)["kick"], "direct") << "other queues unaffected";

	eventfd_signal(kick0b.get());
	EXPECT_FALSE(readable(c.own[1].get())) << "relay needs the backend loop";
	pump();
	EXPECT_TRUE(readable(c.own[1].get()));
	EXPECT_EQ(eventfd_consume(c.own[1].get()), 1u);
	EXPECT_EQ(qstatus(0)["kicks_relayed"], 1);
	// The old kick still reaches VM2 (it holds that fd) but VM1 no longer uses it.

	// A new VM2 (QEMU restarted) starts over: direct again.
	c.sock.reset();
	pump();
	EXPECT_FALSE(be_.ivshmem().client_connected());
	EXPECT_EQ(qstatus(0)["kick"], "none");
	vm2 c2 = connect_vm2();
	EXPECT_EQ(vm2_read(c2), 2u);
	ASSERT_EQ(c2.own.size(), 3u);
	EXPECT_TRUE(same_file(c2.own[1].get(), kick0b.get()));
	EXPECT_EQ(qstatus(0)["kick"], "direct");
	eventfd_signal(kick0b.get());
	EXPECT_TRUE(readable(c2.own[1].get()));
	pump();
	EXPECT_EQ(qstatus(0)["kicks_relayed"], 1) << "relay still running";
}

TEST_F(VhostUserTest, GapBeforeALiveQueueIsFilledAndRelayed)
{
	vm2 c = connect_vm2();
	negotiate(default_device_features);
	set_mem_table(be_.memory().fd());
	setup_ring(1, 0x1000, 0x2000, 0x3000); // ends with a kick without fd
	unique_fd kick1 = make_eventfd();
	set_kick(1, kick1.get());
	EXPECT_EQ(vm2_read(c), 0u) << "queue 1 not live yet: its vector waits for queue 0's";
	// Queue 1 goes live while queue 0 still has no kick: its vector must
	// not wait forever.
	send_p(vu::request::set_vring_enable, vu::vring_state{1, 1});
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(vm2_read(c), 2u);
	ASSERT_EQ(c.own.size(), 3u);
	EXPECT_TRUE(same_file(c.own[2].get(), kick1.get()));
	EXPECT_EQ(qstatus(1)["kick"], "direct");
	// Queue 0's kick arrives later: its vector is the backend's eventfd.
	unique_fd kick0 = make_eventfd();
	set_kick(0, kick0.get());
	EXPECT_EQ(qstatus(0)["kick"], "relay");
	eventfd_signal(kick0.get());
	pump();
	EXPECT_TRUE(readable(c.own[1].get()));
	EXPECT_EQ(qstatus(0)["kicks_relayed"], 1);
}

/** With --peer-reannounce (for a QEMU without the peer-id reuse bug). */
class ReannounceTest : public VhostUserTest {
protected:
	static void SetUpTestSuite() { reannounce_peer = true; }
	static void TearDownTestSuite() { reannounce_peer = false; }
};

TEST_F(ReannounceTest, CallFdsAnnouncedAsPeerVectorsAndReannounced)
{
	vm2 c = connect_vm2();
	negotiate(default_device_features);
	unique_fd call0 = make_eventfd();
	set_call(0, call0.get());
	vm2_read(c);
	EXPECT_EQ(c.peer_gone, 1u) << "\"peer 0 gone\" before the new set";
	ASSERT_EQ(c.peer.size(), kVectors);
	EXPECT_TRUE(same_file(c.peer[0].get(), be_.ivshmem().doorbell_fd(0)))
		<< "vector 0 stays the backend's doorbell";
	EXPECT_TRUE(same_file(c.peer[1].get(), call0.get()));
	EXPECT_TRUE(same_file(c.peer[2].get(), be_.ivshmem().doorbell_fd(2)));
	EXPECT_EQ(qstatus(0)["call"], "direct");
	EXPECT_EQ(le_load(ctrl().vq_config[0].notify), VPCI_NOTIFY_DIRECT);
	// Direct: VM2's doorbell write lands on VM1's call fd without the loop.
	eventfd_signal(c.peer[VPCI_VEC_QUEUE(0)].get());
	EXPECT_TRUE(readable(call0.get()));
	EXPECT_EQ(eventfd_consume(call0.get()), 1u);
	// Vector 0 still reaches the backend.
	eventfd_signal(c.peer[VPCI_VEC_CONFIG].get());
	EXPECT_TRUE(readable(be_.ivshmem().doorbell_fd(VPCI_VEC_CONFIG)));
	pump();

	// Same eventfd again: nothing to re-wire.
	set_call(0, call0.get());
	EXPECT_EQ(vm2_read(c), 0u);

	// Queue 1 gets a call fd.  VM2 rings with the fd it still has (the
	// backend's doorbell) before it sees the new set: relayed, not lost.
	unique_fd old_q1 = std::move(c.peer[2]);
	unique_fd call1 = make_eventfd();
	set_call(1, call1.get());
	eventfd_signal(old_q1.get());
	pump();
	EXPECT_TRUE(readable(call1.get()));
	EXPECT_EQ(qstatus(1)["calls_relayed"], 1);
	EXPECT_EQ(vm2_read(c), 1u + kVectors);
	EXPECT_EQ(c.peer_gone, 2u);
	EXPECT_TRUE(same_file(c.peer[2].get(), call1.get()));
	EXPECT_EQ(qstatus(1)["call"], "direct");

	// VM1 changes queue 0's call fd: "peer 0 gone", then the new set.
	unique_fd call0b = make_eventfd();
	set_call(0, call0b.get());
	EXPECT_EQ(vm2_read(c), 1u + kVectors);
	EXPECT_EQ(c.peer_gone, 3u);
	EXPECT_TRUE(same_file(c.peer[1].get(), call0b.get()));
	EXPECT_TRUE(same_file(c.peer[2].get(), call1.get()));
	eventfd_signal(c.peer[1].get());
	EXPECT_TRUE(readable(call0b.get()));
	EXPECT_FALSE(readable(call0.get()));
	EXPECT_EQ(be_.status()["notify"]["peer_reannouncements"], 3);

	// VM1 goes away: its call fds are dropped and peer 0 is the backend again.
	sock_.reset();
	pump();
	EXPECT_EQ(vm2_read(c), 1u + kVectors);
	for (unsigned v = 0; v < kVectors; v++)
		EXPECT_TRUE(same_file(c.peer[v].get(), be_.ivshmem().doorbell_fd(v))) << v;
	EXPECT_EQ(qstatus(0)["notify"], "none");
}

TEST_F(ReannounceTest, BurstOfCallFdsCostsOneReannouncement)
{
	vm2 c = connect_vm2();
	negotiate(default_device_features);
	// QEMU sends SET_VRING_CALL for every queue back to back.
	std::vector<unique_fd> calls;
	for (std::uint64_t q = 0; q < 4; q++) {
		calls.push_back(make_eventfd());
		// Not send(): the backend must not run between them.
		const auto req = static_cast<std::uint32_t>(vu::request::set_vring_call);
		vu::send_message(sock_.get(), req, vu::version | vu::flag_need_reply, &q, sizeof(q),
				 {calls.back().get()});
	}
	for (int i = 0; i < 4; i++)
		EXPECT_EQ(ack(), 0u);
	pump();
	EXPECT_EQ(vm2_read(c), 1u + kVectors);
	EXPECT_EQ(c.peer_gone, 1u);
	EXPECT_EQ(be_.status()["notify"]["peer_reannouncements"], 1);
	for (unsigned q = 0; q < 4; q++) {
		EXPECT_TRUE(same_file(c.peer[VPCI_VEC_QUEUE(q)].get(), calls[q].get())) << q;
		EXPECT_EQ(qstatus(q)["call"], "direct") << q;
	}
}

// The default: peer 0 is never re-announced to a connected VM2 (QEMU 7.2
// crashes on a re-added peer id).  VM1's new call fds go to VM2 as a fresh
// peer; calls are relayed until VM2's driver rang that peer's vector 0 (the
// probe), then VM2 rings VM1's call fds directly.
TEST_F(VhostUserTest, ChangedCallsGoDirectThroughAFreshPeerAfterTheProbe)
{
	vm2 c = connect_vm2();
	negotiate(default_device_features);
	unique_fd call0 = make_eventfd();
	set_call(0, call0.get());
	pump();
	EXPECT_EQ(vm2_read(c), kVectors) << "one fresh peer, all vectors";
	EXPECT_EQ(c.peer_gone, 0u) << "peer 0 re-announced although disabled";
	ASSERT_EQ(c.others.size(), 1u);
	const std::int64_t p = c.others.begin()->first;
	auto &pv = c.others.begin()->second;
	ASSERT_EQ(pv.size(), kVectors);
	EXPECT_NE(p, c.id);
	EXPECT_EQ(le_load(ctrl().backend.call_peer_probe), p);
	EXPECT_FALSE(le_load(ctrl().backend.status) & VPCI_BS_CALL_PEER);
	EXPECT_TRUE(same_file(pv[VPCI_VEC_QUEUE(0)].get(), call0.get()));
	EXPECT_EQ(qstatus(0)["call"], "relay") << "direct before VM2 proved it has the peer";

	// VM2 still rings peer 0 meanwhile: relayed, not lost.
	eventfd_signal(c.peer[VPCI_VEC_QUEUE(0)].get());
	pump();
	EXPECT_EQ(eventfd_consume(call0.get()), 1u);
	EXPECT_EQ(qstatus(0)["calls_relayed"], 1);

	// Unanswered, the backend raises VM2's config vector again.
	const std::uint32_t g = le_load(ctrl().backend.generation);
	std::this_thread::sleep_for(std::chrono::milliseconds(150));
	pump();
	EXPECT_GT(le_load(ctrl().backend.generation), g) << "probe not nudged";

	// The driver rings the probe: the peer is committed.
	eventfd_signal(pv[VPCI_VEC_CONFIG].get());
	pump();
	EXPECT_EQ(le_load(ctrl().backend.call_peer_id), p);
	EXPECT_EQ(le_load(ctrl().backend.call_peer_probe), 0);
	EXPECT_TRUE(le_load(ctrl().backend.status) & VPCI_BS_CALL_PEER);
	EXPECT_EQ(qstatus(0)["call"], "direct");
	EXPECT_EQ(le_load(ctrl().vq_config[0].notify), VPCI_NOTIFY_DIRECT);
	eventfd_signal(pv[VPCI_VEC_QUEUE(0)].get());
	EXPECT_EQ(eventfd_consume(call0.get()), 1u) << "direct: without the backend's loop";
	pump();
	EXPECT_EQ(qstatus(0)["calls_relayed"], 1);

	// VM1 replaces it again: another fresh peer, the old one relayed.
	unique_fd call0b = make_eventfd();
	set_call(0, call0b.get());
	pump();
	EXPECT_EQ(vm2_read(c), kVectors);
	EXPECT_EQ(c.others.size(), 2u);
	EXPECT_EQ(qstatus(0)["call"], "relay");
	eventfd_signal(pv[VPCI_VEC_QUEUE(0)].get());
	pump();
	EXPECT_EQ(eventfd_consume(call0b.get()), 1u) << "call lost on the previous peer";
	EXPECT_EQ(c.peer_gone, 0u);

	// A new VM2 gets VM1's current call fd as peer 0 at connect: direct,
	// and the fresh peer is forgotten.
	c.sock.reset();
	pump();
	vm2 c2 = connect_vm2();
	pump();
	EXPECT_TRUE(same_file(c2.peer[VPCI_VEC_QUEUE(0)].get(), call0b.get()));
	EXPECT_EQ(qstatus(0)["call"], "direct");
	EXPECT_FALSE(le_load(ctrl().backend.status) & VPCI_BS_CALL_PEER);
	EXPECT_EQ(le_load(ctrl().backend.call_peer_probe), 0);
	EXPECT_EQ(vm2_read(c2), 0u);
}

TEST_F(VhostUserTest, ReplacedDirectCallIsRelayedFromTheOldEventfd)
{
	negotiate(default_device_features);
	unique_fd call0 = make_eventfd();
	set_call(0, call0.get());
	vm2 c = connect_vm2();
	ASSERT_TRUE(same_file(c.peer[VPCI_VEC_QUEUE(0)].get(), call0.get()));
	EXPECT_EQ(qstatus(0)["call"], "direct");

	// VM1 replaces its call fd; VM2 keeps ringing the one it has.
	unique_fd call0b = make_eventfd();
	set_call(0, call0b.get());
	pump();
	EXPECT_EQ(vm2_read(c), kVectors) << "a fresh peer, not peer 0 again";
	EXPECT_EQ(c.peer_gone, 0u);
	EXPECT_EQ(qstatus(0)["call"], "relay");
	EXPECT_EQ(le_load(ctrl().vq_config[0].notify), VPCI_NOTIFY_RELAY);
	eventfd_signal(c.peer[VPCI_VEC_QUEUE(0)].get());
	pump();
	EXPECT_TRUE(readable(call0b.get())) << "call lost on VM1's previous eventfd";
	EXPECT_FALSE(readable(call0.get()));
	EXPECT_EQ(qstatus(0)["calls_relayed"], 1);

	// VM1 goes back to the first eventfd (QEMU unmasking): direct again
	// through peer 0, the pending peer is dropped, the backend no longer
	// reads the fd.
	set_call(0, call0.get());
	pump();
	EXPECT_EQ(qstatus(0)["call"], "direct");
	EXPECT_EQ(le_load(ctrl().backend.call_peer_probe), 0);
	eventfd_signal(c.peer[VPCI_VEC_QUEUE(0)].get());
	pump();
	EXPECT_EQ(eventfd_consume(call0.get()), 1u);
	EXPECT_EQ(qstatus(0)["calls_relayed"], 1);
}

TEST_F(VhostUserTest, StatusReportsCpuSeconds)
{
	const auto st = be_.status();
	ASSERT_TRUE(st.contains("cpu_seconds"));
	ASSERT_TRUE(st["cpu_seconds"].is_number_float());
	EXPECT_GE(st["cpu_seconds"].get<double>(), 0.0);
	EXPECT_EQ(st["notify"]["reannounce_peer"], false) << "default must be safe for QEMU 7.2";
}

// Bad input: each case leaves the daemon serving and the control area as
// it was.
TEST_F(VhostUserTest, BadInputRejected)
{
	negotiate(default_device_features);
	const vpci_ctrl_hdr hdr = ctrl().hdr;
	const std::uint32_t prod = le_load(ctrl().b2d.prod);
	auto same = [&] {
		EXPECT_EQ(std::memcmp(&hdr, &ctrl().hdr, sizeof(hdr)), 0);
		EXPECT_EQ(le_load(ctrl().b2d.prod), prod);
	};

	std::uint32_t four = 0;
	send(static_cast<std::uint32_t>(vu::request::set_features), &four, 4, {}, true);
	EXPECT_EQ(ack(), 1u) << "bad payload size";
	send(99, nullptr, 0, {}, true);
	EXPECT_EQ(ack(), 1u) << "unknown request";
	std::vector<unique_fd> many;
	std::vector<int> raw;
	for (int i = 0; i < 9; i++) {
		many.push_back(make_eventfd());
		raw.push_back(many.back().get());
	}
	// send_message() refuses more than max_fds: build this one by hand.
	std::uint32_t kick[5] = {static_cast<std::uint32_t>(vu::request::set_vring_kick),
				 vu::version | vu::flag_need_reply, 8};
	vu::send_raw(sock_.get(), kick, sizeof(kick), raw);
	pump();
	EXPECT_EQ(ack(), 1u) << "too many fds";
	std::uint64_t v = 0;
	send(static_cast<std::uint32_t>(vu::request::set_vring_kick), &v, 8, {raw[0], raw[1]}, true);
	EXPECT_EQ(ack(), 1u) << "two fds for one";
	send_u64(vu::request::set_log_base, 0, true);
	EXPECT_EQ(ack(), 1u) << "log base size";
	send_p(vu::request::set_vring_addr, vu::vring_addr{9, 0, 1, 2, 3, 0});
	EXPECT_EQ(ack(), 1u) << "queue out of range";
	same();
	send(static_cast<std::uint32_t>(vu::request::get_queue_num), nullptr, 0);
	EXPECT_EQ(ack(), 2u) << "still serving";

	// Oversized payload: framing error, connection closed, daemon alive.
	std::uint32_t big[3] = {1, vu::version, 1u << 20};
	vu::send_raw(sock_.get(), big, sizeof(big), {});
	pump();
	char c;
	EXPECT_EQ(::recv(sock_.get(), &c, 1, MSG_DONTWAIT), 0) << "closed";
	same();
	connect();
	// Bad version: framing error.
	std::uint32_t badv[3] = {1, 2, 0};
	vu::send_raw(sock_.get(), badv, sizeof(badv), {});
	pump();
	EXPECT_EQ(::recv(sock_.get(), &c, 1, MSG_DONTWAIT), 0) << "closed";
	connect();
	// Truncated header, then EOF.
	vu::send_raw(sock_.get(), badv, 5, {});
	::shutdown(sock_.get(), SHUT_WR);
	pump();
	EXPECT_FALSE(bstatus() & VPCI_BS_FRONTEND);
	same();
	connect();
	send(static_cast<std::uint32_t>(vu::request::get_queue_num), nullptr, 0);
	EXPECT_EQ(ack(), 2u);
}

// Every warning VM1 can cause goes through the session's rate limit: a
// burst of rejected messages costs a bounded number of lines, and each
// message is still answered.
TEST_F(VhostUserTest, RejectionBurstLogsABoundedNumberOfLines)
{
	log_capture log;
	constexpr int n = 100;
	for (int i = 0; i < n; i++) {
		// An unknown request, NAKed; and a refused one (two warnings each before).
		vu::send_message(sock_.get(), 9999, vu::version | vu::flag_need_reply, nullptr, 0);
		const std::uint64_t base = 0;
		vu::send_message(sock_.get(), static_cast<std::uint32_t>(vu::request::set_log_base),
				 vu::version | vu::flag_need_reply, &base, sizeof(base));
	}
	unsigned naks = 0;
	for (int i = 0; i < 2 * n; i++)
		naks += ack() == 1;
	EXPECT_EQ(naks, 2u * n) << "every rejected message answered";
	EXPECT_LE(log.count(spdlog::level::warn), 10u) << log.text();
	EXPECT_GE(log.count(spdlog::level::warn, "rejected"), 1u) << log.text();
}

// The front-end side refuses a message whose fds the kernel cut off, and
// the stream stays in step for the next one.
TEST(VhostUserRecvRaw, TooManyFdsIsAnErrorAndTheNextMessageReads)
{
	int sv[2];
	ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	unique_fd a(sv[0]), b(sv[1]);
	std::vector<unique_fd> owned;
	std::vector<int> nine;
	for (int i = 0; i < 9; i++) {
		owned.push_back(make_eventfd());
		nine.push_back(owned.back().get());
	}
	const std::uint32_t hdr[3] = {1, vu::version, 0};
	vu::send_raw(a.get(), hdr, sizeof(hdr), nine);
	vu::send_message(a.get(), 1, vu::version, nullptr, 0, {});
	EXPECT_THROW(vu::recv_raw(b.get(), 1000), std::runtime_error);
	auto m = vu::recv_raw(b.get(), 1000);
	ASSERT_TRUE(m);
	EXPECT_EQ(m->req, 1u);
	EXPECT_TRUE(m->fds.empty());
}

TEST(VhostUserParse, ValidatesAndNames)
{
	std::vector<std::uint8_t> eight(8, 0);
	auto r = vu::parse(2, vu::version, eight, {});
	ASSERT_TRUE(std::holds_alternative<vu::message>(r));
	EXPECT_EQ(std::get<vu::message>(r).to_string(), "VHOST_USER_SET_FEATURES u64=0x0");
	r = vu::parse(2, vu::version | vu::flag_reply, eight, {});
	ASSERT_TRUE(std::holds_alternative<vu::parse_error>(r));
	r = vu::parse(5, vu::version, std::vector<std::uint8_t>(8 + 9 * 32), {});
	ASSERT_TRUE(std::holds_alternative<vu::parse_error>(r)) << "9 regions";
	EXPECT_EQ(vu::request_name(21), "VHOST_USER_SET_SLAVE_REQ_FD");
	EXPECT_EQ(vu::request_name(200), "UNKNOWN(200)");
	shadow_iotlb s;
	s.insert(0x1000, 0x3000, 0, 0x10000, 3);
	s.remove(0x2000, 0x1000);
	ASSERT_EQ(s.size(), 2u);
	ASSERT_TRUE(s.find(0x3000));
	EXPECT_EQ(s.find(0x3000)->bar_offset, 0x12000u);
	EXPECT_FALSE(s.find(0x2000));
}

TEST(LogLimit, BurstThenCountedUntilTheNextInterval)
{
	log_limit l(std::chrono::seconds(5), 3);
	const auto t0 = log_limit::clock::time_point{} + std::chrono::hours(1);
	std::uint64_t suppressed = 99;
	for (int i = 0; i < 3; i++) {
		EXPECT_TRUE(l.allow(suppressed, t0));
		EXPECT_EQ(suppressed, 0u);
	}
	for (int i = 0; i < 5; i++)
		EXPECT_FALSE(l.allow(suppressed, t0 + std::chrono::seconds(4)));
	EXPECT_TRUE(l.allow(suppressed, t0 + std::chrono::seconds(5)));
	EXPECT_EQ(suppressed, 5u) << "the lines refused are reported with the next one";
}

} // namespace
