/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * memcoordd's settings: the config file (GKeyFile, read-only for the daemon) and the state
 * file (settings changed at run time over the bus, written atomically). The state file is
 * applied on top of the config file.
 */

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

typedef struct McDomainConfig {
        char *name;
        uint64_t min_kib; /* 0 = default */
        uint64_t max_kib; /* 0 = the hypervisor's max */
        unsigned weight;  /* 0 = default (100) */
        bool excluded;
} McDomainConfig;

typedef struct McConfig {
        McPolicySettings policy;
        uint64_t interval_usec;
        bool dry_run;
        char *uri;
        GHashTable *domains; /* name -> McDomainConfig* */
} McConfig;


#define MC_INTERVAL_MIN_USEC UINT64_C(100000)     /* 0.1 s */
#define MC_INTERVAL_MAX_USEC UINT64_C(3600000000) /* 1 h */
#define MC_WEIGHT_MAX 10000U

McConfig *mc_config_new(void);
void mc_config_free(McConfig *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(McConfig, mc_config_free)

/* Parses a config file's text into c. Errors name origin and line: "FILE:LINE: ...". */
gboolean mc_config_load_data(McConfig *c, const char *data, const char *origin, GError **error);
gboolean mc_config_load_file(McConfig *c, const char *path, GError **error);

/* Writes c's runtime-changeable settings to path atomically (rename over the old file). */
gboolean mc_config_save_state(const McConfig *c, const char *path, GError **error);

const McDomainConfig *mc_config_get_domain(const McConfig *c, const char *name);
McDomainConfig *mc_config_ensure_domain(McConfig *c, const char *name);

/* NULL if the interval is acceptable, else why not. */
const char *mc_config_interval_check(uint64_t usec);
