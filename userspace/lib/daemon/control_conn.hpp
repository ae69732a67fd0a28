// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file control_conn.hpp
 * The backend daemon's control socket, one client at a time: request bytes
 * put together into lines, each line answered with one JSON reply line,
 * a bounded share of work per call.  The protocol is described in
 * backend.hpp; the daemon owns the listener and the epoll loop, the
 * fuzzer (userspace/fuzz/fuzz_control.cpp) drives this without them.
 */
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "fd.hpp"

namespace vpci {

/** What control requests read and change: the daemon. */
class control_target {
public:
	virtual nlohmann::json status() const = 0;
	/** Set the link, bump the generation and raise VM2's config vector. */
	virtual void set_link(bool up) = 0;

protected:
	~control_target() = default;
};

/** {"ok":false,"error":@p msg}, serialised. */
std::string control_error(const std::string &msg);

/**
 * Handle one control request line, return the reply (no newline).  Bad
 * requests get an error reply; exceptions from @p t propagate.
 */
std::string control_request(const std::string &line, control_target &t);

/** One control client: its socket and the request bytes not yet answered. */
class control_conn {
public:
	/** Longest request line accepted before the client is dropped. */
	static constexpr std::size_t max_line = 64 * 1024;
	/** Bytes one recv() asks for: the buffer exceeds max_line by less. */
	static constexpr std::size_t read_chunk = 4096;
	/**
	 * Work one serve() does: bytes read and requests answered.  A client
	 * streaming requests waits its turn; the rest of the daemon's loop
	 * (VM1's socket, VM2's doorbells, other clients) runs in between.
	 */
	static constexpr std::size_t read_budget = 64 * 1024;
	static constexpr unsigned line_budget = 32;

	/** What serve() left behind. */
	enum class state {
		idle, /**< wait for the socket to be readable */
		more, /**< whole requests are waiting: serve again soon */
		closed, /**< EOF, an error or a line too long: drop the client */
	};

	explicit control_conn(unique_fd fd) noexcept : fd_(std::move(fd)) {}

	/** Read what the socket has and answer whole requests, a bounded share. */
	state serve(control_target &t);
	int fd() const noexcept { return fd_.get(); }
	/** Request bytes read but not yet answered. */
	std::size_t buffered() const noexcept { return in_.size(); }

private:
	bool reply(control_target &t, const std::string &line);

	unique_fd fd_;
	std::string in_;
};

} // namespace vpci
