/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * monitor: one line per event, as it happens, until SIGINT or SIGTERM. Events: ticks,
 * balloon changes, settings and guest properties that really changed (memcoordd announces some
 * properties every tick; the last value seen is kept so only changes are printed), guests
 * appearing and going, and memcoordd itself stopping and starting.
 */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-event.h>
#include <time.h>

#include "ctl.h"
#include "memcoord/escape.h"
#include "memcoord/macro.h"
#include "memcoord/memcoord.h"

typedef struct Prop {
        char *name;
        char type; /* 's', 'o', 't', 'u', 'b' */
        uint64_t num;
        char *str;
} Prop;

typedef struct MonDomain {
        char *name;
        GHashTable *props; /* property name -> canonical value text */
} MonDomain;

typedef struct Monitor {
        sd_event *event;
        sd_bus *bus;
        GHashTable *manager; /* property name -> canonical value text */
        GHashTable *domains; /* object path -> MonDomain */
        bool json;
} Monitor;

static void prop_free(gpointer p)
{
        Prop *x = p;

        if (!x)
                return;
        g_free(x->name);
        g_free(x->str);
        g_free(x);
}

static void mon_domain_free(gpointer p)
{
        MonDomain *d = p;

        if (!d)
                return;
        g_free(d->name);
        g_hash_table_unref(d->props);
        g_free(d);
}

static MonDomain *mon_domain_new(const char *name)
{
        MonDomain *d = g_new0(MonDomain, 1);

        d->name = g_strdup(name);
        d->props = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        return d;
}

/* Reads one "sv" dict entry's value; types this client does not know are skipped (NULL). */
static int read_value(sd_bus_message *m, const char *name, Prop **ret)
{
        const char *contents = NULL;
        Prop *p;
        int r;

        r = sd_bus_message_peek_type(m, NULL, &contents);
        if (r < 0)
                return r;
        if (!contents || strlen(contents) != 1 || !strchr("sotub", contents[0])) {
                *ret = NULL;
                return sd_bus_message_skip(m, "v");
        }
        p = g_new0(Prop, 1);
        p->name = g_strdup(name);
        p->type = contents[0];
        r = sd_bus_message_enter_container(m, 'v', contents);
        if (r >= 0) {
                if (p->type == 's' || p->type == 'o') {
                        const char *s;

                        r = sd_bus_message_read_basic(m, p->type, &s);
                        if (r >= 0)
                                p->str = g_strdup(s);
                } else if (p->type == 't')
                        r = sd_bus_message_read_basic(m, 't', &p->num);
                else if (p->type == 'u') {
                        uint32_t u = 0;

                        r = sd_bus_message_read_basic(m, 'u', &u);
                        p->num = u;
                } else {
                        int b = 0;

                        r = sd_bus_message_read_basic(m, 'b', &b);
                        p->num = !!b;
                }
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0) {
                prop_free(p);
                return r;
        }
        *ret = p;
        return 0;
}

/* Reads an a{sv} into props, in order. */
static int read_props(sd_bus_message *m, GPtrArray *props)
{
        int r;

        r = sd_bus_message_enter_container(m, 'a', "{sv}");
        if (r < 0)
                return r;
        for (;;) {
                const char *name;
                Prop *p = NULL;

                r = sd_bus_message_enter_container(m, 'e', "sv");
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                r = sd_bus_message_read(m, "s", &name);
                if (r >= 0)
                        r = read_value(m, name, &p);
                if (r < 0)
                        return r;
                if (p)
                        g_ptr_array_add(props, p);
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }
        return sd_bus_message_exit_container(m);
}

static char *prop_key(const Prop *p)
{
        if (p->type == 's' || p->type == 'o')
                return g_strdup_printf("%c:%s", p->type, p->str);
        return g_strdup_printf("%c:%" G_GUINT64_FORMAT, p->type, p->num);
}

