/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The bus side of memcoordctl: connecting (here or over ssh), calling, and saying in plain words
 * why a call failed. */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "memcoord/errors.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

bool ctl_host_is_local(const char *host)
{
        return !host || strcmp(host, CTL_LOCAL_HOST) == 0;
}

int ctl_bus_open(const char *host, sd_bus **ret, int *ret_ssh_fd)
{
        sd_bus *bus = NULL;
        int p[2], saved, r;

        /* org.memcoord.Error.* come back as errno values too. */
        (void) sd_bus_error_add_map(mc_bus_error_map);
        *ret_ssh_fd = -1;

        if (ctl_host_is_local(host)) {
                r = ctl_args.user ? sd_bus_open_user(&bus) : sd_bus_open_system(&bus);
                if (r < 0)
                        return r;
                /* Changing a setting may need an admin's password: let polkit's agent ask. */
                (void) sd_bus_set_allow_interactive_authorization(bus, true);
                *ret = bus;
                return 0;
        }

        /* sd-bus starts "ssh -xT [-p PORT] -- HOST systemd-stdio-bridge" right here, and the child
         * inherits our stderr: lend it a pipe for that moment, so that ssh's words ("Connection
         * refused", "Permission denied") become the reason we give, in one line, and do not
         * interleave with the output of other hosts. The write end blocks: ssh must not lose text. */
        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        (void) fflush(stderr);
        saved = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (dup2(p[1], STDERR_FILENO) < 0) {
                r = -errno;
                goto finish;
        }
        r = sd_bus_open_system_remote(&bus, host);
        if (saved >= 0)
                (void) dup2(saved, STDERR_FILENO);
        else
                (void) close(STDERR_FILENO);
finish:
        if (saved >= 0)
                (void) close(saved);
        (void) close(p[1]);
        if (r < 0 || fcntl(p[0], F_SETFL, O_NONBLOCK) < 0) {
                r = r < 0 ? r : -errno;
                (void) close(p[0]);
                sd_bus_unref(bus);
                return r;
        }
        (void) sd_bus_set_allow_interactive_authorization(bus, true);
        *ret = bus;
        *ret_ssh_fd = p[0];
        return 0;
}

/* What ssh said is kept to its last lines. */
#define SSH_TEXT_MAX 4096

bool ctl_ssh_read(int fd, GString *buf, int timeout_ms)
{
        gint64 deadline = g_get_monotonic_time() + (gint64) timeout_ms * 1000;

        if (fd < 0)
                return false;
        for (;;) {
                char chunk[1024];
                ssize_t k = read(fd, chunk, sizeof(chunk));

                if (k > 0) {
                        g_string_append_len(buf, chunk, k);
                        if (buf->len > SSH_TEXT_MAX)
                                g_string_erase(buf, 0, (gssize) (buf->len - SSH_TEXT_MAX));
                        continue;
                }
                if (k == 0)
                        return false;
                if (errno == EINTR)
                        continue;
                if (errno != EAGAIN)
                        return false;
                gint64 left = deadline - g_get_monotonic_time();
                if (left <= 0)
                        return true;
                struct pollfd pfd = { .fd = fd, .events = POLLIN };
                (void) poll(&pfd, 1, (int) MAX(left / 1000, 1));
        }
}

/* The last line ssh wrote, as "ssh: ...", or NULL. */
static char *ssh_reason(int fd, GString *buf)
{
        g_autoptr(GString) local = NULL;
        g_auto(GStrv) lines = NULL;

        if (fd < 0)
                return NULL;
        if (!buf)
                buf = local = g_string_new(NULL);
        /* ssh writes its reason before it exits; the bus may notice the closed socket first. */
        (void) ctl_ssh_read(fd, buf, 1000);
        lines = g_strsplit_set(buf->str, "\r\n", -1);
        for (size_t i = g_strv_length(lines); i > 0; i--) {
                const char *line = g_strstrip(lines[i - 1]);

                if (line[0] == '\0')
                        continue;
                return g_str_has_prefix(line, "ssh: ") ? g_strdup(line) : g_strdup_printf("ssh: %s", line);
        }
        return NULL;
}

static bool error_is_connection(const sd_bus_error *error, int r)
{
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_DISCONNECTED, SD_BUS_ERROR_NO_REPLY))
                return true;
        switch (-r) {
        case ECONNRESET:
        case ENOTCONN:
        case EPIPE:
        case ECONNREFUSED:
        case ESHUTDOWN:
        case EIO:
                return true;
        default:
                return false;
        }
}

/* The connection ctl_connect() opened: one per run of the verbs that change settings. */
static int connect_ssh_fd = -1;

