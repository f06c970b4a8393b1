/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The fields of the manager and of a guest, each once: the D-Bus property it comes from, its
 * JSON key, its column heading and how it reads. The watcher parses properties with these
 * tables, status, domains and top draw their columns from them, and every JSON object is
 * built from them.
 */

#include <assert.h>
#include <errno.h>
#include <libsmartcols.h>
#include <stdio.h>
#include <string.h>

#include "ctl.h"
#include "memcoord/macro.h"

static const char *last_change_text(const CtlField *f, const void *record,
                                    char buf[static CTL_FIELD_MAX_STRLEN], uint64_t now)
{
        const DomainInfo *d = record;
        char ago[CTL_TIME_MAX_STRLEN];

        if (d->last_change_usec == 0)
                return "-";
        snprintf(buf, CTL_FIELD_MAX_STRLEN, "%s %s",
                 d->last_reason && d->last_reason[0] ? d->last_reason : "change",
                 ctl_format_ago(ago, d->last_change_usec, now));
        return buf;
}

static void last_reason_json(JsonBuilder *b, const CtlField *f, const void *record)
{
        const DomainInfo *d = record;

        if (d->last_change_usec == 0)
                json_builder_add_null_value(b);
        else
                json_builder_add_string_value(b, d->last_reason ? d->last_reason : "");
}

static const char *budget_text(const CtlField *f, const void *record, char buf[static CTL_FIELD_MAX_STRLEN],
                               uint64_t now)
{
        const ManagerInfo *m = record;

        return m->host_budget ? ctl_format_size(buf, m->host_budget) : "none";
}

#define M(field) offsetof(ManagerInfo, field)
#define D(field) offsetof(DomainInfo, field)

/* In the order of the JSON object. */
const CtlField ctl_manager_fields[] = {
        { "Version", "version", "VERSION", CTL_FIELD_STRING, M(version), CTL_COL_STATUS, 0.1 },
        { "State", "state", "STATE", CTL_FIELD_STRING, M(state), CTL_COL_STATUS, 0.1 },
        { "Policy", "policy", "POLICY", CTL_FIELD_STRING, M(policy), CTL_COL_STATUS, 0.1 },
        { "IntervalUSec", "interval_usec", "INTERVAL", CTL_FIELD_USEC, M(interval_usec),
          CTL_COL_STATUS | CTL_COL_RIGHT, 5 },
        { "DomainThresholdBytes", "domain_threshold_bytes", "DOMAIN-T", CTL_FIELD_BYTES, M(domain_threshold),
          CTL_COL_STATUS | CTL_COL_RIGHT, 5 },
        { "HostThresholdBytes", "host_threshold_bytes", "HOST-T", CTL_FIELD_BYTES, M(host_threshold),
          CTL_COL_STATUS | CTL_COL_RIGHT, 5 },
        { "HostBudgetBytes", "host_budget_bytes", "BUDGET", CTL_FIELD_BYTES, M(host_budget),
          CTL_COL_STATUS | CTL_COL_RIGHT, 5, 0, budget_text },
        { "DryRun", "dry_run", NULL, CTL_FIELD_BOOL, M(dry_run) },
        { "LibvirtURI", "libvirt_uri", NULL, CTL_FIELD_STRING, M(uri) },
        { "HostTotalBytes", "host_total_bytes", "TOTAL", CTL_FIELD_BYTES, M(host_total),
          CTL_COL_STATUS | CTL_COL_RIGHT, 6 },
        /* These two change every tick; TickCompleted carries them. */
        { "HostFreeBytes", "host_free_bytes", "FREE", CTL_FIELD_BYTES, M(host_free),
          CTL_FIELD_FIGURE | CTL_COL_STATUS | CTL_COL_RIGHT, 6 },
        { "TickCount", "tick_count", NULL, CTL_FIELD_COUNT, M(tick_count), CTL_FIELD_FIGURE },
};
const size_t ctl_n_manager_fields = ELEMENTSOF(ctl_manager_fields);

