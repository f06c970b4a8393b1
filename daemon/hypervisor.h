/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The one boundary to libvirt. Everything above it sees plain structs, KiB and -errno; every
 * libvirt error is translated here, once, into -errno plus a message kept in the handle.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct McHypervisor McHypervisor;

#define MC_UUID_STRLEN 37

typedef struct McDomainStats {
        char uuid[MC_UUID_STRLEN];
        char *name;
        bool has_balloon; /* balloon stats present (driver loaded, stats period set) */
        uint64_t actual_kib;
        uint64_t unused_kib;
        uint64_t available_kib;
        uint64_t usable_kib;
        uint64_t max_kib;
        int64_t last_update; /* guest's stamp, epoch seconds; 0 = none */
} McDomainStats;

typedef struct McHostMemory {
        uint64_t total_kib;
        uint64_t free_kib; /* this host: MemAvailable; a remote one: libvirt's free + buffers + cached */
        bool from_proc;    /* read from this host's /proc/meminfo */
} McHostMemory;

typedef struct McCallCounters {
        unsigned bulk_calls;
        unsigned per_domain_calls;
        unsigned other_calls;
} McCallCounters;

typedef enum McDomainEvent {
        MC_DOMAIN_EVENT_STARTED,
        MC_DOMAIN_EVENT_STOPPED,
} McDomainEvent;

typedef struct McHypervisorCallbacks {
        void (*domain_event)(void *userdata, const char *uuid, const char *name, McDomainEvent event);
        void (*connection_changed)(void *userdata, bool connected);
} McHypervisorCallbacks;

/* The event loop must have been registered with mc_libvirt_event_register() before. */
int mc_hypervisor_new(sd_event *e, const char *uri, const McHypervisorCallbacks *cb, void *userdata,
                      McHypervisor **ret);
McHypervisor *mc_hypervisor_free(McHypervisor *h);

/* Opens the connection; on failure schedules retries with backoff (1 s doubling to 30 s). */
int mc_hypervisor_connect(McHypervisor *h);
bool mc_hypervisor_is_connected(const McHypervisor *h);
const char *mc_hypervisor_uri(const McHypervisor *h);
/* The driver's balloon stamps are synthetic (libvirt's test driver): see freshness.h. */
bool mc_hypervisor_stamps_synthetic(const McHypervisor *h);

/* The message of the last failure, for the caller's log line. */
const char *mc_hypervisor_error(const McHypervisor *h);

/*
 * Stats of every running guest: one bulk call, plus one per-guest call only for a guest whose
 * bulk record has no balloon fields. Also enables the balloon stats period (never 0) on guests
 * seen for the first time. The array is freed with mc_domain_stats_free_array().
 */
int mc_hypervisor_collect(McHypervisor *h, unsigned stats_period_sec, McDomainStats **ret, size_t *ret_n,
                          McCallCounters *counters);
void mc_domain_stats_free_array(McDomainStats *stats, size_t n);

int mc_hypervisor_host_memory(McHypervisor *h, McHostMemory *ret, McCallCounters *counters);

/* Sets the live balloon target of a guest seen by the last collect. */
int mc_hypervisor_set_target(McHypervisor *h, const char *uuid, uint64_t kib, McCallCounters *counters);
