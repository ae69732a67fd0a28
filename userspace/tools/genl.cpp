// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "genl.hpp"

#include <cerrno>
#include <cstring>

#include <linux/netlink.h>
#include <sys/socket.h>

#include <fmt/format.h>

namespace vpci::genl {

namespace {

/** State of one transact(): what the callbacks learnt. */
struct txn {
	const std::function<void(nlmsghdr *)> *on_msg = nullptr;
	bool done = false;
	bool interrupted = false;
	int err = 0;		// negative errno from the kernel
	std::string extack;
	std::string cb_error;	// an exception from on_msg, re-thrown later
};

/* The NLMSGERR_ATTR_MSG of the TLVs after an error or a done payload. */
std::string extack_msg(const nlmsghdr *nlh, std::size_t payload_skip)
{
	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS))
		return {};
	const auto *base = reinterpret_cast<const char *>(nlh);
	std::size_t off = NLMSG_HDRLEN + payload_skip;
	if (off > nlh->nlmsg_len)
		return {};
	const auto *a = reinterpret_cast<const nlattr *>(base + off);
	int rem = static_cast<int>(nlh->nlmsg_len - off);
	for (; nla_ok(a, rem); a = nla_next(a, &rem)) {
		if (nla_type(a) == NLMSGERR_ATTR_MSG && nla_len(a) > 0)
			return std::string(static_cast<const char *>(nla_data(a)),
					   strnlen(static_cast<const char *>(nla_data(a)),
						   static_cast<std::size_t>(nla_len(a))));
	}
	return {};
}

int on_valid(nl_msg *msg, void *arg)
{
	auto *t = static_cast<txn *>(arg);
	try {
		(*t->on_msg)(nlmsg_hdr(msg));
	} catch (const std::exception &e) {
		t->cb_error = e.what();
		return NL_STOP;
	}
	return NL_OK;
}

int on_finish(nl_msg *msg, void *arg)
{
	auto *t = static_cast<txn *>(arg);
	nlmsghdr *nlh = nlmsg_hdr(msg);
	/* A failed dump ends with NLMSG_DONE carrying the (negative) errno. */
	if (nlh->nlmsg_len >= NLMSG_HDRLEN + sizeof(int)) {
		int e;
		std::memcpy(&e, nlmsg_data(nlh), sizeof(e));
		if (e < 0) {
			t->err = e;
			t->extack = extack_msg(nlh, sizeof(int));
		}
	}
	t->done = true;
	return NL_STOP;
}

int on_ack(nl_msg *, void *arg)
{
	static_cast<txn *>(arg)->done = true;
	return NL_STOP;
}

int on_dump_intr(nl_msg *, void *arg)
{
	static_cast<txn *>(arg)->interrupted = true;
	return NL_OK;	/* process the message anyway */
}

int on_error(sockaddr_nl *, nlmsgerr *e, void *arg)
{
	auto *t = static_cast<txn *>(arg);
	auto *nlh = reinterpret_cast<nlmsghdr *>(reinterpret_cast<char *>(e) - NLMSG_HDRLEN);
	std::size_t skip = sizeof(*e);
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED))
		skip += e->msg.nlmsg_len - NLMSG_HDRLEN;
	t->err = e->error;
	t->extack = extack_msg(nlh, skip);
	t->done = true;
	return NL_STOP;
}

} // namespace

unique_sock connect(int protocol)
{
	unique_sock sk(nl_socket_alloc());
	if (!sk)
		throw error(ENOMEM, "nl_socket_alloc failed");
	int err = nl_connect(sk.get(), protocol);
	if (err < 0)
		throw error(EIO, fmt::format("nl_connect: {}", nl_geterror(err)));
	int one = 1;
	/* Ask for extended acks (error messages); harmless if unsupported. */
	(void)setsockopt(nl_socket_get_fd(sk.get()), SOL_NETLINK, NETLINK_EXT_ACK, &one,
			 sizeof(one));
	return sk;
}