/* In the order of the JSON object; the columns of status and top are in this order too. */
const CtlField ctl_domain_fields[] = {
        { "Name", "name", "NAME", CTL_FIELD_STRING, D(name), CTL_COL_STATUS | CTL_COL_TOP, 0.2 },
        { "UUID", "uuid", NULL, CTL_FIELD_STRING, D(uuid) },
        { NULL, "object", NULL, CTL_FIELD_STRING, D(object) },
        { "Status", "status", "STATUS", CTL_FIELD_STRING, D(status), CTL_COL_STATUS | CTL_COL_TOP, 0.1, 10 },
        { "ActualBytes", "actual_bytes", "ACTUAL", CTL_FIELD_GUEST_BYTES, D(actual),
          CTL_FIELD_FIGURE | CTL_COL_STATUS | CTL_COL_TOP | CTL_COL_RIGHT, 6, 7 },
        { "TargetBytes", "target_bytes", "TARGET", CTL_FIELD_GUEST_BYTES, D(target),
          CTL_FIELD_FIGURE | CTL_COL_STATUS | CTL_COL_TOP | CTL_COL_RIGHT, 6, 7 },
        { "UnusedBytes", "unused_bytes", "UNUSED", CTL_FIELD_GUEST_STAT, D(unused),
          CTL_FIELD_FIGURE | CTL_COL_STATUS | CTL_COL_TOP | CTL_COL_RIGHT, 6, 7 },
        { "AvailableBytes", "available_bytes", NULL, CTL_FIELD_GUEST_STAT, D(available), CTL_FIELD_FIGURE },
        { "UsableBytes", "usable_bytes", "USABLE", CTL_FIELD_GUEST_STAT, D(usable),
          CTL_FIELD_FIGURE | CTL_COL_STATUS | CTL_COL_RIGHT, 6 },
        { NULL, "maximum_bytes", NULL, CTL_FIELD_BYTES, D(maximum), CTL_FIELD_FIGURE },
        { "MinBytes", "min_bytes", "MIN", CTL_FIELD_BYTES, D(min), CTL_COL_STATUS | CTL_COL_RIGHT, 5 },
        { "MaxBytes", "max_bytes", "MAX", CTL_FIELD_GUEST_BYTES, D(max),
          CTL_COL_STATUS | CTL_COL_TOP | CTL_COL_RIGHT, 5, 7 },
        { "Weight", "weight", NULL, CTL_FIELD_U32, D(weight) },
        { "Excluded", NULL, NULL, CTL_FIELD_BOOL, D(excluded) },
        { "StatsAgeUSec", "stats_age_usec", NULL, CTL_FIELD_USEC, D(stats_age_usec), CTL_FIELD_FIGURE },
        { NULL, "last_change_usec", "LAST CHANGE", CTL_FIELD_REALTIME, D(last_change_usec),
          CTL_FIELD_FIGURE | CTL_COL_STATUS | CTL_COL_TRUNC, 0.2, 0, last_change_text },
        { NULL, "last_change_reason", NULL, CTL_FIELD_STRING, D(last_reason), CTL_FIELD_FIGURE, 0, 0, NULL,
          last_reason_json },
};
const size_t ctl_n_domain_fields = ELEMENTSOF(ctl_domain_fields);

const CtlField *ctl_field_by_property(const CtlField *fields, size_t n, const char *property)
{
        for (size_t i = 0; i < n; i++)
                if (fields[i].property && strcmp(fields[i].property, property) == 0)
                        return &fields[i];
        return NULL;
}

const char *ctl_field_string(const CtlField *f, const void *record)
{
        const char *s = *(char *const *) (const void *) ((const char *) record + f->offset);

        assert(f->type == CTL_FIELD_STRING);
        return s ? s : "";
}

uint64_t ctl_field_number(const CtlField *f, const void *record)
{
        const char *p = (const char *) record + f->offset;

        switch (f->type) {
        case CTL_FIELD_BOOL:
                return *(const bool *) (const void *) p;
        case CTL_FIELD_U32:
                return *(const uint32_t *) (const void *) p;
        case CTL_FIELD_STRING:
                assert(false);
                return 0;
        default:
                return *(const uint64_t *) (const void *) p;
        }
}

const char *ctl_field_text(const CtlField *f, const void *record, char buf[static CTL_FIELD_MAX_STRLEN],
                           uint64_t now)
{
        uint64_t v;

        if (f->text)
                return f->text(f, record, buf, now);
        if (f->type == CTL_FIELD_STRING)
                return ctl_field_string(f, record);
        v = ctl_field_number(f, record);
        switch (f->type) {
        case CTL_FIELD_BOOL:
                return v ? "yes" : "no";
        case CTL_FIELD_BYTES:
                return ctl_format_size(buf, v);
        case CTL_FIELD_GUEST_BYTES:
        case CTL_FIELD_GUEST_STAT:
                return ctl_domain_size(buf, record, v, f->type == CTL_FIELD_GUEST_STAT);
        case CTL_FIELD_USEC:
                return v == UINT64_MAX ? "none" : ctl_format_interval(buf, v);
        case CTL_FIELD_REALTIME:
                return ctl_format_ago(buf, v, now);
        default:
                snprintf(buf, CTL_FIELD_MAX_STRLEN, "%" G_GUINT64_FORMAT, v);
                return buf;
        }
}

