/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "guest.h"

#include <stdlib.h>
#include <string.h>

/*
 * A target whose balloon has covered less than STUCK_PROGRESS of the way after STUCK_AFTER is
 * stuck: a balloon lands in 0.2-1.6 s here and libvirt shows it ~1 s later, so by 4 s a
 * working one is there. Such a guest is left alone for STUCK_HOLD and not asked again.
 */
#define STUCK_AFTER_USEC (4 * UINT64_C(1000000))
#define STUCK_PROGRESS 0.25
#define STUCK_HOLD_USEC (30 * UINT64_C(1000000))

/* Weight of the newest sample in the smoothed rate: a rise is believed at once for the most
 * part (a ramp is seen within one or two samples), a fall over ~3 samples. */
#define RATE_ALPHA_UP 0.8
#define RATE_ALPHA_DOWN 0.35
/* The peak rate decays by this share per second: a cyclic load is remembered for ~30 s. */
#define PEAK_DECAY_PER_SEC 0.03

/* How long the most a guest used lately is remembered (the policy's hold on a cyclic load). */
#define PEAK_USED_USEC (30 * UINT64_C(1000000))
/* A use this close to the high reaches it again: a tooth of a sawtooth whose workload gets
 * 248 of its 250 MiB one time and 249 the next. */
#define PEAK_USED_BAND_KIB (16 * UINT64_C(1024))

/* libvirt's actual shows a balloon change ~1 s late, after a landing of up to 1.6 s. */
#define LAG_SETTLE_USEC (3 * UINT64_C(1000000))

/* Unused stands still for ~4 s after a balloon change on the guests here; an idle guest's may
 * stand still for good. Past this it is believed. */
#define FROZEN_MAX_SEC 6

/* Failed set-target calls back off 1 s, 2 s, 4 s ... up to this. */
#define RETRY_MAX_USEC (60 * UINT64_C(1000000))

static uint64_t diff_u64(uint64_t a, uint64_t b)
{
        return a > b ? a - b : b - a;
}

void mc_guest_init(McGuest *g, const char *uuid, const char *name)
{
        *g = (McGuest){
                .status = MC_GUEST_STALE,
                .meta = MC_GUEST_META_NONE,
                .stats_age_usec = UINT64_MAX,
        };
        if (uuid) {
                strncpy(g->uuid, uuid, sizeof(g->uuid) - 1);
                g->uuid[sizeof(g->uuid) - 1] = '\0';
        }
        g->name = strdup(name ? name : g->uuid);
}

void mc_guest_clear(McGuest *g)
{
        if (!g)
                return;
        free(g->name);
        g->name = NULL;
}

uint64_t mc_guest_target_kib(const McGuest *g)
{
        return g->last_target_kib > 0 ? g->last_target_kib : g->actual_kib;
}

/*
 * MemAvailable is MemFree plus reclaimable cache less the kernel's reserve (~65 MiB on the
 * guests here). The reserve is learned while the cache is small; from there on headroom is
 * MemAvailable plus that reserve, so that it moves smoothly from MemFree to MemAvailable as
 * free memory fills with cache, instead of dropping by the reserve. Up to that much cache (the
 * rootfs of a diskless guest is a few MiB) headroom is MemFree, exactly.
 */
#define RESERVE_LEARN_MAX_CACHE_KIB (16 * UINT64_C(1024))
#define RESERVE_LEARN_MIN_USABLE_KIB (8 * UINT64_C(1024))

uint64_t mc_guest_headroom_kib(const McGuest *g)
{
        if (g->usable_kib == 0 || g->disk_caches_kib <= RESERVE_LEARN_MAX_CACHE_KIB)
                return g->unused_kib;
        uint64_t usable = g->usable_kib + g->reserve_kib;
        return usable > g->unused_kib ? usable : g->unused_kib;
}

uint64_t mc_guest_wanted_usec(const McGuest *g)
{
        return g->last_grant_usec > g->cycle_high_usec ? g->last_grant_usec : g->cycle_high_usec;
}

