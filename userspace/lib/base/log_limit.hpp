// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file log_limit.hpp
 * Rate limiting for log lines a peer can cause (the kernel's ratelimit:
 * @c burst lines per @c interval, the rest counted and reported with the
 * next line that gets through).
 */
#pragma once
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace vpci {

class log_limit {
public:
	using clock = std::chrono::steady_clock;

	explicit log_limit(std::chrono::milliseconds interval = std::chrono::seconds(5),
			   unsigned burst = 10) noexcept
		: interval_(interval), burst_(burst)
	{
	}

	/**
	 * May a line be logged at @p now?  When it may, @p suppressed is set
	 * to the lines refused since the last one that was allowed.
	 */
	bool allow(std::uint64_t &suppressed, clock::time_point now = clock::now()) noexcept
	{
		if (now - start_ >= interval_) {
			start_ = now;
			used_ = 0;
		}
		if (used_ >= burst_) {
			dropped_++;
			return false;
		}
		used_++;
		suppressed = dropped_;
		dropped_ = 0;
		return true;
	}

	/**
	 * spdlog::warn() a line if allow(): one that follows refused ones
	 * says how many were suppressed.  A refused line is not formatted.
	 */
	template <typename... Args> void warn(fmt::format_string<Args...> f, Args &&...args)
	{
		std::uint64_t suppressed = 0;
		if (!allow(suppressed))
			return;
		std::string line = fmt::format(f, std::forward<Args>(args)...);
		if (suppressed)
			line += fmt::format(" ({} similar messages suppressed)", suppressed);
		spdlog::warn("{}", line);
	}

private:
	std::chrono::milliseconds interval_;
	unsigned burst_;
	clock::time_point start_{};
	unsigned used_ = 0;
	std::uint64_t dropped_ = 0;
};

} // namespace vpci
