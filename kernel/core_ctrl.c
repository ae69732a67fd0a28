// SPDX-License-Identifier: GPL-2.0
/*
 * vhost_pci_net core: control-area header validation.
 *
 * Part of the driver core that also compiles in userspace (against
 * userspace/kshim) for unit tests and fuzzing: only vpci_core.h includes.
 */
#include "vpci_core.h"

/**
 * vpci_ctrl_check_hdr() - validate a private copy of the control area header
 * @hdr: header copied out of shared memory
 * @bar_len: size of BAR2 in bytes
 * @why: set to a short reason when the header is rejected
 *
 * The control area must sit exactly at the end of the BAR, behind the peer
 * memory it describes, with the geometry this driver was built for.
 *
 * Return: 0 if @hdr describes a usable v1 control area, -ENODEV otherwise.
 */
int vpci_ctrl_check_hdr(const struct vpci_ctrl_hdr *hdr, u64 bar_len,
			const char **why)
{
	u64 total = le64_to_cpu(hdr->total_size);
	u64 peer = le64_to_cpu(hdr->peer_mem_size);
	u64 off = le64_to_cpu(hdr->ctrl_offset);
	u16 qp = le16_to_cpu(hdr->max_queue_pairs);

	if (le32_to_cpu(hdr->magic) != VPCI_CTRL_MAGIC) {
		*why = "no control area (bad magic)";
		return -ENODEV;
	}
	if (le32_to_cpu(hdr->abi_version) != VPCI_ABI_VERSION) {
		*why = "unsupported control area ABI version";
		return -ENODEV;
	}
	if (total != VPCI_CTRL_SIZE || bar_len < total ||
	    off != bar_len - total) {
		*why = "control area size or offset does not match the BAR";
		return -ENODEV;
	}
	if (!peer || !PAGE_ALIGNED(peer) || peer > off) {
		*why = "peer memory size overlaps the control area or the BAR end";
		return -ENODEV;
	}
	if (!qp || qp > VPCI_MAX_QUEUE_PAIRS ||
	    le16_to_cpu(hdr->num_vectors) != VPCI_NUM_VECTORS(qp)) {
		*why = "queue pair or vector count out of range";
		return -ENODEV;
	}
	if (le16_to_cpu(hdr->msg_ring_size) != VPCI_MSG_RING_SIZE) {
		*why = "unsupported message ring size";
		return -ENODEV;
	}
	return 0;
}

/**
 * vpci_ctrl_check_features() - can the driver serve VM1 with @features
 * @features: the features VM1 acknowledged, as the backend published them
 * @why: set to a short reason when they are refused
 *
 * The datapath assumes VIRTIO 1.x rings and the 12-byte
 * virtio_net_hdr_mrg_rxbuf: a legacy VM1 (no VERSION_1) uses a 10-byte
 * header without MRG_RXBUF, which would be misparsed.  (Bits the driver
 * did not offer may be there: VM1 can negotiate before the driver binds,
 * against the backend's defaults; the datapath ignores them.)
 *
 * Return: 0 if the queues may run, -EPROTO otherwise.
 */
int vpci_ctrl_check_features(u64 features, const char **why)
{
	if (!(features & (1ULL << VPCI_F_VERSION_1))) {
		*why = "VM1 did not accept VIRTIO_F_VERSION_1 (legacy driver)";
		return -EPROTO;
	}
	return 0;
}
