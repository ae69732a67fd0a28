// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * vpci-nl: the vhost_pci generic netlink family from the command line
 * (docs/control-plane.md).
 *
 *   vpci-nl [--json] status [IFNAME]
 *   vpci-nl [--json] iotlb IFNAME
 *   vpci-nl [--json] mode IFNAME poll|interrupt|hybrid [USECS]
 *   vpci-nl [--json] events IFNAME iotlb|none
 *   vpci-nl [--json] monitor [--count N] [--timeout S]
 *   vpci-nl raw CMD [--dump] [--attr KIND:TYPE=VALUE]...   (tests)
 *
 * Exit status: 0 success, 1 error (the message says which), 2 usage.
 */
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <functional>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <poll.h>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <netlink/route/link.h>
#include <nlohmann/json.hpp>

#include <linux/vhost_pci_net.h>
#include <linux/vhost_pci_netlink.h>

#include "event_loop.hpp"
#include "cli_check.hpp"
#include "parse.hpp"
#include "genl.hpp"

namespace {

using vpci::checked_by;
using vpci::parse_u64;

using json = nlohmann::json;
namespace genl = vpci::genl;

/** A user-facing failure: message printed as "vpci-nl: <msg>", exit 1. */
struct failure : std::runtime_error {
	using std::runtime_error::runtime_error;
};

/** Interface name -> index through rtnetlink (libnl-route). */
std::uint32_t ifindex_of(const std::string &ifname)
{
	genl::unique_sock sk = genl::connect(NETLINK_ROUTE);
	rtnl_link *link = nullptr;
	int err = rtnl_link_get_kernel(sk.get(), 0, ifname.c_str(), &link);
	if (err < 0 || !link)
		throw failure(fmt::format("{}: no such device", ifname));
	std::unique_ptr<rtnl_link, decltype(&rtnl_link_put)> owner(link, rtnl_link_put);
	return static_cast<std::uint32_t>(rtnl_link_get_ifindex(link));
}

/** Interface index -> name, "?" if it is gone. */
std::string ifname_of(int ifindex)
{
	genl::unique_sock sk = genl::connect(NETLINK_ROUTE);
	rtnl_link *link = nullptr;
	if (rtnl_link_get_kernel(sk.get(), ifindex, nullptr, &link) < 0 || !link)
		return "?";
	std::unique_ptr<rtnl_link, decltype(&rtnl_link_put)> owner(link, rtnl_link_put);
	const char *n = rtnl_link_get_name(link);
	return n ? n : "?";
}

/** Turn the kernel's errno into the message a user can act on. */
[[noreturn]] void explain(const genl::error &e, const std::string &what, const std::string &ifname)
{
	std::string ext = e.extack().empty() ? "" : fmt::format(" (kernel: {})", e.extack());
	switch (e.code()) {
	case ENODEV:
		throw failure(fmt::format("{}: no such device{}", ifname, ext));
	case EOPNOTSUPP:
		throw failure(fmt::format("{}: not a vhost-pci device{}", ifname, ext));
	case EPERM:
		throw failure(fmt::format("{}: permission denied (needs CAP_NET_ADMIN){}", what, ext));
	case ENOENT:
		throw failure(e.what());
	default:
		throw failure(fmt::format("{}{}: {}", what, ifname.empty() ? "" : " " + ifname, e.what()));
	}
}

const char *mode_name(std::uint32_t m)
{
	switch (m) {
	case VPCI_MODE_INTERRUPT: return "interrupt";
	case VPCI_MODE_POLL: return "poll";
	case VPCI_MODE_HYBRID: return "hybrid";
	default: return "unknown";
	}
}

const char *qstate_name(std::uint32_t s)
{
	switch (s) {
	case VPCI_QUEUE_STOPPED: return "stopped";
	case VPCI_QUEUE_RUNNING: return "running";
	case VPCI_QUEUE_STALLED: return "stalled";
	case VPCI_QUEUE_BROKEN: return "broken";
	default: return "unknown";
	}
}

const char *notify_name(std::uint32_t n)
{
	switch (n) {
	case VPCI_NOTIFY_NONE: return "none";
	case VPCI_NOTIFY_DIRECT: return "direct";
	case VPCI_NOTIFY_RELAY: return "relay";
	default: return "unknown";
	}
}

const char *reason_name(std::uint32_t r)
{
	switch (r) {
	case VPCI_FAULT_PERM: return "perm";
	case VPCI_FAULT_MISS_TIMEOUT: return "miss_timeout";
	case VPCI_FAULT_CHAIN: return "chain";
	case VPCI_FAULT_HEAD: return "head";
	case VPCI_FAULT_RING: return "ring";
	case VPCI_FAULT_DESC: return "desc";
	default: return "unknown";
	}
}

const char *event_name(std::uint32_t t)
{
	switch (t) {
	case VPCI_EVENT_FAULT: return "fault";
	case VPCI_EVENT_IOTLB_MISS: return "iotlb_miss";
	case VPCI_EVENT_IOTLB_INVALIDATE: return "iotlb_invalidate";
	default: return "unknown";
	}
}

std::string perm_name(std::uint32_t p)
{
	switch (p) {
	case 0: return "none";
	case VPCI_PERM_RO: return "read";
	case VPCI_PERM_WO: return "write";
	case VPCI_PERM_RW: return "read-write";
	default: return fmt::format("{:#x}", p);
	}
}

std::string hex(std::uint64_t v) { return fmt::format("{:#x}", v); }

json events_json(std::uint32_t ev)
{
	json a = json::array();
	if (ev & VPCI_EVENTS_IOTLB)
		a.push_back("iotlb");
	return a;
}

/** One DEV_GET reply as JSON. */
json dev_json(nlmsghdr *nlh)
{
	auto tb = genl::parse(nlh, VPCI_A_MAX);
	json d;
	d["ifindex"] = genl::get_u32(tb[VPCI_A_IFINDEX]).value_or(0);
	d["ifname"] = tb[VPCI_A_IFNAME] ? nla_get_string(tb[VPCI_A_IFNAME]) : "";
	d["device_features"] = hex(genl::get_u64(tb[VPCI_A_DEVICE_FEATURES]).value_or(0));
	d["peer_features"] = hex(genl::get_u64(tb[VPCI_A_PEER_FEATURES]).value_or(0));
	d["max_queue_pairs"] = genl::get_u32(tb[VPCI_A_MAX_QUEUE_PAIRS]).value_or(0);
	d["queue_pairs"] = genl::get_u32(tb[VPCI_A_QUEUE_PAIRS]).value_or(0);
	d["mode"] = mode_name(genl::get_u32(tb[VPCI_A_MODE]).value_or(~0U));
	d["hybrid_usecs"] = genl::get_u32(tb[VPCI_A_HYBRID_USECS]).value_or(0);
	d["iotlb"] = {
		{"entries", genl::get_u32(tb[VPCI_A_IOTLB_ENTRIES]).value_or(0)},
		{"capacity", genl::get_u32(tb[VPCI_A_IOTLB_CAPACITY]).value_or(0)},
		{"evictions", genl::get_u64(tb[VPCI_A_IOTLB_EVICTIONS]).value_or(0)},
	};
	d["events"] = events_json(genl::get_u32(tb[VPCI_A_EVENTS]).value_or(0));
	d["events_dropped"] = genl::get_u64(tb[VPCI_A_EVENTS_DROPPED]).value_or(0);
	d["queues"] = json::array();
	for (nlattr *q : genl::all_of(nlh, VPCI_A_QUEUE)) {
		auto qt = genl::parse_nested(q, VPCI_QUEUE_A_MAX);
		std::uint32_t idx = genl::get_u32(qt[VPCI_QUEUE_A_INDEX]).value_or(0);
		d["queues"].push_back({
			{"index", idx},
			{"role", fmt::format("{} of pair {}", idx & 1 ? "VM1 tx (our rx)" : "VM1 rx (our tx)", idx / 2)},
			{"state", qstate_name(genl::get_u32(qt[VPCI_QUEUE_A_STATE]).value_or(~0U))},
			{"enabled", qt[VPCI_QUEUE_A_ENABLED] && nla_get_u8(qt[VPCI_QUEUE_A_ENABLED])},
			{"num", genl::get_u32(qt[VPCI_QUEUE_A_NUM]).value_or(0)},
			{"notify", notify_name(genl::get_u32(qt[VPCI_QUEUE_A_NOTIFY]).value_or(~0U))},
			{"last_avail", genl::get_u32(qt[VPCI_QUEUE_A_LAST_AVAIL]).value_or(0)},
			{"used_idx", genl::get_u32(qt[VPCI_QUEUE_A_USED_IDX]).value_or(0)},
		});
	}
	return d;
}

void print_dev(const json &d)
{
	fmt::print("{} (ifindex {}): mode {}, hybrid {} us, queue pairs {}/{}\n",
		   d["ifname"].get<std::string>(), d["ifindex"].get<unsigned>(),
		   d["mode"].get<std::string>(), d["hybrid_usecs"].get<unsigned>(),
		   d["queue_pairs"].get<unsigned>(), d["max_queue_pairs"].get<unsigned>());
	fmt::print("  features: device {} peer {}\n", d["device_features"].get<std::string>(),
		   d["peer_features"].get<std::string>());
	std::string ev;
	for (const auto &e : d["events"])
		ev += (ev.empty() ? "" : ",") + e.get<std::string>();
	fmt::print("  iotlb: {}/{} entries, {} evictions; optional events: {} ({} dropped)\n",
		   d["iotlb"]["entries"].get<unsigned>(), d["iotlb"]["capacity"].get<unsigned>(),
		   d["iotlb"]["evictions"].get<std::uint64_t>(), ev.empty() ? "none" : ev,
		   d["events_dropped"].get<std::uint64_t>());
	for (const auto &q : d["queues"])
		fmt::print("  queue {} ({}): {}, {}, num {}, notify {}, last_avail {}, used_idx {}\n",
			   q["index"].get<unsigned>(), q["role"].get<std::string>(),
			   q["state"].get<std::string>(),
			   q["enabled"].get<bool>() ? "enabled" : "disabled", q["num"].get<unsigned>(),
			   q["notify"].get<std::string>(), q["last_avail"].get<unsigned>(),
			   q["used_idx"].get<unsigned>());
}

int cmd_status(const std::string &ifname, bool as_json)
{
	genl::family fam(VPCI_GENL_NAME);
	json devs = json::array();
	auto collect = [&](nlmsghdr *nlh) { devs.push_back(dev_json(nlh)); };
	try {
		if (ifname.empty()) {
			fam.transact(fam.request(VPCI_CMD_DEV_GET, NLM_F_DUMP), collect);
		} else {
			auto m = fam.request(VPCI_CMD_DEV_GET);
			nla_put_u32(m.get(), VPCI_A_IFINDEX, ifindex_of(ifname));
			fam.transact(std::move(m), collect);
		}
	} catch (const genl::error &e) {
		explain(e, "status", ifname);
	}
	if (as_json) {
		std::cout << (ifname.empty() ? devs : devs.at(0)).dump(2) << "\n";
		return 0;
	}
	if (devs.empty())
		fmt::print("no vhost-pci devices\n");
	for (const auto &d : devs)
		print_dev(d);
	return 0;
}

int cmd_iotlb(const std::string &ifname, bool as_json)
{
	genl::family fam(VPCI_GENL_NAME);
	json entries = json::array();
	auto m = fam.request(VPCI_CMD_IOTLB_DUMP, NLM_F_DUMP);
	nla_put_u32(m.get(), VPCI_A_IFINDEX, ifindex_of(ifname));
	bool intr = false;
	try {
		intr = fam.transact(std::move(m), [&](nlmsghdr *nlh) {
			auto tb = genl::parse(nlh, VPCI_A_MAX);
			if (!tb[VPCI_A_IOTLB_ENTRY])
				return;
			auto et = genl::parse_nested(tb[VPCI_A_IOTLB_ENTRY], VPCI_IOTLB_A_MAX);
			entries.push_back({
				{"start", hex(genl::get_u64(et[VPCI_IOTLB_A_START]).value_or(0))},
				{"last", hex(genl::get_u64(et[VPCI_IOTLB_A_LAST]).value_or(0))},
				{"bar_offset", hex(genl::get_u64(et[VPCI_IOTLB_A_BAR_OFFSET]).value_or(0))},
				{"perm", perm_name(genl::get_u32(et[VPCI_IOTLB_A_PERM]).value_or(0))},
			});
		});
	} catch (const genl::error &e) {
		explain(e, "iotlb", ifname);
	}
	if (intr)
		fmt::print(stderr, "vpci-nl: warning: the IOTLB changed during the dump\n");
	if (as_json) {
		json out = {{"ifname", ifname}, {"consistent", !intr}, {"entries", entries}};
		std::cout << out.dump(2) << "\n";
		return 0;
	}
	fmt::print("{}: {} IOTLB entries\n", ifname, entries.size());
	fmt::print("{:>18} {:>18} {:>18} {}\n", "start", "last", "bar_offset", "perm");
	for (const auto &e : entries)
		fmt::print("{:>18} {:>18} {:>18} {}\n", e["start"].get<std::string>(),
			   e["last"].get<std::string>(), e["bar_offset"].get<std::string>(),
			   e["perm"].get<std::string>());
	return 0;
}

int mode_set(const std::string &ifname, const std::map<int, std::uint32_t> &attrs, bool as_json,
	     const std::string &what)
{
	genl::family fam(VPCI_GENL_NAME);
	auto m = fam.request(VPCI_CMD_MODE_SET);
	nla_put_u32(m.get(), VPCI_A_IFINDEX, ifindex_of(ifname));
	for (auto [type, v] : attrs)
		nla_put_u32(m.get(), type, v);
	try {
		fam.transact(std::move(m), [](nlmsghdr *) {});
	} catch (const genl::error &e) {
		explain(e, what, ifname);
	}
	if (as_json)
		std::cout << json{{"ifname", ifname}, {"ok", true}}.dump() << "\n";
	return 0;
}

int cmd_mode(const std::string &ifname, const std::string &mode, const std::string &usecs,
	     bool as_json)
{
	// MODE and USECS were checked while parsing; that hybrid needs USECS
	// (a value of one positional requiring another) is checked here.
	std::map<int, std::uint32_t> attrs;
	if (mode == "poll")
		attrs[VPCI_A_MODE] = VPCI_MODE_POLL;
	else if (mode == "interrupt")
		attrs[VPCI_A_MODE] = VPCI_MODE_INTERRUPT;
	else
		attrs[VPCI_A_MODE] = VPCI_MODE_HYBRID;
	if (!usecs.empty())
		attrs[VPCI_A_HYBRID_USECS] = static_cast<std::uint32_t>(*parse_u64(usecs));
	else if (mode == "hybrid")
		throw CLI::ValidationError("USECS", "hybrid mode needs USECS");
	return mode_set(ifname, attrs, as_json, "mode");
}

int cmd_events(const std::string &ifname, const std::string &which, bool as_json)
{
	const std::uint32_t mask = which == "none" ? 0 : VPCI_EVENTS_IOTLB; // EVENTS checked
	return mode_set(ifname, {{VPCI_A_EVENTS, mask}}, as_json, "events");
}


int cmd_monitor(unsigned count, double timeout, bool as_json)
{
	genl::family fam(VPCI_GENL_NAME);
	try {
		fam.subscribe(VPCI_GENL_MCGRP_EVENTS);
	} catch (const genl::error &e) {
		explain(e, "monitor", "");
	}
	/* Tests wait for this line before they cause events. */
	fmt::print(stderr, "vpci-nl: monitoring {} events\n", VPCI_GENL_NAME);
	std::fflush(stderr);

	unsigned seen = 0;
	std::map<int, std::string> names;
	std::function<std::string(int)> lookup = [&](int ifindex) -> std::string {
		auto it = names.find(ifindex);
		if (it != names.end())
			return it->second;
		return names[ifindex] = ifname_of(ifindex);
	};
	std::unique_ptr<nl_cb, decltype(&nl_cb_put)> cb(nl_cb_alloc(NL_CB_DEFAULT), nl_cb_put);
	struct ctx {
		std::function<std::string(int)> *name_of;
		unsigned *seen;
		bool as_json;
	} c{&lookup, &seen, as_json};
	nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, [](nl_msg *msg, void *arg) -> int {
		auto *x = static_cast<ctx *>(arg);
		nlmsghdr *nlh = nlmsg_hdr(msg);
		auto *gnlh = static_cast<genlmsghdr *>(nlmsg_data(nlh));
		if (gnlh->cmd != VPCI_CMD_FAULT_NTF && gnlh->cmd != VPCI_CMD_IOTLB_NTF)
			return NL_SKIP;
		auto tb = genl::parse(nlh, VPCI_A_MAX);
		if (!tb[VPCI_A_EVENT])
			return NL_SKIP;
		auto et = genl::parse_nested(tb[VPCI_A_EVENT], VPCI_EVENT_A_MAX);
		int ifindex = static_cast<int>(genl::get_u32(tb[VPCI_A_IFINDEX]).value_or(0));
		std::uint32_t type = genl::get_u32(et[VPCI_EVENT_A_TYPE]).value_or(~0U);
		json e = {
			{"event", event_name(type)},
			{"ifindex", ifindex},
			{"ifname", (*x->name_of)(ifindex)},
			{"queue", genl::get_u32(et[VPCI_EVENT_A_QUEUE]).value_or(0xffff)},
			{"iova", hex(genl::get_u64(et[VPCI_EVENT_A_IOVA]).value_or(0))},
			{"len", genl::get_u64(et[VPCI_EVENT_A_LEN]).value_or(0)},
			{"access", perm_name(genl::get_u32(et[VPCI_EVENT_A_ACCESS]).value_or(0))},
		};
		if (type == VPCI_EVENT_FAULT) {
			e["reason"] = reason_name(genl::get_u32(et[VPCI_EVENT_A_REASON]).value_or(~0U));
			e["errno"] = et[VPCI_EVENT_A_ERRNO] ? static_cast<int>(nla_get_u32(et[VPCI_EVENT_A_ERRNO])) : 0;
		}
		if (x->as_json) {
			std::cout << e.dump() << std::endl;
		} else {
			std::string line = fmt::format("{} {} queue {} iova {} len {} access {}",
						       e["event"].get<std::string>(), e["ifname"].get<std::string>(),
						       e["queue"].get<unsigned>(), e["iova"].get<std::string>(),
						       e["len"].get<std::uint64_t>(), e["access"].get<std::string>());
			if (type == VPCI_EVENT_FAULT)
				line += fmt::format(" reason {} errno {}", e["reason"].get<std::string>(),
						    e["errno"].get<int>());
			std::cout << line << std::endl;
		}
		++*x->seen;
		return NL_OK;
	}, &c);

