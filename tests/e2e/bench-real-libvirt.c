/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * libvirt's cost of one tick on real QEMU guests, measured in one run on the same guests:
 *
 *   bulk            one virConnectGetAllDomainStats(VIR_DOMAIN_STATS_BALLOON): the call the
 *                   daemon makes every tick
 *   per-guest-loop  one virDomainMemoryStats() per guest: what a daemon without the bulk call
 *                   would make
 *   tick            one whole mc_manager_tick() of a manager built the daemon's way (sd-event,
 *                   libvirt's events on it, config defaults, dry run: decisions made, no target
 *                   set), with the libvirt calls it made (the manager's own counters)
 *
 * The three are interleaved, rep by rep, so that the host's noise falls on all of them alike.
 * The guests are whatever runs on the URI; tests/e2e/bench-real.py boots 1, 3 and 6 idle tiny
 * guests and runs this once per count. Output: one table row per part, times in ms, tab-separated
 * after a '#' header, for bench-real.py to collect.
 *
 *   bench-real-libvirt [--uri qemu:///system] [--reps 30] [--warmup 3] [--expect N]
 */

#include <errno.h>
#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "hypervisor.h"
#include "libvirt-event.h"
#include "log.h"
#include "manager.h"

#define NSEC_PER_SEC UINT64_C(1000000000)

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virConnect, virConnectClose)

static char *opt_uri;
static int opt_reps = 30;
static int opt_warmup = 3;
static int opt_expect = -1;

static const GOptionEntry option_entries[] = {
        { "uri", 0, 0, G_OPTION_ARG_STRING, &opt_uri, "libvirt URI (qemu:///system)", "URI" },
        { "reps", 0, 0, G_OPTION_ARG_INT, &opt_reps, "measured repetitions of each part (30)", "N" },
        { "warmup", 0, 0, G_OPTION_ARG_INT, &opt_warmup, "unmeasured repetitions first, at least 1 (3)", "N" },
        { "expect", 0, 0, G_OPTION_ARG_INT, &opt_expect, "fail unless exactly N guests run", "N" },
        {}
};

static uint64_t now_nsec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

static const char *last_error(void)
{
        const char *msg = virGetLastErrorMessage();

        return msg ? msg : "unknown libvirt error";
}

/* Failures are reported here, once, where they matter. */
static void silence_libvirt(void *userdata, virErrorPtr error)
{
}

static void drain_events(sd_event *e)
{
        /* Lifecycle events, keepalives and deferred frees; bounded, as some sources recur. */
        for (int i = 0; i < 1000; i++)
                if (sd_event_run(e, 0) <= 0)
                        break;
}

static int compare_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y ? 1 : 0;
}

typedef struct Part {
        const char *name;
        GArray *ms; /* double */
        char calls[64];
        char note[160];
} Part;

static void print_part(const Part *p, int guests)
{
        double *v = (double *) (void *) p->ms->data;
        guint n = p->ms->len;

        if (n == 0)
                return;
        qsort(v, n, sizeof(double), compare_double);
        double median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        printf("%d\t%s\t%u\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%s\n", guests, p->name, n, v[0], median, v[n - 1],
               median / (guests > 0 ? guests : 1), p->calls, p->note);
}

