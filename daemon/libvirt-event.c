/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "libvirt-event.h"

#include <errno.h>
#include <glib.h>
#include <libvirt/libvirt.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/*
 * libvirt identifies handles and timeouts by int ids; we keep one Watch per id. Frees are
 * deferred: libvirt allows removing a watch from inside its own callback and expects the
 * free callback to run later, never inside the remove call.
 */

typedef struct Watch {
        int id;
        bool is_timeout;
        int fd;
        int frequency_ms; /* timeouts: -1 off, 0 every iteration, >0 period */
        sd_event_source *source;
        virEventHandleCallback handle_cb;
        virEventTimeoutCallback timeout_cb;
        void *opaque;
        virFreeCallback ff;
} Watch;

static sd_event *loop;
static GHashTable *watches;     /* id -> Watch* */
static GPtrArray *pending_free; /* Watch* removed, ff not called yet */
static sd_event_source *free_source;
static int next_id = 1;

static uint32_t to_epoll(int events)
{
        uint32_t r = 0;

        if (events & VIR_EVENT_HANDLE_READABLE)
                r |= EPOLLIN;
        if (events & VIR_EVENT_HANDLE_WRITABLE)
                r |= EPOLLOUT;
        return r;
}

static int from_epoll(uint32_t revents)
{
        int r = 0;

        if (revents & EPOLLIN)
                r |= VIR_EVENT_HANDLE_READABLE;
        if (revents & EPOLLOUT)
                r |= VIR_EVENT_HANDLE_WRITABLE;
        if (revents & EPOLLERR)
                r |= VIR_EVENT_HANDLE_ERROR;
        if (revents & EPOLLHUP)
                r |= VIR_EVENT_HANDLE_HANGUP;
        return r;
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Watch *w = userdata;

        w->handle_cb(w->id, fd, from_epoll(revents), w->opaque);
        return 0;
}

static uint64_t now_usec(void)
{
        uint64_t t;

        (void) sd_event_now(loop, CLOCK_MONOTONIC, &t);
        return t;
}

static int arm_timeout(Watch *w);

static int on_time(sd_event_source *s, uint64_t usec, void *userdata)
{
        Watch *w = userdata;
        int id = w->id;

        /* Re-arm first: the callback may update or remove this very timeout. */
        (void) arm_timeout(w);
        w->timeout_cb(id, w->opaque);
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata)
{
        Watch *w = userdata;

        w->timeout_cb(w->id, w->opaque);
        return 0;
}

static int arm_timeout(Watch *w)
{
        int r;

        w->source = sd_event_source_disable_unref(w->source);
        if (w->frequency_ms < 0)
                return 0;
        if (w->frequency_ms == 0)
                r = sd_event_add_defer(loop, &w->source, on_defer, w);
        else
                r = sd_event_add_time(loop, &w->source, CLOCK_MONOTONIC,
                                      now_usec() + (uint64_t) w->frequency_ms * 1000, 0, on_time, w);
        if (r < 0)
                return r;
        if (w->frequency_ms == 0)
                r = sd_event_source_set_enabled(w->source, SD_EVENT_ON);
        else
                r = sd_event_source_set_enabled(w->source, SD_EVENT_ONESHOT);
        return r;
}

static int on_free(sd_event_source *s, void *userdata)
{
        /* Take the list first: a free callback may remove more watches. */
        g_autoptr(GPtrArray) list = g_steal_pointer(&pending_free);

        pending_free = g_ptr_array_new();
        for (guint i = 0; i < list->len; i++) {
                Watch *w = list->pdata[i];
                if (w->ff)
                        w->ff(w->opaque);
                g_free(w);
        }
        if (pending_free->len == 0)
                (void) sd_event_source_set_enabled(free_source, SD_EVENT_OFF);
        return 0;
}

