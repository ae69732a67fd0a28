/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/*
 * Every struct and field of <linux/vhost_pci_net.h>, as X-macros, so that
 * the same list is evaluated by the C compiler (abi_c.c) and the C++
 * compiler (test_abi.cpp) and the results compared.
 */
#ifndef VPCI_TESTS_ABI_FIELDS_H
#define VPCI_TESTS_ABI_FIELDS_H

#include <stddef.h>
#include <linux/vhost_pci_net.h>

#define VPCI_ABI_STRUCTS(S) \
	S(vpci_ctrl_hdr) S(vpci_backend_state) S(vpci_driver_state) S(vpci_vq_config) \
	S(vpci_vq_state) S(vpci_msg) S(vpci_msg_ring) S(vpci_ctrl)

#define VPCI_ABI_FIELDS(F) \
	F(vpci_ctrl_hdr, magic) F(vpci_ctrl_hdr, abi_version) F(vpci_ctrl_hdr, total_size) \
	F(vpci_ctrl_hdr, peer_mem_size) F(vpci_ctrl_hdr, ctrl_offset) \
	F(vpci_ctrl_hdr, max_queue_pairs) F(vpci_ctrl_hdr, msg_ring_size) \
	F(vpci_ctrl_hdr, backend_peer_id) F(vpci_ctrl_hdr, num_vectors) F(vpci_ctrl_hdr, reserved) \
	F(vpci_backend_state, generation) F(vpci_backend_state, status) \
	F(vpci_backend_state, features) F(vpci_backend_state, mac) F(vpci_backend_state, max_mtu) \
	F(vpci_backend_state, link) F(vpci_backend_state, num_queue_pairs) \
	F(vpci_backend_state, call_peer_id) F(vpci_backend_state, call_peer_probe) \
	F(vpci_backend_state, reserved) \
	F(vpci_driver_state, status) F(vpci_driver_state, generation_seen) \
	F(vpci_driver_state, device_features) F(vpci_driver_state, mtu) \
	F(vpci_driver_state, reserved) \
	F(vpci_vq_config, desc) F(vpci_vq_config, avail) F(vpci_vq_config, used) \
	F(vpci_vq_config, num) F(vpci_vq_config, base) F(vpci_vq_config, enabled) \
	F(vpci_vq_config, notify) F(vpci_vq_config, epoch) F(vpci_vq_config, reserved) \
	F(vpci_vq_state, last_avail_idx) F(vpci_vq_state, used_idx) F(vpci_vq_state, stopped) \
	F(vpci_vq_state, reserved) \
	F(vpci_msg, type) F(vpci_msg, perm) F(vpci_msg, queue) F(vpci_msg, seq) \
	F(vpci_msg, iova) F(vpci_msg, size) F(vpci_msg, bar_offset) \
	F(vpci_msg_ring, prod) F(vpci_msg_ring, pad0) F(vpci_msg_ring, cons) \
	F(vpci_msg_ring, pad1) F(vpci_msg_ring, ent) \
	F(vpci_ctrl, hdr) F(vpci_ctrl, backend) F(vpci_ctrl, driver) F(vpci_ctrl, pad0) \
	F(vpci_ctrl, vq_config) F(vpci_ctrl, vq_state) F(vpci_ctrl, b2d) F(vpci_ctrl, d2b) \
	F(vpci_ctrl, reserved)

/* "sizeof(s)", "offsetof(s, f)" and "sizeof(s.f)" entries, in list order. */
#define VPCI_ABI_ENTRY_STRUCT(s) {"sizeof(" #s ")", sizeof(struct s)},
#define VPCI_ABI_ENTRY_FIELD(s, f) \
	{"offsetof(" #s ", " #f ")", offsetof(struct s, f)}, \
	{"sizeof(" #s "." #f ")", sizeof(((struct s *)0)->f)},

struct vpci_abi_entry {
	const char *name;
	size_t value;
};

#ifdef __cplusplus
extern "C" {
#endif
/** The table as computed by the C compiler (abi_c.c). */
extern const struct vpci_abi_entry vpci_abi_c[];
extern const size_t vpci_abi_c_count;
#ifdef __cplusplus
}
#endif

#endif
