/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The guest model's observe step, with plain structs: freshness and status, the target in
 * flight (landed, given up, stuck, overtaken by the guest), the demand estimate (rate from the
 * samples' stamps, frozen samples after a balloon change), the limits resolved in one place,
 * and the backoff after failed sets. Sizes in KiB, times in microseconds.
 */

#include <glib.h>
#include <math.h>
#include <string.h>

#include "guest.h"
#include "policy.h"

#define MIB(x) ((uint64_t) (x) *UINT64_C(1024))
#define SEC(x) ((uint64_t) ((x) *1e6))
#define EPOCH INT64_C(1800000000) /* the guests' stamps: epoch seconds */
#define BOOT SEC(1000)            /* monotonic time when the tests start */

typedef struct Clock {
        uint64_t mono; /* host monotonic */
        int64_t stamp; /* the guest's last sample stamp */
} Clock;

static McObserveContext ctx_at(const Clock *c)
{
        return (McObserveContext){
                .now_mono_usec = c->mono,
                .now_real_usec = (uint64_t) (EPOCH + (int64_t) ((c->mono - BOOT) / SEC(1))) * SEC(1),
                .max_age_usec = mc_freshness_max_age(SEC(1)),
                .give_up_usec = SEC(10),
                .dead_band_kib = MIB(1),
        };
}

/* A reading of a guest with a balloon; MemTotal follows actual as without autodeflate. */
static McReading reading(uint64_t actual, uint64_t unused, int64_t stamp)
{
        return (McReading){
                .uuid = "00000000-0000-0000-0000-000000000001",
                .name = (char *) "vm",
                .has_balloon = true,
                .actual_kib = actual,
                .unused_kib = unused,
                .available_kib = actual - MIB(20),
                .max_kib = MIB(2048),
                .last_update = stamp,
        };
}

/* One second passes, the guest takes a sample (stamped by its clock, which agrees with the
 * host's), we read it. */
static unsigned step(McGuest *g, Clock *c, McReading r)
{
        c->mono += SEC(1);
        c->stamp = EPOCH + (int64_t) ((c->mono - BOOT) / SEC(1));
        r.last_update = c->stamp;
        McObserveContext ctx = ctx_at(c);
        return mc_guest_observe(g, &r, &ctx);
}

static void guest_new(McGuest *g, Clock *c)
{
        *c = (Clock){ .mono = BOOT, .stamp = EPOCH };
        mc_guest_init(g, "00000000-0000-0000-0000-000000000001", "vm");
}

static void test_init_and_names(void)
{
        McGuest g;
        Clock c;

        guest_new(&g, &c);
        g_assert_cmpstr(g.name, ==, "vm");
        g_assert_cmpstr(g.uuid, ==, "00000000-0000-0000-0000-000000000001");
        g_assert_cmpint(g.status, ==, MC_GUEST_STALE);
        g_assert_cmpuint(g.stats_age_usec, ==, UINT64_MAX);

        McReading r = reading(MIB(1024), MIB(300), 0);
        r.name = (char *) "renamed";
        r.max_kib = MIB(4096);
        unsigned ch = step(&g, &c, r);
        g_assert_cmpstr(g.name, ==, "renamed");
        g_assert_true(ch & MC_GUEST_CHANGED_NAME);
        g_assert_true(ch & MC_GUEST_CHANGED_MAX);
        g_assert_true(ch & MC_GUEST_CHANGED_STATUS);
        g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);
        ch = step(&g, &c, r);
        g_assert_false(ch & (MC_GUEST_CHANGED_NAME | MC_GUEST_CHANGED_MAX | MC_GUEST_CHANGED_STATUS));
        mc_guest_clear(&g);
        mc_guest_clear(&g); /* twice is fine */
}

