/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The scenario file (GKeyFile): see tests/sim/README.md for the format. */

#include <errno.h>
#include <math.h>
#include <string.h>

#include "sim-world.h"

#define GROUP_SCENARIO "Scenario"
#define GROUP_HOST "Host"
#define GROUP_MODEL "Model"
#define GROUP_SETTINGS "Settings"
#define GUEST_PREFIX "Guest "
#define FAULT_PREFIX "Fault "
#define DOMAIN_PREFIX "Domain "
#define MAX_GUESTS 10000

typedef struct Parser {
        const char *data;
        const char *origin;
        GKeyFile *kf;
        GError **error;
} Parser;

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
                if (strncmp(line, key, len) == 0 && (line[len] == '=' || line[len] == ' '))
                        return i + 1;
        }
        return 0;
}

/* GKeyFile quotes the offending line of a syntax error but does not number it. */
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

G_GNUC_PRINTF(4, 5)
static bool fail(Parser *p, const char *group, const char *key, const char *fmt, ...)
{
        g_autofree char *msg = NULL;
        va_list ap;

        va_start(ap, fmt);
        msg = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        g_set_error(p->error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_INVALID_VALUE, "%s:%u: %s", p->origin,
                    line_of(p->data, group, key), msg);
        return false;
}

static char *get_str(Parser *p, const char *group, const char *key)
{
        char *v = g_key_file_get_string(p->kf, group, key, NULL);

        return v ? g_strstrip(v) : g_strdup("");
}

static bool get_double(Parser *p, const char *group, const char *key, double lo, double hi, double *ret)
{
        g_autofree char *v = get_str(p, group, key);
        char *end = NULL;
        double d;

        errno = 0;
        d = g_ascii_strtod(v, &end);
        if (errno != 0 || end == v || *end != '\0' || !isfinite(d))
                return fail(p, group, key, "%s: '%s' is not a number", key, v);
        if (d < lo || d > hi)
                return fail(p, group, key, "%s: %s is out of range [%g, %g]", key, v, lo, hi);
        *ret = d;
        return true;
}

/* A time that may be "never" (stored as -1). */
static bool get_time_or_never(Parser *p, const char *group, const char *key, double *ret)
{
        g_autofree char *v = get_str(p, group, key);

        if (g_str_equal(v, "never") || g_str_equal(v, "none")) {
                *ret = -1;
                return true;
        }
        return get_double(p, group, key, 0, 1e7, ret);
}

static bool get_bool(Parser *p, const char *group, const char *key, bool *ret)
{
        g_autofree char *v = get_str(p, group, key);

        if (g_str_equal(v, "true") || g_str_equal(v, "yes") || g_str_equal(v, "1"))
                *ret = true;
        else if (g_str_equal(v, "false") || g_str_equal(v, "no") || g_str_equal(v, "0"))
                *ret = false;
        else
                return fail(p, group, key, "%s: '%s' is not a boolean (true or false)", key, v);
        return true;
}

static bool get_model_key(Parser *p, const char *group, const char *key, SimModel *m, bool *handled)
{
        const SimParam *par = sim_model_param(key);
        double v;
        bool b;

        *handled = par != NULL;
        if (!par)
                return true;
        if (par->type == SIM_PARAM_BOOL) {
                if (!get_bool(p, group, key, &b))
                        return false;
                v = b;
        } else if (!get_double(p, group, key, par->lo, par->hi, &v))
                return false;
        sim_model_set(m, par, v);
        return true;
}

static bool get_schedule(Parser *p, const char *group, const char *key, SimSchedule *ret, char **text)
{
        g_autofree char *v = get_str(p, group, key);
        g_autofree char *why = NULL;

        sim_schedule_clear(ret);
        if (sim_schedule_parse(v, ret, &why) < 0)
                return fail(p, group, key, "%s: %s", key, why);
        if (text) {
                g_free(*text);
                *text = g_steal_pointer(&v);
        }
        return true;
}

