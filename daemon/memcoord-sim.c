/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * memcoord-sim: runs memcoordd's own manager (policy, observe, apply) on the simulator backend
 * with a manual clock, as fast as the CPU allows, and reports what happened to every guest.
 * See memcoord-sim(1).
 */

#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <libsmartcols.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "hypervisor-sim.h"
#include "log.h"
#include "manager.h"
#include "memcoord-build.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"
#include "sim-world.h"

#define EXIT_BAD_INPUT 1
#define EXIT_CHECK_FAILED 2
#define EXIT_RUN_FAILED 3

#define RETURN_WINDOW_S 60.0     /* memory returned within this long after a workload ends */
#define NOTHING_TO_RETURN_MIB 32 /* less than this above U + 2T: nothing to return */
#define STEADY_SETTLE_S 3.0      /* a steady window starts this long after its step */
#define STEADY_MIN_S 5.0         /* shorter windows are not judged */
#define REVERSAL_MIB 1.0         /* direction changes of actual by at least this */
#define CLAIM_SLACK_KIB 1        /* the policy floors c x unused */
#define BUDGET_SLACK_MIB 1.0
#define STALE_SLACK_S 1.0 /* stamps are whole seconds */

typedef struct Args {
        char *scenario;
        char *config;
        char **set;
        gboolean json;
        char *plot;
        char *csv;
        double duration;
        double sample;
        gboolean check;
        double check_claim_fraction; /* 0 = the configured one */
        gboolean list_model;
        gboolean verbose;
        gboolean version;
} Args;

typedef struct Rec {
        float t, actual, target, free, usable, cache, held, used, rep_unused, rep_memtotal;
        bool running;
        unsigned kills; /* OOM kills so far */
} Rec;

typedef struct Decision {
        double t;
        unsigned guest;
        double from_mib, to_mib;
        McReason reason;
        double release_share; /* claims: released / unused the daemon read; else -1 */
} Decision;

typedef struct Violation {
        double t;
        char *what;
} Violation;

typedef struct Run {
        Args *args;
        SimScenario *sc;
        McManager *m;
        McHypervisor *h;
        SimWorld *w;
        McConfig *config; /* owned by the manager */
        size_t n;
        GArray **recs;         /* per guest: Rec */
        uint64_t *pending_kib; /* per guest: the daemon's target in flight before its last set, 0 = none */
        GArray *decisions;     /* Decision */
        GArray *violations;
        uint64_t now_usec;
        unsigned ticks;
        double cpu_s, cpu_max_s;
        double wall_s;
        double gib_s; /* integral of the sum of actuals */
        double lowest_host_headroom_mib;
        double lowest_budget_headroom_mib; /* samples: budget - sum of actual */
        double lowest_commit_headroom_mib; /* after grant ticks: budget - sum max(actual, target) */
        bool tick_granted;
        double tick_granted_mib; /* what this tick's grants add */
        bool within_budget;      /* the sum of actual has been within the budget */
        unsigned reasons[_MC_REASON_MAX];
        unsigned set_failures;
} Run;

