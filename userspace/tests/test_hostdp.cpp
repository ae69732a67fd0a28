// SPDX-License-Identifier: GPL-2.0-only OR MIT
// vpci-sim (VM1) against vpci-hostdp (the driver core as a host vhost-user
// back-end), two processes over a real socket: every frame sent must come
// back once, in order, intact, under each IOMMU policy, and the faults the
// kernel datapath counts must be counted here too.  Both processes run
// under timeout(1) in their own process group, which the test ends by its
// id (the pid it spawned) on every path.
#include <chrono>
#include <csignal>
#include <fstream>
#include <iostream>
#include <ostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.hpp"

extern char **environ;

namespace {

using namespace std::chrono_literals;
using json = nlohmann::json;

/** A process under `timeout -k 2 S`, leader of its own process group. */
class proc {
public:
	proc(const std::vector<std::string> &args, const std::string &log, int timeout_s)
	{
		std::vector<std::string> all = {"timeout", "-k", "2", std::to_string(timeout_s)};
		all.insert(all.end(), args.begin(), args.end());
		std::vector<char *> argv;
		for (auto &a : all)
			argv.push_back(a.data());
		argv.push_back(nullptr);
		posix_spawn_file_actions_t fa;
		posix_spawnattr_t at;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
						 0644);
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
		posix_spawnattr_init(&at);
		posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
		posix_spawnattr_setpgroup(&at, 0); // group id = the child's pid
		if (posix_spawnp(&pid_, "timeout", &fa, &at, argv.data(), environ) != 0)
			pid_ = -1;
		posix_spawn_file_actions_destroy(&fa);
		posix_spawnattr_destroy(&at);
	}
	~proc() { kill(); }
	proc(const proc &) = delete;
	proc &operator=(const proc &) = delete;

	bool started() const { return pid_ > 0; }
	bool running()
	{
		if (pid_ <= 0 || reaped_)
			return false;
		return !try_reap();
	}
	/** Exit status within @p t, else -1 (and the group is killed). */
	int wait(std::chrono::milliseconds t)
	{
		for (auto end = std::chrono::steady_clock::now() + t;
		     std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(10ms))
			if (pid_ <= 0 || reaped_ || try_reap())
				return status_;
		kill();
		return -1;
	}
	void terminate()
	{
		if (pid_ > 0 && !reaped_)
			::kill(-pid_, SIGTERM);
	}
	void kill()
	{
		if (pid_ <= 0 || reaped_)
			return;
		::kill(-pid_, SIGKILL);
		int st;
		::waitpid(pid_, &st, 0);
		reaped_ = true;
		status_ = -1;
	}

private:
	bool try_reap()
	{
		int st;
		if (::waitpid(pid_, &st, WNOHANG) != pid_)
			return false;
		reaped_ = true;
		status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		return true;
	}

	pid_t pid_ = -1;
	bool reaped_ = false;
	int status_ = -1;
};

std::string slurp(const std::string &path)
{
	std::ifstream f(path);
	return std::string(std::istreambuf_iterator<char>(f), {});
}

struct HostDp : ::testing::Test {
	/** Start vpci-hostdp with @p extra options; waits for its ready file. */
	void start(std::vector<std::string> extra = {})
	{
		std::vector<std::string> args = {VPCI_HOSTDP_BIN, "-s", sock, "--ready-file",
						  dir.path("ready"), "--stats-json", dir.path("stats.json"),
						  "--miss-timeout-ms", "300", "--log-level", "info"};
		args.insert(args.end(), extra.begin(), extra.end());
		dp.emplace(args, dir.path("hostdp.log"), 240);
		ASSERT_TRUE(dp->started());
		for (int i = 0; i < 1000 && ::access(dir.path("ready").c_str(), F_OK) != 0; i++) {
			ASSERT_TRUE(dp->running()) << slurp(dir.path("hostdp.log"));
			std::this_thread::sleep_for(10ms);
		}
		ASSERT_EQ(::access(dir.path("ready").c_str(), F_OK), 0) << "no ready file";
	}

