/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The Prometheus exposition (daemon/metrics.c) from plain structs: exact lines, escaping, the
 * histogram's cumulative buckets, and the shape the text format 0.0.4 requires. */

#include <glib.h>
#include <string.h>

#include "metrics.h"

#define MIB_KIB UINT64_C(1024)

static const McMetricsGuest two_guests[] = {
        {
                .name = "vm1",
                .uuid = "6695eb01-f6a4-8304-79aa-97f2502e1901",
                .status = MC_GUEST_MANAGED,
                .actual_kib = 1024 * MIB_KIB,
                .target_kib = 972 * MIB_KIB,
                .unused_kib = 512 * MIB_KIB,
                .available_kib = 1024 * MIB_KIB,
                .usable_kib = 600 * MIB_KIB,
                .maximum_kib = 2048 * MIB_KIB,
                .min_kib = 256 * MIB_KIB,
                .max_kib = 2048 * MIB_KIB,
                .weight = 100,
                .stats_age_usec = 1500000,
        },
        {
                /* A name with every character the format escapes. */
                .name = "we\"ird\\na\nme",
                .uuid = "6695eb01-f6a4-8304-79aa-97f2502e1905",
                .status = MC_GUEST_NO_BALLOON,
                .actual_kib = 512 * MIB_KIB,
                .target_kib = 512 * MIB_KIB,
                .maximum_kib = 512 * MIB_KIB,
                .min_kib = 256 * MIB_KIB,
                .max_kib = 512 * MIB_KIB,
                .weight = 200,
                .excluded = true,
                .stats_age_usec = UINT64_MAX,
        },
};

static char *render_sample(McMetricsCounters *c)
{
        McMetricsInput in = {
                .version = "0.1.0",
                .policy = "adaptive",
                .state = "running",
                .interval_usec = 1000000,
                .domain_threshold_kib = 100 * MIB_KIB,
                .host_threshold_kib = 200 * MIB_KIB,
                .host_budget_kib = 0,
                .host_total_kib = 8192 * MIB_KIB,
                .host_free_kib = 4096 * MIB_KIB,
                .host_available_kib = 3896 * MIB_KIB,
                .ticks = 42,
                .last_tick_usec = 1234,
                .counters = c,
                .guests = two_guests,
                .n_guests = G_N_ELEMENTS(two_guests),
        };
        return mc_metrics_render(&in);
}

static bool has_line(const char *text, const char *line)
{
        g_autofree char *needle = g_strdup_printf("\n%s\n", line);
        g_autofree char *framed = g_strdup_printf("\n%s", text);

        return strstr(framed, needle) != NULL;
}

#define assert_line(text, line)                                     \
        do {                                                        \
                if (!has_line((text), (line)))                      \
                        g_test_message("missing line: %s", (line)); \
                g_assert_true(has_line((text), (line)));            \
        } while (0)

static void test_escape(void)
{
        static const struct {
                const char *in, *out;
        } table[] = {
                { "vm1", "vm1" },     { "", "" },          { "a\"b", "a\\\"b" },
                { "a\\b", "a\\\\b" }, { "a\nb", "a\\nb" }, { "\\\"\n", "\\\\\\\"\\n" },
                { "ü-ok", "ü-ok" },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                g_autofree char *s = mc_metrics_escape_label(table[i].in);
                g_assert_cmpstr(s, ==, table[i].out);
        }
        g_autofree char *null = mc_metrics_escape_label(NULL);
        g_assert_cmpstr(null, ==, "");
}

