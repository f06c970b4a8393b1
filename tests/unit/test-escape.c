/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <glib.h>

#include "memcoord/escape.h"

static void test_escape(void)
{
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "vm1", "vm1" },
                { "", "" },
                { "my vm", "my vm" },
                { "caf\xc3\xa9", "caf\xc3\xa9" },
                { "\xe6\x97\xa5\xe6\x9c\xac", "\xe6\x97\xa5\xe6\x9c\xac" },
                { "tab\tvm", "tab\\tvm" },
                { "a\nmemcoordd: forged", "a\\nmemcoordd: forged" },
                { "cr\rlf", "cr\\rlf" },
                { "back\\slash", "back\\\\slash" },
                { "esc\x1b[2J", "esc\\x1b[2J" },
                { "del\x7f", "del\\x7f" },
                { "bell\a", "bell\\x07" },
                { "bad\xff", "bad\\xff" },
                { "cut\xc3", "cut\\xc3" },
                { "c1\xc2\x85", "c1\\u0085" },
                { "\u202eevil", "\\u202eevil" },                 /* RIGHT-TO-LEFT OVERRIDE */
                { "zero\xe2\x80\x8bwidth", "zero\\u200bwidth" }, /* ZERO WIDTH SPACE */
                { "iso\xe2\x81\xa6x", "iso\\u2066x" },           /* LEFT-TO-RIGHT ISOLATE */
                { "ls\xe2\x80\xa8ps\xe2\x80\xa9", "ls\\u2028ps\\u2029" },
                { "bom\xef\xbb\xbf", "bom\\ufeff" },
                { "tag\xf3\xa0\x80\x81", "tag\\U000e0001" }, /* LANGUAGE TAG */
        };

        for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
                g_autofree char *got = mc_escape(cases[i].in);

                g_assert_cmpstr(got, ==, cases[i].out);
        }
        g_autofree char *null = mc_escape(NULL);
        g_assert_cmpstr(null, ==, "");
}

int main(int argc, char *argv[])
{
        g_test_init(&argc, &argv, NULL);
        g_test_set_nonfatal_assertions();
        g_test_add_func("/escape/cases", test_escape);
        return g_test_run();
}
