/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * memcoordd's state in the Prometheus text exposition format (version 0.0.4). The counters
 * are kept by the manager as the ticks run; mc_metrics_render() turns a plain snapshot of the
 * state plus those counters into text. No I/O, no libvirt, no sd-bus: what serves the text
 * (HTTP, a file for node_exporter) lives in metrics-export.c.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest.h"

/* Upper bounds of the tick duration histogram, in microseconds. A tick on a handful of guests
 * takes well under a millisecond in process and a few through libvirtd; past 1 s it holds
 * the loop longer than an interval. */
#define MC_METRICS_TICK_BUCKETS 12
extern const uint64_t mc_metrics_tick_bounds_usec[MC_METRICS_TICK_BUCKETS];

/* Counters since the daemon started. */
typedef struct McMetricsCounters {
        uint64_t balloon_changes[_MC_REASON_MAX]; /* by reason; in dry run, decided */
        uint64_t set_failures;                    /* set-target calls that failed */
        uint64_t skipped[_MC_GUEST_STATUS_MAX];   /* guests left alone at a tick, by status */
        uint64_t calls_bulk;                      /* libvirt calls, as the hypervisor counts them */
        uint64_t calls_per_domain;
        uint64_t calls_other;
        uint64_t connects;                                 /* times the connection came up */
        uint64_t tick_bucket[MC_METRICS_TICK_BUCKETS + 1]; /* per bucket (not cumulative); last: +Inf */
        uint64_t tick_observations;
        uint64_t tick_sum_usec;
} McMetricsCounters;

/* Counts one tick that took usec. */
void mc_metrics_observe_tick(McMetricsCounters *c, uint64_t usec);

/* One guest, as shown. Sizes in KiB. */
typedef struct McMetricsGuest {
        const char *name;
        const char *uuid;
        McGuestStatus status;
        uint64_t actual_kib;
        uint64_t target_kib;
        uint64_t unused_kib;
        uint64_t available_kib;
        uint64_t usable_kib;
        uint64_t maximum_kib; /* the hypervisor's maximum */
        uint64_t min_kib;     /* effective floor */
        uint64_t max_kib;     /* effective cap */
        unsigned weight;
        bool excluded;
        uint64_t stats_age_usec; /* UINT64_MAX = no stats yet */
        uint64_t short_kib;      /* what it needed and did not get at the last tick */
} McMetricsGuest;

typedef struct McMetricsInput {
        const char *version;
        const char *policy;
        const char *state; /* running, paused, disconnected */
        bool dry_run;
        uint64_t interval_usec;
        uint64_t domain_threshold_kib;
        uint64_t host_threshold_kib;
        uint64_t host_budget_kib; /* 0 = none */
        uint64_t host_total_kib;
        uint64_t host_free_kib;
        uint64_t host_available_kib; /* what the host could give at the last tick */
        uint64_t ticks;
        uint64_t last_tick_usec;
        const McMetricsCounters *counters;
        const McMetricsGuest *guests;
        size_t n_guests;
} McMetricsInput;

/* The exposition; free with g_free(). Never NULL. */
char *mc_metrics_render(const McMetricsInput *in);

/* A label value escaped as the format wants (\\, \", \n); free with g_free(). */
char *mc_metrics_escape_label(const char *value);

/* The Content-Type of the exposition. */
#define MC_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
