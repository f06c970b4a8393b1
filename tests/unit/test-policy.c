/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The coordination policy, as tables of one tick (inputs -> exact targets) and as small
 * simulations of many ticks with invariants checked at every step. Every size is in KiB.
 *
 * Defaults used throughout: T = 100M, H = 200M, floor 256M, dead band 1M, c = 0.1, factor 2.
 */

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "policy.h"

#define MIB(x) ((uint64_t) (x) *UINT64_C(1024))
#define KIB_OF_MIB_TENTHS(x) ((uint64_t) (x) *UINT64_C(1024) / 10)
#define GIB(x) MIB((uint64_t) (x) *UINT64_C(1024))

#define T_KIB MIB(100)
#define H_KIB MIB(200)
#define PLENTY GIB(64)
#define DEFAULT_MAX GIB(8)
#define NMAX 4

/* ---------------------------------------------------------------------------------------- */
/* Helpers */

/* These tests are the seed's rules, exactly: the seed policy on the default settings. */
static McPolicySettings seed_defaults;

static const McDecision *find_decision(const McDecision *d, ssize_t n, size_t guest)
{
        for (ssize_t i = 0; i < n; i++)
                if (d[i].guest == guest)
                        return &d[i];
        return NULL;
}

/* The target decided for a guest, 0 if none; its reason, MC_REASON_NONE if none. */
static uint64_t decision_to(const McDecision *d, ssize_t n, size_t guest)
{
        const McDecision *x = find_decision(d, n, guest);

        return x ? x->to_kib : 0;
}

static McReason decision_reason(const McDecision *d, ssize_t n, size_t guest)
{
        const McDecision *x = find_decision(d, n, guest);

        return x ? x->reason : MC_REASON_NONE;
}

/* Runs the policy and checks what must hold for any input: one decision per guest at most,
 * only managed guests, from = actual, to within [floor, cap] unless the host could not lift
 * the guest to its floor. */
/* One tick of the policy on an array of guests (the daemon passes pointers). */
static ssize_t policy_run(const McPolicySettings *s, uint64_t host_free, const McGuest *g, size_t n,
                          McDecision *d, McPolicySummary *sum)
{
        const McGuest *ptrs[64] = { NULL };
        McPolicyInput in = { .host_free_kib = host_free, .now_mono_usec = 0, .interval_usec = 1000000 };

        g_assert_cmpuint(n, <=, G_N_ELEMENTS(ptrs));
        for (size_t i = 0; i < n; i++)
                ptrs[i] = &g[i];
        return mc_policy_run(s, &in, ptrs, n, d, NULL, sum);
}

static ssize_t run_checked(const McPolicySettings *s, uint64_t host_free, const McGuest *g, size_t n,
                           McDecision *d, McPolicySummary *sum)
{
        ssize_t r = policy_run(s, host_free, g, n, d, sum);

        g_assert_cmpint(r, >=, 0);
        g_assert_cmpint(r, <=, (ssize_t) n);
        for (ssize_t i = 0; i < r; i++) {
                const McGuest *x;

                g_assert_cmpuint(d[i].guest, <, n);
                if (d[i].guest >= n)
                        continue;
                x = &g[d[i].guest];
                for (ssize_t j = 0; j < i; j++)
                        g_assert_cmpuint(d[j].guest, !=, d[i].guest);
                g_assert_cmpint(x->status, ==, MC_GUEST_MANAGED);
                g_assert_cmpuint(d[i].from_kib, ==, x->actual_kib);
                g_assert_cmpuint(d[i].to_kib, !=, d[i].from_kib);
                g_assert_cmpint(d[i].reason, >, MC_REASON_NONE);
                g_assert_cmpint(d[i].reason, <, _MC_REASON_MAX);
                g_assert_cmpuint(d[i].to_kib, <=, mc_guest_cap_kib(x));
                if (d[i].to_kib < d[i].from_kib) /* a release never goes below the floor */
                        g_assert_cmpuint(d[i].to_kib, >=, mc_guest_floor_kib(s, x));
        }
        return r;
}

/* ---------------------------------------------------------------------------------------- */
/* Settings, names, floor and cap */

static void test_settings_check(void)
{
        static const struct {
                const char *what;
                uint64_t t, h, dead_band;
                double c, gf;
                bool ok;
        } table[] = {
                { "defaults", MIB(100), MIB(200), MIB(1), 0.10, 2.0, true },
                { "T = 0", 0, MIB(200), 0, 0.10, 2.0, false },
                { "T = 1 KiB, dead band 0", 1, MIB(200), 0, 0.10, 2.0, true },
                { "T = 1 TiB", GIB(1024), MIB(200), MIB(1), 0.10, 2.0, true },
                { "T > 1 TiB", GIB(1024) + 1, MIB(200), MIB(1), 0.10, 2.0, false },
                { "H = 0", MIB(100), 0, MIB(1), 0.10, 2.0, true },
                { "H > 1 TiB", MIB(100), GIB(1024) + 1, MIB(1), 0.10, 2.0, false },
                { "c = 0", MIB(100), MIB(200), MIB(1), 0.0, 2.0, false },
                { "c < 0", MIB(100), MIB(200), MIB(1), -0.1, 2.0, false },
                { "c = 1", MIB(100), MIB(200), MIB(1), 1.0, 2.0, true },
                { "c > 1", MIB(100), MIB(200), MIB(1), 1.0001, 2.0, false },
                { "c = NaN", MIB(100), MIB(200), MIB(1), NAN, 2.0, false },
                { "c tiny", MIB(100), MIB(200), MIB(1), 0.0001, 2.0, true },
                { "factor < 1", MIB(100), MIB(200), MIB(1), 0.10, 0.99, false },
                { "factor = 0", MIB(100), MIB(200), MIB(1), 0.10, 0.0, false },
                { "factor = 1", MIB(100), MIB(200), MIB(1), 0.10, 1.0, true },
                { "factor = 16", MIB(100), MIB(200), MIB(1), 0.10, 16.0, true },
                { "factor > 16", MIB(100), MIB(200), MIB(1), 0.10, 16.5, false },
                { "factor = NaN", MIB(100), MIB(200), MIB(1), 0.10, NAN, false },
                { "dead band = T", MIB(100), MIB(200), MIB(100), 0.10, 2.0, false },
                { "dead band > T", MIB(100), MIB(200), MIB(101), 0.10, 2.0, false },
                { "dead band = T - 1", MIB(100), MIB(200), MIB(100) - 1, 0.10, 2.0, true },
                { "dead band 0", MIB(100), MIB(200), 0, 0.10, 2.0, true },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                McPolicySettings s = seed_defaults;
                const char *why;

                s.domain_threshold_kib = table[i].t;
                s.host_threshold_kib = table[i].h;
                s.dead_band_kib = table[i].dead_band;
                s.claim_fraction = table[i].c;
                s.grant_factor = table[i].gf;
                why = mc_policy_settings_check(&s);
                g_test_message("%s: %s", table[i].what, why ? why : "ok");
                if (table[i].ok)
                        g_assert_null(why);
                else {
                        g_assert_nonnull(why);
                        g_assert_cmpuint(strlen(why), >, 0);
                }
        }
}

static void test_defaults(void)
{
        g_assert_cmpuint(mc_policy_defaults.domain_threshold_kib, ==, MIB(100));
        g_assert_cmpuint(mc_policy_defaults.host_threshold_kib, ==, MIB(200));
        g_assert_cmpuint(mc_policy_defaults.host_budget_kib, ==, 0);
        g_assert_cmpuint(mc_policy_defaults.default_min_kib, ==, MIB(256));
        g_assert_cmpuint(mc_policy_defaults.dead_band_kib, ==, MIB(1));
        g_assert_cmpfloat(mc_policy_defaults.claim_fraction, ==, 0.10);
        g_assert_cmpfloat(mc_policy_defaults.grant_factor, ==, 2.0);
        g_assert_cmpint(mc_policy_defaults.kind, ==, MC_POLICY_ADAPTIVE);
        g_assert_null(mc_policy_settings_check(&mc_policy_defaults));
}

static void test_names(void)
{
        static const char *const reasons[] = { "none",         "claim",        "grant",
                                               "crunch-claim", "crunch-grant", "clamp" };
        static const char *const statuses[] = {
                "managed", "no-balloon", "stale", "excluded", "busy", "stuck"
        };

        G_STATIC_ASSERT(G_N_ELEMENTS(reasons) == _MC_REASON_MAX);
        G_STATIC_ASSERT(G_N_ELEMENTS(statuses) == _MC_GUEST_STATUS_MAX);
        for (int i = 0; i < _MC_REASON_MAX; i++)
                g_assert_cmpstr(mc_reason_to_string((McReason) i), ==, reasons[i]);
        for (int i = 0; i < _MC_GUEST_STATUS_MAX; i++)
                g_assert_cmpstr(mc_guest_status_to_string((McGuestStatus) i), ==, statuses[i]);
        g_assert_null(mc_reason_to_string(_MC_REASON_MAX));
        g_assert_null(mc_reason_to_string((McReason) -1));
        g_assert_null(mc_guest_status_to_string(_MC_GUEST_STATUS_MAX));
        g_assert_null(mc_guest_status_to_string((McGuestStatus) -1));
}

static void test_floor_and_cap(void)
{
        static const struct {
                uint64_t max, limit_max, min, cap, floor;
        } table[] = {
                { GIB(4), 0, 0, GIB(4), MIB(256) },
                { GIB(4), GIB(2), 0, GIB(2), MIB(256) },
                { GIB(4), GIB(8), 0, GIB(4), MIB(256) }, /* a limit above max is no limit */
                { GIB(4), 0, MIB(512), GIB(4), MIB(512) },
                { GIB(4), MIB(384), MIB(512), MIB(384), MIB(384) }, /* floor never above cap */
                { MIB(200), 0, 0, MIB(200), MIB(200) },
                { GIB(4), 0, MIB(100), GIB(4), MIB(100) }, /* a min below the default */
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                McGuest g = { .max_kib = table[i].max,
                              .limit_max_kib = table[i].limit_max,
                              .min_kib = table[i].min };

                g_assert_cmpuint(mc_guest_cap_kib(&g), ==, table[i].cap);
                g_assert_cmpuint(mc_guest_floor_kib(&seed_defaults, &g), ==, table[i].floor);
        }
}

static void test_no_guests(void)
{
        McPolicySummary sum;

        memset(&sum, 0xaa, sizeof(sum));
        g_assert_cmpint(policy_run(&seed_defaults, PLENTY, NULL, 0, NULL, &sum), ==, 0);
        g_assert_cmpuint(sum.granted_kib, ==, 0);
        g_assert_cmpuint(sum.claimed_kib, ==, 0);
        g_assert_cmpuint(sum.n_needy, ==, 0);
        g_assert_false(sum.crunch);
        g_assert_cmpuint(sum.host_available_kib, ==, PLENTY - H_KIB);
        /* A NULL summary is allowed. */
        g_assert_cmpint(policy_run(&seed_defaults, 0, NULL, 0, NULL, NULL), ==, 0);
}

/* ---------------------------------------------------------------------------------------- */
/* One tick, as tables */

typedef struct {
        uint64_t to; /* 0: no decision for this guest */
        McReason reason;
} Expect;

typedef struct {
        const char *name;
        uint64_t host_free;
        /* Settings changes; 0 keeps the default. */
        double claim_fraction;
        double grant_factor;
        uint64_t host_budget;
        uint64_t dead_band;
        bool no_dead_band;
        size_t n;
        McGuest g[NMAX]; /* max_kib 0 here means DEFAULT_MAX */
        Expect e[NMAX];
        /* Summary checks; UINT64_MAX skips. */
        uint64_t granted, claimed, available;
        int crunch; /* -1 skips */
} Case;

#define NOCHECK UINT64_MAX, UINT64_MAX, UINT64_MAX, -1
#define FALLING(from) .has_prev = true, .prev_unused_kib = (from)
#define STEADY(at) .has_prev = true, .prev_unused_kib = (at)

