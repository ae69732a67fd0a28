// SPDX-License-Identifier: GPL-2.0
/*
 * genl_test - the vhost_pci generic netlink family, seen from a raw netlink
 * socket (kselftest_harness.h; run by genl.sh inside the VM2 guest).
 *
 * What the family promises (uapi/linux/vhost_pci_netlink.h,
 * docs/control-plane.md): the commands and their flags as the controller
 * lists them, DEV_GET doit and dump agreeing byte for byte, an empty IOTLB
 * dump without VM1, MODE_SET round trips, strict policies (one variant per
 * rejected request, with its errno, its extended-ack message and the offset
 * of the attribute it blames, and nothing changed after it), the namespace a
 * device lives in, CAP_NET_ADMIN for MODE_SET, IOTLB_DUMP and the events
 * group, and a fault event with its attributes.
 *
 * Environment (set by genl.sh): VPCI_IFNAME, the vhost-pci interface;
 * VPCI_DEBUGFS, its debugfs directory (inject_fault).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/vhost_pci_netlink.h>

#include "kselftest_harness.h"

#define NL_BUF		(64 * 1024)
#define MAX_MSGS	64

/* One request: headers and up to a few attributes. */
struct nl_req {
	struct nlmsghdr nh;
	struct genlmsghdr gh;
	char attrs[256];
};

/* What the kernel answered one request with. */
struct nl_reply {
	int err;			/* 0 or -errno (ack, or DONE's status) */
	char extack[128];		/* NLMSGERR_ATTR_MSG, if any */
	int bad_off;			/* NLMSGERR_ATTR_OFFS, -1 if none */
	unsigned int nmsgs;		/* family messages (a dump's entries) */
	struct nlmsghdr *msgs[MAX_MSGS];
};

static void reply_free(struct nl_reply *r)
{
	unsigned int i;

	for (i = 0; i < r->nmsgs; i++)
		free(r->msgs[i]);
	r->nmsgs = 0;
}

static void req_init(struct nl_req *q, uint16_t family, uint8_t cmd,
		     uint16_t flags)
{
	memset(q, 0, sizeof(*q));
	q->nh.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
	q->nh.nlmsg_type = family;
	q->nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags;
	q->gh.cmd = cmd;
	q->gh.version = VPCI_GENL_VERSION;
}

/* Append an attribute; returns its offset in the request (for extack). */
static int req_put(struct nl_req *q, uint16_t type, const void *data,
		   uint16_t len)
{
	int off = NLMSG_ALIGN(q->nh.nlmsg_len);
	struct nlattr *a = (struct nlattr *)((char *)q + off);

	if (off + NLA_ALIGN(NLA_HDRLEN + len) > (int)sizeof(*q))
		abort();	/* a test's own mistake */
	a->nla_type = type;
	a->nla_len = NLA_HDRLEN + len;
	memcpy((char *)a + NLA_HDRLEN, data, len);
	q->nh.nlmsg_len = off + NLA_ALIGN(a->nla_len);
	return off;
}

static int req_put_u32(struct nl_req *q, uint16_t type, uint32_t v)
{
	return req_put(q, type, &v, sizeof(v));
}

static int req_put_u64(struct nl_req *q, uint16_t type, uint64_t v)
{
	return req_put(q, type, &v, sizeof(v));
}

static int req_put_str(struct nl_req *q, uint16_t type, const char *s)
{
	return req_put(q, type, s, strlen(s) + 1);
}

/*
 * A generic netlink socket with extended acks, bound: an unbound socket has
 * port id 0, the kernel's own, and multicast skips the sender's port.
 */
static int nl_open(void)
{
	struct sockaddr_nl sa = { .nl_family = AF_NETLINK };
	int one = 1;
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);

	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one)) ||
	    setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof(one))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The extended ack of an NLMSG_ERROR (message and blamed offset). */
static void parse_extack(const struct nlmsghdr *nh, struct nl_reply *r)
{
	const struct nlmsgerr *e = NLMSG_DATA(nh);
	int off = NLMSG_HDRLEN + sizeof(*e);
	const struct nlattr *a;

	if (!(nh->nlmsg_flags & NLM_F_ACK_TLVS))
		return;
	/* NETLINK_CAP_ACK: the request is not echoed, only its header. */
	for (a = (const void *)((const char *)nh + off);
	     off + NLA_HDRLEN <= (int)nh->nlmsg_len && a->nla_len >= NLA_HDRLEN &&
	     off + a->nla_len <= (int)nh->nlmsg_len;
	     off += NLA_ALIGN(a->nla_len),
	     a = (const void *)((const char *)nh + off)) {
		const char *p = (const char *)a + NLA_HDRLEN;

		if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG)
			snprintf(r->extack, sizeof(r->extack), "%.*s",
				 (int)(a->nla_len - NLA_HDRLEN), p);
		else if ((a->nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_OFFS &&
			 a->nla_len == NLA_HDRLEN + sizeof(uint32_t))
			memcpy(&r->bad_off, p, sizeof(uint32_t));
	}
}