static void test_status(void)
{
        McGuest g;
        Clock c;
        McObserveContext ctx;

        /* A first stamp far behind the host's clock is stale at once. */
        guest_new(&g, &c);
        McReading old = reading(MIB(1024), MIB(300), EPOCH - 600);
        ctx = ctx_at(&c);
        mc_guest_observe(&g, &old, &ctx);
        g_assert_cmpint(g.status, ==, MC_GUEST_STALE);
        mc_guest_clear(&g);

        /* Fresh while the stamp advances; stale once it stood still longer than 3 s. */
        guest_new(&g, &c);
        step(&g, &c, reading(MIB(1024), MIB(300), 0));
        g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);
        McReading frozen = reading(MIB(1024), MIB(300), c.stamp);
        for (int i = 0; i < 3; i++) {
                c.mono += SEC(1);
                ctx = ctx_at(&c);
                mc_guest_observe(&g, &frozen, &ctx);
                g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);
        }
        c.mono += SEC(1);
        ctx = ctx_at(&c);
        g_assert_true(mc_guest_observe(&g, &frozen, &ctx) & MC_GUEST_CHANGED_STATUS);
        g_assert_cmpint(g.status, ==, MC_GUEST_STALE);
        g_assert_cmpuint(g.stats_age_usec, ==, SEC(4));
        step(&g, &c, reading(MIB(1024), MIB(300), 0));
        g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);

        /* No balloon stats: no figures to trust, the memory it holds is still known. */
        McReading none = { .uuid = "x", .name = (char *) "vm", .actual_kib = MIB(512), .max_kib = MIB(512) };
        c.mono += SEC(1);
        ctx = ctx_at(&c);
        mc_guest_observe(&g, &none, &ctx);
        g_assert_cmpint(g.status, ==, MC_GUEST_NO_BALLOON);
        g_assert_false(g.has_stats);
        g_assert_cmpuint(g.actual_kib, ==, MIB(512));
        g_assert_cmpuint(g.stats_age_usec, ==, UINT64_MAX);

        /* Busy: a job holds it. Its figures stay and age; it is not managed. */
        step(&g, &c, reading(MIB(1024), MIB(300), 0));
        g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);
        McReading busy = { .uuid = "x", .name = (char *) "vm", .busy = true, .max_kib = MIB(2048) };
        c.mono += SEC(2);
        ctx = ctx_at(&c);
        g_assert_true(mc_guest_observe(&g, &busy, &ctx) & MC_GUEST_CHANGED_STATUS);
        g_assert_cmpint(g.status, ==, MC_GUEST_BUSY);
        g_assert_cmpuint(g.actual_kib, ==, MIB(1024));
        g_assert_cmpuint(g.stats_age_usec, ==, SEC(2));

        /* Excluded by the admin: whatever the stats. */
        step(&g, &c, reading(MIB(1024), MIB(300), 0));
        g_assert_cmpuint(mc_guest_set_excluded(&g, true), ==, MC_GUEST_CHANGED_STATUS);
        g_assert_cmpint(g.status, ==, MC_GUEST_EXCLUDED);
        step(&g, &c, reading(MIB(1024), MIB(300), 0));
        g_assert_cmpint(g.status, ==, MC_GUEST_EXCLUDED);
        mc_guest_set_excluded(&g, false);
        step(&g, &c, reading(MIB(1024), MIB(300), 0));
        g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);

        /* Synthetic stamps (libvirt's test driver): always fresh. */
        McReading fixed = reading(MIB(1024), MIB(512), 627319920);
        ctx = ctx_at(&c);
        ctx.synthetic = true;
        for (int i = 0; i < 10; i++) {
                ctx.now_mono_usec += SEC(5);
                mc_guest_observe(&g, &fixed, &ctx);
                g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);
        }
        mc_guest_clear(&g);
}

