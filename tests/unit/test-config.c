/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

/* By path: the build root has a generated config.h too. */
#include "daemon/config.h"
#include "memcoord/memcoord.h"

#define MIB(x) ((uint64_t) (x) * UINT64_C(1024))
#define GIB(x) ((uint64_t) (x) * UINT64_C(1024) * UINT64_C(1024))
#define ORIGIN "/etc/memcoord/test.conf"

static const char good_file[] =
        "# memcoord test configuration\n"
        "\n"
        "[Coordinator]\n"
        "IntervalSec=2.5\n"
        "DomainThreshold=150M\n"
        "HostThreshold = 1G\n"
        "HostBudget=16G\n"
        "DefaultMin=512MiB\n"
        "DeadBand=2M\n"
        "ClaimFraction=0.25\n"
        "GrantFactor=3\n"
        "DryRun=true\n"
        "URI=qemu+ssh://root@vmhost/system\n"
        "\n"
        "[Domain web]\n"
        "Min=1G\n"
        "Max=4G\n"
        "Weight=300\n"
        "Exclude=false\n"
        "\n"
        "# a batch guest the coordinator leaves alone\n"
        "[Domain batch]\n"
        "Min=none\n"
        "Max=none\n"
        "Weight=1\n"
        "Exclude=yes\n";

static void assert_domain(const McConfig *c, const char *name, uint64_t min_kib, uint64_t max_kib, unsigned weight,
                          bool excluded)
{
        const McDomainConfig *d = mc_config_get_domain(c, name);

        g_test_message("domain %s", name);
        g_assert_nonnull(d);
        if (!d)
                return;
        g_assert_cmpstr(d->name, ==, name);
        g_assert_cmpuint(d->min_kib, ==, min_kib);
        g_assert_cmpuint(d->max_kib, ==, max_kib);
        g_assert_cmpuint(d->weight, ==, weight);
        g_assert_cmpint(d->excluded, ==, excluded);
}

static void test_defaults(void)
{
        g_autoptr(McConfig) c = mc_config_new();

        g_assert_cmpuint(c->interval_usec, ==, MC_USEC_PER_SEC);
        g_assert_cmpstr(c->uri, ==, MC_DEFAULT_URI);
        g_assert_false(c->dry_run);
        g_assert_cmpuint(c->policy.domain_threshold_kib, ==, MIB(100));
        g_assert_cmpuint(c->policy.host_threshold_kib, ==, MIB(200));
        g_assert_cmpuint(c->policy.host_budget_kib, ==, 0);
        g_assert_cmpuint(c->policy.default_min_kib, ==, MIB(256));
        g_assert_cmpuint(c->policy.dead_band_kib, ==, MIB(1));
        g_assert_cmpfloat(c->policy.claim_fraction, ==, 0.10);
        g_assert_cmpfloat(c->policy.grant_factor, ==, 2.0);
        g_assert_cmpuint(g_hash_table_size(c->domains), ==, 0);
        g_assert_null(mc_config_get_domain(c, "web"));
        g_assert_null(mc_config_get_domain(c, NULL));
        g_assert_null(mc_policy_settings_check(&c->policy));

        /* Loading an empty file changes nothing. */
        g_autoptr(GError) e = NULL;
        g_assert_true(mc_config_load_data(c, "", ORIGIN, &e));
        g_assert_no_error(e);
        g_assert_cmpuint(c->policy.domain_threshold_kib, ==, MIB(100));
        g_assert_cmpstr(c->uri, ==, MC_DEFAULT_URI);
}

static void test_good_file(void)
{
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(GError) e = NULL;

        g_assert_true(mc_config_load_data(c, good_file, ORIGIN, &e));
        g_assert_no_error(e);

        g_assert_cmpuint(c->interval_usec, ==, UINT64_C(2500000));
        g_assert_cmpuint(c->policy.domain_threshold_kib, ==, MIB(150));
        g_assert_cmpuint(c->policy.host_threshold_kib, ==, GIB(1));
        g_assert_cmpuint(c->policy.host_budget_kib, ==, GIB(16));
        g_assert_cmpuint(c->policy.default_min_kib, ==, MIB(512));
        g_assert_cmpuint(c->policy.dead_band_kib, ==, MIB(2));
        g_assert_cmpfloat(c->policy.claim_fraction, ==, 0.25);
        g_assert_cmpfloat(c->policy.grant_factor, ==, 3.0);
        g_assert_true(c->dry_run);
        g_assert_cmpstr(c->uri, ==, "qemu+ssh://root@vmhost/system");

        g_assert_cmpuint(g_hash_table_size(c->domains), ==, 2);
        assert_domain(c, "web", GIB(1), GIB(4), 300, false);
        assert_domain(c, "batch", 0, 0, 1, true);
        g_assert_null(mc_config_get_domain(c, "db"));
}

typedef struct {
        const char *text;
        uint64_t kib;
} SizeValue;

