// SPDX-License-Identifier: GPL-2.0
// The driver's control-area header check (kernel/core_ctrl.c), compiled in
// userspace: every rule it enforces, one field at a time.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <endian.h>
#include <functional>
#include <string>

extern "C" {
#include <linux/vhost_pci_net.h>
int vpci_ctrl_check_hdr(const struct vpci_ctrl_hdr *hdr, __u64 bar_len, const char **why);
int vpci_ctrl_check_features(__u64 features, const char **why);
}

namespace {

constexpr __u64 kBar = 256ULL << 20;
constexpr __u64 kRam = 128ULL << 20;

vpci_ctrl_hdr good_hdr()
{
	vpci_ctrl_hdr h{};
	h.magic = htole32(VPCI_CTRL_MAGIC);
	h.abi_version = htole32(VPCI_ABI_VERSION);
	h.total_size = htole64(VPCI_CTRL_SIZE);
	h.peer_mem_size = htole64(kRam);
	h.ctrl_offset = htole64(kBar - VPCI_CTRL_SIZE);
	h.max_queue_pairs = htole16(1);
	h.msg_ring_size = htole16(VPCI_MSG_RING_SIZE);
	h.backend_peer_id = 0;
	h.num_vectors = htole16(VPCI_NUM_VECTORS(1));
	return h;
}

int check(const vpci_ctrl_hdr &h, __u64 bar, std::string *why_out = nullptr)
{
	const char *why = nullptr;
	int rc = vpci_ctrl_check_hdr(&h, bar, &why);
	if (why_out)
		*why_out = why ? why : "";
	return rc;
}

} // namespace

TEST(KcoreCtrl, AcceptsValidHeader)
{
	EXPECT_EQ(check(good_hdr(), kBar), 0);
}

TEST(KcoreCtrl, AcceptsPeerMemoryUpToTheControlArea)
{
	auto h = good_hdr();
	h.peer_mem_size = htole64(kBar - VPCI_CTRL_SIZE);
	EXPECT_EQ(check(h, kBar), 0);
}

TEST(KcoreCtrl, AcceptsMaxQueuePairs)
{
	auto h = good_hdr();
	h.max_queue_pairs = htole16(VPCI_MAX_QUEUE_PAIRS);
	h.num_vectors = htole16(VPCI_NUM_VECTORS(VPCI_MAX_QUEUE_PAIRS));
	EXPECT_EQ(check(h, kBar), 0);
}

struct Corruption {
	const char *name;
	std::function<void(vpci_ctrl_hdr &)> apply;
	__u64 bar;
	const char *reason;
};

class KcoreCtrlReject : public ::testing::TestWithParam<Corruption> {};

TEST_P(KcoreCtrlReject, RejectsWithReason)
{
	auto h = good_hdr();
	GetParam().apply(h);
	std::string why;
	EXPECT_EQ(check(h, GetParam().bar, &why), -ENODEV);
	EXPECT_NE(why.find(GetParam().reason), std::string::npos) << why;
}

INSTANTIATE_TEST_SUITE_P(
	Fields, KcoreCtrlReject,
	::testing::Values(
		Corruption{"magic", [](auto &h) { h.magic = htole32(0x12345678); }, kBar, "magic"},
		Corruption{"zero", [](auto &h) { h = vpci_ctrl_hdr{}; }, kBar, "magic"},
		Corruption{"version", [](auto &h) { h.abi_version = htole32(2); }, kBar, "version"},
		Corruption{"total_small", [](auto &h) { h.total_size = htole64(0x8000); }, kBar, "size"},
		Corruption{"total_huge", [](auto &h) { h.total_size = htole64(~0ULL); }, kBar, "size"},
		Corruption{"offset", [](auto &h) { h.ctrl_offset = htole64(0x1000); }, kBar, "offset"},
		Corruption{"bar_smaller_than_ctrl", [](auto &) {}, VPCI_CTRL_SIZE / 2, "size"},
		Corruption{"bar_mismatch", [](auto &) {}, kBar * 2, "offset"},
		Corruption{"peer_zero", [](auto &h) { h.peer_mem_size = 0; }, kBar, "peer"},
		Corruption{"peer_unaligned", [](auto &h) { h.peer_mem_size = htole64(kRam + 1); }, kBar, "peer"},
		Corruption{"peer_into_ctrl",
			   [](auto &h) { h.peer_mem_size = htole64(kBar - VPCI_CTRL_SIZE + 4096); }, kBar, "peer"},
		Corruption{"peer_huge", [](auto &h) { h.peer_mem_size = htole64(~0xfffULL); }, kBar, "peer"},
		Corruption{"qp_zero", [](auto &h) { h.max_queue_pairs = 0; }, kBar, "queue"},
		Corruption{"qp_too_many",
			   [](auto &h) {
				   h.max_queue_pairs = htole16(VPCI_MAX_QUEUE_PAIRS + 1);
				   h.num_vectors = htole16(VPCI_NUM_VECTORS(VPCI_MAX_QUEUE_PAIRS + 1));
			   },
			   kBar, "queue"},
		Corruption{"vectors", [](auto &h) { h.num_vectors = htole16(7); }, kBar, "vector"},
		Corruption{"ring_size", [](auto &h) { h.msg_ring_size = htole16(256); }, kBar, "ring"}),
	[](const auto &tpi) { return std::string(tpi.param.name); });

TEST(KcoreCtrlFeatures, Version1RequiredWhateverElseIsSet)
{
	const char *why = nullptr;
	constexpr __u64 v1 = 1ULL << 32, platform = 1ULL << 33, mrg = 1ULL << 15;

	EXPECT_EQ(vpci_ctrl_check_features(v1, &why), 0);
	EXPECT_EQ(vpci_ctrl_check_features(v1 | platform | mrg | (1ULL << 16), &why), 0);
	for (__u64 f : {0ULL, platform | mrg, ~v1}) {
		why = nullptr;
		EXPECT_EQ(vpci_ctrl_check_features(f, &why), -EPROTO) << std::hex << f;
		ASSERT_NE(why, nullptr);
		EXPECT_NE(std::string(why).find("VERSION_1"), std::string::npos);
	}
}