void ctl_field_json_value(JsonBuilder *b, const CtlField *f, const void *record)
{
        uint64_t v;

        if (f->json_value) {
                f->json_value(b, f, record);
                return;
        }
        if (f->type == CTL_FIELD_STRING) {
                json_builder_add_string_value(b, ctl_field_string(f, record));
                return;
        }
        v = ctl_field_number(f, record);
        if (f->type == CTL_FIELD_BOOL)
                json_builder_add_boolean_value(b, v != 0);
        else if ((f->type == CTL_FIELD_USEC && v == UINT64_MAX) || (f->type == CTL_FIELD_REALTIME && v == 0))
                json_builder_add_null_value(b);
        else
                json_builder_add_int_value(b, (gint64) MIN(v, (uint64_t) G_MAXINT64));
}

static void json_add_fields(JsonBuilder *b, const CtlField *fields, size_t n, const void *record)
{
        for (size_t i = 0; i < n; i++)
                if (fields[i].json) {
                        json_builder_set_member_name(b, fields[i].json);
                        ctl_field_json_value(b, &fields[i], record);
                }
}

void ctl_json_add_domain(JsonBuilder *b, const DomainInfo *d)
{
        json_builder_begin_object(b);
        json_add_fields(b, ctl_domain_fields, ctl_n_domain_fields, d);
        json_builder_end_object(b);
}

void ctl_json_add_domains(JsonBuilder *b, const DomainInfo *const *d, size_t n)
{
        json_builder_set_member_name(b, "domains");
        json_builder_begin_array(b);
        for (size_t i = 0; i < n; i++)
                ctl_json_add_domain(b, d[i]);
        json_builder_end_array(b);
}

void ctl_json_add_manager(JsonBuilder *b, const ManagerInfo *m)
{
        json_add_fields(b, ctl_manager_fields, ctl_n_manager_fields, m);
}

int ctl_print_json(JsonBuilder *b, bool pretty)
{
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autofree char *text = NULL;

        json_generator_set_pretty(gen, pretty);
        json_generator_set_root(gen, root);
        text = json_generator_to_data(gen, NULL);
        if (fputs(text, stdout) == EOF || fputc('\n', stdout) == EOF) {
                int r = errno > 0 ? -errno : -EIO;

                ctl_log_error("Failed to write the output: %s", strerror(-r));
                return r;
        }
        return ctl_flush_stdout();
}

/* One table through libsmartcols: a HOST column first when hosts is not NULL, then the fields
 * marked for status. */
static int print_table(const CtlField *fields, size_t n_fields, const char *const *hosts,
                       const void *const *records, size_t n)
{
        struct libscols_table *tb = scols_new_table();
        uint64_t now = ctl_now_realtime();
        size_t c0 = hosts ? 1 : 0;
        int r = 0;

        if (!tb) {
                ctl_log_error("Failed to create a table: %s", strerror(ENOMEM));
                return -ENOMEM;
        }
        scols_table_enable_noheadings(tb, !ctl_args.legend);
        if (hosts && !scols_table_new_column(tb, "HOST", 0.1, 0))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < n_fields; i++)
                if ((fields[i].flags & CTL_COL_STATUS) &&
                    !scols_table_new_column(tb, fields[i].header, fields[i].whint,
                                            (fields[i].flags & CTL_COL_RIGHT ? SCOLS_FL_RIGHT : 0) |
                                                    (fields[i].flags & CTL_COL_TRUNC ? SCOLS_FL_TRUNC : 0)))
                        r = -ENOMEM;

        for (size_t row = 0; r >= 0 && row < n; row++) {
                struct libscols_line *ln = scols_table_new_line(tb, NULL);
                size_t c = c0;

                if (!ln || (hosts && scols_line_set_data(ln, 0, hosts[row]) < 0)) {
                        r = -ENOMEM;
                        break;
                }
                for (size_t i = 0; i < n_fields; i++) {
                        char buf[CTL_FIELD_MAX_STRLEN];

                        if (!(fields[i].flags & CTL_COL_STATUS))
                                continue;
                        if (scols_line_set_data(ln, c++,
                                                ctl_field_text(&fields[i], records[row], buf, now)) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                }
        }
        if (r >= 0)
                r = scols_print_table(tb);
        if (r >= 0)
                r = fflush(stdout) != 0 ? -errno : 0;
        if (r < 0)
                ctl_log_error("Failed to print the table: %s", strerror(-r));
        scols_unref_table(tb);
        return r;
}

int ctl_print_domains_table(const CtlRow *rows, size_t n)
{
        g_autofree const char **hosts = g_new0(const char *, n + 1);
        g_autofree const void **records = g_new0(const void *, n + 1);
        bool with_host = false;

        for (size_t i = 0; i < n; i++) {
                hosts[i] = rows[i].host;
                records[i] = rows[i].domain;
                with_host = with_host || rows[i].host;
        }
        return print_table(ctl_domain_fields, ctl_n_domain_fields, with_host ? hosts : NULL, records, n);
}

int ctl_print_hosts_table(const char *const *hosts, const ManagerInfo *const *managers, size_t n)
{
        return print_table(ctl_manager_fields, ctl_n_manager_fields, hosts, (const void *const *) managers,
                           n);
}
