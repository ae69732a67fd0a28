// SPDX-License-Identifier: GPL-2.0-only OR MIT
/*
 * vpci-backend: the host daemon of vhost-pci.  Creates the shared memory
 * file, publishes the control area and serves VM2's ivshmem-doorbell
 * device; a JSON control socket lets tools query and change state.
 */
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "backend.hpp"

namespace {

/** Tell systemd (sd_notify); a failure is logged, never fatal. */
void notify(const std::string &state)
{
	const int r = sd_notify(0, state.c_str());
	if (r < 0)
		spdlog::warn("sd_notify: {}", std::strerror(-r));
}

void write_ready_file(const std::string &path)
{
	const std::string tmp = path + ".tmp";
	{
		std::ofstream f(tmp, std::ios::trunc);
		f << ::getpid() << '\n';
		if (!f.flush())
			throw std::runtime_error("cannot write ready file " + tmp);
	}
	std::filesystem::rename(tmp, path);
}

} // namespace

int main(int argc, char **argv)
{
	vpci::backend_config cfg;
	std::string ram_size_str = "128M", mac = vpci::mac_to_string(cfg.ctrl.mac);
	std::string link = "up", log_level = "info", ready_file;
	unsigned queues = 1, mtu = 1500;
	bool foreground = false;

	CLI::App app{"vhost-pci backend: serves VM1's memory file and the control area to VM2 "
		     "over QEMU's ivshmem-doorbell protocol."};
	app.option_defaults()->always_capture_default();
	std::string vm2_device = "ivshmem";
	app.add_option("--vm2-device", vm2_device,
		       "VM2's vhost-pci function: ivshmem (stock QEMU's ivshmem-doorbell, BAR2 "
		       "maps all of VM1's RAM, the driver enforces VM1's IOMMU) or vhost-pci "
		       "(the project's QEMU device, build/qemu: BAR2 shows only what VM1's IOMMU "
		       "maps)")
		->check(CLI::IsMember({"ivshmem", "vhost-pci"}));
	app.add_option("--ivshmem-socket", cfg.ivshmem_socket,
		       "UNIX socket VM2's ivshmem-doorbell chardev connects to (--vm2-device "
		       "ivshmem)");
	app.add_option("--device-socket", cfg.device_socket,
		       "UNIX socket VM2's vhost-pci device chardev connects to (--vm2-device "
		       "vhost-pci)");
	app.add_option("--mem-file", cfg.mem_file,
		       "VM1's memory file (created sparse, or an existing power-of-two file)")
		->required();
	app.add_option("--ram-size", cfg.ram_size,
		       "VM1 RAM size: bytes or with K/M/G/T suffix (binary), a multiple of 4096")
		->transform(CLI::AsSizeValue(false))
		->default_str(ram_size_str);
	cfg.ram_size = 128ULL << 20;
	app.add_option("--queues", queues, "queue pairs offered")
		->check(CLI::Range(1u, VPCI_MAX_QUEUE_PAIRS));
	app.add_option("--mac", mac, "MAC address of VM2's interface (unicast)")
		->check(CLI::Validator(
			[](std::string &s) -> std::string {
				auto m = vpci::parse_mac(s);
				if (!m)
					return "'" + s + "' is not a MAC address XX:XX:XX:XX:XX:XX";
				if ((*m)[0] & 1)
					return "'" + s + "' is a multicast address";
				if (*m == vpci::mac_addr{})
					return "'" + s + "' is all zeros";
				return {};
			},
			"MAC"));
	app.add_option("--mtu", mtu, "largest MTU VM2's interface may use")
		->check(CLI::Range(68u, 65535u));
	app.add_option("--link", link, "initial link state of VM2's interface")
		->check(CLI::IsMember({"up", "down"}));
	app.add_option("--control-socket", cfg.control_socket,
		       "UNIX socket for vpci-ctl (newline-delimited JSON)");
	app.add_option("--vhost-user-socket", cfg.vhost_user_socket,
		       "UNIX socket VM1's QEMU (-chardev socket,path=...) connects to as the "
		       "vhost-user front-end; without it no front-end is served");
	app.add_option("--inval-timeout-ms", cfg.inval_timeout_ms,
		       "how long an IOTLB invalidation waits for VM2's driver to ack before the "
		       "device is marked broken and VM1 gets a failure")
		->check(CLI::Range(1, 600000));
	app.add_flag("--peer-reannounce", cfg.reannounce_peer,
		     "re-announce peer 0's vectors (\"peer 0 gone\" + all) to a connected VM2 "
		     "when VM1's call eventfds change, instead of relaying those calls; QEMU 7.2 "
		     "corrupts its heap on this, see docs/backend.md");
	app.add_option("--log-level", log_level, "stderr log level")
		->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
	app.add_flag("--foreground", foreground,
		     "stay in the foreground (accepted for scripts; the daemon never "
		     "daemonises at the moment)");
	app.add_option("--ready-file", ready_file,
		       "write the pid to this file once all sockets listen");
	CLI11_PARSE(app, argc, argv);
	if (vm2_device == "vhost-pci") {
		cfg.device = vpci::vm2_device::vhost_pci;
		if (cfg.device_socket.empty()) {
			std::fprintf(stderr, "--vm2-device vhost-pci needs --device-socket\n");
			return 2;
		}
	} else if (cfg.ivshmem_socket.empty()) {
		std::fprintf(stderr, "--vm2-device ivshmem needs --ivshmem-socket\n");
		return 2;
	}

	auto logger = spdlog::stderr_color_mt("vpci-backend");
	spdlog::set_default_logger(logger);
	spdlog::set_level(spdlog::level::from_str(log_level));
	spdlog::set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ %v");

	cfg.ctrl.max_queue_pairs = static_cast<std::uint16_t>(queues);
	cfg.ctrl.mac = *vpci::parse_mac(mac);
	cfg.ctrl.max_mtu = static_cast<std::uint16_t>(mtu);
	cfg.ctrl.link_up = link == "up";

	try {
		vpci::backend be(cfg);
		be.handle_signals();
		if (!ready_file.empty())
			write_ready_file(ready_file);
		spdlog::info("ready: pid {}, {} queue pair(s), mac {}, max mtu {}, link {}",
			     ::getpid(), queues, mac, mtu, link);
		// systemd (Type=notify): ready once every socket listens, as the
		// ready file says; a no-op without $NOTIFY_SOCKET.
		notify(fmt::format("READY=1\nMAINPID={}\nSTATUS=serving {} queue pair(s), link {}",
				   ::getpid(), queues, link));
		be.run();
		notify("STOPPING=1");
		if (!ready_file.empty())
			::unlink(ready_file.c_str());
	} catch (const std::exception &e) {
		std::fprintf(stderr, "error: %s\n", e.what());
		return 1;
	}
	spdlog::info("exiting");
	return 0;
}
