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

static uint64_t now_usec(clockid_t clock)
{
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * MC_USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void domain_free(gpointer p)
{
        McDomain *d = p;

        if (!d)
                return;
        g_free(d->uuid);
        g_free(d->name);
        g_free(d);
}

static void notify_properties(McManager *m, const char *const *names)
{
        if (m->listener.properties_changed)
                m->listener.properties_changed(m->listener_userdata, names);
}

#define NOTIFY(m, ...) notify_properties((m), (const char *const[]){ __VA_ARGS__, NULL })

static McDomain *add_domain(McManager *m, const char *uuid, const char *name)
{
        McDomain *d = g_new0(McDomain, 1);

        d->manager = m;
        d->uuid = g_strdup(uuid);
        d->name = g_strdup(name ? name : uuid);
        d->status = MC_GUEST_STALE;
        d->seen = m->generation;
        g_hash_table_insert(m->domains, d->uuid, d);
        mc_log_info("%s: now watched", d->name);
        if (m->listener.domain_added)
                m->listener.domain_added(m->listener_userdata, d);
        return d;
}

static void remove_domain(McManager *m, McDomain *d)
{
        mc_log_info("%s: gone", d->name);
        if (m->listener.domain_removed)
                m->listener.domain_removed(m->listener_userdata, d);
        g_hash_table_remove(m->domains, d->uuid);
}

static void remove_all_domains(McManager *m)
{
        g_autofree McDomain **list = NULL;
        size_t n;

        list = mc_manager_list_domains(m, &n);
        for (size_t i = 0; i < n; i++)
                remove_domain(m, list[i]);
}

static void on_domain_event(void *userdata, const char *uuid, const char *name, McDomainEvent event)
{
        McManager *m = userdata;
        McDomain *d = g_hash_table_lookup(m->domains, uuid);

        /* Show the guest at once; its stats arrive with the next tick. */
        if (event == MC_DOMAIN_EVENT_STARTED && !d)
                (void) add_domain(m, uuid, name);
        else if (event == MC_DOMAIN_EVENT_STOPPED && d)
                remove_domain(m, d);
}

static void on_connection_changed(void *userdata, bool connected)
{
        McManager *m = userdata;

        if (!connected)
                remove_all_domains(m);
        NOTIFY(m, "State");
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
        m->domains = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, domain_free);
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
        g_hash_table_unref(m->domains);
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
        if (!mc_hypervisor_is_connected(m->hypervisor))
                return MC_STATE_DISCONNECTED;
        return m->paused ? MC_STATE_PAUSED : MC_STATE_RUNNING;
}

static int compare_by_name(const void *a, const void *b)
{
        const McDomain *x = *(McDomain *const *) a, *y = *(McDomain *const *) b;
        int c = strcmp(x->name, y->name);

        return c != 0 ? c : strcmp(x->uuid, y->uuid);
}

McDomain **mc_manager_list_domains(McManager *m, size_t *ret_n)
{
        guint n = g_hash_table_size(m->domains);
        McDomain **list = g_new0(McDomain *, n + 1);
        GHashTableIter it;
        gpointer v;
        size_t i = 0;

        g_hash_table_iter_init(&it, m->domains);
        while (g_hash_table_iter_next(&it, NULL, &v))
                list[i++] = v;
        qsort(list, n, sizeof(McDomain *), compare_by_name);
        *ret_n = n;
        return list;
}

McDomain *mc_manager_find_domain(McManager *m, const char *name_or_uuid)
{
        McDomain *d = g_hash_table_lookup(m->domains, name_or_uuid);
        GHashTableIter it;
        gpointer v;

        if (d)
                return d;
        g_hash_table_iter_init(&it, m->domains);
        while (g_hash_table_iter_next(&it, NULL, &v))
                if (g_str_equal(((McDomain *) v)->name, name_or_uuid))
                        return v;
        return NULL;
}

void mc_manager_domain_limits(const McManager *m, const McDomain *d, uint64_t *min_kib, uint64_t *max_kib,
                              unsigned *weight, bool *excluded)
{
        const McDomainConfig *c = mc_config_get_domain(m->config, d->name);

        if (min_kib)
                *min_kib = c && c->min_kib ? c->min_kib : m->config->policy.default_min_kib;
        if (max_kib)
                *max_kib = c && c->max_kib ? c->max_kib : d->max_kib;
        if (weight)
                *weight = c && c->weight ? c->weight : MC_DEFAULT_WEIGHT;
        if (excluded)
                *excluded = c && c->excluded;
}

