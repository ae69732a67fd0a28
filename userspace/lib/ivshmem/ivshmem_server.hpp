// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file ivshmem_server.hpp
 * Server side of QEMU's ivshmem-doorbell protocol (docs/specs/ivshmem-spec.rst)
 * for exactly one client, VM2's QEMU.
 *
 * The backend is peer 0.  On connect the client receives, each message one
 * little-endian int64 with at most one fd (SCM_RIGHTS):
 *   0 (protocol version); its id (1..65535); -1 + the memory file;
 *   num_vectors x (0 + eventfd): peer 0's vectors, VM2 rings them with
 *     Doorbell = 0 << 16 | vector (set_peer_vectors(); by default the
 *     backend's doorbell eventfds);
 *   id + eventfd: VM2's own MSI-X vector 0 (VPCI_VEC_CONFIG), raised by
 *     notify_vm2(0).
 * Later, while connected:
 *   id + fd: VM2's next own vector (add_own_vector(), strictly in vector
 *     order; QEMU counts messages, an own vector can never be replaced);
 *   0 without fd, then 0 + fd for every vector: peer 0's vectors re-wired
 *     (set_peer_vectors()).
 * The server keeps a dup of every fd it sent.  The doorbell eventfds live
 * as long as the server; VM2's vector fds as long as its connection.
 */
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "fd.hpp"
#include "log_limit.hpp"

namespace vpci {

class ivshmem_server {
public:
	/**
	 * Work per call, so that a client flooding its socket or a storm of
	 * connections cannot starve the caller's loop: bytes handle_client()
	 * reads and connections handle_listen() accepts at most.  The caller
	 * watches both fds level-triggered, so the rest wakes it again.
	 */
	static constexpr std::size_t read_budget = 64 * 1024;
	static constexpr unsigned accept_budget = 16;

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
	 * Accept pending connections (accept_budget at most).  The first
	 * becomes the client and gets the full setup sequence; while one is
	 * connected others are closed.
	 * @return true if a new client was set up.
	 */
	bool handle_listen();
	/**
	 * The client socket is readable or hung up: drop the client on EOF;
	 * bytes it sends (nothing is expected) are read and dropped,
	 * read_budget at most.
	 */
	void handle_client();

	/**
	 * Raise VM2's MSI-X @p vector (no-op without a client or before the
	 * vector was sent).  Throws std::out_of_range past num_vectors().
	 */
	void notify_vm2(unsigned vector);

	/** Own vectors the client has been given so far (0 without a client). */
	unsigned own_vectors_sent() const noexcept
	{
		return client_ ? static_cast<unsigned>(client_->vectors.size()) : 0;
	}
	/** Our dup of the fd sent as the client's own @p vector, -1 if none. */
	int own_vector_fd(unsigned vector) const noexcept;
	/**
	 * Send a dup of @p fd as the client's next own vector
	 * (own_vectors_sent()).  False without a client, when all vectors were
	 * sent, or if sending failed (the client is then dropped).
	 */
	bool add_own_vector(int fd);

	/**
	 * Set peer 0's vectors (index = vector, num_vectors() fds, dups kept).
	 * With a client connected: "peer 0 gone", then every vector again.
	 * Without one the set is used at the next connect.
	 */
	void set_peer_vectors(const std::vector<int> &fds);
	/** Our dup of the fd announced as peer 0's @p vector. */
	int peer_vector_fd(unsigned vector) const { return peer0_.at(vector).get(); }
	/**
	 * Announce a new peer to the connected client with @p fds as its
	 * vectors (num_vectors() of them, dups kept while the client stays).
	 * The id is fresh and never announced "gone": QEMU 7.2's ivshmem
	 * writes into a freed array when a gone peer id is added again.
	 * @return the peer's id, 0 without a client or when sending failed
	 */
	std::uint16_t add_peer(const std::vector<int> &fds);
	/** Our dup of peer @p id's @p vector (peer 0 or one from add_peer()), -1 if none. */
	int peer_fd(std::uint16_t id, unsigned vector) const noexcept;
	/** Peer 0's vectors for the next client, without telling the current one. */
	void set_peer_vectors_for_next_client(const std::vector<int> &fds);
	/** Times peer 0's vectors were re-announced to a connected client. */
	std::uint64_t peer_reannouncements() const noexcept { return reannounced_; }
	/** Incremented whenever a client connects or goes away. */
	std::uint64_t epoch() const noexcept { return epoch_; }

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
	std::vector<unique_fd> peer0_;
	/** Peer 0's vectors for the next client, when they differ from peer0_. */
	std::vector<unique_fd> next_peer0_;
	/** Peers announced with add_peer() to the current client. */
	std::map<std::uint16_t, std::vector<unique_fd>> peers_;
	std::uint64_t reannounced_ = 0;
	std::uint64_t epoch_ = 0;
	std::optional<client> client_;
	std::uint16_t next_id_ = 1;
	/** Second clients refused: a storm of them costs a few lines. */
	log_limit reject_log_;
	std::uint16_t take_id() noexcept;
};

} // namespace vpci
