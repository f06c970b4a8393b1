/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* status and domains: what memcoordd is doing, read in two calls (GetAll and ListDomains). */

#include <stdio.h>
#include <stdlib.h>

#include "ctl.h"
#include "memcoord/macro.h"

typedef struct Snapshot {
        ManagerInfo manager;
        DomainInfo *domains;
        size_t n_domains;
} Snapshot;

static void snapshot_clear(Snapshot *s)
{
        manager_info_clear(&s->manager);
        domain_info_free_array(s->domains, s->n_domains);
        *s = (Snapshot){};
}

static int fetch(sd_bus *bus, bool with_manager, Snapshot *s)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        if (with_manager) {
                r = ctl_get_manager(bus, &s->manager, &error);
                if (r < 0)
                        goto fail;
        }
        r = ctl_list_domains(bus, &s->domains, &s->n_domains, &error);
        if (r < 0)
                goto fail;
        return 0;
fail : {
        g_autofree char *reason = ctl_error_reason(&error, r, NULL);

        ctl_log_error("Failed to read memcoordd's state: %s", reason);
        sd_bus_error_free(&error);
        return r;
}
}

static int print_status_text(const Snapshot *s)
{
        const ManagerInfo *m = &s->manager;
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
        printf("Libvirt:    %s\n", m->uri);
        printf("\n");
        return ctl_print_domains_table(s->domains, s->n_domains);
}

static int print_json(const Snapshot *s, bool with_manager)
{
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        if (with_manager)
                ctl_json_add_manager(b, &s->manager);
        ctl_json_add_domains(b, s->domains, s->n_domains);
        json_builder_end_object(b);
        return ctl_print_json(b, ctl_args.json == JSON_PRETTY);
}

/* status and domains: the same snapshot, with or without the daemon's settings. */
static int show(bool with_manager)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        __attribute__((cleanup(snapshot_clear))) Snapshot s = {};
        int r;

        r = ctl_connect(&bus);
        if (r < 0)
                return r;
        r = fetch(bus, with_manager, &s);
        if (r < 0)
                return r;
        if (ctl_args.json != JSON_OFF)
                return print_json(&s, with_manager);
        return with_manager ? print_status_text(&s) : ctl_print_domains_table(s.domains, s.n_domains);
}

int verb_status(int argc, char **argv)
{
        return show(true);
}

int verb_domains(int argc, char **argv)
{
        return show(false);
}
