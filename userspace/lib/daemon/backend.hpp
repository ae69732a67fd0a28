// SPDX-License-Identifier: GPL-2.0-only OR MIT
/**
 * @file backend.hpp
 * The vhost-pci backend daemon's state and epoll loop, kept in the library
 * so tests can drive it in-process with run_once().
 *
 * Control socket: newline-delimited JSON, one reply line per request line.
 *   {"cmd":"status"}
 *     -> {"ok":true,"vm2_connected":B,"client_id":N,"link":"up"|"down",
 *         "generation":N,"driver":{"status":N,"bound":B,"up":B,
 *         "features":N,"mtu":N},"mem_file":S,"file_size":N,
 *         "peer_mem_size":N,"cpu_seconds":X,"notify":{...}, with a
 *         front-end also "frontend":{...},"iotlb":{...}}
 *     ("frontend" is VM1's session; the key stays: scripts and selftests
 *     read it)
 *   {"cmd":"link","state":"up"|"down"}  -> {"ok":true}
 *   anything else -> {"ok":false,"error":"..."}; the connection stays open.
 */
#pragma once

#include <cstdint>
#include <array>
#include <chrono>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "control_area.hpp"
#include "control_conn.hpp"
#include "device_server.hpp"
#include "event_loop.hpp"
#include "fd.hpp"
#include "vm1_session.hpp"
#include "ivshmem_server.hpp"
#include "shm_file.hpp"

namespace vpci {

/** What VM2's QEMU runs as the vhost-pci function. */
enum class vm2_device {
	/** Stock QEMU's ivshmem-doorbell: BAR2 maps all of VM1's RAM. */
	ivshmem,
	/** The project's vhost-pci device: BAR2 shows the mapped windows only. */
	vhost_pci,
};

struct backend_config {
	std::string ivshmem_socket;
	vm2_device device = vm2_device::ivshmem;
	/** vm2_device::vhost_pci: the socket VM2's device chardev connects to. */
	std::string device_socket;
	std::string mem_file;
	std::uint64_t ram_size = 128ULL << 20;
	ctrl_params ctrl;
	/** Empty: no control socket. */
	std::string control_socket;
	/** Empty: no vhost-user front-end (VM1) socket. */
	std::string vhost_user_socket;
	/** How long an IOTLB invalidation may wait for the driver's ack. */
	int inval_timeout_ms = 2000;
	/** Shadow IOTLB entries at most (the driver's IOTLB holds 65,536). */
	std::size_t shadow_max = 65536;
	/** How long GET_VRING_BASE waits for the driver to see the stop. */
	int vring_base_timeout_ms = 1000;
	/**
	 * Re-announce peer 0 ("peer 0 gone" + all vectors) to a connected VM2
	 * when VM1's call fds change.  Off (default): VM2 keeps the set it got
	 * at connect and changed calls are relayed.  QEMU 7.2 corrupts its
	 * heap when a gone peer id is added again (docs/backend.md), so only
	 * turn this on for a QEMU that is fixed.
	 */
	bool reannounce_peer = false;
};

class backend : private vm1_session_events, private window_port, private control_target {
public:
	/** Windows status() lists in device.window_list, at most (all are counted). */
	static constexpr std::size_t status_windows = 256;

	/**
	 * Create/check the memory file, initialise the control area and start
	 * listening on the ivshmem (and control) sockets.  Throws on failure.
	 */
	explicit backend(const backend_config &cfg);

	/** Block SIGTERM/SIGINT and handle them through a signalfd: stop. */
	void handle_signals();
	/** Wait up to @p timeout_ms (-1: forever) and handle ready events. */
	void run_once(int timeout_ms);
	/** run_once() until stop() or a signal. */
	void run();
	void stop() noexcept { stopping_ = true; }
	bool stopping() const noexcept { return stopping_; }

	/** Handle one control request line, return the reply (no newline). */
	std::string handle_control_line(const std::string &line);
	nlohmann::json status() const override;
	/** Set the link, bump the generation and raise VM2's config vector. */
	void set_link(bool up) override;

	control_area &control() noexcept { return ctrl_; }
	/** The ivshmem server (vm2_device::ivshmem only; throws otherwise). */
	ivshmem_server &ivshmem() { return ivs_.value(); }
	/** The vhost-pci device server (vm2_device::vhost_pci only; throws otherwise). */
	device_server &device() { return dev_.value(); }
	bool device_mode() const noexcept { return dev_.has_value(); }
	const shm_file &memory() const noexcept { return shm_; }
	/** The vhost-user session; null without --vhost-user-socket. */
	vm1_session *vhost_user() noexcept { return vm1_.get(); }

private:
	enum class tag : std::uint32_t {
		ivs_listen,
		ivs_client,
		doorbell_config,
		ctl_listen,
		ctl_client,
		signal,
		vu_listen,
		vu_client,
		kick,
		doorbell_queue,
		stale_call,
		call_probe,
		dev_listen,
		dev_client,
	};

