/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The one guest model. A McReading is what the hypervisor reported for a guest at one
 * collect; a McGuest is everything memcoordd knows of it from tick to tick: identity, the
 * limits as configured, the last fresh readings, the history the policy needs and the target
 * in flight. mc_guest_observe() folds a reading into a guest; the policy (policy.h) decides
 * from guests. Both are pure: no I/O, no libvirt, no sd-bus, no clock of their own. Sizes
 * are KiB.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "freshness.h"

#define MC_UUID_STRLEN 37
#define MC_DEFAULT_WEIGHT 100U /* a guest's crunch weight unless set */

typedef enum McGuestStatus {
        MC_GUEST_MANAGED,    /* fresh balloon stats: the policy may move it */
        MC_GUEST_NO_BALLOON, /* no balloon driver or no stats at all */
        MC_GUEST_STALE,      /* stats stopped advancing */
        MC_GUEST_EXCLUDED,   /* the admin excluded it */
        MC_GUEST_BUSY,       /* a job holds the guest (migration, save, dump): not read this tick */
        MC_GUEST_STUCK,      /* its balloon does not follow our targets: left alone for a while */
        _MC_GUEST_STATUS_MAX,
} McGuestStatus;

typedef enum McReason {
        MC_REASON_NONE,
        MC_REASON_CLAIM,        /* idle guest gives back part of its unused memory */
        MC_REASON_GRANT,        /* needy guest gets memory from the host */
        MC_REASON_CRUNCH_CLAIM, /* host short: claim from every guest above the threshold */
        MC_REASON_CRUNCH_GRANT, /* host short: what is free is shared among the needy */
        MC_REASON_CLAMP,        /* actual outside the guest's [min, max]: brought back */
        _MC_REASON_MAX,
} McReason;

/*
 * Settings a guest carries in its own definition (libvirt: its domain XML), so they travel
 * with it from host to host: memcoord's <metadata> element and <memtune><min_guarantee>.
 * 0 / -1 = not set there.
 */
typedef struct McGuestMeta {
        uint64_t min_kib;
        uint64_t max_kib;
        unsigned weight;
        int excluded;               /* -1 = not set, 0 = no, 1 = yes */
        uint64_t min_guarantee_kib; /* <memtune><min_guarantee>: a floor when nothing else sets one */
} McGuestMeta;

#define MC_GUEST_META_NONE ((McGuestMeta){ .excluded = -1 })

/* One guest as the hypervisor reported it at one collect. */
typedef struct McReading {
        char uuid[MC_UUID_STRLEN];
        char *name;
        bool has_balloon; /* balloon stats present (driver loaded, stats period set) */
        bool busy;        /* a job holds the guest: its stats were not read */
        uint64_t actual_kib;
        uint64_t unused_kib;      /* MemFree */
        uint64_t available_kib;   /* MemTotal */
        uint64_t usable_kib;      /* MemAvailable; 0 = not reported */
        uint64_t disk_caches_kib; /* page cache the guest can drop; 0 = not reported */
        uint64_t max_kib;
        int64_t last_update; /* the guest's stamp of the sample, epoch seconds; 0 = none */
        /* The settings of its definition, read for this collect: when the guest is first seen
         * and after they changed. Without them the guest keeps the ones it has. */
        bool has_meta;
        McGuestMeta meta;
} McReading;

void mc_reading_clear(McReading *r);
void mc_readings_free(McReading *r, size_t n);

/* Effective limits: what the policy applies, "default" resolved. */
typedef struct McGuestLimits {
        uint64_t floor_kib; /* never released below */
        uint64_t cap_kib;   /* never granted above */
        unsigned weight;    /* share bias in a crunch, >= 1 */
} McGuestLimits;

