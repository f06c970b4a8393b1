/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "manager.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "libvirt-event.h"
#include "log.h"
#include "memcoord/memcoord.h"

/* A target the balloon has not reached in this long is given up: the guest could not. */
#define TARGET_GIVE_UP_USEC (10 * MC_USEC_PER_SEC)

static const char *const state_table[_MC_STATE_MAX] = {
        [MC_STATE_RUNNING] = "running",
        [MC_STATE_PAUSED] = "paused",
        [MC_STATE_DISCONNECTED] = "disconnected",
};

const char *mc_state_to_string(McState s)
{
        return s >= 0 && s < _MC_STATE_MAX ? state_table[s] : NULL;
}

static uint64_t now_usec(const McManager *m, clockid_t clock)
{
        return mc_hypervisor_now(m->hypervisor, clock);
}

static void guest_free(gpointer p)
{
        McGuest *g = p;

        if (!g)
                return;
        mc_guest_clear(g);
        g_free(g);
}

static void notify_manager(McManager *m, unsigned changes)
{
        if (changes && m->listener.manager_changed)
                m->listener.manager_changed(m->listener_userdata, changes);
}

static void notify_guest(McManager *m, McGuest *g, unsigned changes)
{
        changes &= ~(unsigned) MC_GUEST_FIGURES;
        if (changes && m->listener.guest_changed)
                m->listener.guest_changed(m->listener_userdata, g, changes);
}

/*
 * The guest's limits as configured, resolved field by field; the first of these that sets a
 * field wins (the table in memcoord.conf(5)):
 *   1. the host's settings for the guest, by name: the bus (state file) over the config
 *      file's [Domain NAME];
 *   2. the guest's own definition: memcoord's element in its domain XML metadata;
 *   3. for the floor only, the guest's <memtune><min_guarantee>;
 *   4. the defaults, resolved by mc_guest_limits(): DefaultMin, the guest's maximum memory,
 *      weight 100, not excluded.
 * "Sets" means a non-zero size or weight, or an exclusion. This is the one place that decides.
 */
static unsigned apply_config_limits(const McManager *m, McGuest *g)
{
        const McDomainConfig *c = mc_config_get_domain(m->config, g->name);
        const McGuestMeta *meta = &g->meta;
        uint64_t min = c && c->min_kib ? c->min_kib
                       : meta->min_kib ? meta->min_kib
                                       : meta->min_guarantee_kib;
        uint64_t max = c && c->max_kib ? c->max_kib : meta->max_kib;
        unsigned weight = c && c->weight ? c->weight : meta->weight;
        bool excluded = (c && c->excluded) || meta->excluded == 1;
        unsigned changes = 0;

        if (g->min_kib != min || g->limit_max_kib != max || g->weight != weight || g->excluded != excluded)
                changes |= MC_GUEST_CHANGED_LIMITS;
        g->min_kib = min;
        g->limit_max_kib = max;
        g->weight = weight;
        if (g->excluded != excluded)
                changes |= mc_guest_set_excluded(g, excluded);
        return changes;
}

static McGuest *add_guest(McManager *m, const char *uuid, const char *name)
{
        McGuest *g = g_new0(McGuest, 1);

        mc_guest_init(g, uuid, name);
        (void) apply_config_limits(m, g);
        g_hash_table_insert(m->guests, g->uuid, g);
        mc_log_idf(LOG_INFO, MC_MESSAGE_GUEST_APPEARED, (MC_LOG_DOMAIN(g->name, g->uuid)), "%s: now watched",
                   g->name);
        if (m->listener.guest_added)
                m->listener.guest_added(m->listener_userdata, g);
        return g;
}

static void remove_guest(McManager *m, McGuest *g)
{
        mc_log_idf(LOG_INFO, MC_MESSAGE_GUEST_GONE, (MC_LOG_DOMAIN(g->name, g->uuid)), "%s: gone", g->name);
        if (m->listener.guest_removed)
                m->listener.guest_removed(m->listener_userdata, g);
        g_hash_table_remove(m->guests, g->uuid);
}

static void remove_all_guests(McManager *m)
{
        g_autofree McGuest **list = NULL;
        size_t n;

        list = mc_manager_list_guests(m, &n);
        for (size_t i = 0; i < n; i++)
                remove_guest(m, list[i]);
}

