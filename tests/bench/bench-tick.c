/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The tick benchmark. One table:
 *
 *   policy      mc_policy_run() alone, in process, on synthetic guests (a mix of idle, needy,
 *               at-max, steady, below-floor, in-flight and unmanaged guests), with the host
 *               roomy (grants) and short (crunch: claims plus water-filling).
 *   tick-local  a whole mc_manager_tick() against libvirt's test driver in this process: the
 *               manager's own work plus the driver's, no RPC.
 *   tick-rpc    a whole mc_manager_tick() through a running libvirtd serving the test driver
 *               (test+unix:///default), so every libvirt call is a real RPC; calls per tick
 *               come from the manager's own counters ((*mc_hypervisor_calls(m->hypervisor))).
 *   bulk-only / per-guest-loop
 *               one virConnectGetAllDomainStats(VIR_DOMAIN_STATS_BALLOON) against one
 *               virDomainMemoryStats() per guest, on the same daemon and the same guests,
 *               one round after each measured tick: the test driver leaves the balloon
 *               fields of the bulk records empty, so the manager falls back to the loop
 *               there; a driver that fills them (QEMU) needs only the bulk call.
 *
 * With the default test node, libvirtd shares the driver's state among the connections open at
 * the same time and resets it when the last one closes: the bench keeps one connection open for
 * the whole run, creates the transient guests through it, and lets the manager open its own.
 * If no libvirtd answers, the bench (as root) starts one as its child and stops it at the end.
 *
 * Not a test: it fails only when it cannot measure what it was asked to.
 */

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "hypervisor.h"
#include "libvirt-event.h"
#include "log.h"
#include "manager.h"
#include "policy.h"

#define MIB(x) ((uint64_t) (x) * UINT64_C(1024))
#define GIB(x) MIB((uint64_t) (x) * UINT64_C(1024))
#define NSEC_PER_USEC UINT64_C(1000)
#define NSEC_PER_SEC UINT64_C(1000000000)

#define DEFAULT_URI "test+unix:///default"
#define DOMAIN_PREFIX "bench-"
/* A policy sample is a batch of runs lasting at least this long, so the clock's own cost
 * (tens of ns) does not dominate the smallest sizes. */
#define POLICY_BATCH_NSEC (20 * NSEC_PER_USEC)
#define POLICY_MAX_SAMPLES 200000
#define LIBVIRTD_START_TIMEOUT_SEC 60
#define LIBVIRTD_STOP_TIMEOUT_SEC 15

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virConnect, virConnectClose)

/* ---------------------------------------------------------------------------------------- */
/* Options */

static char *opt_uri;
static char *opt_sizes;
static int opt_policy_min_runs = 200;
static double opt_policy_min_sec = 0.5;
static int opt_ticks = 20;
static int opt_warmup = 2;
static int opt_min_ticks = 5;
static double opt_tick_budget_sec = 60.0;
static gboolean opt_apply;
static gboolean opt_no_start;
static gboolean opt_policy_only;
static gboolean opt_rpc_only;

static const GOptionEntry option_entries[] = {
        { "uri", 0, 0, G_OPTION_ARG_STRING, &opt_uri, "libvirt URI of the tick-rpc part (" DEFAULT_URI ")",
          "URI" },
        { "sizes", 0, 0, G_OPTION_ARG_STRING, &opt_sizes, "guest counts, comma-separated (10,100,1000)",
          "N,..." },
        { "policy-runs", 0, 0, G_OPTION_ARG_INT, &opt_policy_min_runs,
          "at least this many policy runs per size (200)", "N" },
        { "policy-seconds", 0, 0, G_OPTION_ARG_DOUBLE, &opt_policy_min_sec,
          "and at least this long per size and scenario (0.5)", "S" },
        { "ticks", 0, 0, G_OPTION_ARG_INT, &opt_ticks, "measured ticks per size (20)", "N" },
        { "warmup", 0, 0, G_OPTION_ARG_INT, &opt_warmup, "warm-up ticks per size, at least 1 (2)", "N" },
        { "min-ticks", 0, 0, G_OPTION_ARG_INT, &opt_min_ticks,
          "fewer ticks when a size would exceed --tick-budget, never fewer than this (5)", "N" },
        { "tick-budget", 0, 0, G_OPTION_ARG_DOUBLE, &opt_tick_budget_sec,
          "seconds of measured ticks per size, roughly (60)", "S" },
        { "apply", 0, 0, G_OPTION_ARG_NONE, &opt_apply,
          "let the manager set balloon targets (dry_run = false); the default is a dry run", NULL },
        { "no-start", 0, 0, G_OPTION_ARG_NONE, &opt_no_start,
          "never start a libvirtd; skip the RPC part instead", NULL },
        { "policy-only", 0, 0, G_OPTION_ARG_NONE, &opt_policy_only, "the policy part only", NULL },
        { "rpc-only", 0, 0, G_OPTION_ARG_NONE, &opt_rpc_only,
          "the libvirt parts only (tick-local, tick-rpc)", NULL },
        {}
};

/* ---------------------------------------------------------------------------------------- */
/* Time, samples and the table */

static uint64_t now_nsec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * NSEC_PER_SEC + (uint64_t) ts.tv_nsec;
}

typedef struct Summary {
        double min, median, max;
} Summary;

static int compare_double(const void *a, const void *b)
{
        double x = *(const double *) a, y = *(const double *) b;

        return x < y ? -1 : x > y ? 1 : 0;
}

