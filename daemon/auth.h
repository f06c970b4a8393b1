/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

/*
 * The one authorization gate for org.memcoord's methods. Members listed as read-only are open
 * to everyone; members listed as managing are allowed to root, or to a caller polkit
 * authorizes for org.memcoord.manage; anything not listed is denied.
 * Returns 1 when allowed, else a negative errno with error set to AccessDenied.
 */
int mc_auth_check(sd_bus_message *m, sd_bus_error *error);