bool mc_guest_use_fell(const McGuest *g)
{
        return g->has_sample && g->peak_used_kib > g->sample_used_kib + PEAK_USED_BAND_KIB;
}

static void learn_reserve(McGuest *g, const McReading *r)
{
        if (r->disk_caches_kib > RESERVE_LEARN_MAX_CACHE_KIB)
                return;
        if (r->usable_kib < RESERVE_LEARN_MIN_USABLE_KIB || r->usable_kib > r->unused_kib)
                return;
        g->reserve_kib = r->unused_kib - r->usable_kib;
}

McGuestLimits mc_guest_limits(uint64_t default_min_kib, const McGuest *g)
{
        McGuestLimits l = {
                .cap_kib = g->limit_max_kib > 0 && g->limit_max_kib < g->max_kib ? g->limit_max_kib
                                                                                 : g->max_kib,
                .weight = g->weight > 0 ? g->weight : MC_DEFAULT_WEIGHT,
        };
        uint64_t floor = g->min_kib > 0 ? g->min_kib : default_min_kib;

        l.floor_kib = floor < l.cap_kib ? floor : l.cap_kib;
        return l;
}

/*
 * What the guest uses, from one sample: its own MemTotal (available) less its headroom, where
 * MemTotal follows the balloon (it does without autodeflate), so that a balloon move between
 * two samples is not taken for demand. libvirt's `actual` lags the guest's figures by ~1 s and
 * is only the fallback: a guest with autodeflate keeps MemTotal at its maximum.
 */
static bool memtotal_follows_balloon(const McGuest *g, uint64_t band)
{
        return g->available_kib > 0 &&
               (g->actual_kib + 2 * band >= g->max_kib || 2 * g->available_kib < g->actual_kib + g->max_kib);
}

static uint64_t size_kib(const McGuest *g, uint64_t band)
{
        return memtotal_follows_balloon(g, band) ? g->available_kib : g->actual_kib;
}

static uint64_t used_kib(const McGuest *g, uint64_t band)
{
        /* Free memory going into page cache is no demand. MemAvailable counts only part of a
         * small cache (less min(cache / 2, the low watermark)), so where the guest reports its
         * caches, free + caches measures the rate; headroom itself stays MemAvailable's. */
        uint64_t headroom =
                g->disk_caches_kib > 0 ? g->unused_kib + g->disk_caches_kib : mc_guest_headroom_kib(g);
        uint64_t size = size_kib(g, band);

        return size > headroom ? size - headroom : 0;
}

/*
 * Folds a fresh sample into the demand estimate. The sample is frozen when the balloon moved
 * since the last trusted sample but unused did not: then the last trusted sample and its rate
 * stand. Rates come from the guest's stamps; libvirt's test driver has none that move, so
 * there the host's clock measures.
 */