/* Folds one stats reading into the guest's record. */
static void update_domain(McManager *m, McDomain *d, const McDomainStats *st, uint64_t now_mono,
                          uint64_t now_real)
{
        const McDomainConfig *c = mc_config_get_domain(m->config, d->name);
        uint64_t band = m->config->policy.dead_band_kib;
        McGuestStatus old_status = d->status;
        bool fresh = false;

        if (!g_str_equal(d->name, st->name)) {
                g_free(d->name);
                d->name = g_strdup(st->name);
        }
        d->seen = m->generation;
        d->max_kib = st->max_kib;
        if (st->has_balloon) {
                McFreshnessInput in = {
                        .last_update = st->last_update,
                        .now_mono_usec = now_mono,
                        .now_real_usec = now_real,
                        .max_age_usec = mc_freshness_max_age(m->config->interval_usec),
                        .synthetic = mc_hypervisor_stamps_synthetic(m->hypervisor),
                };
                fresh = mc_freshness_update(&d->freshness, &in, &d->stats_age_usec);
                d->has_prev = d->has_stats;
                d->prev_actual_kib = d->actual_kib;
                d->prev_unused_kib = d->unused_kib;
                d->actual_kib = st->actual_kib;
                d->unused_kib = st->unused_kib;
                d->available_kib = st->available_kib;
                d->usable_kib = st->usable_kib;
                d->has_stats = true;
        } else {
                d->freshness = (McFreshness){};
                d->stats_age_usec = UINT64_MAX;
                d->has_prev = false;
                if (st->actual_kib > 0)
                        d->actual_kib = st->actual_kib;
        }

        if (!st->has_balloon)
                d->status = MC_GUEST_NO_BALLOON;
        else if (c && c->excluded)
                d->status = MC_GUEST_EXCLUDED;
        else if (!fresh)
                d->status = MC_GUEST_STALE;
        else
                d->status = MC_GUEST_MANAGED;
        if (d->status != old_status && d->status != MC_GUEST_MANAGED)
                mc_log_info("%s: %s, left alone", d->name, mc_guest_status_to_string(d->status));

        /*
         * Our last target: overtaken by the guest, reached, or given up. The guest overtook it
         * when its balloon grew past it (or grew with no target of ours): autodeflate under
         * memory pressure. Such a guest is taken as it now is, not pushed back this tick.
         */
        d->moved_externally = false;
        if (d->status != MC_GUEST_MANAGED) {
                /* The policy counts a pending grant as in flight whatever the status: only
                 * as long as it may still land. */
                if (d->target_kib > 0 && now_mono - d->target_set_usec > TARGET_GIVE_UP_USEC)
                        d->target_kib = 0;
                return;
        }
        if (d->has_prev && d->actual_kib > d->prev_actual_kib + band &&
            (d->target_kib == 0 || d->actual_kib > d->target_kib + band)) {
                d->moved_externally = true;
                d->target_kib = 0;
                mc_log_info("%s: balloon grew to %llu MiB without us; taken as it is", d->name,
                            (unsigned long long) d->actual_kib / 1024);
        } else if (d->target_kib > 0) {
                uint64_t diff = d->actual_kib > d->target_kib ? d->actual_kib - d->target_kib
                                                              : d->target_kib - d->actual_kib;
                if (diff < band)
                        d->target_kib = 0;
                else if (now_mono - d->target_set_usec > TARGET_GIVE_UP_USEC) {
                        mc_log_debug("%s: balloon stuck at %llu MiB short of %llu MiB; target dropped",
                                     d->name, (unsigned long long) d->actual_kib / 1024,
                                     (unsigned long long) d->target_kib / 1024);
                        d->target_kib = 0;
                }
        }
}

static void fill_guest(const McManager *m, const McDomain *d, McGuest *g)
{
        const McDomainConfig *c = mc_config_get_domain(m->config, d->name);

        *g = (McGuest){
                .name = d->name,
                .status = d->status,
                .actual_kib = d->actual_kib,
                .unused_kib = d->unused_kib,
                .max_kib = d->max_kib,
                .min_kib = c ? c->min_kib : 0,
                .limit_max_kib = c ? c->max_kib : 0,
                .weight = c && c->weight ? c->weight : MC_DEFAULT_WEIGHT,
                .has_prev = d->has_prev,
                .prev_unused_kib = d->prev_unused_kib,
                .last_target_kib = d->target_kib,
                .moved_externally = d->moved_externally,
        };
}

