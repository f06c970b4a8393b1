/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "metrics.h"

#include <glib.h>
#include <inttypes.h>

#include "memcoord/memcoord.h"
#include "policy.h"

const uint64_t mc_metrics_tick_bounds_usec[MC_METRICS_TICK_BUCKETS] = {
        100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 1000000,
};

void mc_metrics_observe_tick(McMetricsCounters *c, uint64_t usec)
{
        size_t i = 0;

        while (i < MC_METRICS_TICK_BUCKETS && usec > mc_metrics_tick_bounds_usec[i])
                i++;
        c->tick_bucket[i]++;
        c->tick_observations++;
        c->tick_sum_usec += usec;
}

char *mc_metrics_escape_label(const char *value)
{
        GString *s = g_string_sized_new(32);

        for (const char *p = value ? value : ""; *p; p++) {
                if (*p == '\\')
                        g_string_append(s, "\\\\");
                else if (*p == '"')
                        g_string_append(s, "\\\"");
                else if (*p == '\n')
                        g_string_append(s, "\\n");
                else
                        g_string_append_c(s, *p);
        }
        return g_string_free(s, FALSE);
}

static void header(GString *out, const char *name, const char *type, const char *help)
{
        /* The help texts are ours: no backslash or newline to escape. */
        g_string_append_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Seconds from microseconds, exactly as far as a double goes. */
static void append_seconds(GString *out, uint64_t usec)
{
        g_string_append_printf(out, "%" PRIu64 ".%06" PRIu64, usec / 1000000, usec % 1000000);
}

static void simple(GString *out, const char *name, const char *type, const char *help, uint64_t value)
{
        header(out, name, type, help);
        g_string_append_printf(out, "%s %" PRIu64 "\n", name, value);
}

static void seconds(GString *out, const char *name, const char *help, uint64_t usec)
{
        header(out, name, "gauge", help);
        g_string_append_printf(out, "%s ", name);
        append_seconds(out, usec);
        g_string_append_c(out, '\n');
}

typedef uint64_t (*GuestValue)(const McMetricsGuest *g);

static uint64_t g_actual(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->actual_kib);
}
static uint64_t g_target(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->target_kib);
}
static uint64_t g_unused(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->unused_kib);
}
static uint64_t g_available(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->available_kib);
}
static uint64_t g_usable(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->usable_kib);
}
static uint64_t g_maximum(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->maximum_kib);
}
static uint64_t g_min(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->min_kib);
}
static uint64_t g_max(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->max_kib);
}
static uint64_t g_short(const McMetricsGuest *g)
{
        return mc_kib_to_bytes(g->short_kib);
}
static uint64_t g_weight(const McMetricsGuest *g)
{
        return g->weight;
}
static uint64_t g_excluded(const McMetricsGuest *g)
{
        return g->excluded;
}

static const struct {
        const char *name;
        const char *help;
        GuestValue value;
} guest_gauges[] = {
        { "memcoord_guest_actual_bytes", "Memory the guest's balloon holds now.", g_actual },
        { "memcoord_guest_target_bytes", "Balloon target in flight, or actual when none.", g_target },
        { "memcoord_guest_unused_bytes", "Memory the guest reports free (MemFree).", g_unused },
        { "memcoord_guest_available_bytes", "Memory the guest sees (MemTotal).", g_available },
        { "memcoord_guest_usable_bytes",
          "Memory the guest can use without swapping (MemAvailable); 0 = not reported.", g_usable },
        { "memcoord_guest_maximum_bytes", "The hypervisor's maximum memory for the guest.", g_maximum },
        { "memcoord_guest_min_bytes", "Effective floor: never released below.", g_min },
        { "memcoord_guest_max_bytes", "Effective cap: never granted above.", g_max },
        { "memcoord_guest_short_bytes", "What the guest needed and did not get at the last tick.", g_short },
        { "memcoord_guest_weight", "Share bias in a crunch (default 100).", g_weight },
        { "memcoord_guest_excluded", "1 if the admin excluded the guest.", g_excluded },
};

