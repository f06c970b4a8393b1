/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* What memcoordctl prints and what it accepts: sizes, intervals and ages. */

#include <errno.h>
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
                { "", 1e6 },   { "s", 1e6 },    { "sec", 1e6 }, { "ms", 1e3 },   { "msec", 1e3 },
                { "us", 1.0 }, { "usec", 1.0 }, { "m", 60e6 },  { "min", 60e6 }, { "h", 3600e6 },
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
        const char *status = d->status ? d->status : "";

        /* Without a balloon there are no statistics: 0 would be a lie. */
        if ((is_stat && strcmp(status, "no-balloon") == 0) ||
            (bytes == 0 && strcmp(status, "managed") != 0)) {
                snprintf(buf, MC_SIZE_MAX_STRLEN, "-");
                return buf;
        }
        return ctl_format_size(buf, bytes);
}

int ctl_flush_stdout(void)
{
        if (fflush(stdout) != 0) {
                int r = errno > 0 ? -errno : -EIO;

                ctl_log_error("Failed to write the output: %s", strerror(-r));
                return r;
        }
        return 0;
}