/* Every size key takes the same spellings; plain numbers are bytes. */
static void test_size_spellings(void)
{
        static const SizeValue table[] = {
                { "157286400", MIB(150) }, { "150M", MIB(150) },   { "150MiB", MIB(150) },
                { "0.5G", MIB(512) },      { "1.5G", MIB(1536) },  { "2 GB", GIB(2) },
                { "1024k", MIB(1) },       { "1048576", MIB(1) },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                g_autoptr(McConfig) c = mc_config_new();
                g_autoptr(GError) e = NULL;
                g_autofree char *data = g_strdup_printf("[Coordinator]\nHostThreshold=%s\nHostBudget=%s\n"
                                                        "[Domain a]\nMin=%s\nMax=%s\n",
                                                        table[i].text, table[i].text, table[i].text, table[i].text);

                g_test_message("%s", table[i].text);
                g_assert_true(mc_config_load_data(c, data, ORIGIN, &e));
                g_assert_no_error(e);
                g_assert_cmpuint(c->policy.host_threshold_kib, ==, table[i].kib);
                g_assert_cmpuint(c->policy.host_budget_kib, ==, table[i].kib);
                assert_domain(c, "a", table[i].kib, table[i].kib, 0, false);
        }
}

static void test_booleans(void)
{
        static const struct {
                const char *text;
                bool value;
        } table[] = {
                { "true", true }, { "yes", true }, { "1", true }, { "false", false }, { "no", false }, { "0", false },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                g_autoptr(McConfig) c = mc_config_new();
                g_autoptr(GError) e = NULL;
                g_autofree char *data = g_strdup_printf("[Coordinator]\nDryRun=%s\n[Domain a]\nExclude=%s\n",
                                                        table[i].text, table[i].text);

                c->dry_run = !table[i].value;
                g_assert_true(mc_config_load_data(c, data, ORIGIN, &e));
                g_assert_no_error(e);
                g_assert_cmpint(c->dry_run, ==, table[i].value);
                assert_domain(c, "a", 0, 0, 0, table[i].value);
        }
}

typedef struct {
        const char *name;
        const char *data;
        unsigned line;
        const char *needle1; /* the key or section named in the message */
        const char *needle2; /* something else the message must say, or NULL */
} BadFile;

static const BadFile bad_files[] = {
        { "unknown key",
          "[Coordinator]\n"
          "DomainThreshold=100M\n"
          "# spelled wrong:\n"
          "HostTreshold=300M\n",
          4, "HostTreshold", "unknown key" },
        { "unknown key in a domain",
          "[Coordinator]\n"
          "DomainThreshold=100M\n"
          "\n"
          "[Domain web]\n"
          "Min=1G\n"
          "Maximum=4G\n",
          6, "Maximum", "unknown key" },
        { "unknown section",
          "[Coordinator]\n"
          "DomainThreshold=100M\n"
          "\n"
          "[Coordinater]\n"
          "HostThreshold=300M\n",
          4, "Coordinater", "unknown section" },
        { "domain section without a name",
          "[Coordinator]\n"
          "DryRun=false\n"
          "[Domain ]\n"
          "Min=1G\n",
          3, "Domain", NULL },
        { "bad size",
          "[Coordinator]\n"
          "IntervalSec=1\n"
          "DomainThreshold=100M\n"
          "HostThreshold=lots\n",
          4, "HostThreshold", "lots" },
        { "bad size with an unknown suffix",
          "[Coordinator]\n"
          "DefaultMin=256X\n",
          2, "DefaultMin", "256X" },
        { "negative size",
          "[Coordinator]\n"
          "\n"
          "DefaultMin=-256M\n",
          3, "DefaultMin", "-256M" },
        { "negative domain size",
          "[Domain web]\n"
          "Weight=100\n"
          "Max=-1G\n",
          3, "Max", "-1G" },
        { "none where a size is required",
          "[Coordinator]\n"
          "DomainThreshold=none\n",
          2, "DomainThreshold", "none" },
        { "bad boolean",
          "[Coordinator]\n"
          "DomainThreshold=100M\n"
          "HostThreshold=200M\n"
          "DryRun=maybe\n",
          4, "DryRun", "maybe" },
        { "bad boolean in a domain, spaces around =",
          "[Domain web]\n"
          "Min=1G\n"
          "Exclude = perhaps\n",
          3, "Exclude", "perhaps" },
        { "ClaimFraction above 1",
          "[Coordinator]\n"
          "GrantFactor=2\n"
          "ClaimFraction=1.5\n",
          3, "ClaimFraction", "1.5" },
        { "ClaimFraction zero",
          "[Coordinator]\n"
          "ClaimFraction=0\n",
          2, "ClaimFraction", NULL },
        { "ClaimFraction negative",
          "[Coordinator]\n"
          "ClaimFraction=-0.1\n",
          2, "ClaimFraction", NULL },
        { "ClaimFraction not a number",
          "[Coordinator]\n"
          "ClaimFraction=10%\n",
          2, "ClaimFraction", "10%" },
        { "GrantFactor below 1",
          "[Coordinator]\n"
          "GrantFactor=0.5\n",
          2, "GrantFactor", NULL },
        { "IntervalSec too short",
          "[Coordinator]\n"
          "DryRun=no\n"
          "IntervalSec=0.01\n",
          3, "IntervalSec", NULL },
        { "IntervalSec too long",
          "[Coordinator]\n"
          "IntervalSec=3601\n",
          2, "IntervalSec", NULL },
        { "empty URI",
          "[Coordinator]\n"
          "URI=\n",
          2, "URI", NULL },
        { "Weight not whole",
          "[Domain web]\n"
          "Weight=1.5\n",
          2, "Weight", "whole" },
        { "Weight above the maximum",
          "[Domain web]\n"
          "Weight=10001\n",
          2, "Weight", NULL },
        { "Min larger than Max",
          "[Coordinator]\n"
          "DomainThreshold=100M\n"
          "\n"
          "[Domain web]\n"
          "Max=1G\n"
          "Min=2G\n",
          6, "Min", "Max" },
        { "the same key name in two domains: the right one is reported",
          "[Domain a]\n"
          "Min=1G\n"
          "[Domain b]\n"
          "Weight=5\n"
          "Min=1Q\n",
          5, "Min", "1Q" },
        { "dead band not below the threshold (reported at the section)",
          "[Coordinator]\n"
          "DomainThreshold=100M\n"
          "DeadBand=100M\n",
          1, "dead band", NULL },
        { "syntax error",
          "[Coordinator]\n"
          "DomainThreshold=100M\n"
          "this line is not a key\n"
          "HostThreshold=200M\n",
          3, "this line is not a key", NULL },
        { "syntax error: unterminated section",
          "# comment\n"
          "[Coordinator\n"
          "DomainThreshold=100M\n",
          2, "Coordinator", NULL },
        { "key before any section",
          "\n"
          "DomainThreshold=100M\n"
          "[Coordinator]\n",
          2, "group", NULL },
};