/*
 * Send @q and collect the answer: family messages into @r->msgs, the ack's
 * or DONE's status into @r->err.  Returns @r->err, or -EIO if the socket
 * failed or nothing complete came back within 10 s.
 */
static int nl_call(int fd, struct nl_req *q, struct nl_reply *r)
{
	static char buf[NL_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
	static uint32_t seq;

	memset(r, 0, sizeof(*r));
	r->bad_off = -1;
	q->nh.nlmsg_seq = ++seq;
	if (send(fd, q, q->nh.nlmsg_len, 0) != (ssize_t)q->nh.nlmsg_len)
		return r->err = -EIO;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		struct nlmsghdr *nh;
		ssize_t n;

		if (poll(&pfd, 1, 10000) != 1)
			return r->err = -EIO;
		n = recv(fd, buf, sizeof(buf), 0);
		if (n < 0)
			return r->err = -EIO;
		for (nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, n);
		     nh = NLMSG_NEXT(nh, n)) {
			if (nh->nlmsg_seq != q->nh.nlmsg_seq)
				continue;	/* not ours (an earlier call's) */
			if (nh->nlmsg_type == NLMSG_ERROR) {
				r->err = ((struct nlmsgerr *)NLMSG_DATA(nh))->error;
				parse_extack(nh, r);
				return r->err;
			}
			if (nh->nlmsg_type == NLMSG_DONE) {
				/* a dump's end: its status, then no ack */
				r->err = *(int *)NLMSG_DATA(nh);
				return r->err;
			}
			if (r->nmsgs == MAX_MSGS)
				return r->err = -E2BIG;
			r->msgs[r->nmsgs] = malloc(nh->nlmsg_len);
			if (!r->msgs[r->nmsgs])
				return r->err = -ENOMEM;
			memcpy(r->msgs[r->nmsgs++], nh, nh->nlmsg_len);
		}
	}
}

/* tb[type] = attribute, for the attributes in [start, start + len). */
static void parse_attrs(const void *start, int len, const struct nlattr **tb,
			int max)
{
	const struct nlattr *a = start;

	memset(tb, 0, (max + 1) * sizeof(*tb));
	while (len >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= len) {
		int type = a->nla_type & NLA_TYPE_MASK;

		if (type <= max)
			tb[type] = a;
		len -= NLA_ALIGN(a->nla_len);
		a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len));
	}
}

static void parse_msg(const struct nlmsghdr *nh, const struct nlattr **tb, int max)
{
	parse_attrs((const char *)NLMSG_DATA(nh) + GENL_HDRLEN,
		    nh->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN), tb, max);
}

#define NLA_PAYLOAD(a)	((const void *)((const char *)(a) + NLA_HDRLEN))
#define NLA_LEN(a)	((int)(a)->nla_len - NLA_HDRLEN)

/* An attribute of the wrong size reads as all-ones: no check can pass on it. */
static uint32_t nla_u32(const struct nlattr *a)
{
	uint32_t v = UINT32_MAX;

	if (NLA_LEN(a) == sizeof(v))
		memcpy(&v, NLA_PAYLOAD(a), sizeof(v));
	return v;
}

static uint64_t nla_u64(const struct nlattr *a)
{
	uint64_t v = UINT64_MAX;

	if (NLA_LEN(a) == sizeof(v))
		memcpy(&v, NLA_PAYLOAD(a), sizeof(v));
	return v;
}

/* The family as the generic netlink controller lists it. */
struct family {
	uint16_t id;
	uint32_t version;
	uint32_t op_flags[VPCI_CMD_MAX + 1];	/* 0: not listed */
	uint32_t events_grp;			/* 0: no "events" group */
};