static char *prop_human(const Prop *p)
{
        char buf[MAX(MC_SIZE_MAX_STRLEN, CTL_TIME_MAX_STRLEN)];

        switch (p->type) {
        case 's':
        case 'o':
                return g_strdup(p->str);
        case 'b':
                return g_strdup(p->num ? "yes" : "no");
        case 't':
                if (g_str_has_suffix(p->name, "Bytes"))
                        return g_strdup(ctl_format_size(buf, p->num));
                if (g_str_has_suffix(p->name, "USec"))
                        return g_strdup(p->num == UINT64_MAX ? "none" : ctl_format_interval(buf, p->num));
                return g_strdup_printf("%" G_GUINT64_FORMAT, p->num);
        default:
                return g_strdup_printf("%" G_GUINT64_FORMAT, p->num);
        }
}

static void prop_add_json(JsonBuilder *b, const Prop *p)
{
        json_builder_set_member_name(b, "value");
        if (p->type == 's' || p->type == 'o')
                json_builder_add_string_value(b, p->str);
        else if (p->type == 'b')
                json_builder_add_boolean_value(b, p->num != 0);
        else if (p->type == 't' && p->num == UINT64_MAX)
                json_builder_add_null_value(b);
        else
                json_builder_add_int_value(b, (gint64) MIN(p->num, (uint64_t) G_MAXINT64));
}

/* ---- output ---- */

