/*
 * memdemand - a deterministic memory workload for the tiny test guest.
 *
 * It holds a chosen amount of anonymous memory over time, following a
 * schedule, and reports what it holds once per second on stdout (which the
 * guest's /init points at the serial console).
 *
 * Where the schedule comes from:
 *   memdemand SCHEDULE         the first argument, if given (handy on a host);
 *   otherwise the `memdemand=SCHEDULE` parameter of /proc/cmdline.
 *   An absent or empty schedule means: idle forever.
 *   In the guest, `memdemand.settle=MIB` on the command line makes it wait
 *   until the balloon has brought MemTotal down to MIB before "ready".
 *
 * Grammar:
 *   SCHEDULE := STEP { "," STEP }
 *   STEP     := "idle"  [ ":" SECS ]        hold what is held, phase "idle"
 *             | "hold"  [ ":" SECS ]        hold what is held, phase "hold"
 *             | "ramp"  ":" SIZE ":" SECS   move linearly to SIZE over SECS
 *             | "to"    ":" SIZE ":" SECS   same as ramp (phase "to"); meant
 *                                           for going down as well as up
 *             | "jump"  ":" SIZE            move to SIZE at once
 *             | "free"                      release everything at once
 *             | "cache" ":" SIZE [ ":" SECS ]  read SIZE more MiB of the disk
 *                                           (/dev/vda, or $MEMDEMAND_DISK) into
 *                                           the page cache, evenly over SECS
 *                                           (without SECS: as fast as it can);
 *                                           anonymous memory stays as it is
 *             | "uncache"                   close the disk (the kernel drops a
 *                                           block device's cache on its last
 *                                           close)
 *   SIZE     := [ "+" | "-" ] DIGITS [ "M" | "G" ]
 *               MiB by default ("G" = GiB). A plain SIZE is the absolute
 *               amount to hold; "+N" / "-N" are relative to what the step
 *               starts from (the target of the previous step).
 *   SECS     := DIGITS [ "." DIGITS ]       seconds
 *   idle/hold without SECS last forever (and must be the last step).
 *
 *   The disk is opened by the first cache step and stays open until
 *   "uncache" or the end of the program: the page cache of a block device
 *   lives only while someone holds it open. Reads go on from where the last
 *   one stopped and wrap at the end of the device, so a SIZE larger than the
 *   guest's memory keeps the cache full and churning (least recently read
 *   pages evicted first). The SIZE of a cache step is always "more", never
 *   absolute; "+" and "-" are not accepted there.
 *
 *   Example: memdemand=idle:20,ramp:400:40,hold:30,free,idle:60
 *   waits 20 s, grows to 400 MiB over 40 s, holds 30 s, frees it all and
 *   waits 60 s.
 *
 * Timeline: steps are laid end to end on a fixed timeline that starts at
 * t=0 (the "memdemand: ready" line); jump and free take no time on it. When
 * touching memory is slower than the schedule (a big jump under TCG), the
 * program catches up as fast as it can, but later steps keep their start
 * times, so the guest's demand over time is the same on every run.
 *
 * Memory is held in 1 MiB anonymous mappings (MAP_POPULATE), every page of
 * which is written, so it is really resident; shrinking munmaps whole chunks.
 *
 * Console lines:
 *   memdemand: schedule <text>                 once, the parsed schedule
 *   memdemand: ready                           once, at t=0
 *   memdemand: step N <text> t=T               when step N starts
 *   memdemand t=T held_mib=M phase=P cache_mib=C  once per second; C is
 *                                              what cache steps read since
 *                                              the disk was opened
 *   memdemand: done                            when the schedule has ended;
 *                                              the program then exits, which
 *                                              releases what it still holds
 *   memdemand: error <text>                    bad schedule (exit status 2)
 *
 * When the program dies from a signal (the OOM killer's SIGKILL) the guest's
 * /init prints "memdemand: killed by signal N".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define CHUNK_BYTES (1024UL * 1024UL)
#define MAX_STEPS 256
#define MAX_MIB (1024L * 1024L) /* 1 TiB: a sanity cap on sizes */
#define TICK_NS 50000000L       /* 50 ms between adjustments */

enum kind { K_IDLE, K_HOLD, K_RAMP, K_TO, K_JUMP, K_FREE, K_CACHE, K_UNCACHE };

static const char *const kind_names[] = {
        [K_IDLE] = "idle", [K_HOLD] = "hold", [K_RAMP] = "ramp",   [K_TO] = "to",
        [K_JUMP] = "jump", [K_FREE] = "free", [K_CACHE] = "cache", [K_UNCACHE] = "uncache",
};