static void fold_sample(McGuest *g, const McObserveContext *ctx)
{
        uint64_t headroom = mc_guest_headroom_kib(g);
        uint64_t used = used_kib(g, ctx->dead_band_kib);
        uint64_t size = size_kib(g, ctx->dead_band_kib);
        bool landing = false;

        /* libvirt's test driver reports figures that are a function of the balloon (unused =
         * current / 2): there is no demand to measure, and none is assumed. */
        if (!g->has_sample || ctx->synthetic) {
                g->has_sample = true;
                g->use_rate_kib_s = 0;
                g->peak_rate_kib_s = 0;
                goto keep;
        }
        if (!ctx->synthetic && g->last_update_seen == g->sample_stamp)
                return; /* the same sample again */
        if (g->unused_kib == g->sample_unused_kib &&
            diff_u64(g->actual_kib, g->sample_actual_kib) >= ctx->dead_band_kib &&
            g->last_update_seen - g->sample_stamp <= FROZEN_MAX_SEC) {
                g->frozen = true;
                return;
        }
        /* Where only libvirt's lagging actual tells the balloon's size (autodeflate), a sample
         * soon after our own change mixes the old size with the new headroom: not believed. */
        uint64_t last_change =
                g->last_grant_usec > g->last_claim_usec ? g->last_grant_usec : g->last_claim_usec;
        if (!memtotal_follows_balloon(g, ctx->dead_band_kib) && last_change > 0 &&
            ctx->now_mono_usec < last_change + LAG_SETTLE_USEC) {
                g->frozen = true;
                return;
        }

        /* While a grant lands, the guest's use (MemTotal less headroom) reads high: MemTotal
         * takes the pages before MemFree shows them all, and a sample after a run of frozen
         * ones catches up at once. On the real guests, a one-second sample in which MemTotal
         * grew showed 5-6 MiB more use than the workload took (median; 21-23 at p90, up to
         * 45), one in which it stood still 0 (2-6 at p90); a claim shows no such lag. Read as
         * demand, that is a rate up to 3x a 10 MiB/s workload's, and grants sized by it. Such
         * a sample is the guest's headroom (what is free is free) but not its rate: the rate
         * stands, and the first sample once MemTotal stands still measures it over the whole
         * move (tests/e2e/README.md, "A grant landing"). */
        landing = size >= g->sample_size_kib + ctx->dead_band_kib &&
                  g->last_update_seen - g->rate_stamp <= FROZEN_MAX_SEC;
        if (!landing) {
                double dt = (double) (g->last_update_seen - g->rate_stamp);
                if (dt <= 0)
                        return;
                double inst = ((double) used - (double) g->rate_used_kib) / dt;
                /* Quick to believe a rise, slower to forget it: under-granting is what kills. */
                double alpha = inst > g->use_rate_kib_s ? RATE_ALPHA_UP : RATE_ALPHA_DOWN;
                g->use_rate_kib_s = alpha * inst + (1 - alpha) * g->use_rate_kib_s;
                double decay = 1.0 - PEAK_DECAY_PER_SEC * dt;
                g->peak_rate_kib_s = g->peak_rate_kib_s * (decay > 0 ? decay : 0);
                if (g->use_rate_kib_s > g->peak_rate_kib_s)
                        g->peak_rate_kib_s = g->use_rate_kib_s;
        }
keep:
        /* The most it used lately: what it uses now once the last high is old; else a use
         * near the high (a cycle that comes back to about the same) renews it. Synthetic
         * figures follow the balloon: no use to follow. */
        if (ctx->synthetic) {
                g->peak_used_kib = 0;
                g->peak_size_kib = 0;
                g->peak_used_usec = 0;
        } else if (landing) {
                /* Its use reads high while the grant lands: no high from it. */
        } else if (ctx->now_mono_usec >= g->peak_used_usec + PEAK_USED_USEC) {
                g->peak_used_kib = used;
                g->peak_size_kib = used + headroom;
                g->peak_used_usec = ctx->now_mono_usec;
                g->fell_since_high = false;
        } else if (used + PEAK_USED_BAND_KIB >= g->peak_used_kib) {
                g->peak_used_kib = used > g->peak_used_kib ? used : g->peak_used_kib;
                g->peak_size_kib = used + headroom > g->peak_size_kib ? used + headroom : g->peak_size_kib;
                g->peak_used_usec = ctx->now_mono_usec;
                /* Back at a high after a fall, soon after we granted it memory or after it
                 * last came back: a cyclic load, whose next high wants that memory again
                 * (the policy's hold). Sitting at its high is no cycle: a workload held for
                 * minutes is given back at once when it ends. */
                uint64_t since = mc_guest_wanted_usec(g);
                if (g->fell_since_high && since > 0 && ctx->now_mono_usec < since + PEAK_USED_USEC)
                        g->cycle_high_usec = ctx->now_mono_usec;
                g->fell_since_high = false;
        } else {
                g->fell_since_high = true;
        }
        if (!landing) {
                g->rate_stamp = g->last_update_seen;
                g->rate_used_kib = used;
        }
        g->frozen = false;
        g->sample_stamp = g->last_update_seen;
        g->sample_mono_usec = ctx->now_mono_usec;
        g->sample_actual_kib = g->actual_kib;
        g->sample_unused_kib = g->unused_kib;
        g->sample_headroom_kib = headroom;
        g->sample_used_kib = used;
        g->sample_size_kib = size;
}

