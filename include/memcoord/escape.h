/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Guest names (and any text that holds one) for a log line or a terminal. libvirt accepts
 * almost anything in a name; printed as is, a "\r" or "\n" forges a line of its own, an escape
 * sequence moves the cursor and a bidi control (U+202E) reverses what follows. Written with
 * C-style escapes instead: \t \n \r \\, \xNN for other control characters and for bytes that
 * are not UTF-8, \uXXXX for C1 controls, Unicode format characters (bidi controls,
 * zero-width characters) and line or paragraph separators. Everything else is kept, so a
 * plain name reads the same.
 */

#include <glib.h>
#include <string.h>

static inline void mc_escape_append(GString *out, const char *s)
{
        for (const char *p = s; p && *p;) {
                gunichar c = g_utf8_get_char_validated(p, -1);

                if (c == (gunichar) -1 || c == (gunichar) -2) {
                        g_string_append_printf(out, "\\x%02x", (unsigned) (unsigned char) *p);
                        p++;
                        continue;
                }
                p = g_utf8_next_char(p);
                switch (c) {
                case '\\':
                        g_string_append(out, "\\\\");
                        continue;
                case '\t':
                        g_string_append(out, "\\t");
                        continue;
                case '\n':
                        g_string_append(out, "\\n");
                        continue;
                case '\r':
                        g_string_append(out, "\\r");
                        continue;
                default:
                        break;
                }
                if (c < 0x20 || c == 0x7f)
                        g_string_append_printf(out, "\\x%02x", (unsigned) c);
                else if ((c >= 0x80 && c < 0xa0) || g_unichar_type(c) == G_UNICODE_FORMAT ||
                         g_unichar_type(c) == G_UNICODE_LINE_SEPARATOR ||
                         g_unichar_type(c) == G_UNICODE_PARAGRAPH_SEPARATOR)
                        g_string_append_printf(out, c > 0xffff ? "\\U%08x" : "\\u%04x", (unsigned) c);
                else
                        g_string_append_unichar(out, c);
        }
}

/* A newly allocated escaped copy of s (g_free it). */
static inline char *mc_escape(const char *s)
{
        GString *out = g_string_sized_new(s ? strlen(s) : 0);

        mc_escape_append(out, s);
        return g_string_free(out, FALSE);
}
