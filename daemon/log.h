/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging: one line per event on stderr ("memcoordd: ..."), or, when stderr is connected to
 * the journal, structured journal entries with the same message, a MESSAGE_ID from
 * memcoord/messages.h and MEMCOORD_* fields.
 *
 *   mc_log_id(LOG_WARNING, MC_MESSAGE_CONNECTION_LOST, "Lost %s", uri);
 *   mc_log_idf(LOG_INFO, MC_MESSAGE_SKIP_STALE,
 *              (MC_LOG_DOMAIN(name, uuid), MC_LOG_STR("MEMCOORD_REASON", "stale")),
 *              "%s: stale, left alone", name);
 *
 * The fields of mc_log_idf() are one parenthesized list; a field whose string is NULL is left
 * out. On stderr only the message is printed, so the two forms read the same.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <syslog.h>

#include "memcoord/macro.h"
#include "memcoord/messages.h"

typedef struct McLogField {
        const char *name; /* journal field name: upper case, e.g. "MEMCOORD_DOMAIN" */
        const char *str;  /* the value, or NULL: a number, or nothing */
        uint64_t num;
        bool is_num;
} McLogField;

#define MC_LOG_STR(name, value) ((McLogField){ (name), (value), 0, false })
#define MC_LOG_U64(name, value) ((McLogField){ (name), NULL, (uint64_t) (value), true })
#define MC_LOG_DOMAIN(name, uuid) MC_LOG_STR("MEMCOORD_DOMAIN", (name)), MC_LOG_STR("MEMCOORD_UUID", (uuid))

void mc_log_set_max_level(int level);
void mc_log_setup(void);

void mc_log_struct(const char *file, int line, const char *func, int level, const char *message_id,
                   const McLogField *fields, size_t n_fields, const char *fmt, ...)
        __attribute__((format(printf, 8, 9)));

#define MC_LOG_UNPACK_(...) __VA_ARGS__
#define mc_log_id(level, id, ...) \
        mc_log_struct(__FILE__, __LINE__, __func__, (level), (id), NULL, 0, __VA_ARGS__)
#define mc_log_idf(level, id, fields, ...)                           \
        mc_log_struct(__FILE__, __LINE__, __func__, (level), (id),   \
                      (const McLogField[]){ MC_LOG_UNPACK_ fields }, \
                      ELEMENTSOF(((const McLogField[]){ MC_LOG_UNPACK_ fields })), __VA_ARGS__)

/* Without a MESSAGE_ID: debugging detail only. */
#define mc_log_full(level, ...) \
        mc_log_struct(__FILE__, __LINE__, __func__, (level), NULL, NULL, 0, __VA_ARGS__)
#define mc_log_error(...) mc_log_full(LOG_ERR, __VA_ARGS__)
#define mc_log_warning(...) mc_log_full(LOG_WARNING, __VA_ARGS__)
#define mc_log_info(...) mc_log_full(LOG_INFO, __VA_ARGS__)
#define mc_log_debug(...) mc_log_full(LOG_DEBUG, __VA_ARGS__)

/* "vm1: 2048 MiB -> 1946 MiB (claim)", MESSAGE_ID MC_MESSAGE_BALLOON_CHANGED (or _DRY_RUN),
 * with MEMCOORD_DOMAIN, _UUID, _FROM_KIB, _TO_KIB, _REASON and _DRY_RUN. */
#define mc_log_balloon(...) mc_log_balloon_at(__FILE__, __LINE__, __func__, __VA_ARGS__)
void mc_log_balloon_at(const char *file, int line, const char *func, const char *domain, const char *uuid,
                       uint64_t from_kib, uint64_t to_kib, const char *reason, bool dry_run);
