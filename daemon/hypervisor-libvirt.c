/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "hypervisor.h"

#include <errno.h>
#include <glib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"

G_DEFINE_AUTOPTR_CLEANUP_FUNC(virDomain, virDomainFree)

#define BACKOFF_MIN_USEC UINT64_C(1000000)
#define BACKOFF_MAX_USEC UINT64_C(30000000)

/* What we remember of a guest between ticks. */
typedef struct KnownDomain {
        virDomainPtr dom;
        bool has_balloon_device;   /* from its XML, read once */
        bool period_tried;         /* we asked for a stats period once */
        uint64_t max_kib;          /* when the bulk record lacks balloon.maximum */
        uint64_t fixed_actual_kib; /* memory of a guest without a balloon */
        unsigned generation;       /* last collect that saw it */
} KnownDomain;

struct McHypervisor {
        sd_event *event;
        char *uri;
        McHypervisorCallbacks cb;
        void *userdata;

        virConnectPtr conn;
        bool connected;
        bool synthetic_stamps;
        bool node_stats_unsupported;
        int node_nparams; /* fields of virNodeGetMemoryStats; 0 = not asked yet */
        int lifecycle_id;
        sd_event_source *reconnect_source;
        uint64_t backoff_usec;

        GHashTable *known; /* uuid -> KnownDomain* */
        unsigned generation;
        char error[512];
};

static void known_domain_free(gpointer p)
{
        KnownDomain *k = p;

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

static void lose_connection(McHypervisor *h);
static void on_close(virConnectPtr conn, int reason, void *opaque);

/*
 * The one place libvirt errors become -errno: the message is kept for the caller's log
 * line, and a dead connection is noticed here.
 */
static int translate_error(McHypervisor *h, const char *what)
{
        virErrorPtr e = virGetLastError();
        int code = e ? e->code : VIR_ERR_INTERNAL_ERROR;
        int r;

        snprintf(h->error, sizeof(h->error), "%s: %s", what,
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

        if (h->conn && h->connected && virConnectIsAlive(h->conn) != 1) {
                virResetLastError();
                lose_connection(h);
                r = -ENOTCONN;
        }
        return r;
}

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata);

static void schedule_reconnect(McHypervisor *h)
{
        uint64_t now;

        (void) sd_event_now(h->event, CLOCK_MONOTONIC, &now);
        h->reconnect_source = sd_event_source_disable_unref(h->reconnect_source);
        if (sd_event_add_time(h->event, &h->reconnect_source, CLOCK_MONOTONIC, now + h->backoff_usec, 0,
                              on_reconnect_timer, h) < 0)
                mc_log_error("Failed to arm the libvirt reconnect timer");
        h->backoff_usec = MIN(h->backoff_usec * 2, BACKOFF_MAX_USEC);
}

static void close_connection(McHypervisor *h)
{
        if (!h->conn)
                return;
        if (h->lifecycle_id >= 0)
                (void) virConnectDomainEventDeregisterAny(h->conn, h->lifecycle_id);
        (void) virConnectUnregisterCloseCallback(h->conn, on_close);
        h->lifecycle_id = -1;
        g_hash_table_remove_all(h->known);
        (void) virConnectClose(h->conn);
        virResetLastError();
        h->conn = NULL;
}

static void lose_connection(McHypervisor *h)
{
        if (!h->connected)
                return;
        h->connected = false;
        mc_log_warning("Lost the connection to %s; reconnecting", h->uri);
        if (h->cb.connection_changed)
                h->cb.connection_changed(h->userdata, false);
        schedule_reconnect(h);
}

static void on_close(virConnectPtr conn, int reason, void *opaque)
{
        /* Only note it here: the connection is closed from the reconnect timer, not from
         * inside libvirt's own callback. */
        lose_connection(opaque);
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
                g_hash_table_remove(h->known, uuid);
        if (h->cb.domain_event)
                h->cb.domain_event(h->userdata, uuid, virDomainGetName(dom), e);
        return 0;
}

int mc_hypervisor_new(sd_event *e, const char *uri, const McHypervisorCallbacks *cb, void *userdata,
                      McHypervisor **ret)
{
        McHypervisor *h = g_new0(McHypervisor, 1);

        h->event = sd_event_ref(e);
        h->uri = g_strdup(uri);
        if (cb)
                h->cb = *cb;
        h->userdata = userdata;
        h->lifecycle_id = -1;
        h->backoff_usec = BACKOFF_MIN_USEC;
        h->known = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, known_domain_free);
        virSetErrorFunc(NULL, silence_libvirt);
        *ret = h;
        return 0;
}