	void watch(int fd, tag t);
	void unwatch(int fd);
	void dispatch(tag t, int fd);
	void on_config_doorbell();
	void on_ctl_client(int fd);
	/** A control client whose handler threw: closed and forgotten. */
	void drop_ctl_client(int fd);
	// vm1_session_events
	void notify_driver() override;
	void queue_fds_changed(unsigned q) override;
	void sync_vm1_watch();
	/** VM1's socket hung up while paused (a reply waits for VM2). */
	void on_vm1_hangup(int fd);
	void on_kick(int fd);
	void on_queue_doorbell(int fd);
	/** Bring the notification wiring in line with VM1's fds and VM2. */
	void rewire();
	void wire_own_vectors();
	void wire_peer_vectors();
	void wire_kick(unsigned q);
	void wire_stale_call(unsigned q);
	void on_stale_call(int fd);
	void start_call_peer(const std::vector<int> &fds);
	void on_call_probe();
	void publish_call_peer();
	void reset_call_peer();
	// vm2_device::vhost_pci
	void rewire_device();
	void on_device_client();
	std::uint32_t sync_windows(const std::vector<file_window> &want) override;
	bool windows_done(std::uint32_t seq) const override;
	bool vm2_connected() const noexcept;
	unsigned num_vectors() const noexcept;
	int doorbell_fd(unsigned vector) const;
	void notify_vm2(unsigned vector);

	shm_file shm_;
	control_area ctrl_;
	std::optional<ivshmem_server> ivs_;
	std::optional<device_server> dev_;
	/** Device mode: kick/call sequence numbers sent as vectors/doorbells. */
	std::array<std::uint64_t, VPCI_MAX_QUEUES> dev_kick_seq_{}, dev_call_seq_{};
	std::uint64_t dev_epoch_ = ~0ULL;
	std::optional<unix_listener> ctl_listener_;
	std::map<int, control_conn> ctl_clients_;
	/** Clients with whole request lines left over when their budget ran out. */
	std::set<int> ctl_more_;
	/** Clients served in this turn of run_once() (one share each). */
	std::set<int> ctl_served_;
	/** Handles into it (watches_, the timers) are members declared after it. */
	event_loop loop_;
	std::optional<signal_set> signals_;
	driver_state last_driver_;
	std::optional<unix_listener> vu_listener_;
	/** VM1's session (vhost-user front-end); null without --vhost-user-socket. */
	std::unique_ptr<vm1_session> vm1_;
	int vu_watched_fd_ = -1;
	bool vu_paused_ = false;
	/** Listeners paused after a failed accept, resumed by rest_timer_. */
	std::vector<int> resting_;
	/** Control-client failures outside the loop's callbacks (loop_.errors() has those). */
	std::uint64_t handler_errors_ = 0;
	void rest_listener(int fd);
	void end_rest();
	void nudge_probe();
	/** Notification wiring of one queue, as last evaluated. */
	struct queue_wiring {
		/** vring::kick_seq / call_seq evaluated (~0: never). */
		std::uint64_t kick_seq = ~0ULL, call_seq = ~0ULL;
		/** ivshmem epoch and own-vector count the kick was evaluated for. */
		std::uint64_t epoch = ~0ULL;
		bool vec_sent = false;
		/** vring::call_seq whose fd peer 0's vector holds (0: a doorbell). */
		std::uint64_t announced_call_seq = 0;
		/** Our dup of VM1's kick fd while relaying it. */
		unique_fd relay_kick;
		/**
		 * Our dup of a VM1 call fd VM2 still has as peer 0's vector
		 * after VM1 replaced it (no re-announcement): watched, and
		 * relayed to VM1's current call fd.
		 */
		unique_fd stale_call;
		std::uint16_t kick = VPCI_NOTIFY_NONE;
	};
	std::array<queue_wiring, VPCI_MAX_QUEUES> wire_;
	bool reannounce_peer_;
	/**
	 * The peer VM2 rings for queue vectors (0: peer 0).  Without
	 * re-announcing peer 0, new VM1 call fds go to VM2 as a fresh peer;
	 * it is used once VM2's driver rang its vector 0 (the probe), which
	 * proves VM2's QEMU attached it.
	 */
	std::uint16_t call_peer_ = 0;
	/** Fresh peer announced, waiting for the driver's probe (0: none). */
	std::uint16_t probe_peer_ = 0;
	/** Vector 0 of probe_peer_: readable once the driver rang it. */
	unique_fd probe_fd_;
	/** vring::call_seq per queue that probe_peer_'s vectors carry. */
	std::array<std::uint64_t, VPCI_MAX_QUEUES> probe_seq_{};

	/** ivshmem epoch call_peer_ belongs to. */
	std::uint64_t call_epoch_ = 0;
	/** Since when peer 0's re-announcement waits for a message burst. */
	std::optional<std::chrono::steady_clock::time_point> holding_since_;
	bool stopping_ = false;
	/** Last, so they go first: every fd the loop watches, by number. */
	std::map<int, event_loop::watch> watches_;
	event_loop::timer rest_timer_ = loop_.add_timer([this] { end_rest(); });
	/** Raises VM2's config vector again while the probe waits. */
	event_loop::timer probe_timer_ = loop_.add_timer([this] { nudge_probe(); });
	/** VM1's session's next deadline (vm1_session::deadline()). */
	event_loop::timer vm1_timer_ = loop_.add_timer([] {});
};

} // namespace vpci