static void test_target_landed_and_given_up(void)
{
        McGuest g;
        Clock c;

        guest_new(&g, &c);
        step(&g, &c, reading(MIB(1024), MIB(500), 0));
        mc_guest_target_set(&g, MIB(1024), MIB(974), MC_REASON_CLAIM, c.mono, 1);
        g_assert_cmpuint(mc_guest_target_kib(&g), ==, MIB(974));
        g_assert_cmpuint(g.last_claim_usec, ==, c.mono);

        /* Halfway: still in flight. */
        g_assert_false(step(&g, &c, reading(MIB(1000), MIB(476), 0)) &
                       (MC_GUEST_TARGET_LANDED | MC_GUEST_TARGET_GIVEN_UP));
        g_assert_cmpuint(g.last_target_kib, ==, MIB(974));
        /* Within the dead band: landed. */
        g_assert_true(step(&g, &c, reading(MIB(974) + 512, MIB(450), 0)) & MC_GUEST_TARGET_LANDED);
        g_assert_cmpuint(g.last_target_kib, ==, 0);
        g_assert_cmpuint(mc_guest_target_kib(&g), ==, MIB(974) + 512);

        /* A balloon that moves, but slowly, is given up after 10 s. */
        mc_guest_target_set(&g, MIB(974), MIB(774), MC_REASON_CLAIM, c.mono, 1);
        uint64_t actual = MIB(974);
        unsigned ch = 0;
        for (int i = 0; i < 11 && !(ch & MC_GUEST_TARGET_GIVEN_UP); i++) {
                actual -= MIB(15);
                ch = step(&g, &c, reading(actual, MIB(450), 0));
        }
        g_assert_true(ch & MC_GUEST_TARGET_GIVEN_UP);
        g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED); /* it moved: not stuck */
        g_assert_cmpuint(g.last_target_kib, ==, 0);

        /* A grant in flight to a guest that went stale still counts, until it may not land. */
        mc_guest_target_set(&g, actual, actual + MIB(100), MC_REASON_GRANT, c.mono, 1);
        g_assert_cmpuint(g.last_grant_usec, ==, c.mono);
        McReading r = reading(actual, MIB(450), c.stamp);
        for (int i = 0; i < 10; i++) {
                c.mono += SEC(1);
                McObserveContext ctx = ctx_at(&c);
                mc_guest_observe(&g, &r, &ctx);
        }
        g_assert_cmpint(g.status, ==, MC_GUEST_STALE);
        g_assert_cmpuint(g.last_target_kib, ==, actual + MIB(100));
        c.mono += SEC(1);
        McObserveContext ctx = ctx_at(&c);
        g_assert_true(mc_guest_observe(&g, &r, &ctx) & MC_GUEST_TARGET_GIVEN_UP);
        g_assert_cmpuint(g.last_target_kib, ==, 0);
        mc_guest_clear(&g);
}

/* Excluding a guest keeps its grant in flight: the memory is still on its way to it and must
 * not be granted again to another guest (the host floor would be crossed). */
static void test_excluded_keeps_grant(void)
{
        McGuest g;
        Clock c;

        guest_new(&g, &c);
        step(&g, &c, reading(MIB(512), MIB(50), 0));
        mc_guest_target_set(&g, MIB(512), MIB(612), MC_REASON_GRANT, c.mono, 1);
        mc_guest_set_excluded(&g, true);
        g_assert_cmpint(g.status, ==, MC_GUEST_EXCLUDED);
        g_assert_cmpuint(g.last_target_kib, ==, MIB(612));
        step(&g, &c, reading(MIB(530), MIB(60), 0));
        g_assert_cmpuint(g.last_target_kib, ==, MIB(612));

        /* The policy counts it as committed: with 100 MiB above H, of which this grant's 82
         * are still in flight, another guest is given 18, not 100. */
        McGuest other;
        guest_new(&other, &c);
        step(&other, &c, reading(MIB(1024), MIB(40), 0));
        other.has_prev = true;
        other.prev_unused_kib = MIB(60);
        const McGuest *both[] = { &g, &other };
        McPolicySettings s = mc_policy_defaults;
        s.kind = MC_POLICY_SEED;
        McPolicyInput in = { .host_free_kib = s.host_threshold_kib + MIB(100),
                             .now_mono_usec = c.mono,
                             .interval_usec = SEC(1) };
        McDecision d[2];
        McPolicySummary sum;
        ssize_t n = mc_policy_run(&s, &in, both, 2, d, NULL, &sum);
        g_assert_cmpint(n, ==, 1);
        g_assert_cmpuint(d[0].guest, ==, 1);
        g_assert_cmpuint(d[0].to_kib, ==, MIB(1024) + MIB(18));
        mc_guest_clear(&g);
        mc_guest_clear(&other);
}

static void test_stuck(void)
{
        McGuest g;
        Clock c;

        guest_new(&g, &c);
        step(&g, &c, reading(MIB(1024), MIB(500), 0));
        mc_guest_target_set(&g, MIB(1024), MIB(824), MC_REASON_CLAIM, c.mono, 1);
        unsigned ch = 0;
        int seconds = 0;
        while (!(ch & MC_GUEST_TARGET_GIVEN_UP) && seconds < 20) {
                ch = step(&g, &c, reading(MIB(1020), MIB(496), 0)); /* 4 MiB of 200: 2 % */
                seconds++;
        }
        g_assert_cmpint(seconds, ==, 5); /* noticed after 4 s, not 10 */
        g_assert_cmpint(g.status, ==, MC_GUEST_STUCK);
        g_assert_true(ch & MC_GUEST_CHANGED_STATUS);
        g_assert_cmpuint(g.last_target_kib, ==, 0);
        g_assert_cmpuint(g.stuck_until_usec, ==, c.mono + SEC(30));

        /* Left alone for 30 s, then managed again. */
        for (int i = 0; i < 29; i++) {
                step(&g, &c, reading(MIB(1020), MIB(496), 0));
                g_assert_cmpint(g.status, ==, MC_GUEST_STUCK);
        }
        step(&g, &c, reading(MIB(1020), MIB(496), 0));
        g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);
        mc_guest_clear(&g);
}

