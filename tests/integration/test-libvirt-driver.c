/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The manager against libvirt's test driver, in process: the same sd-event loop, libvirt event
 * glue, hypervisor boundary and policy as memcoordd, with mc_manager_tick() called by the test.
 *
 * Two setups:
 *  - test:///ABS/tests/data/node-guests.xml opened by the manager itself. Its state is private
 *    to that connection, so what was applied is read back from the manager's own records at
 *    the next tick (the driver's stats report the memory that was set).
 *  - test+unix:///default through a private, unprivileged libvirtd started here (its own
 *    runtime dir, no driver modules loaded). Every connection shares that state, so a second
 *    connection of the test checks what the manager did, creates and destroys guests, and
 *    the daemon can be restarted under the manager.
 *
 * libvirt's test driver reports unused = usable = current / 2, available = current, and a
 * fixed, old last_update stamp.
 */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <grp.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hypervisor-libvirt.h"
#include "libvirt-event.h"
#include "manager.h"
#include "memcoord/memcoord.h"

#define MIB(x) ((uint64_t) (x) *UINT64_C(1024))
#define USEC(sec) ((uint64_t) ((sec) *1e6))

static sd_event *event;
static const char *node_xml;
static const char *node_metadata_xml;

/* ---- what the manager tells its listener ---- */

typedef struct BalloonRecord {
        char *name;
        uint64_t from_kib;
        uint64_t to_kib;
        McReason reason;
} BalloonRecord;

typedef struct Recorder {
        GArray *balloons; /* BalloonRecord */
        unsigned ticks;
        unsigned last_managed;
        unsigned last_changed;
        unsigned min_managed;
        unsigned added;
        unsigned removed;
        unsigned state_notifications;
} Recorder;

static void balloon_record_clear(gpointer p)
{
        g_free(((BalloonRecord *) p)->name);
}

static void recorder_init(Recorder *r)
{
        *r = (Recorder){.min_managed = UINT_MAX};
        r->balloons = g_array_new(FALSE, TRUE, sizeof(BalloonRecord));
        g_array_set_clear_func(r->balloons, balloon_record_clear);
}

static void recorder_clear(Recorder *r)
{
        g_clear_pointer(&r->balloons, g_array_unref);
}

static const BalloonRecord *recorder_find(const Recorder *r, const char *name)
{
        const BalloonRecord *found = NULL;

        for (guint i = 0; i < r->balloons->len; i++) {
                const BalloonRecord *b = &g_array_index(r->balloons, BalloonRecord, i);
                if (g_str_equal(b->name, name))
                        found = b;
        }
        return found;
}

/* When set, the next guest added during a tick kills this libvirtd: the connection is then
 * lost between the tick's collect and its decisions. */
typedef struct Libvirtd Libvirtd;
static Libvirtd *kill_on_add;
static McManager *kill_on_add_manager;
static void libvirtd_kill(Libvirtd *l);

static void on_domain_added(void *userdata, McGuest *d)
{
        ((Recorder *) userdata)->added++;
        if (kill_on_add && kill_on_add_manager && kill_on_add_manager->in_tick) {
                libvirtd_kill(kill_on_add);
                kill_on_add = NULL;
        }
}

static void on_domain_removed(void *userdata, McGuest *d)
{
        ((Recorder *) userdata)->removed++;
}

static void on_balloon_changed(void *userdata, McGuest *d, uint64_t from_kib, uint64_t to_kib,
                               McReason reason)
{
        Recorder *r = userdata;
        BalloonRecord b = {g_strdup(d->name), from_kib, to_kib, reason};

        g_array_append_val(r->balloons, b);
}

static void on_tick_completed(void *userdata, uint64_t tick, uint64_t host_free_kib, unsigned managed,
                              unsigned changed)
{
        Recorder *r = userdata;

        r->ticks++;
        r->last_managed = managed;
        r->last_changed = changed;
        r->min_managed = MIN(r->min_managed, managed);
}

static void on_manager_changed(void *userdata, unsigned changes)
{
        Recorder *r = userdata;

        if (changes & MC_MANAGER_CHANGED_STATE)
                r->state_notifications++;
}

static const McManagerListener recorder_listener = {
        .guest_added = on_domain_added,
        .guest_removed = on_domain_removed,
        .balloon_changed = on_balloon_changed,
        .tick_completed = on_tick_completed,
        .manager_changed = on_manager_changed,
};

/* ---- the loop ---- */

static uint64_t now_mono(void)
{
        return (uint64_t) g_get_monotonic_time();
}

typedef gboolean (*Condition)(gpointer userdata);

/* Runs the event loop until cond holds or timeout passes; returns whether it holds. */
static gboolean spin_until(Condition cond, gpointer userdata, uint64_t timeout_usec)
{
        uint64_t deadline = now_mono() + timeout_usec;

        while (!cond(userdata)) {
                if (now_mono() >= deadline)
                        return FALSE;
                int r = sd_event_run(event, 50 * 1000);
                g_assert_cmpint(r, >=, 0);
        }
        return TRUE;
}

static gboolean never(gpointer userdata)
{
        return FALSE;
}

static void spin_for(uint64_t usec)
{
        (void) spin_until(never, NULL, usec);
}

/* ---- the manager under test ---- */

static McManager *manager_new(const char *uri, uint64_t interval_usec, bool dry_run, Recorder *rec)
{
        McConfig *c = mc_config_new();
        McManager *m = NULL;

        g_free(c->uri);
        c->uri = g_strdup(uri);
        c->interval_usec = interval_usec;
        c->dry_run = dry_run;
        g_assert_cmpint(mc_manager_new(event, c, NULL, NULL, &m), ==, 0);
        mc_manager_set_listener(m, &recorder_listener, rec);
        g_assert_cmpint(mc_manager_start(m), ==, 0);
        /* The connection is announced from the loop (a deferred event): let it run. */
        for (int i = 0; i < 10 && sd_event_run(event, 0) > 0; i++)
                ;
        return m;
}

static McGuest *must_find(McManager *m, const char *name)
{
        McGuest *d = mc_manager_find_guest(m, name);

        if (!d)
                g_error("the manager does not see guest %s", name);
        return d;
}

static void tick(McManager *m)
{
        g_assert_cmpint(mc_manager_tick(m), ==, 0);
}

/*
 * The claim rule, written out again from the design: a guest with unused > 2T gives back
 * min(c x unused, unused - 2T), never going below the floor; changes under the dead band are
 * not made. Returns the target, or 0 for no change.
 */
static uint64_t expected_claim_target(const McPolicySettings *p, uint64_t actual, uint64_t unused)
{
        uint64_t keep = 2 * p->domain_threshold_kib;

        if (unused <= keep)
                return 0;
        uint64_t amount = MIN((uint64_t) (unused * p->claim_fraction), unused - keep);
        if (actual > p->default_min_kib)
                amount = MIN(amount, actual - p->default_min_kib);
        else
                amount = 0;
        if (amount < p->dead_band_kib)
                return 0;
        return actual - amount;
}

typedef struct NodeGuest {
        const char *name;
        uint64_t current_kib;
        uint64_t max_kib;
        bool balloon;
} NodeGuest;

/* tests/data/node-guests.xml */
static const NodeGuest node_guests[] = {
        {"vm1", MIB(1024), MIB(2048), true},
        {"vm2", MIB(2048), MIB(2048), true},
        {"vm3", MIB(512), MIB(1024), true},
        {"vm-noballoon", MIB(1024), MIB(1024), false},
};

static char *node_uri(void)
{
        return g_strconcat("test://", node_xml, NULL);
}