static void print_line(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static void print_line(const char *fmt, ...)
{
        uint64_t now = ctl_now_realtime();
        time_t sec = (time_t) (now / MC_USEC_PER_SEC);
        struct tm tm;
        char stamp[16] = "";
        va_list ap;

        if (localtime_r(&sec, &tm))
                strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
        va_start(ap, fmt);
        g_autofree char *text = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        /* Lines hold guest names: escaped, a name cannot forge or hide a line. */
        g_autofree char *escaped = mc_escape(text);
        printf("%s.%03u %s\n", stamp, (unsigned) (now % MC_USEC_PER_SEC / 1000), escaped);
        /* Readers are often pipes: every line goes out at once. */
        fflush(stdout);
}

/* Starts a JSON event object; finish it with json_event_end(). */
static JsonBuilder *json_event_begin(const char *event)
{
        JsonBuilder *b = json_builder_new();

        json_builder_begin_object(b);
        json_builder_set_member_name(b, "time_usec");
        json_builder_add_int_value(b, (gint64) ctl_now_realtime());
        json_builder_set_member_name(b, "event");
        json_builder_add_string_value(b, event);
        return b;
}

static void json_event_end(JsonBuilder *b)
{
        json_builder_end_object(b);
        (void) ctl_print_json(b, false);
        g_object_unref(b);
}

static void json_add_string(JsonBuilder *b, const char *name, const char *value)
{
        json_builder_set_member_name(b, name);
        if (value)
                json_builder_add_string_value(b, value);
        else
                json_builder_add_null_value(b);
}

static void json_add_uint(JsonBuilder *b, const char *name, uint64_t value)
{
        json_builder_set_member_name(b, name);
        json_builder_add_int_value(b, (gint64) MIN(value, (uint64_t) G_MAXINT64));
}

/* ---- state ---- */

/* Records props in cache and prints those that changed. object names the guest, or NULL for
 * the manager. */
static void apply_props(Monitor *mon, const char *path, MonDomain *dom, GPtrArray *props, bool print)
{
        GHashTable *cache = dom ? dom->props : mon->manager;

        for (guint i = 0; i < props->len; i++) {
                const Prop *p = props->pdata[i];
                g_autofree char *key = prop_key(p);
                const char *old = g_hash_table_lookup(cache, p->name);

                /* These change every tick; the tick line carries them. */
                if (!dom && (strcmp(p->name, "TickCount") == 0 || strcmp(p->name, "HostFreeBytes") == 0))
                        continue;
                if (old && strcmp(old, key) == 0)
                        continue;
                g_hash_table_replace(cache, g_strdup(p->name), g_strdup(key));
                if (dom && strcmp(p->name, "Name") == 0 && p->str && strcmp(p->str, dom->name) != 0) {
                        g_free(dom->name);
                        dom->name = g_strdup(p->str);
                }
                if (!print || !old)
                        continue;
                if (mon->json) {
                        JsonBuilder *b = json_event_begin("property");

                        json_add_string(b, "object", path);
                        json_add_string(b, "name", dom ? dom->name : NULL);
                        json_add_string(b, "property", p->name);
                        prop_add_json(b, p);
                        json_event_end(b);
                } else {
                        g_autofree char *value = prop_human(p);

                        if (dom)
                                print_line("%s: %s: %s", dom->name, p->name, value);
                        else
                                print_line("%s: %s", p->name, value);
                }
        }
}

static const char *props_find_string(GPtrArray *props, const char *name)
{
        for (guint i = 0; i < props->len; i++) {
                const Prop *p = props->pdata[i];

                if (strcmp(p->name, name) == 0 && p->str)
                        return p->str;
        }
        return NULL;
}

/* Adds (or refreshes) a guest from its properties; returns it. */
static MonDomain *add_domain(Monitor *mon, const char *path, GPtrArray *props, bool *ret_new)
{
        MonDomain *dom = g_hash_table_lookup(mon->domains, path);
        const char *name = props_find_string(props, "Name");

        *ret_new = !dom;
        if (!dom) {
                dom = mon_domain_new(name ? name : path);
                g_hash_table_insert(mon->domains, g_strdup(path), dom);
        }
        apply_props(mon, path, dom, props, false);
        return dom;
}

static int load_state(Monitor *mon, sd_bus_error *error)
{
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL, *objects = NULL;
        g_autoptr(GPtrArray) props = g_ptr_array_new_with_free_func(prop_free);
        int r;

        r = sd_bus_call_method(mon->bus, MC_BUS_NAME, MC_MANAGER_PATH, "org.freedesktop.DBus.Properties",
                               "GetAll", error, &reply, "s", MC_MANAGER_INTERFACE);
        if (r < 0)
                return r;
        r = sd_bus_call_method(mon->bus, MC_BUS_NAME, MC_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager",
                               "GetManagedObjects", error, &objects, NULL);
        if (r < 0)
                return r;

        r = read_props(reply, props);
        if (r < 0)
                goto bad;
        g_hash_table_remove_all(mon->manager);
        apply_props(mon, MC_MANAGER_PATH, NULL, props, false);

        g_hash_table_remove_all(mon->domains);
        r = sd_bus_message_enter_container(objects, 'a', "{oa{sa{sv}}}");
        while (r > 0) {
                const char *path;

                r = sd_bus_message_enter_container(objects, 'e', "oa{sa{sv}}");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(objects, "o", &path);
                if (r >= 0)
                        r = sd_bus_message_enter_container(objects, 'a', "{sa{sv}}");
                while (r > 0) {
                        const char *interface;

                        r = sd_bus_message_enter_container(objects, 'e', "sa{sv}");
                        if (r <= 0)
                                break;
                        r = sd_bus_message_read(objects, "s", &interface);
                        if (r >= 0 && strcmp(interface, MC_DOMAIN_INTERFACE) == 0) {
                                g_autoptr(GPtrArray) dp = g_ptr_array_new_with_free_func(prop_free);
                                bool is_new;

                                r = read_props(objects, dp);
                                if (r >= 0)
                                        (void) add_domain(mon, path, dp, &is_new);
                        } else if (r >= 0)
                                r = sd_bus_message_skip(objects, "a{sv}");
                        if (r >= 0)
                                r = sd_bus_message_exit_container(objects);
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(objects);
                if (r >= 0)
                        r = sd_bus_message_exit_container(objects);
                if (r >= 0)
                        r = 1;
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(objects);
        if (r >= 0)
                return 0;
bad:
        return sd_bus_error_set_errnof(error, r, "Unexpected reply from memcoordd: %s", strerror(-r));
}

/* ---- signal handlers ---- */

static int on_tick(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Monitor *mon = userdata;
        uint64_t tick, host_free;
        uint32_t managed, changed;
        char buf[MC_SIZE_MAX_STRLEN];

        if (sd_bus_message_read(m, "ttuu", &tick, &host_free, &managed, &changed) < 0)
                return 0;
        if (mon->json) {
                JsonBuilder *b = json_event_begin("tick");

                json_add_uint(b, "tick", tick);
                json_add_uint(b, "host_free_bytes", host_free);
                json_add_uint(b, "managed", managed);
                json_add_uint(b, "changed", changed);
                json_event_end(b);
        } else
                print_line("tick %" PRIu64 ": host free %s, %" PRIu32 " managed, %" PRIu32 " changed", tick,
                           ctl_format_size(buf, host_free), managed, changed);
        return 0;
}

static int on_balloon(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Monitor *mon = userdata;
        const char *path, *name, *reason;
        uint64_t from, to;
        char a[MC_SIZE_MAX_STRLEN], b2[MC_SIZE_MAX_STRLEN];

        if (sd_bus_message_read(m, "ostts", &path, &name, &from, &to, &reason) < 0)
                return 0;
        if (mon->json) {
                JsonBuilder *b = json_event_begin("balloon");

                json_add_string(b, "object", path);
                json_add_string(b, "name", name);
                json_add_uint(b, "from_bytes", from);
                json_add_uint(b, "to_bytes", to);
                json_add_string(b, "reason", reason);
                json_event_end(b);
        } else {
                char delta[MC_SIZE_MAX_STRLEN];

                /* The change itself: two rounded sizes can read the same. */
                print_line("%s: balloon %s -> %s (%c%s, %s)", name, ctl_format_size(a, from),
                           ctl_format_size(b2, to), to >= from ? '+' : '-',
                           ctl_format_size(delta, to >= from ? to - from : from - to), reason);
        }
        return 0;
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Monitor *mon = userdata;
        g_autoptr(GPtrArray) props = g_ptr_array_new_with_free_func(prop_free);
        const char *path = sd_bus_message_get_path(m), *interface;

        if (!path || sd_bus_message_read(m, "s", &interface) < 0 || read_props(m, props) < 0)
                return 0;
        if (strcmp(interface, MC_MANAGER_INTERFACE) == 0 && strcmp(path, MC_MANAGER_PATH) == 0)
                apply_props(mon, path, NULL, props, true);
        else if (strcmp(interface, MC_DOMAIN_INTERFACE) == 0) {
                MonDomain *dom = g_hash_table_lookup(mon->domains, path);

                if (dom)
                        apply_props(mon, path, dom, props, true);
                else {
                        bool is_new;

                        (void) add_domain(mon, path, props, &is_new);
                }
        }
        return 0;
}

static int on_interfaces_added(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Monitor *mon = userdata;
        const char *path;
        int r;

        r = sd_bus_message_read(m, "o", &path);
        if (r >= 0)
                r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
        while (r > 0) {
                const char *interface;

                r = sd_bus_message_enter_container(m, 'e', "sa{sv}");
                if (r <= 0)
                        break;
                r = sd_bus_message_read(m, "s", &interface);
                if (r < 0)
                        break;
                if (strcmp(interface, MC_DOMAIN_INTERFACE) != 0) {
                        r = sd_bus_message_skip(m, "a{sv}");
                } else {
                        g_autoptr(GPtrArray) props = g_ptr_array_new_with_free_func(prop_free);
                        MonDomain *dom;
                        bool is_new;

                        r = read_props(m, props);
                        if (r < 0)
                                break;
                        dom = add_domain(mon, path, props, &is_new);
                        const char *status = props_find_string(props, "Status");
                        if (is_new && mon->json) {
                                JsonBuilder *b = json_event_begin("domain-added");

                                json_add_string(b, "object", path);
                                json_add_string(b, "name", dom->name);
                                json_add_string(b, "status", status);
                                json_event_end(b);
                        } else if (is_new)
                                print_line("%s: appeared (%s)", dom->name, status ? status : "unknown");
                }
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
                if (r >= 0)
                        r = 1;
        }
        return 0;
}

static int on_interfaces_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Monitor *mon = userdata;
        g_auto(GStrv) interfaces = NULL;
        const char *path;
        MonDomain *dom;

        if (sd_bus_message_read(m, "o", &path) < 0 || sd_bus_message_read_strv(m, &interfaces) < 0)
                return 0;
        if (!interfaces || !g_strv_contains((const char *const *) interfaces, MC_DOMAIN_INTERFACE))
                return 0;
        dom = g_hash_table_lookup(mon->domains, path);
        if (!dom)
                return 0;
        if (mon->json) {
                JsonBuilder *b = json_event_begin("domain-removed");

                json_add_string(b, "object", path);
                json_add_string(b, "name", dom->name);
                json_event_end(b);
        } else
                print_line("%s: gone", dom->name);
        g_hash_table_remove(mon->domains, path);
        return 0;
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Monitor *mon = userdata;
        const char *name, *old_owner, *new_owner;

        if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
            strcmp(name, MC_BUS_NAME) != 0)
                return 0;
        if (new_owner[0] == '\0') {
                g_hash_table_remove_all(mon->domains);
                if (mon->json)
                        json_event_end(json_event_begin("daemon-stopped"));
                else
                        print_line("memcoordd stopped");
        } else {
                sd_bus_error error = SD_BUS_ERROR_NULL;

                if (mon->json)
                        json_event_end(json_event_begin("daemon-started"));
                else
                        print_line("memcoordd started");
                /* The new instance's settings become the reference; a failure here only means
                 * the first changes are printed against what was known before. */
                (void) load_state(mon, &error);
                sd_bus_error_free(&error);
        }
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error)
{
        Monitor *mon = userdata;

        ctl_log_error("Lost the connection to the bus");
        return sd_event_exit(mon->event, EXIT_FAILURE);
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        return sd_event_exit(sd_event_source_get_event(s), EXIT_SUCCESS);
}

static int add_matches(Monitor *mon)
{
        static const struct {
                const char *sender, *path, *interface, *member;
                sd_bus_message_handler_t handler;
        } signals[] = {
                {MC_BUS_NAME, MC_MANAGER_PATH, MC_MANAGER_INTERFACE, "TickCompleted", on_tick},
                {MC_BUS_NAME, MC_MANAGER_PATH, MC_MANAGER_INTERFACE, "BalloonChanged", on_balloon},
                {MC_BUS_NAME, MC_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesAdded",
                 on_interfaces_added},
                {MC_BUS_NAME, MC_MANAGER_PATH, "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved",
                 on_interfaces_removed},
                {"org.freedesktop.DBus.Local", "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                 "Disconnected", on_disconnected},
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                r = sd_bus_match_signal(mon->bus, NULL, signals[i].sender, signals[i].path,
                                        signals[i].interface, signals[i].member, signals[i].handler, mon);
                if (r < 0)
                        return r;
        }
        r = sd_bus_add_match(mon->bus, NULL,
                             "type='signal',sender='" MC_BUS_NAME
                             "',interface='org.freedesktop.DBus.Properties',"
                             "member='PropertiesChanged',path_namespace='" MC_MANAGER_PATH "'",
                             on_properties_changed, mon);
        if (r < 0)
                return r;
        return sd_bus_add_match(
                mon->bus, NULL,
                "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                "interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='" MC_BUS_NAME "'",
                on_name_owner_changed, mon);
}

int verb_monitor(int argc, char **argv)
{
        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        Monitor mon = {.json = ctl_args.json != JSON_OFF};
        sigset_t mask;
        int r;

        r = ctl_connect(&bus);
        if (r < 0)
                return r;
        mon.bus = bus;
        mon.manager = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        mon.domains = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, mon_domain_free);

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&event);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, on_exit_signal, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, on_exit_signal, NULL);
        if (r < 0) {
                ctl_log_error("Failed to set up the event loop: %s", strerror(-r));
                goto finish;
        }
        mon.event = event;

        /* Listen first, then read: nothing falls between the two. */
        r = add_matches(&mon);
        if (r < 0) {
                ctl_log_error("Failed to subscribe to memcoordd's signals: %s", strerror(-r));
                goto finish;
        }
        r = load_state(&mon, &error);
        if (r < 0) {
                g_autofree char *reason = ctl_error_reason(&error, r, NULL);

                ctl_log_error("Failed to read memcoordd's state: %s", reason);
                goto finish;
        }

        r = sd_event_loop(event);
        if (r > 0)
                r = -EIO; /* the reason was logged */
        else if (r < 0)
                ctl_log_error("Event loop failed: %s", strerror(-r));
finish:
        sd_bus_error_free(&error);
        if (bus)
                (void) sd_bus_detach_event(bus);
        g_hash_table_unref(mon.manager);
        g_hash_table_unref(mon.domains);
        return r;
}
