/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * memcoordctl: the pieces the verbs share. The command line lives in memcoordctl.c, the bus
 * (connection, ssh, calls, error wording) in ctl-bus.c, the daemon's state as it changes in
 * ctl-watch.c, the fields of the manager and the guests (property, JSON key, column) in
 * ctl-fields.c, formatting and parsing of sizes and times in ctl-format.c; the verbs in
 * ctl-show.c (status, domains), ctl-set.c (everything that changes a setting), ctl-monitor.c
 * and ctl-top.c.
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
        const char **hosts; /* -H, in order, each once: [user@]host[:port], or CTL_LOCAL_HOST */
        size_t n_hosts;     /* 0: the local bus */
        bool user;          /* --user: the session bus instead of the system bus */
        const char *min;    /* set-limits --min, as given */
        const char *max;
        const char *weight;
        uint64_t iterations; /* top -n; 0 = until quit */
} CtlArgs;

extern CtlArgs ctl_args;

/* One line on stderr: "memcoordctl: ...". */
void ctl_log_error(const char *format, ...) G_GNUC_PRINTF(1, 2);

/* ---- the bus (ctl-bus.c) ---- */

/* -H .host: this machine's bus, in a list of hosts (the name follows systemd's -M .host). */
#define CTL_LOCAL_HOST ".host"

bool ctl_host_is_local(const char *host);

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
        bool excluded;
        uint64_t last_change_usec; /* CLOCK_REALTIME, 0 = never */
        char *last_reason;         /* "" = never */
} DomainInfo;

/* Opens the system bus of host (NULL or CTL_LOCAL_HOST: this machine's, or with --user the
 * session bus). For a remote host ssh's stderr goes to a pipe, so that what it says becomes one
 * line of ours: *ret_ssh_fd is its read end (non-blocking), -1 for a local bus. Logs nothing. */
int ctl_bus_open(const char *host, sd_bus **ret, int *ret_ssh_fd);

/* Reads what ssh wrote into buf (its tail is kept); with timeout_ms > 0 waits that long for
 * ssh to exit. Returns false once ssh closed its end. */
bool ctl_ssh_read(int fd, GString *buf, int timeout_ms);

/* Connects to the bus -H/--user/--system chose (one host). Logs on failure. */
int ctl_connect(sd_bus **ret);

/* Plain words for a failed call: "memcoordd is not running", "Access denied (...)", ... domain,
 * when not NULL, is the guest the call was about; member the method (NULL: a read). When the
 * connection went away and ssh (ssh_fd, ssh_buf; -1 and NULL for none) said why, that is the
 * reason. Returns a string to free. */
char *ctl_error_reason(const sd_bus_error *error, int r, const char *domain, const char *member, int ssh_fd,
                       GString *ssh_buf);

/*
 * Calls a method of org.memcoord1.Manager on the bus ctl_connect() opened. On failure logs
 * "Failed to WHAT: REASON" and returns a negative errno. ret_reply may be NULL.
 */
int ctl_call(sd_bus *bus, const char *what, const char *domain, const char *member,
             sd_bus_message **ret_reply, const char *types, ...);

/* Reads one guest of a ListDomains reply (inside its array) into d; its strings point into the
 * message. Returns 0 at the end of the array. */
int ctl_read_domain_entry(sd_bus_message *m, DomainInfo *d);

void manager_info_clear(ManagerInfo *m);
void domain_info_free(DomainInfo *d);

/* ---- the fields of the manager and of a guest (ctl-fields.c) ---- */

typedef enum CtlFieldType {
        CTL_FIELD_STRING,      /* D-Bus 's' or 'o' */
        CTL_FIELD_BOOL,        /* 'b' */
        CTL_FIELD_U32,         /* 'u' */
        CTL_FIELD_COUNT,       /* 't', a plain number */
        CTL_FIELD_BYTES,       /* 't', a size */
        CTL_FIELD_GUEST_BYTES, /* 't', a guest's size: "-" while it is not known */
        CTL_FIELD_GUEST_STAT,  /* 't', a balloon statistic: "-" without a balloon */
        CTL_FIELD_USEC,        /* 't', a duration; UINT64_MAX = none */
        CTL_FIELD_REALTIME,    /* 't', a time stamp; 0 = never */
} CtlFieldType;

typedef enum CtlFieldFlags {
        /* Changes every tick without a property change of its own: re-read after a tick, and
         * never reported as a change. */
        CTL_FIELD_FIGURE = 1 << 0,
        CTL_COL_STATUS = 1 << 1, /* a column of status and domains (or of the fleet's hosts) */
        CTL_COL_TOP = 1 << 2,    /* a column of top */
        CTL_COL_RIGHT = 1 << 3,
        CTL_COL_TRUNC = 1 << 4,
} CtlFieldFlags;

#define CTL_FIELD_MAX_STRLEN 64

typedef struct CtlField CtlField;
struct CtlField {
        const char *property; /* the D-Bus property; NULL: only ListDomains tells it */
        const char *json;     /* the JSON key; NULL: not in JSON */
        const char *header;   /* the column heading; NULL: not a column */
        CtlFieldType type;
        size_t offset; /* in ManagerInfo or DomainInfo */
        CtlFieldFlags flags;
        double whint;   /* libsmartcols' width hint */
        unsigned width; /* top: its width; 0 = as wide as the widest value */
        /* Text and JSON other than the type's. */
        const char *(*text)(const CtlField *f, const void *record, char buf[static CTL_FIELD_MAX_STRLEN],
                            uint64_t now);
        void (*json_value)(JsonBuilder *b, const CtlField *f, const void *record);
};

extern const CtlField ctl_manager_fields[];
extern const size_t ctl_n_manager_fields;
extern const CtlField ctl_domain_fields[];
extern const size_t ctl_n_domain_fields;

const CtlField *ctl_field_by_property(const CtlField *fields, size_t n, const char *property);

/* Typed access to a record's field. */
const char *ctl_field_string(const CtlField *f, const void *record);
uint64_t ctl_field_number(const CtlField *f, const void *record); /* every type but strings */

/* A field's value as a table cell or a human reads it; now for times (CLOCK_REALTIME). */
const char *ctl_field_text(const CtlField *f, const void *record, char buf[static CTL_FIELD_MAX_STRLEN],
                           uint64_t now);
/* A field's value as JSON (the value only; the member name is the caller's). */
void ctl_field_json_value(JsonBuilder *b, const CtlField *f, const void *record);

/* One row of a guest table: the guest and the host it runs on (NULL: one host, no HOST column). */
typedef struct CtlRow {
        const char *host;
        const DomainInfo *domain;
} CtlRow;

/* The guest table of status and domains, through libsmartcols. */
int ctl_print_domains_table(const CtlRow *rows, size_t n);
/* The fleet's hosts, one row each: hosts[i] and its manager. */
int ctl_print_hosts_table(const char *const *hosts, const ManagerInfo *const *managers, size_t n);

/* JSON objects: a guest, the "domains" member, the manager's members. */
void ctl_json_add_domain(JsonBuilder *b, const DomainInfo *d);
void ctl_json_add_domains(JsonBuilder *b, const DomainInfo *const *d, size_t n);
void ctl_json_add_manager(JsonBuilder *b, const ManagerInfo *m);
int ctl_print_json(JsonBuilder *b, bool pretty);

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

/* A domain's size cell: "-" when the figure is not known. */
const char *ctl_domain_size(char buf[static MC_SIZE_MAX_STRLEN], const DomainInfo *d, uint64_t bytes,
                            bool is_stat);

/* Writes the standard output's buffer; logs and returns -errno on failure. */
int ctl_flush_stdout(void);

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