static void violation(Run *r, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void violation(Run *r, const char *fmt, ...)
{
        Violation v = { .t = (double) r->now_usec / 1e6 };
        va_list ap;

        va_start(ap, fmt);
        v.what = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_array_append_val(r->violations, v);
}

static double mib(uint64_t kib)
{
        return (double) kib / 1024;
}

static double t_mib(const Run *r)
{
        return mib(r->config->policy.domain_threshold_kib);
}

static size_t guest_index(Run *r, const SimGuest *g)
{
        return (size_t) (g - sim_world_guest(r->w, 0));
}

/* ---- recording ---- */

static void record(Run *r)
{
        double t = (double) sim_world_now(r->w) / 1e6;

        for (size_t i = 0; i < r->n; i++) {
                SimGuest *g = sim_world_guest(r->w, i);
                Rec rec = {
                        .t = (float) t,
                        .running = g->running,
                        .kills = g->oom_kills,
                        .actual = (float) g->actual_mib,
                        .target = (float) g->target_mib,
                        .free = (float) g->free_mib,
                        .usable = (float) MAX(g->free_mib + g->cache_mib - g->spec->model.reserve_mib, 0),
                        .cache = (float) g->cache_mib,
                        .held = (float) g->held_mib,
                        .used = (float) (g->held_mib + g->kernel_mib),
                        .rep_unused = (float) g->sample.unused_mib,
                        .rep_memtotal = (float) g->sample.available_mib,
                };
                g_array_append_val(r->recs[i], rec);
        }
        double sum = sim_world_guests_actual_mib(r->w);
        r->gib_s += sum / 1024 * r->args->sample;
        /* From the first sample within the budget on: a scenario may start above it. */
        double left = mib(r->config->policy.host_budget_kib) - sum;
        if (r->config->policy.host_budget_kib > 0 && r->now_usec > 0 && (r->within_budget || left >= 0)) {
                r->within_budget = true;
                r->lowest_budget_headroom_mib = MIN(r->lowest_budget_headroom_mib, left);
        }
}

static void on_target_set(void *userdata, SimGuest *g, uint64_t kib, int res)
{
        Run *r = userdata;
        const SimWorld *w = r->w;
        double max_age = (double) mc_freshness_max_age(r->config->interval_usec) / 1e6 + STALE_SLACK_S;

        if (res < 0)
                r->set_failures++;
        /* The daemon's own view of the target in flight, before it records this one. */
        McGuest *mg = mc_manager_find_guest(r->m, g->spec->uuid);
        r->pending_kib[guest_index(r, g)] = mg ? mg->last_target_kib : 0;
        if (!g->spec->balloon)
                violation(r, "%s: target set on a guest without a balloon driver", g->spec->name);
        else if (sim_guest_busy(w, g))
                violation(r, "%s: target set while a job holds it", g->spec->name);
        else if (sim_guest_sample_age_s(g, sim_world_now(w)) > max_age)
                violation(r, "%s: target set from stale stats (last sample %.1f s old)", g->spec->name,
                          sim_guest_sample_age_s(g, sim_world_now(w)));
        (void) kib;
}

static void on_balloon_changed(void *userdata, McGuest *mg, uint64_t from_kib, uint64_t to_kib,
                               McReason reason)
{
        Run *r = userdata;
        SimGuest *g = sim_world_find(r->w, mg->uuid);
        Decision d = {
                .t = (double) r->now_usec / 1e6,
                .from_mib = mib(from_kib),
                .to_mib = mib(to_kib),
                .reason = reason,
                .release_share = -1,
        };

        if (!g)
                return;
        d.guest = (unsigned) guest_index(r, g);
        if (reason < _MC_REASON_MAX)
                r->reasons[reason]++;
        /* A claim in flight counts as landed: the policy claims from its pending target with
         * that much less headroom (the daemon's own view, as tests/e2e measures it). Headroom
         * is the daemon's own figure (mc_guest_headroom_kib: unused, or with page cache
         * usable plus the kernel's reserve). */
        uint64_t pending = r->pending_kib[d.guest];
        uint64_t base = pending > 0 && pending < mg->actual_kib ? pending : mg->actual_kib;
        if (to_kib > from_kib) {
                r->tick_granted = true;
                r->tick_granted_mib += mib(to_kib - from_kib);
        }
        if ((reason == MC_REASON_CLAIM || reason == MC_REASON_CRUNCH_CLAIM) && to_kib < base) {
                uint64_t landing = mg->actual_kib - base;
                uint64_t unused = mc_guest_headroom_kib(mg);
                unused = unused > landing ? unused - landing : 0;
                uint64_t released = base - to_kib;
                d.release_share = unused > 0 ? (double) released / (double) unused : INFINITY;
                double c = r->args->check_claim_fraction > 0 ? r->args->check_claim_fraction
                                                             : r->config->policy.claim_fraction;
                if ((double) released > c * (double) unused + CLAIM_SLACK_KIB)
                        violation(
                                r,
                                "%s: released %.1f MiB of %.1f MiB unused (%.1f %%, claim fraction %.0f %%)",
                                g->spec->name, mib(released), mib(unused), 100 * d.release_share, 100 * c);
        }
        g_array_append_val(r->decisions, d);
}

/*
 * After each tick: this tick's grants against the host figure the daemon read (the world
 * stands still during a tick), what all grants commit against the budget, and the host's
 * headroom as it is.
 */
static void check_commitments(Run *r)
{
        double committed = 0;
        double h = mib(r->config->policy.host_threshold_kib);

        for (size_t i = 0; i < r->n; i++) {
                SimGuest *g = sim_world_guest(r->w, i);
                if (g->running)
                        committed += MAX(g->actual_mib, g->target_mib) +
                                     sim_world_scenario(r->w)->guest_overhead_mib;
        }
        double host_free = sim_world_host_free_mib(r->w);
        r->lowest_host_headroom_mib = MIN(r->lowest_host_headroom_mib, host_free - h);
        if (!r->tick_granted)
                return;
        if (r->tick_granted_mib > host_free - h + BUDGET_SLACK_MIB)
                violation(r, "grants of %.1f MiB with %.1f MiB free above the host threshold",
                          r->tick_granted_mib, host_free - h);
        if (r->config->policy.host_budget_kib > 0) {
                double left = mib(r->config->policy.host_budget_kib) - committed;
                r->lowest_commit_headroom_mib = MIN(r->lowest_commit_headroom_mib, left);
                if (left < -BUDGET_SLACK_MIB)
                        violation(r, "grants commit %.1f MiB beyond the budget", -left);
        }
}

static double cpu_now(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void dispatch(sd_event *e)
{
        for (int i = 0; i < 100 && sd_event_run(e, 0) > 0; i++)
                ;
}

static int simulate(Run *r, sd_event *e, double duration)
{
        uint64_t interval = r->config->interval_usec;
        uint64_t sample = (uint64_t) llround(r->args->sample * 1e6);
        uint64_t end = (uint64_t) llround(duration * 1e6);
        uint64_t next_record = 0, t = (uint64_t) llround(r->sc->daemon_start_s * 1e6);
        double wall0 = wall_now();

        for (;;) {
                uint64_t until = MIN(t, end);
                while (next_record <= until) {
                        mc_sim_advance_to(r->h, next_record);
                        r->now_usec = next_record;
                        record(r);
                        next_record += sample;
                }
                if (t > end)
                        break;
                mc_sim_advance_to(r->h, t);
                r->now_usec = t;
                dispatch(e);
                if (!mc_hypervisor_is_connected(r->h) && sim_world_can_connect(r->w)) {
                        if (mc_hypervisor_connect(r->h) < 0)
                                mc_log_debug("%s", mc_hypervisor_error(r->h));
                        dispatch(e);
                }
                r->tick_granted = false;
                r->tick_granted_mib = 0;
                double c0 = cpu_now();
                (void) mc_manager_tick(r->m);
                double c = cpu_now() - c0;
                r->cpu_s += c;
                r->cpu_max_s = MAX(r->cpu_max_s, c);
                r->ticks++;
                check_commitments(r);
                dispatch(e);
                t += interval;
        }
        r->wall_s = wall_now() - wall0;
        return 0;
}

/* ---- outcomes ---- */

typedef struct Outcome {
        const char *name;
        unsigned oom;
        double below_max_s, below_total_s;
        double lowest_free, lowest_usable, peak;
        double largest_release; /* share; < 0 = no claim */
        double returned_share;  /* < 0 = nothing to return */
        double returned_mib, returned_of_mib;
        double rev_per_min;        /* steady windows; < 0 = none */
        double rev_cyclic_per_min; /* cyclic windows; < 0 = none */
        double cyclic_own_per_min; /* the load's own direction changes there */
        double steady_s;
        unsigned decisions;
} Outcome;

static bool steady_at(const SimGuestSpec *s, double t, double daemon_start, bool *cyclic,
                      double *own_per_min)
{
        double ts = t - s->start_s - s->ready_s;
        const SimStep *st = sim_schedule_step_at(&s->schedule, ts);

        *cyclic = false;
        *own_per_min = 0;
        if (t < daemon_start + STEADY_SETTLE_S || ts < 0)
                return false;
        if (!st) /* after the schedule: idle */
                return true;
        if (st->cyclic) {
                *cyclic = true;
                *own_per_min = 60.0 / st->cycle_period_s * 2;
                return true;
        }
        if (st->kind != SIM_STEP_IDLE && st->kind != SIM_STEP_HOLD)
                return false;
        if (ts < st->start_s + STEADY_SETTLE_S)
                return false;
        return st->secs < 0 || st->secs >= STEADY_MIN_S;
}

static void outcome_of(Run *r, size_t i, Outcome *o)
{
        SimGuest *g = sim_world_guest(r->w, i);
        const SimGuestSpec *s = g->spec;
        GArray *recs = r->recs[i];
        double below = t_mib(r) - mib(r->config->policy.dead_band_kib) / 2;
        double dt = r->args->sample, run = 0;
        double daemon_start = r->sc->daemon_start_s;
        double steady_s = 0, cyc_s = 0, own = 0;
        unsigned rev = 0, rev_cyc = 0;
        int dir = 0, dir_cyc = 0;
        double anchor = NAN, anchor_cyc = NAN;

        *o = (Outcome){ .name = s->name,
                        .oom = g->oom_kills,
                        .largest_release = -1,
                        .returned_share = -1,
                        .rev_per_min = -1,
                        .rev_cyclic_per_min = -1 };
        o->lowest_free = isfinite(g->lowest_free_mib) ? g->lowest_free_mib : NAN;
        o->lowest_usable = isfinite(g->lowest_usable_mib) ? g->lowest_usable_mib : NAN;
        o->peak = g->ever_started ? g->peak_actual_mib : NAN;

        for (guint k = 0; k < recs->len; k++) {
                const Rec *x = &g_array_index(recs, Rec, k);
                bool cyclic;
                double own_pm;

                if (!x->running) {
                        run = 0;
                        continue;
                }
                if (x->free < below) {
                        run += dt;
                        o->below_total_s += dt;
                        o->below_max_s = MAX(o->below_max_s, run);
                } else
                        run = 0;

                /* Reversals: direction changes by >= REVERSAL_MIB within a window. */
                if (steady_at(s, x->t, daemon_start, &cyclic, &own_pm)) {
                        double *a = cyclic ? &anchor_cyc : &anchor;
                        int *d = cyclic ? &dir_cyc : &dir;
                        if (cyclic) {
                                cyc_s += dt;
                                own += own_pm * dt / 60;
                        } else
                                steady_s += dt;
                        if (isnan(*a))
                                *a = x->actual;
                        else if (fabs(x->actual - *a) >= REVERSAL_MIB) {
                                int nd = x->actual > *a ? 1 : -1;
                                if (*d != 0 && nd != *d)
                                        (*(cyclic ? &rev_cyc : &rev))++;
                                *d = nd;
                                *a = x->actual;
                        }
                } else {
                        anchor = anchor_cyc = NAN;
                        dir = dir_cyc = 0;
                }

                /* Memory returned after a workload frees. */
                if (k > 0) {
                        const Rec *p = &g_array_index(recs, Rec, k - 1);
                        double u = s->model.kernel_base_mib + 2 * t_mib(r);
                        /* A cyclic load's drop is not the end of a workload: the next tooth comes. */
                        const SimStep *st =
                                sim_schedule_step_at(&s->schedule, x->t - s->start_s - s->ready_s);
                        if (p->running && p->held >= NOTHING_TO_RETURN_MIB && x->held < 1 &&
                            p->actual - u >= NOTHING_TO_RETURN_MIB && !(st && st->cyclic) &&
                            x->kills == p->kills) {
                                /* Within 60 s, or what the run has left of them (at least 20 s). */
                                guint j = MIN(k + (guint) llround(RETURN_WINDOW_S / dt), recs->len - 1);
                                if ((double) (j - k) * dt >= 20) {
                                        const Rec *q = &g_array_index(recs, Rec, j);
                                        double share = (p->actual - q->actual) / (p->actual - u);
                                        if (o->returned_share < 0 || share < o->returned_share) {
                                                o->returned_share = share;
                                                o->returned_mib = p->actual - q->actual;
                                                o->returned_of_mib = p->actual - u;
                                        }
                                }
                        }
                }
        }
        o->steady_s = steady_s;
        if (steady_s >= 10)
                o->rev_per_min = rev / (steady_s / 60);
        if (cyc_s >= 10) {
                o->rev_cyclic_per_min = rev_cyc / (cyc_s / 60);
                o->cyclic_own_per_min = own / (cyc_s / 60);
        }
        for (guint k = 0; k < r->decisions->len; k++) {
                const Decision *d = &g_array_index(r->decisions, Decision, k);
                if (d->guest != i)
                        continue;
                o->decisions++;
                if (d->release_share >= 0)
                        o->largest_release = MAX(o->largest_release, d->release_share);
        }
}

/* v with that many decimals; "-" when there is none (NaN or negative). */
static char *fmt_num(double v, int decimals)
{
        if (isnan(v) || v < 0)
                return g_strdup("-");
        return g_strdup_printf("%.*f", decimals, v);
}

static int print_text(Run *r, const Outcome *o)
{
        static const struct {
                const char *name;
                int flags;
        } cols[] = {
                { "GUEST", 0 },
                { "OOM", SCOLS_FL_RIGHT },
                { "BELOW-T MAX/TOTAL s", SCOLS_FL_RIGHT },
                { "LOWEST FREE/USABLE MiB", SCOLS_FL_RIGHT },
                { "PEAK MiB", SCOLS_FL_RIGHT },
                { "MAX RELEASE %", SCOLS_FL_RIGHT },
                { "RETURNED 60s", SCOLS_FL_RIGHT },
                { "REV/MIN", SCOLS_FL_RIGHT },
                { "DECISIONS", SCOLS_FL_RIGHT },
        };
        struct libscols_table *tb = scols_new_table();
        int ret = 0;

        if (!tb)
                return -ENOMEM;
        for (size_t c = 0; c < G_N_ELEMENTS(cols); c++)
                if (!scols_table_new_column(tb, cols[c].name, 0, cols[c].flags)) {
                        ret = -ENOMEM;
                        goto out;
                }
        for (size_t i = 0; i < r->n; i++) {
                struct libscols_line *ln = scols_table_new_line(tb, NULL);
                g_autofree char *oom = g_strdup_printf("%u", o[i].oom);
                g_autofree char *below =
                        g_strdup_printf("%.0f / %.0f", o[i].below_max_s, o[i].below_total_s);
                g_autofree char *lf = fmt_num(o[i].lowest_free, 0), *lu = fmt_num(o[i].lowest_usable, 0);
                g_autofree char *low = g_strdup_printf("%s / %s", lf, lu);
                g_autofree char *peak = fmt_num(o[i].peak, 0);
                g_autofree char *rel = fmt_num(o[i].largest_release * 100, 1);
                g_autofree char *ret60 =
                        o[i].returned_share < 0
                                ? g_strdup("-")
                                : g_strdup_printf("%.0f/%.0f MiB (%.0f %%)", o[i].returned_mib,
                                                  o[i].returned_of_mib, 100 * o[i].returned_share);
                g_autofree char *rs = fmt_num(o[i].rev_per_min, 2);
                g_autofree char *rc = fmt_num(o[i].rev_cyclic_per_min, 1);
                g_autofree char *rev =
                        o[i].rev_cyclic_per_min < 0
                                ? g_strdup(rs)
                                : g_strdup_printf("%s; cyc %s (load %.1f)", rs, rc, o[i].cyclic_own_per_min);
                g_autofree char *dec = g_strdup_printf("%u", o[i].decisions);
                const char *cells[] = { o[i].name, oom, below, low, peak, rel, ret60, rev, dec };

                if (!ln) {
                        ret = -ENOMEM;
                        goto out;
                }
                for (size_t c = 0; c < G_N_ELEMENTS(cells); c++)
                        if (scols_line_set_data(ln, c, cells[c]) < 0) {
                                ret = -ENOMEM;
                                goto out;
                        }
        }
        ret = scols_print_table(tb);
out:
        scols_unref_table(tb);
        if (ret < 0)
                return ret;

        const McPolicySettings *p = &r->config->policy;
        printf("\n%s: %zu guests, %.0f s simulated in %.3f s (%u ticks, CPU per tick %.1f us mean, %.1f us "
               "max)\n",
               r->sc->origin, r->n, (double) r->now_usec / 1e6, r->wall_s, r->ticks,
               r->ticks ? r->cpu_s / r->ticks * 1e6 : 0, r->cpu_max_s * 1e6);
        printf("sum of actual over time: %.1f GiB*s\n", r->gib_s);
        printf("lowest host headroom (host free - H, after each tick): %.0f MiB\n",
               r->lowest_host_headroom_mib);
        if (p->host_budget_kib > 0) {
                char commit[64] = "no grant";
                if (isfinite(r->lowest_commit_headroom_mib))
                        g_snprintf(commit, sizeof(commit), "%.0f MiB", r->lowest_commit_headroom_mib);
                printf("lowest budget headroom: %.0f MiB (samples, budget %.0f MiB); %s after grant ticks\n",
                       r->lowest_budget_headroom_mib, mib(p->host_budget_kib), commit);
        }
        printf("decisions:");
        for (int k = 1; k < _MC_REASON_MAX; k++)
                if (r->reasons[k])
                        printf(" %s %u", mc_reason_to_string((McReason) k), r->reasons[k]);
        printf("%s; failed set_target calls %u\n", r->decisions->len ? "" : " none", r->set_failures);
        if (r->args->check) {
                printf("checks: %u invariant(s) crossed\n", r->violations->len);
                for (guint k = 0; k < r->violations->len && k < 20; k++) {
                        const Violation *v = &g_array_index(r->violations, Violation, k);
                        printf("  t=%.1f s: %s\n", v->t, v->what);
                }
        }
        return 0;
}

static void jnum(JsonBuilder *b, const char *name, double v)
{
        json_builder_set_member_name(b, name);
        if (isnan(v) || isinf(v))
                json_builder_add_null_value(b);
        else
                json_builder_add_double_value(b, round(v * 1000) / 1000);
}

static void jint(JsonBuilder *b, const char *name, gint64 v)
{
        json_builder_set_member_name(b, name);
        json_builder_add_int_value(b, v);
}

static void print_json(Run *r, const Outcome *o)
{
        g_autoptr(JsonBuilder) b = json_builder_new();
        const McPolicySettings *p = &r->config->policy;

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "scenario");
        json_builder_add_string_value(b, r->sc->origin);
        jnum(b, "simulated_s", (double) r->now_usec / 1e6);
        jnum(b, "wall_s", r->wall_s);
        jint(b, "ticks", r->ticks);
        jnum(b, "cpu_per_tick_us", r->ticks ? r->cpu_s / r->ticks * 1e6 : 0);
        jnum(b, "cpu_per_tick_max_us", r->cpu_max_s * 1e6);
        jnum(b, "sum_actual_gib_s", r->gib_s);
        jnum(b, "lowest_host_headroom_mib", r->lowest_host_headroom_mib);
        jnum(b, "budget_mib", p->host_budget_kib ? mib(p->host_budget_kib) : NAN);
        jnum(b, "lowest_budget_headroom_mib", p->host_budget_kib ? r->lowest_budget_headroom_mib : NAN);
        jnum(b, "lowest_commit_headroom_mib", p->host_budget_kib ? r->lowest_commit_headroom_mib : NAN);
        jint(b, "failed_set_target", r->set_failures);
        json_builder_set_member_name(b, "decisions");
        json_builder_begin_object(b);
        for (int k = 1; k < _MC_REASON_MAX; k++)
                jint(b, mc_reason_to_string((McReason) k), r->reasons[k]);
        json_builder_end_object(b);
        json_builder_set_member_name(b, "guests");
        json_builder_begin_array(b);
        for (size_t i = 0; i < r->n; i++) {
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "name");
                json_builder_add_string_value(b, o[i].name);
                jint(b, "oom_kills", o[i].oom);
                jnum(b, "below_t_max_s", o[i].below_max_s);
                jnum(b, "below_t_total_s", o[i].below_total_s);
                jnum(b, "lowest_free_mib", o[i].lowest_free);
                jnum(b, "lowest_usable_mib", o[i].lowest_usable);
                jnum(b, "peak_actual_mib", o[i].peak);
                jnum(b, "largest_release_pct", o[i].largest_release < 0 ? NAN : 100 * o[i].largest_release);
                jnum(b, "returned_60s_pct", o[i].returned_share < 0 ? NAN : 100 * o[i].returned_share);
                jnum(b, "returned_60s_mib", o[i].returned_share < 0 ? NAN : o[i].returned_mib);
                jnum(b, "reversals_per_min", o[i].rev_per_min);
                jnum(b, "reversals_per_min_cyclic", o[i].rev_cyclic_per_min);
                jnum(b, "load_reversals_per_min_cyclic",
                     o[i].rev_cyclic_per_min < 0 ? NAN : o[i].cyclic_own_per_min);
                jint(b, "decisions", o[i].decisions);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_set_member_name(b, "violations");
        json_builder_begin_array(b);
        for (guint k = 0; k < r->violations->len; k++) {
                const Violation *v = &g_array_index(r->violations, Violation, k);
                json_builder_begin_object(b);
                jnum(b, "t", v->t);
                json_builder_set_member_name(b, "what");
                json_builder_add_string_value(b, v->what);
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);

        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        json_generator_set_pretty(gen, TRUE);
        json_generator_set_root(gen, root);
        g_autofree char *text = json_generator_to_data(gen, NULL);
        printf("%s\n", text);
}

static int write_csv(Run *r, const char *path)
{
        g_autoptr(GString) s =
                g_string_new("t,guest,running,actual_mib,target_mib,free_mib,usable_mib,cache_mib,"
                             "held_mib,used_mib,reported_unused_mib,oom_kills,reported_memtotal_mib\n");
        g_autoptr(GError) error = NULL;

        for (size_t i = 0; i < r->n; i++) {
                const char *name = sim_world_guest(r->w, i)->spec->name;
                for (guint k = 0; k < r->recs[i]->len; k++) {
                        const Rec *x = &g_array_index(r->recs[i], Rec, k);
                        g_string_append_printf(
                                s, "%.1f,%s,%d,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%.2f,%u,%.2f\n", x->t,
                                name, x->running, x->actual, x->target, x->free, x->usable, x->cache,
                                x->held, x->used, x->rep_unused, x->kills, x->rep_memtotal);
                }
        }
        if (!g_file_set_contents(path, s->str, (gssize) s->len, &error)) {
                fprintf(stderr, "memcoord-sim: %s\n", error->message);
                return -EIO;
        }
        return 0;
}

#define PLOT_MAX_GUESTS 8

/* One panel per guest (the first PLOT_MAX_GUESTS), one for the host. */
static int write_plot(Run *r, const char *png)
{
        g_autofree char *dir = g_dir_make_tmp("memcoord-sim-XXXXXX", NULL);
        g_autoptr(GString) gp = g_string_new(NULL);
        size_t shown = MIN(r->n, PLOT_MAX_GUESTS);
        const McPolicySettings *p = &r->config->policy;
        int ret = 0;

        if (!dir)
                return -EIO;
        /* In a fleet, the guests with a workload first: idle ones all look alike. */
        size_t pick[PLOT_MAX_GUESTS], k0 = 0;
        for (int pass = 0; pass < 2; pass++)
                for (size_t i = 0; i < r->n && k0 < shown; i++) {
                        const SimSchedule *sch = &sim_world_guest(r->w, i)->spec->schedule;
                        bool busy = false;
                        for (size_t j = 0; j < sch->n_steps; j++)
                                busy |= sch->steps[j].kind != SIM_STEP_IDLE &&
                                        sch->steps[j].kind != SIM_STEP_HOLD;
                        if (busy == (pass == 0))
                                pick[k0++] = i;
                }
        for (size_t i = 0; i < shown; i++) {
                g_autoptr(GString) d = g_string_new("# t actual free used target\n");
                g_autoptr(GString) dd = g_string_new("# t to reason\n");
                size_t gi = pick[i];
                for (guint k = 0; k < r->recs[gi]->len; k++) {
                        const Rec *x = &g_array_index(r->recs[gi], Rec, k);
                        if (x->running)
                                g_string_append_printf(d, "%.1f %.1f %.1f %.1f %.1f\n", x->t, x->actual,
                                                       x->free, x->used, x->target);
                        else
                                g_string_append(d, "\n");
                }
                for (guint k = 0; k < r->decisions->len; k++) {
                        const Decision *x = &g_array_index(r->decisions, Decision, k);
                        if (x->guest == gi)
                                g_string_append_printf(dd, "%.1f %.1f %d\n", x->t, x->to_mib,
                                                       x->to_mib > x->from_mib ? 1 : 0);
                }
                g_autofree char *f = g_strdup_printf("%s/g%zu.dat", dir, i);
                g_autofree char *fd = g_strdup_printf("%s/d%zu.dat", dir, i);
                (void) g_file_set_contents(f, d->str, (gssize) d->len, NULL);
                (void) g_file_set_contents(fd, dd->str, (gssize) dd->len, NULL);
        }
        g_autoptr(GString) h = g_string_new(NULL);
        for (guint k = 0; k < r->recs[0]->len; k++) {
                double sum = 0;
                for (size_t i = 0; i < r->n; i++) {
                        const Rec *x = &g_array_index(r->recs[i], Rec, k);
                        if (x->running)
                                sum += x->actual;
                }
                g_string_append_printf(h, "%.1f %.1f\n", g_array_index(r->recs[0], Rec, k).t, sum);
        }
        g_autofree char *hf = g_strdup_printf("%s/host.dat", dir);
        (void) g_file_set_contents(hf, h->str, (gssize) h->len, NULL);

        g_string_append_printf(gp,
                               "set terminal pngcairo size 1000,%zu font ',9'\nset output '%s'\n"
                               "set multiplot layout %zu,1 title '%s'\nset grid\nset key outside right\n"
                               "set ylabel 'MiB'\nset lmargin 9\nset rmargin 22\n",
                               220 * (shown + 1), png, shown + 1, r->sc->origin);
        for (size_t i = 0; i < shown; i++) {
                const char *name = sim_world_guest(r->w, pick[i])->spec->name;
                unsigned grants = 0, claims = 0;
                for (guint k = 0; k < r->decisions->len; k++) {
                        const Decision *x = &g_array_index(r->decisions, Decision, k);
                        if (x->guest == pick[i])
                                (*(x->to_mib > x->from_mib ? &grants : &claims))++;
                }
                g_string_append_printf(
                        gp,
                        "set title '%s' offset 0,-0.8\nplot '%s/g%zu.dat' u 1:2 w l lw 2 lc rgb "
                        "'#1f77b4' t 'actual', '' u 1:3 w l lc rgb '#2ca02c' t 'free', '' u 1:4 w l "
                        "lc rgb '#d62728' t 'demand (used)', '' u 1:5 w steps dt 2 lc rgb '#7f7f7f' "
                        "t 'target', %.0f w l dt 3 lc rgb '#ff7f0e' t 'T'",
                        name, dir, i, t_mib(r));
                /* Only series with points: gnuplot warns about empty ones. */
                if (grants)
                        g_string_append_printf(gp,
                                               ", '%s/d%zu.dat' u 1:($3==1?$2:1/0) w p pt 9 ps 0.6 lc rgb "
                                               "'#d62728' t 'grant'",
                                               dir, i);
                if (claims)
                        g_string_append_printf(gp,
                                               ", '%s/d%zu.dat' u 1:($3==0?$2:1/0) w p pt 11 ps 0.6 lc rgb "
                                               "'#1f77b4' t 'claim'",
                                               dir, i);
                g_string_append_c(gp, '\n');
        }
        g_string_append_printf(gp,
                               "set title 'host' offset 0,-0.8\nset xlabel 'simulated time (s)'\n"
                               "plot '%s' u 1:2 w l lw 2 lc rgb '#9467bd' t 'sum of actual'",
                               hf);
        if (p->host_budget_kib > 0)
                g_string_append_printf(gp, ", %.0f w l dt 2 lc rgb 'black' t 'budget'",
                                       mib(p->host_budget_kib));
        g_string_append(gp, "\nunset multiplot\n");

        g_autofree char *script = g_strdup_printf("%s/plot.gp", dir);
        (void) g_file_set_contents(script, gp->str, (gssize) gp->len, NULL);
        const char *argv[] = { "gnuplot", script, NULL };
        g_autoptr(GError) error = NULL;
        int status = 0;
        if (!g_spawn_sync(NULL, (char **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL, NULL, &status,
                          &error)) {
                fprintf(stderr, "memcoord-sim: --plot: cannot run gnuplot: %s\n", error->message);
                ret = -ENOENT;
        } else if (!g_spawn_check_wait_status(status, &error)) {
                fprintf(stderr, "memcoord-sim: --plot: gnuplot failed: %s\n", error->message);
                ret = -EIO;
        }
        /* Leave nothing behind. */
        g_autoptr(GDir) gd = g_dir_open(dir, 0, NULL);
        const char *fn;
        while (gd && (fn = g_dir_read_name(gd))) {
                g_autofree char *pth = g_build_filename(dir, fn, NULL);
                (void) g_unlink(pth);
        }
        (void) g_rmdir(dir);
        return ret;
}

/* ---- arguments and configuration ---- */

static void list_model(void)
{
        printf("[Model] parameters (also per guest in [Guest NAME]); defaults are the measured values:\n\n");
        for (size_t i = 0; i < sim_model_n_params; i++) {
                const SimParam *p = &sim_model_params[i];
                double v = sim_model_get(&sim_model_defaults, p);
                if (p->type == SIM_PARAM_BOOL)
                        printf("  %-20s %-8s %s\n", p->key, v != 0 ? "true" : "false", p->doc);
                else
                        printf("  %-20s %-8g %s%s%s\n", p->key, v, p->unit[0] ? p->unit : "",
                               p->unit[0] ? ": " : "", p->doc);
        }
}

/* --set KEY=VALUE: a [Coordinator] key, or Model.KEY for a model parameter (every guest). */
static bool apply_set(McConfig *c, SimScenario *sc, const char *kv, GError **error)
{
        const char *eq = strchr(kv, '=');

        if (!eq || eq == kv) {
                g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                            "--set '%s': expected KEY=VALUE", kv);
                return false;
        }
        g_autofree char *key = g_strndup(kv, (gsize) (eq - kv));
        if (g_str_has_prefix(key, "Model.")) {
                const SimParam *p = sim_model_param(key + 6);
                char *end = NULL;
                double v;
                if (!p) {
                        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                    "--set %s: no model parameter '%s' (see --list-model)", key, key + 6);
                        return false;
                }
                if (p->type == SIM_PARAM_BOOL &&
                    (g_str_equal(eq + 1, "true") || g_str_equal(eq + 1, "false")))
                        v = g_str_equal(eq + 1, "true");
                else {
                        v = g_ascii_strtod(eq + 1, &end);
                        if (end == eq + 1 || *end != '\0' || v < p->lo || v > p->hi) {
                                g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                                            "--set %s: '%s' is not a number in [%g, %g]", key, eq + 1, p->lo,
                                            p->hi);
                                return false;
                        }
                }
                sim_model_set(&sc->model, p, v);
                for (guint i = 0; i < sc->guests->len; i++)
                        sim_model_set(&((SimGuestSpec *) g_ptr_array_index(sc->guests, i))->model, p, v);
                return true;
        }
        g_autofree char *text = g_strdup_printf("[Coordinator]\n%s\n", kv);
        g_autoptr(GError) e = NULL;
        if (mc_config_load_data(c, text, "--set", &e))
                return true;
        /* The parser numbers the lines of the text made here: name the argument instead. */
        const char *msg =
                g_str_has_prefix(e->message, "--set:2: ") ? e->message + strlen("--set:2: ") : e->message;
        g_set_error(error, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "--set %s: %s", kv, msg);
        return false;
}