static void assert_defaults(const McManager *m)
{
        const McPolicySettings *p = &m->config->policy;

        /* The expectations below are written for the design's defaults. */
        g_assert_cmpuint(p->domain_threshold_kib, ==, MIB(100));
        g_assert_cmpfloat(p->claim_fraction, ==, 0.10);
        g_assert_cmpuint(p->default_min_kib, ==, MIB(256));
        g_assert_cmpuint(p->dead_band_kib, ==, MIB(1));
}

/* virDomainGetXMLDesc, wrapped at link time (meson.build): fails for the domain named
 * xml_fail_name while xml_fail_left > 0, as a libvirtd that cannot answer would. */
char *__real_virDomainGetXMLDesc(virDomainPtr dom, unsigned int flags);
char *__wrap_virDomainGetXMLDesc(virDomainPtr dom, unsigned int flags);
static const char *xml_fail_name;
static unsigned xml_fail_left;

char *__wrap_virDomainGetXMLDesc(virDomainPtr dom, unsigned int flags)
{
        if (xml_fail_left > 0 && g_strcmp0(virDomainGetName(dom), xml_fail_name) == 0) {
                xml_fail_left--;
                return NULL;
        }
        return __real_virDomainGetXMLDesc(dom, flags);
}

/* ---- node file, in process ---- */

static void test_node_stats_read(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new(uri, MC_INTERVAL_MAX_USEC, false, &rec);
        g_assert_cmpint(mc_manager_state(m), ==, MC_STATE_RUNNING);
        assert_defaults(m);
        tick(m);

        g_assert_cmpuint(g_hash_table_size(m->guests), ==, G_N_ELEMENTS(node_guests));
        for (size_t i = 0; i < G_N_ELEMENTS(node_guests); i++) {
                const NodeGuest *g = &node_guests[i];
                McGuest *d = must_find(m, g->name);

                g_test_message("%s: actual %" G_GUINT64_FORMAT " unused %" G_GUINT64_FORMAT
                               " max %" G_GUINT64_FORMAT " status %s",
                               d->name, d->actual_kib, d->unused_kib, d->max_kib,
                               mc_guest_status_to_string(d->status));
                if (g->balloon) {
                        g_assert_cmpuint(d->actual_kib, ==, g->current_kib);
                        g_assert_cmpuint(d->max_kib, ==, g->max_kib);
                        g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "managed");
                        g_assert_true(d->has_stats);
                        g_assert_cmpuint(d->unused_kib, ==, g->current_kib / 2);
                        g_assert_cmpuint(d->usable_kib, ==, g->current_kib / 2);
                        g_assert_cmpuint(d->available_kib, ==, g->current_kib);
                } else {
                        g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "no-balloon");
                        g_assert_cmpuint(d->stats_age_usec, ==, UINT64_MAX);
                }
        }
        /* One bulk call for all; the test driver's bulk records lack balloon fields, so one
         * per-guest call for each guest with a balloon, none for the one without. */
        g_assert_cmpuint((*mc_hypervisor_calls(m->hypervisor)).bulk_calls, ==, 1);
        g_assert_cmpuint((*mc_hypervisor_calls(m->hypervisor)).per_domain_calls, ==, 3);
        g_assert_cmpuint(rec.last_managed, ==, 3);
        g_assert_cmpuint(m->host.total_kib, >, 0);

        mc_manager_free(m);
        recorder_clear(&rec);
}

static void test_node_targets_applied(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;
        unsigned n_ticks;

        recorder_init(&rec);
        McManager *m = manager_new(uri, MC_INTERVAL_MAX_USEC, false, &rec);
        const McPolicySettings *p = &m->config->policy;
        assert_defaults(m);

        /* First tick: every balloon guest has unused = current / 2 > 2T and gives back. */
        tick(m);
        g_assert_cmpuint(rec.balloons->len, ==, 3);
        g_assert_cmpuint(rec.last_changed, ==, 3);
        for (size_t i = 0; i < G_N_ELEMENTS(node_guests); i++) {
                const NodeGuest *g = &node_guests[i];
                const BalloonRecord *b = recorder_find(&rec, g->name);

                if (!g->balloon) {
                        g_assert_null(b);
                        continue;
                }
                g_assert_nonnull(b);
                g_assert_cmpstr(mc_reason_to_string(b->reason), ==, "claim");
                g_assert_cmpuint(b->from_kib, ==, g->current_kib);
                g_assert_cmpuint(b->to_kib, ==,
                                 expected_claim_target(p, g->current_kib, g->current_kib / 2));
                g_assert_cmpuint(must_find(m, g->name)->last_target_kib, ==, b->to_kib);
        }
        /* vm1: 1024 MiB, unused 512 MiB: min(51.2 MiB, 312 MiB) -> 996148 KiB. */
        g_assert_cmpuint(recorder_find(&rec, "vm1")->to_kib, ==, 996148);

        /* Every later tick reads what the previous one set, until nothing changes. */
        for (n_ticks = 1; rec.balloons->len > 0 && n_ticks < 200; n_ticks++) {
                g_autoptr(GArray) prev = g_steal_pointer(&rec.balloons);

                rec.balloons = g_array_new(FALSE, TRUE, sizeof(BalloonRecord));
                g_array_set_clear_func(rec.balloons, balloon_record_clear);
                tick(m);
                for (guint i = 0; i < prev->len; i++) {
                        const BalloonRecord *b = &g_array_index(prev, BalloonRecord, i);
                        McGuest *d = must_find(m, b->name);

                        g_assert_cmpuint(d->actual_kib, ==, b->to_kib);
                        g_assert_cmpuint(d->unused_kib, ==, b->to_kib / 2);
                }
                for (guint i = 0; i < rec.balloons->len; i++) {
                        const BalloonRecord *b = &g_array_index(rec.balloons, BalloonRecord, i);
                        McGuest *d = must_find(m, b->name);

                        g_assert_cmpstr(mc_reason_to_string(b->reason), ==, "claim");
                        g_assert_cmpuint(b->from_kib, ==, d->actual_kib);
                        g_assert_cmpuint(b->to_kib, ==,
                                         expected_claim_target(p, d->actual_kib, d->unused_kib));
                }
        }
        g_test_message("converged after %u ticks", n_ticks);
        g_assert_cmpuint(rec.balloons->len, ==, 0);

        /* Converged: each guest keeps between 2T and 2T + the dead band unused. */
        for (size_t i = 0; i < G_N_ELEMENTS(node_guests); i++) {
                McGuest *d = must_find(m, node_guests[i].name);

                if (!node_guests[i].balloon)
                        continue;
                g_test_message("%s: converged at %" G_GUINT64_FORMAT " KiB, unused %" G_GUINT64_FORMAT
                               " KiB",
                               d->name, d->actual_kib, d->unused_kib);
                g_assert_cmpuint(d->unused_kib, >=, 2 * p->domain_threshold_kib);
                g_assert_cmpuint(d->unused_kib, <, 2 * p->domain_threshold_kib + p->dead_band_kib);
                g_assert_cmpuint(d->actual_kib, >=, p->default_min_kib);
                g_assert_cmpuint(d->last_target_kib, ==, 0);
        }

        mc_manager_free(m);
        recorder_clear(&rec);
}

static void test_node_noballoon_never_resized(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new(uri, MC_INTERVAL_MAX_USEC, false, &rec);
        for (unsigned i = 0; i < 60; i++) {
                tick(m);
                McGuest *d = must_find(m, "vm-noballoon");
                g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "no-balloon");
                g_assert_cmpuint(d->last_target_kib, ==, 0);
                g_assert_cmpuint(d->last_change_usec, ==, 0);
                g_assert_null(recorder_find(&rec, "vm-noballoon"));
                g_assert_cmpuint(rec.last_managed, ==, 3);
        }
        g_assert_cmpuint(m->tick_count, ==, 60);

        mc_manager_free(m);
        recorder_clear(&rec);
}

