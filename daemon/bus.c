/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "bus.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "memcoord-build.h"
#include "log.h"
#include "memcoord/errors.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

struct McBus {
        sd_bus *bus;
        McManager *manager;
        sd_bus_slot *slots[4];
};

static char *domain_path(const McGuest *g)
{
        char *path = NULL;

        if (sd_bus_path_encode(MC_DOMAIN_PATH_PREFIX, g->uuid, &path) < 0)
                return NULL;
        return path;
}

/* Settings are kept in KiB. Rounding up keeps a non-zero size non-zero (0 means "none" or
 * "default") and a size just above a limit above it. */
static uint64_t bytes_to_kib_up(uint64_t bytes)
{
        return bytes / MC_BYTES_PER_KIB + (bytes % MC_BYTES_PER_KIB != 0);
}

/* The one translation of manager errors into bus errors. */
static int reply_error(sd_bus_error *error, int r, const char *what, const char *why)
{
        switch (r) {
        case -EINVAL:
                return sd_bus_error_setf(error, MC_ERROR_INVALID_ARGUMENT, "%s: %s", what,
                                         why ? why : "invalid value");
        case -ENOENT:
                return sd_bus_error_setf(error, MC_ERROR_NO_SUCH_DOMAIN, "No guest '%s' is running", what);
        case -ENOTCONN:
                return sd_bus_error_setf(error, MC_ERROR_NOT_CONNECTED, "Not connected to libvirt");
        default:
                return sd_bus_error_set_errnof(error, r, "%s: %s", what, why ? why : strerror(-r));
        }
}

/* ---- org.memcoord1.Manager ---- */

