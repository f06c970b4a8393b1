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
        g_free(c->metrics_file);
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

int mc_config_parse_interval(const char *s, uint64_t *ret_usec, const char **why)
{
        char *end = NULL;
        double v;

        /* Digits first: strtod alone takes "inf", "nan", "-1", "+1", " 1" and hex. */
        if (!s || !(g_ascii_isdigit(s[0]) || (s[0] == '.' && g_ascii_isdigit(s[1]))) || strpbrk(s, "xX")) {
                *why = "not a number of seconds";
                return -EINVAL;
        }
        errno = 0;
        v = g_ascii_strtod(s, &end);
        if (errno == ERANGE && v != 0) {
                *why = mc_config_interval_check(MC_INTERVAL_MAX_USEC + 1);
                return -EINVAL;
        }
        if (end == s || *end != '\0' || !isfinite(v)) {
                *why = "not a number of seconds";
                return -EINVAL;
        }
        /* Bound the double before converting it: a cast out of range is undefined. */
        if (v > (double) MC_INTERVAL_MAX_USEC / 1e6 + 1.0) {
                *why = mc_config_interval_check(MC_INTERVAL_MAX_USEC + 1);
                return -EINVAL;
        }
        uint64_t usec = (uint64_t) llround(v * 1e6);
        const char *problem = mc_config_interval_check(usec);
        if (problem) {
                *why = problem;
                return -EINVAL;
        }
        *ret_usec = usec;
        return 0;
}

char *mc_config_domain_group(const char *name)
{
        GString *g = g_string_new(GROUP_DOMAIN_PREFIX);

        for (const char *p = name; *p;) {
                gunichar c = g_utf8_get_char_validated(p, -1);

                if (c == (gunichar) -1 || c == (gunichar) -2 || c < 0x20 || c == 0x7f || c == '%' ||
                    c == '[' || c == ']') {
                        g_string_append_printf(g, "%%%02X", (unsigned) (unsigned char) *p);
                        p++;
                        continue;
                }
                const char *next = g_utf8_next_char(p);
                g_string_append_len(g, p, next - p);
                p = next;
        }
        return g_string_free(g, FALSE);
}