static const Case cases[] = {
        /* --- Claim, no crunch: keep 2T unused, give c x unused per tick. --- */
        { "claim: 10% of 800M unused", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(800) } },
          .e = { { MIB(1968), MC_REASON_CLAIM } }, MIB(0), MIB(80), PLENTY - H_KIB, false },
        { "claim: stops at 2T (210M unused gives 10M, not 21M)", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(210) } },
          .e = { { MIB(2038), MC_REASON_CLAIM } }, 0, MIB(10), UINT64_MAX, false },
        { "claim: unused exactly 2T gives nothing", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(200) } }, .e = { { 0, 0 } }, 0, 0, UINT64_MAX,
          false },
        { "claim: unused between T and 2T gives nothing", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(150) } }, .e = { { 0, 0 } }, 0, 0, UINT64_MAX,
          false },
        { "claim: unused at T gives nothing", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(100), FALLING(MIB(120)) } }, .e = { { 0, 0 } },
          0, 0, UINT64_MAX, false },
        { "claim: 2T + 1023K is inside the dead band", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(200) + 1023 } }, .e = { { 0, 0 } }, 0, 0,
          UINT64_MAX, false },
        { "claim: 2T + 1M is exactly the dead band", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(201) } },
          .e = { { MIB(2047), MC_REASON_CLAIM } }, 0, MIB(1), UINT64_MAX, false },
        { "claim: c x unused rounds down to the KiB", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = 555555 } },
          .e = { { MIB(2048) - 55555, MC_REASON_CLAIM } }, 0, 55555, UINT64_MAX, false },
        { "claim: 300M actual, 290M unused gives 29M (the floor allows 44M)", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(300), .unused_kib = MIB(290) } },
          .e = { { MIB(271), MC_REASON_CLAIM } }, 0, MIB(29), UINT64_MAX, false },
        { "claim: c = 0.2, 300M actual, 290M unused: limited to 44M by the 256M floor", PLENTY,
          .claim_fraction = 0.2, .n = 1, .g = { { .actual_kib = MIB(300), .unused_kib = MIB(290) } },
          .e = { { MIB(256), MC_REASON_CLAIM } }, 0, MIB(44), UINT64_MAX, false },
        { "claim: 280M actual, 270M unused: limited to 24M by the floor", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(280), .unused_kib = MIB(270) } },
          .e = { { MIB(256), MC_REASON_CLAIM } }, 0, MIB(24), UINT64_MAX, false },
        { "claim: the guest's own min is the floor", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(300), .unused_kib = MIB(290), .min_kib = MIB(290) } },
          .e = { { MIB(290), MC_REASON_CLAIM } }, 0, MIB(10), UINT64_MAX, false },
        { "claim: at the floor nothing is claimed", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(256), .unused_kib = MIB(250) } }, .e = { { 0, 0 } }, 0, 0, UINT64_MAX,
          false },
        { "claim: c = 1 takes everything above 2T at once", PLENTY, .claim_fraction = 1.0, .n = 1,
          .g = { { .actual_kib = MIB(4096), .unused_kib = MIB(3000) } },
          .e = { { MIB(4096 - 2800), MC_REASON_CLAIM } }, 0, MIB(2800), UINT64_MAX, false },
        { "claim: several guests at once", PLENTY, .n = 3,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(800) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(150) },
                 { .actual_kib = MIB(4096), .unused_kib = MIB(1000) } },
          .e = { { MIB(1968), MC_REASON_CLAIM }, { 0, 0 }, { MIB(3996), MC_REASON_CLAIM } }, 0, MIB(180),
          UINT64_MAX, false },
        { "claim: without a dead band even 1 KiB is claimed", PLENTY, .no_dead_band = true, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(200) + 1 } },
          .e = { { MIB(2048) - 1, MC_REASON_CLAIM } }, 0, 1, UINT64_MAX, false },

        /* --- Need and grant. --- */
        { "need: below T and falling gets 2 x (T - unused)", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(100), 0, PLENTY - H_KIB, false },
        { "need: unused 0 gets 2T", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) } },
          .e = { { MIB(1224), MC_REASON_GRANT } }, MIB(200), 0, UINT64_MAX, false },
        { "need: capped at the hypervisor max", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(50),
                   .max_kib = MIB(1100),
                   FALLING(MIB(80)) } },
          .e = { { MIB(1100), MC_REASON_GRANT } }, MIB(76), 0, UINT64_MAX, false },
        { "need: capped at the admin's max when lower", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(50),
                   .max_kib = MIB(1100),
                   .limit_max_kib = MIB(1074),
                   FALLING(MIB(80)) } },
          .e = { { MIB(1074), MC_REASON_GRANT } }, MIB(50), 0, UINT64_MAX, false },
        { "need: at max, no need", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(10),
                   .max_kib = MIB(1024),
                   FALLING(MIB(80)) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "need: at the admin's max, no need", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(10),
                   .limit_max_kib = MIB(1024),
                   FALLING(MIB(80)) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "need: not falling, grant in flight: wait for it", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(50),
                   STEADY(MIB(50)),
                   .last_target_kib = MIB(1124) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "need: rising, grant in flight: wait for it", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1060),
                   .unused_kib = MIB(70),
                   FALLING(MIB(40)),
                   .last_target_kib = MIB(1124) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "need: steady below T, nothing in flight: granted all the same", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), STEADY(MIB(50)) } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(100), 0, UINT64_MAX, false },
        { "need: rising below T, nothing in flight: granted", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(40)) } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(100), 0, UINT64_MAX, false },
        { "need: first sight (no previous reading) below T: granted", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50) } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(100), 0, UINT64_MAX, false },
        { "need: falling with a grant in flight asks for the rest", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(50),
                   FALLING(MIB(70)),
                   .last_target_kib = MIB(1074) } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(50), 0, PLENTY - H_KIB - MIB(50), false },
        { "need: falling, in-flight grant already covers it", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(50),
                   FALLING(MIB(70)),
                   .last_target_kib = MIB(1124) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "need: a claim in flight does not count as a grant", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(50),
                   STEADY(MIB(50)),
                   .last_target_kib = MIB(1000) } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(100), 0, PLENTY - H_KIB, false },
        { "need: T - 400K needs 800K, inside the dead band", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(100) - 400, FALLING(MIB(120)) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "need: T - 512K needs exactly the dead band", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(100) - 512, FALLING(MIB(120)) } },
          .e = { { MIB(1025), MC_REASON_GRANT } }, MIB(1), 0, UINT64_MAX, false },
        { "need: factor 1.5 rounds the need up", PLENTY, .grant_factor = 1.5, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 33333, FALLING(MIB(40)) } },
          .e = { { MIB(1024) + 103601, MC_REASON_GRANT } }, 103601, 0, UINT64_MAX, false },
        { "need: moved externally still gets a grant", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(50),
                   FALLING(MIB(80)),
                   .moved_externally = true } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(100), 0, UINT64_MAX, false },
        { "need: two needy guests, host covers both", H_KIB + MIB(300), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) },
                 { .actual_kib = MIB(2048), .unused_kib = MIB(20), FALLING(MIB(80)) } },
          .e = { { MIB(1124), MC_REASON_GRANT }, { MIB(2208), MC_REASON_GRANT } }, MIB(260), 0, MIB(300),
          false },

        /* --- The host floor H and the budget. --- */
        { "host: exactly H free grants nothing", H_KIB, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } }, .e = { { 0, 0 } },
          0, 0, 0, true },
        { "host: below H grants nothing", H_KIB - 1, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } }, .e = { { 0, 0 } },
          0, 0, 0, true },
        { "host: no free memory at all", 0, .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } }, .e = { { 0, 0 } },
          0, 0, 0, true },
        { "host: H + 100M covers a 100M need exactly", H_KIB + MIB(100), .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(100), 0, MIB(100), false },
        { "host: H + 60M gives 60M of a 100M need", H_KIB + MIB(60), .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { MIB(1084), MC_REASON_CRUNCH_GRANT } }, MIB(60), 0, MIB(60), true },
        { "host: grants in flight are spent already", H_KIB + MIB(150), .n = 2,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(80),
                   STEADY(MIB(80)),
                   .last_target_kib = MIB(1124) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { 0, 0 }, { MIB(1074), MC_REASON_CRUNCH_GRANT } }, MIB(50), 0, MIB(50), true },
        { "host: in-flight grants beyond what is free: nothing", H_KIB + MIB(50), .n = 2,
          .g = { { .actual_kib = MIB(1024),
                   .unused_kib = MIB(80),
                   STEADY(MIB(80)),
                   .last_target_kib = MIB(1124) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { 0, 0 }, { 0, 0 } }, 0, 0, 0, true },
        { "budget: what is left under the budget, counting grants in flight", PLENTY, .host_budget = GIB(4),
          .n = 2,
          .g = { { .actual_kib = MIB(2000),
                   .unused_kib = MIB(80),
                   STEADY(MIB(80)),
                   .last_target_kib = MIB(2100) },
                 { .actual_kib = MIB(1900), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { 0, 0 }, { MIB(1996), MC_REASON_CRUNCH_GRANT } }, MIB(96), 0, MIB(96), true },
        { "budget: host free is the tighter bound", H_KIB + MIB(30), .host_budget = GIB(4), .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { MIB(1054), MC_REASON_CRUNCH_GRANT } }, MIB(30), 0, MIB(30), true },
        { "budget: room for the whole need", PLENTY, .host_budget = GIB(4), .n = 1,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { MIB(1124), MC_REASON_GRANT } }, MIB(100), 0, MIB(3072), false },
        { "budget: exceeded: crunch claims, nothing granted", PLENTY, .host_budget = GIB(2), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) },
                 { .actual_kib = MIB(1536), .unused_kib = MIB(150) } },
          .e = { { 0, 0 }, { MIB(1521), MC_REASON_CRUNCH_CLAIM } }, 0, MIB(15), 0, true },

        /* --- Crunch. --- */
        { "crunch: claims from everyone above T, 150M unused gives 15M", H_KIB + MIB(100), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(2048), .unused_kib = MIB(150) } },
          .e = { { MIB(1124), MC_REASON_CRUNCH_GRANT }, { MIB(2033), MC_REASON_CRUNCH_CLAIM } }, MIB(100),
          MIB(15), MIB(100), true },
        { "crunch: never leaves a guest below T (105M unused gives 5M)", H_KIB, .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(2048), .unused_kib = MIB(105) } },
          .e = { { 0, 0 }, { MIB(2043), MC_REASON_CRUNCH_CLAIM } }, 0, MIB(5), 0, true },
        { "crunch: a guest at T gives nothing", H_KIB, .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(2048), .unused_kib = MIB(100) } },
          .e = { { 0, 0 }, { 0, 0 } }, 0, 0, 0, true },
        { "crunch: large unused gives c x unused", H_KIB, .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(4096), .unused_kib = MIB(1500) } },
          .e = { { 0, 0 }, { MIB(3946), MC_REASON_CRUNCH_CLAIM } }, 0, MIB(150), 0, true },
        { "crunch: the floor still holds", H_KIB, .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(260), .unused_kib = MIB(150) } },
          .e = { { 0, 0 }, { MIB(256), MC_REASON_CRUNCH_CLAIM } }, 0, MIB(4), 0, true },
        { "crunch: host below H with nobody needy still claims", H_KIB - MIB(10), .n = 2,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(800) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(150) } },
          .e = { { MIB(1968), MC_REASON_CRUNCH_CLAIM }, { MIB(1009), MC_REASON_CRUNCH_CLAIM } }, 0, MIB(95),
          0, true },
        { "crunch: equal weights, equal shares", H_KIB + MIB(300), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(2048), .unused_kib = 0, FALLING(MIB(30)) } },
          .e = { { MIB(1174), MC_REASON_CRUNCH_GRANT }, { MIB(2198), MC_REASON_CRUNCH_GRANT } }, MIB(300), 0,
          MIB(300), true },
        { "crunch: equal weights 100/100 are equal too", H_KIB + MIB(300), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, .weight = 100, FALLING(MIB(30)) },
                 { .actual_kib = MIB(2048), .unused_kib = 0, .weight = 100, FALLING(MIB(30)) } },
          .e = { { MIB(1174), MC_REASON_CRUNCH_GRANT }, { MIB(2198), MC_REASON_CRUNCH_GRANT } }, MIB(300), 0,
          MIB(300), true },
        { "crunch: three equal shares, rounded down", H_KIB + MIB(100), .n = 3,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) } },
          .e = { { MIB(1024) + 34133, MC_REASON_CRUNCH_GRANT },
                 { MIB(1024) + 34133, MC_REASON_CRUNCH_GRANT },
                 { MIB(1024) + 34133, MC_REASON_CRUNCH_GRANT } },
          3 * 34133, 0, MIB(100), true },
        { "crunch: water-filling, a small need is met and the rest share", H_KIB + MIB(300), .n = 3,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(80), FALLING(MIB(90)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) } },
          .e = { { MIB(1064), MC_REASON_CRUNCH_GRANT },
                 { MIB(1154), MC_REASON_CRUNCH_GRANT },
                 { MIB(1154), MC_REASON_CRUNCH_GRANT } },
          MIB(300), 0, MIB(300), true },
        { "crunch: water-filling, the small need last in order", H_KIB + MIB(300), .n = 3,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(80), FALLING(MIB(90)) } },
          .e = { { MIB(1154), MC_REASON_CRUNCH_GRANT },
                 { MIB(1154), MC_REASON_CRUNCH_GRANT },
                 { MIB(1064), MC_REASON_CRUNCH_GRANT } },
          MIB(300), 0, MIB(300), true },
        { "crunch: water-filling in two rounds", H_KIB + MIB(390), .n = 4,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(80), FALLING(MIB(90)) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(90)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) } },
          /* Shares 97.5M: 40M fits; then 350M / 3 = 116.7M: 100M fits; then 250M / 2. */
          .e = { { MIB(1064), MC_REASON_CRUNCH_GRANT },
                 { MIB(1124), MC_REASON_CRUNCH_GRANT },
                 { MIB(1149), MC_REASON_CRUNCH_GRANT },
                 { MIB(1149), MC_REASON_CRUNCH_GRANT } },
          MIB(390), 0, MIB(390), true },
        { "crunch: weights 100 and 300 share 1:3", H_KIB + MIB(200), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, .weight = 100, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, .weight = 300, FALLING(MIB(30)) } },
          .e = { { MIB(1074), MC_REASON_CRUNCH_GRANT }, { MIB(1174), MC_REASON_CRUNCH_GRANT } }, MIB(200), 0,
          MIB(200), true },
        { "crunch: weight 0 counts as the default, 100", H_KIB + MIB(100), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, .weight = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, .weight = 300, FALLING(MIB(30)) } },
          .e = { { MIB(1049), MC_REASON_CRUNCH_GRANT }, { MIB(1099), MC_REASON_CRUNCH_GRANT } }, MIB(100), 0,
          MIB(100), true },
        { "crunch: the heavy guest needs less than its share, the light one gets the rest", H_KIB + MIB(200),
          .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(70), .weight = 300, FALLING(MIB(90)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, .weight = 100, FALLING(MIB(30)) } },
          .e = { { MIB(1084), MC_REASON_CRUNCH_GRANT }, { MIB(1164), MC_REASON_CRUNCH_GRANT } }, MIB(200), 0,
          MIB(200), true },
        { "crunch: shares are capped at max, the rest goes to the other", H_KIB + MIB(200), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, .limit_max_kib = MIB(1064), FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) } },
          .e = { { MIB(1064), MC_REASON_CRUNCH_GRANT }, { MIB(1184), MC_REASON_CRUNCH_GRANT } }, MIB(200), 0,
          MIB(200), true },
        { "need: two needs capped at max, host covers both", H_KIB + MIB(300), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, .limit_max_kib = MIB(1064), FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) } },
          .e = { { MIB(1064), MC_REASON_GRANT }, { MIB(1224), MC_REASON_GRANT } }, MIB(240), 0, MIB(300),
          false },
        { "crunch: a share below the dead band is not made", H_KIB + MIB(1), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) } },
          .e = { { 0, 0 }, { 0, 0 } }, UINT64_MAX, 0, MIB(1), true },
        { "crunch: moved externally is not claimed from", H_KIB, .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = 0, FALLING(MIB(30)) },
                 { .actual_kib = MIB(4096), .unused_kib = MIB(1500), .moved_externally = true } },
          .e = { { 0, 0 }, { 0, 0 } }, 0, 0, 0, true },

        /* --- Bounds. --- */
        { "clamp: above the admin's cap comes down to it", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(800), .limit_max_kib = MIB(1536) } },
          .e = { { MIB(1536), MC_REASON_CLAMP } }, 0, 0, UINT64_MAX, false },
        { "clamp: above the cap even when needy", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048),
                   .unused_kib = MIB(20),
                   .limit_max_kib = MIB(1536),
                   FALLING(MIB(80)) } },
          .e = { { MIB(1536), MC_REASON_CLAMP } }, 0, 0, UINT64_MAX, false },
        { "clamp: above the hypervisor max comes down to it", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1100), .unused_kib = MIB(150), .max_kib = MIB(1024) } },
          .e = { { MIB(1024), MC_REASON_CLAMP } }, 0, 0, UINT64_MAX, false },
        { "clamp: within the dead band of the cap: left alone", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(1536) + 1000, .unused_kib = MIB(150), .limit_max_kib = MIB(1536) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "clamp: below the default floor goes up to it", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(200), .unused_kib = MIB(150) } },
          .e = { { MIB(256), MC_REASON_CLAMP } }, 0, 0, PLENTY - H_KIB, false },
        { "clamp: below the guest's own min goes up to it", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(400), .unused_kib = MIB(300), .min_kib = MIB(512) } },
          .e = { { MIB(512), MC_REASON_CLAMP } }, 0, 0, UINT64_MAX, false },
        { "clamp: up to the floor only as far as the host can", H_KIB + MIB(20), .n = 1,
          .g = { { .actual_kib = MIB(200), .unused_kib = MIB(150) } },
          .e = { { MIB(220), MC_REASON_CLAMP } }, 0, 0, MIB(20), false },
        { "clamp: host at H: not raised", H_KIB, .n = 1,
          .g = { { .actual_kib = MIB(200), .unused_kib = MIB(150) } }, .e = { { 0, 0 } }, 0, 0, 0, false },
        { "clamp: a floor above the cap is the cap", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(300),
                   .unused_kib = MIB(250),
                   .min_kib = MIB(512),
                   .limit_max_kib = MIB(384) } },
          .e = { { MIB(384), MC_REASON_CLAMP } }, 0, 0, UINT64_MAX, false },
        { "clamp: already on its way up to the floor: not re-issued", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(200), .unused_kib = MIB(150), .last_target_kib = MIB(256) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        /* The floor is served first (56M), then both needs share what is left (22M each). */
        { "clamp: the floor comes before the needy, and the need still counts", H_KIB + MIB(100), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) },
                 { .actual_kib = MIB(200), .unused_kib = MIB(10), FALLING(MIB(20)) } },
          .e = { { MIB(1046), MC_REASON_CRUNCH_GRANT }, { MIB(278), MC_REASON_CRUNCH_GRANT } }, MIB(44), 0,
          MIB(100), true },

        /* --- Guests the policy must not move, though their memory counts. --- */
        { "status: excluded, stale and no-balloon guests get nothing", PLENTY, .n = 4,
          .g = { { .status = MC_GUEST_EXCLUDED, .actual_kib = MIB(2048), .unused_kib = MIB(800) },
                 { .status = MC_GUEST_STALE,
                   .actual_kib = MIB(1024),
                   .unused_kib = MIB(10),
                   FALLING(MIB(80)) },
                 { .status = MC_GUEST_NO_BALLOON,
                   .actual_kib = MIB(2048),
                   .unused_kib = 0,
                   .limit_max_kib = MIB(1024) },
                 { .status = MC_GUEST_EXCLUDED, .actual_kib = MIB(100), .unused_kib = MIB(10) } },
          .e = { { 0, 0 }, { 0, 0 }, { 0, 0 }, { 0, 0 } }, 0, 0, PLENTY - H_KIB, false },
        { "status: an excluded guest's actual counts toward the budget", PLENTY, .host_budget = GIB(4),
          .n = 2,
          .g = { { .status = MC_GUEST_EXCLUDED, .actual_kib = MIB(3000), .unused_kib = MIB(2000) },
                 { .actual_kib = MIB(1000), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { 0, 0 }, { MIB(1096), MC_REASON_CRUNCH_GRANT } }, MIB(96), 0, MIB(96), true },
        { "status: a stale guest's actual counts toward the budget", PLENTY, .host_budget = GIB(4), .n = 2,
          .g = { { .status = MC_GUEST_STALE, .actual_kib = MIB(4000), .unused_kib = MIB(3000) },
                 { .actual_kib = MIB(50), .unused_kib = MIB(10), .min_kib = MIB(40), FALLING(MIB(80)) } },
          .e = { { 0, 0 }, { MIB(96), MC_REASON_CRUNCH_GRANT } }, MIB(46), 0, MIB(46), true },
        /* A grant asked for before the guest left management may still land: it is counted. */
        { "status: a no-balloon guest's pending grant still counts as in flight", H_KIB + MIB(100), .n = 2,
          .g = { { .status = MC_GUEST_NO_BALLOON, .actual_kib = MIB(1024), .last_target_kib = MIB(2048) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) } },
          .e = { { 0, 0 }, { 0, 0 } }, 0, 0, 0, true },

        /* --- Moved externally: no claim this tick. --- */
        { "moved externally: no claim", PLENTY, .n = 2,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(800), .moved_externally = true },
                 { .actual_kib = MIB(2048), .unused_kib = MIB(800) } },
          .e = { { 0, 0 }, { MIB(1968), MC_REASON_CLAIM } }, 0, MIB(80), UINT64_MAX, false },
        { "moved externally above the cap: still clamped", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048),
                   .unused_kib = MIB(800),
                   .limit_max_kib = MIB(1024),
                   .moved_externally = true } },
          .e = { { MIB(1024), MC_REASON_CLAMP } }, 0, 0, UINT64_MAX, false },

        /* --- A claim in flight counts as landed: the next one continues from its target. --- */
        { "claim in flight: the next claim starts from its target, on unused less the claim", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(800), .last_target_kib = MIB(1968) } },
          .e = { { MIB(1896), MC_REASON_CLAIM } }, UINT64_MAX, UINT64_MAX, UINT64_MAX, false },
        { "claim in flight that reaches 2T: no further claim", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(250), .last_target_kib = MIB(1998) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "claim in flight near 2T: only the rest down to 2T", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(210), .last_target_kib = MIB(2043) } },
          .e = { { MIB(2038), MC_REASON_CLAIM } }, 0, MIB(5), UINT64_MAX, false },
        /* Host short (crunch): the guest above T whose unused is falling is consuming, not a donor. */
        { "crunch: a guest above T whose unused falls is not claimed from", H_KIB, .n = 3,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(50), FALLING(MIB(80)) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(150), FALLING(MIB(160)) },
                 { .actual_kib = MIB(1024),
                   .unused_kib = MIB(150),
                   .has_prev = true,
                   .prev_unused_kib = MIB(150) } },
          .e = { { 0, 0 }, { 0, 0 }, { MIB(1009), MC_REASON_CRUNCH_CLAIM } }, 0, MIB(15), 0, true },
        { "grant in flight: no claim from that guest", PLENTY, .n = 1,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(800), .last_target_kib = MIB(2100) } },
          .e = { { 0, 0 } }, 0, 0, UINT64_MAX, false },
        { "dead band: a bigger dead band swallows a bigger claim", PLENTY, .dead_band = MIB(20), .n = 2,
          .g = { { .actual_kib = MIB(2048), .unused_kib = MIB(210) },
                 { .actual_kib = MIB(2048), .unused_kib = MIB(220) } },
          .e = { { 0, 0 }, { MIB(2028), MC_REASON_CLAIM } }, 0, MIB(20), UINT64_MAX, false },
        { "dead band: a bigger dead band swallows a smaller need", PLENTY, .dead_band = MIB(20), .n = 2,
          .g = { { .actual_kib = MIB(1024), .unused_kib = MIB(95), FALLING(MIB(99)) },
                 { .actual_kib = MIB(1024), .unused_kib = MIB(90), FALLING(MIB(99)) } },
          .e = { { 0, 0 }, { MIB(1044), MC_REASON_GRANT } }, MIB(20), 0, UINT64_MAX, false },
};

