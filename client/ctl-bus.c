/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The bus side of memcoordctl: connecting, calling, reading the daemon's state, and saying in
 * plain words why a call failed. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "memcoord/errors.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

int ctl_connect(sd_bus **ret)
{
        sd_bus *bus = NULL;
        int r;

        /* org.memcoord.Error.* come back as errno values too. */
        (void) sd_bus_error_add_map(mc_bus_error_map);

        if (ctl_args.host)
                r = sd_bus_open_system_remote(&bus, ctl_args.host);
        else if (ctl_args.user)
                r = sd_bus_open_user(&bus);
        else
                r = sd_bus_open_system(&bus);
        if (r < 0) {
                if (ctl_args.host)
                        ctl_log_error("Failed to connect to the system bus on %s: %s", ctl_args.host,
                                      strerror(-r));
                else
                        ctl_log_error("Failed to connect to the %s bus: %s",
                                      ctl_args.user ? "session" : "system", strerror(-r));
                return r;
        }
        /* Changing a setting may need an admin's password: let polkit's agent ask for it. */
        (void) sd_bus_set_allow_interactive_authorization(bus, true);
        *ret = bus;
        return 0;
}

static bool error_is_read_only_call(const char *member)
{
        return !member || strcmp(member, "ListDomains") == 0 || strcmp(member, "GetAll") == 0 ||
               strcmp(member, "Get") == 0;
}

static char *error_reason_for(const sd_bus_error *error, int r, const char *domain, const char *member)
{
        if (sd_bus_error_is_set(error)) {
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                           SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                        return g_strdup("memcoordd is not running");
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_ACCESS_DENIED,
                                           SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                           SD_BUS_ERROR_AUTH_FAILED))
                        return g_strdup(error_is_read_only_call(member)
                                                ? "Access denied"
                                                : "Access denied (this needs root, or the polkit "
                                                  "action " MC_POLKIT_ACTION_MANAGE ")");
                if (sd_bus_error_has_name(error, MC_ERROR_NO_SUCH_DOMAIN))
                        return domain ? g_strdup_printf("No such guest: '%s' is not running", domain)
                                      : g_strdup("No such guest");
                if (sd_bus_error_has_name(error, MC_ERROR_NOT_CONNECTED))
                        return g_strdup("memcoordd is not connected to libvirt (it keeps retrying)");
                if (sd_bus_error_has_name(error, MC_ERROR_INVALID_ARGUMENT))
                        return g_strdup(error->message ? error->message : "Invalid argument");
                if (sd_bus_error_has_name(error, MC_ERROR_BAD_CONFIG))
                        return g_strdup_printf(
                                "The configuration is not valid, the old settings are kept: %s",
                                error->message ? error->message : "unknown error");
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT))
                        return g_strdup("memcoordd did not answer in time");
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_UNKNOWN_METHOD, SD_BUS_ERROR_UNKNOWN_OBJECT,
                                           SD_BUS_ERROR_UNKNOWN_INTERFACE, SD_BUS_ERROR_UNKNOWN_PROPERTY))
                        return g_strdup("memcoordd does not know this request (is it an older version?)");
                if (error->name && g_str_has_prefix(error->name, "org.freedesktop.DBus.Error.Spawn."))
                        return g_strdup_printf("memcoordd is not running and could not be started: %s",
                                               error->message ? error->message : error->name);
                if (sd_bus_error_has_name(error, SD_BUS_ERROR_DISCONNECTED))
                        return g_strdup("Lost the connection to the bus");
                if (error->message && error->message[0])
                        return g_strdup(error->message);
                if (error->name)
                        return g_strdup(error->name);
        }
        switch (-r) {
        case ETIMEDOUT:
                return g_strdup("memcoordd did not answer in time");
        case ECONNRESET:
        case ENOTCONN:
        case EPIPE:
                return g_strdup("Lost the connection to the bus");
        case EACCES:
        case EPERM:
                return g_strdup("Access denied");
        default:
                return g_strdup(strerror(r < 0 ? -r : EIO));
        }
}

char *ctl_error_reason(const sd_bus_error *error, int r, const char *domain)
{
        return error_reason_for(error, r, domain, NULL);
}

int ctl_call(sd_bus *bus, const char *what, const char *domain, const char *member,
             sd_bus_message **ret_reply, const char *types, ...)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &call, MC_BUS_NAME, MC_MANAGER_PATH, MC_MANAGER_INTERFACE,
                                           member);
        if (r >= 0 && types) {
                va_list ap;

                va_start(ap, types);
                r = sd_bus_message_appendv(call, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0) {
                g_autofree char *reason = error_reason_for(&error, r, domain, member);

                ctl_log_error("Failed to %s: %s", what, reason);
                sd_bus_error_free(&error);
                return r;
        }
        if (ret_reply)
                *ret_reply = sd_bus_message_ref(reply);
        return 0;
}

void manager_info_clear(ManagerInfo *m)
{
        if (!m)
                return;
        g_free(m->version);
        g_free(m->state);
        g_free(m->policy);
        g_free(m->uri);
        *m = (ManagerInfo){};
}

