/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * status and domains: what memcoordd is doing, on this host or on several (-H, more than once).
 * Every host is read at once, each through its own watcher; a host that cannot be read is one
 * line on stderr and the others are shown all the same.
 */

#include <stdio.h>
#include <stdlib.h>

#include "ctl-watch.h"
#include "ctl.h"
#include "memcoord/macro.h"

typedef struct Fleet Fleet;

typedef struct Host {
        Fleet *fleet;
        const char *name; /* as given to -H; NULL for the local bus */
        CtlWatch *watch;
        char *error; /* "Failed to ...: why", or NULL */
        bool done;
} Host;

struct Fleet {
        sd_event *event;
        Host *hosts;
        size_t n;
        size_t pending;
};

static void host_done(Host *h)
{
        if (h->done)
                return;
        h->done = true;
        if (--h->fleet->pending == 0)
                (void) sd_event_exit(h->fleet->event, EXIT_SUCCESS);
}

static void on_ready(CtlWatch *w, void *userdata)
{
        host_done(userdata);
}

static void on_failed(CtlWatch *w, const char *what, const char *reason, void *userdata)
{
        Host *h = userdata;

        if (h->done)
                return;
        h->error = g_strdup_printf("Failed to %s: %s", what, reason);
        host_done(h);
}

static const CtlWatchCallbacks callbacks = {
        .ready = on_ready,
        .failed = on_failed,
};

static void fleet_clear(Fleet *f)
{
        for (size_t i = 0; i < f->n; i++) {
                ctl_watch_free(f->hosts[i].watch);
                g_free(f->hosts[i].error);
        }
        g_free(f->hosts);
        sd_event_unref(f->event);
}

/* Reads every host's state; returns the number of hosts that answered. */
static int fleet_read(Fleet *f)
{
        size_t n = MAX(ctl_args.n_hosts, (size_t) 1);
        int r;

        r = ctl_event_new(&f->event);
        if (r < 0)
                return r;
        f->hosts = g_new0(Host, n);
        f->n = f->pending = n;
        for (size_t i = 0; i < n; i++) {
                f->hosts[i].fleet = f;
                f->hosts[i].name = ctl_args.n_hosts > 0 ? ctl_args.hosts[i] : NULL;
                r = ctl_watch_new(f->event, f->hosts[i].name, 0, &callbacks, &f->hosts[i],
                                  &f->hosts[i].watch);
                if (r < 0) {
                        ctl_log_error("Failed to read memcoordd's state: %s", strerror(-r));
                        return r;
                }
        }
        r = ctl_event_run(f->event);
        if (r < 0)
                return r;
        r = 0;
        for (size_t i = 0; i < n; i++)
                if (!f->hosts[i].error)
                        r++;
        return r;
}

static int print_status_text(const ManagerInfo *m)
{
        char a[MC_SIZE_MAX_STRLEN], b[MC_SIZE_MAX_STRLEN], c[MC_SIZE_MAX_STRLEN];
        char t[CTL_TIME_MAX_STRLEN];

        printf("State:      %s%s\n", m->state, m->dry_run ? " (dry run: decisions are not applied)" : "");
        printf("Policy:     %s\n", m->policy);
        printf("Interval:   %s\n", ctl_format_interval(t, m->interval_usec));
        printf("Thresholds: domain %s, host %s\n", ctl_format_size(a, m->domain_threshold),
               ctl_format_size(b, m->host_threshold));
        printf("Host:       total %s, free %s, budget %s\n", ctl_format_size(a, m->host_total),
               ctl_format_size(b, m->host_free),
               m->host_budget ? ctl_format_size(c, m->host_budget) : "none");
        printf("Libvirt:    %s\n", m->uri ? m->uri : "");
        printf("\n");
        return 0;
}

static void json_add_host(JsonBuilder *b, const Host *h, bool with_manager)
{
        g_autofree const DomainInfo **domains = NULL;
        size_t n = 0;

        json_builder_begin_object(b);
        if (h->error) {
                json_builder_set_member_name(b, "error");
                json_builder_add_string_value(b, h->error);
        } else {
                if (with_manager)
                        ctl_json_add_manager(b, ctl_watch_manager(h->watch));
                domains = ctl_watch_domains(h->watch, &n);
                ctl_json_add_domains(b, domains, n);
        }
        json_builder_end_object(b);
}

static int print_json(const Fleet *f, bool with_manager, bool fleet)
{
        g_autoptr(JsonBuilder) b = json_builder_new();

        if (!fleet)
                json_add_host(b, &f->hosts[0], with_manager);
        else {
                json_builder_begin_object(b);
                for (size_t i = 0; i < f->n; i++) {
                        json_builder_set_member_name(b, f->hosts[i].name);
                        json_add_host(b, &f->hosts[i], with_manager);
                }
                json_builder_end_object(b);
        }
        return ctl_print_json(b, ctl_args.json == JSON_PRETTY);
}

static int print_text(const Fleet *f, bool with_manager, bool fleet)
{
        g_autoptr(GArray) rows = g_array_new(FALSE, FALSE, sizeof(CtlRow));
        g_autoptr(GPtrArray) names = g_ptr_array_new();
        g_autoptr(GPtrArray) managers = g_ptr_array_new();
        g_autoptr(GPtrArray) lists = g_ptr_array_new_with_free_func(g_free);
        int r;

        for (size_t i = 0; i < f->n; i++) {
                const Host *h = &f->hosts[i];
                const DomainInfo **domains;
                size_t n;

                if (h->error)
                        continue;
                g_ptr_array_add(names, (gpointer) h->name);
                g_ptr_array_add(managers, (gpointer) ctl_watch_manager(h->watch));
                domains = ctl_watch_domains(h->watch, &n);
                g_ptr_array_add(lists, domains);
                for (size_t j = 0; j < n; j++) {
                        CtlRow row = { .host = fleet ? h->name : NULL, .domain = domains[j] };

                        g_array_append_val(rows, row);
                }
        }
        if (with_manager) {
                if (fleet)
                        r = ctl_print_hosts_table((const char *const *) names->pdata,
                                                  (const ManagerInfo *const *) managers->pdata, names->len);
                else
                        r = print_status_text(managers->pdata[0]);
                if (r < 0)
                        return r;
                if (fleet)
                        putchar('\n');
        }
        return ctl_print_domains_table((const CtlRow *) (void *) rows->data, rows->len);
}

/*
 * status and domains: the same snapshot, with or without the daemon's settings. With several
 * hosts, a HOST column and JSON keyed by host; the exit status is a failure only when no host
 * answered, since the point of a fleet view is to show what can be seen.
 */
static int show(bool with_manager)
{
        __attribute__((cleanup(fleet_clear))) Fleet f = {};
        bool fleet = ctl_args.n_hosts > 1;
        int r;

        r = fleet_read(&f);
        if (r < 0)
                return r;
        for (size_t i = 0; i < f.n; i++)
                if (f.hosts[i].error) {
                        if (fleet)
                                ctl_log_error("%s: %s", f.hosts[i].name, f.hosts[i].error);
                        else
                                ctl_log_error("%s", f.hosts[i].error);
                }
        if (r == 0)
                return -EIO;
        if (ctl_args.json != JSON_OFF)
                return print_json(&f, with_manager, fleet);
        return print_text(&f, with_manager, fleet);
}

int verb_status(int argc, char **argv)
{
        return show(true);
}

int verb_domains(int argc, char **argv)
{
        return show(false);
}
