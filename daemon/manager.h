/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The manager holds memcoordd's state: settings, the guests it sees by UUID, the tick timer.
 * Each tick flows one way: hypervisor readings -> observe -> decide -> apply -> notify. The
 * bus layer reads the state and calls the mc_manager_set_* functions; it hears about changes
 * through the listener, as typed masks: the manager knows no D-Bus names.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "hypervisor.h"
#include "metrics.h"
#include "policy.h"

typedef enum McState {
        MC_STATE_RUNNING,
        MC_STATE_PAUSED,
        MC_STATE_DISCONNECTED,
        _MC_STATE_MAX,
} McState;

typedef struct McManager McManager;

/* What changed in the manager's own state, for the listener. */
typedef enum McManagerChange {
        MC_MANAGER_CHANGED_STATE = 1u << 0,
        MC_MANAGER_CHANGED_HOST = 1u << 1, /* host total or free */
        MC_MANAGER_CHANGED_TICK = 1u << 2,
        MC_MANAGER_CHANGED_INTERVAL = 1u << 3,
        MC_MANAGER_CHANGED_DOMAIN_THRESHOLD = 1u << 4,
        MC_MANAGER_CHANGED_HOST_THRESHOLD = 1u << 5,
        MC_MANAGER_CHANGED_HOST_BUDGET = 1u << 6,
        MC_MANAGER_CHANGED_DRY_RUN = 1u << 7,
        MC_MANAGER_CHANGED_POLICY = 1u << 8,
        MC_MANAGER_CHANGED_SETTINGS = MC_MANAGER_CHANGED_INTERVAL | MC_MANAGER_CHANGED_DOMAIN_THRESHOLD |
                                      MC_MANAGER_CHANGED_HOST_THRESHOLD | MC_MANAGER_CHANGED_HOST_BUDGET |
                                      MC_MANAGER_CHANGED_DRY_RUN | MC_MANAGER_CHANGED_POLICY,
} McManagerChange;

typedef struct McManagerListener {
        void (*guest_added)(void *userdata, McGuest *g);
        void (*guest_removed)(void *userdata, McGuest *g);
        /* changes: a mask of McGuestChange. Figures alone (MC_GUEST_FIGURES) are not reported. */
        void (*guest_changed)(void *userdata, McGuest *g, unsigned changes);
        void (*balloon_changed)(void *userdata, McGuest *g, uint64_t from_kib, uint64_t to_kib,
                                McReason reason);
        void (*tick_completed)(void *userdata, uint64_t tick, uint64_t host_free_kib, unsigned managed,
                               unsigned changed);
        /* changes: a mask of McManagerChange. */
        void (*manager_changed)(void *userdata, unsigned changes);
} McManagerListener;

struct McManager {
        sd_event *event;
        McConfig *config;            /* effective settings: config file, then state file */
        char *config_path;           /* NULL = none */
        char *state_path;            /* NULL = settings are not persisted */
        McConfigOverrides overrides; /* the command line: applied again on every reload */
        McHypervisor *hypervisor;
        GHashTable *guests; /* uuid -> McGuest* */
        sd_event_source *tick_source;
        uint64_t next_tick_usec;
        bool connected; /* as last told by the hypervisor, from the loop */
        bool paused;
        bool in_tick;
        uint64_t tick_count;
        uint64_t last_tick_usec; /* CPU-independent wall time the last tick took */
        McHostMemory host;
        McPolicySummary last_summary;
        McMetricsCounters counters; /* since start, for metrics.h */

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

McGuest *mc_manager_find_guest(McManager *m, const char *name_or_uuid);
/* The guests sorted by name; free the array (not the elements) with g_free. */
McGuest **mc_manager_list_guests(McManager *m, size_t *ret_n);
/* The guest's effective limits. */
McGuestLimits mc_manager_guest_limits(const McManager *m, const McGuest *g);

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
/* The same, stored in the guest's definition (libvirt: its domain XML metadata), where they
 * travel with it; the host's own settings for those fields are dropped. -EOPNOTSUPP (why set)
 * where the hypervisor has no such place. */
int mc_manager_set_domain_limits_persistent(McManager *m, const char *domain, uint64_t min_kib,
                                            uint64_t max_kib, unsigned weight, const char **why);
int mc_manager_set_domain_excluded_persistent(McManager *m, const char *domain, bool excluded,
                                              const char **why);
/* Re-reads the config file and the state file; on error keeps the old settings. */
int mc_manager_reload(McManager *m, GError **error);
