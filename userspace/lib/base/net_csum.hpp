// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file net_csum.hpp
 * The Internet checksum (RFC 1071) of a partial checksum that VM1 leaves
 * with VIRTIO_NET_F_CSUM: the 16-bit field at csum_start + csum_offset
 * holds a seed (the pseudo-header sum for TCP/UDP) and the checksum covers
 * csum_start to the end of the frame.  hostdp completes it for a front-end
 * that did not negotiate GUEST_CSUM (the kernel's skb_checksum_help());
 * vpci-sim checks it on what it receives.
 */
#pragma once

#include <cstddef>
#include <cstdint>

namespace vpci::net {

/** Ones' complement sum of @p n bytes taken as big-endian 16-bit words, folded. */
inline std::uint16_t csum_fold(const std::uint8_t *p, std::size_t n)
{
	std::uint64_t sum = 0;
	std::size_t i = 0;
	for (; i + 1 < n; i += 2)
		sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
	if (i < n)
		sum += static_cast<std::uint32_t>(p[i] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return static_cast<std::uint16_t>(sum);
}

/**
 * Whether the field of a partial checksum lies within a frame of @p len
 * bytes (the kernel's virtio_net_hdr_to_skb() checks the same).
 */
inline bool csum_field_fits(std::size_t len, std::size_t start, std::size_t offset)
{
	return start < len && offset + 2 <= len - start;
}

/**
 * Complete the partial checksum of @p frame in place: the field at
 * @p start + @p offset becomes the complement of the sum from @p start to
 * the end (0 is sent as 0xffff, as skb_checksum_help() does).
 * Return: false, with nothing written, when the field does not fit.
 */
inline bool csum_complete(std::uint8_t *frame, std::size_t len, std::size_t start,
			  std::size_t offset)
{
	if (!csum_field_fits(len, start, offset))
		return false;
	std::uint16_t c = static_cast<std::uint16_t>(~csum_fold(frame + start, len - start));
	if (c == 0)
		c = 0xffff;
	frame[start + offset] = static_cast<std::uint8_t>(c >> 8);
	frame[start + offset + 1] = static_cast<std::uint8_t>(c);
	return true;
}

/** Whether the checksum from @p start to the end of @p frame verifies. */
inline bool csum_valid(const std::uint8_t *frame, std::size_t len, std::size_t start)
{
	return start < len && csum_fold(frame + start, len - start) == 0xffff;
}

} // namespace vpci::net
