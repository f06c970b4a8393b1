/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* What memcoordctl prints and what it accepts: sizes, intervals, ages, the guest table and the
 * JSON objects. */

#include <errno.h>
#include <libsmartcols.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ctl.h"
#include "memcoord/memcoord.h"

uint64_t ctl_now_realtime(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * MC_USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

__attribute__((noinline)) const char *ctl_format_size(char buf[static MC_SIZE_MAX_STRLEN], uint64_t bytes)
{
        return mc_format_size(buf, bytes);
}

const char *ctl_format_interval(char buf[static CTL_TIME_MAX_STRLEN], uint64_t usec)
{
        snprintf(buf, CTL_TIME_MAX_STRLEN, "%gs", (double) usec / 1e6);
        return buf;
}

const char *ctl_format_ago(char buf[static CTL_TIME_MAX_STRLEN], uint64_t realtime_usec, uint64_t now_usec)
{
        uint64_t sec;

        if (realtime_usec == 0) {
                snprintf(buf, CTL_TIME_MAX_STRLEN, "-");
                return buf;
        }
        sec = now_usec > realtime_usec ? (now_usec - realtime_usec) / MC_USEC_PER_SEC : 0;
        if (sec < 60)
                snprintf(buf, CTL_TIME_MAX_STRLEN, "%llus ago", (unsigned long long) sec);
        else if (sec < 3600)
                snprintf(buf, CTL_TIME_MAX_STRLEN, "%llumin ago", (unsigned long long) sec / 60);
        else if (sec < 86400)
                snprintf(buf, CTL_TIME_MAX_STRLEN, "%lluh ago", (unsigned long long) sec / 3600);
        else
                snprintf(buf, CTL_TIME_MAX_STRLEN, "%llud ago", (unsigned long long) sec / 86400);
        return buf;
}

int ctl_parse_size_arg(const char *what, const char *s, uint64_t *ret)
{
        int r = mc_parse_size(s, ret);

        if (r == -ERANGE)
                ctl_log_error("Invalid %s '%s': too large", what, s);
        else if (r < 0)
                ctl_log_error("Invalid %s '%s': not a size (examples: 100M, 1.5G, 157286400)", what, s);
        return r;
}

int ctl_parse_interval_arg(const char *what, const char *s, uint64_t *ret_usec)
{
        static const struct {
                const char *unit;
                double usec;
        } units[] = {
                {"", 1e6},   {"s", 1e6},    {"sec", 1e6}, {"ms", 1e3},   {"msec", 1e3},
                {"us", 1.0}, {"usec", 1.0}, {"m", 60e6},  {"min", 60e6}, {"h", 3600e6},
        };
        const char *p = s;
        char *end = NULL;
        double v;

        /* Digits first: strtod alone would take "inf", "nan", "0x10" and "-1". */
        if (!(g_ascii_isdigit(*p) || (*p == '.' && g_ascii_isdigit(p[1]))))
                goto invalid;
        errno = 0;
        v = g_ascii_strtod(p, &end);
        if (errno != 0 || end == p || !isfinite(v) || strpbrk(s, "xXeEpP"))
                goto invalid;
        for (size_t i = 0; i < G_N_ELEMENTS(units); i++)
                if (strcmp(end, units[i].unit) == 0) {
                        double usec = v * units[i].usec;

                        if (usec >= 1.8e19) {
                                ctl_log_error("Invalid %s '%s': too large", what, s);
                                return -ERANGE;
                        }
                        *ret_usec = (uint64_t) llround(usec);
                        return 0;
                }
invalid:
        ctl_log_error("Invalid %s '%s': not a number of seconds (examples: 1, 0.5, 250ms)", what, s);
        return -EINVAL;
}

const char *ctl_domain_size(char buf[static MC_SIZE_MAX_STRLEN], const DomainInfo *d, uint64_t bytes,
                            bool is_stat)
{
        /* Without a balloon there are no statistics: 0 would be a lie. */
        if ((is_stat && strcmp(d->status, "no-balloon") == 0) ||
            (bytes == 0 && strcmp(d->status, "managed") != 0)) {
                snprintf(buf, MC_SIZE_MAX_STRLEN, "-");
                return buf;
        }
        return ctl_format_size(buf, bytes);
}

enum {
        COL_NAME,
        COL_STATUS,
        COL_ACTUAL,
        COL_TARGET,
        COL_UNUSED,
        COL_USABLE,
        COL_MIN,
        COL_MAX,
        COL_LAST_CHANGE,
        _COL_MAX,
};

int ctl_print_domains_table(const DomainInfo *d, size_t n)
{
        static const struct {
                const char *name;
                double whint;
                int flags;
        } columns[_COL_MAX] = {
                [COL_NAME] = {"NAME", 0.2, 0},
                [COL_STATUS] = {"STATUS", 0.1, 0},
                [COL_ACTUAL] = {"ACTUAL", 6, SCOLS_FL_RIGHT},
                [COL_TARGET] = {"TARGET", 6, SCOLS_FL_RIGHT},
                [COL_UNUSED] = {"UNUSED", 6, SCOLS_FL_RIGHT},
                [COL_USABLE] = {"USABLE", 6, SCOLS_FL_RIGHT},
                [COL_MIN] = {"MIN", 5, SCOLS_FL_RIGHT},
                [COL_MAX] = {"MAX", 5, SCOLS_FL_RIGHT},
                [COL_LAST_CHANGE] = {"LAST CHANGE", 0.2, SCOLS_FL_TRUNC},
        };
        struct libscols_table *tb = scols_new_table();
        uint64_t now = ctl_now_realtime();
        int r = 0;

        if (!tb) {
                ctl_log_error("Failed to create a table: %s", strerror(ENOMEM));
                return -ENOMEM;
        }
        scols_table_enable_noheadings(tb, !ctl_args.legend);
        for (size_t c = 0; c < _COL_MAX; c++)
                if (!scols_table_new_column(tb, columns[c].name, columns[c].whint, columns[c].flags)) {
                        r = -ENOMEM;
                        goto finish;
                }

        for (size_t i = 0; i < n; i++) {
                struct libscols_line *ln = scols_table_new_line(tb, NULL);
                char buf[_COL_MAX][MC_SIZE_MAX_STRLEN];
                char ago[CTL_TIME_MAX_STRLEN];
                g_autofree char *change = NULL;

                if (!ln) {
                        r = -ENOMEM;
                        goto finish;
                }
                if (d[i].last_change_usec > 0)
                        change = g_strdup_printf("%s %s", d[i].last_reason[0] ? d[i].last_reason : "change",
                                                 ctl_format_ago(ago, d[i].last_change_usec, now));
                const char *cells[_COL_MAX] = {
                        [COL_NAME] = d[i].name,
                        [COL_STATUS] = d[i].status,
                        [COL_ACTUAL] = ctl_domain_size(buf[COL_ACTUAL], &d[i], d[i].actual, false),
                        [COL_TARGET] = ctl_domain_size(buf[COL_TARGET], &d[i], d[i].target, false),
                        [COL_UNUSED] = ctl_domain_size(buf[COL_UNUSED], &d[i], d[i].unused, true),
                        [COL_USABLE] = ctl_domain_size(buf[COL_USABLE], &d[i], d[i].usable, true),
                        [COL_MIN] = ctl_format_size(buf[COL_MIN], d[i].min),
                        [COL_MAX] = ctl_domain_size(buf[COL_MAX], &d[i], d[i].max, false),
                        [COL_LAST_CHANGE] = change ? change : "-",
                };
                for (size_t c = 0; c < _COL_MAX; c++)
                        if (scols_line_set_data(ln, c, cells[c]) < 0) {
                                r = -ENOMEM;
                                goto finish;
                        }
        }
        r = scols_print_table(tb);
        if (r >= 0 && fflush(stdout) != 0)
                r = -errno;
finish:
        if (r < 0)
                ctl_log_error("Failed to print the table: %s", strerror(-r));
        scols_unref_table(tb);
        return r;
}

static void add_uint(JsonBuilder *b, const char *name, uint64_t v)
{
        json_builder_set_member_name(b, name);
        json_builder_add_int_value(b, (gint64) MIN(v, (uint64_t) G_MAXINT64));
}

static void add_string(JsonBuilder *b, const char *name, const char *v)
{
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, v);
}