static Summary summarize(GArray *samples)
{
        Summary s = {};
        double *v = (double *) (void *) samples->data;
        guint n = samples->len;

        if (n == 0)
                return s;
        qsort(v, n, sizeof(double), compare_double);
        s.min = v[0];
        s.max = v[n - 1];
        s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
        return s;
}

/* Three significant digits and a unit: "812 ns", "4.07 us", "12.3 ms", "1.20 s". */
static const char *format_nsec(char *buf, size_t size, double ns)
{
        static const struct {
                double scale;
                const char *unit;
        } units[] = { { 1, "ns" }, { 1e3, "us" }, { 1e6, "ms" }, { 1e9, "s" } };
        size_t u = 0;

        while (u + 1 < G_N_ELEMENTS(units) && ns >= units[u + 1].scale * 0.9995)
                u++;
        double v = ns / units[u].scale;
        int decimals = v >= 99.95 ? 0 : v >= 9.995 ? 1 : 2;
        if (u == 0)
                decimals = v >= 99.95 ? 0 : 1;
        snprintf(buf, size, "%.*f %s", decimals, v, units[u].unit);
        return buf;
}

typedef struct Row {
        char part[20];
        unsigned guests;
        char runs[24];
        Summary t;        /* ns */
        double per_guest; /* ns, median / guests counted */
        char calls[40];
        char note[160];
} Row;

static GArray *rows; /* Row */

static void add_row(const Row *r)
{
        g_array_append_val(rows, *r);
}

static void print_table(void)
{
        char a[24], b[24], c[24], d[24];

        printf("\n%-15s %6s %14s %10s %10s %10s %10s  %-18s %s\n", "part", "guests", "runs", "min", "median",
               "max", "per-guest", "calls/tick", "notes");
        for (guint i = 0; i < rows->len; i++) {
                const Row *r = &g_array_index(rows, Row, i);

                printf("%-15s %6u %14s %10s %10s %10s %10s  %-18s %s\n", r->part, r->guests, r->runs,
                       format_nsec(a, sizeof(a), r->t.min), format_nsec(b, sizeof(b), r->t.median),
                       format_nsec(c, sizeof(c), r->t.max), format_nsec(d, sizeof(d), r->per_guest),
                       r->calls[0] ? r->calls : "-", r->note);
        }
}