int main(int argc, char **argv)
{
        g_autoptr(GOptionContext) ctx = g_option_context_new("- libvirt cost of a tick on real guests");
        g_autoptr(GError) error = NULL;
        g_autoptr(virConnect) conn = NULL;
        sd_event *e = NULL;
        virDomainPtr *doms = NULL;
        McManager *m = NULL;
        int n_doms = 0, ret = 1, r;

        g_option_context_add_main_entries(ctx, option_entries, NULL);
        if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
                fprintf(stderr, "bench-real-libvirt: %s\n", error->message);
                return 2;
        }
        if (!opt_uri)
                opt_uri = g_strdup("qemu:///system");
        if (opt_reps < 1 || opt_warmup < 1) {
                fprintf(stderr, "bench-real-libvirt: --reps and --warmup must be at least 1\n");
                return 2;
        }
        mc_log_set_max_level(LOG_WARNING); /* the dry run's decisions are not the point here */
        virSetErrorFunc(NULL, silence_libvirt);

        /* The daemon's order: libvirt's events on sd-event before the first connection. */
        r = sd_event_new(&e);
        if (r < 0) {
                fprintf(stderr, "bench-real-libvirt: sd_event_new: %s\n", g_strerror(-r));
                return 1;
        }
        r = mc_libvirt_event_register(e);
        if (r < 0) {
                fprintf(stderr, "bench-real-libvirt: mc_libvirt_event_register: %s\n", g_strerror(-r));
                return 1;
        }
        conn = virConnectOpen(opt_uri);
        if (!conn) {
                fprintf(stderr, "bench-real-libvirt: connecting to %s: %s\n", opt_uri, last_error());
                return 1;
        }
        n_doms = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n_doms < 0) {
                fprintf(stderr, "bench-real-libvirt: listing guests: %s\n", last_error());
                return 1;
        }
        if (opt_expect >= 0 && n_doms != opt_expect) {
                fprintf(stderr, "bench-real-libvirt: %d guests run on %s, expected %d\n", n_doms, opt_uri,
                        opt_expect);
                goto out;
        }

        McConfig *config = mc_config_new();
        g_free(config->uri);
        config->uri = g_strdup(opt_uri);
        config->dry_run = true;
        r = mc_manager_new(e, config, NULL, NULL, &m);
        if (r < 0) {
                fprintf(stderr, "bench-real-libvirt: mc_manager_new: %s\n", g_strerror(-r));
                goto out;
        }
        r = mc_manager_start(m);
        if (r < 0 || mc_manager_state(m) == MC_STATE_DISCONNECTED) {
                fprintf(stderr, "bench-real-libvirt: the manager could not connect to %s: %s\n", opt_uri,
                        mc_hypervisor_error(m->hypervisor));
                goto out;
        }
        /* The bench drives the ticks; the manager's own timer would add untimed ones. */
        (void) sd_event_source_set_enabled(m->tick_source, SD_EVENT_OFF);
        drain_events(e);

        Part bulk = { .name = "bulk", .ms = g_array_new(FALSE, FALSE, sizeof(double)) };
        Part loop = { .name = "per-guest-loop", .ms = g_array_new(FALSE, FALSE, sizeof(double)) };
        Part tick = { .name = "tick", .ms = g_array_new(FALSE, FALSE, sizeof(double)) };
        McCallCounters calls_min = {}, calls_max = {};
        int records = 0, with_balloon = 0;

        for (int rep = -opt_warmup; rep < opt_reps; rep++) {
                virDomainStatsRecordPtr *recs = NULL;
                virDomainMemoryStatStruct st[VIR_DOMAIN_MEMORY_STAT_NR];

                uint64_t t0 = now_nsec();
                int k = virConnectGetAllDomainStats(conn, VIR_DOMAIN_STATS_BALLOON, &recs,
                                                    VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE);
                double dt = (double) (now_nsec() - t0) / 1e6;
                if (k < 0) {
                        fprintf(stderr, "bench-real-libvirt: bulk stats: %s\n", last_error());
                        goto out;
                }
                if (rep == 0) {
                        records = k;
                        for (int i = 0; i < k; i++)
                                for (int p = 0; p < recs[i]->nparams; p++)
                                        if (g_str_equal(recs[i]->params[p].field, "balloon.unused")) {
                                                with_balloon++;
                                                break;
                                        }
                }
                virDomainStatsRecordListFree(recs);
                if (rep >= 0)
                        g_array_append_val(bulk.ms, dt);

                t0 = now_nsec();
                for (int i = 0; i < n_doms; i++)
                        if (virDomainMemoryStats(doms[i], st, VIR_DOMAIN_MEMORY_STAT_NR, 0) < 0) {
                                fprintf(stderr, "bench-real-libvirt: memory stats of %s: %s\n",
                                        virDomainGetName(doms[i]), last_error());
                                goto out;
                        }
                dt = (double) (now_nsec() - t0) / 1e6;
                if (rep >= 0)
                        g_array_append_val(loop.ms, dt);

                t0 = now_nsec();
                r = mc_manager_tick(m);
                dt = (double) (now_nsec() - t0) / 1e6;
                if (r < 0) {
                        fprintf(stderr, "bench-real-libvirt: tick: %s (%s)\n", g_strerror(-r),
                                mc_hypervisor_error(m->hypervisor));
                        goto out;
                }
                if (rep >= 0) {
                        g_array_append_val(tick.ms, dt);
                        McCallCounters c = (*mc_hypervisor_calls(m->hypervisor));
                        if (rep == 0)
                                calls_min = calls_max = c;
                        calls_min.bulk_calls = MIN(calls_min.bulk_calls, c.bulk_calls);
                        calls_min.per_domain_calls = MIN(calls_min.per_domain_calls, c.per_domain_calls);
                        calls_min.other_calls = MIN(calls_min.other_calls, c.other_calls);
                        calls_max.bulk_calls = MAX(calls_max.bulk_calls, c.bulk_calls);
                        calls_max.per_domain_calls = MAX(calls_max.per_domain_calls, c.per_domain_calls);
                        calls_max.other_calls = MAX(calls_max.other_calls, c.other_calls);
                }
                drain_events(e);
        }

        g_strlcpy(bulk.calls, "1", sizeof(bulk.calls));
        snprintf(bulk.note, sizeof(bulk.note), "virConnectGetAllDomainStats(BALLOON): %d records, %d with balloon",
                 records, with_balloon);
        snprintf(loop.calls, sizeof(loop.calls), "%d", n_doms);
        snprintf(loop.note, sizeof(loop.note), "virDomainMemoryStats x %d", n_doms);
        if (calls_min.bulk_calls == calls_max.bulk_calls && calls_min.per_domain_calls == calls_max.per_domain_calls &&
            calls_min.other_calls == calls_max.other_calls)
                snprintf(tick.calls, sizeof(tick.calls), "%u+%u+%u", calls_min.bulk_calls,
                         calls_min.per_domain_calls, calls_min.other_calls);
        else
                snprintf(tick.calls, sizeof(tick.calls), "%u-%u+%u-%u+%u-%u", calls_min.bulk_calls,
                         calls_max.bulk_calls, calls_min.per_domain_calls, calls_max.per_domain_calls,
                         calls_min.other_calls, calls_max.other_calls);
        snprintf(tick.note, sizeof(tick.note),
                 "mc_manager_tick(), dry run; calls = bulk + per-domain + other; %u guests seen",
                 g_hash_table_size(m->guests));

        printf("#guests\tpart\truns\tmin_ms\tmedian_ms\tmax_ms\tper_guest_ms\tcalls\tnote\n");
        print_part(&bulk, n_doms);
        print_part(&loop, n_doms);
        print_part(&tick, n_doms);
        g_array_unref(bulk.ms);
        g_array_unref(loop.ms);
        g_array_unref(tick.ms);
        ret = 0;
out:
        m = mc_manager_free(m);
        if (e)
                drain_events(e);
        for (int i = 0; i < n_doms; i++)
                virDomainFree(doms[i]);
        free(doms);
        virConnectClose(g_steal_pointer(&conn));
        mc_libvirt_event_unregister();
        sd_event_unref(e);
        return ret;
}
