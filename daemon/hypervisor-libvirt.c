/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "hypervisor.h"

#include <errno.h>
#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "hypervisor-libvirt.h"
#include "log.h"
#include "memcoord/memcoord.h"
#include "memcoord/units.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

/*
 * A running domain's libvirt handle and what libvirt needs remembered about it between
 * collects: answers asked once, and what is still to be asked. Facts about the guest (its
 * figures, its maximum, the settings of its definition) live in McGuest: a reading carries
 * them there, and the settings only when they were read.
 */
typedef struct DomainHandle {
        virDomainPtr dom;
        unsigned generation;     /* last collect that saw it */
        bool has_balloon_device; /* from its XML, read once ... */
        bool device_known;       /* ... when it could be read: until then asked every collect */
        bool period_tried;       /* we asked for a stats period once */
        bool meta_pending;       /* its settings to be read for the next reading: first sight,
                                  * libvirt said they changed, or the last read failed */
        bool meta_failed;        /* the last read of its definition or settings failed: said
                                  * once, asked again quietly */
        bool in_job;             /* a set found an async job (dump, save, migration) running */
        /* virDomainGetInfo's answer, asked once, only for a record without balloon.maximum
         * (or, for a guest without a balloon, balloon.current): libvirt's test driver leaves
         * them out, QEMU never does. Neither can change while the domain runs (libvirt
         * refuses a new maximum on an active domain; without a balloon nothing moves its
         * memory), and a new run is a new handle. */
        uint64_t info_max_kib;
        uint64_t info_memory_kib;
} DomainHandle;

typedef struct Libvirt {
        virConnectPtr conn;
        bool node_stats_unsupported;
        int node_nparams; /* fields of virNodeGetMemoryStats; 0 = not asked yet */
        int lifecycle_id;
        int metadata_id;
        GHashTable *known; /* uuid -> DomainHandle* */
        unsigned generation;
} Libvirt;

static Libvirt *impl(McHypervisor *h)
{
        return h->impl;
}

/* ---- memcoord's settings in the domain XML ---- */

typedef struct MetaParse {
        McGuestMeta meta;
        bool found;
        char *why;
} MetaParse;

static const char *local_name(const char *element)
{
        const char *colon = strchr(element, ':');

        return colon ? colon + 1 : element;
}

static bool parse_meta_size(const char *v, uint64_t *ret_kib)
{
        uint64_t bytes;

        if (mc_parse_size(v, &bytes) < 0)
                return false;
        /* Up to whole KiB, so a non-zero size stays non-zero. */
        *ret_kib = bytes / MC_BYTES_PER_KIB + (bytes % MC_BYTES_PER_KIB != 0);
        return true;
}

static void meta_start(GMarkupParseContext *ctx, const char *element, const char **names,
                       const char **values, gpointer userdata, GError **error)
{
        MetaParse *p = userdata;

        /* The outermost element is ours: libvirt picked it by namespace. */
        if (g_markup_parse_context_get_element_stack(ctx)->next ||
            !g_str_equal(local_name(element), "limits"))
                return;
        p->found = true;
        for (size_t i = 0; names[i]; i++) {
                const char *n = local_name(names[i]), *v = values[i];
                char *end = NULL;

                if (g_str_has_prefix(names[i], "xmlns"))
                        continue;
                if (g_str_equal(n, "min") || g_str_equal(n, "max")) {
                        uint64_t kib;
                        if (!parse_meta_size(v, &kib)) {
                                p->why = g_strdup_printf("%s=\"%s\" is not a size", n, v);
                                return;
                        }
                        *(g_str_equal(n, "min") ? &p->meta.min_kib : &p->meta.max_kib) = kib;
                } else if (g_str_equal(n, "weight")) {
                        unsigned long w = strtoul(v, &end, 10);
                        if (!v[0] || *end || w < 1 || w > 10000) {
                                p->why = g_strdup_printf("weight=\"%s\" is not a weight from 1 to 10000", v);
                                return;
                        }
                        p->meta.weight = (unsigned) w;
                } else if (g_str_equal(n, "exclude")) {
                        if (g_str_equal(v, "yes") || g_str_equal(v, "true") || g_str_equal(v, "1"))
                                p->meta.excluded = 1;
                        else if (g_str_equal(v, "no") || g_str_equal(v, "false") || g_str_equal(v, "0"))
                                p->meta.excluded = 0;
                        else {
                                p->why = g_strdup_printf("exclude=\"%s\" is not yes or no", v);
                                return;
                        }
                }
                /* Other attributes are left for later versions of the format. */
        }
}