static void test_case(gconstpointer data)
{
        const Case *c = data;
        McPolicySettings s = seed_defaults;
        McGuest g[NMAX];
        McDecision d[NMAX];
        McPolicySummary sum;
        ssize_t n;
        unsigned expected = 0;

        if (c->claim_fraction > 0)
                s.claim_fraction = c->claim_fraction;
        if (c->grant_factor > 0)
                s.grant_factor = c->grant_factor;
        if (c->host_budget > 0)
                s.host_budget_kib = c->host_budget;
        if (c->dead_band > 0)
                s.dead_band_kib = c->dead_band;
        if (c->no_dead_band)
                s.dead_band_kib = 0;
        g_assert_null(mc_policy_settings_check(&s));

        g_assert_cmpuint(c->n, <=, NMAX);
        memcpy(g, c->g, sizeof(g));
        for (size_t i = 0; i < c->n; i++)
                if (g[i].max_kib == 0)
                        g[i].max_kib = DEFAULT_MAX;

        memset(d, 0xaa, sizeof(d));
        n = run_checked(&s, c->host_free, g, c->n, d, &sum);
        for (ssize_t i = 0; i < n; i++)
                g_test_message("guest %zu: %" PRIu64 " -> %" PRIu64 " KiB (%s)", d[i].guest, d[i].from_kib,
                               d[i].to_kib, mc_reason_to_string(d[i].reason));
        g_test_message("available %" PRIu64 ", need %" PRIu64 ", granted %" PRIu64 ", claimed %" PRIu64
                       ", needy %u, crunch %d",
                       sum.host_available_kib, sum.need_total_kib, sum.granted_kib, sum.claimed_kib,
                       sum.n_needy, sum.crunch);

        for (size_t i = 0; i < c->n; i++) {
                const McDecision *x = find_decision(d, n, i);

                if (c->e[i].to == 0) {
                        if (x)
                                g_test_message("guest %zu: no decision expected", i);
                        g_assert_null(x);
                        continue;
                }
                expected++;
                g_assert_nonnull(x);
                if (!x)
                        continue;
                g_assert_cmpuint(x->from_kib, ==, g[i].actual_kib);
                g_assert_cmpuint(x->to_kib, ==, c->e[i].to);
                g_assert_cmpstr(mc_reason_to_string(x->reason), ==, mc_reason_to_string(c->e[i].reason));
        }
        g_assert_cmpint(n, ==, (ssize_t) expected);

        if (c->granted != UINT64_MAX)
                g_assert_cmpuint(sum.granted_kib, ==, c->granted);
        if (c->claimed != UINT64_MAX)
                g_assert_cmpuint(sum.claimed_kib, ==, c->claimed);
        if (c->available != UINT64_MAX)
                g_assert_cmpuint(sum.host_available_kib, ==, c->available);
        if (c->crunch >= 0)
                g_assert_cmpint(sum.crunch, ==, c->crunch);
}

/* The summary: what the needy asked for, how many they were, what was given and taken. */
static void test_summary(void)
{
        McGuest g[4] = {
                { .actual_kib = MIB(1024), .unused_kib = MIB(80), .max_kib = DEFAULT_MAX, FALLING(MIB(90)) },
                { .actual_kib = MIB(1024), .unused_kib = MIB(50), .max_kib = DEFAULT_MAX, FALLING(MIB(90)) },
                { .actual_kib = MIB(1024), .unused_kib = 0, .max_kib = DEFAULT_MAX, FALLING(MIB(30)) },
                { .actual_kib = MIB(4096), .unused_kib = MIB(1000), .max_kib = DEFAULT_MAX },
        };
        McDecision d[4];
        McPolicySummary sum;

        /* Needs 40M + 100M + 200M = 340M; the host has 300M: a crunch. */
        g_assert_cmpint(run_checked(&seed_defaults, H_KIB + MIB(300), g, 4, d, &sum), ==, 4);
        g_assert_cmpuint(sum.n_needy, ==, 3);
        g_assert_cmpuint(sum.need_total_kib, ==, MIB(340));
        g_assert_cmpuint(sum.host_available_kib, ==, MIB(300));
        g_assert_true(sum.crunch);
        g_assert_cmpuint(sum.granted_kib, ==, MIB(300));
        g_assert_cmpuint(sum.claimed_kib, ==, MIB(100));
        /* Shares 100M each: 40M fits, then 130M each: 100M fits, then 160M. */
        g_assert_cmpuint(decision_to(d, 4, 0), ==, MIB(1064));
        g_assert_cmpuint(decision_to(d, 4, 1), ==, MIB(1124));
        g_assert_cmpuint(decision_to(d, 4, 2), ==, MIB(1184));
        g_assert_cmpuint(decision_to(d, 4, 3), ==, MIB(3996));

        /* With 400M: no crunch; the idle guest keeps 2T. */
        g_assert_cmpint(run_checked(&seed_defaults, H_KIB + MIB(400), g, 4, d, &sum), ==, 4);
        g_assert_false(sum.crunch);
        g_assert_cmpuint(sum.n_needy, ==, 3);
        g_assert_cmpuint(sum.need_total_kib, ==, MIB(340));
        g_assert_cmpuint(sum.granted_kib, ==, MIB(340));
        g_assert_cmpuint(sum.claimed_kib, ==, MIB(100));
        g_assert_cmpint(decision_reason(d, 4, 3), ==, MC_REASON_CLAIM);
        g_assert_cmpint(decision_reason(d, 4, 2), ==, MC_REASON_GRANT);
        g_assert_false(sum.budget_bound);

        /* Which bound set what the host could give: the budget (7168M committed, 7400M) or,
         * with less room above H than that, the host's free memory. */
        McPolicySettings b = seed_defaults;
        b.host_budget_kib = MIB(7400);
        g_assert_cmpint(run_checked(&b, H_KIB + MIB(400), g, 4, d, &sum), >=, 0);
        g_assert_cmpuint(sum.host_available_kib, ==, MIB(232));
        g_assert_true(sum.budget_bound);
        g_assert_cmpint(run_checked(&b, H_KIB + MIB(200), g, 4, d, &sum), >=, 0);
        g_assert_cmpuint(sum.host_available_kib, ==, MIB(200));
        g_assert_false(sum.budget_bound);
}