int ctl_connect(sd_bus **ret)
{
        const char *host = ctl_args.n_hosts > 0 ? ctl_args.hosts[0] : NULL;
        int r;

        r = ctl_bus_open(host, ret, &connect_ssh_fd);
        if (r < 0) {
                if (!ctl_host_is_local(host))
                        ctl_log_error("Failed to connect to the system bus on %s: %s", host, strerror(-r));
                else
                        ctl_log_error("Failed to connect to the %s bus: %s",
                                      ctl_args.user ? "session" : "system", strerror(-r));
        }
        return r;
}

static bool error_is_read_only_call(const char *member)
{
        return !member || strcmp(member, "ListDomains") == 0 || strcmp(member, "GetAll") == 0 ||
               strcmp(member, "Get") == 0;
}

static char *error_reason_for(const sd_bus_error *error, int r, const char *domain, const char *member)
{
        if (sd_bus_error_is_set(error)) {
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                           SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                        return g_strdup("memcoordd is not running");
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_ACCESS_DENIED,
                                           SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                           SD_BUS_ERROR_AUTH_FAILED))
                        return g_strdup(error_is_read_only_call(member)
                                                ? "Access denied"
                                                : "Access denied (this needs root, or the polkit "
                                                  "action " MC_POLKIT_ACTION_MANAGE ")");
                if (sd_bus_error_has_name(error, MC_ERROR_NO_SUCH_DOMAIN))
                        return domain ? g_strdup_printf("No such guest: '%s' is not running", domain)
                                      : g_strdup("No such guest");
                if (sd_bus_error_has_name(error, MC_ERROR_NOT_CONNECTED))
                        return g_strdup("memcoordd is not connected to libvirt (it keeps retrying)");
                if (sd_bus_error_has_name(error, MC_ERROR_INVALID_ARGUMENT))
                        return g_strdup(error->message ? error->message : "Invalid argument");
                if (sd_bus_error_has_name(error, MC_ERROR_BAD_CONFIG))
                        return g_strdup_printf(
                                "The configuration is not valid, the old settings are kept: %s",
                                error->message ? error->message : "unknown error");
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT))
                        return g_strdup("memcoordd did not answer in time");
                if (sd_bus_error_has_names(error, SD_BUS_ERROR_UNKNOWN_METHOD, SD_BUS_ERROR_UNKNOWN_OBJECT,
                                           SD_BUS_ERROR_UNKNOWN_INTERFACE, SD_BUS_ERROR_UNKNOWN_PROPERTY))
                        return g_strdup("memcoordd does not know this request (is it an older version?)");
                if (error->name && g_str_has_prefix(error->name, "org.freedesktop.DBus.Error.Spawn."))
                        return g_strdup_printf("memcoordd is not running and could not be started: %s",
                                               error->message ? error->message : error->name);
                if (sd_bus_error_has_name(error, SD_BUS_ERROR_DISCONNECTED))
                        return g_strdup("Lost the connection to the bus");
                if (error->message && error->message[0])
                        return g_strdup(error->message);
                if (error->name)
                        return g_strdup(error->name);
        }
        switch (-r) {
        case ETIMEDOUT:
                return g_strdup("memcoordd did not answer in time");
        case ECONNRESET:
        case ENOTCONN:
        case EPIPE:
                return g_strdup("Lost the connection to the bus");
        case EACCES:
        case EPERM:
                return g_strdup("Access denied");
        default:
                return g_strdup(strerror(r < 0 ? -r : EIO));
        }
}

char *ctl_error_reason(const sd_bus_error *error, int r, const char *domain, const char *member, int ssh_fd,
                       GString *ssh_buf)
{
        if (ssh_fd >= 0 && error_is_connection(error, r)) {
                char *said = ssh_reason(ssh_fd, ssh_buf);

                if (said)
                        return said;
        }
        return error_reason_for(error, r, domain, member);
}

int ctl_call(sd_bus *bus, const char *what, const char *domain, const char *member,
             sd_bus_message **ret_reply, const char *types, ...)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL, *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_message_new_method_call(bus, &call, MC_BUS_NAME, MC_MANAGER_PATH, MC_MANAGER_INTERFACE,
                                           member);
        if (r >= 0 && types) {
                va_list ap;

                va_start(ap, types);
                r = sd_bus_message_appendv(call, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_call(bus, call, 0, &error, &reply);
        if (r < 0) {
                g_autofree char *reason = ctl_error_reason(&error, r, domain, member, connect_ssh_fd, NULL);

                ctl_log_error("Failed to %s: %s", what, reason);
                sd_bus_error_free(&error);
                return r;
        }
        if (ret_reply)
                *ret_reply = sd_bus_message_ref(reply);
        return 0;
}

void manager_info_clear(ManagerInfo *m)
{
        if (!m)
                return;
        g_free(m->version);
        g_free(m->state);
        g_free(m->policy);
        g_free(m->uri);
        *m = (ManagerInfo){};
}

void domain_info_free(DomainInfo *d)
{
        if (!d)
                return;
        g_free(d->object);
        g_free(d->name);
        g_free(d->uuid);
        g_free(d->status);
        g_free(d->last_reason);
        g_free(d);
}