static int property_manager(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        McManager *m = userdata;
        const McPolicySettings *p = &m->config->policy;

        if (g_str_equal(property, "Version"))
                return sd_bus_message_append(reply, "s", MC_VERSION);
        if (g_str_equal(property, "State"))
                return sd_bus_message_append(reply, "s", mc_state_to_string(mc_manager_state(m)));
        if (g_str_equal(property, "Policy"))
                return sd_bus_message_append(reply, "s", mc_policy_kind_to_string(p->kind));
        if (g_str_equal(property, "IntervalUSec"))
                return sd_bus_message_append(reply, "t", m->config->interval_usec);
        if (g_str_equal(property, "DomainThresholdBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(p->domain_threshold_kib));
        if (g_str_equal(property, "HostThresholdBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(p->host_threshold_kib));
        if (g_str_equal(property, "HostBudgetBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(p->host_budget_kib));
        if (g_str_equal(property, "DryRun"))
                return sd_bus_message_append(reply, "b", m->config->dry_run);
        if (g_str_equal(property, "LibvirtURI"))
                return sd_bus_message_append(reply, "s", m->config->uri);
        if (g_str_equal(property, "HostTotalBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(m->host.total_kib));
        if (g_str_equal(property, "HostFreeBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(m->host.free_kib));
        if (g_str_equal(property, "TickCount"))
                return sd_bus_message_append(reply, "t", m->tick_count);
        return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", property);
}

static int do_list_domains(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        McManager *m = userdata;
        g_autofree McGuest **list = NULL;
        size_t n;
        int r;

        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(reply, 'a', "(ossstttttttttuts)");
        if (r < 0)
                return r;
        list = mc_manager_list_guests(m, &n);
        for (size_t i = 0; i < n; i++) {
                const McGuest *g = list[i];
                g_autofree char *path = domain_path(g);
                McGuestLimits l = mc_manager_guest_limits(m, g);

                if (!path)
                        return -ENOMEM;
                r = sd_bus_message_append(
                        reply, "(ossstttttttttuts)", path, g->name, g->uuid,
                        mc_guest_status_to_string(g->status), mc_kib_to_bytes(g->actual_kib),
                        mc_kib_to_bytes(mc_guest_target_kib(g)), mc_kib_to_bytes(g->unused_kib),
                        mc_kib_to_bytes(g->available_kib), mc_kib_to_bytes(g->usable_kib),
                        mc_kib_to_bytes(g->max_kib), mc_kib_to_bytes(l.floor_kib),
                        mc_kib_to_bytes(l.cap_kib), g->stats_age_usec, l.weight, g->last_change_usec,
                        g->last_change_usec ? mc_reason_to_string(g->last_reason) : "");
                if (r < 0)
                        return r;
        }
        r = sd_bus_message_close_container(reply);
        if (r < 0)
                return r;
        return sd_bus_send(NULL, reply, NULL);
}

typedef int (*SizeSetter)(McManager *m, uint64_t kib, const char **why);

static int set_size(sd_bus_message *msg, McManager *m, sd_bus_error *error, SizeSetter setter,
                    const char *what)
{
        const char *why = NULL;
        uint64_t bytes;
        int r;

        r = sd_bus_message_read(msg, "t", &bytes);
        if (r < 0)
                return r;
        if (bytes > MC_SIZE_MAX_BYTES)
                return reply_error(error, -EINVAL, what, "a size must not exceed 4 PiB");
        r = setter(m, bytes_to_kib_up(bytes), &why);
        if (r < 0)
                return reply_error(error, r, what, why);
        return sd_bus_reply_method_return(msg, NULL);
}

static int do_set_domain_threshold(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return set_size(msg, userdata, error, mc_manager_set_domain_threshold, "Domain threshold");
}

static int do_set_host_threshold(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return set_size(msg, userdata, error, mc_manager_set_host_threshold, "Host threshold");
}

static int do_set_host_budget(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return set_size(msg, userdata, error, mc_manager_set_host_budget, "Host budget");
}

static int do_set_interval(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        const char *why = NULL;
        uint64_t usec;
        int r;

        r = sd_bus_message_read(msg, "t", &usec);
        if (r < 0)
                return r;
        r = mc_manager_set_interval(userdata, usec, &why);
        if (r < 0)
                return reply_error(error, r, "Interval", why);
        return sd_bus_reply_method_return(msg, NULL);
}

static int do_pause(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        (void) mc_manager_set_paused(userdata, true);
        return sd_bus_reply_method_return(msg, NULL);
}

static int do_resume(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        (void) mc_manager_set_paused(userdata, false);
        return sd_bus_reply_method_return(msg, NULL);
}

/* SetDomainLimits' arguments, sizes bounded and in KiB: both the plain and the persistent
 * call read them here. Returns 0, or what to return from the handler. */
static int read_domain_limits(sd_bus_message *msg, sd_bus_error *error, const char **domain,
                              uint64_t *min_kib, uint64_t *max_kib, uint32_t *weight)
{
        uint64_t min_bytes, max_bytes;
        int r;

        r = sd_bus_message_read(msg, "sttu", domain, &min_bytes, &max_bytes, weight);
        if (r < 0)
                return r;
        if (min_bytes > MC_SIZE_MAX_BYTES || max_bytes > MC_SIZE_MAX_BYTES)
                return reply_error(error, -EINVAL, *domain, "a size must not exceed 4 PiB");
        *min_kib = bytes_to_kib_up(min_bytes);
        *max_kib = bytes_to_kib_up(max_bytes);
        return 0;
}

static int do_set_domain_limits(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        const char *domain, *why = NULL;
        uint64_t min_kib, max_kib;
        uint32_t weight;
        int r;

        r = read_domain_limits(msg, error, &domain, &min_kib, &max_kib, &weight);
        if (r != 0)
                return r;
        r = mc_manager_set_domain_limits(userdata, domain, min_kib, max_kib, weight, &why);
        if (r < 0)
                return reply_error(error, r, domain, why);
        return sd_bus_reply_method_return(msg, NULL);
}

static int do_set_domain_excluded(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        const char *domain;
        int excluded, r;

        r = sd_bus_message_read(msg, "sb", &domain, &excluded);
        if (r < 0)
                return r;
        r = mc_manager_set_domain_excluded(userdata, domain, excluded);
        if (r < 0)
                return reply_error(error, r, domain, NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

static int do_set_domain_limits_persistent(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        const char *domain, *why = NULL;
        uint64_t min_kib, max_kib;
        uint32_t weight;
        int r;

        r = read_domain_limits(msg, error, &domain, &min_kib, &max_kib, &weight);
        if (r != 0)
                return r;
        r = mc_manager_set_domain_limits_persistent(userdata, domain, min_kib, max_kib, weight, &why);
        if (r < 0)
                return reply_error(error, r, domain, why);
        return sd_bus_reply_method_return(msg, NULL);
}

static int do_set_domain_excluded_persistent(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        const char *domain, *why = NULL;
        int excluded, r;

        r = sd_bus_message_read(msg, "sb", &domain, &excluded);
        if (r < 0)
                return r;
        r = mc_manager_set_domain_excluded_persistent(userdata, domain, excluded, &why);
        if (r < 0)
                return reply_error(error, r, domain, why);
        return sd_bus_reply_method_return(msg, NULL);
}

static int do_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        g_autoptr(GError) e = NULL;

        if (mc_manager_reload(userdata, &e) < 0)
                return sd_bus_error_setf(error, MC_ERROR_BAD_CONFIG, "%s", e ? e->message : "reload failed");
        return sd_bus_reply_method_return(msg, NULL);
}

/* Every method passes the one gate (auth.c) first; its second half runs when the gate says
 * yes, which may be later, once polkit has answered. */
static int method_list_domains(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_list_domains, userdata, error);
}

static int method_set_domain_threshold(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_set_domain_threshold, userdata, error);
}

static int method_set_host_threshold(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_set_host_threshold, userdata, error);
}

static int method_set_host_budget(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_set_host_budget, userdata, error);
}

static int method_set_interval(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_set_interval, userdata, error);
}

static int method_pause(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_pause, userdata, error);
}

static int method_resume(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_resume, userdata, error);
}

static int method_set_domain_limits(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_set_domain_limits, userdata, error);
}

static int method_set_domain_excluded(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_set_domain_excluded, userdata, error);
}

static int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_reload, userdata, error);
}