	/* Events carry sequence number 0: no sequence check. */
	nl_cb_set(cb.get(), NL_CB_SEQ_CHECK, NL_CB_CUSTOM, [](nl_msg *, void *) -> int { return NL_OK; },
		  nullptr);

	// SIGINT/SIGTERM end the monitor (with what it printed so far).
	vpci::signal_set stop_signals;
	bool stop = false;
	auto deadline = std::chrono::steady_clock::now() +
			std::chrono::milliseconds(static_cast<long long>(timeout * 1000));
	while (!stop && (!count || seen < count)) {
		int wait_ms = -1;
		if (timeout > 0) {
			auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
				deadline - std::chrono::steady_clock::now()).count();
			if (left <= 0)
				break;
			wait_ms = static_cast<int>(left);
		}
		pollfd p[2] = {{nl_socket_get_fd(fam.sock()), POLLIN, 0},
			       {stop_signals.fd(), POLLIN, 0}};
		int r = ::poll(p, 2, wait_ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			throw failure(fmt::format("poll: {}", std::strerror(errno)));
		if (p[1].revents && stop_signals.take())
			stop = true;
		if (!p[0].revents)
			continue;
		int err = nl_recvmsgs(fam.sock(), cb.get());
		if (err < 0 && err != -NLE_AGAIN) {
			/* ENOBUFS: the socket overran, events were lost. */
			fmt::print(stderr, "vpci-nl: receive: {}\n", nl_geterror(err));
		}
	}
	if (count && seen < count) {
		fmt::print(stderr, "vpci-nl: {} of {} events before the timeout\n", seen, count);
		return 1;
	}
	return 0;
}

