/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The watcher (see ctl-watch.h): connection, state, signals, name owner, loop. */

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl-watch.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

#define DBUS_PROPERTIES "org.freedesktop.DBus.Properties"
#define DBUS_OBJECT_MANAGER "org.freedesktop.DBus.ObjectManager"

enum {
        LOAD_GET_ALL,
        LOAD_OBJECTS,
        LOAD_DOMAINS,
        _LOAD_MAX,
};

struct CtlWatch {
        sd_event *event;
        char *host;
        CtlWatchFlags flags;
        const CtlWatchCallbacks *cb;
        void *userdata;

        sd_bus *bus;
        int ssh_fd; /* what ssh writes to stderr, or -1 */
        GString *ssh_text;
        sd_event_source *ssh_source;
        sd_event_source *defer_source; /* reports a failed connection from the loop */
        char *connect_error;

        ManagerInfo manager;
        GHashTable *domains; /* object path -> DomainInfo */
        sd_bus_slot *load[_LOAD_MAX];
        sd_bus_slot *refresh;
        bool ready;
};

/* ---- storing values ---- */

static void *field_ptr(const CtlField *f, void *record)
{
        return (char *) record + f->offset;
}

/* Stores v in the record's field; true if the value changed. */
static bool set_string(const CtlField *f, void *record, const char *v)
{
        char **p = field_ptr(f, record);

        if (*p && strcmp(*p, v) == 0)
                return false;
        g_free(*p);
        *p = g_strdup(v);
        return true;
}

static bool set_number(const CtlField *f, void *record, uint64_t v)
{
        bool changed = ctl_field_number(f, record) != v;

        if (f->type == CTL_FIELD_BOOL)
                *(bool *) field_ptr(f, record) = v != 0;
        else if (f->type == CTL_FIELD_U32)
                *(uint32_t *) field_ptr(f, record) = (uint32_t) v;
        else
                *(uint64_t *) field_ptr(f, record) = v;
        return changed;
}

static bool copy_field(const CtlField *f, void *dst, const void *src)
{
        if (f->type == CTL_FIELD_STRING)
                return set_string(f, dst, ctl_field_string(f, src));
        return set_number(f, dst, ctl_field_number(f, src));
}

/* Reads a variant into the field when its type is the field's; other types are skipped, so a
 * different daemon version does not confuse this client. Returns 1 if the value changed. */
static int read_variant(sd_bus_message *m, const CtlField *f, void *record)
{
        const char *contents = NULL;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, NULL, &contents);
        if (r < 0)
                return r;
        type = f->type == CTL_FIELD_STRING ? 's'
               : f->type == CTL_FIELD_BOOL ? 'b'
               : f->type == CTL_FIELD_U32  ? 'u'
                                           : 't';
        if (!contents || strlen(contents) != 1 ||
            (contents[0] != type && !(type == 's' && contents[0] == 'o')))
                return sd_bus_message_skip(m, "v") < 0 ? -EBADMSG : 0;
        r = sd_bus_message_enter_container(m, 'v', contents);
        if (r < 0)
                return r;
        if (type == 's') {
                const char *s;

                r = sd_bus_message_read_basic(m, contents[0], &s);
                if (r >= 0)
                        r = set_string(f, record, s);
        } else if (type == 'b') {
                int b;

                r = sd_bus_message_read_basic(m, 'b', &b);
                if (r >= 0)
                        r = set_number(f, record, !!b);
        } else if (type == 'u') {
                uint32_t u;

                r = sd_bus_message_read_basic(m, 'u', &u);
                if (r >= 0)
                        r = set_number(f, record, u);
        } else {
                uint64_t t;

                r = sd_bus_message_read_basic(m, 't', &t);
                if (r >= 0)
                        r = set_number(f, record, t);
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m) < 0 ? -EBADMSG : r;
}

typedef int (*EntryReader)(CtlWatch *w, sd_bus_message *m, void *ctx);