static void on_domain_event(void *userdata, const char *uuid, const char *name, McDomainEvent event)
{
        McManager *m = userdata;
        McGuest *g = g_hash_table_lookup(m->guests, uuid);

        /* Events are dispatched from the loop, never inside a tick. Show the guest at once;
         * its stats arrive with the next tick. */
        g_assert(!m->in_tick);
        if (event == MC_DOMAIN_EVENT_STARTED && !g)
                (void) add_guest(m, uuid, name);
        else if (event == MC_DOMAIN_EVENT_STOPPED && g)
                remove_guest(m, g);
}

static int read_guests(McManager *m, McObserveContext *ctx);

/* Called from a deferred event: never while a tick uses the guests. */
static void on_connection_changed(void *userdata, bool connected)
{
        McManager *m = userdata;

        g_assert(!m->in_tick);
        m->connected = connected;
        if (connected)
                m->counters.connects++;
        if (!connected)
                remove_all_guests(m);
        notify_manager(m, MC_MANAGER_CHANGED_STATE);
        /* Show the guests now, not one interval later; decisions wait for the tick. */
        if (connected) {
                McObserveContext ctx;
                m->in_tick = true;
                (void) read_guests(m, &ctx);
                m->in_tick = false;
        }
}

int mc_manager_new(sd_event *e, McConfig *config, const char *config_path, const char *state_path,
                   McManager **ret)
{
        static const McHypervisorCallbacks callbacks = {
                .domain_event = on_domain_event,
                .connection_changed = on_connection_changed,
        };
        g_autoptr(McManager) m = g_new0(McManager, 1);
        int r;

        m->event = sd_event_ref(e);
        m->config = config;
        m->config_path = g_strdup(config_path);
        m->state_path = g_strdup(state_path);
        m->paused = config->paused;
        m->guests = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, guest_free);
        r = mc_hypervisor_new(e, config->uri, &callbacks, m, &m->hypervisor);
        if (r < 0)
                return r;
        *ret = g_steal_pointer(&m);
        return 0;
}

McManager *mc_manager_free(McManager *m)
{
        if (!m)
                return NULL;
        m->tick_source = sd_event_source_disable_unref(m->tick_source);
        /* No listener calls while tearing down. */
        m->listener = (McManagerListener){};
        mc_hypervisor_free(m->hypervisor);
        g_hash_table_unref(m->guests);
        mc_config_free(m->config);
        g_free(m->config_path);
        g_free(m->state_path);
        mc_config_overrides_clear(&m->overrides);
        sd_event_unref(m->event);
        g_free(m);
        return NULL;
}

void mc_manager_set_overrides(McManager *m, const McConfigOverrides *o)
{
        mc_config_overrides_copy(&m->overrides, o);
}

void mc_manager_set_listener(McManager *m, const McManagerListener *l, void *userdata)
{
        m->listener = l ? *l : (McManagerListener){};
        m->listener_userdata = userdata;
}

McState mc_manager_state(const McManager *m)
{
        /* As the manager was told, from the loop: the guests and the state agree. */
        if (!m->connected)
                return MC_STATE_DISCONNECTED;
        return m->paused ? MC_STATE_PAUSED : MC_STATE_RUNNING;
}

static int compare_by_name(const void *a, const void *b)
{
        const McGuest *x = *(McGuest *const *) a, *y = *(McGuest *const *) b;
        int c = strcmp(x->name, y->name);

        return c != 0 ? c : strcmp(x->uuid, y->uuid);
}

McGuest **mc_manager_list_guests(McManager *m, size_t *ret_n)
{
        guint n = g_hash_table_size(m->guests);
        McGuest **list = g_new0(McGuest *, n + 1);
        GHashTableIter it;
        gpointer v;
        size_t i = 0;

        g_hash_table_iter_init(&it, m->guests);
        while (g_hash_table_iter_next(&it, NULL, &v))
                list[i++] = v;
        qsort(list, n, sizeof(McGuest *), compare_by_name);
        *ret_n = n;
        return list;
}

McGuest *mc_manager_find_guest(McManager *m, const char *name_or_uuid)
{
        McGuest *g = g_hash_table_lookup(m->guests, name_or_uuid);
        GHashTableIter it;
        gpointer v;

        if (g)
                return g;
        g_hash_table_iter_init(&it, m->guests);
        while (g_hash_table_iter_next(&it, NULL, &v))
                if (g_str_equal(((McGuest *) v)->name, name_or_uuid))
                        return v;
        return NULL;
}