/* {domain="...",uuid="..."} for every guest, escaped once. */
static char **guest_labels(const McMetricsInput *in)
{
        char **labels = g_new0(char *, in->n_guests + 1);

        for (size_t i = 0; i < in->n_guests; i++) {
                g_autofree char *name = mc_metrics_escape_label(in->guests[i].name);
                g_autofree char *uuid = mc_metrics_escape_label(in->guests[i].uuid);
                labels[i] = g_strdup_printf("domain=\"%s\",uuid=\"%s\"", name, uuid);
        }
        return labels;
}

static void render_guests(GString *out, const McMetricsInput *in)
{
        g_auto(GStrv) labels = guest_labels(in);

        for (size_t k = 0; k < G_N_ELEMENTS(guest_gauges); k++) {
                header(out, guest_gauges[k].name, "gauge", guest_gauges[k].help);
                for (size_t i = 0; i < in->n_guests; i++)
                        g_string_append_printf(out, "%s{%s} %" PRIu64 "\n", guest_gauges[k].name, labels[i],
                                               guest_gauges[k].value(&in->guests[i]));
        }

        /* An enum as a state set: one series per status, 1 for the current one. */
        header(out, "memcoord_guest_status", "gauge", "1 for the guest's status, 0 for the others.");
        for (size_t i = 0; i < in->n_guests; i++)
                for (McGuestStatus s = 0; s < _MC_GUEST_STATUS_MAX; s++)
                        g_string_append_printf(out, "memcoord_guest_status{%s,status=\"%s\"} %d\n",
                                               labels[i], mc_guest_status_to_string(s),
                                               in->guests[i].status == s);

        /* A guest without stats has no age: no sample rather than a made-up one. */
        header(out, "memcoord_guest_stats_age_seconds", "gauge", "Age of the guest's last balloon stats.");
        for (size_t i = 0; i < in->n_guests; i++) {
                if (in->guests[i].stats_age_usec == UINT64_MAX)
                        continue;
                g_string_append_printf(out, "memcoord_guest_stats_age_seconds{%s} ", labels[i]);
                append_seconds(out, in->guests[i].stats_age_usec);
                g_string_append_c(out, '\n');
        }

        header(out, "memcoord_guests", "gauge", "Guests watched, by status.");
        for (McGuestStatus s = 0; s < _MC_GUEST_STATUS_MAX; s++) {
                unsigned n = 0;
                for (size_t i = 0; i < in->n_guests; i++)
                        n += in->guests[i].status == s;
                g_string_append_printf(out, "memcoord_guests{status=\"%s\"} %u\n",
                                       mc_guest_status_to_string(s), n);
        }
}