static int family_get(int fd, struct family *f)
{
	const struct nlattr *tb[CTRL_ATTR_MAX + 1], *a;
	struct nl_reply r;
	struct nl_req q;
	int rem;

	memset(f, 0, sizeof(*f));
	req_init(&q, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 0);
	q.gh.version = 1;
	req_put_str(&q, CTRL_ATTR_FAMILY_NAME, VPCI_GENL_NAME);
	if (nl_call(fd, &q, &r) || r.nmsgs != 1) {
		reply_free(&r);
		return -1;
	}
	parse_msg(r.msgs[0], tb, CTRL_ATTR_MAX);
	if (tb[CTRL_ATTR_FAMILY_ID])
		f->id = *(const uint16_t *)NLA_PAYLOAD(tb[CTRL_ATTR_FAMILY_ID]);
	if (tb[CTRL_ATTR_VERSION])
		f->version = nla_u32(tb[CTRL_ATTR_VERSION]);
	if (tb[CTRL_ATTR_OPS]) {
		a = NLA_PAYLOAD(tb[CTRL_ATTR_OPS]);
		for (rem = NLA_LEN(tb[CTRL_ATTR_OPS]);
		     rem >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= rem;
		     rem -= NLA_ALIGN(a->nla_len),
		     a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len))) {
			const struct nlattr *op[CTRL_ATTR_OP_MAX + 1];

			parse_attrs(NLA_PAYLOAD(a), NLA_LEN(a), op, CTRL_ATTR_OP_MAX);
			if (op[CTRL_ATTR_OP_ID] && op[CTRL_ATTR_OP_FLAGS] &&
			    nla_u32(op[CTRL_ATTR_OP_ID]) <= VPCI_CMD_MAX)
				f->op_flags[nla_u32(op[CTRL_ATTR_OP_ID])] =
					nla_u32(op[CTRL_ATTR_OP_FLAGS]) | 0x80000000u;
		}
	}
	if (tb[CTRL_ATTR_MCAST_GROUPS]) {
		a = NLA_PAYLOAD(tb[CTRL_ATTR_MCAST_GROUPS]);
		for (rem = NLA_LEN(tb[CTRL_ATTR_MCAST_GROUPS]);
		     rem >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= rem;
		     rem -= NLA_ALIGN(a->nla_len),
		     a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len))) {
			const struct nlattr *g[CTRL_ATTR_MCAST_GRP_MAX + 1];

			parse_attrs(NLA_PAYLOAD(a), NLA_LEN(a), g, CTRL_ATTR_MCAST_GRP_MAX);
			if (g[CTRL_ATTR_MCAST_GRP_NAME] && g[CTRL_ATTR_MCAST_GRP_ID] &&
			    !strcmp(NLA_PAYLOAD(g[CTRL_ATTR_MCAST_GRP_NAME]),
				    VPCI_GENL_MCGRP_EVENTS))
				f->events_grp = nla_u32(g[CTRL_ATTR_MCAST_GRP_ID]);
		}
	}
	reply_free(&r);
	return f->id ? 0 : -1;
}

/* DEV_GET doit for @ifindex: 0 and the reply in @r, or -errno. */
static int dev_get(int fd, const struct family *f, uint32_t ifindex,
		   struct nl_reply *r)
{
	struct nl_req q;

	req_init(&q, f->id, VPCI_CMD_DEV_GET, 0);
	req_put_u32(&q, VPCI_A_IFINDEX, ifindex);
	if (nl_call(fd, &q, r))
		return r->err;
	return r->nmsgs == 1 ? 0 : -EPROTO;
}

/* The device's mode and hybrid usecs, as "mode/usecs/events", or "?". */
static void dev_mode(int fd, const struct family *f, uint32_t ifindex,
		     char *out, size_t len)
{
	const struct nlattr *tb[VPCI_A_MAX + 1];
	struct nl_reply r;

	snprintf(out, len, "?");
	if (!dev_get(fd, f, ifindex, &r)) {
		parse_msg(r.msgs[0], tb, VPCI_A_MAX);
		if (tb[VPCI_A_MODE] && tb[VPCI_A_HYBRID_USECS] && tb[VPCI_A_EVENTS])
			snprintf(out, len, "%u/%u/%u", nla_u32(tb[VPCI_A_MODE]),
				 nla_u32(tb[VPCI_A_HYBRID_USECS]),
				 nla_u32(tb[VPCI_A_EVENTS]));
	}
	reply_free(&r);
}

/* What every test starts from: a socket, the family, the device. */
struct ctx {
	int fd;
	struct family fam;
	uint32_t ifindex;
	const char *ifname;
};

static void ctx_setup(struct __test_metadata *_metadata, struct ctx *c)
{
	c->fd = -1;
	c->ifname = getenv("VPCI_IFNAME");
	ASSERT_NE(NULL, c->ifname) TH_LOG("VPCI_IFNAME is not set (run through genl.sh)");
	c->ifindex = if_nametoindex(c->ifname);
	ASSERT_NE(0, c->ifindex) TH_LOG("no interface %s", c->ifname);
	c->fd = nl_open();
	ASSERT_LE(0, c->fd) TH_LOG("netlink socket: %s", strerror(errno));
	ASSERT_EQ(0, family_get(c->fd, &c->fam))
		TH_LOG("family %s is not registered", VPCI_GENL_NAME);
}

