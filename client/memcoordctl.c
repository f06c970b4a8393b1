/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* memcoordctl: the command line and the verb table. The verbs live in ctl-*.c. */

#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctl.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

CtlArgs ctl_args = {
        .legend = true,
};

void ctl_log_error(const char *format, ...)
{
        va_list ap;

        fputs("memcoordctl: ", stderr);
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
}

typedef enum VerbFlags {
        VERB_DEFAULT = 1 << 0,       /* run when no verb is given */
        VERB_LIMIT_OPTIONS = 1 << 1, /* takes --min, --max, --weight */
        VERB_ITERATIONS = 1 << 2,    /* takes -n */
        VERB_FLEET = 1 << 3,         /* takes several -H */
} VerbFlags;

typedef struct Verb {
        const char *name;
        unsigned min_args, max_args; /* after the verb */
        VerbFlags flags;
        int (*run)(int argc, char **argv);
        const char *synopsis;
        const char *help;
} Verb;

static const Verb verbs[] = {
        { "status", 0, 0, VERB_DEFAULT | VERB_FLEET, verb_status, "",
          "Show the daemon's settings, the host and every guest" },
        { "domains", 0, 0, VERB_FLEET, verb_domains, "", "Show the guest table only" },
        { "set-threshold", 2, 2, 0, verb_set_threshold, "domain|host SIZE",
          "Set the domain or the host threshold" },
        { "set-interval", 1, 1, 0, verb_set_interval, "SECONDS", "Set the time between two ticks" },
        { "set-budget", 1, 1, 0, verb_set_budget, "SIZE|none",
          "Cap the memory all guests hold together, or remove the cap" },
        { "pause", 0, 0, 0, verb_pause, "", "Stop moving balloons (statistics are still read)" },
        { "resume", 0, 0, 0, verb_resume, "", "Move balloons again" },
        { "set-limits", 1, 1, VERB_LIMIT_OPTIONS, verb_set_limits,
          "DOMAIN [--min SIZE] [--max SIZE] [--weight N]", "Set a guest's floor, cap and weight" },
        { "exclude", 1, 1, 0, verb_exclude, "DOMAIN", "Never move this guest's balloon" },
        { "include", 1, 1, 0, verb_include, "DOMAIN", "Manage this guest again" },
        { "reload", 0, 0, 0, verb_reload, "", "Make memcoordd re-read its config file and state file" },
        { "monitor", 0, 0, 0, verb_monitor, "",
          "Print ticks, balloon changes and setting changes as they happen" },
        { "top", 0, 0, VERB_ITERATIONS, verb_top, "[-n N]", "Live view of the guests (q quits)" },
};

static void help(void)
{
        printf("memcoordctl [OPTIONS...] [VERB] [ARGS...]\n"
               "\n"
               "Query and control memcoordd, the memory coordinator for libvirt guests.\n"
               "\n"
               "Verbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                g_autofree char *head = g_strdup_printf("%s %s", verbs[i].name, verbs[i].synopsis);

                if (strlen(head) > 30)
                        printf("  %s\n  %-30s %s\n", head, "", verbs[i].help);
                else
                        printf("  %-30s %s\n", head, verbs[i].help);
        }
        printf("\n"
               "Options:\n"
               "  -h --help                      Show this help and exit\n"
               "     --version                   Show the version and exit\n"
               "     --json[=pretty|short]       Print JSON (sizes in bytes, times in microseconds);\n"
               "                                 monitor and top print one object per line\n"
               "     --no-legend                 Do not print column headings\n"
               "  -H --host=[USER@]HOST[:PORT]   Talk to memcoordd on a remote host, over ssh;\n"
               "                                 status and domains take several (.host: this one)\n"
               "     --system                    Talk to memcoordd on the system bus (default)\n"
               "     --user                      Talk to memcoordd on the session bus\n"
               "     --min=SIZE|default          set-limits: the guest's floor\n"
               "     --max=SIZE|default          set-limits: the guest's cap\n"
               "     --weight=N|default          set-limits: its share when memory is short (1-10000)\n"
               "  -n --iterations=N              top: stop after N refreshes\n"
               "\n"
               "SIZE is bytes or a number with a binary suffix: 157286400, 100M, 1.5G.\n"
               "SECONDS is a number, optionally with a unit: 2, 0.5, 250ms.\n"
               "Without a verb, memcoordctl runs status. Exit status: 0 on success, 1 on failure;\n"
               "with several hosts, 1 only when no host answered.\n"
               "See memcoordctl(1).\n");
}