McGuestLimits mc_manager_guest_limits(const McManager *m, const McGuest *g)
{
        return mc_guest_limits(m->config->policy.default_min_kib, g);
}

/* The journal's MESSAGE_ID of "left alone", by cause. */
static const char *const skip_message_ids[_MC_GUEST_STATUS_MAX] = {
        [MC_GUEST_NO_BALLOON] = MC_MESSAGE_SKIP_NO_BALLOON, [MC_GUEST_STALE] = MC_MESSAGE_SKIP_STALE,
        [MC_GUEST_EXCLUDED] = MC_MESSAGE_SKIP_EXCLUDED,     [MC_GUEST_BUSY] = MC_MESSAGE_SKIP_BUSY,
        [MC_GUEST_STUCK] = MC_MESSAGE_BALLOON_STUCK,
};

static void log_status(const McGuest *g)
{
        const char *status = mc_guest_status_to_string(g->status);

        switch (g->status) {
        case MC_GUEST_MANAGED:
                break;
        case MC_GUEST_STUCK:
                mc_log_idf(LOG_INFO, skip_message_ids[g->status],
                           (MC_LOG_DOMAIN(g->name, g->uuid), MC_LOG_STR("MEMCOORD_REASON", status),
                            MC_LOG_U64("MEMCOORD_FROM_KIB", g->actual_kib)),
                           "%s: balloon does not follow its targets (%llu MiB); left alone for a while",
                           g->name, (unsigned long long) g->actual_kib / 1024);
                break;
        default:
                mc_log_idf(LOG_INFO, skip_message_ids[g->status],
                           (MC_LOG_DOMAIN(g->name, g->uuid), MC_LOG_STR("MEMCOORD_REASON", status)),
                           "%s: %s, left alone", g->name, status);
        }
}

static void observe(McManager *m, McGuest *g, const McReading *r, const McObserveContext *ctx)
{
        unsigned changes = mc_guest_observe(g, r, ctx);

        if (changes & (MC_GUEST_CHANGED_NAME | MC_GUEST_CHANGED_META))
                changes |= apply_config_limits(m, g);
        if (changes & MC_GUEST_CHANGED_STATUS)
                log_status(g);
        if (changes & MC_GUEST_MOVED_BY_GUEST)
                mc_log_idf(LOG_INFO, MC_MESSAGE_BALLOON_MOVED_BY_GUEST,
                           (MC_LOG_DOMAIN(g->name, g->uuid), MC_LOG_U64("MEMCOORD_TO_KIB", g->actual_kib)),
                           "%s: balloon grew to %llu MiB without us; taken as it is", g->name,
                           (unsigned long long) g->actual_kib / 1024);
        notify_guest(m, g,
                     changes & (MC_GUEST_CHANGED_STATUS | MC_GUEST_CHANGED_NAME | MC_GUEST_CHANGED_MAX |
                                MC_GUEST_CHANGED_LIMITS));
}

/* Returns -ENOTCONN when the connection went away: the tick stops applying. */
static int apply_decision(McManager *m, McGuest *g, const McDecision *dec, uint64_t now_mono)
{
        const char *reason = mc_reason_to_string(dec->reason);
        /* What the guest really holds: a claim in flight has not landed yet, whatever the
         * policy's base for the next step was. */
        uint64_t from = g->actual_kib;
        int r;

        if (m->config->dry_run) {
                /* Logged and signalled as usual; nothing is applied or remembered. */
                mc_log_balloon(g->name, g->uuid, from, dec->to_kib, reason, true);
                m->counters.balloon_changes[dec->reason]++;
                if (m->listener.balloon_changed)
                        m->listener.balloon_changed(m->listener_userdata, g, from, dec->to_kib, dec->reason);
                return 0;
        }
        r = mc_hypervisor_set_target(m->hypervisor, g->uuid, dec->to_kib);
        if (r < 0) {
                mc_log_idf(LOG_WARNING, MC_MESSAGE_BALLOON_FAILED,
                           (MC_LOG_DOMAIN(g->name, g->uuid), MC_LOG_U64("MEMCOORD_FROM_KIB", from),
                            MC_LOG_U64("MEMCOORD_TO_KIB", dec->to_kib),
                            MC_LOG_STR("MEMCOORD_REASON", reason),
                            MC_LOG_STR("MEMCOORD_ERROR", mc_hypervisor_error(m->hypervisor))),
                           "%s: %s", g->name, mc_hypervisor_error(m->hypervisor));
                if (r == -ENOTCONN || !mc_hypervisor_is_connected(m->hypervisor))
                        return -ENOTCONN;
                mc_guest_target_failed(g, now_mono);
                m->counters.set_failures++;
                return 0;
        }
        mc_guest_target_set(g, from, dec->to_kib, dec->reason, now_mono, now_usec(m, CLOCK_REALTIME));
        mc_log_balloon(g->name, g->uuid, from, dec->to_kib, reason, false);
        m->counters.balloon_changes[dec->reason]++;
        if (m->listener.balloon_changed)
                m->listener.balloon_changed(m->listener_userdata, g, from, dec->to_kib, dec->reason);
        return 1;
}