static int parse_args(int argc, char **argv, Args *a)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GOptionContext) ctx = NULL;
        GOptionEntry entries[] = {
                { "config", 'C', 0, G_OPTION_ARG_FILENAME, &a->config,
                  "A memcoord.conf applied over the scenario's [Settings]", "FILE" },
                { "set", 's', 0, G_OPTION_ARG_STRING_ARRAY, &a->set,
                  "A setting over both: a [Coordinator] key (HostBudget=1500M) or Model.KEY (a model "
                  "parameter); repeatable",
                  "KEY=VALUE" },
                { "duration", 'd', 0, G_OPTION_ARG_DOUBLE, &a->duration,
                  "Simulated seconds (default: the scenario's DurationSec, else its last schedule + 10 s)",
                  "S" },
                { "sample", 0, 0, G_OPTION_ARG_DOUBLE, &a->sample,
                  "Seconds between two recorded samples (default 1, as the real-guest sampler)", "S" },
                { "json", 'j', 0, G_OPTION_ARG_NONE, &a->json, "Print the outcome as JSON", NULL },
                { "plot", 'p', 0, G_OPTION_ARG_FILENAME, &a->plot,
                  "Draw actual, free, demand and decisions over time per guest (gnuplot)", "FILE.png" },
                { "csv", 0, 0, G_OPTION_ARG_FILENAME, &a->csv, "Write every sample of every guest", "FILE" },
                { "check", 'c', 0, G_OPTION_ARG_NONE, &a->check,
                  "Exit 2 if an invariant was crossed (host floor, budget, claim fraction, stale stats)",
                  NULL },
                { "check-claim-fraction", 0, 0, G_OPTION_ARG_DOUBLE, &a->check_claim_fraction,
                  "With --check: claims above this share of unused count as crossed (default: the "
                  "configured ClaimFraction)",
                  "F" },
                { "list-model", 0, 0, G_OPTION_ARG_NONE, &a->list_model,
                  "List the model parameters with their defaults and exit", NULL },
                { "verbose", 'v', 0, G_OPTION_ARG_NONE, &a->verbose, "Show the daemon's log (stderr)",
                  NULL },
                { "version", 'V', 0, G_OPTION_ARG_NONE, &a->version, "Print the version and exit", NULL },
                {},
        };

        ctx = g_option_context_new("SCENARIO - run memcoordd's policy on a simulated host");
        g_option_context_set_summary(
                ctx,
                "Runs memcoordd's own manager and policy on the simulator (a scenario file: a host,\n"
                "guests with workload schedules, settings, faults) with a virtual clock, as fast as the\n"
                "CPU allows, and prints per guest: OOM kills, seconds below the domain threshold T,\n"
                "the lowest free and usable memory, the peak actual, the largest claim as a share of\n"
                "unused, memory returned within 60 s of a workload's end and direction reversals per\n"
                "minute at steady load; per run: the sum of actual over time, the lowest host and\n"
                "budget headroom and the CPU time per tick.");
        g_option_context_set_description(
                ctx,
                "Settings: the scenario's [Settings] (memcoord.conf's [Coordinator] keys), then --config,\n"
                "then --set, in that order. Scenario files: tests/sim/*.ini and tests/sim/README.md.\n"
                "Exit status: 0 done, 1 bad arguments, scenario or settings, 2 an invariant was crossed\n"
                "(--check), 3 the run failed. See memcoord-sim(1).");
        g_option_context_add_main_entries(ctx, entries, NULL);
        if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
                fprintf(stderr, "memcoord-sim: %s (try --help)\n", error->message);
                return -EINVAL;
        }
        if (a->version || a->list_model)
                return 0;
        if (argc != 2) {
                fprintf(stderr, "memcoord-sim: %s (try --help)\n",
                        argc < 2 ? "expected a scenario file" : "expected one scenario file");
                return -EINVAL;
        }
        a->scenario = g_strdup(argv[1]);
        if (a->check_claim_fraction < 0 || a->check_claim_fraction > 1) {
                fprintf(stderr, "memcoord-sim: --check-claim-fraction: a share from 0 to 1\n");
                return -EINVAL;
        }
        if (a->duration < 0 || a->sample < 0 || (a->sample > 0 && a->sample < 0.1)) {
                fprintf(stderr,
                        "memcoord-sim: --duration and --sample must be positive (--sample >= 0.1)\n");
                return -EINVAL;
        }
        return 0;
}