/* Reads a dictionary a{ENTRY}: enters each entry, hands it to reader, leaves it. */
static int read_dict(CtlWatch *w, sd_bus_message *m, const char *entry, EntryReader reader, void *ctx)
{
        g_autofree char *array = g_strdup_printf("{%s}", entry);
        int r;

        r = sd_bus_message_enter_container(m, 'a', array);
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(m, 'e', entry)) > 0) {
                r = reader(w, m, ctx);
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

typedef struct PropertiesTarget {
        DomainInfo *domain; /* NULL: the manager */
        bool notify;        /* report the changes */
} PropertiesTarget;

static int read_property_entry(CtlWatch *w, sd_bus_message *m, void *ctx)
{
        const PropertiesTarget *t = ctx;
        const CtlField *f;
        const char *name;
        int r;

        r = sd_bus_message_read(m, "s", &name);
        if (r < 0)
                return r;
        f = t->domain ? ctl_field_by_property(ctl_domain_fields, ctl_n_domain_fields, name)
                      : ctl_field_by_property(ctl_manager_fields, ctl_n_manager_fields, name);
        if (!f)
                return sd_bus_message_skip(m, "v");
        r = read_variant(m, f, t->domain ? (void *) t->domain : (void *) &w->manager);
        if (r > 0 && t->notify && !(f->flags & CTL_FIELD_FIGURE) && w->cb->property_changed)
                w->cb->property_changed(w, t->domain, f, w->userdata);
        return r;
}

/* Reads an a{sv} into a record: the manager (d NULL) or a guest. notify: report the changes. */
static int read_properties(CtlWatch *w, sd_bus_message *m, DomainInfo *d, bool notify)
{
        PropertiesTarget t = { .domain = d, .notify = notify };

        return read_dict(w, m, "sv", read_property_entry, &t);
}

static DomainInfo *domain_get(CtlWatch *w, const char *path, bool *ret_new)
{
        DomainInfo *d = g_hash_table_lookup(w->domains, path);

        *ret_new = !d;
        if (!d) {
                d = g_new0(DomainInfo, 1);
                d->object = g_strdup(path);
                d->stats_age_usec = UINT64_MAX;
                g_hash_table_insert(w->domains, d->object, d);
        }
        return d;
}

/* ---- reading the state ---- */

static char *failure_reason(CtlWatch *w, const sd_bus_error *error, int r)
{
        return ctl_error_reason(error, r, NULL, NULL, w->ssh_fd, w->ssh_text);
}

static void cancel_calls(CtlWatch *w)
{
        for (size_t i = 0; i < _LOAD_MAX; i++)
                w->load[i] = sd_bus_slot_unref(w->load[i]);
        w->refresh = sd_bus_slot_unref(w->refresh);
}

static void announce_failure(CtlWatch *w, const char *what, const char *reason)
{
        if (w->cb->failed)
                w->cb->failed(w, what, reason, w->userdata);
}

/* The state could not be read: what there is of it is not to be trusted. */
static void report_failure(CtlWatch *w, const char *what, const char *reason)
{
        cancel_calls(w);
        w->ready = false;
        announce_failure(w, what, reason);
}

static void fail(CtlWatch *w, const char *what, const sd_bus_error *error, int r)
{
        g_autofree char *reason = failure_reason(w, error, r);

        report_failure(w, what, reason);
}

static bool loading(const CtlWatch *w)
{
        for (size_t i = 0; i < _LOAD_MAX; i++)
                if (w->load[i])
                        return true;
        return false;
}

/* One reply of the load is in: the state is ready when the last is. */
static void load_step(CtlWatch *w, int which)
{
        w->load[which] = sd_bus_slot_unref(w->load[which]);
        if (loading(w))
                return;
        w->ready = true;
        if (w->cb->ready)
                w->cb->ready(w, w->userdata);
}

static int read_manager(CtlWatch *w, sd_bus_message *m)
{
        int r = read_properties(w, m, NULL, false);

        if (r < 0)
                return r;
        /* A property a different daemon version lacks still reads as text. */
        if (!w->manager.state)
                w->manager.state = g_strdup("unknown");
        if (!w->manager.policy)
                w->manager.policy = g_strdup("unknown");
        if (!w->manager.version)
                w->manager.version = g_strdup("unknown");
        return 0;
}

/* One interface of an object and its properties, {sa{sv}}: a guest's go to its record, which is
 * made when new. Announces the changes, and a new guest, once the state is ready. */
static int read_interface_entry(CtlWatch *w, sd_bus_message *m, void *ctx)
{
        const char *path = ctx, *interface;
        DomainInfo *d;
        bool is_new;
        int r;

        r = sd_bus_message_read(m, "s", &interface);
        if (r < 0)
                return r;
        if (strcmp(interface, MC_DOMAIN_INTERFACE) != 0)
                return sd_bus_message_skip(m, "a{sv}");
        d = domain_get(w, path, &is_new);
        r = read_properties(w, m, d, w->ready && !is_new);
        if (r >= 0 && is_new && w->ready && w->cb->domain_added)
                w->cb->domain_added(w, d, w->userdata);
        return r;
}

static int read_interfaces(CtlWatch *w, sd_bus_message *m, const char *path)
{
        return read_dict(w, m, "sa{sv}", read_interface_entry, (void *) path);
}

static int read_object_entry(CtlWatch *w, sd_bus_message *m, void *ctx)
{
        const char *path;
        int r;

        r = sd_bus_message_read(m, "o", &path);
        if (r < 0)
                return r;
        return read_interfaces(w, m, path);
}

static int read_objects(CtlWatch *w, sd_bus_message *m)
{
        return read_dict(w, m, "oa{sa{sv}}", read_object_entry, NULL);
}

int ctl_read_domain_entry(sd_bus_message *m, DomainInfo *d)
{
        const char *object, *name, *uuid, *status, *reason;
        int r;

        r = sd_bus_message_read(m, "(ossstttttttttuts)", &object, &name, &uuid, &status, &d->actual,
                                &d->target, &d->unused, &d->available, &d->usable, &d->maximum, &d->min,
                                &d->max, &d->stats_age_usec, &d->weight, &d->last_change_usec, &reason);
        if (r <= 0)
                return r;
        d->object = (char *) object;
        d->name = (char *) name;
        d->uuid = (char *) uuid;
        d->status = (char *) status;
        d->last_reason = (char *) reason;
        d->excluded = strcmp(status, "excluded") == 0;
        return 1;
}

/* ListDomains: every figure of every guest in one call. With whole (while the state is read),
 * a guest not known yet is taken whole; later its InterfacesAdded brings it, and only figures
 * are taken from here, so an announced change is never absorbed unreported. */
static int read_domain_list(CtlWatch *w, sd_bus_message *m, bool whole)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "(ossstttttttttuts)");
        if (r < 0)
                return r;
        for (;;) {
                DomainInfo t = {};
                DomainInfo *d;
                bool is_new;

                r = ctl_read_domain_entry(m, &t);
                if (r <= 0)
                        break;
                if (!whole && !g_hash_table_contains(w->domains, t.object))
                        continue;
                d = domain_get(w, t.object, &is_new);
                for (size_t i = 0; i < ctl_n_domain_fields; i++)
                        if (is_new || (ctl_domain_fields[i].flags & CTL_FIELD_FIGURE))
                                (void) copy_field(&ctl_domain_fields[i], d, &t);
        }
        if (r < 0)
                return r;
        return sd_bus_message_exit_container(m);
}

