/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "memcoord/memcoord.h"
#include "memcoord/units.h"

#define GROUP_COORDINATOR "Coordinator"
#define GROUP_DOMAIN_PREFIX "Domain "

static void domain_config_free(gpointer p)
{
        McDomainConfig *d = p;

        if (!d)
                return;
        g_free(d->name);
        g_free(d);
}

McConfig *mc_config_new(void)
{
        McConfig *c = g_new0(McConfig, 1);

        c->policy = mc_policy_defaults;
        c->interval_usec = MC_USEC_PER_SEC;
        c->uri = g_strdup(MC_DEFAULT_URI);
        c->domains = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, domain_config_free);
        return c;
}

void mc_config_free(McConfig *c)
{
        if (!c)
                return;
        g_hash_table_unref(c->domains);
        g_free(c->uri);
        g_free(c);
}

const McDomainConfig *mc_config_get_domain(const McConfig *c, const char *name)
{
        return name ? g_hash_table_lookup(c->domains, name) : NULL;
}

McDomainConfig *mc_config_ensure_domain(McConfig *c, const char *name)
{
        McDomainConfig *d = g_hash_table_lookup(c->domains, name);

        if (!d) {
                d = g_new0(McDomainConfig, 1);
                d->name = g_strdup(name);
                g_hash_table_insert(c->domains, d->name, d);
        }
        return d;
}

const char *mc_config_interval_check(uint64_t usec)
{
        if (usec < MC_INTERVAL_MIN_USEC)
                return "the interval must be at least 0.1 s";
        if (usec > MC_INTERVAL_MAX_USEC)
                return "the interval must be at most 3600 s";
        return NULL;
}

/* GKeyFile forgets where things were: find the line by reading the text again. */
static unsigned line_of(const char *data, const char *group, const char *key)
{
        g_auto(GStrv) lines = g_strsplit(data, "\n", -1);
        bool in_group = false;

        for (unsigned i = 0; lines[i]; i++) {
                g_autofree char *line = g_strstrip(g_strdup(lines[i]));

                if (line[0] == '[') {
                        g_autofree char *name = g_strndup(line + 1, strcspn(line + 1, "]"));
                        in_group = g_str_equal(name, group);
                        if (in_group && !key)
                                return i + 1;
                        continue;
                }
                if (!in_group || !key)
                        continue;
                size_t len = strlen(key);
                if (strncmp(line, key, len) == 0 &&
                    (line[len] == '=' || line[len] == ' ' || line[len] == '['))
                        return i + 1;
        }
        return 0;
}

/*
 * GKeyFile's syntax errors quote the offending line ("... line “foo” which is not ...") but do
 * not number it: find it. A file that does not start with a group fails at its first line that
 * is neither blank nor a comment.
 */
static unsigned line_of_syntax_error(const char *data, const char *message)
{
        static const char open_quote[] = "\u201c", close_quote[] = "\u201d";
        const char *open = strstr(message, open_quote);
        const char *close = open ? strstr(open, close_quote) : NULL;
        g_auto(GStrv) lines = g_strsplit(data, "\n", -1);
        g_autofree char *quoted = NULL;

        if (open && close) {
                open += strlen(open_quote);
                quoted = g_strstrip(g_strndup(open, (gsize) (close - open)));
        }
        for (unsigned i = 0; lines[i]; i++) {
                g_autofree char *line = g_strstrip(g_strdup(lines[i]));

                if (quoted && g_str_equal(line, quoted))
                        return i + 1;
                if (!quoted && line[0] != '\0' && line[0] != '#')
                        return i + 1;
        }
        return 1;
}

typedef struct Parser {
        const char *data;
        const char *origin;
        GKeyFile *kf;
        GError **error;
} Parser;

G_GNUC_PRINTF(4, 5)
static gboolean parse_fail(Parser *p, const char *group, const char *key, const char *fmt, ...)
{
        g_autofree char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(p->error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "%s:%u: %s", p->origin,
                    line_of(p->data, group, key), msg);
        return FALSE;
}