static int parse_argv(int argc, char **argv)
{
        /* Lives as long as the program: ctl_args.hosts points into it. */
        static GPtrArray *hosts = NULL;
        enum {
                ARG_VERSION = 0x100,
                ARG_JSON,
                ARG_NO_LEGEND,
                ARG_SYSTEM,
                ARG_USER,
                ARG_MIN,
                ARG_MAX,
                ARG_WEIGHT,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "json", optional_argument, NULL, ARG_JSON },
                { "no-legend", no_argument, NULL, ARG_NO_LEGEND },
                { "host", required_argument, NULL, 'H' },
                { "system", no_argument, NULL, ARG_SYSTEM },
                { "user", no_argument, NULL, ARG_USER },
                { "min", required_argument, NULL, ARG_MIN },
                { "max", required_argument, NULL, ARG_MAX },
                { "weight", required_argument, NULL, ARG_WEIGHT },
                { "iterations", required_argument, NULL, 'n' },
                {},
        };
        int c;

        if (!hosts)
                hosts = g_ptr_array_new();
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hH:n:", options, NULL)) >= 0) {
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("memcoordctl %s\n", MEMCOORDCTL_VERSION);
                        return 0;
                case ARG_JSON:
                        if (!optarg || strcmp(optarg, "pretty") == 0)
                                ctl_args.json = JSON_PRETTY;
                        else if (strcmp(optarg, "short") == 0)
                                ctl_args.json = JSON_SHORT;
                        else {
                                ctl_log_error("Invalid --json '%s': expected 'pretty' or 'short'", optarg);
                                return -EINVAL;
                        }
                        break;
                case ARG_NO_LEGEND:
                        ctl_args.legend = false;
                        break;
                case 'H':
                        if (optarg[0] == '\0') {
                                ctl_log_error("Invalid --host '': expected [USER@]HOST");
                                return -EINVAL;
                        }
                        if (!g_ptr_array_find_with_equal_func(hosts, optarg, g_str_equal, NULL))
                                g_ptr_array_add(hosts, optarg);
                        ctl_args.hosts = (const char **) hosts->pdata;
                        ctl_args.n_hosts = hosts->len;
                        break;
                case ARG_SYSTEM:
                        ctl_args.user = false;
                        break;
                case ARG_USER:
                        ctl_args.user = true;
                        break;
                case ARG_MIN:
                        ctl_args.min = optarg;
                        break;
                case ARG_MAX:
                        ctl_args.max = optarg;
                        break;
                case ARG_WEIGHT:
                        ctl_args.weight = optarg;
                        break;
                case 'n': {
                        char *end = NULL;
                        unsigned long long v;

                        errno = 0;
                        v = g_ascii_isdigit(optarg[0]) ? strtoull(optarg, &end, 10) : 0;
                        if (errno != 0 || !end || *end != '\0' || v == 0) {
                                ctl_log_error("Invalid --iterations '%s': expected a positive whole number",
                                              optarg);
                                return -EINVAL;
                        }
                        ctl_args.iterations = v;
                        break;
                }
                case ':':
                        ctl_log_error("Option '%s' needs an argument (try --help)", argv[optind - 1]);
                        return -EINVAL;
                case '?':
                default: {
                        /* Inside "-5M", getopt has not moved past the argument yet. */
                        const char *arg = optind < argc && argv[optind][0] == '-' && optopt &&
                                                          argv[optind][1] == optopt
                                                  ? argv[optind]
                                                  : argv[optind - 1];

                        if (optopt && g_ascii_isdigit(optopt))
                                ctl_log_error("Invalid argument '%s': negative values are not accepted",
                                              arg);
                        else if (optopt && optopt < 0x100)
                                ctl_log_error("Unknown option '-%c' (try --help)", optopt);
                        else
                                ctl_log_error("Unknown option '%s' (try --help)", arg);
                        return -EINVAL;
                }
                }
        }
        if (ctl_args.n_hosts > 0 && ctl_args.user) {
                ctl_log_error("--host works with the system bus only, not with --user");
                return -EINVAL;
        }
        return 1;
}

static int dispatch(int argc, char **argv)
{
        const Verb *verb = NULL;
        int n_args;

        if (argc <= 0) {
                for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                        if (verbs[i].flags & VERB_DEFAULT)
                                verb = &verbs[i];
        } else
                for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                        if (strcmp(argv[0], verbs[i].name) == 0)
                                verb = &verbs[i];
        if (!verb) {
                ctl_log_error("Unknown verb '%s' (try --help)", argv[0]);
                return -EINVAL;
        }

        n_args = argc > 0 ? argc - 1 : 0;
        if ((unsigned) n_args < verb->min_args) {
                ctl_log_error("%s needs %s (try --help)", verb->name, verb->synopsis);
                return -EINVAL;
        }
        if ((unsigned) n_args > verb->max_args) {
                ctl_log_error("Too many arguments for %s: '%s' (try --help)", verb->name,
                              argv[verb->max_args + 1]);
                return -EINVAL;
        }
        if (!(verb->flags & VERB_LIMIT_OPTIONS) && (ctl_args.min || ctl_args.max || ctl_args.weight)) {
                ctl_log_error("--min, --max and --weight go with set-limits only");
                return -EINVAL;
        }
        if (!(verb->flags & VERB_FLEET) && ctl_args.n_hosts > 1) {
                ctl_log_error("%s talks to one host; several --host go with status and domains", verb->name);
                return -EINVAL;
        }
        if (!(verb->flags & VERB_ITERATIONS) && ctl_args.iterations > 0) {
                ctl_log_error("-n/--iterations goes with top only");
                return -EINVAL;
        }

        if (argc <= 0) {
                char *none[] = { (char *) verb->name, NULL };

                return verb->run(1, none);
        }
        return verb->run(argc, argv);
}

int main(int argc, char **argv)
{
        int r;

        /* Character widths for the tables; numbers stay in the C locale. */
        setlocale(LC_CTYPE, "");
        r = parse_argv(argc, argv);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        r = dispatch(argc - optind, argv + optind);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
