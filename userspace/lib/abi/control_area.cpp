// SPDX-License-Identifier: GPL-2.0-only OR MIT
#include "control_area.hpp"

#include <cctype>
#include <cstdio>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "shm_file.hpp"

namespace vpci {

std::optional<mac_addr> parse_mac(const std::string &s)
{
	mac_addr m;
	int n = 0;

	if (s.size() != 17 ||
	    std::sscanf(s.c_str(), "%2hhx:%2hhx:%2hhx:%2hhx:%2hhx:%2hhx%n", &m[0], &m[1], &m[2],
			&m[3], &m[4], &m[5], &n) != 6 ||
	    n != 17)
		return std::nullopt;
	for (std::size_t i = 0; i < 17; i++)
		if ((i % 3 == 2) != (s[i] == ':') || (i % 3 != 2 && !std::isxdigit(static_cast<unsigned char>(s[i]))))
			return std::nullopt;
	return m;
}

std::string mac_to_string(const mac_addr &m)
{
	return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3],
			   m[4], m[5]);
}

#define VPCI_HDR_FIELD(f) header_field{#f, offsetof(vpci_ctrl_hdr, f), sizeof(vpci_ctrl_hdr::f)}
static constexpr header_field hdr_fields[] = {
	VPCI_HDR_FIELD(magic),		 VPCI_HDR_FIELD(abi_version),
	VPCI_HDR_FIELD(total_size),	 VPCI_HDR_FIELD(peer_mem_size),
	VPCI_HDR_FIELD(ctrl_offset),	 VPCI_HDR_FIELD(max_queue_pairs),
	VPCI_HDR_FIELD(msg_ring_size),	 VPCI_HDR_FIELD(backend_peer_id),
	VPCI_HDR_FIELD(num_vectors),
};
#undef VPCI_HDR_FIELD

std::span<const header_field> header_fields()
{
	return hdr_fields;
}

const header_field *find_header_field(const std::string &name)
{
	for (const auto &f : hdr_fields)
		if (name == f.name)
			return &f;
	return nullptr;
}

template <typename T> static T &field_at(const vpci_ctrl_hdr &h, std::size_t off)
{
	auto *p = reinterpret_cast<unsigned char *>(const_cast<vpci_ctrl_hdr *>(&h)) + off;
	return *reinterpret_cast<T *>(p);
}

std::uint64_t header_get(const vpci_ctrl_hdr &h, const header_field &f)
{
	switch (f.size) {
	case 2: return le_load(field_at<std::uint16_t>(h, f.offset));
	case 4: return le_load(field_at<std::uint32_t>(h, f.offset));
	case 8: return le_load(field_at<std::uint64_t>(h, f.offset));
	}
	throw std::logic_error("bad header field size");
}

void header_set(vpci_ctrl_hdr &h, const header_field &f, std::uint64_t v)
{
	if (f.size < 8 && v >> (8 * f.size))
		throw std::out_of_range(fmt::format("value {:#x} does not fit in the {}-byte field {}",
						    v, f.size, f.name));
	switch (f.size) {
	case 2: return le_store(field_at<std::uint16_t>(h, f.offset), static_cast<std::uint16_t>(v));
	case 4: return le_store(field_at<std::uint32_t>(h, f.offset), static_cast<std::uint32_t>(v));
	case 8: return le_store(field_at<std::uint64_t>(h, f.offset), v);
	}
	throw std::logic_error("bad header field size");
}

control_area control_area::map(int fd, std::uint64_t file_size, bool writable)
{
	if (file_size < VPCI_CTRL_SIZE || (file_size - VPCI_CTRL_SIZE) % 4096 != 0)
		throw std::runtime_error(fmt::format(
			"file of {} bytes cannot hold a page-aligned {}-byte control area at its end",
			file_size, VPCI_CTRL_SIZE));
	return control_area(
		mmap_area::map_shared(fd, VPCI_CTRL_SIZE, file_size - VPCI_CTRL_SIZE, writable));
}

control_area control_area::create(const shm_file &file, const ctrl_params &p)
{
	if (p.max_queue_pairs < 1 || p.max_queue_pairs > VPCI_MAX_QUEUE_PAIRS)
		throw std::invalid_argument(fmt::format("queue pairs {} not in 1..{}",
							p.max_queue_pairs, VPCI_MAX_QUEUE_PAIRS));
	if (p.max_mtu < 68)
		throw std::invalid_argument(fmt::format("max MTU {} below 68", p.max_mtu));

	control_area a = map(file.fd(), file.file_size(), true);
	vpci_ctrl &c = a.raw();

	// Nobody can look yet (the ivshmem server is not listening), so plain
	// memset is fine; the magic is published last.
	std::memset(&c, 0, sizeof(c));
	le_store(c.hdr.abi_version, VPCI_ABI_VERSION);
	le_store(c.hdr.total_size, VPCI_CTRL_SIZE);
	le_store(c.hdr.peer_mem_size, file.ram_size());
	le_store(c.hdr.ctrl_offset, file.ctrl_offset());
	le_store(c.hdr.max_queue_pairs, p.max_queue_pairs);
	le_store(c.hdr.msg_ring_size, static_cast<std::uint16_t>(VPCI_MSG_RING_SIZE));
	le_store(c.hdr.backend_peer_id, 0);
	le_store(c.hdr.num_vectors, static_cast<std::uint16_t>(VPCI_NUM_VECTORS(p.max_queue_pairs)));

	le_store(c.backend.status, 0);
	le_store(c.backend.features, 0);
	std::memcpy(c.backend.mac, p.mac.data(), p.mac.size());
	le_store(c.backend.max_mtu, p.max_mtu);
	le_store(c.backend.link, static_cast<std::uint16_t>(p.link_up ? VPCI_LINK_UP : 0));
	le_store(c.backend.num_queue_pairs, 0);
	// Pairs with the driver's acquire load of generation / magic.
	le_store(c.backend.generation, 1, std::memory_order_release);
	le_store(c.hdr.magic, VPCI_CTRL_MAGIC, std::memory_order_release);
	return a;
}

void control_area::bump_generation() noexcept
{
	auto &g = raw().backend.generation;
	// Release: the driver that sees the new generation sees the fields
	// written before it.
	le_store(g, le_load(g) + 1, std::memory_order_release);
}

void control_area::set_link(bool up) noexcept
{
	le_store(raw().backend.link, static_cast<std::uint16_t>(up ? VPCI_LINK_UP : 0));
	bump_generation();
}

bool control_area::link_up() const noexcept
{
	return le_load(raw().backend.link) & VPCI_LINK_UP;
}

std::uint32_t control_area::generation() const noexcept
{
	return le_load(raw().backend.generation);
}

driver_state control_area::read_driver() const noexcept
{
	auto &d = raw().driver;
	driver_state s;
	// Acquire on status pairs with the driver's release store of it, on
	// generation_seen with its release store after publishing vq_state.
	s.status = le_load(d.status, std::memory_order_acquire);
	s.generation_seen = le_load(d.generation_seen, std::memory_order_acquire);
	s.device_features = le_load(d.device_features);
	s.mtu = le_load(d.mtu);
	return s;
}

} // namespace vpci
