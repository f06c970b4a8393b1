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
#include <systemd/sd-event.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

#define TOP_EVENTS 3

#define ESC_ENTER "\033[?1049h\033[?25l\033[H\033[2J"
#define ESC_LEAVE "\033[?25h\033[?1049l"

typedef struct Top {
        sd_event *event;
        sd_bus *bus;
        bool tty;  /* full screen; else plain snapshots */
        bool json; /* plain snapshots as JSON, one per line */
        int in_fd; /* the keyboard in raw mode, or -1 */
        struct termios saved;
        bool screen; /* the alternate screen is on */
        unsigned width, height;

        ManagerInfo manager;
        DomainInfo *domains;
        size_t n_domains;
        char *error;              /* why the state could not be read, or NULL */
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

#define STATUS_W 10
#define SIZE_W 7

static void compose_bar(GString *line, const DomainInfo *d, size_t bar_w)
{
        uint64_t scale = d->max ? d->max : d->maximum;
        size_t actual = 0, unused = 0;

        if (scale > 0) {
                actual = (size_t) MIN((double) bar_w,
                                      (double) d->actual * (double) bar_w / (double) scale + 0.5);
                /* Without statistics nothing is known to be unused: it is all held. */
                if (strcmp(d->status, "no-balloon") != 0)
                        unused = (size_t) MIN((double) actual,
                                              (double) d->unused * (double) bar_w / (double) scale + 0.5);
        }
        g_string_append_c(line, '[');
        for (size_t i = 0; i < bar_w; i++)
                g_string_append_c(line, i < actual - unused ? '#' : i < actual ? '-' : scale ? '.' : ' ');
        g_string_append_c(line, ']');
}

/* The lines of one frame; width bounds the bar, height (0 = any) the number of lines. */
static GPtrArray *compose(const Top *t, size_t width, size_t height, bool footer)
{
        GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
        const ManagerInfo *m = &t->manager;
        char a[MC_SIZE_MAX_STRLEN], b[MC_SIZE_MAX_STRLEN], c[MC_SIZE_MAX_STRLEN], d[MC_SIZE_MAX_STRLEN];
        char iv[CTL_TIME_MAX_STRLEN];
        size_t name_w = 4, shown, n_top;

        if (t->error) {
                /* What was shown before is no longer true: show only why. */
                g_ptr_array_add(lines, g_strdup_printf("memcoordd: %s", t->error));
                if (footer)
                        g_ptr_array_add(lines, g_strdup("q: quit"));
                return lines;
        }
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

        for (size_t i = 0; i < t->n_domains; i++)
                name_w = MAX(name_w, text_width(t->domains[i].name));
        name_w = MIN(name_w, MAX((size_t) 8, width / 4));

        /* name, status, four sizes, two spaces; then the bar between brackets */
        size_t fixed = name_w + 1 + STATUS_W + 4 * (1 + SIZE_W) + 2;
        size_t bar_w = width >= fixed + 2 + 5 ? width - fixed - 2 : 0;

        GString *header = g_string_new(NULL);
        append_fit(header, "NAME", name_w, true);
        g_string_append_c(header, ' ');
        append_fit(header, "STATUS", STATUS_W, true);
        append_right(header, "ACTUAL", SIZE_W + 1);
        append_right(header, "TARGET", SIZE_W + 1);
        append_right(header, "UNUSED", SIZE_W + 1);
        append_right(header, "MAX", SIZE_W + 1);
        if (bar_w > 0) {
                g_string_append(header, "  ");
                append_fit(header, "MEMORY (# used, - unused, . up to max)", bar_w, false);
        }
        g_ptr_array_add(lines, g_string_free(header, FALSE));
        n_top = lines->len;

        /* Room for the guests: what the screen leaves after the header and the footer. */
        shown = t->n_domains;
        if (height > 0) {
                size_t room = height > n_top + (footer ? 1 : 0) ? height - n_top - (footer ? 1 : 0) : 0;

                if (shown > room)
                        shown = room > 0 ? room - 1 : 0;
        }
        for (size_t i = 0; i < shown; i++) {
                const DomainInfo *x = &t->domains[i];
                GString *line = g_string_new(NULL);

                append_fit(line, x->name, name_w, true);
                g_string_append_c(line, ' ');
                append_fit(line, x->status, STATUS_W, true);
                append_right(line, ctl_domain_size(a, x, x->actual, false), SIZE_W + 1);
                append_right(line, ctl_domain_size(a, x, x->target, false), SIZE_W + 1);
                append_right(line, ctl_domain_size(a, x, x->unused, true), SIZE_W + 1);
                append_right(line, ctl_domain_size(a, x, x->max, false), SIZE_W + 1);
                if (bar_w > 0) {
                        g_string_append(line, "  ");
                        compose_bar(line, x, bar_w);
                }
                g_ptr_array_add(lines, g_string_free(line, FALSE));
        }
        if (shown < t->n_domains && (height == 0 || lines->len < height))
                g_ptr_array_add(lines, g_strdup_printf("... and %zu more", t->n_domains - shown));
        if (t->n_domains == 0)
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

                json_builder_begin_object(b);
                ctl_json_add_manager(b, &t->manager);
                ctl_json_add_domains(b, t->domains, t->n_domains);
                json_builder_end_object(b);
                return ctl_print_json(b, false);
        }

        g_autoptr(GPtrArray) lines = compose(t, t->width, 0, false);
        if (t->frames > 1)
                putchar('\n');
        for (guint i = 0; i < lines->len; i++)
                puts(lines->pdata[i]);
        if (fflush(stdout) != 0) {
                int r = -errno;

                ctl_log_error("Failed to write the output: %s", strerror(-r));
                return r;
        }
        return 0;
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

static void clear_state(Top *t)
{
        manager_info_clear(&t->manager);
        domain_info_free_array(t->domains, t->n_domains);
        t->domains = NULL;
        t->n_domains = 0;
}

static int refresh(Top *t)
{
        sd_bus_error error = SD_BUS_ERROR_NULL;
        ManagerInfo m = {};
        DomainInfo *d = NULL;
        size_t n = 0;
        int r;

        r = ctl_get_manager(t->bus, &m, &error);
        if (r >= 0)
                r = ctl_list_domains(t->bus, &d, &n, &error);
        g_clear_pointer(&t->error, g_free);
        if (r < 0) {
                t->error = ctl_error_reason(&error, r, NULL);
                manager_info_clear(&m);
                sd_bus_error_free(&error);
                return r;
        }
        clear_state(t);
        t->manager = m;
        t->domains = d;
        t->n_domains = n;
        return 0;
}

static void next_frame(Top *t)
{
        t->frames++;
        if (show(t) < 0)
                return;
        if (ctl_args.iterations > 0 && t->frames >= ctl_args.iterations)
                (void) sd_event_exit(t->event, EXIT_SUCCESS);
}

static int on_tick(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Top *t = userdata;

        if (refresh(t) < 0 && !t->tty) {
                ctl_log_error("Failed to read memcoordd's state: %s", t->error);
                return sd_event_exit(t->event, EXIT_FAILURE);
        }
        next_frame(t);
        return 0;
}

static int on_balloon(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Top *t = userdata;
        const char *path, *name, *reason;
        uint64_t from, to;
        char a[MC_SIZE_MAX_STRLEN], b[MC_SIZE_MAX_STRLEN], stamp[16] = "";
        time_t now = time(NULL);
        struct tm tm;

        if (sd_bus_message_read(m, "ostts", &path, &name, &from, &to, &reason) < 0)
                return 0;
        if (localtime_r(&now, &tm))
                strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        g_free(t->events[TOP_EVENTS - 1]);
        memmove(t->events + 1, t->events, (TOP_EVENTS - 1) * sizeof(char *));
        t->events[0] = g_strdup_printf("%s %s %s -> %s (%s)", stamp, name, ctl_format_size(a, from),
                                       ctl_format_size(b, to), reason);
        return 0;
}

/* A setting changed between ticks: show it at once on the screen. */
static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Top *t = userdata;
        const char *interface;
        bool interesting = false;
        int r;

        if (!t->tty || sd_bus_message_read(m, "s", &interface) < 0 ||
            strcmp(interface, MC_MANAGER_INTERFACE) != 0)
                return 0;
        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r > 0) {
                const char *name;

                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r <= 0 || sd_bus_message_read(m, "s", &name) < 0)
                        break;
                if (strcmp(name, "TickCount") != 0 && !g_str_has_prefix(name, "Host"))
                        interesting = true;
                if (sd_bus_message_skip(m, "v") < 0 || sd_bus_message_exit_container(m) < 0)
                        break;
        }
        if (interesting) {
                (void) refresh(t);
                (void) show(t);
        }
        return 0;
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Top *t = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
            strcmp(name, MC_BUS_NAME) != 0)
                return 0;
        if (new_owner[0] == '\0') {
                if (!t->tty) {
                        ctl_log_error("memcoordd stopped");
                        return sd_event_exit(t->event, EXIT_FAILURE);
                }
                g_free(t->error);
                t->error = g_strdup("stopped; waiting for it to come back");
        } else
                (void) refresh(t);
        (void) show(t);
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Top *t = userdata;

        leave_screen(t);
        ctl_log_error("Lost the connection to the bus");
        return sd_event_exit(t->event, EXIT_FAILURE);
}

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

        if (t->tty) {
                update_size(t);
                /* A smaller window may keep stale text in places the next frame does not write. */
                (void) write_all("\033[2J", 4);
                (void) show(t);
        }
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        return sd_event_exit(sd_event_source_get_event(s), EXIT_SUCCESS);
}