/*
 * A guest without a balloon still holds its memory, and ListDomains and the Domain object
 * publish it: ActualBytes and MaxBytes are its current and maximum memory (1024 MiB each in
 * the node file), not 0, tick after tick.
 */
static void test_node_noballoon_reports_memory(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new(uri, MC_INTERVAL_MAX_USEC, false, &rec);
        for (unsigned i = 0; i < 5; i++) {
                tick(m);
                McGuest *d = must_find(m, "vm-noballoon");
                g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "no-balloon");
                g_assert_cmpuint(d->actual_kib, ==, MIB(1024));
                g_assert_cmpuint(d->max_kib, ==, MIB(1024));
        }

        mc_manager_free(m);
        recorder_clear(&rec);
}

static gboolean ticks_at_least(gpointer userdata)
{
        const McManager *m = userdata;

        return m->tick_count >= 15;
}

/*
 * A guest whose definition cannot be read is not known to have a balloon: it is left alone
 * (busy, never resized) while the read fails, and managed, with its settings, once it works.
 * Taking it for a guest without a balloon would leave it unmanaged for the whole run.
 */
static void test_node_definition_unread(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;

        recorder_init(&rec);
        xml_fail_name = "vm3";
        xml_fail_left = G_MAXUINT;
        McManager *m = manager_new(uri, MC_INTERVAL_MAX_USEC, false, &rec);
        for (unsigned i = 0; i < 5; i++) {
                tick(m);
                McGuest *d = must_find(m, "vm3");
                g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "busy");
                g_assert_cmpuint(d->last_target_kib, ==, 0);
                g_assert_null(recorder_find(&rec, "vm3"));
                g_assert_cmpstr(mc_guest_status_to_string(must_find(m, "vm1")->status), ==, "managed");
                g_assert_cmpuint(rec.last_managed, ==, 2);
        }
        /* Asked again at every collect. */
        g_assert_cmpuint(G_MAXUINT - xml_fail_left, >=, 5);
        xml_fail_left = 0;
        tick(m);
        McGuest *d = must_find(m, "vm3");
        g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "managed");
        g_assert_true(d->has_stats);
        g_assert_cmpuint(d->actual_kib, ==, MIB(512));
        g_assert_cmpuint(rec.last_managed, ==, 3);

        xml_fail_name = NULL;
        mc_manager_free(m);
        recorder_clear(&rec);
}

static void test_node_synthetic_stamps_fresh(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;

        recorder_init(&rec);
        /* A short interval, driven by the manager's own timer: the stamp (627319920, 1989)
         * never moves and is decades old, which real stamps would make stale at once. */
        McManager *m = manager_new(uri, USEC(0.1), false, &rec);
        g_assert_true(mc_hypervisor_stamps_synthetic(m->hypervisor));
        g_assert_true(spin_until(ticks_at_least, m, USEC(30)));

        g_assert_cmpuint(rec.ticks, >=, 15);
        g_assert_cmpuint(rec.min_managed, ==, 3);
        for (size_t i = 0; i < G_N_ELEMENTS(node_guests); i++) {
                McGuest *d = must_find(m, node_guests[i].name);

                if (!node_guests[i].balloon)
                        continue;
                g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "managed");
                g_assert_cmpuint(d->stats_age_usec, ==, 0);
        }

        mc_manager_free(m);
        recorder_clear(&rec);
}

static void test_node_dry_run(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new(uri, MC_INTERVAL_MAX_USEC, true, &rec);
        for (unsigned i = 0; i < 5; i++) {
                tick(m);
                for (size_t j = 0; j < G_N_ELEMENTS(node_guests); j++) {
                        McGuest *d = must_find(m, node_guests[j].name);

                        if (node_guests[j].balloon)
                                g_assert_cmpuint(d->actual_kib, ==, node_guests[j].current_kib);
                        g_assert_cmpuint(d->last_target_kib, ==, 0);
                        g_assert_cmpuint(d->last_change_usec, ==, 0);
                }
        }
        g_assert_cmpuint(rec.ticks, ==, 5);

        mc_manager_free(m);
        recorder_clear(&rec);
}

/*
 * org.memcoord1.Manager.xml: "DryRun: decisions are logged and signalled as usual but not
 * applied." The listener is what turns decisions into BalloonChanged signals.
 */
static void test_node_dry_run_signals(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new(uri, MC_INTERVAL_MAX_USEC, true, &rec);
        tick(m);
        g_assert_cmpuint(rec.last_changed, ==, 3);
        g_assert_cmpuint(rec.balloons->len, ==, 3);
        const BalloonRecord *b = recorder_find(&rec, "vm1");
        g_assert_nonnull(b);
        g_assert_cmpuint(b->from_kib, ==, MIB(1024));
        g_assert_cmpuint(b->to_kib, ==, 996148);
        g_assert_cmpuint(must_find(m, "vm1")->actual_kib, ==, MIB(1024));

        mc_manager_free(m);
        recorder_clear(&rec);
}

static void test_node_pause(void)
{
        g_autofree char *uri = node_uri();
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new(uri, MC_INTERVAL_MAX_USEC, false, &rec);
        unsigned notified = rec.state_notifications;
        g_assert_cmpint(mc_manager_set_paused(m, true), ==, 0);
        g_assert_cmpint(mc_manager_state(m), ==, MC_STATE_PAUSED);
        g_assert_cmpuint(rec.state_notifications, ==, notified + 1);
        /* Pausing twice is no change. */
        g_assert_cmpint(mc_manager_set_paused(m, true), ==, 0);
        g_assert_cmpuint(rec.state_notifications, ==, notified + 1);

        for (unsigned i = 0; i < 5; i++) {
                uint64_t ticks = m->tick_count, before = now_mono();

                tick(m);
                g_assert_cmpuint(m->tick_count, ==, ticks + 1);
                g_assert_cmpuint(rec.last_changed, ==, 0);
                g_assert_cmpuint(rec.last_managed, ==, 3);
                for (size_t j = 0; j < G_N_ELEMENTS(node_guests); j++) {
                        McGuest *d = must_find(m, node_guests[j].name);

                        /* Read this tick (the test driver's stamps count as new at every
                         * reading), and unchanged. */
                        if (node_guests[j].balloon)
                                g_assert_cmpuint(d->freshness.changed_at_usec, >=, before);
                        if (node_guests[j].balloon)
                                g_assert_cmpuint(d->actual_kib, ==, node_guests[j].current_kib);
                        g_assert_cmpuint(d->last_target_kib, ==, 0);
                }
        }
        g_assert_cmpuint(rec.balloons->len, ==, 0);
        g_assert_cmpuint(m->tick_count, ==, 5);

        g_assert_cmpint(mc_manager_set_paused(m, false), ==, 0);
        g_assert_cmpint(mc_manager_state(m), ==, MC_STATE_RUNNING);
        g_assert_cmpuint(rec.state_notifications, ==, notified + 2);
        tick(m);
        g_assert_cmpuint(rec.balloons->len, ==, 3);
        tick(m);
        g_assert_cmpuint(must_find(m, "vm1")->actual_kib, ==, 996148);

        mc_manager_free(m);
        recorder_clear(&rec);
}

/* ---- settings in the domain XML (tests/data/node-metadata.xml) ---- */

static McManager *manager_new_config(const char *uri, const char *config_text, Recorder *rec)
{
        McConfig *c = mc_config_new();
        g_autoptr(GError) error = NULL;
        McManager *m = NULL;

        g_assert_true(mc_config_load_data(c, config_text, "test.conf", &error));
        g_free(c->uri);
        c->uri = g_strdup(uri);
        c->interval_usec = MC_INTERVAL_MAX_USEC;
        g_assert_cmpint(mc_manager_new(event, c, NULL, NULL, &m), ==, 0);
        mc_manager_set_listener(m, &recorder_listener, rec);
        g_assert_cmpint(mc_manager_start(m), ==, 0);
        for (int i = 0; i < 10 && sd_event_run(event, 0) > 0; i++)
                ;
        return m;
}