struct step {
        enum kind kind;
        long size_mib; /* as written (may be relative) */
        int relative;  /* size_mib is +/- relative */
        double secs;   /* duration; < 0 means forever */
        /* resolved by plan(): */
        double start;    /* start time on the timeline */
        long from_mib;   /* target at the start of the step */
        long to_mib;     /* target at the end of the step */
        long cache_from; /* cache steps: MiB read from the disk when it starts */
        long cache_to;   /* ... and when it ends */
};

static struct step steps[MAX_STEPS];
static int nsteps;

static void **chunks;
static long nchunks, chunk_cap;
static long page_size;

/* The disk that cache steps read (opened by the first one). */
static int disk_fd = -1;
static long disk_mib;      /* its size, whole MiB */
static long disk_read_mib; /* read since it was opened */
static long disk_missed;   /* MiB the schedule wanted while no disk could be read */
static char *disk_buf;

static double now_s(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void die_schedule(const char *what, const char *tok)
{
        printf("memdemand: error %s: '%s'\n", what, tok);
        fflush(stdout);
        exit(2);
}

static int parse_secs(const char *s, double *out)
{
        char *end;
        double v;

        if (!*s || !(*s >= '0' && *s <= '9'))
                return -EINVAL;
        errno = 0;
        v = strtod(s, &end);
        if (errno || *end || v < 0 || v > 1e7)
                return -EINVAL;
        *out = v;
        return 0;
}

static int parse_size(const char *s, long *out, int *relative)
{
        long sign = 1, mult = 1, v;
        char *end;

        *relative = 0;
        if (*s == '+' || *s == '-') {
                sign = *s == '-' ? -1 : 1;
                *relative = 1;
                s++;
        }
        if (!(*s >= '0' && *s <= '9'))
                return -EINVAL;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno)
                return -EINVAL;
        if (*end == 'M' || *end == 'm') {
                end++;
        } else if (*end == 'G' || *end == 'g') {
                mult = 1024;
                end++;
        }
        if (*end || v > MAX_MIB / mult)
                return -EINVAL;
        *out = sign * v * mult;
        return 0;
}

/* Split STEP at ':' into at most 3 fields; returns the field count. */
static int split_fields(char *tok, char *f[3])
{
        int n = 0;
        char *p = tok;

        f[n++] = p;
        while ((p = strchr(p, ':'))) {
                *p++ = '\0';
                if (n == 3)
                        return -1;
                f[n++] = p;
        }
        return n;
}

