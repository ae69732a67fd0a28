// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "device_server.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include <endian.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "vhost-pci-protocol.h"

namespace vpci {

static constexpr std::uint64_t page = VHOST_PCI_PAGE_SIZE;

std::vector<file_window> normalize_windows(const std::vector<file_window> &ranges)
{
	// Sweep over the boundaries: +1/-1 per permission bit.
	struct edge {
		std::uint64_t at;
		int r, w;
	};
	std::vector<edge> edges;
	for (const file_window &x : ranges) {
		if (!x.size || !(x.perm & 3))
			continue;
		const std::uint64_t start = x.offset & ~(page - 1);
		std::uint64_t end = x.offset + x.size;
		if (end < x.offset) // wraps: clamp to the last page
			end = ~(page - 1);
		end = (end + page - 1) & ~(page - 1);
		if (end <= start)
			continue;
		const int r = x.perm & 1, w = (x.perm >> 1) & 1;
		edges.push_back({start, r, w});
		edges.push_back({end, -r, -w});
	}
	std::sort(edges.begin(), edges.end(),
		  [](const edge &a, const edge &b) { return a.at < b.at; });
	std::vector<file_window> out;
	int r = 0, w = 0;
	for (std::size_t i = 0; i < edges.size();) {
		const std::uint64_t at = edges[i].at;
		for (; i < edges.size() && edges[i].at == at; i++) {
			r += edges[i].r;
			w += edges[i].w;
		}
		if (i == edges.size())
			break;
		const std::uint8_t perm = static_cast<std::uint8_t>((r > 0 ? 1 : 0) | (w > 0 ? 2 : 0));
		const std::uint64_t next = edges[i].at;
		if (!perm)
			continue;
		if (!out.empty() && out.back().offset + out.back().size == at &&
		    out.back().perm == perm)
			out.back().size += next - at;
		else
			out.push_back({at, next - at, perm});
	}
	return out;
}

window_ops diff_windows(const std::vector<file_window> &have, const std::vector<file_window> &want)
{
	// Elementary segments between all boundaries of both lists.
	std::vector<std::uint64_t> cuts;
	for (const auto *l : {&have, &want})
		for (const file_window &x : *l) {
			cuts.push_back(x.offset);
			cuts.push_back(x.offset + x.size);
		}
	std::sort(cuts.begin(), cuts.end());
	cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());

	auto perm_at = [](const std::vector<file_window> &l, std::size_t &i, std::uint64_t at) {
		while (i < l.size() && l[i].offset + l[i].size <= at)
			i++;
		return i < l.size() && l[i].offset <= at ? l[i].perm : std::uint8_t{0};
	};
	auto add = [](std::vector<file_window> &l, std::uint64_t a, std::uint64_t b,
		      std::uint8_t perm) {
		if (!l.empty() && l.back().offset + l.back().size == a && l.back().perm == perm)
			l.back().size += b - a;
		else
			l.push_back({a, b - a, perm});
	};
	window_ops ops;
	std::size_t hi = 0, wi = 0;
	for (std::size_t k = 0; k + 1 < cuts.size(); k++) {
		const std::uint64_t a = cuts[k], b = cuts[k + 1];
		const std::uint8_t h = perm_at(have, hi, a), w = perm_at(want, wi, a);
		if (h == w)
			continue;
		if (h) // an UNMAP carries no permission: merge any
			add(ops.unmap, a, b, 0);
		if (w)
			add(ops.map, a, b, w);
	}
	return ops;
}

static std::uint64_t now_ns()
{
	return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
						  std::chrono::steady_clock::now().time_since_epoch())
						  .count());
}

static const char *err_name(std::uint32_t code)
{
	switch (code) {
	case VHOST_PCI_ERR_TYPE: return "unknown type";
	case VHOST_PCI_ERR_FDS: return "wrong fd count";
	case VHOST_PCI_ERR_NO_HELLO: return "no HELLO";
	case VHOST_PCI_ERR_VERSION: return "version";
	case VHOST_PCI_ERR_HELLO: return "HELLO refused";
	case VHOST_PCI_ERR_ALIGN: return "alignment";
	case VHOST_PCI_ERR_RANGE: return "range";
	case VHOST_PCI_ERR_CTRL: return "control area";
	case VHOST_PCI_ERR_OVERLAP: return "overlap";
	case VHOST_PCI_ERR_LIMIT: return "too many windows";
	case VHOST_PCI_ERR_PERM: return "permission";
	case VHOST_PCI_ERR_VECTOR: return "vector";
	default: return "unknown error";
	}
}