static void add_null(JsonBuilder *b, const char *name)
{
        json_builder_set_member_name(b, name);
        json_builder_add_null_value(b);
}

void ctl_json_add_domain(JsonBuilder *b, const DomainInfo *d)
{
        json_builder_begin_object(b);
        add_string(b, "name", d->name);
        add_string(b, "uuid", d->uuid);
        add_string(b, "object", d->object);
        add_string(b, "status", d->status);
        add_uint(b, "actual_bytes", d->actual);
        add_uint(b, "target_bytes", d->target);
        add_uint(b, "unused_bytes", d->unused);
        add_uint(b, "available_bytes", d->available);
        add_uint(b, "usable_bytes", d->usable);
        add_uint(b, "maximum_bytes", d->maximum);
        add_uint(b, "min_bytes", d->min);
        add_uint(b, "max_bytes", d->max);
        add_uint(b, "weight", d->weight);
        if (d->stats_age_usec == UINT64_MAX)
                add_null(b, "stats_age_usec");
        else
                add_uint(b, "stats_age_usec", d->stats_age_usec);
        if (d->last_change_usec == 0) {
                add_null(b, "last_change_usec");
                add_null(b, "last_change_reason");
        } else {
                add_uint(b, "last_change_usec", d->last_change_usec);
                add_string(b, "last_change_reason", d->last_reason);
        }
        json_builder_end_object(b);
}

void ctl_json_add_domains(JsonBuilder *b, const DomainInfo *d, size_t n)
{
        json_builder_set_member_name(b, "domains");
        json_builder_begin_array(b);
        for (size_t i = 0; i < n; i++)
                ctl_json_add_domain(b, &d[i]);
        json_builder_end_array(b);
}

void ctl_json_add_manager(JsonBuilder *b, const ManagerInfo *m)
{
        add_string(b, "version", m->version);
        add_string(b, "state", m->state);
        add_string(b, "policy", m->policy);
        add_uint(b, "interval_usec", m->interval_usec);
        add_uint(b, "domain_threshold_bytes", m->domain_threshold);
        add_uint(b, "host_threshold_bytes", m->host_threshold);
        add_uint(b, "host_budget_bytes", m->host_budget);
        json_builder_set_member_name(b, "dry_run");
        json_builder_add_boolean_value(b, m->dry_run);
        add_string(b, "libvirt_uri", m->uri);
        add_uint(b, "host_total_bytes", m->host_total);
        add_uint(b, "host_free_bytes", m->host_free);
        add_uint(b, "tick_count", m->tick_count);
}

int ctl_print_json(JsonBuilder *b, bool pretty)
{
        g_autoptr(JsonGenerator) gen = json_generator_new();
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autofree char *text = NULL;

        json_generator_set_pretty(gen, pretty);
        json_generator_set_root(gen, root);
        text = json_generator_to_data(gen, NULL);
        if (fputs(text, stdout) == EOF || fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
                int r = errno > 0 ? -errno : -EIO;

                ctl_log_error("Failed to write the output: %s", strerror(-r));
                return r;
        }
        return 0;
}