	/** One vpci-sim run; its JSON summary (null if none) and exit status. */
	json sim(std::vector<std::string> extra, int &rc)
	{
		const std::string out = dir.path("sim" + std::to_string(++runs) + ".json");
		std::vector<std::string> args = {VPCI_SIM_BIN, "-q", "-s", sock, "--json", out};
		args.insert(args.end(), extra.begin(), extra.end());
		proc p(args, out + ".log", 90);
		rc = p.started() ? p.wait(100s) : -1;
		std::ifstream f(out);
		json j = json::parse(f, nullptr, false);
		if (j.is_discarded())
			ADD_FAILURE() << "vpci-sim wrote no summary (exit " << rc
				      << "): " << slurp(out + ".log") << "\nhostdp: "
				      << slurp(dir.path("hostdp.log"));
		return j.is_discarded() ? json() : j;
	}

	/** SIGTERM vpci-hostdp; it must exit 0 and leave its counters. */
	json stop()
	{
		dp->terminate();
		EXPECT_EQ(dp->wait(10s), 0) << slurp(dir.path("hostdp.log"));
		std::ifstream f(dir.path("stats.json"));
		json j = json::parse(f, nullptr, false);
		EXPECT_FALSE(j.is_discarded()) << "no stats written";
		EXPECT_NE(::access(sock.c_str(), F_OK), 0) << "socket left behind";
		return j.is_discarded() ? json() : j;
	}

	void TearDown() override
	{
		if (dp)
			dp->kill();
		if (HasFailure()) // what the device said, to see why
			std::cerr << "--- vpci-hostdp log:\n" << slurp(dir.path("hostdp.log"))
				  << "--- stats: " << slurp(dir.path("stats.json")) << "\n";
	}

	vpci::test::temp_dir dir;
	std::string sock = dir.path("vu.sock");
	std::optional<proc> dp;
	int runs = 0;
};

/** Every frame back exactly once, in order, intact; canaries intact. */
void expect_lossless(const json &j, std::uint64_t n)
{
	ASSERT_FALSE(j.is_null());
	EXPECT_TRUE(j["ok"].get<bool>()) << j.dump(1);
	EXPECT_EQ(j["tx"]["sent"], n);
	EXPECT_EQ(j["tx"]["completed"], n);
	EXPECT_EQ(j["rx"]["unique"], n);
	EXPECT_EQ(j["rx"]["lost"], 0);
	EXPECT_EQ(j["rx"]["duplicates"], 0);
	EXPECT_EQ(j["rx"]["reordered"], 0);
	EXPECT_EQ(j["rx"]["corrupt"], 0);
	EXPECT_EQ(j["tx"]["bad_used"], 0);
	EXPECT_EQ(j["rx"]["bad_used"], 0);
	EXPECT_TRUE(j["canaries"]["ok"].get<bool>()) << j["canaries"].dump();
}

std::uint64_t faults(const json &stats, unsigned q, const char *kind)
{
	return stats["queues"][q]["faults"][kind].get<std::uint64_t>();
}

TEST_F(HostDp, IdentityMixedSizesLossless)
{
	start();
	int rc;
	json j = sim({"--iommu-policy", "identity", "-n", "30000", "--size", "60-4084"}, rc);
	EXPECT_EQ(rc, 0);
	expect_lossless(j, 30000);
	json st = stop();
	EXPECT_EQ(st["queues"][1]["packets"], 30000); // taken from VM1's TX
	EXPECT_EQ(st["queues"][0]["packets"], 30000); // written into VM1's RX
	EXPECT_EQ(st["queues"][0]["dropped"], 0);
}

// VM1 leaves every checksum partial (CSUM): with GUEST_CSUM the frame
// comes back still partial (NEEDS_CSUM, same start and offset), without
// it completed here; never with the header emptied and the checksum left
// unfinished, which VM1's stack would drop as corrupt.
TEST_F(HostDp, PartialChecksumsPassedOnOrCompleted)
{
	start();
	int rc;
	json j = sim({"--iommu-policy", "identity", "-n", "3000", "--size", "60-1514",
		      "--tx-csum"},
		     rc);
	EXPECT_EQ(rc, 0);
	expect_lossless(j, 3000);
	EXPECT_EQ(j["rx"]["csum"]["partial"], 3000) << j["rx"].dump();
	EXPECT_EQ(j["rx"]["csum"]["bad"], 0);
	j = sim({"--iommu-policy", "identity", "-n", "3000", "--size", "60-1514", "--tx-csum",
		 "--no-guest-csum"},
		rc);
	EXPECT_EQ(rc, 0);
	expect_lossless(j, 3000);
	EXPECT_EQ(j["rx"]["csum"]["complete"], 3000) << j["rx"].dump();
	EXPECT_EQ(j["rx"]["csum"]["bad"], 0);
	json st = stop();
	EXPECT_EQ(st["queues"][1]["csum_partial"], 6000);
	EXPECT_EQ(st["queues"][1]["csum_completed"], 3000);
}