device_server::device_server(const std::string &socket_path, int mem_fd, std::uint64_t file_size,
			     std::uint64_t ctrl_offset, unsigned num_vectors)
	: file_size_(file_size), ctrl_offset_(ctrl_offset), num_vectors_(num_vectors)
{
	if (num_vectors == 0 || num_vectors > 1024)
		throw std::invalid_argument("vhost-pci device: bad number of vectors " +
					    std::to_string(num_vectors));
	mem_fd_ = dup_fd(mem_fd, "memory file");
	for (unsigned v = 0; v < num_vectors; v++) {
		own_vectors_.push_back(make_eventfd());
		doorbells_.push_back(make_eventfd());
		vector_override_.emplace_back();
		doorbell_override_.emplace_back();
	}
	listener_ = unix_listener(socket_path);
	spdlog::info("vhost-pci device: listening on {} ({} vectors)", socket_path, num_vectors);
}

std::uint32_t device_server::send(std::uint32_t type, std::uint32_t arg, std::uint64_t offset,
				  std::uint64_t size, std::uint32_t aux, int fd)
{
	vhost_pci_msg m{};
	const std::uint32_t seq = next_seq_++;
	if (next_seq_ == 0)
		next_seq_ = 1; // 0 means "nothing to wait for"
	m.type = htole32(type);
	m.arg = htole32(arg);
	m.offset = htole64(offset);
	m.size = htole64(size);
	m.seq = htole32(seq);
	m.aux = htole32(aux);

	send_with_fd(client_->sock.get(), &m, sizeof(m), fd,
		     "vhost-pci device, type " + std::to_string(type));
	if (type == VHOST_PCI_MSG_MAP || type == VHOST_PCI_MSG_UNMAP)
		outstanding_[seq] = request{type, now_ns()};
	return seq;
}

void device_server::setup_client(unique_fd sock)
{
	client_.emplace(client{std::move(sock), false, {}});
	have_.clear();
	epoch_++;
	stats_.connects++;
	try {
		send(VHOST_PCI_MSG_HELLO, VHOST_PCI_PROTO_VERSION, ctrl_offset_, file_size_, 1,
		     mem_fd_.get());
		for (unsigned v = 0; v < num_vectors_; v++) {
			send(VHOST_PCI_MSG_SET_DOORBELL, v, 0, 0, 0, doorbell_target(v));
			send(VHOST_PCI_MSG_SET_VECTOR, v, 0, 0, 0, vector_source(v));
		}
		apply(diff_windows(have_, want_));
	} catch (const std::system_error &e) {
		drop_client(std::string("setup failed: ") + e.what());
		return;
	}
	spdlog::info("vhost-pci device: VM2's QEMU connected; {} window(s) mapped", have_.size());
}

bool device_server::handle_listen()
{
	bool added = false;
	for (unsigned i = 0; i < accept_budget; i++) {
		auto sock = listener_.accept();
		if (!sock)
			break;
		if (client_) {
			peer_log_.warn("vhost-pci device: rejecting a second client");
			continue;
		}
		setup_client(std::move(*sock));
		added = client_.has_value();
	}
	return added;
}

void device_server::drop_client(const std::string &why)
{
	if (!client_)
		return;
	spdlog::info("vhost-pci device: client {}; {} request(s) outstanding count as done", why,
		     outstanding_.size());
	client_.reset();
	// QEMU drops every window of a connection that closes; a dead QEMU
	// shows none: nothing sent is still reachable.
	outstanding_.clear();
	have_.clear();
	max_windows_ = 0;
	epoch_++;
}