static void guest_spec_free(gpointer data)
{
        SimGuestSpec *g = data;

        if (!g)
                return;
        g_free(g->name);
        g_free(g->schedule_text);
        sim_schedule_clear(&g->schedule);
        g_free(g);
}

static void fault_free(gpointer data)
{
        SimFault *f = data;

        if (!f)
                return;
        g_free(f->name);
        g_free(f->guest);
        g_free(f);
}

/* A UUID of the name, so a guest keeps its identity across runs (and the daemon's state). */
static void uuid_of(const char *name, char out[SIM_UUID_STRLEN])
{
        g_autofree char *h = g_compute_checksum_for_string(G_CHECKSUM_SHA1, name, -1);

        g_snprintf(out, SIM_UUID_STRLEN, "%.8s-%.4s-5%.3s-a%.3s-%.12s", h, h + 8, h + 13, h + 17, h + 20);
}

static bool parse_scenario_group(Parser *p, SimScenario *sc)
{
        g_auto(GStrv) keys = g_key_file_get_keys(p->kf, GROUP_SCENARIO, NULL, NULL);
        const char *g = GROUP_SCENARIO;

        for (size_t i = 0; keys && keys[i]; i++) {
                const char *k = keys[i];
                double v;
                bool ok = true;

                if (g_str_equal(k, "Description")) {
                        g_free(sc->description);
                        sc->description = get_str(p, g, k);
                } else if (g_str_equal(k, "DurationSec"))
                        ok = get_double(p, g, k, 1, 1e7, &sc->duration_s);
                else if (g_str_equal(k, "StepMs")) {
                        ok = get_double(p, g, k, 1, 1000, &v);
                        sc->step_s = v / 1000;
                } else if (g_str_equal(k, "DaemonStartSec"))
                        ok = get_double(p, g, k, 0, 1e7, &sc->daemon_start_s);
                else if (g_str_equal(k, "EpochSec")) {
                        ok = get_double(p, g, k, 0, 1e11, &v);
                        sc->epoch_s = (int64_t) v;
                } else
                        ok = fail(p, g, k,
                                  "unknown key '%s' in [%s] (Description, DurationSec, StepMs, "
                                  "DaemonStartSec, EpochSec)",
                                  k, g);
                if (!ok)
                        return false;
        }
        return true;
}

static bool parse_host(Parser *p, SimScenario *sc)
{
        g_auto(GStrv) keys = g_key_file_get_keys(p->kf, GROUP_HOST, NULL, NULL);
        const char *g = GROUP_HOST;

        for (size_t i = 0; keys && keys[i]; i++) {
                const char *k = keys[i];
                bool ok;

                if (g_str_equal(k, "TotalMiB"))
                        ok = get_double(p, g, k, 1, 1e9, &sc->host_total_mib);
                else if (g_str_equal(k, "OtherMiB"))
                        ok = get_double(p, g, k, 0, 1e9, &sc->host_other_mib);
                else if (g_str_equal(k, "OtherSchedule"))
                        ok = get_schedule(p, g, k, &sc->host_other, NULL);
                else if (g_str_equal(k, "GuestOverheadMiB"))
                        ok = get_double(p, g, k, 0, 1e6, &sc->guest_overhead_mib);
                else
                        ok = fail(p, g, k,
                                  "unknown key '%s' in [%s] (TotalMiB, OtherMiB, OtherSchedule, "
                                  "GuestOverheadMiB)",
                                  k, g);
                if (!ok)
                        return false;
        }
        return true;
}

static bool parse_model(Parser *p, SimScenario *sc)
{
        g_auto(GStrv) keys = g_key_file_get_keys(p->kf, GROUP_MODEL, NULL, NULL);

        for (size_t i = 0; keys && keys[i]; i++) {
                bool handled;

                if (!get_model_key(p, GROUP_MODEL, keys[i], &sc->model, &handled))
                        return false;
                if (!handled)
                        return fail(p, GROUP_MODEL, keys[i],
                                    "unknown model parameter '%s' (memcoord-sim --list-model lists them)",
                                    keys[i]);
        }
        return true;
}