TEST_F(HostDp, TransientMissesStallAndNeverDrop)
{
	// No pushed mappings: every buffer misses once on each side (QEMU +
	// iommu.strict=1).  DPDK drops frames here (docs/simulator.md).
	start();
	int rc;
	json j = sim({"--iommu-policy", "transient", "-n", "2000"}, rc);
	EXPECT_EQ(rc, 0);
	expect_lossless(j, 2000);
	ASSERT_FALSE(j.is_null());
	EXPECT_GE(j["frontend"]["iotlb"]["misses"].get<std::uint64_t>(), 4000u);
	EXPECT_GE(j["frontend"]["iotlb"]["invalidations"].get<std::uint64_t>(), 4000u);
	EXPECT_EQ(j["frontend"]["iotlb"]["misses_unanswered"], 0);
	json st = stop();
	EXPECT_GE(st["queues"][0]["iotlb_misses"].get<std::uint64_t>(), 2000u);
	EXPECT_GE(st["queues"][1]["iotlb_misses"].get<std::uint64_t>(), 2000u);
	EXPECT_EQ(st["iotlb"]["invalidations"], j["frontend"]["iotlb"]["invalidations"]);
	for (unsigned q : {0u, 1u})
		for (const char *k : {"perm", "miss_timeout", "ring", "desc"})
			EXPECT_EQ(faults(st, q, k), 0u) << "queue " << q << " " << k;
}

TEST_F(HostDp, TransientPushedAndInterruptMode)
{
	start();
	int rc;
	json j = sim({"--iommu-policy", "transient", "--iotlb-push", "-n", "2000", "--mode",
		      "interrupt", "--size", "1514"},
		     rc);
	EXPECT_EQ(rc, 0);
	expect_lossless(j, 2000);
	ASSERT_FALSE(j.is_null());
	EXPECT_GT(j["wakeups"].get<std::uint64_t>(), 0u) << "no call eventfd was ever written";
	stop();
}

TEST_F(HostDp, StaticPoolThousandsOfPagesLossless)
{
	// ~2000 4 KiB translations in the private IOTLB, pushed page by page.
	start();
	int rc;
	json j = sim({"--iommu-policy", "static-pool", "--iotlb-push", "--push-pages",
		      "--extra-mappings", "1500", "-n", "20000", "--no-event-idx"},
		     rc);
	EXPECT_EQ(rc, 0);
	expect_lossless(j, 20000);
	json st = stop();
	// 2 x 3 ring pages + 2 x 256 buffer pages + 1500 extra, nothing missed.
	EXPECT_EQ(st["iotlb"]["updates"].get<std::uint64_t>() >= 2018u, true) << st.dump(1);
	EXPECT_EQ(st["queues"][0]["iotlb_misses"], 0);
}

// A private IOTLB far smaller than what VM1 maps: entries are evicted
// (round robin) under the running rings, the used ring's among them.  Each
// is a miss VM1 answers, never a ring fault (kernel: vpci_signal(), the
// same core function vpci_net_signal()).
TEST_F(HostDp, EvictedRingEntriesAreMissesNotRingFaults)
{
	start({"--iotlb-entries", "64"});
	int rc;
	json j = sim({"--iommu-policy", "static-pool", "-n", "20000", "--mode", "interrupt",
		      "--ring-size", "1024"},
		     rc);
	EXPECT_EQ(rc, 0);
	expect_lossless(j, 20000);
	json st = stop();
	EXPECT_GT(st["iotlb"]["evictions"].get<std::uint64_t>(), 0u) << "nothing evicted";
	for (unsigned q : {0u, 1u}) {
		EXPECT_EQ(faults(st, q, "ring"), 0u) << "queue " << q;
		EXPECT_EQ(faults(st, q, "miss_timeout"), 0u) << "queue " << q;
		EXPECT_GT(st["queues"][q]["iotlb_misses"].get<std::uint64_t>(), 0u) << "queue " << q;
	}
}