static int read_domains_whole(CtlWatch *w, sd_bus_message *m)
{
        return read_domain_list(w, m, true);
}

static int read_figures(CtlWatch *w, sd_bus_message *m)
{
        return read_domain_list(w, m, false);
}

typedef int (*ReplyReader)(CtlWatch *w, sd_bus_message *m);

/* Reads a reply with reader. A failure is reported and returned, except when the daemon or the
 * connection went away during a refresh: NameOwnerChanged or Disconnected tell that. */
static int take_reply(CtlWatch *w, sd_bus_message *m, ReplyReader reader, bool refresh)
{
        const sd_bus_error *e = sd_bus_message_get_error(m);
        g_autofree char *reason = NULL;
        int r;

        if (e) {
                r = sd_bus_message_get_errno(m);
                r = r > 0 ? -r : -EIO;
                if (refresh &&
                    sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                           SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_DISCONNECTED))
                        return r;
                reason = failure_reason(w, e, r);
        } else {
                r = reader(w, m);
                if (r >= 0)
                        return r;
                reason = g_strdup_printf("Unexpected reply from memcoordd: %s", strerror(-r));
        }
        /* A failed refresh leaves the state as it was: the next tick tries again. */
        if (refresh)
                announce_failure(w, "read memcoordd's state", reason);
        else
                report_failure(w, "read memcoordd's state", reason);
        return r;
}