void device_server::on_reply(const unsigned char *raw)
{
	vhost_pci_msg m;
	std::memcpy(&m, raw, sizeof(m));
	const std::uint32_t type = le32toh(m.type), arg = le32toh(m.arg), seq = le32toh(m.seq),
			    aux = le32toh(m.aux);
	const std::uint64_t offset = le64toh(m.offset), size = le64toh(m.size);
	auto it = outstanding_.find(seq);
	const std::uint64_t us =
		it != outstanding_.end() ? (now_ns() - it->second.sent_ns) / 1000 : 0;

	switch (type) {
	case VHOST_PCI_MSG_READY:
		client_->ready = true;
		max_windows_ = offset;
		spdlog::info("vhost-pci device: READY (protocol {}, BAR2 {:#x}, {} vectors, "
			     "at most {} windows)",
			     arg, size, aux, offset);
		break;
	case VHOST_PCI_MSG_MAP_DONE:
		stats_.last_map_us = us;
		spdlog::debug("vhost-pci device: MAP {:#x}+{:#x} done in {} us ({} windows)", offset,
			      size, us, aux);
		break;
	case VHOST_PCI_MSG_UNMAP_DONE:
		stats_.last_unmap_us = us;
		stats_.max_unmap_us = std::max(stats_.max_unmap_us, us);
		spdlog::debug("vhost-pci device: UNMAP {:#x}+{:#x} done in {} us", offset, size, us);
		break;
	case VHOST_PCI_MSG_ERROR:
		stats_.errors++;
		spdlog::error("vhost-pci device: request type {:#x} seq {} ({:#x}+{:#x}) refused: {}",
			      aux, seq, offset, size, err_name(arg));
		break;
	default:
		peer_log_.warn("vhost-pci device: unexpected message type {:#x}", type);
		return;
	}
	if (it != outstanding_.end())
		outstanding_.erase(it);
}

void device_server::handle_client()
{
	if (!client_)
		return;
	char buf[4096];
	// A partial message stays in rx for the next call.
	for (std::size_t got = 0; got < read_budget;) {
		const ssize_t n = ::recv(client_->sock.get(), buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0) {
			got += static_cast<std::size_t>(n);
			client_->rx.append(buf, static_cast<std::size_t>(n));
			while (client_ && client_->rx.size() >= sizeof(vhost_pci_msg)) {
				on_reply(reinterpret_cast<const unsigned char *>(client_->rx.data()));
				client_->rx.erase(0, sizeof(vhost_pci_msg));
			}
			continue;
		}
		if (n == 0)
			return drop_client("disconnected");
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN)
			return;
		return drop_client(std::strerror(errno));
	}
}

int device_server::doorbell_target(unsigned vector) const
{
	const unique_fd &o = doorbell_override_.at(vector);
	return o ? o.get() : doorbells_.at(vector).get();
}

int device_server::vector_source(unsigned vector) const
{
	const unique_fd &o = vector_override_.at(vector);
	return o ? o.get() : own_vectors_.at(vector).get();
}

void device_server::set_doorbell(unsigned vector, int fd)
{
	doorbell_override_.at(vector) = fd >= 0 ? dup_fd(fd, "doorbell target") : unique_fd{};
	if (!client_)
		return;
	try {
		send(VHOST_PCI_MSG_SET_DOORBELL, vector, 0, 0, 0, doorbell_target(vector));
	} catch (const std::system_error &e) {
		drop_client(e.what());
	}
}

void device_server::set_vector(unsigned vector, int fd)
{
	vector_override_.at(vector) = fd >= 0 ? dup_fd(fd, "vector source") : unique_fd{};
	if (!client_)
		return;
	try {
		send(VHOST_PCI_MSG_SET_VECTOR, vector, 0, 0, 0, vector_source(vector));
	} catch (const std::system_error &e) {
		drop_client(e.what());
	}
}

void device_server::notify_vm2(unsigned vector)
{
	if (vector >= num_vectors_)
		throw std::out_of_range("vhost-pci device: vector " + std::to_string(vector));
	eventfd_signal(vector_source(vector));
}

std::uint32_t device_server::apply(const window_ops &ops)
{
	std::uint32_t last = 0;
	for (const file_window &u : ops.unmap) {
		last = send(VHOST_PCI_MSG_UNMAP, 0, u.offset, u.size, 0, -1);
		stats_.unmaps++;
	}
	for (const file_window &m : ops.map) {
		last = send(VHOST_PCI_MSG_MAP, m.perm, m.offset, m.size, 0, -1);
		stats_.maps++;
	}
	have_ = want_;
	return last;
}

std::uint32_t device_server::sync_windows(const std::vector<file_window> &want)
{
	want_ = normalize_windows(want);
	for (const file_window &w : want_)
		if (w.offset + w.size > ctrl_offset_)
			throw std::invalid_argument("vhost-pci device: window reaches the control area");
	if (!client_)
		return 0;
	try {
		return apply(diff_windows(have_, want_));
	} catch (const std::system_error &e) {
		drop_client(e.what());
		return 0;
	}
}

bool device_server::done(std::uint32_t seq) const noexcept
{
	if (seq == 0 || outstanding_.empty())
		return true;
	// Sequence numbers only grow (a wrap after 4e9 requests is not handled)
	return outstanding_.begin()->first > seq;
}

} // namespace vpci
