// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The JSON the daemon's `status` and hostdp's stats answer with, pinned:
// every key path, its JSON type and (for a known state) its value.
// selftests/, scripts/, vpci-ctl and the bench scripts read these by name,
// so a change here is a change of interface, not of implementation.
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include <sys/socket.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "backend.hpp"
#include "hostdp.hpp"
#include "test_util.hpp"
#include "vhost_user.hpp"

using namespace vpci;
using namespace vpci::test;

namespace {

const char *type_name(const nlohmann::json &j)
{
	switch (j.type()) {
	case nlohmann::json::value_t::null:
		return "null";
	case nlohmann::json::value_t::boolean:
		return "bool";
	case nlohmann::json::value_t::number_integer:
	case nlohmann::json::value_t::number_unsigned:
		return "int"; // the same on the wire
	case nlohmann::json::value_t::number_float:
		return "float";
	case nlohmann::json::value_t::string:
		return "string";
	case nlohmann::json::value_t::array:
		return "array";
	case nlohmann::json::value_t::object:
		return "object";
	default:
		return "other";
	}
}

/**
 * One line per node: "path type" plus " = value" for a leaf whose path is
 * not in @p volatile_paths (values that differ from run to run).
 */
void flatten(const nlohmann::json &j, const std::string &path,
	     const std::set<std::string> &volatile_paths, std::vector<std::string> &out)
{
	std::string line = path + " " + type_name(j);
	if (j.is_object()) {
		out.push_back(line);
		for (const auto &[k, v] : j.items())
			flatten(v, path + "." + k, volatile_paths, out);
	} else if (j.is_array()) {
		out.push_back(line + " size " + std::to_string(j.size()));
		for (std::size_t i = 0; i < j.size(); i++)
			flatten(j[i], path + "[" + std::to_string(i) + "]", volatile_paths, out);
	} else {
		if (!volatile_paths.count(path))
			line += " = " + j.dump();
		out.push_back(line);
	}
}

std::vector<std::string> shape(const nlohmann::json &j, const std::set<std::string> &vol = {})
{
	std::vector<std::string> out;
	flatten(j, "", vol, out);
	return out;
}

std::string lines(const std::vector<std::string> &v)
{
	std::string s;
	for (const std::string &l : v)
		s += l + "\n";
	return s;
}

// What differs between runs: CPU time, the temporary directory.
const std::set<std::string> kVolatile = {".cpu_seconds", ".mem_file"};

/** What a front-end sends first here: VERSION_1 and ring 0's size (256). */
void send_setup(int sock)
{
	const std::uint64_t features = 1ULL << 32;
	vu::send_message(sock, static_cast<std::uint32_t>(vu::request::set_features), vu::version,
			 &features, sizeof(features));
	const vu::vring_state num{0, 256};
	vu::send_message(sock, static_cast<std::uint32_t>(vu::request::set_vring_num), vu::version,
			 &num, sizeof(num));
}

backend_config base_config(const temp_dir &d)
{
	backend_config c;
	c.mem_file = d.path("mem");
	c.ram_size = 4 << 20;
	c.ctrl.max_queue_pairs = 1;
	return c;
}

} // namespace

// ivshmem for VM2, VM1 connected with one ring sized: "frontend", "iotlb".
TEST(StatusJson, DaemonWithIvshmemAndVm1)
{
	temp_dir dir;
	backend_config c = base_config(dir);
	c.ivshmem_socket = dir.path("ivs.sock");
	c.vhost_user_socket = dir.path("vu.sock");
	backend be(c);
	unique_fd s = unix_connect(dir.path("vu.sock"));
	be.run_once(5);
	send_setup(s.get());
	for (int i = 0; i < 20; i++)
		be.run_once(5);

	const std::vector<std::string> want = {
		" object",
		".backend_status int = 1",
		".client_id int = 0",
		".cpu_seconds float",
		".driver object",
		".driver.bound bool = false",
		".driver.features int = 0",
		".driver.mtu int = 0",
		".driver.status int = 0",
		".driver.up bool = false",
		".file_size int = 8388608",
		".frontend object",
		".frontend.connected bool = true",
		".frontend.features int = 4294967296",
		".frontend.mem_regions int = 0",
		".frontend.protocol_features int = 0",
		".frontend.queues array size 2",
		".frontend.queues[0] object",
		".frontend.queues[0].avail int = 0",
		".frontend.queues[0].call string = \"none\"",
		".frontend.queues[0].calls_relayed int = 0",
		".frontend.queues[0].desc int = 0",
		".frontend.queues[0].enabled bool = false",
		".frontend.queues[0].kick string = \"none\"",
		".frontend.queues[0].kicks_relayed int = 0",
		".frontend.queues[0].notify string = \"none\"",
		".frontend.queues[0].num int = 256",
		".frontend.queues[0].used int = 0",
		".frontend.queues[1] object",
		".frontend.queues[1].avail int = 0",
		".frontend.queues[1].call string = \"none\"",
		".frontend.queues[1].calls_relayed int = 0",
		".frontend.queues[1].desc int = 0",
		".frontend.queues[1].enabled bool = false",
		".frontend.queues[1].kick string = \"none\"",
		".frontend.queues[1].kicks_relayed int = 0",
		".frontend.queues[1].notify string = \"none\"",
		".frontend.queues[1].num int = 0",
		".frontend.queues[1].used int = 0",
		".generation int = 4",
		".handler_errors int = 0",
		".iotlb object",
		".iotlb.acks int = 0",
		".iotlb.deferred int = 0",
		".iotlb.invalidations int = 0",
		".iotlb.misses_sent int = 0",
		".iotlb.rejected int = 0",
		".iotlb.shadow_entries int = 0",
		".iotlb.timeouts int = 0",
		".iotlb.to_driver int = 0",
		".iotlb.updates int = 0",
		".link string = \"up\"",
		".mem_file string",
		".notify object",
		".notify.call_peer int = 0",
		".notify.call_peer_probe int = 0",
		".notify.own_vectors_sent int = 0",
		".notify.peer_reannouncements int = 0",
		".notify.reannounce_peer bool = false",
		".ok bool = true",
		".peer_mem_size int = 4194304",
		".vm2_connected bool = false",
		".vm2_device string = \"ivshmem\"",
	};
	EXPECT_EQ(lines(shape(be.status(), kVolatile)), lines(want));
	// VM1's session on its own is what "frontend" holds.
	EXPECT_EQ(be.vhost_user()->status(), be.status()["frontend"]);
}

