/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* org.memcoord.Error.* and the errno each maps to, registered by daemon and client alike so
 * that sd_bus_error_get_errno() works on both sides. */

#include <errno.h>
#include <systemd/sd-bus.h>

#include "memcoord/memcoord.h"

static const sd_bus_error_map mc_bus_error_map[] = {
        SD_BUS_ERROR_MAP(MC_ERROR_INVALID_ARGUMENT, EINVAL),
        SD_BUS_ERROR_MAP(MC_ERROR_NO_SUCH_DOMAIN, ENXIO),
        SD_BUS_ERROR_MAP(MC_ERROR_NOT_CONNECTED, ENOTCONN),
        SD_BUS_ERROR_MAP(MC_ERROR_BAD_CONFIG, EBADMSG),
        SD_BUS_ERROR_MAP_END,
};