/* The policy reads its inputs only. */
static void test_inputs_untouched(void)
{
        McGuest g[2] = {
                { .name = (char *) "a",
                  .actual_kib = MIB(2048),
                  .unused_kib = MIB(800),
                  .max_kib = DEFAULT_MAX },
                { .name = (char *) "b",
                  .actual_kib = MIB(1024),
                  .unused_kib = 0,
                  .max_kib = DEFAULT_MAX,
                  FALLING(MIB(30)) },
        };
        McGuest copy[2];
        McPolicySettings s = seed_defaults, s_copy;
        McDecision d[2];

        memcpy(copy, g, sizeof(g));
        s_copy = s;
        g_assert_cmpint(run_checked(&s, H_KIB + MIB(100), g, 2, d, NULL), ==, 2);
        g_assert_cmpmem(g, sizeof(g), copy, sizeof(copy));
        g_assert_cmpmem(&s, sizeof(s), &s_copy, sizeof(s_copy));
}

/* Same input, same output, whatever the order of the guests (up to the index). */
static void test_order_independent(void)
{
        McGuest g[4] = {
                { .actual_kib = MIB(1024), .unused_kib = MIB(80), .max_kib = DEFAULT_MAX, FALLING(MIB(90)) },
                { .actual_kib = MIB(1024),
                  .unused_kib = 0,
                  .max_kib = DEFAULT_MAX,
                  .weight = 200,
                  FALLING(MIB(30)) },
                { .actual_kib = MIB(1024), .unused_kib = MIB(10), .max_kib = DEFAULT_MAX, FALLING(MIB(30)) },
                { .actual_kib = MIB(4096), .unused_kib = MIB(900), .max_kib = DEFAULT_MAX },
        };
        McDecision d[4], dr[4];
        McGuest r[4];
        ssize_t n, nr;

        for (size_t i = 0; i < 4; i++)
                r[i] = g[3 - i];
        n = run_checked(&seed_defaults, H_KIB + MIB(250), g, 4, d, NULL);
        nr = run_checked(&seed_defaults, H_KIB + MIB(250), r, 4, dr, NULL);
        g_assert_cmpint(n, ==, nr);
        g_assert_cmpint(n, ==, 4);
        for (size_t i = 0; i < 4; i++) {
                const McDecision *a = find_decision(d, n, i), *b = find_decision(dr, nr, 3 - i);
                g_assert_nonnull(a);
                g_assert_nonnull(b);
                if (!a || !b)
                        continue;
                g_assert_cmpuint(a->to_kib, ==, b->to_kib);
                g_assert_cmpint(a->reason, ==, b->reason);
        }
}

/*
 * A guest within a dead band of a bound: the bound itself is too small a change to make, but it
 * must not keep the guest from the rest of the rules. Just under its floor and starving, it
 * still gets memory; just over its cap and idle, it still gives memory back.
 */
static void test_near_bound_not_stuck(void)
{
        McDecision d[1];
        ssize_t n;

        /* 256M - 512K actual, nothing unused and falling: needs 200M. */
        McGuest starving = {
                .actual_kib = MIB(256) - 512, .unused_kib = 0, .max_kib = DEFAULT_MAX, FALLING(MIB(30))
        };
        n = run_checked(&seed_defaults, PLENTY, &starving, 1, d, NULL);
        g_test_message("starving just under the floor: %zd decisions", n);
        g_assert_cmpint(n, ==, 1);
        if (n == 1) {
                g_assert_cmpuint(d[0].to_kib, >=, MIB(256));
                g_assert_cmpuint(d[0].to_kib, <=, MIB(256) - 512 + MIB(200));
        }

        /* The same with the admin's own min: 1G - 512K actual. */
        McGuest starving_min = { .actual_kib = GIB(1) - 512,
                                 .unused_kib = MIB(10),
                                 .max_kib = DEFAULT_MAX,
                                 .min_kib = GIB(1),
                                 FALLING(MIB(60)) };
        n = run_checked(&seed_defaults, PLENTY, &starving_min, 1, d, NULL);
        g_test_message("starving just under its min: %zd decisions", n);
        g_assert_cmpint(n, ==, 1);
        if (n == 1)
                g_assert_cmpuint(d[0].to_kib, >=, GIB(1));

        /* 1536M + 512K actual over a 1536M cap, 800M unused: gives 80M. */
        McGuest idle = { .actual_kib = MIB(1536) + 512,
                         .unused_kib = MIB(800),
                         .max_kib = DEFAULT_MAX,
                         .limit_max_kib = MIB(1536) };
        n = run_checked(&seed_defaults, PLENTY, &idle, 1, d, NULL);
        g_test_message("idle just over the cap: %zd decisions", n);
        g_assert_cmpint(n, ==, 1);
        if (n == 1) {
                g_assert_cmpuint(d[0].to_kib, <=, MIB(1536) + 512 - MIB(80));
                g_assert_cmpuint(d[0].to_kib, >=, MIB(1536) - MIB(80));
        }
}

/*
 * Crunch sharing against a reference water-filling: find the level L such that every needy guest
 * gets min(need, L x weight) and the shares add up to what is available. Random needs, weights
 * and amounts; no dead band, so every share is a decision.
 */
static void test_water_filling_reference(void)
{
        g_autoptr(GRand) rand = g_rand_new_with_seed(4242);
        McPolicySettings s = seed_defaults;

        s.dead_band_kib = 0;
        for (unsigned round = 0; round < 2000; round++) {
                McGuest g[NMAX];
                McDecision d[NMAX];
                McPolicySummary sum;
                uint64_t need[NMAX], total_need = 0, avail;
                double w[NMAX];
                size_t n = (size_t) g_rand_int_range(rand, 1, NMAX + 1);

                for (size_t i = 0; i < n; i++) {
                        /* need = 2 x (T - unused): pick unused in [0, T). */
                        uint64_t unused = (uint64_t) g_rand_int_range(rand, 0, (gint32) T_KIB);
                        unsigned weight =
                                g_rand_boolean(rand) ? (unsigned) g_rand_int_range(rand, 0, 1000) : 100;

                        g[i] = (McGuest){ .actual_kib = GIB(1),
                                          .unused_kib = unused,
                                          .max_kib = DEFAULT_MAX,
                                          .weight = weight,
                                          FALLING(T_KIB) };
                        need[i] = 2 * (T_KIB - unused);
                        w[i] = weight > 0 ? weight : 1;
                        total_need += need[i];
                }
                avail = (uint64_t) g_rand_int_range(rand, 0, (gint32) total_need);

                /* Reference: raise the level until the water is used up. */
                bool full[NMAX] = {};
                double left = (double) avail;
                for (;;) {
                        double wsum = 0;
                        bool changed = false;
                        for (size_t i = 0; i < n; i++)
                                if (!full[i])
                                        wsum += w[i];
                        if (wsum == 0)
                                break;
                        for (size_t i = 0; i < n; i++)
                                if (!full[i] && (double) need[i] <= left * w[i] / wsum) {
                                        full[i] = true;
                                        left -= (double) need[i];
                                        changed = true;
                                        break; /* recompute the level after each one */
                                }
                        if (!changed)
                                break;
                }
                double wsum = 0;
                for (size_t i = 0; i < n; i++)
                        if (!full[i])
                                wsum += w[i];

                ssize_t r = run_checked(&s, H_KIB + avail, g, n, d, &sum);
                g_assert_true(sum.crunch);
                g_assert_cmpuint(sum.granted_kib, <=, avail);
                uint64_t given = 0;
                for (size_t i = 0; i < n; i++) {
                        const McDecision *x = find_decision(d, r, i);
                        uint64_t got = x ? x->to_kib - x->from_kib : 0;
                        double expect = full[i] ? (double) need[i] : left * w[i] / wsum;

                        if (x)
                                g_assert_cmpint(x->reason, ==, MC_REASON_CRUNCH_GRANT);
                        if (fabs((double) got - expect) > 1.0)
                                g_test_message("round %u guest %zu: need %" PRIu64
                                               " weight %g avail %" PRIu64 ": got %" PRIu64
                                               ", water-filling gives %.1f",
                                               round, i, need[i], w[i], avail, got, expect);
                        g_assert_cmpfloat(fabs((double) got - expect), <=, 1.0);
                        given += got;
                }
                g_assert_cmpuint(given, <=, avail);
                g_assert_cmpuint(given + n, >=, avail); /* only rounding is left over */
        }
}

/* ---------------------------------------------------------------------------------------- */
/* Many ticks: a small simulator */

#define SIM_MAX 8

typedef struct Sim {
        McPolicySettings s;
        uint64_t host_free;
        size_t n;
        McGuest g[SIM_MAX];
        uint64_t eat[SIM_MAX];         /* what the guest's workload takes per tick */
        bool greedy[SIM_MAX];          /* eats what is left when short; allowed only where nothing more could
                                        * be given (see sim_step), and counted in short_ticks */
        unsigned short_ticks[SIM_MAX]; /* ticks a greedy guest got less than it wanted */
        bool short_unchecked;          /* report a greedy guest's shortfall, do not assert on it */
        uint64_t lag_step; /* 0: decisions land at once; else the balloon moves this much per tick */
        unsigned tick;
        unsigned decisions; /* all decisions so far */
        unsigned grants_to[SIM_MAX];
} Sim;

static void sim_init(Sim *sim)
{
        *sim = (Sim){ .s = seed_defaults };
}

static size_t sim_add(Sim *sim, uint64_t actual, uint64_t unused, uint64_t max, uint64_t eat)
{
        size_t i = sim->n++;

        g_assert_cmpuint(sim->n, <=, SIM_MAX);
        sim->g[i] = (McGuest){
                .name = (char *) "guest", .actual_kib = actual, .unused_kib = unused, .max_kib = max
        };
        sim->eat[i] = eat;
        return i;
}

static uint64_t sim_sum_actual(const Sim *sim)
{
        uint64_t total = 0;

        for (size_t i = 0; i < sim->n; i++)
                total += sim->g[i].actual_kib;
        return total;
}

/* The balloon moves by b, up (b > 0) or down; the guest's free memory and the host's follow. */
static void sim_move(Sim *sim, size_t i, uint64_t to)
{
        McGuest *g = &sim->g[i];

        if (to > g->actual_kib) {
                uint64_t up = to - g->actual_kib;
                g_assert_cmpuint(sim->host_free, >=, up);
                sim->host_free -= up;
                g->unused_kib += up;
        } else {
                uint64_t down = g->actual_kib - to;
                if (sim->lag_step > 0 && down > g->unused_kib) {
                        /* The balloon cannot take memory in use: it stalls. */
                        down = g->unused_kib;
                        to = g->actual_kib - down;
                }
                g_assert_cmpuint(g->unused_kib, >=, down); /* never balloon out memory in use */
                sim->host_free += down;
                g->unused_kib -= down;
        }
        g->actual_kib = to;
}

/* One tick: balloons move (lag mode), the policy runs, decisions apply, workloads eat. */
static ssize_t sim_step(Sim *sim)
{
        McDecision d[SIM_MAX];
        uint64_t reading[SIM_MAX];
        uint64_t T = sim->s.domain_threshold_kib, H = sim->s.host_threshold_kib;
        uint64_t committed_before = 0, in_flight = 0;
        ssize_t n;

        /* Lag mode: balloons travel toward their targets a step at a time. */
        for (size_t i = 0; sim->lag_step > 0 && i < sim->n; i++) {
                McGuest *g = &sim->g[i];
                uint64_t to;

                if (g->last_target_kib == 0)
                        continue;
                if (g->last_target_kib > g->actual_kib)
                        to = MIN(g->last_target_kib, g->actual_kib + sim->lag_step);
                else
                        to = MAX(g->last_target_kib, g->actual_kib - MIN(sim->lag_step, g->actual_kib));
                sim_move(sim, i, to);
                if (g->actual_kib == g->last_target_kib)
                        g->last_target_kib = 0;
        }

        for (size_t i = 0; i < sim->n; i++) {
                const McGuest *g = &sim->g[i];

                reading[i] = g->unused_kib;
                if (g->status == MC_GUEST_MANAGED && g->last_target_kib > g->actual_kib) {
                        committed_before += g->last_target_kib;
                        in_flight += g->last_target_kib - g->actual_kib;
                } else
                        committed_before += g->actual_kib;
        }

        uint64_t host_free_before = sim->host_free;
        n = run_checked(&sim->s, sim->host_free, sim->g, sim->n, d, NULL);

        uint64_t granted = 0;
        for (ssize_t k = 0; k < n; k++) {
                size_t i = d[k].guest;
                if (i >= sim->n)
                        continue;
                McGuest *g = &sim->g[i];

                if (g_test_verbose())
                        g_test_message("tick %u: guest %zu (actual %" PRIu64 ", unused %" PRIu64
                                       ", target %" PRIu64 ") -> %" PRIu64 " (%s), host free %" PRIu64,
                                       sim->tick, i, g->actual_kib, g->unused_kib, g->last_target_kib,
                                       d[k].to_kib, mc_reason_to_string(d[k].reason), host_free_before);
                if (d[k].to_kib < d[k].from_kib) {
                        uint64_t down = d[k].from_kib - d[k].to_kib;

                        /* Never release memory from a guest at or under T unused, nor below T. */
                        if (d[k].reason != MC_REASON_CLAMP) {
                                g_assert_cmpuint(reading[i], >, T);
                                g_assert_cmpuint(reading[i] - down, >=, T);
                        }
                } else {
                        /* What this decision adds to what was already committed. */
                        uint64_t base = MAX(g->actual_kib, g->last_target_kib);
                        if (d[k].to_kib > base)
                                granted += d[k].to_kib - base;
                        sim->grants_to[i]++;
                }

                if (sim->lag_step == 0) {
                        sim_move(sim, i, d[k].to_kib);
                        g->last_target_kib = 0;
                } else
                        g->last_target_kib = d[k].to_kib;
        }

        /* Grants never spend the host's last H, counting grants still in flight. */
        if (host_free_before >= H + in_flight)
                g_assert_cmpuint(granted, <=, host_free_before - H - in_flight);
        else
                g_assert_cmpuint(granted, ==, 0);
        /* Nor go over the budget. */
        if (sim->s.host_budget_kib > 0 && committed_before <= sim->s.host_budget_kib)
                g_assert_cmpuint(granted, <=, sim->s.host_budget_kib - committed_before);

        /* What the policy could have given this tick, from what it saw: the host's free memory
         * above H less what was in flight, and the budget less what was committed. */
        uint64_t room = host_free_before > H + in_flight ? host_free_before - H - in_flight : 0;
        if (sim->s.host_budget_kib > 0)
                room = MIN(room, sim->s.host_budget_kib > committed_before
                                         ? sim->s.host_budget_kib - committed_before
                                         : 0);

        /* What every workload will miss this tick. */
        uint64_t short_total = 0;
        for (size_t i = 0; i < sim->n; i++)
                if (sim->g[i].unused_kib < sim->eat[i])
                        short_total += sim->eat[i] - sim->g[i].unused_kib;

        /* History for the next tick, then the workloads run. */
        for (size_t i = 0; i < sim->n; i++) {
                McGuest *g = &sim->g[i];
                uint64_t eat = sim->eat[i];

                g->has_prev = true;
                g->prev_unused_kib = reading[i];
                if (g->unused_kib < eat)
                        g_test_message("tick %u: guest %zu has %" PRIu64 " KiB unused, wants %" PRIu64
                                       ", room %" PRIu64,
                                       sim->tick, i, g->unused_kib, eat, room);
                if (sim->greedy[i] && g->unused_kib < eat) {
                        uint64_t wanted = eat - g->unused_kib;
                        bool at_cap = MAX(g->actual_kib, g->last_target_kib) + wanted > mc_guest_cap_kib(g);
                        bool landing = g->last_target_kib > g->actual_kib;
                        /* Not managed: never granted. Short by less than the dead band: too
                         * small a change to make. */
                        bool exempt = g->status != MC_GUEST_MANAGED || wanted <= sim->s.dead_band_kib;
                        /* Running short is the policy's failure unless it could not have covered
                         * it: what the host can still give above H (and under the budget) is less
                         * than what all workloads miss, the guest is at its cap, or a grant is on
                         * its way (a balloon that takes ticks to move). */
                        bool excused = room < short_total || at_cap || landing || exempt;

                        if (!sim->short_unchecked)
                                g_assert_true(excused);
                        else if (!excused)
                                g_test_message("tick %u: guest %zu short by %" PRIu64 " KiB with %" PRIu64
                                               " KiB that could have been given (not asserted here)",
                                               sim->tick, i, wanted, room);
                        sim->short_ticks[i]++;
                        eat = g->unused_kib;
                }
                g_assert_cmpuint(g->unused_kib, >=, eat); /* never runs out */
                g->unused_kib -= eat;
        }

        sim->tick++;
        sim->decisions += (unsigned) n;
        return n;
}

