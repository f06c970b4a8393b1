/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * monitor: one line per event, as it happens, until SIGINT or SIGTERM. Events: ticks,
 * balloon changes, settings and guest properties that really changed (memcoordd announces some
 * properties every tick; the watcher reports only new values), guests appearing and going, and
 * memcoordd itself stopping and starting.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl-watch.h"
#include "ctl.h"
#include "memcoord/escape.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

typedef struct Monitor {
        sd_event *event;
        bool json;
        bool started; /* the first state was read */
} Monitor;

static void print_line(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void print_line(const char *fmt, ...)
{
        uint64_t now = ctl_now_realtime();
        time_t sec = (time_t) (now / MC_USEC_PER_SEC);
        struct tm tm;
        char stamp[16] = "";
        va_list ap;

        if (localtime_r(&sec, &tm))
                strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        va_start(ap, fmt);
        g_autofree char *text = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        /* Lines hold guest names: escaped, a name cannot forge or hide a line. */
        g_autofree char *escaped = mc_escape(text);
        printf("%s.%03u %s\n", stamp, (unsigned) (now % MC_USEC_PER_SEC / 1000), escaped);
        /* Readers are often pipes: every line goes out at once. */
        fflush(stdout);
}

/* Starts a JSON event object; finish it with json_event_end(). */
static JsonBuilder *json_event_begin(const char *event)
{
        JsonBuilder *b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "time_usec");
        json_builder_add_int_value(b, (gint64) ctl_now_realtime());
        json_builder_set_member_name(b, "event");
        json_builder_add_string_value(b, event);
        return b;
}

static void json_event_end(JsonBuilder *b)
{
        json_builder_end_object(b);
        (void) ctl_print_json(b, false);
        g_object_unref(b);
}

static void json_add_string(JsonBuilder *b, const char *name, const char *value)
{
        json_builder_set_member_name(b, name);
        if (value)
                json_builder_add_string_value(b, value);
        else
                json_builder_add_null_value(b);
}

/* One JSON event of members given as (name, 's', const char *) or (name, 'u', uint64_t), up to a
 * NULL name. */
static void json_event(const char *event, ...)
{
        JsonBuilder *b = json_event_begin(event);
        const char *name;
        va_list ap;

        va_start(ap, event);
        while ((name = va_arg(ap, const char *))) {
                if (va_arg(ap, int) == 's')
                        json_add_string(b, name, va_arg(ap, const char *));
                else {
                        uint64_t v = va_arg(ap, uint64_t);

                        json_builder_set_member_name(b, name);
                        json_builder_add_int_value(b, (gint64) MIN(v, (uint64_t) G_MAXINT64));
                }
        }
        va_end(ap);
        json_event_end(b);
}

static void on_ready(CtlWatch *w, void *userdata)
{
        Monitor *mon = userdata;

        mon->started = true;
}

static void on_failed(CtlWatch *w, const char *what, const char *reason, void *userdata)
{
        Monitor *mon = userdata;

        /* After a restart the first changes are printed against what was known before. */
        if (mon->started)
                return;
        ctl_log_error("Failed to %s: %s", what, reason);
        (void) sd_event_exit(mon->event, EXIT_FAILURE);
}

static void on_property(CtlWatch *w, const DomainInfo *d, const CtlField *f, void *userdata)
{
        Monitor *mon = userdata;
        const void *record = d ? (const void *) d : (const void *) ctl_watch_manager(w);

        if (mon->json) {
                JsonBuilder *b = json_event_begin("property");

                json_add_string(b, "object", d ? d->object : MC_MANAGER_PATH);
                json_add_string(b, "name", d ? d->name : NULL);
                json_add_string(b, "property", f->property);
                json_builder_set_member_name(b, "value");
                ctl_field_json_value(b, f, record);
                json_event_end(b);
        } else {
                char buf[CTL_FIELD_MAX_STRLEN];
                const char *value = ctl_field_text(f, record, buf, ctl_now_realtime());

                if (d)
                        print_line("%s: %s: %s", d->name, f->property, value);
                else
                        print_line("%s: %s", f->property, value);
        }
}