int mc_libvirt_parse_meta(const char *xml, McGuestMeta *meta, char **why)
{
        static const GMarkupParser parser = { .start_element = meta_start };
        MetaParse p = { .meta = *meta };
        g_autoptr(GError) error = NULL;
        g_autoptr(GMarkupParseContext) ctx = NULL;

        p.meta.min_kib = p.meta.max_kib = 0;
        p.meta.weight = 0;
        p.meta.excluded = -1;
        ctx = g_markup_parse_context_new(&parser, G_MARKUP_PREFIX_ERROR_POSITION, &p, NULL);
        if (!g_markup_parse_context_parse(ctx, xml, -1, &error) ||
            !g_markup_parse_context_end_parse(ctx, &error)) {
                g_free(p.why);
                *why = g_strdup(error->message);
                return -EINVAL;
        }
        if (!p.why && !p.found)
                p.why = g_strdup("no <limits> element");
        if (!p.why && p.meta.min_kib > 0 && p.meta.max_kib > 0 && p.meta.min_kib > p.meta.max_kib)
                p.why = g_strdup("min is larger than max");
        if (p.why) {
                *why = p.why;
                return -EINVAL;
        }
        *meta = p.meta;
        return 0;
}

typedef struct MemtuneParse {
        bool in_min_guarantee;
        uint64_t factor;
        GString *text;
} MemtuneParse;

static uint64_t unit_factor(const char *unit)
{
        static const struct {
                const char *name;
                uint64_t bytes;
        } units[] = {
                { "b", 1 },
                { "bytes", 1 },
                { "k", 1024 },
                { "KiB", 1024 },
                { "KB", 1000 },
                { "M", 1 << 20 },
                { "MiB", 1 << 20 },
                { "MB", 1000000 },
                { "G", 1 << 30 },
                { "GiB", 1 << 30 },
                { "GB", 1000000000 },
                { "T", UINT64_C(1) << 40 },
                { "TiB", UINT64_C(1) << 40 },
                { "TB", UINT64_C(1000000000000) },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(units); i++)
                if (g_ascii_strcasecmp(unit, units[i].name) == 0)
                        return units[i].bytes;
        return 0;
}

static void memtune_start(GMarkupParseContext *ctx, const char *element, const char **names,
                          const char **values, gpointer userdata, GError **error)
{
        MemtuneParse *p = userdata;
        const GSList *stack = g_markup_parse_context_get_element_stack(ctx);

        /* domain > memtune > min_guarantee, nowhere else. */
        if (!g_str_equal(element, "min_guarantee") || !stack->next ||
            !g_str_equal(stack->next->data, "memtune") || !stack->next->next ||
            !g_str_equal(stack->next->next->data, "domain") || stack->next->next->next)
                return;
        p->in_min_guarantee = true;
        p->factor = 1024; /* libvirt's default unit: KiB */
        for (size_t i = 0; names[i]; i++)
                if (g_str_equal(names[i], "unit"))
                        p->factor = unit_factor(values[i]);
}

static void memtune_end(GMarkupParseContext *ctx, const char *element, gpointer userdata, GError **error)
{
        ((MemtuneParse *) userdata)->in_min_guarantee = false;
}

static void memtune_text(GMarkupParseContext *ctx, const char *text, gsize len, gpointer userdata,
                         GError **error)
{
        MemtuneParse *p = userdata;

        if (p->in_min_guarantee)
                g_string_append_len(p->text, text, (gssize) len);
}

uint64_t mc_libvirt_parse_min_guarantee(const char *domain_xml)
{
        static const GMarkupParser parser = {
                .start_element = memtune_start,
                .end_element = memtune_end,
                .text = memtune_text,
        };
        MemtuneParse p = { .text = g_string_new(NULL) };
        g_autoptr(GMarkupParseContext) ctx = g_markup_parse_context_new(&parser, 0, &p, NULL);
        uint64_t kib = 0;

        if (g_markup_parse_context_parse(ctx, domain_xml, -1, NULL) &&
            g_markup_parse_context_end_parse(ctx, NULL) && p.factor > 0) {
                g_strstrip(p.text->str);
                char *end = NULL;
                unsigned long long v = g_ascii_strtoull(p.text->str, &end, 10);
                if (p.text->str[0] && end && *end == '\0' && v <= UINT64_MAX / p.factor) {
                        uint64_t bytes = v * p.factor;
                        kib = bytes / 1024 + (bytes % 1024 != 0);
                }
        }
        g_string_free(p.text, TRUE);
        return kib;
}

/* Exact sizes: the largest binary unit that divides them. */
static char *format_meta_size(uint64_t kib)
{
        if (kib % (UINT64_C(1) << 20) == 0)
                return g_strdup_printf("%" G_GUINT64_FORMAT "G", kib >> 20);
        if (kib % 1024 == 0)
                return g_strdup_printf("%" G_GUINT64_FORMAT "M", kib >> 10);
        return g_strdup_printf("%" G_GUINT64_FORMAT "K", kib);
}