static Watch *watch_new(bool is_timeout, void *opaque, virFreeCallback ff)
{
        Watch *w = g_new0(Watch, 1);

        w->id = next_id++;
        w->is_timeout = is_timeout;
        w->fd = -1;
        w->opaque = opaque;
        w->ff = ff;
        g_hash_table_insert(watches, GINT_TO_POINTER(w->id), w);
        return w;
}

static int watch_remove(int id, bool is_timeout)
{
        Watch *w = g_hash_table_lookup(watches, GINT_TO_POINTER(id));

        if (!w || w->is_timeout != is_timeout)
                return -1;
        g_hash_table_steal(watches, GINT_TO_POINTER(id));
        w->source = sd_event_source_disable_unref(w->source);
        g_ptr_array_add(pending_free, w);
        (void) sd_event_source_set_enabled(free_source, SD_EVENT_ON);
        return 0;
}

static int add_handle(int fd, int events, virEventHandleCallback cb, void *opaque, virFreeCallback ff)
{
        Watch *w = watch_new(false, opaque, ff);

        w->fd = fd;
        w->handle_cb = cb;
        if (sd_event_add_io(loop, &w->source, fd, to_epoll(events), on_io, w) < 0) {
                g_hash_table_remove(watches, GINT_TO_POINTER(w->id));
                g_free(w);
                return -1;
        }
        if (events == 0)
                (void) sd_event_source_set_enabled(w->source, SD_EVENT_OFF);
        return w->id;
}

static void update_handle(int id, int events)
{
        Watch *w = g_hash_table_lookup(watches, GINT_TO_POINTER(id));

        if (!w || w->is_timeout)
                return;
        if (events == 0) {
                (void) sd_event_source_set_enabled(w->source, SD_EVENT_OFF);
                return;
        }
        (void) sd_event_source_set_io_events(w->source, to_epoll(events));
        (void) sd_event_source_set_enabled(w->source, SD_EVENT_ON);
}

static int remove_handle(int id)
{
        return watch_remove(id, false);
}

static int add_timeout(int frequency_ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff)
{
        Watch *w = watch_new(true, opaque, ff);

        w->timeout_cb = cb;
        w->frequency_ms = frequency_ms;
        if (arm_timeout(w) < 0) {
                g_hash_table_remove(watches, GINT_TO_POINTER(w->id));
                g_free(w);
                return -1;
        }
        return w->id;
}

static void update_timeout(int id, int frequency_ms)
{
        Watch *w = g_hash_table_lookup(watches, GINT_TO_POINTER(id));

        if (!w || !w->is_timeout)
                return;
        w->frequency_ms = frequency_ms;
        (void) arm_timeout(w);
}

static int remove_timeout(int id)
{
        return watch_remove(id, true);
}

int mc_libvirt_event_register(sd_event *e)
{
        int r;

        if (loop)
                return -EALREADY;
        loop = sd_event_ref(e);
        watches = g_hash_table_new(g_direct_hash, g_direct_equal);
        pending_free = g_ptr_array_new();
        r = sd_event_add_defer(loop, &free_source, on_free, NULL);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(free_source, SD_EVENT_OFF);
        virEventRegisterImpl(add_handle, update_handle, remove_handle, add_timeout, update_timeout,
                             remove_timeout);
        return 0;
}

void mc_libvirt_event_unregister(void)
{
        GHashTableIter it;
        gpointer v;

        if (!loop)
                return;
        /* libvirt has no "unregister"; drop what is left so sanitizers see no leak. */
        g_hash_table_iter_init(&it, watches);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                Watch *w = v;
                sd_event_source_disable_unref(w->source);
                g_ptr_array_add(pending_free, w);
        }
        g_hash_table_remove_all(watches);
        for (guint i = 0; i < pending_free->len; i++) {
                Watch *w = pending_free->pdata[i];
                if (w->ff)
                        w->ff(w->opaque);
                g_free(w);
        }
        g_ptr_array_unref(pending_free);
        pending_free = NULL;
        g_hash_table_unref(watches);
        watches = NULL;
        free_source = sd_event_source_disable_unref(free_source);
        loop = sd_event_unref(loop);
}
