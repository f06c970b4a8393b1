/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The simulator backend: "sim:FILE", a scenario file (tests/sim/README.md) run by sim-world.c.
 * It answers the ops table as libvirt would, from the world's figures: what the guest last
 * sampled, libvirt's lagging balloon.current, busy guests, lifecycle events and injected
 * faults. Lifecycle events are delivered from a deferred event, never inside a call, as
 * libvirt's come from its event loop.
 */

#include "hypervisor-sim.h"

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define SIM_MONO_BASE_USEC UINT64_C(1000000) /* a monotonic clock that never reads 0 */

typedef struct PendingEvent {
        char uuid[SIM_UUID_STRLEN];
        char *name;
        McDomainEvent event;
} PendingEvent;

typedef struct Sim {
        SimScenario *scenario;
        SimWorld *world;
        bool manual;
        uint64_t epoch_usec;

        /* Real clock: virtual = anchor_virtual + (real - anchor_real) x speed. */
        uint64_t anchor_real_usec;
        uint64_t anchor_virtual_usec;
        double anchor_speed;

        GArray *pending; /* PendingEvent */
        sd_event_source *event_source;
        McHypervisor *h;

        McSimObserver observer;
        void *observer_userdata;
} Sim;

static uint64_t real_mono_usec(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

static uint64_t real_time_usec(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

static Sim *sim_of(McHypervisor *h)
{
        return h && h->ops == &mc_hypervisor_sim_ops ? h->impl : NULL;
}

/* The real clock's virtual now; a new speed re-anchors so time never jumps. */
static uint64_t virtual_now(Sim *s, double speed)
{
        uint64_t real = real_mono_usec();

        if (speed <= 0)
                speed = 1;
        if (speed != s->anchor_speed) {
                s->anchor_virtual_usec +=
                        (uint64_t) ((double) (real - s->anchor_real_usec) * s->anchor_speed);
                s->anchor_real_usec = real;
                s->anchor_speed = speed;
        }
        return s->anchor_virtual_usec + (uint64_t) ((double) (real - s->anchor_real_usec) * speed);
}

static void sync_clock(McHypervisor *h)
{
        Sim *s = h->impl;

        if (!s->manual)
                sim_world_advance_to(s->world, virtual_now(s, h->speed));
}

static int on_pending_events(sd_event_source *src, void *userdata)
{
        Sim *s = userdata;
        g_autoptr(GArray) batch = s->pending;

        s->pending = g_array_new(FALSE, TRUE, sizeof(PendingEvent));
        for (guint i = 0; i < batch->len; i++) {
                PendingEvent *e = &g_array_index(batch, PendingEvent, i);
                if (s->h->connected)
                        mc_hypervisor_domain_event(s->h, e->uuid, e->name, e->event);
                g_free(e->name);
        }
        return 0;
}

static void on_world_event(void *userdata, SimEvent ev, SimGuest *g)
{
        Sim *s = userdata;
        PendingEvent pe = {};

        switch (ev) {
        case SIM_EVENT_STARTED:
        case SIM_EVENT_STOPPED:
                break;
        case SIM_EVENT_OOM_KILL:
                mc_log_debug("sim: %s: out of memory, workload killed", g->spec->name);
                return;
        default:
                return;
        }
        g_strlcpy(pe.uuid, g->spec->uuid, sizeof(pe.uuid));
        pe.name = g_strdup(g->spec->name);
        pe.event = ev == SIM_EVENT_STARTED ? MC_DOMAIN_EVENT_STARTED : MC_DOMAIN_EVENT_STOPPED;
        g_array_append_val(s->pending, pe);
        if (s->event_source)
                (void) sd_event_source_set_enabled(s->event_source, SD_EVENT_ONESHOT);
}

static int sim_init(McHypervisor *h)
{
        g_autoptr(GError) error = NULL;
        const char *path = h->uri + strlen("sim:");
        Sim *s;

        if (path[0] == '\0')
                return mc_hypervisor_fail(h, -EINVAL, "%s: expected sim:FILE, a scenario file", h->uri);
        SimScenario *sc = sim_scenario_load_file(path, &error);
        if (!sc)
                return mc_hypervisor_fail(h, error->domain == G_FILE_ERROR ? -ENOENT : -EINVAL, "%s",
                                          error->message);
        s = g_new0(Sim, 1);
        s->h = h;
        s->scenario = sc;
        s->world = sim_world_new(sc);
        s->pending = g_array_new(FALSE, TRUE, sizeof(PendingEvent));
        s->anchor_real_usec = real_mono_usec();
        s->anchor_speed = h->speed > 0 ? h->speed : 1;
        /* Real clock: guests stamp their samples with the host's time, as QEMU does. */
        s->epoch_usec = real_time_usec();
        sim_world_set_event_fn(s->world, on_world_event, s);
        if (h->event && sd_event_add_defer(h->event, &s->event_source, on_pending_events, s) >= 0)
                (void) sd_event_source_set_enabled(s->event_source, SD_EVENT_OFF);
        h->impl = s;
        return 0;
}

static int sim_connect(McHypervisor *h)
{
        Sim *s = h->impl;
        int r;

        sync_clock(h);
        r = sim_world_call(s->world, SIM_CALL_CONNECT, NULL);
        if (r < 0)
                return mc_hypervisor_fail(h, r, "%s: connection refused (simulated)", h->uri);
        return 0;
}

static void sim_disconnect(McHypervisor *h)
{
}

/* Runs a call's faults: -errno with the message set, and a lost connection reported. */
static int call_faults(McHypervisor *h, SimCall call)
{
        Sim *s = h->impl;
        bool lost = false;
        int r = sim_world_call(s->world, call, &lost);

        if (r == -ENOTCONN) {
                if (lost)
                        mc_hypervisor_lost(h);
                return mc_hypervisor_fail(h, r, "%s: connection lost (simulated)", h->uri);
        }
        if (r < 0)
                return mc_hypervisor_fail(h, r, "%s: %s failed (simulated): %s", h->uri,
                                          sim_call_to_string(call), g_strerror(-r));
        return 0;
}

static uint64_t mib_to_kib(double mib)
{
        return mib <= 0 ? 0 : (uint64_t) llround(mib * 1024);
}

static int sim_collect(McHypervisor *h, unsigned stats_period_sec, McReading **ret, size_t *ret_n)
{
        Sim *s = h->impl;
        size_t n = sim_world_n_guests(s->world), k = 0;
        McReading *out;
        int r;

        sync_clock(h);
        r = call_faults(h, SIM_CALL_COLLECT);
        if (r < 0)
                return r;
        h->calls.bulk_calls++;
        out = g_new0(McReading, MAX(n, 1));
        for (size_t i = 0; i < n; i++) {
                SimGuest *g = sim_world_guest(s->world, i);
                McReading *rd;

                if (!g->running)
                        continue;
                rd = &out[k++];
                g_strlcpy(rd->uuid, g->spec->uuid, sizeof(rd->uuid));
                rd->name = g_strdup(g->spec->name);
                rd->max_kib = mib_to_kib(g->spec->max_mib);
                rd->actual_kib = mib_to_kib(sim_guest_reported_actual_mib(g));
                if (sim_guest_busy(s->world, g)) {
                        rd->busy = true;
                        continue;
                }
                /* As libvirt's collect: a guest whose stats do not flow gets a period. */
                if (g->spec->balloon && g->stats_period_s <= 0 && stats_period_sec > 0) {
                        g->stats_period_s = stats_period_sec;
                        g->next_sample_usec = sim_world_now(s->world) + sim_world_step_usec(s->world);
                }
                if (!g->spec->balloon || !g->sample.valid)
                        continue;
                rd->has_balloon = true;
                rd->unused_kib = mib_to_kib(g->sample.unused_mib);
                rd->available_kib = mib_to_kib(g->sample.available_mib);
                rd->usable_kib = mib_to_kib(g->sample.usable_mib);
                rd->disk_caches_kib = mib_to_kib(g->sample.caches_mib);
                /* QEMU stamps a sample with the host's epoch seconds. */
                rd->last_update = (int64_t) ((s->epoch_usec + g->sample.at_usec) / UINT64_C(1000000));
        }
        if (s->observer.collected)
                s->observer.collected(s->observer_userdata, out, k);
        *ret = out;
        *ret_n = k;
        return 0;
}

static int sim_host_memory(McHypervisor *h, McHostMemory *ret)
{
        Sim *s = h->impl;
        int r;

        sync_clock(h);
        r = call_faults(h, SIM_CALL_HOST_MEMORY);
        if (r < 0)
                return r;
        h->calls.other_calls++;
        ret->total_kib = mib_to_kib(sim_world_host_total_mib(s->world));
        ret->free_kib = mib_to_kib(sim_world_host_free_mib(s->world));
        ret->from_proc = false;
        return 0;
}

static int sim_set_target(McHypervisor *h, const char *uuid, uint64_t kib)
{
        Sim *s = h->impl;
        SimGuest *g;
        int r;

        sync_clock(h);
        h->calls.other_calls++;
        g = sim_world_find(s->world, uuid);
        r = call_faults(h, SIM_CALL_SET_TARGET);
        if (r >= 0) {
                if (!g)
                        r = mc_hypervisor_fail(h, -ENOENT, "%s: no guest %s", h->uri, uuid);
                else {
                        r = sim_world_set_target(s->world, g, (double) kib / 1024);
                        if (r == -ENOENT)
                                (void) mc_hypervisor_fail(h, r, "%s: guest %s is not running", h->uri,
                                                          g->spec->name);
                        else if (r == -EBUSY)
                                (void) mc_hypervisor_fail(h, r, "%s: guest %s is busy with a job", h->uri,
                                                          g->spec->name);
                        else if (r == -EOPNOTSUPP)
                                (void) mc_hypervisor_fail(h, r, "%s: guest %s has no balloon device", h->uri,
                                                          g->spec->name);
                }
        }
        if (g && s->observer.target_set)
                s->observer.target_set(s->observer_userdata, g, kib, r);
        return r;
}

static uint64_t sim_now(McHypervisor *h, clockid_t clock)
{
        Sim *s = h->impl;
        uint64_t v;

        sync_clock(h);
        v = sim_world_now(s->world);
        if (clock == CLOCK_REALTIME)
                return s->epoch_usec + v;
        return SIM_MONO_BASE_USEC + v;
}

static void sim_free(McHypervisor *h)
{
        Sim *s = h->impl;

        if (!s)
                return;
        s->event_source = sd_event_source_disable_unref(s->event_source);
        for (guint i = 0; i < s->pending->len; i++)
                g_free(g_array_index(s->pending, PendingEvent, i).name);
        g_array_unref(s->pending);
        sim_world_free(s->world);
        sim_scenario_free(s->scenario);
        g_free(s);
        h->impl = NULL;
}

const McHypervisorOps mc_hypervisor_sim_ops = {
        .name = "sim",
        .init = sim_init,
        .connect = sim_connect,
        .disconnect = sim_disconnect,
        .collect = sim_collect,
        .host_memory = sim_host_memory,
        .set_target = sim_set_target,
        .now = sim_now,
        .free = sim_free,
};

SimWorld *mc_sim_world(McHypervisor *h)
{
        Sim *s = sim_of(h);

        return s ? s->world : NULL;
}

void mc_sim_set_manual_clock(McHypervisor *h, bool manual)
{
        Sim *s = sim_of(h);

        if (!s)
                return;
        s->manual = manual;
        if (manual)
                s->epoch_usec = (uint64_t) s->scenario->epoch_s * UINT64_C(1000000);
}

void mc_sim_advance_to(McHypervisor *h, uint64_t virtual_usec)
{
        Sim *s = sim_of(h);

        if (s)
                sim_world_advance_to(s->world, virtual_usec);
}

void mc_sim_set_observer(McHypervisor *h, const McSimObserver *o, void *userdata)
{
        Sim *s = sim_of(h);

        if (!s)
                return;
        s->observer = o ? *o : (McSimObserver){};
        s->observer_userdata = userdata;
}

void mc_sim_set_scenario(McHypervisor *h, SimScenario *sc)
{
        Sim *s = sim_of(h);

        if (!s) {
                sim_scenario_free(sc);
                return;
        }
        sim_world_free(s->world);
        sim_scenario_free(s->scenario);
        s->scenario = sc;
        s->world = sim_world_new(sc);
        sim_world_set_event_fn(s->world, on_world_event, s);
        if (s->manual)
                s->epoch_usec = (uint64_t) sc->epoch_s * UINT64_C(1000000);
}

uint64_t mc_sim_epoch_usec(McHypervisor *h)
{
        Sim *s = sim_of(h);

        return s ? s->epoch_usec : 0;
}