static gboolean get_string(Parser *p, const char *group, const char *key, char **ret)
{
        g_autoptr(GError) e = NULL;
        char *v = g_key_file_get_string(p->kf, group, key, &e);

        if (!v)
                return parse_fail(p, group, key, "%s: %s", key, e->message);
        *ret = g_strstrip(v);
        return TRUE;
}

static gboolean get_size_kib(Parser *p, const char *group, const char *key, bool allow_none,
                             uint64_t *ret_kib)
{
        g_autofree char *v = NULL;
        uint64_t bytes;

        if (!get_string(p, group, key, &v))
                return FALSE;
        if (allow_none && g_str_equal(v, "none")) {
                *ret_kib = 0;
                return TRUE;
        }
        if (mc_parse_size(v, &bytes) < 0)
                return parse_fail(p, group, key,
                                  "%s: '%s' is not a size (examples: 100M, 1.5G, 157286400%s)", key, v,
                                  allow_none ? ", none" : "");
        *ret_kib = mc_bytes_to_kib(bytes);
        return TRUE;
}

static gboolean get_double(Parser *p, const char *group, const char *key, double lo, double hi, double *ret)
{
        g_autofree char *v = NULL;
        char *end = NULL;

        if (!get_string(p, group, key, &v))
                return FALSE;
        errno = 0;
        double d = g_ascii_strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || !isfinite(d))
                return parse_fail(p, group, key, "%s: '%s' is not a number", key, v);
        if (d < lo || d > hi)
                return parse_fail(p, group, key, "%s: %s is out of range [%g, %g]", key, v, lo, hi);
        *ret = d;
        return TRUE;
}

static gboolean get_bool(Parser *p, const char *group, const char *key, bool *ret)
{
        g_autofree char *v = NULL;

        if (!get_string(p, group, key, &v))
                return FALSE;
        if (g_str_equal(v, "true") || g_str_equal(v, "yes") || g_str_equal(v, "1"))
                *ret = true;
        else if (g_str_equal(v, "false") || g_str_equal(v, "no") || g_str_equal(v, "0"))
                *ret = false;
        else
                return parse_fail(p, group, key, "%s: '%s' is not a boolean (true or false)", key, v);
        return TRUE;
}

static gboolean parse_coordinator(Parser *p, McConfig *c)
{
        g_auto(GStrv) keys = g_key_file_get_keys(p->kf, GROUP_COORDINATOR, NULL, NULL);
        McPolicySettings policy = c->policy;

        for (size_t i = 0; keys && keys[i]; i++) {
                const char *k = keys[i];
                gboolean ok;

                if (g_str_equal(k, "IntervalSec")) {
                        double sec;
                        ok = get_double(p, GROUP_COORDINATOR, k, 0.1, 3600, &sec);
                        if (ok)
                                c->interval_usec = (uint64_t) llround(sec * 1e6);
                } else if (g_str_equal(k, "DomainThreshold"))
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, false, &policy.domain_threshold_kib);
                else if (g_str_equal(k, "HostThreshold"))
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, false, &policy.host_threshold_kib);
                else if (g_str_equal(k, "HostBudget"))
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, true, &policy.host_budget_kib);
                else if (g_str_equal(k, "DefaultMin"))
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, false, &policy.default_min_kib);
                else if (g_str_equal(k, "DeadBand"))
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, false, &policy.dead_band_kib);
                else if (g_str_equal(k, "ClaimFraction"))
                        ok = get_double(p, GROUP_COORDINATOR, k, 0.001, 1.0, &policy.claim_fraction);
                else if (g_str_equal(k, "GrantFactor"))
                        ok = get_double(p, GROUP_COORDINATOR, k, 1.0, 16.0, &policy.grant_factor);
                else if (g_str_equal(k, "DryRun"))
                        ok = get_bool(p, GROUP_COORDINATOR, k, &c->dry_run);
                else if (g_str_equal(k, "Policy")) {
                        g_autofree char *name = NULL;
                        ok = get_string(p, GROUP_COORDINATOR, k, &name);
                        int kind = ok ? mc_policy_kind_from_string(name) : -1;
                        if (ok && kind < 0)
                                ok = parse_fail(p, GROUP_COORDINATOR, k,
                                                "Policy: '%s' is not a policy (adaptive or seed)", name);
                        if (ok)
                                policy.kind = (McPolicyKind) kind;
                }
                else if (g_str_equal(k, "URI")) {
                        g_autofree char *uri = NULL;
                        ok = get_string(p, GROUP_COORDINATOR, k, &uri);
                        if (ok && uri[0] == '\0')
                                ok = parse_fail(p, GROUP_COORDINATOR, k, "URI: must not be empty");
                        if (ok) {
                                g_free(c->uri);
                                c->uri = g_steal_pointer(&uri);
                        }
                } else
                        ok = parse_fail(p, GROUP_COORDINATOR, k, "unknown key '%s' in [%s]", k,
                                        GROUP_COORDINATOR);
                if (!ok)
                        return FALSE;
        }

        const char *why = mc_policy_settings_check(&policy);
        if (why)
                return parse_fail(p, GROUP_COORDINATOR, NULL, "%s", why);
        c->policy = policy;
        return TRUE;
}

