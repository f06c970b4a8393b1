/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The hypervisor, as the manager sees it: an ops table with two implementations, libvirt
 * (hypervisor-libvirt.c, the only libvirt code) and the simulator (hypervisor-sim.c, a
 * deterministic host and guests on a virtual clock). The manager cannot tell them apart.
 * Everything above this boundary sees plain structs, KiB and -errno; each implementation
 * translates its errors once, into -errno plus a message kept in the handle.
 *
 * A lost connection is reported to the manager from a deferred event, never from inside a
 * call: the caller of a failing call only sees -ENOTCONN, and its guests stay valid until the
 * tick has returned.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "guest.h"

typedef struct McHypervisor McHypervisor;

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
        /* Called from a deferred event, outside every other call of this interface. */
        void (*connection_changed)(void *userdata, bool connected);
} McHypervisorCallbacks;

/* What an implementation provides. impl is its own state. */
typedef struct McHypervisorOps {
        const char *name; /* "libvirt", "sim" */
        /* Sets up h->impl from h->uri; opens nothing. Errors say why in h->error. */
        int (*init)(McHypervisor *h);
        int (*connect)(McHypervisor *h);
        void (*disconnect)(McHypervisor *h);
        int (*collect)(McHypervisor *h, unsigned stats_period_sec, McReading **ret, size_t *ret_n);
        int (*host_memory)(McHypervisor *h, McHostMemory *ret);
        int (*set_target)(McHypervisor *h, const char *uuid, uint64_t kib);
        /* The clock the guests live on; NULL = the host's clocks. */
        uint64_t (*now)(McHypervisor *h, clockid_t clock);
        void (*free)(McHypervisor *h);
} McHypervisorOps;

/*
 * Opens nothing yet: picks the implementation from the URI ("sim:FILE" is the simulator,
 * anything else libvirt). For libvirt the event loop must have been registered with
 * mc_libvirt_event_register() before.
 */
int mc_hypervisor_new(sd_event *e, const char *uri, const McHypervisorCallbacks *cb, void *userdata,
                      McHypervisor **ret);
McHypervisor *mc_hypervisor_free(McHypervisor *h);

/* Opens the connection; on failure schedules retries with backoff (1 s doubling to 30 s). */
int mc_hypervisor_connect(McHypervisor *h);
bool mc_hypervisor_is_connected(const McHypervisor *h);
const char *mc_hypervisor_uri(const McHypervisor *h);
const char *mc_hypervisor_kind(const McHypervisor *h);
/* The driver's balloon stamps are synthetic (libvirt's test driver): see freshness.h. */
bool mc_hypervisor_stamps_synthetic(const McHypervisor *h);
/* Virtual seconds per real second (the simulator's --sim-speed); 1 otherwise. */
double mc_hypervisor_speed(const McHypervisor *h);
/* Now, in microseconds, on the guests' clock (monotonic or realtime). */
uint64_t mc_hypervisor_now(McHypervisor *h, clockid_t clock);

/* The message of the last failure, for the caller's log line. */
const char *mc_hypervisor_error(const McHypervisor *h);
/* The calls of the last collect, host_memory and set_target since the last reset. */
const McCallCounters *mc_hypervisor_calls(const McHypervisor *h);
void mc_hypervisor_reset_calls(McHypervisor *h);

/*
 * Readings of every running guest. A guest held by a job is reported busy, not waited for.
 * Also enables the balloon stats period (never 0) on guests whose stats do not flow. Free the
 * array with mc_readings_free().
 */
int mc_hypervisor_collect(McHypervisor *h, unsigned stats_period_sec, McReading **ret, size_t *ret_n);
int mc_hypervisor_host_memory(McHypervisor *h, McHostMemory *ret);
/* Sets the live balloon target of a guest seen by the last collect. */
int mc_hypervisor_set_target(McHypervisor *h, const char *uuid, uint64_t kib);

/* ---- for implementations ---- */

struct McHypervisor {
        const McHypervisorOps *ops;
        void *impl;
        sd_event *event;
        char *uri;
        McHypervisorCallbacks cb;
        void *userdata;

        bool connected;
        bool synthetic_stamps;
        double speed;
        McCallCounters calls;
        sd_event_source *reconnect_source;
        uint64_t backoff_usec;
        sd_event_source *notify_source; /* deferred connection_changed */
        bool notify_pending;
        bool notified_connected; /* what the manager was last told */
        char error[512];
};

/* Sets the message of the last failure; returns r. */
int mc_hypervisor_fail(McHypervisor *h, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The connection is up / lost: tells the manager from a deferred event, schedules a reconnect
 * when lost. */
void mc_hypervisor_connected(McHypervisor *h);
void mc_hypervisor_lost(McHypervisor *h);
void mc_hypervisor_domain_event(McHypervisor *h, const char *uuid, const char *name, McDomainEvent event);

extern const McHypervisorOps mc_hypervisor_libvirt_ops;

/* This host's memory from a meminfo file: MemTotal and MemAvailable. The libvirt backend
 * reads mc_meminfo_path ("/proc/meminfo"; tests point it elsewhere) for a local URI. */
extern const char *mc_meminfo_path;
int mc_read_meminfo(const char *path, McHostMemory *ret);
extern const McHypervisorOps mc_hypervisor_sim_ops;
