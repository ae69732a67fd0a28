// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The backend's side of the vhost-pci QEMU device protocol: window
// arithmetic, device_server against a fake device, and the backend in
// --vm2-device vhost-pci mode between a fake VM1 front-end and a fake device.
#include <chrono>
#include <cstring>
#include <optional>
#include <vector>

#include <endian.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backend.hpp"
#include "device_server.hpp"
#include "test_util.hpp"
#include "vhost-pci-protocol.h"
#include "vhost_user.hpp"

using namespace vpci;
using namespace vpci::test;

namespace {

using W = file_window;

TEST(Windows, NormalizeMergesRoundsAndOrsPermissions)
{
	EXPECT_TRUE(normalize_windows({}).empty());
	EXPECT_TRUE(normalize_windows({{0x1000, 0, VPCI_PERM_RW}, {0x2000, 0x1000, 0}}).empty());
	// Widened to whole pages
	EXPECT_EQ(normalize_windows({{0x1010, 0x10, VPCI_PERM_RO}}),
		  (std::vector<W>{{0x1000, 0x1000, VPCI_PERM_RO}}));
	// Touching equal permissions merge; different ones do not
	EXPECT_EQ(normalize_windows({{0x3000, 0x1000, VPCI_PERM_RW}, {0x1000, 0x2000, VPCI_PERM_RW},
				     {0x4000, 0x1000, VPCI_PERM_RO}}),
		  (std::vector<W>{{0x1000, 0x3000, VPCI_PERM_RW}, {0x4000, 0x1000, VPCI_PERM_RO}}));
	// Overlap: RO + WO = RW where both map
	EXPECT_EQ(normalize_windows({{0x0, 0x3000, VPCI_PERM_RO}, {0x2000, 0x2000, VPCI_PERM_WO}}),
		  (std::vector<W>{{0x0, 0x2000, VPCI_PERM_RO},
				  {0x2000, 0x1000, VPCI_PERM_RW},
				  {0x3000, 0x1000, VPCI_PERM_WO}}));
	// Two IOVAs on one page: still one window
	EXPECT_EQ(normalize_windows({{0x5000, 0x1000, VPCI_PERM_RO}, {0x5000, 0x1000, VPCI_PERM_RO}}),
		  (std::vector<W>{{0x5000, 0x1000, VPCI_PERM_RO}}));
}

TEST(Windows, DiffUnmapsFirstAndOnlyWhatChanged)
{
	const std::vector<W> have{{0x0, 0x4000, VPCI_PERM_RW}, {0x8000, 0x1000, VPCI_PERM_RO}};
	window_ops same = diff_windows(have, have);
	EXPECT_TRUE(same.map.empty() && same.unmap.empty());

	// Middle page gone, the RO page becomes RW, a new page appears
	const std::vector<W> want{{0x0, 0x1000, VPCI_PERM_RW},
				  {0x2000, 0x2000, VPCI_PERM_RW},
				  {0x8000, 0x1000, VPCI_PERM_RW},
				  {0xa000, 0x1000, VPCI_PERM_WO}};
	window_ops ops = diff_windows(have, want);
	EXPECT_EQ(ops.unmap, (std::vector<W>{{0x1000, 0x1000, 0}, {0x8000, 0x1000, 0}}));
	EXPECT_EQ(ops.map, (std::vector<W>{{0x8000, 0x1000, VPCI_PERM_RW},
					   {0xa000, 0x1000, VPCI_PERM_WO}}));

	window_ops all = diff_windows(have, {});
	EXPECT_EQ(all.unmap, (std::vector<W>{{0x0, 0x4000, 0}, {0x8000, 0x1000, 0}}));
	EXPECT_TRUE(all.map.empty());
}

/** One message as the device receives it. */
struct dev_msg {
	vhost_pci_msg m{};
	std::vector<unique_fd> fds;
	std::uint32_t type() const { return le32toh(m.type); }
	std::uint32_t arg() const { return le32toh(m.arg); }
	std::uint64_t offset() const { return le64toh(m.offset); }
	std::uint64_t size() const { return le64toh(m.size); }
	std::uint32_t seq() const { return le32toh(m.seq); }
};

/** Plays VM2's QEMU on the device socket. */
class fake_device {
public:
	explicit fake_device(const std::string &path) : sock_(unix_connect(path)) {}

