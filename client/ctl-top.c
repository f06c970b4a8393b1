/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * top: a live view of the guests, redrawn after every tick. On a terminal it takes the whole
 * screen (alternate screen, raw keyboard, resized with the window through SIGWINCH) and gives
 * everything back on exit; otherwise it prints one plain snapshot per tick. ANSI escapes only:
 * no curses.
 */

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl-watch.h"
#include "ctl.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

#define TOP_EVENTS 3

#define ESC_ENTER "\033[?1049h\033[?25l\033[H\033[2J"
#define ESC_LEAVE "\033[?25h\033[?1049l"

typedef struct Top {
        sd_event *event;
        CtlWatch *watch;
        bool started; /* the first state was read and shown */
        bool tty;     /* full screen; else plain snapshots */
        bool json;    /* plain snapshots as JSON, one per line */
        int in_fd;    /* the keyboard in raw mode, or -1 */
        struct termios saved;
        bool screen; /* the alternate screen is on */
        unsigned width, height;

        char *error;              /* why the state cannot be shown, or NULL */
        char *events[TOP_EVENTS]; /* latest balloon changes, newest first */
        uint64_t frames;
} Top;

/* ---- text helpers ---- */

/* Appends s cut to width columns (padded with spaces if pad); control characters become '?', so
 * a guest name cannot move the cursor. Returns the columns used. */
static size_t append_fit(GString *out, const char *s, size_t width, bool pad)
{
        size_t cols = 0;

        for (const char *p = s; *p;) {
                gunichar c = g_utf8_get_char_validated(p, -1);
                size_t w;

                if (c == (gunichar) -1 || c == (gunichar) -2) {
                        /* Not UTF-8: show the byte as '?'. */
                        if (cols + 1 > width)
                                break;
                        g_string_append_c(out, '?');
                        cols++;
                        p++;
                        continue;
                }
                w = g_unichar_iswide(c) ? 2 : 1;
                if (cols + w > width)
                        break;
                if (c < 0x20 || c == 0x7f || (c >= 0x80 && c < 0xa0))
                        g_string_append_c(out, '?');
                else
                        g_string_append_unichar(out, c);
                cols += w;
                p = g_utf8_next_char(p);
        }
        if (pad)
                for (; cols < width; cols++)
                        g_string_append_c(out, ' ');
        return cols;
}

static void append_right(GString *out, const char *s, size_t width)
{
        size_t len = strlen(s);

        for (; len < width; len++)
                g_string_append_c(out, ' ');
        g_string_append(out, s);
}

static size_t text_width(const char *s)
{
        g_autoptr(GString) tmp = g_string_new(NULL);

        return append_fit(tmp, s, SIZE_MAX, false);
}

/* ---- composing a frame ---- */

static void compose_bar(GString *line, const DomainInfo *d, size_t bar_w)
{
        uint64_t scale = d->max ? d->max : d->maximum;
        size_t actual = 0, unused = 0;

        if (scale > 0) {
                actual = (size_t) MIN((double) bar_w,
                                      (double) d->actual * (double) bar_w / (double) scale + 0.5);
                /* Without statistics nothing is known to be unused: it is all held. */
                if (g_strcmp0(d->status, "no-balloon") != 0)
                        unused = (size_t) MIN((double) actual,
                                              (double) d->unused * (double) bar_w / (double) scale + 0.5);
        }
        g_string_append_c(line, '[');
        for (size_t i = 0; i < bar_w; i++)
                g_string_append_c(line, i < actual - unused ? '#' : i < actual ? '-' : scale ? '.' : ' ');
        g_string_append_c(line, ']');
}

/* One row of the guest table (or its header, when d is NULL): the columns status has too,
 * those marked for top, at top's widths; the first is as wide as first_w. */
static void compose_row(GString *line, const DomainInfo *d, size_t first_w, uint64_t now)
{
        bool first = true;

        for (size_t i = 0; i < ctl_n_domain_fields; i++) {
                const CtlField *f = &ctl_domain_fields[i];
                char buf[CTL_FIELD_MAX_STRLEN];
                const char *text;

                if (!(f->flags & CTL_COL_TOP))
                        continue;
                text = d ? ctl_field_text(f, d, buf, now) : f->header;
                if (first)
                        append_fit(line, text, first_w, true);
                else if (f->flags & CTL_COL_RIGHT)
                        append_right(line, text, f->width + 1);
                else {
                        g_string_append_c(line, ' ');
                        append_fit(line, text, f->width, true);
                }
                first = false;
        }
}