static bool name_ok(const char *name)
{
        if (name[0] == '\0' || strlen(name) > 200)
                return false;
        for (const char *c = name; *c; c++)
                if (!g_ascii_isalnum(*c) && !strchr("-_.+", *c))
                        return false;
        return true;
}

static bool parse_guest(Parser *p, SimScenario *sc, const char *group)
{
        const char *name = group + strlen(GUEST_PREFIX);
        g_auto(GStrv) keys = g_key_file_get_keys(p->kf, group, NULL, NULL);
        SimGuestSpec base = {
                .current_mib = 512,
                .max_mib = 1024,
                .balloon = true,
                .stop_s = -1,
                .model = sc->model,
                .line = line_of(p->data, group, NULL),
        };
        g_autofree char *schedule_text = g_strdup("idle");
        g_autofree char *uuid = NULL;
        double count = 1, stagger = 0;
        bool ok = true;

        if (!name_ok(name))
                return fail(p, group, NULL, "[%s]: a guest's name is letters, digits and -_.+", group);
        for (size_t i = 0; ok && keys && keys[i]; i++) {
                const char *k = keys[i];
                bool handled;

                if (g_str_equal(k, "CurrentMiB"))
                        ok = get_double(p, group, k, 1, 1e8, &base.current_mib);
                else if (g_str_equal(k, "MaxMiB"))
                        ok = get_double(p, group, k, 1, 1e8, &base.max_mib);
                else if (g_str_equal(k, "Balloon"))
                        ok = get_bool(p, group, k, &base.balloon);
                else if (g_str_equal(k, "Autodeflate"))
                        ok = get_bool(p, group, k, &base.autodeflate);
                else if (g_str_equal(k, "StartSec"))
                        ok = get_double(p, group, k, 0, 1e7, &base.start_s);
                else if (g_str_equal(k, "StopSec"))
                        ok = get_time_or_never(p, group, k, &base.stop_s);
                else if (g_str_equal(k, "ReadySec"))
                        ok = get_double(p, group, k, 0, 1e7, &base.ready_s);
                else if (g_str_equal(k, "Schedule")) {
                        g_free(schedule_text);
                        schedule_text = get_str(p, group, k);
                } else if (g_str_equal(k, "UUID")) {
                        uuid = get_str(p, group, k);
                        if (strlen(uuid) != SIM_UUID_STRLEN - 1)
                                ok = fail(p, group, k, "UUID: '%s' is not a UUID", uuid);
                } else if (g_str_equal(k, "Count"))
                        ok = get_double(p, group, k, 1, MAX_GUESTS, &count) &&
                             (count == floor(count) || fail(p, group, k, "Count: must be a whole number"));
                else if (g_str_equal(k, "StaggerSec"))
                        ok = get_double(p, group, k, 0, 1e6, &stagger);
                else {
                        ok = get_model_key(p, group, k, &base.model, &handled);
                        if (ok && !handled)
                                ok = fail(p, group, k, "unknown key '%s' in [%s]", k, group);
                }
        }
        if (!ok)
                return false;
        if (base.current_mib > base.max_mib)
                return fail(p, group, "CurrentMiB", "CurrentMiB (%g) is larger than MaxMiB (%g)",
                            base.current_mib, base.max_mib);
        if (base.stop_s >= 0 && base.stop_s <= base.start_s)
                return fail(p, group, "StopSec", "StopSec must come after StartSec");
        if (count > 1 && uuid)
                return fail(p, group, "UUID", "UUID cannot be given with Count");
        if (sc->guests->len + (guint) count > MAX_GUESTS)
                return fail(p, group, "Count", "more than %u guests", MAX_GUESTS);
        g_autofree char *why = NULL;
        if (sim_schedule_parse(schedule_text, &base.schedule, &why) < 0)
                return fail(p, group, "Schedule", "Schedule: %s", why);

        for (unsigned i = 0; i < (unsigned) count; i++) {
                SimGuestSpec *g = g_new0(SimGuestSpec, 1);

                *g = base;
                g->name = count > 1 ? g_strdup_printf("%s-%02u", name, i + 1) : g_strdup(name);
                g->schedule_text = g_strdup(schedule_text);
                g->schedule.steps = g_memdup2(base.schedule.steps, base.schedule.n_steps * sizeof(SimStep));
                g->start_s += stagger * i;
                if (g->stop_s >= 0)
                        g->stop_s += stagger * i;
                if (uuid)
                        g_strlcpy(g->uuid, uuid, sizeof(g->uuid));
                else
                        uuid_of(g->name, g->uuid);
                for (guint j = 0; j < sc->guests->len; j++) {
                        const SimGuestSpec *o = g_ptr_array_index(sc->guests, j);
                        if (g_str_equal(o->name, g->name) || g_str_equal(o->uuid, g->uuid)) {
                                guest_spec_free(g);
                                sim_schedule_clear(&base.schedule);
                                return fail(p, group, NULL, "guest '%s' is defined twice", o->name);
                        }
                }
                g_ptr_array_add(sc->guests, g);
        }
        sim_schedule_clear(&base.schedule);
        return true;
}

