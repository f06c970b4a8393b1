/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <glib.h>

#include "memcoord/memcoord.h"
#include "memcoord/units.h"

typedef struct {
        const char *input;
        uint64_t bytes;
} SizeOk;

static const SizeOk parse_ok[] = {
        { "0", 0 },
        { "157286400", UINT64_C(157286400) },
        { "100M", UINT64_C(104857600) },
        { "1.5G", UINT64_C(1610612736) },
        { "512MiB", UINT64_C(536870912) },
        { "2 GB", UINT64_C(2147483648) },
        { "1k", UINT64_C(1024) },
        { "1K", UINT64_C(1024) },
        { "1KiB", UINT64_C(1024) },
        { "1kb", UINT64_C(1024) },
        { "1T", UINT64_C(1099511627776) },
        { "1P", UINT64_C(1125899906842624) },
        { "1.5EiB", UINT64_C(1729382256910270464) },
        { "1.5K", UINT64_C(1536) },
        { ".5M", UINT64_C(524288) },
        { "10B", UINT64_C(10) },
        { "10 b", UINT64_C(10) },
        { "  100M  ", UINT64_C(104857600) },
        { "1.0", UINT64_C(1) },
        { "4096 MiB", UINT64_C(4294967296) },
        /* The largest whole number of TiB that fits: 2^63, exact in a double. */
        { "8388608T", UINT64_C(9223372036854775808) },
};

static void test_parse_ok(void)
{
        for (size_t i = 0; i < G_N_ELEMENTS(parse_ok); i++) {
                uint64_t bytes = UINT64_C(0xdeadbeef);
                int r = mc_parse_size(parse_ok[i].input, &bytes);

                g_test_message("'%s'", parse_ok[i].input);
                g_assert_cmpint(r, ==, 0);
                g_assert_cmpuint(bytes, ==, parse_ok[i].bytes);
        }
}

typedef struct {
        const char *input;
        int error;
} SizeBad;

static const SizeBad parse_bad[] = {
        { "", -EINVAL },
        { "   ", -EINVAL },
        { "abc", -EINVAL },
        { "-1", -EINVAL },
        { "+1", -EINVAL },
        { "-1M", -EINVAL },
        { "1.5", -EINVAL }, /* a fraction of a byte */
        { "0.5", -EINVAL },
        { "10X", -EINVAL },
        { "1e3", -EINVAL },
        { "1E3", -EINVAL },
        { "0x10", -EINVAL },
        { "0X10", -EINVAL },
        { "M", -EINVAL },
        { ".", -EINVAL },
        { "inf", -EINVAL },
        { "nan", -EINVAL },
        { "100MM", -EINVAL },
        { "100M B", -EINVAL },
        { "1Bi", -EINVAL },
        { "1Q", -EINVAL },
        { "1P5", -EINVAL },
        { "16E", -ERANGE }, /* 2^64: what mc_format_size prints for UINT64_MAX */
        { "100M5", -EINVAL },
        { "1 2", -EINVAL },
        { "99999999999T", -ERANGE },
        { "16777216T", -ERANGE }, /* exactly 2^64 */
        { "18446744073709551616", -ERANGE },
        { "99999999999999999999999", -ERANGE },
};

static void test_parse_bad(void)
{
        for (size_t i = 0; i < G_N_ELEMENTS(parse_bad); i++) {
                uint64_t bytes = UINT64_C(0xdeadbeef);
                int r = mc_parse_size(parse_bad[i].input, &bytes);

                g_test_message("'%s'", parse_bad[i].input);
                g_assert_cmpint(r, ==, parse_bad[i].error);
                /* A failed parse leaves the output alone. */
                g_assert_cmpuint(bytes, ==, UINT64_C(0xdeadbeef));
        }
}

static void test_parse_null(void)
{
        uint64_t bytes = 7;

        g_assert_cmpint(mc_parse_size(NULL, &bytes), ==, -EINVAL);
        g_assert_cmpuint(bytes, ==, 7);
}

/*
 * Between 2^63 and 2^64 a size either parses to its exact value or is refused with -ERANGE;
 * it must never come back as some other number.
 */
static void test_parse_above_2_63(void)
{
        static const SizeOk table[] = {
                { "12582912T", UINT64_C(13835058055282163712) }, /* 1.5 x 2^63 */
                { "16777215T", UINT64_C(18446742974197923840) }, /* 2^64 - 2^40 */
                { "12884901888G", UINT64_C(13835058055282163712) },
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                uint64_t bytes = 0;
                int r = mc_parse_size(table[i].input, &bytes);

                g_test_message("'%s' -> %d, %" G_GUINT64_FORMAT, table[i].input, r, bytes);
                if (r == -ERANGE)
                        continue;
                g_assert_cmpint(r, ==, 0);
                g_assert_cmpuint(bytes, ==, table[i].bytes);
        }
}

typedef struct {
        uint64_t bytes;
        const char *text;
} FormatCase;

static const FormatCase format_table[] = {
        { 0, "0" },
        { 1, "1" },
        { 1023, "1023" },
        { 1024, "1K" },
        { 1536, "1.5K" },
        { UINT64_C(980) * 1024, "980K" },
        { UINT64_C(536870912), "512M" },
        { UINT64_C(104857600), "100M" },
        { UINT64_C(1610612736), "1.5G" },
        { UINT64_C(1073741824), "1G" },
        { UINT64_C(2147483648), "2G" },
        { UINT64_C(1099511627776), "1T" },
        { UINT64_C(1649267441664), "1.5T" },
        { UINT64_C(1152921504606846976), "1E" },
        { UINT64_MAX, "16E" },
        /* Not whole: one decimal (1.75 is exact in binary and %.1f rounds it to even). */
        { UINT64_C(1879048192), "1.8G" },
        /* Within 5 % of a whole number: printed whole. */
        { UINT64_C(1073741824) + UINT64_C(1073741824) / 25, "1G" }, /* 1.04G */
        /* 100 and more of a unit: no decimals. */
        { UINT64_C(100) * 1048576 + 262144, "100M" }, /* 100.25M */
};