static void snapshot_equal(const McConfig *a, const McConfig *b)
{
        g_assert_cmpmem(&a->policy, sizeof(a->policy), &b->policy, sizeof(b->policy));
        g_assert_cmpuint(a->interval_usec, ==, b->interval_usec);
        g_assert_cmpint(a->dry_run, ==, b->dry_run);
        g_assert_cmpstr(a->uri, ==, b->uri);
        g_assert_cmpuint(g_hash_table_size(a->domains), ==, g_hash_table_size(b->domains));

        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, a->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                const McDomainConfig *d = v;
                assert_domain(b, d->name, d->min_kib, d->max_kib, d->weight, d->excluded);
        }
}

static void test_bad_file(gconstpointer data)
{
        const BadFile *t = data;
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(McConfig) before = mc_config_new();
        g_autoptr(GError) e = NULL;
        g_autofree char *prefix = g_strdup_printf("%s:%u: ", ORIGIN, t->line);

        /* Start from a loaded config, so "unchanged" is not just the defaults. */
        g_assert_true(mc_config_load_data(c, good_file, ORIGIN, NULL));
        g_assert_true(mc_config_load_data(before, good_file, ORIGIN, NULL));

        g_assert_false(mc_config_load_data(c, t->data, ORIGIN, &e));
        g_assert_nonnull(e);
        if (!e)
                return;
        g_test_message("%s: %s", t->name, e->message);
        g_assert_true(g_str_has_prefix(e->message, prefix));
        g_assert_nonnull(strstr(e->message, t->needle1));
        if (t->needle2)
                g_assert_nonnull(strstr(e->message, t->needle2));

        snapshot_equal(before, c);
}

/* A file that sets many things and then fails changes none of them. */
static void test_failed_load_leaves_config(void)
{
        static const char partly_good[] =
                "[Domain newguest]\n"
                "Min=2G\n"
                "[Domain web]\n"
                "Weight=5\n"
                "Exclude=true\n"
                "[Coordinator]\n"
                "IntervalSec=9\n"
                "DomainThreshold=300M\n"
                "HostBudget=none\n"
                "DryRun=false\n"
                "URI=test:///default\n"
                "ClaimFraction=2\n";
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(McConfig) before = mc_config_new();
        g_autoptr(GError) e = NULL;

        g_assert_true(mc_config_load_data(c, good_file, ORIGIN, NULL));
        g_assert_true(mc_config_load_data(before, good_file, ORIGIN, NULL));

        g_assert_false(mc_config_load_data(c, partly_good, "state", &e));
        g_assert_error(e, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE);
        if (!e)
                return;
        g_assert_true(g_str_has_prefix(e->message, "state:12: "));
        snapshot_equal(before, c);
        g_assert_null(mc_config_get_domain(c, "newguest"));
        assert_domain(c, "web", GIB(1), GIB(4), 300, false);
}