static void ctx_teardown(struct ctx *c)
{
	if (c->fd >= 0)
		close(c->fd);
}

FIXTURE(genl) {
	struct ctx c;
};

FIXTURE_SETUP(genl)
{
	ctx_setup(_metadata, &self->c);
}

FIXTURE_TEARDOWN(genl)
{
	ctx_teardown(&self->c);
}

/* The controller lists exactly our three commands with their flags. */
TEST_F(genl, family_ops_and_group)
{
	const uint32_t listed = 0x80000000u;
	int cmd;

	EXPECT_EQ(VPCI_GENL_VERSION, self->c.fam.version);
	EXPECT_EQ(listed | GENL_CMD_CAP_DO | GENL_CMD_CAP_DUMP | GENL_CMD_CAP_HASPOL,
		  self->c.fam.op_flags[VPCI_CMD_DEV_GET]);
	EXPECT_EQ(listed | GENL_ADMIN_PERM | GENL_CMD_CAP_DUMP | GENL_CMD_CAP_HASPOL,
		  self->c.fam.op_flags[VPCI_CMD_IOTLB_DUMP]);
	EXPECT_EQ(listed | GENL_ADMIN_PERM | GENL_CMD_CAP_DO | GENL_CMD_CAP_HASPOL,
		  self->c.fam.op_flags[VPCI_CMD_MODE_SET]);
	/* Notifications are events, never requests. */
	for (cmd = VPCI_CMD_FAULT_NTF; cmd <= VPCI_CMD_MAX; cmd++)
		EXPECT_EQ(0, self->c.fam.op_flags[cmd]) TH_LOG("command %d listed", cmd);
	EXPECT_NE(0, self->c.fam.events_grp);
}

/* DEV_GET doit: this device, its features and one nest per queue. */
TEST_F(genl, dev_get_doit)
{
	const struct nlattr *tb[VPCI_A_MAX + 1], *a;
	unsigned int nqueues = 0;
	struct nl_reply r;
	int rem;

	ASSERT_EQ(0, dev_get(self->c.fd, &self->c.fam, self->c.ifindex, &r));
	EXPECT_EQ(VPCI_CMD_DEV_GET, ((struct genlmsghdr *)NLMSG_DATA(r.msgs[0]))->cmd);
	parse_msg(r.msgs[0], tb, VPCI_A_MAX);
	ASSERT_NE(NULL, tb[VPCI_A_IFINDEX]);
	EXPECT_EQ(self->c.ifindex, nla_u32(tb[VPCI_A_IFINDEX]));
	ASSERT_NE(NULL, tb[VPCI_A_IFNAME]);
	EXPECT_STREQ(self->c.ifname, NLA_PAYLOAD(tb[VPCI_A_IFNAME]));
	ASSERT_NE(NULL, tb[VPCI_A_DEVICE_FEATURES]);
	/* VIRTIO_F_VERSION_1 (bit 32) is required of every VM1 */
	EXPECT_NE(0, nla_u64(tb[VPCI_A_DEVICE_FEATURES]) & (1ULL << 32));
	ASSERT_NE(NULL, tb[VPCI_A_MAX_QUEUE_PAIRS]);
	EXPECT_LE(1, nla_u32(tb[VPCI_A_MAX_QUEUE_PAIRS]));
	ASSERT_NE(NULL, tb[VPCI_A_IOTLB_CAPACITY]);
	EXPECT_LT(0, nla_u32(tb[VPCI_A_IOTLB_CAPACITY]));
	ASSERT_NE(NULL, tb[VPCI_A_IOTLB_ENTRIES]);
	EXPECT_EQ(0, nla_u32(tb[VPCI_A_IOTLB_ENTRIES]));	/* no VM1 */

	a = (const void *)((const char *)NLMSG_DATA(r.msgs[0]) + GENL_HDRLEN);
	for (rem = r.msgs[0]->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
	     rem >= NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= rem;
	     rem -= NLA_ALIGN(a->nla_len),
	     a = (const void *)((const char *)a + NLA_ALIGN(a->nla_len))) {
		const struct nlattr *qa[VPCI_QUEUE_A_MAX + 1];

		if ((a->nla_type & NLA_TYPE_MASK) != VPCI_A_QUEUE)
			continue;
		parse_attrs(NLA_PAYLOAD(a), NLA_LEN(a), qa, VPCI_QUEUE_A_MAX);
		ASSERT_NE(NULL, qa[VPCI_QUEUE_A_INDEX]);
		EXPECT_EQ(nqueues, nla_u32(qa[VPCI_QUEUE_A_INDEX]));
		ASSERT_NE(NULL, qa[VPCI_QUEUE_A_STATE]);
		EXPECT_EQ(VPCI_QUEUE_STOPPED, nla_u32(qa[VPCI_QUEUE_A_STATE]));
		nqueues++;
	}
	EXPECT_EQ(2 * nla_u32(tb[VPCI_A_MAX_QUEUE_PAIRS]), nqueues);
	reply_free(&r);
}

