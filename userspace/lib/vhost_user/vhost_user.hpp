// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file vhost_user.hpp
 * The vhost-user protocol as the back-end sees it (QEMU
 * docs/interop/vhost-user.rst, QEMU 7.2 names where the back-end channel is
 * still the "slave" channel): message types, a validating parser and a
 * connection over a UNIX stream socket with SCM_RIGHTS.
 *
 * Wire format: a 12-byte header {u32 request, u32 flags, u32 size} followed
 * by @c size payload bytes, host byte order.  Flags: bits 0-1 version (1),
 * bit 2 reply, bit 3 need_reply.  At most 8 fds ride with the header.
 */
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "fd.hpp"

namespace vpci::vu {

/** Front-end -> back-end requests (main socket). */
enum class request : std::uint32_t {
	none = 0,
	get_features = 1,
	set_features = 2,
	set_owner = 3,
	reset_owner = 4,
	set_mem_table = 5,
	set_log_base = 6,
	set_log_fd = 7,
	set_vring_num = 8,
	set_vring_addr = 9,
	set_vring_base = 10,
	get_vring_base = 11,
	set_vring_kick = 12,
	set_vring_call = 13,
	set_vring_err = 14,
	get_protocol_features = 15,
	set_protocol_features = 16,
	get_queue_num = 17,
	set_vring_enable = 18,
	send_rarp = 19,
	net_set_mtu = 20,
	set_slave_req_fd = 21,
	iotlb_msg = 22,
	set_vring_endian = 23,
	get_config = 24,
	set_config = 25,
	// 26..40 exist in the spec; none is offered, all are "unknown" here.
};

/** Back-end -> front-end requests (the slave channel). */
enum class slave_request : std::uint32_t {
	iotlb_msg = 1, // VHOST_USER_SLAVE_IOTLB_MSG
};

constexpr std::uint32_t version = 0x1;
constexpr std::uint32_t flag_version_mask = 0x3;
constexpr std::uint32_t flag_reply = 1u << 2;
constexpr std::uint32_t flag_need_reply = 1u << 3;
constexpr std::size_t header_size = 12;
constexpr std::size_t max_fds = 8;
constexpr std::size_t max_mem_regions = 8;
/** Largest payload accepted; anything bigger is a framing error. */
constexpr std::size_t max_payload = 4096;

/** VHOST_USER_F_PROTOCOL_FEATURES: virtio feature bit 30. */
constexpr std::uint64_t f_protocol_features = 1ULL << 30;

/** VHOST_USER_PROTOCOL_F_* bit numbers. */
namespace pf {
constexpr unsigned mq = 0;
constexpr unsigned log_shmfd = 1;
constexpr unsigned rarp = 2;
constexpr unsigned reply_ack = 3;
constexpr unsigned mtu = 4;
constexpr unsigned slave_req = 5; // BACKEND_REQ in later spec versions
constexpr unsigned config = 9;
constexpr unsigned configure_mem_slots = 15;
} // namespace pf

/**
 * VHOST_IOTLB_* message types and VHOST_ACCESS_* of <linux/vhost_types.h>
 * (that header pulls in <linux/virtio_ring.h>, which is not C++-clean).
 */
constexpr std::uint8_t iotlb_miss = 1;
constexpr std::uint8_t iotlb_update = 2;
constexpr std::uint8_t iotlb_invalidate = 3;

/** Index bits and the "no fd" flag of SET_VRING_KICK/CALL/ERR's u64. */
constexpr std::uint64_t vring_idx_mask = 0xff;
constexpr std::uint64_t vring_nofd_mask = 1u << 8;

// Payload layouts, exactly as on the wire.
struct u64_payload {
	std::uint64_t u64;
};
struct vring_state {
	std::uint32_t index;
	std::uint32_t num;
};
struct vring_addr {
	std::uint32_t index;
	std::uint32_t flags;
	std::uint64_t desc_user_addr;
	std::uint64_t used_user_addr;
	std::uint64_t avail_user_addr;
	std::uint64_t log_guest_addr;
};
struct mem_region {
	std::uint64_t guest_phys_addr;
	std::uint64_t memory_size;
	std::uint64_t userspace_addr;
	std::uint64_t mmap_offset;
};
struct memory {
	std::uint32_t nregions;
	std::uint32_t padding;
	mem_region regions[max_mem_regions];
};
/** struct vhost_iotlb_msg, padded to 32 bytes as QEMU sends it. */
struct iotlb_msg {
	std::uint64_t iova;
	std::uint64_t size;
	std::uint64_t uaddr;
	std::uint8_t perm;
	std::uint8_t type;
	std::uint8_t pad[6];
};
struct log_payload {
	std::uint64_t mmap_size;
	std::uint64_t mmap_offset;
};
static_assert(sizeof(vring_state) == 8);
static_assert(sizeof(vring_addr) == 40);
static_assert(sizeof(mem_region) == 32);
static_assert(sizeof(memory) == 8 + 32 * max_mem_regions);
static_assert(sizeof(iotlb_msg) == 32);
static_assert(sizeof(log_payload) == 16);

// One type per message (spec names).  Messages with the same layout share a
// payload struct but are distinct types, so a handler cannot confuse them.
template <request R, typename P> struct msg {
	static constexpr request id = R;
	P p;
};
template <request R> struct empty_msg {
	static constexpr request id = R;
};
using get_features = empty_msg<request::get_features>;
using set_features = msg<request::set_features, u64_payload>;
using set_owner = empty_msg<request::set_owner>;
using reset_owner = empty_msg<request::reset_owner>;
/** Regions past nregions are zero; fds[i] belongs to regions[i]. */
using set_mem_table = msg<request::set_mem_table, memory>;
using set_log_base = msg<request::set_log_base, log_payload>;
using set_log_fd = empty_msg<request::set_log_fd>;
using set_vring_num = msg<request::set_vring_num, vring_state>;
using set_vring_addr = msg<request::set_vring_addr, vring_addr>;
using set_vring_base = msg<request::set_vring_base, vring_state>;
using get_vring_base = msg<request::get_vring_base, vring_state>;
using set_vring_kick = msg<request::set_vring_kick, u64_payload>;
using set_vring_call = msg<request::set_vring_call, u64_payload>;
using set_vring_err = msg<request::set_vring_err, u64_payload>;
using get_protocol_features = empty_msg<request::get_protocol_features>;
using set_protocol_features = msg<request::set_protocol_features, u64_payload>;
using get_queue_num = empty_msg<request::get_queue_num>;
using set_vring_enable = msg<request::set_vring_enable, vring_state>;
using set_slave_req_fd = empty_msg<request::set_slave_req_fd>;
using iotlb = msg<request::iotlb_msg, iotlb_msg>;

using message_body =
	std::variant<get_features, set_features, set_owner, reset_owner, set_mem_table,
		     set_log_base, set_log_fd, set_vring_num, set_vring_addr, set_vring_base,
		     get_vring_base, set_vring_kick, set_vring_call, set_vring_err,
		     get_protocol_features, set_protocol_features, get_queue_num,
		     set_vring_enable, set_slave_req_fd, iotlb>;

/** A validated message with the fds that came with it. */
struct message {
	std::uint32_t flags = version;
	message_body body;
	std::vector<unique_fd> fds;