static int on_load_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        static const ReplyReader readers[_LOAD_MAX] = {
                [LOAD_GET_ALL] = read_manager,
                [LOAD_OBJECTS] = read_objects,
                [LOAD_DOMAINS] = read_domains_whole,
        };
        CtlWatch *w = userdata;
        sd_bus_slot *slot = sd_bus_get_current_slot(sd_bus_message_get_bus(m));

        for (size_t i = 0; i < _LOAD_MAX; i++)
                if (w->load[i] && w->load[i] == slot) {
                        if (take_reply(w, m, readers[i], false) >= 0)
                                load_step(w, (int) i);
                        break;
                }
        return 0;
}

static int on_refresh(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        CtlWatch *w = userdata;

        w->refresh = sd_bus_slot_unref(w->refresh);
        if (take_reply(w, m, read_figures, true) >= 0 && w->cb->refreshed)
                w->cb->refreshed(w, w->userdata);
        return 0;
}

/* All three calls go out at once: over ssh the state costs one round trip. */
static int start_load(CtlWatch *w)
{
        int r;

        cancel_calls(w);
        w->ready = false;
        r = sd_bus_call_method_async(w->bus, &w->load[LOAD_GET_ALL], MC_BUS_NAME, MC_MANAGER_PATH,
                                     DBUS_PROPERTIES, "GetAll", on_load_reply, w, "s", MC_MANAGER_INTERFACE);
        /* A snapshot takes the guests from ListDomains alone. */
        if (r >= 0 && (w->flags & CTL_WATCH_FOLLOW))
                r = sd_bus_call_method_async(w->bus, &w->load[LOAD_OBJECTS], MC_BUS_NAME, MC_MANAGER_PATH,
                                             DBUS_OBJECT_MANAGER, "GetManagedObjects", on_load_reply, w,
                                             NULL);
        if (r >= 0)
                r = sd_bus_call_method_async(w->bus, &w->load[LOAD_DOMAINS], MC_BUS_NAME, MC_MANAGER_PATH,
                                             MC_MANAGER_INTERFACE, "ListDomains", on_load_reply, w, NULL);
        if (r < 0)
                cancel_calls(w);
        return r;
}

/* ---- following the changes ---- */

static int on_tick(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        CtlWatch *w = userdata;
        CtlTick t;

        /* Events are passed on from the start, as they come, state or not. */
        if (sd_bus_message_read(m, "ttuu", &t.tick, &t.host_free, &t.managed, &t.changed) < 0)
                return 0;
        w->manager.tick_count = t.tick;
        w->manager.host_free = t.host_free;
        if (w->cb->tick)
                w->cb->tick(w, &t, w->userdata);
        /* A tick that ends while the last one's figures are on their way is left out. */
        if ((w->flags & CTL_WATCH_FIGURES) && w->ready && !w->refresh) {
                int r = sd_bus_call_method_async(w->bus, &w->refresh, MC_BUS_NAME, MC_MANAGER_PATH,
                                                 MC_MANAGER_INTERFACE, "ListDomains", on_refresh, w, NULL);

                if (r < 0)
                        announce_failure(w, "read memcoordd's state", strerror(-r));
        }
        return 0;
}

static int on_balloon(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        CtlWatch *w = userdata;
        CtlBalloon b;
        DomainInfo *d;

        if (sd_bus_message_read(m, "ostts", &b.object, &b.name, &b.from, &b.to, &b.reason) < 0)
                return 0;
        d = g_hash_table_lookup(w->domains, b.object);
        if (d) {
                d->last_change_usec = ctl_now_realtime();
                g_free(d->last_reason);
                d->last_reason = g_strdup(b.reason);
        }
        if (w->cb->balloon)
                w->cb->balloon(w, &b, w->userdata);
        return 0;
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        CtlWatch *w = userdata;
        const char *path = sd_bus_message_get_path(m), *interface;
        DomainInfo *d;

        if (!path || sd_bus_message_read(m, "s", &interface) < 0)
                return 0;
        if (strcmp(interface, MC_MANAGER_INTERFACE) == 0 && strcmp(path, MC_MANAGER_PATH) == 0)
                (void) read_properties(w, m, NULL, w->ready);
        else if (strcmp(interface, MC_DOMAIN_INTERFACE) == 0 && (d = g_hash_table_lookup(w->domains, path)))
                (void) read_properties(w, m, d, w->ready);
        return 0;
}

