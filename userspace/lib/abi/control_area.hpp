// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file control_area.hpp
 * Mapping and backend-side access to the control area (the last
 * VPCI_CTRL_SIZE bytes of the memory file, see <linux/vhost_pci_net.h>).
 */
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

#include "abi.hpp"
#include "fd.hpp"

namespace vpci {

class shm_file;

using mac_addr = std::array<std::uint8_t, 6>;

/** Parse "xx:xx:xx:xx:xx:xx"; nullopt if malformed. */
std::optional<mac_addr> parse_mac(const std::string &s);
std::string mac_to_string(const mac_addr &m);

/** What the backend publishes when it initialises the area. */
struct ctrl_params {
	std::uint16_t max_queue_pairs = 1;
	mac_addr mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x02};
	std::uint16_t max_mtu = 1500;
	bool link_up = true;
};

/** A copy of the driver's section, read field by field exactly once. */
struct driver_state {
	std::uint32_t status = 0;
	std::uint32_t generation_seen = 0;
	std::uint64_t device_features = 0;
	std::uint16_t mtu = 0;

	bool bound() const noexcept { return status & VPCI_DS_BOUND; }
	bool up() const noexcept { return status & VPCI_DS_UP; }
	bool operator==(const driver_state &) const = default;
};

/** One field of &struct vpci_ctrl_hdr, for tools that print or patch it. */
struct header_field {
	const char *name;
	std::size_t offset;
	std::size_t size;
};

/** The named fields of the header (reserved excluded), in layout order. */
std::span<const header_field> header_fields();
/** Look a header field up by its uapi name. */
const header_field *find_header_field(const std::string &name);
std::uint64_t header_get(const vpci_ctrl_hdr &h, const header_field &f);
void header_set(vpci_ctrl_hdr &h, const header_field &f, std::uint64_t v);

/**
 * The control area mapped from a memory file.  The mapping covers only the
 * control area, at file offset file_size - VPCI_CTRL_SIZE.
 */
class control_area {
public:
	/** Map the area of @p fd (a file of @p file_size bytes) as-is. */
	static control_area map(int fd, std::uint64_t file_size, bool writable);
	/** Map the area of @p file and initialise it for the backend. */
	static control_area create(const shm_file &file, const ctrl_params &p);

	vpci_ctrl &raw() const noexcept { return *static_cast<vpci_ctrl *>(map_.data()); }

	/** Set VPCI_LINK_UP, then bump the generation (release). */
	void set_link(bool up) noexcept;
	bool link_up() const noexcept;
	std::uint32_t generation() const noexcept;
	/** Snapshot of the driver's section (status read with acquire). */
	driver_state read_driver() const noexcept;
	/** Increment backend.generation with release (after other stores). */
	void bump_generation() noexcept;

private:
	explicit control_area(mmap_area m) : map_(std::move(m)) {}

	mmap_area map_;
};

} // namespace vpci
