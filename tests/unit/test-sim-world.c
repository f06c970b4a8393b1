/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The simulator's world model and its scenario parser. */

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <string.h>

#include "sim-world.h"

#define SEC(s) ((uint64_t) ((s) *1e6))

/*
 * The model these tests pin (round figures, not the calibrated defaults, which move when the
 * model is recalibrated); a test's own [Model] keys come later and win.
 */
#define BASE_MODEL                                                                                       \
        "[Model]\nKernelBaseMiB=91\nKernelGrowth=0.08\nKernelDriftMiB=0\nReserveMiB=65\nReclaimFreeMiB=" \
        "65\n"                                                                                           \
        "OomFreeMiB=47\nBalloonFloorFreeMiB=50\nInflateMiBs=150\nDeflateMiBs=150\nTouchMiBs=100\n"       \
        "ActualThrottleSec=1\nFreezeSec=4\nFreezeAfterChange=true\nAutodeflateMiBs=1000\n"

static SimScenario *load(const char *text)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *full = g_strconcat(BASE_MODEL, text, NULL);
        SimScenario *sc = sim_scenario_load_data(full, "test.ini", &error);

        g_assert_no_error(error);
        g_assert_nonnull(sc);
        return sc;
}

static void assert_parse_error(const char *text, const char *expect)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(SimScenario) sc = sim_scenario_load_data(text, "test.ini", &error);

        if (sc)
                g_error("'%s' parsed; expected '%s'", text, expect);
        g_assert_nonnull(error);
        if (!strstr(error->message, expect))
                g_error("expected '%s' in '%s'", expect, error->message);
}