static void log_short(const McManager *m, const McGuest *g, uint64_t short_kib, const McPolicySummary *sum,
                      const McGuest *served_first)
{
        if (short_kib == 0 || g->short_kib > 0)
                return; /* said once, when it starts */
        g_autofree char *behind = served_first && served_first != g
                                          ? g_strdup_printf(", too little for every consumer: %s is served first",
                                                            served_first->name)
                                          : NULL;
        mc_log_idf(LOG_WARNING, MC_MESSAGE_GUEST_SHORT,
                   (MC_LOG_DOMAIN(g->name, g->uuid), MC_LOG_U64("MEMCOORD_SHORT_KIB", short_kib)),
                   "%s: short of %llu MiB: %s%s (weight %u)", g->name,
                   (unsigned long long) (short_kib + 1023) / 1024,
                   sum->budget_bound ? "the host budget is spent"
                           : "the host has not enough free memory above its threshold",
                   behind ? behind : "", mc_manager_guest_limits(m, g).weight);
}

/* Collect and observe: every guest the hypervisor lists, and none it no longer does. */
static int read_guests(McManager *m, McObserveContext *ctx)
{
        g_autofree McGuest **list = NULL;
        g_autoptr(GHashTable) seen = NULL;
        McReading *readings = NULL;
        size_t n_readings = 0, n;
        int r;

        if (!mc_hypervisor_is_connected(m->hypervisor))
                return -ENOTCONN;
        unsigned interval_sec = (unsigned) MAX(m->config->interval_usec / MC_USEC_PER_SEC, 1);
        r = mc_hypervisor_collect(m->hypervisor, interval_sec, &readings, &n_readings);
        if (r < 0) {
                mc_log_idf(LOG_WARNING, MC_MESSAGE_COLLECT_FAILED,
                           (MC_LOG_STR("MEMCOORD_ERROR", mc_hypervisor_error(m->hypervisor))), "%s",
                           mc_hypervisor_error(m->hypervisor));
                return r;
        }

        *ctx = (McObserveContext){
                .now_mono_usec = now_usec(m, CLOCK_MONOTONIC),
                .now_real_usec = now_usec(m, CLOCK_REALTIME),
                .max_age_usec = mc_freshness_max_age(m->config->interval_usec),
                .give_up_usec = TARGET_GIVE_UP_USEC,
                .dead_band_kib = m->config->policy.dead_band_kib,
                .synthetic = mc_hypervisor_stamps_synthetic(m->hypervisor),
        };
        seen = g_hash_table_new(g_str_hash, g_str_equal);
        for (size_t i = 0; i < n_readings; i++) {
                McGuest *g = g_hash_table_lookup(m->guests, readings[i].uuid);

                if (!g)
                        g = add_guest(m, readings[i].uuid, readings[i].name);
                observe(m, g, &readings[i], ctx);
                g_hash_table_add(seen, g->uuid);
        }
        mc_readings_free(readings, n_readings);

        /* Guests the collect no longer lists are gone, whether or not we heard the event. */
        list = mc_manager_list_guests(m, &n);
        for (size_t i = 0; i < n; i++)
                if (!g_hash_table_contains(seen, list[i]->uuid))
                        remove_guest(m, list[i]);
        return 0;
}

/* The tick, once the guests are known to be valid throughout: nothing removes one while it
 * runs (connection loss and lifecycle events come from the loop, after it). */