static bool parse_errno(const char *s, int *ret)
{
        static const struct {
                const char *name;
                int value;
        } table[] = {
                { "EIO", EIO },       { "ENOMEM", ENOMEM },
                { "EBUSY", EBUSY },   { "ETIMEDOUT", ETIMEDOUT },
                { "EAGAIN", EAGAIN }, { "EINVAL", EINVAL },
                { "ENOENT", ENOENT }, { "ECONNRESET", ECONNRESET },
                { "EPERM", EPERM },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++)
                if (g_str_equal(s, table[i].name)) {
                        *ret = table[i].value;
                        return true;
                }
        return false;
}

static bool parse_fault(Parser *p, SimScenario *sc, const char *group)
{
        static const char *const kinds[] = { "fail", "lose", "busy", "stale", "stuck", "slow" };
        static const char *const calls[] = { "connect", "collect", "host_memory", "set_target", "any" };
        g_auto(GStrv) keys = g_key_file_get_keys(p->kf, group, NULL, NULL);
        SimFault f = { .kind = -1,
                       .call = SIM_CALL_ANY,
                       .until_s = -1,
                       .down_s = 2,
                       .error = EIO,
                       .line = line_of(p->data, group, NULL) };
        g_autofree char *guest = NULL;
        bool ok = true, has_kind = false;

        for (size_t i = 0; ok && keys && keys[i]; i++) {
                const char *k = keys[i];
                g_autofree char *v = get_str(p, group, k);
                double d;

                if (g_str_equal(k, "Kind")) {
                        ok = false;
                        for (size_t j = 0; j < G_N_ELEMENTS(kinds); j++)
                                if (g_str_equal(v, kinds[j])) {
                                        f.kind = (SimFaultKind) j;
                                        ok = has_kind = true;
                                }
                        if (!ok)
                                ok = fail(p, group, k,
                                          "Kind: '%s' is not one of fail, lose, busy, stale, "
                                          "stuck, slow",
                                          v);
                } else if (g_str_equal(k, "Call")) {
                        ok = false;
                        for (size_t j = 0; j < G_N_ELEMENTS(calls); j++)
                                if (g_str_equal(v, calls[j])) {
                                        f.call = (SimCall) j;
                                        ok = true;
                                }
                        if (!ok)
                                ok = fail(p, group, k,
                                          "Call: '%s' is not one of connect, collect, "
                                          "host_memory, set_target, any",
                                          v);
                } else if (g_str_equal(k, "Guest")) {
                        g_free(guest);
                        guest = g_steal_pointer(&v);
                } else if (g_str_equal(k, "FromSec") || g_str_equal(k, "AtSec"))
                        ok = get_double(p, group, k, 0, 1e7, &f.from_s);
                else if (g_str_equal(k, "UntilSec"))
                        ok = get_time_or_never(p, group, k, &f.until_s);
                else if (g_str_equal(k, "DownSec"))
                        ok = get_double(p, group, k, 0, 1e6, &f.down_s);
                else if (g_str_equal(k, "OnSetTarget")) {
                        ok = get_double(p, group, k, 1, 1e9, &d);
                        f.on_call = (unsigned) d;
                } else if (g_str_equal(k, "DelayMs")) {
                        ok = get_double(p, group, k, 0, 600000, &d);
                        f.delay_ms = (unsigned) d;
                } else if (g_str_equal(k, "Errno")) {
                        if (!parse_errno(v, &f.error))
                                ok = fail(p, group, k,
                                          "Errno: '%s' is not one of EIO, ENOMEM, EBUSY, "
                                          "ETIMEDOUT, EAGAIN, EINVAL, ENOENT, ECONNRESET, EPERM",
                                          v);
                } else
                        ok = fail(p, group, k, "unknown key '%s' in [%s]", k, group);
        }
        if (!ok)
                return false;
        if (!has_kind)
                return fail(p, group, NULL, "[%s]: Kind= is missing", group);
        if (f.until_s >= 0 && f.until_s <= f.from_s)
                return fail(p, group, "UntilSec", "UntilSec must come after FromSec");
        bool per_guest = f.kind == SIM_FAULT_BUSY || f.kind == SIM_FAULT_STALE || f.kind == SIM_FAULT_STUCK;
        if (per_guest && !guest)
                return fail(p, group, NULL, "[%s]: Kind=%s needs Guest=", group, kinds[f.kind]);
        if (guest && !per_guest)
                return fail(p, group, "Guest", "Guest= is for busy, stale and stuck faults");
        if (guest) {
                bool found = false;
                for (guint j = 0; j < sc->guests->len; j++)
                        found |= g_str_equal(((SimGuestSpec *) g_ptr_array_index(sc->guests, j))->name,
                                             guest);
                if (!found)
                        return fail(p, group, "Guest", "Guest: no guest '%s' (define it above)", guest);
        }
        SimFault *nf = g_new0(SimFault, 1);
        *nf = f;
        nf->name = g_strdup(group + strlen(FAULT_PREFIX));
        nf->guest = g_steal_pointer(&guest);
        g_ptr_array_add(sc->faults, nf);
        return true;
}