static void test_format(void)
{
        for (size_t i = 0; i < G_N_ELEMENTS(format_table); i++) {
                char buf[MC_SIZE_MAX_STRLEN];
                const char *r = mc_format_size(buf, format_table[i].bytes);

                g_test_message("%" G_GUINT64_FORMAT, format_table[i].bytes);
                g_assert_true(r == buf);
                g_assert_cmpstr(r, ==, format_table[i].text);
        }
}

/* What mc_format_size prints, mc_parse_size reads back to within the printed precision. */
static void test_format_parse_round_trip(void)
{
        static const uint64_t values[] = {
                0, 1, 1023, 1024, 1536, UINT64_C(536870912), UINT64_C(1610612736),
                UINT64_C(104857600), UINT64_C(3) * 1073741824 + 314572800, UINT64_C(1099511627776),
                /* Printed with P and E: parsed back too. */
                UINT64_C(1) << 50, (UINT64_C(3) << 50) / 2, UINT64_C(1) << 60, UINT64_C(15) << 60,
        };

        for (size_t i = 0; i < G_N_ELEMENTS(values); i++) {
                char buf[MC_SIZE_MAX_STRLEN];
                uint64_t back = 0;

                mc_format_size(buf, values[i]);
                g_test_message("%" G_GUINT64_FORMAT " -> '%s'", values[i], buf);
                g_assert_cmpint(mc_parse_size(buf, &back), ==, 0);
                /* One printed decimal: off by at most 5 % of the value. */
                g_assert_cmpuint(back, <=, values[i] + values[i] / 20);
                g_assert_cmpuint(back, >=, values[i] - values[i] / 20);
        }
}

/*
 * The shortest form: a value that rounds up to 1024 of a unit is printed with the next unit,
 * and a value that rounds to a whole number is printed without ".0".
 */
static void test_format_unit_boundary(void)
{
        static const FormatCase table[] = {
                { UINT64_C(1048575), "1M" },                     /* 1023.999K */
                { UINT64_C(1073741823), "1G" },                  /* 1023.999M */
                { UINT64_C(2104533975), "2G" },                  /* 1.96G */
                { UINT64_C(104826142), "100M" },                 /* 99.97M */
        };

        for (size_t i = 0; i < G_N_ELEMENTS(table); i++) {
                char buf[MC_SIZE_MAX_STRLEN];

                g_test_message("%" G_GUINT64_FORMAT, table[i].bytes);
                g_assert_cmpstr(mc_format_size(buf, table[i].bytes), ==, table[i].text);
        }
}

static void test_kib_helpers(void)
{
        g_assert_cmpuint(mc_kib_to_bytes(1), ==, 1024);
        g_assert_cmpuint(mc_kib_to_bytes(UINT64_C(102400)), ==, UINT64_C(104857600));
        g_assert_cmpuint(mc_bytes_to_kib(1023), ==, 0);
        g_assert_cmpuint(mc_bytes_to_kib(UINT64_C(104857600)), ==, UINT64_C(102400));
        g_assert_cmpuint(mc_mib_to_kib(256), ==, UINT64_C(262144));
}

/* A KiB figure too large for bytes must not wrap into a small one on the bus. */
static void test_kib_to_bytes_saturates(void)
{
        uint64_t largest = UINT64_MAX / 1024;

        g_assert_cmpuint(mc_kib_to_bytes(largest), ==, largest * 1024);
        g_assert_cmpuint(mc_kib_to_bytes(largest + 1), ==, UINT64_MAX);
        g_assert_cmpuint(mc_kib_to_bytes(UINT64_C(1) << 54), ==, UINT64_MAX);
        g_assert_cmpuint(mc_kib_to_bytes(UINT64_MAX), ==, UINT64_MAX);
}

/* The bound on sizes over the bus survives the state file: a size saved as "<KiB>K" at the
 * bound parses back to the same size. */
static void test_size_bound_round_trips(void)
{
        g_autofree char *saved = g_strdup_printf("%" G_GUINT64_FORMAT "K", MC_SIZE_MAX_BYTES / 1024);
        uint64_t bytes = 0;

        g_assert_cmpint(mc_parse_size(saved, &bytes), ==, 0);
        g_assert_cmpuint(bytes, ==, MC_SIZE_MAX_BYTES);
        /* What an unbounded SetHostBudget(UINT64_MAX) used to save. */
        g_assert_cmpint(mc_parse_size("18014398509481984K", &bytes), ==, -ERANGE);
}

int main(int argc, char *argv[])
{
        g_test_init(&argc, &argv, NULL);
        /* Report every failing case, not just the first one. */
        g_test_set_nonfatal_assertions();

        g_test_add_func("/units/parse/ok", test_parse_ok);
        g_test_add_func("/units/parse/bad", test_parse_bad);
        g_test_add_func("/units/parse/null", test_parse_null);
        g_test_add_func("/units/parse/above-2^63", test_parse_above_2_63);
        g_test_add_func("/units/format/table", test_format);
        g_test_add_func("/units/format/round-trip", test_format_parse_round_trip);
        g_test_add_func("/units/format/unit-boundary", test_format_unit_boundary);
        g_test_add_func("/units/kib-helpers", test_kib_helpers);
        g_test_add_func("/units/kib-to-bytes-saturates", test_kib_to_bytes_saturates);
        g_test_add_func("/units/size-bound-round-trips", test_size_bound_round_trips);

        return g_test_run();
}
