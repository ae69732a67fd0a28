/* SPDX-License-Identifier: GPL-2.0-only OR MIT */
/* The ABI table evaluated by the C compiler; see abi_fields.h. */
#include "abi_fields.h"

const struct vpci_abi_entry vpci_abi_c[] = {
	VPCI_ABI_STRUCTS(VPCI_ABI_ENTRY_STRUCT)
	VPCI_ABI_FIELDS(VPCI_ABI_ENTRY_FIELD)
};
const size_t vpci_abi_c_count = sizeof(vpci_abi_c) / sizeof(vpci_abi_c[0]);