static int run_tick(McManager *m)
{
        g_autofree McGuest **list = NULL;
        g_autofree McDecision *decisions = NULL;
        g_autofree uint64_t *short_kib = NULL;
        McObserveContext ctx;
        size_t n;
        unsigned managed = 0, changed = 0;
        McPolicySummary summary;
        int r;

        mc_hypervisor_reset_calls(m->hypervisor);
        r = read_guests(m, &ctx);
        if (r < 0)
                return r;
        list = mc_manager_list_guests(m, &n);

        McHostMemory host;
        r = mc_hypervisor_host_memory(m->hypervisor, &host);
        if (r < 0) {
                /* Without the host figure nothing can be granted safely: skip the tick. */
                mc_log_idf(LOG_WARNING, MC_MESSAGE_HOST_MEMORY_FAILED,
                           (MC_LOG_STR("MEMCOORD_ERROR", mc_hypervisor_error(m->hypervisor))),
                           "Failed to read host memory: %s", mc_hypervisor_error(m->hypervisor));
                return r;
        }
        bool host_changed = host.free_kib != m->host.free_kib || host.total_kib != m->host.total_kib;
        m->host = host;

        for (size_t i = 0; i < n; i++)
                if (list[i]->status == MC_GUEST_MANAGED)
                        managed++;
                else
                        m->counters.skipped[list[i]->status]++;

        decisions = g_new0(McDecision, MAX(n, 1));
        short_kib = g_new0(uint64_t, MAX(n, 1));
        McPolicyInput in = {
                .host_free_kib = host.free_kib,
                .now_mono_usec = ctx.now_mono_usec,
                .interval_usec = m->config->interval_usec,
        };
        ssize_t n_decisions = mc_policy_run(&m->config->policy, &in, (const McGuest *const *) list, n,
                                            decisions, short_kib, &summary);
        if (n_decisions < 0)
                return (int) n_decisions;
        m->last_summary = summary;

        for (size_t i = 0; i < n; i++) {
                log_short(m, list[i], short_kib[i], &summary,
                          summary.served_first < n ? list[summary.served_first] : NULL);
                list[i]->short_kib = short_kib[i];
        }

        if (!m->paused)
                for (ssize_t i = 0; i < n_decisions; i++) {
                        r = apply_decision(m, list[decisions[i].guest], &decisions[i], ctx.now_mono_usec);
                        if (r < 0)
                                break; /* the connection is gone: the loop hears of it next */
                        if (r > 0 || m->config->dry_run)
                                changed++;
                }

        m->tick_count++;
        notify_manager(m, MC_MANAGER_CHANGED_TICK | (host_changed ? MC_MANAGER_CHANGED_HOST : 0));
        if (m->listener.tick_completed)
                m->listener.tick_completed(m->listener_userdata, m->tick_count, host.free_kib, managed,
                                           changed);
        return 0;
}

int mc_manager_tick(McManager *m)
{
        struct timespec a, b;
        int r;

        (void) clock_gettime(CLOCK_MONOTONIC, &a);
        m->in_tick = true;
        r = run_tick(m);
        m->in_tick = false;
        (void) clock_gettime(CLOCK_MONOTONIC, &b);
        m->last_tick_usec = (uint64_t) (b.tv_sec - a.tv_sec) * MC_USEC_PER_SEC +
                            (uint64_t) ((b.tv_nsec - a.tv_nsec) / 1000);
        mc_metrics_observe_tick(&m->counters, m->last_tick_usec);
        const McCallCounters *calls = mc_hypervisor_calls(m->hypervisor);
        m->counters.calls_bulk += calls->bulk_calls;
        m->counters.calls_per_domain += calls->per_domain_calls;
        m->counters.calls_other += calls->other_calls;
        return r;
}

/* The interval on the host's clock: the simulator's guests may live faster. */
static uint64_t real_interval_usec(const McManager *m)
{
        double speed = mc_hypervisor_speed(m->hypervisor);
        uint64_t usec = (uint64_t) ((double) m->config->interval_usec / (speed > 0 ? speed : 1.0));

        return MAX(usec, UINT64_C(1000));
}