/* The dump holds this device once, with the bytes doit gave. */
TEST_F(genl, dev_get_dump_matches_doit)
{
	struct nl_reply one, all;
	unsigned int i, found = 0;
	struct nl_req q;

	ASSERT_EQ(0, dev_get(self->c.fd, &self->c.fam, self->c.ifindex, &one));
	req_init(&q, self->c.fam.id, VPCI_CMD_DEV_GET, NLM_F_DUMP);
	ASSERT_EQ(0, nl_call(self->c.fd, &q, &all));
	ASSERT_LE(1, all.nmsgs);
	for (i = 0; i < all.nmsgs; i++) {
		const struct nlattr *tb[VPCI_A_MAX + 1];

		parse_msg(all.msgs[i], tb, VPCI_A_MAX);
		ASSERT_NE(NULL, tb[VPCI_A_IFINDEX]);
		if (nla_u32(tb[VPCI_A_IFINDEX]) != self->c.ifindex)
			continue;
		found++;
		ASSERT_EQ(one.msgs[0]->nlmsg_len, all.msgs[i]->nlmsg_len);
		EXPECT_EQ(0, memcmp(NLMSG_DATA(one.msgs[0]), NLMSG_DATA(all.msgs[i]),
				    one.msgs[0]->nlmsg_len - NLMSG_HDRLEN));
		EXPECT_TRUE(all.msgs[i]->nlmsg_flags & NLM_F_MULTI);
	}
	EXPECT_EQ(1, found);

	/* A dump filtered by ifindex: this device only. */
	reply_free(&all);
	req_init(&q, self->c.fam.id, VPCI_CMD_DEV_GET, NLM_F_DUMP);
	req_put_u32(&q, VPCI_A_IFINDEX, self->c.ifindex);
	ASSERT_EQ(0, nl_call(self->c.fd, &q, &all));
	EXPECT_EQ(1, all.nmsgs);
	reply_free(&all);
	reply_free(&one);
}

/* Without VM1 the IOTLB is empty: a dump with no entry, status 0. */
TEST_F(genl, iotlb_dump_empty)
{
	struct nl_reply r;
	struct nl_req q;

	req_init(&q, self->c.fam.id, VPCI_CMD_IOTLB_DUMP, NLM_F_DUMP);
	req_put_u32(&q, VPCI_A_IFINDEX, self->c.ifindex);
	ASSERT_EQ(0, nl_call(self->c.fd, &q, &r));
	EXPECT_EQ(0, r.nmsgs);
	reply_free(&r);
}

/* MODE_SET: poll, hybrid 50 us, events, back to interrupt; DEV_GET follows. */
TEST_F(genl, mode_set_round_trip)
{
	static const struct { uint32_t mode, usecs, events; const char *want; } step[] = {
		{ VPCI_MODE_POLL, UINT32_MAX, UINT32_MAX, "1/0/0" },
		{ VPCI_MODE_HYBRID, 50, UINT32_MAX, "2/50/0" },
		{ UINT32_MAX, UINT32_MAX, VPCI_EVENTS_IOTLB, "2/50/1" },
		{ VPCI_MODE_INTERRUPT, UINT32_MAX, 0, "0/0/0" },
	};
	struct nl_reply r;
	struct nl_req q;
	unsigned int i;
	char got[32];

	for (i = 0; i < ARRAY_SIZE(step); i++) {
		req_init(&q, self->c.fam.id, VPCI_CMD_MODE_SET, 0);
		req_put_u32(&q, VPCI_A_IFINDEX, self->c.ifindex);
		if (step[i].mode != UINT32_MAX)
			req_put_u32(&q, VPCI_A_MODE, step[i].mode);
		if (step[i].usecs != UINT32_MAX)
			req_put_u32(&q, VPCI_A_HYBRID_USECS, step[i].usecs);
		if (step[i].events != UINT32_MAX)
			req_put_u32(&q, VPCI_A_EVENTS, step[i].events);
		EXPECT_EQ(0, nl_call(self->c.fd, &q, &r)) TH_LOG("step %u: %s", i, r.extack);
		EXPECT_EQ(0, r.nmsgs);	/* an ack, no reply */
		reply_free(&r);
		dev_mode(self->c.fd, &self->c.fam, self->c.ifindex, got, sizeof(got));
		EXPECT_STREQ(step[i].want, got) TH_LOG("step %u", i);
	}
}