static void test_moved_by_guest(void)
{
        McGuest g;
        Clock c;

        guest_new(&g, &c);
        step(&g, &c, reading(MIB(512), MIB(200), 0));
        mc_guest_target_set(&g, MIB(512), MIB(600), MC_REASON_GRANT, c.mono, 1);
        /* Past our target: autodeflate under pressure. */
        unsigned ch = step(&g, &c, reading(MIB(700), MIB(40), 0));
        g_assert_true(ch & MC_GUEST_MOVED_BY_GUEST);
        g_assert_true(g.moved_externally);
        g_assert_cmpuint(g.last_target_kib, ==, 0);
        g_assert_cmpuint(g.last_grew_usec, ==, c.mono);
        /* Next reading, steady: no longer "moved". */
        ch = step(&g, &c, reading(MIB(700), MIB(40), 0));
        g_assert_false(ch & MC_GUEST_MOVED_BY_GUEST);
        g_assert_false(g.moved_externally);
        /* Growing with no target of ours at all. */
        ch = step(&g, &c, reading(MIB(760), MIB(40), 0));
        g_assert_true(ch & MC_GUEST_MOVED_BY_GUEST);
        mc_guest_clear(&g);
}

static void test_rate(void)
{
        McGuest g;
        Clock c;
        uint64_t actual = MIB(1024), unused = MIB(600);

        /* Steady: rate 0. */
        guest_new(&g, &c);
        for (int i = 0; i < 5; i++)
                step(&g, &c, reading(actual, unused, 0));
        g_assert_cmpfloat(fabs(g.use_rate_kib_s), <, 1);

        /* A ramp of 40 MiB/s is seen within two samples. */
        for (int i = 0; i < 2; i++) {
                unused -= MIB(40);
                step(&g, &c, reading(actual, unused, 0));
        }
        g_assert_cmpfloat(g.use_rate_kib_s, >, 0.9 * MIB(40));
        g_assert_cmpfloat(g.use_rate_kib_s, <, 1.05 * MIB(40));
        g_assert_cmpfloat(g.peak_rate_kib_s, >=, g.use_rate_kib_s);

        /* A grant of 100 MiB lands; the guest's unused then stands still for 4 samples while
         * it keeps eating. The frozen samples are not believed: the rate stands. */
        double before = g.use_rate_kib_s;
        int64_t trusted = g.sample_stamp;
        actual += MIB(100);
        for (int i = 0; i < 4; i++) {
                step(&g, &c, reading(actual, unused, 0));
                g_assert_true(g.frozen);
                g_assert_cmpfloat(g.use_rate_kib_s, ==, before);
                g_assert_cmpint(g.sample_stamp, ==, trusted);
        }
        /* Then the truth: 5 s at 40 MiB/s since the trusted sample, plus the grant. */
        unused = unused + MIB(100) - 5 * MIB(40);
        step(&g, &c, reading(actual, unused, 0));
        g_assert_false(g.frozen);
        g_assert_cmpint(g.sample_stamp, ==, c.stamp);
        g_assert_cmpfloat(fabs(g.use_rate_kib_s - MIB(40)), <, 0.05 * MIB(40));

        /* An idle guest whose unused stands still for good after a claim is believed after 6 s. */
        actual -= MIB(30);
        for (int i = 0; i < 6; i++) {
                step(&g, &c, reading(actual, unused, 0));
                g_assert_true(g.frozen);
        }
        step(&g, &c, reading(actual, unused, 0));
        g_assert_false(g.frozen);
        g_assert_cmpint(g.sample_stamp, ==, c.stamp);

        /* A balloon move with the guest's MemTotal following is no demand. */
        for (int i = 0; i < 6; i++)
                step(&g, &c, reading(actual, unused, 0));
        g_assert_cmpfloat(fabs(g.use_rate_kib_s), <, 0.1 * MIB(40));
        actual -= MIB(50);
        unused -= MIB(50);
        step(&g, &c, reading(actual, unused, 0));
        g_assert_cmpfloat(fabs(g.use_rate_kib_s), <, 0.1 * MIB(40));

        /* Freeing: the rate goes negative, and is forgotten more slowly than a rise. */
        unused += MIB(300);
        step(&g, &c, reading(actual, unused, 0));
        g_assert_cmpfloat(g.use_rate_kib_s, <, -0.3 * MIB(300));
        g_assert_cmpfloat(g.use_rate_kib_s, >, -0.4 * MIB(300));

        /* The same sample read twice changes nothing. */
        double r = g.use_rate_kib_s;
        McReading again = reading(actual, unused, c.stamp);
        c.mono += SEC(1);
        McObserveContext ctx = ctx_at(&c);
        mc_guest_observe(&g, &again, &ctx);
        g_assert_cmpfloat(g.use_rate_kib_s, ==, r);
        mc_guest_clear(&g);

        /* Synthetic figures (the test driver) measure no demand. */
        guest_new(&g, &c);
        ctx = ctx_at(&c);
        ctx.synthetic = true;
        for (uint64_t a = MIB(2048); a > MIB(1024); a -= MIB(100)) {
                McReading t = reading(a, a / 2, 627319920);
                ctx.now_mono_usec += SEC(1);
                mc_guest_observe(&g, &t, &ctx);
                g_assert_cmpfloat(g.use_rate_kib_s, ==, 0);
                g_assert_cmpuint(g.peak_used_kib, ==, 0);
        }
        mc_guest_clear(&g);
}