/* Runs until a tick with no decision (and no balloon still moving); returns the ticks run. */
static unsigned sim_settle(Sim *sim, unsigned max_ticks)
{
        for (unsigned t = 0; t < max_ticks; t++) {
                bool moving = false;

                for (size_t i = 0; i < sim->n; i++)
                        moving = moving || sim->g[i].last_target_kib > 0;
                if (sim_step(sim) == 0 && !moving)
                        return t + 1;
        }
        g_test_message("no fixed point after %u ticks", max_ticks);
        g_assert_not_reached();
        return max_ticks;
}

static void sim_assert_quiet(Sim *sim, unsigned ticks)
{
        for (unsigned t = 0; t < ticks; t++)
                g_assert_cmpint(sim_step(sim), ==, 0);
}

/* Idle guests give memory back until they hold exactly 2T unused, or sit at their floor. */
static void test_sim_idle_settles(void)
{
        Sim sim;
        unsigned ticks;

        sim_init(&sim);
        sim.host_free = GIB(2);
        sim_add(&sim, GIB(4), MIB(3000), GIB(8), 0);
        sim_add(&sim, GIB(2), MIB(800), GIB(8), 0);
        sim_add(&sim, GIB(1), MIB(600), GIB(8), 0);
        sim_add(&sim, MIB(400), MIB(380), GIB(8), 0); /* hits the 256M floor first */
        sim_add(&sim, GIB(1), MIB(150), GIB(8), 0);   /* between T and 2T: left alone */

        uint64_t total = sim_sum_actual(&sim) + sim.host_free;
        ticks = sim_settle(&sim, 100);
        g_test_message("settled after %u ticks, %u decisions", ticks, sim.decisions);
        g_assert_cmpuint(ticks, <=, 40);

        for (size_t i = 0; i < 3; i++)
                g_assert_cmpuint(sim.g[i].unused_kib, ==, 2 * T_KIB);
        g_assert_cmpuint(sim.g[0].actual_kib, ==, GIB(4) - MIB(2800));
        g_assert_cmpuint(sim.g[1].actual_kib, ==, GIB(2) - MIB(600));
        g_assert_cmpuint(sim.g[2].actual_kib, ==, GIB(1) - MIB(400));
        g_assert_cmpuint(sim.g[3].actual_kib, ==, MIB(256));
        g_assert_cmpuint(sim.g[3].unused_kib, ==, MIB(236));
        g_assert_cmpuint(sim.g[4].actual_kib, ==, GIB(1));
        g_assert_cmpuint(sim.g[4].unused_kib, ==, MIB(150));
        g_assert_cmpuint(sim_sum_actual(&sim) + sim.host_free, ==, total);
        g_assert_cmpuint(sim.grants_to[0] + sim.grants_to[1] + sim.grants_to[2] + sim.grants_to[3], ==, 0);

        sim_assert_quiet(&sim, 20);
}

/* With a dead band that does not divide the amounts, idle guests end within it above 2T. */
static void test_sim_idle_settles_dead_band(void)
{
        Sim sim;

        sim_init(&sim);
        sim.s.dead_band_kib = MIB(7);
        sim.host_free = GIB(2);
        sim_add(&sim, GIB(4), MIB(3001) + 333, GIB(8), 0);
        sim_add(&sim, GIB(2), MIB(205), GIB(8), 0);
        sim_settle(&sim, 100);
        for (size_t i = 0; i < sim.n; i++) {
                g_assert_cmpuint(sim.g[i].unused_kib, >=, 2 * T_KIB);
                g_assert_cmpuint(sim.g[i].unused_kib, <, 2 * T_KIB + sim.s.dead_band_kib);
        }
        g_assert_cmpuint(sim.g[1].actual_kib, ==, GIB(2)); /* 5M over 2T: inside the 7M dead band */
        sim_assert_quiet(&sim, 10);
}

/* A guest that eats 50M per tick gets memory as it goes, up to its max, never running out. */
static void test_sim_consumer_to_max(gconstpointer data)
{
        uint64_t lag = GPOINTER_TO_SIZE(data) * MIB(1);
        Sim sim;
        size_t c;
        unsigned t;

        sim_init(&sim);
        sim.lag_step = lag;
        sim.host_free = GIB(16);
        c = sim_add(&sim, GIB(1), MIB(300), GIB(4), MIB(50));
        sim_add(&sim, GIB(2), MIB(180), GIB(8), 0);
        /* A balloon that takes ticks to move cannot keep up with every tick's demand. */
        sim.greedy[c] = lag > 0;

        for (t = 0; t < 500 && sim.g[c].actual_kib < GIB(4); t++)
                sim_step(&sim);
        g_test_message("consumer at max after %u ticks", t);
        g_assert_cmpuint(sim.g[c].actual_kib, ==, GIB(4));
        g_assert_cmpuint(sim.grants_to[c], >, 0);
        /* The idle guest was never touched. */
        g_assert_cmpuint(sim.g[1].actual_kib, ==, GIB(2));

        /* At max: the workload stops; nothing more is granted, and it settles. */
        sim.eat[c] = 0;
        sim_settle(&sim, 100);
        g_assert_cmpuint(sim.g[c].actual_kib, <=, GIB(4));
        sim_assert_quiet(&sim, 10);
}

/* Tight host: the grants never spend H, claims feed the needy over the following ticks. */
static void test_sim_host_floor(gconstpointer data)
{
        uint64_t lag = GPOINTER_TO_SIZE(data) * MIB(1);
        Sim sim;

        sim_init(&sim);
        sim.lag_step = lag;
        sim.host_free = H_KIB + MIB(300);
        sim_add(&sim, GIB(1), MIB(150), GIB(8), MIB(50));
        sim_add(&sim, GIB(1), MIB(120), GIB(8), MIB(30));
        sim_add(&sim, GIB(6), MIB(4000), GIB(8), 0);
        sim.greedy[0] = sim.greedy[1] = true;

        for (unsigned t = 0; t < 300; t++) {
                sim_step(&sim);
                /* Grants land on a host that keeps H free. */
                g_assert_cmpuint(sim.host_free, >=, H_KIB);
        }
        /* The idle guest gave what it could: down to T unused, never below. */
        g_assert_cmpuint(sim.g[2].unused_kib, >=, T_KIB);
        g_assert_cmpuint(sim.g[2].unused_kib, <, T_KIB + MIB(20));
        /* And the consumers got it. */
        g_assert_cmpuint(sim.g[0].actual_kib + sim.g[1].actual_kib, >, GIB(2) + MIB(3500));
}

/* With a budget the sum of the guests' actual stays within it at every tick. */
static void test_sim_budget(gconstpointer data)
{
        uint64_t lag = GPOINTER_TO_SIZE(data) * MIB(1);
        Sim sim;

        sim_init(&sim);
        sim.lag_step = lag;
        sim.host_free = GIB(64);
        sim_add(&sim, GIB(1), MIB(150), GIB(8), MIB(50));
        sim_add(&sim, GIB(1), MIB(90), GIB(8), MIB(20));
        sim_add(&sim, GIB(3), MIB(1500), GIB(8), 0);
        sim.g[2].status = MC_GUEST_EXCLUDED; /* counts, but never gives */
        sim_add(&sim, GIB(2), MIB(1200), GIB(8), 0);
        sim.greedy[0] = sim.greedy[1] = true;
        sim.s.host_budget_kib = sim_sum_actual(&sim) + MIB(500);

        for (unsigned t = 0; t < 300; t++) {
                sim_step(&sim);
                g_assert_cmpuint(sim_sum_actual(&sim), <=, sim.s.host_budget_kib);
        }
        g_assert_cmpuint(sim.g[2].actual_kib, ==, GIB(3));
        g_assert_cmpuint(sim.g[2].unused_kib, ==, MIB(1500));
        /* Everything under the budget went to the consumers: the budget is nearly all used. */
        g_assert_cmpuint(sim_sum_actual(&sim), >, sim.s.host_budget_kib - MIB(8));
        g_assert_cmpuint(sim.g[3].unused_kib, >=, T_KIB);
        g_assert_cmpuint(sim.g[3].unused_kib, <, T_KIB + MIB(12));
}

/* A guest stuck below T, unused not falling, nobody able to give: it gets memory as soon as the
 * host has some. */
static void test_sim_starving_guest(void)
{
        Sim sim;
        size_t s;

        sim_init(&sim);
        sim.host_free = H_KIB - MIB(50);
        s = sim_add(&sim, GIB(1), MIB(50), GIB(8), 0);
        sim_add(&sim, GIB(2), MIB(100), GIB(8), 0);
        sim_add(&sim, GIB(2), MIB(90), GIB(8), 0);

        for (unsigned t = 0; t < 10; t++)
                g_assert_cmpint(sim_step(&sim), ==, 0);
        g_assert_cmpuint(sim.g[s].actual_kib, ==, GIB(1));

        /* Something else on the host frees 500M. */
        sim.host_free += MIB(500);
        g_assert_cmpint(sim_step(&sim), ==, 2);
        g_assert_cmpuint(sim.g[s].actual_kib, ==, GIB(1) + MIB(100));
        g_assert_cmpuint(sim.g[s].unused_kib, ==, MIB(150));
        /* The guest at 90M is below T too: it got its 20M. */
        g_assert_cmpuint(sim.g[2].actual_kib, ==, GIB(2) + MIB(20));
        sim_assert_quiet(&sim, 10);
}

/* A guest that sits just under its floor while its workload eats all it has is fed over the
 * following ticks, like any other. */
static void test_sim_starving_under_floor(void)
{
        Sim sim;
        size_t s;

        sim_init(&sim);
        sim.host_free = GIB(8);
        s = sim_add(&sim, MIB(256) - 512, MIB(5), GIB(4), MIB(5));
        sim.greedy[s] = true;
        for (unsigned t = 0; t < 10; t++)
                sim_step(&sim);
        g_test_message("after 10 ticks: actual %" PRIu64 " KiB, unused %" PRIu64 " KiB", sim.g[s].actual_kib,
                       sim.g[s].unused_kib);
        g_assert_cmpuint(sim.g[s].actual_kib, >, MIB(256));
        g_assert_cmpuint(sim.g[s].unused_kib, >=, T_KIB / 2);
}

/* A starving guest with only a little free on the host: it gets what there is, then the rest. */
static void test_sim_starving_guest_trickle(void)
{
        Sim sim;
        size_t s;

        sim_init(&sim);
        sim.host_free = H_KIB;
        s = sim_add(&sim, GIB(1), 0, GIB(8), 0);
        for (unsigned t = 0; t < 5; t++)
                g_assert_cmpint(sim_step(&sim), ==, 0);

        /* 30M a tick appears on the host. */
        for (unsigned t = 0; t < 20 && sim.g[s].unused_kib < T_KIB; t++) {
                sim.host_free += MIB(30);
                sim_step(&sim);
        }
        g_assert_cmpuint(sim.g[s].unused_kib, >=, T_KIB);
        g_assert_cmpuint(sim.g[s].actual_kib, >, GIB(1) + MIB(100));
}

/*
 * Two equally hungry consumers under a tight budget, fed by an idle guest's claims: they grow
 * by equal shares, ending within a dead band or two of each other.
 */
static void test_sim_two_consumers_share(gconstpointer data)
{
        uint64_t lag = GPOINTER_TO_SIZE(data) * MIB(1);
        Sim sim;
        size_t a, b;

        sim_init(&sim);
        sim.lag_step = lag;
        sim.host_free = GIB(64);
        /* Not quite the same start, and the giver between them in the array. */
        a = sim_add(&sim, GIB(1), MIB(20), GIB(16), MIB(50));
        sim_add(&sim, GIB(6), MIB(5000), GIB(8), 0);
        b = sim_add(&sim, GIB(1), MIB(60), GIB(16), MIB(50));
        sim.greedy[a] = sim.greedy[b] = true;
        sim.s.host_budget_kib = sim_sum_actual(&sim);

        for (unsigned t = 0; t < 400; t++)
                sim_step(&sim);

        uint64_t ga = sim.g[a].actual_kib, gb = sim.g[b].actual_kib;
        g_test_message("a %" PRIu64 " KiB, b %" PRIu64 " KiB", ga, gb);
        g_assert_cmpuint(ga, >, GIB(3));
        g_assert_cmpuint(MAX(ga, gb) - MIN(ga, gb), <=, 2 * sim.s.dead_band_kib);
        g_assert_cmpuint(sim_sum_actual(&sim), <=, sim.s.host_budget_kib);
        /* The giver went down to T unused, no further. */
        g_assert_cmpuint(sim.g[1].unused_kib, >=, T_KIB);
        g_assert_cmpuint(sim.g[1].unused_kib, <, T_KIB + sim.s.dead_band_kib);

        /* Demand stops: a fixed point within a bounded number of ticks. */
        sim.eat[a] = sim.eat[b] = 0;
        unsigned ticks = sim_settle(&sim, 200);
        g_test_message("fixed point after %u ticks", ticks);
        sim_assert_quiet(&sim, 10);
}

