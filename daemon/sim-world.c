/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The simulator's host and guests: the model, schedules and the sub-step. See sim-world.h. */

#include "sim-world.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/*
 * The defaults are what the tiny real guests here showed (tests/e2e/README.md, "The guests,
 * as measured", and /work's DESIGN §6): change them in [Model] to recalibrate.
 */
const SimModel sim_model_defaults = {
        .kernel_base_mib = 92,
        .kernel_growth = 0.03,
        .reserve_mib = 65,
        .reclaim_free_mib = 65,
        .oom_free_mib = 47.5,
        .balloon_floor_free_mib = 48.5,
        .inflate_mib_s = 25,
        .deflate_mib_s = 500,
        .autodeflate_mib_s = 13,
        .touch_mib_s = 40,
        .actual_throttle_s = 1.0,
        .freeze_s = 3.0,
        .freeze_on_deflate = true,
        .freeze_on_inflate = false,
        .freeze_after_change = true,
        .stats_period_s = 1.0,
        .stats_phase_s = 0.5,
        .disk_read_mib_s = 44,
        .kernel_drift_mib = 25,
        .kernel_drift_s = 10,
};

#define P(k, t, f, lo, hi, u, d)                          \
        {                                                 \
                k, t, offsetof(SimModel, f), lo, hi, u, d \
        }
const SimParam sim_model_params[] = {
        P("KernelBaseMiB", SIM_PARAM_DOUBLE, kernel_base_mib, 0, 1e6, "MiB",
          "what the kernel and /init use at rest (actual - unused): 92 MiB (91-93)"),
        P("KernelGrowth", SIM_PARAM_DOUBLE, kernel_growth, 0, 1, "per MiB",
          "kernel use per MiB the workload holds (page tables, bookkeeping): +2.7-3.2 %, 600 MiB held "
          "-> actual - unused 709-711 MiB"),
        P("KernelDriftMiB", SIM_PARAM_DOUBLE, kernel_drift_mib, 0, 1e6, "MiB",
          "while the workload holds memory the kernel's use is this much higher, reached over "
          "KernelDriftSec, gone when it frees: under the daemon a holding guest used ~50 MiB more than U "
          "+ 3 % (scenario traces: 145 MiB beside 385 or 600 MiB held), alone only the 3 %"),
        P("KernelDriftSec", SIM_PARAM_DOUBLE, kernel_drift_s, 0.001, 1e6, "s",
          "... reached after holding this long"),
        P("ReserveMiB", SIM_PARAM_DOUBLE, reserve_mib, 0, 1e6, "MiB",
          "MemAvailable (usable) = MemFree + page cache - this (>= 0): unused - usable = 65 MiB measured"),
        P("ReclaimFreeMiB", SIM_PARAM_DOUBLE, reclaim_free_mib, 0, 1e6, "MiB",
          "page cache is reclaimed (and stops growing) to keep MemFree above this: the high watermark, "
          "65.0 MiB (kswapd holds MemFree between low 54 and high 65)"),
        P("OomFreeMiB", SIM_PARAM_DOUBLE, oom_free_mib, 0, 1e6, "MiB",
          "below this MemFree the workload is OOM-killed: 47.5 MiB at the kill (DMA32 min watermark 43.3 "
          "+ the DMA zone's 4.3)"),
        P("BalloonFloorFreeMiB", SIM_PARAM_DOUBLE, balloon_floor_free_mib, 0, 1e6, "MiB",
          "an inflating balloon stops at this MemFree (\"Out of puff\" at the min watermark: 48.7 MiB "
          "measured); it cannot take memory in use"),
        P("InflateMiBs", SIM_PARAM_DOUBLE, inflate_mib_s, 0.001, 1e6, "MiB/s",
          "balloon speed taking memory from the guest: 21-49 MiB/s idle, 13-146 growing, 10-85 full of "
          "cache (the guest's vCPU does the work); ~20 MiB/s in the scenario traces"),
        P("DeflateMiBs", SIM_PARAM_DOUBLE, deflate_mib_s, 0.001, 1e6, "MiB/s",
          "balloon speed giving memory to the guest: 270-1600 MiB/s (500 MiB in 0.3-1.1 s)"),
        P("AutodeflateMiBs", SIM_PARAM_DOUBLE, autodeflate_mib_s, 0.001, 1e6, "MiB/s",
          "how fast a guest with autodeflate deflates its own balloon at the OOM point; its workload "
          "waits for it: actual rose 433 -> 580 MiB in 11 s while the workload crawled at ~10 MiB/s"),
        P("TouchMiBs", SIM_PARAM_DOUBLE, touch_mib_s, 0.001, 1e6, "MiB/s",
          "how fast the workload can touch new memory: 25-58 MiB/s, median 40, into memory the host no "
          "longer backs (a jump takes time)"),
        P("ActualThrottleSec", SIM_PARAM_DOUBLE, actual_throttle_s, 0, 60, "s",
          "libvirt's balloon.current changes at most this often (QEMU throttles BALLOON_CHANGE to 1/s; "
          "0.1-1.0 s behind QEMU's balloon measured)"),
        P("FreezeSec", SIM_PARAM_DOUBLE, freeze_s, 0, 60, "s",
          "after a grant the guest's reported figures stand still this long while the stamp advances. "
          "The scenario traces show 5-8 s of identical samples, but the guests' free memory did not "
          "fall meanwhile as fast as their workloads grew; 3 s reproduces their outcomes best "
          "(tests/sim/calibrate.py); not seen on a guest alone"),
        P("FreezeOnDeflate", SIM_PARAM_BOOL, freeze_on_deflate, 0, 1, "",
          "the freeze follows a change that grows the guest (measured on grants)"),
        P("FreezeOnInflate", SIM_PARAM_BOOL, freeze_on_inflate, 0, 1, "",
          "the freeze follows a change that shrinks the guest (claims on idle guests landed at 2T "
          "without overshoot: off)"),
        P("FreezeAfterChange", SIM_PARAM_BOOL, freeze_after_change, 0, 1, "",
          "the frozen figures are the first sample after the change (true: given 40 MiB at 14.5 s, a "
          "guest read the same from 14.7 to 18.1 s), or the last one before it (false)"),
        P("StatsPeriodSec", SIM_PARAM_DOUBLE, stats_period_s, 0, 3600, "s",
          "the guest samples its balloon stats this often (<stats period='1'/>); 0 = off until the "
          "daemon enables it"),
        P("StatsPhaseSec", SIM_PARAM_DOUBLE, stats_phase_s, 0, 3600, "s",
          "the first sample comes this long after the guest starts (staggers guests' samples)"),
        P("DiskReadMiBs", SIM_PARAM_DOUBLE, disk_read_mib_s, 0.001, 1e6, "MiB/s",
          "how fast a cache step without SECS reads the disk: median 44 MiB/s (19-106) measured"),
};
#undef P
const size_t sim_model_n_params = G_N_ELEMENTS(sim_model_params);

const SimParam *sim_model_param(const char *key)
{
        for (size_t i = 0; i < sim_model_n_params; i++)
                if (g_ascii_strcasecmp(sim_model_params[i].key, key) == 0)
                        return &sim_model_params[i];
        return NULL;
}

double sim_model_get(const SimModel *m, const SimParam *p)
{
        const char *base = (const char *) m + p->offset;

        if (p->type == SIM_PARAM_BOOL)
                return *(const bool *) base ? 1 : 0;
        return *(const double *) base;
}

void sim_model_set(SimModel *m, const SimParam *p, double v)
{
        char *base = (char *) m + p->offset;

        if (p->type == SIM_PARAM_BOOL)
                *(bool *) base = v != 0;
        else
                *(double *) base = v;
}

const char *sim_call_to_string(SimCall c)
{
        static const char *const names[_SIM_CALL_MAX] = {
                [SIM_CALL_CONNECT] = "connect",
                [SIM_CALL_COLLECT] = "collect",
                [SIM_CALL_HOST_MEMORY] = "host_memory",
                [SIM_CALL_SET_TARGET] = "set_target",
                [SIM_CALL_ANY] = "any",
        };
        return c < _SIM_CALL_MAX ? names[c] : "?";
}

/* ---- schedules ---- */

static int parse_secs(const char *s, double *ret)
{
        char *end = NULL;
        double v;

        if (!g_ascii_isdigit(s[0]))
                return -EINVAL;
        errno = 0;
        v = g_ascii_strtod(s, &end);
        if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0 || v > 1e7)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* memdemand's SIZE: [+|-]DIGITS[M|G], MiB by default. */
static int parse_size(const char *s, double *ret, bool *relative)
{
        double sign = 1, mult = 1;
        char *end = NULL;
        double v;

        *relative = false;
        if (*s == '+' || *s == '-') {
                sign = *s == '-' ? -1 : 1;
                *relative = true;
                s++;
        }
        if (!g_ascii_isdigit(s[0]))
                return -EINVAL;
        errno = 0;
        v = g_ascii_strtod(s, &end);
        if (errno != 0 || !isfinite(v))
                return -EINVAL;
        if (*end == 'M' || *end == 'm')
                end++;
        else if (*end == 'G' || *end == 'g') {
                mult = 1024;
                end++;
        }
        if (*end != '\0' || v * mult > 1024.0 * 1024)
                return -EINVAL;
        *ret = sign * v * mult;
        return 0;
}

typedef struct Builder {
        GArray *steps;
        double t, cur;
        unsigned source;
} Builder;

static void add(Builder *b, SimStepKind kind, double secs, double to)
{
        SimStep st = {
                .kind = kind, .start_s = b->t, .secs = secs, .from_mib = b->cur, .source = b->source
        };

        st.to_mib = MAX(to, 0);
        g_array_append_val(b->steps, st);
        b->cur = st.to_mib;
        if (secs > 0)
                b->t += secs;
}

static void mark_cyclic(Builder *b, unsigned n, double period)
{
        for (unsigned i = b->steps->len - n; i < b->steps->len; i++) {
                g_array_index(b->steps, SimStep, i).cyclic = true;
                g_array_index(b->steps, SimStep, i).cycle_period_s = period;
        }
}

static double resolve(const Builder *b, double v, bool relative)
{
        return relative ? b->cur + v : v;
}

int sim_schedule_parse(const char *text, SimSchedule *ret, char **why)
{
        g_auto(GStrv) toks = g_strsplit(text ? text : "", ",", -1);
        g_autoptr(GArray) steps = g_array_new(FALSE, TRUE, sizeof(SimStep));
        Builder b = { .steps = steps };
        unsigned n = 0;

        *ret = (SimSchedule){};
        for (size_t i = 0; toks[i]; i++) {
                g_autofree char *tok = g_strstrip(g_strdup(toks[i]));
                g_auto(GStrv) f = NULL;
                unsigned nf;
                double v1 = 0, v2 = 0, v3 = 0, v4 = 0;
                bool rel = false, rel2 = false;
                const char *expect = NULL;

                if (tok[0] == '\0')
                        continue; /* as memdemand: "a,,b" and a trailing comma are fine */
                f = g_strsplit(tok, ":", -1);
                nf = g_strv_length(f);
                b.source = n++;
                if (b.steps->len > 0) {
                        const SimStep *last = &g_array_index(b.steps, SimStep, b.steps->len - 1);
                        if (last->secs < 0) {
                                *why = g_strdup_printf("step %u '%s': a step follows one that lasts forever",
                                                       n, tok);
                                return -EINVAL;
                        }
                }

                if (g_str_equal(f[0], "idle") || g_str_equal(f[0], "hold")) {
                        SimStepKind k = g_str_equal(f[0], "idle") ? SIM_STEP_IDLE : SIM_STEP_HOLD;
                        if (nf > 2 || (nf == 2 && parse_secs(f[1], &v1) < 0))
                                expect = "idle[:SECS] or hold[:SECS]";
                        else
                                add(&b, k, nf == 2 ? v1 : -1, b.cur);
                } else if (g_str_equal(f[0], "ramp") || g_str_equal(f[0], "to")) {
                        if (nf != 3 || parse_size(f[1], &v1, &rel) < 0 || parse_secs(f[2], &v2) < 0)
                                expect = "ramp:SIZE:SECS or to:SIZE:SECS";
                        else
                                add(&b, SIM_STEP_RAMP, v2, resolve(&b, v1, rel));
                } else if (g_str_equal(f[0], "jump")) {
                        if (nf != 2 || parse_size(f[1], &v1, &rel) < 0)
                                expect = "jump:SIZE";
                        else
                                add(&b, SIM_STEP_JUMP, 0, resolve(&b, v1, rel));
                } else if (g_str_equal(f[0], "free")) {
                        if (nf != 1)
                                expect = "free";
                        else
                                add(&b, SIM_STEP_FREE, 0, 0);
                } else if (g_str_equal(f[0], "cache")) {
                        /* cache:SIZE[:SECS], as memdemand: read SIZE more MiB of the disk into the
                         * page cache, evenly over SECS, or as fast as the disk goes (and the
                         * timeline moves on at once). */
                        if (nf < 2 || nf > 3 || parse_size(f[1], &v1, &rel) < 0 || rel ||
                            (nf == 3 && parse_secs(f[2], &v2) < 0))
                                expect = "cache:SIZE[:SECS]";
                        else {
                                add(&b, SIM_STEP_CACHE, nf == 3 ? v2 : 0, b.cur);
                                SimStep *st = &g_array_index(b.steps, SimStep, b.steps->len - 1);
                                st->cache_mib = v1;
                                st->rate_mib_s = nf == 3 && v2 > 0 ? v1 / v2 : 0; /* 0: the disk's speed */
                        }
                } else if (g_str_equal(f[0], "uncache")) {
                        if (nf != 1)
                                expect = "uncache";
                        else
                                add(&b, SIM_STEP_UNCACHE, 0, b.cur);
                } else if (g_str_equal(f[0], "cycle")) {
                        /* cycle:LOW:HIGH:PERIOD[:COUNT]: triangle waves, up then down. */
                        unsigned count = 1;
                        if (nf < 4 || nf > 5 || parse_size(f[1], &v1, &rel) < 0 ||
                            parse_size(f[2], &v2, &rel2) < 0 || parse_secs(f[3], &v3) < 0 || v3 <= 0 ||
                            (nf == 5 && (parse_secs(f[4], &v4) < 0 || v4 < 1 || v4 != floor(v4))))
                                expect = "cycle:LOW:HIGH:PERIOD[:COUNT]";
                        else {
                                double lo = resolve(&b, v1, rel), hi = resolve(&b, v2, rel2);
                                if (nf == 5)
                                        count = (unsigned) v4;
                                for (unsigned c = 0; c < count; c++) {
                                        add(&b, SIM_STEP_RAMP, v3 / 2, hi);
                                        add(&b, SIM_STEP_RAMP, v3 / 2, lo);
                                }
                                mark_cyclic(&b, 2 * count, v3);
                        }
                } else if (g_str_equal(f[0], "saw")) {
                        /* saw:HIGH:PERIOD[:COUNT]: ramp to HIGH over PERIOD, drop back at once. */
                        unsigned count = 1;
                        if (nf < 3 || nf > 4 || parse_size(f[1], &v1, &rel) < 0 ||
                            parse_secs(f[2], &v2) < 0 || v2 <= 0 ||
                            (nf == 4 && (parse_secs(f[3], &v3) < 0 || v3 < 1 || v3 != floor(v3))))
                                expect = "saw:HIGH:PERIOD[:COUNT]";
                        else {
                                double base = b.cur, hi = resolve(&b, v1, rel);
                                if (nf == 4)
                                        count = (unsigned) v3;
                                for (unsigned c = 0; c < count; c++) {
                                        add(&b, SIM_STEP_RAMP, v2, hi);
                                        add(&b, SIM_STEP_JUMP, 0, base);
                                }
                                mark_cyclic(&b, 2 * count, v2);
                        }
                } else {
                        *why = g_strdup_printf(
                                "step %u '%s': unknown step (idle, hold, ramp, to, jump, free, "
                                "cache, uncache, cycle, saw)",
                                n, tok);
                        return -EINVAL;
                }
                if (expect) {
                        *why = g_strdup_printf("step %u '%s': expected %s", n, tok, expect);
                        return -EINVAL;
                }
        }
        ret->n_steps = steps->len;
        ret->end_s = b.t;
        if (steps->len > 0 && g_array_index(steps, SimStep, steps->len - 1).secs < 0)
                ret->end_s = INFINITY;
        ret->steps = (SimStep *) (void *) g_array_free(g_steal_pointer(&steps), FALSE);
        return 0;
}

void sim_schedule_clear(SimSchedule *s)
{
        if (!s)
                return;
        g_free(s->steps);
        *s = (SimSchedule){};
}

/* The last step that has started by t: zero-length steps that start at t count as done. */
static const SimStep *current_step(const SimSchedule *s, double t)
{
        const SimStep *cur = NULL;

        for (size_t i = 0; i < s->n_steps; i++) {
                if (s->steps[i].start_s > t)
                        break;
                cur = &s->steps[i];
        }
        return cur;
}

double sim_schedule_anon_mib(const SimSchedule *s, double t)
{
        const SimStep *st = current_step(s, t);

        if (!st)
                return 0;
        if (st->kind == SIM_STEP_RAMP && st->secs > 0) {
                double frac = (t - st->start_s) / st->secs;
                if (frac < 1)
                        return st->from_mib + (st->to_mib - st->from_mib) * frac;
        }
        return st->to_mib;
}

const SimStep *sim_schedule_step_at(const SimSchedule *s, double t)
{
        const SimStep *st = current_step(s, t);

        if (!st || (st->secs >= 0 && t >= st->start_s + st->secs && st == &s->steps[s->n_steps - 1]))
                return NULL;
        return st;
}

/* ---- the world ---- */

struct SimWorld {
        const SimScenario *sc;
        uint64_t now_usec;
        uint64_t step_usec;
        SimGuest *guests;
        size_t n_guests;
        SimEventFn event_fn;
        void *event_userdata;

        unsigned calls[_SIM_CALL_MAX];
        bool down;           /* the connection is lost */
        uint64_t up_at_usec; /* connect succeeds again from then */
        bool *lose_fired;    /* per fault: its LOSE has happened */
};

static uint64_t sec_to_usec(double s)
{
        return s <= 0 ? 0 : (uint64_t) llround(s * 1e6);
}

static double usec_to_sec(uint64_t u)
{
        return (double) u / 1e6;
}

SimWorld *sim_world_new(const SimScenario *sc)
{
        SimWorld *w = g_new0(SimWorld, 1);

        w->sc = sc;
        w->step_usec = MAX(sec_to_usec(sc->step_s), UINT64_C(1000));
        w->n_guests = sc->guests->len;
        w->guests = g_new0(SimGuest, w->n_guests);
        for (size_t i = 0; i < w->n_guests; i++) {
                SimGuest *g = &w->guests[i];
                g->spec = g_ptr_array_index(sc->guests, i);
        }
        w->lose_fired = g_new0(bool, MAX(sc->faults->len, 1u));
        return w;
}

void sim_world_free(SimWorld *w)
{
        if (!w)
                return;
        g_free(w->guests);
        g_free(w->lose_fired);
        g_free(w);
}

void sim_world_set_event_fn(SimWorld *w, SimEventFn fn, void *userdata)
{
        w->event_fn = fn;
        w->event_userdata = userdata;
}

const SimScenario *sim_world_scenario(const SimWorld *w)
{
        return w->sc;
}

uint64_t sim_world_now(const SimWorld *w)
{
        return w->now_usec;
}

uint64_t sim_world_step_usec(const SimWorld *w)
{
        return w->step_usec;
}

size_t sim_world_n_guests(const SimWorld *w)
{
        return w->n_guests;
}

SimGuest *sim_world_guest(SimWorld *w, size_t i)
{
        return i < w->n_guests ? &w->guests[i] : NULL;
}

SimGuest *sim_world_find(SimWorld *w, const char *uuid_or_name)
{
        for (size_t i = 0; i < w->n_guests; i++)
                if (g_str_equal(w->guests[i].spec->uuid, uuid_or_name) ||
                    g_str_equal(w->guests[i].spec->name, uuid_or_name))
                        return &w->guests[i];
        return NULL;
}

static void emit(SimWorld *w, SimEvent ev, SimGuest *g)
{
        if (w->event_fn)
                w->event_fn(w->event_userdata, ev, g);
}

static bool fault_applies(const SimFault *f, const SimGuest *g, double t)
{
        if (f->guest && (!g || !g_str_equal(f->guest, g->spec->name)))
                return false;
        return t >= f->from_s && (f->until_s < 0 || t < f->until_s);
}

static bool guest_fault(const SimWorld *w, const SimGuest *g, SimFaultKind kind)
{
        double t = usec_to_sec(w->now_usec);

        for (guint i = 0; i < w->sc->faults->len; i++) {
                const SimFault *f = g_ptr_array_index(w->sc->faults, i);
                if (f->kind == kind && fault_applies(f, g, t))
                        return true;
        }
        return false;
}

bool sim_guest_busy(const SimWorld *w, const SimGuest *g)
{
        return guest_fault(w, g, SIM_FAULT_BUSY);
}

bool sim_guest_stale(const SimWorld *w, const SimGuest *g)
{
        return g->stats_period_s <= 0 || guest_fault(w, g, SIM_FAULT_STALE) || !g->spec->balloon;
}

static double kernel_of(const SimGuest *g)
{
        const SimModel *m = &g->spec->model;
        double drift = m->kernel_drift_mib * MIN(g->holding_s / m->kernel_drift_s, 1.0);

        return m->kernel_base_mib + m->kernel_growth * g->held_mib + (g->held_mib > 0 ? drift : 0);
}

static void recompute(SimGuest *g)
{
        g->kernel_mib = kernel_of(g);
        g->free_mib = g->actual_mib - g->kernel_mib - g->held_mib - g->cache_mib;
}

static void guest_start(SimWorld *w, SimGuest *g)
{
        const SimGuestSpec *s = g->spec;

        g->running = true;
        g->ever_started = true;
        g->started_usec = w->now_usec;
        g->actual_mib = g->target_mib = s->current_mib;
        g->held_mib = g->cache_mib = g->read_left_mib = 0;
        g->next_step = 0;
        g->holding_s = 0;
        g->dead = false;
        g->stats_period_s = s->balloon ? s->model.stats_period_s : 0;
        g->sample = g->snapshot = (SimSample){};
        g->frozen_until_usec = 0;
        g->next_sample_usec = w->now_usec + sec_to_usec(s->model.stats_phase_s);
        g->reported_actual_mib = g->actual_mib;
        g->last_event_usec = w->now_usec;
        g->event_pending = false;
        recompute(g);
        g->lowest_free_mib = g->lowest_usable_mib = INFINITY;
        g->peak_actual_mib = g->actual_mib;
        emit(w, SIM_EVENT_STARTED, g);
}

static void take_sample(SimWorld *w, SimGuest *g)
{
        const SimModel *m = &g->spec->model;
        SimSample s = {
                .valid = true,
                .at_usec = w->now_usec,
                .unused_mib = MAX(g->free_mib, 0),
                .caches_mib = g->cache_mib,
                /* MemTotal follows the balloon, except with autodeflate (it no longer shrinks). */
                .available_mib = g->spec->autodeflate ? g->spec->max_mib : g->actual_mib,
        };

        s.usable_mib = MAX(g->free_mib + g->cache_mib - m->reserve_mib, 0);
        if (w->now_usec < g->frozen_until_usec && g->freeze_armed) {
                /* The first sample after the change is taken, and then kept. */
                g->freeze_armed = false;
                g->snapshot = s;
        }
        if (w->now_usec < g->frozen_until_usec && g->snapshot.valid) {
                SimSample f = g->snapshot;
                f.at_usec = w->now_usec; /* the stamp advances, the figures do not */
                g->sample = f;
                return;
        }
        g->sample = s;
        g->fresh_since_freeze = true;
}

/* The workload and the page cache for one sub-step of dt seconds. */
static void step_workload(SimGuest *g, double t_sched, double dt)
{
        const SimModel *m = &g->spec->model;
        const SimSchedule *sch = &g->spec->schedule;
        double want = g->dead ? 0 : sim_schedule_anon_mib(sch, t_sched);

        if (t_sched < 0)
                want = 0;
        if (want > g->held_mib)
                g->held_mib = MIN(want, g->held_mib + m->touch_mib_s * dt);
        else
                g->held_mib = want; /* munmap is quick */
        g->holding_s = g->held_mib > 0 ? g->holding_s + dt : 0;

        /* Steps that start now: a cache read begins, uncache drops the cache. */
        while (t_sched >= 0 && g->next_step < sch->n_steps && sch->steps[g->next_step].start_s <= t_sched) {
                const SimStep *st = &sch->steps[g->next_step++];
                if (st->kind == SIM_STEP_CACHE && !g->dead) {
                        g->read_left_mib += st->cache_mib;
                        g->read_rate_mib_s = st->rate_mib_s > 0 ? st->rate_mib_s : m->disk_read_mib_s;
                } else if (st->kind == SIM_STEP_UNCACHE) {
                        g->cache_mib = 0;
                        g->read_left_mib = 0;
                }
        }
        recompute(g);
        if (g->read_left_mib > 0) {
                /* Reading fills free memory; at the low watermark the least recently read
                 * pages are evicted, so the cache stops growing but the read goes on. */
                double r = MIN(g->read_left_mib, g->read_rate_mib_s * dt);
                double room = MAX(g->free_mib - m->reclaim_free_mib, 0);
                g->cache_mib += MIN(r, room);
                g->read_left_mib -= r;
        }
        recompute(g);
}

/* The balloon for one sub-step. */
static void step_balloon(SimWorld *w, SimGuest *g, double dt)
{
        const SimModel *m = &g->spec->model;

        g->stalled = false;
        if (!g->spec->balloon || g->stuck)
                return;
        if (g->target_mib > g->actual_mib) {
                g->actual_mib = MIN(g->target_mib, g->actual_mib + m->deflate_mib_s * dt);
        } else if (g->target_mib < g->actual_mib) {
                double want = MIN(g->actual_mib - g->target_mib, m->inflate_mib_s * dt);
                /* The page cache goes first, then free memory down to the floor; memory in
                 * use cannot be taken, so the balloon stalls. */
                double from_cache = MIN(g->cache_mib, want);
                g->cache_mib -= from_cache;
                g->actual_mib -= from_cache;
                recompute(g);
                double rest = want - from_cache;
                double can = MAX(g->free_mib - m->balloon_floor_free_mib, 0);
                double take = MIN(rest, can);
                g->actual_mib -= take;
                if (take + 1e-9 < rest)
                        g->stalled = true;
        }
        recompute(g);
        (void) w;
}

/* Memory pressure: reclaim cache, autodeflate, or the OOM killer. */
static void step_pressure(SimWorld *w, SimGuest *g, double dt)
{
        const SimModel *m = &g->spec->model;

        g->autodeflated = false;
        if (g->free_mib < m->reclaim_free_mib && g->cache_mib > 0) {
                double r = MIN(g->cache_mib, m->reclaim_free_mib - g->free_mib);
                g->cache_mib -= r;
                recompute(g);
        }
        if (g->free_mib >= m->oom_free_mib)
                return;
        if (g->spec->autodeflate && g->spec->balloon && g->actual_mib < g->spec->max_mib) {
                double need = m->oom_free_mib - g->free_mib;
                double give = MIN(MIN(need, m->autodeflate_mib_s * dt), g->spec->max_mib - g->actual_mib);
                g->actual_mib += give;
                /* The host's target is lost until it is set again. */
                g->target_mib = g->actual_mib;
                g->autodeflated = true;
                recompute(g);
                emit(w, SIM_EVENT_AUTODEFLATE, g);
                /* What the deflate could not give yet, the workload waits for (its page faults
                 * sit in reclaim while the OOM notifier deflates): it crawls, it is not killed. */
                if (g->free_mib < m->oom_free_mib && g->actual_mib < g->spec->max_mib) {
                        double wait = (m->oom_free_mib - g->free_mib) / (1 + m->kernel_growth);
                        g->held_mib = MAX(g->held_mib - wait, 0);
                        recompute(g);
                }
        }
        if (g->free_mib < m->oom_free_mib - 1e-6 && g->held_mib > 0) {
                g->held_mib = 0;
                g->holding_s = 0;
                g->dead = true;
                g->oom_kills++;
                recompute(g);
                emit(w, SIM_EVENT_OOM_KILL, g);
        }
}

static void step_guest(SimWorld *w, SimGuest *g, double dt)
{
        const SimGuestSpec *s = g->spec;
        double t = usec_to_sec(w->now_usec);

        if (!g->running) {
                if (!g->ever_started && t >= s->start_s)
                        guest_start(w, g);
                else
                        return;
        } else if (s->stop_s >= 0 && t >= s->stop_s) {
                g->running = false;
                emit(w, SIM_EVENT_STOPPED, g);
                return;
        }

        g->stuck = guest_fault(w, g, SIM_FAULT_STUCK);
        step_workload(g, t - s->start_s - s->ready_s, dt);
        step_balloon(w, g, dt);
        step_pressure(w, g, dt);

        g->lowest_free_mib = MIN(g->lowest_free_mib, g->free_mib);
        g->lowest_usable_mib =
                MIN(g->lowest_usable_mib, MAX(g->free_mib + g->cache_mib - s->model.reserve_mib, 0));
        g->peak_actual_mib = MAX(g->peak_actual_mib, g->actual_mib);

        /* libvirt's figure follows QEMU's BALLOON_CHANGE events: the first at once, then at
         * most one per throttle period, carrying the size at that moment. */
        if (g->actual_mib != g->reported_actual_mib)
                g->event_pending = true;
        if (g->event_pending &&
            w->now_usec >= g->last_event_usec + sec_to_usec(s->model.actual_throttle_s)) {
                g->reported_actual_mib = g->actual_mib;
                g->last_event_usec = w->now_usec;
                g->event_pending = false;
        }

        if (w->now_usec >= g->next_sample_usec) {
                if (!sim_guest_stale(w, g))
                        take_sample(w, g);
                uint64_t period = sec_to_usec(g->stats_period_s > 0 ? g->stats_period_s : 1);
                while (g->next_sample_usec <= w->now_usec)
                        g->next_sample_usec += period;
        }
}

void sim_world_advance_to(SimWorld *w, uint64_t usec)
{
        double dt = usec_to_sec(w->step_usec);

        while (w->now_usec + w->step_usec <= usec) {
                w->now_usec += w->step_usec;
                for (size_t i = 0; i < w->n_guests; i++)
                        step_guest(w, &w->guests[i], dt);
        }
}

double sim_guest_reported_actual_mib(const SimGuest *g)
{
        return g->reported_actual_mib;
}

double sim_guest_sample_age_s(const SimGuest *g, uint64_t now_usec)
{
        if (!g->sample.valid)
                return INFINITY;
        return usec_to_sec(now_usec - g->sample.at_usec);
}

static double other_mib(const SimWorld *w)
{
        const SimScenario *sc = w->sc;

        if (sc->host_other.n_steps == 0)
                return sc->host_other_mib;
        return sc->host_other_mib + sim_schedule_anon_mib(&sc->host_other, usec_to_sec(w->now_usec));
}

double sim_world_guests_actual_mib(const SimWorld *w)
{
        double sum = 0;

        for (size_t i = 0; i < w->n_guests; i++)
                if (w->guests[i].running)
                        sum += w->guests[i].actual_mib + w->sc->guest_overhead_mib;
        return sum;
}

double sim_world_host_total_mib(const SimWorld *w)
{
        return w->sc->host_total_mib;
}

double sim_world_host_free_mib(const SimWorld *w)
{
        return MAX(w->sc->host_total_mib - sim_world_guests_actual_mib(w) - other_mib(w), 0);
}

int sim_world_set_target(SimWorld *w, SimGuest *g, double mib)
{
        const SimModel *m = &g->spec->model;

        if (!g->running)
                return -ENOENT;
        g->set_calls++;
        g->last_set_usec = w->now_usec;
        g->last_set_mib = mib;
        if (!g->spec->balloon) {
                g->set_without_balloon++;
                return -EOPNOTSUPP;
        }
        if (sim_guest_busy(w, g)) {
                g->set_while_busy++;
                return -EBUSY;
        }
        if (sim_guest_stale(w, g) ||
            sim_guest_sample_age_s(g, w->now_usec) > 2 * MAX(g->stats_period_s, 1) + 1)
                g->set_while_stale++;
        mib = CLAMP(mib, 0, g->spec->max_mib);
        bool grows = mib > g->actual_mib + 1e-9, shrinks = mib < g->actual_mib - 1e-9;
        /* A freeze starts from a moving sample: a change in the tick right after one ends
         * (before the guest sampled again) does not stretch it. */
        if (((grows && m->freeze_on_deflate) || (shrinks && m->freeze_on_inflate)) && m->freeze_s > 0 &&
            w->now_usec >= g->frozen_until_usec && g->fresh_since_freeze) {
                g->fresh_since_freeze = false;
                /* The guest keeps reporting one sample while its stamp advances: the last one
                 * before the change, or the first one after it. */
                g->snapshot = g->sample;
                g->freeze_armed = m->freeze_after_change;
                g->frozen_until_usec = w->now_usec + sec_to_usec(m->freeze_s);
        }
        g->target_mib = mib;
        return 0;
}

int sim_world_call(SimWorld *w, SimCall call, bool *lost_now)
{
        double t = usec_to_sec(w->now_usec);
        int r = 0;

        if (lost_now)
                *lost_now = false;
        w->calls[call]++;
        for (guint i = 0; i < w->sc->faults->len; i++) {
                const SimFault *f = g_ptr_array_index(w->sc->faults, i);

                if (f->kind == SIM_FAULT_LOSE && !w->lose_fired[i]) {
                        bool fire = f->on_call > 0 ? call == SIM_CALL_SET_TARGET &&
                                                             w->calls[SIM_CALL_SET_TARGET] == f->on_call
                                                   : t >= f->from_s && call != SIM_CALL_CONNECT;
                        if (fire) {
                                w->lose_fired[i] = true;
                                w->down = true;
                                w->up_at_usec = w->now_usec + sec_to_usec(f->down_s);
                                if (lost_now)
                                        *lost_now = true;
                                emit(w, SIM_EVENT_CONNECTION_LOST, NULL);
                        }
                }
                if (f->kind != SIM_FAULT_SLOW && f->kind != SIM_FAULT_FAIL)
                        continue;
                if ((f->call != call && f->call != SIM_CALL_ANY) || t < f->from_s ||
                    (f->until_s >= 0 && t >= f->until_s))
                        continue;
                if (f->kind == SIM_FAULT_SLOW && f->delay_ms > 0)
                        g_usleep((gulong) f->delay_ms * 1000);
                if (f->kind == SIM_FAULT_FAIL && r == 0)
                        r = -f->error;
        }
        if (w->down && call != SIM_CALL_CONNECT)
                return -ENOTCONN;
        if (call == SIM_CALL_CONNECT && !sim_world_can_connect(w))
                return -ECONNREFUSED;
        if (call == SIM_CALL_CONNECT && w->down)
                w->down = false;
        return r;
}

bool sim_world_can_connect(const SimWorld *w)
{
        return !w->down || w->now_usec >= w->up_at_usec;
}

unsigned sim_world_calls(const SimWorld *w, SimCall call)
{
        return call < _SIM_CALL_MAX ? w->calls[call] : 0;
}