char *mc_libvirt_format_meta(const McGuestMeta *meta)
{
        GString *s;

        if (meta->min_kib == 0 && meta->max_kib == 0 && meta->weight == 0 && meta->excluded < 0)
                return NULL;
        s = g_string_new("<limits");
        if (meta->min_kib > 0) {
                g_autofree char *v = format_meta_size(meta->min_kib);
                g_string_append_printf(s, " min=\"%s\"", v);
        }
        if (meta->max_kib > 0) {
                g_autofree char *v = format_meta_size(meta->max_kib);
                g_string_append_printf(s, " max=\"%s\"", v);
        }
        if (meta->weight > 0)
                g_string_append_printf(s, " weight=\"%u\"", meta->weight);
        if (meta->excluded >= 0)
                g_string_append_printf(s, " exclude=\"%s\"", meta->excluded ? "yes" : "no");
        g_string_append(s, "/>");
        return g_string_free(s, FALSE);
}

static void domain_handle_free(gpointer p)
{
        DomainHandle *k = p;

        if (!k)
                return;
        if (k->dom)
                virDomainFree(k->dom);
        g_free(k);
}

/* libvirt prints every error on stderr unless told otherwise; we report them ourselves. */
static void silence_libvirt(void *userdata, virErrorPtr error)
{
}

static int translate_error(McHypervisor *h, const char *what)
{
        virErrorPtr e = virGetLastError();
        int code = e ? e->code : VIR_ERR_INTERNAL_ERROR;
        int r;

        (void) mc_hypervisor_fail(h, 0, "%s: %s", what,
                                  e && e->message ? e->message : "unknown libvirt error");

        switch (code) {
        case VIR_ERR_NO_DOMAIN:
                r = -ENOENT;
                break;
        case VIR_ERR_NO_SUPPORT:
        case VIR_ERR_OPERATION_UNSUPPORTED:
        case VIR_ERR_ARGUMENT_UNSUPPORTED:
                r = -EOPNOTSUPP;
                break;
        case VIR_ERR_INVALID_ARG:
        case VIR_ERR_OPERATION_INVALID:
                r = -EINVAL;
                break;
        case VIR_ERR_AUTH_FAILED:
        case VIR_ERR_AUTH_CANCELLED:
        case VIR_ERR_ACCESS_DENIED:
        case VIR_ERR_OPERATION_DENIED:
                r = -EACCES;
                break;
        case VIR_ERR_OPERATION_TIMEOUT:
                r = -ETIMEDOUT;
                break;
        case VIR_ERR_NO_CONNECT:
        case VIR_ERR_INVALID_CONN:
        case VIR_ERR_RPC:
        case VIR_ERR_SYSTEM_ERROR:
                r = -ECONNRESET;
                break;
        default:
                r = -EIO;
        }
        virResetLastError();

        /* A dead connection is only noted here: the manager hears of it after the tick. */
        if (impl(h)->conn && h->connected && virConnectIsAlive(impl(h)->conn) != 1) {
                virResetLastError();
                mc_hypervisor_lost(h);
                r = -ENOTCONN;
        }
        return r;
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
        /* Only noted: the connection is closed at the next connect, not inside libvirt's own
         * callback. */
        mc_hypervisor_lost(opaque);
}

static void libvirt_disconnect(McHypervisor *h)
{
        Libvirt *l = impl(h);

        if (!l->conn)
                return;
        if (l->lifecycle_id >= 0)
                (void) virConnectDomainEventDeregisterAny(l->conn, l->lifecycle_id);
        if (l->metadata_id >= 0)
                (void) virConnectDomainEventDeregisterAny(l->conn, l->metadata_id);
        l->metadata_id = -1;
        (void) virConnectUnregisterCloseCallback(l->conn, on_close);
        l->lifecycle_id = -1;
        g_hash_table_remove_all(l->known);
        (void) virConnectClose(l->conn);
        virResetLastError();
        l->conn = NULL;
}

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        McHypervisor *h = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN];
        McDomainEvent e;

        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
        case VIR_DOMAIN_EVENT_RESUMED:
                e = MC_DOMAIN_EVENT_STARTED;
                break;
        case VIR_DOMAIN_EVENT_STOPPED:
        case VIR_DOMAIN_EVENT_CRASHED:
                e = MC_DOMAIN_EVENT_STOPPED;
                break;
        default:
                return 0;
        }
        if (virDomainGetUUIDString(dom, uuid) < 0) {
                virResetLastError();
                return 0;
        }
        if (e == MC_DOMAIN_EVENT_STOPPED)
                g_hash_table_remove(impl(h)->known, uuid);
        mc_hypervisor_domain_event(h, uuid, virDomainGetName(dom), e);
        return 0;
}