static void assert_limits(McManager *m, const char *name, uint64_t floor, uint64_t cap, unsigned weight,
                          bool excluded)
{
        McGuest *g = must_find(m, name);
        McGuestLimits l = mc_manager_guest_limits(m, g);

        g_test_message("%s: floor %" G_GUINT64_FORMAT " cap %" G_GUINT64_FORMAT " weight %u excluded %d",
                       name, l.floor_kib, l.cap_kib, l.weight, g->excluded);
        g_assert_cmpuint(l.floor_kib, ==, floor);
        g_assert_cmpuint(l.cap_kib, ==, cap);
        g_assert_cmpuint(l.weight, ==, weight);
        g_assert_cmpint(g->excluded, ==, excluded);
}

static void test_node_metadata_limits(void)
{
        g_autofree char *uri = g_strconcat("test://", node_metadata_xml, NULL);
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new_config(uri, "[Domain vm-both]\nMin=512M\n", &rec);
        tick(m);

        /* The metadata's, from the first tick. */
        assert_limits(m, "vm-meta", MIB(1000), MIB(1536), 300, false);
        assert_limits(m, "vm-excluded", MIB(256), MIB(2048), 100, true);
        g_assert_cmpstr(mc_guest_status_to_string(must_find(m, "vm-excluded")->status), ==, "excluded");
        /* <memtune><min_guarantee> when nothing else sets a floor. */
        assert_limits(m, "vm-memtune", MIB(800), MIB(2048), 100, false);
        /* The config file's Min over the metadata's; the metadata's max; min_guarantee loses. */
        assert_limits(m, "vm-both", MIB(512), MIB(1024), 100, false);
        assert_limits(m, "vm-plain", MIB(256), MIB(2048), 100, false);
        /* A bad element counts as none, whole. */
        assert_limits(m, "vm-bad", MIB(256), MIB(2048), 100, false);

        /* The first tick already claimed with them: vm-meta stops at its floor of 1000 MiB
         * (without it: 1024 - 51.2 MiB), vm-excluded is not touched. */
        const BalloonRecord *b = recorder_find(&rec, "vm-meta");
        g_assert_nonnull(b);
        g_assert_cmpuint(b->to_kib, ==, MIB(1000));
        g_assert_null(recorder_find(&rec, "vm-excluded"));
        for (int i = 0; i < 15; i++)
                tick(m);
        g_assert_cmpuint(must_find(m, "vm-meta")->actual_kib, ==, MIB(1000));
        g_assert_cmpuint(must_find(m, "vm-memtune")->actual_kib, ==, MIB(800));
        g_assert_cmpuint(must_find(m, "vm-both")->actual_kib, >=, MIB(512));
        g_assert_cmpuint(must_find(m, "vm-excluded")->actual_kib, ==, MIB(2048));
        assert_limits(m, "vm-meta", MIB(1000), MIB(1536), 300, false);
        assert_limits(m, "vm-excluded", MIB(256), MIB(2048), 100, true);
        assert_limits(m, "vm-memtune", MIB(800), MIB(2048), 100, false);
        assert_limits(m, "vm-both", MIB(512), MIB(1024), 100, false);

        /* Read when the guests were first seen (the collect at connect), not since: the guests
         * keep them from reading to reading. Paused, a tick's only calls are its collect's. */
        g_assert_cmpint(mc_manager_set_paused(m, true), ==, 0);
        for (int i = 0; i < 3; i++) {
                tick(m);
                g_assert_cmpuint(mc_hypervisor_calls(m->hypervisor)->other_calls, ==, 0);
                assert_limits(m, "vm-meta", MIB(1000), MIB(1536), 300, false);
                assert_limits(m, "vm-excluded", MIB(256), MIB(2048), 100, true);
        }

        mc_manager_free(m);
        recorder_clear(&rec);
}

/*
 * The metadata changed behind the manager's back (written through its own connection, as a
 * peer's `virsh metadata` would through libvirtd): libvirt's event has it read again for the
 * next reading of that guest alone, with its min_guarantee, and the guest keeps it after.
 */
static void test_node_metadata_changed(void)
{
        g_autofree char *uri = g_strconcat("test://", node_metadata_xml, NULL);
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new_config(uri, "[Coordinator]\n", &rec);
        /* Paused: a tick's only calls are its collect's. */
        g_assert_cmpint(mc_manager_set_paused(m, true), ==, 0);
        tick(m);
        assert_limits(m, "vm-memtune", MIB(800), MIB(2048), 100, false);
        assert_limits(m, "vm-meta", MIB(1000), MIB(1536), 300, false);

        const McGuestMeta capped = { .max_kib = MIB(1800), .weight = 200, .excluded = -1 };
        const McGuestMeta removed = MC_GUEST_META_NONE;
        McHypervisor *h = m->hypervisor;
        g_assert_cmpint(mc_hypervisor_set_meta(h, must_find(m, "vm-memtune")->uuid, &capped), ==, 0);
        g_assert_cmpint(mc_hypervisor_set_meta(h, must_find(m, "vm-meta")->uuid, &removed), ==, 0);
        /* The manager knows only what readings tell it. */
        assert_limits(m, "vm-memtune", MIB(800), MIB(2048), 100, false);

        spin_for(USEC(0.2));
        tick(m);
        /* Each of the two: its domain XML (for min_guarantee) and memcoord's element. */
        g_assert_cmpuint(mc_hypervisor_calls(m->hypervisor)->other_calls, ==, 4);
        assert_limits(m, "vm-memtune", MIB(800), MIB(1800), 200, false);
        g_assert_cmpuint(must_find(m, "vm-memtune")->meta.min_guarantee_kib, ==, MIB(800));
        assert_limits(m, "vm-meta", MIB(256), MIB(2048), 100, false);
        /* The others as they were. */
        assert_limits(m, "vm-excluded", MIB(256), MIB(2048), 100, true);

        for (int i = 0; i < 5; i++) {
                tick(m);
                g_assert_cmpuint(mc_hypervisor_calls(m->hypervisor)->other_calls, ==, 0);
                assert_limits(m, "vm-memtune", MIB(800), MIB(1800), 200, false);
                assert_limits(m, "vm-meta", MIB(256), MIB(2048), 100, false);
        }

        mc_manager_free(m);
        recorder_clear(&rec);
}