	/** One message, or nullopt when nothing came within @p ms (pumping @p pump). */
	template <typename Pump>
	std::optional<dev_msg> recv(Pump pump, int ms = 2000)
	{
		const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
		for (;;) {
			dev_msg d;
			iovec iov{&d.m, sizeof(d.m)};
			alignas(cmsghdr) char cbuf[CMSG_SPACE(4 * sizeof(int))];
			msghdr h{};
			h.msg_iov = &iov;
			h.msg_iovlen = 1;
			h.msg_control = cbuf;
			h.msg_controllen = sizeof(cbuf);
			const ssize_t n = ::recvmsg(sock_.get(), &h, MSG_DONTWAIT | MSG_WAITALL);
			if (n == static_cast<ssize_t>(sizeof(d.m))) {
				for (cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
					const std::size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
					for (std::size_t i = 0; i < k; i++) {
						int fd;
						std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
						d.fds.emplace_back(fd);
					}
				}
				return d;
			}
			EXPECT_TRUE(n < 0) << "short message " << n;
			if (std::chrono::steady_clock::now() > end)
				return std::nullopt;
			pump();
		}
	}
	void reply(std::uint32_t type, const dev_msg &req, std::uint32_t arg = 0)
	{
		vhost_pci_msg r = req.m;
		r.type = htole32(type);
		r.arg = htole32(arg);
		r.aux = type == VHOST_PCI_MSG_ERROR ? req.m.type : 0;
		ASSERT_EQ(::send(sock_.get(), &r, sizeof(r), MSG_NOSIGNAL),
			  static_cast<ssize_t>(sizeof(r)));
	}
	void close() { sock_.reset(); }

private:
	unique_fd sock_;
};

constexpr std::uint64_t kFile = 8 << 20, kCtrl = kFile - VPCI_CTRL_SIZE;

class DeviceServerTest : public ::testing::Test {
protected:
	DeviceServerTest()
	{
		mem_.reset(::open(dir_.path("mem").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
		EXPECT_EQ(::ftruncate(mem_.get(), kFile), 0);
		srv_.emplace(dir_.path("dev.sock"), mem_.get(), kFile, kCtrl, 3);
	}
	void pump()
	{
		srv_->handle_listen();
		srv_->handle_client();
	}
	std::optional<dev_msg> recv(fake_device &d, int ms = 2000)
	{
		return d.recv([this] { pump(); }, ms);
	}

	temp_dir dir_;
	unique_fd mem_;
	std::optional<device_server> srv_;
};

TEST_F(DeviceServerTest, SetupSendsHelloVectorsDoorbellsAndWindows)
{
	EXPECT_EQ(srv_->sync_windows({{0x10000, 0x2000, VPCI_PERM_RW}}), 0u) << "no client: nothing sent";
	fake_device dev(dir_.path("dev.sock"));
	auto hello = recv(dev);
	ASSERT_TRUE(hello);
	EXPECT_EQ(hello->type(), VHOST_PCI_MSG_HELLO);
	EXPECT_EQ(hello->arg(), VHOST_PCI_PROTO_VERSION);
	EXPECT_EQ(hello->offset(), kCtrl);
	EXPECT_EQ(hello->size(), kFile);
	ASSERT_EQ(hello->fds.size(), 1u);
	struct stat a, b;
	ASSERT_EQ(::fstat(hello->fds[0].get(), &a), 0);
	ASSERT_EQ(::fstat(mem_.get(), &b), 0);
	EXPECT_EQ(a.st_ino, b.st_ino) << "HELLO carries the memory file";
	for (unsigned v = 0; v < 3; v++) {
		auto db = recv(dev), vec = recv(dev);
		ASSERT_TRUE(db && vec);
		EXPECT_EQ(db->type(), VHOST_PCI_MSG_SET_DOORBELL);
		EXPECT_EQ(vec->type(), VHOST_PCI_MSG_SET_VECTOR);
		EXPECT_EQ(db->arg(), v);
		EXPECT_EQ(vec->arg(), v);
		ASSERT_EQ(db->fds.size(), 1u);
		ASSERT_EQ(vec->fds.size(), 1u);
		EXPECT_TRUE(same_file(db->fds[0].get(), srv_->doorbell_fd(v)));
	}
	auto map = recv(dev);
	ASSERT_TRUE(map);
	EXPECT_EQ(map->type(), VHOST_PCI_MSG_MAP);
	EXPECT_EQ(map->offset(), 0x10000u);
	EXPECT_EQ(map->size(), 0x2000u);
	EXPECT_EQ(map->arg(), VPCI_PERM_RW);
	EXPECT_TRUE(map->fds.empty());
	EXPECT_FALSE(srv_->done(map->seq()));
	dev.reply(VHOST_PCI_MSG_READY, *hello);
	dev.reply(VHOST_PCI_MSG_MAP_DONE, *map);
	for (int i = 0; i < 20 && !srv_->done(map->seq()); i++)
		pump();
	EXPECT_TRUE(srv_->done(map->seq()));
	EXPECT_TRUE(srv_->ready());
}

TEST_F(DeviceServerTest, SyncSendsOnlyTheDifferenceAndDoneFollowsReplies)
{
	fake_device dev(dir_.path("dev.sock"));
	pump();
	for (int i = 0; i < 7; i++) // HELLO + 3 x (doorbell, vector)
		ASSERT_TRUE(recv(dev));
	const std::uint32_t s1 = srv_->sync_windows({{0x0, 0x4000, VPCI_PERM_RW}});
	auto m1 = recv(dev);
	ASSERT_TRUE(m1);
	EXPECT_EQ(m1->seq(), s1);
	EXPECT_EQ(srv_->sync_windows({{0x0, 0x4000, VPCI_PERM_RW}}), 0u) << "nothing changed";

	// Drop page 1, page 3 becomes read-only: UNMAPs first, then the MAP
	const std::uint32_t s2 = srv_->sync_windows(
		{{0x0, 0x1000, VPCI_PERM_RW}, {0x2000, 0x1000, VPCI_PERM_RW}, {0x3000, 0x1000, VPCI_PERM_RO}});
	auto u1 = recv(dev), u2 = recv(dev), m2 = recv(dev);
	ASSERT_TRUE(u1 && u2 && m2);
	EXPECT_EQ(u1->type(), VHOST_PCI_MSG_UNMAP);
	EXPECT_EQ(u1->offset(), 0x1000u);
	EXPECT_EQ(u2->type(), VHOST_PCI_MSG_UNMAP);
	EXPECT_EQ(u2->offset(), 0x3000u);
	EXPECT_EQ(m2->type(), VHOST_PCI_MSG_MAP);
	EXPECT_EQ(m2->offset(), 0x3000u);
	EXPECT_EQ(m2->arg(), VPCI_PERM_RO);
	EXPECT_EQ(m2->seq(), s2);

	// Replies: done(s) only once everything up to s is answered
	dev.reply(VHOST_PCI_MSG_UNMAP_DONE, *u1);
	dev.reply(VHOST_PCI_MSG_UNMAP_DONE, *u2);
	for (int i = 0; i < 10; i++)
		pump();
	EXPECT_FALSE(srv_->done(s1)) << "the first MAP is still unanswered";
	EXPECT_FALSE(srv_->done(s2));
	dev.reply(VHOST_PCI_MSG_MAP_DONE, *m1);
	dev.reply(VHOST_PCI_MSG_ERROR, *m2, VHOST_PCI_ERR_LIMIT);
	for (int i = 0; i < 20 && !srv_->done(s2); i++)
		pump();
	EXPECT_TRUE(srv_->done(s1));
	EXPECT_TRUE(srv_->done(s2)) << "a refused request is answered too";
	EXPECT_EQ(srv_->stats().errors, 1u);
	EXPECT_EQ(srv_->stats().maps, 2u);
	EXPECT_EQ(srv_->stats().unmaps, 2u);
}

TEST_F(DeviceServerTest, DisconnectCompletesOutstandingAndReconnectReplays)
{
	auto dev = std::make_unique<fake_device>(dir_.path("dev.sock"));
	pump();
	for (int i = 0; i < 7; i++)
		ASSERT_TRUE(recv(*dev));
	srv_->sync_windows({{0x0, 0x1000, VPCI_PERM_RO}, {0x5000, 0x1000, VPCI_PERM_RW}});
	const std::uint32_t s = srv_->sync_windows({{0x5000, 0x1000, VPCI_PERM_RW}});
	EXPECT_FALSE(srv_->done(s));
	const std::uint64_t epoch = srv_->epoch();
	dev.reset(); // VM2's QEMU dies mid-unmap
	for (int i = 0; i < 10 && srv_->client_connected(); i++)
		pump();
	EXPECT_FALSE(srv_->client_connected());
	EXPECT_TRUE(srv_->done(s)) << "a closed connection shows no window";
	EXPECT_NE(srv_->epoch(), epoch);

	// The next QEMU gets the windows wanted now
	fake_device again(dir_.path("dev.sock"));
	pump();
	for (int i = 0; i < 7; i++)
		ASSERT_TRUE(recv(again));
	auto m = recv(again);
	ASSERT_TRUE(m);
	EXPECT_EQ(m->type(), VHOST_PCI_MSG_MAP);
	EXPECT_EQ(m->offset(), 0x5000u);
	EXPECT_FALSE(recv(again, 100)) << "only the current windows";
}

// VM2's QEMU flooding the socket with replies nobody asked for is read in
// chunks of read_budget bytes, one a call (the daemon's loop is
// level-triggered, so everything else is served in between); a message
// cut by the budget is completed on the next call, none is lost.
TEST_F(DeviceServerTest, ReplyFloodIsReadInBoundedChunks)
{
	unique_fd sock = unix_connect(dir_.path("dev.sock"));
	pump(); // setup: sent to us, left unread
	ASSERT_TRUE(srv_->client_connected());
	const std::uint32_t s = srv_->sync_windows({{0x0, 0x1000, VPCI_PERM_RW}});
	ASSERT_FALSE(srv_->done(s));
	vhost_pci_msg stray{};
	stray.type = htole32(VHOST_PCI_MSG_MAP_DONE); // for a request never sent
	stray.seq = htole32(s + 1000);
	const std::size_t budget = device_server::read_budget;
	const std::size_t sent =
		flood(sock.get(), std::string(reinterpret_cast<const char *>(&stray), sizeof(stray)),
		      4 * budget);
	ASSERT_GT(sent, 2 * budget) << "the socket took too little to tell";
	vhost_pci_msg done{};
	done.type = htole32(VHOST_PCI_MSG_MAP_DONE);
	done.seq = htole32(s);
	ASSERT_EQ(::send(sock.get(), &done, sizeof(done), MSG_NOSIGNAL),
		  static_cast<ssize_t>(sizeof(done)));
	srv_->handle_client();
	EXPECT_TRUE(readable(srv_->client_fd())) << "one call read the whole flood";
	EXPECT_FALSE(srv_->done(s));
	std::size_t calls = 1;
	for (; readable(srv_->client_fd()) && calls < 1000; calls++)
		srv_->handle_client();
	EXPECT_GE(calls, sent / (budget + 4096)) << "a call read more than its budget";
	EXPECT_TRUE(srv_->client_connected());
	EXPECT_TRUE(srv_->done(s)) << "the real reply behind the flood was lost";
}

TEST_F(DeviceServerTest, VectorsAndDoorbellsAreReplaceable)
{
	fake_device dev(dir_.path("dev.sock"));
	pump();
	for (int i = 0; i < 7; i++)
		ASSERT_TRUE(recv(dev));
	unique_fd kick = make_eventfd(), call = make_eventfd();
	srv_->set_vector(1, kick.get());
	srv_->set_doorbell(1, call.get());
	auto v = recv(dev), d = recv(dev);
	ASSERT_TRUE(v && d);
	EXPECT_EQ(v->type(), VHOST_PCI_MSG_SET_VECTOR);
	EXPECT_EQ(d->type(), VHOST_PCI_MSG_SET_DOORBELL);
	ASSERT_EQ(v->fds.size(), 1u);
	EXPECT_TRUE(same_file(v->fds[0].get(), kick.get()));
	EXPECT_TRUE(same_file(d->fds[0].get(), call.get()));
	srv_->notify_vm2(1);
	EXPECT_TRUE(readable(kick.get())) << "vector 1 is the kick fd now";
	srv_->set_doorbell(1, -1); // back to the backend's own eventfd
	auto d2 = recv(dev);
	ASSERT_TRUE(d2);
	EXPECT_TRUE(same_file(d2->fds[0].get(), srv_->doorbell_fd(1)));
	EXPECT_THROW(srv_->sync_windows({{kCtrl - 0x1000, 0x2000, VPCI_PERM_RW}}),
		     std::invalid_argument);
}

// The backend between a fake VM1 (vhost-user front-end) and a fake device.

constexpr std::uint64_t kRam = 4 << 20;
constexpr std::uint64_t kUaddr = 0x7f0000000000ULL;
constexpr std::uint64_t kPlatform = 1ULL << 33;

class DeviceBackendTest : public ::testing::Test {
protected:
	static backend_config config(const temp_dir &d)
	{
		backend_config c;
		c.device = vm2_device::vhost_pci;
		c.device_socket = d.path("dev.sock");
		c.mem_file = d.path("mem");
		c.ram_size = kRam;
		c.ctrl.max_queue_pairs = 1;
		c.vhost_user_socket = d.path("vu.sock");
		c.inval_timeout_ms = 1000;
		return c;
	}
	void SetUp() override
	{
		dev_ = std::make_unique<fake_device>(dir_.path("dev.sock"));
		pump();
		for (int i = 0; i < 1 + 2 * 3; i++) // HELLO, 3 x (doorbell, vector)
			ASSERT_TRUE(dev_recv());
		sock_ = unix_connect(dir_.path("vu.sock"));
		pump();
	}
	void pump(int rounds = 3)
	{
		for (int i = 0; i < rounds; i++)
			be_.run_once(5);
	}
	std::optional<dev_msg> dev_recv(int ms = 2000)
	{
		return dev_->recv([this] { be_.run_once(5); }, ms);
	}
	vpci_ctrl &ctrl() { return be_.control().raw(); }
	void send(std::uint32_t req, const void *p, std::size_t len, std::vector<int> fds = {},
		  bool need_reply = true)
	{
		vu::send_message(sock_.get(), req, vu::version | (need_reply ? vu::flag_need_reply : 0u),
				 p, len, fds);
		pump();
	}
	std::optional<std::uint64_t> ack(int ms = 2000)
	{
		for (auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
		     std::chrono::steady_clock::now() < end;) {
			if (auto m = vu::recv_raw(sock_.get(), 0))
				return m->u64().value_or(~0ULL);
			be_.run_once(5);
		}
		return std::nullopt;
	}
	void negotiate(std::uint64_t features)
	{
		std::uint64_t v = offered_protocol_features;
		send(static_cast<std::uint32_t>(vu::request::get_features), nullptr, 0, {}, false);
		ASSERT_TRUE(vu::recv_raw(sock_.get(), 1000));
		send(static_cast<std::uint32_t>(vu::request::set_protocol_features), &v, sizeof(v));
		ASSERT_EQ(ack(), 0u);
		send(static_cast<std::uint32_t>(vu::request::set_owner), nullptr, 0, {}, false);
		v = features | vu::f_protocol_features;
		send(static_cast<std::uint32_t>(vu::request::set_features), &v, sizeof(v));
		ASSERT_EQ(ack(), 0u);
	}
	void set_mem_table()
	{
		unique_fd mem(::open(dir_.path("mem").c_str(), O_RDWR | O_CLOEXEC));
		vu::memory m{};
		m.nregions = 1;
		m.regions[0] = {0, kRam, kUaddr, 0};
		send(static_cast<std::uint32_t>(vu::request::set_mem_table), &m, 8 + 32, {mem.get()});
		ASSERT_EQ(ack(), 0u);
	}
	void iotlb(std::uint8_t type, std::uint64_t iova, std::uint64_t size, std::uint64_t uaddr,
		   std::uint8_t perm)
	{
		vu::iotlb_msg t{};
		t.iova = iova;
		t.size = size;
		t.uaddr = uaddr;
		t.perm = perm;
		t.type = type;
		send(static_cast<std::uint32_t>(vu::request::iotlb_msg), &t, sizeof(t));
	}
	void bind_driver()
	{
		le_store(ctrl().driver.device_features, default_device_features);
		le_store(ctrl().driver.status, VPCI_DS_BOUND, std::memory_order_release);
		eventfd_signal(be_.device().doorbell_fd(VPCI_VEC_CONFIG));
		pump();
	}
	std::vector<vpci_msg> driver_drain() { return test::drain_b2d(ctrl()); }
	/**
	 * A bound driver, ACCESS_PLATFORM, and VM1's RW update of IOVA 0x40000
	 * (@p size bytes at file offset 0x3000) mapped by the device.
	 */
	void bound_window(std::uint64_t size)
	{
		bind_driver();
		negotiate(default_device_features | kPlatform);
		set_mem_table();
		iotlb(vu::iotlb_update, 0x40000, size, kUaddr + 0x3000, VPCI_PERM_RW);
		ASSERT_EQ(ack(), 0u);
		auto map = dev_recv();
		ASSERT_TRUE(map);
		dev_->reply(VHOST_PCI_MSG_MAP_DONE, *map);
		pump(10);
	}
	void driver_inv_ack(std::uint32_t seq)
	{
		vpci_msg a{};
		a.type = VPCI_MSG_IOTLB_INV_ACK;
		a.seq = htole32(seq);
		auto &r = ctrl().d2b;
		std::uint32_t p = le_load(r.prod);
		r.ent[p % VPCI_MSG_RING_SIZE] = a;
		le_store(r.prod, p + 1, std::memory_order_release);
		eventfd_signal(be_.device().doorbell_fd(VPCI_VEC_CONFIG));
		pump();
	}

	temp_dir dir_;
	backend be_{config(dir_)};
	std::unique_ptr<fake_device> dev_;
	unique_fd sock_;
};

TEST_F(DeviceBackendTest, UpdateReachesTheDriverOnlyAfterMapDone)
{
	bind_driver();
	negotiate(default_device_features | kPlatform);
	set_mem_table();
	driver_drain();
	iotlb(vu::iotlb_update, 0x40000, 0x1000, kUaddr + 0x3000, VPCI_PERM_RO);
	ASSERT_EQ(ack(), 0u) << "VM1's update is acked at once";
	auto map = dev_recv();
	ASSERT_TRUE(map);
	EXPECT_EQ(map->type(), VHOST_PCI_MSG_MAP);
	EXPECT_EQ(map->offset(), 0x3000u) << "file offset, not IOVA";
	EXPECT_EQ(map->size(), 0x1000u);
	EXPECT_EQ(map->arg(), VPCI_PERM_RO);
	pump(10);
	EXPECT_TRUE(driver_drain().empty()) << "the driver must not see a window not yet mapped";
	dev_->reply(VHOST_PCI_MSG_MAP_DONE, *map);
	pump(10);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u);
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_UPDATE);
	EXPECT_EQ(le_load(msgs[0].bar_offset), 0x3000u);
	EXPECT_EQ(be_.status()["device"]["windows"], 1);
	const nlohmann::json want = {{{"offset", 0x3000}, {"size", 0x1000}, {"perm", VPCI_PERM_RO}}};
	EXPECT_EQ(be_.status()["device"]["window_list"], want);
}

// Every window is counted, the first status_windows listed: one status
// reply line stays small whatever max_windows the device allows.
TEST_F(DeviceBackendTest, StatusListsAtMostStatusWindows)
{
	bind_driver();
	negotiate(default_device_features | kPlatform);
	set_mem_table();
	driver_drain();
	const std::size_t n = backend::status_windows + 10;
	for (std::uint64_t i = 0; i < n; i++) {
		// every other page: no two windows merge
		iotlb(vu::iotlb_update, 0x40000 + i * 0x2000, 0x1000, kUaddr + 0x3000 + i * 0x2000,
		      VPCI_PERM_RO);
		ASSERT_EQ(ack(), 0u);
		auto map = dev_recv();
		ASSERT_TRUE(map);
		dev_->reply(VHOST_PCI_MSG_MAP_DONE, *map);
		pump(1);
	}
	pump(10);
	const auto st = be_.status()["device"];
	EXPECT_EQ(st["windows"], n);
	EXPECT_EQ(st["window_list"].size(), backend::status_windows);
	EXPECT_EQ(st["mapped_bytes"], n * 0x1000);
	EXPECT_LT(be_.handle_control_line(R"({"cmd":"status"})").size(), 64u * 1024);
}

TEST_F(DeviceBackendTest, InvalidationNeedsBothInvAckAndUnmapDone)
{
	ASSERT_NO_FATAL_FAILURE(bound_window(0x1000));
	driver_drain();

	// The driver hears first; the window stays while it still translates
	// the range (it must not read the all-ones of an unmapped BAR there).
	iotlb(vu::iotlb_invalidate, 0x40000, 0x1000, 0, 0);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u) << "the driver's invalidation does not wait for the device";
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_INVALIDATE);
	EXPECT_FALSE(dev_recv(100)) << "window dropped before the driver acked";
	EXPECT_EQ(be_.status()["device"]["windows"], 1);
	driver_inv_ack(le_load(msgs[0].seq));
	auto unmap = dev_recv();
	ASSERT_TRUE(unmap);
	EXPECT_EQ(unmap->type(), VHOST_PCI_MSG_UNMAP);
	EXPECT_EQ(unmap->offset(), 0x3000u);
	EXPECT_FALSE(ack(100)) << "acked to VM1 before VM2's device unmapped";
	dev_->reply(VHOST_PCI_MSG_UNMAP_DONE, *unmap);
	EXPECT_EQ(ack(), 0u);
	EXPECT_EQ(be_.status()["device"]["windows"], 0);
}

