/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * Human sizes, shared by the config parser and memcoordctl: "157286400", "100M", "1.5G",
 * "512MiB", "2 GB" are all accepted; suffixes are binary (K = 1024) up to E, as printed. Printing gives the
 * shortest exact-enough form: "512M", "1.5G".
 */

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parses s into bytes. Returns 0, -EINVAL (not a size) or -ERANGE (too large). */
static inline int mc_parse_size(const char *s, uint64_t *ret_bytes)
{
        static const struct {
                char letter;
                uint64_t factor;
        } suffixes[] = {
                { 'B', 1 },
                { 'K', UINT64_C(1) << 10 },
                { 'M', UINT64_C(1) << 20 },
                { 'G', UINT64_C(1) << 30 },
                { 'T', UINT64_C(1) << 40 },
                { 'P', UINT64_C(1) << 50 },
                { 'E', UINT64_C(1) << 60 },
        };
        const char *p = s;
        char *end = NULL;
        uint64_t factor = 1;

        if (!s)
                return -EINVAL;
        while (isspace((unsigned char) *p))
                p++;
        if (!isdigit((unsigned char) *p) && *p != '.')
                return -EINVAL; /* also rejects "-1" and "+1" */

        errno = 0;
        double value = strtod(p, &end);
        if (errno == ERANGE || end == p || !isfinite(value) || value < 0)
                return errno == ERANGE ? -ERANGE : -EINVAL;
        /* No hex floats or exponents in the number: sizes are written plainly. (The suffix may
         * be P or E, which mc_format_size prints.) */
        for (const char *q = p; q < end; q++)
                if (strchr("xXeEpP", *q))
                        return -EINVAL;

        while (isspace((unsigned char) *end))
                end++;
        if (*end != '\0') {
                char letter = (char) toupper((unsigned char) *end);
                size_t i;

                for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
                        if (suffixes[i].letter == letter)
                                break;
                if (i == sizeof(suffixes) / sizeof(suffixes[0]))
                        return -EINVAL;
                factor = suffixes[i].factor;
                end++;
                if (letter != 'B') {
                        if (*end == 'i')
                                end++;
                        if (*end == 'B' || *end == 'b')
                                end++;
                }
                while (isspace((unsigned char) *end))
                        end++;
                if (*end != '\0')
                        return -EINVAL;
        }

        double bytes = value * (double) factor;
        if (bytes >= 18446744073709551615.0)
                return -ERANGE;
        if (factor == 1 && bytes != floor(bytes))
                return -EINVAL; /* a fraction of a byte */
        /* bytes < 2^64 here, and a double that large is a whole number: the cast is exact. */
        *ret_bytes = (uint64_t) floor(bytes + 0.5);
        return 0;
}

#define MC_SIZE_MAX_STRLEN 21 /* "18446744073709551615" and its NUL */

/* Formats bytes as "0", "512M", "1.5G", "980K": the largest unit that keeps the number at or
 * above 1, one decimal where it is not whole (to one decimal). */
static inline const char *mc_format_size(char buf[static MC_SIZE_MAX_STRLEN], uint64_t bytes)
{
        static const char letters[] = "KMGTPE";
        double value = (double) bytes;
        int i = -1;

        /* Divide while the number, rounded to one decimal, would read 1024 or more. */
        while (value >= 1023.95 && i < (int) sizeof(letters) - 2) {
                value /= 1024.0;
                i++;
        }
        if (i < 0) {
                snprintf(buf, MC_SIZE_MAX_STRLEN, "%llu", (unsigned long long) bytes);
                return buf;
        }
        if (value >= 99.95)
                snprintf(buf, MC_SIZE_MAX_STRLEN, "%.0f%c", value, letters[i]);
        else {
                char num[MC_SIZE_MAX_STRLEN];
                size_t len;

                snprintf(num, sizeof(num), "%.1f", value);
                len = strlen(num);
                if (len > 2 && strcmp(num + len - 2, ".0") == 0)
                        num[len - 2] = '\0';
                snprintf(buf, MC_SIZE_MAX_STRLEN, "%s%c", num, letters[i]);
        }
        return buf;
}
