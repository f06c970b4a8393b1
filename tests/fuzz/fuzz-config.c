/* SPDX-License-Identifier: LGPL-2.1-or-later */

/*
 * The config file parser (mc_config_load_data) on any text. A file that loads leaves settings
 * the policy accepts; a file that does not is refused with an error naming the origin and a
 * line, and changes nothing.
 */

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz-common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        g_autofree char *text = g_strndup((const char *) data, size);
        g_autoptr(McConfig) c = mc_config_new();
        g_autoptr(McConfig) defaults = mc_config_new();
        g_autoptr(GError) e = NULL;

        if (!mc_config_load_data(c, text, "fuzz.conf", &e)) {
                FUZZ_CHECK(e != NULL);
                FUZZ_CHECK(g_str_has_prefix(e->message, "fuzz.conf:"));
                FUZZ_CHECK(fuzz_config_equal(c, defaults, false));
                return 0;
        }
        FUZZ_CHECK(e == NULL);
        fuzz_check_valid(c);
        FUZZ_CHECK(c->runtime == 0); /* the config file marks nothing as set at run time */

        /* Loading the same text again on top changes nothing. */
        g_autoptr(McConfig) again = mc_config_new();
        FUZZ_CHECK(mc_config_load_data(again, text, "fuzz.conf", NULL));
        FUZZ_CHECK(mc_config_load_data(again, text, "fuzz.conf", NULL));
        FUZZ_CHECK(fuzz_config_equal(c, again, false));
        return 0;
}
