// SPDX-License-Identifier: GPL-2.0-only OR MIT
// The C and C++ compilers agree on every size and offset of the uapi header,
// and the layout is the documented one.
#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "abi.hpp"
#include "abi_fields.h"

namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winvalid-offsetof"
const vpci_abi_entry abi_cxx[] = {
	VPCI_ABI_STRUCTS(VPCI_ABI_ENTRY_STRUCT)
	VPCI_ABI_FIELDS(VPCI_ABI_ENTRY_FIELD)
};
#pragma GCC diagnostic pop

TEST(Abi, CAndCxxAgree)
{
	ASSERT_EQ(vpci_abi_c_count, std::size(abi_cxx));
	for (std::size_t i = 0; i < vpci_abi_c_count; i++) {
		ASSERT_STREQ(vpci_abi_c[i].name, abi_cxx[i].name);
		EXPECT_EQ(vpci_abi_c[i].value, abi_cxx[i].value) << abi_cxx[i].name;
	}
}

std::size_t lookup(const std::string &name)
{
	for (const auto &e : abi_cxx)
		if (name == e.name)
			return e.value;
	ADD_FAILURE() << "no ABI entry " << name;
	return 0;
}

TEST(Abi, SectionsAreCacheLines)
{
	for (const char *s : {"vpci_ctrl_hdr", "vpci_backend_state", "vpci_driver_state",
			      "vpci_vq_config", "vpci_vq_state"})
		EXPECT_EQ(lookup(std::string("sizeof(") + s + ")"), 64u) << s;
	EXPECT_EQ(lookup("sizeof(vpci_msg)"), 32u);
	EXPECT_EQ(lookup("sizeof(vpci_msg_ring)"), 128u + 32u * VPCI_MSG_RING_SIZE);
	EXPECT_EQ(lookup("offsetof(vpci_msg_ring, cons)"), 64u);
	EXPECT_EQ(lookup("offsetof(vpci_msg_ring, ent)"), 128u);
}

TEST(Abi, WholeArea)
{
	EXPECT_EQ(sizeof(vpci_ctrl), VPCI_CTRL_SIZE);
	EXPECT_EQ(lookup("sizeof(vpci_ctrl)"), VPCI_CTRL_SIZE);
	EXPECT_EQ(lookup("offsetof(vpci_ctrl, backend)"), 64u);
	EXPECT_EQ(lookup("offsetof(vpci_ctrl, driver)"), 128u);
	EXPECT_EQ(lookup("offsetof(vpci_ctrl, vq_config)"), 256u);
	EXPECT_EQ(lookup("offsetof(vpci_ctrl, vq_state)"), 256u + 64u * VPCI_MAX_QUEUES);
	EXPECT_EQ(lookup("offsetof(vpci_ctrl, b2d)"), 256u + 128u * VPCI_MAX_QUEUES);
	EXPECT_EQ(lookup("offsetof(vpci_ctrl, d2b)"),
		  256u + 128u * VPCI_MAX_QUEUES + sizeof(vpci_msg_ring));
	// Every section starts on a cache line.
	for (const char *f : {"hdr", "backend", "driver", "vq_config", "vq_state", "b2d", "d2b",
			      "reserved"})
		EXPECT_EQ(lookup(std::string("offsetof(vpci_ctrl, ") + f + ")") % 64, 0u) << f;
	EXPECT_EQ(lookup("offsetof(vpci_ctrl, reserved)") + lookup("sizeof(vpci_ctrl.reserved)"),
		  VPCI_CTRL_SIZE);
}

TEST(Abi, LittleEndianHelpers)
{
	std::uint32_t raw = 0;
	vpci::le_store(raw, 0x11223344u);
	unsigned char b[4];
	std::memcpy(b, &raw, 4);
	EXPECT_EQ(b[0], 0x44);
	EXPECT_EQ(b[3], 0x11);
	EXPECT_EQ(vpci::le_load(raw), 0x11223344u);
	EXPECT_EQ(VPCI_NUM_VECTORS(8), 17u);
}

} // namespace
