// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "sim_traffic.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <time.h>

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

void build_frame(std::span<std::uint8_t> out, std::uint64_t seq, std::uint64_t tx_ns)
{
	if (out.size() < frame_min || out.size() > 0xffff)
		throw std::invalid_argument("build_frame: size outside 60..65535");
	std::uint8_t *p = out.data();
	std::memcpy(p, dst_mac, 6);
	std::memcpy(p + 6, src_mac, 6);
	p[12] = 0x88;
	p[13] = 0xb5;
	put<std::uint32_t>(p + 14, frame_magic);
	put<std::uint64_t>(p + 18, seq);
	put<std::uint16_t>(p + 26, static_cast<std::uint16_t>(out.size()));
	put<std::uint64_t>(p + 28, tx_ns);
	for (std::size_t i = frame_hdr; i < out.size(); i++)
		p[i] = static_cast<std::uint8_t>(seq * 31 + i);
	p[csum_start + csum_offset] = p[csum_start + csum_offset + 1] = 0;
	std::uint32_t h = fnv1a(p + 18, 18);
	put<std::uint32_t>(p + 36, fnv1a(p + frame_hdr, out.size() - frame_hdr, h));
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

bool parse_frame(std::span<const std::uint8_t> in, frame_info &out)
{
	if (in.size() < frame_min)
		return false;
	const std::uint8_t *p = in.data();
	if (get<std::uint32_t>(p + 14) != frame_magic || get<std::uint16_t>(p + 26) != in.size())
		return false;
	std::uint32_t h = fnv1a(p + 18, 18);
	if (get<std::uint32_t>(p + 36) != fnv1a(p + frame_hdr, in.size() - frame_hdr, h))
		return false;
	out.seq = get<std::uint64_t>(p + 18);
	out.tx_ns = get<std::uint64_t>(p + 28);
	return true;
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