static void apply_decision(McManager *m, McDomain *d, const McDecision *dec, uint64_t now_mono)
{
        const char *reason = mc_reason_to_string(dec->reason);
        int r;

        if (m->config->dry_run) {
                /* Logged and signalled as usual; nothing is applied or remembered. */
                mc_log_balloon(d->name, d->uuid, dec->from_kib, dec->to_kib, reason, true);
                if (m->listener.balloon_changed)
                        m->listener.balloon_changed(m->listener_userdata, d, dec->from_kib, dec->to_kib,
                                                    dec->reason);
                return;
        }
        r = mc_hypervisor_set_target(m->hypervisor, d->uuid, dec->to_kib, &m->last_calls);
        if (r < 0) {
                mc_log_warning("%s: %s", d->name, mc_hypervisor_error(m->hypervisor));
                return;
        }
        d->target_kib = dec->to_kib;
        d->target_set_usec = now_mono;
        d->last_change_usec = now_usec(CLOCK_REALTIME);
        d->last_reason = dec->reason;
        mc_log_balloon(d->name, d->uuid, dec->from_kib, dec->to_kib, reason, false);
        if (m->listener.balloon_changed)
                m->listener.balloon_changed(m->listener_userdata, d, dec->from_kib, dec->to_kib,
                                            dec->reason);
}

int mc_manager_tick(McManager *m)
{
        g_autofree McDomain **list = NULL;
        g_autofree McGuest *guests = NULL;
        g_autofree McDecision *decisions = NULL;
        McDomainStats *stats = NULL;
        size_t n_stats = 0, n;
        unsigned managed = 0, changed = 0;
        McPolicySummary summary;
        int r;

        m->last_calls = (McCallCounters){};
        if (!mc_hypervisor_is_connected(m->hypervisor))
                return -ENOTCONN;

        unsigned interval_sec = (unsigned) MAX(m->config->interval_usec / MC_USEC_PER_SEC, 1);
        r = mc_hypervisor_collect(m->hypervisor, interval_sec, &stats, &n_stats, &m->last_calls);
        if (r < 0) {
                mc_log_warning("%s", mc_hypervisor_error(m->hypervisor));
                return r;
        }

        uint64_t now_mono = now_usec(CLOCK_MONOTONIC), now_real = now_usec(CLOCK_REALTIME);
        m->generation++;
        for (size_t i = 0; i < n_stats; i++) {
                McDomain *d = g_hash_table_lookup(m->domains, stats[i].uuid);

                if (!d)
                        d = add_domain(m, stats[i].uuid, stats[i].name);
                McGuestStatus old_status = d->status;
                uint64_t old_max = d->max_kib;
                update_domain(m, d, &stats[i], now_mono, now_real);
                /* The figures change every tick and are not signalled; status and limits are. */
                if ((d->status != old_status || d->max_kib != old_max) && m->listener.domain_changed)
                        m->listener.domain_changed(m->listener_userdata, d);
        }
        mc_domain_stats_free_array(stats, n_stats);

        /* Guests the bulk call no longer lists are gone, whether or not we heard the event. */
        list = mc_manager_list_domains(m, &n);
        for (size_t i = 0; i < n; i++)
                if (list[i]->seen != m->generation)
                        remove_domain(m, list[i]);
        g_free(list);
        list = mc_manager_list_domains(m, &n);

        McHostMemory host;
        r = mc_hypervisor_host_memory(m->hypervisor, &host, &m->last_calls);
        if (r < 0) {
                /* Without the host figure nothing can be granted safely: skip the tick. */
                mc_log_warning("Failed to read host memory: %s", strerror(-r));
                return r;
        }
        bool host_changed = host.free_kib != m->host.free_kib || host.total_kib != m->host.total_kib;
        m->host = host;

        guests = g_new0(McGuest, MAX(n, 1));
        decisions = g_new0(McDecision, MAX(n, 1));
        for (size_t i = 0; i < n; i++) {
                fill_guest(m, list[i], &guests[i]);
                if (guests[i].status == MC_GUEST_MANAGED)
                        managed++;
        }

        ssize_t n_decisions =
                mc_policy_run(&m->config->policy, host.free_kib, guests, n, decisions, &summary);
        if (n_decisions < 0)
                return (int) n_decisions;

        if (!m->paused)
                for (ssize_t i = 0; i < n_decisions; i++) {
                        apply_decision(m, list[decisions[i].guest], &decisions[i], now_mono);
                        changed++;
                }

        m->tick_count++;
        if (host_changed)
                NOTIFY(m, "HostFreeBytes", "HostTotalBytes", "TickCount");
        else
                NOTIFY(m, "TickCount");
        if (m->listener.tick_completed)
                m->listener.tick_completed(m->listener_userdata, m->tick_count, host.free_kib, managed,
                                           changed);
        return 0;
}