/* Someone changed the guest's metadata (virsh metadata, virDomainSetMetadata, us): read
 * ours again at the next collect, which is within a tick. */
static void on_metadata_change(virConnectPtr conn, virDomainPtr dom, int type, const char *nsuri,
                               void *opaque)
{
        McHypervisor *h = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN];
        DomainHandle *k;

        if (type != VIR_DOMAIN_METADATA_ELEMENT || !nsuri || !g_str_equal(nsuri, MC_LIBVIRT_META_NS))
                return;
        if (virDomainGetUUIDString(dom, uuid) < 0) {
                virResetLastError();
                return;
        }
        k = g_hash_table_lookup(impl(h)->known, uuid);
        if (k)
                k->meta_pending = true;
}

static int libvirt_init(McHypervisor *h)
{
        Libvirt *l = g_new0(Libvirt, 1);

        l->lifecycle_id = -1;
        l->metadata_id = -1;
        l->known = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, domain_handle_free);
        h->impl = l;
        virSetErrorFunc(NULL, silence_libvirt);
        return 0;
}

static void libvirt_free(McHypervisor *h)
{
        Libvirt *l = impl(h);

        g_hash_table_unref(l->known);
        g_free(l);
        h->impl = NULL;
}

static int libvirt_connect(McHypervisor *h)
{
        Libvirt *l = impl(h);
        const char *type;

        l->conn = virConnectOpen(h->uri);
        if (!l->conn)
                return translate_error(h, "Failed to connect");

        type = virConnectGetType(l->conn);
        h->synthetic_stamps = type && g_ascii_strcasecmp(type, "TEST") == 0;
        l->node_stats_unsupported = false;
        l->node_nparams = 0;
        virResetLastError();

        /* Keepalive needs a remote connection; local drivers refuse it, which is fine. A dead
         * libvirtd is noticed after 5 s x (3 + 1) at most: the bound on any call. */
        if (virConnectSetKeepAlive(l->conn, 5, 3) < 0)
                virResetLastError();
        if (virConnectRegisterCloseCallback(l->conn, on_close, h, NULL) < 0)
                virResetLastError();
        l->lifecycle_id = virConnectDomainEventRegisterAny(l->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                           VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), h, NULL);
        if (l->lifecycle_id < 0) {
                int r = translate_error(h, "Failed to subscribe to lifecycle events");
                libvirt_disconnect(h);
                return r;
        }
        /* Without it (a libvirt too old for the event), metadata is read when a guest appears. */
        l->metadata_id =
                virConnectDomainEventRegisterAny(l->conn, NULL, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
                                                 VIR_DOMAIN_EVENT_CALLBACK(on_metadata_change), h, NULL);
        if (l->metadata_id < 0) {
                mc_log_id(LOG_INFO, MC_MESSAGE_METADATA_EVENTS_UNSUPPORTED,
                          "No metadata change events from %s: guests' settings are read when they appear",
                          h->uri);
                virResetLastError();
        }
        return 0;
}

/* The handle of a domain, made at first sight; then *ret_xml is its XML (NULL if it could not
 * be read), for the caller to read its settings from. */
static DomainHandle *learn_domain(McHypervisor *h, virDomainPtr dom, const char *uuid, char **ret_xml)
{
        DomainHandle *k = g_hash_table_lookup(impl(h)->known, uuid);
        char *xml;

        *ret_xml = NULL;
        if (k && k->dom != dom) {
                virDomainFree(k->dom);
                virDomainRef(dom);
                k->dom = dom;
        }
        if (k && k->device_known)
                return k;
        if (!k) {
                k = g_new0(DomainHandle, 1);
                virDomainRef(dom);
                k->dom = dom;
                k->meta_pending = true;
                g_hash_table_insert(impl(h)->known, g_strdup(uuid), k);
        }
        /* libvirt adds a virtio balloon to every QEMU guest unless told model='none'. */
        xml = virDomainGetXMLDesc(dom, 0);
        h->calls.other_calls++;
        if (xml) {
                k->device_known = true;
                k->has_balloon_device =
                        strstr(xml, "<memballoon") && !strstr(xml, "<memballoon model='none'");
        } else {
                (void) translate_error(h, "Failed to read the domain's definition");
        }
        *ret_xml = xml;
        return k;
}

