/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * memcoordctl: the pieces the verbs share. The command line lives in memcoordctl.c, the bus
 * (connection, calls, error wording, reading the daemon's state) in ctl-bus.c, formatting and
 * parsing of sizes, times, tables and JSON in ctl-format.c; the verbs in ctl-show.c (status,
 * domains), ctl-set.c (everything that changes a setting), ctl-monitor.c and ctl-top.c.
 */

#include <json-glib/json-glib.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "memcoord/units.h"

typedef enum JsonMode {
        JSON_OFF,
        JSON_PRETTY,
        JSON_SHORT,
} JsonMode;

/* The command line, filled in by memcoordctl.c and read by the verbs. */
typedef struct CtlArgs {
        JsonMode json;
        bool legend;
        const char *host; /* -H: [user@]host, or NULL for the local bus */
        bool user;        /* --user: the session bus instead of the system bus */
        const char *min;  /* set-limits --min, as given */
        const char *max;
        const char *weight;
        uint64_t iterations; /* top -n; 0 = until quit */
        bool persistent;     /* set-limits, exclude, include: store in the guest's domain XML */
} CtlArgs;

extern CtlArgs ctl_args;

/* One line on stderr: "memcoordctl: ...". */
void ctl_log_error(const char *format, ...) G_GNUC_PRINTF(1, 2);

/* ---- the bus (ctl-bus.c) ---- */

typedef struct ManagerInfo {
        char *version;
        char *state;
        char *policy;
        char *uri;
        uint64_t interval_usec;
        uint64_t domain_threshold;
        uint64_t host_threshold;
        uint64_t host_budget; /* 0 = none */
        uint64_t host_total;
        uint64_t host_free;
        uint64_t tick_count;
        bool dry_run;
} ManagerInfo;

typedef struct DomainInfo {
        char *object;
        char *name;
        char *uuid;
        char *status;
        uint64_t actual;
        uint64_t target;
        uint64_t unused;
        uint64_t available;
        uint64_t usable;
        uint64_t maximum; /* the hypervisor's maximum memory */
        uint64_t min;     /* effective limits */
        uint64_t max;
        uint64_t stats_age_usec; /* UINT64_MAX = no stats */
        uint32_t weight;
        uint64_t last_change_usec; /* CLOCK_REALTIME, 0 = never */
        char *last_reason;         /* "" = never */
} DomainInfo;

/* Connects to the bus -H/--user/--system chose. Logs on failure. */
int ctl_connect(sd_bus **ret);

/* Plain words for a failed call: "memcoordd is not running", "Access denied (...)", ... domain,
 * when not NULL, is the guest the call was about. Returns a string to free. */
char *ctl_error_reason(const sd_bus_error *error, int r, const char *domain);

/*
 * Calls a method of org.memcoord1.Manager. On failure logs "Failed to WHAT: REASON" and
 * returns a negative errno. ret_reply may be NULL.
 */
int ctl_call(sd_bus *bus, const char *what, const char *domain, const char *member,
             sd_bus_message **ret_reply, const char *types, ...);

/* Read the daemon's state without logging; the error says why on failure. */
int ctl_get_manager(sd_bus *bus, ManagerInfo *ret, sd_bus_error *error);
int ctl_list_domains(sd_bus *bus, DomainInfo **ret, size_t *ret_n, sd_bus_error *error);
void manager_info_clear(ManagerInfo *m);
void domain_info_free_array(DomainInfo *d, size_t n);

/* ---- formatting and parsing (ctl-format.c) ---- */

#define CTL_TIME_MAX_STRLEN 32

/* mc_format_size, out of line: inlined into callers, GCC cannot see that the plain-number branch
 * only takes values below 1024 and warns about truncation. */
const char *ctl_format_size(char buf[static MC_SIZE_MAX_STRLEN], uint64_t bytes);

const char *ctl_format_interval(char buf[static CTL_TIME_MAX_STRLEN], uint64_t usec);
/* "3s ago", "5min ago", "2h ago", "4d ago"; "-" for 0 (never). */
const char *ctl_format_ago(char buf[static CTL_TIME_MAX_STRLEN], uint64_t realtime_usec, uint64_t now_usec);
uint64_t ctl_now_realtime(void);

/* Parse a size or log "Invalid NAME 'VALUE': ..." (what names the argument). */
int ctl_parse_size_arg(const char *what, const char *s, uint64_t *ret);
/* Seconds with an optional unit: "2", "0.5", "500ms", "1min". */
int ctl_parse_interval_arg(const char *what, const char *s, uint64_t *ret_usec);

/* A domain's size column for tables: "-" when the figure is not known. */
const char *ctl_domain_size(char buf[static MC_SIZE_MAX_STRLEN], const DomainInfo *d, uint64_t bytes,
                            bool is_stat);

/* The guest table of status and domains, through libsmartcols. */
int ctl_print_domains_table(const DomainInfo *d, size_t n);

/* JSON building and printing. */
void ctl_json_add_domain(JsonBuilder *b, const DomainInfo *d);
void ctl_json_add_domains(JsonBuilder *b, const DomainInfo *d, size_t n);
void ctl_json_add_manager(JsonBuilder *b, const ManagerInfo *m);
int ctl_print_json(JsonBuilder *b, bool pretty);

/* ---- the verbs ---- */

int verb_status(int argc, char **argv);
int verb_domains(int argc, char **argv);
int verb_set_threshold(int argc, char **argv);
int verb_set_interval(int argc, char **argv);
int verb_set_budget(int argc, char **argv);
int verb_pause(int argc, char **argv);
int verb_resume(int argc, char **argv);
int verb_set_limits(int argc, char **argv);
int verb_exclude(int argc, char **argv);
int verb_include(int argc, char **argv);
int verb_reload(int argc, char **argv);
int verb_monitor(int argc, char **argv);
int verb_top(int argc, char **argv);