SimScenario *sim_scenario_load_data(const char *data, const char *origin, GError **error)
{
        g_autoptr(GKeyFile) kf = g_key_file_new();
        g_autoptr(GError) e = NULL;
        g_autoptr(SimScenario) sc = g_new0(SimScenario, 1);
        Parser p = { .data = data, .origin = origin, .kf = kf, .error = error };

        sc->origin = g_strdup(origin);
        sc->text = g_strdup(data);
        sc->host_total_mib = 24576;
        sc->step_s = 0.1;
        sc->epoch_s = 1767225600; /* 2026-01-01: a fixed stamp keeps batch runs identical */
        sc->model = sim_model_defaults;
        sc->guests = g_ptr_array_new_with_free_func(guest_spec_free);
        sc->faults = g_ptr_array_new_with_free_func(fault_free);

        if (!g_key_file_load_from_data(kf, data, (gsize) -1, G_KEY_FILE_NONE, &e)) {
                g_set_error(error, G_KEY_FILE_ERROR, G_KEY_FILE_ERROR_PARSE, "%s:%u: %s", origin,
                            line_of_syntax_error(data, e->message), e->message);
                return NULL;
        }

        /* [Model] first: guests start from it whatever the order of the sections. */
        if (g_key_file_has_group(kf, GROUP_MODEL) && !parse_model(&p, sc))
                return NULL;
        g_auto(GStrv) groups = g_key_file_get_groups(kf, NULL);
        for (size_t i = 0; groups[i]; i++) {
                const char *g = groups[i];
                bool ok = true;

                if (g_str_equal(g, GROUP_SCENARIO))
                        ok = parse_scenario_group(&p, sc);
                else if (g_str_equal(g, GROUP_HOST))
                        ok = parse_host(&p, sc);
                else if (g_str_equal(g, GROUP_MODEL) || g_str_equal(g, GROUP_SETTINGS) ||
                         g_str_has_prefix(g, DOMAIN_PREFIX))
                        ; /* [Settings] and [Domain] are the config parser's (sim_scenario_config_text) */
                else if (g_str_has_prefix(g, GUEST_PREFIX))
                        ok = parse_guest(&p, sc, g);
                else if (g_str_has_prefix(g, FAULT_PREFIX))
                        ok = true; /* after every guest: faults name them */
                else
                        ok = fail(&p, g, NULL,
                                  "unknown section [%s] (Scenario, Host, Settings, Model, Guest NAME, "
                                  "Fault NAME, Domain NAME)",
                                  g);
                if (!ok)
                        return NULL;
        }
        for (size_t i = 0; groups[i]; i++)
                if (g_str_has_prefix(groups[i], FAULT_PREFIX) && !parse_fault(&p, sc, groups[i]))
                        return NULL;
        if (sc->guests->len == 0)
                return fail(&p, "", NULL, "no [Guest NAME] section: a scenario needs at least one guest"),
                       NULL;
        return g_steal_pointer(&sc);
}