	request req() const;
	bool need_reply() const noexcept { return flags & flag_need_reply; }
	std::string to_string() const;
};

/** Spec name of a request ("VHOST_USER_GET_FEATURES"), or "UNKNOWN(n)". */
std::string request_name(std::uint32_t req);

/** Why a message was not accepted. */
struct parse_error {
	/** The stream cannot be trusted any more: close the connection. */
	bool fatal;
	std::uint32_t request;
	std::uint32_t flags;
	std::string reason;
};

/**
 * Validate and decode one message: version 1, no reply flag, known
 * request, exact payload size for the request type, fd count.  Takes
 * ownership of @p fds either way (closed on error).
 */
std::variant<message, parse_error> parse(std::uint32_t req, std::uint32_t flags,
					 const std::vector<std::uint8_t> &payload,
					 std::vector<unique_fd> fds);

/**
 * One end of a vhost-user stream (the main socket or the slave channel).
 * Receives with recvmsg + SCM_RIGHTS (at most max_fds; a message that
 * carried more is rejected after its extra fds are closed).
 */
class connection {
public:
	explicit connection(unique_fd sock) : sock_(std::move(sock)) {}
	connection(const connection &) = delete;
	connection &operator=(const connection &) = delete;

	int fd() const noexcept { return sock_.get(); }

	/** Result of recv(): a message, an error, EOF (peer closed), or not yet. */
	struct eof {};
	/** The socket had no (complete) message: wait until it is readable again. */
	struct incomplete {};
	using result = std::variant<message, parse_error, eof, incomplete>;
	/**
	 * Read what the socket has, never waiting: call when it is readable.
	 * A message that arrives in pieces (a peer that writes its payload
	 * slowly) is put together over several calls, so that it holds up
	 * nobody but its own connection; @c incomplete until it is whole.
	 */
	result recv();