/* Max memory (and current memory, for a guest without a balloon), asked once per run. */
static void learn_fixed_memory(McHypervisor *h, DomainHandle *k)
{
        virDomainInfo info;

        if (k->info_max_kib > 0)
                return;
        h->calls.other_calls++;
        if (virDomainGetInfo(k->dom, &info) < 0) {
                virResetLastError();
                return;
        }
        k->info_max_kib = info.maxMem;
        k->info_memory_kib = info.memory;
}

/* Reads the balloon fields of a bulk record; returns whether it had any. */
static bool read_bulk_record(virDomainStatsRecordPtr rec, McReading *st)
{
        bool any = false;

        for (int i = 0; i < rec->nparams; i++) {
                const virTypedParameter *p = &rec->params[i];
                unsigned long long v;

                if (p->type == VIR_TYPED_PARAM_ULLONG)
                        v = p->value.ul;
                else if (p->type == VIR_TYPED_PARAM_LLONG && p->value.l >= 0)
                        v = (unsigned long long) p->value.l;
                else
                        continue;

                if (!g_str_has_prefix(p->field, "balloon."))
                        continue;
                any = true;
                if (g_str_equal(p->field, "balloon.current"))
                        st->actual_kib = v;
                else if (g_str_equal(p->field, "balloon.maximum"))
                        st->max_kib = v;
                else if (g_str_equal(p->field, "balloon.unused")) {
                        st->unused_kib = v;
                        st->has_balloon = true;
                } else if (g_str_equal(p->field, "balloon.available"))
                        st->available_kib = v;
                else if (g_str_equal(p->field, "balloon.usable"))
                        st->usable_kib = v;
                else if (g_str_equal(p->field, "balloon.disk_caches"))
                        st->disk_caches_kib = v;
                else if (g_str_equal(p->field, "balloon.last-update"))
                        st->last_update = (int64_t) v;
        }
        return any;
}

static int read_domain_stats(McHypervisor *h, virDomainPtr dom, McReading *st)
{
        virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
        int n;

        h->calls.per_domain_calls++;
        n = virDomainMemoryStats(dom, stats, VIR_DOMAIN_MEMORY_STAT_NR, 0);
        if (n < 0)
                return translate_error(h, "Failed to read memory stats");
        for (int i = 0; i < n; i++) {
                switch (stats[i].tag) {
                case VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON:
                        st->actual_kib = stats[i].val;
                        break;
                case VIR_DOMAIN_MEMORY_STAT_UNUSED:
                        st->unused_kib = stats[i].val;
                        st->has_balloon = true;
                        break;
                case VIR_DOMAIN_MEMORY_STAT_AVAILABLE:
                        st->available_kib = stats[i].val;
                        break;
                case VIR_DOMAIN_MEMORY_STAT_USABLE:
                        st->usable_kib = stats[i].val;
                        break;
                case VIR_DOMAIN_MEMORY_STAT_DISK_CACHES:
                        st->disk_caches_kib = stats[i].val;
                        break;
                case VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE:
                        st->last_update = (int64_t) stats[i].val;
                        break;
                default:
                        break;
                }
        }
        return 0;
}

/*
 * A record with balloon.current but no guest figures: either the guest's stats do not flow
 * (no driver, no period) or a job holds its monitor, which NOWAIT did not wait for. The
 * control state tells which without waiting itself.
 */
static bool domain_busy(McHypervisor *h, virDomainPtr dom)
{
        virDomainControlInfo info;

        h->calls.other_calls++;
        if (virDomainGetControlInfo(dom, &info, 0) < 0) {
                virResetLastError();
                return false;
        }
        return info.state == VIR_DOMAIN_CONTROL_JOB || info.state == VIR_DOMAIN_CONTROL_OCCUPIED;
}

/*
 * An async job (virsh dump, save, migration) leaves the monitor to NOWAIT's queries and the
 * control state "ok", yet virDomainSetMemoryFlags waits for it up to libvirt's job timeout
 * (30 s), holding the loop. The job info tells: it takes only a query job, which an async
 * job admits at once (under a sync job the set would wait the same). 1: a job runs.
 */
static int domain_in_job(McHypervisor *h, virDomainPtr dom)
{
        virDomainJobInfo info;

        h->calls.other_calls++;
        if (virDomainGetJobInfo(dom, &info) < 0) {
                virResetLastError();
                return 0;
        }
        return info.type != VIR_DOMAIN_JOB_NONE;
}

/* A read of the settings failed: said once, and kept pending for the next collect. The
 * guest keeps the settings it has meanwhile (none, at first sight). */
