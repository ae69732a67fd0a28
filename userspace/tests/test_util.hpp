// SPDX-License-Identifier: GPL-2.0-only OR MIT
// Helpers shared by the unit tests.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include <spdlog/spdlog.h>

#include "abi.hpp"
#include "fd.hpp"
#include "sim_iommu.hpp"

namespace vpci::test {

/** A fresh directory under $TMPDIR (or /tmp), removed with its contents. */
class temp_dir {
public:
	temp_dir();
	~temp_dir();
	temp_dir(const temp_dir &) = delete;
	temp_dir &operator=(const temp_dir &) = delete;
	std::string path(const std::string &name) const { return dir_ + "/" + name; }

private:
	std::string dir_;
};

/**
 * What is logged while it lives (spdlog's default logger swapped for one
 * writing "<level> <message>" lines here; the old one back after).
 */
class log_capture {
public:
	log_capture();
	~log_capture();
	log_capture(const log_capture &) = delete;
	log_capture &operator=(const log_capture &) = delete;
	/** Lines logged at @p level that contain @p part. */
	std::size_t count(spdlog::level::level_enum level, const std::string &part = {}) const;
	std::string text() const { return out_.str(); }

private:
	std::ostringstream out_;
	std::shared_ptr<spdlog::logger> old_;
};

/** One ivshmem protocol message as a client sees it. */
struct ivshmem_msg {
	std::int64_t value;
	unique_fd fd; // empty if none was attached
};

/** Receive one message (int64 LE + optional fd); nullopt on EOF. */
std::optional<ivshmem_msg> recv_ivshmem_msg(int sock);

/** True if @p fd is readable right now. */
bool readable(int fd);

/**
 * Append what stream socket @p fd holds now (without waiting) to @p acc;
 * returns the lines @p acc holds (its newlines).
 */
std::size_t lines_so_far(int fd, std::string &acc);

/**
 * A peer flooding stream socket @p fd: copies of @p unit (whole ones only)
 * sent without waiting until @p at_most bytes went or the socket is full
 * (its send buffer raised first).  Returns the bytes sent.
 */
std::size_t flood(int fd, const std::string &unit, std::size_t at_most);

/** A fault of the peer simulator's catalogue under one IOVA policy. */
using fault_param = std::tuple<std::string, sim::iova_policy>;
/** Every fault of vpci::sim::faults() under every policy (for ::testing::ValuesIn). */
std::vector<fault_param> fault_params();
/** A test name for @p p: "unmapped_iova_identity". */
std::string fault_param_name(const fault_param &p);

/** Play VM2's driver: consume every b2d entry of @p c, in order. */
inline std::vector<vpci_msg> drain_b2d(vpci_ctrl &c)
{
	std::vector<vpci_msg> out;
	auto &r = c.b2d;
	std::uint32_t cons = le_load(r.cons), prod = le_load(r.prod, std::memory_order_acquire);
	for (; cons != prod; cons++)
		out.push_back(r.ent[cons % VPCI_MSG_RING_SIZE]);
	le_store(r.cons, cons, std::memory_order_release);
	return out;
}

} // namespace vpci::test