/** raw's CMD: a command name or number; std::invalid_argument if neither. */
std::uint8_t parse_raw_cmd(const std::string &cmd)
{
	static const std::map<std::string, std::uint8_t> cmds = {
		{"dev-get", VPCI_CMD_DEV_GET}, {"iotlb-dump", VPCI_CMD_IOTLB_DUMP},
		{"mode-set", VPCI_CMD_MODE_SET}, {"fault-ntf", VPCI_CMD_FAULT_NTF},
	};
	if (auto c = cmds.find(cmd); c != cmds.end())
		return c->second;
	auto v = parse_u64(cmd);
	if (!v || *v > 255)
		throw std::invalid_argument("unknown command " + cmd);
	return static_cast<std::uint8_t>(*v);
}

/** One raw --attr KIND:TYPE=VALUE. */
struct raw_attr {
	std::string kind, val;
	int type;
	std::uint64_t num; // u8..u64: VALUE
};

/** Parse one --attr; std::invalid_argument saying what is wrong. */
raw_attr parse_raw_attr(const std::string &a)
{
	auto colon = a.find(':'), eq = a.find('=');
	if (colon == std::string::npos || eq == std::string::npos || eq < colon)
		throw std::invalid_argument("KIND:TYPE=VALUE expected: " + a);
	raw_attr r{a.substr(0, colon), a.substr(eq + 1), 0, 0};
	auto type = parse_u64(a.substr(colon + 1, eq - colon - 1));
	if (!type || *type > 0x7fff)
		throw std::invalid_argument("bad attribute type in " + a);
	r.type = static_cast<int>(*type);
	if (r.kind == "str" || r.kind == "flag")
		return r;
	if (r.kind != "u8" && r.kind != "u16" && r.kind != "u32" && r.kind != "u64")
		throw std::invalid_argument("KIND is u8, u16, u32, u64, str or flag");
	auto v = parse_u64(r.val);
	if (!v)
		throw std::invalid_argument("bad value in " + a);
	r.num = *v;
	return r;
}

