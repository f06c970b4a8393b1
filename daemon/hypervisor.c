/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* What both hypervisor implementations share: dispatch, the reconnect backoff, the deferred
 * connection notice, the error message and the call counters. */

#include "hypervisor.h"

#include <errno.h>
#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

#define BACKOFF_MIN_USEC UINT64_C(1000000)
#define BACKOFF_MAX_USEC UINT64_C(30000000)

void mc_reading_clear(McReading *r)
{
        if (!r)
                return;
        g_free(r->name);
        *r = (McReading){};
}

void mc_readings_free(McReading *r, size_t n)
{
        for (size_t i = 0; r && i < n; i++)
                g_free(r[i].name);
        g_free(r);
}

int mc_hypervisor_new(sd_event *e, const char *uri, const McHypervisorCallbacks *cb, void *userdata,
                      McHypervisor **ret)
{
        McHypervisor *h = g_new0(McHypervisor, 1);
        int r;

        h->ops = g_str_has_prefix(uri, "sim:") ? &mc_hypervisor_sim_ops : &mc_hypervisor_libvirt_ops;
        h->event = sd_event_ref(e);
        h->uri = g_strdup(uri);
        if (cb)
                h->cb = *cb;
        h->userdata = userdata;
        h->speed = 1.0;
        h->backoff_usec = BACKOFF_MIN_USEC;
        r = h->ops->init(h);
        if (r < 0) {
                /* The message outlives h for the caller's error line. */
                mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "%s", h->error);
                mc_hypervisor_free(h);
                return r;
        }
        *ret = h;
        return 0;
}

McHypervisor *mc_hypervisor_free(McHypervisor *h)
{
        if (!h)
                return NULL;
        h->reconnect_source = sd_event_source_disable_unref(h->reconnect_source);
        h->notify_source = sd_event_source_disable_unref(h->notify_source);
        if (h->impl) {
                h->ops->disconnect(h);
                h->ops->free(h);
        }
        sd_event_unref(h->event);
        g_free(h->uri);
        g_free(h);
        return NULL;
}

int mc_hypervisor_fail(McHypervisor *h, int r, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(h->error, sizeof(h->error), fmt, ap);
        va_end(ap);
        return r;
}

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        McHypervisor *h = userdata;

        if (mc_hypervisor_connect(h) < 0)
                mc_log_idf(LOG_DEBUG, MC_MESSAGE_CONNECT_FAILED,
                           (MC_LOG_STR("MEMCOORD_URI", h->uri), MC_LOG_STR("MEMCOORD_ERROR", h->error)),
                           "%s; retrying", h->error);
        else
                mc_log_idf(LOG_INFO, MC_MESSAGE_CONNECTED, (MC_LOG_STR("MEMCOORD_URI", h->uri)),
                           "Connected to %s", h->uri);
        return 0;
}

static void schedule_reconnect(McHypervisor *h)
{
        uint64_t now;

        (void) sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        h->reconnect_source = sd_event_source_disable_unref(h->reconnect_source);
        if (sd_event_add_time(h->event, &h->reconnect_source, CLOCK_MONOTONIC, now + h->backoff_usec, 0,
                              on_reconnect_timer, h) < 0)
                mc_log_id(LOG_ERR, MC_MESSAGE_INTERNAL_ERROR, "Failed to arm the reconnect timer");
        h->backoff_usec = MIN(h->backoff_usec * 2, BACKOFF_MAX_USEC);
}

/* Tells the manager what the connection is now, once, outside any call of ours. */
static int on_notify(sd_event_source *s, void *userdata)
{
        McHypervisor *h = userdata;

        h->notify_pending = false;
        if (h->connected == h->notified_connected)
                return 0;
        h->notified_connected = h->connected;
        if (h->cb.connection_changed)
                h->cb.connection_changed(h->userdata, h->connected);
        return 0;
}