static void test_guest_series(void)
{
        McMetricsCounters c = {};
        g_autofree char *t = render_sample(&c);
        const char *l1 = "domain=\"vm1\",uuid=\"6695eb01-f6a4-8304-79aa-97f2502e1901\"";

        assert_line(t, "# TYPE memcoord_guest_actual_bytes gauge");
        g_autofree char *actual = g_strdup_printf("memcoord_guest_actual_bytes{%s} 1073741824", l1);
        g_autofree char *target = g_strdup_printf("memcoord_guest_target_bytes{%s} 1019215872", l1);
        g_autofree char *usable = g_strdup_printf("memcoord_guest_usable_bytes{%s} 629145600", l1);
        g_autofree char *min = g_strdup_printf("memcoord_guest_min_bytes{%s} 268435456", l1);
        g_autofree char *age = g_strdup_printf("memcoord_guest_stats_age_seconds{%s} 1.500000", l1);
        g_autofree char *managed = g_strdup_printf("memcoord_guest_status{%s,status=\"managed\"} 1", l1);
        g_autofree char *stale = g_strdup_printf("memcoord_guest_status{%s,status=\"stale\"} 0", l1);
        assert_line(t, actual);
        assert_line(t, target);
        assert_line(t, usable);
        assert_line(t, min);
        assert_line(t, age);
        assert_line(t, managed);
        assert_line(t, stale);

        /* The second guest's name, escaped; no stats age for a guest without stats. */
        const char *l2 = "domain=\"we\\\"ird\\\\na\\nme\",uuid=\"6695eb01-f6a4-8304-79aa-97f2502e1905\"";
        g_autofree char *weight = g_strdup_printf("memcoord_guest_weight{%s} 200", l2);
        g_autofree char *excl = g_strdup_printf("memcoord_guest_excluded{%s} 1", l2);
        g_autofree char *nob = g_strdup_printf("memcoord_guest_status{%s,status=\"no-balloon\"} 1", l2);
        assert_line(t, weight);
        assert_line(t, excl);
        assert_line(t, nob);
        g_assert_null(strstr(t, "memcoord_guest_stats_age_seconds{domain=\"we"));
        /* The raw newline of the name never reaches the output. */
        g_assert_null(strstr(t, "na\nme"));

        assert_line(t, "memcoord_guests{status=\"managed\"} 1");
        assert_line(t, "memcoord_guests{status=\"no-balloon\"} 1");
        assert_line(t, "memcoord_guests{status=\"stale\"} 0");
}

static void test_host_and_settings(void)
{
        McMetricsCounters c = {};
        g_autofree char *t = render_sample(&c);

        assert_line(t, "memcoord_build_info{version=\"0.1.0\",policy=\"adaptive\"} 1");
        assert_line(t, "memcoord_state{state=\"running\"} 1");
        assert_line(t, "memcoord_state{state=\"paused\"} 0");
        assert_line(t, "memcoord_interval_seconds 1.000000");
        assert_line(t, "memcoord_domain_threshold_bytes 104857600");
        assert_line(t, "memcoord_host_threshold_bytes 209715200");
        assert_line(t, "memcoord_host_budget_bytes 0");
        assert_line(t, "memcoord_host_memory_bytes 8589934592");
        assert_line(t, "memcoord_host_free_bytes 4294967296");
        assert_line(t, "memcoord_host_grantable_bytes 4085252096");
        assert_line(t, "memcoord_ticks_total 42");
        assert_line(t, "memcoord_last_tick_duration_seconds 0.001234");
}

static void test_counters(void)
{
        McMetricsCounters c = {};

        c.balloon_changes[MC_REASON_CLAIM] = 7;
        c.balloon_changes[MC_REASON_CRUNCH_GRANT] = 2;
        c.skipped[MC_GUEST_STALE] = 3;
        c.calls_bulk = 10;
        c.calls_per_domain = 30;
        c.calls_other = 4;
        c.connects = 3;
        c.set_failures = 1;
        g_autofree char *t = render_sample(&c);

        assert_line(t, "# TYPE memcoord_balloon_changes_total counter");
        assert_line(t, "memcoord_balloon_changes_total{reason=\"claim\"} 7");
        assert_line(t, "memcoord_balloon_changes_total{reason=\"crunch-grant\"} 2");
        assert_line(t, "memcoord_balloon_changes_total{reason=\"grant\"} 0");
        g_assert_null(strstr(t, "reason=\"none\""));
        assert_line(t, "memcoord_balloon_set_failures_total 1");
        assert_line(t, "memcoord_guest_skips_total{status=\"stale\"} 3");
        assert_line(t, "memcoord_guest_skips_total{status=\"excluded\"} 0");
        g_assert_null(strstr(t, "memcoord_guest_skips_total{status=\"managed\"}"));
        assert_line(t, "memcoord_libvirt_calls_total{kind=\"bulk\"} 10");
        assert_line(t, "memcoord_libvirt_calls_total{kind=\"per-domain\"} 30");
        assert_line(t, "memcoord_libvirt_calls_total{kind=\"other\"} 4");
        /* The first connection is not a reconnect. */
        assert_line(t, "memcoord_reconnects_total 2");
}

