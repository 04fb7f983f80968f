/* kcache.h - libvxrt's compiled-kernel cache: cubins the CUDA driver's JIT made from a
 * policy's PTX, kept on disk so that a second load skips the JIT.
 *
 * Entries live in $XDG_CACHE_HOME/vx/kernels (default ~/.cache/vx/kernels), one file per key
 * named <16 hex digits>.cubin, written to a temporary name and renamed into place. The key
 * is an FNV-1a 64 hash of everything that decides the cubin: the PTX text, the JIT options,
 * the driver version, the device name and compute capability. A file is
 *   "VXCUBIN1" | u64 key | u64 payload length | u64 FNV-1a of the payload | payload
 * (little-endian); one that does not match (truncated, corrupt, another key) is deleted and
 * counts as a miss. Every I/O failure is a miss or a skipped store, never an error: the
 * caller falls back to the JIT. VX_KERNEL_CACHE=0 in the environment turns the cache off.
 * Internal to libvxrt and its tests; never prints or exits. */
#ifndef VX_KCACHE_H
#define VX_KCACHE_H

#include <stddef.h>
#include <stdint.h>

/* The key of one compilation. */
uint64_t vxrt_kcache_key(const void *ptx, size_t ptx_len, const char *jit_options,
                         int driver_version, const char *device_name, int cc_major,
                         int cc_minor);
/* The entry's path into buf; 0 when the cache is off or has no directory (no
 * XDG_CACHE_HOME or HOME, or the path does not fit). */
int vxrt_kcache_path(uint64_t key, char *buf, size_t cap);
/* A hit: 1 with *bytes (malloc'ed; the caller frees) and *len. A miss: 0; a bad entry is
 * deleted first. */
int vxrt_kcache_load(uint64_t key, void **bytes, size_t *len);
/* Stores an entry, creating the directories; returns 1 when it was written. */
int vxrt_kcache_store(uint64_t key, const void *bytes, size_t len);

#endif
