/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Userspace stand-ins for the few kernel definitions the driver core
 * (kernel/core_*.c) uses, so the same sources build into unit tests,
 * fuzzers and benchmarks.  Host byte order is little-endian (x86-64).
 */
#ifndef _VPCI_KSHIM_H
#define _VPCI_KSHIM_H

#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <linux/types.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

#define le16_to_cpu(x)	le16toh((__u16)(x))
#define le32_to_cpu(x)	le32toh((__u32)(x))
#define le64_to_cpu(x)	le64toh((__u64)(x))
#define cpu_to_le16(x)	((__le16)htole16(x))
#define cpu_to_le32(x)	((__le32)htole32(x))
#define cpu_to_le64(x)	((__le64)htole64(x))

#define PAGE_SIZE		4096UL
#define PAGE_ALIGNED(x)		(((x) & (PAGE_SIZE - 1)) == 0)

#define READ_ONCE(x)		(*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, v)	(*(volatile __typeof__(x) *)&(x) = (v))

/* x86-64 is TSO: acquire/release need only stop the compiler reordering. */
#define smp_load_acquire(p)	__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define smp_store_release(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)

#define smp_rmb()		__atomic_thread_fence(__ATOMIC_ACQUIRE)
#define smp_wmb()		__atomic_thread_fence(__ATOMIC_RELEASE)
#define smp_mb()		__atomic_thread_fence(__ATOMIC_SEQ_CST)

/*
 * The core shares memory with another VM: the kernel's virt_* barriers,
 * which stay real barriers on a CONFIG_SMP=n guest.  Here the same fences.
 */
#define virt_load_acquire(p)	smp_load_acquire(p)
#define virt_store_release(p, v) smp_store_release(p, v)
#define virt_rmb()		smp_rmb()
#define virt_wmb()		smp_wmb()
#define virt_mb()		smp_mb()

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define min_t(type, a, b)	((type)(a) < (type)(b) ? (type)(a) : (type)(b))

#define GFP_KERNEL		0
#define kvmalloc_array(n, size, gfp)	calloc((n), (size))
/* Not zeroed, as in the kernel. */
#define kvmalloc(size, gfp)		malloc(size)
/* Bytes of *@p with @n elements in its flexible array @member */
#define struct_size(p, member, n) \
	(sizeof(*(p)) + (size_t)(n) * sizeof((p)->member[0]))
#define kvfree(p)		free(p)

#endif /* _VPCI_KSHIM_H */