char *mc_config_group_to_name(const char *group)
{
        if (!g_str_has_prefix(group, GROUP_DOMAIN_PREFIX))
                return NULL;

        GString *name = g_string_new(NULL);
        for (const char *p = group + strlen(GROUP_DOMAIN_PREFIX); *p; p++) {
                int hi, lo;

                /* %00 would cut the name short: not an escape, like any other '%'. */
                if (p[0] == '%' && (hi = g_ascii_xdigit_value(p[1])) >= 0 &&
                    (lo = g_ascii_xdigit_value(p[2])) >= 0 && (hi | lo) != 0) {
                        g_string_append_c(name, (char) (hi * 16 + lo));
                        p += 2;
                } else
                        g_string_append_c(name, *p);
        }
        return g_string_free(name, FALSE);
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
        bool state; /* the state file: run-time keys only, each marked as such */
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
        uint64_t interval_usec = c->interval_usec;
        bool dry_run = c->dry_run, paused = c->paused;
        g_autofree char *uri = NULL;
        unsigned seen = 0;

        for (size_t i = 0; keys && keys[i]; i++) {
                const char *k = keys[i];
                gboolean ok;

                if (g_str_equal(k, "IntervalSec")) {
                        g_autofree char *v = NULL;
                        const char *why = NULL;
                        ok = get_string(p, GROUP_COORDINATOR, k, &v);
                        if (ok && mc_config_parse_interval(v, &interval_usec, &why) < 0)
                                ok = parse_fail(p, GROUP_COORDINATOR, k, "IntervalSec: '%s': %s", v, why);
                        seen |= MC_KEY_INTERVAL;
                } else if (g_str_equal(k, "DomainThreshold")) {
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, false, &policy.domain_threshold_kib);
                        seen |= MC_KEY_DOMAIN_THRESHOLD;
                } else if (g_str_equal(k, "HostThreshold")) {
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, false, &policy.host_threshold_kib);
                        seen |= MC_KEY_HOST_THRESHOLD;
                } else if (g_str_equal(k, "HostBudget")) {
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, true, &policy.host_budget_kib);
                        seen |= MC_KEY_HOST_BUDGET;
                } else if (g_str_equal(k, "Paused")) {
                        ok = p->state
                                     ? get_bool(p, GROUP_COORDINATOR, k, &paused)
                                     : parse_fail(p, GROUP_COORDINATOR, k,
                                                  "Paused: kept in the state file only (memcoordctl pause)");
                        seen |= MC_KEY_PAUSED;
                } else if (p->state)
                        /* Any other key is the config file's alone. */
                        ok = parse_fail(p, GROUP_COORDINATOR, k,
                                        "%s: not a setting of the state file (set it in the config file)",
                                        k);
                else if (g_str_equal(k, "DefaultMin"))
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, false, &policy.default_min_kib);
                else if (g_str_equal(k, "DeadBand"))
                        ok = get_size_kib(p, GROUP_COORDINATOR, k, false, &policy.dead_band_kib);
                else if (g_str_equal(k, "ClaimFraction"))
                        ok = get_double(p, GROUP_COORDINATOR, k, 0.001, 1.0, &policy.claim_fraction);
                else if (g_str_equal(k, "GrantFactor"))
                        ok = get_double(p, GROUP_COORDINATOR, k, 1.0, 16.0, &policy.grant_factor);
                else if (g_str_equal(k, "DryRun"))
                        ok = get_bool(p, GROUP_COORDINATOR, k, &dry_run);
                else if (g_str_equal(k, "Policy")) {
                        g_autofree char *name = NULL;
                        ok = get_string(p, GROUP_COORDINATOR, k, &name);
                        int kind = ok ? mc_policy_kind_from_string(name) : -1;
                        if (ok && kind < 0)
                                ok = parse_fail(p, GROUP_COORDINATOR, k,
                                                "Policy: '%s' is not a policy (adaptive or seed)", name);
                        if (ok)
                                policy.kind = (McPolicyKind) kind;
                } else if (g_str_equal(k, "URI")) {
                        g_free(uri);
                        uri = NULL;
                        ok = get_string(p, GROUP_COORDINATOR, k, &uri);
                        if (ok && uri[0] == '\0')
                                ok = parse_fail(p, GROUP_COORDINATOR, k, "URI: must not be empty");
                        if (ok) {
                                g_free(c->uri);
                                c->uri = g_steal_pointer(&uri);
                        }
                } else if (g_str_equal(k, "MetricsFile")) {
                        g_autofree char *path = NULL;
                        ok = get_string(p, GROUP_COORDINATOR, k, &path);
                        if (ok && path[0] != '\0' && !g_path_is_absolute(path))
                                ok = parse_fail(p, GROUP_COORDINATOR, k,
                                                "MetricsFile: '%s' is not an absolute path", path);
                        if (ok) {
                                g_free(c->metrics_file);
                                c->metrics_file = path[0] ? g_steal_pointer(&path) : NULL;
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
        c->interval_usec = interval_usec;
        c->dry_run = dry_run;
        c->paused = paused;
        if (uri) {
                g_free(c->uri);
                c->uri = g_steal_pointer(&uri);
        }
        if (p->state)
                c->runtime |= seen;
        return TRUE;
}

static gboolean parse_domain(Parser *p, McConfig *c, const char *group)
{
        g_autofree char *name = mc_config_group_to_name(group);
        g_auto(GStrv) keys = g_key_file_get_keys(p->kf, group, NULL, NULL);
        McDomainConfig d = {};
        unsigned seen = 0;

        if (!name || name[0] == '\0')
                return parse_fail(p, group, NULL, "[%s]: expected [Domain NAME] with a guest name", group);

        const McDomainConfig *old = mc_config_get_domain(c, name);
        if (old)
                d = *old;

        for (size_t i = 0; keys && keys[i]; i++) {
                const char *k = keys[i];
                gboolean ok;

                if (g_str_equal(k, "Min")) {
                        ok = get_size_kib(p, group, k, true, &d.min_kib);
                        seen |= MC_DOMAIN_KEY_MIN;
                } else if (g_str_equal(k, "Max")) {
                        ok = get_size_kib(p, group, k, true, &d.max_kib);
                        seen |= MC_DOMAIN_KEY_MAX;
                } else if (g_str_equal(k, "Weight")) {
                        double w = 0;
                        ok = get_double(p, group, k, 0, MC_WEIGHT_MAX, &w);
                        if (ok && w != floor(w))
                                ok = parse_fail(p, group, k, "Weight: must be a whole number");
                        if (ok)
                                d.weight = (unsigned) w;
                        seen |= MC_DOMAIN_KEY_WEIGHT;
                } else if (g_str_equal(k, "Exclude")) {
                        ok = get_bool(p, group, k, &d.excluded);
                        seen |= MC_DOMAIN_KEY_EXCLUDE;
                } else
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
        if (p->state)
                dc->runtime |= seen;
        return TRUE;
}

static McConfig *config_copy(const McConfig *c)
{
        McConfig *copy = mc_config_new();
        GHashTableIter it;
        gpointer v;

        copy->policy = c->policy;
        copy->interval_usec = c->interval_usec;
        copy->dry_run = c->dry_run;
        copy->paused = c->paused;
        copy->runtime = c->runtime;
        g_free(copy->uri);
        copy->uri = g_strdup(c->uri);
        copy->metrics_file = g_strdup(c->metrics_file);
        g_hash_table_iter_init(&it, c->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                const McDomainConfig *src = v;
                McDomainConfig *dst = mc_config_ensure_domain(copy, src->name);
                dst->min_kib = src->min_kib;
                dst->max_kib = src->max_kib;
                dst->weight = src->weight;
                dst->excluded = src->excluded;
                dst->runtime = src->runtime;
        }
        return copy;
}

static void config_swap(McConfig *a, McConfig *b)
{
        McConfig tmp = *a;

        *a = *b;
        *b = tmp;
}

static gboolean load_data(McConfig *c, const char *data, const char *origin, bool state, GError **error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) e = NULL;
        Parser p = { .data = data, .origin = origin, .kf = kf, .state = state, .error = error };

        if (!g_key_file_load_from_data(kf, data, (gsize) -1, G_KEY_FILE_NONE, &e)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "%s:%u: %s", origin,
                            line_of_syntax_error(data, e->message), e->message);
                return FALSE;
        }

        /* Parse into a copy, so a bad file changes nothing. */
        g_autoptr(McConfig) tmp = config_copy(c);
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
        config_swap(c, tmp);
        return TRUE;
}