TEST_F(DeviceBackendTest, Vm2QemuGoingAwayMidUnmapCompletesTheInvalidation)
{
	ASSERT_NO_FATAL_FAILURE(bound_window(0x2000));
	driver_drain();
	iotlb(vu::iotlb_invalidate, 0x40000, 0x1000, 0, 0);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u);
	driver_inv_ack(le_load(msgs[0].seq));
	ASSERT_TRUE(dev_recv()) << "the UNMAP, once the driver acked";
	EXPECT_FALSE(ack(50));
	dev_->close(); // VM2's QEMU dies before UNMAP_DONE
	EXPECT_EQ(ack(), 0u) << "no device left, nothing reachable: complete";
	EXPECT_EQ(be_.status()["vm2_connected"], false);

	// A new VM2 QEMU gets the remaining window
	dev_ = std::make_unique<fake_device>(dir_.path("dev.sock"));
	for (int i = 0; i < 7; i++)
		ASSERT_TRUE(dev_recv());
	auto m = dev_recv();
	ASSERT_TRUE(m);
	EXPECT_EQ(m->type(), VHOST_PCI_MSG_MAP);
	EXPECT_EQ(m->offset(), 0x4000u);
	EXPECT_EQ(m->size(), 0x1000u);
}

TEST_F(DeviceBackendTest, SessionResetDropsWindowsOnceTheDriverAckedTheFlush)
{
	ASSERT_NO_FATAL_FAILURE(bound_window(0x1000));
	driver_drain();
	sock_.reset(); // VM1's QEMU goes away: the driver's IOTLB is flushed
	pump(10);
	auto msgs = driver_drain();
	ASSERT_EQ(msgs.size(), 1u);
	EXPECT_EQ(msgs[0].type, VPCI_MSG_IOTLB_INVALIDATE);
	EXPECT_EQ(le_load(msgs[0].size), 0u) << "a flush";
	EXPECT_FALSE(dev_recv(100)) << "windows dropped while the driver may still walk a ring";
	driver_inv_ack(le_load(msgs[0].seq));
	auto unmap = dev_recv();
	ASSERT_TRUE(unmap);
	EXPECT_EQ(unmap->type(), VHOST_PCI_MSG_UNMAP);
	EXPECT_EQ(unmap->offset(), 0x3000u);
}

