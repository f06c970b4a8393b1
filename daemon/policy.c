/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "policy.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define MIB(x) (UINT64_C(1024) * (x))

const McPolicySettings mc_policy_defaults = {
        .domain_threshold_kib = MIB(100),
        .host_threshold_kib = MIB(200),
        .host_budget_kib = 0,
        .default_min_kib = MIB(256),
        .dead_band_kib = MIB(1),
        .claim_fraction = 0.10,
        .grant_factor = 2.0,
};

static const char *const reason_table[_MC_REASON_MAX] = {
        [MC_REASON_NONE] = "none",
        [MC_REASON_CLAIM] = "claim",
        [MC_REASON_GRANT] = "grant",
        [MC_REASON_CRUNCH_CLAIM] = "crunch-claim",
        [MC_REASON_CRUNCH_GRANT] = "crunch-grant",
        [MC_REASON_CLAMP] = "clamp",
};

static const char *const status_table[_MC_GUEST_STATUS_MAX] = {
        [MC_GUEST_MANAGED] = "managed",
        [MC_GUEST_NO_BALLOON] = "no-balloon",
        [MC_GUEST_STALE] = "stale",
        [MC_GUEST_EXCLUDED] = "excluded",
};

const char *mc_reason_to_string(McReason r)
{
        return r >= 0 && r < _MC_REASON_MAX ? reason_table[r] : NULL;
}

const char *mc_guest_status_to_string(McGuestStatus s)
{
        return s >= 0 && s < _MC_GUEST_STATUS_MAX ? status_table[s] : NULL;
}

const char *mc_policy_settings_check(const McPolicySettings *s)
{
        if (s->domain_threshold_kib == 0)
                return "the domain threshold must be greater than zero";
        if (s->domain_threshold_kib > MIB(1024 * 1024))
                return "the domain threshold must not exceed 1 TiB";
        if (s->host_threshold_kib > MIB(1024 * 1024))
                return "the host threshold must not exceed 1 TiB";
        if (!(s->claim_fraction > 0.0 && s->claim_fraction <= 1.0))
                return "the claim fraction must be greater than 0 and at most 1";
        if (!(s->grant_factor >= 1.0 && s->grant_factor <= 16.0))
                return "the grant factor must be between 1 and 16";
        if (s->dead_band_kib >= s->domain_threshold_kib)
                return "the dead band must be smaller than the domain threshold";
        return NULL;
}

static uint64_t sub_sat(uint64_t a, uint64_t b)
{
        return a > b ? a - b : 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
        return a < b ? a : b;
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
        return a > b ? a : b;
}

uint64_t mc_guest_cap_kib(const McGuest *g)
{
        if (g->limit_max_kib > 0 && g->limit_max_kib < g->max_kib)
                return g->limit_max_kib;
        return g->max_kib;
}

uint64_t mc_guest_floor_kib(const McPolicySettings *s, const McGuest *g)
{
        uint64_t floor = g->min_kib > 0 ? g->min_kib : s->default_min_kib;

        return min_u64(floor, mc_guest_cap_kib(g));
}

/* What the guest holds once the grant we already asked for has landed. */
static uint64_t committed_kib(const McGuest *g)
{
        if (g->last_target_kib > g->actual_kib)
                return g->last_target_kib;
        return g->actual_kib;
}

/* Per-guest scratch state for one run. */
typedef struct Work {
        uint64_t to_kib;
        uint64_t need_kib; /* on top of committed_kib() */
        McReason reason;
        bool touched; /* clamped or needy: not a claim candidate */
} Work;

/*
 * A claim still in flight counts as landed: the guest is seen at the target already asked for,
 * with that much less unused. Stats lag the balloon by up to a second or two, so without this
 * each tick would claim again from figures that do not show the last claim yet, and targets
 * would zig-zag around the one in flight.
 */
static uint64_t claim_base_kib(const McGuest *g)
{
        if (g->last_target_kib > 0 && g->last_target_kib < g->actual_kib)
                return g->last_target_kib;
        return g->actual_kib;
}

static uint64_t claim_amount(const McPolicySettings *s, const McGuest *g, uint64_t keep_unused_kib)
{
        uint64_t base = claim_base_kib(g);
        uint64_t unused = sub_sat(g->unused_kib, g->actual_kib - base);
        uint64_t share = (uint64_t) floor((double) unused * s->claim_fraction);
        uint64_t amount = min_u64(share, sub_sat(unused, keep_unused_kib));

        return min_u64(amount, sub_sat(base, mc_guest_floor_kib(s, g)));
}