/* Consumers with different appetites and weights 1:3 under a tight budget. */
static void test_sim_weighted_share(void)
{
        Sim sim;
        size_t a, b;

        sim_init(&sim);
        sim.host_free = GIB(64);
        a = sim_add(&sim, GIB(1), 0, GIB(16), MIB(100));
        b = sim_add(&sim, GIB(1), 0, GIB(16), MIB(100));
        sim.g[a].weight = 100;
        sim.g[b].weight = 300;
        sim.greedy[a] = sim.greedy[b] = true;
        sim.s.host_budget_kib = sim_sum_actual(&sim) + MIB(40);

        /* Each tick 40M more is allowed; both always need 200M: shared 10M / 30M. */
        for (unsigned t = 0; t < 20; t++) {
                sim_step(&sim);
                sim.s.host_budget_kib += MIB(40);
        }
        g_assert_cmpuint(sim.g[a].actual_kib, ==, GIB(1) + 20 * MIB(10));
        g_assert_cmpuint(sim.g[b].actual_kib, ==, GIB(1) + 20 * MIB(30));
}

/* Many random scenarios: the invariants of sim_step hold and demand stopping ends in a fixed
 * point. */
static void test_sim_random(void)
{
        g_autoptr(GRand) rand = g_rand_new_with_seed(20240601);
        unsigned total_decisions = 0;

        for (unsigned round = 0; round < 200; round++) {
                Sim sim;
                size_t n = (size_t) g_rand_int_range(rand, 1, SIM_MAX + 1);

                sim_init(&sim);
                /* Workloads here eat up to 80 MiB a tick, close to T: the grant rule answers the
                 * last reading, so one that fast can outrun it with room left on the host. Its
                 * shortfalls are reported (-v), not asserted; the other simulations assert them. */
                sim.short_unchecked = true;
                sim.host_free = MIB(g_rand_int_range(rand, 0, 4096));
                sim.lag_step = g_rand_boolean(rand) ? 0 : MIB(g_rand_int_range(rand, 16, 256));
                for (size_t i = 0; i < n; i++) {
                        uint64_t actual = MIB(g_rand_int_range(rand, 256, 4096));
                        uint64_t unused = MIB(g_rand_int_range(rand, 0, (gint32) (actual / 1024)));
                        uint64_t eat = g_rand_boolean(rand) ? 0 : MIB(g_rand_int_range(rand, 1, 80));
                        uint64_t max = MIB(g_rand_int_range(rand, 512, 8192));
                        size_t k = sim_add(&sim, actual, unused, MAX(actual, max), eat);

                        sim.greedy[k] = true;
                        sim.g[k].weight = (unsigned) g_rand_int_range(rand, 0, 400);
                        switch (g_rand_int_range(rand, 0, 8)) {
                        case 0:
                                sim.g[k].status = MC_GUEST_EXCLUDED;
                                break;
                        case 1:
                                sim.g[k].min_kib = MIN(actual, MIB(g_rand_int_range(rand, 128, 1024)));
                                break;
                        default:
                                break;
                        }
                }
                if (g_rand_boolean(rand))
                        sim.s.host_budget_kib = sim_sum_actual(&sim) + MIB(g_rand_int_range(rand, 0, 1024));

                for (unsigned t = 0; t < 100; t++) {
                        bool budget_ok =
                                sim.s.host_budget_kib == 0 || sim_sum_actual(&sim) <= sim.s.host_budget_kib;
                        sim_step(&sim);
                        if (sim.s.host_budget_kib > 0 && budget_ok && sim.lag_step == 0)
                                g_assert_cmpuint(sim_sum_actual(&sim), <=, sim.s.host_budget_kib);
                }
                for (size_t i = 0; i < n; i++)
                        sim.eat[i] = 0;
                sim_settle(&sim, 300);
                sim_assert_quiet(&sim, 5);
                total_decisions += sim.decisions;
        }
        g_test_message("%u decisions in all", total_decisions);
        g_assert_cmpuint(total_decisions, >, 1000);
}

/* ---------------------------------------------------------------------------------------- */
/* Policy adaptive: the rate of demand, the page cache, hysteresis, the order of a crunch */

#define NOW (UINT64_C(1000) * 1000000)
#define SEC_AGO(x) (NOW - (uint64_t) ((x) *1e6))
#define RATE_MIB_S(x) ((double) (x) *1024.0)

static McPolicySettings adaptive_defaults(void)
{
        McPolicySettings s = mc_policy_defaults;

        g_assert_cmpint(s.kind, ==, MC_POLICY_ADAPTIVE);
        return s;
}

/* A managed guest whose last trusted sample was folded in just now. */
static McGuest adaptive_guest(uint64_t actual, uint64_t headroom, double rate)
{
        return (McGuest){
                .uuid = "00000000-0000-0000-0000-00000000000a",
                .name = (char *) "vm",
                .status = MC_GUEST_MANAGED,
                .actual_kib = actual,
                .unused_kib = headroom,
                .max_kib = DEFAULT_MAX,
                .has_sample = true,
                .sample_mono_usec = NOW,
                .sample_actual_kib = actual,
                .sample_headroom_kib = headroom,
                .use_rate_kib_s = rate,
                .peak_rate_kib_s = rate,
        };
}

static ssize_t adaptive_run(const McPolicySettings *s, uint64_t host_free, McGuest *g, size_t n,
                            McDecision *d, uint64_t *short_kib, McPolicySummary *sum)
{
        const McGuest *ptrs[8];
        McPolicyInput in = { .host_free_kib = host_free, .now_mono_usec = NOW, .interval_usec = 1000000 };

        g_assert_cmpuint(n, <=, G_N_ELEMENTS(ptrs));
        for (size_t i = 0; i < n; i++)
                ptrs[i] = &g[i];
        ssize_t r = mc_policy_run(s, &in, ptrs, n, d, short_kib, sum);
        g_assert_cmpint(r, >=, 0);
        return r;
}

static void test_adaptive_steady(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[1];

        /* Between T and 2T, steady: nothing either way. */
        for (uint64_t h = MIB(101); h <= MIB(200); h += MIB(33)) {
                McGuest g = adaptive_guest(MIB(1024), h, 0);
                g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        }
        /* Below T, steady: the seed's grant, 2 x (T - headroom). */
        McGuest g = adaptive_guest(MIB(1024), MIB(80), 0);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(1024) + MIB(40));
        g_assert_cmpint(d[0].reason, ==, MC_REASON_GRANT);
        /* Noise below 512 KiB/s is steady too. */
        g = adaptive_guest(MIB(1024), MIB(150), 400);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
}

static void test_adaptive_rate(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[1];

        /* 40 MiB/s with 250 MiB of headroom, above T and above 2T: it gets, now, what it eats
         * until the next decision can land (interval 1 s + reaction 3 s), on top of T; the
         * headroom counted is the sample's less what it ate since (half a second). */
        McGuest g = adaptive_guest(MIB(1024), MIB(250), RATE_MIB_S(40));
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpint(d[0].reason, ==, MC_REASON_GRANT);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(1024) + (MIB(100) + MIB(160)) - (MIB(250) - MIB(20)));

        /* The same guest read 2 s after its sample (frozen readings since): it ate 2 s more. */
        g.sample_mono_usec = SEC_AGO(2);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(1024) + MIB(260) - (MIB(250) - MIB(100)));

        /* A grant already in flight counts once: libvirt's actual may or may not show it. */
        g = adaptive_guest(MIB(1024), MIB(250), RATE_MIB_S(40));
        g.last_target_kib = MIB(1024) + MIB(30);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0); /* it was exactly that */
        /* Landed and shown by actual, the sample's actual from before: was the sample taken
         * before the change, or after with libvirt's actual lagging? A sample stamped 2 s after
         * the change shows it; one from before does not either. */
        g.actual_kib = MIB(1024) + MIB(30);
        g.last_target_kib = 0;
        g.last_change_usec = UINT64_C(1800000000) * 1000000;
        g.sample_stamp = 1800000002;
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(1024) + MIB(30) + MIB(30)); /* as if it were not there */
        g.sample_headroom_kib += MIB(30);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        /* Unknown: counted once, the smaller headroom. */
        g.sample_headroom_kib -= MIB(30);
        g.sample_stamp = 1800000001;
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(1024) + MIB(60));

        /* 80 MiB/s from the idle reserve: the grant covers 4 s of it at once. */
        g = adaptive_guest(MIB(512), MIB(200), RATE_MIB_S(80));
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(512) + MIB(420) - MIB(160));

        /* Never above the cap. */
        g.max_kib = MIB(600);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(600));

        /* The seed, on the same guest, claims from it (250 MiB unused is above 2T) and grants
         * only once it is below T. */
        McPolicySettings seed = seed_defaults;
        g = adaptive_guest(MIB(1024), MIB(250), RATE_MIB_S(40));
        g.has_prev = true;
        g.prev_unused_kib = MIB(290);
        g_assert_cmpint(adaptive_run(&seed, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpint(d[0].reason, ==, MC_REASON_CLAIM);
}

static void test_adaptive_page_cache(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[1];

        /* MemFree 60 MiB, but 600 MiB of page cache: not needy (the seed grants). */
        McGuest g = adaptive_guest(MIB(1024), MIB(60), 0);
        g.usable_kib = MIB(595);
        g.disk_caches_kib = MIB(600);
        g.reserve_kib = MIB(65);
        g.sample_headroom_kib = mc_guest_headroom_kib(&g);
        g_assert_cmpuint(g.sample_headroom_kib, ==, MIB(660));
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        /* Its cache is claimed like free memory: 10 % of its headroom per tick. */
        g_assert_cmpint(d[0].reason, ==, MC_REASON_CLAIM);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(1024) - MIB(66));

        McPolicySettings seed = seed_defaults;
        g_assert_cmpint(adaptive_run(&seed, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpint(d[0].reason, ==, MC_REASON_GRANT);
}

static void test_adaptive_hysteresis(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[1];

        /* 800 MiB free, granted 5 s ago: no claim yet. */
        McGuest g = adaptive_guest(MIB(2048), MIB(800), 0);
        g.peak_rate_kib_s = RATE_MIB_S(25);
        g.last_grant_usec = SEC_AGO(5);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        /* 15 s ago: claims, keeping 2T plus what its peak rate eats over the reaction time,
         * half of it halfway through the hold. */
        g.last_grant_usec = SEC_AGO(15);
        g.sample_headroom_kib = g.unused_kib = MIB(250);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0); /* 250 = 200 + 50 */
        g.sample_headroom_kib = g.unused_kib = MIB(800);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(80));
        g.sample_headroom_kib = g.unused_kib = MIB(270);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(20));
        /* 40 s ago: the idle reserve, 2T. */
        g.last_grant_usec = SEC_AGO(40);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(27));

        /* A consuming guest is not claimed from, however much it has. */
        g = adaptive_guest(MIB(2048), MIB(900), RATE_MIB_S(5));
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
}

/* Claims do not run ahead of the balloon: with more than 48 MiB of an earlier claim still to
 * land, none; with less, the next (counted from the target in flight, as ever). */
static void test_adaptive_claim_not_ahead(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[1];

        /* 800 MiB free after a workload freed; 100 MiB of the last claim still to land. */
        McGuest g = adaptive_guest(MIB(2048), MIB(800), 0);
        g.last_target_kib = MIB(2048) - MIB(100);
        g.last_claim_usec = SEC_AGO(1);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        /* 40 MiB to land: 10 % of the 760 free it will have then, from the target in flight. */
        g.last_target_kib = MIB(2048) - MIB(40);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(40) - MIB(76));
}

/* A guest we granted memory whose use then fell keeps the size it had at its high, whole for
 * 15 s, then less and less until 30 s: a cyclic load wants it back. So does one whose load came
 * back to its high lately (cycle_high_usec). Unless another guest is short of it, or we never
 * granted it anything. */
static void test_adaptive_hold_peak_use(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[2];

        /* 350 MiB free; 10 s ago it used 300 MiB more, with 2T of headroom: 2T + 300 = 500
         * kept, no claim. */
        McGuest g = adaptive_guest(MIB(2048), MIB(350), 0);
        g.last_grant_usec = SEC_AGO(12);
        g.sample_used_kib = MIB(500);
        g.peak_used_kib = MIB(800);
        g.peak_size_kib = MIB(1000);
        g.peak_used_usec = SEC_AGO(10);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        /* 25 s ago: a third of it left, 2T + 100 = 300 kept, 10 % of 350 claimed. */
        g.peak_used_usec = SEC_AGO(25);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(35));
        /* The same with its use still falling (a triangle load's descent): nothing yet. */
        g.use_rate_kib_s = -RATE_MIB_S(5);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        /* Unless claims have begun (a claim reads as a fall while it lands): they go on. */
        g.last_claim_usec = SEC_AGO(2);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(35));
        g.last_claim_usec = 0;
        g.use_rate_kib_s = 0;
        /* 35 s ago: forgotten. */
        g.peak_used_usec = SEC_AGO(35);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        /* What it had above 2T at its high is kept too: 150 MiB of headroom more there, 20 s
         * ago, make 2T + 450 x 2/3 = 500 kept of 520 free: a claim of 20, not 10 % (52). */
        g.peak_used_usec = SEC_AGO(20);
        g.peak_size_kib = MIB(1150);
        g.sample_headroom_kib = g.unused_kib = MIB(520);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(20));
        g.peak_size_kib = MIB(1000);
        g.sample_headroom_kib = g.unused_kib = MIB(350);

        /* Never granted (a kernel that freed its boot memory): nothing held. */
        g.peak_used_usec = SEC_AGO(10);
        g.last_grant_usec = 0;
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(35));
        /* Granted 50 s ago, and held at its high since (a workload held for minutes): nothing
         * held once it falls. */
        g.last_grant_usec = SEC_AGO(50);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(2048) - MIB(35));
        /* The same grant, but its load came back to its high 10 s ago, after a fall (a cycle
         * longer than the hold, chained by its returns): held as after a grant. */
        g.cycle_high_usec = SEC_AGO(10);
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        g.cycle_high_usec = 0;
        g.last_grant_usec = SEC_AGO(12);

        /* Another guest is short and the host has nothing to give (a crunch): the held
         * memory goes to it, as the guest's use is falling. */
        McGuest two[2] = { g, adaptive_guest(MIB(1024), MIB(60), 0) };
        two[0].use_rate_kib_s = -RATE_MIB_S(5);
        ssize_t n = adaptive_run(&s, H_KIB, two, 2, d, NULL, NULL);
        g_assert_cmpint(n, ==, 1);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(2048) - MIB(35));
}