static gboolean parse_domain(Parser *p, McConfig *c, const char *group)
{
        const char *name = group + strlen(GROUP_DOMAIN_PREFIX);
        g_auto(GStrv) keys = g_key_file_get_keys(p->kf, group, NULL, NULL);
        McDomainConfig d = {};

        if (name[0] == '\0')
                return parse_fail(p, group, NULL, "[%s]: expected [Domain NAME] with a guest name", group);

        const McDomainConfig *old = mc_config_get_domain(c, name);
        if (old)
                d = *old;

        for (size_t i = 0; keys && keys[i]; i++) {
                const char *k = keys[i];
                gboolean ok;

                if (g_str_equal(k, "Min"))
                        ok = get_size_kib(p, group, k, true, &d.min_kib);
                else if (g_str_equal(k, "Max"))
                        ok = get_size_kib(p, group, k, true, &d.max_kib);
                else if (g_str_equal(k, "Weight")) {
                        double w = 0;
                        ok = get_double(p, group, k, 0, MC_WEIGHT_MAX, &w);
                        if (ok && w != floor(w))
                                ok = parse_fail(p, group, k, "Weight: must be a whole number");
                        if (ok)
                                d.weight = (unsigned) w;
                } else if (g_str_equal(k, "Exclude"))
                        ok = get_bool(p, group, k, &d.excluded);
                else
                        ok = parse_fail(p, group, k, "unknown key '%s' in [%s]", k, group);
                if (!ok)
                        return FALSE;
        }
        if (d.min_kib > 0 && d.max_kib > 0 && d.min_kib > d.max_kib)
                return parse_fail(p, group, "Min", "Min is larger than Max");

        McDomainConfig *dc = mc_config_ensure_domain(c, name);
        dc->min_kib = d.min_kib;
        dc->max_kib = d.max_kib;
        dc->weight = d.weight;
        dc->excluded = d.excluded;
        return TRUE;
}

