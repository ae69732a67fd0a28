/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vhost_pci_net tracepoints (/sys/kernel/tracing/events/vhost_pci_net/):
 * faults, IOTLB misses, updates and invalidations, notifications both ways.
 * Arguments are plain values so that this header needs nothing of vpci.h.
 * Instantiated by CREATE_TRACE_POINTS in main.c; the Kbuild adds -I$(src)
 * for it, so TRACE_INCLUDE_PATH is "." both in tree and out of tree.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM vhost_pci_net

#if !defined(_VPCI_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _VPCI_TRACE_H

#include <linux/tracepoint.h>

TRACE_EVENT(vpci_fault,
	TP_PROTO(int ifindex, u16 queue, int err, u32 reason, u64 iova,
		 u64 len, u32 access),
	TP_ARGS(ifindex, queue, err, reason, iova, len, access),
	TP_STRUCT__entry(
		__field(int, ifindex)
		__field(u16, queue)
		__field(int, err)
		__field(u32, reason)
		__field(u64, iova)
		__field(u64, len)
		__field(u32, access)
	),
	TP_fast_assign(
		__entry->ifindex = ifindex;
		__entry->queue = queue;
		__entry->err = err;
		__entry->reason = reason;
		__entry->iova = iova;
		__entry->len = len;
		__entry->access = access;
	),
	TP_printk("ifindex=%d queue=%u err=%d reason=%u iova=%#llx len=%llu access=%u",
		  __entry->ifindex, __entry->queue, __entry->err,
		  __entry->reason, __entry->iova, __entry->len,
		  __entry->access)
);

TRACE_EVENT(vpci_iotlb_miss,
	TP_PROTO(int ifindex, u16 queue, u64 iova, u32 perm),
	TP_ARGS(ifindex, queue, iova, perm),
	TP_STRUCT__entry(
		__field(int, ifindex)
		__field(u16, queue)
		__field(u64, iova)
		__field(u32, perm)
	),
	TP_fast_assign(
		__entry->ifindex = ifindex;
		__entry->queue = queue;
		__entry->iova = iova;
		__entry->perm = perm;
	),
	TP_printk("ifindex=%d queue=%u iova=%#llx perm=%u",
		  __entry->ifindex, __entry->queue, __entry->iova,
		  __entry->perm)
);

TRACE_EVENT(vpci_iotlb_update,
	TP_PROTO(int ifindex, u64 iova, u64 size, u64 bar_offset, u32 perm,
		 int err),
	TP_ARGS(ifindex, iova, size, bar_offset, perm, err),
	TP_STRUCT__entry(
		__field(int, ifindex)
		__field(u64, iova)
		__field(u64, size)
		__field(u64, bar_offset)
		__field(u32, perm)
		__field(int, err)
	),
	TP_fast_assign(
		__entry->ifindex = ifindex;
		__entry->iova = iova;
		__entry->size = size;
		__entry->bar_offset = bar_offset;
		__entry->perm = perm;
		__entry->err = err;
	),
	TP_printk("ifindex=%d iova=%#llx size=%#llx bar_offset=%#llx perm=%u err=%d",
		  __entry->ifindex, __entry->iova, __entry->size,
		  __entry->bar_offset, __entry->perm, __entry->err)
);

TRACE_EVENT(vpci_iotlb_invalidate,
	TP_PROTO(int ifindex, u64 iova, u64 size, u32 seq, int err, bool acked),
	TP_ARGS(ifindex, iova, size, seq, err, acked),
	TP_STRUCT__entry(
		__field(int, ifindex)
		__field(u64, iova)
		__field(u64, size)
		__field(u32, seq)
		__field(int, err)
		__field(bool, acked)
	),
	TP_fast_assign(
		__entry->ifindex = ifindex;
		__entry->iova = iova;
		__entry->size = size;
		__entry->seq = seq;
		__entry->err = err;
		__entry->acked = acked;
	),
	TP_printk("ifindex=%d iova=%#llx size=%#llx seq=%u err=%d acked=%d",
		  __entry->ifindex, __entry->iova, __entry->size,
		  __entry->seq, __entry->err, __entry->acked)
);

/* VM1 kicked a queue (its ioeventfd, our MSI-X vector) */
TRACE_EVENT(vpci_kick,
	TP_PROTO(int ifindex, u16 queue),
	TP_ARGS(ifindex, queue),
	TP_STRUCT__entry(
		__field(int, ifindex)
		__field(u16, queue)
	),
	TP_fast_assign(
		__entry->ifindex = ifindex;
		__entry->queue = queue;
	),
	TP_printk("ifindex=%d queue=%u", __entry->ifindex, __entry->queue)
);

/* Used ring published: VM1 interrupted (sent) or not (it suppressed it) */
TRACE_EVENT(vpci_notify,
	TP_PROTO(int ifindex, u16 queue, u16 used_idx, bool sent),
	TP_ARGS(ifindex, queue, used_idx, sent),
	TP_STRUCT__entry(
		__field(int, ifindex)
		__field(u16, queue)
		__field(u16, used_idx)
		__field(bool, sent)
	),
	TP_fast_assign(
		__entry->ifindex = ifindex;
		__entry->queue = queue;
		__entry->used_idx = used_idx;
		__entry->sent = sent;
	),
	TP_printk("ifindex=%d queue=%u used_idx=%u sent=%d",
		  __entry->ifindex, __entry->queue, __entry->used_idx,
		  __entry->sent)
);

#endif /* _VPCI_TRACE_H */

/* Outside the guard: define_trace.h includes this file again. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE trace
#include <trace/define_trace.h>