static void test_node_metadata_persistent(void)
{
        g_autofree char *uri = g_strconcat("test://", node_metadata_xml, NULL);
        const char *why = NULL;
        Recorder rec;

        recorder_init(&rec);
        McManager *m = manager_new_config(uri, "[Coordinator]\n", &rec);
        tick(m);

        /* A setting over the bus first: it wins over the metadata ... */
        g_assert_cmpint(mc_manager_set_domain_limits(m, "vm-meta", MIB(600), 0, 0, &why), ==, 0);
        assert_limits(m, "vm-meta", MIB(600), MIB(1536), 300, false);
        /* ... until a persistent one replaces both. */
        g_assert_cmpint(
                mc_manager_set_domain_limits_persistent(m, "vm-meta", MIB(700), MIB(1800), 250, &why), ==,
                0);
        assert_limits(m, "vm-meta", MIB(700), MIB(1800), 250, false);
        g_assert_cmpuint(mc_config_get_domain(m->config, "vm-meta")->min_kib, ==, 0);
        /* Read back from libvirt at the next tick (its metadata event marks it to be re-read). */
        spin_for(USEC(0.2));
        tick(m);
        assert_limits(m, "vm-meta", MIB(700), MIB(1800), 250, false);

        /* Exclusion, stored; the limits stay in the element. */
        g_assert_cmpint(mc_manager_set_domain_excluded_persistent(m, "vm-plain", true, &why), ==, 0);
        spin_for(USEC(0.2));
        tick(m);
        assert_limits(m, "vm-plain", MIB(256), MIB(2048), 100, true);
        g_assert_cmpstr(mc_guest_status_to_string(must_find(m, "vm-plain")->status), ==, "excluded");
        g_assert_cmpint(mc_manager_set_domain_excluded_persistent(m, "vm-excluded", false, &why), ==, 0);
        spin_for(USEC(0.2));
        tick(m);
        assert_limits(m, "vm-excluded", MIB(256), MIB(2048), 100, false);

        /* Invalid limits change nothing. */
        g_assert_cmpint(mc_manager_set_domain_limits_persistent(m, "vm-meta", MIB(900), MIB(800), 0, &why),
                        ==, -EINVAL);
        g_assert_cmpint(mc_manager_set_domain_limits_persistent(m, "nope", 0, 0, 0, &why), ==, -ENOENT);
        assert_limits(m, "vm-meta", MIB(700), MIB(1800), 250, false);

        mc_manager_free(m);
        recorder_clear(&rec);
}

/* ---- a private libvirtd ---- */

typedef struct Libvirtd {
        char *dir;
        char *uri;
        GPid pid;
        uid_t uid;
        gid_t gid;
} Libvirtd;

static const char *libvirtd_binary(void)
{
        const char *p = g_getenv("MC_LIBVIRTD");

        return p && p[0] ? p : NULL;
}

static void libvirtd_child_setup(gpointer userdata)
{
        const Libvirtd *l = userdata;

        (void) setsid();
        if (getuid() == 0) {
                if (setgroups(0, NULL) < 0 || setgid(l->gid) < 0 || setuid(l->uid) < 0)
                        _exit(127);
        }
        /* After the credentials change, which would clear it. */
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
}

static gboolean libvirtd_exited(Libvirtd *l, int *ret_status)
{
        int status;
        pid_t r = waitpid(l->pid, &status, WNOHANG);

        if (r == l->pid) {
                l->pid = 0;
                if (ret_status)
                        *ret_status = status;
                return TRUE;
        }
        return FALSE;
}

static void libvirtd_spawn(Libvirtd *l)
{
        g_autoptr(GError) error = NULL;
        g_autofree char *log = g_build_filename(l->dir, "libvirtd.log", NULL);
        g_autofree char *home = g_build_filename(l->dir, "home", NULL);
        g_autofree char *run = g_build_filename(l->dir, "run", NULL);
        g_autofree char *drv = g_build_filename(l->dir, "no-drivers", NULL);
        g_autofree char *env_home = g_strconcat("HOME=", home, NULL);
        g_autofree char *env_run = g_strconcat("XDG_RUNTIME_DIR=", run, NULL);
        g_autofree char *env_config = g_strconcat("XDG_CONFIG_HOME=", home, "/.config", NULL);
        g_autofree char *env_cache = g_strconcat("XDG_CACHE_HOME=", home, "/.cache", NULL);
        /* The test driver is built into libvirt itself: load no driver module (no QEMU
         * probing, no network or storage drivers). */
        g_autofree char *env_drv = g_strconcat("LIBVIRT_DRIVER_DIR=", drv, NULL);
        const char *argv[] = {libvirtd_binary(), NULL};
        const char *envp[] = {env_home,   env_run, env_config,
                              env_cache,  env_drv, "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                              "LC_ALL=C", NULL};
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

        g_assert_cmpint(fd, >=, 0);
        if (!g_spawn_async_with_fds(l->dir, (char **) argv, (char **) envp, G_SPAWN_DO_NOT_REAP_CHILD,
                                    libvirtd_child_setup, l, &l->pid, -1, fd, fd, &error))
                g_error("Cannot start %s: %s", argv[0], error->message);
        close(fd);
}

static void libvirtd_wait_ready(Libvirtd *l)
{
        uint64_t deadline = now_mono() + USEC(60);

        for (;;) {
                virConnectPtr c = virConnectOpen(l->uri);
                int status;

                if (c) {
                        virConnectClose(c);
                        return;
                }
                virResetLastError();
                if (libvirtd_exited(l, &status)) {
                        g_autofree char *log = g_build_filename(l->dir, "libvirtd.log", NULL);
                        g_autofree char *text = NULL;
                        (void) g_file_get_contents(log, &text, NULL, NULL);
                        g_error("libvirtd exited (status %d) before answering:\n%s", status,
                                text ? text : "");
                }
                if (now_mono() > deadline)
                        g_error("libvirtd did not answer on %s within 60 s", l->uri);
                g_usleep(50 * 1000);
        }
}

static void libvirtd_start(Libvirtd *l)
{
        g_autoptr(GError) error = NULL;
        const char *sub[] = {"home", "run", "no-drivers"};
        struct passwd *pw;
        struct group *gr;

        l->uid = getuid();
        l->gid = getgid();
        if (getuid() == 0) {
                /* An unprivileged (session) libvirtd: nothing of the host's libvirtd is touched. */
                pw = getpwnam("nobody");
                gr = getgrnam("nogroup");
                if (!gr)
                        gr = getgrnam("nobody");
                g_assert_nonnull(pw);
                g_assert_nonnull(gr);
                l->uid = pw->pw_uid;
                l->gid = gr->gr_gid;
        }
        l->dir = g_dir_make_tmp("mc-libvirtd-XXXXXX", &error);
        g_assert_no_error(error);
        g_assert_cmpint(chmod(l->dir, 0755), ==, 0);
        for (size_t i = 0; i < G_N_ELEMENTS(sub); i++) {
                g_autofree char *p = g_build_filename(l->dir, sub[i], NULL);
                g_assert_cmpint(g_mkdir(p, 0700), ==, 0);
                g_assert_cmpint(chown(p, l->uid, l->gid), ==, 0);
        }
        l->uri = g_strdup_printf("test+unix:///default?socket=%s/run/libvirt/libvirt-sock", l->dir);
        libvirtd_spawn(l);
        libvirtd_wait_ready(l);
}

/* SIGTERM to its process group; SIGKILL if it has not gone within 10 s. */
static void libvirtd_kill(Libvirtd *l)
{
        uint64_t deadline = now_mono() + USEC(10);

        if (l->pid <= 0)
                return;
        (void) kill(-l->pid, SIGTERM);
        while (!libvirtd_exited(l, NULL)) {
                if (now_mono() > deadline) {
                        (void) kill(-l->pid, SIGKILL);
                        (void) waitpid(l->pid, NULL, 0);
                        l->pid = 0;
                        break;
                }
                g_usleep(20 * 1000);
        }
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        (void) remove(path);
        return 0;
}

static void libvirtd_stop(Libvirtd *l)
{
        libvirtd_kill(l);
        if (l->dir)
                (void) nftw(l->dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
        g_clear_pointer(&l->dir, g_free);
        g_clear_pointer(&l->uri, g_free);
}

static gboolean skip_without_libvirtd(void)
{
        if (libvirtd_binary() && g_file_test(libvirtd_binary(), G_FILE_TEST_IS_EXECUTABLE))
                return FALSE;
        g_test_skip("libvirtd is not installed (Debian package libvirt-daemon)");
        return TRUE;
}

static const char new_guest_xml[] = "<domain type='test'>"
                                    "  <name>mc-it-new</name>"
                                    "  <uuid>6695eb01-f6a4-8304-79aa-97f2502e19a1</uuid>"
                                    "  <memory unit='MiB'>1536</memory>"
                                    "  <currentMemory unit='MiB'>1280</currentMemory>"
                                    "  <vcpu>1</vcpu>"
                                    "  <os><type>hvm</type></os>"
                                    "  <devices><memballoon model='virtio'/></devices>"
                                    "</domain>";

/* The test driver's default guest. */
#define DEFAULT_GUEST "test"

static uint64_t remote_current_kib(virConnectPtr c, const char *name)
{
        virDomainPtr dom = virDomainLookupByName(c, name);
        virDomainInfo info;

        g_assert_nonnull(dom);
        g_assert_cmpint(virDomainGetInfo(dom, &info), ==, 0);
        virDomainFree(dom);
        return info.memory;
}

static void test_remote_targets_visible(void)
{
        Libvirtd l = {};
        Recorder rec;

        if (skip_without_libvirtd())
                return;
        libvirtd_start(&l);
        recorder_init(&rec);
        virConnectPtr peer = virConnectOpen(l.uri);
        g_assert_nonnull(peer);
        uint64_t before = remote_current_kib(peer, DEFAULT_GUEST);

        McManager *m = manager_new(l.uri, MC_INTERVAL_MAX_USEC, false, &rec);
        g_assert_true(mc_hypervisor_stamps_synthetic(m->hypervisor));
        tick(m);
        McGuest *d = must_find(m, DEFAULT_GUEST);
        g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "managed");
        g_assert_cmpuint(d->actual_kib, ==, before);
        g_assert_cmpuint(d->unused_kib, ==, before / 2);

        const BalloonRecord *b = recorder_find(&rec, DEFAULT_GUEST);
        g_assert_nonnull(b);
        g_assert_cmpuint(b->to_kib, ==, expected_claim_target(&m->config->policy, before, before / 2));
        /* Another connection sees the target the manager set. */
        g_assert_cmpuint(remote_current_kib(peer, DEFAULT_GUEST), ==, b->to_kib);
        uint64_t applied = b->to_kib;
        tick(m);
        g_assert_cmpuint(must_find(m, DEFAULT_GUEST)->actual_kib, ==, applied);

        mc_manager_free(m);
        virConnectClose(peer);
        libvirtd_stop(&l);
        recorder_clear(&rec);
}

static gboolean domain_present(gpointer userdata)
{
        gpointer *args = userdata;

        return mc_manager_find_guest(args[0], args[1]) != NULL;
}

static gboolean domain_absent(gpointer userdata)
{
        return !domain_present(userdata);
}

static void test_remote_lifecycle(void)
{
        Libvirtd l = {};
        Recorder rec;

        if (skip_without_libvirtd())
                return;
        libvirtd_start(&l);
        recorder_init(&rec);
        virConnectPtr peer = virConnectOpen(l.uri);
        g_assert_nonnull(peer);

        McManager *m = manager_new(l.uri, MC_INTERVAL_MAX_USEC, false, &rec);
        tick(m);
        g_assert_cmpuint(g_hash_table_size(m->guests), ==, 1);
        g_assert_null(mc_manager_find_guest(m, "mc-it-new"));

        /* Created while the manager runs: the lifecycle event shows it, one tick manages it. */
        virDomainPtr dom = virDomainCreateXML(peer, new_guest_xml, 0);
        g_assert_nonnull(dom);
        gpointer args[] = {m, (gpointer) "mc-it-new"};
        g_assert_true(spin_until(domain_present, args, USEC(10)));
        g_assert_cmpuint(rec.added, ==, 2);
        tick(m);
        McGuest *d = must_find(m, "mc-it-new");
        g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "managed");
        g_assert_cmpuint(d->actual_kib, ==, MIB(1280));
        g_assert_cmpuint(d->max_kib, ==, MIB(1536));
        const BalloonRecord *b = recorder_find(&rec, "mc-it-new");
        g_assert_nonnull(b);
        g_assert_cmpuint(b->to_kib, ==, expected_claim_target(&m->config->policy, MIB(1280), MIB(640)));
        g_assert_cmpuint(remote_current_kib(peer, "mc-it-new"), ==, b->to_kib);

        /* Destroyed: the event drops it at once; the next tick agrees. */
        g_assert_cmpint(virDomainDestroy(dom), ==, 0);
        virDomainFree(dom);
        g_assert_true(spin_until(domain_absent, args, USEC(10)));
        g_assert_cmpuint(rec.removed, ==, 1);
        tick(m);
        g_assert_null(mc_manager_find_guest(m, "mc-it-new"));
        g_assert_nonnull(mc_manager_find_guest(m, DEFAULT_GUEST));
        g_assert_cmpuint(g_hash_table_size(m->guests), ==, 1);

        /* Created and destroyed between two ticks, events unheard: the tick is the truth. */
        dom = virDomainCreateXML(peer, new_guest_xml, 0);
        g_assert_nonnull(dom);
        tick(m);
        g_assert_nonnull(mc_manager_find_guest(m, "mc-it-new"));
        g_assert_cmpint(virDomainDestroy(dom), ==, 0);
        virDomainFree(dom);
        tick(m);
        g_assert_null(mc_manager_find_guest(m, "mc-it-new"));

        mc_manager_free(m);
        virConnectClose(peer);
        libvirtd_stop(&l);
        recorder_clear(&rec);
}