static int on_interfaces_added(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        CtlWatch *w = userdata;
        const char *path;

        if (sd_bus_message_read(m, "o", &path) >= 0)
                (void) read_interfaces(w, m, path);
        return 0;
}

static int on_interfaces_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        CtlWatch *w = userdata;
        g_auto(GStrv) interfaces = NULL;
        const char *path;
        DomainInfo *d;

        if (sd_bus_message_read(m, "o", &path) < 0 || sd_bus_message_read_strv(m, &interfaces) < 0 ||
            !interfaces || !g_strv_contains((const char *const *) interfaces, MC_DOMAIN_INTERFACE))
                return 0;
        d = g_hash_table_lookup(w->domains, path);
        if (!d)
                return 0;
        if (w->ready && w->cb->domain_removed)
                w->cb->domain_removed(w, d, w->userdata);
        g_hash_table_remove(w->domains, path);
        return 0;
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        CtlWatch *w = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
            strcmp(name, MC_BUS_NAME) != 0)
                return 0;
        if (old_owner[0]) {
                bool was = w->ready || loading(w);

                cancel_calls(w);
                w->ready = false;
                g_hash_table_remove_all(w->domains);
                if (was && w->cb->daemon_stopped)
                        w->cb->daemon_stopped(w, w->userdata);
        }
        if (new_owner[0]) {
                if (w->cb->daemon_started)
                        w->cb->daemon_started(w, w->userdata);
                /* The new instance's state becomes the reference. */
                int r = start_load(w);

                if (r < 0)
                        fail(w, "read memcoordd's state", NULL, r);
        }
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        CtlWatch *w = userdata;
        g_autofree char *reason = failure_reason(w, NULL, -ECONNRESET);

        cancel_calls(w);
        w->ready = false;
        if (w->cb->disconnected)
                w->cb->disconnected(w, reason, w->userdata);
        return 0;
}