static size_t row_width(size_t first_w)
{
        size_t w = first_w;
        bool first = true;

        for (size_t i = 0; i < ctl_n_domain_fields; i++)
                if (ctl_domain_fields[i].flags & CTL_COL_TOP) {
                        w += first ? 0 : ctl_domain_fields[i].width + 1;
                        first = false;
                }
        return w;
}

/* The lines of one frame; width bounds the bar, height (0 = any) the number of lines. */
static GPtrArray *compose(const Top *t, size_t width, size_t height, bool footer)
{
        GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
        const ManagerInfo *m = ctl_watch_manager(t->watch);
        g_autofree const DomainInfo **domains = NULL;
        char a[MC_SIZE_MAX_STRLEN], b[MC_SIZE_MAX_STRLEN], c[MC_SIZE_MAX_STRLEN], d[MC_SIZE_MAX_STRLEN];
        char iv[CTL_TIME_MAX_STRLEN];
        uint64_t now = ctl_now_realtime();
        size_t name_w = 4, shown, n_top, n_domains;

        if (t->error) {
                /* What was shown before is no longer true: show only why. */
                g_ptr_array_add(lines, g_strdup_printf("memcoordd: %s", t->error));
                if (footer)
                        g_ptr_array_add(lines, g_strdup("q: quit"));
                return lines;
        }
        domains = ctl_watch_domains(t->watch, &n_domains);
        g_ptr_array_add(lines,
                        g_strdup_printf("memcoordd %s  policy %s  interval %s  tick %" G_GUINT64_FORMAT "%s",
                                        m->state, m->policy, ctl_format_interval(iv, m->interval_usec),
                                        m->tick_count, m->dry_run ? "  dry run" : ""));
        g_ptr_array_add(
                lines, g_strdup_printf("host total %s  free %s  threshold %s  budget %s  guest threshold %s",
                                       ctl_format_size(a, m->host_total), ctl_format_size(b, m->host_free),
                                       ctl_format_size(c, m->host_threshold),
                                       m->host_budget ? ctl_format_size(d, m->host_budget) : "none",
                                       ctl_format_size(iv, m->domain_threshold)));
        g_ptr_array_add(lines, g_strdup(""));

        for (size_t i = 0; i < n_domains; i++)
                name_w = MAX(name_w, text_width(domains[i]->name ? domains[i]->name : ""));
        name_w = MIN(name_w, MAX((size_t) 8, width / 4));

        /* the columns, two spaces; then the bar between brackets */
        size_t fixed = row_width(name_w) + 2;
        size_t bar_w = width >= fixed + 2 + 5 ? width - fixed - 2 : 0;

        GString *header = g_string_new(NULL);
        compose_row(header, NULL, name_w, now);
        if (bar_w > 0) {
                g_string_append(header, "  ");
                append_fit(header, "MEMORY (# used, - unused, . up to max)", bar_w, false);
        }
        g_ptr_array_add(lines, g_string_free(header, FALSE));
        n_top = lines->len;

        /* Room for the guests: what the screen leaves after the header and the footer. */
        shown = n_domains;
        if (height > 0) {
                size_t room = height > n_top + (footer ? 1 : 0) ? height - n_top - (footer ? 1 : 0) : 0;

                if (shown > room)
                        shown = room > 0 ? room - 1 : 0;
        }
        for (size_t i = 0; i < shown; i++) {
                GString *line = g_string_new(NULL);

                compose_row(line, domains[i], name_w, now);
                if (bar_w > 0) {
                        g_string_append(line, "  ");
                        compose_bar(line, domains[i], bar_w);
                }
                g_ptr_array_add(lines, g_string_free(line, FALSE));
        }
        if (shown < n_domains && (height == 0 || lines->len < height))
                g_ptr_array_add(lines, g_strdup_printf("... and %zu more", n_domains - shown));
        if (n_domains == 0)
                g_ptr_array_add(lines, g_strdup("(no guests)"));

        if (footer) {
                if (t->events[0])
                        g_ptr_array_add(lines, g_strdup_printf("q: quit   last change: %s", t->events[0]));
                else
                        g_ptr_array_add(lines, g_strdup("q: quit"));
        }
        return lines;
}

/* ---- output ---- */

static int write_all(const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t k = write(STDOUT_FILENO, buf, len);

                if (k < 0) {
                        if (errno == EINTR || errno == EAGAIN)
                                continue;
                        return -errno;
                }
                buf += k;
                len -= (size_t) k;
        }
        return 0;
}

static void update_size(Top *t)
{
        struct winsize ws = {};

        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) < 0 || ws.ws_col == 0 || ws.ws_row == 0) {
                ws.ws_col = 80;
                ws.ws_row = 24;
        }
        t->width = ws.ws_col;
        t->height = ws.ws_row;
}

