// SPDX-License-Identifier: GPL-2.0
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>

namespace vpci {

/**
 * Parse decimal or (unless @p decimal_only) 0x-prefixed hex, the whole
 * string: no sign, no blanks; nullopt otherwise.
 */
inline std::optional<std::uint64_t> parse_u64(const std::string &s, bool decimal_only = false)
{
	std::uint64_t v = 0;
	int base = 10;
	const char *b = s.data(), *e = s.data() + s.size();
	if (!decimal_only && s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		base = 16;
		b += 2;
	}
	auto [p, ec] = std::from_chars(b, e, v, base);
	if (b == e || ec != std::errc() || p != e)
		return std::nullopt;
	return v;
}

} // namespace vpci