static int on_tick_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        McManager *m = userdata;
        uint64_t now;

        (void) mc_manager_tick(m);

        /* Fixed rate; a late tick is not made up for by a burst. */
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        m->next_tick_usec = MAX(usec + real_interval_usec(m), now);
        (void) sd_event_source_set_time(s, m->next_tick_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int arm_tick_timer(McManager *m)
{
        uint64_t now;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        m->next_tick_usec = now + real_interval_usec(m);
        if (m->tick_source) {
                int r = sd_event_source_set_time(m->tick_source, m->next_tick_usec);
                if (r < 0)
                        return r;
                return sd_event_source_set_enabled(m->tick_source, SD_EVENT_ONESHOT);
        }
        /* Accuracy 1 us: sd-event's default (250 ms) would stretch short intervals. */
        return sd_event_add_time(m->event, &m->tick_source, CLOCK_MONOTONIC, m->next_tick_usec, 1,
                                 on_tick_timer, m);
}

int mc_manager_start(McManager *m)
{
        int r = mc_hypervisor_connect(m->hypervisor);

        if (r < 0)
                mc_log_idf(LOG_WARNING, MC_MESSAGE_CONNECT_FAILED,
                           (MC_LOG_STR("MEMCOORD_URI", mc_hypervisor_uri(m->hypervisor)),
                            MC_LOG_STR("MEMCOORD_ERROR", mc_hypervisor_error(m->hypervisor))),
                           "%s; will retry", mc_hypervisor_error(m->hypervisor));
        else
                mc_log_idf(LOG_INFO, MC_MESSAGE_CONNECTED,
                           (MC_LOG_STR("MEMCOORD_URI", mc_hypervisor_uri(m->hypervisor))), "Connected to %s",
                           mc_hypervisor_uri(m->hypervisor));
        return arm_tick_timer(m);
}

static int persist(McManager *m)
{
        g_autoptr(GError) error = NULL;

        if (!m->state_path)
                return 0;
        if (!mc_config_save_state(m->config, m->state_path, &error)) {
                mc_log_idf(LOG_ERR, MC_MESSAGE_STATE_SAVE_FAILED,
                           (MC_LOG_STR("MEMCOORD_ERROR", error->message)),
                           "Failed to save settings to %s: %s", m->state_path, error->message);
                return -EIO;
        }
        return 0;
}

/* Applies a changed policy setting: check, persist, and roll back if persisting fails. */
static int set_policy(McManager *m, const McPolicySettings *p, McConfigKey key, McManagerChange change,
                      const char **why)
{
        McPolicySettings old = m->config->policy;
        unsigned old_runtime = m->config->runtime;
        const char *problem = mc_policy_settings_check(p);
        int r;

        if (problem) {
                if (why)
                        *why = problem;
                return -EINVAL;
        }
        m->config->policy = *p;
        m->config->runtime |= key;
        r = persist(m);
        if (r < 0) {
                m->config->policy = old;
                m->config->runtime = old_runtime;
                if (why)
                        *why = "the settings could not be saved";
                return r;
        }
        notify_manager(m, change);
        return 0;
}

int mc_manager_set_domain_threshold(McManager *m, uint64_t kib, const char **why)
{
        McPolicySettings p = m->config->policy;

        p.domain_threshold_kib = kib;
        return set_policy(m, &p, MC_KEY_DOMAIN_THRESHOLD, MC_MANAGER_CHANGED_DOMAIN_THRESHOLD, why);
}

int mc_manager_set_host_threshold(McManager *m, uint64_t kib, const char **why)
{
        McPolicySettings p = m->config->policy;

        if (m->host.total_kib > 0 && kib >= m->host.total_kib) {
                if (why)
                        *why = "the host threshold must be smaller than the host's memory";
                return -EINVAL;
        }
        p.host_threshold_kib = kib;
        return set_policy(m, &p, MC_KEY_HOST_THRESHOLD, MC_MANAGER_CHANGED_HOST_THRESHOLD, why);
}

int mc_manager_set_host_budget(McManager *m, uint64_t kib, const char **why)
{
        McPolicySettings p = m->config->policy;

        if (kib > 0 && kib < mc_mib_to_kib(256)) {
                if (why)
                        *why = "a host budget must be at least 256 MiB (or 0 for none)";
                return -EINVAL;
        }
        p.host_budget_kib = kib;
        return set_policy(m, &p, MC_KEY_HOST_BUDGET, MC_MANAGER_CHANGED_HOST_BUDGET, why);
}

int mc_manager_set_interval(McManager *m, uint64_t usec, const char **why)
{
        const char *problem = mc_config_interval_check(usec);
        uint64_t old = m->config->interval_usec;
        unsigned old_runtime = m->config->runtime;
        int r;

        if (problem) {
                if (why)
                        *why = problem;
                return -EINVAL;
        }
        m->config->interval_usec = usec;
        m->config->runtime |= MC_KEY_INTERVAL;
        r = persist(m);
        if (r < 0) {
                m->config->interval_usec = old;
                m->config->runtime = old_runtime;
                if (why)
                        *why = "the settings could not be saved";
                return r;
        }
        if (m->tick_source)
                (void) arm_tick_timer(m);
        notify_manager(m, MC_MANAGER_CHANGED_INTERVAL);
        return 0;
}

int mc_manager_set_paused(McManager *m, bool paused)
{
        if (m->paused == paused)
                return 0;
        /* Kept in the state file, so that a restart does not resume. */
        bool old = m->config->paused;
        unsigned old_runtime = m->config->runtime;
        m->config->paused = paused;
        m->config->runtime |= MC_KEY_PAUSED;
        int r = persist(m);
        if (r < 0) {
                m->config->paused = old;
                m->config->runtime = old_runtime;
                return r;
        }
        m->paused = paused;
        mc_log_id(LOG_INFO, paused ? MC_MESSAGE_PAUSED : MC_MESSAGE_RESUMED, "%s",
                  paused ? "Paused: no balloon changes until resumed" : "Resumed");
        notify_manager(m, MC_MANAGER_CHANGED_STATE);
        return 0;
}

static const char *check_limits(const McManager *m, const McGuest *g, uint64_t min_kib, uint64_t max_kib,
                                unsigned weight);

int mc_manager_set_domain_limits(McManager *m, const char *domain, uint64_t min_kib, uint64_t max_kib,
                                 unsigned weight, const char **why)
{
        McGuest *g = mc_manager_find_guest(m, domain);
        const char *problem = NULL;

        if (!g)
                return -ENOENT;
        problem = check_limits(m, g, min_kib, max_kib, weight);
        if (problem) {
                if (why)
                        *why = problem;
                return -EINVAL;
        }

        McDomainConfig *c = mc_config_ensure_domain(m->config, g->name);
        McDomainConfig old = *c;
        c->min_kib = min_kib;
        c->max_kib = max_kib;
        c->weight = weight;
        c->runtime |= MC_DOMAIN_KEY_LIMITS;
        int r = persist(m);
        if (r < 0) {
                *c = old;
                if (why)
                        *why = "the settings could not be saved";
                return r;
        }
        notify_guest(m, g, apply_config_limits(m, g));
        return 0;
}

/*
 * Stores the settings in the guest's definition, then drops the host's own settings for the
 * fields written there, which would otherwise win over them (apply_config_limits()).
 */
static int set_meta(McManager *m, McGuest *g, const McGuestMeta *meta, bool limits, bool exclusion,
                    const char **why)
{
        int r = mc_hypervisor_set_meta(m->hypervisor, g->uuid, meta);

        if (r < 0) {
                mc_log_id(LOG_WARNING, MC_MESSAGE_METADATA_WRITE_FAILED, "%s: %s", g->name,
                          mc_hypervisor_error(m->hypervisor));
                if (why)
                        *why = mc_hypervisor_error(m->hypervisor);
                return r;
        }
        mc_log_id(LOG_INFO, MC_MESSAGE_METADATA_WRITTEN, "%s: settings stored in its domain XML", g->name);
        g->meta.min_kib = meta->min_kib;
        g->meta.max_kib = meta->max_kib;
        g->meta.weight = meta->weight;
        g->meta.excluded = meta->excluded;

        McDomainConfig *c = (McDomainConfig *) mc_config_get_domain(m->config, g->name);
        if (c) {
                if (limits)
                        c->min_kib = c->max_kib = 0, c->weight = 0;
                if (exclusion)
                        c->excluded = false;
                /* The definition has them now: failing to save the state file loses nothing. */
                (void) persist(m);
        }
        notify_guest(m, g, apply_config_limits(m, g));
        return 0;
}

int mc_manager_set_domain_limits_persistent(McManager *m, const char *domain, uint64_t min_kib,
                                            uint64_t max_kib, unsigned weight, const char **why)
{
        McGuest *g = mc_manager_find_guest(m, domain);
        const char *problem;

        if (!g)
                return -ENOENT;
        problem = check_limits(m, g, min_kib, max_kib, weight);
        if (problem) {
                if (why)
                        *why = problem;
                return -EINVAL;
        }
        McGuestMeta meta = g->meta;
        meta.min_kib = min_kib;
        meta.max_kib = max_kib;
        meta.weight = weight;
        return set_meta(m, g, &meta, true, false, why);
}

int mc_manager_set_domain_excluded_persistent(McManager *m, const char *domain, bool excluded,
                                              const char **why)
{
        McGuest *g = mc_manager_find_guest(m, domain);

        if (!g)
                return -ENOENT;
        McGuestMeta meta = g->meta;
        meta.excluded = excluded;
        return set_meta(m, g, &meta, false, true, why);
}

/* NULL if the limits are acceptable for g, else why not. */
static const char *check_limits(const McManager *m, const McGuest *g, uint64_t min_kib, uint64_t max_kib,
                                unsigned weight)
{
        const char *problem = NULL;
        uint64_t floor = min_kib > 0 ? min_kib : m->config->policy.default_min_kib;
        if (min_kib > 0 && max_kib > 0 && min_kib > max_kib)
                problem = "the minimum is larger than the maximum";
        else if (g->max_kib > 0 && min_kib > g->max_kib)
                problem = "the minimum is larger than the guest's maximum memory";
        else if (max_kib > 0 && max_kib < floor)
                problem = "the maximum is below the guest's floor (its minimum, or the default minimum)";
        else if (weight > MC_WEIGHT_MAX)
                problem = "the weight must be between 1 and 10000 (0 for the default)";
        return problem;
}

int mc_manager_set_domain_excluded(McManager *m, const char *domain, bool excluded)
{
        McGuest *g = mc_manager_find_guest(m, domain);

        if (!g)
                return -ENOENT;
        McDomainConfig *c = mc_config_ensure_domain(m->config, g->name);
        bool old = c->excluded;
        unsigned old_runtime = c->runtime;
        c->excluded = excluded;
        c->runtime |= MC_DOMAIN_KEY_EXCLUDE;
        int r = persist(m);
        if (r < 0) {
                c->excluded = old;
                c->runtime = old_runtime;
                return r;
        }
        notify_guest(m, g, apply_config_limits(m, g));
        return 0;
}

int mc_manager_reload(McManager *m, GError **error)
{
        g_autoptr(McConfig) c = mc_config_new();

        /* As at start: config file, state file, command line. */
        if (m->config_path && g_file_test(m->config_path, G_FILE_TEST_EXISTS) &&
            !mc_config_load_file(c, m->config_path, error))
                return -EINVAL;
        if (m->state_path && g_file_test(m->state_path, G_FILE_TEST_EXISTS) &&
            !mc_config_load_state_file(c, m->state_path, error))
                return -EINVAL;
        mc_config_apply_overrides(c, &m->overrides);
        if (!g_str_equal(c->uri, m->config->uri))
                mc_log_idf(LOG_WARNING, MC_MESSAGE_URI_CHANGE_IGNORED,
                           (MC_LOG_STR("MEMCOORD_URI", m->config->uri)),
                           "URI changes take effect at restart; still using %s", m->config->uri);
        g_free(c->uri);
        c->uri = g_strdup(m->config->uri);
        /* A reload re-reads settings; it neither pauses nor resumes. */
        c->paused = m->paused;
        c->runtime = (c->runtime & ~(unsigned) MC_KEY_PAUSED) | (m->config->runtime & MC_KEY_PAUSED);

        bool interval_changed = c->interval_usec != m->config->interval_usec;
        McConfig *old = m->config;
        m->config = g_steal_pointer(&c);
        mc_config_free(old);
        if (interval_changed && m->tick_source)
                (void) arm_tick_timer(m);
        mc_log_id(LOG_INFO, MC_MESSAGE_RELOADED, "Settings reloaded");
        notify_manager(m, MC_MANAGER_CHANGED_SETTINGS);

        g_autofree McGuest **list = NULL;
        size_t n;
        list = mc_manager_list_guests(m, &n);
        for (size_t i = 0; i < n; i++)
                notify_guest(m, list[i], apply_config_limits(m, list[i]));
        return 0;
}
