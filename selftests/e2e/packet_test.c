// SPDX-License-Identifier: GPL-2.0
/*
 * packet_test - the datapath seen from a packet socket in VM2
 * (kselftest_harness.h; run by packet.sh inside the VM2 guest, VM1 the
 * peer over the vhost-pci link).
 *
 * The test builds ICMP echo requests itself, Ethernet header and all, and
 * sends them through an AF_PACKET socket bound to the vhost-pci interface:
 * each one leaves through the driver's transmit path into VM1's RX ring,
 * VM1's kernel answers, and the reply comes back through VM1's TX ring and
 * the driver's receive path.  Every reply must carry the request's payload
 * byte for byte, at every frame size up to the MTU, one at a time and in a
 * burst.  A second fixture variant sets PACKET_VNET_HDR: requests go out
 * with a virtio_net_hdr asking for checksum offload (ICMP checksum left
 * zero, NEEDS_CSUM): the driver passes the partial checksum on to VM1,
 * which negotiated GUEST_CSUM and takes it as is (the driver's software
 * completion, for a VM1 without GUEST_CSUM, is not reached here), and
 * replies come with a header that announces no GSO.
 *
 * Environment (set by packet.sh): VPCI_IFNAME, VPCI_PEER_MAC (VM1's MAC,
 * aa:bb:..), VPCI_PEER_IP and VPCI_OWN_IP (dotted quads).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <linux/if_packet.h>
#include <linux/virtio_net.h>

#include "kselftest_harness.h"

#define HDRS		(ETH_HLEN + 20 + 8)	/* Ethernet, IPv4, ICMP */
#define MAX_FRAME	(ETH_HLEN + 1500)
#define VNET_LEN	sizeof(struct virtio_net_hdr)

