/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "policy.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIB(x) (UINT64_C(1024) * (x))

/*
 * The adaptive policy's constants, each with its reason (measured on the real guests here:
 * tests/e2e/README.md, "The guests, as measured").
 *
 * REACTION: from a decision to memory the guest can use, beyond the tick interval itself:
 * the sample read is up to 1 s old (guests sample once a second), the balloon lands in
 * 0.2-1.6 s. A consuming guest is given, on top of T, what it eats over interval + REACTION.
 */
#define REACTION_USEC (3 * UINT64_C(1000000))
/* A balloon has landed this long after the call (0.2-1.6 s measured), and the guest's stamp
 * is to the second. */
#define LANDED_USEC (2 * UINT64_C(1000000))
/* A sample is read on average half a stats period after the guest took it. */
#define SAMPLE_AGE_USEC (UINT64_C(500000))
/* Below this growth a guest is steady: an idle guest's MemFree wanders by ~1 MiB in 2 s. */
#define RATE_STEADY_KIB_S 512.0
/* A guest granted memory keeps the larger reserve (its peak rate over the reaction time) this
 * long, shrinking to nothing over that time, and nothing is claimed from it sooner than
 * FLIP_GUARD after a grant: a cyclic load is not answered with claims it must be granted back
 * (ping-pong), and what a workload freed is still returned within 60 s. */
#define GRANT_HOLD_USEC (30 * UINT64_C(1000000))
#define FLIP_GUARD_USEC (10 * UINT64_C(1000000))
/* In a crunch, what a guest granted memory lately keeps above T before it gives to the
 * guests under T: small moves back and forth around T are ping-pong; this much more than the
 * others is not a share (fair_band_kib). */
#define CRUNCH_FAIR_BAND_KIB MIB(32)
/* In a crunch, a move smaller than this changes nobody's fate (a holding guest's kernel takes
 * or gives 16 MiB at a time, every ~10 s, on the guests here) and costs a reversal: the
 * crumbs of a budget shared among the needy for their reserves above T, a claim of the last
 * 2-3 MiB above a band. A guest under T is given whatever there is: each MiB is a MiB less of
 * its shortfall. */
#define CRUNCH_MIN_MOVE_KIB MIB(8)
/* After its use fell, a guest keeps the size it had at its high whole this long, then less
 * and less until GRANT_HOLD: a tooth of a sawtooth comes back within it on the guests here
 * (10-15 s), and claims at c = 10 % per tick still return 95 % of a freed workload by ~35 s. */
#define PEAK_HOLD_FULL_USEC (15 * UINT64_C(1000000))
/* No claim while an earlier one still has more than this to land. A claim counts as landed
 * (claim_base_kib), so at c = 10 % per tick the targets after a large free run ahead of a
 * balloon that inflates at 10-49 MiB/s here (tests/e2e/README.md): in the simulator, after a
 * 1.3 GiB workload freed, they ran 760 MiB ahead of its 25 MiB/s, and the guest's next ramp
 * met a balloon still inflating toward the idle reserve and was OOM-killed (so was, on real
 * guests, one still being claimed when its ramp began: tests/e2e/README.md, scenario 2).
 * Two ticks of the balloon's speed keep the claims as fast as it is. */
#define CLAIM_AHEAD_MAX_KIB MIB(48)
/* How far ahead an over-commit is seen coming: long enough for a guest left to run short to
 * give its memory back (its workload's end or kill, then ~10 ticks of claims). */
#define TRIAGE_LOOKAHEAD_USEC (30 * UINT64_C(1000000))
/* The reserve of a consumer ranked above every other in an over-commit (extend_lead_reserve). */
#define LEAD_RESERVE_USEC (12 * UINT64_C(1000000))
/* A crunch is lethal when what the consumers hold above their OOM point, and what is left to
 * give, lasts them less than this at their rates (lethal_lead): about the time it takes a
 * guest left short to be killed and its memory to reach the others (a stats period, a claim,
 * the balloon's inflation at ~20-25 MiB/s: tests/e2e/README.md). Longer, and a shortfall the
 * ramps' end would have settled is triaged: at 10 s, real scenario 3 (two ramps of 8 MiB/s
 * that fit the budget) was triaged, its consumer left behind the lead ran under T for 5-6 s.
 * Shorter, and the triage comes too late to save anyone: the sweep's crunch family killed 23
 * of 30 at 8 or 10 s, 24 at 7, 28 at 6 (as many as equal shares), 30 at 5. */
#define LETHAL_HORIZON_USEC (8 * UINT64_C(1000000))

const McPolicySettings mc_policy_defaults = {
        .kind = MC_POLICY_ADAPTIVE,
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
        [MC_GUEST_MANAGED] = "managed", [MC_GUEST_NO_BALLOON] = "no-balloon",
        [MC_GUEST_STALE] = "stale",     [MC_GUEST_EXCLUDED] = "excluded",
        [MC_GUEST_BUSY] = "busy",       [MC_GUEST_STUCK] = "stuck",
};

static const char *const kind_table[_MC_POLICY_MAX] = {
        [MC_POLICY_ADAPTIVE] = "adaptive",
        [MC_POLICY_SEED] = "seed",
};

const char *mc_policy_kind_to_string(McPolicyKind k)
{
        return k >= 0 && k < _MC_POLICY_MAX ? kind_table[k] : NULL;
}

