// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "shm_file.hpp"

#include <bit>
#include <limits>
#include <stdexcept>

#include <cerrno>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abi.hpp"

namespace vpci {

std::uint64_t next_pow2(std::uint64_t v)
{
	if (v == 0 || v > (std::uint64_t{1} << 63))
		throw std::out_of_range("next_pow2(" + std::to_string(v) + ") out of range");
	return std::bit_ceil(v);
}

std::uint64_t required_file_size(std::uint64_t ram_size)
{
	if (ram_size == 0 || ram_size % 4096 != 0)
		throw std::invalid_argument("RAM size " + std::to_string(ram_size) +
					    " must be a non-zero multiple of 4096");
	if (ram_size > (std::uint64_t{1} << 62))
		throw std::invalid_argument("RAM size " + std::to_string(ram_size) + " is too large");
	return next_pow2(ram_size + VPCI_CTRL_SIZE);
}

shm_file::shm_file(std::string path, std::uint64_t ram_size)
	: path_(std::move(path)), ram_size_(ram_size)
{
	const std::uint64_t need = required_file_size(ram_size);
	struct stat st;

	fd_.reset(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	if (!fd_)
		throw_errno("open(" + path_ + ")");
	// One backend per memory file, held for the fd's life: a second one
	// would rewrite the live control area under the first (and its VMs)
	// before finding its sockets busy.  Nothing is touched before this.
	if (::flock(fd_.get(), LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			throw std::runtime_error("memory file " + path_ +
						 " is in use by another vpci-backend "
						 "(it holds the file's exclusive flock)");
		throw_errno("flock(" + path_ + ")");
	}
	if (::fstat(fd_.get(), &st) < 0)
		throw_errno("fstat(" + path_ + ")");
	if (!S_ISREG(st.st_mode))
		throw std::runtime_error("memory file " + path_ + " is not a regular file");

	const auto cur = static_cast<std::uint64_t>(st.st_size);
	if (cur == 0) {
		if (need > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()) ||
		    ::ftruncate(fd_.get(), static_cast<off_t>(need)) < 0)
			throw_errno("ftruncate(" + path_ + ", " + std::to_string(need) + ")");
		file_size_ = need;
	} else {
		if (!std::has_single_bit(cur) || cur < need)
			throw std::runtime_error("memory file " + path_ + " is " +
						 std::to_string(cur) +
						 " bytes, need a power of two >= " +
						 std::to_string(need));
		file_size_ = cur;
	}
}

std::uint64_t shm_file::ctrl_offset() const noexcept
{
	return file_size_ - VPCI_CTRL_SIZE;
}

} // namespace vpci