family::family(const std::string &name) : sk_(connect(NETLINK_GENERIC)), name_(name)
{
	id_ = genl_ctrl_resolve(sk_.get(), name.c_str());
	if (id_ < 0)
		throw error(ENOENT, fmt::format("generic netlink family {} not found "
						"(is vhost_pci_net loaded?)", name));
}

unique_msg family::request(std::uint8_t cmd, int flags) const
{
	unique_msg m(nlmsg_alloc());
	if (!m)
		throw error(ENOMEM, "nlmsg_alloc failed");
	if (!genlmsg_put(m.get(), NL_AUTO_PORT, NL_AUTO_SEQ, id_, 0, flags, cmd, 1))
		throw error(ENOMEM, "genlmsg_put failed");
	return m;
}

bool family::transact(unique_msg msg, const std::function<void(nlmsghdr *)> &on_msg) const
{
	txn t;
	t.on_msg = &on_msg;
	std::unique_ptr<nl_cb, decltype(&nl_cb_put)> cb(nl_cb_alloc(NL_CB_DEFAULT), nl_cb_put);
	if (!cb)
		throw error(ENOMEM, "nl_cb_alloc failed");
	nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_valid, &t);
	nl_cb_set(cb.get(), NL_CB_FINISH, NL_CB_CUSTOM, on_finish, &t);
	nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, on_ack, &t);
	nl_cb_set(cb.get(), NL_CB_DUMP_INTR, NL_CB_CUSTOM, on_dump_intr, &t);
	nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &t);

	int err = nl_send_auto(sk_.get(), msg.get());
	if (err < 0)
		throw error(EIO, fmt::format("send: {}", nl_geterror(err)));
	while (!t.done) {
		err = nl_recvmsgs(sk_.get(), cb.get());
		if (!t.cb_error.empty())
			throw std::runtime_error(t.cb_error);
		if (err < 0 && !t.done)
			throw error(EIO, fmt::format("receive: {}", nl_geterror(err)));
	}
	if (t.err < 0) {
		std::string what = std::strerror(-t.err);
		if (!t.extack.empty())
			what += " (" + t.extack + ")";
		throw error(-t.err, what, t.extack);
	}
	return t.interrupted;
}

void family::subscribe(const std::string &group) const
{
	int grp = genl_ctrl_resolve_grp(sk_.get(), name_.c_str(), group.c_str());
	if (grp < 0)
		throw error(ENOENT, fmt::format("multicast group {} of {} not found", group, name_));
	/* Events are not answers to our requests. */
	nl_socket_disable_seq_check(sk_.get());
	int err = nl_socket_add_membership(sk_.get(), grp);
	if (err < 0) {
		int e = err == -NLE_PERM ? EPERM : EIO;
		throw error(e, fmt::format("joining group {}: {}", group,
					   e == EPERM ? "Operation not permitted" : nl_geterror(err)));
	}
}

std::vector<nlattr *> parse(nlmsghdr *nlh, int maxtype)
{
	std::vector<nlattr *> tb(static_cast<std::size_t>(maxtype) + 1);
	if (genlmsg_parse(nlh, 0, tb.data(), maxtype, nullptr) < 0)
		throw std::runtime_error("malformed reply from the kernel");
	return tb;
}

std::vector<nlattr *> parse_nested(nlattr *nest, int maxtype)
{
	std::vector<nlattr *> tb(static_cast<std::size_t>(maxtype) + 1);
	if (nla_parse_nested(tb.data(), maxtype, nest, nullptr) < 0)
		throw std::runtime_error("malformed nested attribute from the kernel");
	return tb;
}

std::vector<nlattr *> all_of(nlmsghdr *nlh, int type)
{
	std::vector<nlattr *> out;
	auto *gnlh = static_cast<genlmsghdr *>(nlmsg_data(nlh));
	nlattr *a;
	int rem;
	nla_for_each_attr(a, genlmsg_attrdata(gnlh, 0), genlmsg_attrlen(gnlh, 0), rem) {
		if (nla_type(a) == type)
			out.push_back(a);
	}
	return out;
}

} // namespace vpci::genl