// The vhost-pci device for VM2 (nobody connected), no VM1 socket: "device".
TEST(StatusJson, DaemonWithVhostPciDevice)
{
	temp_dir dir;
	backend_config c = base_config(dir);
	c.device = vm2_device::vhost_pci;
	c.device_socket = dir.path("dev.sock");
	backend be(c);
	be.run_once(5);

	const std::vector<std::string> want = {
		" object",
		".backend_status int = 0",
		".client_id int = 0",
		".cpu_seconds float",
		".device object",
		".device.connected bool = false",
		".device.connects int = 0",
		".device.errors int = 0",
		".device.last_map_us int = 0",
		".device.last_unmap_us int = 0",
		".device.mapped_bytes int = 0",
		".device.maps int = 0",
		".device.max_unmap_us int = 0",
		".device.max_windows int = 0",
		".device.outstanding int = 0",
		".device.ready bool = false",
		".device.unmaps int = 0",
		".device.window_list array size 0",
		".device.windows int = 0",
		".driver object",
		".driver.bound bool = false",
		".driver.features int = 0",
		".driver.mtu int = 0",
		".driver.status int = 0",
		".driver.up bool = false",
		".file_size int = 8388608",
		".generation int = 1",
		".handler_errors int = 0",
		".link string = \"up\"",
		".mem_file string",
		".notify object",
		".notify.call_peer int = 0",
		".notify.call_peer_probe int = 0",
		".notify.own_vectors_sent int = 3",
		".notify.peer_reannouncements int = 0",
		".notify.reannounce_peer bool = false",
		".ok bool = true",
		".peer_mem_size int = 4194304",
		".vm2_connected bool = false",
		".vm2_device string = \"vhost-pci\"",
	};
	EXPECT_EQ(lines(shape(be.status(), kVolatile)), lines(want));
}

// hostdp with a front-end connected and nothing sent: its stats.
TEST(StatusJson, HostdpStats)
{
	hostdp::device dev{hostdp::config{}};
	int sv[2];
	ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
	unique_fd mine(sv[0]);
	ASSERT_TRUE(dev.attach(unique_fd(sv[1])));
	send_setup(mine.get());
	for (int i = 0; i < 20; i++)
		dev.poll_control();

	const std::vector<std::string> want = {
		" object",
		".active_ns int = 0",
		".busy_ns int = 0",
		".connected bool = true",
		".features int = 4294967296",
		".idle_turns int = 0",
		".iotlb object",
		".iotlb.entries int = 0",
		".iotlb.evictions int = 0",
		".iotlb.invalidations int = 0",
		".iotlb.misses_sent int = 0",
		".iotlb.rejected int = 0",
		".iotlb.updates int = 0",
		".messages int = 2",
		".pending_frames int = 0",
		".queues array size 2",
		".queues[0] object",
		".queues[0].broken bool = false",
		".queues[0].bytes int = 0",
		".queues[0].csum_completed int = 0",
		".queues[0].csum_partial int = 0",
		".queues[0].dropped int = 0",
		".queues[0].faults object",
		".queues[0].faults.chain int = 0",
		".queues[0].faults.desc int = 0",
		".queues[0].faults.head int = 0",
		".queues[0].faults.miss_timeout int = 0",
		".queues[0].faults.perm int = 0",
		".queues[0].faults.ring int = 0",
		".queues[0].index int = 0",
		".queues[0].iotlb_misses int = 0",
		".queues[0].last_avail int = 0",
		".queues[0].notify_sent int = 0",
		".queues[0].notify_suppressed int = 0",
		".queues[0].packets int = 0",
		".queues[0].running bool = false",
		".queues[0].stalls int = 0",
		".queues[0].used_idx int = 0",
		".queues[1] object",
		".queues[1].broken bool = false",
		".queues[1].bytes int = 0",
		".queues[1].csum_completed int = 0",
		".queues[1].csum_partial int = 0",
		".queues[1].dropped int = 0",
		".queues[1].faults object",
		".queues[1].faults.chain int = 0",
		".queues[1].faults.desc int = 0",
		".queues[1].faults.head int = 0",
		".queues[1].faults.miss_timeout int = 0",
		".queues[1].faults.perm int = 0",
		".queues[1].faults.ring int = 0",
		".queues[1].index int = 1",
		".queues[1].iotlb_misses int = 0",
		".queues[1].last_avail int = 0",
		".queues[1].notify_sent int = 0",
		".queues[1].notify_suppressed int = 0",
		".queues[1].packets int = 0",
		".queues[1].running bool = false",
		".queues[1].stalls int = 0",
		".queues[1].used_idx int = 0",
		".sessions int = 1",
		".turns int = 0",
	};
	EXPECT_EQ(lines(shape(dev.stats())), lines(want));
}
