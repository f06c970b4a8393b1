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
#include "metrics-export.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

typedef enum BusKind {
        BUS_NONE,
        BUS_SYSTEM,
        BUS_SESSION,
} BusKind;

typedef struct Args {
        char *uri;
        char *interval;         /* as given, or NULL */
        uint64_t interval_usec; /* parsed; 0 = not given */
        char *config_path;
        char *state_dir;
        char *bus;
        char *metrics_listen;
        char *metrics_file;
        double sim_speed; /* 0 = not given */
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
        g_free(a->metrics_listen);
        g_free(a->metrics_file);
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
                { "metrics-listen", 0, 0, G_OPTION_ARG_STRING, &a->metrics_listen,
                  "Serve Prometheus metrics over HTTP at ADDRESS:PORT (e.g. 127.0.0.1:9848); under systemd, "
                  "memcoordd-metrics.socket passes the socket instead",
                  "ADDRESS:PORT" },
                { "metrics-file", 0, 0, G_OPTION_ARG_FILENAME, &a->metrics_file,
                  "Write Prometheus metrics to FILE at every interval, atomically (node_exporter's textfile "
                  "collector)",
                  "FILE" },
                { "sim-speed", 0, 0, G_OPTION_ARG_DOUBLE, &a->sim_speed,
                  "With --connect sim:FILE: simulated seconds per real second (default: 1)", "N" },
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
                const char *why = NULL;
                uint64_t usec;

                if (mc_config_parse_interval(a->interval, &usec, &why) < 0) {
                        fprintf(stderr, "memcoordd: interval '%s': %s\n", a->interval, why);
                        return -EINVAL;
                }
                a->interval_usec = usec;
        }
        if (a->sim_speed != 0 && (!(a->sim_speed >= 0.01 && a->sim_speed <= 1000) || !a->uri ||
                                  !g_str_has_prefix(a->uri, "sim:"))) {
                fprintf(stderr,
                        "memcoordd: --sim-speed: a number from 0.01 to 1000, with --connect sim:FILE\n");
                return -EINVAL;
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

static void args_overrides(const Args *a, McConfigOverrides *o)
{
        *o = (McConfigOverrides){
                .uri = g_strdup(a->uri),
                .interval_usec = a->interval_usec,
                .dry_run = a->dry_run,
        };
}

/*
 * A state file that does not load must not keep the service down (systemd would restart it
 * until its limit): it is moved aside, where the admin can read it, and the daemon starts on
 * the config file alone. Its settings are lost to this run; the log says where they are.
 */
static void set_state_aside(const char *state_path, const GError *why)
{
        g_autoptr(GDateTime) now = g_date_time_new_now_utc();
        g_autofree char *stamp = g_date_time_format(now, "%Y%m%dT%H%M%SZ");
        g_autofree char *aside = g_strdup_printf("%s.bad-%s", state_path, stamp);

        mc_log_id(LOG_ERR, MC_MESSAGE_STATE_SET_ASIDE, "Ignoring the saved settings, they do not load: %s",
                  why->message);
        if (rename(state_path, aside) < 0)
                mc_log_id(LOG_ERR, MC_MESSAGE_STATE_SET_ASIDE,
                          "Cannot move %s aside to %s (%m): it will be replaced at the next change",
                          state_path, aside);
        else
                mc_log_id(LOG_WARNING, MC_MESSAGE_STATE_SET_ASIDE,
                          "Moved %s to %s; starting on the config file alone", state_path, aside);
}

/* Config file, then the state file on top, then the command line. */
static McConfig *load_config(const Args *a, const char *state_path, const McConfigOverrides *o)
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
                if (!mc_config_load_state_file(c, state_path, &error))
                        /* c is as the config file left it: a failed load changes nothing. */
                        set_state_aside(state_path, error);
        mc_config_apply_overrides(c, o);
        return g_steal_pointer(&c);
}