static void schedule_notify(McHypervisor *h)
{
        if (h->notify_pending)
                return;
        if (!h->notify_source) {
                if (sd_event_add_defer(h->event, &h->notify_source, on_notify, h) < 0) {
                        mc_log_id(LOG_ERR, MC_MESSAGE_INTERNAL_ERROR,
                                  "Failed to queue the connection notice");
                        return;
                }
        }
        if (sd_event_source_set_enabled(h->notify_source, SD_EVENT_ONESHOT) >= 0)
                h->notify_pending = true;
}

void mc_hypervisor_connected(McHypervisor *h)
{
        h->connected = true;
        h->backoff_usec = BACKOFF_MIN_USEC;
        h->reconnect_source = sd_event_source_disable_unref(h->reconnect_source);
        schedule_notify(h);
}

void mc_hypervisor_lost(McHypervisor *h)
{
        if (!h->connected)
                return;
        h->connected = false;
        mc_log_idf(LOG_WARNING, MC_MESSAGE_CONNECTION_LOST, (MC_LOG_STR("MEMCOORD_URI", h->uri)),
                   "Lost the connection to %s; reconnecting", h->uri);
        schedule_notify(h);
        schedule_reconnect(h);
}

void mc_hypervisor_domain_event(McHypervisor *h, const char *uuid, const char *name, McDomainEvent event)
{
        if (h->cb.domain_event)
                h->cb.domain_event(h->userdata, uuid, name, event);
}

int mc_hypervisor_connect(McHypervisor *h)
{
        int r;

        h->ops->disconnect(h);
        h->connected = false;
        r = h->ops->connect(h);
        if (r < 0) {
                schedule_reconnect(h);
                return r;
        }
        mc_hypervisor_connected(h);
        return 0;
}

bool mc_hypervisor_is_connected(const McHypervisor *h)
{
        return h->connected;
}

const char *mc_hypervisor_uri(const McHypervisor *h)
{
        return h->uri;
}

const char *mc_hypervisor_kind(const McHypervisor *h)
{
        return h->ops->name;
}

bool mc_hypervisor_stamps_synthetic(const McHypervisor *h)
{
        return h->synthetic_stamps;
}

double mc_hypervisor_speed(const McHypervisor *h)
{
        return h->speed;
}

uint64_t mc_hypervisor_now(McHypervisor *h, clockid_t clock)
{
        struct timespec ts;

        if (h->ops->now)
                return h->ops->now(h, clock);
        (void) clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * UINT64_C(1000000) + (uint64_t) ts.tv_nsec / 1000;
}

const char *mc_hypervisor_error(const McHypervisor *h)
{
        return h->error;
}

const McCallCounters *mc_hypervisor_calls(const McHypervisor *h)
{
        return &h->calls;
}

void mc_hypervisor_reset_calls(McHypervisor *h)
{
        h->calls = (McCallCounters){};
}

int mc_hypervisor_collect(McHypervisor *h, unsigned stats_period_sec, McReading **ret, size_t *ret_n)
{
        *ret = NULL;
        *ret_n = 0;
        if (!h->connected)
                return mc_hypervisor_fail(h, -ENOTCONN, "Not connected to %s", h->uri);
        return h->ops->collect(h, stats_period_sec, ret, ret_n);
}

int mc_hypervisor_host_memory(McHypervisor *h, McHostMemory *ret)
{
        *ret = (McHostMemory){};
        if (!h->connected)
                return mc_hypervisor_fail(h, -ENOTCONN, "Not connected to %s", h->uri);
        return h->ops->host_memory(h, ret);
}

int mc_hypervisor_set_target(McHypervisor *h, const char *uuid, uint64_t kib)
{
        if (!h->connected)
                return mc_hypervisor_fail(h, -ENOTCONN, "Not connected to %s", h->uri);
        return h->ops->set_target(h, uuid, kib);
}

int mc_hypervisor_set_meta(McHypervisor *h, const char *uuid, const McGuestMeta *meta)
{
        if (!h->ops->set_meta)
                return mc_hypervisor_fail(h, -EOPNOTSUPP, "%s cannot store settings in a guest's definition",
                                          h->ops->name);
        if (!h->connected)
                return mc_hypervisor_fail(h, -ENOTCONN, "Not connected to %s", h->uri);
        return h->ops->set_meta(h, uuid, meta);
}
