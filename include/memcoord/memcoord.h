/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Every name shared by memcoordd, memcoordctl and the tests: bus name, object paths,
 * interfaces, error names, the polkit action, and the unit helpers. One header, so a rename
 * is one edit.
 */

#include <stdint.h>

#define MC_BUS_NAME "org.memcoord"
#define MC_MANAGER_PATH "/org/memcoord"
#define MC_DOMAIN_PATH_PREFIX "/org/memcoord/domain"
#define MC_MANAGER_INTERFACE "org.memcoord1.Manager"
#define MC_DOMAIN_INTERFACE "org.memcoord1.Domain"
#define MC_POLKIT_ACTION_MANAGE "org.memcoord.manage"

#define MC_ERROR_INVALID_ARGUMENT "org.memcoord.Error.InvalidArgument"
#define MC_ERROR_NO_SUCH_DOMAIN "org.memcoord.Error.NoSuchDomain"
#define MC_ERROR_NOT_CONNECTED "org.memcoord.Error.NotConnected"
#define MC_ERROR_BAD_CONFIG "org.memcoord.Error.BadConfig"

#define MC_DEFAULT_URI "qemu:///system"
#define MC_DEFAULT_CONFIG_FILE "/etc/memcoord/memcoord.conf"
#define MC_DEFAULT_STATE_DIR "/var/lib/memcoord"

#define MC_KIB_PER_MIB UINT64_C(1024)
#define MC_BYTES_PER_KIB UINT64_C(1024)
#define MC_USEC_PER_SEC UINT64_C(1000000)

/* The largest size a setting may have on the bus: 4 PiB, what x86-64's 52-bit physical
 * addresses (5-level paging) can reach, far below where bytes, KiB and the state file's "K"
 * sizes would wrap. */
#define MC_SIZE_MAX_BYTES (UINT64_C(1) << 52)

/* Saturates: a figure from the hypervisor too large for bytes reads as UINT64_MAX, not as a
 * small number. */
static inline uint64_t mc_kib_to_bytes(uint64_t kib)
{
        return kib > UINT64_MAX / MC_BYTES_PER_KIB ? UINT64_MAX : kib * MC_BYTES_PER_KIB;
}

static inline uint64_t mc_bytes_to_kib(uint64_t bytes)
{
        return bytes / MC_BYTES_PER_KIB;
}

static inline uint64_t mc_mib_to_kib(uint64_t mib)
{
        return mib * MC_KIB_PER_MIB;
}