static int draw_screen(Top *t)
{
        g_autoptr(GPtrArray) lines = compose(t, t->width, t->height, true);
        g_autoptr(GString) out = g_string_new("\033[H");

        for (guint i = 0; i < lines->len && i < t->height; i++) {
                const char *s = lines->pdata[i];

                if (i == 3) { /* the column header, in reverse video */
                        g_string_append(out, "\033[7m");
                        append_fit(out, s, t->width, true);
                        g_string_append(out, "\033[m");
                } else
                        append_fit(out, s, t->width, false);
                g_string_append(out, "\033[K");
                /* No newline after the last row: the screen must not scroll. */
                if (i + 1 < lines->len && i + 1 < t->height)
                        g_string_append(out, "\r\n");
        }
        g_string_append(out, "\033[J");
        return write_all(out->str, out->len);
}

static int print_snapshot(Top *t)
{
        if (t->json) {
                g_autoptr(JsonBuilder) b = json_builder_new();
                g_autofree const DomainInfo **domains = NULL;
                size_t n;

                domains = ctl_watch_domains(t->watch, &n);
                json_builder_begin_object(b);
                ctl_json_add_manager(b, ctl_watch_manager(t->watch));
                ctl_json_add_domains(b, domains, n);
                json_builder_end_object(b);
                return ctl_print_json(b, false);
        }

        g_autoptr(GPtrArray) lines = compose(t, t->width, 0, false);
        if (t->frames > 1)
                putchar('\n');
        for (guint i = 0; i < lines->len; i++)
                puts(lines->pdata[i]);
        return ctl_flush_stdout();
}

static int show(Top *t)
{
        int r = t->tty ? draw_screen(t) : print_snapshot(t);

        if (r < 0)
                return sd_event_exit(t->event, EXIT_FAILURE);
        return 0;
}

/* ---- the terminal ---- */

static void enter_screen(Top *t)
{
        if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t->saved) >= 0) {
                struct termios raw = t->saved;

                /* Keys one by one, unechoed; ^C arrives as a byte and quits like q. */
                raw.c_lflag &= ~(tcflag_t) (ICANON | ECHO | ISIG | IEXTEN);
                raw.c_iflag &= ~(tcflag_t) (IXON | ICRNL);
                raw.c_cc[VMIN] = 1;
                raw.c_cc[VTIME] = 0;
                if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) >= 0)
                        t->in_fd = STDIN_FILENO;
        }
        (void) write_all(ESC_ENTER, strlen(ESC_ENTER));
        t->screen = true;
}

static void leave_screen(Top *t)
{
        if (t->screen) {
                (void) write_all(ESC_LEAVE, strlen(ESC_LEAVE));
                t->screen = false;
        }
        if (t->in_fd >= 0) {
                (void) tcsetattr(t->in_fd, TCSANOW, &t->saved);
                t->in_fd = -1;
        }
}

/* ---- the daemon's state ---- */

static void next_frame(Top *t)
{
        t->frames++;
        if (show(t) < 0)
                return;
        if (ctl_args.iterations > 0 && t->frames >= ctl_args.iterations)
                (void) sd_event_exit(t->event, EXIT_SUCCESS);
}

static int on_input(sd_event_source *s, int fd, uint32_t revents, void *userdata);

static void on_ready(CtlWatch *w, void *userdata)
{
        Top *t = userdata;

        g_clear_pointer(&t->error, g_free);
        if (t->started) {
                (void) show(t);
                return;
        }
        t->started = true;
        if (t->tty) {
                enter_screen(t);
                if (t->in_fd >= 0) {
                        int r = sd_event_add_io(t->event, NULL, t->in_fd, EPOLLIN, on_input, t);

                        if (r < 0) {
                                leave_screen(t);
                                ctl_log_error("Failed to watch the keyboard: %s", strerror(-r));
                                (void) sd_event_exit(t->event, EXIT_FAILURE);
                                return;
                        }
                }
        }
        next_frame(t);
}

static void on_failed(CtlWatch *w, const char *what, const char *reason, void *userdata)
{
        Top *t = userdata;

        if (!t->started || !t->tty) {
                ctl_log_error("Failed to %s: %s", what, reason);
                (void) sd_event_exit(t->event, EXIT_FAILURE);
                return;
        }
        g_free(t->error);
        t->error = g_strdup(reason);
        (void) show(t);
}

static void on_refreshed(CtlWatch *w, void *userdata)
{
        Top *t = userdata;

        g_clear_pointer(&t->error, g_free);
        next_frame(t);
}