static void compute_needs(const McPolicySettings *s, const McGuest *guests, size_t n, Work *w)
{
        for (size_t i = 0; i < n; i++) {
                const McGuest *g = &guests[i];

                if (g->status != MC_GUEST_MANAGED || w[i].touched)
                        continue;
                if (g->unused_kib >= s->domain_threshold_kib)
                        continue;

                /*
                 * The seed grants to a guest whose unused is below T and falling. A guest that
                 * sits below T without falling is needy too, unless a grant to it is still in
                 * flight: otherwise a guest holding steady just under T would starve forever.
                 */
                bool falling = g->has_prev && g->unused_kib < g->prev_unused_kib;
                bool grant_in_flight = g->last_target_kib > g->actual_kib;
                if (!falling && grant_in_flight)
                        continue;

                uint64_t want = (uint64_t) ceil(s->grant_factor *
                                                (double) (s->domain_threshold_kib - g->unused_kib));
                uint64_t to = min_u64(g->actual_kib + want, mc_guest_cap_kib(g));
                uint64_t need = sub_sat(to, w[i].to_kib);

                w[i].touched = true;
                if (need >= s->dead_band_kib)
                        w[i].need_kib = need;
        }
}

/*
 * Shares avail among the needy by weight, water-filling: a guest never gets more than its
 * need, and what it does not take is shared among the others.
 */
static uint64_t share_by_weight(const McGuest *guests, size_t n, Work *w, uint64_t avail)
{
        uint64_t given = 0;
        bool progress = true;

        while (progress && avail > 0) {
                double total_weight = 0;
                progress = false;

                for (size_t i = 0; i < n; i++)
                        if (w[i].need_kib > 0)
                                total_weight += guests[i].weight > 0 ? guests[i].weight : 1;
                if (total_weight == 0)
                        break;

                /* First satisfy every guest whose whole need fits in its share. */
                for (size_t i = 0; i < n; i++) {
                        if (w[i].need_kib == 0)
                                continue;
                        double weight = guests[i].weight > 0 ? guests[i].weight : 1;
                        double share = (double) avail * weight / total_weight;
                        if ((double) w[i].need_kib <= share) {
                                w[i].to_kib += w[i].need_kib;
                                w[i].reason = MC_REASON_CRUNCH_GRANT;
                                given += w[i].need_kib;
                                avail -= w[i].need_kib;
                                w[i].need_kib = 0;
                                progress = true;
                        }
                }
                if (progress)
                        continue;

                /* Nobody fits: everyone left gets its share. */
                uint64_t left = avail;
                for (size_t i = 0; i < n; i++) {
                        if (w[i].need_kib == 0)
                                continue;
                        double weight = guests[i].weight > 0 ? guests[i].weight : 1;
                        uint64_t share = min_u64((uint64_t) floor((double) left * weight / total_weight),
                                                 w[i].need_kib);
                        w[i].to_kib += share;
                        w[i].reason = MC_REASON_CRUNCH_GRANT;
                        w[i].need_kib = 0;
                        given += share;
                        avail -= share;
                }
        }
        return given;
}