TEST_F(HostDp, StaticPoolWithoutPushLossless)
{
	// What QEMU does: nothing pushed, pages fetched on demand.
	start();
	int rc;
	json j = sim({"--iommu-policy", "static-pool", "-n", "20000"}, rc);
	EXPECT_EQ(rc, 0);
	expect_lossless(j, 20000);
	stop();
}

/** A fault scenario and what VM2's driver does with it (docs/simulator.md). */
struct fault_case {
	const char *name;
	const char *outcome; // the simulator's verdict
	unsigned queue;	     // where the counter moves
	const char *counter; // nullptr: none
};

std::ostream &operator<<(std::ostream &o, const fault_case &f) { return o << f.name; }

struct HostDpFault : HostDp, ::testing::WithParamInterface<fault_case> {};

TEST_P(HostDpFault, SameReactionAsTheDriver)
{
	const fault_case &f = GetParam();
	start();
	int rc;
	json j = sim({"--fault", f.name, "-n", "600", "--drain-ms", "500"}, rc);
	EXPECT_EQ(rc, 0); // a fault's outcome is an observation; only corruption fails
	ASSERT_FALSE(j.is_null());
	EXPECT_EQ(j["fault"]["outcome"], f.outcome) << j["fault"].dump();
	EXPECT_EQ(j["rx"]["corrupt"], 0);
	EXPECT_EQ(j["rx"]["duplicates"], 0);
	EXPECT_TRUE(j["canaries"]["ok"].get<bool>());
	if (std::string(f.outcome) == "dropped") {
		EXPECT_EQ(j["rx"]["lost"], 1);
	}
	json st = stop();
	ASSERT_FALSE(st.is_null());
	for (unsigned q : {0u, 1u})
		for (const char *k : {"perm", "miss_timeout", "chain", "head", "ring", "desc"}) {
			const bool expected = f.counter && q == f.queue && std::string(k) == f.counter;
			EXPECT_EQ(faults(st, q, k), expected ? 1u : 0u) << "queue " << q << " " << k;
		}
}

// The driver's table (docs/simulator.md, "Against VM2's driver in a guest"):
// VM1's TX ring is queue 1, its RX ring queue 0.  Misses time out after 300 ms.
INSTANTIATE_TEST_SUITE_P(
	All, HostDpFault,
	::testing::Values(fault_case{"unmapped-iova", "recovered", 1, "miss_timeout"},
			  fault_case{"readonly-rx", "dropped", 0, "perm"},
			  fault_case{"straddle", "recovered", 1, "miss_timeout"},
			  fault_case{"wrap", "recovered", 1, "desc"},
			  fault_case{"zero-len", "recovered", 1, "desc"},
			  fault_case{"runt", "recovered", 1, "desc"},
			  fault_case{"past-memory", "recovered", 1, "desc"},
			  fault_case{"chain-loop", "recovered", 1, "chain"},
			  fault_case{"chain-too-long", "recovered", 1, "chain"},
			  fault_case{"avail-jump", "stalled", 1, "ring"},
			  fault_case{"head-out-of-range", "recovered", 1, "head"},
			  fault_case{"unmap-in-flight", "dropped", 0, "miss_timeout"},
			  fault_case{"post-after-unmap", "dropped", 0, "miss_timeout"},
			  fault_case{"ring-unmapped", "stalled", 1, "ring"},
			  fault_case{"double-post", "recovered", 0, nullptr},
			  fault_case{"miss-after-unmap", "recovered", 0, nullptr}),
	[](const ::testing::TestParamInfo<fault_case> &i) {
		std::string n = i.param.name;
		for (char &c : n)
			if (c == '-')
				c = '_';
		return n;
	});

TEST_F(HostDp, LossIsSeenWhenTheBacklogOverflows)
{
	// The control: with no room to hold frames and a sender that ignores
	// VM1's RX ring, frames are dropped, and the run must say so.
	start({"--backlog", "1"});
	int rc;
	json j = sim({"-n", "20000", "--window", "100000", "--drain-ms", "300"}, rc);
	EXPECT_EQ(rc, 1);
	ASSERT_FALSE(j.is_null());
	EXPECT_FALSE(j["ok"].get<bool>());
	EXPECT_GT(j["rx"]["lost"].get<std::uint64_t>(), 0u);
	EXPECT_EQ(j["rx"]["corrupt"], 0);
	json st = stop();
	EXPECT_EQ(st["queues"][1]["dropped"], j["rx"]["lost"]);
}

} // namespace
