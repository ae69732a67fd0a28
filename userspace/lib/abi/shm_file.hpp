// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file shm_file.hpp
 * The shared memory file: VM1's RAM at offset 0, the control area in the
 * last VPCI_CTRL_SIZE bytes, total size a power of two (QEMU's ivshmem
 * refuses anything else).
 */
#pragma once

#include <cstdint>
#include <string>

#include "fd.hpp"

namespace vpci {

/** Smallest power of two >= @p v (v > 0, result must fit in 64 bits). */
std::uint64_t next_pow2(std::uint64_t v);

/** File size needed for @p ram_size bytes of VM1 RAM plus the control area. */
std::uint64_t required_file_size(std::uint64_t ram_size);

/**
 * Opens or creates the memory file.
 *
 * A new or empty file is extended (sparse) to required_file_size(); an
 * existing non-empty file must already be a power of two at least that big,
 * otherwise std::runtime_error names the path and both sizes.  @p ram_size
 * must be a non-zero multiple of 4096 (std::invalid_argument otherwise).
 */
class shm_file {
public:
	shm_file(std::string path, std::uint64_t ram_size);

	int fd() const noexcept { return fd_.get(); }
	const std::string &path() const noexcept { return path_; }
	std::uint64_t ram_size() const noexcept { return ram_size_; }
	std::uint64_t file_size() const noexcept { return file_size_; }
	/** File offset of the control area: file_size() - VPCI_CTRL_SIZE. */
	std::uint64_t ctrl_offset() const noexcept;

private:
	unique_fd fd_;
	std::string path_;
	std::uint64_t ram_size_;
	std::uint64_t file_size_ = 0;
};

} // namespace vpci
