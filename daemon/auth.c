/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "auth.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "log.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

typedef enum Access {
        ACCESS_READ,
        ACCESS_MANAGE,
} Access;

static const struct {
        const char *interface;
        const char *member;
        Access access;
} rules[] = {
        { MC_MANAGER_INTERFACE, "ListDomains", ACCESS_READ },
        { MC_MANAGER_INTERFACE, "SetDomainThreshold", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "SetHostThreshold", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "SetHostBudget", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "SetInterval", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "Pause", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "Resume", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "SetDomainLimits", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "SetDomainExcluded", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "SetDomainLimitsPersistent", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "SetDomainExcludedPersistent", ACCESS_MANAGE },
        { MC_MANAGER_INTERFACE, "Reload", ACCESS_MANAGE },
};

/* Asks polkit, without interaction. polkit not running means no. */
static bool polkit_allows(sd_bus_message *m)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus *bus = sd_bus_message_get_bus(m);
        const char *sender = sd_bus_message_get_sender(m);
        int authorized = 0, challenge = 0, r;

        if (!sender)
                return false;
        r = sd_bus_message_new_method_call(bus, &call, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(call, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s",
                                          sender, MC_POLKIT_ACTION_MANAGE, 0, 0, "");
        if (r >= 0)
                r = sd_bus_call(bus, call, 5 * 1000000ULL, &error, &reply);
        if (r >= 0)
                r = sd_bus_message_read(reply, "(bba{ss})", &authorized, &challenge, NULL);
        if (r < 0) {
                mc_log_debug("polkit check for %s failed: %s", sender,
                             error.message ? error.message : strerror(-r));
                sd_bus_error_free(&error);
                return false;
        }
        return authorized;
}

int mc_auth_check(sd_bus_message *m, sd_bus_error *error)
{
        const char *interface = sd_bus_message_get_interface(m);
        const char *member = sd_bus_message_get_member(m);
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
                if (!interface || !member || strcmp(rules[i].interface, interface) != 0 ||
                    strcmp(rules[i].member, member) != 0)
                        continue;
                if (rules[i].access == ACCESS_READ)
                        return 1;

                r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
                if (r >= 0)
                        r = sd_bus_creds_get_euid(creds, &uid);
                if (r >= 0 && uid == 0)
                        return 1;
                if (polkit_allows(m))
                        return 1;
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "%s needs root or the polkit action %s", member,
                                         MC_POLKIT_ACTION_MANAGE);
        }
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "%s.%s is not allowed",
                                 interface ? interface : "?", member ? member : "?");
}