static void meta_read_failed(DomainHandle *k, const char *name, const char *what)
{
        virErrorPtr e = virGetLastError();

        if (!k->meta_failed)
                mc_log_id(LOG_WARNING, MC_MESSAGE_METADATA_IGNORED,
                          "%s: failed to read %s: %s; trying again", name, what,
                          e && e->message ? e->message : "unknown error");
        virResetLastError();
        k->meta_failed = true;
}

/*
 * The settings the guest carries in its definition, as they are live, into the reading:
 * memcoord's element of its metadata and its <memtune><min_guarantee>. domain_xml is its XML
 * when at hand, else it is read here. No element is no settings, and so is a bad one; a driver
 * without metadata has none. Any other failure leaves them pending and the reading without.
 */
static void read_meta(McHypervisor *h, DomainHandle *k, const char *name, const char *domain_xml,
                      McReading *st)
{
        g_autofree char *own_xml = NULL, *xml = NULL, *why = NULL;
        McGuestMeta meta = MC_GUEST_META_NONE;

        if (!domain_xml) {
                h->calls.other_calls++;
                own_xml = virDomainGetXMLDesc(k->dom, 0);
                if (!own_xml) {
                        meta_read_failed(k, name, "its domain XML");
                        return;
                }
                domain_xml = own_xml;
        }
        h->calls.other_calls++;
        xml = virDomainGetMetadata(k->dom, VIR_DOMAIN_METADATA_ELEMENT, MC_LIBVIRT_META_NS,
                                   VIR_DOMAIN_AFFECT_LIVE);
        if (!xml) {
                virErrorPtr e = virGetLastError();
                int code = e ? e->code : VIR_ERR_NO_DOMAIN_METADATA;

                if (code == VIR_ERR_NO_SUPPORT || code == VIR_ERR_OPERATION_UNSUPPORTED)
                        /* Asking again would not help: as if there were none. */
                        mc_log_id(LOG_WARNING, MC_MESSAGE_METADATA_IGNORED,
                                  "%s: failed to read memcoord's metadata: %s", name,
                                  e->message ? e->message : "unknown error");
                else if (code != VIR_ERR_NO_DOMAIN_METADATA) {
                        meta_read_failed(k, name, "memcoord's metadata");
                        return;
                }
                virResetLastError();
        } else if (mc_libvirt_parse_meta(xml, &meta, &why) < 0)
                /* Said once per change: a bad element counts as none. */
                mc_log_id(LOG_WARNING, MC_MESSAGE_METADATA_IGNORED,
                          "%s: ignoring memcoord's metadata %s: %s", name, xml, why);
        meta.min_guarantee_kib = mc_libvirt_parse_min_guarantee(domain_xml);
        k->meta_pending = false;
        k->meta_failed = false;
        st->has_meta = true;
        st->meta = meta;
}

static void read_record(McHypervisor *h, virDomainStatsRecordPtr rec, unsigned stats_period_sec,
                        McReading *st)
{
        virDomainPtr dom = rec->dom;
        g_autofree char *xml = NULL;
        DomainHandle *k;

        if (virDomainGetUUIDString(dom, st->uuid) < 0) {
                virResetLastError();
                st->uuid[0] = '\0';
                return;
        }
        st->name = g_strdup(virDomainGetName(dom));
        k = learn_domain(h, dom, st->uuid, &xml);
        k->generation = impl(h)->generation;
        if (!k->device_known) {
                /* Whether it has a balloon is not known yet: nothing is read or set for it
                 * this collect (busy, its last figures stand), and its definition is asked
                 * again at the next. */
                if (!k->meta_failed)
                        mc_log_idf(LOG_WARNING, MC_MESSAGE_COLLECT_FAILED,
                                   (MC_LOG_DOMAIN(st->name, st->uuid), MC_LOG_STR("MEMCOORD_ERROR", h->error)),
                                   "%s: %s; asked again at the next collect", st->name, h->error);
                k->meta_failed = true;
                st->busy = true;
                return;
        }
        if (k->meta_pending)
                read_meta(h, k, st->name, xml, st);

        bool any = read_bulk_record(rec, st);
        if (!k->has_balloon_device) {
                /* Without a balloon its memory cannot move: what it had at first sight is
                 * what it has, and it still counts toward the budget. */
                st->has_balloon = false;
                learn_fixed_memory(h, k);
                if (st->actual_kib == 0)
                        st->actual_kib = k->info_memory_kib;
                if (st->max_kib == 0)
                        st->max_kib = k->info_max_kib;
                return;
        }
        if (!any) {
                /* The test driver's bulk records carry no balloon fields at all: ask per guest
                 * (it answers at once; QEMU's records always carry balloon.current). */
                if (read_domain_stats(h, dom, st) < 0)
                        mc_log_idf(
                                LOG_DEBUG, MC_MESSAGE_COLLECT_FAILED,
                                (MC_LOG_DOMAIN(st->name, st->uuid), MC_LOG_STR("MEMCOORD_ERROR", h->error)),
                                "%s: %s", st->name, h->error);
        } else if (!st->has_balloon && domain_busy(h, dom)) {
                st->busy = true;
                return;
        } else if (k->in_job) {
                /* Asked again only for a guest a set found in a job: busy until it ends. */
                k->in_job = domain_in_job(h, dom) > 0;
                if (k->in_job) {
                        st->busy = true;
                        return;
                }
        }
        if (st->max_kib == 0) {
                learn_fixed_memory(h, k);
                st->max_kib = k->info_max_kib;
        }

        /* Stats not flowing: ask the guest for them once. Never period 0, which would freeze
         * them. */
        if (!st->has_balloon && !k->period_tried && stats_period_sec > 0 && h->connected) {
                k->period_tried = true;
                h->calls.other_calls++;
                if (virDomainSetMemoryStatsPeriod(dom, (int) stats_period_sec, VIR_DOMAIN_AFFECT_LIVE) < 0) {
                        (void) translate_error(h, "Failed to enable balloon stats");
                        mc_log_idf(
                                LOG_INFO, MC_MESSAGE_STATS_PERIOD_FAILED,
                                (MC_LOG_DOMAIN(st->name, st->uuid), MC_LOG_STR("MEMCOORD_ERROR", h->error)),
                                "%s: %s", st->name, h->error);
                }
        }
}