static int method_set_domain_limits_persistent(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_set_domain_limits_persistent, userdata, error);
}

static int method_set_domain_excluded_persistent(sd_bus_message *msg, void *userdata, sd_bus_error *error)
{
        return mc_auth_gate(msg, do_set_domain_excluded_persistent, userdata, error);
}

static const sd_bus_vtable manager_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Version", "s", property_manager, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("State", "s", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Policy", "s", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("IntervalUSec", "t", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("DomainThresholdBytes", "t", property_manager, 0,
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("HostThresholdBytes", "t", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("HostBudgetBytes", "t", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("DryRun", "b", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LibvirtURI", "s", property_manager, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("HostTotalBytes", "t", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("HostFreeBytes", "t", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("TickCount", "t", property_manager, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("ListDomains", SD_BUS_NO_ARGS, SD_BUS_RESULT("a(ossstttttttttuts)", domains),
                                method_list_domains, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetDomainThreshold", SD_BUS_ARGS("t", bytes), SD_BUS_NO_RESULT,
                                method_set_domain_threshold, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetHostThreshold", SD_BUS_ARGS("t", bytes), SD_BUS_NO_RESULT,
                                method_set_host_threshold, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetHostBudget", SD_BUS_ARGS("t", bytes), SD_BUS_NO_RESULT,
                                method_set_host_budget, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetInterval", SD_BUS_ARGS("t", usec), SD_BUS_NO_RESULT, method_set_interval,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Pause", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_pause,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Resume", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_resume,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetDomainLimits",
                                SD_BUS_ARGS("s", domain, "t", min_bytes, "t", max_bytes, "u", weight),
                                SD_BUS_NO_RESULT, method_set_domain_limits, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetDomainExcluded", SD_BUS_ARGS("s", domain, "b", excluded),
                                SD_BUS_NO_RESULT, method_set_domain_excluded, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetDomainLimitsPersistent",
                                SD_BUS_ARGS("s", domain, "t", min_bytes, "t", max_bytes, "u", weight),
                                SD_BUS_NO_RESULT, method_set_domain_limits_persistent,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetDomainExcludedPersistent", SD_BUS_ARGS("s", domain, "b", excluded),
                                SD_BUS_NO_RESULT, method_set_domain_excluded_persistent,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_reload,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS(
                "BalloonChanged",
                SD_BUS_ARGS("o", domain, "s", name, "t", from_bytes, "t", to_bytes, "s", reason), 0),
        SD_BUS_SIGNAL_WITH_ARGS("TickCompleted",
                                SD_BUS_ARGS("t", tick, "t", host_free_bytes, "u", managed, "u", changed), 0),
        SD_BUS_VTABLE_END,
};

/* ---- org.memcoord1.Domain ---- */

static McGuest *guest_of_path(McManager *m, const char *path)
{
        g_autofree char *uuid = NULL;

        if (sd_bus_path_decode(path, MC_DOMAIN_PATH_PREFIX, &uuid) <= 0 || !uuid)
                return NULL;
        return g_hash_table_lookup(m->guests, uuid);
}

static int find_domain(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                       sd_bus_error *error)
{
        McManager *m = userdata;

        if (!guest_of_path(m, path))
                return 0;
        /* The getters look the guest up again by path: they need the manager too. */
        *found = m;
        return 1;
}

static int enumerate_domains(sd_bus *bus, const char *prefix, void *userdata, char ***nodes,
                             sd_bus_error *error)
{
        McManager *m = userdata;
        g_autofree McGuest **list = NULL;
        size_t n;

        list = mc_manager_list_guests(m, &n);
        /* sd-bus frees the array with free(): allocate with malloc. */
        char **paths = calloc(n + 1, sizeof(char *));
        if (!paths)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (sd_bus_path_encode(MC_DOMAIN_PATH_PREFIX, list[i]->uuid, &paths[i]) < 0) {
                        for (size_t j = 0; j < i; j++)
                                free(paths[j]);
                        free(paths);
                        return -ENOMEM;
                }
        *nodes = paths;
        return 0;
}

static int property_domain(sd_bus *bus, const char *path, const char *interface, const char *property,
                           sd_bus_message *reply, void *userdata, sd_bus_error *error)
{
        McManager *m = userdata;
        const McGuest *d = guest_of_path(m, path);

        if (!d)
                return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No guest at %s", path);
        McGuestLimits l = mc_manager_guest_limits(m, d);
        if (g_str_equal(property, "Name"))
                return sd_bus_message_append(reply, "s", d->name);
        if (g_str_equal(property, "UUID"))
                return sd_bus_message_append(reply, "s", d->uuid);
        if (g_str_equal(property, "Status"))
                return sd_bus_message_append(reply, "s", mc_guest_status_to_string(d->status));
        if (g_str_equal(property, "ActualBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(d->actual_kib));
        if (g_str_equal(property, "TargetBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(mc_guest_target_kib(d)));
        if (g_str_equal(property, "UnusedBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(d->unused_kib));
        if (g_str_equal(property, "AvailableBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(d->available_kib));
        if (g_str_equal(property, "UsableBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(d->usable_kib));
        if (g_str_equal(property, "MaxBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(l.cap_kib));
        if (g_str_equal(property, "MinBytes"))
                return sd_bus_message_append(reply, "t", mc_kib_to_bytes(l.floor_kib));
        if (g_str_equal(property, "Weight"))
                return sd_bus_message_append(reply, "u", l.weight);
        if (g_str_equal(property, "Excluded"))
                return sd_bus_message_append(reply, "b", d->excluded);
        if (g_str_equal(property, "StatsAgeUSec"))
                return sd_bus_message_append(reply, "t", d->stats_age_usec);
        return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_PROPERTY, "Unknown property %s", property);
}

static const sd_bus_vtable domain_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", property_domain, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UUID", "s", property_domain, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Status", "s", property_domain, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ActualBytes", "t", property_domain, 0, 0),
        SD_BUS_PROPERTY("TargetBytes", "t", property_domain, 0, 0),
        SD_BUS_PROPERTY("UnusedBytes", "t", property_domain, 0, 0),
        SD_BUS_PROPERTY("AvailableBytes", "t", property_domain, 0, 0),
        SD_BUS_PROPERTY("UsableBytes", "t", property_domain, 0, 0),
        SD_BUS_PROPERTY("MaxBytes", "t", property_domain, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MinBytes", "t", property_domain, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Weight", "u", property_domain, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Excluded", "b", property_domain, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StatsAgeUSec", "t", property_domain, 0, 0),
        SD_BUS_VTABLE_END,
};

/* ---- manager listener: state changes become signals ---- */

static void on_guest_added(void *userdata, McGuest *g)
{
        McBus *b = userdata;
        g_autofree char *path = domain_path(g);

        if (path)
                (void) sd_bus_emit_object_added(b->bus, path);
}

static void on_guest_removed(void *userdata, McGuest *g)
{
        McBus *b = userdata;
        g_autofree char *path = domain_path(g);

        if (path)
                (void) sd_bus_emit_object_removed(b->bus, path);
}

/* The one place where what changed becomes property names. */
static void on_guest_changed(void *userdata, McGuest *g, unsigned changes)
{
        McBus *b = userdata;
        g_autofree char *path = domain_path(g);
        const char *names[8];
        size_t n = 0;

        if (changes & MC_GUEST_CHANGED_NAME)
                names[n++] = "Name";
        if (changes & MC_GUEST_CHANGED_STATUS)
                names[n++] = "Status";
        if (changes & (MC_GUEST_CHANGED_MAX | MC_GUEST_CHANGED_LIMITS))
                names[n++] = "MaxBytes";
        if (changes & MC_GUEST_CHANGED_LIMITS) {
                names[n++] = "MinBytes";
                names[n++] = "Weight";
                names[n++] = "Excluded";
        }
        names[n] = NULL;
        if (path && n > 0)
                (void) sd_bus_emit_properties_changed_strv(b->bus, path, MC_DOMAIN_INTERFACE,
                                                           (char **) names);
}

static void on_balloon_changed(void *userdata, McGuest *g, uint64_t from_kib, uint64_t to_kib,
                               McReason reason)
{
        McBus *b = userdata;
        g_autofree char *path = domain_path(g);

        if (path)
                (void) sd_bus_emit_signal(b->bus, MC_MANAGER_PATH, MC_MANAGER_INTERFACE, "BalloonChanged",
                                          "ostts", path, g->name, mc_kib_to_bytes(from_kib),
                                          mc_kib_to_bytes(to_kib), mc_reason_to_string(reason));
}

static void on_tick_completed(void *userdata, uint64_t tick, uint64_t host_free_kib, unsigned managed,
                              unsigned changed)
{
        McBus *b = userdata;

        (void) sd_bus_emit_signal(b->bus, MC_MANAGER_PATH, MC_MANAGER_INTERFACE, "TickCompleted", "ttuu",
                                  tick, mc_kib_to_bytes(host_free_kib), managed, changed);
}

static const struct {
        McManagerChange change;
        const char *property;
} manager_properties[] = {
        { MC_MANAGER_CHANGED_STATE, "State" },
        { MC_MANAGER_CHANGED_HOST, "HostFreeBytes" },
        { MC_MANAGER_CHANGED_HOST, "HostTotalBytes" },
        { MC_MANAGER_CHANGED_TICK, "TickCount" },
        { MC_MANAGER_CHANGED_INTERVAL, "IntervalUSec" },
        { MC_MANAGER_CHANGED_DOMAIN_THRESHOLD, "DomainThresholdBytes" },
        { MC_MANAGER_CHANGED_HOST_THRESHOLD, "HostThresholdBytes" },
        { MC_MANAGER_CHANGED_HOST_BUDGET, "HostBudgetBytes" },
        { MC_MANAGER_CHANGED_DRY_RUN, "DryRun" },
        { MC_MANAGER_CHANGED_POLICY, "Policy" },
};

static void on_manager_changed(void *userdata, unsigned changes)
{
        McBus *b = userdata;
        const char *names[ELEMENTSOF(manager_properties) + 1];
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(manager_properties); i++)
                if (changes & manager_properties[i].change)
                        names[n++] = manager_properties[i].property;
        names[n] = NULL;
        if (n > 0)
                (void) sd_bus_emit_properties_changed_strv(b->bus, MC_MANAGER_PATH, MC_MANAGER_INTERFACE,
                                                           (char **) names);
}

int mc_bus_new(sd_bus *bus, McManager *m, McBus **ret)
{
        static const McManagerListener listener = {
                .guest_added = on_guest_added,
                .guest_removed = on_guest_removed,
                .guest_changed = on_guest_changed,
                .balloon_changed = on_balloon_changed,
                .tick_completed = on_tick_completed,
                .manager_changed = on_manager_changed,
        };
        McBus *b = g_new0(McBus, 1);
        int r;

        b->bus = sd_bus_ref(bus);
        b->manager = m;

        r = sd_bus_add_object_vtable(bus, &b->slots[0], MC_MANAGER_PATH, MC_MANAGER_INTERFACE,
                                     manager_vtable, m);
        if (r >= 0)
                r = sd_bus_add_fallback_vtable(bus, &b->slots[1], MC_DOMAIN_PATH_PREFIX, MC_DOMAIN_INTERFACE,
                                               domain_vtable, find_domain, m);
        if (r >= 0)
                r = sd_bus_add_node_enumerator(bus, &b->slots[2], MC_DOMAIN_PATH_PREFIX, enumerate_domains,
                                               m);
        if (r >= 0)
                r = sd_bus_add_object_manager(bus, &b->slots[3], MC_MANAGER_PATH);
        if (r >= 0)
                r = sd_bus_error_add_map(mc_bus_error_map);
        if (r < 0) {
                mc_bus_free(b);
                return r;
        }

        r = sd_bus_request_name(bus, MC_BUS_NAME, 0);
        if (r < 0) {
                mc_bus_free(b);
                return r;
        }

        mc_manager_set_listener(m, &listener, b);
        *ret = b;
        return 0;
}

McBus *mc_bus_free(McBus *b)
{
        if (!b)
                return NULL;
        /* Pending checks hold calls that hold the bus, and would run handlers on a freed manager. */
        mc_auth_cancel_all();
        if (b->manager)
                mc_manager_set_listener(b->manager, NULL, NULL);
        for (size_t i = 0; i < ELEMENTSOF(b->slots); i++)
                b->slots[i] = sd_bus_slot_unref(b->slots[i]);
        sd_bus_unref(b->bus);
        g_free(b);
        return NULL;
}
