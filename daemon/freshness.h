/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Are a guest's balloon stats fresh? The guest stamps each sample with its own clock
 * (last_update, epoch seconds). The stamp is compared with itself, not with the host's clock:
 * stats are fresh while the stamp keeps advancing, stale once it has stood still longer than
 * max_age. A guest seen for the first time is fresh if its stamp is within max_age of the
 * host's clock. A driver whose stamps are synthetic (libvirt's test driver) is always fresh.
 */

#include <stdbool.h>
#include <stdint.h>

typedef struct McFreshness {
        bool valid;
        int64_t last_update;      /* the stamp last seen */
        uint64_t changed_at_usec; /* CLOCK_MONOTONIC when the stamp last changed */
} McFreshness;

typedef struct McFreshnessInput {
        int64_t last_update;    /* the guest's stamp, epoch seconds; <= 0 = none */
        uint64_t now_mono_usec; /* CLOCK_MONOTONIC now */
        uint64_t now_real_usec; /* CLOCK_REALTIME now */
        uint64_t max_age_usec;
        bool synthetic; /* the driver's stamps mean nothing */
} McFreshnessInput;

/* Updates f with this reading; returns whether the stats are fresh and their age. */
bool mc_freshness_update(McFreshness *f, const McFreshnessInput *in, uint64_t *ret_age_usec);

/* The staleness limit for a tick interval: 2 intervals, and never less than 3 s (the guest
 * samples once a second, stamped to the second). */
uint64_t mc_freshness_max_age(uint64_t interval_usec);