static int libvirt_collect(McHypervisor *h, unsigned stats_period_sec, McReading **ret, size_t *ret_n)
{
        Libvirt *l = impl(h);
        virDomainStatsRecordPtr *records = NULL;
        int n;

        h->calls.bulk_calls++;
        /* NOWAIT: a guest whose monitor a job holds (migration, save, dump) is reported without
         * its figures instead of holding the call, and the loop, for up to QEMU's job timeout. */
        n = virConnectGetAllDomainStats(l->conn, VIR_DOMAIN_STATS_BALLOON, &records,
                                        VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE |
                                                VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
        if (n < 0)
                return translate_error(h, "Failed to read domain stats");

        McReading *out = g_new0(McReading, n > 0 ? n : 1);
        l->generation++;
        for (int i = 0; i < n && h->connected; i++)
                read_record(h, records[i], stats_period_sec, &out[i]);
        virDomainStatsRecordListFree(records);
        if (!h->connected) {
                mc_readings_free(out, (size_t) n);
                return -ENOTCONN;
        }

        /* Forget guests that are gone. */
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, l->known);
        while (g_hash_table_iter_next(&it, NULL, &v))
                if (((DomainHandle *) v)->generation != l->generation)
                        g_hash_table_iter_remove(&it);

        /* A balloon of 0 KiB is not a reading: never decide from it. Compact away records
         * whose UUID could not be read. */
        size_t m = 0;
        for (int i = 0; i < n; i++) {
                if (out[i].actual_kib == 0)
                        out[i].has_balloon = false;
                if (out[i].uuid[0])
                        out[m++] = out[i];
                else
                        g_free(out[i].name);
        }
        *ret = out;
        *ret_n = m;
        return 0;
}

/* Where the local host's memory is read; a test may point it at a file of its own. */
const char *mc_meminfo_path = "/proc/meminfo";

int mc_read_meminfo(const char *path, McHostMemory *ret)
{
        g_autofree char *data = NULL;
        bool have_total = false, have_avail = false;

        if (!g_file_get_contents(path, &data, NULL, NULL))
                return -errno ?: -EIO;
        g_auto(GStrv) lines = g_strsplit(data, "\n", -1);
        for (size_t i = 0; lines[i]; i++) {
                unsigned long long v;
                if (sscanf(lines[i], "MemTotal: %llu kB", &v) == 1) {
                        ret->total_kib = v;
                        have_total = true;
                } else if (sscanf(lines[i], "MemAvailable: %llu kB", &v) == 1) {
                        ret->free_kib = v;
                        have_avail = true;
                }
        }
        ret->from_proc = true;
        return have_total && have_avail ? 0 : -ENODATA;
}