typedef struct McGuest {
        /* Identity. name is owned (g_free). */
        char uuid[MC_UUID_STRLEN];
        char *name;
        McGuestStatus status;

        /* Limits as configured: 0 / false = the default (see mc_guest_limits()). */
        uint64_t min_kib;       /* admin floor; 0 = the settings' default floor */
        uint64_t limit_max_kib; /* admin cap; 0 = max_kib */
        unsigned weight;        /* crunch share bias; 0 = MC_DEFAULT_WEIGHT */
        bool excluded;
        McGuestMeta meta; /* from the guest's definition, as last read; folded into the above by
                           * the manager */

        /* The last readings: fresh ones when status is MC_GUEST_MANAGED. */
        bool has_stats;
        uint64_t actual_kib;
        uint64_t unused_kib;
        uint64_t available_kib;
        uint64_t usable_kib;
        uint64_t disk_caches_kib;
        uint64_t max_kib; /* the hypervisor's maximum for this guest */
        /* MemFree the guest keeps out of MemAvailable (its kernel's reserve), learned while it
         * has next to no page cache; 0 = not known yet. */
        uint64_t reserve_kib;
        uint64_t stats_age_usec; /* UINT64_MAX = no stats yet */
        McFreshness freshness;
        int64_t last_update_seen; /* the stamp of the last reading */
        uint64_t short_kib;       /* what it needed and did not get at the last tick */

        /* History the policy needs. */
        bool has_prev;            /* prev_unused_kib is valid */
        uint64_t prev_unused_kib; /* unused at the previous fresh reading */
        uint64_t prev_actual_kib;

        /*
         * Demand, from the last sample that can be trusted: what the guest uses (actual -
         * headroom) and how fast that grows. A sample whose unused stands still while the
         * balloon moved is frozen (the guest reports it so for ~4 s after each change) and
         * is not folded in: the last trusted one and its rate stand for it. One taken while a
         * grant lands (MemTotal grew) gives the headroom, not the rate: the rate is measured
         * from the last sample that was not (rate_stamp).
         */
        bool has_sample;
        int64_t sample_stamp;         /* the guest's stamp of that sample */
        uint64_t sample_mono_usec;    /* when it was folded in */
        uint64_t sample_actual_kib;   /* actual at that sample */
        uint64_t sample_unused_kib;   /* unused at that sample */
        uint64_t sample_headroom_kib; /* headroom at that sample: mc_guest_headroom_kib() */
        uint64_t sample_used_kib;     /* what the guest used at that sample */
        uint64_t sample_size_kib;     /* its size then: MemTotal where it follows the balloon, else actual */
        int64_t rate_stamp;           /* the sample the rate was last measured at (not a grant landing) */
        uint64_t rate_used_kib;       /* what the guest used then */
        double use_rate_kib_s;        /* smoothed growth of use, KiB/s; > 0 = consuming */
        double peak_rate_kib_s;       /* the highest rate lately, decaying */
        uint64_t peak_used_kib;       /* the most it used lately */
        uint64_t peak_used_usec;      /* monotonic time it last came near that (PEAK_USED_BAND) */
        uint64_t peak_size_kib;       /* the most use + headroom at those highs */
        bool fell_since_high;         /* its use fell below the last high since it was there */
        uint64_t cycle_high_usec;     /* monotonic time its use last came back to its high after
                                       * a fall, within PEAK_USED of our last grant or of the
                                       * previous such return (a cyclic load); 0 = none */
        bool frozen;                  /* the last reading was frozen */
        uint64_t last_grant_usec;     /* monotonic time of our last grant; 0 = never */
        uint64_t last_claim_usec;     /* monotonic time of our last claim; 0 = never */

        /* The target in flight. */
        uint64_t last_target_kib;  /* last target set and not yet reached; 0 = none */
        uint64_t target_set_usec;  /* monotonic time it was set */
        uint64_t target_from_kib;  /* actual when it was set */
        bool moved_externally;     /* this reading: the balloon grew past our target on its own */
        uint64_t last_grew_usec;   /* monotonic time it last did; 0 = never */
        uint64_t stuck_until_usec; /* not asked again before then: its balloon did not follow */
        uint64_t last_change_usec; /* realtime of our last change; 0 = never */
        McReason last_reason;
        unsigned set_failures;     /* consecutive failed set-target calls */
        uint64_t retry_after_usec; /* monotonic: no new target before then (backoff) */
} McGuest;

/* What mc_guest_observe() saw change. */
typedef enum McGuestChange {
        MC_GUEST_CHANGED_STATUS = 1u << 0, /* status */
        MC_GUEST_CHANGED_NAME = 1u << 1,
        MC_GUEST_CHANGED_MAX = 1u << 2,     /* the hypervisor's max */
        MC_GUEST_TARGET_LANDED = 1u << 3,   /* the balloon reached our target */
        MC_GUEST_TARGET_GIVEN_UP = 1u << 4, /* it did not in time, or stopped moving */
        MC_GUEST_MOVED_BY_GUEST = 1u << 5,  /* the balloon grew without us (autodeflate) */
        MC_GUEST_FIGURES = 1u << 6,         /* actual, unused, ... changed */
        MC_GUEST_CHANGED_LIMITS = 1u << 7,  /* min, max, weight or exclusion as configured */
        MC_GUEST_CHANGED_META = 1u << 8,    /* the settings of its definition */
} McGuestChange;

typedef struct McObserveContext {
        uint64_t now_mono_usec;
        uint64_t now_real_usec;
        uint64_t max_age_usec;  /* stats older than this are stale: mc_freshness_max_age() */
        uint64_t give_up_usec;  /* a target not reached in this long is given up */
        uint64_t dead_band_kib; /* closer than this to a target is "reached" */
        bool synthetic;         /* the driver's stamps mean nothing (libvirt's test driver) */
} McObserveContext;

/* Initialises a guest never seen before. */
void mc_guest_init(McGuest *g, const char *uuid, const char *name);
void mc_guest_clear(McGuest *g);

/*
 * Folds one reading into the guest: name and max, the settings of its definition when the
 * reading has them, freshness and status (excluded and busy included), the target in flight
 * (landed, given up, overtaken by the guest), the rate of demand. Returns a mask of
 * McGuestChange.
 */
unsigned mc_guest_observe(McGuest *g, const McReading *r, const McObserveContext *ctx);

/* A guest the admin (un)excluded between readings. Keeps a grant in flight counted. */
unsigned mc_guest_set_excluded(McGuest *g, bool excluded);

/* Records that target to_kib was set now (from_kib: what the guest held). */
void mc_guest_target_set(McGuest *g, uint64_t from_kib, uint64_t to_kib, McReason reason,
                         uint64_t now_mono_usec, uint64_t now_real_usec);
/* Records a failed set: backoff before the next try. */
void mc_guest_target_failed(McGuest *g, uint64_t now_mono_usec);

/* The pending target, or actual when none: what the bus shows as TargetBytes. */
uint64_t mc_guest_target_kib(const McGuest *g);

/* What the guest can use without trouble: MemFree, or where larger MemAvailable plus the
 * kernel's reserve (free memory that went into reclaimable page cache). */
uint64_t mc_guest_headroom_kib(const McGuest *g);
/* Whether its use is well below its high of the last 30 s: a workload that ended, or that
 * its kernel killed. */
bool mc_guest_use_fell(const McGuest *g);
/* When its size last answered demand: our last grant, or a cyclic load's return to its high
 * (cycle_high_usec), whichever came later; 0 = never. */
uint64_t mc_guest_wanted_usec(const McGuest *g);

/* The effective limits, "default" resolved: the one place that does. */
McGuestLimits mc_guest_limits(uint64_t default_min_kib, const McGuest *g);
