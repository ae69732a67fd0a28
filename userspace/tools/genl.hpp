// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file genl.hpp
 * Small RAII layer over libnl-3 / libnl-genl-3 for vpci-nl: owners for
 * nl_sock and nl_msg, a request/reply helper that collects the kernel's
 * error code and extended-ack message (for acks and for the NLMSG_DONE of a
 * failed dump), and attribute accessors.
 */
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <netlink/attr.h>
#include <netlink/genl/ctrl.h>
#include <netlink/genl/genl.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>

namespace vpci::genl {

/** An error the kernel (or libnl) reported: negative errno plus extack text. */
class error : public std::runtime_error {
public:
	error(int err, const std::string &what, std::string extack = {})
		: std::runtime_error(what), err_(err), extack_(std::move(extack)) {}
	/** Positive errno (ENODEV, EPERM, ...). */
	int code() const noexcept { return err_; }
	/** The kernel's extended-ack message, if any. */
	const std::string &extack() const noexcept { return extack_; }

private:
	int err_;
	std::string extack_;
};

struct sock_deleter {
	void operator()(nl_sock *s) const noexcept { nl_socket_free(s); }
};
struct msg_deleter {
	void operator()(nl_msg *m) const noexcept { nlmsg_free(m); }
};
/** Owner of an nl_sock (closed and freed on destruction). */
using unique_sock = std::unique_ptr<nl_sock, sock_deleter>;
/** Owner of an nl_msg. */
using unique_msg = std::unique_ptr<nl_msg, msg_deleter>;

/** A connected socket of one protocol. */
unique_sock connect(int protocol);

/** A generic netlink family on its own socket. */
class family {
public:
	/** Connect and resolve @p name; throws genl::error(ENOENT) if absent. */
	explicit family(const std::string &name);

	int id() const noexcept { return id_; }
	nl_sock *sock() const noexcept { return sk_.get(); }

	/** A new request message for @p cmd (flags: NLM_F_DUMP or 0). */
	unique_msg request(std::uint8_t cmd, int flags = 0) const;

	/**
	 * Send @p msg and receive until the ack or NLMSG_DONE, calling
	 * @p on_msg for each reply.  Throws genl::error with the kernel's errno
	 * and extack message.  Returns true if a dump was interrupted
	 * (NLM_F_DUMP_INTR: the data changed while it was dumped).
	 */
	bool transact(unique_msg msg, const std::function<void(nlmsghdr *)> &on_msg) const;

	/** Join multicast group @p group of this family. */
	void subscribe(const std::string &group) const;

private:
	unique_sock sk_;
	int id_ = -1;
	std::string name_;
};

/** Top-level attributes of a generic netlink message, indexed by type. */
std::vector<nlattr *> parse(nlmsghdr *nlh, int maxtype);
/** Attributes of a nest, indexed by type. */
std::vector<nlattr *> parse_nested(nlattr *nest, int maxtype);
/** Every top-level attribute of type @p type, in order (repeated nests). */
std::vector<nlattr *> all_of(nlmsghdr *nlh, int type);

inline std::optional<std::uint64_t> get_u64(nlattr *a)
{
	return a ? std::optional<std::uint64_t>(nla_get_u64(a)) : std::nullopt;
}
inline std::optional<std::uint32_t> get_u32(nlattr *a)
{
	return a ? std::optional<std::uint32_t>(nla_get_u32(a)) : std::nullopt;
}

} // namespace vpci::genl
