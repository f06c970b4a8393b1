/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <glib.h>

#include "freshness.h"

#define SEC UINT64_C(1000000)

/* A plausible pair of clocks: the host has been up an hour, the wall clock says 2024. */
#define BOOT_MONO (UINT64_C(3600) * SEC)
#define NOW_EPOCH INT64_C(1717000000)
#define NOW_REAL ((uint64_t) NOW_EPOCH * SEC)

/* libvirt's test driver stamps every sample with this (1989-11-18). */
#define TEST_DRIVER_STAMP INT64_C(627319920)

static bool update(McFreshness *f, int64_t stamp, uint64_t mono, uint64_t real, uint64_t max_age, bool synthetic,
                   uint64_t *age)
{
        McFreshnessInput in = {
                .last_update = stamp,
                .now_mono_usec = mono,
                .now_real_usec = real,
                .max_age_usec = max_age,
                .synthetic = synthetic,
        };

        return mc_freshness_update(f, &in, age);
}

static void test_max_age(void)
{
        static const struct {
                uint64_t interval, max_age;
        } table[] = {
                { 0, 3 * SEC },
                { SEC / 10, 3 * SEC },
                { SEC, 3 * SEC },
                { 3 * SEC / 2, 3 * SEC },
                { 2 * SEC, 4 * SEC },
                { 5 * SEC, 10 * SEC },
                { 60 * SEC, 120 * SEC },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                g_assert_cmpuint(mc_freshness_max_age(table[i].interval), ==, table[i].max_age);
}

static void test_synthetic_always_fresh(void)
{
        McFreshness f = {};
        uint64_t max_age = mc_freshness_max_age(SEC);
        uint64_t age = 1;

        /* The test driver's stamp never moves and is decades old: still fresh. */
        for (unsigned i = 0; i < 100; i++) {
                age = 1;
                g_assert_true(update(&f, TEST_DRIVER_STAMP, BOOT_MONO + i * SEC, NOW_REAL + i * SEC, max_age,
                                     true, &age));
                g_assert_cmpuint(age, ==, 0);
                g_assert_true(f.valid);
        }
        /* Even without any stamp. */
        g_assert_true(update(&f, 0, BOOT_MONO + 200 * SEC, NOW_REAL + 200 * SEC, max_age, true, &age));
        g_assert_cmpuint(age, ==, 0);
        /* A NULL age pointer is allowed. */
        g_assert_true(update(&f, -1, BOOT_MONO + 201 * SEC, NOW_REAL + 201 * SEC, max_age, true, NULL));
}

static void test_advancing_stays_fresh(void)
{
        McFreshness f = {};
        uint64_t max_age = mc_freshness_max_age(SEC);
        uint64_t age = UINT64_MAX;

        /* First sight: stamped 1 s ago by the host's clock. */
        g_assert_true(update(&f, NOW_EPOCH - 1, BOOT_MONO, NOW_REAL, max_age, false, &age));
        g_assert_cmpuint(age, ==, SEC);

        /* The guest samples every second; we read every second, for ten minutes. */
        for (uint64_t t = 1; t <= 600; t++) {
                age = UINT64_MAX;
                g_assert_true(update(&f, NOW_EPOCH - 1 + (int64_t) t, BOOT_MONO + t * SEC, NOW_REAL + t * SEC,
                                     max_age, false, &age));
                g_assert_cmpuint(age, ==, 0);
        }

        /*
         * The guest's clock is an hour behind the host's: stale at first sight (nothing vouches
         * for the stamp), fresh as soon as it is seen advancing, since the stamp is compared
         * with itself from then on.
         */
        McFreshness g = {};
        int64_t behind = NOW_EPOCH - 3600;
        g_assert_false(update(&g, behind, BOOT_MONO, NOW_REAL, max_age, false, &age));
        g_assert_cmpuint(age, ==, 3600 * SEC);
        for (uint64_t t = 1; t <= 10; t++) {
                g_assert_true(update(&g, behind + (int64_t) t, BOOT_MONO + t * SEC, NOW_REAL + t * SEC, max_age,
                                     false, &age));
                g_assert_cmpuint(age, ==, 0);
        }
}

static void test_stops_advancing(void)
{
        McFreshness f = {};
        uint64_t max_age = mc_freshness_max_age(SEC); /* 3 s */
        uint64_t age = 0;
        int64_t stamp = NOW_EPOCH;

        g_assert_true(update(&f, stamp, BOOT_MONO, NOW_REAL, max_age, false, &age));
        g_assert_cmpuint(age, ==, 0);
        /* Advances once, at BOOT_MONO + 1 s. */
        stamp++;
        g_assert_true(update(&f, stamp, BOOT_MONO + SEC, NOW_REAL + SEC, max_age, false, &age));
        g_assert_cmpuint(age, ==, 0);

        /* Then stands still: fresh up to and including max_age, stale after. */
        g_assert_true(update(&f, stamp, BOOT_MONO + 2 * SEC, NOW_REAL + 2 * SEC, max_age, false, &age));
        g_assert_cmpuint(age, ==, SEC);
        g_assert_true(update(&f, stamp, BOOT_MONO + SEC + max_age, NOW_REAL + SEC + max_age, max_age, false,
                             &age));
        g_assert_cmpuint(age, ==, max_age);
        g_assert_false(update(&f, stamp, BOOT_MONO + SEC + max_age + 1, NOW_REAL + SEC + max_age + 1, max_age,
                              false, &age));
        g_assert_cmpuint(age, ==, max_age + 1);
        g_assert_false(update(&f, stamp, BOOT_MONO + 100 * SEC, NOW_REAL + 100 * SEC, max_age, false, &age));
        g_assert_cmpuint(age, ==, 99 * SEC);

        /* It moves again: fresh at once. */
        stamp += 99;
        g_assert_true(update(&f, stamp, BOOT_MONO + 101 * SEC, NOW_REAL + 101 * SEC, max_age, false, &age));
        g_assert_cmpuint(age, ==, 0);
        g_assert_cmpint(f.last_update, ==, stamp);
        g_assert_cmpuint(f.changed_at_usec, ==, BOOT_MONO + 101 * SEC);

        /* The same rule with a 5 s interval: the limit is 10 s. */
        McFreshness g = {};
        max_age = mc_freshness_max_age(5 * SEC);
        g_assert_true(update(&g, NOW_EPOCH, BOOT_MONO, NOW_REAL, max_age, false, NULL));
        g_assert_true(update(&g, NOW_EPOCH, BOOT_MONO + 10 * SEC, NOW_REAL + 10 * SEC, max_age, false, NULL));
        g_assert_false(update(&g, NOW_EPOCH, BOOT_MONO + 11 * SEC, NOW_REAL + 11 * SEC, max_age, false, NULL));
}

static void test_first_sight(void)
{
        static const struct {
                int64_t stamp;
                bool fresh;
                uint64_t age;
        } table[] = {
                { NOW_EPOCH, true, 0 },
                { NOW_EPOCH - 1, true, SEC },
                { NOW_EPOCH - 3, true, 3 * SEC },
                { NOW_EPOCH - 4, false, 4 * SEC },
                { NOW_EPOCH + 5, true, 0 }, /* guest clock ahead: never negative */
                { NOW_EPOCH - 86400, false, 86400 * SEC },
                { TEST_DRIVER_STAMP, false, NOW_REAL - (uint64_t) TEST_DRIVER_STAMP * SEC },
        };
        uint64_t max_age = mc_freshness_max_age(SEC);

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                McFreshness f = {};
                uint64_t age = 12345;

                g_test_message("stamp %" G_GINT64_FORMAT, table[i].stamp);
                g_assert_cmpint(update(&f, table[i].stamp, BOOT_MONO, NOW_REAL, max_age, false, &age), ==,
                                table[i].fresh);
                g_assert_cmpuint(age, ==, table[i].age);
                g_assert_true(f.valid);
                g_assert_cmpint(f.last_update, ==, table[i].stamp);
        }
}