static void drop_target(McGuest *g)
{
        g->last_target_kib = 0;
        g->target_set_usec = 0;
        g->target_from_kib = 0;
}

/* Our last target: overtaken by the guest, reached, stuck, or given up. */
static unsigned follow_target(McGuest *g, const McObserveContext *ctx)
{
        uint64_t band = ctx->dead_band_kib, now = ctx->now_mono_usec;

        if (g->status != MC_GUEST_MANAGED) {
                /* A pending grant still counts as in flight whatever the status: only as long
                 * as it may still land. */
                if (g->last_target_kib > 0 && now - g->target_set_usec > ctx->give_up_usec) {
                        drop_target(g);
                        return MC_GUEST_TARGET_GIVEN_UP;
                }
                return 0;
        }

        /* The guest grew its balloon past our target, or with none of ours: autodeflate under
         * memory pressure. It is taken as it now is, not pushed back this tick. */
        if (g->has_prev && g->actual_kib > g->prev_actual_kib + band &&
            (g->last_target_kib == 0 || g->actual_kib > g->last_target_kib + band)) {
                g->moved_externally = true;
                g->last_grew_usec = now;
                drop_target(g);
                return MC_GUEST_MOVED_BY_GUEST;
        }
        if (g->last_target_kib == 0)
                return 0;
        if (diff_u64(g->actual_kib, g->last_target_kib) < band) {
                drop_target(g);
                return MC_GUEST_TARGET_LANDED;
        }

        uint64_t age = now - g->target_set_usec;
        uint64_t way = diff_u64(g->target_from_kib, g->last_target_kib);
        bool toward = g->last_target_kib > g->target_from_kib ? g->actual_kib > g->target_from_kib
                                                              : g->actual_kib < g->target_from_kib;
        uint64_t done = toward ? diff_u64(g->actual_kib, g->target_from_kib) : 0;
        if (age > STUCK_AFTER_USEC && way > 0 && (double) done < STUCK_PROGRESS * (double) way) {
                g->stuck_until_usec = now + STUCK_HOLD_USEC;
                g->status = MC_GUEST_STUCK;
                drop_target(g);
                return MC_GUEST_TARGET_GIVEN_UP;
        }
        if (age > ctx->give_up_usec) {
                drop_target(g);
                return MC_GUEST_TARGET_GIVEN_UP;
        }
        return 0;
}

static McGuestStatus status_of(const McGuest *g, const McReading *r, bool fresh, uint64_t now)
{
        if (r->busy)
                return MC_GUEST_BUSY;
        if (!r->has_balloon)
                return MC_GUEST_NO_BALLOON;
        if (g->excluded)
                return MC_GUEST_EXCLUDED;
        if (!fresh)
                return MC_GUEST_STALE;
        if (g->stuck_until_usec > now)
                return MC_GUEST_STUCK;
        return MC_GUEST_MANAGED;
}

