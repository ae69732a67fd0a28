// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "sim_traffic.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <time.h>

#include <fmt/format.h>

#include "net_csum.hpp"

namespace vpci::sim {

namespace {

template <typename T> void put(std::uint8_t *p, T v) { std::memcpy(p, &v, sizeof(v)); }
template <typename T> T get(const std::uint8_t *p)
{
	T v;
	std::memcpy(&v, p, sizeof(v));
	return v;
}

std::uint32_t fnv1a(const std::uint8_t *p, std::size_t n, std::uint32_t h = 2166136261u)
{
	for (std::size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

constexpr std::uint8_t dst_mac[6] = {0x02, 0, 0, 0, 0, 0x02};
constexpr std::uint8_t src_mac[6] = {0x02, 0, 0, 0, 0, 0x01};

} // namespace

std::uint64_t now_ns()
{
	timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
	       static_cast<std::uint64_t>(ts.tv_nsec);
}

namespace {

/*
 * The test header at @p off (14: after the Ethernet header; tcp_hdrs: after
 * the TCP header): magic, sequence, frame length, send time, then an FNV-1a
 * of those and of the payload that follows.
 */
constexpr std::size_t th_seq = 4, th_len = 12, th_tx = 14, th_fnv = 22, th_size = 26;
static_assert(14 + th_size == frame_hdr);

void fill_test(std::span<std::uint8_t> out, std::size_t off, std::uint64_t seq,
	       std::uint64_t tx_ns, bool zero_csum)
{
	std::uint8_t *p = out.data();
	put<std::uint32_t>(p + off, frame_magic);
	put<std::uint64_t>(p + off + th_seq, seq);
	put<std::uint16_t>(p + off + th_len, static_cast<std::uint16_t>(out.size()));
	put<std::uint64_t>(p + off + th_tx, tx_ns);
	for (std::size_t i = off + th_size; i < out.size(); i++)
		p[i] = static_cast<std::uint8_t>(seq * 31 + i);
	if (zero_csum)
		p[csum_start + csum_offset] = p[csum_start + csum_offset + 1] = 0;
	std::uint32_t h = fnv1a(p + off + th_seq, th_fnv - th_seq);
	put<std::uint32_t>(p + off + th_fnv,
			   fnv1a(p + off + th_size, out.size() - off - th_size, h));
}

bool check_test(std::span<const std::uint8_t> in, std::size_t off, frame_info &out)
{
	const std::uint8_t *p = in.data();
	if (in.size() < off + th_size || get<std::uint32_t>(p + off) != frame_magic ||
	    get<std::uint16_t>(p + off + th_len) != in.size())
		return false;
	std::uint32_t h = fnv1a(p + off + th_seq, th_fnv - th_seq);
	if (get<std::uint32_t>(p + off + th_fnv) !=
	    fnv1a(p + off + th_size, in.size() - off - th_size, h))
		return false;
	out.seq = get<std::uint64_t>(p + off + th_seq);
	out.tx_ns = get<std::uint64_t>(p + off + th_tx);
	return true;
}

template <typename T> void put_be(std::uint8_t *p, T v)
{
	for (std::size_t i = sizeof(T); i-- > 0; v = static_cast<T>(v >> 8))
		p[i] = static_cast<std::uint8_t>(v);
}

template <typename T> T get_be(const std::uint8_t *p)
{
	T v = 0;
	for (std::size_t i = 0; i < sizeof(T); i++)
		v = static_cast<T>(v << 8 | p[i]);
	return v;
}

constexpr std::uint8_t tcp_saddr[4] = {10, 99, 0, 1}, tcp_daddr[4] = {10, 99, 0, 2};

/**
 * Ethernet, IPv4 and TCP headers of TCP frame @p seq of @p size bytes, the
 * checksum field holding the seed.  Each pair's flow has its own source
 * port; the TCP sequence number moves by 64 KiB a frame.
 */
void tcp_headers(std::uint8_t *p, std::size_t size, std::uint64_t seq)
{
	std::memset(p, 0, tcp_hdrs);
	std::memcpy(p, dst_mac, 6);
	std::memcpy(p + 6, src_mac, 6);
	p[12] = 0x08; // ETH_P_IP
	std::uint8_t *ip = p + 14;
	ip[0] = 0x45;
	put_be<std::uint16_t>(ip + 2, static_cast<std::uint16_t>(size - 14));
	put_be<std::uint16_t>(ip + 4, static_cast<std::uint16_t>(seq));
	put_be<std::uint16_t>(ip + 6, 0x4000); // DF
	ip[8] = 64;
	ip[9] = 6;
	std::memcpy(ip + 12, tcp_saddr, 4);
	std::memcpy(ip + 16, tcp_daddr, 4);
	put_be<std::uint16_t>(ip + 10, static_cast<std::uint16_t>(~net::csum_fold(ip, 20)));
	std::uint8_t *th = p + tcp_csum_start;
	put_be<std::uint16_t>(th, static_cast<std::uint16_t>(40000 + (seq >> seq_pair_shift)));
	put_be<std::uint16_t>(th + 2, 5201);
	put_be<std::uint32_t>(th + 4, static_cast<std::uint32_t>((seq & seq_mask) << 16));
	th[12] = 5 << 4;
	th[13] = 0x18; // ACK | PSH: GRO passes every frame on as it came
	put_be<std::uint16_t>(th + 14, 0xffff);
	put_be<std::uint16_t>(th + tcp_csum_offset, tcp_seed(size));
}

} // namespace

std::uint16_t tcp_seed(std::size_t size)
{
	std::uint8_t ph[12] = {};
	std::memcpy(ph, tcp_saddr, 4);
	std::memcpy(ph + 4, tcp_daddr, 4);
	ph[9] = 6; // IPPROTO_TCP
	put_be<std::uint16_t>(ph + 10, static_cast<std::uint16_t>(size - tcp_csum_start));
	return net::csum_fold(ph, sizeof(ph));
}

namespace {

/*
 * The TCP checksum of a frame or segment (at least tcp_hdrs bytes) as the
 * device returned it with header @p h: still partial (same start and
 * offset, the seed untouched) or completed (it verifies with the
 * pseudo-header; the field is set back to the seed); anything else bad.
 */
csum_seen take_tcp_csum(const std::uint8_t *h, std::span<std::uint8_t> frame)
{
	std::uint8_t *field = frame.data() + tcp_csum_start + tcp_csum_offset;
	const std::uint16_t seed = tcp_seed(frame.size());
	if (h[0] & 1) // VIRTIO_NET_HDR_F_NEEDS_CSUM
		return get<std::uint16_t>(h + 6) == tcp_csum_start &&
				       get<std::uint16_t>(h + 8) == tcp_csum_offset &&
				       get_be<std::uint16_t>(field) == seed
			       ? csum_seen::partial
			       : csum_seen::bad;
	std::uint32_t sum = net::csum_fold(frame.data() + tcp_csum_start,
					   frame.size() - tcp_csum_start) + seed;
	if ((sum & 0xffff) + (sum >> 16) != 0xffff)
		return csum_seen::bad;
	put_be<std::uint16_t>(field, seed);
	return csum_seen::complete;
}

} // namespace

void build_frame(std::span<std::uint8_t> out, std::uint64_t seq, std::uint64_t tx_ns)
{
	if (out.size() < frame_min || out.size() > 0xffff)
		throw std::invalid_argument("build_frame: size outside 60..65535");
	std::uint8_t *p = out.data();
	std::memcpy(p, dst_mac, 6);
	std::memcpy(p + 6, src_mac, 6);
	p[12] = 0x88;
	p[13] = 0xb5;
	fill_test(out, 14, seq, tx_ns, true);
}

void build_tcp_frame(std::span<std::uint8_t> out, std::uint64_t seq, std::uint64_t tx_ns)
{
	if (out.size() < tcp_frame_min || out.size() > tcp_frame_max)
		throw std::invalid_argument(fmt::format("build_tcp_frame: size {} outside {}..{}",
							out.size(), tcp_frame_min, tcp_frame_max));
	tcp_headers(out.data(), out.size(), seq);
	fill_test(out, tcp_hdrs, seq, tx_ns, false);
}

void tcp_net_hdr(std::uint8_t *h, std::size_t size)
{
	const bool gso = size > gso_frame_max;
	std::memset(h, 0, net_hdr_size);
	h[0] = 1;		// VIRTIO_NET_HDR_F_NEEDS_CSUM
	h[1] = gso ? 1 : 0;	// VIRTIO_NET_HDR_GSO_TCPV4
	put<std::uint16_t>(h + 2, tcp_hdrs);
	put<std::uint16_t>(h + 4, gso ? gso_mss : 0);
	put<std::uint16_t>(h + 6, tcp_csum_start);
	put<std::uint16_t>(h + 8, tcp_csum_offset);
}

tcp_seen take_tcp(const std::uint8_t *h, std::span<std::uint8_t> frame)
{
	if (frame.size() < tcp_hdrs)
		return {csum_seen::bad, false};
	const bool gso = frame.size() > gso_frame_max;
	// hdr_len is a hint (Linux fills in the skb's head length), not checked.
	const bool gso_ok = gso ? h[1] == 1 && get<std::uint16_t>(h + 4) == gso_mss
				: h[1] == 0 && get<std::uint16_t>(h + 4) == 0;
	if (!gso_ok)
		return {csum_seen::bad, false};
	const csum_seen c = take_tcp_csum(h, frame);
	return {c, c != csum_seen::bad && gso};
}

csum_seen take_csum(const std::uint8_t *net_hdr, std::span<std::uint8_t> frame)
{
	const std::size_t at = csum_start + csum_offset;
	if (frame.size() < at + 2)
		return csum_seen::bad;
	if (net_hdr[0] & 1) { // VIRTIO_NET_HDR_F_NEEDS_CSUM
		const bool same = get<std::uint16_t>(net_hdr + 6) == csum_start &&
				  get<std::uint16_t>(net_hdr + 8) == csum_offset;
		return same && !frame[at] && !frame[at + 1] ? csum_seen::partial : csum_seen::bad;
	}
	if (!net::csum_valid(frame.data(), frame.size(), csum_start))
		return csum_seen::bad;
	frame[at] = frame[at + 1] = 0;
	return csum_seen::complete;
}

tcp_reassembler::result tcp_reassembler::add(const std::uint8_t *h, std::span<std::uint8_t> seg)
{
	segments++;
	auto fail = [this] {
		bad++;
		have_ = want_ = 0;
		return result::bad;
	};
	const std::size_t len = seg.size(), at = tcp_csum_start + tcp_csum_offset;
	std::uint8_t *p = seg.data();
	if (len < tcp_hdrs || len > gso_frame_max || h[1] != 0)
		return fail();
	switch (take_tcp_csum(h, seg)) {
	case csum_seen::partial:
		partial++;
		break;
	case csum_seen::complete:
		complete++;
		break;
	case csum_seen::bad:
		return fail();
	}
	// The flow's headers, but for what segmentation changes (the IPv4
	// ID and checksum, the TCP sequence number, PSH on the last) and the
	// pair's source port (the same in every segment of a frame).
	if (net::csum_fold(p + 14, 20) != 0xffff || (p[34 + 13] & ~0x08) != 0x10)
		return fail();
	std::uint8_t want[tcp_hdrs];
	tcp_headers(want, len, 0);
	for (std::size_t i : {14 + 4, 14 + 5, 14 + 10, 14 + 11, 34, 34 + 1, 34 + 4, 34 + 5, 34 + 6,
			      34 + 7, 34 + 13})
		want[i] = p[i];
	if (std::memcmp(want, p, at))
		return fail();
	const std::uint32_t tseq = get_be<std::uint32_t>(p + tcp_csum_start + 4);
	const std::size_t off = tseq & 0xffff, n = len - tcp_hdrs;
	if (off == 0) {
		// A frame starts (one in progress is dropped, and counted): its
		// test header says how long it is.
		if (want_) {
			bad++;
			have_ = want_ = 0;
		}
		if (n < frame_hdr - 14)
			return fail();
		const std::size_t size = get<std::uint16_t>(p + tcp_hdrs + 12);
		if (size < tcp_frame_min || size - tcp_hdrs < n)
			return fail();
		frame_.assign(size, 0);
		have_ = 0;
		want_ = size - tcp_hdrs;
		std::memcpy(sport_, p + tcp_csum_start, 2);
		base_ = tseq >> 16;
	}
	// In order, of the frame in progress (its flow, its sequence number).
	if (!want_ || off != have_ || n > want_ - have_ ||
	    std::memcmp(sport_, p + tcp_csum_start, 2) || tseq >> 16 != base_)
		return fail();
	std::memcpy(frame_.data() + tcp_hdrs + have_, p + tcp_hdrs, n);
	have_ += n;
	if (have_ < want_)
		return result::more;
	// The frame's own headers are those of its sequence number.
	tcp_headers(frame_.data(), frame_.size(), get<std::uint64_t>(frame_.data() + tcp_hdrs + 4));
	have_ = want_ = 0;
	if (std::memcmp(sport_, frame_.data() + tcp_csum_start, 2)) {
		bad++;
		return result::bad;
	}
	return result::frame;
}

bool parse_frame(std::span<const std::uint8_t> in, frame_info &out)
{
	if (in.size() < frame_min)
		return false;
	if (in[12] != 0x08 || in[13] != 0)
		return check_test(in, 14, out);
	// A TCP frame: its headers exactly as built for its sequence number.
	if (in.size() < tcp_frame_min || !check_test(in, tcp_hdrs, out))
		return false;
	std::uint8_t want[tcp_hdrs];
	tcp_headers(want, in.size(), out.seq);
	return !std::memcmp(want, in.data(), tcp_hdrs);
}

std::uint32_t size_picker::next()
{
	if (min_ >= max_)
		return min_;
	s_ ^= s_ << 13;
	s_ ^= s_ >> 7;
	s_ ^= s_ << 17;
	return min_ + static_cast<std::uint32_t>(s_ % (max_ - min_ + 1));
}

int frame_pair(std::span<const std::uint8_t> in)
{
	frame_info fi;
	if (!parse_frame(in, fi) || (fi.seq >> seq_pair_shift) >= 256)
		return -1;
	return static_cast<int>(fi.seq >> seq_pair_shift);
}

void rx_validator::on_frame(std::span<const std::uint8_t> frame, std::uint64_t now)
{
	received++;
	bytes += frame.size();
	frame_info fi;
	if (!parse_frame(frame, fi)) {
		corrupt++;
		return;
	}
	if ((fi.seq >> seq_pair_shift) != pair_) {
		out_of_range++;
		return;
	}
	fi.seq &= seq_mask;
	if (fi.seq >= seen_.size()) {
		out_of_range++;
		return;
	}
	if (seen_[fi.seq]) {
		duplicates++;
		return;
	}
	seen_[fi.seq] = true;
	unique++;
	if (fi.seq + 1 < high)
		reordered++;
	high = std::max(high, fi.seq + 1);
	if (lat_ns.size() < (1u << 20))
		lat_ns.push_back(static_cast<std::uint32_t>(
			std::min<std::uint64_t>(now >= fi.tx_ns ? now - fi.tx_ns : 0, UINT32_MAX)));
}

std::uint64_t rx_validator::lost(std::uint64_t sent) const
{
	std::uint64_t got = 0;
	for (std::uint64_t i = 0; i < sent && i < seen_.size(); i++)
		got += seen_[i];
	return sent - got;
}

nlohmann::json rx_validator::latency_json()
{
	if (lat_ns.empty())
		return nullptr;
	std::sort(lat_ns.begin(), lat_ns.end());
	auto pct = [&](double p) {
		return lat_ns[std::min(lat_ns.size() - 1,
				       static_cast<std::size_t>(p * static_cast<double>(lat_ns.size())))] /
		       1000.0;
	};
	return {{"samples", lat_ns.size()}, {"p50_us", pct(0.5)}, {"p99_us", pct(0.99)},
		{"max_us", lat_ns.back() / 1000.0}};
}

} // namespace vpci::sim
