// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file device_server.hpp
 * The backend's side of the vhost-pci QEMU device's chardev protocol
 * (qemu/vhost-pci-protocol.h, qemu/README.md), for exactly one client: VM2's
 * QEMU.  Same role as ivshmem_server, but BAR2 shows only the windows the
 * backend maps, and vectors and doorbells can be replaced at any time.
 *
 * On connect the client gets HELLO + the memory file, then SET_DOORBELL and
 * SET_VECTOR for every vector, then a MAP for every desired window.  Later:
 * set_vector()/set_doorbell() send the new eventfd at once;
 * sync_windows() sends the UNMAPs and MAPs that turn what the device has into
 * what is desired and returns the sequence number to wait for: done(seq) is
 * true once the device answered it and everything sent before it.  When the
 * client goes away every request counts as done: QEMU drops all windows of a
 * connection that closes, and a dead QEMU shows none.
 */
#pragma once

#include <cstdint>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fd.hpp"
#include "log_limit.hpp"

namespace vpci {

/** A range of the memory file and the device's access to it (VPCI_PERM_*). */
struct file_window {
	std::uint64_t offset = 0, size = 0;
	std::uint8_t perm = 0;
	bool operator==(const file_window &) const = default;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(file_window, offset, size, perm)

/**
 * Disjoint, sorted, page-aligned windows covering @p ranges (each widened to
 * whole 4 KiB pages); where ranges overlap the permissions are OR-ed;
 * touching pieces of equal permission are merged.  Empty ranges and perm 0
 * are ignored.
 */
std::vector<file_window> normalize_windows(const std::vector<file_window> &ranges);

/** The requests that turn @p have into @p want (both normalized). */
struct window_ops {
	std::vector<file_window> unmap, map; // unmaps first
};
window_ops diff_windows(const std::vector<file_window> &have,
			const std::vector<file_window> &want);

struct device_server_stats {
	std::uint64_t maps = 0, unmaps = 0, errors = 0, connects = 0;
	/** Microseconds from sending to the reply, last and worst. */
	std::uint64_t last_map_us = 0, last_unmap_us = 0, max_unmap_us = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(device_server_stats, maps, unmaps, errors, connects,
				   last_map_us, last_unmap_us, max_unmap_us)

class device_server {
public:
	/**
	 * Work per call, as ivshmem_server: bytes handle_client() reads and
	 * connections handle_listen() accepts at most; the caller watches both
	 * fds level-triggered, so the rest wakes it again.
	 */
	static constexpr std::size_t read_budget = 64 * 1024;
	static constexpr unsigned accept_budget = 16;

	/**
	 * Listen on @p socket_path; serve the memory file @p mem_fd (dup'ed)
	 * of @p file_size bytes with the control area at @p ctrl_offset.
	 */
	device_server(const std::string &socket_path, int mem_fd, std::uint64_t file_size,
		      std::uint64_t ctrl_offset, unsigned num_vectors);

	int listen_fd() const noexcept { return listener_.fd(); }
	int client_fd() const noexcept { return client_ ? client_->sock.get() : -1; }
	bool client_connected() const noexcept { return client_.has_value(); }
	/** READY received on the current connection. */
	bool ready() const noexcept { return client_ && client_->ready; }
	unsigned num_vectors() const noexcept { return num_vectors_; }
	const std::string &socket_path() const noexcept { return listener_.path(); }
	/** Incremented whenever a client connects or goes away. */
	std::uint64_t epoch() const noexcept { return epoch_; }
	/** The device's window limit from READY (0 before). */
	std::uint64_t max_windows() const noexcept { return max_windows_; }

	/** Accept pending connections (one client; others closed), accept_budget at most. */
	bool handle_listen();
	/** The client socket is readable or hung up: replies (read_budget bytes at most), EOF. */
	void handle_client();

	/** The backend's own doorbell eventfd of @p vector (always watched). */
	int doorbell_fd(unsigned vector) const { return doorbells_.at(vector).get(); }
	/**
	 * Doorbell @p vector signals @p fd (dup kept); -1: the backend's own
	 * doorbell eventfd again.  Sent at once when connected.
	 */
	void set_doorbell(unsigned vector, int fd);
	/** What doorbell @p vector signals now (our dup). */
	int doorbell_target(unsigned vector) const;
	/**
	 * A write on @p fd raises VM2's vector (dup kept); -1: the backend's
	 * own eventfd for it again.  Sent at once when connected.
	 */
	void set_vector(unsigned vector, int fd);
	/** What raises @p vector now (our dup or the backend's eventfd). */
	int vector_source(unsigned vector) const;
	/** Raise VM2's @p vector (writes its current eventfd). */
	void notify_vm2(unsigned vector);

	/**
	 * Make the device's windows @p want (any ranges; normalized here).
	 * Remembered for the next connection.  @return the seq of the last
	 * request sent, 0 if nothing had to be sent (or no client).
	 */
	std::uint32_t sync_windows(const std::vector<file_window> &want);
	/** Everything up to @p seq was answered (or its connection is gone). */
	bool done(std::uint32_t seq) const noexcept;
	/** Requests sent and not answered yet. */
	std::size_t outstanding() const noexcept { return outstanding_.size(); }
	const std::vector<file_window> &windows() const noexcept { return want_; }
	const device_server_stats &stats() const noexcept { return stats_; }

private:
	struct client {
		unique_fd sock;
		bool ready = false;
		std::string rx;
	};
	struct request {
		std::uint32_t type;
		std::uint64_t sent_ns;
	};

	void setup_client(unique_fd sock);
	void drop_client(const std::string &why);
	std::uint32_t send(std::uint32_t type, std::uint32_t arg, std::uint64_t offset,
			   std::uint64_t size, std::uint32_t aux, int fd);
	void on_reply(const unsigned char *raw);
	std::uint32_t apply(const window_ops &ops);

	unix_listener listener_;
	unique_fd mem_fd_;
	std::uint64_t file_size_, ctrl_offset_;
	unsigned num_vectors_;
	std::vector<unique_fd> own_vectors_, doorbells_;
	std::vector<unique_fd> vector_override_, doorbell_override_;
	std::vector<file_window> want_, have_;
	std::optional<client> client_;
	std::uint32_t next_seq_ = 1;
	std::map<std::uint32_t, request> outstanding_;
	std::uint64_t epoch_ = 0;
	std::uint64_t max_windows_ = 0;
	device_server_stats stats_;
	/** What a peer can cause (second clients, unexpected messages): a few lines a burst. */
	log_limit peer_log_;
};

} // namespace vpci
