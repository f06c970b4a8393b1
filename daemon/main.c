/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* memcoordd: argv, config, run. Everything else lives in the manager. */

#include <errno.h>
#include <glib.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "bus.h"
#include "config.h"
#include "memcoord-build.h"
#include "libvirt-event.h"
#include "log.h"
#include "manager.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

typedef enum BusKind {
        BUS_NONE,
        BUS_SYSTEM,
        BUS_SESSION,
} BusKind;

typedef struct Args {
        char *uri;
        char *interval;      /* as given, or NULL */
        double interval_sec; /* parsed; < 0 = not given */
        char *config_path;
        char *state_dir;
        char *bus;
        gboolean dry_run;
        gboolean verbose;
        gboolean version;
} Args;

static void args_clear(Args *a)
{
        g_free(a->uri);
        g_free(a->interval);
        g_free(a->config_path);
        g_free(a->state_dir);
        g_free(a->bus);
}

static int parse_args(int argc, char **argv, Args *a)
{
        g_autoptr(GError) error = NULL;
        g_autoptr(GOptionContext) ctx = NULL;
        GOptionEntry entries[] = {
                { "connect", 'c', 0, G_OPTION_ARG_STRING, &a->uri,
                  "libvirt URI (default: " MC_DEFAULT_URI ")", "URI" },
                { "interval", 'i', 0, G_OPTION_ARG_STRING, &a->interval,
                  "Seconds between two ticks, 0.1 to 3600 (default: 1)", "SECONDS" },
                { "config", 'C', 0, G_OPTION_ARG_FILENAME, &a->config_path,
                  "Config file (default: " MC_DEFAULT_CONFIG_FILE ", if it exists)", "FILE" },
                { "state-dir", 0, 0, G_OPTION_ARG_FILENAME, &a->state_dir,
                  "Where settings changed over the bus are kept (default: $STATE_DIRECTORY "
                  "or " MC_DEFAULT_STATE_DIR ")",
                  "DIR" },
                { "bus", 'b', 0, G_OPTION_ARG_STRING, &a->bus,
                  "Bus to publish org.memcoord on: system, session or none (default: system when started by "
                  "systemd, else none)",
                  "BUS" },
                { "dry-run", 'n', 0, G_OPTION_ARG_NONE, &a->dry_run, "Decide and log, but change no balloon",
                  NULL },
                { "verbose", 'v', 0, G_OPTION_ARG_NONE, &a->verbose, "Log debug messages too", NULL },
                { "version", 'V', 0, G_OPTION_ARG_NONE, &a->version, "Print the version and exit", NULL },
                {},
        };

        ctx = g_option_context_new("[INTERVAL] - coordinate memory among libvirt guests");
        g_option_context_set_summary(
                ctx,
                "Every interval, reads the balloon statistics of every running guest of a libvirt host,\n"
                "claims memory back from idle guests and gives it to guests under pressure, keeping\n"
                "the host's free memory above its threshold. Runs in the foreground until SIGINT or\n"
                "SIGTERM; SIGHUP re-reads the config. INTERVAL, if given, is the same as --interval.");
        g_option_context_set_description(
                ctx, "Balloon changes are logged as one line each: \"NAME: FROM MiB -> TO MiB (REASON)\".\n"
                     "Exit status: 0 on a clean stop, 1 on bad arguments, a bad config or a bus failure.\n"
                     "See memcoordd(8) and memcoord.conf(5).");
        g_option_context_add_main_entries(ctx, entries, NULL);
        if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
                fprintf(stderr, "memcoordd: %s (try --help)\n", error->message);
                return -EINVAL;
        }
        if (argc > 2) {
                fprintf(stderr, "memcoordd: unexpected argument '%s' (try --help)\n", argv[2]);
                return -EINVAL;
        }
        if (argc == 2) {
                if (a->interval) {
                        fprintf(stderr,
                                "memcoordd: the interval is given twice (argument and --interval)\n");
                        return -EINVAL;
                }
                a->interval = g_strdup(argv[1]);
        }
        if (a->interval) {
                char *end = NULL;
                double v = g_ascii_strtod(a->interval, &end);
                const char *why = NULL;

                if (end == a->interval || *end != '\0' || !isfinite(v))
                        why = "not a number of seconds";
                else
                        why = mc_config_interval_check(v > 0 ? (uint64_t) (v * 1e6 + 0.5) : 0);
                if (why) {
                        fprintf(stderr, "memcoordd: interval '%s': %s\n", a->interval, why);
                        return -EINVAL;
                }
                a->interval_sec = v;
        }
        if (a->bus && !g_str_equal(a->bus, "system") && !g_str_equal(a->bus, "session") &&
            !g_str_equal(a->bus, "none")) {
                fprintf(stderr, "memcoordd: --bus: '%s' is not one of system, session, none\n", a->bus);
                return -EINVAL;
        }
        return 0;
}

static BusKind bus_kind(const Args *a)
{
        if (!a->bus)
                return getenv("NOTIFY_SOCKET") || getenv("INVOCATION_ID") ? BUS_SYSTEM : BUS_NONE;
        if (g_str_equal(a->bus, "system"))
                return BUS_SYSTEM;
        if (g_str_equal(a->bus, "session"))
                return BUS_SESSION;
        return BUS_NONE;
}

