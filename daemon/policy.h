/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The coordination algorithm. A pure function: a snapshot of the guests and the host plus the
 * settings go in, balloon decisions come out. No I/O, no libvirt, no sd-bus; every size is in
 * KiB, libvirt's unit. See README.md, "The algorithm", for the rules and the reasons.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum McGuestStatus {
        MC_GUEST_MANAGED,    /* fresh balloon stats: the policy may move it */
        MC_GUEST_NO_BALLOON, /* no balloon driver or no stats at all */
        MC_GUEST_STALE,      /* stats stopped advancing */
        MC_GUEST_EXCLUDED,   /* the admin excluded it */
        _MC_GUEST_STATUS_MAX,
} McGuestStatus;

typedef enum McReason {
        MC_REASON_NONE,
        MC_REASON_CLAIM,        /* idle guest gives back part of its unused memory */
        MC_REASON_GRANT,        /* needy guest gets memory from the host */
        MC_REASON_CRUNCH_CLAIM, /* host short: claim from every guest above the threshold */
        MC_REASON_CRUNCH_GRANT, /* host short: what is free is shared among the needy */
        MC_REASON_CLAMP,        /* actual outside the guest's [min, max]: brought back */
        _MC_REASON_MAX,
} McReason;

typedef struct McPolicySettings {
        uint64_t domain_threshold_kib; /* T: a guest is needy below T unused */
        uint64_t host_threshold_kib;   /* H: the host never grants below H free */
        uint64_t host_budget_kib;      /* cap on the sum of guests' actual; 0 = none */
        uint64_t default_min_kib;      /* floor for guests without their own min */
        uint64_t dead_band_kib;        /* changes smaller than this are not made */
        double claim_fraction;         /* c: share of unused claimed per tick, (0, 1] */
        double grant_factor;           /* need = factor x (T - unused) */
} McPolicySettings;

typedef struct McGuest {
        const char *name; /* for the caller's logs; the policy does not read it */
        McGuestStatus status;
        uint64_t actual_kib;    /* balloon size the guest holds now */
        uint64_t unused_kib;    /* guest's free memory */
        uint64_t max_kib;       /* the hypervisor's maximum for this guest */
        uint64_t min_kib;       /* admin floor; 0 = settings' default */
        uint64_t limit_max_kib; /* admin cap; 0 = max_kib */
        unsigned weight;        /* crunch share bias; 0 counts as 1 */

        /* History the caller keeps from tick to tick. */
        bool has_prev;            /* prev_unused_kib is valid */
        uint64_t prev_unused_kib; /* unused at the previous tick */
        uint64_t last_target_kib; /* last target set and not yet reached; 0 = none */
        bool moved_externally;    /* the balloon rose past our target on its own */
} McGuest;

typedef struct McDecision {
        size_t guest; /* index into the guests array */
        uint64_t from_kib;
        uint64_t to_kib;
        McReason reason;
} McDecision;

typedef struct McPolicySummary {
        uint64_t host_available_kib; /* what the host could give this tick */
        uint64_t need_total_kib;     /* what the needy guests asked for */
        uint64_t granted_kib;
        uint64_t claimed_kib;
        unsigned n_needy;
        bool crunch;
} McPolicySummary;

extern const McPolicySettings mc_policy_defaults;

const char *mc_reason_to_string(McReason r);
const char *mc_guest_status_to_string(McGuestStatus s);

/* Returns NULL when the settings are usable, otherwise a sentence saying what is wrong. */
const char *mc_policy_settings_check(const McPolicySettings *s);

/* The floor and the cap the policy applies to guest g. */
uint64_t mc_guest_floor_kib(const McPolicySettings *s, const McGuest *g);
uint64_t mc_guest_cap_kib(const McGuest *g);

/*
 * Runs one tick. host_free_kib is the host's free memory now. decisions must have room for
 * n_guests entries; at most one decision is made per guest. Returns the number of decisions,
 * or -ENOMEM.
 */
ssize_t mc_policy_run(const McPolicySettings *s, uint64_t host_free_kib, const McGuest *guests,
                      size_t n_guests, McDecision *decisions, McPolicySummary *summary);