static int on_tick_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        McManager *m = userdata;
        uint64_t now;

        (void) mc_manager_tick(m);

        /* Fixed rate; a late tick is not made up for by a burst. */
        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        m->next_tick_usec = MAX(usec + m->config->interval_usec, now);
        (void) sd_event_source_set_time(s, m->next_tick_usec);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int arm_tick_timer(McManager *m)
{
        uint64_t now;

        (void) sd_event_now(m->event, CLOCK_MONOTONIC, &now);
        m->next_tick_usec = now + m->config->interval_usec;
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
                mc_log_warning("%s; will retry", mc_hypervisor_error(m->hypervisor));
        else
                mc_log_info("Connected to %s", mc_hypervisor_uri(m->hypervisor));
        return arm_tick_timer(m);
}

static int persist(McManager *m)
{
        g_autoptr(GError) error = NULL;

        if (!m->state_path)
                return 0;
        if (!mc_config_save_state(m->config, m->state_path, &error)) {
                mc_log_error("Failed to save settings to %s: %s", m->state_path, error->message);
                return -EIO;
        }
        return 0;
}

/* Applies a changed policy setting: check, persist, and roll back if persisting fails. */
static int set_policy(McManager *m, const McPolicySettings *p, McConfigKey key, const char *property,
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
        NOTIFY(m, property);
        return 0;
}

int mc_manager_set_domain_threshold(McManager *m, uint64_t kib, const char **why)
{
        McPolicySettings p = m->config->policy;

        p.domain_threshold_kib = kib;
        return set_policy(m, &p, MC_KEY_DOMAIN_THRESHOLD, "DomainThresholdBytes", why);
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
        return set_policy(m, &p, MC_KEY_HOST_THRESHOLD, "HostThresholdBytes", why);
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
        return set_policy(m, &p, MC_KEY_HOST_BUDGET, "HostBudgetBytes", why);
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
        NOTIFY(m, "IntervalUSec");
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
        mc_log_info("%s", paused ? "Paused: no balloon changes until resumed" : "Resumed");
        NOTIFY(m, "State");
        return 0;
}

int mc_manager_set_domain_limits(McManager *m, const char *domain, uint64_t min_kib, uint64_t max_kib,
                                 unsigned weight, const char **why)
{
        McDomain *d = mc_manager_find_domain(m, domain);

        if (!d)
                return -ENOENT;
        if (min_kib > 0 && max_kib > 0 && min_kib > max_kib) {
                if (why)
                        *why = "the minimum is larger than the maximum";
                return -EINVAL;
        }
        if (d->max_kib > 0 && min_kib > d->max_kib) {
                if (why)
                        *why = "the minimum is larger than the guest's maximum memory";
                return -EINVAL;
        }
        if (weight > MC_WEIGHT_MAX) {
                if (why)
                        *why = "the weight must be between 1 and 10000 (0 for the default)";
                return -EINVAL;
        }

        McDomainConfig *c = mc_config_ensure_domain(m->config, d->name);
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
        if (m->listener.domain_changed)
                m->listener.domain_changed(m->listener_userdata, d);
        return 0;
}

int mc_manager_set_domain_excluded(McManager *m, const char *domain, bool excluded)
{
        McDomain *d = mc_manager_find_domain(m, domain);

        if (!d)
                return -ENOENT;
        McDomainConfig *c = mc_config_ensure_domain(m->config, d->name);
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
        if (excluded) {
                d->status = MC_GUEST_EXCLUDED;
                d->target_kib = 0;
        }
        if (m->listener.domain_changed)
                m->listener.domain_changed(m->listener_userdata, d);
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
                mc_log_warning("URI changes take effect at restart; still using %s", m->config->uri);
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
        mc_log_info("Settings reloaded");
        NOTIFY(m, "IntervalUSec", "DomainThresholdBytes", "HostThresholdBytes", "HostBudgetBytes", "DryRun");
        return 0;
}