gboolean mc_config_load_data(McConfig *c, const char *data, const char *origin, GError **error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) e = NULL;
        Parser p = { .data = data, .origin = origin, .kf = kf, .error = error };

        if (!g_key_file_load_from_data(kf, data, (gsize) -1, G_KEY_FILE_NONE, &e)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "%s:%u: %s", origin,
                            line_of_syntax_error(data, e->message), e->message);
                return FALSE;
        }

        /* Parse into a copy, so a bad file changes nothing. */
        g_autoptr(McConfig) tmp = mc_config_new();
        tmp->policy = c->policy;
        tmp->interval_usec = c->interval_usec;
        tmp->dry_run = c->dry_run;
        g_free(tmp->uri);
        tmp->uri = g_strdup(c->uri);
        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, c->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                const McDomainConfig *src = v;
                McDomainConfig *dst = mc_config_ensure_domain(tmp, src->name);
                dst->min_kib = src->min_kib;
                dst->max_kib = src->max_kib;
                dst->weight = src->weight;
                dst->excluded = src->excluded;
        }

        g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
        for (size_t i = 0; groups[i]; i++) {
                gboolean ok;

                if (g_str_equal(groups[i], GROUP_COORDINATOR))
                        ok = parse_coordinator(&p, tmp);
                else if (g_str_has_prefix(groups[i], GROUP_DOMAIN_PREFIX))
                        ok = parse_domain(&p, tmp, groups[i]);
                else
                        ok = parse_fail(&p, groups[i], NULL, "unknown section [%s]", groups[i]);
                if (!ok)
                        return FALSE;
        }

        /* Success: swap the parsed copy in. */
        c->policy = tmp->policy;
        c->interval_usec = tmp->interval_usec;
        c->dry_run = tmp->dry_run;
        g_free(c->uri);
        c->uri = g_steal_pointer(&tmp->uri);
        GHashTable *swap = c->domains;
        c->domains = tmp->domains;
        tmp->domains = swap;
        return TRUE;
}

gboolean mc_config_load_file(McConfig *c, const char *path, GError **error)
{
        g_autofree char *data = NULL;

        if (!g_file_get_contents(path, &data, NULL, error))
                return FALSE;
        return mc_config_load_data(c, data, path, error);
}

static void set_size(GKeyFile *kf, const char *group, const char *key, uint64_t kib)
{
        g_autofree char *v = g_strdup_printf("%" G_GUINT64_FORMAT "K", kib);

        g_key_file_set_string(kf, group, key, v);
}

gboolean mc_config_save_state(const McConfig *c, const char *path, GError **error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autofree char *interval = g_strdup_printf("%.6f", (double) c->interval_usec / 1e6);

        g_key_file_set_comment(kf, NULL, NULL,
                               " Settings changed at run time through org.memcoord; written by memcoordd.\n"
                               " Applied on top of the config file at start-up and on reload.",
                               NULL);
        g_key_file_set_string(kf, GROUP_COORDINATOR, "IntervalSec", interval);
        set_size(kf, GROUP_COORDINATOR, "DomainThreshold", c->policy.domain_threshold_kib);
        set_size(kf, GROUP_COORDINATOR, "HostThreshold", c->policy.host_threshold_kib);
        if (c->policy.host_budget_kib > 0)
                set_size(kf, GROUP_COORDINATOR, "HostBudget", c->policy.host_budget_kib);
        else
                g_key_file_set_string(kf, GROUP_COORDINATOR, "HostBudget", "none");

        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, c->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                const McDomainConfig *d = v;

                /* A group name cannot hold brackets or line breaks: such a guest's settings
                 * last until the daemon stops. */
                if (strpbrk(d->name, "[]\n\r"))
                        continue;
                g_autofree char *group = g_strconcat(GROUP_DOMAIN_PREFIX, d->name, NULL);
                set_size(kf, group, "Min", d->min_kib);
                set_size(kf, group, "Max", d->max_kib);
                g_key_file_set_integer(kf, group, "Weight", (int) d->weight);
                g_key_file_set_boolean(kf, group, "Exclude", d->excluded);
        }

        /* g_file_set_contents writes a temporary file, fsyncs it and renames it over path. */
        gsize len;
        g_autofree char *data = g_key_file_to_data(kf, &len, NULL);
        return g_file_set_contents_full(path, data, (gssize) len,
                                        G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0644,
                                        error);
}
