/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What the config and state harnesses share: invariants of a loaded McConfig, equality. */

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* By path: the build root has a generated config.h too. */
#include "daemon/config.h"

/* A failed check is a crash for libFuzzer: it keeps the input. */
#define FUZZ_CHECK(cond)                                                                         \
        do {                                                                                     \
                if (!(cond)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

static inline void fuzz_check_valid(const McConfig *c)
{
        GHashTableIter it;
        gpointer k, v;

        FUZZ_CHECK(mc_policy_settings_check(&c->policy) == NULL);
        FUZZ_CHECK(mc_config_interval_check(c->interval_usec) == NULL);
        FUZZ_CHECK(c->uri && c->uri[0] != '\0');
        g_hash_table_iter_init(&it, c->domains);
        while (g_hash_table_iter_next(&it, &k, &v)) {
                const McDomainConfig *d = v;

                FUZZ_CHECK(d->name && d->name[0] != '\0' && strcmp(k, d->name) == 0);
                FUZZ_CHECK(!(d->min_kib > 0 && d->max_kib > 0 && d->min_kib > d->max_kib));
                FUZZ_CHECK(d->weight <= MC_WEIGHT_MAX);
        }
}

/* Field by field: the struct has padding after kind. */
static inline bool policy_equal(const McPolicySettings *a, const McPolicySettings *b)
{
        return a->kind == b->kind && a->domain_threshold_kib == b->domain_threshold_kib &&
               a->host_threshold_kib == b->host_threshold_kib && a->host_budget_kib == b->host_budget_kib &&
               a->default_min_kib == b->default_min_kib && a->dead_band_kib == b->dead_band_kib &&
               a->claim_fraction == b->claim_fraction && a->grant_factor == b->grant_factor;
}

static inline bool fuzz_domain_is_default(const McDomainConfig *d)
{
        return d->min_kib == 0 && d->max_kib == 0 && d->weight == 0 && !d->excluded && d->runtime == 0;
}

/*
 * a and b hold the same settings. runtime_only: compare the keys a's runtime masks mark (and
 * the masks) only, as a state file saved from a and read back onto the defaults holds.
 */
static inline bool fuzz_config_equal(const McConfig *a, const McConfig *b, bool runtime_only)
{
        GHashTableIter it;
        gpointer v;
        unsigned k = runtime_only ? a->runtime : ~0U;

        if (runtime_only && a->runtime != b->runtime)
                return false;
        if (((k & MC_KEY_INTERVAL) && a->interval_usec != b->interval_usec) ||
            ((k & MC_KEY_DOMAIN_THRESHOLD) &&
             a->policy.domain_threshold_kib != b->policy.domain_threshold_kib) ||
            ((k & MC_KEY_HOST_THRESHOLD) && a->policy.host_threshold_kib != b->policy.host_threshold_kib) ||
            ((k & MC_KEY_HOST_BUDGET) && a->policy.host_budget_kib != b->policy.host_budget_kib) ||
            ((k & MC_KEY_PAUSED) && a->paused != b->paused))
                return false;
        if (!runtime_only &&
            (!policy_equal(&a->policy, &b->policy) || a->dry_run != b->dry_run || a->runtime != b->runtime ||
             strcmp(a->uri, b->uri) != 0 || g_hash_table_size(a->domains) != g_hash_table_size(b->domains)))
                return false;

        g_hash_table_iter_init(&it, a->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                const McDomainConfig *x = v, *y = mc_config_get_domain(b, x->name);
                unsigned dk = runtime_only ? x->runtime : ~0U;

                if (runtime_only && x->runtime == 0) {
                        if (y && !fuzz_domain_is_default(y))
                                return false;
                        continue;
                }
                if (!y || x->runtime != y->runtime ||
                    ((dk & MC_DOMAIN_KEY_MIN) && x->min_kib != y->min_kib) ||
                    ((dk & MC_DOMAIN_KEY_MAX) && x->max_kib != y->max_kib) ||
                    ((dk & MC_DOMAIN_KEY_WEIGHT) && x->weight != y->weight) ||
                    ((dk & MC_DOMAIN_KEY_EXCLUDE) && x->excluded != y->excluded))
                        return false;
        }
        return true;
}