static void on_balloon(CtlWatch *w, const CtlBalloon *x, void *userdata)
{
        Top *t = userdata;
        char a[MC_SIZE_MAX_STRLEN], b[MC_SIZE_MAX_STRLEN], stamp[16] = "";
        time_t now = time(NULL);
        struct tm tm;

        if (localtime_r(&now, &tm))
                strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        g_free(t->events[TOP_EVENTS - 1]);
        memmove(t->events + 1, t->events, (TOP_EVENTS - 1) * sizeof(char *));
        t->events[0] = g_strdup_printf("%s %s %s -> %s (%s)", stamp, x->name, ctl_format_size(a, x->from),
                                       ctl_format_size(b, x->to), x->reason);
}

/* A setting or a guest changed between ticks: on the screen, at once. */
static void on_changed(Top *t)
{
        if (t->tty && t->started && !t->error)
                (void) show(t);
}

static void on_property(CtlWatch *w, const DomainInfo *d, const CtlField *f, void *userdata)
{
        on_changed(userdata);
}

static void on_domain(CtlWatch *w, const DomainInfo *d, void *userdata)
{
        on_changed(userdata);
}

static void on_daemon_stopped(CtlWatch *w, void *userdata)
{
        Top *t = userdata;

        if (!t->tty) {
                ctl_log_error("memcoordd stopped");
                (void) sd_event_exit(t->event, EXIT_FAILURE);
                return;
        }
        g_free(t->error);
        t->error = g_strdup("stopped; waiting for it to come back");
        (void) show(t);
}

static void on_disconnected(CtlWatch *w, const char *reason, void *userdata)
{
        Top *t = userdata;

        leave_screen(t);
        ctl_log_error("%s", reason);
        (void) sd_event_exit(t->event, EXIT_FAILURE);
}

static const CtlWatchCallbacks callbacks = {
        .ready = on_ready,
        .failed = on_failed,
        .daemon_stopped = on_daemon_stopped,
        .domain_added = on_domain,
        .domain_removed = on_domain,
        .property_changed = on_property,
        .refreshed = on_refreshed,
        .balloon = on_balloon,
        .disconnected = on_disconnected,
};

static int on_input(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Top *t = userdata;
        char buf[64];
        ssize_t k = read(fd, buf, sizeof(buf));

        if (k < 0 && (errno == EINTR || errno == EAGAIN))
                return 0;
        if (k <= 0) /* the terminal went away */
                return sd_event_exit(t->event, EXIT_SUCCESS);
        for (ssize_t i = 0; i < k; i++)
                if (buf[i] == 'q' || buf[i] == 'Q' || buf[i] == 0x03 /* ^C */ || buf[i] == 0x04 /* ^D */)
                        return sd_event_exit(t->event, EXIT_SUCCESS);
        return 0;
}

static int on_winch(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        Top *t = userdata;

        if (t->tty && t->started) {
                update_size(t);
                /* A smaller window may keep stale text in places the next frame does not write. */
                (void) write_all("\033[2J", 4);
                (void) show(t);
        }
        return 0;
}

int verb_top(int argc, char **argv)
{
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        g_autoptr(CtlWatch) w = NULL;
        Top t = { .in_fd = -1 };
        sigset_t mask;
        int r;

        t.json = ctl_args.json != JSON_OFF;
        t.tty = !t.json && isatty(STDOUT_FILENO);
        update_size(&t);
        if (!t.tty) {
                /* A pipe has no width: COLUMNS, else 80 columns, for the bars. */
                const char *columns = getenv("COLUMNS");
                long width = columns ? strtol(columns, NULL, 10) : 0;

                t.width = width > 0 && width < 10000 ? (unsigned) width : 80;
        }

        r = ctl_event_new(&event);
        if (r < 0)
                return r;
        t.event = event;
        sigemptyset(&mask);
        sigaddset(&mask, SIGWINCH);
        (void) sigprocmask(SIG_BLOCK, &mask, NULL);
        r = sd_event_add_signal(event, NULL, SIGWINCH, on_winch, &t);
        if (r < 0) {
                ctl_log_error("Failed to set up the event loop: %s", strerror(-r));
                return r;
        }
        r = ctl_watch_new(event, ctl_args.n_hosts > 0 ? ctl_args.hosts[0] : NULL,
                          CTL_WATCH_FOLLOW | CTL_WATCH_FIGURES, &callbacks, &t, &w);
        if (r < 0) {
                ctl_log_error("Failed to watch memcoordd: %s", strerror(-r));
                return r;
        }
        t.watch = w;
        r = ctl_event_run(event);
        leave_screen(&t);
        g_free(t.error);
        for (size_t i = 0; i < TOP_EVENTS; i++)
                g_free(t.events[i]);
        return r;
}