McHypervisor *mc_hypervisor_free(McHypervisor *h)
{
        if (!h)
                return NULL;
        h->reconnect_source = sd_event_source_disable_unref(h->reconnect_source);
        close_connection(h);
        g_hash_table_unref(h->known);
        sd_event_unref(h->event);
        g_free(h->uri);
        g_free(h);
        return NULL;
}

int mc_hypervisor_connect(McHypervisor *h)
{
        const char *type;
        int r;

        close_connection(h);
        h->conn = virConnectOpen(h->uri);
        if (!h->conn) {
                r = translate_error(h, "Failed to connect");
                schedule_reconnect(h);
                return r;
        }

        type = virConnectGetType(h->conn);
        h->synthetic_stamps = type && g_ascii_strcasecmp(type, "TEST") == 0;
        h->node_stats_unsupported = false;
        h->node_nparams = 0;
        virResetLastError();

        /* Keepalive needs a remote connection; local drivers refuse it, which is fine. */
        if (virConnectSetKeepAlive(h->conn, 5, 3) < 0)
                virResetLastError();
        if (virConnectRegisterCloseCallback(h->conn, on_close, h, NULL) < 0)
                virResetLastError();
        h->lifecycle_id = virConnectDomainEventRegisterAny(h->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                           VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), h, NULL);
        if (h->lifecycle_id < 0) {
                r = translate_error(h, "Failed to subscribe to lifecycle events");
                close_connection(h);
                schedule_reconnect(h);
                return r;
        }

        h->connected = true;
        h->backoff_usec = BACKOFF_MIN_USEC;
        h->reconnect_source = sd_event_source_disable_unref(h->reconnect_source);
        if (h->cb.connection_changed)
                h->cb.connection_changed(h->userdata, true);
        return 0;
}

static int on_reconnect_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        McHypervisor *h = userdata;
        int r;

        r = mc_hypervisor_connect(h);
        if (r < 0)
                mc_log_debug("%s; retrying", h->error);
        else
                mc_log_info("Connected to %s", h->uri);
        return 0;
}

bool mc_hypervisor_is_connected(const McHypervisor *h)
{
        return h->connected;
}

const char *mc_hypervisor_uri(const McHypervisor *h)
{
        return h->uri;
}

bool mc_hypervisor_stamps_synthetic(const McHypervisor *h)
{
        return h->synthetic_stamps;
}

const char *mc_hypervisor_error(const McHypervisor *h)
{
        return h->error;
}

void mc_domain_stats_free_array(McDomainStats *stats, size_t n)
{
        for (size_t i = 0; stats && i < n; i++)
                g_free(stats[i].name);
        g_free(stats);
}

static KnownDomain *learn_domain(McHypervisor *h, virDomainPtr dom, const char *uuid,
                                 McCallCounters *counters)
{
        KnownDomain *k = g_hash_table_lookup(h->known, uuid);
        g_autofree char *xml = NULL;

        if (k) {
                if (k->dom != dom) {
                        virDomainFree(k->dom);
                        virDomainRef(dom);
                        k->dom = dom;
                }
                return k;
        }

        k = g_new0(KnownDomain, 1);
        virDomainRef(dom);
        k->dom = dom;
        /* libvirt adds a virtio balloon to every QEMU guest unless told model='none'. */
        xml = virDomainGetXMLDesc(dom, 0);
        counters->other_calls++;
        if (xml)
                k->has_balloon_device =
                        strstr(xml, "<memballoon") && !strstr(xml, "<memballoon model='none'");
        else
                virResetLastError();
        g_hash_table_insert(h->known, g_strdup(uuid), k);
        return k;
}