/* One attribute of a rejected request; IFX stands for the device's ifindex. */
#define IFX	UINT64_MAX
enum { U32 = 1, U64, STR };
struct attr_spec {
	uint16_t type;
	uint8_t kind;
	uint64_t val;
	const char *str;
};

FIXTURE_VARIANT(rejected) {
	uint8_t cmd;
	uint16_t flags;		/* NLM_F_DUMP or 0 */
	uint8_t reserved;	/* genlmsghdr.reserved */
	int err;		/* the errno expected, negated */
	const char *extack;	/* a substring of the message, or NULL */
	int blamed;		/* index in attrs[] extack must point at, or -1 */
	struct attr_spec attrs[3];
};

FIXTURE(rejected) {
	struct ctx c;
};

FIXTURE_SETUP(rejected)
{
	ctx_setup(_metadata, &self->c);
}

FIXTURE_TEARDOWN(rejected)
{
	ctx_teardown(&self->c);
}

/* Requests the family must refuse, one variant each. */
FIXTURE_VARIANT_ADD(rejected, ifindex_u64) {
	.cmd = VPCI_CMD_DEV_GET, .err = -EINVAL, .blamed = 0,
	.attrs = { { VPCI_A_IFINDEX, U64, IFX } },
};
FIXTURE_VARIANT_ADD(rejected, ifindex_string) {
	.cmd = VPCI_CMD_DEV_GET, .err = -EINVAL, .blamed = 0,
	.attrs = { { VPCI_A_IFINDEX, STR, 0, "eth0" } },
};
FIXTURE_VARIANT_ADD(rejected, ifindex_zero) {
	.cmd = VPCI_CMD_DEV_GET, .err = -ERANGE, .blamed = 0,
	.attrs = { { VPCI_A_IFINDEX, U32, 0 } },
};
FIXTURE_VARIANT_ADD(rejected, unknown_ifindex) {
	.cmd = VPCI_CMD_DEV_GET, .err = -ENODEV, .extack = "no such device", .blamed = 0,
	.attrs = { { VPCI_A_IFINDEX, U32, 99999 } },
};
FIXTURE_VARIANT_ADD(rejected, not_ours) {
	.cmd = VPCI_CMD_MODE_SET, .err = -EOPNOTSUPP, .extack = "not a vhost-pci device",
	.blamed = 0,
	.attrs = { { VPCI_A_IFINDEX, U32, 1 /* lo */ }, { VPCI_A_MODE, U32, VPCI_MODE_POLL } },
};
FIXTURE_VARIANT_ADD(rejected, attr_not_taken) {
	.cmd = VPCI_CMD_DEV_GET, .err = -EINVAL, .blamed = 1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX }, { VPCI_A_MODE, U32, VPCI_MODE_POLL } },
};
FIXTURE_VARIANT_ADD(rejected, attr_type_200) {
	.cmd = VPCI_CMD_DEV_GET, .err = -EINVAL, .blamed = 1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX }, { 200, U32, 1 } },
};
FIXTURE_VARIANT_ADD(rejected, mode_out_of_range) {
	.cmd = VPCI_CMD_MODE_SET, .err = -ERANGE, .blamed = 1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX }, { VPCI_A_MODE, U32, VPCI_MODE_MAX + 1 } },
};
FIXTURE_VARIANT_ADD(rejected, usecs_out_of_range) {
	.cmd = VPCI_CMD_MODE_SET, .err = -ERANGE, .blamed = 1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX },
		   { VPCI_A_HYBRID_USECS, U32, VPCI_HYBRID_USECS_MAX + 1 } },
};
FIXTURE_VARIANT_ADD(rejected, unknown_event_bit) {
	.cmd = VPCI_CMD_MODE_SET, .err = -EINVAL, .blamed = 1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX }, { VPCI_A_EVENTS, U32, VPCI_EVENTS_ALL + 1 } },
};
FIXTURE_VARIANT_ADD(rejected, hybrid_without_usecs) {
	.cmd = VPCI_CMD_MODE_SET, .err = -EINVAL,
	.extack = "hybrid mode needs hybrid usecs > 0", .blamed = 1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX }, { VPCI_A_MODE, U32, VPCI_MODE_HYBRID } },
};
FIXTURE_VARIANT_ADD(rejected, nothing_to_set) {
	.cmd = VPCI_CMD_MODE_SET, .err = -EINVAL, .extack = "nothing to set", .blamed = -1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX } },
};
FIXTURE_VARIANT_ADD(rejected, mode_set_without_ifindex) {
	.cmd = VPCI_CMD_MODE_SET, .err = -EINVAL, .extack = "ifindex is required",
	.blamed = -1,
	.attrs = { { VPCI_A_MODE, U32, VPCI_MODE_POLL } },
};
FIXTURE_VARIANT_ADD(rejected, iotlb_dump_without_ifindex) {
	.cmd = VPCI_CMD_IOTLB_DUMP, .flags = NLM_F_DUMP, .err = -EINVAL, .blamed = -1,
};
FIXTURE_VARIANT_ADD(rejected, iotlb_dump_as_doit) {
	.cmd = VPCI_CMD_IOTLB_DUMP, .err = -EOPNOTSUPP, .blamed = -1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX } },
};
FIXTURE_VARIANT_ADD(rejected, mode_set_as_dump) {
	.cmd = VPCI_CMD_MODE_SET, .flags = NLM_F_DUMP, .err = -EOPNOTSUPP, .blamed = -1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX }, { VPCI_A_MODE, U32, VPCI_MODE_POLL } },
};
FIXTURE_VARIANT_ADD(rejected, notification_as_request) {
	.cmd = VPCI_CMD_FAULT_NTF, .err = -EOPNOTSUPP, .blamed = -1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX } },
};
FIXTURE_VARIANT_ADD(rejected, reserved_header_field) {
	.cmd = VPCI_CMD_MODE_SET, .reserved = 1, .err = -EINVAL, .blamed = -1,
	.attrs = { { VPCI_A_IFINDEX, U32, IFX }, { VPCI_A_MODE, U32, VPCI_MODE_POLL } },
};

