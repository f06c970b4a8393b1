/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "metrics-export.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "memcoord-build.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"
#include "metrics.h"

/* A request line and headers larger than this are not a scraper's: refused. */
#define REQUEST_MAX 8192
/* A client that sends no full request, or reads no response, in this long is dropped: the loop
 * is never held by a slow peer. */
#define CLIENT_TIMEOUT_USEC (5 * MC_USEC_PER_SEC)
/* More clients at once than any scrape setup needs; further ones wait in the backlog. */
#define CLIENTS_MAX 16

typedef struct Client Client;

struct McMetricsExport {
        sd_event *event;
        McManager *manager;
        sd_event_source *listen_source;
        int listen_fd;
        GList *clients;
        unsigned n_clients;
        char *file_path;
        sd_event_source *file_timer;
};

struct Client {
        McMetricsExport *x;
        int fd;
        sd_event_source *io;
        sd_event_source *timeout;
        GString *in;
        char *out;
        size_t out_len, out_done;
};

char *mc_manager_render_metrics(McManager *m)
{
        g_autofree McGuest **list = NULL;
        g_autofree McMetricsGuest *guests = NULL;
        const McPolicySettings *p = &m->config->policy;
        size_t n;

        list = mc_manager_list_guests(m, &n);
        guests = g_new0(McMetricsGuest, MAX(n, 1));
        for (size_t i = 0; i < n; i++) {
                const McGuest *g = list[i];
                McGuestLimits l = mc_manager_guest_limits(m, g);

                guests[i] = (McMetricsGuest){
                        .name = g->name,
                        .uuid = g->uuid,
                        .status = g->status,
                        .actual_kib = g->actual_kib,
                        .target_kib = mc_guest_target_kib(g),
                        .unused_kib = g->unused_kib,
                        .available_kib = g->available_kib,
                        .usable_kib = g->usable_kib,
                        .maximum_kib = g->max_kib,
                        .min_kib = l.floor_kib,
                        .max_kib = l.cap_kib,
                        .weight = l.weight,
                        .excluded = g->excluded,
                        .stats_age_usec = g->stats_age_usec,
                        .short_kib = g->short_kib,
                };
        }
        McMetricsInput in = {
                .version = MC_VERSION,
                .policy = mc_policy_kind_to_string(p->kind),
                .state = mc_state_to_string(mc_manager_state(m)),
                .dry_run = m->config->dry_run,
                .interval_usec = m->config->interval_usec,
                .domain_threshold_kib = p->domain_threshold_kib,
                .host_threshold_kib = p->host_threshold_kib,
                .host_budget_kib = p->host_budget_kib,
                .host_total_kib = m->host.total_kib,
                .host_free_kib = m->host.free_kib,
                .host_available_kib = m->last_summary.host_available_kib,
                .ticks = m->tick_count,
                .last_tick_usec = m->last_tick_usec,
                .counters = &m->counters,
                .guests = guests,
                .n_guests = n,
        };
        return mc_metrics_render(&in);
}

/* ---- listening ---- */

int mc_metrics_listen(const char *addr_port, const char **why)
{
        union {
                struct sockaddr sa;
                struct sockaddr_in in4;
                struct sockaddr_in6 in6;
        } sa = {};
        socklen_t len;
        const char *colon = strrchr(addr_port, ':');
        g_autofree char *host = NULL;
        char *end = NULL;
        int fd, one = 1;

        *why = NULL;
        if (!colon) {
                *why = "expected ADDRESS:PORT";
                return -EINVAL;
        }
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (end == colon + 1 || *end != '\0' || port == 0 || port > 65535) {
                *why = "the port must be a number from 1 to 65535";
                return -EINVAL;
        }
        host = g_strndup(addr_port, (gsize) (colon - addr_port));
        if (host[0] == '[' && g_str_has_suffix(host, "]")) {
                host[strlen(host) - 1] = '\0';
                memmove(host, host + 1, strlen(host));
                sa.in6.sin6_family = AF_INET6;
                sa.in6.sin6_port = htons((uint16_t) port);
                if (inet_pton(AF_INET6, host, &sa.in6.sin6_addr) != 1) {
                        *why = "not an IPv6 address";
                        return -EINVAL;
                }
                len = sizeof(sa.in6);
        } else {
                sa.in4.sin_family = AF_INET;
                sa.in4.sin_port = htons((uint16_t) port);
                /* No address: the loopback, never every interface by accident. */
                if (inet_pton(AF_INET, host[0] ? host : "127.0.0.1", &sa.in4.sin_addr) != 1) {
                        *why = "not an IPv4 address (IPv6 goes in brackets)";
                        return -EINVAL;
                }
                len = sizeof(sa.in4);
        }

        fd = socket(sa.sa.sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, &sa.sa, len) < 0 || listen(fd, 16) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

/* ---- HTTP ---- */

static void client_free(Client *c)
{
        if (!c)
                return;
        c->x->clients = g_list_remove(c->x->clients, c);
        c->x->n_clients--;
        if (c->x->listen_source)
                (void) sd_event_source_set_enabled(c->x->listen_source, SD_EVENT_ON);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->timeout);
        if (c->fd >= 0)
                close(c->fd);
        if (c->in)
                g_string_free(c->in, TRUE);
        g_free(c->out);
        g_free(c);
}