static int libvirt_host_memory(McHypervisor *h, McHostMemory *ret)
{
        Libvirt *l = impl(h);
        virNodeMemoryStatsPtr params = NULL;
        int nparams = 0;
        int r;

        /*
         * A URI without a host name (qemu:///system, test:///...) is served on this machine:
         * take the kernel's own estimate, MemAvailable. libvirt's node stats have no such
         * field, and free + buffers + cached counts Shmem (tmpfs, memfd, the shared memory
         * behind virtiofs and vhost-user guests) as free although it cannot be reclaimed.
         */
        g_autoptr(GUri) uri = h->uri && *h->uri ? g_uri_parse(h->uri, G_URI_FLAGS_NONE, NULL) : NULL;
        if (l->node_stats_unsupported || !uri || !g_uri_get_host(uri) || !*g_uri_get_host(uri))
                return mc_read_meminfo(mc_meminfo_path, ret);

        /* How many fields the node reports does not change: ask once per connection. */
        if (l->node_nparams <= 0) {
                h->calls.other_calls++;
                if (virNodeGetMemoryStats(l->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL, &l->node_nparams,
                                          0) < 0 ||
                    l->node_nparams <= 0) {
                        l->node_nparams = 0;
                        r = translate_error(h, "Failed to read host memory");
                        if (r != -EOPNOTSUPP)
                                return r;
                        /* libvirt's test driver has no node stats: the host is this machine. */
                        l->node_stats_unsupported = true;
                        return mc_read_meminfo(mc_meminfo_path, ret);
                }
        }
        nparams = l->node_nparams;
        params = g_new0(virNodeMemoryStats, nparams);
        h->calls.other_calls++;
        if (virNodeGetMemoryStats(l->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, params, &nparams, 0) < 0) {
                g_free(params);
                return translate_error(h, "Failed to read host memory");
        }
        /*
         * A remote host: free plus buffers plus cached is all libvirt tells. Its Shmem is not
         * known here, so nothing is subtracted for it: with shared-memory-backed guests on a
         * remote host, leave room for it in HostThreshold or set a HostBudget.
         */
        for (int i = 0; i < nparams; i++) {
                if (g_str_equal(params[i].field, VIR_NODE_MEMORY_STATS_TOTAL))
                        ret->total_kib = params[i].value;
                else if (g_str_equal(params[i].field, VIR_NODE_MEMORY_STATS_FREE) ||
                         g_str_equal(params[i].field, VIR_NODE_MEMORY_STATS_BUFFERS) ||
                         g_str_equal(params[i].field, VIR_NODE_MEMORY_STATS_CACHED))
                        ret->free_kib += params[i].value;
        }
        g_free(params);
        return 0;
}

static int libvirt_set_target(McHypervisor *h, const char *uuid, uint64_t kib)
{
        DomainHandle *k = g_hash_table_lookup(impl(h)->known, uuid);

        if (!k)
                return mc_hypervisor_fail(h, -ENOENT, "Failed to set balloon target: guest %s is gone",
                                          uuid);
        if (domain_in_job(h, k->dom) > 0) {
                k->in_job = true;
                return mc_hypervisor_fail(
                        h, -EBUSY,
                        "Failed to set balloon target: a libvirt job runs; left alone until it ends");
        }
        h->calls.other_calls++;
        if (virDomainSetMemoryFlags(k->dom, kib, VIR_DOMAIN_AFFECT_LIVE) < 0)
                return translate_error(h, "Failed to set balloon target");
        return 0;
}

static int libvirt_set_meta(McHypervisor *h, const char *uuid, const McGuestMeta *meta)
{
        DomainHandle *k = g_hash_table_lookup(impl(h)->known, uuid);
        g_autofree char *xml = mc_libvirt_format_meta(meta);
        unsigned flags = VIR_DOMAIN_AFFECT_LIVE;
        int persistent;

        if (!k)
                return mc_hypervisor_fail(h, -ENOENT, "Failed to store the settings: guest %s is gone",
                                          uuid);
        /* A transient guest has no definition to keep them in beyond this run. */
        h->calls.other_calls++;
        persistent = virDomainIsPersistent(k->dom);
        if (persistent < 0)
                virResetLastError();
        if (persistent == 1)
                flags |= VIR_DOMAIN_AFFECT_CONFIG;
        h->calls.other_calls++;
        if (virDomainSetMetadata(k->dom, VIR_DOMAIN_METADATA_ELEMENT, xml,
                                 xml ? MC_LIBVIRT_META_PREFIX : NULL, MC_LIBVIRT_META_NS, flags) < 0)
                return translate_error(h, "Failed to store the settings in the domain XML");
        /* Nothing kept here: the caller holds them, and libvirt's metadata event has them read
         * back at the next collect. */
        return 0;
}

const McHypervisorOps mc_hypervisor_libvirt_ops = {
        .name = "libvirt",
        .init = libvirt_init,
        .connect = libvirt_connect,
        .disconnect = libvirt_disconnect,
        .collect = libvirt_collect,
        .host_memory = libvirt_host_memory,
        .set_target = libvirt_set_target,
        .set_meta = libvirt_set_meta,
        .free = libvirt_free,
};