static unsigned *parse_sizes(const char *text, size_t *ret_n)
{
        g_auto(GStrv) parts = g_strsplit(text, ",", -1);
        g_autofree unsigned *sizes = g_new0(unsigned, g_strv_length(parts) + 1);
        size_t n = 0;

        for (size_t i = 0; parts[i]; i++) {
                guint64 v;

                if (!g_ascii_string_to_unsigned(g_strstrip(parts[i]), 10, 1, 100000, &v, NULL))
                        return NULL;
                sizes[n++] = (unsigned) v;
        }
        *ret_n = n;
        return n > 0 ? g_steal_pointer(&sizes) : NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Part 1: the policy alone */

/*
 * A reproducible mix, one guest in ten of each kind. Figures vary within each kind so that no
 * two guests ask for the same amount (the crunch's water-filling then takes several passes).
 */
static McGuest *make_guests(unsigned n)
{
        McGuest *g = g_new0(McGuest, n);
        GRand *rand = g_rand_new_with_seed(0x6d656d63);

        for (unsigned i = 0; i < n; i++) {
                McGuest *x = &g[i];
                uint64_t max = GIB(g_rand_int_range(rand, 2, 9));

                *x = (McGuest){
                        .name = (char *) "synthetic",
                        .status = MC_GUEST_MANAGED,
                        .max_kib = max,
                        .actual_kib = MIB(g_rand_int_range(rand, 1024, (gint32) (max / 1024))),
                        .weight = (unsigned) g_rand_int_range(rand, 50, 201),
                        .has_prev = true,
                };
                switch (i % 10) {
                case 0:
                case 1:
                case 2: /* idle: plenty unused, gives some back */
                        x->unused_kib =
                                MIB(g_rand_int_range(rand, 300, (gint32) (x->actual_kib / 1024 / 2)));
                        x->prev_unused_kib = x->unused_kib;
                        break;
                case 3:
                case 4: /* needy: under T and falling */
                        x->unused_kib = MIB(g_rand_int_range(rand, 5, 95));
                        x->prev_unused_kib = x->unused_kib + MIB(g_rand_int_range(rand, 5, 60));
                        break;
                case 5: /* needy but already at its max: nothing to give it */
                        x->actual_kib = x->max_kib;
                        x->unused_kib = MIB(g_rand_int_range(rand, 10, 90));
                        x->prev_unused_kib = x->unused_kib + MIB(20);
                        break;
                case 6: /* steady between T and 2T: left alone, claimed from in a crunch */
                        x->unused_kib = MIB(g_rand_int_range(rand, 110, 195));
                        x->prev_unused_kib = x->unused_kib;
                        break;
                case 7: /* sits under T without falling, no grant in flight: needy */
                        x->unused_kib = MIB(g_rand_int_range(rand, 20, 95));
                        x->prev_unused_kib = x->unused_kib;
                        break;
                case 8: /* a grant still in flight */
                        x->unused_kib = MIB(g_rand_int_range(rand, 20, 95));
                        x->prev_unused_kib = x->unused_kib;
                        x->last_target_kib = MIN(x->actual_kib + MIB(g_rand_int_range(rand, 50, 150)), max);
                        break;
                default: /* below its floor, or not managed at all */
                        switch ((i / 10) % 4) {
                        case 0:
                                x->actual_kib = MIB(g_rand_int_range(rand, 128, 250));
                                x->unused_kib = MIB(40);
                                x->prev_unused_kib = x->unused_kib;
                                break;
                        case 1:
                                x->status = MC_GUEST_STALE;
                                break;
                        case 2:
                                x->status = MC_GUEST_NO_BALLOON;
                                break;
                        default:
                                x->status = MC_GUEST_EXCLUDED;
                                break;
                        }
                        if (x->status != MC_GUEST_MANAGED)
                                x->unused_kib = MIB(g_rand_int_range(rand, 50, 500));
                        break;
                }
        }
        g_rand_free(rand);
        return g;
}

static volatile ssize_t policy_sink;

static ssize_t policy_run(const McPolicySettings *s, uint64_t host_free, const McGuest *const *guests, unsigned n,
                          McDecision *decisions, McPolicySummary *sum)
{
        McPolicyInput in = { .host_free_kib = host_free, .now_mono_usec = 0, .interval_usec = 1000000 };

        return mc_policy_run(s, &in, guests, n, decisions, NULL, sum);
}

static void bench_policy_one(unsigned n, bool crunch, McPolicyKind kind)
{
        McPolicySettings settings = mc_policy_defaults, *s = &settings;
        g_autofree McGuest *guests = make_guests(n);
        g_autofree const McGuest **ptrs = g_new0(const McGuest *, n);
        g_autofree McDecision *decisions = g_new0(McDecision, n);
        g_autoptr(GArray) samples = g_array_new(FALSE, FALSE, sizeof(double));
        McPolicySummary sum = {};
        /* Roomy: the host covers every need. Short: 30 MiB per guest above H, about a third of the
         * needs, so the water-filling satisfies the small needs first and shares out the rest. */
        uint64_t host_free = crunch ? s->host_threshold_kib + (uint64_t) n * MIB(30) : GIB(1024);
        ssize_t r;

        settings.kind = kind;
        for (unsigned i = 0; i < n; i++)
                ptrs[i] = &guests[i];
        r = policy_run(s, host_free, ptrs, n, decisions, &sum);
        if (r < 0) {
                fprintf(stderr, "mc_policy_run failed: %s\n", g_strerror((int) -r));
                exit(EXIT_FAILURE);
        }
        ssize_t n_decisions = r;
        McPolicySummary first = sum;

        /* Calibrate, warm: how many runs make one sample. */
        uint64_t t0 = now_nsec(), calibration_runs = 0;
        while (calibration_runs < 1000 && now_nsec() - t0 < NSEC_PER_SEC / 1000) {
                policy_sink = policy_run(s, host_free, ptrs, n, decisions, &sum);
                calibration_runs++;
        }
        uint64_t one = MAX((now_nsec() - t0) / calibration_runs, 1);
        unsigned batch = (unsigned) MAX(POLICY_BATCH_NSEC / one, 1);

        uint64_t start = now_nsec(), runs = 0;
        while ((runs < (uint64_t) opt_policy_min_runs ||
                now_nsec() - start < (uint64_t) (opt_policy_min_sec * (double) NSEC_PER_SEC)) &&
               samples->len < POLICY_MAX_SAMPLES) {
                t0 = now_nsec();
                for (unsigned k = 0; k < batch; k++)
                        policy_sink = policy_run(s, host_free, ptrs, n, decisions, &sum);
                double per_run = (double) (now_nsec() - t0) / batch;
                g_array_append_val(samples, per_run);
                runs += batch;
        }

        char avail[32];
        snprintf(avail, sizeof(avail), "%" PRIu64 " MiB", first.host_available_kib / 1024);
        Row row = { .guests = n };
        snprintf(row.part, sizeof(row.part), "%s%s", mc_policy_kind_to_string(kind), crunch ? "-crunch" : "");
        if (batch > 1)
                snprintf(row.runs, sizeof(row.runs), "%ux%u", samples->len, batch);
        else
                snprintf(row.runs, sizeof(row.runs), "%" PRIu64, runs);
        row.t = summarize(samples);
        row.per_guest = row.t.median / n;
        unsigned managed = 0;
        for (unsigned i = 0; i < n; i++)
                managed += guests[i].status == MC_GUEST_MANAGED;
        snprintf(row.note, sizeof(row.note),
                 "%u managed, %u needy, decisions %zd, crunch %s (need %" PRIu64 " MiB, host gives %s)",
                 managed, first.n_needy, n_decisions, first.crunch ? "yes" : "no",
                 first.need_total_kib / 1024, crunch ? avail : "all");
        add_row(&row);
}

static void bench_policy(const unsigned *sizes, size_t n_sizes)
{
        printf("# policy: mc_policy_run() with the default settings, guests from a fixed seed; a sample\n"
               "#   is a batch of runs timed together (runs: samples x runs per sample), min/median/max\n"
               "#   are per run; per-guest = median / guests\n");
        for (size_t i = 0; i < n_sizes; i++) {
                for (int k = 0; k < _MC_POLICY_MAX; k++) {
                        bench_policy_one(sizes[i], false, (McPolicyKind) k);
                        bench_policy_one(sizes[i], true, (McPolicyKind) k);
                }
        }
}

/* ---------------------------------------------------------------------------------------- */
/* Part 2: a whole tick through libvirtd */

static pid_t libvirtd_child;
static char *libvirtd_dir; /* its output, shown if it fails, removed at the end */
static char *libvirtd_log;

static void drain_events(sd_event *e)
{
        /* Lifecycle events, keepalives and deferred frees; bounded, as some sources recur. */
        for (int i = 0; i < 1000; i++)
                if (sd_event_run(e, 0) <= 0)
                        break;
}

static const char *last_error(void)
{
        const char *msg = virGetLastErrorMessage();

        return msg ? msg : "unknown libvirt error";
}

/* Failures are reported by the bench itself, once, where they matter. */
static void silence_libvirt(void *userdata, virErrorPtr error)
{
}

static virConnectPtr try_connect(const char *uri)
{
        virConnectPtr conn = virConnectOpen(uri);

        if (!conn)
                virResetLastError();
        return conn;
}

static void print_libvirtd_log(void)
{
        g_autofree char *log = NULL;

        if (libvirtd_log && g_file_get_contents(libvirtd_log, &log, NULL, NULL))
                printf("# libvirtd's output:\n%s", log);
}

static void remove_libvirtd_log(void)
{
        if (libvirtd_log)
                (void) unlink(libvirtd_log);
        if (libvirtd_dir)
                (void) rmdir(libvirtd_dir);
        g_clear_pointer(&libvirtd_log, g_free);
        g_clear_pointer(&libvirtd_dir, g_free);
}

static void child_setup(gpointer userdata)
{
        /* If the bench dies, however it dies, its libvirtd goes with it. */
        (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
}

/* Starts libvirtd in the foreground as our child and waits until uri answers. */
static virConnectPtr start_libvirtd(const char *uri)
{
        g_autofree char *path = g_find_program_in_path("libvirtd");
        g_autoptr(GError) error = NULL;
        int fd;

        if (!path && g_file_test("/usr/sbin/libvirtd", G_FILE_TEST_IS_EXECUTABLE))
                path = g_strdup("/usr/sbin/libvirtd");
        if (!path) {
                printf("# libvirtd: not installed (Debian: libvirt-daemon); skipping the RPC part\n");
                return NULL;
        }
        if (geteuid() != 0) {
                printf("# libvirtd: none answers at %s and starting the system one needs root; "
                       "skipping the RPC part\n",
                       uri);
                return NULL;
        }
        if (g_mkdir_with_parents("/var/log/libvirt", 0755) < 0) {
                printf("# libvirtd: cannot create /var/log/libvirt: %s; skipping the RPC part\n",
                       g_strerror(errno));
                return NULL;
        }
        libvirtd_dir = g_dir_make_tmp("memcoord-bench-XXXXXX", &error);
        if (!libvirtd_dir) {
                printf("# libvirtd: %s; skipping the RPC part\n", error->message);
                return NULL;
        }
        libvirtd_log = g_build_filename(libvirtd_dir, "libvirtd.log", NULL);
        fd = open(libvirtd_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                printf("# libvirtd: cannot create %s: %s; skipping the RPC part\n", libvirtd_log,
                       g_strerror(errno));
                remove_libvirtd_log();
                return NULL;
        }

        const char *argv[] = { path, NULL };
        uint64_t t0 = now_nsec();
        GPid pid;
        gboolean ok = g_spawn_async_with_fds(NULL, (char **) argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
                                             child_setup, NULL, &pid, -1, fd, fd, &error);
        close(fd);
        if (!ok) {
                printf("# libvirtd: failed to start %s: %s; skipping the RPC part\n", path, error->message);
                remove_libvirtd_log();
                return NULL;
        }
        libvirtd_child = pid;

        while (now_nsec() - t0 < LIBVIRTD_START_TIMEOUT_SEC * NSEC_PER_SEC) {
                int status;

                if (waitpid(pid, &status, WNOHANG) == pid) {
                        libvirtd_child = 0;
                        printf("# libvirtd: the one started by the bench %s %d before answering\n",
                               WIFEXITED(status) ? "exited with status" : "was killed by signal",
                               WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
                        print_libvirtd_log();
                        printf("# (on this host, `tests/guest/libvirt-host.sh start` prepares what libvirtd "
                               "needs); skipping the RPC part\n");
                        remove_libvirtd_log();
                        return NULL;
                }
                virConnectPtr conn = try_connect(uri);
                if (conn) {
                        printf("# libvirtd: none was running; started %s (pid %d) for this run,\n"
                               "#   ready in %.2f s; stopped at the end (whatever else connects to it\n"
                               "#   meanwhile loses it then)\n",
                               path, (int) pid, (double) (now_nsec() - t0) / NSEC_PER_SEC);
                        return conn;
                }
                g_usleep(100 * 1000);
        }
        printf("# libvirtd: started (pid %d) but %s did not answer within %d s; skipping the RPC part\n",
               (int) pid, uri, LIBVIRTD_START_TIMEOUT_SEC);
        print_libvirtd_log();
        return NULL;
}

static void stop_libvirtd(void)
{
        pid_t pid = libvirtd_child;
        int status;

        if (pid <= 0) {
                remove_libvirtd_log();
                return;
        }
        libvirtd_child = 0;
        uint64_t t0 = now_nsec();
        (void) kill(pid, SIGTERM);
        while (now_nsec() - t0 < LIBVIRTD_STOP_TIMEOUT_SEC * NSEC_PER_SEC) {
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        printf("# libvirtd: stopped the one the bench started (pid %d) in %.2f s\n",
                               (int) pid, (double) (now_nsec() - t0) / NSEC_PER_SEC);
                        remove_libvirtd_log();
                        return;
                }
                g_usleep(50 * 1000);
        }
        printf("# libvirtd: pid %d ignored SIGTERM for %d s: SIGKILL\n", (int) pid,
               LIBVIRTD_STOP_TIMEOUT_SEC);
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, &status, 0);
        remove_libvirtd_log();
}

static int running_libvirtd_pid(void)
{
        g_autofree char *text = NULL;

        if (!g_file_get_contents("/run/libvirtd.pid", &text, NULL, NULL))
                return 0;
        return atoi(text);
}

static void format_version(char *buf, size_t size, unsigned long v)
{
        snprintf(buf, size, "%lu.%lu.%lu", v / 1000000, (v / 1000) % 1000, v % 1000);
}

typedef struct TickStats {
        unsigned managed, changed;
} TickStats;

static void on_tick_completed(void *userdata, uint64_t tick, uint64_t host_free_kib, unsigned managed,
                              unsigned changed)
{
        TickStats *t = userdata;

        t->managed = managed;
        t->changed = changed;
}

static unsigned total_calls(const McCallCounters *c)
{
        return c->bulk_calls + c->per_domain_calls + c->other_calls;
}

static void format_calls(char *buf, size_t size, const McCallCounters *c)
{
        snprintf(buf, size, "%u = %u+%u+%u", total_calls(c), c->bulk_calls, c->per_domain_calls,
                 c->other_calls);
}

static bool same_calls(const McCallCounters *a, const McCallCounters *b)
{
        return a->bulk_calls == b->bulk_calls && a->per_domain_calls == b->per_domain_calls &&
               a->other_calls == b->other_calls;
}

static void destroy_domains(virDomainPtr *doms, unsigned n)
{
        for (unsigned i = 0; i < n; i++) {
                if (!doms[i])
                        continue;
                if (virDomainDestroy(doms[i]) < 0) {
                        fprintf(stderr, "bench: destroying %s: %s\n", virDomainGetName(doms[i]),
                                last_error());
                        virResetLastError();
                }
                virDomainFree(doms[i]);
                doms[i] = NULL;
        }
}

typedef struct SetupTimes {
        const char *part;
        unsigned guests, seen;
        double create, connect, first_tick, destroy;
        McCallCounters first_calls;
} SetupTimes;

static GArray *setups; /* SetupTimes */

/*
 * One bulk stats call against a loop of per-guest calls, on the same guests and the bench's own
 * connection. Rounds alternate with the manager's ticks, so that a burst of load elsewhere on the
 * machine hits all three rows alike.
 */
typedef struct StatsBench {
        virDomainPtr *all; /* every running guest, as the bulk call sees them */
        int n_all;
        int n_records, records_with_balloon;
        GArray *bulk, *loop; /* double, ns */
} StatsBench;

static void stats_bench_done(StatsBench *b)
{
        for (int i = 0; i < b->n_all; i++)
                virDomainFree(b->all[i]);
        free(b->all);
        if (b->bulk)
                g_array_unref(b->bulk);
        if (b->loop)
                g_array_unref(b->loop);
        *b = (StatsBench){};
}

static int stats_bench_round(StatsBench *b, virConnectPtr conn, bool keep)
{
        virDomainStatsRecordPtr *records = NULL;
        virDomainMemoryStatStruct st[VIR_DOMAIN_MEMORY_STAT_NR];

        uint64_t t0 = now_nsec();
        int k = virConnectGetAllDomainStats(conn, VIR_DOMAIN_STATS_BALLOON, &records,
                                            VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE);
        double dt = (double) (now_nsec() - t0);
        if (k < 0) {
                fprintf(stderr, "bench: bulk stats: %s\n", last_error());
                return -EIO;
        }
        b->n_records = k;
        b->records_with_balloon = 0;
        for (int i = 0; i < k; i++)
                for (int p = 0; p < records[i]->nparams; p++)
                        if (g_str_equal(records[i]->params[p].field, "balloon.unused")) {
                                b->records_with_balloon++;
                                break;
                        }
        virDomainStatsRecordListFree(records);
        if (keep)
                g_array_append_val(b->bulk, dt);

        t0 = now_nsec();
        for (int i = 0; i < b->n_all; i++)
                if (virDomainMemoryStats(b->all[i], st, VIR_DOMAIN_MEMORY_STAT_NR, 0) < 0) {
                        fprintf(stderr, "bench: memory stats: %s\n", last_error());
                        return -EIO;
                }
        dt = (double) (now_nsec() - t0);
        if (keep)
                g_array_append_val(b->loop, dt);
        return 0;
}

/* Lists the guests and makes one unkept round, to warm up. */
static int stats_bench_init(StatsBench *b, virConnectPtr conn)
{
        *b = (StatsBench){
                .bulk = g_array_new(FALSE, FALSE, sizeof(double)),
                .loop = g_array_new(FALSE, FALSE, sizeof(double)),
        };
        b->n_all = virConnectListAllDomains(conn, &b->all, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (b->n_all < 0) {
                b->n_all = 0;
                fprintf(stderr, "bench: listing domains: %s\n", last_error());
                return -EIO;
        }
        return stats_bench_round(b, conn, false);
}

static void stats_bench_rows(StatsBench *b, unsigned n)
{
        Row row = { .guests = n };

        g_strlcpy(row.part, "bulk-only", sizeof(row.part));
        snprintf(row.runs, sizeof(row.runs), "%u", b->bulk->len);
        row.t = summarize(b->bulk);
        row.per_guest = row.t.median / MAX(b->n_records, 1);
        g_strlcpy(row.calls, "1", sizeof(row.calls));
        snprintf(row.note, sizeof(row.note),
                 "GetAllDomainStats(BALLOON): %d records, %d with balloon fields", b->n_records,
                 b->records_with_balloon);
        add_row(&row);

        row = (Row){ .guests = n };
        g_strlcpy(row.part, "per-guest-loop", sizeof(row.part));
        snprintf(row.runs, sizeof(row.runs), "%u", b->loop->len);
        row.t = summarize(b->loop);
        row.per_guest = row.t.median / MAX(b->n_all, 1);
        snprintf(row.calls, sizeof(row.calls), "%d", b->n_all);
        snprintf(row.note, sizeof(row.note), "virDomainMemoryStats x %d", b->n_all);
        add_row(&row);
}

/*
 * One size of a whole-tick part: create the guests through conn, tick a manager on uri, destroy
 * them. With rpc, each tick is followed by a round of the bulk call against the per-guest loop.
 */
static int bench_tick_one(sd_event *e, virConnectPtr conn, const char *uri, const char *part, bool rpc,
                          unsigned n)
{
        g_autofree virDomainPtr *doms = g_new0(virDomainPtr, n);
        g_autoptr(GArray) times = g_array_new(FALSE, FALSE, sizeof(double));
        SetupTimes setup = { .part = part, .guests = n };
        McCallCounters calls = {}, calls_max = {};
        bool calls_vary = false;
        TickStats ts = {};
        StatsBench sb = {};
        McManager *m = NULL;
        int r = -EIO;

        printf("# %s %u: creating %u transient guests ...\n", part, n, n);
        fflush(stdout);
        uint64_t t0 = now_nsec();
        for (unsigned i = 0; i < n; i++) {
                g_autofree char *xml = g_strdup_printf("<domain type='test'>"
                                                       "<name>" DOMAIN_PREFIX "%u</name>"
                                                       "<memory unit='KiB'>1048576</memory>"
                                                       "<currentMemory unit='KiB'>524288</currentMemory>"
                                                       "<vcpu>1</vcpu>"
                                                       "<os><type>hvm</type></os>"
                                                       "<devices><memballoon model='virtio'/></devices>"
                                                       "</domain>",
                                                       i + 1);

                doms[i] = virDomainCreateXML(conn, xml, 0);
                if (!doms[i]) {
                        fprintf(stderr, "bench: creating %s%u: %s\n", DOMAIN_PREFIX, i + 1, last_error());
                        goto out;
                }
        }
        setup.create = (double) (now_nsec() - t0);

        /* The daemon's own path: defaults, the URI, no config or state file, no bus. */
        McConfig *config = mc_config_new();
        g_free(config->uri);
        config->uri = g_strdup(uri);
        config->dry_run = !opt_apply;
        r = mc_manager_new(e, config, NULL, NULL, &m);
        if (r < 0) {
                fprintf(stderr, "bench: mc_manager_new: %s\n", g_strerror(-r));
                goto out;
        }
        mc_manager_set_listener(m, &(McManagerListener){ .tick_completed = on_tick_completed }, &ts);
        t0 = now_nsec();
        r = mc_manager_start(m);
        setup.connect = (double) (now_nsec() - t0);
        if (r < 0 || mc_manager_state(m) == MC_STATE_DISCONNECTED) {
                fprintf(stderr, "bench: the manager could not connect to %s: %s\n", uri,
                        mc_hypervisor_error(m->hypervisor));
                r = -ENOTCONN;
                goto out;
        }
        /* The bench drives the ticks; the manager's own timer would add untimed ones. */
        (void) sd_event_source_set_enabled(m->tick_source, SD_EVENT_OFF);
        drain_events(e);

        /* Warm-up: the first tick learns every guest (its XML, its max memory). */
        double last_warm = 0;
        for (int w = 0; w < MAX(opt_warmup, 1); w++) {
                t0 = now_nsec();
                r = mc_manager_tick(m);
                last_warm = (double) (now_nsec() - t0);
                if (r < 0) {
                        fprintf(stderr, "bench: warm-up tick: %s (%s)\n", g_strerror(-r),
                                mc_hypervisor_error(m->hypervisor));
                        goto out;
                }
                if (w == 0) {
                        setup.first_tick = last_warm;
                        setup.first_calls = *mc_hypervisor_calls(m->hypervisor);
                        setup.seen = g_hash_table_size(m->guests);
                }
                drain_events(e);
        }

        if (rpc) {
                r = stats_bench_init(&sb, conn);
                if (r < 0)
                        goto out;
        }

        int ticks = opt_ticks;
        if (last_warm * ticks > opt_tick_budget_sec * NSEC_PER_SEC)
                ticks = MAX((int) (opt_tick_budget_sec * NSEC_PER_SEC / last_warm), opt_min_ticks);
        for (int k = 0; k < ticks; k++) {
                t0 = now_nsec();
                r = mc_manager_tick(m);
                double dt = (double) (now_nsec() - t0);
                if (r < 0) {
                        fprintf(stderr, "bench: tick: %s (%s)\n", g_strerror(-r),
                                mc_hypervisor_error(m->hypervisor));
                        goto out;
                }
                g_array_append_val(times, dt);
                if (k == 0) {
                        calls = (*mc_hypervisor_calls(m->hypervisor));
                        calls_max = calls;
                } else if (!same_calls(&calls, &(*mc_hypervisor_calls(m->hypervisor)))) {
                        calls_vary = true;
                        calls.bulk_calls = MIN(calls.bulk_calls, (*mc_hypervisor_calls(m->hypervisor)).bulk_calls);
                        calls.per_domain_calls = MIN(calls.per_domain_calls, (*mc_hypervisor_calls(m->hypervisor)).per_domain_calls);
                        calls.other_calls = MIN(calls.other_calls, (*mc_hypervisor_calls(m->hypervisor)).other_calls);
                        calls_max.bulk_calls = MAX(calls_max.bulk_calls, (*mc_hypervisor_calls(m->hypervisor)).bulk_calls);
                        calls_max.per_domain_calls =
                                MAX(calls_max.per_domain_calls, (*mc_hypervisor_calls(m->hypervisor)).per_domain_calls);
                        calls_max.other_calls = MAX(calls_max.other_calls, (*mc_hypervisor_calls(m->hypervisor)).other_calls);
                }
                drain_events(e);
                if (rpc) {
                        r = stats_bench_round(&sb, conn, true);
                        if (r < 0)
                                goto out;
                }
        }
        unsigned seen = g_hash_table_size(m->guests);
        m = mc_manager_free(m);
        drain_events(e);

        Row row = { .guests = n };
        g_strlcpy(row.part, part, sizeof(row.part));
        snprintf(row.runs, sizeof(row.runs), "%d", ticks);
        row.t = summarize(times);
        row.per_guest = row.t.median / MAX(seen, 1);
        format_calls(row.calls, sizeof(row.calls), &calls);
        if (calls_vary) {
                char hi[40];
                format_calls(hi, sizeof(hi), &calls_max);
                snprintf(row.note, sizeof(row.note),
                         "%u domains seen, %u managed, decisions %u (last tick); calls up to %s", seen,
                         ts.managed, ts.changed, hi);
        } else
                snprintf(row.note, sizeof(row.note), "%u domains seen, %u managed, decisions %u%s", seen,
                         ts.managed, ts.changed, opt_apply ? " (applied)" : " (dry run)");
        add_row(&row);

        if (rpc)
                stats_bench_rows(&sb, n);
        r = 0;

out:
        stats_bench_done(&sb);
        if (m) {
                m = mc_manager_free(m);
                drain_events(e);
        }
        t0 = now_nsec();
        destroy_domains(doms, n);
        setup.destroy = (double) (now_nsec() - t0);
        drain_events(e);
        g_array_append_val(setups, setup);
        return r;
}

/*
 * The same tick against libvirt's test driver in this process: no RPC, no libvirtd. What is left
 * is the manager's own work and the driver's, so tick-rpc minus tick-local is what the round
 * trips cost.
 */
static int bench_local(sd_event *e, const unsigned *sizes, size_t n_sizes)
{
        static const char uri[] = "test:///default";
        g_autoptr(virConnect) conn = try_connect(uri);
        int r = 0;

        if (!conn) {
                fprintf(stderr, "bench: cannot open %s\n", uri);
                return -EIO;
        }
        printf("# tick-local: %s in this process (its state is shared by the connections of this\n"
               "#   process); same guests, manager and ticks as tick-rpc below, without the round trips\n",
               uri);
        for (size_t i = 0; i < n_sizes && r >= 0; i++)
                r = bench_tick_one(e, conn, uri, "tick-local", false, sizes[i]);
        g_clear_pointer(&conn, virConnectClose);
        drain_events(e);
        return r;
}

static int bench_rpc(sd_event *e, const unsigned *sizes, size_t n_sizes)
{
        const char *uri = opt_uri ? opt_uri : DEFAULT_URI;
        g_autoptr(virConnect) conn = NULL;
        virDomainPtr *existing = NULL;
        unsigned long lib = 0, daemon_lib = 0;
        char v1[32], v2[32];
        int n_existing, r = 0;

        printf("# tick-rpc: %s\n", uri);
        conn = try_connect(uri);
        if (conn) {
                int pid = running_libvirtd_pid();
                if (geteuid() != 0)
                        printf("# libvirtd: the session daemon of uid %u\n"
                               "#   (libvirt starts one, with --timeout=120, when none runs)\n",
                               (unsigned) geteuid());
                else if (pid > 0)
                        printf("# libvirtd: already running (pid %d per /run/libvirtd.pid); used as it is\n",
                               pid);
                else
                        printf("# libvirtd: already answering at %s; used as it is\n", uri);
        } else if (opt_no_start) {
                printf("# libvirtd: nothing answers at %s and --no-start was given; skipping the RPC part\n",
                       uri);
                return 0;
        } else if (opt_uri && !g_str_equal(opt_uri, DEFAULT_URI)) {
                printf("# libvirtd: nothing answers at %s; the bench only starts one for %s; "
                       "skipping the RPC part\n",
                       uri, DEFAULT_URI);
                return 0;
        } else {
                conn = start_libvirtd(uri);
                if (!conn)
                        return 0;
        }

        (void) virGetVersion(&lib, NULL, NULL);
        (void) virConnectGetLibVersion(conn, &daemon_lib);
        format_version(v1, sizeof(v1), lib);
        format_version(v2, sizeof(v2), daemon_lib);
        printf("# libvirt: %s (library), %s (libvirtd), driver %s\n", v1, v2, virConnectGetType(conn));

        /* The test driver's state is shared: someone else's guests would be counted, and a
         * second bench at the same time would collide on the names. */
        n_existing = virConnectListAllDomains(conn, &existing, 0);
        if (n_existing < 0) {
                fprintf(stderr, "bench: listing domains: %s\n", last_error());
                return -EIO;
        }
        GString *names = g_string_new(NULL);
        bool clash = false;
        for (int i = 0; i < n_existing; i++) {
                const char *name = virDomainGetName(existing[i]);
                g_string_append_printf(names, "%s%s", i ? ", " : "", name);
                clash |= g_str_has_prefix(name, DOMAIN_PREFIX);
                virDomainFree(existing[i]);
        }
        free(existing);
        printf("# domains already there: %d (%s); the manager sees them too\n", n_existing, names->str);
        g_string_free(names, TRUE);
        if (clash) {
                fprintf(stderr, "bench: guests named %s* already exist at %s (another bench running?)\n",
                        DOMAIN_PREFIX, uri);
                return -EEXIST;
        }
        printf("# manager: mc_config_new() defaults, uri as above, dry_run = %s, no config or state file;\n"
               "#   connected by mc_manager_start(), its tick timer then disabled: the bench calls "
               "mc_manager_tick()\n"
               "#   (%d warm-up ticks, then up to %d measured, fewer when a size would take over %.0f s)\n"
               "# calls/tick: total = bulk + per-domain + other, from the manager's (*mc_hypervisor_calls(m->hypervisor))\n",
               opt_apply ? "false (targets are set)" : "true (no targets set)", MAX(opt_warmup, 1),
               opt_ticks, opt_tick_budget_sec);
        fflush(stdout);

        for (size_t i = 0; i < n_sizes && r >= 0; i++)
                r = bench_tick_one(e, conn, uri, "tick-rpc", true, sizes[i]);

        g_clear_pointer(&conn, virConnectClose);
        drain_events(e);
        return r;
}

/* ---------------------------------------------------------------------------------------- */

static void print_machine(void)
{
        g_autofree char *cpuinfo = NULL;
        g_autofree char *model = NULL;
        struct utsname u;

        (void) uname(&u);
        if (g_file_get_contents("/proc/cpuinfo", &cpuinfo, NULL, NULL)) {
                g_auto(GStrv) lines = g_strsplit(cpuinfo, "\n", -1);
                for (size_t i = 0; lines[i] && !model; i++)
                        if (g_str_has_prefix(lines[i], "model name")) {
                                const char *colon = strchr(lines[i], ':');
                                if (colon)
                                        model = g_strstrip(g_strdup(colon + 1));
                        }
        }
        g_autofree char *load = NULL;
        if (g_file_get_contents("/proc/loadavg", &load, NULL, NULL))
                g_strstrip(load);
        printf("# machine: nproc %ld, %s %s %s, %s; load average at start %s\n",
               sysconf(_SC_NPROCESSORS_ONLN), u.sysname, u.release, u.machine, model ? model : "unknown CPU",
               load ? load : "unknown");
#if defined(__SANITIZE_ADDRESS__)
        printf("# built with AddressSanitizer: the times are inflated; compare only with such a build\n");
#endif
}

int main(int argc, char *argv[])
{
        g_autoptr(GOptionContext) context = g_option_context_new("- time the policy and a whole tick");
        g_autoptr(GError) error = NULL;
        g_autofree unsigned *sizes = NULL;
        size_t n_sizes = 0;
        int r = 0;

        g_option_context_add_main_entries(context, option_entries, NULL);
        if (!g_option_context_parse(context, &argc, &argv, &error)) {
                fprintf(stderr, "bench-tick: %s\n", error->message);
                return 2;
        }
        sizes = parse_sizes(opt_sizes ? opt_sizes : "10,100,1000", &n_sizes);
        if (!sizes || opt_ticks < 1 || opt_min_ticks < 1 || opt_policy_min_runs < 1 ||
            opt_policy_min_sec < 0) {
                fprintf(stderr, "bench-tick: bad --sizes, --ticks, --min-ticks or --policy-* value\n");
                return 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        /* The manager logs every (dry-run) decision at info level: thousands of lines. */
        mc_log_set_max_level(LOG_WARNING);

        rows = g_array_new(FALSE, TRUE, sizeof(Row));
        setups = g_array_new(FALSE, TRUE, sizeof(SetupTimes));
        print_machine();

        if (!opt_rpc_only)
                bench_policy(sizes, n_sizes);

        if (!opt_policy_only) {
                sd_event *e = NULL;

                r = sd_event_new(&e);
                if (r < 0) {
                        fprintf(stderr, "bench-tick: sd_event_new: %s\n", g_strerror(-r));
                        return EXIT_FAILURE;
                }
                virSetErrorFunc(NULL, silence_libvirt);
                /* Before the first virConnectOpen, as in the daemon. */
                r = mc_libvirt_event_register(e);
                if (r < 0) {
                        fprintf(stderr, "bench-tick: mc_libvirt_event_register: %s\n", g_strerror(-r));
                        return EXIT_FAILURE;
                }
                r = bench_local(e, sizes, n_sizes);
                if (r >= 0)
                        r = bench_rpc(e, sizes, n_sizes);
                mc_libvirt_event_unregister();
                sd_event_unref(e);
                stop_libvirtd();
        }

        print_table();
        if (setups->len > 0) {
                char a[24], b[24], c[24], d[24];

                printf("\n%-10s %6s %6s %10s %10s %10s %10s  %s\n", "setup", "guests", "seen", "create",
                       "connect", "first-tick", "destroy", "first-tick calls");
                for (guint i = 0; i < setups->len; i++) {
                        const SetupTimes *s = &g_array_index(setups, SetupTimes, i);
                        char calls[40];

                        format_calls(calls, sizeof(calls), &s->first_calls);
                        printf("%-10s %6u %6u %10s %10s %10s %10s  %s\n", s->part, s->guests, s->seen,
                               format_nsec(a, sizeof(a), s->create), format_nsec(b, sizeof(b), s->connect),
                               format_nsec(c, sizeof(c), s->first_tick),
                               format_nsec(d, sizeof(d), s->destroy), calls);
                }
        }
        g_array_unref(rows);
        g_array_unref(setups);
        g_free(opt_uri);
        g_free(opt_sizes);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