/* In a crunch a guest granted memory lately and no longer consuming keeps 32 MiB above T,
 * and never more than 32 MiB above the lowest guest left short; what it holds beyond that
 * goes to the guests under T. */
static void test_adaptive_crunch_fair_band(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[2];
        McPolicySummary sum;

        McGuest g[2] = { adaptive_guest(MIB(1024), MIB(180), 0), adaptive_guest(MIB(1024), MIB(60), 0) };
        g[0].last_grant_usec = SEC_AGO(20);
        ssize_t n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpint(decision_reason(d, n, 0), ==, MC_REASON_CRUNCH_CLAIM);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) - MIB(18));
        /* 25 MiB above T, the other 40 MiB below it: 10 % of 125 goes to it. */
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(125);
        n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) - MIB(25) / 2);
        /* The other 5 MiB below T: at 125 it is within 32 MiB of it, left alone; at 140 the
         * 13 MiB above 95 + 32 go (10 % would be 14). */
        g[1].unused_kib = g[1].sample_headroom_kib = MIB(95);
        n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_true(sum.crunch);
        g_assert_null(find_decision(d, n, 0));
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(140);
        n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) - MIB(13));
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(125);
        g[1].unused_kib = g[1].sample_headroom_kib = MIB(60);
        /* Granted 5 s ago, but its use fell 300 MiB below its high (its workload ended): a
         * donor at once, down to T. */
        g[0].last_grant_usec = SEC_AGO(5);
        g[0].sample_used_kib = MIB(500);
        g[0].peak_used_kib = MIB(800);
        g[0].peak_used_usec = SEC_AGO(3);
        n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) - MIB(12) - MIB(1) / 2);
        g[0].peak_used_kib = 0;
        /* Consuming at 10 MiB/s with ~295 MiB of headroom while the other is 40 MiB under T:
         * it keeps T + 10 x 4 s, and gives 10 % of what it has. */
        McGuest c[2] = { adaptive_guest(MIB(1024), MIB(300), RATE_MIB_S(10)), g[1] };
        c[0].last_grant_usec = SEC_AGO(20);
        n = adaptive_run(&s, H_KIB, c, 2, d, NULL, &sum);
        g_assert_cmpint(decision_reason(d, n, 0), ==, MC_REASON_CRUNCH_CLAIM);
        g_assert_cmpuint(decision_to(d, n, 0), <=, MIB(1024) - MIB(29));
        g_assert_cmpuint(decision_to(d, n, 0), >=, MIB(1024) - MIB(30));
        /* The same 2 s after its grant: no guard while the other is left short. */
        c[0].last_grant_usec = SEC_AGO(2);
        n = adaptive_run(&s, H_KIB, c, 2, d, NULL, &sum);
        g_assert_cmpint(decision_reason(d, n, 0), ==, MC_REASON_CRUNCH_CLAIM);
        g_assert_cmpuint(decision_to(d, n, 0), <=, MIB(1024) - MIB(29));
        /* With nobody short (plenty), the guard holds. */
        n = adaptive_run(&s, PLENTY, c, 1, d, NULL, &sum);
        g_assert_cmpint(n, ==, 0);
        c[0].last_grant_usec = SEC_AGO(20);

        /* Ranked above the other by the admin: its reserve is its own. */
        c[0].weight = 200;
        n = adaptive_run(&s, H_KIB, c, 2, d, NULL, &sum);
        g_assert_null(find_decision(d, n, 0));
        c[0].weight = 0;
        /* Grown by itself (autodeflate) 15 s ago: it was at its OOM point, not a donor. */
        c[0].last_grew_usec = SEC_AGO(15);
        n = adaptive_run(&s, H_KIB, c, 2, d, NULL, &sum);
        g_assert_null(find_decision(d, n, 0));
        c[0].last_grew_usec = 0;
        /* With nobody short it is left alone. */
        n = adaptive_run(&s, PLENTY, c, 1, d, NULL, &sum);
        g_assert_cmpint(n, ==, 0);
        /* Not granted lately: down to T, 10 % of 125. */
        g[0].last_grant_usec = 0;
        n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) - MIB(12) - MIB(1) / 2);
        /* Holding steady 12 MiB above T, the other 20 MiB below it: within the band of it, not
         * claimed down to T (where its drift would make it needy again); at 118 the 6 MiB above
         * 80 + 32 are crumbs (under 8 MiB), at 124 the 12 go. */
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(112);
        g[1].unused_kib = g[1].sample_headroom_kib = MIB(80);
        n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_true(sum.crunch);
        g_assert_null(find_decision(d, n, 0));
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(118);
        n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_null(find_decision(d, n, 0));
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(124);
        n = adaptive_run(&s, H_KIB, g, 2, d, NULL, &sum);
        g_assert_cmpint(decision_reason(d, n, 0), ==, MC_REASON_CRUNCH_CLAIM);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) - MIB(12));
        /* The host alone short (nobody under T): a guest not granted lately gives down to T. */
        g[1].unused_kib = g[1].sample_headroom_kib = MIB(200);
        n = adaptive_run(&s, H_KIB - MIB(50), g, 2, d, NULL, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) - MIB(124) / 10);
}

/* In a crunch a guest claimed from just now is not handed memory back (the reversal of
 * ping-pong) unless it is the worst off of the needy. */
static void test_adaptive_crunch_defers_donor(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[2];
        uint64_t short_kib[2];
        McPolicySummary sum;

        /* 10 MiB under T, claimed from 3 s ago; the other 30 under T; 30 MiB to give. */
        McGuest g[2] = { adaptive_guest(MIB(600), MIB(90), 0), adaptive_guest(MIB(600), MIB(70), 0) };
        g[1].uuid[MC_UUID_STRLEN - 2] = 'b';
        g[0].last_grant_usec = SEC_AGO(40);
        g[0].last_claim_usec = SEC_AGO(3);
        ssize_t n = adaptive_run(&s, H_KIB + MIB(30), g, 2, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_null(find_decision(d, n, 0));
        g_assert_cmpuint(short_kib[0], >, 0);
        g_assert_cmpint(decision_reason(d, n, 1), ==, MC_REASON_CRUNCH_GRANT);
        g_assert_cmpuint(decision_to(d, n, 1), ==, MIB(630));
        /* Now the worst off of the two: served as any other. */
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(60);
        n = adaptive_run(&s, H_KIB + MIB(30), g, 2, d, short_kib, &sum);
        g_assert_cmpint(decision_reason(d, n, 0), ==, MC_REASON_CRUNCH_GRANT);
        /* The claim 12 s ago, past the flip guard: served again. */
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(90);
        g[0].last_claim_usec = SEC_AGO(12);
        n = adaptive_run(&s, H_KIB + MIB(30), g, 2, d, short_kib, &sum);
        g_assert_cmpint(decision_reason(d, n, 0), ==, MC_REASON_CRUNCH_GRANT);
        /* A grant since the claim: not a donor. */
        g[0].last_claim_usec = SEC_AGO(3);
        g[0].last_grant_usec = SEC_AGO(2);
        n = adaptive_run(&s, H_KIB + MIB(30), g, 2, d, short_kib, &sum);
        g_assert_cmpint(decision_reason(d, n, 0), ==, MC_REASON_CRUNCH_GRANT);
}

/* In a crunch, moves under 8 MiB are not made, but a grant to a guest under T. */
static void test_adaptive_crunch_crumbs(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[1];
        McPolicySummary sum;

        /* 110 MiB of headroom at 10 MiB/s: its reserve is T + 40, a need of 30. */
        McGuest g[1] = { adaptive_guest(MIB(600), MIB(110), RATE_MIB_S(10)) };
        ssize_t n = adaptive_run(&s, H_KIB + MIB(5), g, 1, d, NULL, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpint(n, ==, 0);
        g_assert_cmpuint(sum.granted_kib, ==, 0);
        n = adaptive_run(&s, H_KIB + MIB(8), g, 1, d, NULL, &sum);
        g_assert_cmpint(decision_reason(d, n, 0), ==, MC_REASON_CRUNCH_GRANT);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(608));
        /* Under T: every MiB there is. */
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(95);
        g[0].use_rate_kib_s = g[0].peak_rate_kib_s = 0;
        n = adaptive_run(&s, H_KIB + MIB(5), g, 1, d, NULL, &sum);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(605));
        g_assert_cmpuint(sum.granted_kib, ==, MIB(5));
}

static void test_adaptive_crunch_order(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[3];
        uint64_t short_kib[3];
        McPolicySummary sum;

        /* A shortage all can live through is shared, as by the seed: 40, 60 and 70 MiB of
         * headroom (needs 120, 80 and 60), 90 MiB to give, 30 each: nobody under T/2. */
        McGuest g[3] = {
                adaptive_guest(MIB(1024), MIB(40), 0),
                adaptive_guest(MIB(1024), MIB(60), 0),
                adaptive_guest(MIB(1024), MIB(70), 0),
        };
        g[0].uuid[35] = 'b';
        g[1].uuid[35] = 'c';
        g[2].uuid[35] = 'd';
        ssize_t n = adaptive_run(&s, H_KIB + MIB(90), g, 3, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpint(n, ==, 3);
        for (size_t i = 0; i < 3; i++) {
                g_assert_cmpuint(decision_to(d, n, i), ==, MIB(1024) + MIB(30));
                g_assert_cmpint(decision_reason(d, n, i), ==, MC_REASON_CRUNCH_GRANT);
        }

        /* Deeper: 10, 20 and 0 MiB (needs 180, 160, 200), 60 MiB to give. Shares would leave
         * all three under T/2; whole needs in the order of the UUIDs instead, the rest to the
         * next, and what each is short of. */
        g[0] = adaptive_guest(MIB(1024), MIB(10), 0);
        g[1] = adaptive_guest(MIB(1024), MIB(20), 0);
        g[2] = adaptive_guest(MIB(1024), MIB(0), 0);
        g[0].uuid[35] = 'c';
        g[1].uuid[35] = 'b';
        g[2].uuid[35] = 'd';
        n = adaptive_run(&s, H_KIB + MIB(60), g, 3, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpint(n, ==, 1);
        g_assert_cmpuint(decision_to(d, n, 1), ==, MIB(1024) + MIB(60));
        g_assert_null(find_decision(d, n, 0));
        g_assert_null(find_decision(d, n, 2));
        g_assert_cmpuint(short_kib[1], ==, MIB(100));
        g_assert_cmpuint(short_kib[0], ==, MIB(180));
        g_assert_cmpuint(short_kib[2], ==, MIB(200));
        g_assert_cmpuint(sum.n_short, ==, 3);
        g_assert_cmpuint(sum.granted_kib, ==, MIB(60));
        /* With 150 MiB, shares of 50 keep even the emptiest at T/2: shared again. */
        n = adaptive_run(&s, H_KIB + MIB(150), g, 3, d, short_kib, &sum);
        for (size_t i = 0; i < 3; i++)
                g_assert_cmpuint(decision_to(d, n, i), ==, MIB(1024) + MIB(50));

        /* Weight first. A guest ranked above every other is served first, but only after
         * what keeps each at T/2, in the crunch order: 50 MiB to it, the last 10 to the next
         * (the UUID tie-break), nothing to the third. */
        g[2].weight = 200;
        n = adaptive_run(&s, H_KIB + MIB(60), g, 3, d, short_kib, &sum);
        g_assert_cmpuint(decision_to(d, n, 2), ==, MIB(1024) + MIB(50));
        g_assert_cmpuint(decision_to(d, n, 1), ==, MIB(1024) + MIB(10));
        g_assert_null(find_decision(d, n, 0));
        /* With 300 MiB: everyone's T/2 (50 + 30 + 40), then the ranked guest's whole need
         * (200, of which 50 given), the 30 left shared by the others' urgent needs. */
        n = adaptive_run(&s, H_KIB + MIB(300), g, 3, d, short_kib, &sum);
        g_assert_cmpuint(decision_to(d, n, 2), ==, MIB(1024) + MIB(200));
        g_assert_cmpuint(decision_to(d, n, 1) + decision_to(d, n, 0), ==, 2 * MIB(1024) + MIB(100));

        /* The seed shares equally, however deep. */
        McPolicySettings seed = seed_defaults;
        McGuest e[2] = { adaptive_guest(MIB(1024), MIB(10), 0), adaptive_guest(MIB(1024), MIB(10), 0) };
        for (size_t i = 0; i < 2; i++)
                e[i].has_prev = true, e[i].prev_unused_kib = MIB(30);
        n = adaptive_run(&seed, H_KIB + MIB(60), e, 2, d, short_kib, &sum);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) + MIB(30));
        g_assert_cmpuint(decision_to(d, n, 1), ==, MIB(1024) + MIB(30));
}

/* An over-commit seen coming: the consumers' next 30 s do not fit. Among equal weights nobody
 * is favoured: each gets its usual need. A guest the admin ranked above the others gets a
 * reserve for LEAD_RESERVE (12 s) of its demand, the others only what brings them back to T
 * while that reserve and their next 30 s do not fit. */