static void render_counters(GString *out, const McMetricsCounters *c)
{
        header(out, "memcoord_balloon_changes_total", "counter",
               "Balloon targets set, by reason (in dry run: decided and not applied).");
        for (McReason r = MC_REASON_NONE + 1; r < _MC_REASON_MAX; r++)
                g_string_append_printf(out, "memcoord_balloon_changes_total{reason=\"%s\"} %" PRIu64 "\n",
                                       mc_reason_to_string(r), c->balloon_changes[r]);
        simple(out, "memcoord_balloon_set_failures_total", "counter",
               "Balloon targets the hypervisor refused.", c->set_failures);

        header(out, "memcoord_guest_skips_total", "counter",
               "Guests left alone at a tick, by cause (their status then).");
        for (McGuestStatus s = 0; s < _MC_GUEST_STATUS_MAX; s++)
                if (s != MC_GUEST_MANAGED)
                        g_string_append_printf(out,
                                               "memcoord_guest_skips_total{status=\"%s\"} %" PRIu64 "\n",
                                               mc_guest_status_to_string(s), c->skipped[s]);

        header(out, "memcoord_libvirt_calls_total", "counter",
               "Hypervisor calls made by the ticks, by kind (bulk stats, per-guest stats, others).");
        g_string_append_printf(out,
                               "memcoord_libvirt_calls_total{kind=\"bulk\"} %" PRIu64 "\n"
                               "memcoord_libvirt_calls_total{kind=\"per-domain\"} %" PRIu64 "\n"
                               "memcoord_libvirt_calls_total{kind=\"other\"} %" PRIu64 "\n",
                               c->calls_bulk, c->calls_per_domain, c->calls_other);

        simple(out, "memcoord_reconnects_total", "counter",
               "Times the hypervisor connection came back after it was lost.",
               c->connects > 0 ? c->connects - 1 : 0);

        header(out, "memcoord_tick_duration_seconds", "histogram", "Wall time of a tick.");
        uint64_t cumulative = 0;
        for (size_t i = 0; i < MC_METRICS_TICK_BUCKETS; i++) {
                cumulative += c->tick_bucket[i];
                g_string_append(out, "memcoord_tick_duration_seconds_bucket{le=\"");
                append_seconds(out, mc_metrics_tick_bounds_usec[i]);
                g_string_append_printf(out, "\"} %" PRIu64 "\n", cumulative);
        }
        cumulative += c->tick_bucket[MC_METRICS_TICK_BUCKETS];
        g_string_append_printf(out, "memcoord_tick_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
                               cumulative);
        g_string_append(out, "memcoord_tick_duration_seconds_sum ");
        append_seconds(out, c->tick_sum_usec);
        g_string_append_printf(out, "\nmemcoord_tick_duration_seconds_count %" PRIu64 "\n",
                               c->tick_observations);
}

char *mc_metrics_render(const McMetricsInput *in)
{
        static const McMetricsCounters zero;
        GString *out = g_string_sized_new(4096 + in->n_guests * 1536);
        g_autofree char *version = mc_metrics_escape_label(in->version);
        g_autofree char *policy = mc_metrics_escape_label(in->policy);
        static const char *const states[] = { "running", "paused", "disconnected" };

        header(out, "memcoord_build_info", "gauge", "Always 1; the labels say the version and the policy.");
        g_string_append_printf(out, "memcoord_build_info{version=\"%s\",policy=\"%s\"} 1\n", version,
                               policy);

        header(out, "memcoord_state", "gauge", "1 for the coordinator's state, 0 for the others.");
        for (size_t i = 0; i < G_N_ELEMENTS(states); i++)
                g_string_append_printf(out, "memcoord_state{state=\"%s\"} %d\n", states[i],
                                       in->state && g_str_equal(in->state, states[i]));
        simple(out, "memcoord_dry_run", "gauge", "1 if balloon changes are decided but not applied.",
               in->dry_run);

        seconds(out, "memcoord_interval_seconds", "Time between two ticks.", in->interval_usec);
        simple(out, "memcoord_domain_threshold_bytes", "gauge",
               "Domain threshold T: a guest is needy below it.", mc_kib_to_bytes(in->domain_threshold_kib));
        simple(out, "memcoord_host_threshold_bytes", "gauge",
               "Host threshold H: nothing is granted below it.", mc_kib_to_bytes(in->host_threshold_kib));
        simple(out, "memcoord_host_budget_bytes", "gauge", "Cap on the sum of the guests' memory; 0 = none.",
               mc_kib_to_bytes(in->host_budget_kib));
        simple(out, "memcoord_host_memory_bytes", "gauge", "The host's memory.",
               mc_kib_to_bytes(in->host_total_kib));
        simple(out, "memcoord_host_free_bytes", "gauge", "What the host can give (its MemAvailable).",
               mc_kib_to_bytes(in->host_free_kib));
        simple(out, "memcoord_host_grantable_bytes", "gauge",
               "What the host could grant at the last tick (above H, within the budget).",
               mc_kib_to_bytes(in->host_available_kib));

        simple(out, "memcoord_ticks_total", "counter", "Ticks run.", in->ticks);
        seconds(out, "memcoord_last_tick_duration_seconds", "Wall time of the last tick.",
                in->last_tick_usec);
        render_counters(out, in->counters ? in->counters : &zero);
        render_guests(out, in);
        return g_string_free(out, FALSE);
}