static void parse_schedule(char *sched)
{
        char *save = NULL, *tok;

        for (tok = strtok_r(sched, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                char orig[128], *f[3];
                struct step *st;
                int n;

                snprintf(orig, sizeof(orig), "%s", tok);
                if (nsteps == MAX_STEPS)
                        die_schedule("too many steps", orig);
                st = &steps[nsteps];
                memset(st, 0, sizeof(*st));
                n = split_fields(tok, f);
                if (n < 0)
                        die_schedule("too many fields", orig);

                if (!strcmp(f[0], "idle") || !strcmp(f[0], "hold")) {
                        st->kind = !strcmp(f[0], "idle") ? K_IDLE : K_HOLD;
                        st->secs = -1;
                        if (n == 3 || (n == 2 && parse_secs(f[1], &st->secs) < 0))
                                die_schedule("expected idle[:SECS] or hold[:SECS]", orig);
                } else if (!strcmp(f[0], "ramp") || !strcmp(f[0], "to")) {
                        st->kind = !strcmp(f[0], "ramp") ? K_RAMP : K_TO;
                        if (n != 3 || parse_size(f[1], &st->size_mib, &st->relative) < 0 ||
                            parse_secs(f[2], &st->secs) < 0)
                                die_schedule("expected ramp:SIZE:SECS or to:SIZE:SECS", orig);
                } else if (!strcmp(f[0], "jump")) {
                        st->kind = K_JUMP;
                        if (n != 2 || parse_size(f[1], &st->size_mib, &st->relative) < 0)
                                die_schedule("expected jump:SIZE", orig);
                } else if (!strcmp(f[0], "free")) {
                        st->kind = K_FREE;
                        if (n != 1)
                                die_schedule("expected free", orig);
                } else if (!strcmp(f[0], "cache")) {
                        st->kind = K_CACHE;
                        if (n < 2 || parse_size(f[1], &st->size_mib, &st->relative) < 0 || st->relative ||
                            (n == 3 && parse_secs(f[2], &st->secs) < 0))
                                die_schedule("expected cache:SIZE[:SECS]", orig);
                } else if (!strcmp(f[0], "uncache")) {
                        st->kind = K_UNCACHE;
                        if (n != 1)
                                die_schedule("expected uncache", orig);
                } else if (f[0][0] == '\0' && n == 1) {
                        continue; /* tolerate empty steps: "a,,b" or a trailing comma */
                } else {
                        die_schedule("unknown step", orig);
                }
                nsteps++;
        }
}

/* Resolve start times and targets; reject "forever" before the end. */
static void plan(void)
{
        double t = 0;
        long cur = 0, cached = 0;
        int i;

        for (i = 0; i < nsteps; i++) {
                struct step *st = &steps[i];

                if (i > 0 && steps[i - 1].secs < 0)
                        die_schedule("a step follows one that lasts forever", kind_names[st->kind]);
                st->start = t;
                st->from_mib = cur;
                st->cache_from = cached;
                switch (st->kind) {
                case K_IDLE:
                case K_HOLD:
                        st->to_mib = cur;
                        break;
                case K_RAMP:
                case K_TO:
                case K_JUMP:
                        st->to_mib = st->relative ? cur + st->size_mib : st->size_mib;
                        if (st->to_mib < 0)
                                st->to_mib = 0;
                        if (st->kind == K_JUMP)
                                st->secs = 0;
                        break;
                case K_FREE:
                        st->to_mib = 0;
                        st->secs = 0;
                        break;
                case K_CACHE:
                        st->to_mib = cur;
                        cached += st->size_mib;
                        break;
                case K_UNCACHE:
                        st->to_mib = cur;
                        st->secs = 0;
                        cached = 0;
                        break;
                }
                st->cache_to = cached;
                cur = st->to_mib;
                if (st->secs > 0)
                        t += st->secs;
        }
}

static void format_step(const struct step *st, char *buf, size_t len)
{
        switch (st->kind) {
        case K_IDLE:
        case K_HOLD:
                if (st->secs < 0)
                        snprintf(buf, len, "%s", kind_names[st->kind]);
                else
                        snprintf(buf, len, "%s:%g", kind_names[st->kind], st->secs);
                break;
        case K_RAMP:
        case K_TO:
                snprintf(buf, len, "%s:%ld:%g", kind_names[st->kind], st->to_mib, st->secs);
                break;
        case K_JUMP:
                snprintf(buf, len, "jump:%ld", st->to_mib);
                break;
        case K_FREE:
                snprintf(buf, len, "free");
                break;
        case K_CACHE:
                if (st->secs > 0)
                        snprintf(buf, len, "cache:%ld:%g", st->size_mib, st->secs);
                else
                        snprintf(buf, len, "cache:%ld", st->size_mib);
                break;
        case K_UNCACHE:
                snprintf(buf, len, "uncache");
                break;
        }
}

/* MiB the cache steps should have read by timeline time t. */
static long step_cache_target(const struct step *st, double t)
{
        double frac;

        if (st->kind != K_CACHE || st->secs <= 0)
                return st->cache_to;
        frac = (t - st->start) / st->secs;
        if (frac >= 1)
                return st->cache_to;
        if (frac <= 0)
                return st->cache_from;
        return st->cache_from + (long) ((double) (st->cache_to - st->cache_from) * frac);
}

static int disk_open(void)
{
        const char *path = getenv("MEMDEMAND_DISK");
        off_t end;

        if (!path || !*path)
                path = "/dev/vda";
        disk_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (disk_fd < 0)
                return -errno;
        end = lseek(disk_fd, 0, SEEK_END);
        disk_mib = end > 0 ? (long) (end / (off_t) CHUNK_BYTES) : 0;
        if (disk_mib == 0) {
                close(disk_fd);
                disk_fd = -1;
                return -ENOSPC;
        }
        if (!disk_buf && !(disk_buf = malloc(CHUNK_BYTES))) {
                close(disk_fd);
                disk_fd = -1;
                return -ENOMEM;
        }
        disk_read_mib = 0;
        return 0;
}

static void disk_close(void)
{
        if (disk_fd >= 0)
                close(disk_fd);
        disk_fd = -1;
        disk_read_mib = 0;
        disk_missed = 0;
}

/* Read the next MiB of the disk (wrapping at its end) into the page cache. */
static int cache_one(void)
{
        off_t off = (off_t) (disk_read_mib % disk_mib) * (off_t) CHUNK_BYTES;
        size_t got = 0;

        while (got < CHUNK_BYTES) {
                ssize_t n = pread(disk_fd, disk_buf + got, CHUNK_BYTES - got, off + (off_t) got);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        disk_read_mib++;
        return 0;
}

/* Target in MiB for step st at timeline time t (t >= st->start). */
static long step_target(const struct step *st, double t)
{
        double frac;

        if (st->kind != K_RAMP && st->kind != K_TO)
                return st->to_mib;
        if (st->secs <= 0)
                return st->to_mib;
        frac = (t - st->start) / st->secs;
        if (frac >= 1)
                return st->to_mib;
        if (frac <= 0)
                return st->from_mib;
        return st->from_mib + (long) ((double) (st->to_mib - st->from_mib) * frac);
}

static int grow_one(void)
{
        unsigned char *p;
        unsigned long off;

        if (nchunks == chunk_cap) {
                long ncap = chunk_cap ? chunk_cap * 2 : 1024;
                void **n = realloc(chunks, (size_t) ncap * sizeof(*chunks));

                if (!n)
                        return -ENOMEM;
                chunks = n;
                chunk_cap = ncap;
        }
        p = mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1,
                 0);
        if (p == MAP_FAILED)
                return -errno;
        /*
         * MAP_POPULATE faults the chunk in with one call (page faults are dear
         * under TCG); the write per page makes sure every page holds data.
         */
        for (off = 0; off < CHUNK_BYTES; off += (unsigned long) page_size)
                p[off] = (unsigned char) (0x5a ^ (off >> 12));
        chunks[nchunks++] = p;
        return 0;
}

static void shrink_one(void)
{
        if (nchunks == 0)
                return;
        munmap(chunks[--nchunks], CHUNK_BYTES);
}

/* The value of parameter KEY= of /proc/cmdline (a copy), or NULL. */
static char *cmdline_param(const char *key)
{
        char buf[4096], want[64];
        ssize_t n;
        char *p, *end;
        int fd;

        snprintf(want, sizeof(want), "%s=", key);
        fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return NULL;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return NULL;
        buf[n] = '\0';
        /* Find KEY= at the start of a parameter. */
        for (p = buf; (p = strstr(p, want)); p++) {
                if (p == buf || p[-1] == ' ' || p[-1] == '\t')
                        break;
        }
        if (!p)
                return NULL;
        p += strlen(want);
        if (*p == '"') {
                p++;
                end = strchr(p, '"');
        } else {
                end = p + strcspn(p, " \t\n");
        }
        if (end)
                *end = '\0';
        return strdup(p);
}

/* FIELD of /proc/meminfo (KiB) or /proc/vmstat (pages), -1 if absent. */
static long proc_field(const char *path, const char *field, char sep)
{
        char line[256];
        size_t len = strlen(field);
        long v = -1;
        FILE *f = fopen(path, "re");

        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                if (!strncmp(line, field, len) && line[len] == sep) {
                        v = strtol(line + len + 1, NULL, 10);
                        break;
                }
        }
        fclose(f);
        return v;
}