/* Listen first, then read: the matches go out before the calls, so nothing falls between. */
static int add_matches(CtlWatch *w)
{
        static const struct {
                const char *sender, *path, *interface, *member;
                sd_bus_message_handler_t handler;
        } signals[] = {
                { MC_BUS_NAME, MC_MANAGER_PATH, MC_MANAGER_INTERFACE, "TickCompleted", on_tick },
                { MC_BUS_NAME, MC_MANAGER_PATH, MC_MANAGER_INTERFACE, "BalloonChanged", on_balloon },
                { MC_BUS_NAME, MC_MANAGER_PATH, DBUS_OBJECT_MANAGER, "InterfacesAdded",
                  on_interfaces_added },
                { MC_BUS_NAME, MC_MANAGER_PATH, DBUS_OBJECT_MANAGER, "InterfacesRemoved",
                  on_interfaces_removed },
                { "org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                  "Disconnected", on_disconnected },
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                r = sd_bus_match_signal_async(w->bus, NULL, signals[i].sender, signals[i].path,
                                              signals[i].interface, signals[i].member, signals[i].handler,
                                              NULL, w);
                if (r < 0)
                        return r;
        }
        r = sd_bus_add_match_async(w->bus, NULL,
                                   "type='signal',sender='" MC_BUS_NAME "',interface='" DBUS_PROPERTIES "',"
                                   "member='PropertiesChanged',path_namespace='" MC_MANAGER_PATH "'",
                                   on_properties_changed, NULL, w);
        if (r < 0)
                return r;
        return sd_bus_add_match_async(
                w->bus, NULL,
                "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                "arg0='" MC_BUS_NAME "'",
                on_name_owner_changed, NULL, w);
}

/* ---- the watcher ---- */

static int on_ssh_output(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        CtlWatch *w = userdata;

        if (!ctl_ssh_read(fd, w->ssh_text, 0))
                (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        return 0;
}

static int on_connect_failed(sd_event_source *s, void *userdata)
{
        CtlWatch *w = userdata;
        g_autofree char *what = NULL;

        (void) sd_event_source_set_enabled(s, SD_EVENT_OFF);
        if (!ctl_host_is_local(w->host))
                what = g_strdup_printf("connect to the system bus on %s", w->host);
        else
                what = g_strdup_printf("connect to the %s bus", ctl_args.user ? "session" : "system");
        if (w->cb->failed)
                w->cb->failed(w, what, w->connect_error, w->userdata);
        return 0;
}

int ctl_watch_new(sd_event *event, const char *host, CtlWatchFlags flags, const CtlWatchCallbacks *cb,
                  void *userdata, CtlWatch **ret)
{
        g_autoptr(CtlWatch) w = g_new0(CtlWatch, 1);
        int r;

        w->event = sd_event_ref(event);
        w->host = g_strdup(host);
        w->flags = flags;
        w->cb = cb;
        w->userdata = userdata;
        w->ssh_fd = -1;
        w->ssh_text = g_string_new(NULL);
        w->domains = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, (GDestroyNotify) domain_info_free);

        r = ctl_bus_open(host, &w->bus, &w->ssh_fd);
        if (r >= 0 && w->ssh_fd >= 0)
                r = sd_event_add_io(event, &w->ssh_source, w->ssh_fd, EPOLLIN, on_ssh_output, w);
        if (r >= 0)
                r = sd_bus_attach_event(w->bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0 && (flags & CTL_WATCH_FOLLOW))
                r = add_matches(w);
        if (r >= 0)
                r = start_load(w);
        if (r < 0) {
                cancel_calls(w);
                w->connect_error = g_strdup(strerror(-r));
                r = sd_event_add_defer(event, &w->defer_source, on_connect_failed, w);
                if (r < 0)
                        return r;
        }
        *ret = g_steal_pointer(&w);
        return 0;
}

CtlWatch *ctl_watch_free(CtlWatch *w)
{
        if (!w)
                return NULL;
        cancel_calls(w);
        if (w->bus) {
                (void) sd_bus_detach_event(w->bus);
                /* Nothing is left to send; a flush would wait for an ssh that does not connect. */
                sd_bus_close_unref(w->bus);
        }
        sd_event_source_disable_unref(w->ssh_source);
        sd_event_source_disable_unref(w->defer_source);
        if (w->ssh_fd >= 0)
                (void) close(w->ssh_fd);
        g_string_free(w->ssh_text, TRUE);
        g_free(w->connect_error);
        manager_info_clear(&w->manager);
        g_hash_table_unref(w->domains);
        sd_event_unref(w->event);
        g_free(w->host);
        g_free(w);
        return NULL;
}

const ManagerInfo *ctl_watch_manager(const CtlWatch *w)
{
        return &w->manager;
}

static int compare_domains(gconstpointer a, gconstpointer b)
{
        const DomainInfo *x = *(const DomainInfo *const *) a, *y = *(const DomainInfo *const *) b;
        int c = g_strcmp0(x->name, y->name);

        return c != 0 ? c : g_strcmp0(x->object, y->object);
}

const DomainInfo **ctl_watch_domains(const CtlWatch *w, size_t *ret_n)
{
        g_autoptr(GPtrArray) values = g_ptr_array_new();
        GHashTableIter it;
        gpointer value;

        g_hash_table_iter_init(&it, w->domains);
        while (g_hash_table_iter_next(&it, NULL, &value))
                g_ptr_array_add(values, value);
        g_ptr_array_sort(values, compare_domains);
        *ret_n = values->len;
        g_ptr_array_add(values, NULL);
        return (const DomainInfo **) g_ptr_array_free(g_steal_pointer(&values), FALSE);
}

/* ---- the loop ---- */

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        return sd_event_exit(sd_event_source_get_event(s), EXIT_SUCCESS);
}

int ctl_event_new(sd_event **ret)
{
        static const int signals[] = { SIGINT, SIGTERM, SIGHUP };
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        for (size_t i = 0; i < ELEMENTSOF(signals); i++)
                sigaddset(&mask, signals[i]);
        (void) sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&event);
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(signals); i++)
                r = sd_event_add_signal(event, NULL, signals[i], on_exit_signal, NULL);
        if (r < 0) {
                ctl_log_error("Failed to set up the event loop: %s", strerror(-r));
                return r;
        }
        *ret = g_steal_pointer(&event);
        return 0;
}

int ctl_event_run(sd_event *event)
{
        int r = sd_event_loop(event);

        if (r > 0)
                return -EIO; /* the reason was logged */
        if (r < 0)
                ctl_log_error("Event loop failed: %s", strerror(-r));
        return r;
}