/** Send a hand-built request (for tests of the kernel's policies). */
int cmd_raw(const std::string &cmd, bool dump, const std::vector<std::string> &attrs, bool as_json)
{
	// CMD and every --attr were checked while parsing.
	genl::family fam(VPCI_GENL_NAME);
	auto m = fam.request(parse_raw_cmd(cmd), dump ? NLM_F_DUMP : 0);
	for (const auto &a : attrs) {
		const raw_attr r = parse_raw_attr(a);
		const std::string &kind = r.kind, &val = r.val;
		const int t = r.type;
		if (kind == "str") {
			nla_put_string(m.get(), t, val.c_str());
			continue;
		}
		if (kind == "flag") {
			nla_put_flag(m.get(), t);
			continue;
		}
		if (kind == "u8")
			nla_put_u8(m.get(), t, static_cast<std::uint8_t>(r.num));
		else if (kind == "u16")
			nla_put_u16(m.get(), t, static_cast<std::uint16_t>(r.num));
		else if (kind == "u32")
			nla_put_u32(m.get(), t, static_cast<std::uint32_t>(r.num));
		else
			nla_put_u64(m.get(), t, r.num);
	}
	unsigned replies = 0;
	try {
		fam.transact(std::move(m), [&](nlmsghdr *) { replies++; });
	} catch (const genl::error &e) {
		if (as_json)
			std::cout << json{{"errno", e.code()}, {"error", e.what()}, {"extack", e.extack()}}.dump()
				  << "\n";
		else
			fmt::print("error {} ({})\n", e.code(), e.what());
		return 1;
	}
	if (as_json)
		std::cout << json{{"errno", 0}, {"replies", replies}}.dump() << "\n";
	else
		fmt::print("ok, {} replies\n", replies);
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	CLI::App app{"vpci-nl: inspect and control vhost-pci devices (vhost_pci generic netlink)"};
	app.require_subcommand(1);
	app.fallthrough();
	bool as_json = false;
	app.add_flag("--json", as_json, "Print JSON");

	std::string ifname, mode, usecs, which, raw_cmd;
	unsigned count = 0;
	double timeout = 0;
	bool raw_dump = false;
	std::vector<std::string> raw_attrs;

	auto *status = app.add_subcommand("status", "Show vhost-pci devices (all, or IFNAME)");
	status->add_option("IFNAME", ifname, "Interface");
	auto *iotlb = app.add_subcommand("iotlb", "Dump the private IOTLB of IFNAME");
	iotlb->add_option("IFNAME", ifname, "Interface")->required();
	auto *modec = app.add_subcommand("mode", "Set poll, interrupt or hybrid mode (root)");
	modec->add_option("IFNAME", ifname, "Interface")->required();
	modec->add_option("MODE", mode, "poll, interrupt or hybrid")
		->required()
		->check(CLI::IsMember({"poll", "interrupt", "hybrid"}));
	modec->add_option("USECS", usecs, "Hybrid: microseconds to keep polling")
		->check(checked_by(
			[](const std::string &v) {
				auto n = parse_u64(v);
				if (!n || *n > 0xffffffffULL)
					throw std::invalid_argument("not a number: " + v);
				return *n;
			},
			"USECS"));
	auto *events = app.add_subcommand("events", "Enable optional events of IFNAME (root)");
	events->add_option("IFNAME", ifname, "Interface")->required();
	events->add_option("EVENTS", which, "iotlb (misses and invalidations), all or none")
		->required()
		->check(CLI::IsMember({"iotlb", "all", "none"}));
	auto *monitor = app.add_subcommand("monitor", "Print events (faults; IOTLB if enabled)");
	monitor->add_option("--count", count, "Exit after N events (status 1 if fewer by the timeout)");
	monitor->add_option("--timeout", timeout, "Exit after S seconds");
	auto *raw = app.add_subcommand("raw", "Send a hand-built request (testing the kernel's checks)");
	raw->add_option("CMD", raw_cmd, "dev-get, iotlb-dump, mode-set, fault-ntf or a number")
		->required()
		->check(checked_by(parse_raw_cmd, "CMD"));
	raw->add_flag("--dump", raw_dump, "Send as a dump request");
	raw->add_option("--attr", raw_attrs, "KIND:TYPE=VALUE, KIND u8|u16|u32|u64|str|flag")
		->check(checked_by(parse_raw_attr, "KIND:TYPE=VALUE"));

	try {
		app.parse(argc, argv);
	} catch (const CLI::ParseError &e) {
		return app.exit(e);
	}

	try {
		if (*status)
			return cmd_status(ifname, as_json);
		if (*iotlb)
			return cmd_iotlb(ifname, as_json);
		if (*modec)
			return cmd_mode(ifname, mode, usecs, as_json);
		if (*events)
			return cmd_events(ifname, which, as_json);
		if (*monitor)
			return cmd_monitor(count, timeout, as_json);
		if (*raw)
			return cmd_raw(raw_cmd, raw_dump, raw_attrs, as_json);
	} catch (const CLI::ParseError &e) {
		return app.exit(e);
	} catch (const std::exception &e) {
		fmt::print(stderr, "vpci-nl: {}\n", e.what());
		return 1;
	}
	return 2;
}