static int setup(Top *t)
{
        static const struct {
                const char *member;
                sd_bus_message_handler_t handler;
        } manager_signals[] = {
                {"TickCompleted", on_tick},
                {"BalloonChanged", on_balloon},
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(manager_signals); i++) {
                r = sd_bus_match_signal(t->bus, NULL, MC_BUS_NAME, MC_MANAGER_PATH, MC_MANAGER_INTERFACE,
                                        manager_signals[i].member, manager_signals[i].handler, t);
                if (r < 0)
                        return r;
        }
        r = sd_bus_match_signal(t->bus, NULL, MC_BUS_NAME, MC_MANAGER_PATH,
                                "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                on_properties_changed, t);
        if (r >= 0)
                r = sd_bus_add_match(
                        t->bus, NULL,
                        "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                        "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" MC_BUS_NAME "'",
                        on_name_owner_changed, t);
        if (r >= 0)
                r = sd_bus_match_signal(t->bus, NULL, "org.freedesktop.DBus.Local",
                                        "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                        "Disconnected", on_disconnected, t);
        return r;
}

int verb_top(int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        Top t = {.in_fd = -1};
        sigset_t mask;
        int r;

        t.json = ctl_args.json != JSON_OFF;
        t.tty = !t.json && isatty(STDOUT_FILENO);
        update_size(&t);
        if (!t.tty) {
                /* A pipe has no width: COLUMNS, else 80 columns, for the bars. */
                const char *columns = getenv("COLUMNS");
                long w = columns ? strtol(columns, NULL, 10) : 0;

                t.width = w > 0 && w < 10000 ? (unsigned) w : 80;
        }

        r = ctl_connect(&bus);
        if (r < 0)
                return r;
        t.bus = bus;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGWINCH);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGHUP, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGWINCH, on_winch, &t);
        if (r < 0) {
                ctl_log_error("Failed to set up the event loop: %s", strerror(-r));
                goto finish;
        }
        t.event = event;

        r = setup(&t);
        if (r < 0) {
                ctl_log_error("Failed to subscribe to memcoordd's signals: %s", strerror(-r));
                goto finish;
        }
        r = refresh(&t);
        if (r < 0) {
                ctl_log_error("Failed to read memcoordd's state: %s", t.error);
                goto finish;
        }

        if (t.tty) {
                enter_screen(&t);
                if (t.in_fd >= 0) {
                        r = sd_event_add_io(event, NULL, t.in_fd, EPOLLIN, on_input, &t);
                        if (r < 0) {
                                leave_screen(&t);
                                ctl_log_error("Failed to watch the keyboard: %s", strerror(-r));
                                goto finish;
                        }
                }
        }
        next_frame(&t);
        r = sd_event_loop(event);
        leave_screen(&t);
        if (r > 0)
                r = -EIO; /* the reason was logged */
        else if (r < 0)
                ctl_log_error("Event loop failed: %s", strerror(-r));
finish:
        leave_screen(&t);
        if (bus)
                (void) sd_bus_detach_event(bus);
        clear_state(&t);
        g_free(t.error);
        for (size_t i = 0; i < TOP_EVENTS; i++)
                g_free(t.events[i]);
        return r;
}