ssize_t mc_policy_run(const McPolicySettings *s, uint64_t host_free_kib, const McGuest *guests,
                      size_t n_guests, McDecision *decisions, McPolicySummary *summary)
{
        McPolicySummary sum = {};
        uint64_t total_actual = 0, total_committed = 0, in_flight = 0;
        size_t n_decisions = 0;

        assert(s);
        assert(guests || n_guests == 0);
        assert(decisions || n_guests == 0);

        Work *w = calloc(n_guests > 0 ? n_guests : 1, sizeof(Work));
        if (!w)
                return -ENOMEM;
        for (size_t i = 0; i < n_guests; i++) {
                const McGuest *g = &guests[i];

                w[i] = (Work){ .to_kib = committed_kib(g), .reason = MC_REASON_NONE };
                total_actual += g->actual_kib;
                total_committed += committed_kib(g);
                in_flight += committed_kib(g) - g->actual_kib;
        }

        /*
         * What the host can give: its free memory above H, minus grants already asked for but
         * not landed yet (they are still counted as free), and within the budget if one is set.
         */
        uint64_t avail = sub_sat(host_free_kib, s->host_threshold_kib + in_flight);
        if (s->host_budget_kib > 0)
                avail = min_u64(avail, sub_sat(s->host_budget_kib, total_committed));
        bool deficit = host_free_kib < s->host_threshold_kib ||
                       (s->host_budget_kib > 0 && total_actual > s->host_budget_kib);
        sum.host_available_kib = avail;

        /*
         * Bounds first: a guest more than the dead band above its cap is brought down to it (the
         * admin's max wins over the threshold's protection); one below its floor is raised
         * within what the host can give, and may still be granted its need on top. A guest
         * within the dead band of a bound is treated like any other: the later steps never
         * cross the bounds.
         */
        for (size_t i = 0; i < n_guests; i++) {
                const McGuest *g = &guests[i];
                uint64_t floor_kib = mc_guest_floor_kib(s, g), cap = mc_guest_cap_kib(g);

                if (g->status != MC_GUEST_MANAGED)
                        continue;
                if (g->actual_kib >= cap + s->dead_band_kib) {
                        w[i] = (Work){ .to_kib = cap, .reason = MC_REASON_CLAMP, .touched = true };
                } else if (g->actual_kib + s->dead_band_kib <= floor_kib) {
                        uint64_t up = min_u64(sub_sat(floor_kib, w[i].to_kib), avail);
                        if (up > 0) {
                                w[i].to_kib += up;
                                w[i].reason = MC_REASON_CLAMP;
                                avail -= up;
                        }
                }
        }

        compute_needs(s, guests, n_guests, w);
        for (size_t i = 0; i < n_guests; i++)
                if (w[i].need_kib > 0) {
                        sum.need_total_kib += w[i].need_kib;
                        sum.n_needy++;
                }

        sum.crunch = sum.need_total_kib > avail || deficit;
        if (!sum.crunch) {
                for (size_t i = 0; i < n_guests; i++)
                        if (w[i].need_kib > 0) {
                                w[i].to_kib += w[i].need_kib;
                                w[i].reason = MC_REASON_GRANT;
                                sum.granted_kib += w[i].need_kib;
                                w[i].need_kib = 0;
                        }
        } else
                sum.granted_kib = share_by_weight(guests, n_guests, w, avail);

        /*
         * Claims. Without a crunch a guest keeps up to 2T unused; in a crunch everyone above T
         * gives, never below T. Claimed memory reaches the host's free figure once the balloon
         * has inflated, so it is shared at the next tick: a grant never spends memory that is
         * not free yet.
         */
        uint64_t keep = sum.crunch ? s->domain_threshold_kib : 2 * s->domain_threshold_kib;
        for (size_t i = 0; i < n_guests; i++) {
                const McGuest *g = &guests[i];

                /* Nor from a guest whose grant is still landing: it was needy a moment ago. */
                if (g->status != MC_GUEST_MANAGED || w[i].touched || w[i].reason != MC_REASON_NONE ||
                    g->moved_externally || g->last_target_kib > g->actual_kib)
                        continue;
                /* In a crunch a guest whose unused memory is falling is consuming: it is about to
                 * be needy, and claiming from it now would only have to be given back. */
                if (sum.crunch && g->has_prev && g->prev_unused_kib > g->unused_kib + s->dead_band_kib)
                        continue;
                uint64_t amount = claim_amount(s, g, keep);
                if (amount < s->dead_band_kib)
                        continue;
                w[i].to_kib = claim_base_kib(g) - amount;
                w[i].reason = sum.crunch ? MC_REASON_CRUNCH_CLAIM : MC_REASON_CLAIM;
                sum.claimed_kib += amount;
        }

        for (size_t i = 0; i < n_guests; i++) {
                const McGuest *g = &guests[i];
                uint64_t to = w[i].to_kib;

                if (w[i].reason == MC_REASON_NONE)
                        continue;
                /* Within the dead band of what the guest has, or of what we already asked. */
                if (max_u64(to, g->actual_kib) - min_u64(to, g->actual_kib) < s->dead_band_kib)
                        continue;
                if (g->last_target_kib > 0 &&
                    max_u64(to, g->last_target_kib) - min_u64(to, g->last_target_kib) < s->dead_band_kib)
                        continue;
                decisions[n_decisions++] = (McDecision){
                        .guest = i,
                        .from_kib = g->actual_kib,
                        .to_kib = to,
                        .reason = w[i].reason,
                };
        }

        free(w);
        if (summary)
                *summary = sum;
        return (ssize_t) n_decisions;
}
