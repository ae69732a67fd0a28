// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file ivshmem_server.hpp
 * Server side of QEMU's ivshmem-doorbell protocol (docs/specs/ivshmem-spec.rst)
 * for exactly one client, VM2's QEMU.
 *
 * The backend is peer 0.  On connect the client receives, each message one
 * little-endian int64 with at most one fd (SCM_RIGHTS):
 *   0 (protocol version); its id (1..65535); -1 + the memory file;
 *   num_vectors x (0 + doorbell eventfd): the backend's vectors, VM2 rings
 *     them with Doorbell = 0 << 16 | vector;
 *   num_vectors x (id + eventfd): VM2's own MSI-X vectors, raised by
 *     notify_vm2().
 * The doorbell eventfds live as long as the server; VM2's vector eventfds
 * as long as its connection.
 */
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fd.hpp"

namespace vpci {

class ivshmem_server {
public:
	/** Listen on @p socket_path; serve @p shm_fd (duplicated) to clients. */
	ivshmem_server(const std::string &socket_path, int shm_fd, unsigned num_vectors);

	/** Listening socket, for epoll (EPOLLIN: call handle_listen()). */
	int listen_fd() const noexcept { return listener_.fd(); }
	/** Connected client socket or -1 (EPOLLIN/HUP: call handle_client()). */
	int client_fd() const noexcept { return client_ ? client_->sock.get() : -1; }
	/** The backend's doorbell eventfds, index = vector. */
	int doorbell_fd(unsigned vector) const { return doorbells_.at(vector).get(); }
	unsigned num_vectors() const noexcept { return num_vectors_; }
	const std::string &socket_path() const noexcept { return listener_.path(); }

	bool client_connected() const noexcept { return client_.has_value(); }
	/** Id of the connected client, 0 if none. */
	std::uint16_t client_id() const noexcept { return client_ ? client_->id : 0; }

	/**
	 * Accept pending connections.  The first becomes the client and gets
	 * the full setup sequence; while one is connected others are closed.
	 * @return true if a new client was set up.
	 */
	bool handle_listen();
	/** The client socket is readable or hung up: drop the client on EOF. */
	void handle_client();

	/** Raise VM2's MSI-X @p vector (no-op without a client). */
	void notify_vm2(unsigned vector);

private:
	struct client {
		unique_fd sock;
		std::uint16_t id;
		std::vector<unique_fd> vectors;
	};

	void setup_client(unique_fd sock);
	void drop_client(const char *why);
	static void send_msg(int sock, std::int64_t value, int fd);

	unix_listener listener_;
	unique_fd shm_fd_;
	unsigned num_vectors_;
	std::vector<unique_fd> doorbells_;
	std::optional<client> client_;
	std::uint16_t next_id_ = 1;
};

} // namespace vpci