static void test_adaptive_triage(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[2];
        McPolicySummary sum;

        /* Both at 90 MiB of headroom eating 20 MiB/s (80 MiB by now): need 100 + 80 - 80 =
         * 100 MiB each, of which 2 x 20 MiB to get back to T; with their next 30 s, 700 MiB
         * each. 1000 MiB to give: both needs fit now. */
        McGuest g[2] = { adaptive_guest(MIB(1024), MIB(90), RATE_MIB_S(20)),
                         adaptive_guest(MIB(1024), MIB(90), RATE_MIB_S(20)) };
        g[0].uuid[35] = 'b';
        g[1].uuid[35] = 'c';
        ssize_t n = adaptive_run(&s, H_KIB + MIB(1000), g, 2, d, NULL, &sum);
        g_assert_false(sum.crunch);
        g_assert_cmpint(n, ==, 2);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) + MIB(100));
        g_assert_cmpuint(decision_to(d, n, 1), ==, MIB(1024) + MIB(100));

        /* The second ranked first: 100 + 20 x 12 - 80 = 260 MiB to it; 1000 - 260 - 600 = 140
         * MiB left for the other's 700: only its way back to T (40). */
        g[1].weight = 200;
        n = adaptive_run(&s, H_KIB + MIB(1000), g, 2, d, NULL, &sum);
        g_assert_false(sum.crunch);
        g_assert_cmpuint(decision_to(d, n, 1), ==, MIB(1024) + MIB(260));
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) + MIB(40));

        /* Alone it has nobody to outlast: its usual need. */
        n = adaptive_run(&s, H_KIB + MIB(500), &g[1], 1, d, NULL, &sum);
        g_assert_cmpint(n, ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(1024) + MIB(100));

        /* Room for both over the next 30 s: no over-commit, the usual needs. */
        n = adaptive_run(&s, H_KIB + MIB(2000), g, 2, d, NULL, &sum);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) + MIB(100));
        g_assert_cmpuint(decision_to(d, n, 1), ==, MIB(1024) + MIB(100));
}

/* A lethal crunch: nothing (or too little) left to give, and what the consumers hold above
 * their OOM point lasts them less than 8 s together at their rates. Shared, all run out at
 * once; instead the first in the crunch order (weight, then UUID) is served first, the others
 * are brought back to T at most, and while the lead is short those that hold more than it
 * give what they hold above T and the fair band for the lead's headroom. */
static void test_adaptive_crunch_lethal(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[3];
        McPolicySummary sum;
        uint64_t short_kib[3];

        /* At 15 MiB/s, 150 MiB of headroom (142.5 by now) for two, 120 (112.5) for the third,
         * the lowest UUID: 92.5 + 92.5 + 62.5 MiB above T/2 against 3 x 120 MiB eaten in 8 s.
         * The budget is spent. */
        McGuest g[3];
        for (size_t i = 0; i < 3; i++) {
                g[i] = adaptive_guest(MIB(1024), MIB(150), RATE_MIB_S(15));
                g[i].uuid[35] = (char) ('d' - i);
        }
        g[2].unused_kib = g[2].sample_headroom_kib = MIB(120);
        const uint64_t lead_need = MIB(160) - KIB_OF_MIB_TENTHS(1125); /* 100 + 15 x 4 - 112.5 */
        ssize_t n = adaptive_run(&s, H_KIB, g, 3, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpuint(sum.served_first, ==, 2);
        /* The lead keeps all it has, short of its usual need ... */
        g_assert_null(find_decision(d, n, 2));
        g_assert_cmpuint(short_kib[2], ==, lead_need);
        /* ... and the others, consuming as they are, give what they hold above the fair band
         * over T: with the lead at 112.5 MiB, 32 MiB (a lead only a little short is not paid
         * for with the others' last MiB above T), 10.5 of their 142.5 MiB each. */
        g_assert_cmpint(n, ==, 2);
        for (size_t i = 0; i < 2; i++) {
                g_assert_cmpuint(decision_to(d, n, i), ==, MIB(1024) - KIB_OF_MIB_TENTHS(105));
                g_assert_cmpint(find_decision(d, n, i)->reason, ==, MC_REASON_CRUNCH_CLAIM);
        }
        g_assert_cmpuint(sum.claimed_kib, ==, 2 * KIB_OF_MIB_TENTHS(105));
        /* A lead deeper short (70 MiB, 62.5 by now), the band is gone: they give 10 % of their
         * 142.5 MiB each, as far down as T. */
        g[2].unused_kib = g[2].sample_headroom_kib = MIB(70);
        n = adaptive_run(&s, H_KIB, g, 3, d, short_kib, &sum);
        g_assert_cmpuint(sum.served_first, ==, 2);
        g_assert_cmpint(n, ==, 2);
        for (size_t i = 0; i < 2; i++)
                g_assert_cmpuint(decision_to(d, n, i), ==, MIB(1024) - KIB_OF_MIB_TENTHS(1425) / 10);
        g[2].unused_kib = g[2].sample_headroom_kib = MIB(120);

        /* 60 MiB left to give, less than their usual needs (47.5 + 2 x 17.5): a crunch, still
         * lethal. The lead gets its need; the others no reserve above T (the 12.5 left are
         * kept for the lead), and with the lead served nothing is claimed from them. */
        n = adaptive_run(&s, H_KIB + MIB(60), g, 3, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpuint(sum.served_first, ==, 2);
        g_assert_cmpint(n, ==, 1);
        g_assert_cmpuint(decision_to(d, n, 2), ==, MIB(1024) + lead_need);
        g_assert_cmpuint(short_kib[0], ==, MIB(160) - KIB_OF_MIB_TENTHS(1425));
        /* One of them under T (80 MiB, 72.5 by now) is brought back towards T with what is
         * left after the lead. */
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(80);
        n = adaptive_run(&s, H_KIB + MIB(60), g, 3, d, short_kib, &sum);
        g_assert_cmpuint(sum.served_first, ==, 2);
        g_assert_cmpuint(decision_to(d, n, 2), ==, MIB(1024) + lead_need);
        g_assert_cmpuint(decision_to(d, n, 0), ==, MIB(1024) + MIB(60) - lead_need);
        g_assert_null(find_decision(d, n, 1));
        g[0].unused_kib = g[0].sample_headroom_kib = MIB(150);

        /* A lead that needs nothing (200 MiB, 192.5 by now, above its reserve of 160) is not
         * served first: nobody's shortfall would help it. */
        g[2].unused_kib = g[2].sample_headroom_kib = MIB(200);
        n = adaptive_run(&s, H_KIB, g, 3, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpuint(sum.served_first, ==, 3);
        g_assert_null(find_decision(d, n, 0));
        g_assert_null(find_decision(d, n, 1));

        /* A guest that holds no more than the lead does not give to it. */
        g[2].unused_kib = g[2].sample_headroom_kib = MIB(150);
        n = adaptive_run(&s, H_KIB, g, 3, d, short_kib, &sum);
        g_assert_cmpuint(sum.served_first, ==, 2);
        g_assert_cmpint(n, ==, 0);
        g[2].unused_kib = g[2].sample_headroom_kib = MIB(120);

        /* Ranked by the admin (Weight=), the lead is not a lethal crunch's: served first with
         * its longer reserve (extend_lead_reserve), and the others give as above. */
        g[2].weight = 200;
        n = adaptive_run(&s, H_KIB, g, 3, d, short_kib, &sum);
        g_assert_cmpuint(sum.served_first, ==, 3);
        g_assert_null(find_decision(d, n, 2));
        g_assert_cmpint(find_decision(d, n, 0)->reason, ==, MC_REASON_CRUNCH_CLAIM);
        g_assert_cmpint(find_decision(d, n, 1)->reason, ==, MC_REASON_CRUNCH_CLAIM);
        g[2].weight = 0;

        /* Slower, at 5 MiB/s with 110 MiB of headroom (107.5 by now): each short of 12.5 MiB
         * of its reserve, but 3 x 57.5 MiB above T/2 last them more than 8 s. A crunch, not a
         * lethal one: nobody is served first, nothing is claimed from consumers. */
        for (size_t i = 0; i < 3; i++) {
                g[i].unused_kib = g[i].sample_headroom_kib = MIB(110);
                g[i].use_rate_kib_s = g[i].peak_rate_kib_s = RATE_MIB_S(5);
        }
        n = adaptive_run(&s, H_KIB, g, 3, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpuint(sum.served_first, ==, 3);
        g_assert_cmpint(n, ==, 0);
        /* At 6.5 MiB/s (106.75 MiB by now): 3 x 56.75 MiB above T/2 against 3 x 52 eaten in the
         * 8 s of LETHAL_HORIZON: not lethal either (over 10 s it would be, 3 x 65: a shortfall
         * the ramps' end may settle, as in real scenario 3). */
        for (size_t i = 0; i < 3; i++)
                g[i].use_rate_kib_s = g[i].peak_rate_kib_s = RATE_MIB_S(6.5);
        n = adaptive_run(&s, H_KIB, g, 3, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpuint(sum.served_first, ==, 3);
        g_assert_cmpint(n, ==, 0);
        /* At 7.5 MiB/s (106.25 by now), 3 x 56.25 against 3 x 60: lethal. */
        for (size_t i = 0; i < 3; i++)
                g[i].use_rate_kib_s = g[i].peak_rate_kib_s = RATE_MIB_S(7.5);
        n = adaptive_run(&s, H_KIB, g, 3, d, short_kib, &sum);
        g_assert_cmpuint(sum.served_first, ==, 2);

        /* A consumer alone has nobody to be served before. */
        McGuest one = adaptive_guest(MIB(1024), MIB(60), RATE_MIB_S(15));
        n = adaptive_run(&s, H_KIB, &one, 1, d, short_kib, &sum);
        g_assert_true(sum.crunch);
        g_assert_cmpuint(sum.served_first, ==, 1);
}

static void test_adaptive_skips(void)
{
        McPolicySettings s = adaptive_defaults();
        McDecision d[1];

        /* Backing off after failed sets: no decision until then. */
        McGuest g = adaptive_guest(MIB(1024), MIB(20), 0);
        g.retry_after_usec = NOW + 1;
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        g.retry_after_usec = NOW;
        g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 1);
        /* Stuck, busy, stale: left alone. */
        static const McGuestStatus others[] = { MC_GUEST_STUCK, MC_GUEST_BUSY, MC_GUEST_STALE,
                                                MC_GUEST_EXCLUDED, MC_GUEST_NO_BALLOON };
        for (size_t i = 0; i < G_N_ELEMENTS(others); i++) {
                g.status = others[i];
                g_assert_cmpint(adaptive_run(&s, PLENTY, &g, 1, d, NULL, NULL), ==, 0);
        }
}

int main(int argc, char *argv[])
{
        seed_defaults = mc_policy_defaults;
        seed_defaults.kind = MC_POLICY_SEED;
        g_test_init(&argc, &argv, NULL);
        /* Report every failing case, not just the first one. */
        g_test_set_nonfatal_assertions();

        g_test_add_func("/policy/defaults", test_defaults);
        g_test_add_func("/policy/settings-check", test_settings_check);
        g_test_add_func("/policy/names", test_names);
        g_test_add_func("/policy/floor-and-cap", test_floor_and_cap);
        g_test_add_func("/policy/no-guests", test_no_guests);
        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *slug = g_strdup(cases[i].name);
                for (char *q = slug; *q; q++)
                        if (!g_ascii_isalnum(*q))
                                *q = '-';
                g_autofree char *path = g_strdup_printf("/policy/tick/%02zu-%s", i, slug);
                g_test_add_data_func(path, &cases[i], test_case);
        }
        g_test_add_func("/policy/summary", test_summary);
        g_test_add_func("/policy/inputs-untouched", test_inputs_untouched);
        g_test_add_func("/policy/order-independent", test_order_independent);
        g_test_add_func("/policy/water-filling-reference", test_water_filling_reference);
        g_test_add_func("/policy/near-bound-not-stuck", test_near_bound_not_stuck);

        g_test_add_func("/policy/sim/idle-settles", test_sim_idle_settles);
        g_test_add_func("/policy/sim/idle-settles-dead-band", test_sim_idle_settles_dead_band);
        g_test_add_data_func("/policy/sim/consumer-to-max", GSIZE_TO_POINTER(0), test_sim_consumer_to_max);
        g_test_add_data_func("/policy/sim/consumer-to-max-lag", GSIZE_TO_POINTER(64),
                             test_sim_consumer_to_max);
        g_test_add_data_func("/policy/sim/host-floor", GSIZE_TO_POINTER(0), test_sim_host_floor);
        g_test_add_data_func("/policy/sim/host-floor-lag", GSIZE_TO_POINTER(64), test_sim_host_floor);
        g_test_add_data_func("/policy/sim/budget", GSIZE_TO_POINTER(0), test_sim_budget);
        g_test_add_data_func("/policy/sim/budget-lag", GSIZE_TO_POINTER(64), test_sim_budget);
        g_test_add_func("/policy/sim/starving-guest", test_sim_starving_guest);
        g_test_add_func("/policy/sim/starving-guest-trickle", test_sim_starving_guest_trickle);
        g_test_add_func("/policy/sim/starving-under-floor", test_sim_starving_under_floor);
        g_test_add_data_func("/policy/sim/two-consumers-share", GSIZE_TO_POINTER(0),
                             test_sim_two_consumers_share);
        g_test_add_data_func("/policy/sim/two-consumers-share-lag", GSIZE_TO_POINTER(64),
                             test_sim_two_consumers_share);
        g_test_add_func("/policy/sim/weighted-share", test_sim_weighted_share);
        g_test_add_func("/policy/sim/random", test_sim_random);
        g_test_add_func("/policy/adaptive/steady", test_adaptive_steady);
        g_test_add_func("/policy/adaptive/rate", test_adaptive_rate);
        g_test_add_func("/policy/adaptive/page-cache", test_adaptive_page_cache);
        g_test_add_func("/policy/adaptive/hysteresis", test_adaptive_hysteresis);
        g_test_add_func("/policy/adaptive/claim-not-ahead", test_adaptive_claim_not_ahead);
        g_test_add_func("/policy/adaptive/hold-peak-use", test_adaptive_hold_peak_use);
        g_test_add_func("/policy/adaptive/crunch-fair-band", test_adaptive_crunch_fair_band);
        g_test_add_func("/policy/adaptive/crunch-defers-donor", test_adaptive_crunch_defers_donor);
        g_test_add_func("/policy/adaptive/crunch-crumbs", test_adaptive_crunch_crumbs);
        g_test_add_func("/policy/adaptive/crunch-order", test_adaptive_crunch_order);
        g_test_add_func("/policy/adaptive/crunch-lethal", test_adaptive_crunch_lethal);
        g_test_add_func("/policy/adaptive/triage", test_adaptive_triage);
        g_test_add_func("/policy/adaptive/skips", test_adaptive_skips);

        return g_test_run();
}