unsigned mc_guest_observe(McGuest *g, const McReading *r, const McObserveContext *ctx)
{
        McGuestStatus old_status = g->status;
        uint64_t old_actual = g->actual_kib, old_unused = g->unused_kib, old_usable = g->usable_kib;
        unsigned changes = 0;
        bool fresh = false;

        if (r->name && (!g->name || strcmp(g->name, r->name) != 0)) {
                char *name = strdup(r->name);
                if (name) {
                        free(g->name);
                        g->name = name;
                        changes |= MC_GUEST_CHANGED_NAME;
                }
        }
        if (r->max_kib != g->max_kib) {
                g->max_kib = r->max_kib;
                changes |= MC_GUEST_CHANGED_MAX;
        }
        /* Read only when the guest is first seen and after a change: a reading without them
         * leaves the guest's as they are. */
        if (r->has_meta && memcmp(&g->meta, &r->meta, sizeof(g->meta)) != 0) {
                g->meta = r->meta;
                changes |= MC_GUEST_CHANGED_META;
        }
        g->moved_externally = false;

        if (r->busy) {
                /* Nothing read: the last figures stay, and age. */
                if (g->freshness.valid && g->stats_age_usec != UINT64_MAX)
                        g->stats_age_usec = ctx->now_mono_usec - g->freshness.changed_at_usec;
                g->has_prev = false;
        } else if (r->has_balloon) {
                McFreshnessInput in = {
                        .last_update = r->last_update,
                        .now_mono_usec = ctx->now_mono_usec,
                        .now_real_usec = ctx->now_real_usec,
                        .max_age_usec = ctx->max_age_usec,
                        .synthetic = ctx->synthetic,
                };
                fresh = mc_freshness_update(&g->freshness, &in, &g->stats_age_usec);
                g->has_prev = g->has_stats;
                g->prev_actual_kib = g->actual_kib;
                g->prev_unused_kib = g->unused_kib;
                g->actual_kib = r->actual_kib;
                g->unused_kib = r->unused_kib;
                g->available_kib = r->available_kib;
                g->usable_kib = r->usable_kib;
                g->disk_caches_kib = r->disk_caches_kib;
                g->last_update_seen = r->last_update;
                g->has_stats = true;
                learn_reserve(g, r);
        } else {
                g->freshness = (McFreshness){};
                g->stats_age_usec = UINT64_MAX;
                g->has_prev = false;
                g->has_stats = false;
                g->has_sample = false;
                if (r->actual_kib > 0)
                        g->actual_kib = r->actual_kib;
        }

        g->status = status_of(g, r, fresh, ctx->now_mono_usec);
        if (g->status == MC_GUEST_MANAGED || g->status == MC_GUEST_STUCK)
                fold_sample(g, ctx);
        changes |= follow_target(g, ctx);

        if (g->status != old_status)
                changes |= MC_GUEST_CHANGED_STATUS;
        if (g->actual_kib != old_actual || g->unused_kib != old_unused || g->usable_kib != old_usable)
                changes |= MC_GUEST_FIGURES;
        return changes;
}

unsigned mc_guest_set_excluded(McGuest *g, bool excluded)
{
        McGuestStatus old = g->status;

        g->excluded = excluded;
        if (excluded)
                g->status = MC_GUEST_EXCLUDED;
        /* Not included again until the next fresh reading says it is managed. A target in
         * flight stays: a grant still lands, and counts, until it does or is given up. */
        return g->status != old ? MC_GUEST_CHANGED_STATUS : 0;
}

void mc_guest_target_set(McGuest *g, uint64_t from_kib, uint64_t to_kib, McReason reason,
                         uint64_t now_mono_usec, uint64_t now_real_usec)
{
        g->last_target_kib = to_kib;
        g->target_from_kib = from_kib;
        g->target_set_usec = now_mono_usec;
        g->last_change_usec = now_real_usec;
        g->last_reason = reason;
        g->set_failures = 0;
        g->retry_after_usec = 0;
        if (to_kib > from_kib)
                g->last_grant_usec = now_mono_usec;
        else
                g->last_claim_usec = now_mono_usec;
}

void mc_guest_target_failed(McGuest *g, uint64_t now_mono_usec)
{
        uint64_t wait = UINT64_C(1000000) << (g->set_failures < 6 ? g->set_failures : 6);

        g->set_failures++;
        g->retry_after_usec = now_mono_usec + (wait < RETRY_MAX_USEC ? wait : RETRY_MAX_USEC);
}