SimScenario *sim_scenario_load_file(const char *path, GError **error)
{
        g_autofree char *data = NULL;

        if (!g_file_get_contents(path, &data, NULL, error))
                return NULL;
        return sim_scenario_load_data(data, path, error);
}

void sim_scenario_free(SimScenario *s)
{
        if (!s)
                return;
        g_free(s->origin);
        g_free(s->text);
        g_free(s->description);
        sim_schedule_clear(&s->host_other);
        if (s->guests)
                g_ptr_array_unref(s->guests);
        if (s->faults)
                g_ptr_array_unref(s->faults);
        g_free(s);
}

char *sim_scenario_config_text(const SimScenario *s)
{
        g_auto(GStrv) lines = g_strsplit(s->text, "\n", -1);
        GString *out = g_string_new(NULL);
        bool keep = false;

        for (size_t i = 0; lines[i]; i++) {
                g_autofree char *line = g_strstrip(g_strdup(lines[i]));

                if (line[0] == '[') {
                        g_autofree char *name = g_strndup(line + 1, strcspn(line + 1, "]"));
                        keep = g_str_equal(name, GROUP_SETTINGS) || g_str_has_prefix(name, DOMAIN_PREFIX);
                        if (g_str_equal(name, GROUP_SETTINGS)) {
                                g_string_append(out, "[Coordinator]\n");
                                continue;
                        }
                }
                if (keep)
                        g_string_append(out, lines[i]);
                g_string_append_c(out, '\n');
        }
        return g_string_free(out, FALSE);
}

double sim_scenario_default_duration(const SimScenario *s)
{
        double end = 0;

        for (guint i = 0; i < s->guests->len; i++) {
                const SimGuestSpec *g = g_ptr_array_index(s->guests, i);
                double e = g->start_s + g->ready_s + (isfinite(g->schedule.end_s) ? g->schedule.end_s : 0);
                end = MAX(end, e);
                if (g->stop_s >= 0)
                        end = MAX(end, g->stop_s);
        }
        return MAX(end + 10, 30);
}
