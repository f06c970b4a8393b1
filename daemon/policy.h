/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The coordination algorithm, "decide". A pure function: the guests (guest.h) and the host
 * plus the settings go in, balloon decisions come out. No I/O, no libvirt, no sd-bus; every
 * size is in KiB, libvirt's unit. Two policies: `seed`, the assignment's rules exactly, and
 * `adaptive` (the default), which reads the rate of demand and the guest's page cache. See
 * README.md, "The algorithm", for the rules and the reasons.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "guest.h"

typedef enum McPolicyKind {
        MC_POLICY_ADAPTIVE,
        MC_POLICY_SEED,
        _MC_POLICY_MAX,
} McPolicyKind;

typedef struct McPolicySettings {
        McPolicyKind kind;
        uint64_t domain_threshold_kib; /* T: a guest is needy below T unused */
        uint64_t host_threshold_kib;   /* H: the host never grants below H free */
        uint64_t host_budget_kib;      /* cap on the sum of guests' actual; 0 = none */
        uint64_t default_min_kib;      /* floor for guests without their own min */
        uint64_t dead_band_kib;        /* changes smaller than this are not made */
        double claim_fraction;         /* c: share of unused claimed per tick, (0, 1] */
        double grant_factor;           /* need = factor x (T - unused) */
} McPolicySettings;

/* What the policy reads besides the guests. */
typedef struct McPolicyInput {
        uint64_t host_free_kib; /* the host's free memory now */
        uint64_t now_mono_usec; /* the clock the guests' samples were folded in on */
        uint64_t interval_usec; /* between two ticks: how soon the next decision comes */
} McPolicyInput;

typedef struct McDecision {
        size_t guest; /* index into the guests array */
        uint64_t from_kib;
        uint64_t to_kib;
        McReason reason;
} McDecision;

typedef struct McPolicySummary {
        uint64_t host_available_kib; /* what the host could give this tick */
        bool budget_bound;           /* HostBudget, not the host's free memory, set that */
        uint64_t need_total_kib;     /* what the needy guests asked for */
        uint64_t granted_kib;
        uint64_t claimed_kib;
        unsigned n_needy;
        unsigned n_short; /* needy guests that got less than they needed */
        bool crunch;
        /* A crunch no share gets every consumer through (lethal_lead in policy.c): the index of
         * the consumer served first, else the number of guests. */
        size_t served_first;
} McPolicySummary;

extern const McPolicySettings mc_policy_defaults;

const char *mc_reason_to_string(McReason r);
const char *mc_guest_status_to_string(McGuestStatus s);
const char *mc_policy_kind_to_string(McPolicyKind k);
/* Returns -1 for an unknown name. */
int mc_policy_kind_from_string(const char *s);

/* Returns NULL when the settings are usable, otherwise a sentence saying what is wrong. */
const char *mc_policy_settings_check(const McPolicySettings *s);

/* The floor and the cap the policy applies to guest g: mc_guest_limits() with s's default. */
uint64_t mc_guest_floor_kib(const McPolicySettings *s, const McGuest *g);
uint64_t mc_guest_cap_kib(const McGuest *g);

/*
 * Runs one tick. decisions must have room for n_guests entries; at most one decision is made
 * per guest. short_kib, if not NULL, has n_guests entries and receives what each guest needed
 * and did not get. Returns the number of decisions, or -ENOMEM.
 */
ssize_t mc_policy_run(const McPolicySettings *s, const McPolicyInput *in, const McGuest *const *guests,
                      size_t n_guests, McDecision *decisions, uint64_t *short_kib, McPolicySummary *summary);