/*
 * memdemand.settle=MIB: wait (up to 10 minutes) until MemTotal is at most MIB before the
 * timeline starts. QEMU starts a guest at its max memory and the balloon inflates to the
 * current size only once the driver runs; on a busy host that takes tens of seconds, and a
 * schedule that had started meanwhile would be measured against a guest that was not there
 * yet. With autodeflate (memdemand.autodeflate=1) the driver leaves MemTotal alone, so the
 * pages the balloon holds (balloon_inflate - balloon_deflate in /proc/vmstat) are taken off.
 */
static void settle_balloon(void)
{
        char *v = cmdline_param("memdemand.settle"), *ad = cmdline_param("memdemand.autodeflate");
        double start = now_s(), said = -10;
        long mib = v ? strtol(v, NULL, 10) : 0, total;
        int deflate_on_oom = ad && !strcmp(ad, "1");
        struct timespec ts = { 0, 100000000L };

        free(v);
        free(ad);
        if (mib <= 0)
                return;
        for (;;) {
                total = proc_field("/proc/meminfo", "MemTotal", ':');
                if (deflate_on_oom) {
                        long in = proc_field("/proc/vmstat", "balloon_inflate", ' ');
                        long out = proc_field("/proc/vmstat", "balloon_deflate", ' ');

                        if (in < 0 || out < 0) {
                                printf("memdemand: no balloon counters in /proc/vmstat: not waiting\n");
                                break;
                        }
                        total -= (in - out) * (page_size / 1024);
                }
                if (total <= mib * 1024L || now_s() - start >= 600)
                        break;
                if (now_s() - said >= 5) {
                        printf("memdemand: waiting for the balloon: %ld MiB > %ld MiB\n", total / 1024, mib);
                        said = now_s();
                }
                nanosleep(&ts, NULL);
        }
        printf("memdemand: balloon settled in %.1f s (%ld MiB)\n", now_s() - start, total / 1024);
}