/* A second file is applied on top of the first: what it does not mention stays. */
static void test_load_on_top(void)
{
        static const char state[] =
                "[Coordinator]\n"
                "DomainThreshold=120M\n"
                "HostBudget=none\n"
                "[Domain web]\n"
                "Weight=50\n"
                "[Domain db]\n"
                "Max=8G\n";
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(GError) e = NULL;

        g_assert_true(mc_config_load_data(c, good_file, ORIGIN, NULL));
        g_assert_true(mc_config_load_data(c, state, "state", &e));
        g_assert_no_error(e);

        g_assert_cmpuint(c->policy.domain_threshold_kib, ==, MIB(120));
        g_assert_cmpuint(c->policy.host_budget_kib, ==, 0);
        g_assert_cmpuint(c->policy.host_threshold_kib, ==, GIB(1));
        g_assert_cmpuint(c->policy.dead_band_kib, ==, MIB(2));
        g_assert_cmpuint(c->interval_usec, ==, UINT64_C(2500000));
        g_assert_true(c->dry_run);
        g_assert_cmpstr(c->uri, ==, "qemu+ssh://root@vmhost/system");
        g_assert_cmpuint(g_hash_table_size(c->domains), ==, 3);
        assert_domain(c, "web", GIB(1), GIB(4), 50, false);
        assert_domain(c, "batch", 0, 0, 1, true);
        assert_domain(c, "db", 0, GIB(8), 0, false);

        /* Min > Max is checked against what the domain already has. */
        g_autoptr(GError) e2 = NULL;
        g_assert_false(mc_config_load_data(c, "[Domain web]\nMin=5G\n", "state", &e2));
        if (!e2)
                return;
        g_assert_true(g_str_has_prefix(e2->message, "state:2: "));
        assert_domain(c, "web", GIB(1), GIB(4), 50, false);
}