gboolean mc_config_load_data(McConfig *c, const char *data, const char *origin, GError **error)
{
        return load_data(c, data, origin, false, error);
}

gboolean mc_config_load_state_data(McConfig *c, const char *data, const char *origin, GError **error)
{
        return load_data(c, data, origin, true, error);
}

gboolean mc_config_load_state_file(McConfig *c, const char *path, GError **error)
{
        g_autofree char *data = NULL;

        if (!g_file_get_contents(path, &data, NULL, error))
                return FALSE;
        return mc_config_load_state_data(c, data, path, error);
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

/* The run-time keys of a and b agree (b read back from what a saved). */
static bool runtime_equal(const McConfig *a, const McConfig *b)
{
        unsigned k = a->runtime;
        GHashTableIter it;
        gpointer v;

        if (a->runtime != b->runtime)
                return false;
        if (((k & MC_KEY_INTERVAL) && a->interval_usec != b->interval_usec) ||
            ((k & MC_KEY_DOMAIN_THRESHOLD) &&
             a->policy.domain_threshold_kib != b->policy.domain_threshold_kib) ||
            ((k & MC_KEY_HOST_THRESHOLD) && a->policy.host_threshold_kib != b->policy.host_threshold_kib) ||
            ((k & MC_KEY_HOST_BUDGET) && a->policy.host_budget_kib != b->policy.host_budget_kib) ||
            ((k & MC_KEY_PAUSED) && a->paused != b->paused))
                return false;
        g_hash_table_iter_init(&it, a->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                const McDomainConfig *x = v, *y = mc_config_get_domain(b, x->name);
                unsigned dk = x->runtime;

                if (dk == 0)
                        continue;
                if (!y || y->runtime != dk || ((dk & MC_DOMAIN_KEY_MIN) && x->min_kib != y->min_kib) ||
                    ((dk & MC_DOMAIN_KEY_MAX) && x->max_kib != y->max_kib) ||
                    ((dk & MC_DOMAIN_KEY_WEIGHT) && x->weight != y->weight) ||
                    ((dk & MC_DOMAIN_KEY_EXCLUDE) && x->excluded != y->excluded))
                        return false;
        }
        return true;
}

gboolean mc_config_save_state(const McConfig *c, const char *path, GError **error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        unsigned k = c->runtime;

        g_key_file_set_comment(kf, NULL, NULL,
                               " Settings changed at run time through org.memcoord; written by memcoordd.\n"
                               " Applied on top of the config file at start-up and on reload.",
                               NULL);
        if (k & MC_KEY_INTERVAL) {
                g_autofree char *interval = g_strdup_printf("%.6f", (double) c->interval_usec / 1e6);
                g_key_file_set_string(kf, GROUP_COORDINATOR, "IntervalSec", interval);
        }
        if (k & MC_KEY_DOMAIN_THRESHOLD)
                set_size(kf, GROUP_COORDINATOR, "DomainThreshold", c->policy.domain_threshold_kib);
        if (k & MC_KEY_HOST_THRESHOLD)
                set_size(kf, GROUP_COORDINATOR, "HostThreshold", c->policy.host_threshold_kib);
        if ((k & MC_KEY_HOST_BUDGET) && c->policy.host_budget_kib > 0)
                set_size(kf, GROUP_COORDINATOR, "HostBudget", c->policy.host_budget_kib);
        else if (k & MC_KEY_HOST_BUDGET)
                g_key_file_set_string(kf, GROUP_COORDINATOR, "HostBudget", "none");
        if (k & MC_KEY_PAUSED)
                g_key_file_set_boolean(kf, GROUP_COORDINATOR, "Paused", c->paused);

        GHashTableIter it;
        gpointer v;
        g_hash_table_iter_init(&it, c->domains);
        while (g_hash_table_iter_next(&it, NULL, &v)) {
                const McDomainConfig *d = v;
                unsigned dk = d->runtime;

                if (dk == 0)
                        continue;
                g_autofree char *group = mc_config_domain_group(d->name);
                if (dk & MC_DOMAIN_KEY_MIN)
                        set_size(kf, group, "Min", d->min_kib);
                if (dk & MC_DOMAIN_KEY_MAX)
                        set_size(kf, group, "Max", d->max_kib);
                if (dk & MC_DOMAIN_KEY_WEIGHT)
                        g_key_file_set_integer(kf, group, "Weight", (int) d->weight);
                if (dk & MC_DOMAIN_KEY_EXCLUDE)
                        g_key_file_set_boolean(kf, group, "Exclude", d->excluded);
        }

        gsize len;
        g_autofree char *data = g_key_file_to_data(kf, &len, NULL);

        /* What is saved must load again and mean the same, or the next start sets it aside:
         * read it back over a copy of c without its marks (each key read marks itself again)
         * before replacing the old file. A key GKeyFile did not take is caught here. */
        g_autoptr(McConfig) back = config_copy(c);
        g_autoptr(GError) e = NULL;
        back->runtime = 0;
        g_hash_table_iter_init(&it, back->domains);
        while (g_hash_table_iter_next(&it, NULL, &v))
                ((McDomainConfig *) v)->runtime = 0;
        if (!mc_config_load_state_data(back, data, path, &e)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "the settings would not load again: %s", e->message);
                return FALSE;
        }
        if (!runtime_equal(c, back)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE,
                            "the settings would not read back as they are");
                return FALSE;
        }

        /* g_file_set_contents writes a temporary file, fsyncs it and renames it over path. */
        return g_file_set_contents_full(path, data, (gssize) len,
                                        G_FILE_SET_CONTENTS_CONSISTENT | G_FILE_SET_CONTENTS_DURABLE, 0644,
                                        error);
}

void mc_config_apply_overrides(McConfig *c, const McConfigOverrides *o)
{
        if (!o)
                return;
        if (o->uri) {
                g_free(c->uri);
                c->uri = g_strdup(o->uri);
        }
        if (o->interval_usec > 0)
                c->interval_usec = o->interval_usec;
        if (o->dry_run)
                c->dry_run = true;
}

void mc_config_overrides_copy(McConfigOverrides *dst, const McConfigOverrides *src)
{
        mc_config_overrides_clear(dst);
        if (!src)
                return;
        *dst = *src;
        dst->uri = g_strdup(src->uri);
}

void mc_config_overrides_clear(McConfigOverrides *o)
{
        g_free(o->uri);
        *o = (McConfigOverrides){};
}