/*
 * The metrics: a socket passed by systemd (memcoordd-metrics.socket, FileDescriptorName=metrics),
 * --metrics-listen, --metrics-file. A passed socket is accepted on even where the unit forbids
 * creating AF_INET sockets: RestrictAddressFamilies= filters socket(), not accept().
 */
static int setup_metrics(const Args *a, sd_event *event, McManager *manager, McMetricsExport **ret)
{
        McMetricsExport *x = NULL;
        char **names = NULL;
        int n, r, served = 0;

        n = sd_listen_fds_with_names(true, &names);
        if (n < 0)
                mc_log_id(LOG_WARNING, MC_MESSAGE_METRICS_FAILED,
                          "Ignoring the sockets passed by systemd: %s", strerror(-n));
        for (int i = 0; i < MAX(n, 0); i++) {
                int fd = SD_LISTEN_FDS_START + i;
                if (!names || !g_str_equal(names[i], "metrics") ||
                    sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
                        mc_log_id(LOG_WARNING, MC_MESSAGE_METRICS_FAILED,
                                  "Ignoring passed socket %d (%s): not the metrics socket", fd,
                                  names ? names[i] : "unnamed");
                        (void) close(fd);
                        continue;
                }
                if (!x)
                        (void) mc_metrics_export_new(event, manager, &x);
                r = mc_metrics_export_serve(x, fd);
                if (r < 0) {
                        fprintf(stderr, "memcoordd: Failed to serve metrics on a passed socket: %s\n",
                                strerror(-r));
                        goto fail;
                }
                served++;
        }
        g_strfreev(names);
        names = NULL;

        if (a->metrics_listen) {
                const char *why = NULL;
                int fd = mc_metrics_listen(a->metrics_listen, &why);
                if (fd < 0) {
                        fprintf(stderr, "memcoordd: --metrics-listen %s: %s\n", a->metrics_listen,
                                why ? why : strerror(-fd));
                        goto fail;
                }
                if (!x)
                        (void) mc_metrics_export_new(event, manager, &x);
                r = mc_metrics_export_serve(x, fd);
                if (r < 0) {
                        fprintf(stderr, "memcoordd: Failed to serve metrics: %s\n", strerror(-r));
                        goto fail;
                }
                served++;
        }
        if (served > 0)
                mc_log_id(LOG_INFO, MC_MESSAGE_METRICS_SERVING, "Serving metrics over HTTP on %d socket%s",
                          served, served > 1 ? "s" : "");

        const char *file = a->metrics_file ? a->metrics_file : manager->config->metrics_file;
        if (file && file[0]) {
                if (!x)
                        (void) mc_metrics_export_new(event, manager, &x);
                r = mc_metrics_export_file(x, file);
                if (r < 0) {
                        fprintf(stderr, "memcoordd: Failed to set up the metrics file: %s\n", strerror(-r));
                        goto fail;
                }
                mc_log_id(LOG_INFO, MC_MESSAGE_METRICS_SERVING, "Writing metrics to %s", file);
        }
        *ret = x;
        return 0;

fail:
        g_strfreev(names);
        mc_metrics_export_free(x);
        return -EINVAL;
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
        McMetricsExport *metrics = NULL;
        sigset_t mask;
        int r, exit_code = 0;

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

        __attribute__((cleanup(mc_config_overrides_clear))) McConfigOverrides overrides = {};
        args_overrides(&args, &overrides);
        McConfig *config = load_config(&args, state_path, &overrides);
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
        mc_manager_set_overrides(manager, &overrides);
        if (args.sim_speed > 0)
                manager->hypervisor->speed = args.sim_speed;
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

        if (setup_metrics(&args, event, manager, &metrics) < 0)
                goto finish_fail;

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
        metrics = mc_metrics_export_free(metrics);
        mcbus = mc_bus_free(mcbus);
        manager = mc_manager_free(manager);
        mc_libvirt_event_unregister();
        return exit_code;
}

int main(int argc, char **argv)
{
        return run(argc, argv);
}
