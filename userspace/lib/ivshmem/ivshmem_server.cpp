// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "ivshmem_server.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <endian.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

namespace vpci {

ivshmem_server::ivshmem_server(const std::string &socket_path, int shm_fd, unsigned num_vectors)
	: num_vectors_(num_vectors)
{
	if (num_vectors == 0 || num_vectors > 65535)
		throw std::invalid_argument("ivshmem: bad number of vectors " +
					    std::to_string(num_vectors));
	shm_fd_.reset(::fcntl(shm_fd, F_DUPFD_CLOEXEC, 0));
	if (!shm_fd_)
		throw_errno("fcntl(F_DUPFD_CLOEXEC, shm fd)");
	for (unsigned v = 0; v < num_vectors; v++) {
		doorbells_.push_back(make_eventfd());
		peer0_.push_back(dup_fd(doorbells_.back().get(), "doorbell eventfd"));
	}
	// Listen last: a client may connect as soon as the path exists.
	listener_ = unix_listener(socket_path);
	spdlog::info("ivshmem: listening on {} ({} vectors)", socket_path, num_vectors);
}

void ivshmem_server::send_msg(int sock, std::int64_t value, int fd)
{
	const std::uint64_t le = htole64(static_cast<std::uint64_t>(value));
	send_with_fd(sock, &le, sizeof(le), fd, "ivshmem client, " + std::to_string(value));
}

std::uint16_t ivshmem_server::take_id() noexcept
{
	// Client ids and add_peer() ids come from one counter: never equal.
	const std::uint16_t id = next_id_;
	next_id_ = next_id_ == 65535 ? 1 : next_id_ + 1;
	return id;
}

void ivshmem_server::setup_client(unique_fd sock)
{
	client c{std::move(sock), take_id(), {}};
	peers_.clear();
	if (!next_peer0_.empty())
		peer0_ = std::move(next_peer0_);
	next_peer0_.clear();

	// Only own vector 0 (VPCI_VEC_CONFIG) now; the others follow in order
	// through add_own_vector() once their eventfds are known.
	c.vectors.push_back(make_eventfd());

	const int s = c.sock.get();
	send_msg(s, 0, -1); // protocol version
	send_msg(s, c.id, -1);
	send_msg(s, -1, shm_fd_.get());
	for (unsigned v = 0; v < num_vectors_; v++) // peer 0: the backend
		send_msg(s, 0, peer0_[v].get());
	send_msg(s, c.id, c.vectors[0].get());
	spdlog::info("ivshmem: client {} connected", c.id);
	client_ = std::move(c);
	epoch_++;
}

int ivshmem_server::own_vector_fd(unsigned vector) const noexcept
{
	if (!client_ || vector >= client_->vectors.size())
		return -1;
	return client_->vectors[vector].get();
}

bool ivshmem_server::add_own_vector(int fd)
{
	if (!client_ || client_->vectors.size() >= num_vectors_)
		return false;
	const auto v = client_->vectors.size();
	try {
		unique_fd d = dup_fd(fd, "own vector fd");
		send_msg(client_->sock.get(), client_->id, d.get());
		client_->vectors.push_back(std::move(d));
	} catch (const std::system_error &e) {
		spdlog::warn("ivshmem: sending own vector {} to client {} failed: {}", v,
			     client_->id, e.what());
		drop_client("dropped");
		return false;
	}
	spdlog::debug("ivshmem: client {} own vector {} sent", client_->id, v);
	return true;
}

void ivshmem_server::set_peer_vectors(const std::vector<int> &fds)
{
	if (fds.size() != num_vectors_)
		throw std::invalid_argument("ivshmem: set_peer_vectors: " +
					    std::to_string(fds.size()) + " fds for " +
					    std::to_string(num_vectors_) + " vectors");
	next_peer0_.clear();
	std::vector<unique_fd> next;
	for (int fd : fds)
		next.push_back(dup_fd(fd, "peer vector fd"));
	peer0_ = std::move(next);
	if (!client_)
		return;
	try {
		// QEMU: process_msg_disconnect() closes peer 0's eventfds, then
		// each connect message adds the next vector again.
		send_msg(client_->sock.get(), 0, -1);
		for (const unique_fd &fd : peer0_)
			send_msg(client_->sock.get(), 0, fd.get());
	} catch (const std::system_error &e) {
		spdlog::warn("ivshmem: re-announcing peer 0 to client {} failed: {}", client_->id,
			     e.what());
		drop_client("dropped");
		return;
	}
	reannounced_++;
	spdlog::info("ivshmem: peer 0's {} vectors re-announced to client {}", num_vectors_,
		     client_->id);
}

bool ivshmem_server::handle_listen()
{
	bool added = false;

	for (unsigned i = 0; i < accept_budget; i++) {
		auto sock = listener_.accept();
		if (!sock)
			break;
		if (client_) {
			reject_log_.warn("ivshmem: rejecting a second client while client {} is "
					 "connected",
					 client_->id);
			continue; // closed by unique_fd
		}
		try {
			setup_client(std::move(*sock));
			added = true;
		} catch (const std::system_error &e) {
			spdlog::warn("ivshmem: client setup failed: {}", e.what());
		}
	}
	return added;
}

void ivshmem_server::handle_client()
{
	char buf[256];

	if (!client_)
		return;
	for (std::size_t got = 0; got < read_budget;) {
		ssize_t n = ::recv(client_->sock.get(), buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			got += static_cast<std::size_t>(n);
			spdlog::debug("ivshmem: ignoring {} unexpected bytes from client {}", n,
				      client_->id);
			continue;
		}
		if (n == 0)
			return drop_client("disconnected");
		if (errno == EAGAIN || errno == EINTR)
			return;
		return drop_client(std::strerror(errno));
	}
}

std::uint16_t ivshmem_server::add_peer(const std::vector<int> &fds)
{
	if (fds.size() != num_vectors_)
		throw std::invalid_argument("ivshmem: add_peer: " + std::to_string(fds.size()) +
					    " fds for " + std::to_string(num_vectors_) + " vectors");
	if (!client_)
		return 0;
	std::vector<unique_fd> dups;
	for (int fd : fds)
		dups.push_back(dup_fd(fd, "peer vector fd"));
	const std::uint16_t id = take_id();
	try {
		for (const unique_fd &fd : dups)
			send_msg(client_->sock.get(), id, fd.get());
	} catch (const std::system_error &e) {
		spdlog::warn("ivshmem: announcing peer {} to client {} failed: {}", id, client_->id,
			     e.what());
		drop_client("dropped");
		return 0;
	}
	peers_[id] = std::move(dups);
	spdlog::info("ivshmem: peer {} ({} vectors) announced to client {}", id, num_vectors_,
		     client_->id);
	return id;
}

int ivshmem_server::peer_fd(std::uint16_t id, unsigned vector) const noexcept
{
	if (id == 0)
		return vector < peer0_.size() ? peer0_[vector].get() : -1;
	auto it = peers_.find(id);
	if (it == peers_.end() || vector >= it->second.size())
		return -1;
	return it->second[vector].get();
}

void ivshmem_server::set_peer_vectors_for_next_client(const std::vector<int> &fds)
{
	if (fds.size() != num_vectors_)
		throw std::invalid_argument("ivshmem: peer 0: " + std::to_string(fds.size()) +
					    " fds for " + std::to_string(num_vectors_) + " vectors");
	std::vector<unique_fd> next;
	for (int fd : fds)
		next.push_back(dup_fd(fd, "peer vector fd"));
	// peer0_ stays what the connected client was told.
	if (client_)
		next_peer0_ = std::move(next);
	else
		peer0_ = std::move(next);
}

void ivshmem_server::drop_client(const char *why)
{
	spdlog::info("ivshmem: client {} {}", client_->id, why);
	client_.reset();
	peers_.clear();
	epoch_++;
}

void ivshmem_server::notify_vm2(unsigned vector)
{
	if (!client_) {
		spdlog::debug("ivshmem: no client, vector {} not raised", vector);
		return;
	}
	if (vector >= num_vectors_)
		throw std::out_of_range("ivshmem: vector " + std::to_string(vector) +
					" >= " + std::to_string(num_vectors_));
	if (vector >= client_->vectors.size()) {
		spdlog::debug("ivshmem: vector {} not sent to client {} yet, not raised", vector,
			      client_->id);
		return;
	}
	eventfd_signal(client_->vectors[vector].get());
}

} // namespace vpci
