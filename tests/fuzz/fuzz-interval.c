/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The interval parser of IntervalSec and --interval (mc_config_parse_interval): any text is
 * refused with a reason or gives an interval within the bounds; the state file's spelling of
 * it ("%.6f" seconds) parses back to the same microsecond.
 */

#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = g_strndup((const char *) data, size);
        uint64_t usec = 42, back = 0;
        const char *why = NULL;
        int r = mc_config_parse_interval(text, &usec, &why);

        if (r < 0) {
                FUZZ_CHECK(r == -EINVAL && why != NULL && usec == 42);
                return 0;
        }
        FUZZ_CHECK(r == 0);
        FUZZ_CHECK(usec >= MC_INTERVAL_MIN_USEC && usec <= MC_INTERVAL_MAX_USEC);
        FUZZ_CHECK(mc_config_interval_check(usec) == NULL);

        char buf[64];
        snprintf(buf, sizeof(buf), "%.6f", (double) usec / 1e6);
        FUZZ_CHECK(mc_config_parse_interval(buf, &back, &why) == 0);
        FUZZ_CHECK(back == usec);
        return 0;
}
