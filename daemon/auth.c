/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "auth.h"

#include <errno.h>
#include <glib.h>
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

/* polkit's CheckAuthorization flag: the caller is ready to wait for an authentication agent. */
#define POLKIT_CHECK_ALLOW_USER_INTERACTION 1u

/* One call waiting for polkit's answer. */
typedef struct AuthQuery {
        sd_bus_message *request; /* the caller's call, kept until it is answered */
        sd_bus_slot *slot;       /* our CheckAuthorization call */
        McAuthContinuation cont;
        void *userdata;
        bool interactive;
        uid_t uid;
        int64_t started_usec;
} AuthQuery;

static GQueue pending = G_QUEUE_INIT;

static void query_free(AuthQuery *q)
{
        if (!q)
                return;
        g_queue_remove(&pending, q);
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        g_free(q);
}

static int deny(sd_bus_error *error, const char *member, const char *why)
{
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "%s needs root or the polkit action %s%s%s%s", member,
                                 MC_POLKIT_ACTION_MANAGE, why ? " (" : "", why ? why : "", why ? ")" : "");
}

static int on_polkit_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error)
{
        AuthQuery *q = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *member = sd_bus_message_get_member(q->request);
        double waited = (double) (g_get_monotonic_time() - q->started_usec) / 1e6;
        int authorized = 0, challenge = 0, r;

        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);

                if (sd_bus_error_has_names(e, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT)) {
                        mc_log_idf(
                                LOG_WARNING, MC_MESSAGE_POLKIT_TIMEOUT,
                                (MC_LOG_STR("MEMCOORD_METHOD", member), MC_LOG_U64("MEMCOORD_UID", q->uid)),
                                "polkit did not answer within %.1f s: %s from uid %u denied", waited, member,
                                (unsigned) q->uid);
                        r = deny(&error, member, "polkit did not answer in time");
                } else {
                        /* polkit not running is the usual case here: ServiceUnknown. */
                        mc_log_idf(
                                LOG_DEBUG, MC_MESSAGE_POLKIT_FAILED,
                                (MC_LOG_STR("MEMCOORD_METHOD", member), MC_LOG_U64("MEMCOORD_UID", q->uid)),
                                "polkit check for %s from uid %u failed: %s", member, (unsigned) q->uid,
                                e && e->message ? e->message : "unknown error");
                        r = deny(&error, member, "polkit is not available");
                }
        } else {
                r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (r >= 0)
                        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                if (r < 0) {
                        mc_log_idf(
                                LOG_WARNING, MC_MESSAGE_POLKIT_FAILED,
                                (MC_LOG_STR("MEMCOORD_METHOD", member), MC_LOG_U64("MEMCOORD_UID", q->uid)),
                                "polkit's answer for %s could not be read: %s", member, strerror(-r));
                        r = deny(&error, member, "polkit's answer could not be read");
                } else if (authorized) {
                        mc_log_idf(
                                LOG_DEBUG, MC_MESSAGE_AUTH_ALLOWED,
                                (MC_LOG_STR("MEMCOORD_METHOD", member), MC_LOG_U64("MEMCOORD_UID", q->uid)),
                                "polkit allows %s from uid %u (%.3f s)", member, (unsigned) q->uid, waited);
                        r = q->cont(q->request, q->userdata, &error);
                } else {
                        mc_log_idf(
                                LOG_DEBUG, MC_MESSAGE_AUTH_DENIED,
                                (MC_LOG_STR("MEMCOORD_METHOD", member), MC_LOG_U64("MEMCOORD_UID", q->uid)),
                                "polkit denies %s from uid %u%s", member, (unsigned) q->uid,
                                challenge ? " unless authenticated" : "");
                        r = deny(&error, member,
                                 challenge && !q->interactive
                                         ? "authentication is required: allow interactive authorization"
                                         : NULL);
                }
        }
        if (r < 0 || sd_bus_error_is_set(&error))
                (void) sd_bus_reply_method_errno(q->request, r, &error);
        query_free(q);
        return 0;
}

static int ask_polkit(sd_bus_message *m, uid_t uid, McAuthContinuation cont, void *userdata,
                      sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        sd_bus *bus = sd_bus_message_get_bus(m);
        const char *sender = sd_bus_message_get_sender(m);
        const char *member = sd_bus_message_get_member(m);
        bool interactive = sd_bus_message_get_allow_interactive_authorization(m) > 0;
        AuthQuery *q;
        int r;

        if (!sender)
                return deny(error, member, "the caller has no bus name");
        if (pending.length >= MC_AUTH_MAX_PENDING) {
                mc_log_idf(LOG_WARNING, MC_MESSAGE_AUTH_OVERLOAD,
                           (MC_LOG_STR("MEMCOORD_METHOD", member), MC_LOG_U64("MEMCOORD_UID", uid)),
                           "%u authorization checks pending: %s from uid %u denied", pending.length, member,
                           (unsigned) uid);
                return deny(error, member, "too many authorization checks pending");
        }

        r = sd_bus_message_new_method_call(bus, &call, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(call, "(sa{sv})sa{ss}us", "system-bus-name", 1, "name", "s",
                                          sender, MC_POLKIT_ACTION_MANAGE, 0,
                                          interactive ? POLKIT_CHECK_ALLOW_USER_INTERACTION : 0u, "");
        if (r < 0)
                return r;

        q = g_new0(AuthQuery, 1);
        q->request = sd_bus_message_ref(m);
        q->cont = cont;
        q->userdata = userdata;
        q->interactive = interactive;
        q->uid = uid;
        q->started_usec = g_get_monotonic_time();
        r = sd_bus_call_async(bus, &q->slot, call, on_polkit_reply, q,
                              interactive ? MC_AUTH_POLKIT_INTERACTIVE_TIMEOUT_USEC
                                          : MC_AUTH_POLKIT_TIMEOUT_USEC);
        if (r < 0) {
                query_free(q);
                mc_log_id(LOG_DEBUG, MC_MESSAGE_POLKIT_FAILED, "Cannot ask polkit about %s: %s", member,
                          strerror(-r));
                return deny(error, member, "polkit could not be asked");
        }
        g_queue_push_tail(&pending, q);
        return 1;
}

int mc_auth_gate(sd_bus_message *m, McAuthContinuation cont, void *userdata, sd_bus_error *error)
{
        const char *interface = sd_bus_message_get_interface(m);
        const char *member = sd_bus_message_get_member(m);
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid = (uid_t) -1;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(rules); i++) {
                if (!interface || !member || strcmp(rules[i].interface, interface) != 0 ||
                    strcmp(rules[i].member, member) != 0)
                        continue;
                if (rules[i].access == ACCESS_READ)
                        return cont(m, userdata, error);

                r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID, &creds);
                if (r >= 0)
                        r = sd_bus_creds_get_euid(creds, &uid);
                if (r < 0)
                        return deny(error, member, "the caller's identity is unknown");
                if (uid == 0)
                        return cont(m, userdata, error);
                return ask_polkit(m, uid, cont, userdata, error);
        }
        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "%s.%s is not allowed",
                                 interface ? interface : "?", member ? member : "?");
}

void mc_auth_cancel_all(void)
{
        AuthQuery *q;

        while ((q = g_queue_peek_head(&pending)))
                query_free(q);
}