TEST_F(DeviceBackendTest, FlushWithoutDriverAckDropsWindowsAtTheTimeout)
{
	ASSERT_NO_FATAL_FAILURE(bound_window(0x1000));
	sock_.reset();
	auto unmap = dev_recv(3000); // inval_timeout_ms is 1000 here
	ASSERT_TRUE(unmap);
	EXPECT_EQ(unmap->type(), VHOST_PCI_MSG_UNMAP);
}

// A driver that never acks: at the invalidation timeout VM1 gets a failure
// and VM2 loses the window anyway.
TEST_F(DeviceBackendTest, InvalidationTimeoutDropsTheWindow)
{
	ASSERT_NO_FATAL_FAILURE(bound_window(0x1000));
	driver_drain();
	iotlb(vu::iotlb_invalidate, 0x40000, 0x1000, 0, 0);
	ASSERT_EQ(driver_drain().size(), 1u);
	EXPECT_FALSE(dev_recv(300)) << "window dropped before the driver acked";
	auto unmap = dev_recv(3000); // inval_timeout_ms is 1000 here
	ASSERT_TRUE(unmap) << "window kept after the timeout";
	EXPECT_EQ(unmap->type(), VHOST_PCI_MSG_UNMAP);
	EXPECT_EQ(unmap->offset(), 0x3000u);
	EXPECT_EQ(ack(), 1u) << "VM1 gets a failure";
	EXPECT_EQ(be_.status()["iotlb"]["timeouts"], 1);
}