int mc_policy_kind_from_string(const char *s)
{
        for (int k = 0; s && k < _MC_POLICY_MAX; k++)
                if (strcmp(s, kind_table[k]) == 0)
                        return k;
        return -1;
}

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
        if (!mc_policy_kind_to_string(s->kind))
                return "the policy must be adaptive or seed";
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
        return mc_guest_limits(0, g).cap_kib;
}

uint64_t mc_guest_floor_kib(const McPolicySettings *s, const McGuest *g)
{
        return mc_guest_limits(s->default_min_kib, g).floor_kib;
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
        uint64_t need_kib;  /* on top of committed_kib() */
        uint64_t asked_kib; /* the whole need, for what was not covered */
        McReason reason;
        bool touched; /* clamped or needy: not a claim candidate */
        bool skip;    /* not managed, or backing off after failed sets: no decision */
        McGuestLimits limits;
        /* adaptive */
        uint64_t urgent_kib;   /* the part of need_kib that brings it back to T */
        uint64_t headroom_kib; /* predicted, now */
        double rate_kib_s;     /* growth of use, 0 when steady or falling */
        bool ranked;           /* served first: ranked above every other by the admin in an
                                * over-commit (extend_lead_reserve), or the lead of a lethal
                                * crunch (lethal_lead) */
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

static uint64_t claim_amount(const McPolicySettings *s, const McGuest *g, const Work *w, uint64_t unused,
                             uint64_t keep_unused_kib)
{
        uint64_t base = claim_base_kib(g);
        uint64_t share = (uint64_t) floor((double) unused * s->claim_fraction);
        uint64_t amount = min_u64(share, sub_sat(unused, keep_unused_kib));

        return min_u64(amount, sub_sat(base, w->limits.floor_kib));
}

/* ---- seed: the assignment's rules ---- */

static void seed_needs(const McPolicySettings *s, const McGuest *const *guests, size_t n, Work *w)
{
        for (size_t i = 0; i < n; i++) {
                const McGuest *g = guests[i];

                if (w[i].skip || w[i].touched)
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
                uint64_t to = min_u64(g->actual_kib + want, w[i].limits.cap_kib);
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
static uint64_t share_by_weight(size_t n, Work *w, uint64_t avail)
{
        uint64_t given = 0;
        bool progress = true;

        while (progress && avail > 0) {
                double total_weight = 0;
                progress = false;

                for (size_t i = 0; i < n; i++)
                        if (w[i].need_kib > 0)
                                total_weight += w[i].limits.weight;
                if (total_weight == 0)
                        break;

                /* First satisfy every guest whose whole need fits in its share. */
                for (size_t i = 0; i < n; i++) {
                        if (w[i].need_kib == 0)
                                continue;
                        double share = (double) avail * w[i].limits.weight / total_weight;
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
                        uint64_t share =
                                min_u64((uint64_t) floor((double) left * w[i].limits.weight / total_weight),
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

static void seed_claims(const McPolicySettings *s, const McGuest *const *guests, size_t n, Work *w,
                        McPolicySummary *sum)
{
        /*
         * Without a crunch a guest keeps up to 2T unused; in a crunch everyone above T gives,
         * never below T. Claimed memory reaches the host's free figure once the balloon has
         * inflated, so it is shared at the next tick: a grant never spends memory that is not
         * free yet.
         */
        uint64_t keep = sum->crunch ? s->domain_threshold_kib : 2 * s->domain_threshold_kib;

        for (size_t i = 0; i < n; i++) {
                const McGuest *g = guests[i];

                /* Nor from a guest whose grant is still landing: it was needy a moment ago. */
                if (w[i].skip || w[i].touched || w[i].reason != MC_REASON_NONE || g->moved_externally ||
                    g->last_target_kib > g->actual_kib)
                        continue;
                /* In a crunch a guest whose unused memory is falling is consuming: it is about to
                 * be needy, and claiming from it now would only have to be given back. */
                if (sum->crunch && g->has_prev && g->prev_unused_kib > g->unused_kib + s->dead_band_kib)
                        continue;
                uint64_t unused = sub_sat(g->unused_kib, g->actual_kib - claim_base_kib(g));
                uint64_t amount = claim_amount(s, g, &w[i], unused, keep);
                if (amount < s->dead_band_kib)
                        continue;
                w[i].to_kib = claim_base_kib(g) - amount;
                w[i].reason = sum->crunch ? MC_REASON_CRUNCH_CLAIM : MC_REASON_CLAIM;
                sum->claimed_kib += amount;
        }
}

/* ---- adaptive: the rate of demand and the page cache ---- */

static uint64_t horizon_usec(const McPolicyInput *in)
{
        return in->interval_usec + REACTION_USEC;
}

static uint64_t rate_cover_kib(double rate_kib_s, uint64_t usec)
{
        return (uint64_t) ceil(rate_kib_s * (double) usec / 1e6);
}

/*
 * The guest's headroom now, predicted from its last trusted sample: what it could use then,
 * plus what balloon moves since gave or took (targets in flight as landed), less what it ate
 * since at its rate. Frozen readings after a balloon change are thus neither believed nor
 * taken as "steady".
 */
static uint64_t predicted_headroom_kib(const McPolicyInput *in, const McGuest *g, double rate)
{
        uint64_t target = mc_guest_target_kib(g);

        if (!g->has_sample)
                return sub_sat(mc_guest_headroom_kib(g), g->actual_kib - min_u64(target, g->actual_kib));
        uint64_t since = sub_sat(in->now_mono_usec, g->sample_mono_usec) + SAMPLE_AGE_USEC;
        /* libvirt's actual lags the guest's own figures by ~1 s. A sample stamped well after our
         * last change (it has landed by then) shows every move up to actual; otherwise whether
         * it shows the moves since its own actual is not known: take the smaller. */
        double moved_since_sample = (double) target - (double) g->sample_actual_kib;
        double moved_since_now = (double) target - (double) g->actual_kib;
        double moved = moved_since_sample < moved_since_now ? moved_since_sample : moved_since_now;
        if (g->last_change_usec > 0 && g->sample_stamp > 0 &&
            (uint64_t) g->sample_stamp * UINT64_C(1000000) >= g->last_change_usec + LANDED_USEC)
                moved = moved_since_now;
        double h = (double) g->sample_headroom_kib + moved - rate * (double) since / 1e6;
        return h > 0 ? (uint64_t) h : 0;
}

static bool recently_granted(const McPolicyInput *in, const McGuest *g, uint64_t usec)
{
        return g->last_grant_usec > 0 && in->now_mono_usec < g->last_grant_usec + usec;
}

/* What it takes to give the guest `want` more than its target, within its cap. */
static uint64_t need_for(const McGuest *g, const Work *w, uint64_t want)
{
        return sub_sat(min_u64(mc_guest_target_kib(g) + want, w->limits.cap_kib), w->to_kib);
}

static void adaptive_needs(const McPolicySettings *s, const McPolicyInput *in, const McGuest *const *guests,
                           size_t n, Work *w)
{
        uint64_t T = s->domain_threshold_kib;

        for (size_t i = 0; i < n; i++) {
                const McGuest *g = guests[i];

                if (w[i].skip)
                        continue;
                w[i].rate_kib_s = g->use_rate_kib_s > RATE_STEADY_KIB_S ? g->use_rate_kib_s : 0;
                w[i].headroom_kib = predicted_headroom_kib(in, g, w[i].rate_kib_s);
                if (w[i].touched)
                        continue;

                /* Enough to stay above T until the next decision can land, at its rate. */
                uint64_t reserve = T + rate_cover_kib(w[i].rate_kib_s, horizon_usec(in));
                uint64_t h = w[i].headroom_kib;
                if (h >= reserve)
                        continue;
                uint64_t want = reserve - h;
                uint64_t urgent = h < T ? (uint64_t) ceil(s->grant_factor * (double) (T - h)) : 0;
                want = max_u64(want, urgent);
                uint64_t need = need_for(g, &w[i], want);

                w[i].touched = true;
                if (need >= s->dead_band_kib) {
                        w[i].need_kib = need;
                        w[i].urgent_kib = min_u64(urgent, need);
                }
        }
}

/*
 * The order in which a crunch serves needs: weight first, then the UUID. The order must stay
 * the same from tick to tick: then the guests last in it run short first, and what their
 * workloads give up (or their kernel kills) reaches the others, instead of every consumer
 * getting part of what it needs, in turn, and all of them running out together.
 */
typedef struct Order {
        const Work *w;
        const char *uuid;
        size_t i;
} Order;

static int compare_order(const void *a, const void *b)
{
        const Order *x = a, *y = b;

        if (x->w->limits.weight != y->w->limits.weight)
                return x->w->limits.weight > y->w->limits.weight ? -1 : 1;
        return strcmp(x->uuid, y->uuid);
}

/*
 * Whether shares of part[] of the needs keep every needy guest at T/2 of headroom or more (the OOM
 * point of the guests here is ~47 MiB at T = 100). Then the crunch is shared, as by the seed:
 * nobody is sacrificed for a shortage all can live through. Deeper than that, sharing lets
 * every consumer run out together: needs are served whole, in order.
 */
static bool crunch_shared_survivably(const McPolicySettings *s, size_t n, const Work *w,
                                     const uint64_t *part, uint64_t avail)
{
        Work *copy = malloc((n > 0 ? n : 1) * sizeof(Work));
        bool ok = true;

        if (!copy)
                return false;
        memcpy(copy, w, n * sizeof(Work));
        for (size_t i = 0; i < n; i++)
                copy[i].need_kib = min_u64(part[i], w[i].need_kib);
        (void) share_by_weight(n, copy, avail);
        for (size_t i = 0; i < n && ok; i++) {
                if (min_u64(part[i], w[i].need_kib) == 0)
                        continue;
                uint64_t got = copy[i].to_kib - w[i].to_kib;
                ok = w[i].headroom_kib + got >= s->domain_threshold_kib / 2;
        }
        free(copy);
        return ok;
}

static int serve_in_order(const McGuest *const *guests, size_t n, Work *w, uint64_t avail, uint64_t *given)
{
        Order *order = calloc(n > 0 ? n : 1, sizeof(Order));
        size_t k = 0;

        if (!order)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (w[i].need_kib > 0)
                        order[k++] = (Order){ .w = &w[i], .uuid = guests[i]->uuid, .i = i };
        qsort(order, k, sizeof(Order), compare_order);
        *given = 0;
        for (size_t j = 0; j < k && avail > 0; j++) {
                Work *x = &w[order[j].i];
                uint64_t amount = min_u64(x->need_kib, avail);

                x->to_kib += amount;
                x->reason = MC_REASON_CRUNCH_GRANT;
                x->need_kib -= amount;
                avail -= amount;
                *given += amount;
        }
        free(order);
        return 0;
}

/*
 * Over-commit seen coming (what the consumers will eat over the next TRIAGE_LOOKAHEAD exceeds
 * what the host can give) with one consumer ranked above the others by the admin. Serving
 * every need in full until the memory is gone leaves every consumer at its reserve when it
 * is, and they all run out together. Instead, in the crunch order, a guest whose need and
 * next TRIAGE_LOOKAHEAD of demand still fit gets its whole need (the ranked one always: its
 * reserve is its buffer for when the memory is gone); the others only what brings them back
 * to T. Those run short first, and what they give up then reaches the ones ahead. Among
 * equal weights this is not done: a forecast from the rate cannot tell a ramp that ends in
 * a moment from one that does not, and holding the others at T for a guest that did not
 * need it costs them in a small shortfall (tests/sim/sweep.py: no fewer kills either).
 */
static int triage(const McGuest *const *guests, size_t n, Work *w, uint64_t avail, uint64_t *given)
{
        Order *order = calloc(n > 0 ? n : 1, sizeof(Order));
        size_t k = 0;
        double left = (double) avail;

        if (!order)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (w[i].need_kib > 0 || w[i].rate_kib_s > 0)
                        order[k++] = (Order){ .w = &w[i], .uuid = guests[i]->uuid, .i = i };
        qsort(order, k, sizeof(Order), compare_order);
        *given = 0;
        for (size_t j = 0; j < k; j++) {
                Work *x = &w[order[j].i];
                double demand = (double) x->need_kib + x->rate_kib_s * (double) TRIAGE_LOOKAHEAD_USEC / 1e6;
                /* The first in the order is ahead of everyone: all it needs. */
                uint64_t amount = j == 0 || demand <= left ? x->need_kib : x->urgent_kib;

                amount = min_u64(amount, avail);
                left -= demand <= left ? demand : (double) amount;
                if (amount > 0) {
                        x->to_kib += amount;
                        x->reason = MC_REASON_GRANT;
                        avail -= amount;
                        *given += amount;
                }
                x->need_kib -= min_u64(amount, x->need_kib);
        }
        free(order);
        return 0;
}

/*
 * When an over-commit is coming or here and the admin ranked one consumer above every other
 * (Weight=), that guest's reserve covers LEAD_RESERVE of its demand instead of one reaction
 * time: the others run out first, and it must outlast them until what their workloads give
 * up (or their kernel kills) reaches it, which takes the stats period, a claim and the
 * balloon's inflation (~5-7 s, tests/e2e/README.md). Among equal weights the crunch order is
 * only a tie-break, and no guest is given more than its usual reserve at the others' cost
 * (in a small shortfall that would push them towards their OOM point) until the crunch is
 * lethal (lethal_lead).
 */
static size_t extend_lead_reserve(const McPolicySettings *s, const McGuest *const *guests, size_t n, Work *w)
{
        size_t lead = n;
        unsigned others_weight = 0;

        /* The heaviest consumer ... */
        for (size_t i = 0; i < n; i++)
                if (!w[i].skip && (w[i].need_kib > 0 || w[i].rate_kib_s > 0) &&
                    (lead == n || w[i].limits.weight > w[lead].limits.weight))
                        lead = i;
        if (lead == n)
                return n;
        /* ... above every other guest managed, consuming or not (one whose workload just
         * ended or was killed is still the one it must outlast); alone, nobody to outlast. */
        for (size_t i = 0; i < n; i++)
                if (i != lead && !w[i].skip && w[i].limits.weight > others_weight)
                        others_weight = w[i].limits.weight;
        if (others_weight == 0 || w[lead].limits.weight <= others_weight)
                return n;
        uint64_t reserve = s->domain_threshold_kib + rate_cover_kib(w[lead].rate_kib_s, LEAD_RESERVE_USEC);
        uint64_t need = need_for(guests[lead], &w[lead], sub_sat(reserve, w[lead].headroom_kib));
        if (need > w[lead].need_kib)
                w[lead].need_kib = need;
        w[lead].ranked = true;
        return lead;
}

/*
 * A crunch no share gets every consumer through: at their rates, what the consumers hold above
 * their OOM point (T/2) and what is left to give last them less than LETHAL_HORIZON together.
 * Shared, they all run out together and all are killed (tests/sim/sweep.py: equal shares
 * killed 28 of the 30 guests of the crunch family). Instead the first consumer in the crunch
 * order, when it is short itself, is served first: its usual need before anyone's; the other
 * consumers are brought back to T at most, with no reserve above it, and while the lead is
 * left short those holding more than it give what they hold above T and the fair band for
 * the lead's headroom (fair_band_kib: none once the lead is CRUNCH_FAIR_BAND under T). They
 * run short first, and what their workloads give up (or their kernel kills) reaches the lead
 * in time. Its reserve is not extended as for a guest the admin ranked, and a lead that needs
 * nothing is shared as any guest: on real guests, in a crunch that shares to the MiB carry, a
 * lead that kept its excess (or was given more) cost another consumer its life
 * (tests/e2e/README.md, "The crunch"). Returns it, or n when the crunch is not lethal.
 */
static size_t lethal_lead(const McPolicySettings *s, const McGuest *const *guests, size_t n, const Work *w,
                          uint64_t avail)
{
        double cushion = (double) avail, eaten = 0;
        size_t lead = n, consumers = 0;

        for (size_t i = 0; i < n; i++) {
                if (w[i].skip || w[i].rate_kib_s <= 0)
                        continue;
                consumers++;
                cushion += (double) sub_sat(w[i].headroom_kib, s->domain_threshold_kib / 2);
                eaten += w[i].rate_kib_s * (double) LETHAL_HORIZON_USEC / 1e6;
                Order x = { .w = &w[i], .uuid = guests[i]->uuid, .i = i };
                if (lead == n ||
                    compare_order(&x, &(Order){ .w = &w[lead], .uuid = guests[lead]->uuid }) < 0)
                        lead = i;
        }
        /* A lead that needs nothing is not helped by anyone's shortfall: it is shared. */
        return consumers >= 2 && cushion < eaten && w[lead].need_kib > 0 ? lead : n;
}

static bool over_commit_coming(const Work *w, size_t n, uint64_t avail)
{
        double demand = 0;

        for (size_t i = 0; i < n; i++)
                demand += (double) w[i].need_kib + w[i].rate_kib_s * (double) TRIAGE_LOOKAHEAD_USEC / 1e6;
        return demand > (double) avail;
}

/*
 * Serves part[i] of each guest's need from *avail: every part if they all fit, else shared by
 * weight, or whole in the crunch order when in_order.
 */
static int serve_parts(const McGuest *const *guests, size_t n, Work *w, const uint64_t *part, bool in_order,
                       uint64_t *avail, uint64_t *given)
{
        Work *x = malloc((n > 0 ? n : 1) * sizeof(Work));
        uint64_t total = 0, got = 0;
        int r = 0;

        if (!x)
                return -ENOMEM;
        memcpy(x, w, n * sizeof(Work));
        for (size_t i = 0; i < n; i++) {
                x[i].need_kib = min_u64(part[i], w[i].need_kib);
                total += x[i].need_kib;
        }
        if (total <= *avail)
                got = share_by_weight(n, x, total);
        else if (in_order)
                r = serve_in_order(guests, n, x, *avail, &got);
        else
                got = share_by_weight(n, x, *avail);
        for (size_t i = 0; i < n && r >= 0; i++) {
                uint64_t amount = x[i].to_kib - w[i].to_kib;
                if (amount == 0)
                        continue;
                w[i].to_kib += amount;
                w[i].need_kib -= min_u64(amount, w[i].need_kib);
                w[i].urgent_kib -= min_u64(amount, w[i].urgent_kib);
                w[i].reason = MC_REASON_CRUNCH_GRANT;
        }
        free(x);
        if (r < 0)
                return r;
        *avail -= min_u64(got, *avail);
        *given += got;
        return 0;
}

/*
 * A crunch with one consumer ranked above every other (Weight=, extend_lead_reserve): first
 * what keeps each needy guest at T/2 (the OOM point of the guests here is ~47 MiB at T = 100),
 * whole in the crunch order when not all of it fits; then the ranked guest's whole need. The
 * others share what is left by the usual rules. In a lethal crunch (lethal_lead) the lead's
 * need comes first: T/2 for the others would only spread the memory among guests that run out
 * together. Adds what it gives to *given.
 */
static int ranked_first(const McPolicySettings *s, const McGuest *const *guests, size_t n, Work *w,
                        size_t ranked, bool lethal, uint64_t *avail, uint64_t *given)
{
        uint64_t *part = calloc(n > 0 ? n : 1, sizeof(uint64_t));
        int r;

        if (!part)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                part[i] = lethal ? 0 : sub_sat(s->domain_threshold_kib / 2, w[i].headroom_kib);
        r = serve_parts(guests, n, w, part, true, avail, given);
        if (r >= 0) {
                memset(part, 0, n * sizeof(uint64_t));
                part[ranked] = w[ranked].need_kib;
                r = serve_parts(guests, n, w, part, true, avail, given);
        }
        free(part);
        return r;
}

static bool recently_claimed(const McPolicyInput *in, const McGuest *g, uint64_t usec)
{
        return g->last_claim_usec > g->last_grant_usec && in->now_mono_usec < g->last_claim_usec + usec;
}

/*
 * No grant straight after a claim in a crunch: what a guest gave goes to the others, and
 * handing it back a tick later (the memory a claim freed, shared among all the needy, the
 * donor among them) is the reversal of ping-pong. Within FLIP_GUARD of a claim a guest's need
 * waits, unless it is now the worst off of the needy guests: then it is served as any other.
 */
static void defer_donors(const McPolicyInput *in, const McGuest *const *guests, size_t n, Work *w)
{
        uint64_t lowest = UINT64_MAX;

        for (size_t i = 0; i < n; i++)
                if (w[i].need_kib > 0 && !recently_claimed(in, guests[i], FLIP_GUARD_USEC))
                        lowest = min_u64(lowest, w[i].headroom_kib);
        for (size_t i = 0; i < n; i++)
                if (w[i].need_kib > 0 && recently_claimed(in, guests[i], FLIP_GUARD_USEC) &&
                    w[i].headroom_kib >= lowest)
                        w[i].need_kib = w[i].urgent_kib = 0;
}

/*
 * A crunch: first what brings each needy guest back to T (its urgent need), then, with what is
 * left, the reserves above T, shared by weight. Urgent needs that do not all fit are shared
 * while shares keep everyone at T/2 or more, else served whole in order. A reserve is never
 * paid for with another guest's urgent need. A guest the admin ranked above every other, or
 * the lead of a lethal crunch, is served first (ranked_first); in a lethal crunch the other
 * consumers get no reserve above T. One claimed from just now waits (defer_donors).
 */
static int crunch_adaptive(const McPolicySettings *s, const McPolicyInput *in, const McGuest *const *guests,
                           size_t n, Work *w, size_t ranked, bool lethal, uint64_t avail, uint64_t *given)
{
        uint64_t *urgent = calloc(n > 0 ? n : 1, sizeof(uint64_t));
        uint64_t total = 0;
        int r = 0;

        if (!urgent)
                return -ENOMEM;
        *given = 0;
        defer_donors(in, guests, n, w);
        if (ranked < n)
                r = ranked_first(s, guests, n, w, ranked, lethal, &avail, given);
        if (r >= 0) {
                for (size_t i = 0; i < n; i++) {
                        urgent[i] = w[i].urgent_kib;
                        total += min_u64(urgent[i], w[i].need_kib);
                }
                bool in_order = total > avail && !crunch_shared_survivably(s, n, w, urgent, avail);
                r = serve_parts(guests, n, w, urgent, in_order, &avail, given);
        }
        free(urgent);

        /* Reserves from what is left, shared: none is paid in full while another runs short.
         * Behind the lead of a lethal crunch, none for the other consumers. */
        if (lethal)
                for (size_t i = 0; i < n; i++)
                        if (i != ranked && w[i].rate_kib_s > 0)
                                w[i].need_kib = 0;
        if (r >= 0 && avail > 0)
                *given += share_by_weight(n, w, avail);
        return r;
}

/*
 * What a guest that needed memory lately keeps above 2T before anything is claimed, to
 * nothing by GRANT_HOLD: after a grant, its peak rate over the reaction time, shrinking
 * linearly; after its use fell, the size it had at its high, use and headroom, whole for
 * PEAK_HOLD_FULL then shrinking (a cyclic load wants it back within a cycle: claiming it is
 * the ping-pong). A workload that ended for good gets it all back within GRANT_HOLD plus a
 * few claims.
 */
static uint64_t hold_kib(const McPolicySettings *s, const McPolicyInput *in, const McGuest *g)
{
        uint64_t hold = 0;

        if (recently_granted(in, g, GRANT_HOLD_USEC)) {
                double left = 1.0 - (double) (in->now_mono_usec - g->last_grant_usec) / GRANT_HOLD_USEC;
                hold = rate_cover_kib(g->peak_rate_kib_s * left, horizon_usec(in));
        }
        /* Only for a guest we granted memory within GRANT_HOLD, or whose load came back to
         * its high since (a cyclic load: each high renews it, cycle_high_usec): one that
         * never asked (a kernel that booted and freed its init memory, a workload that fit)
         * goes to its idle reserve at once, and so does a workload held for minutes. */
        uint64_t high = g->peak_size_kib;
        uint64_t now = g->sample_used_kib + 2 * s->domain_threshold_kib;
        uint64_t wanted_at = mc_guest_wanted_usec(g);
        if (wanted_at > 0 && in->now_mono_usec < wanted_at + GRANT_HOLD_USEC && g->peak_used_usec > 0 &&
            in->now_mono_usec < g->peak_used_usec + GRANT_HOLD_USEC && mc_guest_use_fell(g) && high > now) {
                uint64_t since = in->now_mono_usec - g->peak_used_usec;
                double left = 1.0;
                if (since > PEAK_HOLD_FULL_USEC)
                        left -= (double) (since - PEAK_HOLD_FULL_USEC) /
                                (GRANT_HOLD_USEC - PEAK_HOLD_FULL_USEC);
                hold = max_u64(hold, (uint64_t) ((double) (high - now) * left));
        }
        return hold;
}

/*
 * What a guest keeps above T in a crunch where another is left short, given the lowest
 * headroom among the guests left short (with what they were given this tick):
 * CRUNCH_FAIR_BAND, but never more than that above the lowest of them. A shortfall is then
 * shared: nobody sits at its OOM point beside a guest holding more than T (on the real guests
 * of e2e scenario 2, the last to start ramping sat at 49-50 MiB unused, a few MiB from its OOM
 * point, beside two at 107-121). And it is the band of a hysteresis: a guest that holds its
 * workload is not claimed the last few MiB down to T, where its kernel's drift makes it needy
 * again and the next memory freed goes back to it (a claim, a grant, a claim: the reversals
 * real scenario 2 showed for all three guests while they held).
 */
static uint64_t fair_band_kib(uint64_t T, uint64_t short_low_kib)
{
        return min_u64(CRUNCH_FAIR_BAND_KIB, sub_sat(short_low_kib + CRUNCH_FAIR_BAND_KIB, T));
}

static void adaptive_claims(const McPolicySettings *s, const McPolicyInput *in, const McGuest *const *guests,
                            size_t n, Work *w, McPolicySummary *sum)
{
        uint64_t T = s->domain_threshold_kib;
        /* A guest left short this tick: what others hold for a load that may come back goes
         * to it instead (a workload that ended, or that its kernel killed, is not held for). */
        bool wanted = false;
        uint64_t short_low = UINT64_MAX;

        for (size_t i = 0; i < n; i++)
                if (w[i].need_kib > 0) {
                        wanted = true;
                        short_low =
                                min_u64(short_low,
                                        w[i].headroom_kib + sub_sat(w[i].to_kib, committed_kib(guests[i])));
                }
        uint64_t band = fair_band_kib(T, short_low);
        /* A guest served first (ranked by the admin, or the lead of a lethal crunch) and still
         * left short: every other guest that holds more than it gives what it holds above T,
         * needy or consuming, but the fair band for the lead's headroom. A lead only a little
         * short is not paid with the others' last MiB above T: their kernel's drift takes those
         * back at once, and a guest claimed to T, then needy, then claimed again is the
         * reversals real scenario 2 showed while all three held (a lead's reading frozen for
         * 8 s after a grant kept it "short"). Behind a lead CRUNCH_FAIR_BAND or more under T
         * they give all they hold above T. */
        bool lead_short = false;
        uint64_t lead_low = 0;
        for (size_t i = 0; i < n; i++)
                if (w[i].ranked && w[i].need_kib > 0)
                        lead_short = true, lead_low = w[i].headroom_kib;
        for (size_t i = 0; i < n; i++) {
                const McGuest *g = guests[i];
                bool behind = sum->crunch && lead_short && !w[i].ranked &&
                              w[i].headroom_kib > max_u64(T, lead_low);

                if (w[i].skip || (w[i].touched && !behind) || w[i].reason != MC_REASON_NONE ||
                    g->moved_externally || g->last_target_kib > g->actual_kib)
                        continue;
                /* Not ahead of the balloon: see CLAIM_AHEAD_MAX. */
                if (g->actual_kib - claim_base_kib(g) > CLAIM_AHEAD_MAX_KIB)
                        continue;
                /* A consuming guest is about to need what would be claimed; but in a crunch
                 * where another is left short, what it holds beyond the fair band
                 * (fair_band_kib) above its reserve is not its share (a burst read as its
                 * rate, or a pessimistic guess at frozen figures, granted it that much more
                 * than the others). */
                bool consuming = w[i].rate_kib_s > 0;
                if (consuming && (!(sum->crunch && wanted) || w[i].ranked))
                        continue;
                /* No claim straight after a grant: the opposite move back to back is the
                 * ping-pong of a cyclic load. In a crunch a guest granted memory within the hold
                 * is a consumer, not a donor (what it is claimed it needs again at once): it
                 * keeps the fair band above T; more than that, a grant that outran its demand
                 * (a burst read as its rate), goes to the guests under T at once, not after the
                 * guard (on real guests one granted 141 MiB in a tick kept it for 12 s while
                 * another fell to 46 MiB unused, at its OOM point). Unless its use fell well
                 * below its high (a workload that ended, or that its kernel killed): then it is
                 * a donor at once. */
                bool fell = mc_guest_use_fell(g);
                if (recently_granted(in, g, FLIP_GUARD_USEC) && !(sum->crunch && (fell || wanted)))
                        continue;
                /* A guest that grew its own balloon (autodeflate) was at its OOM point: not a
                 * donor for GRANT_HOLD, unless its use fell since. */
                if (g->last_grew_usec > 0 && in->now_mono_usec < g->last_grew_usec + GRANT_HOLD_USEC &&
                    !fell)
                        continue;
                /* In a crunch of the host alone (nobody left short), a guest granted memory
                 * lately still keeps the band; the others give down to T. */
                bool consumer = sum->crunch && recently_granted(in, g, GRANT_HOLD_USEC) &&
                                g->use_rate_kib_s > -RATE_STEADY_KIB_S && !fell;

                uint64_t keep = sum->crunch ? T + (consumer || consuming || wanted ? band : 0) : 2 * T;
                if (consuming)
                        keep += rate_cover_kib(w[i].rate_kib_s, horizon_usec(in));
                if (behind)
                        keep = T + fair_band_kib(T, lead_low);
                /* Within its hold, a use still on its way down may be a cycle's descent (a
                 * triangle load gives back for half its period): what it frees is claimed
                 * once it stops falling or the hold runs out, not on the way down, to be
                 * granted back on the way up. Once claims have begun, they go on: a claim
                 * itself reads as a fall while the guest's MemTotal follows the balloon and
                 * its MemFree stands still (on real guests such a reading held the claims of a
                 * sawtooth's end back 9 s). */
                if (!sum->crunch && !wanted) {
                        uint64_t hold = hold_kib(s, in, g);
                        if (hold > 0 && g->use_rate_kib_s < -RATE_STEADY_KIB_S &&
                            !recently_claimed(in, g, FLIP_GUARD_USEC))
                                continue;
                        keep += hold;
                }
                /* Never more than the reading itself shows, less the claim in flight: the
                 * claim fraction holds against the freshest figure too. */
                uint64_t seen = sub_sat(mc_guest_headroom_kib(g), g->actual_kib - claim_base_kib(g));
                uint64_t amount = claim_amount(s, g, &w[i], min_u64(w[i].headroom_kib, seen), keep);
                if (amount <
                    (sum->crunch ? max_u64(s->dead_band_kib, CRUNCH_MIN_MOVE_KIB) : s->dead_band_kib))
                        continue;
                w[i].to_kib = claim_base_kib(g) - amount;
                w[i].reason = sum->crunch ? MC_REASON_CRUNCH_CLAIM : MC_REASON_CLAIM;
                sum->claimed_kib += amount;
        }
}

/* A crunch grant below CRUNCH_MIN_MOVE, but for one to a guest under T or one that also lifts
 * it to its floor. (Crunch claims that small are not made: adaptive_claims.) */
static bool crunch_crumb(const McPolicySettings *s, const McGuest *g, const Work *w)
{
        uint64_t from = committed_kib(g);

        return w->reason == MC_REASON_CRUNCH_GRANT && w->to_kib < from + CRUNCH_MIN_MOVE_KIB &&
               w->headroom_kib >= s->domain_threshold_kib && from >= w->limits.floor_kib;
}

ssize_t mc_policy_run(const McPolicySettings *s, const McPolicyInput *in, const McGuest *const *guests,
                      size_t n_guests, McDecision *decisions, uint64_t *short_kib, McPolicySummary *summary)
{
        McPolicySummary sum = {};
        uint64_t total_actual = 0, total_committed = 0, in_flight = 0;
        size_t n_decisions = 0;
        bool adaptive = s->kind == MC_POLICY_ADAPTIVE;

        assert(s);
        assert(in);
        assert(guests || n_guests == 0);
        assert(decisions || n_guests == 0);

        Work *w = calloc(n_guests > 0 ? n_guests : 1, sizeof(Work));
        if (!w)
                return -ENOMEM;
        for (size_t i = 0; i < n_guests; i++) {
                const McGuest *g = guests[i];

                w[i] = (Work){
                        .to_kib = committed_kib(g),
                        .reason = MC_REASON_NONE,
                        .limits = mc_guest_limits(s->default_min_kib, g),
                        .skip = g->status != MC_GUEST_MANAGED || g->retry_after_usec > in->now_mono_usec,
                };
                total_actual += g->actual_kib;
                total_committed += committed_kib(g);
                in_flight += committed_kib(g) - g->actual_kib;
        }

        /*
         * What the host can give: its free memory above H, minus grants already asked for but
         * not landed yet (they are still counted as free), and within the budget if one is set.
         */
        uint64_t host_free_kib = in->host_free_kib;
        uint64_t avail = sub_sat(host_free_kib, s->host_threshold_kib + in_flight);
        if (s->host_budget_kib > 0 && sub_sat(s->host_budget_kib, total_committed) <= avail) {
                avail = sub_sat(s->host_budget_kib, total_committed);
                sum.budget_bound = true;
        }
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
                const McGuest *g = guests[i];
                uint64_t floor_kib = w[i].limits.floor_kib, cap = w[i].limits.cap_kib;

                if (w[i].skip)
                        continue;
                if (g->actual_kib >= cap + s->dead_band_kib) {
                        w[i].to_kib = cap;
                        w[i].reason = MC_REASON_CLAMP;
                        w[i].touched = true;
                } else if (g->actual_kib + s->dead_band_kib <= floor_kib) {
                        uint64_t up = min_u64(sub_sat(floor_kib, w[i].to_kib), avail);
                        if (up > 0) {
                                w[i].to_kib += up;
                                w[i].reason = MC_REASON_CLAMP;
                                avail -= up;
                        }
                }
        }

        if (adaptive)
                adaptive_needs(s, in, guests, n_guests, w);
        else
                seed_needs(s, guests, n_guests, w);
        for (size_t i = 0; i < n_guests; i++)
                if (w[i].need_kib > 0) {
                        w[i].asked_kib = w[i].need_kib;
                        sum.need_total_kib += w[i].need_kib;
                        sum.n_needy++;
                }

        sum.crunch = sum.need_total_kib > avail || deficit;
        size_t ranked = n_guests;
        if (adaptive && (sum.crunch || over_commit_coming(w, n_guests, avail)))
                ranked = extend_lead_reserve(s, guests, n_guests, w);
        bool lethal = false;
        if (adaptive && sum.crunch && ranked == n_guests) {
                ranked = lethal_lead(s, guests, n_guests, w, avail);
                lethal = ranked < n_guests;
                if (lethal)
                        w[ranked].ranked = true;
        }
        sum.served_first = lethal ? ranked : n_guests;
        if (!sum.crunch && ranked < n_guests) {
                if (triage(guests, n_guests, w, avail, &sum.granted_kib) < 0) {
                        free(w);
                        return -ENOMEM;
                }
        } else if (!sum.crunch) {
                for (size_t i = 0; i < n_guests; i++)
                        if (w[i].need_kib > 0) {
                                w[i].to_kib += w[i].need_kib;
                                w[i].reason = MC_REASON_GRANT;
                                sum.granted_kib += w[i].need_kib;
                                w[i].need_kib = 0;
                        }
        } else if (adaptive) {
                int r = crunch_adaptive(s, in, guests, n_guests, w, ranked, lethal, avail, &sum.granted_kib);
                if (r < 0) {
                        free(w);
                        return r;
                }
        } else
                sum.granted_kib = share_by_weight(n_guests, w, avail);

        if (adaptive)
                adaptive_claims(s, in, guests, n_guests, w, &sum);
        else
                seed_claims(s, guests, n_guests, w, &sum);

        for (size_t i = 0; i < n_guests; i++) {
                const McGuest *g = guests[i];

                if (adaptive && crunch_crumb(s, g, &w[i])) {
                        sum.granted_kib -= min_u64(w[i].to_kib - committed_kib(g), sum.granted_kib);
                        w[i].to_kib = committed_kib(g);
                        w[i].reason = MC_REASON_NONE;
                }
                uint64_t to = w[i].to_kib;

                /* What was needed and not given: share_by_weight zeroes need_kib as it goes. */
                uint64_t got = w[i].reason == MC_REASON_CRUNCH_GRANT || w[i].reason == MC_REASON_GRANT
                                       ? sub_sat(to, committed_kib(g))
                                       : 0;
                uint64_t missing = w[i].asked_kib > got ? w[i].asked_kib - got : 0;
                if (missing >= s->dead_band_kib && missing > 0)
                        sum.n_short++;
                if (short_kib)
                        short_kib[i] = missing >= s->dead_band_kib ? missing : 0;

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