	/** Send a reply to @p req carrying @p payload. */
	void send_reply(std::uint32_t req, const void *payload, std::size_t len);
	void reply_u64(std::uint32_t req, std::uint64_t v) { send_reply(req, &v, sizeof(v)); }
	/** Send a request (slave channel) without fds. */
	void send_request(std::uint32_t req, std::uint32_t flags, const void *payload,
			  std::size_t len);

private:
	unique_fd sock_;
	/** The message being received: header bytes, payload, fds so far. */
	std::uint32_t hdr_[3] = {};
	std::size_t hdr_got_ = 0;
	std::vector<std::uint8_t> payload_;
	std::size_t payload_got_ = 0;
	std::vector<unique_fd> fds_;
	bool ctrunc_ = false;
};

/**
 * Checks and translations every back-end applies the same way (vpci-backend's
 * session and vpci-hostdp's device).
 */

/** A ring size SET_VRING_NUM may carry: a power of two in 1..32768. */
constexpr bool valid_ring_size(std::uint32_t n) noexcept
{
	return n && n <= 32768 && !(n & (n - 1));
}

/**
 * One memory region as a back-end keeps it: GPA, size, the front-end's
 * address of it, and where it lies in the back-end's own view (its offset
 * in the peer BAR, or in the back-end's mapping of guest memory).
 */
struct region {
	std::uint64_t gpa, size, uaddr, offset;
};

/** Why SET_MEM_TABLE region @p r is unusable (size 0, a wrapping range), or nullptr. */
const char *region_error(const mem_region &r) noexcept;
/** Offset of [uaddr, uaddr + size) when it lies inside one region. */
std::optional<std::uint64_t> uaddr_to_offset(const std::vector<region> &rs, std::uint64_t uaddr,
					     std::uint64_t size) noexcept;
/** GPA of @p uaddr when a region holds it. */
std::optional<std::uint64_t> uaddr_to_gpa(const std::vector<region> &rs,
					  std::uint64_t uaddr) noexcept;

/** A ring's device addresses. */
struct ring_addrs {
	std::uint64_t desc, avail, used;
};
/**
 * SET_VRING_ADDR's addresses as the device uses them: with ACCESS_PLATFORM
 * (@p iommu) the IOVAs as sent, else the user addresses translated to GPAs
 * through @p rs; nullopt if one does not translate.
 */
std::optional<ring_addrs> ring_addresses(const vring_addr &a, bool iommu,
					 const std::vector<region> &rs) noexcept;

/** The verdict on an IOTLB_MSG before it is applied. */
struct iotlb_check {
	/** Why it is refused, or nullptr. */
	const char *error = nullptr;
	/**
	 * An INVALIDATE meaning "everything from iova on": size 0 (what QEMU
	 * sends for a global device-IOTLB flush, its addr_mask + 1 overflowing)
	 * or a range running past the end of the IOVA space.  Invalidating
	 * more is always safe; refusing would leave stale translations.
	 */
	bool to_end = false;
};
/**
 * Type UPDATE or INVALIDATE; no empty or wrapping IOVA range (but see
 * to_end); an UPDATE with a permission in RO..RW and a user address range
 * that does not wrap.
 */
iotlb_check check_iotlb(const iotlb_msg &t) noexcept;

/**
 * The index of SET_VRING_KICK/CALL/ERR's u64 (no bits but the index and
 * the "no fd" flag); nullopt if other bits are set or the index is not
 * below @p nqueues.
 */
std::optional<unsigned> vring_fd_index(std::uint64_t u, unsigned nqueues) noexcept;

/** Send raw bytes with optional fds (used by tests' fake front-end too). */
void send_raw(int sock, const void *data, std::size_t len, const std::vector<int> &fds);

/**
 * A message as it came off the wire, not interpreted: what a front-end
 * reads (replies on the main socket, requests on the back-end channel),
 * where parse()'s request table does not apply.
 */
struct raw_message {
	std::uint32_t req = 0, flags = 0;
	std::vector<std::uint8_t> payload;
	std::vector<unique_fd> fds;

	/** The payload's first 8 bytes (a u64 reply); nullopt if shorter. */
	std::optional<std::uint64_t> u64() const;
};

/** Header + payload in one sendmsg() with @p fds (at most max_fds). */
void send_message(int sock, std::uint32_t req, std::uint32_t flags, const void *payload,
		  std::size_t len, const std::vector<int> &fds = {});

/**
 * Wait up to @p timeout_ms for one message on @p sock and read all of it.
 * nullopt on timeout; std::runtime_error on EOF or a framing problem,
 * std::system_error if a syscall fails.
 */
std::optional<raw_message> recv_raw(int sock, int timeout_ms);

} // namespace vpci::vu