static const char noballoon_guest_xml[] = "<domain type='test'>"
                                          "  <name>mc-it-noballoon</name>"
                                          "  <uuid>6695eb01-f6a4-8304-79aa-97f2502e19a2</uuid>"
                                          "  <memory unit='MiB'>1024</memory>"
                                          "  <currentMemory unit='MiB'>1024</currentMemory>"
                                          "  <vcpu>1</vcpu>"
                                          "  <os><type>hvm</type></os>"
                                          "  <devices><memballoon model='none'/></devices>"
                                          "</domain>";

/* A guest without a balloon device is never resized: checked from another connection. */
static void test_remote_noballoon_untouched(void)
{
        Libvirtd l = {};
        Recorder rec;

        if (skip_without_libvirtd())
                return;
        libvirtd_start(&l);
        recorder_init(&rec);
        virConnectPtr peer = virConnectOpen(l.uri);
        g_assert_nonnull(peer);
        virDomainPtr dom = virDomainCreateXML(peer, noballoon_guest_xml, 0);
        g_assert_nonnull(dom);
        virDomainFree(dom);

        McManager *m = manager_new(l.uri, MC_INTERVAL_MAX_USEC, false, &rec);
        for (unsigned i = 0; i < 20; i++) {
                tick(m);
                McGuest *d = must_find(m, "mc-it-noballoon");
                g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "no-balloon");
                g_assert_cmpuint(remote_current_kib(peer, "mc-it-noballoon"), ==, MIB(1024));
        }
        g_assert_null(recorder_find(&rec, "mc-it-noballoon"));
        /* The guest with a balloon next to it was moved meanwhile. */
        g_assert_nonnull(recorder_find(&rec, DEFAULT_GUEST));

        mc_manager_free(m);
        virConnectClose(peer);
        libvirtd_stop(&l);
        recorder_clear(&rec);
}

static void test_remote_dry_run(void)
{
        Libvirtd l = {};
        Recorder rec;

        if (skip_without_libvirtd())
                return;
        libvirtd_start(&l);
        recorder_init(&rec);
        virConnectPtr peer = virConnectOpen(l.uri);
        g_assert_nonnull(peer);
        uint64_t before = remote_current_kib(peer, DEFAULT_GUEST);

        McManager *m = manager_new(l.uri, MC_INTERVAL_MAX_USEC, true, &rec);
        for (unsigned i = 0; i < 3; i++) {
                tick(m);
                g_assert_cmpuint(must_find(m, DEFAULT_GUEST)->actual_kib, ==, before);
                g_assert_cmpuint(remote_current_kib(peer, DEFAULT_GUEST), ==, before);
        }

        mc_manager_free(m);
        virConnectClose(peer);
        libvirtd_stop(&l);
        recorder_clear(&rec);
}

