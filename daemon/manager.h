/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The manager holds memcoordd's state: settings, the guests it sees, the tick timer. Each tick
 * flows one way: hypervisor stats -> snapshot -> policy -> decisions -> hypervisor. The bus
 * layer reads the state and calls the mc_manager_set_* functions; it hears about changes
 * through the listener.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "freshness.h"
#include "hypervisor.h"
#include "policy.h"

typedef enum McState {
        MC_STATE_RUNNING,
        MC_STATE_PAUSED,
        MC_STATE_DISCONNECTED,
        _MC_STATE_MAX,
} McState;

typedef struct McManager McManager;

typedef struct McDomain {
        McManager *manager; /* the manager that owns this record */
        char *uuid;
        char *name;
        McGuestStatus status;
        bool has_stats; /* at least one stats reading */
        uint64_t actual_kib;
        uint64_t unused_kib;
        uint64_t available_kib;
        uint64_t usable_kib;
        uint64_t max_kib;
        uint64_t stats_age_usec;

        uint64_t target_kib;       /* last target set and not reached yet; 0 = none */
        uint64_t target_set_usec;  /* CLOCK_MONOTONIC when it was set */
        uint64_t last_change_usec; /* CLOCK_REALTIME of our last change; 0 = never */
        McReason last_reason;
        bool moved_externally; /* this tick: the balloon grew without us */

        McFreshness freshness;
        bool has_prev;
        uint64_t prev_unused_kib;
        uint64_t prev_actual_kib;
        unsigned seen; /* generation of the last tick that saw it */
} McDomain;

typedef struct McManagerListener {
        void (*domain_added)(void *userdata, McDomain *d);
        void (*domain_removed)(void *userdata, McDomain *d);
        void (*domain_changed)(void *userdata, McDomain *d);
        void (*balloon_changed)(void *userdata, McDomain *d, uint64_t from_kib, uint64_t to_kib,
                                McReason reason);
        void (*tick_completed)(void *userdata, uint64_t tick, uint64_t host_free_kib, unsigned managed,
                               unsigned changed);
        /* NULL-terminated names of the Manager properties that changed. */
        void (*properties_changed)(void *userdata, const char *const *names);
} McManagerListener;

struct McManager {
        sd_event *event;
        McConfig *config;            /* effective settings: config file, then state file */
        char *config_path;           /* NULL = none */
        char *state_path;            /* NULL = settings are not persisted */
        McConfigOverrides overrides; /* the command line: applied again on every reload */
        McHypervisor *hypervisor;
        GHashTable *domains; /* uuid -> McDomain* */
        sd_event_source *tick_source;
        uint64_t next_tick_usec;
        unsigned generation;
        bool paused;
        uint64_t tick_count;
        McHostMemory host;
        McCallCounters last_calls; /* libvirt calls of the last tick */

        McManagerListener listener;
        void *listener_userdata;
};

/* Takes ownership of config. */
int mc_manager_new(sd_event *e, McConfig *config, const char *config_path, const char *state_path,
                   McManager **ret);
McManager *mc_manager_free(McManager *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(McManager, mc_manager_free)

/* What the command line set; it wins over the files on reload as it did at start. */
void mc_manager_set_overrides(McManager *m, const McConfigOverrides *o);

void mc_manager_set_listener(McManager *m, const McManagerListener *l, void *userdata);

/* Connects to libvirt (retrying in the background) and starts the tick timer. */
int mc_manager_start(McManager *m);

/* Runs one tick now: what the timer does. */
int mc_manager_tick(McManager *m);

McState mc_manager_state(const McManager *m);
const char *mc_state_to_string(McState s);

McDomain *mc_manager_find_domain(McManager *m, const char *name_or_uuid);
/* The domains sorted by name; free the array (not the elements) with g_free. */
McDomain **mc_manager_list_domains(McManager *m, size_t *ret_n);
/* The guest's effective limits. */
void mc_manager_domain_limits(const McManager *m, const McDomain *d, uint64_t *min_kib, uint64_t *max_kib,
                              unsigned *weight, bool *excluded);

/*
 * Setters used by the bus. Each validates, applies, persists and announces; on failure it
 * changes nothing and returns -EINVAL (why set to a sentence), -ENOENT (no such guest) or the
 * error of persisting.
 */
int mc_manager_set_domain_threshold(McManager *m, uint64_t kib, const char **why);
int mc_manager_set_host_threshold(McManager *m, uint64_t kib, const char **why);
int mc_manager_set_host_budget(McManager *m, uint64_t kib, const char **why);
int mc_manager_set_interval(McManager *m, uint64_t usec, const char **why);
int mc_manager_set_paused(McManager *m, bool paused);
int mc_manager_set_domain_limits(McManager *m, const char *domain, uint64_t min_kib, uint64_t max_kib,
                                 unsigned weight, const char **why);
int mc_manager_set_domain_excluded(McManager *m, const char *domain, bool excluded);
/* Re-reads the config file and the state file; on error keeps the old settings. */
int mc_manager_reload(McManager *m, GError **error);