static void respond(Client *c, const char *status, const char *type, const char *body, bool head)
{
        size_t body_len = strlen(body);
        g_autofree char *hdr = g_strdup_printf("HTTP/1.0 %s\r\n"
                                               "Content-Type: %s\r\n"
                                               "Content-Length: %zu\r\n"
                                               "Connection: close\r\n"
                                               "\r\n",
                                               status, type, body_len);

        c->out = g_strconcat(hdr, head ? "" : body, NULL);
        c->out_len = strlen(c->out);
        c->out_done = 0;
        (void) sd_event_source_set_io_events(c->io, EPOLLOUT);
}

/* Handles a complete request head. Only GET and HEAD of /metrics (and / pointing at it). */
static void handle_request(Client *c)
{
        g_auto(GStrv) words = NULL;
        char *eol = strstr(c->in->str, "\r\n");

        if (!eol)
                eol = strchr(c->in->str, '\n');
        g_autofree char *line = g_strndup(c->in->str, (gsize) (eol - c->in->str));
        words = g_strsplit(line, " ", 4);
        if (g_strv_length(words) < 2 || !g_str_has_prefix(words[2] ? words[2] : "HTTP/", "HTTP/")) {
                respond(c, "400 Bad Request", "text/plain; charset=utf-8", "Bad request\n", false);
                return;
        }
        bool head = g_str_equal(words[0], "HEAD");
        if (!head && !g_str_equal(words[0], "GET")) {
                respond(c, "405 Method Not Allowed", "text/plain; charset=utf-8", "Only GET\n", false);
                return;
        }
        /* A query string (?...) is ignored, as Prometheus may add one. */
        char *q = strchr(words[1], '?');
        if (q)
                *q = '\0';
        if (g_str_equal(words[1], "/metrics")) {
                g_autofree char *text = mc_manager_render_metrics(c->x->manager);
                respond(c, "200 OK", MC_METRICS_CONTENT_TYPE, text, head);
        } else if (g_str_equal(words[1], "/"))
                respond(c, "200 OK", "text/html; charset=utf-8",
                        "<html><body><a href=\"/metrics\">memcoordd metrics</a></body></html>\n", head);
        else
                respond(c, "404 Not Found", "text/plain; charset=utf-8", "Not found: try /metrics\n", head);
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        Client *c = userdata;

        if (c->out) {
                ssize_t k = send(fd, c->out + c->out_done, c->out_len - c->out_done, MSG_NOSIGNAL);
                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                        return 0;
                if (k < 0) {
                        client_free(c);
                        return 0;
                }
                c->out_done += (size_t) k;
                if (c->out_done == c->out_len) {
                        (void) shutdown(fd, SHUT_WR);
                        client_free(c);
                }
                return 0;
        }

        char buf[2048];
        ssize_t k = recv(fd, buf, sizeof(buf), 0);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k <= 0) {
                client_free(c);
                return 0;
        }
        g_string_append_len(c->in, buf, k);
        if (strstr(c->in->str, "\r\n\r\n") || strstr(c->in->str, "\n\n"))
                handle_request(c);
        else if (c->in->len > REQUEST_MAX)
                respond(c, "431 Request Header Fields Too Large", "text/plain; charset=utf-8",
                        "Request too large\n", false);
        return 0;
}