static void on_domain_added(CtlWatch *w, const DomainInfo *d, void *userdata)
{
        Monitor *mon = userdata;

        if (mon->json)
                json_event("domain-added", "object", 's', d->object, "name", 's', d->name, "status", 's',
                           d->status, NULL);
        else
                print_line("%s: appeared (%s)", d->name, d->status ? d->status : "unknown");
}

static void on_domain_removed(CtlWatch *w, const DomainInfo *d, void *userdata)
{
        Monitor *mon = userdata;

        if (mon->json)
                json_event("domain-removed", "object", 's', d->object, "name", 's', d->name, NULL);
        else
                print_line("%s: gone", d->name);
}

static void on_tick(CtlWatch *w, const CtlTick *t, void *userdata)
{
        Monitor *mon = userdata;
        char buf[MC_SIZE_MAX_STRLEN];

        if (mon->json)
                json_event("tick", "tick", 'u', t->tick, "host_free_bytes", 'u', t->host_free, "managed",
                           'u', (uint64_t) t->managed, "changed", 'u', (uint64_t) t->changed, NULL);
        else
                print_line("tick %" PRIu64 ": host free %s, %" PRIu32 " managed, %" PRIu32 " changed",
                           t->tick, ctl_format_size(buf, t->host_free), t->managed, t->changed);
}

static void on_balloon(CtlWatch *w, const CtlBalloon *x, void *userdata)
{
        Monitor *mon = userdata;
        char a[MC_SIZE_MAX_STRLEN], b[MC_SIZE_MAX_STRLEN], delta[MC_SIZE_MAX_STRLEN];

        if (mon->json)
                json_event("balloon", "object", 's', x->object, "name", 's', x->name, "from_bytes", 'u',
                           x->from, "to_bytes", 'u', x->to, "reason", 's', x->reason, NULL);
        else
                /* The change itself: two rounded sizes can read the same. */
                print_line("%s: balloon %s -> %s (%c%s, %s)", x->name, ctl_format_size(a, x->from),
                           ctl_format_size(b, x->to), x->to >= x->from ? '+' : '-',
                           ctl_format_size(delta, x->to >= x->from ? x->to - x->from : x->from - x->to),
                           x->reason);
}

static void on_daemon(Monitor *mon, const char *event, const char *line)
{
        if (mon->json)
                json_event(event, NULL);
        else
                print_line("%s", line);
}

static void on_daemon_stopped(CtlWatch *w, void *userdata)
{
        on_daemon(userdata, "daemon-stopped", "memcoordd stopped");
}

static void on_daemon_started(CtlWatch *w, void *userdata)
{
        on_daemon(userdata, "daemon-started", "memcoordd started");
}

static void on_disconnected(CtlWatch *w, const char *reason, void *userdata)
{
        Monitor *mon = userdata;

        ctl_log_error("%s", reason);
        (void) sd_event_exit(mon->event, EXIT_FAILURE);
}

static const CtlWatchCallbacks callbacks = {
        .ready = on_ready,
        .failed = on_failed,
        .daemon_stopped = on_daemon_stopped,
        .daemon_started = on_daemon_started,
        .domain_added = on_domain_added,
        .domain_removed = on_domain_removed,
        .property_changed = on_property,
        .tick = on_tick,
        .balloon = on_balloon,
        .disconnected = on_disconnected,
};

int verb_monitor(int argc, char **argv)
{
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        g_autoptr(CtlWatch) w = NULL;
        Monitor mon = { .json = ctl_args.json != JSON_OFF };
        int r;

        r = ctl_event_new(&event);
        if (r < 0)
                return r;
        mon.event = event;
        r = ctl_watch_new(event, ctl_args.n_hosts > 0 ? ctl_args.hosts[0] : NULL, CTL_WATCH_FOLLOW,
                          &callbacks, &mon, &w);
        if (r < 0) {
                ctl_log_error("Failed to watch memcoordd: %s", strerror(-r));
                return r;
        }
        return ctl_event_run(event);
}
