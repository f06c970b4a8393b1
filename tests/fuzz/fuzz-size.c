/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The size parser and printer (memcoord/units.h), shared by the config parser and memcoordctl:
 * any text is refused or gives a byte count; a count prints within MC_SIZE_MAX_STRLEN, and what
 * is printed parses back to within the printer's rounding (one decimal of the unit).
 */

#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memcoord/units.h"

#define CHECK(cond)                                                                              \
        do {                                                                                     \
                if (!(cond)) {                                                                   \
                        fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
                        abort();                                                                 \
                }                                                                                \
        } while (0)

static void check_format(uint64_t bytes)
{
        char buf[MC_SIZE_MAX_STRLEN];
        uint64_t back = 0;

        memset(buf, 'X', sizeof(buf));
        const char *s = mc_format_size(buf, bytes);
        CHECK(s == buf);
        CHECK(memchr(buf, '\0', sizeof(buf)) != NULL);
        int r = mc_parse_size(buf, &back);
        if (r == -ERANGE) {
                /* Rounding up near 2^64 ("16E") may not fit: only there. */
                CHECK(bytes > UINT64_MAX - UINT64_MAX / 16);
                return;
        }
        CHECK(r == 0);
        double diff = (double) back - (double) bytes;
        if (diff < 0)
                diff = -diff;
        /* One decimal of a unit at least 1: off by at most 5 %. */
        CHECK(diff <= (double) bytes * 0.05 + 0.5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = g_strndup((const char *) data, size);
        uint64_t bytes = 42;
        int r = mc_parse_size(text, &bytes);

        CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
        if (r < 0)
                CHECK(bytes == 42);
        else
                check_format(bytes);

        /* The raw bytes as a count, too. */
        if (size >= sizeof(uint64_t)) {
                uint64_t raw;
                memcpy(&raw, data, sizeof(raw));
                check_format(raw);
        }
        return 0;
}