static int on_client_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        client_free(userdata);
        return 0;
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        McMetricsExport *x = userdata;
        uint64_t now;
        int cfd, r;

        if (x->n_clients >= CLIENTS_MAX) {
                /* The rest wait in the backlog until a client is done. */
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
                return 0;
        }
        cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                        mc_log_id(LOG_WARNING, MC_MESSAGE_METRICS_FAILED,
                                  "Metrics endpoint: accept failed: %m");
                return 0;
        }
        Client *c = g_new0(Client, 1);
        c->x = x;
        c->fd = cfd;
        c->in = g_string_new(NULL);
        x->clients = g_list_prepend(x->clients, c);
        x->n_clients++;
        (void) sd_event_now(x->event, CLOCK_MONOTONIC, &now);
        r = sd_event_add_io(x->event, &c->io, cfd, EPOLLIN, on_client_io, c);
        if (r >= 0)
                r = sd_event_add_time(x->event, &c->timeout, CLOCK_MONOTONIC, now + CLIENT_TIMEOUT_USEC, 0,
                                      on_client_timeout, c);
        if (r < 0) {
                mc_log_id(LOG_WARNING, MC_MESSAGE_METRICS_FAILED, "Metrics endpoint: %s", strerror(-r));
                client_free(c);
        }
        return 0;
}

/* ---- the textfile ---- */

static int write_file(McMetricsExport *x)
{
        g_autofree char *text = mc_manager_render_metrics(x->manager);
        g_autoptr(GError) error = NULL;

        /* Write to a temporary file and rename over: node_exporter never reads half a file.
         * g_file_set_contents() does exactly that, in the same directory. */
        if (!g_file_set_contents(x->file_path, text, -1, &error)) {
                mc_log_id(LOG_WARNING, MC_MESSAGE_METRICS_FAILED, "Failed to write metrics to %s: %s",
                          x->file_path, error->message);
                return -EIO;
        }
        (void) chmod(x->file_path, 0644);
        return 0;
}

static int on_file_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        McMetricsExport *x = userdata;
        uint64_t interval = MAX(x->manager->config->interval_usec, MC_USEC_PER_SEC);

        (void) write_file(x);
        (void) sd_event_source_set_time(s, usec + interval);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

/* ---- setup ---- */

int mc_metrics_export_new(sd_event *e, McManager *m, McMetricsExport **ret)
{
        McMetricsExport *x = g_new0(McMetricsExport, 1);

        x->event = sd_event_ref(e);
        x->manager = m;
        x->listen_fd = -1;
        *ret = x;
        return 0;
}

McMetricsExport *mc_metrics_export_free(McMetricsExport *x)
{
        if (!x)
                return NULL;
        while (x->clients)
                client_free(x->clients->data);
        sd_event_source_disable_unref(x->listen_source);
        sd_event_source_disable_unref(x->file_timer);
        if (x->listen_fd >= 0)
                close(x->listen_fd);
        g_free(x->file_path);
        sd_event_unref(x->event);
        g_free(x);
        return NULL;
}

int mc_metrics_export_serve(McMetricsExport *x, int listen_fd)
{
        int flags = fcntl(listen_fd, F_GETFL);

        /* A passed socket may come blocking: accept must never wait. */
        if (flags < 0 || fcntl(listen_fd, F_SETFL, flags | O_NONBLOCK) < 0) {
                int r = -errno;
                close(listen_fd);
                return r;
        }
        x->listen_fd = listen_fd;
        return sd_event_add_io(x->event, &x->listen_source, listen_fd, EPOLLIN, on_accept, x);
}

int mc_metrics_export_file(McMetricsExport *x, const char *path)
{
        uint64_t now;

        g_free(x->file_path);
        x->file_path = g_strdup(path);
        (void) sd_event_now(x->event, CLOCK_MONOTONIC, &now);
        /* Accuracy 100 ms: a scrape of the file does not care to the millisecond. */
        return sd_event_add_time(x->event, &x->file_timer, CLOCK_MONOTONIC, now, 100000, on_file_timer, x);
}
