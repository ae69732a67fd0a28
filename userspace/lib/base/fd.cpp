// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "fd.hpp"

#include <cerrno>
#include <cstring>
#include <system_error>

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <linux/kcmp.h>
#include <unistd.h>

namespace vpci {

void throw_errno(const std::string &what)
{
	throw std::system_error(errno, std::generic_category(), what);
}

void unique_fd::reset(int fd) noexcept
{
	if (fd_ >= 0)
		::close(fd_);
	fd_ = fd;
}

mmap_area &mmap_area::operator=(mmap_area &&o) noexcept
{
	if (this != &o) {
		if (addr_)
			::munmap(addr_, len_);
		addr_ = std::exchange(o.addr_, nullptr);
		len_ = std::exchange(o.len_, 0);
	}
	return *this;
}

mmap_area::~mmap_area()
{
	if (addr_)
		::munmap(addr_, len_);
}

mmap_area mmap_area::map_shared(int fd, std::size_t len, std::uint64_t offset, bool writable)
{
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	void *p = ::mmap(nullptr, len, prot, MAP_SHARED, fd, static_cast<off_t>(offset));
	if (p == MAP_FAILED)
		throw_errno("mmap(fd " + std::to_string(fd) + ", len " + std::to_string(len) +
			    ", offset " + std::to_string(offset) + ")");
	mmap_area a;
	a.addr_ = p;
	a.len_ = len;
	return a;
}

mmap_area mmap_area::reserve(std::size_t len)
{
	void *p = ::mmap(nullptr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
			 0);
	if (p == MAP_FAILED)
		throw_errno("mmap(reserve " + std::to_string(len) + " bytes)");
	mmap_area a;
	a.addr_ = p;
	a.len_ = len;
	return a;
}

void mmap_area::map_fixed_shared(std::size_t at, int fd, std::size_t len, std::uint64_t offset,
				 bool writable)
{
	if (at > len_ || len > len_ - at) {
		errno = EINVAL;
		throw_errno("mmap(MAP_FIXED at " + std::to_string(at) + ", len " +
			    std::to_string(len) + ": outside the reserved " + std::to_string(len_) +
			    " bytes)");
	}
	int prot = PROT_READ | (writable ? PROT_WRITE : 0);
	void *want = static_cast<std::uint8_t *>(addr_) + at;
	void *p = ::mmap(want, len, prot, MAP_SHARED | MAP_FIXED, fd, static_cast<off_t>(offset));
	if (p == MAP_FAILED)
		throw_errno("mmap(fd " + std::to_string(fd) + ", len " + std::to_string(len) +
			    ", offset " + std::to_string(offset) + ", MAP_FIXED)");
}

unique_fd make_eventfd()
{
	int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		throw_errno("eventfd()");
	return unique_fd(fd);
}

void eventfd_signal(int fd)
{
	std::uint64_t one = 1;
	if (::write(fd, &one, sizeof(one)) != sizeof(one))
		throw_errno("write(eventfd " + std::to_string(fd) + ")");
}

std::optional<std::uint64_t> eventfd_consume(int fd)
{
	// O_NONBLOCK is a flag of the open file, shared by every copy of the
	// fd passed over a socket, and QEMU clears it on each fd it receives
	// (tcp_chr_recv()).  An eventfd VM1 or VM2's QEMU was given is then
	// blocking for us too, and a read that finds it empty (another holder
	// read first, or poll() did not report it) would wait for the next
	// signal: set the flag again.  Every holder of these eventfds reads
	// them only when they are readable, as QEMU's EventNotifiers do.
	const int fl = ::fcntl(fd, F_GETFL);
	if (fl < 0)
		throw_errno("fcntl(eventfd " + std::to_string(fd) + ", F_GETFL)");
	if (!(fl & O_NONBLOCK) && ::fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		throw_errno("fcntl(eventfd " + std::to_string(fd) + ", F_SETFL, O_NONBLOCK)");
	std::uint64_t v;
	if (::read(fd, &v, sizeof(v)) != sizeof(v)) {
		if (errno == EAGAIN)
			return std::nullopt;
		throw_errno("read(eventfd " + std::to_string(fd) + ")");
	}
	return v;
}

unique_fd dup_fd(int fd, const std::string &what)
{
	unique_fd r(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
	if (!r)
		throw_errno("fcntl(F_DUPFD_CLOEXEC, " + what + ")");
	return r;
}

bool same_file(int a, int b) noexcept
{
	if (a < 0 || b < 0)
		return false;
	const long pid = ::getpid();
	return ::syscall(SYS_kcmp, pid, pid, KCMP_FILE, a, b) == 0;
}

unique_fd make_epoll()
{
	int fd = ::epoll_create1(EPOLL_CLOEXEC);
	if (fd < 0)
		throw_errno("epoll_create1()");
	return unique_fd(fd);
}

void epoll_add(int epfd, int fd, std::uint32_t events, std::uint64_t data)
{
	epoll_event ev{};
	ev.events = events;
	ev.data.u64 = data;
	if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		throw_errno("epoll_ctl(ADD, fd " + std::to_string(fd) + ")");
}

void epoll_del(int epfd, int fd) noexcept
{
	::epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nullptr);
}

static sockaddr_un make_addr(const std::string &path)
{
	sockaddr_un sa{};
	sa.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(sa.sun_path))
		throw std::system_error(ENAMETOOLONG, std::generic_category(),
					"socket path '" + path + "' is empty or longer than " +
						std::to_string(sizeof(sa.sun_path) - 1) + " bytes");
	std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
	return sa;
}

static unique_fd make_stream_socket(bool nonblock)
{
	int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0)
		throw_errno("socket(AF_UNIX, SOCK_STREAM)");
	return unique_fd(fd);
}

