/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-event.h>

/*
 * Runs libvirt's event loop (handles and timeouts: lifecycle events, keepalives, RPC) on an
 * sd-event loop, so the daemon has one thread and one loop. Call once, before the first
 * virConnectOpen.
 */
int mc_libvirt_event_register(sd_event *e);

/* Releases what libvirt left registered; call after the last connection is closed. */
void mc_libvirt_event_unregister(void);