static void args_clear(Args *a)
{
        g_free(a->scenario);
        g_free(a->config);
        g_strfreev(a->set);
        g_free(a->plot);
        g_free(a->csv);
}

static int run(int argc, char **argv)
{
        __attribute__((cleanup(args_clear))) Args args = {};
        g_autoptr(GError) error = NULL;
        g_autoptr(SimScenario) sc = NULL;
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        g_autoptr(McManager) m = NULL;
        Run r = { .args = &args };
        int ret = EXIT_SUCCESS;

        if (parse_args(argc, argv, &args) < 0)
                return EXIT_BAD_INPUT;
        if (args.version) {
                printf("memcoord-sim %s\n", MC_VERSION);
                return EXIT_SUCCESS;
        }
        if (args.list_model) {
                list_model();
                return EXIT_SUCCESS;
        }
        if (args.sample == 0)
                args.sample = 1;
        mc_log_setup();
        mc_log_set_max_level(args.verbose ? LOG_DEBUG : LOG_ERR);

        sc = sim_scenario_load_file(args.scenario, &error);
        if (!sc) {
                fprintf(stderr, "memcoord-sim: %s\n", error->message);
                return EXIT_BAD_INPUT;
        }

        g_autoptr(McConfig) config = mc_config_new();
        g_autofree char *conf_text = sim_scenario_config_text(sc);
        if (!mc_config_load_data(config, conf_text, args.scenario, &error) ||
            (args.config && !mc_config_load_file(config, args.config, &error))) {
                fprintf(stderr, "memcoord-sim: %s\n", error->message);
                return EXIT_BAD_INPUT;
        }
        for (size_t i = 0; args.set && args.set[i]; i++)
                if (!apply_set(config, sc, args.set[i], &error)) {
                        fprintf(stderr, "memcoord-sim: %s\n", error->message);
                        return EXIT_BAD_INPUT;
                }
        double duration = args.duration > 0    ? args.duration
                          : sc->duration_s > 0 ? sc->duration_s
                                               : sim_scenario_default_duration(sc);

        g_free(config->uri);
        config->uri = g_strconcat("sim:", args.scenario, NULL);
        r.config = config;
        int rr = sd_event_new(&e);
        if (rr >= 0)
                rr = mc_manager_new(e, g_steal_pointer(&config), NULL, NULL, &m);
        if (rr < 0) {
                fprintf(stderr, "memcoord-sim: cannot set up the daemon's manager: %s\n", g_strerror(-rr));
                return rr == -EINVAL || rr == -ENOENT ? EXIT_BAD_INPUT : EXIT_RUN_FAILED;
        }
        r.m = m;
        r.h = m->hypervisor;
        if (!mc_sim_world(r.h)) {
                fprintf(stderr, "memcoord-sim: the manager did not open the simulator\n");
                return EXIT_RUN_FAILED;
        }
        /* The hypervisor loaded the file itself: hand it the scenario as --set edited it. */
        mc_sim_set_manual_clock(r.h, true);
        mc_sim_set_scenario(r.h, g_steal_pointer(&sc));
        r.w = mc_sim_world(r.h);
        r.sc = (SimScenario *) sim_world_scenario(r.w);
        McSimObserver obs = { .target_set = on_target_set };
        mc_sim_set_observer(r.h, &obs, &r);
        McManagerListener l = { .balloon_changed = on_balloon_changed };
        mc_manager_set_listener(m, &l, &r);

        r.n = sim_world_n_guests(r.w);
        r.recs = g_new0(GArray *, r.n);
        r.pending_kib = g_new0(uint64_t, r.n);
        for (size_t i = 0; i < r.n; i++)
                r.recs[i] = g_array_new(FALSE, FALSE, sizeof(Rec));
        r.decisions = g_array_new(FALSE, FALSE, sizeof(Decision));
        r.violations = g_array_new(FALSE, FALSE, sizeof(Violation));
        r.lowest_host_headroom_mib = r.lowest_budget_headroom_mib = r.lowest_commit_headroom_mib = INFINITY;

        (void) simulate(&r, e, duration);

        g_autofree Outcome *o = g_new0(Outcome, r.n);
        for (size_t i = 0; i < r.n; i++)
                outcome_of(&r, i, &o[i]);
        if (args.json)
                print_json(&r, o);
        else if (print_text(&r, o) < 0)
                ret = EXIT_RUN_FAILED;
        if (args.csv && write_csv(&r, args.csv) < 0)
                ret = EXIT_RUN_FAILED;
        if (args.plot && write_plot(&r, args.plot) < 0)
                ret = EXIT_RUN_FAILED;
        if (args.check && r.violations->len > 0 && ret == EXIT_SUCCESS)
                ret = EXIT_CHECK_FAILED;

        for (size_t i = 0; i < r.n; i++)
                g_array_unref(r.recs[i]);
        g_free(r.recs);
        g_free(r.pending_kib);
        g_array_unref(r.decisions);
        for (guint k = 0; k < r.violations->len; k++)
                g_free(g_array_index(r.violations, Violation, k).what);
        g_array_unref(r.violations);
        m = mc_manager_free(g_steal_pointer(&m));
        return ret;
}

int main(int argc, char **argv)
{
        return run(argc, argv);
}