static uint16_t csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static uint32_t csum_add(uint32_t sum, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static int env_mac(const char *name, uint8_t mac[ETH_ALEN])
{
	const char *s = getenv(name);

	return s && sscanf(s, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &mac[0], &mac[1],
			   &mac[2], &mac[3], &mac[4], &mac[5]) == 6 ? 0 : -1;
}

static int env_ip(const char *name, struct in_addr *a)
{
	const char *s = getenv(name);

	return s && inet_pton(AF_INET, s, a) == 1 ? 0 : -1;
}

/* The payload byte @i of request @seq: every reply is checked against it. */
static uint8_t pattern(uint16_t seq, size_t i)
{
	return (uint8_t)(seq * 7 + i * 13 + (i >> 8));
}

FIXTURE(pkt) {
	int fd;
	int ifindex;
	uint8_t own_mac[ETH_ALEN], peer_mac[ETH_ALEN];
	struct in_addr own_ip, peer_ip;
	uint16_t id;
	int mtu;
};

FIXTURE_VARIANT(pkt) {
	bool vnet_hdr;
};

FIXTURE_VARIANT_ADD(pkt, plain) {
	.vnet_hdr = false,
};

FIXTURE_VARIANT_ADD(pkt, vnet_hdr) {
	.vnet_hdr = true,
};

FIXTURE_SETUP(pkt)
{
	const char *ifname = getenv("VPCI_IFNAME");
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct ifreq ifr = {};
	int one = 1;

	ASSERT_NE(NULL, ifname) TH_LOG("VPCI_IFNAME is not set");
	ASSERT_EQ(0, env_mac("VPCI_PEER_MAC", self->peer_mac));
	ASSERT_EQ(0, env_ip("VPCI_PEER_IP", &self->peer_ip));
	ASSERT_EQ(0, env_ip("VPCI_OWN_IP", &self->own_ip));
	self->ifindex = if_nametoindex(ifname);
	ASSERT_NE(0, self->ifindex) TH_LOG("%s: %s", ifname, strerror(errno));

	self->fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
	ASSERT_LE(0, self->fd) TH_LOG("socket: %s", strerror(errno));
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	ASSERT_EQ(0, ioctl(self->fd, SIOCGIFHWADDR, &ifr));
	memcpy(self->own_mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
	ASSERT_EQ(0, ioctl(self->fd, SIOCGIFMTU, &ifr));
	/* Frames up to 1500 IP bytes (the buffers' size) at a larger MTU. */
	self->mtu = ifr.ifr_mtu < 1500 ? ifr.ifr_mtu : 1500;
	ASSERT_LE(68, self->mtu);
	if (variant->vnet_hdr) {
		ASSERT_EQ(0, setsockopt(self->fd, SOL_PACKET, PACKET_VNET_HDR,
					&one, sizeof(one)))
			TH_LOG("PACKET_VNET_HDR: %s", strerror(errno));
	}
	sll.sll_protocol = htons(ETH_P_IP);
	sll.sll_ifindex = self->ifindex;
	ASSERT_EQ(0, bind(self->fd, (struct sockaddr *)&sll, sizeof(sll)));
	/* An id of this run: replies to anyone else's pings are skipped. */
	self->id = (uint16_t)(getpid() ^ time(NULL));
}

FIXTURE_TEARDOWN(pkt)
{
	close(self->fd);
}

/*
 * Send one echo request of @ip_len IP bytes with sequence number @seq.
 * With the vnet header the ICMP checksum is left to the offload;
 * @bad_csum sends it computed and off by one instead (and a vnet header
 * without flags).
 */
static int send_echo(FIXTURE_DATA(pkt) *self, bool vnet, uint16_t seq,
		     size_t ip_len, bool bad_csum)
{
	uint8_t buf[VNET_LEN + MAX_FRAME] = {};
	struct virtio_net_hdr *vh = (void *)buf;
	uint8_t *f = buf + (vnet ? VNET_LEN : 0);
	struct ether_header *eth = (void *)f;
	struct iphdr *ip = (void *)(f + ETH_HLEN);
	struct icmphdr *icmp = (void *)(f + ETH_HLEN + 20);
	size_t i, payload = ip_len - 28, len = ETH_HLEN + ip_len;

	memcpy(eth->ether_dhost, self->peer_mac, ETH_ALEN);
	memcpy(eth->ether_shost, self->own_mac, ETH_ALEN);
	eth->ether_type = htons(ETHERTYPE_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tot_len = htons(ip_len);
	ip->id = htons(seq);
	ip->frag_off = htons(IP_DF);
	ip->ttl = 64;
	ip->protocol = IPPROTO_ICMP;
	ip->saddr = self->own_ip.s_addr;
	ip->daddr = self->peer_ip.s_addr;
	ip->check = htons(csum_fold(csum_add(0, ip, 20)));
	icmp->type = ICMP_ECHO;
	icmp->un.echo.id = htons(self->id);
	icmp->un.echo.sequence = htons(seq);
	for (i = 0; i < payload; i++)
		f[HDRS + i] = pattern(seq, i);
	if (vnet && !bad_csum) {
		/*
		 * ICMP has no pseudo header: the partial sum starts at 0.  A
		 * packet socket's header is in the CPU's order (vio_le()).
		 */
		vh->flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
		vh->gso_type = VIRTIO_NET_HDR_GSO_NONE;
		vh->csum_start = ETH_HLEN + 20;
		vh->csum_offset = offsetof(struct icmphdr, checksum);
	} else {
		icmp->checksum = htons(csum_fold(csum_add(0, icmp, ip_len - 20)) ^ bad_csum);
	}
	len += vnet ? VNET_LEN : 0;
	return send(self->fd, buf, len, 0) == (ssize_t)len ? 0 : -errno;
}

/* What wait_reply() saw of a reply. */
struct reply {
	size_t ip_len;
	bool payload_ok;
	struct virtio_net_hdr vh;
};

/*
 * Wait up to @ms for VM1's echo replies to @first .. @first + @n - 1 (other
 * frames are skipped): @r[i] gets the reply to @first + i, @seen[i] is set.
 * Returns once every one came, or -ETIMEDOUT, or -errno.
 */
static int wait_replies(FIXTURE_DATA(pkt) *self, bool vnet, uint16_t first,
			unsigned int n, int ms, struct reply *r, bool *seen)
{
	unsigned int got = 0;
	uint8_t buf[VNET_LEN + 65536];
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct pollfd pfd = { .fd = self->fd, .events = POLLIN };
		const uint8_t *f = buf + (vnet ? VNET_LEN : 0);
		const struct iphdr *ip = (const void *)(f + ETH_HLEN);
		const struct icmphdr *icmp = (const void *)(f + ETH_HLEN + 20);
		unsigned int k;
		uint16_t seq;
		ssize_t len;
		size_t i;
		int left;

		clock_gettime(CLOCK_MONOTONIC, &t);
		left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 +
				  (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, left) <= 0)
			continue;
		len = recv(self->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (len < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			return -errno;
		}
		len -= vnet ? VNET_LEN : 0;
		if (len < HDRS || ip->protocol != IPPROTO_ICMP ||
		    ip->saddr != self->peer_ip.s_addr || ip->ihl != 5 ||
		    icmp->type != ICMP_ECHOREPLY || ntohs(icmp->un.echo.id) != self->id)
			continue;
		seq = ntohs(icmp->un.echo.sequence);
		k = (uint16_t)(seq - first);
		if (k >= n || seen[k])
			continue;
		seen[k] = true;
		r[k].ip_len = ntohs(ip->tot_len);
		r[k].payload_ok = r[k].ip_len >= 28 && (size_t)len >= ETH_HLEN + r[k].ip_len;
		for (i = 0; r[k].payload_ok && i < r[k].ip_len - 28; i++)
			r[k].payload_ok = f[HDRS + i] == pattern(seq, i);
		if (vnet)
			memcpy(&r[k].vh, buf, VNET_LEN);
		if (++got == n)
			return 0;
	}
}

/* Wait up to @ms for the one reply to @seq. */
static int wait_reply(FIXTURE_DATA(pkt) *self, bool vnet, uint16_t seq,
		      int ms, struct reply *r)
{
	bool seen = false;

	return wait_replies(self, vnet, seq, 1, ms, r, &seen);
}

/* One request at a time, every size from the smallest to the MTU. */
TEST_F(pkt, echo_every_size)
{
	static const size_t sizes[] = { 28, 29, 46, 64, 100, 255, 256, 511, 1000,
					1024, 1400, 1499 };
	struct reply r;
	size_t k;

	for (k = 0; k <= sizeof(sizes) / sizeof(sizes[0]); k++) {
		size_t len = k < sizeof(sizes) / sizeof(sizes[0]) ? sizes[k] : self->mtu;
		uint16_t seq = (uint16_t)(k + 1);

		memset(&r, 0, sizeof(r));
		ASSERT_EQ(0, send_echo(self, variant->vnet_hdr, seq, len, false))
			TH_LOG("send of %zu IP bytes", len);
		ASSERT_EQ(0, wait_reply(self, variant->vnet_hdr, seq, 3000, &r))
			TH_LOG("no reply to %zu IP bytes (seq %u)", len, seq);
		EXPECT_EQ(len, r.ip_len);
		EXPECT_TRUE(r.payload_ok) TH_LOG("reply to %zu IP bytes differs", len);
		if (variant->vnet_hdr) {
			EXPECT_EQ(VIRTIO_NET_HDR_GSO_NONE, r.vh.gso_type);
			EXPECT_EQ(0, r.vh.flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM |
						     VIRTIO_NET_HDR_F_DATA_VALID));
		}
	}
}

/* 64 requests of mixed sizes back to back, then every reply, intact. */
TEST_F(pkt, echo_burst)
{
	enum { N = 64 };
	struct tpacket_stats st;
	socklen_t sl = sizeof(st);
	struct reply r[N] = {};
	bool seen[N] = {};
	unsigned int i, got = 0, bad = 0;
	int err;

	for (i = 0; i < N; i++)
		ASSERT_EQ(0, send_echo(self, variant->vnet_hdr, (uint16_t)(1000 + i),
				       28 + (i * 331) % (self->mtu - 27), false));
	err = wait_replies(self, variant->vnet_hdr, 1000, N, 10000, r, seen);
	for (i = 0; i < N; i++) {
		got += seen[i];
		bad += seen[i] && (!r[i].payload_ok ||
				   r[i].ip_len != 28 + (i * 331) % (self->mtu - 27));
	}
	if (getsockopt(self->fd, SOL_PACKET, PACKET_STATISTICS, &st, &sl) == 0)
		TH_LOG("packet socket: %u frames, %u dropped", st.tp_packets, st.tp_drops);
	EXPECT_EQ(0, err);
	EXPECT_EQ(N, got) TH_LOG("%u of %u replies", got, N);
	EXPECT_EQ(0, bad);
}

/*
 * A request with a wrong ICMP checksum and no offload asked for is not
 * answered: nothing on the way marks it valid (a path that set DATA_VALID
 * or completed it would get an answer).
 */
TEST_F(pkt, bad_checksum_not_answered)
{
	struct reply r;

	struct reply rs[2] = {};
	bool seen[2] = {};

	ASSERT_EQ(0, send_echo(self, variant->vnet_hdr, 2000, 100, false));
	ASSERT_EQ(0, wait_reply(self, variant->vnet_hdr, 2000, 3000, &r));
	/*
	 * The same request with its checksum off by one, then a good one
	 * behind it: the good one is answered, the bad one never is.
	 */
	ASSERT_EQ(0, send_echo(self, variant->vnet_hdr, 2001, 100, true));
	ASSERT_EQ(0, send_echo(self, variant->vnet_hdr, 2002, 100, false));
	wait_replies(self, variant->vnet_hdr, 2001, 2, 3000, rs, seen);
	EXPECT_TRUE(seen[1]) TH_LOG("no answer to the good request behind it");
	EXPECT_FALSE(seen[0]) TH_LOG("the request with a wrong checksum was answered");
}

TEST_HARNESS_MAIN
