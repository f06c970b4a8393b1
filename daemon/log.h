/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Logging: one line per event on stderr ("memcoordd: ..."), or, when stderr is connected to
 * the journal, structured journal entries with the same message.
 */

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

void mc_log_set_max_level(int level);
void mc_log_setup(void);

void mc_log_full(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define mc_log_error(...) mc_log_full(LOG_ERR, __VA_ARGS__)
#define mc_log_warning(...) mc_log_full(LOG_WARNING, __VA_ARGS__)
#define mc_log_info(...) mc_log_full(LOG_INFO, __VA_ARGS__)
#define mc_log_debug(...) mc_log_full(LOG_DEBUG, __VA_ARGS__)

/* "vm1: 2048 MiB -> 1946 MiB (claim)", with MEMCOORD_* fields in the journal. */
void mc_log_balloon(const char *domain, const char *uuid, uint64_t from_kib, uint64_t to_kib,
                    const char *reason, bool dry_run);
