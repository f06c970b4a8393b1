/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Serving the metrics (metrics.h) of a manager: a minimal HTTP/1.0 endpoint answering
 * GET /metrics on a listening socket (one passed by systemd's socket activation, or one of our
 * own for --metrics-listen), and a file for node_exporter's textfile collector, replaced
 * atomically at every interval.
 */

#include <systemd/sd-event.h>

#include "manager.h"

typedef struct McMetricsExport McMetricsExport;

/* The exposition of m's state now; free with g_free(). */
char *mc_manager_render_metrics(McManager *m);

/* Parses "ADDR:PORT" ("127.0.0.1:9848", "[::1]:9848", ":9848" = loopback) and listens there.
 * Returns the fd or -errno; *why says what was wrong with the text. */
int mc_metrics_listen(const char *addr_port, const char **why);

int mc_metrics_export_new(sd_event *e, McManager *m, McMetricsExport **ret);
McMetricsExport *mc_metrics_export_free(McMetricsExport *x);

/* Serves HTTP on a listening stream socket; takes the fd. */
int mc_metrics_export_serve(McMetricsExport *x, int listen_fd);
/* Writes the exposition to path at every interval of the manager, atomically. */
int mc_metrics_export_file(McMetricsExport *x, const char *path);
