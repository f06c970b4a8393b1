/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The verbs that change memcoordd's settings. Arguments are checked before connecting, so a
 * typo is reported the same with or without the daemon. They print nothing on success. */

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "memcoord/macro.h"

#define WEIGHT_MAX 10000U
#define WEIGHT_DEFAULT 100U

int verb_set_threshold(int argc, char **argv)
{
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        const char *member;
        uint64_t bytes;
        int r;

        if (strcmp(argv[1], "domain") == 0)
                member = "SetDomainThreshold";
        else if (strcmp(argv[1], "host") == 0)
                member = "SetHostThreshold";
        else {
                ctl_log_error("Invalid threshold '%s': expected 'domain' or 'host'", argv[1]);
                return -EINVAL;
        }
        r = ctl_parse_size_arg(member[3] == 'D' ? "domain threshold" : "host threshold", argv[2], &bytes);
        if (r < 0)
                return r;
        r = ctl_connect(&bus);
        if (r < 0)
                return r;
        return ctl_call(bus, "set threshold", NULL, member, NULL, "t", bytes);
}

int verb_set_interval(int argc, char **argv)
{
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        uint64_t usec;
        int r;

        r = ctl_parse_interval_arg("interval", argv[1], &usec);
        if (r < 0)
                return r;
        r = ctl_connect(&bus);
        if (r < 0)
                return r;
        return ctl_call(bus, "set interval", NULL, "SetInterval", NULL, "t", usec);
}

int verb_set_budget(int argc, char **argv)
{
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        uint64_t bytes = 0;
        int r;

        if (strcmp(argv[1], "none") != 0) {
                r = ctl_parse_size_arg("host budget", argv[1], &bytes);
                if (r < 0)
                        return r;
        }
        r = ctl_connect(&bus);
        if (r < 0)
                return r;
        return ctl_call(bus, "set budget", NULL, "SetHostBudget", NULL, "t", bytes);
}

static int simple_call(const char *what, const char *member)
{
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = ctl_connect(&bus);
        if (r < 0)
                return r;
        return ctl_call(bus, what, NULL, member, NULL, NULL);
}

int verb_pause(int argc, char **argv)
{
        return simple_call("pause", "Pause");
}

int verb_resume(int argc, char **argv)
{
        return simple_call("resume", "Resume");
}

int verb_reload(int argc, char **argv)
{
        return simple_call("reload", "Reload");
}

static int set_excluded(const char *what, const char *domain, bool excluded)
{
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        int r;

        r = ctl_connect(&bus);
        if (r < 0)
                return r;
        return ctl_call(bus, what, domain, "SetDomainExcluded", NULL, "sb", domain, (int) excluded);
}

int verb_exclude(int argc, char **argv)
{
        return set_excluded("exclude guest", argv[1], true);
}

int verb_include(int argc, char **argv)
{
        return set_excluded("include guest", argv[1], false);
}

/* "default" and 0 both mean the default on the bus. */
static int parse_limit_size(const char *option, const char *s, uint64_t *ret)
{
        if (strcmp(s, "default") == 0) {
                *ret = 0;
                return 0;
        }
        return ctl_parse_size_arg(option, s, ret);
}

static int parse_weight(const char *s, uint32_t *ret)
{
        char *end = NULL;
        unsigned long v;

        if (strcmp(s, "default") == 0) {
                *ret = 0;
                return 0;
        }
        errno = 0;
        v = g_ascii_isdigit(s[0]) ? strtoul(s, &end, 10) : ULONG_MAX;
        if (errno != 0 || !end || *end != '\0' || v > WEIGHT_MAX) {
                ctl_log_error("Invalid --weight '%s': expected a whole number from 1 to %u, or 'default'", s,
                              WEIGHT_MAX);
                return -EINVAL;
        }
        *ret = (uint32_t) v;
        return 0;
}

int verb_set_limits(int argc, char **argv)
{
        _cleanup_(sd_bus_close_unrefp) sd_bus *bus = NULL;
        const char *domain = argv[1];
        uint64_t min = 0, max = 0;
        uint32_t weight = 0;
        int r;

        if (!ctl_args.min && !ctl_args.max && !ctl_args.weight) {
                ctl_log_error("set-limits needs at least one of --min, --max, --weight");
                return -EINVAL;
        }
        if (ctl_args.min && (r = parse_limit_size("--min", ctl_args.min, &min)) < 0)
                return r;
        if (ctl_args.max && (r = parse_limit_size("--max", ctl_args.max, &max)) < 0)
                return r;
        if (ctl_args.weight && (r = parse_weight(ctl_args.weight, &weight)) < 0)
                return r;
        if (min > 0 && max > 0 && min > max) {
                ctl_log_error("Invalid limits: --min %s is larger than --max %s", ctl_args.min,
                              ctl_args.max);
                return -EINVAL;
        }

        r = ctl_connect(&bus);
        if (r < 0)
                return r;

        /* SetDomainLimits sets all three: keep what was not given as it is now. */
        if (!ctl_args.min || !ctl_args.max || !ctl_args.weight) {
                _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
                DomainInfo d = {}, by_name = {};
                bool found = false, found_name = false;

                r = ctl_call(bus, "set limits", domain, "ListDomains", &reply, NULL);
                if (r < 0)
                        return r;
                r = sd_bus_message_enter_container(reply, 'a', "(ossstttttttttuts)");
                while (r >= 0 && !found) {
                        DomainInfo t = {};

                        r = ctl_read_domain_entry(reply, &t);
                        if (r <= 0)
                                break;
                        if (strcmp(t.uuid, domain) == 0) {
                                d = t;
                                found = true;
                        } else if (!found_name && strcmp(t.name, domain) == 0) {
                                by_name = t;
                                found_name = true;
                        }
                }
                if (r < 0) {
                        ctl_log_error("Failed to set limits: Unexpected reply from memcoordd: %s",
                                      strerror(-r));
                        return r;
                }
                if (!found && found_name) {
                        d = by_name;
                        found = true;
                }
                if (found) {
                        if (!ctl_args.min)
                                min = d.min;
                        /* The hypervisor's maximum is what 0 means: keep following it. */
                        if (!ctl_args.max)
                                max = d.max == d.maximum ? 0 : d.max;
                        if (!ctl_args.weight)
                                weight = d.weight == WEIGHT_DEFAULT ? 0 : d.weight;
                }
                /* An unknown guest: let the daemon say so, in its words. */
        }
        return ctl_call(bus, "set limits", domain, "SetDomainLimits", NULL, "sttu", domain, min, max,
                        weight);
}
