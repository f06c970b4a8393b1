/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * memcoordd's settings: the config file (GKeyFile, read-only for the daemon) and the state
 * file (settings changed at run time over the bus, written atomically). The state file is
 * applied on top of the config file, then the command line on top of both.
 *
 * The state file holds only the keys changed at run time (the runtime masks below), so that
 * an edit of any other key of the config file still takes effect at reload or restart.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

/* Keys of [Coordinator] that can change at run time, as bits of McConfig.runtime. */
typedef enum McConfigKey {
        MC_KEY_INTERVAL = 1U << 0,
        MC_KEY_DOMAIN_THRESHOLD = 1U << 1,
        MC_KEY_HOST_THRESHOLD = 1U << 2,
        MC_KEY_HOST_BUDGET = 1U << 3,
        MC_KEY_PAUSED = 1U << 4, /* kept in the state file only */
} McConfigKey;

/* Keys of [Domain NAME] that can change at run time, as bits of McDomainConfig.runtime. */
typedef enum McDomainKey {
        MC_DOMAIN_KEY_MIN = 1U << 0,
        MC_DOMAIN_KEY_MAX = 1U << 1,
        MC_DOMAIN_KEY_WEIGHT = 1U << 2,
        MC_DOMAIN_KEY_EXCLUDE = 1U << 3,
        MC_DOMAIN_KEY_LIMITS = MC_DOMAIN_KEY_MIN | MC_DOMAIN_KEY_MAX | MC_DOMAIN_KEY_WEIGHT,
} McDomainKey;

typedef struct McDomainConfig {
        char *name;
        uint64_t min_kib; /* 0 = default */
        uint64_t max_kib; /* 0 = the hypervisor's max */
        unsigned weight;  /* 0 = default (100) */
        bool excluded;
        unsigned runtime; /* McDomainKey bits set at run time (or read from the state file) */
} McDomainConfig;

typedef struct McConfig {
        McPolicySettings policy;
        uint64_t interval_usec;
        bool dry_run;
        bool paused;
        char *uri;
        char *metrics_file;  /* MetricsFile=: node_exporter textfile; NULL = none; read at start */
        GHashTable *domains; /* name -> McDomainConfig* */
        unsigned runtime;    /* McConfigKey bits set at run time (or read from the state file) */
} McConfig;

/* What the command line set; it wins over both files, at start and on every reload. */
typedef struct McConfigOverrides {
        char *uri;              /* NULL = not given */
        uint64_t interval_usec; /* 0 = not given */
        bool dry_run;           /* true = --dry-run; false leaves the files' DryRun */
} McConfigOverrides;

#define MC_INTERVAL_MIN_USEC UINT64_C(100000)     /* 0.1 s */
#define MC_INTERVAL_MAX_USEC UINT64_C(3600000000) /* 1 h */
#define MC_WEIGHT_MAX 10000U

McConfig *mc_config_new(void);
void mc_config_free(McConfig *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(McConfig, mc_config_free)

/* Parses a config file's text into c. Errors name origin and line: "FILE:LINE: ...". */
gboolean mc_config_load_data(McConfig *c, const char *data, const char *origin, GError **error);
gboolean mc_config_load_file(McConfig *c, const char *path, GError **error);

/*
 * The state file: the same syntax, only the run-time keys (IntervalSec, DomainThreshold,
 * HostThreshold, HostBudget, Paused; a domain's Min, Max, Weight, Exclude). Every key read is
 * marked in the runtime masks, so it is saved again.
 */
gboolean mc_config_load_state_data(McConfig *c, const char *data, const char *origin, GError **error);
gboolean mc_config_load_state_file(McConfig *c, const char *path, GError **error);

/* Writes the keys of c's runtime masks to path atomically (rename over the old file). Fails,
 * writing nothing, if any of them could not be read back. */
gboolean mc_config_save_state(const McConfig *c, const char *path, GError **error);

void mc_config_apply_overrides(McConfig *c, const McConfigOverrides *o);
void mc_config_overrides_copy(McConfigOverrides *dst, const McConfigOverrides *src);
void mc_config_overrides_clear(McConfigOverrides *o);

/*
 * A guest name as a group name: "Domain " and the name with '%', '[', ']', control
 * characters and bytes that are not UTF-8 written as %XX, which GKeyFile cannot hold in a
 * group name. mc_config_group_to_name() undoes it ('%' not followed by two hex digits stays).
 */
char *mc_config_domain_group(const char *name);
char *mc_config_group_to_name(const char *group);

const McDomainConfig *mc_config_get_domain(const McConfig *c, const char *name);
McDomainConfig *mc_config_ensure_domain(McConfig *c, const char *name);

/* NULL if the interval is acceptable, else why not. */
const char *mc_config_interval_check(uint64_t usec);

/* Parses decimal seconds ("1", "0.25", "3600") into microseconds within the bounds above.
 * Returns 0 or -EINVAL with why set. */
int mc_config_parse_interval(const char *s, uint64_t *ret_usec, const char **why);