int main(int argc, char **argv)
{
        char *sched, text[64];
        double t0, next_report = 0, t = 0, last_fail = -10, last_disk_fail = -10;
        int cur_step = -1, i;

        setvbuf(stdout, NULL, _IOLBF, 0);
        page_size = sysconf(_SC_PAGESIZE);
        if (page_size <= 0)
                page_size = 4096;

        sched = argc > 1 ? strdup(argv[1]) : cmdline_param("memdemand");
        if (sched)
                parse_schedule(sched);
        plan();

        printf("memdemand: schedule");
        for (i = 0; i < nsteps; i++) {
                format_step(&steps[i], text, sizeof(text));
                printf("%s%s", i ? "," : " ", text);
        }
        printf("%s\n", nsteps ? "" : " (none: idle forever)");
        if (argc <= 1)
                settle_balloon();
        printf("memdemand: ready\n");

        t0 = now_s();
        for (;;) {
                const struct step *st;
                long target, cache_target;
                struct timespec ts = { 0, TICK_NS };

                t = now_s() - t0;
                /* Enter every step whose start has come (zero-length ones too). */
                while (cur_step + 1 < nsteps && steps[cur_step + 1].start <= t) {
                        cur_step++;
                        format_step(&steps[cur_step], text, sizeof(text));
                        printf("memdemand: step %d %s t=%.1f\n", cur_step, text, t);
                        if (steps[cur_step].kind == K_UNCACHE)
                                disk_close();
                        if (steps[cur_step].secs != 0)
                                break; /* a step with duration: stay in it */
                }
                st = cur_step >= 0 ? &steps[cur_step] : NULL;
                target = st ? step_target(st, t) : 0;
                cache_target = st ? step_cache_target(st, t) : 0;

                /* Move towards the target, reporting on time while we work. */
                while (nchunks != target) {
                        if (nchunks < target) {
                                int r = grow_one();

                                if (r < 0) {
                                        if (now_s() - last_fail >= 1) {
                                                printf("memdemand: mmap failed: %s\n", strerror(-r));
                                                last_fail = now_s();
                                        }
                                        nanosleep(&ts, NULL);
                                        break;
                                }
                        } else {
                                shrink_one();
                        }
                        if (now_s() - t0 >= next_report)
                                break;
                }

                /* Then the page cache, reporting on time as well. */
                if (disk_read_mib + disk_missed < cache_target && nchunks == target) {
                        int r = disk_fd >= 0 ? 0 : disk_open();

                        while (r == 0 && disk_read_mib + disk_missed < cache_target &&
                               now_s() - t0 < next_report)
                                r = cache_one();
                        if (r < 0) {
                                if (now_s() - last_disk_fail >= 1) {
                                        printf("memdemand: disk: %s\n", strerror(-r));
                                        last_disk_fail = now_s();
                                }
                                if (disk_fd < 0) /* no disk: skip what cannot be read, do not count it */
                                        disk_missed = cache_target - disk_read_mib;
                                nanosleep(&ts, NULL);
                        }
                }

                t = now_s() - t0;
                if (t >= next_report) {
                        printf("memdemand t=%ld held_mib=%ld phase=%s cache_mib=%ld\n", (long) t, nchunks,
                               st ? kind_names[st->kind] : "idle", disk_read_mib);
                        next_report = (double) ((long) t + 1);
                }

                if (nsteps == 0 || (st && st->secs < 0 && nchunks == target)) {
                        /* forever: just keep reporting */
                } else if (cur_step == nsteps - 1 && nchunks == target &&
                           disk_read_mib + disk_missed >= cache_target &&
                           t >= st->start + (st->secs > 0 ? st->secs : 0)) {
                        printf("memdemand: done\n");
                        return 0;
                }
                if (nchunks == target && disk_read_mib + disk_missed >= cache_target)
                        nanosleep(&ts, NULL);
        }
}