/* A grant landing: the guest's MemTotal takes the pages before its MemFree shows them all, so
 * its use (MemTotal less free) grows by the pages in transit too. Those samples give the
 * headroom, not the rate; the first once MemTotal stands still measures it over the whole
 * move. */
static void test_rate_landing(void)
{
        McGuest g;
        Clock c;
        uint64_t actual = MIB(1024), unused = MIB(400);

        guest_new(&g, &c);
        for (int i = 0; i < 6; i++) {
                unused -= MIB(10);
                step(&g, &c, reading(actual, unused, 0));
        }
        g_assert_cmpfloat(fabs(g.use_rate_kib_s - MIB(10)), <, 0.05 * MIB(10));

        /* 40 MiB given, eaten at 10 MiB/s meanwhile: MemTotal +20, +20, then still; MemFree
         * gets 5, 20, then the last 15 of them. Read as they come, the first sample alone
         * would say 25 MiB/s. */
        double before = g.use_rate_kib_s;
        int64_t measured = g.rate_stamp;
        const uint64_t memtotal_step[3] = { MIB(20), MIB(20), 0 }, landed[3] = { MIB(5), MIB(20), MIB(15) };
        for (int i = 0; i < 3; i++) {
                actual += memtotal_step[i];
                unused = unused - MIB(10) + landed[i];
                step(&g, &c, reading(actual, unused, 0));
                /* What is free is free: the headroom is this sample's. */
                g_assert_false(g.frozen);
                g_assert_cmpint(g.sample_stamp, ==, c.stamp);
                g_assert_cmpuint(g.sample_headroom_kib, ==, unused);
                if (i < 2) {
                        g_assert_cmpfloat(g.use_rate_kib_s, ==, before);
                        g_assert_cmpint(g.rate_stamp, ==, measured);
                }
        }
        g_assert_cmpint(g.rate_stamp, ==, c.stamp);
        g_assert_cmpfloat(fabs(g.use_rate_kib_s - MIB(10)), <, 0.05 * MIB(10));

        /* A claim shows no such lag: MemTotal and MemFree fall together, and the sample is
         * folded at once. */
        actual -= MIB(30);
        unused = unused - MIB(30) - MIB(10);
        step(&g, &c, reading(actual, unused, 0));
        g_assert_false(g.frozen);
        g_assert_cmpint(g.rate_stamp, ==, c.stamp);
        g_assert_cmpfloat(fabs(g.use_rate_kib_s - MIB(10)), <, 0.05 * MIB(10));
        mc_guest_clear(&g);
}

