// SPDX-License-Identifier: GPL-2.0-only OR MIT
// Memory file sizing and control-area initialisation.
#include <cstring>
#include <stdexcept>

#include <endian.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "control_area.hpp"
#include "shm_file.hpp"
#include "test_util.hpp"

using namespace vpci;
using ::testing::HasSubstr;

namespace {

constexpr std::uint64_t MiB = 1 << 20;

void make_file(const std::string &path, off_t size)
{
	unique_fd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	ASSERT_TRUE(fd);
	ASSERT_EQ(::ftruncate(fd.get(), size), 0);
}

template <typename F> std::string error_of(F &&f)
{
	try {
		f();
	} catch (const std::exception &e) {
		return e.what();
	}
	return "(no exception)";
}

TEST(ShmFile, RequiredSize)
{
	EXPECT_EQ(required_file_size(128 * MiB), 256 * MiB);
	EXPECT_EQ(required_file_size(4096), 128u * 1024);
	EXPECT_EQ(required_file_size(128 * MiB - VPCI_CTRL_SIZE), 128 * MiB);
	EXPECT_THROW(required_file_size(0), std::invalid_argument);
	EXPECT_THROW(required_file_size(4097), std::invalid_argument);
}

TEST(ShmFile, NewFileIsSparsePow2WithValidHeader)
{
	test::temp_dir d;
	const std::string p = d.path("mem");
	shm_file f(p, 128 * MiB);
	EXPECT_EQ(f.file_size(), 256 * MiB);
	EXPECT_EQ(f.ctrl_offset(), 256 * MiB - VPCI_CTRL_SIZE);

	struct stat st;
	ASSERT_EQ(::stat(p.c_str(), &st), 0);
	EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), 256 * MiB);

	ctrl_params cp;
	cp.max_queue_pairs = 2;
	cp.max_mtu = 9000;
	control_area a = control_area::create(f, cp);
	const vpci_ctrl &c = a.raw();
	EXPECT_EQ(le_load(c.hdr.magic), VPCI_CTRL_MAGIC);
	EXPECT_EQ(le_load(c.hdr.abi_version), VPCI_ABI_VERSION);
	EXPECT_EQ(le_load(c.hdr.total_size), VPCI_CTRL_SIZE);
	EXPECT_EQ(le_load(c.hdr.peer_mem_size), 128 * MiB);
	EXPECT_EQ(le_load(c.hdr.ctrl_offset), 256 * MiB - VPCI_CTRL_SIZE);
	EXPECT_EQ(le_load(c.hdr.max_queue_pairs), 2);
	EXPECT_EQ(le_load(c.hdr.msg_ring_size), VPCI_MSG_RING_SIZE);
	EXPECT_EQ(le_load(c.hdr.backend_peer_id), 0);
	EXPECT_EQ(le_load(c.hdr.num_vectors), 5);
	EXPECT_EQ(le_load(c.backend.generation), 1u);
	EXPECT_EQ(le_load(c.backend.status), 0u);
	EXPECT_EQ(le_load(c.backend.max_mtu), 9000);
	EXPECT_EQ(le_load(c.backend.link), VPCI_LINK_UP);
	EXPECT_EQ(le_load(c.backend.num_queue_pairs), 0);
	EXPECT_EQ(std::memcmp(c.backend.mac, cp.mac.data(), 6), 0);

	// The mapping is the tail of the file: read the magic through pread.
	unique_fd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
	std::uint32_t magic = 0;
	ASSERT_EQ(::pread(fd.get(), &magic, 4, static_cast<off_t>(f.ctrl_offset())), 4);
	EXPECT_EQ(le32toh(magic), VPCI_CTRL_MAGIC);

	a.set_link(false);
	EXPECT_FALSE(a.link_up());
	EXPECT_EQ(a.generation(), 2u);
}

TEST(ShmFile, SecondBackendOnTheSameFileIsRefusedAndTouchesNothing)
{
	test::temp_dir d;
	const std::string p = d.path("mem");
	shm_file first(p, 16 * MiB);
	control_area a = control_area::create(first, ctrl_params{});
	const vpci_ctrl before = a.raw();
	try {
		shm_file second(p, 16 * MiB);
		ADD_FAILURE() << "a second shm_file on " << p << " was accepted";
	} catch (const std::runtime_error &e) {
		EXPECT_NE(std::string(e.what()).find("in use by another vpci-backend"),
			  std::string::npos)
			<< e.what();
	}
	EXPECT_EQ(std::memcmp(&before, &a.raw(), sizeof(before)), 0) << "control area changed";
	// Once the first is gone the file can be served again.
}