static void test_remote_pause(void)
{
        Libvirtd l = {};
        Recorder rec;

        if (skip_without_libvirtd())
                return;
        libvirtd_start(&l);
        recorder_init(&rec);
        virConnectPtr peer = virConnectOpen(l.uri);
        g_assert_nonnull(peer);
        uint64_t before = remote_current_kib(peer, DEFAULT_GUEST);

        McManager *m = manager_new(l.uri, MC_INTERVAL_MAX_USEC, false, &rec);
        g_assert_cmpint(mc_manager_set_paused(m, true), ==, 0);
        tick(m);
        g_assert_cmpuint(rec.last_changed, ==, 0);
        g_assert_cmpuint(remote_current_kib(peer, DEFAULT_GUEST), ==, before);

        /* Stats still flow while paused: a change made by someone else shows at the next tick. */
        virDomainPtr dom = virDomainLookupByName(peer, DEFAULT_GUEST);
        g_assert_nonnull(dom);
        g_assert_cmpint(virDomainSetMemoryFlags(dom, MIB(1536), VIR_DOMAIN_AFFECT_LIVE), ==, 0);
        virDomainFree(dom);
        tick(m);
        McGuest *d = must_find(m, DEFAULT_GUEST);
        g_assert_cmpuint(d->actual_kib, ==, MIB(1536));
        g_assert_cmpuint(d->unused_kib, ==, MIB(768));
        g_assert_cmpuint(rec.last_changed, ==, 0);
        g_assert_cmpuint(rec.balloons->len, ==, 0);
        g_assert_cmpuint(remote_current_kib(peer, DEFAULT_GUEST), ==, MIB(1536));

        g_assert_cmpint(mc_manager_set_paused(m, false), ==, 0);
        tick(m);
        const BalloonRecord *b = recorder_find(&rec, DEFAULT_GUEST);
        g_assert_nonnull(b);
        g_assert_cmpuint(b->from_kib, ==, MIB(1536));
        g_assert_cmpuint(remote_current_kib(peer, DEFAULT_GUEST), ==, b->to_kib);

        mc_manager_free(m);
        virConnectClose(peer);
        libvirtd_stop(&l);
        recorder_clear(&rec);
}

static gboolean state_is(gpointer userdata)
{
        gpointer *args = userdata;

        return mc_manager_state(args[0]) == (McState) GPOINTER_TO_INT(args[1]);
}

/*
 * libvirtd dies while a tick applies decisions: the set-target calls fail, the tick stops
 * applying, and the guests it was using are freed only afterwards, from the loop (the
 * manager once freed every guest from inside the failing call; under ASan that crashes).
 */
static void test_remote_lost_while_applying(void)
{
        Libvirtd l = {};
        Recorder rec;

        if (skip_without_libvirtd())
                return;
        libvirtd_start(&l);
        recorder_init(&rec);
        virConnectPtr peer = virConnectOpen(l.uri);
        g_assert_nonnull(peer);

        McManager *m = manager_new(l.uri, MC_INTERVAL_MAX_USEC, false, &rec);
        /* The first tick learns that the test driver has no node stats: the host figure then
         * comes from /proc/meminfo, with no call that could fail before the decisions. */
        tick(m);
        g_assert_nonnull(recorder_find(&rec, DEFAULT_GUEST));
        unsigned balloons = rec.balloons->len;

        virDomainPtr dom = virDomainCreateXML(peer, new_guest_xml, 0);
        g_assert_nonnull(dom);
        virDomainFree(dom);
        virConnectClose(peer);
        kill_on_add = &l;
        kill_on_add_manager = m;
        int r = mc_manager_tick(m);
        kill_on_add_manager = NULL;
        g_assert_null(kill_on_add); /* it did die inside the tick */
        g_assert_cmpint(r, ==, 0);
        /* Its guests were all still there when the tick returned; none got a target. */
        g_assert_nonnull(mc_manager_find_guest(m, "mc-it-new"));
        g_assert_nonnull(mc_manager_find_guest(m, DEFAULT_GUEST));
        g_assert_cmpuint(rec.balloons->len, ==, balloons);
        g_assert_cmpuint(must_find(m, DEFAULT_GUEST)->last_target_kib, ==, 0);

        /* Then the loop hears of it. */
        gpointer disconnected[] = {m, GINT_TO_POINTER(MC_STATE_DISCONNECTED)};
        g_assert_true(spin_until(state_is, disconnected, USEC(15)));
        g_assert_cmpuint(g_hash_table_size(m->guests), ==, 0);

        mc_manager_free(m);
        libvirtd_stop(&l);
        recorder_clear(&rec);
}

static gboolean no_guests(gpointer userdata)
{
        return g_hash_table_size(((McManager *) userdata)->guests) == 0;
}

static void test_remote_reconnect(void)
{
        Libvirtd l = {};
        Recorder rec;

        if (skip_without_libvirtd())
                return;
        libvirtd_start(&l);
        recorder_init(&rec);

        McManager *m = manager_new(l.uri, MC_INTERVAL_MAX_USEC, false, &rec);
        g_assert_cmpint(mc_manager_state(m), ==, MC_STATE_RUNNING);
        tick(m);
        g_assert_nonnull(mc_manager_find_guest(m, DEFAULT_GUEST));
        unsigned notified = rec.state_notifications;

        /* libvirtd goes away: the manager notices on its own, without a tick. */
        libvirtd_kill(&l);
        gpointer disconnected[] = {m, GINT_TO_POINTER(MC_STATE_DISCONNECTED)};
        g_assert_true(spin_until(state_is, disconnected, USEC(15)));
        /* The guests go when the manager hears of it, from the loop, after any tick. */
        g_assert_true(spin_until(no_guests, m, USEC(1)));
        g_assert_cmpuint(rec.state_notifications, >, notified);
        g_assert_cmpuint(g_hash_table_size(m->guests), ==, 0);
        g_assert_cmpint(mc_manager_tick(m), ==, -ENOTCONN);

        /* Down for a while: retries fail and back off. */
        spin_for(USEC(1.5));
        g_assert_cmpint(mc_manager_state(m), ==, MC_STATE_DISCONNECTED);

        /* Back: the manager reconnects by itself and manages the guest again. */
        notified = rec.state_notifications;
        uint64_t t0 = now_mono();
        libvirtd_spawn(&l);
        gpointer running[] = {m, GINT_TO_POINTER(MC_STATE_RUNNING)};
        g_assert_true(spin_until(state_is, running, USEC(45)));
        g_test_message("reconnected %.1f s after libvirtd was started again",
                       (double) (now_mono() - t0) / 1e6);
        g_assert_cmpuint(rec.state_notifications, >, notified);
        tick(m);
        McGuest *d = must_find(m, DEFAULT_GUEST);
        g_assert_cmpstr(mc_guest_status_to_string(d->status), ==, "managed");

        mc_manager_free(m);
        libvirtd_stop(&l);
        recorder_clear(&rec);
}

static const char meta_guest_xml[] = "<domain type='test'>"
                                     "  <name>mc-it-meta</name>"
                                     "  <uuid>6695eb01-f6a4-8304-79aa-97f2502e19a3</uuid>"
                                     "  <metadata><memcoord:limits xmlns:memcoord='" MC_LIBVIRT_META_NS
                                     "' min='1250M' weight='400'/></metadata>"
                                     "  <memory unit='MiB'>1536</memory>"
                                     "  <currentMemory unit='MiB'>1280</currentMemory>"
                                     "  <vcpu>1</vcpu>"
                                     "  <os><type>hvm</type></os>"
                                     "  <devices><memballoon model='virtio'/></devices>"
                                     "</domain>";