TEST_F(DeviceBackendTest, WithoutViommuTheWindowIsVm1Ram)
{
	negotiate(default_device_features & ~kPlatform);
	set_mem_table();
	auto map = dev_recv();
	ASSERT_TRUE(map);
	EXPECT_EQ(map->type(), VHOST_PCI_MSG_MAP);
	EXPECT_EQ(map->offset(), 0u);
	EXPECT_EQ(map->size(), kRam);
	EXPECT_EQ(map->arg(), VPCI_PERM_RW);
}

TEST_F(DeviceBackendTest, KickAndCallFdsBecomeVectorAndDoorbell)
{
	negotiate(default_device_features | kPlatform);
	unique_fd kick = make_eventfd(), call = make_eventfd();
	std::uint64_t idx = 0;
	send(static_cast<std::uint32_t>(vu::request::set_vring_call), &idx, sizeof(idx),
	     {call.get()});
	ASSERT_EQ(ack(), 0u);
	send(static_cast<std::uint32_t>(vu::request::set_vring_kick), &idx, sizeof(idx),
	     {kick.get()});
	ASSERT_EQ(ack(), 0u);
	bool vec = false, db = false;
	for (int i = 0; i < 4 && !(vec && db); i++) {
		auto m = dev_recv(500);
		if (!m)
			continue;
		ASSERT_EQ(m->fds.size(), 1u);
		if (m->type() == VHOST_PCI_MSG_SET_VECTOR && m->arg() == VPCI_VEC_QUEUE(0))
			vec = same_file(m->fds[0].get(), kick.get());
		if (m->type() == VHOST_PCI_MSG_SET_DOORBELL && m->arg() == VPCI_VEC_QUEUE(0))
			db = same_file(m->fds[0].get(), call.get());
	}
	EXPECT_TRUE(vec) << "VM1's kick fd is VM2's vector 1";
	EXPECT_TRUE(db) << "VM1's call fd is VM2's doorbell 1";
}

} // namespace