TEST(ShmFile, FileIsFreeAgainAfterItsBackendIsGone)
{
	test::temp_dir d;
	const std::string p = d.path("mem");
	{ shm_file first(p, 16 * MiB); }
	EXPECT_NO_THROW(shm_file(p, 16 * MiB));
}

TEST(ShmFile, ExistingLargerPow2IsKept)
{
	test::temp_dir d;
	make_file(d.path("mem"), static_cast<off_t>(512 * MiB));
	shm_file f(d.path("mem"), 128 * MiB);
	EXPECT_EQ(f.file_size(), 512 * MiB);
	EXPECT_EQ(f.ctrl_offset(), 512 * MiB - VPCI_CTRL_SIZE);
}

TEST(ShmFile, ExistingTooSmallNamesPathAndSizes)
{
	test::temp_dir d;
	make_file(d.path("mem"), static_cast<off_t>(128 * MiB));
	std::string msg = error_of([&] { shm_file f(d.path("mem"), 128 * MiB); });
	EXPECT_THAT(msg, HasSubstr(d.path("mem")));
	EXPECT_THAT(msg, HasSubstr(std::to_string(128 * MiB) + " bytes"));
	EXPECT_THAT(msg, HasSubstr("power of two >= " + std::to_string(256 * MiB)));
}

TEST(ShmFile, ExistingNotPow2Rejected)
{
	test::temp_dir d;
	make_file(d.path("mem"), static_cast<off_t>(300 * MiB));
	std::string msg = error_of([&] { shm_file f(d.path("mem"), 128 * MiB); });
	EXPECT_THAT(msg, HasSubstr(d.path("mem")));
	EXPECT_THAT(msg, HasSubstr("power of two"));
}

TEST(ShmFile, RamSizeMustBePageAligned)
{
	test::temp_dir d;
	std::string msg = error_of([&] { shm_file f(d.path("mem"), 128 * MiB + 1); });
	EXPECT_THAT(msg, HasSubstr("multiple of 4096"));
	EXPECT_THROW(shm_file(d.path("mem"), 0), std::invalid_argument);
	EXPECT_NE(::access(d.path("mem").c_str(), F_OK), 0) << "file created despite bad size";
}

TEST(ControlArea, ReadDriverState)
{
	test::temp_dir d;
	shm_file f(d.path("mem"), 1 * MiB);
	control_area a = control_area::create(f, {});
	EXPECT_EQ(a.read_driver(), driver_state{});
	le_store(a.raw().driver.mtu, 1400);
	le_store(a.raw().driver.device_features, 0x100000000ULL);
	le_store(a.raw().driver.status, VPCI_DS_BOUND | VPCI_DS_UP);
	driver_state s = a.read_driver();
	EXPECT_TRUE(s.bound());
	EXPECT_TRUE(s.up());
	EXPECT_EQ(s.mtu, 1400);
	EXPECT_EQ(s.device_features, 0x100000000ULL);
}

TEST(ControlArea, HeaderFieldTable)
{
	test::temp_dir d;
	shm_file f(d.path("mem"), 1 * MiB);
	control_area a = control_area::create(f, {});
	EXPECT_EQ(header_fields().size(), 9u);
	const header_field *nv = find_header_field("num_vectors");
	ASSERT_NE(nv, nullptr);
	EXPECT_EQ(header_get(a.raw().hdr, *nv), 3u);
	EXPECT_THROW(header_set(a.raw().hdr, *nv, 0x10000), std::out_of_range);
	header_set(a.raw().hdr, *nv, 7);
	EXPECT_EQ(le_load(a.raw().hdr.num_vectors), 7);
	EXPECT_EQ(find_header_field("reserved"), nullptr);
}

TEST(Mac, Parse)
{
	EXPECT_EQ(parse_mac("52:54:00:12:34:02"), (mac_addr{0x52, 0x54, 0, 0x12, 0x34, 2}));
	EXPECT_EQ(mac_to_string(*parse_mac("AA:bb:cc:dd:ee:0F")), "aa:bb:cc:dd:ee:0f");
	for (const char *bad : {"", "52:54:00:12:34", "52:54:00:12:34:02:", "52-54-00-12-34-02",
				"52:54:00:12:34:0g", "5:254:00:12:34:02", "+2:54:00:12:34:02"})
		EXPECT_FALSE(parse_mac(bad)) << bad;
}

} // namespace