/* Max memory (and current memory, for a guest without a balloon), read once per guest. */
static void learn_fixed_memory(McHypervisor *h, KnownDomain *k, McCallCounters *counters)
{
        virDomainInfo info;

        if (k->max_kib > 0)
                return;
        counters->other_calls++;
        if (virDomainGetInfo(k->dom, &info) < 0) {
                virResetLastError();
                return;
        }
        k->max_kib = info.maxMem;
        k->fixed_actual_kib = info.memory;
}

static void read_bulk_record(virDomainStatsRecordPtr rec, McDomainStats *st)
{
        for (int i = 0; i < rec->nparams; i++) {
                const virTypedParameter *p = &rec->params[i];
                unsigned long long v;

                if (p->type == VIR_TYPED_PARAM_ULLONG)
                        v = p->value.ul;
                else if (p->type == VIR_TYPED_PARAM_LLONG && p->value.l >= 0)
                        v = (unsigned long long) p->value.l;
                else
                        continue;

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
                else if (g_str_equal(p->field, "balloon.last-update"))
                        st->last_update = (int64_t) v;
        }
}

static int read_domain_stats(McHypervisor *h, virDomainPtr dom, McDomainStats *st, McCallCounters *counters)
{
        virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
        int n;

        counters->per_domain_calls++;
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
                case VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE:
                        st->last_update = (int64_t) stats[i].val;
                        break;
                default:
                        break;
                }
        }
        return 0;
}

int mc_hypervisor_collect(McHypervisor *h, unsigned stats_period_sec, McDomainStats **ret, size_t *ret_n,
                          McCallCounters *counters)
{
        virDomainStatsRecordPtr *records = NULL;
        McCallCounters dummy = {};
        int n;

        if (!counters)
                counters = &dummy;
        if (!h->connected)
                return -ENOTCONN;

        counters->bulk_calls++;
        n = virConnectGetAllDomainStats(h->conn, VIR_DOMAIN_STATS_BALLOON, &records,
                                        VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE);
        if (n < 0)
                return translate_error(h, "Failed to read domain stats");

        McDomainStats *out = g_new0(McDomainStats, n > 0 ? n : 1);
        h->generation++;
        for (int i = 0; i < n; i++) {
                virDomainPtr dom = records[i]->dom;
                McDomainStats *st = &out[i];

                if (virDomainGetUUIDString(dom, st->uuid) < 0) {
                        virResetLastError();
                        continue;
                }
                st->name = g_strdup(virDomainGetName(dom));
                KnownDomain *k = learn_domain(h, dom, st->uuid, counters);
                k->generation = h->generation;

                read_bulk_record(records[i], st);
                if (!k->has_balloon_device) {
                        /* Without a balloon its memory cannot move: what it had at first
                         * sight is what it has, and it still counts toward the budget. */
                        st->has_balloon = false;
                        learn_fixed_memory(h, k, counters);
                        if (st->actual_kib == 0)
                                st->actual_kib = k->fixed_actual_kib;
                        if (st->max_kib == 0)
                                st->max_kib = k->max_kib;
                        continue;
                }
                /* The test driver's bulk records carry no balloon fields: ask per guest. */
                if (!st->has_balloon && read_domain_stats(h, dom, st, counters) < 0) {
                        if (!h->connected)
                                break;
                        mc_log_debug("%s: %s", st->name, h->error);
                }
                if (st->max_kib == 0) {
                        learn_fixed_memory(h, k, counters);
                        st->max_kib = k->max_kib;
                }

                /* Stats not flowing: ask the guest for them once. Never period 0, which
                 * would freeze them. */
                if (!st->has_balloon && !k->period_tried && stats_period_sec > 0) {
                        k->period_tried = true;
                        counters->other_calls++;
                        if (virDomainSetMemoryStatsPeriod(dom, (int) stats_period_sec,
                                                          VIR_DOMAIN_AFFECT_LIVE) < 0) {
                                (void) translate_error(h, "Failed to enable balloon stats");
                                mc_log_info("%s: %s", st->name, h->error);
                        }
                }
        }
        virDomainStatsRecordListFree(records);

        /* A balloon of 0 KiB is not a reading: never decide from it. */
        for (int i = 0; i < n; i++)
                if (out[i].actual_kib == 0)
                        out[i].has_balloon = false;

        /* Forget guests that are gone. */
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, h->known);
        while (g_hash_table_iter_next(&it, NULL, &v))
                if (((KnownDomain *) v)->generation != h->generation)
                        g_hash_table_iter_remove(&it);

        if (!h->connected) {
                mc_domain_stats_free_array(out, (size_t) n);
                return -ENOTCONN;
        }

        /* Compact away records whose UUID could not be read. */
        size_t m = 0;
        for (int i = 0; i < n; i++)
                if (out[i].uuid[0])
                        out[m++] = out[i];
        *ret = out;
        *ret_n = m;
        return 0;
}