/* Config file, then the state file on top, then the command line. */
static McConfig *load_config(const Args *a, const char *state_path)
{
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(GError) error = NULL;
        const char *path = a->config_path ? a->config_path : MC_DEFAULT_CONFIG_FILE;

        if (a->config_path || g_file_test(path, G_FILE_TEST_EXISTS))
                if (!mc_config_load_file(c, path, &error)) {
                        mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "%s", error->message);
                        return NULL;
                }
        if (state_path && g_file_test(state_path, G_FILE_TEST_EXISTS))
                if (!mc_config_load_file(c, state_path, &error)) {
                        mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "%s", error->message);
                        return NULL;
                }
        if (a->uri) {
                g_free(c->uri);
                c->uri = g_strdup(a->uri);
        }
        if (a->interval_sec >= 0)
                c->interval_usec = (uint64_t) (a->interval_sec * 1e6 + 0.5);
        if (a->dry_run)
                c->dry_run = true;
        return g_steal_pointer(&c);
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        mc_log_id(LOG_INFO, MC_MESSAGE_STOPPING, "Stopping on signal %u", si->ssi_signo);
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        g_autoptr(GError) error = NULL;

        if (mc_manager_reload(userdata, &error) < 0)
                mc_log_idf(LOG_ERR, MC_MESSAGE_RELOAD_FAILED, (MC_LOG_STR("MEMCOORD_ERROR", error->message)),
                           "Reload failed, keeping the old settings: %s", error->message);
        return 0;
}

static int run(int argc, char **argv)
{
        __attribute__((cleanup(args_clear))) Args args = {};
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        g_autoptr(McManager) manager = NULL;
        g_autofree char *state_path = NULL;
        McBus *mcbus = NULL;
        sigset_t mask;
        int r, exit_code = 0;

        args.interval_sec = -1;
        if (parse_args(argc, argv, &args) < 0)
                return EXIT_FAILURE;
        if (args.version) {
                printf("memcoordd %s\n", MC_VERSION);
                return EXIT_SUCCESS;
        }
        mc_log_setup();
        if (args.verbose)
                mc_log_set_max_level(LOG_DEBUG);

        BusKind kind = bus_kind(&args);
        const char *state_dir = args.state_dir ? args.state_dir : getenv("STATE_DIRECTORY");
        if (!state_dir)
                state_dir = MC_DEFAULT_STATE_DIR;
        /* Settings only change over the bus: without one there is nothing to keep. */
        if (kind != BUS_NONE)
                state_path = g_build_filename(state_dir, "state.conf", NULL);

        McConfig *config = load_config(&args, state_path);
        if (!config)
                return EXIT_FAILURE;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        /* A write to a libvirtd that just died must fail with EPIPE, not kill us. */
        (void) signal(SIGPIPE, SIG_IGN);

        r = sd_event_default(&event);
        if (r < 0) {
                mc_config_free(config);
                mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "Failed to create the event loop: %s",
                          strerror(-r));
                return EXIT_FAILURE;
        }
        r = mc_libvirt_event_register(event);
        if (r < 0) {
                mc_config_free(config);
                mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "Failed to hook libvirt's events: %s",
                          strerror(-r));
                return EXIT_FAILURE;
        }

        r = mc_manager_new(event, config, args.config_path ? args.config_path : MC_DEFAULT_CONFIG_FILE,
                           state_path, &manager);
        if (r < 0) {
                mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "Failed to set up: %s", strerror(-r));
                goto finish_fail;
        }
        if (state_path && g_mkdir_with_parents(state_dir, 0755) < 0)
                mc_log_id(LOG_WARNING, MC_MESSAGE_STATE_DIR_FAILED,
                          "Cannot create %s (%m): settings changed over the bus will not persist",
                          state_dir);

        if (kind != BUS_NONE) {
                r = kind == BUS_SYSTEM ? sd_bus_open_system(&bus) : sd_bus_open_user(&bus);
                if (r < 0) {
                        mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "Failed to connect to the %s bus: %s",
                                  kind == BUS_SYSTEM ? "system" : "session", strerror(-r));
                        goto finish_fail;
                }
                r = mc_bus_new(bus, manager, &mcbus);
                if (r == -EEXIST || r == -EALREADY) {
                        mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED,
                                  "%s is already owned: another memcoordd is running", MC_BUS_NAME);
                        goto finish_fail;
                }
                if (r < 0) {
                        mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "Failed to publish %s: %s",
                                  MC_BUS_NAME, strerror(-r));
                        goto finish_fail;
                }
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
                if (r < 0) {
                        mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "Failed to attach the bus: %s",
                                  strerror(-r));
                        goto finish_fail;
                }
        }

        (void) sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL);
        (void) sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL);
        (void) sd_event_add_signal(event, NULL, SIGHUP, on_reload_signal, manager);
        (void) sd_event_set_watchdog(event, true);

        r = mc_manager_start(manager);
        if (r < 0) {
                mc_log_id(LOG_ERR, MC_MESSAGE_STARTUP_FAILED, "Failed to start: %s", strerror(-r));
                goto finish_fail;
        }
        mc_log_idf(LOG_INFO, MC_MESSAGE_STARTED, (MC_LOG_STR("MEMCOORD_URI", manager->config->uri)),
                   "Started (interval %.1f s, %s%s)", (double) manager->config->interval_usec / 1e6,
                   manager->config->uri, manager->config->dry_run ? ", dry run" : "");
        (void) sd_notify(false, "READY=1\nSTATUS=Coordinating guest memory");

        r = sd_event_loop(event);
        (void) sd_notify(false, "STOPPING=1");
        if (r < 0) {
                mc_log_id(LOG_ERR, MC_MESSAGE_INTERNAL_ERROR, "Event loop failed: %s", strerror(-r));
                exit_code = EXIT_FAILURE;
        } else
                exit_code = r;
        goto finish;

finish_fail:
        exit_code = EXIT_FAILURE;
finish:
        mcbus = mc_bus_free(mcbus);
        manager = mc_manager_free(manager);
        mc_libvirt_event_unregister();
        return exit_code;
}

int main(int argc, char **argv)
{
        return run(argc, argv);
}