/* A stamp first seen 2 s old, that then stops, is stale 1 s later than a brand-new one. */
static void test_first_sight_age_carries_over(void)
{
        McFreshness f = {};
        uint64_t max_age = mc_freshness_max_age(SEC);
        uint64_t age = 0;

        g_assert_true(update(&f, NOW_EPOCH - 2, BOOT_MONO, NOW_REAL, max_age, false, &age));
        g_assert_cmpuint(age, ==, 2 * SEC);
        g_assert_true(update(&f, NOW_EPOCH - 2, BOOT_MONO + SEC, NOW_REAL + SEC, max_age, false, &age));
        g_assert_cmpuint(age, ==, 3 * SEC);
        g_assert_false(update(&f, NOW_EPOCH - 2, BOOT_MONO + SEC + 1, NOW_REAL + SEC + 1, max_age, false, &age));

        /* The test driver's stamp on a real driver: stale at first sight and stays stale. */
        McFreshness g = {};
        g_assert_false(update(&g, TEST_DRIVER_STAMP, BOOT_MONO, NOW_REAL, max_age, false, NULL));
        for (uint64_t t = 1; t <= 5; t++)
                g_assert_false(update(&g, TEST_DRIVER_STAMP, BOOT_MONO + t * SEC, NOW_REAL + t * SEC, max_age,
                                      false, NULL));
}

static void test_no_stamp(void)
{
        static const int64_t stamps[] = { 0, -1, INT64_MIN };
        uint64_t max_age = mc_freshness_max_age(SEC);

        for (size_t i = 0; i < G_N_ELEMENTS(stamps); i++) {
                McFreshness f = {};
                uint64_t age = 0;

                g_assert_false(update(&f, stamps[i], BOOT_MONO, NOW_REAL, max_age, false, &age));
                g_assert_cmpuint(age, ==, UINT64_MAX);
                g_assert_false(f.valid);
        }

        /* Stats that were fresh lose their stamp: stale, and the history is dropped... */
        McFreshness f = {};
        g_assert_true(update(&f, NOW_EPOCH, BOOT_MONO, NOW_REAL, max_age, false, NULL));
        g_assert_false(update(&f, 0, BOOT_MONO + SEC, NOW_REAL + SEC, max_age, false, NULL));
        g_assert_false(f.valid);
        /* ...so the stamp coming back is judged as a first sight again. */
        g_assert_true(update(&f, NOW_EPOCH + 2, BOOT_MONO + 2 * SEC, NOW_REAL + 2 * SEC, max_age, false, NULL));
        g_assert_true(f.valid);
}

int main(int argc, char *argv[])
{
        g_test_init(&argc, &argv, NULL);
        /* Report every failing case, not just the first one. */
        g_test_set_nonfatal_assertions();

        g_test_add_func("/freshness/max-age", test_max_age);
        g_test_add_func("/freshness/synthetic", test_synthetic_always_fresh);
        g_test_add_func("/freshness/advancing", test_advancing_stays_fresh);
        g_test_add_func("/freshness/stops-advancing", test_stops_advancing);
        g_test_add_func("/freshness/first-sight", test_first_sight);
        g_test_add_func("/freshness/first-sight-age", test_first_sight_age_carries_over);
        g_test_add_func("/freshness/no-stamp", test_no_stamp);

        return g_test_run();
}
