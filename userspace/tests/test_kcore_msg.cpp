// SPDX-License-Identifier: GPL-2.0
// The driver's message-ring code (kernel/core_msg.c) compiled in userspace,
// with the producer in another process mapping the same memory elsewhere.
#include <gtest/gtest.h>

#include <cerrno>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
#include "vpci_core.h"
}

namespace {

vpci_msg make(u32 seq)
{
	vpci_msg m{};
	m.type = VPCI_MSG_IOTLB_MISS;
	m.perm = VPCI_PERM_RO;
	m.seq = htole32(seq);
	m.iova = htole64(0x1000ULL * seq);
	m.size = htole64(0x1000);
	return m;
}

} // namespace

TEST(KcoreMsg, PushPopInOrderAndFull)
{
	static vpci_msg_ring r;
	r = vpci_msg_ring{};
	u32 prod = 0, cons = 0;
	vpci_msg m;
	EXPECT_EQ(vpci_msg_pop(&r, &cons, &m), 0) << "empty";
	for (u32 i = 0; i < VPCI_MSG_RING_SIZE; i++)
		ASSERT_EQ(vpci_msg_push(&r, &prod, &(m = make(i))), 0);
	EXPECT_EQ(vpci_msg_push(&r, &prod, &(m = make(999))), -ENOSPC);
	for (u32 i = 0; i < VPCI_MSG_RING_SIZE; i++) {
		ASSERT_EQ(vpci_msg_pop(&r, &cons, &m), 1);
		ASSERT_EQ(le32toh(m.seq), i);
	}
	EXPECT_EQ(vpci_msg_pop(&r, &cons, &m), 0);
	EXPECT_EQ(le32toh(r.cons), VPCI_MSG_RING_SIZE) << "consumer count published";
}

// Misses (pushed keeping a reserve) can never take the slots the
// invalidation acks need: with every queue's misses outstanding, acks
// still go out, and the room the config pass checks is exact.
TEST(KcoreMsg, PushKeepLeavesTheReserveToOthers)
{
	static vpci_msg_ring r;
	r = vpci_msg_ring{};
	u32 prod = 0, cons = 0;
	constexpr unsigned keep = 64;
	vpci_msg m;
	unsigned misses = 0;
	while (vpci_msg_push_keep(&r, &prod, &(m = make(misses)), keep) == 0)
		misses++;
	EXPECT_EQ(misses, VPCI_MSG_RING_SIZE - keep);
	EXPECT_EQ(vpci_msg_room(&r, prod), static_cast<int>(keep));
	for (unsigned i = 0; i < keep; i++) {
		m = make(1000 + i);
		m.type = VPCI_MSG_IOTLB_INV_ACK;
		ASSERT_EQ(vpci_msg_push_keep(&r, &prod, &m, 0), 0) << i;
	}
	EXPECT_EQ(vpci_msg_room(&r, prod), 0);
	EXPECT_EQ(vpci_msg_pending(&r, cons), static_cast<int>(VPCI_MSG_RING_SIZE));
	EXPECT_EQ(vpci_msg_push_keep(&r, &prod, &m, 0), -ENOSPC);
	ASSERT_EQ(vpci_msg_pop(&r, &cons, &m), 1);
	EXPECT_EQ(vpci_msg_room(&r, prod), 1) << "the consumer freed one";
	EXPECT_EQ(vpci_msg_push_keep(&r, &prod, &(m = make(7)), keep), -ENOSPC)
		<< "a miss may not take an ack's slot";
	EXPECT_EQ(vpci_msg_pending(&r, cons), static_cast<int>(VPCI_MSG_RING_SIZE) - 1);
	r.cons = htole32(prod + 1);
	EXPECT_EQ(vpci_msg_room(&r, prod), -EPROTO);
	EXPECT_EQ(vpci_msg_pending(&r, prod + 1), -EPROTO) << "producer behind the consumer";
}

TEST(KcoreMsg, CorruptCountsAreRejected)
{
	static vpci_msg_ring r;
	r = vpci_msg_ring{};
	u32 cons = 0, prod = 0;
	vpci_msg m;
	r.prod = htole32(VPCI_MSG_RING_SIZE + 1);
	EXPECT_EQ(vpci_msg_pop(&r, &cons, &m), -EPROTO);
	EXPECT_EQ(cons, 0u);
	r.prod = 0;
	r.cons = htole32(5); // consumer claims to be ahead of the producer
	EXPECT_EQ(vpci_msg_push(&r, &prod, &(m = make(1))), -EPROTO);
	EXPECT_EQ(prod, 0u);
}

TEST(KcoreMsg, TwoProcessesDifferentMappings)
{
	constexpr u32 kCount = 200000;
	int fd = memfd_create("vpci-ring", 0);
	ASSERT_GE(fd, 0);
	ASSERT_EQ(ftruncate(fd, sizeof(vpci_msg_ring)), 0);
	auto *cons_map = static_cast<vpci_msg_ring *>(
		mmap(nullptr, sizeof(vpci_msg_ring), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
	ASSERT_NE(cons_map, MAP_FAILED);

	pid_t pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		// Producer: its own mapping at another address.
		auto *p = static_cast<vpci_msg_ring *>(
			mmap(nullptr, sizeof(vpci_msg_ring), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
		if (p == MAP_FAILED || p == cons_map)
			_exit(2);
		u32 prod = 0;
		for (u32 i = 0; i < kCount;) {
			vpci_msg m = make(i);
			int rc = vpci_msg_push(p, &prod, &m);
			if (rc == 0)
				i++;
			else if (rc != -ENOSPC)
				_exit(3);
		}
		_exit(0);
	}
	u32 cons = 0;
	u32 next = 0;
	bool ok = true;
	while (next < kCount && ok) {
		vpci_msg m;
		int rc = vpci_msg_pop(cons_map, &cons, &m);
		if (rc < 0)
			ok = false;
		else if (rc == 1) {
			ok = le32toh(m.seq) == next && le64toh(m.iova) == 0x1000ULL * next &&
			     le64toh(m.size) == 0x1000;
			next++;
		}
	}
	int status = 0;
	if (!ok)
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	EXPECT_TRUE(ok) << "message " << next << " out of order or torn";
	EXPECT_EQ(next, kCount);
	EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
	munmap(cons_map, sizeof(vpci_msg_ring));
	close(fd);
}