/* The variant's request is refused as it says, and changes nothing. */
TEST_F(rejected, request)
{
	int off[3] = { -1, -1, -1 };
	struct nl_reply r;
	struct nl_req q;
	unsigned int i;
	char before[32], after[32];

	dev_mode(self->c.fd, &self->c.fam, self->c.ifindex, before, sizeof(before));
	ASSERT_STRNE("?", before);
	req_init(&q, self->c.fam.id, variant->cmd, variant->flags);
	q.gh.reserved = variant->reserved;
	for (i = 0; i < 3 && variant->attrs[i].kind; i++) {
		const struct attr_spec *s = &variant->attrs[i];
		uint64_t v = s->val == IFX ? self->c.ifindex : s->val;

		if (s->kind == U32)
			off[i] = req_put_u32(&q, s->type, (uint32_t)v);
		else if (s->kind == U64)
			off[i] = req_put_u64(&q, s->type, v);
		else
			off[i] = req_put_str(&q, s->type, s->str);
	}
	EXPECT_EQ(variant->err, nl_call(self->c.fd, &q, &r))
		TH_LOG("extack: '%s'", r.extack);
	EXPECT_EQ(0, r.nmsgs);
	if (variant->extack)
		EXPECT_NE(NULL, strstr(r.extack, variant->extack))
			TH_LOG("extack: '%s', wanted '%s'", r.extack, variant->extack);
	if (variant->blamed >= 0)
		EXPECT_EQ(off[variant->blamed], r.bad_off);
	reply_free(&r);
	dev_mode(self->c.fd, &self->c.fam, self->c.ifindex, after, sizeof(after));
	EXPECT_STREQ(before, after);
}

/* Another network namespace sees no vhost-pci device. */
TEST_F(genl, other_netns)
{
	struct nl_reply r;
	struct nl_req q;
	int fd;

	ASSERT_EQ(0, unshare(CLONE_NEWNET)) TH_LOG("unshare: %s", strerror(errno));
	fd = nl_open();
	ASSERT_LE(0, fd);
	EXPECT_EQ(-ENODEV, dev_get(fd, &self->c.fam, self->c.ifindex, &r));
	reply_free(&r);
	req_init(&q, self->c.fam.id, VPCI_CMD_DEV_GET, NLM_F_DUMP);
	EXPECT_EQ(0, nl_call(fd, &q, &r));
	EXPECT_EQ(0, r.nmsgs);
	reply_free(&r);
	close(fd);
}

