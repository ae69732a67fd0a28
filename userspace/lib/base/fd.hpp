// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file fd.hpp
 * RAII owners for file descriptors and mappings, and the syscall wrappers
 * that create them.  Every failing syscall throws
 * std::system_error(errno, std::generic_category(), "syscall(details)").
 */
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

namespace vpci {

/** Throw std::system_error for the current errno, naming @p what. */
[[noreturn]] void throw_errno(const std::string &what);

/** Move-only owner of one file descriptor; closes it on destruction. */
class unique_fd {
public:
	unique_fd() noexcept = default;
	explicit unique_fd(int fd) noexcept : fd_(fd) {}
	unique_fd(unique_fd &&o) noexcept : fd_(o.release()) {}
	unique_fd &operator=(unique_fd &&o) noexcept
	{
		if (this != &o)
			reset(o.release());
		return *this;
	}
	unique_fd(const unique_fd &) = delete;
	unique_fd &operator=(const unique_fd &) = delete;
	~unique_fd() { reset(); }

	int get() const noexcept { return fd_; }
	explicit operator bool() const noexcept { return fd_ >= 0; }
	/** Give up ownership without closing. */
	int release() noexcept { return std::exchange(fd_, -1); }
	/** Close the current descriptor (if any) and own @p fd instead. */
	void reset(int fd = -1) noexcept;

private:
	int fd_ = -1;
};

/** Move-only owner of one mmap()ed range; munmap()s it on destruction. */
class mmap_area {
public:
	mmap_area() noexcept = default;
	mmap_area(mmap_area &&o) noexcept
		: addr_(std::exchange(o.addr_, nullptr)), len_(std::exchange(o.len_, 0)) {}
	mmap_area &operator=(mmap_area &&o) noexcept;
	mmap_area(const mmap_area &) = delete;
	mmap_area &operator=(const mmap_area &) = delete;
	~mmap_area();

	/** mmap(MAP_SHARED) @p len bytes of @p fd at @p offset (page aligned). */
	static mmap_area map_shared(int fd, std::size_t len, std::uint64_t offset,
				    bool writable);
	/** Reserve @p len bytes of address space: PROT_NONE, nothing behind it. */
	static mmap_area reserve(std::size_t len);
	/**
	 * mmap(MAP_SHARED | MAP_FIXED) @p len bytes of @p fd at file offset
	 * @p offset over bytes [@p at, @p at + @p len) of this area (all page
	 * aligned, inside the area); unmapped with the area.
	 */
	void map_fixed_shared(std::size_t at, int fd, std::size_t len, std::uint64_t offset,
			      bool writable);

	void *data() const noexcept { return addr_; }
	std::size_t size() const noexcept { return len_; }

private:
	void *addr_ = nullptr;
	std::size_t len_ = 0;
};

/** eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK). */
unique_fd make_eventfd();
/** Add 1 to an eventfd counter. */
void eventfd_signal(int fd);
/**
 * Read and reset an eventfd counter; nullopt if it was zero (EAGAIN).  Never
 * blocks: O_NONBLOCK is set again if another holder of the open file (QEMU,
 * on every fd it receives) cleared it.
 */
std::optional<std::uint64_t> eventfd_consume(int fd);

/** fcntl(F_DUPFD_CLOEXEC): a second descriptor for the open file @p fd. */
unique_fd dup_fd(int fd, const std::string &what);
/**
 * True if @p a and @p b refer to the same open file description
 * (kcmp(KCMP_FILE)).  False if they differ, if either is -1, or if kcmp is
 * not available: callers must treat "unknown" as "different".
 */
bool same_file(int a, int b) noexcept;

/** epoll_create1(EPOLL_CLOEXEC). */
unique_fd make_epoll();
/** epoll_ctl(EPOLL_CTL_ADD) with @p events and user data @p data. */
void epoll_add(int epfd, int fd, std::uint32_t events, std::uint64_t data);
/** epoll_ctl(EPOLL_CTL_DEL); ignores ENOENT/EBADF. */
void epoll_del(int epfd, int fd) noexcept;

/** Non-blocking, close-on-exec connected UNIX stream socket to @p path. */
unique_fd unix_connect(const std::string &path, bool nonblock = false);

/**
 * Send @p len bytes in one sendmsg() on the stream socket @p sock, with
 * @p fd attached (SCM_RIGHTS) when >= 0.  Throws naming sendmsg() and
 * @p what; a short write (socket buffer full) is EAGAIN.
 */
void send_with_fd(int sock, const void *buf, std::size_t len, int fd, const std::string &what);

/**
 * A listening UNIX stream socket that unlinks its path on destruction
 * (only if the path still names the socket it bound).
 *
 * Binding refuses to steal a live socket: if @p path exists and accepts a
 * connection, "socket path busy: another server listens on P" is thrown; a
 * stale socket (ECONNREFUSED) is unlinked and replaced; anything that is
 * not a socket is an error.
 */
class unix_listener {
public:
	unix_listener() = default;
	explicit unix_listener(std::string path, int backlog = 8);
	unix_listener(unix_listener &&) noexcept = default;
	unix_listener &operator=(unix_listener &&o) noexcept;
	~unix_listener();

	int fd() const noexcept { return fd_.get(); }
	const std::string &path() const noexcept { return path_; }
	/** accept4(CLOEXEC|NONBLOCK); nullopt when no connection is pending. */
	std::optional<unique_fd> accept();

private:
	void unlink_own() noexcept;

	unique_fd fd_;
	std::string path_;
	std::uint64_t dev_ = 0, ino_ = 0;
};

} // namespace vpci