static char *peer_metadata(virDomainPtr dom, unsigned flags)
{
        char *xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, MC_LIBVIRT_META_NS, flags);

        if (!xml)
                virResetLastError();
        return xml;
}

static void test_remote_metadata(void)
{
        Libvirtd l = {};
        Recorder rec;
        const char *why = NULL;

        if (skip_without_libvirtd())
                return;
        libvirtd_start(&l);
        recorder_init(&rec);
        virConnectPtr peer = virConnectOpen(l.uri);
        g_assert_nonnull(peer);

        McManager *m = manager_new(l.uri, MC_INTERVAL_MAX_USEC, false, &rec);
        tick(m);

        /* Defined with metadata by someone else and started: managed with its limits from its
         * first tick. Without them the first claim would go to 1216 MiB. */
        virDomainPtr dom = virDomainDefineXML(peer, meta_guest_xml);
        g_assert_nonnull(dom);
        g_assert_cmpint(virDomainCreate(dom), ==, 0);
        gpointer args[] = { m, (gpointer) "mc-it-meta" };
        g_assert_true(spin_until(domain_present, args, USEC(10)));
        tick(m);
        assert_limits(m, "mc-it-meta", MIB(1250), MIB(1536), 400, false);
        const BalloonRecord *b = recorder_find(&rec, "mc-it-meta");
        g_assert_nonnull(b);
        g_assert_cmpuint(b->to_kib, ==, MIB(1250));

        /* Changed from the peer (what `virsh metadata` does): in effect at the next tick. */
        g_assert_cmpint(virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT,
                                             "<limits min='1100M' max='1400M' exclude='no'/>", "mc",
                                             MC_LIBVIRT_META_NS, VIR_DOMAIN_AFFECT_LIVE),
                        ==, 0);
        uint64_t t0 = now_mono();
        spin_for(USEC(0.3));
        tick(m);
        g_test_message("metadata change in effect %.2f s after it was made",
                       (double) (now_mono() - t0) / 1e6);
        assert_limits(m, "mc-it-meta", MIB(1100), MIB(1400), 100, false);
        /* And kept: the ticks after do not read it again (paused, a tick's only calls are its
         * collect's). */
        g_assert_cmpint(mc_manager_set_paused(m, true), ==, 0);
        for (int i = 0; i < 3; i++) {
                tick(m);
                g_assert_cmpuint(mc_hypervisor_calls(m->hypervisor)->other_calls, ==, 0);
                assert_limits(m, "mc-it-meta", MIB(1100), MIB(1400), 100, false);
        }
        g_assert_cmpint(mc_manager_set_paused(m, false), ==, 0);

        /* Written by the manager: live and in the persistent definition, seen by the peer. */
        g_assert_cmpint(mc_manager_set_domain_limits_persistent(m, "mc-it-meta", MIB(1000), 0, 150, &why),
                        ==, 0);
        g_assert_cmpint(mc_manager_set_domain_excluded_persistent(m, "mc-it-meta", true, &why), ==, 0);
        for (unsigned flags = VIR_DOMAIN_AFFECT_LIVE; flags <= VIR_DOMAIN_AFFECT_CONFIG; flags <<= 1) {
                g_autofree char *xml = peer_metadata(dom, flags);
                g_assert_nonnull(xml);
                g_test_message("peer reads (flags %u): %s", flags, xml);
                g_assert_nonnull(strstr(xml, "min=\"1000M\""));
                g_assert_nonnull(strstr(xml, "weight=\"150\""));
                g_assert_nonnull(strstr(xml, "exclude=\"yes\""));
                g_assert_null(strstr(xml, "max="));
        }
        spin_for(USEC(0.3));
        tick(m);
        assert_limits(m, "mc-it-meta", MIB(1000), MIB(1536), 150, true);
        g_assert_cmpstr(mc_guest_status_to_string(must_find(m, "mc-it-meta")->status), ==, "excluded");

        /* Removed by the peer: back to the defaults. */
        g_assert_cmpint(virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, NULL, NULL,
                                             MC_LIBVIRT_META_NS, VIR_DOMAIN_AFFECT_LIVE),
                        ==, 0);
        spin_for(USEC(0.3));
        tick(m);
        assert_limits(m, "mc-it-meta", MIB(256), MIB(1536), 100, false);

        (void) virDomainDestroy(dom);
        (void) virDomainUndefine(dom);
        virDomainFree(dom);
        mc_manager_free(m);
        virConnectClose(peer);
        libvirtd_stop(&l);
        recorder_clear(&rec);
}

/* The test's own connections report failures through return values, not on stderr. */
static void quiet_libvirt(void *userdata, virErrorPtr error)
{
}

int main(int argc, char **argv)
{
        int r;

        /* As memcoordd does: a write to a libvirtd that just died fails with EPIPE. */
        (void) signal(SIGPIPE, SIG_IGN);

        g_test_init(&argc, &argv, NULL);
        virSetErrorFunc(NULL, quiet_libvirt);
        node_xml = g_getenv("MC_NODE_XML");
        if (!node_xml || !g_path_is_absolute(node_xml))
                g_error("MC_NODE_XML must name tests/data/node-guests.xml by its absolute path");

        node_metadata_xml = g_getenv("MC_NODE_METADATA_XML");
        if (!node_metadata_xml || !g_path_is_absolute(node_metadata_xml))
                g_error("MC_NODE_METADATA_XML must name tests/data/node-metadata.xml by its absolute path");

        g_assert_cmpint(sd_event_new(&event), >=, 0);
        g_assert_cmpint(mc_libvirt_event_register(event), >=, 0);

        /* tests/integration/meson.build lists every path, one meson test each. */
        g_test_add_func("/libvirt/node/stats-read", test_node_stats_read);
        g_test_add_func("/libvirt/node/targets-applied", test_node_targets_applied);
        g_test_add_func("/libvirt/node/noballoon-never-resized", test_node_noballoon_never_resized);
        g_test_add_func("/libvirt/node/noballoon-reports-memory", test_node_noballoon_reports_memory);
        g_test_add_func("/libvirt/node/definition-unread", test_node_definition_unread);
        g_test_add_func("/libvirt/node/synthetic-stamps-fresh", test_node_synthetic_stamps_fresh);
        g_test_add_func("/libvirt/node/dry-run", test_node_dry_run);
        g_test_add_func("/libvirt/node/dry-run-signals", test_node_dry_run_signals);
        g_test_add_func("/libvirt/node/pause", test_node_pause);
        g_test_add_func("/libvirt/node/metadata-limits", test_node_metadata_limits);
        g_test_add_func("/libvirt/node/metadata-persistent", test_node_metadata_persistent);
        g_test_add_func("/libvirt/node/metadata-changed", test_node_metadata_changed);
        g_test_add_func("/libvirt/libvirtd/metadata", test_remote_metadata);
        g_test_add_func("/libvirt/libvirtd/targets-visible", test_remote_targets_visible);
        g_test_add_func("/libvirt/libvirtd/lifecycle", test_remote_lifecycle);
        g_test_add_func("/libvirt/libvirtd/noballoon-untouched", test_remote_noballoon_untouched);
        g_test_add_func("/libvirt/libvirtd/dry-run", test_remote_dry_run);
        g_test_add_func("/libvirt/libvirtd/pause", test_remote_pause);
        g_test_add_func("/libvirt/libvirtd/reconnect", test_remote_reconnect);
        g_test_add_func("/libvirt/libvirtd/lost-while-applying", test_remote_lost_while_applying);

        r = g_test_run();
        mc_libvirt_event_unregister();
        event = sd_event_unref(event);
        return r;
}