/* An idle guest is 91 MiB of kernel and the rest free; reported figures match the truth. */
static void test_idle_guest(void)
{
        g_autoptr(SimScenario) sc = load("[Guest a]\nCurrentMiB=512\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g;

        sim_world_advance_to(w, SEC(5));
        g = sim_world_guest(w, 0);
        g_assert_true(g->running);
        g_assert_cmpfloat_with_epsilon(g->free_mib, 512 - 91, 1e-6);
        g_assert_true(g->sample.valid);
        g_assert_cmpfloat_with_epsilon(g->sample.unused_mib, 421, 1e-6);
        g_assert_cmpfloat_with_epsilon(g->sample.usable_mib, 421 - 65, 1e-6);
        g_assert_cmpfloat_with_epsilon(sim_guest_reported_actual_mib(g), 512, 1e-6);
        g_assert_cmpfloat_with_epsilon(sim_world_host_free_mib(w), 24576 - 512, 1e-6);
}

/* The workload follows its schedule; the kernel grows 8 % of it. */
static void test_schedule_and_kernel(void)
{
        g_autoptr(SimScenario) sc = load("[Guest a]\nCurrentMiB=1024\nMaxMiB=1024\n"
                                         "Schedule=idle:10,ramp:600:60,hold:10,free,idle\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g = sim_world_guest(w, 0);

        sim_world_advance_to(w, SEC(40));
        g_assert_cmpfloat_with_epsilon(g->held_mib, 300, 1.5);
        sim_world_advance_to(w, SEC(75));
        g_assert_cmpfloat_with_epsilon(g->held_mib, 600, 1e-6);
        /* 91 + 8 % of what it holds. */
        g_assert_cmpfloat_with_epsilon(g->held_mib + g->kernel_mib, 739, 1e-6);
        sim_world_advance_to(w, SEC(81));
        g_assert_cmpfloat_with_epsilon(g->held_mib, 0, 1e-6);
        g_assert_cmpuint(g->oom_kills, ==, 0);
}

/* The balloon moves at a finite speed; libvirt's figure changes at most once a throttle period. */
static void test_balloon_speed_and_throttle(void)
{
        g_autoptr(SimScenario) sc = load("[Model]\nInflateMiBs=100\n[Guest a]\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g = sim_world_guest(w, 0);

        sim_world_advance_to(w, SEC(5));
        g_assert_cmpint(sim_world_set_target(w, g, 312), ==, 0);
        sim_world_advance_to(w, SEC(5.1));
        /* The first move is reported at once ... */
        g_assert_cmpfloat_with_epsilon(sim_guest_reported_actual_mib(g), 502, 1e-6);
        sim_world_advance_to(w, SEC(6));
        g_assert_cmpfloat_with_epsilon(g->actual_mib, 412, 1e-6); /* 100 MiB/s */
        /* ... the next ones once a second, with the size at that moment. */
        g_assert_cmpfloat_with_epsilon(sim_guest_reported_actual_mib(g), 502, 1e-6);
        sim_world_advance_to(w, SEC(6.1));
        g_assert_cmpfloat_with_epsilon(sim_guest_reported_actual_mib(g), 402, 1e-6);
        sim_world_advance_to(w, SEC(7));
        g_assert_cmpfloat_with_epsilon(g->actual_mib, 312, 1e-6);
        g_assert_cmpfloat_with_epsilon(sim_guest_reported_actual_mib(g), 402, 1e-6);
        sim_world_advance_to(w, SEC(7.1));
        g_assert_cmpfloat_with_epsilon(sim_guest_reported_actual_mib(g), 312, 1e-6);
        sim_world_advance_to(w, SEC(20));
        g_assert_cmpfloat_with_epsilon(sim_guest_reported_actual_mib(g), 312, 1e-6);
}

/* After a grant the guest reports its first sample after the change for FreezeSec while the
 * stamp advances; claims do not freeze; FreezeAfterChange=false keeps the last one before. */
static void test_frozen_unused(void)
{
        g_autoptr(SimScenario) sc =
                load("[Model]\nDeflateMiBs=1000\n[Guest a]\nSchedule=idle:5,ramp:200:20,hold\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g = sim_world_guest(w, 0);

        /* The guest starts at the first sub-step (0.1 s) and samples 0.5 s later, every second. */
        sim_world_advance_to(w, SEC(10));
        double before = g->sample.unused_mib;
        g_assert_cmpint(sim_world_set_target(w, g, 600), ==, 0);
        sim_world_advance_to(w, SEC(10.6)); /* the first sample after: the grant is in it */
        double first = g->sample.unused_mib;
        uint64_t stamp = g->sample.at_usec;
        g_assert_cmpfloat(first, >, before + 70); /* +88, less a second of the ramp */
        g_assert_cmpfloat_with_epsilon(first, g->free_mib, 1e-9);
        sim_world_advance_to(w, SEC(13.9));
        g_assert_cmpuint(g->sample.at_usec, >, stamp + SEC(2.5));
        g_assert_cmpfloat_with_epsilon(g->sample.unused_mib, first, 1e-9);
        g_assert_cmpfloat(fabs(g->free_mib - first), >, 30); /* the truth moved */
        sim_world_advance_to(w, SEC(14.6));
        g_assert_cmpfloat_with_epsilon(g->sample.unused_mib, g->free_mib, 1e-9); /* 4 s after the change */

        /* A claim does not freeze (FreezeOnInflate=false by default). */
        sim_world_advance_to(w, SEC(30));
        g_assert_cmpint(sim_world_set_target(w, g, 560), ==, 0);
        sim_world_advance_to(w, SEC(32.1));
        g_assert_cmpfloat_with_epsilon(g->sample.unused_mib, g->free_mib, 11.0); /* one sample period */

        g_autoptr(SimScenario) sc2 = load("[Model]\nFreezeAfterChange=false\nDeflateMiBs=1000\n[Guest a]\n");
        g_autoptr(SimWorld) w2 = sim_world_new(sc2);
        g = sim_world_guest(w2, 0);
        sim_world_advance_to(w2, SEC(10));
        before = g->sample.unused_mib;
        g_assert_cmpint(sim_world_set_target(w2, g, 600), ==, 0);
        sim_world_advance_to(w2, SEC(13.9));
        g_assert_cmpfloat_with_epsilon(g->sample.unused_mib, before, 1e-9);
        g_assert_cmpfloat_with_epsilon(g->free_mib, before + 88, 1e-6);
}

/* The kernel's drift while the workload holds, gone when it frees. */
static void test_kernel_drift(void)
{
        g_autoptr(SimScenario) sc = load("[Model]\nKernelDriftMiB=15\nKernelDriftSec=30\n[Guest a]\n"
                                         "Schedule=jump:100,hold:60,free,idle\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g = sim_world_guest(w, 0);

        sim_world_advance_to(w, SEC(16));
        g_assert_cmpfloat_with_epsilon(g->kernel_mib, 91 + 8 + 7.5, 0.6); /* ~15.8 s held */
        sim_world_advance_to(w, SEC(50));
        g_assert_cmpfloat_with_epsilon(g->kernel_mib, 91 + 8 + 15, 1e-6);
        sim_world_advance_to(w, SEC(62));
        g_assert_cmpfloat_with_epsilon(g->kernel_mib, 91, 1e-6);
}

/* Demand above the balloon: killed at OomFreeMiB, and what it held is free again. */
static void test_oom_point(void)
{
        g_autoptr(SimScenario) sc = load("[Guest a]\nSchedule=idle:1,ramp:500:50,hold\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g = sim_world_guest(w, 0);
        double lowest = INFINITY;

        for (uint64_t t = SEC(1); t < SEC(60) && g->oom_kills == 0; t += SEC(0.1)) {
                sim_world_advance_to(w, t);
                lowest = MIN(lowest, g->free_mib);
        }
        g_assert_cmpuint(g->oom_kills, ==, 1);
        g_assert_cmpfloat(lowest, >=, 47 - 1.1);
        g_assert_cmpfloat(lowest, <, 48);
        /* 512 = 91 + 1.08 x held + 47: killed near 346 MiB held. */
        g_assert_true(g->dead);
        g_assert_cmpfloat_with_epsilon(g->held_mib, 0, 1e-9);
        g_assert_cmpfloat_with_epsilon(g->free_mib, 421, 1e-6);
        sim_world_advance_to(w, SEC(70));
        g_assert_cmpuint(g->oom_kills, ==, 1);
}

/* A page-cache read fills free memory down to the low watermark and is reclaimed under
 * pressure and by an inflating balloon. */
static void test_cache(void)
{
        g_autoptr(SimScenario) sc = load("[Guest a]\nCurrentMiB=1024\nMaxMiB=1024\n"
                                         "Schedule=idle:2,cache:1500:15,ramp:300:10,hold\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g = sim_world_guest(w, 0);

        sim_world_advance_to(w, SEC(4));
        g_assert_cmpfloat_with_epsilon(g->cache_mib, 200, 11);
        sim_world_advance_to(w, SEC(16));
        /* Full: free held at the watermark, the rest is cache; usable counts the cache. */
        g_assert_cmpfloat_with_epsilon(g->free_mib, 65, 1e-6);
        g_assert_cmpfloat_with_epsilon(g->cache_mib, 1024 - 91 - 65, 1e-6);
        g_assert_cmpfloat_with_epsilon(g->sample.usable_mib, 1024 - 91 - 65, 1.0);
        g_assert_cmpfloat_with_epsilon(g->sample.unused_mib, 65, 1.0);
        /* The workload grows: cache gives way, nobody dies. */
        sim_world_advance_to(w, SEC(30));
        g_assert_cmpuint(g->oom_kills, ==, 0);
        g_assert_cmpfloat_with_epsilon(g->cache_mib, 1024 - 91 - 65 - 300 * 1.08, 1e-6);
        /* The balloon takes cache first. */
        double free_before = g->free_mib;
        g_assert_cmpint(sim_world_set_target(w, g, 824), ==, 0);
        sim_world_advance_to(w, SEC(35));
        g_assert_cmpfloat_with_epsilon(g->actual_mib, 824, 1e-6);
        g_assert_cmpfloat_with_epsilon(g->free_mib, free_before, 1e-6);
}

/* The balloon cannot take memory in use: it stalls above the floor. */
static void test_balloon_stalls(void)
{
        g_autoptr(SimScenario) sc = load("[Guest a]\nSchedule=jump:300,hold\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g = sim_world_guest(w, 0);

        sim_world_advance_to(w, SEC(5));
        g_assert_cmpint(sim_world_set_target(w, g, 256), ==, 0);
        sim_world_advance_to(w, SEC(10));
        g_assert_true(g->stalled);
        g_assert_cmpfloat_with_epsilon(g->free_mib, 50, 1e-6);
        g_assert_cmpfloat(g->actual_mib, >, 256);
        g_assert_cmpuint(g->oom_kills, ==, 0);
}

/* With autodeflate the guest gives its balloon back itself and lives; the target is lost. */
static void test_autodeflate(void)
{
        g_autoptr(SimScenario) sc = load("[Guest a]\nCurrentMiB=290\nAutodeflate=true\n"
                                         "Schedule=idle:2,jump:500,hold:20,free,idle\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *g = sim_world_guest(w, 0);

        sim_world_advance_to(w, SEC(15));
        g_assert_cmpuint(g->oom_kills, ==, 0);
        g_assert_cmpfloat_with_epsilon(g->held_mib, 500, 1e-6);
        /* It lives at the OOM point: kernel (91 + 8 %) + 500 + 47. */
        g_assert_cmpfloat_with_epsilon(g->actual_mib, 91 + 540 + 47, 1e-6);
        g_assert_cmpfloat_with_epsilon(g->target_mib, g->actual_mib, 1e-9);
        g_assert_cmpfloat_with_epsilon(g->sample.available_mib, 1024, 1e-9);

        /* A slow deflate: the workload waits for it, crawling at the deflate's pace. */
        g_autoptr(SimScenario) slow =
                load("[Model]\nAutodeflateMiBs=13\n[Guest a]\nCurrentMiB=290\nAutodeflate=true\n"
                     "Schedule=idle:2,jump:500,hold:60\n");
        g_autoptr(SimWorld) ws = sim_world_new(slow);
        SimGuest *gs = sim_world_guest(ws, 0);
        sim_world_advance_to(ws, SEC(10));
        double held10 = gs->held_mib, actual10 = gs->actual_mib;
        sim_world_advance_to(ws, SEC(20));
        g_assert_cmpuint(gs->oom_kills, ==, 0);
        g_assert_cmpfloat_with_epsilon(gs->actual_mib - actual10, 130, 1e-6);
        g_assert_cmpfloat_with_epsilon(gs->held_mib - held10, 130 / 1.08, 1e-6);
        g_assert_cmpfloat_with_epsilon(gs->free_mib, 47, 1e-6);

        /* Without it, the same guest is killed. */
        g_autoptr(SimScenario) sc2 = load("[Guest a]\nCurrentMiB=290\nSchedule=idle:2,jump:500,hold:20\n");
        g_autoptr(SimWorld) w2 = sim_world_new(sc2);
        sim_world_advance_to(w2, SEC(15));
        g_assert_cmpuint(sim_world_guest(w2, 0)->oom_kills, ==, 1);
}

/* A guest without a balloon driver reports nothing and cannot be resized; stale stats keep
 * their stamp. */
static void test_noballoon_and_stale(void)
{
        g_autoptr(SimScenario) sc = load("[Guest nb]\nBalloon=false\n[Guest st]\n"
                                         "[Fault s]\nKind=stale\nGuest=st\nFromSec=5\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        SimGuest *nb = sim_world_find(w, "nb"), *st = sim_world_find(w, "st");

        sim_world_advance_to(w, SEC(10));
        g_assert_false(nb->sample.valid);
        g_assert_cmpint(sim_world_set_target(w, nb, 400), ==, -EOPNOTSUPP);
        g_assert_cmpuint(nb->set_without_balloon, ==, 1);
        g_assert_true(st->sample.valid);
        g_assert_cmpuint(st->sample.at_usec, <=, SEC(5));
        g_assert_cmpfloat(sim_guest_sample_age_s(st, sim_world_now(w)), >, 5);
        g_assert_cmpint(sim_world_set_target(w, st, 400), ==, 0);
        g_assert_cmpuint(st->set_while_stale, ==, 1);
}

static void on_event(void *userdata, SimEvent ev, SimGuest *g)
{
        GString *log = userdata;

        g_string_append_printf(log, "%d:%s ", ev, g ? g->spec->name : "-");
}

/* Guests come and go at their times; events say so. */
static void test_lifecycle(void)
{
        g_autoptr(SimScenario) sc = load("[Guest a]\n[Guest b]\nStartSec=3\nStopSec=6\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        g_autoptr(GString) log = g_string_new(NULL);

        sim_world_set_event_fn(w, on_event, log);
        sim_world_advance_to(w, SEC(2));
        g_assert_false(sim_world_find(w, "b")->running);
        sim_world_advance_to(w, SEC(4));
        g_assert_true(sim_world_find(w, "b")->running);
        g_assert_cmpfloat_with_epsilon(sim_world_host_free_mib(w), 24576 - 1024, 1e-6);
        sim_world_advance_to(w, SEC(7));
        g_assert_false(sim_world_find(w, "b")->running);
        g_assert_cmpint(sim_world_set_target(w, sim_world_find(w, "b"), 300), ==, -ENOENT);
        g_assert_cmpstr(log->str, ==, "0:a 0:b 1:b ");
}

/* Failing calls, a connection lost on the Nth set_target, busy guests. */
static void test_faults(void)
{
        g_autoptr(SimScenario) sc =
                load("[Guest a]\n"
                     "[Fault f]\nKind=fail\nCall=collect\nFromSec=2\nUntilSec=3\nErrno=EIO\n"
                     "[Fault l]\nKind=lose\nOnSetTarget=2\nDownSec=5\n"
                     "[Fault b]\nKind=busy\nGuest=a\nFromSec=20\nUntilSec=25\n");
        g_autoptr(SimWorld) w = sim_world_new(sc);
        bool lost;

        g_assert_cmpint(sim_world_call(w, SIM_CALL_COLLECT, &lost), ==, 0);
        sim_world_advance_to(w, SEC(2.5));
        g_assert_cmpint(sim_world_call(w, SIM_CALL_COLLECT, &lost), ==, -EIO);
        sim_world_advance_to(w, SEC(3.5));
        g_assert_cmpint(sim_world_call(w, SIM_CALL_COLLECT, &lost), ==, 0);
        g_assert_cmpint(sim_world_call(w, SIM_CALL_SET_TARGET, &lost), ==, 0);
        g_assert_false(lost);
        g_assert_cmpint(sim_world_call(w, SIM_CALL_SET_TARGET, &lost), ==, -ENOTCONN);
        g_assert_true(lost);
        g_assert_cmpint(sim_world_call(w, SIM_CALL_COLLECT, &lost), ==, -ENOTCONN);
        g_assert_false(lost);
        g_assert_cmpint(sim_world_call(w, SIM_CALL_CONNECT, NULL), ==, -ECONNREFUSED);
        sim_world_advance_to(w, SEC(9));
        g_assert_cmpint(sim_world_call(w, SIM_CALL_CONNECT, NULL), ==, 0);
        g_assert_cmpint(sim_world_call(w, SIM_CALL_SET_TARGET, &lost), ==, 0);
        sim_world_advance_to(w, SEC(21));
        g_assert_true(sim_guest_busy(w, sim_world_guest(w, 0)));
        g_assert_cmpint(sim_world_set_target(w, sim_world_guest(w, 0), 400), ==, -EBUSY);
        sim_world_advance_to(w, SEC(26));
        g_assert_false(sim_guest_busy(w, sim_world_guest(w, 0)));
}

/* The same file gives the same trajectory, step for step. */
static void test_determinism(void)
{
        const char *text = "[Guest a]\nSchedule=idle:3,saw:300:10:4,cache:400,idle\n"
                           "[Guest b]\nAutodeflate=true\nCurrentMiB=300\nSchedule=jump:400,hold:10,free\n";
        g_autoptr(SimScenario) s1 = load(text), s2 = load(text);
        g_autoptr(SimWorld) w1 = sim_world_new(s1), w2 = sim_world_new(s2);

        for (uint64_t t = 0; t <= SEC(60); t += SEC(0.7)) {
                sim_world_advance_to(w1, t);
                sim_world_advance_to(w2, t);
                if (t % SEC(2.1) == 0) {
                        (void) sim_world_set_target(w1, sim_world_guest(w1, 0), 300 + (double) (t % 200));
                        (void) sim_world_set_target(w2, sim_world_guest(w2, 0), 300 + (double) (t % 200));
                }
                for (size_t i = 0; i < 2; i++) {
                        SimGuest *a = sim_world_guest(w1, i), *b = sim_world_guest(w2, i);
                        g_assert_true(a->actual_mib == b->actual_mib);
                        g_assert_true(a->free_mib == b->free_mib);
                        g_assert_true(a->sample.unused_mib == b->sample.unused_mib);
                        g_assert_true(a->sample.at_usec == b->sample.at_usec);
                }
        }
}

static void test_schedule_grammar(void)
{
        SimSchedule s;
        g_autofree char *why = NULL;

        g_assert_cmpint(sim_schedule_parse("idle:20,ramp:600:75,hold:15,free,idle:40", &s, &why), ==, 0);
        g_assert_cmpuint(s.n_steps, ==, 5);
        g_assert_cmpfloat_with_epsilon(s.end_s, 150, 1e-9);
        g_assert_cmpfloat_with_epsilon(sim_schedule_anon_mib(&s, 57.5), 300, 1e-9);
        sim_schedule_clear(&s);

        /* Relative sizes and G, as memdemand. */
        g_assert_cmpint(sim_schedule_parse("jump:1G,to:-512:10,jump:+100", &s, &why), ==, 0);
        g_assert_cmpfloat_with_epsilon(sim_schedule_anon_mib(&s, 100), 612, 1e-9);
        sim_schedule_clear(&s);

        /* Cycles expand: triangle up/down, and a sawtooth back to where it started. */
        g_assert_cmpint(sim_schedule_parse("jump:100,cycle:100:300:20:3,saw:+200:10:2", &s, &why), ==, 0);
        g_assert_cmpfloat_with_epsilon(sim_schedule_anon_mib(&s, 10), 300, 1e-9);
        g_assert_cmpfloat_with_epsilon(sim_schedule_anon_mib(&s, 20), 100, 1e-9);
        g_assert_cmpfloat_with_epsilon(sim_schedule_anon_mib(&s, 65), 200, 1e-9);
        g_assert_cmpfloat_with_epsilon(sim_schedule_anon_mib(&s, 70), 100, 1e-9);
        g_assert_cmpfloat_with_epsilon(s.end_s, 80, 1e-9);
        sim_schedule_clear(&s);

        static const struct {
                const char *text, *why;
        } bad[] = {
                { "idle,ramp:10:1", "step 2 'ramp:10:1': a step follows one that lasts forever" },
                { "ramp:10", "step 1 'ramp:10': expected ramp:SIZE:SECS" },
                { "idle:20,jump:x", "step 2 'jump:x': expected jump:SIZE" },
                { "walk:3", "unknown step" },
                { "cache:+100", "expected cache:SIZE[:SECS]" },
                { "cycle:1:2:3:0.5", "expected cycle:LOW:HIGH:PERIOD[:COUNT]" },
        };
        for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
                g_clear_pointer(&why, g_free);
                g_assert_cmpint(sim_schedule_parse(bad[i].text, &s, &why), ==, -EINVAL);
                if (!strstr(why, bad[i].why))
                        g_error("'%s': expected '%s', got '%s'", bad[i].text, bad[i].why, why);
        }
}

static void test_parser_errors(void)
{
        assert_parse_error("[Host]\nTotalMiB=1000\n\n[Guest a]\nSchedule=idle:20,ramp:10\n",
                           "test.ini:5: Schedule: step 2 'ramp:10': expected ramp:SIZE:SECS");
        assert_parse_error("[Guest a]\nCurrentMiB=abc\n", "test.ini:2: CurrentMiB: 'abc' is not a number");
        assert_parse_error("[Guest a]\nCurrentMiB=900\nMaxMiB=800\n", "test.ini:2: CurrentMiB (900)");
        assert_parse_error("# c\n[Guest a]\n[Model]\nOomFreeMiB=x\n", "test.ini:4: OomFreeMiB");
        assert_parse_error("[Model]\nBogus=1\n[Guest a]\n", "test.ini:2: unknown model parameter 'Bogus'");
        assert_parse_error("[Guest a]\n[Guest]\n", "test.ini:2: unknown section [Guest]");
        assert_parse_error("[Guest a]\n[Fault x]\nKind=busy\n",
                           "test.ini:2: [Fault x]: Kind=busy needs Guest=");
        assert_parse_error("[Guest a]\n[Fault x]\nKind=stale\nGuest=b\n", "test.ini:4: Guest: no guest 'b'");
        assert_parse_error("[Guest a]\n[Fault x]\nKind=explode\n", "test.ini:3: Kind: 'explode'");
        assert_parse_error("[Host]\nTotalMiB=1\n", "no [Guest NAME] section");
        assert_parse_error("[Guest a]\nfoo\n", "test.ini:2:");
        assert_parse_error("[Guest a]\nStartSec=10\nStopSec=5\n", "test.ini:3: StopSec must come after");
}

/* Count= makes fleets; per-guest model keys override [Model]; [Settings] keeps its lines. */
static void test_parser_features(void)
{
        g_autoptr(GError) error = NULL;
        /* Not load(): the line numbers of [Settings] are this text's own. */
        g_autoptr(SimScenario) sc =
                sim_scenario_load_data("[Scenario]\nDurationSec=90\n[Model]\nKernelBaseMiB=80\n"
                                       "[Settings]\nDomainThreshold=120M\n"
                                       "[Guest idle]\nCount=50\nStaggerSec=1\n"
                                       "[Guest special]\nKernelBaseMiB=100\n"
                                       "[Domain special]\nWeight=200\n",
                                       "test.ini", &error);
        g_assert_no_error(error);
        g_assert_cmpuint(sc->guests->len, ==, 51);
        const SimGuestSpec *g0 = g_ptr_array_index(sc->guests, 0), *g49 = g_ptr_array_index(sc->guests, 49),
                           *sp = g_ptr_array_index(sc->guests, 50);
        g_assert_cmpstr(g0->name, ==, "idle-01");
        g_assert_cmpstr(g49->name, ==, "idle-50");
        g_assert_cmpfloat_with_epsilon(g49->start_s, 49, 1e-9);
        g_assert_cmpfloat_with_epsilon(g0->model.kernel_base_mib, 80, 1e-9);
        g_assert_cmpfloat_with_epsilon(sp->model.kernel_base_mib, 100, 1e-9);
        g_assert_cmpstr(g0->uuid, !=, sp->uuid);
        g_assert_cmpfloat_with_epsilon(sc->duration_s, 90, 1e-9);

        g_autofree char *conf = sim_scenario_config_text(sc);
        g_auto(GStrv) lines = g_strsplit(conf, "\n", -1);
        g_assert_cmpstr(lines[4], ==, "[Coordinator]");
        g_assert_cmpstr(lines[5], ==, "DomainThreshold=120M");
        g_assert_cmpstr(lines[6], ==, "");
        g_assert_cmpstr(lines[11], ==, "[Domain special]");
        g_assert_cmpstr(lines[12], ==, "Weight=200");
}

int main(int argc, char **argv)
{
        g_test_init(&argc, &argv, NULL);
        g_test_add_func("/sim/world/idle-guest", test_idle_guest);
        g_test_add_func("/sim/world/schedule-and-kernel", test_schedule_and_kernel);
        g_test_add_func("/sim/world/balloon-speed-and-throttle", test_balloon_speed_and_throttle);
        g_test_add_func("/sim/world/frozen-unused", test_frozen_unused);
        g_test_add_func("/sim/world/kernel-drift", test_kernel_drift);
        g_test_add_func("/sim/world/oom-point", test_oom_point);
        g_test_add_func("/sim/world/cache", test_cache);
        g_test_add_func("/sim/world/balloon-stalls", test_balloon_stalls);
        g_test_add_func("/sim/world/autodeflate", test_autodeflate);
        g_test_add_func("/sim/world/noballoon-and-stale", test_noballoon_and_stale);
        g_test_add_func("/sim/world/lifecycle", test_lifecycle);
        g_test_add_func("/sim/world/faults", test_faults);
        g_test_add_func("/sim/world/determinism", test_determinism);
        g_test_add_func("/sim/schedule/grammar", test_schedule_grammar);
        g_test_add_func("/sim/scenario/errors", test_parser_errors);
        g_test_add_func("/sim/scenario/features", test_parser_features);
        return g_test_run();
}