/* Without CAP_NET_ADMIN: DEV_GET yes; MODE_SET, IOTLB_DUMP, events no. */
TEST_F(genl, unprivileged)
{
	uint32_t grp = self->c.fam.events_grp;
	struct nl_reply r;
	struct nl_req q;
	char before[32], after[32];
	int fd;

	dev_mode(self->c.fd, &self->c.fam, self->c.ifindex, before, sizeof(before));
	/* nobody: dropping every uid drops the capabilities (no keepcaps) */
	ASSERT_EQ(0, setgroups(0, NULL));
	ASSERT_EQ(0, setresgid(65534, 65534, 65534));
	ASSERT_EQ(0, setresuid(65534, 65534, 65534));
	fd = nl_open();
	ASSERT_LE(0, fd);
	EXPECT_EQ(0, dev_get(fd, &self->c.fam, self->c.ifindex, &r));
	reply_free(&r);

	req_init(&q, self->c.fam.id, VPCI_CMD_MODE_SET, 0);
	req_put_u32(&q, VPCI_A_IFINDEX, self->c.ifindex);
	req_put_u32(&q, VPCI_A_MODE, VPCI_MODE_POLL);
	EXPECT_EQ(-EPERM, nl_call(fd, &q, &r));
	reply_free(&r);

	req_init(&q, self->c.fam.id, VPCI_CMD_IOTLB_DUMP, NLM_F_DUMP);
	req_put_u32(&q, VPCI_A_IFINDEX, self->c.ifindex);
	EXPECT_EQ(-EPERM, nl_call(fd, &q, &r));
	EXPECT_EQ(0, r.nmsgs);
	reply_free(&r);

	EXPECT_EQ(-1, setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &grp, sizeof(grp)));
	EXPECT_EQ(EPERM, errno);
	close(fd);
	dev_mode(self->c.fd, &self->c.fam, self->c.ifindex, after, sizeof(after));
	EXPECT_STREQ(before, after);
}

static int write_file(const char *path, const char *s)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = write(fd, s, strlen(s));
	close(fd);
	return n == (ssize_t)strlen(s) ? 0 : -1;
}

/* A fault raised through debugfs reaches a listener of "events". */
TEST_F(genl, fault_event)
{
	const struct nlattr *tb[VPCI_A_MAX + 1], *ev[VPCI_EVENT_A_MAX + 1];
	const char *dbg = getenv("VPCI_DEBUGFS");
	uint32_t grp = self->c.fam.events_grp;
	static char buf[NL_BUF] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct pollfd pfd;
	struct nlmsghdr *nh;
	char path[256];
	ssize_t n;
	int fd;

	if (!dbg)
		SKIP(return, "VPCI_DEBUGFS is not set");
	fd = nl_open();
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, setsockopt(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &grp, sizeof(grp)))
		TH_LOG("join events: %s", strerror(errno));
	snprintf(path, sizeof(path), "%s/inject_fault", dbg);
	/* queue 1 (VM1's TX, our RX), a read refused: perm, iova 0x1000, 64 bytes */
	ASSERT_EQ(0, write_file(path, "1 perm 0x1000 64\n"))
		TH_LOG("%s: %s", path, strerror(errno));

	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	ASSERT_EQ(1, poll(&pfd, 1, 10000)) TH_LOG("no event within 10 s");
	n = recv(fd, buf, sizeof(buf), 0);
	ASSERT_LT(0, n);
	nh = (struct nlmsghdr *)buf;
	ASSERT_TRUE(NLMSG_OK(nh, n));
	EXPECT_EQ(self->c.fam.id, nh->nlmsg_type);
	EXPECT_EQ(VPCI_CMD_FAULT_NTF, ((struct genlmsghdr *)NLMSG_DATA(nh))->cmd);
	parse_msg(nh, tb, VPCI_A_MAX);
	ASSERT_NE(NULL, tb[VPCI_A_IFINDEX]);
	EXPECT_EQ(self->c.ifindex, nla_u32(tb[VPCI_A_IFINDEX]));
	ASSERT_NE(NULL, tb[VPCI_A_EVENT]);
	parse_attrs(NLA_PAYLOAD(tb[VPCI_A_EVENT]), NLA_LEN(tb[VPCI_A_EVENT]), ev,
		    VPCI_EVENT_A_MAX);
	ASSERT_NE(NULL, ev[VPCI_EVENT_A_TYPE]);
	EXPECT_EQ(VPCI_EVENT_FAULT, nla_u32(ev[VPCI_EVENT_A_TYPE]));
	ASSERT_NE(NULL, ev[VPCI_EVENT_A_QUEUE]);
	EXPECT_EQ(1, nla_u32(ev[VPCI_EVENT_A_QUEUE]));
	ASSERT_NE(NULL, ev[VPCI_EVENT_A_IOVA]);
	EXPECT_EQ(0x1000, nla_u64(ev[VPCI_EVENT_A_IOVA]));
	ASSERT_NE(NULL, ev[VPCI_EVENT_A_LEN]);
	EXPECT_EQ(64, nla_u64(ev[VPCI_EVENT_A_LEN]));
	ASSERT_NE(NULL, ev[VPCI_EVENT_A_REASON]);
	EXPECT_EQ(VPCI_FAULT_PERM, nla_u32(ev[VPCI_EVENT_A_REASON]));
	ASSERT_NE(NULL, ev[VPCI_EVENT_A_ERRNO]);
	EXPECT_EQ(-EACCES, (int32_t)nla_u32(ev[VPCI_EVENT_A_ERRNO]));
	close(fd);
}

TEST_HARNESS_MAIN