unique_fd unix_connect(const std::string &path, bool nonblock)
{
	sockaddr_un sa = make_addr(path);
	unique_fd s = make_stream_socket(nonblock);
	if (::connect(s.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0)
		throw_errno("connect(" + path + ")");
	return s;
}

unix_listener::unix_listener(std::string path, int backlog) : path_(std::move(path))
{
	sockaddr_un sa = make_addr(path_);
	struct stat st;

	if (::lstat(path_.c_str(), &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			throw std::system_error(EEXIST, std::generic_category(),
						"socket path " + path_ + " exists and is not a socket");
		unique_fd probe = make_stream_socket(false);
		if (::connect(probe.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0)
			throw std::system_error(EADDRINUSE, std::generic_category(),
						"socket path busy: another server listens on " + path_);
		if (errno != ECONNREFUSED)
			throw_errno("connect(" + path_ + ") probing existing socket");
		if (::unlink(path_.c_str()) < 0 && errno != ENOENT)
			throw_errno("unlink(" + path_ + ") of stale socket");
	} else if (errno != ENOENT) {
		throw_errno("lstat(" + path_ + ")");
	}

	unique_fd s = make_stream_socket(true);
	if (::bind(s.get(), reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) < 0)
		throw_errno("bind(" + path_ + ")");
	if (::lstat(path_.c_str(), &st) == 0) {
		dev_ = st.st_dev;
		ino_ = st.st_ino;
	}
	fd_ = std::move(s);
	if (::listen(fd_.get(), backlog) < 0) {
		int e = errno;
		unlink_own();
		fd_.reset();
		throw std::system_error(e, std::generic_category(), "listen(" + path_ + ")");
	}
}

unix_listener &unix_listener::operator=(unix_listener &&o) noexcept
{
	if (this != &o) {
		unlink_own();
		fd_ = std::move(o.fd_);
		path_ = std::move(o.path_);
		dev_ = o.dev_;
		ino_ = o.ino_;
	}
	return *this;
}

unix_listener::~unix_listener()
{
	unlink_own();
}

void unix_listener::unlink_own() noexcept
{
	struct stat st;

	if (!fd_ || path_.empty())
		return;
	if (::lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == dev_ &&
	    st.st_ino == ino_)
		::unlink(path_.c_str());
}

std::optional<unique_fd> unix_listener::accept()
{
	int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
			return std::nullopt;
		throw_errno("accept4(" + path_ + ")");
	}
	return unique_fd(fd);
}

void send_with_fd(int sock, const void *buf, std::size_t len, int fd, const std::string &what)
{
	iovec iov{const_cast<void *>(buf), len};
	alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))] = {};
	msghdr msg{};

	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (fd >= 0) {
		msg.msg_control = cbuf;
		msg.msg_controllen = sizeof(cbuf);
		cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	const ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
	if (n != static_cast<ssize_t>(len)) {
		if (n >= 0)
			errno = EAGAIN; // short write on a stream socket: buffer full
		throw_errno("sendmsg(" + what + ")");
	}
}

} // namespace vpci