void domain_info_free_array(DomainInfo *d, size_t n)
{
        if (!d)
                return;
        for (size_t i = 0; i < n; i++) {
                g_free(d[i].object);
                g_free(d[i].name);
                g_free(d[i].uuid);
                g_free(d[i].status);
                g_free(d[i].last_reason);
        }
        g_free(d);
}

/* Reads one property value of the type the field expects; anything else is skipped, so a newer
 * daemon with more properties does not confuse an older client. */
static int read_property(sd_bus_message *m, const char *name, ManagerInfo *info)
{
        static const struct {
                const char *name;
                size_t offset;
        } strings[] =
                {
                        {"Version", offsetof(ManagerInfo, version)},
                        {"State", offsetof(ManagerInfo, state)},
                        {"Policy", offsetof(ManagerInfo, policy)},
                        {"LibvirtURI", offsetof(ManagerInfo, uri)},
                },
          numbers[] = {
                  {"IntervalUSec", offsetof(ManagerInfo, interval_usec)},
                  {"DomainThresholdBytes", offsetof(ManagerInfo, domain_threshold)},
                  {"HostThresholdBytes", offsetof(ManagerInfo, host_threshold)},
                  {"HostBudgetBytes", offsetof(ManagerInfo, host_budget)},
                  {"HostTotalBytes", offsetof(ManagerInfo, host_total)},
                  {"HostFreeBytes", offsetof(ManagerInfo, host_free)},
                  {"TickCount", offsetof(ManagerInfo, tick_count)},
          };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++)
                if (strcmp(name, strings[i].name) == 0) {
                        char **field = (char **) ((char *) info + strings[i].offset);
                        const char *s;
                        int r = sd_bus_message_read(m, "v", "s", &s);

                        if (r < 0)
                                return r;
                        g_free(*field);
                        *field = g_strdup(s);
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(numbers); i++)
                if (strcmp(name, numbers[i].name) == 0)
                        return sd_bus_message_read(m, "v", "t",
                                                   (uint64_t *) ((char *) info + numbers[i].offset));
        if (strcmp(name, "DryRun") == 0) {
                int b = 0, r = sd_bus_message_read(m, "v", "b", &b);

                info->dry_run = b;
                return r;
        }
        return sd_bus_message_skip(m, "v");
}

int ctl_get_manager(sd_bus *bus, ManagerInfo *ret, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        ManagerInfo info = {};
        int r;

        r = sd_bus_call_method(bus, MC_BUS_NAME, MC_MANAGER_PATH, "org.freedesktop.DBus.Properties",
                               "GetAll", error, &reply, "s", MC_MANAGER_INTERFACE);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0) {
                const char *name;

                r = sd_bus_message_enter_container(reply, 'e', "sv");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(reply, "s", &name);
                if (r >= 0)
                        r = read_property(reply, name, &info);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                manager_info_clear(&info);
                return sd_bus_error_set_errnof(error, r, "Unexpected reply from memcoordd: %s",
                                               strerror(-r));
        }
        /* A property a different daemon version lacks still reads as text. */
        if (!info.state)
                info.state = g_strdup("unknown");
        if (!info.policy)
                info.policy = g_strdup("unknown");
        if (!info.version)
                info.version = g_strdup("unknown");
        if (!info.uri)
                info.uri = g_strdup("");
        *ret = info;
        return 0;
}

int ctl_list_domains(sd_bus *bus, DomainInfo **ret, size_t *ret_n, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(GArray) list = g_array_new(FALSE, TRUE, sizeof(DomainInfo));
        int r;

        r = sd_bus_call_method(bus, MC_BUS_NAME, MC_MANAGER_PATH, MC_MANAGER_INTERFACE, "ListDomains", error,
                               &reply, NULL);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(ossstttttttttuts)");
        while (r >= 0) {
                const char *object, *name, *uuid, *status, *reason;
                DomainInfo d = {};

                r = sd_bus_message_read(reply, "(ossstttttttttuts)", &object, &name, &uuid, &status,
                                        &d.actual, &d.target, &d.unused, &d.available, &d.usable, &d.maximum,
                                        &d.min, &d.max, &d.stats_age_usec, &d.weight, &d.last_change_usec,
                                        &reason);
                if (r <= 0)
                        break;
                d.object = g_strdup(object);
                d.name = g_strdup(name);
                d.uuid = g_strdup(uuid);
                d.status = g_strdup(status);
                d.last_reason = g_strdup(reason);
                g_array_append_val(list, d);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(reply);
        if (r < 0) {
                size_t n = list->len;

                domain_info_free_array((DomainInfo *) (void *) g_array_free(g_steal_pointer(&list), FALSE),
                                       n);
                return sd_bus_error_set_errnof(error, r, "Unexpected reply from memcoordd: %s",
                                               strerror(-r));
        }
        *ret_n = list->len;
        *ret = (DomainInfo *) (void *) g_array_free(g_steal_pointer(&list), FALSE);
        return 0;
}