/* The most the guest used lately: kept while its use falls, forgotten after 30 s. */
static void test_peak_use(void)
{
        McGuest g;
        Clock c;
        uint64_t actual = MIB(1024), size = actual - MIB(20);

        guest_new(&g, &c);
        step(&g, &c, reading(actual, MIB(600), 0));
        g_assert_cmpuint(g.peak_used_kib, ==, size - MIB(600));
        /* Up 300 MiB, then freed: the high stands, with the time it was last seen. */
        step(&g, &c, reading(actual, MIB(300), 0));
        uint64_t high_at = c.mono;
        g_assert_cmpuint(g.peak_used_kib, ==, size - MIB(300));
        step(&g, &c, reading(actual, MIB(600), 0));
        g_assert_cmpuint(g.peak_used_kib, ==, size - MIB(300));
        g_assert_cmpuint(g.peak_size_kib, ==, size);
        g_assert_cmpuint(g.peak_used_usec, ==, high_at);
        g_assert_cmpuint(g.sample_used_kib, ==, size - MIB(600));
        /* 20 s on, it comes back to 10 MiB short of the high: that renews it. */
        while (c.mono < high_at + SEC(20))
                step(&g, &c, reading(actual, MIB(600), 0));
        step(&g, &c, reading(actual, MIB(310), 0));
        high_at = c.mono;
        g_assert_cmpuint(g.peak_used_kib, ==, size - MIB(300));
        g_assert_cmpuint(g.peak_used_usec, ==, high_at);
        /* 30 s after that: what it uses now. */
        while (c.mono < high_at + SEC(30))
                step(&g, &c, reading(actual, MIB(600), 0));
        g_assert_cmpuint(g.peak_used_kib, ==, size - MIB(600));
        mc_guest_clear(&g);
}

/* A load that comes back to its high after a fall, soon after a grant or after its last
 * return, is cyclic: each return renews cycle_high_usec (the policy holds for it). Sitting at
 * the high renews nothing, nor does a return long after. */
static void test_cycle_high(void)
{
        McGuest g;
        Clock c;
        uint64_t actual = MIB(1024);

        guest_new(&g, &c);
        step(&g, &c, reading(actual, MIB(600), 0));
        /* Never granted: its returns are no cycle of ours. */
        step(&g, &c, reading(actual, MIB(300), 0));
        step(&g, &c, reading(actual, MIB(600), 0));
        step(&g, &c, reading(actual, MIB(300), 0));
        g_assert_cmpuint(g.cycle_high_usec, ==, 0);

        /* Granted; at its high for 5 s: still none. */
        mc_guest_target_set(&g, actual, actual + MIB(50), MC_REASON_GRANT, c.mono, 1);
        uint64_t grant_at = c.mono;
        for (int i = 0; i < 5; i++)
                step(&g, &c, reading(actual, MIB(300), 0));
        g_assert_cmpuint(g.cycle_high_usec, ==, 0);
        /* Down 250 MiB, then back near the high: a cycle. */
        step(&g, &c, reading(actual, MIB(550), 0));
        g_assert_true(g.fell_since_high);
        step(&g, &c, reading(actual, MIB(310), 0));
        g_assert_cmpuint(g.cycle_high_usec, ==, c.mono);
        g_assert_false(g.fell_since_high);
        /* Each return within 30 s of the last renews it, with no grant since. */
        uint64_t last = c.mono;
        while (c.mono < grant_at + SEC(50)) {
                for (int i = 0; i < 10; i++)
                        step(&g, &c, reading(actual, MIB(550), 0));
                step(&g, &c, reading(actual, MIB(300), 0));
                g_assert_cmpuint(g.cycle_high_usec, ==, c.mono);
                g_assert_cmpuint(c.mono - last, <, SEC(30));
                last = c.mono;
        }
        g_assert_cmpuint(c.mono, >, grant_at + SEC(30));
        /* A return 40 s after the last: the high itself is forgotten by then, and no cycle. */
        while (c.mono < last + SEC(40))
                step(&g, &c, reading(actual, MIB(550), 0));
        step(&g, &c, reading(actual, MIB(300), 0));
        g_assert_cmpuint(g.cycle_high_usec, ==, last);
        mc_guest_clear(&g);
}