/* Where the local host's memory is read; a test may point it at a file of its own. */
static const char *meminfo_path = "/proc/meminfo";

static int read_proc_meminfo(const char *path, McHostMemory *ret)
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

int mc_hypervisor_host_memory(McHypervisor *h, McHostMemory *ret, McCallCounters *counters)
{
        virNodeMemoryStatsPtr params = NULL;
        int nparams = 0;
        int r;

        *ret = (McHostMemory){};
        if (!h->connected)
                return -ENOTCONN;
        /*
         * A URI without a host name (qemu:///system, test:///...) is served on this machine:
         * take the kernel's own estimate, MemAvailable. libvirt's node stats have no such
         * field, and free + buffers + cached counts Shmem (tmpfs, memfd, the shared memory
         * behind virtiofs and vhost-user guests) as free although it cannot be reclaimed.
         */
        g_autoptr(GUri) uri = h->uri && *h->uri ? g_uri_parse(h->uri, G_URI_FLAGS_NONE, NULL) : NULL;
        if (h->node_stats_unsupported || !uri || !g_uri_get_host(uri) || !*g_uri_get_host(uri))
                return read_proc_meminfo(meminfo_path, ret);

        /* How many fields the node reports does not change: ask once per connection. */
        if (h->node_nparams <= 0) {
                if (counters)
                        counters->other_calls++;
                if (virNodeGetMemoryStats(h->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, NULL, &h->node_nparams,
                                          0) < 0 ||
                    h->node_nparams <= 0) {
                        h->node_nparams = 0;
                        r = translate_error(h, "Failed to read host memory");
                        if (r != -EOPNOTSUPP)
                                return r;
                        /* libvirt's test driver has no node stats: the host is this machine. */
                        h->node_stats_unsupported = true;
                        return read_proc_meminfo(meminfo_path, ret);
                }
        }
        nparams = h->node_nparams;
        params = g_new0(virNodeMemoryStats, nparams);
        if (counters)
                counters->other_calls++;
        if (virNodeGetMemoryStats(h->conn, VIR_NODE_MEMORY_STATS_ALL_CELLS, params, &nparams, 0) < 0) {
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

int mc_hypervisor_set_target(McHypervisor *h, const char *uuid, uint64_t kib, McCallCounters *counters)
{
        KnownDomain *k;

        if (!h->connected)
                return -ENOTCONN;
        k = g_hash_table_lookup(h->known, uuid);
        if (!k) {
                snprintf(h->error, sizeof(h->error), "Failed to set balloon target: guest %s is gone", uuid);
                return -ENOENT;
        }
        if (counters)
                counters->other_calls++;
        if (virDomainSetMemoryFlags(k->dom, kib, VIR_DOMAIN_AFFECT_LIVE) < 0)
                return translate_error(h, "Failed to set balloon target");
        return 0;
}
