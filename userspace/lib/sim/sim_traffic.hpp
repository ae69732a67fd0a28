// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file sim_traffic.hpp
 * Test frames and their validation.  A frame is an Ethernet frame
 * (ethertype 0x88b5, local experimental) carrying a magic, a sequence
 * number, its own length, a send timestamp and an FNV-1a checksum of the
 * rest; the receiver counts loss, reordering, duplicates and corruption and
 * keeps latency samples.
 *
 * With --gso a frame is a TCP/IPv4 segment instead (Ethernet, IPv4 and TCP
 * headers without options, then the same test header), up to 64 KiB: what
 * a guest's TCP stack hands its virtio-net with TSO, partial checksum and
 * GSO header included.
 */
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

namespace vpci::sim {

constexpr std::uint32_t frame_magic = 0x4d535056; // "VPSM"
constexpr std::size_t frame_min = 60, frame_hdr = 40;
constexpr std::size_t net_hdr_size = 12; // virtio_net_hdr_mrg_rxbuf (VERSION_1)

/**
 * Where a frame's partial checksum lies when VM1 leaves it to the device
 * (vpci-sim --tx-csum): from csum_start to the end of the frame, its field
 * at csum_start + csum_offset.  build_frame() leaves the field zero (the
 * seed; there is no pseudo-header), inside what the frame's FNV-1a covers.
 */
constexpr std::uint16_t csum_start = frame_hdr, csum_offset = 0;

/** Fill @p out (its whole size, >= frame_min) as frame @p seq sent at @p tx_ns. */
void build_frame(std::span<std::uint8_t> out, std::uint64_t seq, std::uint64_t tx_ns);

/** What the device did with a partial checksum (a --tx-csum frame received). */
enum class csum_seen {
	partial,  ///< passed on: NEEDS_CSUM with the same start and offset, field untouched
	complete, ///< completed: no NEEDS_CSUM and the checksum verifies
	bad,	  ///< neither
};
/**
 * Classify a received --tx-csum frame by its virtio-net header
 * @p net_hdr and bytes; a completed field is set back to zero, so that
 * parse_frame() sees the frame as built.
 */
csum_seen take_csum(const std::uint8_t *net_hdr, std::span<std::uint8_t> frame);

/**
 * TCP/IPv4 test frames (--gso).  The TCP checksum is left partial as a
 * guest's stack leaves it for a device with CSUM: the field holds the
 * pseudo-header sum, NEEDS_CSUM names it (tcp_csum_start, tcp_csum_offset).
 * Frames longer than gso_frame_max carry a TCPv4 GSO header of segment
 * size gso_mss (a TSO frame); the sizes are Linux's for a 1500-byte MTU.
 */
constexpr std::size_t tcp_hdrs = 54, tcp_frame_min = tcp_hdrs + frame_hdr - 14,
		      tcp_frame_max = 65535;
constexpr std::uint16_t tcp_csum_start = 34, tcp_csum_offset = 16, gso_mss = 1448;
constexpr std::size_t gso_frame_max = 1514;
/** Fill @p out (tcp_frame_min..tcp_frame_max bytes) as TCP frame @p seq. */
void build_tcp_frame(std::span<std::uint8_t> out, std::uint64_t seq, std::uint64_t tx_ns);
/** The virtio-net header (net_hdr_size bytes) VM1 sends a TCP frame of @p size bytes with. */
void tcp_net_hdr(std::uint8_t *net_hdr, std::size_t size);

/** What a device did with a TCP frame received (--gso). */
struct tcp_seen {
	csum_seen csum;
	/** Whole with a GSO header as sent (frames over gso_frame_max). */
	bool gso;
};
/**
 * Check a received TCP frame's virtio-net header @p net_hdr against the
 * frame: a frame over gso_frame_max must come whole with the TCPv4 GSO
 * type and gso_mss, a shorter one without GSO; the checksum still partial
 * (same start and offset, the field untouched) or completed (it verifies,
 * and is set back to the seed, so that parse_frame() sees the frame as
 * built).  Anything else is csum_seen::bad.
 */
tcp_seen take_tcp(const std::uint8_t *net_hdr, std::span<std::uint8_t> frame);

/** The TCP checksum seed (pseudo-header sum) of a TCP frame or segment of @p size bytes. */
std::uint16_t tcp_seed(std::size_t size);

/**
 * The frames a device sends VM1 in segments (--gso without GUEST_TSO4:
 * VM2's stack segments each TSO frame to gso_mss), put back together.
 * Segments of one frame come in order on one ring; each is checked as a
 * segment (IPv4 and TCP headers of the flow, its length, no GSO header,
 * its checksum still partial or completed), its TCP sequence number says
 * where its payload goes, the first one's test header how long the frame
 * is; every later one must be of the same flow and frame (the high half
 * of its sequence number) at the next offset.  A frame whose segments do
 * not add up is dropped and counted bad (the validator counts it lost); a
 * shorter frame is one segment of itself.
 */
class tcp_reassembler {
public:
	enum class result {
		more,  ///< a segment taken, the frame not complete yet
		frame, ///< the frame is complete: frame()
		bad,   ///< not a segment of a test frame, or out of place
	};
	/** Take one received segment and its virtio-net header. */
	result add(const std::uint8_t *net_hdr, std::span<std::uint8_t> seg);
	/** The frame completed by the last add() (as build_tcp_frame() made it). */
	std::span<const std::uint8_t> frame() const { return frame_; }
	std::uint64_t segments = 0, bad = 0, partial = 0, complete = 0;

private:
	std::vector<std::uint8_t> frame_;
	/** Payload bytes gathered of the frame in progress, of want_ (0: none). */
	std::size_t have_ = 0, want_ = 0;
	/** The frame's source port (its pair's flow), from its first segment. */
	std::uint8_t sport_[2] = {};
	/** The high half of its TCP sequence numbers (the frame's own). */
	std::uint32_t base_ = 0;
};

struct frame_info {
	std::uint64_t seq, tx_ns;
};
/**
 * Check a received frame, either kind (a TCP frame's headers must be
 * exactly as built); false if not a valid test frame.
 */
bool parse_frame(std::span<const std::uint8_t> in, frame_info &out);

/**
 * With several queue pairs each pair is its own flow: its frames carry
 * the pair in the sequence number's bits 48..55 (pair 0: none, so one pair
 * sends what it always sent).
 */
constexpr unsigned seq_pair_shift = 48;
constexpr std::uint64_t seq_mask = (1ULL << seq_pair_shift) - 1;
constexpr std::uint64_t pair_seq(unsigned pair, std::uint64_t seq)
{
	return (std::uint64_t{pair} << seq_pair_shift) | seq;
}
/** The pair a valid test frame belongs to (its tag); -1 if not a valid test frame. */
int frame_pair(std::span<const std::uint8_t> in);

/** Frame sizes: fixed, or uniformly mixed in [min, max] (deterministic from a seed). */
class size_picker {
public:
	size_picker(std::uint32_t min, std::uint32_t max, std::uint64_t seed)
		: min_(min), max_(max), s_(seed | 1) {}
	std::uint32_t next();

private:
	std::uint32_t min_, max_;
	std::uint64_t s_;
};

class rx_validator {
public:
	/** @p pair: the pair whose flow this is (frames of another count as out of range). */
	explicit rx_validator(std::uint64_t expected, unsigned pair = 0)
		: seen_(expected), pair_(pair) {}
	/** Account one received frame (after the virtio-net header). */
	void on_frame(std::span<const std::uint8_t> frame, std::uint64_t now_ns);
	/** Frames expected but not (yet) received among the first @p sent. */
	std::uint64_t lost(std::uint64_t sent) const;

	std::uint64_t received = 0, unique = 0, duplicates = 0, reordered = 0, corrupt = 0,
		      out_of_range = 0, bytes = 0;
	/** Highest sequence number seen + 1 (0 if none). */
	std::uint64_t high = 0;
	/** Latency samples in ns (the first 1M frames). */
	std::vector<std::uint32_t> lat_ns;

	/** {"p50":..,"p99":..,"max":..} in microseconds. */
	nlohmann::json latency_json();

private:
	std::vector<bool> seen_;
	unsigned pair_;
};

std::uint64_t now_ns();

} // namespace vpci::sim