static void test_headroom_and_cache(void)
{
        McGuest g = { .unused_kib = MIB(80), .usable_kib = MIB(700), .disk_caches_kib = MIB(690) };

        /* Free memory that went into page cache is still headroom. */
        g_assert_cmpuint(mc_guest_headroom_kib(&g), ==, MIB(700));
        /* Next to no cache: MemFree, exactly. */
        g.disk_caches_kib = MIB(2);
        g_assert_cmpuint(mc_guest_headroom_kib(&g), ==, MIB(80));
        g.disk_caches_kib = MIB(690);
        /* Without cache the kernel's reserve makes MemAvailable the smaller. */
        g.usable_kib = MIB(135);
        g.unused_kib = MIB(200);
        g_assert_cmpuint(mc_guest_headroom_kib(&g), ==, MIB(200));
        /* Not reported: MemFree. */
        g.usable_kib = 0;
        g_assert_cmpuint(mc_guest_headroom_kib(&g), ==, MIB(200));

        /* The kernel's reserve, learned while there is no cache, bridges the two figures. */
        g.reserve_kib = MIB(65);
        g.usable_kib = MIB(135);
        g.disk_caches_kib = MIB(17);
        g_assert_cmpuint(mc_guest_headroom_kib(&g), ==, MIB(200));
        g.unused_kib = MIB(70);
        g.usable_kib = MIB(135) + MIB(400) - MIB(130);
        g_assert_cmpuint(mc_guest_headroom_kib(&g), ==, MIB(470));

        /* A guest filling its page cache: MemFree falls, MemAvailable holds: no demand. As on
         * the real guests, MemAvailable = MemFree + cache - 65 MiB, and the rootfs is 2 MiB
         * of cache from the start. */
        McGuest c;
        Clock clk;
        guest_new(&c, &clk);
        for (int i = 0; i < 8; i++) {
                uint64_t cache = MIB(2) + (uint64_t) i * MIB(60);
                McReading r = reading(MIB(1024), MIB(600) - (uint64_t) i * MIB(60), 0);
                r.disk_caches_kib = cache;
                r.usable_kib = r.unused_kib + cache - MIB(67);
                step(&c, &clk, r);
                g_assert_cmpuint(mc_guest_headroom_kib(&c), ==, MIB(600));
        }
        g_assert_cmpuint(c.reserve_kib, ==, MIB(65));
        g_assert_cmpfloat(fabs(c.use_rate_kib_s), <, MIB(1));
        g_assert_cmpuint(c.disk_caches_kib, ==, MIB(422));
        mc_guest_clear(&c);
}

static void test_limits(void)
{
        static const struct {
                uint64_t max, limit_max, min, default_min;
                unsigned weight;
                uint64_t cap, floor;
                unsigned eff_weight;
        } table[] = {
                { MIB(4096), 0, 0, MIB(256), 0, MIB(4096), MIB(256), MC_DEFAULT_WEIGHT },
                { MIB(4096), MIB(2048), 0, MIB(256), 7, MIB(2048), MIB(256), 7 },
                { MIB(4096), MIB(8192), 0, MIB(256), 0, MIB(4096), MIB(256), 100 }, /* above max: no limit */
                { MIB(4096), 0, MIB(512), MIB(256), 0, MIB(4096), MIB(512), 100 },
                { MIB(4096), MIB(384), MIB(512), MIB(256), 0, MIB(384), MIB(384), 100 }, /* floor <= cap */
                { MIB(200), 0, 0, MIB(256), 0, MIB(200), MIB(200), 100 },
                { MIB(4096), 0, 0, MIB(1024), 0, MIB(4096), MIB(1024), 100 },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                McGuest g = { .max_kib = table[i].max,
                              .limit_max_kib = table[i].limit_max,
                              .min_kib = table[i].min,
                              .weight = table[i].weight };
                McGuestLimits l = mc_guest_limits(table[i].default_min, &g);

                g_assert_cmpuint(l.cap_kib, ==, table[i].cap);
                g_assert_cmpuint(l.floor_kib, ==, table[i].floor);
                g_assert_cmpuint(l.weight, ==, table[i].eff_weight);
        }
}

static void assert_meta(const McGuestMeta *a, const McGuestMeta *b)
{
        g_assert_cmpuint(a->min_kib, ==, b->min_kib);
        g_assert_cmpuint(a->max_kib, ==, b->max_kib);
        g_assert_cmpuint(a->weight, ==, b->weight);
        g_assert_cmpint(a->excluded, ==, b->excluded);
        g_assert_cmpuint(a->min_guarantee_kib, ==, b->min_guarantee_kib);
}

/*
 * The settings of a guest's definition come with a reading only when they were read (first
 * sight, a change): a reading without them leaves the guest's, and the limits resolved from
 * them, as they are, whatever else the reading says.
 */