static void test_missing_file(void)
{
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(McConfig) before = mc_config_new();
        g_autoptr(GError) e = NULL;
        g_autofree char *dir = g_dir_make_tmp("memcoord-test-XXXXXX", NULL);
        g_autofree char *path = NULL;

        g_assert_nonnull(dir);
        if (!dir)
                return;
        path = g_build_filename(dir, "does-not-exist.conf", NULL);
        g_assert_false(mc_config_load_file(c, path, &e));
        g_assert_error(e, G_FILE_ERROR, G_FILE_ERROR_NOENT);
        snapshot_equal(before, c);
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

static void test_load_file(void)
{
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(GError) e = NULL;
        g_autofree char *dir = g_dir_make_tmp("memcoord-test-XXXXXX", NULL);
        g_autofree char *good = NULL, *bad = NULL;

        g_assert_nonnull(dir);
        if (!dir)
                return;
        good = g_build_filename(dir, "good.conf", NULL);
        bad = g_build_filename(dir, "bad.conf", NULL);
        g_assert_true(g_file_set_contents(good, good_file, -1, NULL));
        g_assert_true(g_file_set_contents(bad, "[Coordinator]\n\nDryRun=sometimes\n", -1, NULL));

        g_assert_true(mc_config_load_file(c, good, &e));
        g_assert_no_error(e);
        g_assert_cmpuint(c->policy.domain_threshold_kib, ==, MIB(150));

        g_assert_false(mc_config_load_file(c, bad, &e));
        if (!e)
                return;
        g_autofree char *prefix = g_strconcat(bad, ":3: ", NULL);
        g_assert_true(g_str_has_prefix(e->message, prefix));
        g_assert_nonnull(strstr(e->message, "DryRun"));
        g_assert_true(c->dry_run);

        g_assert_cmpint(g_unlink(good), ==, 0);
        g_assert_cmpint(g_unlink(bad), ==, 0);
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/*
 * Saves c's state to a fresh directory and loads it into a new config (first given
 * base_config, if not NULL); returns the new config.
 */
static McConfig *save_and_reload(const McConfig *c, const char *base_config)
{
        g_autoptr(GError) e = NULL;
        g_autofree char *dir = g_dir_make_tmp("memcoord-test-XXXXXX", &e);
        g_autofree char *path = NULL;
        McConfig *back = mc_config_new();

        g_assert_no_error(e);
        g_assert_nonnull(dir);
        if (!dir)
                return back;
        path = g_build_filename(dir, "state", NULL);
        g_assert_true(mc_config_save_state(c, path, &e));
        g_assert_no_error(e);

        /* Written atomically: the file and nothing else. */
        g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
        g_assert_nonnull(d);
        if (d) {
                g_assert_cmpstr(g_dir_read_name(d), ==, "state");
                g_assert_null(g_dir_read_name(d));
        }

        if (base_config)
                g_assert_true(mc_config_load_data(back, base_config, ORIGIN, NULL));
        if (!mc_config_load_state_file(back, path, &e)) {
                g_autofree char *text = NULL;
                (void) g_file_get_contents(path, &text, NULL, NULL);
                g_test_message("state file:\n%s", text);
        }
        g_assert_no_error(e);

        g_assert_cmpint(g_unlink(path), ==, 0);
        g_assert_cmpint(g_rmdir(dir), ==, 0);
        return back;
}

static void test_save_state_round_trip(void)
{
        g_autoptr(McConfig) c = mc_config_new();

        g_assert_true(mc_config_load_data(c, good_file, ORIGIN, NULL));
        /* What the bus can change at run time, as the manager's setters mark it. */
        c->interval_usec = UINT64_C(1500000);
        c->policy.domain_threshold_kib = MIB(123);
        c->policy.host_threshold_kib = MIB(777) + 1;
        c->policy.host_budget_kib = GIB(12) + 3;
        c->runtime |= MC_KEY_INTERVAL | MC_KEY_DOMAIN_THRESHOLD | MC_KEY_HOST_THRESHOLD | MC_KEY_HOST_BUDGET;
        McDomainConfig *d = mc_config_ensure_domain(c, "db");
        d->min_kib = MIB(300);
        d->max_kib = GIB(2);
        d->weight = 250;
        d->excluded = false;
        d->runtime |= MC_DOMAIN_KEY_LIMITS;
        d = mc_config_ensure_domain(c, "idle");
        d->excluded = true;
        d->runtime |= MC_DOMAIN_KEY_EXCLUDE;
        d = mc_config_ensure_domain(c, "web");
        g_assert_cmpuint(d->weight, ==, 300);
        d->weight = 120;
        d->runtime |= MC_DOMAIN_KEY_WEIGHT;

        /* Onto the defaults: the run-time settings, and nothing of the config file. */
        g_autoptr(McConfig) back = save_and_reload(c, NULL);
        g_assert_cmpuint(back->interval_usec, ==, UINT64_C(1500000));
        g_assert_cmpuint(back->policy.domain_threshold_kib, ==, MIB(123));
        g_assert_cmpuint(back->policy.host_threshold_kib, ==, MIB(777) + 1);
        g_assert_cmpuint(back->policy.host_budget_kib, ==, GIB(12) + 3);
        g_assert_cmpuint(back->policy.dead_band_kib, ==, MIB(1));
        g_assert_false(back->dry_run);
        g_assert_cmpstr(back->uri, ==, MC_DEFAULT_URI);
        g_assert_cmpuint(g_hash_table_size(back->domains), ==, 3);
        assert_domain(back, "web", 0, 0, 120, false);
        assert_domain(back, "db", MIB(300), GIB(2), 250, false);
        assert_domain(back, "idle", 0, 0, 0, true);
        g_assert_null(mc_config_get_domain(back, "batch"));
        g_assert_cmpuint(back->runtime, ==, c->runtime);

        /* Onto the config file it came from: the same run-time settings again. */
        g_autoptr(McConfig) back2 = save_and_reload(c, good_file);
        g_assert_cmpuint(back2->interval_usec, ==, c->interval_usec);
        g_assert_cmpuint(back2->policy.domain_threshold_kib, ==, MIB(123));
        g_assert_cmpuint(back2->policy.host_threshold_kib, ==, MIB(777) + 1);
        g_assert_cmpuint(back2->policy.host_budget_kib, ==, GIB(12) + 3);
        g_assert_cmpuint(back2->policy.dead_band_kib, ==, MIB(2));
        g_assert_cmpstr(back2->uri, ==, "qemu+ssh://root@vmhost/system");
        assert_domain(back2, "db", MIB(300), GIB(2), 250, false);
        assert_domain(back2, "idle", 0, 0, 0, true);
        assert_domain(back2, "batch", 0, 0, 1, true);
        assert_domain(back2, "web", GIB(1), GIB(4), 120, false);
}

/*
 * One set-interval at run time, then the admin edits the config file's other keys: the edit
 * takes effect at the next reload or start, the interval set at run time stays. Before the
 * state file held only what changed at run time, it snapshotted every key and the edit was
 * ignored forever.
 */
static void test_save_state_only_runtime_keys(void)
{
        g_autoptr(McConfig) c = mc_config_new();

        g_assert_true(mc_config_load_data(c, good_file, ORIGIN, NULL));
        c->interval_usec = UINT64_C(4000000);
        c->runtime |= MC_KEY_INTERVAL;

        static const char edited[] = "[Coordinator]\n"
                                     "IntervalSec=2.5\n"
                                     "DomainThreshold=200M\n"
                                     "HostThreshold=2G\n"
                                     "HostBudget=20G\n"
                                     "[Domain web]\n"
                                     "Weight=700\n";
        g_autoptr(McConfig) back = save_and_reload(c, edited);
        g_assert_cmpuint(back->interval_usec, ==, UINT64_C(4000000));
        g_assert_cmpuint(back->policy.domain_threshold_kib, ==, MIB(200));
        g_assert_cmpuint(back->policy.host_threshold_kib, ==, GIB(2));
        g_assert_cmpuint(back->policy.host_budget_kib, ==, GIB(20));
        assert_domain(back, "web", 0, 0, 700, false);
        g_assert_cmpuint(back->runtime, ==, MC_KEY_INTERVAL);
}

/* Saving fails, and leaves the old file, when what it would write does not load again
 * (SetHostBudget(UINT64_MAX) once saved a size the parser rejects, which stopped the next
 * start). */
static void test_save_state_refuses_what_would_not_load(void)
{
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(GError) e = NULL;
        g_autofree char *dir = g_dir_make_tmp("memcoord-test-XXXXXX", NULL);
        g_autofree char *path = g_build_filename(dir, "state", NULL);
        g_autofree char *text = NULL;

        c->policy.host_threshold_kib = MIB(300);
        c->runtime |= MC_KEY_HOST_THRESHOLD;
        g_assert_true(mc_config_save_state(c, path, &e));
        g_assert_no_error(e);

        c->policy.host_budget_kib = UINT64_MAX / 1024;
        c->runtime |= MC_KEY_HOST_BUDGET;
        g_assert_false(mc_config_save_state(c, path, &e));
        g_assert_nonnull(e);
        if (e)
                g_test_message("%s", e->message);
        g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
        g_assert_nonnull(strstr(text, "HostThreshold=307200K"));
        g_assert_null(strstr(text, "HostBudget"));
        g_assert_cmpint(g_unlink(path), ==, 0);
        g_assert_cmpint(g_rmdir(dir), ==, 0);
}

/* The state file takes only the run-time keys; Paused only the state file. */
static void test_state_keys(void)
{
        static const char *const not_in_state[] = {
                "[Coordinator]\nDeadBand=2M\n",      "[Coordinator]\nDefaultMin=1G\n",
                "[Coordinator]\nClaimFraction=0.2\n", "[Coordinator]\nGrantFactor=2\n",
                "[Coordinator]\nDryRun=true\n",       "[Coordinator]\nURI=test:///default\n",
                "[Coordinator]\nPolicy=seed\n",
        };

        for (size_t i = 0; i < G_N_ELEMENTS(not_in_state); i++) {
                g_autoptr(McConfig) c = mc_config_new();
                g_autoptr(GError) e = NULL;

                g_assert_false(mc_config_load_state_data(c, not_in_state[i], "state", &e));
                g_assert_nonnull(e);
                g_assert_true(mc_config_load_data(c, not_in_state[i], ORIGIN, NULL));
        }

        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(GError) e = NULL;
        g_assert_false(mc_config_load_data(c, "[Coordinator]\nPaused=true\n", ORIGIN, &e));
        g_assert_nonnull(e);
        g_assert_false(c->paused);
        g_assert_true(mc_config_load_state_data(c, "[Coordinator]\nPaused=true\n", "state", NULL));
        g_assert_true(c->paused);
        g_assert_cmpuint(c->runtime, ==, MC_KEY_PAUSED);
}

/* Pause survives a restart: it is kept in the state file. */
static void test_save_state_paused(void)
{
        g_autoptr(McConfig) c = mc_config_new();

        c->paused = true;
        c->runtime |= MC_KEY_PAUSED;
        g_autoptr(McConfig) back = save_and_reload(c, good_file);
        g_assert_true(back->paused);
        g_assert_cmpuint(back->policy.domain_threshold_kib, ==, MIB(150));

        c->paused = false;
        g_autoptr(McConfig) back2 = save_and_reload(c, NULL);
        g_assert_false(back2->paused);
}

/*
 * Any name libvirt accepts is saved and read back: tabs, brackets, '=', '#', '%', line
 * breaks, spaces at either end, bidi controls and bytes that are not UTF-8. GKeyFile takes no
 * brackets or control characters in a group name; before they were escaped such a guest's
 * settings were silently not saved while the bus answered success.
 */
static void test_save_state_any_name(void)
{
        static const char *const names[] = {
                "vm\tx", "a]b", "[x]", "k=v", "#hash", "50%", "%41", "line\nbreak", "cr\rlf", " lead",
                "trail ", "\u202eevil", "caf\xc3\xa9", "bad\xff", "%", "%0", "%00", "a\\b",
        };
        g_autoptr(McConfig) c = mc_config_new();

        for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
                McDomainConfig *d = mc_config_ensure_domain(c, names[i]);
                d->weight = (unsigned) (i + 1);
                d->excluded = i % 2;
                d->runtime = MC_DOMAIN_KEY_WEIGHT | MC_DOMAIN_KEY_EXCLUDE;
        }
        g_autoptr(McConfig) back = save_and_reload(c, NULL);
        g_assert_cmpuint(g_hash_table_size(back->domains), ==, G_N_ELEMENTS(names));
        for (size_t i = 0; i < G_N_ELEMENTS(names); i++)
                assert_domain(back, names[i], 0, 0, (unsigned) (i + 1), i % 2);

        g_autofree char *group = mc_config_domain_group("vm\tx]%");
        g_assert_cmpstr(group, ==, "Domain vm%09x%5D%25");
        g_autofree char *name = mc_config_group_to_name(group);
        g_assert_cmpstr(name, ==, "vm\tx]%");
}

static void test_overrides(void)
{
        g_autoptr(McConfig) c = mc_config_new();
        McConfigOverrides none = {}, o = { .uri = (char *) "test:///default", .interval_usec = 10 * MC_USEC_PER_SEC,
                                          .dry_run = true };

        g_assert_true(mc_config_load_data(c, good_file, ORIGIN, NULL));
        c->dry_run = false;
        mc_config_apply_overrides(c, &none);
        g_assert_cmpuint(c->interval_usec, ==, UINT64_C(2500000));
        g_assert_cmpstr(c->uri, ==, "qemu+ssh://root@vmhost/system");
        g_assert_false(c->dry_run);
        mc_config_apply_overrides(c, &o);
        g_assert_cmpuint(c->interval_usec, ==, 10 * MC_USEC_PER_SEC);
        g_assert_cmpstr(c->uri, ==, "test:///default");
        g_assert_true(c->dry_run);

        McConfigOverrides copy = {};
        mc_config_overrides_copy(&copy, &o);
        g_assert_cmpstr(copy.uri, ==, o.uri);
        g_assert_true(copy.uri != o.uri);
        mc_config_overrides_clear(&copy);
        g_assert_null(copy.uri);
}

static void test_parse_interval(void)
{
        static const struct {
                const char *s;
                uint64_t usec; /* 0 = refused */
        } cases[] = {
                { "1", MC_USEC_PER_SEC },
                { "0.1", MC_INTERVAL_MIN_USEC },
                { "3600", MC_INTERVAL_MAX_USEC },
                { ".5", 500000 },
                { "2.5", 2500000 },
                { "0.333333", 333333 },
                { "0", 0 },
                { "0.09", 0 },
                { "3600.1", 0 },
                { "-1", 0 },
                { "+1", 0 },
                { " 1", 0 },
                { "1 ", 0 },
                { "abc", 0 },
                { "", 0 },
                { "inf", 0 },
                { "nan", 0 },
                { "0x10", 0 },
                /* Out of range as a double: must be refused, not cast (undefined behaviour). */
                { "1e30", 0 },
                { "1e400", 0 },
                { "99999999999999999999999", 0 },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                uint64_t usec = 42;
                const char *why = NULL;
                int r = mc_config_parse_interval(cases[i].s, &usec, &why);

                g_test_message("'%s'", cases[i].s);
                if (cases[i].usec) {
                        g_assert_cmpint(r, ==, 0);
                        g_assert_cmpuint(usec, ==, cases[i].usec);
                } else {
                        g_assert_cmpint(r, ==, -EINVAL);
                        g_assert_nonnull(why);
                        g_assert_cmpuint(usec, ==, 42);
                }
        }
}

/*
 * A weight set back to the default (0) at run time must survive a restart: the state is
 * loaded over a config file that sets Weight=300, and the saved state has to override it, as
 * it does for Min and Max set back to 0.
 */
static void test_save_state_weight_back_to_default(void)
{
        g_autoptr(McConfig) c = mc_config_new();

        g_assert_true(mc_config_load_data(c, good_file, ORIGIN, NULL));
        McDomainConfig *d = mc_config_ensure_domain(c, "web");
        d->min_kib = 0;
        d->max_kib = 0;
        d->weight = 0;
        d->runtime |= MC_DOMAIN_KEY_LIMITS;

        g_autoptr(McConfig) back = save_and_reload(c, good_file);
        assert_domain(back, "web", 0, 0, 0, false);
}

/* No host budget set at run time is saved as "none" and comes back as none over a file that
 * set one. */
static void test_save_state_no_budget(void)
{
        g_autoptr(McConfig) c = mc_config_new();

        c->policy.host_budget_kib = 0;
        c->runtime |= MC_KEY_HOST_BUDGET;
        g_autoptr(McConfig) back = save_and_reload(c, good_file);
        g_assert_cmpuint(back->policy.host_budget_kib, ==, 0);
        /* Only the budget was set at run time: the rest is the config file's. */
        g_assert_cmpuint(back->policy.domain_threshold_kib, ==, MIB(150));
        g_assert_cmpuint(back->policy.host_threshold_kib, ==, GIB(1));
        g_assert_cmpuint(back->interval_usec, ==, UINT64_C(2500000));
}

/* The interval is written as decimal seconds; it must come back to the microsecond. */
static void test_save_state_intervals(void)
{
        static const uint64_t intervals[] = {
                MC_INTERVAL_MIN_USEC, UINT64_C(250000), UINT64_C(333333), UINT64_C(1000001), MC_INTERVAL_MAX_USEC,
        };

        for (size_t i = 0; i < G_N_ELEMENTS(intervals); i++) {
                g_autoptr(McConfig) c = mc_config_new();

                c->interval_usec = intervals[i];
                c->runtime |= MC_KEY_INTERVAL;
                g_autoptr(McConfig) back = save_and_reload(c, NULL);
                g_assert_cmpuint(back->interval_usec, ==, intervals[i]);
        }
}

/*
 * libvirt allows almost any character in a guest name, spaces included ("my vm" is a valid
 * name): whatever the daemon saves for such a guest it must be able to load again.
 */
static void test_save_state_domain_name_with_space(void)
{
        g_autoptr(McConfig) c = mc_config_new();
        McDomainConfig *d = mc_config_ensure_domain(c, "my vm");

        d->weight = 200;
        d->excluded = true;
        d->runtime |= MC_DOMAIN_KEY_WEIGHT | MC_DOMAIN_KEY_EXCLUDE;
        g_autoptr(McConfig) back = save_and_reload(c, NULL);
        assert_domain(back, "my vm", 0, 0, 200, true);
}

static void test_interval_check(void)
{
        g_assert_null(mc_config_interval_check(MC_INTERVAL_MIN_USEC));
        g_assert_null(mc_config_interval_check(MC_USEC_PER_SEC));
        g_assert_null(mc_config_interval_check(MC_INTERVAL_MAX_USEC));
        g_assert_nonnull(mc_config_interval_check(MC_INTERVAL_MIN_USEC - 1));
        g_assert_nonnull(mc_config_interval_check(0));
        g_assert_nonnull(mc_config_interval_check(MC_INTERVAL_MAX_USEC + 1));
}

static void test_ensure_domain(void)
{
        g_autoptr(McConfig) c = mc_config_new();
        McDomainConfig *a = mc_config_ensure_domain(c, "a");

        g_assert_nonnull(a);
        g_assert_cmpstr(a->name, ==, "a");
        g_assert_cmpuint(a->min_kib, ==, 0);
        g_assert_cmpuint(a->weight, ==, 0);
        g_assert_false(a->excluded);
        a->weight = 7;
        g_assert_true(mc_config_ensure_domain(c, "a") == a);
        g_assert_true(mc_config_get_domain(c, "a") == a);
        g_assert_cmpuint(g_hash_table_size(c->domains), ==, 1);
        g_assert_true(mc_config_ensure_domain(c, "b") != a);
        g_assert_cmpuint(g_hash_table_size(c->domains), ==, 2);
}

int main(int argc, char *argv[])
{
        g_test_init(&argc, &argv, NULL);
        /* Report every failing case, not just the first one. */
        g_test_set_nonfatal_assertions();

        g_test_add_func("/config/defaults", test_defaults);
        g_test_add_func("/config/good-file", test_good_file);
        g_test_add_func("/config/size-spellings", test_size_spellings);
        g_test_add_func("/config/booleans", test_booleans);
        for (size_t i = 0; i < G_N_ELEMENTS(bad_files); i++) {
                g_autofree char *slug = g_strdup(bad_files[i].name);
                for (char *q = slug; *q; q++)
                        if (!g_ascii_isalnum(*q))
                                *q = '-';
                g_autofree char *path = g_strdup_printf("/config/bad/%02zu-%s", i, slug);
                g_test_add_data_func(path, &bad_files[i], test_bad_file);
        }
        g_test_add_func("/config/failed-load-leaves-config", test_failed_load_leaves_config);
        g_test_add_func("/config/load-on-top", test_load_on_top);
        g_test_add_func("/config/missing-file", test_missing_file);
        g_test_add_func("/config/load-file", test_load_file);
        g_test_add_func("/config/save-state/round-trip", test_save_state_round_trip);
        g_test_add_func("/config/save-state/no-budget", test_save_state_no_budget);
        g_test_add_func("/config/save-state/intervals", test_save_state_intervals);
        g_test_add_func("/config/save-state/weight-back-to-default", test_save_state_weight_back_to_default);
        g_test_add_func("/config/save-state/domain-name-with-space", test_save_state_domain_name_with_space);
        g_test_add_func("/config/save-state/only-runtime-keys", test_save_state_only_runtime_keys);
        g_test_add_func("/config/save-state/refuses-what-would-not-load",
                        test_save_state_refuses_what_would_not_load);
        g_test_add_func("/config/save-state/paused", test_save_state_paused);
        g_test_add_func("/config/save-state/any-name", test_save_state_any_name);
        g_test_add_func("/config/state-keys", test_state_keys);
        g_test_add_func("/config/overrides", test_overrides);
        g_test_add_func("/config/parse-interval", test_parse_interval);
        g_test_add_func("/config/interval-check", test_interval_check);
        g_test_add_func("/config/ensure-domain", test_ensure_domain);

        return g_test_run();
}
