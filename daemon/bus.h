/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

#include "manager.h"

typedef struct McBus McBus;

/* Publishes the manager on bus (objects, signals) and takes the name org.memcoord.
 * -EEXIST: the name is owned by someone else. */
int mc_bus_new(sd_bus *bus, McManager *m, McBus **ret);
McBus *mc_bus_free(McBus *b);