static void test_meta_kept(void)
{
        static const McGuestMeta none = MC_GUEST_META_NONE;
        const McGuestMeta set = {
                .min_kib = MIB(1000),
                .max_kib = MIB(1536),
                .weight = 300,
                .excluded = 0,
                .min_guarantee_kib = MIB(800),
        };
        McGuest g;
        Clock c;

        guest_new(&g, &c);
        assert_meta(&g.meta, &none);

        McReading r = reading(MIB(1024), MIB(300), 0);
        r.has_meta = true;
        r.meta = set;
        g_assert_true(step(&g, &c, r) & MC_GUEST_CHANGED_META);
        assert_meta(&g.meta, &set);
        /* What the manager resolves from them (apply_config_limits()), here by hand. */
        g.min_kib = g.meta.min_kib;
        g.limit_max_kib = g.meta.max_kib;
        g.weight = g.meta.weight;
        McGuestLimits before = mc_guest_limits(MIB(256), &g);
        g_assert_cmpuint(before.floor_kib, ==, MIB(1000));
        g_assert_cmpuint(before.cap_kib, ==, MIB(1536));
        g_assert_cmpuint(before.weight, ==, 300);

        /* Readings without: a managed one, one whose meta field holds something else, a busy
         * one, one without balloon stats. */
        McReading plain = reading(MIB(1024), MIB(300), 0);
        McReading stray = reading(MIB(1024), MIB(300), 0);
        stray.meta = none;
        McReading busy = { .uuid = "x", .name = (char *) "vm", .busy = true, .max_kib = MIB(2048) };
        McReading nostats = {
                .uuid = "x", .name = (char *) "vm", .actual_kib = MIB(1024), .max_kib = MIB(2048)
        };
        const McReading *without[] = { &plain, &stray, &busy, &nostats, &plain };
        for (size_t i = 0; i < G_N_ELEMENTS(without); i++) {
                unsigned ch = step(&g, &c, *without[i]);
                g_assert_false(ch & (MC_GUEST_CHANGED_META | MC_GUEST_CHANGED_LIMITS));
                assert_meta(&g.meta, &set);
                g_assert_cmpuint(g.min_kib, ==, MIB(1000));
                g_assert_cmpuint(g.limit_max_kib, ==, MIB(1536));
                g_assert_cmpuint(g.weight, ==, 300);
                g_assert_false(g.excluded);
                McGuestLimits l = mc_guest_limits(MIB(256), &g);
                g_assert_cmpuint(l.floor_kib, ==, before.floor_kib);
                g_assert_cmpuint(l.cap_kib, ==, before.cap_kib);
                g_assert_cmpuint(l.weight, ==, before.weight);
        }
        g_assert_cmpint(g.status, ==, MC_GUEST_MANAGED);

        /* Read again and the same: no change. Read again and removed: none. */
        g_assert_false(step(&g, &c, r) & MC_GUEST_CHANGED_META);
        r.meta = none;
        g_assert_true(step(&g, &c, r) & MC_GUEST_CHANGED_META);
        assert_meta(&g.meta, &none);
        g_assert_false(step(&g, &c, plain) & MC_GUEST_CHANGED_META);
        assert_meta(&g.meta, &none);
        mc_guest_clear(&g);
}

static void test_backoff(void)
{
        McGuest g = {};
        uint64_t now = SEC(100);

        static const uint64_t waits[] = {
                SEC(1), SEC(2), SEC(4), SEC(8), SEC(16), SEC(32), SEC(60), SEC(60)
        };
        for (size_t i = 0; i < G_N_ELEMENTS(waits); i++) {
                mc_guest_target_failed(&g, now);
                g_assert_cmpuint(g.retry_after_usec, ==, now + waits[i]);
        }
        mc_guest_target_set(&g, MIB(100), MIB(200), MC_REASON_GRANT, now, 1);
        g_assert_cmpuint(g.set_failures, ==, 0);
        g_assert_cmpuint(g.retry_after_usec, ==, 0);
}

int main(int argc, char *argv[])
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/guest/init-and-names", test_init_and_names);
        g_test_add_func("/guest/status", test_status);
        g_test_add_func("/guest/target-landed-and-given-up", test_target_landed_and_given_up);
        g_test_add_func("/guest/excluded-keeps-grant", test_excluded_keeps_grant);
        g_test_add_func("/guest/stuck", test_stuck);
        g_test_add_func("/guest/moved-by-guest", test_moved_by_guest);
        g_test_add_func("/guest/rate", test_rate);
        g_test_add_func("/guest/rate-landing", test_rate_landing);
        g_test_add_func("/guest/peak-use", test_peak_use);
        g_test_add_func("/guest/cycle-high", test_cycle_high);
        g_test_add_func("/guest/headroom-and-cache", test_headroom_and_cache);
        g_test_add_func("/guest/limits", test_limits);
        g_test_add_func("/guest/meta-kept", test_meta_kept);
        g_test_add_func("/guest/backoff", test_backoff);
        return g_test_run();
}