static void test_histogram(void)
{
        McMetricsCounters c = {};
        const uint64_t samples[] = { 50, 100, 101, 900, 30000, 5000000 };

        for (size_t i = 0; i < G_N_ELEMENTS(samples); i++)
                mc_metrics_observe_tick(&c, samples[i]);
        g_autofree char *t = render_sample(&c);

        assert_line(t, "# TYPE memcoord_tick_duration_seconds histogram");
        /* Upper bounds are inclusive: 100 us falls in le=0.0001. */
        assert_line(t, "memcoord_tick_duration_seconds_bucket{le=\"0.000100\"} 2");
        assert_line(t, "memcoord_tick_duration_seconds_bucket{le=\"0.000250\"} 3");
        assert_line(t, "memcoord_tick_duration_seconds_bucket{le=\"0.001000\"} 4");
        assert_line(t, "memcoord_tick_duration_seconds_bucket{le=\"0.025000\"} 4");
        assert_line(t, "memcoord_tick_duration_seconds_bucket{le=\"0.050000\"} 5");
        assert_line(t, "memcoord_tick_duration_seconds_bucket{le=\"1.000000\"} 5");
        assert_line(t, "memcoord_tick_duration_seconds_bucket{le=\"+Inf\"} 6");
        assert_line(t, "memcoord_tick_duration_seconds_count 6");
        assert_line(t, "memcoord_tick_duration_seconds_sum 5.031151");
}

/* Every line is a comment (HELP/TYPE) or "name{labels} value"; every family has its TYPE once,
 * before its samples; the text ends with a newline. */
static void test_shape(void)
{
        McMetricsCounters c = {};
        g_autofree char *t = render_sample(&c);
        g_auto(GStrv) lines = g_strsplit(t, "\n", -1);
        g_autoptr(GHashTable) typed = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        g_autoptr(GRegex) sample = g_regex_new(
                "^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\\n]|\\\\.)*\",?)*\\})? "
                "(-?[0-9.e+]+|\\+Inf)$",
                0, 0, NULL);

        g_assert_true(g_str_has_suffix(t, "\n"));
        for (size_t i = 0; lines[i] && lines[i + 1]; i++) {
                const char *l = lines[i];
                if (g_str_has_prefix(l, "# TYPE ")) {
                        g_auto(GStrv) w = g_strsplit(l + 7, " ", 2);
                        g_assert_false(g_hash_table_contains(typed, w[0]));
                        g_hash_table_add(typed, g_strdup(w[0]));
                        continue;
                }
                if (g_str_has_prefix(l, "# HELP "))
                        continue;
                g_autoptr(GMatchInfo) mi = NULL;
                if (!g_regex_match(sample, l, 0, &mi))
                        g_test_message("bad line: %s", l);
                g_assert_true(g_regex_match(sample, l, 0, NULL));
                g_autofree char *name = g_match_info_fetch(mi, 1);
                g_autofree char *family = g_strdup(name);
                for (const char *suffix = NULL, *const *s = (const char *const[]){ "_bucket", "_sum",
                                                                                   "_count", NULL };
                     *s; s++)
                        if (g_str_has_suffix(name, *s) && !g_hash_table_contains(typed, name)) {
                                suffix = *s;
                                family[strlen(name) - strlen(suffix)] = '\0';
                        }
                g_assert_true(g_hash_table_contains(typed, family));
        }
}

int main(int argc, char *argv[])
{
        g_test_init(&argc, &argv, NULL);
        g_test_set_nonfatal_assertions();

        g_test_add_func("/metrics/escape", test_escape);
        g_test_add_func("/metrics/guest-series", test_guest_series);
        g_test_add_func("/metrics/host-and-settings", test_host_and_settings);
        g_test_add_func("/metrics/counters", test_counters);
        g_test_add_func("/metrics/histogram", test_histogram);
        g_test_add_func("/metrics/shape", test_shape);

        return g_test_run();
}
